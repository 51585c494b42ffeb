"""CUDA backend: numba.cuda kernels for one GRU layer and one direction, signatures as reference.py.

Arrays in and out are device arrays (anything with `__cuda_array_interface__`; numpy arrays are
copied to the device first); the GRUCache it returns holds device arrays. Shapes and conventions: see
reference.py. Inputs are trusted: layers.py checks them once. Tunables live in _cuda_config.py.

Forward: the input projection of all steps is one tiled GEMM, gi = x W_ihᵀ + b_ih over T·B rows;
then the recurrence, on one of two paths chosen by size (`_persist_plan`):
- persistent: one cooperative launch runs all T steps; each block keeps the W_hh rows of its slice of
  hidden units in shared memory and the grid synchronises once per step (twice for
  reset_after=False, whose n gate needs the whole r ⊙ h first);
- per step: one fused kernel per step (two for reset_after=False) computes a tile of W_hh h with the
  gate math after it.
Backward: the reverse loop writes the gate gradients dgi, dgh (T, B, 3H) and carries dh, on the same
two paths (persistent: W_hh columns on chip; per step: a pointwise kernel and a GEMM); then dx, dW_ih,
dW_hh and the bias gradients are single reductions over all T·B rows.
Importing this module needs numba-cuda, not a GPU; running it needs a GPU or NUMBA_ENABLE_CUDASIM=1.
"""

import functools
import math

import numpy as np
from numba import cuda
from numba.cuda.core import config as _cuda_core_config

from . import _cuda_config as cfg
from ._cache import GRUCache

SIMULATOR = bool(_cuda_core_config.ENABLE_CUDASIM)  # NUMBA_ENABLE_CUDASIM=1, read at import


def _cdiv(a, b):
    return (a + b - 1) // b


def _odd(n):
    """n or n + 1, whichever is odd: a shared-memory row stride that spreads rows over the banks."""
    return n if n % 2 else n + 1


