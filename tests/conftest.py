"""Fixtures shared by the tests."""

import os

# scikit-learn's array-API estimator check runs only when SciPy's array API support is switched
# on, which SciPy reads once, at its import: set it before any test imports scipy, so that
# check_estimator runs that check instead of skipping it (numpy inputs behave the same).
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
