r"""Segmentation metrics, and :func:`evaluate`: every threshold protocol, side by side.

Overlap metrics from the confusion counts (TP, FP, FN, TN):

* Dice = F1 = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN),
  accuracy = (TP + TN) / all; an image where prediction and target are both
  empty scores Dice = IoU = 1 (perfect agreement).
* ``per_image=False`` pools the counts over all images (the paper's protocol);
  ``per_image=True`` returns one value per leading index.
* :func:`roc_auc` is the exact Mann-Whitney statistic with ties counted 1/2.
* :func:`miou` averages the per-class IoU (pooled) over classes that occur.

How an output becomes a mask (the paper never thresholds at 0.5, and with 10%
sampling the right threshold is about 0.05):

* analytic t* of the noise (:func:`metastructure.density.matched_threshold`);
* the best threshold on a validation split (:func:`best_threshold` on it);
* the oracle: the best pooled IoU on the test set itself (the paper);
* Otsu on the scores (:func:`otsu_threshold`).

What a network learnt from one fixed draw, on its training images: :func:`label_fit` (the memorisation
index) and, for whole labelled planes, :func:`depth_tracking` (did it learn which depths were labelled?).

:func:`evaluate` reports them side by side (with AUC and the output's levels):
it is the one function that turns a network's output into scores. A
prediction is ``scores > threshold``. The array functions are jittable; value checks (NaN
scores, non-binary masks) run on concrete inputs only.

Beyond overlap: :func:`boundary_distance` (how far apart two boundaries lie, in
pixels; host-side, scipy's exact Euclidean distance transform) and
:func:`linear_cka` (similarity of two sets of features, for comparing the
layers of networks trained on different label types).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage as ndi

from . import _checks
from .density import MatchedThreshold, matched_threshold_or_none
from .noise import Clean, LabelNoise

__all__ = [
    "PROTOCOLS",
    "accuracy",
    "best_threshold",
    "boundary_distance",
    "confusion",
    "depth_tracking",
    "dice",
    "evaluate",
    "iou",
    "label_fit",
    "level_threshold",
    "linear_cka",
    "matched_threshold_of",
    "miou",
    "otsu_threshold",
    "roc_auc",
    "threshold_sweep",
]


def _binary_pair(pred: Any, target: Any, ignore: int | None):
    ignore = _checks.check_ignore(ignore, None)
    _checks.check_same_shape("pred", pred, "target", target)
    _checks.check_binary("pred", pred)
    _checks.check_binary("target", target, ignore=ignore)
    p = jnp.asarray(pred)
    t = jnp.asarray(target)
    valid = jnp.ones(t.shape, bool) if (ignore is None or t.dtype == jnp.bool_) else t != ignore
    return p.astype(bool) & valid, (t == 1) & valid, valid


def confusion(
    pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Confusion counts (TP, FP, FN, TN) of binary masks, int32.

    Args:
        pred: binary prediction (..., H, W).
        target: binary ground truth, same shape; ``ignore`` pixels are excluded.
        per_image: counts per leading index instead of pooled.
        ignore: a target value to exclude (None: none).
        ndim: spatial axes (2 or 3) that ``per_image`` reduces over.

    >>> import numpy as np
    >>> [int(c) for c in confusion(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]]))]
    [1, 1, 1, 1]
    """
    p, t, valid = _binary_pair(pred, target, ignore)
    axes = tuple(range(-_checks.check_ndim(ndim), 0)) if per_image else None

    def count(x):
        return jnp.sum(x, axis=axes, dtype=jnp.int32)

    return count(p & t), count(p & ~t & valid), count(~p & t), count(~p & ~t & valid)


def _ratio(num, den, labelled):
    """num / den; 1 where den is 0 but some pixel is labelled (both masks empty); NaN where none is."""
    num = jnp.asarray(num, jnp.float32)
    den = jnp.asarray(den, jnp.float32)
    out = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 1.0)
    return jnp.where(jnp.asarray(labelled) > 0, out, jnp.nan)


def dice(pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2) -> jax.Array:
    """Dice = F1 = 2TP / (2TP + FP + FN); 1 when both masks are empty; NaN with no labelled pixel.

    No labelled pixel (every target pixel is ``ignore``, or none at all) leaves
    Dice undefined: NaN (per image with ``per_image``), as :func:`iou`,
    :func:`accuracy`, :func:`threshold_sweep` and :func:`miou` (and
    :func:`roc_auc` when a class is absent).

    >>> import numpy as np
    >>> float(dice(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]])))
    0.5
    >>> float(dice(np.array([[1, 0]]), np.array([[-1, -1]]), ignore=-1))
    nan
    """
    tp, fp, fn, tn = confusion(pred, target, per_image=per_image, ignore=ignore, ndim=ndim)
    return _ratio(2 * tp, 2 * tp + fp + fn, tp + fp + fn + tn)


def iou(pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2) -> jax.Array:
    """IoU (Jaccard) = TP / (TP + FP + FN); 1 when both masks are empty; NaN with no labelled pixel (:func:`dice`)."""
    tp, fp, fn, tn = confusion(pred, target, per_image=per_image, ignore=ignore, ndim=ndim)
    return _ratio(tp, tp + fp + fn, tp + fp + fn + tn)


