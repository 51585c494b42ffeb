"""Rung 5 of the verification ladder: runs the tests/cuda/sim_*.py modules under Numba's CUDA
simulator (sim_backend.py: the kernels against the reference; sim_arrays.py: the device array
operations and the layers on device="cuda"; sim_training.py: model, optimizers and Trainer on the
device; sim_mathfn.py: the float32 sigmoid and tanh as device code), and the GPU benchmark's
harness in its dry-run mode.

NUMBA_ENABLE_CUDASIM is read when Numba is imported, so the sim modules run in one child pytest
process with the variable set; this test fails when that process fails, and shows its report.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import require_numba_cuda

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SIM_MODULES = sorted(HERE.glob("sim_*.py"))


def run_under_cuda_simulator(modules, what, timeout=1500):
    """Run the pytest modules in a child process with NUMBA_ENABLE_CUDASIM=1, and fail with the
    child's report unless every case ran and passed: a skipped or deselected case would check
    nothing."""
    require_numba_cuda()
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.pop("NUMGRU_DEVICE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs"]
        + [str(m) for m in modules], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout)
    report = proc.stdout[-20000:] + proc.stderr[-5000:]
    assert proc.returncode == 0, f"simulated {what} failed:\n{report}"
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "skipped" not in last and "deselected" not in last, report


def test_cuda_under_simulator():
    run_under_cuda_simulator([m for m in SIM_MODULES if m.name != "sim_setup.py"], "CUDA checks")


def test_gpu_benchmark_harness_dry_run(tmp_path):
    # benchmarks/bench_cuda.py --dry-run: the harness's own logic (result checks against torch,
    # device-resident timing, report) under the simulator on a tiny size, torch on the CPU.
    require_numba_cuda()
    if importlib.util.find_spec("torch") is None:
        if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
            pytest.fail("torch is not installed")
        pytest.skip("torch is not installed: the benchmark's baseline")
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "NUMGRU_DEVICE"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_cuda.py"), "--dry-run",
         "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "tiny: results match torch" in proc.stdout
    import json
    result = json.loads(out.read_text())
    (size,) = result["sizes"]
    assert size["shape"] == dict(B=2, T=3, I=4, H=5, layers=2)
    for key in ("numgru", "torch_tf32_off", "torch_tf32_on"):
        assert size[key]["infer_s"] > 0 and size[key]["train_s"] > 0
