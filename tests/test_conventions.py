"""The house rules, checked on every public function (as dm_pix's API test does) rather than written down.

For every public name of the ``metastructure`` modules and of ``theory.curves``
(functions, classes, and the public methods and properties of classes):

* it has a docstring;
* randomness enters only through a ``key`` argument, and it comes first: every
  function whose code draws random numbers (``jax.random``) or calls a public
  random function takes ``key`` (or ``keys``) first, and no signature has a
  ``seed`` / ``rng`` / ``random_state`` parameter;
* options are keyword-only: a parameter with a default value is never
  positional (data come first and positionally, options after ``*``).
  Record types (NamedTuples, dataclasses) are exempt for their fields.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import subprocess
import sys
import textwrap

import pytest

import metastructure
from simulations import registry

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
from public_api import public_objects, rule_modules  # noqa: E402  (one walk: these rules and the docs' coverage)

MODULES = list(rule_modules())


def _is_record(cls) -> bool:
    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


PUBLIC = public_objects(MODULES)  # {"module.name[.method]": object}: every public function, class, method, property
FUNCTIONS = {k: v for k, v in PUBLIC.items() if inspect.isfunction(v)}
RANDOM_NAMES = set()  # filled below: public functions that draw random numbers


def _code_calls(fn) -> set[str]:
    """Dotted names called or accessed in the body of ``fn`` (its docstring and examples excluded)."""
    src = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(src)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                names.add(".".join([cur.id, *reversed(parts)]))
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return names


def _draws_random_numbers(fn) -> bool:
    return any(n.startswith("jax.random.") and n not in ("jax.random.key_data",) for n in _code_calls(fn))


def _params(fn) -> list[inspect.Parameter]:
    ps = list(inspect.signature(fn).parameters.values())
    return ps[1:] if ps and ps[0].name in ("self", "cls") else ps


def test_the_walk_finds_the_api():
    """Guard against a vacuous pass: the walk sees the functions the rules are about."""
    for name in ("metastructure.noise.flip", "metastructure.ntm.flip_matrix", "metastructure.train.fit",
                 "metastructure.train.make_optimizer", "metastructure.nets.unet", "metastructure.metrics.evaluate",
                 "metastructure.noise.LabelNoise.transition", "theory.curves.predicted_dice"):
        assert name in PUBLIC, name
    assert len(FUNCTIONS) > 100


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_has_a_docstring(name):
    obj = PUBLIC[name]
    doc = obj.__doc__ if isinstance(obj, property) else inspect.getdoc(obj)
    assert doc and doc.strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_randomness_only_through_a_key_that_comes_first(name):
    fn = FUNCTIONS[name]
    ps = _params(fn)
    names = [p.name for p in ps]
    assert not {"seed", "rng", "random_state"} & set(names), f"{name} takes randomness other than a key: {names}"
    if "key" in names or "keys" in names:
        assert names[0] in ("key", "keys"), f"{name}: key must come first, got {names}"
    public_random = {n.rsplit(".", 1)[-1] for n in FUNCTIONS if n.count(".") == 2 and _is_random(n)}
    calls = {c.rsplit(".", 1)[-1] for c in _code_calls(fn)}
    if _draws_random_numbers(fn) or (calls & public_random and "key" in names):
        assert names and names[0] in ("key", "keys"), f"{name} draws random numbers, so key comes first: {names}"


def _is_random(name: str) -> bool:
    fn = FUNCTIONS[name]
    ps = [p.name for p in _params(fn)]
    return _draws_random_numbers(fn) or (bool(ps) and ps[0] in ("key", "keys"))


def test_the_random_functions_are_the_expected_ones():
    random = sorted(n for n in FUNCTIONS if _is_random(n))
    for name in ("metastructure.noise.sample", "metastructure.noise.flip", "metastructure.noise.corrupt",
                 "metastructure.noise.shift", "metastructure.noise.random_labels", "metastructure.data.nuclei",
                 "metastructure.unsupervised.ems", "metastructure.unsupervised.igtt", "metastructure.train.fit",
                 "metastructure.train.fit_many", "metastructure.train.augment_dihedral"):
        assert name in random, name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_options_are_keyword_only(name):
    fn = FUNCTIONS[name]
    owner = name.rsplit(".", 2)
    cls = getattr(importlib.import_module(owner[0]), owner[1], None) if name.count(".") == 3 else None
    if cls is not None and _is_record(cls) and fn.__name__ == "__init__":
        return
    positional_options = [p.name for p in _params(fn)
                          if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty]
    assert not positional_options, f"{name}: options {positional_options} must be keyword-only (after *)"


@pytest.mark.parametrize("name", sorted(k for k, v in PUBLIC.items() if inspect.isclass(v) and not _is_record(v)))
def test_class_constructors_keep_options_keyword_only(name):
    cls = PUBLIC[name]
    positional_options = [p.name for p in _params(cls.__init__)
                          if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty]
    assert not positional_options, f"{name}(): options {positional_options} must be keyword-only"


# ------------------------------------------------------------------ the repository stands alone
PACKAGES = ("metastructure", "theory", "simulations")


def _tracked(*suffixes: str) -> list:

    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / n for n in names.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): every file
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [p for p in files if p.suffix in suffixes and p.exists()]


# the team's private notes, which users do not have; spelled in parts so that this file does not cite them
PRIVATE_NOTES = tuple(f"{name}.md" for name in ("PAPER", "DESIGN", "PERF_NOTES")) + ("../" + "shared",)


def test_no_file_cites_notes_the_repository_does_not_hold():
    """Regression: code, docs and tests cited the paper notes by section, a file users do not have."""
    bad = []
    for path in _tracked(".py", ".md", ".toml", ".cfg", ".txt"):
        text = path.read_text(errors="replace")
        bad += [f"{path.relative_to(ROOT)}: {word}" for word in PRIVATE_NOTES if word in text]
    assert not bad, "cite the paper (arXiv 2103.11594 / 2205.00160) or theory/README.md instead: " + "; ".join(bad)


def test_no_private_name_crosses_a_package():
    """A private name (``_x``) is used only inside the package that defines it: what others need is public."""
    bad = []
    for path in _tracked(".py"):
        rel = path.relative_to(ROOT)
        own = rel.parts[0] if rel.parts[0] in PACKAGES else None
        tree = ast.parse(path.read_text())
        modules: dict[str, str] = {}  # local name -> the package it comes from
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    modules[(a.asname or a.name).split(".")[0]] = a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                for a in node.names:
                    modules[a.asname or a.name] = top
                    if top in PACKAGES and top != own and a.name.startswith("_") and not a.name.startswith("__"):
                        bad.append(f"{rel}:{node.lineno} imports {node.module}.{a.name}")
                if top in PACKAGES and top != own and any(p.startswith("_") and not p.startswith("__")
                                                          for p in node.module.split(".")[1:]):
                    bad.append(f"{rel}:{node.lineno} imports from {node.module}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                top = modules.get(node.value.id)
                if top in PACKAGES and top != own:
                    bad.append(f"{rel}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, "make public what others need: " + "; ".join(bad)


# layers and import cycles: tests/test_layers.py


# ------------------------------------------------------------------ one test file per module
# private helper modules, covered by the tests of the modules that use them (no test file of their own):
# metastructure._checks (test_inputs.py: every public function's bad input), simulations._cells /
# _common / _io / _text (test_experiments.py, test_report.py, test_store.py through the experiments and the store)
PRIVATE_HELPERS = ("metastructure/_checks.py", "simulations/_cells.py", "simulations/_common.py",
                   "simulations/_io.py", "simulations/_text.py")


def expected_test_file(rel: str) -> str | None:
    """The test file a module's tests live in (None: none of its own). ``rel`` is the module's path from the root:
    metastructure/X.py -> test_X.py (``__main__``: test_metastructure_cli.py), metastructure/planner/X.py ->
    test_planner_X.py, theory/X.py -> test_theory_X.py, simulations/X.py -> test_X.py (``__main__``:
    test_simulations_cli.py). Packages' ``__init__``, private helpers ``_*.py`` and the experiment modules
    (simulations/NAME.py for NAME in registry.NAMES, each covered by test_experiments.py) have none."""
    parts = rel.removesuffix(".py").split("/")
    stem = parts[-1]
    if stem == "__init__":
        return None
    if stem == "__main__":
        return {"metastructure": "test_metastructure_cli.py", "simulations": "test_simulations_cli.py"}[parts[0]]
    if stem.startswith("_"):
        return None
    if parts[0] == "simulations" and len(parts) == 2 and stem in registry.NAMES:
        return None
    if parts[0] == "theory":
        return f"test_theory_{stem}.py"
    return f"test_{'_'.join(parts[1:])}.py"


def test_every_module_has_its_test_file():
    """Each module of metastructure (planner parts included), theory and simulations (not the experiments, not
    the private helpers listed in PRIVATE_HELPERS) has its tests/test_<module>.py; a missing one fails with its
    name."""
    modules = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    assert "metastructure/planner/training.py" in modules and "simulations/store.py" in modules  # the walk works
    private = sorted(m for m in modules if m.rsplit("/", 1)[-1].startswith("_") and not m.endswith("__.py"))
    assert private == sorted(PRIVATE_HELPERS), "list the new private helper and which tests cover it"
    missing = [f"{m} -> tests/{expected_test_file(m)}" for m in modules
               if expected_test_file(m) and not (ROOT / "tests" / expected_test_file(m)).exists()]
    assert not missing, "modules without their test file: " + "; ".join(missing)
    # the mapping itself, on known answers
    assert [expected_test_file(m) for m in ("metastructure/noise.py", "metastructure/planner/model.py",
                                            "theory/curves.py", "simulations/store.py", "simulations/__main__.py",
                                            "metastructure/__main__.py", "simulations/pcl.py",
                                            "simulations/_text.py")] == [
        "test_noise.py", "test_planner_model.py", "test_theory_curves.py", "test_store.py", "test_simulations_cli.py",
        "test_metastructure_cli.py", None, None]


def test_one_version_in_the_package_citation_and_changelog():
    """The version is single-sourced: the installed distribution's (pyproject.toml), which CITATION.cff names and
    CHANGELOG.md has a section for; CITATION.cff is valid YAML naming the two papers it implements."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and str(cff["version"]) == metastructure.__version__ != "0+unknown"
    assert {r["identifiers"][0]["value"] for r in cff["references"]} == {"arXiv:2103.11594", "arXiv:2205.00160"}
    assert f"## {metastructure.__version__}" in (root / "CHANGELOG.md").read_text()
