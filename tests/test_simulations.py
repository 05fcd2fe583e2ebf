"""The main command end to end (tiny), and the README/CI contract."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulations import __main__ as cli
from simulations import demo

ROOT = Path(__file__).resolve().parent.parent


def test_demo_end_to_end(tmp_path):
    cfg = dict(demo.CONFIG, size=64, mc_draws=40)
    rec = demo.run(tmp_path, cfg)
    png, js = tmp_path / "demo_density.png", tmp_path / "demo_density.json"
    assert png.stat().st_size > 10_000 and js.stat().st_size > 0
    assert json.loads(js.read_text()) == json.loads(json.dumps(rec))
    rows = rec["label_types"]
    assert rows["clean"]["dice_vs_clean_partition"] == 1.0
    assert rows["sample 10%"]["t_star"] == 0.05
    assert rows["random 30%"]["t_star"] is None  # f + b = 1: no information
    # uniform noise keeps the boundary better than structured noise
    assert rows["flip f=0.3 b=0.2"]["dice_vs_clean_partition"] > rows["skeleton"]["dice_vs_clean_partition"]
    assert rec["lemma1_monte_carlo"]["max_abs_error"] < 0.02


def test_cli_list_and_unknown(capsys):
    assert cli.main(["list"]) == 0
    assert "demo" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "simulations", "run", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown experiment" in proc.stderr


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    commands = [line.strip() for b in blocks[:2] for line in b.strip().splitlines()]
    assert len(commands) == 2, "README starts with exactly two set-up commands"
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert commands[1] in ci


def test_theory_curves_end_to_end(tmp_path):
    from simulations import theory_curves

    cfg = dict(theory_curves.CONFIG, draws=4, widths=[6])
    rec = theory_curves.run(tmp_path, cfg)
    assert (tmp_path / "theory_curves.png").stat().st_size > 10_000
    res = json.loads((tmp_path / "theory_curves.json").read_text())["results"]
    assert res == json.loads(json.dumps(rec["results"]))
    fl = res["flipping"]
    # the collapse: the flip curve's minimum sits at f = b = 0.5
    assert abs(fl["curve_rate"][int(np.argmin(fl["curve"]))] - 0.5) < 0.02
    assert res["pcl"]["stripe_dilate_grid"] == pytest.approx(res["pcl"]["stripe_dilate_theory"])


def test_learning_end_to_end(tmp_path):
    from simulations import learning

    cfg = dict(learning.QUICK, n_train=4, n_test=2, steps=6, small_steps=6, val_every=3)
    rec = learning.run(tmp_path, cfg)
    assert (tmp_path / "learning.png").stat().st_size > 10_000
    runs = json.loads((tmp_path / "learning.json").read_text())["results"]["synthetic"]
    assert [r["name"] for r in runs] == [r["name"] for r in rec["results"]["synthetic"]]
    assert {r["regime"] for r in runs} == {"fresh", "fixed"}
    assert all(r["steps"] == [3, 6] for r in runs)
    assert "dice_tstar" in runs[1]["val"][0] and "dice_tstar" not in runs[0]["val"][0]
    (tmp_path / "learning.png").unlink()
    learning.replot(tmp_path)  # the figure is redrawn from the stored numbers alone
    assert (tmp_path / "learning.png").stat().st_size > 10_000


def test_cli_profile_flag(tmp_path):
    assert cli.main(["run", "demo", "--out", str(tmp_path), "--profile", "quick"]) == 0
    assert (tmp_path / "demo_density.png").exists()
