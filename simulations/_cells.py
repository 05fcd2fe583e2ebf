"""The training cell every learning experiment shares: one network, one label type, one seed.

A cell spec (JSON) says everything the result depends on::

    {"kind": "train", "label": "nuclei sample 0.1 fixed s0",
     "data": {"name": "nuclei", "n_train": 64, "n_val": 8, "n_test": 16, "size": 64, "seed": 0},
     "labels": {"kind": "sample", "params": [0.1], "regime": "fixed"},
     "net": [8, 16, 32],
     "opt": {"steps": 200, "batch": 8, "lr": 0.002, "wd": 0.0, "augment": false},
     "eval": {"every": 25, "masks": false, "features": false},
     "seed": 0}

``train_cell(spec)`` generates (or loads) the data, makes the labels (one draw
before training for ``regime="fixed"``; a fresh draw at each step for
``"fresh"``), trains with :func:`metastructure.train.fit` and evaluates on the
test images every ``eval.every`` steps: Dice at 0.5, at t* (the label type's
matched threshold; 1/2 for dilate / erode, whose labels are clean masks of
another shape; for skeletons s/2 from the transition matrix estimated on the
training pairs), at the best threshold, AUC, mean
outputs on objects and background, and the boundary distance of the t* mask
to the truth. At the end: the threshold protocols side by side (t*,
validation, oracle, Otsu, 0.5; and the oracle on 1 - output, for outputs
that rank objects low), the outputs' levels, and on the training images the
mean output on the labelled pixels and on the foreground the labels left out
(memorisation). Optional arrays: the t* masks at each
evaluation (``masks``) and probe features of every layer (``features``).
Multi-class (``data.name == "scenes"``): mean IoU of the argmax, and of the
argmax after undoing T (Theorem 2: F = (T^T)^-1 E[F*]).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jax
import numpy as np

from metastructure import data, density, metrics, nets, noise, ntm, train

BINARY_DATA = ("nuclei", "mito", "er", "real_nuclei")
FEATURE_ROWS = 1024  # examples (pixel positions) per layer kept for CKA
VERSION = 1  # part of every spec: bump when train_cell's results change, so old cells are not reused


def _label_noise(lspec: dict) -> noise.LabelNoise:
    return noise.LabelNoise(lspec["kind"], *lspec.get("params", []), num_classes=lspec.get("num_classes"))


def train_spec(dataset: dict, labels: dict, net: list[int], opt: dict, seed: int, *,
               every: int, masks: bool = False, features: bool = False) -> dict:
    """A training cell's spec with a readable label (see the module docstring)."""
    lab = _label_noise(labels).name
    size = f"n{dataset['n_train']}" if "n_train" in dataset else "tiles"
    label = f"{dataset['name']} {size} {lab} {labels['regime']} s{seed}"
    return {"kind": "train", "v": VERSION, "label": label, "data": dataset, "labels": labels, "net": list(net),
            "opt": opt, "eval": {"every": every, "masks": masks, "features": features}, "seed": seed}


@functools.lru_cache(maxsize=16)
def _load(dspec_json: str) -> dict[str, data.Dataset]:
    d = json.loads(dspec_json)
    name = d["name"]
    if name == "real_nuclei":
        if not data.real_available():
            raise RuntimeError("real_nuclei needs the packaged image: pip install tifffile && "
                               "pip install --no-deps stardist==0.9.2")
        return data.real_nuclei(tile=d["size"], split=tuple(d.get("split", (0.5, 0.25, 0.25))))
    gen = {"nuclei": data.nuclei, "mito": data.mito, "er": data.er, "scenes": data.scenes}[name]
    key = jax.random.key(d["seed"])
    kw = {"size": d["size"]}
    if name == "scenes":
        kw["num_classes"] = d["num_classes"]
    return {split: gen(jax.random.fold_in(key, i), d[f"n_{split}"], **kw)
            for i, split in enumerate(("train", "val", "test"))}


def load_data(dspec: dict) -> dict[str, data.Dataset]:
    """The train / val / test datasets of a cell (cached per process)."""
    return _load(json.dumps(dspec, sort_keys=True))


