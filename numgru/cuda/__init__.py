"""CUDA backend: numba.cuda kernels for one GRU layer and one direction, the backend contract's
functions (numgru/contract.py: shapes, conventions, the training cache).

Arrays in and out are device arrays (anything with `__cuda_array_interface__`; numpy arrays are
copied to the device first); the GRUCache it returns holds device arrays. Inputs are trusted:
layers.py checks them once. Tunables live in config.py.

Forward: the input projection of all steps is one tiled GEMM (gemm.py), gi = x W_ihᵀ + b_ih over
T·B rows; then the recurrence, on one of two paths chosen by size (persistent.plan):
- persistent (persistent.py): one cooperative launch runs all T steps; each block keeps the W_hh
  rows of its slice of hidden units in shared memory and the grid synchronises once per step
  (twice for reset_after=False, whose n gate needs the whole r ⊙ h first);
- per step (step.py): one fused kernel per step (two for reset_after=False) computes a tile of
  W_hh h with the gate math after it.
Backward: the reverse loop writes the gate gradients dgi, dgh (T, B, 3H) and carries dh, on the same
two paths (persistent: W_hh columns on chip; per step: a pointwise kernel (pointwise.py) and a
GEMM); then dx, dW_ih, dW_hh and the bias gradients are single reductions over all T·B rows.
The gate math at one (t, b, j) is gates.py's. arrays.py holds the array operations layers.py needs
on the device (DeviceArrays); optim.py the optimizer kernels.
Importing this package needs numba-cuda, not a GPU; running it needs a GPU or
NUMBA_ENABLE_CUDASIM=1.
"""

from typing import NamedTuple

import numpy as np
from numba import cuda

from ..contract import GRUCache
from . import arrays, config as cfg, gemm, persistent, pointwise, step as step_path
from .arrays import DeviceArrays
from .kernel import SIMULATOR, Kernel, float_type, launch_1d, placeholder, to_device

__all__ = ["forward", "backward", "step", "DeviceArrays", "SIMULATOR", "last_path"]


class Kernels(NamedTuple):
    """Every kernel family of one dtype under the current tunables."""

    gemm: gemm.Gemm
    step: step_path.StepKernels
    pointwise: pointwise.Pointwise
    persistent: persistent.Persistent


def kernels(dtype):
    """The kernels for arrays of dtype, built on first use per dtype and set of tunables."""
    name = np.dtype(dtype).name
    return Kernels(*(family.build(name, cfg.snapshot(family.COMPILED))
                     for family in (gemm, step_path, pointwise, persistent)))


def all_kernels(dtype):
    """Every kernel as a Kernel (name, function, argument types), for ahead-of-time compile checks
    (numba.cuda.compile_ptx, NVVM only). The two persistent kernels come first: their PTX calls
    the device runtime's grid sync (cudaCGSynchronize), which is linked only at load time. The
    array operations, compiled per argument types, are listed with their sample signatures."""
    k = kernels(dtype)
    f = float_type(np.dtype(dtype).name)
    listed = [k.persistent.forward, k.persistent.backward]
    listed += list(k.gemm.kernels.values()) + list(k.step.kernels.values()) + list(k.pointwise)
    for name, value in sorted(vars(arrays).items()):
        if hasattr(value, "sample_argtypes"):
            listed.append(Kernel(name.strip("_"), value.py_func, value.sample_argtypes(f)))
    return listed


