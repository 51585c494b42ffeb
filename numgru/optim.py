"""Optimizers (Adam, AdamW, SGD with momentum), gradient clipping by global norm, and learning-rate
schedules (step, cosine), following torch.optim's update rules operation for operation.

An optimizer works on flat spans: it groups the (name, parameter, gradient) triples it is given
into runs that are adjacent in memory (a GRUModel's parameters are all one run), keeps its state
(moments, momentum) as one flat buffer per run, and updates each run with one compiled loop: an
@njit loop for host arrays, one numba.cuda kernel for a model whose parameters live on the GPU.
"""

import math

import numpy as np
from numba import njit

from . import backend
from ._checks import is_number, non_negative_int, positive_int
from ._jit import CACHE
from ._optim_math import adam_math, sgd_math


# error_model="numpy": a division by zero gives Inf or NaN, as in torch and in the CUDA kernels,
# instead of a ZeroDivisionError check per element, a branch that kept the loops scalar (Adam's
# update ran at half its vector speed).
_adam_element = njit(cache=CACHE, inline="always", error_model="numpy")(adam_math)
_sgd_element = njit(cache=CACHE, inline="always", error_model="numpy")(sgd_math)


# Each kernel runs one of two ways: write=True applies the update; write=False changes nothing
# and answers whether every new value (parameter and state) would be finite once stored, that
# is below `limit` in magnitude (the overflow threshold of the arrays' dtype: values at or past
# it round to Inf). The same arithmetic both ways, so the check is exact. The check reduces over
# the whole span without leaving early, so that it vectorises as the update does.

@njit(cache=CACHE, error_model="numpy")
def _adam_kernel(p, g, exp_avg, exp_avg_sq, lr, one_minus_beta1, beta2, one_minus_beta2, eps,
                 weight_decay, decoupled, bias_correction1, bias_correction2_sqrt, limit, write):
    """adam_math over a flat span: p, g, exp_avg, exp_avg_sq are 1-D arrays of one size."""
    if write:
        for i in range(p.size):
            p[i], exp_avg[i], exp_avg_sq[i] = _adam_element(
                p[i], g[i], exp_avg[i], exp_avg_sq[i], lr, one_minus_beta1, beta2,
                one_minus_beta2, eps, weight_decay, decoupled, bias_correction1,
                bias_correction2_sqrt)
        return True
    bad = False
    for i in range(p.size):
        q, m, v = _adam_element(p[i], g[i], exp_avg[i], exp_avg_sq[i], lr, one_minus_beta1,
                                beta2, one_minus_beta2, eps, weight_decay, decoupled,
                                bias_correction1, bias_correction2_sqrt)
        bad |= not (abs(q) < limit and abs(m) < limit and abs(v) < limit)
    return not bad


@njit(cache=CACHE, error_model="numpy")
def _sgd_kernel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first, limit, write):
    """sgd_math over a flat span: p, g, buf are 1-D arrays of one size."""
    if write:
        for i in range(p.size):
            p[i], buf[i] = _sgd_element(p[i], g[i], buf[i], lr, momentum, dampening,
                                        weight_decay, nesterov, first)
        return True
    bad = False
    for i in range(p.size):
        q, b = _sgd_element(p[i], g[i], buf[i], lr, momentum, dampening, weight_decay, nesterov,
                            first)
        bad |= not (abs(q) < limit and abs(b) < limit)
    return not bad


def _overflow_limit(dtype):
    """The magnitude from which a float64 value stored as dtype is Inf: halfway between the
    largest finite value and the next power of two (round to nearest even)."""
    info = np.finfo(dtype)
    if info.dtype == np.float64:
        return math.inf
    return float(info.max) + 2.0 ** (info.maxexp - info.nmant - 2)


def _launch(name, n, *args):
    """Run one of cuda/optim.py's kernels over n elements (numba.cuda is imported on first use);
    returns the kernel's answer where it gives one (the update kernels: whether every new value
    is finite, with write=False)."""
    from .cuda import optim as cuda_optim
    return cuda_optim.launch(name, n, *args)


# -- grouping parameters into flat spans --

