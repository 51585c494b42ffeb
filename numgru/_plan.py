"""How many parts (threads) a CPU layer pass of a given size runs in, measured on this machine
and kept beside the kernel cache, like an FFTW plan or cuDNN's find.

Whether a pass pays for its per-step barriers depends on more than its size: the cores' speed,
their caches (a batch-1 step that reads 3·H·H weights from L2 pays at H = 256 on one machine and
not on another) and the cost of a barrier. Sizes far from the crossover are decided by the rule
`6·B·H² >= 2^20` (one barrier per step against the step's work); for those near it
(2^16 <= 6·B·H² < 2^24) the first calls of a pass kind (forward, training forward, backward), dtype,
batch and hidden size run alternately in one part and in all the parts allowed, timed per step
(the first call, which may compile, is not counted), and the faster choice is kept: in memory,
and in a small JSON file beside the kernel cache for the next process. A tie within 10% goes to
one part (it leaves a core free on a shared machine). Every choice gives the same bits (the
passes' arithmetic does not depend on the partition), so trials change only the time.

NUMGRU_PLAN=off uses the rule alone (no trials, no file): reproducible timings for tests and
benchmarks that need a fixed partition.
"""

import json
import os
import tempfile
import threading

_RULE_FLOPS = 1 << 20
_SURE_SERIAL = 1 << 16
_SURE_PARALLEL = 1 << 24
_TRIALS = 2  # timed calls of each candidate
_TIE = 1.10
_MAX_ENTRIES = 512


def _enabled():
    return os.environ.get("NUMGRU_PLAN", "").strip().lower() not in ("off", "0", "no", "false")


class Plan:
    """Part counts by (kind, dtype, B, H) for one code path and thread count."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._chosen = None  # key -> parts, loaded on first use
        self._trials = {}  # key -> {"seen": calls, 1: [s/step], P: [s/step]}

    def _load(self):
        if self._chosen is not None:
            return
        self._chosen = {}
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    data = json.load(f)
                if isinstance(data, dict):
                    self._chosen = {k: int(v) for k, v in data.items()
                                    if isinstance(k, str) and isinstance(v, int) and v >= 1}
            except (OSError, ValueError, RecursionError):
                # A damaged plan is rebuilt, never trusted (RecursionError: JSON nested
                # thousands deep).
                self._chosen = {}

    def _save(self):
        if not self.path:
            return
        try:
            folder = os.path.dirname(self.path)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".plan-", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(dict(sorted(self._chosen.items())[-_MAX_ENTRIES:]), f)
            os.replace(tmp, self.path)
        except OSError:  # an unwritable plan only costs the trials again
            pass

    def parts(self, kind, dtype, B, H, most):
        """(parts for this call, trial key or None): `most` is the largest sensible count."""
        work = 6 * B * H * H
        rule = most if work >= _RULE_FLOPS else 1
        if most <= 1 or not _enabled() or work < _SURE_SERIAL or work >= _SURE_PARALLEL:
            return rule, None
        key = f"{kind}/{dtype}/{B}x{H}/{most}"
        with self._lock:
            self._load()
            if key in self._chosen:
                return min(self._chosen[key], most), None
            trial = self._trials.setdefault(key, {"seen": 0, 1: [], most: []})
            trial["seen"] += 1
            if trial["seen"] == 1:
                return rule, None  # may compile: not timed
            done = sum(len(trial[c]) for c in (1, most))
            return (1 if done % 2 == 0 else most), key

    def record(self, key, parts, seconds_per_step):
        """One timed call of a trial; decides once every candidate ran _TRIALS times."""
        with self._lock:
            trial = self._trials.get(key)
            if trial is None or parts not in trial:
                return
            trial[parts].append(seconds_per_step)
            most = max(c for c in trial if c != "seen")
            if len(trial[1]) >= _TRIALS and len(trial[most]) >= _TRIALS:
                one, many = min(trial[1]), min(trial[most])
                self._chosen[key] = most if many * _TIE < one else 1
                del self._trials[key]
                self._save()

    def chosen(self):
        with self._lock:
            self._load()
            return dict(self._chosen)


_PLANS = {}  # threads -> Plan
_PLAN_LOCK = threading.Lock()


def plan():
    """The process's plan, for this machine's code path and thread count."""
    from ._sync import max_threads
    threads = max_threads()
    found = _PLANS.get(threads)
    if found is None:
        from ._jit import CACHE_DIR
        from ._target import PATH
        name = f"numgru-plan-{PATH.name}-{PATH.cpu}-{threads}t.json"
        with _PLAN_LOCK:
            found = _PLANS.setdefault(
                threads, Plan(os.path.join(CACHE_DIR, name) if CACHE_DIR else None))
    return found
