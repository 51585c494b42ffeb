"""Register-tiled matrix products for the CPU layer passes, on weights packed once per call, and
a row-dot product on weights as stored, for single steps.

The per-step product of a GRU, h (B, H) times W_hh^T (H, 3H), is small (B rows) and repeated T
times on the same weights. A general BLAS call packs both operands on every call and, with
several threads, splits one small product between them. Here each part of a pass (cpu.py)
packs its own weight panels once and multiplies them with a register tile written directly in
LLVM vector IR: R rows of A × NV vectors of one panel row, R·NV accumulators kept in registers
across the k loop, one multiply-add per vector and k.

The vector width, the tile height R and the multiply-add come from the code path of the target
Numba compiles for (`_target.PATH`): 64-byte vectors and R = 8 on AVX-512 (24 accumulators of
its 32 registers), 32-byte vectors and R = 4 on AVX2 with FMA (12 of 16), 16-byte vectors on the
portable path (R = 4 with 16 registers, 8 with 32, as on aarch64), where `llvm.fmuladd` lets
LLVM fuse the multiply-add only where the target has the instruction. Remainder rows take tiles
of R/2, R/4, ..., 1. A product of one or two rows (a batch-1 or batch-2 step) takes up to four
panels side by side instead, so that its few accumulator chains do not each wait on the
multiply-add's latency at every k.

Summation order: every entry is one chain of multiply-adds over k = 0..K-1, whichever tile
shape, k block, thread or partition computes it, so results do not depend on the number of
threads (they do depend on the path: a fused and an unfused chain round differently).

Panel layouts. Gate panels (`pack_gates`, the forward's W_ih and W_hh): wp[u, k, g·VL + i] =
W[g·H + u·VL + i, k] for gate g in (r, z, n) and unit u·VL + i < H (0 past H), VL = vector bytes
/ itemsize: unit block u's three gates side by side, one 3·VL row per k. Column panels
(`pack_columns`, the backward's W_hh and W_ih): panel q holds columns q·width .. of a (K, N)
matrix, one row per k. The numpy packers here define the layouts (the tests check the compiled
packers of cpu.py against them).

`row_dots` is the product of a single step (GRUCell, B of a few rows): out[b, j] = Σ_k w[j, k]
x[b, k] on W as stored (rows of W contiguous in k), so that a step reads each weight once and
packs nothing: vector partial sums over k, then a fixed pairwise reduction of the lanes and the
scalar tail, the same order for every call.
"""

import threading

import numba
import numpy as np
from llvmlite import ir
from numba import cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import CACHE
from .target import PATH

_VECTOR_BYTES = PATH.vector_bytes
_ROWS = PATH.rows  # rows of the largest register tile


def vector_length(dtype):
    """Elements per panel vector (AVX-512: 16 for float32, 8 for float64; AVX2: 8 and 4; the
    portable path: 4 and 2)."""
    return _VECTOR_BYTES // np.dtype(dtype).itemsize


def pack_gates(w):
    """W_hh (3H, H) or W_ih (3H, I), (3H, K) in general -> gate panels wp (NB, K, 3·VL),
    NB = ceil(H / VL); see the module docstring."""
    H = w.shape[0] // 3
    K = w.shape[1]
    VL = vector_length(w.dtype)
    NB = -(-H // VL)
    p = np.zeros((NB, K, 3, VL), w.dtype)
    wv = w.reshape(3, H, K)
    for u in range(NB):
        n = min(VL, H - u * VL)
        # p[u, k, g, i] = w[g·H + u·VL + i, k]
        p[u, :, :, :n] = wv[:, u * VL:u * VL + n, :].transpose(2, 0, 1)
    return p.reshape(NB, K, 3 * VL)


def pack_columns(m, width):
    """m (K, N) -> panels (ceil(N / width), K, width), zero past N: panel q holds columns
    q·width .. q·width + width - 1, one contiguous row per k."""
    K, N = m.shape
    NQ = -(-N // width)
    p = np.zeros((NQ, K, width), m.dtype)
    for q in range(NQ):
        n = min(width, N - q * width)
        p[q, :, :n] = m[:, q * width:q * width + n]
    return p


def _multiply_add(builder, vty, VL, bits):
    """The path's vector multiply-add: llvm.fma (one rounding) where the target has it, else
    llvm.fmuladd (LLVM fuses it only where that is an instruction)."""
    name = "llvm.fma" if PATH.fused else "llvm.fmuladd"
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty, vty, vty]),
        "%s.v%d%s" % (name, VL, "f32" if bits == 32 else "f64"))


