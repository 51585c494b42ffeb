"""Whole models to and from ONNX files: `export_onnx` writes a numgru GRU or GRUModel as one ONNX
graph of GRU operators (and the Linear head); `load_onnx` builds a numgru GRU or GRUModel from such a
graph, whoever wrote it (numgru, torch.onnx.export's TorchScript or dynamo exporters, other tools).

Export. The graph takes `x` with symbolic batch and time (batch_first as the model's), and, when
asked for, `lengths` (int64, one per sequence: PyTorch's packed-sequence semantics) and `h0`
(num_layers·D, batch, H). It gives what numgru gives: a GRU's `y` and `h_n`; a GRUModel's `out`
(the head on each sequence's last valid step, or on every step with head="sequence", 0 past each
length) and `h_n`. Each layer is one ONNX GRU node, time-major (ONNX Runtime refuses the operator's
layout=1, so the graph transposes instead), linear_before_reset = reset_after, gates z, r, h.

Import. The file is parsed by onnx's protobuf reader; nothing in it is executed. `load_onnx` follows
the graph with symbolic tensors: every value is a constant (initializers, Constant nodes, shape
arithmetic, folded here with numpy at two probe sizes of batch and time, so that a constant that
holds one particular size is caught) or a labelled view of the input, a layer's output or state, the
lengths, or the head's output. GRU nodes, a MatMul(+Add) or Gemm head, the gather of the last (valid)
step, the mask of a per-step head and the usual plumbing (Transpose, Reshape, Squeeze, Slice, Concat,
Cast, ...) map onto numgru; anything else (another operator, activations other than sigmoid/tanh,
`clip`, a learned initial state, a backward-only GRU) raises OnnxImportError naming the node.
Needs the onnx package (imported when called; `pip install onnx`).
"""

import json
import os

import numpy as np

from .._checks import is_int
from .._version import __version__
from ..convert import from_onnx_weights, to_onnx_weights
from ..errors import OnnxImportError
from .atomic import atomic_write

MIN_OPSET = 14  # GRU-14 (and Unsqueeze/Slice taking tensors, GatherND batch_dims) and later
DEFAULT_OPSET = 17
_ELEM = {"float32": 1, "float64": 11}  # onnx.TensorProto.FLOAT, DOUBLE


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX files need the onnx package: pip install onnx") from None
    return onnx


# -- export -----------------------------------------------------------------------------------------

def export_onnx(model, path, opset=DEFAULT_OPSET, lengths=False, h0=False, metadata=None):
    """Write a numgru GRU or GRUModel to `path` as one ONNX model (written atomically).

    lengths=True adds the graph input `lengths` (int64 (batch,), each in [1, time]); h0=True adds
    `h0` (num_layers·D, batch, H). Inputs: `x` (batch, time, input_size) ((time, batch, input_size)
    for a GRU with batch_first=False), batch and time symbolic. Outputs: a GRU's `y` and `h_n`, a
    GRUModel's `out` and `h_n`, as numgru computes them. opset: 14 or later (default 17). The
    model's dtype is kept (ONNX Runtime's CPU GRU kernel runs float32 only). metadata: extra
    str -> str entries for the model's metadata_props. Returns the onnx.ModelProto, which passes
    onnx.checker.check_model(full_check=True).
    """
    onnx = _import_onnx()
    from ..layers import GRU
    from ..model import GRUModel
    if isinstance(model, GRUModel):
        gru, head = model.gru, model
    elif isinstance(model, GRU):
        gru, head = model, None
    else:
        raise TypeError(f"model: expected a numgru GRU or GRUModel, got {type(model).__name__}")
    latest = onnx.defs.onnx_opset_version()
    if not (is_int(opset, MIN_OPSET) and opset <= latest):
        raise ValueError(f"opset: expected an integer in [{MIN_OPSET}, {latest}] (the installed "
                         f"onnx supports up to {latest}), got {opset!r}")
    proto = _build_graph(onnx, gru, head, int(opset), bool(lengths), bool(h0))
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata: expected str -> str, got {key!r}: {type(value).__name__}")
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    atomic_write(os.fspath(path), data)
    return proto


def _build_graph(onnx, gru, head, opset, with_lengths, with_h0):
    from onnx import TensorProto, helper, numpy_helper
    dtype = gru.dtype
    elem = _ELEM[dtype.name]
    L, D, H, I = gru.num_layers, gru.num_directions, gru.hidden_size, gru.input_size
    sd = gru.state_dict()
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, outputs, **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))
        return outputs[0]

    batch_first = True if head is not None else gru.batch_first
    x_dims = ["batch", "time", I] if batch_first else ["time", "batch", I]
    inputs = [helper.make_tensor_value_info("x", elem, x_dims)]
    seq = node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]) if batch_first else "x"
    seq_lens = ""
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]))
        seq_lens = node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32)
    if with_h0:
        inputs.append(helper.make_tensor_value_info("h0", elem, [L * D, "batch", H]))
    if with_h0 or (head is not None and head.head == "sequence" and with_lengths):
        const("axis0", np.array([0], np.int64))
    const("keep_time_batch", np.array([0, 0, D * H], np.int64))
    states = []
    direction = "bidirectional" if D == 2 else "forward"
    for k in range(L):
        W, R, B = to_onnx_weights(sd, layer=k, direction=direction)
        w = const(f"W_l{k}", W.astype(dtype))
        r = const(f"R_l{k}", R.astype(dtype))
        b = const(f"B_l{k}", B.astype(dtype)) if B is not None else ""
        init_h = ""
        if with_h0:
            init_h = node("Slice", ["h0", const(f"h0_start_l{k}", np.array([k * D], np.int64)),
                                    const(f"h0_end_l{k}", np.array([(k + 1) * D], np.int64)),
                                    "axis0"], [f"h0_l{k}"])
        y_k, h_k = f"Y_l{k}", f"Y_h_l{k}"  # Y [time, D, batch, H], Y_h [D, batch, H]
        node("GRU", [seq, w, r, b, seq_lens, init_h], [y_k, h_k], hidden_size=H,
             direction=direction, linear_before_reset=int(gru.reset_after))
        tbdh = node("Transpose", [y_k], [f"Y_tbdh_l{k}"], perm=[0, 2, 1, 3])
        seq = node("Reshape", [tbdh, "keep_time_batch"], [f"y_l{k}"])  # [time, batch, D·H]
        states.append(h_k)
    if L > 1:
        node("Concat", states, ["h_n"], axis=0)
    else:
        node("Identity", states, ["h_n"])
    state_info = helper.make_tensor_value_info("h_n", elem, [L * D, "batch", H])
    if head is None:
        if batch_first:
            node("Transpose", [seq], ["y"], perm=[1, 0, 2])
        else:
            node("Identity", [seq], ["y"])
        y_dims = ["batch", "time", D * H] if batch_first else ["time", "batch", D * H]
        outputs = [helper.make_tensor_value_info("y", elem, y_dims), state_info]
    else:
        fc = head.fc.state_dict()
        weight, bias = fc["weight"].astype(dtype), fc["bias"].astype(dtype)
        O = head.output_size
        if head.head == "last":
            if with_lengths:
                bt = node("Transpose", [seq], ["y_batch_major"], perm=[1, 0, 2])
                last = node("Sub", ["lengths", const("one", np.array(1, np.int64))], ["last_step"])
                index = node("Unsqueeze", [last, const("axis1", np.array([1], np.int64))],
                             ["last_step_index"])  # [batch, 1]
                picked = node("GatherND", [bt, index], ["y_last"], batch_dims=1)  # [batch, D·H]
            else:
                picked = node("Gather", [seq, const("minus_one", np.array(-1, np.int64))],
                              ["y_last"], axis=0)  # [batch, D·H]
            node("Gemm", [picked, const("fc.weight", weight), const("fc.bias", bias)], ["out"],
                 transB=1)
            out_dims = ["batch", O]
        else:
            bt = node("Transpose", [seq], ["y_batch_major"], perm=[1, 0, 2])
            product = node("MatMul", [bt, const("fc.weight_t", np.ascontiguousarray(weight.T))],
                           ["fc_product"])
            if with_lengths:
                affine = node("Add", [product, const("fc.bias", bias)], ["fc_out"])
                shape = node("Shape", ["x"], ["x_shape"])
                steps = node("Gather", [shape, const("one", np.array(1, np.int64))], ["steps"])
                t = node("Range", [const("zero", np.array(0, np.int64)), steps, "one"],
                         ["time_index"])
                t_row = node("Unsqueeze", [t, "axis0"], ["time_row"])  # [1, time]
                len_col = node("Unsqueeze", ["lengths", const("axis1", np.array([1], np.int64))],
                               ["lengths_column"])  # [batch, 1]
                valid = node("Less", [t_row, len_col], ["valid"])  # [batch, time]
                mask = node("Cast", [valid], ["valid_float"], to=elem)
                mask3 = node("Unsqueeze", [mask, const("axis2", np.array([2], np.int64))],
                             ["valid_mask"])
                node("Mul", [affine, mask3], ["out"])
            else:
                node("Add", [product, const("fc.bias", bias)], ["out"])
            out_dims = ["batch", "time", O]
        outputs = [helper.make_tensor_value_info("out", elem, out_dims), state_info]
    graph = helper.make_graph(nodes, "numgru_" + ("GRUModel" if head is not None else "GRU"),
                              inputs, outputs, initializer=inits)
    opset_id = helper.make_opsetid("", opset)
    proto = helper.make_model(graph, opset_imports=[opset_id], producer_name="numgru",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for([opset_id]))
    config = head.config() if head is not None else {
        "input_size": I, "hidden_size": H, "num_layers": L, "bias": gru.bias,
        "batch_first": gru.batch_first, "bidirectional": gru.bidirectional,
        "reset_after": gru.reset_after, "dtype": dtype.name}
    helper.set_model_props(proto, {"numgru.class": "GRUModel" if head is not None else "GRU",
                                   "numgru.config": json.dumps(config)})
    proto.doc_string = ("numgru " + ("GRUModel" if head is not None else "GRU") + ": inputs "
                        + ", ".join(i.name for i in inputs) + "; outputs "
                        + ", ".join(o.name for o in outputs))
    return proto


