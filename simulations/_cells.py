"""The training cell every learning experiment shares: one network, one label type, one seed.

A cell spec (JSON) says everything the result depends on::

    {"kind": "train", "label": "nuclei n256 sample 0.1 fixed s0",
     "data": {"name": "nuclei", "n_train": 256, "n_val": 8, "n_test": 16, "size": 64, "seed": 0},
     "labels": {"kind": "sample", "params": [0.1], "regime": "fixed"},
     "net": [8, 16, 32],
     "opt": {"steps": 200, "batch": 8, "lr": 0.002},
     "eval": {"every": 25, "masks": false, "features": false},
     "seed": 0}

(the runner adds ``"v"``, this module's :data:`VERSION`). :func:`train_cell`
runs four steps:

1. :func:`make_labels`: one draw before training for ``regime="fixed"`` (and
   for the deterministic kinds), or the clean labels and the label type to
   draw from at every step for ``"fresh"``;
2. :func:`label_type`: what t* is scored against: the label type itself
   (1/2 for dilate / erode, whose labels are clean masks of another shape),
   or for skeletons the transition matrix its training pairs show (t* = s/2);
3. training with :func:`metastructure.train.fit`, scoring the test images
   every ``eval.every`` steps (:func:`evaluate_step`): Dice at 0.5, at t* and at
   the best threshold, AUC, the mean outputs on objects and background, and
   the boundary distance of the t* mask to the truth;
4. :func:`final_scores`: every threshold protocol side by side, with the output's
   levels, and on the training images the mean output on the labelled pixels
   and on the foreground the labels left out (memorisation).

Every score comes from :func:`metastructure.metrics.evaluate`. Optional
arrays: the t* masks at each evaluation (``masks``) and probe features of every
layer (``features``). Multi-class (``data.name == "scenes"``): mean IoU of the
argmax, and of the argmax after undoing T (Theorem 2: F = (T^T)^-1 E[F*]; the
least-squares inverse for void labels, whose network has M + 1 outputs).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jax
import numpy as np

from metastructure import data, metrics, nets, noise, train

FEATURE_ROWS_PER_PROBE = 512  # pixel positions per probe image kept for CKA, per layer ...
FEATURE_ROWS_MAX = 4096  # ... and at most this many (a layer never keeps more positions than it has)
PROBES = 2  # probe images (the first test images) when a spec names none
VERSION = 1  # bump when train_cell's results change: the runner versions every train cell with it


def label_noise(lspec: dict) -> noise.LabelNoise:
    """The :class:`~metastructure.noise.LabelNoise` of a spec's ``labels`` entry."""
    return noise.LabelNoise(lspec["kind"], *lspec.get("params", []), num_classes=lspec.get("num_classes"))


def train_spec(dataset: dict, labels: dict, net: list[int], opt: dict, seed: int, *,
               every: int, masks: bool = False, features: bool = False, track: bool = False,
               at: list[int] | None = None, probes: int | None = None, activation: str | None = None) -> dict:
    """A training cell's spec with a readable label (see the module docstring). ``track`` adds, at every
    evaluation, the validation-threshold Dice and the fit to the training labels (:func:`evaluate_step`);
    ``at`` evaluates only at those steps (multiples of ``every``) instead of every ``every`` steps;
    ``probes`` (with ``features``) is how many test images the features are kept on (:data:`PROBES` when
    None); ``activation`` is the U-Net's (``nets.unet(activation=)``; ReLU when None). Each enters the spec
    only when set, so cells without them keep their keys (as does ``opt``'s optional ``"crop"``, the
    ``train.fit(crop=)`` window).

    Raises ValueError for ``at`` steps that are not multiples of ``every``, for ``probes`` without
    ``features``, below 1 or above the dataset's ``n_test``, and for an activation ``nets.unet`` does not know."""
    lab = label_noise(labels).name
    size = f"n{dataset['n_train']}" if "n_train" in dataset else "tiles"
    label = f"{dataset['name']} {size} {lab} {labels['regime']} s{seed}"
    ev = {"every": every, "masks": masks, "features": features}
    if track:
        ev["track"] = True
    if at is not None:
        if not at or any(int(a) != a or a < 1 or a % every for a in at):
            raise ValueError(f"at must list steps that are multiples of every = {every}, got {at}")
        ev["at"] = sorted(int(a) for a in at)
    if probes is not None:
        n_test = dataset.get("n_test")
        if not features or int(probes) != probes or probes < 1 or (n_test is not None and probes > n_test):
            raise ValueError(f"probes must be a whole number from 1 to n_test = {n_test}, with features=True; "
                             f"got probes={probes!r}, features={features}")
        ev["probes"] = int(probes)
    out = {"kind": "train", "label": label, "data": dataset, "labels": labels, "net": list(net),
           "opt": opt, "eval": ev, "seed": seed}
    if activation is not None:
        if activation not in nets.ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(nets.ACTIVATIONS)}, got {activation!r}")
        out["activation"] = activation
    return out


