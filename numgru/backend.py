"""The dispatcher: turns a device name into the backend module that computes on it.

Every backend module ("numpy" -> reference.py, "cpu" -> cpu.py, "cuda" -> the numgru.cuda package)
exposes the same functions, `forward`, `backward` and `step`, with the arguments, shapes, saved
state and call order of the backend contract (numgru/contract.py). This module chooses, reports
why CUDA is or is not usable, and hands layers.py the few array operations it needs on each device
(HostArrays here, cuda.DeviceArrays); it never computes a GRU step. Nothing here imports
numba.cuda until CUDA is asked about.

Device names: "numpy", "cpu", "cuda", or "auto": the environment variable NUMGRU_DEVICE when set
(to one of the others), else "cuda" where a real GPU is usable (never the simulator, which is used
only when asked for by name), else "cpu". Unknown names raise ValueError; "cuda" where it is not
usable raises RuntimeError with the reason.
"""

import ctypes
import functools
import importlib.util
import os
import sys

import numpy as np

DEVICES = ("auto", "numpy", "cpu", "cuda")
ENV_VAR = "NUMGRU_DEVICE"  # forces the device that "auto" resolves to


def is_device_array(value):
    """True for a GPU array (numba's, or any object with __cuda_array_interface__), not a numpy one."""
    if isinstance(value, np.ndarray):
        return False
    return hasattr(value, "__cuda_array_interface__") or hasattr(value, "copy_to_host")


_DRIVER_NAMES = {"linux": ("libcuda.so.1", "libcuda.so"), "win32": ("nvcuda.dll",)}


def _driver_probe():
    """Why there is no usable CUDA driver or GPU, asked of the driver library itself through
    ctypes (importing numba.cuda to learn the same takes seconds); None when the driver reports
    a device, or when numba-cuda is pointed at a driver of its own (NUMBA_CUDA_DRIVER): its
    probe decides then."""
    if os.environ.get("NUMBA_CUDA_DRIVER"):
        return None
    names = _DRIVER_NAMES.get(sys.platform, ())
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return ("no usable CUDA driver or GPU: the CUDA driver library "
                f"({' or '.join(names) or 'none on ' + sys.platform}) was not found")
    try:
        rc = lib.cuInit(0)
        if rc != 0:
            name = ctypes.c_char_p()
            lib.cuGetErrorName(rc, ctypes.byref(name))
            text = name.value.decode() if name.value else f"error {rc}"
            return f"no usable CUDA driver or GPU: the CUDA driver failed to initialise ({text})"
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value == 0:
            return "no usable CUDA driver or GPU: the CUDA driver reports no device"
    except AttributeError:  # not the driver API we know: numba-cuda's probe decides
        return None
    return None


@functools.lru_cache(maxsize=None)
def _probe_cuda():
    """(usable, simulated, reason), found once per process: each missing piece named exactly.
    Without the simulator, the driver is asked first (a few microseconds on a machine without
    one); numba.cuda is imported only where a driver reports a device."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False, False, ("the numba-cuda package is not installed (pip install 'numgru[cuda]'; "
                              "see the README's CUDA section for CUDA 12 and CUDA 13 drivers)")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() in ("", "0"):
        missing = _driver_probe()
        if missing is not None:
            return False, False, missing
    try:
        from numba import cuda
        from numba.cuda.core import config
    except Exception as exc:  # e.g. cuda-bindings missing or mismatched
        return False, False, f"numba.cuda failed to import: {type(exc).__name__}: {exc}"
    if config.ENABLE_CUDASIM:
        return True, True, ("the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): exact kernels run as "
                            "Python threads, very slowly; for tests only")
    if not cuda.is_available():
        from numba.cuda.cudadrv.driver import driver
        detail = str(getattr(driver, "initialization_error", "") or "").strip()
        return False, False, ("no usable CUDA driver or GPU: "
                              + (" ".join(detail.split()) or "the CUDA driver reports no device"))
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        return False, False, ("the CUDA driver and a GPU are present, but NVVM (libnvvm, the CUDA "
                              "toolkit's compiler library) was not found: pip install "
                              "'numba-cuda[cu13]' (or [cu12] for a CUDA 12 driver), or set CUDA_HOME "
                              "to a CUDA toolkit")
    try:
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        cc = ".".join(map(str, dev.compute_capability))
    except Exception as exc:
        return False, False, f"the GPU could not be opened: {type(exc).__name__}: {exc}"
    return True, False, f"{name}, compute capability {cc}"


def cuda_status():
    """(usable, reason): whether device='cuda' can run here; the reason names what is missing, or the
    GPU that will run it."""
    usable, _, reason = _probe_cuda()
    return usable, reason


def resolve(device):
    """Map a device name (or "auto") to one of "numpy", "cpu", "cuda"; raise on unknown names."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected one of {DEVICES}, got {type(device).__name__} {device!r}")
    name = device.strip().lower()
    if name == "auto":
        forced = os.environ.get(ENV_VAR, "").strip().lower()
        if forced and forced != "auto":
            if forced not in DEVICES:
                raise ValueError(f"{ENV_VAR}: expected one of {DEVICES}, got {forced!r}")
            name = forced
        else:
            usable, simulated, _ = _probe_cuda()
            name = "cuda" if usable and not simulated else "cpu"  # the simulator only when asked
    if name not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    if name == "cuda":
        usable, reason = cuda_status()
        if not usable:
            raise RuntimeError(f"device='cuda' is not usable: {reason}")
    return name


def get(device):
    """The backend module for a device name (resolved as `resolve` does)."""
    name = resolve(device)
    if name == "numpy":
        from . import reference as module
    elif name == "cpu":
        from . import cpu as module
    else:
        from . import cuda as module
    return module


def kernels_cached(device):
    """Whether the engine of this (resolved) device name has its training kernels compiled in
    this process or in its kernel cache: False means the next training step compiles them (the
    progress bar says so). Engines that compile nothing ahead, or cannot tell, answer True."""
    cached = getattr(get(device), "kernels_cached", None)
    return True if cached is None else cached()


def array_ops(device):
    """The few array operations layers.py needs, for arrays of this device (resolved as `resolve`)."""
    if resolve(device) == "cuda":
        from .cuda import DeviceArrays
        return DeviceArrays()
    return HostArrays()


class HostArrays:
    """Array operations for the host backends ("numpy", "cpu"): plain numpy."""

    on_device = False

    def accept_device(self, name, value, dtype):
        raise TypeError(f"{name}: got a device array; this layer runs on the host "
                        f"(device='cpu' or 'numpy'): copy it to a numpy array first")

    def to_device(self, a):
        return a

    def to_host(self, a):
        return a

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def assign(self, dst, src):
        dst[...] = src

    def fill_zero(self, a):
        a[...] = 0

    def add_into(self, dst, src):
        dst += src

    def mul(self, a, b):
        return a * b

    def concat_last(self, arrays):
        return np.concatenate(arrays, axis=-1)

    def take_last(self, a, start, stop):
        return np.ascontiguousarray(a[..., start:stop])

    def swap01(self, a):
        return np.ascontiguousarray(a.swapaxes(0, 1))
