"""Tunables of the CUDA backend (the numgru.cuda package): block shapes, path choice, fastmath.

Each kernel module (gemm.py, step.py, pointwise.py, persistent.py) builds its kernels from the
values it names in its COMPILED (and FASTMATH) when first used, per dtype and per set of those
values, so a test can patch them small (e.g. 2x2-thread GEMM tiles under the simulator) to
exercise partial edge tiles; the other values are read at each launch. Nothing here is read by
the CPU backends. All values are plain Python ints and bools.
"""

# Tiled GEMM (input projection, weight gradients, dx, per-step dh): a block of
# GEMM_THREADS_Y x GEMM_THREADS_X threads computes a (GEMM_THREADS_Y*GEMM_REG_M) x
# (GEMM_THREADS_X*GEMM_REG_N) tile of C, each thread a GEMM_REG_M x GEMM_REG_N block held in
# registers, stepping through K in slices of GEMM_TILE_K staged in shared memory.
GEMM_THREADS_X = 16
GEMM_THREADS_Y = 16
GEMM_REG_M = 4
GEMM_REG_N = 4
GEMM_TILE_K = 16

# Per-step recurrent kernel (step.py, the path for sizes the persistent kernel cannot hold): a block
# of STEP_TILE_BATCH x STEP_TILE_UNITS threads, one thread per (sequence, hidden unit), with the
# gate math fused after the recurrent product. The batch side of the tile shrinks to the next power
# of two above B when B is smaller, so that small batches do not leave most threads idle.
STEP_TILE_UNITS = 32
STEP_TILE_BATCH = 8

# Elementwise kernels (backward gate gradients, array operations): threads per block.
POINTWISE_THREADS = 256

# Persistent cooperative kernel (persistent.py): one launch runs every step; each block keeps the
# rows (forward) or columns (backward) of W_hh for its slice of hidden units in shared memory and
# the grid synchronises once per step (twice for reset_after=False). PERSIST_THREADS threads per
# block, split in groups of PERSIST_KSPLIT that share one dot product (a power of two that divides
# PERSIST_THREADS).
PERSIST_ENABLE = True
PERSIST_THREADS = 256
PERSIST_KSPLIT = 32
# Largest batch that takes the persistent path: above it each block's per-step work grows with B
# while the per-step path's launch cost is spread over more rows.
PERSIST_MAX_BATCH = 32
# Hidden units per block; None chooses the fewest blocks that fit the device. Tests set it small to
# make one block run several slices (the simulator runs a cooperative grid as one block).
PERSIST_UNITS_PER_BLOCK = None

# Column sums (bias gradients): threads per block, one thread per column.
COLSUM_THREADS = 128

# fastmath changes exp/tanh accuracy and NaN handling; off unless a test bounds its error.
FASTMATH = False


def snapshot(names):
    """The current values of `names` (the tunables a kernel family is compiled with) and FASTMATH,
    as a hashable key for that family's kernel cache: a change to a value read only at launch
    (PERSIST_ENABLE, PERSIST_MAX_BATCH, ...) builds nothing again."""
    g = globals()
    return tuple(sorted((k, g[k]) for k in set(names) | {"FASTMATH"}))
