"""The command line's data preparation: how `numgru train` reads and splits its data and fits a
`Preparation` on the training part (standardisation, classes, the forecasting window), which
model.npz stores, so that evaluate, predict and export prepare their data the same way.

Not the command line itself (numgru/cli/commands.py parses the arguments, trains and writes the run folder),
and not the estimators' preparation (numgru/_fitting.py).
"""

import os

import numpy as np

from .. import data, datasets
from .._checks import is_int
from ..data import Standardizer, sliding_windows

TASKS = ("classify", "regress", "forecast")


class CLIError(Exception):
    """A usage or data problem reported as one line on stderr with exit status 2."""


# -- reading the data --

def load_source(spec, column=None, require_targets=True):
    """(kind, parts) for a bundled name or a file path: kind "sequences" (a SequenceData per
    part: "train" and "test", or "all") or "series" (index, values, name, test_start)."""
    if spec in datasets.DATASETS:
        info = datasets.DATASETS[spec]
        if info["task"] == "text":
            raise CLIError(f"{spec} is a text corpus; see examples/text_generation.py for "
                           f"character-level training")
        if "train" in info["files"]:
            return "sequences", {"train": data.load_ts(datasets.path(spec, "train")),
                                 "test": data.load_ts(datasets.path(spec, "test"))}
        years, values = datasets.load_sunspots()
        return "series", {"index": years, "values": values, "name": "SUNACTIVITY",
                          "test_start": int(np.searchsorted(years, info["test_from"]))}
    if not os.path.exists(spec):
        bundled = ", ".join(n for n, i in datasets.DATASETS.items() if i["task"] != "text")
        raise CLIError(f"{spec}: no such file, and not a bundled data set (bundled: {bundled})")
    name = spec[:-3] if spec.endswith(".gz") else spec
    ext = os.path.splitext(name)[1].lower()
    if ext == ".ts":
        return "sequences", {"all": data.load_ts(spec)}
    if ext == ".npz":
        return "sequences", {"all": data.load_npz(spec, require_targets=require_targets)}
    if ext == ".csv":
        values, col_name = data.load_csv(spec, column=column)
        return "series", {"index": np.arange(len(values)), "values": values, "name": col_name,
                          "test_start": None}
    raise CLIError(f"{spec}: unknown file type {ext!r} (expected .ts, .npz or .csv, optionally "
                   f".gz)")


def with_test_file(spec, test, column, kind, source):
    """source with a "test" part from the file `test`, or from the sibling X_TEST.ts of
    X_TRAIN.ts when test is None; its labels as the training part's class indices."""
    if test is None and kind == "sequences" and "all" in source:
        sibling = _sibling_test_file(spec)
        if sibling is not None:
            test = sibling
            print(f"numgru train: testing on {sibling}, the _TEST file beside {spec} "
                  f"(--test FILE to choose another)", flush=True)
    if test is None:
        return source
    if "all" not in source:
        raise CLIError(f"--test: {spec} brings its own test split; --test applies to a "
                       f"training file")
    test_kind, test_source = load_source(test, column)
    if test_kind != "sequences":
        raise CLIError(f"--test {test}: expected sequences (.ts or .npz) like {spec}")
    train, held = source["all"], test_source["all"]
    if held.X.shape[2] != train.X.shape[2]:
        raise CLIError(f"--test {test}: sequences have {held.X.shape[2]} features, "
                       f"{spec} has {train.X.shape[2]}")
    if train.classes and held.classes != train.classes:
        held.y = _class_indices(held, train.classes, f"--test {test}", f"do not occur in {spec}")
        held.classes = list(train.classes)
    return {"train": train, "test": held}


def _sibling_test_file(path):
    """X_TEST.ts(.gz) beside X_TRAIN.ts(.gz) (the UEA/UCR archive's naming), if it exists."""
    folder, base = os.path.split(path)
    upper = base.upper()
    for ext in (".TS", ".TS.GZ"):
        if upper.endswith("_TRAIN" + ext):
            cut = len(base) - len(ext) - len("_TRAIN")
            test = "_TEST" if base[cut + 1:cut + 6].isupper() else "_test"
            candidate = os.path.join(folder, base[:cut] + test + base[len(base) - len(ext):])
            return candidate if os.path.exists(candidate) else None
    return None


