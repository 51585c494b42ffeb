"""Threads for the recurrence: a step barrier in compiled code and the pool that runs the parts.

A GRU step depends on the whole previous state, so a recurrence split over threads (each owns a
slice of the hidden units) meets once per step. The barrier is a shared int64 counter in an
array: each thread adds 1 (a sequentially consistent atomic, so its stores to the shared state
are visible to the others once they see the count) and waits until the count reaches
P·(number of barriers passed); `arrive` and `wait` are its two halves, so that a part can do
work between them that needs nothing the others write in that step. Waiting spins with the
CPU's pause hint for about _SPINS_BEFORE_SLEEP hints (tens of µs: a partner that is merely a
little behind arrives within them, and no system call is made), then sleeps on the count with
a futex (Linux) until a part arrives; elsewhere it yields the core (sched_yield) instead.

Why sleep rather than yield: when another pool in the process spins on a core (ONNX Runtime's
workers after a call, an OpenMP pool), the partner part shares that core with the spinner and
falls behind while this part waits. A yield keeps this core busy, so nothing moves; a sleeping
part leaves its core idle, the kernel's idle balancing moves a runnable thread there (the
partner, or the spinner away from it), and the partner's arrival wakes this part. A part that
arrives while some part sleeps (ctrl[2], the sleepers) wakes them: one system call, only then.

No Numba threading layer is involved (its OpenMP pool spins against BLAS's threads, and its
workqueue pool aborts on concurrent callers). The parts run on plain Python threads of a small
pool here, each inside a compiled `nogil` function; one caller at a time owns the pool, and a
concurrent caller runs its recurrence on its own thread (same kernel, same results).

ctrl (int64 array, length CTRL_SIZE): [0] the barrier count (its low 32 bits are the futex
word), [1] abort flag (a part that failed to start sets it; the others leave their barriers
and return False; a sleeper sees it within _SLEEP_NS), [2] parts asleep in `wait`, [3] a
sleeper's timeout in ns (0: _SLEEP_NS; the tests lengthen it to show that an arrival, not the
timeout, wakes a sleeper).
"""

import os
import platform
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import CACHE

CTRL_SIZE = 8
_SPINS_BEFORE_SLEEP = 1000
_SLEEP_NS = 2_000_000  # a sleeper's timeout: it looks at the abort flag at least this often


def _element_ptr(context, builder, arrty, arr, idx, idxty):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [context.cast(builder, idx, idxty, types.intp)])


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """arr[idx] += val atomically (sequentially consistent); returns the old value. int64 only."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, idx, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _element_ptr(context, builder, signature.args[0], args[0], args[1],
                           signature.args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """arr[idx], read atomically (sequentially consistent). int64 only."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _element_ptr(context, builder, signature.args[0], args[0], args[1],
                           signature.args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return sig, codegen


_ARCH = platform.machine().lower()


def _emit_pause(builder):
    """The CPU's spin-wait hint as an LLVM intrinsic (Numba's JIT has no inline-asm parser)."""
    if _ARCH in ("x86_64", "amd64", "i686", "x86"):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        builder.call(fn, [])
    elif _ARCH in ("aarch64", "arm64"):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]), "llvm.aarch64.hint")
        builder.call(fn, [ir.Constant(ir.IntType(32), 1)])  # YIELD


