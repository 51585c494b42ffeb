"""NumPy reference GRU: forward, backward and step for one layer and one direction, written for
clarity.

This is the truth the compiled backends (cpu.py, the numgru.cuda package) are tested against; it
is not meant to be fast, and it shares no code with them (not even sigmoid). Its functions are
the backend contract's (numgru/contract.py: arguments, shapes, lengths and directions, the
training cache); everything is computed in x's dtype (float32 or float64).

Equations (docs/DESIGN.md), with gi = W_i* x + b_i* and gh = W_h* h + b_h*:
    r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z)
    reset_after=True:  n = tanh(gi_n + r ⊙ gh_n)
    reset_after=False: n = tanh(gi_n + W_hn (r ⊙ h) + b_hn)
    h' = (1 − z) ⊙ n + z ⊙ h
"""

import numpy as np

from .contract import GRUCache


def _sigmoid(a):
    # Split by sign so that exp never overflows: σ(a) = 1/(1+e^-a) = e^a/(1+e^a).
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    e = np.exp(a[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _step_order(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    # The input projection of every step at once: (T, B, 3H).
    gi = x @ w_ih.T + b_ih
    y = np.zeros((T, B, H), dtype)
    if train:
        h_prev = np.zeros((T, B, H), dtype)  # state entering step t
        gates = np.zeros((4, T, B, H), dtype)  # r, z, n after their nonlinearities, and hn
    h = h0.copy()
    for t in _step_order(T, reverse):
        valid = (t < lengths)[:, None]  # (B, 1)
        if reset_after:
            gh = h @ w_hh.T + b_hh
            r = _sigmoid(gi[t, :, :H] + gh[:, :H])
            z = _sigmoid(gi[t, :, H:2 * H] + gh[:, H:2 * H])
            hn_t = gh[:, 2 * H:]  # W_hn h + b_hn
            n = np.tanh(gi[t, :, 2 * H:] + r * hn_t)
        else:
            gh_rz = h @ w_hh[:2 * H].T + b_hh[:2 * H]
            r = _sigmoid(gi[t, :, :H] + gh_rz[:, :H])
            z = _sigmoid(gi[t, :, H:2 * H] + gh_rz[:, H:])
            rh_proj = (r * h) @ w_hh[2 * H:].T
            n = np.tanh(gi[t, :, 2 * H:] + rh_proj + b_hh[2 * H:])
            hn_t = rh_proj + b_hh[2 * H:]  # W_hn (r ⊙ h) + b_hn, kept for the one layout
        h_new = (1 - z) * n + z * h
        if train:
            h_prev[t] = h
            gates[:, t] = np.where(valid, np.stack([r, z, n, hn_t]), 0)
        h = np.where(valid, h_new, h)
        y[t] = np.where(valid, h_new, 0)
    cache = None
    if train:
        cache = GRUCache(x=x, gates=gates, w_ih=w_ih, w_hh=w_hh, lengths=lengths,
                         reverse=reverse, reset_after=reset_after, h_prev=h_prev)
    return y, h, cache


def backward(cache, dy, dh_n):
    """Backpropagation through time for `forward(..., train=True)`.

    dy (T,B,H) and dh_n (B,H) are the gradients of the loss with respect to y and h_n. Returns
    (dx (T,B,I), dh0 (B,H), dw_ih (3H,I), dw_hh (3H,H), db_ih (3H,), db_hh (3H,)), fresh arrays.
    """
    x, w_ih, w_hh = cache.x, cache.w_ih, cache.w_hh
    T, B, _ = x.shape
    H = w_hh.shape[1]
    lengths = cache.lengths
    dgi = np.zeros((T, B, 3 * H), x.dtype)  # gradient of the pre-activations from the input side
    dgh = np.zeros((T, B, 3 * H), x.dtype)  # ... and from the hidden side (n rows: see below)
    # What W_hh's rows multiply: h, or r ⊙ h for the n rows (reset_after=False).
    hid_in = cache.h_prev.copy()
    dh = dh_n.copy()
    # Walk the steps in the opposite order of the forward pass.
    for t in reversed(list(_step_order(T, cache.reverse))):
        valid = (t < lengths)[:, None]
        h = cache.h_prev[t]
        r, z, n, hn = cache.gates[:, t]
        dh_new = np.where(valid, dh + dy[t], 0)  # invalid steps pass dh through untouched
        dn = dh_new * (1 - z)
        dz = dh_new * (h - n)
        da_n = dn * (1 - n * n)
        da_z = dz * z * (1 - z)
        if cache.reset_after:
            da_r = da_n * hn * r * (1 - r)
            dgh_t = np.concatenate([da_r, da_z, da_n * r], axis=1)
            dh_prev = dh_new * z + dgh_t @ w_hh
        else:
            d_rh = da_n @ w_hh[2 * H:]  # gradient of r ⊙ h
            da_r = d_rh * h * r * (1 - r)
            dgh_t = np.concatenate([da_r, da_z, da_n], axis=1)
            dh_prev = dh_new * z + dgh_t[:, :2 * H] @ w_hh[:2 * H] + d_rh * r
            hid_in[t, :, :] = r * h
        dgi[t] = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh[t] = dgh_t
        dh = np.where(valid, dh_prev, dh)
    # Reductions over all T·B rows.
    dgi2 = dgi.reshape(T * B, 3 * H)
    dgh2 = dgh.reshape(T * B, 3 * H)
    dx = (dgi2 @ w_ih).reshape(x.shape)
    dw_ih = dgi2.T @ x.reshape(T * B, -1)
    h2 = cache.h_prev.reshape(T * B, H)
    dw_hh = np.empty_like(w_hh)
    dw_hh[:2 * H] = dgh2[:, :2 * H].T @ h2
    dw_hh[2 * H:] = dgh2[:, 2 * H:].T @ hid_in.reshape(T * B, H)
    db_ih = dgi2.sum(axis=0)
    db_hh = dgh2.sum(axis=0)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """One GRU step, h1 (B,H) = GRU(x (B,I), h (B,H)); None when x or h is not finite."""
    if not (np.isfinite(x).all() and np.isfinite(h).all()):
        return None
    lengths = np.ones(x.shape[0], np.int64)
    return forward(x[None], h, w_ih, w_hh, b_ih, b_hh, lengths, reset_after=reset_after)[1]
