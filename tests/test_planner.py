"""metastructure.planner: predictions against their oracles, calibration, bad input, the `plan` command."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from conftest import blobs
from metastructure import data, noise, planner, train
from metastructure.noise import LabelNoise
from theory import curves

ROOT = Path(__file__).resolve().parent.parent
CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")


@pytest.fixture(scope="module")
def masks():
    return np.stack([blobs((48, 48), seed=s, sigma=2.5, level=0.75) for s in range(4)]).astype(np.int32)


# ------------------------------------------------------------------ predictions and their oracles
def test_binned_pooled_dice_equals_the_per_pixel_sum(masks):
    m = planner.Masks(masks)
    f = np.array([0.9, 0.95, 0.3, 0.7, 0.0])
    b = np.array([0.0, 0.0, 0.3, 0.6, 0.1])
    for n in (3.0, 100.0, 5000.0):
        np.testing.assert_allclose(m.pooled_dice(n, f, b), curves.pooled_dice(masks, n, f, b), atol=2e-5)


def test_rcl_predictions_threshold_and_polarity(masks):
    m = planner.Masks(masks)
    p = planner.predict(m, "sample 0.1", calibration=CAL)
    assert (p.threshold, p.inverted, p.family) == (0.05, False, "RCL")
    assert p.dice == pytest.approx(0.9 * curves.pooled_dice(masks, 300.0, 0.9, 0.0)[0], abs=2e-5)
    inv = planner.predict(m, LabelNoise("flip", 0.7, 0.6), calibration=CAL)
    assert inv.inverted and inv.threshold == pytest.approx(0.45) and inv.family == "RCL"
    assert inv.dice == pytest.approx(0.9 * curves.pooled_dice(masks, 300.0, 0.7, 0.6)[0], abs=2e-5)
    # sampling 10% at a given n_eff is exactly flipping f = 0.9, b = 0, by the closed form
    assert planner.predict(m, "clean", calibration=CAL).dice == 0.9


def test_random_labels_and_the_collapse_predict_chance(masks):
    pi = masks.mean()
    for lab in ("random 0.3", "flip 0.5 0.5", LabelNoise("flip", 0.2, 0.8)):
        p = planner.predict(masks, lab, calibration=CAL)
        assert p.family == "RL" and p.threshold is None and p.dice == pytest.approx(2 * pi / (1 + pi))


def test_pcl_prediction_against_scipy_dilation(masks):
    """Dice(T(M), M) from scipy.ndimage (noise.disk footprint; erosion: outside is foreground), by curves.pcl_dice."""
    for r in (1, 2):
        fp = noise.disk(r).astype(bool)
        for kind, op, border in (("dilate", ndi.binary_dilation, 0), ("erode", ndi.binary_erosion, 1)):
            t = np.stack([op(mk.astype(bool), structure=fp, border_value=border) for mk in masks])
            label_dice = 2 * np.sum(t & (masks == 1)) / (t.sum() + masks.sum())
            p = planner.predict(masks, f"{kind} {r}", calibration=CAL)
            assert p.threshold == 0.5 and p.family == "PCL"
            assert p.dice == pytest.approx(float(curves.pcl_dice(label_dice, 0.9)), abs=1e-9)
    sk = planner.predict(masks, "skeleton", calibration=CAL)
    assert 0 < sk.threshold < 0.5 and 0 < sk.dice < 0.9
    assert sk.threshold == pytest.approx(LabelNoise("skeleton").matched_threshold(masks=masks).threshold)


def test_pcl_dice_is_the_folded_normal_mean_by_monte_carlo():
    """1 - pcl_dice = E|mu + e|, e ~ N(0, s^2), s = (1 - clean) sqrt(pi/2): a fixed-key Monte Carlo."""
    z = np.asarray(jax.random.normal(jax.random.key(0), (400_000,)), float)
    for label_dice, clean in ((0.9, 0.92), (0.7, 0.95), (0.97, 0.8), (1.0, 0.9), (0.8, 1.0)):
        mu, s = 1 - label_dice, (1 - clean) * np.sqrt(np.pi / 2)
        mc = np.mean(np.abs(mu + s * z))
        assert 1 - curves.pcl_dice(label_dice, clean) == pytest.approx(mc, abs=2e-3 * max(s, 0.01))
    # it never beats either error alone, and never loses more than both
    ld, cd = np.meshgrid(np.linspace(0.5, 1, 11), np.linspace(0.5, 1, 11))
    out = curves.pcl_dice(ld, cd)
    assert np.all(out <= np.minimum(ld, cd) + 1e-12) and np.all(out >= ld + cd - 1 - 1e-12)


def test_predictions_fall_with_worse_labels(masks):
    plan = planner.table(masks, calibration=CAL)
    d = {r.label.name: r.dice for r in plan.rows}
    ratios = [d[f"sample {p:g}"] for p in planner.RATIOS]
    assert all(a >= b for a, b in zip(ratios, ratios[1:])) and d["clean"] >= ratios[0]
    flips = [d[f"flip {f:g} {f:g}"] for f in planner.FLIPS]
    assert all(a > b for a, b in zip(flips, flips[1:]))
    for op in ("dilate", "erode"):
        rs = [d[f"{op} {r}"] for r in planner.RADII]
        assert all(a > b for a, b in zip(rs, rs[1:]))
    assert [r.family for r in plan.rows][0] == "CL" and plan.rows[-1].family == "RL"


def test_masks_of_different_sizes_pool_their_pixels():
    a, b = blobs((40, 40), seed=3).astype(int), blobs((24, 56), seed=4).astype(int)
    both = planner.Masks([a, b])
    assert both.n_fg == a.sum() + b.sum() and both.n_pixels == a.size + b.size
    inter = sum(np.sum(np.asarray(noise.dilate(m, 1)).astype(bool) & (m == 1)) for m in (a, b))
    tot = sum(np.asarray(noise.dilate(m, 1)).sum() + m.sum() for m in (a, b))
    assert both.label_dice(LabelNoise("dilate", 1)) == pytest.approx(2 * inter / tot)
    cnt = both.histogram[1]
    assert cnt.sum() == a.size + b.size


def test_table_memorisation_block(masks):
    cal = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), capacity=500.0)
    plan = planner.table(masks, calibration=cal)
    mem = plan.memorisation
    assert mem["n_fg"] == masks.sum() and mem["index"] == pytest.approx(min(1, 500.0 / masks.sum()))
    assert mem["below"] == 1000.0 and mem["index_no_augment"] == pytest.approx(
        min(1, planner.NO_AUGMENT_CAPACITY / masks.sum()))
    text = plan.text()
    assert "sample 0.1" in text and "inverted" not in text and "memorised" in text
    rec = json.loads(json.dumps(plan.to_dict()))
    assert planner.Calibration.from_dict(rec["calibration"]) == cal and len(rec["rows"]) == len(plan.rows)


def test_solve_n_eff_inverts_the_prediction(masks):
    m = planner.Masks(masks)
    for n in (12.0, 400.0, 9000.0):
        for lab, (f, b) in (("sample 0.1", (0.9, 0.0)), ("flip 0.3 0.2", (0.3, 0.2))):
            measured = 0.9 * float(m.pooled_dice(n, f, b)[0])
            got, clipped = planner.solve_n_eff(m, lab, clean_dice=0.9, measured=measured)
            assert clipped is None and got == pytest.approx(n, rel=1e-3)
    assert planner.solve_n_eff(m, "sample 0.1", clean_dice=0.9, measured=0.95) == (planner.N_EFF_MAX, "max")
    assert planner.solve_n_eff(m, "sample 0.1", clean_dice=0.9, measured=0.01) == (planner.N_EFF_MIN, "min")
    with pytest.raises(ValueError, match="sampled or flipped"):
        planner.solve_n_eff(m, "dilate 1", clean_dice=0.9, measured=0.8)


# ------------------------------------------------------------------ calibration
@pytest.fixture(scope="module")
def tiny():
    return data.nuclei(jax.random.key(3), 8, size=32)


def test_calibrate_end_to_end_tiny(tiny):
    recipe = {"widths": (4, 8), "steps": 60, "learning_rate": 5e-3}
    cal = planner.calibrate(jax.random.key(0), tiny.images, tiny.masks, recipe=recipe, progress=False)
    assert cal.source == "calibrated" and cal.n_train == 6 and cal.n_holdout == 2
    assert 0.3 < cal.clean_dice <= 1 and planner.N_EFF_MIN <= cal.n_eff <= planner.N_EFF_MAX
    assert cal.recipe["widths"] == (4, 8) and cal.recipe["augment"] is True and cal.capacity >= 0
    kw = cal.fit_kwargs
    assert kw["steps"] == 60 and kw["model"].name == planner.fit_kwargs(**recipe)["model"].name
    res = train.fit(jax.random.key(1), tiny.images, tiny.masks, progress=False, **{**kw, "steps": 2})
    assert res.predict(tiny.images[:1]).shape == (1, 32, 32)
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    # n_eff solves clean * pooled_dice(held-out masks, n_eff) = the sparse network's Dice
    perm = np.asarray(jax.random.permutation(jax.random.split(jax.random.key(0), 4)[0], 8))
    held = planner.Masks(np.asarray(tiny.masks)[np.sort(perm[:2])])
    if cal.n_eff not in (planner.N_EFF_MIN, planner.N_EFF_MAX):
        assert cal.clean_dice * held.pooled_dice(cal.n_eff, 0.9, 0.0)[0] == pytest.approx(cal.sparse_dice, abs=1e-6)


@pytest.mark.parametrize("how", ["shapes", "one image", "holdout", "label", "too sparse", "recipe"])
def test_calibrate_refuses_bad_input(tiny, how):
    x, y = np.asarray(tiny.images), np.asarray(tiny.masks)
    kw = {"recipe": {"widths": (4, 8), "steps": 1}, "progress": False}
    with pytest.raises(ValueError) as e:
        if how == "shapes":
            planner.calibrate(jax.random.key(0), x[:, :16], y, **kw)
        elif how == "one image":
            planner.calibrate(jax.random.key(0), x[:1], y[:1], **kw)
        elif how == "holdout":
            planner.calibrate(jax.random.key(0), x, y, holdout=1.0, **kw)
        elif how == "label":
            planner.calibrate(jax.random.key(0), x, y, label="dilate 1", **kw)
        elif how == "too sparse":
            sparse = np.zeros_like(y)
            sparse[:, 10:12, 10:12] = 1  # 4 foreground pixels an image: a 10% draw labels a handful
            planner.calibrate(jax.random.key(0), x, sparse, names=[f"m{i}.png" for i in range(8)], **kw)
        else:
            planner.calibrate(jax.random.key(0), x, y, recipe={"width": 3})
    msg = str(e.value)
    assert {"shapes": "must match", "one image": "at least 2", "holdout": "holdout", "label": "sparse or flipped",
            "too sparse": "too sparse", "recipe": "unknown recipe"}[how] in msg
    if how == "too sparse":
        assert "m0.png" in msg or "m1.png" in msg


@pytest.mark.parametrize("how", ["values", "empty list", "no foreground", "3-d", "nan", "multiclass", "type"])
def test_predict_refuses_bad_masks_by_name(masks, how):
    bad = masks.copy()
    err = ValueError
    if how == "values":
        bad[1, 0, 0] = 2
        arg, lab = bad, "sample 0.1"
    elif how == "empty list":
        arg, lab = [], "sample 0.1"
    elif how == "no foreground":
        arg, lab = np.zeros_like(masks), "sample 0.1"
    elif how == "3-d":
        arg, lab = [masks], "sample 0.1"
    elif how == "nan":
        arg, lab = [np.full((4, 4), np.nan)], "sample 0.1"
    elif how == "multiclass":
        arg, lab = masks, LabelNoise("symmetric", 0.2, num_classes=3)
    else:
        arg, lab, err = masks, 0.1, TypeError
    with pytest.raises(err) as e:
        planner.predict(arg, lab, calibration=CAL)
    if how == "values":
        assert "mask 1" in str(e.value) and "binary" in str(e.value)
    if how == "no foreground":
        assert "no foreground" in str(e.value)


def test_defaults_are_the_committed_measurements():
    """planner.DEFAULT is the calibration of figures/planner.json; NO_AUGMENT_CAPACITY memorisation's fitted k."""
    rec = json.loads((ROOT / "figures" / "planner.json").read_text())
    cal = planner.Calibration.from_dict(rec["results"]["calibration"])
    d = planner.DEFAULT
    assert d.n_eff == pytest.approx(cal.n_eff, rel=1e-3) and d.clean_dice == pytest.approx(cal.clean_dice, abs=1e-4)
    assert d.capacity == pytest.approx(cal.capacity, rel=1e-2) and d.recipe == cal.recipe
    assert d.recipe == planner.DEFAULT_RECIPE and d.sparse_dice == pytest.approx(cal.sparse_dice, abs=1e-4)
    assert d.memorisation_index == pytest.approx(cal.memorisation_index, rel=1e-3) and d.label == cal.label
    assert (d.n_train, d.n_holdout) == (cal.n_train, cal.n_holdout)
    mem = json.loads((ROOT / "figures" / "memorisation.json").read_text())["results"]
    assert planner.NO_AUGMENT_CAPACITY == pytest.approx(mem["fitted_k"], abs=0.01)