def accuracy(
    pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2
) -> jax.Array:
    """Pixel accuracy (TP + TN) / (labelled pixels); NaN with no labelled pixel (as :func:`dice`)."""
    tp, fp, fn, tn = confusion(pred, target, per_image=per_image, ignore=ignore, ndim=ndim)
    return _ratio(tp + tn, tp + fp + fn + tn, tp + fp + fn + tn)


def _check_labelled(name: str, target: Any, ignore: int | None) -> None:
    """``ValueError`` (concrete ``target`` only) when every pixel is ``ignore``: nothing to score."""
    t = _checks.concrete(target)
    if t is not None and ignore is not None and t.dtype != bool and t.size and np.all(t == ignore):
        raise ValueError(f"{name} has no labelled pixel: every pixel is ignore={ignore}, nothing to score")


def _scores_target(scores: Any, target: Any, ignore: int | None):
    ignore = _checks.check_ignore(ignore, None)
    _checks.check_same_shape("scores", scores, "target", target)
    _checks.check_finite("scores", scores)
    _checks.check_nonempty("scores", scores)
    _checks.check_binary("target", target, ignore=ignore)
    s = jnp.asarray(scores, jnp.float32).ravel()
    t = jnp.asarray(target).ravel()
    valid = jnp.ones(t.shape, bool) if (ignore is None or t.dtype == jnp.bool_) else t != ignore
    pos = (t == 1) & valid
    neg = (t == 0) & valid
    return s, pos, neg


def roc_auc(scores: Any, target: Any, *, ignore: int | None = None) -> jax.Array:
    r"""Exact ROC-AUC over all pixels pooled, ties counted one half.

    :math:`\mathrm{AUC} = \frac{1}{n_1 n_0}\sum_{i \in +}\big(\#\{j \in -: s_j < s_i\}
    + \tfrac12 \#\{j \in -: s_j = s_i\}\big)`, computed by sorting
    (O(n log n)); float32 accumulation, error below 1e-6 for 10^7 pixels. NaN
    when either class is absent.

    >>> import numpy as np
    >>> float(roc_auc(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 0, 1, 1])))
    0.875
    """
    s, pos, neg = _scores_target(scores, target, ignore)
    sorted_neg = jnp.sort(jnp.where(neg, s, jnp.inf))
    below = jnp.searchsorted(sorted_neg, s, side="left")
    upto = jnp.searchsorted(sorted_neg, s, side="right")
    n0 = jnp.sum(neg, dtype=jnp.int32)
    n1 = jnp.sum(pos, dtype=jnp.int32)
    per = (below + upto).astype(jnp.float32) / (2.0 * jnp.maximum(n0, 1))
    auc = jnp.sum(jnp.where(pos, per, 0.0)) / jnp.maximum(n1, 1)
    return jnp.where((n0 > 0) & (n1 > 0), auc, jnp.nan)


def miou(pred: Any, target: Any, num_classes: int, *, ignore: int | None = -1,
         classes: int | None = None) -> jax.Array:
    """Mean over classes of the pooled IoU; classes absent from both are skipped.

    ``classes`` (default ``num_classes``): average over the classes
    ``[0, classes)`` only, the truth's; ``pred`` may hold the others (an output
    class the truth never has, such as :class:`~metastructure.noise.SampleVoid`'s
    void), each such pixel a miss of its true class. NaN with no labelled pixel
    (every target pixel is ``ignore``, or none at all), as :func:`dice`.

    >>> import numpy as np
    >>> float(miou(np.array([0, 1, 2, 2]), np.array([0, 1, 2, -1]), 3))
    1.0
    >>> float(miou(np.array([0, 0, 2, 1]), np.array([0, 0, 1, 1]), 3, classes=2))  # 2 is void: a miss
    0.75
    """
    num_classes = _checks.check_num_classes(num_classes)
    ignore = _checks.check_ignore(ignore, num_classes)
    scored = num_classes if classes is None else _checks.check_int("classes", classes, minimum=1)
    if scored > num_classes:
        raise ValueError(f"classes must be at most num_classes = {num_classes}, got {scored}")
    _checks.check_same_shape("pred", pred, "target", target)
    _checks.check_labels("pred", pred, num_classes, ignore=None)
    _checks.check_labels("target", target, scored, ignore=ignore)
    p = jnp.asarray(pred).astype(jnp.int32)
    t = jnp.asarray(target).astype(jnp.int32)
    valid = jnp.ones(t.shape, bool) if ignore is None else t != ignore
    c = jnp.arange(scored).reshape((scored,) + (1,) * p.ndim)
    pc = (p[None] == c) & valid[None]
    tc = (t[None] == c) & valid[None]
    axes = tuple(range(1, p.ndim + 1))
    inter = jnp.sum(pc & tc, axis=axes, dtype=jnp.int32)
    union = jnp.sum(pc | tc, axis=axes, dtype=jnp.int32)
    present = union > 0
    ious = inter.astype(jnp.float32) / jnp.maximum(union, 1)
    mean = jnp.sum(jnp.where(present, ious, 0.0)) / jnp.maximum(jnp.sum(present), 1)
    return jnp.where(jnp.any(present), mean, jnp.nan)


