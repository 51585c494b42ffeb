"""Rung 3 of the verification ladder, live: numgru's GRU against ONNX Runtime's GRU operator, the
operator built by numgru.convert.onnx_gru_model from the layer's own state_dict.

Both variants (reset_after=False is ONNX linear_before_reset=0, True is 1), forward, reverse and
bidirectional, variable sequence_lens, with and without biases, two stacked layers, and GRUCell.
ONNX Runtime (1.32) semantics, checked here and in tests/golden/make_golden.py: Y = 0 past each
sequence's length, Y_h after its last valid step, the reverse direction starting at step length-1,
which is PyTorch's packed-sequence semantics and numgru's. ORT's GRU also accepts length 0 (then
Y_h = 0, not initial_h); numgru rejects it, so lengths here are in [1, T].

ORT's CPU GRU runs float32 only; a float64 numgru layer is compared with the float32 model built
from the same (float32-representable) weights. Tolerance 1e-6 on max|diff| / max(1, max|ORT|):
ORT rounds to float32 with its own sigmoid/tanh (observed <= 3e-7); a wrong gate order, bias,
mask or direction gives 1e-2 or more.
"""

import numpy as np
import pytest

import numgru as ng
from numgru import convert

from helpers import require, assert_close

ort = require("onnxruntime")
onnx = require("onnx")

TOL = 1e-6


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # two shared cores: no thread pool for tiny problems
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _run_ort(model, x_tbi, lengths, h0):
    """x (T, B, I), lengths (B,), h0 (D, B, H) -> numgru's (y (T, B, D·H), h_n (D, B, H))."""
    dtype = np.float64 if model.graph.input[0].type.tensor_type.elem_type == \
        onnx.TensorProto.DOUBLE else np.float32
    Y, Y_h = _session(model).run(None, {"X": x_tbi.astype(dtype),
                                        "sequence_lens": np.asarray(lengths, np.int32),
                                        "initial_h": h0.astype(dtype)})
    T, D, B, H = Y.shape
    return Y.transpose(0, 2, 1, 3).reshape(T, B, D * H), Y_h


def _close(name, got, want, tol=TOL):
    assert_close(name, got, want, tol)


def _float32_weights(gru):
    """The layer's weights rounded to float32, loaded back: both sides then hold the same numbers."""
    sd = {k: v.astype(np.float32) for k, v in gru.state_dict().items()}
    gru.load_state_dict(sd)
    return sd


@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_matches_onnxruntime(rng, reset_after, direction, dtype, device):
    T, B, I, H = 6, 4, 3, 5
    bidirectional = direction != "forward"  # "reverse": the `_reverse` half of a numgru layer
    gru = ng.GRU(I, H, bidirectional=bidirectional, reset_after=reset_after, batch_first=False,
                 dtype=dtype, device=device, seed=int(rng.integers(1 << 30)))
    sd = _float32_weights(gru)
    model = convert.onnx_gru_model(sd, direction=direction, reset_after=reset_after)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((gru.num_directions, B, H)).astype(np.float32)
    lengths = np.array([6, 1, 4, 3])  # unsorted, with the extremes 1 and T

    y, h_n = gru(x, h0, lengths)
    dirs = {"forward": [0], "reverse": [1], "bidirectional": [0, 1]}[direction]
    want_y, want_h = _run_ort(model, x, lengths, h0[dirs])
    y = np.concatenate([y[:, :, d * H:(d + 1) * H] for d in dirs], axis=2)
    _close("y", y, want_y)
    _close("h_n", h_n[dirs], want_h)
    assert not want_y[lengths[1]:, 1].any() and not y[lengths[1]:, 1].any()  # zeros past length


@pytest.mark.parametrize("reset_after", [False, True])
def test_two_layer_gru_matches_chained_onnx_models(rng, reset_after):
    """A 2-layer bidirectional numgru GRU equals two ORT GRU nodes, one per `layer=`, chained."""
    T, B, I, H = 5, 3, 4, 3
    gru = ng.GRU(I, H, num_layers=2, bidirectional=True, reset_after=reset_after,
                 batch_first=False, device="cpu", seed=7)
    sd = _float32_weights(gru)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((4, B, H)).astype(np.float32)
    lengths = np.array([2, 5, 4])
    y, h_n = gru(x, h0, lengths)
    y0, h0_out = _run_ort(convert.onnx_gru_model(sd, layer=0, reset_after=reset_after), x,
                          lengths, h0[:2])
    y1, h1_out = _run_ort(convert.onnx_gru_model(sd, layer=1, reset_after=reset_after), y0,
                          lengths, h0[2:])
    _close("y", y, y1)
    _close("h_n", h_n, np.concatenate([h0_out, h1_out]))


def test_gru_without_bias_matches_onnxruntime(rng):
    T, B, I, H = 4, 2, 3, 2
    gru = ng.GRU(I, H, bias=False, reset_after=False, batch_first=False, device="cpu", seed=3)
    sd = _float32_weights(gru)
    model = convert.onnx_gru_model(sd, reset_after=False)
    assert [i for i in model.graph.node[0].input] == ["X", "W", "R", "", "sequence_lens",
                                                      "initial_h"]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((1, B, H)).astype(np.float32)
    y, h_n = gru(x, h0, [4, 2])
    want_y, want_h = _run_ort(model, x, [4, 2], h0)
    _close("y", y, want_y)
    _close("h_n", h_n, want_h)


@pytest.mark.parametrize("reset_after", [False, True])
def test_grucell_matches_one_onnx_step(rng, reset_after):
    B, I, H = 3, 4, 5
    cell = ng.GRUCell(I, H, reset_after=reset_after, device="cpu", seed=11)
    sd = _float32_weights(cell)
    model = convert.onnx_gru_model(sd, cell=True, reset_after=reset_after)
    x = rng.standard_normal((B, I)).astype(np.float32)
    h = rng.standard_normal((B, H)).astype(np.float32)
    want_y, want_h = _run_ort(model, x[None], np.ones(B), h[None])
    _close("h1", cell(x, h), want_h[0])
    _close("h1 (Y)", cell(x, h), want_y[0])


def test_float64_model(rng):
    """A float64 model is valid ONNX. ORT 1.32's CPU GRU refuses double; if a later ORT runs it,
    it must then agree with numgru's float64 layer to float64 precision."""
    gru = ng.GRU(2, 3, reset_after=False, batch_first=False, dtype="float64", device="cpu",
                 seed=5)
    model = convert.onnx_gru_model(gru.state_dict(), reset_after=False)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = rng.standard_normal((4, 2, 2))
    h0 = rng.standard_normal((1, 2, 3))
    try:
        want_y, want_h = _run_ort(model, x, [4, 3], h0)
    except Exception as err:  # onnxruntime raises its own exception types
        assert "does not support double" in str(err), str(err)
        return
    y, h_n = gru(x, h0, [4, 3])
    _close("y", y, want_y, 1e-12)
    _close("h_n", h_n, want_h, 1e-12)
