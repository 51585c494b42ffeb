"""Linear and GRUModel: the seed document's PyTorch model (a GRU, then a Linear head) without PyTorch.

GRUModel keeps the parameters of its GRU and its head in one flat buffer (and the gradients in a
second), so that an optimizer update over the whole model is one compiled loop. It computes nothing
recurrent itself: the GRU layer and its backend do.
"""

import threading

import numpy as np

from . import backend
from ._checks import positive_int
from .layers import (GRU, Parameters, as_dtype, as_float_array, check_lengths, check_training_memory,
                     pickled_state, restore_state)

HEADS = ("last", "sequence")


class Linear(Parameters):
    """y = x W^T + b over the last axis, the counterpart of torch.nn.Linear.

    Parameters `weight` (out_features, in_features) and `bias` (out_features,), both drawn from
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as PyTorch's default initialisation does. They
    live on the device (as a GRU's do); the product itself is computed on the host, where inputs
    and outputs are: for a head of O outputs that is an O×in copy per call, not worth a kernel.
    """

    def __init__(self, in_features, out_features, bias=True, dtype="float32", device="auto",
                 seed=None):
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self.bias = bool(bias)
        self.dtype = as_dtype(dtype)
        self.device = backend.resolve(device)
        self._ops = backend.array_ops(self.device)
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        self._init_parameters(shapes, self.in_features, self.dtype, np.random.default_rng(seed))
        self._cache = threading.local()

    def __repr__(self):
        return (f"Linear({self.in_features}, {self.out_features}, bias={self.bias}, "
                f"dtype={self.dtype.name})")

    def __call__(self, x):
        return self.forward(x, train=False)

    def forward(self, x, train=False):
        """x (..., in_features) -> (..., out_features). With train=True, keeps x for backward."""
        x = as_float_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected a last axis of size {self.in_features}, got shape "
                             f"{x.shape}")
        x2 = x.reshape(-1, self.in_features)
        out = x2 @ self._ops.to_host(self.params["weight"]).T
        if self.bias:
            out += self._ops.to_host(self.params["bias"])
        if train:
            self._cache.value = (x2, x.shape)
        return out.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dout):
        """Adds dL/dW and dL/db to grads; returns dL/dx shaped as the forward input."""
        cached = getattr(self._cache, "value", None)
        if cached is None:
            raise RuntimeError("backward: call forward(x, train=True) first")
        x2, x_shape = cached
        dout = as_float_array("dout", dout, self.dtype)
        expected = x_shape[:-1] + (self.out_features,)
        if dout.shape != expected:
            raise ValueError(f"dout: expected shape {expected}, got {dout.shape}")
        self._cache.value = None
        d2 = dout.reshape(-1, self.out_features)
        self._ops.add_into(self.grads["weight"], d2.T @ x2)
        if self.bias:
            self._ops.add_into(self.grads["bias"], d2.sum(axis=0))
        return (d2 @ self._ops.to_host(self.params["weight"])).reshape(x_shape)


