"""The house's rules, read from the source (AST, lazy imports inside functions included).

Every module of numgru sits in one layer of docs/DESIGN.md's architecture and imports only from
its own layer or those below it; no two modules import each other, even through others; no module
imports another numgru module's private names (`from numgru.x import _y`; attribute access such
as `obj._y` is not visible to an import graph and is left to review). A new module must be given
its layer here, or this test fails.
"""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "numgru")

# Bottom to top. A prefix ending in "." covers a package's modules.
LAYERS = [
    ("leaves", ["numgru._version", "numgru._checks", "numgru._memory", "numgru.errors",
                "numgru._launch", "numgru._jit"]),
    ("shared math", ["numgru._mathfn", "numgru._gates", "numgru._optim_math"]),
    ("engines", ["numgru.contract", "numgru.reference", "numgru.cpu", "numgru.cpu.",
                 "numgru.cuda", "numgru.cuda."]),
    ("dispatcher", ["numgru.backend"]),
    ("layers, model, losses, optimizers", ["numgru.layers", "numgru.model", "numgru.losses",
                                           "numgru.optim"]),
    ("files", ["numgru.data", "numgru.datasets", "numgru.convert", "numgru.io", "numgru.io."]),
    ("training", ["numgru.training", "numgru.training."]),
    ("applications", ["numgru._fitting", "numgru.sklearn", "numgru.aeon", "numgru.cli",
                      "numgru.cli."]),
    ("package", ["numgru", "numgru.__main__"]),
]


def _modules():
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


MODULES = _modules()


def _layer(name):
    for k, (_, members) in enumerate(LAYERS):
        for m in members:
            if name == m or (m.endswith(".") and name.startswith(m)):
                return k
    return None


def _imports(name, path):
    """(target module, imported name or None, line) for each numgru import in the module."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    is_pkg = path.endswith("__init__.py")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "numgru"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                base = parts[:len(parts) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "numgru":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES
                           else (target, a.name, node.lineno))
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, f"modules with no layer in tests/test_architecture.py: {missing}"


def test_imports_point_down():
    upward = [f"{m}:{line} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
              for m, edges in GRAPH.items() for t, _, line in edges
              if t in MODULES and _layer(t) is not None and _layer(m) is not None
              and _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    edges = {m: {t for t, _, _ in e if t in MODULES and t != m} for m, e in GRAPH.items()}
    # a package's __init__ importing its own modules is the package's face, not a circle
    state, circles = {}, []

    def visit(v, stack):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                circles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w, stack)
        stack.pop()
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v, [])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_no_private_names_imported_from_another_module():
    private = [f"{m}:{line} imports {name} from {t}" for m, edges in GRAPH.items()
               for t, name, line in edges
               if name and name.startswith("_") and not name.startswith("__") and t != m]
    assert not private, "\n".join(private)


def test_the_checks_find_what_they_look_for(tmp_path):
    """The rules above are not vacuous: a module that imports upward, or a private name, is found."""
    path = tmp_path / "probe.py"
    path.write_text("from ..training.trainer import Trainer\nfrom ..layers import _secret\n")
    found = _imports("numgru.cpu.probe", str(path))
    assert found == [("numgru.training.trainer", "Trainer", 1), ("numgru.layers", "_secret", 2)]
    assert _layer("numgru.cpu.probe") < _layer("numgru.training.trainer")  # upward: refused


# Functions still over 100 lines (issue 18 left them): the list may only shrink. A function that
# grows past 100 lines, or one listed here that has been split, fails the test.
STILL_LONG = {("numgru.cpu.kernels", "_backward_part"), ("numgru.cuda.gates", "build"),
              ("numgru.data", "load_ts"), ("numgru.io.onnx", "_build_graph")}


def test_no_function_over_100_lines():
    long = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.end_lineno - node.lineno + 1 > 100):
                long.add((name, node.name))
    assert not long - STILL_LONG, f"functions over 100 lines: {sorted(long - STILL_LONG)}"
    assert not STILL_LONG - long, f"split, take them off STILL_LONG: {sorted(STILL_LONG - long)}"