# ---------------------------------------------------------------------------------------------
# Kernels: built per dtype (shared arrays and typed constants need it at compile time) and per set
# of tunables, once, on first use.
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _build(dtype_name, config_key):
    config = dict(config_key)
    nb_dtype = cuda.float32 if dtype_name == "float32" else cuda.float64
    np_type = np.float32 if dtype_name == "float32" else np.float64
    ZERO = np_type(0)
    ONE = np_type(1)
    FM = config["FASTMATH"]

    GX, GY = config["GEMM_THREADS_X"], config["GEMM_THREADS_Y"]
    RM, RN, BK = config["GEMM_REG_M"], config["GEMM_REG_N"], config["GEMM_TILE_K"]
    BM, BN, GT = GY * RM, GX * RN, GX * GY
    PT, PK = config["PERSIST_THREADS"], config["PERSIST_KSPLIT"]
    if PK & (PK - 1) or PT % PK:
        raise ValueError(f"PERSIST_KSPLIT: expected a power of two dividing PERSIST_THREADS "
                         f"({PT}), got {PK}")
    PSLOTS = PT // PK

    @cuda.jit(device=True, fastmath=FM)
    def _sigmoid(a):
        # Split by sign so that exp never overflows.
        if a >= ZERO:
            return ONE / (ONE + math.exp(-a))
        e = math.exp(a)
        return e / (ONE + e)

    # -- tiled GEMM: c (M, N) = [c +] op(a) op(b) [+ bias] --

    @cuda.jit(device=True)
    def _stage(src, k_major, r0, k0, R, K, BR, dst, tid):
        """dst (BK, BR)[kk, rr] = element (k0 + kk, r0 + rr) of a K × R operand, 0 outside it;
        src stores it (K, R) when k_major, else (R, K). Consecutive threads walk src's
        contiguous axis."""
        for idx in range(tid, BR * BK, GT):
            if k_major:
                kk = idx // BR
                rr = idx - kk * BR
                v = src[k0 + kk, r0 + rr] if (k0 + kk < K and r0 + rr < R) else ZERO
            else:
                rr = idx // BK
                kk = idx - rr * BK
                v = src[r0 + rr, k0 + kk] if (k0 + kk < K and r0 + rr < R) else ZERO
            dst[kk, rr] = v

    def make_gemm(trans_a, trans_b):
        @cuda.jit(fastmath=FM)
        def _gemm_kernel(a, b, c, bias, accumulate, has_bias):
            """c = op(a) op(b) (+ c if accumulate) (+ bias[n] if has_bias).

            op(a) is (M, K): a itself, or aᵀ when a is stored (K, M); op(b) is (K, N): b, or bᵀ when
            b is stored (N, K). c (M, N); bias (N,). Block (GX, GY); grid (⌈N/BN⌉, ⌈M/BM⌉).
            """
            M = c.shape[0]
            N = c.shape[1]
            K = a.shape[0] if trans_a else a.shape[1]
            a_s = cuda.shared.array((BK, BM), nb_dtype)  # k-major, so a row of C reads one line
            b_s = cuda.shared.array((BK, BN), nb_dtype)
            acc = cuda.local.array((RM, RN), nb_dtype)
            b_frag = cuda.local.array(RN, nb_dtype)
            tx = cuda.threadIdx.x
            ty = cuda.threadIdx.y
            tid = ty * GX + tx
            m0 = cuda.blockIdx.y * BM
            n0 = cuda.blockIdx.x * BN
            for i in range(RM):
                for j in range(RN):
                    acc[i, j] = ZERO
            for k0 in range(0, K, BK):
                # Stage the A and B slices: A is stored k-major when transposed, B when not.
                _stage(a, trans_a, m0, k0, M, K, BM, a_s, tid)
                _stage(b, not trans_b, n0, k0, N, K, BN, b_s, tid)
                cuda.syncthreads()
                for kk in range(BK):
                    for j in range(RN):
                        b_frag[j] = b_s[kk, tx + j * GX]
                    for i in range(RM):
                        av = a_s[kk, ty + i * GY]
                        for j in range(RN):
                            acc[i, j] += av * b_frag[j]
                cuda.syncthreads()
            for i in range(RM):
                m = m0 + ty + i * GY
                if m < M:
                    for j in range(RN):
                        n = n0 + tx + j * GX
                        if n < N:
                            v = acc[i, j]
                            if has_bias:
                                v += bias[n]
                            if accumulate:
                                v += c[m, n]
                            c[m, n] = v

        return _gemm_kernel

    # The three forms the engine uses: x W_ihᵀ (forward), dgi W_ih and dgh_t W_hh (dx, dh),
    # dgiᵀ x and dghᵀ h (weight gradients).
    gemm = {(False, True): make_gemm(False, True), (False, False): make_gemm(False, False),
            (True, False): make_gemm(True, False)}

    # -- forward gate math, shared by the per-step and the persistent kernels --
    # gi (T, B, 3H) holds W_ih x + b_ih; a_* are this thread's recurrent products W_h* v (no bias).

    @cuda.jit(device=True, fastmath=FM)
    def _fwd_invalid(t, b, j, H, h_in, h_out, y, h_prev, gates, hn, train, reset_after):
        """A step past lengths[b]: the state passes through, the output is 0, the cache is 0."""
        h = h_in[b, j]
        h_out[b, j] = h
        y[t, b, j] = ZERO
        if train:
            h_prev[t, b, j] = h
            gates[t, b, j] = ZERO
            gates[t, b, H + j] = ZERO
            gates[t, b, 2 * H + j] = ZERO
            if reset_after:
                hn[t, b, j] = ZERO

    @cuda.jit(device=True, fastmath=FM)
    def _fwd_finish_full(t, b, j, H, a_r, a_z, a_n, gi, h_in, h_out, b_hh, lengths, y,
                         h_prev, gates, hn, train):
        """reset_after=True: r, z, n = tanh(gi_n + r ⊙ (W_hn h + b_hn)), h' for unit j of row b."""
        if t >= lengths[b]:
            _fwd_invalid(t, b, j, H, h_in, h_out, y, h_prev, gates, hn, train, True)
            return
        h = h_in[b, j]
        r = _sigmoid(gi[t, b, j] + a_r + b_hh[j])
        z = _sigmoid(gi[t, b, H + j] + a_z + b_hh[H + j])
        hn_j = a_n + b_hh[2 * H + j]
        n = math.tanh(gi[t, b, 2 * H + j] + r * hn_j)
        h_new = (ONE - z) * n + z * h
        h_out[b, j] = h_new
        y[t, b, j] = h_new
        if train:
            h_prev[t, b, j] = h
            gates[t, b, j] = r
            gates[t, b, H + j] = z
            gates[t, b, 2 * H + j] = n
            hn[t, b, j] = hn_j

    @cuda.jit(device=True, fastmath=FM)
    def _fwd_finish_rz(t, b, j, H, a_r, a_z, gi, h_in, rh, rz, b_hh, lengths):
        """reset_after=False, first half: r and z into rz (B, 2H), r ⊙ h into rh (B, H)."""
        if t >= lengths[b]:
            rh[b, j] = ZERO
            return
        r = _sigmoid(gi[t, b, j] + a_r + b_hh[j])
        z = _sigmoid(gi[t, b, H + j] + a_z + b_hh[H + j])
        rz[b, j] = r
        rz[b, H + j] = z
        rh[b, j] = r * h_in[b, j]

    @cuda.jit(device=True, fastmath=FM)
    def _fwd_finish_n(t, b, j, H, a_n, gi, h_in, h_out, rz, b_hh, lengths, y, h_prev, gates,
                      hn, train):
        """reset_after=False, second half: n = tanh(gi_n + W_hn (r ⊙ h) + b_hn) and h'."""
        if t >= lengths[b]:
            _fwd_invalid(t, b, j, H, h_in, h_out, y, h_prev, gates, hn, train, False)
            return
        h = h_in[b, j]
        r = rz[b, j]
        z = rz[b, H + j]
        n = math.tanh(gi[t, b, 2 * H + j] + a_n + b_hh[2 * H + j])
        h_new = (ONE - z) * n + z * h
        h_out[b, j] = h_new
        y[t, b, j] = h_new
        if train:
            h_prev[t, b, j] = h
            gates[t, b, j] = r
            gates[t, b, H + j] = z
            gates[t, b, 2 * H + j] = n

    # -- per-step recurrent kernel: a tile of W_h* v, then the fused gate math --

    def make_step(mode, TY):
        # mode 0: reset_after=True (r, z, n rows; v = h); 1: reset_after=False r, z rows (v = h);
        # 2: reset_after=False n rows (v = r ⊙ h).
        TX = config["STEP_TILE_UNITS"]
        TXP = TX + 1  # padded row: column reads of w_s spread over the banks
        NG = 3 if mode == 0 else (2 if mode == 1 else 1)
        G0 = 2 if mode == 2 else 0  # first gate block of W_hh these rows come from

        @cuda.jit(fastmath=FM)
        def _step_kernel(t, gi, h_in, v_in, h_out, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates,
                         hn, train):
            """One step for a (TY sequences) x (TX units) tile. h_in, h_out, rh (B, H); rz (B, 2H).

            Block (TX, TY); grid (⌈H/TX⌉, ⌈B/TY⌉). Thread (tx, ty) owns unit j, sequence b.
            """
            B = h_in.shape[0]
            H = h_in.shape[1]
            v_s = cuda.shared.array((TY, TX), nb_dtype)  # v[b0:b0+TY, k0:k0+TX]
            w_s = cuda.shared.array((NG, TX, TXP), nb_dtype)
            tx = cuda.threadIdx.x
            ty = cuda.threadIdx.y
            j0 = cuda.blockIdx.x * TX
            b = cuda.blockIdx.y * TY + ty
            j = j0 + tx
            acc0 = ZERO
            acc1 = ZERO
            acc2 = ZERO
            for k0 in range(0, H, TX):
                k = k0 + tx
                v_s[ty, tx] = v_in[b, k] if (b < B and k < H) else ZERO
                for g in range(NG):
                    for jj in range(ty, TX, TY):
                        row = j0 + jj
                        w_s[g, jj, tx] = w_hh[(G0 + g) * H + row, k] if (row < H and k < H) \
                            else ZERO
                cuda.syncthreads()
                for kk in range(TX):
                    v = v_s[ty, kk]
                    acc0 += w_s[0, tx, kk] * v
                    if NG > 1:
                        acc1 += w_s[1, tx, kk] * v
                    if NG > 2:
                        acc2 += w_s[2, tx, kk] * v
                cuda.syncthreads()
            if b < B and j < H:
                if mode == 0:
                    _fwd_finish_full(t, b, j, H, acc0, acc1, acc2, gi, h_in, h_out, b_hh, lengths,
                                     y, h_prev, gates, hn, train)
                elif mode == 1:
                    _fwd_finish_rz(t, b, j, H, acc0, acc1, gi, h_in, rh, rz, b_hh, lengths)
                else:
                    _fwd_finish_n(t, b, j, H, acc0, gi, h_in, h_out, rz, b_hh, lengths, y, h_prev,
                                  gates, hn, train)

        return _step_kernel

    step_tiles = []
    ty = 1
    while ty < config["STEP_TILE_BATCH"]:
        step_tiles.append(ty)
        ty *= 2
    step_tiles.append(config["STEP_TILE_BATCH"])
    step = {(mode, ty): make_step(mode, ty) for mode in (0, 1, 2) for ty in step_tiles}

    # -- backward gate gradients, shared by both paths --

    @cuda.jit(device=True, fastmath=FM)
    def _bwd_point(t, b, j, H, dy, dh, h_prev, gates, hn, lengths, dgi, dgh, reset_after):
        """Gate gradients of unit j, row b, step t; dh[b, j] becomes its direct path to h_{t-1}.

        dgi (T,B,3H): dL/d(pre-activation) of r, z, n; dgh: the same seen from W_hh's side (the n
        rows carry r ⊙ da_n when reset_after). reset_after=False leaves the r rows to _bwd_finish_r,
        which needs the whole row of da_n first. An invalid step writes zeros and keeps dh.
        """
        if t >= lengths[b]:
            for g in range(3):
                dgi[t, b, g * H + j] = ZERO
                dgh[t, b, g * H + j] = ZERO
            return
        r = gates[t, b, j]
        z = gates[t, b, H + j]
        n = gates[t, b, 2 * H + j]
        dh_new = dh[b, j] + dy[t, b, j]
        da_n = dh_new * (ONE - z) * (ONE - n * n)
        da_z = dh_new * (h_prev[t, b, j] - n) * z * (ONE - z)
        dgi[t, b, H + j] = da_z
        dgh[t, b, H + j] = da_z
        dgi[t, b, 2 * H + j] = da_n
        if reset_after:
            da_r = da_n * hn[t, b, j] * r * (ONE - r)
            dgi[t, b, j] = da_r
            dgh[t, b, j] = da_r
            dgh[t, b, 2 * H + j] = da_n * r
        else:
            dgh[t, b, 2 * H + j] = da_n
        dh[b, j] = dh_new * z

    @cuda.jit(device=True, fastmath=FM)
    def _bwd_finish_r(t, b, k, d_rh, dh, h_prev, gates, lengths, dgi, dgh):
        """reset_after=False: r's gradient from d_rh = dL/d(r ⊙ h)[b, k] = Σ_j da_n[b, j] W_hn[j, k]."""
        if t < lengths[b]:
            r = gates[t, b, k]
            da_r = d_rh * h_prev[t, b, k] * r * (ONE - r)
            dgi[t, b, k] = da_r
            dgh[t, b, k] = da_r
            dh[b, k] += d_rh * r

    @cuda.jit(fastmath=FM)
    def _bwd_point_kernel(t, dy, dh, h_prev, gates, hn, lengths, dgi, dgh, reset_after):
        """_bwd_point for every (b, j): one thread each."""
        B = dh.shape[0]
        H = dh.shape[1]
        i = cuda.grid(1)
        if i < B * H:
            b = i // H
            _bwd_point(t, b, i - b * H, H, dy, dh, h_prev, gates, hn, lengths, dgi, dgh,
                       reset_after)

    @cuda.jit(fastmath=FM)
    def _bwd_r_kernel(t, d_rh, dh, h_prev, gates, lengths, dgi, dgh):
        """_bwd_finish_r for every (b, k); d_rh (B, H)."""
        B = dh.shape[0]
        H = dh.shape[1]
        i = cuda.grid(1)
        if i < B * H:
            b = i // H
            k = i - b * H
            _bwd_finish_r(t, b, k, d_rh[b, k], dh, h_prev, gates, lengths, dgi, dgh)

    # -- persistent cooperative kernels --

    @cuda.jit(device=True)
    def _block_sum(red, tid, ks):
        """Tree sum of red[:, tid - ks : tid - ks + PK] into red[:, tid - ks] (every thread calls)."""
        stride = PK // 2
        while stride > 0:
            if ks < stride:
                red[0, tid] += red[0, tid + stride]
                red[1, tid] += red[1, tid + stride]
                red[2, tid] += red[2, tid + stride]
            cuda.syncthreads()
            stride //= 2

    @cuda.jit(device=True)
    def _load_rows(w_s, w_hh, first_gate, ngates, sl, units, H, hs, tid):
        """Rows of W_hh for units sl·units .. of gates first_gate.. into w_s[(g·units + jl)·hs + k]."""
        per_gate = units * H
        for idx in range(tid, ngates * per_gate, PT):
            g = idx // per_gate
            rem = idx - g * per_gate
            jl = rem // H
            k = rem - jl * H
            j = sl * units + jl
            w_s[(g * units + jl) * hs + k] = w_hh[(first_gate + g) * H + j, k] if j < H else ZERO

    @cuda.jit(fastmath=FM)
    def _persist_fwd_kernel(gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, hn,
                            reverse, reset_after, train, units):
        """All T steps in one cooperative launch. hbuf (2, B, H): h ping-pongs between its halves.

        Block i owns units [i·units, (i+1)·units) (slices beyond the grid are taken in turn, with
        their weights reloaded each step: only where the grid is smaller than planned). Dynamic
        shared memory: 3·units·odd(H) elements. rh (B, H), rz (B, 2H): reset_after=False scratch.
        """
        T = gi.shape[0]
        B = hbuf.shape[1]
        H = hbuf.shape[2]
        w_s = cuda.shared.array(0, nb_dtype)
        red = cuda.shared.array((3, PT), nb_dtype)
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        ks = tid % PK
        slot = tid // PK
        hs = H if H % 2 else H + 1
        nslices = (H + units - 1) // units
        resident = nslices <= cuda.gridDim.x
        nout = B * units
        if resident and cuda.blockIdx.x < nslices:
            _load_rows(w_s, w_hh, 0, 3, cuda.blockIdx.x, units, H, hs, tid)
            cuda.syncthreads()
        for s in range(T):
            t = T - 1 - s if reverse else s
            h_in = hbuf[s % 2]
            h_out = hbuf[(s + 1) % 2]
            # Phase A: r, z (and n when reset_after) from W_h* h. Phase B (reset_after=False only):
            # n from W_hn (r ⊙ h), which needs every unit's r first, so a grid sync sits between.
            for phase in range(1 if reset_after else 2):
                g0 = 0 if phase == 0 else 2  # first gate block of the rows multiplied
                ng_ = (3 if reset_after else 2) if phase == 0 else 1
                vec = h_in if phase == 0 else rh
                for sl in range(cuda.blockIdx.x, nslices, cuda.gridDim.x):
                    if not resident:
                        cuda.syncthreads()
                        _load_rows(w_s, w_hh, 0, 3, sl, units, H, hs, tid)
                        cuda.syncthreads()
                    for o0 in range(0, nout, PSLOTS):
                        o = o0 + slot
                        b = o // units
                        jl = o - b * units
                        j = sl * units + jl
                        active = o < nout and j < H
                        p0 = ZERO
                        p1 = ZERO
                        p2 = ZERO
                        if active:
                            for k in range(ks, H, PK):
                                v = vec[b, k]
                                p0 += w_s[(g0 * units + jl) * hs + k] * v
                                if ng_ > 1:
                                    p1 += w_s[(units + jl) * hs + k] * v
                                if ng_ > 2:
                                    p2 += w_s[(2 * units + jl) * hs + k] * v
                        red[0, tid] = p0
                        red[1, tid] = p1
                        red[2, tid] = p2
                        cuda.syncthreads()
                        _block_sum(red, tid, ks)
                        if ks == 0 and active:
                            if reset_after:
                                _fwd_finish_full(t, b, j, H, red[0, tid], red[1, tid],
                                                 red[2, tid], gi, h_in, h_out, b_hh, lengths, y,
                                                 h_prev, gates, hn, train)
                            elif phase == 0:
                                _fwd_finish_rz(t, b, j, H, red[0, tid], red[1, tid], gi, h_in, rh,
                                               rz, b_hh, lengths)
                            else:
                                _fwd_finish_n(t, b, j, H, red[0, tid], gi, h_in, h_out, rz, b_hh,
                                              lengths, y, h_prev, gates, hn, train)
                        cuda.syncthreads()
                grid.sync()

    @cuda.jit(device=True)
    def _load_cols(w_s, w_hh, sl, units, H, hs3, tid):
        """Columns of W_hh for units sl·units ..: w_s[kl·hs3 + g] = W_hh[g, sl·units + kl]."""
        for idx in range(tid, 3 * H * units, PT):
            g = idx // units
            kl = idx - g * units
            k = sl * units + kl
            w_s[kl * hs3 + g] = w_hh[g, k] if k < H else ZERO

    @cuda.jit(fastmath=FM)
    def _persist_bwd_kernel(dy, dh, h_prev, gates, hn, w_hh, lengths, dgi, dgh, reverse,
                            reset_after, units):
        """The reverse loop in one cooperative launch. dh (B, H): dL/dh_n in, dL/dh0 out.

        Block i owns units [i·units, (i+1)·units): their gate gradients (pointwise) and their
        entries of dh_{t-1} = dh_new ⊙ z + (dgh_t W_hh)[:, k] (a column block of W_hh, kept in
        dynamic shared memory: units·odd(3H) elements). One grid sync per step (two when
        reset_after=False, for d(r ⊙ h) = da_n W_hn).
        """
        T = dy.shape[0]
        B = dh.shape[0]
        H = dh.shape[1]
        w_s = cuda.shared.array(0, nb_dtype)
        red = cuda.shared.array((3, PT), nb_dtype)
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        ks = tid % PK
        slot = tid // PK
        hs3 = 3 * H if (3 * H) % 2 else 3 * H + 1
        nslices = (H + units - 1) // units
        resident = nslices <= cuda.gridDim.x
        nout = B * units
        grows = 3 * H if reset_after else 2 * H  # dgh columns that multiply W_hh in phase C
        if resident and cuda.blockIdx.x < nslices:
            _load_cols(w_s, w_hh, cuda.blockIdx.x, units, H, hs3, tid)
            cuda.syncthreads()
        for s in range(T):
            t = s if reverse else T - 1 - s  # the opposite order of the forward pass
            # Phase A: pointwise gate gradients of the owned units (dh of owned units only).
            for sl in range(cuda.blockIdx.x, nslices, cuda.gridDim.x):
                for o in range(tid, nout, PT):
                    b = o // units
                    j = sl * units + (o - b * units)
                    if j < H:
                        _bwd_point(t, b, j, H, dy, dh, h_prev, gates, hn, lengths, dgi, dgh,
                                   reset_after)
            grid.sync()
            # Phase B (reset_after=False only): d(r ⊙ h)[b, k] = Σ_j da_n[b, j] W_hn[j, k], then r's
            # gradient. Phase C: dh[b, k] += Σ_g dgh_t[b, g] W_hh[g, k]. Both reduce one row of the
            # step's gate gradients against a column of the owned block of W_hh.
            for phase in range(1 if reset_after else 0, 2):
                voff = 2 * H if phase == 0 else 0  # where the row and the column start
                n = H if phase == 0 else grows
                for sl in range(cuda.blockIdx.x, nslices, cuda.gridDim.x):
                    if not resident:
                        cuda.syncthreads()
                        _load_cols(w_s, w_hh, sl, units, H, hs3, tid)
                        cuda.syncthreads()
                    for o0 in range(0, nout, PSLOTS):
                        o = o0 + slot
                        b = o // units
                        kl = o - b * units
                        k = sl * units + kl
                        active = o < nout and k < H
                        p0 = ZERO
                        if active:
                            for g in range(ks, n, PK):
                                v = dgi[t, b, voff + g] if phase == 0 else dgh[t, b, g]
                                p0 += v * w_s[kl * hs3 + voff + g]
                        red[0, tid] = p0
                        red[1, tid] = ZERO
                        red[2, tid] = ZERO
                        cuda.syncthreads()
                        _block_sum(red, tid, ks)
                        if ks == 0 and active:
                            if phase == 0:
                                _bwd_finish_r(t, b, k, red[0, tid], dh, h_prev, gates, lengths,
                                              dgi, dgh)
                            else:
                                dh[b, k] += red[0, tid]
                        cuda.syncthreads()
                if phase == 0:
                    grid.sync()  # phase C reads the r rows of every unit
            # No grid sync here: the next step's phase A reads only the dh entries this block
            # wrote, and writes dgi/dgh rows of another step than the one phase C read.

    # -- reductions and elementwise helpers of backward --

    @cuda.jit(fastmath=FM)
    def _colsum_kernel(a, out):
        """out[n] = Σ_m a[m, n]; one thread per column (consecutive threads read one row)."""
        n = cuda.grid(1)
        if n < a.shape[1]:
            s = ZERO
            for m in range(a.shape[0]):
                s += a[m, n]
            out[n] = s

    @cuda.jit(fastmath=FM)
    def _reset_times_h_kernel(gates, h_prev, out):
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
            out[t, b, k] = gates[t, b, k] * h_prev[t, b, k]

    class Kernels:
        pass

    ks_ = Kernels()
    ks_.gemm = gemm
    ks_.step = step
    ks_.step_tiles = tuple(step_tiles)
    ks_.bwd_point = _bwd_point_kernel
    ks_.bwd_r = _bwd_r_kernel
    ks_.persist_fwd = _persist_fwd_kernel
    ks_.persist_bwd = _persist_bwd_kernel
    ks_.colsum = _colsum_kernel
    ks_.reset_times_h = _reset_times_h_kernel
    ks_.sigmoid = _sigmoid  # a device function, exposed for its test kernel
    ks_.gemm_block = (GX, GY)
    ks_.gemm_tile = (BM, BN)
    return ks_


