"""Fit and predict for the estimator wrappers (numgru.sklearn, numgru.aeon) and the defaults they
share with `numgru train`: sequences in, a trained GRUModel out, with per-channel standardisation,
a held-out (stratified) validation split, early stopping and best-epoch restore.

Imports neither scikit-learn nor aeon: the wrappers check their inputs in their own conventions and
hand this module padded float arrays (N, T, F) with lengths, and encoded targets.
"""

import inspect

import numpy as np

from ._checks import fraction, is_number, positive_int, positive_number
from .data import Standardizer
from .model import GRUModel
from .optim import OPTIMIZERS, CosineLR
from .training.trainer import Trainer

# The defaults, chosen on small UEA sets (README: Japanese Vowels, BasicMotions). With enough data
# for a validation split of at least `min_validation_size` sequences (10% of 200 and more): up to
# 200 epochs at a constant learning rate, stopped 25 epochs after the best validation loss, the
# best epoch's weights restored. With less (BasicMotions: 40 sequences, whose 4 held out gave a
# noisy loss that stopped some runs at 55% test accuracy): all data, 200 epochs, cosine schedule.
def set_hyperparameters(self, hidden_size=64, num_layers=1, bidirectional=True, reset_after=True,
                        dropout=0.0, epochs=200, batch_size=16, lr=0.005, weight_decay=0.0,
                        optimizer="adam", schedule="auto", clip_norm=1.0,
                        validation_fraction=0.1, min_validation_size=20, n_iter_no_change=25,
                        standardize=True, dtype="float32", device="auto", random_state=None,
                        verbose=False):
    """The estimators' hyper-parameters, declared here alone: the scikit-learn and aeon estimators'
    __init__ is this function (its signature is what their get_params reads), which stores each
    argument unchecked, as both libraries require; fit checks them (check_params)."""
    for name, value in locals().items():
        if name != "self":
            setattr(self, name, value)


DEFAULTS = {name: p.default for name, p in inspect.signature(set_hyperparameters).parameters.items()
            if name != "self"}


def validation_split(y, fraction, rng, stratify, min_size=1):
    """(fit rows, validation rows): a random `fraction` held out, per class when stratify (each
    class with at least two members gives at least one); no split when that holds out fewer than
    min_size rows or leaves nothing to fit."""
    n = len(y)
    if fraction <= 0 or n < 4:
        return np.arange(n), np.array([], np.int64)
    if stratify:
        held = []
        for c in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == c))
            k = int(round(fraction * len(members)))
            if len(members) >= 2:
                k = max(1, min(k, len(members) - 1))
            else:
                k = 0
            held.extend(members[:k].tolist())
        held = np.array(sorted(held), np.int64)
    else:
        k = int(round(fraction * n))
        held = np.sort(rng.permutation(n)[:k])
    if len(held) < max(1, min_size) or len(held) >= n:
        return np.arange(n), np.array([], np.int64)
    keep = np.setdiff1d(np.arange(n), held)
    return keep, held


def _check_params(p):
    for name in ("hidden_size", "num_layers", "epochs", "batch_size", "min_validation_size"):
        positive_int(name, p[name])
    if p["n_iter_no_change"] is not None:
        positive_int("n_iter_no_change", p["n_iter_no_change"])
    positive_number("lr", p["lr"])
    if not is_number(p["weight_decay"]) or p["weight_decay"] < 0:
        raise ValueError(f"weight_decay: expected a number >= 0, got {p['weight_decay']!r}")
    positive_number("clip_norm", p["clip_norm"], or_none=True)
    fraction("validation_fraction", p["validation_fraction"])
    if p["optimizer"] not in ("adam", "adamw"):
        raise ValueError(f"optimizer: expected 'adam' or 'adamw', got {p['optimizer']!r}")
    if p["schedule"] not in ("auto", "none", "cosine"):
        raise ValueError(f"schedule: expected 'auto', 'none' or 'cosine', got {p['schedule']!r}")


