"""The Numba CPU engine: the backend contract's functions (numgru/contract.py) for device="cpu".

`kernels` holds the compiled layer passes and the streaming step; `tile` the register tile of
every product; `sync` the step barrier and the pool of parts; `plan` the part counts measured on
this machine; `target` the code path chosen from the host; `view` raw views for the kernels;
`precompile` the child process that compiles the backward pass beside the forward."""

from .kernels import backward, forward, kernels_cached, step

__all__ = ["forward", "backward", "step", "kernels_cached"]
