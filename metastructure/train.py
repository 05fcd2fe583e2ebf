r"""Training: losses, a pure ``init`` / ``step`` pair, ``fit`` and ``fit_many``.

Two label-noise regimes, both first-class (PAPER.md section 3):

* **fixed**: ``labels`` is an array, one noisy draw made before training (what
  the paper did). A network with enough capacity can memorise the drawn pixels.
* **fresh**: ``noise`` is a function ``noise(key, clean_batch) -> noisy_batch``
  applied to the clean ``labels`` at every step. BCE and CE are linear in the
  target, so this is SGD on the soft-label problem, whose optimum is the affine
  image b + (1-f-b) P of the clean posterior.

Every :class:`FitResult` records its ``regime`` so results say which one they
come from. Same key, same data: bitwise identical parameters on CPU.

Losses (means over labelled pixels):

* :func:`bce_with_logits`: -t log s(z) - (1-t) log(1 - s(z)), soft targets allowed;
* :func:`cross_entropy`: softmax CE with an ``ignore`` label;
* :func:`soft_iou_loss`: 1 - sum(p t) / sum(p + t - p t);
* :func:`dmi_loss`: -log |det(P S^T / n)| with P = [p; 1-p], S = [s; 1-s] (PAPER.md 6).
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import metrics, nets
from .density import matched_threshold
from .noise import LabelNoise

__all__ = [
    "FitResult",
    "TrainState",
    "augment_dihedral",
    "bce_with_logits",
    "cross_entropy",
    "dmi_loss",
    "fit",
    "fit_many",
    "init",
    "make_optimizer",
    "soft_iou_loss",
    "step",
]


# ----------------------------------------------------------------------- losses
def bce_with_logits(logits: jax.Array, targets: jax.Array, *, ignore: int | None = -1) -> jax.Array:
    """Mean sigmoid binary cross-entropy on logits (..., H, W[, 1]); soft targets allowed."""
    z = logits[..., 0] if logits.shape[-1:] == (1,) and logits.ndim == targets.ndim + 1 else logits
    t = targets.astype(jnp.float32)
    valid = jnp.ones(t.shape, bool) if ignore is None else t != ignore
    t = jnp.where(valid, t, 0.0)
    per = jnp.maximum(z, 0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z)))
    return jnp.sum(per * valid) / jnp.maximum(jnp.sum(valid), 1)


def cross_entropy(logits: jax.Array, labels: jax.Array, *, ignore: int | None = -1) -> jax.Array:
    """Mean softmax cross-entropy over pixels whose label is not ``ignore``.

    ``labels`` are class indices (..., H, W), or soft targets (..., H, W, M).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    if labels.ndim == logits.ndim:  # soft targets
        return -jnp.mean(jnp.sum(labels * logp, axis=-1))
    valid = jnp.ones(labels.shape, bool) if ignore is None else labels != ignore
    lab = jnp.where(valid, labels, 0).astype(jnp.int32)
    nll = -jnp.take_along_axis(logp, lab[..., None], axis=-1)[..., 0]
    return jnp.sum(nll * valid) / jnp.maximum(jnp.sum(valid), 1)


def soft_iou_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """1 - soft IoU of sigmoid probabilities against (soft) binary targets."""
    z = logits[..., 0] if logits.ndim == targets.ndim + 1 else logits
    p = jax.nn.sigmoid(z)
    t = targets.astype(jnp.float32)
    inter = jnp.sum(p * t)
    return 1.0 - inter / jnp.maximum(jnp.sum(p + t - p * t), 1e-6)


