r"""Meta-structure of a label map: kernel density fields of each class.

The pixels that carry label :math:`c` form a point pattern; its meta-structure is
the spatial density of that pattern, estimated with a kernel :math:`K_h`:

* fraction field (border-correct normalised convolution; ignore pixels excluded
  from numerator and denominator)

  .. math:: D_c(x) = \frac{\sum_y K_h(x-y)\,[\ell(y)=c]\,v(y)}{\sum_y K_h(x-y)\,v(y)}

  where :math:`v(y) = 1` for labelled pixels inside the image and 0 for ignore
  pixels. :math:`D_c \in [0, 1]` and :math:`\sum_c D_c = 1`.

* intensity field (the paper's :math:`f_c`), a probability mass over pixels:
  :math:`f_c(x) = D_c(x) / \sum_{x'} D_c(x')`. Away from the border
  :math:`\sum_{x'} D_c(x') \approx N_c`, so this is the classic
  :math:`\sum_y K_h(x-y)[\ell(y)=c] / N_c`; thinning the point pattern leaves it
  unchanged in expectation.

Lemma 1: for class-conditional noise with transition matrix :math:`T`,
:math:`E[D^*_m] = \sum_j T_{jm} D_j` (binary: :math:`b + (1-f-b) D`), so the clean
boundary :math:`\{D = 1/2\}` is the noisy level set :math:`\{E[D^*] = t^*\}`
with :math:`t^* = (1 + b - f)/2` (:func:`matched_threshold`).

Kernels (``bandwidth`` in pixels):

* ``"gaussian"``: :math:`\exp(-|t|^2 / 2\sigma^2)`, ``bandwidth`` = :math:`\sigma`,
  truncated at radius ``int(4 * sigma + 0.5)`` (scipy.ndimage's default).
* ``"box"`` (the paper's window): a :math:`(2h+1)^d` window, ``bandwidth`` = the
  integer half-width :math:`h`.
* ``"epanechnikov"``: radial :math:`\max(0, 1 - |t|^2/h^2)`, support radius ``h``.

How it is computed, and how exact it is: every kernel is applied as a linear,
zero-padded convolution. Separable kernels (gaussian, box) are applied one axis at
a time, as a dense Toeplitz matrix product when the axis is short (at most
:data:`DENSE_MAX` pixels; a matmul is the fastest primitive of XLA on CPU and its
cost does not depend on the bandwidth) and as a zero-padded real FFT otherwise;
the radial Epanechnikov kernel goes through an N-D FFT. The border denominator of
a map without ignore pixels depends only on the shape, and is computed once on
the host in float64 and cached. Arithmetic is float32: fields agree with a float64
normalised convolution by ``scipy.ndimage`` to within :data:`ACCURACY` (absolute),
which the tests check at every pixel, borders included.

Where no labelled pixel is within reach of the kernel (the labelled kernel mass
is below ``1e-6`` of the most kernel mass any pixel has inside the image), the
field is undefined and is NaN. A bandwidth far beyond the image is fine: the
field tends to the image's global class fraction. The Epanechnikov footprint is
clipped to the offsets that meet the image, so its memory follows the image;
its normalisation is a lattice sum in O(h^(ndim - 1)) operations, and gaussian
taps number 8h + 1 (one axis).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal

from . import _checks

__all__ = [
    "ACCURACY",
    "DENSE_MAX",
    "KERNELS",
    "MatchedThreshold",
    "TRANSITION_ATOL",
    "expected_fraction_field",
    "fraction_field",
    "intensity_field",
    "kernel_weights",
    "matched_threshold",
    "matched_threshold_or_none",
    "partition",
    "sampling_fields",
    "smooth",
]

KERNELS = ("gaussian", "box", "epanechnikov")
#: Axes up to this length are filtered by a dense Toeplitz matmul, longer ones by FFT.
DENSE_MAX = 320
#: Largest absolute difference from a float64 scipy.ndimage oracle that the tests allow.
ACCURACY = 2e-5
#: The one tolerance of the decisions taken on a binary transition matrix T = [[1-b, b], [f, 1-f]]: at
#: :math:`|1 - f - b|` <= TRANSITION_ATOL the noisy labels carry no information, so :func:`matched_threshold` has no t*
#: (:func:`matched_threshold_or_none` gives None) and ``noise.LabelNoise.family`` says "RL"; a label type's family
#: and its t* therefore always agree. ``LabelNoise.family`` also calls T within it of the identity clean ("CL").
TRANSITION_ATOL = 1e-9
_UNDEFINED = 1e-6
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- kernels
def _check_kernel(kernel: str, bandwidth: Any) -> float:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    bw = _checks.check_positive("bandwidth", bandwidth)
    if kernel == "box" and bw != int(bw):
        raise ValueError(f"bandwidth of the box kernel is the integer half-width h, got {bandwidth!r}")
    return bw


@functools.lru_cache(maxsize=128)
def _taps(kernel: str, bandwidth: float) -> np.ndarray:
    """Centred 1-D taps (float64, sum 1) of a separable kernel."""
    if kernel == "gaussian":
        r = int(4.0 * bandwidth + 0.5)
        t = np.arange(-r, r + 1, dtype=np.float64)
        w = np.exp(-0.5 * (t / bandwidth) ** 2)
    elif kernel == "box":
        r = int(bandwidth)
        w = np.ones(2 * r + 1)
    else:  # pragma: no cover - guarded by _check_kernel
        raise ValueError(kernel)
    return w / w.sum()


def _radial_mass(bandwidth: float, ndim: int) -> float:
    r"""Sum of :math:`1 - |t|^2/h^2` over the lattice points of the open ball of radius h, in O(h^{ndim-1}).

    Along the last axis the points with :math:`t^2 \le R` number 2m + 1 with
    m = floor(sqrt(R)) and their squares sum to m(m+1)(2m+1)/3 (a point on the
    sphere has weight 0, so rounding at equality does not matter).
    """
    h2 = bandwidth * bandwidth
    r = int(math.floor(bandwidth))
    ys = np.arange(-r, r + 1, dtype=np.float64)
    outer = [np.zeros(1)] if ndim == 2 else [np.full(1, z * z) for z in ys]
    total = 0.0
    for rest0 in outer:
        rest = rest0 + ys * ys  # squared distance used by the outer axes
        room = h2 - rest
        m = np.floor(np.sqrt(np.maximum(room, 0.0)))
        count, sq = 2 * m + 1, m * (m + 1) * (2 * m + 1) / 3
        total += float(np.sum(np.where(room > 0, count * (1 - rest / h2) - sq / h2, 0.0)))
    return total


@functools.lru_cache(maxsize=32)
def _radial(kernel: str, bandwidth: float, ndim: int, extent: tuple[int, ...] | None = None) -> np.ndarray:
    """The N-D footprint (float64) of a radial kernel, normalised so the whole kernel sums to 1.

    ``extent`` clips it to offsets ``|t_i| <= extent[i]`` (those that can meet
    an image of side ``extent[i] + 1``), so a bandwidth far beyond the image
    costs the image's size, not the kernel's; the clipped footprint keeps the
    whole kernel's normalisation (:func:`_radial_mass`).
    """
    r = int(math.floor(bandwidth))
    ext = (r,) * ndim if extent is None else tuple(min(r, e) for e in extent)
    grids = np.meshgrid(*[np.arange(-e, e + 1, dtype=np.float64) for e in ext], indexing="ij")
    d2 = sum(g * g for g in grids)
    w = np.maximum(0.0, 1.0 - d2 / bandwidth**2)
    if ext == (r,) * ndim:
        return w / w.sum()
    return w / _radial_mass(bandwidth, ndim)


def kernel_weights(kernel: str, bandwidth: float, *, ndim: int = 2) -> np.ndarray:
    """The full N-D kernel footprint that the fields use, normalised to sum 1.

    Args:
        kernel: one of :data:`KERNELS`.
        bandwidth: sigma (gaussian), half-width (box) or support radius
            (epanechnikov), in pixels.
        ndim: number of spatial axes (2 or 3).

    Returns:
        A float64 numpy array of odd side ``2r + 1`` on every axis.

    >>> kernel_weights("box", 1).shape
    (3, 3)
    >>> float(kernel_weights("gaussian", 2.0).sum())
    1.0
    """
    bw = _check_kernel(kernel, bandwidth)
    ndim = _checks.check_ndim(ndim)
    if kernel == "epanechnikov":
        return _radial(kernel, bw, ndim).copy()
    t = _taps(kernel, bw)
    out = t
    for _ in range(ndim - 1):
        out = np.multiply.outer(out, t)
    return out


# ------------------------------------------------------------------ linear filtering
@functools.lru_cache(maxsize=64)
def _toeplitz(n: int, kernel: str, bandwidth: float) -> np.ndarray:
    """(n, n) float32 matrix A with A[i, j] = k(i - j): zero-padded convolution."""
    taps = _taps(kernel, bandwidth)
    r = (len(taps) - 1) // 2
    d = np.subtract.outer(np.arange(n), np.arange(n))
    a = np.where(np.abs(d) <= r, taps[np.clip(d + r, 0, 2 * r)], 0.0)
    return a.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _spectrum_1d(n: int, kernel: str, bandwidth: float) -> tuple[int, np.ndarray]:
    """FFT length m >= n + r and the kernel's rfft, laid out circularly."""
    taps = _taps(kernel, bandwidth)
    r = (len(taps) - 1) // 2
    re = min(r, n - 1)  # taps further than n - 1 never meet the image
    m = scipy.fft.next_fast_len(n + re, real=True)
    kpad = np.zeros(m)
    kpad[: re + 1] = taps[r : r + re + 1]
    if re:
        kpad[m - re :] = taps[r - re : r]
    return m, np.fft.rfft(kpad).astype(np.complex64)