def threshold_sweep(scores: Any, target: Any, thresholds: Any, *, ignore: int | None = None) -> dict[str, jax.Array]:
    """Pooled Dice and IoU of ``scores > t`` for every t in ``thresholds`` (by sorting).

    Returns:
        ``{"threshold", "dice", "iou"}``, arrays of the thresholds' length (NaN
        with no labelled pixel, as :func:`dice`).

    >>> import numpy as np
    >>> r = threshold_sweep(np.array([0.1, 0.9]), np.array([0, 1]), np.array([0.0, 0.5]))
    >>> [round(v, 4) for v in r["dice"].tolist()]
    [0.6667, 1.0]
    """
    s, pos, neg = _scores_target(scores, target, ignore)
    _checks.check_finite("thresholds", thresholds)
    _checks.check_nonempty("thresholds", thresholds)
    th = jnp.asarray(thresholds, jnp.float32).ravel()
    n1 = jnp.sum(pos, dtype=jnp.int32)
    n0 = jnp.sum(neg, dtype=jnp.int32)
    pos_le = jnp.searchsorted(jnp.sort(jnp.where(pos, s, jnp.inf)), th, side="right")
    neg_le = jnp.searchsorted(jnp.sort(jnp.where(neg, s, jnp.inf)), th, side="right")
    tp = n1 - pos_le
    fp = n0 - neg_le
    fn = pos_le
    n = n0 + n1
    return {"threshold": th, "dice": _ratio(2 * tp, 2 * tp + fp + fn, n), "iou": _ratio(tp, tp + fp + fn, n)}


def _default_grid(scores: jax.Array) -> jax.Array:
    """1025 quantiles of the scores, plus 0.5 steps of 1/200 on [0, 1]: adapts to outputs near 0."""
    q = jnp.quantile(scores.ravel().astype(jnp.float32), jnp.linspace(0.0, 1.0, 1025))
    return jnp.sort(jnp.concatenate([q, jnp.linspace(0.0, 1.0, 201)]))


def best_threshold(
    scores: Any, target: Any, *, metric: str = "iou", thresholds: Any = None, ignore: int | None = None
) -> tuple[float, float]:
    """The threshold that maximises pooled ``metric`` ("iou" or "dice") on these data.

    On a validation split this is the validation protocol; on the test set
    itself it is the paper's oracle protocol. The default grid is 1025
    quantiles of the scores joined with 201 even steps on [0, 1].

    Returns:
        ``(threshold, value)`` as Python floats.

    Raises:
        ValueError: ``metric`` unknown; ``scores`` or ``target`` invalid (as
            :func:`roc_auc`), or ``target`` without a labelled pixel (every
            pixel ``ignore``: no threshold is better than another).
    """
    if metric not in ("iou", "dice"):
        raise ValueError(f"metric must be 'iou' or 'dice', got {metric!r}")
    _scores_target(scores, target, ignore)  # checked before the grid is built from them
    _check_labelled("target", target, ignore)
    grid = _default_grid(jnp.asarray(scores)) if thresholds is None else thresholds
    r = threshold_sweep(scores, target, grid, ignore=ignore)
    i = int(jnp.argmax(r[metric]))
    return float(r["threshold"][i]), float(r[metric][i])


def _otsu(xp: Any, s: Any, bins: int) -> Any:
    """Otsu's threshold of the flat array ``s`` with the array module ``xp`` (numpy or jax.numpy), in ``s``'s
    precision. The histogram is taken of u = (s - lo) / (hi - lo) in [0, 1] (halves first, so that hi - lo never
    overflows), and the threshold mapped back as lo (1 - c) + hi c: no intermediate exceeds max |s|."""
    lo, hi = xp.min(s), xp.max(s)
    half_span = hi * 0.5 - lo * 0.5
    span = xp.where(half_span > 0, half_span, 1.0)
    if xp is np:
        u = (s * 0.5 - lo * 0.5) / span
    else:  # XLA:CPU divides by a reciprocal, 0 (flushed) beyond ~1e38: twice by the square root, kept apart
        root = jnp.sqrt(span)
        u = jax.lax.optimization_barrier((s * 0.5 - lo * 0.5) / root) / root
    idx = xp.clip(xp.floor(u * bins).astype(xp.int32), 0, bins - 1)
    if xp is np:
        hist = np.bincount(idx, minlength=bins).astype(s.dtype)
    else:
        hist = jnp.zeros(bins, s.dtype).at[idx].add(1.0)
    centres = (xp.arange(bins, dtype=s.dtype) + 0.5) / bins  # in units of hi - lo, from lo
    w1 = xp.cumsum(hist)
    w2 = xp.cumsum(hist[::-1])[::-1]
    m1 = xp.cumsum(hist * centres) / xp.maximum(w1, 1)
    m2 = (xp.cumsum((hist * centres)[::-1]) / xp.maximum(xp.cumsum(hist[::-1]), 1))[::-1]
    var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    c = centres[xp.argmax(var)]
    return xp.where(hi > lo, lo * (1 - c) + hi * c, lo)


