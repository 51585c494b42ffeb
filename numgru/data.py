"""Data loaders: UEA/UCR `.ts` files, `.npz` archives and CSV time series, and the helpers that
turn them into what a GRUModel trains on (padded batches with lengths, sliding windows).

Every loader reads plain or gzip-compressed files (by the `.gz` suffix) and refuses bad input with a
DataFormatError (a ValueError) that names the file, the line where there is one, and what is wrong.
"""

import csv
import gzip
import io
import os
from dataclasses import dataclass, field

import numpy as np


class DataFormatError(ValueError):
    """A data file that cannot be read as what it claims to be; the message names file and line."""


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


def _read_lines(path):
    try:
        with _open_text(path) as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError) as e:
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
    X, lengths = pad_sequences(sequences, dtype)
    return SequenceData(X, lengths, np.array(labels, np.int64), classes, path)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


# -- .npz --

def open_npz(path, error, what):
    """np.load of an .npz file without pickles; error(message) names path when it is empty or
    not `what`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise error(f"{path}: the file is empty")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError: all "not an npz"
        raise error(f"{path}: not {what} ({e})") from None


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
    archive = open_npz(path, DataFormatError, "a readable .npz archive")
    if not hasattr(archive, "files"):
        raise DataFormatError(f"{path}: holds a single array; expected an .npz archive with X "
                              f"and y")
    with archive:
        needed = ("X", "y") if require_targets else ("X",)
        missing = [k for k in needed if k not in archive.files]
        if missing:
            raise DataFormatError(f"{path}: missing arrays {missing} (has {archive.files})")
        X = np.asarray(archive["X"])
        y = np.asarray(archive["y"]) if "y" in archive.files else None
        lengths = np.asarray(archive["lengths"]) if "lengths" in archive.files else None
    if not np.issubdtype(X.dtype, np.number):
        raise DataFormatError(f"{path}: X: expected numbers, got dtype {X.dtype}")
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataFormatError(f"{path}: X: expected shape (N, T, F) with N, T >= 1, got {X.shape}")
    N, T = X.shape[:2]
    if y is not None and len(y) != N:
        raise DataFormatError(f"{path}: X has {N} sequences but y has {len(y)} targets")
    X, lengths = check_padded(X, lengths, prefix=f"{path}: ", error=DataFormatError)
    X = X.astype(dtype)
    if y is None:
        return SequenceData(X, lengths, None, [], path)
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise DataFormatError(f"{path}: y: integer class labels must be 1-D, got {y.shape}")
        if y.min() < 0:
            raise DataFormatError(f"{path}: y: class labels must be >= 0, got {y.min()}")
        classes = [str(c) for c in range(int(y.max()) + 1)]
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataFormatError(f"{path}: y: NaN or Inf at target "
                                  f"{int(np.argwhere(~np.isfinite(y))[0][0])}")
        y = (y[:, None] if y.ndim == 1 else y).astype(dtype)
        classes = []
    else:
        raise DataFormatError(f"{path}: y: expected integer labels or float targets, got "
                              f"{y.dtype}")
    return SequenceData(X, lengths, y, classes, path)


# -- CSV time series --

def load_csv(path, column=None, dtype="float64"):
    """One numeric column of a CSV file as a 1-D series, in file order.

    column: a header name, a 0-based index, or None for the last column. A first row that is not
    numeric is taken as the header. Returns (values (N,), name).
    """
    path = os.fspath(path)
    lines = _read_lines(path)
    rows = [(no, row) for no, row in enumerate(csv.reader(lines), 1) if row and any(row)]
    if not rows:
        raise DataFormatError(f"{path}: the file is empty")
    header = None
    if not all(_is_float(v) for v in rows[0][1]):
        header = [h.strip() for h in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise DataFormatError(f"{path}: a header but no data rows")
    width = len(rows[0][1])
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
    for name, v in (("window", window), ("horizon", horizon)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
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
