"""Feature similarity (linear CKA) of every layer to a clean-trained network's, per label type.

U-Nets on NUC-like images trained on clean, sampled (10%), flipped (f = b =
0.3), dilated and eroded (r = 2), skeleton and random labels. Each layer's
features on probe images (fixed pixel positions) are compared with linear
CKA to those of a clean-trained network of *another* seed, so clean vs clean
gives the floor of seed-to-seed variation. The ordering to see:
RCL ~ CL > PCL > RL. (With one seed the clean reference would be the same
network, and clean would score 1 by construction: both profiles use at least two.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metastructure import metrics
from metastructure.noise import LabelNoise

from ._common import base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import mean, num, para, pm, span

TYPES = [("clean",), ("sample", 0.1), ("flip", 0.3, 0.3), ("dilate", 2), ("erode", 2), ("skeleton",),
         ("random", 0.3)]
# two seeds even in the quick profile: the clean reference of seed s is the clean network of seed s + 1
PROFILES = {"quick": base("quick", types=TYPES, seeds=2), "full": base("full", types=TYPES)}
REQUIRES = ()


def _name(t) -> str:
    return " ".join([t[0], *(f"{v:g}" for v in t[1:2])])


def _family(t) -> str:
    """The paper's family of a configured label type (``("flip", 0.3, 0.3)``: RCL)."""
    return LabelNoise(*t).family


def _spec(config: dict, t, seed: int) -> dict:
    return spec(config, dataset("nuclei", config["profile"]), *t, seed=seed, features=True)


def cells(config: dict) -> list[dict]:
    return [_spec(config, t, s) for t in config["types"] for s in range(config["seeds"])]


def summarise(config: dict, store) -> dict:
    n = config["seeds"]
    ref = [store.arrays(_spec(config, ("clean",), s)) for s in range(n)]
    layers = [k[5:] for k in ref[0] if k.startswith("feat_")]
    out = {"layers": layers, "types": {}}
    for t in config["types"]:
        per_seed = []
        for s in range(n):
            a = store.arrays(_spec(config, t, s))
            b = ref[(s + 1) % n]
            per_seed.append([metrics.linear_cka(a[f"feat_{lay}"], b[f"feat_{lay}"]) for lay in layers])
        res = [store.result(_spec(config, t, s)) for s in range(n)]
        out["types"][_name(t)] = {
            "cka": [stats(v) for v in np.array(per_seed).T],
            "mean_cka": stats(np.mean(per_seed, axis=1)),
            "oracle_dice": stats([max(r["final"]["oracle"]["dice"], r["final"]["oracle_inverted"]["dice"])
                                  for r in res]),
        }
    rcl = [out["types"][_name(t)]["mean_cka"]["mean"] for t in config["types"] if _family(t) == "RCL"]
    pcl = [out["types"][_name(t)]["mean_cka"]["mean"] for t in config["types"] if _family(t) == "PCL"]
    sds = [v["mean_cka"]["std"] for v in out["types"].values()]
    out["ordering"] = {"rcl_min": min(rcl) if rcl else None, "pcl_max": max(pcl) if pcl else None,
                       "largest_sd": max(sds)}
    if rcl and pcl and min(rcl) <= max(pcl):
        out["note"] = (f"RCL > PCL not separated by CKA: lowest RCL {min(rcl):.2f} <= highest PCL {max(pcl):.2f}; "
                       f"sd over seeds up to {max(sds):.2f}")
    return out


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    fig, ax = plt.subplots(1, 2, figsize=(14, 4.5), constrained_layout=True, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(res["layers"]))
    for i, (name, r) in enumerate(res["types"].items()):
        errorbar(ax[0], x, r["cka"], color=f"C{i}", marker="o", ms=4, label=name)
    ax[0].set_xticks(x, res["layers"])
    ax[0].set(xlabel="layer", ylabel="linear CKA to a clean network (other seed)", ylim=(0, 1.02),
              title="(a) per layer")
    ax[0].legend(fontsize=8)
    names = list(res["types"])
    m = [res["types"][k]["mean_cka"] for k in names]
    d = [res["types"][k]["oracle_dice"] for k in names]
    for i, k in enumerate(names):
        ax[1].errorbar([m[i]["mean"]], [d[i]["mean"]], xerr=[m[i]["std"]], yerr=[d[i]["std"]], fmt="o",
                       color=f"C{i}", capsize=3, label=k)
    ax[1].set(xlabel="mean CKA over layers", ylabel="test Dice (oracle)", xlim=(0, 1.02), ylim=(0, 1),
              title="(b) similar features, similar segmentation")
    save_figure(fig, path, f"feature_maps: U-Net {cfg['net']} on NUC-like images, {cfg['seeds']} seed(s), mean +- sd"
                 + (f"\n{res['note']}" if res.get("note") else ""), fontsize=10)