# ------------------------------------------------------------------ the command
def _write(folder: Path, arrays, scale=1):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray((np.asarray(a) * scale).astype(np.uint8)).save(folder / f"img{i:02d}.png")


def _plan(*args, cwd):
    return subprocess.run([sys.executable, "-m", "metastructure", "plan", *map(str, args)], capture_output=True,
                          text=True, check=False, cwd=cwd, timeout=300)


def test_plan_command_masks_only(tmp_path, masks):
    _write(tmp_path / "masks", masks, scale=255)
    proc = _plan(tmp_path / "masks", "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sample 0.1" in proc.stdout and "dilate 2" in proc.stdout and "memorised" in proc.stdout
    assert "255 -> 1" in proc.stderr  # the 8-bit masks were read as binary, and the user is told
    rec = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert rec["files"] == [f"img{i:02d}.png" for i in range(4)]
    assert rec["calibration"]["source"] == planner.DEFAULT.source
    assert rec["masks"]["foreground_pixels"] == masks.sum()
    assert (tmp_path / "out" / "plan.png").stat().st_size > 20_000


def test_plan_command_calibrates_on_images(tmp_path, tiny):
    ims = np.asarray(tiny.images[..., 0])
    ims = ((ims - ims.min()) / (ims.max() - ims.min()) * 255)
    _write(tmp_path / "masks", tiny.masks)
    _write(tmp_path / "images", ims)
    proc = _plan(tmp_path / "masks", "--images", tmp_path / "images", "--steps", "20", "--out", tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "plan.json").read_text())
    assert rec["calibration"]["source"] == "calibrated" and rec["calibration"]["recipe"]["steps"] == 20
    assert "calibration (calibrated)" in proc.stdout


