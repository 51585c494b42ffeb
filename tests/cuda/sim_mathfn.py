"""Rung 5 of the verification ladder, the math functions: numgru/_mathfn.py's float32 sigmoid and
tanh as device code under Numba's CUDA simulator, held to tests/test_mathfn.py's bound on a sample
of the float32 range (every 2^20-th bit pattern and 256 values of each range where the formulas
change, both signs) and at the special values. Run by tests/cuda/test_cuda_sim.py.

What this shows is the device path's plumbing (the overloads reached from a kernel, float32 in and
out): the simulator runs device code as Python, where a float32 takes the compiled CPU version.
test_cuda_compile.py shows that the same functions compile for sm_90 (no libdevice exp), and
test_cuda_gpu.py holds the GPU's results to the bound over test_mathfn.py's whole sweep.
"""

import numpy as np
import pytest

import sim_setup  # noqa: F401  (first: the simulator's check)

from mathfn_device import assert_within_bound, evaluate, float32_sweep
from test_mathfn import RANGES


@pytest.mark.parametrize("which,name", [(0, "sigmoid"), (1, "tanh")])
def test_bound_on_a_sample_of_the_float32_range(which, name):
    x = float32_sweep(1 << 20, RANGES, per_range=256)
    assert_within_bound(name, which, x)


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 200.0, -200.0], np.float32)
    s = evaluate(0, x)
    t = evaluate(1, x)
    assert np.isnan(s[0]) and np.isnan(t[0])
    np.testing.assert_array_equal(s[1:], np.array([1, 0, 0.5, 0.5, 1, 0], np.float32))
    np.testing.assert_array_equal(t[1:], np.array([1, -1, 0, -0.0, 1, -1], np.float32))
    assert not np.signbit(t[3]) and np.signbit(t[4])
