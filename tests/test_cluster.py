"""Cells on Dask distributed (simulations.cluster): same numbers as in-process, faults, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

distributed = pytest.importorskip("distributed", reason="the cluster extra: pip install 'metastructure[cluster]'")

from metastructure import runtime  # noqa: E402
from simulations import __main__ as cli  # noqa: E402
from simulations import cluster, runner  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins workers to cores (Linux)")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of the subprocesses: one compilation cache for the module (so only the first run compiles)."""
    return {**os.environ, runtime.CACHE_ENV: str(tmp_path_factory.mktemp("jax-cache"))}


def cli_run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "simulations", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, env):
    """rcl_sampling, quick profile, in one process on one core: the numbers a one-core worker must give."""
    out = tmp_path_factory.mktemp("in_process")
    probe = ("import os, sys, runpy; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core\n"
             "sys.argv = ['simulations', 'run', 'rcl_sampling', '--out', sys.argv[1]]\n"
             "try:\n    runpy.run_module('simulations', run_name='__main__')\n"
             "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
             "print('distributed' in sys.modules, 'dask' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe, str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "False False"  # the in-process path imports no Dask
    return json.loads((out / "rcl_sampling.json").read_text())


def test_workers_give_the_in_process_numbers_bitwise(in_process, env, tmp_path):
    proc = cli_run(["run", "rcl_sampling", "--workers", "2", "--out", str(tmp_path)], env)
    rec = json.loads((tmp_path / "rcl_sampling.json").read_text())
    assert rec["cells"] == in_process["cells"]
    assert rec["results"] == in_process["results"]  # bitwise: every float of the summary
    assert "6 computed" in proc.stdout and (tmp_path / "rcl_sampling.png").stat().st_size > 10_000
    stored = [json.loads(p.read_text()) for p in (tmp_path / "store" / "train").glob("*.json")]
    assert len(stored) == 6 and all(0 <= r["compile_seconds"] <= r["seconds"] for r in stored)
    again = cli_run(["run", "rcl_sampling", "--workers", "2", "--out", str(tmp_path)], env)
    assert "0 computed, 6 from the store" in again.stdout  # resumes from the store: nothing submitted


KILL = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    from simulations import cluster, runner

    def kill_one(client, killed):
        while True:  # a worker that has a cell, some way into it (the first cells compile for seconds)
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                break
            time.sleep(0.05)
        time.sleep(1.5)
        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    with cluster.open_client(2) as client:
        killed = []
        t = threading.Thread(target=kill_one, args=(client, killed), daemon=True)
        t.start()
        rec = runner.run_experiments(["rcl_sampling"], sys.argv[1], client=client, progress=False)["rcl_sampling"]
        t.join(60)
        pids = set(client.run(os.getpid).values())
    print(json.dumps({"killed": killed, "pids": sorted(pids), "computed": rec["computed"]}))
""")


def test_a_killed_worker_costs_its_cell_and_changes_no_number(in_process, env, tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILL, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(said["killed"]) == 1 and said["killed"][0] not in said["pids"]  # a new worker took its place
    assert len(said["pids"]) == 2 and said["computed"] == 6
    rec = json.loads((tmp_path / "rcl_sampling.json").read_text())
    assert rec["results"] == in_process["results"]


@pytest.fixture(scope="module")
def client(env):
    old = os.environ.get(runtime.CACHE_ENV)
    os.environ[runtime.CACHE_ENV] = env[runtime.CACHE_ENV]  # the spawned workers inherit it
    try:
        with cluster.open_client(2) as c:
            yield c
    finally:
        if old is None:
            os.environ.pop(runtime.CACHE_ENV)
        else:
            os.environ[runtime.CACHE_ENV] = old


def test_workers_are_pinned_and_share_one_cache(client, env):
    info = cluster.worker_info(client)
    assert sorted(tuple(i["cores"]) for i in info.values()) == [tuple(c) for c in cluster.core_sets(2, 1)]
    assert {i["cache"] for i in info.values()} == {env[runtime.CACHE_ENV]}


def test_a_failing_cell_is_reported_with_its_spec_and_the_others_go_on(client, tmp_path):
    config = {"rcl_sampling": {"datasets": ["er", "no_such_data"], "ratios": [1.0, 0.1]},
              "meta_structure": {"seeds": 1}}
    with pytest.raises(runner.CellsFailed) as err:
        runner.run_experiments(["rcl_sampling", "meta_structure"], tmp_path, client=client, config=config,
                               progress=False)
    failures = err.value.failures
    assert len(failures) == 2 and all(f["spec"]["data"]["name"] == "no_such_data" for f in failures)
    assert all("KeyError" in f["error"] and "no_such_data" in str(f) for f in failures)
    assert err.value.skipped == ["rcl_sampling"]  # it reads the failed cells: not written
    assert (tmp_path / "meta_structure.json").exists()  # the other experiment was
    store = runner.open_store(tmp_path)
    er = [s for s in runner.experiment("rcl_sampling").cells(
        {**runner.config_of("rcl_sampling", "quick"), **config["rcl_sampling"]}) if s["data"]["name"] == "er"]
    assert len(er) == 2 and all(store.problem(s) is None for s in er)


def test_shared_cells_are_computed_once_and_the_client_argument_works(client, tmp_path):
    recs = runner.run_experiments(["pcl"], tmp_path, client=client, progress=False)
    assert list(recs) == ["rcl_sampling", "pcl"]  # the requirement first
    shared = set(recs["rcl_sampling"]["cells"]) & set(recs["pcl"]["cells"])
    assert shared  # the clean network of rcl_sampling is pcl's
    total = set(recs["rcl_sampling"]["cells"]) | set(recs["pcl"]["cells"])
    assert recs["rcl_sampling"]["computed"] + recs["pcl"]["computed"] == len(total)  # each counted once
    assert recs["pcl"]["reused"] == len(recs["pcl"]["cells"]) - recs["pcl"]["computed"] >= len(shared)
    assert len(list((tmp_path / "store" / "train").glob("*.json"))) == len(total)
    one = runner.run_experiment("rcl_sampling", tmp_path, client=client, progress=False)
    assert one["computed"] == 0 and one["results"] == recs["rcl_sampling"]["results"]


def test_core_sets():
    assert cluster.core_sets(2, 1, [0, 1]) == [[0], [1]]
    assert cluster.core_sets(3, 2, [4, 5, 6, 7]) == [[4, 5], [6, 7], [4, 5]]  # wraps around: shares cores
    with pytest.raises(ValueError, match="threads_per_worker=3"):
        cluster.core_sets(1, 3, [0, 1])
    for bad in ({"workers": 0}, {"workers": 2, "scheduler": "tcp://x:1"}, {}, {"workers": 1.5},
                {"workers": 1, "threads_per_worker": 0}):
        with pytest.raises(ValueError):
            with cluster.open_client(**bad):
                pass


def test_cli_parallel_options(capsys, tmp_path):
    for bad in (["--workers", "0"], ["--threads-per-worker", "0", "--workers", "1"],
                ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
                ["--scheduler", "tcp://127.0.0.1:1", "--threads-per-worker", "2"]):
        with pytest.raises(SystemExit):
            cli.main(["run", "meta_structure", "--out", str(tmp_path), *bad])
    assert "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["all", "--help"])
    out = capsys.readouterr().out
    assert "--workers N" in out and "--scheduler ADDRESS" in out and "--threads-per-worker T" in out


def test_cli_scheduler_errors_are_one_line_and_an_unreachable_one_fails_fast(capsys, tmp_path, monkeypatch):
    """Regression (issue 31): --scheduler not-an-address gave a traceback (ValueError: missing port number), and
    tcp://127.0.0.1:1 one after 30 s (OSError: Timed out trying to connect)."""
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 0.5)  # the default is read at each call
    for address, want in [("not-an-address", "scheduler must be a Dask scheduler address such as tcp://host:8786, "
                                             "got 'not-an-address' (missing port number"),
                          ("foo://h:1", "unknown address scheme 'foo'"),
                          ("tcp://127.0.0.1:1", "no Dask scheduler answered at tcp://127.0.0.1:1 within 0.5 s")]:
        t0 = time.perf_counter()
        assert cli.main(["run", "meta_structure", "--out", str(tmp_path), "--scheduler", address]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --scheduler: ") and len(err.splitlines()) == 1 and want in err, err
        assert time.perf_counter() - t0 < 10, address
    with pytest.raises(ValueError, match="connect_timeout must be a positive number"):
        with cluster.open_client(scheduler="tcp://127.0.0.1:1", connect_timeout=0):
            pass
    # a user's own Dask setting wins over the module's default (review: 5 s overrode it for slow tunnels)
    import dask

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 60.0)
    with dask.config.set({"distributed.comm.timeouts.connect": "0.6s"}):
        t0 = time.perf_counter()
        with pytest.raises(OSError, match=r"within 0.6 s"):
            with cluster.open_client(scheduler="tcp://127.0.0.1:1"):
                pass
        assert time.perf_counter() - t0 < 10
    with pytest.raises(TypeError, match="scheduler must be an address string"):
        with cluster.open_client(scheduler=8786):
            pass


@pytest.mark.slow  # starts a cluster in a fresh process and waits for cells (~40 s)
def test_ctrl_c_with_workers_stops_cleanly_and_keeps_what_finished(env, tmp_path, takes_ctrl_c):
    """Ctrl-C in a terminal reaches the driver and its local workers (one process group): one line, exit
    130, no worker traceback, no worker left running, the finished cells kept and usable."""
    import signal
    import time

    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "simulations", "run", "meta_structure", "--seeds", "40",
                             "--workers", "2", "--out", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while len(list(tmp_path.glob("store/*/*.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: finished cells are kept in")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    store = runner.open_store(tmp_path)
    kept = [s for s in runner.experiment("meta_structure").cells(runner.config_of("meta_structure", "quick", 40))
            if store.has(s)]
    assert 2 <= len(kept) < 40 and all(store.problem(s) is None for s in kept)
