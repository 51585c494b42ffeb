"""Trainer: one optimizer step per mini-batch of variable-length sequences, and the epoch loop
around it (shuffling, validation, history, early stopping, best-model restore, checkpoints with
exact resume, a tqdm progress bar).

Each mini-batch is cut to its own longest sequence and handed to the model with its lengths, so
padding neither costs steps nor reaches the loss. With the same seed, data, machine and thread count
a fit gives the same loss curve bit for bit: all randomness (shuffling, dropout) comes from seeded
generators whose states the checkpoints carry.
"""

import contextlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from .. import backend, losses
from .._checks import is_int, positive_int, positive_number
from ..errors import NonFiniteLossError
from ..io import checkpoint as ckpt_io
from ..optim import Optimizer
from . import distributed as _distributed
from .batches import Totals, as_sequences, batch_rows, predict


class Trainer:
    """Fits a GRUModel with an optimizer and a loss ("mse", "cross_entropy", or a callable
    (pred, target, mask) -> (loss, grad)).

    metrics: names computed each epoch; "accuracy" (default with cross_entropy), "rmse", "mae".
    clip_norm: clip gradients to this global L2 norm before each step (None = no clipping).
    scheduler: a numgru learning-rate schedule, stepped once per epoch.
    distributed: True (mpi4py's COMM_WORLD) or an mpi4py communicator: data-parallel training,
    launched with `mpiexec -n N python script.py`. Every rank passes the same data; batch_size is
    the global batch, of which each rank takes its share; rank 0's weights and optimizer state are
    broadcast at construction and at the start of each fit; the gradients are summed with one
    Allreduce per step; metrics, validation and errors are shared; rank 0 alone writes files.
    chunk_steps: train on batches longer than this in chunks of that many steps
    (GRUModel.forward_backward_chunked): the same gradients, the memory of one chunk instead
    of the whole sequence, one more forward pass; for very long sequences (unidirectional).
    deterministic: True, or a number of rows c: each global batch is cut into chunks of c rows
    (1 for True) whose gradients are added in a fixed order, so that the results are bitwise the
    same for any number of ranks (slower; see the README).
    """

    def __init__(self, model, optimizer, loss="mse", metrics=None, clip_norm=None, scheduler=None,
                 progress=True, distributed=False, deterministic=False, chunk_steps=None):
        self.model = model
        chunk_steps = positive_int("chunk_steps", chunk_steps, or_none=True)
        if chunk_steps is not None:
            if getattr(getattr(model, "gru", None), "bidirectional", False):
                raise ValueError("chunk_steps: a bidirectional GRU reads each sequence from both "
                                 "ends; training in chunks of time needs a unidirectional one")
            if (distributed is not None and distributed is not False) or deterministic:
                raise ValueError("chunk_steps: training in chunks of time is for one process; "
                                 "data-parallel training takes whole sequences")
        self.chunk_steps = chunk_steps
        if isinstance(optimizer, Optimizer):
            optimizer.check_bound_to(model)
        self.optimizer = optimizer
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
        self.loss_fn = losses.get(loss)
        self.classification = loss == "cross_entropy"
        if metrics is None:
            metrics = ["accuracy"] if self.classification else []
        for m in metrics:
            if m not in ("accuracy", "rmse", "mae"):
                raise ValueError(f"metrics: expected names from ('accuracy', 'rmse', 'mae'), got {m!r}")
            if m == "accuracy" and not self.classification:
                raise ValueError("metrics: 'accuracy' needs loss='cross_entropy'")
        self.metrics = list(metrics)
        self.clip_norm = positive_number("clip_norm", clip_norm, or_none=True)
        self.scheduler = scheduler
        self.progress = progress
        self.global_step = 0
        self.history = {}
        self.stop_training = False
        self.best_epoch = None
        self._saved_epoch = None  # the epoch of the fit checkpoint last written or read
        self._dp = None
        chunk = _distributed.check_deterministic(deterministic)
        if (distributed is not None and distributed is not False) or chunk is not None:
            self._dp = _distributed.DataParallel(self, distributed, chunk)

    def __getstate__(self):
        if self._dp is not None:
            raise TypeError("a data-parallel Trainer cannot be copied or pickled (it holds its "
                            "ranks' communicator); copy its model, or a Trainer without "
                            "distributed=/deterministic=")
        return dict(self.__dict__)

    @property
    def rank(self):
        """This process's rank in data-parallel training (0 without distribution)."""
        return 0 if self._dp is None else self._dp.rank

    @property
    def data_parallel(self):
        """The DataParallel that runs this trainer's steps across ranks, or None."""
        return self._dp

    @property
    def world_size(self):
        """The number of ranks training together (1 without distribution)."""
        return 1 if self._dp is None else self._dp.size

    def _guarded(self, what, fn):
        """fn(); in data-parallel training, every rank raises if any rank's fn raised."""
        return fn() if self._dp is None else self._dp.guarded(what, fn)

    # -- checks --

    def _check_targets(self, y, N, T, lengths, name="y"):
        """y as the loss wants it: int (N,) / (N, T) for cross-entropy, float (N, O) / (N, T, O).
        Per-step targets are checked at valid steps only (padding may hold anything)."""
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != N:
            raise ValueError(f"X and {name}: X has {N} sequences but {name} has {len(y)} targets")
        O = self.model.output_size
        per_step = self.model.head == "sequence"
        if self.classification:
            if not np.issubdtype(y.dtype, np.integer):
                if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
                    y = y.astype(np.int64)
                else:
                    raise TypeError(f"{name}: expected integer class labels, got dtype {y.dtype}")
            want = (N, T) if per_step else (N,)
            if y.shape != want:
                raise ValueError(f"{name}: expected shape {want} of class labels, got {y.shape}")
            bad = (y < 0) | (y >= O)
            if per_step:
                bad &= np.arange(T)[None, :] < lengths[:, None]
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{name}: class labels must be in [0, {O}) (output_size = {O}), "
                                 f"got {int(y[where])} at index {where[0] if len(where) == 1 else where}")
            return y.astype(np.int64)
        if not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"{name}: expected numeric targets, got dtype {y.dtype}")
        want = (N, T, O) if per_step else (N, O)
        if y.shape != want and y.size == math.prod(want):
            y = y.reshape(want)  # e.g. (N,) targets for a single output
        if y.shape != want:
            raise ValueError(f"{name}: expected shape {want}, got {y.shape}")
        bad = ~np.isfinite(y)
        if per_step:
            bad &= (np.arange(T)[None, :] < lengths[:, None])[:, :, None]
        if bad.any():
            raise ValueError(f"{name}: NaN or Inf at target {tuple(int(i) for i in np.argwhere(bad)[0])}")
        return np.where(np.isfinite(y), y, 0).astype(self.model.dtype)  # padding's NaN -> 0

    # -- one step --

    @_distributed.collective
    def train_step(self, x, y, lengths=None, mask=None):
        """One optimizer step on this batch; returns its mean loss (a float).

        For a per-step head the mask defaults to the valid steps given by lengths. In
        data-parallel training x is the global batch (the same on every rank), of which each
        rank takes its share.
        """
        if self._dp is not None:
            x = np.asarray(x)
            if x.ndim != 3:
                raise ValueError(f"x: expected a 3-D array (B, T, input_size), got shape {x.shape}")
            B, T = x.shape[:2]
            lengths = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths)
            if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
                raise ValueError(f"lengths: expected {B} integers, got {lengths.dtype} "
                                 f"{lengths.shape}")
            loss, _ = self._dp.step(x, lengths, np.asarray(y), np.arange(B), T, mask)
            return loss
        out, loss = self._step(x, y, lengths, mask)
        return loss

    def _step(self, x, y, lengths, mask):
        model = self.model
        model.zero_grad()
        step = self.global_step + 1

        def loss_of(out):
            m = mask
            if m is None and model.head == "sequence" and lengths is not None:
                m = np.arange(out.shape[1])[None, :] < np.asarray(lengths)[:, None]
            return self.checked_loss(*self.loss_fn(out, y, m), step)

        with _overflow_as_non_finite(step):
            if self.chunk_steps is not None and np.shape(x)[1] > self.chunk_steps:
                out, loss = model.forward_backward_chunked(x, loss_of, self.chunk_steps, lengths)
            else:
                out = model.forward(x, lengths=lengths, train=True)
                loss, grad = loss_of(out)
                model.backward(grad)
        self.finish_step(step, loss)
        return out, loss

    # -- the parts of a step that local and data-parallel training share --

    def checked_loss(self, loss, grad, step, where=""):
        """(loss, grad) of the loss function, or NonFiniteLossError where either is NaN or
        infinite (`where` says which rows, in data-parallel training)."""
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss}{where} at step {step}; the parameters were "
                                     f"not updated (they hold the values after step "
                                     f"{step - 1})", step)
        if not np.isfinite(grad).all():
            raise NonFiniteLossError(f"the loss gradient contains NaN or Inf{where} at step "
                                     f"{step} (loss {loss}); the parameters were not updated",
                                     step)
        return loss, grad

    def backward(self, grad, step):
        """model.backward(grad), an overflow inside it raised as NonFiniteLossError."""
        with _overflow_as_non_finite(step):
            self.model.backward(grad)

    def finish_step(self, step, loss):
        """The end of every optimizer step: the gradient norm checked, the gradients clipped to
        clip_norm, the update made unless it would make a parameter or an optimizer state value
        NaN or infinite (Optimizer.next_step_is_finite). NonFiniteLossError where the norm
        or the update is not finite: the parameters and the optimizer keep their values after
        step - 1. In data-parallel training every rank holds the same summed gradient, so every
        rank reaches the same verdict."""
        opt = self.optimizer
        norm = opt.grad_norm()
        if not math.isfinite(norm):
            raise NonFiniteLossError(f"the gradient norm is {norm} at step {step} (loss {loss}); "
                                     f"the parameters were not updated", step)
        if self.clip_norm is not None:
            opt.clip_grad_norm(self.clip_norm)
        if isinstance(opt, Optimizer) and not opt.next_step_is_finite():
            raise NonFiniteLossError(f"the update at step {step} (loss {loss}, lr {opt.lr:g}) "
                                     f"would make parameters NaN or Inf; it was not made: the "
                                     f"parameters were not updated (they hold the values after "
                                     f"step {step - 1})", step)
        opt.step()
        self.global_step = step

    # -- inference --

    def predict(self, X, lengths=None, batch_size=256):
        """Model outputs for every sequence (logits for classification), in X's order."""
        return predict(self.model, X, lengths, batch_size)

    @_distributed.collective
    def evaluate(self, X, y, lengths=None, batch_size=256):
        """{"loss": mean loss, and each metric} over the whole set (inference, no dropout).
        In data-parallel training each rank evaluates its share and the totals are summed."""
        def prepare():
            X_, lengths_ = as_sequences(X, lengths, self.model.dtype)
            return X_, lengths_, self._check_targets(y, len(X_), X_.shape[1], lengths_)
        Xc, lc, yc = self._guarded("checking the evaluation data", prepare)
        if self._dp is not None:
            self._dp.check_same_data({"evaluation data": (Xc, lc, yc)})
        return self._evaluate(Xc, lc, yc, batch_size)

    def _evaluate(self, X, lengths, y, batch_size=256):
        if self._dp is not None:
            return Totals.from_vector(self._dp.evaluate(X, lengths, y, batch_size)) \
                .result(self.metrics)
        totals = Totals()
        for start in range(0, len(X), batch_size):
            self.evaluate_batch(totals, X, lengths, y,
                                 np.arange(start, min(start + batch_size, len(X))))
        return totals.result(self.metrics)

    def evaluate_batch(self, totals, X, lengths, y, index):
        xb, lb, yb, mask = batch_rows(self.model, X, lengths, y, index)
        out = self.model(xb, lengths=lb)
        loss, _ = self.loss_fn(out, yb, mask)
        totals.add(loss, out, yb, mask, self.metrics)

    # -- the epoch loop --

    @_distributed.collective
    def fit(self, X, y, epochs=1, batch_size=32, lengths=None, validation_data=None, shuffle=True,
            seed=None, callbacks=(), early_stopping=None, monitor=None, restore_best=None,
            checkpoint=None, checkpoint_every=1, resume=False, extra=None, progress=None):
        """Train for `epochs` epochs (in total, counting those a resumed checkpoint already did).

        X: (N, T, F) padded with `lengths` (N,), or a list of (T_i, F) arrays. y: class labels
        (N,) for cross-entropy ((N, T) with a per-step head) or targets (N, O) ((N, T, O)).
        validation_data: (Xv, yv) or (Xv, yv, lengths_v); adds val_loss and val_<metric>.
        early_stopping: stop after this many epochs without improvement of `monitor`
        (default "val_loss" with validation data, else "loss").
        restore_best: at the end, load the parameters of the best epoch by `monitor` (default:
        True when there is validation data).
        checkpoint: a file path written every `checkpoint_every` epochs and at the end; with
        resume=True and an existing file, training continues from it exactly.
        callbacks: callables (trainer, epoch, logs); set trainer.stop_training = True to stop.
        Returns the history: {"epoch", "loss", metrics..., "val_loss", ..., "lr", "time"} lists.

        Data-parallel (distributed=...): call it on every rank with the same data; batch_size is
        the global batch. Callbacks run on every rank (one that stops stops all); rank 0 alone
        writes the checkpoint, and resume reads it on rank 0 and shares it, so a run may resume
        on another number of ranks.
        """
        positive_int("epochs", epochs)
        positive_int("batch_size", batch_size)
        X, lengths, y, val = self._guarded(
            "checking the training data",
            lambda: self._fit_data(X, y, lengths, validation_data, monitor))
        if self._dp is not None:
            self._dp.check_same_data({"training data": (X, lengths, y),
                                      "validation data": val or ()})
        run = _FitRun(X=X, lengths=lengths, y=y, val=val, epochs=epochs, batch_size=batch_size,
                      shuffle=shuffle, callbacks=callbacks, early_stopping=early_stopping,
                      monitor=monitor or ("val_loss" if val is not None else "loss"),
                      restore_best=val is not None if restore_best is None else restore_best,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, extra=extra)
        state = self._start(checkpoint, resume, seed)
        self.stop_training = False
        show = (self.progress if progress is None else progress) and self.rank == 0
        bar = _Progress(show, self.model, epochs,
                        total=run.steps_per_epoch * max(0, epochs - state.epoch))
        try:
            for epoch in range(state.epoch + 1, epochs + 1):
                logs = self._run_epoch(run, state, epoch, bar)
                if self._end_epoch(run, state, logs, bar):
                    break
        finally:
            bar.close()
        if run.restore_best and state.best_params is not None:
            self.model.set_flat_params(state.best_params)
        self.best_epoch = state.best_epoch
        return self.history

    def _fit_data(self, X, y, lengths, validation_data, monitor):
        """fit's data checked and converted: (X, lengths, y, (Xv, yv, lengths_v) or None)."""
        X, lengths = as_sequences(X, lengths, self.model.dtype)
        y = self._check_targets(y, len(X), X.shape[1], lengths)
        val = None
        if validation_data is not None:
            val = self._validation_data(validation_data, X.shape[2])
        logged = {"epoch", "loss", *self.metrics, "lr", "time"}
        if val is not None:
            logged |= {"val_loss", *(f"val_{m}" for m in self.metrics)}
        if monitor is not None and monitor not in logged:
            raise ValueError(f"monitor: {monitor!r} is not among the logged values "
                             f"{sorted(logged)}")
        return X, lengths, y, val

    def _validation_data(self, validation_data, features):
        """(Xv, yv, lengths_v) from fit's validation_data, checked as the training data are."""
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data: expected (X, y) or (X, y, lengths)")
        Xv, yv = validation_data[0], validation_data[1]
        lv = validation_data[2] if len(validation_data) == 3 else None
        Xv, lv = as_sequences(Xv, lv, self.model.dtype, name="validation X")
        if Xv.shape[2] != features:
            raise ValueError(f"validation_data: X has {Xv.shape[2]} features, the training X "
                             f"has {features}")
        yv = self._check_targets(yv, len(Xv), Xv.shape[1], lv, name="validation y")
        return Xv, yv, lv

    def _start(self, checkpoint, resume, seed):
        """The loop state fit starts from: a fresh one, or the checkpoint's when resuming (read
        on rank 0 and shared, in data-parallel training)."""
        self._shuffle_rng = np.random.default_rng(seed)
        self.history = {}
        if self._dp is not None:
            return self._dp_start(checkpoint, resume)
        exists = bool(checkpoint) and os.path.exists(checkpoint)
        state = self._restore(checkpoint) if resume and exists else _LoopState()
        state.last_good = checkpoint if exists else None
        return state

    def _run_epoch(self, run, state, epoch, bar):
        """One pass over the training data in (shuffled) batches, then over the validation data;
        returns the epoch's logs."""
        t0 = time.perf_counter()
        bar.begin_epoch(epoch)
        N = len(run.X)
        order = self._shuffle_rng.permutation(N) if run.shuffle else np.arange(N)
        totals = Totals()
        for b in range(run.steps_per_epoch):
            index = order[b * run.batch_size:(b + 1) * run.batch_size]
            lr = self.optimizer.lr
            try:
                self._fit_step(run, index, totals)
            except (NonFiniteLossError, _distributed.DistributedError) as e:
                where = f"epoch {epoch}, batch {b + 1} of {run.steps_per_epoch}, lr {lr:g}"
                raise _with_context(e, where, epoch, state.last_good, self._saved_epoch) from None
            bar.step(totals.mean_loss())
        logs = {"epoch": epoch, **totals.result(self.metrics)}
        if run.val is not None:
            Xv, yv, lv = run.val
            for k, v in self._evaluate(Xv, lv, yv).items():
                logs[f"val_{k}"] = v
        logs["lr"] = self.optimizer.lr
        logs["time"] = time.perf_counter() - t0
        return logs

    def _fit_step(self, run, index, totals):
        """One optimizer step on these rows of the training data (each rank on its share, in
        data-parallel training), its loss and metric sums added to totals."""
        if self._dp is None:
            xb, lb, yb, mask = batch_rows(self.model, run.X, run.lengths, run.y, index)
            out, loss = self._step(xb, yb, lb, mask)
            totals.add(loss, out, yb, mask, self.metrics)
        else:
            _, vec = self._dp.step(run.X, run.lengths, run.y, index,
                                   int(run.lengths[index].max()))
            totals.add_vector(vec)

    def _end_epoch(self, run, state, logs, bar):
        """After an epoch: the history, the schedule, the best epoch, the callbacks, the
        checkpoint. Returns whether to stop."""
        epoch = logs["epoch"]
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        bar.end_epoch(logs)
        if self.scheduler is not None:
            self.scheduler.step()
        self._track_best(run, state, logs)
        state.epoch = epoch
        self._guarded("running the callbacks",
                      lambda: [cb(self, epoch, logs) for cb in run.callbacks])
        if self._dp is not None:  # a callback that stops one rank stops all
            self.stop_training = self._dp.any(self.stop_training)
        stop = self.stop_training or (run.early_stopping is not None
                                      and state.wait >= run.early_stopping)
        if run.checkpoint is not None and (epoch % run.checkpoint_every == 0
                                           or epoch == run.epochs or stop):
            self._write_checkpoint(run, state)
        return stop

    def _track_best(self, run, state, logs):
        """A better monitored value makes this epoch the best (its parameters kept, with
        restore_best); another counts towards early stopping."""
        if run.monitor not in logs:
            raise ValueError(f"monitor: {run.monitor!r} is not among the logged values "
                             f"{sorted(logs)}")
        value = logs[run.monitor]
        if state.best_value is None or value < state.best_value:
            state.best_value, state.best_epoch, state.wait = value, logs["epoch"], 0
            if run.restore_best:
                state.best_params = self.model.get_flat_params()
        else:
            state.wait += 1

    # -- checkpoints --

    def save(self, path, extra=None):
        """A checkpoint of the model, the optimizer and the schedule (no epoch-loop state).
        In data-parallel training only rank 0 writes (the others return at once; no collective,
        so calling it on rank 0 alone is fine)."""
        if self.rank != 0:
            return
        ckpt_io.save_checkpoint(path, self.model, self.optimizer, self.scheduler,
                                training={"global_step": self.global_step}, extra=extra)

    def _write_checkpoint(self, run, state):
        """fit's checkpoint of the epoch just done (rank 0 alone writes it, in data-parallel
        training); it becomes the last good one."""
        if self._dp is None:
            self._save(run.checkpoint, state, run.extra)
        else:
            self._dp.on_root(f"writing the checkpoint {run.checkpoint}", self._save,
                             run.checkpoint, state, run.extra)
        self._saved_epoch = state.epoch
        state.last_good = run.checkpoint

    def _save(self, path, state, extra):
        """Write the checkpoint: the model, optimizer and schedule, and the loop's state."""
        training = {"epoch": state.epoch, "global_step": self.global_step,
                    "best_value": state.best_value, "best_epoch": state.best_epoch,
                    "wait": state.wait, "history": self.history,
                    "shuffle_rng": self._shuffle_rng.bit_generator.state,
                    "dropout_rng": self.model.gru.dropout_rng.bit_generator.state}
        arrays = {} if state.best_params is None else {"best_params": state.best_params}
        ckpt_io.save_checkpoint(path, self.model, self.optimizer, self.scheduler, training=training,
                                extra=extra, arrays=arrays)

    def _dp_start(self, checkpoint, resume):
        """Data-parallel start of fit: rank 0 reads the checkpoint (when resuming), then its
        parameters, optimizer, schedule, random generators and loop state go to every rank."""
        dp = self._dp
        exists = dp.group.bcast(bool(checkpoint) and dp.rank == 0 and os.path.exists(checkpoint))
        restored = None
        if resume and exists:  # rank 0's state; None on the others
            restored = dp.on_root(f"reading the checkpoint {checkpoint}", self._restore,
                                  checkpoint)
        state = restored or _LoopState()
        loop = {"state": state.counters(), "history": self.history,
                "saved_epoch": self._saved_epoch,
                "shuffle_rng": self._shuffle_rng.bit_generator.state}
        loop, arrays = dp.sync_from_root(loop, {"best_params": state.best_params})
        self.history = {k: list(v) for k, v in loop["history"].items()}
        self._saved_epoch = loop["saved_epoch"]
        self._shuffle_rng.bit_generator.state = loop["shuffle_rng"]
        return _LoopState(**loop["state"], best_params=arrays["best_params"],
                          last_good=checkpoint if exists else None)

    def _restore(self, path):
        """Load a fit checkpoint into the model, optimizer, schedule and generators; returns
        its loop state."""
        ck = ckpt_io.load_checkpoint(path)
        ckpt_io.check_model_matches(ck, self.model, path)
        training = ck.meta.get("training") or {}
        if "epoch" not in training:
            raise ckpt_io.CheckpointError(f"{path}: holds no epoch-loop state (saved by "
                                          f"Trainer.save, not by fit); cannot resume from it")
        loop = _loop_state(training, path)
        best = ck.arrays.get("extra/best_params")
        if best is not None and (best.shape != (self.model.num_parameters(),)
                                 or best.dtype.kind != "f" or not np.isfinite(best).all()):
            raise ckpt_io.CheckpointError(f"{path}: damaged checkpoint: best_params is "
                                          f"{best.dtype} {best.shape}, expected "
                                          f"{self.model.num_parameters()} finite values")
        opt_state = ck.optimizer_state()
        if opt_state is None:
            raise ckpt_io.CheckpointError(f"{path}: holds no optimizer state; cannot resume")
        # Everything is checked before anything changes: a damaged file leaves the model, the
        # optimizer and the generators as they were.
        saved_params = self.model.get_flat_params()
        saved_opt = self.optimizer.state_dict()
        try:
            shuffle, dropout = (np.random.default_rng() for _ in range(2))
            shuffle.bit_generator.state = loop["shuffle_rng"]
            dropout.bit_generator.state = loop["dropout_rng"]
            self.model.load_state_dict(ck.model_state())
            self.optimizer.load_state_dict(opt_state)
            if self.scheduler is not None and ck.meta.get("scheduler") is not None:
                self.scheduler.load_state_dict(ck.meta["scheduler"])  # checks, then sets
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            self.model.set_flat_params(saved_params)
            self.optimizer.load_state_dict(saved_opt)
            raise ckpt_io.CheckpointError(f"{path}: cannot resume from it: {e}") from None
        self._shuffle_rng.bit_generator.state = shuffle.bit_generator.state
        self.model.gru.dropout_rng.bit_generator.state = dropout.bit_generator.state
        self.global_step = loop["global_step"]
        self.history = loop["history"]
        self._saved_epoch = loop["epoch"]
        return _LoopState(epoch=loop["epoch"], best_value=loop["best_value"],
                          best_epoch=loop["best_epoch"], wait=loop["wait"],
                          best_params=None if best is None else best.copy())


