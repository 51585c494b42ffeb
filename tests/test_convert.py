"""numgru.convert without the tools: round trips, the golden files' ONNX tensors, Keras' equations.

The ONNX layout is checked against the tensors that tests/golden/make_golden.py wrote by gate name
(its own code, not convert.py's) and fed to ONNX Runtime; the live ORT comparisons are in
test_onnx.py. Keras is not installed: its GRU is a short NumPy loop below, written from Keras'
GRUCell equations in Keras' layout (kernel columns z, r, h; h = z ⊙ h + (1 − z) ⊙ hh), and the
converted weights must make numgru and that loop agree.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numgru as ng

from helpers import assert_close
from numgru import convert

GOLDEN = Path(__file__).resolve().parent / "golden"
# float64 on both sides, the same formulas: only summation order differs.
TOL64 = 1e-12


def _random_state_dict(rng, names_shapes, dtype=np.float64):
    return {k: rng.uniform(-0.7, 0.7, s).astype(dtype) for k, s in names_shapes.items()}


def _gru_state_dict(rng, I, H, num_layers=1, bidirectional=False, bias=True, prefix="",
                    dtype=np.float64):
    shapes = {}
    D = 2 if bidirectional else 1
    for k in range(num_layers):
        for s in ("", "_reverse") if bidirectional else ("",):
            shapes[f"{prefix}weight_ih_l{k}{s}"] = (3 * H, I if k == 0 else D * H)
            shapes[f"{prefix}weight_hh_l{k}{s}"] = (3 * H, H)
            if bias:
                shapes[f"{prefix}bias_ih_l{k}{s}"] = (3 * H,)
                shapes[f"{prefix}bias_hh_l{k}{s}"] = (3 * H,)
    return _random_state_dict(rng, shapes, dtype)


def _assert_same_dict(got, want):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        assert got[k].dtype == want[k].dtype, (k, got[k].dtype, want[k].dtype)
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# -- ONNX -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers,bidirectional,bias,prefix,dtype", [
    (1, False, True, "", np.float64),
    (1, True, True, "", np.float32),
    (3, True, False, "gru.", np.float64),
    (2, False, True, "gru.", np.float32),
])
def test_onnx_round_trip_state_dict(rng, num_layers, bidirectional, bias, prefix, dtype):
    sd = _gru_state_dict(rng, 4, 5, num_layers, bidirectional, bias, prefix, dtype)
    back = {}
    for k in range(num_layers):
        W, R, B = convert.to_onnx_weights(sd, layer=k, prefix=prefix)
        D = 2 if bidirectional else 1
        assert W.shape == (D, 15, 4 if k == 0 else D * 5) and R.shape == (D, 15, 5)
        assert W.dtype == dtype and (B is None) == (not bias)
        back.update(convert.from_onnx_weights(W, R, B, layer=k, prefix=prefix))
    _assert_same_dict(back, sd)


def test_onnx_round_trip_tensors_and_directions(rng):
    W = rng.standard_normal((1, 9, 2))
    R = rng.standard_normal((1, 9, 3))
    B = rng.standard_normal((1, 18))
    for direction in ("forward", "reverse"):
        sd = convert.from_onnx_weights(W, R, B, layer=2, direction=direction)
        suffix = "_reverse" if direction == "reverse" else ""
        assert set(sd) == {f"{n}_l2{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih",
                                                        "bias_hh")}
        W2, R2, B2 = convert.to_onnx_weights(sd, layer=2, direction=direction)
        for got, want in ((W2, W), (R2, R), (B2, B)):
            np.testing.assert_array_equal(got, want)
    cell = convert.from_onnx_weights(W, R, B, cell=True)
    assert set(cell) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    for got, want in zip(convert.to_onnx_weights(cell, cell=True), (W, R, B)):
        np.testing.assert_array_equal(got, want)


def test_onnx_gate_order_is_z_r_h(rng):
    # Mark each gate block of numgru's r, z, n with its own constant; ONNX must list z, r, h.
    H = 2
    w = np.repeat(np.array([1.0, 2.0, 3.0]), H)[:, None] * np.ones((3 * H, 4))  # r=1, z=2, n=3
    sd = {"weight_ih_l0": w, "weight_hh_l0": w[:, :H].copy(), "bias_ih_l0": w[:, 0].copy(),
          "bias_hh_l0": 10 * w[:, 0]}
    W, R, B = convert.to_onnx_weights(sd)
    np.testing.assert_array_equal(W[0, :, 0], [2, 2, 1, 1, 3, 3])
    np.testing.assert_array_equal(R[0, :, 0], [2, 2, 1, 1, 3, 3])
    np.testing.assert_array_equal(B[0], [2, 2, 1, 1, 3, 3, 20, 20, 10, 10, 30, 30])


@pytest.mark.parametrize("name", ["onnx_gru_forward_lbr0", "onnx_gru_reverse_lbr0",
                                  "onnx_gru_bidirectional_lbr0", "onnx_gru_forward_lbr0_nobias",
                                  "onnx_gru_bidirectional_lbr1"])
def test_onnx_weights_match_golden_files(name):
    """The golden script laid the weights out for ORT by gate name; convert.py must agree exactly."""
    with np.load(GOLDEN / f"{name}.npz") as f:
        g = {k: f[k] for k in f.files}
    params = {k[len("param."):]: v for k, v in g.items() if k.startswith("param.")}
    direction = g["onnx.direction"].item()
    W, R, B = convert.to_onnx_weights(params, direction=direction)
    np.testing.assert_array_equal(W, g["onnx.W"])
    np.testing.assert_array_equal(R, g["onnx.R"])
    if "onnx.B" in g:
        np.testing.assert_array_equal(B, g["onnx.B"])
    else:
        assert B is None
    back = convert.from_onnx_weights(g["onnx.W"], g["onnx.R"], g.get("onnx.B"),
                                     direction=direction)
    _assert_same_dict(back, {k: params[k] for k in back})
    assert len(back) == len(params) or direction == "reverse"


# -- Keras ------------------------------------------------------------------------------------------

def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # the same function as 1/(1+e^-a), overflow-free


def _keras_gru(x, kernel, recurrent_kernel, bias, reset_after, h0, go_backwards=False):
    """keras.layers.GRU(return_sequences=True) on full-length sequences, in Keras' own layout.

    x (B, T, I), kernel (I, 3u), recurrent_kernel (u, 3u), bias (2, 3u) / (3u,) / None, h0 (B, u).
    Columns: z, r, h. go_backwards=True is the backward half of keras.layers.Bidirectional, whose
    outputs Bidirectional flips back into time order. Returns (outputs (B, T, u), final state).
    """
    u = recurrent_kernel.shape[0]
    if bias is None:
        input_bias, recurrent_bias = np.zeros(3 * u), np.zeros(3 * u)
    elif reset_after:
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias, recurrent_bias = bias, None
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    h, outputs = h0, np.zeros(x.shape[:2] + (u,))
    for t in steps:
        x_z, x_r, x_h = np.split(x[:, t] @ kernel + input_bias, 3, axis=1)
        if reset_after:
            rec_z, rec_r, rec_h = np.split(h @ recurrent_kernel + recurrent_bias, 3, axis=1)
            z, r = _sigmoid(x_z + rec_z), _sigmoid(x_r + rec_r)
            hh = np.tanh(x_h + r * rec_h)
        else:
            rec_z, rec_r = np.split(h @ recurrent_kernel[:, :2 * u], 2, axis=1)
            z, r = _sigmoid(x_z + rec_z), _sigmoid(x_r + rec_r)
            hh = np.tanh(x_h + (r * h) @ recurrent_kernel[:, 2 * u:])
        h = z * h + (1 - z) * hh
        outputs[:, t] = h
    return outputs, h


def _close(name, got, want, tol=TOL64):
    assert_close(name, got, want, tol)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
def test_keras_weights_into_numgru(rng, reset_after, use_bias):
    """Random Keras weights, moved in with from_keras_weights, reproduce Keras' equations."""
    I, u, B, T = 3, 4, 2, 5
    kernel = rng.uniform(-0.8, 0.8, (I, 3 * u))
    recurrent_kernel = rng.uniform(-0.8, 0.8, (u, 3 * u))
    bias = None
    if use_bias:
        bias = rng.uniform(-0.8, 0.8, (2, 3 * u) if reset_after else (3 * u,))
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, u))
    want_y, want_h = _keras_gru(x, kernel, recurrent_kernel, bias, reset_after, h0)

    gru = ng.GRU(I, u, bias=use_bias, reset_after=reset_after, dtype="float64", device="numpy")
    gru.load_state_dict(convert.from_keras_weights(kernel, recurrent_kernel, bias,
                                                   reset_after=reset_after))
    y, h_n = gru(x, h0[None])
    _close("y", y, want_y)
    _close("h_n", h_n[0], want_h)


