"""Small segmentation networks as ``(init, apply)`` pairs of pure functions (NHWC, or NDHWC for volumes).

``init(key, in_channels) -> params`` (a pytree of arrays) and
``apply(params, images, *, features=False) -> logits`` (N, H, W, out_channels),
or ``(logits, {name: feature map})`` with ``features=True`` (for feature
similarity experiments). One logit for binary segmentation, M for M classes.

* :func:`unet`: encoder of 3x3 conv-ReLU pairs with 2x2 max pooling, widths
  ``widths`` (default 16-32-64); decoder by nearest upsampling, skip
  concatenation and conv pairs; a 1x1 head. H and W must be divisible by
  2^(depth-1). With ``ndim=3`` it takes volumes (N, D, H, W, C) with 3x3x3
  convs, and ``pool`` sets the pooling per axis (``(1, 2, 2)`` keeps a thin
  stack's depth). ``norm="batch"`` puts a BatchNorm between each conv and its
  ReLU, ``init="normal"`` draws weights from N(0, 0.02) (the iGTT authors'
  configuration, arXiv 2205.00160; He-normal otherwise).
* :func:`fcn`: a plain stack of 3x3 conv-ReLU layers (optionally dilated) and a
  1x1 head: no downsampling, a receptive field of 1 + 2 sum(dilations).

>>> import jax, jax.numpy as jnp
>>> init, apply = unet()
>>> p = init(jax.random.key(0), 1)
>>> apply(p, jnp.zeros((2, 32, 32, 1))).shape
(2, 32, 32, 1)
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "INITS", "Model", "NDIMS", "NORMS", "fcn", "num_params", "unet"]

_DN = {2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
#: Spatial dimensions the networks take: images (N, H, W, C) and volumes (N, D, H, W, C).
NDIMS = (2, 3)


@dataclass(frozen=True)
class Model:
    """An ``(init, apply)`` pair with a name and its configuration (sorted key/value pairs).

    Unpacks as ``init, apply = model``. Hashable: the constructors are cached,
    so equal configurations give the same Model and jitted training steps are
    compiled once.
    """

    init: Callable[..., Any]
    apply: Callable[..., Any]
    name: str = field(default="model", kw_only=True)
    config: tuple = field(default=(), kw_only=True)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.apply))


#: Weight initialisations :func:`unet` accepts: He-normal (for ReLU) or N(0, 0.02).
INITS = ("he", "normal")
#: Normalisations :func:`unet` accepts: none, or BatchNorm on the batch's own statistics.
NORMS = (None, "batch")
#: Activations :func:`unet` accepts: ReLU, or leaky ReLU max(x, 0.01 x) (``jax.nn.leaky_relu``'s default slope).
ACTIVATIONS = {"relu": jax.nn.relu, "leaky_relu": jax.nn.leaky_relu}


def _conv_init(key, kernel, cin, cout, init="he"):
    """A conv's weights (*kernel, cin, cout) and zero biases; ``kernel`` the spatial size, (3, 3) or (3, 3, 3)."""
    std = (2.0 / (math.prod(kernel) * cin)) ** 0.5 if init == "he" else 0.02
    return {"w": std * jax.random.normal(key, (*kernel, cin, cout), jnp.float32), "b": jnp.zeros((cout,), jnp.float32)}


def _bn_init(key, c):
    return {"gamma": 1.0 + 0.02 * jax.random.normal(key, (c,), jnp.float32), "beta": jnp.zeros((c,), jnp.float32)}


