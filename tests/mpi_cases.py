"""Training problems for the data-parallel tests, built the same way on every rank and in the
single-process reference; run as a script under mpiexec it runs the tasks named on its command
line and rank 0 saves what they produced:

    mpiexec -n 3 python tests/mpi_cases.py OUT.npz CHECKPOINT_DIR fit/mse_l1 det1/ce_seq_l2 ...

test_distributed.py computes the references in its own process (one process, same seed, same
global batches, or torch) and compares. Not a test module itself (pytest does not collect it).
"""

import json
import os
import sys

import numpy as np

import numgru as ng

# name: the problem. N rows, global batch B (uneven shares on 2 and 3 ranks; a last batch
# smaller than the number of ranks leaves a rank with no rows), lengths in [1, T].
CASES = {
    "mse_l1": dict(dtype="float64", layers=1, head="last", loss="mse", I=3, H=5, O=2, N=23, B=7,
                   T=6, opt=("adam", 0.02), clip=0.5, metrics=["rmse", "mae"], val=9),
    "ce_seq_l2": dict(dtype="float64", layers=2, head="sequence", loss="cross_entropy", I=3, H=4,
                      O=3, N=17, B=5, T=7, opt=("sgd", 0.3), dropout=0.3, val=6),
    "mse_seq_l2": dict(dtype="float64", layers=2, head="sequence", loss="mse", I=2, H=3, O=2,
                       N=11, B=5, T=5, opt=("adam", 0.02), clip=0.5, metrics=["mae"], val=4),
    "ce_l1": dict(dtype="float64", layers=1, head="last", loss="cross_entropy", I=3, H=4, O=3,
                  N=13, B=5, T=6, opt=("sgd", 0.2), metrics=["accuracy"]),
    "ce_last_l2_bi": dict(dtype="float64", layers=2, head="last", loss="cross_entropy", I=2, H=4,
                          O=3, N=10, B=4, T=5, opt=("adamw", 0.03), bidirectional=True),
    "mse_l1_f32": dict(dtype="float32", layers=1, head="last", loss="mse", I=3, H=5, O=2, N=23,
                       B=7, T=6, opt=("adam", 0.02), clip=0.5, metrics=["rmse"], val=9),
    "ce_seq_l2_f32": dict(dtype="float32", layers=2, head="sequence", loss="cross_entropy", I=3,
                          H=4, O=3, N=17, B=5, T=7, opt=("sgd", 0.3), dropout=0.3, val=6),
}
EPOCHS = 3
SEED = 11  # the models' seed (weights and dropout), on every rank unless a test says otherwise
# The device path (parameters, gradients and moments in device arrays, staged through the host
# for MPI), under Numba's CUDA simulator: a tiny problem, since the simulator is slow.
#   NUMBA_ENABLE_CUDASIM=1 mpiexec -n 2 python tests/mpi_cases.py OUT.npz DIR cuda/cuda_seq
CUDA_CASES = {
    "cuda_seq": dict(dtype="float64", layers=1, head="sequence", loss="cross_entropy", I=2, H=3,
                     O=2, N=5, B=5, T=3, opt=("adam", 0.05), clip=0.5),
}


def data(name, seed=0):
    """(X, y, lengths, validation or None) of a case: padding beyond each length is zero."""
    c = {**CASES, **CUDA_CASES}[name]
    rng = np.random.default_rng(seed + len(name))

    def part(n):
        X = rng.standard_normal((n, c["T"], c["I"]))
        lengths = rng.integers(1, c["T"] + 1, n)
        X[np.arange(c["T"])[None, :] >= lengths[:, None]] = 0
        shape = (n, c["T"]) if c["head"] == "sequence" else (n,)
        if c["loss"] == "cross_entropy":
            y = rng.integers(0, c["O"], shape)
        else:
            y = rng.standard_normal(shape + (c["O"],))
        return X, y, lengths

    X, y, lengths = part(c["N"])
    val = part(c["val"]) if c.get("val") else None
    return X, y, lengths, val