@pytest.mark.parametrize("how", ["empty", "not binary", "no masks for images", "too sparse", "missing", "out is a file",
                                 "steps without images"])
def test_plan_command_bad_input_is_one_line_naming_the_file(tmp_path, how, masks, tiny):
    mdir, idir = tmp_path / "masks", tmp_path / "images"
    extra = []
    if how == "empty":
        mdir.mkdir()
        want = "no PNG or TIFF"
    elif how == "not binary":
        bad = masks.copy()
        bad[2, :3, :3] = 2
        _write(mdir, bad)
        want = "masks/img02.png"
    elif how == "no masks for images":
        _write(mdir, masks[:2])
        _write(idir, np.zeros((3, 48, 48)))
        extra, want = ["--images", idir], "images without a mask ['img02']"
    elif how == "too sparse":
        sparse = np.zeros((8, 32, 32), np.uint8)
        sparse[:, 5, 5] = 1
        _write(mdir, sparse)
        _write(idir, np.asarray(tiny.images[..., 0]) * 30 + 100)
        extra, want = ["--images", idir, "--steps", "1"], "too sparse"
    elif how == "out is a file":
        _write(mdir, masks)
        (tmp_path / "out").write_text("")
        want = "out"
    elif how == "steps without images":
        _write(mdir, masks)
        extra, want = ["--steps", "5"], "needs --images"
    else:
        want = "expected a folder"
    proc = _plan(mdir, *extra, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2 and want in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2


def test_load_masks_and_load_pairs(tmp_path, masks):
    _write(tmp_path / "m", masks[:2], scale=255)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "m" / "small.png")  # masks may differ in size
    with pytest.warns(UserWarning, match="255 -> 1"):
        names, ms = data.load_masks(tmp_path / "m")
    assert names == ["img00.png", "img01.png", "small.png"] and ms[2].shape == (20, 30)
    assert all(m.dtype == np.int32 and set(np.unique(m)) <= {0, 1} for m in ms)
    np.testing.assert_array_equal(ms[0], masks[0])
    _write(tmp_path / "i", np.full((2, 48, 48), 7))
    _write(tmp_path / "m2", masks[:2])
    d = data.load_pairs(tmp_path / "i", tmp_path / "m2")
    assert d.images.shape == (2, 48, 48, 1) and d.masks.shape == (2, 48, 48)
    with pytest.raises(FileNotFoundError, match="expected a folder"):
        data.load_masks(tmp_path / "nope")


def test_calibrate_with_flipped_labels_and_list_widths(tiny):
    """A flip label: the labelled foreground and the memorisation index count foreground pixels only; widths given
    as a list (as JSON has them) still round-trip."""
    recipe = {"widths": [4, 8], "steps": 30, "learning_rate": 5e-3}
    cal = planner.calibrate(jax.random.key(1), tiny.images, tiny.masks, label="flip 0.3 0.1", recipe=recipe,
                            progress=False)
    assert cal.label == "flip 0.3 0.1" and cal.recipe["widths"] == (4, 8) and cal.capacity is not None
    assert -1 <= cal.memorisation_index <= 1
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    with pytest.raises(ValueError, match="empty string"):
        planner.predict(tiny.masks, "", calibration=CAL)
