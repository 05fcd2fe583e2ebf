r"""Closed-form predictions, as fast numpy functions vectorised over the swept parameter.

These are the numeric forms of :mod:`theory.derivations` that the simulations
draw beside measured points. They are mathematics on arrays (numpy, scipy) and
import nothing of :mod:`metastructure`: a prediction about a mask takes the
mask's fields, which ``metastructure.density`` computes (``fraction_field``,
``sampling_fields``). The network is modelled as a kernel smoother of
bandwidth ``h`` (its effective receptive field, a parameter to fit, not a known
constant) of **one draw** of the noisy labels: its output is the smoothed noisy
field of that draw, whose *mean* over draws is the expected noisy fraction field
(Lemma 1) and whose *spread* is the variance below, thresholded at t*. (At the
population optimum, with infinitely many draws, only the mean would remain.)

This finite-sampling model is phenomenological: it describes a smoother of the
training labels, each decision pooling about n_eff labels. Fitted to networks on
held-out images, n_eff comes out far above the 4 pi h^2 labels of a window
(simulations/README.md reports the fitted values), because there the variance comes from estimating
the learned function from the whole training set, not from one window's labels;
n_eff is then a fitted number, not the window's count.

Finite sampling enters through one formula (derivation 6, generalised to any
binary T = [[1-b, b], [f, 1-f]]): at a pixel with clean fraction D and squared
kernel sums S_fg = sum w^2 y, S_bg = sum w^2 (1-y), the noisy field has mean
b + s D (s = 1 - f - b) and variance f(1-f) S_fg + b(1-b) S_bg, so in the normal
approximation the pixel is called foreground (at t*, inverted when s < 0) with
probability

.. math:: P_{fg} = \Phi\left(\frac{|s|\,(D - 1/2)}{\sqrt{f(1-f) S_{fg} + b(1-b) S_{bg}}}\right)

Expected Dice follows from the expected counts, 2 TP / (2 TP + FP + FN) (ratio
of expectations: accurate when the structure holds many pixels). Bernoulli noise
is assumed; exact-count draws have slightly smaller variance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage, special, stats

__all__ = [
    "annotated_dice",
    "annotated_probability",
    "boundary_error",
    "cluster_overlap",
    "clustered_n_eff",
    "bulk_error",
    "critical_flip_rate",
    "critical_width",
    "dice_from_probability",
    "dice_skeleton_stripe",
    "dice_stripe",
    "disk_level_radius",
    "disk_level_shift",
    "fg_probability",
    "grid_overlap",
    "lattice_overlap",
    "local_design",
    "memorised_fraction",
    "miou_symmetric_flip",
    "output_levels",
    "overlap_pcl",
    "pcl_dice",
    "pcl_label_dice",
    "pooled_dice",
    "predicted_dice",
    "scale_n_eff",
    "skeleton_half_width",
    "stripe_fields",
    "stripe_peak",
]


def _phi_cdf(x):
    return special.ndtr(x)


# ------------------------------------------------------------------ 2: levels
def output_levels(fg_to_bg: Any, bg_to_fg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predicted network output deep inside objects and deep in the background.

    The proper-scoring optimum is E[y*|x]: 1 - f inside, b outside. Sampling
    with ratio p is f = 1 - p, b = 0: (p, 0).

    >>> [float(v) for v in output_levels(0.9, 0.0)]
    [0.09999999999999998, 0.0]
    """
    f = np.asarray(fg_to_bg, float)
    b = np.asarray(bg_to_fg, float)
    return 1.0 - f + 0.0 * b, b + 0.0 * f


# ------------------------------------------------------------------ 5: geometry
def stripe_peak(width: Any, bandwidth: Any) -> np.ndarray:
    """Peak of the gaussian fraction field of a stripe: erf(w / (2 sqrt(2) h))."""
    return special.erf(np.asarray(width, float) / (2 * np.sqrt(2) * np.asarray(bandwidth, float)))


def critical_width(bandwidth: Any) -> np.ndarray:
    """Narrowest stripe whose field still reaches 1/2: 2 sqrt(2) erfinv(1/2) h ~= 1.349 h."""
    return 2 * np.sqrt(2) * special.erfinv(0.5) * np.asarray(bandwidth, float)


def disk_level_shift(radius: Any, bandwidth: Any) -> np.ndarray:
    """Leading-order inward shift of the 1/2 level set of a disk: h^2 / (2R)."""
    return np.asarray(bandwidth, float) ** 2 / (2 * np.asarray(radius, float))


def disk_level_radius(radius: float, bandwidth: float) -> float:
    r"""Exact radius of the 1/2 level set of a gaussian-blurred disk (continuous).

    :math:`D(r) = P(|r e_1 + h Z| \le R)` = ncx2.cdf(R^2/h^2, df=2, nc=r^2/h^2); solved by
    bisection. The reference for :func:`disk_level_shift`.
    """
    from scipy.optimize import brentq

    R, h = float(radius), float(bandwidth)

    def field(r):
        return stats.ncx2.cdf((R / h) ** 2, 2, (r / h) ** 2) - 0.5

    if field(0.0) <= 0:
        return 0.0
    return float(brentq(field, 0.0, R + 10 * h, xtol=1e-12))


