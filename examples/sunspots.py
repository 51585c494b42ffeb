"""Forecasting yearly sunspot numbers one year ahead with a GRU, against two baselines: repeating
last year's value, and an AR(9) model fitted by least squares.

Fits on 1700-1979 and forecasts each year of 1980-2008 from the 20 years before it (the split of
the figures in numgru/datasets/README.md: AR(9) RMSE about 15.2, repeat-last-year about 29.1).
Run: python examples/sunspots.py   (NUMGRU_EXAMPLE_QUICK=1 for a few epochs only)
"""

import os

import numpy as np

import numgru as ng
from numgru import datasets
from numgru.data import Standardizer

QUICK = os.environ.get("NUMGRU_EXAMPLE_QUICK") == "1"
WINDOW, HIDDEN, EPOCHS = 20, 32, (5 if QUICK else 100)

years, values = datasets.load_sunspots()
split = int(np.searchsorted(years, 1980))  # first test year's index
scaler = Standardizer().fit(values[:split])  # statistics of the training years only
X, y = ng.sliding_windows(scaler.transform(values), WINDOW)  # X (M, 20, 1), y (M, 1)
target_index = np.arange(WINDOW, len(values))  # which year each row forecasts
train, test = target_index < split, target_index >= split

model = ng.GRUModel(1, HIDDEN, 1, seed=0)
optimizer = ng.Adam(model, lr=0.01)
trainer = ng.Trainer(model, optimizer, loss="mse", scheduler=ng.CosineLR(optimizer, EPOCHS),
                     progress=not QUICK)
history = trainer.fit(X[train], y[train], epochs=EPOCHS, batch_size=16, seed=0)

truth = values[target_index[test]]
gru = scaler.inverse(trainer.predict(X[test]))[:, 0]
repeat_last = values[target_index[test] - 1]

# AR(9): value_t = c0 + sum_k c_k value_{t-k}, least squares on the training years.
P = 9
rows = np.arange(P, split)
A = np.column_stack([values[rows - k] for k in range(1, P + 1)] + [np.ones(len(rows))])
coef = np.linalg.lstsq(A, values[rows], rcond=None)[0]
rows = target_index[test]
ar9 = np.column_stack([values[rows - k] for k in range(1, P + 1)] + [np.ones(len(rows))]) @ coef


def rmse(pred):
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


print(f"one-step-ahead forecasts of {years[split]}-{years[-1]} ({len(truth)} years), "
      f"GRU trained {len(history['loss'])} epochs on {years[0]}-{years[split - 1]}:")
print(f"  GRU (hidden {HIDDEN}, window {WINDOW})  RMSE {rmse(gru):6.2f}")
print(f"  AR(9), least squares          RMSE {rmse(ar9):6.2f}   (published: about 15.2)")
print(f"  repeat last year              RMSE {rmse(repeat_last):6.2f}   (published: about 29.1)")
for year, t, g in list(zip(years[rows], truth, gru))[-5:]:
    print(f"  {year}: actual {t:6.1f}, GRU {g:6.1f}")
