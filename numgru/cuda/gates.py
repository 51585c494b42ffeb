"""The gate math at one (step t, batch row b, unit j) of the CUDA layouts: device functions that
read a thread's recurrent products and the training record, apply the math and store the results.
Shared by the per-step kernels (step.py), the persistent kernels (persistent.py) and the backward
pointwise kernels (pointwise.py). They launch nothing. The math itself is numgru/_gates.py's,
compiled here as device functions: the CPU kernels inline the same functions.

Layouts: gi (T, B, 3H) = W_ih x + b_ih, gate blocks r, z, n; the training cache's h_prev
(T, B, H) and gates (4, T, B, H) = r, z, n, hn (contract.GRUCache), indexed by t whatever the
direction; a_r, a_z, a_n are a thread's recurrent products W_h· v without their bias.
"""

import functools
from typing import Callable, NamedTuple

import numpy as np
from numba import cuda

from .. import _gates


class GateFunctions(NamedTuple):
    """Device functions of one dtype (see build)."""

    forward_full: Callable  # reset_after=True: r, z, n and h' of (t, b, j)
    forward_rz: Callable  # reset_after=False, first half: r, z and r ⊙ h
    forward_n: Callable  # reset_after=False, second half: n and h' from W_hn (r ⊙ h)
    backward_point: Callable  # the gate gradients of (t, b, j) and dh's direct share
    backward_reset: Callable  # reset_after=False: r's gradient once d(r ⊙ h) is known


