"""Batch-split parallelism for the CPU kernels: numgru's own worker threads, each with one BLAS
thread, run disjoint row ranges of the batch through the whole recurrence.

Why not a Numba `prange`: the recurrence needs a GEMM per step, and a parallel region that calls
BLAS either waits on BLAS's own spinning threads (OpenMP layer: seen 40 times slower) or aborts on
concurrent calls from several Python threads (workqueue layer). Here the kernels are @njit(nogil)
functions called from a small pool of Python threads; each pool thread asks SciPy's OpenBLAS (the
BLAS Numba's GEMMs call) for one thread of its own with `openblas_set_num_threads_local`, so the
two kinds of threads never compete. Rows are independent in the recurrence, so a chunk needs no
synchronisation until its last step. When the symbol is missing (another BLAS build) or only one
thread is allowed, everything runs in the calling thread.

The thread count is Numba's (`NUMBA_NUM_THREADS`, default: the number of cores).
"""

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pool = None
_set_local = None
_probed = False


def _find_set_local():
    """openblas_set_num_threads_local from the OpenBLAS that SciPy ships, or None."""
    try:
        import scipy
    except ImportError:  # pragma: no cover - scipy is a dependency
        return None
    base = os.path.dirname(os.path.dirname(scipy.__file__))
    for path in sorted(glob.glob(os.path.join(base, "scipy.libs", "libscipy_openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            fn = lib.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    return None


def num_threads():
    """Threads the batch split may use: Numba's setting, 1 when BLAS can't be told to stay on one
    thread per worker."""
    global _set_local, _probed
    if not _probed:
        with _lock:
            if not _probed:
                _set_local = _find_set_local()
                _probed = True
    if _set_local is None:
        return 1
    from numba import config

    return max(1, int(config.NUMBA_NUM_THREADS))


def _one_blas_thread():
    _set_local(1)


def _get_pool(n):
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="numgru",
                                       initializer=_one_blas_thread)
        return _pool


def chunks(B, n_chunks):
    """[(b0, b1), ...]: n_chunks contiguous, nearly equal row ranges of 0..B."""
    bounds = [B * i // n_chunks for i in range(n_chunks + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n_chunks) if bounds[i + 1] > bounds[i]]


def split_count(B, work_per_row, min_rows=4, min_work=2_000_000):
    """How many row chunks to run in parallel: 1 unless each chunk keeps at least min_rows rows
    and the call has enough work (multiply-adds) to pay for waking the workers."""
    n = num_threads()
    if n < 2 or B < 2 * min_rows or B * work_per_row < min_work:
        return 1
    return min(n, B // min_rows)


def run(fn, ranges):
    """fn(b0, b1) for every range: in the pool when there are several, else here."""
    if len(ranges) == 1:
        fn(*ranges[0])
        return
    pool = _get_pool(len(ranges))
    futures = [pool.submit(fn, b0, b1) for b0, b1 in ranges]
    for f in futures:
        f.result()