def _kernels(dtype):
    return _build(np.dtype(dtype).name, cfg.snapshot())


# ---------------------------------------------------------------------------------------------
# Host-side launchers
# ---------------------------------------------------------------------------------------------

def _dev(a):
    """A device array for a (no copy when it already lives on the device)."""
    if isinstance(a, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(a))
    if hasattr(a, "copy_to_host"):  # numba's own device array (or the simulator's)
        return a
    return cuda.as_cuda_array(a)  # another library's, through __cuda_array_interface__


def _dummy(ndim, dtype):
    """A 1-element placeholder for an argument a kernel never touches (cached: never written)."""
    return _dummy_cached(ndim, np.dtype(dtype).name)


@functools.lru_cache(maxsize=None)
def _dummy_cached(ndim, dtype_name):
    return cuda.device_array((1,) * ndim, dtype_name)


def _gemm(k, a, b, c, trans_a=False, trans_b=False, bias=None, accumulate=False):
    """c = op(a) op(b) (+ c) (+ bias) on the device; shapes as _gemm_kernel's docstring."""
    M, N = c.shape
    BM, BN = k.gemm_tile
    grid = (_cdiv(N, BN), _cdiv(M, BM))
    has_bias = bias is not None
    if bias is None:
        bias = _dummy(1, c.dtype)
    k.gemm[(trans_a, trans_b)][grid, k.gemm_block](a, b, c, bias, accumulate, has_bias)


