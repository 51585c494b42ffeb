"""Runs the CUDA kernel checks (tests/cuda_sim_cases.py) under Numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM is read when Numba is imported, so the checks run in a child pytest process
with the variable set; this test fails when that process fails and shows its report.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import require_numba_cuda, run_under_cuda_simulator

CASES = Path(__file__).with_name("cuda_sim_cases.py")


def test_cuda_kernels_under_simulator():
    run_under_cuda_simulator(CASES, "CUDA checks")


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
        [sys.executable, str(CASES.parent.parent / "benchmarks" / "bench_cuda.py"), "--dry-run",
         "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "tiny: results match torch" in proc.stdout
    import json
    result = json.loads(out.read_text())
    (size,) = result["sizes"]
    assert size["shape"] == dict(B=2, T=3, I=4, H=5, layers=2)
    for key in ("numgru", "torch_tf32_off", "torch_tf32_on"):
        assert size[key]["infer_s"] > 0 and size[key]["train_s"] > 0
