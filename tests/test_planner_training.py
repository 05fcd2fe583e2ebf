"""metastructure.planner.training: calibrate on images (the two trainings, the split, n_eff, the memorisation
index) and its refusals."""

import json
import math
import warnings

import jax
import numpy as np
import pytest

from metastructure import data, noise, planner, train
from metastructure.planner import training
from theory import curves

CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")


@pytest.fixture(scope="module")
def tiny():
    return data.nuclei(jax.random.key(3), 8, size=32)


def test_the_package_reexports_calibrate():
    assert planner.calibrate is training.calibrate


def spy_on_fit(monkeypatch) -> list:
    """Record every ``train.fit`` call from now on as ``(images, labels, result)``: calibrate's two networks."""
    calls, real = [], train.fit

    def spy(key, images, labels, **kw):
        res = real(key, images, labels, **kw)
        calls.append((np.asarray(images), np.asarray(labels), res))
        return res

    monkeypatch.setattr(train, "fit", spy)
    return calls


def pooled_dice(pred, truth) -> float:
    """2 |P & T| / (|P| + |T|) over all pixels (numpy)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    return 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


def label_index(out, labels, masks) -> float:
    """The memorisation index by its definition: per clean class whose draw holds both labels, the mean output on
    the pixels drawn 1 minus on those drawn 0; the mean over those classes."""
    diffs = []
    for c in (0, 1):
        one, zero = (labels == 1) & (masks == c), (labels == 0) & (masks == c)
        if one.any() and zero.any():
            diffs.append(out[one].mean() - out[zero].mean())
    return float(np.mean(diffs))


def check_against_its_networks(cal, calls, images, masks, *, labels, repeats):
    """The calibration's numbers from its networks, which the spy kept in training order (per size, all training
    images then a half of them: the clean network, then ``repeats`` draws of each label type), by their
    definitions in calibrate's docstring: the held-out images are those no network trained on, the half lies inside
    the training images; clean_dice = pooled Dice of the first clean network >= 1/2 there; every draw's network's
    Dice at its t* there and its memorisation index on its own training images are the law's points;
    sparse_dice = the first label type's networks' mean at full size; the foreground index = their mean output
    on the drawn foreground pixels minus on the left-out ones, averaged; capacity = max(index, 0) x n_fg."""
    images, masks = np.asarray(images), np.asarray(masks)
    per_size = 1 + len(labels) * repeats
    assert len(calls) == 2 * per_size
    full, half = calls[:per_size], calls[per_size:]
    x_tr, y_tr, clean_net = full[0]
    assert all(np.array_equal(x, x_tr) for x, _, _ in full) and all(np.array_equal(x, half[0][0]) for x, _, _ in half)
    trained = np.array([any(np.array_equal(im, x) for x in x_tr) for im in images])
    held = ~trained
    assert (held.sum(), len(x_tr)) == (cal.n_holdout, cal.n_train)
    assert len(half[0][0]) == len(x_tr) // 2 and all(any(np.array_equal(h, x) for x in x_tr) for h in half[0][0])
    np.testing.assert_array_equal(y_tr, masks[~held])  # the clean network trained on the clean masks
    assert cal.clean_dice == pytest.approx(pooled_dice(clean_net.predict(images[held]) >= 0.5, masks[held]),
                                           abs=1e-6)
    assert cal.law.clean[-1] == (len(x_tr), pytest.approx(cal.clean_dice))
    sparse = full[1:] + half[1:]
    assert len(cal.law.points) == len(sparse)
    for group in (full[1:], half[1:]):  # each repeat draws its own labels
        for j in range(len(labels)):
            draws = [noisy for _, noisy, _ in group[j * repeats:(j + 1) * repeats]]
            assert all(not np.array_equal(draws[0], d) for d in draws[1:])
    first, index = [], []
    for (x, noisy, net), p in zip(sparse, cal.law.points, strict=True):
        lab = noise.LabelNoise.parse(p["label"])
        y = np.stack([masks[next(i for i, im in enumerate(images) if np.array_equal(im, xi))] for xi in x])
        assert p["n_images"] == len(x) and p["label"] in labels
        t_star = lab.matched_threshold().threshold
        assert p["dice"] == pytest.approx(pooled_dice(net.predict(images[held]) > t_star, masks[held]), abs=1e-6)
        out = net.predict(x)
        assert p["memorisation"] == pytest.approx(label_index(out, noisy, y), abs=1e-5)
        if p["label"] == labels[0] and len(x) == len(x_tr):
            first.append(p["dice"])
            index.append(float(out[(noisy == 1) & (y == 1)].mean() - out[(noisy == 0) & (y == 1)].mean()))
    assert len(first) == repeats and cal.sparse_dice == pytest.approx(np.mean(first), abs=1e-6)
    assert cal.memorisation_index == pytest.approx(np.mean(index), abs=1e-5)
    assert cal.capacity == pytest.approx(max(np.mean(index), 0.0) * y_tr.sum(), rel=1e-5, abs=1e-6)
    return masks[held]


def test_calibrate_end_to_end_tiny(tiny, monkeypatch):
    recipe = {"widths": (4, 8), "steps": 60, "learning_rate": 5e-3}
    calls = spy_on_fit(monkeypatch)
    cal = planner.calibrate(jax.random.key(1), tiny.images, tiny.masks, recipe=recipe, repeats=1, progress=False)
    assert cal.source == "calibrated" and cal.n_train == 6 and cal.n_holdout == 2
    assert 0.3 < cal.clean_dice <= 1 and planner.N_EFF_MIN <= cal.n_eff <= planner.N_EFF_MAX
    assert cal.recipe["widths"] == (4, 8) and cal.recipe["augment"] is True
    assert cal.label == "sample 0.1" and cal.law.kinds == ("sample", "flip") and cal.law.images_seen == 60 * 8
    # 32^2 images: the recipe's 64 px crop takes them whole; 6 and 3 images, fewer than the batch of 8: drawn
    # whole each step, so both sizes see every image 60 times
    assert cal.recipe["crop"] == 64 and cal.law.batch_size == 8 and cal.law.passes(6) == cal.law.passes(3) == 60
    # every number from the networks themselves (catches drawn and left-out pixels swapped, the held-out images
    # scored in place of the training ones, another n_fg, points out of order)
    held = check_against_its_networks(cal, calls, tiny.images, tiny.masks, labels=planner.CALIBRATION_LABELS,
                                      repeats=1)
    kw = cal.fit_kwargs
    assert kw["steps"] == 60 and kw["model"].name == planner.fit_kwargs(**recipe)["model"].name
    res = train.fit(jax.random.key(1), tiny.images, tiny.masks, progress=False, **{**kw, "steps": 2})
    assert res.predict(tiny.images[:1]).shape == (1, 32, 32)
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    # the law was fitted on the held-out masks with each network's own index: its residual sd is the rms of the
    # networks' Dice about clean x pooled_dice(held, n_eff(own index)) at the fitted numbers (catches another set
    # of masks, the curve's index in place of the network's, or another clean Dice)
    law, m = cal.law, planner.Masks(held)
    clean = dict(law.clean)
    resid = [p["dice"] - clean[p["n_images"]] * float(m.pooled_dice(
        min(float(curves.scale_n_eff(p["n_images"], 1.0, max(p["memorisation"], 0.0), rate=law.rate,
                                     ratio=law.ratio)), planner.N_EFF_MAX),
        *{"sample 0.1": (0.9, 0.0), "flip 0.4 0.4": (0.4, 0.4)}[p["label"]])[0]) for p in law.points]
    assert law.dof == 2 and law.residual_sd == pytest.approx(math.sqrt(np.sum(np.square(resid)) / 2), rel=1e-6)
    # the record's n_eff is the law's for the first label type at the calibration's size
    assert cal.n_eff == pytest.approx(min(max(law.n_eff("sample", 6), planner.N_EFF_MIN), planner.N_EFF_MAX))
    # calibration_split is the split calibrate made (its held-out masks are those no network trained on)
    tr, ho = planner.calibration_split(jax.random.key(1), 8)
    np.testing.assert_array_equal(np.asarray(tiny.masks)[ho], held)
    assert len(tr) == 6 and set(tr) | set(ho) == set(range(8))


@pytest.mark.parametrize("how", ["shapes", "one image", "holdout", "label", "too sparse", "recipe", "one family twice",
                                 "repeats"])
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
            sparse[:, 10:16, 10:16] = 1  # 36 foreground pixels an image: a 10% draw labels a handful
            planner.calibrate(jax.random.key(0), x, sparse, names=[f"m{i}.png" for i in range(8)], **kw)
        elif how == "one family twice":
            planner.calibrate(jax.random.key(0), x, y, label=["sample 0.1", "sample 0.2"], **kw)
        elif how == "repeats":
            planner.calibrate(jax.random.key(0), x, y, repeats=0, **kw)
        else:
            planner.calibrate(jax.random.key(0), x, y, recipe={"width": 3})
    msg = str(e.value)
    assert {"shapes": "must match", "one image": "at least 2", "holdout": "holdout", "label": "sparse or flipped",
            "too sparse": "too sparse", "recipe": "unknown recipe", "one family twice": "one label type per family",
            "repeats": "repeats"}[how] in msg
    if how == "too sparse":
        assert "m0.png" in msg or "m1.png" in msg


def test_calibrate_with_one_flipped_label_two_repeats_and_list_widths(tiny, monkeypatch):
    """One flip label, two draws per size: the foreground index counts foreground pixels only (a flip's foreground
    labels on background pixels are not drawn foreground), both families are predicted from the one curve; widths
    given as a list (as JSON has them) still round-trip."""
    recipe = {"widths": [4, 8], "steps": 30, "learning_rate": 5e-3}
    calls = spy_on_fit(monkeypatch)
    cal = planner.calibrate(jax.random.key(1), tiny.images, tiny.masks, label="flip 0.3 0.1", recipe=recipe,
                            repeats=2, progress=False)
    assert cal.label == "flip 0.3 0.1" and cal.recipe["widths"] == (4, 8) and cal.capacity is not None
    assert cal.law.kinds == ("flip",) and cal.law.dof == 2
    check_against_its_networks(cal, calls, tiny.images, tiny.masks, labels=("flip 0.3 0.1",), repeats=2)
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    pred = planner.predict(tiny.masks, "sample 0.2", calibration=cal, n_images=12)
    assert "memorisation of flip draws (sample not calibrated)" in pred.model
    with pytest.raises(ValueError, match="empty string"):
        planner.predict(tiny.masks, "", calibration=CAL)


@pytest.mark.parametrize("images", ["zeros", "ones x 7", "constant per image"])
def test_calibrate_refuses_constant_images_before_training(tiny, images, monkeypatch):
    """Constant images finished on main with n_eff pinned at 1e6 and source "calibrated": no contrast, nothing
    to learn; refused before any network trains."""
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("calibrate trained on constant images"))
    y = np.asarray(tiny.masks)
    x = {"zeros": np.zeros((8, 32, 32)), "ones x 7": np.full((8, 32, 32, 2), 7.0),
         "constant per image": np.arange(8.0)[:, None, None] * np.ones((8, 32, 32))}[images]
    with pytest.raises(ValueError, match="images: all 8 images are constant"):
        planner.calibrate(jax.random.key(0), x, y, recipe={"widths": (2, 4), "steps": 1}, progress=False)


class _Oracle:
    """A stand-in for a trained network that outputs the clean masks of the images it is shown (found by value)."""

    def __init__(self, images, masks):
        self.lookup = [(np.asarray(im), np.asarray(m, np.float32)) for im, m in zip(images, masks, strict=True)]

    def predict(self, x):
        return np.stack([next(m for im, m in self.lookup if np.array_equal(im, xi)) for xi in np.asarray(x)])


def test_a_clipped_n_eff_is_not_passed_off_as_calibrated(tiny, monkeypatch):
    """Two networks that both call the clean masks exactly (sparse Dice 1 = clean Dice 1): no n_eff in range
    predicts that, n_eff is N_EFF_MAX, and the calibration says so in its source, with a warning."""
    x = np.asarray(tiny.images)
    monkeypatch.setattr(train, "fit", lambda key, images, labels, **kw: _Oracle(x, tiny.masks))
    with pytest.warns(UserWarning, match="the calibration's source says so"):
        cal = planner.calibrate(jax.random.key(0), x, tiny.masks, recipe={"widths": (2, 4), "steps": 1},
                                progress=False)
    assert (cal.clean_dice, cal.sparse_dice, cal.n_eff) == (1.0, 1.0, planner.N_EFF_MAX)
    assert cal.source != "calibrated" and cal.source.startswith("calibrated, n_eff clipped at N_EFF_MAX")
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal


class _Stuck:
    """A network that failed to train: the same output, below every threshold that matters, on every pixel."""

    def predict(self, x):
        return np.full(np.shape(x)[:3], 0.45, np.float32)


@pytest.mark.filterwarnings("ignore:calibrate. the sparse networks")  # oracle networks: n_eff clipped, said
def test_a_network_that_failed_to_train_is_named_kept_and_not_fitted(tiny, monkeypatch):
    """One flipped draw's network stuck at 0.45 everywhere (Dice 0 at t* = 1/2) among networks that call the clean
    masks: calibrate warns naming it, fits the law to the 7 others (dof 5), keeps it in law.points as failed,
    and predict counts it in the flipped family's rows only."""
    x = np.asarray(tiny.images)
    calls = []

    def fit(key, images, labels, **kw):
        calls.append(kw.get("label_type"))
        return _Stuck() if len(calls) == 5 else _Oracle(x, tiny.masks)  # 5th: the second flip draw, all images

    monkeypatch.setattr(train, "fit", fit)
    with pytest.warns(UserWarning, match=r"1 of 8 networks on fixed draws failed to train .*'flip 0.4 0.4' at 6 "
                                         r"images 0.000 against 1.000"):
        cal = planner.calibrate(jax.random.key(0), x, tiny.masks, recipe={"widths": (2, 4), "steps": 1},
                                progress=False)
    assert [c.name for c in calls[:5]] == ["clean", "sample 0.1", "sample 0.1", "flip 0.4 0.4", "flip 0.4 0.4"]
    law = cal.law
    assert len(law.points) == 8 and [p["failed"] for p in law.points].count(True) == 1 and law.dof == 5
    bad = next(p for p in law.points if p["failed"])
    assert (bad["label"], bad["n_images"], bad["repeat"], bad["dice"]) == ("flip 0.4 0.4", 6, 1, 0.0)
    assert cal.sparse_dice == 1.0  # the first label type's networks all trained
    flip = planner.predict(tiny.masks, "flip 0.3 0.3", calibration=cal)
    assert "1 of 4 calibration networks on flip draws failed to train" in flip.model
    assert "failed" not in planner.predict(tiny.masks, "sample 0.2", calibration=cal).model
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    assert planner.FAILED == training.FAILED == 0.5
    # every flipped network failed: the law has no flip curve, and a flip row says both things
    calls.clear()
    monkeypatch.setattr(train, "fit", lambda key, images, labels, **kw: calls.append(1) or (
        _Stuck() if len(calls) in (4, 5, 9, 10) else _Oracle(x, tiny.masks)))
    with pytest.warns(UserWarning, match="4 of 8 networks on fixed draws failed"):
        cal = planner.calibrate(jax.random.key(0), x, tiny.masks, recipe={"widths": (2, 4), "steps": 1},
                                progress=False)
    assert cal.law.kinds == ("sample",) and len(cal.law.points) == 8 and cal.law.dof == 2
    model = planner.predict(tiny.masks, "flip 0.3 0.3", calibration=cal).model
    assert "memorisation of sample draws (flip not calibrated)" in model
    assert "4 of 4 calibration networks on flip draws failed to train" in model


