"""The optimizers' arithmetic for one element, as plain Python compiled by both engines: the
@njit loops of numgru/optim.py and the numba.cuda kernels of numgru/cuda/optim.py (math.sqrt
works in both). Nothing here runs on its own."""

import math


def adam_math(p, grad, m, v, lr, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
               decoupled, bias_correction1, bias_correction2_sqrt):
    """torch.optim.Adam / AdamW (single-tensor path) for one element: returns new (p, m, v).
    g <- g + wd·p (Adam, L2) or p <- p (1 - lr·wd) (AdamW, decoupled); m <- m + (1-β1)(g - m);
    v <- β2 v + (1-β2) g²; p <- p - lr/bc1 · m / (√v / √bc2 + eps)."""
    if weight_decay != 0.0:
        if decoupled:
            p = p * (1.0 - lr * weight_decay)
        else:
            grad = grad + weight_decay * p
    m = m + one_minus_beta1 * (grad - m)
    v = v * beta2 + one_minus_beta2 * grad * grad
    denom = math.sqrt(v) / bias_correction2_sqrt + eps
    return p + (-(lr / bias_correction1)) * (m / denom), m, v


def sgd_math(p, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """torch.optim.SGD for one element: returns new (p, buf). d = g + wd·p; buf <- d (first
    step) or μ·buf + (1-dampening)·d; d <- d + μ·buf (Nesterov) or buf; p <- p - lr·d."""
    d = grad
    if weight_decay != 0.0:
        d = d + weight_decay * p
    if momentum != 0.0:
        if first:
            buf = d
        else:
            buf = buf * momentum + (1.0 - dampening) * d
        if nesterov:
            d = d + momentum * buf
        else:
            d = buf
    return p + (-lr) * d, buf


