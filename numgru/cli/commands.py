"""The `numgru` command line (also `python -m numgru`): train, predict, evaluate, export, bench,
info.

`train` takes a bundled data set's name (japanese_vowels, sunspots) or a file (.ts, .npz, .csv),
fits a GRUModel and writes a run folder: model.npz (the final model and how its data were
prepared), checkpoint.npz (the last epoch's full training state, for --resume), history.json and
history.csv, metrics.json, and loss.png when matplotlib is installed. `predict` and `evaluate`
take that folder (or a checkpoint file) and prepare their data the same way (numgru/cli/prep.py).
"""

import argparse
import csv
import io
import json
import os
import platform
import sys
import time

import numpy as np

from ..optim import OPTIMIZERS
from .prep import TASKS, CLIError, Preparation, prepare_training

# -- train --

def cmd_train(args):
    """Prepare the data, hold out validation, train (resuming on --resume), then write the run
    folder and report the test metrics."""
    _resolve_training_defaults(args)
    rng = np.random.default_rng(args.seed)  # draws the test split (if needed), then validation
    prep, train, test = prepare_training(args.data, args.task, args.column, args.test,
                                         args.test_split, args.window, rng)
    train, validation = _hold_out_validation(args, prep.task, train, rng)
    if args.schedule == "auto":  # constant under early stopping, cosine when every epoch runs
        args.schedule = "none" if validation else "cosine"
    trainer = _build_trainer(args, prep)
    out_dir = _run_folder(trainer, args.out or os.path.join(
        "runs", f"{_slug(args.data)}-{time.strftime('%Y%m%d-%H%M%S')}"))
    print(_run_summary(args, prep, trainer, train, validation, test), flush=True)
    t0 = time.perf_counter()
    history = trainer.fit(train[0], train[1], lengths=train[2], epochs=args.epochs,
                          batch_size=args.batch_size, validation_data=validation, seed=args.seed,
                          early_stopping=args.patience, resume=args.resume,
                          checkpoint=os.path.join(out_dir, "checkpoint.npz"),
                          extra=prep.to_record())
    seconds = time.perf_counter() - t0
    if trainer.rank == 0:  # rank 0 alone writes the run folder and reports
        _finish_run(args, prep, trainer.model, test, out_dir, history, seconds, trainer.best_epoch)
    return 0


def _resolve_training_defaults(args):
    """Fill in what was not given (numgru.sklearn's defaults). Without --epochs: up to 200 epochs
    on a 10% held-out (stratified) validation split, stopped 25 epochs after the best validation
    loss, that epoch's weights kept, constant learning rate; when the split would hold fewer than
    20 sequences, all 200 epochs on all the data with a cosine schedule. With --epochs N: N
    epochs, cosine schedule, no validation unless --val-split."""
    from .._fitting import DEFAULTS
    args.auto_epochs = args.epochs is None
    if args.auto_epochs:
        args.epochs = DEFAULTS["epochs"]
    if args.val_split is None:
        args.val_split = DEFAULTS["validation_fraction"] if args.auto_epochs else 0.0
    if args.patience is None and args.auto_epochs and args.val_split > 0:
        args.patience = DEFAULTS["n_iter_no_change"]
    if args.schedule is None:
        args.schedule = "auto" if args.auto_epochs else "cosine"


def _hold_out_validation(args, task, train, rng):
    """(fit part, validation part or None) of the prepared training part (X, y, lengths), as
    --val-split asks; too few sequences for a split train on all of them without stopping early."""
    if not args.val_split > 0:
        return train, None
    from .._fitting import DEFAULTS, validation_split
    fit_idx, val_idx = validation_split(
        train[1], args.val_split, rng, stratify=task == "classify",
        min_size=DEFAULTS["min_validation_size"] if args.auto_epochs else 1)
    if len(val_idx) == 0:
        print(f"numgru train: {len(train[0])} training sequences are too few for a validation "
              f"split; training {args.epochs} epochs on all of them", flush=True)
        args.patience = None
        return train, None
    X, y, lengths = train
    rows = (lambda idx: (X[idx], y[idx], None if lengths is None else lengths[idx]))
    return rows(fit_idx), rows(val_idx)


