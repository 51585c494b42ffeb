"""Where the time of the CPU layer passes goes (float32), for the grid's larger sizes.

For each size: the forward (inference) and backward passes in one part and in the default number
of parts (NUMGRU_NUM_THREADS, else the CPUs), so the parallel speed-up; the register tile alone on
the same per-step products (input projection and recurrent product of every step, one thread),
with its GFLOP/s, so that one part's forward splits into products and the rest (gate math,
packing, copies). Medians of repeated calls; run it on a quiet machine.

    python benchmarks/profile_cpu.py
"""

import os
import statistics
import time

# The part counts of the fixed rule: the plan's trials would mix one part and all of them among
# the timed calls of a size near the crossover.
os.environ["NUMGRU_PLAN"] = "off"

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from numgru.cpu import sync as _sync

from numgru.cpu import kernels as cpu  # noqa: E402
from numgru.cli.grid import GRID, gemm_flops  # noqa: E402
from numgru.cpu.tile import (pack_gates, panel_product, tile_functions,  # noqa: E402
                          vector_length)

# (batch, steps, input, hidden) of the grid's larger sizes: the passes of one layer are profiled.
SIZES = {name: GRID[name][:4] for name in ("medium", "large", "long")}


@njit(cache=True, error_model="numpy")
def _step_products(fns, x, h, wip, wp, gx, gh, T):
    """The forward's per-step tile products for all panels, T times (reset_after=True)."""
    B, H = h.shape
    I = x.shape[1]
    NB, _, W3 = wp.shape
    VL = W3 // 3
    Hp = NB * VL
    G = 3 * Hp
    for t in range(T):
        for u in range(NB):
            panel_product(fns, 3, x, t * B * I, I, 1, B, wip, u * I * W3, W3, I, gx, u * VL, G, Hp)
        for u in range(NB):
            panel_product(fns, 3, h, 0, H, 1, B, wp, u * H * W3, W3, H, gh, u * VL, G, Hp)


def median_ms(fn, n=9):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def passes(x, h0, w, lengths, dy, threads):
    """(forward ms, backward ms) with `threads` parts allowed (None: the default)."""
    old = os.environ.get("NUMGRU_NUM_THREADS")
    if threads is not None:
        os.environ["NUMGRU_NUM_THREADS"] = str(threads)
    try:
        fwd = median_ms(lambda: cpu.forward(x, h0, *w, lengths))
        _, _, cache = cpu.forward(x, h0, *w, lengths, train=True)
        bwd = median_ms(lambda: cpu.backward(cache, dy, h0))
    finally:
        if old is None:
            os.environ.pop("NUMGRU_NUM_THREADS", None)
        else:
            os.environ["NUMGRU_NUM_THREADS"] = old
    return fwd, bwd


def main():
    print(f"threads allowed: {_sync.max_threads()}")
    for name, (B, T, I, H) in SIZES.items():
        rng = np.random.default_rng(0)
        f = np.float32
        bound = 1 / np.sqrt(H)
        x = rng.standard_normal((T, B, I)).astype(f)
        h0 = np.zeros((B, H), f)
        w_ih = rng.uniform(-bound, bound, (3 * H, I)).astype(f)
        w_hh = rng.uniform(-bound, bound, (3 * H, H)).astype(f)
        b = np.zeros(3 * H, f)
        w = (w_ih, w_hh, b, b)
        lengths = np.full(B, T, np.int64)
        dy = rng.standard_normal((T, B, H)).astype(f)
        fwd1, bwd1 = passes(x, h0, w, lengths, dy, 1)
        fwdp, bwdp = passes(x, h0, w, lengths, dy, None)
        VL = vector_length(np.dtype(f))
        P = cpu._pass_parts("infer", np.dtype(f), B, H, -(-H // VL))[0]
        wip, wp = pack_gates(w_ih), pack_gates(w_hh)
        gx = np.empty((B, 3 * wp.shape[0] * VL), f)
        gh = np.empty_like(gx)
        fns = tile_functions(np.float32, (3,))
        prod = median_ms(lambda: _step_products(fns, x.reshape(T * B, I), h0, wip, wp, gx, gh, T))
        flops = gemm_flops(B, T, I, H, 1)
        print(f"{name}: forward {fwd1:.2f} ms in one part = tile products {prod:.2f} "
              f"({flops / prod / 1e6:.0f} GFLOP/s) + gate math and the rest {fwd1 - prod:.2f} "
              f"({(fwd1 - prod) * 1e6 / (T * B * H):.1f} ns per unit and step); "
              f"{fwdp:.2f} ms in {P} parts ({fwd1 / fwdp:.2f}x)")
        print(f"   backward {bwd1:.2f} ms in one part, {bwdp:.2f} ms in {P} parts "
              f"({bwd1 / bwdp:.2f}x)")


if __name__ == "__main__":
    main()