def _pointwise_grid(n):
    threads = cfg.POINTWISE_THREADS
    return max(1, _cdiv(n, threads)), threads


def _colsum(k, a, out):
    threads = cfg.COLSUM_THREADS
    k.colsum[max(1, _cdiv(a.shape[1], threads)), threads](a, out)


def _smem_limit():
    """(bytes of dynamic shared memory a block may use, number of SMs) on the current device."""
    if SIMULATOR:
        return 1 << 30, 1
    dev = cuda.get_current_device()
    try:
        optin = int(dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
    except Exception:  # older drivers: the static limit
        optin = int(dev.MAX_SHARED_MEMORY_PER_BLOCK)
    return optin, int(dev.MULTIPROCESSOR_COUNT)


def _allow_dynamic_smem(compiled, nbytes):
    """Raise the kernel's dynamic shared memory limit above the default 48 KiB (opt-in)."""
    if SIMULATOR or nbytes <= 48 * 1024:
        return True
    try:
        from numba.cuda.cudadrv.driver import binding, driver
        cufunc = compiled._codelibrary.get_cufunc()
        attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        driver.cuKernelSetAttribute(attr, int(nbytes), cufunc.handle, cufunc.device.id)
        return True
    except Exception:
        return False


def _coop_capacity(kernel, args, threads, smem):
    """How many blocks of this kernel can be co-resident (the cooperative launch's limit)."""
    if SIMULATOR:
        return kernel.overloads[None].max_cooperative_grid_blocks(threads)
    compiled = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
    if not _allow_dynamic_smem(compiled, smem):
        return 0
    return compiled.max_cooperative_grid_blocks(threads, smem)


def _persist_plan(kernel, args, B, H, itemsize, backward):
    """(units per block, blocks, dynamic shared bytes) for the persistent kernel, or None.

    None where the batch is above PERSIST_MAX_BATCH, or W_hh does not fit in the shared memory of
    the blocks that can be co-resident: the per-step path then runs.
    """
    if not cfg.PERSIST_ENABLE or B > cfg.PERSIST_MAX_BATCH:
        return None
    threads = cfg.PERSIST_THREADS
    limit, n_sm = _smem_limit()
    limit -= 3 * threads * itemsize  # the static reduction buffer
    row = _odd(3 * H) if backward else 3 * _odd(H)  # elements per unit held on chip

    def smem(units):
        return units * row * itemsize

    units = cfg.PERSIST_UNITS_PER_BLOCK or _cdiv(H, n_sm)
    if cfg.PERSIST_UNITS_PER_BLOCK:
        cap = _coop_capacity(kernel, args, threads, smem(units))
        return (units, min(_cdiv(H, units), max(cap, 1)), smem(units)) if cap >= 1 else None
    while smem(units) <= limit:
        blocks = _cdiv(H, units)
        cap = _coop_capacity(kernel, args, threads, smem(units))
        if cap >= blocks:
            return units, blocks, smem(units)
        if cap == 0:
            return None
        units = max(units + 1, _cdiv(H, cap))
    return None


# The recurrence path each function took on its last call ("persistent units=U blocks=N" or
# "per-step"), for benchmarks and diagnostics.
last_path = {"forward": None, "backward": None}


def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False):
    """One GRU layer, one direction. Returns (y (T,B,H), h_n (B,H), cache or None), on the device."""
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = map(_dev, (x, h0, w_ih, w_hh, b_ih, b_hh, lengths))
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    k = _kernels(dtype)
    # Input projection of all steps, one GEMM over T·B rows: gi = x W_ihᵀ + b_ih (T, B, 3H).
    gi = cuda.device_array((T, B, 3 * H), dtype)
    _gemm(k, x.reshape(T * B, I), w_ih, gi.reshape(T * B, 3 * H), trans_b=True, bias=b_ih)
    y = cuda.device_array((T, B, H), dtype)
    hbuf = cuda.device_array((2, B, H), dtype)  # h ping-pongs: a step reads one half, writes the other
    hbuf[0].copy_to_device(h0)
    if train:
        h_prev = cuda.device_array((T, B, H), dtype)
        gates = cuda.device_array((T, B, 3 * H), dtype)
        hn = cuda.device_array((T, B, H), dtype) if reset_after else _dummy(3, dtype)
    else:
        h_prev = gates = hn = _dummy(3, dtype)
    if reset_after:
        rh = rz = _dummy(2, dtype)
    else:
        rh = cuda.device_array((B, H), dtype)  # r ⊙ h of the current step
        rz = cuda.device_array((B, 2 * H), dtype)  # r and z of the current step
    args = (gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, hn, bool(reverse),
            bool(reset_after), bool(train))
    plan = _persist_plan(k.persist_fwd, args + (1,), B, H, dtype.itemsize, backward=False)
    if plan is not None:
        units, blocks, smem = plan
        k.persist_fwd[blocks, cfg.PERSIST_THREADS, 0, smem](*args, units)
        last_path["forward"] = f"persistent units={units} blocks={blocks}"
    else:
        last_path["forward"] = "per-step"
        tx = cfg.STEP_TILE_UNITS
        ty = next(t for t in k.step_tiles if t >= min(B, k.step_tiles[-1]))
        grid = (_cdiv(H, tx), _cdiv(B, ty))
        for s in range(T):
            t = T - 1 - s if reverse else s
            h_in, h_out = hbuf[s % 2], hbuf[(s + 1) % 2]
            if reset_after:
                k.step[(0, ty)][grid, (tx, ty)](t, gi, h_in, h_in, h_out, rh, rz, w_hh, b_hh,
                                                lengths, y, h_prev, gates, hn, train)
            else:
                k.step[(1, ty)][grid, (tx, ty)](t, gi, h_in, h_in, h_out, rh, rz, w_hh, b_hh,
                                                lengths, y, h_prev, gates, hn, train)
                k.step[(2, ty)][grid, (tx, ty)](t, gi, h_in, rh, h_out, rh, rz, w_hh, b_hh,
                                                lengths, y, h_prev, gates, hn, train)
    h_n = hbuf[T % 2]
    cache = None
    if train:
        cache = GRUCache(x=x, h_prev=h_prev, gates=gates, hn=hn if reset_after else None,
                         w_ih=w_ih, w_hh=w_hh, lengths=lengths, reverse=bool(reverse),
                         reset_after=bool(reset_after))
    return y, h_n, cache


