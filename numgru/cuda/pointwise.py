"""Pointwise and reduction kernels of the CUDA backward pass, one thread per element or column:
the per-step path's gate gradients (`point`, `reset`), the bias gradients (`colsum`) and the input
of W_hn's gradient for reset_after=False (`reset_times_h`). The forward's pointwise math runs
fused into its recurrent kernels (step.py, persistent.py) instead.
"""

import functools
from typing import NamedTuple

from numba import cuda

from . import config as cfg
from .gates import build as gate_functions
from .kernel import FLAG, INDEX, LENGTHS, Kernel, array, build_inputs, cdiv


class Pointwise(NamedTuple):
    """The pointwise kernels of one dtype and set of tunables."""

    point: Kernel  # gates.backward_point at every (b, j) of one step
    reset: Kernel  # gates.backward_reset at every (b, k) of one step (reset_after=False)
    colsum: Kernel  # column sums of a (M, N) matrix
    reset_times_h: Kernel  # r ⊙ h_prev over all steps (reset_after=False)


# The tunables (config.py) the kernels below are compiled with; the others are read at launch.
COMPILED = ()


@functools.lru_cache(maxsize=None)
def build(dtype_name, config_key):
    """The pointwise kernels for arrays of dtype_name under the tunables config_key."""
    config, f, ZERO, FM = build_inputs(dtype_name, config_key)
    g = gate_functions(dtype_name, FM)
    backward_point, backward_reset = g.backward_point, g.backward_reset
    a1, a2, a3, a4 = (array(f, n) for n in (1, 2, 3, 4))

    def point_kernel(t, dy, dh, h_prev, gates, lengths, dgi, dgh, reset_after):
        """backward_point for every (b, j) of step t: one thread each. dy (T, B, H), dh (B, H),
        the cache's h_prev (T, B, H) and gates (4, T, B, H); dgi, dgh (T, B, 3H)."""
        B = dh.shape[0]
        H = dh.shape[1]
        i = cuda.grid(1)
        if i < B * H:
            b = i // H
            backward_point(t, b, i - b * H, H, dy, dh, h_prev, gates, lengths, dgi, dgh,
                           reset_after)

    def reset_kernel(t, d_rh, dh, h_prev, gates, lengths, dgi, dgh):
        """backward_reset for every (b, k) of step t; d_rh (B, H) = d(r ⊙ h)."""
        B = dh.shape[0]
        H = dh.shape[1]
        i = cuda.grid(1)
        if i < B * H:
            b = i // H
            k = i - b * H
            backward_reset(t, b, k, d_rh[b, k], dh, h_prev, gates, lengths, dgi, dgh)

    def colsum_kernel(a, out):
        """out[n] = Σ_m a[m, n]; one thread per column (consecutive threads read one row)."""
        n = cuda.grid(1)
        if n < a.shape[1]:
            s = ZERO
            for m in range(a.shape[0]):
                s += a[m, n]
            out[n] = s

    def reset_times_h_kernel(gates, h_prev, out):
        """out[t, b, k] = r[t, b, k] · h_prev[t, b, k]: what W_hn multiplies (reset_after=False)."""
        T = out.shape[0]
        B = out.shape[1]
        H = out.shape[2]
        i = cuda.grid(1)
        if i < T * B * H:
            t = i // (B * H)
            rem = i - t * B * H
            b = rem // H
            k = rem - b * H
            out[t, b, k] = gates[0, t, b, k] * h_prev[t, b, k]

    return Pointwise(
        point=Kernel("backward_point", point_kernel,
                     (INDEX, a3, a2, a3, a4, LENGTHS, a3, a3, FLAG), FM),
        reset=Kernel("backward_reset", reset_kernel, (INDEX, a2, a2, a3, a4, LENGTHS, a3, a3), FM),
        colsum=Kernel("colsum", colsum_kernel, (array(f, 2, "A"), a1), FM),
        reset_times_h=Kernel("reset_times_h", reset_times_h_kernel, (a4, a3, a3), FM))


def colsum(p, a, out):
    """out (N,) = the column sums of a (M, N), with the kernels p (a Pointwise)."""
    threads = cfg.COLSUM_THREADS
    p.colsum[max(1, cdiv(a.shape[1], threads)), threads](a, out)
