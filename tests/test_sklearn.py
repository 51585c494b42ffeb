"""numgru.sklearn: scikit-learn's own estimator checks (each its own test, none expected to fail),
the three input layouts, Pipeline, GridSearchCV, clone, pickling, and learning on data with a known
answer. The checks run with small settings passed to the constructor (the defaults train up to 200
epochs); check_classifiers_train and check_regressors_train still demand real fits (accuracy above
0.83, R² above 0.5)."""

import pickle

import numpy as np
import pytest

from helpers import require

require("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import numgru as ng  # noqa: E402
from numgru.sklearn import GRUClassifier, GRURegressor  # noqa: E402

SMALL = dict(hidden_size=16, epochs=40, lr=0.02, batch_size=32, random_state=0, device="cpu")


@parametrize_with_checks([GRUClassifier(**SMALL), GRURegressor(**SMALL)])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


def _ragged(rng, n, F=2, low=3, high=12):
    """Sequences whose class is the sign of the sum of their first channel, lengths 3..11."""
    X = [rng.standard_normal((int(rng.integers(low, high)), F)) for _ in range(n)]
    y = np.array([int(x[:, 0].sum() > 0) for x in X])
    return X, y


def test_learns_from_unequal_lengths_and_every_layout(rng):
    X, y = _ragged(rng, 500)
    clf = GRUClassifier(hidden_size=16, random_state=0, device="cpu")  # else the defaults
    clf.fit(X[:400], y[:400])
    assert clf.n_channels_ == 2 and clf.input_layout_ == "list"
    assert clf.best_epoch_ < clf.n_epochs_ < 200  # early stopping ended it, the best restored
    accuracy = clf.score(X[400:], y[400:])
    assert accuracy >= 0.95, accuracy  # the rule is simple; chance is about 0.5
    proba = clf.predict_proba(X[400:])
    assert proba.shape == (100, 2) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(1)], clf.predict(X[400:]))
    # The padded 3-D layout of the same sequences gives the same predictions, as does a single
    # sequence on its own (each is computed up to its own length).
    same_length = [x[:3] for x in X[400:410]]
    np.testing.assert_array_equal(clf.predict_proba(np.stack(same_length)),
                                  clf.predict_proba(same_length))
    np.testing.assert_array_equal(clf.predict_proba(X[400:401]), proba[:1])
    with pytest.raises(ValueError, match="X has 3 channels, but GRUClassifier was fitted on 2"):
        clf.predict(np.zeros((2, 5, 3)))
    # 2-D input: univariate sequences, scikit-learn's (n_samples, n_features).
    Z = rng.standard_normal((200, 8))
    t = (Z[:, -3:].sum(axis=1) > 0).astype(int)
    clf2 = GRUClassifier(hidden_size=16, epochs=60, lr=0.01, random_state=0, device="cpu")
    clf2.fit(Z[:160], t[:160])
    assert clf2.n_features_in_ == 8 and clf2.score(Z[160:], t[160:]) >= 0.85
    # A 2-D fit predicts the same on (n, T, 1).
    assert np.array_equal(clf2.predict(Z[160:, :, None]), clf2.predict(Z[160:]))


def test_predict_proba_is_the_models_softmax(rng):
    """The estimator's probabilities are the trained GRUModel's, on the standardised inputs."""
    X, y = _ragged(rng, 60, F=3)
    clf = GRUClassifier(hidden_size=8, epochs=3, random_state=1, device="cpu").fit(X, y)
    padded, lengths = ng.pad_sequences(X, np.float64)
    valid = (np.arange(padded.shape[1])[None, :] < lengths[:, None])[:, :, None]
    cat = np.concatenate(X)
    z = np.where(valid, (padded - cat.mean(0)) / cat.std(0), 0).astype(np.float32)
    logits = clf.model_(z, lengths=lengths).astype(np.float64)
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), want, atol=2e-6)


def test_regressor_multioutput_pipeline_gridsearch_clone_pickle(rng):
    X = rng.standard_normal((150, 6, 2))
    Y = np.stack([X[:, :, 0].sum(1), X[:, -1, 1]], axis=1)  # two targets
    reg = GRURegressor(hidden_size=16, epochs=80, lr=0.01, random_state=0, device="cpu")
    reg.fit(X[:120], Y[:120])
    assert reg.predict(X[120:]).shape == (30, 2)
    assert reg.score(X[120:], Y[120:]) > 0.8
    restored = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(restored.predict(X[120:]), reg.predict(X[120:]))
    assert isinstance(restored.model_, ng.GRUModel)
    twin = clone(reg)
    assert twin.get_params() == reg.get_params() and not hasattr(twin, "model_")
    flatten = FunctionTransformer(lambda A: A[:, :, 0])  # univariate sequences as 2-D
    pipe = Pipeline([("first_channel", flatten),
                     ("gru", GRUClassifier(epochs=5, hidden_size=4, random_state=0,
                                           device="cpu"))])
    labels = (X[:, :, 0].sum(1) > 0).astype(int)
    search = GridSearchCV(pipe, {"gru__hidden_size": [4, 8], "gru__lr": [0.01]}, cv=2)
    search.fit(X, labels)
    assert search.best_params_["gru__hidden_size"] in (4, 8)
    assert search.predict(X).shape == (150,)


def test_bad_hyper_parameters_are_named():
    X, y = np.zeros((8, 4)), np.array([0, 1] * 4)
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer, got 0"):
        GRUClassifier(hidden_size=0).fit(X, y)
    with pytest.raises(ValueError, match=r"validation_fraction: expected a number in \[0, 1\)"):
        GRUClassifier(validation_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError, match="needs at least 2 classes in y, got 1 class"):
        GRUClassifier().fit(X, np.zeros(8))


def test_one_set_of_defaults():
    """The estimators' constructors (scikit-learn reads the hyper-parameters from their
    signatures, so each writes them out), numgru._fitting.DEFAULTS (what fit uses) and the
    command line's train options all hold the same defaults."""
    import inspect

    from numgru._fitting import DEFAULTS
    from numgru.cli import build_parser
    for cls in (GRUClassifier, GRURegressor):
        signature = inspect.signature(cls.__init__).parameters.values()
        assert {p.name: p.default for p in signature if p.name != "self"} == DEFAULTS
    args = build_parser().parse_args(["train", "data.ts"])
    cli = {"hidden_size": args.hidden, "num_layers": args.layers,
           "bidirectional": args.bidirectional, "reset_after": not args.reset_before,
           "dropout": args.dropout, "batch_size": args.batch_size, "optimizer": args.optimizer,
           "lr": args.lr, "weight_decay": args.weight_decay, "clip_norm": args.clip_norm}
    assert cli == {k: DEFAULTS[k] for k in cli}
