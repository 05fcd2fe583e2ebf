"""Small segmentation networks as ``(init, apply)`` pairs of pure functions (NHWC).

``init(key, in_channels) -> params`` (a pytree of arrays) and
``apply(params, images, *, features=False) -> logits`` (N, H, W, out_channels),
or ``(logits, {name: feature map})`` with ``features=True`` (for feature
similarity experiments). One logit for binary segmentation, M for M classes.

* :func:`unet`: encoder of 3x3 conv-ReLU pairs with 2x2 max pooling, widths
  ``widths`` (default 16-32-64); decoder by nearest upsampling, skip
  concatenation and conv pairs; a 1x1 head. H and W must be divisible by
  2^(depth-1). ``norm="batch"`` puts a BatchNorm between each conv and its
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "INITS", "Model", "NORMS", "fcn", "num_params", "unet"]

_DN = ("NHWC", "HWIO", "NHWC")


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


def _conv_init(key, kh, kw, cin, cout, init="he"):
    std = (2.0 / (kh * kw * cin)) ** 0.5 if init == "he" else 0.02
    return {"w": std * jax.random.normal(key, (kh, kw, cin, cout), jnp.float32), "b": jnp.zeros((cout,), jnp.float32)}


def _bn_init(key, c):
    return {"gamma": 1.0 + 0.02 * jax.random.normal(key, (c,), jnp.float32), "beta": jnp.zeros((c,), jnp.float32)}


def _batch_norm(p, x, eps=1e-5):
    """BatchNorm on the batch's own statistics (over N, H, W, per channel): PyTorch's train mode."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.var(x, axis=(0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["gamma"] + p["beta"]


def _conv(p, x, dilation=1):
    y = jax.lax.conv_general_dilated(
        x, p["w"], (1, 1), "SAME", rhs_dilation=(dilation, dilation), dimension_numbers=_DN
    )
    return y + p["b"]


def _pool(x):
    # 2x2 max pooling as a reshape: its gradient is an elementwise mask, while
    # reduce_window's (select_and_scatter) measured ~10 ms slower per step on CPU
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _up(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def num_params(params: Any) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def unet(*, widths: tuple[int, ...] = (16, 32, 64), out_channels: int = 1, norm: str | None = None,
         init: str = "he", activation: str = "relu") -> Model:
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

    Raises:
        ValueError: fewer than two widths, a width < 1, an unknown ``norm``,
            ``init`` or ``activation``.

    >>> unet(widths=(8, 16)).config
    (('activation', 'relu'), ('init', 'he'), ('norm', None), ('out_channels', 1), ('widths', (8, 16)))
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    return _unet(tuple(int(w) for w in widths), int(out_channels), norm, init, activation)


@functools.cache
def _unet(widths: tuple[int, ...], out_channels: int, norm: str | None = None, init_kind: str = "he",
          activation: str = "relu") -> Model:
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must list at least two positive widths, got {widths!r}")
    depth = len(widths)
    bn = norm == "batch"

    def level(keys, cin, cout):
        """A level's two 3x3 convs: without BatchNorm one key each; with it, both convs and both norms
        from the first key (the second is drawn and unused, so every level takes two keys either way)."""
        k_a, k_b = next(keys), next(keys)
        if not bn:
            return [_conv_init(k_a, 3, 3, cin, cout, init_kind), _conv_init(k_b, 3, 3, cout, cout, init_kind)]
        k1, k2, k3, k4 = jax.random.split(k_a, 4)
        return [{**_conv_init(k1, 3, 3, cin, cout, init_kind), "bn": _bn_init(k3, cout)},
                {**_conv_init(k2, 3, 3, cout, cout, init_kind), "bn": _bn_init(k4, cout)}]

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
        params["head"] = _conv_init(next(keys), 1, 1, cin, out_channels, init_kind)
        return params

    act = ACTIVATIONS[activation]

    def layer(p, h):
        h = _conv(p, h)
        return act(_batch_norm(p["bn"], h) if "bn" in p else h)

    def apply(params: dict, x: jax.Array, *, features: bool = False):
        if x.shape[1] % 2 ** (depth - 1) or x.shape[2] % 2 ** (depth - 1):
            raise ValueError(f"H and W must be divisible by {2 ** (depth - 1)}, got {x.shape[1:3]}")
        feats = {}
        skips = []
        h = x
        for i, (c1, c2) in enumerate(params["enc"]):
            if i:
                h = _pool(h)
            h = layer(c2, layer(c1, h))
            feats[f"enc{i}"] = h
            skips.append(h)
        for i, (c1, c2) in enumerate(params["dec"]):
            h = jnp.concatenate([_up(h), skips[-2 - i]], axis=-1)
            h = layer(c2, layer(c1, h))
            feats[f"dec{i}"] = h
        logits = _conv(params["head"], h)
        return (logits, feats) if features else logits

    return Model(init, apply, name="unet", config=(("activation", activation), ("init", init_kind), ("norm", norm),
                                                   ("out_channels", out_channels), ("widths", widths)))


def fcn(*, widths: tuple[int, ...] = (32, 32, 32, 32), out_channels: int = 1,
        dilations: tuple[int, ...] | None = None) -> Model:
    """A fully convolutional stack without downsampling: 3x3 conv-ReLU layers of ``widths``
    (dilated by ``dilations``, default 1), then a 1x1 head of ``out_channels`` logits.

    Its receptive field is 1 + 2 sum(dilations) pixels wide.
    """
    widths = tuple(int(w) for w in widths)
    dil = tuple(int(d) for d in dilations) if dilations is not None else (1,) * len(widths)
    return _fcn(widths, int(out_channels), dil)


@functools.cache
def _fcn(widths: tuple[int, ...], out_channels: int, dil: tuple[int, ...]) -> Model:
    if len(dil) != len(widths):
        raise ValueError(f"dilations must match widths in length, got {dil} for {widths}")

    def init(key: jax.Array, in_channels: int = 1) -> dict:
        keys = jax.random.split(key, len(widths) + 1)
        layers, cin = [], in_channels
        for k, w in zip(keys[:-1], widths, strict=True):
            layers.append(_conv_init(k, 3, 3, cin, w))
            cin = w
        return {"layers": layers, "head": _conv_init(keys[-1], 1, 1, cin, out_channels)}

    def apply(params: dict, x: jax.Array, *, features: bool = False):
        feats = {}
        h = x
        for i, (p, d) in enumerate(zip(params["layers"], dil, strict=True)):
            h = jax.nn.relu(_conv(p, h, d))
            feats[f"layer{i}"] = h
        logits = _conv(params["head"], h)
        return (logits, feats) if features else logits

    return Model(init, apply, name="fcn",
                 config=(("dilations", dil), ("out_channels", out_channels), ("widths", widths)))
