r"""Segmentation metrics and the threshold protocols of PAPER.md section 5.

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

:func:`threshold_protocols` reports them side by side. A prediction is
``scores > threshold``. The array functions are jittable; value checks (NaN
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
from .density import MatchedThreshold, matched_threshold

__all__ = [
    "accuracy",
    "best_threshold",
    "boundary_distance",
    "confusion",
    "dice",
    "iou",
    "linear_cka",
    "miou",
    "otsu_threshold",
    "roc_auc",
    "threshold_protocols",
    "threshold_sweep",
]


def _binary_pair(pred: Any, target: Any, ignore: int | None):
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


def _ratio(num, den):
    num = jnp.asarray(num, jnp.float32)
    den = jnp.asarray(den, jnp.float32)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 1.0)


def dice(pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2) -> jax.Array:
    """Dice = F1 = 2TP / (2TP + FP + FN); 1 when both masks are empty.

    >>> import numpy as np
    >>> float(dice(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]])))
    0.5
    """
    tp, fp, fn, _ = confusion(pred, target, per_image=per_image, ignore=ignore, ndim=ndim)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou(pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2) -> jax.Array:
    """IoU (Jaccard) = TP / (TP + FP + FN); 1 when both masks are empty."""
    tp, fp, fn, _ = confusion(pred, target, per_image=per_image, ignore=ignore, ndim=ndim)
    return _ratio(tp, tp + fp + fn)


def accuracy(
    pred: Any, target: Any, *, per_image: bool = False, ignore: int | None = None, ndim: int = 2
) -> jax.Array:
    """Pixel accuracy (TP + TN) / (labelled pixels)."""
    tp, fp, fn, tn = confusion(pred, target, per_image=per_image, ignore=ignore, ndim=ndim)
    return _ratio(tp + tn, tp + fp + fn + tn)


def _scores_target(scores: Any, target: Any, ignore: int | None):
    _checks.check_same_shape("scores", scores, "target", target)
    _checks.check_finite("scores", scores)
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


def miou(pred: Any, target: Any, num_classes: int, *, ignore: int | None = -1) -> jax.Array:
    """Mean over classes of the pooled IoU; classes absent from both are skipped.

    >>> import numpy as np
    >>> float(miou(np.array([0, 1, 2, 2]), np.array([0, 1, 2, -1]), 3))
    1.0
    """
    _checks.check_same_shape("pred", pred, "target", target)
    _checks.check_labels("pred", pred, num_classes, ignore=None)
    _checks.check_labels("target", target, num_classes, ignore=ignore)
    p = jnp.asarray(pred).astype(jnp.int32)
    t = jnp.asarray(target).astype(jnp.int32)
    valid = jnp.ones(t.shape, bool) if ignore is None else t != ignore
    c = jnp.arange(num_classes).reshape((num_classes,) + (1,) * p.ndim)
    pc = (p[None] == c) & valid[None]
    tc = (t[None] == c) & valid[None]
    axes = tuple(range(1, p.ndim + 1))
    inter = jnp.sum(pc & tc, axis=axes, dtype=jnp.int32)
    union = jnp.sum(pc | tc, axis=axes, dtype=jnp.int32)
    present = union > 0
    ious = inter.astype(jnp.float32) / jnp.maximum(union, 1)
    return jnp.sum(jnp.where(present, ious, 0.0)) / jnp.maximum(jnp.sum(present), 1)


def threshold_sweep(scores: Any, target: Any, thresholds: Any, *, ignore: int | None = None) -> dict[str, jax.Array]:
    """Pooled Dice and IoU of ``scores > t`` for every t in ``thresholds`` (by sorting).

    Returns:
        ``{"threshold", "dice", "iou"}``, arrays of the thresholds' length.

    >>> import numpy as np
    >>> r = threshold_sweep(np.array([0.1, 0.9]), np.array([0, 1]), np.array([0.0, 0.5]))
    >>> [round(v, 4) for v in r["dice"].tolist()]
    [0.6667, 1.0]
    """
    s, pos, neg = _scores_target(scores, target, ignore)
    th = jnp.asarray(thresholds, jnp.float32).ravel()
    n1 = jnp.sum(pos, dtype=jnp.int32)
    n0 = jnp.sum(neg, dtype=jnp.int32)
    pos_le = jnp.searchsorted(jnp.sort(jnp.where(pos, s, jnp.inf)), th, side="right")
    neg_le = jnp.searchsorted(jnp.sort(jnp.where(neg, s, jnp.inf)), th, side="right")
    tp = n1 - pos_le
    fp = n0 - neg_le
    fn = pos_le
    return {"threshold": th, "dice": _ratio(2 * tp, 2 * tp + fp + fn), "iou": _ratio(tp, tp + fp + fn)}


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
    """
    if metric not in ("iou", "dice"):
        raise ValueError(f"metric must be 'iou' or 'dice', got {metric!r}")
    grid = _default_grid(jnp.asarray(scores)) if thresholds is None else thresholds
    r = threshold_sweep(scores, target, grid, ignore=ignore)
    i = int(jnp.argmax(r[metric]))
    return float(r["threshold"][i]), float(r[metric][i])


