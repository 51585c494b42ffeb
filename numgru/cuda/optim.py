"""numba.cuda kernels of the optimizer updates in numgru/optim.py, one thread per element of a flat
span.

Imported only when an optimizer holds parameters that live on the GPU, so that numgru never loads
numba.cuda for host work. Each kernel applies optim.py's per-element arithmetic (adam_math,
sgd_math), compiled here as device functions: the host loops and these kernels share one source.
"""

from numba import cuda

from .._optim_math import adam_math, sgd_math
from .kernel import launch_1d

_adam_device = cuda.jit(device=True)(adam_math)
_sgd_device = cuda.jit(device=True)(sgd_math)


@cuda.jit
def _adam_kernel(p, g, exp_avg, exp_avg_sq, lr, one_minus_beta1, beta2, one_minus_beta2, eps,
                 weight_decay, decoupled, bias_correction1, bias_correction2_sqrt):
    """Adam / AdamW for element i."""
    i = cuda.grid(1)
    if i < p.size:
        p[i], exp_avg[i], exp_avg_sq[i] = _adam_device(
            p[i], g[i], exp_avg[i], exp_avg_sq[i], lr, one_minus_beta1, beta2, one_minus_beta2,
            eps, weight_decay, decoupled, bias_correction1, bias_correction2_sqrt)


@cuda.jit
def _sgd_kernel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """SGD with momentum for element i."""
    i = cuda.grid(1)
    if i < p.size:
        p[i], buf[i] = _sgd_device(p[i], g[i], buf[i], lr, momentum, dampening, weight_decay,
                                   nesterov, first)


@cuda.jit
def _scale_kernel(g, factor):
    """g[i] *= factor (gradient clipping)."""
    i = cuda.grid(1)
    if i < g.size:
        g[i] = g[i] * factor


_KERNELS = {"adam": _adam_kernel, "sgd": _sgd_kernel, "scale": _scale_kernel}


def launch(name, n, *args):
    """Launch kernel `name` with one thread per element of an n-element span."""
    launch_1d(_KERNELS[name], n, *args)