# The recurrence path each function took on its last call ("persistent units=U blocks=N" or
# "per-step"), for benchmarks and diagnostics.
last_path = {"forward": None, "backward": None}


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None), on the
    device."""
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = map(to_device,
                                                  (x, h0, w_ih, w_hh, b_ih, b_hh, lengths))
    reverse, reset_after, train = bool(reverse), bool(reset_after), bool(train)  # kernel flags
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    k = kernels(dtype)
    # Input projection of all steps, one GEMM over T·B rows: gi = x W_ihᵀ + b_ih (T, B, 3H).
    gi = cuda.device_array((T, B, 3 * H), dtype)
    gemm.gemm(k.gemm, x.reshape(T * B, I), w_ih, gi.reshape(T * B, 3 * H), trans_b=True,
              bias=b_ih)
    y = cuda.device_array((T, B, H), dtype)
    hbuf = cuda.device_array((2, B, H), dtype)  # h ping-pongs: a step reads one half, writes one
    hbuf[0].copy_to_device(h0)
    if train:
        h_prev = cuda.device_array((T, B, H), dtype)  # the state entering step t
        gates = cuda.device_array((4, T, B, H), dtype)  # r, z, n, hn (contract.GRUCache)
    else:
        h_prev, gates = placeholder(3, dtype), placeholder(4, dtype)
    if reset_after:
        rh = rz = placeholder(2, dtype)
    else:
        rh = cuda.device_array((B, H), dtype)  # r ⊙ h of the current step
        rz = cuda.device_array((B, 2 * H), dtype)  # r and z of the current step
    args = (gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, reverse, reset_after, train)
    path = persistent.forward(k.persistent, *args)
    if path is None:
        step_path.forward(k.step, *args)
        path = "per-step"
    last_path["forward"] = path
    h_n = hbuf[T % 2]
    cache = None
    if train:
        cache = GRUCache(x=x, gates=gates, w_ih=w_ih, w_hh=w_hh, lengths=lengths,
                         reverse=reverse, reset_after=reset_after, h_prev=h_prev)
    return y, h_n, cache


def backward(cache, dy, dh_n):
    """BPTT for `forward(..., train=True)`: returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh), on the
    device, fresh arrays."""
    x, w_ih, w_hh, lengths = cache.x, cache.w_ih, cache.w_hh, cache.lengths
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    k = kernels(dtype)
    dy, dh_n = to_device(dy), to_device(dh_n)
    reset_after = cache.reset_after
    dgi = cuda.device_array((T, B, 3 * H), dtype)  # dL/d(pre-activation) per gate
    dgh = cuda.device_array((T, B, 3 * H), dtype)  # as seen from W_hh (n rows × r if reset_after)
    dh = cuda.device_array((B, H), dtype)  # dL/dh carried backwards: dh_n in, dh0 out
    dh.copy_to_device(dh_n)
    args = (dy, dh, cache.h_prev, cache.gates, w_hh, lengths, dgi, dgh, cache.reverse,
            reset_after)
    path = persistent.backward(k.persistent, *args)
    if path is None:
        step_path.backward(k.pointwise, k.gemm, *args)
        path = "per-step"
    last_path["backward"] = path
    # Reductions over all T·B rows.
    dgi2 = dgi.reshape(T * B, 3 * H)
    dgh2 = dgh.reshape(T * B, 3 * H)
    x2 = x.reshape(T * B, I)
    h2 = cache.h_prev.reshape(T * B, H)
    dx = cuda.device_array((T, B, I), dtype)
    gemm.gemm(k.gemm, dgi2, w_ih, dx.reshape(T * B, I))  # dx = dgi W_ih
    dw_ih = cuda.device_array(w_ih.shape, dtype)
    gemm.gemm(k.gemm, dgi2, x2, dw_ih, trans_a=True)  # dW_ih = dgiᵀ x
    dw_hh = cuda.device_array(w_hh.shape, dtype)
    if reset_after:
        gemm.gemm(k.gemm, dgh2, h2, dw_hh, trans_a=True)  # dW_hh = dghᵀ h
    else:
        gemm.gemm(k.gemm, dgh2[:, :2 * H], h2, dw_hh[:2 * H], trans_a=True)
        hid = cuda.device_array((T, B, H), dtype)  # r ⊙ h: what W_hn multiplies
        launch_1d(k.pointwise.reset_times_h, T * B * H, cache.gates, cache.h_prev, hid)
        gemm.gemm(k.gemm, dgh2[:, 2 * H:], hid.reshape(T * B, H), dw_hh[2 * H:], trans_a=True)
    db_ih = cuda.device_array(3 * H, dtype)
    db_hh = cuda.device_array(3 * H, dtype)
    pointwise.colsum(k.pointwise, dgi2, db_ih)
    pointwise.colsum(k.pointwise, dgh2, db_hh)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """One GRU step, h1 (B,H) = GRU(x (B,I), h (B,H)), as a device array: the forward over T = 1.

    Unlike the host backends it does not scan its inputs for NaN/Inf (that would cost a copy to
    the host per step); layers.py checks device inputs when they arrive."""
    B = x.shape[0]
    lengths = cuda.to_device(np.ones(B, np.int64))
    return forward(x.reshape(1, B, x.shape[1]), h, w_ih, w_hh, b_ih, b_hh, lengths,
                   reverse=False, reset_after=reset_after)[1]
