"""How much a label type tells about the truth (its transition matrix T) against the Dice it yields.

For every binary label type and rate trained in ``rcl_sampling``,
``rcl_flipping`` and ``pcl`` (read from the store, nothing retrained): T
(closed form, or estimated on the training pairs for dilate / erode /
skeleton), det T, rank, numerical rank, the mutual information I(Y; Y*) and
DMI = log |det Q| of the joint Q = diag(prior) T, against the test Dice at the
oracle threshold (either orientation; mean over seeds). Spearman rank
correlations are reported. Lemma 2: what the labels can distinguish is
rank(T) (random labels: rank 1). Beyond rank, det and information measure
*pixelwise* agreement, which sampling lowers a lot without moving the
boundary, while dilation keeps them high and moves it: the plot shows how far
the information in T orders the label types the way Dice does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from metastructure import ntm

from . import _cells, registry
from ._common import pyplot, save_figure
from ._text import SHORT, listing, num, para, pct

PROFILES = {"quick": {"profile": "quick", "seeds": 1}, "full": {"profile": "full", "seeds": 3}}
REQUIRES = ("rcl_sampling", "rcl_flipping", "pcl")
MEASURES = ("det", "numerical_rank", "mutual_information", "dmi")


def cells(config: dict) -> list[dict]:
    return []  # reads the cells of REQUIRES


def summarise(config: dict, store) -> dict:
    groups: dict[tuple, dict] = {}
    for req in REQUIRES:
        for spec in registry.experiment(req).cells(registry.config_of(req, config["profile"], config["seeds"])):
            lab = spec["labels"]
            # one point per (data, label type, regime, training setup); its seeds are the cells that differ only
            # in the seed (a cell that two experiments share is counted once)
            key = (json.dumps(spec["data"], sort_keys=True), lab["kind"], tuple(lab.get("params", ())),
                   lab["regime"], json.dumps([spec["net"], spec["opt"]], sort_keys=True))
            if key in groups and spec["seed"] in groups[key]["seeds"]:
                continue
            g = groups.setdefault(key, {"name": f"{spec['data']['name']} {_cells.label_noise(lab).name}",
                                        "dataset": spec["data"]["name"], "kind": lab["kind"],
                                        "family": _cells.label_noise(lab).family, "seeds": [], "dice": [],
                                        "transition": []})
            r = store.result(spec)
            g["seeds"].append(spec["seed"])
            g["dice"].append(max(r["final"]["oracle"]["dice"], r["final"]["oracle_inverted"]["dice"]))
            g["transition"].append(r["transition"])
            if "prior" not in g:
                masks = _cells.load_data(spec["data"])["train"].masks
                g["prior"] = float(np.mean(masks))
    points = []
    for g in groups.values():
        t = np.mean(np.asarray(g["transition"], float), axis=0)
        q = ntm.joint_from_transition(t, [1 - g["prior"], g["prior"]])
        points.append({
            "name": g["name"], "dataset": g["dataset"], "kind": g["kind"], "family": g["family"],
            "transition": t.tolist(), "dice": float(np.mean(g["dice"])), "dice_sd": float(np.std(g["dice"])),
            "det": ntm.determinant(t), "rank": ntm.rank(t), "numerical_rank": ntm.numerical_rank(t),
            "mutual_information": ntm.mutual_information(q), "dmi": ntm.dmi(q),
        })
    dice = [p["dice"] for p in points]
    corr = {}
    for m in MEASURES + ("abs_det",):
        vals = [abs(p["det"]) if m == "abs_det" else p[m] for p in points]
        rho, pval = spearmanr(vals, dice) if len(points) > 2 else (np.nan, np.nan)
        corr[m] = {"spearman": float(rho), "p_value": float(pval), "n": len(points)}
    return {"points": points, "spearman": corr}


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res = record["results"]
    pts = res["points"]
    fig, ax = plt.subplots(1, 4, figsize=(19, 4.4), constrained_layout=True)
    colors = {"CL": "k", "RCL": "C0", "PCL": "C3", "RL": "C7"}
    markers = {"er": "^", "mito": "s", "nuclei": "o"}
    for a, m in zip(ax, ("abs_det", "numerical_rank", "mutual_information", "dmi"), strict=False):
        for fam, col in colors.items():
            for ds, mk in markers.items():
                sel = [p for p in pts if p["family"] == fam and p["dataset"] == ds]
                if sel:
                    x = [abs(p["det"]) if m == "abs_det" else p[m] for p in sel]
                    a.errorbar(x, [p["dice"] for p in sel], yerr=[p["dice_sd"] for p in sel], fmt=mk, color=col,
                               ms=5, capsize=2, label=f"{fam} {ds}")
        c = res["spearman"][m]
        a.set(xlabel=m.replace("abs_det", "|det T|"), ylabel="test Dice (oracle)", ylim=(0, 1),
              title=f"Spearman rho = {c['spearman']:.2f} (n = {c['n']})")
    ax[0].legend(fontsize=6, ncol=2)
    save_figure(fig, path,
                "ntm_information: information in T vs the Dice networks reach (RCL: blue, PCL: red, RL: grey, "
                "CL: black); markers: dataset", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "what T says, and what it does not"
NTM_EXAMPLE = ("nuclei sample 0.1", "er dilate 2")  # two points the text contrasts


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    res = record["results"]
    pts, sp = res["points"], res["spearman"]
    labels = {"abs_det": "|det T|", "numerical_rank": "numerical rank", "mutual_information": "mutual information",
              "dmi": "DMI", "det": "signed det T"}
    text = ("Every binary label type and rate of `rcl_sampling`, `rcl_flipping` and `pcl` "
            f"({len(pts)} points, from the store): |det T|, numerical rank, mutual information and DMI of the "
            "label pair against the Dice reached (oracle threshold, either orientation). Spearman rho = "
            + ", ".join(f"{num(sp[k]['spearman'], 2)} ({labels.get(k, k)})" for k in labels if k in sp) + ".")
    r1 = [p for p in pts if p["numerical_rank"] == 1]
    r2 = [p for p in pts if p["numerical_rank"] > 1]
    if r1 and r2:
        top1, low2 = max(p["dice"] for p in r1), min(p["dice"] for p in r2)
        text += (f" Rank (Lemma 2) {'separates' if top1 < low2 else 'does not separate'} the label types of "
                 f"numerical rank 1 (" + listing([f"`{p['name']}`" for p in r1]) + f"; Dice at most {num(top1)}) "
                 f"from the rest (Dice at least {num(low2)}).")
    disc = tot = 0
    for i, a in enumerate(r2):
        for b in r2[i + 1:]:
            if a["dice"] != b["dice"] and abs(a["det"]) != abs(b["det"]):
                tot += 1
                disc += (a["dice"] - b["dice"]) * (abs(a["det"]) - abs(b["det"])) < 0
    if tot:
        text += (f" Beyond rank, |det T| orders {pct(disc / tot)} of the pairs of rank-2 points the other way "
                 f"round from their Dice.")
    by = {p["name"]: p for p in pts}
    a, b = by.get(NTM_EXAMPLE[0]), by.get(NTM_EXAMPLE[1])
    if a and b:
        mis = abs(a["det"]) < abs(b["det"]) and a["mutual_information"] < b["mutual_information"] \
            and a["dice"] > b["dice"]
        da, _, pa = NTM_EXAMPLE[0].split()
        db, _, pb = NTM_EXAMPLE[1].split()
        text += (f" For example, sampling {pct(float(pa))} of {SHORT.get(da, da)} has |det T| = "
                 f"{num(abs(a['det']), 2)} and MI {num(a['mutual_information'])} nats and reaches Dice "
                 f"{num(a['dice'])}, while dilating {SHORT.get(db, db)} by {pb} px keeps |det T| = "
                 f"{num(abs(b['det']), 2)} and MI {num(b['mutual_information'], 2)} nats and reaches {num(b['dice'])}"
                 + (": the information in T mis-orders them. Pixelwise agreement is not what a network learns."
                    if mis else "."))
    return [para(text)]
