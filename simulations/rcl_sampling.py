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
            key = "t_star" if p < 1.0 else "fixed_0.5"  # clean labels: t* = 1/2
            rows[str(p)] = {
                proto: stats([r["final"][key if proto == "t_star" else proto]["dice"] for r in res])
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
