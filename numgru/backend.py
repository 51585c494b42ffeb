"""The dispatcher: turns a device name into the backend module that computes on it.

Every backend module ("numpy" -> reference.py, "cpu" -> cpu.py, "cuda" -> cuda.py) exposes the same
`forward` / `backward` functions. This module only chooses; it never computes.
"""

import os

DEVICES = ("auto", "numpy", "cpu", "cuda")
ENV_VAR = "NUMGRU_DEVICE"  # forces the device that "auto" resolves to


def cuda_status():
    """(usable, reason): whether the CUDA backend can run here, and if not, why not."""
    return False, ("the CUDA engine of numgru is not built yet (numgru.cuda does not exist in this "
                   "release); use device='cpu'")


def resolve(device):
    """Map a device name (or "auto") to one of "numpy", "cpu", "cuda"; raise on unknown names."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected one of {DEVICES}, got {type(device).__name__} {device!r}")
    name = device.strip().lower()
    if name == "auto":
        forced = os.environ.get(ENV_VAR, "").strip().lower()
        if forced and forced != "auto":
            if forced not in DEVICES:
                raise ValueError(f"{ENV_VAR}: expected one of {DEVICES}, got {forced!r}")
            name = forced
        else:
            name = "cuda" if cuda_status()[0] else "cpu"
    if name not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    if name == "cuda":
        usable, reason = cuda_status()
        if not usable:
            raise RuntimeError(f"device='cuda' is not usable: {reason}")
    return name


def get(device):
    """The backend module for a device name (resolved as `resolve` does)."""
    name = resolve(device)
    if name == "numpy":
        from . import reference as module
    elif name == "cpu":
        from . import cpu as module
    else:  # pragma: no cover - unreachable until the CUDA engine exists
        from . import cuda as module
    return module
