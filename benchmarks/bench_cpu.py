"""CPU benchmark harness: numgru's CPU backend side by side with torch.nn.GRU (inference and
training) and ONNX Runtime's GRU operator (inference), in the same run, float32.

For each size it first checks that all of them agree with torch (outputs and gradients, same
weights; for reset_after=False with the float64 NumPy reference), then times inference and
training (forward + backward) as medians of repeated calls, and prints the ratio of numgru's
time to each peer's, the GFLOP/s, and the share of the SGEMM peak measured at the start (numpy's
BLAS, the same threads). Compile time is excluded (a warm-up call) and reported apart: the
start-up lines time a new process's import, first inference and first training step with an
empty and with a filled Numba cache. The header names the CPU, numgru's code path and why.

    python benchmarks/bench_cpu.py                   # DESIGN.md's grid, the wide sizes, start-up
    python benchmarks/bench_cpu.py --sizes seed large --repeat 50
    python benchmarks/bench_cpu.py --startup         # only the start-up lines
    python benchmarks/bench_cpu.py --interference    # numgru's time with ORT / torch between calls
    python benchmarks/bench_cpu.py --memory          # peak memory of a training step vs torch

Peers run with the same number of intra-op threads; ONNX Runtime with its spinning off for the
timings (its spinning workers would take the cores from whatever runs next) and with its
defaults in the interference mode. torch and onnxruntime are benchmark peers only: numgru never
imports them.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from numgru.cli.grid import GRID, gemm_flops  # noqa: E402  (GRID: name: (B, T, I, H, layers))

# Serving and wide sizes: batch 1 to 128 at hidden 128 to 1024 (50 steps, 128 inputs).
WIDE = {f"b{B}h{H}": (B, 50, 128, H, 1) for B in (1, 4, 8, 32, 128) for H in (128, 256, 512, 1024)}
SIZES = {**GRID, **WIDE}


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
    """GFLOP/s of a 2048² float32 GEMM through numpy's BLAS, on `threads` threads as the peers
    (threadpoolctl, scikit-learn's dependency, limits BLAS; without it BLAS uses its default)."""
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n), np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), np.float32)
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(threads, user_api="blas")
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        a @ b
        t = median_time(lambda: a @ b, 5)
    return 2 * n ** 3 / t / 1e9


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check(name, got, want, tol=2e-4):
    err = float(np.max(np.abs(got - want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    if err > tol * scale:
        raise SystemExit(f"result check failed: {name} differs from the truth by {err:.3g}")


def ort_session(ort, gru, threads, spinning):
    """An ONNX Runtime session of the layer (numgru's own export), and its input name."""
    import numgru as ng
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gru.onnx")
        ng.export_onnx(gru, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, sess.get_inputs()[0].name


def bench_size(name, repeat, torch, ort, threads, reset_after=True, bidirectional=False):
    import numgru as ng

    B, T, I, H, L = SIZES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    D = 2 if bidirectional else 1
    dy = rng.standard_normal((B, T, D * H)).astype(np.float32)
    kw = dict(num_layers=L, bidirectional=bidirectional)
    tgru = torch.nn.GRU(I, H, batch_first=True, **kw)
    sd = {k: v.detach().numpy().copy() for k, v in tgru.state_dict().items()}
    gru = ng.GRU(I, H, device="cpu", reset_after=reset_after, **kw)
    gru.load_state_dict(sd)
    xt = torch.tensor(x, requires_grad=True)
    dyt = torch.tensor(dy)

    def torch_infer():
        with torch.no_grad():
            return tgru(xt)

    def torch_train():
        y, _ = tgru(xt)
        torch.autograd.backward(y, dyt)

    # Results first: numgru and ONNX Runtime must agree with the truth before anything is timed.
    # The truth is torch for reset_after=True; torch has no reset_after=False, so there it is
    # the NumPy reference in float64 (torch still gives the baseline time: its variant costs the
    # same).
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
    t0 = time.perf_counter()
    y, h = gru(x)  # the first call compiles (or loads the cache): reported apart
    first = time.perf_counter() - t0
    gru.zero_grad()
    gru.forward(x, train=True)
    dx, _ = gru.backward(dy)
    got = {"y": y, "h_n": h, "dx": dx}
    got.update({f"grad {k}": g for k, g in gru.grads.items()})
    for key, value in want.items():
        check(f"{name}/numgru {key}", got[key], value)
    sess, xname = ort_session(ort, gru, threads, spinning=False)
    y_ort, h_ort = sess.run(None, {xname: x})
    check(f"{name}/onnxruntime y", y_ort, want["y"])
    check(f"{name}/onnxruntime h_n", h_ort, want["h_n"])
    xt.grad = None
    tgru.zero_grad()

    def train_step():
        gru.forward(x, train=True)
        gru.backward(dy)

    out = {"size": name, "shape": dict(B=B, T=T, I=I, H=H, layers=L),
           "gflop_fwd": gemm_flops(B, T, I, H, L, D) / 1e9, "first_call_s": first}
    # Each measurement alternates its peers call by call in rounds, so that a slow phase of the
    # shared machine falls on all of them alike.
    rounds = 3
    t = {k: [] for k in ("torch_infer", "torch_train", "ort_infer", "infer", "train")}
    fns = {"torch_infer": torch_infer, "torch_train": torch_train,
           "ort_infer": lambda: sess.run(None, {xname: x}), "infer": lambda: gru(x),
           "train": train_step}
    for _ in range(rounds):
        for key, fn in fns.items():
            t[key].append(median_time(fn, max(3, repeat // rounds)))
    out.update({k: min(v) for k, v in t.items()})
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
        t_torch = median_time(lambda: tcell(xt, htt), repeat * 20)
    t_ng = median_time(lambda: cell(x, h), repeat * 20)
    return {"torch_s": t_torch, "cpu_s": t_ng}


# -- start-up: new processes, empty and filled cache --

_STARTUP_SCRIPT = """
import sys, time
t0 = time.perf_counter()
import numgru as ng
import numpy as np
t1 = time.perf_counter()
gru = ng.GRU(64, 128, seed=0)  # device="auto": the CUDA probe included
x = np.ones((4, 20, 64), np.float32)
gru(x)
t2 = time.perf_counter()
y, _ = gru.forward(x, train=True)
gru.backward(np.ones_like(y))
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, gru.device)
"""


def startup():
    """A new process's import, first inference and first training step (forward + backward) of a
    1-layer GRU (64 -> 128, float32, device="auto"), with an empty Numba cache, then filled."""
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        env.pop("NUMGRU_DEVICE", None)
        for label in ("empty cache", "filled cache"):
            out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            rows.append((label, *map(float, out[:3]), out[3]))
    print("start-up, new process, 1-layer GRU 64 -> 128, float32, device='auto':")
    for label, imp, inf, tr, dev in rows:
        print(f"  {label:13s} import {imp:6.3f} s   first inference {inf:6.3f} s   "
              f"first training step {tr:6.3f} s   (ran on {dev})")
    return rows


# -- interference: other thread pools in the same process --

def interference(names, repeat, torch, ort, threads):
    """numgru's inference time alone, and with ONNX Runtime (its defaults: spinning workers) or
    torch (its OpenMP pool) running between numgru's calls in the same process."""
    import numgru as ng
    print("interference: numgru's inference time, alone and with another pool's call before "
          "each of its calls (median ms; ratio to alone), and torch's GRU alone and after ORT")
    print(f"{'size':10s} {'alone':>9s} {'after ORT':>9s} {'ratio':>6s} {'after torch':>11s} "
          f"{'ratio':>6s} {'torch alone':>11s} {'after ORT':>9s} {'ratio':>6s}")
    out = {}
    for name in names:
        B, T, I, H, L = SIZES[name]
        x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
        gru = ng.GRU(I, H, num_layers=L, device="cpu", seed=0)
        sess, xname = ort_session(ort, gru, threads, spinning=True)
        tgru = torch.nn.GRU(I, H, num_layers=L, batch_first=True)
        xt = torch.tensor(x)
        gru(x)
        sess.run(None, {xname: x})

        def after(other, call):
            times = []
            for _ in range(max(repeat, 10)):
                other()
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

        def torch_call():
            with torch.no_grad():
                tgru(xt)

        def ort_call():
            sess.run(None, {xname: x})

        def numgru_call():
            gru(x)

        torch_call()
        # Each engine alone before and after its runs with the other pool (the better of the
        # two medians), then with the other pool's call before each of its calls; torch's own
        # GRU after ONNX Runtime's is the yardstick: what any engine with a thread per core
        # loses to ONNX Runtime's spinning workers.
        alone = median_time(numgru_call, repeat)
        t_ort = after(ort_call, numgru_call)
        t_torch = after(torch_call, numgru_call)
        alone = min(alone, median_time(numgru_call, repeat))
        torch_alone = median_time(torch_call, repeat)
        torch_after_ort = after(ort_call, torch_call)
        torch_alone = min(torch_alone, median_time(torch_call, repeat))
        out[name] = {"alone_s": alone, "after_ort_s": t_ort, "after_torch_s": t_torch,
                     "torch_alone_s": torch_alone, "torch_after_ort_s": torch_after_ort}
        print(f"{name:10s} {alone * 1e3:9.3f} {t_ort * 1e3:9.3f} {t_ort / alone:6.2f} "
              f"{t_torch * 1e3:11.3f} {t_torch / alone:6.2f} {torch_alone * 1e3:11.3f} "
              f"{torch_after_ort * 1e3:9.3f} {torch_after_ort / torch_alone:6.2f}", flush=True)
    return out


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
        B, T, I, H, L = SIZES[name]
        vals = []
        for fw in ("torch", "numgru"):
            res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, fw, str(B), str(T), str(I),
                                  str(H), str(L)], check=True, capture_output=True, text=True)
            vals.append(int(res.stdout.split()[-1]) / 2 ** 20)
        out[name] = vals
        print(f"{name:8s} {vals[0]:8.1f} {vals[1]:8.1f} {vals[1] / max(vals[0], 1e-9):6.2f}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--grid", action="store_true", help="DESIGN.md's grid only (no wide sizes)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else os.cpu_count())
    ap.add_argument("--reset-after-false", action="store_true",
                    help="time numgru's reset_after=False variant (torch's time stays the baseline)")
    ap.add_argument("--bidirectional", action="store_true", help="bidirectional layers, both sides")
    ap.add_argument("--no-cell", action="store_true", help="skip the GRUCell latency")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up lines")
    ap.add_argument("--startup", action="store_true", help="only the start-up lines")
    ap.add_argument("--interference", action="store_true",
                    help="only numgru's time with ONNX Runtime / torch calls in between")
    ap.add_argument("--memory", action="store_true", help="only the training-step peak memory")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    sizes = [s for s in args.sizes if s in GRID] if args.grid else args.sizes
    # numgru's passes on as many threads as the peers (set before numgru's first call).
    os.environ["NUMGRU_NUM_THREADS"] = str(args.threads)

    def save(results):
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)

    if args.startup:
        save({"cpu": cpu_model(), "startup": startup()})
        return
    if args.memory:
        save({"cpu": cpu_model(), "memory": training_memory([s for s in sizes if s in GRID])})
        return
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    import numba

    from numgru.cpu.target import PATH
    print(f"CPU: {cpu_model()} ({platform.machine()}), {args.threads} threads for every peer")
    print(f"numgru code path: {PATH.name}: {PATH.reason}")
    if args.interference:
        save({"cpu": cpu_model(), "path": PATH.name, "interference": interference(
            [s for s in sizes if s in ("medium", "large", "long", "b32h512", "b128h256")]
            or sizes, args.repeat, torch, ort, args.threads)})
        return
    peak = sgemm_peak(args.threads)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, numba {numba.__version__}, "
          f"numpy {np.__version__}; SGEMM peak (2048², numpy's BLAS): {peak:.1f} GFLOP/s")
    print(f"variant: reset_after={not args.reset_after_false}, bidirectional={args.bidirectional}")
    print("All results are checked against torch (or, for reset_after=False, the float64 NumPy "
          "reference) before timing. Times: medians, ms, float32.")
    print(f"{'size':8s} {'torch inf':>9s} {'ORT inf':>9s} {'numgru':>9s} {'/torch':>6s} "
          f"{'/ORT':>6s} {'%peak':>6s} | {'torch tr':>9s} {'numgru tr':>9s} {'/torch':>6s} "
          f"{'%peak':>6s}")
    results = {"cpu": cpu_model(), "path": PATH.name, "sgemm_peak_gflops": peak, "sizes": []}
    for name in sizes:
        r = bench_size(name, args.repeat, torch, ort, args.threads,
                       reset_after=not args.reset_after_false, bidirectional=args.bidirectional)
        results["sizes"].append(r)
        gf = r["gflop_fwd"]
        print(f"{name:8s} {r['torch_infer'] * 1e3:9.3f} {r['ort_infer'] * 1e3:9.3f} "
              f"{r['infer'] * 1e3:9.3f} {r['infer'] / r['torch_infer']:6.2f} "
              f"{r['infer'] / r['ort_infer']:6.2f} {100 * gf / r['infer'] / peak:5.1f}% | "
              f"{r['torch_train'] * 1e3:9.3f} {r['train'] * 1e3:9.3f} "
              f"{r['train'] / r['torch_train']:6.2f} {100 * 3 * gf / r['train'] / peak:5.1f}%",
              flush=True)
    if not args.no_cell:
        c = bench_cell(args.repeat, torch)
        results["gru_cell"] = c
        print(f"GRUCell one step (B=1, H=128, from Python): torch {c['torch_s'] * 1e6:.1f} us, "
              f"numgru {c['cpu_s'] * 1e6:.1f} us, ratio {c['cpu_s'] / c['torch_s']:.2f}")
    if not args.no_startup:
        results["startup"] = startup()
    save(results)


if __name__ == "__main__":
    main()
