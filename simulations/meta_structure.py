"""The meta-structure of one label map under every label type, and Lemma 1 by Monte Carlo.

A synthetic mask (blobs and a thin tube) is corrupted by each label type of
the paper (arXiv 2103.11594, Table 1); for each, the gaussian fraction field D* is computed and its
level set at the matched threshold t* (from the label type's estimated
transition matrix) is compared with the clean boundary {D = 1/2}. Spatially
uniform noise (sampling, flipping) keeps the boundary; structured noise
(dilation, skeleton) moves it; random labels have none. Lemma 1 is checked by
Monte Carlo: the mean of the sampled fields over many draws against p * D.

One cell per seed (the noisy draws and the Monte Carlo keys change with it);
the figure shows seed 0, the JSON every seed's numbers and Lemma 1's error
over seeds. Writes ``OUT/meta_structure.png`` and ``OUT/meta_structure.json``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from metastructure import density, metrics, noise, ntm

from ._common import pyplot, save_figure, stats
from ._text import g, listing, mean, num, para, pm, span

PROFILES = {
    "quick": {"size": 64, "bandwidth": 4.0, "kernel": "gaussian", "mc_draws": 50, "seeds": 1},
    "full": {"size": 128, "bandwidth": 4.0, "kernel": "gaussian", "mc_draws": 400, "seeds": 3},
}
REQUIRES = ()
_ARRAY_NAMES = ("mask", "clean_field", "mc_mean", "predicted")
VERSION = 3  # bump when the cell's results change: the runner versions every cell with it


def synthetic_mask(size: int = 128) -> np.ndarray:
    """Three blobs and a thin sinuous tube (3 px wide): thick and thin structures."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    m = np.zeros((size, size), bool)
    for cy, cx, r in [(0.3, 0.28, 0.16), (0.72, 0.3, 0.11), (0.55, 0.72, 0.13)]:
        m |= (yy - cy * size) ** 2 + (xx - cx * size) ** 2 <= (r * size) ** 2
    path = 0.15 * size + 0.05 * size * np.sin(xx / size * 2 * np.pi * 1.5)
    m |= (np.abs(yy - path) <= 1.0) & (xx > 0.45 * size) & (xx < 0.95 * size)
    return m


def label_types(key: jax.Array, mask: np.ndarray) -> dict[str, np.ndarray]:
    k = jax.random.split(key, 3)
    return {
        "clean": mask,
        "sample 10%": np.asarray(noise.sample(k[0], mask, 0.1)),
        "flip f=0.3 b=0.2": np.asarray(noise.flip(k[1], mask, 0.3, 0.2)),
        "dilate r=3": np.asarray(noise.dilate(mask, 3)),
        "skeleton": np.asarray(noise.skeletonize(mask)),
        "random 30%": np.asarray(noise.random_labels(k[2], mask.shape, 0.3)),
    }


def cells(config: dict) -> list[dict]:
    cfg = {k: v for k, v in config.items() if k != "seeds"}
    return [{"kind": "meta_structure", "label": f"s{s}", **cfg, "seed": s}
            for s in range(config["seeds"])]