def build(name, distributed=False, deterministic=False, optimizer=None, dropout=None,
          device="cpu", seed=SEED):
    c = {**CASES, **CUDA_CASES}[name]
    model = ng.GRUModel(c["I"], c["H"], c["O"], num_layers=c["layers"], head=c["head"],
                        bidirectional=c.get("bidirectional", False),
                        dropout=c.get("dropout", 0.0) if dropout is None else dropout,
                        dtype=c["dtype"], device=device, seed=seed)
    kind, lr = optimizer or c["opt"]
    opt = {"adam": lambda: ng.Adam(model, lr=lr),
           "adamw": lambda: ng.AdamW(model, lr=lr, weight_decay=0.1),
           "sgd": lambda: ng.SGD(model, lr=lr, momentum=0.9)}[kind]()
    trainer = ng.Trainer(model, opt, loss=c["loss"], metrics=c.get("metrics"),
                         clip_norm=c.get("clip"), scheduler=ng.CosineLR(opt, 4), progress=False,
                         distributed=distributed, deterministic=deterministic)
    return model, trainer


def fit(name, distributed=False, deterministic=False, epochs=EPOCHS, checkpoint=None,
        resume=False, device="cpu", seed=SEED, start=False):
    """{"loss", other history values..., "params"}: the history of a fit and its final weights;
    with `start`, also "start": the weights of the model once the Trainer is made, before
    training (rank 0's on every rank, in data-parallel training)."""
    X, y, lengths, val = data(name)
    model, trainer = build(name, distributed, deterministic, device=device, seed=seed)
    weights0 = model.get_flat_params()
    batch = {**CASES, **CUDA_CASES}[name]["B"]
    history = trainer.fit(X, y, lengths=lengths, epochs=epochs, batch_size=batch,
                          validation_data=val, seed=5, checkpoint=checkpoint, resume=resume)
    out = {k: np.asarray(v, np.float64) for k, v in history.items() if k not in ("time", "epoch")}
    out["params"] = model.get_flat_params()
    if start:
        out["start"] = weights0
    return out


def one_step(name, distributed=False):
    """The gradient of one train_step on the first B rows (plain SGD, no clipping, no dropout):
    the summed flat gradient buffer after the step, and the step's loss."""
    c = CASES[name]
    X, y, lengths, _ = data(name)
    model, trainer = build(name, distributed, optimizer=("sgd", 0.1), dropout=0.0)
    trainer.clip_norm = None
    B = c["B"]
    loss = trainer.train_step(X[:B], y[:B], lengths=lengths[:B])
    return {"loss": np.array([loss]), "grads": np.array(model.flat_grads, np.float64),
            "params0": build(name)[0].get_flat_params()}


# -- faults (under mpiexec only): each returns what every rank raised --

def _raised(fn):
    try:
        fn()
    except Exception as e:
        return {"type": type(e).__name__, "message": str(e),
                "mro": [k.__name__ for k in type(e).__mro__],
                "ranks": getattr(e, "ranks", None)}
    return None


def fault_nan_on_one_rank(comm, ckdir):
    """Rank 1 reads data with a NaN in it (the others' copy is good)."""
    X, y, lengths, _ = data("mse_l1")
    if comm.rank == 1:
        X = X.copy()
        X[3, 1, 0] = np.nan
    _, trainer = build("mse_l1", True)
    return _raised(lambda: trainer.fit(X, y, lengths=lengths, epochs=1, batch_size=7))


def fault_other_data_on_one_rank(comm, ckdir):
    """The last rank holds finite data that differ from rank 0's."""
    X, y, lengths, _ = data("mse_l1")
    if comm.rank == comm.size - 1:
        X = X * 1.5
    _, trainer = build("mse_l1", True)
    return _raised(lambda: trainer.fit(X, y, lengths=lengths, epochs=1, batch_size=7))


def fault_nonfinite_loss(comm, ckdir):
    """Epoch 1 trains and writes a checkpoint; then a target of 1e300 in the last row of the
    first batch (rank `size - 1`'s share) makes that rank's loss infinite."""
    X, y, lengths, _ = data("mse_l1")
    path = os.path.join(ckdir, f"nonfinite{comm.size}.npz")
    _, trainer = build("mse_l1", True)
    trainer.fit(X, y, lengths=lengths, epochs=1, batch_size=7, shuffle=False, checkpoint=path)
    y = y.copy()
    y[6, 0] = 1e300
    _, trainer = build("mse_l1", True)
    return _raised(lambda: trainer.fit(X, y, lengths=lengths, epochs=2, batch_size=7,
                                       shuffle=False, checkpoint=path, resume=True))


