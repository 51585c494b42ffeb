"""Faults in training: a run killed with SIGKILL resumes exactly, and a full disk while
checkpointing keeps the previous checkpoint and says why.

Kills: a child process trains (2 layers with dropout, AdamW, a cosine schedule, validation and
best-epoch restore, a checkpoint every epoch) and kills itself with SIGKILL at a point drawn
from a seeded generator: during a training step (after its backward, before its update) or
during a checkpoint write (after any chunk of the file, after the fsync, after the rename). SIGKILL
cannot be caught: nothing of numgru's runs after it. The run is then resumed here (the same
script's settings, resume=True) and must end with exactly the weights, optimizer state and
history of an uninterrupted run; the checkpoint the kill left must be the last one that was
complete. 10 tries by default; NUMGRU_FUZZ_EXAMPLES=N makes them N / 10.

Full disk: the checkpoint writer's write patched to fail with ENOSPC (always), and a real 256 KiB
tmpfs filled up (where this process may mount one, as root; skipped, and reported, where not).
"""

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numgru.io import atomic, checkpoint as ck

from fuzzing import LONG_EXAMPLES

EPOCHS, STEPS_PER_EPOCH = 4, 5
SETUP = r"""
import numpy as np
import numgru as ng

def setup():
    rng = np.random.default_rng(1)
    N, T = 24, 6
    X = rng.standard_normal((N, T, 3))
    lengths = rng.integers(2, T + 1, N)
    y = rng.integers(0, 3, N)
    model = ng.GRUModel(3, 5, 3, num_layers=2, dropout=0.2, seed=0)
    opt = ng.AdamW(model, lr=0.02)
    trainer = ng.Trainer(model, opt, loss="cross_entropy", scheduler=ng.CosineLR(opt, 4),
                         progress=False)
    kw = dict(lengths=lengths, epochs=4, batch_size=5, seed=3,
              validation_data=(X[:8], y[:8], lengths[:8]))
    return trainer, X, y, kw
"""

CHILD = SETUP + r"""
import os, signal, sys
from numgru.io import atomic
path, where, k, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
trainer, X, y, kw = setup()
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
atomic._CHUNK = 512  # a checkpoint of this model is several chunks
if where == "step":  # the k-th step, after its forward and backward, before its update
    calls = [0]
    update = trainer.optimizer.step
    def killing_update():
        calls[0] += 1
        if calls[0] == k:
            die()
        return update()
    trainer.optimizer.step = killing_update
else:  # the k-th checkpoint write, at point c: after chunk c, "fsynced" or "renamed"
    writes, chunks = [0], [0]
    write_chunk, fsync, replace = atomic._write_chunk, os.fsync, os.replace
    def chunk(f, data):
        if chunks[0] == 0:
            writes[0] += 1
        write_chunk(f, data)
        chunks[0] += 1
        if writes[0] == k and c.isdigit() and chunks[0] == int(c) + 1:
            f.flush()
            die()
    def synced(fd):
        fsync(fd)
        if writes[0] == k and c == "fsynced" and chunks[0] > 0:
            die()
    def renamed(a, b):
        replace(a, b)
        chunks[0] = 0
        if writes[0] == k and c == "renamed":
            die()
    atomic._write_chunk, os.fsync, os.replace = chunk, synced, renamed
trainer.fit(X, y, checkpoint=path, **kw)
print("not killed")
"""


def _setup():
    space = {}
    exec(SETUP, space)
    return space["setup"]()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    trainer, X, y, kw = _setup()
    history = trainer.fit(X, y, checkpoint=tmp_path_factory.mktemp("full") / "c.npz", **kw)
    return trainer, history


