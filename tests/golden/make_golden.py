"""Writes the golden .npz files that tests/test_golden.py compares numgru against, from PyTorch
(torch.nn.GRU, torch.nn.GRUCell) and ONNX Runtime (the ONNX GRU operator).

Rerun with `make golden` (needs torch, onnx and onnxruntime; the tests that read the files need none
of them). Every number comes from one seeded numpy Generator per file, so a rerun rewrites the same
inputs and weights; the outputs can differ in the last float32 bits where a different BLAS or CPU
runs. The zip entries carry a fixed timestamp, so an unchanged rerun leaves git clean.

Each file holds, as numpy arrays:
  meta.*           what made it: source, versions, the layer's constructor arguments (`arg.*`)
  x, h0, lengths   the inputs as numgru takes them (h0 and lengths only where used)
  param.<name>     the weights in numgru/PyTorch layout and names (state_dict)
  y, h_n           the tool's outputs in numgru's layout
  dy, dh_n         (PyTorch files) the upstream gradients fed to backward
  grad.x, grad.h0, grad.<name>   (PyTorch files) the tool's gradients
  onnx.*           (ONNX files) the operator's own tensors: W, R, B, Y, Y_h, and its attributes
  directions       (ONNX files) which of numgru's directions (0 forward, 1 reverse) y and h_n hold
"""

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
T, B, I, H = 5, 3, 4, 3  # tiny on purpose: the files stay a few kB each


def _save(name, arrays):
    """np.savez_compressed, but with a fixed timestamp per entry so that reruns are byte-identical."""
    path = HERE / f"{name}.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    print(f"wrote {path.relative_to(HERE.parent.parent)} ({path.stat().st_size} bytes)")


def _param_names(num_layers, bidirectional, bias):
    names = []
    for k in range(num_layers):
        for s in ("", "_reverse") if bidirectional else ("",):
            names += [f"weight_ih_l{k}{s}", f"weight_hh_l{k}{s}"]
            if bias:
                names += [f"bias_ih_l{k}{s}", f"bias_hh_l{k}{s}"]
    return names


def _random_params(rng, names, input_size, dtype, bidirectional=False):
    """PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)), drawn from our Generator."""
    bound = 1.0 / np.sqrt(H)
    D = 2 if bidirectional else 1
    params = {}
    for name in names:
        layer = int(name.split("_l")[1][0])
        in_k = input_size if layer == 0 else D * H
        shape = {"weight_ih": (3 * H, in_k), "weight_hh": (3 * H, H)}.get(name[:9], (3 * H,))
        params[name] = rng.uniform(-bound, bound, shape).astype(dtype)
    return params


# -- PyTorch: reset_after=True, outputs and every gradient -------------------------------------------

def _torch_gru_file(name, seed, num_layers, bidirectional, batch_first, bias, dtype, lengths,
                    with_h0):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    names = _param_names(num_layers, bidirectional, bias)
    params = _random_params(rng, names, I, dtype, bidirectional)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((num_layers * D, B, H)).astype(dtype) if with_h0 else None
    y_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    dy = rng.standard_normal(y_shape).astype(dtype)  # also at padded steps: numgru must ignore them
    dh_n = rng.standard_normal((num_layers * D, B, H)).astype(dtype)

    tdtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    gru = torch.nn.GRU(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first,
                       bidirectional=bidirectional).to(tdtype)
    gru.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    xt = torch.from_numpy(x).requires_grad_(True)
    h0t = torch.from_numpy(h0).requires_grad_(True) if with_h0 else None
    if lengths is None:
        yt, hnt = gru(xt, h0t)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths, dtype=torch.int64),
                                      batch_first=batch_first, enforce_sorted=False)
        yp, hnt = gru(packed, h0t)
        yt, _ = pad_packed_sequence(yp, batch_first=batch_first, total_length=T)
    torch.autograd.backward([yt, hnt], [torch.from_numpy(dy), torch.from_numpy(dh_n)])

    out = {
        "meta.source": "torch.nn.GRU",
        "meta.versions": f"torch {torch.__version__}; numpy {np.__version__}; "
                         f"python {sys.version.split()[0]}",
        "meta.kind": "gru", "meta.seed": seed,
        "arg.input_size": I, "arg.hidden_size": H, "arg.num_layers": num_layers,
        "arg.bias": bias, "arg.batch_first": batch_first, "arg.bidirectional": bidirectional,
        "arg.reset_after": True, "arg.dtype": np.dtype(dtype).name,
        "x": x, "dy": dy, "dh_n": dh_n,
        "y": yt.detach().numpy(), "h_n": hnt.detach().numpy(),
        "grad.x": xt.grad.numpy(),
    }
    if with_h0:
        out["h0"] = h0
        out["grad.h0"] = h0t.grad.numpy()
    if lengths is not None:
        out["lengths"] = np.asarray(lengths, np.int64)
    for pname, p in gru.named_parameters():
        out[f"param.{pname}"] = params[pname]
        out[f"grad.{pname}"] = p.grad.numpy()
    _save(name, out)


