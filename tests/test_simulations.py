"""The simulations end to end (quick profile), the results store and resume, and the README/CI contract."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as plt_image

from metastructure import data, metrics, planner
from simulations import __main__ as cli
from simulations import runner
from simulations.store import Store, cell_key

ROOT = Path(__file__).resolve().parent.parent
# the package's measured defaults as this module found them, before any run below (quick runs must not touch them)
CONSTANTS_BEFORE = (planner.CONSTANTS_FILE.stat().st_mtime_ns, planner.CONSTANTS_FILE.read_bytes())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Every experiment, quick profile, one seed, into a fresh folder (the README's main command)."""
    out = tmp_path_factory.mktemp("quick")
    assert cli.main(["all", "--out", str(out)]) == 0
    return out


def record(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.parametrize("name", runner.NAMES)
def test_every_experiment_writes_its_figure_and_numbers(quick, name, monkeypatch):
    if runner.unavailable(name):
        pytest.skip("the packaged real nuclei (pip install --no-deps stardist==0.9.2, tifffile) are not installed")
    png = quick / f"{name}.png"
    rec = record(quick, name)
    assert rec["experiment"] == name and rec["profile"] == "quick" and "jax" in rec["versions"]
    assert rec["config"].get("seeds", 1) == QUICK_SEEDS.get(name, 1)
    store = runner.open_store(quick)
    for spec in runner.experiment(name).cells(rec["config"]):  # every cell is a finished, versioned file
        assert store.has(spec) and store.load(spec)["spec"]["v"] == runner.cell_version(spec["kind"])
        assert store.key(spec) in rec["cells"]
    image = plt_image.imread(png)  # a real picture: decodes, is large, is not blank
    assert image.shape[0] > 300 and image.shape[1] > 500 and image[..., :3].std() > 0.05
    # redrawn from the JSON (and store) alone, through the one figure helper: capture what it draws
    drawn = []
    mod = runner.experiment(name)
    save = mod.save_figure  # every plot ends in the one figure helper
    monkeypatch.setattr(mod, "save_figure", lambda fig, path, title, **kw: (drawn.append((fig, title)),
                                                                             save(fig, path, title, **kw)))
    png.unlink()
    assert cli.main(["plot", name, "--out", str(quick)]) == 0
    assert png.stat().st_size > 10_000 and len(drawn) == 1
    fig, title = drawn[0]
    axes = [a for a in fig.axes if a.has_data()]
    assert axes and (title or all(a.get_title() for a in axes))
    for a in axes:  # whatever is drawn is finite numbers (NaN gaps allowed), with labelled axes where plotted
        ys = [ln.get_ydata() for ln in a.get_lines()]
        assert all(np.isfinite(np.asarray(y, float)).any() for y in ys if len(y))
    if name in DRAWN:  # and is the record's numbers
        DRAWN[name](fig, rec["results"])


def _line(ax, label_start):
    lines = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith(label_start)]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    return np.asarray(lines[0].get_ydata(), float)


def _drawn_rcl_sampling(fig, res):
    for ax, (name, r) in zip(fig.axes, res.items(), strict=False):
        assert ax.get_title() == name
        np.testing.assert_allclose(_line(ax, "theory at t*"), r["curve"])


def _drawn_rcl_flipping(fig, res):
    np.testing.assert_allclose(_line(fig.axes[0], "theory at t*"), res["curve"])


def _drawn_theory_curves(fig, res):
    for w, r in res["sampling"].items():
        np.testing.assert_allclose(_line(fig.axes[0], f"theory, stripe w = {w} px"), r["curve"])
    np.testing.assert_allclose(_line(fig.axes[3], "theory, M = 4"), res["multiclass"]["curve"])


def _drawn_random_labels(fig, res):
    np.testing.assert_allclose(_line(fig.axes[2], "H(r)"), [res["entropy"]] * 2)


DRAWN = {"rcl_sampling": _drawn_rcl_sampling, "rcl_flipping": _drawn_rcl_flipping,
         "theory_curves": _drawn_theory_curves, "random_labels": _drawn_random_labels}
QUICK_SEEDS = {"feature_maps": 2}  # its clean reference must be another seed's network


