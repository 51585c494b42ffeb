"""Data-parallel training over MPI: the machinery behind `Trainer(..., distributed=True)` and
`mpiexec -n N numgru train ...`. Not a general MPI layer: it serves the Trainer alone.

Every rank holds the same data and the same model. Each global batch is cut into contiguous row
shares, one per rank (sizes differ by at most one row; a rank may get none). A rank runs forward and
backward on its share with the output gradient scaled by (its positions / the global batch's
positions), so that the sums over ranks are the gradient of the global batch's mean loss; one
Allreduce then sums the model's flat gradient buffer. Positions are what the loss averages over:
rows for a "last" head, valid steps for a "sequence" head (the count is known on every rank from
the lengths, so it costs no message). A small Allreduce before it carries the loss and metric sums
and an error flag, so that a rank that fails makes every rank raise at the same point.

The deterministic mode (`deterministic=True` or an integer c) cuts each global batch into fixed
chunks of c rows (1 by default), independent of the number of ranks; each chunk's gradient is
computed alone and the chunks are added in float64, in chunk order, along a chain of ranks (rank r
receives the running sum from r-1, adds its chunks, passes it on; the last rank broadcasts it).
The arithmetic is then the same for any number of ranks: results are bitwise identical with 1, 2
or N ranks (with the same NUMGRU_NUM_THREADS per rank).

mpi4py is imported only here, and only when a distributed run is asked for: `import numgru` never
loads it (nor initialises MPI).
"""

import math
import os
import select
import sys
import time
import traceback
import zlib

import numpy as np

from .._checks import is_int
from .._launch import LAUNCH_VARS, launch_environment  # noqa: F401  (re-exported)
from ..backend import is_device_array
from ..errors import CheckpointError, DataFormatError, DistributedError, NonFiniteLossError
from .batches import Totals, batch_rows


def world_comm():
    """mpi4py's COMM_WORLD (importing mpi4py initialises MPI)."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"distributed training needs mpi4py and an MPI library: pip install "
                          f"'numgru[mpi]' (or build mpi4py against the cluster's MPI; see the "
                          f"README) ({e})") from None
    return MPI.COMM_WORLD


def library_version():
    """The first line of MPI_Get_library_version (mpi4py must be importable)."""
    from mpi4py import MPI
    return MPI.Get_library_version().strip().splitlines()[0].strip()


def shares(n, parts):
    """[(start, stop)] cutting range(n) into `parts` contiguous pieces whose sizes differ by at
    most one, the larger first (7 rows on 3 ranks: 3, 2, 2; 1 row on 3 ranks: 1, 0, 0)."""
    base, extra = divmod(n, parts)
    out, start = [], 0
    for r in range(parts):
        stop = start + base + (1 if r < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def _digest(arrays):
    """A CRC-32 of the arrays' dtypes, shapes and bytes (None entries count as such)."""
    crc = 0
    for a in arrays:
        if a is None:
            crc = zlib.crc32(b"None", crc)
            continue
        a = np.ascontiguousarray(a)
        crc = zlib.crc32(f"{a.dtype.str}{a.shape}".encode(), crc)
        crc = zlib.crc32(a.reshape(-1).view(np.uint8), crc)
    return crc


