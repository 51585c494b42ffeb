"""Register-tiled matrix products for the CPU layer passes, on weights packed once per call.

The per-step product of a GRU, h (B, H) times W_hh^T (H, 3H), is small (B rows) and repeated T
times on the same weights. A general BLAS call packs both operands on every call and, with
several threads, splits one small product between them. Here each part of a pass (cpu.py)
packs its own weight panels once and multiplies them with a register tile written directly in
LLVM vector IR: R rows of A × NV vectors of one 64-byte panel row, R·NV accumulators kept in
registers across the k loop, one fused multiply-add per vector and k. Measured single-threaded
on this machine's AVX-512 core at 141-147 GFLOP/s in float32 (its peak is about 148), against
118-197 GFLOP/s for two-threaded BLAS on the same products (`panel_products` at 8 rows × 48
columns; benchmarks/profile_cpu.py shows it inside the passes).

Explicit 512-bit vector types are used: LLVM's loop vectoriser keeps to 256 bits on this CPU
(its tuning prefers them; `prefer_wide_vectors` lifts that for a function), but legalises
explicit <16 x float> operations to full-width registers where AVX-512 exists, and splits them
into narrower ones where it does not, so the code is correct on any x86-64 or ARM target and
fast where the hardware is.

Summation order: every entry is one chain of fused multiply-adds over k = 0..K-1, whichever tile
shape, k block, thread or partition computes it, so results do not depend on the number of
threads.

Panel layouts. Gate panels (`pack_gates`, the forward's W_ih and W_hh): wp[u, k, g·VL + i] =
W[g·H + u·VL + i, k] for gate g in (r, z, n) and unit u·VL + i < H (0 past H), VL = 64 bytes /
itemsize: unit block u's three gates side by side, one 3·VL row per k. Column panels
(`pack_columns`, the backward's W_hh and W_ih): panel q holds columns q·width .. of a (K, N)
matrix, one row per k. The numpy packers here define the layouts (the tests check the compiled
packers of cpu.py against them).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_VECTOR_BYTES = 64


def vector_length(dtype):
    """Elements per panel vector: 16 for float32, 8 for float64."""
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


def _emit_tile(context, builder, R, NV, VL, fty, A, a_off, lda, ka, B, bp_off, ldb, K, C, c_off,
               ldc, vstride, acc):
    """LLVM IR for one R × (NV·VL) tile:
    c[c_off + r·ldc + v·vstride + i] = Σ_k a[a_off + r·lda + k·ka] · bp[bp_off + k·ldb + v·VL + i]
    for r < R, v < NV, i < VL, k < K; c is overwritten, or with acc added to (the chain of
    fused multiply-adds starts from c's values). A, B, C are data pointers; offsets and strides
    are int64 values, in elements."""
    bits = 32 if fty == ir.FloatType() else 64
    align = bits // 8
    vty = ir.VectorType(fty, VL)
    i32 = ir.IntType(32)
    i64 = ir.IntType(64)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty, vty, vty]),
        "llvm.fma.v%d%s" % (VL, "f32" if bits == 32 else "f64"))
    zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * VL)
    undef = ir.Constant(vty, ir.Undefined)
    splat0 = ir.Constant(ir.VectorType(i32, VL), [0] * VL)
    # Accumulators as stack slots (LLVM's mem2reg turns them into registers): 0, or with acc
    # the tile's current values in c, so that a product split along k continues one chain of
    # fused multiply-adds (the same result as the unsplit product).
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(NV)] for _ in range(R)]

    def c_ptr(r, v):
        row = builder.add(c_off, builder.mul(ir.Constant(i64, r), ldc))
        off = builder.add(row, builder.mul(ir.Constant(i64, v), vstride))
        return builder.bitcast(builder.gep(C, [off]), vty.as_pointer())

    with builder.if_then(acc):
        for r in range(R):
            for v in range(NV):
                builder.store(builder.load(c_ptr(r, v), align=align), accs[r][v])
    a_rows = [builder.add(a_off, builder.mul(ir.Constant(i64, r), lda)) for r in range(R)]
    with cgutils.for_range(builder, K) as loop:
        k = loop.index
        brow = builder.add(bp_off, builder.mul(k, ldb))
        a_k = builder.mul(k, ka)
        bvecs = []
        for v in range(NV):
            p = builder.gep(B, [builder.add(brow, ir.Constant(i64, v * VL))])
            bvecs.append(builder.load(builder.bitcast(p, vty.as_pointer()), align=align))
        for r in range(R):
            s = builder.load(builder.gep(A, [builder.add(a_rows[r], a_k)]))
            sv = builder.shuffle_vector(
                builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat0)
            for v in range(NV):
                builder.store(builder.call(fma, [sv, bvecs[v], builder.load(accs[r][v])]),
                              accs[r][v])
    for r in range(R):
        for v in range(NV):
            builder.store(builder.load(accs[r][v]), c_ptr(r, v), align=align)


def _make_rows(NV):
    """An intrinsic computing rows 0..M-1 of one k block of a panel product with NV panel
    vectors (see `panel_product`): tiles of 8 rows, then one of 4, 2 and 1 as the remainder
    needs."""

    @intrinsic
    def rows(typingctx, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc):
        if not all(isinstance(arr, types.Array) for arr in (a, bp, c)):
            return None
        if a.dtype not in (types.float32, types.float64) or bp.dtype != a.dtype or \
                c.dtype != a.dtype:
            return None
        intp = types.intp
        sig = types.void(a, intp, intp, intp, intp, bp, intp, intp, intp, c, intp, intp, intp,
                         types.boolean)

        def codegen(context, builder, signature, args):
            a_v, a_off, lda, ka, M, bp_v, bp_off, ldb, K, c_v, c_off, ldc, vstride, acc = args
            tys = signature.args
            fty = context.get_value_type(tys[0].dtype)
            VL = _VECTOR_BYTES * 8 // tys[0].dtype.bitwidth
            A = context.make_array(tys[0])(context, builder, a_v).data
            B = context.make_array(tys[5])(context, builder, bp_v).data
            C = context.make_array(tys[9])(context, builder, c_v).data
            acc = context.cast(builder, acc, tys[13], types.boolean)
            i64 = ir.IntType(64)

            def tile(R, m):
                _emit_tile(context, builder, R, NV, VL, fty, A,
                           builder.add(a_off, builder.mul(m, lda)), lda, ka, B, bp_off, ldb, K,
                           C, builder.add(c_off, builder.mul(m, ldc)), ldc, vstride, acc)

            n8 = builder.sdiv(M, ir.Constant(i64, 8))
            with cgutils.for_range(builder, n8) as loop:
                tile(8, builder.mul(loop.index, ir.Constant(i64, 8)))
            m = builder.mul(n8, ir.Constant(i64, 8))
            rest = builder.sub(M, m)
            for R in (4, 2, 1):
                part = builder.and_(rest, ir.Constant(i64, R))
                with builder.if_then(builder.icmp_signed("!=", part, ir.Constant(i64, 0))):
                    tile(R, m)
                m = builder.add(m, part)
            return context.get_dummy_value()

        return sig, codegen

    return rows


_rows1, _rows2, _rows3 = (_make_rows(nv) for nv in (1, 2, 3))


@njit(inline="always", cache=True, error_model="numpy")
def _rows(nv, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc):
    """The row tiles of one k block (see panel_products); a, bp and c are 1-D."""
    if nv == 3:
        _rows3(a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc)
    elif nv == 2:
        _rows2(a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc)
    else:
        _rows1(a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc)


K_BLOCK = 128  # rows of a panel kept in L1 (128 · 64 bytes · nv) across a product's row tiles


@njit(cache=True, error_model="numpy")
def _panels(nv, a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step, ldc, vstride,
            n_panels, acc):
    """panel_products on 1-D arrays. Not inlined: the twelve tile shapes compile once per dtype,
    not at every call site (inlined everywhere, they made the first compile five times longer),
    and one call covers all of a part's panels (a call per panel was measurable at batch 1)."""
    for i in range(n_panels):
        for k0 in range(0, K, K_BLOCK):
            kn = min(K_BLOCK, K - k0)
            _rows(nv, a, a_off + k0 * ka, lda, ka, M, bp, bp_off + i * bp_step + k0 * ldb, ldb, kn,
                  c, c_off + i * c_step, ldc, vstride, (k0 > 0) | acc)


@njit(inline="always", cache=True, error_model="numpy")
def panel_products(nv, a, a_off, lda, ka, M, bp, bp_off, bp_step, ldb, K, c, c_off, c_step, ldc,
                   vstride, n_panels, acc=False):
    """n_panels panel products (`panel_product`), panel i at bp_off + i·bp_step writing c from
    c_off + i·c_step, in one call."""
    _panels(np.int64(nv), a.reshape(a.size), a_off, lda, np.int64(ka), M, bp.reshape(bp.size),
            bp_off, bp_step, ldb, K, c.reshape(c.size), c_off, c_step, ldc, vstride,
            np.int64(n_panels), bool(acc))


@njit(inline="always", cache=True, error_model="numpy")
def panel_product(nv, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride,
                  acc=False):
    """Rows 0..M-1 of one panel product: c[m, v·vstride + i] (+)= Σ_k a[m, k] bp[k, v·VL + i],
    for v < nv (1, 2 or 3 panel vectors), with a and c addressed as in the tile (a[m, k] at
    a_off + m·lda + k·ka, row m of c at c_off + m·ldc). Rows go 8 at a time, then 4, 2, 1; k
    goes in blocks of K_BLOCK so that a block of the panel stays in L1 while every row tile
    passes over it (each entry is still one chain over k). a, bp and c must be C-contiguous
    (they are addressed through flat offsets)."""
    panel_products(nv, a, a_off, lda, ka, M, bp, bp_off, 0, ldb, K, c, c_off, 0, ldc, vstride,
                   1, acc)


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM's loop vectoriser use 512-bit vectors in the calling function (its tuning for
    this CPU family prefers 256 bits): the float32 gate loops then run 16 lanes wide. A function
    attribute of the caller; on CPUs without 512-bit registers LLVM keeps to the widest they
    have. llvmlite accepts only its known attribute names, so the string attribute is added to
    the underlying set directly."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except TypeError:  # another llvmlite: its attributes are no set; only speed is lost
            pass
        return context.get_dummy_value()

    return sig, codegen