def _build_trainer(args, prep):
    from ..model import GRUModel
    from ..training.trainer import Trainer
    model = GRUModel(prep.input_size, args.hidden, prep.output_size, num_layers=args.layers,
                     bidirectional=args.bidirectional, reset_after=not args.reset_before,
                     dtype=args.dtype, device=args.device, seed=args.seed, dropout=args.dropout)
    opt, sched = _build_optimizer(args, model)
    return Trainer(model, opt, loss=prep.loss,
                   metrics=["accuracy"] if prep.task == "classify" else ["rmse"],
                   clip_norm=args.clip_norm, scheduler=sched, progress=not args.no_progress,
                   distributed=getattr(args, "comm", None) or False,
                   deterministic=args.deterministic or False)


def _build_optimizer(args, model):
    from ..optim import CosineLR, StepLR
    extra = {"momentum": args.momentum} if args.optimizer == "sgd" else {}
    opt = OPTIMIZERS[args.optimizer](model, lr=args.lr, weight_decay=args.weight_decay, **extra)
    if args.schedule == "cosine":
        sched = CosineLR(opt, T_max=args.epochs)
    elif args.schedule == "step":
        sched = StepLR(opt, step_size=max(1, args.epochs // 3), gamma=0.1)
    else:
        sched = None
    return opt, sched


def _run_folder(trainer, out_dir):
    """Create the run folder (rank 0 alone in data-parallel training, whose name all use)."""
    if trainer.world_size == 1:
        os.makedirs(out_dir, exist_ok=True)
        return out_dir
    dp = trainer.data_parallel
    made = dp.on_root(f"creating the run folder {out_dir}",
                      lambda: os.makedirs(out_dir, exist_ok=True) or out_dir)
    return dp.group.bcast(made)


def _run_summary(args, prep, trainer, train, validation, test):
    return (f"numgru train: {args.data} ({prep.task}), {len(train[0])} training sequences"
            + (f", {len(validation[0])} validation" if validation else "")
            + (f", {len(test[0])} test" if test else "") + f"; {trainer.model!r}, "
            f"{trainer.model.num_parameters()} parameters; {trainer.optimizer!r}"
            + _parallel_note(trainer))


def _parallel_note(trainer):
    if trainer.world_size == 1:
        return ""
    dp = trainer.data_parallel
    n = str(dp.threads or os.environ.get("NUMGRU_NUM_THREADS") or "")
    each = f"{n} thread{'' if n == '1' else 's'} each" if n else "each with the CPUs it may use"
    mode = f", deterministic in chunks of {dp.chunk} row(s)" if dp.chunk else ""
    return f"; data-parallel over {trainer.world_size} MPI processes ({each}{mode})"


def _slug(text):
    base = os.path.basename(text)
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in base.split(".")[0]) or "run"


def _finish_run(args, prep, model, test, out_dir, history, seconds, best_epoch):
    """model.npz, the test metrics and the rest of the run folder, once training is done.
    checkpoint.npz holds the last epoch with everything --resume needs; model.npz the run's
    final model (the best epoch's weights when a validation split chose one)."""
    from ..io.checkpoint import save_checkpoint
    save_checkpoint(os.path.join(out_dir, "model.npz"), model, extra=prep.to_record())
    epochs = len(history.get("loss", []))
    print(f"trained {epochs} epochs in {seconds:.1f} s (best epoch {best_epoch})", flush=True)
    metrics = {"task": prep.task, "data": args.data, "epochs": epochs, "train_seconds": seconds,
               "best_epoch": best_epoch}
    if test is not None:
        metrics["test"] = _evaluate(model, prep, *test)
        _print_result(metrics["test"], prep, args.data)
    _write_run(out_dir, history, metrics)
    print(f"run folder: {out_dir} ({', '.join(sorted(os.listdir(out_dir)))})")


def _evaluate(model, prep, X, y, lengths):
    """Metrics of the model on prepared data: accuracy, or RMSE in the data's units."""
    from ..losses import cross_entropy_loss
    from ..training.batches import predict
    out = predict(model, X, lengths=lengths)
    if prep.task == "classify":
        loss, _ = cross_entropy_loss(out, y)
        return {"n": int(len(X)), "loss": loss, "accuracy": float(np.mean(out.argmax(1) == y))}
    pred, true = prep.to_units(out), prep.to_units(y)
    result = {"n": int(len(X)), "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
              "mae": float(np.mean(np.abs(pred - true)))}
    if prep.task == "forecast":
        last = prep.to_units(X[:, -1, 0])  # the value one step before each target
        result["rmse_repeat_last"] = float(np.sqrt(np.mean((last - true[:, 0]) ** 2)))
    return result


def _print_result(result, prep, data):
    from .. import datasets
    published = datasets.DATASETS.get(data, {}).get("published")
    if prep.task == "classify":
        print(f"test accuracy: {100 * result['accuracy']:.1f}% on {result['n']} sequences "
              f"(loss {result['loss']:.4f})")
        if published:
            print("reference test accuracy on this split (see numgru/datasets/README.md):")
            rows = published + [("numgru GRU (this run)", result["accuracy"])]
            for name, acc in sorted(rows, key=lambda r: -r[1]):
                print(f"  {100 * acc:5.1f}%  {name}")
    else:
        print(f"test RMSE: {result['rmse']:.2f} (MAE {result['mae']:.2f}) on {result['n']} "
              f"targets")
        if "rmse_repeat_last" in result:
            print(f"  repeat-last-value baseline RMSE: {result['rmse_repeat_last']:.2f}")
        if published:
            print("published one-step-ahead RMSE on this split:")
            for name, value in published:
                print(f"  {value:6.1f}  {name}")


def _write_run(out_dir, history, metrics):
    """history.json, history.csv, metrics.json and loss.png, each written atomically."""
    from ..io.atomic import atomic_write
    atomic_write(os.path.join(out_dir, "history.json"), json.dumps(history, indent=1).encode())
    keys = list(history)
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(keys)
    for row in zip(*(history[k] for k in keys)):
        w.writerow(row)
    atomic_write(os.path.join(out_dir, "history.csv"), text.getvalue().encode())
    atomic_write(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=1).encode())
    if not plot_history(history, os.path.join(out_dir, "loss.png")):
        print("loss.png not written: matplotlib is not installed (pip install 'numgru[plot]')")


