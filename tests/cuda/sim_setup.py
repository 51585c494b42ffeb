"""What every tests/cuda/sim_*.py module imports first: the check that the CUDA simulator is on, and
the CUDA tunables patched small before any kernel is built. Not a test module.

Numba reads NUMBA_ENABLE_CUDASIM at import, so tests/cuda/test_cuda_sim.py runs the sim_*.py
modules in a child pytest process with it set; a plain `pytest` run does not collect them (their
names have no test_ prefix). The simulator runs every GPU thread as a Python thread: the sizes in
those modules are tiny, and the blocks patched here are small (GEMM tiles of 4 x 4 elements from
2 x 2 threads of 2 x 2 registers, 4 deep; 4-unit step tiles; 4-thread persistent blocks) so that
those sizes, none a multiple of a tile, exercise partial edge tiles.
"""

import os

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    raise RuntimeError("run through tests/cuda/test_cuda_sim.py: the tests/cuda/sim_*.py modules "
                       "need NUMBA_ENABLE_CUDASIM=1 set before Numba is imported")

from numgru.cuda import config as cfg  # noqa: E402

# Kernels are built per set of tunables, on first use: these values hold for every sim module.
cfg.GEMM_THREADS_X = 2
cfg.GEMM_THREADS_Y = 2
cfg.GEMM_REG_M = 2
cfg.GEMM_REG_N = 2
cfg.GEMM_TILE_K = 4
cfg.STEP_TILE_UNITS = 4
cfg.STEP_TILE_BATCH = 2
cfg.POINTWISE_THREADS = 8
cfg.PERSIST_THREADS = 4
cfg.PERSIST_KSPLIT = 2
cfg.COLSUM_THREADS = 4
