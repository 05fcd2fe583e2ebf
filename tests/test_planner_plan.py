"""metastructure.planner.plan: the whole plan (table, text, JSON); the `plan` command is in
test_metastructure_cli.py."""

import json

import numpy as np
import pytest
from helpers import blobs

from metastructure import planner
from metastructure.planner import plan as plan_module

CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")


@pytest.fixture(scope="module")
def masks():
    return np.stack([blobs((48, 48), seed=s, sigma=2.5, level=0.75) for s in range(4)]).astype(np.int32)


def test_the_package_reexports_the_plan():
    assert planner.table is plan_module.table and planner.Plan is plan_module.Plan
    assert planner.RATIOS == plan_module.RATIOS and planner.VALIDATED == plan_module.VALIDATED


def test_predictions_fall_with_worse_labels(masks):
    plan = planner.table(masks, calibration=CAL)
    d = {r.label.name: r.dice for r in plan.rows}
    ratios = [d[f"sample {p:g}"] for p in planner.RATIOS]
    assert all(a >= b for a, b in zip(ratios, ratios[1:], strict=False)) and d["clean"] >= ratios[0]
    flips = [d[f"flip {f:g} {f:g}"] for f in planner.FLIPS]
    assert all(a > b for a, b in zip(flips, flips[1:], strict=False))
    for op in ("dilate", "erode"):
        rs = [d[f"{op} {r}"] for r in planner.RADII]
        assert all(a > b for a, b in zip(rs, rs[1:], strict=False))
    assert [r.family for r in plan.rows][0] == "CL" and plan.rows[-1].family == "RL"


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


def test_table_rows_are_the_label_types_of_the_values_given(masks):
    """radii=(1.5,) printed "dilate 1" (the radius truncated by int()) on main, and ratios=(1e-9,) raised
    AttributeError. Each row is now the label type built from the value as given."""
    plan = planner.table(masks, calibration=CAL, ratios=(1e-9, 0.1), flips=(0.25,), radii=(1.5, 2.0))
    names = [r.label.name for r in plan.rows]
    assert names == ["clean", "sample 1e-09", "sample 0.1", "flip 0.25 0.25", "dilate 1.5", "dilate 2",
                     "erode 1.5", "erode 2", "skeleton", "random 0.5"]
    by = {r.label.name: r for r in plan.rows}
    for name in ("dilate 1.5", "erode 1.5", "flip 0.25 0.25"):
        assert by[name].dice == planner.predict(masks, name, calibration=CAL).dice
    # a disk of radius 1.5 is the 3 x 3 square, radius 1 the cross: the two rows differ
    assert by["dilate 1.5"].dice != planner.predict(masks, "dilate 1", calibration=CAL).dice
    assert by["sample 1e-09"].family == "RL" and by["sample 1e-09"].threshold is None
    assert "dilate 1.5" in plan.text() and json.loads(json.dumps(plan.to_dict()))["rows"][4]["params"] == [1.5]


@pytest.mark.parametrize("arg, value, err", [("ratios", (0.1, 1.5), ValueError), ("flips", (-0.1,), ValueError),
                                             ("radii", (-1,), ValueError), ("radii", (float("nan"),), ValueError),
                                             ("ratios", "0.1", TypeError), ("radii", 2, TypeError),
                                             ("flips", ("0.1",), TypeError), ("calibration", {}, TypeError)])
def test_table_refuses_bad_rows_naming_the_argument(masks, arg, value, err):
    with pytest.raises(err, match=arg):
        planner.table(masks, **{"calibration": CAL, arg: value})


def test_a_plan_of_thin_masks_lists_what_it_cannot_predict():
    """1-px lines: the sampled, flipped and skeleton rows are not predicted (they used to read Dice 0 and the
    skeleton an arbitrary number); clean, dilation, erosion and random labels are, and the text says which not."""
    m = np.zeros((64, 64), np.int32)
    m[4::8, 2:62] = 1
    p = planner.table(m, ratios=(0.5, 0.1), flips=(0.2,), radii=(1,))
    assert [r.label.name for r in p.rows] == ["clean", "dilate 1", "erode 1", "random 0.5"]
    assert [lab.name for lab, _ in p.not_predicted] == ["sample 0.5", "sample 0.1", "flip 0.2 0.2", "skeleton"]
    assert all("too thin" in why for _, why in p.not_predicted)
    text = p.text()
    assert "not predicted: sample 0.5, sample 0.1, flip 0.2 0.2, skeleton" in text and "sample 0.5      RCL" not in text
    d = json.loads(json.dumps(p.to_dict()))
    assert [r["label"] for r in d["not_predicted"]] == ["sample 0.5", "sample 0.1", "flip 0.2 0.2", "skeleton"]
    thick = np.zeros((64, 64), np.int32)
    thick[10:40, 10:40] = 1
    assert planner.table(thick).not_predicted == []


def test_a_volume_plan_answers_how_many_slices(tmp_path):
    """On volumes the table adds "slices k" and "slices k ignore" for every spacing of SPACINGS, the text says up
    to which k each stays within HOW_MANY_SLACK of clean (and that the default calibration is a 2-D network's),
    the record keeps the word, the figure gets its fourth panel; images get no such rows unless asked."""
    rng = np.random.default_rng(0)
    z, r, c = np.mgrid[:8, :24, :24]
    vol = np.stack([((z - 4) / 3) ** 2 + ((r - rng.uniform(8, 16)) / 6) ** 2 + ((c - rng.uniform(8, 16)) / 5) ** 2 < 1
                    for _ in range(3)])
    plan = planner.table(planner.Masks(vol, ndim=3), n_images=24)  # masks like these, 24 volumes to train on
    names = [row.label.name for row in plan.rows] + [lab.name for lab, _ in plan.not_predicted]
    want = [f"slices {k}" for k in planner.SPACINGS] + [f"slices {k} ignore" for k in planner.SPACINGS]
    assert sorted(n for n in names if n.startswith("slices")) == sorted(want)
    # 24 training volumes of 8 slices: 192 slices, so k = 50 labels about 4 with objects (refused), k = 2 about 96
    refused = {lab.name for lab, _ in plan.not_predicted}
    assert {"slices 50", "slices 50 ignore"} <= refused and "slices 2" not in refused
    dice = {row.label.name: row.dice for row in plan.rows}
    assert all(dice[f"slices {k}"] <= dice[f"slices {k} ignore"] for k in planner.SPACINGS if f"slices {k}" in dice)
    text = plan.text()
    assert "every k-th slice, unlabelled slices as ignore: within 0.05 of the clean Dice up to" in text
    assert "note: these are volumes" in text
    rec = json.loads(json.dumps(plan.to_dict()))
    assert rec["rows"][-1]["params"][1] == "ignore" and rec["masks"]["ndim"] == 3
    plan.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 20_000
    img = np.stack([blobs((32, 32), seed=s) for s in range(2)])
    assert not any(row.label.kind == "slices" for row in planner.table(img).rows)
    assert [row.label.name for row in planner.table(img, spacings=(4,)).rows][-2:] == ["slices 4", "slices 4 ignore"]
    with pytest.raises(ValueError, match="spacings"):
        planner.table(img, spacings=(0,))
