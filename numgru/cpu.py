"""Numba CPU backend: @njit kernels for one GRU layer and one direction, signatures as reference.py.

Work split: every matrix product is one BLAS GEMM (`_blas.gemm`, SciPy's BLAS with its own
threads): the input projection of all steps, each step's recurrent product, and after the reverse
loop dx, dW_ih and dW_hh over all T·B rows. Between two per-step GEMMs the gate math of each batch
row is one fused loop over the hidden units, compiled to SIMD code (float32 sigmoid/tanh from
_mathfn, numpy error model so no division check breaks vectorisation). There is no `prange` in the
recurrence, so no Numba thread pool ever spins against BLAS's threads inside it (a per-step GEMM
inside a `prange` region was seen to run 40 times slower).

Training cache (per layer and direction, beyond the outputs y it references): the gates r, z, n and
hn = W_hn h + b_hn (W_hn (r ⊙ h) + b_hn, unused, for reset_after=False: one layout keeps the loops
free of branches), four (T, B, H) blocks, plus a reference to the input x: T·B·(4H + I) values.
The state entering each step is not stored: for a valid step it is the previous valid step's
output (y[t-1] forward, y[t+1] reverse) or h0.

Numba caches these kernels per source file: after editing _mathfn.py or _blas.py alone, delete
numgru/__pycache__/*.nbi / *.nbc (a fresh install or clone never has stale ones).

Shapes, layouts and conventions: see reference.py. Inputs are trusted: layers.py checks them once.
"""

import numpy as np
from numba import njit

from ._blas import N_, T_, gemm
from ._cache import GRUCache
from ._mathfn import sigmoid, tanh

_JIT = dict(cache=True, error_model="numpy")  # numpy error model: no ZeroDivisionError branches


@njit(inline="always", **_JIT)
def _forward_row(gi, gh, b_ih, b_hh, h, y, g_r, g_z, g_n, g_hn, H, one, reset_after, train):
    """One batch row of one step: gates from gi = W_i x and gh = W_h h (3H each; gh's n part is
    W_hn (r ⊙ h) when not reset_after); h (H) is updated in place and copied to y (H); with train,
    the gates r, z, n and hn (H each) are kept.

    Written so that LLVM vectorises the loops (seen: 6 times faster than the scalar loop): the
    branch on train sits outside them, the variant is a select, each stored gate has an array of
    its own (stores into several blocks of one array at run-time offsets left the loop scalar),
    and the loop bodies call no function that takes an array (its reference counting would land
    inside the loop).
    """
    if train:
        for j in range(H):
            r = sigmoid((gi[j] + b_ih[j]) + (gh[j] + b_hh[j]))
            z = sigmoid((gi[H + j] + b_ih[H + j]) + (gh[H + j] + b_hh[H + j]))
            hn = gh[2 * H + j] + b_hh[2 * H + j]
            n = tanh((gi[2 * H + j] + b_ih[2 * H + j]) + (r if reset_after else one) * hn)
            h_new = (one - z) * n + z * h[j]
            g_r[j] = r
            g_z[j] = z
            g_n[j] = n
            g_hn[j] = hn
            h[j] = h_new
            y[j] = h_new
    else:
        for j in range(H):
            r = sigmoid((gi[j] + b_ih[j]) + (gh[j] + b_hh[j]))
            z = sigmoid((gi[H + j] + b_ih[H + j]) + (gh[H + j] + b_hh[H + j]))
            hn = gh[2 * H + j] + b_hh[2 * H + j]
            n = tanh((gi[2 * H + j] + b_ih[2 * H + j]) + (r if reset_after else one) * hn)
            h_new = (one - z) * n + z * h[j]
            h[j] = h_new
            y[j] = h_new


@njit(**_JIT)
def _project_kernel(x, w_ih, one, gi):
    """gi (T·B, 3H) = x W_ih^T: the input projection of every step, one GEMM."""
    T, B, I = x.shape
    G = gi.shape[1]
    gemm(N_, T_, T * B, G, I, one, x, 0, I, w_ih, 0, I, 0, gi, 0, G)


