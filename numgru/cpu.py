"""Numba CPU backend: @njit kernels for one GRU layer and one direction, signatures as reference.py.

A layer pass (`forward`, `backward`) runs as P parts (`_sync.run_parts`: compiled `nogil` kernels
on numgru's own Python threads, P = min(threads allowed, weight panels), 1 for small products).
Each part owns a slice of the hidden units and packs its own panels of the weights once per call;
the parts meet at an atomic barrier once per step (twice for reset_after=False), since every
step reads the whole previous state. Every matrix product runs in the register tile of `_tile`
(LLVM vector IR, fused multiply-adds into accumulators held in registers). Per step and part:
- forward: h W_hh^T for its units' three gates, their gate math (one fused loop per row, float32
  sigmoid/tanh from _mathfn that LLVM vectorises 16 lanes wide; numpy error model, so no
  division check breaks the loop) and its slice of the next state (double-buffered); then, in
  the barrier's window (after arriving, before waiting), the next step's x W_ih^T;
- backward: its units' gate gradients; in the barrier's window the previous step's share of
  the rows of dx and, every ~128 rows, the rows of dW_ih, dW_hh and the biases for its units
  (float32 chains of about _FLUSH_ROWS rows added into float64 sums); after the barrier, its
  slice of dgh W_hh into dh.
Work in a window needs nothing the other parts write in that step, so a part that is ahead
does it instead of spinning. Every entry's arithmetic is the same whatever the partition, so results do not depend on the
number of threads (tested bit for bit). No BLAS call is made in these passes: an OpenBLAS thread
pool spin-waits after each call and, sharing the cores with the parts, slowed the per-step
barriers down several times. No Numba threading layer is used either (its OpenMP pool spins
against BLAS, its workqueue pool aborts on concurrent callers); a second caller while the
parts are busy runs its pass as one part on its own thread, with the same results.

The GRUCell step (`step`) keeps BLAS GEMMs on the weights as stored: one step at a small batch
does not pay for packing them.

Training cache (per layer and direction, beyond the outputs y it references): the gates r, z, n and
hn = W_hn h + b_hn (W_hn (r ⊙ h) + b_hn, unused, for reset_after=False: one layout keeps the loops
free of branches), four (T, B, H) blocks, plus a reference to the input x: T·B·(4H + I) values.
The state entering each step is not stored: for a valid step it is the previous valid step's
output (y[t-1] forward, y[t+1] reverse) or h0.

Numba caches these kernels per source file: after editing _mathfn.py, _tile.py, _sync.py or
_blas.py alone, delete numgru/__pycache__/*.nbi / *.nbc (a fresh install or clone never has
stale ones).

Shapes, layouts and conventions: see reference.py. Inputs are trusted: layers.py checks them once.
"""

import numpy as np
from numba import njit

from ._cache import GRUCache
from ._mathfn import sigmoid, tanh
from ._sync import arrive, barrier, max_threads, run_parts, wait
from ._tile import panel_products, prefer_wide_vectors, row_dots, vector_length

_JIT = dict(cache=True, error_model="numpy")  # numpy error model: no ZeroDivisionError branches


@njit(inline="always", **_JIT)
def _forward_units(gir, giz, gin, ghr, ghz, ghn, bir, biz, bin_, bhr, bhz, bhn, h, h_next, y,
                   g_r, g_z, g_n, g_hn, n, one, reset_after, train):
    """One batch row of one step on n hidden units: gates from gi = W_i x and gh = W_h h (gh's n
    block is W_hn (r ⊙ h) when not reset_after), each gate's inputs a 0-based view of its own
    (indexing one view at run-time offsets left the loop scalar); h is read and h_next (which
    may be h itself) and y written; with train, the gates r, z, n and hn are kept.

    Written so that LLVM vectorises the loops (seen: 6 times faster than the scalar loop): the
    branch on train sits outside them, the variant is a select, each stored gate has an array of
    its own (stores into several blocks of one array at run-time offsets left the loop scalar),
    and the loop bodies call no function that takes an array (its reference counting would land
    inside the loop)."""
    if train:
        for j in range(n):
            r = sigmoid((gir[j] + bir[j]) + (ghr[j] + bhr[j]))
            z = sigmoid((giz[j] + biz[j]) + (ghz[j] + bhz[j]))
            hn = ghn[j] + bhn[j]
            nv = tanh((gin[j] + bin_[j]) + (r if reset_after else one) * hn)
            h_new = (one - z) * nv + z * h[j]
            g_r[j] = r
            g_z[j] = z
            g_n[j] = nv
            g_hn[j] = hn
            h_next[j] = h_new
            y[j] = h_new
    else:
        for j in range(n):
            r = sigmoid((gir[j] + bir[j]) + (ghr[j] + bhr[j]))
            z = sigmoid((giz[j] + biz[j]) + (ghz[j] + bhz[j]))
            hn = ghn[j] + bhn[j]
            nv = tanh((gin[j] + bin_[j]) + (r if reset_after else one) * hn)
            h_new = (one - z) * nv + z * h[j]
            h_next[j] = h_new
            y[j] = h_new