class Group:
    """The ranks of one communicator, with the few collective operations the Trainer uses. comm
    None: this process alone (no MPI), for the deterministic mode without distribution."""

    def __init__(self, comm):
        self.comm = comm
        if comm is None:
            self.rank, self.size = 0, 1
        else:
            self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())
        self.collectives = 0  # collective calls made so far (see join_failure)

    @property
    def is_mpi(self):
        return self.comm is not None

    def _MPI(self):
        from mpi4py import MPI
        return MPI

    # -- collectives (every rank calls each, in the same order) --

    def sum_(self, arr):
        """Sum a contiguous host array over all ranks, in place."""
        self.collectives += 1
        if self.size > 1:
            MPI = self._MPI()
            self.comm.Allreduce(MPI.IN_PLACE, arr, op=MPI.SUM)
        return arr

    def bcast_(self, arr, root=0):
        """Overwrite a contiguous host array with root's, in place."""
        self.collectives += 1
        if self.size > 1:
            self.comm.Bcast(arr, root=root)
        return arr

    def bcast(self, obj, root=0):
        self.collectives += 1
        return self.comm.bcast(obj, root=root) if self.size > 1 else obj

    def allgather(self, obj):
        self.collectives += 1
        return self.comm.allgather(obj) if self.size > 1 else [obj]

    def send_(self, arr, dest):
        self.collectives += 1
        self.comm.Send(arr, dest=dest)

    def recv_(self, arr, source):
        self.collectives += 1
        self.comm.Recv(arr, source=source)

    # -- errors --

    def check(self, error, what, values=()):
        """The guard every rank passes after work that may fail on some ranks only: one Allreduce
        of an error flag and of up to 7 `values` (summed); when any rank failed, every rank
        raises the same exception, naming the ranks. Returns the summed values.

        Every guard sends the same 8 numbers, so that a rank that failed early may join whatever
        guard the others are at (join_failure)."""
        n = len(values)
        if n > _CHECK_SIZE - 1:
            raise ValueError(f"values: at most {_CHECK_SIZE - 1} numbers, got {n}")
        vec = np.zeros(_CHECK_SIZE)
        vec[0] = error is not None
        vec[1:1 + n] = values
        self.sum_(vec)
        if vec[0]:
            self.raise_failure(error, what)
        return vec[1:1 + n]

    def raise_failure(self, error, what):
        """Every rank calls this once some rank failed (a flag said so): gathers what each rank
        raised and raises it on all of them."""
        info = None
        if error is not None:
            info = (type(error).__name__, str(error), isinstance(error, NonFiniteLossError),
                    getattr(error, "step", None), what)
        infos = self.allgather(info)
        raise _combined(infos, self.size) from error

    def join_failure(self, error, what):
        """A rank that failed before it took part in any collective (the CLI preparing data): it
        joins the first guard the other ranks reach, so that all raise together. Past that point
        where the others are is unknown, and the job is aborted instead."""
        if self.collectives == 0 and self.size > 1 and isinstance(error, Exception):
            self.check(error, what)
        self.abort(error, what)

    def abort(self, error, what=None, details=None):
        """End the whole MPI job (MPI_Abort) after saying which rank failed and why.

        The launcher reads each rank's output through a pipe and forwards it; MPI_Abort makes it
        end every process, and what it has not read by then is lost. So the one line naming the
        rank and the error goes first, in one write (a pipe passes a write of up to PIPE_BUF
        bytes whole), then `details()` (more output, such as the traceback), then everything is
        flushed and the rank pauses ABORT_PAUSE_S for the launcher to pass it on."""
        if self.size <= 1 or not self.is_mpi:
            return
        _flush_output()  # what was printed before comes before the line
        where = f" while {what}" if what else ""
        _write_line(f"numgru: rank {self.rank} of {self.size} raised ",
                    f"{type(error).__name__}: {error}",
                    f"{where}; aborting the MPI job so that no rank waits for it\n")
        if details is not None:
            try:
                details()
            except Exception:  # the line above has said what matters
                pass
        _flush_output()
        time.sleep(ABORT_PAUSE_S)
        self.comm.Abort(1)
        # MPICH's MPI_Abort may return once it has asked the launcher to end the job: this
        # rank must not go on (print its traceback again, or run into a collective).
        os._exit(1)


# Seconds a rank that aborts the job waits between its message and MPI_Abort, for the launcher
# to read the message and pass it on (without it, a loaded machine lost the message now and then);
# bounded, so that a failing job still ends at once.
ABORT_PAUSE_S = 0.5
# The longest line written in one write: a pipe's PIPE_BUF (POSIX's least, 512, where the system
# does not say), so that the line is not split into pieces that other output or the abort might
# come between.
_ONE_WRITE = getattr(select, "PIPE_BUF", 512)


