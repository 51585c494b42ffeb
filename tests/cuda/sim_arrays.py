"""Rung 5 of the verification ladder, the layers' side: numgru/cuda/arrays.py (DeviceArrays, the
array operations layers.py runs on device arrays) against numpy, and GRU and GRUCell on
device="cuda" against the same layers on the NumPy reference backend, under Numba's CUDA
simulator; and backend.py's answers there. Run by tests/cuda/test_cuda_sim.py (see sim_setup.py).
"""

import numpy as np
import pytest

import sim_setup  # noqa: F401  (first: the simulator's check and the small tunables)

from numba import cuda

import numgru as ng
from numgru import backend
from numgru import cuda as gcuda
from sim_backend import TOL  # the same sizes or smaller, the same reasons


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
