"""Data: synthetic microscopy-like images, the packaged real nuclei, a user's folder.

Every generator is deterministic by ``key`` and returns a :class:`Dataset`:
float32 images (N, H, W, C), z-scored per image, and integer masks (N, H, W).
Shapes are drawn on the host (numpy, seeded from the key), then imaged by
:func:`microscope`: the structure blurred by a gaussian PSF, Poisson shot noise
on ``photons`` expected counts at full signal, and gaussian read noise. Fewer
photons means a lower signal-to-noise ratio.

Volumes: :func:`nuclei` and :func:`er` take ``ndim=3`` and return (N, D, H, W, 1)
images and (N, D, H, W) masks (ellipsoids; a 3-D tubular network), imaged with
an anisotropic PSF that blurs ``z_blur`` (default 3) times more along z.

* :func:`nuclei` (NUC): blobs (random ellipses).
* :func:`mito` (MITO): rods and fragments 3-8 px wide.
* :func:`er` (ER): a connected network of thin tubules 1-3 px wide (a
  minimum spanning tree of random points plus a few extra Delaunay edges).
* :func:`er_uneven`: a dense ER-like mesh (the edges of a Voronoi
  tessellation) under uneven illumination and out-of-focus haze, where a
  global threshold misses the dim tubules and a local one does better (as on
  the paper's ER: Otsu's Dice 0.60-0.72, a 35-px adaptive threshold at least
  0.05 above it; ``tests/test_unsupervised.py`` checks the calibration).
* :func:`scenes`: "natural-like" multi-class RGB scenes (irregular regions,
  each class with its own colour and texture scale).
* :func:`real_nuclei`: the hand-annotated 512 x 512 fluorescence nuclei image
  that the ``stardist`` wheel ships (2018 Data Science Bowl, CC0), read from the
  installed package's files (``pip install --no-deps stardist==0.9.2``; stardist
  itself is never imported), cut into tiles for train / validation / test; with ``ndim=3`` the wheel's
  real nuclei volume (31 x 61 x 57 voxels), cut into full-depth columns.
* :func:`load_folder` / :func:`load_pairs`: image/mask pairs (PNG or TIFF) matched
  by file name; :func:`load_masks`: a folder of masks alone.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .density import smooth

__all__ = [
    "Dataset",
    "NotBinaryMaskError",
    "as_images",
    "er",
    "er_uneven",
    "load_folder",
    "load_masks",
    "load_pairs",
    "microscope",
    "mito",
    "nuclei",
    "real_nuclei",
    "scenes",
]


class Dataset(NamedTuple):
    """Images (N, H, W, C) float32 and masks (N, H, W) int32 (binary 0/1 or classes)."""

    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, idx: Any) -> Dataset:
        """The images and masks at ``idx`` (an index, slice or index array along N)."""
        return Dataset(self.images[idx], self.masks[idx])


def _rng(key: jax.Array) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def as_images(images: Any, *, name: str = "images", strict: bool = True, zscore: bool = False,
              dtype: Any = np.float32, ndim: int = 2) -> np.ndarray:
    r"""The package's one image normaliser: ``images`` checked and returned as a float array (N, H, W, C).

    Layouts: (N, H, W, C); with ``strict=False`` also (N, H, W) (single-channel
    images: a channel axis is added) and (H, W) (one single-channel image).
    With ``ndim=3`` the images are volumes, each layout with a depth axis D
    before H: (N, D, H, W, C), and, not strict, (N, D, H, W) or (D, H, W).
    With ``zscore`` each image becomes (x - mean) / (sd + 1e-6), mean and
    standard deviation over its (H, W, C) (a volume's: its (D, H, W, C)), computed in the input's precision
    (float64 for bool or integer input) before the cast to ``dtype`` (what
    every generator of this module and :func:`load_pairs` return). Values too
    large for that precision's squares (beyond about 1e13 in float32, any
    float16) are computed in float64, and images beyond about 1e148 scaled
    by a power of two first (the 1e-6 with them), so that huge finite values
    keep their contrast: the result is the z-score of the exact values.
    :func:`metastructure.train.fit`, :func:`metastructure.unsupervised.igtt`
    (strict) and the thresholds of :mod:`metastructure.thresholds` (not strict,
    float64) read their images through it.

    Raises:
        ValueError: another number of axes, no element, NaN or infinite values (messages name ``name``);
            ``ndim`` not 2 or 3.
        TypeError: a non-real dtype.

    >>> x = as_images(np.arange(6).reshape(2, 3), strict=False, zscore=True)  # (H, W): one image
    >>> x.shape, x.dtype.name, x[0, :, :, 0].astype(np.float64).round(2).tolist()
    ((1, 2, 3, 1), 'float32', [[-1.46, -0.88, -0.29], [0.29, 0.88, 1.46]])
    """
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 (images) or 3 (volumes), got {ndim!r}")
    x = np.asarray(images)
    sp = "H, W" if ndim == 2 else "D, H, W"
    layouts = f"(N, {sp}, C)" if strict else f"(N, {sp}, C), (N, {sp}) or ({sp})"
    if x.ndim not in ((ndim + 2,) if strict else (ndim, ndim + 1, ndim + 2)):
        raise ValueError(f"{name} must be {layouts}, got shape {x.shape}")
    _checks.check_nonempty(name, x)
    _checks.check_finite(name, x)
    if x.ndim == ndim:
        x = x[None]
    if zscore:
        axes = tuple(range(1, x.ndim))
        if x.dtype.kind == "f" and np.max(np.abs(x)) > _safe_peak(x.dtype):
            x = _zscore_wide(x, axes)
        else:  # the arithmetic of every generator, unchanged
            x = (x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True) + 1e-6)
    x = x.astype(dtype, copy=False)
    return x if x.ndim == ndim + 2 else x[..., None]


def _safe_peak(dtype: Any) -> float:
    """The largest |value| whose squares, summed over 2^40 pixels, stay finite in ``dtype``."""
    return float(np.sqrt(np.finfo(dtype).max)) / 2.0**20


def _zscore_wide(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The z-score of each image of ``x`` in float64, images beyond float64's safe peak first scaled by an exact
    power of two (so is the 1e-6): the value (x - mean) / (sd + 1e-6) of the exact numbers, without overflow."""
    x = x.astype(np.float64)
    peak = np.max(np.abs(x), axis=axes, keepdims=True)
    exponent = np.where(peak > _safe_peak(np.float64), np.frexp(peak)[1], 0)
    x = np.ldexp(x, -exponent)
    return (x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True) + np.ldexp(1e-6, -exponent))


def microscope(
    key: jax.Array,
    structure: Any,
    *,
    psf_sigma: float = 1.5,
    photons: float = 30.0,
    background: float = 0.2,
    read_noise: float = 0.05,
    ndim: int = 2,
    z_blur: float = 3.0,
) -> np.ndarray:
    """Image a structure (N, H, W) of intensities in [0, 1] through a noisy microscope.

    counts ~ Poisson(photons * (background + PSF * structure)); image =
    counts / photons + read_noise * N(0, 1); then z-scored per image.
    Returns float32 (N, H, W, 1).

    With ``ndim=3`` the structure is volumes (N, D, H, W) and the PSF is an
    anisotropic gaussian, ``psf_sigma`` across (H, W) and ``z_blur * psf_sigma``
    along z (a widefield or confocal stack blurs 2-4x more along the optical
    axis), zero outside the volume (``scipy.ndimage.gaussian_filter``, mode
    "constant", truncated at 4 sigma); the result is (N, D, H, W, 1), z-scored
    per volume.
    """
    _checks.check_positive("psf_sigma", psf_sigma)
    _checks.check_positive("photons", photons)
    ndim = _checks.check_ndim(ndim)
    s = np.asarray(structure, np.float32)
    if ndim == 2:
        blurred = np.asarray(smooth(s, psf_sigma))
    else:
        from scipy import ndimage

        _checks.check_positive("z_blur", z_blur)
        _checks.check_spatial("structure", s, 3)
        sigma = (0.0,) * (s.ndim - 3) + (z_blur * psf_sigma, psf_sigma, psf_sigma)
        blurred = ndimage.gaussian_filter(s, sigma, mode="constant")
    k1, k2 = jax.random.split(key)
    lam = photons * (background + blurred)
    counts = np.asarray(jax.random.poisson(k1, jnp.asarray(lam)), np.float32)
    img = counts / photons + read_noise * np.asarray(jax.random.normal(k2, s.shape))
    return as_images(img, strict=False, zscore=True, ndim=ndim)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[:size, :size].astype(np.float32)


def _segments(size: int | tuple[int, ...], p0: np.ndarray, p1: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Union of capsules: points within ``radius`` of segment p0-p1 (a square of side ``size``, or a shape:
    (D, H, W) for tubes in a volume, with points (z, y, x))."""
    shape = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    grid = np.indices(shape, dtype=np.float32)
    pts = np.moveaxis(grid, 0, -1)[None]  # (1, *shape, ndim)
    extra = (None,) * len(shape)
    a = p0[(slice(None),) + extra]
    d = (p1 - p0)[(slice(None),) + extra]
    out = np.zeros(shape, bool)
    for i in range(0, len(p0), 8):  # a few capsules at a time: (8, *shape, ndim) floats at most
        ai, di = a[i:i + 8], d[i:i + 8]
        t = np.clip(((pts - ai) * di).sum(-1) / np.maximum((di * di).sum(-1), 1e-9), 0.0, 1.0)
        dist2 = ((pts - ai - t[..., None] * di) ** 2).sum(-1)
        out |= (dist2 <= (radius[i:i + 8][(slice(None),) + extra] ** 2)).any(0)
    return out


def _volume_shape(size: int, depth: int | None) -> tuple[int, int, int]:
    _checks.check_int("size", size, minimum=1)
    d = max(size // 2, 1) if depth is None else _checks.check_int("depth", depth, minimum=1)
    return (d, size, size)


def nuclei(key: jax.Array, n: int, *, size: int = 64, count: tuple[int, int] = (3, 7),
           radius: tuple[float, float] = (4.0, 9.0), photons: float = 30.0, ndim: int = 2,
           depth: int | None = None, z_blur: float = 3.0) -> Dataset:
    """NUC-like: ``count`` blobs (ellipses with radii in ``radius``) per image.

    With ``ndim=3``, volumes (N, D, H, W) of ``count`` ellipsoids: three
    semi-axes drawn in ``radius`` (z, and two across, turned by a random angle
    about z), imaged by :func:`microscope` with its anisotropic PSF (``z_blur``
    times the lateral blur along z); D is ``depth`` (default ``size // 2``).

    >>> import jax
    >>> d = nuclei(jax.random.key(0), 2, size=32)
    >>> d.images.shape, d.masks.shape, int(d.masks.max())
    ((2, 32, 32, 1), (2, 32, 32), 1)
    >>> nuclei(jax.random.key(0), 2, size=16, radius=(2.0, 4.0), ndim=3).images.shape
    (2, 8, 16, 16, 1)
    """
    ndim = _checks.check_ndim(ndim)
    rng = _rng(key)
    if ndim == 3:
        shape = _volume_shape(size, depth)
        zz, yy, xx = np.indices(shape, dtype=np.float32)
        masks = np.zeros((n,) + shape, bool)
        for i in range(n):
            for _ in range(rng.integers(count[0], count[1] + 1)):
                cz, cy, cx = rng.uniform(0, 1, 3) * np.array(shape)
                c, a, b = rng.uniform(*radius, 3)
                th = rng.uniform(0, np.pi)
                u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
                v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
                masks[i] |= ((zz - cz) / c) ** 2 + (u / a) ** 2 + (v / b) ** 2 <= 1.0
        texture = 0.7 + 0.3 * rng.random((n, 1, 1, 1))
        img = microscope(jax.random.fold_in(key, 1), masks * texture, psf_sigma=1.5, photons=photons, ndim=3,
                         z_blur=z_blur)
        return Dataset(img, masks.astype(np.int32))
    yy, xx = _grid(size)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        for _ in range(rng.integers(count[0], count[1] + 1)):
            cy, cx = rng.uniform(0, size, 2)
            a, b = rng.uniform(*radius, 2)
            th = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
            v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
            masks[i] |= (u / a) ** 2 + (v / b) ** 2 <= 1.0
    texture = 0.7 + 0.3 * rng.random((n, 1, 1))
    img = microscope(jax.random.fold_in(key, 1), masks * texture, psf_sigma=1.5, photons=photons)
    return Dataset(img, masks.astype(np.int32))


def mito(key: jax.Array, n: int, *, size: int = 64, count: tuple[int, int] = (4, 9),
         width: tuple[float, float] = (3.0, 8.0), length: tuple[float, float] = (6.0, 24.0),
         photons: float = 30.0) -> Dataset:
    """MITO-like: rods and fragments ``width`` px wide, ``length`` px long."""
    rng = _rng(key)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        k = rng.integers(count[0], count[1] + 1)
        c = rng.uniform(0, size, (k, 2))
        th = rng.uniform(0, np.pi, k)
        half = rng.uniform(*length, k)[:, None] / 2
        d = np.stack([np.sin(th), np.cos(th)], -1) * half
        masks[i] = _segments(size, c - d, c + d, rng.uniform(*width, k) / 2)
    img = microscope(jax.random.fold_in(key, 1), masks, psf_sigma=1.2, photons=photons)
    return Dataset(img, masks.astype(np.int32))


def er(key: jax.Array, n: int, *, size: int = 64, nodes: int = 14, width: tuple[float, float] = (1.0, 3.0),
       extra_edges: float = 0.3, photons: float = 40.0, ndim: int = 2, depth: int | None = None,
       z_blur: float = 3.0) -> Dataset:
    """ER-like: a connected network of thin tubules ``width`` px wide.

    Nodes are random points; edges are a minimum spanning tree of their
    Delaunay triangulation (so the network is connected) plus a random
    ``extra_edges`` fraction of the remaining Delaunay edges (loops).

    With ``ndim=3``, volumes (N, D, H, W): the nodes are points in the volume
    (a little beyond it, as in 2-D), the Delaunay triangulation is 3-D and the
    tubules are 3-D capsules, imaged by :func:`microscope` with its anisotropic
    PSF; D is ``depth`` (default ``size // 2``).

    >>> import jax
    >>> er(jax.random.key(0), 1, size=16, nodes=8, ndim=3).masks.shape
    (1, 8, 16, 16)
    """
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial import Delaunay

    ndim = _checks.check_ndim(ndim)
    rng = _rng(key)
    shape = (size, size) if ndim == 2 else _volume_shape(size, depth)
    masks = np.zeros((n,) + shape, bool)
    for i in range(n):
        pts = rng.uniform(-0.05, 1.05, (nodes, ndim)) * np.array(shape) if ndim == 3 else \
            rng.uniform(-0.05 * size, 1.05 * size, (nodes, 2))
        tri = Delaunay(pts)
        edges = set()
        for s in tri.simplices:
            for j, a in enumerate(s):
                for b in s[j + 1:]:
                    edges.add((min(a, b), max(a, b)))
        edges = sorted(edges)
        w = np.zeros((nodes, nodes))
        for a, b in edges:
            w[a, b] = np.linalg.norm(pts[a] - pts[b])
        tree = minimum_spanning_tree(w).toarray() > 0
        keep = [(a, b) for a, b in edges if tree[a, b] or tree[b, a] or rng.random() < extra_edges]
        p0 = np.array([pts[a] for a, _ in keep])
        p1 = np.array([pts[b] for _, b in keep])
        # width in [1, 3] px: capsule radius (w - 1)/2 + 0.5 keeps 1-px tubes one pixel wide
        r = (rng.uniform(*width, len(keep)) - 1) / 2 + 0.5
        masks[i] = _segments(shape, p0, p1, r)
    img = microscope(jax.random.fold_in(key, 1), masks, psf_sigma=1.0, photons=photons, ndim=ndim, z_blur=z_blur)
    return Dataset(img, masks.astype(np.int32))


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """A periodic gaussian random field (size, size), zero mean and unit sd."""
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _spread_points(rng: np.random.Generator, n: int, lo: float, hi: float, min_dist: float) -> np.ndarray:
    """Up to ``n`` uniform points in [lo, hi)^2, none closer than ``min_dist`` (dart throwing, 4n darts)."""
    pts: list[np.ndarray] = []
    for c in rng.uniform(lo, hi, (4 * n, 2)):
        if len(pts) == n:
            break
        if not pts or np.min(((np.asarray(pts) - c) ** 2).sum(-1)) >= min_dist ** 2:
            pts.append(c)
    return np.asarray(pts)


def er_uneven(key: jax.Array, n: int, *, size: int = 128, spacing: float = 11.0,
              width: tuple[float, float] = (1.5, 3.0), drop: float = 0.25, gain: tuple[float, float] = (0.1, 1.0),
              haze: float = 0.7, photons: float = 250.0) -> Dataset:
    r"""ER-like dense mesh under uneven illumination: where global thresholds fail.

    Per image, on the host (numpy, seeded from ``key``):

    * a cell region: a disc-like blob (radius about the image's half width,
      its edge warped by a smooth random field);
    * a mesh inside it: the edges of the Voronoi tessellation of seeds about
      ``spacing`` px apart (no two closer than 0.6 ``spacing``), a pixel being
      on an edge where the distances to its two nearest seeds differ by less
      than the local width (a smooth field in ``width``, so tubules are
      ``width`` px wide); a random ``drop`` share of the edges is removed;
      20-30% of the pixels are foreground;
    * brightness varying along the tubules (a smooth field, 0.3-1.4);
    * a smooth illumination gain over the image, from ``gain[0]`` to
      ``gain[1]`` (length scale a quarter of the image), and haze: out-of-focus
      light, the structure blurred by a 6-px gaussian times ``haze``, added
      before the gain.

    The image is Poisson(photons x gain x (0.15 + PSF * structure + haze term))
    / photons with a 1-px gaussian PSF, plus read noise 0.03, z-scored per
    image. With the defaults a global threshold (Otsu) scores a pooled Dice
    of 0.60-0.72 and a 35-px adaptive threshold at least 0.05 more (the
    calibration test draws 3 sets of 16 images), as on the paper's ER (Otsu
    69.5, adaptive 76.2).

    >>> import jax
    >>> d = er_uneven(jax.random.key(0), 1, size=64)
    >>> d.images.shape, d.masks.shape
    ((1, 64, 64, 1), (1, 64, 64))
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    _checks.check_positive("spacing", spacing)
    _checks.check_positive("photons", photons)
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    if not 0.0 < gain[0] <= gain[1]:
        raise ValueError(f"gain must be (low, high) with 0 < low <= high, got {gain}")
    if not 0.0 < width[0] <= width[1]:
        raise ValueError(f"width must be (low, high) with 0 < low <= high, got {width}")
    rng = _rng(key)
    yy, xx = _grid(size)
    pix = np.stack([yy.ravel(), xx.ravel()], -1)
    masks = np.zeros((n, size, size), bool)
    structure = np.zeros((n, size, size), np.float32)
    gains = np.zeros((n, size, size), np.float32)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-size / 12, size / 12, 2)
        r = np.hypot(yy - cy, xx - cx) / (size / 2)
        cell = 1.25 - r + 0.35 * _smooth_noise(rng, size, size / 6) > 0
        seeds = _spread_points(rng, max(int(size * size / spacing ** 2), 3), -spacing, size + spacing,
                               0.6 * spacing)
        dist, near = cKDTree(seeds).query(pix, k=2)
        gap = (dist[:, 1] - dist[:, 0]).reshape(size, size)
        edge = (np.minimum(near[:, 0], near[:, 1]) * len(seeds) + np.maximum(near[:, 0], near[:, 1]))
        edges = np.unique(edge)
        kept = ~np.isin(edge, edges[rng.random(edges.size) < drop]).reshape(size, size)
        local_width = width[0] + (width[1] - width[0]) * np.clip(0.5 + 0.25 * _smooth_noise(rng, size, 4), 0, 1)
        masks[i] = (gap < local_width) & kept & cell
        bright = np.clip(0.8 + 0.35 * _smooth_noise(rng, size, 3), 0.3, 1.4)
        g = _smooth_noise(rng, size, size / 4)
        g = (g - g.min()) / (g.max() - g.min() + 1e-12)
        structure[i] = masks[i] * bright
        gains[i] = gain[0] + (gain[1] - gain[0]) * g
    blurred = np.stack([ndimage.gaussian_filter(s, 1.0) for s in structure])
    hazy = np.stack([ndimage.gaussian_filter(s, 6.0) for s in structure])
    k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
    lam = photons * gains * (0.15 + blurred + haze * hazy)
    counts = np.asarray(jax.random.poisson(k1, jnp.asarray(lam)), np.float32)
    img = counts / photons + 0.03 * np.asarray(jax.random.normal(k2, lam.shape))
    return Dataset(as_images(img, strict=False, zscore=True), masks.astype(np.int32))


def scenes(key: jax.Array, n: int, *, size: int = 64, num_classes: int = 4, regions: int = 10,
           objects: int = 0, noise: float = 0.25) -> Dataset:
    """Natural-like multi-class RGB scenes with irregular regions.

    Regions are the cells of a warped Voronoi partition of ``regions`` random
    seeds, each given a random class (the first ``min(num_classes, regions)``
    seeds a permutation of the classes); ``objects`` small ellipses (semi-axes
    1.5-5 px, any orientation) of random classes are then painted over them, so
    that ``regions=6, objects=24`` gives street-scene-like maps of a few large
    regions and many small ones. Class c has its own colour and a texture
    (smoothed noise) of its own scale, plus pixel noise ``noise``. ``objects=0``
    draws exactly what it drew before the parameter existed.

    Raises:
        ValueError: ``num_classes`` below 2, ``regions`` below 1 or
            ``objects`` negative.
    """
    import scipy.ndimage as ndi

    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    _checks.check_int("regions", regions, minimum=1)
    _checks.check_int("objects", objects, minimum=0)
    rng = _rng(key)
    palette = np.random.default_rng(num_classes).uniform(-1, 1, (num_classes, 3))
    scales = np.linspace(0.7, 4.0, num_classes)
    yy, xx = _grid(size)
    imgs = np.zeros((n, size, size, 3), np.float32)
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        seeds = rng.uniform(0, size, (regions, 2))
        cls = rng.integers(0, num_classes, regions)
        cls[:num_classes] = rng.permutation(num_classes)[: min(num_classes, regions)]
        warp = ndi.gaussian_filter(rng.standard_normal((2, size, size)), (0, 6, 6)) * 40
        d = ((yy[None] + warp[0] - seeds[:, 0, None, None]) ** 2 + (xx[None] + warp[1] - seeds[:, 1, None, None]) ** 2)
        lab = cls[np.argmin(d, axis=0)]
        if objects:
            centre = rng.uniform(0, size, (objects, 2))
            axes = rng.uniform(1.5, 5.0, (objects, 2))
            angle = rng.uniform(0, np.pi, objects)
            for (cy, cx), (a, b), th, c in zip(centre, axes, angle, rng.integers(0, num_classes, objects),
                                               strict=True):
                u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
                v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
                lab = np.where((u / a) ** 2 + (v / b) ** 2 <= 1.0, c, lab)
        labels[i] = lab
        for c in range(num_classes):
            tex = ndi.gaussian_filter(rng.standard_normal((size, size, 3)), (scales[c], scales[c], 0))
            tex /= tex.std() + 1e-6
            imgs[i][lab == c] = (palette[c] + 0.35 * tex)[lab == c]
        imgs[i] += noise * rng.standard_normal((size, size, 3))
    return Dataset(as_images(imgs, zscore=True), labels)


# ------------------------------------------------------------------- real data
def _stardist_images() -> Path:
    spec = importlib.util.find_spec("stardist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the real nuclei image ships inside the stardist wheel: "
            "pip install --no-deps stardist==0.9.2 (or pip install 'metastructure[real]')"
        )
    folder = Path(spec.origin).parent / "data" / "images"
    if not (folder / "img2d.tif").exists():
        raise FileNotFoundError(f"stardist is installed but {folder / 'img2d.tif'} is missing")
    return folder


def real_available() -> bool:
    """Whether the packaged real nuclei image can be read here."""
    try:
        _stardist_images()
        import tifffile  # noqa: F401
    except (FileNotFoundError, ImportError):
        return False
    return True


def _tifffile():
    try:
        import tifffile
    except ImportError:
        raise ImportError("reading TIFF needs tifffile: pip install 'metastructure[real]'") from None
    return tifffile


def real_nuclei(*, tile: int | None = None, split: tuple[float, float, float] = (0.5, 0.25, 0.25),
                ndim: int = 2) -> dict[str, Dataset]:
    """The real 512 x 512 nuclei image (DSB 2018, CC0) as train / val / test tiles.

    The image is cut into non-overlapping ``tile`` x ``tile`` tiles (default
    128: 16 tiles); tiles are assigned in a fixed interleaved order so each split
    covers the whole image. Instance labels become a binary mask. Images are
    z-scored per tile.

    With ``ndim=3``, the wheel's real nuclei volume instead (``img3d.tif`` /
    ``mask3d.tif``: 31 x 61 x 57 voxels, 51 nuclei): cut into ``tile`` x
    ``tile`` columns of the full depth (default 16: 9 columns; the volume's
    sides cropped to multiples of ``tile``), (N, 31, tile, tile, 1) images
    z-scored per column.
    """
    ndim = _checks.check_ndim(ndim)
    tile = (128 if ndim == 2 else 16) if tile is None else _checks.check_int("tile", tile, minimum=1)
    tifffile = _tifffile()
    folder = _stardist_images()
    name = "2d" if ndim == 2 else "3d"
    img = tifffile.imread(folder / f"img{name}.tif").astype(np.float32)
    inst = tifffile.imread(folder / f"mask{name}.tif")
    if ndim == 3:
        h, w = img.shape[1:]
        if tile > min(h, w):
            raise ValueError(f"tile must be at most the volume's sides {img.shape[1:]}, got {tile}")
        img, inst = img[:, : h - h % tile, : w - w % tile], inst[:, : h - h % tile, : w - w % tile]
        cols = [(y, x) for y in range(0, img.shape[1], tile) for x in range(0, img.shape[2], tile)]
        order = [cols[i] for i in np.random.default_rng(0).permutation(len(cols))]
        n_tr = int(round(split[0] * len(order)))
        n_va = int(round(split[1] * len(order)))
        parts = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}
        return {part: Dataset(as_images(np.stack([img[:, y : y + tile, x : x + tile] for y, x in locs]),
                                        strict=False, zscore=True, ndim=3),
                              np.stack([(inst[:, y : y + tile, x : x + tile] > 0) for y, x in locs]).astype(np.int32))
                for part, locs in parts.items() if locs}
    h, w = img.shape
    if h % tile or w % tile:
        raise ValueError(f"tile must divide the image size {img.shape}, got {tile}")
    tiles = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    order = [tiles[i] for i in np.random.default_rng(0).permutation(len(tiles))]
    n = len(order)
    n_tr = int(round(split[0] * n))
    n_va = int(round(split[1] * n))
    parts = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}
    out = {}
    for name, locs in parts.items():
        ims = np.stack([img[y : y + tile, x : x + tile] for y, x in locs])
        ms = np.stack([(inst[y : y + tile, x : x + tile] > 0) for y, x in locs]).astype(np.int32)
        out[name] = Dataset(as_images(ims, strict=False, zscore=True), ms)
    return out


_READABLE = (".png", ".tif", ".tiff")
_OTHER_IMAGES = (".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".jp2", ".j2k")


def _listing(folder: Path) -> dict[str, Path]:
    """Readable files of ``folder`` by stem; hidden files (``.name``, e.g. macOS ``._a.png``) are skipped.

    An entry named like an image that is not a readable file (a folder ``a.tif``, a broken link) is an error
    naming it: skipped, it would leave its pair unmatched, or a mask silently out."""
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue
        ext = f.suffix.lower()
        if not f.is_file():
            if ext not in _READABLE + _OTHER_IMAGES:
                continue
            if f.is_symlink() and not f.exists():
                raise ValueError(f"{f}: a broken symbolic link (its target {os.readlink(f)} does not exist); "
                                 "remove it or point it at an image file")
            what = "a folder" if f.is_dir() else "not a regular file"
            raise ValueError(f"{f}: {what}, not an image file; rename or move it out of {folder}")
        if ext in _OTHER_IMAGES:
            raise ValueError(f"{f}: unsupported format {ext} (load_folder reads PNG or TIFF; convert the file, "
                             "and prefer lossless formats for masks)")
        if ext not in _READABLE:
            continue
        if f.stem in files:
            raise ValueError(f"{files[f.stem]} and {f.name} share the name {f.stem!r}: one file per name, please")
        files[f.stem] = f
    return files


def _read_tiff(p: Path) -> tuple[np.ndarray, str, int]:
    """The first image (series) of a TIFF file, its axes as tifffile names them, and the number of series of its
    shape (other series, of other shapes, are thumbnails or previews)."""
    with _tifffile().TiffFile(p) as tif:
        series = tif.series
        if not series:
            raise ValueError("no image in the file")
        return series[0].asarray(), series[0].axes, sum(s.shape == series[0].shape for s in series)


def _planes(p: Path, arr: np.ndarray, axes: str, count: int) -> np.ndarray:
    """A TIFF series as one 2-D image, (H, W) or (H, W, C), read from the file's own axes: Y and X, channels as
    samples (S) or as ImageJ / OME channel pages (C); any other axis longer than 1 (Z, T, or tifffile's
    unnamed Q of a plain multi-page file), or ``count`` > 1 series of its shape, makes a stack, which the
    loaders refuse."""
    if count > 1:
        raise ValueError(f"{p}: the file holds {count} images of one size (TIFF series), a stack; the loaders read "
                         "one 2-D image per file")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"{p}: not a 2-D image (TIFF axes {axes}, shape {arr.shape})")
    stack = {a: n for a, n in zip(axes, arr.shape, strict=True) if a not in "YXSC" and n > 1}
    if stack:
        raise ValueError(f"{p}: a stack of {int(np.prod(list(stack.values())))} planes "
                         f"({', '.join(f'{a}={n}' for a, n in stack.items())}; TIFF axes {axes}, shape {arr.shape}): "
                         "the loaders read 2-D images, (H, W) or (H, W, C) with the channels as TIFF samples or as "
                         "ImageJ / OME channels; save one plane per file, or read it as a volume (ndim=3)"
                         + (" (a multi-channel image written as pages? tifffile.imwrite(path, image, "
                            "photometric='minisblack', planarconfig='contig') keeps (H, W, C) one page)"
                            if "Q" in stack else ""))
    keep = [i for i, a in enumerate(axes) if a in "YXSC"]
    arr = arr.reshape([arr.shape[i] for i in keep])  # drops the axes of length 1
    kept = "".join(axes[i] for i in keep)
    order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a in "SC"]
    arr = np.transpose(arr, order)
    return arr if arr.ndim <= 3 else arr.reshape(arr.shape[0], arr.shape[1], -1)


def _stack(p: Path, arr: np.ndarray, axes: str, count: int) -> np.ndarray:
    """A TIFF series as one volume, (D, H, W) or (D, H, W, C): Y and X, channels as samples or channel pages, and
    one more axis for the planes (Z, or the pages of a plain multi-page file, tifffile's Q; T or another axis
    longer than 1 is refused, as are several series of one shape)."""
    if count > 1:
        raise ValueError(f"{p}: the file holds {count} images of one size (TIFF series); a volume is one series of "
                         "planes (Z or pages)")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"{p}: not an image (TIFF axes {axes}, shape {arr.shape})")
    other = [a for a, n in zip(axes, arr.shape, strict=True) if a not in "YXSC" and n > 1]
    if len(other) > 1 or (other and other[0] not in "ZQI"):
        raise ValueError(f"{p}: a volume has one stack axis (Z, or the file's pages), got TIFF axes {axes} with "
                         f"shape {arr.shape}; save one volume (one time point) per file")
    depth = "".join(a for a in axes if a in "ZQI")
    keep = [i for i, a in enumerate(axes) if a in "YXSC" or (a in depth and (not other or a == other[0]))]
    arr = arr.reshape([arr.shape[i] for i in keep])
    kept = "".join(axes[i] for i in keep)
    z = next((i for i, a in enumerate(kept) if a in "ZQI"), None)
    order = ([z] if z is not None else []) + [kept.index("Y"), kept.index("X")] + [
        i for i, a in enumerate(kept) if a in "SC"]
    arr = np.transpose(arr, order)
    if z is None:
        arr = arr[None]  # one plane: a volume of depth 1
    return arr if arr.ndim <= 4 else arr.reshape(arr.shape[:3] + (-1,))


def _read_image_file(p: Path, ndim: int = 2) -> np.ndarray:
    """The array of one PNG or TIFF file: (H, W) or (H, W, C); a stack or an animation is refused naming ``p``.
    With ``ndim=3``, one TIFF volume: (D, H, W) or (D, H, W, C) (:func:`_stack`); PNG is refused."""
    if ndim == 3:
        if p.suffix.lower() == ".png":
            raise ValueError(f"{p}: a PNG holds one plane; volumes are read from TIFF stacks (one volume per file)")
        try:
            arr, axes, count = _read_tiff(p)
        except ImportError:
            raise
        except Exception as e:
            raise ValueError(f"{p}: cannot read it as TIFF ({type(e).__name__}: {e})") from e
        return _stack(p, arr, axes, count)
    try:
        if p.suffix.lower() == ".png":
            from PIL import Image  # pillow comes with matplotlib

            with Image.open(p) as im:
                frames = getattr(im, "n_frames", 1)
                arr = np.asarray(im)
        else:
            arr, axes, count = _read_tiff(p)
    except ImportError:
        raise
    except Exception as e:  # PIL / tifffile errors name neither the file nor the problem in our terms
        raise ValueError(f"{p}: cannot read it as {p.suffix.lower()[1:].upper()} ({type(e).__name__}: {e})") from e
    if p.suffix.lower() != ".png":
        return _planes(p, arr, axes, count)
    if frames > 1:
        raise ValueError(f"{p}: an animated PNG of {frames} frames: the loaders read one 2-D image per file")
    return arr