@njit(**_JIT)
def _zero(a):
    """a[:] = 0 for a 1-D array (a call: Numba compiles slice assignments slowly, and the part
    kernels have many)."""
    for i in range(a.size):
        a[i] = 0


@njit(**_JIT)
def _copy(dst, src):
    """dst[:] = src for 1-D arrays of one size (see _zero)."""
    for i in range(dst.size):
        dst[i] = src[i]


@njit(inline="always", **_JIT)
def _pack_gate_panels(w, u0, u1, wp):
    """wp[u, k, g·VL + i] = w[g·H + u·VL + i, k] (0 past H) for the panels u0..u1 of wp (NB, K,
    3·VL): `_tile.pack_gates` in compiled code, run by each part over its own panels."""
    K = wp.shape[1]
    VL = wp.shape[2] // 3
    H = w.shape[0] // 3
    for u in range(u0, u1):
        pu = wp[u]
        for g in range(3):
            for i in range(VL):
                j = u * VL + i
                c = g * VL + i
                if j < H:
                    row = w[g * H + j]
                    for k in range(K):
                        pu[k, c] = row[k]
                else:
                    for k in range(K):
                        pu[k, c] = 0


@njit(nogil=True, **_JIT)
def _recurrence_part(p, P, ctrl, x, w_ih, w_hh, wip, wp, b_ih, b_hh, lengths, reverse,
                     reset_after, train, one, gx, hbuf, rh, gh, y, g_r, g_z, g_n, g_hn):
    """Part p of P of a whole forward pass (the math of reference.forward) with the register
    tile of `_tile`.

    This part owns the hidden units of panels [NB·p/P, NB·(p+1)/P) and packs its own panels of
    W_ih and W_hh into wip and wp (`_tile.pack_gates` layout). Per step it computes their three
    gates' input projections x_t W_ih^T into gx (B, 3·Hp; gate g of unit j at column g·Hp + j,
    Hp = NB·VL) and recurrent products h W_hh^T into gh (same layout), both read by this part
    only, then their gate math and their slice of the next state, and meets the other parts
    once per step (twice for reset_after=False, whose n product needs every unit's r ⊙ h in
    rh (B, H)). Every part reads whole rows of the state, so it is double-buffered: hbuf (2, B,
    H), step s reads hbuf[s % 2] and writes the other. x is (T·B, I). With train, the gates of
    invalid steps are written as 0. Returns False when another part aborted.
    """
    prefer_wide_vectors()
    T, B, H = y.shape
    I = x.shape[1]
    NB = wp.shape[0]
    W3 = wp.shape[2]
    VL = W3 // 3
    Hp = NB * VL
    G = 3 * Hp
    u0 = NB * p // P
    u1 = NB * (p + 1) // P
    j0 = min(u0 * VL, H)
    j1 = min(u1 * VL, H)
    n = j1 - j0
    _pack_gate_panels(w_ih, u0, u1, wip)
    _pack_gate_panels(w_hh, u0, u1, wp)
    bir = b_ih[j0:j1]
    biz = b_ih[H + j0:H + j1]
    bin_ = b_ih[2 * H + j0:2 * H + j1]
    bhr = b_hh[j0:j1]
    bhz = b_hh[H + j0:H + j1]
    bhn = b_hh[2 * H + j0:2 * H + j1]
    nbar = 0
    t = T - 1 if reverse else 0
    # the first step's input projection (the others: see the barrier)
    panel_products(3, x, t * B * I, I, 1, B, wip, u0 * I * W3, I * W3, W3, I, gx, u0 * VL, VL, G,
                   Hp, u1 - u0)
    for s in range(T):
        t = T - 1 - s if reverse else s
        h = hbuf[s % 2]
        h_next = hbuf[(s + 1) % 2]
        if reset_after:
            panel_products(3, h, 0, H, 1, B, wp, u0 * H * W3, H * W3, W3, H, gh, u0 * VL, VL, G,
                           Hp, u1 - u0)
        else:
            panel_products(2, h, 0, H, 1, B, wp, u0 * H * W3, H * W3, W3, H, gh, u0 * VL, VL, G,
                           Hp, u1 - u0)
            for b in range(B):
                gir = gx[b, j0:j1]
                ghr = gh[b, j0:j1]
                hb = h[b, j0:j1]
                rhb = rh[b, j0:j1]
                for j in range(n):
                    rhb[j] = sigmoid((gir[j] + bir[j]) + (ghr[j] + bhr[j])) * hb[j]
            nbar += 1
            if not barrier(ctrl, P, nbar):
                return False
            panel_products(1, rh, 0, H, 1, B, wp, u0 * H * W3 + 2 * VL, H * W3, W3, H, gh,
                           2 * Hp + u0 * VL, VL, G, Hp, u1 - u0)
        tg = t if train else 0
        for b in range(B):
            if t >= lengths[b]:
                _zero(y[t, b, j0:j1])
                _copy(h_next[b, j0:j1], h[b, j0:j1])
                if train:
                    _zero(g_r[t, b, j0:j1])
                    _zero(g_z[t, b, j0:j1])
                    _zero(g_n[t, b, j0:j1])
                    _zero(g_hn[t, b, j0:j1])
                continue
            gxb = gx[b]
            ghb = gh[b]
            _forward_units(gxb[j0:j1], gxb[Hp + j0:Hp + j1], gxb[2 * Hp + j0:2 * Hp + j1],
                           ghb[j0:j1], ghb[Hp + j0:Hp + j1], ghb[2 * Hp + j0:2 * Hp + j1],
                           bir, biz, bin_, bhr, bhz, bhn, h[b, j0:j1], h_next[b, j0:j1],
                           y[t, b, j0:j1], g_r[tg, b, j0:j1], g_z[tg, b, j0:j1],
                           g_n[tg, b, j0:j1], g_hn[tg, b, j0:j1], n, one, reset_after, train)
        nbar += 1
        arrive(ctrl, P)
        if s + 1 < T:
            # The next step's input projection needs no other part's result: a part that is
            # ahead computes it here instead of waiting.
            t1 = T - 2 - s if reverse else s + 1
            panel_products(3, x, t1 * B * I, I, 1, B, wip, u0 * I * W3, I * W3, W3, I, gx,
                           u0 * VL, VL, G, Hp, u1 - u0)
        if not wait(ctrl, P, nbar):
            return False
    return True


