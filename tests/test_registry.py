"""simulations.registry: one list of experiments, and a new experiment is one module (no training).

That nothing imports back (no cycle, the registry imports only the shared cell) is tests/test_layers.py's.
"""

from __future__ import annotations

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
