"""numgru: gated recurrent units trained and run with Numba-compiled kernels, PyTorch-exact."""

from .backend import DEVICES, cuda_status
from .layers import GRU, CacheTooLargeError, GRUCell

__version__ = "0.1.0"

__all__ = ["GRU", "GRUCell", "CacheTooLargeError", "DEVICES", "cuda_status", "__version__"]

# The model and training product: GRUModel, losses, optimizers, Trainer, checkpoints, data.
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from .data import (DataFormatError, SequenceData, load_csv, load_npz, load_ts,  # noqa: E402
                   pad_sequences, sliding_windows)
from .losses import cross_entropy_loss, mse_loss  # noqa: E402
from .model import GRUModel, Linear  # noqa: E402
from .optim import SGD, Adam, AdamW, CosineLR, StepLR, clip_grad_norm  # noqa: E402
from .trainer import NonFiniteLossError, Trainer  # noqa: E402

__all__ += ["GRUModel", "Linear", "mse_loss", "cross_entropy_loss", "Adam", "AdamW", "SGD",
            "StepLR", "CosineLR", "clip_grad_norm", "Trainer", "NonFiniteLossError",
            "save_checkpoint", "load_checkpoint", "load_model", "CheckpointError", "load_ts",
            "load_npz", "load_csv", "sliding_windows", "pad_sequences", "SequenceData",
            "DataFormatError"]

# Models in and out: ONNX files (needs onnx) and weight files (.safetensors needs safetensors).
from .onnx_io import OnnxImportError, export_onnx, load_onnx  # noqa: E402
from .weights import load_weights, save_weights  # noqa: E402

__all__ += ["export_onnx", "load_onnx", "OnnxImportError", "save_weights", "load_weights"]
