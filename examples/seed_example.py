"""The seed document's PyTorch example, with numgru alone: GRUModel(10, 20, 1), mean squared error
and Adam(lr=0.001), a forward pass on a random (5, 10, 10) batch, then a few training steps.

Run: python examples/seed_example.py   (NUMGRU_EXAMPLE_QUICK=1 for fewer steps)
"""

import os

import numpy as np

import numgru as ng

QUICK = os.environ.get("NUMGRU_EXAMPLE_QUICK") == "1"

# Model parameters, as in the seed.
input_size = 10  # features per step
hidden_size = 20  # hidden units
output_size = 1  # one output: a regression
num_layers = 1

model = ng.GRUModel(input_size, hidden_size, output_size, num_layers, seed=0)
optimizer = ng.Adam(model.parameters(), lr=0.001)
trainer = ng.Trainer(model, optimizer, loss="mse", progress=False)

rng = np.random.default_rng(0)
input_data = rng.standard_normal((5, 10, input_size)).astype(np.float32)  # (batch, steps, features)
output = model(input_data)  # the last step's GRU output through the Linear head: (5, 1)
gru_output, h_n = model.gru(input_data)  # what the head reads the last step of: (5, 10, 20)
print(f"numgru {ng.__version__}: {model}")
print(f"input {input_data.shape} -> GRU output {gru_output.shape} -> head output {output.shape}")
print(output)

# What the seed sets up but does not run: training with its criterion and optimizer. The target
# here is the mean of each sequence's first feature, something a GRU can learn to track.
steps = 50 if QUICK else 300
target = input_data[:, :, :1].mean(axis=1)
losses = [trainer.train_step(input_data, target) for _ in range(steps)]
print(f"MSE after 1 step {losses[0]:.4f}, after {steps} steps {losses[-1]:.4f}")