def backward(cache, dy, dh_n):
    """BPTT for `forward(..., train=True)`: returns (dx, dh0, dw_ih, dw_hh, db_ih, db_hh), on the
    device, fresh arrays."""
    x, w_ih, w_hh, lengths = cache.x, cache.w_ih, cache.w_hh, cache.lengths
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    k = _kernels(dtype)
    dy, dh_n = _dev(dy), _dev(dh_n)
    reset_after = cache.reset_after
    hn = cache.hn if reset_after else _dummy(3, dtype)
    dgi = cuda.device_array((T, B, 3 * H), dtype)  # dL/d(pre-activation) per gate
    dgh = cuda.device_array((T, B, 3 * H), dtype)  # the same seen from W_hh (n rows × r if reset_after)
    dh = cuda.device_array((B, H), dtype)  # dL/dh carried backwards: dh_n in, dh0 out
    dh.copy_to_device(dh_n)
    args = (dy, dh, cache.h_prev, cache.gates, hn, w_hh, lengths, dgi, dgh, cache.reverse,
            reset_after)
    plan = _persist_plan(k.persist_bwd, args + (1,), B, H, dtype.itemsize, backward=True)
    if plan is not None:
        units, blocks, smem = plan
        k.persist_bwd[blocks, cfg.PERSIST_THREADS, 0, smem](*args, units)
        last_path["backward"] = f"persistent units={units} blocks={blocks}"
    else:
        last_path["backward"] = "per-step"
        grid, threads = _pointwise_grid(B * H)
        d_rh = None if reset_after else cuda.device_array((B, H), dtype)
        for s in range(T):
            t = s if cache.reverse else T - 1 - s
            k.bwd_point[grid, threads](t, dy, dh, cache.h_prev, cache.gates, hn, lengths, dgi, dgh,
                                       reset_after)
            if reset_after:
                _gemm(k, dgh[t], w_hh, dh, accumulate=True)  # dh += dgh_t W_hh
            else:
                _gemm(k, dgi[t][:, 2 * H:], w_hh[2 * H:], d_rh)  # d(r ⊙ h) = da_n W_hn
                k.bwd_r[grid, threads](t, d_rh, dh, cache.h_prev, cache.gates, lengths, dgi, dgh)
                _gemm(k, dgh[t][:, :2 * H], w_hh[:2 * H], dh, accumulate=True)
    # Reductions over all T·B rows.
    dgi2 = dgi.reshape(T * B, 3 * H)
    dgh2 = dgh.reshape(T * B, 3 * H)
    x2 = x.reshape(T * B, I)
    h2 = cache.h_prev.reshape(T * B, H)
    dx = cuda.device_array((T, B, I), dtype)
    _gemm(k, dgi2, w_ih, dx.reshape(T * B, I))  # dx = dgi W_ih
    dw_ih = cuda.device_array(w_ih.shape, dtype)
    _gemm(k, dgi2, x2, dw_ih, trans_a=True)  # dW_ih = dgiᵀ x
    dw_hh = cuda.device_array(w_hh.shape, dtype)
    if reset_after:
        _gemm(k, dgh2, h2, dw_hh, trans_a=True)  # dW_hh = dghᵀ h
    else:
        _gemm(k, dgh2[:, :2 * H], h2, dw_hh[:2 * H], trans_a=True)
        hid = cuda.device_array((T, B, H), dtype)  # r ⊙ h: what W_hn multiplies
        grid, threads = _pointwise_grid(T * B * H)
        k.reset_times_h[grid, threads](cache.gates, cache.h_prev, hid)
        _gemm(k, dgh2[:, 2 * H:], hid.reshape(T * B, H), dw_hh[2 * H:], trans_a=True)
    db_ih = cuda.device_array(3 * H, dtype)
    db_hh = cuda.device_array(3 * H, dtype)
    _colsum(k, dgi2, db_ih)
    _colsum(k, dgh2, db_hh)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# Array operations on device arrays, for layers.py (backend.HostArrays is the host counterpart).
