"""numgru's public exceptions, in one place (each is also raised where its module says, and
importable from there, as from `numgru`). A leaf: it imports nothing of numgru."""


class CacheTooLargeError(MemoryError):
    """A training forward whose cache would not fit in the memory available: refused before
    anything is allocated, with the bytes it needs and what would make it fit."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or gradient; the parameters were not updated."""

    def __init__(self, message, step, epoch=None, checkpoint=None):
        super().__init__(message)
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not one, a newer format, another model's shape."""


class DataFormatError(ValueError):
    """A data file that cannot be read as what it claims to be; the message names file and line."""


class OnnxImportError(ValueError):
    """An ONNX graph that numgru cannot map onto a GRU or a GRUModel; the message says why."""


class DistributedError(RuntimeError):
    """An exception raised on one or more ranks, raised again on every rank at the same point so
    that none waits for the others. `ranks`: the ranks that raised; `rank`: the first of them;
    `type_name`: the first one's exception type. On a rank that raised, __cause__ is its own
    exception."""

    all_ranks = True

    def __init__(self, message, ranks=(), type_name=None):
        super().__init__(message)
        self.ranks = list(ranks)
        self.rank = self.ranks[0] if self.ranks else None
        self.type_name = type_name


__all__ = ["CacheTooLargeError", "NonFiniteLossError", "CheckpointError",
           "DataFormatError", "OnnxImportError", "DistributedError"]