@functools.lru_cache(maxsize=None)
def build(dtype_name, fastmath):
    """The device functions for arrays of dtype_name, compiled on first use by the kernels that
    call them (typed constants need the dtype). They apply numgru/_gates.py's math, the CPU
    kernels' own, in the dtype of the arrays."""
    np_type = np.float32 if dtype_name == "float32" else np.float64
    ZERO = np_type(0)
    ONE = np_type(1)
    FM = fastmath
    gate = cuda.jit(device=True, fastmath=FM)(_gates.gate)
    candidate = cuda.jit(device=True, fastmath=FM)(_gates.candidate)
    cell_forward = cuda.jit(device=True, fastmath=FM)(_gates.forward)
    cell_backward = cuda.jit(device=True, fastmath=FM)(_gates.backward)
    reset_backward = cuda.jit(device=True, fastmath=FM)(_gates.reset_backward)

    @cuda.jit(device=True, fastmath=FM)
    def forward_invalid(t, b, j, h_in, h_out, y, h_prev, gates, train):
        """A step past lengths[b]: the state passes through, the output is 0, the cache is 0."""
        h = h_in[b, j]
        h_out[b, j] = h
        y[t, b, j] = ZERO
        if train:
            h_prev[t, b, j] = h
            for g in range(4):
                gates[g, t, b, j] = ZERO

    @cuda.jit(device=True, fastmath=FM)
    def store_step(t, b, j, h, h_new, r, z, n, hn_j, h_out, y, h_prev, gates, train):
        """A valid step's results at (t, b, j): the next state, the output and, with train, the
        training cache's entries (the state h entering the step, r, z, n, hn)."""
        h_out[b, j] = h_new
        y[t, b, j] = h_new
        if train:
            h_prev[t, b, j] = h
            gates[0, t, b, j] = r
            gates[1, t, b, j] = z
            gates[2, t, b, j] = n
            gates[3, t, b, j] = hn_j

    @cuda.jit(device=True, fastmath=FM)
    def forward_full(t, b, j, H, a_r, a_z, a_n, gi, h_in, h_out, b_hh, lengths, y, h_prev, gates,
                     train):
        """reset_after=True: r, z, n = tanh(gi_n + r ⊙ (W_hn h + b_hn)), h' for unit j of row b."""
        if t >= lengths[b]:
            forward_invalid(t, b, j, h_in, h_out, y, h_prev, gates, train)
            return
        h = h_in[b, j]
        hn_j = a_n + b_hh[2 * H + j]
        r, z, n, h_new = cell_forward(gi[t, b, j], gi[t, b, H + j], gi[t, b, 2 * H + j],
                                      a_r + b_hh[j], a_z + b_hh[H + j], hn_j, h, ONE, True)
        store_step(t, b, j, h, h_new, r, z, n, hn_j, h_out, y, h_prev, gates, train)

    @cuda.jit(device=True, fastmath=FM)
    def forward_rz(t, b, j, H, a_r, a_z, gi, h_in, rh, rz, b_hh, lengths):
        """reset_after=False, first half: r and z into rz (B, 2H), r ⊙ h into rh (B, H)."""
        if t >= lengths[b]:
            rh[b, j] = ZERO
            return
        r = gate(gi[t, b, j], a_r + b_hh[j])
        rz[b, j] = r
        rz[b, H + j] = gate(gi[t, b, H + j], a_z + b_hh[H + j])
        rh[b, j] = r * h_in[b, j]

    @cuda.jit(device=True, fastmath=FM)
    def forward_n(t, b, j, H, a_n, gi, h_in, h_out, rz, b_hh, lengths, y, h_prev, gates, train):
        """reset_after=False, second half: n = tanh(gi_n + W_hn (r ⊙ h) + b_hn) and h'."""
        if t >= lengths[b]:
            forward_invalid(t, b, j, h_in, h_out, y, h_prev, gates, train)
            return
        h = h_in[b, j]
        r = rz[b, j]
        z = rz[b, H + j]
        hn_j = a_n + b_hh[2 * H + j]
        n, h_new = candidate(gi[t, b, 2 * H + j], hn_j, r, z, h, ONE, False)
        store_step(t, b, j, h, h_new, r, z, n, hn_j, h_out, y, h_prev, gates, train)

    @cuda.jit(device=True, fastmath=FM)
    def backward_point(t, b, j, H, dy, dh, h_prev, gates, lengths, dgi, dgh, reset_after):
        """Gate gradients of unit j, row b, step t; dh[b, j] becomes its direct path to h_{t-1}.

        dgi (T,B,3H): dL/d(pre-activation) of r, z, n; dgh: the same seen from W_hh's side (the n
        rows carry r ⊙ da_n when reset_after). reset_after=False leaves the r rows to
        backward_reset, which needs the whole row of da_n first. An invalid step writes zeros and
        keeps dh.
        """
        if t >= lengths[b]:
            for g in range(3):
                dgi[t, b, g * H + j] = ZERO
                dgh[t, b, g * H + j] = ZERO
            return
        da_r, da_z, da_n, dgh_n, dh_direct = cell_backward(
            dh[b, j] + dy[t, b, j], gates[0, t, b, j], gates[1, t, b, j], gates[2, t, b, j],
            gates[3, t, b, j], h_prev[t, b, j], ONE, reset_after)
        dgi[t, b, H + j] = da_z
        dgh[t, b, H + j] = da_z
        dgi[t, b, 2 * H + j] = da_n
        dgh[t, b, 2 * H + j] = dgh_n
        if reset_after:
            dgi[t, b, j] = da_r
            dgh[t, b, j] = da_r
        dh[b, j] = dh_direct

    @cuda.jit(device=True, fastmath=FM)
    def backward_reset(t, b, k, d_rh, dh, h_prev, gates, lengths, dgi, dgh):
        """reset_after=False: r's gradient from d_rh = dL/d(r ⊙ h)[b, k]
        = Σ_j da_n[b, j] W_hn[j, k]."""
        if t < lengths[b]:
            da_r, dh_share = reset_backward(d_rh, gates[0, t, b, k], h_prev[t, b, k], ONE)
            dgi[t, b, k] = da_r
            dgh[t, b, k] = da_r
            dh[b, k] += dh_share

    return GateFunctions(forward_full, forward_rz, forward_n, backward_point, backward_reset)
