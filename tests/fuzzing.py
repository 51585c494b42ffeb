"""The budget of the fuzz, load and fault tests: small and fixed by default, longer on request.

`make test` runs every property test on a fixed, derandomised set of examples (the same cases on
every machine and every run, so a failure reproduces), few enough that all of them together take
about a minute once the kernels are compiled. NUMGRU_FUZZ_EXAMPLES=N asks for N examples per
property test instead, drawn afresh each run (a long opt-in search); NUMGRU_FUZZ_SECONDS=S sets the
time the load tests run (default a few seconds each). Examples found by a long run are kept as
regular tests (`@example(...)` or a plain test), never left to the search to find again.
"""

import os

from hypothesis import HealthCheck, settings

LONG_EXAMPLES = int(os.environ.get("NUMGRU_FUZZ_EXAMPLES", "0") or 0)


def fuzz_settings(default_examples):
    """hypothesis settings: `default_examples` fixed cases, or NUMGRU_FUZZ_EXAMPLES random ones."""
    long_run = LONG_EXAMPLES > 0
    return settings(max_examples=LONG_EXAMPLES if long_run else default_examples,
                    deadline=None, derandomize=not long_run, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def load_seconds(default):
    """How long a load test keeps its threads or processes busy (NUMGRU_FUZZ_SECONDS)."""
    value = os.environ.get("NUMGRU_FUZZ_SECONDS", "").strip()
    return float(value) if value else float(default)
