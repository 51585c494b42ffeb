"""The estimators at their defaults, as a new user runs them: GRUClassifier() / GRURegressor()
with nothing set, on the official train/test splits of the UCR/UEA/TSER sets that aeon ships,
beside a 1-NN Euclidean baseline from aeon on the same split. Each set is marked with whether
numgru's defaults were chosen on it ("tuned") or not ("held out"), and the two are reported apart.

    .venv/bin/python benchmarks/defaults_ucr.py [--sets GunPoint ArrowHead] [--seed 0]

Needs aeon (installed by `make test`).
"""

import argparse
import time
import warnings

import numpy as np

# name -> (task, role): "tuned" sets are those the defaults in numgru/_fitting.py were chosen on
SETS = {
    "JapaneseVowels": ("classify", "tuned"),
    "BasicMotions": ("classify", "tuned"),
    "ItalyPowerDemand": ("classify", "tuned"),
    "GunPoint": ("classify", "held out"),
    "ArrowHead": ("classify", "held out"),
    "Covid3Month": ("regress", "held out"),
}


def load(name, split):
    from aeon import datasets
    if SETS[name][0] == "regress":
        return datasets.load_regression(name, split=split)
    return datasets.load_classification(name, split=split)


def run(name, seed):
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    from aeon.regression.distance_based import KNeighborsTimeSeriesRegressor

    from numgru.aeon import GRUClassifier, GRURegressor
    task, role = SETS[name]
    X, y = load(name, "train")
    Xt, yt = load(name, "test")
    if task == "classify":
        est, peer = GRUClassifier(random_state=seed), KNeighborsTimeSeriesClassifier(
            distance="euclidean")
    else:
        est, peer = GRURegressor(random_state=seed), KNeighborsTimeSeriesRegressor(
            distance="euclidean")
    t0 = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - t0
    pred = est.predict(Xt)
    peer.fit(X, y)
    pred_peer = peer.predict(Xt)
    if task == "classify":
        score, score_peer, metric = np.mean(pred == yt), np.mean(pred_peer == yt), "accuracy"
    else:
        def rmse(p):
            return float(np.sqrt(np.mean((np.asarray(p, float) - np.asarray(yt, float)) ** 2)))
        score, score_peer, metric = rmse(pred), rmse(pred_peer), "RMSE"
    return {"set": name, "role": role, "metric": metric, "numgru": float(score),
            "1nn_euclidean": float(score_peer), "fit_s": seconds, "n_train": len(X)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = [run(n, args.seed) for n in args.sets]
    for role in ("tuned", "held out"):
        print(f"-- {role} --")
        for r in rows:
            if r["role"] == role:
                print(f"{r['set']:18} {r['metric']:8} numgru {r['numgru']:.3f}  1-NN Euclidean "
                      f"{r['1nn_euclidean']:.3f}  ({r['n_train']} training series, fit "
                      f"{r['fit_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