def test_meta_structure_numbers(quick):
    res = record(quick, "meta_structure")["results"]
    rows = res["label_types"]
    assert rows["clean"]["dice_vs_clean_partition"] == 1.0
    assert rows["sample 10%"]["t_star"] == 0.05
    assert rows["random 30%"]["t_star"] is None  # f + b = 1: no information
    assert rows["flip f=0.3 b=0.2"]["dice_vs_clean_partition"] > rows["skeleton"]["dice_vs_clean_partition"]
    assert res["lemma1_max_abs_error"]["mean"] < 0.03


def test_theory_curves_numbers(quick):
    res = record(quick, "theory_curves")["results"]
    fl = res["flipping"]
    assert abs(fl["curve_rate"][int(np.argmin(fl["curve"]))] - 0.5) < 0.02  # the collapse at f + b = 1
    assert res["pcl"]["stripe_dilate_grid"] == pytest.approx(res["pcl"]["stripe_dilate_theory"])


def test_decision_boundary_levels_and_distances(quick):
    res = record(quick, "decision_boundary")["results"]
    s = res["settings"]["sample p=0.1"]
    assert s["predicted_fg"] == pytest.approx(0.1) and s["predicted_bg"] == 0
    assert abs(s["mean_fg"]["mean"] - 0.1) < 0.06 and s["mean_bg"]["mean"] < 0.05
    assert len(s["to_clean"]) == len(res["steps"]) and all(np.isfinite(x["mean"]) for x in s["to_clean"])


def test_rcl_sampling_fixed_half_fails_where_t_star_does_not(quick):
    res = record(quick, "rcl_sampling")["results"]
    for r in res.values():
        low = r["by_ratio"]["0.01"]
        assert low["fixed_0.5"]["mean"] < 0.1 < low["t_star"]["mean"]
        assert r["fit"]["n_eff"] > 0 and len(r["curve"]) == len(r["curve_ratio"])


def test_rcl_flipping_has_no_t_star_at_the_collapse(quick):
    res = record(quick, "rcl_flipping")["results"]
    at_half = [r for r in res["symmetric"] if r["f"] == 0.5][0]
    assert at_half["t_star"]["n"] == 0  # f + b = 1: no matched threshold exists
    assert min(res["curve"]) < 0.7 * max(res["curve"])


def test_pcl_erosion_hurts_thin_structures(quick):
    er = record(quick, "pcl")["results"]["er"]
    assert er["PCL erode r=2"]["t_star"]["mean"] < er["CL clean"]["t_star"]["mean"] - 0.2
    assert er["PCL erode r=2"]["label_dice"] < er["PCL erode r=1"]["label_dice"] < 1


def test_multiclass_and_ntm_information(quick):
    rows = record(quick, "multiclass")["results"]["rows"]
    assert rows["symmetric 0.9"]["miou_corrected"]["mean"] > rows["symmetric 0.9"]["miou"]["mean"]
    res = record(quick, "ntm_information")["results"]
    pts = {p["name"]: p for p in res["points"]}
    # one point per distinct (data, label type) of the experiments it reads, shared cells counted once
    want = set()
    for req in ("rcl_sampling", "rcl_flipping", "pcl"):
        for spec in runner.experiment(req).cells(record(quick, req)["config"]):
            lab = spec["labels"]
            want.add(f"{spec['data']['name']} {' '.join([lab['kind'], *(f'{v:g}' for v in lab['params'])])}")
    assert set(pts) == want and len(res["points"]) == len(want)
    # each point's T is what its cells recorded: closed forms for RCL / RL, estimated for PCL
    np.testing.assert_allclose(pts["nuclei sample 0.1"]["transition"], [[1, 0], [0.9, 0.1]])
    np.testing.assert_allclose(pts["nuclei flip 0.3 0.3"]["transition"], [[0.7, 0.3], [0.3, 0.7]])
    dil = np.asarray(pts["er dilate 1"]["transition"])
    assert dil[1, 1] == 1.0 and 0 < dil[0, 1] < 0.5 and pts["er dilate 1"]["det"] == pytest.approx(1 - dil[0, 1])
    assert pts["nuclei random 0.3"]["numerical_rank"] == 1 and pts["nuclei flip 0.5 0.5"]["numerical_rank"] == 1
    assert all(p["numerical_rank"] == 2 for p in res["points"] if p["kind"] in ("sample", "dilate", "erode"))
    assert all(-1 <= c["spearman"] <= 1 for c in res["spearman"].values())


def test_feature_maps_and_memorisation(quick):
    rec = record(quick, "feature_maps")
    fm = rec["results"]["types"]
    # the clean reference is the other seed's network: a floor below 1, not a network compared with itself
    assert all(c["mean"] < 0.99 for c in fm["clean"]["cka"])
    assert fm["random 0.3"]["mean_cka"]["mean"] < fm["clean"]["mean_cka"]["mean"] - 0.1
    # the summary's CKA equals the HSIC form computed here from the stored features (another formula)
    store = runner.open_store(quick)
    cells = {(c["labels"]["kind"], c["seed"]): c for c in runner.experiment("feature_maps").cells(rec["config"])}
    feats = {k: store.arrays(c)["feat_enc0"].astype(float) for k, c in cells.items()}

    def hsic_cka(a, b):
        h = np.eye(a.shape[0]) - 1 / a.shape[0]
        ka, kb = h @ a @ a.T @ h, h @ b @ b.T @ h
        return np.sum(ka * kb) / np.sqrt(np.sum(ka * ka) * np.sum(kb * kb))

    per_seed = [hsic_cka(feats[("random", s)], feats[("clean", (s + 1) % 2)]) for s in range(2)]
    first = rec["results"]["layers"].index("enc0")
    assert fm["random 0.3"]["cka"][first]["mean"] == pytest.approx(np.mean(per_seed), rel=1e-6)
    assert metrics.linear_cka(feats[("random", 0)], feats[("clean", 1)]) == pytest.approx(per_seed[0], rel=1e-6)
    mem = record(quick, "memorisation")["results"]
    assert mem["fitted_k"] > 0 and mem["rows"]["fresh n=4"]["memorisation_index"] is None


def test_igtt_protocols_attribution_and_bootstrap(quick):
    from simulations import igtt

    rec = record(quick, "igtt")
    res = rec["results"]["datasets"]["er_uneven"]
    expected = set(igtt.BASELINES) | set(igtt.CORE) | set(igtt.SWITCHES) | {"supervised", "igtt_ems_recommended_no_tta"}
    assert set(res["methods"]) == expected == set(res["paper_protocol"])
    for m in expected:
        assert 0 <= res["methods"][m]["dice"]["mean"] <= 1 and 0 <= res["paper_protocol"][m]["dice"]["mean"] <= 1
    for m in ("otsu", "adaptive", "kmeans"):  # binary masks: one score under both protocols
        assert res["methods"][m]["dice"] == res["paper_protocol"][m]["dice"]
    # the oracle threshold on the truth can only do better than the method's own masks... for a threshold
    assert res["paper_protocol"]["oracle_intensity"]["dice"]["mean"] >= res["methods"]["otsu"]["dice"]["mean"] - 1e-6
    assert res["recommended_wins"]["adaptive"] in range(res["seeds"] + 1)
    if not res["methods"]["igtt_ems"]["diverged"]:  # SGD 0.05 on DMI can diverge at this tiny width: then recorded
        assert res["methods"]["igtt_ems"]["monitored_rounds"] == [2, 4]  # every monitor_every rounds and the last
    boot = res["bootstrap"]["configs"]
    assert set(boot) == {"he 4-8", "bn_normal 4-8"}  # the full profile adds twice the width
    assert all(0 <= v["auc_gap"]["mean"] <= 0.5 for v in boot.values())
    assert igtt.outcome(res) in ("holds", "holds only under the paper's protocol", "fails")
    assert res["methods"]["igtt_ems_recommended"]["ems_source"] == ["skeleton"]  # thin tubules
    # stage 1: both configurations from EMS of the truth and of each threshold, every round of the
    # recommended one monitored, the start's Dice first (the truth's is 1)
    basin = res["basin"]
    assert set(basin) == set(igtt.BASIN_CONFIGS) and all(set(v) == set(igtt.BASIN_STARTS) for v in basin.values())
    rec = basin["recommended"]
    assert rec["truth"]["start_dice"] == pytest.approx(1.0) and rec["otsu"]["rounds"] == [1, 2]
    assert 0 < rec["otsu"]["start_dice"] < 1 and 0 < rec["adaptive"]["start_dice"] < 1
    assert all(0 <= d <= 1 for v in basin.values() for row in v.values() for d in row["dice_selected"])


# ------------------------------------------------------------------ store and resume
def test_planner_validation_record(quick):
    """The planner's quick validation: a calibration, one row per label type scored at the planner's threshold."""
    if runner.unavailable("planner"):
        pytest.skip("needs the packaged real nuclei")
    res = record(quick, "planner")["results"]
    cal = res["calibration"]
    assert cal["source"] == "calibrated" and 1 <= cal["n_eff"] <= 1e6 and 0 < cal["clean_dice"] <= 1
    rows = res["rows"]
    assert rows["sample 0.1"]["threshold"] == 0.05 and rows["dilate 1"]["threshold"] == 0.5
    assert rows["flip 0.3 0.3"]["threshold"] == 0.5 and not rows["flip 0.3 0.3"]["inverted"]
    from metastructure.noise import LabelNoise

    test = data.real_nuclei(tile=res["tile_size"])["test"]
    c = planner.Calibration.from_dict(cal)
    for r in rows.values():  # the record's predictions are the planner's, for the test masks
        assert r["predicted"] == pytest.approx(planner.predict(test.masks, LabelNoise(*r["label"]), calibration=c).dice)
        assert r["within"] == (abs(r["measured"]["mean"] - r["predicted"]) <= 0.05)
    assert "product" in rows["dilate 1"] and rows["sample 0.1"]["calibration_type"]
    assert res["all_within"] == all(r["within"] for r in rows.values() if r["validation"])


def test_only_full_runs_publish_the_planners_defaults(quick, tmp_path, monkeypatch):
    """Every quick run above left the package's measured defaults alone; the runner publishes (the experiment's
    ``publish``, after writing its record) only at the full profile with that profile's own configuration."""
    assert (planner.CONSTANTS_FILE.stat().st_mtime_ns, planner.CONSTANTS_FILE.read_bytes()) == CONSTANTS_BEFORE
    for name in ("planner", "memorisation"):
        assert runner.publishes(name, "full", runner.config_of(name, "full"))
        assert not runner.publishes(name, "quick", runner.config_of(name, "quick"))
        assert not runner.publishes(name, "full", runner.config_of(name, "full", seeds=1))
    assert not runner.publishes("pcl", "full", runner.config_of("pcl", "full"))  # no publish: nothing to write
    from simulations import theory_curves

    calls = []
    monkeypatch.setattr(theory_curves, "publish", calls.append, raising=False)
    small = {"draws": 2, "widths": [6]}
    runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert calls == []  # quick: not published
    monkeypatch.setattr(runner, "publishes", lambda name, profile, config: True)
    rec = runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert len(calls) == 1 and calls[0] == rec["results"]


def test_store_keys_and_atomic_cells(tmp_path):
    a = {"kind": "t", "x": 1, "y": [1, 2]}
    assert cell_key(a) == cell_key({"y": [1, 2], "x": 1, "kind": "t"})  # order does not matter
    assert cell_key(a) != cell_key({**a, "x": 2})
    st = Store(tmp_path)

    def boom(spec):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        st.compute(a, boom)
    assert not st.has(a) and not list(tmp_path.rglob("*.json"))  # nothing half-finished
    res, computed = st.compute(a, lambda s: ({"v": np.float32(0.5)}, {"m": np.arange(3)}))
    assert computed and res == {"v": 0.5} and st.result(a) == res
    np.testing.assert_array_equal(st.arrays(a)["m"], np.arange(3))
    assert st.compute(a, boom) == (res, False)  # finished: never recomputed
    assert st.compute(a, lambda s: {"v": 1.0}, force=True) == ({"v": 1.0}, True)


def test_the_cell_lock_makes_concurrent_computes_run_once(tmp_path):
    """Two threads (each its own open file, so flock excludes them as it does processes) compute one missing
    cell at the same moment: the function runs once, and both get its result."""
    import threading

    st = Store(tmp_path)
    calls, barrier = [], threading.Barrier(2)

    def slow(spec):
        calls.append(1)
        time.sleep(0.5)  # the other thread reaches the lock meanwhile
        return {"v": 1.0}

    results = []

    def worker():
        barrier.wait()
        results.append(st.compute({"kind": "t", "x": 1}, slow))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(c for _, c in results) == [False, True]
    assert all(r == {"v": 1.0} for r, _ in results)


