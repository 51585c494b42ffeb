"""GPU benchmark: numgru's CUDA backend side by side with torch.nn.GRU on cuDNN, in the same run.

Sizes: DESIGN.md's grid plus DeepBench-style ones (hidden 512/1024/2048, batch 1/4/32, 100 steps,
input = hidden), float32. For each size it first checks numgru against torch (outputs and all
gradients, same weights, TF32 off), then times inference (forward) and training (forward +
backward) as the median of repeated calls, and prints the ratio to cuDNN's time with TF32 off and
with TF32 on, the GFLOP/s, and the share of the SGEMM peak measured at the start (torch's cuBLAS
SGEMM, TF32 off). numgru's kernels compute in plain fp32 and never use TF32.

What is timed: everything from the call to its completion (device synchronised), inputs already on
the GPU and outputs left there (numgru with return_device=True): host<->device copies are excluded
on both sides. Compile time is excluded (warm-up calls) and reported apart as the first call.

    python benchmarks/bench_cuda.py                       # the whole list, on a GPU
    python benchmarks/bench_cuda.py --sizes stream db-h512-b1 --repeat 30
    python benchmarks/bench_cuda.py --dry-run             # no GPU: the CUDA simulator, a tiny size,
                                                          # torch on the CPU; checks the harness only
torch is the baseline only; numgru never imports it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from numgru.cli.grid import GRID, gemm_flops

SIZES = dict(GRID)  # name: (batch, steps, input, hidden, layers)
for _h in (512, 1024, 2048):
    for _b in (1, 4, 32):
        SIZES[f"db-h{_h}-b{_b}"] = (_b, 100, _h, _h, 1)
# The harness's own check: the simulator runs every GPU thread as a Python thread, so tiny.
DRY_RUN_SIZE = {"tiny": (2, 3, 4, 5, 2)}


class Clock:
    """Wall time of a GPU call, the device synchronised before and after."""

    def __init__(self, torch, on_gpu):
        self.torch = torch
        self.on_gpu = on_gpu
        if on_gpu:
            from numba import cuda
            self.numba_sync = cuda.synchronize

    def sync(self):
        if self.on_gpu:
            self.torch.cuda.synchronize()
            self.numba_sync()

    def median(self, fn, repeat, min_time):
        times = []
        start = time.perf_counter()
        while len(times) < repeat or (time.perf_counter() - start < min_time and len(times) < 2000):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def set_tf32(torch, on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def sgemm_peak(torch, clock, device):
    """GFLOP/s of a float32 GEMM through torch's cuBLAS with TF32 off: the machine's fp32 peak."""
    n = 8192 if device == "cuda" else 256
    set_tf32(torch, False)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.matmul(a, b)
    t = clock.median(lambda: torch.matmul(a, b), 5, 0.0)
    return 2 * n ** 3 / t / 1e9


def check(name, got, want, tol):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else np.asarray(got)
    err = float(np.max(np.abs(got - want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    if err > tol * scale:
        raise SystemExit(f"result check failed: {name} differs from torch by {err:.3g} "
                         f"(allowed {tol:g} x {scale:.3g})")


def bench_size(name, shape, args, torch, clock, device):
    import numgru as ng
    from numba import cuda

    from numgru import cuda as gcuda

    B, T, I, H, L = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    dy = rng.standard_normal((B, T, H)).astype(np.float32)
    tgru = torch.nn.GRU(I, H, num_layers=L, batch_first=True).to(device)
    gru = ng.GRU(I, H, num_layers=L, device="cuda")
    gru.load_state_dict({k: v.detach().cpu().numpy() for k, v in tgru.state_dict().items()})
    # Inputs live on the GPU before anything is timed; outputs stay there.
    x_dev, dy_dev = cuda.to_device(x), cuda.to_device(dy)
    xt = torch.tensor(x, device=device, requires_grad=True)
    dyt = torch.tensor(dy, device=device)

    # Results first, TF32 off: numgru must agree with cuDNN before anything is timed.
    set_tf32(torch, False)
    yt, ht = tgru(xt)
    torch.autograd.backward(yt, dyt)
    clock.sync()
    t0 = time.perf_counter()
    y, h = gru(x_dev, return_device=True)  # the first call compiles: reported apart
    clock.sync()
    first = time.perf_counter() - t0
    check(f"{name} y", y, yt.detach().cpu().numpy(), args.tol)
    check(f"{name} h_n", h, ht.detach().cpu().numpy(), args.tol)
    gru.zero_grad()
    gru.forward(x_dev, train=True, return_device=True)
    dx, _ = gru.backward(dy_dev, return_device=True)
    check(f"{name} dx", dx, xt.grad.cpu().numpy(), args.tol)
    for pname, p in tgru.named_parameters():
        check(f"{name} grad {pname}", gru._ops.to_host(gru.grads[pname]), p.grad.cpu().numpy(),
              args.tol)
    paths = dict(gcuda.last_path)
    xt.grad = None
    tgru.zero_grad()

    def numgru_train():
        gru.forward(x_dev, train=True, return_device=True)
        gru.backward(dy_dev, return_device=True)

    def torch_infer():
        with torch.no_grad():
            tgru(xt)

    def torch_train():
        yy, _ = tgru(xt)
        torch.autograd.backward(yy, dyt)

    out = {"size": name, "shape": dict(B=B, T=T, I=I, H=H, layers=L), "path": paths,
           "gflop_fwd": gemm_flops(B, T, I, H, L) / 1e9, "numgru_first_call_s": first}
    out["numgru"] = {"infer_s": clock.median(lambda: gru(x_dev, return_device=True), args.repeat,
                                             args.min_time),
                     "train_s": clock.median(numgru_train, args.repeat, args.min_time)}
    for tf32 in (False, True):
        set_tf32(torch, tf32)
        out[f"torch_tf32_{'on' if tf32 else 'off'}"] = {
            "infer_s": clock.median(torch_infer, args.repeat, args.min_time),
            "train_s": clock.median(torch_train, args.repeat, args.min_time)}
    set_tf32(torch, False)
    return out


def bench_cell(args, torch, clock, device):
    """One-step latency of GRUCell, batch 1, hidden 128 (DESIGN.md), device arrays in and out."""
    import numgru as ng
    from numba import cuda

    I = H = 128 if device == "cuda" else 4
    rng = np.random.default_rng(0)
    tcell = torch.nn.GRUCell(I, H).to(device)
    cell = ng.GRUCell(I, H, device="cuda")
    cell.load_state_dict({k: v.detach().cpu().numpy() for k, v in tcell.state_dict().items()})
    x = rng.standard_normal((1, I)).astype(np.float32)
    h = rng.standard_normal((1, H)).astype(np.float32)
    x_dev, h_dev = cuda.to_device(x), cuda.to_device(h)
    xt, htt = torch.tensor(x, device=device), torch.tensor(h, device=device)
    set_tf32(torch, False)
    with torch.no_grad():
        check("GRUCell h1", cell(x_dev, h_dev, return_device=True), tcell(xt, htt).cpu().numpy(),
              args.tol)

    def torch_step():
        with torch.no_grad():
            tcell(xt, htt)

    return {"B": 1, "H": H,
            "numgru_s": clock.median(lambda: cell(x_dev, h_dev, return_device=True), args.repeat,
                                     args.min_time),
            "torch_s": clock.median(torch_step, args.repeat, args.min_time)}


def report(results, peak, cell, device_name):
    print(f"\nGPU: {device_name}; fp32; SGEMM peak (cuBLAS, TF32 off) {peak:,.0f} GFLOP/s")
    print("Times are medians in ms, inputs and outputs on the device (no host copies). "
          "ratio = numgru / cuDNN.")
    head = (f"{'size':<13} {'B':>3} {'T':>4} {'I':>5} {'H':>5} {'L':>2} | {'mode':<5} "
            f"{'numgru':>9} {'cuDNN':>9} {'ratio':>6} {'cuDNN32':>9} {'ratio':>6} "
            f"{'GFLOP/s':>8} {'%peak':>6} | path")
    print(head)
    print("-" * len(head))
    for r in results:
        s = r["shape"]
        for mode, mult in (("infer", 1), ("train", 3)):
            t = r["numgru"][f"{mode}_s"]
            t_off = r["torch_tf32_off"][f"{mode}_s"]
            t_on = r["torch_tf32_on"][f"{mode}_s"]
            gflops = mult * r["gflop_fwd"] / t
            path = r["path"]["forward" if mode == "infer" else "backward"]
            print(f"{r['size']:<13} {s['B']:>3} {s['T']:>4} {s['I']:>5} {s['H']:>5} "
                  f"{s['layers']:>2} | {mode:<5} {t * 1e3:>9.3f} {t_off * 1e3:>9.3f} "
                  f"{t / t_off:>6.2f} {t_on * 1e3:>9.3f} {t / t_on:>6.2f} {gflops:>8.1f} "
                  f"{100 * gflops / peak:>5.1f}% | {path}")
    print("cuDNN = torch.nn.GRU with TF32 off; cuDNN32 = the same with TF32 on (numgru: fp32 always).")
    print("train = forward + backward; its GFLOP/s count 3x the forward GEMM FLOPs.")
    if cell:
        print(f"GRUCell one step (B=1, H={cell['H']}): numgru {cell['numgru_s'] * 1e6:.1f} us, "
              f"torch {cell['torch_s'] * 1e6:.1f} us, ratio {cell['numgru_s'] / cell['torch_s']:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=None, help=f"names from {list(SIZES)}")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timing, at least")
    parser.add_argument("--tol", type=float, default=5e-4,
                        help="result check: max |numgru - torch| <= tol x max(1, max |torch|)")
    parser.add_argument("--no-cell", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: run the harness under the CUDA simulator on a tiny size, "
                             "torch on the CPU (timings then mean nothing)")
    args = parser.parse_args(argv)

    if args.dry_run and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        # The simulator is chosen when Numba is imported: start again with it on.
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        return subprocess.call([sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)

    import torch

    import numgru as ng
    usable, reason = ng.cuda_status()
    if not usable:
        raise SystemExit(f"numgru's CUDA backend is not usable here: {reason}")
    if args.dry_run:
        device, sizes = "cpu", DRY_RUN_SIZE
        args.repeat, args.min_time = 1, 0.0
        device_name = "none (CUDA simulator; torch on the CPU): a check of the harness, not timings"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("torch sees no CUDA GPU: the cuDNN baseline cannot run")
        device = "cuda"
        names = args.sizes or list(SIZES)
        unknown = [n for n in names if n not in SIZES]
        if unknown:
            raise SystemExit(f"--sizes: unknown {unknown}; choose from {list(SIZES)}")
        sizes = {n: SIZES[n] for n in names}
        device_name = torch.cuda.get_device_name(0)
    clock = Clock(torch, on_gpu=(device == "cuda"))
    peak = sgemm_peak(torch, clock, device)
    results = []
    for name, shape in sizes.items():
        results.append(bench_size(name, shape, args, torch, clock, device))
        print(f"{name}: results match torch; timed", flush=True)
    cell = None if args.no_cell else bench_cell(args, torch, clock, device)
    report(results, peak, cell, device_name)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "sgemm_peak_gflops": peak, "sizes": results,
                       "cell": cell}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