def _torch_cell_file(name, seed, dtype):
    import torch

    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    params = {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H), "bias_ih": (3 * H,),
              "bias_hh": (3 * H,)}
    params = {k: rng.uniform(-bound, bound, s).astype(dtype) for k, s in params.items()}
    x = rng.standard_normal((B, I)).astype(dtype)
    h = rng.standard_normal((B, H)).astype(dtype)
    dh1 = rng.standard_normal((B, H)).astype(dtype)
    tdtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    cell = torch.nn.GRUCell(I, H).to(tdtype)
    cell.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    xt = torch.from_numpy(x).requires_grad_(True)
    ht = torch.from_numpy(h).requires_grad_(True)
    h1 = cell(xt, ht)
    h1.backward(torch.from_numpy(dh1))
    out = {
        "meta.source": "torch.nn.GRUCell",
        "meta.versions": f"torch {torch.__version__}; numpy {np.__version__}; "
                         f"python {sys.version.split()[0]}",
        "meta.kind": "cell", "meta.seed": seed,
        "arg.input_size": I, "arg.hidden_size": H, "arg.bias": True, "arg.reset_after": True,
        "arg.dtype": np.dtype(dtype).name,
        "x": x, "h0": h, "dh_n": dh1, "h_n": h1.detach().numpy(),
        "grad.x": xt.grad.numpy(), "grad.h0": ht.grad.numpy(),
    }
    for pname, p in cell.named_parameters():
        out[f"param.{pname}"] = params[pname]
        out[f"grad.{pname}"] = p.grad.numpy()
    _save(name, out)


# -- ONNX Runtime: the ONNX GRU operator, forward only ----------------------------------------------
#
# Semantics checked by experiment with onnxruntime 1.32 against torch's packed sequences and
# numgru's reference: with sequence_lens, ORT writes Y = 0 at t >= length, Y_h is the state after
# the last valid step, and the reverse direction starts at step length-1 of each sequence: the same
# as PyTorch's packed sequences, for every length in [1, T]. One corner differs: a length of 0 is
# legal in ONNX, and ORT then returns Y_h = 0 (not initial_h); numgru and PyTorch reject length 0,
# so these files only use lengths >= 1. ORT's CPU GRU runs float32 only ("GRU operator does not
# support double yet"), so every ONNX file is float32.

def _onnx_layout(w, H):
    """numgru's gate blocks (r, z, n along axis 0) in ONNX's order (z, r, h), written out by gate
    name here rather than taken from numgru.convert, so the files also check that module."""
    r, z, n = w[:H], w[H:2 * H], w[2 * H:]
    return np.concatenate([z, r, n], axis=0)


