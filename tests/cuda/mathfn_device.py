"""numgru/_mathfn.py's float32 sigmoid and tanh run as device code, and tests/test_mathfn.py's bound
applied to the results: a kernel that evaluates them over an array, and the check against float64
truths. Shared by sim_mathfn.py (under the simulator, a sample of the float32 range) and
test_cuda_gpu.py (on a GPU, the sweep of test_mathfn.py); test_cuda_compile.py compiles the kernel
for sm_90. Not a test module.
"""

import numpy as np
from numba import cuda

from numgru._mathfn import sigmoid, tanh
from test_mathfn import REL_BOUND, TINY

THREADS = 256


@cuda.jit
def evaluate_kernel(x, out, which):
    """out[i] = σ(x[i]) (which = 0) or tanh(x[i]) (which = 1), with _mathfn's own functions (their
    overloads in device code; their Python versions under the simulator)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        if which == 0:
            out[i] = sigmoid(x[i])
        else:
            out[i] = tanh(x[i])


def evaluate(which, x):
    """σ or tanh of the float32 array x (1-D), computed on the device."""
    out = cuda.device_array(x.shape, x.dtype)
    blocks = max(1, (x.size + THREADS - 1) // THREADS)
    evaluate_kernel[blocks, THREADS](cuda.to_device(x), out, which)
    return out.copy_to_host()


def truth(which, x):
    """σ or tanh of x in float64 (σ split by sign, as test_mathfn.py's truth)."""
    with np.errstate(invalid="ignore"):  # signalling NaNs among the bit patterns
        xd = x.astype(np.float64)
    if which == 0:
        e = np.exp(-np.abs(xd))
        return np.where(xd >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return np.tanh(xd)


def assert_within_bound(name, which, x):
    """test_mathfn.py's bound on the device's results for x: NaN gives NaN; relative error at most
    REL_BOUND where the truth is a normal float32, absolute error below 2^-126 where it is not.
    Returns the worst relative error."""
    got = evaluate(which, x)
    assert got.dtype == np.float32, f"{name}: dtype {got.dtype}"
    got = got.astype(np.float64)
    want = truth(which, x)
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all(), f"{name}: NaN input gave a number"
    normal = ~nan & (np.abs(want) >= TINY)
    rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    worst = float(rel.max()) if rel.size else 0.0
    assert worst <= REL_BOUND, (f"{name}: relative error {worst:.3g} at x = "
                                f"{x[normal][rel.argmax()]!r}")
    tiny = ~nan & ~normal
    assert (np.abs(got[tiny] - want[tiny]) < TINY).all(), \
        f"{name}: results below the normal range off by >= 2^-126"
    return worst


def float32_sweep(stride, ranges=(), per_range=None):
    """float32 values: every stride-th bit pattern of the 2^32, and the float32 values of each
    (low, high) range of `ranges` with both signs (all of them, or per_range spread evenly)."""
    parts = [np.arange(0, 2 ** 32, stride, dtype=np.uint64).astype(np.uint32).view(np.float32)]
    for low, high in ranges:
        lo, hi = (int(np.array(v, np.float32).view(np.uint32)) for v in (low, high))
        bits = (np.arange(lo, hi + 1, dtype=np.uint64) if per_range is None else
                np.linspace(lo, hi, per_range).astype(np.uint64))
        for sign in (0, 1 << 31):
            parts.append((bits | sign).astype(np.uint32).view(np.float32))
    return np.concatenate(parts)