@intrinsic
def cpu_relax(typingctx):
    """The CPU's spin-wait hint (x86 pause, ARM yield); nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        _emit_pause(builder)
        return context.get_dummy_value()

    return sig, codegen


# futex(2) through libc's syscall(): its number on the architectures that have one (Linux only).
_FUTEX_SYSCALL = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(_ARCH) \
    if sys.platform.startswith("linux") else None
_FUTEX_WAIT_PRIVATE = 0 | 128
_FUTEX_WAKE_PRIVATE = 1 | 128


def _futex_word(context, builder, arrty, arr, idx, idxty):
    """An i32* to the low 32 bits of the int64 arr[idx] (the futex word)."""
    ptr = _element_ptr(context, builder, arrty, arr, idx, idxty)
    word = builder.bitcast(ptr, ir.IntType(32).as_pointer())
    if sys.byteorder == "big":
        word = builder.gep(word, [ir.Constant(ir.IntType(32), 1)])
    return word


def _syscall(builder, args):
    i64 = ir.IntType(64)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(i64, [i64], var_arg=True), "syscall")
    return builder.call(fn, args)


@intrinsic
def futex_sleep(typingctx, arr, idx, seen, timeout_ns):
    """Sleep while the low 32 bits of arr[idx] still equal those of `seen`, at most timeout_ns
    (futex FUTEX_WAIT; returns at once when the word differs, and may return early). Without
    futex: one sched_yield (POSIX), else one pause."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, idx, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        if _FUTEX_SYSCALL is None:
            if os.name == "posix":
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
                builder.call(fn, [])
            else:
                _emit_pause(builder)
            return context.get_dummy_value()
        word = _futex_word(context, builder, signature.args[0], args[0], args[1],
                           signature.args[1])
        ts_ty = ir.LiteralStructType([i64, i64])  # struct timespec {tv_sec, tv_nsec}
        ts = cgutils.alloca_once(builder, ts_ty)
        billion = ir.Constant(i64, 1_000_000_000)
        field = [ir.Constant(ir.IntType(32), 0)]
        builder.store(builder.sdiv(args[3], billion),
                      builder.gep(ts, field + [ir.Constant(ir.IntType(32), 0)]))
        builder.store(builder.srem(args[3], billion),
                      builder.gep(ts, field + [ir.Constant(ir.IntType(32), 1)]))
        low = builder.zext(builder.trunc(args[2], ir.IntType(32)), i64)
        _syscall(builder, [ir.Constant(i64, _FUTEX_SYSCALL), builder.ptrtoint(word, i64),
                           ir.Constant(i64, _FUTEX_WAIT_PRIVATE), low,
                           builder.ptrtoint(ts, i64), ir.Constant(i64, 0), ir.Constant(i64, 0)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def futex_wake_all(typingctx, arr, idx):
    """Wake every thread asleep on the low 32 bits of arr[idx] (futex FUTEX_WAKE); nothing
    without futex."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        if _FUTEX_SYSCALL is not None:
            i64 = ir.IntType(64)
            word = _futex_word(context, builder, signature.args[0], args[0], args[1],
                               signature.args[1])
            _syscall(builder, [ir.Constant(i64, _FUTEX_SYSCALL), builder.ptrtoint(word, i64),
                               ir.Constant(i64, _FUTEX_WAKE_PRIVATE),
                               ir.Constant(i64, 0x7FFFFFFF)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", cache=CACHE)
def arrive(ctrl, P):
    """The first half of a barrier: this part's writes so far are published to the others."""
    if P > 1:
        atomic_add(ctrl, 0, 1)
        # A sleeper incremented ctrl[2] before reading the count (both sequentially
        # consistent), so either it sees this arrival or this load sees it.
        if atomic_load(ctrl, 2) != 0:
            futex_wake_all(ctrl, 0)


@njit(inline="always", cache=CACHE)
def wait(ctrl, P, n):
    """The second half of the n-th barrier (n = 1, 2, ...): returns when all P parts have
    arrived at it (True), or when a part aborted (False). Work between `arrive` and `wait` must
    not touch what the others write before they arrive (a split barrier: a part that is ahead
    does that work instead of spinning)."""
    if P == 1:
        return True
    target = P * n
    spins = 0
    while atomic_load(ctrl, 0) < target:
        if atomic_load(ctrl, 1) != 0:
            return False
        spins += 1
        if spins < _SPINS_BEFORE_SLEEP:
            cpu_relax()
            continue
        atomic_add(ctrl, 2, 1)
        seen = atomic_load(ctrl, 0)
        if seen < target and atomic_load(ctrl, 1) == 0:
            timeout = ctrl[3]
            futex_sleep(ctrl, 0, seen, timeout if timeout > 0 else _SLEEP_NS)
        atomic_add(ctrl, 2, -1)
    return True


@njit(inline="always", cache=CACHE)
def barrier(ctrl, P, n):
    """The n-th barrier (n = 1, 2, ...) of P parts sharing ctrl. False when aborted."""
    arrive(ctrl, P)
    return wait(ctrl, P, n)


# -- subnormal numbers --
#
# Backpropagation through hundreds of steps drives the gradients of early steps below the
# smallest normal number (1.2e-38 in float32), and x86 cores compute with such subnormal numbers
# tens of times slower: a sequence classifier's backward pass over 500 steps (the loss on the last
# step only) took 3.5 times as long as with gradients on every step. A pass therefore runs with
# subnormal results flushed to zero and subnormal inputs read as zero (MXCSR's FTZ and DAZ bits,
# set for the pass on each thread that runs a part and restored after it, so that the caller's
# own arithmetic is untouched). A flushed value differs from the exact one by less than the
# smallest normal number (2.2e-308 in float64), far below every tolerance numgru is tested to.
# Elsewhere than x86 nothing is changed.

_MXCSR_FLUSH = 0x8040  # FTZ (bit 15) and DAZ (bit 6)


def _mxcsr_call(builder, name, slot):
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]), name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _flush_subnormals(typingctx):
    """Sets FTZ and DAZ; returns the previous MXCSR (-1 where there is none)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        if _ARCH not in ("x86_64", "amd64"):
            return ir.Constant(ir.IntType(64), -1)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(ir.IntType(32), _MXCSR_FLUSH)), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return builder.zext(old, ir.IntType(64))

    return sig, codegen


@intrinsic
def _restore_fp_mode(typingctx, old):
    """Puts back the MXCSR that _flush_subnormals returned."""
    sig = types.void(types.int64)

    def codegen(context, builder, signature, args):
        if _ARCH in ("x86_64", "amd64"):
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=CACHE)
def flush_subnormals():
    """Subnormal numbers flushed to zero on this thread (x86); returns the mode to restore."""
    return _flush_subnormals()


@njit(cache=CACHE)
def restore_fp_mode(old):
    if old >= 0:
        _restore_fp_mode(old)


def _run_kernel(kernel, p, P, ctrl, args):
    """kernel(p, P, ctrl, *args) with subnormals flushed on this thread for its duration."""
    mode = flush_subnormals()
    try:
        kernel(p, P, ctrl, *args)
    finally:
        restore_fp_mode(mode)


# -- the pool --

_POOL = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()  # creating / resizing the pool
_BUSY = threading.Lock()  # one parallel recurrence at a time owns the pool


def _forget_pool_after_fork():
    """A forked child has none of the parent's threads: a pool object inherited from the parent
    would take work that no thread ever runs (a hang), and a lock held at the fork would stay
    held. The child starts with no pool and fresh locks."""
    global _POOL, _POOL_SIZE, _POOL_LOCK, _BUSY, _CPUS
    _CPUS = None  # the child may run on other CPUs
    _POOL = None
    _POOL_SIZE = 0
    _POOL_LOCK = threading.Lock()
    _BUSY = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def max_threads():
    """Threads a recurrence may use: NUMGRU_NUM_THREADS if set, else the CPUs this process may
    run on, capped by NUMBA_NUM_THREADS (Numba's own setting, default the CPU count). The CPU
    count is read once (a system call per pass was measurable on small passes); the variable is
    read at every call, so that changing it takes effect."""
    env = os.environ.get("NUMGRU_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"NUMGRU_NUM_THREADS: expected a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"NUMGRU_NUM_THREADS: expected a positive integer, got {env!r}")
        return n
    global _CPUS
    if _CPUS is None:
        try:
            ncpu = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            ncpu = os.cpu_count() or 1
        _CPUS = max(1, min(ncpu, numba.config.NUMBA_NUM_THREADS))
    return _CPUS


_CPUS = None


def _pool(n_workers):
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n_workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="numgru")
            _POOL_SIZE = n_workers
        return _POOL


def _run_part(kernel, p, P, ctrl, args):
    try:
        _run_kernel(kernel, p, P, ctrl, args)
    except BaseException:
        ctrl[1] = 1  # release the other parts from their barriers
        raise


def run_parts(kernel, P, args, interruptible=False):
    """kernel(p, P, ctrl, *args) for p = 0..P-1, concurrently (p = 0 on this thread). kernel
    must be a nogil compiled function whose parts meet only at `barrier(ctrl, P, n)` and leave
    (returning False) once ctrl[1] is set. Returns the number of parts that ran.

    When another call owns the pool, or P is 1, the whole range runs here as one part.

    interruptible (for passes long enough that a user may press Ctrl-C during one): on the
    main thread, the parts run on other threads while this one waits in short timed waits, so
    that Python can run its signal handlers; when one raises (KeyboardInterrupt), the parts
    are told to stop (ctrl[1]), leave within a step, and the exception is raised once they
    have all left: nothing runs on in the background and the layer stays usable. Short passes
    keep running on the calling thread (no hand-off added to their latency)."""
    ctrl = np.zeros(CTRL_SIZE, np.int64)
    if interruptible and threading.current_thread() is threading.main_thread():
        return _run_interruptible(kernel, P, ctrl, args)
    if P <= 1 or not _BUSY.acquire(blocking=False):
        _run_kernel(kernel, 0, 1, ctrl, args)
        return 1
    try:
        pool = _pool(P - 1)
        futures = [pool.submit(_run_part, kernel, p, P, ctrl, args) for p in range(1, P)]
        errors = []
        try:
            _run_part(kernel, 0, P, ctrl, args)
        except BaseException as exc:
            errors.append(exc)
        for f in futures:  # every part has left the kernel before the arrays are released
            exc = f.exception()
            if exc is not None:
                errors.append(exc)
        if errors:
            raise errors[0]
    finally:
        _BUSY.release()
    if ctrl[1]:
        raise RuntimeError("numgru: a part of the parallel recurrence was aborted")
    return P


_WAIT_S = 0.05  # the longest the main thread waits between chances to run signal handlers


def _run_interruptible(kernel, P, ctrl, args):
    """run_parts for the main thread with every part on another thread (see run_parts)."""
    owned = P > 1 and _BUSY.acquire(blocking=False)
    parts = P if owned else 1
    try:
        if owned:
            pool = _pool(parts)
            futures = [pool.submit(_run_part, kernel, p, parts, ctrl, args) for p in range(parts)]
        else:  # the pool is another call's (or one part is all there is): a thread of its own
            futures = [_own_thread(_run_part, kernel, 0, 1, ctrl, args)]
        try:
            while not all(f.done() for f in futures):
                wait_futures(futures, timeout=_WAIT_S)
        except BaseException:  # KeyboardInterrupt, or another handler's exception
            ctrl[1] = 1  # every part leaves at its next step
            _wait_uninterrupted(futures)
            raise
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
    finally:
        if owned:
            _BUSY.release()
    if ctrl[1]:
        raise RuntimeError("numgru: a part of the parallel recurrence was aborted")
    return parts


def _own_thread(fn, *args):
    """fn(*args) on a new daemon thread; a Future of its result."""
    future = Future()

    def run():
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="numgru-part", daemon=True).start()
    return future


def _wait_uninterrupted(futures):
    """Wait until every part has left its kernel (they own the arrays they write), even if
    more signals arrive meanwhile (the caller re-raises the first)."""
    while True:
        try:
            while not all(f.done() for f in futures):
                wait_futures(futures, timeout=_WAIT_S)
            return
        except BaseException:  # a second Ctrl-C: the parts are already stopping
            continue
