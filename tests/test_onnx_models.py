"""Whole models in and out of ONNX: ng.export_onnx checked by onnx.checker (full_check) and run by
ONNX Runtime against numgru; ng.load_onnx on graphs written by torch.onnx.export (the TorchScript
and the dynamo exporters) from torch.nn.GRU and the seed's GRUModel, compared with torch; the round
trip; and the errors for graphs numgru cannot map.

Tolerances: ONNX Runtime runs float32 with its own sigmoid/tanh; test_onnx.py measured <= 3e-7 on
one layer, and two stacked layers and a head add a few roundings: 2e-6 relative to the tensor's
scale. torch vs numgru: 2e-6 likewise (test_torch.py's float32 rule). A numgru model loaded back
from its own export holds the same float32 weights, so its outputs are compared for equality.
"""

import itertools
import os
import warnings

import numpy as np
import pytest

import numgru as ng

from helpers import assert_close, require

ort = require("onnxruntime")
onnx = require("onnx")

TOL = 2e-6


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def _feeds(with_lengths, with_h0, x, lengths, h0):
    feed = {"x": x}
    if with_lengths:
        feed["lengths"] = lengths
    if with_h0:
        feed["h0"] = h0
    return feed


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True), (2, False)])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_gru_export_matches_onnxruntime_and_round_trips(tmp_path, rng, layers, bidirectional,
                                                        reset_after, batch_first):
    I, H, B, T = 3, 5, 4, 6
    gru = ng.GRU(I, H, num_layers=layers, bidirectional=bidirectional, reset_after=reset_after,
                 batch_first=batch_first, device="cpu", seed=int(rng.integers(1 << 30)))
    D = gru.num_directions
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    lengths = np.array([6, 1, 4, 3], np.int64)  # unsorted, with the extremes 1 and T
    h0 = rng.standard_normal((layers * D, B, H)).astype(np.float32)
    for with_lengths, with_h0 in itertools.product([False, True], repeat=2):
        path = tmp_path / f"gru_{with_lengths}_{with_h0}.onnx"
        ng.export_onnx(gru, path, lengths=with_lengths, h0=with_h0)
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                for i in model.graph.input]
        assert dims[0] == (["batch", "time", I] if batch_first else ["time", "batch", I])
        assert [i.name for i in model.graph.input] == \
            ["x"] + ["lengths"] * with_lengths + ["h0"] * with_h0
        assert all(a.i == 0 for n in model.graph.node if n.op_type == "GRU"
                   for a in n.attribute if a.name == "layout")
        y_ort, h_ort = _session(path).run(None, _feeds(with_lengths, with_h0, x, lengths, h0))
        y, h_n = gru(x, h0 if with_h0 else None, lengths if with_lengths else None)
        assert_close("y", y_ort, y, TOL)
        assert_close("h_n", h_ort, h_n, TOL)
        back = ng.load_onnx(path)
        assert isinstance(back, ng.GRU)
        assert (back.num_layers, back.bidirectional, back.reset_after, back.batch_first) == \
            (layers, bidirectional, reset_after, batch_first)
        y2, h2 = back(x, h0 if with_h0 else None, lengths if with_lengths else None)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(h2, h_n)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("head", ["last", "sequence"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_model_export_matches_onnxruntime_and_round_trips(tmp_path, rng, layers,
                                                              bidirectional, head, reset_after):
    I, H, O, B, T = 3, 5, 4, 4, 6
    model = ng.GRUModel(I, H, O, num_layers=layers, bidirectional=bidirectional, head=head,
                        reset_after=reset_after, device="cpu", seed=int(rng.integers(1 << 30)))
    D = 2 if bidirectional else 1
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([6, 1, 4, 3], np.int64)
    h0 = rng.standard_normal((layers * D, B, H)).astype(np.float32)
    for with_lengths, with_h0 in itertools.product([False, True], repeat=2):
        path = tmp_path / f"model_{with_lengths}_{with_h0}.onnx"
        ng.export_onnx(model, path, lengths=with_lengths, h0=with_h0)
        onnx.checker.check_model(onnx.load(path), full_check=True)
        out_ort, h_ort = _session(path).run(None, _feeds(with_lengths, with_h0, x, lengths, h0))
        out, h_n = model.forward(x, lengths=lengths if with_lengths else None,
                                 h0=h0 if with_h0 else None, return_state=True)
        assert_close("out", out_ort, out, TOL)
        assert_close("h_n", h_ort, h_n, TOL)
        if head == "sequence" and with_lengths:
            assert np.all(out_ort[1, 1:] == 0)  # 0 past each length, not the bias
        back = ng.load_onnx(path)
        assert isinstance(back, ng.GRUModel) and back.config() == model.config()
        out2 = back(x, lengths=lengths if with_lengths else None, h0=h0 if with_h0 else None)
        np.testing.assert_array_equal(out2, out)


def test_export_other_batch_and_time_sizes_and_opsets(tmp_path, rng):
    """Batch and time are symbolic: the same file runs any size; opsets 14 to 21 all work."""
    model = ng.GRUModel(2, 6, 3, num_layers=2, device="cpu", seed=3)
    for opset in (14, 17, 21):
        path = tmp_path / f"m{opset}.onnx"
        proto = ng.export_onnx(model, path, opset=opset, lengths=True)
        assert proto.opset_import[0].version == opset
        sess = _session(path)
        for B, T in ((1, 1), (7, 2), (3, 11)):
            x = rng.standard_normal((B, T, 2)).astype(np.float32)
            lengths = rng.integers(1, T + 1, B)
            out, _ = sess.run(None, {"x": x, "lengths": lengths})
            assert_close("out", out, model(x, lengths=lengths), TOL)


def test_export_float64_and_no_bias(tmp_path, rng):
    """A float64 model exports as DOUBLE (valid ONNX; ONNX Runtime's GRU kernel runs float32
    only) and loads back as float64; a GRU without biases round-trips as one without biases."""
    model = ng.GRUModel(3, 4, 2, bidirectional=True, dtype="float64", device="cpu", seed=1)
    ng.export_onnx(model, tmp_path / "m64.onnx", lengths=True)
    back = ng.load_onnx(tmp_path / "m64.onnx")
    assert back.dtype == np.float64
    x = rng.standard_normal((3, 5, 3))
    lengths = np.array([5, 2, 3])
    np.testing.assert_array_equal(back(x, lengths=lengths), model(x, lengths=lengths))
    gru = ng.GRU(3, 4, bias=False, device="cpu", seed=2)
    ng.export_onnx(gru, tmp_path / "nobias.onnx")
    back = ng.load_onnx(tmp_path / "nobias.onnx")
    assert not back.bias and sorted(back.state_dict()) == sorted(gru.state_dict())
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(back(x32)[0], gru(x32)[0])
    y_ort, _ = _session(tmp_path / "nobias.onnx").run(None, {"x": x32})
    assert_close("y", y_ort, gru(x32)[0], TOL)


@pytest.mark.parametrize("reset_after", [True, False])
def test_float64_export_runs_in_onnx_reference_evaluator(tmp_path, rng, reset_after):
    """What a float64 file computes, run by onnx's reference evaluator (NumPy, float64, ONNX's own
    GRU equations) and compared with numgru's NumPy reference (device="numpy"), not with the
    exported CPU model: TOL64 as test_torch.py's float64 rule. The evaluator ignores a GRU node's
    sequence_lens, so every sequence here runs the full T steps (the lengths input still feeds
    the graph's last-valid-step gather)."""
    from onnx.reference import ReferenceEvaluator
    TOL64 = 1e-12
    I, H, O, B, T = 3, 4, 2, 3, 5
    args = dict(num_layers=2, bidirectional=True, reset_after=reset_after, dtype="float64")
    model = ng.GRUModel(I, H, O, device="cpu", seed=1, **args)
    ref = ng.GRUModel(I, H, O, device="numpy", **args)
    ref.load_state_dict(model.state_dict())
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((4, B, H))
    lengths = np.full(B, T, np.int64)
    ng.export_onnx(model, tmp_path / "m64.onnx", lengths=True, h0=True)
    proto = onnx.load(tmp_path / "m64.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    out, h_n = ReferenceEvaluator(proto).run(None, {"x": x, "lengths": lengths, "h0": h0})
    want, want_h = ref.forward(x, lengths=lengths, h0=h0, return_state=True)
    assert out.dtype == np.float64 and h_n.dtype == np.float64
    assert_close("out", out, want, TOL64)
    assert_close("h_n", h_n, want_h, TOL64)
    # A layer on its own, time-major, without lengths or h0: y at every step.
    gru = ng.GRU(I, H, reset_after=reset_after, batch_first=False, dtype="float64", device="cpu",
                 seed=2)
    ref_gru = ng.GRU(I, H, reset_after=reset_after, batch_first=False, dtype="float64",
                     device="numpy")
    ref_gru.load_state_dict(gru.state_dict())
    ng.export_onnx(gru, tmp_path / "g64.onnx")
    xt = rng.standard_normal((T, B, I))
    y, h_n = ReferenceEvaluator(onnx.load(tmp_path / "g64.onnx")).run(None, {"x": xt})
    want_y, want_h = ref_gru(xt)
    assert_close("y", y, want_y, TOL64)
    assert_close("h_n", h_n, want_h, TOL64)


def test_export_is_atomic_and_checks_its_arguments(tmp_path):
    gru = ng.GRU(2, 3, device="cpu", seed=0)
    path = tmp_path / "g.onnx"
    ng.export_onnx(gru, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"opset: expected an integer in \[14, "):
        ng.export_onnx(gru, path, opset=9)
    with pytest.raises(TypeError, match="model: expected a numgru GRU or GRUModel, got GRUCell"):
        ng.export_onnx(ng.GRUCell(2, 3), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["g.onnx"]  # no temporary file left behind


# -- models written by torch.onnx.export ------------------------------------------------------------

def _torch_export(module, x, path, dynamo, outputs):
    torch = require("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            require("onnxscript")
            dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("time", min=2)}
            torch.onnx.export(module, (x,), path, dynamo=True, input_names=["x"],
                              output_names=outputs, dynamic_shapes=(dims,), verbose=False)
        else:
            torch.onnx.export(module, (x,), path, dynamo=False, input_names=["x"],
                              output_names=outputs, dynamic_axes={"x": {0: "batch", 1: "time"}})


# The TorchScript exporter is quick; the dynamo exporter takes about 2 s a model, so it gets the
# hardest shapes only.
TORCH_GRU_CASES = [(False, 1, False, True), (False, 2, True, True), (False, 2, True, False),
                   (False, 1, True, False), (True, 2, True, True)]


@pytest.mark.parametrize("dynamo,layers,bidirectional,batch_first", TORCH_GRU_CASES)
def test_load_torch_exported_gru(tmp_path, dynamo, layers, bidirectional, batch_first):
    torch = require("torch")
    torch.manual_seed(layers + 2 * bidirectional)
    tgru = torch.nn.GRU(3, 5, num_layers=layers, bidirectional=bidirectional,
                        batch_first=batch_first).eval()
    example = torch.randn((2, 4, 3) if batch_first else (4, 2, 3))
    path = tmp_path / "torch_gru.onnx"
    _torch_export(tgru, example, path, dynamo, ["y", "h_n"])
    gru = ng.load_onnx(path)
    assert isinstance(gru, ng.GRU) and gru.batch_first == batch_first
    assert (gru.num_layers, gru.bidirectional, gru.reset_after) == (layers, bidirectional, True)
    x = torch.randn((3, 7, 3) if batch_first else (7, 3, 3))  # other sizes than the export's
    with torch.no_grad():
        y_t, h_t = tgru(x)
    y, h_n = gru(x.numpy())
    assert_close("y", y, y_t.numpy(), TOL)
    assert_close("h_n", h_n, h_t.numpy(), TOL)


class _SeedDocumentModel:
    """Built on first use (torch is imported lazily): the seed document's GRUModel, verbatim in
    what it computes: zero h0, batch-first GRU, fc(out[:, -1, :])."""

    @staticmethod
    def make(input_size, hidden_size, output_size, num_layers):
        torch = require("torch")

        class GRUModel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.hidden_size, self.num_layers = hidden_size, num_layers
                self.gru = torch.nn.GRU(input_size, hidden_size, num_layers, batch_first=True)
                self.fc = torch.nn.Linear(hidden_size, output_size)

            def forward(self, x):
                h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size)
                out, _ = self.gru(x, h0)
                return self.fc(out[:, -1, :])

        return GRUModel()


@pytest.mark.parametrize("dynamo,which", [(False, "document"), (False, "seed_bidirectional"),
                                          (True, "seed_bidirectional")])
def test_load_torch_exported_seed_model(tmp_path, dynamo, which):
    torch = require("torch")
    from _seed_torch import SeedGRUModel, numpy_state
    torch.manual_seed(7)
    if which == "document":
        tmodel = _SeedDocumentModel.make(10, 20, 1, 2).eval()
    else:
        tmodel = SeedGRUModel(4, 6, 3, num_layers=2, bidirectional=True).eval()
    I = tmodel.gru.input_size
    path = tmp_path / "seed.onnx"
    _torch_export(tmodel, torch.randn(2, 4, I), path, dynamo, ["out"])
    model = ng.load_onnx(path)
    assert isinstance(model, ng.GRUModel) and model.head == "last"
    x = torch.randn(5, 9, I)
    with torch.no_grad():
        want = tmodel(x).numpy()
    assert_close("out", model(x.numpy()), want, TOL)
    # The weights are torch's own, under torch's names.
    for name, value in numpy_state(tmodel).items():
        np.testing.assert_array_equal(model.state_dict()[name], value)


# -- graphs numgru refuses --------------------------------------------------------------------------

def _exported(tmp_path, **kw):
    model = ng.GRUModel(3, 4, 2, device="cpu", seed=0, **kw)
    path = tmp_path / "base.onnx"
    ng.export_onnx(model, path, lengths=True)
    return onnx.load(path)


def _gru_node(proto):
    return next(n for n in proto.graph.node if n.op_type == "GRU")


def _load_mutated(tmp_path, proto):
    path = tmp_path / "mutated.onnx"
    onnx.save(proto, path)
    return ng.load_onnx(path)


@pytest.mark.parametrize("attribute,value,message", [
    ("activations", ["Relu", "Tanh"], r"activations \['Relu', 'Tanh'\]: numgru's GRU computes "
                                      r"sigmoid gates"),
    ("clip", 3.0, "clip=3.0: numgru's GRU does not clip"),
    ("direction", "reverse", "backward-only GRU"),
])
def test_unmappable_gru_attributes(tmp_path, attribute, value, message):
    proto = _exported(tmp_path)
    node = _gru_node(proto)
    kept = [a for a in node.attribute if a.name != attribute]
    del node.attribute[:]
    node.attribute.extend(kept + [onnx.helper.make_attribute(attribute, value)])
    with pytest.raises(ng.OnnxImportError, match=message):
        _load_mutated(tmp_path, proto)


def test_unmappable_operators_and_inputs(tmp_path):
    # Another operator after the head.
    proto = _exported(tmp_path)
    out = next(n for n in proto.graph.node if "out" in n.output)
    out.output[0] = "logits"
    proto.graph.node.append(onnx.helper.make_node("Relu", ["logits"], ["out"], name="relu"))
    with pytest.raises(ng.OnnxImportError, match=r"node 'relu' \(Relu\): operator Relu has no "
                                                 r"numgru counterpart"):
        _load_mutated(tmp_path, proto)
    # A learned (constant, non-zero) initial state.
    proto = _exported(tmp_path)
    node = _gru_node(proto)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(
        np.ones((1, 1, 4), np.float32), "learned_h0"))
    node.input[5] = "learned_h0"
    with pytest.raises(ng.OnnxImportError, match="learned initial state"):
        _load_mutated(tmp_path, proto)
    # The head reads the last step while the GRU takes lengths: not numgru's last valid step.
    gru_only = ng.GRU(3, 4, device="cpu", seed=0)
    ng.export_onnx(gru_only, tmp_path / "g.onnx", lengths=True)
    proto = onnx.load(tmp_path / "g.onnx")
    y_node = next(n for n in proto.graph.node if "y" in n.output)
    y_node.output[0] = "y_seq"
    h = onnx.helper
    proto.graph.node.extend([
        h.make_node("Gather", ["y_seq", "minus_one"], ["y_last"], axis=1, name="take_last"),
        h.make_node("Gemm", ["y_last", "w", "b"], ["out"], transB=1, name="head")])
    proto.graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array(-1, np.int64), "minus_one"),
        onnx.numpy_helper.from_array(np.ones((2, 4), np.float32), "w"),
        onnx.numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    del proto.graph.output[:]
    proto.graph.output.append(h.make_tensor_value_info("out", onnx.TensorProto.FLOAT,
                                                       ["batch", 2]))
    with pytest.raises(ng.OnnxImportError, match="reads the last time step while the GRU takes "
                                                 "lengths"):
        _load_mutated(tmp_path, proto)
    # A head on a step that is not the last.
    del proto.graph.initializer[-3]
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1, np.int64),
                                                                "minus_one"))
    with pytest.raises(ng.OnnxImportError, match=r"takes time step\(s\) \[1\]"):
        _load_mutated(tmp_path, proto)