@functools.lru_cache(maxsize=16)
def _load(dspec_json: str) -> dict[str, data.Dataset]:
    d = json.loads(dspec_json)
    name = d["name"]
    if name == "real_nuclei":
        if not data.real_available():
            raise RuntimeError("real_nuclei needs the packaged image: pip install tifffile && "
                               "pip install --no-deps stardist==0.9.2")
        return data.real_nuclei(tile=d["size"], split=tuple(d.get("split", (0.5, 0.25, 0.25))))
    gen = {"nuclei": data.nuclei, "mito": data.mito, "er": data.er, "er_uneven": data.er_uneven,
           "scenes": data.scenes}[name]
    key = jax.random.key(d["seed"])
    kw = {"size": d["size"]}
    if name == "scenes":
        kw["num_classes"] = d["num_classes"]
        kw.update({k: d[k] for k in ("regions", "objects") if k in d})  # the layout (data.scenes)
    if "width" in d:  # the tubules' width range (er, er_uneven)
        kw["width"] = tuple(d["width"])
    return {split: gen(jax.random.fold_in(key, i), d[f"n_{split}"], **kw)
            for i, split in enumerate(("train", "val", "test"))}


def load_data(dspec: dict) -> dict[str, data.Dataset]:
    """The train / val / test datasets of a cell (cached per process)."""
    return _load(json.dumps(dspec, sort_keys=True))