def plot_history(history, path):
    """Loss curves (and accuracy, where logged) to a PNG; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = history.get("epoch", list(range(1, len(history.get("loss", [])) + 1)))
    has_acc = "accuracy" in history
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 6, 4))
    axes = np.atleast_1d(axes)
    for key in ("loss", "val_loss"):
        if key in history:
            axes[0].plot(epochs, history[key], label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    if has_acc:
        for key in ("accuracy", "val_accuracy"):
            if key in history:
                axes[1].plot(epochs, history[key], label=key)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("accuracy")
        axes[1].legend()
    fig.tight_layout()
    from ..io.atomic import atomic_write
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, png.getbuffer())
    return True


# -- evaluate and predict --

def _open_run(run, device):
    """(model, Preparation) of a run folder's model.npz, or of a checkpoint file."""
    from ..io.checkpoint import load_model
    path = os.path.join(run, "model.npz") if os.path.isdir(run) else run
    if not os.path.exists(path):
        raise CLIError(f"{run}: no model.npz or checkpoint (expected a run folder written by "
                       f"`numgru train`, or a checkpoint file)")
    model, ck = load_model(path, device=device)
    return model, Preparation.from_record(ck.meta.get("extra"), model, path)


def cmd_evaluate(args):
    model, prep = _open_run(args.run, args.device)
    X, y, lengths, _ = prep.transform(args.data, args.split)
    result = _evaluate(model, prep, X, y, lengths)
    _print_result(result, prep, args.data)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_predict(args):
    from .._fitting import softmax
    from ..training.batches import predict
    model, prep = _open_run(args.run, args.device)
    X, _, lengths, index = prep.transform(args.data, args.split, require_targets=False)
    out = predict(model, X, lengths=lengths)
    rows = []
    if prep.task == "classify":
        prob = softmax(out)
        header = ["index", "label", "probability"]
        for i, k in zip(index, prob.argmax(1)):
            rows.append([int(i), prep.classes[k], f"{prob[len(rows), k]:.6f}"])
    else:
        pred = prep.to_units(out)
        header = ["index"] + [f"prediction_{j}" for j in range(pred.shape[1])]
        for i, p in zip(index, pred):
            rows.append([int(i)] + [f"{v:.6g}" for v in p])
    stream = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(stream)
        w.writerow(header)
        w.writerows(rows)
    finally:
        if args.out:
            stream.close()
            print(f"wrote {len(rows)} predictions to {args.out}", file=sys.stderr)
    return 0


# -- export --

