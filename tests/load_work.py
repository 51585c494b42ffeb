"""The work of the load tests (tests/test_load.py), importable by name so that processes started
with multiprocessing's "spawn" find it. Every job is deterministic in its seed: the same call
made alone, in a thread among others, or in a child process must give the same bits."""

import numpy as np

import numgru as ng

SHARED = dict(input_size=16, hidden_size=160)  # 6·B·H² >= 2^20 at B = 8: passes use the pool
SHARED_B, SHARED_T = 8, 40


def shared_layer():
    return ng.GRU(**SHARED, dtype="float32", device="cpu", seed=0)


def infer_input(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((SHARED_B, SHARED_T, SHARED["input_size"])).astype(np.float32)


def infer_job(seed, layer=None):
    """(y, h_n) of the shared layer on seed's input."""
    layer = layer if layer is not None else shared_layer()
    return layer(infer_input(seed))


def train_job(seed, steps=3, hidden=24):
    """A model of its own trained `steps` Adam steps on seed's data: its parameters."""
    rng = np.random.default_rng(seed)
    model = ng.GRUModel(6, hidden, 3, num_layers=2, dropout=0.1, seed=seed)
    trainer = ng.Trainer(model, ng.Adam(model, lr=0.01), loss="cross_entropy", progress=False)
    X = rng.standard_normal((8, 12, 6)).astype(np.float32)
    lengths = rng.integers(2, 13, 8)
    y = rng.integers(0, 3, 8)
    for _ in range(steps):
        trainer.train_step(X, y, lengths=lengths)
    return model.get_flat_params()


def cell_job(seed, steps=60):
    """A GRUCell streamed over `steps` steps of seed's input: the last state."""
    rng = np.random.default_rng(seed)
    cell = ng.GRUCell(5, 32, dtype="float32", device="cpu", seed=seed)
    xs = rng.standard_normal((steps, 2, 5)).astype(np.float32)
    h = np.zeros((2, 32), np.float32)
    for x in xs:
        h = cell(x, h)
    return h


def run(job):
    """job = (name, seed) -> its result, for a multiprocessing pool."""
    name, seed = job
    if name == "infer":
        return infer_job(seed)
    if name == "train":
        return train_job(seed)
    if name == "train-pool":
        return train_job(seed, steps=1, hidden=192)
    return cell_job(seed)
