"""The argument checks that numgru's constructors and functions share, each written once with its
one error message ("hidden_size: expected a positive integer, got 0"). Not for checks of one
argument's own meaning (shapes, dtypes, names), which stay beside the code that reads it.
"""

import numpy as np


def is_int(value, least):
    """Whether value is a Python or NumPy integer (not a bool) of at least `least`."""
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
            and value >= least)


def is_number(value):
    """Whether value is a Python or NumPy integer or float (not a bool)."""
    return (not isinstance(value, (bool, np.bool_))
            and isinstance(value, (int, float, np.integer, np.floating)))


def positive_int(name, value, or_none=False):
    """int(value) for an integer >= 1 (or None, where or_none allows it); ValueError otherwise."""
    if or_none and value is None:
        return None
    if not is_int(value, 1):
        raise ValueError(f"{name}: expected a positive integer{' or None' if or_none else ''}, "
                         f"got {value!r}")
    return int(value)


def non_negative_int(name, value):
    """int(value) for an integer >= 0; ValueError otherwise."""
    if not is_int(value, 0):
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def positive_number(name, value, or_none=False):
    """float(value) for a number > 0 (or None, where or_none allows it); ValueError otherwise."""
    if or_none and value is None:
        return None
    if not (is_number(value) and value > 0):
        raise ValueError(f"{name}: expected a positive number{' or None' if or_none else ''}, "
                         f"got {value!r}")
    return float(value)


def fraction(name, value):
    """float(value) for a number in [0, 1) (a dropout rate, a held-out share); ValueError
    otherwise."""
    if not (is_number(value) and 0 <= value < 1):
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)