def _loop_state(training, path):
    """The epoch loop's state from a checkpoint's training record, every field checked."""
    def bad(key, expected):
        raise ckpt_io.CheckpointError(f"{path}: damaged checkpoint: training.{key}: expected "
                                      f"{expected}, got {str(training.get(key))[:80]!r}")

    def count(key):
        v = training.get(key)
        if not is_int(v, 0):
            bad(key, "a non-negative integer")
        return v

    out = {k: count(k) for k in ("epoch", "global_step", "wait")}
    best_value = training.get("best_value")
    if best_value is not None and (isinstance(best_value, bool)
                                   or not isinstance(best_value, (int, float))):
        bad("best_value", "a number or null")
    best_epoch = training.get("best_epoch")
    if best_epoch is not None and not (is_int(best_epoch, 1) and best_epoch <= out["epoch"]):
        bad("best_epoch", f"null or an epoch in [1, {out['epoch']}]")
    history = training.get("history")
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        bad("history", "an object of lists")
    for key in ("shuffle_rng", "dropout_rng"):
        if not isinstance(training.get(key), dict):
            bad(key, "a generator's state")
    out.update(best_value=best_value, best_epoch=best_epoch,
               history={k: list(v) for k, v in history.items()},
               shuffle_rng=training["shuffle_rng"], dropout_rng=training["dropout_rng"])
    return out


