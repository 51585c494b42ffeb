"""Trainer against a PyTorch training loop (same weights, same batches, same optimizer: the same
loss curve in float64), reproducibility, early stopping, best-model restore, bad input."""

import numpy as np
import pytest

import numgru as ng

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from _seed_torch import SeedGRUModel  # noqa: E402


def _data(rng, N, T, I, classes=None, outputs=None, per_step=False):
    X = rng.standard_normal((N, T, I))
    lengths = rng.integers(1, T + 1, N)
    X[np.arange(T)[None, :] >= lengths[:, None]] = 0
    shape = (N, T) if per_step else (N,)
    if classes:
        y = rng.integers(0, classes, shape)
    else:
        y = rng.standard_normal(shape + (outputs,))
    return X, y, lengths


CONFIGS = {
    # name: (head, loss, optimizer pair, clip_norm)
    "classify_adam": ("last", "cross_entropy",
                      (lambda m: ng.Adam(m, lr=2e-2), lambda p: torch.optim.Adam(p, lr=2e-2)),
                      None),
    "regress_adamw_clip": ("last", "mse",
                           (lambda m: ng.AdamW(m, lr=1e-2, weight_decay=0.1),
                            lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)), 0.5),
    "per_step_sgd": ("sequence", "cross_entropy",
                     (lambda m: ng.SGD(m, lr=0.3, momentum=0.9),
                      lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9)), None),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_loss_curve_as_torch_for_20_steps(name):
    head, loss, (make_opt, make_topt), clip = CONFIGS[name]
    rng = np.random.default_rng(len(name))
    I, H, O, T = 3, 5, 3, 6
    classify = loss == "cross_entropy"
    X, y, lengths = _data(rng, 24, T, I, classes=O if classify else None, outputs=O,
                          per_step=head == "sequence")
    model = ng.GRUModel(I, H, O, num_layers=2, head=head, dtype="float64", seed=1)
    ref = SeedGRUModel(I, H, O, num_layers=2, head=head).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    trainer = ng.Trainer(model, make_opt(model), loss=loss, clip_norm=clip, progress=False)
    topt = make_topt(list(ref.parameters()))
    ours, theirs = [], []
    for _ in range(20):
        index = rng.choice(len(X), 6, replace=False)
        lb = lengths[index]
        Tb = int(lb.max())
        xb, yb = X[index, :Tb], (y[index, :Tb] if head == "sequence" else y[index])
        ours.append(trainer.train_step(xb, yb, lengths=lb))
        topt.zero_grad()
        out = ref(torch.from_numpy(xb), lb)
        if head == "sequence":
            target = np.where(np.arange(Tb)[None, :] < lb[:, None], yb, -100)
            tl = F.cross_entropy(out.reshape(-1, O), torch.from_numpy(target).reshape(-1),
                                 ignore_index=-100)
        elif classify:
            tl = F.cross_entropy(out, torch.from_numpy(yb))
        else:
            tl = F.mse_loss(out, torch.from_numpy(yb))
        tl.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        topt.step()
        theirs.append(tl.item())
    assert abs(ours[-1] - ours[0]) > 1e-2 * abs(ours[0])  # it trained
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=k)


def test_fit_batches_follow_torch():
    """fit without shuffling: batches in order, each cut to its longest sequence: torch, fed the
    same batches, ends with the same weights and the same per-epoch mean loss."""
    rng = np.random.default_rng(3)
    X, y, lengths = _data(rng, 10, 7, 2, classes=4)
    model = ng.GRUModel(2, 4, 4, dtype="float64", seed=2)
    ref = SeedGRUModel(2, 4, 4).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    trainer = ng.Trainer(model, ng.Adam(model, lr=0.05), loss="cross_entropy", progress=False)
    history = trainer.fit(X, y, lengths=lengths, epochs=5, batch_size=4, shuffle=False)
    topt = torch.optim.Adam(ref.parameters(), lr=0.05)
    epoch_losses = []
    for _ in range(5):
        total = 0.0
        for start in range(0, 10, 4):
            lb = lengths[start:start + 4]
            xb = X[start:start + 4, :int(lb.max())]
            topt.zero_grad()
            tl = F.cross_entropy(ref(torch.from_numpy(xb), lb), torch.from_numpy(y[start:start + 4]))
            tl.backward()
            topt.step()
            total += tl.item() * len(lb)
        epoch_losses.append(total / 10)
    np.testing.assert_allclose(history["loss"], epoch_losses, rtol=1e-9)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-8, atol=1e-10)
    assert trainer.global_step == 15


