"""The backend contract, written once: what every backend module exposes (reference.py as
"numpy", cpu.py as "cpu", the numgru.cuda package as "cuda"), with which arguments, shapes and
dtypes, what forward keeps for backward, and in which order the calls come; and GRUCache, the
training cache all three fill in one layout. Nothing here computes; backend.py picks the module,
layers.py is the only caller. tests/test_backend.py checks that the three modules' functions
have exactly the signatures of `FUNCTIONS`; tests/README.md lists the tests of their numbers.

One layer, one direction per call; T steps, B sequences, I inputs, H hidden units; time-major:

    forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, train=False)
        -> (y, h_n, cache)                 cache: a GRUCache with train=True, else None
    backward(cache, dy, dh_n)
        -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)
    step(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True)
        -> h1                              one step for every row (GRUCell's streaming path)

    x (T, B, I); h0, h_n (B, H); y (T, B, H)
    w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,): gate rows r, z, n (PyTorch's order)
    lengths (B,) int64, each in [1, T]: step t of sequence b is valid when t < lengths[b]
    dy like y, dh_n like h_n (the loss's gradients); dx like x, dh0 like h0, dw_*, db_* like
    the parameters; step: x (B, I), h and h1 (B, H)

- Arrays: numpy arrays for "numpy" and "cpu"; device arrays for "cuda" (numpy arrays are copied
  in; results, cache included, stay on the device).
- dtype: float32 or float64, x's, and every floating array of a call has it; results have it.
  The equations are docs/DESIGN.md's; reset_after picks the variant.
- reverse=True runs t = T-1 .. 0. An invalid step keeps the state and writes 0 to y, so the
  reverse direction of sequence b starts from h0 at its last valid step (PyTorch's packed
  sequences), and h_n is the state after each sequence's last valid step.
- Inputs are trusted: layers.py checks shapes, dtypes, finiteness and lengths once. The one
  exception is step on the host backends, which returns None when x or h holds NaN or Inf (so
  that the streaming path needs no separate scan); "cuda" does not scan.
- Call order: forward(train=True), then at most one backward(cache, ...) for that cache; the
  cache holds references to x (and on "cpu" y and h0), which the caller must leave unchanged
  until then (layers.py copies what a user could change). train=False keeps nothing.
- backward returns fresh arrays; the caller adds the weight gradients into its own (DESIGN.md:
  backward accumulates, the caller zeroes).
"""

from dataclasses import dataclass
from typing import Any

# name -> the parameters of every backend's function, in order (defaults as in the signatures
# above); tests/test_backend.py compares each backend's inspect.signature with these.
FUNCTIONS = {
    "forward": "(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse=False, reset_after=True, "
               "train=False)",
    "backward": "(cache, dy, dh_n)",
    "step": "(x, h, w_ih, w_hh, b_ih, b_hh, reset_after=True)",
}


@dataclass
class GRUCache:
    """What forward(train=True) keeps for backward, the same layout in every backend (arrays of
    the backend's kind). layers.py passes it back untouched and never looks inside.

    gates holds per step, indexed by t whatever the direction and 0 at invalid steps, the four
    blocks gates[0..3] = r, z, n (after their nonlinearities) and hn, the hidden side of n's
    pre-activation: W_hn h + b_hn (reset_after=True), W_hn (r ⊙ h) + b_hn (reset_after=False,
    where backward does not need it: kept so that one layout and branch-free loops serve both).
    The state entering each step is either kept (h_prev: the reference, for clarity; CUDA, whose
    kernels read it) or derived from y and h0 (the CPU backend: for a valid step it is the
    previous valid step's output, y[t-1] forward, y[t+1] reverse, or h0 at a sequence's first
    step), so exactly one of h_prev and (y, h0) is set.
    """

    x: Any  # (T, B, I) the layer's input (a reference, not a copy)
    gates: Any  # (4, T, B, H) r, z, n, hn
    w_ih: Any  # (3H, I)
    w_hh: Any  # (3H, H)
    lengths: Any  # (B,) int64
    reverse: bool
    reset_after: bool
    h_prev: Any = None  # (T, B, H) the state entering step t, or None
    y: Any = None  # (T, B, H) the outputs (a reference), when h_prev is None
    h0: Any = None  # (B, H) the initial state, when h_prev is None