@njit(**_JIT)
def _recurrence_kernel(gi, w_hh, w_hh_t, b_ih, b_hh, lengths, reverse, reset_after, train, one,
                       y, h, g_r, g_z, g_n, g_hn):
    """y_t = h_t = GRU(x_t, h_{t-1}) over the valid steps.

    gi (T·B, 3H) from _project_kernel; y (T,B,H) written; h (B,H) holds h0 on entry and h_n on
    exit; g_r, g_z, g_n, g_hn (T,B,H) written when train (else (1,B,H) scratch). The per-step GEMM
    h W_hh^T reads W_hh (3H,H) transposed, or, when w_hh_t (H,3H) is not empty, W_hh^T as stored:
    OpenBLAS is faster that way for small batches (B·H <= 2048: 30-50% per step) and slower for
    large ones.
    """
    T, B, H = y.shape
    G = 3 * H
    stored_t = w_hh_t.size > 0
    gh = np.empty((B, G), y.dtype)  # this step's recurrent pre-activations (bias excluded)
    rh = np.empty((B, H), y.dtype)  # r ⊙ h (reset_after=False)
    for s in range(T):
        t = T - 1 - s if reverse else s
        # reset_after: all of W_hh h at once; else r first (W_h{r,z} h), then W_hn (r ⊙ h).
        cols = G if reset_after else 2 * H
        if stored_t:
            gemm(N_, N_, B, cols, H, one, h, 0, H, w_hh_t, 0, G, 0, gh, 0, G)
        else:
            gemm(N_, T_, B, cols, H, one, h, 0, H, w_hh, 0, H, 0, gh, 0, G)
        if not reset_after:
            for b in range(B):
                gib = gi[t * B + b]
                hb = h[b]
                for j in range(H):
                    r = sigmoid((gib[j] + b_ih[j]) + (gh[b, j] + b_hh[j]))
                    rh[b, j] = r * hb[j]
            if stored_t:
                gemm(N_, N_, B, H, H, one, rh, 0, H, w_hh_t, 2 * H, G, 0, gh, 2 * H, G)
            else:
                gemm(N_, T_, B, H, H, one, rh, 0, H, w_hh, 2 * H * H, H, 0, gh, 2 * H, G)
        tg = t if train else 0
        for b in range(B):
            if t >= lengths[b]:
                y[t, b, :] = 0
                continue
            _forward_row(gi[t * B + b], gh[b], b_ih, b_hh, h[b], y[t, b], g_r[tg, b], g_z[tg, b],
                         g_n[tg, b], g_hn[tg, b], H, one, reset_after, train)


def _transposed_for_small_batch(w_hh, B):
    """W_hh^T (H, 3H) as a contiguous copy when the batch is small enough for the per-step GEMM to
    run faster on it (see _recurrence_kernel), else an empty array."""
    H = w_hh.shape[1]
    if B * H <= 2048:
        return np.ascontiguousarray(w_hh.T)
    return np.empty((0, 0), w_hh.dtype)


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    one = dtype.type(1)
    y = np.empty((T, B, H), dtype)
    h = np.array(h0, dtype=dtype, copy=True, order="C")
    # r, z, n, hn: four (T, B, H) blocks of one allocation, 0 at invalid steps; a (1, B, H)
    # scratch each for inference.
    gates = np.zeros((4, T, B, H) if train else (4, 1, B, H), dtype)
    gi = np.empty((T * B, 3 * H), dtype)
    _project_kernel(x, w_ih, one, gi)
    w_hh_t = _transposed_for_small_batch(w_hh, B)
    _recurrence_kernel(gi, w_hh, w_hh_t, b_ih, b_hh, lengths, reverse, reset_after, train, one,
                       y, h, gates[0], gates[1], gates[2], gates[3])
    cache = None
    if train:
        cache = GRUCache(x=x, h_prev=None, gates=gates, hn=None, w_ih=w_ih, w_hh=w_hh,
                         lengths=lengths, reverse=reverse, reset_after=reset_after, y=y, h0=h0)
    return y, h, cache