def _emit_tile(context, builder, R, NV, VL, fty, A, a_off, lda, ka, B, bp_off, ldb, K, C, c_off,
               ldc, vstride, acc, NP=1, bp_step=None, c_step=None):
    """LLVM IR for one R × (NP·NV·VL) tile, NP panels side by side:
    c[c_off + r·ldc + p·c_step + v·vstride + i] =
        Σ_k a[a_off + r·lda + k·ka] · bp[bp_off + p·bp_step + k·ldb + v·VL + i]
    for r < R, p < NP, v < NV, i < VL, k < K; c is overwritten, or with acc added to (the chain
    of fused multiply-adds starts from c's values). A, B, C are data pointers; offsets and strides
    are int64 values, in elements. Several panels serve a single row (R = 1): its NV chains
    alone would wait on the multiply-add's latency at every k."""
    bits = 32 if fty == ir.FloatType() else 64
    align = bits // 8
    vty = ir.VectorType(fty, VL)
    i32 = ir.IntType(32)
    i64 = ir.IntType(64)
    fma = _multiply_add(builder, vty, VL, bits)
    zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * VL)
    undef = ir.Constant(vty, ir.Undefined)
    splat0 = ir.Constant(ir.VectorType(i32, VL), [0] * VL)
    # Accumulators as stack slots (LLVM's mem2reg turns them into registers): 0, or with acc
    # the tile's current values in c, so that a product split along k continues one chain of
    # fused multiply-adds (the same result as the unsplit product).
    W = NP * NV  # vectors per row of the tile
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(W)] for _ in range(R)]

    def panel_off(base, step, p):
        return base if p == 0 else builder.add(base, builder.mul(ir.Constant(i64, p), step))

    def c_ptr(r, w):
        p, v = divmod(w, NV)
        row = builder.add(panel_off(c_off, c_step, p), builder.mul(ir.Constant(i64, r), ldc))
        off = builder.add(row, builder.mul(ir.Constant(i64, v), vstride))
        return builder.bitcast(builder.gep(C, [off]), vty.as_pointer())

    with builder.if_then(acc):
        for r in range(R):
            for w in range(W):
                builder.store(builder.load(c_ptr(r, w), align=align), accs[r][w])
    a_rows = [builder.add(a_off, builder.mul(ir.Constant(i64, r), lda)) for r in range(R)]
    b_panels = [panel_off(bp_off, bp_step, p) for p in range(NP)]
    with cgutils.for_range(builder, K) as loop:
        k = loop.index
        kb = builder.mul(k, ldb)
        a_k = builder.mul(k, ka)
        bvecs = []
        for p in range(NP):
            brow = builder.add(b_panels[p], kb)
            for v in range(NV):
                ptr = builder.gep(B, [builder.add(brow, ir.Constant(i64, v * VL))])
                bvecs.append(builder.load(builder.bitcast(ptr, vty.as_pointer()), align=align))
        for r in range(R):
            s = builder.load(builder.gep(A, [builder.add(a_rows[r], a_k)]))
            sv = builder.shuffle_vector(
                builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat0)
            for w in range(W):
                builder.store(builder.call(fma, [sv, bvecs[w], builder.load(accs[r][w])]),
                              accs[r][w])
    for r in range(R):
        for w in range(W):
            builder.store(builder.load(accs[r][w]), c_ptr(r, w), align=align)


def _data(context, builder, ty, value):
    """The data pointer of an array, or the pointer itself."""
    if isinstance(ty, types.CPointer):
        return value
    return context.make_array(ty)(context, builder, value).data