def test_files_that_are_not_models(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 this is not protobuf \xff\xff")
    with pytest.raises(ng.OnnxImportError, match="junk.onnx: not a readable ONNX model"):
        ng.load_onnx(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ng.load_onnx(tmp_path / "missing.onnx")
    h = onnx.helper
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"], name="r")], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", "t", 3])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", "t", 3])])
    onnx.save(h.make_model(graph), tmp_path / "relu.onnx")
    with pytest.raises(ng.OnnxImportError, match="operator Relu has no numgru counterpart"):
        ng.load_onnx(tmp_path / "relu.onnx")


def test_load_layout_1_graph_against_onnx_reference_evaluator(tmp_path, rng):
    """Other tools write GRU nodes with layout=1 (batch-major), which ONNX Runtime refuses: the
    importer maps them too, checked against onnx's reference evaluator."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    from numgru import convert
    I, H, D = 3, 4, 2
    source = ng.GRU(I, H, bidirectional=True, device="cpu", seed=5)
    W, R, B = convert.to_onnx_weights(source.state_dict())
    nodes = [helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "Y_h"], name="gru", hidden_size=H,
                              direction="bidirectional", linear_before_reset=1, layout=1),
             helper.make_node("Reshape", ["Y", "shape"], ["y"], name="merge")]  # [B, T, D·H]
    inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
    inits.append(numpy_helper.from_array(np.array([0, 0, D * H], np.int64), "shape"))
    graph = helper.make_graph(
        nodes, "layout1", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", I])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", D * H])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(proto, tmp_path / "layout1.onnx")
    gru = ng.load_onnx(tmp_path / "layout1.onnx")
    assert gru.batch_first and gru.bidirectional
    x = rng.standard_normal((2, 5, I)).astype(np.float32)
    (want,) = ReferenceEvaluator(proto).run(None, {"x": x})
    assert_close("y", gru(x)[0], want, TOL)
