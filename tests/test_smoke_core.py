"""Smoke tests: the seed example and the benchmark harness run end to end (tiny settings).

The harness checks numgru against torch itself before timing and exits non-zero on a mismatch,
so a passing run here also means the check passed."""

import subprocess
import sys
from pathlib import Path

from helpers import require

ROOT = Path(__file__).resolve().parents[1]


def test_seed_example_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_example.py")],
                         check=True, capture_output=True, text=True).stdout
    assert "(5, 10, 10) -> GRU output (5, 10, 20)" in out


def test_benchmark_harness_runs_and_checks_results(tmp_path):
    require("torch")
    require("onnxruntime")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--sizes",
                          "seed", "--repeat", "2", "--no-cell", "--no-startup", "--json",
                          str(tmp_path / "r.json")],
                         check=True, capture_output=True, text=True).stdout
    assert "All results are checked against torch" in out
    assert "numgru code path:" in out
    row = [line for line in out.splitlines() if line.startswith("seed ")]
    assert len(row) == 1 and len(row[0].split()) == 12, out
