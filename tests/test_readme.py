"""The README's Python snippets run as printed: the first screen's example and the sections
"Models and training in Python", "Models in and out: ONNX, safetensors" and "scikit-learn and
aeon estimators". Each ```python block runs on its own (a fresh namespace, so it must bring its
own imports) in a temporary working directory, where the files it writes land.

To keep this quick, FASTER below lowers the number of epochs of the snippets that train: each
replacement must occur exactly once in its snippet, so an edited snippet fails here instead of
silently running as printed or not at all. Where a snippet states a result that an independent
oracle can check (torch, safetensors' own reader), CHECKS compares it after the run; the ONNX
Runtime snippet asserts its own."""

import os
import re

import numpy as np
import pytest

from helpers import assert_close, require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# README section (the text under "## title"; "" is the first screen, above the first "##") ->
# (short name for the test ids, how many ```python blocks it holds).
SECTIONS = {
    "": ("first-screen", 1),
    "Models and training in Python": ("python", 4),
    "Models in and out: ONNX, safetensors": ("onnx-safetensors", 3),
    "scikit-learn and aeon estimators": ("estimators", 2),
}

# Replacements made before a snippet runs, by test id: (as printed, as run here).
FASTER = {
    "python-2": [("epochs=40", "epochs=3"), ("T_max=40", "T_max=3")],
    "estimators-1": [("GRUClassifier(random_state=0)", "GRUClassifier(epochs=3, random_state=0)"),
                     ("epochs=50", "epochs=2")],
    "estimators-2": [("GRUClassifier(random_state=0)", "GRUClassifier(epochs=3, random_state=0)")],
}

# What a snippet needs beyond the packages it imports itself.
NEEDS = {
    "onnx-safetensors-1": ["onnx"],  # ng.export_onnx
    "onnx-safetensors-2": ["onnx"],  # torch.onnx.export and ng.load_onnx
    "onnx-safetensors-3": ["safetensors"],  # .safetensors files
}

# Packages a snippet may import without a check: numgru and its own dependencies.
INSTALLED = {"numpy", "numgru"}


def _sections():
    """{title: [python blocks]} of the README's level-2 sections, "" for the text above them."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    parts = re.split(r"^## ", text, flags=re.M)
    found = {"": parts[0]}
    for part in parts[1:]:
        title, _, body = part.partition("\n")
        found[title.strip()] = body
    return {title: re.findall(r"^```python\n(.*?)^```", body, flags=re.M | re.S)
            for title, body in found.items()}


BLOCKS = _sections()
CASES = {f"{short}-{i + 1}": (title, i)
         for title, (short, count) in SECTIONS.items() for i in range(count)}


def test_every_snippet_of_these_sections_is_run():
    found = {title: len(BLOCKS.get(title, [])) for title in SECTIONS}
    assert found == {title: count for title, (_, count) in SECTIONS.items()}
    assert set(FASTER) <= set(CASES) and set(NEEDS) <= set(CASES)


def _check_torch_import(ns):
    """gru (loaded from torch's ONNX file) gives torch_gru's outputs, to float32 rounding
    (test_onnx_models.py's tolerance)."""
    torch = require("torch")
    with torch.no_grad():
        want_y, want_h = ns["torch_gru"](ns["x"])
    assert_close("y", ns["y"], want_y.numpy(), 2e-6)
    assert_close("h_n", ns["h_n"], want_h.numpy(), 2e-6)


def _check_weight_file(ns):
    """The .safetensors file, read by safetensors' own reader, holds the model's tensors by
    PyTorch's names; the model loaded from it has them too."""
    from safetensors.numpy import load_file
    stored = load_file("model.safetensors")
    for model in (ns["model"], ns["other"]):
        state = model.state_dict()
        assert sorted(stored) == sorted(state)
        for name, value in state.items():
            np.testing.assert_array_equal(stored[name], value)


CHECKS = {
    "onnx-safetensors-2": _check_torch_import,
    "onnx-safetensors-3": _check_weight_file,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_readme_snippet_runs(case, tmp_path, monkeypatch):
    title, index = CASES[case]
    code = BLOCKS[title][index]
    for printed, fast in FASTER.get(case, []):
        assert code.count(printed) == 1, f"{case}: {printed!r} no longer occurs once"
        code = code.replace(printed, fast)
    imported = set(re.findall(r"^\s*(?:from|import)\s+(\w+)", code, flags=re.M))
    for package in sorted(imported - INSTALLED) + NEEDS.get(case, []):
        require(package)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md ({case})", "exec"), namespace)
    if case in CHECKS:
        CHECKS[case](namespace)