def _onnx_gru_file(name, seed, direction, linear_before_reset, lengths, bias=True):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    # numgru side: a bidirectional layer whenever ORT runs the reverse direction, so that
    # direction="reverse" is the `_reverse` half of a numgru layer.
    bidirectional = direction != "forward"
    names = _param_names(1, bidirectional, bias)
    params = _random_params(rng, names, I, np.float32, bidirectional)
    x = rng.standard_normal((B, T, I)).astype(np.float32)  # numgru batch_first layout
    D_numgru = 2 if bidirectional else 1
    h0 = rng.standard_normal((D_numgru, B, H)).astype(np.float32)
    directions = {"forward": [0], "reverse": [1], "bidirectional": [0, 1]}[direction]
    suffixes = ["", "_reverse"]

    W = np.stack([_onnx_layout(params[f"weight_ih_l0{suffixes[d]}"], H) for d in directions])
    R = np.stack([_onnx_layout(params[f"weight_hh_l0{suffixes[d]}"], H) for d in directions])
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    if bias:
        Bias = np.stack([np.concatenate([_onnx_layout(params[f"bias_ih_l0{suffixes[d]}"], H),
                                         _onnx_layout(params[f"bias_hh_l0{suffixes[d]}"], H)])
                         for d in directions])
        inits.append(numpy_helper.from_array(Bias, "B"))
    D = len(directions)
    node = helper.make_node("GRU", ["X", "W", "R", "B" if bias else "", "sequence_lens",
                                    "initial_h"], ["Y", "Y_h"], hidden_size=H,
                            direction=direction, linear_before_reset=linear_before_reset)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("X", f32, [T, B, I]),
         helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]),
         helper.make_tensor_value_info("initial_h", f32, [D, B, H])],
        [helper.make_tensor_value_info("Y", f32, [T, D, B, H]),
         helper.make_tensor_value_info("Y_h", f32, [D, B, H])],
        inits)
    opset = helper.make_opsetid("", 14)
    model = helper.make_model(graph, opset_imports=[opset], ir_version=7)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    Y, Y_h = sess.run(None, {"X": np.ascontiguousarray(x.transpose(1, 0, 2)),
                             "sequence_lens": np.asarray(lengths, np.int32),
                             "initial_h": h0[directions]})
    # Y [T, D, B, H] -> numgru's batch_first y (B, T, D*H), directions side by side.
    y = Y.transpose(2, 0, 1, 3).reshape(B, T, D * H)
    out = {
        "meta.source": "onnxruntime GRU operator (opset 14)",
        "meta.versions": f"onnxruntime {ort.__version__}; onnx {onnx.__version__}; "
                         f"numpy {np.__version__}; python {sys.version.split()[0]}",
        "meta.kind": "gru", "meta.seed": seed,
        "arg.input_size": I, "arg.hidden_size": H, "arg.num_layers": 1, "arg.bias": bias,
        "arg.batch_first": True, "arg.bidirectional": bidirectional,
        "arg.reset_after": bool(linear_before_reset), "arg.dtype": "float32",
        "x": x, "h0": h0, "lengths": np.asarray(lengths, np.int64),
        "y": y, "h_n": Y_h, "directions": np.asarray(directions, np.int64),
        "onnx.W": W, "onnx.R": R, "onnx.Y": Y, "onnx.Y_h": Y_h,
        "onnx.direction": direction, "onnx.linear_before_reset": linear_before_reset,
    }
    if bias:
        out["onnx.B"] = Bias
    out.update({f"param.{k}": v for k, v in params.items()})
    _save(name, out)


def main():
    # torch.nn.GRU: 1 and 2 layers, bidirectional, packed variable lengths, both dtypes.
    _torch_gru_file("torch_gru_l1_f64", 101, 1, False, True, True, np.float64, None, True)
    _torch_gru_file("torch_gru_l2_bi_packed_f64", 102, 2, True, True, True, np.float64,
                    [5, 2, 4], True)
    _torch_gru_file("torch_gru_l2_packed_timemajor_f32", 103, 2, False, False, True, np.float32,
                    [3, 5, 1], False)
    _torch_gru_file("torch_gru_l2_bi_packed_nobias_f32", 104, 2, True, True, False, np.float32,
                    [4, 1, 5], True)
    _torch_gru_file("torch_gru_l1_bi_packed_f32", 105, 1, True, True, True, np.float32,
                    [2, 5, 3], True)
    _torch_cell_file("torch_grucell_f64", 111, np.float64)
    _torch_cell_file("torch_grucell_f32", 112, np.float32)
    # ONNX Runtime: linear_before_reset=0 (numgru reset_after=False) in every direction with
    # sequence_lens, and linear_before_reset=1 (reset_after=True).
    _onnx_gru_file("onnx_gru_forward_lbr0", 201, "forward", 0, [5, 2, 4])
    _onnx_gru_file("onnx_gru_reverse_lbr0", 202, "reverse", 0, [3, 5, 1])
    _onnx_gru_file("onnx_gru_bidirectional_lbr0", 203, "bidirectional", 0, [1, 4, 5])
    _onnx_gru_file("onnx_gru_forward_lbr0_nobias", 204, "forward", 0, [5, 5, 5], bias=False)
    _onnx_gru_file("onnx_gru_bidirectional_lbr1", 205, "bidirectional", 1, [2, 5, 3])


if __name__ == "__main__":
    main()
