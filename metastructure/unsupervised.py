r"""Unsupervised segmentation with meta-structures: iGTT with EMS, the recommended method, and the baselines.

The iterative ground-truth training (iGTT) model and its extraction of
meta-structure (EMS) module are those of Luo et al. (arXiv 2103.11594 and
2205.00160); this is our implementation of them, from their description and
the facts of their public code.

:func:`igtt` runs one loop whose every choice is an option of
:class:`IGTTConfig`; :data:`PRESETS` names two configurations:

* ``"recommended"`` (the defaults, ``igtt(key, images)``): start from a
  threshold's masks (Otsu or a 35-px adaptive threshold, chosen without the
  truth by :func:`thick_share` and :func:`~metastructure.thresholds.local_separation`), turn them into
  sparse labels with :func:`ems` (10% of a shifted skeleton for thin
  structures, of the masks themselves for thick objects: a threshold's
  systematic, PCL-like errors become sampling-like ones whose meta-structure
  a network recovers), train a U-Net with BCE, take each image's Otsu
  threshold of the output as the next masks; two rounds, keeping the one
  whose masks split the image locally best. The ``igtt`` experiment of the
  simulations measures it against the thresholds and the authors'
  configuration.
* ``"paper"``: the authors' loop (all-black start, DMI + soft IoU, DMI-selected
  pseudo-labels inside each epoch, EMS at load, 100 epochs of SGD).

EMS (:func:`ems`): invert when the mask covers more than half the image,
skeletonize (or not, for thick objects: not the paper's), shift every pixel
uniformly within ``radius``, keep a random ``ratio`` of them. Selection (:func:`select_pseudo_labels`): K = 30
thresholds evenly spaced between an image's smallest and largest output,
scored by DMI (the paper's) or Otsu's criterion.

The thresholds it starts from, and the baselines it is measured against
(Otsu, adaptive, exact k-means) live in :mod:`metastructure.thresholds`.
:func:`minority_side` (EMS's size rule) and :func:`thick_share` (thin or thick
objects: what EMS samples and where ``start="auto"`` looks) stay here: they
orient and measure masks for EMS, not threshold intensities. The training step
is :func:`metastructure.train.make_step`, with iGTT's labels at load and
in-step selection as its hooks.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, data, losses, nets, noise, thresholds, train

__all__ = ["EMS_SOURCES", "IGTTConfig", "IGTTResult", "PRESETS", "SELECTIONS", "STARTS", "ems", "igtt", "igtt_masks",
           "minority_side", "select_pseudo_labels", "start_masks", "thick_share"]


# ------------------------------------------------------------------ EMS
EMS_SOURCES = ("skeleton", "mask")


def ems(key: jax.Array, mask: Any, *, radius: int = 1, ratio: float = 0.1, invert: bool = True,
        source: str = "skeleton") -> jax.Array:
    r"""Extraction of meta-structure from a binary mask (..., H, W), per image.

    1. invert the mask if it covers more than half the image (the size rule:
       objects are the minority class; ``invert=False`` skips it, for masks
       already oriented);
    2. ``source="skeleton"``: skeletonize (:func:`metastructure.noise.skeletonize`);
       ``source="mask"``: the mask itself goes on (not the paper's: for thick
       objects, whose skeleton is a structured, skeleton-type label error,
       the sample of steps 3-4 is then a sampling-like one of the whole object);
    3. shift each remaining pixel by an independent uniform offset in
       {-radius..radius}^2 (:func:`metastructure.noise.shift`; pixels landing
       on the same place merge);
    4. keep exactly ceil(ratio * N) of the N shifted pixels, uniformly
       (:func:`metastructure.noise.sample`).

    Returns a bool mask of the input's shape.

    >>> import jax, numpy as np
    >>> m = np.zeros((32, 32), bool); m[8:24, 12:20] = True
    >>> e = ems(jax.random.key(0), m, radius=1, ratio=0.5)
    >>> int(e.sum()) <= 9, bool(e[:, :10].any())
    (True, False)
    """
    _checks.check_unit_interval("ratio", ratio)
    if source not in EMS_SOURCES:
        raise ValueError(f"source must be one of {EMS_SOURCES}, got {source!r}")
    _checks.check_binary("mask", mask)
    m = jnp.asarray(mask).astype(bool)
    if m.ndim < 2:
        raise ValueError(f"mask must be (..., H, W), got shape {m.shape}")
    if invert:
        m = jnp.where(jnp.mean(m, axis=(-2, -1), keepdims=True) > 0.5, ~m, m)
    k_shift, k_keep = jax.random.split(key)
    sk = noise.skeletonize(m) if source == "skeleton" else m
    moved = noise.shift(k_shift, sk, int(radius))
    return noise.sample(k_keep, moved, ratio).astype(bool)


# ------------------------------------------------------------------ selection
SELECTIONS = ("dmi", "otsu")


def _select(p: jax.Array, *, num_thresholds: int, selection: str, shared: bool) -> jax.Array:
    """Selected masks (N, H, W) of outputs p (N, H, W); with ``shared`` one threshold index for all.

    Both criteria are functions of two sums per candidate s_k = [p > t_k]: its pixel count c_k and
    d_k = sum over s_k of (p - mean p), which is n cov(p, s_k). DMI's score is -log(|d_k / n| + 1e-12)
    (det(P S^T / n) = cov(p, s) for binary s); Otsu's is minus the between-class share of the output's
    variance, pi (1 - pi) (E[p|s] - E[p|~s])^2 / var p, with pi = c_k / n and
    E[p|s] - E[p|~s] = d_k / c_k + d_k / (n - c_k). The sums reduce the comparison p > t_k without
    materialising the (N, K, H, W) candidates.
    """
    frac = jnp.arange(1, num_thresholds + 1, dtype=jnp.float32) / (num_thresholds + 1)
    lo, hi = jnp.min(p, axis=(1, 2)), jnp.max(p, axis=(1, 2))
    ts = lo[:, None] + frac[None] * (hi - lo)[:, None]  # (N, K)
    n = p.shape[1] * p.shape[2]
    centred = p - jnp.mean(p, axis=(1, 2), keepdims=True)
    above = p[:, None] > ts[:, :, None, None]  # (N, K, H, W), reduced at once
    count = jnp.sum(above, axis=(2, 3), dtype=jnp.float32)
    d = jnp.sum(jnp.where(above, centred[:, None], 0.0), axis=(2, 3))
    if selection == "dmi":
        scores = -jnp.log(jnp.abs(d / n) + 1e-12)
    else:
        pi = count / n
        gap = d / jnp.maximum(count, 1.0) + d / jnp.maximum(n - count, 1.0)
        scores = -pi * (1 - pi) * gap**2 / jnp.maximum(jnp.var(p, axis=(1, 2)), 1e-12)[:, None]
    k = jnp.argmin(jnp.mean(scores, axis=0)) if shared else jnp.argmin(scores, axis=1)
    t = jnp.take_along_axis(ts, jnp.broadcast_to(k, (p.shape[0],))[:, None], axis=1)
    return (p > t[:, :, None]) & (hi > lo)[:, None, None]


def select_pseudo_labels(probs: Any, *, num_thresholds: int = 30, selection: str = "dmi",
                         shared: bool = False) -> jax.Array:
    r"""Per image, the thresholded output that best explains the output.

    Candidates are ``probs > t`` for ``num_thresholds`` levels t evenly spaced
    strictly between the image's minimum and maximum output (so no candidate
    is empty or full). ``selection`` scores them:

    * "dmi" (the paper's): the lowest DMI loss :math:`-\log |\det(P S^T / n)|`
      (:func:`metastructure.losses.dmi_loss_from_probs`). For a binary
      candidate s covering a fraction pi of the image, det(P S^T / n) =
      cov(p, s) = pi (1 - pi) (E[p | s] - E[p | not s]) = sqrt(pi (1 - pi))
      sd(p) corr(p, s): the selection favours candidates near half the image,
      so it over-segments small objects. It is blind to polarity.
    * "otsu": the largest between-class share of the output's variance,
      pi (1 - pi) (E[p | s] - E[p | not s])^2 / var(p) = corr(p, s)^2: Otsu's
      criterion on the K candidates (no pull towards half-image masks).

    With ``shared`` one threshold index k serves the whole batch, the one
    with the best mean score (the authors average DMI over a batch, so their
    code selects one k per batch). Images whose output is constant get an
    empty mask.

    Args:
        probs: (N, H, W) probabilities (or (H, W)).

    Returns:
        bool masks of the same shape.

    >>> p = np.array([[0.1, 0.2, 0.8, 0.9]] * 4)
    >>> select_pseudo_labels(p).astype(int)[0].tolist()
    [0, 0, 1, 1]
    """
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    _checks.check_finite("probs", probs)
    p = jnp.asarray(probs, jnp.float32)
    single = p.ndim == 2
    p = p[None] if single else p
    if p.ndim != 3:
        raise ValueError(f"probs must be (N, H, W) or (H, W), got shape {np.shape(probs)}")
    out = _select(p, num_thresholds=int(num_thresholds), selection=selection, shared=bool(shared))
    return out[0] if single else out


# ------------------------------------------------------------------ the images as iGTT reads them
_HUGE = 2.0**256  # beyond this magnitude an image is first scaled down by a power of two (its squares stay finite)
_FLAT_SD = 1e-6  # a channel whose standard deviation over (H, W) is at most this (the normaliser's floor) shows nothing


def _read_images(images: Any, *, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``images`` as :func:`igtt`'s network reads them ((N, H, W, C) float32), and which of them are flat ((N,)
    bool); the rule is stated in :func:`igtt`'s docstring.

    Raises:
        ValueError: images not (N, H, W, C), empty, NaN or infinite (:func:`metastructure.data.as_images`);
            another number of channels than ``channels``.
        TypeError: a non-real dtype.
    """
    x = data.as_images(images, dtype=np.float64)
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"images must have {channels} channel(s), as those the network was trained on, got "
                         f"{x.shape[-1]} (shape {x.shape})")
    top = np.max(np.abs(x), axis=(1, 2, 3))
    shift = np.where(top > _HUGE, np.frexp(top)[1] - 257, 0)
    x = np.ldexp(x, -shift[:, None, None, None])  # exact: a power of two
    mean, sd = x.mean(axis=(1, 2, 3)), x.std(axis=(1, 2, 3))
    standard = (np.abs(mean) <= 1e-3) & (np.abs(sd - 1) <= 1e-3)
    z = data.as_images(x, zscore=True)
    z[standard] = x[standard].astype(np.float32)  # as given: the cast data.as_images(images) makes
    # every channel's own spread, in the image's units (the power of two undone on the floor), not the
    # standardised one: channels of differing means each have a small share of the image's spread. Taken about
    # one of its pixels, so that a constant channel has exactly 0 (its mean can be off by an ulp of a huge value)
    spread = (x - x[:, :1, :1, :]).std(axis=(1, 2))
    flat = np.all(spread <= np.ldexp(_FLAT_SD, -shift)[:, None], axis=-1)
    return z, flat