def test_calibrate_refuses_masks_too_thin_for_the_model_before_training(monkeypatch):
    """1-px lines: the held-out masks leave the model's 1-px partition empty, so no n_eff can be solved on them;
    refused with the reason before any network trains (it used to train both and solve on an empty partition)."""
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("calibrate trained on masks it cannot use"))
    y = np.zeros((8, 32, 32), np.int32)
    y[:, 4::8, 2:30] = 1
    x = y[..., None] + np.random.default_rng(0).normal(0, 0.1, y.shape + (1,))
    with pytest.raises(ValueError, match=r"too thin.*Masks.resolved.*cannot calibrate"):
        planner.calibrate(jax.random.key(0), x, y, recipe={"widths": (2, 4), "steps": 1}, progress=False)


def test_calibrate_on_volumes(monkeypatch):
    """``ndim=3``: 3-D U-Nets on the volumes, 3-D draws (exact counts per volume), the held-out volumes' 3-D
    fields, voxel passes for a cube crop; the calibration says it was measured on volumes and predicts the
    "every k-th slice" rows of a volume plan."""
    vol = data.nuclei(jax.random.key(4), 8, size=16, depth=8, radius=(2.5, 5.0), count=(2, 4), ndim=3)
    calls = spy_on_fit(monkeypatch)
    recipe = {"widths": (4, 8), "steps": 6, "learning_rate": 5e-3, "crop": 8, "batch_size": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # six steps: a clipped n_eff is likely and beside the point
        cal = planner.calibrate(jax.random.key(1), vol.images, vol.masks, recipe=recipe, repeats=1, progress=False,
                                ndim=3)
    assert cal.source.startswith("calibrated on volumes") and cal.n_train == 6
    assert len(calls) == 6 and all(x.ndim == 5 and y.ndim == 4 for x, y, _ in calls)  # clean + 2 families, 2 sizes
    assert all(dict(r.model.config).get("ndim") == 3 for _, _, r in calls)
    # the sample draws count per volume: ceil(0.1 n_fg) voxels of each training volume are labelled
    for x, y, r in calls:
        if getattr(r.label_type, "kind", None) == "sample":
            fg = np.asarray([m.sum() for m in vol.masks])
            assert r.label_type.ndim == 3 and y.shape[1:] == (8, 16, 16)
            assert sorted((y == 1).sum(axis=(1, 2, 3)).tolist()) == sorted(
                int(np.ceil(0.1 * fg[i] - 1e-9)) for i in range(8) if any(np.array_equal(x[j], vol.images[i])
                                                                          for j in range(len(x))))
    assert cal.law.images_seen == 6 * 2 * (8**3 / (8 * 16 * 16))  # cubes of 8: a quarter volume a sample
    plan = planner.table(planner.Masks(vol.masks, ndim=3), calibration=cal, spacings=(2,))
    names = [r.label.name for r in plan.rows] + [lab.name for lab, _ in plan.not_predicted]
    assert {"slices 2", "slices 2 ignore"} <= set(names)
    assert "note: these are volumes" not in plan.text()