# ------------------------------------------------------------------ 6: sampling
def fg_probability(D: Any, S_fg: Any, S_bg: Any, fg_to_bg: Any, bg_to_fg: Any) -> np.ndarray:
    r"""P(pixel called foreground at t*) in the normal approximation (module docstring).

    Where the variance is zero (no noise) the answer is the step 1{D > 1/2}; at
    f + b = 1 (no information) it is 1/2.
    """
    f = np.asarray(fg_to_bg, float)
    b = np.asarray(bg_to_fg, float)
    D, S_fg, S_bg = (np.asarray(a, float) for a in (D, S_fg, S_bg))
    s = 1.0 - f - b
    var = f * (1 - f) * S_fg + b * (1 - b) * S_bg
    margin = np.abs(s) * (D - 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, margin / np.sqrt(np.where(var > 0, var, 1.0)), np.sign(margin) * np.inf)
    p = _phi_cdf(z)
    return np.where(np.abs(s) < 1e-12, 0.5, p)


def dice_from_probability(prob: np.ndarray, mask: np.ndarray, axes: tuple[int, ...], *, weight: Any = 1.0):
    """Expected-count Dice, 2 TP / (2 TP + FP + FN), summing ``prob`` over ``axes``."""
    m = np.asarray(mask, bool)
    tp = np.sum(prob * m * weight, axis=axes)
    fp = np.sum(prob * ~m * weight, axis=axes)
    fn = np.sum((1 - prob) * m * weight, axis=axes)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1e-300)


def predicted_dice(fields: Any, mask: Any, fg_to_bg: Any, bg_to_fg: Any) -> np.ndarray:
    """Predicted Dice against ``mask`` of a kernel smoother trained on (f, b)-noisy labels (theory/README.md, step 12).

    Each pixel is called foreground at t* with the probability
    :func:`fg_probability` gives from the mask's fields, and the expected
    counts against ``mask`` give the Dice (:func:`dice_from_probability`).
    Vectorised over the rates; sampling with ratio p is ``fg_to_bg = 1 - p``.

    Args:
        fields: ``(D, S_fg, S_bg)`` of the mask on its pixel grid at the
            kernel's bandwidth, each (H, W): the clean fraction field and the
            squared-weight sums over foreground and background
            (``metastructure.density.sampling_fields``).
        mask: the binary mask (H, W) the fields belong to, the truth scored against.
        fg_to_bg, bg_to_fg: rates f and b, of any broadcastable shape.

    Returns:
        One value per (f, b), of their broadcast shape.

    Raises:
        ValueError: ``fields`` is not three arrays of ``mask``'s shape.
    """
    D, s_fg, s_bg = _three_fields(fields, np.shape(mask))
    f = np.asarray(fg_to_bg, float)
    b = np.asarray(bg_to_fg, float)
    shape = np.broadcast(f, b).shape
    ff = np.broadcast_to(f, shape).reshape(-1, 1, 1)
    bb = np.broadcast_to(b, shape).reshape(-1, 1, 1)
    prob = fg_probability(D[None], s_fg[None], s_bg[None], ff, bb)
    return dice_from_probability(prob, np.asarray(mask, bool)[None], axes=(1, 2)).reshape(shape)


