"""Resource limits: a training forward whose cache would not fit in memory is refused before it
allocates, saying what it needs and what would fit; 100 000-step sequences run in inference and,
in chunks of time, in training (exact gradients, the memory of one chunk)."""

import tracemalloc

import numpy as np
import pytest

import numgru as ng
from numgru import _memory, reference
from numgru import CacheTooLargeError

from helpers import assert_close, central_differences


def _absurd(B, T, I):
    """x of shape (B, T, I) without its memory: one value, broadcast."""
    return np.broadcast_to(np.zeros((1, 1, 1), np.float32), (B, T, I))


def test_a_cache_beyond_memory_is_refused_before_allocating():
    gru = ng.GRU(1, 1000, num_layers=2, dtype="float64", device="cpu", seed=0)
    x = _absurd(64, 10 ** 7, 1)
    need = gru.training_bytes(10 ** 7, 64)
    free = _memory.available_bytes()
    assert free is not None and need > 10 * free
    tracemalloc.start()
    try:
        with pytest.raises(CacheTooLargeError) as info:
            gru.forward(x, train=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # nothing of the cache (nor of x) was allocated
    message = str(info.value)
    assert f"({need} bytes)" in message and "of memory available" in message
    for option in ("Trainer(chunk_steps=...)", "float32 instead of float64", "a smaller batch"):
        assert option in message
    assert isinstance(info.value, MemoryError)
    # The same through the model and the trainer.
    model = ng.GRUModel(1, 1000, 1, num_layers=2, dtype="float64", device="cpu", seed=0)
    trainer = ng.Trainer(model, ng.SGD(model, lr=0.1), progress=False)
    with pytest.raises(CacheTooLargeError, match="GRUModel.forward"):
        trainer.train_step(x, np.zeros((64, 1)))
    # Inference keeps no cache: nothing is refused for it here (only its outputs are made).
    assert gru(np.zeros((1, 3, 1)))[0].shape == (1, 3, 1000)


def test_the_estimate_is_what_a_training_forward_allocates():
    """training_bytes against the memory a training forward actually holds (tracemalloc
    sees numpy's allocations), so that the refusal is neither far too early nor too late."""
    for device in ("cpu", "numpy"):
        gru = ng.GRU(7, 64, num_layers=2, dropout=0.1, dtype="float32", device=device, seed=0)
        x = np.random.default_rng(0).standard_normal((16, 300, 7)).astype(np.float32)
        tracemalloc.start()
        try:
            y, h = gru.forward(x, train=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        estimate = gru.training_bytes(300, 16)
        assert 0.7 * peak <= estimate <= 1.5 * peak, (device, estimate, peak)


def test_a_memory_limit_refuses_whole_and_chunked_training_fits(monkeypatch):
    model = ng.GRUModel(4, 64, 1, head="sequence", dtype="float32", device="cpu", seed=0)
    need = model.gru.training_bytes(2000, 16)  # ~25 MB
    monkeypatch.setenv("NUMGRU_MEMORY_LIMIT", str(need // 4))
    monkeypatch.setattr("numgru.layers._ALWAYS_FITS", 0)  # check however small
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 2000, 4)).astype(np.float32)
    y = rng.standard_normal((16, 2000, 1)).astype(np.float32)
    whole = ng.Trainer(model, ng.SGD(model, lr=0.01), progress=False)
    with pytest.raises(CacheTooLargeError, match=rf"more than the .* \({need // 4} bytes\)"):
        whole.train_step(x, y)
    chunked = ng.Trainer(model, ng.SGD(model, lr=0.01), progress=False, chunk_steps=250)
    assert np.isfinite(chunked.train_step(x, y))


def _pair(head, dropout=0.0, layers=2):
    """The same model on cpu (float64) and as the float64 reference (device numpy)."""
    kw = dict(num_layers=layers, dropout=dropout, head=head, dtype="float64", seed=3)
    cpu = ng.GRUModel(3, 5, 2, device="cpu", **kw)
    ref = ng.GRUModel(3, 5, 2, device="numpy", **kw)
    ref.load_state_dict(cpu.state_dict())
    return cpu, ref


@pytest.mark.parametrize("head", ["last", "sequence"])
@pytest.mark.parametrize("chunk", [1, 4, 11, 50])
def test_chunked_gradients_match_the_reference(head, chunk):
    rng = np.random.default_rng(7)
    B, T = 5, 11
    x = rng.standard_normal((B, T, 3))
    lengths = np.array([11, 1, 4, 9, 5])  # rows that sit out the later chunks
    shape = (B, 2) if head == "last" else (B, T, 2)
    target = rng.standard_normal(shape)
    mask = None if head == "last" else np.arange(T)[None, :] < lengths[:, None]
    cpu, ref = _pair(head)
    ref.zero_grad()
    out_ref = ref.forward(x, lengths=lengths, train=True)
    loss_ref, dout = ng.mse_loss(out_ref, target, mask)
    ref.backward(dout)
    cpu.zero_grad()
    out, loss = cpu.forward_backward_chunked(x, lambda o: ng.mse_loss(o, target, mask), chunk,
                                             lengths)
    # float64 against the float64 reference: the tolerance of test_cpu.py.
    assert_close("out", out, out_ref, 1e-12)
    assert abs(loss - loss_ref) <= 1e-12 * max(1.0, abs(loss_ref))
    for name, g in cpu.grads.items():
        assert_close(name, g, ref.grads[name], 1e-12)


def test_chunked_gradients_with_dropout_match_finite_differences():
    """With dropout the masks are random: the chunked gradient must be the gradient of the loss
    that the same masks give (each evaluation starts from the same random state)."""
    model = ng.GRUModel(2, 3, 1, num_layers=2, dropout=0.5, dtype="float64", device="cpu",
                        seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 2))
    target = rng.standard_normal((2, 1))
    start = model.gru.dropout_rng.bit_generator.state

    def loss():
        model.gru.dropout_rng.bit_generator.state = start
        model.zero_grad()
        return model.forward_backward_chunked(x, lambda o: ng.mse_loss(o, target), 4)[1]

    loss()
    analytic = model.flat_grads.copy()
    numeric = central_differences(loss, model.flat_params)
    # Central differences in float64 at eps = 1e-6: truncation ~eps² and rounding ~1e-16/eps,
    # both below 1e-8 relative to the gradient's scale.
    assert_close("grads", analytic, numeric, 1e-7)


def test_a_trainer_in_chunks_follows_the_whole_pass():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 40, 3))
    y = rng.integers(0, 2, 6)
    lengths = rng.integers(5, 41, 6)
    runs = []
    for chunk in (None, 7):
        model = ng.GRUModel(3, 6, 2, num_layers=2, dtype="float64", device="cpu", seed=0)
        trainer = ng.Trainer(model, ng.Adam(model, lr=0.05), loss="cross_entropy",
                             progress=False, chunk_steps=chunk)
        losses = [trainer.train_step(X, y, lengths=lengths) for _ in range(3)]
        runs.append((losses, model.get_flat_params()))
    # The same arithmetic up to the order of the sums over chunks (float64).
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    assert_close("params", runs[1][1], runs[0][1], 1e-11)
    with pytest.raises(ValueError, match="bidirectional"):
        model = ng.GRUModel(3, 6, 2, bidirectional=True)
        ng.Trainer(model, ng.Adam(model), chunk_steps=10)