def otsu_threshold(scores: Any, *, bins: int = 256) -> Any:
    r"""Otsu's threshold: maximises the between-class variance of a ``bins`` histogram.

    Same definition as ``skimage.filters.threshold_otsu`` (histogram on
    [min, max], the threshold is a bin centre, foreground is ``scores > t``).
    Concrete scores are computed in float64 on the host and give a NumPy
    float64 scalar, so close values far from 0 (1e8 ... 1e8 + 3) keep their
    bins and values near the float limits (+-3e38) no infinity; inside
    ``jax.jit`` (traced scores) in float32, JAX's default, giving a float32
    array. No intermediate exceeds :math:`\max |s|` over the scores (the histogram is taken of
    the scores shifted and scaled to [0, 1]).

    Raises:
        ValueError: ``bins`` below 2, ``scores`` empty or with NaN / infinite values.
        TypeError: ``bins`` not an int, ``scores`` not real-valued.

    >>> float(otsu_threshold(np.array([1e8, 1e8 + 1, 1e8 + 2, 1e8 + 3]), bins=4))
    100000001.125
    """
    bins = _checks.check_int("bins", bins, minimum=2)
    _checks.check_finite("scores", scores)
    _checks.check_nonempty("scores", scores)
    host = _checks.concrete(scores)
    if host is not None:
        return _otsu(np, np.asarray(host, np.float64).ravel(), bins)[()]
    return _otsu(jnp, jnp.asarray(scores, jnp.float32).ravel(), bins)


#: The binary threshold protocols :func:`evaluate` reports.
PROTOCOLS = ("fixed_0.5", "t_star", "level", "validation", "oracle", "oracle_inverted", "otsu")


def matched_threshold_of(label_type: Any) -> MatchedThreshold | None:
    """The t* a label type implies: a :class:`~metastructure.noise.LabelNoise` (its
    :meth:`~metastructure.noise.LabelNoise.matched_threshold`), a binary transition matrix
    (:func:`~metastructure.density.matched_threshold_or_none`) or a
    :class:`~metastructure.density.MatchedThreshold` (itself). None: the label type has no t*.

    >>> from metastructure import ntm
    >>> matched_threshold_of(ntm.flip_matrix(0.9, 0.9)).invert, matched_threshold_of(ntm.random_matrix(0.3))
    (True, None)
    """
    if isinstance(label_type, MatchedThreshold):
        return label_type
    if isinstance(label_type, LabelNoise):
        return label_type.matched_threshold()
    return matched_threshold_or_none(label_type)


def level_threshold(probs: Any, labels: Any, *, label_type: Any, ignore: int | None = -1) -> float | None:
    r"""t* read from the network itself: half its mean output on the training pixels labelled foreground.

    A label type that never labels background as foreground (T[0, 1] = b = 0: clean labels, ``sample``, the
    annotation types ``slices`` / ``blocks`` / ``scattered`` with the unlabelled pixels stored as background or
    ignored) has the expected meta-structure :math:`E[D^*] = (1 - f) D` (Lemma 1 of arXiv 2103.11594) and
    t* = (1 - f) / 2: half the output level on objects (p/2 for sampling). A network that learnt the
    boundary but not the level (its output on objects at c (1 - f), c != 1, from training that stopped before
    the level settled) is read at t* with the wrong half: with c = 1/5 at p = 0.1, nothing passes t* = 0.05.
    This threshold is the same midpoint with the network's own level on objects in place of 1 - f,
    measured where the labels say foreground on its training images (those pixels are objects, and, for a
    class-conditional label type, a random share of them, so their mean output is the level on objects).
    It needs no clean mask. It reads a memorising network too high (its output on the labelled pixels
    exceeds its level elsewhere: :func:`label_fit`'s memorisation index says how far).

    Args:
        probs: the network's outputs in [0, 1] on its training images, any shape.
        labels: the labels it trained on, binary, the same shape; pixels equal to ``ignore`` are left out.
        label_type: a :class:`~metastructure.noise.LabelNoise` or a binary transition matrix T.
        ignore: the label value of unlabelled pixels that were left out of training (default -1, the
            toolkit's); None: every label is 0 or 1.

    Returns:
        ``probs[labels == 1].mean() / 2``; **None** (a result, not an error) where the label type's T is
        unknown (structured label types, a bare :class:`~metastructure.density.MatchedThreshold`, None),
        not 2 x 2, labels background as foreground (b > 0) or keeps no foreground (T[1, 1] = 0), or where no
        label is foreground.

    Raises:
        ValueError: ``probs`` empty, not finite or outside [0, 1]; ``labels`` not binary (or ``ignore``) or not
            ``probs``' shape.

    >>> from metastructure import noise
    >>> y = np.array([[0, 1, 1, 0, 0]])
    >>> level_threshold(np.array([[0.0, 0.02, 0.04, 0.03, 0.0]]), y, label_type=noise.LabelNoise("sample", 0.1))
    0.015
    >>> level_threshold(np.full((1, 5), 0.5), y, label_type=noise.LabelNoise("flip", 0.1, 0.1)) is None
    True
    """
    _checks.check_nonempty("probs", probs)
    _checks.check_finite("probs", probs)
    _checks.check_unit_interval("probs", probs)
    _checks.check_same_shape("probs", probs, "labels", labels)
    _checks.check_binary("labels", labels, ignore=ignore)
    if label_type is None or isinstance(label_type, MatchedThreshold):
        return None
    t = label_type.transition() if isinstance(label_type, LabelNoise) else label_type
    if t is None:
        return None
    t = np.asarray(t, np.float64)
    if t.shape != (2, 2) or t[0, 1] != 0 or t[1, 1] == 0:
        return None
    on = np.asarray(labels) == 1
    if not on.any():
        return None
    return float(np.asarray(probs, np.float64)[on].mean() / 2)


def _levels(s: np.ndarray, sel: np.ndarray) -> dict[str, float]:
    if not sel.any():
        return {"value": float("nan"), "q10": float("nan"), "q90": float("nan")}
    v = s[sel]
    return {"value": float(v.mean()), "q10": float(np.quantile(v, 0.1)), "q90": float(np.quantile(v, 0.9))}


