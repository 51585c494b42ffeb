"""Data-parallel training over MPI: 2 and 3 ranks (mpiexec, started from here with a timeout, so
that a hang fails instead of blocking) against one process computed here with the same seed and
the same global batches (mse and cross-entropy, 1 and 2 layers, lengths, uneven shares), and one
distributed step against torch's full-batch gradient; ranks built with other seeds against one
process started from rank 0's model; the deterministic mode bitwise for 1, 2 and 3 ranks; resume
on another number of ranks; faults on one rank; `mpiexec -n 2 numgru train` (its curve, a
non-finite loss, a rank that fails alone) and `numgru info` end to end.

Tolerances: float64 1e-12 relative (only the order of the sums differs: per rank, then over
ranks); float32 1e-5 relative to the tensor's scale, as tests/test_torch.py's float32 GEMM
comparisons (each rank's GEMMs round to float32 over other row groupings, and a few optimizer
steps carry that on).
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import numgru as ng
from helpers import assert_close, require, require_numba_cuda

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_cases as mc  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-5}
FAULT_TASKS = [f"fault/{name}" for name in mc.FAULTS]
DET2 = ("ce_seq_l2", "mse_l1_f32")  # also run in the deterministic mode with chunks of 2 rows
TASKS = ([f"fit/{c}" for c in mc.CASES] + [f"det1/{c}" for c in mc.CASES]
         + [f"det2/{c}" for c in DET2] + ["grad/mse_l1", "grad/ce_seq_l2", "seeds/ce_seq_l2"]
         + FAULT_TASKS)
LAUNCHER_VARS = ("OMPI_", "PMI_", "PMIX_", "MV2_", "SLURM_", "HYDI_", "MPI_LOCAL")


def _mpiexec():
    require("mpi4py")
    path = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if path is None:
        if os.environ.get("NUMGRU_REQUIRE_ORACLES") == "1":
            pytest.fail("no mpiexec next to python or on PATH (pip install -e '.[test]' brings "
                        "MPICH's)")
        pytest.skip("no mpiexec")
    return path


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
    env.update(extra)
    return env


def launch(n, args, cwd=HERE, timeout=240, **extra_env):
    """(returncode, stdout, stderr) of `mpiexec -n n args...`: one thread per rank (2 cores
    here), what Open MPI needs to run as root and oversubscribed (MPICH needs nothing), and a
    hard timeout that kills the whole process group."""
    env = _clean_env(NUMGRU_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                     MPIEXEC_TIMEOUT=str(timeout - 20), OMPI_ALLOW_RUN_AS_ROOT="1",
                     OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
                     PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe", **extra_env)
    proc = subprocess.Popen([_mpiexec(), "-n", str(n), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(map(str, args))} did not end within {timeout} s "
                    f"(a hang):\n{err[-4000:]}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


def _run_tasks(n, ckdir, tasks):
    out = ckdir / f"results{n}.npz"
    code, stdout, stderr = launch(n, [sys.executable, os.path.join(HERE, "mpi_cases.py"), out,
                                      ckdir, *tasks])
    assert code == 0, f"mpiexec -n {n} failed ({code}):\n{stdout[-3000:]}\n{stderr[-6000:]}"
    with np.load(out, allow_pickle=False) as f:
        results = {k: f[k] for k in f.files}
    assert int(results["world_size"]) == n and str(results["threads"]) == "1"
    return results


@pytest.fixture(scope="module")
def ranks2(ckdir):
    return _run_tasks(2, ckdir, TASKS + ["resume_write/ce_seq_l2", "detresume_write/ce_seq_l2"])


@pytest.fixture(scope="module")
def ranks3(ckdir, ranks2):  # after ranks2: it resumes from the checkpoints that run wrote
    return _run_tasks(3, ckdir, TASKS + ["resume_read/ce_seq_l2", "detresume_read/ce_seq_l2"])


@pytest.fixture(scope="module")
def one_thread():
    """The references here run with one thread per process, as the ranks do."""
    old = os.environ.get("NUMGRU_NUM_THREADS")
    os.environ["NUMGRU_NUM_THREADS"] = "1"
    yield
    if old is None:
        os.environ.pop("NUMGRU_NUM_THREADS")
    else:
        os.environ["NUMGRU_NUM_THREADS"] = old


_REFERENCES = {}


def reference(kind, name, **kw):
    """One process, no MPI: plain fit, or the deterministic mode (deterministic=c)."""
    key = (kind, name, tuple(sorted(kw.items())))
    if key not in _REFERENCES:
        _REFERENCES[key] = mc.fit(name, **kw)
    return _REFERENCES[key]


def _results(all_results, task):
    prefix = f"{task}/"
    got = {k[len(prefix):]: v for k, v in all_results.items() if k.startswith(prefix)}
    assert got, f"no results for {task}"
    return got


# -- no MPI needed --

def test_importing_numgru_never_imports_mpi4py():
    code = ("import sys, numgru, numgru.training.trainer, numgru.training.distributed, numgru.cli\n"
            "from numgru.cli import main\n"
            "assert main(['info']) == 0\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "MPI: not launched under MPI" in proc.stdout


def test_shares_are_contiguous_and_uneven_by_at_most_one():
    assert ng.distributed.shares(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert ng.distributed.shares(2, 3) == [(0, 1), (1, 2), (2, 2)]  # a rank with no rows
    for n in range(12):
        for parts in range(1, 6):
            s = ng.distributed.shares(n, parts)
            sizes = [b - a for a, b in s]
            assert s[0][0] == 0 and s[-1][1] == n and sum(sizes) == n
            assert all(s[k][1] == s[k + 1][0] for k in range(parts - 1))
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_bad_arguments_are_named():
    model = ng.GRUModel(2, 3, 2, seed=0)
    for bad in (0, -2, 1.5, "yes"):
        with pytest.raises(ValueError, match="deterministic: expected False, True"):
            ng.Trainer(model, ng.Adam(model), deterministic=bad)
    with pytest.raises(TypeError, match="distributed: expected True, False or an mpi4py "
                                        "communicator, got str"):
        ng.Trainer(model, ng.Adam(model), distributed="world")


def test_launch_is_read_from_the_environment(monkeypatch):
    from numgru.training.distributed import cli_comm, launch_environment
    for name in list(os.environ):
        if name.startswith(LAUNCHER_VARS):
            monkeypatch.delenv(name)
    assert launch_environment() is None
    assert cli_comm(None) is None  # nothing launched: train alone, mpi4py not imported
    monkeypatch.setenv("PMIX_RANK", "0")
    assert launch_environment()[0] == "PMIX_RANK" and launch_environment()[2] is None
    monkeypatch.setenv("PMI_SIZE", "4")
    assert launch_environment()[:1] == ("PMI_SIZE",) and launch_environment()[2] == 4
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert launch_environment()[2] == 3
    with pytest.raises(ValueError, match="one of 3 started by Open MPI.*would train 3 copies"):
        cli_comm(False)


def test_deterministic_mode_in_one_process_trains_the_same_model(one_thread):
    """Chunks of one row, added in float64, against the plain fit (itself checked against
    torch in test_trainer.py): the same model to float64 tolerance."""
    for name in ("mse_l1", "ce_seq_l2"):
        plain, det = reference("fit", name), reference("det", name, deterministic=1)
        for key in plain:
            np.testing.assert_allclose(det[key], plain[key], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} {key}")


# -- under mpiexec --

@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name", sorted(mc.CASES))
def test_ranks_follow_the_single_process_curve(request, n, name, one_thread):
    results = request.getfixturevalue(f"ranks{n}")
    got, want = _results(results, f"fit/{name}"), reference("fit", name)
    assert sorted(got) == sorted(want)
    assert want["loss"][-1] < want["loss"][0]  # it trained
    tol = TOL[mc.CASES[name]["dtype"]]
    for key in want:
        assert_close(f"{name} on {n} ranks: {key}", got[key], want[key], tol)


@pytest.mark.parametrize("name", sorted(mc.CASES))
def test_deterministic_mode_is_bitwise_the_same_on_1_2_3_ranks(ranks2, ranks3, name, one_thread):
    for chunk in (1, 2) if name in DET2 else (1,):
        task = f"det{chunk}/{name}"
        one = reference("det", name, deterministic=chunk)
        for n, results in ((2, ranks2), (3, ranks3)):
            got = _results(results, task)  # fails where the run did not produce them
            assert sorted(got) == sorted(one), f"{task} on {n} ranks"
            for key in one:
                assert np.array_equal(got[key], one[key]), \
                    f"{task}: {key} on {n} ranks differs from one process"


@pytest.mark.parametrize("name", ["mse_l1", "ce_seq_l2"])
@pytest.mark.parametrize("n", [2, 3])
def test_one_step_gradient_is_torchs_full_batch_gradient(request, n, name):
    """The summed gradient of one distributed step (global batch of 7 or 5 rows, uneven shares,
    a per-step cross-entropy over valid steps) is the gradient of the global batch's mean loss,
    computed by torch on the whole batch."""
    torch = require("torch")
    import torch.nn.functional as F
    from _seed_torch import SeedGRUModel
    results = request.getfixturevalue(f"ranks{n}")
    got = _results(results, f"grad/{name}")
    c = mc.CASES[name]
    model, _ = mc.build(name, dropout=0.0)
    assert np.array_equal(got["params0"], model.get_flat_params())
    ref = SeedGRUModel(c["I"], c["H"], c["O"], num_layers=c["layers"], head=c["head"]).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    X, y, lengths, _ = mc.data(name)
    B = c["B"]
    out = ref(torch.from_numpy(X[:B]), lengths[:B])
    if c["loss"] == "mse":
        loss = F.mse_loss(out, torch.from_numpy(y[:B]))
    else:
        valid = np.arange(c["T"])[None, :] < lengths[:B, None]
        target = np.where(valid, y[:B], -100)
        loss = F.cross_entropy(out.reshape(-1, c["O"]), torch.from_numpy(target).reshape(-1),
                               ignore_index=-100)
    loss.backward()
    params = dict(ref.named_parameters())
    want = np.concatenate([params[k].grad.numpy().ravel() for k in model.state_dict()])
    assert got["loss"][0] == pytest.approx(loss.item(), rel=1e-12)
    assert_close(f"{name} gradient on {n} ranks", got["grads"], want, 1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_ranks_built_with_other_seeds_train_from_rank_0s_weights(request, n, one_thread):
    """Rank r builds its model with seed 11 + r (other weights, another dropout generator): once
    the Trainer is made, every rank holds rank 0's weights, and training (with dropout) follows
    one process started from rank 0's model, every rank ending with the same weights."""
    got = _results(request.getfixturevalue(f"ranks{n}"), "seeds/ce_seq_l2")
    rank0 = mc.build("ce_seq_l2", seed=mc.SEED)[0].get_flat_params()
    assert got["start"].shape == got["params"].shape == (n, len(rank0))
    for r in range(n):
        own = mc.build("ce_seq_l2", seed=mc.SEED + r)[0].get_flat_params()
        assert r == 0 or not np.allclose(own, rank0)  # the ranks did build other weights
        assert np.array_equal(got["start"][r], rank0), f"rank {r} did not get rank 0's weights"
        assert np.array_equal(got["params"][r], got["params"][0]), f"rank {r} ends elsewhere"
    want = reference("fit", "ce_seq_l2")  # one process, seed 11: rank 0's model
    assert sorted(got) == sorted([*want, "start"])
    for key in want:
        value = got[key][0] if key == "params" else got[key]
        assert_close(f"other seeds on {n} ranks: {key}", value, want[key], TOL["float64"])