def _owner(arr):
    """The array that owns arr's memory (the end of its .base chain)."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


def _offset_in(arr, owner):
    """arr's first element as an index into owner.reshape(-1), or None where that is not a view."""
    if not owner.flags.c_contiguous or owner.dtype != arr.dtype:
        return None
    delta = arr.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    if delta % arr.itemsize:
        return None
    start = delta // arr.itemsize
    return start if 0 <= start and start + arr.size <= owner.size else None


def _spans(params):
    """[(names, param_span, grad_span)]: runs of parameters adjacent in memory, as 1-D views.

    params: an object with parameters() (a layer or a model), or an iterable of
    (name, param, grad) triples.
    """
    if hasattr(params, "parameters") and callable(params.parameters):
        flat_p, flat_g = getattr(params, "flat_params", None), getattr(params, "flat_grads", None)
        if backend.is_device_array(flat_p):
            # A model or layer on the GPU: its flat buffers are the one span.
            return [([name for name, _, _ in params.parameters()], flat_p, flat_g)]
        params = params.parameters()
    triples = list(params)
    if not triples:
        raise ValueError("params: expected at least one (name, parameter, gradient) triple, got none")
    runs = []  # [names, p_owner, p_start, p_end, g_owner, g_start, g_end]
    for i, item in enumerate(triples):
        if not (isinstance(item, tuple) and len(item) == 3):
            raise TypeError(f"params[{i}]: expected a (name, parameter, gradient) triple, got "
                            f"{type(item).__name__}")
        name, p, g = item
        if backend.is_device_array(p) or backend.is_device_array(g):
            if not (backend.is_device_array(p) and backend.is_device_array(g)) or \
                    tuple(p.shape) != tuple(g.shape) or p.dtype != g.dtype:
                raise ValueError(f"params[{i}] ({name}): parameter and gradient must be device "
                                 f"arrays of one shape and dtype")
            runs.append([[name], p, 0, p.size, g, 0, g.size])  # device views: one span each
            continue
        for what, arr in (("parameter", p), ("gradient", g)):
            if not isinstance(arr, np.ndarray) or arr.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{i}] ({name}): expected a float32/float64 numpy "
                                f"{what}, got {type(arr).__name__}")
            if not arr.flags.c_contiguous:
                raise ValueError(f"params[{i}] ({name}): the {what} must be C-contiguous")
        if p.shape != g.shape or p.dtype != g.dtype:
            raise ValueError(f"params[{i}] ({name}): gradient {g.dtype}{g.shape} does not match "
                             f"parameter {p.dtype}{p.shape}")
        p_own, g_own = _owner(p), _owner(g)
        p_at, g_at = _offset_in(p, p_own), _offset_in(g, g_own)
        if p_at is None:
            p_own, p_at = p, 0
        if g_at is None:
            g_own, g_at = g, 0
        if runs:
            r = runs[-1]
            if r[1] is p_own and r[3] == p_at and r[4] is g_own and r[6] == g_at:
                r[0].append(name)
                r[3] += p.size
                r[6] += g.size
                continue
        runs.append([[name], p_own, p_at, p_at + p.size, g_own, g_at, g_at + g.size])
    dtypes = {r[1].dtype for r in runs}
    if len(dtypes) > 1:
        raise ValueError(f"params: expected one dtype for all parameters, got {sorted(map(str, dtypes))}")
    return [(names, p_own.reshape(-1)[p0:p1], g_own.reshape(-1)[g0:g1])
            for names, p_own, p0, p1, g_own, g0, g1 in runs]


def _address_range(arr):
    """[start, end) byte addresses of a contiguous host or device array (None where a device
    array tells none)."""
    if backend.is_device_array(arr):
        iface = getattr(arr, "__cuda_array_interface__", None)
        if iface is None:  # the CUDA simulator's arrays wrap a numpy array
            host = getattr(arr, "_ary", None)
            iface = host.__array_interface__ if isinstance(host, np.ndarray) else None
        if iface is None:
            return None
    else:
        iface = arr.__array_interface__
    start = iface["data"][0]
    return start, start + arr.size * arr.dtype.itemsize