def evaluate(
    probs: Any,
    masks: Any,
    *,
    label_type: Any = None,
    validation: tuple[Any, Any] | None = None,
    training: tuple[Any, Any] | None = None,
    num_classes: int | None = None,
    metric: str = "iou",
    ignore: int | None = None,
    protocols: str | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    r"""Score a network's output under every threshold protocol: the one place outputs become scores.

    :func:`metastructure.train.fit` (its validation and
    :meth:`~metastructure.train.FitResult.evaluate`) and the simulations call
    this, so every number of the toolkit is scored the same way.

    **Binary** (``num_classes`` None): ``probs`` (..., H, W) in [0, 1] against
    binary ``masks``; a prediction at threshold t is ``probs > t`` (``probs < t``
    when inverted). Each protocol gives ``{"threshold", "invert", "dice", "iou"}``
    (counts pooled over all images, as the paper scores its outputs):

    * ``"fixed_0.5"``: t = 1/2;
    * ``"t_star"`` (only when ``label_type`` is given): the matched threshold of
      the label type (:meth:`metastructure.noise.LabelNoise.matched_threshold`,
      or :func:`metastructure.density.matched_threshold_or_none` of a
      transition); **None** when the label type has no t* (f + b = 1: random
      labels), which is a result, not an error;
    * ``"level"`` (only with ``training=(train_probs, train_labels)``): t* with
      the network's own level on objects in place of the label type's,
      :func:`level_threshold` (None where that is None: a label type that
      labels background as foreground, or whose T is unknown);
    * ``"validation"`` (only with ``validation=(val_probs, val_masks)``): the
      threshold that maximises pooled ``metric`` on the validation split;
    * ``"oracle"``: the threshold that maximises pooled ``metric`` on these masks
      themselves (the paper's protocol; an upper bound, not a method). Since
      Dice = 2 IoU / (1 + IoU) is increasing in IoU, both metrics pick the same
      threshold;
    * ``"oracle_inverted"``: ``{"threshold", "dice", "iou"}`` of the oracle on
      ``1 - probs`` (its threshold is on ``1 - probs``), for outputs that rank
      objects low;
    * ``"otsu"``: Otsu's threshold of the output (:func:`otsu_threshold`);

    plus ``"auc"`` (``{"value"}``, :func:`roc_auc`) and the output's levels on
    objects and on background, ``"mean_fg"`` / ``"mean_bg"``:
    ``{"value", "q10", "q90"}`` (mean, 10th and 90th percentiles; NaN when the
    masks have no such pixel). Theory predicts the levels 1 - f and b.

    **Multi-class** (``num_classes`` M): ``probs`` (..., H, W, M) against class
    maps; ``{"miou", "accuracy"}`` of the argmax, and, when ``label_type``
    gives an invertible T (:math:`|\det T| > 10^{-6}`), ``"miou_corrected"``, the
    mIoU of the argmax of :math:`(T^\top)^{-1}` applied to the output (Theorem 2 of
    arXiv 2103.11594: F = (T^T)^-1 E[F*]). A label type with an extra output
    class (:class:`~metastructure.noise.SampleVoid`: T is M x (M + 1), the
    network's output has M + 1 channels, ``num_classes`` = M + 1, the masks M
    classes) is scored over the M classes (``miou(..., classes=M)``: a pixel
    predicted void is a miss), and corrected by the least-squares inverse
    :math:`(T^\top)^{+}` when T has rank M (smallest singular value above
    :math:`10^{-6}`): for void that is the argmax over the M real classes.

    Args:
        probs: the network's probabilities (host or device array).
        masks: the ground truth, same spatial shape.
        label_type: what the network was trained on: a
            :class:`~metastructure.noise.LabelNoise`, its transition matrix, or a
            :class:`~metastructure.density.MatchedThreshold`; None if unknown.
        validation: ``(val_probs, val_masks)`` for the validation protocol (binary).
        training: ``(train_probs, train_labels)``, the network's outputs on its training images and the labels
            it trained on (-1: ignored), for the level protocol (binary).
        num_classes: None for binary, M for multi-class.
        metric: "iou" or "dice", what the validation and oracle thresholds maximise.
        protocols: the binary protocols to compute, one or a subset of :data:`PROTOCOLS`
            (default: all; each costs a sweep or a sort, so a training loop that
            scores often may ask for fewer). ``"auc"`` and the levels are always there.
        ignore: a mask value to leave out of every score (binary default: none;
            multi-class default: -1, the toolkit's ignore label).

    Returns:
        A dict of plain Python floats, bools and dicts (JSON-ready).

    Raises:
        ValueError: ``metric`` or ``protocols`` unknown, ``probs`` not finite
            or outside [0, 1], ``masks`` not binary (or classes) or not
            ``probs``' shape, or ``masks`` without a labelled pixel (every
            pixel ``ignore``: nothing to score).

    >>> import numpy as np
    >>> from metastructure import noise
    >>> m = np.zeros((1, 8, 8), bool); m[0, 2:6, 2:6] = True
    >>> r = evaluate(np.where(m, 0.1, 0.0), m, label_type=noise.LabelNoise("sample", 0.1))
    >>> r["t_star"]["threshold"], r["t_star"]["dice"], r["fixed_0.5"]["dice"]
    (0.05, 1.0, 0.0)
    >>> evaluate(np.full((1, 8, 8), 0.3), m, label_type=noise.LabelNoise("random", 0.3))["t_star"] is None
    True
    """
    if num_classes is not None:
        if validation is not None or training is not None or protocols is not None:
            raise ValueError("validation, training and protocols are binary threshold protocols; a multi-class "
                             "output is scored by its argmax (num_classes is set)")
        return _evaluate_multiclass(probs, masks, num_classes, label_type=label_type, ignore=ignore)
    if metric not in ("iou", "dice"):
        raise ValueError(f"metric must be 'iou' or 'dice', got {metric!r}")
    wanted = set(PROTOCOLS if protocols is None else [protocols] if isinstance(protocols, str) else protocols)
    if not wanted <= set(PROTOCOLS):
        raise ValueError(f"protocols must be among {PROTOCOLS}, got {sorted(wanted - set(PROTOCOLS))}")
    _checks.check_finite("probs", probs)
    _checks.check_nonempty("probs", probs)
    _checks.check_unit_interval("probs", probs)
    _checks.check_same_shape("probs", probs, "masks", masks)
    _checks.check_binary("masks", masks, ignore=ignore)
    _check_labelled("masks", masks, ignore)
    host = np.asarray(probs, np.float32)
    target = np.asarray(masks)
    s = jnp.asarray(host)
    out: dict[str, Any] = {}

    def score(th: float, invert: bool = False) -> dict[str, Any]:
        pred = MatchedThreshold(th, invert).apply(s)
        return {
            "threshold": float(th),
            "invert": bool(invert),
            "dice": float(dice(pred, target, ignore=ignore)),
            "iou": float(iou(pred, target, ignore=ignore)),
        }

    if label_type is not None and "t_star" in wanted:
        m = matched_threshold_of(label_type)
        out["t_star"] = None if m is None else score(m.threshold, bool(m.invert))
    if training is not None and "level" in wanted:
        th_level = level_threshold(*training, label_type=label_type)
        out["level"] = None if th_level is None else score(th_level)
    if validation is not None and "validation" in wanted:
        val_probs, val_masks = validation
        out["validation"] = score(best_threshold(val_probs, val_masks, metric=metric, ignore=ignore)[0])
    if "oracle" in wanted:
        out["oracle"] = score(best_threshold(s, target, metric=metric, ignore=ignore)[0])
    if "oracle_inverted" in wanted:
        th_inv = best_threshold(1 - s, target, metric=metric, ignore=ignore)[0]
        out["oracle_inverted"] = {"threshold": th_inv, "dice": float(dice(1 - s > th_inv, target, ignore=ignore)),
                                  "iou": float(iou(1 - s > th_inv, target, ignore=ignore))}
    if "otsu" in wanted:
        out["otsu"] = score(float(otsu_threshold(s)))
    if "fixed_0.5" in wanted:
        out["fixed_0.5"] = score(0.5)
    out["auc"] = {"value": float(roc_auc(s, target, ignore=ignore))}
    out["mean_fg"] = _levels(host, target == 1)
    out["mean_bg"] = _levels(host, target == 0)
    return out


def _evaluate_multiclass(probs: Any, masks: Any, num_classes: int, *, label_type: Any, ignore: int | None) -> dict:
    p = np.asarray(probs)
    t = np.asarray(masks)
    ignore = -1 if ignore is None else ignore
    if p.shape[:-1] != t.shape or p.shape[-1] != num_classes:
        raise ValueError(f"probs must be (..., H, W, {num_classes}) over masks of shape {t.shape}, got {p.shape}")
    _check_labelled("masks", t, ignore)
    pred = p.argmax(-1)
    valid = t != ignore
    tr = None
    if label_type is not None:
        if isinstance(label_type, LabelNoise):  # clean without num_classes is the identity of any size
            tr = np.eye(num_classes) if isinstance(label_type, Clean) else label_type.transition()
        else:
            tr = np.asarray(label_type, np.float64)
        _checks.check_transition("transition", tr, wide=True)
        if tr.ndim != 2 or tr.shape[1] != num_classes or tr.shape[0] > num_classes:
            raise ValueError(f"the label type's T must be M x {num_classes} with M <= {num_classes} (M = "
                             f"{num_classes} but for an extra output class such as void), got shape {tr.shape}")
    m = num_classes if tr is None else tr.shape[0]  # the truth's classes
    out: dict[str, Any] = {"miou": float(miou(pred, t, num_classes, ignore=ignore, classes=m)),
                           "accuracy": float(np.mean((pred == t)[valid]))}
    if tr is not None:
        if m == num_classes and abs(np.linalg.det(tr)) > 1e-6:
            # Theorem 2: F = (T^T)^-1 E[F*]; per pixel the row vector q^T T^-1
            out["miou_corrected"] = float(miou((p @ np.linalg.inv(tr)).argmax(-1), t, m, ignore=ignore))
        elif m < num_classes and np.linalg.svd(tr, compute_uv=False).min() > 1e-6:
            # T^T has full column rank: the least-squares inverse F = (T^T)^+ E[F*], per pixel q^T pinv(T)
            out["miou_corrected"] = float(miou((p @ np.linalg.pinv(tr)).argmax(-1), t, m, ignore=ignore))
    return out


# ------------------------------------------------------------------ boundaries
def _boundary(m: np.ndarray) -> np.ndarray:
    """Pixels of ``m`` with a 4-neighbour outside it (the image's edge counts as outside)."""
    inner = ndi.binary_erosion(m, structure=ndi.generate_binary_structure(2, 1), border_value=0)
    return m & ~inner


def boundary_distance(pred: Any, target: Any, *, per_image: bool = False) -> dict[str, Any]:
    r"""Distances between the boundaries of two binary masks, in pixels.

    The boundary of a mask is its pixels with a 4-neighbour outside it. For
    each boundary pixel of one mask, d is the Euclidean distance to the nearest
    boundary pixel of the other; both directions are pooled:

    * ``"mean"``: the average symmetric surface distance (ASSD);
    * ``"hd95"``: the 95th percentile of d (a robust Hausdorff distance);
    * ``"max"``: the Hausdorff distance.

    Two empty masks are 0 apart; an empty and a non-empty one are ``inf``.
    Pooled over the leading axes (``per_image=False``) like :func:`dice`, or
    one value per image (arrays). Host-side (numpy/scipy), not jittable.

    Raises:
        ValueError: ``pred`` and ``target`` of different shapes, not binary,
            with fewer than 2 axes, or empty (no image, or no pixel).
        TypeError: a non-numeric dtype.

    >>> a = np.zeros((9, 9), bool); a[2:7, 2:7] = True
    >>> b = np.zeros((9, 9), bool); b[2:7, 3:8] = True
    >>> {k: round(float(v), 3) for k, v in boundary_distance(a, b).items()}
    {'mean': 0.5, 'hd95': 1.0, 'max': 1.0}
    """
    p = np.asarray(pred)
    t = np.asarray(target)
    _checks.check_same_shape("pred", p, "target", t)
    _checks.check_binary("pred", p)
    _checks.check_binary("target", t)
    if p.ndim < 2:
        raise ValueError(f"pred and target must be (..., H, W) masks, got shape {p.shape}")
    _checks.check_nonempty("pred", p)
    p = p.reshape(-1, *p.shape[-2:]).astype(bool)
    t = t.reshape(-1, *t.shape[-2:]).astype(bool)
    per: list[np.ndarray | None] = []
    for a, b in zip(p, t, strict=True):
        ba, bb = _boundary(a), _boundary(b)
        if not ba.any() and not bb.any():
            per.append(np.zeros(0))
        elif not ba.any() or not bb.any():
            per.append(None)
        else:
            d_to_b = ndi.distance_transform_edt(~bb)
            d_to_a = ndi.distance_transform_edt(~ba)
            per.append(np.concatenate([d_to_b[ba], d_to_a[bb]]))

    def stats(d):
        if d is None:
            return np.inf, np.inf, np.inf
        if d.size == 0:
            return 0.0, 0.0, 0.0
        return float(d.mean()), float(np.percentile(d, 95)), float(d.max())

    if per_image:
        cols = np.array([stats(d) for d in per]).T
        return {"mean": cols[0], "hd95": cols[1], "max": cols[2]}
    if any(d is None for d in per):
        vals = stats(None)
    else:
        vals = stats(np.concatenate(per))
    return dict(zip(("mean", "hd95", "max"), vals, strict=True))


# ------------------------------------------------------------------ features
def linear_cka(x: Any, y: Any) -> float:
    r"""Linear centred kernel alignment of two feature matrices (Kornblith et al., 2019).

    ``x`` (n, p) and ``y`` (n, q) hold features of the same n examples (e.g.
    pixels of the same images). With column-centred X, Y:

        CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)  in [0, 1],

    invariant to orthogonal transforms and isotropic scaling of either side,
    so layers of different networks (or widths) can be compared. Computed in
    float64 on the host.

    >>> x = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(linear_cka(x, 3 * x @ np.linalg.qr(np.ones((4, 4)) + np.eye(4))[0]), 6)
    1.0
    """
    _checks.check_finite("x", x)
    _checks.check_finite("y", y)
    a = np.asarray(x, np.float64)
    b = np.asarray(y, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must be (n, p) and (n, q) with the same n, got {a.shape} and {b.shape}")
    _checks.check_finite("x", a)
    _checks.check_finite("y", b)
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    if den == 0:
        raise ValueError("x or y is constant over the examples: CKA is undefined")
    return float(np.linalg.norm(b.T @ a) ** 2 / den)


def _entropy(q: float) -> float:
    """Binary entropy in nats (0 at q = 0 or 1)."""
    return float(-sum(v * np.log(v) for v in (q, 1.0 - q) if v > 0))


def _check_training_outputs(probs: Any, masks: Any, labels: Any) -> None:
    """A network's outputs on its training images against their clean masks and (unless None) the drawn labels:
    non-empty finite outputs in [0, 1], binary masks and labels of the outputs' shape (label_fit, depth_tracking)."""
    for name, a in (("probs", probs), ("masks", masks)):
        _checks.check_nonempty(name, a)
    _checks.check_finite("probs", probs)
    _checks.check_unit_interval("probs", probs)
    _checks.check_same_shape("probs", probs, "masks", masks)
    _checks.check_binary("masks", masks)
    if labels is not None:
        _checks.check_same_shape("probs", probs, "labels", labels)
        _checks.check_binary("labels", labels)


def depth_tracking(probs: Any, masks: Any, labels: Any, *, axis: int = 1) -> float | None:
    """Whether a network learnt which planes were labelled: the Pearson correlation, over the planes along
    ``axis`` that hold foreground, between the labelled share of each plane's foreground and the network's mean
    output on it.

    For annotations that label whole planes (every k-th slice with the rest stored as background,
    ``noise.Slices``) on the network's training volumes. A network that cannot tell a labelled plane from an
    unlabelled one outputs the same level on every plane's foreground whatever its share: near 0 (on a dozen
    planes, within a few tenths by chance). One that can (a U-Net trained on whole thin stacks sees each
    plane's distance from the faces) follows each plane's share: towards 1, less where augmentation flips the
    depth (it then learns a depth's share averaged with its mirror's). The planes pool every volume, so the
    share at depth z is that of the depth-z foreground over the training set (theory/README.md, step 15,
    "Depth is visible on whole stacks"). Equals ``scipy.stats.pearsonr`` of the two per-plane vectors.

    Args:
        probs: outputs in [0, 1], (N, D, H, W) (or any shape with the planes along ``axis``).
        masks: the clean binary masks, the same shape.
        labels: the drawn binary labels (1: labelled foreground), the same shape.
        axis: the axis of the planes (1: z of (N, D, H, W)).

    Returns:
        The correlation, a float in [-1, 1]; None with fewer than 3 planes holding foreground, or where the
        shares or the outputs are the same on every such plane (to a relative 1e-9).

    Raises:
        ValueError: ``probs`` not finite or outside [0, 1], ``masks`` / ``labels`` not binary or not ``probs``'
            shape, empty arrays, or ``axis`` not an axis of them.
        TypeError: ``axis`` not an int, ``labels`` None, or arrays that are not real numbers.
    """
    if labels is None:
        raise TypeError("labels must be the drawn binary labels, got None")
    _check_training_outputs(probs, masks, labels)
    q = np.asarray(probs, np.float64)
    axis = _checks.check_int("axis", axis)
    if not -q.ndim <= axis < q.ndim:
        raise ValueError(f"axis {axis} is not an axis of arrays of shape {q.shape}")
    fg = np.asarray(masks).astype(bool)
    y = np.asarray(labels).astype(bool)
    others = tuple(a for a in range(q.ndim) if a != axis % q.ndim)
    n_fg = fg.sum(axis=others)
    keep = n_fg > 0
    if keep.sum() < 3:
        return None
    share = (y & fg).sum(axis=others)[keep] / n_fg[keep]
    level = (q * fg).sum(axis=others)[keep] / n_fg[keep]
    if any(np.allclose(v, v[0], rtol=1e-9, atol=1e-12) for v in (share, level)):  # the same up to rounding
        return None
    return float(np.corrcoef(share, level)[0, 1])


def label_fit(probs: Any, masks: Any, *, labels: Any = None) -> dict[str, Any]:
    """How closely a network's outputs on its training images fit the one drawn set of labels it trained on.

    * ``memorisation``: the memorisation index (theory/README.md, steps 13-14),
      per clean class: the mean output on the pixels whose drawn label is 1
      minus on those whose drawn label is 0, averaged over the classes whose
      draw holds both labels (sampling: the foreground only). A network that
      learnt the meta-structure outputs the same on both (0); one that learnt
      the draw outputs it (1). The k-group model gives 1/n_g, n_g the labels
      each output pools, which is also its n_eff on images it never saw.
      None where no class holds both labels (clean labels).
    * ``train_loss``: the mean binary cross-entropy (nats) of ``probs``
      (clipped to [1e-7, 1 - 1e-7]) against the labels;
    * ``label_entropy``: sum over the clean classes of (their share of the
      pixels) times the binary entropy of their drawn fraction: the lowest
      training loss of a network that cannot tell drawn pixels from the others
      of their class. A training loss below it is memorisation.

    Args:
        probs: outputs in [0, 1], any shape (e.g. (N, H, W)).
        masks: the clean binary masks, the same shape.
        labels: the drawn binary labels, the same shape; None (fresh draws:
            nothing fixed to fit) gives only ``train_loss`` against ``masks``.

    Returns:
        ``{"train_loss", "memorisation", "label_entropy"}`` as floats (or None), only
        ``{"train_loss"}`` without ``labels``.

    Raises:
        ValueError: ``probs`` not finite or outside [0, 1], ``masks`` / ``labels``
            not binary or not ``probs``' shape, or empty arrays.

    >>> m = np.array([[1, 1, 0, 0]]); y = np.array([[1, 0, 0, 0]])
    >>> label_fit(np.array([[0.9, 0.1, 0.0, 0.0]]), m, labels=y)["memorisation"]
    0.8
    """
    _check_training_outputs(probs, masks, labels)
    q = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
    clean = np.asarray(masks).astype(bool)
    y = clean if labels is None else np.asarray(labels).astype(bool)
    out: dict[str, Any] = {"train_loss": float(-np.mean(np.where(y, np.log(q), np.log1p(-q))))}
    if labels is None:
        return out
    index, entropy = [], 0.0
    for cls in (clean, ~clean):
        if not cls.any():
            continue
        drawn = y[cls]
        entropy += float(cls.mean()) * _entropy(float(drawn.mean()))
        if drawn.any() and not drawn.all():
            index.append(float(q[cls & y].mean() - q[cls & ~y].mean()))
    out["memorisation"] = float(np.mean(index)) if index else None
    out["label_entropy"] = entropy
    return out