class GRUModel:
    """GRU followed by a Linear head: the seed's GRUModel, with lengths and a per-step head.

    head="last": out = fc(y[b, lengths[b] - 1]) (B, output_size), the output at each sequence's
    last valid step (the last step when lengths is None), as the seed's `fc(out[:, -1, :])`.
    head="sequence": out = fc(y) (B, T, output_size), a prediction at every step; steps at
    t >= lengths[b] are 0.
    state_dict keys are those of the seed's PyTorch model: "gru.weight_ih_l0", ..., "fc.weight",
    "fc.bias". x is batch-first (B, T, input_size).
    """

    def __init__(self, input_size, hidden_size, output_size, num_layers=1, bidirectional=False,
                 reset_after=True, dtype="float32", device="auto", seed=None, dropout=0.0,
                 head="last"):
        if head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
        self.head = head
        gru_seed, fc_seed, dropout_seed = np.random.SeedSequence(seed).spawn(3)
        self.gru = GRU(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                       dropout=dropout, bidirectional=bidirectional, reset_after=reset_after,
                       dtype=dtype, device=device, seed=gru_seed)
        # The GRU drew its weights from gru_seed; its dropout masks come from a stream of their
        # own, so that the weights do not depend on whether dropout is used.
        self.gru.dropout_rng = np.random.default_rng(dropout_seed)
        self.output_size = positive_int("output_size", output_size)
        D = self.gru.num_directions
        self.fc = Linear(D * self.gru.hidden_size, self.output_size, dtype=dtype,
                         device=self.gru.device, seed=fc_seed)
        self.dtype = self.gru.dtype
        self.device = self.gru.device
        self._ops = self.gru._ops
        # One buffer for the whole model (on the GRU's device): the layers' parameter dicts
        # become views into it.
        n_gru, n_fc = self.gru.flat_params.size, self.fc.flat_params.size
        self.flat_params = self._ops.empty(n_gru + n_fc, self.dtype)
        self.flat_grads = self._ops.zeros(n_gru + n_fc, self.dtype)
        self.gru.bind_buffers(self.flat_params[:n_gru], self.flat_grads[:n_gru])
        self.fc.bind_buffers(self.flat_params[n_gru:], self.flat_grads[n_gru:])
        self._cache = threading.local()

    def __getstate__(self):
        return pickled_state(self)

    def __setstate__(self, state):
        # The layers arrive with buffers of their own: bound again as views into the model's.
        restore_state(self, state)
        n_gru = self.gru.flat_params.size
        self.gru.bind_buffers(self.flat_params[:n_gru], self.flat_grads[:n_gru])
        self.fc.bind_buffers(self.flat_params[n_gru:], self.flat_grads[n_gru:])

    # -- configuration --

    @property
    def input_size(self):
        return self.gru.input_size

    @property
    def hidden_size(self):
        return self.gru.hidden_size

    @property
    def num_layers(self):
        return self.gru.num_layers

    def config(self):
        """The constructor arguments that rebuild this model's shape (device left out)."""
        return {"input_size": self.gru.input_size, "hidden_size": self.gru.hidden_size,
                "output_size": self.output_size, "num_layers": self.gru.num_layers,
                "bidirectional": self.gru.bidirectional, "reset_after": self.gru.reset_after,
                "dtype": self.dtype.name, "dropout": self.gru.dropout, "head": self.head}

    @classmethod
    def from_config(cls, config, device="auto", seed=None):
        """A model of the shape `config()` describes (weights freshly initialised)."""
        cls._check_config(config)
        return cls(**config, device=device, seed=seed)

    @classmethod
    def parameter_shapes(cls, config, at_most=None):
        """{name: shape} of the parameters of a model of this config, without building it (a
        checkpoint's arrays are checked against these before a model is allocated). at_most:
        refuse a config of more parameter arrays than that before listing them (a file that
        claims 10**30 layers)."""
        cls._check_config(config)
        sizes = {}
        for key in ("input_size", "hidden_size", "output_size", "num_layers"):
            sizes[key] = positive_int(key, config.get(key))
        for key in ("bidirectional", "reset_after"):
            if not isinstance(config.get(key, False), bool):
                raise TypeError(f"config: {key}: expected true or false, got {config.get(key)!r}")
        I, H, O, L = (sizes[k] for k in ("input_size", "hidden_size", "output_size",
                                          "num_layers"))
        D = 2 if config.get("bidirectional", False) else 1
        if at_most is not None and 4 * L * D + 2 > at_most:
            raise ValueError(f"config: {L} layers{' in both directions' if D == 2 else ''} make "
                             f"{4 * L * D + 2} parameter arrays, more than the {at_most} given")
        shapes = {}
        for k in range(L):
            for s in ("", "_reverse")[:D]:
                shapes[f"gru.weight_ih_l{k}{s}"] = (3 * H, I if k == 0 else D * H)
                shapes[f"gru.weight_hh_l{k}{s}"] = (3 * H, H)
                shapes[f"gru.bias_ih_l{k}{s}"] = (3 * H,)
                shapes[f"gru.bias_hh_l{k}{s}"] = (3 * H,)
        shapes["fc.weight"] = (O, D * H)
        shapes["fc.bias"] = (O,)
        return shapes

    @staticmethod
    def _check_config(config):
        if not isinstance(config, dict):
            raise TypeError(f"config: expected a dict, got {type(config).__name__}")
        known = {"input_size", "hidden_size", "output_size", "num_layers", "bidirectional",
                 "reset_after", "dtype", "dropout", "head"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"config: unknown keys {unknown} (expected some of {sorted(known)})")

    def __repr__(self):
        c = self.config()
        return (f"GRUModel({c['input_size']}, {c['hidden_size']}, {c['output_size']}, "
                f"num_layers={c['num_layers']}, bidirectional={c['bidirectional']}, "
                f"head={c['head']!r}, dtype={c['dtype']}, device={self.device!r})")

    def num_parameters(self):
        return int(self.flat_params.size)

    # -- parameters --

    def parameters(self):
        """(name, parameter view, gradient view) triples, in state_dict order."""
        return ([(f"gru.{n}", p, g) for n, p, g in self.gru.parameters()]
                + [(f"fc.{n}", p, g) for n, p, g in self.fc.parameters()])

    @property
    def params(self):
        return {name: p for name, p, _ in self.parameters()}

    @property
    def grads(self):
        return {name: g for name, _, g in self.parameters()}

    def state_dict(self):
        """Copies of the parameters, by the seed's PyTorch model's names."""
        return {name: p.copy() for name, p, _ in self.parameters()}

    def load_state_dict(self, state_dict):
        """Copy parameters in (numpy arrays or torch tensors, the seed model's names); all or nothing."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        expected = [name for name, _, _ in self.parameters()]
        missing = sorted(set(expected) - set(state_dict))
        extra = sorted(set(state_dict) - set(expected))
        if missing or extra:
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {extra} "
                             f"(expected exactly {expected})")
        saved = self.get_flat_params()
        for prefix, layer in (("gru.", self.gru), ("fc.", self.fc)):
            part = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            try:
                layer.load_state_dict(part)
            except (ValueError, TypeError) as e:
                self.set_flat_params(saved)  # all or nothing
                # The layer names its own keys; say them as the model's.
                raise type(e)(str(e).replace("state_dict['", f"state_dict['{prefix}")) from None

    def get_flat_params(self):
        """A host copy of all parameters, in the order of parameters()."""
        return np.array(self._ops.to_host(self.flat_params))

    def set_flat_params(self, values):
        """Overwrite all parameters from a flat array as get_flat_params returns."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape != (self.flat_params.size,):
            raise ValueError(f"values: expected shape ({self.flat_params.size},), got "
                             f"{values.shape}")
        self._ops.assign(self.flat_params, values)

    def zero_grad(self):
        self._ops.fill_zero(self.flat_grads)

    # -- forward and backward --

    def __call__(self, x, lengths=None, h0=None):
        """Inference: the head's output (see the class docstring); keeps nothing."""
        return self.forward(x, lengths=lengths, h0=h0, train=False)

    def forward(self, x, lengths=None, h0=None, train=False, return_state=False):
        """out, or (out, h_n) with return_state=True (h_n (num_layers·D, B, H), for streaming
        generation). With train=True, keeps what backward needs and applies dropout; a cache
        that would not fit in memory raises CacheTooLargeError first (see GRU.forward)."""
        if train and hasattr(x, "shape"):
            check_training_memory(self.gru, tuple(x.shape), True, "GRUModel.forward(train=True)")
        x = as_float_array("x", x, self.dtype)
        if x.ndim != 3:
            raise ValueError(f"x: expected a 3-D array (B, T, input_size), got {x.ndim}-D shape "
                             f"{x.shape}")
        B, T = x.shape[0], x.shape[1]
        if B == 0 or T == 0:
            raise ValueError(f"x: expected at least one sequence and one step, got shape {x.shape}")
        lengths = check_lengths(lengths, B, T)
        y, h_n = self.gru.forward(x, h0=h0, lengths=lengths, train=train)  # y (B, T, D·H)
        if self.head == "last":
            last = lengths - 1
            out = self.fc.forward(y[np.arange(B), last], train=train)  # (B, O)
        else:
            out = self.fc.forward(y, train=train)  # (B, T, O)
            valid = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
            out[~valid] = 0
        if train:
            self._cache.value = (B, T, lengths, y.shape)
        return (out, h_n) if return_state else out

    def forward_backward_chunked(self, x, loss_fn, chunk_steps, lengths=None):
        """A training forward and backward over long sequences in chunks of `chunk_steps` steps:
        the gradients of one whole pass (the same up to rounding; the same masks' with dropout)
        in the memory of one chunk. For sequences whose training cache would not fit at once
        (100 000 steps and more); unidirectional models.

        loss_fn(out) -> (loss, dout): the loss of the whole output (shaped as forward returns
        it) and its gradient. Adds the gradients into grads (zero them first); returns
        (out, loss).

        A first pass runs the chunks in order (in training mode only where dropout draws masks; no
        training cache is kept) and keeps the state entering each chunk (num_layers·B·H values per
        chunk), the random state its dropout masks start from, and what the head reads (the last
        valid step, or the head's output at every step); the loss follows from the whole output. A
        second pass, from the last chunk to the first, runs each chunk's forward again from its
        state (drawing the same masks) and its backward, fed the gradient that flows in from the
        later chunks. One more forward pass than forward + backward; rows whose sequence ended
        before a chunk sit it out.
        """
        gru = self.gru
        if gru.bidirectional:
            raise ValueError("chunk_steps: a bidirectional GRU reads each sequence from both "
                             "ends; training in chunks of time needs a unidirectional one")
        C = positive_int("chunk_steps", chunk_steps)
        x = as_float_array("x", x, self.dtype)
        if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected a 3-D array (B, T, input_size) with B, T >= 1, got "
                             f"shape {x.shape}")
        B, T = x.shape[:2]
        lengths = check_lengths(lengths, B, T)
        L, H = gru.num_layers, gru.hidden_size
        starts = list(range(0, T, C))
        last = lengths - 1
        h = np.zeros((L, B, H), self.dtype)
        entry, masks_from = [], []
        y_last = np.zeros((B, H), self.dtype)
        out = None if self.head == "last" else np.zeros((B, T, self.output_size), self.dtype)

        def chunk(c, h0, train=True):
            """Chunk c's rows, and its forward from h0 (L, B, H)."""
            s, e = starts[c], min(starts[c] + C, T)
            rows = np.nonzero(lengths > s)[0]
            y, h_rows = gru.forward(x[rows, s:e], h0=h0[:, rows],
                                    lengths=np.minimum(lengths[rows] - s, e - s), train=train)
            return s, e, rows, y, h_rows

        # The first pass keeps no training cache: an inference forward gives the training
        # forward's bits, and only dropout between layers (drawing masks) needs training mode.
        draws = gru.dropout > 0 and L > 1
        for c in range(len(starts)):
            entry.append(h.copy())
            masks_from.append(gru.dropout_rng.bit_generator.state)
            s, e, rows, y, h_rows = chunk(c, h, train=draws)
            gru._cache.value = None
            h[:, rows] = h_rows
            if self.head == "last":
                here = (last[rows] >= s) & (last[rows] < e)
                y_last[rows[here]] = y[here, last[rows[here]] - s]
            else:
                out[rows, s:e] = self.fc(y)
        after = gru.dropout_rng.bit_generator.state
        if self.head == "last":
            out = self.fc.forward(y_last, train=True)  # the head runs once, on every last step
        else:
            out[~(np.arange(T)[None, :] < lengths[:, None])] = 0
        loss, dout = loss_fn(out)
        dout = as_float_array("dout", dout, self.dtype)
        if dout.shape != out.shape:
            raise ValueError(f"dout: expected shape {out.shape}, got {dout.shape}")
        dh = np.zeros((L, B, H), self.dtype)
        if self.head == "last":
            dy_last = self.fc.backward(dout)  # (B, H): fed to each row's last step below
        for c in reversed(range(len(starts))):
            gru.dropout_rng.bit_generator.state = masks_from[c]
            s, e, rows, y, _ = chunk(c, entry[c])
            if self.head == "last":
                dy = np.zeros_like(y)
                here = np.nonzero((last[rows] >= s) & (last[rows] < e))[0]
                dy[here, last[rows[here]] - s] = dy_last[rows[here]]
            else:
                self.fc.forward(y, train=True)
                valid = np.arange(s, e)[None, :] < lengths[rows][:, None]
                dy = self.fc.backward(np.where(valid[:, :, None], dout[rows, s:e], 0)
                                      .astype(self.dtype, copy=False))
            _, dh_rows = _gru_backward(gru, dy, dh[:, rows], dh_is_ours=True)
            dh[:, rows] = dh_rows
        gru.dropout_rng.bit_generator.state = after
        return out, loss

    def backward(self, dout, dh_n=None):
        """BPTT through the head and the GRU; adds into grads; returns (dx, dh0)."""
        cached = getattr(self._cache, "value", None)
        if cached is None:
            raise RuntimeError("backward: call forward(x, ..., train=True) first")
        B, T, lengths, y_shape = cached
        dout = as_float_array("dout", dout, self.dtype)
        expected = (B, self.output_size) if self.head == "last" else (B, T, self.output_size)
        if dout.shape != expected:
            raise ValueError(f"dout: expected shape {expected}, got {dout.shape}")
        self._cache.value = None
        if self.head == "last":
            dy = np.zeros(y_shape, self.dtype)
            dy[np.arange(B), lengths - 1] = self.fc.backward(dout)
        else:
            valid = np.arange(T)[None, :] < lengths[:, None]
            dout = np.where(valid[:, :, None], dout, 0).astype(self.dtype, copy=False)
            dy = self.fc.backward(dout)
        return _gru_backward(self.gru, dy, dh_n, dh_is_ours=False)


def _gru_backward(gru, dy, dh, dh_is_ours):
    """gru.backward(dy, dh) of the gradients the model computed itself (the head's dy, and in chunks
    the state's dh from the later chunks; a dh_n the caller passed is the caller's). The GRU checks
    them as it checks every input; a NaN or Inf there is an overflow of the model's own arithmetic
    (finite dout, weights grown too large), reported as FloatingPointError instead of a ValueError
    about an argument the caller never passed. The check is the GRU's: nothing is scanned twice."""
    try:
        return gru.backward(dy, dh)
    except ValueError:
        if np.isfinite(dy).all() and not (dh_is_ours and not np.isfinite(dh).all()):
            raise
        raise FloatingPointError("backward: the gradient flowing from the output layer into the "
                                 "GRU contains NaN or Inf (an overflow: the weights or the loss "
                                 "gradient are too large)") from None


__all__ = ["Linear", "GRUModel", "HEADS"]
