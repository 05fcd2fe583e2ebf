"""The import graph of the three packages: layers without back edges, modules without cycles.

``theory`` is mathematics (it imports nothing of ours), ``metastructure`` may import ``theory``, and
``simulations`` may import both; within a package no module imports another that imports it back. Every
import counts, at module top or inside a function: an import placed in a function to dodge a cycle is a
cycle. The graph is read from the source with :mod:`ast`, so nothing is executed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from simulations import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "metastructure", "simulations")  # bottom to top
LAYER = {name: i for i, name in enumerate(PACKAGES)}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str], root: Path = ROOT, *, in_functions: bool = False,
               ancestors: bool = False) -> set[str]:
    """The project modules ``path`` imports (anywhere in the file; only inside functions with ``in_functions``),
    as dotted names present in ``modules``; with ``ancestors``, only the packages that contain ``path`` itself
    (``from metastructure import x`` in a module of metastructure: x from the package's ``__init__``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = ast.walk(tree)
    if in_functions:
        nodes = (n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                 for n in ast.walk(f))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # ``from pkg import name``: name may be a module or an attribute
                t = t.rpartition(".")[0]
            if t and t != name and name.startswith(t + ".") == ancestors:
                found.add(t)
    return found


def graph(*, in_functions: bool = False) -> dict[str, set[str]]:
    """Each module of the three packages -> the project modules it imports (inside functions only, if asked)."""
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules, in_functions=in_functions) for p in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_package_imports_a_layer_above_it():
    back = sorted(f"{m} -> {t}" for m, ts in graph().items() for t in ts
                  if LAYER[t.partition(".")[0]] > LAYER[m.partition(".")[0]])
    assert not back, "imports against the layers (theory < metastructure < simulations):\n" + "\n".join(back)


def test_imports_across_packages_sit_at_module_top():
    """metastructure imports theory, and simulations both, where a reader sees it: at the top of the module."""
    inner = sorted(f"{m} -> {t}" for m, ts in graph(in_functions=True).items() for t in ts
                   if t.partition(".")[0] != m.partition(".")[0])
    assert not inner, "imports of another package inside a function:\n" + "\n".join(inner)


def test_no_module_imports_from_its_own_package_init():
    """A package's ``__init__`` imports its modules, so a module that takes a name from it (``from metastructure
    import configure_cpu`` inside metastructure) closes a cycle that the module graph cannot show: import the
    defining module instead."""
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    modules = {module_name(p) for p in files}
    found = sorted(f"{module_name(p)} -> {t}" for p in files for t in imports_of(p, modules, ancestors=True))
    assert not found, "imports from the module's own package __init__:\n" + "\n".join(found)


def test_no_module_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("from . import b\n")
    (src / "b.py").write_text("def f():\n    from .a import x\n    import pkg.c\n")
    (src / "c.py").write_text("")
    mods = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    assert imports_of(src / "a.py", mods, tmp_path) == {"pkg.b"}
    assert imports_of(src / "b.py", mods, tmp_path) == {"pkg.a", "pkg.c"}  # inside a function too
    assert imports_of(src / "b.py", mods, tmp_path, in_functions=True) == {"pkg.a", "pkg.c"}
    assert imports_of(src / "a.py", mods, tmp_path, in_functions=True) == set()
    (src / "c.py").write_text("from pkg import d\n")  # d: a name of pkg/__init__, not a module
    assert imports_of(src / "c.py", mods, tmp_path) == set()
    assert imports_of(src / "c.py", mods, tmp_path, ancestors=True) == {"pkg"}
    assert cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}) == [["pkg.a", "pkg.b"]]


def test_experiments_reach_each_other_through_the_registry():
    """The registry imports only the shared training cell (it finds experiments by name); no experiment and
    not the Dask path import the runner or the report (they import the registry): nothing imports back."""
    g = graph()
    ours = {m for m in g["simulations.registry"] if m.startswith("simulations.")}
    assert ours == {"simulations._cells"}, ours
    for m in [f"simulations.{n}" for n in registry.NAMES] + ["simulations.cluster"]:
        assert not g[m] & {"simulations.runner", "simulations.report"}, m


def test_importing_theory_loads_nothing_of_metastructure():
    """At run time too: a fresh interpreter that imports theory has no module of metastructure or simulations."""
    code = ("import sys, theory, theory.curves, theory.derivations; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('metastructure', 'simulations')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.strip() == "[]", proc.stdout
