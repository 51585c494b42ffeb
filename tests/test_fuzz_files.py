"""Hostile files: every format numgru reads, truncated, corrupted, oversized and wrong-typed.

The loaders: data (.ts, .csv, .npz), checkpoints and the run folder's model.npz (load_checkpoint,
load_model, Trainer resume, the CLI's run record), weight files (.npz, .safetensors), ONNX
models, and the part plan beside the kernel cache. Each starts from a valid file and gets:
- truncations at 32 offsets spread over the file (the first bytes, the headers, the data, the
  zip directory at the end);
- random byte changes (hypothesis: 1 to 8 bytes at any offsets);
- made-up files, one per way of lying: object arrays that would need pickle (a payload that
  would leave a marker if it ran), headers that declare gigabytes, negative or mismatched
  shapes, complex or date dtypes, values beyond float32, labels that imply 10**12 classes,
  duplicate class labels or entries, NUL bytes, gzip bombs, nested JSON, every metadata field of
  a checkpoint replaced by each wrong type, external ONNX data outside the model's folder.
Every load must end, within a watchdog's time, in the result or in the loader's own error
(a ValueError: DataFormatError, CheckpointError, OnnxImportError) whose message names the file;
any other exception fails. The formats with a checksum (.npz: zip's CRC-32 of every entry) must
never load changed values: a changed file that loads must give the original arrays. .ts, .csv,
.safetensors and .onnx hold no checksum, so a changed digit or weight loads as that value;
their changes must still never crash or hang. No pickle runs at any point (pickle.load and
pickle.loads fail while these tests run). The CLI, on a sample of these files, exits with
status 2 and a one-line message, never a traceback.
"""

import copy
import gzip
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, strategies as st

import numgru as ng
from numgru import _memory, data
from numgru.io.checkpoint import CheckpointError, load_checkpoint
from numgru.cli import main

from fuzzing import fuzz_settings
from helpers import require

WATCHDOG_S = 30
TRIED = {"files": 0}


class _Hung(BaseException):
    """Raised by the watchdog: a BaseException, so that no loader's except clause takes it."""


def _alarm(signum, frame):
    raise _Hung(f"a load took more than {WATCHDOG_S} s")


@pytest.fixture(scope="module", autouse=True)
def count_files():
    """Prints how many files the module tried (with -s), for the README's table."""
    yield
    print(f"\nhostile files tried: {TRIED['files']}")


@pytest.fixture(autouse=True)
def no_pickle(monkeypatch):
    """Any pickle.load / loads while a loader runs fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a loader called pickle")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def _load(load, path, error=ValueError):
    """load(path) under a watchdog: the result, or the error (whose message must name path)."""
    TRIED["files"] += 1
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(WATCHDOG_S)
    try:
        return load(path)
    except error as e:
        assert os.fspath(path) in str(e), f"the error does not name the file: {e}"
        return e
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _refused(load, path, error=ValueError, match=None):
    out = _load(load, path, error)
    assert isinstance(out, error), f"{os.path.basename(path)} loaded instead of being refused"
    if match is not None:
        assert match in str(out), f"expected {match!r} in: {out}"
    return out


# -- the valid files everything starts from --

TS = ("# a comment\n@problemName toy\n@timeStamps false\n@univariate false\n@dimensions 2\n"
      "@equalLength false\n@classLabel true a b c\n@data\n1,2,3:4,5,6:a\n0.5,1e-3:2,3:b\n"
      "7,8,9,10:1,2,3,4:c\n")


def _trained(seed=0):
    rng = np.random.default_rng(seed)
    model = ng.GRUModel(2, 4, 3, seed=seed)
    opt = ng.Adam(model, lr=0.01)
    trainer = ng.Trainer(model, opt, loss="cross_entropy", scheduler=ng.CosineLR(opt, 3),
                         progress=False)
    X, y = rng.standard_normal((6, 5, 2)), np.arange(6) % 3
    return trainer, X, y


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """name -> (file name, bytes) of one valid file per format."""
    tmp = tmp_path_factory.mktemp("seeds")
    out = {"ts": ("a.ts", TS.encode()),
           "ts.gz": ("a.ts.gz", gzip.compress(TS.encode(), mtime=0)),
           "csv": ("a.csv", ("year,value\n" + "".join(f"{1900 + i},{np.sin(i):.5f}\n"
                                                      for i in range(40))).encode())}
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, X=rng.standard_normal((6, 5, 2)).astype(np.float32), y=np.arange(6) % 3,
             lengths=np.array([5, 3, 4, 5, 1, 2]))
    out["npz"] = ("a.npz", buf.getvalue())
    trainer, X, y = _trained()
    trainer.fit(X, y, epochs=1, batch_size=3, checkpoint=tmp / "c.npz", seed=0)
    out["checkpoint"] = ("c.npz", (tmp / "c.npz").read_bytes())
    ng.save_weights(trainer.model, tmp / "w.npz")
    out["weights.npz"] = ("w.npz", (tmp / "w.npz").read_bytes())
    require("safetensors")
    ng.save_weights(trainer.model, tmp / "w.safetensors")
    out["safetensors"] = ("w.safetensors", (tmp / "w.safetensors").read_bytes())
    require("onnx")
    ng.export_onnx(trainer.model, tmp / "m.onnx", lengths=True)
    out["onnx"] = ("m.onnx", (tmp / "m.onnx").read_bytes())
    return out


def _loader(fmt):
    return {"ts": ng.load_ts, "ts.gz": ng.load_ts, "csv": ng.load_csv, "npz": ng.load_npz,
            "checkpoint": lambda p: ng.load_model(p, device="cpu"),
            "weights.npz": ng.load_weights, "safetensors": ng.load_weights,
            "onnx": lambda p: ng.load_onnx(p, device="cpu")}[fmt]


def _arrays(fmt, result):
    """The arrays a load gave, to compare with the original file's (checksummed formats)."""
    if fmt == "npz":
        return {"X": result.X, "y": result.y, "lengths": result.lengths}
    if fmt == "checkpoint":
        model, ck = result
        return {**ck.arrays, "meta": np.frombuffer(json.dumps(ck.meta, sort_keys=True).encode(),
                                                   np.uint8)}
    return result


