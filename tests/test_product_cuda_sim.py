"""Runs tests/cuda_sim_product.py (GRUModel, optimizers and Trainer on device="cuda" against the
host) under Numba's CUDA simulator, in a child pytest process: NUMBA_ENABLE_CUDASIM is read when
Numba is imported."""

from pathlib import Path

from helpers import run_under_cuda_simulator

CASES = Path(__file__).with_name("cuda_sim_product.py")


def test_product_on_cuda_under_simulator():
    run_under_cuda_simulator(CASES, "CUDA product checks", timeout=600)
