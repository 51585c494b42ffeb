"""Mini-batches of variable-length sequences and their running totals: the pieces that the
trainer and the data-parallel stepper share, and `predict`, batched inference for any GRUModel
(the Trainer and the command line use it). Nothing here changes a model."""

import math

import numpy as np

from .._checks import positive_int
from ..data import check_padded, pad_sequences


def as_sequences(X, lengths, dtype, name="X"):
    """(X (N, T, F) padded, lengths (N,)) from a padded array (+ lengths) or a list of (T_i, F)."""
    if isinstance(X, (list, tuple)) and len(X) and np.ndim(X[0]) == 2 and \
            len({np.shape(s)[0] for s in X}) > 1:
        if lengths is not None:
            raise ValueError(f"lengths: {name} is a list of sequences, which carry their own "
                             f"lengths; pass lengths=None")
        X, lengths = pad_sequences(X, dtype)
    arr = np.asarray(X)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name}: expected a numeric (N, T, F) array or a list of (T, F) arrays, "
                        f"got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D array (N, T, F), got shape {arr.shape}")
    N, T = arr.shape[:2]
    if N == 0 or T == 0:
        raise ValueError(f"{name}: expected at least one sequence and one step, got {arr.shape}")
    arr, lengths = check_padded(arr, lengths, name=name)
    return np.ascontiguousarray(arr, dtype=dtype), lengths


def batch_rows(model, X, lengths, y, index):
    """The batch of these rows, cut to its longest sequence, with its per-step mask."""
    lb = lengths[index]
    T = int(lb.max())
    xb = X[index, :T]
    mask = None
    if y is None:
        yb = None
    elif model.head == "sequence":
        yb = y[index, :T]
        mask = np.arange(T)[None, :] < lb[:, None]
    else:
        yb = y[index]
    return xb, lb, yb, mask


def predict(model, X, lengths=None, batch_size=256):
    """The model's outputs for every sequence, in X's order, by batches of batch_size rows each
    cut to its longest sequence (inference: no dropout, nothing kept). X: (N, T, F) padded with
    lengths (N,), or a list of (T_i, F) arrays. Returns (N, O) (logits for classification), or
    (N, T, O) for a per-step head, zero past each length."""
    batch_size = positive_int("batch_size", batch_size)
    X, lengths = as_sequences(X, lengths, model.dtype)
    outs = []
    for start in range(0, len(X), batch_size):
        index = np.arange(start, min(start + batch_size, len(X)))
        xb, lb, _, _ = batch_rows(model, X, lengths, None, index)
        out = model(xb, lengths=lb)
        if model.head == "sequence" and out.shape[1] < X.shape[1]:
            out = np.concatenate([out, np.zeros((len(index), X.shape[1] - out.shape[1],
                                                 out.shape[2]), out.dtype)], axis=1)
        outs.append(out)
    return np.concatenate(outs)


class Totals:
    """Running sums over batches for the mean loss and the metrics, weighted by positions."""

    SIZE = 6  # the length of vector()

    def __init__(self):
        self.loss = 0.0
        self.count = 0
        self.correct = 0
        self.sq = 0.0
        self.abs = 0.0
        self.values = 0

    def add(self, loss, out, target, mask, metrics):
        n = int(mask.sum()) if mask is not None else (out.shape[0] if out.ndim == 2 else
                                                      out.shape[0] * out.shape[1])
        self.loss += loss * n
        self.count += n
        if "accuracy" in metrics:
            hit = out.argmax(axis=-1) == target
            self.correct += int(hit[mask].sum() if mask is not None else hit.sum())
        if "rmse" in metrics or "mae" in metrics:
            diff = out.astype(np.float64) - target
            if mask is not None:
                diff = diff[mask]
            self.sq += float(np.sum(diff * diff))
            self.abs += float(np.sum(np.abs(diff)))
            self.values += diff.size

    def mean_loss(self):
        return self.loss / max(self.count, 1)

    def vector(self):
        """The sums as a float64 vector, to add over ranks."""
        return np.array([self.loss, self.count, self.correct, self.sq, self.abs, self.values],
                        np.float64)

    def add_vector(self, vec):
        self.loss += float(vec[0])
        self.count += int(round(vec[1]))
        self.correct += int(round(vec[2]))
        self.sq += float(vec[3])
        self.abs += float(vec[4])
        self.values += int(round(vec[5]))

    @classmethod
    def from_vector(cls, vec):
        totals = cls()
        totals.add_vector(vec)
        return totals

    def result(self, metrics):
        out = {"loss": self.mean_loss()}
        if "accuracy" in metrics:
            out["accuracy"] = self.correct / max(self.count, 1)
        if "rmse" in metrics:
            out["rmse"] = math.sqrt(self.sq / max(self.values, 1))
        if "mae" in metrics:
            out["mae"] = self.abs / max(self.values, 1)
        return out
