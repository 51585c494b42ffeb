"""numba.cuda kernels of the optimizer updates in numgru/optim.py, one thread per element of a flat
span.

Imported only when an optimizer holds parameters that live on the GPU, so that numgru never loads
numba.cuda for host work. Each kernel applies optim.py's per-element arithmetic (adam_math,
sgd_math), compiled here as device functions: the host loops and these kernels share one source.
As the host loops, the update kernels run two ways: write=True applies the update; write=False
changes nothing and sets bad[0] where a new value would reach `limit` (Inf once stored).
"""

import numpy as np
from numba import cuda

from .._optim_math import adam_math, sgd_math
from .kernel import launch_1d

_adam_device = cuda.jit(device=True)(adam_math)
_sgd_device = cuda.jit(device=True)(sgd_math)


@cuda.jit
def _adam_kernel(p, g, exp_avg, exp_avg_sq, lr, one_minus_beta1, beta2, one_minus_beta2, eps,
                 weight_decay, decoupled, bias_correction1, bias_correction2_sqrt, limit, write,
                 bad):
    """Adam / AdamW for element i."""
    i = cuda.grid(1)
    if i < p.size:
        q, m, v = _adam_device(p[i], g[i], exp_avg[i], exp_avg_sq[i], lr, one_minus_beta1, beta2,
                               one_minus_beta2, eps, weight_decay, decoupled, bias_correction1,
                               bias_correction2_sqrt)
        if write:
            p[i], exp_avg[i], exp_avg_sq[i] = q, m, v
        elif not (abs(q) < limit and abs(m) < limit and abs(v) < limit):
            bad[0] = 1


@cuda.jit
def _sgd_kernel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first, limit, write,
                bad):
    """SGD with momentum for element i."""
    i = cuda.grid(1)
    if i < p.size:
        q, b = _sgd_device(p[i], g[i], buf[i], lr, momentum, dampening, weight_decay, nesterov,
                           first)
        if write:
            p[i], buf[i] = q, b
        elif not (abs(q) < limit and abs(b) < limit):
            bad[0] = 1


@cuda.jit
def _scale_kernel(g, factor):
    """g[i] *= factor (gradient clipping)."""
    i = cuda.grid(1)
    if i < g.size:
        g[i] = g[i] * factor


_KERNELS = {"adam": _adam_kernel, "sgd": _sgd_kernel, "scale": _scale_kernel}


def launch(name, n, *args):
    """Launch kernel `name` with one thread per element of an n-element span. The update
    kernels ("adam", "sgd") return True, or with write=False (their last argument) whether every
    new value would be finite: one flag copied back from the device."""
    if name == "scale":
        launch_1d(_KERNELS[name], n, *args)
        return None
    if not _FLAG:
        _FLAG.append(cuda.device_array(1, np.int32))
    bad, write = _FLAG[0], args[-1]
    if not write:
        bad.copy_to_device(np.zeros(1, np.int32))
    launch_1d(_KERNELS[name], n, *args, bad)
    return bool(write) or not bad.copy_to_host()[0]


_FLAG = []  # the one-int device array the checking launches report in (made on first use)
