"""Numba CPU backend: @njit kernels for one GRU layer and one direction, the backend contract's
functions (numgru/contract.py).

A layer pass (`forward`, `backward`) runs as P parts (`sync.run_parts`: compiled `nogil` kernels
on numgru's own Python threads, P = min(threads allowed, weight panels), 1 for small products).
Each part owns a slice of the hidden units and packs its own panels of the weights once per call;
the parts meet at an atomic barrier once per step (twice for reset_after=False), since every
step reads the whole previous state. Every matrix product runs in the register tile of `tile`
(LLVM vector IR, fused multiply-adds into accumulators held in registers). Per step and part:
- forward: h W_hh^T for its units' three gates, their gate math (_gates, shared with the CUDA
  kernels: one fused loop per row, float32 sigmoid/tanh from _mathfn that LLVM vectorises 16
  lanes wide; numpy error model, so no division check breaks the loop) and its slice of the
  next state (double-buffered); then, in the barrier's window (after arriving, before
  waiting), the next step's x W_ih^T;
- backward: its units' gate gradients; in the barrier's window the previous step's share of
  the rows of dx and, every ~128 rows, the rows of dW_ih, dW_hh and the biases for its units
  (float32 chains of about _FLUSH_ROWS rows added into float64 sums); after the barrier, its
  slice of dgh W_hh into dh.
Work in a window needs nothing the other parts write in that step, so a part that is ahead does it
instead of spinning. Every entry's arithmetic is the same whatever the partition, so results do not
depend on the number of threads (tested bit for bit). No BLAS call is made in these passes: an
OpenBLAS thread pool spin-waits after each call and, sharing the cores with the parts, slowed the
per-step barriers down several times. No Numba threading layer is used either (its OpenMP pool spins
against BLAS, its workqueue pool aborts on concurrent callers); a second caller while the parts are
busy runs its pass as one part on its own thread, with the same results.

The GRUCell step (`step`) keeps BLAS GEMMs on the weights as stored: one step at a small batch
does not pay for packing them.

Training cache (contract.GRUCache, per layer and direction, beyond the outputs y it references):
gates (4, T, B, H) = r, z, n, hn, plus a reference to the input x: T·B·(4H + I) values. The
state entering each step is not stored: for a valid step it is the previous valid step's output
(y[t-1] forward, y[t+1] reverse) or h0.

Numba caches these kernels per source file: after editing _mathfn.py, _gates.py, tile.py
or sync.py alone, delete numgru/cpu/__pycache__/*.nbi / *.nbc (a fresh install or clone
never has stale ones).

Shapes, layouts and conventions: see contract.py. Inputs are trusted: layers.py checks them once.
"""

import os
import time
from typing import NamedTuple

import numpy as np
from numba import njit

from . import precompile as _precompile
from .._jit import CACHE

from .. import _gates
from ..contract import GRUCache
from .plan import SURE_SERIAL, plan
from .sync import CTRL_SIZE, arrive, atomic_load, barrier, max_threads, run_parts, wait
from .tile import prefer_wide_vectors, row_dots, tile, tile_functions, vector_length
from .view import copy_n, ptr, view, zero_n

_JIT = dict(cache=CACHE, error_model="numpy")  # numpy error model: no ZeroDivisionError branches

# The gate math of one unit (numgru/_gates.py, shared with the CUDA kernels), inlined into the row
# loops below: scalars in and out, so the loops still vectorise.
_gate = njit(inline="always", **_JIT)(_gates.gate)
_cell_forward = njit(inline="always", **_JIT)(_gates.forward)
_cell_backward = njit(inline="always", **_JIT)(_gates.backward)
_reset_backward = njit(inline="always", **_JIT)(_gates.reset_backward)


@njit(inline="always", **_JIT)
def _forward_units(gir, giz, gin, ghr, ghz, ghn, bir, biz, bin_, bhr, bhz, bhn, h, h_next, y,
                   g_r, g_z, g_n, g_hn, n, one, reset_after, train):
    """One batch row of one step on n hidden units: gates from gi = W_i x and gh = W_h h (gh's n
    block is W_hn (r ⊙ h) when not reset_after), each gate's inputs a 0-based view of its own
    (indexing one view at run-time offsets left the loop scalar); h is read and h_next (which
    may be h itself) and y written; with train, the gates r, z, n and hn are kept. The math per
    unit is _gates.forward.

    Written so that LLVM vectorises the loops (seen: 6 times faster than the scalar loop): the
    branch on train sits outside them, the variant is a select, each stored gate has an array of
    its own (stores into several blocks of one array at run-time offsets left the loop scalar),
    and the loop bodies call no function that takes an array (its reference counting would land
    inside the loop): the gate math takes scalars and is inlined."""
    if train:
        for j in range(n):
            hn = ghn[j] + bhn[j]
            r, z, nv, h_new = _cell_forward(gir[j] + bir[j], giz[j] + biz[j], gin[j] + bin_[j],
                                            ghr[j] + bhr[j], ghz[j] + bhz[j], hn, h[j], one,
                                            reset_after)
            g_r[j] = r
            g_z[j] = z
            g_n[j] = nv
            g_hn[j] = hn
            h_next[j] = h_new
            y[j] = h_new
    else:
        for j in range(n):
            h_new = _cell_forward(gir[j] + bir[j], giz[j] + biz[j], gin[j] + bin_[j],
                                  ghr[j] + bhr[j], ghz[j] + bhz[j], ghn[j] + bhn[j], h[j], one,
                                  reset_after)[3]
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