@pytest.mark.parametrize("reset_after", [True, False])
def test_numgru_weights_into_keras_bidirectional(rng, reset_after):
    """numgru weights (with b_hh != 0) moved out with to_keras_weights: Keras' equations, forward
    half and go_backwards half, give numgru's bidirectional outputs (full-length sequences)."""
    I, H, B, T = 3, 4, 2, 5
    sd = _gru_state_dict(rng, I, H, bidirectional=True)
    gru = ng.GRU(I, H, bidirectional=True, reset_after=reset_after, dtype="float64",
                 device="numpy")
    gru.load_state_dict(sd)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((2, B, H))
    y, h_n = gru(x, h0)
    for d, direction in enumerate(("forward", "reverse")):
        kernel, recurrent_kernel, bias = convert.to_keras_weights(sd, direction=direction,
                                                                  reset_after=reset_after)
        assert kernel.shape == (I, 3 * H) and recurrent_kernel.shape == (H, 3 * H)
        assert bias.shape == ((2, 3 * H) if reset_after else (3 * H,))
        want_y, want_h = _keras_gru(x, kernel, recurrent_kernel, bias, reset_after, h0[d],
                                    go_backwards=(d == 1))
        _close(f"y {direction}", y[:, :, d * H:(d + 1) * H], want_y)
        _close(f"h_n {direction}", h_n[d], want_h)


