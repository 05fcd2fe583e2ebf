"""Bad input, tried as a hostile-but-realistic user would: every public function of ``noise``, ``density``,
``ntm``, ``metrics``, ``train.fit`` and ``data.load_folder`` either gives a correct result or raises
``ValueError`` / ``TypeError`` naming the argument; never NaN out, never an internal error. Then one
regression test per reproduction of the reliability issue (inputs checked where they enter; ignore labels
that stay ignored)."""

from __future__ import annotations

import json
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metastructure import data, density, losses, metrics, nets, noise, ntm, planner, thresholds, train
from metastructure import unsupervised as uns

KEY = jax.random.key(0)
_rng = np.random.default_rng(0)
MASK = (_rng.random((2, 8, 8)) < 0.4).astype(np.int32)
MASK[:, 2:6, 2:6] = 1
CLASSES = _rng.integers(0, 3, (2, 8, 8)).astype(np.int32)
SCORES = _rng.random((2, 8, 8)).astype(np.float32)
T2 = ntm.flip_matrix(0.2, 0.1)
T3 = ntm.symmetric_matrix(0.3, 3)
Q2 = ntm.joint_from_transition(T2, [0.6, 0.4])
SMALL = nets.unet(widths=(2, 4))
IMAGES = _rng.normal(size=(2, 8, 8, 1)).astype(np.float32)

# argument name -> the kind of value it takes (decides how it is corrupted)
KIND = {
    "mask": "mask", "pred": "mask", "target": "mask", "masks": "mask", "skeleton": "mask",
    "clean": "mask", "noisy": "mask", "labels": "classes",
    "ratio": "unit", "fg_to_bg": "unit", "bg_to_fg": "unit", "rate": "unit", "p_outer": "unit",
    "bandwidth": "positive", "radius": "positive",
    "scores": "real", "probs": "real", "x": "real", "y": "real", "thresholds": "real", "clean_fields": "real",
    "transition": "transition", "joint_matrix": "joint", "prior": "prior",
    "num_classes": "int", "bins": "int", "steps": "int", "batch_size": "int", "val_every": "int",
    "images": "images", "learning_rate": "positive",
}

# (name, call(args), valid args[, kinds that differ from KIND])
CASES = [
    ("noise.sample", lambda a: noise.sample(KEY, a["mask"], a["ratio"]), {"mask": MASK, "ratio": 0.3}),
    ("noise.flip", lambda a: noise.flip(KEY, a["mask"], a["fg_to_bg"], a["bg_to_fg"]),
     {"mask": MASK, "fg_to_bg": 0.2, "bg_to_fg": 0.1}),
    ("noise.corrupt", lambda a: noise.corrupt(KEY, a["labels"], a["transition"]),
     {"labels": CLASSES, "transition": T3}),
    ("noise.sample_classes", lambda a: noise.sample_classes(KEY, a["labels"], a["ratio"], num_classes=a["num_classes"]),
     {"labels": CLASSES, "ratio": 0.5, "num_classes": 3}),
    ("noise.random_labels", lambda a: noise.random_labels(KEY, (4, 4), a["rate"]), {"rate": 0.3}),
    ("noise.disk", lambda a: noise.disk(a["radius"]), {"radius": 2.0}),
    ("noise.dilate", lambda a: noise.dilate(a["mask"], a["radius"]), {"mask": MASK, "radius": 1}),
    ("noise.erode", lambda a: noise.erode(a["mask"], a["radius"]), {"mask": MASK, "radius": 1}),
    ("noise.skeletonize", lambda a: noise.skeletonize(a["mask"]), {"mask": MASK}),
    ("noise.shift", lambda a: noise.shift(KEY, a["mask"], a["radius"]), {"mask": MASK, "radius": 1}),
    ("noise.boundary_noise", lambda a: noise.boundary_noise(KEY, a["mask"], steps=a["steps"], p_outer=a["p_outer"]),
     {"mask": MASK, "steps": 2, "p_outer": 0.5}),
    ("noise.LabelNoise", lambda a: noise.LabelNoise("flip", a["fg_to_bg"], 0.1)(KEY, a["mask"]),
     {"mask": MASK, "fg_to_bg": 0.3}),
    ("noise.LabelNoise symmetric", lambda a: noise.LabelNoise("symmetric", a["rate"], num_classes=a["num_classes"]),
     {"rate": 0.3, "num_classes": 3}),
    ("density.fraction_field", lambda a: density.fraction_field(a["labels"], a["bandwidth"]),
     {"labels": MASK, "bandwidth": 2.0}, {"labels": "mask"}),
    ("density.fraction_field classes",
     lambda a: density.fraction_field(a["labels"], a["bandwidth"], num_classes=a["num_classes"]),
     {"labels": CLASSES, "bandwidth": 2.0, "num_classes": 3}, {"num_classes": "int or None"}),
    ("density.intensity_field", lambda a: density.intensity_field(a["labels"], a["bandwidth"], kernel="box"),
     {"labels": MASK, "bandwidth": 2}, {"labels": "mask"}),
    ("density.smooth", lambda a: density.smooth(a["x"], a["bandwidth"]), {"x": SCORES, "bandwidth": 1.5}),
    ("density.kernel_weights", lambda a: density.kernel_weights("gaussian", a["bandwidth"]), {"bandwidth": 1.0}),
    ("density.matched_threshold", lambda a: density.matched_threshold(a["transition"]), {"transition": T2}),
    ("density.matched_threshold_or_none", lambda a: density.matched_threshold_or_none(a["transition"]),
     {"transition": T2}),
    ("density.expected_fraction_field", lambda a: density.expected_fraction_field(a["clean_fields"], a["transition"]),
     {"clean_fields": SCORES, "transition": T2}),
    ("ntm.sample_matrix", lambda a: ntm.sample_matrix(a["ratio"]), {"ratio": 0.3}),
    ("ntm.flip_matrix", lambda a: ntm.flip_matrix(a["fg_to_bg"], a["bg_to_fg"]), {"fg_to_bg": 0.3, "bg_to_fg": 0.2}),
    ("ntm.random_matrix", lambda a: ntm.random_matrix(a["rate"]), {"rate": 0.3}),
    ("ntm.skeleton_matrix", lambda a: ntm.skeleton_matrix(a["mask"], a["skeleton"]),
     {"mask": MASK, "skeleton": np.asarray(noise.skeletonize(MASK))}),
    ("ntm.symmetric_matrix", lambda a: ntm.symmetric_matrix(a["rate"], a["num_classes"]),
     {"rate": 0.3, "num_classes": 3}),
    ("ntm.joint", lambda a: ntm.joint(a["clean"], a["noisy"]), {"clean": MASK, "noisy": 1 - MASK}),
    ("ntm.estimate", lambda a: ntm.estimate(a["clean"], a["noisy"]), {"clean": MASK, "noisy": 1 - MASK}),
    ("ntm.joint_from_transition", lambda a: ntm.joint_from_transition(a["transition"], a["prior"]),
     {"transition": T2, "prior": np.array([0.6, 0.4])}),
    ("ntm.determinant", lambda a: ntm.determinant(a["transition"]), {"transition": T2}),
    ("ntm.rank", lambda a: ntm.rank(a["transition"]), {"transition": T3}),
    ("ntm.numerical_rank", lambda a: ntm.numerical_rank(a["transition"]), {"transition": T3}),
    ("ntm.mutual_information", lambda a: ntm.mutual_information(a["joint_matrix"]), {"joint_matrix": Q2}),
    ("ntm.dmi", lambda a: ntm.dmi(a["joint_matrix"]), {"joint_matrix": Q2}),
    ("metrics.confusion", lambda a: metrics.confusion(a["pred"], a["target"]), {"pred": MASK, "target": 1 - MASK}),
    ("metrics.dice", lambda a: metrics.dice(a["pred"], a["target"], per_image=True),
     {"pred": MASK, "target": 1 - MASK}),
    ("metrics.iou", lambda a: metrics.iou(a["pred"], a["target"]), {"pred": MASK, "target": MASK}),
    ("metrics.accuracy", lambda a: metrics.accuracy(a["pred"], a["target"]), {"pred": MASK, "target": MASK}),
    ("metrics.roc_auc", lambda a: metrics.roc_auc(a["scores"], a["target"]), {"scores": SCORES, "target": MASK}),
    ("metrics.miou", lambda a: metrics.miou(CLASSES, a["target"], a["num_classes"]),
     {"target": CLASSES, "num_classes": 3}, {"target": "classes"}),
    ("metrics.threshold_sweep", lambda a: metrics.threshold_sweep(a["scores"], a["target"], a["thresholds"]),
     {"scores": SCORES, "target": MASK, "thresholds": np.array([0.2, 0.5])}),
    ("metrics.best_threshold", lambda a: metrics.best_threshold(a["scores"], a["target"]),
     {"scores": SCORES, "target": MASK}),
    ("metrics.otsu_threshold", lambda a: metrics.otsu_threshold(a["scores"], bins=a["bins"]),
     {"scores": SCORES, "bins": 16}),
    ("metrics.evaluate", lambda a: metrics.evaluate(a["probs"], a["masks"], label_type=noise.LabelNoise("sample", 0.5)),
     {"probs": SCORES, "masks": MASK}),
    ("metrics.boundary_distance", lambda a: metrics.boundary_distance(a["pred"], a["target"]),
     {"pred": MASK, "target": np.roll(MASK, 1, axis=-1)}),
    ("metrics.label_fit", lambda a: metrics.label_fit(a["probs"], a["masks"], labels=a["labels"]),
     {"probs": SCORES, "masks": MASK, "labels": MASK * (SCORES > 0.5)}, {"labels": "mask"}),
    ("metrics.depth_tracking", lambda a: metrics.depth_tracking(a["probs"], a["masks"], a["labels"]),
     {"probs": SCORES, "masks": MASK, "labels": MASK * (SCORES > 0.5)}, {"labels": "mask"}),
    ("metrics.level_threshold", lambda a: metrics.level_threshold(a["probs"], a["labels"],
                                                                  label_type=noise.LabelNoise("sample", 0.5)),
     {"probs": SCORES, "labels": MASK * (SCORES > 0.5)}, {"labels": "mask"}),
    ("metrics.linear_cka", lambda a: metrics.linear_cka(a["x"], a["y"]),
     {"x": SCORES.reshape(16, 8), "y": SCORES.reshape(16, 8) ** 2}),
    ("train.fit", lambda a: train.fit(KEY, a["images"], a["mask"], model=SMALL, steps=a["steps"], progress=False,
                                      learning_rate=a["learning_rate"]),
     {"images": IMAGES, "mask": MASK, "steps": 1, "learning_rate": 1e-3}, {"mask": "soft mask", "steps": "count"}),
]


