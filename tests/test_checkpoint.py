"""Checkpoints: atomic writes (a writer killed mid-write leaves the previous file intact), exact
resume, non-finite losses that stop training and keep the last good checkpoint, and the checks on
format version and model shape."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import numgru as ng
from numgru.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

BIG = dict(input_size=4, hidden_size=384, output_size=3)  # ~1.8 MB of float32: several chunks

STALLING_WRITER = r"""
import sys, time
import numgru as ng
from numgru.io import atomic, checkpoint as ck
path = sys.argv[1]
model = ng.GRUModel(**{big}, seed=1)
ck.save_checkpoint(path, model)                       # the good checkpoint (weights of seed 1)
model.flat_params[:] = 0.5                           # different weights for the next write
written = []
def stall_after_first_chunk(f, chunk):
    f.write(chunk)
    written.append(len(chunk))
    if len(written) == 1:
        f.flush()
        print("writing", flush=True)
        time.sleep(60)                               # killed here, mid-write
atomic._write_chunk = stall_after_first_chunk
ck.save_checkpoint(path, model)
print("finished", flush=True)
"""

LOOPING_WRITER = r"""
import sys
import numgru as ng
from numgru.io import checkpoint as ck
path = sys.argv[1]
model = ng.GRUModel(**{big}, seed=1)
for i in range(100000):
    model.flat_params[:] = i
    ck.save_checkpoint(path, model, training={{"i": i}})
    print(i, flush=True)
