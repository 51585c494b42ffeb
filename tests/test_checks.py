"""numgru/_checks.py: the shared argument checks, their one message each, and where they draw the
line (bools are not numbers; NumPy integers and floats are)."""

import numpy as np
import pytest

from numgru import _checks


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(1)])
def test_positive_int_takes_python_and_numpy_integers(value):
    out = _checks.positive_int("n", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -1, 1.0, True, np.True_, "2", None])
def test_positive_int_refuses_with_the_one_message(value):
    with pytest.raises(ValueError, match=rf"^n: expected a positive integer, got {value!r}$"):
        _checks.positive_int("n", value)


def test_or_none_passes_none_and_says_so():
    assert _checks.positive_int("n", None, or_none=True) is None
    assert _checks.positive_number("x", None, or_none=True) is None
    with pytest.raises(ValueError, match=r"^n: expected a positive integer or None, got 0$"):
        _checks.positive_int("n", 0, or_none=True)
    with pytest.raises(ValueError, match=r"^x: expected a positive number or None, got 0$"):
        _checks.positive_number("x", 0, or_none=True)


def test_non_negative_int_positive_number_and_fraction():
    assert _checks.non_negative_int("k", np.int32(0)) == 0
    with pytest.raises(ValueError, match=r"^k: expected a non-negative integer, got -1$"):
        _checks.non_negative_int("k", -1)
    assert _checks.positive_number("x", np.float32(0.5)) == 0.5
    assert _checks.positive_number("x", float("inf")) == float("inf")
    for bad in (0.0, float("nan"), False, "1.0"):
        with pytest.raises(ValueError, match=r"^x: expected a positive number, got"):
            _checks.positive_number("x", bad)
    assert _checks.fraction("p", 0) == 0.0
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match=r"^p: expected a number in \[0, 1\), got"):
            _checks.fraction("p", bad)
