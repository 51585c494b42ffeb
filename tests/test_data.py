"""Data loaders (.ts, .npz, CSV, sliding windows) and the bundled data sets, each checked against
an independent reading of the raw files; bad files give errors naming file, line and problem."""

import gzip
import os

import numpy as np
import pytest

import numgru as ng
from numgru import datasets
from numgru.data import DataFormatError, Standardizer

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")

TS_HEADER = "@problemName toy\n@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bundled_japanese_vowels_match_the_raw_file():
    train = datasets.load_japanese_vowels("train")
    test = datasets.load_japanese_vowels("test")
    assert len(train) == 270 and len(test) == 370
    assert train.X.shape[2] == 12 and train.classes == [str(c) for c in range(1, 10)]
    assert np.bincount(train.y).tolist() == [30] * 9
    assert train.lengths.min() >= 7 and max(train.lengths.max(), test.lengths.max()) == 29
    # Independent reading of the compressed file's case lines: split by ':' and ','.
    with gzip.open(datasets.path("japanese_vowels", "test"), "rt") as f:
        cases = [line for line in f.read().splitlines() if line and line[0] not in "#@"]
    assert len(cases) == 370
    for i in (0, 123, 369):
        fields = cases[i].split(":")
        values = np.array([[float(v) for v in dim.split(",")] for dim in fields[:-1]]).T
        n = len(values)
        assert test.lengths[i] == n
        np.testing.assert_array_equal(test.X[i, :n], values.astype(np.float32))
        assert not test.X[i, n:].any()
        assert test.classes[test.y[i]] == fields[-1]


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared/data is not next to this checkout")
def test_vendored_files_are_the_shared_originals():
    for name in ("JapaneseVowels_TRAIN.ts", "JapaneseVowels_TEST.ts", "sunspots_yearly.csv",
                 "kjv_genesis.txt"):
        bundled = os.path.join(os.path.dirname(datasets.__file__), name + ".gz")
        with gzip.open(bundled, "rb") as f, open(os.path.join(SHARED, name), "rb") as g:
            assert f.read() == g.read(), name


def test_bundled_sunspots_and_genesis():
    years, values = datasets.load_sunspots()
    assert years[0] == 1700 and years[-1] == 2008 and len(values) == 309
    assert values[:3].tolist() == [5.0, 11.0, 16.0]
    text = datasets.load_genesis()
    assert text.lstrip().startswith("Genesis") and "In the beginning God created" in text
    assert len(text) > 200_000