def _inside(arr, buf):
    """Whether arr's memory lies inside buf's (both host or both device arrays)."""
    if arr is buf:
        return True
    if backend.is_device_array(arr) != backend.is_device_array(buf):
        return False
    a, b = _address_range(arr), _address_range(buf)
    return a is not None and b is not None and b[0] <= a[0] and a[1] <= b[1]


def _host_copy(arr):
    return arr.copy_to_host() if backend.is_device_array(arr) else arr.copy()


def _check_number(name, value, low=0.0, high=None, high_open=False):
    if not is_number(value):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value) or value < low or \
        (high is not None and (value >= high if high_open else value > high))
    if bad:
        upper = "" if high is None else (f", {high})" if high_open else f", {high}]")
        raise ValueError(f"{name}: expected a finite number in [{low}{upper or ', inf)'}, "
                         f"got {value!r}")
    return value


def clip_grad_norm(params, max_norm):
    """Scale all gradients in place so that their global L2 norm is at most max_norm, as
    torch.nn.utils.clip_grad_norm_ (factor max_norm / (norm + 1e-6), capped at 1).
    Returns the norm before clipping."""
    spans = params if isinstance(params, _SpanList) else _SpanList(_spans(params))
    return spans.clip(max_norm)


class _SpanList(list):
    """(names, param_span, grad_span) triples, host (numpy) or device (numba.cuda) arrays."""

    def norm(self):
        total = 0.0
        for _, _, g in self:
            g = g.copy_to_host() if backend.is_device_array(g) else g  # a vector: cheap to copy
            total += float(np.dot(g, g))
        return math.sqrt(total)

    def clip(self, max_norm):
        max_norm = _check_number("max_norm", max_norm)
        total = self.norm()
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for _, _, g in self:
                if backend.is_device_array(g):
                    _launch("scale", g.size, g, g.dtype.type(coef))
                else:
                    g *= g.dtype.type(coef)
        return total

    def zeros_like(self, arr):
        if backend.is_device_array(arr):
            return backend.array_ops("cuda").zeros(arr.size, arr.dtype)
        return np.zeros_like(arr)


