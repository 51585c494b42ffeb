"""Training-step benchmark: numgru's whole Trainer step (forward, loss, backward, gradient-norm
check, clipping, the Adam update with its finiteness check) side by side with the same step in
torch (nn.GRU + nn.Linear on the last step, MSE, clip_grad_norm_, torch.optim.Adam), float32,
in one process, calls interleaved in rounds. Also the optimizer update alone, with and without
numgru's finiteness check (`Optimizer.next_step_is_finite()`, which the Trainer asks first).

Both engines start from the same weights, and one step of each must give the same loss and the
same updated weights (to float32 tolerance) before anything is timed.

    .venv/bin/python benchmarks/bench_train_step.py [--sizes medium large] [--repeat 20]
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

SIZES = {  # (B, T, I, H): the grid's stream, medium and large, and a wide one (most parameters)
    "stream": (1, 100, 64, 128),
    "medium": (32, 100, 64, 256),
    "large": (64, 50, 256, 512),
    "b4h1024": (4, 50, 256, 1024),
}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_time(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name, repeat, torch):
    import numgru as ng
    B, T, I, H = SIZES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = rng.standard_normal((B, 4)).astype(np.float32)
    model = ng.GRUModel(I, H, 4, seed=0, device="cpu")
    opt = ng.Adam(model, lr=1e-3)
    trainer = ng.Trainer(model, opt, loss="mse", clip_norm=1.0, progress=False)

    tgru = torch.nn.GRU(I, H, batch_first=True)
    tfc = torch.nn.Linear(H, 4)
    state = model.state_dict()
    with torch.no_grad():
        for k, p in tgru.named_parameters():
            p.copy_(torch.from_numpy(state[f"gru.{k}"]))
        tfc.weight.copy_(torch.from_numpy(state["fc.weight"]))
        tfc.bias.copy_(torch.from_numpy(state["fc.bias"]))
    tparams = list(tgru.parameters()) + list(tfc.parameters())
    topt = torch.optim.Adam(tparams, lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step():
        topt.zero_grad()
        out, _ = tgru(xt)
        loss = torch.nn.functional.mse_loss(tfc(out[:, -1]), yt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tparams, 1.0)
        topt.step()
        return loss.item()

    # One step each from the same weights: the same loss and the same updated weights.
    loss_ng = trainer.train_step(x, y)
    loss_t = torch_step()
    assert abs(loss_ng - loss_t) <= 1e-4 * abs(loss_t), (name, loss_ng, loss_t)
    # The gradients (clipped) to float32 tolerance, relative to each tensor's largest entry; the
    # updated weights to a fifth of a step (Adam's first step moves each weight by about lr,
    # and by less where the gradient is near eps, where float32 rounding decides).
    after = model.state_dict()
    for k, p in tgru.named_parameters():
        g_t = p.grad.numpy()
        np.testing.assert_allclose(model.gru.grads[k], g_t, rtol=0,
                                   atol=1e-3 * float(np.abs(g_t).max()) + 1e-12,
                                   err_msg=f"{name}: gradient of {k}")
        np.testing.assert_allclose(after[f"gru.{k}"], p.detach().numpy(), rtol=0, atol=2e-4,
                                   err_msg=f"{name}: {k} after one step")

    fns = {"numgru_step": lambda: trainer.train_step(x, y), "torch_step": torch_step,
           "adam_update": opt.step}
    if hasattr(opt, "next_step_is_finite"):  # the Trainer's step: the check, then the update
        fns["adam_update_checked"] = lambda: opt.next_step_is_finite() and opt.step()
    rounds, t = 3, {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            n = max(3, repeat // rounds) * (10 if key.startswith("adam") else 1)
            t[key].append(median_time(fn, n))
    out = {"size": name, "shape": dict(B=B, T=T, I=I, H=H),
           "parameters": model.num_parameters()}
    out.update({k: min(v) for k, v in t.items()})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    os.environ.setdefault("NUMGRU_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    rows = [bench(n, args.repeat, torch) for n in args.sizes]
    print(f"{cpu_name()}, {args.threads} threads, float32; ms per call")
    print(f"{'size':8} {'params':>9} {'numgru step':>12} {'torch step':>11} {'ratio':>6} "
          f"{'adam':>8} {'adam+check':>10}")
    for r in rows:
        checked = r.get("adam_update_checked")
        print(f"{r['size']:8} {r['parameters']:9d} {1e3 * r['numgru_step']:12.3f} "
              f"{1e3 * r['torch_step']:11.3f} {r['numgru_step'] / r['torch_step']:6.2f} "
              f"{1e3 * r['adam_update']:8.3f} "
              + (f"{1e3 * checked:10.3f}" if checked is not None else f"{'-':>10}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "threads": args.threads, "sizes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
