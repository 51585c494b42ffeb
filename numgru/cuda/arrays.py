"""Array operations on device arrays, for layers.py (backend.HostArrays is the host counterpart),
and their elementwise kernels. Nothing here computes a GRU step.

The kernels take arrays of any numeric dtype (a caller's int array is cast here), so they are
plain numba.cuda kernels, compiled per argument types on first use; `any_types` gives each the
signature compile_ptx checks it with. They work on 1-D or 2-D views of contiguous arrays.
"""

import math

import numpy as np
from numba import cuda, types

from .kernel import INDEX, any_types, array, launch_1d, to_device


@any_types(lambda f: (array(f, 1), f))
def _fill_kernel(a, value):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = value


@any_types(lambda f: (array(f, 1), array(f, 1)))
def _add_into_kernel(dst, src):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] += src[i]


@any_types(lambda f: (array(f, 1), array(f, 1), array(f, 1)))
def _mul_kernel(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i]


@any_types(lambda f: (array(types.float64, 1), array(f, 1)))
def _cast_kernel(src, dst):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i]


@any_types(lambda f: (array(f, 1), array(types.int64, 1)))
def _count_nonfinite_kernel(a, count):
    """count[0] += how many entries of a (1-D) are NaN or ±Inf."""
    i = cuda.grid(1)
    if i < a.shape[0] and (math.isnan(a[i]) or math.isinf(a[i])):
        cuda.atomic.add(count, 0, 1)


@any_types(lambda f: (array(f, 2), array(f, 2), INDEX))
def _copy_cols_kernel(src, dst, start):
    """dst[r, start + f] = src[r, f]; src (R, F), dst (R, F') with F' ≥ start + F."""
    i = cuda.grid(1)
    F = src.shape[1]
    if i < src.shape[0] * F:
        r = i // F
        f = i - r * F
        dst[r, start + f] = src[r, f]


@any_types(lambda f: (array(f, 2), array(f, 2), INDEX))
def _take_cols_kernel(src, dst, start):
    """dst[r, f] = src[r, start + f]; dst (R, F)."""
    i = cuda.grid(1)
    F = dst.shape[1]
    if i < dst.shape[0] * F:
        r = i // F
        f = i - r * F
        dst[r, f] = src[r, start + f]


@any_types(lambda f: (array(f, 3), array(f, 3)))
def _swap01_kernel(src, dst):
    """dst[b, a, f] = src[a, b, f]; src (A, B, F), dst (B, A, F)."""
    i = cuda.grid(1)
    A = src.shape[0]
    B = src.shape[1]
    F = src.shape[2]
    if i < A * B * F:
        a = i // (B * F)
        rem = i - a * B * F
        b = rem // F
        f = rem - b * F
        dst[b, a, f] = src[a, b, f]


def _flat(a):
    return a.reshape(a.size)


class DeviceArrays:
    """The array operations layers.py needs (see backend.HostArrays), on device arrays."""

    on_device = True

    def accept_device(self, name, value, dtype):
        """A caller's device array as a C-contiguous device array of dtype, NaN and Inf refused."""
        a = to_device(value)
        dtype = np.dtype(dtype)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a real numeric device array, got dtype {a.dtype}")
        if not a.is_c_contiguous():
            raise ValueError(f"{name}: expected a C-contiguous device array, got shape {a.shape} "
                             f"with strides {a.strides}")
        if a.dtype != dtype:
            out = cuda.device_array(a.shape, dtype)
            launch_1d(_cast_kernel, a.size, _flat(a), _flat(out))
            a = out
        count = cuda.to_device(np.zeros(1, np.int64))
        launch_1d(_count_nonfinite_kernel, a.size, _flat(a), count)
        bad = int(count.copy_to_host()[0])
        if bad:
            raise ValueError(f"{name}: contains NaN or Inf ({bad} of {a.size} entries)")
        return a

    def to_device(self, a):
        return to_device(a)

    def to_host(self, a):
        return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype)

    def zeros(self, shape, dtype):
        a = cuda.device_array(shape, dtype)
        self.fill_zero(a)
        return a

    def assign(self, dst, src):
        dst.copy_to_device(src if hasattr(src, "copy_to_host") else np.ascontiguousarray(src))

    def fill_zero(self, a):
        launch_1d(_fill_kernel, a.size, _flat(a), 0)

    def add_into(self, dst, src):
        launch_1d(_add_into_kernel, dst.size, _flat(dst), _flat(to_device(src)))

    def mul(self, a, b):
        out = cuda.device_array(a.shape, a.dtype)
        launch_1d(_mul_kernel, a.size, _flat(a), _flat(to_device(b)), _flat(out))
        return out

    def concat_last(self, arrays):
        # Shapes as tuples: the simulator's shapes refuse negative indices, as device code does.
        lead = tuple(arrays[0].shape)[:-1]
        rows = int(np.prod(lead))
        width = sum(tuple(a.shape)[-1] for a in arrays)
        out = cuda.device_array(lead + (width,), arrays[0].dtype)
        out2, start = out.reshape(rows, width), 0
        for a in arrays:
            F = tuple(a.shape)[-1]
            launch_1d(_copy_cols_kernel, rows * F, a.reshape(rows, F), out2, start)
            start += F
        return out

    def take_last(self, a, start, stop):
        shape = tuple(a.shape)
        if start == 0 and stop == shape[-1]:
            return a
        lead = shape[:-1]
        rows = int(np.prod(lead))
        out = cuda.device_array(lead + (stop - start,), a.dtype)
        launch_1d(_take_cols_kernel, rows * (stop - start), a.reshape(rows, shape[-1]),
                   out.reshape(rows, stop - start), start)
        return out

    def swap01(self, a):
        shape = tuple(a.shape)
        out = cuda.device_array((shape[1], shape[0]) + shape[2:], a.dtype)
        launch_1d(_swap01_kernel, a.size, a, out)
        return out
