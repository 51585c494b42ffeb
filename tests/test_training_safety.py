"""Issue 20: a Trainer refuses an optimizer made for another model; divergence anywhere in a step
(loss gradient, backward, the update) raises NonFiniteLossError with the weights as they were; layers,
models and trainers copy and pickle into independent objects that give the same bits."""

import copy
import pickle

import numpy as np
import pytest

import numgru as ng
from numgru.cli import main


def _regression(N=16, T=5, F=3, O=2, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, T, F)), scale * rng.standard_normal((N, O))


# -- 1. the optimizer must be bound to the trainer's model --

@pytest.mark.parametrize("other", [lambda: ng.GRUModel(3, 4, 2, seed=1),   # same size, other model
                                   lambda: ng.GRUModel(3, 8, 2, seed=0)])  # another size
def test_trainer_refuses_another_models_optimizer(other):
    old = ng.GRUModel(3, 4, 2, seed=0)
    opt = ng.Adam(old, lr=0.05)
    with pytest.raises(ValueError, match=r"^optimizer: .*made for another model"):
        ng.Trainer(other(), opt, loss="cross_entropy")


def test_trainer_accepts_its_models_optimizer_and_trains_it():
    model = ng.GRUModel(3, 4, 2, seed=0)
    before = model.get_flat_params()
    X, y = _regression()
    ng.Trainer(model, ng.Adam(model, lr=0.05), progress=False).fit(X, y, epochs=1, batch_size=4)
    assert not np.array_equal(model.get_flat_params(), before)
    # an optimizer over part of this model (the head alone) is this model's too
    ng.Trainer(model, ng.SGD(model.fc, lr=0.1), progress=False)


# -- 2. divergence stops the step before the parameters change --

def _fit_until_error(model, optimizer, X, y, epochs=5):
    """fit; returns (error, the parameters after each update made, the epochs finished, the
    trainer). The updates are recorded by wrapping the optimizer's step: whatever step fails,
    the last record is the state the model must be left in."""
    updates, epochs_done = [model.get_flat_params()], []
    step = optimizer.step

    def recording_step():
        step()
        updates.append(model.get_flat_params())

    optimizer.step = recording_step
    tr = ng.Trainer(model, optimizer, progress=False)
    with pytest.raises(ng.NonFiniteLossError) as info:
        tr.fit(X, y, epochs=epochs, batch_size=4, shuffle=False,
               callbacks=[lambda t, e, logs: epochs_done.append(e)])
    return info.value, updates, epochs_done, tr


@pytest.mark.parametrize("chunk_steps", [None, 2])
def test_overflow_inside_backward_is_a_non_finite_loss_error(chunk_steps):
    # A head of weights 1e37: its output (|out| <= 4e37) and the loss gradient are finite in
    # float32, the gradient it hands the GRU, dout @ W, is not (numpy says so below).
    X, y = _regression(N=4, scale=0)
    model = ng.GRUModel(3, 4, 2, seed=0)
    state = model.state_dict()
    state["fc.weight"] = np.full((2, 4), 1e37, np.float32)
    model.load_state_dict(state)
    with np.errstate(all="ignore"):
        out = model(X)
        head_gradient = (2 * out / out.size) @ state["fc.weight"]
        assert np.isfinite(out).all() and not np.isfinite(head_gradient).all()
        before = model.get_flat_params()
        tr = ng.Trainer(model, ng.SGD(model, lr=0.1), progress=False, chunk_steps=chunk_steps)
        with pytest.raises(ng.NonFiniteLossError) as info:
            tr.fit(X, y, epochs=2, batch_size=4)
    err = str(info.value)
    assert "flowing from the output layer into the GRU" in err and "at step 1" in err, err
    assert not err.startswith(("dy", "dh_n", "x:"))
    np.testing.assert_array_equal(model.get_flat_params(), before)
    assert tr.global_step == 0 and tr.optimizer.step_count == 0