# Elementwise kernels: dtype-generic, compiled per signature on first use; 1-D or 2-D views of
# contiguous arrays.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _fill_kernel(a, value):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = value


@cuda.jit
def _add_into_kernel(dst, src):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] += src[i]


@cuda.jit
def _mul_kernel(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i]


@cuda.jit
def _cast_kernel(src, dst):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i]


@cuda.jit
def _count_nonfinite_kernel(a, count):
    """count[0] += how many entries of a (1-D) are NaN or ±Inf."""
    i = cuda.grid(1)
    if i < a.shape[0] and (math.isnan(a[i]) or math.isinf(a[i])):
        cuda.atomic.add(count, 0, 1)


@cuda.jit
def _copy_cols_kernel(src, dst, start):
    """dst[r, start + f] = src[r, f]; src (R, F), dst (R, F') with F' ≥ start + F."""
    i = cuda.grid(1)
    F = src.shape[1]
    if i < src.shape[0] * F:
        r = i // F
        f = i - r * F
        dst[r, start + f] = src[r, f]


@cuda.jit
def _take_cols_kernel(src, dst, start):
    """dst[r, f] = src[r, start + f]; dst (R, F)."""
    i = cuda.grid(1)
    F = dst.shape[1]
    if i < dst.shape[0] * F:
        r = i // F
        f = i - r * F
        dst[r, f] = src[r, start + f]


