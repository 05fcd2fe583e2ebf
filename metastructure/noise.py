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
* :func:`sample_classes` keeps a fraction of every class (rest -> ignore).

Spatially structured (PCL, the boundary moves): :func:`dilate`, :func:`erode`,
:func:`skeletonize`, :func:`shift`, :func:`boundary_noise`.
Independent of the image (RL): :func:`random_labels`.

A label type as a value (a pytree, for jitted training with fresh draws):
:class:`LabelNoise`.

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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, ntm
from .density import MatchedThreshold, matched_threshold_or_none

__all__ = [
    "LabelNoise",
    "boundary_noise",
    "corrupt",
    "dilate",
    "disk",
    "erode",
    "flip",
    "random_labels",
    "sample",
    "sample_classes",
    "shift",
    "skeletonize",
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
    rank = jnp.argsort(order, axis=-1, stable=True)
    keep = flat & (rank < k[..., None])
    return keep.reshape(sel.shape)


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
    """The structuring element {t : |t|^2 <= r^2} (a ball in 3-D), as bool numpy.

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
    n = int(math.floor(r))
    x = m.astype(jnp.uint8)
    out = jnp.zeros_like(x)
    outer = [(0,)] if ndim == 2 else [(dz,) for dz in range(-n, n + 1)]
    for (dz,) in outer:
        for dy in range(-n, n + 1):
            rest = r * r - dy * dy - (dz * dz if ndim == 3 else 0)
            if rest < 0:
                continue
            w = math.isqrt(int(math.floor(rest)))  # largest w with w^2 <= rest
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
    for a, (g, s) in enumerate(zip(grids, spatial)):
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


# ------------------------------------------------------------ label types as values
_RANDOM_KINDS = ("sample", "flip", "random", "sample_classes", "symmetric")
_DATA_DEPENDENT = ("dilate", "erode", "skeleton")  # T depends on the masks: estimated from them
_MULTICLASS = ("sample_classes", "symmetric")
_NPARAMS = {"clean": 0, "sample": 1, "flip": 2, "random": 1, "dilate": 1, "erode": 1, "skeleton": 0,
            "sample_classes": 1, "symmetric": 1}


@jax.tree_util.register_pytree_node_class
class LabelNoise:
    r"""A label type as a value: ``LabelNoise("sample", 0.1)(key, masks)``.

    Kinds and their parameters (the label types of arXiv 2103.11594, Table 1:
    CL, RCL, PCL, RL; theory/README.md, step 5):

    * ``"clean"``; ``"sample"`` (ratio p); ``"flip"`` (f, b); ``"random"`` (rate r);
    * ``"dilate"`` / ``"erode"`` (radius r); ``"skeleton"``;
    * multi-class (``num_classes`` M): ``"sample_classes"`` (ratio p, the rest
      ``ignore``) and ``"symmetric"`` (rate e: T = (1-e) I + e/(M-1) (11^T - I)).

    It is a pytree whose leaves are the rates of the random kinds, so a jitted
    function taking it as an argument compiles once per kind and is reused for
    every rate (``train.fit(noise=...)`` does this for fresh draws). Radii and
    ``num_classes`` are static. Draws are exact-count (``exact=True``).

    What it implies for a network trained on it: :meth:`transition` (T, from
    :mod:`metastructure.ntm`'s closed forms) and :meth:`matched_threshold` (the
    t* that recovers the clean boundary, or None where none exists).

    >>> import jax, numpy as np
    >>> n = LabelNoise("sample", 0.5)
    >>> int(n(jax.random.key(0), np.ones((4, 4), bool)).sum()), n.name
    (8, 'sample 0.5')
    >>> LabelNoise("flip", 0.2, 0.1).transition().tolist()
    [[0.9, 0.1], [0.2, 0.8]]
    >>> LabelNoise("sample", 0.1).matched_threshold().threshold, LabelNoise("random", 0.3).matched_threshold()
    (0.05, None)
    """

    def __init__(self, kind: str, *params: Any, num_classes: int | None = None):
        if kind not in _NPARAMS:
            raise ValueError(f"kind must be one of {sorted(_NPARAMS)}, got {kind!r}")
        if len(params) != _NPARAMS[kind]:
            raise ValueError(f"{kind!r} takes {_NPARAMS[kind]} parameter(s), got {len(params)}: {params}")
        if kind in _MULTICLASS and num_classes is None:
            raise ValueError(f"{kind!r} needs num_classes")
        if num_classes is not None:
            num_classes = _checks.check_num_classes(num_classes)
            if kind not in _MULTICLASS and kind != "clean" and num_classes != 2:
                raise ValueError(f"{kind!r} is a binary label type; num_classes={num_classes} is for "
                                 f"{', '.join(map(repr, _MULTICLASS))} (or 'clean')")
        if kind in ("dilate", "erode"):
            _checks.check_radius("radius", params[0])
        else:
            for p in params:
                _checks.check_unit_interval(f"{kind} rate", p, scalar=True)
        self.kind = kind
        self.params = tuple(params)
        self.num_classes = num_classes

    # pytree: rates of random kinds are leaves; everything else is static
    def tree_flatten(self):
        """Leaves: the rates of the random kinds; static: kind, radii, ``num_classes``."""
        if self.kind in _RANDOM_KINDS:
            return self.params, (self.kind, None, self.num_classes)
        return (), (self.kind, self.params, self.num_classes)

    @classmethod
    def tree_unflatten(cls, aux, children):
        """Rebuild from :meth:`tree_flatten`'s output (no validation: leaves may be traced)."""
        kind, static, m = aux
        obj = object.__new__(cls)
        obj.kind, obj.params, obj.num_classes = kind, tuple(children) if static is None else static, m
        return obj

    @property
    def random(self) -> bool:
        """True when each call draws anew (sample, flip, random, multi-class)."""
        return self.kind in _RANDOM_KINDS

    @property
    def data_dependent(self) -> bool:
        """True when T depends on the masks (dilate, erode, skeleton): :meth:`transition` needs them."""
        return self.kind in _DATA_DEPENDENT

    @property
    def name(self) -> str:
        """A readable name: the kind and its parameters, e.g. ``"flip 0.3 0.2"``."""
        return " ".join([self.kind, *(f"{float(p):g}" for p in self.params)])

    def __repr__(self) -> str:
        extra = f", num_classes={self.num_classes}" if self.num_classes is not None else ""
        return f"LabelNoise({', '.join([repr(self.kind), *map(repr, self.params)])}{extra})"

    def __call__(self, key: jax.Array, labels: Any) -> jax.Array:
        """Noisy labels for clean ``labels`` (binary: (..., H, W) masks; multi-class: class maps)."""
        k, p = self.kind, self.params
        if k == "clean":
            return jnp.asarray(labels)
        if k == "sample":
            return sample(key, labels, p[0])
        if k == "flip":
            return flip(key, labels, p[0], p[1])
        if k == "random":
            m, _, valid = _as_mask("labels", labels, 2, -1)
            return _out(m, random_labels(key, m.shape, p[0]), valid)
        if k == "dilate":
            return dilate(labels, p[0])
        if k == "erode":
            return erode(labels, p[0])
        if k == "skeleton":
            return skeletonize(labels)
        m = self.num_classes
        if k == "sample_classes":
            return sample_classes(key, labels, p[0], num_classes=m)
        e = jnp.asarray(p[0], jnp.float32)  # traced under jit: the closed form of ntm.symmetric_matrix, in jnp
        t = (1 - e) * jnp.eye(m) + e / (m - 1) * (1 - jnp.eye(m))
        return corrupt(key, labels, t)

    def transition(self, *, masks: Any = None) -> np.ndarray | None:
        """T of this label type (rows: true class), float64.

        The class-conditional kinds have a closed form (:mod:`metastructure.ntm`):
        ``sample_matrix``, ``flip_matrix``, ``random_matrix``,
        ``symmetric_matrix``; clean is the identity, and ``"sample_classes"``
        the identity on the pixels it keeps labelled. Dilation, erosion and
        skeletons change the labels on the boundary or the medial axis, so their
        T depends on the masks: it is ``ntm.estimate(masks, self(None, masks))``
        when ``masks`` (clean binary masks (..., H, W)) are given, else None.
        """
        k, p = self.kind, [float(v) for v in self.params]
        if k in _DATA_DEPENDENT:
            if masks is None:
                return None
            return ntm.estimate(masks, np.asarray(self(None, masks)))
        if k == "clean":
            return np.eye(self.num_classes or 2)
        if k == "sample":
            return ntm.sample_matrix(p[0])
        if k == "flip":
            return ntm.flip_matrix(p[0], p[1])
        if k == "random":
            return ntm.random_matrix(p[0])
        if k == "symmetric":
            return ntm.symmetric_matrix(p[0], self.num_classes)
        return np.eye(self.num_classes)  # sample_classes: on the labelled (non-ignored) pixels

    def matched_threshold(self, *, masks: Any = None) -> MatchedThreshold | None:
        r"""The threshold t* on a network trained on this label type that recovers the clean boundary.

        * class-conditional kinds: :func:`metastructure.density.matched_threshold`
          of :meth:`transition`, t* = (1 + b - f)/2, inverted when f + b > 1;
          **None** when f + b = 1 (random labels, flip 0.5/0.5): the labels carry
          no information and no threshold recovers the boundary;
        * dilate / erode: 1/2. The labels are clean masks of another shape, so a
          network learns *their* boundary, the 1/2 level (Theorem 1: the PCL
          damage is that shape change, which no threshold undoes);
        * skeleton: s/2 with s = |skeleton| / |mask|, which depends on the masks:
          pass the clean ``masks`` (its T is estimated from them).

        Raises:
            ValueError: a multi-class kind, or a skeleton without ``masks``.
        """
        if self.kind in _MULTICLASS or (self.num_classes or 2) != 2:
            raise ValueError(f"matched_threshold is binary; {self!r} is multi-class (use the argmax)")
        if self.kind in ("dilate", "erode"):
            return MatchedThreshold(0.5, False)
        t = self.transition(masks=masks)
        if t is None:
            raise ValueError(f"the t* of {self.kind!r} labels depends on the masks (s/2 with s the kept fraction): "
                             "pass the clean masks, or evaluate with its transition "
                             "(ntm.skeleton_matrix(masks, skeletons))")
        return matched_threshold_or_none(t)
