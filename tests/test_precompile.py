"""numgru._precompile: with an empty kernel cache, a training forward has the backward pass
compiled by a child process, which the backward then loads from the cache; a child that fails
leaves the compiling to this process; either way the gradients are right."""

import os
import subprocess
import sys

import pytest

from numgru import _precompile

_SCRIPT = """
import os
import sys
import numpy as np
import numgru as ng
from numgru import _precompile, cpu

def training_step(reset_after):
    gru = ng.GRU(5, 7, seed=0, device="cpu", dtype="float32", reset_after=reset_after)
    ref = ng.GRU(5, 7, seed=0, device="numpy", dtype="float64", reset_after=reset_after)
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    y, _ = gru.forward(x, train=True)
    started = _precompile.pending()
    dy = np.random.default_rng(2).standard_normal(y.shape)
    gru.backward(dy)
    ref.forward(x, train=True)
    ref.backward(dy)
    err = max(float(np.abs(gru.grads[k] - ref.grads[k]).max()) /
              max(1.0, float(np.abs(ref.grads[k]).max())) for k in ref.grads)
    stats = cpu._backward_part.stats
    return started, err, sum(stats.cache_hits.values()), sum(stats.cache_misses.values())

print(*training_step(True))
os.environ["PYTHONPATH"] = sys.argv[1]  # the next child imports a numgru that fails
print(*training_step(False))
"""


@pytest.mark.slow
def test_backward_is_compiled_by_a_child_and_loaded_from_the_cache(tmp_path):
    broken = tmp_path / "broken" / "numgru"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('a numgru that cannot be imported')\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMGRU_NUM_THREADS": "2"}
    for name in ("NUMGRU_PRECOMPILE", *_precompile._MPI_VARIABLES):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(broken.parent)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.strip().splitlines()[-2:]
    # Fresh cache: a child was started; the backward was loaded (a cache hit), not compiled here.
    started, err, hits, misses = first.rsplit(" ", 3)
    assert started == "['backward/float32/after']", first
    assert float(err) < 4e-6, first  # the float32 gradient tolerance of the CPU tests
    assert (int(hits), int(misses)) == (1, 0), first
    # The failing child: this process compiled the other variant itself (one more miss).
    started, err, hits, misses = second.rsplit(" ", 3)
    assert started == "['backward/float32/before']", second
    assert float(err) < 4e-6, second
    assert (int(hits), int(misses)) == (1, 1), second


def test_nothing_is_started_when_switched_off_or_under_mpi(monkeypatch):
    monkeypatch.setattr("numgru._sync.max_threads", lambda: 2)
    for name in ("NUMGRU_PRECOMPILE", *_precompile._MPI_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("numgru._jit.CACHE", True)
    assert _precompile._enabled()
    monkeypatch.setenv("NUMGRU_PRECOMPILE", "off")
    assert not _precompile._enabled()
    monkeypatch.delenv("NUMGRU_PRECOMPILE")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    assert not _precompile._enabled()
    monkeypatch.delenv("OMPI_COMM_WORLD_RANK")
    monkeypatch.setattr("numgru._sync.max_threads", lambda: 1)
    assert not _precompile._enabled()
    monkeypatch.setattr("numgru._sync.max_threads", lambda: 2)
    monkeypatch.setattr("numgru._jit.CACHE", False)
    assert not _precompile._enabled()
