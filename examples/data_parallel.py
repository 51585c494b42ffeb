"""Data-parallel training over MPI with the Python API: Japanese Vowels on N processes, each
taking its share of every global batch of 32 utterances; rank 0 alone prints and writes.

Run: mpiexec -n 2 python examples/data_parallel.py   (pip install 'numgru[mpi]' brings mpiexec)
     python examples/data_parallel.py                (one process: a world of one rank)
NUMGRU_EXAMPLE_QUICK=1 for 2 epochs. NUMGRU_DETERMINISTIC=1 adds deterministic=True (bitwise the
same numbers for any number of processes, at a cost).
"""

import os

import numgru as ng
from numgru import datasets
from numgru.data import Standardizer

QUICK = os.environ.get("NUMGRU_EXAMPLE_QUICK") == "1"
EPOCHS = 2 if QUICK else 30

# Every rank loads the same data (the same file on a shared disk, or its own copy).
train = datasets.load_japanese_vowels("train")
test = datasets.load_japanese_vowels("test")
scaler = Standardizer().fit(train.X, train.lengths)
Xtr = scaler.transform(train.X, train.lengths)
Xte = scaler.transform(test.X, test.lengths)

model = ng.GRUModel(12, 64, len(train.classes), seed=0)  # rank 0's weights go to every rank
optimizer = ng.Adam(model, lr=0.01)
trainer = ng.Trainer(model, optimizer, loss="cross_entropy",
                     scheduler=ng.CosineLR(optimizer, EPOCHS), progress=not QUICK,
                     distributed=True,
                     deterministic=os.environ.get("NUMGRU_DETERMINISTIC") == "1")
if trainer.rank == 0:
    print(f"{trainer.world_size} rank(s); global batch 32: each rank takes "
          f"{', '.join(str(b - a) for a, b in ng.distributed.shares(32, trainer.world_size))} "
          f"rows of it")
history = trainer.fit(Xtr, train.y, lengths=train.lengths, epochs=EPOCHS, batch_size=32, seed=0,
                      checkpoint=os.path.join("runs", "data_parallel", "checkpoint.npz"))
result = trainer.evaluate(Xte, test.y, lengths=test.lengths)  # every rank evaluates a share
if trainer.rank == 0:
    for epoch, loss in zip(history["epoch"], history["loss"]):
        print(f"epoch {epoch:3d}  loss {loss:.6f}")
    print(f"test accuracy {100 * result['accuracy']:.1f}% (loss {result['loss']:.4f}) on "
          f"{len(test)} utterances; checkpoint runs/data_parallel/checkpoint.npz (rank 0 wrote it)")
