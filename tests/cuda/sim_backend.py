"""Rung 5 of the verification ladder, the kernels: the CUDA backend (numgru/cuda: __init__.py's
forward and backward on both recurrence paths, gemm.py, step.py, persistent.py, pointwise.py and
gates.py) against the NumPy reference under Numba's CUDA simulator, on tiny sizes. Run by
tests/cuda/test_cuda_sim.py (see sim_setup.py).
"""

import numpy as np
import pytest

import sim_setup  # noqa: F401  (first: the simulator's check and the small tunables)
from sim_setup import cfg

from numba import cuda

from numgru import _mathfn, reference
from numgru import cuda as gcuda
from numgru.cuda.gemm import gemm
from numgru.cuda.pointwise import colsum

# Tolerances against the float64 reference. float64: a few ulps of accumulated rounding over dot
# products of at most 15 terms. float32: the inputs are float32, the reference runs in float64 on
# the same values; 1e-5 bounds float32 rounding over T=3 steps of sums of ≤ 15 terms (|terms| ≲ 3).
TOL = {np.float64: dict(rtol=1e-11, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}

T, B, I, H = 3, 3, 5, 5  # B·T = 9 GEMM rows over 4-row tiles; H = 5 over 4-unit tiles
LENGTHS = np.array([3, 1, 2], np.int64)  # one full, one of a single step, one in between


@pytest.fixture
def patched(monkeypatch):
    """Yields a setter for tunables that are restored after the test."""
    def set_(**values):
        for name, value in values.items():
            monkeypatch.setattr(cfg, name, value)
    return set_


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) * 0.5
    w_ih = rng.standard_normal((3 * H, I)) * 0.5
    w_hh = rng.standard_normal((3 * H, H)) * 0.5
    b_ih = rng.standard_normal(3 * H) * 0.5
    b_hh = rng.standard_normal(3 * H) * 0.5
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    cast = [a.astype(dtype) for a in (x, h0, w_ih, w_hh, b_ih, b_hh)]
    return cast, LENGTHS, dy.astype(dtype), dh_n.astype(dtype)


def _check(name, got, want, dtype):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else np.asarray(got)
    assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {dtype}"
    np.testing.assert_allclose(got, want, err_msg=name, **TOL[dtype])


PATHS = {
    # the persistent kernel, all of W_hh in the one block the simulator runs
    "persistent": dict(PERSIST_ENABLE=True, PERSIST_UNITS_PER_BLOCK=None),
    # the persistent kernel with 2 units per slice: 3 slices (the last partial) taken in turn by
    # one block, weights reloaded per step: the path of a grid smaller than planned
    "persistent-sliced": dict(PERSIST_ENABLE=True, PERSIST_UNITS_PER_BLOCK=2),
    # one fused kernel per step (two for reset_after=False), the pointwise + GEMM backward
    "per-step": dict(PERSIST_ENABLE=False),
}
CASES = [(path, ra, rev, np.float64) for path in PATHS for ra in (True, False)
         for rev in (False, True)]
# float32 once per path, alternating the variant and the direction.
CASES += [("persistent", True, True, np.float32), ("persistent-sliced", False, False, np.float32),
          ("per-step", False, True, np.float32)]


