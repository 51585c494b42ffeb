"""GRUModel and Linear against PyTorch (the seed's model, packed sequences, per-step head) and
against central finite differences; parameter layout and load_state_dict checks."""

import numpy as np
import pytest

import numgru as ng

from helpers import central_differences

torch = pytest.importorskip("torch")
from _seed_torch import SeedGRUModel, numpy_state  # noqa: E402


def _lengths(rng, B, T):
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    return lengths


def test_linear_matches_torch_forward_and_backward():
    rng = np.random.default_rng(0)
    lin = ng.Linear(5, 3, dtype="float64", seed=1)
    ref = torch.nn.Linear(5, 3).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})
    x = rng.standard_normal((4, 2, 5))
    dout = rng.standard_normal((4, 2, 3))
    out = lin.forward(x, train=True)
    dx = lin.backward(dout)
    xt = torch.from_numpy(x).requires_grad_()
    ot = ref(xt)
    ot.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lin.grads["weight"], ref.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lin.grads["bias"], ref.bias.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_linear_init_bounds_follow_pytorch():
    lin = ng.Linear(400, 300, seed=0)
    bound = 1 / np.sqrt(400)
    w = lin.params["weight"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(float(w.std()) - bound / np.sqrt(3)) < 0.01 * bound  # U(-a, a): std a/sqrt(3)


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-12)])
def test_seed_model_weights_give_the_same_outputs(dtype, rtol):
    """The seed's PyTorch GRUModel(10, 20, 1) -> numpy state_dict -> ng.GRUModel: same output."""
    torch.manual_seed(0)
    ref = SeedGRUModel(10, 20, 1)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    ref = ref.to(tdtype)
    model = ng.GRUModel(10, 20, 1, dtype=dtype, seed=3)
    state = numpy_state(ref)
    assert sorted(state) == sorted(model.state_dict())
    for k, v in model.state_dict().items():
        assert v.shape == state[k].shape, k
    model.load_state_dict(state)
    x = np.random.default_rng(1).standard_normal((5, 10, 10)).astype(dtype)
    expected = ref(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model(x), expected, rtol=rtol, atol=rtol)


