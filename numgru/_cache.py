"""The training cache that every backend's forward(train=True) returns and its backward consumes.

It holds arrays of the backend that made it (numpy arrays, or device arrays for CUDA); layers.py
passes it back untouched and never looks inside.
"""

from dataclasses import dataclass
from typing import Any


@dataclass
class GRUCache:
    x: Any  # (T, B, I) the layer's input, time-major (a reference, not a copy)
    h_prev: Any  # (T, B, H) state entering step t (indexed by t, whatever the direction)
    gates: Any  # (T, B, 3H) r, z, n after their nonlinearities; 0 at invalid steps
    hn: Any  # (T, B, H) W_hn h + b_hn for reset_after=True; None otherwise
    w_ih: Any  # (3H, I)
    w_hh: Any  # (3H, H)
    lengths: Any  # (B,) int64
    reverse: bool
    reset_after: bool
