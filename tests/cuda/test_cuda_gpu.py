"""Rung 5 of the verification ladder on a real GPU (marker `gpu`): the CUDA kernels at real sizes
against the NumPy reference, the layers against the reference layers, and _mathfn's float32 sigmoid and
tanh as GPU code held to tests/test_mathfn.py's bound over its whole sweep.

Each test skips, saying why, where no usable GPU is present (CI has none); tools/gpu_check.sh runs
them where one is. Both recurrence paths are forced in turn through the tunables, so each is
checked whatever size the dispatcher would pick. `tools/gpu_check.sh --dry-run` sets
NUMGRU_GPU_CHECK_DRY_RUN=1 beside NUMBA_ENABLE_CUDASIM=1: then they run under the simulator, on one
tiny size with the sim modules' small tunables, which checks the check itself, not a GPU.
"""

import os

import numpy as np
import pytest

import numgru as ng

from helpers import assert_close
from numgru import backend, reference

pytestmark = pytest.mark.gpu
DRY_RUN = os.environ.get("NUMGRU_GPU_CHECK_DRY_RUN") == "1"
if DRY_RUN:
    import sim_setup  # noqa: F401  (the simulator's check and the small tunables)


def _need_gpu():
    usable, simulated, reason = backend._probe_cuda()
    if DRY_RUN and simulated:
        return
    if not usable or simulated:
        pytest.skip(f"no real CUDA GPU: {reason}")


# Same measure as the CPU tests (max error ≤ tol × max(1, max|want|)); float32 tolerances are
# those of tests/test_cpu.py at its sizes, and 5x looser at the real sizes, whose dot products
# run over up to 300 terms and whose weight gradients sum over up to 1600 rows.
SMALL = {np.float64: (1e-12, 1e-12), np.float32: (2e-6, 4e-6)}
LARGE = {np.float64: (1e-11, 1e-11), np.float32: (1e-5, 2e-5)}
CASES = [  # T, B, I, H, tolerances
    (12, 5, 3, 16, SMALL),
    (9, 3, 40, 13, SMALL),
    (40, 4, 70, 300, LARGE),  # small batch: the persistent kernel's target
    (25, 64, 64, 136, LARGE),  # large batch, H not a multiple of any tile
] if not DRY_RUN else [(3, 2, 4, 5, SMALL)]
NAMES = ["dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"]


def _close(name, got, want, tol):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else got
    assert_close(name, got, want, tol)


@pytest.mark.parametrize("persist", [True, False], ids=["persistent", "per-step"])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}B{}I{}H{}".format(*c[:4]))
def test_cuda_matches_reference_on_gpu(monkeypatch, persist, reset_after, dtype, case):
    _need_gpu()
    from numgru.cuda import config as cfg
    from numgru import cuda as gcuda
    monkeypatch.setattr(cfg, "PERSIST_ENABLE", persist)
    monkeypatch.setattr(cfg, "PERSIST_MAX_BATCH", 1 << 20)  # let the persistent path take any B
    T, B, I, H, tols = case
    rng = np.random.default_rng(T * 1000 + B * 10 + H)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[0] = T
    args = [rng.standard_normal(s).astype(dtype) * 0.5 for s in
            [(T, B, I), (B, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]]
    args64 = [a.astype(np.float64) for a in args]
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    for reverse in (False, True):
        y_r, h_r, cache_r = reference.forward(*args64, lengths, reverse, reset_after, train=True)
        grads_r = reference.backward(cache_r, dy, dh_n)
        y, h_n, cache = gcuda.forward(*args, lengths, reverse, reset_after, train=True)
        tol_y, tol_g = tols[dtype]
        _close("y", y, y_r, tol_y)
        _close("h_n", h_n, h_r, tol_y)
        grads = gcuda.backward(cache, dy.astype(dtype), dh_n.astype(dtype))
        # The path asked for is the path that ran (the persistent plan declines silently when
        # W_hh does not fit the co-resident blocks: every case here fits a current GPU).
        for kind in ("forward", "backward"):
            assert gcuda.last_path[kind].startswith("persistent") == persist, gcuda.last_path
        for name, got, want in zip(NAMES, grads, grads_r):
            _close(name, got, want, tol_g)


def test_gru_layer_on_gpu_matches_the_reference_layer():
    """Against the NumPy reference layer (device="numpy"), not the CPU layer: the CPU and CUDA
    kernels share numgru/_gates.py, so a fault there would be in both."""
    _need_gpu()
    I, H, B, T = (32, 64, 8, 30) if not DRY_RUN else (4, 5, 2, 3)
    kwargs = dict(num_layers=2, bidirectional=True, dtype="float64", seed=3)
    gpu, cpu = ng.GRU(I, H, device="cuda", **kwargs), ng.GRU(I, H, device="numpy", **kwargs)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I))
    lengths = rng.integers(1, T + 1, B)
    y, h = gpu.forward(x, lengths=lengths, train=True)
    y_c, h_c = cpu.forward(x, lengths=lengths, train=True)
    np.testing.assert_allclose(y, y_c, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(h, h_c, rtol=1e-10, atol=1e-11)
    dy = rng.standard_normal(y.shape)
    for got, want in zip(gpu.backward(dy), cpu.backward(dy)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)
    for name, grad in gpu.grads.items():
        np.testing.assert_allclose(grad.copy_to_host(), cpu.grads[name], rtol=1e-10, atol=1e-11,
                                   err_msg=name)


@pytest.mark.parametrize("which,name", [(0, "sigmoid"), (1, "tanh")])
def test_mathfn_bound_on_the_gpu(which, name):
    # tests/test_mathfn.py's sweep (every 97th float32 bit pattern, and every float32 of the
    # ranges where the formulas change), computed by the GPU: NVVM contracts multiply-adds into
    # FMAs, which the CPU code does not, so the GPU's code is checked on its own.
    _need_gpu()
    from mathfn_device import assert_within_bound, float32_sweep
    from test_mathfn import RANGES
    x = float32_sweep(97, RANGES) if not DRY_RUN else float32_sweep(1 << 22, RANGES, 64)
    worst = assert_within_bound(name, which, x)
    print(f"{name}: worst relative error on the GPU {worst:.3g}")