# -- import -----------------------------------------------------------------------------------------

_PROBES = ((2, 3), (3, 5))  # (batch, time) sizes the graph is followed at when they are symbolic
_ACTIVATIONS = ("sigmoid", "tanh")


class _Sym:
    """A tensor that depends on the graph's inputs, described by what it is and what its axes are.

    kind: "x" (the input sequences), "h0" (initial states), "len" (lengths, `offset` added),
    "mask" (valid steps), "y" (a layer's outputs; `step` None, "last" or "last_valid"), "hn" (final
    states), "out" (the head's output). axes: one tuple of atoms per axis, outermost first; atoms
    are "B", "T", "F" (input features), "D", "H", "O", "S" (state blocks, `blocks` says which).
    """

    def __init__(self, kind, axes, sizes, **attrs):
        self.kind, self.axes, self.sizes = kind, tuple(tuple(a) for a in axes), sizes
        self.layer = attrs.get("layer")
        self.step = attrs.get("step")
        self.blocks = attrs.get("blocks")
        self.offset = attrs.get("offset", 0)
        self.masked = attrs.get("masked", False)
        self.head = attrs.get("head")  # (weight (O, DH), bias (O,), "last" | "sequence")

    def replace(self, **changes):
        attrs = dict(layer=self.layer, step=self.step, blocks=self.blocks, offset=self.offset,
                     masked=self.masked, head=self.head)
        axes = changes.pop("axes", self.axes)
        kind = changes.pop("kind", self.kind)
        attrs.update(changes)
        return _Sym(kind, axes, self.sizes, **attrs)

    def atom_size(self, atom):
        return len(self.blocks) if atom == "S" else self.sizes[atom]

    @property
    def shape(self):
        return tuple(int(np.prod([self.atom_size(a) for a in axis], dtype=np.int64))
                     for axis in self.axes)

    def layout(self):
        """The axes with size-1 atoms left out: what two layouts are compared by."""
        return tuple(tuple(a for a in axis if self.atom_size(a) != 1) for axis in self.axes)

    def describe(self):
        names = {"x": "the input x", "h0": "the initial state h0", "len": "the lengths",
                 "mask": "the valid-step mask", "y": f"layer {self.layer}'s outputs",
                 "hn": "final states", "out": "the head's output"}
        dims = "[" + ", ".join("·".join(a) if a else "1" for a in self.axes) + "]"
        return f"{names[self.kind]} {dims}"


def _same_layout(sym, want):
    """Whether sym's axes are `want` (tuples of atoms), size-1 atoms ignored on both sides."""
    want = tuple(tuple(a for a in axis if sym.atom_size(a) != 1) for axis in want)
    return sym.layout() == want


class _Fail(Exception):
    pass


class _Follow:
    """One pass over the graph at one probe size, under one reading of its inputs."""

    def __init__(self, onnx, graph, roles, batch_first, probe, opset):
        self.onnx, self.graph, self.roles, self.batch_first = onnx, graph, roles, batch_first
        self.opset = opset
        self.env = {}
        self.layers = []
        self.done = 0  # nodes followed, for choosing the most telling error
        self.sizes = {}
        self.probe = probe
        self.node = None

    # -- errors --

    def fail(self, message):
        where = ""
        if self.node is not None:
            n = self.node
            where = f"node {n.name or '(unnamed)'!r} ({n.op_type}): "
        raise _Fail(where + message)

    # -- inputs --

    def bind_inputs(self, inits):
        from onnx import helper
        for name, value in inits.items():
            self.env[name] = value
        B, T = self.probe
        for vi in self.graph.input:
            if vi.name in inits:
                continue
            role = self.roles.get(vi.name)
            dims = _dims(vi)
            if role == "x":
                I = dims[2]
                self.sizes.update(B=B, T=T, F=I)
                axes = [("B",), ("T",), ("F",)] if self.batch_first else [("T",), ("B",), ("F",)]
                self.env[vi.name] = _Sym("x", axes, self.sizes)
                self.x_dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            elif role == "len":
                self.env[vi.name] = _Sym("len", [("B",)], self.sizes)
            elif role == "h0":
                LD, H = dims[0], dims[2]
                if not isinstance(LD, int) or not isinstance(H, int) or LD < 1 or H < 1:
                    self.fail(f"graph input {vi.name!r} (initial states) needs fixed first and "
                              f"last dimensions (num_layers·D, hidden_size), got {dims}")
                self.sizes["H"] = H
                self.env[vi.name] = _Sym("h0", [("S",), ("B",), ("H",)], self.sizes,
                                         blocks=tuple(range(LD)))

    # -- the walk --

    def value(self, name):
        if name == "":
            return None
        if name not in self.env:
            self.fail(f"input {name!r} is not produced by any node, initializer or graph input")
        return self.env[name]

    def run(self, nodes):
        for node in nodes:
            self.node = node
            if node.domain not in ("", "ai.onnx"):
                self.fail(f"operator domain {node.domain!r} is not ONNX's standard one; numgru "
                          f"maps standard GRU graphs only")
            ins = [self.value(n) for n in node.input]
            attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
            if all(v is None or isinstance(v, np.ndarray) for v in ins) and \
                    node.op_type in _FOLD and node.op_type != "GRU":
                outs = np.asarray(_FOLD[node.op_type](self, ins, attrs, node))
            elif node.op_type in _SYMBOLIC:
                outs = _SYMBOLIC[node.op_type](self, ins, attrs, node)
            else:
                self.fail(_unsupported(node.op_type))
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, v in zip(node.output, outs):
                if name:
                    self.env[name] = v
            self.done += 1
        self.node = None


