"""CUDA kernels against the NumPy reference under Numba's CUDA simulator, on tiny sizes.

Not collected by a plain `pytest` run (the name has no test_ prefix): tests/test_cuda_sim.py runs it
in a child process with NUMBA_ENABLE_CUDASIM=1, which Numba reads at import. Block shapes are patched
small (4x4 GEMM tiles 4 deep, 4-unit step tiles, 4-thread persistent blocks) so that the sizes below,
none a multiple of a tile, exercise partial edge tiles. The simulator runs every thread as a Python
thread: keep sizes tiny.
"""

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    raise RuntimeError("run through tests/test_cuda_sim.py: this module needs NUMBA_ENABLE_CUDASIM=1 "
                       "set before Numba is imported")

from numgru.cuda import config as cfg  # noqa: E402

# Small blocks, patched before any kernel is built (kernels are built per set of tunables).
cfg.GEMM_THREADS_X = 2
cfg.GEMM_THREADS_Y = 2
cfg.GEMM_REG_M = 2
cfg.GEMM_REG_N = 2
cfg.GEMM_TILE_K = 4
cfg.STEP_TILE_UNITS = 4
cfg.STEP_TILE_BATCH = 2
cfg.POINTWISE_THREADS = 8
cfg.PERSIST_THREADS = 4
cfg.PERSIST_KSPLIT = 2
cfg.COLSUM_THREADS = 4

from numba import cuda  # noqa: E402

import numgru as ng  # noqa: E402
from numgru import backend, reference  # noqa: E402
from numgru import cuda as gcuda  # noqa: E402
from numgru import _mathfn  # noqa: E402
from numgru.cuda.gemm import gemm  # noqa: E402
from numgru.cuda.pointwise import colsum  # noqa: E402

# Tolerances against the float64 reference. float64: a few ulps of accumulated rounding over dot
# products of at most 15 terms. float32: the inputs are float32, the reference runs in float64 on the
# same values; 1e-5 bounds float32 rounding over T=3 steps of sums of ≤ 15 terms (|terms| ≲ 3).
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
    # The device helper through a test-only kernel: σ at the extremes must be 0 and 1, not NaN.
    sigmoid = cuda.jit(device=True)(_mathfn.sigmoid)

    @cuda.jit
    def _sigmoid_test_kernel(a, out):
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = sigmoid(a[i])

    a = np.array([-800.0, -30.0, -1.0, 0.0, 1.5, 30.0, 800.0])
    out = cuda.device_array(a.shape, np.float64)
    _sigmoid_test_kernel[2, 4](cuda.to_device(a), out)
    want = np.where(a >= 0, 1 / (1 + np.exp(-np.clip(a, 0, None))),
                    np.exp(np.clip(a, None, 0)) / (1 + np.exp(np.clip(a, None, 0))))
    _check("sigmoid", out, want, np.float64)


# -- the array operations layers.py uses on the device, against numpy --

def test_device_array_operations():
    ops = gcuda.DeviceArrays()
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 2, 5))
    b = rng.standard_normal((3, 2, 4))
    da, db = ops.to_device(a), ops.to_device(b)
    np.testing.assert_array_equal(ops.to_host(ops.concat_last([da, db])),
                                  np.concatenate([a, b], axis=2))
    np.testing.assert_array_equal(ops.to_host(ops.take_last(da, 1, 4)), a[:, :, 1:4])
    np.testing.assert_array_equal(ops.to_host(ops.swap01(da)), a.swapaxes(0, 1))
    np.testing.assert_array_equal(ops.to_host(ops.mul(da, da)), a * a)
    acc = ops.to_device(a.copy())
    ops.add_into(acc, da)
    np.testing.assert_array_equal(ops.to_host(acc), 2 * a)
    ops.fill_zero(acc)
    np.testing.assert_array_equal(ops.to_host(acc), np.zeros_like(a))
    np.testing.assert_array_equal(ops.to_host(ops.zeros((2, 3), np.float32)), np.zeros((2, 3)))


def test_device_inputs_are_checked_and_cast():
    ops = gcuda.DeviceArrays()
    x = np.arange(6.0).reshape(2, 3)
    got = ops.accept_device("x", cuda.to_device(x), np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.copy_to_host(), x.astype(np.float32))
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"x: contains NaN or Inf \(1 of 6"):
        ops.accept_device("x", cuda.to_device(bad), np.float64)
    with pytest.raises(ValueError, match="x: expected a C-contiguous device array"):
        ops.accept_device("x", cuda.to_device(x)[:, 1:], np.float64)