def _write_line(head, text, tail):
    """head + text + tail on stderr in one write (to its file descriptor where it has one),
    `text` cut short with "..." where the whole would not fit in _ONE_WRITE bytes."""
    line = head + text + tail
    data = line.encode("utf-8", "backslashreplace")
    if len(data) > _ONE_WRITE:
        room = _ONE_WRITE - len((head + tail).encode("utf-8", "backslashreplace")) - 3
        cut = text.encode("utf-8", "backslashreplace")[:max(room, 0)]
        line = head + cut.decode("utf-8", "ignore") + "..." + tail
        data = line.encode("utf-8", "backslashreplace")
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        fd = None
    if fd is not None:
        try:
            while data:
                data = data[os.write(fd, data):]
            return
        except OSError:
            pass
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except Exception:
        pass


def _flush_output():
    """Flush Python's stdout and stderr (the current ones and the originals), then their file
    descriptors where they are files (a pipe or a terminal has nothing to sync)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    for fd in (1, 2):
        try:
            os.fsync(fd)
        except OSError:
            pass


_CHECK_SIZE = 8

# Exception types that the combined exception also is, when the first failing rank raised one of
# them, so that `except ValueError` catches a bad-data error on every rank.
_ALSO = {t.__name__: t for t in (ValueError, TypeError, OSError, FileNotFoundError,
                                 PermissionError, IndexError, MemoryError)}
_TYPED = {}


def _typed_error(type_name):
    base = _ALSO.get(type_name)
    if base is None:
        base = {"CheckpointError": CheckpointError,
                "DataFormatError": DataFormatError}.get(type_name)
    if base is None:
        return DistributedError
    if type_name not in _TYPED:
        _TYPED[type_name] = type(f"Distributed{type_name}", (DistributedError, base),
                                 {"__module__": __name__})
    return _TYPED[type_name]


def _combined(infos, size):
    """The exception every rank raises for the gathered [(type, message, nonfinite, step, what)
    or None per rank]."""
    failed = [(r, info) for r, info in enumerate(infos) if info is not None]
    ranks = [r for r, _ in failed]
    first_rank, (type_name, message, nonfinite, step, what) = failed[0]
    who = (f"rank {first_rank} of {size}" if len(ranks) == 1 else
           f"ranks {', '.join(map(str, ranks))} of {size}")
    same = all(info[1] == message for _, info in failed)
    if same and len(ranks) == size > 1:
        text = f"{message} ({type_name} on all {size} ranks)"
    else:
        text = f"{who} raised {type_name}: {message}"
    if not same:
        text += f" (rank {first_rank}'s; the others': " + "; ".join(
            f"rank {r}: {i[0]}: {i[1]}" for r, i in failed[1:]) + ")"
    text += f" [while {what}]"
    if nonfinite:
        e = NonFiniteLossError(text, step)
        e.all_ranks = True
        e.ranks, e.rank = ranks, first_rank
        return e
    return _typed_error(type_name)(text, ranks, type_name)


def collective(method):
    """For Trainer methods that every rank calls together (fit, evaluate, train_step): an
    exception that one rank raises before the method's first collective joins the others at
    their first guard (all raise it together); one raised later outside a guard, that is not
    already raised on every rank, aborts the MPI job with a message, instead of leaving the other
    ranks waiting."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        dp = getattr(self, "_dp", None)
        if dp is None or dp.size == 1:
            return method(self, *args, **kwargs)
        group = dp.group
        before = group.collectives
        try:
            return method(self, *args, **kwargs)
        except BaseException as e:
            if getattr(e, "all_ranks", False):
                raise
            what = f"in Trainer.{method.__name__}"
            if group.collectives == before and isinstance(e, Exception):
                group.check(e, what)  # raises on every rank
            group.abort(e, what, details=lambda e=e: traceback.print_exception(
                type(e), e, e.__traceback__))
            raise
    return wrapper


