"""numgru/cuda/kernel.py's declarations, compiled ahead of time: every kernel of the CUDA backend
(each with the one signature it is launched with; the array operations with their sample ones) and
_mathfn's float32 sigmoid and tanh as device code compile to sm_90 PTX with numba.cuda.compile_ptx
(NVVM only: no GPU, no simulator, in the test process itself). What CUDA's absence looks like to
the dispatcher is tests/test_backend.py's.
"""

import importlib.util
import os
import types

import pytest


def _require_nvvm():
    # `make test` installs numba-cuda and the NVVM/NVRTC wheels and sets NUMGRU_REQUIRE_ORACLES=1:
    # there a missing piece fails instead of skipping.
    why = _nvvm_missing()
    if why:
        if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
            pytest.fail(why)
        pytest.skip(why)


def _nvvm_missing():
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed"
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        return "NVVM is not installed (pip install 'nvidia-nvvm==13.*')"
    try:
        from numba.cuda.cudadrv import nvrtc
        nvrtc.get_supported_ccs()
    except Exception as exc:  # compile_ptx asks NVRTC which architectures exist
        return (f"NVRTC is not usable ({type(exc).__name__}); "
                f"pip install 'nvidia-cuda-nvrtc==13.*'")
    return ""


def _compile_ptx_for_sm90(monkeypatch):
    """numba.cuda.compile_ptx, usable here: numba-cuda 0.30 compiles a called device function
    (ours, and the grid sync of cooperative groups) for the *current* device's compute
    capability, even inside compile_ptx; with no GPU, that query is answered with this
    compilation's target. NVVM still compiles every function for real."""
    _require_nvvm()
    from numba import cuda
    from numba.cuda import dispatcher
    if not cuda.is_available():
        monkeypatch.setattr(dispatcher, "get_current_device",
                            lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    return lambda py_func, argtypes, **options: cuda.compile_ptx(py_func, argtypes, cc=(9, 0),
                                                                 **options)[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_kernel_compiles_to_sm90_ptx(monkeypatch, dtype):
    compile_ptx = _compile_ptx_for_sm90(monkeypatch)
    import numgru.cuda as gcuda
    listed = gcuda.all_kernels(dtype)
    for kernel in listed:
        ptx = compile_ptx(kernel.py_func, kernel.argtypes, fastmath=kernel.fastmath)
        assert ".target sm_90" in ptx and ".entry" in ptx, kernel.name
        # The persistent kernels synchronise the grid through the device runtime, linked at load.
        assert ("cudaCGSynchronize" in ptx) == kernel.name.startswith("persistent"), kernel.name
    # Every kernel is covered: each family's, and the array operations'.
    k = gcuda.kernels(dtype)
    expected = 2 + len(k.gemm.kernels) + len(k.step.kernels) + len(k.pointwise) + sum(
        1 for v in vars(gcuda.arrays).values() if hasattr(v, "sample_argtypes"))
    assert len(listed) == expected == len({kernel.name for kernel in listed})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_kernels_compile_to_sm90_ptx(monkeypatch, dtype):
    # cuda/optim.py's kernels with the argument types optim.py launches them with (Python floats
    # and bools for the hyperparameters, the int32 flag of the checked update)
    compile_ptx = _compile_ptx_for_sm90(monkeypatch)
    from numba import types as t
    from numgru.cuda import optim as cuda_optim
    arr, f, b, flag = getattr(t, dtype)[::1], t.float64, t.boolean, t.int32[::1]
    signatures = {"adam": (arr,) * 4 + (f,) * 6 + (b, f, f, f, b, flag),
                  "sgd": (arr,) * 3 + (f,) * 4 + (b, b, f, b, flag),
                  "scale": (arr, getattr(t, dtype))}
    assert sorted(signatures) == sorted(cuda_optim._KERNELS)
    for name, argtypes in signatures.items():
        ptx = compile_ptx(cuda_optim._KERNELS[name].py_func, argtypes)
        assert ".target sm_90" in ptx and ".entry" in ptx, name


def test_mathfn_compiles_to_its_own_float32_code(monkeypatch):
    # The kernel of tests/cuda/mathfn_device.py: in float32, e^-a is _mathfn's polynomial (no
    # libdevice exp, whose PTX uses ex2.approx) and the last division runs in float64.
    compile_ptx = _compile_ptx_for_sm90(monkeypatch)
    from numba import types as nbtypes

    from mathfn_device import evaluate_kernel
    a = nbtypes.Array(nbtypes.float32, 1, "C")
    ptx = compile_ptx(evaluate_kernel.py_func, (a, a, nbtypes.int64))
    assert ".target sm_90" in ptx
    assert "ex2.approx" not in ptx
    assert "div.rn.f64" in ptx or "rcp.rn.f64" in ptx