def test_keras_round_trips(rng):
    sd = _gru_state_dict(rng, 3, 4, num_layers=2, prefix="gru.")
    # reset_after=True keeps both biases: numgru -> Keras -> numgru is the identity.
    back = convert.from_keras_weights(*convert.to_keras_weights(sd, layer=1, prefix="gru."),
                                      layer=1, prefix="gru.")
    _assert_same_dict(back, {k: v for k, v in sd.items() if "_l1" in k})
    # reset_after=False has one bias: Keras -> numgru -> Keras is the identity...
    k, rk, b = rng.standard_normal((3, 12)), rng.standard_normal((4, 12)), rng.standard_normal(12)
    sd_false = convert.from_keras_weights(k, rk, b)
    np.testing.assert_array_equal(sd_false["bias_hh_l0"], np.zeros(12))
    for got, want in zip(convert.to_keras_weights(sd_false, reset_after=False), (k, rk, b)):
        np.testing.assert_array_equal(got, want)
    # ... and numgru -> Keras -> numgru folds b_hh into b_ih, the same function (checked in
    # test_numgru_weights_into_keras_bidirectional) but not the same numbers.
    back = convert.from_keras_weights(*convert.to_keras_weights(sd, reset_after=False,
                                                                prefix="gru."))
    np.testing.assert_allclose(back["bias_ih_l0"], sd["gru.bias_ih_l0"] + sd["gru.bias_hh_l0"],
                               rtol=0, atol=1e-15)
    np.testing.assert_array_equal(back["weight_hh_l0"], sd["gru.weight_hh_l0"])
    # A GRUCell's names.
    cell = convert.from_keras_weights(k, rk, None, cell=True)
    assert set(cell) == {"weight_ih", "weight_hh"}
    kk, rkk, bb = convert.to_keras_weights(cell, cell=True)
    np.testing.assert_array_equal(kk, k)
    np.testing.assert_array_equal(rkk, rk)
    assert bb is None


# -- bad input --------------------------------------------------------------------------------------