def _compute(config: dict) -> dict:
    """All the numbers and fields of one seed."""
    key = jax.random.key(config["seed"])
    mask = synthetic_mask(config["size"])
    bw, kernel = config["bandwidth"], config["kernel"]
    clean_field = np.asarray(density.fraction_field(mask, bw, kernel=kernel))
    clean_part = clean_field > 0.5
    rows = {}
    fields = {}
    for name, lab in label_types(jax.random.fold_in(key, 1), mask).items():
        t = ntm.estimate(mask, lab)
        d = np.asarray(density.fraction_field(lab, bw, kernel=kernel))
        fields[name] = d
        # det T = 1 - f - b estimated from n_fg and n_bg pixels: binomial standard error. Random labels on
        # the ~3000 foreground pixels here give |det| ~ 0.01 by chance; below 3 SE there is no information.
        n_fg = int(mask.sum())
        f_, b_ = float(t[1, 0]), float(t[0, 1])
        se = float(np.sqrt(f_ * (1 - f_) / n_fg + b_ * (1 - b_) / (mask.size - n_fg)))
        row = {"transition": t.tolist(), "det": ntm.determinant(t), "det_se": se, "rank": ntm.numerical_rank(t)}
        try:
            m = density.matched_threshold(t, atol=3 * row["det_se"])
            part = np.asarray(density.partition(d, threshold=m))
            row.update(
                t_star=float(m.threshold),
                invert=bool(m.invert),
                dice_vs_clean_partition=float(metrics.dice(part, clean_part)),
                dice_vs_mask=float(metrics.dice(part, mask)),
            )
        except ValueError as err:  # f + b = 1: no information
            row.update(t_star=None, invert=None, dice_vs_clean_partition=None, dice_vs_mask=None, note=str(err))
        rows[name] = row

    # Lemma 1 by Monte Carlo: mean of sampled fields vs (k/N) D, k = ceil(p N)
    p = 0.1
    keys = jax.random.split(jax.random.fold_in(key, 2), config["mc_draws"])
    mean = np.asarray(jax.vmap(lambda k: density.fraction_field(noise.sample(k, mask, p), bw, kernel=kernel))(keys))
    mean = mean.mean(0)
    n = int(mask.sum())
    predicted = int(np.ceil(p * n)) / n * clean_field
    lemma = {
        "ratio": p,
        "draws": config["mc_draws"],
        "max_abs_error": float(np.abs(mean - predicted).max()),
        "mean_abs_error": float(np.abs(mean - predicted).mean()),
        "max_predicted": float(predicted.max()),
    }
    return {"mask": mask, "fields": fields, "labels": label_types(jax.random.fold_in(key, 1), mask),
            "clean_field": clean_field, "rows": rows, "lemma1": lemma, "mc_mean": mean, "predicted": predicted}


def compute(spec: dict) -> tuple[dict, dict]:
    res = _compute(spec)
    arrays = {k: np.asarray(res[k]) for k in _ARRAY_NAMES}
    for i, name in enumerate(res["labels"]):
        arrays[f"label{i}"] = np.asarray(res["labels"][name])
        arrays[f"field{i}"] = np.asarray(res["fields"][name], np.float32)
    return {"label_types": res["rows"], "names": list(res["labels"]), "lemma1_monte_carlo": res["lemma1"]}, arrays


def summarise(config: dict, store) -> dict:
    specs = cells(config)
    per_seed = [store.result(s) for s in specs]
    return {
        "figure_cell": store.spec(specs[0]),  # as stored (versioned): the figure reads its arrays
        "label_types": per_seed[0]["label_types"],
        "names": per_seed[0]["names"],
        "per_seed": per_seed,
        "dice_vs_clean_partition": {n: stats([r["label_types"][n]["dice_vs_clean_partition"] for r in per_seed])
                                    for n in per_seed[0]["names"]},
        "lemma1_max_abs_error": stats([r["lemma1_monte_carlo"]["max_abs_error"] for r in per_seed]),
        "lemma1_monte_carlo": per_seed[0]["lemma1_monte_carlo"],
    }


