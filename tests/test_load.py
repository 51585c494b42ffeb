"""Load: many callers at once, in threads and in processes, for a bounded time.

Eight Python threads mix inference on one shared layer (large enough that a pass alone runs on
numgru's pool of threads), training of models of their own (one large enough to want the pool
too) and GRUCell streaming, for NUMGRU_FUZZ_SECONDS (default 4 s). Every result must be
bitwise the result of the same call made alone beforehand (a pass's arithmetic does not depend
on how many parts ran it, and a caller that finds the pool busy runs its pass in one part), and
every thread must finish: a deadlock fails on the join's timeout. Then the same jobs in a
multiprocessing pool, forked (after this process's pool threads have run) and spawned.
"""

import multiprocessing
import threading
import time

import numpy as np

import load_work as work

from fuzzing import load_seconds


def _alone():
    """Each job's result, made alone (the truth the loaded runs are held to)."""
    layer = work.shared_layer()
    return {
        "infer": {s: work.infer_job(s, layer) for s in range(3)},
        "train": {s: work.train_job(s) for s in range(10, 12)},
        "train-pool": {20: work.train_job(20, steps=1, hidden=192)},
        "cell": {s: work.cell_job(s) for s in range(30, 32)},
    }


def _same(got, want):
    if isinstance(want, tuple):
        return all(np.array_equal(g, w) for g, w in zip(got, want))
    return np.array_equal(got, want)


def test_eight_threads_of_mixed_work_give_what_each_gives_alone():
    truth = _alone()
    layer = work.shared_layer()
    seconds = load_seconds(4)
    deadline = time.perf_counter() + seconds
    calls = {"infer": 0, "train": 0, "train-pool": 0, "cell": 0}
    mismatches, errors = [], []
    lock = threading.Lock()

    def worker(kind, seeds):
        try:
            k = 0
            while time.perf_counter() < deadline:
                seed = seeds[k % len(seeds)]
                if kind == "infer":
                    got = work.infer_job(seed, layer)
                elif kind == "train":
                    got = work.train_job(seed)
                elif kind == "train-pool":
                    got = work.train_job(seed, steps=1, hidden=192)
                else:
                    got = work.cell_job(seed)
                with lock:
                    calls[kind] += 1
                    if not _same(got, truth[kind][seed]):
                        mismatches.append((kind, seed))
                k += 1
        except BaseException as exc:  # reported below: a thread's failure fails the test
            with lock:
                errors.append(repr(exc))

    plan = [("infer", [0, 1, 2]), ("infer", [1, 2, 0]), ("infer", [2, 0, 1]),
            ("train", [10, 11]), ("train", [11, 10]), ("train-pool", [20]),
            ("cell", [30, 31]), ("cell", [31, 30])]
    threads = [threading.Thread(target=worker, args=job, name=f"load-{i}")
               for i, job in enumerate(plan)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running (a deadlock?): {hung}"
    assert not errors, errors
    assert not mismatches, f"results that differ from the same call alone: {mismatches[:5]}"
    assert all(n > 0 for n in calls.values()), calls
    print(f"\nload: 8 threads × {seconds:.1f} s, calls {calls}")


def _pool_jobs():
    return [("infer", 0), ("infer", 1), ("train", 10), ("train-pool", 20), ("cell", 30),
            ("infer", 2), ("train", 11), ("cell", 31)]


def _check_pool(method, truth):
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.map_async(work.run, _pool_jobs()).get(timeout=300)
    for (kind, seed), got in zip(_pool_jobs(), results):
        assert _same(got, truth[kind][seed]), f"{method}: {kind} {seed} differs from alone"


def test_forked_and_spawned_processes_give_what_each_gives_alone():
    truth = _alone()  # this process's pool threads have run: a fork must not inherit them
    _check_pool("fork", truth)
    _check_pool("spawn", truth)
