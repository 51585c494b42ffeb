"""Classifying variable-length sequences with the Python API: Japanese Vowels (which of 9 speakers
said the vowels; 7 to 29 frames per utterance), passed as a list of (frames, 12) arrays.

Shows lengths (each batch runs only its own valid steps), a validation split with early stopping
and best-model restore, a checkpoint written every epoch, and reloading it for predictions.
Run: python examples/classify_with_lengths.py   (NUMGRU_EXAMPLE_QUICK=1 for 2 epochs)
"""

import os
import tempfile

import numpy as np

import numgru as ng
from numgru import datasets
from numgru.data import Standardizer

QUICK = os.environ.get("NUMGRU_EXAMPLE_QUICK") == "1"
EPOCHS = 2 if QUICK else 40

train = datasets.load_japanese_vowels("train")
test = datasets.load_japanese_vowels("test")
scaler = Standardizer().fit(train.X, train.lengths)  # per-coefficient z-scores, training frames only
Xtr = scaler.transform(train.X, train.lengths)
Xte = scaler.transform(test.X, test.lengths)
# Ragged input: one (length, 12) array per utterance, the form such data usually comes in.
sequences = [Xtr[i, :n] for i, n in enumerate(train.lengths)]
print(f"{len(sequences)} training utterances, lengths {min(map(len, sequences))} to "
      f"{max(map(len, sequences))} frames; {len(test)} test utterances")

rng = np.random.default_rng(0)
order = rng.permutation(len(sequences))
val_idx, fit_idx = order[:40], order[40:]  # 40 utterances held out for early stopping

model = ng.GRUModel(12, 64, len(train.classes), seed=0)
optimizer = ng.Adam(model, lr=0.01)
trainer = ng.Trainer(model, optimizer, loss="cross_entropy",
                     scheduler=ng.CosineLR(optimizer, EPOCHS), progress=not QUICK)
checkpoint = os.path.join(tempfile.mkdtemp(prefix="numgru-"), "vowels.ckpt")
history = trainer.fit([sequences[i] for i in fit_idx], train.y[fit_idx], epochs=EPOCHS,
                      batch_size=16, seed=0,
                      validation_data=([sequences[i] for i in val_idx], train.y[val_idx]),
                      early_stopping=10, checkpoint=checkpoint)
print(f"{len(history['loss'])} epochs; best validation loss {min(history['val_loss']):.4f} at "
      f"epoch {trainer.best_epoch} (restored); checkpoint {checkpoint}")

result = trainer.evaluate(Xte, test.y, lengths=test.lengths)
print(f"test accuracy {100 * result['accuracy']:.1f}% ({len(test)} utterances)")

# The checkpoint rebuilds the model on its own (it holds the last epoch's weights).
reloaded, ckpt = ng.load_model(checkpoint)
logits = reloaded(Xte[:5], lengths=test.lengths[:5])
print(f"reloaded from epoch {ckpt.meta['training']['epoch']}: first five predictions "
      f"{[test.classes[k] for k in logits.argmax(1)]}, truth {[test.classes[k] for k in test.y[:5]]}")
