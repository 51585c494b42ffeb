"""Fixtures shared by the tests."""

import os

# scikit-learn's array-API estimator check runs only when SciPy's array API support is switched
# on, which SciPy reads once, at its import: set it before any test imports scipy, so that
# check_estimator runs that check instead of skipping it (numpy inputs behave the same).
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# The CPU passes' part counts by their fixed rule, not by this machine's measured plan, so that
# tests asserting a partition get it (tests/test_cpu_paths.py switches the plan on where it tests it;
# results are the same bits either way).
os.environ.setdefault("NUMGRU_PLAN", "off")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