_GROUPS = {}


def group_for(comm):
    """The Group of an mpi4py communicator (one per communicator, so that the count of
    collectives is shared by all who use it), or of this process alone for comm None."""
    if comm is None:
        return Group(None)
    key = id(comm)
    if key not in _GROUPS:
        _GROUPS[key] = (comm, Group(comm))  # keep comm alive: its id stays unique
    return _GROUPS[key][1]


def resolve_comm(distributed):
    """The mpi4py communicator for Trainer(distributed=...): True -> COMM_WORLD, a communicator
    as it is, False/None -> None."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return world_comm()
    if isinstance(distributed, Group):
        return distributed.comm
    for method in ("Get_rank", "Get_size", "Allreduce", "Bcast", "allgather"):
        if not callable(getattr(distributed, method, None)):
            raise TypeError(f"distributed: expected True, False or an mpi4py communicator, got "
                            f"{type(distributed).__name__} (it has no {method})")
    return distributed


_HOOKED = []


def _install_abort_hook(group):
    """An unhandled exception on one rank of a multi-rank job would leave the others waiting in
    a collective: after Python prints it, abort the job. Exceptions raised on every rank together
    (all_ranks) end each process normally instead."""
    if group.size <= 1 or _HOOKED:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if getattr(value, "all_ranks", False):
            previous(kind, value, tb)
            return
        # The line naming the rank first, then Python's traceback (abort writes them in that
        # order, so that a traceback cut short by the abort cannot take the line with it).
        group.abort(value, "running outside numgru (an unhandled exception)",
                    details=lambda: previous(kind, value, tb))

    sys.excepthook = hook
    _HOOKED.append(hook)


def _threads_per_rank(comm):
    """NUMGRU_NUM_THREADS for this rank when several ranks share a machine and their CPU sets
    overlap (no binding by the launcher): this rank's CPUs divided among the ranks that share
    them. None where the user set it, or where nothing is shared."""
    if os.environ.get("NUMGRU_NUM_THREADS", "").strip():
        return None
    try:
        mine = set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        mine = set(range(os.cpu_count() or 1))
    from mpi4py import MPI
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        sets = local.allgather(sorted(mine))
    finally:
        local.Free()
    sharing = sum(1 for s in sets if mine & set(s))
    if sharing <= 1:
        return None
    return max(1, len(mine) // sharing)


class _DropoutSlices:
    """Stands in for the GRU's dropout generator during one pass over rows [a, b) of the global
    batch: the k-th mask asked for is the first T steps and rows [a, b) of the k-th mask drawn for
    the whole global batch, so that each row gets the values one process would give it."""

    def __init__(self, masks, a, b):
        self._masks = list(masks)
        self._next = 0
        self.a, self.b = a, b

    def random(self, shape):
        if self._next >= len(self._masks):
            raise RuntimeError("dropout: the GRU asked for more masks than its layers need")
        full = self._masks[self._next]
        self._next += 1
        part = full[:shape[0], self.a:self.b]
        if part.shape != tuple(shape):
            raise RuntimeError(f"dropout: mask of shape {tuple(shape)} asked for, the global "
                               f"batch's slice is {part.shape}")
        return np.ascontiguousarray(part)


class DataParallel:
    """The Trainer's data-parallel side: shares of each global batch, the gradient reduction,
    reduced metrics, agreement checks, rank-0 checkpoints. One per Trainer."""

    def __init__(self, trainer, distributed, deterministic):
        comm = resolve_comm(distributed)
        self.group = group_for(comm)
        self.trainer = trainer
        self.chunk = check_deterministic(deterministic)
        self.threads = None
        model = trainer.model
        self._ops = model._ops
        g = self.group
        # The first collective: a rank that failed before it (the CLI reading its data) joins
        # here, and every rank raises its error.
        g.check(None, "setting up data-parallel training")
        signature = {"model": model.config(), "parameters": model.num_parameters(),
                     "optimizer": type(trainer.optimizer).__name__, "loss": trainer.loss_name,
                     "metrics": trainer.metrics, "clip_norm": trainer.clip_norm,
                     "deterministic": self.chunk, "device": model.device}
        seen = g.allgather(signature)
        differ = [r for r, s in enumerate(seen) if s != seen[0]]
        if differ:
            keys = sorted(k for k in signature if seen[differ[0]][k] != seen[0][k])
            raise DistributedError(
                f"distributed: rank {differ[0]} of {g.size} builds another trainer than rank 0 "
                f"({', '.join(f'{k}: {seen[differ[0]][k]!r} vs {seen[0][k]!r}' for k in keys)}); "
                f"every rank must construct the same model, optimizer and loss", differ)
        if g.is_mpi and g.size > 1:
            self.threads = _threads_per_rank(g.comm)
            if self.threads is not None:
                os.environ["NUMGRU_NUM_THREADS"] = str(self.threads)
            _install_abort_hook(g)
        self.sync_from_root()

    @property
    def rank(self):
        return self.group.rank

    @property
    def size(self):
        return self.group.size

    # -- host staging of device buffers --

    def _host(self, arr):
        return np.array(self._ops.to_host(arr)) if is_device_array(arr) else arr

    def _sum_buffer(self, arr):
        """Allreduce SUM of a model buffer (host in place, device through a host copy)."""
        if is_device_array(arr):
            host = np.ascontiguousarray(self._ops.to_host(arr))
            self.group.sum_(host)
            self._ops.assign(arr, host)
        else:
            self.group.sum_(arr)

    def _bcast_buffer(self, arr):
        if is_device_array(arr):
            host = np.ascontiguousarray(self._ops.to_host(arr))
            self.group.bcast_(host)
            self._ops.assign(arr, host)
        else:
            self.group.bcast_(arr)

    # -- rank 0's state to every rank --

    def sync_from_root(self, loop=None, arrays=None):
        """Broadcast rank 0's parameters, optimizer state (moments, step count, hyperparameters),
        schedule, step count and dropout generator; with `loop`, also a JSON-like object and
        named host arrays of the epoch loop. Returns (loop, arrays) as rank 0 has them."""
        tr, g = self.trainer, self.group
        if g.size == 1:
            return loop, arrays
        model, opt = tr.model, tr.optimizer
        self._bcast_buffer(model.flat_params)
        opt_state = opt.state_dict()
        head = {k: v for k, v in opt_state.items() if k != "buffers"}
        sizes = {k: [b.size for b in v] for k, v in opt_state["buffers"].items()}
        specs = None if arrays is None else {
            k: (None if a is None else (a.dtype.str, a.shape)) for k, a in arrays.items()}
        meta = g.bcast({"optimizer": head, "buffers": sizes,
                        "scheduler": None if tr.scheduler is None else tr.scheduler.state_dict(),
                        "global_step": tr.global_step,
                        "dropout_rng": model.gru.dropout_rng.bit_generator.state,
                        "loop": loop, "arrays": specs})
        buffers = {}
        for name, span_sizes in meta["buffers"].items():
            mine = opt_state["buffers"][name]
            buffers[name] = []
            for k, size in enumerate(span_sizes):
                buf = np.ascontiguousarray(mine[k]).reshape(-1) if g.rank == 0 else \
                    np.empty(size, mine[k].dtype)
                buffers[name].append(g.bcast_(buf))
        if g.rank != 0:
            opt.load_state_dict(dict(meta["optimizer"], buffers=buffers))
            if tr.scheduler is not None and meta["scheduler"] is not None:
                tr.scheduler.load_state_dict(meta["scheduler"])
            tr.global_step = meta["global_step"]
            model.gru.dropout_rng.bit_generator.state = meta["dropout_rng"]
        out = None
        if meta["arrays"] is not None:
            out = {}
            for k, spec in meta["arrays"].items():
                if spec is None:
                    out[k] = None
                    continue
                buf = np.ascontiguousarray(arrays[k]) if g.rank == 0 else \
                    np.empty(spec[1], np.dtype(spec[0]))
                out[k] = g.bcast_(buf)
        return meta["loop"], out

    def check_same_data(self, named):
        """Every rank must pass the same data: compare checksums (one allgather)."""
        g = self.group
        if g.size == 1:
            return
        mine = {name: _digest(arrays) for name, arrays in named.items()}
        seen = g.allgather(mine)
        for name in named:
            differ = [r for r, s in enumerate(seen) if s[name] != seen[0][name]]
            if differ:
                raise DistributedError(
                    f"distributed: rank {differ[0]} of {g.size} holds other {name} than rank 0 "
                    f"(checksums {seen[differ[0]][name]:08x} vs {seen[0][name]:08x}); every rank "
                    f"must pass the same data, and each takes its share of every batch", differ)

    def guarded(self, what, fn, *args, **kwargs):
        """fn(*args) on every rank, then the guard: all raise if any failed."""
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            self.group.check(e, what)
            raise  # not reached: check raises
        self.group.check(None, what)
        return result

    def on_root(self, what, fn, *args, **kwargs):
        """fn(*args) on rank 0 alone (writing files), then the guard; returns rank 0's result
        on every rank."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                error = e
        self.group.check(error, what)
        return result

    def any(self, flag):
        """True on every rank when `flag` is true on any (one small Allreduce)."""
        return bool(self.group.check(None, "agreeing to stop", [float(bool(flag))])[0])

    # -- one step --

    def _dropout_masks(self, T, B):
        """The dropout masks one process would draw for a global batch of B rows and T steps, in
        the order its GRU draws them (one per layer but the last), from the shared generator."""
        gru = self.trainer.model.gru
        if not (gru.dropout > 0 and gru.num_layers > 1):
            return None
        shape = (T, B, gru.num_directions * gru.hidden_size)
        return [gru.dropout_rng.random(shape) for _ in range(gru.num_layers - 1)]

    def _pass(self, X, lengths, y, rows, a, b, n_global, mask, masks, metrics):
        """Forward and backward on global rows [a, b) (indices `rows` into X), adding their part
        of the global mean loss's gradient into the model's gradients. Returns (their mean loss,
        their totals vector: loss·positions, positions, metric sums)."""
        tr, model = self.trainer, self.trainer.model
        xb, lb, yb, mb = batch_rows(model, X, lengths, y, rows)
        if mask is not None:
            mb = np.asarray(mask[a:b, :xb.shape[1]], bool)
        gru = model.gru
        saved = gru.dropout_rng
        if masks is not None:
            gru.dropout_rng = _DropoutSlices(masks, a, b)
        try:
            out = model.forward(xb, lengths=lb, train=True)
        finally:
            gru.dropout_rng = saved
        step = tr.global_step + 1
        loss, grad = tr.checked_loss(*tr.loss_fn(out, yb, mb), step,
                                     where=f" on rows {a}..{b - 1} of the global batch")
        n_local = int(mb.sum()) if mb is not None else len(rows)
        if n_local != n_global:
            grad = (grad.astype(np.float64) * (n_local / n_global)).astype(grad.dtype)
        tr.backward(grad, step)
        totals = Totals()
        totals.add(loss, out, yb, mb, metrics)
        return loss, totals.vector()

    def step(self, X, lengths, y, index, T, mask=None):
        """One optimizer step on the global batch X[index] (T steps, the longest of its
        sequences, or x's own T for train_step), each rank on its share. Returns (global mean
        loss, totals vector of the global batch) on every rank."""
        tr, g = self.trainer, self.group
        model = tr.model
        B = len(index)
        step_no = tr.global_step + 1
        if mask is not None:
            n_global = int(np.asarray(mask).sum())
        elif model.head == "sequence":
            n_global = int(np.minimum(lengths[index], T).sum())
        else:
            n_global = B
        masks = self._dropout_masks(T, B)
        model.zero_grad()
        if self.chunk is None:
            a, b = shares(B, g.size)[g.rank]
            local_loss, vec, error = None, np.zeros(Totals.SIZE), None
            try:
                if b > a:
                    local_loss, vec = self._pass(X, lengths, y, index[a:b], a, b, n_global, mask,
                                                 masks, tr.metrics)
            except Exception as e:
                error = e
            vec = g.check(error, f"computing step {step_no}", vec)
            self._sum_buffer(model.flat_grads)  # the one Allreduce of the gradients
            # One rank: its own mean, bit for bit as without distribution.
            loss = local_loss if g.size == 1 else float(vec[0] / vec[1])
        else:
            loss, vec = self._deterministic_step(X, lengths, y, index, n_global, mask, masks,
                                                 step_no)
        if not math.isfinite(loss):
            e = NonFiniteLossError(f"loss is {loss} at step {step_no}; the parameters were not "
                                   f"updated (they hold the values after step {step_no - 1})",
                                   step_no)
            e.all_ranks = True
            raise e
        try:
            tr.finish_step(step_no, loss)  # the summed gradient: the same verdict everywhere
        except NonFiniteLossError as e:
            e.all_ranks = True
            raise
        return loss, vec

    def _deterministic_step(self, X, lengths, y, index, n_global, mask, masks, step_no):
        """Fixed chunks of rows, each chunk's gradient alone, added in chunk order in float64
        along the chain of ranks: the same operations for any number of ranks."""
        tr, g, model = self.trainer, self.group, self.trainer.model
        B = len(index)
        c = self.chunk
        bounds = [(s, min(s + c, B)) for s in range(0, B, c)]
        k0, k1 = shares(len(bounds), g.size)[g.rank]
        grads, vecs, error = [], np.zeros((k1 - k0, Totals.SIZE)), None
        try:
            for j, (a, b) in enumerate(bounds[k0:k1]):
                model.zero_grad()
                vecs[j] = self._pass(X, lengths, y, index[a:b], a, b, n_global, mask, masks,
                                     tr.metrics)[1]
                grads.append(np.array(self._host(model.flat_grads), np.float64))
        except Exception as e:
            error = e
        g.check(error, f"computing step {step_no}")
        all_vecs = np.concatenate([v for v in g.allgather(vecs) if len(v)])
        total = np.zeros(model.num_parameters(), np.float64)
        if g.rank > 0:
            g.recv_(total, g.rank - 1)
        for grad in grads:
            total += grad
        if g.rank < g.size - 1:
            g.send_(total, g.rank + 1)
        g.bcast_(total, root=g.size - 1)
        self._ops.assign(model.flat_grads, total.astype(model.dtype))
        vec = all_vecs.sum(axis=0)
        return float(vec[0] / vec[1]), vec

    # -- evaluation --

    def evaluate(self, X, lengths, y, batch_size):
        """Totals vector of the whole set, each rank evaluating its share (inference)."""
        tr, g = self.trainer, self.group
        N = len(X)
        if self.chunk is None:
            a, b = shares(N, g.size)[g.rank]
            totals, error = Totals(), None
            try:
                for start in range(a, b, batch_size):
                    tr.evaluate_batch(totals, X, lengths, y,
                                       np.arange(start, min(start + batch_size, b)))
            except Exception as e:
                error = e
            return g.check(error, "evaluating", totals.vector())
        # Deterministic: fixed batches of batch_size rows, whole batches per rank, their totals
        # added in batch order.
        bounds = [(s, min(s + batch_size, N)) for s in range(0, N, batch_size)]
        k0, k1 = shares(len(bounds), g.size)[g.rank]
        vecs, error = np.zeros((k1 - k0, Totals.SIZE)), None
        try:
            for j, (s, e) in enumerate(bounds[k0:k1]):
                totals = Totals()
                tr.evaluate_batch(totals, X, lengths, y, np.arange(s, e))
                vecs[j] = totals.vector()
        except Exception as e:
            error = e
        g.check(error, "evaluating")
        return np.concatenate([v for v in g.allgather(vecs) if len(v)]).sum(axis=0)


