"""simulations.registry: one list of experiments, no import cycle, and a new experiment is one module (no training)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as plt_image

from simulations import __main__ as cli
from simulations import registry, runner

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "simulations"

# A whole experiment of its own cell kind: sums of squares 0^2 + ... + k^2, one cell per k, with the
# closed form k (k + 1) (2k + 1) / 6 as the test's oracle. What CONTRIBUTING.md asks of a new module.
TOY = textwrap.dedent('''
    """Toy: the sum of the squares 0^2 + ... + k^2, one cell per k."""

    import numpy as np

    from simulations._common import pyplot, save_figure
    from simulations._text import listing, para

    PROFILES = {"quick": {"ks": [3, 10], "seeds": 1}, "full": {"ks": [3, 10, 100], "seeds": 1}}
    REQUIRES = ()
    VERSION = 1


    def cells(config):
        return [{"kind": "toy_squares", "label": f"toy k={k}", "k": k} for k in config["ks"]]


    def compute(spec):
        squares = np.arange(spec["k"] + 1) ** 2
        return {"sum": int(squares.sum())}, {"squares": squares}


    def summarise(config, store):
        return {"sums": {str(s["k"]): store.result(s)["sum"] for s in cells(config)},
                "largest_square": int(store.arrays(cells(config)[-1])["squares"].max())}


    def plot(record, path, store=None):
        plt = pyplot()
        sums = record["results"]["sums"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([int(k) for k in sums], list(sums.values()), "o-", label="sum of squares")
        ax.set(xlabel="k", ylabel="sum", title="toy")
        ax.legend()
        save_figure(fig, path, "toy_squares: sums of squares")


    TITLE = "sums of squares"


    def report(record, records, default_steps):
        sums = record["results"]["sums"]
        return [para("The sums of the squares up to k are " + listing([f"{v} (k = {k})" for k, v in sums.items()])
                     + ".")]
''')


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy_squares.py"
    path.write_text(TOY)
    spec = importlib.util.spec_from_file_location("toy_squares", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with registry.registered("toy_squares", module):
        yield module
    assert "toy_squares" not in registry.names()


def test_a_new_experiment_runs_plots_and_reports(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert registry.names() == registry.NAMES + ("toy_squares",) and runner.experiment("toy_squares") is toy
    assert cli.main(["list"]) == 0 and "toy_squares" in capsys.readouterr().out
    assert cli.main(["run", "toy_squares", "--out", str(out)]) == 0
    assert "2 computed" in capsys.readouterr().out

    rec = json.loads((out / "toy_squares.json").read_text())
    assert rec["experiment"] == "toy_squares" and rec["profile"] == "quick" and rec["config"]["ks"] == [3, 10]
    assert rec["results"]["sums"] == {"3": 3 * 4 * 7 // 6, "10": 10 * 11 * 21 // 6}  # the closed form: 14, 385
    assert rec["results"]["largest_square"] == 100
    store = runner.open_store(out)
    specs = toy.cells(rec["config"])
    assert rec["cells"] == [store.key(s) for s in specs]
    for s in specs:  # each cell stored, versioned by the registry with the module's VERSION
        assert store.problem(s) is None
        assert store.load(s)["spec"]["v"] == toy.VERSION == registry.cell_version(s["kind"])
        np.testing.assert_array_equal(store.arrays(s)["squares"], np.arange(s["k"] + 1) ** 2)
    again = runner.run_experiment("toy_squares", out, progress=False)
    assert (again["computed"], again["reused"]) == (0, 2)

    png = out / "toy_squares.png"
    png.unlink()
    assert cli.main(["plot", "toy_squares", "--out", str(out)]) == 0  # redrawn from the JSON alone
    image = plt_image.imread(png)
    assert image.shape[0] >= 400 and image.shape[1] >= 700 and image[..., :3].std() > 0.01

    assert cli.main(["report", "--out", str(out)]) == 0
    doc = (out / "README.md").read_text()
    section = doc.split("\n### toy_squares: sums of squares\n")[1]
    assert section.startswith("\n![toy_squares](toy_squares.png)\n")
    assert "The sums of the squares up to k are 14 (k = 3) and 385 (k = 10)." in section
    assert doc.count("has not been run") == len(registry.NAMES)  # every other experiment: one line each
    link = re.search(r"\[`simulations/CONTRIBUTING.md`\]\(([^)]+)\)", doc).group(1)  # how to add one
    assert (out / link).resolve() == PACKAGE / "CONTRIBUTING.md" and (out / link).is_file()


def test_registering_checks_its_arguments(toy):
    with pytest.raises(ValueError, match="already taken"):
        registry.register("toy_squares", toy)
    with pytest.raises(ValueError, match="already taken"):
        registry.register("pcl", toy)
    with pytest.raises(ValueError, match="identifier"):
        registry.register("toy squares", toy)
    with pytest.raises(TypeError, match="module"):
        registry.register("toy2", object())
    with pytest.raises(ValueError, match="was not added"):
        registry.unregister("pcl")
    with pytest.raises(ValueError, match="unknown experiment 'nope'.*toy_squares"):
        registry.experiment("nope")


def test_every_listed_experiment_is_a_complete_module():
    """NAMES is the only list: every name has its module with what the runner, the store and the document need."""
    assert len(set(registry.NAMES)) == len(registry.NAMES)
    files = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    assert set(registry.NAMES) == files - {"registry", "runner", "cluster", "report", "store"}
    for name in registry.NAMES:
        mod = registry.experiment(name)
        assert set(mod.PROFILES) == {"quick", "full"}, name
        assert all(callable(getattr(mod, f)) for f in ("cells", "summarise", "plot", "report")), name
        assert isinstance(mod.TITLE, str) and mod.TITLE, name
        assert all(r in registry.NAMES for r in getattr(mod, "REQUIRES", ())), name


def _imports() -> dict[str, dict[str, bool]]:
    """Each module of simulations/ -> the modules of simulations/ it imports, anywhere in its code
    (value: True when the import sits inside a function)."""
    mods = {p.stem for p in PACKAGE.glob("*.py")}
    graph: dict[str, dict[str, bool]] = {}
    for p in PACKAGE.glob("*.py"):
        tree = ast.parse(p.read_text())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if n is not f}
        edges: dict[str, bool] = {}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1 or base == "simulations":
                    targets = [base] if node.level == 1 and base else [a.name for a in node.names]
                elif base.startswith("simulations."):
                    targets = [base.split(".")[1]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("simulations.")]
            for t in targets:
                if t in mods:
                    edges[t] = edges.get(t, True) and id(node) in nested
        graph[p.stem] = edges
    return graph


def test_no_import_cycle_in_simulations():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, {}):
            assert state.get(n) != 1, " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    # the registry finds experiments by name, and imports only the shared training cell
    assert set(graph["registry"]) == {"_cells"}
    assert all("runner" not in graph[m] and "report" not in graph[m] for m in (*registry.NAMES, "cluster"))
    # the only imports inside functions: the Dask path (simulations.cluster imports the optional distributed)
    assert {(m, n) for m, e in graph.items() for n, inside in e.items() if inside} == {("runner", "cluster"),
                                                                                      ("__main__", "cluster")}