def plot(record: dict, path: Path, store) -> None:
    plt = pyplot()
    summ = record["results"]
    a = store.arrays(summ["figure_cell"])
    if not a:
        raise FileNotFoundError(f"the figure draws the fields stored under {store.root}; run "
                                "`python -m simulations run meta_structure` (seconds) to compute them")
    res = {"labels": {n: a[f"label{i}"] for i, n in enumerate(summ["names"])},
           "fields": {n: a[f"field{i}"] for i, n in enumerate(summ["names"])},
           "rows": summ["label_types"], "lemma1": summ["lemma1_monte_carlo"],
           **{k: a[k] for k in _ARRAY_NAMES}}
    names = list(res["labels"])
    fig, ax = plt.subplots(2, len(names) + 1, figsize=(2.6 * (len(names) + 1), 5.6), constrained_layout=True)
    for i, name in enumerate(names):
        row = res["rows"][name]
        ax[0, i].imshow(res["labels"][name], cmap="gray", interpolation="nearest")
        ax[0, i].set_title(name, fontsize=9)
        d = res["fields"][name]
        im = ax[1, i].imshow(d, cmap="magma", vmin=0, vmax=max(float(np.nanmax(d)), 1e-6))
        ax[1, i].contour(res["clean_field"], levels=[0.5], colors="cyan", linewidths=0.8)
        if row["t_star"] is not None:
            ax[1, i].contour(d, levels=[row["t_star"]], colors="lime", linewidths=0.8, linestyles="--")
            ax[1, i].set_title(f"t*={row['t_star']:.3f}  Dice {row['dice_vs_clean_partition']:.3f}", fontsize=8)
        else:
            ax[1, i].set_title("f + b = 1: no t*", fontsize=8)
        fig.colorbar(im, ax=ax[1, i], shrink=0.7)
    lem = res["lemma1"]
    ax[0, -1].imshow(res["mc_mean"], cmap="magma")
    ax[0, -1].set_title(f"mean of {lem['draws']} sampled fields", fontsize=8)
    err = ax[1, -1].imshow(res["mc_mean"] - res["predicted"], cmap="coolwarm", vmin=-0.01, vmax=0.01)
    fig.colorbar(err, ax=ax[1, -1], shrink=0.7)
    ax[1, -1].set_title(f"minus Lemma 1 (max |err| {lem['max_abs_error']:.4f})", fontsize=8)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    save_figure(fig, path,
        "Label types (top) and their fraction fields (bottom): cyan = clean boundary {D = 1/2}, "
        f"green dashed = noisy field at t*; Dice of the t* partition against the clean one (seed 0 of "
        f"{len(summ['per_seed'])})",
        fontsize=9,
    )


# ------------------------------------------------------------------ the results document
TITLE = "the density of each label type"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    dice = res["dice_vs_clean_partition"]
    names = [n for n in res["names"] if n != "clean"]
    found = [n for n in names if mean(dice.get(n)) is not None]
    lost = [n for n in names if mean(dice.get(n)) is None]
    text = (f"A synthetic {cfg['size']} x {cfg['size']} mask (disks and a thin tube) under each label type, its "
            f"{cfg['kernel']} fraction field (bandwidth {g(cfg['bandwidth'])} px), and the noisy field's level set "
            f"at t* (green) over the clean boundary {{D = 1/2}} (cyan). Over {cfg['seeds']} seeds the t* partition "
            f"matches the clean one with Dice " + listing([f"{pm(dice[n])} for `{n}`" for n in found]) + ".")
    if found:
        worst = min(found, key=lambda n: dice[n]["mean"])
        why = ", whose density sits on the medial axis, far from the clean boundary" if "skeleton" in worst else ""
        text += f" The lowest is `{worst}`{why}."
    for n in lost:
        dets = [s["label_types"][n] for s in res["per_seed"]]
        below = all(abs(d["det"]) < 3 * d["det_se"] for d in dets)
        text += (f" `{n}` gives |det T| of at most {num(max(abs(d['det']) for d in dets))} over the seeds, "
                 + ("below" if below else "not always below")
                 + f" three standard errors of its estimate ({span([3 * d['det_se'] for d in dets])})"
                 + (": indistinguishable from 0, the labels carry no information about the truth" if below else "")
                 + "; no t*.")
    mc = res["lemma1_monte_carlo"]
    blocks = [para(text), para(
        f"Lemma 1 by Monte Carlo: the mean of {mc['draws']} sampled fields (ratio {g(mc['ratio'])}) differs from "
        f"{g(mc['ratio'])} D by at most {pm(res['lemma1_max_abs_error'], 4)} over the seeds (the field's maximum "
        f"is {num(mc['max_predicted'], 2)}).")]
    return blocks
