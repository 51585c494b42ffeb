# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv when there is
# none and install numgru into it (editable): `make demo` with what the main job needs (numgru's
# own dependencies and matplotlib for its plot), `make test` adds the test oracles (torch, onnx,
# onnxruntime, scikit-learn, aeon, ...). Each target keeps its own stamp, so running one after the
# other only adds what is missing and neither undoes the other.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.demo-installed
TEST_STAMP := $(VENV)/.test-installed
# aeon's newest release declares numba<0.64; installed without its pins (its other dependencies
# come from the test extra), it runs on the numba numgru uses: see pyproject.toml's aeon extra.
AEON := aeon==1.6.0

.PHONY: demo test lint bench golden gpu-wheels gpu-check gpu-check-dry-run clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[plot]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps '$(AEON)'
	touch $@

# The main job: a GRU classifier on Japanese Vowels (official 270/370 split, variable lengths),
# test accuracy printed beside published results, run folder in runs/japanese_vowels.
DEMO_ARGS := --hidden 64 --bidirectional --epochs 40 --batch-size 8 --lr 0.005 --clip-norm 1.0 \
	--schedule cosine --seed 0 --out runs/japanese_vowels

demo: $(DEMO_STAMP)
	$(PY) -m numgru train japanese_vowels $(DEMO_ARGS)

test: $(TEST_STAMP)
	NUMGRU_REQUIRE_ORACLES=1 $(PY) -m pytest -q

# ruff's rules and the project's choices are in pyproject.toml ([tool.ruff]).
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

bench: $(TEST_STAMP)
	$(PY) benchmarks/bench_cpu.py

golden: $(TEST_STAMP)
	$(PY) tests/golden/make_golden.py

# The one-shot GPU check (tools/gpu_check.sh, the README's CUDA section). gpu-wheels fetches, here,
# what the GPU machine lacks and cannot fetch itself, into .whl/ (ignored by git): numba-cuda at
# numgru's pinned release, built for that machine's Python 3.12 on x86-64. Its image brings the
# CUDA toolkit (NVVM matching its driver) and numba; NVVM as a wheel (60 MB) would not fit the
# 64 MiB that travels with a call.
GPU_PYTHON := 3.12
GPU_WHEELS := numba-cuda==0.30.4
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64,--platform $(p))

gpu-wheels: | $(PY)
	$(PY) -m pip download --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) \
		--implementation cp $(GPU_PLATFORMS) -d .whl $(GPU_WHEELS)

gpu-check:
	tools/gpu_check.sh gpu-check

gpu-check-dry-run: $(TEST_STAMP)
	PYTHON=$(PY) tools/gpu_check.sh --dry-run gpu-check-dry-run

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