def test_resume_on_another_number_of_ranks(ranks3, ckdir, one_thread):
    """2 epochs on 2 ranks, then resumed to 4 on 3 ranks: the curve and weights of 4 epochs in
    one process (to tolerance), and bitwise those of the deterministic mode in one process."""
    got = _results(ranks3, "resume_read/ce_seq_l2")
    want = reference("fit", "ce_seq_l2", epochs=4)
    assert len(got["loss"]) == 4
    for key in want:
        assert_close(f"resumed {key}", got[key], want[key], TOL["float64"])
    got = _results(ranks3, "detresume_read/ce_seq_l2")
    want = reference("det", "ce_seq_l2", deterministic=1, epochs=4)
    for key in want:
        assert np.array_equal(got[key], want[key]), f"deterministic resume: {key}"
    # rank 0 alone wrote, atomically: the checkpoints and nothing half-written beside them
    assert sorted(p.name for p in ckdir.iterdir() if not p.name.startswith("results")) == [
        "detresume_ce_seq_l2.npz", "nonfinite2.npz", "nonfinite3.npz", "resume_ce_seq_l2.npz"]


def test_a_model_on_the_gpu_reduces_through_the_host(tmp_path, one_thread):
    """device="cuda" (the CUDA kernels under Numba's simulator): parameters, gradients and
    optimizer state live in device arrays, staged through the host for MPI; 2 ranks follow the
    CPU backend's single-process curve."""
    require_numba_cuda()
    out = tmp_path / "cuda.npz"
    code, stdout, stderr = launch(2, [sys.executable, os.path.join(HERE, "mpi_cases.py"), out,
                                      tmp_path, "cuda/cuda_seq"], NUMBA_ENABLE_CUDASIM="1")
    assert code == 0, stderr[-6000:]
    with np.load(out) as f:
        got = {k.split("/")[-1]: f[k] for k in f.files if k.startswith("cuda/")}
    want = mc.fit("cuda_seq", epochs=1, device="cpu")
    for key in want:
        assert_close(f"cuda on 2 ranks: {key}", got[key], want[key], TOL["float64"])


