"""PyTorch oracles for the model tests: the seed document's GRUModel (a GRU, then a Linear head on
the last step), extended with packed sequences (the last valid step) and a per-step head.

Test-only: numgru itself never imports torch.
"""

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class SeedGRUModel(nn.Module):
    """The seed's model: zero initial state, batch-first GRU, fc on out[:, -1, :]; with lengths,
    fc on each sequence's last valid output (packed sequences); head="sequence": fc at every step."""

    def __init__(self, input_size, hidden_size, output_size, num_layers=1, bidirectional=False,
                 head="last"):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.head = head
        self.gru = nn.GRU(input_size, hidden_size, num_layers, batch_first=True,
                          bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def forward(self, x, lengths=None):
        D = 2 if self.gru.bidirectional else 1
        h0 = torch.zeros(self.num_layers * D, x.size(0), self.hidden_size, dtype=x.dtype)
        T = x.size(1)
        if lengths is None:
            out, _ = self.gru(x, h0)
            lengths = torch.full((x.size(0),), T, dtype=torch.int64)
        else:
            lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.gru(packed, h0)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        if self.head == "last":
            return self.fc(out[torch.arange(x.size(0)), lengths - 1])
        y = self.fc(out)
        valid = torch.arange(T)[None, :] < lengths[:, None]
        return y * valid[:, :, None].to(y.dtype)


def numpy_state(module):
    """state_dict of a torch module as numpy arrays (the conversion a user makes)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
