"""Converters between numgru's GRU weights (PyTorch's names and layout) and ONNX's and Keras' layouts.

numgru stores a GRU as PyTorch does: per layer k and direction suffix s ("" or "_reverse"),
`weight_ih_l{k}{s}` (3H, I), `weight_hh_l{k}{s}` (3H, H), `bias_ih_l{k}{s}` and `bias_hh_l{k}{s}`
(3H,), gate blocks in the order r, z, n; a GRUCell uses the same names without the `_l{k}{s}`.
ONNX and Keras order the gate blocks z, r, h (h is numgru's n):

- ONNX GRU operator: W [D, 3H, I], R [D, 3H, H], B [D, 6H] = [Wb_z, Wb_r, Wb_h, Rb_z, Rb_r, Rb_h],
  D = 2 for "bidirectional" (forward first), else 1. `linear_before_reset=1` is numgru's
  reset_after=True, `linear_before_reset=0` is reset_after=False. Both are exact, in both directions.
- Keras GRU (and each half of keras.layers.Bidirectional): kernel (I, 3H), recurrent_kernel (H, 3H),
  bias (2, 3H) for reset_after=True (row 0 input bias, row 1 recurrent bias) or (3H,) for
  reset_after=False. Keras' reset_after=False layer has a single bias, added outside the tanh, which
  is exactly numgru's b_ih + b_hh: `to_keras_weights` sums them and `from_keras_weights` returns that
  sum as bias_ih with a zero bias_hh (the same function, not the same numbers). Keras must use its
  defaults activation="tanh", recurrent_activation="sigmoid" (old Keras 2 layers defaulted to
  hard_sigmoid, which no numgru GRU computes).

This module moves weights only; it computes no GRU step. numgru imports it without onnx installed:
`onnx_gru_model` imports onnx when it is called.
"""

import numpy as np

from ._checks import non_negative_int

_DIRECTIONS = {"forward": ("",), "reverse": ("_reverse",), "bidirectional": ("", "_reverse")}


# -- helpers shared by every converter --------------------------------------------------------------

def _swap_rz(a, axis):
    """Swap the first two of the three gate blocks along `axis` (r,z,n <-> z,r,h; its own inverse)."""
    a = np.moveaxis(np.asarray(a), axis, 0)
    H = a.shape[0] // 3
    out = np.concatenate([a[H:2 * H], a[:H], a[2 * H:]], axis=0)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def _as_weight(name, value):
    """A float32/float64 numpy array from an array-like (numpy array or torch tensor)."""
    if hasattr(value, "detach"):  # a torch tensor: its values, never its graph
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _check_rank(name, arr, ndim, layout):
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {layout}, got {arr.ndim}-D shape "
                         f"{arr.shape}")


def _hidden_from_rows(name, rows, shape):
    if rows == 0 or rows % 3:
        raise ValueError(f"{name}: expected 3*hidden_size gate rows (a positive multiple of 3), got "
                         f"shape {shape}")
    return rows // 3


def _check_direction(direction, allowed=tuple(_DIRECTIONS)):
    if direction not in allowed:
        raise ValueError(f"direction: expected one of {allowed}, got {direction!r}")
    return direction


def _check_layer(layer):
    return non_negative_int("layer", layer)


def _param_names(layer, suffix, prefix, cell):
    """(weight_ih, weight_hh, bias_ih, bias_hh) keys of one layer and direction."""
    tail = "" if cell else f"_l{layer}{suffix}"
    return tuple(f"{prefix}{base}{tail}" for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _check_state_dict(state_dict):
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"state_dict: expected a dict of arrays, got {type(state_dict).__name__}")


def _infer_direction(state_dict, layer, prefix, cell):
    _check_state_dict(state_dict)
    if cell:
        return "forward"
    return "bidirectional" if f"{prefix}weight_ih_l{layer}_reverse" in state_dict else "forward"