CHECKSUMMED = ("npz", "checkpoint", "weights.npz")


@pytest.fixture(scope="module")
def originals(seeds, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("originals")
    out = {}
    for fmt in CHECKSUMMED:
        name, raw = seeds[fmt]
        (tmp / name).write_bytes(raw)
        out[fmt] = _arrays(fmt, _loader(fmt)(tmp / name))
    return out


def _check_mutant(fmt, path, originals):
    result = _load(_loader(fmt), path)
    if isinstance(result, Exception) or fmt not in CHECKSUMMED:
        return
    got, want = _arrays(fmt, result), originals[fmt]
    assert sorted(got) == sorted(want), f"{path}: a changed file loaded other arrays"
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{path}: a changed file loaded other values " \
                                                f"for {k!r} (its checksum should refuse it)"


FORMATS = ["ts", "ts.gz", "csv", "npz", "checkpoint", "weights.npz", "safetensors", "onnx"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(fmt, seeds, originals, tmp_path):
    name, raw = seeds[fmt]
    for cut in sorted(set(np.linspace(0, len(raw) - 1, 32).astype(int))):
        path = tmp_path / f"cut{cut}-{name}"
        path.write_bytes(raw[:cut])
        _check_mutant(fmt, path, originals)


@pytest.mark.parametrize("fmt", FORMATS)
@fuzz_settings(30)
@given(changes=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                        min_size=1, max_size=8))
def test_random_byte_changes(fmt, seeds, originals, tmp_path_factory, changes):
    name, raw = seeds[fmt]
    b = bytearray(raw)
    for where, value in changes:
        b[int(where * len(b))] = value
    path = tmp_path_factory.mktemp("flip") / name
    path.write_bytes(bytes(b))
    _check_mutant(fmt, path, originals)


# -- made-up files: .npz data --

def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


class _Marker:
    """Unpickling this would create a folder: a file that runs code on load would show."""

    def __init__(self, where):
        self.where = where

    def __reduce__(self):
        return (os.makedirs, (self.where,))


def _npy_header_entry(name, header_dict, payload=b""):
    """A .npy entry with a hand-written header (to declare what the bytes do not hold)."""
    text = repr(header_dict).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    header = b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little") + text + \
        b" " * pad + b"\n"
    return name, header + payload


def _zip(path, entries, compress=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, payload in entries:
            z.writestr(name, payload)
    return path


def _drop_last_entry(path):
    """The archive with its directory's last record removed (the entry's bytes stay): a
    well-formed zip whose directory does not list one of its entries."""
    raw = path.read_bytes()
    end = raw.rindex(b"PK\x05\x06")
    start = int.from_bytes(raw[end + 16:end + 20], "little")
    last = raw.rindex(b"PK\x01\x02", start, end)
    central = raw[start:last]
    record = bytearray(raw[end:end + 22])
    for field in (8, 10):  # entries on this disk, entries in all
        record[field:field + 2] = (int.from_bytes(record[field:field + 2], "little") - 1) \
            .to_bytes(2, "little")
    record[12:16] = len(central).to_bytes(4, "little")
    path.write_bytes(raw[:start] + central + bytes(record))
    return path


def _prefixed(path):
    path.write_bytes(b"junk" * 8 + path.read_bytes())
    return path


def _npy_bytes(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=True)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_npz_data_that_lies(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3, 2))
    y = np.array([0, 1, 0, 1])
    marker = tmp_path / "pickle-ran"
    cases = {
        "object X (a pickle)": (_zip(tmp_path / "obj.npz", [
            ("X.npy", _npy_bytes(np.array([_Marker(str(marker))], dtype=object))),
            ("y.npy", _npy_bytes(y))]), "holds Python objects"),
        "complex X": (_npz(tmp_path / "cx.npz", X=X + 1j, y=y), "expected real numbers"),
        "dates as X": (_npz(tmp_path / "td.npz", X=X.astype("timedelta64[s]"), y=y),
                       "expected real numbers"),
        "X beyond float32": (_npz(tmp_path / "big.npz", X=X * 1e39, y=y),
                             "beyond the range of float32"),
        "a label of 10**12": (_npz(tmp_path / "lab.npz", X=X, y=np.array([0, 1, 2, 10 ** 12])),
                              "would make 1000000000001 classes"),
        "NaN at a valid step": (_npz(tmp_path / "nan.npz", X=np.where(X > 1, np.nan, X), y=y),
                                "NaN or Inf at sequence"),
        "float lengths": (_npz(tmp_path / "fl.npz", X=X, y=y, lengths=np.ones(4)),
                          "lengths: expected integers"),
        "lengths beyond T": (_npz(tmp_path / "lt.npz", X=X, y=y, lengths=np.array([1, 2, 3, 9])),
                             "expected values in [1, 3]"),
        "y of no columns": (_npz(tmp_path / "y0.npz", X=X, y=np.zeros((4, 0))),
                            "float targets must be (N,) or (N, K) with K >= 1"),
        "a scalar y": (_npz(tmp_path / "ys.npz", X=X, y=np.float64(3)), "a single value"),
        "no features": (_npz(tmp_path / "f0.npz", X=np.zeros((4, 3, 0)), y=y),
                        "N, T, F >= 1"),
        "a single .npy": (tmp_path / "single.npz", "a single .npy array"),
        "a duplicate entry": (_zip(tmp_path / "dup.npz", [("X.npy", _npy_bytes(X)),
                                                          ("X.npy", _npy_bytes(X)),
                                                          ("y.npy", _npy_bytes(y))]),
                              "two arrays named 'X'"),
        "an entry that is not .npy": (_zip(tmp_path / "txt.npz", [("X.npy", _npy_bytes(X)),
                                                                  ("notes.txt", b"hello")]),
                                      "'notes.txt' is not a .npy array"),
        "a header of 10**12 floats": (_zip(tmp_path / "huge.npz", [_npy_header_entry(
            "X.npy", {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)},
            b"\0" * 64)]), "declares shape (1000000, 1000000)"),
        "a negative shape": (_zip(tmp_path / "neg.npz", [_npy_header_entry(
            "X.npy", {"descr": "<f8", "fortran_order": False, "shape": (-1, 3)})]),
            "negative size in its shape (-1, 3)"),
        "a header that is not a dict": (_zip(tmp_path / "hdr.npz", [("X.npy", b"\x93NUMPY\x01\x00"
                                                                     b"\x06\x00[1,2]\n")]),
                                        "not a .npy array"),
        "a folder": (tmp_path / "folder.npz", "a folder"),
        # Found by a long run: one changed byte of the zip directory dropped `lengths` from it
        # (CRC-32 covers the entries, not the directory), and the file loaded with every
        # length = T.
        "a directory that lost an entry": (_drop_last_entry(
            _npz(tmp_path / "lost.npz", X=X, y=y, lengths=np.array([3, 1, 2, 3]))),
            "are in no entry the directory lists"),
        "bytes before the first entry": (_prefixed(_npz(tmp_path / "pre.npz", X=X, y=y)),
                                         "are in no entry the directory lists"),
    }
    np.save(tmp_path / "single.npy", X)
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    (tmp_path / "folder.npz").mkdir()
    for path, match in cases.values():
        _refused(ng.load_npz, path, ng.DataFormatError, match)
    assert not marker.exists(), "loading an object array ran its pickle"
    # A compressed file whose entries declare more memory than there is: refused from the zip
    # directory, before anything is unpacked (a zip bomb).
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, X=np.zeros((64, 1024, 16)), y=np.zeros(64, np.int64))
    assert bomb.stat().st_size < 100_000
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1 << 20)
    _refused(ng.load_npz, bomb, ng.DataFormatError, "more than the 1.0 MiB (1048576 bytes) of "
                                                    "memory available")
    _refused(ng.load_weights, bomb, ValueError, "more than the 1.0 MiB")
    _refused(load_checkpoint, bomb, CheckpointError, "more than the 1.0 MiB")