def test_100_000_steps_in_inference_and_in_chunked_training():
    T = 100_000
    rng = np.random.default_rng(5)
    gru = ng.GRU(3, 16, dtype="float64", device="cpu", seed=0)
    x = rng.standard_normal((2, T, 3))
    y, h = gru(x)
    assert np.isfinite(y).all() and np.array_equal(h[0], y[:, -1])
    # The first and the last 300 steps against the reference (the last from the state the
    # run reached), in float64.
    p = gru.state_dict()
    args = [p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]]
    for lo, h0 in ((0, np.zeros((2, 16))), (T - 300, y[:, T - 301])):
        xt = np.ascontiguousarray(x[:, lo:lo + 300].transpose(1, 0, 2))
        y_ref, _, _ = reference.forward(xt, h0, *args, np.full(2, 300, np.int64))
        assert_close(f"y[{lo}:]", y[:, lo:lo + 300].transpose(1, 0, 2), y_ref, 1e-12)
    # Training in chunks of 5 000 steps: finite, the memory of a chunk, the same gradients as
    # chunks of 25 000.
    model = ng.GRUModel(3, 16, 1, head="sequence", dtype="float32", device="cpu", seed=0)
    xs = x.astype(np.float32)
    target = np.sin(np.cumsum(xs[:, :, :1], axis=1) / 50)
    grads = []
    for chunk in (5_000, 25_000):
        model.zero_grad()
        tracemalloc.start()
        try:
            out, loss = model.forward_backward_chunked(
                xs, lambda o: ng.mse_loss(o, target), chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert np.isfinite(loss) and np.isfinite(model.flat_grads).all()
        if chunk == 5_000:
            whole = model.gru.training_bytes(T, 2)
            assert peak < whole / 3, (peak, whole)
        grads.append(model.flat_grads.copy())
    # float32 sums over 100 000 steps in two orders: 1e-4 relative to the gradient's scale.
    assert_close("chunk sizes", grads[0], grads[1], 1e-4)
