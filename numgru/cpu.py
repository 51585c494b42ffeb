"""Numba CPU backend: @njit kernels for one GRU layer and one direction, signatures as reference.py.

Work split (why there is no `prange` in the time loop): every matrix product goes to BLAS through
`np.dot`, which brings its own threads: the input projection of all steps is one GEMM, each step's
recurrent product is one GEMM, and the weight gradients are GEMMs over all T·B rows. The pointwise
gate math that sits between two per-step GEMMs is O(B·H) against the GEMM's O(B·H²), and runs in one
fused serial loop, so no Numba thread pool ever spins against BLAS's threads inside the recurrence
(a per-step `np.dot` inside a `prange` region was seen to run 40 times slower). Shapes, layouts and
conventions: see reference.py. Inputs are trusted: layers.py checks them once.
"""

import numpy as np
from numba import njit

from ._cache import GRUCache


@njit(cache=True, inline="always")
def _sigmoid(a):
    """σ(a), split by sign so that exp never overflows."""
    if a >= 0:
        return 1.0 / (1.0 + np.exp(-a))
    e = np.exp(a)
    return e / (1.0 + e)


@njit(cache=True)
def _forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after,
                    y, h, h_prev, gates, hn, train):
    """y_t = h_t = GRU(x_t, h_{t-1}) over the valid steps; h holds h0 on entry and h_n on exit.

    x (T,B,I); y (T,B,H) output; h (B,H) in/out; h_prev, gates (T,B,3H), hn written when train.
    """
    T, B, I = x.shape
    H = h.shape[1]
    # Input projection of all steps, one GEMM: gi (T·B, 3H).
    gi = np.dot(x.reshape(T * B, I), w_ih.T)
    gh = np.empty((B, 3 * H), x.dtype)  # recurrent pre-activations of this step (no bias)
    gh_rz = np.empty((B, 2 * H), x.dtype)  # reset_after=False: W_h{r,z} h ...
    gh_n = np.empty((B, H), x.dtype)  # ... and W_hn (r ⊙ h), computed after r
    rh = np.empty((B, H), x.dtype)  # r ⊙ h (reset_after=False)
    w_hh_rz_t = np.ascontiguousarray(w_hh[:2 * H].T)  # (H, 2H)
    w_hh_n_t = np.ascontiguousarray(w_hh[2 * H:].T)  # (H, H)
    for s in range(T):
        t = T - 1 - s if reverse else s
        row0 = t * B
        if train:
            h_prev[t] = h
        if reset_after:
            np.dot(h, w_hh.T, gh)
        else:
            np.dot(h, w_hh_rz_t, gh_rz)
            for b in range(B):
                for j in range(H):
                    r = _sigmoid(gi[row0 + b, j] + b_ih[j] + gh_rz[b, j] + b_hh[j])
                    rh[b, j] = r * h[b, j]
            np.dot(rh, w_hh_n_t, gh_n)
            for b in range(B):
                for j in range(2 * H):
                    gh[b, j] = gh_rz[b, j]
                for j in range(H):
                    gh[b, 2 * H + j] = gh_n[b, j]
        for b in range(B):
            if t >= lengths[b]:
                for j in range(H):
                    y[t, b, j] = 0
                continue
            g = row0 + b
            for j in range(H):
                r = _sigmoid(gi[g, j] + b_ih[j] + gh[b, j] + b_hh[j])
                z = _sigmoid(gi[g, H + j] + b_ih[H + j] + gh[b, H + j] + b_hh[H + j])
                hn_j = gh[b, 2 * H + j] + b_hh[2 * H + j]
                if reset_after:
                    n = np.tanh(gi[g, 2 * H + j] + b_ih[2 * H + j] + r * hn_j)
                else:
                    n = np.tanh(gi[g, 2 * H + j] + b_ih[2 * H + j] + hn_j)
                h_new = (1.0 - z) * n + z * h[b, j]
                if train:
                    gates[t, b, j] = r
                    gates[t, b, H + j] = z
                    gates[t, b, 2 * H + j] = n
                    if reset_after:
                        hn[t, b, j] = hn_j
                h[b, j] = h_new
                y[t, b, j] = h_new


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    y = np.empty((T, B, H), dtype)
    h = np.array(h0, dtype=dtype, copy=True, order="C")
    if train:
        h_prev = np.empty((T, B, H), dtype)
        gates = np.zeros((T, B, 3 * H), dtype)  # zero rows mark invalid steps for backward
        hn = np.zeros((T, B, H), dtype) if reset_after else np.empty((0, 0, 0), dtype)
    else:
        h_prev = np.empty((0, 0, 0), dtype)
        gates = np.empty((0, 0, 0), dtype)
        hn = np.empty((0, 0, 0), dtype)
    _forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after,
                    y, h, h_prev, gates, hn, train)
    cache = None
    if train:
        cache = GRUCache(x=x, h_prev=h_prev, gates=gates, hn=hn if reset_after else None,
                         w_ih=w_ih, w_hh=w_hh, lengths=lengths, reverse=reverse,
                         reset_after=reset_after)
    return y, h, cache