@dataclass
class _FitRun:
    """One call of fit, its arguments checked: the data (X (N, T, F), lengths (N,), y as the
    loss wants it, val (Xv, yv, lengths_v) or None) and how to train on it."""

    X: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    val: tuple
    epochs: int
    batch_size: int
    shuffle: bool
    callbacks: tuple
    early_stopping: int  # or None
    monitor: str
    restore_best: bool
    checkpoint: str  # or None
    checkpoint_every: int
    extra: dict  # or None

    @property
    def steps_per_epoch(self):
        return -(-len(self.X) // self.batch_size)


@dataclass
class _LoopState:
    """Where fit's epoch loop stands. A fit checkpoint's "training" record holds the first four
    fields under these names (beside the step count, the history and the generators' states),
    and best_params as its "best_params" array."""

    epoch: int = 0  # the last epoch done
    best_value: float = None  # the best monitored value so far (lower is better)
    best_epoch: int = None
    wait: int = 0  # epochs since the best one
    best_params: np.ndarray = None  # (num_parameters,) of the best epoch, kept for restore_best
    last_good: str = None  # the checkpoint a failure points to: the last written or read

    def counters(self):
        return {"epoch": self.epoch, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "wait": self.wait}


@contextlib.contextmanager
def _overflow_as_non_finite(step):
    """A FloatingPointError from the model (an overflow inside backward: GRUModel says so) as
    NonFiniteLossError of this step; a NonFiniteLossError (one itself) passes unchanged."""
    try:
        yield
    except NonFiniteLossError:
        raise
    except FloatingPointError as e:
        raise NonFiniteLossError(f"{e} at step {step}; the parameters were not updated",
                                 step) from None


def _with_context(e, where, epoch, checkpoint, checkpoint_epoch):
    """The step's exception again, with where it happened and the last good checkpoint."""
    suffix = f" ({where})"
    if checkpoint:
        suffix += f"; the last good checkpoint is {checkpoint} (epoch {checkpoint_epoch})"
    if isinstance(e, NonFiniteLossError):
        new = NonFiniteLossError(f"{e}{suffix}", e.step, epoch, checkpoint)
    else:
        new = type(e)(f"{e}{suffix}", e.ranks, e.type_name)
    for attr in ("all_ranks", "ranks", "rank"):
        if attr in vars(e):
            setattr(new, attr, getattr(e, attr))
    return new


def _describe(logs):
    return " ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in ("epoch", "time", "lr"))


class _NoBar:
    def update(self, n=1):
        pass

    def reset(self, total=None):
        pass

    def set_description(self, text):
        pass

    def set_postfix_str(self, text, refresh=True):
        pass

    def close(self):
        pass


class _Progress:
    """fit's progress bar: one tick per batch over the epochs left, the running loss, then the
    epoch's logs. A first run compiles the kernels during its first step (seconds): the bar says
    so once, and its rate and ETA start after that step instead of counting it."""

    def __init__(self, show, model, epochs, total):
        self.bar = _progress_bar(show, total)
        self.epochs, self.epoch = epochs, None
        self.compiling = show and _kernels_to_compile(model)

    def begin_epoch(self, epoch):
        self.epoch = epoch
        self.bar.set_description("compiling numgru's kernels (once per install)" if self.compiling
                                 else f"epoch {epoch}/{self.epochs}")

    def step(self, mean_loss):
        if self.compiling:
            self.compiling = False
            self.bar.reset()
            self.bar.set_description(f"epoch {self.epoch}/{self.epochs}")
        self.bar.update(1)
        self.bar.set_postfix_str(f"loss {mean_loss:.4f}", refresh=False)

    def end_epoch(self, logs):
        self.bar.set_postfix_str(_describe(logs), refresh=True)

    def close(self):
        self.bar.close()


def _kernels_to_compile(model):
    """Whether the first training step of this model will compile the CPU kernels (neither this
    process nor the kernel cache has them): a hint for the progress bar only."""
    return not backend.kernels_cached(getattr(model, "device", "numpy"))


def _progress_bar(enabled, total):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.25, leave=True)
