"""metastructure.planner.calibration: the Calibration record, fit_kwargs, and the measured defaults' JSON."""

import json
from pathlib import Path

import pytest

from metastructure import planner
from metastructure.planner import calibration

ROOT = Path(__file__).resolve().parent.parent
CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")


def test_the_package_reexports_the_calibration():
    assert planner.Calibration is calibration.Calibration
    assert planner.DEFAULT is calibration.DEFAULT and planner.fit_kwargs is calibration.fit_kwargs


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


BAD_VALUES = [("n_eff", -5.0), ("n_eff", 0.0), ("n_eff", float("nan")), ("n_eff", float("inf")), ("n_eff", 0.5),
              ("n_eff", 5e-324), ("n_eff", 1e308),
              ("clean_dice", 1.7), ("clean_dice", -0.1), ("clean_dice", float("nan")), ("sparse_dice", 1.01),
              ("capacity", -1.0), ("capacity", float("inf")), ("memorisation_index", 1.5),
              ("memorisation_index", float("nan")), ("n_train", -1), ("n_holdout", -3), ("label", "dilate 1"),
              ("label", "sample 10%"), ("label", "random 0.5"), ("source", ""), ("recipe", {"width": 3}),
              ("recipe", {"steps": 0}), ("recipe", {"learning_rate": -1e-3})]
BAD_TYPES = [("n_eff", "many"), ("n_eff", None), ("clean_dice", True), ("n_train", 2.5), ("n_holdout", "8"),
             ("label", 0.1), ("source", None), ("recipe", [("steps", 3)]), ("recipe", {"widths": "8"}),
             ("recipe", {"steps": 2.5}), ("recipe", {"augment": "yes"})]


@pytest.mark.parametrize("field, value, err", [(f, v, ValueError) for f, v in BAD_VALUES]
                         + [(f, v, TypeError) for f, v in BAD_TYPES])
def test_calibration_values_are_checked_on_every_path(field, value, err):
    """Calibration(n_eff=-5, clean_dice=1.7) predicted Dice 1.7 on main, n_eff NaN or 0 the clean Dice, and a
    hand-edited plan.json flowed through from_dict: the constructor and from_dict refuse the value, naming it."""
    record = {**CAL.to_dict(), field: value}
    with pytest.raises(err, match=field):
        planner.Calibration(**record)
    with pytest.raises(err, match=field):
        planner.Calibration.from_dict(record)


def test_a_valid_calibration_keeps_its_values_and_from_dict_names_bad_records():
    cal = planner.Calibration(n_eff=7, clean_dice=1, recipe={"widths": [4, 8], "steps": 5}, capacity=0,
                              memorisation_index=-0.25, n_train=3, sparse_dice=0.0, label="flip 0.3 0.1")
    assert (cal.n_eff, cal.clean_dice, cal.capacity, cal.memorisation_index) == (7.0, 1.0, 0.0, -0.25)
    assert cal.recipe == {"widths": (4, 8), "steps": 5} and type(cal.n_eff) is float
    assert planner.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    with pytest.raises(ValueError, match=r"unknown keys \['clean'\]"):
        planner.Calibration.from_dict({**CAL.to_dict(), "clean": 0.9})
    with pytest.raises(ValueError, match=r"missing \['n_eff'\]"):
        planner.Calibration.from_dict({k: v for k, v in CAL.to_dict().items() if k != "n_eff"})
    with pytest.raises(TypeError, match="d must be a dict"):
        planner.Calibration.from_dict([("n_eff", 3.0)])
