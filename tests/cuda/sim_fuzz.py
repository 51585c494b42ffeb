"""Random small layers and cells on device="cuda" against the float64 reference, under Numba's
CUDA simulator: the cases and tolerances of tests/test_fuzz_differential.py at sizes the
simulator runs quickly (it runs every GPU thread as a Python thread).

Not collected by a plain `pytest` run (no test_ prefix): tests/cuda/test_cuda_sim.py runs it with
the other sim_*.py modules in a child process with NUMBA_ENABLE_CUDASIM=1.
"""

from hypothesis import given

import sim_setup  # noqa: F401  (first: the simulator's check and the small tunables)

from fuzzing import fuzz_settings
from test_fuzz_differential import cell_cases, check_cell, check_layer, layer_cases


@fuzz_settings(3)
@given(layer_cases(T=3, B=3, I=5, H=6, layers=2))
def test_cuda_layers_match_the_float64_reference(case):
    check_layer(case, devices=("cuda",))


@fuzz_settings(3)
@given(cell_cases(B=3, I=5, H=6))
def test_cuda_cells_match_the_float64_reference(case):
    check_cell(case, devices=("cuda",))
