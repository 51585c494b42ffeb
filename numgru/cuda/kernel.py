"""What the CUDA kernel modules share: a kernel's declaration (its Python function beside the one
signature it is compiled and launched with), the numba types those signatures are written in, and
the host-side helpers of the launchers (device arrays, placeholders, grid sizes). It defines no
kernel.

A `Kernel` compiles on its first launch, for its declared signature only: a launch whose arguments
do not fit it fails instead of compiling another specialisation, and numba.cuda.compile_ptx
checks the same declaration ahead of time (tests/cuda/test_cuda_compile.py). The simulator
ignores signatures, so there each launch's arguments are checked against the declaration here.
"""

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import cuda, types
from numba.cuda.core import config as _cuda_core_config
from numba.np.numpy_support import from_dtype

from . import config as cfg

SIMULATOR = bool(_cuda_core_config.ENABLE_CUDASIM)  # NUMBA_ENABLE_CUDASIM=1, read at import

# The types of kernel signatures: scalars, and arrays of the build's float type.
INDEX = types.int64  # a step, a unit count, a column offset
FLAG = types.boolean
LENGTHS = types.Array(types.int64, 1, "C")  # (B,) valid steps per sequence


def float_type(dtype_name):
    """The numba float type of a dtype name ("float32" or "float64")."""
    return types.float32 if dtype_name == "float32" else types.float64


def build_inputs(dtype_name, config_key):
    """What every kernel family's build starts from: (the tunables as a dict, the numba float
    type, the dtype's 0 and the fastmath flag). The 0 is a typed constant: a Python 0.0 would be a
    float64 in float32 kernels."""
    config = dict(config_key)
    zero = (np.float32 if dtype_name == "float32" else np.float64)(0)
    return config, float_type(dtype_name), zero, config["FASTMATH"]


def array(f, ndim, layout="C"):
    """An ndim-D array of numba type f; layout "A" for views such as column slices."""
    return types.Array(f, ndim, layout)


@dataclass(frozen=True)
class Kernel:
    """One kernel: `name` (for reports and compile checks), its Python function, the argument
    types it is compiled for and launched with, and its fastmath flag.

    `kernel[grid, block](*args)` or `kernel[grid, block, stream, dynamic_shared_bytes](*args)`
    launches it, as a numba dispatcher does."""

    name: str
    py_func: Callable
    argtypes: tuple
    fastmath: bool = False

    @functools.cached_property
    def dispatcher(self):
        # A list of one signature: compiled now, and a launch is matched against it (a bare
        # signature would make numba launch without looking at the arguments' types).
        return cuda.jit([types.void(*self.argtypes)], fastmath=self.fastmath)(self.py_func)

    def compiled(self):
        """The compiled kernel, for occupancy queries (the simulator answers with a stand-in)."""
        return self.dispatcher.overloads[self.argtypes]

    def __getitem__(self, launch_config):
        launch = self.dispatcher[launch_config]
        if not SIMULATOR:
            return launch

        def checked_launch(*args):
            check_arguments(self, args)
            return launch(*args)

        return checked_launch


def _argument_type(value):
    """The numba type a launch gives `value` (bools, ints and floats as Python passes them)."""
    if isinstance(value, (bool, np.bool_)):
        return types.boolean
    if isinstance(value, (int, np.integer)):
        return types.int64
    if isinstance(value, (float, np.floating)):
        return from_dtype(np.asarray(value).dtype)
    contiguous = (value.is_c_contiguous() if hasattr(value, "is_c_contiguous")
                  else value.flags.c_contiguous)
    return types.Array(from_dtype(value.dtype), value.ndim, "C" if contiguous else "A")


def check_arguments(kernel, args):
    """Raise TypeError unless args fit kernel.argtypes as a compiled launch needs: the same
    scalar types; arrays of the same dtype and rank, C-contiguous where "C" is declared."""
    if len(args) != len(kernel.argtypes):
        raise TypeError(f"{kernel.name}: {len(args)} arguments, declared {len(kernel.argtypes)}")
    for i, (declared, value) in enumerate(zip(kernel.argtypes, args)):
        got = _argument_type(value)
        fits = got == declared or (
            isinstance(declared, types.Array) and isinstance(got, types.Array)
            and declared.layout == "A" and (got.dtype, got.ndim) == (declared.dtype, declared.ndim))
        if not fits:
            raise TypeError(f"{kernel.name}: argument {i} is {got}, declared {declared}")


# -- host-side helpers of the launchers --

def cdiv(a, b):
    """⌈a / b⌉ for positive integers."""
    return (a + b - 1) // b


def odd(n):
    """n or n + 1, whichever is odd: a shared-memory row stride that spreads rows over the banks."""
    return n if n % 2 else n + 1


def to_device(a):
    """A device array for a (no copy when it already lives on the device)."""
    if isinstance(a, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(a))
    if hasattr(a, "copy_to_host"):  # numba's own device array (or the simulator's)
        return a
    return cuda.as_cuda_array(a)  # another library's, through __cuda_array_interface__


def placeholder(ndim, dtype):
    """A 1-element stand-in for an argument a kernel never touches (cached: never written)."""
    return _placeholder(ndim, np.dtype(dtype).name)


@functools.lru_cache(maxsize=None)
def _placeholder(ndim, dtype_name):
    return cuda.device_array((1,) * ndim, dtype_name)


def pointwise_grid(n):
    """(blocks, threads) for one thread per element of n."""
    threads = cfg.POINTWISE_THREADS
    return max(1, cdiv(n, threads)), threads


def launch_1d(kernel, n, *args):
    """kernel(*args) with one thread per element of n (pointwise_grid); nothing for n = 0."""
    if n:
        grid, threads = pointwise_grid(n)
        kernel[grid, threads](*args)


def any_types(sample):
    """Decorator for the array-operation kernels, which take arrays of any numeric dtype: a plain
    numba.cuda kernel, compiled per argument types on first use, with `sample_argtypes(f)`, the
    signature for float type f that compile_ptx checks it with (beside the kernel, as a Kernel's
    declaration is)."""
    def wrap(py_func):
        dispatcher = cuda.jit(py_func)
        dispatcher.sample_argtypes = sample
        return dispatcher
    return wrap
