"""numgru/cli/prep.py: the run record that model.npz stores reads back as written (its format is what
run folders already on disk hold), and a Preparation prepares data the same way after the trip."""

import numpy as np
import pytest

import numgru as ng
from numgru.cli.prep import CLIError, Preparation
from numgru.data import SequenceData

# Records in the format `numgru train` writes (key order included), one per task.
RECORDS = {
    "classify": {"task": "classify", "data": "toy.npz",
                 "x_scaler": {"mean": [0.5, -1.0], "std": [2.0, 0.25]}, "classes": ["a", "b"]},
    "regress": {"task": "regress", "data": "toy.npz",
                "x_scaler": {"mean": [0.5, -1.0], "std": [2.0, 0.25]}, "classes": [],
                "y_scaler": {"mean": [3.0], "std": [4.0]}},
    "forecast": {"task": "forecast", "data": "s.csv", "window": 3, "column": "v",
                 "x_scaler": {"mean": [10.0], "std": [5.0]}, "test_start": 7},
}


def _model(task):
    inputs, outputs = (1, 1) if task == "forecast" else (2, 2 if task == "classify" else 1)
    return ng.GRUModel(inputs, 3, outputs, seed=0)


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_a_record_reads_back_as_written(task):
    prep = Preparation.from_record(RECORDS[task], _model(task), "model.npz")
    assert prep.task == task and prep.to_record() == RECORDS[task]
    assert list(prep.to_record()) == list(RECORDS[task])


def test_sequences_are_prepared_alike_after_the_trip():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4, 2)).astype(np.float32)
    lengths = np.array([4, 3, 4, 2, 4, 1])
    X[np.arange(4)[None, :] >= lengths[:, None]] = 0
    train = SequenceData(X, lengths, rng.standard_normal((6, 2)).astype(np.float32))
    fitted = Preparation.for_sequences("regress", "toy.npz", train)
    model = ng.GRUModel(2, 3, 2, seed=0)
    again = Preparation.from_record(fitted.to_record(), model, "model.npz")
    for a, b in zip(fitted.sequences(train, "toy.npz"), again.sequences(train, "toy.npz")):
        np.testing.assert_array_equal(a, b)
    _, ys, _ = again.sequences(train, "toy.npz")
    np.testing.assert_allclose(again.to_units(ys), train.y, rtol=1e-6)


def test_labels_are_mapped_to_the_runs_classes():
    prep = Preparation.from_record(RECORDS["classify"], _model("classify"), "model.npz")
    part = SequenceData(np.zeros((3, 2, 2), np.float32), np.array([2, 2, 1]),
                        np.array([0, 1, 0]), classes=["b", "a"])
    assert prep.sequences(part, "other.ts")[1].tolist() == [1, 0, 1]
    part.classes = ["b", "c"]
    with pytest.raises(CLIError, match=r"other.ts: class labels \['c'\] were not seen"):
        prep.sequences(part, "other.ts")


def test_a_damaged_record_is_refused_as_such():
    with pytest.raises(CLIError, match="does not say how its data were prepared"):
        Preparation.from_record([1, 2], _model("classify"), "model.npz")
    record = dict(RECORDS["forecast"], window=0)
    with pytest.raises(CLIError, match="damaged run record: window must be a positive integer"):
        Preparation.from_record(record, _model("forecast"), "model.npz")
