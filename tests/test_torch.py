"""Rung 3 of the verification ladder, live: numgru's layers against torch.nn.GRU and GRUCell.

Same weights (moved in through state_dict), same inputs; compare outputs, h_n and every gradient
(x, h0 and each parameter) of L = Σ y ⊙ Wy + Σ h_n ⊙ Wh. Variable lengths go through torch's
pack_padded_sequence(..., enforce_sorted=False). Tolerances, on max|diff| / max(1, max|torch|):
float64 1e-12 (only summation orders differ); float32 1e-5 (both sides round every GEMM to float32,
~1e-6 each side after a dozen steps, with a margin for torch's different kernels).
"""

import numpy as np
import pytest

import numgru as ng

from helpers import require, assert_close

torch = require("torch")

TOL = {"float64": 1e-12, "float32": 1e-5}


def _close(name, got, want, dtype):
    want = want.detach().numpy() if hasattr(want, "detach") else want
    assert_close(name, got, want, TOL[dtype])


def _torch_dtype(dtype):
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


def _run_torch(tgru, x, h0, lengths, wy, wh, batch_first, dtype):
    td = _torch_dtype(dtype)
    xt = torch.tensor(x, dtype=td, requires_grad=True)
    h0t = torch.tensor(h0, dtype=td, requires_grad=True)
    if lengths is None:
        yt, ht = tgru(xt, h0t)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        yp, ht = tgru(packed, h0t)
        T = x.shape[1] if batch_first else x.shape[0]
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=batch_first,
                                                       total_length=T)
    loss = (yt * torch.tensor(wy, dtype=td)).sum() + (ht * torch.tensor(wh, dtype=td)).sum()
    loss.backward()
    return yt, ht, xt.grad, h0t.grad


CONFIGS = [  # num_layers, bidirectional, batch_first, bias, with lengths
    (1, False, True, True, False),
    (1, False, True, True, True),
    (2, True, True, True, True),
    (3, False, False, True, True),
    (1, True, False, False, False),
    (2, False, True, False, True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "L{}-bi{}-bf{}-bias{}-len{}".format(*c))
def test_gru_matches_torch(dtype, device, config):
    num_layers, bidirectional, batch_first, bias, with_lengths = config
    B, T, I, H = 4, 7, 5, 6
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(num_layers * 10 + D)
    gru = ng.GRU(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first,
                 bidirectional=bidirectional, dtype=dtype, device=device, seed=11)
    tgru = torch.nn.GRU(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first,
                        bidirectional=bidirectional).to(_torch_dtype(dtype))
    # Move torch's own initial weights into numgru: the PyTorch user's path.
    gru.load_state_dict({k: v.detach().numpy() for k, v in tgru.state_dict().items()})
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(dtype)
    h0 = (rng.standard_normal((num_layers * D, B, H)) * 0.5).astype(dtype)
    lengths = np.array([7, 3, 1, 5]) if with_lengths else None
    y_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    wy = rng.standard_normal(y_shape).astype(dtype)
    wh = rng.standard_normal((num_layers * D, B, H)).astype(dtype)

    yt, ht, dxt, dh0t = _run_torch(tgru, x, h0, lengths, wy, wh, batch_first, dtype)
    # Inference and training forward both match.
    y_inf, h_inf = gru(x, h0, lengths)
    _close("y (inference)", y_inf, yt, dtype)
    _close("h_n (inference)", h_inf, ht, dtype)
    gru.zero_grad()
    y, h_n = gru.forward(x, h0, lengths, train=True)
    assert y.dtype == np.dtype(dtype) and h_n.dtype == np.dtype(dtype)
    dx, dh0 = gru.backward(wy, wh)
    _close("y", y, yt, dtype)
    _close("h_n", h_n, ht, dtype)
    _close("dx", dx, dxt, dtype)
    _close("dh0", dh0, dh0t, dtype)
    named = dict(tgru.named_parameters())
    assert set(gru.grads) == set(named)
    for name, param in named.items():
        _close(f"grad {name}", gru.grads[name], param.grad, dtype)


def test_backward_accumulates_until_zero_grad():
    rng = np.random.default_rng(0)
    gru = ng.GRU(3, 4, dtype="float64", device="cpu", seed=1)
    tgru = torch.nn.GRU(3, 4, batch_first=True).double()
    tgru.load_state_dict({k: torch.tensor(v) for k, v in gru.state_dict().items()})
    x = rng.standard_normal((2, 5, 3))
    dy = rng.standard_normal((2, 5, 4))
    for _ in range(2):  # two backward passes add up, as torch's .grad does
        gru.forward(x, train=True)
        gru.backward(dy)
        yt, _ = tgru(torch.tensor(x))
        (yt * torch.tensor(dy)).sum().backward()
    for name, param in tgru.named_parameters():
        _close(name, gru.grads[name], param.grad, "float64")
    gru.zero_grad()
    assert all(np.all(g == 0) for g in gru.grads.values())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_gru_cell_matches_torch(dtype, bias, batched):
    rng = np.random.default_rng(3)
    I, H, B = 5, 7, 3
    td = _torch_dtype(dtype)
    cell = ng.GRUCell(I, H, bias=bias, dtype=dtype, device="cpu")
    tcell = torch.nn.GRUCell(I, H, bias=bias).to(td)
    cell.load_state_dict({k: v.detach().numpy() for k, v in tcell.state_dict().items()})
    x = rng.standard_normal((B, I) if batched else (I,)).astype(dtype)
    h = rng.standard_normal((B, H) if batched else (H,)).astype(dtype)
    w = rng.standard_normal(h.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h, requires_grad=True)
    h1t = tcell(xt, ht)
    (h1t * torch.tensor(w)).sum().backward()
    _close("h1 (inference)", cell(x, h), h1t, dtype)
    cell.zero_grad()
    h1 = cell.forward(x, h, train=True)
    dx, dh = cell.backward(w)
    _close("h1", h1, h1t, dtype)
    _close("dx", dx, xt.grad, dtype)
    _close("dh", dh, ht.grad, dtype)
    for name, param in tcell.named_parameters():
        _close(f"grad {name}", cell.grads[name], param.grad, dtype)
    # No state given means zeros, as torch.
    _close("h1 (h=None)", cell(x), tcell(torch.tensor(x)), dtype)


def test_default_initialisation_matches_torch_distribution():
    """Every parameter from U(-1/sqrt(H), 1/sqrt(H)): same bound as torch's, seedable."""
    H = 50
    gru = ng.GRU(8, H, num_layers=2, bidirectional=True, seed=0)
    tgru = torch.nn.GRU(8, H, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(H)
    for name, t in tgru.state_dict().items():
        p = gru.params[name]
        assert p.shape == tuple(t.shape)
        assert np.abs(p).max() <= bound and np.abs(t.numpy()).max() <= bound
        assert np.abs(p).max() > 0.9 * bound  # the whole range is used
    again = ng.GRU(8, H, num_layers=2, bidirectional=True, seed=0)
    assert all(np.array_equal(again.params[k], v) for k, v in gru.params.items())
