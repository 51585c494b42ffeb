"""Loss functions with their gradients: mean squared error and cross-entropy on logits.

Each returns (loss, grad): the mean loss as a Python float and dL/d(prediction) shaped like the
prediction, in the prediction's dtype. An optional boolean mask picks the positions that count
(for a per-step head: the valid steps); the mean is over those. Reductions follow PyTorch's
`MSELoss()` and `CrossEntropyLoss()` (mean), so values and gradients match them.
"""

import numpy as np

LOSSES = ("mse", "cross_entropy")


def _check_pred(name, pred):
    pred = np.asarray(pred)
    if pred.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {pred.dtype}")
    return pred


def _check_mask(mask, shape):
    """mask: boolean-like array of `shape` (the positions, without the feature/class axis)."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask: expected shape {tuple(shape)}, got {m.shape}")
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)) or \
                not np.isin(m, (0, 1)).all():
            raise TypeError(f"mask: expected a boolean array (or 0/1 values), got dtype {m.dtype}")
        m = m.astype(bool)
    if not m.any():
        raise ValueError("mask: selects no position; the mean loss over nothing is undefined")
    return m


def mse_loss(pred, target, mask=None):
    """Mean of (pred - target)^2 over every element (over the masked positions' elements).

    pred (..., F); target the same shape; mask pred.shape[:-1]. Returns (loss, dL/dpred).
    """
    pred = _check_pred("pred", pred)
    target = np.asarray(target)
    if target.shape != pred.shape:
        raise ValueError(f"target: expected shape {pred.shape} (as pred), got {target.shape}")
    if not (np.issubdtype(target.dtype, np.number) or target.dtype == np.bool_):
        raise TypeError(f"target: expected a numeric array, got dtype {target.dtype}")
    diff = pred.astype(np.float64) - target.astype(np.float64)
    m = _check_mask(mask, pred.shape[:-1]) if pred.ndim else None
    if m is None:
        count = diff.size
    else:
        diff = np.where(m[..., None], diff, 0.0)
        count = int(m.sum()) * (pred.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):  # an inf loss is the caller's to report
        loss = float(np.sum(diff * diff) / count)
    grad = (2.0 / count) * diff
    return loss, grad.astype(pred.dtype)


def cross_entropy_loss(logits, target, mask=None):
    """Mean of -log softmax(logits)[target] over positions (over the masked ones).

    logits (..., C); target integer classes of shape logits.shape[:-1], each in [0, C); mask the
    same shape as target. Returns (loss, dL/dlogits) = (mean, (softmax - onehot) / count).
    """
    logits = _check_pred("logits", logits)
    if logits.ndim < 2:
        raise ValueError(f"logits: expected shape (..., C) with a batch axis, got {logits.shape}")
    target = np.asarray(target)
    if target.shape != logits.shape[:-1]:
        raise ValueError(f"target: expected shape {logits.shape[:-1]} (logits without the class "
                         f"axis), got {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        if np.issubdtype(target.dtype, np.floating) and np.all(target == np.round(target)):
            target = target.astype(np.int64)
        else:
            raise TypeError(f"target: expected integer class labels, got dtype {target.dtype}")
    C = logits.shape[-1]
    m = _check_mask(mask, target.shape)
    counted = target if m is None else target[m]
    if counted.size and (counted.min() < 0 or counted.max() >= C):
        bad = counted[(counted < 0) | (counted >= C)][0]
        raise ValueError(f"target: expected class labels in [0, {C}) (C = {C} logits), got {bad}")
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    log_p = z - log_norm  # (..., C) log softmax
    safe_target = np.where(m, target, 0) if m is not None else target
    picked = np.take_along_axis(log_p, safe_target[..., None], axis=-1)[..., 0]
    grad = np.exp(log_p)
    np.put_along_axis(grad, safe_target[..., None],
                      np.take_along_axis(grad, safe_target[..., None], axis=-1) - 1.0, axis=-1)
    if m is None:
        count = target.size
    else:
        count = int(m.sum())
        picked = np.where(m, picked, 0.0)
        grad = np.where(m[..., None], grad, 0.0)
    loss = float(-picked.sum() / count)
    return loss, (grad / count).astype(logits.dtype)


def get(loss):
    """A loss function from its name ("mse", "cross_entropy") or a callable (pred, target, mask)."""
    if callable(loss):
        return loss
    if loss == "mse":
        return mse_loss
    if loss == "cross_entropy":
        return cross_entropy_loss
    raise ValueError(f"loss: expected one of {LOSSES} or a callable (pred, target, mask) -> "
                     f"(loss, grad), got {loss!r}")