def test_divergence_in_a_learning_rate_sweep_leaves_the_last_update():
    # the case: SGD lr=1e4, momentum 0.9, targets of scale 100; it diverges within a few
    # steps, wherever (gradient norm, backward or the update): the weights stay those of the
    # last update made, and the finished epochs stay in history
    X, y = _regression(scale=100)
    model = ng.GRUModel(3, 4, 2, seed=0)
    with np.errstate(all="ignore"):
        err, updates, epochs_done, tr = _fit_until_error(
            model, ng.SGD(model, lr=1e4, momentum=0.9), X, y)
    assert not str(err).startswith(("dy", "x:")) and f"at step {err.step}" in str(err)
    assert err.step == tr.global_step + 1 == len(updates)
    # the weights are those after the last update made, wherever in an epoch it failed
    np.testing.assert_array_equal(model.get_flat_params(), updates[-1])
    assert len(tr.history.get("loss", [])) == len(epochs_done)  # finished epochs stay in history


def test_update_that_overflows_is_undone():
    X, y = _regression(scale=1e10)
    model = ng.GRUModel(3, 4, 2, seed=0)
    before = model.get_flat_params()
    opt = ng.SGD(model, lr=1e30)
    with np.errstate(all="ignore"):
        err, updates, _, tr = _fit_until_error(model, opt, X, y)
    assert err.step == 1 and "update at step 1" in str(err) and "it was not made" in str(err)
    assert len(updates) == 1  # none made
    assert np.isfinite(model.flat_params).all()
    np.testing.assert_array_equal(model.get_flat_params(), before)
    assert opt.step_count == 0 and tr.global_step == 0


def test_update_that_overflows_restores_the_optimizer_state():
    # the momentum after one good step, then a step that overflows: both kept as they were
    X, y = _regression()
    model = ng.GRUModel(3, 4, 2, seed=0)
    opt = ng.SGD(model, lr=0.01, momentum=0.9)
    tr = ng.Trainer(model, opt, progress=False)
    tr.train_step(X[:4], y[:4])
    params, momentum = model.get_flat_params(), opt.state["momentum_buffer"][0].copy()
    opt.lr = 1e38
    with np.errstate(all="ignore"), pytest.raises(ng.NonFiniteLossError, match="update at step 2"):
        tr.train_step(X[:4], 1e10 * y[:4])
    np.testing.assert_array_equal(model.get_flat_params(), params)
    np.testing.assert_array_equal(opt.state["momentum_buffer"][0], momentum)
    assert opt.step_count == 1 and tr.global_step == 1


