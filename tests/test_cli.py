"""The command line: `numgru` / `python -m numgru` train, evaluate, predict, bench and info, the run
folder they write, the demo's path (one epoch), and errors for bad input."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import numgru as ng
from numgru.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "numgru", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _toy_npz(path, N=30, T=6, F=2, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, T, F))
    lengths = rng.integers(2, T + 1, N)
    X[np.arange(T)[None, :] >= lengths[:, None]] = 0
    y = (X.sum(axis=(1, 2)) > 0).astype(np.int64) + (lengths > 4)
    np.savez(path, X=X, y=y % classes, lengths=lengths)
    return X, y % classes, lengths


def test_info_as_module_and_console_script():
    proc = _run("info")
    assert proc.returncode == 0, proc.stderr
    for text in ("numgru 0.1.0", "numba ", "CPU passes: up to", "devices:", "cpu    usable",
                 "auto -> "):
        assert text in proc.stdout
    script = shutil.which("numgru", path=os.path.dirname(sys.executable))
    assert script is not None, "the numgru console script is not installed next to python"
    assert subprocess.run([script, "info"], capture_output=True, text=True).returncode == 0


def test_demo_path_one_epoch(tmp_path):
    """The `make demo` command, cut to one epoch: bundled data, test accuracy beside the
    published figures, a complete run folder."""
    out = tmp_path / "demo"
    proc = _run("train", "japanese_vowels", "--epochs", "1", "--hidden", "8", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "270 training sequences" in proc.stdout and "370 test" in proc.stdout
    assert "test accuracy:" in proc.stdout and "MLSTM-FCN" in proc.stdout
    assert "numgru GRU (this run)" in proc.stdout
    assert "epoch 1/1" in proc.stderr  # the progress bar
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "history.csv", "history.json",
                                       "loss.png", "metrics.json", "model.npz"]
    with open(out / "loss.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "history.json").read_text())
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["loss"]) == history["loss"][0]
    metrics = json.loads((out / "metrics.json").read_text())
    # The reported test accuracy is that of the saved model on the test split, recomputed here
    # through the Python API from the raw bundled files.
    from numgru import datasets
    from numgru.data import Standardizer
    model, ckpt = ng.load_model(out / "model.npz")
    train, test = datasets.load_japanese_vowels("train"), datasets.load_japanese_vowels("test")
    scaler = Standardizer().fit(train.X, train.lengths)
    logits = model(scaler.transform(test.X, test.lengths), lengths=test.lengths)
    assert metrics["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == test.y))


def test_train_evaluate_predict_on_a_file(tmp_path):
    X, y, lengths = _toy_npz(tmp_path / "toy.npz")
    run = tmp_path / "run"
    argv = ["train", str(tmp_path / "toy.npz"), "--epochs", "3", "--hidden", "6",
            "--val-split", "0.2", "--patience", "5", "--out", str(run), "--no-progress",
            "--dtype", "float64"]
    assert main(argv) == 0
    history = json.loads((run / "history.json").read_text())
    assert len(history["val_loss"]) == 3
    pred_file = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(tmp_path / "toy.npz"), "--out", str(pred_file)]) == 0
    with open(pred_file) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 and set(rows[0]) == {"index", "label", "probability"}
    # Predictions equal the run's model applied to the data prepared as at training time.
    model, ckpt = ng.load_model(run / "model.npz")
    prep = ckpt.meta["extra"]
    mean, std = np.array(prep["x_scaler"]["mean"]), np.array(prep["x_scaler"]["std"])
    valid = np.arange(X.shape[1])[None, :] < lengths[:, None]
    Z = np.where(valid[:, :, None], (X - mean) / std, 0)
    expected = model(Z, lengths=lengths).argmax(1)
    assert [int(r["label"]) for r in rows] == expected.tolist()
    proc = _run("evaluate", run, tmp_path / "toy.npz", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["accuracy"] == pytest.approx(np.mean(expected == y))


def test_resume_continues_a_run(tmp_path):
    _toy_npz(tmp_path / "toy.npz")
    common = ["train", str(tmp_path / "toy.npz"), "--hidden", "4", "--no-progress",
              "--out", str(tmp_path / "run"), "--schedule", "none"]
    assert main(common + ["--epochs", "2"]) == 0
    assert main(common + ["--epochs", "4", "--resume"]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4]


def test_forecast_on_sunspots_and_a_csv(tmp_path, capsys):
    run = tmp_path / "sun"
    assert main(["train", "sunspots", "--epochs", "1", "--hidden", "4", "--window", "9",
                 "--out", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test RMSE" in out and "repeat-last-value baseline RMSE: 29.10" in out
    assert "AR(9)" in out
    (tmp_path / "series.csv").write_text("t,v\n" + "".join(f"{i},{np.sin(i / 3):.5f}\n"
                                                           for i in range(60)))
    assert main(["train", str(tmp_path / "series.csv"), "--epochs", "2", "--window", "5",
                 "--out", str(tmp_path / "csvrun"), "--no-progress"]) == 0
    assert main(["predict", str(tmp_path / "csvrun"), str(tmp_path / "series.csv"),
                 "--split", "all"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-56].startswith("index,prediction_0") and len(lines[-55:]) == 55


def test_bench_runs_a_tiny_size():
    proc = _run("bench", "--sizes", "seed", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert "forward ms" in proc.stdout and proc.stdout.strip().splitlines()[-1].startswith("seed")


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nothing.npz")]) == 2
    assert "nothing.npz: no such file, and not a bundled data set" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("")
    assert main(["train", str(tmp_path / "empty.csv"), "--no-progress"]) == 2
    assert "empty.csv: the file is empty" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hello")
    assert main(["train", str(tmp_path / "x.txt")]) == 2
    assert "unknown file type '.txt'" in capsys.readouterr().err
    assert main(["train", "genesis"]) == 2
    assert "text corpus" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "sunspots"]) == 2
    assert "no model.npz or checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "sunspots", "--epochs", "0"])
    assert "expected a positive number" in capsys.readouterr().err
    # A model trained on 2 features refuses data with 3.
    _toy_npz(tmp_path / "a.npz", F=2)
    _toy_npz(tmp_path / "b.npz", F=3)
    assert main(["train", str(tmp_path / "a.npz"), "--epochs", "1", "--hidden", "3",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r"), str(tmp_path / "b.npz")]) == 2
    assert "3 features, the model was trained on 2" in capsys.readouterr().err


def test_run_folder_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    _toy_npz(tmp_path / "toy.npz")
    assert main(["train", str(tmp_path / "toy.npz"), "--epochs", "1", "--hidden", "3",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "loss.png not written: matplotlib is not installed" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint.npz", "history.csv",
                                                    "history.json", "metrics.json", "model.npz"]


def test_divergence_stops_with_status_3_and_keeps_the_checkpoint(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", X=rng.standard_normal((20, 5, 2)), y=rng.standard_normal(20))
    run = tmp_path / "run"
    status = main(["train", str(tmp_path / "r.npz"), "--optimizer", "sgd", "--momentum", "0",
                   "--lr", "1e300", "--epochs", "3", "--no-progress", "--dtype", "float64",
                   "--hidden", "4", "--out", str(run)])
    err = capsys.readouterr().err
    assert status == 3
    assert "loss is inf at step 2" in err and "epoch 2, batch 1 of 1" in err
    assert f"last good checkpoint is {run / 'checkpoint.npz'} (epoch 1)" in err
    assert ng.load_checkpoint(run / "checkpoint.npz").meta["training"]["epoch"] == 1
