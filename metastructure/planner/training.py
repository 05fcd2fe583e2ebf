"""Calibration: the two numbers of a training recipe, measured by training networks on the user's own images.

:func:`calibrate` trains two networks (clean labels, one fixed sparse draw) on
a split of the images, scores them on the rest and inverts the prediction
model (:func:`metastructure.planner.solve_n_eff`) for ``n_eff``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from .. import _checks, data, metrics, train
from ..noise import LabelNoise
from .calibration import DEFAULT_RECIPE, Calibration, fit_kwargs
from .model import N_EFF_MAX, N_EFF_MIN, Masks, _as_label, solve_n_eff, unresolved

__all__ = ["calibrate"]

_MIN_LABELLED = 50  # fewest labelled foreground pixels a sparse calibration draw may have


def calibrate(key: jax.Array, images: Any, masks: Any, *, label: Any = "sample 0.1", holdout: float = 0.25,
              recipe: dict | None = None, names: Sequence[str] | None = None,
              progress: bool | None = None) -> Calibration:
    """Fit ``n_eff`` and ``clean_dice`` of a training recipe on the user's own images.

    The images are split (by ``key``) into ``ceil(holdout N)`` held-out images
    (at least 1, at most N - 1) and the rest. Two networks are trained on the rest with ``fit_kwargs(**recipe)``:
    one on the clean masks, one on **one fixed draw** of ``label`` (as a real
    annotation is drawn once). ``clean_dice`` is the first's pooled Dice on the
    held-out images at 1/2; ``n_eff`` solves ``clean_dice *
    pooled_dice(held-out masks, n_eff, f, b) = `` the second's pooled Dice at its
    t*. When no n_eff in [N_EFF_MIN, N_EFF_MAX] reaches it (a sparse network as
    good as the clean one, or one that failed), n_eff is that end of the range,
    with a warning, and ``source`` says so: ``"calibrated, n_eff clipped at
    N_EFF_MAX = 1e+06: ..."`` in place of ``"calibrated"``. The sparse network's
    memorisation index on its training images (output on the drawn pixels
    minus on the left-out foreground) gives the recipe's ``capacity`` k =
    index x n_fg.

    Args:
        key: randomness for the split, the draw and both trainings.
        images: float (N, H, W) or (N, H, W, C), N >= 2.
        masks: binary (N, H, W), matching the images.
        label: the sparse label type to calibrate on: "sample p" or "flip f b"
            (f + b != 1), a ``LabelNoise`` or its name.
        holdout: the fraction of images held out for scoring, in (0, 1).
        recipe: overrides of :data:`DEFAULT_RECIPE`.
        names: the masks' names (file names) for error messages.
        progress: tqdm bars for the two trainings (default: on a terminal).

    Raises:
        ValueError: bad masks (naming them; all-foreground or all-background
            ones included), images and masks of different shapes, fewer than 2
            images, images that are all constant (no contrast: nothing to
            learn), ``holdout`` outside (0, 1), a bad recipe
            (:func:`fit_kwargs`), a label type without finite sampling,
            held-out masks without foreground or without background, held-out
            masks too thin for the model (:func:`~metastructure.planner.unresolved`),
            or a draw that labels fewer than 50 foreground pixels (masks too
            sparse for any n_eff to fit; the message lists the sparsest masks).
            All of these before any training.
        TypeError: ``holdout`` not a real number, ``recipe`` not a dict, a
            recipe value of the wrong type, ``label`` not a label type.
    """
    x = data.as_images(images, strict=False)
    ms = Masks(masks, names=names)
    y = ms.stacks[0] if len(ms.stacks) == 1 else None  # masks in their given order when all share one size
    if x.ndim != 4 or y is None or y.shape != x.shape[:3]:
        raise ValueError(f"images (N, H, W[, C]) and masks (N, H, W) must match, got images {np.shape(images)} "
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
    lab = _as_label(label)
    if lab.family != "RCL":
        raise ValueError(f"calibrate on a sparse or flipped label type ('sample p' or 'flip f b', f + b != 1), "
                         f"got {lab.name!r}")
    if recipe is not None and not isinstance(recipe, Mapping):
        raise TypeError(f"recipe must be a dict of overrides of DEFAULT_RECIPE or None, got {type(recipe).__name__}")
    kw = fit_kwargs(**(recipe or {}))
    rec = {**DEFAULT_RECIPE, **(recipe or {})}
    k_split, k_draw, k_clean, k_sparse = jax.random.split(key, 4)
    n_hold = min(n - 1, max(1, math.ceil(float(holdout) * n)))
    perm = np.asarray(jax.random.permutation(k_split, n))
    tr, ho = np.sort(perm[n_hold:]), np.sort(perm[:n_hold])
    label_names = ms.names or [f"mask {i}" for i in range(n)]
    for what, empty in (("foreground", not y[ho].any()), ("background", y[ho].all())):
        if empty:
            raise ValueError(f"the held-out masks hold no {what}: " + ", ".join(label_names[i] for i in ho)
                             + " (more images, or a larger holdout)")
    held = Masks(y[ho])
    if why := unresolved(held, lab):  # n_eff would be solved on a partition that has lost the masks: say so now
        raise ValueError(f"{why} (calibration solves n_eff on the held-out masks, so it cannot calibrate on them)")
    noisy = np.asarray(lab(k_draw, y[tr]))
    drawn = (noisy == 1) & (y[tr] == 1)  # foreground pixels the draw labels foreground (flips add background ones)
    labelled = int(drawn.sum())
    if labelled < _MIN_LABELLED:
        fg = sorted((int(y[i].sum()), label_names[i]) for i in tr)
        raise ValueError(f"masks too sparse to fit n_eff: one draw of '{lab.name}' labels {labelled} foreground "
                         f"pixel(s) of the {len(tr)} training masks (at least {_MIN_LABELLED} needed); foreground "
                         "pixels of the sparsest: " + ", ".join(f"{nm} {c}" for c, nm in fg[:5])
                         + " (more or larger masks, or a larger ratio)")

    clean_net = train.fit(k_clean, x[tr], y[tr], label_type=LabelNoise("clean"), progress=progress, **kw)
    clean = float(metrics.dice(clean_net.predict(x[ho]) >= 0.5, y[ho]))
    sparse_net = train.fit(k_sparse, x[tr], noisy, label_type=lab, progress=progress, **kw)
    mt = lab.matched_threshold()
    sparse = float(metrics.dice(np.asarray(mt.apply(sparse_net.predict(x[ho]))), y[ho]))
    n_eff, clipped = solve_n_eff(held, lab, clean_dice=clean, measured=sparse)
    source = "calibrated"
    if clipped:
        source = f"calibrated, n_eff clipped at N_EFF_{clipped.upper()} = {n_eff:g}: a bound, not a measurement"
        warnings.warn(f"calibrate: the sparse network's Dice {sparse:.3f} against clean {clean:.3f} lies "
                      f"{'above' if clipped == 'max' else 'below'} what any n_eff in [{N_EFF_MIN:g}, {N_EFF_MAX:g}] "
                      f"predicts; n_eff = {n_eff:g} (a {'noise-free' if clipped == 'max' else 'failed'} sparse "
                      "run: check the images and the recipe); the calibration's source says so", UserWarning,
                      stacklevel=2)
    p_tr = sparse_net.predict(x[tr])
    left = ~drawn & (y[tr] == 1)
    index = float(p_tr[drawn].mean() - p_tr[left].mean()) if left.any() else None
    n_fg = int(y[tr].sum())
    cap = None if index is None else max(index, 0.0) * n_fg
    return Calibration(n_eff=n_eff, clean_dice=clean, recipe={k: rec[k] for k in DEFAULT_RECIPE}, label=lab.name,
                       sparse_dice=sparse, capacity=cap, memorisation_index=index, n_train=len(tr),
                       n_holdout=len(ho), source=source)
