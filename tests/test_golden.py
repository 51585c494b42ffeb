"""Rung 3 of the verification ladder, offline: numgru's GRU and GRUCell against golden files that
tests/golden/make_golden.py wrote from torch.nn.GRU / GRUCell (outputs, h_n, every gradient) and from
ONNX Runtime's GRU operator (outputs and Y_h). Needs neither torch nor onnxruntime.

Tolerances are on max|numgru - tool| / max(1, max|tool|), per tool, dtype and tensor:
- torch float64: 1e-13 for y and h_n, 1e-12 for gradients. Both sides compute the same float64
  formulas and differ only in summation order (observed <= 2e-15); the weight gradients are sums of
  T·B·layers terms, hence ten times more room.
- torch float32: 2e-6 for y and h_n, 1e-5 for gradients. Each side rounds every GEMM and activation
  to float32 (eps 1.2e-7) in its own order; after a few steps that is a few ulps (observed <= 2e-7
  on outputs, 1e-6 on the weight gradients, which sum T·B rows).
- ONNX Runtime: 1e-6 for y and h_n, whatever numgru's dtype. ORT computes in float32 only, with its
  own sigmoid/tanh (MLAS); its rounding dominates (observed <= 2.1e-7 against float32 and float64).
A wrong gate order, bias, length mask or direction gives errors of 1e-2 or more.
"""

from pathlib import Path

import numpy as np
import pytest

import numgru as ng

from helpers import assert_close

GOLDEN = Path(__file__).resolve().parent / "golden"
# Listed, not globbed: a missing file must fail, not shrink the test set.
TORCH_FILES = ["torch_gru_l1_f64", "torch_gru_l2_bi_packed_f64", "torch_gru_l2_packed_timemajor_f32",
               "torch_gru_l2_bi_packed_nobias_f32", "torch_gru_l1_bi_packed_f32"]
CELL_FILES = ["torch_grucell_f64", "torch_grucell_f32"]
ONNX_FILES = ["onnx_gru_forward_lbr0", "onnx_gru_reverse_lbr0", "onnx_gru_bidirectional_lbr0",
              "onnx_gru_forward_lbr0_nobias", "onnx_gru_bidirectional_lbr1"]
DEVICES = ["cpu", "numpy"]

TOL = {
    ("torch", "float64", "out"): 1e-13, ("torch", "float64", "grad"): 1e-12,
    ("torch", "float32", "out"): 2e-6, ("torch", "float32", "grad"): 1e-5,
    ("onnx", "float32", "out"): 1e-6, ("onnx", "float64", "out"): 1e-6,
}


def _load(name):
    path = GOLDEN / f"{name}.npz"
    assert path.exists(), f"{path} is missing: run `make golden`"
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _arg(g, key):
    return g[f"arg.{key}"].item()


def _params(g):
    return {k[len("param."):]: v for k, v in g.items() if k.startswith("param.")}


def _gru_from(g, device, dtype=None):
    gru = ng.GRU(_arg(g, "input_size"), _arg(g, "hidden_size"), num_layers=_arg(g, "num_layers"),
                 bias=_arg(g, "bias"), batch_first=_arg(g, "batch_first"),
                 bidirectional=_arg(g, "bidirectional"), reset_after=_arg(g, "reset_after"),
                 dtype=dtype or _arg(g, "dtype"), device=device, seed=0)
    gru.load_state_dict(_params(g))
    return gru


def test_golden_files_record_their_source_and_versions():
    for name in TORCH_FILES + CELL_FILES + ONNX_FILES:
        g = _load(name)
        source, versions = g["meta.source"].item(), g["meta.versions"].item()
        tool = "torch" if name.startswith("torch") else "onnxruntime"
        assert source.startswith(tool) and versions.startswith(tool + " "), (name, source, versions)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TORCH_FILES)
def test_gru_against_torch_golden(name, device):
    g = _load(name)
    dtype = _arg(g, "dtype")
    tol_out, tol_grad = TOL[("torch", dtype, "out")], TOL[("torch", dtype, "grad")]
    gru = _gru_from(g, device)
    h0, lengths = g.get("h0"), g.get("lengths")

    y_inf, h_inf = gru(g["x"], h0, lengths)  # the inference path, which keeps no cache
    assert_close("y (inference)", y_inf, g["y"], tol_out)
    assert_close("h_n (inference)", h_inf, g["h_n"], tol_out)

    y, h_n = gru.forward(g["x"], h0, lengths, train=True)
    assert_close("y", y, g["y"], tol_out)
    assert_close("h_n", h_n, g["h_n"], tol_out)
    # torch's padded outputs are exact zeros; so must numgru's be, not merely small.
    assert np.array_equal(y[g["y"] == 0], np.zeros(int((g["y"] == 0).sum()), y.dtype))

    gru.zero_grad()
    dx, dh0 = gru.backward(g["dy"], g["dh_n"])  # dy is random at padded steps too: ignored
    assert_close("grad x", dx, g["grad.x"], tol_grad)
    if "grad.h0" in g:
        assert_close("grad h0", dh0, g["grad.h0"], tol_grad)
    params = _params(g)
    assert set(gru.grads) == set(params)
    for pname in params:
        assert_close(f"grad {pname}", gru.grads[pname], g[f"grad.{pname}"], tol_grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CELL_FILES)
def test_grucell_against_torch_golden(name, device):
    g = _load(name)
    dtype = _arg(g, "dtype")
    tol_out, tol_grad = TOL[("torch", dtype, "out")], TOL[("torch", dtype, "grad")]
    cell = ng.GRUCell(_arg(g, "input_size"), _arg(g, "hidden_size"), bias=_arg(g, "bias"),
                      reset_after=_arg(g, "reset_after"), dtype=dtype, device=device, seed=0)
    cell.load_state_dict(_params(g))
    assert_close("h1 (inference)", cell(g["x"], g["h0"]), g["h_n"], tol_out)
    h1 = cell.forward(g["x"], g["h0"], train=True)
    assert_close("h1", h1, g["h_n"], tol_out)
    cell.zero_grad()
    dx, dh = cell.backward(g["dh_n"])
    assert_close("grad x", dx, g["grad.x"], tol_grad)
    assert_close("grad h", dh, g["grad.h0"], tol_grad)
    for pname in _params(g):
        assert_close(f"grad {pname}", cell.grads[pname], g[f"grad.{pname}"], tol_grad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ONNX_FILES)
def test_gru_against_onnxruntime_golden(name, device, dtype):
    """ORT ran float32; numgru in float64 from the same float32 weights must agree as well."""
    g = _load(name)
    tol = TOL[("onnx", dtype, "out")]
    gru = _gru_from(g, device, dtype)
    H, directions = _arg(g, "hidden_size"), g["directions"]
    y, h_n = gru(g["x"], g["h0"], g["lengths"])
    # The file holds the directions ORT ran (a reverse-only file: the `_reverse` half of the layer).
    y = np.concatenate([y[:, :, d * H:(d + 1) * H] for d in directions], axis=2)
    assert_close("y", y, g["y"], tol)
    assert_close("h_n", h_n[directions], g["h_n"], tol)
    assert np.array_equal(y[g["y"] == 0], np.zeros(int((g["y"] == 0).sum()), y.dtype))