def seed_of(random_state):
    """An int seed from None (fresh entropy), an int, or a numpy Generator/RandomState."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (1 << 63))
    if isinstance(random_state, (bool, np.bool_)):
        raise ValueError(f"random_state: expected None, an int or a numpy generator, got "
                         f"{random_state!r}")
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2 ** 31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 63 - 1))
    raise ValueError(f"random_state: expected None, an int or a numpy generator, got "
                     f"{random_state!r}")


class Fitted:
    """A trained model with what prediction needs: the input scaler, the target scaler."""

    def __init__(self, model, x_scaler, y_scaler, history, best_epoch):
        self.model, self.x_scaler, self.y_scaler = model, x_scaler, y_scaler
        self.history, self.best_epoch = history, best_epoch

    def outputs(self, X, lengths, batch_size=256):
        """Model outputs in float64: logits (N, C) or standardised targets (N, K).

        The GRU runs per batch as numgru does; the Linear head is applied here row by row in
        float64 (an elementwise product summed per row, not a BLAS product, whose rounding can
        depend on how many rows come together), so each sequence's output does not depend on
        which others it is predicted with.
        """
        X = self._scale(X, lengths)
        gru, fc = self.model.gru, self.model.fc.state_dict()
        weight, bias = fc["weight"].astype(np.float64), fc["bias"].astype(np.float64)
        out = np.empty((len(X), weight.shape[0]), np.float64)
        for start in range(0, len(X), batch_size):
            rows = slice(start, min(start + batch_size, len(X)))
            lb = lengths[rows]
            T = int(lb.max())
            y, _ = gru(X[rows, :T], lengths=lb)
            last = y[np.arange(len(lb)), lb - 1].astype(np.float64)  # (b, D·H)
            out[rows] = (last[:, None, :] * weight[None, :, :]).sum(axis=2) + bias
        return out

    def _scale(self, X, lengths):
        if self.x_scaler is None:
            return np.ascontiguousarray(X, self.model.dtype)
        return np.ascontiguousarray(self.x_scaler.transform(X, lengths), self.model.dtype)

    def state(self):
        """Plain data for pickling (numgru models hold thread-local state and backend modules)."""
        return {"config": self.model.config(), "weights": self.model.state_dict(),
                "x_scaler": None if self.x_scaler is None else self.x_scaler.to_dict(),
                "y_scaler": None if self.y_scaler is None else self.y_scaler.to_dict(),
                "history": self.history, "best_epoch": self.best_epoch}

    @classmethod
    def from_state(cls, state, device="auto"):
        model = GRUModel.from_config(state["config"], device=device)
        model.load_state_dict(state["weights"])
        xs = None if state["x_scaler"] is None else Standardizer.from_dict(state["x_scaler"])
        ys = None if state["y_scaler"] is None else Standardizer.from_dict(state["y_scaler"])
        return cls(model, xs, ys, state["history"], state["best_epoch"])


def fit(params, X, lengths, y, task):
    """Train a GRUModel. X (N, T, F) float, zero past lengths (N,); y: class indices (N,)
    (task "classify", with params["n_classes"]) or targets (N, K) float ("regress")."""
    p = dict(DEFAULTS)
    p.update(params)
    _check_params(p)
    seed = seed_of(p["random_state"])
    rng = np.random.default_rng(seed)
    x_scaler = Standardizer().fit(X, lengths) if p["standardize"] else None
    Xs = x_scaler.transform(X, lengths) if x_scaler is not None else X
    y_scaler = None
    if task == "classify":
        output_size, loss, targets = int(p["n_classes"]), "cross_entropy", y
    else:
        y_scaler = Standardizer().fit(y)
        targets = y_scaler.transform(y)
        output_size, loss = y.shape[1], "mse"
    fit_rows, val_rows = validation_split(y if task == "classify" else np.zeros(len(y)),
                                          p["validation_fraction"], rng, task == "classify",
                                          p["min_validation_size"])
    model = GRUModel(X.shape[2], p["hidden_size"], output_size, num_layers=p["num_layers"],
                     bidirectional=p["bidirectional"], reset_after=p["reset_after"],
                     dtype=p["dtype"], device=p["device"], seed=seed, dropout=p["dropout"])
    opt_cls = OPTIMIZERS[p["optimizer"]]
    opt = opt_cls(model, lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    schedule = p["schedule"]
    if schedule == "auto":  # cosine when every epoch runs, constant under early stopping
        schedule = "none" if len(val_rows) else "cosine"
    sched = CosineLR(opt, T_max=p["epochs"]) if schedule == "cosine" else None
    trainer = Trainer(model, opt, loss=loss, metrics=[], clip_norm=p["clip_norm"],
                      scheduler=sched, progress=bool(p["verbose"]))
    validation = None
    if len(val_rows):
        validation = (Xs[val_rows], targets[val_rows], lengths[val_rows])
    history = trainer.fit(Xs[fit_rows], targets[fit_rows], lengths=lengths[fit_rows],
                          epochs=p["epochs"], batch_size=p["batch_size"],
                          validation_data=validation, seed=seed,
                          early_stopping=p["n_iter_no_change"] if validation else None,
                          restore_best=validation is not None)
    return Fitted(model, x_scaler, y_scaler, history, trainer.best_epoch)


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
