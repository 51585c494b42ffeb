"""numgru.cpu.precompile: with an empty kernel cache, a training forward has the backward pass
compiled by a child process, which the backward then loads from the cache; a child that fails
leaves the compiling to this process; either way the results are right."""

import os
import subprocess
import sys

import pytest

from numgru.cpu import precompile as _precompile
from numgru.training.distributed import LAUNCH_VARS

_TRAINING_STEP = """
import numpy as np
import numgru as ng
from numgru.cpu import precompile as _precompile
from numgru.cpu import kernels as cpu

gru = ng.GRU(5, 7, seed=0, device="cpu", dtype="float32")
ref = ng.GRU(5, 7, seed=0, device="numpy", dtype="float64")
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
print(started, err, sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""

# The mechanism on a small kernel of numgru's (cheap to compile): a child that compiles it, then
# one that fails (it imports a numgru that cannot be imported).
_MECHANISM = """
import os, sys
import numpy as np
from numba import from_dtype, types
from numgru.cpu import precompile as _precompile
from numgru._mathfn import sigmoid_array

def run(key, dtype):
    _precompile.start(key, sigmoid_array, lambda: (types.Array(from_dtype(dtype), 1, "A"),),
                      dtype, ())
    started = _precompile.pending()
    _precompile.wait(key)
    x = np.linspace(-3, 3, 10, dtype=dtype)[::2]  # not contiguous: the 'A' layout
    got = sigmoid_array(x)
    err = float(np.abs(got - 1 / (1 + np.exp(-x.astype(np.float64)))).max())
    stats = sigmoid_array.stats
    print(started, err < 1e-6, sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))

run("good", np.float64)
os.environ["PYTHONPATH"] = sys.argv[1]
run("failing", np.float32)
"""


def _child_env(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMGRU_NUM_THREADS": "2"}
    for name in ("NUMGRU_PRECOMPILE", *(v for v, _ in LAUNCH_VARS)):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_backward_is_compiled_by_a_child_and_loaded_from_the_cache(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _TRAINING_STEP], cwd=tmp_path,
                          env=_child_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    started, err, hits, misses = proc.stdout.strip().splitlines()[-1].rsplit(" ", 3)
    assert started == "['backward/float32/after']", proc.stdout
    assert float(err) < 4e-6, proc.stdout  # the float32 gradient tolerance of the CPU tests
    # Loaded from the cache the child filled, not compiled here.
    assert (int(hits), int(misses)) == (1, 0), proc.stdout


def test_a_child_that_fails_leaves_the_compiling_to_this_process(tmp_path):
    broken = tmp_path / "broken" / "numgru"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('a numgru that cannot be imported')\n")
    proc = subprocess.run([sys.executable, "-c", _MECHANISM, str(broken.parent)], cwd=tmp_path,
                          env=_child_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    good, failing = proc.stdout.strip().splitlines()[-2:]
    assert good == "['good'] True 1 0", good  # the child compiled it: a cache hit here
    assert failing == "['failing'] True 1 1", failing  # compiled here: one miss


def test_nothing_is_started_when_switched_off_or_under_mpi(monkeypatch):
    monkeypatch.setattr("numgru.cpu.sync.max_threads", lambda: 2)
    for name in ("NUMGRU_PRECOMPILE", *(v for v, _ in LAUNCH_VARS)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("numgru._jit.CACHE", True)
    assert _precompile._enabled()
    monkeypatch.setenv("NUMGRU_PRECOMPILE", "off")
    assert not _precompile._enabled()
    monkeypatch.delenv("NUMGRU_PRECOMPILE")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert not _precompile._enabled()
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setattr("numgru.cpu.sync.max_threads", lambda: 1)
    assert not _precompile._enabled()
    monkeypatch.setattr("numgru.cpu.sync.max_threads", lambda: 2)
    monkeypatch.setattr("numgru._jit.CACHE", False)
    assert not _precompile._enabled()