def _features(result: train.FitResult, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's features at FEATURE_ROWS fixed pixel positions of the probe images."""
    _, feats = result.model.apply(result.params, jax.numpy.asarray(images), features=True)
    out = {}
    for name, f in feats.items():
        f = np.asarray(f, np.float32).reshape(-1, f.shape[-1])
        rows = np.random.default_rng(0).choice(f.shape[0], min(FEATURE_ROWS, f.shape[0]), replace=False)
        out[f"feat_{name}"] = f[np.sort(rows)]
    return out


def _threshold(transition: np.ndarray | None) -> density.MatchedThreshold | None:
    if transition is None:
        return None
    try:
        return density.matched_threshold(transition, atol=1e-3)
    except ValueError:  # f + b = 1 (random labels): no threshold carries information
        return None


def train_cell(spec: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Train and evaluate one cell; returns (result, arrays)."""
    d = load_data(spec["data"])
    tr, va, te = d["train"], d["val"], d["test"]
    lspec, opt, ev = spec["labels"], spec["opt"], spec["eval"]
    multiclass = spec["data"]["name"] == "scenes"
    m = spec["data"].get("num_classes") if multiclass else None
    key = jax.random.key(spec["seed"])
    ln = _label_noise(lspec)
    clean = np.asarray(tr.masks)
    if lspec["regime"] == "fixed" or not ln.random:
        labels = np.asarray(ln(jax.random.fold_in(key, 1), clean))
        fresh = None
    elif lspec["regime"] == "fresh":
        labels, fresh = clean, ln
    else:
        raise ValueError(f"regime must be 'fixed' or 'fresh', got {lspec['regime']!r}")

    if multiclass:
        t = ln.transition()
        thr = None
    else:
        t = t_thr = ln.transition()
        if t is None:  # dilate / erode / skeleton: record the transition the training pairs show
            t = ntm.estimate(clean, labels)
            # a dilated / eroded mask is a clean mask of another shape: its boundary is the 1/2 level;
            # a skeleton keeps a fraction s of the foreground, like sampling: t* = s/2
            t_thr = np.eye(2) if ln.kind in ("dilate", "erode") else t
        thr = _threshold(t_thr)

    history: list[dict] = []
    masks_at: list[np.ndarray] = []
    test_masks = np.asarray(te.masks)

    def evaluate(step: int, res: train.FitResult) -> None:
        p = res.predict(te.images)
        if multiclass:
            history.append({"step": step, "miou": float(metrics.miou(p.argmax(-1), test_masks, m))})
            return
        row = {
            "step": step,
            "dice_0.5": float(metrics.dice(p > 0.5, test_masks)),
            "dice_best": metrics.best_threshold(p, test_masks, metric="dice")[1],
            "auc": float(metrics.roc_auc(p, test_masks)),
            "mean_fg": float(p[test_masks == 1].mean()),
            "mean_bg": float(p[test_masks == 0].mean()),
        }
        if thr is not None:
            pred = np.asarray(thr.apply(p))
            row["dice_tstar"] = float(metrics.dice(pred, test_masks))
            bd = metrics.boundary_distance(pred, test_masks)
            row["bd_mean"], row["bd_hd95"] = bd["mean"], bd["hd95"]
            if ev["masks"]:
                masks_at.append(np.packbits(pred.astype(bool)))
        history.append(row)

    res = train.fit(key, tr.images, labels, model=nets.unet(tuple(spec["net"]), out_channels=m or 1),
                    steps=opt["steps"], batch_size=opt["batch"], learning_rate=opt["lr"],
                    weight_decay=opt.get("wd", 0.0),
                    loss="ce" if multiclass else "bce", noise=fresh, augment=opt.get("augment", False),
                    num_classes=m, val_every=ev["every"], progress=False,
                    callback=evaluate)
    losses = res.history["loss"]
    out: dict[str, Any] = {
        "history": history,
        "loss": [float(np.mean(losses[max(0, i - ev["every"]):i])) for i in range(ev["every"], len(losses) + 1,
                                                                              ev["every"])],
        "train_seconds": res.history["seconds"],
        "transition": None if t is None else np.asarray(t).tolist(),
    }
    arrays: dict[str, np.ndarray] = {}
    p = res.predict(te.images)
    if multiclass:
        pred = p.argmax(-1)
        out["final"] = {"miou": float(metrics.miou(pred, test_masks, m)),
                        "accuracy": float(np.mean(pred == test_masks))}
        if t is not None and abs(np.linalg.det(t)) > 1e-6:
            # Theorem 2: F = (T^T)^-1 E[F*]; the argmax of the corrected output recovers the classes
            corrected = (p @ np.linalg.inv(t)).argmax(-1)
            out["final"]["miou_corrected"] = float(metrics.miou(corrected, test_masks, m))
    else:
        out["final"] = metrics.threshold_protocols(
            p, test_masks, transition=t_thr if thr is not None else None,
            val_scores=res.predict(va.images), val_target=np.asarray(va.masks))
        out["final"]["mean_fg"] = {"value": float(p[test_masks == 1].mean()),
                                   "q10": float(np.quantile(p[test_masks == 1], 0.1)),
                                   "q90": float(np.quantile(p[test_masks == 1], 0.9))}
        out["final"]["mean_bg"] = {"value": float(p[test_masks == 0].mean())}
        th = metrics.best_threshold(1 - p, test_masks)[0]  # the oracle for an output that ranks objects low
        out["final"]["oracle_inverted"] = {"threshold": th, "dice": float(metrics.dice(1 - p > th, test_masks))}
        # how much of the drawn training labels the network reproduces (memorisation)
        ptr = res.predict(tr.images)
        lab = np.asarray(labels).astype(bool)
        out["final"]["train_fit"] = {"mean_on_labelled": float(ptr[lab].mean()) if lab.any() else None,
                                     "mean_on_unlabelled_fg": float(ptr[~lab & (clean == 1)].mean())
                                     if (~lab & (clean == 1)).any() else None}
    if ev["masks"]:
        arrays["masks"] = np.stack(masks_at) if masks_at else np.zeros((0,), np.uint8)
        arrays["mask_shape"] = np.asarray(test_masks.shape)
    if ev["features"]:
        arrays.update(_features(res, np.asarray(te.images[:2])))
    return out, arrays


def unpack_masks(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The (evaluations, N, H, W) boolean t* masks a cell saved with ``masks=True``."""
    shape = tuple(int(s) for s in arrays["mask_shape"])
    n = int(np.prod(shape))
    return np.stack([np.unpackbits(row)[:n].reshape(shape).astype(bool) for row in arrays["masks"]])
