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