def _unsupported(op):
    return (f"operator {op} has no numgru counterpart here (numgru maps GRU nodes, a MatMul/Add or "
            f"Gemm head, the selection of the last (valid) step, a per-step mask and tensor "
            f"plumbing such as Transpose, Reshape, Squeeze, Slice, Gather, Concat and Cast)")


def _dims(vi):
    shape = vi.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _ints(v, what, follow):
    if not isinstance(v, np.ndarray):
        follow.fail(f"{what} must be a constant, got {v.describe()}")
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _axes_arg(follow, ins, attrs, index=1):
    if len(ins) > index and ins[index] is not None:
        return _ints(ins[index], "axes", follow)
    return list(attrs["axes"]) if "axes" in attrs else None


def _norm(axis, rank, follow):
    if not -rank <= axis < rank:
        follow.fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank


# -- constant folding: every input known, computed with numpy ---------------------------------------

def _np_dtype(elem):
    from onnx import helper
    return helper.tensor_dtype_to_np_dtype(elem)


def _fold_constant(f, ins, attrs, node):
    from onnx import numpy_helper
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype)
    f.fail("a Constant without a numeric value")


def _slice_args(f, ins, attrs):
    """A Slice node's (starts, ends, axes, steps), from its inputs (opset 10 on) or its
    attributes (opset 1 to 9), with the defaults filled in."""
    if len(ins) > 1:
        starts, ends = _ints(ins[1], "starts", f), _ints(ins[2], "ends", f)
        axes = _ints(ins[3], "axes", f) if len(ins) > 3 and ins[3] is not None else None
        steps = _ints(ins[4], "steps", f) if len(ins) > 4 and ins[4] is not None else None
    else:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    return starts, ends, axes, steps


def _fold_slice(f, ins, attrs, node):
    data = ins[0]
    starts, ends, axes, steps = _slice_args(f, ins, attrs)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[_norm(a, data.ndim, f)] = slice(s, e, st)
    return data[tuple(index)]


def _fold_reshape(f, ins, attrs, node):
    return ins[0].reshape(_reshape_target(f, ins[0].shape, _ints(ins[1], "shape", f),
                                          attrs.get("allowzero", 0)))


def _reshape_target(f, shape, target, allowzero):
    out = []
    for i, t in enumerate(target):
        out.append(shape[i] if t == 0 and not allowzero else t)
    if out.count(-1) > 1:
        f.fail(f"Reshape target {target} has more than one -1")
    if -1 in out:
        known = int(np.prod([t for t in out if t != -1], dtype=np.int64))
        total = int(np.prod(shape, dtype=np.int64))
        if known == 0 or total % known:
            f.fail(f"cannot reshape {tuple(shape)} to {target}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        f.fail(f"cannot reshape {tuple(shape)} to {target}")
    return out


def _fold_unsqueeze(f, ins, attrs, node):
    axes = _axes_arg(f, ins, attrs)
    rank = ins[0].ndim + len(axes)
    return np.expand_dims(ins[0], tuple(sorted(_norm(a, rank, f) for a in axes)))


def _fold_squeeze(f, ins, attrs, node):
    axes = _axes_arg(f, ins, attrs)
    if axes is None:
        return np.squeeze(ins[0])
    return np.squeeze(ins[0], tuple(_norm(a, ins[0].ndim, f) for a in axes))


def _fold_shape(f, ins, attrs, node):
    shape = np.array(ins[0].shape, np.int64)
    return shape[attrs.get("start", 0):attrs.get("end", None)]


def _binary(fn):
    return lambda f, ins, attrs, node: np.asarray(fn(ins[0], ins[1]))


def _fold_div(f, ins, attrs, node):
    a, b = ins
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)
    return np.asarray(a / b, a.dtype)


def _fold_cast(f, ins, attrs, node):
    return ins[0].astype(_np_dtype(attrs["to"]))


def _fold_constant_of_shape(f, ins, attrs, node):
    from onnx import numpy_helper
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    return np.full(_ints(ins[0], "shape", f), value.reshape(-1)[0], value.dtype)


def _fold_flatten(f, ins, attrs, node):
    axis = _norm(attrs.get("axis", 1), ins[0].ndim + 1, f)
    shape = ins[0].shape
    return ins[0].reshape(int(np.prod(shape[:axis], dtype=np.int64)),
                          int(np.prod(shape[axis:], dtype=np.int64)))


_FOLD = {
    "Constant": _fold_constant,
    "Identity": lambda f, ins, attrs, node: ins[0],
    "Cast": _fold_cast,
    "CastLike": lambda f, ins, attrs, node: ins[0].astype(ins[1].dtype),
    "Shape": _fold_shape,
    "Size": lambda f, ins, attrs, node: np.array(ins[0].size, np.int64),
    "Gather": lambda f, ins, attrs, node: np.take(ins[0], ins[1].astype(np.int64),
                                                  axis=attrs.get("axis", 0)),
    "Slice": _fold_slice,
    "Concat": lambda f, ins, attrs, node: np.concatenate([np.asarray(v) for v in ins],
                                                         axis=attrs["axis"]),
    "Unsqueeze": _fold_unsqueeze,
    "Squeeze": _fold_squeeze,
    "Reshape": _fold_reshape,
    "Flatten": _fold_flatten,
    "Transpose": lambda f, ins, attrs, node: np.transpose(ins[0], attrs.get("perm")),
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _fold_div,
    "Neg": lambda f, ins, attrs, node: -ins[0],
    "Abs": lambda f, ins, attrs, node: np.abs(ins[0]),
    "Min": lambda f, ins, attrs, node: np.minimum.reduce(ins),
    "Max": lambda f, ins, attrs, node: np.maximum.reduce(ins),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "Greater": _binary(np.greater),
    "LessOrEqual": _binary(np.less_equal), "GreaterOrEqual": _binary(np.greater_equal),
    "Not": lambda f, ins, attrs, node: np.logical_not(ins[0]),
    "And": _binary(np.logical_and), "Or": _binary(np.logical_or),
    "Where": lambda f, ins, attrs, node: np.where(ins[0], ins[1], ins[2]),
    "Expand": lambda f, ins, attrs, node: ins[0] * np.ones(_ints(ins[1], "shape", f),
                                                           ins[0].dtype),
    "ConstantOfShape": _fold_constant_of_shape,
    "Range": lambda f, ins, attrs, node: np.arange(ins[0].item(), ins[1].item(), ins[2].item(),
                                                   dtype=ins[0].dtype),
    "Dropout": lambda f, ins, attrs, node: ins[0],
}