def _read_direction(state_dict, layer, suffix, prefix, cell):
    """Checked (w_ih (3H,I), w_hh (3H,H), b_ih (3H,) or None, b_hh or None) of one direction."""
    _check_state_dict(state_dict)
    names = _param_names(layer, suffix, prefix, cell)
    for key in names[:2]:
        if key not in state_dict:
            raise ValueError(f"state_dict: missing key {key!r} (has {sorted(state_dict)})")
    w_ih = _as_weight(f"state_dict[{names[0]!r}]", state_dict[names[0]])
    w_hh = _as_weight(f"state_dict[{names[1]!r}]", state_dict[names[1]])
    _check_rank(f"state_dict[{names[0]!r}]", w_ih, 2, "(3*hidden_size, input_size)")
    _check_rank(f"state_dict[{names[1]!r}]", w_hh, 2, "(3*hidden_size, hidden_size)")
    H = _hidden_from_rows(f"state_dict[{names[1]!r}]", w_hh.shape[0], w_hh.shape)
    if w_hh.shape != (3 * H, H):
        raise ValueError(f"state_dict[{names[1]!r}]: expected shape (3*hidden_size, hidden_size) = "
                         f"{(3 * H, H)}, got {w_hh.shape}")
    if w_ih.shape[0] != 3 * H:
        raise ValueError(f"state_dict[{names[0]!r}]: expected {3 * H} rows (3*hidden_size, from "
                         f"{names[1]!r}), got shape {w_ih.shape}")
    has = [key in state_dict for key in names[2:]]
    if any(has) and not all(has):
        present, absent = (names[2], names[3]) if has[0] else (names[3], names[2])
        raise ValueError(f"state_dict: has {present!r} but not {absent!r} (a GRU has both biases "
                         f"or neither)")
    biases = [None, None]
    if all(has):
        for i, key in enumerate(names[2:]):
            b = _as_weight(f"state_dict[{key!r}]", state_dict[key])
            if b.shape != (3 * H,):
                raise ValueError(f"state_dict[{key!r}]: expected shape {(3 * H,)}, got {b.shape}")
            biases[i] = b
    return w_ih, w_hh, biases[0], biases[1]


# -- ONNX -------------------------------------------------------------------------------------------

def to_onnx_weights(state_dict, layer=0, direction=None, prefix="", cell=False):
    """ONNX GRU operator inputs (W, R, B) of one numgru layer.

    state_dict: numgru's (or torch's) names and shapes; `prefix` is prepended to every key (e.g.
    "gru." for a GRUModel), `cell=True` reads a GRUCell's keys (weight_ih, ...). direction: "forward"
    (the `_l{layer}` weights), "reverse" (the `_l{layer}_reverse` weights), "bidirectional" (both),
    or None for bidirectional when the layer has reverse weights, else forward.
    Returns W [D, 3H, I], R [D, 3H, H], B [D, 6H] (None when the layer has no biases: ONNX then
    takes zeros, the same function), gate blocks z, r, h, in the state_dict's dtype.
    """
    layer = _check_layer(layer)
    if direction is None:
        direction = _infer_direction(state_dict, layer, prefix, cell)
    _check_direction(direction, ("forward",) if cell else tuple(_DIRECTIONS))
    Ws, Rs, Bs = [], [], []
    for suffix in _DIRECTIONS[direction]:
        w_ih, w_hh, b_ih, b_hh = _read_direction(state_dict, layer, suffix, prefix, cell)
        Ws.append(_swap_rz(w_ih, 0))
        Rs.append(_swap_rz(w_hh, 0))
        Bs.append(None if b_ih is None else np.concatenate([_swap_rz(b_ih, 0), _swap_rz(b_hh, 0)]))
    if len(Ws) == 2 and Ws[0].shape != Ws[1].shape:
        raise ValueError(f"state_dict: forward and reverse weight_ih of layer {layer} differ in "
                         f"shape: {Ws[0].shape} vs {Ws[1].shape}")
    if len(Bs) == 2 and (Bs[0] is None) != (Bs[1] is None):
        raise ValueError(f"state_dict: layer {layer} has biases in one direction only")
    dtype = np.result_type(*Ws, *Rs, *[b for b in Bs if b is not None])
    W = np.stack(Ws).astype(dtype, copy=False)
    R = np.stack(Rs).astype(dtype, copy=False)
    B = None if Bs[0] is None else np.stack(Bs).astype(dtype, copy=False)
    return W, R, B