def _kill_points(n, chunks):
    """n (where, k, c) kill points from a seeded generator, half in steps, half in writes."""
    rng = np.random.default_rng(2024)
    points = []
    for i in range(n):
        if i % 2 == 0:
            points.append(("step", int(rng.integers(1, EPOCHS * STEPS_PER_EPOCH + 1)), "-"))
        else:  # in turn: after a chunk drawn at random, after the fsync, after the rename
            c = [str(int(rng.integers(0, chunks))), "fsynced", "renamed"][(i // 2) % 3]
            points.append(("write", int(rng.integers(1, EPOCHS + 1)), c))
    return points


def test_runs_killed_at_random_points_resume_to_the_same_weights(tmp_path, uninterrupted):
    full, full_history = uninterrupted
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    trainer, X, y, kw = _setup()
    ck.save_checkpoint(tmp_path / "probe.npz", trainer.model, trainer.optimizer,
                       trainer.scheduler, training={"epoch": 0})
    chunks = max(2, os.path.getsize(tmp_path / "probe.npz") // 512)
    tries = _kill_points(max(10, LONG_EXAMPLES // 10), chunks)
    for n, (where, k, c) in enumerate(tries):
        run = tmp_path / f"run{n}"
        run.mkdir()
        path = run / "c.npz"
        proc = subprocess.run([sys.executable, str(script), str(path), where, str(k), c],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, f"{where} {k} {c}: not killed: {proc.stdout} {proc.stderr}"
        # The checkpoint left is the last complete one: epochs whose write finished.
        if where == "step":
            complete = (k - 1) // STEPS_PER_EPOCH
        else:
            complete = k if c == "renamed" else k - 1
        if complete == 0:
            assert not path.exists()
        else:
            assert ck.load_checkpoint(path).meta["training"]["epoch"] == complete, (where, k, c)
        resumed, X, y, kw = _setup()
        # Counted updates: a resume that retrained from scratch would end on the same weights
        # (same seeds), so the resumed run must make only the updates after the checkpoint.
        updates, update = [0], resumed.optimizer.step
        resumed.optimizer.step = lambda: (updates.__setitem__(0, updates[0] + 1), update())[1]
        history = resumed.fit(X, y, checkpoint=path, resume=True, **kw)
        assert updates[0] == (EPOCHS - complete) * STEPS_PER_EPOCH, (where, k, c, updates[0])
        assert np.array_equal(resumed.model.get_flat_params(), full.model.get_flat_params()), \
            (where, k, c)
        for name in ("exp_avg", "exp_avg_sq"):
            assert np.array_equal(resumed.optimizer.state[name][0], full.optimizer.state[name][0])
        assert resumed.global_step == full.global_step
        for key in ("epoch", "loss", "val_loss", "lr"):
            assert history[key] == full_history[key], (where, k, c, key)
    print(f"\nkills survived: {len(tries)} ({sum(w == 'write' for w, _, _ in tries)} in writes)")


def _trained_twice(tmp_path, fail_second):
    """Fit 1 epoch with a checkpoint, then 1 more with the second write failing."""
    trainer, X, y, kw = _setup()
    kw = dict(kw, epochs=1)
    path = tmp_path / "c.npz"
    trainer.fit(X, y, checkpoint=path, **kw)
    first = path.read_bytes()
    with pytest.raises(OSError) as info:
        fail_second(lambda: trainer.fit(X, y, checkpoint=path, resume=True, **dict(kw, epochs=2)))
    return path, first, info.value


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    def fail_second(fit):
        def full(f, chunk):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(atomic, "_write_chunk", full)
        fit()

    path, first, error = _trained_twice(tmp_path, fail_second)
    assert error.errno == errno.ENOSPC
    assert f"writing {path} failed: No space left on device; the file is unchanged" in str(error)
    assert path.read_bytes() == first
    assert ck.load_checkpoint(path).meta["training"]["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary left behind
    # An fsync that fails (as a network file system reports a full disk) the same.
    monkeypatch.undo()
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.EIO, os.strerror(errno.EIO))))
    with pytest.raises(OSError, match="failed: Input/output error; the file is unchanged"):
        atomic.atomic_write(path, b"new")
    assert path.read_bytes() == first and os.listdir(tmp_path) == ["c.npz"]


def test_a_real_full_tmpfs_keeps_the_previous_checkpoint(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a tmpfs needs root (the patched full disk runs everywhere)")
    proc = subprocess.run([mount, "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the patched full disk "
                    f"runs everywhere")
    try:
        def fill_then_fit(fit):
            free = shutil.disk_usage(where).free
            (where / "filler").write_bytes(b"\0" * (free - 4096))  # leaves less than one file
            fit()

        path, first, error = _trained_twice(where, fill_then_fit)
        assert error.errno == errno.ENOSPC, error
        assert f"writing {path} failed: No space left on device" in str(error)
        assert path.read_bytes() == first
        assert sorted(os.listdir(where)) == ["c.npz", "filler"]
    finally:
        subprocess.run(["umount", str(where)], check=False)
