r"""Training: a pure ``init`` / ``step`` pair, the jitted step builder ``make_step``, ``fit`` for one run and
``fit_many`` for many.

Two label-noise regimes, both first-class (theory/README.md, steps 3 and 13):

* **fixed**: ``labels`` is an array, one noisy draw made before training (what
  the paper did). A network with enough capacity can memorise the drawn pixels.
* **fresh**: ``noise`` is a function ``noise(key, clean_batch) -> noisy_batch``
  applied to the clean ``labels`` at every step. BCE and CE are linear in the
  target, so this is SGD on the soft-label problem, whose optimum is the affine
  image b + (1-f-b) P of the clean posterior.

Every :class:`FitResult` records its ``regime`` and its ``label_type`` (the
:class:`~metastructure.noise.LabelNoise` or transition matrix it was trained
on), so :meth:`FitResult.evaluate` scores it at its own t* without being told T
again. Same key, same data: bitwise identical parameters on CPU.

The losses live in :mod:`metastructure.losses`; ``fit(loss=...)`` takes their
names or any ``loss(logits, targets)``.

:func:`make_step` is the package's one training step (batch, targets made at
load, augmentation, gradient step, pseudo-labels selected from the batch's
output): :func:`fit` runs it, and so does
:func:`metastructure.unsupervised.igtt`, with :func:`progress_bar`,
:func:`fresh_state` and :class:`FitResult` for the rest of its loop.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _checks, data, losses, metrics, nets
from .noise import Clean, LabelNoise, Skeleton

__all__ = [
    "FitResult",
    "TrainState",
    "augment_dihedral",
    "dihedral",
    "fit",
    "fit_many",
    "fresh_state",
    "init",
    "make_optimizer",
    "make_step",
    "progress_bar",
    "random_crop",
    "step",
]


# ------------------------------------------------------------------ state, step
class TrainState(NamedTuple):
    """Everything that changes during training (a pytree)."""

    params: Any
    opt_state: Any
    step: jax.Array


@functools.lru_cache(maxsize=32)
def make_optimizer(
    name: str,
    *,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    decay_every: int | None = None,
    decay_factor: float = 0.1,
) -> optax.GradientTransformation:
    """An optax optimizer by name: "adam" (AdamW when ``weight_decay`` > 0) or "sgd".

    SGD has momentum and decoupled weight decay
    (``optax.add_decayed_weights`` then ``optax.sgd``); either takes a step
    schedule, the learning rate times ``decay_factor`` every ``decay_every``
    steps (the paper's SGD: lr 0.05, momentum 0.9, weight decay 1e-3, x0.1
    every 20 epochs). Cached: equal arguments give the same object, so jitted
    steps are reused.

    Raises:
        ValueError: an unknown ``name``.

    >>> make_optimizer("adam") is make_optimizer("adam")
    True
    """
    lr: Any = learning_rate
    if decay_every:
        lr = optax.exponential_decay(learning_rate, decay_every, decay_factor, staircase=True)
    if name == "adam":
        return optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum))
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def fresh_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """``params`` with a fresh optimizer state (``optimizer.init(params)``) at step 0: a start, or a restart of
    the optimizer on trained weights."""
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def init(key: jax.Array, model: nets.Model, in_channels: int, optimizer: optax.GradientTransformation) -> TrainState:
    """Fresh parameters (``model.init(key, in_channels)``), the optimizer's state and step 0."""
    return fresh_state(model.init(key, in_channels), optimizer)


def _gradient_step(state: TrainState, images: jax.Array, targets: jax.Array, model: nets.Model,
                   optimizer: optax.GradientTransformation, loss: Callable) -> tuple[TrainState, jax.Array, jax.Array]:
    """:func:`step`, also returning the batch's logits before the update."""

    def objective(params):
        logits = model.apply(params, images)
        return loss(logits, targets), logits

    (value, logits), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), value, logits


def step(state: TrainState, images: jax.Array, targets: jax.Array, *, model: nets.Model,
         optimizer: optax.GradientTransformation, loss: Callable) -> tuple[TrainState, jax.Array]:
    """One gradient step on a batch: ``loss(model.apply(params, images), targets)`` differentiated and applied by
    ``optimizer``; returns the new state and the loss before the update. Pure (jit it with ``model``,
    ``optimizer``, ``loss`` closed over; :func:`make_step` builds the jitted step with the batch around it)."""
    new, value, _ = _gradient_step(state, images, targets, model, optimizer, loss)
    return new, value


def _dihedral_static(y: jax.Array, i: int, *, inverse: bool, axes: tuple[int, int]) -> jax.Array:
    """The dihedral transform ``i`` (a Python int) of ``y`` over ``axes`` (H, W), or its inverse."""
    if inverse:
        return jnp.rot90(jnp.flip(y, axes[1]) if i >= 4 else y, -(i % 4), axes=axes)
    r = jnp.rot90(y, i % 4, axes=axes)
    return jnp.flip(r, axes[1]) if i >= 4 else r


