"""Borrowed 1-D views for the compiled kernels: `view(a, off, n)` is a[off:off + n] of a
C-contiguous array read as flat, made without Numba's slicing machinery.

A slice in @njit code creates a new array that holds a reference to its parent (an atomic
increment and decrement around every use) and takes the slicing code through type inference and
lowering at every call site; the part kernels take several per batch row and step. A view here
is one pointer offset: it holds no reference (its meminfo is null, so reference counting skips
it) and is valid while the array it was taken from is, which for the kernels' arguments is the
whole call. Use it only for arrays the caller keeps alive, and only inside compiled code.
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def view(typingctx, arr, off, n):
    """a.flat[off:off + n] as a borrowed 1-D C-contiguous array (no bounds check)."""
    if not (isinstance(arr, types.Array) and arr.layout == "C"):
        return None
    if not (isinstance(off, types.Integer) and isinstance(n, types.Integer)):
        return None
    out = types.Array(arr.dtype, 1, "C", readonly=not arr.mutable)
    sig = out(arr, off, n)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(out)(context, builder)
        intp = context.get_value_type(types.intp)
        offset = context.cast(builder, args[1], signature.args[1], types.intp)
        count = context.cast(builder, args[2], signature.args[2], types.intp)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(arr.dtype)))
        context.populate_array(
            dst, data=builder.gep(src.data, [offset]),
            shape=cgutils.pack_array(builder, [count], ty=intp),
            strides=cgutils.pack_array(builder, [itemsize], ty=intp),
            itemsize=itemsize, meminfo=None)
        return dst._getvalue()

    return sig, codegen


@intrinsic
def ptr(typingctx, arr, off):
    """A pointer to a.flat[off] of a C-contiguous array (CPointer: p[i] loads and stores with no
    bounds, wraparound or reference counting, the leanest code for the kernels' row loops)."""
    if not (isinstance(arr, types.Array) and arr.layout == "C"):
        return None
    if not isinstance(off, types.Integer):
        return None
    sig = types.CPointer(arr.dtype)(arr, off)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        offset = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.gep(src.data, [offset])

    return sig, codegen


@intrinsic
def copy_n(typingctx, dst, src, n):
    """dst[0:n] = src[0:n] for pointers from `ptr` of one dtype (llvm.memcpy: one call, no loop
    for the compiler to vectorise at every site); the ranges must not overlap."""
    if not (isinstance(dst, types.CPointer) and isinstance(src, types.CPointer) and
            dst.dtype == src.dtype and isinstance(n, types.Integer)):
        return None
    sig = types.void(dst, src, n)

    def codegen(context, builder, signature, args):
        count = context.cast(builder, args[2], signature.args[2], types.intp)
        itemsize = context.get_abi_sizeof(context.get_data_type(dst.dtype))
        cgutils.raw_memcpy(builder, args[0], args[1], count, itemsize)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def zero_n(typingctx, dst, n):
    """dst[0:n] = 0 for a pointer from `ptr` (llvm.memset; see copy_n)."""
    if not (isinstance(dst, types.CPointer) and isinstance(n, types.Integer)):
        return None
    sig = types.void(dst, n)

    def codegen(context, builder, signature, args):
        count = context.cast(builder, args[1], signature.args[1], types.intp)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(dst.dtype)))
        cgutils.memset(builder, args[0], builder.mul(count, itemsize), 0)
        return context.get_dummy_value()

    return sig, codegen
