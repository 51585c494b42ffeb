"""Rung 2 of the verification ladder: the Numba CPU kernels against the NumPy reference.

Both backends get the same inputs; the reference always computes in float64 (the truth), the CPU
kernels in the dtype under test. Errors are measured per tensor relative to that tensor's largest
magnitude, max|got - want| <= tol * max(1, max|want|), with tol:
- float64: 1e-12. Only the summation order differs (BLAS blocking vs NumPy's), a few ulps per
  dot product of at most ~100 terms, amplified at most modestly by the recurrence.
- float32: outputs and states 2e-6, gradients 4e-6. Each GEMM of K <= 40 terms rounds to
  ~sqrt(K)·6e-8 ≈ 4e-7 relative, and T = 12 recurrent steps compound that in the state (bounded by
  |h| <= 1); the gradients run the recurrence backwards and sum T·B rows, relative to their own
  (larger) magnitude. Seen on these cases: 4.9e-7 (outputs) and 5.1e-7 (gradients); the
  tolerances leave a factor of 4 to 8 for other BLAS kernels and summation orders.
"""

import numpy as np
import pytest

from numgru import reference

from numgru.cpu import kernels as cpu

from helpers import random_layer_args, assert_close

TOL = {np.float64: {"y": 1e-12, "h_n": 1e-12, "grad": 1e-12},
       np.float32: {"y": 2e-6, "h_n": 2e-6, "grad": 4e-6}}
NAMES = ["dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"]


CASES = [  # T, B, I, H, lengths
    (12, 4, 7, 9, [12, 12, 12, 12]),
    (12, 5, 3, 16, [12, 1, 7, 3, 12]),
    (1, 1, 1, 1, [1]),
    (9, 3, 40, 13, [1, 1, 1]),
    (5, 40, 6, 60, [5, 1] * 20),  # B·H > 2048: the per-step GEMM reads W_hh transposed
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}B{}I{}H{}".format(*c[:4]))
def test_cpu_matches_reference(dtype, reset_after, reverse, case):
    T, B, I, H, lengths = case
    rng = np.random.default_rng(T * 1000 + B * 100 + H)
    args64 = random_layer_args(rng, T, B, I, H, np.float64, lengths, scale=0.6)
    # The dtype under test rounds the inputs; the reference then works on those rounded values.
    args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in args64]
    args64 = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in args]
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))

    y_ref, h_ref, cache_ref = reference.forward(*args64, reverse, reset_after, train=True)
    grads_ref = reference.backward(cache_ref, dy, dh_n)
    y, h_n, cache = cpu.forward(*args, reverse, reset_after, train=True)
    assert y.dtype == dtype and h_n.dtype == dtype
    grads = cpu.backward(cache, dy.astype(dtype), dh_n.astype(dtype))

    tol = TOL[dtype]
    assert_close("y", y, y_ref, tol["y"])
    assert_close("h_n", h_n, h_ref, tol["h_n"])
    for name, got, want in zip(NAMES, grads, grads_ref):
        assert got.dtype == dtype, name
        assert_close(name, got, want, tol["grad"])
    # Inference (train=False) computes the same outputs as training.
    y_inf, h_inf, none = cpu.forward(*args, reverse, reset_after, train=False)
    assert none is None
    assert np.array_equal(y_inf, y) and np.array_equal(h_inf, h_n)


def test_padding_outputs_are_zero_and_state_stops_at_length():
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 3, 2, 5
    args = random_layer_args(rng, T, B, I, H, np.float32, [6, 2, 4])
    y, h_n, _ = cpu.forward(*args, False, True)
    assert np.all(y[2:, 1] == 0) and np.all(y[4:, 2] == 0)
    np.testing.assert_array_equal(h_n[1], y[1, 1])
    np.testing.assert_array_equal(h_n[2], y[3, 2])
    # Reverse direction: the output at step 0 is the state after the whole valid part.
    y_r, h_r, _ = cpu.forward(*args, True, True)
    np.testing.assert_array_equal(h_r, y_r[0])
    assert np.all(y_r[2:, 1] == 0)


@pytest.mark.parametrize("reset_after", [True, False])
def test_training_cache_stays_within_its_memory_budget(reset_after):
    """Beyond the outputs, the cache may hold T·B·(4H + I) values per layer and direction: it
    creates only the gates (r, z, n, hn: 4H) and references x, y and h0 without copies."""
    T, B, I, H = 7, 3, 5, 6
    args = random_layer_args(np.random.default_rng(0), T, B, I, H, np.float32)
    y, h_n, cache = cpu.forward(*args, False, reset_after, train=True)
    x, h0 = args[0], args[1]
    assert cache.x is x and cache.y is y and cache.h0 is h0
    created = [v for k, v in vars(cache).items() if isinstance(v, np.ndarray)
               and not any(v is ref for ref in (x, y, h0, args[2], args[3], args[6]))]
    assert sum(a.size for a in created) == T * B * 4 * H
    assert all(a.base is None or not np.shares_memory(a, y) for a in created)
