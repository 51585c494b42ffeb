"""The command line's test files and defaults (`numgru train X_TRAIN.ts` picks X_TEST.ts, and
X_TRAIN.ts.gz X_TEST.ts.gz; --test; validation split with early stopping when no --epochs is given)
and `numgru export`, whose ONNX file ONNX Runtime runs on the raw data to the run's own
predictions."""

import csv
import gzip
import json

import numpy as np
import pytest

import numgru as ng
from numgru.cli import main

from helpers import assert_close, require


def _write_ts(path, X, lengths, y, labels, order=None):
    """A UEA .ts file: one case per line, channels separated by ':', the label last."""
    order = order or labels
    lines = ["@problemName toy", "@univariate false", f"@dimensions {X.shape[2]}",
             "@equalLength false", "@classLabel true " + " ".join(order), "@data"]
    for x, n, c in zip(X, lengths, y):
        channels = [",".join(f"{v:.6f}" for v in x[:n, d]) for d in range(X.shape[2])]
        lines.append(":".join(channels) + ":" + labels[c])
    path.write_text("\n".join(lines) + "\n")


def _toy(rng, n, T=8, F=2):
    X = rng.standard_normal((n, T, F))
    lengths = rng.integers(3, T + 1, n)
    y = np.array([int(X[i, :lengths[i], 0].sum() > 0) for i in range(n)])
    return X, lengths, y


