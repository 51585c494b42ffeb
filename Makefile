# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv and install
# numgru into it (editable, with its test extras) when there is none.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench golden clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: a GRU classifier on Japanese Vowels (official 270/370 split, variable lengths),
# test accuracy printed beside published results, run folder in runs/japanese_vowels.
DEMO_ARGS := --hidden 64 --bidirectional --epochs 40 --batch-size 8 --lr 0.005 --clip-norm 1.0 \
	--schedule cosine --seed 0 --out runs/japanese_vowels

demo: $(STAMP)
	$(PY) -m numgru train japanese_vowels $(DEMO_ARGS)

test: $(STAMP)
	NUMGRU_REQUIRE_ORACLES=1 $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_cpu.py

golden: $(STAMP)
	$(PY) tests/golden/make_golden.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