# -- made-up files: text --

def test_text_files_that_lie(tmp_path, monkeypatch):
    def write(name, text, mode="w"):
        path = tmp_path / name
        if mode == "w":
            path.write_text(text)
        else:
            path.write_bytes(text)
        return path

    head = "@problemName t\n@classLabel true a b\n@data\n"
    ts_cases = {
        "duplicate labels": (write("dup.ts", "@classLabel true a b a\n@data\n1,2:a\n"),
                             "lists ['a'] more than once"),
        "a value beyond float32": (write("big.ts", head + "1,2:a\n1e39,1:b\n"),
                                   "1e+39 is beyond the range of float32"),
        "a missing value": (write("miss.ts", head + "1,?,3:a\n"), "'?' is not a number"),
        "NaN": (write("nan.ts", head + "1,nan:a\n"), "missing or non-finite value at step 1"),
        "huge @dimensions": (write("dims.ts", "@dimensions 1000000000000\n" + head + "1:a\n"),
                             "expected 1000000000000 dimensions"),
        "no @data": (write("nodata.ts", "@classLabel true a\n"), "no @data line"),
        "an unknown label": (write("lab.ts", head + "1,2:c\n"), "class label 'c' is not one"),
        "ragged dimensions": (write("rag.ts", head + "1,2:3:a\n"), "different lengths"),
        "not UTF-8": (write("bin.ts", b"@data\n\xff\xfe\x00", "b"), "not UTF-8 text"),
        "a damaged .gz": (write("bad.ts.gz", gzip.compress(TS.encode())[:30] + b"\0" * 40, "b"),
                          "cannot be read as text"),
        "a .gz that is not gzip": (write("plain.ts.gz", TS), "cannot be read as text"),
        "a folder": (tmp_path / "dir.ts", "cannot be read as text"),
    }
    (tmp_path / "dir.ts").mkdir()
    for path, match in ts_cases.values():
        _refused(ng.load_ts, path, ng.DataFormatError, match)
    csv_cases = {
        "a NUL byte": (write("nul.csv", "a,b\n1,\x002\n"), "'\\x002' is not a number"),
        "a field beyond csv's limit": (write("wide.csv", 'a\n"' + "1" * 200_000 + '"\n'),
                                       "not CSV text"),
        "inf": (write("inf.csv", "v\n1\ninf\n"), "'inf' is missing or not finite"),
        "ragged rows": (write("rag.csv", "a,b\n1,2\n3\n"), "expected 2 fields, got 1"),
        "a header alone": (write("head.csv", "a,b\n"), "a header but no data rows"),
        # Found by a long run: a NUL byte in the header split it differently from the rows.
        "a header narrower than its rows": (write("narrow.csv", "year\n1900,1\n1901,2\n"),
                                            "the header names 1 columns, the rows have 2"),
    }
    for path, match in csv_cases.values():
        _refused(ng.load_csv, path, ng.DataFormatError, match)
    # Oversized: a gzip bomb (64 MiB of text in a small file) against a text limit of 1 MiB
    # (a quarter of the memory available, here patched small), and padding one long case with
    # many short ones beyond the memory available.
    bomb = write("bomb.ts.gz", gzip.compress(b"@classLabel true a\n@data\n" + b"1," * (32 << 20)
                                             + b"1:a\n", mtime=0), "b")
    assert bomb.stat().st_size < 200_000
    monkeypatch.setattr(data, "_text_limit", lambda: 1 << 20)
    _refused(ng.load_ts, bomb, ng.DataFormatError, "holds more than 1.0 MiB (1048576 bytes) of "
                                                   "text")
    monkeypatch.undo()
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1 << 20)
    long = write("long.ts", "@classLabel true a\n@data\n" + ",".join(["1"] * 20000) + ":a\n"
                 + "1:a\n" * 20)
    _refused(ng.load_ts, long, ng.DataFormatError, "padding its 21 cases to the longest one "
                                                   "(20000 steps, 1 dimensions)")