def _make_rows(NV):
    """An intrinsic computing rows 0..M-1 of one k block of a panel product with NV panel
    vectors (see `panel_product`): tiles of _ROWS rows, then one each of _ROWS/2, ..., 1 as the
    remainder needs."""

    @intrinsic
    def rows(typingctx, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc):
        if not all(isinstance(arr, (types.Array, types.CPointer)) for arr in (a, bp, c)):
            return None
        if a.dtype not in (types.float32, types.float64) or bp.dtype != a.dtype or \
                c.dtype != a.dtype:
            return None
        intp = types.intp
        sig = types.void(a, intp, intp, intp, intp, bp, intp, intp, intp, c, intp, intp, intp,
                         acc)

        def codegen(context, builder, signature, args):
            a_v, a_off, lda, ka, M, bp_v, bp_off, ldb, K, c_v, c_off, ldc, vstride, acc = args
            tys = signature.args
            fty = context.get_value_type(tys[0].dtype)
            VL = _VECTOR_BYTES * 8 // tys[0].dtype.bitwidth
            A = _data(context, builder, tys[0], a_v)
            B = _data(context, builder, tys[5], bp_v)
            C = _data(context, builder, tys[9], c_v)
            acc = context.cast(builder, acc, tys[13], types.boolean)
            i64 = ir.IntType(64)

            def tile(R, m):
                _emit_tile(context, builder, R, NV, VL, fty, A,
                           builder.add(a_off, builder.mul(m, lda)), lda, ka, B, bp_off, ldb, K,
                           C, builder.add(c_off, builder.mul(m, ldc)), ldc, vstride, acc)

            full = builder.sdiv(M, ir.Constant(i64, _ROWS))
            with cgutils.for_range(builder, full) as loop:
                tile(_ROWS, builder.mul(loop.index, ir.Constant(i64, _ROWS)))
            m = builder.mul(full, ir.Constant(i64, _ROWS))
            rest = builder.sub(M, m)
            R = _ROWS // 2
            while R >= 1:
                part = builder.and_(rest, ir.Constant(i64, R))
                with builder.if_then(builder.icmp_signed("!=", part, ir.Constant(i64, 0))):
                    tile(R, m)
                m = builder.add(m, part)
                R //= 2
            return context.get_dummy_value()

        return sig, codegen

    return rows


_rows1, _rows2, _rows3 = (_make_rows(nv) for nv in (1, 2, 3))