def _symmetry_static(y: jax.Array, i: int, *, inverse: bool, axes: tuple[int, ...]) -> jax.Array:
    """Symmetry ``i`` (a Python int) of ``y`` over ``axes``: (H, W), the dihedral transform ``i`` in 0..7; (D, H,
    W), the dihedral transform ``i % 8`` over (H, W), then, for ``i >= 8``, a flip of D (the two commute)."""
    if len(axes) == 2:
        return _dihedral_static(y, i, inverse=inverse, axes=axes)
    out = _dihedral_static(y, i % 8, inverse=inverse, axes=axes[1:])
    return jnp.flip(out, axes[0]) if i >= 8 else out


def _symmetries(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The symmetries (indices of :func:`dihedral`) that keep a batch's spatial ``shape`` ((H, W) or (D, H,
    W)): all 8 (16 for volumes) when H = W, else those without a quarter turn."""
    count = 8 if len(shape) == 2 else 16
    return tuple(t for t in range(count) if shape[-2] == shape[-1] or t % 2 == 0)


def dihedral(t: jax.Array, a: jax.Array, *, inverse: bool = False, ndim: int = 2) -> jax.Array:
    """Per sample, the dihedral transform ``t`` in 0..7 of ``a`` (N, H, W[, C]): rot90 ``t % 4`` times over
    (H, W), then, for ``t >= 4``, a flip of W; with ``inverse``, the transform that undoes it.

    Non-square images have only the 4 transforms that keep their shape: an
    odd ``t`` (a quarter turn) is taken as ``t - 1``, so a uniform ``t`` in
    0..7 stays uniform over those 4.

    With ``ndim=3``, ``a`` holds volumes (N, D, H, W[, C]) and ``t`` is in 0..15: the dihedral transform
    ``t % 8`` over (H, W), and for ``t >= 8`` a flip of D: the 16 symmetries that keep the z axis (an
    anisotropic stack's), 8 when H != W."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    square = a.shape[ndim - 1] == a.shape[ndim]
    axes = tuple(range(ndim))

    def one(ti, x):
        def f(i):
            i = i if square else i - i % 2
            return lambda y: _symmetry_static(y, i, inverse=inverse, axes=axes)

        return jax.lax.switch(ti, [f(i) for i in range(8 if ndim == 2 else 16)], x)

    return jax.vmap(one)(t, a)


def augment_dihedral(key: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each sample gets one of the 8 flips/rotations (images NHWC, labels NHW[...]): :func:`dihedral`
    with ``t`` drawn uniformly per sample, the same for a sample's image and labels (non-square images:
    one of the 4 transforms that keep their shape, uniformly). Volumes (images NDHWC, labels NDHW[...]):
    one of the 16 symmetries that keep z (:func:`dihedral` with ``ndim=3``)."""
    nd = images.ndim - 2
    ks = _dihedral_draw(key, images.shape[0], nd)
    return dihedral(ks, images, ndim=nd), dihedral(ks, labels, ndim=nd)


def _dihedral_draw(key: jax.Array, n: int, ndim: int = 2) -> jax.Array:
    """Each of ``n`` samples' transform index t, uniform in 0..7 (0..15 for volumes): what
    :func:`augment_dihedral` and :func:`make_step` apply, and ``make_step`` undoes for its in-step selection."""
    return jax.random.randint(key, (n,), 0, 8 if ndim == 2 else 16)


# ------------------------------------------------------------------------ fit
class FitResult(NamedTuple):
    """A trained model and what it was trained on.

    Attributes:
        params: the parameters (a pytree).
        model: the :class:`~metastructure.nets.Model`.
        history: ``{"step", "loss", "val_step", "val", "callback", "seconds"}``:
            the loss at every step; every ``val_every`` steps the validation
            scores (:func:`metastructure.metrics.evaluate`) and the callback's
            records; the wall time of the loop.
        regime: "fixed" (one noisy draw before training) or "fresh" (a draw per step).
        num_classes: None (binary, sigmoid) or M (softmax).
        label_type: the :class:`~metastructure.noise.LabelNoise` or the
            transition matrix the labels came from, or None if not known. It
            decides t* in :meth:`evaluate`.
    """

    params: Any
    model: nets.Model
    history: dict
    regime: str
    num_classes: int | None
    label_type: Any = None

    def logits(self, images: Any, *, batch_size: int = 16) -> np.ndarray:
        """The network's logits (N, H, W, channels) for images (N, H, W, C), in batches (host array); a 3-D
        network's (N, D, H, W, channels) for volumes (N, D, H, W, C)."""
        x = jnp.asarray(images, jnp.float32)
        f = _apply_jit(self.model)
        return np.concatenate([np.asarray(f(self.params, x[i : i + batch_size]))
                               for i in range(0, x.shape[0], batch_size)])

    def predict(self, images: Any, *, batch_size: int = 16, tta: bool = False) -> np.ndarray:
        """Per-pixel probabilities: binary (N, H, W) in [0, 1]; multi-class (N, H, W, M); for volumes
        (N, D, H, W, C), (N, D, H, W) and (N, D, H, W, M).

        ``tta``: test-time augmentation, the mean of the probabilities over the
        dihedral transforms of each image (:func:`dihedral`), each mapped back:
        all 8 for square images, the 4 that keep the shape (identity, the two
        flips, the half turn) otherwise; for volumes the 16 symmetries that keep z (8 when H != W).
        """
        if tta:
            x = jnp.asarray(images, jnp.float32)
            axes = tuple(range(1, x.ndim - 1))
            ts = _symmetries(x.shape[1:-1])
            total = None
            for t in ts:  # the symmetry t of every image at once
                xt = _symmetry_static(x, t, inverse=False, axes=axes)
                p = jnp.asarray(self.predict(xt, batch_size=batch_size))
                p = _symmetry_static(p, t, inverse=True, axes=axes)
                total = p if total is None else total + p
            return np.asarray(total / len(ts))
        z = self.logits(images, batch_size=batch_size)
        if self.num_classes is None:
            return np.asarray(jax.nn.sigmoid(z[..., 0]))
        return np.asarray(jax.nn.softmax(z, axis=-1))

    def evaluate(self, images: Any, masks: Any, *, validation: tuple[Any, Any] | None = None,
                 training: tuple[Any, Any] | None = None) -> dict:
        """Every score of the prediction on (images, masks): :func:`metastructure.metrics.evaluate`
        with this result's ``label_type`` (so t* comes from what it was trained on); with
        ``validation=(val_images, val_masks)``, the validation threshold; with ``training=(train_images,
        train_labels)`` (the labels it trained on, one fixed draw), the level protocol: t* read from the
        network's own output on the pixels labelled foreground (:func:`metastructure.metrics.level_threshold`).
        Mask pixels equal to :data:`metastructure.losses.IGNORE` are left out of every score, as in training.

        Raises:
            ValueError: as :func:`metastructure.metrics.evaluate` (e.g. masks without a labelled pixel)."""
        val = None if validation is None else (self.predict(validation[0]), np.asarray(validation[1]))
        own = None if training is None else (self.predict(training[0]), np.asarray(training[1]))
        return metrics.evaluate(self.predict(images), np.asarray(masks), label_type=self.label_type,
                                validation=val, training=own, num_classes=self.num_classes, ignore=losses.IGNORE)


def make_step(model: nets.Model, optimizer: optax.GradientTransformation, *, loss: Callable,
              batch_size: int | None = None, targets: Callable | None = None, augment: bool = False,
              select: Callable | None = None, crop: tuple[int, int] | None = None) -> Callable:
    """The package's training step, jitted: ``step(state, key, images, labels, aux=None, idx=None, store=None)
    -> (state, loss value, store)``. :func:`fit` and :func:`metastructure.unsupervised.igtt` run it.

    Built once per configuration (cached: equal arguments give the same function, so every run with them
    reuses one compiled program; the data are arguments). A step:

    1. **batch**: with ``batch_size``, that many distinct indices drawn uniformly from ``images``' N
       (``jax.random.choice`` without replacement); with ``batch_size=None``, the caller's ``idx``. The key
       splits into the batch's, the targets' and the augmentation's keys (``jax.random.split(key, 3)``), or,
       with ``batch_size=None``, the targets' and the augmentation's (``split(key, 2)``).
    2. **targets**: ``labels[idx]``, or ``targets(key, labels[idx], aux)`` where given: labels made at load
       (a fresh noise draw, EMS); ``aux`` is any pytree of arrays the call passes through (a
       :class:`~metastructure.noise.LabelNoise`'s rates, a flag), traced, so new values do not recompile.
    3. **crop** (with ``crop=(h, w)``, or ``(d, h, w)`` for volumes): each sample's image and targets are cut
       to one window (:func:`random_crop`), after the targets are made (a structured fresh draw sees the
       whole mask). The key then splits into four (batch, targets, augmentation, crop; with
       ``batch_size=None`` three).
    4. **augment**: each sample's image and targets get the dihedral transform ``t`` (:func:`dihedral`),
       ``t`` uniform in 0..7 per sample (:func:`augment_dihedral`); volumes (images (N, D, H, W, C)) one of
       the 16 symmetries that keep z.
    5. **gradient step** of ``optimizer`` on ``loss(model.apply(params, images), targets)`` (:func:`step`;
       the logits carry the model's channel axis).
    6. **select**: ``select(logits)`` of the batch's train-mode logits before the update (no gradient) gives
       masks (B, H, W) (volumes: (B, D, H, W)), which the inverse transform of step 4 maps back and which
       are written into ``store`` (N, H, W) at the batch's indices: pseudo-labels chosen inside the step,
       as the iGTT paper's loop does (:func:`metastructure.unsupervised.select_pseudo_labels`, per image or
       batch-shared). Without
       ``select`` the ``store`` argument comes back as it went in.

    ``loss``, ``targets`` and ``select`` are closed over (one compile per function object: pass the same
    objects to reuse a compiled step).

    Raises:
        ValueError: ``batch_size`` not a positive integer or None, ``crop`` not a pair (or, for volumes, a
            triple) of positive integers, or ``crop`` with ``select`` (a window's pseudo-labels cannot fill a
            whole image's store).
        TypeError: ``loss``, ``targets`` or ``select`` not callable.
    """
    if batch_size is not None:
        batch_size = _checks.check_int("batch_size", batch_size, minimum=1)
    for name, fn, optional in (("loss", loss, False), ("targets", targets, True), ("select", select, True)):
        if not (callable(fn) or (optional and fn is None)):
            raise TypeError(f"{name} must be callable, got {fn!r}")
    if crop is not None:
        if not isinstance(crop, (tuple, list)) or len(crop) not in (2, 3):
            raise ValueError(f"crop must be a pair (height, width), or for volumes a triple (depth, height, "
                             f"width), of positive integers (or crop=None), got {crop!r}")
        crop = tuple(_checks.check_int("crop", v, minimum=1) for v in crop)
        if select is not None:
            raise ValueError("crop and select cannot be combined: select writes whole-image pseudo-labels into "
                             "the store, and a cropped step sees only a window of each image")
    return _build_step(model, optimizer, loss, batch_size, targets, bool(augment), select, crop)


def random_crop(key: jax.Array, images: jax.Array, labels: jax.Array, size: tuple[int, ...]) -> tuple[
        jax.Array, jax.Array]:
    """One ``size = (h, w)`` window per sample of images (N, H, W, C) and labels (N, H, W[, ...]), the same
    window for a sample's image and labels, its top-left corner uniform over the (H - h + 1) x (W - w + 1)
    positions that keep it inside the image. Volumes (N, D, H, W, C) take ``size = (d, h, w)``, the corner
    uniform over the (D - d + 1) x (H - h + 1) x (W - w + 1) positions.

    Returns:
        images (N, h, w, C) and labels (N, h, w[, ...]); volumes (N, d, h, w, C) and (N, d, h, w[, ...]).

    Raises:
        ValueError: a window larger than the images, or of another number of sides than their spatial axes.
    """
    size = tuple(int(v) for v in size)
    nd = len(size)
    n, spatial = images.shape[0], tuple(images.shape[1:1 + nd])
    if images.ndim != nd + 2 or not all(0 < v <= s for v, s in zip(size, spatial, strict=True)):
        raise ValueError(f"crop window {size} must fit in the images' {' x '.join(map(str, spatial))} "
                         f"(one side per spatial axis of images {images.shape})")
    corners = [jax.random.randint(k, (n,), 0, s - v + 1)
               for k, s, v in zip(jax.random.split(key, nd), spatial, size, strict=True)]

    def one(x, y, *corner):
        xs = jax.lax.dynamic_slice(x, (*corner, 0), (*size, x.shape[-1]))
        ys = jax.lax.dynamic_slice(y, corner + (0,) * (y.ndim - nd), size + y.shape[nd:])
        return xs, ys

    return jax.vmap(one)(images, labels, *corners)


@functools.lru_cache(maxsize=64)
def _build_step(model, optimizer, loss, batch_size, targets, augment, select, crop):
    """The jitted function of :func:`make_step` (kept apart: its body draws random numbers from the step's key)."""

    @jax.jit
    def run(state, key, images, labels, aux=None, idx=None, store=None):
        extra = 1 if crop is not None else 0
        if batch_size is None:
            k_targets, k_augment, *k_crop = jax.random.split(key, 2 + extra)
        else:
            k_batch, k_targets, k_augment, *k_crop = jax.random.split(key, 3 + extra)
            idx = jax.random.choice(k_batch, images.shape[0], (batch_size,), replace=False)
        xb, yb = images[idx], labels[idx]
        if targets is not None:
            yb = targets(k_targets, yb, aux)
        if crop is not None:
            xb, yb = random_crop(k_crop[0], xb, yb, crop)
        if augment:
            nd = xb.ndim - 2
            t = _dihedral_draw(k_augment, xb.shape[0], nd)
            xb, yb = dihedral(t, xb, ndim=nd), dihedral(t, yb, ndim=nd)
        new, value, logits = _gradient_step(state, xb, yb, model, optimizer, loss)
        if select is not None:
            sel = select(jax.lax.stop_gradient(logits))
            store = store.at[idx].set(dihedral(t, sel, inverse=True, ndim=nd) if augment else sel)
        return new, value, store

    return run


@functools.lru_cache(maxsize=64)
def _noise_targets(noise_def: Any) -> Callable:
    """``fit``'s targets: a LabelNoise rebuilt from its treedef and traced rates (one compile per label kind, any
    rate), or a plain callable ``noise(key, labels)`` (one compile per function object)."""
    if isinstance(noise_def, jax.tree_util.PyTreeDef):
        return lambda k, y, leaves: jax.tree_util.tree_unflatten(noise_def, leaves)(k, y)
    return lambda k, y, _: noise_def(k, y)


@functools.lru_cache(maxsize=64)
def _apply_jit(model: nets.Model):
    return jax.jit(model.apply)


def progress_bar(total: int, *, enabled: bool | None = None, desc: str = "") -> Any:
    """A tqdm bar over ``total`` steps (``tqdm.auto``, left off the screen when closed), or None when
    ``enabled`` is False (default None: when stderr is a terminal). Callers ``update`` and ``close`` it."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _resolve_label_type(label_type: Any, noise: Any, labels: Any) -> Any:
    """What the run's labels came from: given, or the fresh-draw LabelNoise; a skeleton's is replaced by its T,
    which depends on the clean masks (t* = s/2)."""
    if isinstance(noise, LabelNoise):
        if label_type is not None:
            raise ValueError("label_type is for labels whose type fit cannot see; with noise=LabelNoise(...) the "
                             "label type is known, so pass only one")
        label_type = noise
    if isinstance(label_type, Skeleton):
        if noise is None:
            raise ValueError("a skeleton's t* depends on the clean masks, which fit does not see with fixed labels: "
                             "pass label_type=ntm.skeleton_matrix(masks, skeletons)")
        label_type = label_type.transition(masks=np.asarray(labels))  # fresh: labels are the clean masks
    return label_type


def _check_labels(name: str, labels: Any, shape: tuple[int, ...], num_classes: int | None, *,
                  soft: bool) -> np.ndarray:
    """Binary: 0/1, soft targets in [0, 1] (``soft``), or IGNORE; multi-class: classes in [0, M) or IGNORE,
    or soft targets (N, H, W, M) whose rows are probability vectors. ``shape`` is the images' (N, H, W, C) or
    (N, D, H, W, C): volumes' labels carry the D axis."""
    y = np.asarray(labels)
    ig = losses.IGNORE
    k = len(shape) - 1  # the labels' axes: N and the spatial ones
    lay = "(N, H, W" if k == 3 else "(N, D, H, W"
    if y.shape[:k] != tuple(shape[:k]):
        raise ValueError(f"{name} must be {lay}) matching the images' {tuple(shape[:k])}, got shape {y.shape}")
    if num_classes is None:
        if y.ndim != k:
            raise ValueError(f"{name} of a binary network must be {lay}), got shape {y.shape}"
                             + (" (drop the channel axis: labels[..., 0])" if y.shape[k:] == (1,) else ""))
        if y.dtype.kind == "f" and soft:
            _checks.check_finite(name, y)
            ok = ((y >= 0) & (y <= 1)) | (y == ig)
            if not np.all(ok):
                bad = np.unique(y[~ok])[:5].tolist()
                hint = " (a 0/255 mask? use labels > 0)" if set(bad) <= {255.0, 65535.0} else ""
                raise ValueError(f"{name} must be 0/1, soft targets in [0, 1], or {ig} (ignore); "
                                 f"found values {bad}{hint}")
        else:
            if y.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be a bool or integer 0/1 array, got dtype {y.dtype}")
            _checks.check_binary(name, y, ignore=ig)
        return y
    if y.ndim == k + 1:
        if y.shape[k] != num_classes or y.dtype.kind != "f":
            raise ValueError(f"{name} of a network with {num_classes} classes must be class indices {lay}) or "
                             f"float soft targets {lay}, {num_classes}), got shape {y.shape}, dtype {y.dtype}")
        _checks.check_finite(name, y)
        if np.any(y < 0) or not np.allclose(y.sum(axis=-1), 1.0, atol=1e-4):
            raise ValueError(f"{name}: soft targets must be non-negative and sum to 1 over the class axis")
        return y
    if y.ndim != k:
        raise ValueError(f"{name} must be {lay}) class indices, got shape {y.shape}")
    _checks.check_labels(name, y, num_classes, ignore=ig)
    return y


@functools.lru_cache(maxsize=64)
def _output_shape(model: nets.Model, in_channels: int, *spatial: int) -> tuple[int, ...]:
    """The shape of ``model``'s output on one (1, H, W, C) image or (1, D, H, W, C) volume (traced, not
    compiled)."""
    def run():
        params = model.init(jax.random.key(0), in_channels)
        return model.apply(params, jnp.zeros((1, *spatial, in_channels), jnp.float32))

    return tuple(jax.eval_shape(run).shape)


def _crop_window(crop: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """``fit``'s ``crop`` as the window a step cuts from images of spatial ``shape`` ((H, W), or (D, H, W)),
    each side at most the image's; None when there is nothing to cut (no crop, or one that covers the images)."""
    if crop is None:
        return None
    if not isinstance(crop, (tuple, list, int, np.integer)) or isinstance(crop, bool):
        raise TypeError(f"crop must be an int, or one int or None per spatial axis, got {crop!r}")
    if isinstance(crop, (tuple, list)):
        if len(crop) != len(shape):
            raise ValueError(f"crop must give one side per spatial axis of the images ({len(shape)}: "
                             f"{' x '.join(map(str, shape))}), got {crop!r}")
        sides = [None if v is None else _checks.check_int("crop", v, minimum=1) for v in crop]
    else:
        sides = [_checks.check_int("crop", crop, minimum=1)] * len(shape)
    window = tuple(int(v) if c is None else min(c, int(v)) for c, v in zip(sides, shape, strict=True))
    return None if window == tuple(int(v) for v in shape) else window


def _check_fit_args(x: np.ndarray, labels: Any, *, model: nets.Model, steps: Any, batch_size: Any,
                    learning_rate: Any, weight_decay: Any, loss: Any, noise: Any, augment: bool,
                    num_classes: Any, validation: Any, val_every: Any,
                    window: tuple[int, ...] | None = None) -> None:
    """Every argument of :func:`fit` whose value is known now, before anything compiles."""
    _checks.check_int("steps", steps, minimum=0)
    _checks.check_int("batch_size", batch_size, minimum=1)
    _checks.check_int("val_every", val_every, minimum=1)
    _checks.check_real_number("learning_rate", learning_rate, minimum=0.0, strict=True)
    _checks.check_real_number("weight_decay", weight_decay, minimum=0.0)
    if isinstance(loss, str):
        losses.by_name(loss)  # an unknown name raises there
        if (loss in losses.MULTICLASS) != (num_classes is not None):
            raise ValueError(f"loss={loss!r} is for "
                             + ("multi-class outputs: pass num_classes" if loss in losses.MULTICLASS else
                                f"binary outputs, but num_classes={num_classes}: use loss='ce'"))
    elif not callable(loss):
        raise TypeError(f"loss must be a name of losses.NAMES or a callable, got {loss!r}")
    if noise is not None and not callable(noise):
        raise TypeError(f"noise must be a LabelNoise or a callable noise(key, labels), got {noise!r}")
    if isinstance(noise, LabelNoise):
        if isinstance(noise, Clean):  # without num_classes: clean labels of any network
            want = num_classes if noise.num_classes is None else noise.num_classes
            want = None if want == 2 and num_classes is None else want
        else:
            want = noise.num_classes  # None for the binary types
        if want != num_classes:
            raise ValueError(f"noise={noise!r} is for {'binary masks' if want is None else f'{want} classes'}, "
                             f"but num_classes={num_classes}")
    # fixed labels may be soft targets; clean labels that noise corrupts must be hard 0/1
    _check_labels("labels", labels, x.shape, num_classes, soft=noise is None)
    spatial = x.shape[1:-1]
    want_ch = 1 if num_classes is None else num_classes
    out = _output_shape(model, x.shape[-1], *spatial)
    if out != (1, *spatial, want_ch):
        raise ValueError(f"model {model.name} maps a {(1, *spatial, x.shape[-1])} batch to "
                         f"{out}; fit needs {(1, *spatial, want_ch)} "
                         f"({'one logit (binary)' if num_classes is None else f'{num_classes} logits'})")
    if window is not None:
        try:
            got = _output_shape(model, x.shape[-1], *window)
        except ValueError as e:  # e.g. a U-Net's sides that its pooling cannot halve
            got = f"an error ({e})"
        if got != (1, *window, want_ch):
            raise ValueError(f"model {model.name} cannot train on {' x '.join(map(str, window))} crops of the "
                             f"{' x '.join(map(str, spatial))} images: a {(1, *window, x.shape[-1])} "
                             f"batch gives {got}: choose another crop")
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a pair (images, masks)")
        vx = data.as_images(validation[0], name="validation images", ndim=len(spatial))
        if vx.shape[1:] != x.shape[1:]:
            raise ValueError(f"validation images must be (n, {', '.join(map(str, x.shape[1:]))}) like "
                             f"the training images, got {vx.shape}")
        vy = _check_labels("validation masks", validation[1], vx.shape, num_classes, soft=False)
        if vy.ndim == len(spatial) + 1 and vy.size and np.all(vy == losses.IGNORE):
            raise ValueError(f"validation masks have no labelled pixel (every pixel is {losses.IGNORE}, ignore): "
                             "nothing to score")


def fit(
    key: jax.Array,
    images: Any,
    labels: Any,
    *,
    model: nets.Model | None = None,
    steps: int = 300,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    optimizer: str | optax.GradientTransformation = "adam",
    weight_decay: float = 0.0,
    loss: str | Callable = "bce",
    noise: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    label_type: Any = None,
    augment: bool = False,
    crop: int | tuple[int | None, ...] | None = None,
    num_classes: int | None = None,
    validation: tuple[Any, Any] | None = None,
    val_every: int = 50,
    callback: Callable[[int, FitResult], Any] | None = None,
    init_params: Any = None,
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` on (images, labels) and return a :class:`FitResult`.

    Each step draws a batch of ``batch_size`` images without replacement, makes
    its labels (``noise`` applied afresh, then ``augment``) and takes one
    gradient step of ``optimizer`` on ``loss`` (:func:`make_step`, jitted once per
    configuration and reused by every run).

    Args:
        key: randomness for init, batches, fresh noise and augmentation.
        images: float (N, H, W, C), or volumes (N, D, H, W, C) for a 3-D model
            (``nets.unet(ndim=3)``; the default model for images of rank 5).
        labels: the targets: a fixed (noisy) label array (N, H, W) (volumes: (N, D, H, W)), or, with
            ``noise``, the *clean* labels that ``noise`` corrupts afresh each step.
        model: default ``nets.unet()`` with one logit (or ``num_classes`` logits), ``nets.unet(ndim=3)``
            for volumes.
        steps, batch_size, learning_rate, optimizer, weight_decay: training setup
            (``steps`` >= 0, and 0 returns the initial parameters;
            ``optimizer`` may be an optax transformation).
        loss: a name of :data:`metastructure.losses.NAMES` ("bce", "ce"
            (multi-class, ignore = -1), "bce+iou", "dmi+iou"), or a callable
            ``loss(logits, targets)``.
        noise: ``noise(key, clean_labels_batch) -> noisy batch`` for fresh draws;
            a :class:`~metastructure.noise.LabelNoise` compiles once per kind
            (its rates are traced), any other callable once per object. On
            volumes the ``LabelNoise`` must draw in 3-D (``Sample(0.1, ndim=3)``).
        label_type: for fixed labels, what they came from: a ``LabelNoise`` or
            its transition matrix (with ``noise=LabelNoise(...)`` it is that
            one). :meth:`FitResult.evaluate` and the validation use it for t*.
            A skeleton's t* depends on the clean masks: pass its transition
            (``ntm.skeleton_matrix``) for fixed skeleton labels.
        augment: random dihedral flip/rotation of each sample at each step (:func:`augment_dihedral`;
            non-square images: flips and the half turn; volumes: also a flip of D, the 16 symmetries that
            keep z).
        crop: train on windows: each sample of each batch is cut to one
            ``crop`` x ``crop`` window (``crop`` on every side of a volume) at a uniform random position
            (:func:`random_crop`; a side of the images no longer than ``crop``
            is kept whole, so a thin stack keeps its depth), after its labels are made and before
            ``augment``. A tuple or list gives one side per spatial axis, None keeping that side whole:
            ``crop=(8, None, None)`` cuts only the depth of a volume, so that a plane's position in the
            window tells less of which planes of its volume were labelled (every k-th slice stored with
            the rest as background: a U-Net on whole thin stacks learns each depth's labelled share;
            theory/README.md, step 15). A step then
            costs about window / image pixels of a whole-image step. None (default), or a ``crop`` no
            smaller than every side, trains on whole images (bitwise the same run).
        num_classes: None for binary, M for multi-class (softmax outputs).
        validation: (images, masks) scored every ``val_every`` steps and at the
            last (:meth:`FitResult.evaluate`: every threshold protocol, t*
            included where the label type has one; multi-class: mIoU) into
            ``history["val"]``; -1 pixels of the masks are left out of the scores.
        callback: ``callback(step, result)`` called every ``val_every`` steps
            (and at the last) with the current :class:`FitResult`; what it
            returns is appended to ``history["callback"]`` (custom evaluation).
        init_params: start from these parameters (e.g. a previous fit's, to
            continue training on new labels) instead of a fresh init; the
            optimizer state starts afresh.
        progress: a tqdm bar (default: when stderr is a terminal).

    Every value is checked before anything compiles: images finite and
    non-empty; binary labels 0/1 (fixed labels may also be soft targets in
    [0, 1]) or -1 (:data:`metastructure.losses.IGNORE`, left out of every
    loss); multi-class labels in [0, M) or -1, or soft (N, H, W, M); the
    model's output shape; the loss matching the output (binary names against
    "ce"); integer counts and finite rates. A loss that turns NaN or infinite
    during training (divergence) raises ``FloatingPointError`` naming the step:
    at the next validation or callback step when those are set, else at the end.

    Raises:
        ValueError: a bad value or an inconsistent shape (the message names the
            argument; validation masks with no labelled pixel among them), an
            unknown loss, ``init_params`` of another structure, a label type
            fit cannot resolve, or a ``LabelNoise`` whose ``ndim`` is not the images'.
        TypeError: a non-integer count, a non-numeric array, a loss or noise
            that is not callable, a model that is not a :class:`~metastructure.nets.Model`.
        FloatingPointError: the training loss became NaN or infinite.
    """
    if num_classes is not None:
        num_classes = _checks.check_num_classes(num_classes)
    if model is not None and not isinstance(model, nets.Model):
        raise TypeError(f"model must be a nets.Model (nets.unet(...), nets.fcn(...)), got {model!r}")
    # a 3-D model takes volumes; without a model, images of rank 5 are volumes and get a 3-D U-Net
    nd = dict(model.config).get("ndim", 2) if model is not None else (3 if np.ndim(images) == 5 else 2)
    x_host = data.as_images(images, ndim=nd)
    out_ch = 1 if num_classes is None else num_classes
    model = model or nets.unet(out_channels=out_ch, ndim=nd)
    if isinstance(noise, LabelNoise) and noise.ndim != nd:
        what = "volumes" if nd == 3 else "images"
        raise ValueError(f"noise={noise!r} draws {noise.ndim}-D labels, but the {what} are {nd}-D: build it with "
                         f"ndim={nd} (LabelNoise.parse({noise.name!r}, ndim={nd}))")
    window = _crop_window(crop, x_host.shape[1:-1])
    _check_fit_args(x_host, labels, model=model, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                    weight_decay=weight_decay, loss=loss, noise=noise, augment=augment, num_classes=num_classes,
                    validation=validation, val_every=val_every, window=window)
    steps, batch_size, val_every = int(steps), int(batch_size), int(val_every)
    x = jnp.asarray(x_host, jnp.float32)
    y = jnp.asarray(labels)
    loss_fn = losses.by_name(loss) if isinstance(loss, str) else loss
    opt = make_optimizer(optimizer, learning_rate=learning_rate, weight_decay=weight_decay) \
        if isinstance(optimizer, str) else optimizer
    label_type = _resolve_label_type(label_type, noise, labels)
    k_init, k_loop = jax.random.split(key)
    state = init(k_init, model, x.shape[-1], opt)
    if init_params is not None:
        if jax.tree_util.tree_structure(init_params) != jax.tree_util.tree_structure(state.params):
            raise ValueError("init_params must have the structure of model.init's parameters")
        state = fresh_state(init_params, opt)
    n = x.shape[0]
    bs = min(batch_size, n)

    if isinstance(noise, LabelNoise):
        leaves, noise_def = jax.tree_util.tree_flatten(noise)
        leaves = [jnp.asarray(v, jnp.float32) for v in leaves]
    else:
        leaves, noise_def = [], noise
    train_step = make_step(model, opt, loss=loss_fn, batch_size=bs, augment=bool(augment),
                           targets=None if noise_def is None else _noise_targets(noise_def), crop=window)

    history: dict = {"step": [], "loss": [], "val_step": [], "val": [], "callback": [], "seconds": 0.0}
    bar = progress_bar(steps, enabled=progress, desc=f"fit {model.name}")
    t0 = time.perf_counter()
    regime = "fresh" if noise is not None else "fixed"
    result = FitResult(state.params, model, history, regime, num_classes, label_type)
    for i in range(steps):
        state, value, _ = train_step(state, jax.random.fold_in(k_loop, i), x, y, leaves)
        history["step"].append(i + 1)
        history["loss"].append(value)
        if (validation is not None or callback is not None) and ((i + 1) % val_every == 0 or i + 1 == steps):
            if not np.isfinite(float(value)):
                raise FloatingPointError(f"the training loss became {float(value)} by step {i + 1} of {steps} "
                                         "(inputs checked and finite: training diverged; lower learning_rate)")
            result = result._replace(params=state.params)
            history["val_step"].append(i + 1)
            if validation is not None:
                history["val"].append(result.evaluate(*validation))
            if callback is not None:
                history["callback"].append(callback(i + 1, result))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    history["loss"] = [float(v) for v in jax.device_get(history["loss"])]
    history["seconds"] = time.perf_counter() - t0
    bad = np.flatnonzero(~np.isfinite(history["loss"]))
    if bad.size:
        raise FloatingPointError(
            f"the training loss became {history['loss'][bad[0]]} at step {bad[0] + 1} of {steps} (the inputs were "
            "checked and are finite, so training diverged: lower learning_rate, or check a custom loss or noise)")
    return result._replace(params=state.params)


def fit_many(keys: jax.Array, images: Any, label_sets: list[Any], **kwargs: Any) -> list[FitResult]:
    """Train one network per (key, label set) pair: seeds x label types, one after another.

    ``keys`` (S,) and ``label_sets`` (a list of S label arrays, or one array
    shared by all) pair up; keyword arguments go to :func:`fit`. Every run
    reuses one compiled step, so S runs cost about S times one run. A
    ``jax.vmap`` over replicas turns each convolution with per-replica weights
    into a grouped convolution, which XLA:CPU runs slower than the replicas in
    sequence (bench/README.md has the measurement), so there is no vmapped path.

    Returns:
        The S results, in order; run i equals ``fit(keys[i], images, label_sets[i], **kwargs)`` bitwise.
    """
    keys = jnp.asarray(keys) if not isinstance(keys, list) else keys
    s = len(keys)
    if not isinstance(label_sets, (list, tuple)):
        label_sets = [label_sets] * s
    if len(label_sets) != s:
        raise ValueError(f"need one label set per key: {s} keys, {len(label_sets)} label sets")
    return [fit(keys[i], images, label_sets[i], **kwargs) for i in range(s)]
