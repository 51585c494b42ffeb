"""Files written atomically: readers see the old file or the new one, never a partial one. Every
file numgru writes (checkpoints, weights, ONNX models, run records) goes through here."""

import os
import tempfile

_CHUNK = 1 << 20  # bytes per write call


def _write_chunk(f, chunk):
    f.write(chunk)


def atomic_write(path, data):
    """Write bytes to path so that readers see the old file or the new one, never a partial one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=directory)
    except OSError as e:
        raise OSError(e.errno, f"writing {path} failed: no temporary file could be made in "
                               f"{directory} ({e.strerror or e}); the file is unchanged") from e
    try:
        with os.fdopen(fd, "wb") as f:
            view = memoryview(data)
            for start in range(0, len(view), _CHUNK):
                _write_chunk(f, view[start:start + _CHUNK])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            # A full disk, a quota, an I/O error: say which file and that the old one stands.
            kept = "is unchanged" if os.path.exists(path) else "did not exist and was not made"
            raise OSError(e.errno, f"writing {path} failed: {e.strerror or e}; the file {kept} "
                                   f"({len(data)} bytes were to be written)") from e
        raise
    # The rename itself is durable only once the folder's entry is on disk.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on folders
        pass
    finally:
        os.close(dir_fd)