def _parts(B, H, panels):
    """Parts for a layer pass: one per thread allowed, at most one per unit panel (the forward's
    and the backward's panels differ in width), and one when a step's product is too small to
    pay for a barrier per step."""
    if 6 * B * H * H < _PARALLEL_MIN_FLOPS:
        return 1
    return max(1, min(max_threads(), panels))


_PARALLEL_MIN_FLOPS = 1 << 20


def _tiled_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after, train, y, h,
                   gates):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = y.dtype
    VL = vector_length(dtype)
    NB = -(-H // VL)
    Hp = NB * VL
    wip = np.empty((NB, I, 3 * VL), dtype)
    wp = np.empty((NB, H, 3 * VL), dtype)
    gx = np.empty((B, 3 * Hp), dtype)
    gh = np.empty((B, 3 * Hp), dtype)
    hbuf = np.empty((2, B, H), dtype)
    hbuf[0] = h0
    rh = np.empty((B, H) if not reset_after else (1, H), dtype)
    P = _parts(B, H, NB)
    run_parts(_recurrence_part, P, (x.reshape(T * B, I), w_ih, w_hh, wip, wp, b_ih, b_hh,
                                    lengths, reverse, reset_after, train, dtype.type(1), gx, hbuf,
                                    rh, gh, y, gates[0], gates[1], gates[2], gates[3]))
    h[...] = hbuf[T % 2]


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    y = np.empty((T, B, H), dtype)
    h = np.empty((B, H), dtype)  # h_n, written at the end
    # r, z, n, hn: four (T, B, H) blocks of one allocation, 0 at invalid steps (written by the
    # kernel); a (1, B, H) scratch each for inference.
    gates = np.empty((4, T, B, H) if train else (4, 1, B, H), dtype)
    _tiled_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after, train, y, h,
                   gates)
    cache = None
    if train:
        cache = GRUCache(x=x, h_prev=None, gates=gates, hn=None, w_ih=w_ih, w_hh=w_hh,
                         lengths=lengths, reverse=reverse, reset_after=reset_after, y=y, h0=h0)
    return y, h, cache