def _class_indices(part, classes, where, unknown_says):
    """part's labels as indices into classes (the labels the model was trained on)."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in part.classes if c not in index]
    if unknown:
        raise CLIError(f"{where}: class labels {unknown} {unknown_says} ({classes})")
    return np.array([index[part.classes[k]] for k in part.y], np.int64)


def prepare_training(spec, task, column, test, test_split, window, rng):
    """What `numgru train` trains and tests on: (Preparation fitted on the training part,
    train (X, y, lengths), test (X, y, lengths) or None). task None: the data's own (classify
    labelled sequences, regress float targets, forecast a series). A file of sequences without a
    test part gives a random test_split of them (rng) to testing."""
    kind, source = load_source(spec, column)
    source = with_test_file(spec, test, column, kind, source)
    task = task or _default_task(kind, source)
    if kind == "series" and task != "forecast":
        raise CLIError(f"{spec}: a single series supports --task forecast only, got {task}")
    if kind == "sequences" and task == "forecast":
        raise CLIError(f"{spec}: --task forecast needs a CSV series; use classify or regress")
    if kind == "series":
        prep = Preparation.for_series(spec, source, window, test_split)
        X, y, targets = prep.windows(source["values"])
        fit, held = targets < prep.test_start, targets >= prep.test_start
        return prep, (X[fit], y[fit], None), (X[held], y[held], None)
    if "train" in source:
        train, held = source["train"], source["test"]
    else:
        whole = source["all"]
        order = rng.permutation(len(whole))
        k = int(round(len(whole) * test_split))
        train, held = whole.subset(np.sort(order[k:])), whole.subset(np.sort(order[:k]))
    prep = Preparation.for_sequences(task, spec, train)
    return prep, prep.sequences(train, spec), prep.sequences(held, spec) if len(held) else None


def _default_task(kind, source):
    if kind == "series":
        return "forecast"
    return "classify" if next(iter(source.values())).classes else "regress"


# -- what train fits and the others apply --

class Preparation:
    """How a run's data are prepared: fitted on the training part by `numgru train`, stored as
    model.npz's run record (to_record), read back by evaluate, predict and export (from_record).

    task: one of TASKS; data: the training data's name or path; x_scaler: the inputs'
    standardisation (per feature; the series' own for forecasting); y_scaler: the targets'
    (regression; None otherwise); classes: the label of each class index (classification;
    [] otherwise); window, column, test_start: forecasting's input length, the CSV column's name,
    and the index of the first test value in the series (None otherwise).
    """

    def __init__(self, task, data, x_scaler, y_scaler=None, classes=(), window=None,
                 column=None, test_start=None):
        self.task, self.data = task, data
        self.x_scaler, self.y_scaler = x_scaler, y_scaler
        self.classes = list(classes)
        self.window, self.column, self.test_start = window, column, test_start

    # -- fitting, on the training part --

    @classmethod
    def for_series(cls, spec, source, window, test_split):
        """Forecasting: the series' standardisation fitted on the values before its test part
        (the bundled split, else the last test_split of it, leaving at least window + 1)."""
        values = source["values"]
        if len(values) <= window + 1:
            raise CLIError(f"{spec}: {len(values)} values are too few for --window {window}")
        test_start = source["test_start"]
        if test_start is None:
            test_start = len(values) - max(1, int(round(len(values) * test_split)))
        test_start = max(test_start, window + 1)
        return cls("forecast", spec, Standardizer().fit(values[:test_start]), window=window,
                   column=source["name"], test_start=int(test_start))

    @classmethod
    def for_sequences(cls, task, spec, train):
        """Classification or regression: the features' standardisation fitted on the valid steps
        of the training part (and the targets', for regression), and its classes."""
        if task == "classify" and not train.classes:
            raise CLIError(f"{spec}: --task classify needs integer class labels")
        prep = cls(task, spec, Standardizer().fit(train.X, train.lengths), classes=train.classes)
        if task == "regress":
            prep.y_scaler = Standardizer().fit(_as_targets(train.y))
        return prep

    # -- applying it --

    @property
    def input_size(self):
        return len(self.x_scaler.mean)

    @property
    def output_size(self):
        if self.task == "classify":
            return len(self.classes)
        return len(self.y_scaler.mean) if self.task == "regress" else 1

    @property
    def loss(self):
        return "cross_entropy" if self.task == "classify" else "mse"

    def windows(self, values):
        """Forecasting pairs of a series, standardised: X (M, window, 1), y (M, 1), and the
        index in values of each row's target (window .. len(values) - 1)."""
        X, y = sliding_windows(self.x_scaler.transform(values.astype(np.float64)), self.window)
        return X, y, np.arange(self.window, len(values))

    def sequences(self, part, spec):
        """(X, y, lengths) of a SequenceData part: X standardised, class labels as this run's
        indices, regression targets (N, K) standardised; y None where the part has none."""
        if part.X.shape[2] != self.input_size:
            raise CLIError(f"{spec}: sequences have {part.X.shape[2]} features, the model was "
                           f"trained on {self.input_size}")
        X = self.x_scaler.transform(part.X, part.lengths)
        y = part.y
        if self.task == "classify" and y is not None and len(y):
            if part.classes and part.classes != self.classes:
                y = _class_indices(part, self.classes, spec, "were not seen in training")
        elif self.task == "regress" and y is not None:
            y = self.y_scaler.transform(_as_targets(y))
        return X, y, part.lengths

    def transform(self, spec, split, require_targets=True):
        """(X, y, lengths, row labels) of the data in spec (a bundled name or a file), prepared
        as the training data were. split "test" takes a bundled set's test part, or a series'
        values from test_start on (from the first window for another series)."""
        kind, source = load_source(spec, self.column, require_targets)
        if self.task == "forecast":
            if kind != "series":
                raise CLIError(f"{spec}: this model forecasts a series; give a CSV file or "
                               f"sunspots")
            X, y, targets = self.windows(source["values"])
            index = source["index"][self.window:]
            if split == "test":
                start = self.test_start if spec == self.data else self.window
                rows = np.nonzero(targets >= start)[0]
                X, y, index = X[rows], y[rows], index[rows]
            return X, y, None, index
        if kind != "sequences":
            raise CLIError(f"{spec}: this model takes sequences (.ts, .npz), not a single series")
        if "test" in source:
            part = source["test"] if split == "test" else source["train"]
        else:
            part = source["all"]
        X, y, lengths = self.sequences(part, spec)
        return X, y, lengths, np.arange(len(X))

    @property
    def output_scaler(self):
        """The standardisation of the model's outputs (regression and forecasting)."""
        return self.y_scaler if self.y_scaler is not None else self.x_scaler

    def to_units(self, out):
        """Model outputs (N, K) in the targets' units (regression and forecasting), float64."""
        return self.output_scaler.inverse(out)

    # -- the run record --

    def to_record(self):
        """The JSON object model.npz stores (its checkpoint's "extra")."""
        record = {"task": self.task, "data": self.data}
        if self.task == "forecast":
            record.update(window=self.window, column=self.column,
                          x_scaler=self.x_scaler.to_dict(), test_start=self.test_start)
        else:
            record.update(x_scaler=self.x_scaler.to_dict(), classes=list(self.classes))
        if self.y_scaler is not None:
            record["y_scaler"] = self.y_scaler.to_dict()
        return record

    @classmethod
    def from_record(cls, record, model, path):
        """The Preparation a run record describes, every field that evaluate, predict and
        export read checked against the model (a damaged file is refused here, not met as a
        KeyError halfway through)."""
        if not isinstance(record, dict) or "task" not in record:
            raise CLIError(f"{path}: does not say how its data were prepared (not written by "
                           f"`numgru train`); use the Python API")
        _check_record(record, model, path)
        task, classes = record["task"], record.get("classes")
        y_scaler = None  # a classifier's outputs are not standardised
        if task != "classify" and "y_scaler" in record:
            y_scaler = Standardizer.from_dict(record["y_scaler"])
        return cls(task, record["data"], Standardizer.from_dict(record["x_scaler"]), y_scaler,
                   classes=classes if isinstance(classes, list) else [],
                   window=record.get("window"), column=record.get("column"),
                   test_start=record.get("test_start"))


def _as_targets(y):
    """Regression targets as float64 (N, K) (class labels read as numbers: (N, 1)), so that they
    are standardised, and measured back in their units, without a float32 rounding between."""
    y = np.asarray(y, np.float64)
    return y[:, None] if y.ndim == 1 else y


def _check_record(record, model, path):
    """The run record's fields, as `numgru train` writes them, against the model."""
    def bad(what):
        raise CLIError(f"{path}: damaged run record: {what}")

    def scaler(key, size):
        sc = record.get(key)
        if not isinstance(sc, dict):
            bad(f"{key} must hold mean and std")
        for part in ("mean", "std"):
            v = sc.get(part)
            if not isinstance(v, list) or len(v) != size or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)
                    for x in v):
                bad(f"{key}.{part} must be {size} finite numbers, got {str(v)[:60]}")
        if not all(x > 0 for x in sc["std"]):
            bad(f"{key}.std must be positive")

    task = record.get("task")
    if task not in TASKS:
        bad(f"task must be one of {TASKS}, got {task!r}")
    if not isinstance(record.get("data"), str):
        bad("data must name the training data")
    scaler("x_scaler", model.input_size)
    if task == "classify":
        classes = record.get("classes")
        if not isinstance(classes, list) or len(classes) != model.output_size or \
                not all(isinstance(c, str) for c in classes):
            bad(f"classes must be {model.output_size} labels (the model's outputs), got "
                f"{str(classes)[:60]}")
    elif task == "regress":
        scaler("y_scaler", model.output_size)
    else:
        for key in ("window", "test_start"):
            v = record.get(key)
            if not is_int(v, 1 if key == "window" else 0):
                bad(f"{key} must be a {'positive' if key == 'window' else 'non-negative'} "
                    f"integer, got {v!r}")
        if record.get("column") is not None and not isinstance(record["column"], str):
            bad(f"column must be a name, got {record['column']!r}")
        if "y_scaler" in record:
            scaler("y_scaler", model.output_size)
