"""The persistent path of the CUDA recurrence: one cooperative launch runs every step of a pass,
each block keeping its slice of W_hh in shared memory for all of them; and the plan that decides
whether a size takes it (`plan`). Sizes it does not take run per step (step.py). The input
projection and the weight gradients are the caller's (__init__.py).

Forward: block i owns hidden units [i·units, (i+1)·units) and holds their rows of W_hh; per step
it computes their W_h· h (THREADS threads, KSPLIT of them per dot product) and their gate math,
and the grid synchronises once (twice for reset_after=False, whose n gate needs the whole r ⊙ h).
Backward: block i holds the columns of W_hh of its units; per step it computes their gate
gradients, then their entries of dgh_t W_hh into dh (reset_after=False: d(r ⊙ h) = da_n W_hn and
r's gradient first).
"""

import functools
from typing import NamedTuple

from numba import cuda

from . import config as cfg
from .gates import build as gate_functions
from .kernel import FLAG, INDEX, LENGTHS, SIMULATOR, Kernel, array, build_inputs, cdiv, odd


class Persistent(NamedTuple):
    """The persistent kernels of one dtype and set of tunables."""

    forward: Kernel
    backward: Kernel


class _Shape(NamedTuple):
    """What the persistent kernels are compiled for: constants of their code and shared arrays."""

    f: object  # the numba float type
    zero: object  # the dtype's 0
    threads: int  # PERSIST_THREADS per block
    ksplit: int  # PERSIST_KSPLIT threads per dot product (a power of two)
    slots: int  # threads // ksplit: outputs (row, unit) a block reduces at once


# The tunables (config.py) the kernels below are compiled with; the others are read at launch.
COMPILED = ('PERSIST_THREADS', 'PERSIST_KSPLIT')


