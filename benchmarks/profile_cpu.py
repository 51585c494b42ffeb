"""Where the time of one CPU forward pass goes (float32, inference), for the grid's larger sizes.

Times the whole forward, the input projection alone, the per-step recurrent GEMMs alone (the same
BLAS calls in a loop), and the recurrence kernel with its buffers reused; the gate math is the
recurrence minus its GEMMs. Where torch is installed, also its `mm` on the same per-step product
(torch links its own BLAS). Medians of repeated calls; run on a quiet machine.

    python benchmarks/profile_cpu.py
"""

import statistics
import time

import numpy as np
from numba import njit

from numgru import cpu
from numgru._blas import N_, T_, gemm

SIZES = {"medium": (32, 100, 64, 256), "large": (64, 50, 256, 512), "long": (16, 500, 32, 128)}


@njit(cache=True)
def _step_gemms(h, w_hh, w_hh_t, gh, T):
    """T times gh = h W_hh^T, with the same operands as the recurrence (reset_after=True)."""
    B, H = h.shape
    G = w_hh.shape[0]
    for _ in range(T):
        if w_hh_t.size > 0:
            gemm(N_, N_, B, G, H, np.float32(1), h, 0, H, w_hh_t, 0, G, np.float32(0), gh, 0, G)
        else:
            gemm(N_, T_, B, G, H, np.float32(1), h, 0, H, w_hh, 0, H, np.float32(0), gh, 0, G)


def median_ms(fn, n=9):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    try:
        import torch  # optional: the baseline's per-step GEMM, for comparison only

        torch.set_num_threads(2)
    except ImportError:
        torch = None
    for name, (B, T, I, H) in SIZES.items():
        rng = np.random.default_rng(0)
        f = np.float32
        bound = 1 / np.sqrt(H)
        x = rng.standard_normal((T, B, I)).astype(f)
        h0 = np.zeros((B, H), f)
        w_ih = rng.uniform(-bound, bound, (3 * H, I)).astype(f)
        w_hh = rng.uniform(-bound, bound, (3 * H, H)).astype(f)
        b = np.zeros(3 * H, f)
        lengths = np.full(B, T, np.int64)
        gi = np.empty((T * B, 3 * H), f)
        gh = np.empty((B, 3 * H), f)
        y = np.empty((T, B, H), f)
        gates = np.zeros((4, 1, B, H), f)
        w_hh_t = cpu._transposed_for_small_batch(w_hh, B)
        total = median_ms(lambda: cpu.forward(x, h0, w_ih, w_hh, b, b, lengths))
        proj = median_ms(lambda: cpu._project_kernel(x, w_ih, f(1), gi))
        steps = median_ms(lambda: _step_gemms(h0, w_hh, w_hh_t, gh, T))
        rec = median_ms(lambda: cpu._recurrence_kernel(
            gi, w_hh, w_hh_t, b, b, lengths, False, True, False, f(1), y, h0.copy(), gates[0],
            gates[1], gates[2], gates[3]))
        gflops = 2 * B * H * 3 * H * T / steps / 1e6
        print(f"{name}: forward {total:.2f} ms = input projection {proj:.2f} + per-step GEMMs "
              f"{steps:.2f} ({gflops:.0f} GFLOP/s) + gate math {rec - steps:.2f} "
              f"({(rec - steps) * 1e6 / (B * H * T):.1f} ns per unit and step) + the rest "
              f"{total - proj - rec:.2f}")
        if torch is not None:  # the baseline's BLAS on the same per-step product, same process
            ht, wt, out = torch.from_numpy(h0), torch.from_numpy(w_hh), torch.empty(B, 3 * H)

            def torch_steps():
                for _ in range(T):
                    torch.mm(ht, wt.t(), out=out)

            t_mm = median_ms(torch_steps)
            print(f"   torch.mm on the same per-step product: {t_mm:.2f} ms "
                  f"({2 * B * H * 3 * H * T / t_mm / 1e6:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