def _bad(kind: str, valid, draw):
    """A corrupted value of ``kind`` and whether it must be refused (False: shape changes that may be valid)."""
    arr = np.asarray(valid)
    options = {
        "nan": True, "inf": True, "string": True, "complex": True, "none": True,
        "shape": False, "empty": False,
    }
    if kind in ("mask", "classes", "soft mask"):
        options.update({"out_of_range": True, "fraction": kind != "soft mask"})  # fixed labels may be soft
    elif kind in ("unit", "positive"):
        options.update({"out_of_range": True})
    elif kind in ("int", "int or None", "count"):
        options = {"zero": kind != "count", "negative": True, "fraction": True, "string": True, "bool": True,
                   "nan": True}
        if kind != "int or None":
            options["none"] = True
    elif kind in ("transition", "joint", "prior"):
        options.update({"out_of_range": True, "swapped": kind != "prior"})
    how = draw(st.sampled_from(sorted(options)))
    must = options[how]
    if kind in ("int", "int or None", "count"):
        return how, must, {"zero": 0, "negative": -draw(st.integers(1, 10)), "fraction": 2.5, "string": "3",
                           "none": None, "bool": True, "nan": float("nan")}[how]
    if how == "none":
        return how, must, None
    if how == "string":
        return how, must, np.full(arr.shape, "a") if arr.ndim else "a"
    if how == "complex":
        return how, must, arr.astype(np.complex64) + 1j
    if how in ("nan", "inf"):
        bad = arr.astype(np.float64).copy()
        flat = bad.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = np.nan if how == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
        return how, must, bad if arr.ndim else float(flat[0])
    if how == "fraction":
        bad = arr.astype(np.float64).copy()
        bad.reshape(-1)[draw(st.integers(0, bad.size - 1))] = 0.5
        return how, must, bad
    if how == "shape":
        return how, must, arr.reshape(-1)[: max(arr.size - 1, 1)] if arr.ndim else np.full(3, arr)
    if how == "empty":
        return how, must, np.zeros((0,) + arr.shape[1:], arr.dtype) if arr.ndim else np.zeros(0)
    if how == "swapped":
        return how, must, (Q2 if kind == "transition" and arr.shape == (2, 2) else
                           ntm.joint_from_transition(T3, [0.2, 0.3, 0.5]) if kind == "transition" else T2)
    # out of range
    if kind in ("mask", "soft mask"):
        bad = arr.copy()
        bad.reshape(-1)[draw(st.integers(0, bad.size - 1))] = draw(st.sampled_from([2, 5, 255, 65535, -2, -7]))
        return how, must, bad
    if kind == "classes":
        bad = arr.copy()
        bad.reshape(-1)[draw(st.integers(0, bad.size - 1))] = draw(st.sampled_from([3, 4, 100, -2, -9]))
        return how, must, bad
    if kind == "unit":
        return how, must, draw(st.one_of(st.floats(1.0001, 1e6), st.floats(-1e6, -1e-4)))
    if kind == "positive":
        return how, must, draw(st.floats(-1e6, 0.0))
    bad = arr.astype(np.float64).copy()  # transition / joint / prior: a negative entry
    bad.reshape(-1)[0] = -draw(st.floats(0.01, 2.0))
    return how, must, bad


