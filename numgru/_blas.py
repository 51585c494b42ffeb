"""Row-major GEMM on strided sub-matrices for the @njit kernels, through the BLAS that Numba's np.dot
already uses (SciPy's, reached by name through Numba's helper library, so `cache=True` still works).

np.dot inside @njit copies any operand that is not contiguous and cannot accumulate into its output;
the GRU kernels need both: column blocks of the (T·B, 3H) gate-gradient matrix as operands without a
copy, and C += A·B into gradient buffers. `gemm` gives exactly that and nothing more.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

ensure_blas()  # the helper library finds SciPy's BLAS at the first call; fail early, with a message

_I8 = ir.IntType(8)
_VOIDP = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
            c_off, ldc):
    """Column-major BLAS ?gemm: c = alpha·op(a)·op(b) + beta·c, on arrays' data plus offsets.

    transa/transb are uint8 character codes (ord('n') or ord('t')); sizes, offsets and leading
    dimensions are in elements. The dtype (s or d) comes from c's type.
    """
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.int32(transa, transb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                      c_off, ldc)
    kind = ord("s") if dtype == types.float32 else ord("d")

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, alpha_, a_, aoff, lda_, b_, boff, ldb_, beta_, c_, coff, ldc_) = args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [_I8, _I8, _I8, intp, intp, intp, _VOIDP, _VOIDP,
                                                intp, _VOIDP, intp, _VOIDP, _VOIDP, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        tys = signature.args

        def cast_int(val, ty):
            return context.cast(builder, val, ty, types.intp)

        def data_ptr(arr, arrty, off, offty):
            data = context.make_array(arrty)(context, builder, arr).data
            return builder.bitcast(builder.gep(data, [cast_int(off, offty)]), _VOIDP)

        def slot(val, valty):
            return builder.bitcast(cgutils.alloca_once_value(
                builder, context.cast(builder, val, valty, dtype)), _VOIDP)

        return builder.call(fn, [
            ir.Constant(_I8, kind), builder.trunc(ta, _I8), builder.trunc(tb, _I8),
            cast_int(m_, tys[2]), cast_int(n_, tys[3]), cast_int(k_, tys[4]),
            slot(alpha_, tys[5]), data_ptr(a_, tys[6], aoff, tys[7]), cast_int(lda_, tys[8]),
            data_ptr(b_, tys[9], boff, tys[10]), cast_int(ldb_, tys[11]),
            slot(beta_, tys[12]), data_ptr(c_, tys[13], coff, tys[14]), cast_int(ldc_, tys[15])])

    return sig, codegen


N_ = np.uint8(ord("n"))
T_ = np.uint8(ord("t"))


@njit(inline="always", cache=True)
def gemm(trans_a, trans_b, M, N, K, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Row-major C (M×N) = alpha·op(A)·op(B) + beta·C.

    A starts at a.flat[a_off] with rows lda elements apart (op(A) is M×K; A itself is K×M when
    trans_a); likewise B (op(B) K×N) and C. trans_* are the module's N_ / T_ codes. The row-major
    product is the column-major C^T = op(B)^T·op(A)^T, so the operands swap places.
    """
    if M > 0 and N > 0 and K > 0:
        _xxgemm(trans_b, trans_a, N, M, K, alpha, b, b_off, ldb, a, a_off, lda, beta, c, c_off,
                ldc)
    elif beta != 1:  # an empty product: C = beta·C (and C = 0 for beta = 0, whatever C held)
        for i in range(M):
            for j in range(N):
                if beta == 0:
                    c.flat[c_off + i * ldc + j] = 0
                else:
                    c.flat[c_off + i * ldc + j] *= beta
