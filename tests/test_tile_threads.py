"""The register-tiled product, the in-kernel weight packers and the parts/barrier machinery of the
CPU backend (numgru/cpu/tile.py, numgru/cpu/sync.py, the *_part kernels of numgru/cpu/kernels.py).

Truths: numpy products in float64 for the tile; the numpy packers of _tile (plain reshapes and
transposes) for the compiled ones; for the threads, the same computation run as one part, since
every entry's arithmetic is independent of the partition (so results must be bit-identical), and
the float64 NumPy reference for the layer passes run in several parts.
"""

import os
import platform
import threading

import numpy as np
import pytest
from numba import njit

import numgru as ng
from numgru import reference
from numgru.cpu import sync as _sync
from numgru.cpu import kernels as cpu
from numgru.cpu.tile import (pack_columns, pack_gates, panel_product, panel_products,
                         tile_functions, vector_length)
from helpers import assert_close


@njit(error_model="numpy")
def _product_kernel(fns, nv, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride,
                    acc):
    if nv == 1:  # the tile's width is a constant at each call site
        panel_product(fns, 1, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc)
    elif nv == 2:
        panel_product(fns, 2, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc)
    else:
        panel_product(fns, 3, a, a_off, lda, ka, M, bp, bp_off, ldb, K, c, c_off, ldc, vstride, acc)


