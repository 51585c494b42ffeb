"""The light install: `pip install numgru` brings numpy, numba, scipy and tqdm only, `make demo`
adds matplotlib (the `plot` extra) and nothing else, and numgru's modules and the main job
(`numgru train`) import none of the optional packages or test oracles, so they run where only those
are installed."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Installed by extras or `make test` only: none may be imported by numgru's light modules or by
# `numgru train`. numba.cuda is numba-cuda's (the cuda extras).
OPTIONAL = ("torch", "onnx", "onnxruntime", "onnxscript", "sklearn", "aeon", "safetensors",
            "mpi4py", "numba.cuda", "numba_cuda", "pandas")
# numgru modules that exist to use an optional package: the estimators and the CUDA engine.
OPTIONAL_MODULES = ("aeon", "sklearn", "cuda", "__main__")


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _names(requirements):
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_runtime_dependencies_are_numpy_numba_scipy_tqdm():
    project = _pyproject()["project"]
    assert _names(project["dependencies"]) == {"numpy", "numba", "scipy", "tqdm"}
    assert _names(project["optional-dependencies"]["plot"]) == {"matplotlib"}


def _make_rules():
    """{target: (prerequisites, recipe lines)} of the Makefile's explicit rules."""
    rules, current = {}, None
    with open(os.path.join(ROOT, "Makefile")) as f:
        for line in f:
            if line.startswith("\t") and current is not None:
                rules[current][1].append(line.strip())
                continue
            current = None
            match = re.match(r"^([^\s#:=?][^:=]*):(?!=)(.*)$", line.rstrip("\n"))
            if match:
                current = match.group(1).strip()
                rules[current] = (match.group(2).replace("|", " ").split(), [])
    return rules


def _pip_installs(recipe):
    """The requirement arguments of each `pip install` line of a recipe."""
    installs = []
    for line in recipe:
        words = shlex.split(line)
        if "pip" in words and "install" in words:
            args = words[words.index("install") + 1:]
            installs.append([a for a in args if not a.startswith("-")])
    return installs


def test_make_demo_installs_only_the_plot_extra():
    rules = _make_rules()
    prerequisites, recipe = rules["demo"]
    assert prerequisites == ["$(DEMO_STAMP)"]  # not the test oracles' stamp
    assert _pip_installs(recipe) == []
    prerequisites, recipe = rules["$(DEMO_STAMP)"]
    assert prerequisites == ["pyproject.toml", "$(PY)"]
    assert _pip_installs(recipe) == [[".[plot]"]]
    assert _pip_installs(rules["$(PY)"][1]) == [["pip"]]  # the venv: pip itself only


def test_numgru_and_the_main_job_import_no_optional_package(tmp_path):
    """In a fresh interpreter: every numgru module but the estimators and the CUDA engine, then
    `numgru train` (the main job's arguments from the Makefile, one epoch), with sys.modules
    read after each. The run asks for device cpu: with a GPU and numba-cuda installed, "auto"
    loads numba.cuda by design; the light install has no numba-cuda to load."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        demo = re.search(r"^DEMO_ARGS := (.*?[^\\])$", f.read(), re.M | re.S).group(1)
    args = shlex.split(demo.replace("\\\n", " "))
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--out") + 1] = str(tmp_path / "run")
    argv = ["train", "japanese_vowels", *args, "--device", "cpu", "--no-progress"]
    code = f"""
import importlib, json, pkgutil, sys
import numgru
optional = {OPTIONAL!r}
imported = []
for m in pkgutil.iter_modules(numgru.__path__):  # walk_packages would import numgru.cuda
    if m.name in {OPTIONAL_MODULES!r}:
        continue
    imported.append(m.name)
    if m.ispkg:
        sub = importlib.import_module("numgru." + m.name)
        imported += [m.name + "." + s.name for s in pkgutil.iter_modules(sub.__path__)]
imported.sort()
for name in imported:
    importlib.import_module("numgru." + name)
after_import = [m for m in optional + ("matplotlib",) if m in sys.modules]
from numgru.cli import main
rc = main({argv!r})
after_train = [m for m in optional if m in sys.modules]
print(json.dumps([imported, after_import, rc, after_train]))
"""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env.pop("NUMGRU_DEVICE", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported, after_import, rc, after_train = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"cli.commands", "training.trainer", "model", "data", "datasets", "io.weights",
            "io.onnx", "cpu.kernels"} <= set(imported)
    assert after_import == []
    assert rc == 0 and (tmp_path / "run" / "model.npz").exists()
    assert after_train == []