def _faults(results, name):
    raised = json.loads(str(results[f"fault/{name}/json"]))
    assert len(raised) == int(results["world_size"])
    return raised


@pytest.mark.parametrize("n", [2, 3])
def test_a_rank_that_fails_makes_every_rank_raise(request, n, ckdir, one_thread):
    results = request.getfixturevalue(f"ranks{n}")
    last = n - 1
    # Bad data on rank 1: every rank raises it as a ValueError naming rank 1.
    for r in _faults(results, "fault_nan_on_one_rank"):
        assert "ValueError" in r["mro"] and "DistributedError" in r["mro"] and r["ranks"] == [1]
        assert r["message"].startswith(f"rank 1 of {n} raised ValueError: X: NaN or Inf at "
                                       f"sequence 3, step 1, feature 0")
    for r in _faults(results, "fault_other_data_on_one_rank"):
        assert r["type"] == "DistributedError" and r["ranks"] == [last]
        assert f"rank {last} of {n} holds other training data than rank 0" in r["message"]
    for r in _faults(results, "fault_callback_on_one_rank"):
        assert r["type"] == "DistributedError" and r["ranks"] == [last]
        assert r["message"].startswith(f"rank {last} of {n} raised KeyError")
        assert "while running the callbacks" in r["message"]
    assert _faults(results, "fault_stop_on_one_rank") == [{"epochs": 1}] * n
    # A non-finite loss on the last rank (its share holds the bad target): every rank stops
    # with NonFiniteLossError, and the last good checkpoint (epoch 1) stays as it was written.
    path = ckdir / f"nonfinite{n}.npz"
    first = ng.distributed.shares(7, n)[last][0]
    for r in _faults(results, "fault_nonfinite_loss"):
        assert r["type"] == "NonFiniteLossError" and r["ranks"] == [last]
        assert r["message"].startswith(f"rank {last} of {n} raised NonFiniteLossError: loss is "
                                       f"inf on rows {first}..6 of the global batch at step 5")
        assert f"the last good checkpoint is {path} (epoch 1)" in r["message"]
        assert "epoch 2, batch 1 of 4" in r["message"]
    ck = ng.load_checkpoint(path)
    assert ck.meta["training"]["epoch"] == 1
    X, y, lengths, _ = mc.data("mse_l1")
    model, trainer = mc.build("mse_l1")
    trainer.fit(X, y, lengths=lengths, epochs=1, batch_size=7, shuffle=False)
    for k, v in model.state_dict().items():
        assert_close(f"checkpoint {k}", ck.model_state()[k], v, TOL["float64"])


