"""The CPU engine on every code path it can take, its plan, its start-up machinery.

- The code path (numgru/cpu/target.py) against the CPU's own feature flags (/proc/cpuinfo), and
  Numba's target forced to AVX2 (NUMBA_CPU_NAME=haswell) and to the x86-64 baseline
  (NUMBA_CPU_NAME=x86-64): the kernel tests (this file's products, tests/test_cpu.py,
  tests/test_tile_threads.py) run again in child processes compiled for those targets, with
  NUMBA_CPU_FEATURES="" so that LLVM itself uses no instruction the named CPU lacks.
- The row dots of a single step (numgru/_tile.row_dots) against numpy in float64, and GRUCell
  steps (both of cpu.step's paths) against the NumPy reference.
- The plan (numgru/cpu/plan.py): its trials and choices with given timings, its file, and that a
  pass under trial gives the same bits as the fixed rule.
- A read-only install: numgru imports, computes and says where (or that no) kernels are cached.
- The CUDA probe: no driver library means no numba.cuda import, and a driver that reports no
  device is named as such.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit

import numgru as ng
from numgru import backend, reference
from numgru.cpu import plan as _plan
from numgru.cpu import kernels as cpu
from numgru.cpu.target import PATH
from numgru.cpu.tile import row_dots
from helpers import assert_close

ROOT = Path(__file__).resolve().parent.parent
X86 = platform.machine().lower() in ("x86_64", "amd64")


# -- the code path --

def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not (X86 and os.path.exists("/proc/cpuinfo")) or "NUMBA_CPU_NAME" in os.environ,
                    reason="the host path is checked against x86 Linux's /proc/cpuinfo flags")
def test_host_path_follows_the_cpu_flags():
    flags = _cpu_flags()
    want = ("avx512" if {"avx512f", "fma"} <= flags else
            "avx2" if {"avx2", "fma"} <= flags else "portable")
    assert PATH.name == want, (PATH, sorted(flags & {"avx512f", "avx2", "fma"}))
    assert PATH.vector_bytes == {"avx512": 64, "avx2": 32, "portable": 16}[want]


def test_expected_path_in_this_process():
    """In the children below, NUMGRU_EXPECT_PATH names the path their target must give."""
    want = os.environ.get("NUMGRU_EXPECT_PATH")
    if want is None:
        assert PATH.name in ("avx512", "avx2", "portable") and PATH.reason
    else:
        assert PATH.name == want, PATH


def _path_in_child(env):
    code = "from numgru.cpu.target import PATH; print(PATH.name); print(PATH.reason)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return out.splitlines()


@pytest.mark.skipif(not X86, reason="haswell and x86-64 are x86 targets")
def test_named_targets_select_their_path():
    assert _path_in_child({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": ""})[0] == "avx2"
    assert _path_in_child({"NUMBA_CPU_NAME": "x86-64", "NUMBA_CPU_FEATURES": ""})[0] == "portable"
    # A named CPU with the host's features (Numba's default) follows the narrower of the two.
    name, reason = _path_in_child({"NUMBA_CPU_NAME": "haswell"})
    assert name == "avx2", reason


_FORCED = [("avx2", {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": ""}),
           ("portable", {"NUMBA_CPU_NAME": "x86-64", "NUMBA_CPU_FEATURES": ""})]


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="haswell and x86-64 are x86 targets")
@pytest.mark.parametrize("path,env", _FORCED, ids=[p for p, _ in _FORCED])
def test_kernels_on_a_forced_path(path, env):
    """The kernel tests again, compiled for another target: same tolerances, same bits across
    thread counts (their own assertions), every case run (no skip, no deselection)."""
    files = ["tests/test_cpu.py", "tests/test_tile_threads.py",
             "tests/test_cpu_paths.py"]
    child_env = {**os.environ, **env, "NUMGRU_EXPECT_PATH": path, "NUMGRU_FORCED_CHILD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-rfEs",
         "-k", "not forced_path and not named_targets and not host_path and not read_only",
         *files], cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=900)
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"kernel tests on the {path} path failed:\n{report}"
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "skipped" not in last and "failed" not in last, report


# -- single steps --

@njit
def _row_dots_kernel(w, x, out):
    row_dots(w, 0, w.shape[1], w.shape[0], x, 0, x.shape[1], x.shape[0], w.shape[1], out, 0,
             out.shape[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("J,K,B", [(384, 128, 1), (7, 5, 3), (13, 33, 2), (96, 64, 4), (1, 1, 1),
                                   (30, 17, 9)])
def test_row_dots_against_numpy(dtype, J, K, B):
    """out = x W^T for every row-block mix (4 rows of W and 1, then 2 rows of x) and k tails;
    error within (K + 4) eps of the sum of |terms| (vector partial sums, then pairwise)."""
    rng = np.random.default_rng(J + K + B)
    w = rng.standard_normal((J, K)).astype(dtype)
    x = rng.standard_normal((B, K)).astype(dtype)
    out = np.full((B, J), np.nan, dtype)
    _row_dots_kernel(w, x, out)
    want = x.astype(np.float64) @ w.astype(np.float64).T
    scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T + 1
    assert (np.abs(out - want) / scale).max() <= (K + 4) * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("J,K", [(384, 128), (15, 40), (13, 5), (8, 17), (1, 33)])
def test_row_dots_of_one_row_are_the_bits_of_a_pair(dtype, J, K):
    """Against a single row of x, blocks of 8 rows of W; against two, blocks of 4 rows of W and
    2 of x. Either way each row's lanes are added in the per-row pairwise order (several rows
    per shuffle), so a row of x gets the same bits alone as beside another."""
    rng = np.random.default_rng(J * K)
    w = rng.standard_normal((J, K)).astype(dtype)
    x = rng.standard_normal((2, K)).astype(dtype)
    pair = np.full((2, J), np.nan, dtype)
    _row_dots_kernel(w, x, pair)
    for b in range(2):
        one = np.full((1, J), np.nan, dtype)
        _row_dots_kernel(w, x[b:b + 1].copy(), one)
        assert np.array_equal(one[0], pair[b]), b


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("B", [1, 3, 9, 20])  # up to 8 rows: row dots; more: the packed tile
def test_step_against_reference(dtype, tol, reset_after, B):
    rng = np.random.default_rng(B)
    I, H = 19, 37
    x = rng.standard_normal((B, I))
    h = rng.standard_normal((B, H)) * 0.5
    w = [rng.standard_normal(s) * 0.4 for s in [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]]
    want = reference.step(x, h, *w, reset_after=reset_after)
    got = cpu.step(x.astype(dtype), h.astype(dtype), *(a.astype(dtype) for a in w),
                   reset_after=reset_after)
    assert got.dtype == dtype
    assert_close("h1", got, want, tol)
    bad = x.astype(dtype)
    bad[B - 1, 3] = np.nan
    assert cpu.step(bad, h.astype(dtype), *(a.astype(dtype) for a in w),
                    reset_after=reset_after) is None


# -- the plan --

def _trial(plan, kind, B, H, per_step):
    """Runs a plan's trial to its end: per_step[parts] is the time each call reports. Returns the
    parts of the calls, and which were timed."""
    calls = []
    while f"{kind}/float32/{B}x{H}/2" not in plan.chosen():
        parts, key = plan.parts(kind, "float32", B, H, 2)
        calls.append((parts, key is not None))
        if key is not None:
            plan.record(key, parts, per_step[parts])
        if len(calls) > 100:
            raise AssertionError("the trial does not end")
    return calls


def test_plan_tries_both_counts_in_turns_and_keeps_the_faster(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMGRU_PLAN", "on")
    path = tmp_path / "plan.json"
    p = _plan.Plan(str(path))
    B, H = 8, 256  # 6·B·H² = 3.1e6: near the crossover; the rule says 2 parts
    assert p.parts("infer", "float32", B, H, 1) == (1, None)  # one thread: nothing to try
    assert p.parts("infer", "float32", B, H, 2) == (2, None)  # the first call is not timed
    calls = _trial(p, "infer", B, H, {1: 5e-6, 2: 6e-6})  # one part 20% faster: it wins
    run, rounds = _plan._RUN, _plan._ROUNDS
    # Turns of _RUN calls of each count, alternating, the first of each turn not timed.
    turn = [(c, j > 0) for c in (1, 2) for j in range(run)]
    assert calls == turn * rounds
    assert p.parts("infer", "float32", B, H, 2) == (1, None)
    assert json.loads(path.read_text()) == {"infer/float32/8x256/2": 1}
    # A new process reads the choice; a difference within 10% keeps the rule's choice.
    q = _plan.Plan(str(path))
    assert q.parts("infer", "float32", B, H, 2) == (1, None)
    q.parts("backward", "float32", B, H, 2)
    _trial(q, "backward", B, H, {1: 9.5e-6, 2: 10e-6})
    assert q.parts("backward", "float32", B, H, 2) == (2, None)
    # Below the rule's threshold (one part by the rule), two parts must win by more than 10%.
    q.parts("train", "float32", 1, 256, 2)
    _trial(q, "train", 1, 256, {1: 10e-6, 2: 9.5e-6})
    assert q.parts("train", "float32", 1, 256, 2) == (1, None)
    q.parts("infer", "float32", 1, 256, 2)
    _trial(q, "infer", 1, 256, {1: 10e-6, 2: 6e-6})
    assert q.parts("infer", "float32", 1, 256, 2) == (2, None)


def test_plan_rule_far_from_the_crossover_and_when_off(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMGRU_PLAN", "on")
    p = _plan.Plan(str(tmp_path / "plan.json"))
    assert p.parts("infer", "float32", 5, 20, 2) == (1, None)  # seed: far below
    assert p.parts("infer", "float32", 64, 512, 2) == (2, None)  # large: far above
    monkeypatch.setenv("NUMGRU_PLAN", "off")
    assert p.parts("infer", "float32", 8, 256, 2) == (2, None)  # the rule: 3.1e6 >= 2^20
    assert p.parts("infer", "float32", 1, 256, 2) == (1, None)


def test_a_damaged_plan_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMGRU_PLAN", "on")
    path = tmp_path / "plan.json"
    path.write_text('{"infer/float32/8x256/2": "lots", ')
    p = _plan.Plan(str(path))
    assert p.chosen() == {}
    assert p.parts("infer", "float32", 8, 256, 2) == (2, None)  # a trial starts afresh


def test_passes_under_trial_give_the_same_bits(monkeypatch, tmp_path):
    """Calls that try one part and two (the plan's trials) against the fixed rule's results."""
    rng = np.random.default_rng(3)
    gru = ng.GRU(9, 96, device="cpu", seed=2)
    x = rng.standard_normal((8, 7, 9)).astype(np.float32)
    dy = rng.standard_normal((8, 7, 96)).astype(np.float32)

    def run():
        gru.zero_grad()
        y, h = gru.forward(x, train=True)
        dx, dh0 = gru.backward(dy)
        return [y, h, dx, dh0, gru.flat_grads.copy(), gru(x)[0]]

    monkeypatch.setenv("NUMGRU_NUM_THREADS", "2")
    monkeypatch.setenv("NUMGRU_PLAN", "off")
    want = run()
    monkeypatch.setenv("NUMGRU_PLAN", "on")
    trial_plan = _plan.Plan(str(tmp_path / "plan.json"))
    monkeypatch.setattr(cpu, "plan", lambda: trial_plan)
    for _ in range(2 * _plan._RUN * _plan._ROUNDS + 1):  # every call of each kind's trial
        for a, b in zip(run(), want):
            assert np.array_equal(a, b)
    assert len(trial_plan.chosen()) == 3  # infer, train, backward were decided


# -- a read-only install --

_READ_ONLY_SCRIPT = """
import tempfile
tempfile.tempdir = {tmp!r}  # the system's temporary folder, as gettempdir would find it
import numpy as np, numgru as ng
from numgru import _jit
assert ng.__file__.startswith({pkg!r}), ng.__file__
g = ng.GRU(4, 8, device="cpu", seed=0)
y, _ = g.forward(np.ones((2, 3, 4), np.float32), train=True)
g.backward(np.ones_like(y))
print(_jit.CACHE, _jit.CACHE_DIR)
print(_jit.CACHE_REASON)
"""


def _chattr(flag, *paths):
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("chattr") is None or
                    os.geteuid() != 0, reason="read-only folders are made with chattr +i (root)")
def test_a_read_only_install_imports_and_runs(tmp_path):
    """numgru's folder and Numba's per-user cache not writable (immutable folders, HOME unset):
    the kernels go to a folder in the temporary folder; with that not writable either, they run
    uncached."""
    pkg = tmp_path / "site"
    shutil.copytree(ROOT / "numgru", pkg / "numgru",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    user_cache = tmp_path / "xdg"
    user_cache.mkdir()
    tmp_ok = tmp_path / "tmp"
    tmp_ok.mkdir()
    tmp_ro = tmp_path / "tmp_ro"
    tmp_ro.mkdir()
    frozen = [pkg / "numgru", pkg / "numgru" / "datasets", user_cache, tmp_ro]
    if not _chattr("+i", *frozen):
        pytest.skip("chattr +i is not supported on this file system")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HOME", "NUMBA_CACHE_DIR")}
        env.update(PYTHONPATH=str(pkg), XDG_CACHE_HOME=str(user_cache))
        for tmpdir, cached in ((tmp_ok, True), (tmp_ro, False)):
            script = _READ_ONLY_SCRIPT.format(pkg=str(pkg), tmp=str(tmpdir))
            proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            first, reason = proc.stdout.strip().splitlines()[-2:]
            if cached:
                assert first.startswith("True ") and str(tmp_ok) in first, proc.stdout
                assert "temporary folder" in reason
                assert any((tmp_ok / d).is_dir() for d in os.listdir(tmp_ok))
            else:
                assert first == "False None", proc.stdout
                assert "NUMBA_CACHE_DIR" in reason
        assert not (pkg / "numgru" / "__pycache__").exists()
    finally:
        _chattr("-i", *frozen)


# -- the CUDA probe --

def test_no_driver_library_means_no_numba_cuda_import():
    code = ("import sys, numgru as ng\n"
            "from numgru import backend\n"
            "backend._DRIVER_NAMES['linux'] = ('libnumgru-no-such-driver.so',)\n"
            "usable, reason = ng.cuda_status()\n"
            "assert not usable and 'was not found' in reason, reason\n"
            "assert ng.GRU(2, 3).device == 'cpu'\n"
            "loaded = [m for m in sys.modules if m.startswith(('numba.cuda', 'numba_cuda'))]\n"
            "assert not loaded, loaded\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMGRU_DEVICE", "NUMBA_CUDA_DRIVER",
                                                            "NUMBA_ENABLE_CUDASIM")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


class _FakeDriver:
    """The three driver calls the probe makes, answering as a machine without a GPU would."""

    def __init__(self, init_rc, count):
        self.init_rc, self.count = init_rc, count

    def cuInit(self, flags):
        return self.init_rc

    def cuGetErrorName(self, rc, out):
        out._obj.value = b"CUDA_ERROR_NO_DEVICE"
        return 0

    def cuDeviceGetCount(self, out):
        out._obj.value = self.count
        return 0


def test_a_driver_without_a_device_is_named(monkeypatch):
    monkeypatch.delenv("NUMBA_CUDA_DRIVER", raising=False)
    monkeypatch.setattr(backend.ctypes, "CDLL", lambda name: _FakeDriver(100, 0))
    assert "failed to initialise (CUDA_ERROR_NO_DEVICE)" in backend._driver_probe()
    monkeypatch.setattr(backend.ctypes, "CDLL", lambda name: _FakeDriver(0, 0))
    assert backend._driver_probe().endswith("the CUDA driver reports no device")
    monkeypatch.setattr(backend.ctypes, "CDLL", lambda name: _FakeDriver(0, 1))
    assert backend._driver_probe() is None  # a device: numba-cuda's own probe decides
