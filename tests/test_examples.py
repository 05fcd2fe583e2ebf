"""The notebooks of examples/ run from top to bottom without an error (nbclient).

Each takes under a minute on an idle 2-core machine; the test allows two, since the suite's other worker
shares the cores."""

import time
from pathlib import Path

import pytest

from metastructure import data

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


def test_there_are_two_notebooks_committed_with_outputs():
    nbformat = pytest.importorskip("nbformat")
    assert [p.name for p in NOTEBOOKS] == ["01_your_mask.ipynb", "02_planning_an_annotation.ipynb"]
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.get("execution_count") for c in code), f"{p.name}: commit it executed"
        assert all(o.get("output_type") != "error" for c in code for o in c.get("outputs", []))
        assert p.stat().st_size < 600_000, f"{p.name}: keep the committed outputs small"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if "planning" in path.name and not data.real_available():
        pytest.skip("needs the packaged real nuclei (pip install --no-deps stardist==0.9.2, tifffile)")
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    elapsed = time.perf_counter() - t0
    assert elapsed < 120, f"{path.name} took {elapsed:.0f} s (target: under a minute on an idle 2-core machine)"
