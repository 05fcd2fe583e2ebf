r"""Label types: every way the paper corrupts a label map, binary and multi-class.

Random functions take ``key`` first and are pure: same key, same output; they
work under ``jax.jit`` and ``jax.vmap`` (over keys, or over rates). Images are the
last ``ndim`` axes (2: (H, W); 3: (D, H, W)); leading axes are a batch, and
"per image" counts are taken per leading index. Binary outputs keep the input's
dtype (bool stays bool, 0/1 ints stay ints).

Spatially uniform (RCL, the network still learns the clean meta-structure):

* :func:`sample` keeps a fraction of the foreground (rest -> background);
* :func:`flip` flips a fraction of each class, both directions at once;
* :func:`corrupt` draws each pixel's class from a transition matrix (multi-class);
* :func:`sample_classes` keeps a fraction of every class (rest -> ignore, or
  with ``fill`` a class of its own: void).

Spatially structured (PCL, the boundary moves): :func:`dilate`, :func:`erode`,
:func:`skeletonize`, :func:`shift`, :func:`boundary_noise`.
Independent of the image (RL): :func:`random_labels`.

Annotation practice (a region chosen without looking at the image is labelled, the rest is unlabelled, stored as
background (RCL, like :func:`sample`) or as ``ignore`` (CL on the labelled pixels)): :func:`slices` (every k-th
slice), :func:`blocks` (random cubes), :func:`scattered` (random pixels of both classes).

A label type as a value (a pytree, for jitted training with fresh draws): a
:class:`LabelNoise`, one subclass per type (:class:`Clean`, :class:`Sample`,
:class:`Flip`, :class:`RandomLabels`, :class:`Dilate`, :class:`Erode`,
:class:`Skeleton`, :class:`Shift`, :class:`BoundaryNoise`, :class:`Slices`, :class:`Blocks`, :class:`Scattered`,
:class:`SampleClasses`, :class:`SampleVoid`, :class:`SymmetricFlip`), each with its draw, its T,
its t* and its family; ``LabelNoise.parse("flip 0.3 0.2")`` reads one from its
name.

Exact counts. ``exact=True`` draws, per image and uniformly without
replacement, exactly ``ceil(ratio * N)`` pixels to keep (:func:`sample`) or
``floor(rate * N)`` pixels to flip (:func:`flip`), N being the image's count of
the class. The products are float32 with a relative tolerance of :math:`2^{-22}`
so that, e.g., ``0.1 * 10`` counts as 1 (float32 0.1 is slightly above 0.1).
Rates are float32: a positive ratio keeps at least one pixel, but values below
float32's smallest normal number (about 1e-38) flush to zero.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, ntm
from .density import TRANSITION_ATOL, MatchedThreshold, matched_threshold_or_none

__all__ = [
    "Blocks",
    "BoundaryNoise",
    "Clean",
    "Dilate",
    "Erode",
    "Flip",
    "LabelNoise",
    "RandomLabels",
    "Sample",
    "SampleClasses",
    "Scattered",
    "Shift",
    "Skeleton",
    "Slices",
    "SampleVoid",
    "SymmetricFlip",
    "UNLABELLED",
    "blocks",
    "boundary_noise",
    "corrupt",
    "dilate",
    "disk",
    "erode",
    "flip",
    "random_labels",
    "sample",
    "sample_classes",
    "scattered",
    "shift",
    "skeletonize",
    "slices",
]

_TOL = 2.0**-22


# ------------------------------------------------------------------- helpers
def _as_mask(name: str, mask: Any, ndim: int, ignore: int | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(the mask as an array, its foreground, its labelled pixels).

    Values are checked on concrete input (0/1 or ``ignore``). The foreground is
    ``mask != 0`` outside ``ignore``, computed with masks, so under ``jit``
    (no value checks) ignore pixels are still never foreground or background.
    """
    ndim = _checks.check_ndim(ndim)
    _checks.check_spatial(name, mask, ndim)
    c = _checks.concrete(mask)
    if c is not None and c.dtype.kind not in "biu":
        raise TypeError(f"{name} must be a bool or integer 0/1 array, got dtype {c.dtype}")
    m = jnp.asarray(mask)
    if not (m.dtype == jnp.bool_ or jnp.issubdtype(m.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a bool or integer 0/1 array, got dtype {m.dtype}")
    ig = _checks.check_ignore(ignore, None)
    if ig is not None and (m.dtype == jnp.bool_ or (ig < 0 and not jnp.issubdtype(m.dtype, jnp.signedinteger))):
        ig = None  # a value this dtype cannot hold: no pixel is ignored
    _checks.check_binary(name, mask, ignore=ig)
    valid = jnp.ones(m.shape, bool) if ig is None else m != ig
    return m, (m != 0) & valid, valid


def _count(sel: jax.Array, ndim: int) -> jax.Array:
    return jnp.sum(sel, axis=tuple(range(-ndim, 0)), dtype=jnp.int32)


def _ceil_count(rate: Any, n: jax.Array) -> jax.Array:
    r = jnp.asarray(rate, jnp.float32)
    k = jnp.ceil(r * n * (1.0 - _TOL)).astype(jnp.int32)
    return jnp.where((r > 0) & (n > 0), jnp.maximum(k, 1), k)  # ceil(pN) >= 1 for p > 0


def _floor_count(rate: Any, n: jax.Array) -> jax.Array:
    prod = jnp.asarray(rate, jnp.float32) * n
    return jnp.minimum(jnp.floor(prod * (1.0 + _TOL)).astype(jnp.int32), n)


def _choose(key: jax.Array, sel: jax.Array, k: jax.Array, ndim: int) -> jax.Array:
    """Exactly k[b] pixels of ``sel`` per image b, uniformly without replacement.

    Each selectable pixel gets an independent random 31-bit key; unselectable
    pixels get keys above all of them. The k smallest keys win; a stable sort
    breaks the (rare) ties, so the count is always exact.
    """
    batch = sel.shape[:-ndim]
    flat = sel.reshape(batch + (math.prod(sel.shape[-ndim:]),))  # explicit: -1 is ambiguous for an empty batch
    bits = jax.random.bits(key, flat.shape, dtype=jnp.uint32) >> 1
    keys = jnp.where(flat, bits, bits | jnp.uint32(1 << 31))
    order = jnp.argsort(keys, axis=-1, stable=True)
    # the k[b] first pixels of the order: a scatter of "rank < k" into place (no second sort for the ranks)
    first = jnp.arange(flat.shape[-1]) < k[..., None]
    keep = jnp.zeros_like(flat).at[jnp.indices(order.shape, sparse=True)[:-1] + (order,)].set(first)
    return (flat & keep).reshape(sel.shape)


def _out(like: jax.Array, b: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """``b`` in the input's dtype, with the input's ignore pixels (``~valid``) left as they were."""
    out = b.astype(like.dtype)
    return out if valid is None else jnp.where(valid, out, like)


# ------------------------------------------------------------------- RCL
def sample(key: jax.Array, mask: Any, ratio: Any, *, exact: bool = True, ignore: int | None = -1,
           ndim: int = 2) -> jax.Array:
    r"""Keep a fraction ``ratio`` of the foreground; every other pixel is background.

    Transition matrix ``[[1, 0], [1-p, p]]`` (:func:`metastructure.ntm.sample_matrix`).

    Args:
        key: a ``jax.random`` key.
        mask: binary mask (..., H, W) (bool or 0/1 integers).
        ratio: p in [0, 1] (may be traced, e.g. under ``vmap``).
        exact: exactly ``ceil(p * N_fg)`` pixels per image, uniformly without
            replacement (the paper); else i.i.d. Bernoulli(p) per pixel.
        ignore: the value of unlabelled pixels in an integer mask (None:
            none); they are neither foreground nor background and stay
            ``ignore``, under ``jit`` too.
        ndim: spatial axes (2 or 3).

    Returns:
        The sampled mask, same shape and dtype; an empty mask stays empty.

    >>> import jax, numpy as np
    >>> m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
    >>> int(sample(jax.random.key(0), m, 0.25).sum())
    4
    """
    _checks.check_unit_interval("ratio", ratio, scalar=True)
    m, fg, valid = _as_mask("mask", mask, ndim, ignore)
    if exact:
        keep = _choose(key, fg, _ceil_count(ratio, _count(fg, ndim)), ndim)
    else:
        keep = fg & jax.random.bernoulli(key, jnp.asarray(ratio, jnp.float32), fg.shape)
    return _out(m, keep, valid)


def flip(
    key: jax.Array, mask: Any, fg_to_bg: Any, bg_to_fg: Any, *, exact: bool = True, ignore: int | None = -1,
    ndim: int = 2,
) -> jax.Array:
    r"""Flip a fraction f of the foreground and b of the background, at the same time.

    Transition matrix ``[[1-b, b], [f, 1-f]]``; with ``exact`` exactly
    ``floor(f * N_fg)`` foreground and ``floor(b * N_bg)`` background pixels flip
    per image (so ``flip(f, 0)`` keeps as many pixels as ``sample(1 - f)``), else
    each pixel flips independently.

    Args:
        key: a ``jax.random`` key.
        mask: binary mask (..., H, W).
        fg_to_bg: f in [0, 1].
        bg_to_fg: b in [0, 1].
        exact: exact counts per image (the paper) or i.i.d. Bernoulli.
        ignore: the value of unlabelled pixels (integer masks; None:
            none): never flipped, left ``ignore``, under ``jit`` too.
        ndim: spatial axes (2 or 3).

    >>> import jax, numpy as np
    >>> m = np.zeros((10, 10), bool); m[:, :5] = True
    >>> y = flip(jax.random.key(1), m, 0.4, 0.2)
    >>> int((m & ~y).sum()), int((~m & y).sum())
    (20, 10)
    """
    _checks.check_unit_interval("fg_to_bg", fg_to_bg, scalar=True)
    _checks.check_unit_interval("bg_to_fg", bg_to_fg, scalar=True)
    m, fg, valid = _as_mask("mask", mask, ndim, ignore)
    bg = valid & ~fg
    kf, kb = jax.random.split(key)
    if exact:
        off = _choose(kf, fg, _floor_count(fg_to_bg, _count(fg, ndim)), ndim)
        on = _choose(kb, bg, _floor_count(bg_to_fg, _count(bg, ndim)), ndim)
    else:
        off = fg & jax.random.bernoulli(kf, jnp.asarray(fg_to_bg, jnp.float32), fg.shape)
        on = bg & jax.random.bernoulli(kb, jnp.asarray(bg_to_fg, jnp.float32), fg.shape)
    return _out(m, (fg & ~off) | on, valid)


def corrupt(key: jax.Array, labels: Any, transition: Any, *, ignore: int | None = -1) -> jax.Array:
    r"""Each pixel of class j independently becomes class m with probability T[j, m].

    Args:
        key: a ``jax.random`` key.
        labels: integer class map, classes in ``[0, M)`` or ``ignore``.
        transition: M x M row-stochastic matrix (rows: true class).
        ignore: label left untouched (None: none).

    Returns:
        int32 labels of the same shape.

    >>> import jax, numpy as np
    >>> corrupt(jax.random.key(0), np.array([0, 1, -1]), np.eye(2)).tolist()
    [0, 1, -1]
    """
    _checks.check_transition("transition", transition)
    t = jnp.asarray(transition, jnp.float32)
    m = t.shape[0]
    ignore = _checks.check_ignore(ignore, m)
    _checks.check_labels("labels", labels, m, ignore=ignore)
    lab = jnp.asarray(labels).astype(jnp.int32)
    cdf = jnp.cumsum(t, axis=1)[:, :-1]  # (M, M-1): the last edge is 1
    valid = (lab >= 0) & (lab < m)
    u = jax.random.uniform(key, lab.shape)
    new = jnp.sum(u[..., None] >= cdf[jnp.where(valid, lab, 0)], axis=-1).astype(jnp.int32)
    return jnp.where(valid, new, lab)


def sample_classes(
    key: jax.Array,
    labels: Any,
    ratio: Any,
    *,
    num_classes: int,
    ignore: int = -1,
    fill: int | None = None,
    exact: bool = True,
    ndim: int = 2,
) -> jax.Array:
    """Multi-class sampling: keep a fraction of each class; the rest become ``ignore``.

    Args:
        key: a ``jax.random`` key.
        labels: integer class map (..., H, W) in ``[0, num_classes)`` or ``ignore``.
        ratio: scalar, or one ratio per class (length ``num_classes``).
        num_classes: M.
        ignore: the value written where a label is dropped (and left alone).
        fill: write this class instead of ``ignore`` (e.g. 0 for background).
        exact: exactly ``ceil(ratio_c * N_c)`` pixels of class c per image, or
            i.i.d. Bernoulli.
        ndim: spatial axes (2 or 3).

    Returns:
        int32 labels.

    >>> import jax, numpy as np
    >>> lab = np.repeat(np.arange(4), 4).reshape(4, 4)
    >>> y = sample_classes(jax.random.key(0), lab, 0.5, num_classes=4)
    >>> [int((y == c).sum()) for c in range(-1, 4)]
    [8, 2, 2, 2, 2]
    """
    _checks.check_unit_interval("ratio", ratio)
    num_classes = _checks.check_num_classes(num_classes)
    ignore = _checks.check_ignore(ignore, num_classes)
    if fill is not None:
        fill = _checks.check_int("fill", fill)
    if np.ndim(ratio) > 1 or np.ndim(ratio) == 1 and np.shape(ratio)[0] != num_classes:
        raise ValueError(f"ratio must be a scalar or one ratio per class (length {num_classes}), "
                         f"got shape {np.shape(ratio)}")
    ndim = _checks.check_ndim(ndim)
    _checks.check_spatial("labels", labels, ndim)
    _checks.check_labels("labels", labels, num_classes, ignore=ignore)
    lab = jnp.asarray(labels).astype(jnp.int32)
    r = jnp.broadcast_to(jnp.asarray(ratio, jnp.float32), (num_classes,))
    keys = jax.random.split(key, num_classes)
    kept = jnp.zeros(lab.shape, bool)
    for c in range(num_classes):
        sel = lab == c
        if exact:
            kept |= _choose(keys[c], sel, _ceil_count(r[c], _count(sel, ndim)), ndim)
        else:
            kept |= sel & jax.random.bernoulli(keys[c], r[c], sel.shape)
    drop = jnp.int32(ignore if fill is None else fill)
    return jnp.where(kept | (lab == ignore), lab, drop)


# ------------------------------------------------------------------- RL
def random_labels(key: jax.Array, shape: tuple[int, ...], rate: Any, *, dtype: Any = bool) -> jax.Array:
    """i.i.d. Bernoulli(``rate``) labels, independent of any image (rank-1 T).

    >>> import jax
    >>> random_labels(jax.random.key(0), (4, 4), 0.0).any().item()
    False
    """
    _checks.check_unit_interval("rate", rate, scalar=True)
    if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in tuple(shape)):
        raise ValueError(f"shape must be a tuple of non-negative ints, got {shape!r}")
    return jax.random.bernoulli(key, jnp.asarray(rate, jnp.float32), tuple(shape)).astype(dtype)


# ------------------------------------------------------------------- PCL
def disk(radius: float, *, ndim: int = 2) -> np.ndarray:
    r"""The structuring element :math:`\{t : |t|^2 \le r^2\}` (a ball in 3-D), as bool numpy.

    >>> disk(1).astype(int).tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    """
    r = _checks.check_radius("radius", radius)
    ndim = _checks.check_ndim(ndim)
    n = int(math.floor(r))
    g = np.meshgrid(*([np.arange(-n, n + 1)] * ndim), indexing="ij")
    return sum(x * x for x in g) <= r * r


def _shift_zero(x: jax.Array, offset: int, axis: int) -> jax.Array:
    """y[i] = x[i - offset] along ``axis``, zero where that falls outside."""
    if offset == 0:
        return x
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (max(offset, 0), max(-offset, 0))
    xp = jnp.pad(x, pad)
    return jax.lax.slice_in_dim(xp, max(-offset, 0), max(-offset, 0) + n, axis=axis)


def _dilate(m: jax.Array, r: float, ndim: int) -> jax.Array:
    """Binary dilation by a disk, as a union of shifted 1-D row dilations (exact)."""
    x = m.astype(jnp.uint8)
    out = jnp.zeros_like(x)
    # a shift by the image's size or more moves everything out, and a row window of 2 (W - 1) + 1 already spans a
    # whole row: offsets are capped there (same result; a huge radius costs no more than the image's size)
    n = int(min(math.floor(r), max(x.shape[-2:] if ndim == 2 else x.shape[-3:])))
    width = x.shape[-1]
    outer = [(0,)] if ndim == 2 else [(dz,) for dz in range(-min(n, x.shape[-3] - 1), min(n, x.shape[-3] - 1) + 1)]
    for (dz,) in outer:
        for dy in range(-min(n, x.shape[-2] - 1), min(n, x.shape[-2] - 1) + 1):
            rest = r * r - dy * dy - (dz * dz if ndim == 3 else 0)
            if rest < 0:
                continue
            # largest w with w^2 <= rest, capped at W - 1
            w = width - 1 if rest >= (width - 1) ** 2 else math.isqrt(int(math.floor(rest)))
            s = _shift_zero(x, dy, x.ndim - 2)
            if ndim == 3:
                s = _shift_zero(s, dz, x.ndim - 3)
            if w > 0:
                win = (1,) * (x.ndim - 1) + (2 * w + 1,)
                pads = ((0, 0),) * (x.ndim - 1) + ((w, w),)
                s = jax.lax.reduce_window(s, jnp.uint8(0), jax.lax.max, win, (1,) * x.ndim, pads)
            out = jnp.maximum(out, s)
    return out.astype(bool)


def dilate(mask: Any, radius: float, *, ignore: int | None = -1, ndim: int = 2) -> jax.Array:
    """Morphological dilation by the disk {x^2 + y^2 <= r^2} (outside = background).

    Equals ``scipy.ndimage.binary_dilation(mask, disk(radius))``. Pixels equal
    to ``ignore`` (integer masks) count as background for the operation
    and stay ``ignore`` in the output; so do they in :func:`erode`,
    :func:`skeletonize`, :func:`shift` and :func:`boundary_noise`.

    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> dilate(m, 1).astype(int).sum().item()
    5
    """
    r = _checks.check_radius("radius", radius)
    m, fg, valid = _as_mask("mask", mask, ndim, ignore)
    return _out(m, _dilate(fg, r, ndim), valid)


def erode(mask: Any, radius: float, *, ignore: int | None = -1, ndim: int = 2) -> jax.Array:
    """Morphological erosion by a disk, the dual of :func:`dilate`.

    Outside the image counts as foreground, so objects cut by the border are
    not eroded from it (they continue outside). Equals
    ``scipy.ndimage.binary_erosion(mask, disk(radius), border_value=1)``.
    """
    r = _checks.check_radius("radius", radius)
    m, fg, valid = _as_mask("mask", mask, ndim, ignore)
    return _out(m, ~_dilate(~fg, r, ndim), valid)


def _skeleton_host(m: np.ndarray, ndim: int) -> np.ndarray:
    from skimage.morphology import skeletonize as sk

    m = np.array(m, dtype=bool)  # a writable copy: callback buffers are read-only
    flat = m.reshape((-1,) + m.shape[-ndim:])
    out = np.stack([sk(x) if x.any() else np.zeros_like(x) for x in flat]) if flat.shape[0] else flat.copy()
    return out.reshape(m.shape).astype(bool)


def skeletonize(mask: Any, *, ignore: int | None = -1, ndim: int = 2) -> jax.Array:
    """One-pixel-wide medial axis that keeps each component's topology.

    scikit-image's thinning (Zhang's method in 2-D, Lee's in 3-D), applied per
    image. It runs on the host: under ``jit`` it becomes a callback.

    Transition matrix ``[[1, 0], [1-s, s]]`` (:func:`metastructure.ntm.skeleton_matrix`).
    """
    m, fg, valid = _as_mask("mask", mask, ndim, ignore)
    conc = _checks.concrete(fg)
    if conc is not None:
        return _out(m, jnp.asarray(_skeleton_host(conc, ndim)), valid)
    res = jax.ShapeDtypeStruct(m.shape, jnp.bool_)
    out = jax.pure_callback(lambda x: _skeleton_host(x, ndim), res, fg, vmap_method="expand_dims")
    return _out(m, out, valid)


def shift(key: jax.Array, mask: Any, radius: int, *, ignore: int | None = -1, ndim: int = 2) -> jax.Array:
    r"""Move each foreground pixel by an independent uniform offset in {-r..r}^d.

    Targets are clipped at the border; pixels landing on the same place merge
    (so the count can only drop).

    >>> import jax, numpy as np
    >>> m = np.zeros((9, 9), bool); m[4, 4] = True
    >>> y = shift(jax.random.key(0), m, 2)
    >>> int(y.sum()), bool(y[2:7, 2:7].any())
    (1, True)
    """
    r = _checks.check_radius("radius", radius)
    if r != int(r):
        raise ValueError(f"radius of shift must be an integer, got {radius!r}")
    r = int(r)
    m, fg, valid = _as_mask("mask", mask, ndim, ignore)
    spatial = fg.shape[-ndim:]
    batch = fg.shape[:-ndim]
    nb = int(np.prod(batch)) if batch else 1
    flat = fg.reshape((nb,) + spatial)
    off = jax.random.randint(key, (ndim,) + flat.shape, -r, r + 1)
    grids = jnp.meshgrid(*[jnp.arange(s) for s in spatial], indexing="ij")
    idx = jnp.zeros(flat.shape, jnp.int32) + (jnp.arange(nb).reshape((nb,) + (1,) * ndim))
    for a, (g, s) in enumerate(zip(grids, spatial, strict=True)):
        idx = idx * s + jnp.clip(g[None] + off[a], 0, s - 1)
    out = jnp.zeros(flat.size, bool).at[idx.ravel()].max(flat.ravel())
    return _out(m, out.reshape(fg.shape), valid)


def _neighbour_any(x: jax.Array, ndim: int) -> jax.Array:
    """True where some face neighbour (4-connectivity in 2-D) is True; outside: False."""
    out = jnp.zeros_like(x)
    for a in range(x.ndim - ndim, x.ndim):
        out = out | _shift_zero(x, 1, a) | _shift_zero(x, -1, a)
    return out


def boundary_noise(
    key: jax.Array, mask: Any, *, steps: int, p_outer: Any, p_inner: Any = 0.0, ignore: int | None = -1,
    ndim: int = 2,
) -> jax.Array:
    r"""Markov boundary noise: the boundary moves by random local flips, ``steps`` times.

    At each step, every *outer* boundary pixel (background with a foreground face
    neighbour) becomes foreground with probability ``p_outer``, and every *inner*
    boundary pixel (foreground with a background face neighbour) becomes
    background with probability ``p_inner``, independently and at once. With
    ``p_inner = 0`` the mask grows like a random dilation, with ``p_outer = 0`` it
    shrinks like a random erosion; the expected displacement after n steps is
    about ``n * (p_outer - p_inner)`` pixels. Outside the image is neither.

    >>> import jax, numpy as np
    >>> m = np.zeros((9, 9), bool); m[4, 4] = True
    >>> int(boundary_noise(jax.random.key(0), m, steps=1, p_outer=1.0).sum())
    5
    """
    _checks.check_unit_interval("p_outer", p_outer, scalar=True)
    _checks.check_unit_interval("p_inner", p_inner, scalar=True)
    steps = _checks.check_int("steps", steps, minimum=0)
    m, fg0, valid = _as_mask("mask", mask, ndim, ignore)
    po = jnp.asarray(p_outer, jnp.float32)
    pi = jnp.asarray(p_inner, jnp.float32)

    def body(i, fg):
        ko, ki = jax.random.split(jax.random.fold_in(key, i))
        outer = ~fg & _neighbour_any(fg, ndim)
        bg_inside = ~fg
        inner = fg & _neighbour_any(bg_inside, ndim)
        grow = outer & jax.random.bernoulli(ko, po, fg.shape)
        shrink = inner & jax.random.bernoulli(ki, pi, fg.shape)
        return (fg | grow) & ~shrink

    return _out(m, jax.lax.fori_loop(0, int(steps), body, fg0), valid)


# ------------------------------------------------------------------- annotation practice
def _annotated(name: str, key: jax.Array, mask: Any, unlabelled: str, ignore: int | None, ndim: int,
               region: Any) -> jax.Array:
    """``mask`` where ``region(key, spatial, batch)`` (bool, broadcastable to the mask) is True, elsewhere background
    or ``ignore``; the mask's own ignore pixels stay ignore."""
    if unlabelled not in UNLABELLED:
        raise ValueError(f"unlabelled must be one of {UNLABELLED}, got {unlabelled!r}")
    if unlabelled == "ignore" and ignore is None:
        raise ValueError("unlabelled='ignore' needs the value of unlabelled pixels: ignore=None gives none")
    m, fg, valid = _as_mask(name, mask, ndim, ignore)
    batch, spatial = fg.shape[:-ndim], fg.shape[-ndim:]
    labelled = jnp.broadcast_to(region(key, spatial, batch), fg.shape)
    if unlabelled == "background":
        return _out(m, fg & labelled, valid)
    dtype = m.dtype if jnp.issubdtype(m.dtype, jnp.signedinteger) else jnp.int32  # bool / unsigned cannot hold -1
    ig = _checks.check_ignore(ignore, None)
    out = jnp.where(labelled, fg.astype(dtype), jnp.asarray(ig, dtype))
    return jnp.where(valid, out, m.astype(dtype))


def slices(key: jax.Array, mask: Any, spacing: int, *, unlabelled: str = "background", ignore: int | None = -1,
           ndim: int = 2) -> jax.Array:
    r"""Every ``spacing``-th slice fully labelled, the rest unlabelled: how volumes are annotated in practice.

    The slices are planes across the first spatial axis (z of a volume (D, H, W); the rows of an image (H, W)),
    :math:`z \equiv o \pmod k` with the offset o uniform in {0..k-1}, drawn per image. Each pixel is labelled
    with probability exactly 1/k (each z is labelled for one offset in k), whatever the size, but all the pixels
    of a slice together: the labelled region is a set of sheets, independent of the image.

    Unlabelled pixels become:

    * ``"background"`` (the paper's sampling; the default): T = ``ntm.sample_matrix(1/k)``, so a network learns
      the clean fraction field times 1/k and is read at t* = 1/(2k) (Lemma 1);
    * ``"ignore"`` (``ignore``, -1 by default; common practice): the labelled pixels are clean, T = I on them,
      a network learns the clean field itself and is read at 1/2, from k times fewer labels.

    Args:
        key: a ``jax.random`` key (the offsets).
        mask: binary mask (..., H, W) or, with ``ndim=3``, (..., D, H, W): bool or 0/1 integers (and ``ignore``).
        spacing: k >= 1 (1: every slice, the clean mask).
        unlabelled: ``"background"`` or ``"ignore"``.
        ignore: the value of the mask's unlabelled pixels (kept) and, with ``unlabelled="ignore"``, of the new
            ones; None: none (then only ``"background"``).
        ndim: spatial axes (2 or 3).

    Returns:
        The annotation, the mask's shape; its dtype with ``"background"``, with ``"ignore"`` a signed integer
        dtype (the mask's, or int32 for bool and unsigned masks, which cannot hold -1).

    >>> import jax, numpy as np
    >>> y = slices(jax.random.key(0), np.ones((4, 6, 6), bool), 2, unlabelled="ignore", ndim=3)
    >>> sorted(set(y.reshape(4, -1).max(axis=1).tolist())), int((y == 1).sum()) // 36
    ([-1, 1], 2)
    """
    k = _checks.check_int("spacing", spacing, minimum=1)
    ndim = _checks.check_ndim(ndim)

    def region(key, spatial, batch):
        off = jax.random.randint(key, batch + (1,) * ndim, 0, k)
        z = jnp.arange(spatial[0]).reshape((spatial[0],) + (1,) * (ndim - 1))
        return (z - off) % k == 0

    return _annotated("mask", key, mask, unlabelled, ignore, ndim, region)


def _tiles(key: jax.Array, spatial: tuple[int, ...], batch: tuple[int, ...], fraction: Any, size: int) -> jax.Array:
    """Cubes of side ``size`` on a grid at a random phase per image, each labelled with probability ``fraction``."""
    nb = math.prod(batch)
    kp, kt = jax.random.split(key)
    phase = jax.random.randint(kp, (len(spatial), nb), 0, size)
    counts = tuple(-(-(n + size - 1) // size) for n in spatial)  # tiles that a phase in 0..size-1 can touch
    on = jax.random.bernoulli(kt, jnp.asarray(fraction, jnp.float32), (nb,) + counts)
    idx = [jnp.arange(nb).reshape((nb,) + (1,) * len(spatial))]
    for a, n in enumerate(spatial):
        shape = [1] * len(spatial)
        shape[a] = n
        idx.append(((jnp.arange(n)[None] + phase[a][:, None]) // size).reshape((nb,) + tuple(shape)))
    return on[tuple(idx)].reshape(batch + spatial)


def blocks(key: jax.Array, mask: Any, fraction: Any, size: int, *, unlabelled: str = "background",
           ignore: int | None = -1, ndim: int = 2) -> jax.Array:
    r"""Random blocks fully labelled, the rest unlabelled: cubes (squares in 2-D) of side ``size``.

    The image is tiled by cubes of side s on a grid shifted by a random phase in {0..s-1} per axis, per image,
    and each cube is labelled with probability ``fraction`` p, independently: each pixel is labelled with
    probability exactly p, in clusters of up to :math:`s^{d}` pixels, independently of the image. T, t* and the
    two semantics of ``unlabelled`` are those of :func:`slices` with 1/k replaced by p; ``size=1`` is
    :func:`scattered`.

    Args:
        key: a ``jax.random`` key.
        mask: binary mask (..., H, W) or, with ``ndim=3``, (..., D, H, W).
        fraction: p in [0, 1] (may be traced).
        size: s >= 1, the blocks' side in pixels.
        unlabelled, ignore, ndim: as in :func:`slices`.

    Returns:
        The annotation, as :func:`slices` returns it.
    """
    _checks.check_unit_interval("fraction", fraction, scalar=True)
    s = _checks.check_int("size", size, minimum=1)
    ndim = _checks.check_ndim(ndim)
    return _annotated("mask", key, mask, unlabelled, ignore, ndim,
                      lambda key, spatial, batch: _tiles(key, spatial, batch, fraction, s))


def scattered(key: jax.Array, mask: Any, fraction: Any, *, unlabelled: str = "background", ignore: int | None = -1,
              ndim: int = 2) -> jax.Array:
    r"""Scattered pixels labelled, each independently with probability ``fraction`` p, the rest unlabelled.

    Unlike :func:`sample`, which keeps a fraction of the *foreground* only (exact counts), the labelled pixels are
    chosen without looking at the mask, foreground and background alike (i.i.d. Bernoulli(p)); with
    ``unlabelled="background"`` the result has the law of ``sample(..., exact=False)``. T, t* and the semantics
    are those of :func:`slices` with 1/k replaced by p.

    Args:
        key: a ``jax.random`` key.
        mask: binary mask (..., H, W) or, with ``ndim=3``, (..., D, H, W).
        fraction: p in [0, 1] (may be traced).
        unlabelled, ignore, ndim: as in :func:`slices`.
    """
    _checks.check_unit_interval("fraction", fraction, scalar=True)
    ndim = _checks.check_ndim(ndim)
    p = jnp.asarray(fraction, jnp.float32)
    return _annotated("mask", key, mask, unlabelled, ignore, ndim,
                      lambda key, spatial, batch: jax.random.bernoulli(key, p, batch + spatial))


# ------------------------------------------------------------ label types as values
def _number(token: str) -> int | float:
    """An int literal as an int (a radius or a step count), anything else as a float."""
    try:
        return int(token)
    except ValueError:
        return float(token)


_REQUIRED = object()  # a parameter without a default


class _Param:
    """A kind of parameter: whether it is a pytree leaf, how a name's token reads, its canonical value, its check,
    how :attr:`LabelNoise.name` prints it and its default (a trailing parameter with one may be left out)."""

    leaf = False
    parse = staticmethod(_number)
    default: Any = _REQUIRED

    @staticmethod
    def canonical(value: Any) -> Any:
        return value

    @staticmethod
    def text(value: Any) -> str:
        return f"{float(value):g}"

    @staticmethod
    def key(value: Any) -> Any:
        """The value equality and hashing compare (concrete: a float)."""
        c = _checks.concrete(value)
        return None if c is None else float(c)


class _Rate(_Param):
    """A rate in [0, 1]: a pytree leaf (traced under ``jit``, batched under ``vmap``)."""

    leaf = True
    parse = staticmethod(float)

    @staticmethod
    def check(kind: str, name: str, value: Any) -> None:
        _checks.check_unit_interval(f"{name} (a {kind} rate)", value, scalar=True)


class _Radius(_Param):
    """A static non-negative radius (it fixes the structuring element)."""

    @staticmethod
    def check(kind: str, name: str, value: Any) -> None:
        _checks.check_radius(name, value)


class _IntRadius(_Radius):
    """A static non-negative integer radius (the offsets of :func:`shift`)."""

    @staticmethod
    def check(kind: str, name: str, value: Any) -> None:
        r = _checks.check_radius(name, value)
        if r != int(r):
            raise ValueError(f"{name} of {kind} must be an integer, got {value!r}")


class _Steps(_Param):
    """A static count of steps, an int >= 0."""

    @staticmethod
    def canonical(value: Any) -> Any:
        """An integral float (stored specs hold every parameter as a float: 2.0) as the int it is."""
        return int(value) if isinstance(value, float) and value.is_integer() else value

    @staticmethod
    def check(kind: str, name: str, value: Any) -> None:
        _checks.check_int(name, value, minimum=0)


class _Spacing(_Steps):
    """A static count >= 1 (a slice spacing, a block's side)."""

    @staticmethod
    def check(kind: str, name: str, value: Any) -> None:
        _checks.check_int(name, value, minimum=1)


#: what the pixels an annotator leaves unlabelled become (:func:`slices`, :func:`blocks`, :func:`scattered`)
UNLABELLED = ("background", "ignore")


class _Unlabelled(_Param):
    """What unlabelled pixels are: ``"background"`` (the default) or ``"ignore"``; static, printed only when not
    the default."""

    default = "background"
    parse = staticmethod(str)

    @staticmethod
    def check(kind: str, name: str, value: Any) -> None:
        if value not in UNLABELLED:
            raise ValueError(f"{name} of {kind!r} must be one of {UNLABELLED}, got {value!r}")

    @staticmethod
    def text(value: Any) -> str:
        return value

    @staticmethod
    def key(value: Any) -> Any:
        return value


_KINDS: dict[str, type[LabelNoise]] = {}  # kind -> its class, filled as each subclass is defined


class _ByKind(type):
    """``LabelNoise(kind, *params, num_classes=None)`` builds the subclass whose ``kind`` that is."""

    def __call__(cls, *args: Any, ndim: int = 2, **kwargs: Any) -> Any:
        ndim = _checks.check_ndim(ndim)
        out = LabelNoise._from_kind(*args, **kwargs) if cls is LabelNoise else super().__call__(*args, **kwargs)
        out.ndim = ndim  # static: the draws' spatial axes (every subclass takes it this one way)
        return out


class LabelNoise(metaclass=_ByKind):
    r"""A label type as a value, one subclass per type: ``Sample(0.1)(key, masks)``.

    The label types of arXiv 2103.11594, Table 1 (theory/README.md, step 5), and
    their parameters; ``kind`` is the first word of ``name`` and what
    ``LabelNoise(kind, *params)`` and :meth:`parse` take:

    * :class:`Clean` (``clean``): no parameter (``num_classes`` optional);
    * :class:`Sample` (``sample``): ratio p (:func:`sample`);
    * :class:`Flip` (``flip``): fg_to_bg f, bg_to_fg b (:func:`flip`);
    * :class:`RandomLabels` (``random``): rate r (:func:`random_labels`);
    * :class:`Dilate` / :class:`Erode` (``dilate`` / ``erode``): radius
      (:func:`dilate`, :func:`erode`);
    * :class:`Skeleton` (``skeleton``): no parameter (:func:`skeletonize`);
    * :class:`Shift` (``shift``): integer radius (:func:`shift`);
    * :class:`BoundaryNoise` (``boundary_noise``): steps, p_outer, p_inner
      (:func:`boundary_noise`);
    * annotation practice, each with a last, optional word ``unlabelled``
      (``background``, the default, or ``ignore``): :class:`Slices` (``slices``):
      spacing k (``"slices 10 ignore"``); :class:`Blocks` (``blocks``): fraction p,
      size s; :class:`Scattered` (``scattered``): fraction p;
    * multi-class, with ``num_classes`` M: :class:`SampleClasses`
      (``sample_classes``): ratio p, the rest ``ignore`` (:func:`sample_classes`);
      :class:`SampleVoid` (``sample_void``): ratio p, the rest class M, void,
      an (M+1)-th output (:attr:`output_classes`);
      :class:`SymmetricFlip` (``symmetric``): rate e,
      T = (1-e) I + e/(M-1) (11^T - I).

    Every instance has ``kind``, ``params`` (as given, also as named attributes:
    ``Flip(0.3, 0.2).fg_to_bg``), ``num_classes`` (None for the binary types),
    ``name`` (``"flip 0.3 0.2"``), ``random`` (each call draws anew),
    ``data_dependent`` (T depends on the masks), ``family`` (CL / RCL / PCL /
    RL), ``output_classes`` (the classes a network trained on it outputs: M,
    M + 1 for void), :meth:`transition` (T) and :meth:`matched_threshold` (t*).
    ``LabelNoise("flip", 0.3, 0.2)`` (a kind and its parameters, ``num_classes=``
    for the multi-class types) builds the same ``Flip(0.3, 0.2)``;
    :meth:`parse` builds one from its name. Equal (and equal hashes) when the
    class, the parameters (as floats) and ``num_classes`` are.

    It is a pytree whose leaves are the rates (p, f, b, r, e, p_outer, p_inner),
    so a jitted function taking it as an argument compiles once per label type and
    is reused for every rate (``train.fit(noise=...)`` does this for fresh draws);
    it works under ``jax.jit`` and ``jax.vmap`` (over keys, or over rates). Radii,
    steps, ``num_classes`` and ``ndim`` are static. Sample, flip and the multi-class
    sampling draw exact counts (``exact=True``); blocks and scattered pixels are
    Bernoulli per block or pixel. Draws use ``ignore=-1``, on images (``ndim=2``, the default) or volumes: every
    constructor, ``LabelNoise(kind, ...)`` and :meth:`parse` take ``ndim=3``, and
    ``Sample(p, ndim=3)(key, m)`` equals ``sample(key, m, p, ndim=3)`` (``ndim``
    is not part of :attr:`name`; it is of equality and the repr).

    >>> import jax, numpy as np
    >>> n = LabelNoise("sample", 0.5)
    >>> type(n).__name__, int(n(jax.random.key(0), np.ones((4, 4), bool)).sum()), n.name
    ('Sample', 8, 'sample 0.5')
    >>> Flip(0.2, 0.1).transition().tolist()
    [[0.9, 0.1], [0.2, 0.8]]
    >>> Sample(0.1).matched_threshold().threshold, RandomLabels(0.3).matched_threshold()
    (0.05, None)
    >>> [LabelNoise.parse(s).family for s in ("clean", "flip 0.3 0.2", "flip 0.3 0.7", "dilate 2")]
    ['CL', 'RCL', 'RL', 'PCL']
    """

    kind: ClassVar[str]
    _PARAMS: ClassVar[tuple[tuple[str, Any], ...]] = ()  # (name, _Rate / _Radius / _IntRadius / _Steps)
    _RANDOM: ClassVar[bool] = False
    _DATA_DEPENDENT: ClassVar[bool] = False
    params: tuple
    num_classes: int | None
    ndim: int = 2  # set by the constructor's ndim= (static)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node_class(cls)
        if "kind" not in vars(cls):
            return
        if cls.kind in _KINDS:
            raise TypeError(f"kind {cls.kind!r} is taken by {_KINDS[cls.kind].__name__}")
        _KINDS[cls.kind] = cls
        for i, (pname, _) in enumerate(cls._PARAMS):
            if pname not in vars(cls):
                setattr(cls, pname, property(lambda self, i=i: self.params[i], doc=f"``params[{i}]``: {pname}."))

    def _set(self, *values: Any, num_classes: int | None = None) -> None:
        """Check and store the parameters (in ``_PARAMS`` order) and ``num_classes``."""
        values = tuple(ptype.canonical(v) for (_, ptype), v in zip(self._PARAMS, values, strict=True))
        for (pname, ptype), v in zip(self._PARAMS, values, strict=True):
            ptype.check(self.kind, pname, v)
        self.params = values
        self.num_classes = num_classes

    @classmethod
    def _of_num_classes(cls, params: tuple, num_classes: Any) -> LabelNoise:
        """The legacy constructor's ``num_classes`` rule; binary types: None or 2."""
        if num_classes is not None and _checks.check_num_classes(num_classes) != 2:
            multi = sorted(k for k, c in _KINDS.items() if issubclass(c, _MultiClass))
            raise ValueError(f"{cls.kind!r} is a binary label type; num_classes={num_classes} is for "
                             f"{', '.join(map(repr, multi))} (or 'clean')")
        return cls(*params)

    @classmethod
    def _from_kind(cls, kind: str, *params: Any, num_classes: int | None = None) -> LabelNoise:
        sub = _KINDS.get(kind) if isinstance(kind, str) else None
        if sub is None:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
        need = sum(t.default is _REQUIRED for _, t in sub._PARAMS)
        if not need <= len(params) <= len(sub._PARAMS):
            n = f"{need} to {len(sub._PARAMS)}" if need < len(sub._PARAMS) else f"{need}"
            raise ValueError(f"{kind!r} takes {n} parameter(s), got {len(params)}: {params}")
        params = params + tuple(t.default for _, t in sub._PARAMS[len(params):])
        return sub._of_num_classes(params, num_classes)

    @classmethod
    def parse(cls, text: str, *, num_classes: int | None = None, ndim: int = 2) -> LabelNoise:
        """The label type whose :attr:`name` is ``text``: the kind, then its parameters, space-separated.

        ``parse(x.name, num_classes=x.num_classes) == x`` for parameters that
        ``name`` prints exactly (6 significant digits). Rates are read as
        floats, radii and steps as ints when written as ints; an integral float
        (``"dilate 2.0"``, ``"shift 2.0"``) is the same label type as the int
        (``"dilate 2"``), and a radius of dilate / erode may be fractional
        (``"dilate 1.5"``: a disk of radius 1.5).

        Args:
            text: e.g. ``"clean"``, ``"sample 0.1"``, ``"flip 0.3 0.3"``,
                ``"dilate 2"``, ``"skeleton"``, ``"boundary_noise 3 0.5 0"``.
            num_classes: M for the multi-class types (``"symmetric 0.9"``,
                ``"sample_classes 0.5"``; optional for ``"clean"``).
            ndim: the draws' spatial axes, 2 (images) or 3 (volumes).

        Raises:
            ValueError: an unknown kind, a wrong number of parameters, a
                parameter that is not a number (``"sample 10%"``, ``"flip 0.3,
                0.3"``) or out of range, ``num_classes`` missing or given to a
                binary type (each message names ``text`` and gives the grammar:
                every kind with its parameters), or a name of another class than
                the one called (``Flip.parse("sample 0.1")``).
            TypeError: ``text`` is not a string.

        >>> LabelNoise.parse("flip 0.3 0.2"), LabelNoise.parse("symmetric 0.9", num_classes=19).name
        (LabelNoise('flip', 0.3, 0.2), 'symmetric 0.9')
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a label type's name (a str), got {text!r}")
        kind, *tokens = text.split() or [""]
        sub = _KINDS.get(kind)
        if sub is None:
            raise ValueError(f"text {text!r}: unknown label type {kind!r}; allowed: {_usage()}")
        names = [pname for pname, _ in sub._PARAMS]
        need = sum(t.default is _REQUIRED for _, t in sub._PARAMS)
        if not need <= len(tokens) <= len(names):
            n = f"{need} to {len(names)}" if need < len(names) else f"{len(names)}"
            raise ValueError(f"text {text!r}: {kind!r} takes {n} parameter(s) "
                             f"({' '.join(names) or 'none'}), got {len(tokens)}; allowed: {_usage()}")
        values = []
        for (pname, ptype), token in zip(sub._PARAMS[:len(tokens)], tokens, strict=True):
            try:
                values.append(ptype.parse(token))
            except ValueError:
                raise ValueError(f"text {text!r}: {pname} of {kind!r} must be a number, got "
                                 f"{token!r}; allowed: {_usage()}") from None
        try:
            out = LabelNoise(kind, *values, num_classes=num_classes, ndim=ndim)
        except (TypeError, ValueError) as e:
            raise ValueError(f"text {text!r}: {e}; allowed: {_usage()}") from e
        if not isinstance(out, cls):
            raise ValueError(f"text {text!r} names a {type(out).__name__}, not a {cls.__name__}")
        return out

    # pytree: the rates are leaves; everything else is static
    def tree_flatten(self) -> tuple[tuple, tuple]:
        """Leaves: the rates; static: radii, steps, ``num_classes`` (and the class, in the treedef)."""
        pairs = list(zip(self._PARAMS, self.params, strict=True))
        return (tuple(v for (_, t), v in pairs if t.leaf),
                (tuple(v for (_, t), v in pairs if not t.leaf), self.num_classes, self.ndim))

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: Any) -> LabelNoise:
        """Rebuild from :meth:`tree_flatten`'s output (no validation: leaves may be traced)."""
        static, num_classes, ndim = aux
        leaves, rest = iter(children), iter(static)
        obj = object.__new__(cls)
        obj.params = tuple(next(leaves) if t.leaf else next(rest) for _, t in cls._PARAMS)
        obj.num_classes = num_classes
        obj.ndim = ndim
        return obj

    def _concrete_params(self, what: str) -> tuple[Any, ...]:
        """The parameters as plain values (rates and radii as floats, words as they are); ``TypeError`` if traced."""
        out = []
        for (_, ptype), v in zip(self._PARAMS, self.params, strict=True):
            c = ptype.key(v)
            if c is None:
                raise TypeError(f"{what} of {type(self).__name__} needs concrete parameters, but they are traced "
                                "(inside jit / vmap): ask outside the transformed function")
            out.append(c)
        return tuple(out)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelNoise):
            return NotImplemented
        return type(self) is type(other) and self._concrete_params("==") == other._concrete_params("==") \
            and self.num_classes == other.num_classes and self.ndim == other.ndim

    def __hash__(self) -> int:
        return hash((type(self), self._concrete_params("hash"), self.num_classes, self.ndim))

    @property
    def random(self) -> bool:
        """True when each call draws anew (sample, flip, random, shift, boundary noise, multi-class)."""
        return self._RANDOM

    @property
    def data_dependent(self) -> bool:
        """True when T depends on the masks (the spatially structured types: dilate, erode, skeleton, shift,
        boundary noise): :meth:`transition` estimates it from them or, for the random ones, is None."""
        return self._DATA_DEPENDENT

    @property
    def output_classes(self) -> int | None:
        """The classes the noisy labels hold, so the outputs a network trained on them needs: ``num_classes``
        (None for the binary types), M + 1 for :class:`SampleVoid` (its void class)."""
        return self.num_classes

    @property
    def family(self) -> str:
        r"""The family of arXiv 2103.11594, Table 1: ``"CL"``, ``"RCL"``, ``"PCL"`` or ``"RL"``.

        * class-conditional types (clean, sample, flip, random, slices, blocks,
          scattered, sample_classes, symmetric), from their T, with the one tolerance
          :data:`metastructure.density.TRANSITION_ATOL` (1e-9): CL when T is the
          identity within it (clean, ``sample 1``, ``flip 0 0``, ``symmetric 0``,
          ``slices 1``, ``sample_classes`` and every annotation with unlabelled =
          ignore, whose T on the labelled pixels is the identity); RL
          when T is singular, rank < M, i.e. an eigenvalue within it of 0; for a
          binary T that eigenvalue is 1 - f - b, tested as :func:`matched_threshold`
          tests it, so RL is exactly where t* is None (random labels; ``sample 0``,
          ``sample 1e-9``; flip with :math:`|1 - f - b| \le 10^{-9}`, e.g.
          ``flip 0.5 0.5``, ``flip 0.3 0.7``; symmetric at :math:`e = (M-1)/M`);
          else RCL (inverted ones, f + b > 1, included);
        * ``sample_void``: CL at p = 1, RL at p = 0, else RCL (its T is
          M x (M+1), so the square test above does not apply);
        * spatially structured types (dilate, erode, skeleton, shift, boundary
          noise): PCL, whatever their parameters.

        Raises:
            TypeError: the rates are traced (inside ``jit`` / ``vmap``): a
                class-conditional family cannot be decided there.
        """
        raise NotImplementedError

    @property
    def name(self) -> str:
        """A readable name: the kind and its parameters (``%g``), e.g. ``"flip 0.3 0.2"``; :meth:`parse` reads it."""
        shown = list(zip(self._PARAMS, self.params, strict=True))
        while shown and shown[-1][0][1].default is not _REQUIRED and shown[-1][1] == shown[-1][0][1].default:
            shown.pop()  # a trailing parameter at its default is left out ("slices 10", not "slices 10 background")
        return " ".join([self.kind, *(ptype.text(p) for (_, ptype), p in shown)])

    def __repr__(self) -> str:
        extra = f", num_classes={self.num_classes}" if self.num_classes is not None else ""
        extra += f", ndim={self.ndim}" if self.ndim != 2 else ""
        return f"LabelNoise({', '.join([repr(self.kind), *map(repr, self.params)])}{extra})"

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """Noisy labels for clean ``labels`` (binary: (..., H, W) masks; multi-class: class maps)."""
        raise NotImplementedError

    def transition(self, *, masks: Any = None) -> np.ndarray | None:
        """T of this label type (rows: true class), float64.

        The class-conditional types have a closed form (:mod:`metastructure.ntm`):
        ``sample_matrix``, ``flip_matrix``, ``random_matrix``,
        ``symmetric_matrix``; clean is the identity, ``sample_classes``
        the identity on the pixels it keeps labelled, and ``sample_void`` the
        M x (M+1) matrix ``[p I | (1-p) 1]`` (its last column: void). Dilation, erosion and
        skeletons change the labels on the boundary or the medial axis, so their
        T depends on the masks: it is ``ntm.estimate(masks, self(None, masks))``
        when ``masks`` (clean binary masks (..., H, W)) are given, else None.
        Shift and boundary noise are random and spatially structured: no closed
        form, None (estimate one draw's: ``ntm.estimate(masks, self(key, masks))``).
        """
        raise NotImplementedError

    def matched_threshold(self, *, masks: Any = None) -> MatchedThreshold | None:
        r"""The threshold t* on a network trained on this label type that recovers the clean boundary.

        * class-conditional types: :func:`metastructure.density.matched_threshold`
          of :meth:`transition`, t* = (1 + b - f)/2, inverted when f + b > 1;
          **None** when f + b = 1 (random labels, flip 0.5/0.5): the labels carry
          no information and no threshold recovers the boundary;
        * dilate / erode / shift / boundary noise: 1/2. The labels are clean
          masks of another shape, so a network learns *their* boundary, the 1/2
          level (Theorem 1: the PCL damage is that shape change, which no
          threshold undoes);
        * skeleton: s/2 with :math:`s = |\text{skeleton}| / |\text{mask}|`, which depends on the masks:
          pass the clean ``masks`` (its T is estimated from them).

        Raises:
            ValueError: a multi-class type, or a skeleton without ``masks``.
        """
        raise NotImplementedError


def _usage() -> str:
    """Every kind with its parameters, for error messages: ``"clean; sample RATIO; ..."``."""
    return "; ".join(" ".join([k, *(p.upper() if t.default is _REQUIRED else f"[{p.upper()}]" for p, t in c._PARAMS)])
                     + (" (num_classes=M)" if issubclass(c, _MultiClass) else "") for k, c in _KINDS.items())


class _ClassConditional(LabelNoise):
    """Class-conditional noise: T does not depend on the image; its family and t* follow from T."""

    @property
    def family(self) -> str:
        """CL (T = I), RL (T singular) or RCL, from :meth:`transition` (see :attr:`LabelNoise.family`)."""
        self._concrete_params("family")
        t = self.transition()
        if np.max(np.abs(t - np.eye(t.shape[0]))) <= TRANSITION_ATOL:
            return "CL"
        if t.shape == (2, 2):  # the very test matched_threshold_or_none makes: RL exactly where it has no t*
            singular = abs(1.0 - t[1, 0] - t[0, 1]) <= TRANSITION_ATOL
        else:
            singular = np.min(np.abs(np.linalg.eigvals(t))) <= TRANSITION_ATOL
        return "RL" if singular else "RCL"

    def matched_threshold(self, *, masks: Any = None) -> MatchedThreshold | None:
        """``density.matched_threshold_or_none(self.transition())`` (binary only); ``masks`` are not needed."""
        if (self.num_classes or 2) != 2:
            raise ValueError(f"matched_threshold is binary; {self!r} is multi-class (use the argmax)")
        return matched_threshold_or_none(self.transition())


class _MultiClass(_ClassConditional):
    """Multi-class types: ``num_classes`` is required; no binary t*."""

    @classmethod
    def _of_num_classes(cls, params: tuple, num_classes: Any) -> LabelNoise:
        if num_classes is None:
            raise ValueError(f"{cls.kind!r} needs num_classes")
        return cls(*params, num_classes=num_classes)

    def matched_threshold(self, *, masks: Any = None) -> MatchedThreshold | None:
        """Always raises ``ValueError``: t* is binary; a multi-class network is read by its argmax."""
        raise ValueError(f"matched_threshold is binary; {self!r} is multi-class (use the argmax)")


class _Structured(LabelNoise):
    """Spatially structured noise (PCL): the boundary moves, so T depends on the masks."""

    _DATA_DEPENDENT = True

    @property
    def family(self) -> str:
        """Always ``"PCL"``."""
        return "PCL"

    def transition(self, *, masks: Any = None) -> np.ndarray | None:
        """``ntm.estimate(masks, self(None, masks))`` for clean binary ``masks``; None without them."""
        if masks is None:
            return None
        return ntm.estimate(masks, np.asarray(self(None, masks)))

    def matched_threshold(self, *, masks: Any = None) -> MatchedThreshold | None:
        """``MatchedThreshold(0.5, False)``: the labels are masks of another shape, learnt at their 1/2 level."""
        return MatchedThreshold(0.5, False)


class Clean(_ClassConditional):
    """The clean labels themselves: T = I (binary, or M x M with ``num_classes``); family CL.

    Args:
        num_classes: M, or None (binary; as a label type of a multi-class
            network, the identity of any size).
    """

    kind = "clean"

    def __init__(self, *, num_classes: int | None = None):
        self._set(num_classes=None if num_classes is None else _checks.check_num_classes(num_classes))

    @classmethod
    def _of_num_classes(cls, params: tuple, num_classes: Any) -> LabelNoise:
        return cls(num_classes=num_classes)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``labels`` unchanged (as a JAX array); ``key`` is not used."""
        return jnp.asarray(labels)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """The identity, ``num_classes`` x ``num_classes`` (2 x 2 when None)."""
        return np.eye(self.num_classes or 2)


class Sample(_ClassConditional):
    """Sparse labels: keep a fraction ``ratio`` of the foreground (:func:`sample`); T = ``ntm.sample_matrix``.

    RCL for 0 < ratio < 1; CL at 1; RL at 0 (no foreground left).
    """

    kind = "sample"
    _PARAMS = (("ratio", _Rate),)
    _RANDOM = True

    def __init__(self, ratio: Any):
        self._set(ratio)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``sample(key, labels, ratio)``."""
        return sample(key, labels, self.params[0], ndim=self.ndim)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """``ntm.sample_matrix(ratio)``: ``[[1, 0], [1-p, p]]``."""
        return ntm.sample_matrix(float(self.params[0]))


class Flip(_ClassConditional):
    """Flip a fraction f of the foreground and b of the background (:func:`flip`); T = ``ntm.flip_matrix``.

    RCL (inverted when f + b > 1); CL at f = b = 0; RL at f + b = 1.
    """

    kind = "flip"
    _PARAMS = (("fg_to_bg", _Rate), ("bg_to_fg", _Rate))
    _RANDOM = True

    def __init__(self, fg_to_bg: Any, bg_to_fg: Any):
        self._set(fg_to_bg, bg_to_fg)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``flip(key, labels, fg_to_bg, bg_to_fg)``."""
        return flip(key, labels, self.params[0], self.params[1], ndim=self.ndim)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """``ntm.flip_matrix(f, b)``: ``[[1-b, b], [f, 1-f]]``."""
        return ntm.flip_matrix(float(self.params[0]), float(self.params[1]))


class RandomLabels(_ClassConditional):
    """Labels independent of the image: i.i.d. Bernoulli(``rate``) (:func:`random_labels`); rank-1 T, RL.

    Ignore pixels (-1) of the clean labels stay ignore.
    """

    kind = "random"
    _PARAMS = (("rate", _Rate),)
    _RANDOM = True

    def __init__(self, rate: Any):
        self._set(rate)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``random_labels(key, labels.shape, rate)`` in the labels' dtype, their ignore pixels kept."""
        m, _, valid = _as_mask("labels", labels, self.ndim, -1)
        return _out(m, random_labels(key, m.shape, self.params[0]), valid)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """``ntm.random_matrix(rate)``: every row ``[1-r, r]``."""
        return ntm.random_matrix(float(self.params[0]))


class Dilate(_Structured):
    """Labels dilated by a disk of ``radius`` (:func:`dilate`); PCL, t* = 1/2."""

    kind = "dilate"
    _PARAMS = (("radius", _Radius),)

    def __init__(self, radius: float):
        self._set(radius)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``dilate(labels, radius)``; ``key`` is not used."""
        return dilate(labels, self.params[0], ndim=self.ndim)


class Erode(_Structured):
    """Labels eroded by a disk of ``radius`` (:func:`erode`); PCL, t* = 1/2."""

    kind = "erode"
    _PARAMS = (("radius", _Radius),)

    def __init__(self, radius: float):
        self._set(radius)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``erode(labels, radius)``; ``key`` is not used."""
        return erode(labels, self.params[0], ndim=self.ndim)


class Skeleton(_Structured):
    """Skeleton labels (:func:`skeletonize`); PCL, T = ``ntm.skeleton_matrix``, t* = s/2 (from the masks)."""

    kind = "skeleton"

    def __init__(self):
        self._set()

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``skeletonize(labels)``; ``key`` is not used."""
        return skeletonize(labels, ndim=self.ndim)

    def matched_threshold(self, *, masks: Any = None) -> MatchedThreshold | None:
        """s/2, from the T estimated on the clean ``masks``; ``ValueError`` without them."""
        t = self.transition(masks=masks)
        if t is None:
            raise ValueError(f"the t* of {self.kind!r} labels depends on the masks (s/2 with s the kept fraction): "
                             "pass the clean masks, or evaluate with its transition "
                             "(ntm.skeleton_matrix(masks, skeletons))")
        return matched_threshold_or_none(t)


class Shift(_Structured):
    """Each foreground pixel moved by a uniform offset in {-r..r}^2 (:func:`shift`); PCL, t* = 1/2."""

    kind = "shift"
    _PARAMS = (("radius", _IntRadius),)
    _RANDOM = True

    def __init__(self, radius: int):
        self._set(radius)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``shift(key, labels, radius)``."""
        return shift(key, labels, self.params[0], ndim=self.ndim)

    def transition(self, *, masks: Any = None) -> None:
        """None: random and spatially structured, T has no closed form (estimate a draw's with ``ntm.estimate``)."""
        return None


class BoundaryNoise(_Structured):
    """Markov boundary noise (:func:`boundary_noise`): ``steps`` rounds of local flips; PCL, t* = 1/2.

    Args:
        steps: rounds (a static int >= 0).
        p_outer: probability that an outer boundary pixel becomes foreground.
        p_inner: probability that an inner boundary pixel becomes background.
    """

    kind = "boundary_noise"
    _PARAMS = (("steps", _Steps), ("p_outer", _Rate), ("p_inner", _Rate))
    _RANDOM = True

    def __init__(self, steps: int, p_outer: Any, p_inner: Any):
        self._set(steps, p_outer, p_inner)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``boundary_noise(key, labels, steps=steps, p_outer=p_outer, p_inner=p_inner)``."""
        steps, p_outer, p_inner = self.params
        return boundary_noise(key, labels, steps=steps, p_outer=p_outer, p_inner=p_inner, ndim=self.ndim)

    def transition(self, *, masks: Any = None) -> None:
        """None: random and spatially structured, T has no closed form (estimate a draw's with ``ntm.estimate``)."""
        return None


class _Annotation(_ClassConditional):
    """Annotation practice: a region chosen without the image is labelled, the rest is background or ignored.

    The region is independent of the mask, so the label type is class-conditional: with unlabelled =
    background T = ``ntm.sample_matrix(p)`` (p: :attr:`labelled_fraction`), RCL, t* = p/2; with unlabelled =
    ignore the labelled pixels keep their class, T = I on them (CL), t* = 1/2. The expected meta-structure is
    Lemma 1's, ``density.expected_fraction_field(D, T)``: p D, or D itself (the fraction field counts labelled
    pixels only).
    """

    _RANDOM = True

    @classmethod
    def _of_num_classes(cls, params: tuple, num_classes: Any) -> LabelNoise:
        if num_classes is not None and _checks.check_num_classes(num_classes) != 2:
            raise ValueError(f"{cls.kind!r} is a binary label type; num_classes={num_classes} is for multi-class types")
        return cls(*params[:-1], unlabelled=params[-1])

    @property
    def labelled_fraction(self) -> Any:
        """p: the probability that a pixel is labelled."""
        raise NotImplementedError

    @property
    def unlabelled(self) -> str:
        """``"background"`` or ``"ignore"``."""
        return self.params[-1]

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """``ntm.sample_matrix(p)`` with unlabelled = background; the identity (on the labelled pixels) with
        unlabelled = ignore."""
        if self.unlabelled == "ignore":
            return np.eye(2)
        return ntm.sample_matrix(float(self.labelled_fraction))

    def unit_counts(self, masks: Any) -> np.ndarray:
        """The foreground pixels of each unit that is labelled or not as a whole, flat int64: each (leading
        index, slice) for :class:`Slices`, each block of the phase-0 grid for :class:`Blocks`, each pixel (its 0
        or 1) for :class:`Scattered`. ``theory.curves.cluster_overlap`` of them is the chance that two labels
        share a unit, the q of independently labelled units (pixels; blocks on that one grid, whose draws
        shift it by a random phase: their q is ``theory.curves.grid_overlap``, the mean over the phases); the q
        of :class:`Slices`, labelled one class per image, is ``theory.curves.lattice_overlap`` of
        :meth:`Slices.class_counts`.

        Raises:
            ValueError: ``masks`` not binary or with fewer than ``ndim`` axes.
        """
        _, fg, _ = _as_mask("masks", masks, self.ndim, -1)
        return self._units(np.asarray(fg)).astype(np.int64).ravel()

    def pair_correlation(self, offsets: Any) -> tuple[np.ndarray, ...]:
        r"""The correlation of two pixels' labelled indicators d apart in one image, over the draws, as a product
        of one factor per spatial axis: ``ndim`` float arrays shaped like ``offsets``, the a-th the factor at
        :math:`d_a` = each offset. Exact for the draws: :class:`Slices` 1 for :math:`d_z \equiv 0 \pmod k`
        and :math:`-1/(k-1)` otherwise (one class of slices labelled per image: covariance p(1-p) within a
        class, :math:`-p^2` between), 1 along the other axes (1 everywhere for k = 1); :class:`Blocks` the tent
        :math:`\max(0, 1 - |d_a|/s)` per axis (the chance that the randomly shifted grid puts both in one
        block, labelled together; different blocks independently); :class:`Scattered` 1 at d = 0 only.
        Pixels of different images are uncorrelated. ``theory.curves.local_design`` sums it over the masks'
        foreground pairs.

        Raises:
            ValueError: ``offsets`` not integers.
        """
        d = np.asarray(offsets)
        if not np.issubdtype(d.dtype, np.integer):
            raise ValueError(f"offsets must be integers, got dtype {d.dtype}")
        return self._correlation(d)


class Slices(_Annotation):
    """Every k-th slice fully labelled (:func:`slices`): planes across z of a volume, rows of an image.

    Args:
        spacing: k >= 1 (static); p = 1/k.
        unlabelled: ``"background"`` (default) or ``"ignore"``. Its name: ``"slices 10"``,
            ``"slices 10 ignore"``.
    """

    kind = "slices"
    _PARAMS = (("spacing", _Spacing), ("unlabelled", _Unlabelled))

    def __init__(self, spacing: int, *, unlabelled: str = "background"):
        self._set(spacing, unlabelled)

    @property
    def labelled_fraction(self) -> float:
        """1/k."""
        return 1.0 / self.params[0]

    def _units(self, fg: np.ndarray) -> np.ndarray:
        return fg.sum(axis=tuple(range(fg.ndim - self.ndim + 1, fg.ndim)))

    def _correlation(self, d: np.ndarray) -> tuple[np.ndarray, ...]:
        k = self.params[0]
        z = np.ones(d.shape) if k == 1 else np.where(d % k == 0, 1.0, -1.0 / (k - 1))
        return (z,) + tuple(np.ones(d.shape) for _ in range(self.ndim - 1))

    def class_counts(self, masks: Any) -> np.ndarray:
        """The foreground pixels of each image's k classes of slices labelled together, (images, k) int64: class
        r holds the slices z = r, r + k, r + 2k, ... of one image (leading index), exactly one class of each
        image is labelled, at its random offset; classes past the image's depth hold 0.
        ``theory.curves.lattice_overlap`` of them is the q of these labels.

        Raises:
            ValueError: ``masks`` not binary or with fewer than ``ndim`` axes.
        """
        _, fg, _ = _as_mask("masks", masks, self.ndim, -1)
        k = self.params[0]
        per = self._units(np.asarray(fg)).astype(np.int64)  # (..., depth)
        per = per.reshape(-1, per.shape[-1])
        depth = per.shape[1]
        per = np.pad(per, ((0, 0), (0, -depth % k)))  # whole rounds of k slices
        return per.reshape(per.shape[0], -1, k).sum(axis=1)

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``slices(key, labels, spacing, unlabelled=unlabelled)``."""
        return slices(key, labels, self.params[0], unlabelled=self.unlabelled, ndim=self.ndim)


class Blocks(_Annotation):
    """Random blocks of side ``size`` fully labelled (:func:`blocks`), each with probability ``fraction``.

    Args:
        fraction: p (a rate, traced under ``jit``).
        size: the blocks' side s >= 1 (static).
        unlabelled: ``"background"`` (default) or ``"ignore"``. Its name: ``"blocks 0.1 8 ignore"``.
    """

    kind = "blocks"
    _PARAMS = (("fraction", _Rate), ("size", _Spacing), ("unlabelled", _Unlabelled))

    def __init__(self, fraction: Any, size: int, *, unlabelled: str = "background"):
        self._set(fraction, size, unlabelled)

    @property
    def labelled_fraction(self) -> Any:
        """p."""
        return self.params[0]

    def _units(self, fg: np.ndarray) -> np.ndarray:
        size, nd = self.params[1], self.ndim
        spatial = fg.shape[fg.ndim - nd:]
        pad = [(0, 0)] * (fg.ndim - nd) + [(0, -n % size) for n in spatial]
        x = np.pad(fg, pad)
        shape = x.shape[:fg.ndim - nd] + sum(((n // size, size) for n in x.shape[fg.ndim - nd:]), ())
        return x.reshape(shape).sum(axis=tuple(range(fg.ndim - nd + 1, len(shape), 2)))

    def _correlation(self, d: np.ndarray) -> tuple[np.ndarray, ...]:
        tent = np.maximum(0.0, 1.0 - np.abs(d) / self.params[1])
        return tuple(tent for _ in range(self.ndim))

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``blocks(key, labels, fraction, size, unlabelled=unlabelled)``."""
        return blocks(key, labels, self.params[0], self.params[1], unlabelled=self.unlabelled, ndim=self.ndim)


class Scattered(_Annotation):
    """Scattered pixels labelled, each with probability ``fraction`` (:func:`scattered`).

    Args:
        fraction: p (a rate, traced under ``jit``).
        unlabelled: ``"background"`` (default) or ``"ignore"``. Its name: ``"scattered 0.1 ignore"``.
    """

    kind = "scattered"
    _PARAMS = (("fraction", _Rate), ("unlabelled", _Unlabelled))

    def __init__(self, fraction: Any, *, unlabelled: str = "background"):
        self._set(fraction, unlabelled)

    @property
    def labelled_fraction(self) -> Any:
        """p."""
        return self.params[0]

    def _units(self, fg: np.ndarray) -> np.ndarray:
        return fg

    def _correlation(self, d: np.ndarray) -> tuple[np.ndarray, ...]:
        one = (d == 0).astype(float)
        return tuple(one for _ in range(self.ndim))

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``scattered(key, labels, fraction, unlabelled=unlabelled)``."""
        return scattered(key, labels, self.params[0], unlabelled=self.unlabelled, ndim=self.ndim)


class SampleClasses(_MultiClass):
    """Multi-class sparse labels: keep a fraction ``ratio`` of every class, the rest ``ignore``
    (:func:`sample_classes`); T = I on the labelled pixels, CL."""

    kind = "sample_classes"
    _PARAMS = (("ratio", _Rate),)
    _RANDOM = True

    def __init__(self, ratio: Any, *, num_classes: int):
        self._set(ratio, num_classes=_checks.check_num_classes(num_classes))

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``sample_classes(key, labels, ratio, num_classes=num_classes)``."""
        return sample_classes(key, labels, self.params[0], num_classes=self.num_classes, ndim=self.ndim)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """The M x M identity: the kept pixels keep their class (the others are ignored)."""
        return np.eye(self.num_classes)


class SampleVoid(_MultiClass):
    r"""Multi-class sparse labels as an annotation tool stores them: keep a fraction ``ratio`` of every
    class, give the rest class M, *void* (:func:`sample_classes` with ``fill=M``).

    The labels hold M + 1 classes (:attr:`output_classes`), so T is M x (M + 1):
    :math:`T = [\,p I \;|\; (1 - p)\mathbf{1}\,]`, the class kept with
    probability p, void otherwise. A network trained on it outputs
    :math:`E[F^*] = T^\top y`: p on the true class, 1 - p on void, so its plain
    argmax is void wherever p < 1/2, while the least-squares inverse of
    Theorem 2 (:math:`F = (T^\top)^{+} E[F^*]`, what
    :func:`metastructure.metrics.evaluate` applies) is the argmax over the M
    real classes. The multi-class analogue of binary :class:`Sample` (unlabelled
    = background): RCL for 0 < p < 1, CL at p = 1, RL at p = 0.
    """

    kind = "sample_void"
    _PARAMS = (("ratio", _Rate),)
    _RANDOM = True

    def __init__(self, ratio: Any, *, num_classes: int):
        self._set(ratio, num_classes=_checks.check_num_classes(num_classes))

    @property
    def output_classes(self) -> int:
        """M + 1: the M classes and void (class M)."""
        return self.num_classes + 1

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``sample_classes(key, labels, ratio, num_classes=M, fill=M)``: void is class M."""
        return sample_classes(key, labels, self.params[0], num_classes=self.num_classes, fill=self.num_classes,
                              ndim=self.ndim)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """The M x (M + 1) matrix ``[p I | (1 - p) 1]`` (rows: true class; the last column: void)."""
        p, m = float(self.params[0]), self.num_classes
        return np.concatenate([p * np.eye(m), np.full((m, 1), 1.0 - p)], axis=1)

    @property
    def family(self) -> str:
        """CL at p = 1 (T = [I | 0]), RL at p = 0 (every pixel void), else RCL; the one tolerance
        :data:`metastructure.density.TRANSITION_ATOL`."""
        (p,) = self._concrete_params("family")
        if abs(1.0 - p) <= TRANSITION_ATOL:
            return "CL"
        return "RL" if p <= TRANSITION_ATOL else "RCL"


class SymmetricFlip(_MultiClass):
    r"""Symmetric M-class flip with rate e: T = ``ntm.symmetric_matrix(e, M)`` (:func:`corrupt` draws it).

    RCL; CL at e = 0; RL at e = (M-1)/M (uniform random labels).
    """

    kind = "symmetric"
    _PARAMS = (("rate", _Rate),)
    _RANDOM = True

    def __init__(self, rate: Any, *, num_classes: int):
        self._set(rate, num_classes=_checks.check_num_classes(num_classes))

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """``corrupt(key, labels, T)`` with T built in ``jnp`` (the rate may be traced)."""
        e = jnp.asarray(self.params[0], jnp.float32)  # traced under jit: the closed form of ntm.symmetric_matrix
        m = self.num_classes
        t = (1 - e) * jnp.eye(m) + e / (m - 1) * (1 - jnp.eye(m))
        return corrupt(key, labels, t)

    def transition(self, *, masks: Any = None) -> np.ndarray:
        """``ntm.symmetric_matrix(rate, num_classes)``."""
        return ntm.symmetric_matrix(float(self.params[0]), self.num_classes)
