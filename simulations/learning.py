"""Learning regimes: U-Nets trained on clean, sampled, flipped and random labels.

Synthetic NUC-like data (32 training images, 16 held out) and, when the
packaged real nuclei are installed, the real image (8 training tiles of 128^2,
4 test tiles). Each run records its regime: "fresh" (a new noisy draw every
step: SGD on the soft-label problem) or "fixed" (one draw before training, what
the paper did). Validation every ``val_every`` steps: Dice at t* (inverted when
f + b > 1), best Dice, AUC and mean outputs on objects / background.

Writes ``OUT/learning.png`` (Dice at t* over steps, per regime) and
``OUT/learning.json`` (every validation record).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from metastructure import data, noise, ntm, train

from ._io import draw_png, load, save

FULL = {"n_train": 32, "n_test": 16, "size": 64, "steps": 300, "val_every": 50, "small_n": 4, "small_steps": 600,
        "real": True, "real_steps": 600, "real_val_every": 150, "seed": 0}
QUICK = {"n_train": 8, "n_test": 4, "size": 32, "steps": 40, "val_every": 20, "small_n": 2, "small_steps": 40,
         "real": False, "real_steps": 0, "real_val_every": 1, "seed": 0}
CONFIG = FULL


def _runs(masks, small_masks, key):
    """(name, labels, noise fn, transition, subset) for every regime."""
    fixed = np.asarray(noise.sample(jax.random.fold_in(key, 7), masks, 0.1))
    fixed_small = np.asarray(noise.sample(jax.random.fold_in(key, 9), small_masks, 0.1))
    return [
        ("clean", masks, None, None, "all"),
        ("sample 10%, fresh", masks, lambda k, y: noise.sample(k, y, 0.1), ntm.sample_matrix(0.1), "all"),
        ("sample 10%, fixed", fixed, None, ntm.sample_matrix(0.1), "all"),
        ("flip 0.45, fresh", masks, lambda k, y: noise.flip(k, y, 0.45, 0.45), ntm.flip_matrix(0.45, 0.45), "all"),
        ("flip 0.9, fresh (inverted)", masks, lambda k, y: noise.flip(k, y, 0.9, 0.9), ntm.flip_matrix(0.9, 0.9), "all"),
        ("random 30%, fresh", masks, lambda k, y: noise.random_labels(k, y.shape, 0.3).astype(y.dtype), None, "all"),
        ("sample 10%, fixed, small set", fixed_small, None, ntm.sample_matrix(0.1), "small"),
    ]


def _record(res: train.FitResult, name: str) -> dict:
    return {"name": name, "regime": res.regime, "steps": res.history["val_step"], "val": res.history["val"],
            "seconds": res.history["seconds"], "final_loss": res.history["loss"][-1] if res.history["loss"] else None}


def compute(config: dict = CONFIG) -> dict:
    key = jax.random.key(config["seed"])
    tr = data.nuclei(jax.random.fold_in(key, 0), config["n_train"], size=config["size"])
    te = data.nuclei(jax.random.fold_in(key, 1), config["n_test"], size=config["size"])
    small = tr.take(slice(0, config["small_n"]))
    out = {"synthetic": []}
    for name, labels, fn, t, subset in _runs(tr.masks, small.masks, key):
        ims = tr.images if subset == "all" else small.images
        steps = config["steps"] if subset == "all" else config["small_steps"]
        res = train.fit(jax.random.fold_in(key, 2), ims, labels, steps=steps, batch_size=8, noise=fn,
                        transition=t, validation=(te.images, te.masks), val_every=config["val_every"])
        out["synthetic"].append(_record(res, name))
    if config["real"] and data.real_available():
        r = data.real_nuclei(tile=128)
        fixed = np.asarray(noise.sample(jax.random.fold_in(key, 9), r["train"].masks, 0.1))
        out["real"] = []
        for name, labels, fn, t in (
            ("clean", r["train"].masks, None, None),
            ("sample 10%, fresh", r["train"].masks, lambda k, y: noise.sample(k, y, 0.1), ntm.sample_matrix(0.1)),
            ("sample 10%, fixed", fixed, None, ntm.sample_matrix(0.1)),
        ):
            res = train.fit(jax.random.fold_in(key, 2), r["train"].images, labels, steps=config["real_steps"],
                            batch_size=8, noise=fn, transition=t, validation=(r["test"].images, r["test"].masks),
                            val_every=config["real_val_every"])
            out["real"].append(_record(res, name))
    return out


def _score(run: dict, v: dict) -> float:
    """Dice at t* for noisy labels; at 0.5 for clean ones; best threshold where no t* exists (random)."""
    if "dice_tstar" in v:
        return v["dice_tstar"]
    return v["dice_0.5"] if run["name"] == "clean" else v["dice_best"]


def plot(res: dict, path: Path, config: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("synthetic", "real") if k in res]
    fig, ax = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.4), constrained_layout=True, squeeze=False)
    for a, panel in zip(ax[0], panels):
        for i, run in enumerate(res[panel]):
            clean = run["name"] == "clean"
            ls = "-" if run["regime"] == "fresh" or clean else "--"
            label = run["name"] if clean else run["name"].replace(", fresh", "").replace(", fixed", "") + (
                f" [{run['regime']}]" + (" (best threshold: no t*)" if run["name"].startswith("random") else ""))
            a.plot(run["steps"], [_score(run, v) for v in run["val"]], ls, marker="o", ms=3, color=f"C{i}",
                   label=label)
        a.set(xlabel="training step", ylabel="held-out Dice at t* (clean: at 0.5)", ylim=(0, 1),
              title=f"{panel}: fresh draws (solid) vs one fixed draw (dashed)")
        a.legend(fontsize=7, loc="lower left")
    fig.suptitle("U-Net 16-32-64, Adam: the meta-structure is learned from fresh draws; a fixed draw is memorised",
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(out: str | Path = "figures") -> None:
    """Redraw ``learning.png`` from ``learning.json`` (plots read only the stored numbers)."""
    record = load(out, "learning")
    draw_png(out, "learning", lambda path: plot(record["results"], path, record["config"]))


def run(out: str | Path = "figures", config: dict = CONFIG) -> dict:
    res = compute(config)
    record = {"experiment": "learning", "config": config, "results": res}
    return save(out, "learning", record, lambda path: plot(res, path, config))