def _fold_preparation(model, prep):
    """A copy of model that takes the raw data and gives results in the data's units: the input
    standardisation folded into layer 0's input weights, the target's into the head.

    z = (x - m) / s, so W_ih z + b_ih = (W_ih / s) x + (b_ih - W_ih (m / s)); padding is never
    read (the lengths stop each sequence). For regression and forecasting, y = out·s_y + m_y."""
    from ..model import GRUModel
    folded = GRUModel.from_config(model.config(), device="cpu")
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    x = prep.x_scaler
    for name in [k for k in state if k.startswith("gru.weight_ih_l0")]:
        w = state[name]
        state[name] = w / x.std[None, :]
        suffix = name[len("gru.weight_ih_l0"):]
        state["gru.bias_ih_l0" + suffix] = state["gru.bias_ih_l0" + suffix] - w @ (x.mean / x.std)
    if prep.task != "classify":
        y = prep.output_scaler
        state["fc.weight"] = state["fc.weight"] * y.std[:, None]
        state["fc.bias"] = state["fc.bias"] * y.std + y.mean
    folded.load_state_dict(state)
    return folded


def cmd_export(args):
    from ..io.onnx import export_onnx
    model, prep = _open_run(args.run, "cpu")
    raw = _fold_preparation(model, prep) if not args.standardized else model
    lengths = args.lengths if args.lengths is not None else prep.task != "forecast"
    meta = {"numgru.task": prep.task, "numgru.inputs": "standardized" if args.standardized
            else "raw"}
    if prep.classes:
        meta["numgru.classes"] = json.dumps(prep.classes)
    export_onnx(raw, args.out, opset=args.opset, lengths=lengths, metadata=meta)
    inputs = "x (batch, time, %d)" % model.input_size + (", lengths (batch,) int64"
                                                        if lengths else "")
    what = {"classify": f"logits over classes {prep.classes}",
            "regress": "predictions in the targets' units",
            "forecast": "the next value, in the series' units"}[prep.task]
    if args.standardized:
        what += " (standardised inputs and outputs, as the run's model.npz)"
    print(f"wrote {args.out}: inputs {inputs}; outputs out ({what}), h_n; opset {args.opset}")
    return 0


# -- bench and info --

from .grid import GRID as BENCH_SIZES, gemm_flops  # noqa: E402


def cmd_bench(args):
    from ..layers import GRU
    names = list(BENCH_SIZES) if args.sizes == "all" else args.sizes.split(",")
    for n in names:
        if n not in BENCH_SIZES:
            raise CLIError(f"--sizes: unknown size {n!r} (known: {', '.join(BENCH_SIZES)}, all)")
    print(f"numgru bench: device {args.device}, {args.dtype}, median of {args.repeat} runs")
    print(f"{'size':8} {'B':>4} {'T':>4} {'I':>4} {'H':>4} {'L':>2}  {'forward ms':>10} "
          f"{'GFLOP/s':>8}  {'fwd+bwd ms':>10} {'GFLOP/s':>8}")
    rng = np.random.default_rng(0)
    for n in names:
        B, T, I, H, L = BENCH_SIZES[n]
        gru = GRU(I, H, num_layers=L, dtype=args.dtype, device=args.device, seed=0)
        x = rng.standard_normal((B, T, I)).astype(args.dtype)
        dy = np.ones((B, T, H), args.dtype)
        flops = gemm_flops(B, T, I, H, L)
        gru(x)
        gru.forward(x, train=True)
        gru.backward(dy)  # compile and warm up
        fwd, both = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            gru(x)
            t1 = time.perf_counter()
            gru.forward(x, train=True)
            gru.backward(dy)
            t2 = time.perf_counter()
            fwd.append(t1 - t0)
            both.append(t2 - t1)
        f, b = float(np.median(fwd)), float(np.median(both))
        print(f"{n:8} {B:4d} {T:4d} {I:4d} {H:4d} {L:2d}  {1e3 * f:10.3f} {flops / f / 1e9:8.2f}"
              f"  {1e3 * b:10.3f} {3 * flops / b / 1e9:8.2f}", flush=True)
    return 0