# ------------------------------------------------------------------ starts
def start_masks(images: Any, *, start: str = "auto", block_size: int = 35,
                thick_radius: float = 3.0) -> tuple[np.ndarray, str]:
    """The masks a run of :func:`igtt` starts from, and the start's name.

    ``start``: "black" (all background, the paper's), "otsu" (:func:`metastructure.thresholds.otsu`), "adaptive"
    (:func:`metastructure.thresholds.adaptive` with ``block_size``), or "auto": Otsu when its objects
    are thick (over half their area holds a disc of ``thick_radius``,
    :func:`thick_share`: blobs, whose insides a local threshold splits as
    readily as their edges), else
    whichever of Otsu and adaptive has the larger mean
    :func:`~metastructure.thresholds.local_separation` (window ``block_size``) over the images: the
    local threshold where illumination is uneven, the global one where it is
    not. No ground truth.
    """
    x = thresholds.grayscale(images)
    if start == "black":
        return np.zeros(x.shape, bool), "black"
    if start == "otsu":
        return thresholds.otsu(x), "otsu"
    if start == "adaptive":
        return thresholds.adaptive(x, block_size=block_size), "adaptive"
    if start != "auto":
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    global_masks = thresholds.otsu(x)
    if _thick(global_masks, thick_radius, minority=False):  # the bright side: a threshold's objects
        return global_masks, "otsu"
    cand = {"otsu": global_masks, "adaptive": thresholds.adaptive(x, block_size=block_size)}
    score = {k: float(np.mean(thresholds.local_separation(x, v, window=block_size))) for k, v in cand.items()}
    best = max(score, key=score.get)
    return cand[best], best


