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