@cuda.jit
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


def _launch_1d(kernel, n, *args):
    if n:
        grid, threads = _pointwise_grid(n)
        kernel[grid, threads](*args)


def _flat(a):
    return a.reshape(a.size)


class DeviceArrays:
    """The array operations layers.py needs (see backend.HostArrays), on device arrays."""

    on_device = True

    def accept_device(self, name, value, dtype):
        """A caller's device array as a C-contiguous device array of dtype, NaN and Inf refused."""
        a = _dev(value)
        dtype = np.dtype(dtype)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a real numeric device array, got dtype {a.dtype}")
        if not a.is_c_contiguous():
            raise ValueError(f"{name}: expected a C-contiguous device array, got shape {a.shape} "
                             f"with strides {a.strides}")
        if a.dtype != dtype:
            out = cuda.device_array(a.shape, dtype)
            _launch_1d(_cast_kernel, a.size, _flat(a), _flat(out))
            a = out
        count = cuda.to_device(np.zeros(1, np.int64))
        _launch_1d(_count_nonfinite_kernel, a.size, _flat(a), count)
        bad = int(count.copy_to_host()[0])
        if bad:
            raise ValueError(f"{name}: contains NaN or Inf ({bad} of {a.size} entries)")
        return a

    def to_device(self, a):
        return _dev(a)

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
        _launch_1d(_fill_kernel, a.size, _flat(a), 0)

    def add_into(self, dst, src):
        _launch_1d(_add_into_kernel, dst.size, _flat(dst), _flat(_dev(src)))

    def mul(self, a, b):
        out = cuda.device_array(a.shape, a.dtype)
        _launch_1d(_mul_kernel, a.size, _flat(a), _flat(_dev(b)), _flat(out))
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
            _launch_1d(_copy_cols_kernel, rows * F, a.reshape(rows, F), out2, start)
            start += F
        return out

    def take_last(self, a, start, stop):
        shape = tuple(a.shape)
        if start == 0 and stop == shape[-1]:
            return a
        lead = shape[:-1]
        rows = int(np.prod(lead))
        out = cuda.device_array(lead + (stop - start,), a.dtype)
        _launch_1d(_take_cols_kernel, rows * (stop - start), a.reshape(rows, shape[-1]),
                   out.reshape(rows, stop - start), start)
        return out

    def swap01(self, a):
        shape = tuple(a.shape)
        out = cuda.device_array((shape[1], shape[0]) + shape[2:], a.dtype)
        _launch_1d(_swap01_kernel, a.size, a, out)
        return out