@pytest.mark.parametrize("path,reset_after,reverse,dtype", CASES)
def test_layer_forward_backward_matches_reference(patched, path, reset_after, reverse, dtype):
    patched(**PATHS[path])
    args, lengths, dy, dh_n = _problem(dtype)
    y, h_n, cache = gcuda.forward(*args, lengths, reverse=reverse, reset_after=reset_after,
                                  train=True)
    ref_args = [a.astype(np.float64) for a in args]
    y_r, h_r, cache_r = reference.forward(*ref_args, lengths, reverse=reverse,
                                          reset_after=reset_after, train=True)
    _check("y", y, y_r, dtype)
    _check("h_n", h_n, h_r, dtype)
    _check("cache.h_prev", cache.h_prev, cache_r.h_prev, dtype)
    _check("cache.gates", cache.gates, cache_r.gates, dtype)  # (4, T, B, H): r, z, n, hn
    grads = gcuda.backward(cache, dy, dh_n)
    grads_r = reference.backward(cache_r, dy.astype(np.float64), dh_n.astype(np.float64))
    for name, got, want in zip(("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), grads, grads_r):
        _check(name, got, want, dtype)


def test_inference_forward_keeps_nothing_and_matches(patched):
    patched(**PATHS["persistent"])
    args, lengths, _, _ = _problem(np.float64, seed=1)
    y, h_n, cache = gcuda.forward(*args, lengths, train=False)
    y_r, h_r, _ = reference.forward(*args, lengths, train=False)
    assert cache is None
    _check("y", y, y_r, np.float64)
    _check("h_n", h_n, h_r, np.float64)


@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (False, False), (True, False)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_kernel_all_forms(trans_a, trans_b, dtype):
    # M, N, K = 5, 7, 6: partial 4x4 output tiles and a partial 4-deep K slice.
    rng = np.random.default_rng(2)
    M, N, K = 5, 7, 6
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    bias = rng.standard_normal(N).astype(dtype)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    g = gcuda.kernels(dtype).gemm
    c = cuda.to_device(c0)
    gemm(g, cuda.to_device(a), cuda.to_device(b), c, trans_a, trans_b)
    _check("c = ab", c, op_a.astype(np.float64) @ op_b, dtype)
    c = cuda.to_device(c0)
    gemm(g, cuda.to_device(a), cuda.to_device(b), c, trans_a, trans_b, bias=cuda.to_device(bias),
         accumulate=True)
    _check("c += ab + bias", c, c0 + op_a.astype(np.float64) @ op_b + bias, dtype)


def test_colsum_kernel():
    a = np.random.default_rng(3).standard_normal((7, 6))
    out = cuda.device_array(6, np.float64)
    colsum(gcuda.kernels(np.float64).pointwise, cuda.to_device(a), out)
    _check("colsum", out, a.sum(axis=0), np.float64)


def test_sigmoid_device_function_saturates_without_overflow():
    # _mathfn's σ in device code, float64: at the extremes 0 and 1, not NaN (the float32 bound is
    # sim_mathfn.py's).
    @cuda.jit
    def _sigmoid_test_kernel(a, out):
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = _mathfn.sigmoid(a[i])

    a = np.array([-800.0, -30.0, -1.0, 0.0, 1.5, 30.0, 800.0])
    out = cuda.device_array(a.shape, np.float64)
    _sigmoid_test_kernel[2, 4](cuda.to_device(a), out)
    want = np.where(a >= 0, 1 / (1 + np.exp(-np.clip(a, 0, None))),
                    np.exp(np.clip(a, None, 0)) / (1 + np.exp(np.clip(a, None, 0))))
    _check("sigmoid", out, want, np.float64)


def test_launch_time_tunables_build_no_kernels_again(monkeypatch):
    """Only the tunables a family is compiled with key its kernels: switching the persistent
    path off or moving its batch limit (read at launch) reuses every compiled kernel, while a
    GEMM tile change builds new GEMM kernels and nothing else."""
    before = gcuda.kernels(np.float64)
    monkeypatch.setattr(cfg, "PERSIST_ENABLE", not cfg.PERSIST_ENABLE)
    monkeypatch.setattr(cfg, "PERSIST_MAX_BATCH", cfg.PERSIST_MAX_BATCH + 1)
    monkeypatch.setattr(cfg, "COLSUM_THREADS", cfg.COLSUM_THREADS * 2)
    assert all(a is b for a, b in zip(gcuda.kernels(np.float64), before))
    monkeypatch.setattr(cfg, "GEMM_TILE_K", cfg.GEMM_TILE_K * 2)
    after = gcuda.kernels(np.float64)
    assert after.gemm is not before.gemm
    assert all(a is b for a, b in zip(after[1:], before[1:]))