@njit(**_JIT)
def _step_kernel(x, h, w_ih, w_hh, b_ih, b_hh, reset_after, one, h1):
    """One step for all rows, h1 = GRU(x, h): x (B,I), h (B,H), h1 (B,H) written, in one compiled
    call from Python (the streaming path pays one dispatch per step). The products are row dots
    on the weights as stored (`_tile.row_dots`): a step reads each weight once and packs
    nothing, and no BLAS call (with its packing and thread hand-offs) sits in the step.

    Returns False (and leaves h1 unspecified) when x or h holds NaN or Inf: the caller reports it.
    """
    B, I = x.shape
    H = h.shape[1]
    G = 3 * H
    for b in range(B):
        for i in range(I):
            if not np.isfinite(x[b, i]):
                return False
        for j in range(H):
            if not np.isfinite(h[b, j]):
                return False
    gi = np.empty((B, G), x.dtype)
    gh = np.empty((B, G), x.dtype)
    row_dots(w_ih, 0, I, G, x, 0, I, B, I, gi, 0, G)
    # reset_after: all of W_hh h at once; else r first (W_h{r,z} h), then W_hn (r ⊙ h).
    row_dots(w_hh, 0, H, G if reset_after else 2 * H, h, 0, H, B, H, gh, 0, G)
    if not reset_after:
        rh = np.empty((B, H), x.dtype)
        for b in range(B):
            gib = gi[b]
            ghb = gh[b]
            hb = h[b]
            rhb = rh[b]
            for j in range(H):
                rhb[j] = sigmoid((gib[j] + b_ih[j]) + (ghb[j] + b_hh[j])) * hb[j]
        row_dots(w_hh, 2 * H * H, H, H, rh, 0, H, B, H, gh, 2 * H, G)
    for b in range(B):
        gib = gi[b]
        ghb = gh[b]
        h1b = h1[b]
        # Inference keeps no gates: h1's row stands in for the four gate outputs and y.
        _forward_units(gib[:H], gib[H:2 * H], gib[2 * H:], ghb[:H], ghb[H:2 * H], ghb[2 * H:],
                       b_ih[:H], b_ih[H:2 * H], b_ih[2 * H:], b_hh[:H], b_hh[H:2 * H],
                       b_hh[2 * H:], h[b], h1b, h1b, h1b, h1b, h1b, h1b, H, one, reset_after,
                       False)
    return True


_STEP_ROW_DOTS_MAX_B = 8  # above this batch a step packs the weights (the forward's tile)


def step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """One GRU step, h1 (B,H) = GRU(x (B,I), h (B,H)); None when x or h is not finite.

    Up to _STEP_ROW_DOTS_MAX_B rows, row dots on the weights as stored; a larger batch reuses
    each weight often enough that packing them for the register tile pays (a one-step forward)."""
    if x.shape[0] > _STEP_ROW_DOTS_MAX_B:
        if not (np.isfinite(x).all() and np.isfinite(h).all()):
            return None
        lengths = np.ones(x.shape[0], np.int64)
        return forward(x[None], h, w_ih, w_hh, b_ih, b_hh, lengths, reset_after=reset_after)[1]
    h1 = np.empty(h.shape, h.dtype)
    ok = _step_kernel(x, h, w_ih, w_hh, b_ih, b_hh, reset_after, h.dtype.type(1), h1)
    return h1 if ok else None