# ------------------------------------------------------------------ the results document
def not_reproduced(record: dict, records: dict) -> list[str]:
    """The results document's "not reproduced" entry: the RCL ~ CL > PCL feature ordering, when CKA does not
    separate RCL from PCL."""
    o, cfg = record["results"]["ordering"], record["config"]
    if o["rcl_min"] > o["pcl_max"]:
        return []
    return [f"the feature ordering RCL ~ CL > PCL (the paper's feature-map analysis as we read its text; its "
            f"figure was not available to us): linear CKA to a clean network does not separate RCL from PCL here "
            f"(lowest RCL {num(o['rcl_min'])} <= highest PCL {num(o['pcl_max'])}), with an sd over seeds up to "
            f"{num(o['largest_sd'], 2)} on {cfg['seeds']} seed(s): undecided (too few seeds and probe images to "
            "separate the two), not refuted."]



TITLE = "how similar are the learned features?"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    res = record["results"]
    types = res["types"]
    fam = {_name(t): _family(t) for t in record["config"]["types"]}
    order = sorted(types, key=lambda n: -types[n]["mean_cka"]["mean"])
    text = (f"Linear CKA of every layer's features ({', '.join(res['layers'])}) to a clean network of another seed, "
            "NUC-like images. Mean over layers: "
            + ", ".join(f"`{n}` {pm(types[n]['mean_cka'])}" + (" (the seed-to-seed floor)" if fam[n] == "CL" else "")
                        for n in order) + ".")
    rl = [n for n in types if fam[n] == "RL"]
    rest = [n for n in types if fam[n] != "RL"]
    if rl and rest:
        low = max(types[n]["mean_cka"]["mean"] for n in rl)
        nxt = min(types[n]["mean_cka"]["mean"] for n in rest)
        text += (f" Random labels stand apart, lowest ({num(low)} against at least {num(nxt)} for the others), as "
                 "we read the paper's feature-map analysis (its figure was not available to us)." if low < nxt else
                 f" Random labels are not the lowest ({num(low)} against {num(nxt)}), unlike the paper's "
                 "feature-map analysis as we read it (its figure was not available to us).")
    o = res["ordering"]
    sep = o["rcl_min"] > o["pcl_max"]
    dice = {f: [mean(types[n]["oracle_dice"]) for n in types if fam[n] == f] for f in ("RCL", "PCL")}
    dsep = min(dice["RCL"]) > max(dice["PCL"])
    text += (f" CKA {'separates' if sep else 'does not separate'} RCL from PCL here (lowest RCL "
             f"{num(o['rcl_min'])} {'>' if sep else '<='} highest PCL {num(o['pcl_max'])}, with sd over seeds up "
             f"to {num(o['largest_sd'], 2)}), so the paper's RCL ~ CL > PCL ordering is "
             f"{'reproduced' if sep else 'not reproduced'} by the features; their oracle Dice "
             f"{'does' if dsep else 'does not either'} separate them ({span(dice['RCL'])} for RCL against "
             f"{span(dice['PCL'])} for PCL).")
    return [para(text)]
