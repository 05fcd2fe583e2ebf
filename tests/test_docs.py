"""The documentation site: strict build with the API coverage check, the front page's module table, a real browser.

The build command is the README's (``python3 -m sphinx -W --keep-going -b html -c docs . OUT``); the browser
check is ``docs/check_site.py`` (slow: headless Chromium, Debian's package, which ``.ci/run`` installs).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
sys.path.insert(0, str(ROOT / "docs"))
import check_site  # noqa: E402
from public_api import doc_modules, public_objects, undocumented  # noqa: E402

README = (ROOT / "README.md").read_text()


def _docs_command() -> list[str]:
    """The README's build command (after its install step), as argv with the output folder last."""
    m = re.search(r"`python3 -m pip install -e \"\.\[docs\]\" && (python3 -m sphinx [^`]+)`", README)
    assert m, "README gives the docs build command"
    return shlex.split(m.group(1))


def build(out: Path) -> subprocess.CompletedProcess:
    argv = _docs_command()
    assert argv[-1] == "docs/_build/html" and "-W" in argv, argv
    return subprocess.run([sys.executable, *argv[1:-1], str(out)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "html"
    proc = build(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


# ------------------------------------------------------------------ the build
def test_strict_build_documents_every_public_name(site):
    """The strict build passed, so the coverage check found every public name; the pages are there."""
    for page in ("index.html", "README.html", "docs/api/density.html", "simulations/README.html",
                 "theory/README.html", "bench/README.html", "examples/01_your_mask.html",
                 "examples/02_planning_an_annotation.html", "simulations/CONTRIBUTING.html", "searchindex.js"):
        assert (site / page).is_file(), page
    html = (site / "docs/api/density.html").read_text()
    assert 'id="metastructure.density.fraction_field"' in html
    assert "_static/mathjax/tex-svg-full.js" in html and (site / "_static/mathjax/tex-svg-full.js").is_file()
    assert not re.search(r"<script[^>]+src=\"https?://", html), "a page loads a script from the network"
    notebook = (site / "examples/01_your_mask.html").read_text()
    assert notebook.count("<img") >= 2, "the notebook's committed figures are rendered"


def test_the_coverage_check_reports_what_is_missing():
    """The check itself: a name dropped from the documented set is reported, re-exports count as documented."""
    modules = doc_modules()
    everything = set(public_objects(modules, data=True))
    assert undocumented(everything, modules) == []
    assert undocumented(everything - {"metastructure.noise.flip"}, modules) == ["metastructure.noise.flip"]
    assert undocumented(everything - {"metastructure.noise.LabelNoise.transition"}, modules) == [
        "metastructure.noise.LabelNoise.transition"]
    # re-exports: documented once, at home
    assert "metastructure.fraction_field" not in undocumented(everything - {"metastructure.fraction_field"}, modules)
    assert "simulations.runner.NAMES" not in undocumented(everything - {"simulations.runner.NAMES"}, modules)
    # a package's constant documented in the submodule that defines it
    planner = everything - {"metastructure.planner.DEFAULT_RECIPE"}
    assert undocumented(planner, modules) == ["metastructure.planner.DEFAULT_RECIPE"]
    assert undocumented(planner | {"metastructure.planner.calibration.DEFAULT_RECIPE"}, modules) == []


# ------------------------------------------------------------------ the front page's module table
def _module_table() -> list[tuple[list[str], list[str]]]:
    section = README.split("## What is in it", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first, second = (c.strip() for c in line.strip().strip("|").split("|", 1))
            rows.append((re.findall(r"`([^`]+)`", first), re.findall(r"`([A-Za-z_][A-Za-z_0-9.]*)`", second)))
    return rows


def test_readme_module_table_lists_every_module_and_only_real_names():
    import metastructure

    rows = _module_table()
    listed = {m for mods, _ in rows for m in mods}
    modules = {f"metastructure.{m}" for m in metastructure.__all__ if inspect.ismodule(getattr(metastructure, m))}
    assert listed == modules | {"theory.derivations", "theory.curves", "simulations"}
    for mods, names in rows:
        known = set(mods) | {m.split(".")[0] for m in mods}
        for m in mods:
            mod = importlib.import_module(m)
            for name in getattr(mod, "__all__", []):
                obj = getattr(mod, name)
                known.add(name)
                if inspect.isclass(obj):
                    known |= {a for a in vars(obj) if not a.startswith("_")}
                if callable(obj):  # parameters named in the text (`ignore`)
                    try:
                        known |= set(inspect.signature(obj).parameters)
                    except (TypeError, ValueError):
                        pass
        unknown = [n for n in names if n.split(".")[0] not in known]
        assert not unknown, f"README's row for {mods} names what the module does not have: {unknown}"


def test_the_docs_command_is_beside_the_run_commands_and_in_ci():
    """README gives the build command in its text (not a third set-up block), and .ci/run runs it."""
    argv = _docs_command()
    ci = (ROOT / ".ci" / "run").read_text()
    assert shlex.join(argv) in ci or " ".join(argv) in ci


# ------------------------------------------------------------------ a real browser
@pytest.mark.slow
def test_site_in_headless_chromium(site, tmp_path):
    """Front page, an API page with formulas, the results, a notebook and a search, as Chromium shows them."""
    why = check_site.browser_available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the site in a browser (.ci/run installs it): {why}")
        pytest.skip(why)
    shots = Path(os.environ.get("METASTRUCTURE_SCREENSHOTS") or tmp_path / "screenshots")
    seen = check_site.check_site(site, screenshots=shots)
    problems = {name: s["problems"] for name, s in seen.items() if s["problems"]}
    assert not problems, problems
    assert seen["api"]["formulas"] >= 10, seen["api"]  # density's module docstring alone has more
    assert seen["results"]["images"] >= 10, seen["results"]  # one figure per experiment
    assert seen["notebook"]["images"] >= 2 and seen["front"]["images"] >= 1
    assert seen["search"]["results"] >= 1
    for name in ("front", "api", "results", "notebook", "search"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name  # a rendered page, not a blank one