def _features(result: train.FitResult, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's features at fixed pixel positions of the probe images: FEATURE_ROWS_PER_PROBE a
    probe image, at most FEATURE_ROWS_MAX and at most the layer's positions, the same positions
    (``default_rng(0)``) in every network, so that rows match across cells."""
    _, feats = result.model.apply(result.params, jax.numpy.asarray(images), features=True)
    keep = min(FEATURE_ROWS_PER_PROBE * len(images), FEATURE_ROWS_MAX)
    out = {}
    for name, f in feats.items():
        f = np.asarray(f, np.float32).reshape(-1, f.shape[-1])
        rows = np.random.default_rng(0).choice(f.shape[0], min(keep, f.shape[0]), replace=False)
        out[f"feat_{name}"] = f[np.sort(rows)]
    return out


# ------------------------------------------------------------------ the four steps
def make_labels(spec: dict, clean: np.ndarray) -> tuple[np.ndarray, noise.LabelNoise | None]:
    """Step 1: the training labels and, for fresh draws, the label type drawn from at each step.

    A fixed regime (and every deterministic kind: dilate, erode, skeleton, clean)
    draws once with the key ``fold_in(key(seed), 1)``; the fresh regime trains on
    the clean labels through ``fit(noise=...)``.
    """
    lspec = spec["labels"]
    ln = label_noise(lspec)
    if lspec["regime"] == "fixed" or not ln.random:
        return np.asarray(ln(jax.random.fold_in(jax.random.key(spec["seed"]), 1), clean)), None
    if lspec["regime"] == "fresh":
        return clean, ln
    raise ValueError(f"regime must be 'fixed' or 'fresh', got {lspec['regime']!r}")


def label_type(ln: noise.LabelNoise, clean: np.ndarray) -> tuple[Any, np.ndarray | None]:
    """Step 2: ``(label_type, transition)``: what t* is scored against, and the T the cell records.

    A skeleton's t* = s/2 depends on the masks: its label type is the transition
    its training pairs show. Dilation and erosion keep their ``LabelNoise`` (t* =
    1/2: a clean mask of another shape) and record the T their training pairs
    show; class-conditional kinds record their closed form.
    """
    if ln.num_classes is None and ln.data_dependent:
        t = ln.transition(masks=clean)  # what the training pairs (clean, ln(clean)) show
        return (t if isinstance(ln, noise.Skeleton) else ln), t
    return ln, ln.transition()


def evaluate_step(step: int, result: train.FitResult, test: data.Dataset, *, keep_mask: bool,
                  track: tuple[data.Dataset, data.Dataset, np.ndarray | None] | None = None) -> dict:
    """Step 3: the scores of the current network on the test images (one history row).

    Binary: ``dice_0.5``, ``dice_best`` (the oracle threshold), ``auc``,
    ``mean_fg`` / ``mean_bg``, and where the label type has a t*: ``dice_tstar``
    and the boundary distance of the t* mask to the truth (``bd_mean``,
    ``bd_hd95``); with ``keep_mask`` the packed t* mask under ``"_mask"``.
    With ``track = (train, val, labels)`` (binary): ``dice_val``, the test Dice at
    the threshold chosen on the validation images, ``val_dice``, the validation
    images' own Dice at that threshold (what a validation-chosen step
    maximises), and ``metrics.label_fit`` of the
    training labels (``labels`` None for fresh draws: only the clean masks' fit).
    Multi-class: ``miou``.
    """
    p = result.predict(test.images)
    masks = np.asarray(test.masks)
    if result.num_classes is not None:
        return {"step": step, "miou": metrics.evaluate(p, masks, num_classes=result.num_classes,
                                                       label_type=result.label_type)["miou"]}
    e = metrics.evaluate(p, masks, label_type=result.label_type, protocols=("fixed_0.5", "t_star", "oracle"))
    row: dict[str, Any] = {"step": step, "dice_0.5": e["fixed_0.5"]["dice"], "dice_best": e["oracle"]["dice"],
                           "auc": e["auc"]["value"], "mean_fg": e["mean_fg"]["value"],
                           "mean_bg": e["mean_bg"]["value"]}
    if track is not None:
        tr, va, labels = track
        val = (result.predict(va.images), np.asarray(va.masks))
        row["val_dice"] = metrics.best_threshold(*val, metric="dice")[1]  # the validation images' own best Dice
        row["dice_val"] = metrics.evaluate(p, masks, validation=val, protocols="validation")["validation"]["dice"]
        row.update(metrics.label_fit(result.predict(tr.images), np.asarray(tr.masks), labels=labels))
    if e.get("t_star") is not None:
        pred = np.asarray(metrics.matched_threshold_of(result.label_type).apply(p))
        row["dice_tstar"] = e["t_star"]["dice"]
        bd = metrics.boundary_distance(pred, masks)
        row["bd_mean"], row["bd_hd95"] = bd["mean"], bd["hd95"]
        if keep_mask:
            row["_mask"] = np.packbits(pred.astype(bool))
    return row


def final_scores(result: train.FitResult, d: dict[str, data.Dataset], labels: np.ndarray) -> dict:
    """Step 4: every protocol on the test images (validation threshold from the validation split),
    and, binary, how much of the drawn training labels the network reproduces (memorisation)."""
    tr, va, te = d["train"], d["val"], d["test"]
    out = result.evaluate(te.images, te.masks, validation=None if result.num_classes else (va.images, va.masks))
    if result.num_classes is None:
        ptr = result.predict(tr.images)
        lab = np.asarray(labels).astype(bool)
        left_out = ~lab & (np.asarray(tr.masks) == 1)
        out["train_fit"] = {"mean_on_labelled": float(ptr[lab].mean()) if lab.any() else None,
                            "mean_on_unlabelled_fg": float(ptr[left_out].mean()) if left_out.any() else None}
    return out


def train_cell(spec: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Train and evaluate one cell (the module docstring's four steps); returns (result, arrays)."""
    d = load_data(spec["data"])
    tr, te = d["train"], d["test"]
    opt, ev = spec["opt"], spec["eval"]
    # multi-class: the noisy labels' classes (M, or M + 1 with void) are the network's outputs
    m = label_noise(spec["labels"]).output_classes if spec["data"]["name"] == "scenes" else None
    clean = np.asarray(tr.masks)
    labels, fresh = make_labels(spec, clean)
    lt, t = label_type(label_noise(spec["labels"]), clean)
    track = (tr, d["val"], None if fresh is not None else labels) if ev.get("track") else None
    at = set(ev["at"]) if "at" in ev else None

    res = train.fit(jax.random.key(spec["seed"]), tr.images, labels,
                    model=nets.unet(widths=tuple(spec["net"]), out_channels=m or 1,
                                    activation=spec.get("activation", "relu")),
                    steps=opt["steps"], batch_size=opt["batch"], learning_rate=opt["lr"], crop=opt.get("crop"),
                    weight_decay=opt.get("wd", 0.0), loss="ce" if m else "bce", noise=fresh,
                    label_type=None if fresh is not None else lt, augment=opt.get("augment", False),
                    num_classes=m, val_every=ev["every"], progress=False,
                    callback=lambda step, r: evaluate_step(step, r, te, keep_mask=ev["masks"], track=track)
                    if at is None or step in at else None)
    history = [row for row in res.history["callback"] if row is not None]
    masks_at = [row.pop("_mask") for row in history if "_mask" in row]
    losses = res.history["loss"]
    every = ev["every"]
    out: dict[str, Any] = {
        "history": history,
        "loss": [float(np.mean(losses[max(0, i - every):i])) for i in range(every, len(losses) + 1, every)],
        "train_seconds": res.history["seconds"],
        "transition": None if t is None else np.asarray(t).tolist(),
        "final": final_scores(res, d, labels),
    }
    arrays: dict[str, np.ndarray] = {}
    if ev["masks"]:
        arrays["masks"] = np.stack(masks_at) if masks_at else np.zeros((0,), np.uint8)
        arrays["mask_shape"] = np.asarray(np.shape(te.masks))
    if ev["features"]:
        arrays.update(_features(res, np.asarray(te.images[:ev.get("probes", PROBES)])))
    return out, arrays


def unpack_masks(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The (evaluations, N, H, W) boolean t* masks a cell saved with ``masks=True``."""
    shape = tuple(int(s) for s in arrays["mask_shape"])
    n = int(np.prod(shape))
    return np.stack([np.unpackbits(row)[:n].reshape(shape).astype(bool) for row in arrays["masks"]])