def _row_panel_count(NV, R):
    """Panels a tile of R = 1 or 2 rows takes side by side: enough independent chains to cover
    the multiply-add's latency (4 or more cycles, 2 issued per cycle), at most half the vector
    registers as accumulators."""
    return max(1, min(4, (PATH.registers // 2) // (NV * R)))


def _make_row_panels(NV, R):
    """An intrinsic computing R (1 or 2) rows of _row_panel_count(NV, R) panel products at once:
    rows a_off + r·lda of a (k at ka apart) times the panels at bp_off + p·bp_step into c at
    c_off + r·ldc + p·c_step (see _emit_tile), every entry still one chain over k."""
    NP = _row_panel_count(NV, R)

    @intrinsic
    def row_panels(typingctx, a, a_off, lda, ka, bp, bp_off, bp_step, ldb, K, c, c_off, c_step,
                   ldc, vstride, acc):
        if not all(isinstance(arr, (types.Array, types.CPointer)) for arr in (a, bp, c)):
            return None
        if a.dtype not in (types.float32, types.float64) or bp.dtype != a.dtype or \
                c.dtype != a.dtype:
            return None
        intp = types.intp
        sig = types.void(a, intp, intp, intp, bp, intp, intp, intp, intp, c, intp, intp, intp,
                         intp, acc)

        def codegen(context, builder, signature, args):
            (a_v, a_off, lda, ka, bp_v, bp_off, bp_step, ldb, K, c_v, c_off, c_step, ldc,
             vstride, acc) = args
            tys = signature.args
            fty = context.get_value_type(tys[0].dtype)
            VL = _VECTOR_BYTES * 8 // tys[0].dtype.bitwidth
            _emit_tile(context, builder, R, NV, VL, fty, _data(context, builder, tys[0], a_v),
                       a_off, lda, ka, _data(context, builder, tys[4], bp_v), bp_off, ldb, K,
                       _data(context, builder, tys[9], c_v), c_off, ldc, vstride,
                       context.cast(builder, acc, tys[14], types.boolean),
                       NP=NP, bp_step=bp_step, c_step=c_step)
            return context.get_dummy_value()

        return sig, codegen

    return row_panels, NP


(_one_row1, _NP1), (_one_row2, _NP2), (_one_row3, _NP3) = (
    _make_row_panels(nv, 1) for nv in (1, 2, 3))
(_two_rows1, _NP1_2), (_two_rows2, _NP2_2), (_two_rows3, _NP3_2) = (
    _make_row_panels(nv, 2) for nv in (1, 2, 3))


K_BLOCK = 128  # rows of a panel kept in L1 (128 · 64 bytes · nv) across a product's row tiles


# The panel routines, one per number of panel vectors: plain functions compiled on demand as C
# callbacks (`tile_functions`) and called from the kernels through their addresses (`tile`),
# so that a kernel neither recompiles nor re-optimises the tile shapes it calls: linked into
# every kernel (as Numba links the functions a kernel calls), they were a third of a kernel's
# compile time. A kernel compiles only the widths it calls (inference: 3). The three are the
# same loop over a different tile intrinsic (Numba's cache keys a function by its name and
# line, so they are written out rather than made by a factory).

def _panels3(a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step, ldc, vstride,
             n_panels, acc):
    first = 0  # one or two rows take several panels at once (their rows stay in L1 anyway)
    if M == 1:
        while first + _NP3 <= n_panels:
            _one_row3(a, a_off, lda, ka, bp, bp_off + first * bp_step, bp_step, ldb, K, c,
                        c_off + first * c_step, c_step, ldc, vstride, acc)
            first += _NP3
    elif M == 2 and _NP3_2 > 1:
        while first + _NP3_2 <= n_panels:
            _two_rows3(a, a_off, lda, ka, bp, bp_off + first * bp_step, bp_step, ldb, K, c,
                         c_off + first * c_step, c_step, ldc, vstride, acc)
            first += _NP3_2
    for i in range(first, n_panels):
        for k0 in range(0, K, K_BLOCK):
            _rows3(a, a_off + k0 * ka, lda, ka, M, bp, bp_off + i * bp_step + k0 * ldb, ldb,
                   min(K_BLOCK, K - k0), c, c_off + i * c_step, ldc, vstride, (k0 > 0) | acc)


def _panels2(a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step, ldc, vstride,
             n_panels, acc):
    first = 0  # one or two rows take several panels at once (their rows stay in L1 anyway)
    if M == 1:
        while first + _NP2 <= n_panels:
            _one_row2(a, a_off, lda, ka, bp, bp_off + first * bp_step, bp_step, ldb, K, c,
                        c_off + first * c_step, c_step, ldc, vstride, acc)
            first += _NP2
    elif M == 2 and _NP2_2 > 1:
        while first + _NP2_2 <= n_panels:
            _two_rows2(a, a_off, lda, ka, bp, bp_off + first * bp_step, bp_step, ldb, K, c,
                         c_off + first * c_step, c_step, ldc, vstride, acc)
            first += _NP2_2
    for i in range(first, n_panels):
        for k0 in range(0, K, K_BLOCK):
            _rows2(a, a_off + k0 * ka, lda, ka, M, bp, bp_off + i * bp_step + k0 * ldb, ldb,
                   min(K_BLOCK, K - k0), c, c_off + i * c_step, ldc, vstride, (k0 > 0) | acc)


def _panels1(a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step, ldc, vstride,
             n_panels, acc):
    first = 0  # one or two rows take several panels at once (their rows stay in L1 anyway)
    if M == 1:
        while first + _NP1 <= n_panels:
            _one_row1(a, a_off, lda, ka, bp, bp_off + first * bp_step, bp_step, ldb, K, c,
                        c_off + first * c_step, c_step, ldc, vstride, acc)
            first += _NP1
    elif M == 2 and _NP1_2 > 1:
        while first + _NP1_2 <= n_panels:
            _two_rows1(a, a_off, lda, ka, bp, bp_off + first * bp_step, bp_step, ldb, K, c,
                         c_off + first * c_step, c_step, ldc, vstride, acc)
            first += _NP1_2
    for i in range(first, n_panels):
        for k0 in range(0, K, K_BLOCK):
            _rows1(a, a_off + k0 * ka, lda, ka, M, bp, bp_off + i * bp_step + k0 * ldb, ldb,
                   min(K_BLOCK, K - k0), c, c_off + i * c_step, ldc, vstride, (k0 > 0) | acc)


_PANEL_ROUTINES = {1: _panels1, 2: _panels2, 3: _panels3}
_CALLBACKS = {}  # (width, dtype name) -> the compiled callback (kept alive: its address is used)
_CALLBACKS_LOCK = threading.Lock()
_TABLES = {}  # (dtype name, widths) -> the address table (read-only)


def _callback_signature(dtype):
    p = types.CPointer(numba.from_dtype(np.dtype(dtype)))
    i = types.int64
    return types.void(p, i, i, i, i, p, i, i, i, i, p, i, i, i, i, i, i)


def tile_functions(dtype, widths=(1, 2, 3)):
    """A read-only int64 array f (4,) with f[nv] the address of the panel routine for nv panel
    vectors (nv in widths; the others 0) in dtype, compiled (or loaded from the cache) on first
    use: the first argument of `tile`."""
    table = _TABLES.get((dtype, widths))
    if table is not None:
        return table
    name = np.dtype(dtype).name
    table = np.zeros(4, np.int64)
    for nv in widths:
        key = (nv, name)
        cb = _CALLBACKS.get(key)
        if cb is None:
            with _CALLBACKS_LOCK:
                cb = _CALLBACKS.get(key)
                if cb is None:
                    cb = cfunc(_callback_signature(name), cache=CACHE,
                               error_model="numpy")(_PANEL_ROUTINES[nv])
                    _CALLBACKS[key] = cb
        table[nv] = cb.address
    table.flags.writeable = False
    _TABLES[(dtype, tuple(widths))] = table
    return table


@intrinsic
def tile(typingctx, fns, nv, a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step,
         ldc, vstride, n_panels, acc):
    """n_panels panel products (`panel_product`), panel i at bp_off + i·bp_step writing c from
    c_off + i·c_step, through the routine for nv panel vectors in fns (`tile_functions`; nv a
    constant 1, 2 or 3). a, bp and c are C-contiguous arrays of one dtype (addressed flat) or
    pointers; integers any integer type, acc a boolean (accumulate into c)."""
    if not (isinstance(nv, types.IntegerLiteral) and nv.literal_value in (1, 2, 3)):
        return None
    if not (isinstance(fns, types.Array) and fns.dtype == types.int64):
        return None
    arrays = (a, bp, c)
    if not all(isinstance(x, (types.Array, types.CPointer)) for x in arrays):
        return None
    if a.dtype not in (types.float32, types.float64) or bp.dtype != a.dtype or \
            c.dtype != a.dtype:
        return None
    sig = types.void(fns, nv, a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step,
                     ldc, vstride, n_panels, acc)

    def codegen(context, builder, signature, args):
        tys = signature.args
        i64 = ir.IntType(64)
        fty = context.get_value_type(tys[2].dtype)
        ptr = fty.as_pointer()
        table = context.make_array(tys[0])(context, builder, args[0]).data
        address = builder.load(builder.gep(table, [ir.Constant(i64, nv.literal_value)]))
        fnty = ir.FunctionType(ir.VoidType(), [ptr] + [i64] * 4 + [ptr] + [i64] * 4 + [ptr] +
                               [i64] * 6)
        call_args = []
        for k in range(2, 19):
            ty, val = tys[k], args[k]
            if k in (2, 7, 12):
                call_args.append(_data(context, builder, ty, val))
            elif k == 18:
                flag = context.cast(builder, val, ty, types.boolean)
                call_args.append(builder.zext(flag, i64))
            else:
                call_args.append(context.cast(builder, val, ty, types.int64))
        builder.call(builder.inttoptr(address, fnty.as_pointer()), call_args)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", cache=CACHE, error_model="numpy")
def panel_products(fns, nv, a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step,
                   ldc, vstride, n_panels, acc=False):
    """`tile` on arrays of any shape (read flat); nv must be a constant (1, 2 or 3)."""
    tile(fns, nv, a.reshape(a.size), a_off, lda, ka, M, bp.reshape(bp.size), bp_off, bp_step,
         ldb, K, c.reshape(c.size), c_off, c_step, ldc, vstride, n_panels, acc)


@njit(inline="always", cache=CACHE, error_model="numpy")
def panel_product(fns, nv, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride,
                  acc=False):
    """Rows 0..M-1 of one panel product: c[m, v·vstride + i] (+)= Σ_k a[m, k] bp[k, v·VL + i],
    for v < nv (1, 2 or 3 panel vectors), with a and c addressed as in the tile (a[m, k] at
    a_off + m·lda + k·ka, row m of c at c_off + m·ldc). Rows go _ROWS at a time, then the
    halves; k goes in blocks of K_BLOCK so that a block of the panel stays in L1 while every row
    tile passes over it (each entry is still one chain over k). a, bp and c must be
    C-contiguous (they are addressed through flat offsets)."""
    panel_products(fns, nv, a, a_off, lda, ka, M, bp, bp_off, 0, ldb, K, c, c_off, 0, ldc,
                   vstride, 1, acc)


@intrinsic
def prefer_wide_vectors(typingctx):
    """On the AVX-512 path, let LLVM's loop vectoriser use 512-bit vectors in the calling
    function (its tuning for these CPUs prefers 256 bits): the float32 gate loops then run 16
    lanes wide. A function attribute of the caller; nothing on the other paths. llvmlite accepts
    only its known attribute names, so the string attribute is added to the underlying set
    directly."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if PATH.vector_bytes >= 64:
            try:
                set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            except TypeError:  # another llvmlite: its attributes are no set; only speed is lost
                pass
        return context.get_dummy_value()

    return sig, codegen


# -- row dots: products on weights as stored, for single steps --

_DOT_ROWS = 4  # rows of W per block (their vectors stay in registers across k)
_DOT_XROWS = 2  # rows of x per block: 4·2 accumulators + 4 + 2 loads fit 16 registers
_DOT_ROWS_ONE_X = 8  # rows of W per block against one row of x: 8 chains cover the latency


def _reduce_lanes_together(builder, vectors, VL):
    """[(row, its lanes' sum)] for vectors of VL lanes, each row's lanes added in the same
    pairwise order as one vector alone (lanes [0, w/2) + [w/2, w), w = VL, VL/2, ..., 2), but
    two rows' halves per vector operation: each packed vector holds G rows of w lanes, and a
    level turns two of them into one of 2G rows of w/2 lanes (or one into a vector of half the
    length, once it is alone). A few shuffles and adds per row instead of a tree per row."""
    i32 = ir.IntType(32)
    packed = [([j], v) for j, v in enumerate(vectors)]  # (rows in lane order, vector)
    width = VL
    while width > 1:
        half = width // 2
        merged = []
        for i in range(0, len(packed), 2):
            if i + 1 < len(packed):
                (ra, a), (rb, b) = packed[i], packed[i + 1]
                n = a.type.count
                lo = [g * width + k for g in range(len(ra)) for k in range(half)] + \
                    [n + g * width + k for g in range(len(rb)) for k in range(half)]
                rows = ra + rb
            else:
                (rows, a), b = packed[i], packed[i][1]
                lo = [g * width + k for g in range(len(rows)) for k in range(half)]
            hi = [k + half for k in lo]
            mask = ir.VectorType(i32, len(lo))
            merged.append((rows, builder.fadd(
                builder.shuffle_vector(a, b, ir.Constant(mask, lo)),
                builder.shuffle_vector(a, b, ir.Constant(mask, hi)))))
        packed = merged
        width = half
    return [(row, builder.extract_element(v, ir.Constant(i32, g)))
            for rows, v in packed for g, row in enumerate(rows)]


def _emit_row_block(context, builder, JR, BR, VL, fty, W, w_off, ldw, X, x_off, ldx, K, O, o_off,
                    ldo):
    """LLVM IR for o[o_off + b·ldo + j] = Σ_k w[w_off + j·ldw + k] · x[x_off + b·ldx + k], j < JR,
    b < BR: vector partial sums over k (VL at a time), lanes reduced pairwise (a fixed order),
    then the k % VL tail added in order. Offsets and strides are int64 values, in elements."""
    bits = 32 if fty == ir.FloatType() else 64
    vty = ir.VectorType(fty, VL)
    i64 = ir.IntType(64)
    fma = _multiply_add(builder, vty, VL, bits)
    fma1 = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(fty, [fty, fty, fty]),
        "%s.%s" % ("llvm.fma" if PATH.fused else "llvm.fmuladd", "f32" if bits == 32 else "f64"))
    zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * VL)
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(BR)] for _ in range(JR)]
    w_rows = [builder.add(w_off, builder.mul(ir.Constant(i64, j), ldw)) for j in range(JR)]
    x_rows = [builder.add(x_off, builder.mul(ir.Constant(i64, b), ldx)) for b in range(BR)]
    KV = builder.sdiv(K, ir.Constant(i64, VL))

    def vload(base, row, k):
        p = builder.gep(base, [builder.add(row, k)])
        return builder.load(builder.bitcast(p, vty.as_pointer()), align=bits // 8)

    with cgutils.for_range(builder, KV) as loop:
        k = builder.mul(loop.index, ir.Constant(i64, VL))
        wv = [vload(W, w_rows[j], k) for j in range(JR)]
        xv = [vload(X, x_rows[b], k) for b in range(BR)]
        for j in range(JR):
            for b in range(BR):
                builder.store(builder.call(fma, [wv[j], xv[b], builder.load(accs[j][b])]),
                              accs[j][b])
    sums = []
    for b in range(BR):  # each row's lanes pairwise; the JR rows of W against x row b together
        for j, total in _reduce_lanes_together(builder, [builder.load(a[b]) for a in accs], VL):
            sums.append((j, b, cgutils.alloca_once_value(builder, total)))
    k0 = builder.mul(KV, ir.Constant(i64, VL))
    with cgutils.for_range(builder, builder.sub(K, k0)) as loop:
        k = builder.add(k0, loop.index)
        for j, b, s in sums:
            wk = builder.load(builder.gep(W, [builder.add(w_rows[j], k)]))
            xk = builder.load(builder.gep(X, [builder.add(x_rows[b], k)]))
            builder.store(builder.call(fma1, [wk, xk, builder.load(s)]), s)
    for j, b, s in sums:
        off = builder.add(builder.add(o_off, builder.mul(ir.Constant(i64, b), ldo)),
                          ir.Constant(i64, j))
        builder.store(builder.load(s), builder.gep(O, [off]))


@intrinsic
def _row_dots(typingctx, w, w_off, ldw, J, x, x_off, ldx, NR, K, out, o_off, ldo):
    if not all(isinstance(arr, types.Array) for arr in (w, x, out)):
        return None
    if w.dtype not in (types.float32, types.float64) or x.dtype != w.dtype or \
            out.dtype != w.dtype:
        return None
    intp = types.intp
    sig = types.void(w, intp, intp, intp, x, intp, intp, intp, intp, out, intp, intp)

    def codegen(context, builder, signature, args):
        w_v, w_off, ldw, J, x_v, x_off, ldx, NR, K, o_v, o_off, ldo = args
        tys = signature.args
        fty = context.get_value_type(tys[0].dtype)
        VL = _VECTOR_BYTES * 8 // tys[0].dtype.bitwidth
        W = context.make_array(tys[0])(context, builder, w_v).data
        X = context.make_array(tys[4])(context, builder, x_v).data
        O = context.make_array(tys[9])(context, builder, o_v).data
        i64 = ir.IntType(64)

        def blocks(JR, j0, count_j):
            """Row blocks of JR rows of W from j0, count_j of them, over all rows of x."""
            with cgutils.for_range(builder, count_j) as jl:
                j = builder.add(j0, builder.mul(jl.index, ir.Constant(i64, JR)))
                wo = builder.add(w_off, builder.mul(j, ldw))
                oo = builder.add(o_off, j)
                pairs = builder.sdiv(NR, ir.Constant(i64, _DOT_XROWS))
                with cgutils.for_range(builder, pairs) as bl:
                    b = builder.mul(bl.index, ir.Constant(i64, _DOT_XROWS))
                    _emit_row_block(context, builder, JR, _DOT_XROWS, VL, fty, W, wo, ldw, X,
                                    builder.add(x_off, builder.mul(b, ldx)), ldx, K, O,
                                    builder.add(oo, builder.mul(b, ldo)), ldo)
                b = builder.mul(pairs, ir.Constant(i64, _DOT_XROWS))
                with builder.if_then(builder.icmp_signed("<", b, NR)):  # one row of x left
                    _emit_row_block(context, builder, JR, 1, VL, fty, W, wo, ldw, X,
                                    builder.add(x_off, builder.mul(b, ldx)), ldx, K, O,
                                    builder.add(oo, builder.mul(b, ldo)), ldo)

        def one_x_row(JR, j0, count_j):
            """Row blocks of JR rows of W from j0 against a single row of x (a batch-1 step):
            JR chains side by side, their lanes reduced together."""
            with cgutils.for_range(builder, count_j) as jl:
                j = builder.add(j0, builder.mul(jl.index, ir.Constant(i64, JR)))
                _emit_row_block(context, builder, JR, 1, VL, fty, W,
                                builder.add(w_off, builder.mul(j, ldw)), ldw, X, x_off, ldx, K,
                                O, builder.add(o_off, j), ldo)

        single = builder.icmp_signed("==", NR, ir.Constant(i64, 1))
        with builder.if_else(single) as (one_row, more_rows):
            with one_row:
                wide = builder.sdiv(J, ir.Constant(i64, _DOT_ROWS_ONE_X))
                one_x_row(_DOT_ROWS_ONE_X, ir.Constant(i64, 0), wide)
                j0 = builder.mul(wide, ir.Constant(i64, _DOT_ROWS_ONE_X))
                full = builder.sdiv(builder.sub(J, j0), ir.Constant(i64, _DOT_ROWS))
                one_x_row(_DOT_ROWS, j0, full)
                j0 = builder.add(j0, builder.mul(full, ir.Constant(i64, _DOT_ROWS)))
                one_x_row(1, j0, builder.sub(J, j0))
            with more_rows:
                full = builder.sdiv(J, ir.Constant(i64, _DOT_ROWS))
                blocks(_DOT_ROWS, ir.Constant(i64, 0), full)
                j0 = builder.mul(full, ir.Constant(i64, _DOT_ROWS))
                blocks(1, j0, builder.sub(J, j0))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=CACHE, error_model="numpy")
def _row_dots_flat(w, w_off, ldw, J, x, x_off, ldx, NR, K, out, o_off, ldo):
    """row_dots on 1-D arrays (one compiled routine per dtype, called from the step kernels)."""
    _row_dots(w, w_off, ldw, J, x, x_off, ldx, NR, K, out, o_off, ldo)


@njit(inline="always", cache=CACHE, error_model="numpy")
def row_dots(w, w_off, ldw, J, x, x_off, ldx, NR, K, out, o_off, ldo):
    """out[o_off + b·ldo + j] = Σ_k w[w_off + j·ldw + k] · x[x_off + b·ldx + k] for j < J rows
    of w and b < NR rows of x (both contiguous in k), with flat offsets into C-contiguous
    arrays; see the module docstring for the summation order."""
    _row_dots_flat(w.reshape(w.size), np.int64(w_off), np.int64(ldw), np.int64(J),
                   x.reshape(x.size), np.int64(x_off), np.int64(ldx), np.int64(NR), np.int64(K),
                   out.reshape(out.size), np.int64(o_off), np.int64(ldo))
