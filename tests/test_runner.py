"""simulations.runner: resume after a killed run, --force, --seeds, cell versioning, two runs on one folder."""

import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import record

from simulations import runner


def test_two_runs_on_one_output_folder(tmp_path):
    """Regression: two runs on one --out died on a shared temporary file name. Both finish now, every cell is
    computed once (a lock per cell), and the numbers are one run's."""
    cmd = [sys.executable, "-m", "simulations", "run", "meta_structure", "--seeds", "3", "--out", str(tmp_path / "x")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    computed = [int(re.search(r"\((\d+) computed", o[0]).group(1)) for o in outs]
    assert sum(computed) == 3, outs  # each of the three cells once
    one = runner.run_experiment("meta_structure", tmp_path / "one", seeds=3, progress=False)
    assert record(tmp_path / "x", "meta_structure")["results"] == one["results"]
    assert not list((tmp_path / "x").glob(".*.png"))  # no temporary figure left behind


@pytest.mark.slow  # a fresh process compiles everything again (~30 s of CPU)
def test_killed_run_resumes_without_recomputing(tmp_path):
    """Kill a run mid-way (SIGKILL), resume it: finished cells are reused, the numbers are the same."""
    whole = runner.run_experiment("rcl_sampling", tmp_path / "whole", progress=False)  # uninterrupted
    tmp_path = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "simulations", "run", "rcl_sampling", "--out", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list(tmp_path.glob("store/*/*.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(tmp_path.glob("store/*/*.json")))
    assert 2 <= done < 6, "the run should have been killed part-way"
    rec = runner.run_experiment("rcl_sampling", tmp_path, progress=False)
    assert (rec["computed"], rec["reused"]) == (6 - done, done)
    assert rec["results"] == whole["results"]  # same as the uninterrupted run
    again = runner.run_experiment("rcl_sampling", tmp_path, progress=False)
    assert (again["computed"], again["reused"]) == (0, 6)
    forced = runner.run_experiment("rcl_sampling", tmp_path, progress=False, force=True,
                                    config={"datasets": ["nuclei"], "ratios": [0.1]})
    assert (forced["computed"], forced["reused"]) == (1, 0)


def test_seeds_flag_adds_cells(tmp_path):
    small = {"settings": [["sample", 0.1]]}
    one = runner.run_experiment("decision_boundary", tmp_path, progress=False, config=small)
    two = runner.run_experiment("decision_boundary", tmp_path, progress=False, config=small, seeds=2)
    assert (one["computed"], two["computed"], two["reused"]) == (2, 2, 2)  # clean is always there
    assert two["config"]["seeds"] == 2 and two["results"]["settings"]["sample p=0.1"]["mean_fg"]["n"] == 2


def test_every_cell_is_versioned_by_the_runner(tmp_path, monkeypatch):
    """Regression: theory_curves' cells carried no version, so a change to its computation reused stale
    results. The runner now versions every cell by the code that computes it; bumping that version is a miss."""
    from simulations import theory_curves

    for name in runner.NAMES:
        mod = runner.experiment(name)
        for spec in mod.cells(runner.config_of(name, "quick")):
            assert "v" not in spec, f"{name} writes a version by hand"
            assert runner.versioned(spec)["v"] == runner.cell_version(spec["kind"])
    small = {"draws": 2, "widths": [6]}
    first = runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    again = runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert (first["computed"], again["computed"]) == (1, 0)
    monkeypatch.setattr(theory_curves, "VERSION", theory_curves.VERSION + 1)
    bumped = runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert bumped["computed"] == 1 and bumped["cells"] != first["cells"]
    assert bumped["results"] == first["results"]  # same code: same numbers, under a new key