def test_ts_reader_variable_lengths(tmp_path):
    path = _write(tmp_path, "toy.ts", "# comment\n" + TS_HEADER +
                  "1,2,3:4,5,6:b\n7,8:9,10:a\n")
    d = ng.load_ts(path)
    assert d.classes == ["a", "b"] and d.y.tolist() == [1, 0]
    assert d.lengths.tolist() == [3, 2]
    np.testing.assert_array_equal(d.X[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(d.X[1], [[7, 9], [8, 10], [0, 0]])


@pytest.mark.parametrize("body,message", [
    ("1,2:3,4:c\n", r"toy.ts:6: class label 'c' is not one of"),
    ("1,2:3,4\n", r"toy.ts:6: class label '3,4' is not one of"),
    ("1,2:3,4:5,6:a\n", r"toy.ts:6: expected 2 dimensions"),
    ("1,x:3,4:a\n", r"toy.ts:6: dimension 0: 'x' is not a number"),
    ("1,?:3,4:a\n", r"toy.ts:6: dimension 0: '\?' is not a number"),
    ("1,2:3,NaN:a\n", r"toy.ts:6: dimension 1: missing or non-finite value at step 1"),
    ("1,2,3:3,4:a\n", r"toy.ts:6: the dimensions have different lengths \[3, 2\]"),
    ("", r"toy.ts: no cases after the @data line"),
])
def test_ts_errors_name_file_and_line(tmp_path, body, message):
    path = _write(tmp_path, "toy.ts", TS_HEADER + body)
    with pytest.raises(DataFormatError, match=message):
        ng.load_ts(path)


def test_ts_header_errors(tmp_path):
    with pytest.raises(DataFormatError, match="empty.ts: the file is empty"):
        ng.load_ts(_write(tmp_path, "empty.ts", "\n\n"))
    with pytest.raises(DataFormatError, match="nodata.ts: no @data line"):
        ng.load_ts(_write(tmp_path, "nodata.ts", "@problemName x\n@classLabel true a\n"))
    with pytest.raises(DataFormatError, match="early.ts:2: data before the @data line"):
        ng.load_ts(_write(tmp_path, "early.ts", "@problemName x\n1,2:a\n"))
    with pytest.raises(DataFormatError, match=r"reg.ts:1: @classLabel must be 'true'"):
        ng.load_ts(_write(tmp_path, "reg.ts", "@classLabel false\n@data\n1,2\n"))
    with pytest.raises(FileNotFoundError, match="missing.ts"):
        ng.load_ts(str(tmp_path / "missing.ts"))


def test_npz_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 5, 2))
    lengths = np.array([5, 3, 1, 4])
    X[1, 3:] = np.nan  # padding may hold anything
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 2, 1, 2]), lengths=lengths)
    d = ng.load_npz(tmp_path / "d.npz")
    assert d.classes == ["0", "1", "2"] and d.lengths.tolist() == [5, 3, 1, 4]
    np.testing.assert_array_equal(d.X[0], X[0].astype(np.float32))
    assert not d.X[1, 3:].any()
    np.savez(tmp_path / "r.npz", X=np.nan_to_num(X[:, :, 0]), y=np.ones(4))
    r = ng.load_npz(tmp_path / "r.npz")
    assert r.X.shape == (4, 5, 1) and r.y.shape == (4, 1) and not r.classes
    cases = {
        "short.npz": (dict(X=X, y=np.zeros(3, int)), "X has 4 sequences but y has 3"),
        "nan.npz": (dict(X=np.where(np.isnan(X), 0, X) * np.nan, y=np.zeros(4, int)),
                    "X: NaN or Inf at sequence 0, step 0, feature 0"),
        "noy.npz": (dict(X=X), r"missing arrays \['y'\]"),
        "neg.npz": (dict(X=np.zeros((2, 3, 1)), y=np.array([0, -1])), "y: class labels must be >= 0"),
        "len.npz": (dict(X=np.zeros((2, 3, 1)), y=np.zeros(2, int), lengths=np.array([1, 4])),
                    r"lengths: expected values in \[1, 3\]"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataFormatError, match=f"{name}: {message}"):
            ng.load_npz(tmp_path / name)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty.npz: the file is empty"):
        ng.load_npz(tmp_path / "empty.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataFormatError, match="junk.npz: not a readable .npz"):
        ng.load_npz(tmp_path / "junk.npz")


def test_csv_reader_and_errors(tmp_path):
    path = _write(tmp_path, "s.csv", '"YEAR","VALUE"\n2000,1.5\n2001,2\n\n2002,3.25\n')
    values, name = ng.load_csv(path)
    assert name == "VALUE" and values.tolist() == [1.5, 2.0, 3.25]
    assert ng.load_csv(path, column="YEAR")[0].tolist() == [2000, 2001, 2002]
    assert ng.load_csv(_write(tmp_path, "n.csv", "1,2\n3,4\n"), column=0)[0].tolist() == [1, 3]
    with pytest.raises(DataFormatError, match=r"bad.csv:3: column 1: 'abc' is not a number"):
        ng.load_csv(_write(tmp_path, "bad.csv", "a,b\n1,2\n3,abc\n"))
    with pytest.raises(DataFormatError, match=r"gap.csv:3: column 1: '' is (missing|not)"):
        ng.load_csv(_write(tmp_path, "gap.csv", "a,b\n1,2\n3,\n"))
    with pytest.raises(DataFormatError, match=r"nan.csv:2: column 0: 'nan' is missing or not finite"):
        ng.load_csv(_write(tmp_path, "nan.csv", "a\nnan\n"))
    with pytest.raises(DataFormatError, match=r"ragged.csv:3: expected 2 fields, got 1"):
        ng.load_csv(_write(tmp_path, "ragged.csv", "1,2\n3,4\n5\n"))
    with pytest.raises(DataFormatError, match="empty.csv: the file is empty"):
        ng.load_csv(_write(tmp_path, "empty.csv", ""))
    with pytest.raises(DataFormatError, match="h.csv: a header but no data rows"):
        ng.load_csv(_write(tmp_path, "h.csv", "a,b\n"))
    with pytest.raises(DataFormatError, match="no column named 'c'"):
        ng.load_csv(path, column="c")


def test_sliding_windows_are_consecutive_slices():
    s = np.arange(10.0) ** 2
    X, y = ng.sliding_windows(s, 3, horizon=2)
    assert X.shape == (6, 3, 1) and y.shape == (6, 2)
    for i in range(6):
        assert X[i, :, 0].tolist() == s[i:i + 3].tolist()
        assert y[i].tolist() == s[i + 3:i + 5].tolist()
    with pytest.raises(ValueError, match="too few"):
        ng.sliding_windows(s, 9, horizon=2)
    with pytest.raises(ValueError, match="window"):
        ng.sliding_windows(s, 0)


def test_pad_sequences_and_standardizer():
    X, lengths = ng.pad_sequences([np.ones((2, 3)), np.full((4, 3), 2.0)])
    assert X.shape == (2, 4, 3) and lengths.tolist() == [2, 4] and not X[0, 2:].any()
    with pytest.raises(ValueError, match=r"sequences\[1\]: expected 3 features, got 2"):
        ng.pad_sequences([np.ones((2, 3)), np.ones((2, 2))])
    s = Standardizer().fit(X, lengths)
    valid = np.concatenate([np.ones((2, 3)), np.full((4, 3), 2.0)])
    np.testing.assert_allclose(s.mean, valid.mean(0))
    Z = s.transform(X, lengths)
    np.testing.assert_allclose(Z[1, :4].mean(), (2 - valid.mean()) / valid.std(), rtol=1e-6)
    assert not Z[0, 2:].any()  # padding stays zero
    np.testing.assert_allclose(s.inverse(Z[1, :4]), X[1, :4], rtol=1e-6)
