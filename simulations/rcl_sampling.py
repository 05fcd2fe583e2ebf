"""Dice vs sampling ratio on ER-, MITO- and NUC-like data, every threshold protocol, with the prediction.

U-Nets trained on one fixed sampled draw per image (the paper's protocol) with
plenty of images (each seen a few times: the regime where the claim holds), at
ratios from 1 down to 0.005. Each network's test Dice under five thresholds:
t* = p/2, chosen on a validation split, the oracle (best on the test set: the
paper), Otsu on the output, and a fixed 0.5 (which fails: the output on
objects is about p). The predicted curve is the measured clean Dice times the
finite-sampling loss of ``theory.curves`` on the test masks (each pixel's
decision at t* from n_eff noisy labels, see ``theory.curves.pooled_dice``);
n_eff, its one free parameter (how many labels a network's decision pools),
is fitted per dataset and reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from theory import curves

from . import _cells
from ._common import base, clean_fields, dataset, errorbar, fit_n_eff, pyplot, save_figure, spec, stats
from ._text import DATA, SHORT, g, listing, mean, num, para, pct, pm, slash, span, table

PROTOCOLS = ("t_star", "validation", "oracle", "otsu", "fixed_0.5")
PROFILES = {
    "quick": base("quick", datasets=["er", "nuclei"], ratios=[1.0, 0.1, 0.01]),
    "full": base("full", datasets=["er", "mito", "nuclei"], ratios=[1.0, 0.5, 0.1, 0.05, 0.01, 0.005]),
}
REQUIRES = ()


def _spec(config: dict, name: str, p: float, seed: int) -> dict:
    d = dataset(name, config["profile"])
    return spec(config, d, "clean", seed=seed) if p == 1.0 else spec(config, d, "sample", p, seed=seed)


def cells(config: dict) -> list[dict]:
    return [_spec(config, n, p, s)
            for n in config["datasets"] for p in config["ratios"] for s in range(config["seeds"])]


def summarise(config: dict, store) -> dict:
    out = {}
    for name in config["datasets"]:
        rows = {}
        for p in config["ratios"]:
            res = [store.result(_spec(config, name, p, s)) for s in range(config["seeds"])]
            rows[str(p)] = {  # t_star: each cell at its label type's t* (clean labels: 1/2)
                proto: stats([r["final"][proto]["dice"] for r in res])
                for proto in PROTOCOLS
            }
            rows[str(p)]["auc"] = stats([r["final"]["auc"]["value"] for r in res])
            rows[str(p)]["mean_fg"] = stats([r["final"]["mean_fg"]["value"] for r in res])
        ratios = np.asarray(config["ratios"], float)
        measured = [rows[str(p)]["t_star"]["mean"] for p in config["ratios"]]
        clean = rows["1.0"]["t_star"]["mean"] if "1.0" in rows else max(measured)
        masks = _cells.load_data(_spec(config, name, 1.0, 0)["data"])["test"].masks
        fit = fit_n_eff(masks, 1 - ratios, 0 * ratios, measured, clean)
        grid = np.geomspace(min(0.002, ratios.min()), 1.0, 40)
        fields = clean_fields(masks)
        curve = clean * curves.pooled_dice(fields, fit["n_eff"], 1 - grid, 0.0)
        out[name] = {"by_ratio": rows, "fit": fit, "curve_ratio": grid.tolist(), "curve": curve.tolist(),
                     "predicted_at_ratio": (clean * curves.pooled_dice(fields, fit["n_eff"], 1 - ratios, 0.0)
                                           ).tolist()}
    return out


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    fig, ax = plt.subplots(1, len(res), figsize=(6 * len(res), 4.4), constrained_layout=True, squeeze=False)
    for a, (name, r) in zip(ax[0], res.items(), strict=False):
        ratios = [float(p) for p in r["by_ratio"]]
        for i, proto in enumerate(PROTOCOLS):
            errorbar(a, ratios, [r["by_ratio"][str(p)][proto] for p in cfg["ratios"]], color=f"C{i}", marker="o",
                     ms=3, label=proto.replace("t_star", "t* = p/2"))
        fit = r["fit"]
        a.plot(r["curve_ratio"], r["curve"], color="k", lw=1.2,
               label=f"theory at t*, fitted n_eff = {fit['n_eff']:.0f} labels (rmse {fit['rmse']:.3f})")
        a.set(xscale="log", xlabel="sampling ratio p", ylabel="test Dice", ylim=(0, 1), title=name)
        a.legend(fontsize=7, loc="lower right")
    save_figure(fig, path,
                f"rcl_sampling: one fixed draw per image, {cfg['seeds']} seed(s), mean +- sd; 0.5 fails because "
                "the output on objects is about p", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "Dice vs sampling ratio, every threshold protocol"
FOCUS_RATIO = 0.1  # the sampling ratio the text singles out (10%, the paper's headline)


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    ds, ratios = cfg["datasets"], cfg["ratios"]
    key = {r: next(k for k in res[ds[0]]["by_ratio"] if abs(float(k) - r) < 1e-9) for r in ratios}

    def row(d: str, r: float) -> dict:
        return res[d]["by_ratio"][key[r]]

    rows = [[g(r)] + [f"{pm(row(d, r)['t_star'])} ({num(mean(row(d, r)['validation']))}, "
                      f"{num(mean(row(d, r)['oracle']))})" for d in ds] for r in ratios]
    tab = table(["p"] + [f"{DATA.get(d, d)}: t* (validation, oracle)" for d in ds], rows)
    clean = max(ratios)
    small = min(ratios)
    text = (f"One fixed sampled draw per image, ratios p = {listing([g(r) for r in ratios])} of each object's "
            f"pixels (the rest unlabelled, counted as background), on " + listing([DATA.get(d, d) for d in ds])
            + " images; Dice at t* = p/2, with the validation and oracle thresholds in brackets:")
    out = [para(text), tab]
    txt = ""
    if FOCUS_RATIO in ratios:
        txt += (f"With {pct(FOCUS_RATIO)} of the foreground, Dice at t* = {g(FOCUS_RATIO / 2)} is "
                + slash([mean(row(d, FOCUS_RATIO)["t_star"]) for d in ds]) + " ("
                + " / ".join(SHORT.get(d, d) for d in ds) + ") against "
                + slash([mean(row(d, clean)["t_star"]) for d in ds]) + f" for p = {g(clean)}; ")
    lead = {d: mean(row(d, small)["oracle"]) - mean(row(d, small)["t_star"]) for d in ds}
    txt += (f"at p = {g(small)} it is " + slash([mean(row(d, small)["t_star"]) for d in ds]) + ", and the oracle "
            f"threshold (the paper's protocol) does {'better' if min(lead.values()) > 0 else 'no better'} than t* "
            f"there ({slash([mean(row(d, small)['oracle']) for d in ds])}, ahead by {span(lead.values())}).")
    val_gap = max(mean(row(d, r)["oracle"]) - mean(row(d, r)["validation"]) for d in ds for r in ratios)
    t_gap = max(mean(row(d, r)["oracle"]) - mean(row(d, r)["t_star"]) for d in ds for r in ratios)
    txt += (f" The validation threshold comes within {num(val_gap)} of the oracle at every ratio and data set "
            f"(t*: within {num(t_gap)}).")
    zero = [r for r in ratios if all(mean(row(d, r)["fixed_0.5"]) == 0 for d in ds)]
    if zero and all(r in zero for r in ratios if r <= max(zero)):
        top = max(zero)
        txt += (f" A fixed threshold of 0.5 finds nothing (Dice 0) from p = {g(top)} down: the output on objects "
                f"is only {span(mean(row(d, top)['mean_fg']) for d in ds)} there, about p.")
        mid = [r for r in ratios if top < r < clean]
        for r in mid:
            txt += (f" At p = {g(r)}, with the output on objects at "
                    f"{span(mean(row(d, r)['mean_fg']) for d in ds)}, just below 0.5, it gives "
                    f"{span(mean(row(d, r)['fixed_0.5']) for d in ds)} (sd up to "
                    f"{num(max(row(d, r)['fixed_0.5']['std'] for d in ds), 2)}).")
    out.append(para(txt))
    fits = [res[d]["fit"] for d in ds]
    out.append(para(
        "The prediction (black) is the clean Dice times the finite-sampling loss of `theory.curves` on the test "
        "masks, each pixel decided at t* from n_eff noisy labels; n_eff, its one free parameter, fits at "
        + listing([f"{res[d]['fit']['n_eff']:.0f} ({SHORT.get(d, d)})" for d in ds]) + " labels, with rms errors "
        + listing([num(f["rmse"]) for f in fits])
        + f": a network's decision pools {span([f['n_eff'] for f in fits], 0)} noisy labels, far more than fall "
        "inside a window of a few pixels."))
    return out
