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

.PHONY: demo test bench golden clean

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

bench: $(TEST_STAMP)
	$(PY) benchmarks/bench_cpu.py

golden: $(TEST_STAMP)
	$(PY) tests/golden/make_golden.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