def _product(nv, a, *args):
    _product_kernel(tile_functions(a.dtype), nv, a, *args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nv", [1, 2, 3])
def test_panel_product_against_numpy(dtype, nv):
    """Every row-tile shape (8, 4, 2, 1 and their mixes), k across the k-block boundary, a
    strided a, and the accumulate mode."""
    rng = np.random.default_rng(nv)
    VL = vector_length(dtype)
    for M in [1, 2, 3, 5, 7, 8, 13, 17]:
        for K in [1, 3, 128, 131, 300]:
            lda, ka = (K + 3, 1) if M % 2 else (1, M + 2)  # row-major with padding, or columns
            a = rng.standard_normal(M * max(lda, 1) + K * ka + 8).astype(dtype)
            W = nv * VL
            bp = rng.standard_normal((K, W + 5)).astype(dtype)  # a panel with a wider row
            ldc, vstride = nv * VL + 7, VL
            c0 = rng.standard_normal((M, ldc)).astype(dtype)
            am = np.array([[a[2 + m * lda + k * ka] for k in range(K)] for m in range(M)],
                          np.float64)
            want = am @ bp[:, 1:1 + W].astype(np.float64)
            scale = np.abs(am) @ np.abs(bp[:, 1:1 + W].astype(np.float64)) + 1
            eps = np.finfo(dtype).eps
            for acc in (False, True):
                c = c0.copy()
                _product(nv, a, 2, lda, ka, M, bp.reshape(-1), 1, W + 5, K, c.reshape(-1), 0,
                         ldc, vstride, acc)
                got = c[:, :W].astype(np.float64) - (c0[:, :W] if acc else 0)
                # one chain of K fused multiply-adds per entry: error below (K + 2) eps of the
                # sum of |terms| (+ the rounding of adding c0)
                err = np.abs(got - want) / scale
                assert err.max() <= (K + 4) * eps, (M, K, acc, err.max())
                assert np.array_equal(c[:, W:], c0[:, W:]), "wrote outside the tile"


def test_tile_is_one_fma_chain_per_entry():
    """Splitting k (the k blocks, the accumulate mode) continues the same chain: the product of
    300 terms equals, bit for bit, the product computed as 128 + 128 + 44 with acc."""
    rng = np.random.default_rng(0)
    M, K, VL = 8, 300, vector_length(np.float32)
    a = rng.standard_normal((M, K)).astype(np.float32)
    bp = rng.standard_normal((K, 3 * VL)).astype(np.float32)
    whole = np.zeros((M, 3 * VL), np.float32)
    _product(3, a.reshape(-1), 0, K, 1, M, bp.reshape(-1), 0, 3 * VL, K, whole.reshape(-1), 0,
             3 * VL, VL, False)
    parts = np.zeros((M, 3 * VL), np.float32)
    for k0, kn in [(0, 100), (100, 150), (250, 50)]:
        _product(3, a.reshape(-1), k0, K, 1, M, bp.reshape(-1), k0 * 3 * VL, 3 * VL, kn,
                 parts.reshape(-1), 0, 3 * VL, VL, k0 > 0)
    assert np.array_equal(whole, parts)


@njit(error_model="numpy")
def _products_kernel(fns, nv, a, lda, M, bp, bp_step, ldb, K, c, c_step, ldc, vstride, n, acc):
    if nv == 1:
        panel_products(fns, 1, a, 0, lda, 1, M, bp, 0, bp_step, ldb, K, c, 0, c_step, ldc,
                       vstride, n, acc)
    elif nv == 2:
        panel_products(fns, 2, a, 0, lda, 1, M, bp, 0, bp_step, ldb, K, c, 0, c_step, ldc,
                       vstride, n, acc)
    else:
        panel_products(fns, 3, a, 0, lda, 1, M, bp, 0, bp_step, ldb, K, c, 0, c_step, ldc,
                       vstride, n, acc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nv", [1, 2, 3])
def test_one_or_two_rows_over_many_panels_are_the_same_chains(dtype, nv):
    """A one- or two-row product takes several panels at once (the multiply-add's latency): each
    entry is still one chain over k, so the rows equal, bit for bit, the same rows computed
    inside an eight-row tile, for any number of panels (whole groups and a remainder), with and without
    accumulating; and it is within the chain's error bound of the float64 product."""
    rng = np.random.default_rng(nv)
    VL = vector_length(dtype)
    W = nv * VL
    eps = np.finfo(dtype).eps
    for n_panels in (1, 2, 5, 9):
        for K in (1, 37, 300):
            a = rng.standard_normal((8, K)).astype(dtype)
            bp = rng.standard_normal((n_panels, K, W)).astype(dtype)
            c0 = rng.standard_normal((8, n_panels * W)).astype(dtype)
            for acc in (False, True):
                eight = c0.copy()
                _products_kernel(tile_functions(dtype), nv, a.reshape(-1), K, 8, bp.reshape(-1),
                                 K * W, W, K, eight.reshape(-1), W, n_panels * W, VL, n_panels,
                                 acc)
                for rows in ((0,), (5,), (2, 3)):
                    few = c0[list(rows)].copy()
                    _products_kernel(tile_functions(dtype), nv, a[list(rows)].reshape(-1), K,
                                     len(rows), bp.reshape(-1), K * W, W, K, few.reshape(-1), W,
                                     n_panels * W, VL, n_panels, acc)
                    assert np.array_equal(few, eight[list(rows)]), (n_panels, K, acc, rows)
                want = a.astype(np.float64) @ bp.transpose(1, 0, 2).reshape(K, -1)
                scale = np.abs(a.astype(np.float64)) @ np.abs(bp.transpose(1, 0, 2)
                                                             .reshape(K, -1)) + 1
                got = eight.astype(np.float64) - (c0 if acc else 0)
                assert (np.abs(got - want) / scale).max() <= (K + 4) * eps


@njit
def _pack_gates_compiled(w, NB, VL):
    wp = np.empty((NB, w.shape[1], 3 * VL), w.dtype)
    cpu._pack_gate_panels(w, 0, NB, wp)
    return wp


@njit
def _pack_columns_compiled(m, width):
    nq = -(-m.shape[1] // width)
    bp = np.empty((nq, m.shape[0], width), m.dtype)
    cpu._pack_column_panels(m, 0, nq, bp)
    return bp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H,K", [(1, 3), (16, 5), (20, 7), (37, 16), (64, 64)])
def test_compiled_packers_match_numpy_layout(dtype, H, K):
    rng = np.random.default_rng(H)
    VL = vector_length(dtype)
    w = rng.standard_normal((3 * H, K)).astype(dtype)
    ref = pack_gates(w)
    assert np.array_equal(_pack_gates_compiled(w, ref.shape[0], VL), ref)
    # the layout itself, element by element
    for g in range(3):
        for j in range(H):
            assert np.array_equal(ref[j // VL, :, g * VL + j % VL], w[g * H + j])
    for width in (VL, 2 * VL, 3 * VL):
        refc = pack_columns(w, width)
        assert np.array_equal(_pack_columns_compiled(w, width), refc)
        assert np.array_equal(refc.transpose(1, 0, 2).reshape(3 * H, -1)[:, :K], w)


# -- parts and barrier --

@njit(nogil=True)
def _exchange(p, P, ctrl, out, steps):
    """Each part writes its step number, then (after the barrier) checks every other part's."""
    for s in range(steps):
        out[p, s] = s
        if not _sync.barrier(ctrl, P, s + 1):
            return False
        for q in range(P):
            if out[q, s] != s:
                out[p, s] = -1  # a write of another part was not visible after the barrier
    return True


@pytest.mark.parametrize("P", [1, 2, 3, 5])
def test_barrier_makes_every_write_visible(P):
    steps = 2000
    out = np.full((P, steps), -5, np.int64)
    _sync.run_parts(_exchange, P, (out, steps))
    assert np.array_equal(out, np.tile(np.arange(steps), (P, 1)))


def test_a_part_that_fails_releases_the_others_and_raises():
    def kernel(p, P, ctrl, out, steps):
        if p == 1:
            raise ValueError("part 1 could not start")
        return _exchange(p, P, ctrl, out, steps)

    out = np.zeros((2, 10), np.int64)
    errors = []

    def call():
        try:
            _sync.run_parts(kernel, 2, (out, 10))
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the surviving part hung at its barrier"
    assert errors and "part 1 could not start" in str(errors[0])


@njit(nogil=True)
def _late_partner(p, P, ctrl, out, steps):
    """Part 0 gets a sleep timeout of a minute; at every step part 1 arrives only once part 0
    has gone to sleep, so each barrier completes only if the arrival wakes the sleeper."""
    if p == 0:
        ctrl[3] = 60_000_000_000
    for s in range(steps):
        if p == 1:
            while _sync.atomic_load(ctrl, 2) == 0:
                _sync.cpu_relax()
        out[p, s] = s
        if not _sync.barrier(ctrl, P, s + 1):
            return False
        if out[1 - p, s] != s:
            out[p, s] = -1
    return True


@pytest.mark.skipif(_sync._FUTEX_SYSCALL is None, reason="no futex on this system: waits yield")
def test_a_sleeping_part_is_woken_by_the_arrival():
    steps = 50
    out = np.full((2, steps), -5, np.int64)
    t = threading.Thread(target=_sync.run_parts, args=(_late_partner, 2, (out, steps)))
    t.start()
    t.join(timeout=30)  # 50 timeouts would take 50 minutes: only wake-ups can finish in time
    assert not t.is_alive(), "a part asleep at the barrier was not woken by its partner"
    assert np.array_equal(out, np.tile(np.arange(steps), (2, 1)))


X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_pass_leaves_the_callers_floating_point_mode_as_it_was(monkeypatch, threads):
    """The parts flush subnormals (see _sync) only while they run: afterwards numpy on the
    calling thread still computes subnormal numbers."""
    monkeypatch.setenv("NUMGRU_NUM_THREADS", threads)
    # Part 0 must run here, on the calling thread: a pass long enough to be interruptible
    # would run every part on other threads, and this thread's mode could not change.
    monkeypatch.setattr(cpu, "_INTERRUPTIBLE_FLOPS", 1 << 62)
    ran_on = set()
    run_kernel = _sync._run_kernel

    def spy(*args):
        ran_on.add(threading.get_ident())
        return run_kernel(*args)

    monkeypatch.setattr(_sync, "_run_kernel", spy)
    before = _sync.flush_subnormals()  # reads the mode (and sets the flush): put it back
    _sync.restore_fp_mode(before)
    gru = ng.GRU(16, 256, device="cpu", seed=0)
    x = np.random.default_rng(0).standard_normal((32, 20, 16)).astype(np.float32)
    y, _ = gru.forward(x, train=True)
    gru.backward(np.ones_like(y))
    gru(x)
    after = _sync.flush_subnormals()
    _sync.restore_fp_mode(after)
    assert threading.get_ident() in ran_on
    assert after == before
    tiny = np.finfo(np.float32).smallest_normal
    assert np.float32(tiny) / np.float32(4) != 0  # a subnormal, not flushed


@pytest.mark.parametrize("dtype,tol", [(np.float32, 4e-6), (np.float64, 1e-12)])
def test_gradients_that_underflow_match_the_reference(dtype, tol):
    """A loss on the last of 400 steps: in float32 the gradients of early steps fall below the
    smallest normal number, which the parts flush to zero (fast on x86); every gradient stays
    within the CPU tests' tolerances of the float64 reference, and on x86 no subnormal is left
    in dx. (In float64 the early gradients stay near 1e-80, far above its smallest normal: that
    case checks a long sequence only.)"""
    rng = np.random.default_rng(5)
    B, T, I, H = 4, 400, 8, 32
    x = rng.standard_normal((B, T, I))
    dy = np.zeros((B, T, H))
    dy[:, -1] = rng.standard_normal((B, H))
    gru = ng.GRU(I, H, device="cpu", dtype=dtype, seed=1)
    ref = ng.GRU(I, H, device="numpy", dtype="float64", seed=1)
    y, _ = gru.forward(x, train=True)
    dx, _ = gru.backward(dy)
    ref.forward(x, train=True)
    dx_ref, _ = ref.backward(dy)
    if dtype == np.float32:  # the case is one of underflow: early steps' exact gradients
        assert (np.abs(dx_ref[:, 0]) < np.finfo(dtype).smallest_normal).all()
    assert_close("dx", dx, dx_ref, tol)
    for k in ref.grads:
        assert_close(k, gru.grads[k], ref.grads[k], tol)
    if X86:
        a = np.abs(dx)
        assert not ((a > 0) & (a < np.finfo(dtype).smallest_normal)).any()


def test_busy_pool_runs_the_whole_pass_in_one_part():
    out = np.zeros((1, 50), np.int64)
    with _sync._BUSY:  # another call owns the pool: this one runs on its own thread
        _sync.run_parts(_exchange, 4, (out, 50))
    assert np.array_equal(out[0], np.arange(50))


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_num_threads_setting_is_checked(monkeypatch, value):
    monkeypatch.setenv("NUMGRU_NUM_THREADS", value)
    with pytest.raises(ValueError, match=r"NUMGRU_NUM_THREADS: expected a positive integer, got"):
        _sync.max_threads()


def test_num_threads_setting_is_used(monkeypatch):
    monkeypatch.setenv("NUMGRU_NUM_THREADS", "3")
    assert _sync.max_threads() == 3
    monkeypatch.delenv("NUMGRU_NUM_THREADS")
    assert 1 <= _sync.max_threads() <= (os.cpu_count() or 1)


# -- the layer passes in several parts --

def _parts_used(monkeypatch):
    """The part counts that the passes of cpu.py actually run from now on (run_parts' answer:
    fewer than asked when the pool is busy)."""
    used = []
    run = cpu.run_parts

    def counted(kernel, P, args, interruptible=False):
        n = run(kernel, P, args, interruptible)
        used.append(n)
        return n

    monkeypatch.setattr(cpu, "run_parts", counted)
    return used


def _layer_pass(threads, monkeypatch, reset_after, bidirectional, dtype, lengths):
    monkeypatch.setenv("NUMGRU_NUM_THREADS", str(threads))
    rng = np.random.default_rng(5)
    gru = ng.GRU(7, 112, num_layers=2, bidirectional=bidirectional, reset_after=reset_after,
                 dtype=dtype, device="cpu", seed=1, batch_first=True)
    x = rng.standard_normal((16, 9, 7))
    y, h = gru.forward(x, lengths=lengths, train=True)
    dx, dh0 = gru.backward(rng.standard_normal(y.shape), rng.standard_normal(h.shape))
    return [y, h, dx, dh0, gru.flat_grads.copy()]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_results_do_not_depend_on_the_number_of_threads(monkeypatch, reset_after,
                                                        bidirectional):
    """B·H·H is above the parallel threshold: 1, 2 and 3 parts (3 splits the 7 forward and 4
    backward float32 panels unevenly) give the same bits, float32 and float64, with lengths."""
    used = _parts_used(monkeypatch)
    lengths = np.array([9, 3, 9, 1, 5, 9, 8, 2, 9, 9, 4, 6, 9, 7, 1, 9])
    for dtype in ("float32", "float64"):
        used.clear()
        one = _layer_pass(1, monkeypatch, reset_after, bidirectional, dtype, lengths)
        assert set(used) == {1}
        for threads in (2, 3):
            used.clear()
            many = _layer_pass(threads, monkeypatch, reset_after, bidirectional, dtype, lengths)
            assert set(used) == {threads}, (dtype, threads, used)  # every pass, in threads parts
            for a, b in zip(one, many):
                assert np.array_equal(a, b), (dtype, threads)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_parallel_passes_against_the_reference(monkeypatch, reset_after, reverse):
    """cpu.forward / cpu.backward in 3 parts against the float64 NumPy reference (float32 and
    float64), with lengths, at a size that is not a multiple of any panel."""
    monkeypatch.setenv("NUMGRU_NUM_THREADS", "3")
    rng = np.random.default_rng(11)
    T, B, I, H = 6, 19, 53, 101
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    w = [rng.standard_normal(s) * 0.3 for s in [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]]
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    dy = rng.standard_normal((T, B, H))
    dh = rng.standard_normal((B, H))
    y_r, h_r, c_r = reference.forward(x, h0, *w, lengths, reverse=reverse,
                                      reset_after=reset_after, train=True)
    want = [y_r, h_r, *reference.backward(c_r, dy, dh)]
    used = _parts_used(monkeypatch)
    for dtype, tol in [(np.float64, 1e-12), (np.float32, 4e-6)]:
        f = [a.astype(dtype) for a in (x, h0, *w)]
        y, h, c = cpu.forward(*f, lengths, reverse=reverse, reset_after=reset_after, train=True)
        got = [y, h, *cpu.backward(c, dy.astype(dtype), dh.astype(dtype))]
        for name, g_, w_ in zip(["y", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"],
                                got, want):
            assert_close(f"{name} {np.dtype(dtype).name}", g_, w_, tol)
    assert set(used) == {3}, used


_FORK_SCRIPT = """
import multiprocessing as mp, numpy as np, numgru as ng
rng = np.random.default_rng(0)
gru = ng.GRU(8, 112, device="cpu", seed=0)
x = rng.standard_normal((16, 6, 8)).astype(np.float32)
y_parent, _ = gru(x)
from numgru.cpu import sync as _sync
assert _sync._POOL is not None, "the pass ran in one part: no pool in the parent"

def child(q):
    y, _ = gru(x)  # parts again, in the forked child (which starts with no pool)
    q.put(bool(np.array_equal(y, y_parent)) and _sync._POOL is not None)

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(60)
print("alive" if p.is_alive() else ("same" if q.get(timeout=5) else "different"))
if p.is_alive():
    p.kill()
"""


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork on this platform")
def test_a_forked_child_runs_parts_without_the_parents_threads(tmp_path):
    """A child forked after the pool started must not hand work to threads it does not have."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                         timeout=240, env={**os.environ, "NUMGRU_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "same", out.stdout + out.stderr