# -- symbolic tensors -------------------------------------------------------------------------------

def _sym_pass(f, ins, attrs, node):
    if not isinstance(ins[0], _Sym):
        f.fail("expected a tensor computed from the inputs")
    if node.op_type == "Dropout" and len(ins) > 2 and isinstance(ins[2], np.ndarray) and \
            bool(ins[2].reshape(-1)[0]):
        f.fail("Dropout in training mode")
    if node.op_type in ("Cast", "CastLike"):
        to = attrs["to"] if node.op_type == "Cast" else None
        if to is not None and ins[0].kind in ("x", "y", "h0", "hn", "out") and \
                not np.issubdtype(_np_dtype(to), np.floating):
            f.fail(f"casts {ins[0].describe()} to an integer type")
    return ins[0]


def _sym_transpose(f, ins, attrs, node):
    s = ins[0]
    perm = attrs.get("perm", list(reversed(range(len(s.axes)))))
    if sorted(perm) != list(range(len(s.axes))):
        f.fail(f"perm {perm} does not fit rank {len(s.axes)}")
    return s.replace(axes=[s.axes[p] for p in perm])


def _regroup(f, s, target):
    """The axes of s reshaped to `target`: atoms keep their order; an output axis is a run of
    atoms whose sizes multiply to its size (size-1 atoms carry no layout and are dropped)."""
    atoms = [a for axis in s.axes for a in axis if s.atom_size(a) != 1]
    out, i = [], 0
    for t in target:
        group, prod = [], 1
        while prod < t:
            if i >= len(atoms):
                f.fail(f"reshapes {s.describe()} to {list(target)} in a way that mixes its axes")
            size = s.atom_size(atoms[i])
            if prod * size > t:
                f.fail(f"reshapes {s.describe()} to {list(target)} in a way that splits an axis")
            group.append(atoms[i])
            prod *= size
            i += 1
        if prod != t:
            f.fail(f"reshapes {s.describe()} to {list(target)} in a way that splits an axis")
        out.append(tuple(group))
    if i != len(atoms):
        f.fail(f"cannot reshape {s.describe()} to {list(target)}")
    return s.replace(axes=out)


def _sym_reshape(f, ins, attrs, node):
    s = ins[0]
    if not isinstance(s, _Sym):
        f.fail("the shape of a Reshape must be a constant")
    target = _reshape_target(f, s.shape, _ints(ins[1], "shape", f), attrs.get("allowzero", 0))
    return _regroup(f, s, target)


def _sym_flatten(f, ins, attrs, node):
    s = ins[0]
    axis = _norm(attrs.get("axis", 1), len(s.axes) + 1, f)
    shape = s.shape
    return _regroup(f, s, [int(np.prod(shape[:axis], dtype=np.int64)),
                           int(np.prod(shape[axis:], dtype=np.int64))])


def _sym_squeeze(f, ins, attrs, node):
    s = ins[0]
    axes = _axes_arg(f, ins, attrs)
    shape = s.shape
    if axes is None:
        axes = [i for i, n in enumerate(shape) if n == 1]
    axes = {_norm(a, len(shape), f) for a in axes}
    for a in axes:
        if shape[a] != 1:
            f.fail(f"squeezes axis {a} of size {shape[a]} of {s.describe()}")
    return s.replace(axes=[ax for i, ax in enumerate(s.axes) if i not in axes])


def _sym_unsqueeze(f, ins, attrs, node):
    s = ins[0]
    axes = _axes_arg(f, ins, attrs)
    rank = len(s.axes) + len(axes)
    axes = sorted(_norm(a, rank, f) for a in axes)
    out = list(s.axes)
    for a in axes:
        out.insert(a, ())
    return s.replace(axes=out)


def _select(f, s, axis, indices, keep_axis):
    """s with `indices` (a list) taken along `axis`: a block of initial states, or the last step."""
    size = s.shape[axis]
    idx = [i + size if i < 0 else i for i in indices]
    if any(not 0 <= i < size for i in idx):
        f.fail(f"index {indices} out of range for axis {axis} of {s.describe()}")
    if idx == list(range(size)):
        return s  # the whole axis
    atoms = tuple(a for a in s.axes[axis] if s.atom_size(a) != 1)
    axes = list(s.axes)
    if s.kind == "h0" and atoms == ("S",) and idx == list(range(idx[0], idx[0] + len(idx))):
        blocks = tuple(s.blocks[i] for i in idx)
        axes[axis] = ("S",)
        out = s.replace(blocks=blocks)
        if not keep_axis:
            del axes[axis]
        return out.replace(axes=axes)
    if s.kind == "y" and atoms == ("T",) and s.step is None and idx == [size - 1]:
        axes[axis] = ()
        if not keep_axis:
            del axes[axis]
        return s.replace(axes=axes, step="last")
    if s.kind == "y" and s.step is None and atoms in (("B", "T"), ("T", "B")):
        # Advanced indexing y[arange(B), T - 1] as exporters flatten it: one row per sequence.
        B, T = s.sizes["B"], s.sizes["T"]
        b = np.arange(B)
        last = b * T + T - 1 if atoms == ("B", "T") else (T - 1) * B + b
        if idx == last.tolist():
            axes[axis] = ("B",)
            if not keep_axis:
                f.fail(f"takes one row of {s.describe()}")
            return s.replace(axes=axes, step="last")
    if s.kind == "y" and atoms == ("T",):
        f.fail(f"takes time step(s) {indices} of {s.describe()}; numgru's GRUModel reads the last "
               f"(valid) step or every step")
    f.fail(f"takes part {indices} of axis {axis} of {s.describe()}, which has no numgru "
           f"counterpart")


def _sym_slice(f, ins, attrs, node):
    s = ins[0]
    if not isinstance(s, _Sym) or any(isinstance(v, _Sym) for v in ins[1:]):
        f.fail("slices with starts/ends computed from the data")
    starts, ends, axes, steps = _slice_args(f, ins, attrs)
    for st, e, a, step in zip(starts, ends, axes, steps):
        a = _norm(a, len(s.axes), f)
        idx = list(range(s.shape[a]))[slice(st, e, step)]
        if not idx:
            f.fail(f"takes an empty slice of {s.describe()}")
        s = _select(f, s, a, idx, keep_axis=True)
    return s


def _sym_gather(f, ins, attrs, node):
    s, index = ins
    if not isinstance(s, _Sym) or isinstance(index, _Sym):
        f.fail("gathers with indices computed from the data")
    axis = _norm(attrs.get("axis", 0), len(s.axes), f)
    index = np.asarray(index)
    if index.ndim == 0:
        return _select(f, s, axis, [int(index)], keep_axis=False)
    if index.ndim == 1:
        return _select(f, s, axis, [int(i) for i in index], keep_axis=True)
    f.fail(f"gathers a {index.ndim}-D index from {s.describe()}")


