"""The GRU's per-unit gate math, forward and backward, both variants, written once as plain Python
functions of scalars.

cpu.py compiles them with @njit(inline="always") into its row loops, and numgru/cuda compiles
them with cuda.jit(device=True) into its kernels (as optim.py's update rules are shared), so a
fix here is a fix on both targets. They take and return scalars only: inlined into a loop over
a row of units, nothing in the loop body calls out, and LLVM vectorises it. σ and tanh are
_mathfn's (float32: branch-free; float64: the math library). reference.py does not use this
module: it is the independent truth both are tested against.

Names follow DESIGN.md's equations, for one unit of one batch row at one step:
    x_r, x_z, x_n   the input side of the pre-activations, W_i· x + b_i·
    h_r, h_z, h_n   the hidden side, W_h· h + b_h·; for reset_after=False h_n is W_hn (r ⊙ h) + b_hn
    h               the state entering the step
    one             1 in the arithmetic's type: a value, not a literal, since a Python 1.0 would
                    turn float32 device code into float64 code
The arithmetic runs in the type of the arguments: the CPU's backward passes float64 values (and
one = 1.0) for float32 arrays and rounds once per stored value; CUDA computes in the array dtype.
"""

from numba.extending import register_jitable

from ._mathfn import sigmoid, tanh

# `gate` and `candidate` are called by the functions below, so compiled code must know them too:
# register_jitable makes them callable from @njit and CUDA device code alike (and leaves them
# plain Python functions, which is what the CUDA simulator calls).


@register_jitable
def gate(x, h):
    """σ(x + h): the reset gate r or the update gate z from its input and hidden halves."""
    return sigmoid(x + h)


@register_jitable
def candidate(x_n, h_n, r, z, h, one, reset_after):
    """(n, h'): n = tanh(x_n + r·h_n) (reset_after; for reset_after=False h_n already holds
    W_hn (r ⊙ h) + b_hn, so n = tanh(x_n + h_n)), h' = (1 − z)·n + z·h. The variant is a select,
    so that a loop over units has no branch."""
    n = tanh(x_n + (r if reset_after else one) * h_n)
    return n, (one - z) * n + z * h


def forward(x_r, x_z, x_n, h_r, h_z, h_n, h, one, reset_after):
    """(r, z, n, h') of one unit, where all six pre-activation halves are known (reset_after, or
    the second half of a reset_after=False step, whose h_n needed every unit's r first)."""
    r = gate(x_r, h_r)
    z = gate(x_z, h_z)
    n, h_new = candidate(x_n, h_n, r, z, h, one, reset_after)
    return r, z, n, h_new


def backward(dh_new, r, z, n, h_n, h, one, reset_after):
    """The gradients of one unit's step, from dh_new = ∂L/∂h' (the output's share included) and
    what forward kept (r, z, n, h_n) and h. Returns (da_r, da_z, da_n, dgh_n, dh):
        da_n = dh'·(1 − z)·(1 − n²)        ∂L/∂(x_n + r·h_n), the input side of n
        da_z = dh'·(h − n)·z·(1 − z)
        da_r = da_n·h_n·r·(1 − r)          reset_after only: for reset_after=False r enters
                                           through W_hn (r ⊙ h), see reset_backward
        dgh_n = da_n·r (reset_after) or da_n: the hidden side's gradient of n
        dh = dh'·z                          the direct path to h_{t-1} (the products with W_hh
                                           are the caller's)
    Callers that store one value per loop call this in each loop and keep one result; the rest
    is dead code that the compiler drops."""
    da_n = dh_new * (one - z) * (one - n * n)
    da_z = dh_new * (h - n) * z * (one - z)
    da_r = da_n * h_n * r * (one - r)
    dgh_n = da_n * (r if reset_after else one)
    return da_r, da_z, da_n, dgh_n, dh_new * z


def reset_backward(d_rh, r, h, one):
    """reset_after=False, r's gradient once d_rh = ∂L/∂(r ⊙ h) = Σ_j da_n[j]·W_hn[j, k] is known
    (a product over every unit): returns (da_r, the share of ∂L/∂h) = (d_rh·h·r·(1 − r), d_rh·r)."""
    return d_rh * h * r * (one - r), d_rh * r
