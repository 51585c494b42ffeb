"""Helpers shared by the tests: oracle imports and random problems."""

import importlib
import os

import numpy as np
import pytest


def require(module_name):
    """Import a test oracle (torch, onnxruntime). `make test` installs them and sets
    NUMGRU_REQUIRE_ORACLES=1, so there a missing oracle fails instead of skipping."""
    if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
        return importlib.import_module(module_name)
    return pytest.importorskip(module_name)


def random_layer_args(rng, T, B, I, H, dtype=np.float64, lengths=None, scale=0.5):
    """Arguments of a backend's forward for one layer, one direction (time-major)."""
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (rng.standard_normal((B, H)) * scale).astype(dtype)
    w_ih = (rng.standard_normal((3 * H, I)) * scale).astype(dtype)
    w_hh = (rng.standard_normal((3 * H, H)) * scale).astype(dtype)
    b_ih = (rng.standard_normal(3 * H) * scale).astype(dtype)
    b_hh = (rng.standard_normal(3 * H) * scale).astype(dtype)
    if lengths is None:
        lengths = np.full(B, T, np.int64)
    return x, h0, w_ih, w_hh, b_ih, b_hh, np.asarray(lengths, np.int64)

