"""Compiling a kernel that this process will need soon in a child process, beside what this one
compiles or runs meanwhile: a fresh install's first training step compiles the backward pass on
another core while the training forward compiles here, instead of after it.

Numba compiles under one lock per process, so two kernels never compile at once in one process;
a child process has its own. The child compiles the kernel for the exact argument types this
process will call it with, and Numba writes it into the shared kernel cache; when this process
needs the kernel, `wait` lets the child finish and Numba loads the kernel from the cache. It is
only an earlier start: when the child cannot run, fails, or is not finished within
_WAIT_SECONDS, this process compiles the kernel itself as it would have anyway (a child past the
limit is stopped). Nothing is done where the kernels are not cached (no cache to share), where
the kernel is already compiled or cached, under an MPI launcher (some MPI libraries do not
tolerate child processes), when only one CPU may be used, or with NUMGRU_PRECOMPILE=off.

The child reads (module, kernel name, argument types, dtype, tile widths) pickled by this process
on its standard input: data this process made, never a file.
"""

import os
import pickle
import subprocess
import sys
import threading

import numpy as np

_WAIT_SECONDS = 300.0

_CHILD = """
import importlib, pickle, sys
module, name, signature, dtype, widths = pickle.loads(sys.stdin.buffer.read())
from numgru.cpu.tile import tile_functions
tile_functions(dtype, widths)
getattr(importlib.import_module(module), name).compile(signature)
"""

_LOCK = threading.Lock()
_SEEN = set()  # keys already started, or found to need nothing
_PENDING = {}  # key -> the child process


def _forget_after_fork():
    """A forked child has none of its parent's children to wait for."""
    global _LOCK
    _LOCK = threading.Lock()
    _PENDING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _enabled():
    from numba.core import config

    from .._jit import CACHE
    from .sync import max_threads
    from .._launch import launch_environment

    if os.environ.get("NUMGRU_PRECOMPILE", "").strip().lower() in ("off", "0", "no", "false"):
        return False
    if not CACHE or config.DISABLE_JIT or not sys.executable:
        return False
    if launch_environment() is not None:
        return False
    return max_threads() > 1


def _cached(dispatcher, signature):
    """Whether Numba's cache already holds the kernel for these argument types (then loading it
    later is cheap). Unknown (an internal API that differs): True, so that nothing is started."""
    try:
        cache = dispatcher._cache
        key = cache._index_key(signature, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:
        return True


def start(key, dispatcher, signature, dtype, widths):
    """Start compiling `dispatcher` (a module-level @njit kernel of numgru) for the argument
    types that signature() returns, and the tile routines of `widths` in dtype, in a child
    process, unless it is not needed (see the module docstring). Once per key and process."""
    with _LOCK:
        if key in _SEEN:
            return
        _SEEN.add(key)
    try:
        if not _enabled():
            return
        types = signature()
        if types in dispatcher.overloads or _cached(dispatcher, types):
            return
        payload = pickle.dumps((dispatcher.py_func.__module__, dispatcher.py_func.__name__,
                                types, np.dtype(dtype).name, tuple(widths)))
        child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child.stdin.write(payload)
            child.stdin.close()
        except OSError:
            child.kill()
            child.wait()
            return
    except Exception:  # only an earlier start: whatever fails here, the kernel compiles later
        return
    with _LOCK:
        _PENDING[key] = child


def wait(key):
    """Before the first call of the kernel started under `key`: let its child finish (at most
    _WAIT_SECONDS), so that the kernel is loaded from the cache rather than compiled twice."""
    if not _PENDING:
        return
    with _LOCK:
        child = _PENDING.pop(key, None)
    if child is None:
        return
    try:
        child.wait(timeout=_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def pending():
    """Keys whose children have not been waited for (for tests)."""
    with _LOCK:
        return sorted(_PENDING)
