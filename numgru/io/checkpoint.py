"""Checkpoints: one file with a model's config and weights, and optionally an optimizer's and a
schedule's state, the training position and random states, and caller data; written atomically.

The file is an uncompressed `.npz` (a zip of `.npy` arrays, read back with allow_pickle=False) whose
`__meta__` entry is UTF-8 JSON (format name and version, model config, hyperparameters, training
state). A write goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed
over the target with os.replace: a crash at any point leaves either the old file or the new one,
never a mix. A killed writer can leave a `.<name>.*.tmp` file behind; it is never read.
"""

import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .._checks import is_int
from .._version import __version__
from ..data import read_npz
from ..errors import CheckpointError
from .atomic import atomic_write

FORMAT = "numgru-checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"


@dataclass
class Checkpoint:
    """What a checkpoint file holds: meta (the JSON part) and arrays (name -> numpy array)."""

    meta: dict
    arrays: dict = field(default_factory=dict)

    @property
    def model_config(self):
        return self.meta["model"]["config"]

    def model_state(self):
        """The model's state_dict (the seed's PyTorch names)."""
        return {k[len("model/"):]: v for k, v in self.arrays.items() if k.startswith("model/")}

    def optimizer_state(self):
        """The optimizer's state_dict, or None when the checkpoint holds none."""
        opt = self.meta.get("optimizer")
        if opt is None:
            return None
        buffers = {}
        for name in opt["buffers"]:
            count = opt["spans"]
            buffers[name] = [self.arrays[f"optimizer/{name}/{k}"] for k in range(count)]
        return {"type": opt["type"], "hyperparameters": opt["hyperparameters"],
                "step_count": opt["step_count"], "buffers": buffers}


def save_checkpoint(path, model, optimizer=None, scheduler=None, training=None, extra=None,
                    arrays=None):
    """Write model (and optimizer, scheduler, training state, extra JSON, extra arrays) to path.

    training and extra must be JSON-serialisable; arrays maps names to numpy arrays.
    """
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"class": type(model).__name__, "config": model.config()},
            "training": training, "extra": extra}
    meta["numgru_version"] = __version__
    out = {f"model/{name}": p for name, p in model.state_dict().items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        spans = len(next(iter(state["buffers"].values()), []))
        meta["optimizer"] = {"type": state["type"], "hyperparameters": state["hyperparameters"],
                             "step_count": state["step_count"],
                             "buffers": sorted(state["buffers"]), "spans": spans}
        for name, bufs in state["buffers"].items():
            for k, b in enumerate(bufs):
                out[f"optimizer/{name}/{k}"] = b
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    for name, value in (arrays or {}).items():
        out[f"extra/{name}"] = np.asarray(value)
    try:
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"training/extra: must be JSON-serialisable with finite numbers ({e})") \
            from None
    out[_META] = np.frombuffer(text.encode("utf-8"), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **out)
    atomic_write(path, buffer.getbuffer())


def load_checkpoint(path):
    """Read a checkpoint file; raises CheckpointError, naming the file and the problem, for files
    that are not numgru checkpoints, are damaged (zip's CRC-32 covers every byte of every array;
    the metadata's structure is checked here) or come from a newer format version."""
    path = os.fspath(path)
    arrays = read_npz(path, CheckpointError, "a numgru checkpoint")
    if _META not in arrays:
        raise CheckpointError(f"{path}: not a numgru checkpoint (no {_META} entry)")
    raw = arrays.pop(_META)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: damaged checkpoint metadata (expected UTF-8 bytes, got "
                              f"{raw.dtype} {raw.shape})")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint metadata "
                              f"({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a numgru checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not is_int(version, 1):
        raise CheckpointError(f"{path}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is newer than this "
                              f"numgru reads (version {FORMAT_VERSION}); upgrade numgru")
    _check_meta(meta, arrays, path)
    return Checkpoint(meta, arrays)


def _check_meta(meta, arrays, path):
    """The metadata's structure, as save_checkpoint writes it, so that nothing reading a
    Checkpoint meets a missing key or a value of the wrong type."""
    def bad(what, value):
        raise CheckpointError(f"{path}: damaged checkpoint metadata: {what}, got "
                              f"{str(value)[:100]!r}")

    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("class"), str) or \
            not isinstance(model.get("config"), dict):
        bad("'model' must hold a class name and a config", model)
    for key in ("training", "scheduler"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            bad(f"{key!r} must be an object", meta[key])
    opt = meta.get("optimizer")
    if opt is None:
        return
    if not isinstance(opt, dict):
        bad("'optimizer' must be an object", opt)
    if not isinstance(opt.get("type"), str):
        bad("optimizer.type must be a name", opt.get("type"))
    if not isinstance(opt.get("hyperparameters"), dict):
        bad("optimizer.hyperparameters must be an object", opt.get("hyperparameters"))
    if not is_int(opt.get("step_count"), 0):
        bad("optimizer.step_count must be a count of steps", opt.get("step_count"))
    spans, buffers = opt.get("spans"), opt.get("buffers")
    if not (is_int(spans, 0) and spans <= len(arrays)):
        bad("optimizer.spans must be a count of the arrays", spans)
    if not isinstance(buffers, list) or not all(isinstance(b, str) for b in buffers):
        bad("optimizer.buffers must be a list of names", buffers)
    missing = [f"optimizer/{b}/{k}" for b in buffers for k in range(spans)
               if f"optimizer/{b}/{k}" not in arrays]
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint: the optimizer's arrays {missing[:4]} "
                              f"are missing")


def check_model_matches(ckpt, model, path=""):
    """Raise CheckpointError, naming what differs, when ckpt was made for another model shape."""
    where = f"{path}: " if path else ""
    saved = ckpt.model_config
    mine = model.config()
    diffs = [f"{k} {saved.get(k)!r} (checkpoint) vs {mine[k]!r} (model)"
             for k in mine if k != "dropout" and saved.get(k) != mine[k]]
    if diffs:
        raise CheckpointError(f"{where}checkpoint is for another model shape: " + "; ".join(diffs))
    state = ckpt.model_state()
    for name, p, _ in model.parameters():
        if name not in state:
            raise CheckpointError(f"{where}checkpoint lacks parameter {name!r}")
        if state[name].shape != p.shape:
            raise CheckpointError(f"{where}parameter {name!r} has shape {state[name].shape} in the "
                                  f"checkpoint, {p.shape} in the model")


def load_model(path, device="auto"):
    """(model, checkpoint): a GRUModel rebuilt from a checkpoint's config, with its weights.
    The config is checked against the arrays the file holds before the model is built, so a
    damaged config (a hidden size of 10**9) is refused instead of allocated."""
    from ..model import GRUModel
    path = os.fspath(path)
    ckpt = load_checkpoint(path)
    if ckpt.meta["model"]["class"] != "GRUModel":
        raise CheckpointError(f"{path}: holds a {ckpt.meta['model']['class']}, not a GRUModel")
    config = ckpt.model_config
    state = ckpt.model_state()
    try:
        shapes = GRUModel.parameter_shapes(config, at_most=len(state))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the model's config is not usable ({e})") from None
    for name, shape in shapes.items():
        if name not in state:
            raise CheckpointError(f"{path}: checkpoint lacks parameter {name!r}")
        if state[name].shape != shape:
            raise CheckpointError(f"{path}: parameter {name!r} has shape {state[name].shape}, its "
                                  f"config makes it {shape}")
    try:
        model = GRUModel.from_config(config, device=device)
        model.load_state_dict(state)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return model, ckpt
