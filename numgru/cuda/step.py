"""The per-step path of the CUDA recurrence, for sizes the persistent kernel cannot hold (or a
batch above PERSIST_MAX_BATCH): forward, one fused kernel per step (two for reset_after=False) that
computes a tile of W_hh v and the gate math after it; backward, per step one pointwise kernel
(pointwise.py) and GEMMs for dh (gemm.py). The input projection and the weight gradients are the
caller's (__init__.py); the path choice is persistent.py's.
"""

import functools
from typing import NamedTuple

from numba import cuda

from .gates import build as gate_functions
from .gemm import gemm
from .kernel import FLAG, INDEX, LENGTHS, Kernel, array, build_inputs, cdiv, pointwise_grid

# The step kernel's variants: which rows of W_hh a tile multiplies, and by what.
VARIANTS = {
    "full": (0, 3),  # reset_after=True: r, z and n rows times h, then the whole gate math
    "rz": (0, 2),  # reset_after=False, first half: r and z rows times h; r, z and r ⊙ h
    "n": (2, 1),  # reset_after=False, second half: n rows times r ⊙ h; n and h'
}  # variant -> (first gate block of W_hh, gate blocks)


class StepKernels(NamedTuple):
    """The per-step forward kernels of one dtype and set of tunables."""

    kernels: dict  # (variant, tile_batch) -> Kernel
    tile_units: int  # STEP_TILE_UNITS: units (threads along x) per block
    tile_batches: tuple  # the batch sides a block may take: 1, 2, 4, ... STEP_TILE_BATCH


# The tunables (config.py) the kernels below are compiled with; the others are read at launch.
COMPILED = ('STEP_TILE_UNITS', 'STEP_TILE_BATCH')


@functools.lru_cache(maxsize=None)
def build(dtype_name, config_key):
    """The per-step kernels for arrays of dtype_name under the tunables config_key."""
    config, f, ZERO, FM = build_inputs(dtype_name, config_key)
    TX = config["STEP_TILE_UNITS"]
    TXP = TX + 1  # padded row: column reads of w_s spread over the banks
    g = gate_functions(dtype_name, FM)
    forward_full, forward_rz, forward_n = g.forward_full, g.forward_rz, g.forward_n

    def make_kernel(variant, TY):
        G0, NG = VARIANTS[variant]
        FULL, RZ = variant == "full", variant == "rz"  # Python bools: constants in the kernel

        def step_kernel(t, gi, h_in, v_in, h_out, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates,
                        train):
            """One step for a (TY sequences) x (TX units) tile: the NG gate blocks of W_hh from
            G0 times v_in (h, or r ⊙ h for variant "n"), then the gate math. h_in, v_in, h_out,
            rh (B, H); rz (B, 2H); gi (T, B, 3H); y, h_prev (T, B, H); gates (4, T, B, H).

            Block (TX, TY); grid (⌈H/TX⌉, ⌈B/TY⌉). Thread (tx, ty) owns unit j, sequence b.
            """
            B = h_in.shape[0]
            H = h_in.shape[1]
            v_s = cuda.shared.array((TY, TX), f)  # v[b0:b0+TY, k0:k0+TX]
            w_s = cuda.shared.array((NG, TX, TXP), f)
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
                for gate in range(NG):
                    for jj in range(ty, TX, TY):
                        row = j0 + jj
                        w_s[gate, jj, tx] = w_hh[(G0 + gate) * H + row, k] \
                            if (row < H and k < H) else ZERO
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
                if FULL:
                    forward_full(t, b, j, H, acc0, acc1, acc2, gi, h_in, h_out, b_hh, lengths, y,
                                 h_prev, gates, train)
                elif RZ:
                    forward_rz(t, b, j, H, acc0, acc1, gi, h_in, rh, rz, b_hh, lengths)
                else:
                    forward_n(t, b, j, H, acc0, gi, h_in, h_out, rz, b_hh, lengths, y, h_prev,
                              gates, train)

        a1, a2, a3, a4 = (array(f, n) for n in (1, 2, 3, 4))
        return Kernel(f"step_{variant}_tile{TY}", step_kernel,
                      (INDEX, a3, a2, a2, a2, a2, a2, a2, a1, LENGTHS, a3, a3, a4, FLAG), FM)

    tiles = []
    ty = 1
    while ty < config["STEP_TILE_BATCH"]:
        tiles.append(ty)
        ty *= 2
    tiles.append(config["STEP_TILE_BATCH"])
    kernels = {(variant, ty): make_kernel(variant, ty) for variant in VARIANTS for ty in tiles}
    return StepKernels(kernels, TX, tuple(tiles))


def forward(sk, gi, hbuf, rh, rz, w_hh, b_hh, lengths, y, h_prev, gates, reverse, reset_after,
            train):
    """All T steps of the recurrence, one launch per step (two for reset_after=False), with the
    kernels sk (StepKernels); arguments as persistent.forward's. Step s reads hbuf[s % 2] and
    writes the other half."""
    T, B, H = y.shape
    tx = sk.tile_units
    ty = next(t for t in sk.tile_batches if t >= min(B, sk.tile_batches[-1]))
    grid = (cdiv(H, tx), cdiv(B, ty))
    for s in range(T):
        t = T - 1 - s if reverse else s
        h_in, h_out = hbuf[s % 2], hbuf[(s + 1) % 2]
        if reset_after:
            sk.kernels["full", ty][grid, (tx, ty)](t, gi, h_in, h_in, h_out, rh, rz, w_hh, b_hh,
                                                   lengths, y, h_prev, gates, train)
        else:
            sk.kernels["rz", ty][grid, (tx, ty)](t, gi, h_in, h_in, h_out, rh, rz, w_hh, b_hh,
                                                 lengths, y, h_prev, gates, train)
            sk.kernels["n", ty][grid, (tx, ty)](t, gi, h_in, rh, h_out, rh, rz, w_hh, b_hh,
                                                lengths, y, h_prev, gates, train)


def backward(pw, g, dy, dh, h_prev, gates, w_hh, lengths, dgi, dgh, reverse, reset_after):
    """The reverse loop, per step the pointwise kernel pw.point (a Pointwise) and the products
    with W_hh as GEMMs (g, a Gemm): dh (B, H) += dgh_t W_hh, so dh goes from dL/dh_n to dL/dh0;
    dgi and dgh (T, B, 3H) are written. reset_after=False first needs d(r ⊙ h) = da_n W_hn over
    every unit, then r's gradient (pw.reset), then the r and z rows' product."""
    T, B, H = dy.shape
    grid, threads = pointwise_grid(B * H)
    d_rh = None if reset_after else cuda.device_array((B, H), dy.dtype)
    for s in range(T):
        t = s if reverse else T - 1 - s  # the opposite order of the forward pass
        pw.point[grid, threads](t, dy, dh, h_prev, gates, lengths, dgi, dgh, reset_after)
        if reset_after:
            gemm(g, dgh[t], w_hh, dh, accumulate=True)  # dh += dgh_t W_hh
        else:
            gemm(g, dgi[t][:, 2 * H:], w_hh[2 * H:], d_rh)  # d(r ⊙ h) = da_n W_hn
            pw.reset[grid, threads](t, d_rh, dh, h_prev, gates, lengths, dgi, dgh)
            gemm(g, dgh[t][:, :2 * H], w_hh[:2 * H], dh, accumulate=True)
