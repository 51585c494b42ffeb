"""The CUDA kernels on a real GPU, at real sizes, against the NumPy reference (marker `gpu`).

Each test skips, saying why, where no usable GPU is present (CI has none). Both recurrence paths are
forced in turn through the tunables, so each is checked whatever size the dispatcher would pick.
"""

import numpy as np
import pytest

import numgru as ng

from helpers import assert_close
from numgru import backend, reference

pytestmark = pytest.mark.gpu


def _need_gpu():
    usable, simulated, reason = backend._probe_cuda()
    if not usable or simulated:
        pytest.skip(f"no real CUDA GPU: {reason}")


# Same measure as the CPU tests (max error ≤ tol × max(1, max|want|)); float32 tolerances are those
# of tests/test_cpu_vs_reference.py at its sizes, and 5x looser at the real sizes, whose dot products
# run over up to 300 terms and whose weight gradients sum over up to 1600 rows.
SMALL = {np.float64: (1e-12, 1e-12), np.float32: (2e-6, 4e-6)}
LARGE = {np.float64: (1e-11, 1e-11), np.float32: (1e-5, 2e-5)}
CASES = [  # T, B, I, H, tolerances
    (12, 5, 3, 16, SMALL),
    (9, 3, 40, 13, SMALL),
    (40, 4, 70, 300, LARGE),  # small batch: the persistent kernel's target
    (25, 64, 64, 136, LARGE),  # large batch, H not a multiple of any tile
]
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
        for name, got, want in zip(NAMES, grads, grads_r):
            _close(name, got, want, tol_g)


def test_gru_layer_on_gpu_matches_cpu_layer():
    _need_gpu()
    kwargs = dict(num_layers=2, bidirectional=True, dtype="float64", seed=3)
    gpu, cpu = ng.GRU(32, 64, device="cuda", **kwargs), ng.GRU(32, 64, device="cpu", **kwargs)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 30, 32))
    lengths = rng.integers(1, 31, 8)
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