def _sym_gather_nd(f, ins, attrs, node):
    """y[b, lengths[b] - 1] (each sequence's last valid step) or y[b, T - 1] (the last step)."""
    data, index = ins
    bd = attrs.get("batch_dims", 0)
    usage = ("numgru maps GatherND only as the pick of each sequence's last (valid) step: "
             "GatherND(y [batch, time, features], lengths - 1 [batch, 1], batch_dims=1) or with "
             "constant indices (b, time - 1)")
    if not (isinstance(data, _Sym) and data.kind == "y" and data.step is None
            and len(data.axes) == 3 and _same_layout(data, [("B",), ("T",), data.axes[2]])):
        f.fail(usage)
    B, T = data.sizes["B"], data.sizes["T"]
    if isinstance(index, _Sym):
        if index.kind == "len" and index.offset == -1 and bd == 1 and \
                _same_layout(index, [("B",), ()]):
            return data.replace(axes=[("B",), data.axes[2]], step="last_valid")
        f.fail(usage)
    index = np.asarray(index)
    last = None
    if bd == 1 and index.shape == (B, 1):
        last = np.full((B, 1), T - 1)
    elif bd == 0 and index.shape == (B, 2):
        last = np.stack([np.arange(B), np.full(B, T - 1)], axis=1)
    if last is None or not np.array_equal(np.where(index < 0, index + T, index), last):
        f.fail(usage)
    return data.replace(axes=[("B",), data.axes[2]], step="last")


def _broadcast_axes(f, a, b):
    """Axes of the broadcast of two symbolic or constant tensors (constants give size-1 atoms)."""
    sa = a.axes if isinstance(a, _Sym) else [None] * np.ndim(a)
    sb = b.axes if isinstance(b, _Sym) else [None] * np.ndim(b)
    n = max(len(sa), len(sb))
    sa = [()] * (n - len(sa)) + list(sa)
    sb = [()] * (n - len(sb)) + list(sb)
    return sa, sb


def _sym_add_sub(f, ins, attrs, node):
    a, b = ins
    sub = node.op_type == "Sub"
    if isinstance(a, _Sym) and a.kind == "len" and isinstance(b, np.ndarray) and b.size == 1:
        delta = int(b.reshape(-1)[0]) * (-1 if sub else 1)
        return a.replace(offset=a.offset + delta)
    if not sub and isinstance(b, _Sym) and b.kind == "len" and isinstance(a, np.ndarray) and \
            a.size == 1:
        return b.replace(offset=b.offset + int(a.reshape(-1)[0]))
    if not sub:
        s, c = (a, b) if isinstance(a, _Sym) else (b, a)
        if isinstance(s, _Sym) and s.kind == "out" and isinstance(c, np.ndarray) and \
                not s.masked:
            weight, bias, head = s.head
            O = weight.shape[0]
            if c.size not in (1, O) or (c.ndim and c.shape[-1] not in (1, O)) or \
                    c.size != int(np.prod(c.shape[-1:], dtype=np.int64)):
                f.fail(f"adds a constant of shape {c.shape} to {s.describe()}; a head bias has "
                       f"shape ({O},)")
            return s.replace(head=(weight, bias + np.broadcast_to(c.reshape(-1), (O,)), head))
    f.fail(f"{node.op_type} of {_what(a)} and {_what(b)} has no numgru counterpart")


def _what(v):
    return v.describe() if isinstance(v, _Sym) else f"a constant of shape {np.shape(v)}"


def _sym_compare(f, ins, attrs, node):
    """t < lengths (or lengths > t), t = arange(time): the valid steps of each sequence."""
    a, b = ins
    if node.op_type == "Greater":
        a, b = b, a
    if not (isinstance(a, np.ndarray) and isinstance(b, _Sym) and b.kind == "len"
            and b.offset == 0):
        f.fail(f"{node.op_type} of {_what(a)} and {_what(b)}: numgru maps only the valid-step "
               f"mask arange(time) < lengths")
    T = b.sizes["T"]
    t = np.asarray(a)
    nonunit = [i for i, n in enumerate(t.shape) if n != 1]
    sa, sb = _broadcast_axes(f, t, b)
    if len(nonunit) != 1 or t.size != T or not np.array_equal(t.reshape(-1), np.arange(T)):
        f.fail("compares the lengths with something other than arange(time)")
    t_axis = len(sa) - t.ndim + nonunit[0]
    b_axes = [i for i, ax in enumerate(sb) if ax == ("B",)]
    if len(b_axes) != 1 or b_axes[0] == t_axis:
        f.fail("the valid-step mask's axes are not (batch, time)")
    axes = [()] * len(sa)
    axes[t_axis], axes[b_axes[0]] = ("T",), ("B",)
    return _Sym("mask", axes, b.sizes)


def _sym_mul(f, ins, attrs, node):
    a, b = ins
    s, m = (a, b) if isinstance(b, _Sym) and b.kind == "mask" else (b, a)
    if isinstance(s, _Sym) and isinstance(m, _Sym) and m.kind == "mask":
        return _apply_mask(f, s, m)
    if node.op_type == "Mul":
        f.fail(f"Mul of {_what(a)} and {_what(b)} has no numgru counterpart")
    f.fail(f"{node.op_type} of {_what(a)} and {_what(b)} has no numgru counterpart")


def _sym_where(f, ins, attrs, node):
    cond, a, b = ins
    if isinstance(cond, _Sym) and cond.kind == "mask" and isinstance(a, _Sym) and \
            isinstance(b, np.ndarray) and b.size == 1 and float(b.reshape(-1)[0]) == 0.0:
        return _apply_mask(f, a, cond)
    f.fail("numgru maps Where only as Where(valid-step mask, per-step head output, 0)")


def _apply_mask(f, s, m):
    if s.kind != "out" or s.head[2] != "sequence":
        f.fail(f"masks {s.describe()}; numgru masks only a per-step head's output")
    sa, sm = _broadcast_axes(f, s, m)
    pos = {}
    for i, (x, y) in enumerate(zip(sa, sm)):
        if y in (("B",), ("T",)):
            pos[y[0]] = i
            if tuple(a for a in x if s.atom_size(a) != 1) != y:
                f.fail(f"the valid-step mask does not line up with {s.describe()}")
    if len(pos) != 2 or len(sa) != len(s.axes):
        f.fail(f"the valid-step mask does not line up with {s.describe()}")
    return s.replace(masked=True)


def _sym_matmul(f, ins, attrs, node):
    a, w = ins
    if not (isinstance(a, _Sym) and isinstance(w, np.ndarray)):
        f.fail(f"MatMul of {_what(a)} and {_what(w)}: numgru maps MatMul only as the head, "
               f"outputs @ constant weight")
    if w.ndim != 2:
        f.fail(f"the head's weight must be 2-D, got shape {w.shape}")
    return _head(f, a, np.ascontiguousarray(w.T), np.zeros(w.shape[1], w.dtype))