@njit(inline="always", **_JIT)
def _backward_units(g_r, g_z, g_n, g_hn, h_prev, dy, dh, dgi_r, dgi_z, dgi_n, dgh_r, dgh_z,
                    dgh_n, n, reset_after):
    """One batch row of one step, backwards, on n hidden units, every gate block a 0-based view of
    its own: from dh (dL/dh_t without the output's share) and dy, the pre-activation gradients
    dgi_* and dgh_*, and dh becomes the direct share dh_t ⊙ z. For reset_after=False, dgi_r waits
    for W_hn^T da_n (the caller's second phase) and dgh_* are not written (dgh is dgi).

    The arithmetic runs in float64 (the literal 1.0 promotes it) and rounds once per stored value:
    there is no transcendental here, so it costs little, and it keeps float32 gradients as close
    to the float64 reference as the float32 products allow. Each loop stores into one block only
    (several stores per loop into blocks of one array left loops scalar), so the row takes a few
    short passes, each vectorised, all in L1.
    """
    for j in range(n):  # da_n = dh' (1 - z)(1 - n²)
        z = np.float64(g_z[j])
        nv = np.float64(g_n[j])
        dgi_n[j] = (np.float64(dh[j]) + dy[j]) * (1.0 - z) * (1.0 - nv * nv)
    for j in range(n):  # da_z = dh' (h - n) z (1 - z)
        z = np.float64(g_z[j])
        dgi_z[j] = (np.float64(dh[j]) + dy[j]) * (np.float64(h_prev[j]) - g_n[j]) * z * (1.0 - z)
    if reset_after:
        for j in range(n):  # da_r = da_n hn r (1 - r)
            z = np.float64(g_z[j])
            nv = np.float64(g_n[j])
            r = np.float64(g_r[j])
            da_n = (np.float64(dh[j]) + dy[j]) * (1.0 - z) * (1.0 - nv * nv)
            dgi_r[j] = da_n * g_hn[j] * r * (1.0 - r)
        for j in range(n):  # r and z: the hidden side sees the same gradient
            dgh_r[j] = dgi_r[j]
        for j in range(n):
            dgh_z[j] = dgi_z[j]
        for j in range(n):  # n: the hidden side is scaled by r
            z = np.float64(g_z[j])
            nv = np.float64(g_n[j])
            da_n = (np.float64(dh[j]) + dy[j]) * (1.0 - z) * (1.0 - nv * nv)
            dgh_n[j] = da_n * g_r[j]
    for j in range(n):  # the direct path to h_{t-1}: dh' z
        dh[j] = (np.float64(dh[j]) + dy[j]) * g_z[j]


@njit(inline="always", **_JIT)
def _h_prev(y, h0, lengths, reverse, t, b):
    """The state entering step t of row b: the neighbouring output, or h0 at the first step."""
    if not reverse:
        return y[t - 1, b] if t > 0 else h0[b]
    return y[t + 1, b] if t + 1 < lengths[b] else h0[b]


@njit(inline="always", **_JIT)
def _pack_column_panels(m, q0, q1, bp):
    """bp[q, k, i] = m[k, q·W + i] (0 past m's columns) for the panels q0..q1 of bp (NQ, K, W):
    `_tile.pack_columns` in compiled code, run by the parts over their own panels."""
    K = bp.shape[1]
    W = bp.shape[2]
    N = m.shape[1]
    for q in range(q0, q1):
        c0 = q * W
        n = min(W, N - c0)
        bq = bp[q]
        for k in range(K):
            src = m[k, c0:c0 + n]
            dst = bq[k]
            for i in range(n):
                dst[i] = src[i]
            for i in range(n, W):
                dst[i] = 0


_FLUSH_ROWS = 2048  # rows of T·B per float32 chain in the weight gradients (then into float64)
_CHUNK_ROWS = 128  # rows of T·B per weight-gradient product (k of the tile)


@njit(**_JIT)  # called once per step and gate: not inlined (compile time)
def _transpose_into(src, c0, n, dst, r0, k0):
    """dst[r0 + c, k0 + b] = src[b, c0 + c] for every row b of src and c < n, in 16 × 16 blocks
    (each written line of dst gets 16 values at once)."""
    B = src.shape[0]
    for cb in range(0, n, 16):
        ce = min(cb + 16, n)
        for bb in range(0, B, 16):
            be = min(bb + 16, B)
            for c in range(cb, ce):
                drow = dst[r0 + c]
                for b in range(bb, be):
                    drow[k0 + b] = src[b, c0 + c]