def _three_fields(fields: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    try:
        D, s_fg, s_bg = (np.asarray(a, float) for a in fields)
    except (TypeError, ValueError):
        raise ValueError("fields must be the three arrays (D, S_fg, S_bg)") from None
    if not (D.shape == s_fg.shape == s_bg.shape == tuple(shape)):
        raise ValueError(f"fields must be three arrays of the mask's shape {tuple(shape)}, got shapes "
                         f"{D.shape}, {s_fg.shape}, {s_bg.shape}")
    return D, s_fg, s_bg


def pooled_dice(fields: Any, n_eff: float, fg_to_bg: Any, bg_to_fg: Any) -> np.ndarray:
    """The share of the clean Dice that (f, b) label noise leaves a network whose decisions pool ``n_eff`` labels.

    The finite-sampling model of a trained network (theory/README.md, steps
    11-12, with the window replaced by one number): at each pixel the network
    estimates E[y*] = b + (1-f-b) D from ``n_eff`` noisy labels drawn around
    it, D the clean fraction field of the mask at a sharp bandwidth (1 px:
    a network sees the image, so its clean boundary is the mask's), so
    S_fg = D / n_eff and S_bg = (1 - D) / n_eff in :func:`fg_probability`. The
    probability that a pixel is called foreground at t* (inverted when
    f + b > 1) gives expected TP / FP / FN against the clean partition
    {D > 1/2}, pooled over every pixel of ``fields`` (:func:`dice_from_probability`).
    Clean labels give 1; multiply by a network's measured clean Dice to predict its
    Dice. n_eff is a parameter to fit to trained networks.

    Args:
        fields: the clean fraction fields D of the masks, any shape (e.g.
            (N, H, W)), values in [0, 1]: ``metastructure.density.fraction_field(masks, 1.0)``.
        n_eff: labels pooled per decision, > 0.
        fg_to_bg, bg_to_fg: rates f and b, scalars or 1-D arrays of one shape.

    Returns:
        One value per (f, b), shape (K,).

    Raises:
        ValueError: ``fields`` empty, outside [0, 1] or a mask (0 and 1 only), or ``n_eff`` not positive.
    """
    d = np.asarray(fields, float)
    _check_fields(d)
    if not float(n_eff) > 0:
        raise ValueError(f"n_eff must be positive, got {n_eff}")
    f = np.atleast_1d(np.asarray(fg_to_bg, float))
    b = np.broadcast_to(np.asarray(bg_to_fg, float), f.shape)
    extra = (None,) * d.ndim
    prob = fg_probability(d[None], d[None] / n_eff, (1 - d[None]) / n_eff, f[(...,) + extra], b[(...,) + extra])
    return dice_from_probability(prob, d[None] > 0.5, axes=tuple(range(1, d.ndim + 1)))


def _check_fields(d: np.ndarray) -> None:
    if d.size == 0 or not np.all((d >= 0) & (d <= 1)):
        raise ValueError(f"fields must be a non-empty array of fractions in [0, 1], got shape {d.shape}")
    if np.all((d == 0) | (d == 1)) and d.min() < d.max():
        raise ValueError("fields holds only 0 and 1, a mask: pass the masks' clean fraction fields "
                         "(metastructure.density.fraction_field(masks, 1.0))")


def annotated_dice(fields: Any, n_eff: float, fraction: Any, *, unlabelled: str = "background",
                   overlap: float = 0.0, design: float = 1.0) -> np.ndarray:
    r"""The share of the clean Dice left by annotating a fraction p of the pixels (theory/README.md, step 15).

    The model of :func:`pooled_dice` (each decision pools ``n_eff`` labels, the
    clean field D at 1 px, the clean partition {D > 1/2} as the truth), the
    labels in units labelled as a whole whose q is ``overlap``
    (:func:`cluster_overlap`, :func:`lattice_overlap`; 0 for single pixels)
    and pooled in patches of design effect ``design`` (:func:`local_design`; 1 for labels pooled one by one),
    so that the labelled share of n pooled labels varies as that of
    n' = :func:`clustered_n_eff` (n, q, deff) independent ones:

    * ``"background"`` (unlabelled pixels stored as background): sampling,
      f = 1 - p, b = 0, read at t* = p/2, over n' labels:
      ``pooled_dice(fields, n', 1 - p, 0)``,
      :math:`P_{fg} = \Phi\big((D - \tfrac12) / \sqrt{\tfrac{1-p}{p} D / n'}\big)`.
      Every labelled foreground pixel adds the same 1, so the units' variance is the labels'.
    * ``"ignore"`` (unlabelled pixels left out of the loss): the labelled pixels
      are clean and the network's estimate is the ratio
      :math:`\sum w L y / \sum w L`, unbiased, read at 1/2. Over the pooled
      model's labels (y independent given D) the units add no first-order
      variance, since the y - D of two labels are uncorrelated; the number of
      labelled pixels a decision sees does vary, which to second order gives
      :math:`\tfrac{1-p}{p} \tfrac{D (1 - D)}{n_{eff}} \big(1 + \tfrac{1}{p n'}\big)`
      (``derivations.annotation``):
      :math:`P_{fg} = \Phi\big((D - \tfrac12) / \sqrt{\tfrac{1-p}{p} \tfrac{D(1-D)}{n_{eff}}
      (1 + \tfrac{1}{p n'})}\big)`. The variance is about (1 - D) times the background one without units:
      half at the boundary.

    Args:
        fields: the clean fraction fields D (any shape: images or volumes), in [0, 1].
        n_eff: labels pooled per decision, > 0.
        fraction: p in (0, 1], scalar or 1-D.
        unlabelled: ``"background"`` or ``"ignore"``.
        overlap: q of the units, in [0, 1].
        design: the pooling's design effect, > 0 (1: labels pooled one by one).

    Returns:
        One value per p, shape (K,); 1 at p = 1.

    Raises:
        ValueError: bad fields (as :func:`pooled_dice`), ``n_eff`` not positive, p outside (0, 1], an unknown
            ``unlabelled``, ``overlap`` outside [0, 1], or ``design`` not positive.
    """
    d = np.asarray(fields, float)
    _check_fields(d)
    prob = annotated_probability(d, n_eff, fraction, unlabelled=unlabelled, overlap=overlap, design=design)
    return dice_from_probability(prob, d[None] > 0.5, axes=tuple(range(1, d.ndim + 1)))


def annotated_probability(D: Any, n_eff: float, fraction: Any, *, unlabelled: str = "background",
                          overlap: float = 0.0, design: float = 1.0) -> np.ndarray:
    r"""P(pixel called foreground) under :func:`annotated_dice`'s model, shape (K,) + D's shape for K fractions:
    :math:`\Phi\big((D - \tfrac12) / \sqrt{\tfrac{1-p}{p} V}\big)` with V = D / n' (background, at
    t* = p/2) or D (1 - D) / n_eff (1 + 1/(p n')) (ignore, at 1/2), n' = ``clustered_n_eff(n_eff, overlap,
    design)``; the step 1{D > 1/2} where the variance is 0 (p = 1).

    Raises:
        ValueError: ``n_eff`` not positive, p outside (0, 1], an unknown ``unlabelled``, ``overlap`` outside
            [0, 1], ``design`` not positive.
    """
    if unlabelled not in ("background", "ignore"):
        raise ValueError(f"unlabelled must be 'background' or 'ignore', got {unlabelled!r}")
    p = np.atleast_1d(np.asarray(fraction, float))
    if p.ndim != 1 or not np.all((p > 0) & (p <= 1)):
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    if not float(n_eff) > 0:
        raise ValueError(f"n_eff must be positive, got {n_eff}")
    if not 0.0 <= float(overlap) <= 1.0:
        raise ValueError(f"overlap must lie in [0, 1], got {overlap!r}")
    if np.ndim(design) or not (np.isfinite(design) and float(design) > 0):
        raise ValueError(f"design must be a positive number, got {design!r}")
    n = float(n_eff)
    units = float(clustered_n_eff(n, float(overlap), design=float(design)))
    d = np.asarray(D, float)
    extra = (None,) * d.ndim
    if unlabelled == "background":  # sampling: fg_probability with f = 1 - p, b = 0, pooled over n' labels
        return fg_probability(d[None], d[None] / units, (1 - d[None]) / units, (1 - p)[(...,) + extra], 0.0)
    var = ((1 - p) / p * (1 + 1 / (p * units)))[(...,) + extra] * (d * (1 - d))[None] / n
    margin = np.broadcast_to(d[None] - 0.5, var.shape)
    with np.errstate(divide="ignore", invalid="ignore"):  # no variance: the step 1{D > 1/2} (D = 1/2 is out)
        z = np.where(var > 0, margin / np.sqrt(np.where(var > 0, var, 1.0)), np.where(margin > 0, np.inf, -np.inf))
    return _phi_cdf(z)


def cluster_overlap(counts: Any) -> float:
    r"""q = :math:`\sum_c m_c^2 / (\sum_c m_c)^2`: the chance that two labels drawn from the training set's
    foreground fall in the same cluster (a block, a pixel), from the clusters' foreground counts
    :math:`m_c` (``noise.Blocks(p, s).unit_counts(masks)``); 1 / q is the effective number of clusters. Clusters
    labelled independently; every k-th slice labels one class of slices per image: :func:`lattice_overlap`.

    Raises:
        ValueError: no counts, a negative one, or no foreground at all.
    """
    m = np.asarray(counts, float).ravel()
    if m.size == 0 or np.any(m < 0) or not m.sum() > 0:
        raise ValueError("counts must be non-negative foreground counts, not all zero")
    return float(np.sum(m * m) / m.sum() ** 2)


def grid_overlap(masks: Any, size: int, *, ndim: int = 2) -> float:
    r"""q of blocks of side s on a grid shifted by a uniform random phase per image and axis (``noise.Blocks``):
    the chance that two labels drawn from the masks' foreground fall in one block of the draw's grid.

    Along one axis two pixels :math:`\delta` apart share a block at :math:`s - |\delta|` of the s phases, so
    the chance is the foreground's autocorrelation against the tent
    :math:`K(\delta) = \prod_a \max(0, 1 - |\delta_a| / s)`, per image (two images never share a block):

    .. math:: q = \sum_x f(x)\,(f * K)(x) \Big/ \Big(\sum_x f(x)\Big)^2,

    the mean over the :math:`s^d` phases of :func:`cluster_overlap` of the shifted grid's blocks (a single
    phase's q, e.g. ``noise.Blocks(p, s).unit_counts`` on the phase-0 grid, is one draw of it). The labelled
    share of the foreground then has variance p(1-p) q exactly. ``size=1``: 1 / (the foreground count), the q
    of scattered pixels.

    Args:
        masks: binary masks (..., H, W), or (..., D, H, W) with ``ndim=3``; leading axes are separate images.
        size: the blocks' side s >= 1.
        ndim: 2 or 3, the blocks' dimensions (the masks' last axes).

    Raises:
        ValueError: ``size`` below 1, ``ndim`` not 2 or 3, fewer axes than ``ndim``, or no foreground.

    >>> grid_overlap(np.ones((1, 2)), 2)  # two pixels side by side share a block at one phase of two
    0.75
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    f = np.asarray(masks).astype(float)
    if f.ndim < ndim:
        raise ValueError(f"masks must have at least {ndim} axes, got shape {f.shape}")
    total = f.sum()
    if not total > 0:
        raise ValueError("masks hold no foreground")
    s = int(size)
    tent = (s - np.abs(np.arange(1 - s, s))) / s
    return _pair_sum(f, [tent] * ndim) / float(total) ** 2


def _pair_sum(f: np.ndarray, kernels: list) -> float:
    """sum_x f(x) sum_d K(d) f(x + d) within each image, K = the outer product of the symmetric, odd-length 1-D
    ``kernels`` over the last len(kernels) axes (leading axes: separate images), by separable convolution."""
    c = f
    for ax, k in zip(range(f.ndim - len(kernels), f.ndim), kernels, strict=True):
        c = ndimage.convolve1d(c, np.asarray(k, float), axis=ax, mode="constant", cval=0.0)
    return float((f * c).sum())


def local_design(masks: Any, correlation: Callable[[np.ndarray], tuple], sigma: float, *, ndim: int = 2) -> float:
    r"""The design effect of labels pooled in patches: how many times the variance of a decision's labelled
    fraction exceeds that of as many independent labels, beyond the training set's own share
    (theory/README.md, step 15, "How locally a network pools").

    Two foreground pixels d apart in one image are pooled together with weight
    :math:`g_\sigma(d) = e^{-|d|^2 / 2\sigma^2}`, and their labelled indicators are correlated by
    :math:`\rho(d)` (``correlation``: a label type's ``pair_correlation``, one factor per axis):

    .. math:: \mathrm{deff} = \sum_x f(x) \sum_d \rho(d)\, g_\sigma(d)\, f(x + d) \Big/ \sum_x f(x)
              = 1 + \sum_{d \neq 0} \rho(d)\, g_\sigma(d)\, A(d),

    A(d) the foreground's autocorrelation per foreground pixel (images never pair). The pair weight is the
    model's assumption (gaussian patches of width tau centred over the foreground give about
    :math:`e^{-|d|^2 / 4\tau^2}`, sigma = sqrt(2) tau, away from the foreground's edges). The decision then
    sees the variance of n / (deff + (n - 1) q) independent labels (:func:`clustered_n_eff`; n / deff with
    background semantics read at the network's own level, where q drops out). ``sigma = 0``: 1, labels
    pooled one by one (uniform pooling); scattered pixels (:math:`\rho = \delta`): 1 at every sigma. The sum
    stops at :math:`|d_a| \le \lceil 4\sigma \rceil` per axis, where the weight is below :math:`e^{-8}`.

    Args:
        masks: binary masks (..., H, W), or (..., D, H, W) with ``ndim=3``; leading axes are separate images.
        correlation: ``offsets -> ndim factors`` (int array in, ``ndim`` arrays of its shape out), e.g.
            ``noise.Blocks(0.1, 8, ndim=3).pair_correlation``.
        sigma: the patches' width in pixels, >= 0.
        ndim: 2 or 3, the masks' spatial axes.

    Raises:
        ValueError: ``sigma`` negative or not finite, ``ndim`` not 2 or 3, fewer axes than ``ndim``, masks not
            binary, no foreground, or ``correlation`` not giving ``ndim`` factors of the offsets' shape with 1 at
            d = 0.
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    m = np.asarray(masks)
    if m.ndim < ndim:
        raise ValueError(f"masks must have at least {ndim} axes, got shape {m.shape}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError("masks must be binary (bool or 0/1): an ignore value is neither class")
    f = m.astype(float)
    total = f.sum()
    if not total > 0:
        raise ValueError("masks hold no foreground")
    if sigma == 0:
        return 1.0
    r = int(np.ceil(4 * sigma))
    d = np.arange(-r, r + 1)
    factors = correlation(d)
    if len(factors) != ndim or any(np.shape(a) != d.shape for a in factors) or \
            not all(np.isclose(np.asarray(a)[r], 1.0) for a in factors):
        raise ValueError(f"correlation must give {ndim} factors shaped like the offsets, each 1 at d = 0")
    g = np.exp(-(d * d) / (2.0 * sigma * sigma))
    return _pair_sum(f, [np.asarray(a, float) * g for a in factors]) / float(total)


def lattice_overlap(counts: Any) -> float:
    r"""q of labels in classes of which exactly one per image is labelled, chosen uniformly: every k-th slice
    at a random offset (theory/README.md, step 15).

    ``counts`` (images, k) holds the foreground of each class: the planes z = r, r + k, r + 2k, ... of each
    image (``noise.Slices(k).class_counts(masks)``). Within an image two classes are never labelled together,
    so a label's indicator has covariance p(1-p) with labels of its own class, -p^2 with the other classes of
    its image and 0 across images (p = 1/k). The q that gives the variance of a decision's labelled fraction
    as :func:`clustered_n_eff` takes it is that covariance averaged over pairs of foreground labels, divided by
    p(1-p) (``derivations.annotation``, ``lattice_overlap``):

    .. math:: q = \frac{\sum_v \sum_r (s_{vr} - S_v / k)^2}{(1 - 1/k)\, T^2},

    :math:`S_v = \sum_r s_{vr}`, :math:`T = \sum_v S_v`. It is small wherever each image spreads its foreground
    evenly over the k classes (objects deeper than k planes); it is :func:`cluster_overlap` of the images when
    each image holds at most one non-empty class, and that of the planes only when each image holds at most one
    non-empty plane (larger when one class holds several). 0 for k = 1 (every plane labelled).

    Raises:
        ValueError: ``counts`` not 2-D, a negative count, or no foreground at all.
    """
    s = np.asarray(counts, float)
    if s.ndim != 2 or s.size == 0 or np.any(s < 0) or not s.sum() > 0:
        raise ValueError(f"counts must be (images, k) non-negative foreground counts, not all zero; got shape "
                         f"{s.shape}")
    k = s.shape[1]
    if k == 1:
        return 0.0
    dev = s - s.sum(axis=1, keepdims=True) / k
    return float(np.sum(dev * dev) / ((1 - 1 / k) * s.sum() ** 2))


def clustered_n_eff(n_eff: Any, overlap: Any, *, design: Any = 1.0) -> np.ndarray:
    r"""n_eff of labels that come in clusters, labelled or not together (theory/README.md, step 15).

    A decision pooling n labels drawn from the training set's foreground, each
    of whose clusters is labelled with probability p as a whole, sees a
    labelled fraction with variance :math:`p(1-p)\,[1/n + (1 - 1/n)\, q]`
    (``derivations.annotation``, ``cluster_variance``), q = :func:`cluster_overlap`: the
    variance of :math:`n / (1 + (n - 1) q)` independent labels. With one label
    per cluster (q = 1 / V) it is n for V much larger than n; with sheets of
    m labels each it tends to 1 / q, the effective number of sheets.

    ``design``: a decision that pools its labels in patches (:func:`local_design`) sees
    :math:`p(1-p)\,[\mathrm{deff}/n + (1 - 1/n)\, q]`, the variance of
    :math:`n / (\mathrm{deff} + (n - 1) q)` independent labels; with background semantics read at the
    network's own level (q = 0: the training set's share drops out) n / deff.

    Raises:
        ValueError: ``design`` not positive and finite.
    """
    n = np.asarray(n_eff, float)
    q = np.asarray(overlap, float)
    deff = np.asarray(design, float)
    if not np.all(np.isfinite(deff) & (deff > 0)):
        raise ValueError(f"design must be positive and finite, got {design!r}")
    return n / (deff + (n - 1) * q)


def stripe_fields(x: Any, width: float, bandwidth: float) -> tuple[np.ndarray, ...]:
    """Continuous D, S_fg, S_bg across a stripe :math:`|x| < w/2` (2-D gaussian kernel)."""
    x = np.asarray(x, float)
    w, h = float(width), float(bandwidth)
    D = _phi_cdf((w / 2 - x) / h) - _phi_cdf((-w / 2 - x) / h)
    total = 1.0 / (4 * np.pi * h * h)
    s_fg = total * (_phi_cdf(np.sqrt(2) * (w / 2 - x) / h) - _phi_cdf(np.sqrt(2) * (-w / 2 - x) / h))
    return D, s_fg, total - s_fg


def dice_stripe(width: float, bandwidth: float, fg_to_bg: Any, bg_to_fg: Any, *, step: float = 0.02):
    """Predicted Dice on an infinite stripe of width w (continuous, per unit length).

    Includes both effects: the clean field's bias (thin stripes vanish when
    w < 1.349 h) and the finite-sampling noise. Vectorised over the rates.

    >>> round(float(dice_stripe(20.0, 2.0, 0.0, 0.0)), 4)  # clean, wide: exact
    1.0
    """
    w, h = float(width), float(bandwidth)
    half = w / 2 + 8 * h
    x = np.arange(-half, half + step / 2, step)
    D, s_fg, s_bg = stripe_fields(x, w, h)
    f = np.asarray(fg_to_bg, float)
    b = np.asarray(bg_to_fg, float)
    shape = np.broadcast(f, b).shape
    ff = np.broadcast_to(f, shape).reshape(-1, 1)
    bb = np.broadcast_to(b, shape).reshape(-1, 1)
    prob = fg_probability(D[None], s_fg[None], s_bg[None], ff, bb)
    inside = np.abs(x) < w / 2
    return dice_from_probability(prob, inside[None], axes=(1,), weight=step).reshape(shape)


def bulk_error(c: Any) -> np.ndarray:
    r"""Misclassification probability deep inside an object: Phi(-sqrt(pi c)), c = p h^2/(1-p).

    Far inside, D = 1 and S = 1/(4 pi h^2), so the margin 1/2 is sqrt(pi c)
    standard deviations away; far outside there is no label and no error. With
    few labelled pixels per window (small c) errors are not confined to edges.
    """
    return _phi_cdf(-np.sqrt(np.pi * np.asarray(c, float)))


def boundary_error(c: Any, *, step: float = 0.005, extent: float = 8.0) -> np.ndarray:
    r"""Excess misclassified length per unit edge at a straight edge, in units of h.

    E(c) = \int (P_err(u) - bulk(c) 1{u > 0}) du with c = p h^2/(1-p)
    (derivation 6): a p-sampled label map costs h * E(c) pixels per unit edge
    length on top of the bulk rate :func:`bulk_error` inside objects.
    """
    c = np.asarray(c, float)
    u = np.arange(-extent, extent + step / 2, step)
    D = _phi_cdf(u)
    S = _phi_cdf(np.sqrt(2) * u)
    arg = np.abs(D - 0.5) * 2 * np.sqrt(np.pi) * np.sqrt(c[..., None] / S)
    excess = _phi_cdf(-arg) - bulk_error(c)[..., None] * (u > 0)
    return np.sum(excess, axis=-1) * step


# ------------------------------------------------------------------ 7: PCL
def overlap_pcl(shape: str, size: Any, radius: Any, *, op: str = "dilate",
                bandwidth: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(Dice, IoU) of a dilated or eroded stripe (size = width) or disk (size = R).

    The prediction of a network trained on the perturbed labels is the 1/2
    level set of their field (``derivations.pcl_overlap``), the perturbed shape
    itself as h -> 0. With ``bandwidth`` h, a perturbed stripe narrower than
    :func:`critical_width` never reaches 1/2 and the prediction is empty (Dice 0),
    as in the fields.

    >>> [round(float(v), 4) for v in overlap_pcl("stripe", 6, 1)]
    [0.8571, 0.75]
    >>> float(overlap_pcl("stripe", 6, 2, op="erode", bandwidth=2.0)[0])  # 2 px left, w_c = 2.7 px
    0.0
    """
    s = np.asarray(size, float)
    r = np.asarray(radius, float)
    if shape == "stripe":
        a, bsz = s, (s + 2 * r if op == "dilate" else np.maximum(s - 2 * r, 0.0))
        if bandwidth is not None:
            bsz = np.where(bsz > critical_width(bandwidth), bsz, 0.0)
    elif shape == "disk":
        a, bsz = s**2, ((s + r) ** 2 if op == "dilate" else np.maximum(s - r, 0.0) ** 2)
    else:
        raise ValueError(f"shape must be 'stripe' or 'disk', got {shape!r}")
    if op not in ("dilate", "erode"):
        raise ValueError(f"op must be 'dilate' or 'erode', got {op!r}")
    inter = np.minimum(a, bsz)
    return 2 * inter / (a + bsz), inter / np.maximum(a + bsz - inter, 1e-300)


def pcl_label_dice(learned: Any, masks: Any, *, threshold: float = 0.5) -> float:
    r"""Theorem 1 for structured label errors: the Dice against the truth of what a network trained on them learns.

    A network trained on structurally perturbed labels T(M) (dilated, eroded,
    skeletonized) learns *their* meta-structure (arXiv 2103.11594, Theorem 1;
    theory/README.md, step 10), so thresholded at their t* it calls the
    partition P = {learned > threshold} of that meta-structure, whose boundary
    no threshold moves back to the truth. Its Dice against the clean masks M,
    pooled over every pixel (of every array, when given sequences),

    .. math:: \frac{2\,|P \cap M|}{|P| + |M|} \quad \text{(1 when both are empty),}

    is the error the perturbation costs. For dilated or eroded labels
    ``learned`` is the perturbed masks themselves (0 / 1) at 1/2, so P = T(M);
    for skeletons it is the skeleton's fraction field at t* = s/2, s the kept
    fraction. A trained network adds its own boundary error: combine with its
    clean Dice by :func:`pcl_dice` (or the plain product, which counts both errors
    in full).

    Args:
        learned: the perturbed labels' meta-structure, an array the shape of
            its mask, or a sequence of such arrays (pooled). A floating field
            is compared with ``threshold`` in its own precision.
        masks: the clean binary masks (0 / 1 or bool), matching ``learned``.
        threshold: t*, the level the network is cut at.

    Returns:
        The pooled Dice, a float in [0, 1].

    Raises:
        ValueError: ``learned`` and ``masks`` differ in number or shapes, masks
            that are not binary, or NaN in ``learned``.

    >>> pcl_label_dice([[1, 1, 1, 0]], [[0, 1, 1, 0]])  # a mask dilated by one pixel: 2 * 2 / (3 + 2)
    0.8
    """
    pairs = _pairs("learned", learned, "masks", masks)
    inter = total = 0
    for field, mask in pairs:
        if field.dtype.kind == "f" and np.isnan(field).any():
            raise ValueError("learned holds NaN: the meta-structure is undefined there")
        t = np.asarray(threshold, field.dtype) if field.dtype.kind == "f" else float(threshold)
        part = field > t
        inter += int(np.count_nonzero(part & mask))
        total += int(np.count_nonzero(part)) + int(np.count_nonzero(mask))
    return 1.0 if total == 0 else 2 * inter / total


def _pairs(name_a: str, a: Any, name_b: str, b: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(a, b) as matched pairs of arrays, b binary (bool): one pair, or one per item of two sequences."""
    many = isinstance(a, (list, tuple)) and len(a) > 0 and np.ndim(a[0]) >= 2
    items_a = [np.asarray(x) for x in a] if many else [np.asarray(a)]
    items_b = [np.asarray(x) for x in b] if isinstance(b, (list, tuple)) and many else [np.asarray(b)]
    if len(items_a) != len(items_b):
        raise ValueError(f"{name_a} has {len(items_a)} arrays, {name_b} {len(items_b)}")
    out = []
    for x, y in zip(items_a, items_b, strict=True):
        if x.shape != y.shape:
            raise ValueError(f"{name_a} and {name_b} must have the same shapes, got {x.shape} and {y.shape}")
        if y.dtype != bool:
            if y.dtype.kind not in "biuf" or not np.all((y == 0) | (y == 1)):
                raise ValueError(f"{name_b} must be binary (0 / 1), got values {np.unique(y)[:6].tolist()}")
            y = y.astype(bool)
        out.append((x, y))
    return out


def pcl_dice(label_dice: Any, clean_dice: Any) -> np.ndarray:
    r"""Predicted Dice of a trained network on structurally perturbed labels (dilated, eroded, skeletons).

    ``label_dice`` is the Dice against the truth of what Theorem 1 says the
    network learns (the perturbed masks, :func:`overlap_pcl` for stripes and
    disks), ``clean_dice`` the same network's Dice on clean labels. Both are
    read as boundary errors in overlap units: the perturbation a shift
    mu = 1 - label_dice, the clean network a zero-mean normal jitter of its
    boundary, E|e| = 1 - clean_dice = s sqrt(2/pi). The perturbed network has
    the shift *and* the jitter, error E|mu + e| (``derivations.pcl_overlap``,
    claim ``jittered_shift``):

        1 - [s sqrt(2/pi) exp(-mu^2 / (2 s^2)) + mu (1 - 2 Phi(-mu/s))].

    The errors overlap rather than add: clean_dice = 1 gives label_dice
    (Theorem 1 alone), label_dice = 1 gives clean_dice, and a shift much larger
    than the jitter costs only itself. (The product clean_dice * label_dice
    counts both errors in full.) Where the two errors together exceed the
    whole overlap (a clean Dice near 0 with any shift) the Dice is 0: the
    result is clipped to [0, 1].

    >>> float(pcl_dice(0.8, 1.0)), float(pcl_dice(1.0, 0.9))
    (0.8, 0.9)
    """
    mu = 1.0 - np.asarray(label_dice, float)
    err = 1.0 - np.asarray(clean_dice, float)
    s = err * np.sqrt(np.pi / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s > 0, mu / np.where(s > 0, s, 1.0), np.inf)
        jit = np.where(s > 0, err * np.exp(-0.5 * np.minimum(ratio, 1e150) ** 2), 0.0)
    return np.clip(1.0 - (jit + mu * (1 - 2 * _phi_cdf(-ratio))), 0.0, 1.0)


def skeleton_half_width(width: Any, bandwidth: Any) -> np.ndarray:
    """Half-width of the t* = 1/(2w) level set of a skeleton's field: h sqrt(2 log(2w/(sqrt(2 pi) h)))."""
    w = np.asarray(width, float)
    h = np.asarray(bandwidth, float)
    arg = 2 * w / (np.sqrt(2 * np.pi) * h)
    return np.where(arg > 1, h * np.sqrt(2 * np.log(np.maximum(arg, 1.0))), 0.0)


def dice_skeleton_stripe(width: Any, bandwidth: Any) -> np.ndarray:
    """Dice of the skeleton-trained network's t* band against the stripe."""
    w = np.asarray(width, float)
    band = 2 * skeleton_half_width(w, bandwidth)
    return 2 * np.minimum(w, band) / (w + band)


# ------------------------------------------------------------------ multi-class
def miou_symmetric_flip(rate: Any, num_classes: int, *, n_eff: float, nodes: int = 64) -> np.ndarray:
    r"""Predicted mIoU under symmetric flipping (interior pixels, balanced classes).

    Inside class j the noisy fractions have means T_jj = 1-e and tau = e/(M-1);
    the margins Delta_m = D*_j - D*_m (m != j) have mean lambda = 1 - eM/(M-1)
    (the eigenvalue of derivation 3). With multinomial counts over a window of
    n_eff = 1/sum w^2 pixels (4 pi h^2 for a gaussian) they are equicorrelated:
    Var = (T_jj + tau - lambda^2)/n_eff and Cov = (T_jj - lambda^2)/n_eff. In the
    normal approximation the argmax is right with probability

        a = E_Z[ Phi((lambda + sqrt(rho) s Z) / (s sqrt(1 - rho)))^(M-1) ],

    s^2 = Var, rho = Cov/Var (a one-dimensional Gauss-Hermite integral). With
    errors spread evenly over the other classes, IoU = a / (2 - a). It collapses
    to chance at e = (M-1)/M; beyond it the argmax picks a wrong class.
    Negative variances and covariances (T_jj - lambda^2 < 0, which happens only
    past the collapse) are clipped to zero, so the curve there is a limit, not
    the normal approximation.
    """
    e = np.asarray(rate, float)
    m = int(num_classes)
    lam = 1 - e * m / (m - 1)
    tjj, tau = 1 - e, e / (m - 1)
    var = np.maximum(tjj + tau - lam**2, 0.0) / float(n_eff)
    cov = np.maximum(tjj - lam**2, 0.0) / float(n_eff)
    z, wts = np.polynomial.hermite_e.hermegauss(nodes)
    wts = wts / wts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
        sd = np.sqrt(var)[..., None]
        num = lam[..., None] + np.sqrt(rho)[..., None] * sd * z
        den = sd * np.sqrt(np.maximum(1 - rho, 0.0))[..., None]
        arg = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.sign(num) * np.inf)
    a = np.sum(_phi_cdf(arg) ** (m - 1) * wts, axis=-1)
    a = np.where(np.abs(lam) < 1e-12, 1.0 / m, a)
    return a / (2 - a)


# ------------------------------------------------------------------ 9: memorisation
def memorised_fraction(n_fg: Any, capacity: Any) -> np.ndarray:
    r"""Memorisation index of one fixed sampled draw under the k-group model: min(1, k / n_fg).

    ``derivations.linearity_and_memorisation`` (``memorisation_index``): k
    groups of the n_fg foreground pixels, each fitted to its drawn fraction,
    output on the drawn pixels minus output on the left-out foreground pixels
    = k / n_fg as a ratio of expectations, **independent of the sampling ratio
    p**; at k = n_fg each pixel is its own group and the index is exactly 1.
    For a network ``capacity`` k is an effective number of parameters, fitted
    to measurements (``simulations.memorisation``).

    >>> float(memorised_fraction(1000, 20.0)), float(memorised_fraction(10, 1e9))
    (0.02, 1.0)
    """
    n = np.asarray(n_fg, float)
    return np.minimum(1.0, np.asarray(capacity, float) / n)


# ------------------------------------------------------------------ 14: data, passes and memorisation
def scale_n_eff(n_images: Any, passes: Any, memorisation: Any, *, rate: float, ratio: float) -> np.ndarray:
    r"""The law of n_eff over training-set size and training length (theory/README.md, step 14).

    Two independent errors of a decision add (``derivations.pooling_and_scale``,
    ``variances_add``): an estimate that has averaged the labels seen so far,
    n_a = ``rate`` * N * P labels for N images seen P times each, and the
    memorised draw, n_m = ``ratio`` / m, m the memorisation index of the
    training labels (the k-group model gives n_m = 1/m exactly,
    ``n_eff_is_inverse_index``; ``ratio`` absorbs what a network does
    differently). So

        1 / n_eff = 1 / (rate N P) + m / ratio,

    with ``rate`` and ``ratio`` the two numbers fitted per dataset
    (``simulations.scale``); m is measured on the training images (or, to
    forecast, read off at the same number of passes on another training-set
    size, which the experiment finds it does not depend on). Fresh draws have
    nothing to memorise: m = 0 and n_eff = rate N P. At fixed passes, more
    images raise n_eff only up to the ceiling ratio / m(P).

    Args:
        n_images, passes: N and P, > 0, broadcastable.
        memorisation: m >= 0 (negative values, noise around 0, count as 0).
        rate, ratio: > 0.

    Returns:
        n_eff, the broadcast shape.

    Raises:
        ValueError: a non-positive N, P, ``rate`` or ``ratio``.

    >>> float(scale_n_eff(100, 5, 0.0, rate=2.0, ratio=2.0))
    1000.0
    >>> round(float(scale_n_eff(1e12, 5, 0.01, rate=2.0, ratio=2.0)))  # the ceiling ratio / m
    200
    """
    n, p = np.asarray(n_images, float), np.asarray(passes, float)
    m = np.maximum(np.asarray(memorisation, float), 0.0)
    if not (np.all(n > 0) and np.all(p > 0) and rate > 0 and ratio > 0):
        raise ValueError(f"n_images, passes, rate and ratio must be positive, got {n_images}, {passes}, {rate}, "
                         f"{ratio}")
    return 1.0 / (1.0 / (rate * n * p) + m / ratio)


def critical_flip_rate(n_eff: Any, lambda_c: float) -> np.ndarray:
    r"""The largest symmetric flip rate f = b whose loss stays within the gap that defines ``lambda_c``.

    The decision depends on f and n_eff only through lambda = (1-2f)^2 n_eff / (f(1-f))
    (``derivations.pooling_and_scale``, ``flip_through_lambda``), so the rate at
    which lambda falls to ``lambda_c`` (the value at which the masks' pooled
    Dice loses the gap, computed once on them) is
    f_c = (1 - sqrt(lambda_c / (lambda_c + 4 n_eff))) / 2 (``critical_flip_rate``).

    Raises:
        ValueError: ``n_eff`` or ``lambda_c`` not positive.

    >>> round(float(critical_flip_rate(1e4, 100.0)), 3)
    0.475
    """
    n = np.asarray(n_eff, float)
    if not (np.all(n > 0) and float(lambda_c) > 0):
        raise ValueError(f"n_eff and lambda_c must be positive, got {n_eff} and {lambda_c}")
    return (1.0 - np.sqrt(lambda_c / (lambda_c + 4.0 * n))) / 2.0