def dmi_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Determinant-based mutual information loss, -log |det(P S^T / n)|.

    P = [p; 1-p] (network probabilities) and S = [s; 1-s] (targets), 2 x n over
    the pixels: P S^T / n is their 2 x 2 empirical joint. Invariant to any
    invertible noise transition (Xu et al., 2019), so it rewards information,
    not agreement.
    """
    z = logits[..., 0] if logits.ndim == targets.ndim + 1 else logits
    p = jax.nn.sigmoid(z).ravel()
    s = targets.astype(jnp.float32).ravel()
    P = jnp.stack([p, 1 - p])
    S = jnp.stack([s, 1 - s])
    joint = P @ S.T / p.size
    return -jnp.log(jnp.abs(jnp.linalg.det(joint)) + 1e-12)


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "bce": bce_with_logits,
    "ce": cross_entropy,
    "bce+iou": lambda z, t: bce_with_logits(z, t) + soft_iou_loss(z, t),
    "dmi+iou": lambda z, t: dmi_loss(z, t) + soft_iou_loss(z, t),
}


# ------------------------------------------------------------------ state, step
class TrainState(NamedTuple):
    """Everything that changes during training (a pytree)."""

    params: Any
    opt_state: Any
    step: jax.Array


@functools.lru_cache(maxsize=32)
def make_optimizer(
    name: str = "adam",
    learning_rate: float = 1e-3,
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    decay_every: int | None = None,
    decay_factor: float = 0.1,
) -> optax.GradientTransformation:
    """Adam (default; AdamW when ``weight_decay`` > 0) or SGD with momentum, weight
    decay and a step schedule (x ``decay_factor`` every ``decay_every`` steps, as
    in the paper: lr 0.05, momentum 0.9, weight decay 1e-3, x0.1 every 20 epochs).
    Cached: equal arguments give the same object, so jitted steps are reused.
    """
    lr: Any = learning_rate
    if decay_every:
        lr = optax.exponential_decay(learning_rate, decay_every, decay_factor, staircase=True)
    if name == "adam":
        return optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum))
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def init(key: jax.Array, model: nets.Model, in_channels: int, optimizer: optax.GradientTransformation) -> TrainState:
    """Fresh parameters and optimizer state."""
    params = model.init(key, in_channels)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def step(state: TrainState, images: jax.Array, targets: jax.Array, *, model: nets.Model,
         optimizer: optax.GradientTransformation, loss: Callable) -> tuple[TrainState, jax.Array]:
    """One gradient step on a batch; pure (jit it with ``model``, ``optimizer``, ``loss`` closed over)."""

    def objective(params):
        return loss(model.apply(params, images), targets)

    value, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), value


def augment_dihedral(key: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each sample gets one of the 8 flips/rotations (images NHWC, labels NHW[...])."""
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"dihedral augmentation needs square images, got {images.shape[1:3]}")
    ks = jax.random.randint(key, (images.shape[0],), 0, 8)

    def one(k, im, lab):
        def t(i):
            def f(a):
                a = jnp.rot90(a, i % 4, axes=(0, 1))
                return a[:, ::-1] if i >= 4 else a

            return lambda pair: (f(pair[0]), f(pair[1]))

        return jax.lax.switch(k, [t(i) for i in range(8)], (im, lab))

    return jax.vmap(one)(ks, images, labels)


# ------------------------------------------------------------------------ fit
class FitResult(NamedTuple):
    """A trained model: ``predict(images)`` gives probabilities; ``history`` the curves."""

    params: Any
    model: nets.Model
    history: dict
    regime: str
    num_classes: int | None

    def logits(self, images: Any, *, batch_size: int = 16) -> np.ndarray:
        x = jnp.asarray(images, jnp.float32)
        f = _apply_jit(self.model)
        return np.concatenate([np.asarray(f(self.params, x[i : i + batch_size]))
                               for i in range(0, x.shape[0], batch_size)])

    def predict(self, images: Any, *, batch_size: int = 16) -> np.ndarray:
        """Per-pixel probabilities: binary (N, H, W) in [0, 1]; multi-class (N, H, W, M)."""
        z = self.logits(images, batch_size=batch_size)
        if self.num_classes is None:
            return np.asarray(jax.nn.sigmoid(z[..., 0]))
        return np.asarray(jax.nn.softmax(z, axis=-1))


