"""The tiled GEMM of the CUDA backend, c (M, N) = [c +] op(a) op(b) [+ bias], in the three forms
the engine uses, and its launcher. Not a general BLAS: fp32/fp64 only, no TF32, no tensor cores.

Uses: the input projection of all steps (gi = x W_ihᵀ + b_ih, form "nt"), dx = dgi W_ih and the
per-step dh += dgh_t W_hh (form "nn"), and the weight gradients dW = dgᵀ x, dghᵀ h (form "tn").
A block of GEMM_THREADS_Y × GEMM_THREADS_X threads computes a BM × BN tile of c, each thread a
GEMM_REG_M × GEMM_REG_N block held in registers, stepping through K in GEMM_TILE_K slices staged in
shared memory (config.py).
"""

import functools
from typing import NamedTuple

from numba import cuda

from .kernel import FLAG, Kernel, array, build_inputs, cdiv, placeholder


class Gemm(NamedTuple):
    """The GEMM kernels of one dtype and set of tunables."""

    kernels: dict  # (trans_a, trans_b) -> Kernel
    block: tuple  # (GEMM_THREADS_X, GEMM_THREADS_Y)
    tile: tuple  # (BM, BN): rows and columns of c per block


# (trans_a, trans_b) -> BLAS-style name: n = as stored, t = transposed.
FORMS = {(False, True): "nt", (False, False): "nn", (True, False): "tn"}


# The tunables (config.py) the kernels below are compiled with; the others are read at launch.
COMPILED = ('GEMM_THREADS_X', 'GEMM_THREADS_Y', 'GEMM_REG_M', 'GEMM_REG_N', 'GEMM_TILE_K')


@functools.lru_cache(maxsize=None)
def build(dtype_name, config_key):
    """The GEMM kernels for arrays of dtype_name under the tunables config_key (config.snapshot)."""
    config, f, ZERO, FM = build_inputs(dtype_name, config_key)
    GX, GY = config["GEMM_THREADS_X"], config["GEMM_THREADS_Y"]
    RM, RN, BK = config["GEMM_REG_M"], config["GEMM_REG_N"], config["GEMM_TILE_K"]
    BM, BN, GT = GY * RM, GX * RN, GX * GY  # tile of c; threads per block

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

    def make_kernel(trans_a, trans_b):
        def gemm_kernel(a, b, c, bias, accumulate, has_bias):
            """c = op(a) op(b) (+ c if accumulate) (+ bias[n] if has_bias).

            op(a) is (M, K): a itself, or aᵀ when a is stored (K, M); op(b) is (K, N): b, or bᵀ when
            b is stored (N, K). c (M, N); bias (N,). Block (GX, GY); grid (⌈N/BN⌉, ⌈M/BM⌉).
            """
            M = c.shape[0]
            N = c.shape[1]
            K = a.shape[0] if trans_a else a.shape[1]
            a_s = cuda.shared.array((BK, BM), f)  # k-major, so a row of C reads one line
            b_s = cuda.shared.array((BK, BN), f)
            acc = cuda.local.array((RM, RN), f)
            b_frag = cuda.local.array(RN, f)
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

        view2 = array(f, 2, "A")  # column slices such as dgh[:, :2H] and row blocks of W_hh
        return Kernel(f"gemm_{FORMS[trans_a, trans_b]}", gemm_kernel,
                      (view2, view2, view2, array(f, 1), FLAG, FLAG), FM)

    return Gemm({form: make_kernel(*form) for form in FORMS}, (GX, GY), (BM, BN))


def gemm(g, a, b, c, trans_a=False, trans_b=False, bias=None, accumulate=False):
    """c = op(a) op(b) (+ c) (+ bias) on the device with the kernels g (a Gemm); shapes as in
    gemm_kernel's docstring."""
    M, N = c.shape
    BM, BN = g.tile
    grid = (cdiv(N, BN), cdiv(M, BM))
    has_bias = bias is not None
    if bias is None:
        bias = placeholder(1, c.dtype)
    g.kernels[trans_a, trans_b][grid, g.block](a, b, c, bias, accumulate, has_bias)