def from_onnx_weights(W, R, B=None, layer=0, direction=None, prefix="", cell=False):
    """numgru state_dict entries of one layer from ONNX GRU operator inputs (the inverse of
    `to_onnx_weights`).

    W [D, 3H, I], R [D, 3H, H], B [D, 6H] or None (then no bias keys: load them into a
    GRU(bias=False); to a GRU with biases, add zeros). direction: None infers "forward" (D = 1) or
    "bidirectional" (D = 2); "reverse" with D = 1 names the weights `_l{layer}_reverse`.
    Returns {name: array}, names as `to_onnx_weights` reads them; merge the layers' dicts for a
    multi-layer GRU.
    """
    layer = _check_layer(layer)
    W = _as_weight("W", W)
    R = _as_weight("R", R)
    _check_rank("W", W, 3, "[num_directions, 3*hidden_size, input_size]")
    _check_rank("R", R, 3, "[num_directions, 3*hidden_size, hidden_size]")
    D = R.shape[0]
    H = _hidden_from_rows("R", R.shape[1], R.shape)
    if D not in (1, 2) or R.shape != (D, 3 * H, H):
        raise ValueError(f"R: expected shape [num_directions (1 or 2), 3*hidden_size, hidden_size], "
                         f"got {R.shape}")
    if W.shape[:2] != (D, 3 * H):
        raise ValueError(f"W: expected shape [{D}, {3 * H}, input_size] (from R {R.shape}), got "
                         f"{W.shape}")
    if B is not None:
        B = _as_weight("B", B)
        if B.shape != (D, 6 * H):
            raise ValueError(f"B: expected shape [{D}, {6 * H}] (from R {R.shape}), got {B.shape}")
    if direction is None:
        direction = "bidirectional" if D == 2 else "forward"
    _check_direction(direction, ("forward",) if cell else tuple(_DIRECTIONS))
    if len(_DIRECTIONS[direction]) != D:
        raise ValueError(f"direction: {direction!r} needs num_directions "
                         f"{len(_DIRECTIONS[direction])}, but W, R have {D}")
    out = {}
    for d, suffix in enumerate(_DIRECTIONS[direction]):
        k_ih, k_hh, k_bih, k_bhh = _param_names(layer, suffix, prefix, cell)
        out[k_ih] = _swap_rz(W[d], 0)
        out[k_hh] = _swap_rz(R[d], 0)
        if B is not None:
            out[k_bih] = _swap_rz(B[d, :3 * H], 0)
            out[k_bhh] = _swap_rz(B[d, 3 * H:], 0)
    return out


_ONNX_TYPES = {"float32": 1, "float64": 11}  # onnx.TensorProto.FLOAT, DOUBLE


def onnx_gru_model(state_dict, layer=0, direction=None, reset_after=True, prefix="", cell=False,
                   opset=14):
    """An onnx.ModelProto with one ONNX GRU node that computes one numgru GRU layer.

    Weights as `to_onnx_weights` reads them (same state_dict, layer, direction, prefix, cell);
    reset_after must be the layer's (it sets linear_before_reset). The graph, time-major (ONNX
    layout 0), T and B symbolic:
        inputs   X [T, B, I] (the weights' dtype), sequence_lens [B] int32, initial_h [D, B, H]
        outputs  Y [T, D, B, H], Y_h [D, B, H]
    Feed every input (lengths = T and initial_h = 0 reproduce the defaults). numgru's y (T, B, D·H)
    is Y.transpose(0, 2, 1, 3).reshape(T, B, D*H). A float64 model is valid ONNX, but ONNX
    Runtime's CPU GRU kernel only runs float32 (1.32: "GRU operator does not support double yet").
    Needs the onnx package (imported here, so numgru itself does not depend on it).
    """
    import onnx
    from onnx import helper, numpy_helper

    W, R, B = to_onnx_weights(state_dict, layer, direction, prefix, cell)
    D, threeH, I = W.shape
    H = threeH // 3
    if direction is None:
        direction = "bidirectional" if D == 2 else "forward"
    elem = _ONNX_TYPES[W.dtype.name]
    inputs = ["X", "W", "R", "B" if B is not None else "", "sequence_lens", "initial_h"]
    node = helper.make_node("GRU", inputs, ["Y", "Y_h"], name="gru", hidden_size=H,
                            direction=direction, linear_before_reset=int(bool(reset_after)))
    initializers = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    if B is not None:
        initializers.append(numpy_helper.from_array(B, "B"))
    graph = helper.make_graph(
        [node], "numgru_gru",
        inputs=[helper.make_tensor_value_info("X", elem, ["T", "B", I]),
                helper.make_tensor_value_info("sequence_lens", onnx.TensorProto.INT32, ["B"]),
                helper.make_tensor_value_info("initial_h", elem, [D, "B", H])],
        outputs=[helper.make_tensor_value_info("Y", elem, ["T", D, "B", H]),
                 helper.make_tensor_value_info("Y_h", elem, [D, "B", H])],
        initializer=initializers)
    opset_id = helper.make_opsetid("", int(opset))
    # The lowest IR version that carries this opset, so that older runtimes load the model too.
    model = helper.make_model(graph, opset_imports=[opset_id], producer_name="numgru",
                              ir_version=helper.find_min_ir_version_for([opset_id]))
    onnx.checker.check_model(model)
    return model