# -- the layers on device="cuda", against the same layers on the NumPy reference backend --

def _layer_pair(cls, *args, **kwargs):
    return cls(*args, device="cuda", **kwargs), cls(*args, device="numpy", **kwargs)


def test_gru_layer_on_cuda_matches_reference_layer():
    # Two layers, bidirectional, dropout between them, lengths, batch_first: every path of layers.py
    # that moves activations around on the device (swap, concat, take, mask, add).
    kwargs = dict(num_layers=2, bidirectional=True, dropout=0.25, dtype="float64", seed=7)
    dev, ref = _layer_pair(ng.GRU, 4, 3, **kwargs)
    for name, value in dev.state_dict().items():
        np.testing.assert_array_equal(value, ref.state_dict()[name])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 4))  # (B, T, I)
    h0 = rng.standard_normal((4, 3, 3))
    lengths = [2, 1, 2]
    y, h_n = dev.forward(x, h0, lengths, train=True)
    y_r, h_r = ref.forward(x, h0, lengths, train=True)
    assert isinstance(y, np.ndarray) and isinstance(h_n, np.ndarray)
    np.testing.assert_allclose(y, y_r, **TOL[np.float64])
    np.testing.assert_allclose(h_n, h_r, **TOL[np.float64])
    dy = rng.standard_normal(y.shape)
    dh_n = rng.standard_normal(h_n.shape)
    dx, dh0 = dev.backward(dy, dh_n)
    dx_r, dh0_r = ref.backward(dy, dh_n)
    np.testing.assert_allclose(dx, dx_r, **TOL[np.float64])
    np.testing.assert_allclose(dh0, dh0_r, **TOL[np.float64])
    for name, grad in dev.grads.items():
        np.testing.assert_allclose(dev._ops.to_host(grad), ref.grads[name], err_msg=name,
                                   **TOL[np.float64])
    dev.zero_grad()
    assert not np.any(dev._ops.to_host(dev.flat_grads))


def test_gru_layer_device_arrays_in_and_out():
    dev, ref = _layer_pair(ng.GRU, 3, 2, dtype="float32", seed=8, batch_first=False)
    x = np.random.default_rng(6).standard_normal((2, 2, 3)).astype(np.float32)
    y, h_n = dev(cuda.to_device(x), return_device=True)
    assert backend.is_device_array(y) and backend.is_device_array(h_n)
    y_r, h_r = ref(x)
    np.testing.assert_allclose(y.copy_to_host(), y_r, **TOL[np.float32])
    np.testing.assert_allclose(h_n.copy_to_host(), h_r, **TOL[np.float32])
    # The parameters live on the device; a state_dict round trip goes through the host.
    assert backend.is_device_array(dev.flat_params)
    sd = {k: v * 0.5 for k, v in dev.state_dict().items()}
    dev.load_state_dict(sd)
    ref.load_state_dict(sd)
    np.testing.assert_allclose(dev(x)[0], ref(x)[0], **TOL[np.float32])


def test_grucell_on_cuda_matches_reference_cell():
    dev, ref = _layer_pair(ng.GRUCell, 4, 3, reset_after=False, dtype="float64", seed=9)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(4)  # unbatched
    h = rng.standard_normal(3)
    h1 = dev.forward(x, h, train=True)
    h1_r = ref.forward(x, h, train=True)
    np.testing.assert_allclose(h1, h1_r, **TOL[np.float64])
    dh1 = rng.standard_normal(3)
    for got, want in zip(dev.backward(dh1), ref.backward(dh1)):
        np.testing.assert_allclose(got, want, **TOL[np.float64])
    for name, grad in dev.grads.items():
        np.testing.assert_allclose(dev._ops.to_host(grad), ref.grads[name], err_msg=name,
                                   **TOL[np.float64])


def test_dispatcher_under_simulator(monkeypatch):
    usable, reason = ng.cuda_status()
    assert usable and "simulator" in reason
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.resolve("auto") == "cpu"  # the simulator is used only when asked for by name
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    assert backend.resolve("auto") == "cuda"