def _batch_norm(p, x, eps=1e-5):
    """BatchNorm on the batch's own statistics (over N and the spatial axes, per channel): PyTorch's train mode."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.var(x, axis=axes)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["gamma"] + p["beta"]


def _conv(p, x, dilation=1):
    nd = x.ndim - 2
    if nd == 3:
        return _conv3d_by_planes(p["w"], x, dilation) + p["b"]
    y = jax.lax.conv_general_dilated(
        x, p["w"], (1,) * nd, "SAME", rhs_dilation=(dilation,) * nd, dimension_numbers=_DN[nd]
    )
    return y + p["b"]


def _conv3d_by_planes(w, x, dilation=1):
    """A "SAME" 3-D convolution of x (N, D, H, W, C) with w (kd, kh, kw, C, C') as the sum over the kernel's kd
    planes of a 2-D convolution of every z-shifted input plane (zero outside the volume): the same correlation,
    computed by XLA's 2-D convolution, which on the CPU (with its gradients) runs about 5x faster than its 3-D one
    (bench/README.md)."""
    n, d, h, wd, c = x.shape
    kd = w.shape[0]
    lo = dilation * (kd - 1) // 2
    hi = dilation * (kd - 1) - lo
    xp = jnp.pad(x, ((0, 0), (lo, hi), (0, 0), (0, 0), (0, 0)))
    out = None
    for dz in range(kd):
        plane = jax.lax.dynamic_slice_in_dim(xp, dz * dilation, d, axis=1).reshape(n * d, h, wd, c)
        y = jax.lax.conv_general_dilated(plane, w[dz], (1, 1), "SAME", rhs_dilation=(dilation, dilation),
                                         dimension_numbers=_DN[2])
        out = y if out is None else out + y
    return out.reshape(n, d, h, wd, w.shape[-1])


def _pool(x, factors=(2, 2)):
    # max pooling by ``factors`` per spatial axis as a reshape: its gradient is an elementwise mask, while
    # reduce_window's (select_and_scatter) measured ~10 ms slower per step on CPU
    shape = [x.shape[0]]
    for size, f in zip(x.shape[1:-1], factors, strict=True):
        shape += [size // f, f]
    return x.reshape(*shape, x.shape[-1]).max(axis=tuple(range(2, 2 * len(factors) + 1, 2)))


def _up(x, factors=(2, 2)):
    for axis, f in enumerate(factors, start=1):
        if f > 1:
            x = jnp.repeat(x, f, axis=axis)
    return x


def num_params(params: Any) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def unet(*, widths: tuple[int, ...] = (16, 32, 64), out_channels: int = 1, norm: str | None = None,
         init: str = "he", activation: str = "relu", ndim: int = 2, pool: tuple[int, ...] | None = None) -> Model:
    """A small U-Net with ``len(widths)`` levels (the last one the bottleneck) and ``out_channels`` logits.

    Each level is two 3x3 conv-activation layers of its width (zero biases);
    2x2 max pooling between levels, nearest upsampling, skip concatenation
    and two such layers on the way up, a 1x1 head. Equal arguments
    return the same (cached) :class:`Model`.

    Args:
        widths: channels per level, at least two.
        out_channels: logits per pixel.
        norm: None, or "batch": BatchNorm between each 3x3 conv and its ReLU,
            always on the statistics of the batch it is applied to (PyTorch's
            train mode, as the iGTT authors train and select; there are no
            running averages), so an image's output depends on the batch it
            is predicted with. Its scale gamma starts at N(1, 0.02), its shift
            at 0; the parameters gain a ``"bn"`` entry per conv.
        init: "he" (He-normal, std sqrt(2 / fan-in)) or "normal" (N(0, 0.02)
            for every conv weight, the authors' choice).
        activation: "relu" or "leaky_relu" (slope 0.01 below zero) after
            every 3x3 conv (:data:`ACTIVATIONS`). A leaky unit passes a
            gradient below zero too, so it cannot stop training as a ReLU
            unit that never fires does (the planner's recipe uses it;
            bench/README.md, "Calibration failures").
        ndim: 2 (images (N, H, W, C), 3x3 convs) or 3 (volumes (N, D, H, W, C), 3x3x3 convs, BatchNorm over
            N, D, H, W).
        pool: the max pooling's factor along each spatial axis between levels, and the upsampling's
            (default 2 along every axis). For a thin or anisotropic stack, ``pool=(1, 2, 2)`` keeps its
            depth D at every level. Each spatial size must be divisible by its factor^(len(widths) - 1).

    A 3-D network's :attr:`Model.config` adds ``("ndim", 3)`` and ``("pool", pool)``; a 2-D one's is as
    it has always been, and so are its numbers (the 2-D path computes as before).

    Raises:
        ValueError: fewer than two widths, a width < 1, an unknown ``norm``,
            ``init``, ``activation`` or ``ndim``; ``pool`` not one factor >= 1 per spatial axis;
            ``apply`` on an input of another rank, or of spatial sizes its factors do not divide.

    >>> unet(widths=(8, 16)).config
    (('activation', 'relu'), ('init', 'he'), ('norm', None), ('out_channels', 1), ('widths', (8, 16)))
    >>> import jax, jax.numpy as jnp
    >>> init, apply = unet(widths=(4, 8), ndim=3, pool=(1, 2, 2))
    >>> apply(init(jax.random.key(0), 1), jnp.zeros((1, 3, 8, 8, 1))).shape
    (1, 3, 8, 8, 1)
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    nd, factors = _spatial(ndim, pool)
    return _unet(tuple(int(w) for w in widths), int(out_channels), norm, init, activation, nd, factors)


def _spatial(ndim: Any, pool: Any) -> tuple[int, tuple[int, ...]]:
    """``ndim`` checked, and the pooling factors per spatial axis (default 2 each)."""
    if ndim not in NDIMS or isinstance(ndim, bool):
        raise ValueError(f"ndim must be one of {NDIMS}, got {ndim!r}")
    if pool is None:
        return ndim, (2,) * ndim
    factors = tuple(pool) if isinstance(pool, (tuple, list)) else None
    if factors is None or len(factors) != ndim or not all(
            isinstance(f, numbers.Integral) and not isinstance(f, bool) and f >= 1 for f in factors):
        raise ValueError(f"pool must be {ndim} integer factors >= 1, one per spatial axis, got {pool!r}")
    return ndim, tuple(int(f) for f in factors)


@functools.cache
def _unet(widths: tuple[int, ...], out_channels: int, norm: str | None = None, init_kind: str = "he",
          activation: str = "relu", nd: int = 2, factors: tuple[int, ...] = (2, 2)) -> Model:
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must list at least two positive widths, got {widths!r}")
    depth = len(widths)
    bn = norm == "batch"
    k3, k1 = (3,) * nd, (1,) * nd

    def level(keys, cin, cout):
        """A level's two 3x3 convs: without BatchNorm one key each; with it, both convs and both norms
        from the first key (the second is drawn and unused, so every level takes two keys either way)."""
        k_a, k_b = next(keys), next(keys)
        if not bn:
            return [_conv_init(k_a, k3, cin, cout, init_kind), _conv_init(k_b, k3, cout, cout, init_kind)]
        c1, c2, n1, n2 = jax.random.split(k_a, 4)
        return [{**_conv_init(c1, k3, cin, cout, init_kind), "bn": _bn_init(n1, cout)},
                {**_conv_init(c2, k3, cout, cout, init_kind), "bn": _bn_init(n2, cout)}]

    def init(key: jax.Array, in_channels: int = 1) -> dict:
        keys = iter(jax.random.split(key, 4 * depth + 2))
        params: dict = {"enc": [], "dec": []}
        cin = in_channels
        for w in widths:
            params["enc"].append(level(keys, cin, w))
            cin = w
        for w in reversed(widths[:-1]):
            params["dec"].append(level(keys, cin + w, w))
            cin = w
        params["head"] = _conv_init(next(keys), k1, cin, out_channels, init_kind)
        return params

    act = ACTIVATIONS[activation]

    def layer(p, h):
        h = _conv(p, h)
        return act(_batch_norm(p["bn"], h) if "bn" in p else h)

    def apply(params: dict, x: jax.Array, *, features: bool = False):
        _check_input(x, nd, tuple(f ** (depth - 1) for f in factors))
        feats = {}
        skips = []
        h = x
        for i, (c1, c2) in enumerate(params["enc"]):
            if i:
                h = _pool(h, factors)
            h = layer(c2, layer(c1, h))
            feats[f"enc{i}"] = h
            skips.append(h)
        for i, (c1, c2) in enumerate(params["dec"]):
            h = jnp.concatenate([_up(h, factors), skips[-2 - i]], axis=-1)
            h = layer(c2, layer(c1, h))
            feats[f"dec{i}"] = h
        logits = _conv(params["head"], h)
        return (logits, feats) if features else logits

    config = (("activation", activation), ("init", init_kind), ("norm", norm), ("out_channels", out_channels),
              ("widths", widths))
    if nd == 3:
        config = config[:2] + (("ndim", 3),) + config[2:4] + (("pool", factors),) + config[4:]
    return Model(init, apply, name="unet", config=config)


def _check_input(x: Any, nd: int, divisors: tuple[int, ...]) -> None:
    """``x`` of rank nd + 2 whose spatial sizes ``divisors`` divide."""
    names = "H, W" if nd == 2 else "D, H, W"
    if x.ndim != nd + 2:
        raise ValueError(f"a {nd}-D network takes (N, {names}, C) inputs, got shape {x.shape}")
    if any(size % d for size, d in zip(x.shape[1:-1], divisors, strict=True)):
        raise ValueError(f"{names} must be divisible by {', '.join(map(str, divisors))}, got {x.shape[1:-1]}")


def fcn(*, widths: tuple[int, ...] = (32, 32, 32, 32), out_channels: int = 1,
        dilations: tuple[int, ...] | None = None, ndim: int = 2) -> Model:
    """A fully convolutional stack without downsampling: 3x3 conv-ReLU layers of ``widths``
    (dilated by ``dilations``, default 1), then a 1x1 head of ``out_channels`` logits; with ``ndim=3``,
    3x3x3 convs on volumes (N, D, H, W, C), and the config gains ``("ndim", 3)``.

    Its receptive field is 1 + 2 sum(dilations) pixels wide along every axis.

    Raises:
        ValueError: dilations not one per width; ``ndim`` not 2 or 3; ``apply`` on an input of another rank.
    """
    widths = tuple(int(w) for w in widths)
    dil = tuple(int(d) for d in dilations) if dilations is not None else (1,) * len(widths)
    nd, _ = _spatial(ndim, None)
    return _fcn(widths, int(out_channels), dil, nd)


@functools.cache
def _fcn(widths: tuple[int, ...], out_channels: int, dil: tuple[int, ...], nd: int = 2) -> Model:
    if len(dil) != len(widths):
        raise ValueError(f"dilations must match widths in length, got {dil} for {widths}")

    def init(key: jax.Array, in_channels: int = 1) -> dict:
        keys = jax.random.split(key, len(widths) + 1)
        layers, cin = [], in_channels
        for k, w in zip(keys[:-1], widths, strict=True):
            layers.append(_conv_init(k, (3,) * nd, cin, w))
            cin = w
        return {"layers": layers, "head": _conv_init(keys[-1], (1,) * nd, cin, out_channels)}

    def apply(params: dict, x: jax.Array, *, features: bool = False):
        _check_input(x, nd, (1,) * nd)
        feats = {}
        h = x
        for i, (p, d) in enumerate(zip(params["layers"], dil, strict=True)):
            h = jax.nn.relu(_conv(p, h, d))
            feats[f"layer{i}"] = h
        logits = _conv(params["head"], h)
        return (logits, feats) if features else logits

    config = (("dilations", dil),) + ((("ndim", 3),) if nd == 3 else ()) + (("out_channels", out_channels),
                                                                           ("widths", widths))
    return Model(init, apply, name="fcn", config=config)