def _fit(seed, epochs=3, **kw):
    rng = np.random.default_rng(0)
    X, y, lengths = _data(rng, 40, 8, 3, classes=3)
    model = ng.GRUModel(3, 6, 3, num_layers=2, dropout=0.3, seed=5)
    opt = ng.Adam(model, lr=0.01)
    trainer = ng.Trainer(model, opt, loss="cross_entropy", scheduler=ng.CosineLR(opt, epochs),
                         progress=False)
    history = trainer.fit(X, y, lengths=lengths, epochs=epochs, batch_size=8, seed=seed, **kw)
    return history, model


def test_same_seed_same_curve_bit_for_bit():
    h1, m1 = _fit(seed=7)
    h2, m2 = _fit(seed=7)
    h3, m3 = _fit(seed=8)
    assert h1["loss"] == h2["loss"] and h1["accuracy"] == h2["accuracy"]
    assert np.array_equal(m1.flat_params, m2.flat_params)
    assert h1["loss"] != h3["loss"] and not np.array_equal(m1.flat_params, m3.flat_params)


def test_variable_length_list_equals_padded_with_lengths():
    rng = np.random.default_rng(4)
    X, y, lengths = _data(rng, 12, 6, 2, classes=2)
    ragged = [X[i, :lengths[i]] for i in range(len(X))]
    out = []
    for data in ((X, lengths), (ragged, None)):
        model = ng.GRUModel(2, 3, 2, dtype="float64", seed=0)
        trainer = ng.Trainer(model, ng.Adam(model), loss="cross_entropy", progress=False)
        trainer.fit(data[0], y, lengths=data[1], epochs=2, batch_size=5, seed=1)
        out.append((model.flat_params.copy(), trainer.predict(data[0], lengths=data[1])))
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])


def test_early_stopping_and_best_restore():
    """Validation labels that contradict training: val_loss rises, training stops `patience`
    epochs after its best epoch, and the model returns to that epoch's weights."""
    rng = np.random.default_rng(5)
    X, y, lengths = _data(rng, 30, 5, 2, classes=2)
    y = (X[:, 0, 0] > 0).astype(np.int64)
    model = ng.GRUModel(2, 8, 2, seed=0)
    trainer = ng.Trainer(model, ng.Adam(model, lr=0.03), loss="cross_entropy", progress=False)
    snapshots = {}
    record = lambda tr, epoch, logs: snapshots.__setitem__(epoch, tr.model.flat_params.copy())  # noqa: E731
    history = trainer.fit(X, y, lengths=lengths, epochs=40, batch_size=10, seed=0,
                          validation_data=(X, 1 - y, lengths), early_stopping=3,
                          callbacks=[record])
    val = history["val_loss"]
    best = int(np.argmin(val)) + 1
    assert len(val) == best + 3 < 40
    assert trainer.best_epoch == best
    assert np.array_equal(model.flat_params, snapshots[best])
    assert not np.array_equal(snapshots[best], snapshots[len(val)])
    assert set(history) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    # The restored model's val_loss is the best one logged.
    assert trainer.evaluate(X, 1 - y, lengths=lengths)["loss"] == pytest.approx(min(val), rel=1e-5)


