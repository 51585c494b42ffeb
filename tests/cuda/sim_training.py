"""Rung 5 of the verification ladder, training: GRUModel, the optimizers (their kernels in
numgru/cuda/optim.py) and Trainer with device="cuda", against the same on device="numpy" (the
reference layers), under Numba's CUDA simulator (tiny sizes: the simulator runs every GPU
thread as a Python thread). Run by tests/cuda/test_cuda_sim.py (see sim_setup.py).
"""

import numpy as np
import pytest

import sim_setup  # noqa: F401  (first: the simulator's check and the small tunables)

import numgru as ng


def _trainer(device, seed=0):
    model = ng.GRUModel(2, 3, 2, dtype="float64", device=device, seed=seed)
    opt = ng.AdamW(model, lr=0.05, weight_decay=0.1)
    return ng.Trainer(model, opt, loss="cross_entropy", clip_norm=0.1, progress=False)


def test_model_trains_on_the_device_as_on_the_host(tmp_path):
    rng = np.random.default_rng(0)
    X, y, lengths = rng.standard_normal((4, 3, 2)), rng.integers(0, 2, 4), np.array([3, 1, 2, 3])
    host = _trainer("numpy")
    host_losses = [host.train_step(X, y, lengths=lengths) for _ in range(3)]
    dev = _trainer("cuda")
    assert type(dev.model.flat_params).__name__ != "ndarray"  # the parameters live on the device
    assert len(dev.optimizer.spans) == 1  # one span: one kernel per update
    dev_losses = [dev.train_step(X, y, lengths=lengths) for _ in range(2)]
    # Checkpoint on the device, resume into a fresh device model, one more step.
    dev.save(tmp_path / "dev.ckpt")
    resumed = _trainer("cuda", seed=5)
    ck = ng.load_checkpoint(tmp_path / "dev.ckpt")
    resumed.model.load_state_dict(ck.model_state())
    resumed.optimizer.load_state_dict(ck.optimizer_state())
    dev_losses.append(resumed.train_step(X, y, lengths=lengths))
    np.testing.assert_allclose(dev_losses, host_losses, rtol=1e-12)
    np.testing.assert_allclose(resumed.model.get_flat_params(), host.model.get_flat_params(),
                               rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(resumed.optimizer.state_dict()["buffers"]["exp_avg_sq"][0],
                               host.optimizer.state_dict()["buffers"]["exp_avg_sq"][0],
                               rtol=1e-10, atol=1e-15)
    out = resumed.model(X, lengths=lengths)
    assert isinstance(out, np.ndarray) and out.shape == (4, 2)


@pytest.mark.parametrize("make", [
    lambda params: ng.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
    lambda params: ng.Adam(params, lr=0.01, weight_decay=0.1),
])
def test_optimizer_kernels_match_the_host_loops(make):
    from numba import cuda
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(300)  # more than one block of 256 threads
    p_host, g_host = p0.copy(), np.zeros(300)
    p_dev, g_dev = cuda.to_device(p0), cuda.to_device(np.zeros(300))
    host, dev = make([("w", p_host, g_host)]), make([("w", p_dev, g_dev)])
    for _ in range(3):
        grad = rng.standard_normal(300)
        g_host[:] = grad
        g_dev.copy_to_device(grad)
        assert dev.clip_grad_norm(5.0) == pytest.approx(host.clip_grad_norm(5.0), rel=1e-13)
        host.step()
        dev.step()
    np.testing.assert_allclose(p_dev.copy_to_host(), p_host, rtol=1e-13, atol=1e-15)
    dev.zero_grad()
    assert not g_dev.copy_to_host().any()



@pytest.mark.parametrize("p_value,g_value", [(1.0, -3e38), (3.4e38, -3.4e38)])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_checked_update_kernels_refuse_what_would_overflow(kind, p_value, g_value):
    # float32 spans of 300 (two blocks of threads), one element (257) with a huge gradient. The
    # truth is numpy's float32 cast of the new value in float64: SGD's parameter p - lr·g,
    # Adam's second moment (1 - beta2)·g². The device kernel must answer as the cast says and,
    # where it says Inf, write nothing; the host loop likewise.
    from numba import cuda
    p = np.full(300, p_value, np.float32)
    g = np.full(300, 0.5, np.float32)
    g[257] = g_value
    with np.errstate(over="ignore"):
        new = float(p[257]) - float(g[257]) if kind == "sgd" else (1 - 0.999) * float(g[257]) ** 2
        finite = bool(np.isfinite(np.float32(new)))
    make = (lambda params: ng.SGD(params, lr=1.0)) if kind == "sgd" else \
        (lambda params: ng.Adam(params, lr=1e-3))
    host, dev = make([("w", p.copy(), g.copy())]), make([("w", cuda.to_device(p),
                                                             cuda.to_device(g))])
    assert host.next_step_is_finite() is finite
    assert dev.next_step_is_finite() is finite
    p_dev = dev.spans[0][1].copy_to_host()
    np.testing.assert_array_equal(p_dev, p)  # the check writes nothing
    np.testing.assert_array_equal(host.spans[0][1], p)
    assert host.step_count == dev.step_count == 0
    if finite:  # the update it judged finite gives the same values on both
        host.step()
        dev.step()
        np.testing.assert_array_equal(dev.spans[0][1].copy_to_host(), host.spans[0][1])


def test_a_device_model_and_its_trainer_copy_into_independent_device_objects():
    # copy.deepcopy of a model whose buffers live on the device: the copy's buffers are device
    # arrays of its own (a write into one leaves the other), its outputs the original's bits
    import copy
    model = ng.GRUModel(3, 4, 2, seed=0, device="cuda")
    opt = ng.Adam(model, lr=0.05)
    trainer = ng.Trainer(model, opt, progress=False)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    dup = copy.deepcopy(trainer)
    assert dup.model.device == "cuda" and dup.optimizer.spans[0][1] is not opt.spans[0][1]
    np.testing.assert_array_equal(dup.model(x), model(x))
    before = model.get_flat_params()
    dup.train_step(x, np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(model.get_flat_params(), before)
    assert not np.array_equal(dup.model.get_flat_params(), before)
