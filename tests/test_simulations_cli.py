"""simulations.__main__: errors as one line, Ctrl-C, list, missing real data, and the README/CI command."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metastructure import data
from simulations import __main__ as cli
from simulations import runner

ROOT = Path(__file__).resolve().parent.parent


def test_cli_errors_are_one_line(tmp_path, capsys):
    """Regression: an unwritable --out was found after the first cell trained, and plot without its JSON gave
    a traceback."""
    (tmp_path / "file").write_text("")
    for argv in (["run", "pcl", "--out", str(tmp_path / "file")], ["plot", "pcl", "--out", str(tmp_path)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "run `python -m simulations run pcl" in err


def test_report_errors_are_one_line(tmp_path, capsys):
    """Regression (issue 31): `report` on a truncated record gave a JSONDecodeError traceback (plot said it in one
    line), on `{}` a KeyError 'profile', and with --doc under a regular file a FileExistsError."""
    out = tmp_path / "out"
    out.mkdir()
    good = json.loads((ROOT / "figures" / "pcl.json").read_text())
    edited = json.loads(json.dumps(good))
    for rows in (v for k, v in edited["results"].items() if not k.startswith("_")):
        del rows["CL clean"]  # a row the section and the figure read
    cases = {"truncated": (json.dumps(good)[:200], "out/pcl.json is not valid JSON"),
             "empty object": ("{}", "out/pcl.json is not an experiment's record (no 'experiment', 'profile', "
                                    "'config', 'results')"),
             "another's": (json.dumps({**good, "experiment": "igtt"}), "holds the record of 'igtt', not 'pcl'"),
             "edited": (json.dumps(edited), "out/pcl.json lacks what its")}
    for how, (text, want) in cases.items():
        (out / "pcl.json").write_text(text)
        for command in (["report"], ["plot", "pcl"]):
            assert cli.main([*command, "--out", str(out)]) == 2, (how, command)
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and len(err.splitlines()) == 1 and want in err, (how, command, err)
            assert "run `python -m simulations run pcl --out" in err
    (out / "pcl.json").unlink()
    (tmp_path / "file").write_text("")
    assert cli.main(["report", "--out", str(out), "--doc", str(tmp_path / "file" / "sub" / "README.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --doc: cannot write {tmp_path}/file/sub/README.md: {tmp_path}/file is a file, not a folder"
    assert cli.main(["report", "--out", str(out), "--doc", str(tmp_path / "doc" / "README.md")]) == 0
    assert "`pcl` has not been run" in (tmp_path / "doc" / "README.md").read_text()


@pytest.mark.slow  # a fresh process compiles again
def test_ctrl_c_stops_cleanly_and_keeps_what_finished(tmp_path, takes_ctrl_c):
    """Regression: Ctrl-C gave a traceback. Now one line says how to resume, the exit status is 130 and the
    finished cells stay in the store."""
    out = tmp_path / "x"
    proc = subprocess.Popen([sys.executable, "-m", "simulations", "run", "meta_structure", "--seeds", "40",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.glob("store/*/*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: finished cells are kept in") and "Traceback" not in err
    store = runner.open_store(out)
    kept = [s for s in runner.experiment("meta_structure").cells(runner.config_of("meta_structure", "quick", 40))
            if store.has(s)]
    assert 1 <= len(kept) < 40 and all(store.problem(s) is None for s in kept)


# ------------------------------------------------------------------ CLI and README
def test_cli_list_and_errors(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in runner.NAMES)
    proc = subprocess.run([sys.executable, "-m", "simulations", "run", "nope"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and "unknown experiment" in proc.stderr
    with pytest.raises(SystemExit):
        cli.main(["run", "pcl", "--seeds", "0"])


def test_missing_real_data_is_said_not_crashed(monkeypatch, capsys):
    monkeypatch.setattr(data, "real_available", lambda: False)
    assert "stardist" in runner.unavailable("real_nuclei") and runner.unavailable("pcl") is None
    with pytest.raises(SystemExit):  # `run real_nuclei` stops with the reason; `all` skips it and says so
        cli.main(["run", "real_nuclei"])
    assert "stardist" in capsys.readouterr().err


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.DOTALL)
    commands = [line.strip() for b in blocks[:2] for line in b.strip().splitlines()]
    assert len(commands) == 2, "README starts with exactly two set-up commands"
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    # CI runs the README's test command verbatim, ending in an explicit exit (set -e does not stop inside an &&
    # list): a failing suite fails CI
    assert commands[1] + " || exit $?" in ci
