"""numgru: gated recurrent units trained and run with Numba-compiled kernels, PyTorch-exact."""

from .backend import DEVICES, cuda_status
from .layers import GRU, GRUCell

__version__ = "0.1.0"

__all__ = ["GRU", "GRUCell", "DEVICES", "cuda_status", "__version__"]