def _has_nan(out) -> bool:
    leaves = jax.tree_util.tree_leaves(out)
    return any(np.issubdtype(np.asarray(x).dtype, np.floating) and np.isnan(np.asarray(x)).any() for x in leaves)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_bad_input_is_refused_by_name_or_handled(case, draw):
    name, call, valid = case[:3]
    kinds = {**KIND, **(case[3] if len(case) > 3 else {})}
    arg = draw.draw(st.sampled_from(sorted(valid)))
    how, must, bad = _bad(kinds[arg], valid[arg], draw.draw)
    if name == "train.fit" and not must:
        return  # a valid reshaped batch would train (compile); fit's shapes have their own tests below
    args = {**valid, arg: bad}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call(args)
    except (ValueError, TypeError) as e:
        names = {arg, *(["labels"] if arg == "mask" and name == "train.fit" else [])}
        if name.startswith("noise.LabelNoise") and arg in ("fg_to_bg", "rate"):
            names |= {"rate"}
        if arg in ("clean_fields", "scores", "probs") and how == "shape":
            names |= {"shape"}
        assert any(n in str(e) for n in names), f"{name}({arg}={how}): {type(e).__name__}: {e}"
        return
    except Exception as e:  # an internal error: the bug this test exists for
        pytest.fail(f"{name}({arg}={how}) raised {type(e).__name__}: {e}")
    assert not must, f"{name} accepted {arg}={how}: {bad!r:.200}"
    assert not _has_nan(out), f"{name}({arg}={how}) returned NaN"


# --------------------------------------------------------------------- load_folder, hostile folders
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(how=st.sampled_from(["nan image", "inf image", "instance mask", "float mask", "empty file", "truncated png",
                            "jpg", "duplicate stem", "wide int", "complex image", "3-D mask"]),
       value=st.integers(2, 2**40))
