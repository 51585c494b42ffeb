"""GRU and GRUCell layers with PyTorch's API, names and semantics, on any numgru backend.

This module owns the parameters (one flat buffer with named views, so that an optimizer update is
one loop), checks every input once, stacks layers and directions, applies lengths and dropout, and
hands the per-layer, per-direction work to the backend module that backend.py picks. It never
computes a GRU step itself. Array work on activations goes through `self._ops` (backend.array_ops),
so that with device="cuda" parameters, gradients and the training cache stay on the GPU; outputs come
back as numpy arrays unless a call passes return_device=True.
"""

import math
import threading

import numpy as np

from . import backend
from ._checks import fraction, positive_int
from .errors import CacheTooLargeError

_DTYPES = {"float32": np.float32, "float64": np.float64}


def as_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return np.dtype(_DTYPES[name])


def as_float_array(name, value, dtype):
    """np.asarray(value) cast to dtype, refusing what is not numeric or not finite."""
    if type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous:
        arr = value  # the common case: nothing to convert, only the finiteness to check
    else:
        if hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray):
            raise TypeError(f"{name}: got a device array; this layer runs on the host "
                            f"(device='cpu' or 'numpy'): copy it to a numpy array first")
        arr = _converted(name, value, dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf (first at index "
                         f"{tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])})")
    return arr


def _converted(name, value, dtype):
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name}: expected a real array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _input(ops, name, value, dtype):
    """value as an array of the layer's device: host values checked here, device arrays by ops."""
    if backend.is_device_array(value):
        return ops.accept_device(name, value, dtype)
    return ops.to_device(as_float_array(name, value, dtype))


def _check_return_device(ops, return_device):
    if return_device and not ops.on_device:
        raise ValueError("return_device: device arrays exist only for device='cuda'; this layer "
                         "runs on the host")


# Values per step, row and hidden unit that a training forward keeps or allocates per layer and
# direction, beyond the layer's input: the backend's cache (cpu: r, z, n, W_hn h + b_hn; numpy:
# also the state entering each step, and the input projection of every step while it runs)
# and the direction's outputs.
_CACHE_VALUES = {"cpu": 4 + 1, "numpy": 9 + 1}
_ALWAYS_FITS = 64 << 20  # caches below 64 MiB are not checked


def check_training_memory(layer, shape, batch_first, what="forward(train=True)"):
    """Refuse (CacheTooLargeError) a training forward over x of this shape whose cache would not
    fit in the memory available (`numgru._memory`), before anything is allocated. Host
    backends only (a device's memory is the device's)."""
    per = _CACHE_VALUES.get(layer.device)
    if per is None or len(shape) != 3:
        return
    B, T = (shape[0], shape[1]) if batch_first else (shape[1], shape[0])
    need = layer.training_bytes(T, B)
    if need < _ALWAYS_FITS:  # no system call on the path of ordinary training steps
        return
    from ._memory import beyond, describe
    over = beyond(need)
    if over is None:
        return
    raise CacheTooLargeError(
        f"{what}: the training cache of {T} steps × {B} sequences would take {describe(need)}, "
        f"{over}. It grows with steps × batch × "
        f"hidden units × layers × directions; to fit, train in shorter chunks of time "
        f"(Trainer(chunk_steps=...) or GRUModel.forward_backward_chunked: exact gradients, the "
        f"memory of one chunk), use float32 instead of float64 (half the bytes), or a smaller "
        f"batch")


def _check_shape(name, arr, expected):
    if arr.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)}, got {arr.shape}")


# What a copy or a pickle leaves out and rebuilds from the rest: the backend module and array
# operations (from the device name), the per-thread training cache, the parameter views.
_REBUILT = ("_backend", "_ops", "_cache", "params", "grads")


def pickled_state(obj):
    """obj's attributes for copy and pickle: without _REBUILT (the names it had in "_rebuilt"),
    device arrays as host copies (their names in "_on_device")."""
    state = {k: v for k, v in obj.__dict__.items() if k not in _REBUILT}
    on_device = [k for k, v in state.items() if backend.is_device_array(v)]
    for k in on_device:
        state[k] = state[k].copy_to_host()
    state["_on_device"] = on_device
    state["_rebuilt"] = [k for k in _REBUILT if k in obj.__dict__]
    return state