@functools.lru_cache(maxsize=None)
def build(dtype_name, config_key):
    """The persistent kernels for arrays of dtype_name under the tunables config_key."""
    config, f, ZERO, FM = build_inputs(dtype_name, config_key)
    THREADS, KSPLIT = config["PERSIST_THREADS"], config["PERSIST_KSPLIT"]
    if KSPLIT & (KSPLIT - 1) or THREADS % KSPLIT:
        raise ValueError(f"PERSIST_KSPLIT: expected a power of two dividing PERSIST_THREADS "
                         f"({THREADS}), got {KSPLIT}")
    shape = _Shape(f, ZERO, THREADS, KSPLIT, THREADS // KSPLIT)
    g = gate_functions(dtype_name, FM)
    block_sum = _block_sum(shape)
    return Persistent(_forward_kernel(shape, block_sum, g, FM),
                      _backward_kernel(shape, block_sum, g, FM))


def _block_sum(shape):
    """The block's tree reduction of per-thread partial sums, as a device function."""
    KSPLIT = shape.ksplit

    @cuda.jit(device=True)
    def block_sum(partial, tid, lane):
        """Tree sum of partial[:, tid - lane : tid - lane + KSPLIT] into partial[:, tid - lane]
        (every thread calls; lane = tid % KSPLIT)."""
        stride = KSPLIT // 2
        while stride > 0:
            if lane < stride:
                partial[0, tid] += partial[0, tid + stride]
                partial[1, tid] += partial[1, tid + stride]
                partial[2, tid] += partial[2, tid + stride]
            cuda.syncthreads()
            stride //= 2

    return block_sum


def _forward_kernel(shape, block_sum, g, fastmath):
    """The persistent forward Kernel for a _Shape, with the gate functions g (gates.py)."""
    f, ZERO, THREADS, KSPLIT, SLOTS = shape
    forward_full, forward_rz, forward_n = g.forward_full, g.forward_rz, g.forward_n

    @cuda.jit(device=True)
    def _load_rows(w_s, w_hh, first_gate, ngates, unit_slice, units, H, row_stride, tid):
        """Rows of W_hh for units unit_slice·units .. of gates first_gate .. into
        w_s[(g·units + j_local)·row_stride + k]."""
        per_gate = units * H
        for idx in range(tid, ngates * per_gate, THREADS):
            gate = idx // per_gate
            rem = idx - gate * per_gate
            j_local = rem // H
            k = rem - j_local * H
            j = unit_slice * units + j_local
            w_s[(gate * units + j_local) * row_stride + k] = \
                w_hh[(first_gate + gate) * H + j, k] if j < H else ZERO

    def forward_kernel(gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, reverse,
                       reset_after, train, units):
        """All T steps in one cooperative launch. hbuf (2, B, H): h ping-pongs between its halves.

        Block i owns units [i·units, (i+1)·units) (slices beyond the grid are taken in turn, with
        their weights reloaded each step: only where the grid is smaller than planned). Dynamic
        shared memory: 3·units·odd(H) elements. rh (B, H), rz (B, 2H): reset_after=False scratch.
        """
        T = gi.shape[0]
        B = hbuf.shape[1]
        H = hbuf.shape[2]
        w_s = cuda.shared.array(0, f)
        partial = cuda.shared.array((3, THREADS), f)  # per thread: partial dots of 3 gate rows
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        lane = tid % KSPLIT
        slot = tid // KSPLIT
        row_stride = H if H % 2 else H + 1
        nslices = (H + units - 1) // units
        resident = nslices <= cuda.gridDim.x
        nout = B * units
        if resident and cuda.blockIdx.x < nslices:
            _load_rows(w_s, w_hh, 0, 3, cuda.blockIdx.x, units, H, row_stride, tid)
            cuda.syncthreads()
        for s in range(T):
            t = T - 1 - s if reverse else s
            h_in = hbuf[s % 2]
            h_out = hbuf[(s + 1) % 2]
            # Phase A: r, z (and n when reset_after) from W_h* h. Phase B (reset_after=False only):
            # n from W_hn (r ⊙ h), which needs every unit's r first, so a grid sync sits between.
            for phase in range(1 if reset_after else 2):
                gate0 = 0 if phase == 0 else 2  # first gate block of the rows multiplied
                ngates = (3 if reset_after else 2) if phase == 0 else 1
                vec = h_in if phase == 0 else rh
                for unit_slice in range(cuda.blockIdx.x, nslices, cuda.gridDim.x):
                    if not resident:
                        cuda.syncthreads()
                        _load_rows(w_s, w_hh, 0, 3, unit_slice, units, H, row_stride, tid)
                        cuda.syncthreads()
                    for out0 in range(0, nout, SLOTS):
                        out = out0 + slot
                        b = out // units
                        j_local = out - b * units
                        j = unit_slice * units + j_local
                        active = out < nout and j < H
                        p0 = ZERO
                        p1 = ZERO
                        p2 = ZERO
                        if active:
                            for k in range(lane, H, KSPLIT):
                                v = vec[b, k]
                                p0 += w_s[(gate0 * units + j_local) * row_stride + k] * v
                                if ngates > 1:
                                    p1 += w_s[(units + j_local) * row_stride + k] * v
                                if ngates > 2:
                                    p2 += w_s[(2 * units + j_local) * row_stride + k] * v
                        partial[0, tid] = p0
                        partial[1, tid] = p1
                        partial[2, tid] = p2
                        cuda.syncthreads()
                        block_sum(partial, tid, lane)
                        if lane == 0 and active:
                            if reset_after:
                                forward_full(t, b, j, H, partial[0, tid], partial[1, tid],
                                             partial[2, tid], gi, h_in, h_out, b_hh, lengths, y,
                                             h_prev, gates, train)
                            elif phase == 0:
                                forward_rz(t, b, j, H, partial[0, tid], partial[1, tid], gi, h_in,
                                           rh, rz, b_hh, lengths)
                            else:
                                forward_n(t, b, j, H, partial[0, tid], gi, h_in, h_out, rz, b_hh,
                                          lengths, y, h_prev, gates, train)
                        cuda.syncthreads()
                grid.sync()

    a1, a2, a3, a4 = (array(f, n) for n in (1, 2, 3, 4))
    return Kernel("persistent_forward", forward_kernel,
                  (a3, a3, a2, a2, a2, a1, LENGTHS, a3, a3, a4, FLAG, FLAG, FLAG, INDEX), fastmath)


def _backward_kernel(shape, block_sum, g, fastmath):
    """The persistent backward Kernel for a _Shape, with the gate functions g (gates.py)."""
    f, ZERO, THREADS, KSPLIT, SLOTS = shape
    backward_point, backward_reset = g.backward_point, g.backward_reset

    @cuda.jit(device=True)
    def _load_cols(w_s, w_hh, unit_slice, units, H, col_stride, tid):
        """Columns of W_hh for units unit_slice·units ..:
        w_s[k_local·col_stride + g] = W_hh[g, unit_slice·units + k_local]."""
        for idx in range(tid, 3 * H * units, THREADS):
            gate = idx // units
            k_local = idx - gate * units
            k = unit_slice * units + k_local
            w_s[k_local * col_stride + gate] = w_hh[gate, k] if k < H else ZERO

    def backward_kernel(dy, dh, h_prev, gates, w_hh, lengths, dgi, dgh, reverse, reset_after,
                        units):
        """The reverse loop in one cooperative launch. dh (B, H): dL/dh_n in, dL/dh0 out.

        Block i owns units [i·units, (i+1)·units): their gate gradients (pointwise) and their
        entries of dh_{t-1} = dh_new ⊙ z + (dgh_t W_hh)[:, k] (a column block of W_hh, kept in
        dynamic shared memory: units·odd(3H) elements). One grid sync per step (two when
        reset_after=False, for d(r ⊙ h) = da_n W_hn).
        """
        T = dy.shape[0]
        B = dh.shape[0]
        H = dh.shape[1]
        w_s = cuda.shared.array(0, f)
        partial = cuda.shared.array((3, THREADS), f)  # only row 0 is used here
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        lane = tid % KSPLIT
        slot = tid // KSPLIT
        col_stride = 3 * H if (3 * H) % 2 else 3 * H + 1
        nslices = (H + units - 1) // units
        resident = nslices <= cuda.gridDim.x
        nout = B * units
        grows = 3 * H if reset_after else 2 * H  # dgh columns that multiply W_hh in phase C
        if resident and cuda.blockIdx.x < nslices:
            _load_cols(w_s, w_hh, cuda.blockIdx.x, units, H, col_stride, tid)
            cuda.syncthreads()
        for s in range(T):
            t = s if reverse else T - 1 - s  # the opposite order of the forward pass
            # Phase A: pointwise gate gradients of the owned units (dh of owned units only).
            for unit_slice in range(cuda.blockIdx.x, nslices, cuda.gridDim.x):
                for out in range(tid, nout, THREADS):
                    b = out // units
                    j = unit_slice * units + (out - b * units)
                    if j < H:
                        backward_point(t, b, j, H, dy, dh, h_prev, gates, lengths, dgi, dgh,
                                       reset_after)
            grid.sync()
            # Phase B (reset_after=False only): d(r ⊙ h)[b, k] = Σ_j da_n[b, j] W_hn[j, k], then r's
            # gradient. Phase C: dh[b, k] += Σ_g dgh_t[b, g] W_hh[g, k]. Both reduce one row of the
            # step's gate gradients against a column of the owned block of W_hh.
            for phase in range(1 if reset_after else 0, 2):
                voff = 2 * H if phase == 0 else 0  # where the row and the column start
                n = H if phase == 0 else grows
                for unit_slice in range(cuda.blockIdx.x, nslices, cuda.gridDim.x):
                    if not resident:
                        cuda.syncthreads()
                        _load_cols(w_s, w_hh, unit_slice, units, H, col_stride, tid)
                        cuda.syncthreads()
                    for out0 in range(0, nout, SLOTS):
                        out = out0 + slot
                        b = out // units
                        k_local = out - b * units
                        k = unit_slice * units + k_local
                        active = out < nout and k < H
                        p0 = ZERO
                        if active:
                            for gate in range(lane, n, KSPLIT):
                                v = dgi[t, b, voff + gate] if phase == 0 else dgh[t, b, gate]
                                p0 += v * w_s[k_local * col_stride + voff + gate]
                        partial[0, tid] = p0
                        partial[1, tid] = ZERO
                        partial[2, tid] = ZERO
                        cuda.syncthreads()
                        block_sum(partial, tid, lane)
                        if lane == 0 and active:
                            if phase == 0:
                                backward_reset(t, b, k, partial[0, tid], dh, h_prev, gates,
                                               lengths, dgi, dgh)
                            else:
                                dh[b, k] += partial[0, tid]
                        cuda.syncthreads()
                if phase == 0:
                    grid.sync()  # phase C reads the r rows of every unit
            # No grid sync here: the next step's phase A reads only the dh entries this block
            # wrote, and writes dgi/dgh rows of another step than the one phase C read.

    a2, a3, a4 = (array(f, n) for n in (2, 3, 4))
    return Kernel("persistent_backward", backward_kernel,
                  (a3, a2, a3, a4, a2, LENGTHS, a3, a3, FLAG, FLAG, INDEX), fastmath)


# -- the plan: whether a size takes this path, with how many blocks --

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


def _coop_capacity(kernel, threads, smem):
    """How many blocks of this kernel can be co-resident (the cooperative launch's limit)."""
    compiled = kernel.compiled()
    if not _allow_dynamic_smem(compiled, smem):
        return 0
    if SIMULATOR:
        return compiled.max_cooperative_grid_blocks(threads)
    return compiled.max_cooperative_grid_blocks(threads, smem)


def plan(kernel, B, H, itemsize, backward):
    """(units per block, blocks, dynamic shared bytes) for the persistent kernel, or None.

    None where the batch is above PERSIST_MAX_BATCH, or W_hh does not fit in the shared memory of
    the blocks that can be co-resident: the per-step path then runs.
    """
    if not cfg.PERSIST_ENABLE or B > cfg.PERSIST_MAX_BATCH:
        return None
    threads = cfg.PERSIST_THREADS
    limit, n_sm = _smem_limit()
    limit -= 3 * threads * itemsize  # the static reduction buffer
    row = odd(3 * H) if backward else 3 * odd(H)  # elements per unit held on chip

    def smem(units):
        return units * row * itemsize

    units = cfg.PERSIST_UNITS_PER_BLOCK or cdiv(H, n_sm)
    if cfg.PERSIST_UNITS_PER_BLOCK:
        cap = _coop_capacity(kernel, threads, smem(units))
        return (units, min(cdiv(H, units), max(cap, 1)), smem(units)) if cap >= 1 else None
    while smem(units) <= limit:
        blocks = cdiv(H, units)
        cap = _coop_capacity(kernel, threads, smem(units))
        if cap >= blocks:
            return units, blocks, smem(units)
        if cap == 0:
            return None
        units = max(units + 1, cdiv(H, cap))
    return None


def forward(pk, gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, reverse, reset_after,
            train):
    """All T steps in one launch of pk.forward (pk a Persistent) where the plan allows; returns
    the path taken ("persistent units=U blocks=N") or None (nothing ran: run step.forward).

    gi (T, B, 3H) = x W_ihᵀ + b_ih; hbuf (2, B, H) with h0 in hbuf[0], h_n in hbuf[T % 2] after;
    rh (B, H) and rz (B, 2H) reset_after=False scratch (else placeholders); y (T, B, H) written;
    with train, the cache's h_prev (T, B, H) and gates (4, T, B, H) written (else placeholders).
    reverse, reset_after and train are Python bools."""
    B, H = hbuf.shape[1], hbuf.shape[2]
    chosen = plan(pk.forward, B, H, gi.dtype.itemsize, backward=False)
    if chosen is None:
        return None
    units, blocks, smem = chosen
    pk.forward[blocks, cfg.PERSIST_THREADS, 0, smem](
        gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, reverse, reset_after, train, units)
    return f"persistent units={units} blocks={blocks}"


def backward(pk, dy, dh, h_prev, gates, w_hh, lengths, dgi, dgh, reverse, reset_after):
    """The reverse loop in one launch of pk.backward where the plan allows; returns the path
    taken or None (nothing ran: run step.backward). Arguments as step.backward's."""
    B, H = dh.shape
    chosen = plan(pk.backward, B, H, dy.dtype.itemsize, backward=True)
    if chosen is None:
        return None
    units, blocks, smem = chosen
    pk.backward[blocks, cfg.PERSIST_THREADS, 0, smem](
        dy, dh, h_prev, gates, w_hh, lengths, dgi, dgh, reverse, reset_after, units)
    return f"persistent units={units} blocks={blocks}"