def test_load_folder_refuses_bad_files_by_name(tmp_path_factory, how, value):
    import tifffile
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    Image.fromarray((IMAGES[0, ..., 0] * 40 + 100).astype(np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(MASK[0].astype(np.uint8) * 255).save(root / "masks" / "a.png")
    bad = "b.tif"
    image = IMAGES[1, ..., 0].astype(np.float32)
    mask = MASK[1].astype(np.uint8)
    if how in ("nan image", "inf image"):
        image[3, 4] = np.nan if how == "nan image" else np.inf
    if how == "complex image":
        image = image.astype(np.complex64)
    tifffile.imwrite(root / "images" / "b.tif", image)
    if how == "instance mask":
        mask = MASK[1] * (1 + np.arange(64).reshape(8, 8) % 3)
    if how == "float mask":
        mask = MASK[1] * 0.5
    if how == "wide int":
        mask = MASK[1].astype(np.int64)
        mask[0, 0] = value
        mask[0, 1] = 1
    if how == "3-D mask":
        mask = np.stack([MASK[1]] * 2)
    tifffile.imwrite(root / "masks" / "b.tif", mask)
    if how == "empty file":
        (root / "masks" / "b.tif").write_bytes(b"")
    if how == "truncated png":
        (root / "masks" / "b.tif").unlink()
        Image.fromarray(mask * 255).save(root / "masks" / "b.png")
        (root / "masks" / "b.png").write_bytes((root / "masks" / "b.png").read_bytes()[:60])
        bad = "b.png"
    if how == "jpg":
        Image.fromarray(mask * 255).save(root / "masks" / "c.jpg")
        bad = "c.jpg"
    if how == "duplicate stem":
        Image.fromarray(mask * 255).save(root / "masks" / "b.png")
    with pytest.raises(ValueError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data.load_folder(root)
    assert bad in str(info.value) or ("b" in str(info.value) and how == "duplicate stem"), (how, str(info.value))


def test_load_folder_binarises_two_valued_masks_and_says_so(tmp_path):
    """Regression: 0/255 and 0/65535 masks came back unchanged (and trained to a loss of -23,166)."""
    import tifffile
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (name, scale) in enumerate([("a", 255), ("b", 65535), ("c", 1)]):
        Image.fromarray((IMAGES[i % 2, ..., 0] * 40 + 100).astype(np.uint8)).save(tmp_path / "images" / f"{name}.png")
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", (MASK[i % 2] * scale).astype(np.uint16))
    (tmp_path / "masks" / "._a.png").write_bytes(b"\0\5\26\7 macOS resource fork")  # skipped, not an error
    with pytest.warns(UserWarning, match=r"2 mask\(s\) read as binary.*a\.tif \(255 -> 1\).*b\.tif \(65535 -> 1\)"):
        d = data.load_folder(tmp_path)
    np.testing.assert_array_equal(d.masks, MASK[[0, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classes = data.load_folder(tmp_path, binary=False)  # class maps kept as they are
    assert classes.masks.max() == 65535 and classes.masks.dtype == np.int32


# ------------------------------------------------------------------------------ train.fit at entry
@pytest.mark.parametrize("case", [
    "0/255 labels", "nan image", "inf image", "nan labels", "nan learning_rate", "label 5 of 3",
    "one logit for 3 classes", "binary labels with ce", "label -2 with ce", "labels (N, H, W, 1)",
    "empty data", "val_every 0", "steps 2.5", "bce for 3 classes", "validation 0/255",
])
def test_fit_refuses_bad_input_before_compiling(case, monkeypatch):
    """Regression: fit trained silently on 0/255 masks, NaN pixels, out-of-range classes; ZeroDivisionError for
    val_every=0; a TypeError from deep inside for steps=2.5. Every case is refused before anything compiles."""
    monkeypatch.setattr(train, "make_step", lambda *a, **k: pytest.fail("compiled a step for bad input"))
    x, y = IMAGES, MASK
    m3 = nets.unet(widths=(2, 4), out_channels=3)
    kw: dict = {"model": SMALL, "steps": 2, "progress": False}
    name = {"0/255 labels": "labels", "nan image": "images", "inf image": "images", "nan labels": "labels",
            "nan learning_rate": "learning_rate", "label 5 of 3": "labels", "one logit for 3 classes": "model",
            "binary labels with ce": "loss", "label -2 with ce": "labels", "labels (N, H, W, 1)": "labels",
            "empty data": "images", "val_every 0": "val_every", "steps 2.5": "steps", "bce for 3 classes": "loss",
            "validation 0/255": "validation masks"}[case]
    if case == "0/255 labels":
        y = MASK * 255
    elif case in ("nan image", "inf image"):
        x = IMAGES.copy()
        x[1, 2, 3, 0] = np.nan if case == "nan image" else np.inf
    elif case == "nan labels":
        y = MASK.astype(np.float32)
        y[0, 0, 0] = np.nan
    elif case == "nan learning_rate":
        kw["learning_rate"] = float("nan")
    elif case in ("label 5 of 3", "label -2 with ce"):
        y = CLASSES.copy()
        y[1, 1, 1] = 5 if case == "label 5 of 3" else -2
        kw.update(model=m3, num_classes=3, loss="ce")
    elif case == "one logit for 3 classes":
        y = CLASSES
        kw.update(num_classes=3, loss="ce")
    elif case == "binary labels with ce":
        kw.update(loss="ce")
    elif case == "labels (N, H, W, 1)":
        y = MASK[..., None]
    elif case == "empty data":
        x, y = IMAGES[:0], MASK[:0]
    elif case == "val_every 0":
        kw.update(validation=(IMAGES, MASK), val_every=0)
    elif case == "steps 2.5":
        kw["steps"] = 2.5
    elif case == "bce for 3 classes":
        y = CLASSES
        kw.update(model=m3, num_classes=3, loss="bce")
    elif case == "validation 0/255":
        kw.update(validation=(IMAGES, MASK * 255))
    with pytest.raises((ValueError, TypeError), match=re.escape(name)):
        train.fit(KEY, x, y, **kw)


def test_fit_reports_a_diverged_loss_by_step():
    """Regression: learning_rate=nan (and divergence) gave NaN parameters silently, or, with validation, an error
    about the scores. Inputs are now checked, and a loss that still turns NaN is reported with its step."""
    with pytest.raises(FloatingPointError, match=r"at step \d+ of 6"):
        train.fit(KEY, IMAGES, MASK, model=SMALL, steps=6, learning_rate=1e30, progress=False)


def test_fit_trains_on_soft_and_ignore_labels():
    """What stays allowed: soft fixed targets in [0, 1] and -1 (ignore) pixels; the loss is finite."""
    soft = np.where(MASK > 0, 0.8, 0.1).astype(np.float32)
    soft[0, :2] = -1
    r = train.fit(KEY, IMAGES, soft, model=SMALL, steps=2, progress=False, loss="bce+iou")
    assert np.isfinite(r.history["loss"]).all()


# ------------------------------------------------------------------------------ ignore labels
KINDS = [noise.LabelNoise("sample", 0.5), noise.LabelNoise("flip", 0.0, 0.0), noise.LabelNoise("flip", 0.4, 0.6),
         noise.LabelNoise("random", 0.5), noise.LabelNoise("dilate", 1), noise.LabelNoise("erode", 1),
         noise.LabelNoise("skeleton"), noise.LabelNoise("clean")]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_label_type_keeps_ignore_pixels_ignored_under_jit(kind):
    """Regression: under jit (no value checks), sample(0.5) turned ignore pixels into foreground
    ([1,1,-1,-1,0,0,-1,-1] -> [0,0,1,1,0,0,1,0]) and flip(0, 0) turned -1 into 1. Ignore is a mask now."""
    y = np.tile(np.array([1, 1, -1, -1, 0, 0, -1, -1], np.int32), (2, 8, 1))
    y[:, 3:6, :2] = 1
    ignore = y == -1
    for out in (kind(KEY, y), jax.jit(kind.__call__)(KEY, jnp.asarray(y))):
        out = np.asarray(out)
        np.testing.assert_array_equal(out[ignore], -1)
        assert set(np.unique(out[~ignore])) <= {0, 1}
    # the labelled pixels get what the 0/1 mask alone (ignore read as background) gets
    if not kind.random:
        np.testing.assert_array_equal(np.asarray(kind(KEY, y))[~ignore], np.asarray(kind(KEY, y.clip(0)))[~ignore])


def test_exact_counts_leave_ignore_pixels_out():
    y = np.zeros((1, 10, 10), np.int32)
    y[0, :, :4] = 1
    y[0, :, 4:6] = -1  # 20 ignore pixels
    out = np.asarray(jax.jit(lambda k, m: noise.flip(k, m, 0.5, 0.25))(KEY, y))
    assert (out == -1).sum() == 20
    assert ((y == 1) & (out == 0)).sum() == 20 and ((y == 0) & (out == 1)).sum() == 10  # floor(f*40), floor(b*40)


@pytest.mark.parametrize("name", ["bce", "bce+iou", "dmi+iou"])
def test_losses_leave_ignore_pixels_out(name):
    """Regression: "dmi+iou" and "bce+iou" used -1 as a target (soft IoU 1.105, impossible; all-ignore 5.2e7).
    Each loss equals its value on the labelled pixels alone; all-ignore batches give 0 with zero gradient."""
    fn = losses.by_name(name)
    z = jnp.asarray(np.linspace(-3, 3, 64).reshape(1, 8, 8, 1), jnp.float32)
    t = jnp.asarray(np.where(np.arange(64).reshape(1, 8, 8) % 3 == 0, -1, MASK[:1]), jnp.int32)
    keep = np.asarray(t != -1)
    np.testing.assert_allclose(float(fn(z, t)), float(fn(z[..., 0][keep], t[keep])), rtol=1e-6)
    iou = losses.soft_iou_loss(z, t)
    assert 0.0 <= float(iou) <= 1.0
    none = -jnp.ones_like(t)
    assert float(fn(z, none)) == 0.0
    np.testing.assert_array_equal(jax.grad(lambda z: fn(z, none))(z), 0.0)


def test_cross_entropy_is_loud_about_a_bad_class_under_jit():
    """A class index outside [0, M) (not ignore) gives NaN, never another class (-2 used to wrap round to 1)."""
    z = jnp.zeros((3, 3))
    assert math.isnan(float(jax.jit(losses.cross_entropy)(z, jnp.array([0, -2, -1]))))
    assert math.isnan(float(jax.jit(losses.cross_entropy)(z, jnp.array([0, 5, -1]))))
    assert float(jax.jit(losses.cross_entropy)(z, jnp.array([0, 2, -1]))) == pytest.approx(math.log(3))


@pytest.mark.parametrize("call", [
    lambda: density.fraction_field(MASK, 1.0, ignore=1),
    lambda: density.fraction_field(MASK, 1.0, ignore=0),
    lambda: density.fraction_field(CLASSES, 1.0, num_classes=3, ignore=2),
    lambda: noise.sample_classes(KEY, CLASSES, 0.5, num_classes=3, ignore=1),
    lambda: noise.corrupt(KEY, CLASSES, T3, ignore=0),
    lambda: noise.sample(KEY, MASK, 0.5, ignore=1),
    lambda: ntm.joint(MASK, MASK, ignore=1),
])
def test_an_ignore_value_that_is_a_real_class_is_refused(call):
    with pytest.raises(ValueError, match="ignore=.* is a real class"):
        call()


# ------------------------------------------------------------------------------ density edge cases
@pytest.mark.parametrize("kernel", density.KERNELS)
def test_fields_beyond_the_image_tend_to_the_global_fraction(kernel):
    """Regression: fraction_field(m, 7000) and an 8^3 volume at bandwidth 500 were all NaN."""
    m = MASK[0]
    for bw, mask, ndim in [(7000, m, 2), (500, MASK[:, :4, :4].astype(bool), 3)]:
        f = np.asarray(density.fraction_field(mask, bw, kernel=kernel, ndim=ndim))
        assert np.isfinite(f).all()
        np.testing.assert_allclose(f, mask.mean(), atol=2e-4)


def test_a_huge_epanechnikov_footprint_is_clipped_to_the_image():
    """Regression: fraction_field(v, 300, kernel="epanechnikov", ndim=3) allocated a 601^3 kernel (MemoryError).
    The clipped footprint keeps the whole kernel's normalisation: smooth equals the full kernel's convolution."""
    from scipy import ndimage

    v = np.zeros((8, 8, 8), bool)
    v[2:5, 1:6, 3:7] = True
    f = np.asarray(density.fraction_field(v, 300, kernel="epanechnikov", ndim=3))
    np.testing.assert_allclose(f, v.mean(), atol=1e-4)
    # clipped footprints keep the whole kernel's normalisation (a closed-form lattice sum): smooth equals the
    # zero-padded convolution with the full, unclipped kernel, in 2-D and 3-D
    for x, h in [(SCORES[0, :6, :7], 20.0), (SCORES[0, :6, :7], 7.0), (SCORES[:, :5, :6], 5.3), (SCORES[:, :3], 9.5)]:
        full = density.kernel_weights("epanechnikov", h, ndim=x.ndim)
        ref = ndimage.convolve(x.astype(np.float64), full, mode="constant")
        got = np.asarray(density.smooth(x, h, kernel="epanechnikov", ndim=x.ndim))
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_integer_like_counts_are_accepted_and_others_refused():
    """np.int64(3) is an int; 3.0, a ratio vector of the wrong length, num_classes=1 and bins=1 are refused
    (they failed inside JAX or with ZeroDivisionError)."""
    assert density.fraction_field(CLASSES, 1.0, num_classes=np.int64(3)).shape == (2, 8, 8, 3)
    assert noise.sample_classes(KEY, CLASSES, 0.5, num_classes=np.int32(3)).shape == (2, 8, 8)
    for call, match in [
        (lambda: density.fraction_field(CLASSES, 1.0, num_classes=3.0), "num_classes must be an int"),
        (lambda: noise.sample_classes(KEY, CLASSES, [0.5, 0.2], num_classes=3), "one ratio per class"),
        (lambda: noise.LabelNoise("symmetric", 0.5, num_classes=1), "num_classes must be an int >= 2"),
        (lambda: noise.LabelNoise("sample", 0.5, num_classes=3), "binary label type"),
        (lambda: metrics.otsu_threshold(SCORES, bins=1), "bins must be an int >= 2"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            call()


def test_dmi_tells_a_joint_from_a_transition():
    """Regression: ntm.dmi(flip_matrix(.1, .1)) returned 0.8, a transition matrix read as a joint."""
    with pytest.raises(ValueError, match="transition matrix"):
        ntm.dmi(ntm.flip_matrix(0.1, 0.1))
    with pytest.raises(ValueError, match="joint distribution"):
        ntm.determinant(Q2)
    assert ntm.dmi(ntm.joint_from_transition(ntm.flip_matrix(0.1, 0.1), [0.5, 0.5])) == pytest.approx(0.2)


# ======================================================================================================================
# issue 31, the loaders (data.load_folder / load_pairs / load_masks): folders with corrupted or unusual files, each
# read right (against an oracle computed here) or refused with a ValueError naming the file. Self-contained section.
# ======================================================================================================================
_LOADER_CASES = {  # how -> what must happen: "read" (checked against the oracle) or the refusal's words
    "constant image": "read", "blank image": "read", "all-foreground 0/255 mask": "read",
    "all-foreground 0/1 mask": "read", "blank mask": "read", "huge float32 image": "read",
    "huge float64 image": "read", "offset 1e8 image": "read", "stack Z == H": "a stack of 8 planes",
    "ImageJ stack": "a stack of 8 planes", "stacked mask": "a stack of 2 planes",
    "folder named like an image": "a folder, not an image file", "broken link": "a broken symbolic link",
}


def _loader_oracle(x: np.ndarray) -> np.ndarray:
    """One image's z-score from its exact values, float64: the number the loaders must give (0 for a constant)."""
    x = np.asarray(x, np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


@pytest.mark.parametrize("how", sorted(_LOADER_CASES))
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(scale=st.sampled_from([1e19, 1e30, 1e36]), seed=st.integers(0, 2**16))
def test_loaders_read_corrupted_folders_right_or_refuse_by_name(tmp_path_factory, how, scale, seed):
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("loaders")
    idir, mdir = root / "images", root / "masks"
    idir.mkdir()
    mdir.mkdir()
    x = rng.integers(0, 256, (8, 8)).astype(np.float64)  # the values the bad pair's image stands for
    mask = (rng.random((8, 8)) < 0.4).astype(np.uint8)
    Image.fromarray((IMAGES[0, ..., 0] * 40 + 100).astype(np.uint8)).save(idir / "a.png")  # the good pair
    Image.fromarray(MASK[0].astype(np.uint8)).save(mdir / "a.png")
    image, want_image = x.astype(np.float32), _loader_oracle(x)
    bad = idir / "b.tif"
    if how in ("constant image", "blank image"):
        image = np.full((8, 8), 7.0 if how == "constant image" else 0.0, np.float32)
        want_image = np.zeros((8, 8))
    if how == "huge float32 image":
        image = (x * scale).astype(np.float32)
    if how == "huge float64 image":
        image = x * scale * 1e250
    if how == "offset 1e8 image":
        image = x + 1e8  # float64: exact
    if how in ("all-foreground 0/255 mask", "all-foreground 0/1 mask", "blank mask"):
        mask = np.full((8, 8), 0 if how == "blank mask" else 255 if "255" in how else 1, np.uint8)
    tifffile.imwrite(idir / "b.tif", image)
    Image.fromarray(mask).save(mdir / "b.png")
    if how == "stack Z == H":
        tifffile.imwrite(bad, np.stack([image] * 8))
    if how == "ImageJ stack":
        tifffile.imwrite(bad, np.stack([image] * 8), imagej=True, metadata={"axes": "ZYX"})
    if how == "stacked mask":
        (mdir / "b.png").unlink()
        tifffile.imwrite(mdir / "b.tif", np.stack([mask] * 2))
        bad = mdir / "b.tif"
    if how in ("folder named like an image", "broken link"):
        (mdir / "b.png").unlink()
        bad = mdir / "b.png"
        bad.mkdir() if how == "folder named like an image" else bad.symlink_to(root / "gone.png")
    readers = [lambda: data.load_folder(root)]
    if bad.parent == mdir:
        readers.append(lambda: data.load_masks(mdir))
    for read in readers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 0/255 masks are read as binary with a note
            if _LOADER_CASES[how] != "read":
                with pytest.raises(ValueError, match=re.escape(f"{bad}: {_LOADER_CASES[how]}")):
                    read()
                continue
            out = read()
        if isinstance(out, data.Dataset):
            assert out.images.dtype == np.float32 and np.all(np.isfinite(out.images)), how
            np.testing.assert_allclose(out.images[1, ..., 0], want_image, rtol=1e-5, atol=1e-5, err_msg=how)
            np.testing.assert_array_equal(out.masks[1], mask != 0)
            good = _loader_oracle((IMAGES[0, ..., 0] * 40 + 100).astype(np.uint8))
            np.testing.assert_allclose(out.images[0, ..., 0], good, rtol=1e-5, atol=1e-5)  # the good pair
        else:
            names, masks = out
            assert names == ["a.png", "b.png"]
            np.testing.assert_array_equal(masks[1], mask != 0)


# ============================================================== unsupervised: igtt, igtt_masks, start_masks, thresholds
# Corrupted images (blank, constant, near-constant, huge finite values, NaN, inf, strings, wrong layouts) and
# corrupted init_labels (soft, the ignore value, NaN, strings, wrong shape): a right answer (no object where there
# is no contrast; huge values read as the image they scale) or a ValueError / TypeError naming the argument.

UNS = {"widths": (2, 4), "rounds": 1, "steps": 1, "progress": False, "augment": False, "tta": False, "use_ems": False}
BLOBS = data.nuclei(jax.random.key(3), 2, size=16)  # standardised images with objects, and their truth
REFUSED = ("nan", "inf", "string", "complex", "none", "empty", "5-D")
FLAT = ("blank", "constant", "near-constant")
HUGE = ("huge scale", "huge offset")


def _images(how: str, draw) -> np.ndarray:
    """BLOBS' images corrupted ``how`` (N, H, W, C)."""
    x = np.asarray(BLOBS.images, np.float64)
    if how == "blank":
        return np.zeros_like(x)
    if how == "constant":
        return np.full_like(x, draw(st.sampled_from([-3.7, 0.1, 5.0, 1e8 + 0.1, 1e30, -1e300, 1e300])))
    if how == "near-constant":  # variations far below the normaliser's floor (1e-6)
        return draw(st.sampled_from([0.0, 0.3, -2.0])) + 1e-9 * np.random.default_rng(0).normal(size=x.shape)
    if how == "huge scale":
        return x * draw(st.sampled_from([1e10, 1e30, 3e38, 1e200, 1e300]))
    if how == "huge offset":
        return x + draw(st.sampled_from([1e4, -1e6, 1e8]))
    if how in ("nan", "inf"):
        bad = x.copy()
        bad[draw(st.integers(0, 1)), draw(st.integers(0, 15)), 3, 0] = np.nan if how == "nan" else -np.inf
        return bad
    return {"string": x.astype(str), "complex": x.astype(np.complex64), "none": None, "empty": x[:0],
            "5-D": x[None], "(N, H, W)": x[..., 0], "(H, W)": x[0, ..., 0], "3 channels": np.repeat(x, 3, -1)}[how]


def _refused_by_name(call, name: str) -> None:
    with pytest.raises((ValueError, TypeError)) as e:
        call()
    assert name in str(e.value), str(e.value)


def _agree(a, b) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


@pytest.fixture(scope="module")
def igtt_trained():
    """An IGTTResult of the recommended configuration around an untrained U-Net (igtt_masks reads only the
    network and the configuration; no training to compile)."""
    model = nets.unet(widths=(2, 4))
    fit = train.FitResult(model.init(KEY, 1), model, {}, "fixed", None)
    return uns.IGTTResult(fit, uns.PRESETS["recommended"].replace(widths=(2, 4)), "otsu", None, None, [])


@pytest.mark.parametrize("how", REFUSED + FLAT + ("huge scale", "(N, H, W)", "(H, W)", "3 channels"))
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_thresholds_on_corrupted_images(how, draw):
    x = _images(how, draw.draw)
    calls = {"otsu": thresholds.otsu, "adaptive": lambda a: thresholds.adaptive(a, block_size=5),
             "kmeans": thresholds.kmeans, "start_masks": lambda a: uns.start_masks(a, block_size=5)[0]}
    if how in REFUSED:
        for call in (*calls.values(), thresholds.grayscale, lambda a: thresholds.local_separation(a, BLOBS.masks)):
            _refused_by_name(lambda: call(x), "images")  # noqa: B023
        return
    n = 1 if how == "(H, W)" else 2
    clean = {k: np.asarray(f(BLOBS.images[:n])) for k, f in calls.items()}  # start_masks looks at the whole batch
    for k, f in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
            out = np.asarray(f(x))
            sep = thresholds.local_separation(x, out, window=5)
        assert out.dtype == bool and out.shape == (n, 16, 16), k
        assert np.all(np.isfinite(sep)) and np.all((sep >= 0) & (sep <= 1)), k
        if how in ("blank", "constant"):
            assert not out.any(), k  # no contrast, no object
        elif how != "near-constant":  # the thresholds split any variation: the same cut at any scale or layout
            assert _agree(out, clean[k]) >= 0.95, k


@pytest.mark.parametrize("how", REFUSED + FLAT + HUGE + ("(N, H, W)", "(H, W)", "3 channels"))
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_igtt_masks_on_corrupted_images(igtt_trained, how, draw):
    x = _images(how, draw.draw)
    if how in REFUSED + ("(N, H, W)", "(H, W)", "3 channels"):
        _refused_by_name(lambda: uns.igtt_masks(igtt_trained, x), "images")
        _refused_by_name(lambda: igtt_trained.predict(x), "images")
        return
    masks = uns.igtt_masks(igtt_trained, x)
    assert masks.dtype == bool and masks.shape == (2, 16, 16)
    if how in FLAT:
        assert not masks.any()  # no contrast, no object (not the network's response to its own padding)
    else:
        assert _agree(masks, uns.igtt_masks(igtt_trained, BLOBS.images)) >= 0.95


@pytest.mark.parametrize("arg, how", [("images", h) for h in REFUSED + FLAT + HUGE + ("(N, H, W)", "(H, W)")]
                         + [("init_labels", h) for h in ("soft", "ignore", "nan", "255", "string", "shape", "bool",
                                                         "int", "float")])
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_igtt_on_corrupted_images_and_init_labels(arg, how, draw):
    if arg == "images":
        x, labels = _images(how, draw.draw), None
    else:
        x = BLOBS.images
        m = np.asarray(BLOBS.masks, np.float64)
        bad = m.copy()
        bad[draw.draw(st.integers(0, 1)), draw.draw(st.integers(0, 15)), 5] = {
            "soft": draw.draw(st.floats(0.01, 0.99)), "ignore": -1, "nan": np.nan, "255": 255}.get(how, 1)
        labels = {"string": m.astype(str), "shape": m[:1], "bool": m > 0, "int": m.astype(np.int32),
                  "float": m.astype(np.float32)}.get(how, bad)
    if how in REFUSED + ("(N, H, W)", "(H, W)", "soft", "ignore", "nan", "255", "string", "shape"):
        _refused_by_name(lambda: uns.igtt(KEY, x, init_labels=labels, **UNS), arg)
        return
    r = uns.igtt(KEY, x, init_labels=labels, **UNS)
    assert np.isfinite(r.history[0]["loss"]) and r.selected.shape == (2, 16, 16)
    if labels is not None:
        assert r.start == "given"
    if how in FLAT:  # nothing to start from, nothing selected, nothing found
        assert not r.selected.any() and not r.labels.any() and not uns.igtt_masks(r, x).any()


# ======================================================================================================================
# planner (issue 31): predict, table, Calibration and calibrate's entry checks, fed hostile masks (blank, constant,
# all-foreground, huge values, NaN, thin lines and spots), label names and calibration values. Either a refusal naming
# the argument, or a plan whose every number is a Dice (finite, in [0, 1]) with a threshold exactly where the family
# has one.
# ======================================================================================================================

P_CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")
P_SHAPES = [(1, 1), (2, 3), (8, 8), (16, 12), (24, 24)]
P_MASKS = ["blank", "all foreground", "constant", "huge", "nan", "soft", "thin lines", "spots", "blobs"]


def _planner_masks(how: str, draw) -> tuple[np.ndarray, bool]:
    """Masks corrupted ``how`` (2 of one drawn size) and whether the planner must refuse them."""
    h, w = draw(st.sampled_from(P_SHAPES))
    if how == "blank":
        return np.zeros((2, h, w), draw(st.sampled_from([np.int32, np.uint8, bool, np.float32]))), True
    if how == "all foreground":
        return np.ones((2, h, w), draw(st.sampled_from([np.int32, np.uint8, bool, np.float32]))), True
    if how == "constant":  # one value everywhere that is not 0 or 1
        return np.full((2, h, w), draw(st.sampled_from([0.5, 7, 255, -1, 1e30, -3e38]))), True
    m = np.zeros((2, max(h, 8), max(w, 8)), np.float64)
    if how in ("thin lines", "spots"):
        step = draw(st.integers(3, 8))
        if how == "thin lines":  # 1 px wide lines, every ``step`` rows
            m[:, draw(st.integers(0, step - 1))::step, 1:-1] = 1
        else:  # 1 x 1 or 2 x 2 spots on a grid
            s = draw(st.sampled_from([1, 2]))
            for i in range(0, m.shape[1] - s, step):
                for j in range(0, m.shape[2] - s, step):
                    m[:, i:i + s, j:j + s] = 1
        return m, False
    m[:, 2:6, 2:6] = 1
    m[:, :, -1] = _rng.random(m.shape[1]) < 0.5
    if how == "blobs":
        return m, False
    if how == "huge":  # foreground stored as a huge finite value
        return m * draw(st.sampled_from([1e8, 1e30, 1e300])), True
    bad = m.copy()
    bad.reshape(-1)[draw(st.integers(0, bad.size - 1))] = np.nan if how == "nan" else 0.5
    return bad, True


P_LABELS_BAD = ["sample 10%", "flip 0.3, 0.3", "sample abc", "dilate -1", "shift 1.5", "", "   ", "sample 1.5",
                "symmetric 0.3", "sample nan", "flip 0.3", "dilate 1e6", "blur 2"]


def _planner_label(draw) -> tuple[object, bool]:
    """A label argument and whether it must be refused."""
    kind = draw(st.sampled_from(["sample", "flip", "dilate", "erode", "other", "bad name", "not a label"]))
    rate = st.one_of(st.sampled_from([0.0, 1e-12, 1e-10, 1e-9, 2e-9, 1e-3, 0.5, 1.0]), st.floats(0, 1))
    if kind == "sample":
        p = draw(rate)
        return draw(st.sampled_from([f"sample {p!r}", noise.LabelNoise("sample", p)])), False
    if kind == "flip":
        return noise.LabelNoise("flip", draw(rate), draw(rate)), False
    if kind in ("dilate", "erode"):
        r = draw(st.sampled_from([0, 1, 1.5, 2.0, 3]))
        return draw(st.sampled_from([f"{kind} {r}", noise.LabelNoise(kind, r)])), False
    if kind == "other":
        return draw(st.sampled_from(["clean", "skeleton", "random 0.3", "flip 0.5 0.5", "sample 1"])), False
    if kind == "bad name":
        return draw(st.sampled_from(P_LABELS_BAD)), True
    return draw(st.sampled_from([0.1, None, noise.LabelNoise("symmetric", 0.2, num_classes=3), ["sample 0.1"]])), True


def _check_prediction(p) -> None:
    assert isinstance(p.dice, float) and math.isfinite(p.dice) and 0.0 <= p.dice <= 1.0, p
    assert (p.threshold is None) == (p.family == "RL"), p
    if p.threshold is not None:
        assert 0.0 < p.threshold < 1.0, p


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_planner_predict_refuses_by_name_or_predicts_a_dice(draw):
    masks, refuse_masks = _planner_masks(draw.draw(st.sampled_from(P_MASKS)), draw.draw)
    label, refuse_label = _planner_label(draw.draw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = planner.predict(masks, label, calibration=P_CAL)
    except (ValueError, TypeError) as e:
        assert refuse_masks or refuse_label, f"refused valid input: {type(e).__name__}: {e}"
        assert "mask" in str(e) if refuse_masks else "label" in str(e), str(e)
        return
    assert not (refuse_masks or refuse_label), f"accepted masks {masks.ravel()[:4]}..., label {label!r}: {p}"
    _check_prediction(p)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_planner_table_refuses_bad_rows_by_name_or_gives_a_plan_of_dice(draw):
    masks, _ = _planner_masks(draw.draw(st.sampled_from(["thin lines", "spots", "blobs"])), draw.draw)
    arg = draw.draw(st.sampled_from(["ratios", "flips", "radii"]))
    value = draw.draw(st.sampled_from([float("nan"), -0.1, 1.5, 1e-9, 0.0, 1.0, "0.1", None, 1e6, float("inf")]))
    kw = {arg: (0.1, value) if draw.draw(st.booleans()) else value}
    must = value in (float("inf"), "0.1", None) or value != value or value == -0.1 or (
        arg != "radii" and value in (1.5, 1e6)) or (arg == "radii" and value == 1e6) or not isinstance(kw[arg], tuple)
    try:
        plan = planner.table(masks, calibration=P_CAL, **kw)
    except (ValueError, TypeError) as e:
        assert must, f"table({arg}={kw[arg]!r}) refused: {e}"
        assert arg in str(e) or (arg == "radii" and "radius" in str(e)), str(e)
        return
    assert not must, f"table accepted {arg}={kw[arg]!r}"
    for row in plan.rows:
        _check_prediction(row)
    json.dumps(plan.to_dict(), allow_nan=False)


P_FIELDS = ["n_eff", "clean_dice", "sparse_dice", "capacity", "memorisation_index", "n_train", "n_holdout", "label",
            "source", "recipe"]
P_VALUES = [float("nan"), float("inf"), -float("inf"), -1, 0, 0.5, 1.7, 3, 1e308, 5e-324, 2.5, "a", "sample 0.2",
            None, True, [], {}, {"steps": 0}, {"steps": 10}, {"widths": "8"}]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_planner_calibration_refuses_bad_values_by_name_or_predicts_a_dice(draw):
    """Through the constructor or from_dict (a hand-edited plan.json): refused naming the field, or a calibration
    whose predictions are Dice values and whose record survives strict JSON (no NaN) unchanged."""
    field = draw.draw(st.sampled_from(P_FIELDS))
    value = draw.draw(st.sampled_from(P_VALUES))
    record = {**P_CAL.to_dict(), field: value}
    build = draw.draw(st.sampled_from([lambda r: planner.Calibration(**r), planner.Calibration.from_dict]))
    try:
        cal = build(record)
    except (ValueError, TypeError) as e:
        assert field in str(e), f"{field}={value!r}: {e}"
        return
    assert not (isinstance(value, float) and not math.isfinite(value)), f"accepted {field}={value!r}"
    masks, _ = _planner_masks("blobs", draw.draw)
    for label in ("sample 0.1", "flip 0.3 0.2", "dilate 1", "clean"):
        if planner.unresolved(masks, label):  # small blobs: too thin for the finite-sampling model, said so
            with pytest.raises(ValueError, match="too thin"):
                planner.predict(masks, label, calibration=cal)
            continue
        _check_prediction(planner.predict(masks, label, calibration=cal))
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False))) == cal


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(draw=st.data())
def test_planner_calibrate_refuses_bad_input_before_training(draw, monkeypatch):
    """calibrate trains networks; each of these inputs is refused, naming it, before the first one trains."""
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("calibrate trained on bad input"))
    x = _rng.normal(size=(8, 16, 16)).astype(np.float32)
    y = np.zeros((8, 16, 16), np.int32)
    y[:, 3:13, 3:13] = 1
    args = {"images": x, "masks": y, "holdout": 0.25, "recipe": {"widths": (2, 4), "steps": 1}, "label": "sample 0.5",
            "repeats": 1}
    arg = draw.draw(st.sampled_from(sorted(args)))
    bad = {
        "images": [np.zeros_like(x), np.full_like(x, 3e38), x[:1], x[:, :8], np.where(x > 2, np.nan, x), x[..., None]
                   * np.ones(2, np.float32) * 0 + 1],
        "masks": [np.zeros_like(y), np.ones_like(y), y * 255, y + 0.5, y[:, :8]],
        "holdout": [0.0, 1.0, float("nan"), "a", None, -0.5],
        "recipe": [{"steps": 0}, {"width": 3}, [("steps", 1)], {"widths": "8"}, {"learning_rate": float("nan")},
                   {"steps": 2.5}],
        "label": ["dilate 1", "random 0.5", "sample 10%", "flip 0.5 0.5", 0.1, "clean", [],
                  ["sample 0.5", "sample 0.2"], ["sample 0.5", "dilate 1"]],
        "repeats": [0, -1, 1.5, "2", None, True],
    }[arg]
    value = draw.draw(st.sampled_from(bad))
    names = {"images": ("images", "constant"), "masks": ("mask",), "holdout": ("holdout",), "recipe": ("recipe",),
             "label": ("label", "sparse or flipped"), "repeats": ("repeats",)}[arg]
    with pytest.raises((ValueError, TypeError)) as e:
        planner.calibrate(KEY, **{**args, arg: value}, progress=False)
    assert any(n in str(e.value) for n in names), f"{arg}: {e.value}"