def cmd_info(args):
    import numba
    from .._version import __version__
    from ..backend import DEVICES, cuda_status, resolve
    from ..training.distributed import describe_launch
    mpi_lines, rank = describe_launch()  # under mpiexec: rank 0 alone prints
    if rank != 0:
        return 0
    print(f"numgru {__version__}")
    print(f"python {platform.python_version()} ({platform.machine()}, {platform.system()})")
    for mod in ("numpy", "numba", "llvmlite", "scipy", "tqdm", "matplotlib"):
        try:
            version = __import__(mod).__version__
        except ImportError:
            version = "not installed" + (" (pip install 'numgru[plot]' for loss.png)"
                                         if mod == "matplotlib" else "")
        print(f"{mod:10} {version}")
    from ..cpu.sync import max_threads
    print(f"CPU passes: up to {max_threads()} threads (NUMGRU_NUM_THREADS, else the CPUs this "
          f"process may use, capped by NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}); "
          f"{os.cpu_count()} CPUs")
    from .._jit import CACHE_DIR, CACHE_REASON
    from ..cpu.plan import plan
    from ..cpu.target import PATH
    print(f"CPU code path: {PATH.name} ({PATH.reason})")
    print(f"kernel cache: {CACHE_DIR or 'none'} ({CACHE_REASON})")
    the_plan = plan()
    if the_plan.path:
        print(f"part plan: {the_plan.path} ({len(the_plan.chosen())} sizes measured; "
              f"NUMGRU_PLAN=off uses the fixed rule)")
    blas = _blas_name()
    if blas:
        print(f"BLAS (numpy's, for the Linear head; the GRU kernels use none): {blas}")
    usable, reason = cuda_status()
    print("devices:")
    for d in DEVICES:
        if d == "auto":
            continue
        if d == "cuda":
            print(f"  cuda   {'usable' if usable else 'not usable: ' + reason}")
        else:
            print(f"  {d:6} usable")
    print(f"  auto -> {resolve('auto')}")
    for line in mpi_lines:
        print(line)
    return 0


def _blas_name():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy has no dict mode; the name is a nicety
        return None


# -- argument parsing --

def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _add_train_command(sub):
    from .._fitting import DEFAULTS as D  # the estimators' defaults, chosen on small UEA sets
    t = sub.add_parser("train", help="train a GRUModel and write a run folder")
    t.add_argument("data", help="bundled data set (japanese_vowels, basic_motions, sunspots) or a "
                   ".ts/.npz/.csv file; X_TRAIN.ts alone is tested on X_TEST.ts beside it")
    t.add_argument("--test", default=None, metavar="FILE",
                   help="test sequences (.ts/.npz) for a training file")
    t.add_argument("--task", choices=TASKS, help="default: classify for labelled sequences, "
                   "regress for float targets, forecast for CSV series")
    t.add_argument("--hidden", type=_positive(int), default=D["hidden_size"],
                   help=f"hidden units ({D['hidden_size']})")
    t.add_argument("--layers", type=_positive(int), default=D["num_layers"],
                   help=f"GRU layers ({D['num_layers']})")
    t.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                   default=D["bidirectional"],
                   help="a bidirectional GRU (default; --no-bidirectional for one direction)")
    t.add_argument("--reset-before", action="store_true",
                   help="reset_after=False (the original GRU variant)")
    t.add_argument("--dropout", type=_fraction, default=D["dropout"],
                   help=f"between GRU layers ({D['dropout']:g})")
    t.add_argument("--epochs", type=_positive(int), default=None,
                   help="train this many epochs (cosine schedule); default: up to 200 with early "
                   "stopping on a 10%% validation split, the best epoch kept")
    t.add_argument("--batch-size", type=_positive(int), default=D["batch_size"])
    t.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=D["optimizer"])
    t.add_argument("--lr", type=_positive(float), default=D["lr"])
    t.add_argument("--weight-decay", type=float, default=D["weight_decay"])
    t.add_argument("--momentum", type=float, default=0.9, help="for sgd (0.9)")
    t.add_argument("--schedule", choices=("none", "cosine", "step"), default=None,
                   help="default: cosine with --epochs, else none")
    t.add_argument("--clip-norm", type=_positive(float), default=D["clip_norm"],
                   help=f"clip the gradient's global norm ({D['clip_norm']:g})")
    t.add_argument("--val-split", type=_fraction, default=None,
                   help="fraction of the training data held out for validation (stratified for "
                   "classification; default 0.1 without --epochs, else 0)")
    t.add_argument("--patience", type=_positive(int), default=None,
                   help="early stopping: epochs without improvement (default 25 without --epochs)")
    t.add_argument("--window", type=_positive(int), default=10, help="forecast: input years (10)")
    t.add_argument("--column", default=None, help="CSV column (name or index; default the last)")
    t.add_argument("--test-split", type=_fraction, default=0.2,
                   help="test fraction for files without a test split (0.2)")
    t.add_argument("--device", default="auto")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run folder (default runs/<data>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                   help="data-parallel over MPI (default: on when started by mpiexec or srun "
                   "with more than one process)")
    t.add_argument("--deterministic", type=_positive(int), nargs="?", const=1, default=None,
                   metavar="ROWS", help="data-parallel results bitwise the same for any number "
                   "of processes: gradients of chunks of ROWS rows (1) added in a fixed order")
    t.set_defaults(func=cmd_train)