def test_state_dict_round_trip_into_torch():
    model = ng.GRUModel(4, 6, 3, num_layers=2, bidirectional=True, dtype="float64", seed=7)
    ref = SeedGRUModel(4, 6, 3, num_layers=2, bidirectional=True).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((3, 5, 4))
    np.testing.assert_allclose(model(x), ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("num_layers,bidirectional,head",
                         [(1, False, "last"), (2, True, "last"), (1, False, "sequence"),
                          (2, True, "sequence")])
def test_lengths_match_packed_sequences(num_layers, bidirectional, head):
    rng = np.random.default_rng(num_layers + 2 * bidirectional)
    B, T, I, H, O = 5, 7, 3, 4, 2
    ref = SeedGRUModel(I, H, O, num_layers, bidirectional, head).double()
    model = ng.GRUModel(I, H, O, num_layers=num_layers, bidirectional=bidirectional,
                        dtype="float64", head=head)
    model.load_state_dict(numpy_state(ref))
    x = rng.standard_normal((B, T, I))
    lengths = _lengths(rng, B, T)
    x[np.arange(T)[None, :] >= lengths[:, None]] = 123.0  # padding must not matter
    out = model(x, lengths=lengths)
    xt = torch.from_numpy(x).requires_grad_()
    expected = ref(xt, lengths)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-11, atol=1e-12)
    # Gradients through the head and BPTT, for a random upstream gradient.
    dout = rng.standard_normal(out.shape)
    model.zero_grad()
    model.forward(x, lengths=lengths, train=True)
    dx, _ = model.backward(dout)
    expected.backward(torch.from_numpy(dout))
    grads = {k: p.grad.numpy() for k, p in ref.named_parameters()}
    for name, g in model.grads.items():
        np.testing.assert_allclose(g, grads[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_model_backward_matches_finite_differences():
    """dL/dθ and dL/dx for L = sum(w ⊙ out), by central differences in float64."""
    rng = np.random.default_rng(5)
    model = ng.GRUModel(3, 4, 2, num_layers=2, dtype="float64", seed=11)
    x = rng.standard_normal((3, 5, 3))
    lengths = np.array([5, 2, 4])
    w = rng.standard_normal((3, 2))

    def loss():
        return float(np.sum(w * model(x, lengths=lengths)))

    model.zero_grad()
    model.forward(x, lengths=lengths, train=True)
    dx, _ = model.backward(w)
    analytic = model.flat_grads.copy()
    np.testing.assert_allclose(analytic, central_differences(loss, model.flat_params),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, central_differences(loss, x), rtol=1e-6, atol=1e-8)
    assert np.all(dx[2, 4:] == 0) and np.all(dx[1, 2:] == 0)  # padding gets no gradient


def test_parameters_live_in_one_buffer():
    model = ng.GRUModel(3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    total = sum(p.size for _, p, _ in model.parameters())
    assert model.flat_params.size == total and model.flat_grads.size == total
    for name, p, g in model.parameters():
        assert np.shares_memory(p, model.flat_params), name
        assert np.shares_memory(g, model.flat_grads), name
    # The layers' own views are the model's: a write through the GRU shows in the model buffer.
    model.gru.params["weight_hh_l1_reverse"][0, 0] = 42.0
    assert model.state_dict()["gru.weight_hh_l1_reverse"][0, 0] == 42.0
    assert 42.0 in model.flat_params
    model.flat_grads[:] = 1
    model.zero_grad()
    assert not model.gru.grads["weight_ih_l0"].any() and not model.fc.grads["bias"].any()


def test_same_seed_same_weights():
    a = ng.GRUModel(3, 5, 2, seed=4).flat_params
    b = ng.GRUModel(3, 5, 2, seed=4).flat_params
    c = ng.GRUModel(3, 5, 2, seed=5).flat_params
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_load_state_dict_errors_and_all_or_nothing():
    model = ng.GRUModel(3, 4, 2, seed=0)
    before = model.flat_params.copy()
    sd = model.state_dict()
    with pytest.raises(ValueError, match="missing keys.*fc.bias"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "fc.bias"})
    bad = dict(sd)
    bad["gru.weight_hh_l0"] = bad["gru.weight_hh_l0"] + 1
    bad["fc.weight"] = np.zeros((3, 4), np.float32)  # wrong shape: (2, 4) expected
    with pytest.raises(ValueError, match=r"fc.weight.*expected shape \(2, 4\)"):
        model.load_state_dict(bad)
    assert np.array_equal(model.flat_params, before)  # the GRU part was not half-loaded
    with pytest.raises(TypeError, match="state_dict"):
        model.load_state_dict([1, 2])


def test_bad_inputs_are_named():
    model = ng.GRUModel(3, 4, 2, seed=0)
    with pytest.raises(ValueError, match="x: expected a 3-D"):
        model(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="feature size"):
        model(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="lengths"):
        model(np.zeros((2, 3, 3)), lengths=[4, 1])
    with pytest.raises(ValueError, match="NaN"):
        model(np.full((2, 3, 3), np.nan))
    with pytest.raises(ValueError, match="head"):
        ng.GRUModel(3, 4, 2, head="mean")
    with pytest.raises(ValueError, match="output_size"):
        ng.GRUModel(3, 4, 0)
    with pytest.raises(RuntimeError, match="forward"):
        ng.GRUModel(3, 4, 2).backward(np.zeros((2, 2)))


def test_streaming_state_continues_a_sequence():
    """Two halves with the state carried over give the same per-step outputs as the whole."""
    model = ng.GRUModel(3, 4, 2, head="sequence", dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    whole = model(x)
    first, h = model.forward(x[:, :4], return_state=True)
    second, _ = model.forward(x[:, 4:], h0=h, return_state=True)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-13)


def test_config_round_trip():
    model = ng.GRUModel(3, 4, 2, num_layers=2, bidirectional=True, reset_after=False,
                        dtype="float64", dropout=0.25, head="sequence", seed=0)
    twin = ng.GRUModel.from_config(model.config())
    assert twin.config() == model.config()
    with pytest.raises(ValueError, match="unknown keys"):
        ng.GRUModel.from_config({**model.config(), "colour": "red"})
