"""Data loaders: UEA/UCR `.ts` files, `.npz` archives and CSV time series, and the helpers that
turn them into what a GRUModel trains on (padded batches with lengths, sliding windows).

Every loader reads plain or gzip-compressed files (by the `.gz` suffix) and refuses bad input with a
DataFormatError (a ValueError) that names the file, the line where there is one, and what is wrong.
"""

import csv
import gzip
import io
import os
import zlib
from dataclasses import dataclass, field

import numpy as np

from ._checks import positive_int
from .errors import DataFormatError


MAX_CLASSES = 100_000  # class labels a file may hold (a label of 10**12 would be 10**12 classes)


@dataclass
class SequenceData:
    """Padded sequences with their lengths: X (N, T, F) zero after each length, lengths (N,),
    y (N,) integer class indices (classification) or (N, K) floats (regression)."""

    X: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    classes: list = field(default_factory=list)  # label text of each class index ([] for regression)
    source: str = ""

    def __len__(self):
        return len(self.X)

    def subset(self, index):
        index = np.asarray(index)
        return SequenceData(self.X[index], self.lengths[index], self.y[index], list(self.classes),
                            self.source)


def _open_text(path):
    """A text stream over path, gunzipped when the name ends in .gz."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _text_limit():
    """Characters of text a loader reads at most: a quarter of the memory available (the lines
    and the parsed numbers take several times the text), so that a small .gz that unpacks to
    more than fits is refused instead of exhausting memory."""
    from ._memory import available_bytes
    free = available_bytes()
    return None if free is None else max(1 << 20, free // 4)


def _read_lines(path):
    try:
        with _open_text(path) as f:
            limit = _text_limit()
            if limit is None:
                return f.read().splitlines()
            parts, total = [], 0
            while True:
                chunk = f.read(1 << 24)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    from ._memory import describe
                    raise DataFormatError(f"{path}: holds more than {describe(limit)} of text "
                                          f"(a quarter of the memory available), more than "
                                          f"numgru can load")
                parts.append(chunk)
            return "".join(parts).splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError, zlib.error) as e:  # a damaged .gz: BadGzipFile, zlib.error, EOF
        if isinstance(e, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: cannot be read as text ({e})") from None


def pad_sequences(sequences, dtype="float32"):
    """(X (N, T_max, F), lengths (N,)) from a list of (T_i, F) arrays, zeros after each length."""
    if len(sequences) == 0:
        raise ValueError("sequences: expected at least one sequence, got none")
    arrays = []
    for i, s in enumerate(sequences):
        a = np.asarray(s, dtype=dtype)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"sequences[{i}]: expected a non-empty (T, F) array, got shape {a.shape}")
        if arrays and a.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"sequences[{i}]: expected {arrays[0].shape[1]} features, got "
                             f"{a.shape[1]}")
        arrays.append(a)
    lengths = np.array([a.shape[0] for a in arrays], np.int64)
    X = np.zeros((len(arrays), int(lengths.max()), arrays[0].shape[1]), dtype)
    for i, a in enumerate(arrays):
        X[i, :len(a)] = a
    return X, lengths


# -- UEA/UCR .ts --

def load_ts(path, dtype="float32"):
    """A UEA/UCR `.ts` classification file: multivariate, variable-length series with class labels.

    Reads the header (@problemName, @dimensions, @equalLength, @classLabel true <labels>, @data),
    then one case per line: dimensions separated by ':', values by ',', the class label last.
    Missing values ('?', NaN) and time-stamped series are refused. y holds indices into `classes`
    (the @classLabel order).
    """
    path = os.fspath(path)
    lines = _read_lines(path)
    if not any(line.strip() for line in lines):
        raise DataFormatError(f"{path}: the file is empty")
    header, classes, dims, data_line = {}, None, None, None
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise DataFormatError(f"{path}:{no}: data before the @data line ({line[:40]!r})")
        key, _, rest = line[1:].partition(" ")
        key = key.lower()
        header[key] = rest.strip()
        if key == "classlabel":
            parts = rest.split()
            if not parts or parts[0].lower() != "true":
                raise DataFormatError(f"{path}:{no}: @classLabel must be 'true' followed by the "
                                      f"labels (numgru reads classification files), got {rest!r}")
            classes = parts[1:]
            if not classes:
                raise DataFormatError(f"{path}:{no}: @classLabel true lists no labels")
            twice = sorted({c for c in classes if classes.count(c) > 1})
            if twice:
                raise DataFormatError(f"{path}:{no}: @classLabel lists {twice} more than once "
                                      f"(each label names one class)")
        elif key == "dimensions":
            try:
                dims = int(rest)
            except ValueError:
                raise DataFormatError(f"{path}:{no}: @dimensions: expected an integer, got "
                                      f"{rest!r}") from None
        elif key == "timestamps" and rest.strip().lower() == "true":
            raise DataFormatError(f"{path}:{no}: @timeStamps true is not supported (numgru reads "
                                  f"series of plain values)")
        elif key == "data":
            data_line = no
            break
    if data_line is None:
        raise DataFormatError(f"{path}: no @data line (is this a .ts file?)")
    if classes is None:
        raise DataFormatError(f"{path}: no @classLabel line before @data")
    index = {c: i for i, c in enumerate(classes)}
    sequences, labels = [], []
    for no in range(data_line + 1, len(lines) + 1):
        line = lines[no - 1].strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 2:
            raise DataFormatError(f"{path}:{no}: expected dimensions separated by ':' and a class "
                                  f"label last, got {line[:40]!r}")
        label = fields[-1].strip()
        if label not in index:
            raise DataFormatError(f"{path}:{no}: class label {label!r} is not one of the "
                                  f"@classLabel labels {classes}")
        channels = fields[:-1]
        if dims is not None and len(channels) != dims:
            raise DataFormatError(f"{path}:{no}: expected {dims} dimensions (@dimensions), got "
                                  f"{len(channels)}")
        series = []
        for d, text in enumerate(channels):
            values = text.split(",")
            try:
                row = np.array([float(v) for v in values], np.float64)
            except ValueError:
                bad = next(v for v in values if not _is_float(v))
                raise DataFormatError(f"{path}:{no}: dimension {d}: {bad.strip()!r} is not a "
                                      f"number") from None
            if not np.isfinite(row).all():
                raise DataFormatError(f"{path}:{no}: dimension {d}: missing or non-finite value "
                                      f"at step {int(np.argmin(np.isfinite(row)))}")
            series.append(row)
        steps = {len(r) for r in series}
        if len(steps) != 1:
            raise DataFormatError(f"{path}:{no}: the dimensions have different lengths "
                                  f"{[len(r) for r in series]}; each step needs every dimension")
        sequences.append(np.stack(series, axis=1))
        labels.append(index[label])
    if not sequences:
        raise DataFormatError(f"{path}: no cases after the @data line")
    if dims is None and len({s.shape[1] for s in sequences}) > 1:
        raise DataFormatError(f"{path}: cases have different numbers of dimensions")
    _check_padded_size(path, len(sequences), max(len(s) for s in sequences),
                       sequences[0].shape[1], dtype)
    with np.errstate(over="ignore"):  # values beyond the dtype's range: refused just below
        X, lengths = pad_sequences(sequences, dtype)
    too_large = not np.isfinite(X).all()
    if too_large:
        n, t, f = (int(i) for i in np.argwhere(~np.isfinite(X))[0])
        raise DataFormatError(f"{path}: case {n}, dimension {f}, step {t}: "
                              f"{float(sequences[n][t, f])!r} is beyond the range of "
                              f"{np.dtype(dtype).name}")
    return SequenceData(X, lengths, np.array(labels, np.int64), classes, path)


def _check_padded_size(path, N, T, F, dtype):
    """Refuse, before allocating, padded data (N, T, F) that would not fit in memory: one long
    case among many short ones pads every case to its length."""
    from ._memory import beyond, describe
    need = N * T * F * np.dtype(dtype).itemsize
    over = beyond(need)
    if over is not None:
        raise DataFormatError(f"{path}: padding its {N} cases to the longest one ({T} steps, "
                              f"{F} dimensions) would take {describe(need)}, {over}")


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


# -- .npz --

def read_npz(path, error, what):
    """Every array of an .npz archive, read in full and checked: name -> array.

    Anything wrong raises error(message), the message naming path and the problem: not a zip
    archive (or a single .npy), a damaged entry (its CRC-32 differs: zip's own check of every
    byte), an entry that is not a .npy array or appears twice, an array of Python objects (which
    would need pickle: never loaded), a header whose shape and dtype disagree with the bytes
    stored, or arrays that declare more memory than this process has (checked before anything
    is allocated, so a small compressed file cannot claim gigabytes).
    """
    import zipfile

    from ._memory import beyond, describe
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise error(f"{path}: a folder, not {what}")
    if os.path.getsize(path) == 0:
        raise error(f"{path}: the file is empty")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        with open(path, "rb") as f:
            single = f.read(6) == b"\x93NUMPY"
        raise error(f"{path}: not {what} ("
                    + ("a single .npy array, not an .npz archive" if single else
                       f"not a zip archive: {e}") + ")") from None
    arrays = {}
    with archive:
        infos = archive.infolist()
        gap = _unlisted_bytes(archive, infos)
        if gap is not None:
            raise error(f"{path}: not {what} (damaged: {gap})")
        declared = sum(info.file_size for info in infos)
        over = beyond(declared)
        if over is not None:
            raise error(f"{path}: its entries would take {describe(declared)}, {over}")
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise error(f"{path}: entry {name!r} is not a .npy array (not {what})")
            key = name[:-len(".npy")]
            if key in arrays:
                raise error(f"{path}: holds two arrays named {key!r} (not {what})")
            try:
                arrays[key] = _read_npy_entry(archive, info, key)
            except _EntryError as e:
                raise error(f"{path}: array {key!r}: {e}") from None
            except Exception as e:  # zipfile.BadZipFile (CRC), zlib.error, EOFError, OSError...
                raise error(f"{path}: array {key!r} cannot be read: {type(e).__name__}: {e} "
                            f"(a damaged or truncated file)") from None
    return arrays


class _EntryError(Exception):
    pass


def _unlisted_bytes(archive, infos):
    """None when the directory's entries tile the archive from its first byte to the directory
    itself; else what is wrong. Zip's CRC-32 covers each entry's bytes, not the directory: a
    damaged entry count or offset can drop an entry (an .npz without its `lengths`, say)
    without any other error, leaving its bytes unlisted."""
    fp = archive.fp
    spans = []
    for info in infos:
        try:
            fp.seek(info.header_offset)
            head = fp.read(30)
        except (OSError, ValueError, OverflowError):  # an offset before the file or past 2**63
            head = b""
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            return f"entry {info.filename!r} is not where the directory says"
        names, extra = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
        end = info.header_offset + 30 + names + extra + info.compress_size
        spans.append((info.header_offset, end, 24 if info.flag_bits & 0x08 else 0))
    position, slack = 0, 0  # slack: an entry's data descriptor (12 to 24 bytes) may follow it
    for start, end, after in sorted(spans):
        if not position <= start <= position + slack:
            return (f"bytes {position}..{start} are in no entry the directory lists"
                    if start > position else f"entries overlap at byte {start}")
        position, slack = end, after
    if not position <= archive.start_dir <= position + slack:
        return f"bytes {position}..{archive.start_dir} are in no entry the directory lists"
    return None


def _read_npy_entry(archive, info, key):
    """One .npy entry of a zip archive as a writable array, its header checked against the
    bytes the archive holds before any allocation."""
    fmt = np.lib.format
    with archive.open(info) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise _EntryError(f"unsupported .npy format version {version}")
        except ValueError as e:
            raise _EntryError(f"not a .npy array ({e})") from None
        if dtype.hasobject:
            raise _EntryError(f"holds Python objects (dtype {dtype}); numgru never loads those "
                              f"(reading them would run pickle, which can execute code)")
        if any(n < 0 for n in shape):
            raise _EntryError(f"negative size in its shape {shape}")
        count = 1
        for n in shape:
            count *= int(n)
        need = count * dtype.itemsize
        stored = info.file_size - f.tell()
        if need != stored:
            raise _EntryError(f"its header declares shape {shape} of {dtype} ({need} bytes) but "
                              f"the archive stores {stored} bytes after it")
        data = bytearray(need)
        view = memoryview(data)
        got = 0
        while got < need:
            chunk = f.read(min(need - got, 1 << 24))
            if not chunk:
                break
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        if got != need or f.read(1):
            raise _EntryError(f"holds {got} bytes of data where its header declares {need}")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def check_padded(X, lengths, name="X", prefix="", error=ValueError):
    """(X with zeros after each length, lengths int64 (N,)) for padded X (N, T, F): lengths must
    be integers in [1, T] (None = all T) and every valid step finite; padding may hold anything."""
    N, T = X.shape[:2]
    if lengths is None:
        lengths = np.full(N, T, np.int64)
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
            raise error(f"{prefix}lengths: expected {N} integers (one per sequence of {name}), "
                        f"got {lengths.dtype} {lengths.shape}")
        if lengths.min() < 1 or lengths.max() > T:
            raise error(f"{prefix}lengths: expected values in [1, {T}], got min {lengths.min()}, "
                        f"max {lengths.max()}")
    valid = np.arange(T)[None, :] < lengths[:, None]
    finite = np.isfinite(X)
    if not finite.all():
        bad = ~finite & valid[:, :, None]
        if bad.any():
            n, t, f = (int(i) for i in np.argwhere(bad)[0])
            raise error(f"{prefix}{name}: NaN or Inf at sequence {n}, step {t}, feature {f}")
    return np.where(valid[:, :, None], X, 0), lengths.astype(np.int64)


def load_npz(path, dtype="float32", require_targets=True):
    """An `.npz` archive with X (N, T, F) (or (N, T) for one feature), y (N,) or (N, K), and
    optionally lengths (N,). Integer y is taken as class indices 0..C-1. With
    require_targets=False, y may be absent (y is then None: data to predict on)."""
    path = os.fspath(path)
    archive = read_npz(path, DataFormatError, "a readable .npz archive of X and y")
    needed = ("X", "y") if require_targets else ("X",)
    missing = [k for k in needed if k not in archive]
    if missing:
        raise DataFormatError(f"{path}: missing arrays {missing} (has {sorted(archive)})")
    X = archive["X"]
    y = archive.get("y")
    lengths = archive.get("lengths")
    if X.dtype.kind not in "biuf":  # complex would lose its imaginary part, dates their meaning
        raise DataFormatError(f"{path}: X: expected real numbers, got dtype {X.dtype}")
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3 or 0 in X.shape:
        raise DataFormatError(f"{path}: X: expected shape (N, T, F) with N, T, F >= 1, got "
                              f"{X.shape}")
    N, T = X.shape[:2]
    if y is not None and (y.ndim == 0 or len(y) != N):
        raise DataFormatError(f"{path}: X has {N} sequences but y has "
                              f"{'a single value' if y.ndim == 0 else f'{len(y)} targets'}")
    if lengths is not None and lengths.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: lengths: expected integers, got dtype {lengths.dtype}")
    X, lengths = check_padded(X, lengths, prefix=f"{path}: ", error=DataFormatError)
    X = _cast_finite(path, "X", X, dtype)
    if y is None:
        return SequenceData(X, lengths, None, [], path)
    if y.dtype.kind in "iu":
        if y.ndim != 1:
            raise DataFormatError(f"{path}: y: integer class labels must be 1-D, got {y.shape}")
        if y.min() < 0:
            raise DataFormatError(f"{path}: y: class labels must be >= 0, got {y.min()}")
        if y.max() >= MAX_CLASSES:
            raise DataFormatError(f"{path}: y: class label {y.max()} would make {y.max() + 1} "
                                  f"classes (numgru takes at most {MAX_CLASSES}); integer y holds "
                                  f"class indices 0..C-1 (float y: regression targets)")
        classes = [str(c) for c in range(int(y.max()) + 1)]
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if y.ndim not in (1, 2) or y.ndim == 2 and y.shape[1] == 0:
            raise DataFormatError(f"{path}: y: float targets must be (N,) or (N, K) with K >= 1, "
                                  f"got shape {y.shape}")
        if not np.isfinite(y).all():
            raise DataFormatError(f"{path}: y: NaN or Inf at target "
                                  f"{int(np.argwhere(~np.isfinite(y))[0][0])}")
        y = _cast_finite(path, "y", y[:, None] if y.ndim == 1 else y, dtype)
        classes = []
    else:
        raise DataFormatError(f"{path}: y: expected integer labels or float targets, got "
                              f"{y.dtype}")
    return SequenceData(X, lengths, y, classes, path)


def _cast_finite(path, name, values, dtype):
    """values (all finite) in dtype, refusing those beyond its range (1e39 is inf in float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values).astype(dtype)
    if not np.isfinite(out).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise DataFormatError(f"{path}: {name}: the value {np.asarray(values)[where].item()!r} at "
                              f"index {where} is beyond the range of {np.dtype(dtype).name}")
    return out