# -- Keras ------------------------------------------------------------------------------------------

def to_keras_weights(state_dict, layer=0, direction="forward", reset_after=True, prefix="",
                     cell=False):
    """Keras GRU weights [kernel, recurrent_kernel, bias] of one numgru layer and direction.

    direction: "forward" or "reverse" (keras.layers.Bidirectional lists the forward layer's three
    weights, then the backward layer's). reset_after must be the layer's: True gives bias (2, 3H)
    (input bias, recurrent bias); False gives bias (3H,) = b_ih + b_hh (Keras' single bias).
    Returns kernel (I, 3H), recurrent_kernel (H, 3H), bias (None when the layer has no biases:
    Keras use_bias=False), columns in gate order z, r, h, for `layer.set_weights`.
    """
    layer = _check_layer(layer)
    _check_direction(direction, ("forward",) if cell else ("forward", "reverse"))
    w_ih, w_hh, b_ih, b_hh = _read_direction(state_dict, layer, _DIRECTIONS[direction][0], prefix,
                                             cell)
    kernel = _swap_rz(w_ih, 0).T.copy()
    recurrent_kernel = _swap_rz(w_hh, 0).T.copy()
    if b_ih is None:
        bias = None
    elif reset_after:
        bias = np.stack([_swap_rz(b_ih, 0), _swap_rz(b_hh, 0)])
    else:
        # Both biases sit outside every nonlinearity's product with r when reset_after=False, so
        # their sum is exact: σ(.. + b_ir + b_hr), tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn).
        bias = _swap_rz(b_ih + b_hh, 0)
    return [kernel, recurrent_kernel, bias]


def from_keras_weights(kernel, recurrent_kernel, bias=None, layer=0, direction="forward",
                       reset_after=None, prefix="", cell=False):
    """numgru state_dict entries of one layer and direction from Keras GRU weights.

    kernel (I, 3H), recurrent_kernel (H, 3H), bias (2, 3H) (Keras reset_after=True), (3H,)
    (reset_after=False: it becomes bias_ih, with bias_hh = 0) or None (use_bias=False: no bias keys,
    for a GRU(bias=False)). reset_after: None to infer it from the bias's shape, or the Keras
    layer's setting, checked against that shape. Load the result into a numgru GRU with the same
    reset_after. Returns {name: array}, for layer `layer` and direction "forward" or "reverse".
    """
    layer = _check_layer(layer)
    _check_direction(direction, ("forward",) if cell else ("forward", "reverse"))
    kernel = _as_weight("kernel", kernel)
    recurrent_kernel = _as_weight("recurrent_kernel", recurrent_kernel)
    _check_rank("kernel", kernel, 2, "(input_size, 3*units)")
    _check_rank("recurrent_kernel", recurrent_kernel, 2, "(units, 3*units)")
    H = _hidden_from_rows("recurrent_kernel", recurrent_kernel.shape[1], recurrent_kernel.shape)
    if recurrent_kernel.shape != (H, 3 * H):
        raise ValueError(f"recurrent_kernel: expected shape (units, 3*units) = {(H, 3 * H)}, got "
                         f"{recurrent_kernel.shape}")
    if kernel.shape[1] != 3 * H:
        raise ValueError(f"kernel: expected shape (input_size, {3 * H}) (from recurrent_kernel "
                         f"{recurrent_kernel.shape}), got {kernel.shape}")
    k_ih, k_hh, k_bih, k_bhh = _param_names(layer, _DIRECTIONS[direction][0], prefix, cell)
    out = {k_ih: _swap_rz(kernel.T, 0), k_hh: _swap_rz(recurrent_kernel.T, 0)}
    if bias is not None:
        bias = _as_weight("bias", bias)
        if bias.shape == (2, 3 * H):
            bias_after = True
        elif bias.shape == (3 * H,):
            bias_after = False
        else:
            raise ValueError(f"bias: expected shape (2, {3 * H}) (Keras reset_after=True) or "
                             f"({3 * H},) (reset_after=False), got {bias.shape}")
        if reset_after is not None and bool(reset_after) != bias_after:
            raise ValueError(f"bias: shape {bias.shape} is Keras' reset_after={bias_after} layout, "
                             f"but reset_after={reset_after!r} was given")
        if bias_after:
            out[k_bih] = _swap_rz(bias[0], 0)
            out[k_bhh] = _swap_rz(bias[1], 0)
        else:
            out[k_bih] = _swap_rz(bias, 0)
            out[k_bhh] = np.zeros_like(out[k_bih])
    return out
