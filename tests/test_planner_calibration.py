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