@njit(**_JIT)
def _step_kernel(x, h, w_ih, w_hh, b_ih, b_hh, reset_after, one, h1):
    """One step for all rows, h1 = GRU(x, h): x (B,I), h (B,H), h1 (B,H) written, through the
    same projection and recurrence kernels as a sequence of length 1 (one compiled call from
    Python: the streaming path pays one dispatch per step).

    Returns False (and leaves h1 unspecified) when x or h holds NaN or Inf: the caller reports it.
    """
    B, I = x.shape
    H = h.shape[1]
    for b in range(B):
        for i in range(I):
            if not np.isfinite(x[b, i]):
                return False
        for j in range(H):
            if not np.isfinite(h[b, j]):
                return False
    gi = np.empty((B, 3 * H), x.dtype)
    _project_kernel(x.reshape(1, B, I), w_ih, one, gi)
    h1[:] = h
    y = np.empty((1, B, H), x.dtype)  # the step's output; h1 is the state (distinct arrays)
    # Inference never touches the gate arrays: y stands in for all four.
    _recurrence_kernel(gi, w_hh, np.empty((0, 0), x.dtype), b_ih, b_hh, np.ones(B, np.int64),
                       False, reset_after, False, one, y, h1, y, y, y, y)
    return True


def step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """One GRU step, h1 (B,H) = GRU(x (B,I), h (B,H)); None when x or h is not finite."""
    h1 = np.empty(h.shape, h.dtype)
    ok = _step_kernel(x, h, w_ih, w_hh, b_ih, b_hh, reset_after, h.dtype.type(1), h1)
    return h1 if ok else None


@njit(inline="always", **_JIT)
def _backward_row(g_r, g_z, g_n, g_hn, h_prev, dy, dh, dgi, dgh, hid_n, H, reset_after):
    """One batch row of one step, backwards: from dh (H, dL/dh_t without the output's share) and dy,
    the pre-activation gradients dgi and dgh (3H), and dh becomes the direct share dh_t ⊙ z.
    For reset_after=False, dgi's r block waits for W_hn^T da_n (second pass in the caller), dgh is
    dgi itself, and hid_n gets r ⊙ h_prev.

    The arithmetic runs in float64 (the literal 1.0 promotes it) and rounds once per stored value:
    there is no transcendental here, so it costs little, and it keeps float32 gradients as close
    to the float64 reference as the float32 GEMMs allow. Each loop stores into one block only
    (several blocks of one array at run-time offsets in one loop stay scalar; see _forward_row),
    so the row takes a few short passes, each vectorised, all in L1.
    """
    dgi_r = dgi[:H]
    dgi_z = dgi[H:2 * H]
    dgi_n = dgi[2 * H:]
    for j in range(H):  # da_n = dh' (1 - z)(1 - n²)
        z = np.float64(g_z[j])
        n = np.float64(g_n[j])
        dgi_n[j] = (np.float64(dh[j]) + dy[j]) * (1.0 - z) * (1.0 - n * n)
    for j in range(H):  # da_z = dh' (h - n) z (1 - z)
        z = np.float64(g_z[j])
        dgi_z[j] = (np.float64(dh[j]) + dy[j]) * (np.float64(h_prev[j]) - g_n[j]) * z * (1.0 - z)
    if reset_after:
        for j in range(H):  # da_r = da_n hn r (1 - r)
            z = np.float64(g_z[j])
            n = np.float64(g_n[j])
            r = np.float64(g_r[j])
            da_n = (np.float64(dh[j]) + dy[j]) * (1.0 - z) * (1.0 - n * n)
            dgi_r[j] = da_n * g_hn[j] * r * (1.0 - r)
        dgh_rz = dgh[:2 * H]
        dgh_n = dgh[2 * H:]
        for k in range(2 * H):  # r and z: the hidden side sees the same gradient
            dgh_rz[k] = dgi[k]
        for j in range(H):  # n: the hidden side is scaled by r
            z = np.float64(g_z[j])
            n = np.float64(g_n[j])
            da_n = (np.float64(dh[j]) + dy[j]) * (1.0 - z) * (1.0 - n * n)
            dgh_n[j] = da_n * g_r[j]
    else:
        for j in range(H):
            hid_n[j] = np.float64(g_r[j]) * h_prev[j]
    for j in range(H):  # the direct path to h_{t-1}: dh' z
        dh[j] = (np.float64(dh[j]) + dy[j]) * g_z[j]


