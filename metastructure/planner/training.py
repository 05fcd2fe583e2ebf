"""Calibration: a training recipe measured by training networks on the user's own images.

:func:`calibrate` trains networks on a split of the images (clean labels, and
fixed draws of a sampled and a flipped label type, at two training-set sizes),
scores them on the rest and fits the scale law of n_eff
(:mod:`metastructure.planner.law`) with the prediction model's finite-sampling
Dice (:meth:`metastructure.planner.Masks.pooled_dice`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from .. import _checks, data, metrics, train
from ..noise import LabelNoise
from .calibration import DEFAULT_RECIPE, Calibration, fit_kwargs
from .law import ScaleLaw
from .model import ANNOTATIONS, N_EFF_MAX, N_EFF_MIN, Masks, _as_label, _with_ndim, solve_n_eff, unresolved

__all__ = ["CALIBRATION_LABELS", "FAILED", "calibrate", "calibration_split"]

#: the label types :func:`calibrate` trains on by default: one of each family, so that each family's
#: memorisation is measured on its own draws
CALIBRATION_LABELS = ("sample 0.1", "flip 0.4 0.4")

#: a calibration network whose held-out Dice is below this fraction of the clean network's at its size failed
#: to train (an output that stays on one side of its threshold): it is kept in the law's points, not fitted
FAILED = 0.5

_MIN_LABELLED = 50  # fewest labelled foreground pixels a sparse calibration draw may have


def calibrate(key: jax.Array, images: Any, masks: Any, *, label: Any = CALIBRATION_LABELS, repeats: int = 2,
              holdout: float = 0.25, recipe: dict | None = None, names: Sequence[str] | None = None,
              progress: bool | None = None, ndim: int = 2) -> Calibration:
    """Measure a training recipe on the user's own images: the clean Dice, and the scale law of n_eff.

    The images are split (:func:`calibration_split`) into ``ceil(holdout N)``
    held-out images (at least 1, at most N - 1) and the N_tr others; the others are trained on
    at two sizes, all N_tr and a random half of them (N_tr // 2; one size when
    N_tr < 4 or a half-size draw labels too few pixels), each with
    ``fit_kwargs(**recipe)``: one network on the clean masks, and per label
    type of ``label`` ``repeats`` networks, each on **its own fixed draw** (as
    a real annotation is drawn once). Every network is scored on the held-out
    images: pooled Dice at 1/2 (clean) or at the label type's t* (draws); on its
    own training images each draw's network gives its memorisation index m
    (:func:`metastructure.metrics.label_fit`).

    From these networks (:mod:`metastructure.planner.law`; theory/README.md, step 14):

    * per label family, log m = alpha + beta log P over the draws' networks,
      P their passes over each pixel: steps x batch x (crop window / image
      pixels) / n_images, with min(batch, n_images) for batch
      (:meth:`~metastructure.planner.ScaleLaw.passes`);
    * ``rate`` and ``ratio`` of 1/n_eff = 1/(rate N) + m(P)/ratio (N the
      distinct training images: :class:`~metastructure.planner.ScaleLaw`),
      by least squares of the draws' held-out Dice against
      ``clean Dice(size) * pooled_dice(held-out masks, n_eff, f, b)``;
    * the residual sd of that fit (how far one network lies from the law) and
      the information of the two numbers, for the prediction intervals.

    A draw's network whose held-out Dice is below :data:`FAILED` x the clean
    network's at its size failed to train (a bimodal outcome, e.g. a heavily
    flipped draw whose output never crosses t*): it is not fitted (the law
    describes networks that train), a warning names it, and it stays in
    ``law.points`` with ``failed`` True, so that :func:`~metastructure.planner.predict`
    reports how many of the family's networks failed. When fewer than 2 trained,
    all are fitted.

    The record's ``n_eff`` is the law's at N_tr for the first label type,
    ``clean_dice`` the clean network's at N_tr, ``sparse_dice`` the first
    label type's networks' mean there; with one size there is no law, and
    n_eff solves ``clean_dice * pooled_dice(...) = sparse_dice`` (as
    :func:`~metastructure.planner.solve_n_eff`). When that solution reaches an
    end of [N_EFF_MIN, N_EFF_MAX] (sparse networks as good as the clean one,
    or ones that failed), n_eff is that bound, with a warning, and ``source`` says so:
    ``"calibrated, n_eff clipped at N_EFF_MAX = 1e+06: ..."``. The first label
    type's networks at N_tr also give the recipe's ``capacity`` k = foreground
    index x n_fg (the index on the foreground pixels the draw labels minus
    those it left out, averaged over the repeats).

    Args:
        key: randomness for the split, the half, the draws and every training.
        images: float (N, H, W) or (N, H, W, C), N >= 2.
        masks: binary (N, H, W), matching the images.
        label: the label types to calibrate on, at most one per family:
            "sample p" and / or "flip f b" (f + b != 1), ``LabelNoise`` objects
            or their names, one or a sequence (default
            :data:`CALIBRATION_LABELS`). A family not calibrated on is predicted
            with the other's memorisation.
        repeats: networks (draws) per label type and size, >= 1 (the law has 2 x labels x repeats - 2
            residual degrees of freedom: with one label type and 1 repeat none, and no interval).
        holdout: the fraction of images held out for scoring, in (0, 1).
        recipe: overrides of :data:`DEFAULT_RECIPE`.
        names: the masks' names (file names) for error messages.
        progress: tqdm bars for the trainings (default: on a terminal).
        ndim: 3 for volumes: images (N, D, H, W[, C]), masks (N, D, H, W), 3-D U-Nets
            (``fit_kwargs(ndim=3)``), 3-D draws of the label types and the held-out masks' 3-D fields; the
            passes count voxels (crop cube / volume).

    Raises:
        ValueError: bad masks (naming them; all-foreground or all-background
            ones included), images and masks of different shapes, fewer than 2
            images, images that are all constant (no contrast: nothing to
            learn), ``holdout`` outside (0, 1), ``repeats`` below 1, a bad
            recipe (:func:`fit_kwargs`), a label type without finite sampling
            or two of one family, held-out masks without foreground or without
            background, held-out masks too thin for the model
            (:func:`~metastructure.planner.unresolved`), or a draw that labels
            fewer than 50 foreground pixels of the N_tr training masks (masks
            too sparse for any n_eff to fit; the message lists the sparsest
            masks). All of these before any training.
        TypeError: ``holdout`` not a real number, ``repeats`` not an int,
            ``recipe`` not a dict, a recipe value of the wrong type, ``label``
            not a label type.
    """
    nd = _checks.check_ndim(ndim)
    x = data.as_images(images, strict=False, ndim=nd)
    ms = Masks(masks, names=names, ndim=nd)
    y = ms.stacks[0] if len(ms.stacks) == 1 else None  # masks in their given order when all share one size
    if x.ndim != nd + 2 or y is None or y.shape != x.shape[:nd + 1]:
        sp = "H, W" if nd == 2 else "D, H, W"
        raise ValueError(f"images (N, {sp}[, C]) and masks (N, {sp}) must match, got images {np.shape(images)} "
                         f"and masks of shapes {sorted({m.shape for m in ms.masks})} x {len(ms)}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"calibration needs at least 2 images (some to train on, some to score), got {n}")
    flat = x.reshape(n, -1, x.shape[-1])
    if np.all(flat.max(axis=1) == flat.min(axis=1)):
        raise ValueError(f"images: all {n} images are constant (no contrast, in the float32 the networks train "
                         "on): there is nothing to learn from them, so nothing to calibrate")
    if not 0 < _checks.check_real_number("holdout", holdout) < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    repeats = _checks.check_int("repeats", repeats, minimum=1)
    labs = tuple(_with_ndim(lab, nd) for lab in _as_labels(label))
    if recipe is not None and not isinstance(recipe, Mapping):
        raise TypeError(f"recipe must be a dict of overrides of DEFAULT_RECIPE or None, got {type(recipe).__name__}")
    kw = fit_kwargs(ndim=nd, **(recipe or {}))
    rec = {**DEFAULT_RECIPE, **(recipe or {})}
    _, k_half, k_draw, k_clean, k_sparse = jax.random.split(key, 5)
    tr, ho = calibration_split(key, n, holdout=holdout)
    label_names = ms.names or [f"mask {i}" for i in range(n)]
    for what, empty in (("foreground", not y[ho].any()), ("background", y[ho].all())):
        if empty:
            raise ValueError(f"the held-out masks hold no {what}: " + ", ".join(label_names[i] for i in ho)
                             + " (more images, or a larger holdout)")
    held = Masks(y[ho], ndim=nd)
    for lab in labs:
        if why := unresolved(held, lab):  # n_eff would be solved on a partition that has lost the masks: say so
            raise ValueError(f"{why} (calibration solves n_eff on the held-out masks, so it cannot calibrate on "
                             "them)")
    # the sizes: all training images, and a random half of them (the law's second point)
    half = np.sort(np.asarray(jax.random.permutation(k_half, tr))[: len(tr) // 2])
    subsets = [tr] + ([half] if len(tr) >= 4 else [])
    draws: list[list[list[np.ndarray]]] = []  # [size][label][repeat] -> the drawn labels of that subset
    for s, sub in enumerate(subsets):
        per_label = []
        for j, lab in enumerate(labs):
            reps = [np.asarray(lab(jax.random.fold_in(k_draw, (s * len(labs) + j) * repeats + r), y[sub]))
                    for r in range(repeats)]
            labelled = min(int(((d == 1) & (y[sub] == 1)).sum()) for d in reps)  # drawn foreground pixels
            if labelled < _MIN_LABELLED:
                if s == 0:
                    fg = sorted((int(y[i].sum()), label_names[i]) for i in sub)
                    raise ValueError(f"masks too sparse to fit n_eff: one draw of '{lab.name}' labels {labelled} "
                                     f"foreground pixel(s) of the {len(sub)} training masks (at least "
                                     f"{_MIN_LABELLED} needed); foreground pixels of the sparsest: "
                                     + ", ".join(f"{nm} {c}" for c, nm in fg[:5])
                                     + " (more or larger masks, or a larger ratio)")
                per_label = None
                break
            per_label.append(reps)
        if per_label is None:  # the half is too sparse: one size, no law
            warnings.warn(f"calibrate: a draw on half of the {len(tr)} training masks labels fewer than "
                          f"{_MIN_LABELLED} foreground pixels, so the calibration has one training-set size and no "
                          "scale law: it predicts only at its own size", UserWarning, stacklevel=2)
            subsets = subsets[:1]
            break
        draws.append(per_label)

    mt = [lab.matched_threshold() for lab in labs]
    # the images' worth of pixels each training sees: steps x batch windows of what train.fit cuts (None: whole)
    window = train._crop_window(rec["crop"], x.shape[1:nd + 1])
    share = 1.0 if window is None else math.prod(window) / math.prod(x.shape[1:nd + 1])
    images_seen = int(rec["steps"]) * int(rec["batch_size"]) * share
    cleans, points = [], []
    fg_index = []
    for s, sub in enumerate(subsets):
        net = train.fit(jax.random.fold_in(k_clean, s), x[sub], y[sub], label_type=LabelNoise("clean"),
                        progress=progress, **kw)
        cleans.append((len(sub), float(metrics.dice(net.predict(x[ho]) >= 0.5, y[ho]))))
        for j, lab in enumerate(labs):
            for r, noisy in enumerate(draws[s][j]):
                k = jax.random.fold_in(k_sparse, (s * len(labs) + j) * repeats + r)
                net = train.fit(k, x[sub], noisy, label_type=lab, progress=progress, **kw)
                dice = float(metrics.dice(np.asarray(mt[j].apply(net.predict(x[ho]))), y[ho]))
                out = net.predict(x[sub])
                fit = metrics.label_fit(out, y[sub], labels=noisy)
                n_eff, clip = solve_n_eff(held, lab, clean_dice=cleans[s][1], measured=dice)
                points.append({"label": lab.name, "kind": lab.kind, "n_images": len(sub), "repeat": r, "dice": dice,
                               "memorisation": fit["memorisation"], "n_eff": n_eff, "clipped": clip})
                if s == 0 and j == 0:
                    drawn, left = (noisy == 1) & (y[sub] == 1), (noisy == 0) & (y[sub] == 1)
                    if left.any():
                        fg_index.append(float(out[drawn].mean() - out[left].mean()))
    clean_at = dict(cleans)
    for p in points:
        p["failed"] = bool(p["dice"] < FAILED * clean_at[p["n_images"]])
    failed = [p for p in points if p["failed"]]
    fitted = [p for p in points if not p["failed"]] if len(points) - len(failed) >= 2 else points
    if failed:
        warnings.warn(f"calibrate: {len(failed)} of {len(points)} networks on fixed draws failed to train (held-out "
                      "Dice below half the clean network's: " + ", ".join(
                          f"'{p['label']}' at {p['n_images']} images {p['dice']:.3f} against "
                          f"{clean_at[p['n_images']]:.3f}" for p in failed)
                      + ("); the scale law is fitted to the networks that trained, and predictions count the "
                         "failures of their family" if fitted is not points else
                         "); fewer than 2 trained, so the law is fitted to all of them")
                      + ": a network of the recipe now and then fails to train, most often on heavily flipped labels "
                        "(bench/README.md, 'Calibration failures'); another key trains other networks on other draws",
                      UserWarning, stacklevel=2)
    first = [p for p in fitted if p["n_images"] == len(tr) and p["label"] == labs[0].name] or [
        p for p in points if p["n_images"] == len(tr) and p["label"] == labs[0].name]
    clean = cleans[0][1]
    sparse = float(np.mean([p["dice"] for p in first]))
    law = None
    if len(subsets) > 1:
        law = ScaleLaw.fit(fitted, held, clean=clean_at, images_seen=images_seen, averaging="distinct",
                           batch_size=int(rec["batch_size"]))
        if fitted is not points:  # the failed networks on the record, not in the fit
            law = dataclasses.replace(law, points=law.points + tuple(failed))
    n_eff, clipped = solve_n_eff(held, labs[0], clean_dice=clean, measured=sparse)  # a bound when clipped
    if law is not None and not clipped:
        n_eff = float(np.clip(law.n_eff(labs[0].kind, len(tr)), N_EFF_MIN, N_EFF_MAX))
    source = "calibrated" + (" on volumes" if nd == 3 else "")
    if clipped:
        source = f"{source}, n_eff clipped at N_EFF_{clipped.upper()} = {n_eff:g}: a bound, not a measurement"
        warnings.warn(f"calibrate: the sparse networks' Dice {sparse:.3f} against clean {clean:.3f} lies "
                      f"{'above' if clipped == 'max' else 'below'} what any n_eff in [{N_EFF_MIN:g}, {N_EFF_MAX:g}] "
                      f"predicts; n_eff = {n_eff:g} (a {'noise-free' if clipped == 'max' else 'failed'} sparse "
                      "run: check the images and the recipe); the calibration's source says so", UserWarning,
                      stacklevel=2)
    index = float(np.mean(fg_index)) if fg_index else None
    n_fg = int(y[tr].sum())
    cap = None if index is None else max(index, 0.0) * n_fg
    return Calibration(n_eff=n_eff, clean_dice=clean, recipe={k: rec[k] for k in DEFAULT_RECIPE},
                       label=labs[0].name, sparse_dice=sparse, capacity=cap, memorisation_index=index,
                       n_train=len(tr), n_holdout=len(ho), source=source, law=law)


def calibration_split(key: jax.Array, n: int, *, holdout: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The split :func:`calibrate` makes with ``key``: (training indices, held-out indices), each sorted;
    ``ceil(holdout n)`` held out, at least 1 and at most n - 1.

    Raises:
        ValueError: n < 2, ``holdout`` outside (0, 1).
        TypeError: n not an int, ``holdout`` not a real number.
    """
    n = _checks.check_int("n", n, minimum=2)
    if not 0 < _checks.check_real_number("holdout", holdout) < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    n_hold = min(n - 1, max(1, math.ceil(float(holdout) * n)))
    perm = np.asarray(jax.random.permutation(jax.random.split(key, 5)[0], n))
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def _as_labels(label: Any) -> tuple[LabelNoise, ...]:
    """``label`` (one label type or a sequence) as a tuple of sampled / flipped label types, one per family."""
    items = [label] if isinstance(label, (str, LabelNoise)) else label
    if not isinstance(items, Sequence) or not items:
        raise TypeError(f"label must be a label type (or its name) or a non-empty sequence of them, got {label!r}")
    labs = tuple(_as_label(v) for v in items)
    for lab in labs:
        if lab.family != "RCL" or isinstance(lab, ANNOTATIONS):
            raise ValueError(f"calibrate on sparse or flipped label types ('sample p' or 'flip f b', f + b != 1), "
                             f"got {lab.name!r}")
    kinds = [lab.kind for lab in labs]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"label: at most one label type per family (one memorisation curve each), got "
                         f"{[lab.name for lab in labs]}")
    return labs
