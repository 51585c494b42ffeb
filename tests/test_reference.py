"""Rung 1 of the verification ladder: the NumPy reference against central finite differences in
float64, for every parameter, x and h0, both variants, with lengths, multi-layer and bidirectional.

The loss is L = Σ y ⊙ Wy + Σ h_n ⊙ Wh with fixed random Wy, Wh, so dL/dy = Wy and dL/dh_n = Wh.
Central differences with step 1e-6 have truncation error O(eps²·f''') ≈ 1e-12 and rounding error
O(1e-16/eps) ≈ 1e-10 relative: agreement to 1e-7 (absolute + relative) leaves two orders of margin.
"""

import numpy as np
import pytest

import numgru as ng
from numgru import reference

from helpers import central_differences, random_layer_args

EPS = 1e-6
TOL = 1e-7


def _loss(y, h_n, wy, wh):
    return float((y * wy).sum() + (h_n * wh).sum())


def _fd_check(f, value, analytic):
    """Compare analytic with central differences of f() over every entry of `value` (in place)."""
    numeric = central_differences(f, value, EPS)
    np.testing.assert_allclose(analytic, numeric, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_single_layer_backward_matches_finite_differences(rng, reset_after, reverse):
    T, B, I, H = 5, 3, 4, 3
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = \
        random_layer_args(rng, T, B, I, H, lengths=[5, 2, 4])
    wy = rng.standard_normal((T, B, H))
    wh = rng.standard_normal((B, H))

    def f():
        y, h_n, _ = reference.forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after)
        return _loss(y, h_n, wy, wh)

    _, _, cache = reference.forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after,
                                    train=True)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = reference.backward(cache, wy, wh)
    # Outputs at invalid steps are exactly zero, whatever the weights.
    y, _, _ = reference.forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, reset_after)
    assert np.all(y[2:, 1] == 0) and np.all(y[4:, 2] == 0)
    for value, analytic in [(x, dx), (h0, dh0), (w_ih, dw_ih), (w_hh, dw_hh), (b_ih, db_ih),
                            (b_hh, db_hh)]:
        _fd_check(f, value, analytic)


@pytest.mark.parametrize("reset_after", [True, False])
def test_stacked_bidirectional_layer_matches_finite_differences(rng, reset_after):
    """The whole GRU layer on the NumPy backend: 2 layers, bidirectional, lengths, h0."""
    B, T, I, H = 3, 4, 3, 3
    gru = ng.GRU(I, H, num_layers=2, bidirectional=True, reset_after=reset_after,
                 dtype="float64", device="numpy", seed=3)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((4, B, H)) * 0.5
    lengths = np.array([4, 1, 3])
    wy = rng.standard_normal((B, T, 2 * H))
    wh = rng.standard_normal((4, B, H))

    def f():
        y, h_n = gru(x, h0, lengths)
        return _loss(y, h_n, wy, wh)

    gru.zero_grad()
    gru.forward(x, h0, lengths, train=True)
    dx, dh0 = gru.backward(wy, wh)
    _fd_check(f, x, dx)
    _fd_check(f, h0, dh0)
    for name, param in gru.params.items():
        _fd_check(f, param, gru.grads[name].copy())


def test_dropout_between_layers_matches_finite_differences(rng):
    """With dropout, the gradient is that of the masked network: re-seeding the layer's generator
    before each forward replays the same masks, so finite differences see the same function."""
    B, T, I, H = 2, 3, 3, 4
    gru = ng.GRU(I, H, num_layers=3, dropout=0.4, dtype="float64", device="numpy", seed=5)
    x = rng.standard_normal((B, T, I))
    wy = rng.standard_normal((B, T, H))
    wh = np.zeros((3, B, H))

    def f():
        gru.dropout_rng = np.random.default_rng(99)
        y, h_n = gru.forward(x, train=True)
        return _loss(y, h_n, wy, wh)

    gru.zero_grad()
    f()
    dx, _ = gru.backward(wy, wh)
    _fd_check(f, x, dx)
    for name in ["weight_ih_l0", "weight_hh_l1", "bias_hh_l2"]:
        _fd_check(f, gru.params[name], gru.grads[name].copy())
    # Dropout acts in training only, and does act there.
    y_train, _ = gru.forward(x, train=True)
    y_eval, _ = gru(x)
    y_eval2, _ = gru(x)
    assert not np.allclose(y_train, y_eval)
    assert np.array_equal(y_eval, y_eval2)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_finite_differences(rng, bias):
    cell = ng.GRUCell(3, 4, bias=bias, dtype="float64", device="numpy", seed=2)
    x = rng.standard_normal((2, 3))
    h = rng.standard_normal((2, 4))
    w = rng.standard_normal((2, 4))

    def f():
        return float((cell(x, h) * w).sum())

    cell.zero_grad()
    cell.forward(x, h, train=True)
    dx, dh = cell.backward(w)
    _fd_check(f, x, dx)
    _fd_check(f, h, dh)
    for name, param in cell.params.items():
        _fd_check(f, param, cell.grads[name].copy())
