"""Where Numba keeps numgru's compiled kernels, decided once at import: `CACHE` (whether the
kernels are cached at all), `CACHE_DIR` and `CACHE_REASON` (for `numgru info`).

Numba caches a function beside its source file (`__pycache__`) when that is writable, else in a
per-user directory (`~/.cache/numba`), and raises at decoration time when neither is: a
read-only install (site-packages owned by another user, no home directory) could not even
import numgru. Here numgru looks for a writable place in Numba's order, then in the system's
temporary directory (a per-user folder, claimed only for numgru's own files through an extra
locator at the end of Numba's list), and runs uncached (compiling in every process) only when
there is none. NUMBA_CACHE_DIR, when set, is Numba's own choice and is used as it is.
"""

import os
import tempfile

from numba.core import caching, config

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _user_wide_dir():
    try:
        from numba.misc.appdirs import AppDirs
        return AppDirs(appname="numba", appauthor=False).user_cache_dir
    except Exception:
        return None


def _fallback_dir():
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"numgru-kernel-cache-{uid}")


class _NumgruTempLocator(caching.UserProvidedCacheLocator):
    """Numba's cache locator for numgru's own source files only, in `_fallback_dir()`: used when
    neither the package's __pycache__ nor Numba's user-wide directory is writable."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(_fallback_dir(), self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
            return None
        return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)


def _decide():
    if config.CACHE_DIR:
        if _writable(config.CACHE_DIR):
            return True, config.CACHE_DIR, "NUMBA_CACHE_DIR"
    in_tree = os.path.join(_PACKAGE, "__pycache__")
    if _writable(in_tree):
        return True, in_tree, "beside numgru's source files"
    user = _user_wide_dir()
    if user and _writable(user):
        return True, user, "Numba's per-user cache (numgru's own folder is read-only)"
    fallback = _fallback_dir()
    if _writable(fallback):
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        if _NumgruTempLocator not in impl._locator_classes:
            impl._locator_classes.append(_NumgruTempLocator)
        return True, fallback, ("a temporary folder (numgru's folder and Numba's per-user cache "
                                "are not writable)")
    return False, None, ("none: no writable folder was found (numgru's folder, Numba's per-user "
                         "cache, the temporary folder), so every process compiles its kernels; "
                         "set NUMBA_CACHE_DIR to a writable folder")


CACHE, CACHE_DIR, CACHE_REASON = _decide()