def test_sibling_test_file_and_explicit_test(tmp_path, rng, capsys):
    X, L, y = _toy(rng, 30)
    Xt, Lt, yt = _toy(rng, 12)
    _write_ts(tmp_path / "Toy_TRAIN.ts", X, L, y, ["neg", "pos"])
    _write_ts(tmp_path / "Toy_TEST.ts", Xt, Lt, yt, ["neg", "pos"])
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "Toy_TRAIN.ts"), "--epochs", "2", "--hidden", "4",
                 "--no-progress", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"testing on {tmp_path / 'Toy_TEST.ts'}, the _TEST file beside" in out
    assert "30 training sequences, 12 test" in out
    metrics = json.loads((run / "metrics.json").read_text())
    # The reported accuracy is the saved model's on the test file, recomputed from the files.
    model, ckpt = ng.load_model(run / "model.npz")
    scaler = ckpt.meta["extra"]["x_scaler"]
    train, test = ng.load_ts(tmp_path / "Toy_TRAIN.ts"), ng.load_ts(tmp_path / "Toy_TEST.ts")
    mean, std = np.array(scaler["mean"]), np.array(scaler["std"])
    cat = np.concatenate([train.X[i, :train.lengths[i]] for i in range(30)])
    np.testing.assert_allclose(mean, cat.mean(0), rtol=1e-6)
    valid = (np.arange(test.X.shape[1])[None, :] < test.lengths[:, None])[:, :, None]
    logits = model(np.where(valid, (test.X - mean) / std, 0), lengths=test.lengths)
    assert metrics["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == yt))
    assert metrics["test"]["n"] == 12
    # --test with the labels listed in another order: matched by name, not by position.
    _write_ts(tmp_path / "other.ts", Xt, Lt, yt, ["neg", "pos"], order=["pos", "neg"])
    assert main(["train", str(tmp_path / "Toy_TRAIN.ts"), "--test", str(tmp_path / "other.ts"),
                 "--epochs", "2", "--hidden", "4", "--no-progress", "--out",
                 str(tmp_path / "run2")]) == 0
    assert "testing on" not in capsys.readouterr().out
    again = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert again["test"]["accuracy"] == metrics["test"]["accuracy"]  # same seed, same labels
    # A training file with no sibling falls back to a split of its own; bad --test files.
    (tmp_path / "Toy_TEST.ts").unlink()
    assert main(["train", str(tmp_path / "Toy_TRAIN.ts"), "--epochs", "1", "--hidden", "3",
                 "--no-progress", "--out", str(tmp_path / "run3")]) == 0
    assert "24 training sequences, 6 test" in capsys.readouterr().out
    _write_ts(tmp_path / "bad.ts", Xt, Lt, yt, ["neg", "pos"], order=["neg", "pos"])
    (tmp_path / "bad.ts").write_text((tmp_path / "bad.ts").read_text().replace(":pos", ":maybe")
                                     .replace("true neg pos", "true neg pos maybe"))
    assert main(["train", str(tmp_path / "Toy_TRAIN.ts"), "--test", str(tmp_path / "bad.ts"),
                 "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r4")]) == 2
    assert "class labels ['maybe'] do not occur in" in capsys.readouterr().err
    assert main(["train", "japanese_vowels", "--test", str(tmp_path / "bad.ts"), "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "r5")]) == 2
    assert "brings its own test split" in capsys.readouterr().err


def _gzip(path):
    """path.gz beside path, path removed."""
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return gz


def test_sibling_test_file_gzipped(tmp_path, rng, capsys):
    """X_TRAIN.ts.gz picks X_TEST.ts.gz (the archive's naming, compressed), not a plain X_TEST.ts
    of other content beside it; x_train.ts.gz picks x_test.ts.gz."""
    X, L, y = _toy(rng, 30)
    Xt, Lt, yt = _toy(rng, 12)
    _write_ts(tmp_path / "Toy_TRAIN.ts", X, L, y, ["neg", "pos"])
    _write_ts(tmp_path / "Toy_TEST.ts", Xt, Lt, yt, ["neg", "pos"])
    train_gz, test_gz = _gzip(tmp_path / "Toy_TRAIN.ts"), _gzip(tmp_path / "Toy_TEST.ts")
    _write_ts(tmp_path / "Toy_TEST.ts", Xt[:5], Lt[:5], yt[:5], ["neg", "pos"])  # a decoy
    assert main(["train", str(train_gz), "--epochs", "1", "--hidden", "3", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"testing on {test_gz}, the _TEST file beside {train_gz}" in out
    assert "30 training sequences, 12 test" in out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["n"] == 12
    lower_train = train_gz.rename(tmp_path / "toy_train.ts.gz")
    lower_test = test_gz.rename(tmp_path / "toy_test.ts.gz")
    assert main(["train", str(lower_train), "--epochs", "1", "--hidden", "3", "--no-progress",
                 "--out", str(tmp_path / "run2")]) == 0
    out = capsys.readouterr().out
    assert f"testing on {lower_test}, the _TEST file beside {lower_train}" in out
    assert "30 training sequences, 12 test" in out


def test_default_training_validation_and_early_stopping(tmp_path, rng, capsys):
    """No --epochs: a stratified 10% validation split, early stopping, the best epoch kept; with
    too few sequences for a split of 20, every epoch on all data."""
    X, L, y = _toy(rng, 240, T=5)
    np.savez(tmp_path / "big.npz", X=X, y=y, lengths=L)
    run = tmp_path / "big"
    assert main(["train", str(tmp_path / "big.npz"), "--hidden", "4", "--no-progress",
                 "--test-split", "0.1", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "194 training sequences, 22 validation, 24 test" in out
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = len(history["loss"])
    best = int(np.argmin(history["val_loss"])) + 1
    assert metrics["best_epoch"] == best
    assert epochs == 200 or epochs == best + 25  # stopped 25 epochs after the best
    assert history["lr"][0] == history["lr"][-1] == 0.005  # constant under early stopping
    model, _ = ng.load_model(run / "model.npz")
    assert model.config()["bidirectional"] is True  # the default
    small = tmp_path / "small.npz"
    np.savez(small, X=X[:40], y=y[:40], lengths=L[:40])
    assert main(["train", str(small), "--hidden", "3", "--no-progress", "--test-split", "0.5",
                 "--out", str(tmp_path / "small")]) == 0
    assert "20 training sequences are too few for a validation split; training 200 epochs" in \
        capsys.readouterr().out
    history = json.loads((tmp_path / "small" / "history.json").read_text())
    assert len(history["loss"]) == 200 and "val_loss" not in history
    assert history["lr"][-1] < 1e-4 < history["lr"][0]  # cosine


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_export_runs_on_raw_data_in_onnxruntime(tmp_path, rng, task, capsys):
    ort = require("onnxruntime")
    X, L, y = _toy(rng, 40)
    X = X * 3 + 5  # far from standardised, so that a missing standardisation shows
    target = y if task == "classify" else X[:, 0, :1] * 2.0 - 1.0
    np.savez(tmp_path / "d.npz", X=X, y=target, lengths=L)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "d.npz"), "--epochs", "3", "--hidden", "5",
                 "--no-progress", "--out", str(run)]) == 0
    assert main(["predict", str(run), str(tmp_path / "d.npz"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert main(["export", str(run), str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    valid = (np.arange(X.shape[1])[None, :] < L[:, None])[:, :, None]
    raw = np.where(valid, X, 0).astype(np.float32)
    out, _ = sess.run(None, {"x": raw, "lengths": L})
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    assert meta["numgru.task"] == task and meta["numgru.inputs"] == "raw"
    if task == "classify":
        classes = json.loads(meta["numgru.classes"])
        assert [classes[k] for k in out.argmax(1)] == [r["label"] for r in rows]
    else:
        # predict prints 6 significant digits; the folded weights round differently in float32.
        assert_close("out", out[:, 0], np.array([float(r["prediction_0"]) for r in rows]), 1e-4)
    # --standardized keeps the run's model as it is: it wants standardised inputs.
    assert main(["export", str(run), str(tmp_path / "s.onnx"), "--standardized"]) == 0
    model, _ = ng.load_model(run / "model.npz")
    back = ng.load_onnx(tmp_path / "s.onnx")
    np.testing.assert_array_equal(back.state_dict()["fc.weight"],
                                  model.state_dict()["fc.weight"])
