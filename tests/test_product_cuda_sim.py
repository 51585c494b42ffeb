"""Runs tests/cuda_sim_product.py (GRUModel, optimizers and Trainer on device="cuda" against the
host) under Numba's CUDA simulator, in a child pytest process: NUMBA_ENABLE_CUDASIM is read when
Numba is imported."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("cuda_sim_product.py")


def test_product_on_cuda_under_simulator():
    if importlib.util.find_spec("numba_cuda") is None:
        if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
            pytest.fail("numba-cuda is not installed (pip install -e '.[test]')")
        pytest.skip("numba-cuda is not installed: the CUDA path cannot be simulated")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.pop("NUMGRU_DEVICE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(CASES)],
        cwd=CASES.parent.parent, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-20000:] + proc.stderr[-5000:]
    assert proc.returncode == 0, f"simulated CUDA product checks failed:\n{report}"
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "skipped" not in last and "deselected" not in last, report
