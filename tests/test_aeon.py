"""numgru.aeon: aeon's own estimator checks (aeon.testing; each its own test), aeon's layouts
(n_cases, n_channels, n_timepoints) and unequal-length lists, and the capability tags."""

import numpy as np
import pytest

from helpers import require

require("aeon")

from aeon.testing.estimator_checking import parametrize_with_checks  # noqa: E402

import numgru.sklearn  # noqa: E402
from numgru.aeon import GRUClassifier, GRURegressor  # noqa: E402


@parametrize_with_checks([GRUClassifier, GRURegressor])
def test_aeon_check_estimator(check):
    result = check()
    if isinstance(result, str):
        # check_*_against_expected_results compares with probabilities aeon stores for its own
        # estimators; for any other estimator it returns this note and checks nothing.
        assert result.startswith("No stored results for GRU"), result
        pytest.skip(result)


def test_tags_and_layouts(rng):
    for cls in (GRUClassifier, GRURegressor):
        tags = cls.get_class_tags()
        assert tags["capability:multivariate"] and tags["capability:unequal_length"]
    # Unequal lengths, 3 channels, aeon's (n_channels, n_timepoints_i) per case.
    X = [rng.standard_normal((3, int(rng.integers(4, 15)))) for _ in range(300)]
    y = np.array(["up" if x[1].sum() > 0 else "down" for x in X])
    clf = GRUClassifier(hidden_size=16, random_state=0, device="cpu").fit(X[:250], y[:250])
    assert list(clf.classes_) == ["down", "up"]
    assert np.mean(clf.predict(X[250:]) == y[250:]) >= 0.9
    # aeon's layout is the transpose of numgru.sklearn's: the same settings, the same model.
    same = numgru.sklearn.GRUClassifier(hidden_size=16, random_state=0, device="cpu")
    same.fit([x.T for x in X[:250]], y[:250])
    np.testing.assert_array_equal(same.predict_proba([x.T for x in X[250:]]),
                                  clf.predict_proba(X[250:]))
    # An equal-length 3-D collection and its univariate 2-D form.
    Z = rng.standard_normal((120, 1, 10))
    t = Z[:, 0, -4:].sum(axis=1)
    reg = GRURegressor(hidden_size=16, random_state=0, device="cpu").fit(Z[:100], t[:100])
    pred = reg.predict(Z[100:])
    assert pred.shape == (20,)
    np.testing.assert_array_equal(reg.predict(Z[100:, 0, :]), pred)
    assert 1 - np.mean((pred - t[100:]) ** 2) / np.var(t[100:]) > 0.8


def test_the_hyper_parameters_are_numgru_sklearn_s():
    """aeon and scikit-learn both read an estimator's hyper-parameters from its constructor's
    signature, so each module writes the list out: it must be numgru._fitting.DEFAULTS, the
    defaults fit uses (test_sklearn checks numgru.sklearn's and the command line's)."""
    import inspect

    from numgru._fitting import DEFAULTS
    for cls in (GRUClassifier, GRURegressor):
        signature = inspect.signature(cls.__init__).parameters.values()
        assert {p.name: p.default for p in signature if p.name != "self"} == DEFAULTS
        assert cls().get_params() == DEFAULTS