def _sym_gemm(f, ins, attrs, node):
    a, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    if not (isinstance(a, _Sym) and isinstance(w, np.ndarray)
            and (c is None or isinstance(c, np.ndarray))):
        f.fail("numgru maps Gemm only as the head: outputs @ constant weight + constant bias")
    if attrs.get("transA", 0):
        f.fail("Gemm with transA=1 on the GRU's outputs")
    weight = w if attrs.get("transB", 0) else w.T
    weight = weight * attrs.get("alpha", 1.0)
    O = weight.shape[0]
    bias = np.zeros(O, w.dtype)
    if c is not None:
        if c.size not in (1, O):
            f.fail(f"Gemm bias of shape {c.shape}, expected ({O},)")
        bias = np.broadcast_to(c.reshape(-1), (O,)) * attrs.get("beta", 1.0)
    if len(a.axes) != 2:
        f.fail(f"Gemm on {a.describe()}, expected [batch, features]")
    return _head(f, a, np.ascontiguousarray(weight), np.array(bias, w.dtype))


def _head(f, a, weight, bias):
    if a.kind != "y" or a.masked:
        f.fail(f"a head on {a.describe()}; numgru's head reads the last GRU layer's outputs")
    feat = a.axes[-1]
    want = tuple(x for x in ("D", "H") if a.atom_size(x) != 1)
    if tuple(x for x in feat if a.atom_size(x) != 1) != want:
        f.fail(f"a head on the last axis of {a.describe()}, which is not the GRU's features")
    if weight.shape[1] != a.shape[-1]:
        f.fail(f"head weight has {weight.shape[1]} inputs, the GRU gives {a.shape[-1]} features")
    f.sizes["O"] = weight.shape[0]
    if a.step is None:
        if not _same_layout(a, [("B",), ("T",), feat]):
            f.fail(f"a per-step head on {a.describe()}; numgru's GRUModel gives (batch, time, "
                   f"outputs)")
        axes, head = [("B",), ("T",), ("O",)], "sequence"
    else:
        if not _same_layout(a, [("B",), feat]):
            f.fail(f"a head on {a.describe()}; expected (batch, features)")
        axes, head = [("B",), ("O",)], "last"
    return a.replace(kind="out", axes=axes, head=(weight, bias, head))


def _sym_concat(f, ins, attrs, node):
    if not all(isinstance(v, _Sym) and v.kind in ("hn", "h0") for v in ins):
        f.fail("numgru maps Concat of tensors from the data only as the stacking of the layers' "
               "final states: " + ", ".join(_what(v) for v in ins))
    if len({v.kind for v in ins}) != 1:
        f.fail("concatenates final states with initial states")
    rank = len(ins[0].axes)
    axis = _norm(attrs["axis"], rank, f)
    blocks, first_rest = [], None
    for v in ins:
        if len(v.axes) != rank:
            f.fail("concatenates states of different ranks")
        here = tuple(a for a in v.axes[axis] if v.atom_size(a) != 1)
        if here not in ((), ("S",)):
            f.fail(f"concatenates {v.describe()} along an axis that is not the layers'")
        rest = [tuple(a for a in ax if v.atom_size(a) != 1) for i, ax in enumerate(v.axes)
                if i != axis]
        if v is not ins[0] and rest != first_rest:
            f.fail("concatenates states with different layouts")
        first_rest = rest
        blocks.extend(v.blocks)
    axes = list(ins[0].axes)
    axes[axis] = ("S",)
    return ins[0].replace(axes=axes, blocks=tuple(blocks))


def _sym_shape(f, ins, attrs, node):
    shape = np.array(ins[0].shape, np.int64)
    return shape[attrs.get("start", 0):attrs.get("end", None)]


def _sym_size(f, ins, attrs, node):
    return np.array(int(np.prod(ins[0].shape, dtype=np.int64)), np.int64)