STARTS = ("auto", "black", "otsu", "adaptive")


# ------------------------------------------------------------------ iGTT
@dataclass(frozen=True)
class IGTTConfig:
    r"""Every choice of an :func:`igtt` run. :data:`PRESETS` holds the recommended method and the paper's.

    Attributes:
        start: the first pseudo-labels (:func:`start_masks`): "auto", "black",
            "otsu" or "adaptive". With "black" the first round trains on
            all-background labels (DMI and soft IoU have zero gradient there;
            only weight decay acts) and the first selection comes from that output.
        rounds: label refreshes (the paper's epochs).
        steps: gradient steps per round; None: one pass over the images
            (ceil(N / batch_size) steps, each image once, in a shuffled order).
        batch_size: images per step.
        loss: "dmi+iou" (the paper's), "bce" or "bce+iou".
        iou_power: k of the soft IoU's denominator (1 or 2; the authors' code: 2).
        pooling: "image" (each image's loss, then their mean; the authors')
            or "batch" (one loss over the batch's pixels).
        selection: "dmi" or "otsu" (:func:`select_pseudo_labels`).
        shared: one threshold index per batch (the authors') or per image.
        select_when: "step": each batch's selection is made from its
            train-mode output before that batch's step (inside the round, the
            authors'); "round": after the round, from the output on all images.
        use_ems: labels are :func:`ems` of the selections, else the selections.
        ems_source: what EMS samples: "skeleton" (the paper's), "mask" (the
            selections themselves: a sampling-like label of thick objects), or
            "auto": "mask" when the start's objects are thick (over half
            their area holds a disc of ``thick_radius``, :func:`thick_share`),
            else "skeleton" (the result's ``config`` holds the choice made).
        thick_radius: the disc that makes objects thick (``ems_source="auto"``
            and ``start="auto"``, :func:`start_masks`).
        ratio, radius: EMS's kept share and shift radius.
        ems_fresh: EMS drawn afresh at every load (the authors'), else once a round.
        orient: "size": EMS's size rule (a selection covering over half its
            image is inverted: objects are the minority class; only with EMS);
            "high": never inverted: the side the output ranks high is foreground.
        optimizer, learning_rate, momentum, weight_decay: "sgd" (momentum,
            decoupled weight decay) or "adam".
        decay_every, decay_factor: the learning rate times ``decay_factor``
            every ``decay_every`` rounds (None: constant).
        carry_optimizer: keep the optimizer's state and schedule across rounds
            (the authors'), else a fresh optimizer each round.
        augment: a random dihedral flip/rotation of each image at each step.
        tta: read the network's output as the mean over each image's dihedral transforms
            (:meth:`metastructure.train.FitResult.predict` with ``tta``): the round's selections
            (``select_when="round"``), :meth:`IGTTResult.predict` and :func:`igtt_masks`.
        widths, norm, init: the U-Net (:func:`metastructure.nets.unet`).
        num_thresholds: candidates per selection.
        block_size: the adaptive threshold's window (starts "adaptive" and "auto"), and the window of
            :func:`~metastructure.thresholds.local_separation` for ``keep="best"``.
        keep: "last" (the network after the last round) or "best": the round whose selections on the
            training images have the largest mean :func:`~metastructure.thresholds.local_separation` (no
            ground truth; each
            round's score is in its history record as ``separation``).

    Raises:
        ValueError: a choice not among its allowed values, a count below 1, ``ratio`` outside [0, 1],
            ``thick_radius`` or ``learning_rate`` not positive.
        TypeError: a count (``rounds``, ``steps``, ``batch_size``, ``num_thresholds``, ``block_size``,
            ``decay_every``) that is not an int (``steps=2.5`` is refused, as :func:`metastructure.train.fit`
            refuses it).
    """

    start: str = "auto"
    rounds: int = 2
    steps: int | None = 300
    batch_size: int = 8
    loss: str = "bce"
    iou_power: int = 1
    pooling: str = "batch"
    selection: str = "otsu"
    shared: bool = False
    select_when: str = "round"
    use_ems: bool = True
    ems_source: str = "auto"
    thick_radius: float = 3.0
    ratio: float = 0.1
    radius: int = 1
    ems_fresh: bool = False
    orient: str = "high"
    optimizer: str = "adam"
    learning_rate: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay_every: int | None = None
    decay_factor: float = 0.1
    carry_optimizer: bool = False
    augment: bool = True
    tta: bool = True
    widths: tuple = (8, 16, 32)
    norm: str | None = None
    init: str = "he"
    num_thresholds: int = 30
    block_size: int = 35
    keep: str = "best"

    def __post_init__(self) -> None:
        choices = {"start": STARTS, "loss": ("dmi+iou", "bce", "bce+iou"), "pooling": ("image", "batch"),
                   "selection": SELECTIONS, "select_when": ("step", "round"), "orient": ("size", "high"),
                   "optimizer": ("sgd", "adam"), "norm": nets.NORMS, "keep": ("last", "best"),
                   "init": nets.INITS, "iou_power": (1, 2), "ems_source": ("auto",) + EMS_SOURCES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        # counts are integers (as train.fit's steps): 2.5 steps is refused, not run as 2
        for name in ("rounds", "batch_size", "num_thresholds", "block_size"):
            _checks.check_int(name, getattr(self, name), minimum=1)
        if self.steps is not None:
            _checks.check_int("steps", self.steps, minimum=1)
        if self.decay_every is not None:
            _checks.check_int("decay_every", self.decay_every, minimum=1)
        _checks.check_unit_interval("ratio", self.ratio)
        _checks.check_positive("thick_radius", self.thick_radius)
        _checks.check_positive("learning_rate", self.learning_rate)
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def replace(self, **changes: Any) -> IGTTConfig:
        """A copy with ``changes`` (field names; an unknown name raises TypeError)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (``IGTTConfig(**d)`` rebuilds it)."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d


#: "recommended" (the defaults of :class:`IGTTConfig`: EMS of a threshold's masks as fixed labels, BCE,
#: Otsu's criterion on the output, two rounds; measured in the ``igtt`` experiment) and "paper" (the
#: authors' configuration as their public code has it, at the widths given by the caller: BatchNorm U-Net
#: with N(0, 0.02) weights, DMI + soft IoU (k = 2) per image, one threshold index per batch chosen from the
#: train-mode output before each step, EMS at load, 100 rounds of one pass, SGD 0.05 with momentum 0.9 and
#: weight decay 1e-3, x0.1 every 20 rounds, carried across rounds; the authors' U-Net is 64-1024 wide).
PRESETS: dict[str, IGTTConfig] = {
    "recommended": IGTTConfig(),
    "paper": IGTTConfig(start="black", rounds=100, steps=None, loss="dmi+iou", iou_power=2, pooling="image",
                        selection="dmi", shared=True, select_when="step", ems_source="skeleton", ems_fresh=True,
                        orient="size",
                        optimizer="sgd", learning_rate=0.05, weight_decay=1e-3, decay_every=20,
                        carry_optimizer=True, tta=False, norm="batch", init="normal",
                        widths=(64, 128, 256, 512, 1024), keep="last"),
}


class IGTTResult(NamedTuple):
    """The outcome of :func:`igtt`.

    Attributes:
        fit: the trained network as a :class:`~metastructure.train.FitResult` (``predict``).
        config: the :class:`IGTTConfig` it ran with.
        start: the start's name ("auto" resolved to "otsu" or "adaptive").
        labels: (N, H, W) bool: the last round's labels (one EMS draw when EMS is drawn at load).
        selected: (N, H, W) bool: the kept round's selections, as stored (before EMS).
        history: one record per round (see :func:`igtt`).
    """

    fit: train.FitResult
    config: IGTTConfig
    start: str
    labels: np.ndarray
    selected: np.ndarray
    history: list

    def predict(self, images: Any) -> np.ndarray:
        """The trained network's probabilities (N, H, W) for ``images`` (N, H, W, C), read as :func:`igtt`
        reads its images (standardised per image); averaged over the dihedral transforms when the
        configuration's ``tta`` is on.

        Raises:
            ValueError: images not (N, H, W, C), empty, NaN or infinite, or with another number of channels
                than the training images.
            TypeError: images of a non-real dtype.
        """
        x, _ = _read_images(images, channels=_in_channels(self.fit))
        return self.fit.predict(x, tta=self.config.tta)


def _in_channels(fit: train.FitResult) -> int:
    """The number of image channels the U-Net of :func:`igtt` was built for (its first convolution's input)."""
    return int(np.shape(fit.params["enc"][0][0]["w"])[2])


def _pooled_loss(cfg: IGTTConfig):
    def one(logits, y):
        if cfg.loss == "bce":
            return losses.bce_with_logits(logits, y)
        first = losses.dmi_loss(logits, y) if cfg.loss == "dmi+iou" else losses.bce_with_logits(logits, y)
        return first + losses.soft_iou_loss(logits, y, power=cfg.iou_power)

    if cfg.pooling == "batch":
        return one
    return lambda logits, y: jnp.mean(jax.vmap(one)(logits, y))


@functools.lru_cache(maxsize=32)
def _step_hooks(cfg: IGTTConfig) -> tuple[Callable, Callable, Callable | None]:
    """A configuration's hooks of :func:`metastructure.train.make_step` (the same objects for equal
    configurations, so the compiled step is reused): the loss on the logit channel, the batch's labels at
    load (EMS drawn afresh with ``ems_fresh``; all background in the black start's round, the step's ``aux``
    flag), and the in-step selection (``select_when="step"``)."""
    pooled = _pooled_loss(cfg)

    def loss(logits, y):
        return pooled(logits[..., 0], y)

    def targets(key, y, black):
        if cfg.use_ems and cfg.ems_fresh:
            y = ems(key, y, radius=cfg.radius, ratio=cfg.ratio, invert=cfg.orient == "size", source=cfg.ems_source)
        return jnp.where(black, False, y).astype(jnp.float32)

    def select(logits):
        return _select(jax.nn.sigmoid(logits[..., 0]), num_thresholds=cfg.num_thresholds, selection=cfg.selection,
                       shared=cfg.shared)

    return loss, targets, select if cfg.select_when == "step" else None


def _labels_from(cfg: IGTTConfig, key: jax.Array, sel: np.ndarray) -> np.ndarray:
    """The round's stored labels: EMS once (``ems_fresh`` False), else the selections (EMS at load)."""
    if cfg.use_ems and not cfg.ems_fresh:
        return np.asarray(ems(key, sel, radius=cfg.radius, ratio=cfg.ratio, invert=cfg.orient == "size",
                              source=cfg.ems_source))
    return sel


def igtt(
    key: jax.Array,
    images: Any,
    *,
    preset: str = "recommended",
    config: IGTTConfig | None = None,
    init_labels: Any = None,
    monitor: Callable[[int, train.FitResult, np.ndarray], dict | None] | None = None,
    monitor_every: int = 1,
    progress: bool | None = None,
    **options: Any,
) -> IGTTResult:
    r"""Iterative ground-truth training on unlabelled ``images`` (N, H, W, C): no ground truth anywhere.

    ``preset`` picks an :class:`IGTTConfig` from :data:`PRESETS` (or pass
    ``config``); ``options`` replace any of its fields (``igtt(key, x,
    preset="paper", optimizer="adam")``: one switch from the paper's).

    The **recommended** method (the defaults; the ``igtt`` experiment of the
    simulations measures it against thresholds and against the paper's
    configuration): start from a threshold's masks (``start="auto"``,
    :func:`start_masks`: Otsu for thick objects, else Otsu or a 35-px
    adaptive threshold, whichever splits the intensity better locally); each
    round, turn the masks into sparse labels with EMS (a threshold's
    systematic, PCL-like errors become sampling-like, RCL-like ones, whose
    meta-structure a network recovers): 10% of a shifted skeleton for thin,
    network-like structures (ER, tubules), 10% of the shifted masks
    themselves for thick objects (``ems_source="auto"``: the skeleton of a
    blob is a structured, skeleton-type label error, a sample of the whole
    blob a sampling-like one); train a U-Net on them with BCE (continuing
    from the previous round's weights), and take the new masks as each
    image's Otsu threshold of the network's output
    (:func:`select_pseudo_labels` with ``selection="otsu"``); two rounds of
    300 steps, keeping the round whose masks split the training images'
    intensity best locally (``keep="best"``: rounds can drift as well as
    improve, and this score, not the truth, decides).

    The **paper**'s loop (``preset="paper"``): all-background start; each
    round is one pass over the images; each batch's labels are EMS of its
    stored selections, drawn at load; the batch's train-mode output before
    the step gives its new selections (one DMI-chosen threshold index for
    the batch), stored for the next round; DMI + soft IoU per image; SGD
    carried across rounds.

    **Images.** Each image is standardised as the package's normaliser does it
    (:func:`metastructure.data.as_images` with ``zscore=True``: (x - mean) / (sd + 1e-6) over its (H, W, C),
    here in float64), so ``x + 1e8`` or ``x * 1e30`` train as ``x`` does; an image that already is
    standardised (mean within 1e-3 of 0, standard deviation within 1e-3 of 1: what every generator and
    loader of :mod:`metastructure.data` returns) is taken as it is, and one beyond 2^256 in magnitude is first
    scaled down by a power of two so that its squares stay finite. :meth:`IGTTResult.predict` and
    :func:`igtt_masks` read images the same way; ``result.fit`` (and the monitor's ``fit``) take images so
    standardised. An image is **flat** when every channel has a standard deviation over (H, W) of at most
    1e-6 in the image's own units (the normaliser's floor): a constant or blank image, or a constant one with
    variations below 1e-6 (channels of different constant values included). A flat image shows the
    network nothing (its output there is only the response of its zero padding), so it has no object: its
    start masks and its selections are empty, as :func:`igtt_masks`'s masks of it are (Otsu, adaptive and
    k-means give a constant image no foreground either; unlike iGTT they are scale-free and split variations
    of any size).

    ``init_labels`` (N, H, W), 0/1 only (bool, or integers or floats equal to 0 or 1), replaces the start's
    masks (``start`` is then "given"). Soft maps and the ignore value -1 are refused: EMS samples the labels
    as a binary mask and the losses read every pixel, and the first round's selection replaces them.
    ``monitor(round,
    fit, selected)`` (every ``monitor_every`` rounds and after the last) gets
    the network so far (a :class:`~metastructure.train.FitResult`: ``fit.predict``)
    and the stored selections (N, H, W); what it returns (a dict) joins that
    round's record (a caller's evaluation against ground truth lives there).
    Each record holds ``round``, ``loss`` (the round's mean training loss), ``selected_fraction`` and
    ``inverted_fraction`` (the share of selections covering over half their
    image: the ones EMS's size rule inverts when ``orient="size"``).

    Raises:
        ValueError: images not (N, H, W, C), empty, NaN or infinite; an unknown preset or a bad option value;
            init_labels of another shape or not 0/1 (soft, -1, NaN).
        TypeError: an unknown option; a count option that is not an int (``steps=2.5``); images or
            init_labels of a non-real dtype (strings).
        FloatingPointError: training diverged (a round's mean loss or the weights not finite).
    """
    x_host, flat = _read_images(images)
    if config is None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
        config = PRESETS[preset]
    cfg = config.replace(**options) if options else config
    n = x_host.shape[0]
    if init_labels is None:
        sel, start = start_masks(x_host, start=cfg.start, block_size=cfg.block_size, thick_radius=cfg.thick_radius)
        sel = np.where(flat[:, None, None], False, sel)
    else:
        # 0/1 only: EMS and the losses read labels as binary masks, and the first selection replaces them
        _checks.check_binary("init_labels", init_labels)
        sel, start = np.asarray(init_labels).astype(bool), "given"
        if sel.shape != x_host.shape[:3]:
            raise ValueError(f"init_labels must be (N, H, W) = {x_host.shape[:3]}, got shape {sel.shape}")
    if cfg.ems_source == "auto":
        # the side EMS samples: the minority side under the size rule, the masks as given otherwise
        cfg = cfg.replace(ems_source="mask" if _thick(sel, cfg.thick_radius, minority=cfg.orient == "size")
                          else "skeleton")
    model = nets.unet(widths=cfg.widths, norm=cfg.norm, init=cfg.init)
    bs = min(int(cfg.batch_size), n)
    per_pass = -(-n // bs)
    steps = per_pass if cfg.steps is None else int(cfg.steps)
    opt = train.make_optimizer(cfg.optimizer, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum, decay_factor=cfg.decay_factor,
                               decay_every=None if cfg.decay_every is None else cfg.decay_every * steps)
    loss_fn, targets, select = _step_hooks(cfg)
    run = train.make_step(model, opt, loss=loss_fn, targets=targets, augment=cfg.augment, select=select)
    k_init, k_loop = jax.random.split(key)
    state = train.init(k_init, model, x_host.shape[-1], opt)
    x = jnp.asarray(x_host)
    black = start == "black"
    history = []
    best: tuple[float, Any, np.ndarray] | None = None
    bar = train.progress_bar(cfg.rounds * steps, enabled=progress, desc="igtt")
    labels = sel
    for r in range(cfg.rounds):
        k_round = jax.random.fold_in(k_loop, r)
        k_lab, k_perm = jax.random.split(jax.random.fold_in(k_round, 1 << 20))
        if r and not cfg.carry_optimizer:
            state = train.fresh_state(state.params, opt)
        labels = np.zeros_like(sel) if (black and r == 0) else _labels_from(cfg, k_lab, sel)
        base = jnp.asarray(sel if (cfg.use_ems and cfg.ems_fresh) else labels)
        store = jnp.asarray(sel) if select is not None else None  # the in-step selections' store
        # passes over the images in shuffled order, each batch without repeats (a pass's tail wraps around)
        order = np.concatenate([np.asarray(jax.random.permutation(jax.random.fold_in(k_perm, i), n))
                                for i in range(-(-steps * bs // n) + 1)])
        values = []
        for s in range(steps):
            idx = jnp.asarray(order[s * bs:(s + 1) * bs])
            state, v, store = run(state, jax.random.fold_in(k_round, s), x, base, jnp.asarray(black and r == 0),
                                  idx, store)
            values.append(v)
            if bar is not None:
                bar.update(1)
        loss = float(np.mean(jax.device_get(values)))
        finite = all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(state.params))
        if not (np.isfinite(loss) and finite):
            raise FloatingPointError(f"training diverged in round {r + 1}: loss {loss}, "
                                     f"{'finite' if finite else 'non-finite'} weights (lower learning_rate)")
        fit = train.FitResult(params=state.params, model=model, history={}, regime="fixed", num_classes=None)
        if cfg.select_when == "round":
            probs = fit.predict(x_host, tta=cfg.tta)
            store = _select(jnp.asarray(probs), num_thresholds=cfg.num_thresholds, selection=cfg.selection,
                            shared=False)
        sel = np.where(flat[:, None, None], False, np.asarray(store))
        big = sel.mean(axis=(-2, -1)) > 0.5
        rec: dict[str, Any] = {"round": r + 1, "loss": loss, "selected_fraction": float(sel.mean()),
                               "inverted_fraction": float(big.mean())}
        if cfg.keep == "best":
            oriented = minority_side(sel) if cfg.orient == "size" else sel
            rec["separation"] = float(np.mean(thresholds.local_separation(x_host, oriented,
                                                                          window=cfg.block_size)))
            if best is None or rec["separation"] > best[0]:
                best = (rec["separation"], state.params, sel)
        if monitor is not None and ((r + 1) % monitor_every == 0 or r + 1 == cfg.rounds):
            rec.update(monitor(r + 1, fit, sel) or {})
        history.append(rec)
    if bar is not None:
        bar.close()
    params = state.params
    if best is not None:
        _, params, sel = best
    fit = train.FitResult(params=params, model=model, history={"loss": [h["loss"] for h in history]},
                          regime="fixed", num_classes=None)
    return IGTTResult(fit, cfg, start, np.asarray(labels), sel, history)


def minority_side(masks: Any) -> np.ndarray:
    """Each mask (..., H, W) inverted where it covers more than half its image: EMS's size rule
    (objects are the minority class).

    >>> minority_side(np.array([[1, 1, 1, 0]], bool)).astype(int).tolist()
    [[0, 0, 0, 1]]
    """
    m = np.asarray(masks).astype(bool)
    big = m.mean(axis=(-2, -1), keepdims=True) > 0.5
    return np.where(big, ~m, m)


def thick_share(masks: Any, *, radius: float = 3.0, minority: bool = True) -> float:
    r"""The share of the objects' area that a disc of ``radius`` fits in: the foreground left by a binary
    opening with :func:`metastructure.noise.disk` (``radius``) over the foreground, pooled over the masks
    (..., H, W); the image's border does not erode (scikit-image's ``binary_opening`` with
    ``mode="ignore"``). With ``minority`` each mask is first put on its minority side (:func:`minority_side`,
    EMS's size rule); without, the True pixels are the objects.

    Blobs wider than the disc keep nearly all their area; tubules narrower
    than it (2 ``radius`` + 1 pixels) keep only their junctions. A threshold's
    speckle keeps nothing but counts in the area, so it lowers the share.
    :func:`igtt` calls objects thick when the share exceeds 1/2
    (``ems_source="auto"``, ``start="auto"``). Masks without foreground: 0.

    >>> m = np.zeros((40, 40), bool); m[10:13, 2:38] = True; m[20:34, 5:19] = True
    >>> round(thick_share(m, radius=3), 2)  # the 14 x 14 square survives (less its corners), the band does not
    0.58
    """
    from scipy import ndimage

    m = minority_side(masks) if minority else np.asarray(masks).astype(bool)
    m = m.reshape((-1,) + m.shape[-2:])
    area = int(m.sum())
    if not area:
        return 0.0
    fp = noise.disk(float(radius))
    # erosion sees outside the image as foreground: an object cut by the border is not worn away from it
    kept = sum(int(ndimage.binary_dilation(ndimage.binary_erosion(x, fp, border_value=1), fp).sum()) for x in m)
    return kept / area


def _thick(masks: Any, radius: float, *, minority: bool) -> bool:
    return thick_share(masks, radius=radius, minority=minority) > 0.5


def igtt_masks(result: IGTTResult, images: Any) -> np.ndarray:
    """Binary masks (N, H, W) of ``images`` (N, H, W, C) by a trained :func:`igtt`: per image, its
    configuration's selection on the network's output (:meth:`IGTTResult.predict`, one threshold per image),
    on the minority side with ``orient="size"``, on the high side with ``orient="high"``. A flat image (no
    contrast: a constant or blank image, or variations below 1e-6; the rule is in :func:`igtt`'s docstring)
    has no object: its mask is empty, as Otsu's, adaptive's and k-means' masks of a constant image are.

    Raises:
        TypeError: ``result`` not an :class:`IGTTResult`; images of a non-real dtype.
        ValueError: images not (N, H, W, C), empty, NaN or infinite, or with another number of channels
            than the images ``result`` was trained on.
    """
    if not isinstance(result, IGTTResult):
        raise TypeError(f"result must be an IGTTResult (what igtt returns), got {type(result).__name__}")
    cfg = result.config
    x, flat = _read_images(images, channels=_in_channels(result.fit))
    sel = np.asarray(select_pseudo_labels(result.fit.predict(x, tta=cfg.tta), num_thresholds=cfg.num_thresholds,
                                          selection=cfg.selection))
    sel = minority_side(sel) if cfg.orient == "size" else sel
    return np.where(flat[:, None, None], False, sel)
