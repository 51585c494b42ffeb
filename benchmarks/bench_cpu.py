"""CPU benchmark harness: numgru's CPU backend and the NumPy reference side by side with
torch.nn.GRU, in the same run, over DESIGN.md's grid (float32).

For each size it first checks that numgru and torch agree (outputs and gradients, same weights),
then times inference (forward) and training (forward + backward) as the median of repeated calls,
and prints the ratio to torch's time in this run, the GFLOP/s, and the share of the SGEMM peak
measured at the start. Compile time is excluded from the timings (a warm-up call) and reported
apart: the first call in this process, and with --compile a cold and a cached first call in fresh
processes. torch is the baseline only; numgru never imports it.

    python benchmarks/bench_cpu.py                 # the whole grid
    python benchmarks/bench_cpu.py --sizes stream seed --repeat 50
    python benchmarks/bench_cpu.py --compile       # first-call latency, no cache vs cache
    python benchmarks/bench_cpu.py --memory        # peak memory of a training step vs torch
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

GRID = {  # name: (batch, steps, input, hidden, layers), DESIGN.md
    "seed": (5, 10, 10, 20, 1),
    "stream": (1, 100, 64, 128, 1),
    "medium": (32, 100, 64, 256, 1),
    "large": (64, 50, 256, 512, 1),
    "long": (16, 500, 32, 128, 2),
}


def gemm_flops(B, T, I, H, layers, D=1):
    """Forward GEMM FLOPs of the whole stack: 2·B·T·(I_k + H)·3H per layer and direction."""
    total = 0
    for k in range(layers):
        in_k = I if k == 0 else D * H
        total += D * 2 * B * T * (in_k + H) * 3 * H
    return total


def median_time(fn, repeat, min_time=0.2):
    """Median seconds of fn() over `repeat` calls (more if the calls are very short)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start < min_time and len(times) < 10000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sgemm_peak(threads):
    """GFLOP/s of a 2048² float32 GEMM through the BLAS that numgru's kernels call (SciPy's)."""
    from scipy.linalg import blas

    n = 2048
    a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    b = np.asfortranarray(np.random.default_rng(1).standard_normal((n, n), np.float32))
    blas.sgemm(1.0, a, b)
    t = median_time(lambda: blas.sgemm(1.0, a, b), 5)
    return 2 * n ** 3 / t / 1e9


