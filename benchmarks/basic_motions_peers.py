"""Peers on BasicMotions' official split, run with aeon (which ships the same files numgru
bundles): the test accuracies numgru's datasets README and `numgru train basic_motions` quote as
"measured with aeon". Needs aeon (see the README for installing it beside numba 0.68)."""

import time
import warnings

import numpy as np

from numgru import datasets


def main():
    warnings.filterwarnings("ignore")
    from aeon.classification.convolution_based import RocketClassifier
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    train, test = datasets.load_basic_motions("train"), datasets.load_basic_motions("test")
    X, Xt = train.X.transpose(0, 2, 1).astype(np.float64), test.X.transpose(0, 2, 1)
    peers = [("1-NN Euclidean", KNeighborsTimeSeriesClassifier(distance="euclidean")),
             ("1-NN DTW (dependent, full window)", KNeighborsTimeSeriesClassifier(distance="dtw")),
             ("ROCKET", RocketClassifier(random_state=0))]
    for name, clf in peers:
        t0 = time.perf_counter()
        clf.fit(X, train.y)
        accuracy = float(np.mean(clf.predict(Xt.astype(np.float64)) == test.y))
        print(f"{name:36s} {100 * accuracy:5.1f}%  ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
