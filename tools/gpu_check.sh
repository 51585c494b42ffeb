#!/usr/bin/env bash
# The one-shot GPU check, for a machine with an NVIDIA GPU and no package registry: installs the
# wheels brought along in .whl/ (`make gpu-wheels` fetches them, here), then runs the `gpu`-marked
# tests and benchmarks/bench_cuda.py, and writes everything to one folder, in under 8 minutes.
# It changes nothing outside that folder and a private package folder in /tmp.
#
#   tools/gpu_check.sh [OUT]             # on the GPU machine; OUT defaults to gpu-check/
#   tools/gpu_check.sh --dry-run [OUT]   # anywhere: the same steps under Numba's CUDA simulator
#                                        # (NUMBA_ENABLE_CUDASIM=1), tiny sizes, the benchmark's
#                                        # own --dry-run: checks this script, not a GPU
#
# OUT holds: summary.txt (each step, its exit status and seconds), environment.txt (nvidia-smi,
# Python and package versions, numgru's CUDA status, the NVVM numba-cuda found), pip.log,
# gpu-tests.xml (JUnit) and gpu-tests.log, bench.json and bench.txt. The script's own exit status
# is 0 when the tests and the benchmark passed.
set -u
cd "$(dirname "$0")/.."

DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then
    DRY_RUN=1
    shift
fi
OUT=${1:-gpu-check}
PY=${PYTHON:-python3}
SITE=/tmp/numgru-gpu-check-site  # the carried wheels go here, ahead of the image's packages
mkdir -p "$OUT"
: > "$OUT/summary.txt"
status=0

# Budgets in seconds, 450 in all: the tests compile each kernel family once per dtype and per
# forced path; the benchmark's sizes are a subset of its list that fits.
TEST_BUDGET=270
BENCH_BUDGET=150
BENCH_SIZES="seed stream medium large db-h1024-b4"

step() {  # step NAME BUDGET LOG COMMAND...: run it under a time limit, output into LOG
    local name=$1 budget=$2 log=$3
    shift 3
    local t0=$SECONDS
    timeout "$budget" "$@" > "$log" 2>&1
    local rc=$?
    local note=""
    [ $rc -eq 124 ] && note=" (stopped at its ${budget} s budget)"
    echo "$name: exit $rc in $((SECONDS - t0)) s$note" | tee -a "$OUT/summary.txt"
    return $rc
}

if [ $DRY_RUN -eq 1 ]; then
    export NUMBA_ENABLE_CUDASIM=1 NUMGRU_GPU_CHECK_DRY_RUN=1
    echo "dry run: NUMBA_ENABLE_CUDASIM=1, tiny sizes; no GPU is used" | tee -a "$OUT/summary.txt"
fi
unset NUMGRU_DEVICE

# 1. The wheels brought along. --target keeps them apart from the image's own packages, and
#    PYTHONPATH puts them first. In a dry run they are listed, not installed (they are built for
#    the GPU machine's Python, which need not be this one).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl > /dev/null 2>&1; then
    if [ $DRY_RUN -eq 1 ]; then
        ls .whl/*.whl > "$OUT/pip.log"
        echo "wheels: $(ls .whl/*.whl | wc -l) in .whl/, not installed in a dry run" \
            | tee -a "$OUT/summary.txt"
    else
        step "wheels" 120 "$OUT/pip.log" "$PY" -m pip install --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || status=1
        export PYTHONPATH="$SITE:$PYTHONPATH"
    fi
else
    echo "wheels: none in .whl/ (make gpu-wheels fetches them); using the installed packages" \
        | tee -a "$OUT/summary.txt"
fi

# 2. The environment, as the tests will see it.
{
    echo "== date"; date -u
    echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    echo "== python and packages"
    "$PY" - <<'EOF' 2>&1
import importlib.metadata as md, platform, sys
print(sys.version.split()[0], platform.machine())
for name in ("numgru", "numpy", "numba", "numba-cuda", "cuda-bindings", "cuda-core",
             "cuda-pathfinder", "nvidia-nvvm", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime",
             "nvidia-nvjitlink", "torch", "pytest"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} not installed")
import numgru
print("numgru from", numgru.__file__)
print("cuda_status", numgru.cuda_status())
try:
    from numba.cuda.cudadrv import nvvm
    print("NVVM", nvvm.NVVM().get_version() if nvvm.is_available() else "not found")
except Exception as exc:
    print("NVVM: could not ask:", type(exc).__name__, exc)
EOF
} > "$OUT/environment.txt" 2>&1
echo "environment: $OUT/environment.txt" | tee -a "$OUT/summary.txt"

# 3. The gpu-marked tests (tests/cuda/test_cuda_gpu.py), JUnit XML for the record.
step "gpu tests" $TEST_BUDGET "$OUT/gpu-tests.log" "$PY" -m pytest -q -m gpu -rs \
    -p no:cacheprovider tests/cuda --junitxml="$OUT/gpu-tests.xml" || status=1
tail -n 3 "$OUT/gpu-tests.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"

# 4. The benchmark against torch.nn.GRU on cuDNN (it checks results before it times).
if [ $DRY_RUN -eq 1 ]; then
    bench_args=(--dry-run)
else
    bench_args=(--sizes $BENCH_SIZES --repeat 10 --min-time 0.1)
fi
step "benchmark" $BENCH_BUDGET "$OUT/bench.txt" "$PY" benchmarks/bench_cuda.py "${bench_args[@]}" \
    --json "$OUT/bench.json" || status=1
tail -n 12 "$OUT/bench.txt" | sed 's/^/    /' | tee -a "$OUT/summary.txt"

echo "gpu check: $([ $status -eq 0 ] && echo passed || echo FAILED); results in $OUT/" \
    | tee -a "$OUT/summary.txt"
exit $status