# -- CSV time series --

def load_csv(path, column=None, dtype="float64"):
    """One numeric column of a CSV file as a 1-D series, in file order.

    column: a header name, a 0-based index, or None for the last column. A first row that is not
    numeric is taken as the header. Returns (values (N,), name).
    """
    path = os.fspath(path)
    lines = _read_lines(path)
    reader = csv.reader(lines)
    try:
        rows = [(no, row) for no, row in enumerate(reader, 1) if row and any(row)]
    except csv.Error as e:  # a NUL byte, an unterminated quote, a field beyond the size limit
        raise DataFormatError(f"{path}:{reader.line_num}: not CSV text ({e})") from None
    if not rows:
        raise DataFormatError(f"{path}: the file is empty")
    header = None
    if not all(_is_float(v) for v in rows[0][1]):
        header = [h.strip() for h in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise DataFormatError(f"{path}: a header but no data rows")
    width = len(rows[0][1])
    if header is not None and len(header) != width:
        raise DataFormatError(f"{path}: the header names {len(header)} columns, the rows have "
                              f"{width} fields")
    if column is None:
        col = width - 1
    elif isinstance(column, str) and not column.lstrip("-").isdigit():
        if header is None or column not in header:
            raise DataFormatError(f"{path}: no column named {column!r} (header: {header})")
        col = header.index(column)
    else:
        col = int(column)
        if not -width <= col < width:
            raise DataFormatError(f"{path}: column index {col} out of range (rows have {width} "
                                  f"columns)")
        col %= width
    values = np.empty(len(rows), np.float64)
    for k, (no, row) in enumerate(rows):
        if len(row) != width:
            raise DataFormatError(f"{path}:{no}: expected {width} fields, got {len(row)}")
        text = row[col].strip()
        try:
            v = float(text)
        except ValueError:
            raise DataFormatError(f"{path}:{no}: column {col}: {text!r} is not a number") from None
        if not np.isfinite(v):
            raise DataFormatError(f"{path}:{no}: column {col}: {text!r} is missing or not finite")
        values[k] = v
    name = header[col] if header else f"column {col}"
    return values.astype(dtype), name


def sliding_windows(series, window, horizon=1, dtype="float32"):
    """Forecasting pairs from a 1-D series: X[i] = series[i:i+window] (as (window, 1)),
    y[i] = series[i+window : i+window+horizon]. Returns X (M, window, 1), y (M, horizon)."""
    s = np.asarray(series, np.float64)
    if s.ndim != 1:
        raise ValueError(f"series: expected a 1-D array, got shape {s.shape}")
    positive_int("window", window)
    positive_int("horizon", horizon)
    M = len(s) - window - horizon + 1
    if M < 1:
        raise ValueError(f"series: {len(s)} values are too few for window={window} + "
                         f"horizon={horizon}")
    idx = np.arange(M)[:, None]
    X = s[idx + np.arange(window)[None, :]][:, :, None]
    y = s[idx + window + np.arange(horizon)[None, :]]
    return X.astype(dtype), y.astype(dtype)


class Standardizer:
    """Per-feature z-scores fitted on the valid steps of training data: (x - mean) / std."""

    def __init__(self, mean=None, std=None):
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)

    def fit(self, X, lengths=None):
        X = np.asarray(X, np.float64)
        if X.ndim == 1:
            X = X[:, None, None]
        if lengths is None:
            rows = X.reshape(-1, X.shape[-1])
        else:
            valid = np.arange(X.shape[1])[None, :] < np.asarray(lengths)[:, None]
            rows = X[valid]
        self.mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X, lengths=None):
        X = np.asarray(X)
        out = (X - self.mean) / self.std
        if lengths is not None and X.ndim == 3:
            valid = np.arange(X.shape[1])[None, :] < np.asarray(lengths)[:, None]
            out = np.where(valid[:, :, None], out, 0)
        return out.astype(X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64)

    def inverse(self, Z):
        return np.asarray(Z) * self.std + self.mean

    def to_dict(self):
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d):
        return cls(d["mean"], d["std"])