class Optimizer:
    """Shared machinery: flat spans, learning rate, step count, zero_grad, clipping, state."""

    _buffers = ()  # names of the per-span state buffers

    def __init__(self, params, **hyperparameters):
        self.spans = _SpanList(_spans(params))
        # The layer or model whose parameters these are: a copy of the optimizer (copy.deepcopy,
        # pickle) takes its spans from the copy of it (triples given as such copy as arrays).
        self._source = params if hasattr(params, "parameters") and callable(params.parameters) \
            else None
        self.__dict__.update(self._checked(hyperparameters))
        self.step_count = 0
        self.state = {name: [self.spans.zeros_like(p) for _, p, _ in self.spans]
                      for name in self._buffers}

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._source is not None:
            del state["spans"]  # views into the source's buffers: made again from its copy
        state["state"] = {k: [_host_copy(b) for b in v] for k, v in self.state.items()}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._source is not None:
            self.spans = _SpanList(_spans(self._source))
        self.state = {k: [self._like_span(p, b) for (_, p, _), b in zip(self.spans, v)]
                      for k, v in self.state.items()}

    def _like_span(self, p, values):
        """values (host) as a buffer on the span p's device."""
        out = self.spans.zeros_like(p)
        if backend.is_device_array(out):
            out.copy_to_device(values)
            return out
        return values

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hyper})"

    def check_bound_to(self, model, name="optimizer"):
        """Raise ValueError unless every parameter and gradient this optimizer updates lies in
        model's flat parameter and gradient buffers (an optimizer made for another model, or
        for one of another size, would update that model's arrays and leave this one as it is)."""
        flat_p, flat_g = getattr(model, "flat_params", None), getattr(model, "flat_grads", None)
        if flat_p is None or flat_g is None:
            return
        for names, p, g in self.spans:
            if not (_inside(p, flat_p) and _inside(g, flat_g)):
                size = sum(p.size for _, p, _ in self.spans)
                raise ValueError(
                    f"{name}: this {type(self).__name__} was made for another model's parameters "
                    f"({size} values, starting with {names[0]!r}), not for this "
                    f"{type(model).__name__}'s ({flat_p.size} values): it would update the other "
                    f"model and leave this one unchanged. Build it on this model, e.g. "
                    f"{type(self).__name__}(model, ...)")

    def zero_grad(self):
        for _, _, g in self.spans:
            if backend.is_device_array(g):
                backend.array_ops("cuda").fill_zero(g)
            else:
                g[...] = 0

    def step(self):
        """One update of every parameter from its current gradient."""
        self._update(write=True)
        self.step_count += 1

    def next_step_is_finite(self):
        """Whether step() now would leave every parameter and state value finite (False where
        it would store NaN or Inf: a learning rate or gradient far too large). A pass over the
        spans with step's own arithmetic that writes nothing; the Trainer asks it before every
        step, and steps only where it answers True."""
        return self._update(write=False)

    def _update(self, write):
        """Apply the update (write=True), or only tell whether every new value would be finite
        (write=False; nothing changes)."""
        raise NotImplementedError

    def grad_norm(self):
        """Global L2 norm of all gradients."""
        return self.spans.norm()

    def clip_grad_norm(self, max_norm):
        """clip_grad_norm over this optimizer's gradients; returns the norm before clipping."""
        return self.spans.clip(max_norm)

    def hyperparameters(self):
        return {"lr": self.lr}

    def _checked(self, hp, where=""):
        """The hyperparameters hp (every name of hyperparameters()) checked, as the attributes
        to set: the one set of rules for the constructor and for a loaded state (`where` prefixes
        the messages; a loaded flag must be a boolean)."""
        return {"lr": _check_number(f"{where}lr", hp["lr"])}

    def state_dict(self):
        """{"type", "hyperparameters", "step_count", "buffers": {name: [array per span]}} (copies)."""
        return {"type": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "step_count": self.step_count,
                "buffers": {k: [_host_copy(b) for b in v] for k, v in self.state.items()}}

    def load_state_dict(self, state):
        """Restore what state_dict returned (same optimizer type and parameter layout)."""
        if not isinstance(state, dict) or "type" not in state:
            raise TypeError(f"state: expected a dict from state_dict(), got {type(state).__name__}")
        if state["type"] != type(self).__name__:
            raise ValueError(f"state: saved by {state['type']}, cannot load into "
                             f"{type(self).__name__}")
        buffers = state.get("buffers", {})
        if not isinstance(buffers, dict) or sorted(buffers) != sorted(self.state):
            raise ValueError(f"state: expected buffers {sorted(self.state)}, got "
                             f"{sorted(buffers) if isinstance(buffers, dict) else buffers!r}")
        for name, arrays in buffers.items():
            sizes = [b.size for b in self.state[name]]
            if not isinstance(arrays, (list, tuple)):
                raise TypeError(f"state: buffer {name!r}: expected a list of arrays, got "
                                f"{type(arrays).__name__}")
            got = [np.asarray(a).size for a in arrays]
            if got != sizes:
                raise ValueError(f"state: buffer {name!r} has span sizes {got}, this optimizer's "
                                 f"parameters have {sizes} (another model shape?)")
            for k, a in enumerate(arrays):
                a = np.asarray(a)
                if a.dtype.kind not in "biuf" or not np.isfinite(a).all():
                    raise ValueError(f"state: buffer {name!r}[{k}]: expected finite real numbers "
                                     f"(dtype {a.dtype})")
        saved = state.get("hyperparameters", {})
        if not isinstance(saved, dict):
            raise TypeError(f"state: hyperparameters: expected a dict, got {type(saved).__name__}")
        current = self.hyperparameters()
        unknown = sorted(set(saved) - set(current))
        if unknown:  # a state may set nothing but this optimizer's own hyperparameters
            raise ValueError(f"state: hyperparameters {unknown} are not {type(self).__name__}'s "
                             f"(expected some of {sorted(current)})")
        hyper = self._checked({**current, **saved}, where="state: ")
        step_count = non_negative_int("state: step_count", state.get("step_count"))
        for name, arrays in buffers.items():
            for dst, src in zip(self.state[name], arrays):
                src = np.ascontiguousarray(src, dtype=dst.dtype).reshape(dst.shape)
                if backend.is_device_array(dst):
                    dst.copy_to_device(src)
                else:
                    dst[...] = src
        for key, value in hyper.items():
            setattr(self, key, value)
        self.step_count = step_count