def test_callback_can_stop_training():
    def stop_at_2(trainer, epoch, logs):
        if epoch == 2:
            trainer.stop_training = True
    history, _ = _fit(seed=0, epochs=5, callbacks=[stop_at_2])
    assert history["epoch"] == [1, 2]


def test_progress_bar_is_shown(capsys):
    model = ng.GRUModel(2, 3, 2, seed=0)
    trainer = ng.Trainer(model, ng.Adam(model), loss="cross_entropy", progress=True)
    X = np.random.default_rng(0).standard_normal((6, 4, 2))
    trainer.fit(X, np.array([0, 1] * 3), epochs=2, batch_size=3)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "4/4" in err and "step" in err


def test_mse_targets_and_metrics():
    rng = np.random.default_rng(6)
    X, y, lengths = _data(rng, 20, 5, 2, outputs=1)
    model = ng.GRUModel(2, 4, 1, dtype="float64", seed=0)
    trainer = ng.Trainer(model, ng.Adam(model, lr=0.02), loss="mse", metrics=["rmse", "mae"],
                         progress=False)
    history = trainer.fit(X, y[:, 0], lengths=lengths, epochs=3, batch_size=20, shuffle=False)
    assert history["loss"][-1] < history["loss"][0]
    result = trainer.evaluate(X, y, lengths=lengths)
    pred = model(X, lengths=lengths)
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)), rel=1e-12)
    assert result["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-12)
    assert result["loss"] == pytest.approx(result["rmse"] ** 2, rel=1e-12)


def test_bad_training_input_is_named():
    model = ng.GRUModel(2, 3, 3, seed=0)
    trainer = ng.Trainer(model, ng.Adam(model), loss="cross_entropy", progress=False)
    X = np.zeros((5, 4, 2))
    with pytest.raises(ValueError, match="X has 5 sequences but y has 4"):
        trainer.fit(X, np.zeros(4, int))
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\).*got 3 at index 2"):
        trainer.fit(X, np.array([0, 1, 3, 0, 0]))
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\).*got -1"):
        trainer.fit(X, np.array([0, 1, -1, 0, 0]))
    bad = X.copy()
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="X: NaN or Inf at sequence 3, step 1, feature 0"):
        trainer.fit(bad, np.zeros(5, int))
    # NaN in padding beyond a sequence's length is not data: it is accepted.
    trainer.fit(bad, np.zeros(5, int), lengths=np.array([4, 4, 4, 1, 4]), epochs=1)
    with pytest.raises(ValueError, match="lengths"):
        trainer.fit(X, np.zeros(5, int), lengths=np.array([5, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="validation_data"):
        trainer.fit(X, np.zeros(5, int), validation_data=(X,))
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(X, np.zeros(5, int), epochs=0)
    with pytest.raises(TypeError, match="integer class labels"):
        trainer.fit(X, np.full(5, 0.5))
    with pytest.raises(ValueError, match="loss"):
        ng.Trainer(model, ng.Adam(model), loss="hinge")
    with pytest.raises(ValueError, match="accuracy"):
        ng.Trainer(model, ng.Adam(model), loss="mse", metrics=["accuracy"])


def test_per_step_targets_are_checked_at_valid_steps_only():
    model = ng.GRUModel(2, 3, 4, head="sequence", seed=0)
    trainer = ng.Trainer(model, ng.Adam(model), loss="cross_entropy", progress=False)
    X = np.random.default_rng(0).standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 3])
    y = np.random.default_rng(1).integers(0, 4, (3, 5))
    y[np.arange(5)[None, :] >= lengths[:, None]] = -100  # padding labels, as torch's ignore_index
    history = trainer.fit(X, y, lengths=lengths, epochs=1, batch_size=3)
    assert np.isfinite(history["loss"][0])
    y[2, 1] = 4  # a valid step of sequence 2
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 4\).*got 4 at index \(2, 1\)"):
        trainer.fit(X, y, lengths=lengths, epochs=1)