@njit(**_JIT)
def _backward_recurrence_kernel(y, h0, g_r, g_z, g_n, g_hn, w_hh, lengths, reverse, reset_after,
                                one, dy, dh, dgi, dgh, hid_n):
    """The reverse loop over the steps.

    dh (B,H) holds dL/dh_n on entry and dL/dh0 on exit. Writes the rows of dgi (T·B, 3H), dgh
    (T·B, 3H; dgi itself when not reset_after) and hid_n (T·B, H; r ⊙ h_prev, reset_after=False).
    """
    T, B, H = y.shape
    G = 3 * H
    d_rh = np.empty((B, H), y.dtype)  # W_hn^T da_n: the gradient of r ⊙ h (reset_after=False)
    for s in range(T):
        t = s if reverse else T - 1 - s  # the opposite order of the forward pass
        row0 = t * B  # first row of step t in dgi / dgh
        for b in range(B):
            g = row0 + b
            if t >= lengths[b]:
                dgi[g, :] = 0  # an invalid step passes dh through untouched
                if reset_after:
                    dgh[g, :] = 0
                continue
            if not reverse:
                h_prev = y[t - 1, b] if t > 0 else h0[b]
            else:
                h_prev = y[t + 1, b] if t + 1 < lengths[b] else h0[b]
            _backward_row(g_r[t, b], g_z[t, b], g_n[t, b], g_hn[t, b], h_prev, dy[t, b], dh[b],
                          dgi[g], dgh[g], hid_n[g if not reset_after else 0], H, reset_after)
        if reset_after:
            gemm(N_, N_, B, H, G, one, dgh, row0 * G, G, w_hh, 0, H, one, dh, 0, H)
        else:
            # r enters through W_hn (r ⊙ h): its gradient needs the whole row of da_n first.
            gemm(N_, N_, B, H, H, one, dgi, row0 * G + 2 * H, G, w_hh, 2 * H * H, H, 0, d_rh, 0, H)
            for b in range(B):
                if t >= lengths[b]:
                    continue
                if not reverse:
                    h_prev = y[t - 1, b] if t > 0 else h0[b]
                else:
                    h_prev = y[t + 1, b] if t + 1 < lengths[b] else h0[b]
                dgb = dgi[row0 + b]
                dhb = dh[b]
                for j in range(H):
                    r = np.float64(g_r[t, b, j])
                    dgb[j] = d_rh[b, j] * h_prev[j] * r * (1.0 - r)
                    dhb[j] += d_rh[b, j] * r
            gemm(N_, N_, B, H, 2 * H, one, dgi, row0 * G, G, w_hh, 0, H, one, dh, 0, H)


