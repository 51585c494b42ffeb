"""numgru/backend.py and the backend contract (numgru/contract.py): the three backends expose the
contract's functions with its exact signatures and fill its training cache in its one layout, and
the dispatcher maps device names, "auto" and NUMGRU_DEVICE to them, with named errors otherwise.

The numbers the backends compute are the ladder's business (tests/README.md: rung 1 for the
reference, rung 2 for cpu and cuda); here the cache's layout is checked against the reference,
whose forward keeps r, z, n and hn in plain NumPy. Runs without a GPU: the CUDA package is imported
(which needs numba-cuda, not a GPU) but not run.
"""

import importlib.util
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import numgru as ng
from numgru import backend, contract, reference
import numgru.cpu as cpu
from helpers import random_layer_args, require_numba_cuda


def _backends():
    require_numba_cuda()
    from numgru import cuda
    return {"numpy": reference, "cpu": cpu, "cuda": cuda}


# -- the contract --

@pytest.mark.parametrize("function", sorted(contract.FUNCTIONS))
def test_every_backend_has_the_contract_signature(function):
    for device, module in _backends().items():
        got = str(inspect.signature(getattr(module, function)))
        assert got == contract.FUNCTIONS[function], f"{device}.{function}{got}"


def test_dispatcher_hands_out_the_contract_modules(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.get("numpy") is reference
    assert backend.get("cpu") is cpu


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_cpu_cache_has_the_reference_layout(rng, reset_after, reverse):
    # gates (4, T, B, H): r, z, n, hn per step, indexed by t, 0 at invalid steps; float64, so
    # that only the summation order separates the two (tolerance as tests/test_cpu.py's).
    T, B, I, H = 5, 3, 4, 6
    args = random_layer_args(rng, T, B, I, H, lengths=[5, 2, 3])
    _, _, want = reference.forward(*args, reverse, reset_after, train=True)
    _, _, got = cpu.forward(*args, reverse, reset_after, train=True)
    for cache in (want, got):
        assert isinstance(cache, contract.GRUCache)
        assert cache.gates.shape == (4, T, B, H)
        assert (cache.h_prev is None) != (cache.y is None and cache.h0 is None)
    np.testing.assert_allclose(got.gates, want.gates, rtol=0, atol=1e-12)
    assert not want.gates[:, 2:, 1].any() and not got.gates[:, 2:, 1].any()  # past lengths[1]


def test_inference_keeps_nothing(rng):
    args = random_layer_args(rng, 3, 2, 2, 4)
    for device in ("numpy", "cpu"):
        assert backend.get(device).forward(*args, train=False)[2] is None


# -- the dispatcher --

def test_device_names(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.DEVICES == ("auto", "numpy", "cpu", "cuda")
    assert backend.resolve("numpy") == "numpy"
    assert backend.resolve(" CPU ") == "cpu"  # case and spaces do not matter
    with pytest.raises(ValueError, match=r"device: expected one of .* got 'tpu'"):
        backend.resolve("tpu")
    with pytest.raises(TypeError, match="device: expected one of .* got int 0"):
        backend.resolve(0)
    with pytest.raises(ValueError, match="device"):
        ng.GRU(2, 3, device="gpu")


def test_env_var_forces_what_auto_picks(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    assert backend.resolve("auto") == "numpy"
    assert ng.GRU(2, 3, device="auto").device == "numpy"
    assert backend.resolve("cpu") == "cpu"  # a device named explicitly is not overridden
    monkeypatch.setenv(backend.ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="NUMGRU_DEVICE"):
        backend.resolve("auto")
    monkeypatch.setenv(backend.ENV_VAR, "auto")  # "auto" forces nothing
    assert backend.resolve("auto") in ("cpu", "cuda")


def test_auto_and_cuda_follow_the_status_here(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    usable, reason = ng.cuda_status()
    assert isinstance(reason, str) and reason
    if usable:  # a machine with a GPU: auto takes it
        assert backend.resolve("auto") == "cuda"
    else:
        assert backend.resolve("auto") == "cpu"
        with pytest.raises(RuntimeError, match="device='cuda' is not usable"):
            backend.resolve("cuda")
        with pytest.raises(RuntimeError, match="device='cuda' is not usable"):
            backend.array_ops("cuda")


def test_status_names_the_missing_package(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real_find_spec(name, *a))
    backend._probe_cuda.cache_clear()
    try:
        usable, reason = ng.cuda_status()
        assert not usable and "numba-cuda" in reason and "not installed" in reason
        monkeypatch.delenv(backend.ENV_VAR, raising=False)
        assert backend.resolve("auto") == "cpu"
        with pytest.raises(RuntimeError, match="device='cuda' is not usable: the numba-cuda"):
            ng.GRU(2, 3, device="cuda")
    finally:
        backend._probe_cuda.cache_clear()


def test_no_driver_is_reported_as_such():
    require_numba_cuda()
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a CUDA driver is present on this machine")
    usable, reason = ng.cuda_status()
    assert not usable and reason.startswith("no usable CUDA driver or GPU")


def test_importing_numgru_needs_no_cuda():
    code = ("import sys, numgru as ng, numpy as np\n"
            "ng.GRU(2, 3, device='cpu')(np.zeros((1, 2, 2)))\n"
            "loaded = [m for m in sys.modules if m.startswith(('numba.cuda', 'numba_cuda'))]\n"
            "assert not loaded, loaded\n")
    env = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_return_device_needs_cuda():
    gru = ng.GRU(2, 3, device="cpu")
    with pytest.raises(ValueError, match="return_device"):
        gru(np.zeros((1, 2, 2)), return_device=True)


# -- the host array operations (the device ones: tests/cuda/sim_arrays.py) --

def test_host_array_operations_are_numpy(rng):
    ops = backend.array_ops("cpu")
    assert isinstance(ops, backend.HostArrays) and not ops.on_device
    a = rng.standard_normal((3, 2, 5))
    b = rng.standard_normal((3, 2, 4))
    np.testing.assert_array_equal(ops.concat_last([a, b]), np.concatenate([a, b], axis=2))
    np.testing.assert_array_equal(ops.take_last(a, 1, 4), a[:, :, 1:4])
    assert ops.take_last(a, 1, 4).flags.c_contiguous
    np.testing.assert_array_equal(ops.swap01(a), a.swapaxes(0, 1))
    acc = a.copy()
    ops.add_into(acc, a)
    np.testing.assert_array_equal(acc, 2 * a)
    ops.fill_zero(acc)
    assert not acc.any()
    assert not backend.is_device_array(a)
    with pytest.raises(TypeError, match="x: got a device array"):
        ops.accept_device("x", a, np.float64)
