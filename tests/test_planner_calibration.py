"""metastructure.planner.calibration and .training: calibrating on images, and the measured defaults' JSON."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from metastructure import data, planner, train
from metastructure.planner import calibration, training

ROOT = Path(__file__).resolve().parent.parent
CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")


@pytest.fixture(scope="module")
def tiny():
    return data.nuclei(jax.random.key(3), 8, size=32)



def test_the_package_reexports_the_calibration():
    assert planner.calibrate is training.calibrate and planner.Calibration is calibration.Calibration
    assert planner.DEFAULT is calibration.DEFAULT and planner.fit_kwargs is calibration.fit_kwargs


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



# ------------------------------------------------------------------ the measured defaults
def _records():
    planner_rec = json.loads((ROOT / "figures" / "planner.json").read_text())
    memorisation_rec = json.loads((ROOT / "figures" / "memorisation.json").read_text())
    return planner_rec, memorisation_rec


def test_the_package_constants_are_what_the_committed_records_give(tmp_path):
    """The experiments' publish, fed the committed full-profile records, writes the package's JSON byte for byte,
    and DEFAULT / NO_AUGMENT_CAPACITY are its values (the records' numbers to 5-6 significant digits)."""
    from simulations import memorisation as sim_memorisation
    from simulations import planner as sim_planner

    planner_rec, memorisation_rec = _records()
    assert planner_rec["profile"] == memorisation_rec["profile"] == "full"
    path = tmp_path / "calibration.json"
    planner.write_constants(default=CAL, no_augment_capacity=1.0, path=path)  # other values, to be replaced
    sim_planner.publish(planner_rec["results"], path=path)
    sim_memorisation.publish(memorisation_rec["results"], path=path)
    assert path.read_bytes() == planner.CONSTANTS_FILE.read_bytes()
    assert planner.read_constants(path=path) == (planner.DEFAULT, planner.NO_AUGMENT_CAPACITY)
    assert planner.read_constants() == (planner.DEFAULT, planner.NO_AUGMENT_CAPACITY)
    # against the records directly: rounding only
    cal, d = planner_rec["results"]["calibration"], planner.DEFAULT
    assert d.n_eff == pytest.approx(cal["n_eff"], rel=1e-5)
    assert d.clean_dice == pytest.approx(cal["clean_dice"], rel=1e-4)
    assert d.sparse_dice == pytest.approx(cal["sparse_dice"], rel=1e-4)
    assert d.capacity == pytest.approx(cal["capacity"], rel=1e-4)
    assert d.memorisation_index == pytest.approx(cal["memorisation_index"], rel=1e-4)
    assert d.recipe == planner.DEFAULT_RECIPE == planner.Calibration.from_dict(cal).recipe and d.label == cal["label"]
    assert (d.n_train, d.n_holdout) == (cal["n_train"], cal["n_holdout"])
    assert d.source == f"default (real nuclei, {planner_rec['results']['tile_size']} px tiles)"
    assert planner.NO_AUGMENT_CAPACITY == pytest.approx(memorisation_rec["results"]["fitted_k"], rel=1e-5)


def test_write_constants_rounds_keeps_what_it_is_not_given_and_refuses_bad_input(tmp_path):
    path = tmp_path / "c.json"
    with pytest.raises(ValueError, match="no_augment_capacity"):  # a new file needs both entries
        planner.write_constants(default=CAL, path=path)
    assert not path.exists()
    raw = planner.Calibration(n_eff=123.456789, clean_dice=0.876543219, recipe=dict(planner.DEFAULT_RECIPE),
                              capacity=1234.56789, memorisation_index=0.000123456789, source="x")
    planner.write_constants(default=raw, no_augment_capacity=98765.4321, path=path)
    cal, k = planner.read_constants(path=path)
    assert (cal.n_eff, cal.clean_dice, cal.capacity, cal.memorisation_index, k) == (
        123.457, 0.87654, 1234.6, 0.00012346, 98765.4)
    assert cal.sparse_dice is None and cal.source == "x" and cal.recipe == planner.DEFAULT_RECIPE
    planner.write_constants(no_augment_capacity=7.0, path=path)  # the calibration stays
    assert planner.read_constants(path=path) == (cal, 7.0)
    with pytest.raises(ValueError, match="positive"):
        planner.write_constants(no_augment_capacity=-1.0, path=path)
    with pytest.raises(TypeError, match="Calibration"):
        planner.write_constants(default=cal.to_dict(), path=path)
    assert planner.read_constants(path=path) == (cal, 7.0)


def test_the_constants_ship_as_package_data():
    """pyproject.toml declares the JSON as package data of metastructure.planner, so a wheel carries it."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = cfg["tool"]["setuptools"]["package-data"]["metastructure.planner"]
    assert planner.CONSTANTS_FILE.name in declared
    assert planner.CONSTANTS_FILE.parent == Path(calibration.__file__).parent
