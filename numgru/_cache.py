"""The training cache that every backend's forward(train=True) returns and its backward consumes.

It holds arrays of the backend that made it (numpy arrays, or device arrays for CUDA); layers.py
passes it back untouched and never looks inside. Which optional fields a backend fills is its own
business: the reference keeps h_prev for clarity, the compiled CPU backend derives h_prev from y and
h0 instead (the state entering a valid step is the previous valid step's output).
"""

from dataclasses import dataclass
from typing import Any


@dataclass
class GRUCache:
    x: Any  # (T, B, I) the layer's input, time-major (a reference, not a copy)
    h_prev: Any  # (T, B, H) state entering step t (indexed by t, whatever the direction), or None
    gates: Any  # (T, B, 3H) r, z, n after their nonlinearities (cpu: (4, T, B, H): r, z, n, hn)
    hn: Any  # (T, B, H) W_hn h + b_hn for reset_after=True; None otherwise (or inside gates)
    w_ih: Any  # (3H, I)
    w_hh: Any  # (3H, H)
    lengths: Any  # (B,) int64
    reverse: bool
    reset_after: bool
    y: Any = None  # (T, B, H) the outputs (a reference), when h_prev is None
    h0: Any = None  # (B, H) the initial state, when h_prev is None
