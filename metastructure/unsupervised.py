r"""Unsupervised segmentation with meta-structures: iGTT with EMS, and the baselines (PAPER.md section 6).

Iterative ground-truth training (:func:`igtt`) starts from all-background
pseudo-labels. Each epoch it trains the network on the current pseudo-labels
(DMI + soft IoU by default), then, per image, thresholds the output at
K = 30 levels evenly spaced between the image's smallest and largest output,
keeps the candidate mask with the lowest DMI loss against the output
(:func:`select_pseudo_labels`), and passes it through EMS (:func:`ems`,
extraction of meta-structure) to make the next epoch's labels: invert when the
mask covers more than half the image, skeletonize, shift every skeleton pixel
uniformly within ``radius``, keep a random ``ratio`` of them. EMS turns a
pseudo-label with structured errors into one whose errors are spatially
uniform, the kind a network learns through (sampling-like noise keeps the
meta-structure; PCL-like noise does not).

Baselines: :func:`otsu`, :func:`adaptive` (local mean threshold, scikit-image)
and :func:`kmeans` (two clusters on intensity, scipy).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, metrics, nets, noise, train

__all__ = ["IGTTResult", "adaptive", "ems", "igtt", "igtt_masks", "kmeans", "otsu", "select_pseudo_labels"]


# ------------------------------------------------------------------ EMS
def ems(key: jax.Array, mask: Any, *, radius: int = 1, ratio: float = 0.1, invert: bool = True) -> jax.Array:
    r"""Extraction of meta-structure from a binary mask (..., H, W), per image.

    1. invert the mask if it covers more than half the image (the size rule:
       objects are the minority class; ``invert=False`` skips it, for masks
       already oriented);
    2. skeletonize (:func:`metastructure.noise.skeletonize`);
    3. shift each skeleton pixel by an independent uniform offset in
       {-radius..radius}^2 (:func:`metastructure.noise.shift`; pixels landing
       on the same place merge);
    4. keep exactly ceil(ratio * N) of the N shifted pixels, uniformly
       (:func:`metastructure.noise.sample`).

    Returns a bool mask of the input's shape.

    >>> import jax, numpy as np
    >>> m = np.zeros((32, 32), bool); m[8:24, 12:20] = True
    >>> e = ems(jax.random.key(0), m, radius=1, ratio=0.5)
    >>> int(e.sum()) <= 9, bool(e[:, :10].any())
    (True, False)
    """
    _checks.check_unit_interval("ratio", ratio)
    _checks.check_binary("mask", mask)
    m = jnp.asarray(mask).astype(bool)
    if m.ndim < 2:
        raise ValueError(f"mask must be (..., H, W), got shape {m.shape}")
    if invert:
        m = jnp.where(jnp.mean(m, axis=(-2, -1), keepdims=True) > 0.5, ~m, m)
    k_shift, k_keep = jax.random.split(key)
    sk = noise.skeletonize(m)
    moved = noise.shift(k_shift, sk, int(radius))
    return noise.sample(k_keep, moved, ratio).astype(bool)


# ------------------------------------------------------------------ selection
def _dmi_probs(p: jax.Array, s: jax.Array) -> jax.Array:
    """-log |det(P S^T / n)| with P = [p; 1-p], S = [s; 1-s] (probabilities, not logits)."""
    p = p.ravel()
    s = s.astype(jnp.float32).ravel()
    joint = jnp.stack([p, 1 - p]) @ jnp.stack([s, 1 - s]).T / p.size
    return -jnp.log(jnp.abs(jnp.linalg.det(joint)) + 1e-12)


def select_pseudo_labels(probs: Any, *, num_thresholds: int = 30) -> jax.Array:
    r"""Per image, the thresholded output with the lowest DMI loss against the output.

    Candidates are ``probs > t`` for ``num_thresholds`` levels t evenly spaced
    strictly between the image's minimum and maximum output (so no candidate
    is empty or full); the DMI loss -log |det(P S^T / n)| rewards the
    candidate that carries most information about the output. For a binary
    candidate s covering a fraction pi of the image, det(P S^T / n) =
    cov(p, s) = pi (1 - pi) (E[p | s] - E[p | not s]): the selection favours
    candidates near half the image, so it over-segments small objects (the
    ``igtt`` experiment measures how much). It is blind to polarity. Images
    whose output is constant get an empty mask.

    Args:
        probs: (N, H, W) probabilities (or (H, W)).

    Returns:
        bool masks of the same shape.

    >>> p = np.array([[0.1, 0.2, 0.8, 0.9]] * 4)
    >>> select_pseudo_labels(p).astype(int)[0].tolist()
    [0, 0, 1, 1]
    """
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
    _checks.check_finite("probs", probs)
    p = jnp.asarray(probs, jnp.float32)
    single = p.ndim == 2
    p = p[None] if single else p
    if p.ndim != 3:
        raise ValueError(f"probs must be (N, H, W) or (H, W), got shape {np.shape(probs)}")
    frac = jnp.arange(1, num_thresholds + 1, dtype=jnp.float32) / (num_thresholds + 1)

    def one(img):
        lo, hi = jnp.min(img), jnp.max(img)
        ts = lo + frac * (hi - lo)
        cands = img[None] > ts[:, None, None]
        losses = jax.vmap(lambda c: _dmi_probs(img, c))(cands)
        return jnp.where(hi > lo, cands[jnp.argmin(losses)], False)

    out = jax.vmap(one)(p)
    return out[0] if single else out


# ------------------------------------------------------------------ iGTT
class IGTTResult(NamedTuple):
    """``fit``: the last epoch's :class:`~metastructure.train.FitResult` (``predict``);
    ``pseudo_labels``: (epochs + 1, N, H, W) bool, the labels each epoch trained on
    (the first all background) and, last, the next ones; ``selected``: (epochs, N, H, W)
    the DMI-selected masks before EMS (oriented by the truth with ``polarity="oracle"``);
    ``history``: per-epoch records."""

    fit: train.FitResult
    pseudo_labels: np.ndarray
    selected: np.ndarray
    history: list

    def predict(self, images: Any) -> np.ndarray:
        return self.fit.predict(images)


def igtt(
    key: jax.Array,
    images: Any,
    *,
    epochs: int = 5,
    steps_per_epoch: int = 100,
    use_ems: bool = True,
    loss: str = "dmi+iou",
    radius: int = 1,
    ratio: float = 0.1,
    num_thresholds: int = 30,
    model: nets.Model | None = None,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    init_labels: Any = None,
    masks: Any = None,
    polarity: str = "size",
) -> IGTTResult:
    r"""Iterative ground-truth training with (or without) EMS, on unlabelled ``images`` (N, H, W, C).

    Each epoch trains (continuing from the previous epoch's parameters) for
    ``steps_per_epoch`` steps on the current pseudo-labels with ``loss``
    ("dmi+iou", the paper's; or "bce" for the ablation), then selects a mask per
    image (:func:`select_pseudo_labels`) and, with ``use_ems``, passes it
    through :func:`ems`; without EMS the selected masks are the next labels.
    EMS's size rule takes a selected mask that covers more than half its
    image to mean that the output ranks the background high, and inverts it so
    that objects are the minority class (:func:`igtt_masks` orients the final
    masks the same way); the ``igtt`` experiment measures how often that is
    wrong.

    ``init_labels`` replaces the all-background start (the paper's) with given
    pseudo-labels (e.g. ``ems(key, otsu(images))``): with all-background
    labels DMI and soft IoU have zero gradient, so the first selection is made
    from the untrained network's output.

    ``masks`` (optional ground truth) adds monitoring to ``history``: Dice of
    the selected masks (minority side, or oracle side) and AUC of the output per
    epoch, and ``misoriented_fraction``, the share of images whose next labels
    lie on the background side. Every record also holds ``selected_fraction`` and
    ``inverted_fraction``, the share of images whose selected mask covers more
    than half the image (the images EMS, when on, inverts).

    ``polarity``: "size" (the paper's rule: EMS inverts a selected mask that
    covers more than half its image) or "oracle", a diagnostic that is not
    unsupervised: each selected mask is oriented by the ground truth (the
    side where the output ranks the objects, per-image AUC of the output
    against ``masks``) and EMS's size rule is skipped; it isolates what the
    size rule costs.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs}, {steps_per_epoch}")
    if polarity not in ("size", "oracle"):
        raise ValueError(f"polarity must be 'size' or 'oracle', got {polarity!r}")
    if polarity == "oracle" and masks is None:
        raise ValueError("polarity='oracle' orients the masks by the ground truth: pass masks=")
    if masks is not None:
        masks = np.asarray(masks).astype(bool)
        if masks.shape != x.shape[:3]:
            raise ValueError(f"masks must be (N, H, W) = {x.shape[:3]}, got {masks.shape}")
    if loss not in ("dmi+iou", "bce", "bce+iou"):
        raise ValueError(f"loss must be 'dmi+iou', 'bce' or 'bce+iou', got {loss!r}")
    model = model or nets.unet()
    if init_labels is None:
        labels = np.zeros(x.shape[:3], bool)
    else:
        labels = np.asarray(init_labels).astype(bool)
        if labels.shape != x.shape[:3]:
            raise ValueError(f"init_labels must be (N, H, W) = {x.shape[:3]}, got {labels.shape}")
    pseudo, selected, history = [labels], [], []
    params = None
    res = None
    for e in range(epochs):
        k_fit, k_ems = jax.random.split(jax.random.fold_in(key, e))
        res = train.fit(k_fit, x, labels, model=model, steps=steps_per_epoch, batch_size=batch_size,
                        learning_rate=learning_rate, loss=loss, init_params=params, progress=False)
        params = res.params
        probs = res.predict(x)
        sel = np.asarray(select_pseudo_labels(probs, num_thresholds=num_thresholds))
        big = sel.mean(axis=(-2, -1)) > 0.5
        rec: dict[str, Any] = {"epoch": e + 1, "selected_fraction": float(sel.mean()),
                               "inverted_fraction": float(big.mean())}
        if masks is not None:  # per image: does the output rank the objects low?
            auc = np.array([float(metrics.roc_auc(pi, mi)) for pi, mi in zip(np.asarray(probs), masks)])
            low, known = auc < 0.5, np.isfinite(auc)
            if polarity == "oracle":
                sel = np.where(low[:, None, None], ~sel, sel)
            oriented = sel if polarity == "oracle" else _minority(sel)
            rec["dice_selected"] = float(metrics.dice(oriented, masks))
            rec["auc_output"] = float(metrics.roc_auc(probs, masks))
            # the size rule keeps the high side unless the selection covers over half: wrong where that
            # disagrees with the side that holds the objects
            if polarity == "oracle":
                wrong = np.zeros_like(big)
            else:
                wrong = (big != low) if use_ems else low  # without EMS the high side is the next label
            rec["misoriented_fraction"] = float(wrong[known].mean()) if known.any() else float("nan")
        if use_ems:
            labels = np.asarray(ems(k_ems, sel, radius=radius, ratio=ratio, invert=polarity == "size"))
        else:
            labels = sel
        selected.append(sel)
        pseudo.append(labels)
        history.append(rec)
    return IGTTResult(res, np.stack(pseudo), np.stack(selected), history)


def _minority(sel: np.ndarray) -> np.ndarray:
    """Each mask inverted where it covers more than half its image (objects are the minority)."""
    big = sel.mean(axis=(-2, -1), keepdims=True) > 0.5
    return np.where(big, ~sel, sel)


def igtt_masks(result: IGTTResult, images: Any) -> np.ndarray:
    """Final segmentation of ``images``: the DMI-selected mask of the trained output, minority class."""
    return _minority(np.asarray(select_pseudo_labels(result.predict(images))))


# ------------------------------------------------------------------ baselines
def _gray(images: Any) -> np.ndarray:
    x = np.asarray(images, np.float64)
    if x.ndim == 4:
        x = x.mean(-1)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W[, C]) or (H, W), got shape {np.shape(images)}")
    _checks.check_finite("images", x)
    return x


def otsu(images: Any) -> np.ndarray:
    """Per image, intensity > Otsu's threshold (bright objects)."""
    x = _gray(images)
    return np.stack([im > float(metrics.otsu_threshold(im)) for im in x])


def adaptive(images: Any, *, block_size: int = 35, offset: float = 0.0) -> np.ndarray:
    """Per image, intensity > the local mean over a ``block_size`` window minus ``offset``
    (``skimage.filters.threshold_local``, method "mean")."""
    from skimage.filters import threshold_local

    if block_size % 2 == 0 or block_size < 3:
        raise ValueError(f"block_size must be an odd integer >= 3, got {block_size}")
    x = _gray(images)
    return np.stack([im > threshold_local(im, block_size, method="mean", offset=offset) for im in x])


def kmeans(images: Any, *, seed: int = 0) -> np.ndarray:
    """Per image, two-cluster k-means on intensity (scipy); the brighter cluster is foreground."""
    from scipy.cluster.vq import kmeans2

    x = _gray(images)
    out = []
    for im in x:
        cent, lab = kmeans2(im.reshape(-1, 1), 2, seed=seed, minit="++")
        out.append((lab == int(np.argmax(cent[:, 0]))).reshape(im.shape))
    return np.stack(out)