# -- made-up files: checkpoints --

def _rewrite(path, out, change_meta=None, change_arrays=None):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    if change_meta:
        meta = change_meta(meta)
    text = meta if isinstance(meta, str) else json.dumps(meta)
    arrays["__meta__"] = np.frombuffer(text.encode(), np.uint8)
    if change_arrays:
        change_arrays(arrays)
    np.savez(out, **arrays)
    return out


def _leaves(value, path=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    else:
        yield path


def _set(meta, path, value):
    meta = copy.deepcopy(meta)
    node = meta
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return meta


WRONG = [None, "x", -1, 10 ** 30, 1.5, [], {}, True, float("nan")]


def test_every_checkpoint_field_replaced_by_each_wrong_type(seeds, tmp_path):
    src = tmp_path / "seed.npz"
    src.write_bytes(seeds["checkpoint"][1])
    meta = load_checkpoint(src).meta
    leaves = [p for p in _leaves(meta) if p[:1] != ("extra",)]
    assert len(leaves) > 30
    outcomes = {"refused": 0, "loaded": 0}
    for path in leaves:
        for value in WRONG:
            out = _rewrite(src, tmp_path / "m.npz", lambda m: _set(m, path, value))
            for load in (lambda p: ng.load_model(p, device="cpu"), _resume):
                result = _load(load, out, CheckpointError)
                outcomes["refused" if isinstance(result, Exception) else "loaded"] += 1
    assert outcomes["refused"] > 0.4 * sum(outcomes.values()), outcomes


def test_every_checkpoint_field_removed(seeds, tmp_path):
    """A key missing anywhere in the metadata: refused with CheckpointError naming the file, or
    loaded (where the key is optional), never a KeyError or TypeError from inside numgru."""
    src = tmp_path / "seed.npz"
    src.write_bytes(seeds["checkpoint"][1])
    meta = load_checkpoint(src).meta
    paths = [p for p in _leaves(meta) if p[:1] != ("extra",) and p]
    assert ("optimizer", "step_count") in paths
    for path in paths:
        out = _rewrite(src, tmp_path / "m.npz", lambda m: _removed(m, path))
        for load in (lambda p: ng.load_model(p, device="cpu"), _resume):
            _load(load, out, CheckpointError)


def _removed(meta, path):
    meta = copy.deepcopy(meta)
    node = meta
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return meta


def _resume(path):
    """Trainer.fit(resume=True) from path: the model and optimizer stay as they were when it
    refuses the file."""
    trainer, X, y = _trained(seed=5)
    before = trainer.model.get_flat_params()
    try:
        trainer.fit(X, y, epochs=1, batch_size=3, checkpoint=path, resume=True, seed=0)
    except CheckpointError:
        assert np.array_equal(trainer.model.get_flat_params(), before)
        raise
    return trainer


def test_checkpoints_that_lie(seeds, tmp_path):
    src = tmp_path / "seed.npz"
    src.write_bytes(seeds["checkpoint"][1])
    cases = {
        "a hidden size of 10**9": (lambda m: _set(m, ("model", "config", "hidden_size"), 10 ** 9),
                                   None, "parameter 'gru.weight_ih_l0' has shape (12, 2), its "
                                         "config makes it (3000000000, 2)"),
        "JSON nested 100 000 deep": (lambda m: "[" * 100_000 + "]" * 100_000, None,
                                     "damaged checkpoint metadata (RecursionError"),
        "metadata as floats": (None, lambda a: a.__setitem__("__meta__", np.zeros(3)),
                               "damaged checkpoint metadata (expected UTF-8 bytes"),
        "NaN weights": (None, lambda a: a.__setitem__("model/fc.bias", np.full(3, np.nan,
                                                                               np.float32)),
                        "contains NaN or Inf"),
        "complex weights": (None, lambda a: a.__setitem__("model/fc.bias", np.ones(3) * 1j),
                            "expected a real array"),
        "an optimizer array missing": (None, lambda a: a.pop("optimizer/exp_avg/0"),
                                       "the optimizer's arrays ['optimizer/exp_avg/0']"),
        "a config key unknown": (lambda m: _set(m, ("model", "config", "evil"), 1), None,
                                 "unknown keys ['evil']"),
    }
    for what, (meta_change, array_change, match) in cases.items():
        out = _rewrite(src, tmp_path / f"{len(what)}.npz", meta_change, array_change)
        _refused(lambda p: ng.load_model(p, device="cpu"), out, CheckpointError, match)
    # What only resume reads: the optimizer may set nothing but its own hyperparameters, each
    # checked as its constructor checks it; the generators' states; the loop's counters.
    resume_cases = {
        "an optimizer attribute": (("optimizer", "hyperparameters", "spans"), 3,
                                   "hyperparameters ['spans'] are not Adam's"),
        "a NaN learning rate": (("optimizer", "hyperparameters", "lr"), float("nan"),
                                "lr: expected a finite number"),
        "betas of three": (("optimizer", "hyperparameters", "betas"), [0.9, 0.9, 0.9],
                           "betas: expected a pair"),
        "a generator's state": (("training", "shuffle_rng"), {"bit_generator": "MT19937"},
                                "cannot resume from it"),
        "a negative epoch": (("training", "epoch"), -1, "training.epoch: expected a "
                                                       "non-negative integer"),
        "a best epoch past the last": (("training", "best_epoch"), 7, "training.best_epoch"),
        "a schedule's NaN": (("scheduler", "base_lr"), float("nan"), "base_lr: expected a "
                                                                     "finite number"),
    }
    for field, value, match in resume_cases.values():
        out = _rewrite(src, tmp_path / "r.npz", lambda m: _set(m, field, value))
        _refused(_resume, out, CheckpointError, match)


# -- made-up files: weights, ONNX, the part plan --

def test_safetensors_that_lie(tmp_path, seeds):
    raw = seeds["safetensors"][1]
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]

    def st(name, head, payload=body, length=None):
        text = json.dumps(head).encode()
        path = tmp_path / name
        path.write_bytes((length if length is not None else len(text)).to_bytes(8, "little")
                         + text + payload)
        return path

    key = next(k for k in header if k != "__metadata__")
    cases = {
        "a header length of 2**63": st("len.safetensors", header, length=2 ** 63),
        "offsets beyond the data": st("off.safetensors", {
            **header, key: {**header[key], "data_offsets": [0, 10 ** 12]}}),
        "a shape of 10**12": st("shape.safetensors", {
            **header, key: {**header[key], "shape": [10 ** 6, 10 ** 6]}}),
        "an unknown dtype": st("dtype.safetensors", {**header, key: {**header[key],
                                                                     "dtype": "X99"}}),
        "a header that is a list": st("list.safetensors", [1, 2, 3]),
    }
    for path in cases.values():
        _refused(ng.load_weights, path, ValueError, "not a readable .safetensors file")
    # A dtype numpy lacks is named (bfloat16 gets its own advice).
    _refused(ng.load_weights, st("f8.safetensors", {"w": {"dtype": "F8_E5M2", "shape": [4],
                                                          "data_offsets": [0, 4]}}, b"\0" * 4),
             ValueError, "holds F8_E5M2 tensors, which numpy cannot represent")


