"""Error bounds of the kernels' float32 sigmoid and tanh (numgru/_mathfn.py) over the float32 range.

The truth is libm's exp/tanh in float64 (correctly rounded to well below a float32 ulp). Every
float32 bit pattern is visited with a prime stride (~44 million values, all signs, exponents and
mantissa patterns mixed), and every float32 in the ranges where the formulas change (around 0, the
series threshold 0.25, tanh's saturation at 9.5, the flush to 0 at 87) is visited exhaustively.

Bounds asserted (1 ulp of float32 is 2^-23 relative ≈ 1.19e-7, at most):
- relative error <= 2.5e-7 (about 2 ulp) wherever the true value is a normal float32;
- where the true value is below the normal range (sigmoid, x < -87.3): absolute error < 2^-126;
- NaN gives NaN; sigmoid(+inf) = 1, sigmoid(-inf) = 0, tanh(±inf) = ±1, tanh(±0) = ±0.
"""

import math

import numpy as np
import pytest
from numba import njit

from numgru._mathfn import sigmoid, sigmoid_array, tanh, tanh_array

TINY = 2.0 ** -126  # smallest normal float32
REL_BOUND = 2.5e-7


@njit(error_model="numpy")
def _sweep(which, lo, hi, stride):
    """Max relative error over bit patterns lo..hi (uint32 step stride), with counts of failures."""
    bits = np.empty(1, np.uint32)
    as_float = bits.view(np.float32)
    worst_rel = 0.0
    worst_x = 0.0
    bad_tiny = 0
    bad_nan = 0
    i = np.int64(lo)
    while i < hi:
        bits[0] = np.uint32(i)
        x = as_float[0]
        got = sigmoid(x) if which == 0 else tanh(x)
        xd = np.float64(x)
        if x != x:
            if got == got:
                bad_nan += 1
        else:
            if which == 0:
                want = 1.0 / (1.0 + math.exp(-xd)) if xd >= 0 else math.exp(xd) / (1.0 + math.exp(xd))
            else:
                want = math.tanh(xd)
            if abs(want) >= TINY:
                rel = abs(np.float64(got) - want) / abs(want)
                if rel > worst_rel:
                    worst_rel = rel
                    worst_x = xd
            elif abs(np.float64(got) - want) >= TINY:
                bad_tiny += 1
        i += stride
    return worst_rel, worst_x, bad_tiny, bad_nan


def _f32_bits(v):
    return int(np.array(v, np.float32).view(np.uint32))


RANGES = [  # (low, high) in float32 values, at most a few million each; both signs are swept
    (0.0, 1e-44), (1e-4, 1.01e-4), (0.2, 0.3), (9.0, 10.0), (86.0, 89.0), (1.0, 1.01),
]


@pytest.mark.parametrize("which,name", [(0, "sigmoid"), (1, "tanh")])
def test_error_over_the_float32_range(which, name):
    worst, x, bad_tiny, bad_nan = _sweep(which, 0, 2 ** 32, 97)
    assert bad_nan == 0, f"{name}: NaN input gave a number"
    assert bad_tiny == 0, f"{name}: results below the normal range off by >= 2^-126"
    assert worst <= REL_BOUND, f"{name}: relative error {worst:.3g} at x = {x!r}"


@pytest.mark.parametrize("which,name", [(0, "sigmoid"), (1, "tanh")])
@pytest.mark.parametrize("lo,hi", RANGES)
def test_error_exhaustive_where_the_formulas_change(which, name, lo, hi):
    for sign in (0, 1 << 31):
        worst, x, bad_tiny, bad_nan = _sweep(which, _f32_bits(lo) | sign, (_f32_bits(hi) | sign) + 1, 1)
        assert bad_tiny == 0 and bad_nan == 0
        assert worst <= REL_BOUND, f"{name}: relative error {worst:.3g} at x = {x!r}"


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 200.0, -200.0], np.float32)
    s = sigmoid_array(x)
    t = tanh_array(x)
    assert np.isnan(s[0]) and np.isnan(t[0])
    np.testing.assert_array_equal(s[1:], np.array([1, 0, 0.5, 0.5, 1, 0], np.float32))
    np.testing.assert_array_equal(t[1:], np.array([1, -1, 0, -0.0, 1, -1], np.float32))
    assert not np.signbit(t[3]) and np.signbit(t[4])
    assert s.dtype == np.float32 and t.dtype == np.float32


def test_float64_uses_libm_accuracy():
    x = np.random.default_rng(0).standard_normal(10000) * 20
    np.testing.assert_allclose(sigmoid_array(x), 1 / (1 + np.exp(-x)), rtol=1e-15, atol=0)
    np.testing.assert_allclose(tanh_array(x), np.tanh(x), rtol=1e-15, atol=0)
