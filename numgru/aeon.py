"""aeon estimators: GRUClassifier and GRURegressor in aeon's conventions, for time series
collections as aeon holds them: a 3-D array (n_cases, n_channels, n_timepoints), a 2-D array
(n_cases, n_timepoints) of univariate series, or a list of 2-D arrays (n_channels, n_timepoints_i)
of unequal lengths. Multivariate and unequal-length capable (aeon's capability tags say so).

The same model and training as numgru.sklearn (a GRU, then a Linear head on each series' last
valid step; standardised channels; a held-out validation split with early stopping and best-epoch
restore), with the same hyper-parameters as constructor arguments. Needs aeon, in two steps
because aeon 1.6.0 declares numba<0.64 (README, "scikit-learn and aeon estimators"):
`pip install 'numgru[aeon]'` (aeon's dependencies), then `pip install --no-deps aeon==1.6.0`.
`import numgru` does not import it.
"""

import inspect

import numpy as np

try:
    from aeon.classification.base import BaseClassifier
    from aeon.regression.base import BaseRegressor
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("numgru.aeon needs aeon: pip install 'numgru[aeon]', then pip install "
                      "--no-deps aeon==1.6.0 (aeon declares numba<0.64; see numgru's README)") \
        from e

from . import _fitting
from .data import pad_sequences

_TAGS = {
    "capability:multivariate": True,
    "capability:unequal_length": True,
    "X_inner_type": ["np-list", "numpy3D"],
}


def _to_sequences(X):
    """(X (N, T, C) float64 zero-padded, lengths (N,)) from aeon's numpy3D or np-list."""
    if isinstance(X, np.ndarray):
        Xt = np.ascontiguousarray(np.transpose(X, (0, 2, 1)), np.float64)
        return Xt, np.full(len(Xt), Xt.shape[1], np.int64)
    return pad_sequences([np.asarray(x, np.float64).T for x in X], np.float64)


class _GRUParams:
    """Hyper-parameters (as numgru.sklearn's) and pickling shared by the two aeon estimators."""

    def __init__(self, *args, **kwargs):
        _fitting.set_hyperparameters(self, *args, **kwargs)
        super().__init__()

    __init__.__signature__ = inspect.signature(_fitting.set_hyperparameters)

    def _params(self):
        return {k: getattr(self, k) for k in _fitting.DEFAULTS}

    def _store(self, fitted):
        self._fitted = fitted
        self.model_ = fitted.model
        self.history_ = fitted.history
        self.best_epoch_ = fitted.best_epoch

    def __getstate__(self):
        state = dict(super().__getstate__())
        if "_fitted" in state:
            state["_fitted"] = state["_fitted"].state()
            state.pop("model_", None)
        return state

    def __setstate__(self, state):
        fitted = state.get("_fitted")
        super().__setstate__(state)
        if isinstance(fitted, dict):
            self._store(_fitting.Fitted.from_state(fitted, device=self.device))

    @classmethod
    def _get_test_params(cls, parameter_set="default"):
        """Small settings for aeon's estimator checks (the defaults train for minutes)."""
        return {"hidden_size": 8, "epochs": 3, "batch_size": 8, "lr": 0.01,
                "bidirectional": False, "device": "cpu"}


class GRUClassifier(_GRUParams, BaseClassifier):
    """GRU time series classifier for aeon collections (see the module docstring).

    Attributes after fit: classes_, n_classes_ (aeon's), model_ (the numgru GRUModel; it takes
    standardised (batch, time, channels) inputs), history_, best_epoch_.
    """

    _tags = dict(_TAGS)

    def _fit(self, X, y):
        Xs, lengths = _to_sequences(X)
        codes = np.array([self._class_dictionary[v] for v in y], np.int64)
        params = dict(self._params(), n_classes=self.n_classes_)
        if self.n_classes_ < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got 1 class")
        self._store(_fitting.fit(params, Xs, lengths, codes, "classify"))
        return self

    def _predict_proba(self, X):
        Xs, lengths = _to_sequences(X)
        return _fitting.softmax(self._fitted.outputs(Xs, lengths))

    def _predict(self, X):
        Xs, lengths = _to_sequences(X)
        return self.classes_[np.argmax(self._fitted.outputs(Xs, lengths), axis=1)]


class GRURegressor(_GRUParams, BaseRegressor):
    """GRU time series regressor for aeon collections (see the module docstring); y (n_cases,).

    Attributes after fit: model_ (the numgru GRUModel), history_, best_epoch_.
    """

    _tags = dict(_TAGS)

    def _fit(self, X, y):
        Xs, lengths = _to_sequences(X)
        y2 = np.asarray(y, np.float64).reshape(len(y), -1)
        self._store(_fitting.fit(self._params(), Xs, lengths, y2, "regress"))
        return self

    def _predict(self, X):
        Xs, lengths = _to_sequences(X)
        out = self._fitted.y_scaler.inverse(self._fitted.outputs(Xs, lengths))
        return out[:, 0]


__all__ = ["GRUClassifier", "GRURegressor"]