def test_onnx_files_that_lie(tmp_path, seeds):
    onnx = require("onnx")
    (tmp_path / "sub").mkdir()
    src = tmp_path / "sub" / "m.onnx"
    src.write_bytes(seeds["onnx"][1])
    proto = onnx.load(src)
    (tmp_path / "secret.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    for where in ("/etc/hostname", "../secret.bin"):  # external data outside the model's folder
        p2 = onnx.ModelProto()
        p2.CopyFrom(proto)
        t = p2.graph.initializer[0]
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", where
        evil = tmp_path / "sub" / "evil.onnx"
        evil.write_bytes(p2.SerializeToString())
        _refused(ng.load_onnx, evil, ng.OnnxImportError, "not a readable ONNX model")
    # An initializer whose data do not match its dims.
    p3 = onnx.ModelProto()
    p3.CopyFrom(proto)
    big = next(t for t in p3.graph.initializer if len(t.dims) >= 2)
    big.dims[0] = 10 ** 9
    bad = tmp_path / "sub" / "dims.onnx"
    bad.write_bytes(p3.SerializeToString())
    _refused(ng.load_onnx, bad, ng.OnnxImportError, "not a usable ONNX model")


def test_a_damaged_part_plan_is_rebuilt(tmp_path):
    from numgru.cpu.plan import Plan
    for text in ("[" * 100_000, "{\"a\": NaN}", "\xff\xfe", "[1, 2]", ""):
        path = tmp_path / "plan.json"
        path.write_text(text, errors="surrogateescape") if text != "\xff\xfe" else \
            path.write_bytes(b"\xff\xfe")
        plan = Plan(str(path))
        assert plan.chosen() == {}
        assert plan.parts("infer", "float32", 8, 128, 2)[0] in (1, 2)


# -- the command line on hostile files --

@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    np.savez(tmp / "toy.npz", X=rng.standard_normal((12, 4, 2)), y=np.arange(12) % 3)
    assert main(["train", str(tmp / "toy.npz"), "--epochs", "1", "--hidden", "3", "--out",
                 str(tmp / "run"), "--no-progress"]) == 0
    return tmp


def test_cli_exits_2_with_one_line_on_hostile_files(run_folder, seeds, tmp_path, capsys):
    capsys.readouterr()
    toy = run_folder / "toy.npz"
    model = run_folder / "run" / "model.npz"
    raw = model.read_bytes()
    data_files = []
    for fmt in ("ts", "csv", "npz"):  # truncations the loader refuses (some are valid files)
        name, blob = seeds[fmt]
        for k, cut in enumerate((7, len(blob) // 2, len(blob) - 3)):
            path = tmp_path / f"cut{k}-{name}"
            path.write_bytes(blob[:cut])
            if isinstance(_load(_loader(fmt), path), ValueError):
                data_files.append(path)
    assert len(data_files) >= 5
    (tmp_path / "nul.csv").write_text("a\n1\x00\n")
    (tmp_path / "inf.csv").write_text("a\n1\ninf\n")
    data_files += [tmp_path / "nul.csv", tmp_path / "inf.csv"]
    _zip(tmp_path / "obj.npz", [("X.npy", _npy_bytes(np.array([_Marker(str(tmp_path / "m"))],
                                                               dtype=object)))])
    data_files.append(tmp_path / "obj.npz")
    (tmp_path / "dir.ts").mkdir()
    data_files.append(tmp_path / "dir.ts")
    runs = []
    for k, cut in enumerate((100, len(raw) // 2, len(raw) - 10)):
        path = tmp_path / f"run{k}.npz"
        path.write_bytes(raw[:cut])
        runs.append(path)
    for k, (field, value) in enumerate([(("extra", "x_scaler"), None),
                                        (("extra", "x_scaler", "std"), [0.0, 1.0]),
                                        (("extra", "classes"), ["a"]),
                                        (("extra", "task"), "dance"),
                                        (("extra",), [1, 2])]):
        runs.append(_rewrite(model, tmp_path / f"prep{k}.npz", lambda m: _set(m, field, value)))
    calls = [["train", str(p), "--epochs", "1", "--hidden", "3", "--no-progress", "--out",
              str(tmp_path / "out")] for p in data_files]
    calls += [[cmd, str(p), str(toy)] for p in runs for cmd in ("evaluate", "predict")]
    calls += [["export", str(runs[3]), str(tmp_path / "x.onnx")]]
    for argv in calls:
        TRIED["files"] += 1
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 2, f"{argv}: status {status}, stderr {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"numgru {argv[0]}: error: "), err
    assert not (tmp_path / "m").exists()
    # End to end, as a user sees it: no traceback.
    for argv in (calls[0], calls[-2]):
        proc = subprocess.run([sys.executable, "-m", "numgru", *argv], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_safetensors_beyond_memory(tmp_path, seeds, monkeypatch):
    """A .safetensors file is read whole and then converted: twice its size must fit, else the
    refusal names the file and the sizes, before anything is read."""
    path = tmp_path / "w.safetensors"
    path.write_bytes(seeds["safetensors"][1])
    monkeypatch.setattr(_memory, "available_bytes", lambda: path.stat().st_size)
    _refused(ng.load_weights, path, ValueError, "reading it takes")
    monkeypatch.setattr(_memory, "available_bytes", lambda: 2 * path.stat().st_size)
    assert ng.load_weights(path)