@njit(cache=True)
def _backward_kernel(x, h_prev, gates, hn, w_ih, w_hh, lengths, reverse, reset_after, dy, dh,
                     dx, dw_ih, dw_hh, db_ih, db_hh):
    """Reverse loop over the steps, then the reductions over all T·B rows.

    dh (B,H) holds dL/dh_n on entry and dL/dh0 on exit. Outputs dx (T,B,I), dw_ih (3H,I),
    dw_hh (3H,H), db_ih, db_hh (3H,) are overwritten.
    """
    T, B, I = x.shape
    H = dh.shape[1]
    dtype = x.dtype
    dgi = np.zeros((T * B, 3 * H), dtype)  # dL/d(gi + gh) for r, z; dL/d(pre-tanh) for n
    dgh = np.zeros((T * B, 3 * H), dtype)  # dL/d(gh): equals dgi except the n rows (× r)
    hid_n = np.zeros((T * B, H), dtype)  # what W_hn multiplies when reset_after=False: r ⊙ h
    dh_keep = np.empty((B, H), dtype)  # dh_new ⊙ z: the direct path to h_{t-1}
    dh_step = np.empty((B, H), dtype)  # dgh_t @ W_hh
    d_rh = np.empty((B, H), dtype)  # dL/d(r ⊙ h) (reset_after=False)
    da_n_t = np.zeros((B, H), dtype)  # this step's da_n, contiguous for the GEMM
    dgh_rz_t = np.zeros((B, 2 * H), dtype)  # this step's r and z rows of dgh
    w_hh_n = np.ascontiguousarray(w_hh[2 * H:])  # (H, H)
    for s in range(T):
        t = s if reverse else T - 1 - s  # the opposite order of the forward pass
        row0 = t * B
        for b in range(B):
            if t >= lengths[b]:
                for j in range(H):
                    da_n_t[b, j] = 0
                continue
            g = row0 + b
            for j in range(H):
                r = gates[t, b, j]
                z = gates[t, b, H + j]
                n = gates[t, b, 2 * H + j]
                dh_new = dh[b, j] + dy[t, b, j]
                da_n = dh_new * (1.0 - z) * (1.0 - n * n)
                da_z = dh_new * (h_prev[t, b, j] - n) * z * (1.0 - z)
                dgi[g, H + j] = da_z
                dgh[g, H + j] = da_z
                dgi[g, 2 * H + j] = da_n
                da_n_t[b, j] = da_n
                if reset_after:
                    da_r = da_n * hn[t, b, j] * r * (1.0 - r)
                    dgi[g, j] = da_r
                    dgh[g, j] = da_r
                    dgh[g, 2 * H + j] = da_n * r
                else:
                    dgh[g, 2 * H + j] = da_n
                    hid_n[g, j] = r * h_prev[t, b, j]
                dh_keep[b, j] = dh_new * z
        if not reset_after:
            # r enters through W_hn (r ⊙ h): its gradient needs the whole row of da_n first.
            np.dot(da_n_t, w_hh_n, d_rh)
            for b in range(B):
                if t >= lengths[b]:
                    for j in range(2 * H):
                        dgh_rz_t[b, j] = 0
                    continue
                g = row0 + b
                for j in range(H):
                    r = gates[t, b, j]
                    da_r = d_rh[b, j] * h_prev[t, b, j] * r * (1.0 - r)
                    dgi[g, j] = da_r
                    dgh[g, j] = da_r
                    dh_keep[b, j] += d_rh[b, j] * r
                    dgh_rz_t[b, j] = da_r
                    dgh_rz_t[b, H + j] = dgh[g, H + j]
            np.dot(dgh_rz_t, w_hh[:2 * H], dh_step)
        else:
            np.dot(dgh[row0:row0 + B], w_hh, dh_step)
        for b in range(B):
            if t >= lengths[b]:
                continue  # an invalid step passes dh through untouched
            for j in range(H):
                dh[b, j] = dh_keep[b, j] + dh_step[b, j]
    # Reductions over all T·B rows: one GEMM each.
    x2 = x.reshape(T * B, I)
    np.dot(dgi, w_ih, dx.reshape(T * B, I))
    np.dot(dgi.T, x2, dw_ih)
    h2 = h_prev.reshape(T * B, H)
    if reset_after:
        np.dot(dgh.T, h2, dw_hh)
    else:
        # Column slices of dgh are strided: copy them once so that BLAS sees contiguous arrays.
        dw_hh[:2 * H] = np.dot(np.ascontiguousarray(dgh[:, :2 * H]).T, h2)
        dw_hh[2 * H:] = np.dot(np.ascontiguousarray(dgh[:, 2 * H:]).T, hid_n)
    for k in range(3 * H):
        db_ih[k] = 0
        db_hh[k] = 0
    for g in range(T * B):
        for k in range(3 * H):
            db_ih[k] += dgi[g, k]
            db_hh[k] += dgh[g, k]


def backward(cache, dy, dh_n):
    """BPTT for `forward(..., train=True)`: returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, w_ih, w_hh = cache.x, cache.w_ih, cache.w_hh
    dtype = x.dtype
    dx = np.empty(x.shape, dtype)
    dh = np.array(dh_n, dtype=dtype, copy=True, order="C")
    dw_ih = np.empty(w_ih.shape, dtype)
    dw_hh = np.empty(w_hh.shape, dtype)
    db_ih = np.empty(w_ih.shape[0], dtype)
    db_hh = np.empty(w_ih.shape[0], dtype)
    hn = cache.hn if cache.reset_after else np.empty((0, 0, 0), dtype)
    _backward_kernel(x, cache.h_prev, cache.gates, hn, w_ih, w_hh, cache.lengths, cache.reverse,
                     cache.reset_after, np.ascontiguousarray(dy, dtype=dtype), dh,
                     dx, dw_ih, dw_hh, db_ih, db_hh)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh
