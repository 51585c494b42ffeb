"""numgru: gated recurrent units trained and run with Numba-compiled kernels, PyTorch-exact.

The package's public names, gathered from the modules that define them (docs/DESIGN.md's
architecture says which layer each module sits in); no module of numgru imports this file.
"""

from ._version import __version__
from .backend import DEVICES, cuda_status
from .data import SequenceData, load_csv, load_npz, load_ts, pad_sequences, sliding_windows
from .errors import (CacheTooLargeError, CheckpointError, DataFormatError, DistributedError,
                     NonFiniteLossError, OnnxImportError)
from .io.checkpoint import load_checkpoint, load_model, save_checkpoint
from .io.onnx import export_onnx, load_onnx
from .io.weights import load_weights, save_weights
from .layers import GRU, GRUCell
from .losses import cross_entropy_loss, mse_loss
from .model import GRUModel, Linear
from .optim import SGD, Adam, AdamW, CosineLR, StepLR, clip_grad_norm
from .training import distributed  # ng.distributed.shares, .launch_environment
from .training.trainer import Trainer

__all__ = ["GRU", "GRUCell", "CacheTooLargeError", "DEVICES", "cuda_status", "__version__",
           "GRUModel", "Linear", "mse_loss", "cross_entropy_loss", "Adam", "AdamW", "SGD",
           "StepLR", "CosineLR", "clip_grad_norm", "Trainer", "NonFiniteLossError",
           "save_checkpoint", "load_checkpoint", "load_model", "CheckpointError", "load_ts",
           "load_npz", "load_csv", "sliding_windows", "pad_sequences", "SequenceData",
           "DataFormatError", "export_onnx", "load_onnx", "OnnxImportError", "save_weights",
           "load_weights", "DistributedError", "distributed"]
