"""How many parts (threads) a CPU layer pass of a given size runs in, measured on this machine
and kept beside the kernel cache, like an FFTW plan or cuDNN's find.

Whether a pass pays for its per-step barriers depends on more than its size: the cores' speed,
their caches (a batch-1 step that reads 3·H·H weights from L2 pays at H = 256 on one machine and
not on another) and the cost of a barrier. Sizes far from the crossover are decided by the rule
`6·B·H² >= 2^20` (one barrier per step against the step's work); for those near it
(2^16 <= 6·B·H² < 2^24) the first calls of a pass kind (forward, training forward, backward), dtype,
batch and hidden size are a trial: after the first call (which may compile), turns of _RUN calls
in one part and _RUN calls in all the parts allowed, _ROUNDS turns each, timed per step. The
first call of a turn is not timed: it moves the weights into the caches of the cores that now
read them and wakes the threads, which a pass that repeats never pays (alternating single calls
measured exactly that cost, and chose one part for sizes whose weights fit the cores' caches
only when split, at a fifth of the speed). The rule's choice stands unless the other count is
faster by more than _TIE in the best timed call of each; the outcome is kept in memory and in a
small JSON file beside the kernel cache for the next process. Every choice gives the same bits
(the passes' arithmetic does not depend on the partition), so trials change only the time.

NUMGRU_PLAN=off uses the rule alone (no trials, no file): reproducible timings for tests and
benchmarks that need a fixed partition.
"""

import json
import os
import tempfile
import threading

_RULE_FLOPS = 1 << 20
SURE_SERIAL = 1 << 16
_SURE_PARALLEL = 1 << 24
_RUN = 3  # calls of one candidate in a row (the first not timed)
_ROUNDS = 3  # turns of each candidate
_TIE = 1.10  # the rule's choice stands unless the other is faster by more than this
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
        if most <= 1 or not _enabled() or work < SURE_SERIAL or work >= _SURE_PARALLEL:
            return rule, None
        key = f"{kind}/{dtype}/{B}x{H}/{most}"
        with self._lock:
            self._load()
            if key in self._chosen:
                return min(self._chosen[key], most), None
            trial = self._trials.setdefault(key, {"seen": 0, "rule": rule, "most": most,
                                                  "times": {1: [], most: []}})
            trial["seen"] += 1
            i = trial["seen"] - 2  # the first call may compile: not part of a turn
            if i < 0:
                return rule, None
            candidate = (1, most)[(i // _RUN) % 2]
            if i % _RUN == 0:  # a turn's first call: caches and threads, not timed
                return candidate, None
            return candidate, key

    def record(self, key, parts, seconds_per_step):
        """One timed call of a trial; decides once every candidate has its timed calls."""
        with self._lock:
            trial = self._trials.get(key)
            if trial is None or parts not in trial["times"]:
                return
            times = trial["times"]
            times[parts].append(seconds_per_step)
            need = _ROUNDS * (_RUN - 1)
            if all(len(t) >= need for t in times.values()):
                rule, most = trial["rule"], trial["most"]
                other = 1 if rule == most else most
                best = {c: min(t) for c, t in times.items()}
                self._chosen[key] = other if best[other] * _TIE < best[rule] else rule
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
    from .sync import max_threads
    threads = max_threads()
    found = _PLANS.get(threads)
    if found is None:
        from .._jit import CACHE_DIR
        from .target import PATH
        # v2: decided by turns of calls (plans of the alternating single calls are not reused)
        name = f"numgru-plan-v2-{PATH.name}-{PATH.cpu}-{threads}t.json"
        with _PLAN_LOCK:
            found = _PLANS.setdefault(
                threads, Plan(os.path.join(CACHE_DIR, name) if CACHE_DIR else None))
    return found