def test_cli_reports_an_overflow_in_backward_as_training_stopped(tmp_path, capsys):
    # before issue 20: "numgru train: error: dy: contains NaN or Inf ..." and status 2
    X, y = _regression(N=20, O=1, scale=100)
    np.savez(tmp_path / "r.npz", X=X, y=y[:, 0])
    with np.errstate(all="ignore"):
        status = main(["train", str(tmp_path / "r.npz"), "--optimizer", "sgd", "--momentum",
                       "0.9", "--lr", "1e30", "--epochs", "3", "--no-progress", "--hidden", "4",
                       "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 3, err
    assert "numgru train: training stopped:" in err and "dy:" not in err
    assert "the parameters were not updated" in err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checked_step_says_what_storing_the_update_would_give(dtype):
    # SGD without momentum: p <- p + (-lr)·g computed in float64, then stored as dtype. The
    # truth is numpy's own cast of that float64 value: finite or Inf.
    big = float(np.finfo(dtype).max)
    half_ulp = 2.0 ** (np.finfo(dtype).maxexp - np.finfo(dtype).nmant - 2)
    cases = [0.0, half_ulp / 2, half_ulp, 4 * half_ulp] if dtype == np.float32 else \
        [0.0, big * 2.0 ** -60, big]
    for delta in cases:
        p = np.array([big, 1.0], dtype)
        g = np.array([-delta, 0.5], dtype)  # -lr·g = +delta with lr = 1
        opt = ng.SGD([("w", p, g)], lr=1.0)
        with np.errstate(over="ignore"):
            stored = np.array([big + float(np.asarray(delta, dtype)), 1.0 - 0.5]).astype(dtype)
        finite = bool(np.isfinite(stored).all())
        assert opt.next_step_is_finite() is finite, delta
        np.testing.assert_array_equal(p, [big, 1.0])  # the check writes nothing
        np.testing.assert_array_equal(opt.state["momentum_buffer"][0], [0.0, 0.0])
        assert opt.step_count == 0
        with np.errstate(over="ignore"):
            opt.step()  # the update itself, as before: made whatever it gives
        np.testing.assert_array_equal(p, stored)


def test_checked_step_covers_the_optimizer_state():
    # Adam: g² overflows float32 in exp_avg_sq while the parameter's update stays finite
    # (m / sqrt(v) -> 0): the state alone would turn the next steps into NaN.
    p = np.array([1.0], np.float32)
    g = np.array([3e38], np.float32)
    opt = ng.Adam([("w", p, g)], lr=1e-3)
    with np.errstate(over="ignore"):
        v = np.float32((1 - 0.999) * float(g[0]) ** 2)
    assert not np.isfinite(v)  # the truth: float32 cannot hold (1 - beta2)·g²
    assert opt.next_step_is_finite() is False
    np.testing.assert_array_equal(p, [1.0])
    assert opt.step_count == 0 and not opt.state["exp_avg_sq"][0].any()


# -- 3. copies and pickles: independent objects that give the same bits --

def _roundtrips():
    return [("deepcopy", copy.deepcopy), ("pickle", lambda o: pickle.loads(pickle.dumps(o)))]


def _outputs(obj, x):
    if isinstance(obj, ng.GRUCell):
        return [obj(x[:, 0])]
    out = obj(x)
    return list(out) if isinstance(out, tuple) else [out]


LAYERS = {
    "GRU": lambda: ng.GRU(3, 4, num_layers=2, bidirectional=True, seed=0),
    "GRU_float64_reset_before": lambda: ng.GRU(3, 5, reset_after=False, dtype="float64", seed=1),
    "GRUCell": lambda: ng.GRUCell(3, 4, seed=0),
    "GRUModel": lambda: ng.GRUModel(3, 4, 2, num_layers=2, seed=0),
    "GRUModel_sequence": lambda: ng.GRUModel(3, 4, 2, head="sequence", seed=0),
}


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_and_models_copy_into_independent_equal_objects(name, how, roundtrip):
    obj = LAYERS[name]()
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    before = obj.flat_params.copy()
    dup = roundtrip(obj)
    assert type(dup) is type(obj) and repr(dup) == repr(obj)
    for a, b in zip(_outputs(obj, x), _outputs(dup, x)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # bit for bit
    assert not np.shares_memory(dup.flat_params, obj.flat_params)
    # the copy's named parameters are views into its own flat buffer, as the original's
    first, p, g = dup.parameters()[0]
    p[...] = 0.5
    g[...] = 1.0
    assert np.all(dup.flat_params[:p.size] == 0.5) and np.all(dup.flat_grads[:g.size] == 1.0)
    np.testing.assert_array_equal(obj.flat_params, before)  # the original is untouched
    assert not np.any(obj.flat_grads)


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
def test_trainer_copy_trains_its_own_model_as_the_original_would(how, roundtrip):
    X, y = _regression()
    model = ng.GRUModel(3, 4, 2, seed=0)
    opt = ng.Adam(model, lr=0.05)
    tr = ng.Trainer(model, opt, progress=False, scheduler=ng.StepLR(opt, 1, gamma=0.5))
    tr.fit(X, y, epochs=1, batch_size=4, seed=1)
    at_copy = model.get_flat_params()
    dup = roundtrip(tr)
    assert dup.optimizer is not opt and dup.scheduler.optimizer is dup.optimizer
    dup.fit(X, y, epochs=2, batch_size=4, seed=2)
    # training the copy left the original where it was
    np.testing.assert_array_equal(model.get_flat_params(), at_copy)
    assert opt.step_count == 4
    # the copy's optimizer updated the copy's model; the original, trained the same, agrees bitwise
    assert not np.array_equal(dup.model.get_flat_params(), at_copy)
    tr.fit(X, y, epochs=2, batch_size=4, seed=2)
    np.testing.assert_array_equal(dup.model.get_flat_params(), model.get_flat_params())
    assert dup.history["loss"] == tr.history["loss"] and dup.history["lr"] == tr.history["lr"]
    for name in opt.state:
        np.testing.assert_array_equal(dup.optimizer.state[name][0], opt.state[name][0])


@pytest.mark.parametrize("how,roundtrip", _roundtrips())
def test_optimizer_copied_alone_brings_a_copy_of_its_model(how, roundtrip):
    model = ng.GRUModel(3, 4, 2, seed=0)
    opt = roundtrip(ng.SGD(model, lr=0.1, momentum=0.9))
    ng.Trainer(opt._source, opt)  # bound to its model's copy
    with pytest.raises(ValueError, match="made for another model"):
        ng.Trainer(model, opt)