def fault_callback_on_one_rank(comm, ckdir):
    """A callback that raises on the last rank at the end of epoch 1."""
    X, y, lengths, _ = data("mse_l1")
    _, trainer = build("mse_l1", True)

    def flaky(tr, epoch, logs):
        if tr.rank == tr.world_size - 1:
            raise KeyError("no such metric on this rank")
    return _raised(lambda: trainer.fit(X, y, lengths=lengths, epochs=2, batch_size=7,
                                       callbacks=[flaky]))


def fault_stop_on_one_rank(comm, ckdir):
    """A callback that stops training on rank 0 alone: every rank stops after epoch 1."""
    X, y, lengths, _ = data("mse_l1")
    _, trainer = build("mse_l1", True)

    def stop(tr, epoch, logs):
        if tr.rank == 0:
            tr.stop_training = True
    history = trainer.fit(X, y, lengths=lengths, epochs=3, batch_size=7, callbacks=[stop])
    return {"epochs": len(history["loss"])}


FAULTS = {f.__name__: f for f in (fault_nan_on_one_rank, fault_other_data_on_one_rank,
                                  fault_nonfinite_loss, fault_callback_on_one_rank,
                                  fault_stop_on_one_rank)}


def abort_outside_numgru():
    """Rank 1 raises in the script itself while rank 0 starts fitting: the job must end."""
    from mpi4py import MPI
    X, y, lengths, _ = data("mse_l1")
    _, trainer = build("mse_l1", True)
    if MPI.COMM_WORLD.rank == 1:
        raise RuntimeError("rank one fails outside numgru")
    trainer.fit(X, y, lengths=lengths, epochs=50, batch_size=7)


def main(argv):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if argv[0] == "abort":
        abort_outside_numgru()
        return
    out_path, ckdir, tasks = argv[0], argv[1], argv[2:]
    results = {}
    for task in tasks:
        kind, _, name = task.partition("/")
        if kind == "fit":
            res = fit(name, True)
        elif kind in ("det1", "det2"):
            res = fit(name, True, deterministic=int(kind[3:]))
        elif kind in ("cuda", "cudadet"):  # under NUMBA_ENABLE_CUDASIM=1
            res = fit(name, True, deterministic=kind == "cudadet", epochs=1, device="cuda")
        elif kind == "grad":
            res = one_step(name, True)
        elif kind == "seeds":  # each rank builds its model with a seed of its own
            res = fit(name, True, seed=SEED + comm.rank, start=True)
            for key in ("start", "params"):  # every rank's, in rank order (rank 0 saves them)
                gathered = comm.gather(res[key], root=0)
                res[key] = np.stack(gathered) if comm.rank == 0 else None
        elif kind in ("resume_write", "resume_read", "detresume_write", "detresume_read"):
            det = 1 if kind.startswith("det") else False
            path = os.path.join(ckdir, f"{kind.split('_')[0]}_{name}.npz")
            epochs = 2 if kind.endswith("write") else 4
            res = fit(name, True, deterministic=det, epochs=epochs, checkpoint=path,
                      resume=kind.endswith("read"))
        elif kind == "fault":
            raised = comm.gather(FAULTS[name](comm, ckdir), root=0)
            res = {"json": np.array(json.dumps(raised))}
        else:
            raise SystemExit(f"unknown task {task!r}")
        for key, value in res.items():
            results[f"{task}/{key}"] = value
    if comm.rank == 0:
        results["world_size"] = np.array(comm.size)
        results["threads"] = np.array(os.environ.get("NUMGRU_NUM_THREADS", ""))
        tmp = out_path + ".tmp.npz"
        np.savez(tmp, **results)
        os.replace(tmp, out_path)


if __name__ == "__main__":
    main(sys.argv[1:])