@njit(**_JIT)  # called once per step or chunk: not inlined (compile time)
def _dx_rows(dgi, t, b0, b1, wihp, dx):
    """dx_t = dgi W_ih for the rows b0..b1 of step t (dgi: that step's (B, 3H) gradients; dx:
    (T·B, Ip), padded to whole panels)."""
    B, G = dgi.shape
    NQ = wihp.shape[0]
    W = wihp.shape[2]
    Ip = dx.shape[1]
    panel_products(3, dgi, b0 * G, G, 1, b1 - b0, wihp, 0, G * W, W, G, dx, (t * B + b0) * Ip, W,
                   Ip, W // 3, NQ)


@njit(**_JIT)  # called once per step or chunk: not inlined (compile time)
def _flush(c_ih, c_hh, acc_ih, acc_hh):
    """The float32 sums of the weight gradients into the float64 ones (and back to 0)."""
    for r in range(c_ih.shape[0]):
        ar = acc_ih[r]
        cr = c_ih[r]
        for i in range(cr.size):
            ar[i] += cr[i]
            cr[i] = 0
        ar = acc_hh[r]
        cr = c_hh[r]
        for i in range(cr.size):
            ar[i] += cr[i]
            cr[i] = 0


@njit(**_JIT)  # called once per step or chunk: not inlined (compile time)
def _weight_chunk(K, aT, aTn, xs, hs, hid, c_ih, c_hh, acc_ih, acc_hh, s_ih, s_hn, reset_after,
                  unflushed, VL):
    """The weight and bias gradients of one chunk of K rows for a part's n units: c_ih (3n, Ip)
    += aT (3n, ·) xs, c_hh (3n, Hq) += aT hs (the n block: aTn hs for reset_after, aT hid
    otherwise), the column sums into s_ih (3, n) and s_hn (n); the float32 sums go into the
    float64 ones every _FLUSH_ROWS rows. VL: elements per vector. Returns the rows not yet
    flushed."""
    n = s_ih.shape[1]
    RC = aT.shape[1]
    Ip = xs.shape[1]
    Hq = hs.shape[1]
    W = 3 * VL
    for g in range(3):
        panel_products(3, aT, g * n * RC, RC, 1, n, xs, 0, W, Ip, K, c_ih, g * n * Ip, W, Ip, VL,
                       Ip // W, True)
        hsrc = hid if (g == 2 and not reset_after) else hs
        a_n = aTn if (g == 2 and reset_after) else aT  # dgh = dgi in the r and z blocks
        off = 0 if (g == 2 and reset_after) else g * n * RC
        panel_products(3, a_n, off, RC, 1, n, hsrc, 0, W, Hq, K, c_hh, g * n * Hq, W, Hq, VL,
                       Hq // W, True)
    for r in range(3 * n):
        sg = 0.0
        ar = aT[r, :K]
        for k in range(K):
            sg += ar[k]
        s_ih[r // n, r % n] += sg
    if reset_after:
        for c in range(n):
            sg = 0.0
            ar = aTn[c, :K]
            for k in range(K):
                sg += ar[k]
            s_hn[c] += sg
    unflushed += K
    if unflushed >= _FLUSH_ROWS:
        _flush(c_ih, c_hh, acc_ih, acc_hh)
        unflushed = 0
    return unflushed


@njit(nogil=True, **_JIT)
def _backward_part(p, P, ctrl, x, y, h0, g_r, g_z, g_n, g_hn, w_hh, w_ih, whp, wihp, lengths,
                   reverse, reset_after, dy, dh, dprod, dgi2, dgh2, dx, dw_ih, dw_hh, db_ih,
                   db_hh):
    """Part p of P of a whole backward pass (BPTT for `forward`; the math of
    reference.backward), step by step, with the register tile of `_tile`.

    This part owns the hidden units of W_hh's column panels [NB·p/P, NB·(p+1)/P) (whp (NB, 3H,
    2·VL), which it packs itself, as it packs its share of W_ih's column panels wihp (NQ, 3H,
    3·VL), read by every part after the first barrier). Per step (reverse order):
    - its units' gate gradients, dgi and dgh (this step's rows: dgi2[s % 3], dgh2[s % 3], each
      (B, 3H); every part reads them after the barrier, and the previous step's until the next
      barrier, hence three buffers), and the direct share of dh (B, H), dh' ⊙ z;
    - after a barrier, its slice of dgh W_hh (the product with every unit's gate gradients) into
      dprod (B, 2·VL·NB) and then into dh (reset_after=False first needs W_hn^T da_n over all
      units: one more barrier);
    - the rows of dW_ih and dW_hh for its units, += dgi^T x_t and dgh^T h_prev (its own columns
      only), one product per chunk of about _CHUNK_ROWS rows, in float32 chains of about
      _FLUSH_ROWS rows that are then added into float64 sums, and the bias gradients (float64
      sums);
    - its share of the rows of dx_t = dgi W_ih, into dx (T·B, Ip), padded to whole panels.
    """
    prefer_wide_vectors()
    T, B, H = y.shape
    I = x.shape[2]
    G = 3 * H
    NB = whp.shape[0]
    PW = whp.shape[2]  # two vectors of units per panel
    VL = PW // 2
    Hp = NB * PW
    W = wihp.shape[2]  # three vectors: the width of the weight-gradient and dx panels
    NQ = wihp.shape[0]
    Ip = dx.shape[1]
    Hq = -(-H // W) * W
    u0 = NB * p // P
    u1 = NB * (p + 1) // P
    j0 = min(u0 * PW, H)
    j1 = min(u1 * PW, H)
    n = j1 - j0
    b0 = B * p // P
    b1 = B * (p + 1) // P
    _pack_column_panels(w_hh, u0, u1, whp)
    _pack_column_panels(w_ih, NQ * p // P, NQ * (p + 1) // P, wihp)
    dtype = dx.dtype
    # The weight gradients go in chunks of KS steps (about _CHUNK_ROWS rows): this part's columns
    # of dgi (and dgh's n block) transposed into aT / aTn, with the rows of x_t and h_prev beside
    # them (xs, hs; hid = r ⊙ h_prev for reset_after=False), padded to whole panels.
    KS = max(1, _CHUNK_ROWS // B)
    RC = KS * B
    aT = np.empty((3 * n, RC), dtype)
    aTn = np.empty((n if reset_after else 0, RC), dtype)
    xs = np.zeros((RC, Ip), dtype)
    hs = np.zeros((RC, Hq), dtype)
    hid = np.zeros((RC if not reset_after else 0, Hq), dtype)
    c_ih = np.zeros((3 * n, Ip), dtype)  # this chunk's float32 (or float64) sums
    c_hh = np.zeros((3 * n, Hq), dtype)
    acc_ih = np.zeros((3 * n, Ip), np.float64)
    acc_hh = np.zeros((3 * n, Hq), np.float64)
    s_ih = np.zeros((3, n), np.float64)
    s_hn = np.zeros(n, np.float64)
    rows = 0  # rows in the current chunk
    pending = 0  # rows of a full chunk whose products are still to run
    unflushed = 0  # rows in the float32 sums c_ih, c_hh
    nbar = 0
    for s in range(T):
        t = s if reverse else T - 1 - s  # the opposite order of the forward pass
        dgi = dgi2[s % 3]
        dgh = dgh2[s % 3]
        for b in range(B):
            gr = dgi[b]
            if t >= lengths[b]:  # an invalid step passes dh through untouched
                _zero(gr[j0:j1])
                _zero(gr[H + j0:H + j1])
                _zero(gr[2 * H + j0:2 * H + j1])
                if reset_after:
                    hr = dgh[b]
                    _zero(hr[j0:j1])
                    _zero(hr[H + j0:H + j1])
                    _zero(hr[2 * H + j0:2 * H + j1])
                continue
            hp = _h_prev(y, h0, lengths, reverse, t, b)
            hr = dgh[b] if reset_after else gr
            _backward_units(g_r[t, b, j0:j1], g_z[t, b, j0:j1], g_n[t, b, j0:j1],
                            g_hn[t, b, j0:j1], hp[j0:j1], dy[t, b, j0:j1], dh[b, j0:j1],
                            gr[j0:j1], gr[H + j0:H + j1], gr[2 * H + j0:2 * H + j1],
                            hr[j0:j1], hr[H + j0:H + j1], hr[2 * H + j0:2 * H + j1], n,
                            reset_after)
        nbar += 1
        arrive(ctrl, P)
        # Work that needs nothing the others write in this step: the previous step's dx (its
        # gate gradients are complete and stay until the next barrier) and a full chunk's
        # weight-gradient products. A part that is ahead does it instead of waiting.
        if s > 0:
            _dx_rows(dgi2[(s - 1) % 3], (s - 1) if reverse else T - s, b0, b1, wihp, dx)
        if pending > 0:
            unflushed = _weight_chunk(np.int64(pending), aT, aTn, xs, hs, hid, c_ih, c_hh, acc_ih,
                                      acc_hh, s_ih, s_hn, reset_after, np.int64(unflushed), VL)
            pending = 0
        if not wait(ctrl, P, nbar):
            return False
        if reset_after:
            panel_products(2, dgh, 0, G, 1, B, whp, u0 * G * PW, G * PW, PW, G, dprod, u0 * PW,
                           PW, Hp, VL, u1 - u0)
        else:
            # r enters through W_hn (r ⊙ h): its gradient needs every unit's da_n first.
            panel_products(2, dgi, 2 * H, G, 1, B, whp, u0 * G * PW + 2 * H * PW, G * PW, PW, H,
                           dprod, u0 * PW, PW, Hp, VL, u1 - u0)
            for b in range(B):
                if t >= lengths[b]:
                    continue
                hp = _h_prev(y, h0, lengths, reverse, t, b)[j0:j1]
                d_rh = dprod[b, j0:j1]
                rr = g_r[t, b, j0:j1]
                dgr = dgi[b, j0:j1]
                dhb = dh[b, j0:j1]
                for j in range(n):
                    r = np.float64(rr[j])
                    dgr[j] = d_rh[j] * hp[j] * r * (1.0 - r)
                for j in range(n):
                    dhb[j] += d_rh[j] * rr[j]
            nbar += 1
            if not barrier(ctrl, P, nbar):
                return False
            panel_products(2, dgi, 0, G, 1, B, whp, u0 * G * PW, G * PW, PW, 2 * H, dprod,
                           u0 * PW, PW, Hp, VL, u1 - u0)
        for b in range(B):
            dhb = dh[b, j0:j1]
            dpb = dprod[b, j0:j1]
            for j in range(n):
                dhb[j] += dpb[j]
        # The weight and bias gradients of this part's units: this step's rows into the chunk.
        for b in range(B):
            row = rows + b
            _copy(xs[row, :I], x[t, b])
            hp = _h_prev(y, h0, lengths, reverse, t, b)
            _copy(hs[row, :H], hp)
            if not reset_after:
                hidb = hid[row, :H]
                rr = g_r[t, b]
                for j in range(H):
                    hidb[j] = rr[j] * hp[j]
        for g in range(3):
            _transpose_into(dgi, g * H + j0, n, aT, g * n, rows)
        if reset_after:
            _transpose_into(dgh, 2 * H + j0, n, aTn, 0, rows)
        rows += B
        if rows == RC:
            pending = rows  # its products run in the next step's barrier window
            rows = 0
    # The last step's dx and the last chunk (every part has passed the last barrier).
    _dx_rows(dgi2[(T - 1) % 3], T - 1 if reverse else 0, b0, b1, wihp, dx)
    last = pending if pending > 0 else rows
    if last > 0:
        unflushed = _weight_chunk(np.int64(last), aT, aTn, xs, hs, hid, c_ih, c_hh, acc_ih,
                                  acc_hh, s_ih, s_hn, reset_after, np.int64(unflushed), VL)
    if unflushed > 0:
        _flush(c_ih, c_hh, acc_ih, acc_hh)
    for g in range(3):
        for c in range(n):
            _copy(dw_ih[g * H + j0 + c], acc_ih[g * n + c, :I])
            _copy(dw_hh[g * H + j0 + c], acc_hh[g * n + c, :H])
        _copy(db_ih[g * H + j0:g * H + j1], s_ih[g])
        if g == 2 and reset_after:
            _copy(db_hh[g * H + j0:g * H + j1], s_hn)
        else:
            _copy(db_hh[g * H + j0:g * H + j1], s_ih[g])
    return True


def backward(cache, dy, dh_n):
    """BPTT for `forward(..., train=True)`: returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, y, w_ih, w_hh = cache.x, cache.y, cache.w_ih, cache.w_hh
    T, B, H = y.shape
    I = x.shape[2]
    dtype = x.dtype
    VL = vector_length(dtype)
    W = 3 * VL
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=dtype)
    dh = np.array(dh_n, dtype=dtype, copy=True, order="C")
    h0 = np.ascontiguousarray(cache.h0, dtype=dtype)
    reset_after = cache.reset_after
    # This step's dL/d(pre-activation) of r, z, n per row: dgi from the input side; dgh from the
    # hidden side (differs in the n columns, × r, when reset_after; equal to dgi otherwise).
    dgi2 = np.empty((3, B, 3 * H), dtype)
    dgh2 = np.empty((3, B, 3 * H), dtype) if reset_after else dgi2
    NB = -(-H // (2 * VL))
    NQ = -(-I // W)
    whp = np.empty((NB, 3 * H, 2 * VL), dtype)
    wihp = np.empty((NQ, 3 * H, W), dtype)
    dprod = np.empty((B, NB * 2 * VL), dtype)
    dxp = np.empty((T * B, NQ * W), dtype)
    dw_ih = np.empty(w_ih.shape, dtype)
    dw_hh = np.empty(w_hh.shape, dtype)
    db_ih = np.empty(w_ih.shape[0], dtype)
    db_hh = np.empty(w_ih.shape[0], dtype)
    g = cache.gates
    P = _parts(B, H, NB)
    run_parts(_backward_part, P, (x, y, h0, g[0], g[1], g[2], g[3], w_hh, w_ih, whp, wihp,
                                  cache.lengths, cache.reverse, reset_after, dy, dh, dprod, dgi2,
                                  dgh2, dxp, dw_ih, dw_hh, db_ih, db_hh))
    dx = dxp[:, :I].reshape(T, B, I)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh
