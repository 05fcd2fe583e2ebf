"""Every experiment end to end (quick profile, one run shared by this file's tests): its figure, its record's
numbers, and the tests that need a finished quick run (a damaged store repaired to its numbers, the planner's
defaults left alone by quick runs, the default output folder's report)."""

import itertools
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import record
from matplotlib import image as plt_image
from scipy.stats import spearmanr

from metastructure import data, density, metrics, nets, noise, planner, train
from simulations import __main__ as cli
from simulations import igtt, runner
from theory import curves

ROOT = Path(__file__).resolve().parent.parent


# the package's measured defaults as this module found them, before any run below (quick runs must not touch them)
CONSTANTS_BEFORE = (planner.CONSTANTS_FILE.stat().st_mtime_ns, planner.CONSTANTS_FILE.read_bytes())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Every experiment, quick profile, one seed, into a fresh folder (the README's main command)."""
    out = tmp_path_factory.mktemp("quick")
    assert cli.main(["all", "--out", str(out)]) == 0
    return out


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


def test_random_labels_choose_step_and_threshold_on_validation(quick):
    """Each seed's selected checkpoint is the one with the highest validation Dice (the earliest of ties), and
    its number the test Dice at the validation threshold, both read back from the store's history."""
    rec = record(quick, "random_labels")
    res, store = rec["results"], runner.open_store(quick)
    mod = runner.experiment("random_labels")
    for reg in ("fixed", "fresh"):
        specs = [s for s in mod.cells(rec["config"]) if s["labels"]["regime"] == reg]
        for spec, step, value in zip(specs, res[reg]["selected_step"], res[reg]["selected_values"], strict=True):
            hist = store.result(spec)["history"]
            best = max(range(len(hist)), key=lambda i: (hist[i]["val_dice"], -i))
            assert (hist[best]["step"], hist[best]["dice_val"]) == (step, pytest.approx(value))
    d = res["selected_difference"]
    fixed, fresh = res["fixed"]["selected_values"], res["fresh"]["selected_values"]
    assert d["mean"] == pytest.approx(np.mean(fixed) - np.mean(fresh))


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


def test_scale_law_is_recomputable_from_its_record(quick):
    """Every point's law Dice is clean * pooled_dice(scale_n_eff(N, P, m(P))) on the test masks, with m(P) the
    index averaged over the fit sizes; the fitted (rate, ratio) is a least-squares minimum of its domain;
    each run evaluates at the profile's passes, its first steps those of a shorter run."""
    from simulations import scale
    from theory import curves

    rec = record(quick, "scale")
    cfg, res = rec["config"], rec["results"]
    assert list(res["datasets"]) == ["nuclei"]  # the quick profile's one data set, whose test masks are made here
    for d in res["datasets"].values():
        curve = {s: dict((float(p), m) for p, m in v) for s, v in d["memorisation_curve"].items()}
        test = data.nuclei(jax.random.fold_in(jax.random.key(0), 2), cfg["n_test"], size=32).masks
        masks = planner.Masks(np.asarray(test))
        for p in d["points"]:
            m = 0.0 if p["fresh"] else curve[p["setting"]][min(curve[p["setting"]],
                                                                  key=lambda q: abs(np.log(q / p["passes"])))]
            n_eff = curves.scale_n_eff(p["n"], p["passes"], m, rate=d["law"]["rate"], ratio=d["law"]["ratio"])
            want = p["clean"]["mean"] * masks.pooled_dice(min(float(n_eff), planner.N_EFF_MAX), p["f"], p["b"])[0]
            assert p["predicted"] == pytest.approx(want, abs=1e-9)
        fit = [p for p in d["points"] if p["role"] == "fit" and p["in_domain"]]
        if len(fit) >= 2:
            base = scale.law_dice(masks, fit, curve, d["law"]["rate"], d["law"]["ratio"])
            y = np.array([p["measured"]["mean"] for p in fit])
            for k in (0.7, 1.4):
                r0, c0 = d["law"]["rate"], d["law"]["ratio"]
                for rate, ratio in ((r0 * k, c0), (r0, c0 * k)):
                    worse = scale.law_dice(masks, fit, curve, rate, ratio)
                    assert np.mean((worse - y) ** 2) >= np.mean((base - y) ** 2) - 1e-12
    steps = {c["label"]: (c["opt"]["steps"], c["eval"]["at"]) for c in scale.cells(cfg)}
    assert all(at[-1] == total and all(a % at[0] == 0 for a in at) for total, at in steps.values())
    with pytest.raises(ValueError, match="multiples"):
        scale.cells({**cfg, "eval_passes": [2, 3]})


def test_pcl_erosion_hurts_thin_structures(quick):
    er = record(quick, "pcl")["results"]["er"]
    assert er["PCL erode r=2"]["t_star"]["mean"] < er["CL clean"]["t_star"]["mean"] - 0.2
    assert er["PCL erode r=2"]["label_dice"] < er["PCL erode r=1"]["label_dice"] < 1


def test_multiclass_and_ntm_information(quick):
    rec = record(quick, "multiclass")
    rows = rec["results"]["rows"]
    assert rows["symmetric 0.9"]["miou_corrected"]["mean"] > rows["symmetric 0.9"]["miou"]["mean"]
    # the 19-class block: its training images in the record, void's cells a network of M + 1 outputs scored over
    # the M classes, and each row's prediction (void's plain argmax at p < 1/2: 0; the clean mIoU otherwise)
    many, cfg = rec["results"]["many"], rec["config"]["many"]
    assert rec["results"]["n_train"] == rec["config"]["n_train"] and many["n_train"] == cfg["n_train"]
    assert many["num_classes"] == 19 and many["collapse"] == pytest.approx(18 / 19)
    clean = many["rows"]["clean"]["miou"]["mean"]
    void = many["rows"]["sample_void 0.1"]
    assert void["predicted"] == 0.0 and void["predicted_corrected"] == clean
    assert many["rows"]["sample_classes 0.1"]["predicted"] == clean
    specs = [c for c in runner.experiment("multiclass").cells(rec["config"]) if c["labels"]["kind"] == "sample_void"]
    assert specs and all(c["data"]["num_classes"] == 19 and c["data"]["objects"] == cfg["objects"] for c in specs)
    res = record(quick, "ntm_information")["results"]
    pts = {p["name"]: p for p in res["points"]}
    # one point per distinct (data, label type) of the experiments it reads, shared cells counted once
    want, cells = set(), {}
    store = runner.open_store(quick)
    for req in ("rcl_sampling", "rcl_flipping", "pcl"):
        for spec in runner.experiment(req).cells(record(quick, req)["config"]):
            lab = spec["labels"]
            name = f"{spec['data']['name']} {' '.join([lab['kind'], *(f'{v:g}' for v in lab['params'])])}"
            want.add(name)
            cells.setdefault(name, {})[store.key(spec)] = spec
    assert set(pts) == want and len(res["points"]) == len(want)
    # each point's T is what its cells recorded: closed forms for RCL / RL, estimated for PCL
    np.testing.assert_allclose(pts["nuclei sample 0.1"]["transition"], [[1, 0], [0.9, 0.1]])
    np.testing.assert_allclose(pts["nuclei flip 0.3 0.3"]["transition"], [[0.7, 0.3], [0.3, 0.7]])
    dil = np.asarray(pts["er dilate 1"]["transition"])
    assert dil[1, 1] == 1.0 and 0 < dil[0, 1] < 0.5 and pts["er dilate 1"]["det"] == pytest.approx(1 - dil[0, 1])
    assert pts["nuclei random 0.3"]["numerical_rank"] == 1 and pts["nuclei flip 0.5 0.5"]["numerical_rank"] == 1
    assert all(p["numerical_rank"] == 2 for p in res["points"] if p["kind"] in ("sample", "dilate", "erode"))
    # each point's numbers through another path (catches a wrong determinant, e.g. det Q for det T, a rank with
    # the wrong tolerance, or a point given another point's Dice): det T by its 2x2 closed form; the numerical
    # rank from the singular values' ratio, s_min^2 and s_max^2 being the roots of x^2 - |T|_F^2 x + det^2; the
    # Dice as the mean over the point's stored cells of the oracle Dice in either orientation
    for name, p in pts.items():
        t = np.asarray(p["transition"])
        det = t[0, 0] * t[1, 1] - t[0, 1] * t[1, 0]
        assert p["det"] == pytest.approx(det, abs=1e-12), name
        fro2 = float(np.sum(t**2))
        s2 = np.roots([1.0, -fro2, det**2]).real
        assert p["numerical_rank"] == 1 + int(np.sqrt(max(s2.min(), 0)) > 1e-3 * np.sqrt(s2.max())), name
        finals = [store.result(s)["final"] for s in cells[name].values()]
        assert p["dice"] == pytest.approx(np.mean([max(f["oracle"]["dice"], f["oracle_inverted"]["dice"])
                                                   for f in finals]), abs=1e-12), name
    # the Spearman correlations, recomputed by scipy from the points' (measure, Dice) pairs (catches a measure
    # paired with another point's Dice, or one measure's correlation reported under another's name)
    dice = [p["dice"] for p in res["points"]]
    assert set(res["spearman"]) == {"det", "abs_det", "numerical_rank", "mutual_information", "dmi"}
    for m, c in res["spearman"].items():
        vals = [abs(p["det"]) if m == "abs_det" else p[m] for p in res["points"]]
        assert c["n"] == len(dice) and c["spearman"] == pytest.approx(spearmanr(vals, dice)[0], abs=1e-9), m


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
    # the floor is every pair of clean networks (one pair of two seeds): the clean type's own mean
    res = rec["results"]
    assert res["floor"]["pairs"] == 1 and res["floor"]["mean_cka"]["mean"] == pytest.approx(fm["clean"]["mean_cka"]
                                                                                              ["mean"])
    # the permutation test against an exact enumeration of every split of the RCL and PCL networks
    rcl = [v for r in fm.values() if r["family"] == "RCL" for v in r["scores"]]
    pcl = [v for r in fm.values() if r["family"] == "PCL" for v in r["scores"]]
    pooled, k = np.array(rcl + pcl), len(rcl)
    observed = np.mean(rcl) - np.mean(pcl)
    diffs = [pooled[list(c)].mean() - np.delete(pooled, list(c)).mean()
             for c in itertools.combinations(range(len(pooled)), k)]
    t = res["tests"]["rcl_vs_pcl"]
    assert t["difference"] == pytest.approx(observed) and t["n"] == [len(rcl), len(pcl)]
    assert t["p"] == pytest.approx(np.mean(np.array(diffs) >= observed - 1e-12))
    # probe images: the spec says how many, and no more than the test images
    config = {**rec["config"], "probes": 3}
    assert {c["eval"]["probes"] for c in runner.experiment("feature_maps").cells(config)} == {3}
    with pytest.raises(ValueError, match="probes"):
        runner.experiment("feature_maps").cells({**config, "probes": 99})
    mem = record(quick, "memorisation")["results"]
    assert mem["fitted_k"] > 0 and mem["rows"]["fresh n=4"]["memorisation_index"] is None


def test_igtt_protocols_attribution_and_bootstrap(quick):
    rec = record(quick, "igtt")
    config = rec["config"]
    res = rec["results"]["datasets"]["er_uneven"]
    expected = set(igtt.BASELINES) | set(igtt.CORE) | set(igtt.SWITCHES) | {"supervised", "igtt_ems_recommended_no_tta"}
    assert set(res["methods"]) == expected == set(res["paper_protocol"])
    # each method's two scores are its stored cells' (catches a row filled from another method's cells, or the
    # two protocols swapped)
    store = runner.open_store(quick)
    by_method: dict[str, list[dict]] = {}
    for spec in igtt.cells(config):  # seeds in order
        if spec["data"]["name"] == "er_uneven" and spec["method"] in expected:
            by_method.setdefault(spec["method"], []).append(store.result(spec))
    for m in expected:
        assert res["methods"][m]["dice_by_seed"] == [c["honest"]["dice"] for c in by_method[m]], m
        assert res["paper_protocol"][m]["dice"]["mean"] == pytest.approx(
            np.mean([c["paper"]["dice"] for c in by_method[m]]), abs=1e-12), m
    # supervised: its honest mask is p > 1/2 of the very output the paper protocol thresholds (1/2 lies on
    # best_threshold's grid; a network trained on clean labels is not inverted), so the oracle threshold can only
    # match or beat it (catches a paper protocol whose search misses thresholds, or honest masks from another
    # output). iGTT's honest masks are a selection per image, not one threshold of the pooled output: no bound there.
    for c in by_method["supervised"]:
        assert not c["paper"]["inverted"] and c["paper"]["dice"] >= c["honest"]["dice"] - 1e-6
    for m in ("otsu", "adaptive", "kmeans"):  # binary masks: one score under both protocols
        assert res["methods"][m]["dice"] == res["paper_protocol"][m]["dice"]
    # the oracle threshold on the truth can only do better than the method's own masks... for a threshold
    assert res["paper_protocol"]["oracle_intensity"]["dice"]["mean"] >= res["methods"]["otsu"]["dice"]["mean"] - 1e-6
    # wins against a deterministic baseline: the seeds where the recommended method's stored honest Dice is above
    # the baseline's one value (catches losses counted as wins, or wins against another baseline)
    ours = [c["honest"]["dice"] for c in by_method["igtt_ems_recommended"]]
    assert res["seeds"] == len(ours) == config["dataset_seeds"]["er_uneven"]
    for b in ("otsu", "adaptive", "kmeans"):
        assert res["recommended_wins"][b] == sum(d > by_method[b][0]["honest"]["dice"] for d in ours), b
    # SGD 0.05 on DMI can diverge at this tiny width: then the record counts it (as its stored cells say) and has no
    # monitored rounds; otherwise every monitor_every rounds and the last (checked either way: no skipped branch)
    diverged = sum("diverged" in c for c in by_method["igtt_ems"])
    assert res["methods"]["igtt_ems"]["diverged"] == diverged
    assert res["methods"]["igtt_ems"]["monitored_rounds"] == ([] if diverged else [2, 4])
    boot = res["bootstrap"]["configs"]
    assert set(boot) == {"he 4-8", "bn_normal 4-8"}  # the full profile adds twice the width
    # |AUC - 1/2| over every init seed; an untrained network's output is not constant, so not exactly 1/2
    # (catches fewer seeds summarised, or a constant output)
    assert all(0 < v["auc_gap"]["mean"] < 0.5 and v["auc_gap"]["n"] == config["init_seeds"] for v in boot.values())
    assert res["methods"]["igtt_ems_recommended"]["ems_source"] == ["skeleton"]  # thin tubules
    # stage 1: both configurations from EMS of the truth and of each threshold, every round of the
    # recommended one monitored, the start's Dice first (the truth's is 1)
    basin = res["basin"]
    assert set(basin) == set(igtt.BASIN_CONFIGS) and all(set(v) == set(igtt.BASIN_STARTS) for v in basin.values())
    rec = basin["recommended"]
    assert rec["truth"]["start_dice"] == pytest.approx(1.0) and rec["otsu"]["rounds"] == [1, 2]
    assert 0 < rec["otsu"]["start_dice"] < 1 and 0 < rec["adaptive"]["start_dice"] < 1
    # each basin row is its stored cell: the monitored rounds' selected-mask Dice, the final honest test Dice
    # (catches a start or configuration reported under another's name)
    basin_cells = {(s["config"], s["from"]): store.result(s) for s in igtt.cells(config) if s["method"] == "basin"}
    for which, v in basin.items():
        for start, row in v.items():
            c = basin_cells[(which, start)]
            assert row["test_dice"] == c["honest"]["dice"], (which, start)
            hist = [h for h in c["history"] if "dice_selected" in h]
            assert row["dice_selected"] == [h["dice_selected"] for h in hist] and len(hist) == len(row["rounds"])


def test_igtt_outcome_rule_on_known_numbers():
    """igtt.outcome on hand-made results with known answers: the faithful configuration's honest Dice against the
    best of Otsu and the adaptive threshold ("holds", a tie included); else its paper-protocol Dice ("holds only
    under the paper's protocol"); else "fails". Catches a rule against the worse threshold, or the protocols
    swapped."""

    def result(honest, paper, *, otsu=0.6, adaptive=0.7):
        def d(x):
            return {"dice": {"mean": x}}

        return {"methods": {"otsu": d(otsu), "adaptive": d(adaptive), "kmeans": d(0.99), "igtt_ems": d(honest)},
                "paper_protocol": {"igtt_ems": d(paper), "otsu": d(otsu), "adaptive": d(adaptive)}}

    assert igtt.outcome(result(0.75, 0.5)) == "holds"  # the honest score decides first
    assert igtt.outcome(result(0.7, 0.7)) == "holds"
    assert igtt.outcome(result(0.65, 0.72)) == "holds only under the paper's protocol"  # above Otsu, not adaptive
    assert igtt.outcome(result(0.65, 0.69)) == "fails"
    assert igtt.outcome(result(0.65, 0.72, otsu=0.8, adaptive=0.5)) == "fails"  # Otsu is the best threshold here


def test_igtt_exact_permutation_against_scipy():
    """The attribution's test: every split of the pooled seeds enumerated, as scipy's permutation_test does when
    its resamples cover them all; 3 against 5 seeds have 56 splits, so p is a multiple of 1/56."""
    from scipy import stats as sps

    a, b = [0.61, 0.55, 0.58], [0.47, 0.52, 0.31, 0.49, 0.50]
    t = igtt.exact_permutation(a, b)
    ref = sps.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                               vectorized=True, n_resamples=np.inf, alternative="two-sided")
    assert t["splits"] == 56 and t["n"] == [3, 5]
    assert t["p"] == pytest.approx(ref.pvalue) and t["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert t["p"] < 0.05 and igtt.exact_permutation([0.5, 0.6, 0.4], [0.45, 0.55, 0.5, 0.6, 0.4])["p"] > 0.5
    with pytest.raises(ValueError, match="both groups"):
        igtt.exact_permutation([], b)


def _test_set(dspec: dict) -> data.Dataset:
    """The test images of a dataset spec, made from the spec's own fields (the packaged image cut into tiles, or
    the generator's third split: key fold_in(key(seed), 2))."""
    if dspec["name"] == "real_nuclei":
        return data.real_nuclei(tile=dspec["size"], split=tuple(dspec["split"]))["test"]
    extra = {"width": tuple(dspec["width"])} if "width" in dspec else {}
    gen = getattr(data, dspec["name"])
    return gen(jax.random.fold_in(jax.random.key(dspec["seed"]), 2), dspec["n_test"], size=dspec["size"], **extra)


def test_planner_validation_record(quick):
    """The planner's quick validation: per data set (the real nuclei, then the thin tubules) a calibration, and one
    row per label type scored at the planner's threshold, each against its own stored cells."""
    if runner.unavailable("planner"):
        pytest.skip("needs the packaged real nuclei")
    rec = record(quick, "planner")
    res = rec["results"]
    rows = res["rows"]
    assert rows["sample 0.1"]["threshold"] == 0.05 and rows["dilate 1"]["threshold"] == 0.5
    assert rows["flip 0.3 0.3"]["threshold"] == 0.5 and not rows["flip 0.3 0.3"]["inverted"]
    assert "product" in rows["dilate 1"] and rows["sample 0.1"]["calibration_type"]
    assert [t["data"] for t in res["thin"]] == ["er"] and res["thin"][0]["width"] == [1.0, 3.0]
    from metastructure.noise import LabelNoise

    store = runner.open_store(quick)
    by_data: dict[str, list[dict]] = {}  # the cells of each data set, in the experiment's order (nuclei, then thin)
    for sp in runner.experiment("planner").cells(rec["config"]):
        by_data.setdefault(json.dumps(sp["data"], sort_keys=True), []).append(sp)
    assert len(by_data) == 1 + len(res["thin"])
    for part, (dspec, mine) in zip([res, *res["thin"]], by_data.items(), strict=True):
        test = _test_set(json.loads(dspec))
        assert part["tiles"]["test"] == len(test) and part["tile_size"] == test.images.shape[1]
        cal = part["calibration"]
        assert 1 <= cal["n_eff"] <= 1e6 and 0 < cal["clean_dice"] <= 1
        c = planner.Calibration.from_dict(cal)
        # the stored cells of this set: its calibration cell, and per label type its seeds' final scores
        scores: dict[str, list[dict]] = {}
        for spec in mine:
            if spec["kind"] == "planner" and spec.get("subset"):  # the scale law's check: a calibration on a subset
                mine_key = next(k for k in res["scale"]["keys"] if k["seed"] == spec["seed"])
                assert planner.Calibration.from_dict(store.result(spec)) == planner.Calibration.from_dict(
                    mine_key["calibration"]) and mine_key["calibration"]["n_train"] < part["tiles"]["train"]
            elif spec["kind"] == "planner":
                assert planner.Calibration.from_dict(store.result(spec)) == c  # the record's calibration is the cell's
            else:
                # a validation network is the recipe's: its U-Net (widths, activation) and its training
                kw, o = c.fit_kwargs, spec["opt"]
                assert nets.unet(widths=tuple(spec["net"]), activation=spec.get("activation", "relu")) is kw["model"]
                assert (o["steps"], o["batch"], o["lr"], o["augment"], o.get("crop")) == (
                    kw["steps"], kw["batch_size"], kw["learning_rate"], kw["augment"], kw["crop"])
                lab = spec["labels"]
                scores.setdefault(" ".join([lab["kind"], *(f"{v:g}" for v in lab["params"])]), []).append(
                    store.result(spec)["final"])
        assert set(scores) == set(part["rows"])
        assert part["resolved_test"] == pytest.approx(planner.Masks(test.masks).resolved)
        within = {}
        for label, r in part["rows"].items():
            # predicted: the planner's, for the test masks; measured: the mean over the stored cells of their test
            # Dice at the planner's threshold (each fixed protocol of the cell at that threshold; catches a row
            # measured under another protocol, e.g. the oracle threshold, or another label type's cells)
            # for the networks' training-set size (every training tile), with the interval of one network
            pred = planner.predict(test.masks, LabelNoise(*r["label"]), calibration=c,
                                   n_images=part["n_images"] if c.law is not None else None, check_resolved=False)
            predicted = pred.dice
            assert r["predicted"] == pytest.approx(predicted) and part["n_images"] == part["tiles"]["train"]
            thr = r.get("cell_threshold", r["threshold"])  # a skeleton's cells cut at s/2 of their training masks
            at = [[e["dice"] for k, e in f.items() if k not in ("oracle", "oracle_inverted", "validation")
                   and isinstance(e, dict) and not e.get("invert") and abs(e.get("threshold", -1) - thr) < 1e-6]
                  for f in scores[label]]
            assert all(a and max(a) - min(a) < 1e-12 for a in at), (label, at)
            measured = float(np.mean([a[0] for a in at]))
            assert r["measured"]["n"] == len(at), label
            assert r["measured"]["mean"] == pytest.approx(measured, abs=1e-12), label
            if pred.interval is not None:  # the coverage counts the networks inside the interval
                assert r["interval"] == pytest.approx(list(pred.interval))
                assert r["inside"] == sum(pred.interval[0] <= a[0] <= pred.interval[1] for a in at), label
            within[label] = abs(measured - predicted) <= 0.05  # the target, from the two numbers found above
            assert r["within"] == within[label], label
        assert part["all_within"] == all(within[n] for n, r in part["rows"].items() if r["validation"])
        offered = [r for r in part["rows"].values() if r["validation"] and r["offered"] and r["interval"]]
        assert part["coverage"]["inside"] == sum(r["inside"] for r in offered)
    # the subset calibrations: each key's rows are its calibration's predictions for all the training tiles
    sc = res["scale"]
    nuclei = _test_set(json.loads(next(iter(by_data))))
    assert sc["n_images"] == res["tiles"]["train"] and sc["points"] == sum(
        r["offered"] for k in sc["keys"] for r in k["rows"].values())
    for k in sc["keys"]:
        c = planner.Calibration.from_dict(k["calibration"])
        for r in k["rows"].values():
            pred = planner.predict(nuclei.masks, LabelNoise(*r["label"]), calibration=c, n_images=sc["n_images"],
                                   check_resolved=False)
            assert r["predicted"] == pytest.approx(pred.dice) and r["interval"] == pytest.approx(list(pred.interval))
            assert r["measured"] == res["rows"][" ".join([r["label"][0], *(f"{v:g}" for v in r["label"][1:])])][
                "measured"]  # the same networks as the main validation


def test_only_full_runs_publish_the_planners_defaults(quick, tmp_path, monkeypatch):
    """Every quick run above left the package's measured defaults alone; the runner publishes (the experiment's
    ``publish``, after writing its record) only at the full profile with that profile's own configuration."""
    assert (planner.CONSTANTS_FILE.stat().st_mtime_ns, planner.CONSTANTS_FILE.read_bytes()) == CONSTANTS_BEFORE
    figures = runner.PUBLISHED
    for name in ("planner", "memorisation"):
        assert runner.publishes(name, "full", runner.config_of(name, "full"), figures)
        assert not runner.publishes(name, "full", runner.config_of(name, "full"), tmp_path)  # a scratch folder
        assert not runner.publishes(name, "quick", runner.config_of(name, "quick"), figures)
        assert not runner.publishes(name, "full", runner.config_of(name, "full", seeds=1), figures)
    assert not runner.publishes("pcl", "full", runner.config_of("pcl", "full"), figures)  # nothing to write
    from simulations import theory_curves

    calls = []
    monkeypatch.setattr(theory_curves, "publish", calls.append, raising=False)
    small = {"draws": 2, "widths": [6]}
    runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert calls == []  # quick: not published
    monkeypatch.setattr(runner, "publishes", lambda name, profile, config, out: True)
    rec = runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert len(calls) == 1 and calls[0] == rec["results"]

    def read_only(results):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(theory_curves, "publish", read_only, raising=False)
    with pytest.warns(RuntimeWarning, match="could not write the package's measured defaults"):
        again = runner.run_experiment("theory_curves", tmp_path, progress=False, config=small)
    assert again["results"] == rec["results"]  # the record stands


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


def test_annotation_trains_on_depth_windows_beside_a_whole_stack_control(quick):
    """Every 3-D annotation network but the control trains on windows of ``zcrop`` planes with every row and
    column, for planes / zcrop steps, and the planner's calibration with the same recipe; the control trains the
    same background slices on whole stacks. The record's windows-minus-whole difference is recomputable from the
    stored cells, and each background slice network reports a depth tracking (a correlation) and a memorisation
    index."""
    rec = record(quick, "annotation")
    cfg = rec["config"]
    store = runner.open_store(quick)
    cells = runner.experiment("annotation").cells(cfg)
    z = cfg["zcrop"]
    three_d = [c for c in cells if c.get("dim") == 3]
    whole = [c for c in three_d if "crop" not in c]
    assert whole and {c["labels"] for c in whole} == set(cfg["whole"]["labels"])
    for c in three_d:
        if "crop" in c:
            assert c["crop"] == [z, None, None] and c["opt"]["steps"] == cfg["planes"] // z
        else:
            assert c["label"].endswith("whole stacks") and c["opt"]["steps"] == cfg["opt"]["steps"]
    cal = next(c for c in cells if c.get("role") == "calibration")
    assert cal["recipe"]["crop"] == [z, None, None] and cal["recipe"]["steps"] == cfg["planes"] // z
    for dname, part in rec["results"].items():
        for lab, w in part["whole"]["by_label"].items():
            for rd in ("t_star", "level"):
                windows = [store.result(c)[rd]["dice"] for c in three_d
                           if "crop" in c and c["labels"] == lab and c["data"]["name"] == dname]
                controls = [store.result(c) for c in whole if c["labels"] == lab and c["data"]["name"] == dname]
                assert w["windows_minus_whole"][rd]["difference"] == pytest.approx(
                    np.mean(windows) - np.mean([r[rd]["dice"] for r in controls]))
            for r in controls:
                assert r["memorisation"] is not None and -1 <= r["depth_tracking"] <= 1


def test_annotation_reads_every_network_at_t_star_and_at_its_own_level(quick):
    """Every annotation network is read at its label type's t* (p/2 with background, 1/2 with ignore) and at its
    own level, half its mean output on the training voxels labelled foreground (recomputed here from a retrained
    cell: the stored threshold is metrics.level_threshold of the network's own outputs); the record fits n_eff
    per reading and reports the theory's error per reading."""
    rec = record(quick, "annotation")
    cfg = rec["config"]
    store = runner.open_store(quick)
    exp = runner.experiment("annotation")
    cells = exp.cells(cfg)
    for c in cells:
        if c.get("role") == "calibration":
            continue
        r = store.result(c)
        ln = noise.LabelNoise.parse(c["labels"], ndim=3)
        assert r["t_star"]["threshold"] == pytest.approx(float(ln.matched_threshold().threshold))
        assert r["level"]["threshold"] is None or 0 < r["level"]["threshold"] <= 0.5
    # one background network again, by hand: the level threshold is half its output on the labelled foreground
    c = next(c for c in cells if c.get("dim") == 3 and c.get("crop") and c["labels"].startswith("slices")
             and not c["labels"].endswith("ignore"))
    d = exp.load_data(c["data"])
    ln = noise.LabelNoise.parse(c["labels"], ndim=3)
    y = np.asarray(ln(jax.random.fold_in(jax.random.key(c["seed"]), 1), d["train"].masks), np.int32)
    fit = train.fit(jax.random.key(c["seed"]), d["train"].images, y,
                    model=nets.unet(widths=tuple(c["net"]), ndim=3), batch_size=c["opt"]["batch"], label_type=ln,
                    crop=tuple(c["crop"]), steps=c["opt"]["steps"], learning_rate=c["opt"]["lr"], augment=True,
                    progress=False)
    own = np.asarray(fit.predict(d["train"].images))
    assert store.result(c)["level"]["threshold"] == pytest.approx(own[y == 1].mean() / 2, rel=1e-3)
    for part in rec["results"].values():
        assert set(part["fit"]) == set(part["errors"]) == {"t_star", "level"}
        for lab, row in part["by_label"].items():
            assert set(row["predicted"]) == {"t_star", "level"}
            if lab in part["errors"]["level"]:
                assert part["errors"]["level"][lab] == pytest.approx(
                    abs(row["predicted"]["level"] - row["level"]["mean"]))


def test_annotation_fits_how_locally_networks_pool_on_one_blocks_cell(quick):
    """The pooling's width sigma is fitted at the own level on the locality cell alone (background blocks of
    another side, marked fitted, never scored): the record's miss there is recomputed from the public model
    (the clean Dice times curves.annotated_dice at q = 0 and curves.local_design of the training masks), no
    sigma of the search beside it misses less, and scattered voxels keep a design effect of 1."""
    rec = record(quick, "annotation")
    cfg = rec["config"]
    exp = runner.experiment("annotation")
    loc = f"blocks {cfg['budgets'][0]:g} {cfg['locality']}"
    assert any(c.get("labels") == loc and c.get("dim") == 3 for c in exp.cells(cfg))
    for dname, part in rec["results"].items():
        fit = part["locality"]
        row = part["by_label"][loc]
        assert fit["on"] == loc and row["fitted"] and loc not in part["errors"]["level"]
        d = exp.load_data(next(c["data"] for c in exp.cells(cfg) if c.get("data", {}).get("name") == dname))
        fields = np.asarray(density.fraction_field(d["test"].masks.astype(bool), 1.0, ndim=3), float)
        lab = noise.LabelNoise.parse(loc, ndim=3)
        n = part["fit"]["level"]["background"]["n_eff"]

        def miss(sigma, d=d, fields=fields, lab=lab, n=n, row=row, part=part):
            deff = curves.local_design(d["train"].masks, lab.pair_correlation, sigma, ndim=3)
            pred = part["by_label"]["clean"]["level"]["mean"] * float(
                curves.annotated_dice(fields, n, float(lab.labelled_fraction), overlap=0.0, design=deff)[0])
            return abs(pred - row["level"]["mean"])

        assert fit["error"] == pytest.approx(miss(fit["sigma"]), abs=1e-9)
        for other in (fit["sigma"] - 0.05, fit["sigma"] + 0.05):
            if 0 <= other <= 3.0:  # the search's grid
                assert miss(other) >= fit["error"] - 1e-12
        assert all(v == 1.0 for k, v in fit["design"].items() if k.startswith("scattered"))
        # every other cell is predicted at that sigma: at the own level a background cell drops q, an ignored
        # one keeps it (its level does not follow the labelled share)
        masks = planner.Masks(d["train"].masks, ndim=3)
        for name in (f"slices {cfg['spacings'][0]}", f"slices {cfg['spacings'][0]} ignore"):
            lab = noise.LabelNoise.parse(name, ndim=3)
            ignore = name.endswith("ignore")
            deff = curves.local_design(d["train"].masks, lab.pair_correlation, fit["sigma"], ndim=3)
            want = part["by_label"]["clean"]["level"]["mean"] * float(curves.annotated_dice(
                fields, part["fit"]["level"]["ignore" if ignore else "background"]["n_eff"],
                float(lab.labelled_fraction), unlabelled="ignore" if ignore else "background",
                overlap=masks.overlap(name) if ignore else 0.0, design=deff)[0])
            assert part["by_label"][name]["predicted"]["level"] == pytest.approx(want, abs=1e-9)