@njit(**_JIT)
def _backward_reduce_kernel(x, y, h0, dgi, dgh, hid_n, w_ih, lengths, reverse, reset_after, one,
                            dx, dw_ih, dw_hh, db_ih, db_hh):
    """After the reverse loop: dx (T,B,I), dw_ih (3H,I), dw_hh (3H,H), db_ih, db_hh (3H,), each a
    reduction over all T·B rows (one GEMM each), overwritten."""
    T, B, I = x.shape
    H = y.shape[2]
    G = 3 * H
    TB = T * B
    gemm(N_, N_, TB, I, G, one, dgi, 0, G, w_ih, 0, I, 0, dx, 0, I)
    gemm(T_, N_, G, I, TB, one, dgi, 0, G, x, 0, I, 0, dw_ih, 0, I)
    # dW_hh = Σ_t dgh_t^T h_prev_t. For t past each sequence's first step h_prev_t is the
    # neighbouring output (y[t-1] forward, y[t+1] reverse) and rows of invalid steps are zero, so
    # one GEMM over shifted views covers them; the first steps (t = 0, or t = length-1 reverse)
    # take h0 in a second, small GEMM over their gathered rows.
    rows_rz = 3 * H if reset_after else 2 * H  # rows of dW_hh that multiply h_prev itself
    first = np.empty((B, G), dgi.dtype)
    for b in range(B):
        t0 = lengths[b] - 1 if reverse else 0
        first[b] = dgh[t0 * B + b]
    if reverse:
        gemm(T_, N_, rows_rz, H, TB - B, one, dgh, 0, G, y, B * H, H, 0, dw_hh, 0, H)
    else:
        gemm(T_, N_, rows_rz, H, TB - B, one, dgh, B * G, G, y, 0, H, 0, dw_hh, 0, H)
    gemm(T_, N_, rows_rz, H, B, one, first, 0, G, h0, 0, H, one, dw_hh, 0, H)
    if not reset_after:
        gemm(T_, N_, H, H, TB, one, dgi, 2 * H, G, hid_n, 0, H, 0, dw_hh, 2 * H * H, H)
    # Bias gradients: column sums over T·B rows, accumulated in float64 (a float32 running sum of
    # many rows would lose the accuracy that the GEMMs above keep by blocking).
    acc_ih = np.zeros(G, np.float64)
    acc_hh = np.zeros(G, np.float64)
    for g in range(TB):
        for k in range(G):
            acc_ih[k] += dgi[g, k]
            acc_hh[k] += dgh[g, k]
    db_ih[:] = acc_ih
    db_hh[:] = acc_hh


def backward(cache, dy, dh_n):
    """BPTT for `forward(..., train=True)`: returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, y, w_ih, w_hh = cache.x, cache.y, cache.w_ih, cache.w_hh
    T, B, H = y.shape
    dtype = x.dtype
    one = dtype.type(1)
    dy = np.ascontiguousarray(dy, dtype=dtype)
    dh = np.array(dh_n, dtype=dtype, copy=True, order="C")
    h0 = np.ascontiguousarray(cache.h0, dtype=dtype)
    # dL/d(pre-activation) of r, z, n per row: dgi from the input side; dgh from the hidden side
    # (differs in the n columns, × r, when reset_after; equal to dgi otherwise, so not stored).
    dgi = np.empty((T * B, 3 * H), dtype)
    dgh = np.empty((T * B, 3 * H), dtype) if cache.reset_after else dgi
    hid_n = np.zeros((T * B if not cache.reset_after else 1, H), dtype)
    g = cache.gates
    _backward_recurrence_kernel(y, h0, g[0], g[1], g[2], g[3], w_hh, cache.lengths, cache.reverse,
                                cache.reset_after, one, dy, dh, dgi, dgh, hid_n)
    dx = np.empty(x.shape, dtype)
    dw_ih = np.empty(w_ih.shape, dtype)
    dw_hh = np.empty(w_hh.shape, dtype)
    db_ih = np.empty(w_ih.shape[0], dtype)
    db_hh = np.empty(w_ih.shape[0], dtype)
    _backward_reduce_kernel(x, y, h0, dgi, dgh, hid_n, w_ih, cache.lengths, cache.reverse,
                            cache.reset_after, one, dx, dw_ih, dw_hh, db_ih, db_hh)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh
