r"""Classical thresholds of intensity images, and a ground-truth-free score of how well a mask splits them.

Each threshold takes images (N, H, W, C), (N, H, W) or (H, W) (read by
:func:`metastructure.data.as_images`, not strict, in float64; channels are
averaged: :func:`grayscale`) and returns bool masks (N, H, W), bright objects
as foreground:

* :func:`otsu`: per image, intensity > Otsu's threshold
  (:func:`metastructure.metrics.otsu_threshold`, the 256-bin histogram
  definition of ``skimage.filters.threshold_otsu``);
* :func:`adaptive`: intensity > the local mean over a window
  (``skimage.filters.threshold_local``, method "mean");
* :func:`kmeans`: two-cluster k-means on intensity, solved exactly (the
  optimal cut of the sorted values).

:func:`local_separation` scores masks against the images without truth: the
mean over pixels of Otsu's between-class share of the intensity's variance
within a window. :func:`metastructure.unsupervised.igtt` starts from these
thresholds (``start="auto"`` picks the one with the larger score) and keeps its
best round by the score; the ``igtt`` experiment of the simulations uses them
as baselines.

Every function reads huge values as well as ordinary ones: an image beyond 2^32 in magnitude is first scaled
down by a power of two (exact, and the thresholds and the score are scale-free; :func:`adaptive`'s ``offset``
with it), so that its squares stay finite. A constant image (no contrast) is all background for every
threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from . import _checks, data, metrics

__all__ = ["adaptive", "grayscale", "kmeans", "local_separation", "otsu"]


def grayscale(images: Any) -> np.ndarray:
    """Images (N, H, W, C), (N, H, W) or (H, W) as float64 (N, H, W): the mean over channels.

    Raises:
        ValueError: another number of axes, no element, NaN or infinite values.
        TypeError: a non-real dtype.

    >>> grayscale(np.array([[[[0.0, 2.0], [4.0, 4.0]]]])).tolist()
    [[[1.0, 4.0]]]
    """
    return data.as_images(images, strict=False, dtype=np.float64).mean(-1)


_HUGE = 2.0**32  # beyond this magnitude an image is scaled down by a power of two (see the module's docstring)


def _gray(images: Any, *, shifts: bool = False) -> Any:
    """:func:`grayscale`, each image beyond ``_HUGE`` in magnitude scaled down to it by a power of two (with
    ``shifts``: and the exponents, (N,) ints, that it was scaled by: ``x / 2**shift``)."""
    x = grayscale(images)
    top = np.max(np.abs(x), axis=(1, 2))
    shift = np.where(top > _HUGE, np.frexp(top)[1] - 33, 0)
    x = np.ldexp(x, -shift[:, None, None])
    return (x, shift) if shifts else x


def _flat(im: np.ndarray) -> bool:
    return bool(im.max() == im.min())


def otsu(images: Any) -> np.ndarray:
    """Per image, intensity > Otsu's threshold (:func:`metastructure.metrics.otsu_threshold`: a 256-bin
    histogram on [min, max], the threshold a bin centre); a constant image is all background.

    Raises:
        ValueError, TypeError: images as for :func:`grayscale`.

    >>> otsu(np.array([[0.1, 0.2, 0.9, 1.0]])).astype(int).tolist()
    [[[0, 0, 1, 1]]]
    """
    x = _gray(images)
    return np.stack([np.zeros(im.shape, bool) if _flat(im) else im > float(metrics.otsu_threshold(im)) for im in x])


def adaptive(images: Any, *, block_size: int = 35, offset: float = 0.0) -> np.ndarray:
    """Per image, intensity > the local mean over a ``block_size`` window minus ``offset``
    (equal to ``skimage.filters.threshold_local(image, block_size, method="mean", offset=offset)``);
    a constant image is all background (where the local mean's rounding would otherwise cut it).

    Raises:
        ValueError: ``block_size`` not an odd integer >= 3; images as for :func:`grayscale`.
        TypeError: ``block_size`` not an int; images as for :func:`grayscale`.
    """
    from skimage.filters import threshold_local  # scikit-image loads slowly: only when a caller needs it

    _checks.check_int("block_size", block_size)
    if block_size % 2 == 0 or block_size < 3:
        raise ValueError(f"block_size must be an odd integer >= 3, got {block_size}")
    offset = _checks.check_real_number("offset", offset)
    x, shift = _gray(images, shifts=True)
    return np.stack([np.zeros(im.shape, bool) if _flat(im) else  # the offset in the scaled image's units
                     im > threshold_local(im, block_size, method="mean", offset=float(np.ldexp(offset, -sh)))
                     for im, sh in zip(x, shift, strict=True)])


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

    Raises:
        ValueError, TypeError: images as for :func:`grayscale`.

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


def local_separation(images: Any, masks: Any, *, window: int = 35) -> np.ndarray:
    r"""Per image, how well ``masks`` split the intensity locally: the mean over pixels of the
    between-class share of the intensity's variance within a ``window`` x ``window`` box around each pixel.

    In each window, with pi the mask's share and m1, m0 the mean intensity on
    and off the mask, the share is pi (1 - pi) (m1 - m0)^2 / var (Otsu's
    criterion, 0 where the window holds one class; windows past the border
    mirror the image, ``scipy.ndimage.uniform_filter``'s "reflect"). A global
    threshold maximises the global share by construction; under uneven
    illumination a local threshold splits each neighbourhood better, and this
    score says so without ground truth.

    Args:
        images: as for :func:`otsu`.
        masks: 0/1 (bool, or integers or floats equal to 0 or 1) of the images' (N, H, W) (or (H, W) for
            one (H, W) image).

    Returns:
        (N,) float64 in [0, 1].

    Raises:
        ValueError: ``window`` < 3; masks of another shape than the images' (N, H, W), or not 0/1 (soft,
            NaN); images as for :func:`grayscale`.
        TypeError: ``window`` not an int; masks of a non-real dtype; images as for :func:`grayscale`.
    """
    x = _gray(images)
    w = _checks.check_int("window", window)
    if w < 3:
        raise ValueError(f"window must be >= 3, got {window}")
    m = np.asarray(masks)
    if m.shape != x.shape and not (x.shape[0] == 1 and m.shape == x.shape[1:]):
        raise ValueError(f"masks must have the images' shape (N, H, W) = {x.shape}, got shape {m.shape}")
    _checks.check_binary("masks", m)
    m = m.reshape(x.shape).astype(np.float64)
    out = []
    for xi, mi in zip(x, m, strict=True):
        f = lambda a: ndimage.uniform_filter(a, w, mode="reflect")  # noqa: E731
        mu, pm, mx = f(xi), f(mi), f(mi * xi)
        var = f(xi * xi) - mu * mu
        m1 = mx / np.maximum(pm, 1e-9)
        m0 = (mu - mx) / np.maximum(1 - pm, 1e-9)
        share = pm * (1 - pm) * (m1 - m0) ** 2 / np.maximum(var, 1e-12)
        out.append(float(np.mean(np.clip(share, 0.0, 1.0))))
    return np.asarray(out)