"""


def _spawn(tmp_path, source):
    script = tmp_path / "writer.py"
    script.write_text(source.format(big=BIG))
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "model.ckpt")],
                            stdout=subprocess.PIPE, text=True)


def test_writer_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    proc = _spawn(tmp_path, STALLING_WRITER)
    try:
        line = proc.stdout.readline().strip()
        assert line == "writing", line
        partial = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
        assert len(partial) == 1  # the new file exists only as a temporary, half written
        final_size = os.path.getsize(tmp_path / "model.ckpt")
        assert 0 < os.path.getsize(tmp_path / partial[0]) < final_size
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    model, ckpt = ng.load_model(tmp_path / "model.ckpt")
    expected = ng.GRUModel(**BIG, seed=1)
    assert np.array_equal(model.flat_params, expected.flat_params)
    assert ckpt.meta["format_version"] == 1


def test_writer_killed_at_random_moments_never_leaves_a_torn_file(tmp_path):
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = _spawn(tmp_path, LOOPING_WRITER)
        try:
            assert proc.stdout.readline().strip() == "0"
            time.sleep(float(rng.uniform(0.05, 0.4)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        ck = load_checkpoint(tmp_path / "model.ckpt")
        i = ck.meta["training"]["i"]
        state = ck.model_state()
        assert all(np.all(v == i) for v in state.values())  # one whole write, never a mix


def _setup(seed=0):
    rng = np.random.default_rng(1)
    N, T = 24, 6
    X = rng.standard_normal((N, T, 3))
    lengths = rng.integers(2, T + 1, N)
    y = rng.integers(0, 3, N)
    model = ng.GRUModel(3, 5, 3, num_layers=2, dropout=0.2, seed=seed)
    opt = ng.AdamW(model, lr=0.02)
    trainer = ng.Trainer(model, opt, loss="cross_entropy", scheduler=ng.CosineLR(opt, 5),
                         progress=False)
    return trainer, (X, y, lengths)


def test_resume_equals_uninterrupted(tmp_path):
    trainer, (X, y, lengths) = _setup()
    kw = dict(lengths=lengths, epochs=5, batch_size=5, seed=3,
              validation_data=(X[:8], y[:8], lengths[:8]))
    full = trainer.fit(X, y, checkpoint=tmp_path / "full.ckpt", **kw)

    class Crash(Exception):
        pass

    def crash_in_epoch_3(tr, epoch, logs):
        if epoch == 3:
            raise Crash  # after epoch 2's checkpoint was written, before epoch 3's
    first, _ = _setup()
    with pytest.raises(Crash):
        first.fit(X, y, checkpoint=tmp_path / "part.ckpt", callbacks=[crash_in_epoch_3], **kw)
    assert load_checkpoint(tmp_path / "part.ckpt").meta["training"]["epoch"] == 2
    resumed, _ = _setup(seed=99)  # other initial weights: the checkpoint must replace them all
    history = resumed.fit(X, y, checkpoint=tmp_path / "part.ckpt", resume=True, **kw)
    for key in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert history[key] == full[key], key
    assert np.array_equal(resumed.model.flat_params, trainer.model.flat_params)
    assert resumed.global_step == trainer.global_step == 25
    assert resumed.best_epoch == trainer.best_epoch
    for name in ("exp_avg", "exp_avg_sq"):
        assert np.array_equal(resumed.optimizer.state[name][0], trainer.optimizer.state[name][0])


class _NanAtStep:
    def __init__(self, step):
        self.step, self.calls = step, 0

    def __call__(self, pred, target, mask=None):
        self.calls += 1
        loss, grad = ng.cross_entropy_loss(pred, target, mask)
        return (float("nan"), grad) if self.calls == self.step else (loss, grad)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer, (X, y, lengths) = _setup()
    trainer.loss_fn = _NanAtStep(12)  # 5 steps per epoch: epoch 3, batch 2
    trainer.classification = True
    path = tmp_path / "run.ckpt"
    snapshots = {}
    keep = lambda tr, e, logs: snapshots.__setitem__(e, tr.model.flat_params.copy())  # noqa: E731
    with pytest.raises(ng.NonFiniteLossError) as info:
        trainer.fit(X, y, lengths=lengths, epochs=5, batch_size=5, seed=0, checkpoint=path,
                    callbacks=[keep])
    message = str(info.value)
    assert "loss is nan at step 12" in message and "epoch 3, batch 2 of 5" in message
    assert str(path) in message and "(epoch 2)" in message
    assert info.value.step == 12 and info.value.epoch == 3 and info.value.checkpoint == path
    ck = load_checkpoint(path)
    assert ck.meta["training"]["epoch"] == 2
    model, _ = ng.load_model(path)
    assert np.array_equal(model.flat_params, snapshots[2])


def test_overflowing_loss_is_caught_before_the_update():
    model = ng.GRUModel(2, 3, 1, dtype="float64", seed=0)
    trainer = ng.Trainer(model, ng.SGD(model, lr=0.1), loss="mse", progress=False)
    before = model.flat_params.copy()
    with pytest.raises(ng.NonFiniteLossError, match="loss is inf at step 1"):
        trainer.train_step(np.ones((2, 3, 2)), np.full((2, 1), 1e200))
    assert np.array_equal(model.flat_params, before)


def _rewrite_meta(path, change):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_newer_format_version_and_non_checkpoints_are_refused(tmp_path):
    model = ng.GRUModel(3, 4, 2, seed=0)
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, model)
    _rewrite_meta(path, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99 is newer.*version 1"):
        ng.load_model(path)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.ckpt")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a numgru checkpoint"):
        load_checkpoint(tmp_path / "text.ckpt")
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(CheckpointError, match="no __meta__"):
        load_checkpoint(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        load_checkpoint(tmp_path / "nothing.ckpt")


def test_checkpoint_of_another_model_shape_is_refused(tmp_path):
    trainer, (X, y, lengths) = _setup()
    path = tmp_path / "run.ckpt"
    trainer.fit(X, y, lengths=lengths, epochs=1, batch_size=8, checkpoint=path)
    other = ng.GRUModel(3, 7, 3, num_layers=2, seed=0)
    t2 = ng.Trainer(other, ng.AdamW(other), loss="cross_entropy", progress=False)
    with pytest.raises(CheckpointError, match=r"another model shape: hidden_size 5 \(checkpoint\) "
                                              r"vs 7 \(model\)"):
        t2.fit(X, y, lengths=lengths, epochs=2, checkpoint=path, resume=True)
    # Parameters edited to another shape in an otherwise matching file are named too.
    _rewrite_meta(path, lambda m: m["model"]["config"].update(hidden_size=7))
    with pytest.raises(CheckpointError, match=r"'gru.weight_ih_l0' has shape \(15, 3\)"):
        t2.fit(X, y, lengths=lengths, epochs=2, checkpoint=path, resume=True)


def test_load_model_rebuilds_the_same_model(tmp_path):
    model = ng.GRUModel(3, 4, 2, num_layers=2, bidirectional=True, reset_after=False,
                        head="sequence", dtype="float64", seed=4)
    save_checkpoint(tmp_path / "m.ckpt", model, extra={"note": "hello"})
    twin, ck = ng.load_model(tmp_path / "m.ckpt")
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    assert np.array_equal(twin(x), model(x))
    assert twin.config() == model.config() and ck.meta["extra"] == {"note": "hello"}
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "bad.ckpt", model, extra={"x": np.zeros(2)})
    assert not (tmp_path / "bad.ckpt").exists()