def check(name, got, want, tol=2e-4):
    err = float(np.max(np.abs(got - want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    if err > tol * scale:
        raise SystemExit(f"result check failed: {name} differs from torch by {err:.3g}")


def bench_size(name, repeat, with_reference, torch, reset_after=True, bidirectional=False):
    import numgru as ng

    B, T, I, H, L = GRID[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    D = 2 if bidirectional else 1
    dy = rng.standard_normal((B, T, D * H)).astype(np.float32)
    kw = dict(num_layers=L, bidirectional=bidirectional)
    tgru = torch.nn.GRU(I, H, batch_first=True, **kw)
    sd = {k: v.detach().numpy().copy() for k, v in tgru.state_dict().items()}
    backends = {"cpu": ng.GRU(I, H, device="cpu", reset_after=reset_after, **kw)}
    if with_reference:
        backends["numpy"] = ng.GRU(I, H, device="numpy", reset_after=reset_after, **kw)
    for gru in backends.values():
        gru.load_state_dict(sd)

    xt = torch.tensor(x, requires_grad=True)
    dyt = torch.tensor(dy)

    def torch_infer():
        with torch.no_grad():
            return tgru(xt)

    def torch_train():
        y, _ = tgru(xt)
        torch.autograd.backward(y, dyt)

    # Results first: numgru must agree with the truth before anything is timed. The truth is
    # torch for reset_after=True; torch has no reset_after=False, so there it is the NumPy
    # reference in float64 (torch still gives the baseline time: its variant costs the same).
    yt, ht = tgru(xt)
    torch.autograd.backward(yt, dyt)
    if reset_after:
        want = {"y": yt.detach().numpy(), "h_n": ht.detach().numpy(), "dx": xt.grad.numpy()}
        want.update({f"grad {k}": p.grad.numpy() for k, p in tgru.named_parameters()})
    else:
        truth = ng.GRU(I, H, device="numpy", reset_after=False, dtype="float64", **kw)
        truth.load_state_dict(sd)
        y64, h64 = truth.forward(x, train=True)
        dx64, _ = truth.backward(dy)
        want = {"y": y64, "h_n": h64, "dx": dx64}
        want.update({f"grad {k}": g for k, g in truth.grads.items()})
    rows = {}
    for dev, gru in backends.items():
        t0 = time.perf_counter()
        y, h = gru(x)  # the first call compiles (or loads the cache): reported apart
        first = time.perf_counter() - t0
        gru.zero_grad()
        gru.forward(x, train=True)
        dx, _ = gru.backward(dy)
        got = {"y": y, "h_n": h, "dx": dx}
        got.update({f"grad {k}": g for k, g in gru.grads.items()})
        for key, value in want.items():
            check(f"{name}/{dev} {key}", got[key], value)
        rows[dev] = {"first_call_s": first}
    xt.grad = None
    tgru.zero_grad()

    def train_step(gru):
        gru.forward(x, train=True)
        gru.backward(dy)

    flops = gemm_flops(B, T, I, H, L, D)
    out = {"size": name, "shape": dict(B=B, T=T, I=I, H=H, layers=L), "gflop_fwd": flops / 1e9}
    t_inf = median_time(torch_infer, repeat)
    t_tr = median_time(torch_train, repeat)
    out["torch"] = {"infer_s": t_inf, "train_s": t_tr}
    for dev, gru in backends.items():
        r = max(3, repeat // 5) if dev == "numpy" else repeat
        rows[dev]["infer_s"] = median_time(lambda: gru(x), r)
        rows[dev]["train_s"] = median_time(lambda: train_step(gru), r)
        out[dev] = rows[dev]
    return out


def bench_cell(repeat, torch):
    import numgru as ng

    I = H = 128
    rng = np.random.default_rng(0)
    tcell = torch.nn.GRUCell(I, H)
    cell = ng.GRUCell(I, H, device="cpu")
    cell.load_state_dict({k: v.detach().numpy() for k, v in tcell.state_dict().items()})
    x = rng.standard_normal((1, I)).astype(np.float32)
    h = rng.standard_normal((1, H)).astype(np.float32)
    xt, htt = torch.tensor(x), torch.tensor(h)
    with torch.no_grad():
        check("GRUCell h1", cell(x, h), tcell(xt, htt).numpy())

        def tstep():
            return tcell(xt, htt)

        t_torch = median_time(tstep, repeat * 20)
    t_ng = median_time(lambda: cell(x, h), repeat * 20)
    return {"torch_s": t_torch, "cpu_s": t_ng}


_MEMORY_SCRIPT = """
import sys, numpy as np
fw, B, T, I, H, L = sys.argv[1], *map(int, sys.argv[2:])
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
rng = np.random.default_rng(0)
x = rng.standard_normal((B, T, I)).astype(np.float32)
dy = rng.standard_normal((B, T, H)).astype(np.float32)
if fw == "torch":
    import torch
    torch.set_num_threads(2)
    g = torch.nn.GRU(I, H, num_layers=L, batch_first=True)
    def step(x, dy):
        xt = torch.tensor(x, requires_grad=True)
        y, _ = g(xt)
        torch.autograd.backward(y, torch.tensor(dy))
else:
    import numgru as ng
    g = ng.GRU(I, H, num_layers=L, device="cpu")
    def step(x, dy):
        g.forward(x, train=True)
        g.backward(dy)
step(x[:1, :2], dy[:1, :2])  # load kernels (or compile) before measuring
base = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
step(x, dy)
print(rss("VmHWM") - base)
"""


def training_memory(sizes):
    """Peak resident memory added by one training step (forward + backward), in fresh processes."""
    print("peak extra resident memory of one training step (MiB), fresh process each:")
    print(f"{'size':8s} {'torch':>8s} {'numgru':>8s} {'ratio':>6s}")
    out = {}
    for name in sizes:
        B, T, I, H, L = GRID[name]
        vals = []
        for fw in ("torch", "numgru"):
            res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, fw, str(B), str(T), str(I),
                                  str(H), str(L)], check=True, capture_output=True, text=True)
            vals.append(int(res.stdout.split()[-1]) / 2 ** 20)
        out[name] = vals
        print(f"{name:8s} {vals[0]:8.1f} {vals[1]:8.1f} {vals[1] / max(vals[0], 1e-9):6.2f}")
    return out


def compile_latency():
    """First-call time in fresh processes: with an empty Numba cache, then with it filled."""
    code = ("import time, numpy as np; t0 = time.perf_counter(); import numgru as ng; "
            "g = ng.GRU(8, 16, device='cpu'); x = np.ones((2, 5, 8), np.float32); "
            "t1 = time.perf_counter(); g(x); g.forward(x, train=True); g.backward(np.ones((2, 5, 16), "
            "np.float32)); print(time.perf_counter() - t1, t1 - t0)")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        results = []
        for label in ("cold (no cache)", "cached"):
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            results.append((label, float(out[0]), float(out[1])))
    print("first call (forward, training forward and backward, float32):")
    for label, t, imp in results:
        print(f"  {label:16s} {t:7.3f} s   (import numgru {imp:.3f} s)")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(GRID), choices=list(GRID))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-reference", action="store_true", help="skip the NumPy reference")
    ap.add_argument("--reset-after-false", action="store_true",
                    help="time numgru's reset_after=False variant (torch's time stays the baseline)")
    ap.add_argument("--bidirectional", action="store_true", help="bidirectional layers, both sides")
    ap.add_argument("--no-cell", action="store_true", help="skip the GRUCell latency")
    ap.add_argument("--compile", action="store_true", help="only the first-call latencies")
    ap.add_argument("--memory", action="store_true", help="only the training-step peak memory")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.compile:
        compile_latency()
        return
    if args.memory:
        training_memory(args.sizes)
        return
    import torch

    torch.set_num_threads(args.threads)
    import numba

    peak = sgemm_peak(args.threads)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), numba "
          f"{numba.__version__}, numpy {np.__version__}; SGEMM peak (2048², SciPy BLAS): "
          f"{peak:.1f} GFLOP/s")
    print(f"variant: reset_after={not args.reset_after_false}, bidirectional={args.bidirectional}")
    print("All results are checked against torch (or, for reset_after=False, the float64 NumPy "
          "reference) before timing. Times: median, float32.")
    head = (f"{'size':8s} {'mode':6s} {'torch ms':>9s} {'cpu ms':>9s} {'cpu/torch':>9s} "
            f"{'cpu GF/s':>8s} {'%peak':>6s} {'torch GF/s':>10s} {'numpy ms':>9s} {'np/torch':>8s}")
    print(head)
    results = {"sgemm_peak_gflops": peak, "sizes": []}
    for name in args.sizes:
        r = bench_size(name, args.repeat, not args.no_reference, torch,
                       reset_after=not args.reset_after_false, bidirectional=args.bidirectional)
        results["sizes"].append(r)
        for mode, mult in (("infer", 1), ("train", 3)):
            gf = r["gflop_fwd"] * mult
            tt, tc = r["torch"][f"{mode}_s"], r["cpu"][f"{mode}_s"]
            line = (f"{name:8s} {mode:6s} {tt * 1e3:9.3f} {tc * 1e3:9.3f} {tc / tt:9.2f} "
                    f"{gf / tc:8.1f} {100 * gf / tc / peak:5.1f}% {gf / tt:10.1f}")
            if "numpy" in r:
                tn = r["numpy"][f"{mode}_s"]
                line += f" {tn * 1e3:9.3f} {tn / tt:8.2f}"
            print(line, flush=True)
    print("first calls in this process (compile or cache load), excluded above: " + ", ".join(
        f"{r['size']} {r['cpu']['first_call_s']:.2f}s" for r in results["sizes"]))
    if not args.no_cell:
        c = bench_cell(args.repeat, torch)
        results["gru_cell"] = c
        print(f"GRUCell one step (B=1, H=128, from Python): torch {c['torch_s'] * 1e6:.1f} us, "
              f"cpu {c['cpu_s'] * 1e6:.1f} us, ratio {c['cpu_s'] / c['torch_s']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