class NotBinaryMaskError(ValueError):
    """A mask file read with ``binary=True`` that holds more than two values, or a negative one (an instance or
    class map?): ``path`` names the file, ``values`` its distinct values (sorted), ``count`` how many. A
    ``ValueError``; callers that cannot pass ``binary=False`` (a command line) catch it to give their own advice."""

    def __init__(self, path: str | os.PathLike, values: Any):
        self.path = Path(path)
        self.values = np.unique(np.asarray(values)).tolist()
        self.count = len(self.values)
        super().__init__(f"{self.path}: {self.summary()} (an instance or class map? pass binary=False to keep the "
                         "classes, or save the mask binarised: every label > 0 as 1)")

    def __reduce__(self):  # pickles (a Dask or multiprocessing worker raising it) by its arguments, not its message
        return type(self), (self.path, self.values)

    def summary(self) -> str:
        """What is wrong, without the advice: the values found."""
        shown = ", ".join(f"{v:g}" for v in self.values[:6]) + (", ..." if self.count > 6 else "")
        return f"a binary mask holds 0 and one other value, found {self.count} values [{shown}]"


def _read_mask(path: Path, m: np.ndarray, binary: bool, rescaled: list[str], ndim: int = 2) -> np.ndarray:
    """One mask file's array, checked and converted (binary 0/1 or int32 classes); errors name ``path``."""
    if m.dtype.kind not in "biuf":
        raise ValueError(f"{path}: a mask must be real-valued, got dtype {m.dtype}")
    if m.ndim != ndim:
        raise ValueError(f"{path}: mask must be a {ndim}-D label map, got shape {m.shape}")
    if m.size == 0:
        raise ValueError(f"{path}: the mask is empty (shape {m.shape})")
    if m.dtype.kind == "f" and not np.all(np.isfinite(m)):
        raise ValueError(f"{path}: the mask holds NaN or infinite values")
    if not np.all(np.equal(np.mod(m, 1), 0)):
        raise ValueError(f"{path}: mask must hold integer labels, found non-integer values")
    values = np.unique(m)
    if binary:
        other = values[values != 0]
        if other.size > 1 or np.any(other < 0):
            raise NotBinaryMaskError(path, values)
        if other.size and other[0] != 1:
            rescaled.append(f"{path.name} ({other[0]:g} -> 1)")
        return (m != 0).astype(np.int32)
    if values.min() < -1 or values.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{path}: class labels must lie in [0, 2^31) (or -1 to ignore a pixel), "
                         f"found {values.min():g} .. {values.max():g}")
    return m.astype(np.int32)


def _warn_rescaled(fn: str, rescaled: list[str]) -> None:
    if rescaled:
        warnings.warn(f"{len(rescaled)} mask(s) read as binary, their non-zero value as 1: "
                      + ", ".join(rescaled[:5]) + (" ..." if len(rescaled) > 5 else ""), UserWarning, stacklevel=3)


def _folder(path: str | os.PathLike, what: str) -> dict[str, Path]:
    d = Path(path)
    if not d.is_dir():
        raise FileNotFoundError(f"expected a folder of {what} at {d}")
    files = _listing(d)
    if not files:
        raise ValueError(f"no PNG or TIFF files in {d} (expected {what})")
    return files


