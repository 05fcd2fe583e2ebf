r"""Training losses on logits: binary cross-entropy, cross-entropy with ``ignore``, soft IoU, DMI.

Every loss takes ``(logits, targets)`` and returns a scalar; ``logits`` may carry
a trailing channel axis of size 1 (a binary network's output, (..., H, W, 1))
against targets (..., H, W).

Ignore pixels. A target equal to ``ignore`` (default :data:`IGNORE` = -1) is
unlabelled: every loss leaves it out of every sum (a mask, so it holds under
``jit`` too), and a batch with no labelled pixel gives **0** with zero gradient.
Values are not checked here (the losses run under ``jit``);
:func:`metastructure.train.fit` checks its labels before training. A class
index outside [0, M) that is not ``ignore`` makes :func:`cross_entropy` NaN
rather than a silently wrong class.

* :func:`bce_with_logits`: :math:`-t \log \sigma(z) - (1-t) \log(1 - \sigma(z))`,
  soft targets :math:`t \in [0, 1]` allowed. It is affine in :math:`t`, so its
  mean over label-noise draws is its value at the expected label (the fresh-draw
  regime of :func:`metastructure.train.fit`; theory/README.md, step 3).
* :func:`cross_entropy`: softmax cross-entropy over pixels whose label is not
  ``ignore``, or against soft targets (..., H, W, M).
* :func:`soft_iou_loss`: :math:`1 - \sum p t / \sum (p + t - p t)`, with
  :math:`p = \sigma(z)`.
* :func:`dmi_loss`: determinant-based mutual information (Xu et al., 2019),
  :math:`-\log |\det(P S^\top / n)|` with :math:`P = [p; 1-p]` and
  :math:`S = [s; 1-s]` stacked over the n pixels; :func:`dmi_loss_from_probs`
  is the same on probabilities (the iGTT pseudo-label selection scores
  candidate masks with it, :func:`metastructure.unsupervised.select_pseudo_labels`).

:func:`by_name` maps the names that :func:`metastructure.train.fit` accepts
("bce", "ce", "bce+iou", "dmi+iou") to these functions.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "IGNORE",
    "MULTICLASS",
    "NAMES",
    "bce_with_logits",
    "by_name",
    "cross_entropy",
    "dmi_loss",
    "dmi_loss_from_probs",
    "soft_iou_loss",
]


#: The target value the losses leave out by default (unlabelled pixels).
IGNORE = -1


def _valid(targets: jax.Array, ignore: int | None) -> jax.Array:
    return jnp.ones(targets.shape, bool) if ignore is None else targets != ignore


def _binary_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Drop a trailing channel axis of size 1 from a binary network's logits."""
    if logits.shape[-1:] == (1,) and logits.ndim == targets.ndim + 1:
        return logits[..., 0]
    return logits


def bce_with_logits(logits: jax.Array, targets: jax.Array, *, ignore: int | None = -1) -> jax.Array:
    r"""Mean sigmoid binary cross-entropy of logits against (soft) targets.

    :math:`\ell(z, t) = \max(z, 0) - z t + \log(1 + e^{-|z|})`, which equals
    :math:`-t \log \sigma(z) - (1-t) \log(1 - \sigma(z))` without overflow.

    Args:
        logits: (..., H, W) or (..., H, W, 1).
        targets: (..., H, W) in [0, 1]; pixels equal to ``ignore`` are left out.
        ignore: the target value to leave out (None: none).

    Returns:
        The mean over the labelled pixels (0 when there are none).

    >>> import jax.numpy as jnp
    >>> round(float(bce_with_logits(jnp.zeros(4), jnp.array([0, 1, 1, -1]))), 6)  # log 2
    0.693147
    """
    z = _binary_logits(logits, targets)
    t = targets.astype(jnp.float32)
    valid = _valid(t, ignore)
    t = jnp.where(valid, t, 0.0)
    per = jnp.maximum(z, 0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z)))
    return jnp.sum(per * valid) / jnp.maximum(jnp.sum(valid), 1)