def test_bad_input_errors_name_the_argument(rng):
    sd = _gru_state_dict(rng, 3, 4)
    W, R, B = convert.to_onnx_weights(sd)
    cases = [
        (ValueError, r"W: expected a 3-D", lambda: convert.from_onnx_weights(W[0], R, B)),
        (ValueError, r"R: expected shape", lambda: convert.from_onnx_weights(W, R[:, :, :3], B)),
        (ValueError, r"R: expected 3\*hidden_size", lambda: convert.from_onnx_weights(
            W[:, :10], R[:, :10, :3], B)),
        (ValueError, r"W: expected shape \[1, 12, input_size\]", lambda: convert.from_onnx_weights(
            W[:, :9], R, B)),
        (ValueError, r"B: expected shape \[1, 24\]", lambda: convert.from_onnx_weights(
            W, R, B[:, :12])),
        (ValueError, r"direction: 'bidirectional' needs num_directions 2",
         lambda: convert.from_onnx_weights(W, R, B, direction="bidirectional")),
        (ValueError, r"direction: expected one of", lambda: convert.to_onnx_weights(
            sd, direction="backward")),
        (ValueError, r"missing key 'weight_ih_l0_reverse'", lambda: convert.to_onnx_weights(
            sd, direction="bidirectional")),
        (ValueError, r"missing key 'weight_ih_l1'", lambda: convert.to_onnx_weights(sd, layer=1)),
        (ValueError, r"layer: expected a non-negative integer", lambda: convert.to_onnx_weights(
            sd, layer=-1)),
        (TypeError, r"W: expected a float32 or float64 array, got dtype int64",
         lambda: convert.from_onnx_weights(W.astype(np.int64), R, B)),
        (TypeError, r"state_dict: expected a dict", lambda: convert.to_onnx_weights([W, R, B])),
        (ValueError, r"state_dict\['weight_hh_l0'\]: expected shape \(3\*hidden_size, "
                     r"hidden_size\) = \(12, 4\), got \(12, 3\)",
         lambda: convert.to_onnx_weights({**sd, "weight_hh_l0": sd["weight_hh_l0"][:, :3]})),
        (ValueError, r"state_dict\['weight_ih_l0'\]: expected 12 rows",
         lambda: convert.to_onnx_weights({**sd, "weight_ih_l0": sd["weight_ih_l0"][:9]})),
        (ValueError, r"state_dict\['bias_hh_l0'\]: expected shape \(12,\), got \(11,\)",
         lambda: convert.to_keras_weights({**sd, "bias_hh_l0": sd["bias_hh_l0"][:11]})),
        (ValueError, r"has 'bias_ih_l0' but not 'bias_hh_l0'",
         lambda: convert.to_keras_weights({k: v for k, v in sd.items() if k != "bias_hh_l0"})),
        (ValueError, r"direction: expected one of \('forward', 'reverse'\)",
         lambda: convert.to_keras_weights(sd, direction="bidirectional")),
        (ValueError, r"kernel: expected shape \(input_size, 12\)",
         lambda: convert.from_keras_weights(np.zeros((3, 9)), np.zeros((4, 12)))),
        (ValueError, r"recurrent_kernel: expected shape \(units, 3\*units\)",
         lambda: convert.from_keras_weights(np.zeros((3, 12)), np.zeros((3, 12)))),
        (ValueError, r"bias: expected shape \(2, 12\) .* or \(12,\)", lambda: convert.
         from_keras_weights(np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(24))),
        (ValueError, r"bias: shape \(12,\) is Keras' reset_after=False layout, but "
                     r"reset_after=True", lambda: convert.from_keras_weights(
            np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(12), reset_after=True)),
    ]
    for exc, pattern, call in cases:
        with pytest.raises(exc, match=pattern):
            call()


def test_numgru_imports_and_converts_without_onnx():
    """onnx is optional: importing numgru and the weight converters must not need it, and the model
    builder must say that it does."""
    code = (
        "import sys; sys.modules['onnx'] = None\n"  # makes `import onnx` raise ImportError
        "import numpy as np, numgru\n"
        "from numgru import convert\n"
        "sd = numgru.GRU(2, 3, device='numpy').state_dict()\n"
        "W, R, B = convert.to_onnx_weights(sd)\n"
        "assert W.shape == (1, 9, 2)\n"
        "try:\n"
        "    convert.onnx_gru_model(sd)\n"
        "except ImportError:\n"
        "    print('needs onnx')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "needs onnx"
