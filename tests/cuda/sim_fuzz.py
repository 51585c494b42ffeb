"""Random small layers and cells on device="cuda" against the float64 reference, under Numba's
CUDA simulator: the cases and tolerances of tests/test_fuzz_differential.py at sizes the
simulator runs quickly (it runs every GPU thread as a Python thread).

Not collected by a plain `pytest` run (no test_ prefix): tests/cuda/test_cuda_sim.py runs it with
the other sim_*.py modules in a child process with NUMBA_ENABLE_CUDASIM=1.
"""

import numpy as np
from hypothesis import given, strategies as st

import sim_setup  # noqa: F401  (first: the simulator's check and the small tunables)

from fuzzing import fuzz_settings
from test_fuzz_differential import H0_SCALES, W_KINDS, X_SCALES, check_cell, check_layer


@st.composite
def small_layers(draw):
    return dict(
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        reset_after=draw(st.booleans()),
        T=draw(st.integers(1, 3)), B=draw(st.integers(1, 3)),
        I=draw(st.integers(1, 5)), H=draw(st.integers(1, 6)),
        layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()), batch_first=draw(st.booleans()),
        h0=draw(st.sampled_from(H0_SCALES)), lengths=draw(st.booleans()),
        x_scale=draw(st.sampled_from(X_SCALES)), w_kind=draw(st.sampled_from(W_KINDS)),
        seed=draw(st.integers(0, 2 ** 32 - 1)))


@st.composite
def small_cells(draw):
    return dict(
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        reset_after=draw(st.booleans()), bias=draw(st.booleans()),
        B=draw(st.integers(0, 3)), I=draw(st.integers(1, 5)), H=draw(st.integers(1, 6)),
        h=draw(st.sampled_from(H0_SCALES)),
        x_scale=draw(st.sampled_from(X_SCALES)), w_kind=draw(st.sampled_from(W_KINDS)),
        seed=draw(st.integers(0, 2 ** 32 - 1)))


@fuzz_settings(3)
@given(small_layers())
def test_cuda_layers_match_the_float64_reference(case):
    check_layer(case, devices=("cuda",))


@fuzz_settings(3)
@given(small_cells())
def test_cuda_cells_match_the_float64_reference(case):
    check_cell(case, devices=("cuda",))
