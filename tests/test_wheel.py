"""The package as a user installs it: a wheel and an sdist that pass `twine check`, and the wheel alone, installed
into a fresh virtual environment outside the repository, gives a working toolkit (every public module imports
from the wheel, its version is the distribution's, the planner finds its packaged calibration, one experiment
runs). Slow: it builds the package and starts several processes."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import blobs, write_pngs

import metastructure

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(args, *, cwd, timeout=900):
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, the dist folder, a working folder outside the repository).

    The venv sees this interpreter's site-packages for the dependencies (nothing is downloaded); the package itself
    comes from the wheel alone (``--no-deps --no-index``), and the tests check that it does."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT], cwd=tmp)
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", env], cwd=tmp)
    python = env / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", wheel], cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return python, dist, work


def test_wheel_and_sdist_pass_twine_and_hold_the_package_data(venv):
    _, dist, work = venv
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    _run([sys.executable, "-m", "twine", "check", "--strict", *files], cwd=work)
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    # the planner's default calibration is read at run time: package data
    assert "metastructure/planner/calibration.json" in names
    assert {n.split("/")[0] for n in names} == {"metastructure", "theory", "simulations",
                                                f"metastructure-{metastructure.__version__}.dist-info"}
    assert not any(n.startswith(("tests/", "figures/", "bench/")) for n in names)


def test_every_public_module_imports_from_the_wheel_with_its_version(venv):
    python, _, work = venv
    code = (
        "import importlib, json, metastructure, simulations, theory\n"
        "mods = ['metastructure.' + m for m in metastructure.__all__ if not m[0].isupper() and m != '__version__'"
        " and hasattr(getattr(metastructure, m), '__all__')] + ['theory.curves', 'theory.derivations',"
        " 'simulations.runner', 'simulations.report', 'metastructure.planner']\n"
        "print(json.dumps({'files': [importlib.import_module(m).__file__ for m in mods + ['simulations', 'theory']],"
        " 'version': metastructure.__version__, 'n': len(mods)}))\n")
    got = json.loads(_run([python, "-c", code], cwd=work).strip().splitlines()[-1])
    site = str(Path(python).parent.parent)
    assert got["n"] >= 12 and all(f.startswith(site) for f in got["files"]), got["files"]  # not the repository
    assert got["version"] == metastructure.__version__ != "0+unknown"


def test_the_installed_wheel_plans_on_masks_and_runs_an_experiment(venv):
    python, _, work = venv
    masks = work / "masks"
    write_pngs(masks, [blobs((64, 64), seed=s) for s in range(4)], scale=255)
    text = _run([python, "-m", "metastructure", "plan", masks, "--n-images", "50"], cwd=work)
    row = next(line.split() for line in text.splitlines() if line.startswith("sample 0.1 "))
    assert row[2] == "RCL" and 0 < float(row[3]) <= 1 and row[5] == "0.05", text  # its Dice and t* = p/2
    out = work / "figs"
    _run([python, "-m", "simulations", "run", "meta_structure", "--profile", "quick", "--out", out], cwd=work)
    rec = json.loads((out / "meta_structure.json").read_text())
    assert rec["experiment"] == "meta_structure" and rec["profile"] == "quick" and (out / "meta_structure.png").exists()