@functools.lru_cache(maxsize=64)
def _train_step(model: nets.Model, opt, loss_fn, noise_def, augment: bool, bs: int):
    """One jitted step per configuration, shared by every run (data are arguments).

    ``noise_def`` is None, a plain callable (closed over: one compile per
    function object), or the treedef of a :class:`~metastructure.noise.LabelNoise`
    whose rates arrive as traced leaves (one compile per label kind, any rate).
    """

    @jax.jit
    def train_step(state, k, x, y, noise_leaves):
        kb, kn, ka = jax.random.split(k, 3)
        idx = jax.random.choice(kb, x.shape[0], (bs,), replace=False)
        xb, yb = x[idx], y[idx]
        if isinstance(noise_def, jax.tree_util.PyTreeDef):
            yb = jax.tree_util.tree_unflatten(noise_def, noise_leaves)(kn, yb)
        elif noise_def is not None:
            yb = noise_def(kn, yb)
        if augment:
            xb, yb = augment_dihedral(ka, xb, yb)
        return step(state, xb, yb, model=model, optimizer=opt, loss=loss_fn)

    return train_step


@functools.lru_cache(maxsize=64)
def _apply_jit(model: nets.Model):
    return jax.jit(model.apply)


def _progress(total: int, enabled: bool | None, desc: str):
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _validate(result_probs: np.ndarray, masks: np.ndarray, transition: Any, num_classes: int | None) -> dict:
    if num_classes is not None:
        return {"miou": float(metrics.miou(result_probs.argmax(-1), masks, num_classes))}
    out = {
        "dice_0.5": float(metrics.dice(result_probs > 0.5, masks)),
        "dice_best": metrics.best_threshold(result_probs, masks, metric="dice")[1],
        "auc": float(metrics.roc_auc(result_probs, masks)),
        "mean_out_fg": float(result_probs[masks == 1].mean()) if (masks == 1).any() else float("nan"),
        "mean_out_bg": float(result_probs[masks == 0].mean()) if (masks == 0).any() else float("nan"),
    }
    if transition is not None:
        m = matched_threshold(transition)
        out["dice_tstar"] = float(metrics.dice(m.apply(result_probs), masks))
    return out


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
    augment: bool = False,
    num_classes: int | None = None,
    validation: tuple[Any, Any] | None = None,
    val_every: int = 50,
    transition: Any = None,
    callback: Callable[[int, FitResult], dict | None] | None = None,
    init_params: Any = None,
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` on (images, labels) and return a :class:`FitResult`.

    Args:
        key: randomness for init, batches, fresh noise and augmentation.
        images: float (N, H, W, C).
        labels: the targets: a fixed (noisy) label array (N, H, W), or, with
            ``noise``, the *clean* labels that ``noise`` corrupts afresh each step.
        model: default ``nets.unet()`` with one logit (or ``num_classes`` logits).
        steps, batch_size, learning_rate, optimizer, weight_decay: training setup
            (``optimizer`` may be an optax transformation).
        loss: "bce", "ce" (multi-class, ignore = -1), "bce+iou", "dmi+iou", or a
            callable ``loss(logits, targets)``.
        noise: ``noise(key, clean_labels_batch) -> noisy batch`` for fresh draws;
            a :class:`~metastructure.noise.LabelNoise` compiles once per kind
            (its rates are traced), any other callable once per object.
        augment: random dihedral flip/rotation of each sample at each step.
        num_classes: None for binary, M for multi-class (softmax outputs).
        validation: (images, masks) evaluated every ``val_every`` steps (Dice at
            0.5, best Dice, AUC, mean outputs; ``dice_tstar`` when ``transition``
            is given; mIoU for multi-class).
        callback: ``callback(step, result)`` called every ``val_every`` steps
            (and at the last) with the current :class:`FitResult`; what it
            returns is appended to ``history["callback"]`` (custom evaluation).
        init_params: start from these parameters (e.g. a previous fit's, to
            continue training on new labels) instead of a fresh init; the
            optimizer state starts afresh.
        progress: a tqdm bar (default: when stderr is a terminal).
    """
    x = jnp.asarray(images, jnp.float32)
    y = jnp.asarray(labels)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    if y.shape[:3] != x.shape[:3]:
        raise ValueError(f"labels must be (N, H, W) matching images {x.shape[:3]}, got {y.shape}")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps}, {batch_size}")
    out_ch = 1 if num_classes is None else int(num_classes)
    model = model or nets.unet(out_channels=out_ch)
    if isinstance(loss, str) and loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    opt = make_optimizer(optimizer, learning_rate, weight_decay=weight_decay) if isinstance(optimizer, str) else optimizer
    k_init, k_loop = jax.random.split(key)
    state = init(k_init, model, x.shape[-1], opt)
    if init_params is not None:
        if jax.tree_util.tree_structure(init_params) != jax.tree_util.tree_structure(state.params):
            raise ValueError("init_params must have the structure of model.init's parameters")
        state = TrainState(init_params, opt.init(init_params), state.step)
    n = x.shape[0]
    bs = min(batch_size, n)

    if isinstance(noise, LabelNoise):
        leaves, noise_def = jax.tree_util.tree_flatten(noise)
        leaves = [jnp.asarray(v, jnp.float32) for v in leaves]
    else:
        leaves, noise_def = [], noise
    train_step = _train_step(model, opt, loss_fn, noise_def, bool(augment), bs)

    history: dict = {"step": [], "loss": [], "val_step": [], "val": [], "callback": [], "seconds": 0.0}
    bar = _progress(steps, progress, f"fit {model.name}")
    t0 = time.perf_counter()
    regime = "fresh" if noise is not None else "fixed"
    if transition is None and isinstance(noise, LabelNoise) and noise.kind != "clean":
        transition = noise.transition()
    result = FitResult(state.params, model, history, regime, num_classes)
    for i in range(steps):
        state, value = train_step(state, jax.random.fold_in(k_loop, i), x, y, leaves)
        history["step"].append(i + 1)
        history["loss"].append(value)
        if (validation is not None or callback is not None) and ((i + 1) % val_every == 0 or i + 1 == steps):
            result = result._replace(params=state.params)
            history["val_step"].append(i + 1)
            if validation is not None:
                probs = result.predict(validation[0])
                history["val"].append(_validate(probs, np.asarray(validation[1]), transition, num_classes))
            if callback is not None:
                history["callback"].append(callback(i + 1, result))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    history["loss"] = [float(v) for v in jax.device_get(history["loss"])]
    history["seconds"] = time.perf_counter() - t0
    return result._replace(params=state.params)


def fit_many(
    keys: jax.Array,
    images: Any,
    label_sets: list[Any],
    *,
    strategy: str = "auto",
    **kwargs: Any,
) -> list[FitResult]:
    """Train one network per (key, label set) pair: seeds x label types.

    ``keys`` (S,) and ``label_sets`` (a list of S label arrays, or one array
    shared by all) pair up. ``strategy``: "sequential" (one jitted step, compiled
    once, reused for every run: fastest on CPU, where vmapped convolutions with
    per-replica weights become grouped convolutions, measured 4.8x slower than
    sequential for 4 U-Nets) or "auto" (sequential on CPU; on accelerators too
    until a vmapped path is measured faster there). Keyword arguments go to
    :func:`fit`.
    """
    keys = jnp.asarray(keys) if not isinstance(keys, list) else keys
    s = len(keys)
    if not isinstance(label_sets, (list, tuple)):
        label_sets = [label_sets] * s
    if len(label_sets) != s:
        raise ValueError(f"need one label set per key: {s} keys, {len(label_sets)} label sets")
    if strategy not in ("auto", "sequential"):
        raise ValueError(f"strategy must be 'auto' or 'sequential', got {strategy!r}")
    return [fit(keys[i], images, label_sets[i], **kwargs) for i in range(s)]
