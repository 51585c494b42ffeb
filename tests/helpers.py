"""Helpers shared by the tests: oracle imports and random problems."""

import importlib
import importlib.util
import os

import numpy as np
import pytest


def require(module_name):
    """Import a test oracle (torch, onnxruntime). `make test` installs them and sets
    NUMGRU_REQUIRE_ORACLES=1, so there a missing oracle fails instead of skipping."""
    if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
        return importlib.import_module(module_name)
    return pytest.importorskip(module_name)


def random_layer_args(rng, T, B, I, H, dtype=np.float64, lengths=None, scale=0.5):
    """Arguments of a backend's forward for one layer, one direction (time-major)."""
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (rng.standard_normal((B, H)) * scale).astype(dtype)
    w_ih = (rng.standard_normal((3 * H, I)) * scale).astype(dtype)
    w_hh = (rng.standard_normal((3 * H, H)) * scale).astype(dtype)
    b_ih = (rng.standard_normal(3 * H) * scale).astype(dtype)
    b_hh = (rng.standard_normal(3 * H) * scale).astype(dtype)
    if lengths is None:
        lengths = np.full(B, T, np.int64)
    return x, h0, w_ih, w_hh, b_ih, b_hh, np.asarray(lengths, np.int64)



def require_numba_cuda():
    """numba-cuda is needed to simulate the CUDA kernels; `make test` installs it (a missing one
    fails there, as a missing oracle does)."""
    if importlib.util.find_spec("numba_cuda") is None:
        if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
            pytest.fail("numba-cuda is not installed (pip install -e '.[test]')")
        pytest.skip("numba-cuda is not installed: the CUDA kernels cannot be simulated")


def assert_close(name, got, want, tol):
    """max|got - want| <= tol · max(1, max|want|): one tolerance relative to the tensor's own scale
    (the comparisons' shared rule; each test file says why its tol is what it is). NaN fails."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    if not want.size:
        return
    err = float(np.max(np.abs(got - want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol:g} × {scale:.3g}"


def central_differences(f, value, eps=1e-6):
    """dF/d(value) by central differences, entry by entry: f() is evaluated with each entry of
    `value` (an array that f reads) moved by ±eps in place, then restored."""
    flat = value.reshape(-1)
    numeric = np.empty(flat.size)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        numeric[i] = (plus - minus) / (2 * eps)
    return numeric.reshape(value.shape)