# -- the command line's side --

def cli_comm(choice):
    """The communicator `numgru train` trains over, or None to train alone.

    choice: True (--distributed), False (--no-distributed) or None (automatic: data-parallel when
    a launcher's variables say this process is one of several). Raises ValueError where the
    launch and MPI disagree, so that N processes never train N copies into one run folder."""
    env = launch_environment()
    launched = env is not None and (env[2] is None or env[2] > 1)
    if choice is False:
        if env is not None and env[2] is not None and env[2] > 1:
            raise ValueError(f"--no-distributed: this process is one of {env[2]} started by "
                             f"{env[1]} ({env[0]}={env[2]}); they would train {env[2]} copies "
                             f"into one run folder. Start one process, or drop --no-distributed")
        return None
    if choice is None and not launched:
        return None
    try:
        comm = world_comm()
    except ImportError as e:
        how = f"started by {env[1]} ({env[0]}={os.environ[env[0]]})" if env else "--distributed"
        raise ValueError(f"{how}: {e}; or pass --no-distributed in a single process") from None
    size = comm.Get_size()
    if size == 1 and env is not None and env[2] is not None and env[2] > 1:
        raise ValueError(f"this process is one of {env[2]} started by {env[1]} ({env[0]}="
                         f"{env[2]}), but MPI says it is alone: mpi4py loads another MPI than the "
                         f"launcher's ({library_version()}). Launch with that MPI's mpiexec, or "
                         f"rebuild mpi4py against the launcher's MPI (README, data-parallel "
                         f"training)")
    return comm if (size > 1 or choice) else None


