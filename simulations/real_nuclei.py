"""The real packaged nuclei image: clean vs sampled vs flipped vs dilated vs random labels.

The 2018 Data Science Bowl fluorescence image that ships in the stardist
0.9.2 wheel (CC0; read with tifffile, installed by the README's test command
or ``pip install tifffile && pip install --no-deps stardist==0.9.2``), cut
into 64 x 64 tiles: half for training, a quarter each for validation and
test (held-out tiles). U-Nets trained on clean labels, 10% sampling (one
fixed draw, and fresh draws), symmetric flipping f = b = 0.3, dilation by
r = 2 and random labels; test Dice under every threshold protocol and AUC.
Without the package the experiment says so and stops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metastructure import data
from metastructure.noise import LabelNoise, Sample

from . import _cells
from ._common import base, dataset, protocol_dice, pyplot, save_figure, spec, stats
from ._text import mean, num, para, pct, pm

TYPES = [("clean", (), "fixed"), ("sample", (0.1,), "fixed"), ("sample", (0.1,), "fresh"),
         ("flip", (0.3, 0.3), "fixed"), ("dilate", (2,), "fixed"), ("random", (0.3,), "fixed")]
PROTOCOLS = ("t_star", "validation", "oracle", "otsu", "fixed_0.5")
PROFILES = {"quick": base("quick", types=TYPES[:2] + TYPES[3:4]), "full": base("full", types=TYPES)}
REQUIRES = ()


def _label(t) -> LabelNoise:
    kind, params, _ = t
    return LabelNoise(kind, *params)


def _name(t) -> str:
    kind, params, regime = t
    return " ".join([kind, *(f"{v:g}" for v in params[:1])]) + (f" ({regime})" if _label(t).random else "")


def _spec(config: dict, t, seed: int) -> dict:
    kind, params, regime = t
    return spec(config, dataset("real_nuclei", config["profile"]), kind, *params, regime=regime, seed=seed)


def unavailable() -> str | None:
    """Why the experiment cannot run here (None when it can)."""
    if data.real_available():
        return None
    return "needs the packaged image: pip install tifffile && pip install --no-deps stardist==0.9.2"


def cells(config: dict) -> list[dict]:
    if unavailable():
        raise RuntimeError(f"real_nuclei {unavailable()}")
    return [_spec(config, t, s) for t in config["types"] for s in range(config["seeds"])]


def summarise(config: dict, store) -> dict:
    d = _cells.load_data(_spec(config, config["types"][0], 0)["data"])
    out = {"tiles": {k: len(v) for k, v in d.items()}, "tile_size": int(d["train"].images.shape[1]),
           "foreground_fraction_test": float(np.mean(d["test"].masks)), "types": {}}
    for t in config["types"]:
        res = [store.result(_spec(config, t, s)) for s in range(config["seeds"])]
        row = {}
        for proto in PROTOCOLS:
            row[proto] = stats([protocol_dice(r["final"], proto) for r in res])  # t_star: 1/2 for clean, dilate
        row["auc"] = stats([r["final"]["auc"]["value"] for r in res])
        row["mean_fg"] = stats([r["final"]["mean_fg"]["value"] for r in res])
        out["types"][_name(t)] = row
    return out


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    names = list(res["types"])
    fig, ax = plt.subplots(figsize=(12, 4.6), constrained_layout=True)
    w = 0.8 / (len(PROTOCOLS) + 1)
    x = np.arange(len(names))
    for i, proto in enumerate((*PROTOCOLS, "auc")):
        st = [res["types"][n][proto] for n in names]
        ax.bar(x + (i - len(PROTOCOLS) / 2) * w, [s["mean"] or 0 for s in st], w, yerr=[s["std"] or 0 for s in st],
               capsize=2, label=proto.replace("t_star", "t*").replace("auc", "AUC"), color=f"C{i}")
    ax.set_xticks(x, names)
    ax.set(ylabel="test Dice (AUC for the last bar)", ylim=(0, 1.05))
    ax.legend(fontsize=8, ncol=6, loc="upper right")
    tiles = res["tiles"]
    ax.set_title(f"real_nuclei: DSB 2018 image, {res['tile_size']} px tiles (train {tiles['train']}, val "
                 f"{tiles['val']}, test {tiles['test']}), U-Net {cfg['net']}, {cfg['seeds']} seed(s), mean +- sd",
                 fontsize=10)
    save_figure(fig, path, None)


# ------------------------------------------------------------------ the results document
TITLE = "the real packaged image"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    res = record["results"]
    tiles, types = res["tiles"], res["types"]
    fam = {_name(t): _label(t).family for t in record["config"]["types"]}
    text = (f"The DSB 2018 nuclei image cut into {res['tile_size']} x {res['tile_size']} tiles ({tiles['train']} "
            f"train, {tiles['val']} validation, {tiles['test']} test; foreground {pct(res['foreground_fraction_test'])}"
            f" of the test pixels). Dice at t* (oracle): "
            + "; ".join(f"`{n}` {pm(r['t_star'])} ({num(mean(r['oracle']))})" if mean(r["t_star"]) is not None
                        else f"`{n}` no t*, oracle {num(mean(r['oracle']))} (AUC {num(mean(r['auc']))})"
                        for n, r in types.items()) + ".")
    t = {f: [mean(types[n]["t_star"]) for n in types if fam[n] == f and mean(types[n]["t_star"]) is not None]
         for f in ("CL", "RCL", "PCL")}
    if all(t.values()):
        rl_no_t = all(mean(types[n]["t_star"]) is None for n in types if fam[n] == "RL")
        ok = min(t["CL"]) > max(t["RCL"]) and min(t["RCL"]) > max(t["PCL"]) and rl_no_t
        margin = min(t["RCL"]) - max(t["PCL"])
        sd = max(types[n]["t_star"]["std"] for n in types if fam[n] in ("RCL", "PCL"))
        text += (f" At t* the ordering CL > RCL > PCL > RL {'holds' if ok else 'does not hold'} here"
                 + f" (the lowest RCL lies {num(abs(margin))} {'above' if margin > 0 else 'below'} the PCL, "
                   + ("a margin within the seeds' spread: sd up to " if abs(margin) < sd else "with sd up to ")
                 + f"{num(sd)}).")
    sampled = {t[2]: _name(t) for t in record["config"]["types"] if isinstance(_label(t), Sample)}
    fixed, fresh = sampled.get("fixed"), sampled.get("fresh")
    if fixed and fresh:
        a, b = mean(types[fixed]["t_star"]), mean(types[fresh]["t_star"])
        text += (f" Fresh draws {'beat' if b > a else 'do not beat'} one fixed draw of the same sampling "
                 f"({num(b)} against {num(a)}).")
    return [para(text)]
