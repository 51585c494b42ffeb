"""Character-level text generation on the book of Genesis (King James Version, bundled): a GRU
with a per-step head learns to predict the next character, then writes new text one character at
a time, carrying its hidden state from step to step.

Run: python examples/text_generation.py   (NUMGRU_EXAMPLE_QUICK=1 for a few steps only)
"""

import math
import os
import time

import numpy as np

import numgru as ng
from numgru import datasets

QUICK = os.environ.get("NUMGRU_EXAMPLE_QUICK") == "1"
SEQ_LEN, BATCH, HIDDEN = 64, 32, 192
STEPS = 5 if QUICK else 700
TIME_BUDGET = 35.0  # seconds of training at most, so the example stays under a minute

text = datasets.load_genesis()
vocab = sorted(set(text))
V = len(vocab)
codes = np.frombuffer(text.encode("ascii"), np.uint8)
lookup = np.zeros(256, np.int64)
lookup[[ord(c) for c in vocab]] = np.arange(V)
ids = lookup[codes]  # (N,) character indices
split = int(0.95 * len(ids))
train_ids, val_ids = ids[:split], ids[split:]
eye = np.eye(V, dtype=np.float32)  # one-hot rows: the input of step t is character t


def batch(source, rng, size):
    """x (size, SEQ_LEN, V) one-hot characters, y (size, SEQ_LEN) the character after each."""
    starts = rng.integers(0, len(source) - SEQ_LEN - 1, size)
    windows = source[starts[:, None] + np.arange(SEQ_LEN + 1)]
    return eye[windows[:, :-1]], windows[:, 1:]


model = ng.GRUModel(V, HIDDEN, V, head="sequence", seed=0)
optimizer = ng.Adam(model, lr=3e-3)
trainer = ng.Trainer(model, optimizer, loss="cross_entropy", clip_norm=1.0, progress=False)
rng = np.random.default_rng(0)
x_val, y_val = batch(val_ids, np.random.default_rng(1), 64)
unigram = np.bincount(train_ids, minlength=V) / len(train_ids)
print(f"Genesis: {len(ids)} characters, {V} distinct; {model}, {model.num_parameters()} parameters")
print(f"baselines (nats/char): uniform {math.log(V):.3f}, "
      f"unigram {-(unigram[unigram > 0] * np.log(unigram[unigram > 0])).sum():.3f}")
start = time.perf_counter()
for step in range(1, STEPS + 1):
    x, y = batch(train_ids, rng, BATCH)
    loss = trainer.train_step(x, y)
    out_of_time = time.perf_counter() - start > TIME_BUDGET
    if step % 100 == 0 or step == STEPS or out_of_time:
        val = trainer.evaluate(x_val, y_val)
        print(f"step {step:4d}  train {loss:.3f}  validation {val['loss']:.3f} nats/char "
              f"(accuracy {val['accuracy']:.2f})  {time.perf_counter() - start:5.1f} s", flush=True)
    if out_of_time:
        break


def generate(prompt, length, temperature=0.7, seed=0):
    """Feed the prompt, then sample one character at a time from the model's softmax."""
    sample_rng = np.random.default_rng(seed)
    logits, h = model.forward(eye[lookup[np.frombuffer(prompt.encode(), np.uint8)]][None],
                              return_state=True)
    out = [prompt]
    for _ in range(length):
        z = logits[0, -1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        k = sample_rng.choice(V, p=p / p.sum())
        out.append(vocab[k])
        logits, h = model.forward(eye[k][None, None], h0=h, return_state=True)
    return "".join(out)


print("--- sample (temperature 0.7) ---")
print(generate("And God said", 40 if QUICK else 400))
