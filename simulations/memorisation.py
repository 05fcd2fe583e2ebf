"""One fixed noisy draw: where learning the meta-structure gives way to memorising the drawn pixels.

U-Nets on NUC-like training sets of several sizes, with 10%-sampled labels
drawn once (fixed), drawn afresh at every step (fresh), or clean; and, at the
middle size, the fixed draw with dihedral augmentation or with weight decay
(AdamW). Over training: held-out Dice at t* = p/2 and at the best threshold.
At the end, on the training images: the memorisation index
m = mean output on the drawn (labelled) pixels - mean output on the
foreground pixels the draw left out (0: the network outputs p on all of the
object, the meta-structure; 1: it has learned which pixels were drawn).

Prediction (theory/README.md, step 13; ``derivations.linearity_and_memorisation``): under the
k-group model (k free outputs, each fitted to its group's drawn fraction) the
index is m = min(1, k / n_fg) whatever p (``theory.curves.memorised_fraction``),
n_fg the training set's foreground pixels: the model says memorisation falls
like 1/n_fg. k is fitted (one number) and reported beside the network's
parameter count, with what the fitted model predicts at each size against the
measured index (which falls faster than 1/n_fg here).

The fitted k of the full profile (no augmentation) is the planner's
``NO_AUGMENT_CAPACITY``: run at the full profile (as the profile defines it,
no overrides) into the published ``figures/``, the runner calls
:func:`publish`, which writes it to the package's
``metastructure/planner/calibration.json`` (``planner.write_constants``).
Quick runs, and runs with other settings or into other folders, write
nothing there.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from metastructure import nets, planner
from theory import curves

from . import _cells
from ._common import base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import g, listing, mean, num, para, pct, pm, slash, span

P = 0.1
PROFILES = {
    "quick": base("quick", sizes=[4, 16], middle=16, weight_decay=0.1,
                  opt={"steps": 60, "batch": 4, "lr": 0.003}),
    "full": base("full", sizes=[4, 16, 64], middle=16, weight_decay=0.1,
                 opt={"steps": 400, "batch": 8, "lr": 0.002}),
}
REQUIRES = ()


def _settings(config: dict) -> list[tuple[int, str]]:
    out = [(n, reg) for n in config["sizes"] for reg in ("fixed", "fresh", "clean")]
    return out + [(config["middle"], "fixed+augment"), (config["middle"], "fixed+weight decay")]


def _spec(config: dict, n: int, reg: str, seed: int) -> dict:
    d = dataset("nuclei", config["profile"], n_train=n)
    opt = dict(config["opt"])
    if reg == "clean":
        return spec(config, d, "clean", seed=seed, opt=opt)
    if reg == "fixed+augment":
        opt["augment"] = True
    if reg == "fixed+weight decay":
        opt["wd"] = config["weight_decay"]
    return spec(config, d, "sample", P, regime="fresh" if reg == "fresh" else "fixed", seed=seed, opt=opt)


def cells(config: dict) -> list[dict]:
    return [_spec(config, n, reg, s) for n, reg in _settings(config) for s in range(config["seeds"])]


def summarise(config: dict, store) -> dict:
    rows = {}
    for n, reg in _settings(config):
        res = [store.result(_spec(config, n, reg, s)) for s in range(config["seeds"])]
        key = "dice_0.5" if reg == "clean" else "dice_tstar"
        curve = np.array([[h[key] for h in r["history"]] for r in res])
        best = np.array([[h["dice_best"] for h in r["history"]] for r in res])
        fit = [r["final"]["train_fit"] for r in res]
        mem = [None if f["mean_on_labelled"] is None or f["mean_on_unlabelled_fg"] is None
               else f["mean_on_labelled"] - f["mean_on_unlabelled_fg"] for f in fit]
        masks = _cells.load_data(_spec(config, n, reg, 0)["data"])["train"].masks
        steps = [h["step"] for h in res[0]["history"]]
        rows[f"{reg} n={n}"] = {
            "n_train": n, "regime": reg, "n_fg": int(np.sum(masks)), "steps": steps,
            "dice_tstar": [stats(v) for v in curve.T], "dice_best": [stats(v) for v in best.T],
            "peak_step": stats([steps[int(i)] for i in curve.argmax(1)]),
            "drop": stats(curve.max(1) - curve[:, -1]), "final": stats(curve[:, -1]),
            # fresh draws: no draw is fixed, so there is nothing to memorise and no index
            "memorisation_index": stats(mem) if reg.startswith("fixed") else None,
        }
    fixed = [r for r in rows.values() if r["regime"] == "fixed"]
    ks = np.geomspace(10, 1e7, 121)
    x = np.array([r["n_fg"] for r in fixed], float)
    y = np.array([np.nan if r["memorisation_index"]["mean"] is None else r["memorisation_index"]["mean"]
                  for r in fixed], float)
    x, y = x[np.isfinite(y)], y[np.isfinite(y)]
    err = [np.mean((curves.memorised_fraction(x, k) - y) ** 2) if len(y) else np.nan for k in ks]
    k = float(ks[int(np.argmin(err))])
    params = nets.num_params(nets.unet(widths=tuple(config["net"])).init(jax.random.key(0), 1))
    grid = np.geomspace(x.min() / 3, x.max() * 3, 50)
    return {"rows": rows, "p": P, "fitted_k": k, "fit_rmse": float(np.sqrt(min(err))),
            "num_params": int(params), "curve_n_fg": grid.tolist(),
            "curve": curves.memorised_fraction(grid, k).tolist()}


def publish(results: dict, *, path: str | Path | None = None) -> dict:
    """Write the fitted k of a full run's ``results`` as the planner's ``NO_AUGMENT_CAPACITY``
    (``planner.write_constants`` to ``path``, default: the package's calibration.json). Returns the record
    written."""
    return planner.write_constants(no_augment_capacity=results["fitted_k"], path=path)


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    rows = res["rows"]
    fig, ax = plt.subplots(1, 3, figsize=(19, 4.6), constrained_layout=True)
    styles = {"fixed": "-", "fresh": "--", "clean": ":"}
    for i, n in enumerate(cfg["sizes"]):
        for reg, ls in styles.items():
            r = rows[f"{reg} n={n}"]
            errorbar(ax[0], r["steps"], r["dice_tstar"], color=f"C{i}", ls=ls, marker="o", ms=2,
                     label=f"n = {n}, {reg}")
    for j, reg in enumerate(("fixed", "fixed+augment", "fixed+weight decay")):
        r = rows[f"{reg} n={cfg['middle']}"]
        errorbar(ax[1], r["steps"], r["dice_tstar"], color=f"C{j + 4}", marker="o", ms=2, label=reg)
        errorbar(ax[1], r["steps"], r["dice_best"], color=f"C{j + 4}", ls=":", marker=None, alpha=0.6)
    for reg, mk in (("fixed", "o"), ("fixed+augment", "^"), ("fixed+weight decay", "v")):
        sel = [r for r in rows.values() if r["regime"] == reg and r["memorisation_index"]["mean"] is not None]
        ax[2].errorbar([r["n_fg"] for r in sel], [r["memorisation_index"]["mean"] for r in sel],
                       yerr=[r["memorisation_index"]["std"] for r in sel], fmt=mk, capsize=3, label=reg)
    ax[2].plot(res["curve_n_fg"], res["curve"], color="k", lw=1.2,
               label=f"k-group model min(1, k / n_fg), fitted k = {res['fitted_k']:.3g} "
                     f"({res['num_params']} weights)")
    ax[0].set(xlabel="training step", ylabel="held-out Dice at t* (clean: 0.5)", ylim=(0, 1),
              title="(a) fixed (solid) vs fresh (dashed) vs clean (dotted), by set size")
    ax[1].set(xlabel="training step", ylabel="held-out Dice: t* (solid), best threshold (dotted)", ylim=(0, 1),
              title=f"(b) n = {cfg['middle']}: augmentation, weight decay {cfg['weight_decay']:g}")
    ax[2].set(xscale="log", xlabel="foreground pixels in the training set n_fg", ylabel="memorisation index m",
              ylim=(-0.05, 1.05), title="(c) drawn vs left-out foreground, at the end")
    for a in ax[:2]:
        a.legend(fontsize=7, loc="lower left")
    ax[2].legend(fontsize=7, loc="lower left")
    save_figure(fig, path,
                f"memorisation: 10% sampling, U-Net {cfg['net']}, {cfg['opt']['steps']} steps, {cfg['seeds']} "
                "seed(s), mean +- sd", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "where one fixed draw gets memorised"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    rows = res["rows"]

    def row(regime: str, n: int) -> dict | None:
        return rows.get(f"{regime} n={n}")

    sizes = cfg["sizes"]
    text = (f"{pct(res['p'])} sampling on {listing([str(n) for n in sizes])} training images, "
            f"{cfg['opt']['steps']} steps. With one fixed draw, Dice at t*:")
    bits = []
    for n in sizes:
        r = row("fixed", n)
        curve = [mean(s) for s in r["dice_tstar"]]
        top = max(range(len(curve)), key=curve.__getitem__)
        bits.append(f"on {n} images it peaks at step {r['steps'][top]} ({num(curve[top])}) and ends at "
                    f"{pm(r['final'])}")
    text += " " + "; ".join(bits) + "."
    fresh = [row("fresh", n) for n in sizes]
    drops = [mean(r["drop"]) for r in fresh]
    text += (" Fresh draws " + ("never fall" if max(drops) < 0.01 else f"fall by at most {num(max(drops))}")
             + f" (final {slash([mean(r['final']) for r in fresh])}; largest drop from the peak {num(max(drops))}),"
             f" and clean labels end at {span(mean(row('clean', n)['final']) for n in sizes)}.")
    idx = [mean(row("fixed", n)["memorisation_index"]) for n in sizes]
    k, params = res["fitted_k"], res["num_params"]
    n_fg = [row("fixed", n)["n_fg"] for n in sizes]
    model = [float(curves.memorised_fraction(v, k)) for v in n_fg]
    ratio_idx, ratio_fg = idx[-2] / idx[-1], n_fg[-1] / n_fg[-2]
    text2 = (f"The memorisation index (mean output on the drawn pixels minus on the foreground left out) is "
             f"{slash(idx)} on {slash([str(n) for n in sizes])} images: `theory.curves.memorised_fraction`, "
             f"min(1, k / n_fg) (the k-group model: k outputs, each fitted to its group's drawn fraction, give "
             f"k / n_fg whatever the ratio p = {g(res['p'])}), fitted by least squares, gives an "
             f"effective capacity k = {k:,.0f} (rms error {num(res['fit_rmse'])}), about 1/{params / k:.0f} of the "
             f"network's {params:,} weights. It does not follow the fall: with that k the model predicts "
             f"{slash([num(v) for v in model])} for {slash([f'{v:,}' for v in n_fg])} foreground pixels, so the "
             f"index falls faster than 1/n_fg ({ratio_idx:.0f}x for {ratio_fg:.1f}x the foreground pixels between "
             f"the two largest sets).")
    mid = cfg["middle"]
    base = row("fixed", mid)

    def effect(r: dict) -> str:
        a, b = mean(base["memorisation_index"]), mean(r["memorisation_index"])
        word = ("prevents it" if b < 0.2 * a else "reduces it" if b < 0.8 * a else "barely changes it")
        return f"{word} (index {num(b)} against {num(a)}, final Dice {pm(r['final'])})"

    aug, wd = rows.get(f"fixed+augment n={mid}"), rows.get(f"fixed+weight decay n={mid}")
    if aug:
        text2 += f" At {mid} images, dihedral augmentation {effect(aug)}"
    if wd:
        text2 += (";" if aug else f" At {mid} images,") + f" AdamW weight decay {g(cfg['weight_decay'])} {effect(wd)}"
    text2 += "."
    best = [mean(row("fixed", n)["dice_best"][-1]) for n in sizes]
    text2 += (f" The best threshold hides the damage ({span(best)} at the end of the fixed-draw runs): the output "
              f"still ranks pixels well, its level does not.")
    return [para(text), para(text2)]
