r"""Unsupervised segmentation with meta-structures: iGTT with EMS, and the baselines.

The iterative ground-truth training (iGTT) model and its extraction of
meta-structure (EMS) module are those of Luo et al. (arXiv 2103.11594 and
2205.00160); this is our implementation of them, from their description.

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
and :func:`kmeans` (two clusters on intensity, the exact optimum).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, losses, metrics, nets, noise, train

__all__ = ["IGTTResult", "adaptive", "ems", "igtt", "igtt_masks", "kmeans", "minority_side", "otsu",
           "select_pseudo_labels"]


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
def select_pseudo_labels(probs: Any, *, num_thresholds: int = 30) -> jax.Array:
    r"""Per image, the thresholded output with the lowest DMI loss against the output.

    Candidates are ``probs > t`` for ``num_thresholds`` levels t evenly spaced
    strictly between the image's minimum and maximum output (so no candidate
    is empty or full); the DMI loss -log |det(P S^T / n)|
    (:func:`metastructure.losses.dmi_loss_from_probs`) rewards the candidate
    that carries most information about the output. For a binary
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
        scores = jax.vmap(lambda c: losses.dmi_loss_from_probs(img, c))(cands)
        return jnp.where(hi > lo, cands[jnp.argmin(scores)], False)

    out = jax.vmap(one)(p)
    return out[0] if single else out


# ------------------------------------------------------------------ iGTT
class IGTTResult(NamedTuple):
    """The outcome of :func:`igtt`.

    Attributes:
        fit: the last epoch's :class:`~metastructure.train.FitResult` (``predict``).
        pseudo_labels: (epochs + 1, N, H, W) bool: the labels each epoch trained
            on (the first all background, or ``init_labels``) and, last, the next ones.
        selected: (epochs, N, H, W) bool: the DMI-selected masks before EMS
            (oriented by ``orient`` when it is given).
        history: one record per epoch (see :func:`igtt`).
    """

    fit: train.FitResult
    pseudo_labels: np.ndarray
    selected: np.ndarray
    history: list

    def predict(self, images: Any) -> np.ndarray:
        """The trained network's probabilities (N, H, W) for ``images`` (N, H, W, C)."""
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
    orient: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    monitor: Callable[[int, np.ndarray, np.ndarray], dict | None] | None = None,
) -> IGTTResult:
    r"""Iterative ground-truth training with (or without) EMS, on unlabelled ``images`` (N, H, W, C).

    Each epoch trains (continuing from the previous epoch's parameters) for
    ``steps_per_epoch`` steps on the current pseudo-labels with ``loss``
    ("dmi+iou", the paper's; or "bce" / "bce+iou" for ablations), then selects a
    mask per image (:func:`select_pseudo_labels`) and, with ``use_ems``, passes
    it through :func:`ems`; without EMS the selected masks are the next labels.

    Polarity. DMI cannot tell a mask from its complement, so something must
    decide which side holds the objects. By default that is EMS's size rule:
    a selected mask that covers more than half its image is taken to mean that
    the output ranks the background high, and is inverted so that objects are
    the minority class (:func:`minority_side`; :func:`igtt_masks` orients the
    final masks the same way). ``orient(probs, selected) -> (N,) bool`` replaces
    the rule: the selected masks where it is True are inverted, and EMS keeps
    the side it is given (``ems(..., invert=False)``).

    ``init_labels`` replaces the all-background start (the paper's) with given
    pseudo-labels (e.g. ``ems(key, otsu(images))``): with all-background
    labels DMI and soft IoU have zero gradient, so the first selection is made
    from the untrained network's output.

    Each epoch's record in ``history`` holds ``epoch``, ``selected_fraction``
    (the mean of the selected masks) and ``inverted_fraction`` (the share of
    images whose selected mask covers more than half the image: those the size
    rule inverts when it is in use, i.e. with EMS and no ``orient``), plus
    whatever ``monitor(epoch, probs, selected)`` returns (a dict), called with
    the epoch's output (N, H, W) and its selected masks before orientation.
    The method never looks at ground truth; monitoring against it belongs to
    the caller's ``monitor`` (the ``igtt`` experiment of the simulations does
    that).

    Returns:
        :class:`IGTTResult`.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs}, {steps_per_epoch}")
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
        if monitor is not None:
            rec.update(monitor(e + 1, probs, sel) or {})
        if orient is not None:
            flip = np.asarray(orient(probs, sel), bool)
            if flip.shape != (sel.shape[0],):
                raise ValueError(f"orient must return one bool per image, shape ({sel.shape[0]},), got {flip.shape}")
            sel = np.where(flip[:, None, None], ~sel, sel)
        if use_ems:
            labels = np.asarray(ems(k_ems, sel, radius=radius, ratio=ratio, invert=orient is None))
        else:
            labels = sel
        selected.append(sel)
        pseudo.append(labels)
        history.append(rec)
    return IGTTResult(res, np.stack(pseudo), np.stack(selected), history)


def minority_side(masks: Any) -> np.ndarray:
    """Each mask (..., H, W) inverted where it covers more than half its image: EMS's size rule
    (objects are the minority class).

    >>> minority_side(np.array([[1, 1, 1, 0]], bool)).astype(int).tolist()
    [[0, 0, 0, 1]]
    """
    m = np.asarray(masks).astype(bool)
    big = m.mean(axis=(-2, -1), keepdims=True) > 0.5
    return np.where(big, ~m, m)


def igtt_masks(result: IGTTResult, images: Any) -> np.ndarray:
    """Final segmentation of ``images``: the DMI-selected mask of the trained output, on its minority side."""
    return minority_side(np.asarray(select_pseudo_labels(result.predict(images))))


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


def kmeans(images: Any) -> np.ndarray:
    r"""Per image, two-cluster k-means on intensity, solved exactly; the brighter cluster is foreground.

    In one dimension the two clusters of an optimal k-means split are the
    intensities below and above a cut, so the global optimum is found by
    trying every cut between distinct sorted values: the within-cluster sum of
    squares is :math:`SST - \frac{k (n-k)}{n} (m_1 - m_2)^2` for a lower cluster
    of k values with mean :math:`m_1`, so the cut maximises
    :math:`k (n-k) (m_1 - m_2)^2` (Otsu's between-class variance, on the exact
    values instead of a histogram). Deterministic: no initialisation, no
    iteration cap. A constant image is all background.

    >>> kmeans(np.array([[0.1, 0.2, 0.9, 1.0]]))[0].astype(int).tolist()  # (H, W) in, (1, H, W) out
    [[0, 0, 1, 1]]
    """
    x = _gray(images)
    out = []
    for im in x:
        v = np.sort(im.ravel())
        n = v.size
        k = np.arange(1, n, dtype=np.float64)  # size of the lower cluster
        c = np.cumsum(v)
        m1 = c[:-1] / k
        m2 = (c[-1] - c[:-1]) / (n - k)
        between = np.where(v[1:] > v[:-1], k * (n - k) * (m1 - m2) ** 2, -np.inf)  # cuts between distinct values
        if n < 2 or not np.isfinite(between).any():
            out.append(np.zeros(im.shape, bool))
            continue
        out.append(im > v[int(np.argmax(between))])
    return np.stack(out)