def _kernel_signatures(dtype):
    """(name, Python function, argument types) of every kernel, for numba.cuda.compile_ptx.

    For ahead-of-time checks (NVVM, no GPU). The two persistent kernels come first: their PTX calls
    the device runtime's grid sync (cudaCGSynchronize), which is linked only at load time.
    """
    from numba import types
    k = _kernels(dtype)
    f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    a1, a2, a3 = (types.Array(f, n, "C") for n in (1, 2, 3))
    view2 = types.Array(f, 2, "A")  # column slices such as dgh[:, :2H]
    i64, flag = types.int64, types.boolean
    lengths = types.Array(types.int64, 1, "C")
    sigs = [
        ("persist_fwd", k.persist_fwd.py_func,
         (a3, a3, a2, a2, a2, a1, lengths, a3, a3, a3, a3, flag, flag, flag, i64)),
        ("persist_bwd", k.persist_bwd.py_func,
         (a3, a2, a3, a3, a3, a2, lengths, a3, a3, flag, flag, i64)),
    ]
    sigs += [(f"gemm_trans{int(ta)}{int(tb)}", kern.py_func, (view2, view2, view2, a1, flag, flag))
            for (ta, tb), kern in k.gemm.items()]
    sigs += [(f"step_mode{mode}_tile{ty}", kern.py_func,
              (i64, a3, a2, a2, a2, a2, a2, a2, a1, lengths, a3, a3, a3, a3, flag))
             for (mode, ty), kern in k.step.items()]
    sigs += [
        ("bwd_point", k.bwd_point.py_func, (i64, a3, a2, a3, a3, a3, lengths, a3, a3, flag)),
        ("bwd_r", k.bwd_r.py_func, (i64, a2, a2, a3, a3, lengths, a3, a3)),
        ("colsum", k.colsum.py_func, (view2, a1)),
        ("reset_times_h", k.reset_times_h.py_func, (a3, a3, a3)),
        ("fill", _fill_kernel.py_func, (a1, f)),
        ("add_into", _add_into_kernel.py_func, (a1, a1)),
        ("mul", _mul_kernel.py_func, (a1, a1, a1)),
        ("cast", _cast_kernel.py_func, (types.Array(types.float64, 1, "C"), a1)),
        ("count_nonfinite", _count_nonfinite_kernel.py_func, (a1, lengths)),
        ("copy_cols", _copy_cols_kernel.py_func, (a2, a2, i64)),
        ("take_cols", _take_cols_kernel.py_func, (a2, a2, i64)),
        ("swap01", _swap01_kernel.py_func, (a3, a3)),
    ]
    return sigs


def step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True):
    """One GRU step, h1 (B,H) = GRU(x (B,I), h (B,H)), as a device array: the forward over T = 1.

    Unlike the host backends it does not scan its inputs for NaN/Inf (that would cost a copy to
    the host per step); layers.py checks device inputs when they arrive."""
    B = x.shape[0]
    lengths = cuda.to_device(np.ones(B, np.int64))
    return forward(x.reshape(1, B, x.shape[1]), h, w_ih, w_hh, b_ih, b_hh, lengths,
                   reverse=False, reset_after=reset_after)[1]
