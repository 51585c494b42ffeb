"""Data-parallel training over MPI: the time of one training step split into compute (forward,
loss, backward), the small Allreduce (loss sums and error flag, which also absorbs the wait for
the slowest rank), the gradient Allreduce and the rest (optimizer update, gradient norm, slicing),
for one process (2 threads, 1 thread) and 2 MPI ranks (1 thread each) here, and the deterministic
mode's cost, over DESIGN.md's grid (float32, Adam, mse on a 4-output head). From the measured
compute at each rank's share of the batch, it then models steps per second against ranks on a
cluster (ring Allreduce: 2(N-1)·latency + 2(N-1)/N · bytes / bandwidth).

    python benchmarks/bench_mpi.py                      # measure here (starts mpiexec), then model
    python benchmarks/bench_mpi.py --sizes seed medium --repeat 5
    python benchmarks/bench_mpi.py --model results.json # the model again from saved measurements

Speed claims come from here, never from the tests. Each launch pays Numba's cache load before the
timed steps (two warm-up steps).
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from numgru.cli.grid import GRID  # noqa: E402  (name: (batch, steps, input, hidden, layers))

OUTPUTS = 4
RANKS = (1, 2, 4, 8, 16, 32, 64)
# name: (bandwidth in bytes/s, latency in s): nominal link rate at 90 % for large messages, and a
# typical one-way small-message latency of MPI over that fabric.
NETWORKS = {
    "10 GbE, TCP": (0.9 * 10e9 / 8, 50e-6),
    "25 GbE, TCP": (0.9 * 25e9 / 8, 25e-6),
    "100 GbE, RoCE": (0.9 * 100e9 / 8, 5e-6),
    "InfiniBand HDR 200 Gb/s": (0.9 * 200e9 / 8, 1.5e-6),
}


# -- the worker: runs under mpiexec (or alone) and times steps --

class _Timers(dict):
    def wrap(self, obj, name, key):
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self[key] = self.get(key, 0.0) + time.perf_counter() - t0
        setattr(obj, name, timed)


def _problem(size, seed=0):
    B, T, I, H, L = GRID[size]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = rng.standard_normal((B, OUTPUTS)).astype(np.float32)
    return x, y


def _trainer(size, mode, comm):
    import numgru as ng
    B, T, I, H, L = GRID[size]
    model = ng.GRUModel(I, H, OUTPUTS, num_layers=L, seed=0)
    distributed = comm if (comm is not None and mode != "plain") else False
    deterministic = int(mode[3:]) if mode.startswith("det") else False
    trainer = ng.Trainer(model, ng.Adam(model, lr=1e-4), loss="mse", progress=False,
                         distributed=distributed, deterministic=deterministic)
    return model, trainer


def _instrumented(size, mode, comm):
    """(trainer, timers): a trainer whose phases add their seconds into timers."""
    model, trainer = _trainer(size, mode, comm)
    timers = _Timers()
    timers.wrap(model, "forward", "compute")
    timers.wrap(model, "backward", "compute")
    timers.wrap(trainer, "loss_fn", "compute")
    dp = trainer._dp
    if dp is not None:
        timers.wrap(dp.group, "check", "small_allreduce")
        timers.wrap(dp.group, "allgather", "small_allreduce")
        if dp.chunk is None:
            timers.wrap(dp, "_sum_buffer", "grad_allreduce")
        else:  # the chain of partial sums and the final broadcast
            for name in ("send_", "recv_", "bcast_"):
                timers.wrap(dp.group, name, "grad_allreduce")
    return trainer, timers


def time_steps(size, modes, repeat, comm):
    """{mode: median seconds per step, total and by phase}, of `repeat` train_steps per mode
    (after 2 warm-ups), the modes taking turns step by step so that a change in the machine's
    load falls on all of them alike."""
    x, y = _problem(size)
    runs = {mode: _instrumented(size, mode, comm) for mode in modes}
    for trainer, _ in runs.values():
        for _ in range(2):
            trainer.train_step(x, y)
    rows = {mode: [] for mode in modes}
    for _ in range(repeat):
        for mode, (trainer, timers) in runs.items():
            if comm is not None:
                comm.Barrier()
            timers.clear()
            t0 = time.perf_counter()
            trainer.train_step(x, y)
            total = time.perf_counter() - t0
            row = {"total": total, **timers}
            row["rest"] = total - sum(timers.values())
            rows[mode].append(row)
    keys = ("total", "compute", "small_allreduce", "grad_allreduce", "rest")
    return {mode: {k: statistics.median(r.get(k, 0.0) for r in rows[mode]) for k in keys}
            | {"parameters": runs[mode][0].model.num_parameters()} for mode in modes}


def time_shares(size, repeat):
    """Seconds of forward + loss + backward at each share size ceil(B/N) (one process), and of the
    optimizer step over all parameters."""
    B, T, I, H, L = GRID[size]
    model, trainer = _trainer(size, "plain", None)
    x, y = _problem(size)
    def compute(b):
        model.zero_grad()
        pred = model.forward(x[:b], train=True)
        _, grad = trainer.loss_fn(pred, y[:b], None)
        model.backward(grad)

    batches = sorted({max(1, math.ceil(B / n)) for n in RANKS})
    times = {b: [] for b in batches}
    for b in batches:
        compute(b)
    for _ in range(repeat):  # the batch sizes take turns, as the modes do
        for b in batches:
            t0 = time.perf_counter()
            compute(b)
            times[b].append(time.perf_counter() - t0)
    out = {str(b): statistics.median(t) for b, t in times.items()}
    opt = trainer.optimizer
    opt.step()
    times = []
    for _ in range(max(repeat, 5)):
        t0 = time.perf_counter()
        opt.grad_norm()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"compute_at_batch": out, "update": statistics.median(times),
            "parameters": model.num_parameters()}


def worker(args):
    comm = None
    if args.mpi:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    result = {"size": 1 if comm is None else comm.Get_size(),
              "threads": os.environ.get("NUMGRU_NUM_THREADS"), "modes": {}}
    modes = args.modes.split(",")
    for mode in modes:
        result["modes"][mode] = {}
    for s in args.sizes:
        for mode, row in time_steps(s, modes, args.repeat, comm).items():
            result["modes"][mode][s] = row
    if args.shares:
        result["shares"] = {s: time_shares(s, args.repeat) for s in args.sizes}
    if comm is None or comm.Get_rank() == 0:
        with open(args.worker, "w") as f:
            json.dump(result, f)


# -- the driver --

def _launch(cmd, threads, out):
    env = dict(os.environ, NUMGRU_NUM_THREADS=str(threads), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    print("  $", " ".join(cmd), f"(NUMGRU_NUM_THREADS={threads})", flush=True)
    subprocess.run(cmd, env=env, check=True, timeout=3600)
    with open(out) as f:
        return json.load(f)


def measure(sizes, repeat):
    here = os.path.abspath(__file__)
    tmp = tempfile.mkdtemp(prefix="bench_mpi")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
    base = ["--sizes", *sizes, "--repeat", str(repeat)]
    runs = {}
    out = os.path.join(tmp, "a.json")
    runs["1 process, 2 threads"] = _launch(
        [sys.executable, here, "--worker", out, "--modes", "plain", *base], 2, out)
    out = os.path.join(tmp, "b.json")
    runs["1 process, 1 thread"] = _launch(
        [sys.executable, here, "--worker", out, "--modes", "plain,det1,det4", "--shares", *base],
        1, out)
    out = os.path.join(tmp, "c.json")
    runs["2 ranks, 1 thread each"] = _launch(
        [mpiexec, "-n", "2", sys.executable, here, "--worker", out, "--mpi",
         "--modes", "dp,det1,det4", *base], 1, out)
    return {"cpu": _cpu(), "python": platform.python_version(), "runs": runs}


def _cpu():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    get = lambda k: fields.get(k, "?").strip()  # noqa: E731
    return (f"{get('Model name')} (family {get('CPU family')}, model {get('Model')}), "
            f"{get('CPU(s)')} CPUs, {get('Hypervisor vendor') or 'bare metal'}")


def ring_allreduce(n, nbytes, bandwidth, latency):
    if n == 1:
        return 0.0
    return 2 * (n - 1) * latency + 2 * (n - 1) / n * nbytes / bandwidth


def model_step(share, n, B, nbytes, bandwidth, latency):
    """Modelled seconds per step on n ranks: the slowest share's compute, the update (every rank
    updates all parameters), the small Allreduce (latency-bound: ceil(log2 n) hops) and the ring
    Allreduce of the float32 gradients; nothing overlaps (numgru reduces after backward)."""
    compute = share["compute_at_batch"][str(max(1, math.ceil(B / n)))]
    small = math.ceil(math.log2(n)) * latency if n > 1 else 0.0
    return compute + share["update"] + small + ring_allreduce(n, nbytes, bandwidth, latency)


def report(results):
    runs = results["runs"]
    print(f"\nCPU: {results['cpu']}; Python {results['python']}; float32, Adam, median per step\n")
    one2, one1, two = (runs["1 process, 2 threads"], runs["1 process, 1 thread"],
                       runs["2 ranks, 1 thread each"])
    sizes = list(one1["modes"]["plain"])
    # One row per run: its step and the step's split (one process has no Allreduce: "-").
    print("| size | params | run | ms per step | compute | small allreduce (+wait) | "
          "grad allreduce | rest | against 1 proc 2 thr |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ms = lambda v: f"{1e3 * v:.3g}"  # noqa: E731
    for s in sizes:
        a = one2["modes"]["plain"][s]
        for name, row, mpi in (("1 proc, 2 thr", a, False),
                               ("1 proc, 1 thr", one1["modes"]["plain"][s], False),
                               ("2 ranks, 1 thr each", two["modes"]["dp"][s], True)):
            reduce = [ms(row["small_allreduce"]), ms(row["grad_allreduce"])] if mpi else \
                ["-", "-"]
            print(f"| {s} | {row['parameters']} | {name} | {ms(row['total'])} | "
                  f"{ms(row['compute'])} | {' | '.join(reduce)} | {ms(row['rest'])} | "
                  f"{a['total'] / row['total']:.2f}x |")
    print("\nDeterministic mode (chunks of 1 and 4 rows), ms per step and ratio to the plain step "
          "with the same ranks:\n")
    print("| size | 1 proc plain | det1 | det4 | 2 ranks plain | det1 | det4 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in sizes:
        p1, p2 = one1["modes"]["plain"][s]["total"], two["modes"]["dp"][s]["total"]
        cells = [f"{1e3 * p1:.3g}"]
        for mode in ("det1", "det4"):
            t = one1["modes"][mode][s]["total"]
            cells.append(f"{1e3 * t:.3g} ({t / p1:.1f}x)")
        cells.append(f"{1e3 * p2:.3g}")
        for mode in ("det1", "det4"):
            t = two["modes"][mode][s]["total"]
            cells.append(f"{1e3 * t:.3g} ({t / p2:.1f}x)")
        print(f"| {s} | " + " | ".join(cells) + " |")
    print("\nModel: steps/s against ranks (one core per rank, compute measured here at each "
          "rank's share ceil(B/N); global batch fixed)\n")
    shares = one1["shares"]
    for net, (bw, lat) in NETWORKS.items():
        print(f"{net} ({bw * 8 / 1e9:.0f} Gb/s effective, {lat * 1e6:g} us):\n")
        print("| size | grad MB | " + " | ".join(f"N={n}" for n in RANKS) + " | best N | "
              "efficiency < 50 % from |")
        print("| --- | --- | " + " | ".join("---" for _ in RANKS) + " | --- | --- |")
        for s in sizes:
            B = GRID[s][0]
            nbytes = 4 * shares[s]["parameters"]
            steps = [1 / model_step(shares[s], n, B, nbytes, bw, lat) for n in RANKS]
            best = RANKS[int(np.argmax(steps))]
            low = next((n for n, v in zip(RANKS, steps) if v / steps[0] / n < 0.5), None)
            print(f"| {s} | {nbytes / 1e6:.2f} | " + " | ".join(f"{v:.0f}" for v in steps)
                  + f" | {best} | {low or '> 64'} |")
        print()
    print("Weak scaling (each rank keeps the grid's batch, the global batch grows with N): "
          "efficiency at N = 64\n")
    print("| size | " + " | ".join(NETWORKS) + " |")
    print("| --- | " + " | ".join("---" for _ in NETWORKS) + " |")
    for s in sizes:
        B = GRID[s][0]
        nbytes = 4 * shares[s]["parameters"]
        base = shares[s]["compute_at_batch"][str(B)] + shares[s]["update"]
        cells = []
        for bw, lat in NETWORKS.values():
            extra = math.ceil(math.log2(64)) * lat + ring_allreduce(64, nbytes, bw, lat)
            cells.append(f"{base / (base + extra):.0%}")
        print(f"| {s} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(GRID), choices=list(GRID))
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--model", help="results JSON of an earlier run: print its tables again")
    p.add_argument("--save", help="write the measurements to this JSON file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--modes", default="plain", help=argparse.SUPPRESS)
    p.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shares", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.model:
        with open(args.model) as f:
            results = json.load(f)
    else:
        print("measuring (three launches):")
        results = measure(args.sizes, args.repeat)
        if args.save:
            with open(args.save, "w") as f:
                json.dump(results, f, indent=1)
    report(results)


if __name__ == "__main__":
    main()