def padded_stride(n, itemsize):
    """A row stride of at least n elements for the kernels' own buffers: whole 64-byte lines, and
    an odd number of them, so that the 8 rows a register tile reads (or the three gate blocks
    of one row) fall into different L1 cache sets. A stride of a multiple of 4 KiB (H = 1024 in
    float32) put them all into one set of 8 ways and cost a third of the product's speed."""
    per_line = 64 // itemsize
    lines = -(-n // per_line)
    if lines % 2 == 0:
        lines += 1
    return lines * per_line


_BLOCK_ROWS = 64  # rows (steps × batch) of one block of the input projection


def _block_steps(B, T):
    """Steps per block of the forward's input projection: x W_ih^T for about _BLOCK_ROWS rows
    at a time, so that a small batch still fills the register tile's rows."""
    return max(1, min(T, -(-_BLOCK_ROWS // B)))


@njit(inline="always", **_JIT)
def _block_times(s, GS, T, reverse):
    """(first time, steps) of the projection block that starts at step s: the block holds the
    times of steps s .. s + GS - 1, in time order."""
    if not reverse:
        return s, min(GS, T - s)
    t_last = T - 1 - s
    t_first = max(0, t_last - GS + 1)
    return t_first, t_last - t_first + 1


@njit(inline="always", **_JIT)
def _forward_rows(gx, go, gh, Hs, bias, j0, n, H, hbuf, HS, ho, hno, y, yo, lengths, t, B,
                  reset_after, gates, one):
    """The gate math of one step for the units j0 .. j0 + n and every batch row b: gx row go + b
    and gh row b (each (3·Hs): r, z, n blocks Hs apart), the state at hbuf[ho + b·HS] (HS =
    hbuf's row stride) into hbuf[hno + b·HS], the output into y[yo + b·H]; gates (training:
    r, z, n, hn, each (T, B, H)) at the same offsets as y, or None (inference). Rows past their
    length pass the state through and write 0 to y and the gates."""
    G = gx.shape[1]
    bir = ptr(bias, j0)
    biz = ptr(bias, H + j0)
    bin_ = ptr(bias, 2 * H + j0)
    bhr = ptr(bias, 3 * H + j0)
    bhz = ptr(bias, 4 * H + j0)
    bhn = ptr(bias, 5 * H + j0)
    for b in range(B):
        h = ptr(hbuf, ho + b * HS + j0)
        h_next = ptr(hbuf, hno + b * HS + j0)
        yv = yo + b * H + j0
        yb = ptr(y, yv)
        if t >= lengths[b]:
            zero_n(yb, n)
            copy_n(h_next, h, n)
            if gates is not None:
                for g in gates:
                    zero_n(ptr(g, yv), n)
            continue
        gxr = ptr(gx, (go + b) * G + j0)
        gxz = ptr(gx, (go + b) * G + Hs + j0)
        gxn = ptr(gx, (go + b) * G + 2 * Hs + j0)
        ghr = ptr(gh, b * G + j0)
        ghz = ptr(gh, b * G + Hs + j0)
        ghn = ptr(gh, b * G + 2 * Hs + j0)
        if gates is not None:
            _forward_units(gxr, gxz, gxn, ghr, ghz, ghn, bir, biz, bin_, bhr, bhz, bhn, h, h_next,
                           yb, ptr(gates[0], yv), ptr(gates[1], yv),
                           ptr(gates[2], yv), ptr(gates[3], yv), n, one, reset_after,
                           True)
        else:
            _forward_units(gxr, gxz, gxn, ghr, ghz, ghn, bir, biz, bin_, bhr, bhz, bhn, h, h_next,
                           yb, yb, yb, yb, yb, n, one, reset_after, False)


@njit(inline="always", **_JIT)
def _reset_rows(gx, go, gh, bias, j0, n, H, hbuf, ho, rh, B):
    """reset_after=False, before the n product: rh[b, j] = r_j · h_j for this part's units."""
    G = gx.shape[1]
    HS = hbuf.shape[1]
    bir = ptr(bias, j0)
    bhr = ptr(bias, 3 * H + j0)
    for b in range(B):
        gir = ptr(gx, (go + b) * G + j0)
        ghr = ptr(gh, b * G + j0)
        hb = ptr(hbuf, ho + b * HS + j0)
        rhb = ptr(rh, b * HS + j0)
        for j in range(n):
            rhb[j] = _gate(gir[j] + bir[j], ghr[j] + bhr[j]) * hb[j]


@njit(nogil=True, **_JIT)
def _forward_part(p, P, ctrl, fns, x, w_ih, w_hh, wip, wp, bias, lengths, reverse, one, gx, hbuf, gh,
                  y, rh, gates):
    """Part p of P of a whole forward pass (the math of reference.forward) with the register
    tile of `_tile`. The variant is in the argument types, so that a call compiles only its
    own: rh is None for reset_after=True (else (B, HS), r ⊙ h for the n product), gates None
    for inference (else the training record's r, z, n, hn, each (T, B, H)).

    This part owns the hidden units of panels [NB·p/P, NB·(p+1)/P) and packs its own panels of
    W_ih and W_hh into wip and wp (`_tile.pack_gates` layout). The input projection x W_ih^T
    runs a block of GS steps at a time (gx: (GS·B, 3·Hs) rows in time order from the block's
    first time, gate g of unit j at column g·Hs + j, Hs >= NB·VL), and the recurrent product
    h W_hh^T per step into gh (B, 3·Hs); both hold this part's columns only and are read by
    this part only, so the next block is projected in the barrier window of the block's last
    step. Per step the part computes its units' gate math and its slice of the next state, and
    meets the other parts once (twice for reset_after=False, whose n product needs every unit's
    r ⊙ h). Every part reads whole rows of the state, so it is double-buffered: hbuf (2·B, HS),
    step s reads rows (s % 2)·B.. and writes the others. x is (T·B, I); bias is b_ih and b_hh
    end to end; y is (T, B, H). Returns False when another part aborted.
    """
    prefer_wide_vectors()
    T, B, H = y.shape
    I = x.shape[1]
    NB = wp.shape[0]
    W3 = wp.shape[2]
    VL = W3 // 3
    G = gh.shape[1]
    Hs = G // 3
    HS = hbuf.shape[1]
    GS = gx.shape[0] // B
    u0 = NB * p // P
    u1 = NB * (p + 1) // P
    j0 = min(u0 * VL, H)
    j1 = min(u1 * VL, H)
    n = j1 - j0
    np_ = u1 - u0
    c0 = u0 * VL
    _pack_gate_panels(w_ih, u0, u1, wip)
    _pack_gate_panels(w_hh, u0, u1, wp)
    xf = view(x, 0, x.size)
    hf = view(hbuf, 0, hbuf.size)
    gxf = view(gx, 0, gx.size)
    ghf = view(gh, 0, gh.size)
    wipf = view(wip, 0, wip.size)
    wpf = view(wp, 0, wp.size)
    yf = view(y, 0, y.size)
    one_i = np.int64(1)  # integers and flags for the tile as values, not literals (a literal
    zero_i = np.int64(0)  # argument would compile another copy of the tile routine)
    fresh = bool(False)  # the products overwrite their output
    t_first, steps = _block_times(0, GS, T, reverse)
    tile(fns, 3, xf, t_first * B * I, I, one_i, steps * B, wipf, u0 * I * W3, I * W3, W3, I, gxf, c0,
             VL, G, Hs, np_, fresh)
    nbar = 0
    for s in range(T):
        if atomic_load(ctrl, 1) != 0:  # stopped (Ctrl-C, or another part failed)
            return False
        t = T - 1 - s if reverse else s
        ho = (s % 2) * B * HS
        hno = ((s + 1) % 2) * B * HS
        go = (t - t_first) * B
        if rh is None:
            tile(fns, 3, hf, ho, HS, one_i, B, wpf, u0 * H * W3, H * W3, W3, H, ghf, c0, VL, G, Hs,
                     np_, fresh)
        else:
            tile(fns, 2, hf, ho, HS, one_i, B, wpf, u0 * H * W3, H * W3, W3, H, ghf, c0, VL, G, Hs,
                     np_, fresh)
            _reset_rows(gx, go, gh, bias, j0, n, H, hbuf, ho, rh, B)
            nbar += 1
            if not barrier(ctrl, P, nbar):
                return False
            tile(fns, 1, view(rh, 0, rh.size), zero_i, HS, one_i, B, wpf, u0 * H * W3 + 2 * VL,
                     H * W3, W3, H, ghf, 2 * Hs + c0, VL, G, Hs, np_, fresh)
        _forward_rows(gx, go, gh, Hs, bias, j0, n, H, hf, HS, ho, hno, yf, t * B * H, lengths, t,
                      B, rh is None, gates, one)
        nbar += 1
        arrive(ctrl, P)
        if (s + 1) % GS == 0 and s + 1 < T:
            # The next block's input projection needs no other part's result: a part that is
            # ahead computes it here instead of waiting.
            t_first, steps = _block_times(s + 1, GS, T, reverse)
            tile(fns, 3, xf, t_first * B * I, I, one_i, steps * B, wipf, u0 * I * W3, I * W3, W3, I,
                     gxf, c0, VL, G, Hs, np_, fresh)
        if not wait(ctrl, P, nbar):
            return False
    return True


def kernels_cached():
    """Whether the forward and backward part kernels are compiled in this process or stored in
    the kernel cache (for some variant): False means the next training step compiles them."""
    for kernel in (_forward_part, _backward_part):
        if kernel.overloads:
            continue
        try:
            index = kernel._cache._cache_file._index_path
        except AttributeError:  # another Numba: nothing to say
            return True
        if not os.path.exists(index):
            return False
    return True


def _pass_parts(kind, dtype, B, H, panels):
    """(parts, trial) for a layer pass from this machine's plan (`_plan`): near the crossover the
    first calls of a size try one part and all of them, timed per step. Buffers sized for a
    number of parts must be sized for this one (a busy pool runs fewer, never more)."""
    if 6 * B * H * H < SURE_SERIAL:  # small: no plan to ask (its bookkeeping would show)
        return 1, None
    return plan().parts(kind, dtype.name, B, H, max(1, min(max_threads(), panels)))


_INTERRUPTIBLE_FLOPS = 1 << 26  # a pass this long (~10 ms and more) can be stopped by Ctrl-C


def _run_pass(kernel, P, trial, T, args, flops=0):
    """run_parts, timed when the call is a trial of the plan; a pass of at least
    _INTERRUPTIBLE_FLOPS runs so that Ctrl-C stops it within a step (_sync.run_parts)."""
    interruptible = flops >= _INTERRUPTIBLE_FLOPS
    if trial is None:
        run_parts(kernel, P, args, interruptible)
        return
    t0 = time.perf_counter()
    used = run_parts(kernel, P, args, interruptible)
    if used == P:
        plan().record(trial, P, (time.perf_counter() - t0) / T)


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None)."""
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    if train:  # a backward pass follows: have it compiled meanwhile where that is needed
        _precompile.start(_backward_key(dtype, reset_after), _backward_part,
                          lambda: _backward_signature(dtype, reset_after), dtype, (2, 3))
    VL = vector_length(dtype)
    NB = -(-H // VL)
    Hs = padded_stride(NB * VL, dtype.itemsize)
    HS = padded_stride(H, dtype.itemsize)
    GS = _block_steps(B, T)
    y = np.empty((T, B, H), dtype)
    # r, z, n, hn: four (T, B, H) blocks of one allocation, 0 at invalid steps (written by the
    # kernel).
    gates = np.empty((4, T, B, H), dtype) if train else None
    hbuf = np.zeros((2 * B, HS), dtype)
    hbuf[:B, :H] = h0
    fns = tile_functions(dtype, (3,) if reset_after else (1, 2, 3))
    P, trial = _pass_parts("train" if train else "infer", dtype, B, H, NB)
    _run_pass(_forward_part, P, trial, T, flops=6 * T * B * H * (H + I), args=(
        fns, x.reshape(T * B, I), w_ih, w_hh, np.empty((NB, I, 3 * VL), dtype),
        np.empty((NB, H, 3 * VL), dtype), np.concatenate((b_ih, b_hh)), lengths, reverse,
        dtype.type(1), np.empty((GS * B, 3 * Hs), dtype), hbuf, np.empty((B, 3 * Hs), dtype), y,
        None if reset_after else np.empty((B, HS), dtype),
        None if gates is None else (gates[0], gates[1], gates[2], gates[3])))
    h = np.ascontiguousarray(hbuf[(T % 2) * B:(T % 2) * B + B, :H])
    cache = None
    if train:
        cache = GRUCache(x=x, gates=gates, w_ih=w_ih, w_hh=w_hh, lengths=lengths,
                         reverse=reverse, reset_after=reset_after, y=y, h0=h0)
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
                rhb[j] = _gate(gib[j] + b_ih[j], ghb[j] + b_hh[j]) * hb[j]
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

    The math per unit is _gates.backward, run in float64 (`_unit_backward`) and rounded once per
    stored value: there is no transcendental here, so it costs little, and it keeps float32
    gradients as close to the float64 reference as the float32 products allow. Each loop stores
    into one block only (several stores per loop into blocks of one array left loops scalar), so
    the row takes a few short passes, each vectorised, all in L1; each pass keeps one result of
    the inlined gate math, and the compiler drops the rest.
    """
    for j in range(n):
        dgi_n[j] = _unit_backward(g_r, g_z, g_n, g_hn, h_prev, dy, dh, j, reset_after)[2]
    for j in range(n):
        dgi_z[j] = _unit_backward(g_r, g_z, g_n, g_hn, h_prev, dy, dh, j, reset_after)[1]
    if reset_after:
        for j in range(n):
            dgi_r[j] = _unit_backward(g_r, g_z, g_n, g_hn, h_prev, dy, dh, j, reset_after)[0]
        for j in range(n):  # r and z: the hidden side sees the same gradient
            dgh_r[j] = dgi_r[j]
        for j in range(n):
            dgh_z[j] = dgi_z[j]
        for j in range(n):  # n: the hidden side is scaled by r
            dgh_n[j] = _unit_backward(g_r, g_z, g_n, g_hn, h_prev, dy, dh, j, reset_after)[3]
    for j in range(n):  # the direct path to h_{t-1}: dh' z (last: the loops above read dh)
        dh[j] = _unit_backward(g_r, g_z, g_n, g_hn, h_prev, dy, dh, j, reset_after)[4]


@njit(inline="always", **_JIT)
def _unit_backward(g_r, g_z, g_n, g_hn, h_prev, dy, dh, j, reset_after):
    """_gates.backward for unit j of the views of _backward_units, in float64. It takes arrays,
    but inlined into the loop (Numba IR inlining) it is no call there."""
    return _cell_backward(np.float64(dh[j]) + dy[j], np.float64(g_r[j]), np.float64(g_z[j]),
                          np.float64(g_n[j]), np.float64(g_hn[j]), np.float64(h_prev[j]), 1.0,
                          reset_after)


@njit(inline="always", **_JIT)
def _h_prev_offset(T, B, H, HS0, lengths, reverse, t, b):
    """Where the state entering step t of row b is: (True, offset into y) for the neighbouring
    output, (False, offset into h0) at the sequence's first step; y is (T, B, H), h0 rows HS0
    apart."""
    if not reverse:
        if t > 0:
            return True, ((t - 1) * B + b) * H
        return False, b * HS0
    if t + 1 < lengths[b]:
        return True, ((t + 1) * B + b) * H
    return False, b * HS0


@njit(inline="always", **_JIT)
def _h_prev_ptr(y, h0, T, B, H, HS0, lengths, reverse, t, b, j0):
    """A pointer to unit j0 of the state entering step t of row b (see _h_prev_offset)."""
    from_y, hoff = _h_prev_offset(T, B, H, HS0, lengths, reverse, t, b)
    if from_y:
        return ptr(y, hoff + j0)
    return ptr(h0, hoff + j0)


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
        for k in range(K):
            dst = ptr(bp, (q * K + k) * W)
            copy_n(dst, ptr(m, k * N + c0), n)
            zero_n(ptr(bp, (q * K + k) * W + n), W - n)


_FLUSH_ROWS = 2048  # rows of T·B per float32 chain in the weight gradients (then into float64)
_CHUNK_ROWS = 128  # rows of T·B per weight-gradient product (k of the tile)


@njit(**_JIT)  # called once per step and gate: not inlined (compile time)
def _transpose_into(src, ld, c0, n, B, dst, r0, ldd, k0):
    """dst[(r0 + c)·ldd + k0 + b] = src[b·ld + c0 + c] for b < B, c < n (flat arrays), in 16 × 16
    blocks (each written line of dst gets 16 values at once)."""
    for cb in range(0, n, 16):
        ce = min(cb + 16, n)
        for bb in range(0, B, 16):
            be = min(bb + 16, B)
            for c in range(cb, ce):
                drow = (r0 + c) * ldd + k0
                for b in range(bb, be):
                    dst[drow + b] = src[b * ld + c0 + c]


@njit(**_JIT)  # called once per step or chunk: not inlined (compile time)
def _flush(c_ih, c_hh, acc_ih, acc_hh):
    """The float32 sums of the weight gradients into the float64 ones (and back to 0); flat."""
    for i in range(c_ih.size):
        acc_ih[i] += c_ih[i]
        c_ih[i] = 0
    for i in range(c_hh.size):
        acc_hh[i] += c_hh[i]
        c_hh[i] = 0


@njit(**_JIT)  # called once per chunk of rows: not inlined (compile time)
def _weight_chunk(fns, K, n, RC, aT, aTn, aTn_off, xs, Ip, hs, hid, hid_off, Hq, c_ih, c_hh, acc_ih,
                  acc_hh, s_ih, s_hn, unflushed, VL):
    """The weight and bias gradients of one chunk of K rows for a part's n units (all flat):
    c_ih (3n, Ip) += aT (3n, RC) xs (RC, Ip), c_hh (3n, Hq) += aT hs (RC, Hq), except the n
    block: aTn hs for reset_after (aTn not None), aT hid otherwise (hid = r ⊙ h_prev); the
    column sums into s_ih (3, n) and s_hn (n); the float32 sums go into the float64 ones every
    _FLUSH_ROWS rows. aTn and hid are the whole (P, ...) buffers (None for the other variant),
    this part's from aTn_off and hid_off. VL: elements per vector. Returns the rows not yet
    flushed."""
    W = 3 * VL
    one_i = np.int64(1)
    zero_i = np.int64(0)
    acc = bool(True)  # accumulate into c_ih, c_hh (not a literal: see _forward_part)
    tile(fns, 3, aT, zero_i, RC, one_i, 3 * n, xs, zero_i, W, Ip, K, c_ih, zero_i, W, Ip, VL, Ip // W,
             acc)
    tile(fns, 3, aT, zero_i, RC, one_i, 2 * n, hs, zero_i, W, Hq, K, c_hh, zero_i, W, Hq, VL,
             Hq // W, acc)
    if aTn is not None:
        tile(fns, 3, view(aTn, aTn_off, n * RC), zero_i, RC, one_i, n, hs, zero_i, W, Hq, K, c_hh,
                 2 * n * Hq, W, Hq, VL, Hq // W, acc)
    if hid is not None:
        tile(fns, 3, aT, 2 * n * RC, RC, one_i, n, view(hid, hid_off, RC * Hq), zero_i, W, Hq, K,
                 c_hh, 2 * n * Hq, W, Hq, VL, Hq // W, acc)
    for r in range(3 * n):
        sg = 0.0
        ar = ptr(aT, r * RC)
        for k in range(K):
            sg += ar[k]
        s_ih[r] += sg
    if aTn is not None:
        for c in range(n):
            sg = 0.0
            ar = ptr(aTn, aTn_off + c * RC)
            for k in range(K):
                sg += ar[k]
            s_hn[c] += sg
    unflushed += K
    if unflushed >= _FLUSH_ROWS:
        _flush(c_ih, c_hh, acc_ih, acc_hh)
        unflushed = 0
    return unflushed


@njit(inline="always", **_JIT)
def _backward_rows(T, B, H, t, j0, n, G, g_r, g_z, g_n, g_hn, y, h0, HS0, lengths, reverse, dy,
                   dh, HS, dgi3, dgh3, off):
    """This part's units of one step's gate gradients for every row b (flat arrays): dgi and
    (reset_after: dgh3 not None) dgh rows of G values (r, z, n blocks H apart) from offset off
    of dgi3 and dgh3, from the gates, the state entering the step, dy and dh (rows HS apart),
    which becomes the direct share dh_t ⊙ z. An invalid step writes zeros and passes dh
    through."""
    if dgh3 is None:  # reset_after=False: the hidden side's gradient is dgi itself
        dgh = dgi3
    else:
        dgh = dgh3
    reset_after = bool(dgh3 is not None)
    for b in range(B):
        gr = off + b * G
        if t >= lengths[b]:
            for g in range(3):
                zero_n(ptr(dgi3, gr + g * H + j0), n)
                zero_n(ptr(dgh, gr + g * H + j0), n)
            continue
        hp = _h_prev_ptr(y, h0, T, B, H, HS0, lengths, reverse, t, b, j0)
        go = (t * B + b) * H + j0
        _backward_units(ptr(g_r, go), ptr(g_z, go), ptr(g_n, go), ptr(g_hn, go),
                        hp, ptr(dy, go), ptr(dh, b * HS + j0), ptr(dgi3, gr + j0),
                        ptr(dgi3, gr + H + j0), ptr(dgi3, gr + 2 * H + j0),
                        ptr(dgh, gr + j0), ptr(dgh, gr + H + j0),
                        ptr(dgh, gr + 2 * H + j0), n, reset_after)


class BackwardScratch(NamedTuple):
    """A backward pass's per-part buffers (leading axis P: part p uses [p]; nmax = the units of
    the largest part, RC = rows of a weight-gradient chunk, Ip and Hq = I and H padded to whole
    panels), in the layer's dtype unless said:"""
    aT: np.ndarray  # (P, 3·nmax, RC) the chunk's gate gradients dgi of the part's units, transposed
    xs: np.ndarray  # (P, RC, Ip) the chunk's inputs x_t
    hs: np.ndarray  # (P, RC, Hq) the chunk's entering states h_prev
    c_ih: np.ndarray  # (P, 3·nmax, Ip) dW_ih's rows summed over about _FLUSH_ROWS rows of T·B
    c_hh: np.ndarray  # (P, 3·nmax, Hq) the same of dW_hh
    acc_ih: np.ndarray  # (P, 3·nmax, Ip) float64: those sums added up
    acc_hh: np.ndarray  # (P, 3·nmax, Hq) float64
    s_ih: np.ndarray  # (P, 3·nmax) float64: db_ih (and db_hh's r and z blocks)
    s_hn: np.ndarray  # (P, nmax) float64: db_hh's n block when it differs (reset_after)


class BackwardGrads(NamedTuple):
    """What a backward pass writes besides dh: each part its own rows or units."""
    dx: np.ndarray  # (T·B, Ip): rows of dx_t = dgi W_ih, padded to whole panels
    dw_ih: np.ndarray  # (3H, I)
    dw_hh: np.ndarray  # (3H, H)
    db_ih: np.ndarray  # (3H,)
    db_hh: np.ndarray  # (3H,)


@njit(inline="always", **_JIT)
def _part_scratch(scratch, p, n, hid):
    """Part p's flat views of `scratch` for its n units, the sums and the chunk rows zeroed,
    and the offset of its rows in hid (reset_after=False: r ⊙ h_prev; zeroed too)."""
    RC = scratch.xs.shape[1]
    Ip = scratch.xs.shape[2]
    Hq = scratch.hs.shape[2]
    aT = view(scratch.aT, p * scratch.aT.shape[1] * RC, 3 * n * RC)
    xs = view(scratch.xs, p * RC * Ip, RC * Ip)
    hs = view(scratch.hs, p * RC * Hq, RC * Hq)
    c_ih = view(scratch.c_ih, p * scratch.c_ih.shape[1] * Ip, 3 * n * Ip)
    c_hh = view(scratch.c_hh, p * scratch.c_hh.shape[1] * Hq, 3 * n * Hq)
    acc_ih = view(scratch.acc_ih, p * scratch.acc_ih.shape[1] * Ip, 3 * n * Ip)
    acc_hh = view(scratch.acc_hh, p * scratch.acc_hh.shape[1] * Hq, 3 * n * Hq)
    s_ih = view(scratch.s_ih, p * scratch.s_ih.shape[1], 3 * n)
    s_hn = view(scratch.s_hn, p * scratch.s_hn.shape[1], n)
    for a in (c_ih, c_hh, xs, hs):  # the padding columns of xs and hs stay 0
        zero_n(ptr(a, 0), a.size)
    for a in (acc_ih, acc_hh, s_ih, s_hn):
        zero_n(ptr(a, 0), a.size)
    hid_off = p * RC * Hq
    if hid is not None:
        zero_n(ptr(hid, hid_off), RC * Hq)
    return aT, xs, hs, c_ih, c_hh, acc_ih, acc_hh, s_ih, s_hn, hid_off


@njit(inline="always", **_JIT)
def _reset_gate_rows(T, B, H, t, j0, n, G, g_r, y, h0, HS0, lengths, reverse, dprod, DP, dgi, dh,
                     HS):
    """reset_after=False, after dprod (B, DP) = da_n W_hn over every unit: this part's units of
    the r gradient (into dgi's r block, in float64 from r, as _backward_units) and the share
    of dh through r ⊙ h_prev, for each valid row (flat arrays)."""
    for b in range(B):
        if t >= lengths[b]:
            continue
        hp = _h_prev_ptr(y, h0, T, B, H, HS0, lengths, reverse, t, b, j0)
        d_rh = ptr(dprod, b * DP + j0)
        rr = ptr(g_r, (t * B + b) * H + j0)
        dgr = ptr(dgi, b * G + j0)
        dhb = ptr(dh, b * HS + j0)
        for j in range(n):
            dgr[j] = _reset_backward(d_rh[j], np.float64(rr[j]), hp[j], 1.0)[0]
        for j in range(n):
            dhb[j] += _reset_backward(d_rh[j], rr[j], hp[j], 1.0)[1]  # in the dtype


@njit(inline="always", **_JIT)
def _store_weight_grads(grads, acc_ih, Ip, acc_hh, Hq, s_ih, s_hn, j0, n, reset_after):
    """A part's float64 sums for its n units from unit j0 (flat; rows Ip and Hq long) into its
    rows of dW_ih, dW_hh and the biases, in their dtype (db_hh's n block from s_hn when
    reset_after, else the same as db_ih's)."""
    H = grads.dw_hh.shape[1]
    I = grads.dw_ih.shape[1]
    dwih = view(grads.dw_ih, 0, grads.dw_ih.size)
    dwhh = view(grads.dw_hh, 0, grads.dw_hh.size)
    for g in range(3):
        for c in range(n):
            src = ptr(acc_ih, (g * n + c) * Ip)
            dst = ptr(dwih, (g * H + j0 + c) * I)
            for i in range(I):
                dst[i] = src[i]
            src = ptr(acc_hh, (g * n + c) * Hq)
            dst = ptr(dwhh, (g * H + j0 + c) * H)
            for i in range(H):
                dst[i] = src[i]
        for c in range(n):
            grads.db_ih[g * H + j0 + c] = s_ih[g * n + c]
            if g == 2 and reset_after:
                grads.db_hh[g * H + j0 + c] = s_hn[c]
            else:
                grads.db_hh[g * H + j0 + c] = s_ih[g * n + c]


@njit(nogil=True, **_JIT)
def _backward_part(p, P, ctrl, fns, x, y, h0, gates, lengths, reverse, w_hh, w_ih, whp, wihp, dy,
                   dh, dprod, dgi3, grads, scratch, dgh3, aTn, hid):
    """Part p of P of a whole backward pass (BPTT for `forward`; the math of
    reference.backward), step by step, with the register tile of `_tile`. The variant is in
    the argument types: reset_after=True passes dgh3 and aTn and hid=None; reset_after=False
    passes hid and dgh3=aTn=None (its dgh is dgi).

    This part owns the hidden units of W_hh's column panels [NB·p/P, NB·(p+1)/P) (whp (NB, 3H,
    2·VL), which it packs itself, as it packs its share of W_ih's column panels wihp (NQ, 3H,
    3·VL), read by every part after the first barrier). Per step (reverse order):
    - its units' gate gradients, dgi and dgh (this step's rows: dgi3[s % 3], dgh3[s % 3], each
      (B, G), G >= 3H; every part reads them after the barrier, and the previous step's until
      the next barrier, hence three buffers), and the direct share of dh (B, HS), dh' ⊙ z;
    - after a barrier, its slice of dgh W_hh (the product with every unit's gate gradients)
      into dprod (B, ·) and then into dh (reset_after=False first needs W_hn^T da_n over all
      units: one more barrier);
    - the rows of dW_ih and dW_hh for its units, += dgi^T x_t and dgh^T h_prev (its own columns
      only), one product per chunk of RC rows (`BackwardScratch`; aTn (P, nmax, RC) the chunk's
      dgh of the n block, hid (P, RC, Hq) its r ⊙ h_prev), in float32 chains of about
      _FLUSH_ROWS rows that are then added into float64 sums;
    - its share of the rows of dx_t = dgi W_ih (`BackwardGrads`).
    x, y: (T, B, I), (T, B, H); h0 (B, HS0); gates: r, z, n, hn, (T, B, H) each.
    """
    prefer_wide_vectors()
    T, B, H = y.shape
    I = x.shape[2]
    NB = whp.shape[0]
    PW = whp.shape[2]  # two vectors of units per panel
    VL = PW // 2
    W = wihp.shape[2]  # three vectors: the width of the weight-gradient and dx panels
    NQ = wihp.shape[0]
    Ip = grads.dx.shape[1]
    Hq = scratch.hs.shape[2]
    RC = scratch.xs.shape[1]
    G = dgi3.shape[2]
    HS = dh.shape[1]
    HS0 = h0.shape[1]
    DP = dprod.shape[1]
    u0 = NB * p // P
    u1 = NB * (p + 1) // P
    j0 = min(u0 * PW, H)
    n = min(u1 * PW, H) - j0
    b0 = B * p // P
    b1 = B * (p + 1) // P
    _pack_column_panels(w_hh, u0, u1, whp)
    _pack_column_panels(w_ih, NQ * p // P, NQ * (p + 1) // P, wihp)
    one_i = np.int64(1)
    zero_i = np.int64(0)
    fresh = bool(False)  # not a literal (see _forward_part)
    KS = RC // B
    aTp, xsp, hsp, cih, chh, aih, ahh, sih, shn, hid_off = _part_scratch(scratch, p, n, hid)
    aTn_off = 0 if aTn is None else p * aTn.shape[1] * RC
    xf = view(x, 0, x.size)
    yf = view(y, 0, y.size)
    h0f = view(h0, 0, h0.size)
    dyf = view(dy, 0, dy.size)
    dhf = view(dh, 0, dh.size)
    dprodf = view(dprod, 0, dprod.size)
    dxf = view(grads.dx, 0, grads.dx.size)
    whpf = view(whp, 0, whp.size)
    wihpf = view(wihp, 0, wihp.size)
    g_r, g_z, g_n, g_hn = gates
    grf = view(g_r, 0, g_r.size)
    gzf = view(g_z, 0, g_z.size)
    gnf = view(g_n, 0, g_n.size)
    ghnf = view(g_hn, 0, g_hn.size)
    rows = 0  # rows in the current chunk
    pending = 0  # rows of a full chunk whose products are still to run
    unflushed = 0  # rows in the float32 sums c_ih, c_hh
    nbar = 0
    for s in range(T):
        if atomic_load(ctrl, 1) != 0:  # stopped (Ctrl-C, or another part failed)
            return False
        t = s if reverse else T - 1 - s  # the opposite order of the forward pass
        off = (s % 3) * B * G
        dgi = view(dgi3, off, B * G)
        _backward_rows(T, B, H, t, j0, n, G, grf, gzf, gnf, ghnf, yf, h0f, HS0, lengths, reverse,
                       dyf, dhf, HS, dgi3, dgh3, off)
        nbar += 1
        arrive(ctrl, P)
        # Work that needs nothing the others write in this step: the previous step's dx (its
        # gate gradients are complete and stay until the next barrier) and a full chunk's
        # weight-gradient products. A part that is ahead does it instead of waiting.
        if s > 0:
            tp = (s - 1) if reverse else T - s
            tile(fns, 3, view(dgi3, ((s - 1) % 3) * B * G, B * G), b0 * G, G, one_i, b1 - b0, wihpf,
                     zero_i, 3 * H * W, W, 3 * H, dxf, (tp * B + b0) * Ip, W, Ip, VL, NQ, fresh)
        if pending > 0:
            unflushed = _weight_chunk(fns, np.int64(pending), n, RC, aTp, aTn, aTn_off, xsp, Ip, hsp,
                                      hid, hid_off, Hq, cih, chh, aih, ahh, sih, shn,
                                      np.int64(unflushed), VL)
            pending = 0
        if not wait(ctrl, P, nbar):
            return False
        if dgh3 is not None:
            tile(fns, 2, view(dgh3, off, B * G), zero_i, G, one_i, B, whpf, u0 * 3 * H * PW,
                 3 * H * PW, PW, 3 * H, dprodf, u0 * PW, PW, DP, VL, u1 - u0, fresh)
        else:
            # r enters through W_hn (r ⊙ h): its gradient needs every unit's da_n first.
            tile(fns, 2, dgi, 2 * H, G, one_i, B, whpf, u0 * 3 * H * PW + 2 * H * PW, 3 * H * PW, PW,
                     H, dprodf, u0 * PW, PW, DP, VL, u1 - u0, fresh)
            _reset_gate_rows(T, B, H, t, j0, n, G, grf, yf, h0f, HS0, lengths, reverse, dprodf, DP,
                             dgi, dhf, HS)
            nbar += 1
            if not barrier(ctrl, P, nbar):
                return False
            tile(fns, 2, dgi, zero_i, G, one_i, B, whpf, u0 * 3 * H * PW, 3 * H * PW, PW, 2 * H,
                     dprodf, u0 * PW, PW, DP, VL, u1 - u0, fresh)
        for b in range(B):
            dhb = ptr(dhf, b * HS + j0)
            dpb = ptr(dprodf, b * DP + j0)
            for j in range(n):
                dhb[j] += dpb[j]
        # The weight and bias gradients of this part's units: this step's rows into the chunk.
        for b in range(B):
            row = rows + b
            copy_n(ptr(xsp, row * Ip), ptr(xf, (t * B + b) * I), I)
            hp = _h_prev_ptr(yf, h0f, T, B, H, HS0, lengths, reverse, t, b, 0)
            copy_n(ptr(hsp, row * Hq), hp, H)
            if hid is not None:
                hidb = ptr(hid, hid_off + row * Hq)
                rr = ptr(grf, (t * B + b) * H)
                for j in range(H):
                    hidb[j] = rr[j] * hp[j]
        for g in range(3):
            _transpose_into(dgi, G, g * H + j0, n, B, aTp, g * n, RC, np.int64(rows))
        if aTn is not None:
            _transpose_into(view(dgh3, off, B * G), G, 2 * H + j0, n, B,
                            view(aTn, aTn_off, n * RC), zero_i, RC, np.int64(rows))
        rows += B
        if rows == KS * B:
            pending = rows  # its products run in the next step's barrier window
            rows = 0
    # The last step's dx and the last chunk (every part has passed the last barrier).
    tl = T - 1 if reverse else 0
    tile(fns, 3, view(dgi3, ((T - 1) % 3) * B * G, B * G), b0 * G, G, one_i, b1 - b0, wihpf, zero_i,
             3 * H * W, W, 3 * H, dxf, (tl * B + b0) * Ip, W, Ip, VL, NQ, fresh)
    last = pending if pending > 0 else rows
    if last > 0:
        unflushed = _weight_chunk(fns, np.int64(last), n, RC, aTp, aTn, aTn_off, xsp, Ip, hsp, hid,
                                  hid_off, Hq, cih, chh, aih, ahh, sih, shn, np.int64(unflushed),
                                  VL)
    if unflushed > 0:
        _flush(cih, chh, aih, ahh)
    _store_weight_grads(grads, aih, Ip, ahh, Hq, sih, shn, j0, n, aTn is not None)
    return True


def _backward_call(cache, dy, dh_n, fns):
    """(P, trial, the arguments of _backward_part after p, P, ctrl; the outputs (dx, dh, dw_ih,
    dw_hh, db_ih, db_hh) those arguments write) for `backward`; fns from `tile_functions`."""
    x, y, w_ih, w_hh = cache.x, cache.y, cache.w_ih, cache.w_hh
    T, B, H = y.shape
    I = x.shape[2]
    dtype = x.dtype
    size = dtype.itemsize
    VL = vector_length(dtype)
    W = 3 * VL
    PW = 2 * VL
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=dtype)
    HS = padded_stride(H, size)
    dh = np.zeros((B, HS), dtype)
    dh[:, :H] = dh_n
    h0 = np.ascontiguousarray(cache.h0, dtype=dtype)
    reset_after = cache.reset_after
    NB = -(-H // PW)
    NQ = -(-I // W)
    Ip = NQ * W
    Hq = -(-H // W) * W
    G = padded_stride(3 * H, size)
    P, trial = _pass_parts("backward", dtype, B, H, NB)  # the buffers are sized for P parts
    # This step's dL/d(pre-activation) of r, z, n per row: dgi from the input side; dgh from the
    # hidden side (differs in the n columns, × r, when reset_after; equal to dgi otherwise).
    dgi3 = np.empty((3, B, G), dtype)
    KS = max(1, _CHUNK_ROWS // B)
    RC = KS * B
    nmax = -(-NB // P) * PW  # units of the largest part
    grads = BackwardGrads(dx=np.empty((T * B, Ip), dtype), dw_ih=np.empty(w_ih.shape, dtype),
                          dw_hh=np.empty(w_hh.shape, dtype), db_ih=np.empty(w_ih.shape[0], dtype),
                          db_hh=np.empty(w_ih.shape[0], dtype))
    scratch = BackwardScratch(
        aT=np.empty((P, 3 * nmax, RC), dtype), xs=np.empty((P, RC, Ip), dtype),
        hs=np.empty((P, RC, Hq), dtype), c_ih=np.empty((P, 3 * nmax, Ip), dtype),
        c_hh=np.empty((P, 3 * nmax, Hq), dtype), acc_ih=np.empty((P, 3 * nmax, Ip), np.float64),
        acc_hh=np.empty((P, 3 * nmax, Hq), np.float64), s_ih=np.empty((P, 3 * nmax), np.float64),
        s_hn=np.empty((P, nmax), np.float64))
    g = cache.gates
    args = (
        fns, x, y, h0, (g[0], g[1], g[2], g[3]), cache.lengths, cache.reverse, w_hh, w_ih,
        np.empty((NB, 3 * H, PW), dtype), np.empty((NQ, 3 * H, W), dtype), dy, dh,
        np.empty((B, padded_stride(NB * PW, size)), dtype), dgi3, grads, scratch,
        np.empty((3, B, G), dtype) if reset_after else None,
        np.empty((P, nmax, RC), dtype) if reset_after else None,
        None if reset_after else np.empty((P, RC, Hq), dtype))
    return P, trial, args, (grads.dx, dh) + tuple(grads)[1:]


def backward(cache, dy, dh_n):
    """BPTT for `forward(..., train=True)`: returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    T, B, H = cache.y.shape
    I = cache.x.shape[2]
    _precompile.wait(_backward_key(cache.x.dtype, cache.reset_after))
    P, trial, args, (dx, dh, dw_ih, dw_hh, db_ih, db_hh) = _backward_call(
        cache, dy, dh_n, tile_functions(cache.x.dtype, (2, 3)))
    _run_pass(_backward_part, P, trial, T, args, flops=12 * T * B * H * (H + I))
    return dx[:, :I].reshape(T, B, I), np.ascontiguousarray(dh[:, :H]), dw_ih, dw_hh, db_ih, db_hh


def _backward_key(dtype, reset_after):
    return f"backward/{np.dtype(dtype).name}/{'after' if reset_after else 'before'}"


def _backward_signature(dtype, reset_after):
    """The argument types of _backward_part for this dtype and variant (a 1-unit stand-in call
    has the same types as any other)."""
    dtype = np.dtype(dtype)
    one = np.zeros((1, 1, 1), dtype)
    w = np.zeros((3, 1), dtype)
    gates = np.zeros((4, 1, 1, 1), dtype)
    stand_in = GRUCache(x=one, gates=gates, w_ih=w, w_hh=w, lengths=np.ones(1, np.int64),
                        reverse=False, reset_after=reset_after, y=one, h0=np.zeros((1, 1), dtype))
    fns = np.zeros(4, np.int64)
    fns.flags.writeable = False  # as tile_functions' table
    args = _backward_call(stand_in, one, np.zeros((1, 1), dtype), fns)[2]
    typeof = _backward_part.typeof_pyval
    return (typeof(0), typeof(1), typeof(np.zeros(CTRL_SIZE, np.int64))) + tuple(
        typeof(a) for a in args)
