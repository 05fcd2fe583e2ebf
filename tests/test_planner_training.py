"""metastructure.planner.training: calibrate on images (the two trainings, the split, n_eff, the memorisation
index) and its refusals."""

import json

import jax
import numpy as np
import pytest

from metastructure import data, planner, train
from metastructure.planner import training

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


def check_against_its_networks(cal, calls, images, masks, *, t_star):
    """The calibration's numbers from its two networks (the clean one, then the one on the fixed draw), which the
    spy kept, by their definitions in calibrate's docstring: the held-out images are those neither network
    trained on; clean_dice = pooled Dice of clean >= 1/2 there; sparse_dice = pooled Dice of sparse > t* there;
    the memorisation index = the sparse network's mean output on its training images' drawn foreground pixels
    minus on their left-out foreground pixels (a flip's foreground labels on background pixels are neither);
    capacity = max(index, 0) x the training masks' foreground pixels."""
    (x_tr, y_tr, clean_net), (x_tr2, noisy, sparse_net) = calls[:2]
    np.testing.assert_array_equal(x_tr, x_tr2)  # both trained on the same images
    images, masks = np.asarray(images), np.asarray(masks)
    trained = [any(np.array_equal(im, x) for x in x_tr) for im in images]
    held = ~np.asarray(trained)
    assert (held.sum(), len(x_tr)) == (cal.n_holdout, cal.n_train)
    np.testing.assert_array_equal(y_tr, masks[~held])  # the clean network trained on the clean masks
    assert cal.clean_dice == pytest.approx(pooled_dice(clean_net.predict(images[held]) >= 0.5, masks[held]),
                                           abs=1e-6)
    assert cal.sparse_dice == pytest.approx(pooled_dice(sparse_net.predict(images[held]) > t_star, masks[held]),
                                            abs=1e-6)
    out = sparse_net.predict(x_tr)
    drawn = (noisy == 1) & (y_tr == 1)
    left = (noisy == 0) & (y_tr == 1)
    index = float(out[drawn].mean() - out[left].mean())
    assert cal.memorisation_index == pytest.approx(index, abs=1e-5)
    assert cal.capacity == pytest.approx(max(index, 0.0) * y_tr.sum(), rel=1e-5, abs=1e-6)
    return masks[held]


def test_calibrate_end_to_end_tiny(tiny, monkeypatch):
    recipe = {"widths": (4, 8), "steps": 60, "learning_rate": 5e-3}
    calls = spy_on_fit(monkeypatch)
    cal = planner.calibrate(jax.random.key(0), tiny.images, tiny.masks, recipe=recipe, progress=False)
    assert cal.source == "calibrated" and cal.n_train == 6 and cal.n_holdout == 2
    assert 0.3 < cal.clean_dice <= 1 and planner.N_EFF_MIN <= cal.n_eff <= planner.N_EFF_MAX
    assert cal.recipe["widths"] == (4, 8) and cal.recipe["augment"] is True
    # capacity and the index from the networks themselves (catches drawn and left-out pixels swapped, the
    # held-out images scored in place of the training ones, or another n_fg), and both Dice scores
    held = check_against_its_networks(cal, calls, tiny.images, tiny.masks, t_star=0.05)
    kw = cal.fit_kwargs
    assert kw["steps"] == 60 and kw["model"].name == planner.fit_kwargs(**recipe)["model"].name
    res = train.fit(jax.random.key(1), tiny.images, tiny.masks, progress=False, **{**kw, "steps": 2})
    assert res.predict(tiny.images[:1]).shape == (1, 32, 32)
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    # n_eff is the planner's inversion of the measured sparse Dice: the calibration predicts, for its own label on
    # the held-out masks, the Dice it measured (catches an n_eff solved on other masks, rates or clean Dice). This
    # key's run lies inside [N_EFF_MIN, N_EFF_MAX] (not clipped), so the check is unconditional.
    assert planner.N_EFF_MIN < cal.n_eff < planner.N_EFF_MAX
    assert planner.predict(held, cal.label, calibration=cal).dice == pytest.approx(cal.sparse_dice, abs=1e-6)


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
            sparse[:, 10:16, 10:16] = 1  # 36 foreground pixels an image: a 10% draw labels a handful
            planner.calibrate(jax.random.key(0), x, sparse, names=[f"m{i}.png" for i in range(8)], **kw)
        else:
            planner.calibrate(jax.random.key(0), x, y, recipe={"width": 3})
    msg = str(e.value)
    assert {"shapes": "must match", "one image": "at least 2", "holdout": "holdout", "label": "sparse or flipped",
            "too sparse": "too sparse", "recipe": "unknown recipe"}[how] in msg
    if how == "too sparse":
        assert "m0.png" in msg or "m1.png" in msg


def test_calibrate_with_flipped_labels_and_list_widths(tiny, monkeypatch):
    """A flip label: the labelled foreground and the memorisation index count foreground pixels only; widths given
    as a list (as JSON has them) still round-trip."""
    recipe = {"widths": [4, 8], "steps": 30, "learning_rate": 5e-3}
    calls = spy_on_fit(monkeypatch)
    cal = planner.calibrate(jax.random.key(1), tiny.images, tiny.masks, label="flip 0.3 0.1", recipe=recipe,
                            progress=False)
    assert cal.label == "flip 0.3 0.1" and cal.recipe["widths"] == (4, 8) and cal.capacity is not None
    # the index from the sparse network on foreground pixels only (catches a flip's foreground labels on background
    # pixels counted as drawn); t* of flip f = 0.3, b = 0.1 is (1 + b - f) / 2 = 0.4
    check_against_its_networks(cal, calls, tiny.images, tiny.masks, t_star=0.4)
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
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


def test_calibrate_refuses_masks_too_thin_for_the_model_before_training(monkeypatch):
    """1-px lines: the held-out masks leave the model's 1-px partition empty, so no n_eff can be solved on them;
    refused with the reason before any network trains (it used to train both and solve on an empty partition)."""
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("calibrate trained on masks it cannot use"))
    y = np.zeros((8, 32, 32), np.int32)
    y[:, 4::8, 2:30] = 1
    x = y[..., None] + np.random.default_rng(0).normal(0, 0.1, y.shape + (1,))
    with pytest.raises(ValueError, match=r"too thin.*Masks.resolved.*cannot calibrate"):
        planner.calibrate(jax.random.key(0), x, y, recipe={"widths": (2, 4), "steps": 1}, progress=False)