def load_masks(path: str | os.PathLike, *, binary: bool = True, ndim: int = 2) -> tuple[list[str], list[np.ndarray]]:
    """The masks of a folder (PNG or TIFF), without images: ``(names, masks)``, sorted by name.

    Each mask is checked and converted as in :func:`load_folder` (binary 0/1 by
    default, a ``UserWarning`` naming the files whose non-zero value was not 1);
    unlike there, masks may differ in size, so they come as a list of int32
    (H, W) arrays. ``names`` are the file names (``a.png``). With ``ndim=3``
    each file is one volume, a TIFF stack of planes (Z, or plain pages), read
    as (D, H, W).

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        ValueError: no PNG or TIFF file in it, an entry named like one that is
            not a file (a folder, a broken link), or a file that is not a mask
            (the message names the file: unreadable, lossy format, a stack or
            not 2-D, empty, non-integer, NaN; more than two values with
            ``binary=True``: :class:`NotBinaryMaskError`).
    """
    ndim = _checks.check_ndim(ndim)
    files = _folder(path, "mask files")
    rescaled: list[str] = []
    masks = [_read_mask(files[n], _read_image_file(files[n], ndim), binary, rescaled, ndim) for n in sorted(files)]
    _warn_rescaled("load_masks", rescaled)
    return [files[n].name for n in sorted(files)], masks


def load_pairs(images: str | os.PathLike, masks: str | os.PathLike, *, binary: bool = True,
               ndim: int = 2) -> Dataset:
    """Image/mask pairs from two folders, matched by file stem: ``images/NAME.ext`` with ``masks/NAME.ext``.

    The conventions and errors of :func:`load_folder` (which calls this with
    ``path/images`` and ``path/masks``). With ``ndim=3`` each file is a volume
    (a TIFF stack, :func:`load_masks`): images (N, D, H, W, C), masks (N, D, H, W).

    Raises:
        FileNotFoundError: ``images`` or ``masks`` is not a folder.
        ValueError: as :func:`load_folder` (every message names its file).
    """
    di, dm = Path(images), Path(masks)
    for d in (di, dm):
        if not d.is_dir():
            raise FileNotFoundError(f"expected a folder {d} (image/mask pairs live in two folders, matched by name)")
    fi, fm = _listing(di), _listing(dm)
    if set(fi) != set(fm):
        raise ValueError(
            f"unmatched names: images without a mask {sorted(set(fi) - set(fm))}, "
            f"masks without an image {sorted(set(fm) - set(fi))}"
        )
    if not fi:
        raise ValueError(f"no PNG or TIFF files in {di}")

    ndim = _checks.check_ndim(ndim)
    ims, ms, rescaled = [], [], []
    for name in sorted(fi):
        im = _read_image_file(fi[name], ndim)
        m = _read_image_file(fm[name], ndim)
        if im.dtype.kind not in "biuf" or m.dtype.kind not in "biuf":
            raise ValueError(f"{fi[name]} and {fm[name].name}: image and mask must be real-valued, "
                             f"got dtypes {im.dtype} and {m.dtype}")
        if im.shape[:ndim] != m.shape[:ndim]:
            raise ValueError(f"{name}: image shape {im.shape} and mask shape {m.shape} differ")
        if im.ndim not in (ndim, ndim + 1) or im.size == 0:
            sp = "H, W" if ndim == 2 else "D, H, W"
            raise ValueError(f"{fi[name]}: an image must be ({sp}) or ({sp}, C), got shape {im.shape}")
        if not np.all(np.isfinite(im)):
            raise ValueError(f"{fi[name]}: the image holds NaN or infinite values")
        ims.append(im if im.ndim == ndim + 1 else im[..., None])
        ms.append(_read_mask(fm[name], m, binary, rescaled, ndim))
    shapes = {x.shape for x in ims}
    if len(shapes) > 1:
        raise ValueError(f"all images must share one size, got {sorted(shapes)}")
    _warn_rescaled("load_folder", rescaled)
    return Dataset(as_images(np.stack(ims), zscore=True, ndim=ndim), np.stack(ms))


def load_folder(path: str | os.PathLike, *, images: str = "images", masks: str = "masks",
                binary: bool = True) -> Dataset:
    """A user's image/mask pairs: ``path/images/NAME.ext`` with ``path/masks/NAME.ext``.

    PNG or TIFF, matched by file stem (hidden files such as macOS's ``._a.png``
    are skipped). Images become float32 (N, H, W, C) z-scored per image (in
    float64, scaled first where huge: :func:`as_images`, so any finite values
    keep their contrast); all pairs must share one size (:func:`load_pairs`
    takes two folders anywhere, :func:`load_masks` masks alone).

    One 2-D image per file, as the file's own metadata says: a TIFF's axes
    (tifffile's series) must be Y and X, with channels as samples (RGB,
    ``planarconfig``) or as ImageJ / OME channel pages, which become C; any
    other axis longer than 1 (Z, T, or the pages of a plain multi-page file)
    is a stack, refused whatever its length. An animated PNG is refused too.

    Masks, ``binary=True`` (the default): each mask must hold at most two
    values, 0 and one other (1, or 255 / 65535 for ordinary 8- / 16-bit mask
    files); the other value becomes 1, and a ``UserWarning`` says which files
    were read that way. ``binary=False``: integer class maps with classes >= 0
    (and -1 for unlabelled pixels), kept as int32.

    Raises:
        FileNotFoundError: missing folders.
        ValueError: every problem names its file: unsupported formats (JPEG
            and other lossy or non-PNG/TIFF images), two files with one stem,
            an entry named like an image that is a folder or a broken link, a
            file that cannot be read, a stack (several TIFF pages along Z, T
            or unnamed, several series of one size, an animated PNG), unmatched names,
            size mismatches, NaN or infinite image values, non-integer masks,
            masks that are not binary (with ``binary=True``: more than two
            values, e.g. instance labels: :class:`NotBinaryMaskError`) or hold
            values outside int32 / below -1.
    """
    root = Path(path)
    return load_pairs(root / images, root / masks, binary=binary)
