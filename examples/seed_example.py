"""The seed document's PyTorch example, run with numgru alone: a GRU over a random (5, 10, 10)
batch, the last step's output through a Linear head.

Until numgru has its own Linear layer and trainer, the head is a plain matrix product with the same
initialisation as PyTorch's nn.Linear (U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
"""

import numpy as np

import numgru as ng

input_size, hidden_size, output_size, num_layers = 10, 20, 1, 1
rng = np.random.default_rng(0)

gru = ng.GRU(input_size, hidden_size, num_layers, batch_first=True, seed=0)
bound = 1.0 / np.sqrt(hidden_size)
fc_weight = rng.uniform(-bound, bound, (output_size, hidden_size)).astype(np.float32)
fc_bias = rng.uniform(-bound, bound, output_size).astype(np.float32)

input_data = rng.standard_normal((5, 10, input_size)).astype(np.float32)  # (batch, steps, features)
h0 = np.zeros((num_layers, input_data.shape[0], hidden_size), np.float32)
out, h_n = gru(input_data, h0)  # out (5, 10, 20)
output = out[:, -1, :] @ fc_weight.T + fc_bias  # the last step through the head: (5, 1)

print(f"numgru {ng.__version__}: {gru}, device={gru.device}")
print(f"input {input_data.shape} -> GRU output {out.shape}, h_n {h_n.shape} -> head {output.shape}")
print(output)
