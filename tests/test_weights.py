"""Weight files: ng.save_weights / ng.load_weights for .safetensors and .npz, both ways against
PyTorch (safetensors.torch writes and reads the same files), and the refusals (no pickle, no
bfloat16, wrong file kinds). Outputs are compared with test_torch.py's float32 tolerance."""

import os
import sys

import numpy as np
import pytest

import numgru as ng

from helpers import assert_close, require

safetensors = require("safetensors")
TOL = 2e-6


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip(tmp_path, rng, ext, dtype):
    model = ng.GRUModel(3, 5, 2, num_layers=2, bidirectional=True, dtype=dtype, device="cpu",
                        seed=4)
    path = tmp_path / f"w{ext}"
    ng.save_weights(model, path)
    state = ng.load_weights(path)
    assert sorted(state) == sorted(model.state_dict())
    for name, value in model.state_dict().items():
        assert state[name].dtype == value.dtype
        np.testing.assert_array_equal(state[name], value)
    other = ng.GRUModel(3, 5, 2, num_layers=2, bidirectional=True, dtype=dtype, device="cpu",
                        seed=5)
    other.load_state_dict(state)
    x = rng.standard_normal((2, 4, 3))
    np.testing.assert_array_equal(other(x), model(x))
    gru = ng.GRU(3, 4, device="cpu", seed=1)  # a layer too, and a plain dict
    ng.save_weights(gru, tmp_path / f"g{ext}")
    assert sorted(ng.load_weights(tmp_path / f"g{ext}")) == sorted(gru.state_dict())
    ng.save_weights({"a": np.arange(3.0)}, tmp_path / f"d{ext}")
    np.testing.assert_array_equal(ng.load_weights(tmp_path / f"d{ext}")["a"], np.arange(3.0))


def test_torch_save_file_loads_into_gru_model(tmp_path, rng):
    torch = require("torch")
    import safetensors.torch
    from _seed_torch import SeedGRUModel
    torch.manual_seed(0)
    tmodel = SeedGRUModel(4, 8, 3, num_layers=2, bidirectional=True).eval()
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(tmodel.state_dict(), path)
    model = ng.GRUModel(4, 8, 3, num_layers=2, bidirectional=True, device="cpu")
    model.load_state_dict(ng.load_weights(path))
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    lengths = np.array([6, 2, 5])
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x), lengths).numpy()
    assert_close("out", model(x, lengths=lengths), want, TOL)
    # The same through .npz, as a PyTorch user would write it with numpy.
    np.savez(tmp_path / "torch.npz", **{k: v.numpy() for k, v in tmodel.state_dict().items()})
    model.load_state_dict(ng.load_weights(tmp_path / "torch.npz"))
    assert_close("out", model(x, lengths=lengths), want, TOL)


def test_numgru_file_loads_into_torch(tmp_path, rng):
    torch = require("torch")
    import safetensors.torch
    from _seed_torch import SeedGRUModel
    model = ng.GRUModel(4, 6, 2, num_layers=1, device="cpu", seed=9)
    path = tmp_path / "numgru.safetensors"
    ng.save_weights(model, path)
    tmodel = SeedGRUModel(4, 6, 2)
    tmodel.load_state_dict(safetensors.torch.load_file(path))  # strict: every name matches
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    assert_close("out", model(x), want, TOL)
    tgru = torch.nn.GRU(4, 6, batch_first=True)
    gru = ng.GRU(4, 6, device="cpu", seed=2)
    ng.save_weights(gru, tmp_path / "gru.safetensors")
    tgru.load_state_dict(safetensors.torch.load_file(tmp_path / "gru.safetensors"))
    with torch.no_grad():
        assert_close("y", gru(x)[0], tgru(torch.from_numpy(x))[0].numpy(), TOL)


def test_refusals(tmp_path, monkeypatch):
    torch = require("torch")
    import safetensors.torch
    model = ng.GRUModel(2, 3, 1, device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"w\.pt: expected a file name ending in \.safetensors "
                                         r"or \.npz, got '\.pt'"):
        ng.save_weights(model, tmp_path / "w.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ng.load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz: the file is empty"):
        ng.load_weights(tmp_path / "empty.npz")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable .safetensors file"):
        ng.load_weights(tmp_path / "junk.safetensors")
    np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        ng.load_weights(tmp_path / "pickled.npz")
    safetensors.torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)},
                                tmp_path / "bf16.safetensors")
    with pytest.raises(ValueError, match="bfloat16"):
        ng.load_weights(tmp_path / "bf16.safetensors")
    ng.save_checkpoint(tmp_path / "ckpt.npz", model)
    with pytest.raises(ValueError, match="a numgru checkpoint, not a weight file"):
        ng.load_weights(tmp_path / "ckpt.npz")
    with pytest.raises(TypeError, match="model: expected a numgru model"):
        ng.save_weights(3, tmp_path / "w.npz")
    # Without the safetensors package: a clear error that says how to install it; .npz works.
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"pip install 'numgru\[safetensors\]'"):
        ng.save_weights(model, tmp_path / "w.safetensors")
    ng.save_weights(model, tmp_path / "w.npz")
    assert not os.path.exists(tmp_path / "w.safetensors")