def _sym_gru(f, ins, attrs, node):
    ins = list(ins) + [None] * (6 - len(ins))
    X, W, R, Bias, seq_lens, init_h = ins[:6]
    k = len(f.layers)
    for name, v in (("W", W), ("R", R), ("B", Bias)):
        if v is not None and not isinstance(v, np.ndarray):
            f.fail(f"GRU input {name} is computed from the data; numgru needs constant weights")
    if W is None or R is None:
        f.fail("GRU without W or R")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction == "reverse":
        f.fail("a backward-only GRU (direction='reverse') has no numgru counterpart (numgru's "
               "reverse direction comes with the forward one: bidirectional)")
    if direction not in ("forward", "bidirectional"):
        f.fail(f"unknown direction {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if acts and [a.lower() for a in acts] != list(_ACTIVATIONS) * D:
        f.fail(f"activations {acts}: numgru's GRU computes sigmoid gates and a tanh candidate "
               f"(['Sigmoid', 'Tanh'] per direction) only")
    if attrs.get("activation_alpha") or attrs.get("activation_beta"):
        f.fail("activation_alpha/activation_beta: numgru's sigmoid and tanh take no parameters")
    if "clip" in attrs:
        f.fail(f"clip={attrs['clip']}: numgru's GRU does not clip the gate pre-activations")
    layout = int(attrs.get("layout", 0))
    if R.ndim != 3 or R.shape[0] != D:
        f.fail(f"R has shape {R.shape}, expected [{D}, 3*hidden_size, hidden_size]")
    H = R.shape[2]
    if int(attrs.get("hidden_size", H)) != H:
        f.fail(f"hidden_size={attrs['hidden_size']} but R has shape {R.shape}")
    if k == 0:
        if f.sizes.get("H", H) != H:
            f.fail(f"hidden size {H} (from R), but the h0 input has {f.sizes['H']}")
        f.sizes.update(D=D, H=H)
    elif (D, H) != (f.sizes["D"], f.sizes["H"]):
        f.fail(f"layer {k} has {D} direction(s) and hidden size {H}, layer 0 has "
               f"{f.sizes['D']} and {f.sizes['H']}; numgru's stacked GRU needs them equal")
    feat = ("F",) if k == 0 else ("D", "H")
    want = [("T",), ("B",), feat] if layout == 0 else [("B",), ("T",), feat]
    if not isinstance(X, _Sym):
        f.fail("GRU input X is a constant")
    expected_kind = "x" if k == 0 else "y"
    if X.kind != expected_kind or (k > 0 and (X.layer != k - 1 or X.step is not None)) or \
            not _same_layout(X, want):
        source = "the graph input x" if k == 0 else f"layer {k - 1}'s outputs"
        order = "[time, batch, features]" if layout == 0 else "[batch, time, features]"
        f.fail(f"GRU layer {k} reads {X.describe()}; numgru stacks layers on {source} as "
               f"{order}")
    try:
        sd = from_onnx_weights(W, R, Bias, layer=k)
    except ValueError as e:
        f.fail(f"GRU weights: {e}")
    in_size = X.shape[2]
    if W.shape[2] != in_size:
        f.fail(f"W has input size {W.shape[2]}, but X has {in_size} features")
    if seq_lens is None:
        lengths = None
    elif isinstance(seq_lens, _Sym) and seq_lens.kind == "len" and seq_lens.offset == 0 and \
            _same_layout(seq_lens, [("B",)]):
        lengths = "input"
    elif isinstance(seq_lens, np.ndarray) and seq_lens.shape == (f.sizes["B"],) and \
            np.all(seq_lens == f.sizes["T"]):
        lengths = None  # every sequence full length: the default
    else:
        f.fail(f"sequence_lens is {_what(seq_lens)}; numgru maps the graph's lengths input (or "
               f"none)")
    if init_h is None:
        initial = None
    elif isinstance(init_h, np.ndarray):
        if np.any(init_h != 0):
            f.fail("a constant non-zero initial_h (a learned initial state) has no numgru "
                   "counterpart; numgru starts from zeros or from the h0 you pass")
        initial = None
    elif init_h.kind == "h0" and init_h.blocks == tuple(range(k * D, (k + 1) * D)) and \
            _same_layout(init_h, [("S",), ("B",), ("H",)] if layout == 0 else
                         [("B",), ("S",), ("H",)]):
        initial = "input"
    else:
        f.fail(f"initial_h is {init_h.describe()}; numgru maps rows {k * D}..{(k + 1) * D - 1} "
               f"of the graph's h0 input for layer {k}")
    lbr = int(attrs.get("linear_before_reset", 0))
    f.layers.append({"weights": sd, "bias": Bias is not None, "reset_after": bool(lbr),
                     "lengths": lengths, "h0": initial, "input_size": in_size})
    blocks = tuple(range(k * D, (k + 1) * D))
    if layout == 0:
        y_axes, h_axes = [("T",), ("D",), ("B",), ("H",)], [("S",), ("B",), ("H",)]
    else:
        y_axes, h_axes = [("B",), ("T",), ("D",), ("H",)], [("B",), ("S",), ("H",)]
    return [_Sym("y", y_axes, f.sizes, layer=k), _Sym("hn", h_axes, f.sizes, layer=k,
                                                      blocks=blocks)]


_SYMBOLIC = {
    "Identity": _sym_pass, "Cast": _sym_pass, "CastLike": _sym_pass, "Dropout": _sym_pass,
    "Transpose": _sym_transpose, "Reshape": _sym_reshape, "Flatten": _sym_flatten,
    "Squeeze": _sym_squeeze, "Unsqueeze": _sym_unsqueeze, "Slice": _sym_slice,
    "Gather": _sym_gather, "GatherND": _sym_gather_nd, "Add": _sym_add_sub, "Sub": _sym_add_sub,
    "Less": _sym_compare, "Greater": _sym_compare, "Mul": _sym_mul, "Where": _sym_where,
    "MatMul": _sym_matmul, "Gemm": _sym_gemm, "Concat": _sym_concat, "Shape": _sym_shape,
    "Size": _sym_size, "GRU": _sym_gru,
}


def _needed_nodes(graph):
    """The nodes the graph's outputs depend on, in the graph's (topological) order."""
    producer = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            producer[out] = i
    need, stack = set(), [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        i = producer.get(name)
        if i is None or i in need:
            continue
        need.add(i)
        stack.extend(n for n in graph.node[i].input if n)
    return [graph.node[i] for i in sorted(need)]


def _assign_roles(onnx, graph, inits):
    """Candidate readings of the graph inputs: name -> "x" | "len" | "h0"."""
    from onnx import TensorProto
    ints = (TensorProto.INT32, TensorProto.INT64)
    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
    lengths, data = [], []
    for vi in graph.input:
        if vi.name in inits:
            continue
        if not vi.type.HasField("tensor_type"):
            raise OnnxImportError(f"graph input {vi.name!r} is not a tensor")
        elem, rank = vi.type.tensor_type.elem_type, len(vi.type.tensor_type.shape.dim)
        if elem in ints and rank == 1:
            lengths.append(vi.name)
        elif elem in floats and rank == 3:
            data.append(vi.name)
        else:
            raise OnnxImportError(f"graph input {vi.name!r} ({rank}-D, element type {elem}) is "
                                  f"none of numgru's inputs: x (3-D float), lengths (1-D integer),"
                                  f" h0 (3-D float)")
    if len(lengths) > 1:
        raise OnnxImportError(f"graph inputs {lengths}: more than one 1-D integer input (numgru "
                              f"takes one lengths input)")
    if not data or len(data) > 2:
        raise OnnxImportError(f"graph has {len(data)} 3-D float inputs {data}; numgru takes x and "
                              f"optionally h0")
    base = {lengths[0]: "len"} if lengths else {}
    if len(data) == 1:
        return [dict(base, **{data[0]: "x"})]
    return [dict(base, **{data[0]: "x", data[1]: "h0"}), dict(base, **{data[1]: "x", data[0]: "h0"})]


def _summarise(f, graph):
    """The model a successful walk found: a dict with everything needed to build it."""
    L = len(f.layers)
    if L == 0:
        raise _Fail("the graph has no GRU node")
    outs = {}
    for vi in graph.output:
        v = f.env.get(vi.name)
        if isinstance(v, np.ndarray) or v is None:
            raise _Fail(f"graph output {vi.name!r} is a constant")
        if v.kind == "y" and v.layer == L - 1 and v.step is None:
            if _same_layout(v, [("B",), ("T",), ("D", "H")]):
                role = ("y", True)
            elif _same_layout(v, [("T",), ("B",), ("D", "H")]):
                role = ("y", False)
            else:
                raise _Fail(f"graph output {vi.name!r} is {v.describe()}; numgru's GRU gives y as "
                            f"(batch, time, D·H) or (time, batch, D·H)")
        elif v.kind == "hn":
            if v.blocks != tuple(range(L * f.sizes["D"])) or \
                    not _same_layout(v, [("S",), ("B",), ("H",)]):
                raise _Fail(f"graph output {vi.name!r} is {v.describe()} of blocks {v.blocks}; "
                            f"numgru's h_n stacks every layer's final states in order, "
                            f"(num_layers·D, batch, H)")
            role = ("h_n", None)
        elif v.kind == "out":
            role = ("out", None)
        else:
            raise _Fail(f"graph output {vi.name!r} is {v.describe()}, which numgru does not "
                        f"return")
        outs[vi.name] = (role, v)
    kinds = [r[0] for r, _ in outs.values()]
    if kinds.count("out") > 1 or kinds.count("y") > 1 or kinds.count("h_n") > 1:
        raise _Fail(f"outputs {list(outs)}: numgru returns one y (or one head output) and one h_n")
    if "out" in kinds and "y" in kinds:
        raise _Fail("the graph returns both the GRU's outputs and a head's; numgru's GRUModel "
                    "returns the head's (and h_n)")
    first = f.layers[0]
    for k, layer in enumerate(f.layers):
        for key in ("reset_after", "lengths", "h0", "bias"):
            if layer[key] != first[key]:
                raise _Fail(f"GRU layer {k} differs from layer 0 in {key} ({layer[key]} vs "
                            f"{first[key]}); numgru's stacked GRU has one setting for all layers")
    uses_lengths = first["lengths"] == "input"
    info = {"layers": f.layers, "D": f.sizes["D"], "H": f.sizes["H"], "I": f.sizes["F"],
            "lengths": uses_lengths, "h0": first["h0"] == "input", "outputs": {}}
    for name, ((kind, bf), v) in outs.items():
        info["outputs"][kind] = name
        if kind == "y":
            if bf != f.batch_first:
                raise _Fail("x and y have different layouts (batch-first vs time-major); numgru's "
                            "GRU uses one batch_first for both")
        if kind == "out":
            weight, bias, head = v.head
            if not f.batch_first:
                raise _Fail("x is time-major; numgru's GRUModel takes batch-first x")
            if head == "last":
                if uses_lengths and v.step != "last_valid":
                    raise _Fail("the head reads the last time step while the GRU takes lengths; "
                                "numgru's GRUModel reads each sequence's last valid step")
                if v.step == "last_valid" and not uses_lengths:
                    raise _Fail("the head reads step lengths-1 but the GRU nodes take no "
                                "sequence_lens")
            elif uses_lengths and not v.masked:
                raise _Fail("a per-step head with lengths but without the valid-step mask gives "
                            "the bias past each length; numgru's gives 0")
            info.update(weight=weight, bias=bias, head=head)
    info["batch_first"] = f.batch_first
    return info


def _same_structure(a, b):
    """Whether two walks (at two probe sizes) found the same model, weights included."""
    def plain(info):
        return {k: v for k, v in info.items() if k not in ("layers", "weight", "bias")}
    if plain(a) != plain(b) or len(a["layers"]) != len(b["layers"]):
        return False
    for la, lb in zip(a["layers"], b["layers"]):
        if {k: v for k, v in la.items() if k != "weights"} != \
                {k: v for k, v in lb.items() if k != "weights"}:
            return False
        if la["weights"].keys() != lb["weights"].keys() or not all(
                np.array_equal(la["weights"][k], lb["weights"][k]) for k in la["weights"]):
            return False
    return all(np.array_equal(a[k], b[k]) for k in ("weight", "bias") if k in a)


def _model_info(onnx, proto):
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise OnnxImportError("the model imports no standard ONNX opset")
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = _needed_nodes(graph)
    for node in nodes:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
                raise OnnxImportError(f"node {node.name!r} ({node.op_type}) holds a subgraph: "
                                      + _unsupported(node.op_type))
    best = None
    for roles in _assign_roles(onnx, graph, inits):
        for batch_first in (True, False):
            results = []
            x_name = next(n for n, r in roles.items() if r == "x")
            x_vi = next(vi for vi in graph.input if vi.name == x_name)
            dims = _dims(x_vi)
            if not isinstance(dims[2], int) or dims[2] < 1:
                raise OnnxImportError(f"graph input {x_name!r}: the feature size (last "
                                      f"dimension) must be fixed, got {dims[2]!r}")
            bt = (0, 1) if batch_first else (1, 0)
            probes = []
            for pb, pt in _PROBES:
                b = dims[bt[0]] if isinstance(dims[bt[0]], int) and dims[bt[0]] > 0 else pb
                t = dims[bt[1]] if isinstance(dims[bt[1]], int) and dims[bt[1]] > 0 else pt
                if (b, t) not in probes:
                    probes.append((b, t))
            try:
                for probe in probes:
                    f = _Follow(onnx, graph, roles, batch_first, probe, opset)
                    f.bind_inputs(inits)
                    try:
                        f.run(nodes)
                        results.append(_summarise(f, graph))
                    except _Fail as e:
                        raise _Fail(str(e) + (f" (following the graph at batch {probe[0]}, time "
                                              f"{probe[1]})" if len(probes) > 1 else "")) from None
                if len(results) == 2 and not _same_structure(*results):
                    raise _Fail("the graph maps differently at different batch and time sizes "
                                "(a constant holds one particular size)")
                results[0]["x_dtype"] = f.x_dtype
                results[0]["roles"] = roles
                return results[0]
            except _Fail as e:
                if best is None or f.done > best[0]:
                    best = (f.done, str(e))
    raise OnnxImportError(best[1])


def load_onnx(path, dtype=None, device="auto"):
    """A numgru GRU or GRUModel that computes what the ONNX model at `path` computes.

    The graph: ONNX GRU nodes stacked on the input x (each layer on the previous layer's outputs;
    forward or bidirectional; sigmoid/tanh; linear_before_reset 0 or 1 is numgru's reset_after),
    optionally fed the graph's lengths (sequence_lens) and h0 (initial_h) inputs, and either
    returning y and/or h_n (-> GRU) or a head: MatMul(+Add) or Gemm on the last step, on each
    sequence's last valid step, or on every step (-> GRUModel, head "last" or "sequence"). The
    file is parsed, never run. dtype: "float32"/"float64", default the graph's. Raises
    OnnxImportError (a ValueError) naming the node or input that has no numgru counterpart.
    """
    onnx = _import_onnx()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        # Protobuf parsing only; tensors stored in external files beside the model (as large
        # models and torch's dynamo exporter write them) are read from the model's folder.
        proto = onnx.load_model(path, load_external_data=True)
    except Exception as e:  # a DecodeError, a missing external file: not a usable ONNX model
        raise OnnxImportError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") \
            from None
    try:
        if not proto.graph.node:
            raise OnnxImportError("the ONNX model has an empty graph")
        if proto.functions:
            from onnx import inliner
            proto = inliner.inline_local_functions(proto)
        info = _model_info(onnx, proto)
    except OnnxImportError as e:
        raise OnnxImportError(f"{path}: {e}") from None
    except Exception as e:
        # A damaged protobuf parses into fields that make no sense (tensors whose data do not
        # match their dims, names that are not UTF-8, ...); whatever that breaks while the graph
        # is followed, the file is not a usable model: say so, naming the file.
        raise OnnxImportError(f"{path}: not a usable ONNX model ({type(e).__name__}: "
                              f"{str(e)[:300]})") from None
    try:
        return _build_model(info, dtype, device, path)
    except OnnxImportError:
        raise
    except (TypeError, ValueError) as e:  # e.g. a weight that is not finite, a bad dtype
        raise OnnxImportError(f"{path}: {e}") from None


def _build_model(info, dtype, device, path):
    from ..layers import GRU, as_dtype
    from ..model import GRUModel
    if dtype is None:
        x_dtype = np.dtype(info["x_dtype"])
        if x_dtype not in (np.float32, np.float64):
            raise OnnxImportError(f"{path}: the graph computes in {x_dtype}; pass "
                                  f"dtype='float32' or 'float64' to load it in one of those")
        dtype = x_dtype.name
    dtype = as_dtype(dtype).name
    layers = info["layers"]
    L, D, H, I = len(layers), info["D"], info["H"], info["I"]
    sd = {}
    for layer in layers:
        sd.update(layer["weights"])
    if not layers[0]["bias"]:
        zero = np.zeros(3 * H, np.float64)
        for k in range(L):
            for s in ([""] if D == 1 else ["", "_reverse"]):
                sd.setdefault(f"bias_ih_l{k}{s}", zero)
                sd.setdefault(f"bias_hh_l{k}{s}", zero)
    reset_after = layers[0]["reset_after"]
    if "weight" in info:
        weight, bias = info["weight"], info["bias"]
        model = GRUModel(I, H, weight.shape[0], num_layers=L, bidirectional=D == 2,
                         reset_after=reset_after, dtype=dtype, device=device, head=info["head"])
        state = {f"gru.{k}": v for k, v in sd.items()}
        state["fc.weight"], state["fc.bias"] = weight, bias
        model.load_state_dict(state)
        return model
    gru = GRU(I, H, num_layers=L, bias=layers[0]["bias"], batch_first=info["batch_first"],
              bidirectional=D == 2, reset_after=reset_after, dtype=dtype, device=device)
    if not layers[0]["bias"]:
        sd = {k: v for k, v in sd.items() if not k.startswith("bias_")}
    gru.load_state_dict(sd)
    return gru


__all__ = ["export_onnx", "load_onnx", "OnnxImportError", "MIN_OPSET", "DEFAULT_OPSET"]