def describe_launch():
    """Lines for `numgru info`, and this rank (print on rank 0 only). Imports mpi4py only when a
    launcher's variables are set."""
    import importlib.metadata
    import importlib.util
    env = launch_environment()
    if env is None:
        if importlib.util.find_spec("mpi4py") is None:
            return ["MPI: not launched under MPI; mpi4py not installed (pip install "
                    "'numgru[mpi]' for data-parallel training)"], 0
        return [f"MPI: not launched under MPI (mpi4py {importlib.metadata.version('mpi4py')} "
                f"installed; mpiexec -n N numgru train ... trains data-parallel)"], 0
    try:
        comm = world_comm()
    except ImportError as e:
        return [f"MPI: started by {env[1]} ({env[0]}), but {e}"], 0
    from mpi4py import MPI
    hosts = comm.gather(MPI.Get_processor_name(), root=0)
    threads = _threads_per_rank(comm) if comm.Get_size() > 1 else None
    if comm.Get_rank() != 0:
        return [], comm.Get_rank()
    counts = {}
    for h in hosts:
        counts[h] = counts.get(h, 0) + 1
    lines = [f"MPI: {library_version()} (mpi4py {importlib.metadata.version('mpi4py')}, MPI "
             f"{'.'.join(map(str, MPI.Get_version()))})",
             f"  launched by {env[1]} ({env[0]}): world size {comm.Get_size()}, on "
             + ", ".join(f"{h} ({n} rank{'s' if n > 1 else ''})" for h, n in counts.items())]
    if threads is not None:
        lines.append(f"  ranks share CPUs: training uses {threads} thread(s) per rank "
                     f"(NUMGRU_NUM_THREADS overrides)")
    return lines, 0


def check_deterministic(deterministic):
    """Rows per chunk for the deterministic mode, or None (off)."""
    if deterministic is None or deterministic is False:
        return None
    if deterministic is True:
        return 1
    if is_int(deterministic, 1):
        return int(deterministic)
    raise ValueError(f"deterministic: expected False, True (chunks of one row) or a positive "
                     f"number of rows per chunk, got {deterministic!r}")


__all__ = ["DistributedError", "DataParallel", "Group", "shares", "launch_environment",
           "world_comm", "library_version", "group_for", "resolve_comm"]
