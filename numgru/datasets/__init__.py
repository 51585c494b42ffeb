"""Data sets shipped inside numgru (gzip-compressed; sources and licences in README.md here):
Japanese Vowels (speaker classification, variable lengths), BasicMotions (activity classification,
6 channels), yearly sunspot numbers (forecasting), and the book of Genesis (character-level text).
"""

import gzip
import os

import numpy as np

from ..data import load_csv, load_ts

_HERE = os.path.dirname(os.path.abspath(__file__))

DATASETS = {
    "japanese_vowels": {
        "task": "classify",
        "files": {"train": "JapaneseVowels_TRAIN.ts.gz", "test": "JapaneseVowels_TEST.ts.gz"},
        "what": "9 speakers, 12 LPC coefficients per frame, 7-29 frames; 270 train / 370 test",
        "source": "UCI Machine Learning Repository, Japanese Vowels (Kudo, Toyama, Shimbo 1999), "
                  "UEA .ts format",
        "licence": "UCI data set; cite the paper",
        # Published test accuracy on the official split (see README.md here for the papers).
        "published": [("MLSTM-FCN (Karim et al. 2019)", 1.000),
                      ("FCN (Fawaz et al. 2019, mean of 10)", 0.993),
                      ("ResNet (Fawaz et al. 2019, mean of 10)", 0.992),
                      ("LSTM-FCN (Karim et al. 2019)", 0.990),
                      ("MLP (Fawaz et al. 2019, mean of 10)", 0.976),
                      ("1-NN DTW", 0.95)],
    },
    "basic_motions": {
        "task": "classify",
        "files": {"train": "BasicMotions_TRAIN.ts.gz", "test": "BasicMotions_TEST.ts.gz"},
        "what": "4 activities from a smart watch's 3-D accelerometer and gyroscope (6 channels), "
                "100 steps; 40 train / 40 test",
        "source": "UEA multivariate time series classification archive (Bagnall et al. 2018), "
                  "as distributed with aeon 1.6.0",
        "licence": "UEA/UCR archive data: free to use with citation of the archive paper",
        # Test accuracy on the official split: published (see README.md here for the papers),
        # and peers run on this split with aeon 1.6.0 (benchmarks/basic_motions_peers.py).
        "published": [("ROCKET (Ruiz et al. 2021; measured with aeon: 100%)", 1.000),
                      ("1-NN DTW_D (Bagnall et al. 2018; measured with aeon: 97.5%)", 0.975),
                      ("1-NN Euclidean (measured with aeon)", 0.600)],
    },
    "sunspots": {
        "task": "forecast",
        "files": {"all": "sunspots_yearly.csv.gz"},
        "what": "yearly mean sunspot number 1700-2008 (309 values)",
        "source": "NOAA National Geophysical Data Center, as shipped in statsmodels",
        "licence": "public domain",
        "test_from": 1980,  # fit on 1700-1979, forecast 1980-2008 one step ahead
        "published": [("AR(9)", 15.2), ("repeat last year", 29.1)],  # RMSE on 1980-2008
    },
    "genesis": {
        "task": "text",
        "files": {"all": "kjv_genesis.txt.gz"},
        "what": "the book of Genesis, King James Version (about 200 KB of text)",
        "source": "Debian package bible-kjv-text",
        "licence": "public domain",
    },
}


def path(name, part="all"):
    """File path of a bundled data set's part ("train", "test" or "all")."""
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {sorted(DATASETS)}, got {name!r}")
    files = DATASETS[name]["files"]
    if part not in files:
        raise ValueError(f"part: {name} has parts {sorted(files)}, got {part!r}")
    return os.path.join(_HERE, files[part])


def load_japanese_vowels(split="train", dtype="float32"):
    """SequenceData of the official split ("train": 270, "test": 370): X (N, 29, 12) padded,
    lengths (N,) in 7..29, y (N,) speaker index 0..8 (classes "1".."9")."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return load_ts(path("japanese_vowels", split), dtype=dtype)


def load_basic_motions(split="train", dtype="float32"):
    """SequenceData of the official split ("train": 40, "test": 40): X (N, 100, 6), y (N,) the
    activity index 0..3 (classes "Standing", "Running", "Walking", "Badminton")."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return load_ts(path("basic_motions", split), dtype=dtype)


def load_sunspots():
    """(years (309,) int, sunspot numbers (309,) float64), 1700 to 2008."""
    years, _ = load_csv(path("sunspots"), column="YEAR")
    values, _ = load_csv(path("sunspots"), column="SUNACTIVITY")
    return years.astype(np.int64), values


def load_genesis():
    """The text of Genesis (KJV) as one string."""
    with gzip.open(path("genesis"), "rt", encoding="utf-8") as f:
        return f.read()
