"""scikit-learn estimators: GRUClassifier and GRURegressor, a GRU (then a Linear head on each
sequence's last valid step) trained with numgru, in scikit-learn's conventions (fit / predict /
predict_proba / score, get_params / set_params, clone, Pipeline, GridSearchCV, pickling).

X is one of:
- a 3-D array (n_sequences, n_steps, n_channels);
- a list of 2-D arrays (n_steps_i, n_channels), of unequal lengths if need be;
- a 2-D array (n_sequences, n_steps): univariate sequences. This is scikit-learn's
  (n_samples, n_features), so n_features_in_ is n_steps and predict wants the same n_steps, as
  every scikit-learn estimator does; pass (n, T, 1) or a list to predict on other lengths.
Needs scikit-learn (`pip install 'numgru[sklearn]'`); `import numgru` does not import it.
"""

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_array, column_or_1d
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("numgru.sklearn needs scikit-learn >= 1.6: pip install 'numgru[sklearn]'") \
        from e

from . import _fitting
from .data import pad_sequences

_FLOATS = (np.float64, np.float32)


class _GRUEstimator(BaseEstimator):
    """What GRUClassifier and GRURegressor share: hyper-parameters, input checks, pickling."""

    _task = None

    __init__ = _fitting.set_hyperparameters

    # -- inputs --

    def _sequences(self, X, reset):
        """(X (N, T, F) float64 zero-padded, lengths (N,)) from any of the accepted layouts."""
        if isinstance(X, (list, tuple)) and len(X) and np.ndim(X[0]) == 2:
            seqs = [check_array(s, dtype=_FLOATS, input_name=f"X[{i}]")
                    for i, s in enumerate(X)]
            layout = "list"
            Xp, lengths = pad_sequences(seqs, np.float64)
        else:
            # The rank without np.ndim, which would call __array_function__ (array-likes may
            # refuse it) and without converting a DataFrame (validate_data reads its names).
            ndim = len(X.shape) if hasattr(X, "shape") else np.asarray(X).ndim
            fitted_2d = getattr(self, "input_layout_", None) == "2d"
            if ndim == 3:
                Xp = check_array(X, dtype=_FLOATS, allow_nd=True)
                layout = "3d"
            elif reset or fitted_2d:
                X2 = validate_data(self, X, reset=reset, dtype=_FLOATS)
                Xp, layout = X2[:, :, None], "2d"
            else:
                X2 = check_array(X, dtype=_FLOATS)
                Xp, layout = X2[:, :, None], "2d"
            lengths = np.full(len(Xp), Xp.shape[1], np.int64)
            if Xp.shape[1] == 0 or Xp.shape[2] == 0:
                raise ValueError(f"X: expected at least one step and one channel, got shape "
                                 f"{Xp.shape}")
        F = Xp.shape[2]
        if reset:
            self.input_layout_ = layout
            self.n_channels_ = F
            if layout != "2d":
                self.n_features_in_ = F
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
        elif F != self.n_channels_:
            raise ValueError(f"X has {F} channels, but {type(self).__name__} was fitted on "
                             f"{self.n_channels_} (X layout {layout}: (n, T, channels), a list "
                             f"of (T_i, channels), or (n, T) for one channel)")
        return np.asarray(Xp, np.float64), lengths

    def _params(self):
        return {k: getattr(self, k) for k in _fitting.DEFAULTS}

    def _outputs(self, X):
        check_is_fitted(self)
        Xp, lengths = self._sequences(X, reset=False)
        return self._fitted.outputs(Xp, lengths)

    def _store(self, fitted):
        self._fitted = fitted
        self.model_ = fitted.model
        self.history_ = fitted.history
        self.best_epoch_ = fitted.best_epoch
        self.n_epochs_ = len(fitted.history.get("loss", []))

    # -- pickling: numgru models hold thread-local state; keep their config and weights --

    def __getstate__(self):
        state = super().__getstate__()
        if "_fitted" in state:
            state = dict(state)
            state["_fitted"] = state["_fitted"].state()
            state.pop("model_", None)
        return state

    def __setstate__(self, state):
        fitted = state.get("_fitted")
        super().__setstate__(state)
        if isinstance(fitted, dict):
            self._store(_fitting.Fitted.from_state(fitted, device=self.device))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags


class GRUClassifier(ClassifierMixin, _GRUEstimator):
    """Sequence classification with a GRU: labels of any kind in y, probabilities from a softmax.

    Hyper-parameters (defaults chosen on small UEA data sets): hidden_size, num_layers,
    bidirectional, reset_after (the GRU); dropout (between layers); epochs (the most), batch_size,
    lr, weight_decay, optimizer ("adam" or "adamw"), clip_norm (global gradient norm, None for
    none); validation_fraction (a stratified split held out; 0 for none), used when it holds at
    least min_validation_size sequences, with n_iter_no_change (early stopping patience; the best
    validation epoch's weights are kept); schedule ("auto": constant with early stopping, cosine
    over all epochs without; "none"; "cosine"); standardize (per-channel z-scores from the
    training data); dtype, device, random_state, verbose (a progress bar).

    Attributes after fit: classes_, model_ (the numgru GRUModel, e.g. for ng.export_onnx; it
    takes standardised inputs), history_, best_epoch_, n_epochs_, n_features_in_, n_channels_.
    """

    _task = "classify"

    def fit(self, X, y):
        Xp, lengths = self._sequences(X, reset=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             f"is None.")
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=False),
                         warn=True)
        check_consistent_length(Xp, y)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got 1 class "
                             f"({encoder.classes_[0]!r})")
        self.classes_ = encoder.classes_
        params = dict(self._params(), n_classes=len(self.classes_))
        self._store(_fitting.fit(params, Xp, lengths, encoder.transform(y), "classify"))
        return self

    def predict_proba(self, X):
        """(n_sequences, n_classes) probabilities, columns in the order of classes_."""
        return _fitting.softmax(self._outputs(X))

    def predict_log_proba(self, X):
        logits = self._outputs(X)
        z = logits - logits.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X):
        outputs = self._outputs(X)
        return self.classes_[np.argmax(outputs, axis=1)]


class GRURegressor(RegressorMixin, _GRUEstimator):
    """Sequence regression with a GRU: y (n,) or (n, n_targets), standardised for training.

    Hyper-parameters and attributes as GRUClassifier's (no classes_; validation split random).
    """

    _task = "regress"

    def fit(self, X, y):
        Xp, lengths = self._sequences(X, reset=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             f"is None.")
        y = check_array(y, ensure_2d=False, dtype=_FLOATS, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected shape (n,) or (n, n_targets), got {y.shape}")
        check_consistent_length(Xp, y)
        self._y_1d = y.ndim == 1
        y2 = np.asarray(y, np.float64).reshape(len(y), -1)
        self._store(_fitting.fit(self._params(), Xp, lengths, y2, "regress"))
        return self

    def predict(self, X):
        outputs = self._outputs(X)
        out = self._fitted.y_scaler.inverse(outputs)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


__all__ = ["GRUClassifier", "GRURegressor"]
