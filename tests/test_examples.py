"""Smoke test of every example script in quick mode (NUMGRU_EXAMPLE_QUICK=1: few epochs or steps):
each runs to the end and prints what it promises."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPECTED = {
    "seed_example.py": ["input (5, 10, 10) -> GRU output (5, 10, 20) -> head output (5, 1)",
                        "MSE after 1 step"],
    "sunspots.py": ["GRU (hidden 32, window 20)  RMSE", "AR(9), least squares", "repeat last year"],
    "text_generation.py": ["baselines (nats/char)", "step    5", "--- sample", "And God said"],
    "classify_with_lengths.py": ["270 training utterances, lengths 7 to 26", "test accuracy",
                                 "reloaded from epoch 2"],
    # one process here (a world of one rank); several ranks: tests/test_distributed.py
    "data_parallel.py": ["1 rank(s); global batch 32", "epoch   2", "test accuracy"],
}


def test_every_example_is_covered():
    found = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script):
    # One BLAS thread: on a busy 2-core machine OpenBLAS's spinning threads can slow the
    # recurrence's many small GEMMs tenfold, and this is a smoke test, not a timing.
    env = dict(os.environ, NUMGRU_EXAMPLE_QUICK="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in EXPECTED[script]:
        assert text in proc.stdout, f"{script}: {text!r} missing from:\n{proc.stdout}"
