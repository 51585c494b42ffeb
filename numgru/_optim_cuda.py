"""numba.cuda kernels of the optimizer updates in optim.py, one thread per element of a flat span.

Imported only when an optimizer holds parameters that live on the GPU, so that numgru never loads
numba.cuda for host work. The arithmetic is optim.py's @njit loops, line for line.
"""

import math

from numba import cuda

THREADS = 256  # per block; the updates are pointwise, any size works


@cuda.jit
def _adam_kernel(p, g, exp_avg, exp_avg_sq, lr, one_minus_beta1, beta2, one_minus_beta2, eps,
                 weight_decay, decoupled, bias_correction1, bias_correction2_sqrt):
    """Adam / AdamW for element i, as optim._adam_kernel."""
    i = cuda.grid(1)
    if i < p.size:
        grad = g[i]
        if weight_decay != 0.0:
            if decoupled:
                p[i] = p[i] * (1.0 - lr * weight_decay)
            else:
                grad = grad + weight_decay * p[i]
        exp_avg[i] = exp_avg[i] + one_minus_beta1 * (grad - exp_avg[i])
        exp_avg_sq[i] = exp_avg_sq[i] * beta2 + one_minus_beta2 * grad * grad
        denom = math.sqrt(exp_avg_sq[i]) / bias_correction2_sqrt + eps
        p[i] = p[i] + (-(lr / bias_correction1)) * (exp_avg[i] / denom)


@cuda.jit
def _sgd_kernel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """SGD with momentum for element i, as optim._sgd_kernel."""
    i = cuda.grid(1)
    if i < p.size:
        d = g[i]
        if weight_decay != 0.0:
            d = d + weight_decay * p[i]
        if momentum != 0.0:
            if first:
                buf[i] = d
            else:
                buf[i] = buf[i] * momentum + (1.0 - dampening) * d
            if nesterov:
                d = d + momentum * buf[i]
            else:
                d = buf[i]
        p[i] = p[i] + (-lr) * d


@cuda.jit
def _scale_kernel(g, factor):
    """g[i] *= factor (gradient clipping)."""
    i = cuda.grid(1)
    if i < g.size:
        g[i] = g[i] * factor


_KERNELS = {"adam": _adam_kernel, "sgd": _sgd_kernel, "scale": _scale_kernel}


def launch(name, n, *args):
    """Launch kernel `name` with one thread per element of an n-element span."""
    _KERNELS[name][(n + THREADS - 1) // THREADS, THREADS](*args)