class Adam(Optimizer):
    """torch.optim.Adam: weight_decay is an L2 term added to the gradient."""

    _buffers = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _checked(self, hp, where=""):
        betas = hp["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"{where}betas: expected a pair (beta1, beta2), got {betas!r}")
        return {"lr": _check_number(f"{where}lr", hp["lr"]),
                "betas": tuple(_check_number(f"{where}betas[{i}]", b, 0.0, 1.0, high_open=True)
                               for i, b in enumerate(betas)),
                "eps": _check_number(f"{where}eps", hp["eps"]),
                "weight_decay": _check_number(f"{where}weight_decay", hp["weight_decay"])}

    def hyperparameters(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, write):
        beta1, beta2 = self.betas
        t = self.step_count + 1
        bias_correction1 = 1 - beta1 ** t
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
        for k, (_, p, g) in enumerate(self.spans):
            args = (p, g, self.state["exp_avg"][k], self.state["exp_avg_sq"][k], float(self.lr),
                    1 - beta1, beta2, 1 - beta2, self.eps, self.weight_decay, self._decoupled,
                    bias_correction1, bias_correction2_sqrt, _overflow_limit(p.dtype), write)
            ok = _launch("adam", p.size, *args) if backend.is_device_array(p) \
                else _adam_kernel(*args)
            if not (write or ok):
                return False
        return True


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay, p <- p (1 - lr·wd) before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class SGD(Optimizer):
    """torch.optim.SGD with momentum, dampening, Nesterov momentum and L2 weight decay."""

    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr=1e-2, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _checked(self, hp, where=""):
        out = {name: _check_number(f"{where}{name}", hp[name])
               for name in ("lr", "momentum", "dampening", "weight_decay")}
        nesterov = hp["nesterov"]
        if where and not isinstance(nesterov, bool):
            raise TypeError(f"{where}nesterov: expected true or false, got {nesterov!r}")
        out["nesterov"] = bool(nesterov)
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(f"{where}nesterov: needs momentum > 0 and dampening = 0, got "
                             f"momentum={out['momentum']}, dampening={out['dampening']}")
        return out

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _update(self, write):
        first = self.step_count == 0
        for k, (_, p, g) in enumerate(self.spans):
            args = (p, g, self.state["momentum_buffer"][k], float(self.lr), self.momentum,
                    self.dampening, self.weight_decay, self.nesterov, first,
                    _overflow_limit(p.dtype), write)
            ok = _launch("sgd", p.size, *args) if backend.is_device_array(p) \
                else _sgd_kernel(*args)
            if not (write or ok):
                return False
        return True


# -- learning-rate schedules: step() once per epoch, as torch.optim.lr_scheduler --

class _Schedule:
    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a numgru optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def step(self):
        """Advance one epoch and set the optimizer's learning rate for the next one."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self):
        return self.optimizer.lr

    def state_dict(self):
        return {"type": type(self).__name__, "base_lr": self.base_lr,
                "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            raise ValueError(f"state: saved by "
                             f"{state.get('type') if isinstance(state, dict) else state!r}, "
                             f"cannot load into {type(self).__name__}")
        base_lr = _check_number("state: base_lr", state.get("base_lr"))
        last_epoch = non_negative_int("state: last_epoch", state.get("last_epoch"))
        self.base_lr = base_lr
        self.last_epoch = last_epoch
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(_Schedule):
    """lr = base_lr · gamma^(epoch // step_size), as torch's StepLR."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = positive_int("step_size", step_size)
        self.gamma = _check_number("gamma", gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(_Schedule):
    """lr = eta_min + (base_lr - eta_min)(1 + cos(π·epoch / T_max)) / 2, as torch's
    CosineAnnealingLR (its closed form); constant at eta_min after T_max."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        self.T_max = positive_int("T_max", T_max)
        self.eta_min = _check_number("eta_min", eta_min)

    def lr_at(self, epoch):
        epoch = min(epoch, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.T_max)) / 2


OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD}
