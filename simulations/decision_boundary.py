"""The central claim: networks trained on clean, sampled and flipped labels find the same boundary.

U-Nets on NUC-like images, in the regime where the claim holds (a fresh noisy
draw at every step, plenty of images; ``memorisation`` shows the other regime).
Label types: clean; sampled with p = 0.5, 0.1, 0.05, 0.01; flipped with
f = b = 0.3 and 0.45. At every evaluation the test predictions are thresholded
at each network's t* (clean: 1/2; sampling: p/2; flipping: (1 + b - f)/2) and
compared:

* the distance (ASSD, px) from each noisy-trained network's boundary to the
  clean-trained network's boundary (same seed, same step), against the
  distance between two clean networks of different seeds (the floor);
* each network's distance to the ground-truth boundary;
* the mean output inside / outside objects against the predicted levels
  (p, 0) for sampling and (1 - f, b) for flipping (Lemma 1 + proper scoring).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metastructure import metrics
from theory import curves

from . import _cells
from ._common import base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import DATA, g, listing, mean, num, para, pm, span

SETTINGS = [("clean",), ("sample", 0.5), ("sample", 0.1), ("sample", 0.05), ("sample", 0.01),
            ("flip", 0.3, 0.3), ("flip", 0.45, 0.45)]
PROFILES = {
    "quick": base("quick", data=dataset("nuclei", "quick"), settings=SETTINGS[:1] + SETTINGS[2:3] + SETTINGS[5:6]),
    # sparse labels carry fewer labelled pixels per step: twice the common 200 steps to see them converge
    "full": base("full", data=dataset("nuclei", "full"), settings=SETTINGS, every=50,
                 opt={"steps": 400, "batch": 8, "lr": 0.002}),
}
REQUIRES = ()


def _spec(config: dict, setting, seed: int) -> dict:
    return spec(config, config["data"], *setting, regime="fresh", seed=seed, masks=True)


def _settings(config: dict) -> list[tuple]:
    """The configured settings, clean first (every distance is measured to it)."""
    rest = [tuple(st) for st in config["settings"] if tuple(st) != ("clean",)]
    return [("clean",), *rest]


def cells(config: dict) -> list[dict]:
    return [_spec(config, st, s) for st in _settings(config) for s in range(config["seeds"])]


def _name(setting) -> str:
    if setting[0] == "clean":
        return "clean"
    return f"sample p={setting[1]:g}" if setting[0] == "sample" else f"flip f=b={setting[1]:g}"


def _levels(setting) -> tuple[float, float]:
    if setting[0] == "clean":
        return 1.0, 0.0
    if setting[0] == "sample":
        fg, bg = curves.output_levels(1 - setting[1], 0.0)
    else:
        fg, bg = curves.output_levels(setting[1], setting[2])
    return float(fg), float(bg)


def summarise(config: dict, store) -> dict:
    seeds = range(config["seeds"])
    clean = [_spec(config, ("clean",), s) for s in seeds]
    clean_masks = [_cells.unpack_masks(store.arrays(c)) for c in clean]
    steps = [h["step"] for h in store.result(clean[0])["history"]]
    floor = []  # clean seed s vs clean seed s+1: how far two equally good networks disagree
    if config["seeds"] > 1:
        for s in seeds:
            a, b = clean_masks[s], clean_masks[(s + 1) % config["seeds"]]
            floor.append([metrics.boundary_distance(a[i], b[i])["mean"] for i in range(len(steps))])
    out = {"steps": steps, "settings": {}, "clean_seed_floor": [stats(v) for v in np.array(floor).T]
           if floor else None}
    for st in _settings(config):
        to_clean, to_truth, dice, fg, bg = [], [], [], [], []
        for s in seeds:
            c = _spec(config, st, s)
            r = store.result(c)
            m = _cells.unpack_masks(store.arrays(c))
            to_clean.append([metrics.boundary_distance(m[i], clean_masks[s][i])["mean"] for i in range(len(steps))])
            to_truth.append([h["bd_mean"] for h in r["history"]])
            dice.append([h["dice_tstar"] for h in r["history"]])
            fg.append(r["final"]["mean_fg"]["value"])
            bg.append(r["final"]["mean_bg"]["value"])
        pf, pb = _levels(st)
        out["settings"][_name(st)] = {
            "setting": list(st),
            "to_clean": [stats(v) for v in np.array(to_clean).T],
            "to_truth": [stats(v) for v in np.array(to_truth).T],
            "dice_tstar": [stats(v) for v in np.array(dice).T],
            "mean_fg": stats(fg), "mean_bg": stats(bg), "predicted_fg": pf, "predicted_bg": pb,
        }
    if out["clean_seed_floor"]:  # which settings have not come within 2x the seed-to-seed floor by the end
        floor = out["clean_seed_floor"][-1]["mean"]
        far = [f"{k} {v['to_clean'][-1]['mean']:.2f} px" for k, v in out["settings"].items()
               if k != "clean" and v["to_clean"][-1]["mean"] > 2 * floor]
        if far:
            out["note"] = (f"at step {steps[-1]}, still beyond twice the clean-vs-clean floor ({floor:.2f} px): "
                           + ", ".join(far))
    return out


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res = record["results"]
    steps = res["steps"]
    fig, ax = plt.subplots(1, 4, figsize=(20, 4.4), constrained_layout=True)
    for i, (name, r) in enumerate(res["settings"].items()):
        kw = {"color": f"C{i}", "marker": "o", "ms": 3, "label": name}
        if name != "clean":
            errorbar(ax[0], steps, r["to_clean"], band=True, **kw)
        errorbar(ax[1], steps, r["to_truth"], band=True, **kw)
        errorbar(ax[2], steps, r["dice_tstar"], **kw)
        ax[3].errorbar([r["predicted_fg"]], [r["mean_fg"]["mean"]], yerr=[r["mean_fg"]["std"]], fmt="o",
                       color=f"C{i}", capsize=3, label=name)
        ax[3].errorbar([r["predicted_bg"]], [r["mean_bg"]["mean"]], yerr=[r["mean_bg"]["std"]], fmt="s",
                       color=f"C{i}", capsize=3, mfc="none")
    if res["clean_seed_floor"]:
        errorbar(ax[0], steps, res["clean_seed_floor"], band=True, color="k", ls="--",
                 label="clean vs clean (other seed)")
    ax[0].set(xlabel="training step", ylabel="ASSD to the clean network's boundary (px)", yscale="log",
              title="(a) noisy at t* vs clean at 1/2 (band: sd)")
    ax[1].set(xlabel="training step", ylabel="ASSD to the true boundary (px)", yscale="log",
              title="(b) each network vs ground truth")
    ax[2].set(xlabel="training step", ylabel="test Dice at t*", ylim=(0, 1), title="(c) Dice at each network's t*")
    ax[3].plot([0, 1], [0, 1], color="gray", lw=1)
    ax[3].set(xlabel="predicted output level (p or 1-f: o; 0 or b: square)", ylabel="measured mean output",
              title="(d) output inside (o) / outside (square) objects")
    for a in ax:
        a.legend(fontsize=7)
    n = record["config"]["seeds"]
    save_figure(fig, path,
                f"decision_boundary: U-Net {record['config']['net']}, fresh draws, NUC-like, mean +- sd over {n} "
                "seed(s)" + (f"\n{res['note']}" if res.get("note") else ""), fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "the same boundary from clean, sampled and flipped labels"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    steps, st = res["steps"], res["settings"]
    floor = mean(res["clean_seed_floor"][-1]) if res["clean_seed_floor"] else None  # None: a single seed
    noisy = [k for k in st if k != "clean"]
    final = {k: mean(st[k]["to_clean"][-1]) for k in noisy}
    falls = all(final[k] < mean(st[k]["to_clean"][0]) for k in noisy)
    order = sorted(noisy, key=final.__getitem__)
    text = (f"Networks trained with a fresh draw at every step ({cfg['opt']['steps']} steps, "
            f"{DATA.get(cfg['data']['name'], cfg['data']['name'])} images), each thresholded at its own t*. The "
            f"distance (ASSD) from each noisy-trained network's boundary to the clean-trained one "
            + ("falls through training for every label type" if falls else "does not fall for every label type")
            + ", to " + listing([f"{num(final[k], 2)} px (`{k}`)" for k in order])
            + (f" at step {steps[-1]}, against {num(floor, 2)} px between two clean networks of different seeds "
               f"(the floor)." if floor is not None else
               f" at step {steps[-1]} (one seed: no clean-vs-clean floor to compare with)."))
    near = [k for k in order if floor is not None and final[k] <= 2 * floor]
    far = [k for k in order if floor is not None and final[k] > 2 * floor]
    dice = {k: st[k]["dice_tstar"][-1] for k in st}
    if near:
        text += (f" Within {steps[-1]} steps " + listing([f"`{k}`" for k in near]) + f" reach twice the floor "
                 f"({num(2 * floor, 2)} px; Dice at t* {span(mean(dice[k]) for k in near)})")
    if far:
        text += ("; " if near else " ") + listing([f"`{k}`" for k in far]) + (" are" if len(far) > 1 else " is") + \
            " still beyond it (Dice " + ", ".join(num(mean(dice[k])) for k in far) + "): sparser and noisier labels " \
            "converge more slowly (fewer labelled pixels, or less signal, per step)"
        slow = far[-1]
        text += (f". The slowest, `{slow}`, falls from {num(mean(st[slow]['to_clean'][0]), 2)} px at step "
                 f"{steps[0]} to {num(final[slow], 2)} px, with Dice at t* {pm(dice[slow])} against "
                 f"{pm(dice['clean'])} for clean labels.")
    elif near:
        text += "."
    levels = [(k, mean(st[k]["mean_fg"]), mean(st[k]["mean_bg"]), st[k]["predicted_fg"], st[k]["predicted_bg"])
              for k in st]
    dev, where = max(max((abs(f - pf), f"`{k}` on objects"), (abs(b - pb), f"`{k}` on background"))
                     for k, f, b, pf, pb in levels)
    text2 = ("Mean outputs on objects / background against the levels the theory predicts: "
             + "; ".join(f"`{k}` {num(f)} / {num(b)} ({g(round(pf, 6))} / {g(round(pb, 6))})"
                         for k, f, b, pf, pb in levels)
             + f". The largest departure is {num(dev)} ({where}).")
    return [para(text), para(text2)]
