"""Sigmoid and tanh for the compiled kernels of both targets: branch-free float32 versions that LLVM
vectorises on the CPU, and the accurate libm (CPU) or libdevice (CUDA) versions for float64.

Numba's np.exp / np.tanh are scalar calls into libm here (no SVML), which left the gate math of a
GRU step slower than its GEMM. In float32 the kernels instead use e^-a built from Cody-Waite range
reduction (-a = k·ln2 + r, |r| <= ln2/2), a degree-7 Taylor polynomial for e^r (truncation error
|r|^8/8! < 6e-9 relative) and 2^k assembled in the exponent bits; the last division of
σ = 1/(1 + e^-|x|) and tanh = (1 - e^-2|x|)/(1 + e^-2|x|) runs in float64 so that it rounds once
(about 1 ulp in all; BPTT amplifies gate errors, and with 3 roundings here the float32 gradients
were measurably worse). tanh near 0 uses its odd Taylor series up to x^9 (error < 1e-8 relative
for |x| < 0.25). Every branch is a select, so a loop over a row of gates compiles to SIMD code
(with error_model="numpy": Python's division check would add a branch). tests/test_mathfn.py bounds
the error of both functions over the float32 range, NaN and ±Inf included, on the CPU, and under
the CUDA simulator and on a GPU through a device kernel. float64 calls the math library: it is the
dtype of the checks.

`sigmoid(x)` and `tanh(x)` are generic: call them from @njit code or from numba.cuda device code
(numgru/_gates.py does both) with a float32 or float64 scalar. Only math-module functions appear
below (no numpy ufuncs), since those are what both targets compile. Called from plain Python, as
the CUDA simulator runs device code, a numpy float32 takes the compiled float32 version, so the
simulated kernels compute what the GPU does.

This is not the reference's sigmoid: reference.py keeps its own, as the independent truth.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._jit import CACHE

_F = np.float32
_ONE = _F(1.0)
_TWO = _F(2.0)
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)  # ln 2 split so that k·LN2_HI is exact for |k| < 2^8
_LN2_LO = _F(-2.12194440e-4)
_EXP_MAX_ARG = _F(87.33654)  # ln 2^126: e^-a is a normal float32 up to here; past it, 0
_TANH_SAT = _F(9.5)  # |x| >= 9.5: tanh rounds to ±1 in float32
_TANH_SMALL = _F(0.25)
_ROUND = _F(12582912.0)  # 1.5·2^23: adding and subtracting it rounds a float32 to an integer
# Taylor coefficients 1/n! for e^r, and of tanh's odd series (x - x³/3 + 2x⁵/15 - 17x⁷/315 ...).
_E2, _E3, _E4, _E5, _E6, _E7 = (_F(1 / math.factorial(n)) for n in range(2, 8))
_T3, _T5, _T7, _T9 = _F(-1 / 3), _F(2 / 15), _F(-17 / 315), _F(62 / 2835)


@intrinsic
def _int32_as_float32(typingctx, bits):
    """Reinterpret the bits of an int32 as a float32 (no conversion)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always", cache=CACHE)
def _exp_neg32(a):
    """e^-a for float32 a in [0, +inf] (NaN in, NaN out); e^-a below 1.6e-38 is flushed to 0."""
    flush = a > _EXP_MAX_ARG
    a = _EXP_MAX_ARG if flush else a
    x = -a
    # k = round(x / ln 2) by the 1.5·2^23 trick (exact for |x·log2 e| < 2^22; no libm call).
    k = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + _ONE
    p = p * r + _ONE
    scale = _int32_as_float32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
    e = p * scale
    return _F(0.0) if flush else e


@njit(inline="always", cache=CACHE)
def _sigmoid32(x):
    # σ(x) = 1/(1+e^-x) for x >= 0, e^x/(1+e^x) otherwise: e^-|x| <= 1, so nothing cancels.
    e = np.float64(_exp_neg32(abs(x)))
    s = 1.0 / (1.0 + e)  # in float64: one rounding at the end instead of three
    return np.float32(s if x >= 0 else e * s)


@njit(inline="always", cache=CACHE)
def _tanh32(x):
    a = abs(x)
    sat = a > _TANH_SAT
    a_c = _TANH_SAT if sat else a
    e = np.float64(_exp_neg32(_TWO * a_c))
    t = np.float32((1.0 - e) / (1.0 + e))  # in float64: one rounding at the end
    t = _ONE if sat else t
    x2 = a * a
    small = a * (_ONE + x2 * (_T3 + x2 * (_T5 + x2 * (_T7 + x2 * _T9))))
    t = small if a < _TANH_SMALL else t
    t = math.copysign(t, x)  # odd function; keeps tanh(-0) = -0
    return x if x != x else t  # NaN stays NaN


def sigmoid(x):
    """Logistic sigmoid of one float (compiled versions below, by type; from Python, a numpy
    float32 runs the compiled float32 version, anything else the math module)."""
    if isinstance(x, np.float32):
        return np.float32(_sigmoid32(x))
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def tanh(x):
    """tanh of one float (compiled versions below, by type; from Python as `sigmoid`)."""
    if isinstance(x, np.float32):
        return np.float32(_tanh32(x))
    return math.tanh(x)


@overload(sigmoid)
def _sigmoid_overload(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    if isinstance(x, types.Float):
        def _sigmoid64(x):
            if x >= 0:
                return 1.0 / (1.0 + math.exp(-x))
            e = math.exp(x)
            return e / (1.0 + e)
        return _sigmoid64
    return None


@overload(tanh)
def _tanh_overload(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


@njit(cache=CACHE, error_model="numpy")
def sigmoid_array(x):
    """σ over a 1-D array, with the kernels' own implementation (for the tests and benchmarks)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = sigmoid(x[i])
    return out


@njit(cache=CACHE, error_model="numpy")
def tanh_array(x):
    """tanh over a 1-D array, with the kernels' own implementation (for the tests and benchmarks)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = tanh(x[i])
    return out
