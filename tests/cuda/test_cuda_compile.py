"""The CUDA backend's host side, in the test process itself (no simulator, no GPU needed).

The dispatcher's report of what is missing, that importing numgru needs neither numba-cuda nor a
GPU, and that every kernel compiles to sm_90 PTX with numba.cuda.compile_ptx (NVVM only).
"""

import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import numgru as ng
from numgru import backend


def _require(condition, why):
    # `make test` installs numba-cuda and the NVVM/NVRTC wheels and sets NUMGRU_REQUIRE_ORACLES=1:
    # there a missing piece fails instead of skipping.
    if not condition:
        if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
            pytest.fail(why)
        pytest.skip(why)


def test_importing_numgru_needs_no_cuda():
    code = ("import sys, numgru as ng, numpy as np\n"
            "ng.GRU(2, 3, device='cpu')(np.zeros((1, 2, 2)))\n"
            "loaded = [m for m in sys.modules if m.startswith(('numba.cuda', 'numba_cuda'))]\n"
            "assert not loaded, loaded\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMGRU_DEVICE"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


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


def test_no_driver_is_reported_as_such():
    _require(importlib.util.find_spec("numba_cuda") is not None, "numba-cuda is not installed")
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a CUDA driver is present on this machine")
    usable, reason = ng.cuda_status()
    assert not usable and reason.startswith("no usable CUDA driver or GPU")


def test_env_var_forces_the_device(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    assert ng.GRU(2, 3, device="auto").device == "numpy"
    monkeypatch.setenv(backend.ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="NUMGRU_DEVICE"):
        backend.resolve("auto")


def test_return_device_needs_cuda():
    gru = ng.GRU(2, 3, device="cpu")
    with pytest.raises(ValueError, match="return_device"):
        gru(np.zeros((1, 2, 2)), return_device=True)


# -- ahead-of-time compilation for sm_90 (H100/H200), no GPU needed --

def _nvvm_ready():
    if importlib.util.find_spec("numba_cuda") is None:
        return False, "numba-cuda is not installed"
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        return False, "NVVM is not installed (pip install 'nvidia-nvvm==13.*')"
    try:
        from numba.cuda.cudadrv import nvrtc
        nvrtc.get_supported_ccs()
    except Exception as exc:  # compile_ptx asks NVRTC which architectures exist
        return False, f"NVRTC is not usable ({type(exc).__name__}); pip install 'nvidia-cuda-nvrtc==13.*'"
    return True, ""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_kernel_compiles_to_sm90_ptx(monkeypatch, dtype):
    ready, why = _nvvm_ready()
    _require(ready, why)
    from numba import cuda
    from numba.cuda import dispatcher

    import numgru.cuda as gcuda
    if not cuda.is_available():
        # numba-cuda 0.30 compiles a called device function (ours, and the grid sync of cooperative
        # groups) for the *current* device's compute capability, even inside compile_ptx; with no
        # GPU here, answer that query with this compilation's target. NVVM still compiles every
        # function for real.
        monkeypatch.setattr(dispatcher, "get_current_device",
                            lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    listed = gcuda.all_kernels(dtype)
    for kernel in listed:
        ptx, _ = cuda.compile_ptx(kernel.py_func, kernel.argtypes, cc=(9, 0),
                                  fastmath=kernel.fastmath)
        assert ".target sm_90" in ptx and ".entry" in ptx, kernel.name
        # The persistent kernels synchronise the grid through the device runtime, linked at load.
        assert ("cudaCGSynchronize" in ptx) == kernel.name.startswith("persistent"), kernel.name
    # Every kernel is covered: each family's, and the array operations'.
    k = gcuda.kernels(dtype)
    expected = 2 + len(k.gemm.kernels) + len(k.step.kernels) + len(k.pointwise) + sum(
        1 for v in vars(gcuda.arrays).values() if hasattr(v, "sample_argtypes"))
    assert len(listed) == expected == len({kernel.name for kernel in listed})