def cross_entropy(logits: jax.Array, labels: jax.Array, *, ignore: int | None = -1) -> jax.Array:
    r"""Mean softmax cross-entropy, :math:`-\log \mathrm{softmax}(z)_y`, over labelled pixels.

    Args:
        logits: (..., H, W, M).
        labels: class indices (..., H, W) in [0, M) or ``ignore``; or soft
            targets (..., H, W, M), averaged over every pixel.
        ignore: the label to leave out (None: none).

    Returns:
        The mean over the labelled pixels (0 when there are none); NaN when a
        label other than ``ignore`` lies outside [0, M).

    >>> import jax.numpy as jnp
    >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([1, -1]))), 6)  # log 4
    1.386294
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    if labels.ndim == logits.ndim:  # soft targets
        return -jnp.mean(jnp.sum(labels * logp, axis=-1))
    valid = _valid(labels, ignore)
    in_range = (labels >= 0) & (labels < logits.shape[-1])
    lab = jnp.where(valid & in_range, labels, 0).astype(jnp.int32)
    nll = -jnp.take_along_axis(logp, lab[..., None], axis=-1)[..., 0]
    nll = jnp.where(valid & ~in_range, jnp.nan, nll)  # a bad class index is loud, not another class
    return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def soft_iou_loss(logits: jax.Array, targets: jax.Array, *, ignore: int | None = IGNORE,
                  power: int = 1) -> jax.Array:
    r"""One minus the soft IoU: :math:`1 - \sum p t / \max(\sum (p^k + t^k - p t), 10^{-6})`, :math:`p = \sigma(z)`.

    ``power`` is k: 1 (the plain soft IoU) or 2 (squares in the denominator,
    as the iGTT authors' code has it; for binary targets :math:`t^2 = t`).
    Summed over the labelled pixels of the batch (one ratio, not a mean of
    per-image ratios: vmap it over images for per-image ratios); it lies in
    [0, 1] for targets in [0, 1] and k = 1, and is 0 when no pixel is
    labelled. With an all-zero target the intersection is 0 and so is the
    gradient of the ratio's numerator.

    >>> import jax.numpy as jnp
    >>> round(float(soft_iou_loss(jnp.full(4, 20.0), jnp.ones(4))), 6)
    0.0
    """
    z = _binary_logits(logits, targets)
    valid = _valid(targets, ignore)
    p = jnp.where(valid, jax.nn.sigmoid(z), 0.0)
    t = jnp.where(valid, targets.astype(jnp.float32), 0.0)
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    inter = jnp.sum(p * t)
    loss = 1.0 - inter / jnp.maximum(jnp.sum(p ** power + t ** power - p * t), 1e-6)
    return jnp.where(jnp.any(valid), loss, 0.0)


def dmi_loss_from_probs(probs: jax.Array, targets: jax.Array, *, ignore: int | None = IGNORE) -> jax.Array:
    r"""DMI loss of probabilities: :math:`-\log(|\det(P S^\top / n)| + 10^{-12})`.

    :math:`P = [p; 1-p]` and :math:`S = [s; 1-s]` are 2 x n over the n
    labelled pixels (all axes flattened; targets equal to ``ignore`` are left
    out, and no labelled pixel gives 0), so :math:`P S^\top / n` is the 2 x 2 empirical joint of
    prediction and target. For a binary :math:`s` covering a fraction
    :math:`\pi`, :math:`\det(P S^\top / n) = \mathrm{cov}(p, s) = \pi(1-\pi)
    (E[p \mid s] - E[p \mid \lnot s])`. Replacing the targets by their image
    under an invertible noise transition multiplies the determinant by
    :math:`\det T`, a constant shift of the loss (Xu et al., 2019). The
    common form :math:`-\log(|\det U| + 10^{-3})` on the unnormalised counts
    :math:`U = P S^\top` is :math:`-2 \log n` plus this loss with
    :math:`10^{-3} / n^2` in place of :math:`10^{-12}` (for a 128^2 image,
    :math:`4 \cdot 10^{-12}`): the same loss and gradient, up to a constant.

    >>> import jax.numpy as jnp
    >>> p = jnp.array([0.9, 0.8, 0.1, 0.2]); s = jnp.array([1, 1, 0, 0])
    >>> round(float(dmi_loss_from_probs(p, s)), 4)  # -log cov(p, s) = -log(0.25 * 0.7)
    1.743
    """
    valid = _valid(targets, ignore).ravel()
    p = probs.ravel()
    s = targets.astype(jnp.float32).ravel()
    w = valid.astype(jnp.float32)
    joint = jnp.stack([p * w, (1 - p) * w]) @ jnp.stack([s, 1 - s]).T / jnp.maximum(jnp.sum(w), 1.0)
    return jnp.where(jnp.any(valid), -jnp.log(jnp.abs(jnp.linalg.det(joint)) + 1e-12), 0.0)


def dmi_loss(logits: jax.Array, targets: jax.Array, *, ignore: int | None = IGNORE) -> jax.Array:
    r"""DMI loss of logits: :func:`dmi_loss_from_probs` of :math:`\sigma(z)`.

    It rewards information about the targets, not agreement with them: it is
    invariant (up to a constant) to any invertible noise transition, and blind
    to polarity (``1 - s`` scores like ``s``).
    """
    return dmi_loss_from_probs(jax.nn.sigmoid(_binary_logits(logits, targets)), targets, ignore=ignore)


def _bce_iou(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return bce_with_logits(logits, targets) + soft_iou_loss(logits, targets)


def _dmi_iou(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return dmi_loss(logits, targets) + soft_iou_loss(logits, targets)


_BY_NAME: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "bce": bce_with_logits,
    "ce": cross_entropy,
    "bce+iou": _bce_iou,
    "dmi+iou": _dmi_iou,
}
#: The loss names :func:`by_name` (and ``train.fit(loss=...)``) accept.
NAMES = tuple(_BY_NAME)
#: The names among :data:`NAMES` for multi-class (softmax) outputs; the others are binary (one logit).
MULTICLASS = ("ce",)


def by_name(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The loss ``loss(logits, targets)`` called ``name``: one of :data:`NAMES`.

    "bce+iou" and "dmi+iou" are sums of two losses (the iGTT paper trains with
    DMI + soft IoU).

    Raises:
        ValueError: an unknown name.

    >>> by_name("bce") is bce_with_logits
    True
    """
    if name not in _BY_NAME:
        raise ValueError(f"loss must be one of {list(NAMES)} or a callable, got {name!r}")
    return _BY_NAME[name]
