"""Optimizers, clipping and learning-rate schedules step for step against torch.optim (float64),
and the flat-span layout they work on."""

import numpy as np
import pytest

import numgru as ng
from numgru.optim import _spans

torch = pytest.importorskip("torch")


def _run_both(make_ours, make_torch, steps=50, seed=0, dtype=np.float64):
    """Same start, same gradient sequence for numgru's optimizer and torch's; returns the
    parameter trajectories (steps, P) of both."""
    rng = np.random.default_rng(seed)
    model = ng.GRUModel(3, 4, 2, dtype=np.dtype(dtype).name, seed=seed)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for _, p, _ in model.parameters()]
    opt, topt = make_ours(model), make_torch(tparams)
    ours, theirs = [], []
    for _ in range(steps):
        for (_, _, g), tp in zip(model.parameters(), tparams):
            grad = rng.standard_normal(g.shape).astype(dtype)
            g[...] = grad
            tp.grad = torch.from_numpy(grad.copy())
        opt.step()
        topt.step()
        ours.append(model.flat_params.copy())
        theirs.append(torch.cat([p.detach().reshape(-1) for p in tparams]).numpy().copy())
    return np.array(ours), np.array(theirs)


CASES = {
    "adam": (lambda m: ng.Adam(m.parameters(), lr=1e-2),
             lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adam_l2": (lambda m: ng.Adam(m.parameters(), lr=3e-3, betas=(0.8, 0.99), eps=1e-6,
                                  weight_decay=0.1),
                lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6,
                                           weight_decay=0.1)),
    "adamw": (lambda m: ng.AdamW(m.parameters(), lr=1e-2, weight_decay=0.05),
              lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05)),
    "sgd_momentum": (lambda m: ng.SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-3),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "sgd_nesterov": (lambda m: ng.SGD(m, lr=0.05, momentum=0.8, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "sgd_dampening": (lambda m: ng.SGD(m, lr=0.1, momentum=0.5, dampening=0.3),
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_torch_for_50_steps(case):
    ours, theirs = _run_both(*CASES[case])
    # Both compute the same float64 expressions; only rounding order may differ (~1e-16 each step).
    scale = np.abs(theirs - theirs[0]).max()
    assert scale > 1e-2  # the parameters really moved
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10 * scale)


def test_float32_follows_float64():
    ours32, _ = _run_both(*CASES["adam"], steps=10, dtype=np.float32)
    ours64, _ = _run_both(*CASES["adam"], steps=10, dtype=np.float64)
    np.testing.assert_allclose(ours32, ours64, rtol=1e-4, atol=1e-5)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(1)
    model = ng.GRUModel(3, 4, 2, dtype="float64", seed=0)
    grads = [rng.standard_normal(g.shape) for _, _, g in model.parameters()]
    tparams = []
    for (_, _, g), grad in zip(model.parameters(), grads):
        g[...] = grad
        tp = torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
        tp.grad = torch.from_numpy(grad.copy())
        tparams.append(tp)
    norm = ng.clip_grad_norm(model.parameters(), 1.5)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, 1.5)
    assert norm == pytest.approx(tnorm.item(), rel=1e-13)
    for (_, _, g), tp in zip(model.parameters(), tparams):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-13)
    # Below the limit nothing changes.
    before = model.flat_grads.copy()
    opt = ng.SGD(model)
    assert opt.clip_grad_norm(1e6) == pytest.approx(np.linalg.norm(before))
    assert np.array_equal(model.flat_grads, before)


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_schedules_match_torch(kind):
    model = ng.GRUModel(2, 2, 1, seed=0)
    opt = ng.SGD(model, lr=0.5)
    tp = [torch.nn.Parameter(torch.zeros(1))]
    topt = torch.optim.SGD(tp, lr=0.5)
    if kind == "step":
        sched, tsched = ng.StepLR(opt, 3, 0.5), torch.optim.lr_scheduler.StepLR(topt, 3, 0.5)
    else:
        sched = ng.CosineLR(opt, 10, eta_min=0.01)
        tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 10, eta_min=0.01)
    ours, theirs = [opt.lr], [topt.param_groups[0]["lr"]]
    for _ in range(10):
        topt.step()
        sched.step()
        tsched.step()
        ours.append(opt.lr)
        theirs.append(topt.param_groups[0]["lr"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert len(set(np.round(ours, 12))) > 3


def test_model_parameters_form_one_span_and_loose_arrays_several():
    model = ng.GRUModel(3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    spans = _spans(model.parameters())
    assert len(spans) == 1
    names, p, g = spans[0]
    assert p.size == model.flat_params.size and np.shares_memory(p, model.flat_params)
    assert np.shares_memory(g, model.flat_grads) and len(names) == len(model.parameters())
    opt = ng.Adam(model)
    assert [b.size for b in opt.state["exp_avg"]] == [model.flat_params.size]
    # Separate arrays: one span each, and updates still land in the caller's arrays.
    a, b = np.ones(3), np.ones(2)
    ga, gb = np.ones(3), np.ones(2)
    opt2 = ng.SGD([("a", a, ga), ("b", b, gb)], lr=0.5)
    assert len(opt2.spans) == 2
    opt2.step()
    assert np.all(a == 0.5) and np.all(b == 0.5)


def test_optimizer_state_round_trip_continues_exactly():
    ours, _ = _run_both(*CASES["adamw"], steps=6)
    # Same run split in two with a state_dict hand-over in the middle.
    rng = np.random.default_rng(0)
    model = ng.GRUModel(3, 4, 2, dtype="float64", seed=0)
    opt = ng.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    trajectory = []
    for step in range(6):
        for _, _, g in model.parameters():
            g[...] = rng.standard_normal(g.shape)
        if step == 3:
            saved = opt.state_dict()
            opt = ng.AdamW(model.parameters(), lr=1.0)
            opt.load_state_dict(saved)
        opt.step()
        trajectory.append(model.flat_params.copy())
    assert np.array_equal(np.array(trajectory), ours)


def test_bad_hyperparameters_are_named():
    model = ng.GRUModel(2, 2, 1, seed=0)
    with pytest.raises(ValueError, match="lr"):
        ng.Adam(model, lr=-1)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        ng.Adam(model, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas"):
        ng.Adam(model, betas=0.9)
    with pytest.raises(TypeError, match="momentum"):
        ng.SGD(model, momentum="a lot")
    with pytest.raises(ValueError, match="nesterov"):
        ng.SGD(model, nesterov=True)
    with pytest.raises(ValueError, match="at least one"):
        ng.Adam([])
    with pytest.raises(ValueError, match="T_max"):
        ng.CosineLR(ng.Adam(model), 0)
    with pytest.raises(ValueError, match="saved by SGD"):
        ng.Adam(model).load_state_dict(ng.SGD(model).state_dict())


def test_a_loaded_state_meets_the_constructors_rules():
    """A state's hyperparameters are checked by the constructor's own rules, the rules that join
    several of them included (Nesterov momentum needs momentum > 0)."""
    model = ng.GRUModel(2, 3, 1, seed=0)
    sgd = ng.SGD(model, lr=0.1, momentum=0.9, nesterov=True)
    state = sgd.state_dict()
    state["hyperparameters"]["momentum"] = 0.0
    with pytest.raises(ValueError, match="state: nesterov: needs momentum > 0"):
        ng.SGD(model, lr=0.1, momentum=0.9, nesterov=True).load_state_dict(state)
    state["hyperparameters"].update(momentum=0.5, nesterov=1)
    with pytest.raises(TypeError, match="state: nesterov: expected true or false"):
        ng.SGD(model, lr=0.1).load_state_dict(state)
    state["hyperparameters"]["nesterov"] = True
    loaded = ng.SGD(model, lr=0.1)
    loaded.load_state_dict(state)
    assert (loaded.momentum, loaded.nesterov) == (0.5, True)


def test_adam_with_eps_zero_divides_as_torch_does():
    # eps=0 and a gradient of exactly zero: m / sqrt(v) is 0 / 0, NaN in torch; numgru's update
    # gives the same NaN (no ZeroDivisionError), and the checked step refuses to store it
    p0 = np.array([1.0, 2.0, 3.0], np.float32)
    grad = np.array([0.5, 0.0, -0.25], np.float32)
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = torch.optim.Adam([tp], lr=0.1, eps=0.0)
    tp.grad = torch.tensor(grad)
    topt.step()
    want = tp.detach().numpy()
    assert np.isnan(want[1]) and np.isfinite(want[[0, 2]]).all()
    p, g = p0.copy(), grad.copy()
    opt = ng.Adam([("w", p, g)], lr=0.1, eps=0.0)
    assert opt.next_step_is_finite() is False
    np.testing.assert_array_equal(p, p0)
    opt.step()
    np.testing.assert_array_equal(np.isnan(p), np.isnan(want))
    np.testing.assert_allclose(p[[0, 2]], want[[0, 2]], rtol=1e-6)
