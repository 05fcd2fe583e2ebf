"""Settings and helpers the learning experiments share (so their cells coincide in the store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metastructure import density
from theory import curves

from ._cells import train_spec

# quick: tiny sizes that run every experiment in minutes; full: the README's figures
NET = {"quick": [4, 8], "full": [8, 16, 32]}
OPT = {"quick": {"steps": 40, "batch": 8, "lr": 0.003}, "full": {"steps": 200, "batch": 8, "lr": 0.002}}
EVERY = {"quick": 20, "full": 25}
SEEDS = {"quick": 1, "full": 3}


def dataset(name: str, profile: str, *, n_train: int | None = None, **extra: Any) -> dict:
    """A dataset spec: "enough data" by default (each training image seen a few times)."""
    if name == "real_nuclei":
        return {"name": name, "size": 32 if profile == "quick" else 64, "split": [0.5, 0.25, 0.25], **extra}
    quick = profile == "quick"
    d = {"name": name, "size": 32 if quick else 64, "n_train": n_train or (16 if quick else 256),
         "n_val": 4 if quick else 8, "n_test": 8 if quick else 16, "seed": 0}
    d.update(extra)
    return d


def base(profile: str, **over: Any) -> dict:
    """The common part of an experiment's config."""
    cfg = {"profile": profile, "net": NET[profile], "opt": dict(OPT[profile]), "every": EVERY[profile],
           "seeds": SEEDS[profile]}
    cfg.update(over)
    return cfg


def spec(config: dict, data: dict, kind: str, *params: float, regime: str = "fixed", seed: int = 0,
         num_classes: int | None = None, opt: dict | None = None, **eval_flags: Any) -> dict:
    labels: dict[str, Any] = {"kind": kind, "params": [float(p) for p in params], "regime": regime}
    if num_classes is not None:
        labels["num_classes"] = num_classes
    return train_spec(data, labels, config["net"], opt or config["opt"], seed, every=config["every"], **eval_flags)


def stats(values: Any) -> dict[str, Any]:
    """Mean, sample sd (0 for one value) and n of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (figures are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, title: str | None, *, fontsize: float = 10) -> None:
    """Every experiment's figure ends here: its title (which says what it shows and, where
    measurement departs from prediction, where), written to ``path`` at 110 dpi, then closed."""
    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def protocol_dice(final: dict, protocol: str) -> float | None:
    """Dice of a cell's final scores under ``protocol``; None where it has none (no t* at f + b = 1)."""
    entry = final.get(protocol)
    return None if entry is None else entry["dice"]


def errorbar(ax, x, st: list[dict], *, band: bool = False, **kw: Any) -> None:
    """Mean +- sd over seeds (None values skipped); ``band`` shades the spread instead of bars
    (clipped at mean / 3 from below so that it stays visible on a log axis)."""
    pts = [(xi, s["mean"], s["std"]) for xi, s in zip(x, st, strict=False) if s["mean"] is not None]
    if not pts:
        return
    xs, m, sd = map(np.asarray, zip(*pts, strict=True))
    if band:
        line = ax.plot(xs, m, **kw)[0]
        ax.fill_between(xs, np.maximum(m - sd, m / 3), m + sd, color=line.get_color(), alpha=0.15, lw=0)
    else:
        ax.errorbar(xs, m, yerr=sd, capsize=3, **kw)


# ------------------------------------------------------------------ theory beside measurement
N_EFF = tuple(float(v) for v in np.geomspace(1.0, 1e5, 51).round(3))


def clean_fields(masks: Any) -> np.ndarray:
    """The clean fraction fields D (N, H, W) of binary masks (N, H, W) at 1 px, float64: what
    ``theory.curves.pooled_dice`` takes."""
    # one mask at a time, as the published fits were computed (a batched field differs in float32 rounding)
    return np.stack([np.asarray(density.fraction_field(m, 1.0), float) for m in np.asarray(masks).astype(bool)])


def fit_n_eff(masks: Any, fg_to_bg: Any, bg_to_fg: Any, measured: Any, clean: float) -> dict:
    """The one free parameter of the prediction ``clean * theory.curves.pooled_dice``: the effective
    number of labels a network's decision pools, n_eff, fitted by least squares (over :data:`N_EFF`)
    to the measured points."""
    f, b, y = (np.asarray(v, float) for v in (fg_to_bg, bg_to_fg, measured))
    d = clean_fields(masks)  # once: they hold no n_eff
    best = None
    for n in N_EFF:
        err = float(np.sqrt(np.mean((clean * curves.pooled_dice(d, n, f, b) - y) ** 2)))
        if best is None or err < best["rmse"]:
            best = {"n_eff": n, "rmse": err}
    return best