def restore_state(obj, state):
    """The inverse of pickled_state: the backend module, array operations and cache made again
    where obj had them (the parameter views are the caller's to make)."""
    state = dict(state)
    on_device, rebuilt = state.pop("_on_device", ()), state.pop("_rebuilt", ())
    obj.__dict__.update(state)
    obj._ops = backend.array_ops(obj.device)
    if "_backend" in rebuilt:
        obj._backend = backend.get(obj.device)
    if "_cache" in rebuilt:
        obj._cache = threading.local()
    for k in on_device:
        setattr(obj, k, obj._ops.to_device(getattr(obj, k)))


class Parameters:
    """Named parameters and their gradients as views into two flat buffers (the optimizer's view)."""

    def _init_parameters(self, shapes, hidden_size, dtype, rng):
        self._shapes = dict(shapes)
        total = sum(math.prod(s) for s in self._shapes.values())
        initial = np.empty(total, dtype)  # drawn on the host (seeded), then moved to the device
        offset = 0
        bound = 1.0 / math.sqrt(hidden_size)
        for shape in self._shapes.values():
            size = math.prod(shape)
            # PyTorch's default: every parameter from U(-1/sqrt(H), 1/sqrt(H)).
            initial[offset:offset + size] = rng.uniform(-bound, bound, size=shape).ravel()
            offset += size
        self.flat_params = self._ops.to_device(initial)
        self.flat_grads = self._ops.zeros(total, dtype)
        self._make_views()

    def _make_views(self):
        """params and grads: views by name into flat_params and flat_grads."""
        self.params, self.grads = {}, {}
        offset = 0
        for name, shape in self._shapes.items():
            size = math.prod(shape)
            self.params[name] = self.flat_params[offset:offset + size].reshape(shape)
            self.grads[name] = self.flat_grads[offset:offset + size].reshape(shape)
            offset += size

    def __getstate__(self):
        return pickled_state(self)

    def __setstate__(self, state):
        restore_state(self, state)
        self._make_views()

    def state_dict(self):
        """Copies of the parameters on the host, by PyTorch's names."""
        return {name: np.array(self._ops.to_host(p)) for name, p in self.params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters in from a dict name -> array (PyTorch's names and shapes); all or nothing."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        missing = sorted(set(self._shapes) - set(state_dict))
        extra = sorted(set(state_dict) - set(self._shapes))
        if missing or extra:
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {extra} "
                             f"(expected exactly {list(self._shapes)})")
        staged = {}
        for name, shape in self._shapes.items():
            value = state_dict[name]
            if hasattr(value, "detach"):  # a torch tensor: take its values, never its graph
                value = value.detach().cpu().numpy()
            arr = _input(self._ops, f"state_dict[{name!r}]", value, self.flat_params.dtype)
            _check_shape(f"state_dict[{name!r}]", arr, shape)
            staged[name] = arr
        for name, arr in staged.items():
            self._ops.assign(self.params[name], arr)

    def bind_buffers(self, flat_params, flat_grads):
        """Move parameters and gradients, values kept, into caller-owned 1-D buffers of this
        layer's size, dtype and device (views into a larger buffer): a model holds all its layers
        in one buffer this way, so that its optimizer update stays one loop (one kernel)."""
        on_device = backend.is_device_array(self.flat_params)
        for name, buf in (("flat_params", flat_params), ("flat_grads", flat_grads)):
            if tuple(buf.shape) != tuple(self.flat_params.shape) or \
                    buf.dtype != self.flat_params.dtype or backend.is_device_array(buf) != on_device:
                raise ValueError(f"{name}: expected a 1-D {self.flat_params.dtype} "
                                 f"{'device' if on_device else 'host'} buffer of "
                                 f"{self.flat_params.size} values, got {buf.dtype} {buf.shape}")
        self._ops.assign(flat_params, self.flat_params)
        self._ops.assign(flat_grads, self.flat_grads)
        self.flat_params, self.flat_grads = flat_params, flat_grads
        self._make_views()

    def zero_grad(self):
        """Set every gradient to zero (backward adds into them)."""
        self._ops.fill_zero(self.flat_grads)

    def parameters(self):
        """(name, parameter view, gradient view) triples, in state_dict order."""
        return [(name, self.params[name], self.grads[name]) for name in self._shapes]


class GRU(Parameters):
    """Multi-layer, optionally bidirectional GRU with torch.nn.GRU's parameter names, shapes,
    gate order and packed-sequence semantics, but not quite a drop-in: batch_first defaults to
    True here (x (B, T, I), the layout of the rest of numgru), where torch.nn.GRU defaults to
    False (x (T, B, I)). Pass batch_first=False for torch's layout; h0 and h_n are
    (num_layers·D, B, H) either way, as in torch.

    reset_after=True is PyTorch's / cuDNN's variant, n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));
    reset_after=False is the original one, n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=True,
                 dropout=0.0, bidirectional=False, reset_after=True, dtype="float32",
                 device="auto", seed=None):
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        self.dropout = fraction("dropout", dropout)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.reset_after = bool(reset_after)
        self.dtype = as_dtype(dtype)
        self.device = backend.resolve(device)
        self._backend = backend.get(self.device)
        self._ops = backend.array_ops(self.device)
        # the dropout masks are drawn from it; the trainers save, restore and slice it
        self.dropout_rng = np.random.default_rng(seed)
        self.num_directions = 2 if self.bidirectional else 1
        H, D = self.hidden_size, self.num_directions
        shapes = {}
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else D * H
            for s in self._suffixes():
                shapes[f"weight_ih_l{k}{s}"] = (3 * H, in_k)
                shapes[f"weight_hh_l{k}{s}"] = (3 * H, H)
                if self.bias:
                    shapes[f"bias_ih_l{k}{s}"] = (3 * H,)
                    shapes[f"bias_hh_l{k}{s}"] = (3 * H,)
        self._init_parameters(shapes, H, self.dtype, self.dropout_rng)
        self._zero_bias = self._ops.zeros(3 * H, self.dtype)
        # The training cache of this thread's last forward(train=True): the backend's GRUCache
        # per layer and direction, the dropout masks, the shapes (one per calling thread).
        self._cache = threading.local()

    def _copy(self, a):
        out = self._ops.empty(a.shape, self.dtype)
        self._ops.assign(out, a)
        return out

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def __repr__(self):
        return (f"GRU({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, reset_after={self.reset_after}, "
                f"dtype={self.dtype.name}, device={self.device!r})")

    # -- input checks (once, here; the backends trust what they get) --

    def _check_inputs(self, x, h0, lengths):
        x = _input(self._ops, "x", x, self.dtype)
        if x.ndim != 3:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(f"x: expected a 3-D array {layout}, got {x.ndim}-D shape {x.shape}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"x: expected feature size (last axis) {self.input_size}, got shape "
                             f"{x.shape}")
        if self.batch_first:
            x = self._ops.swap01(x)
        T, B, _ = x.shape
        if T == 0 or B == 0:
            raise ValueError(f"x: expected at least one step and one sequence, got shape {x.shape}")
        LD = self.num_layers * self.num_directions
        if h0 is None:
            h0 = self._ops.zeros((LD, B, self.hidden_size), self.dtype)
        else:
            h0 = _input(self._ops, "h0", h0, self.dtype)
            _check_shape("h0", h0, (LD, B, self.hidden_size))
        if backend.is_device_array(lengths):
            lengths = self._ops.to_host(lengths)  # checked on the host: it is B integers
        lengths = self._ops.to_device(check_lengths(lengths, B, T))
        return x, h0, lengths

    # -- forward and backward --

    def __call__(self, x, h0=None, lengths=None, *, return_device=False):
        """Inference: (y, h_n); keeps nothing for backward."""
        return self.forward(x, h0, lengths, train=False, return_device=return_device)

    def training_bytes(self, T, B):
        """Bytes a training forward over T steps of B sequences keeps or allocates: the cache of
        every layer and direction, the outputs, the dropout masks and the copies of the input
        and the output (an estimate: within a few percent of the peak for device="cpu",
        somewhat above it for "numpy", whose temporaries come and go)."""
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        per = _CACHE_VALUES.get(self.device, 5)
        values = 2 * self.input_size + D * H  # x (and its time-major copy), y's copy
        for k in range(L):
            values += D * per * H + (D * H if D > 1 else 0)
            if self.dropout > 0 and k < L - 1:
                values += 2 * D * H  # the mask and the masked output
        return int(T) * int(B) * values * self.dtype.itemsize

    def forward(self, x, h0=None, lengths=None, train=False, *, return_device=False):
        """(y, h_n). With train=True, keeps what backward needs and applies dropout.

        x and h0 may be numpy or (device="cuda") device arrays; y and h_n are numpy arrays unless
        return_device=True, which returns device arrays and copies nothing to the host.
        A training forward whose cache would not fit in the memory available raises
        CacheTooLargeError (a MemoryError) before allocating anything.
        """
        _check_return_device(self._ops, return_device)
        if train and hasattr(x, "shape"):
            check_training_memory(self, tuple(x.shape), self.batch_first)
        x_in = x
        x, h0, lengths = self._check_inputs(x, h0, lengths)
        be, ops, H, D = self._backend, self._ops, self.hidden_size, self.num_directions
        if train and x is x_in:
            # The caller's own array (time-major, already contiguous in the layer's dtype): the
            # cache reads it again in backward, so keep a copy the caller cannot change.
            x = self._copy(x)
        T, B, _ = x.shape
        layer_in = x
        h_n = ops.empty((self.num_layers * D, B, H), self.dtype)
        caches, masks = [], []
        for k in range(self.num_layers):
            outs = []
            for d, s in enumerate(self._suffixes()):
                w_ih, w_hh, b_ih, b_hh = self._weights(k, s)
                y_d, h_d, cache = be.forward(
                    layer_in, h0[k * D + d], w_ih, w_hh, b_ih, b_hh, lengths,
                    reverse=(d == 1), reset_after=self.reset_after, train=train)
                ops.assign(h_n[k * D + d], h_d)
                outs.append(y_d)
                caches.append(cache)
            layer_out = outs[0] if D == 1 else ops.concat_last(outs)
            if train and self.dropout > 0 and k < self.num_layers - 1:
                keep = 1.0 - self.dropout
                mask = (self.dropout_rng.random(layer_out.shape) < keep).astype(self.dtype) / keep
                mask = ops.to_device(mask)
                layer_out = ops.mul(layer_out, mask)
                masks.append(mask)
            else:
                masks.append(None)
            layer_in = layer_out
        if train:
            self._cache.value = (caches, masks, x.shape, B, T)
        y = ops.swap01(layer_in) if self.batch_first else layer_in
        if train and y is outs[-1]:
            # The backend's output itself (time-major, one direction): its cache reads it again
            # in backward, so the caller gets a copy it may change freely.
            y = self._copy(y)
        if return_device:
            return y, h_n
        return ops.to_host(y), ops.to_host(h_n)

    def backward(self, dy, dh_n=None, *, return_device=False):
        """BPTT for the last forward(train=True) of this thread: returns (dx, dh0), adds to grads.

        dy, dh_n: numpy or device arrays; dx, dh0 are numpy arrays unless return_device=True.
        """
        _check_return_device(self._ops, return_device)
        cached = getattr(self._cache, "value", None)
        if cached is None:
            raise RuntimeError("backward: call forward(x, ..., train=True) first (inference calls "
                               "keep nothing, and each forward allows one backward)")
        caches, masks, x_shape, B, T = cached
        H, D = self.hidden_size, self.num_directions
        y_shape = (B, T, D * H) if self.batch_first else (T, B, D * H)
        ops = self._ops
        dy = _input(ops, "dy", dy, self.dtype)
        _check_shape("dy", dy, y_shape)
        LD = self.num_layers * D
        if dh_n is None:
            dh_n = ops.zeros((LD, B, H), self.dtype)
        else:
            dh_n = _input(ops, "dh_n", dh_n, self.dtype)
            _check_shape("dh_n", dh_n, (LD, B, H))
        self._cache.value = None
        d_out = ops.swap01(dy) if self.batch_first else dy
        dh0 = ops.empty((LD, B, H), self.dtype)
        for k in reversed(range(self.num_layers)):
            if masks[k] is not None:
                d_out = ops.mul(d_out, masks[k])
            d_in = None
            for d, s in enumerate(self._suffixes()):
                dy_d = ops.take_last(d_out, d * H, (d + 1) * H)
                dx_d, dh0_d, dw_ih, dw_hh, db_ih, db_hh = self._backend.backward(
                    caches[k * D + d], dy_d, dh_n[k * D + d])
                ops.assign(dh0[k * D + d], dh0_d)
                ops.add_into(self.grads[f"weight_ih_l{k}{s}"], dw_ih)
                ops.add_into(self.grads[f"weight_hh_l{k}{s}"], dw_hh)
                if self.bias:
                    ops.add_into(self.grads[f"bias_ih_l{k}{s}"], db_ih)
                    ops.add_into(self.grads[f"bias_hh_l{k}{s}"], db_hh)
                if d_in is None:
                    d_in = dx_d  # a fresh array from the backend: ours to add into
                else:
                    ops.add_into(d_in, dx_d)
            d_out = d_in
        dx = ops.swap01(d_out) if self.batch_first else d_out
        if return_device:
            return dx, dh0
        return ops.to_host(dx), ops.to_host(dh0)

    def _weights(self, k, s):
        p = self.params
        if self.bias:
            return p[f"weight_ih_l{k}{s}"], p[f"weight_hh_l{k}{s}"], p[f"bias_ih_l{k}{s}"], \
                p[f"bias_hh_l{k}{s}"]
        return p[f"weight_ih_l{k}{s}"], p[f"weight_hh_l{k}{s}"], self._zero_bias, self._zero_bias


def check_lengths(lengths, B, T):
    if lengths is None:
        return np.full(B, T, np.int64)
    arr = np.asarray(lengths)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and arr.size and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"lengths: expected an integer array of shape ({B},), got dtype "
                            f"{arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got "
                         f"{arr.shape}")
    if arr.min() < 1 or arr.max() > T:
        raise ValueError(f"lengths: expected every length in [1, {T}] (T = {T}), got min "
                         f"{int(arr.min())}, max {int(arr.max())}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class GRUCell(Parameters):
    """One GRU step, h1 = cell(x, h), the counterpart of torch.nn.GRUCell (for streaming)."""

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype="float32",
                 device="auto", seed=None):
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        self.reset_after = bool(reset_after)
        self.dtype = as_dtype(dtype)
        self.device = backend.resolve(device)
        self._backend = backend.get(self.device)
        self._ops = backend.array_ops(self.device)
        H = self.hidden_size
        shapes = {"weight_ih": (3 * H, self.input_size), "weight_hh": (3 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(3 * H,), bias_hh=(3 * H,))
        self._init_parameters(shapes, H, self.dtype, np.random.default_rng(seed))
        self._zero_bias = self._ops.zeros(3 * H, self.dtype)
        self._one = self._ops.to_device(np.ones(1, np.int64))
        self._cache = threading.local()

    def __repr__(self):
        return (f"GRUCell({self.input_size}, {self.hidden_size}, reset_after={self.reset_after}, "
                f"dtype={self.dtype.name}, device={self.device!r})")

    def __call__(self, x, h=None, *, return_device=False):
        """h1 for one step: x (B, I) or (I,), h like x with H features (None = zeros)."""
        if return_device or self._ops.on_device:
            return self.forward(x, h, train=False, return_device=return_device)
        # The streaming path on the host: one compiled step, no cache, no allocations but h1.
        x, h2, h_shape = self._check_step_inputs(x, h)
        p = self.params
        h1 = self._backend.step(x.reshape(-1, self.input_size), h2, p["weight_ih"],
                                p["weight_hh"], p["bias_ih"] if self.bias else self._zero_bias,
                                p["bias_hh"] if self.bias else self._zero_bias, self.reset_after)
        if h1 is None:  # the kernel found NaN or Inf: name the culprit
            as_float_array("x", x, self.dtype)
            as_float_array("h", h2, self.dtype)
        return h1.reshape(h_shape)

    def _check_step_inputs(self, x, h):
        """(x, h as (B, H), the shape to return) for the host step. Fast for the common case of a
        streaming loop: contiguous numpy arrays of the layer's dtype skip every conversion
        (their finiteness is checked in the kernel)."""
        if not (type(x) is np.ndarray and x.dtype == self.dtype and x.flags.c_contiguous):
            x = _input(self._ops, "x", x, self.dtype)
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected a 2-D array (B, I) or a 1-D array (I,), got "
                             f"{x.ndim}-D shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected feature size (last axis) {self.input_size}, got shape "
                             f"{x.shape}")
        B = 1 if x.ndim == 1 else x.shape[0]
        h_shape = (self.hidden_size,) if x.ndim == 1 else (B, self.hidden_size)
        if h is None:
            return x, np.zeros((B, self.hidden_size), self.dtype), h_shape
        if not (type(h) is np.ndarray and h.dtype == self.dtype and h.flags.c_contiguous):
            h = _input(self._ops, "h", h, self.dtype)
        _check_shape("h", h, h_shape)
        return x, h.reshape(B, self.hidden_size), h_shape

    def forward(self, x, h=None, train=False, *, return_device=False):
        """h1 (numpy, or a device array with return_device=True); train=True keeps the step."""
        _check_return_device(self._ops, return_device)
        x = _input(self._ops, "x", x, self.dtype)
        unbatched = x.ndim == 1
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected a 2-D array (B, I) or a 1-D array (I,), got "
                             f"{x.ndim}-D shape {x.shape}")
        if x.shape[x.ndim - 1] != self.input_size:
            raise ValueError(f"x: expected feature size (last axis) {self.input_size}, got shape "
                             f"{x.shape}")
        B = 1 if unbatched else x.shape[0]
        x2 = x.reshape(1, B, self.input_size)  # (T=1, B, I)
        h_shape = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        if h is None:
            h2 = self._ops.zeros((B, self.hidden_size), self.dtype)
        else:
            h2 = _input(self._ops, "h", h, self.dtype)
            _check_shape("h", h2, h_shape)
            h2 = h2.reshape(B, self.hidden_size)
        p = self.params
        b_ih = p["bias_ih"] if self.bias else self._zero_bias
        b_hh = p["bias_hh"] if self.bias else self._zero_bias
        lengths = self._one if B == 1 else self._ops.to_device(np.ones(B, np.int64))
        _, h1, cache = self._backend.forward(x2, h2, p["weight_ih"], p["weight_hh"], b_ih, b_hh,
                                             lengths, reverse=False, reset_after=self.reset_after,
                                             train=train)
        if train:
            self._cache.value = (cache, x.shape, h_shape)
        h1 = h1.reshape(h_shape)
        return h1 if return_device else self._ops.to_host(h1)

    def backward(self, dh1, *, return_device=False):
        """Gradient of one step: returns (dx, dh) and adds to grads."""
        _check_return_device(self._ops, return_device)
        cached = getattr(self._cache, "value", None)
        if cached is None:
            raise RuntimeError("backward: call forward(x, h, train=True) first")
        cache, x_shape, h_shape = cached
        ops = self._ops
        dh1 = _input(ops, "dh1", dh1, self.dtype)
        _check_shape("dh1", dh1, h_shape)
        self._cache.value = None
        B = 1 if len(h_shape) == 1 else h_shape[0]
        dy = ops.zeros((1, B, self.hidden_size), self.dtype)
        dx, dh, dw_ih, dw_hh, db_ih, db_hh = self._backend.backward(
            cache, dy, dh1.reshape(B, self.hidden_size))
        ops.add_into(self.grads["weight_ih"], dw_ih)
        ops.add_into(self.grads["weight_hh"], dw_hh)
        if self.bias:
            ops.add_into(self.grads["bias_ih"], db_ih)
            ops.add_into(self.grads["bias_hh"], db_hh)
        dx, dh = dx.reshape(x_shape), dh.reshape(h_shape)
        if return_device:
            return dx, dh
        return ops.to_host(dx), ops.to_host(dh)