def test_store_verifies_what_it_reads(tmp_path):
    """Regression: an edited, foreign, truncated or empty cell JSON was used silently or crashed every reader
    with a traceback naming no file; a missing .npz raised KeyError forever. Each is now recomputed, with a
    warning naming the file, and a reader that meets one gets CorruptCell naming it."""
    from simulations.store import CorruptCell

    st = Store(tmp_path)
    calls = []

    def fn(spec):
        calls.append(spec["x"])
        return {"v": spec["x"] / 3}, {"m": np.arange(spec["x"])}

    a, b = {"kind": "t", "x": 4}, {"kind": "t", "x": 5}
    good_a, _ = st.compute(a, fn)
    st.compute(b, fn)
    ja, jb, za = st.path(a), st.path(b), st.path(a, ".npz")
    original = ja.read_bytes()
    edited = json.loads(original)
    edited["result"]["v"] = 0.0
    damage = {
        "not valid JSON": lambda: ja.write_bytes(original[: len(original) // 2]),
        "empty file": lambda: ja.write_bytes(b""),
        "another cell": lambda: ja.write_bytes(jb.read_bytes()),
        "result was changed": lambda: ja.write_text(json.dumps(edited)),
        "is missing": lambda: za.unlink(),
        "npz was changed": lambda: za.write_bytes(st.path(b, ".npz").read_bytes()),
    }
    for why, hurt in damage.items():
        hurt()
        assert st.problem(a) is not None, why
        with pytest.raises(CorruptCell, match=re.escape(ja.name if "npz" not in why and "missing" not in why
                                                        else za.name)):
            st.arrays(a)
        calls.clear()
        with pytest.warns(RuntimeWarning, match=re.escape(ja.name)):
            res, computed = st.compute(a, fn)
        assert computed and calls == [4] and res == good_a, why  # recomputed once, the same numbers
        assert st.problem(a) is None and st.problem(b) is None
        np.testing.assert_array_equal(st.arrays(a)["m"], np.arange(4))
        assert ja.read_bytes() != b""
    with pytest.raises(KeyError, match="not in the store"):
        st.load({"kind": "t", "x": 6})


def test_a_damaged_store_is_repaired_to_an_untouched_runs_numbers(quick, tmp_path):
    """Corrupt, empty, foreign and half-deleted cells of a finished experiment: the run recomputes exactly
    those (a warning names each) and writes the numbers of the untouched run."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(quick / "store", out / "store")
    store = runner.open_store(out)
    specs = runner.experiment("feature_maps").cells(record(quick, "feature_maps")["config"])
    assert store.path(specs[0], ".npz").exists()  # its cells keep arrays (features)
    paths = [store.path(s) for s in specs]
    store.path(specs[0], ".npz").unlink()  # half deleted
    paths[1].write_text(paths[1].read_text()[:100])  # truncated
    paths[2].write_text("")  # empty
    paths[3].write_bytes(paths[4].read_bytes())  # another cell's record under its name
    with pytest.warns(RuntimeWarning) as caught:
        rec = runner.run_experiment("feature_maps", out, progress=False)
    named = " ".join(str(w.message) for w in caught)
    assert all(p.name in named for p in paths[:4]), named
    assert (rec["computed"], rec["reused"]) == (4, len(specs) - 4)
    assert rec["results"] == record(quick, "feature_maps")["results"]


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


def test_cli_errors_are_one_line(tmp_path, capsys):
    """Regression: an unwritable --out was found after the first cell trained, and plot without its JSON gave
    a traceback."""
    (tmp_path / "file").write_text("")
    for argv in (["run", "pcl", "--out", str(tmp_path / "file")], ["plot", "pcl", "--out", str(tmp_path)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "run `python -m simulations run pcl" in err


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


def test_default_output_is_the_current_directory(quick, tmp_path, monkeypatch, capsys):
    """Regression: --out defaulted to a folder beside the installed package."""
    import shutil

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "./figures" in capsys.readouterr().out
    outs = []
    monkeypatch.setattr(runner, "run_experiment", lambda name, out, **kw: outs.append(Path(out)) or
                        {"cells": [], "computed": 0, "reused": 0})
    assert cli.main(["run", "pcl"]) == 0 and cli.main(["run", "pcl", "--profile", "full"]) == 0
    # relative: under the current directory (pcl runs its requirement rcl_sampling first, into the same folder)
    assert outs == [Path("figures/quick")] * 2 + [Path("figures")] * 2
    shutil.copytree(quick, tmp_path / "figures" / "quick", ignore=shutil.ignore_patterns("store"),
                    dirs_exist_ok=True)  # the runs above created the (checked-writable) output folder
    assert cli.main(["report"]) == 0  # the results document, from ./figures/quick/*.json
    doc = (tmp_path / "figures" / "quick" / "README.md").read_text()
    assert "](pcl.png)" in doc and "Profile of the records: quick" in doc


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
    assert commands[1] in ci