def test_an_exception_outside_numgru_aborts_the_job():
    """Rank 1 raises in the script while rank 0 waits in fit: the job ends (MPI_Abort) with the
    rank and the error named, instead of rank 0 waiting for ever."""
    code, out, err = launch(2, [sys.executable, os.path.join(HERE, "mpi_cases.py"), "abort"],
                            timeout=120)
    assert code != 0
    # The line naming the rank comes whole and before the traceback, which is printed once.
    line = ("numgru: rank 1 of 2 raised RuntimeError: rank one fails outside numgru while "
            "running outside numgru (an unhandled exception); aborting the MPI job")
    assert line in err, err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert err.index(line) < err.index("Traceback")


def _toy(path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6, 2))
    lengths = rng.integers(2, 7, 40)
    X[np.arange(6)[None, :] >= lengths[:, None]] = 0
    y = ((X.sum(axis=(1, 2)) > 0).astype(np.int64) + (lengths > 4)) % 3
    np.savez(path, X=X, y=y, lengths=lengths)


def test_cli_train_under_mpiexec(tmp_path, one_thread):
    """`mpiexec -n 2 numgru train` prints once, writes one run folder, and follows the curve of
    `numgru train` in one process with the same arguments."""
    from numgru.cli import main
    _toy(tmp_path / "toy.npz")
    args = ["train", "toy.npz", "--epochs", "3", "--hidden", "6", "--batch-size", "5",
            "--val-split", "0.2", "--dtype", "float64", "--dropout", "0.0", "--layers", "2",
            "--no-progress"]
    script = shutil.which("numgru", path=os.path.dirname(sys.executable))
    code, out, err = launch(2, [script, *args, "--out", "run2"], cwd=tmp_path)
    assert code == 0, err
    assert out.count("numgru train: toy.npz") == 1 and out.count("run folder:") == 1
    assert "data-parallel over 2 MPI processes (1 thread each)" in out
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(args + ["--out", "run1"]) == 0
    finally:
        os.chdir(cwd)
    assert sorted(os.listdir(tmp_path / "run2")) == sorted(os.listdir(tmp_path / "run1")) == [
        "checkpoint.npz", "history.csv", "history.json", "loss.png", "metrics.json", "model.npz"]
    one = json.loads((tmp_path / "run1" / "history.json").read_text())
    two = json.loads((tmp_path / "run2" / "history.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert_close(key, two[key], one[key], TOL["float64"])
    m1, _ = ng.load_model(tmp_path / "run1" / "model.npz")
    m2, _ = ng.load_model(tmp_path / "run2" / "model.npz")
    assert_close("weights", m2.get_flat_params(), m1.get_flat_params(), TOL["float64"])


def test_cli_train_stops_on_a_non_finite_loss_with_status_3(tmp_path, one_thread):
    """A learning rate of 1e300 makes the loss infinite at step 2 on 2 ranks: every rank exits
    with the status the command documents for it (3), the error is printed once and names the
    ranks, and the last good checkpoint (epoch 1) holds the weights of one process's epoch 1."""
    from numgru.cli import main
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", X=rng.standard_normal((20, 5, 2)), y=rng.standard_normal(20))
    args = ["train", "r.npz", "--optimizer", "sgd", "--momentum", "0", "--lr", "1e300",
            "--epochs", "3", "--no-progress", "--dtype", "float64", "--hidden", "4"]
    script = shutil.which("numgru", path=os.path.dirname(sys.executable))
    code, out, err = launch(2, [script, *args, "--out", "run2"], cwd=tmp_path, timeout=120)
    assert code == 3, err
    assert err.count("numgru train: training stopped: ") == 1, err
    assert "ranks 0, 1 of 2 raised NonFiniteLossError: loss is inf on rows 0..7 of the global " \
           "batch at step 2" in err
    assert "epoch 2, batch 1 of 1" in err
    assert "the last good checkpoint is run2/checkpoint.npz (epoch 1)" in err
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(args + ["--out", "run1"]) == 3  # one process: the same status
    finally:
        os.chdir(cwd)
    two = ng.load_checkpoint(tmp_path / "run2" / "checkpoint.npz")
    one = ng.load_checkpoint(tmp_path / "run1" / "checkpoint.npz")
    assert two.meta["training"]["epoch"] == one.meta["training"]["epoch"] == 1
    for k, v in one.model_state().items():
        assert np.all(np.isfinite(v))
        assert_close(f"checkpoint {k}", two.model_state()[k], v, TOL["float64"])


def test_cli_train_fails_on_one_rank_under_mpiexec(tmp_path):
    """Rank 1 alone is given a file that does not exist (mpiexec's form with one command per
    rank): it fails before it takes part in anything, joins rank 0 at its first guard, and both
    exit with status 2 instead of rank 0 waiting for ever; rank 0 prints the error once, naming
    rank 1, and no run folder is made."""
    _toy(tmp_path / "toy.npz")
    script = shutil.which("numgru", path=os.path.dirname(sys.executable))
    common = ["--epochs", "2", "--hidden", "3", "--no-progress", "--out", "run"]
    code, out, err = launch(1, [script, "train", "toy.npz", *common,
                                ":", "-n", "1", script, "train", "missing.npz", *common],
                            cwd=tmp_path, timeout=120)
    assert code == 2, err
    assert err.count("numgru train: error: rank 1 of 2 raised CLIError: missing.npz: no such "
                     "file") == 1, err
    assert "[while running numgru train]" in err
    assert not (tmp_path / "run").exists()


def test_cli_info_and_errors_under_mpiexec(tmp_path):
    script = shutil.which("numgru", path=os.path.dirname(sys.executable))
    code, out, err = launch(2, [script, "info"], cwd=tmp_path, timeout=120)
    assert code == 0, err
    library = subprocess.run(  # in a process of its own: MPI is not started in this one
        [sys.executable, "-c", "from mpi4py import MPI; print(MPI.Get_library_version())"],
        env=_clean_env(), capture_output=True, text=True, timeout=60).stdout
    library = library.strip().splitlines()[0].strip()
    assert out.count("numgru 0.1.0") == 1
    assert f"MPI: {library}" in out and "world size 2" in out
    # A data error on every rank: reported once (rank 0), every rank exits 2.
    code, out, err = launch(2, [script, "train", "missing.npz"], cwd=tmp_path, timeout=120)
    assert code == 2
    assert err.count("numgru train: error: missing.npz: no such file") == 1, err
    assert "on all 2 ranks" in err