def otsu_threshold(scores: Any, *, bins: int = 256) -> jax.Array:
    """Otsu's threshold: maximises the between-class variance of a ``bins`` histogram.

    Same definition as ``skimage.filters.threshold_otsu`` (histogram on
    [min, max], the threshold is a bin centre, foreground is ``scores > t``).
    """
    _checks.check_finite("scores", scores)
    s = jnp.asarray(scores, jnp.float32).ravel()
    lo, hi = jnp.min(s), jnp.max(s)
    width = jnp.maximum(hi - lo, 1e-30) / bins
    idx = jnp.clip(jnp.floor((s - lo) / width).astype(jnp.int32), 0, bins - 1)
    hist = jnp.zeros(bins, jnp.float32).at[idx].add(1.0)
    centers = lo + (jnp.arange(bins, dtype=jnp.float32) + 0.5) * width
    w1 = jnp.cumsum(hist)
    w2 = jnp.cumsum(hist[::-1])[::-1]
    m1 = jnp.cumsum(hist * centers) / jnp.maximum(w1, 1)
    m2 = (jnp.cumsum((hist * centers)[::-1]) / jnp.maximum(jnp.cumsum(hist[::-1]), 1))[::-1]
    var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return jnp.where(hi > lo, centers[jnp.argmax(var)], lo)


def threshold_protocols(
    scores: Any,
    target: Any,
    *,
    transition: Any = None,
    val_scores: Any = None,
    val_target: Any = None,
    metric: str = "iou",
    ignore: int | None = None,
) -> dict[str, dict[str, float]]:
    """Dice and IoU of ``scores`` under each threshold protocol, side by side.

    Protocols: ``"t_star"`` (needs the noise ``transition``; handles inversion),
    ``"validation"`` (needs ``val_scores``/``val_target``), ``"oracle"`` (best
    pooled ``metric`` on the test set: the paper), ``"otsu"`` and ``"fixed_0.5"``.

    Returns:
        ``{protocol: {"threshold", "invert", "dice", "iou"}}`` of Python floats,
        plus ``"auc"``: ``{"value"}``.
    """
    s = jnp.asarray(scores, jnp.float32)
    out: dict[str, dict[str, float]] = {}

    def score(th: float, invert: bool = False) -> dict[str, float]:
        pred = MatchedThreshold(th, invert).apply(s)
        return {
            "threshold": float(th),
            "invert": bool(invert),
            "dice": float(dice(pred, target, ignore=ignore)),
            "iou": float(iou(pred, target, ignore=ignore)),
        }

    if transition is not None:
        m = matched_threshold(transition)
        out["t_star"] = score(m.threshold, bool(m.invert))
    if val_scores is not None:
        if val_target is None:
            raise ValueError("val_target is required with val_scores")
        out["validation"] = score(best_threshold(val_scores, val_target, metric=metric, ignore=ignore)[0])
    out["oracle"] = score(best_threshold(s, target, metric=metric, ignore=ignore)[0])
    out["otsu"] = score(float(otsu_threshold(s)))
    out["fixed_0.5"] = score(0.5)
    out["auc"] = {"value": float(roc_auc(s, target, ignore=ignore))}
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
    p = p.reshape(-1, *p.shape[-2:]).astype(bool)
    t = t.reshape(-1, *t.shape[-2:]).astype(bool)
    per: list[np.ndarray | None] = []
    for a, b in zip(p, t):
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
    return dict(zip(("mean", "hd95", "max"), vals))


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