@functools.lru_cache(maxsize=32)
def _spectrum_nd(shape: tuple[int, ...], kernel: str, bandwidth: float) -> tuple[tuple[int, ...], np.ndarray]:
    f = _radial(kernel, bandwidth, len(shape), tuple(n - 1 for n in shape))  # offsets that meet the image
    res = [(k - 1) // 2 for k in f.shape]
    ms = tuple(scipy.fft.next_fast_len(n + re, real=True) for n, re in zip(shape, res, strict=True))
    kpad = np.zeros(ms)
    # place the footprint circularly: offset t goes to index t mod m
    idx = np.ix_(*[np.arange(-re, re + 1) % m for re, m in zip(res, ms, strict=True)])
    kpad[idx] = f
    return ms, np.fft.rfftn(kpad).astype(np.complex64)


def _filter_axis(x: jax.Array, axis: int, kernel: str, bandwidth: float) -> jax.Array:
    n = x.shape[axis]
    if n <= DENSE_MAX:
        a = jnp.asarray(_toeplitz(n, kernel, bandwidth))
        y = jnp.tensordot(x, a, axes=([axis], [1]), precision=_HIGHEST)  # new axis last
        return jnp.moveaxis(y, -1, axis)
    m, spec = _spectrum_1d(n, kernel, bandwidth)
    shape = [1] * x.ndim
    shape[axis] = spec.shape[0]
    y = jnp.fft.irfft(jnp.fft.rfft(x, n=m, axis=axis) * jnp.asarray(spec).reshape(shape), n=m, axis=axis)
    return jax.lax.slice_in_dim(y, 0, n, axis=axis)


def _smooth(x: jax.Array, kernel: str, bandwidth: float, ndim: int) -> jax.Array:
    """Zero-padded linear convolution of the last ``ndim`` axes with the kernel."""
    x = x.astype(jnp.float32)
    if kernel == "epanechnikov":
        shape = x.shape[-ndim:]
        ms, spec = _spectrum_nd(tuple(shape), kernel, bandwidth)
        axes = tuple(range(-ndim, 0))
        y = jnp.fft.irfftn(jnp.fft.rfftn(x, s=ms, axes=axes) * jnp.asarray(spec), s=ms, axes=axes)
        return y[(Ellipsis,) + tuple(slice(0, n) for n in shape)]
    for ax in range(x.ndim - ndim, x.ndim):
        x = _filter_axis(x, ax, kernel, bandwidth)
    return x


@functools.lru_cache(maxsize=32)
def _border_mass(shape: tuple[int, ...], kernel: str, bandwidth: float) -> np.ndarray:
    """Kernel mass inside the image at every pixel, float64 on the host (cached)."""
    if kernel == "epanechnikov":
        foot = _radial(kernel, bandwidth, len(shape), tuple(n - 1 for n in shape))
        mass = scipy.signal.fftconvolve(np.ones(shape), foot, mode="same")
        return np.clip(mass, 0.0, None).astype(np.float32)
    out = np.ones((), dtype=np.float64)
    for n in shape:
        taps = _taps(kernel, bandwidth)
        r = (len(taps) - 1) // 2
        c = np.concatenate([[0.0], np.cumsum(taps)])  # c[k] = sum of taps[:k]
        i = np.arange(n)
        hi = np.minimum(r, i) + r + 1  # offsets d = i - j in [max(-r, i-n+1), min(r, i)]
        lo = np.maximum(-r, i - n + 1) + r
        out = np.multiply.outer(out, c[hi] - c[lo])
    return out.astype(np.float32)


def smooth(x: Any, bandwidth: float, *, kernel: str = "gaussian", ndim: int = 2) -> jax.Array:
    r"""Zero-padded convolution :math:`(K_h * x)(p) = \sum_q K_h(p - q)\, x(q)`.

    The building block of the fields; not border-corrected. Leading axes are
    batch axes; the last ``ndim`` are spatial.

    Args:
        x: real array (..., H, W) or (..., D, H, W).
        bandwidth: static, in pixels (see the module docstring for each kernel).
        kernel: one of :data:`KERNELS`.
        ndim: number of spatial axes, 2 or 3.

    Returns:
        float32 array of the same shape.

    >>> import numpy as np
    >>> y = smooth(np.ones((5, 5)), 1, kernel="box")
    >>> round(float(y[2, 2]), 6), round(float(y[0, 0]), 6)
    (1.0, 0.444444)
    """
    bw = _check_kernel(kernel, bandwidth)
    ndim = _checks.check_ndim(ndim)
    _checks.check_finite("x", x)
    _checks.check_spatial("x", x, ndim)
    return _smooth_jit(jnp.asarray(x), kernel, bw, ndim)


_smooth_jit = jax.jit(_smooth, static_argnums=(1, 2, 3))


# --------------------------------------------------------------------------- fields
def _has_ignore(labels: jax.Array, ignore: int | None) -> bool:
    return ignore is not None and labels.dtype != jnp.bool_


@functools.partial(jax.jit, static_argnames=("bandwidth", "kernel", "num_classes", "ignore", "ndim"))
def _fields(labels, *, bandwidth, kernel, num_classes, ignore, ndim):
    spatial = tuple(labels.shape[-ndim:])
    if num_classes is None:
        ind = (labels == 1)[None]
    else:
        classes = jnp.arange(num_classes).reshape((num_classes,) + (1,) * labels.ndim)
        ind = labels[None] == classes  # (C, ..., *spatial)
    ind = ind.astype(jnp.float32)
    full = jnp.asarray(_border_mass(spatial, kernel, bandwidth))
    if _has_ignore(labels, ignore):
        valid = labels != ignore
        ind = ind * valid

        def with_ignore(ind):
            both = _smooth(jnp.concatenate([ind, valid[None].astype(jnp.float32)]), kernel, bandwidth, ndim)
            return both[:-1], both[-1]

        def without(ind):
            return _smooth(ind, kernel, bandwidth, ndim), jnp.broadcast_to(full, labels.shape)

        num, den = jax.lax.cond(jnp.all(valid), without, with_ignore, ind)
    else:
        num, den = _smooth(ind, kernel, bandwidth, ndim), jnp.broadcast_to(full, labels.shape)
    frac = jnp.clip(num / jnp.maximum(den, 1e-30), 0.0, 1.0)
    # undefined relative to the most kernel mass any pixel can have inside the image (a bandwidth far beyond the
    # image leaves little mass inside, all of it usable: the field tends to the global fraction)
    frac = jnp.where(den > _UNDEFINED * float(np.max(_border_mass(spatial, kernel, bandwidth))), frac, jnp.nan)
    if num_classes is None:
        return frac[0]
    return jnp.moveaxis(frac, 0, -1)


def _prepare(labels, bandwidth, kernel, num_classes, ignore, ndim):
    bw = _check_kernel(kernel, bandwidth)
    ndim = _checks.check_ndim(ndim)
    _checks.check_spatial("labels", labels, ndim)
    if num_classes is not None:
        num_classes = _checks.check_num_classes(num_classes)
    ignore = _checks.check_ignore(ignore, num_classes)
    labels = jnp.asarray(labels)
    if num_classes is None:
        _checks.check_binary("labels", labels, ignore=ignore)
    else:
        _checks.check_labels("labels", labels, num_classes, ignore=ignore)
    if labels.dtype not in (jnp.bool_,) and not jnp.issubdtype(labels.dtype, jnp.integer):
        labels = labels.astype(jnp.int32)
    return labels, bw, ndim, num_classes, ignore


def fraction_field(
    labels: Any,
    bandwidth: float,
    *,
    kernel: str = "gaussian",
    num_classes: int | None = None,
    ignore: int | None = -1,
    ndim: int = 2,
) -> jax.Array:
    r"""Local fraction of each class, :math:`D_c(x)` (the meta-structure).

    Args:
        labels: binary mask (..., H, W) (bool, or 0/1 with ``ignore``) when
            ``num_classes`` is None; otherwise an integer class map with values in
            ``[0, num_classes)`` or ``ignore``. Leading axes are batch axes; 3-D
            volumes with ``ndim=3``.
        bandwidth: static; sigma for ``"gaussian"``, integer half-width h of the
            (2h+1) window for ``"box"``, support radius for ``"epanechnikov"``.
        kernel: one of :data:`KERNELS`.
        num_classes: None for a binary mask, else the number of classes M.
        ignore: label value excluded from numerator and denominator (None: none).
        ndim: number of spatial axes, 2 or 3.

    Returns:
        float32 (..., H, W) foreground fraction in [0, 1] (binary), or
        (..., H, W, M) class fractions summing to 1 over the last axis. NaN where
        no labelled pixel is within the kernel's reach.

    Raises:
        ValueError: unknown kernel, bandwidth <= 0, non-binary mask, labels out of
            range (value checks run on concrete inputs, not under ``jit``).

    >>> import numpy as np
    >>> m = np.zeros((32, 32), bool); m[:, :16] = True
    >>> d = fraction_field(m, 2.0)
    >>> round(float(d[16, 15]), 3) > 0.5 > round(float(d[16, 16]), 3)
    True
    >>> bool(abs(float(fraction_field(np.ones((8, 8), int), 3.0)[0, 0]) - 1) < 1e-6)
    True
    """
    labels, bw, ndim, num_classes, ignore = _prepare(labels, bandwidth, kernel, num_classes, ignore, ndim)
    return _fields(labels, bandwidth=bw, kernel=kernel, num_classes=num_classes, ignore=ignore, ndim=ndim)


def intensity_field(
    labels: Any,
    bandwidth: float,
    *,
    kernel: str = "gaussian",
    num_classes: int | None = None,
    ignore: int | None = -1,
    ndim: int = 2,
) -> jax.Array:
    r"""The paper's :math:`f_c`: the class's density as a probability mass over pixels.

    :math:`f_c(x) = D_c(x) / \sum_{x'} D_c(x')` with :math:`D_c` from
    :func:`fraction_field` (same arguments). Away from the border this equals
    :math:`\sum_y K_h(x-y)[\ell(y)=c] / N_c`; it sums to 1 over each image and is
    unchanged in expectation by uniform thinning (sampling) of the class. (The
    sum is 1 up to float32 summation error, about 1e-5 for 10^4 pixels.)

    Returns:
        float32 (..., H, W) (binary: the foreground's) or (..., H, W, M).
        An image with no pixel of a class has an undefined intensity: a
        ``ValueError`` for concrete input, NaN under ``jit``.

    >>> import numpy as np
    >>> m = np.zeros((16, 16), bool); m[4:8, 4:8] = True
    >>> round(float(intensity_field(m, 2.0).sum()), 5)
    1.0
    """
    labels, bw, ndim, num_classes, ignore = _prepare(labels, bandwidth, kernel, num_classes, ignore, ndim)
    d = _fields(labels, bandwidth=bw, kernel=kernel, num_classes=num_classes, ignore=ignore, ndim=ndim)
    axes = tuple(range(-ndim, 0)) if num_classes is None else tuple(range(-ndim - 1, -1))
    total = jnp.nansum(d, axis=axes, keepdims=True)
    conc = _checks.concrete(total)
    if conc is not None and np.any(conc <= 0):
        raise ValueError("labels: an image has no pixel of a class, so its intensity field is undefined")
    return jnp.where(total > 0, d / total, jnp.nan)


# ------------------------------------------------------------------- Lemma 1, t*
def sampling_fields(mask: Any, bandwidth: float, *, kernel: str = "gaussian") -> tuple[np.ndarray, ...]:
    r"""``(D, S_fg, S_bg)`` of a binary mask on its pixel grid: what the finite-sampling variance needs.

    With the border-correct weights :math:`w(x, y) = K(x - y) / \sum_{y'} K(x - y')`
    over the image, D is :func:`fraction_field`,
    :math:`S_{fg} = \sum_y w^2 y` and :math:`S_{bg} = \sum_y w^2 (1 - y)`; a
    draw of (f, b)-noisy labels has variance :math:`f(1-f) S_{fg} + b(1-b) S_{bg}`
    around its mean field (theory/README.md, step 11): the arrays
    ``theory.curves.predicted_dice`` takes. D and the denominator come from
    :func:`fraction_field` and :func:`smooth` (float32), the squared-kernel sums
    from a float64 ``scipy.ndimage`` correlation; all three are returned in float64.

    Args:
        mask: a binary mask (H, W), bool or 0 / 1.
        bandwidth: the kernel's bandwidth in pixels.
        kernel: one of :data:`KERNELS`.

    Returns:
        Three float64 (H, W) arrays ``(D, S_fg, S_bg)``.

    Raises:
        ValueError: a mask that is not 2-D or not binary, or a bad kernel or bandwidth.

    >>> import numpy as np
    >>> d, s_fg, s_bg = sampling_fields(np.ones((9, 9), bool), 1.0)
    >>> bool(np.allclose(d, 1) and np.all(s_fg > 0) and np.all(s_bg == 0))
    True
    """
    _checks.check_binary("mask", mask)
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {m.shape}")
    k = kernel_weights(kernel, bandwidth)
    ones = np.ones(m.shape, np.float32)
    den = np.asarray(smooth(ones, bandwidth, kernel=kernel), float)
    D = np.asarray(fraction_field(m, bandwidth, kernel=kernel), float)
    sq = k**2  # sum_y K(x-y)^2 y: the squared kernel, correlated exactly (any size)
    s_fg = scipy.ndimage.correlate(m.astype(float), sq, mode="constant") / den**2
    s_all = scipy.ndimage.correlate(ones.astype(float), sq, mode="constant") / den**2
    return D, s_fg, s_all - s_fg


class MatchedThreshold(NamedTuple):
    """The threshold t* on a noisy-trained output that recovers the clean boundary.

    Attributes:
        threshold: t* = (1 + b - f) / 2.
        invert: True when f + b > 1: the noisy labels reverse the order, and the
            foreground is where the output is *below* t*.
    """

    threshold: Any
    invert: Any

    def apply(self, scores: Any) -> jax.Array:
        """Binary prediction: ``scores > t*`` (or ``scores < t*`` when inverted)."""
        scores = jnp.asarray(scores)
        return jnp.where(self.invert, scores < self.threshold, scores > self.threshold)


def matched_threshold(transition: Any, *, atol: float = TRANSITION_ATOL) -> MatchedThreshold:
    r"""t* of a binary transition matrix T = [[1-b, b], [f, 1-f]].

    Proper scoring makes the noisy-trained output :math:`q = b + (1-f-b) P`, so the
    clean boundary :math:`P = 1/2` is :math:`q = t^* = (1 + b - f)/2`. Sampling
    with ratio p is :math:`f = 1-p, b = 0`, so :math:`t^* = p/2`.

    Args:
        transition: a 2 x 2 row-stochastic matrix (rows: true bg, fg).
        atol: :math:`|1 - f - b|` at or below this means the labels carry no information (default
            :data:`TRANSITION_ATOL`, the tolerance ``LabelNoise.family`` decides "RL" with).

    Returns:
        :class:`MatchedThreshold` ``(threshold, invert)``.

    Raises:
        ValueError: T not 2 x 2 or not row-stochastic, or f + b = 1.

    >>> from metastructure import ntm
    >>> matched_threshold(ntm.sample_matrix(0.1)).threshold
    0.05
    """
    t = _checks.concrete(transition)
    if t is None:
        tt = jnp.asarray(transition)
        b, f = tt[0, 1], tt[1, 0]
        return MatchedThreshold((1 + b - f) / 2, f + b > 1)
    _checks.check_transition("transition", t)
    if t.shape != (2, 2):
        raise ValueError(f"transition must be 2 x 2 for a matched threshold, got shape {t.shape}")
    b, f = float(t[0, 1]), float(t[1, 0])
    if abs(1.0 - f - b) <= atol:
        raise ValueError(
            f"transition has f + b = 1 (f={f}, b={b}): the noisy labels are independent of the clean ones "
            "and carry no information, so no threshold recovers the boundary"
        )
    return MatchedThreshold(round((1.0 + b - f) / 2.0, 15), f + b > 1.0)


def matched_threshold_or_none(transition: Any, *, atol: float = TRANSITION_ATOL) -> MatchedThreshold | None:
    r""":func:`matched_threshold`, or ``None`` where no threshold exists (:math:`|1 - f - b| \le` ``atol``).

    For callers that score every label type side by side, random labels
    included: "no t*" is a result there, not an error. Other invalid
    transitions (not 2 x 2, not row-stochastic) still raise ``ValueError``.

    >>> from metastructure import ntm
    >>> matched_threshold_or_none(ntm.random_matrix(0.3)) is None
    True
    """
    _checks.check_transition("transition", transition)
    t = np.asarray(transition, dtype=np.float64)
    if t.shape == (2, 2) and abs(1.0 - t[1, 0] - t[0, 1]) <= atol:
        return None
    return matched_threshold(t, atol=atol)


def expected_fraction_field(clean_fields: Any, transition: Any, *, stacked: bool | None = None) -> jax.Array:
    r"""Lemma 1: :math:`E[D^*_m(x)] = \sum_j T_{jm} D_j(x)`.

    Args:
        clean_fields: for a 2 x 2 ``transition``, the foreground fraction
            (..., H, W) unless ``stacked``; otherwise class fractions (..., M)
            with the class axis last. Values in [0, 1] and finite (a field's
            NaN, where no labelled pixel is in reach, is refused: drop or fill
            those pixels first).
        transition: M x M row-stochastic matrix.
        stacked: force the class-axis-last form for a 2 x 2 matrix.

    Returns:
        The expected noisy fields in the same layout: binary
        :math:`b + (1-f-b) D`.

    >>> import numpy as np
    >>> from metastructure import ntm
    >>> round(float(expected_fraction_field(np.array(1.0), ntm.flip_matrix(0.3, 0.1))), 6)
    0.7
    """
    _checks.check_transition("transition", transition)
    _checks.check_finite("clean_fields", clean_fields)
    _checks.check_unit_interval("clean_fields", clean_fields)
    t = jnp.asarray(transition, dtype=jnp.float32)
    d = jnp.asarray(clean_fields, dtype=jnp.float32)
    if t.shape == (2, 2) and not stacked:
        return t[0, 1] + (1.0 - t[1, 0] - t[0, 1]) * d
    if d.shape[-1:] != t.shape[:1]:
        raise ValueError(f"clean_fields' last axis must have M={t.shape[0]} classes, got shape {d.shape}")
    return jnp.einsum("...j,jm->...m", d, t, precision=_HIGHEST)


def partition(fields: Any, *, threshold: float | MatchedThreshold = 0.5, multiclass: bool = False) -> jax.Array:
    r"""The meta-structure partition :math:`\{O_1, \dots, O_M\}` of the image.

    Binary (default): the region where the foreground fraction exceeds
    ``threshold`` (a number, or a :class:`MatchedThreshold`, which also handles
    inversion). Multi-class: the class of largest fraction at each pixel.

    Args:
        fields: (..., H, W) binary fraction, or (..., H, W, M) with ``multiclass``.
        threshold: level for the binary partition.
        multiclass: take the argmax over the last (class) axis.

    Returns:
        bool (..., H, W) (binary) or int32 (..., H, W) class map.

    >>> import numpy as np
    >>> partition(np.array([0.2, 0.7])).tolist()
    [False, True]
    """
    f = jnp.asarray(fields)
    if multiclass:
        return jnp.argmax(f, axis=-1).astype(jnp.int32)
    if isinstance(threshold, MatchedThreshold):
        return threshold.apply(f)
    return f > threshold