def build_parser():
    p = argparse.ArgumentParser(prog="numgru", description="Train and run GRU models (numgru).")
    sub = p.add_subparsers(dest="command", required=True)
    _add_train_command(sub)

    for name, func, helptext in (("evaluate", cmd_evaluate, "metrics of a trained model on data"),
                                 ("predict", cmd_predict, "predictions of a trained model as CSV")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("run", help="run folder or checkpoint file written by `numgru train`")
        e.add_argument("data", help="bundled data set or file, like train's")
        e.add_argument("--split", choices=("test", "train", "all"), default="test",
                       help="for bundled data and series: which part (test)")
        e.add_argument("--device", default="auto")
        if name == "evaluate":
            e.add_argument("--json", action="store_true", help="also print the metrics as JSON")
        else:
            e.add_argument("--out", default=None, help="CSV file (default: stdout)")
        e.set_defaults(func=func)

    x = sub.add_parser("export", help="write a run's model as one ONNX file")
    x.add_argument("run", help="run folder or checkpoint file written by `numgru train`")
    x.add_argument("out", help="the .onnx file to write")
    x.add_argument("--opset", type=_positive(int), default=17, help="ONNX opset (17; 14 or later)")
    x.add_argument("--lengths", action=argparse.BooleanOptionalAction, default=None,
                   help="give the graph a lengths input (default: yes, except for forecasting)")
    x.add_argument("--standardized", action="store_true",
                   help="keep the run's standardisation outside the graph (default: the graph "
                   "takes the raw data, as `numgru predict` does)")
    x.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="time forward and forward+backward on DESIGN.md's sizes")
    b.add_argument("--sizes", default="seed,stream,medium",
                   help=f"comma-separated from {', '.join(BENCH_SIZES)}, or all")
    b.add_argument("--device", default="auto")
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    b.add_argument("--repeat", type=_positive(int), default=5)
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="versions, threads and devices")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    group = None
    try:
        group = _data_parallel(args)
        return args.func(args)
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, ValueError, TypeError, RuntimeError, OSError) as e:
        # OSError: a file that cannot be read or written (a folder, no permission, a full disk)
        return _report(args, group, e, f"numgru {args.command}: error", 2)
    except MemoryError as e:
        return _report(args, group, MemoryError(f"out of memory ({e or 'no more detail'})"),
                       f"numgru {args.command}: error", 2)
    except FloatingPointError as e:  # NonFiniteLossError
        return _report(args, group, e, f"numgru {args.command}: training stopped", 3)
    except BaseException as e:
        if group is None or group.size == 1:
            raise
        return _report(args, group, e, f"numgru {args.command}: failed", 1)


def _data_parallel(args):
    """For `train` started by an MPI launcher: the ranks' Group (rank 0 alone prints), else None."""
    if args.command != "train":
        return None
    from ..training.distributed import cli_comm, group_for
    args.comm = cli_comm(args.distributed)
    if args.comm is None:
        return None
    group = group_for(args.comm)
    if group.rank != 0:
        sys.stdout = open(os.devnull, "w")
    return group


def _report(args, group, error, prefix, code):
    """Print the error once: in data-parallel training every rank raises it together (a rank
    that failed alone joins the others first, or the job is aborted), and rank 0 prints it."""
    if group is not None and group.size > 1:
        if not getattr(error, "all_ranks", False):
            try:
                group.join_failure(error, f"running numgru {args.command}")
            except Exception as combined:
                error = combined
        if group.rank != 0:
            return code
    print(f"{prefix}: {error}", file=sys.stderr)
    return code


__all__ = ["main", "build_parser", "plot_history"]
