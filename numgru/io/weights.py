"""Weight files by PyTorch's names: `.safetensors` (framework-neutral, no pickle) and `.npz`.

`save_weights(model, path)` writes a model's state_dict (or any dict name -> array); `load_weights`
reads one back as a dict of numpy arrays for `load_state_dict`. The names are PyTorch's
(`gru.weight_ih_l0`, ..., `fc.weight`), so a file that PyTorch wrote with
`safetensors.torch.save_file(model.state_dict(), path)` loads straight into a numgru model, and a
file written here loads into PyTorch with `safetensors.torch.load_file`. Files are written
atomically; reading never unpickles (safetensors holds no code, `.npz` is read with
allow_pickle=False). The `safetensors` package is needed for `.safetensors` files only and is
imported when one is read or written (`pip install 'numgru[safetensors]'`).
"""

import io
import os

import numpy as np

from .atomic import atomic_write
from ..data import read_npz

FORMATS = (".safetensors", ".npz")
_DTYPES = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
           np.bool_)


def _format(path, what):
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{what}: {path}: expected a file name ending in .safetensors or .npz, "
                         f"got {ext or 'no extension'!r}")
    return path, ext


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("reading or writing .safetensors files needs the safetensors package: "
                          "pip install 'numgru[safetensors]' (or save to .npz, which needs "
                          "nothing more)") from None
    return safetensors.numpy


def _tensors(model):
    """name -> C-contiguous host numpy array from a model (anything with state_dict()) or a dict."""
    if hasattr(model, "state_dict") and callable(model.state_dict):
        state = model.state_dict()
    elif hasattr(model, "keys"):
        state = model
    else:
        raise TypeError(f"model: expected a numgru model (GRU, GRUCell, Linear, GRUModel) or a "
                        f"dict of arrays, got {type(model).__name__}")
    out = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"model: tensor names must be non-empty strings, got {name!r}")
        if hasattr(value, "detach"):  # a torch tensor: its values only
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.type not in _DTYPES:
            raise TypeError(f"model[{name!r}]: expected a numeric array, got dtype {arr.dtype}")
        out[name] = np.ascontiguousarray(arr)
    if not out:
        raise ValueError("model: no tensors to save")
    return out


def save_weights(model, path, metadata=None):
    """Write model.state_dict() (or a dict name -> array) to path, by PyTorch's names.

    path ends in `.safetensors` (needs the safetensors package) or `.npz`. metadata: an optional
    dict str -> str stored in a safetensors header (ignored for .npz, which has no header).
    Written atomically: a crash leaves the old file or the new one.
    """
    path, ext = _format(path, "path")
    tensors = _tensors(model)
    if ext == ".safetensors":
        st = _safetensors_numpy()
        meta = {"format": "pt", "producer": "numgru"}  # "pt": PyTorch's names and layouts
        for k, v in (metadata or {}).items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata: expected str -> str, got {k!r}: {type(v).__name__}")
            meta[k] = v
        data = st.save(tensors, metadata=meta)
    else:
        if "__meta__" in tensors:
            raise ValueError("model: the name '__meta__' is reserved")
        buffer = io.BytesIO()
        np.savez(buffer, **tensors)
        data = buffer.getbuffer()
    atomic_write(path, data)


def load_weights(path):
    """name -> numpy array from a `.safetensors` or `.npz` weight file (no pickle, no code run).

    Pass the result to `model.load_state_dict`; it casts to the model's dtype and checks names and
    shapes. float16 tensors come back as float16; bfloat16 has no numpy type and is refused (save
    from PyTorch in float32: `{k: v.float() for k, v in sd.items()}`).
    """
    path, ext = _format(path, "path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty")
    if ext == ".safetensors":
        st = _safetensors_numpy()
        from .._memory import beyond, describe
        need = 2 * os.path.getsize(path)  # the file's bytes and the arrays
        over = beyond(need)
        if over is not None:
            raise ValueError(f"{path}: reading it takes {describe(need)}, {over}")
        with open(path, "rb") as f:
            data = f.read()
        try:
            tensors = st.load(data)
        except (KeyError, TypeError) as e:  # a dtype numpy lacks (BF16, F8_*): its name
            kind = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            if "bf16" in kind.lower() or "bfloat16" in kind.lower():
                raise ValueError(f"{path}: holds bfloat16 tensors, which numpy cannot represent; "
                                 f"save them as float32") from None
            raise ValueError(f"{path}: holds {kind} tensors, which numpy cannot "
                             f"represent") from None
        except Exception as e:  # safetensors' own SafetensorError: not the format
            raise ValueError(f"{path}: not a readable .safetensors file ({e})") from None
        return {k: np.array(v) for k, v in tensors.items()}
    out = read_npz(path, ValueError, "a readable .npz weight file (an archive of named arrays)")
    if "__meta__" in out:
        raise ValueError(f"{path}: a numgru checkpoint, not a weight file; load it with "
                         f"ng.load_model (or ng.load_checkpoint(path).model_state())")
    return out


__all__ = ["save_weights", "load_weights", "FORMATS"]
