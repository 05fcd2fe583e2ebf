r"""Annotation planner: what a network trained on cheaper labels will reach, on masks like yours.

A lab deciding how to annotate asks: if we label only 10% of the foreground
pixels, or our outlines are 2 px too wide, or 30% of the labels are wrong, what
Dice do we get, and where do we threshold the output? The theory answers from
the masks alone, once two numbers of the training recipe are known
(theory/README.md; arXiv 2103.11594, Theorems 1-2 and Section 4):

* **Random label errors** (RCL: sampling a ratio p of the foreground, flipping
  foreground to background with rate f and background to foreground with rate
  b): the network learns the noisy meta-structure b + (1 - f - b) D of the
  clean fraction field D (Lemma 1), so thresholding at the matched t* =
  (1 + b - f)/2 recovers the clean boundary (inverted beyond f + b = 1). What
  is lost comes from finite sampling: each decision pools about ``n_eff``
  noisy labels, so pixels near the boundary are called wrong with the
  probability :func:`theory.curves.pooled_dice` gives. Predicted Dice =
  ``clean_dice * pooled_dice(masks, n_eff, f, b)``, at t*.
* **Structured errors** (PCL: dilated, eroded or skeletonized outlines):
  Theorem 1, the network learns the perturbed meta-structure, whose boundary no
  threshold moves back: at 1/2 it calls T(M), the perturbed masks (for
  skeletons: the skeleton's fraction field at bandwidth 1 px cut at t* = s/2,
  s the kept fraction), whose pooled Dice against the masks M is the
  perturbation's error. The network adds its own boundary error, the one its
  clean Dice shows; the two overlap instead of adding:
  :func:`theory.curves.pcl_dice` (``Dice(T(M), M)``, ``clean_dice``).
* **Random labels** (RL, and flipping at f + b = 1): no meta-structure; chance,
  the Dice of calling everything foreground, 2 pi / (1 + pi) for a foreground
  fraction pi; no threshold.

The two numbers, ``n_eff`` and ``clean_dice``, depend on the network, the
recipe and the images, not on the label type: :func:`calibrate` measures them
on the user's own images (two short trainings, clean labels and one fixed
sparse draw, on a split of the data, scored on the rest), and without a
calibration :data:`DEFAULT` (measured on the packaged real nuclei by the
``planner`` simulation, simulations/README.md) stands in.
:func:`predict` answers for one label type, :func:`table` for a whole plan,
with the training-set size below which one fixed draw gets memorised
(theory/README.md, step 13: index k / n_fg). ``python -m metastructure plan
MASKS [--images IMAGES]`` prints the plan and draws it.

Where the model is known to be weak: with very few labelled pixels per object
(sampling 1% of small objects: about one labelled pixel per kernel window or
fewer) the normal approximation and an n_eff fitted at another ratio no longer
describe the network, and a fixed draw on little data is memorised (the table
says when). simulations/README.md reports the
measured gaps, and those of the plain product ``clean_dice * Dice(T(M), M)``
for structured errors, which counts the two boundary errors in full.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from . import metrics, nets, noise
from .noise import LabelNoise

__all__ = [
    "DEFAULT",
    "DEFAULT_RECIPE",
    "NO_AUGMENT_CAPACITY",
    "Calibration",
    "Masks",
    "Plan",
    "Prediction",
    "calibrate",
    "fit_kwargs",
    "predict",
    "solve_n_eff",
    "table",
]

#: The training recipe the predictions are about: ``train.fit`` with ``nets.unet(widths)``, fixed labels,
#: dihedral augmentation (the remedy for memorising one fixed draw), Adam.
DEFAULT_RECIPE: dict[str, Any] = {"widths": (8, 16, 32), "steps": 300, "batch_size": 8, "learning_rate": 2e-3,
                                  "augment": True}

#: The k of the memorisation index k / n_fg for the recipe *without* augmentation (U-Net 8-16-32, 400 steps of
#: batch 8 on 64 x 64 NUC-like images), fitted by ``python -m simulations run memorisation --profile full``
#: (``results.fitted_k`` of figures/memorisation.json; a test checks the two agree).
NO_AUGMENT_CAPACITY = 3981.07

#: n_eff is searched on [N_EFF_MIN, N_EFF_MAX] (labels per decision).
N_EFF_MIN, N_EFF_MAX = 1.0, 1e6

_HIST_BINS = 4096  # bins of the clean fraction field per side of 1/2
_MIN_LABELLED = 50  # fewest labelled foreground pixels a sparse calibration draw may have


def fit_kwargs(**recipe: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`metastructure.train.fit` for a recipe: :data:`DEFAULT_RECIPE` with
    ``recipe``'s keys replaced (``widths`` of the U-Net, ``steps``, ``batch_size``, ``learning_rate``,
    ``augment``), e.g. ``fit_kwargs(steps=100)``.

    Raises:
        ValueError: a key that is not a recipe key.
    """
    r = {**DEFAULT_RECIPE, **recipe}
    unknown = set(r) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; a recipe has {sorted(DEFAULT_RECIPE)}")
    return {"model": nets.unet(widths=tuple(int(w) for w in r["widths"])), "steps": int(r["steps"]),
            "batch_size": int(r["batch_size"]), "learning_rate": float(r["learning_rate"]),
            "augment": bool(r["augment"])}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The two numbers of a training recipe the predictions need, and how they were obtained.

    Attributes:
        n_eff: noisy labels each decision of the network pools (the free
            parameter of :func:`theory.curves.pooled_dice`).
        clean_dice: pooled Dice of the network trained on clean labels, at 1/2.
        recipe: the training recipe (:data:`DEFAULT_RECIPE`'s keys).
        label: the sparse label type it was fitted on (a ``LabelNoise`` name).
        sparse_dice: that network's pooled Dice at its t* (None for a default).
        capacity: k of the memorisation index k / n_fg for this recipe,
            from the sparse network's index on its training images (None: not measured).
        memorisation_index: that index (mean output on the drawn pixels minus
            on the foreground pixels the draw left out).
        n_train, n_holdout: images trained on and scored on.
        source: "calibrated", or where a default comes from.
    """

    n_eff: float
    clean_dice: float
    recipe: dict
    label: str = "sample 0.1"
    sparse_dice: float | None = None
    capacity: float | None = None
    memorisation_index: float | None = None
    n_train: int = 0
    n_holdout: int = 0
    source: str = "calibrated"

    def __post_init__(self):
        rec = {k: tuple(int(w) for w in v) if k == "widths" else v for k, v in self.recipe.items()}
        object.__setattr__(self, "recipe", rec)

    @property
    def fit_kwargs(self) -> dict[str, Any]:
        """``train.fit(key, images, labels, **cal.fit_kwargs)`` trains the network the predictions are about."""
        return fit_kwargs(**self.recipe)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``Calibration.from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The calibration :meth:`to_dict` wrote (e.g. read back from a ``plan.json``)."""
        return cls(**d)


#: The calibration without the user's images: :func:`calibrate` on the 32 training tiles (64 x 64) of the packaged
#: real nuclei (``data.real_nuclei(tile=64)``) with :data:`DEFAULT_RECIPE`, key 0, by
#: ``python -m simulations run planner --profile full`` (``results.calibration`` of figures/planner.json;
#: a test checks the two agree).
DEFAULT = Calibration(n_eff=128.588, clean_dice=0.92716, recipe=dict(DEFAULT_RECIPE), label="sample 0.1",
                      sparse_dice=0.88539, capacity=76.535, memorisation_index=0.0036316, n_train=24, n_holdout=8,
                      source="default (real nuclei, 64 px tiles)")


class Prediction(NamedTuple):
    """What a network trained on one label type is predicted to reach.

    Attributes:
        label: the ``LabelNoise``.
        dice: predicted pooled Dice against the clean masks.
        threshold: the threshold to use on the network's output (t* for
            random errors, 1/2 for dilate / erode, s/2 for skeletons), None
            where none recovers anything (random labels, f + b = 1).
        inverted: True beyond f + b = 1: call foreground *below* the threshold.
        family: "CL", "RCL", "PCL" or "RL" (arXiv 2103.11594, Table 1).
        model: which formula gave ``dice`` (module docstring).
    """

    label: LabelNoise
    dice: float
    threshold: float | None
    inverted: bool
    family: str
    model: str


def _as_mask_list(masks: Any, names: Sequence[str] | None) -> list[np.ndarray]:
    if not isinstance(masks, (list, tuple)):  # one array
        arr = np.asarray(masks)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"masks must be (N, H, W), (H, W) or a list of (H, W) arrays, got shape {arr.shape}")
        items = list(arr)
    else:
        items = [np.asarray(m) for m in masks]
    if not items:
        raise ValueError("no masks given")
    names = list(names) if names is not None else [f"mask {i}" for i in range(len(items))]
    if len(names) != len(items):
        raise ValueError(f"{len(names)} names for {len(items)} masks")
    out = []
    for name, m in zip(names, items):
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"{name}: a mask must be a non-empty (H, W) array, got shape {m.shape}")
        if m.dtype.kind not in "biuf":
            raise ValueError(f"{name}: a mask must be numeric, got dtype {m.dtype}")
        if m.dtype.kind == "f" and not np.all(np.isfinite(m)):
            raise ValueError(f"{name}: the mask holds NaN or infinite values")
        values = np.unique(m)
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"{name}: the planner needs binary masks (0 background, 1 foreground), found values "
                             f"{values[:6].tolist()}{'...' if values.size > 6 else ''}")
        out.append(m.astype(bool))
    return out


class Masks:
    """Binary masks summarised once for many predictions (fields, histograms and perturbations cached).

    ``Masks(masks, names=None)``: an (N, H, W) or (H, W) array or a list of
    (H, W) arrays of differing sizes, values 0 / 1 (``names`` label the masks
    in error messages, e.g. file names). Every prediction pools over all
    pixels of all masks.

    Raises:
        ValueError: no masks, a mask that is not a non-empty 2-D 0/1 array
            (naming it), or masks without any foreground.
    """

    def __init__(self, masks: Any, *, names: Sequence[str] | None = None):
        if isinstance(masks, Masks):  # the same summary (and its caches), perhaps with other names
            self.__dict__.update(masks.__dict__)
            if names is not None:
                if len(names) != len(self.masks):
                    raise ValueError(f"{len(names)} names for {len(self.masks)} masks")
                self.names = list(names)
            return
        self.names = list(names) if names is not None else None
        self.masks = _as_mask_list(masks, names)
        self.n_fg = int(sum(int(m.sum()) for m in self.masks))
        self.n_pixels = int(sum(m.size for m in self.masks))
        if self.n_fg == 0:
            raise ValueError(f"the {len(self.masks)} mask(s) hold no foreground pixel: nothing to plan for")
        by_shape: dict[tuple[int, int], list[np.ndarray]] = {}
        for m in self.masks:
            by_shape.setdefault(m.shape, []).append(m)
        self.stacks = [np.stack(ms) for ms in by_shape.values()]  # (N_g, H, W) bool, one per mask size
        self._label_dice: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def foreground_fraction(self) -> float:
        """Foreground pixels / all pixels, over all masks."""
        return self.n_fg / self.n_pixels

    @functools.cached_property
    def histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(d, count, inside)``: the clean fraction field D (gaussian, 1 px, as
        :func:`theory.curves.clean_fields`) of every pixel, binned: bin means,
        pixel counts and whether the bin lies in the clean partition {D > 1/2}."""
        from . import density

        cnt = np.zeros(2 * _HIST_BINS)
        tot = np.zeros(2 * _HIST_BINS)
        for stack in self.stacks:
            d = np.asarray(density.fraction_field(stack, 1.0)).ravel()
            b = np.minimum((d * _HIST_BINS).astype(np.int32), _HIST_BINS - 1)  # bin i: [i/B, (i+1)/B)
            b += np.where(d > 0.5, 0, _HIST_BINS).astype(np.int32)  # first half: inside {D > 1/2}; second: outside
            cnt += np.bincount(b, minlength=2 * _HIST_BINS)
            tot += np.bincount(b, weights=d, minlength=2 * _HIST_BINS)
        keep = cnt > 0
        inside = np.arange(2 * _HIST_BINS) < _HIST_BINS
        return tot[keep] / cnt[keep], cnt[keep], inside[keep]

    def pooled_dice(self, n_eff: float, fg_to_bg: Any, bg_to_fg: Any) -> np.ndarray:
        """:func:`theory.curves.pooled_dice` of these masks, shape (K,), up to the binning of D (4096 bins per side
        of 1/2, each pixel at its bin's mean)."""
        from theory import curves

        d, cnt, inside = self.histogram
        f = np.atleast_1d(np.asarray(fg_to_bg, float))
        b = np.broadcast_to(np.asarray(bg_to_fg, float), f.shape)
        prob = curves.fg_probability(d[None], d[None] / n_eff, (1 - d[None]) / n_eff, f[:, None], b[:, None])
        return curves.dice_from_probability(prob, inside[None], axes=(1,), weight=cnt[None])

    def label_dice(self, label: LabelNoise) -> float:
        """Pooled Dice against the masks of what Theorem 1 says a network trained on ``label`` learns
        (dilate / erode: the perturbed masks; skeleton: the skeleton's field at 1 px cut at s/2)."""
        if label.name not in self._label_dice:
            from . import density

            inter = total = 0.0
            for g, m in enumerate(self.stacks):
                if label.kind == "skeleton":
                    field = density.fraction_field(self.skeletons[g], 1.0)
                    p = np.asarray(self.skeleton_threshold.apply(field), bool)
                else:
                    p = np.asarray(label(None, m), bool)
                inter += float(np.sum(p & m))
                total += float(p.sum() + m.sum())
            self._label_dice[label.name] = 2 * inter / total
        return self._label_dice[label.name]

    @functools.cached_property
    def skeletons(self) -> list[np.ndarray]:
        """``noise.skeletonize`` of each stack of equal-size masks."""
        return [np.asarray(noise.skeletonize(m)) for m in self.stacks]

    @functools.cached_property
    def skeleton_threshold(self) -> Any:
        """The skeleton labels' t* = s/2, s = |skeleton| / |mask| pooled over all masks:
        ``density.matched_threshold`` of the transition the (mask, skeleton) pairs show
        (what ``LabelNoise("skeleton").matched_threshold(masks=...)`` gives for one stack)."""
        from . import density

        kept = sum(int(np.count_nonzero(sk & m)) for sk, m in zip(self.skeletons, self.stacks))
        stray = sum(int(np.count_nonzero(sk & ~m)) for sk, m in zip(self.skeletons, self.stacks))
        s_, b_ = kept / self.n_fg, stray / max(self.n_pixels - self.n_fg, 1)
        return density.matched_threshold(np.array([[1 - b_, b_], [1 - s_, s_]]))


def _family(label: LabelNoise) -> str:
    if label.kind == "clean":
        return "CL"
    if label.kind in ("sample", "flip"):
        f, b = _rates(label)
        return "RL" if abs(f + b - 1) < 1e-12 else "RCL"
    if label.kind == "random":
        return "RL"
    return "PCL"


def _rates(label: LabelNoise) -> tuple[float, float]:
    p = [float(v) for v in label.params]
    return (1 - p[0], 0.0) if label.kind == "sample" else (p[0], p[1])


def _as_label(label: Any) -> LabelNoise:
    if isinstance(label, str):
        parts = label.split()
        if not parts:
            raise ValueError("label is an empty string; give a label type such as 'sample 0.1'")
        label = LabelNoise(parts[0], *[float(v) if parts[0] not in ("dilate", "erode") else int(v)
                                       for v in parts[1:]])
    if not isinstance(label, LabelNoise):
        raise TypeError("label must be a noise.LabelNoise (or its name, e.g. 'sample 0.1'), "
                        f"got {type(label).__name__}")
    if label.num_classes not in (None, 2) or label.kind in ("sample_classes", "symmetric"):
        raise ValueError(f"the planner is binary; {label!r} is multi-class")
    return label


def predict(masks: Any, label: Any, *, calibration: Calibration | None = None) -> Prediction:
    """The predicted pooled Dice, threshold and polarity of a network trained on ``label`` for masks like ``masks``.

    Args:
        masks: binary masks (see :class:`Masks`), or a :class:`Masks`.
        label: a binary :class:`~metastructure.noise.LabelNoise` (or its name,
            ``"sample 0.1"``, ``"flip 0.3 0.3"``, ``"dilate 2"``...). Sampled
            and flipped labels are one fixed draw, as a real annotation is.
        calibration: from :func:`calibrate`; default :data:`DEFAULT`.

    Returns:
        A :class:`Prediction` (module docstring: the formula of each family).

    Raises:
        ValueError: bad masks (:class:`Masks`), a multi-class label type.
        TypeError: ``label`` is not a label type.
    """
    m = masks if isinstance(masks, Masks) else Masks(masks)
    label = _as_label(label)
    cal = calibration or DEFAULT
    fam = _family(label)
    if label.kind == "clean":
        return Prediction(label, float(cal.clean_dice), 0.5, False, fam, "calibrated clean Dice")
    if fam == "RL":
        pi = m.foreground_fraction
        return Prediction(label, 2 * pi / (1 + pi), None, False, fam, "chance (all foreground)")
    if fam == "RCL":
        f, b = _rates(label)
        mt = label.matched_threshold()
        dice = cal.clean_dice * float(m.pooled_dice(cal.n_eff, f, b)[0])
        return Prediction(label, dice, float(mt.threshold), bool(mt.invert), fam,
                          f"finite sampling, n_eff = {cal.n_eff:.3g}")
    from theory import curves

    dice = float(curves.pcl_dice(m.label_dice(label), cal.clean_dice))
    if label.kind == "skeleton":
        return Prediction(label, dice, float(m.skeleton_threshold.threshold), False, fam,
                          "Theorem 1 + jitter, skeleton field at 1 px")
    return Prediction(label, dice, 0.5, False, fam, "Theorem 1 + jitter, perturbed masks")


# ------------------------------------------------------------------ the plan
#: the label types the ``planner`` simulation checks against trained networks (simulations/README.md)
VALIDATED = "sample 0.5 to 0.05, flip 0.3 0.3, dilate 1 and 2, erode 1"
RATIOS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
FLIPS = (0.1, 0.2, 0.3, 0.4)
RADII = (1, 2, 3)


@dataclasses.dataclass
class Plan:
    """A whole annotation plan for some masks (:func:`table`).

    Attributes:
        rows: one :class:`Prediction` per label type, clean first.
        calibration: the :class:`Calibration` used.
        masks: ``{"count", "pixels", "foreground_fraction", "foreground_pixels"}``.
        memorisation: when one fixed draw gets memorised: ``{"n_fg", "capacity",
            "index", "below", "capacity_no_augment", "index_no_augment",
            "below_no_augment", "remedy"}`` (theory/README.md, step 13: index
            min(1, k / n_fg) for a training set of n_fg foreground pixels;
            "below": the n_fg under which the index exceeds 1/2, i.e. 2k).
    """

    rows: list[Prediction]
    calibration: Calibration
    masks: dict
    memorisation: dict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"calibration": self.calibration.to_dict(), "masks": self.masks, "memorisation": self.memorisation,
                "rows": [{"label": r.label.name, "kind": r.label.kind, "params": [float(v) for v in r.label.params],
                          "family": r.family, "dice": r.dice, "threshold": r.threshold, "inverted": r.inverted,
                          "model": r.model} for r in self.rows]}

    def text(self) -> str:
        """The plan as a readable table."""
        c, mk, mem = self.calibration, self.masks, self.memorisation
        lines = [f"{mk['count']} mask(s), {mk['pixels']} pixels, foreground {100 * mk['foreground_fraction']:.1f}%",
                 f"calibration ({c.source}): clean Dice {c.clean_dice:.3f}, n_eff {c.n_eff:.3g} labels per decision"
                 + (f", fitted on '{c.label}' (Dice {c.sparse_dice:.3f})" if c.sparse_dice is not None else ""),
                 "", f"{'labels':<16}{'family':<8}{'Dice':>6}  {'threshold':<22}model", "-" * 78]
        for r in self.rows:
            thr = "none" if r.threshold is None else f"{r.threshold:.3g}" + (" (inverted: below)" if r.inverted
                                                                               else "")
            lines.append(f"{r.label.name:<16}{r.family:<8}{r.dice:>6.3f}  {thr:<22}{r.model}")
        lines += ["", f"memorisation of one fixed sparse draw (index k / n_fg; these masks: n_fg = {mem['n_fg']}):"]
        if mem["capacity"] is not None:
            lines.append(f"  this recipe (augment={c.recipe.get('augment')}): k = {mem['capacity']:.3g}, index "
                         f"{mem['index']:.3f}; memorised (index > 1/2) below n_fg = {mem['below']:.3g}")
        lines.append(f"  without augmentation (k fitted by simulations.memorisation, 400 steps): "
                     f"k = {mem['capacity_no_augment']:.4g}, index "
                     f"{mem['index_no_augment']:.3f}; memorised below n_fg = {mem['below_no_augment']:.4g}")
        lines.append(f"  remedy: {mem['remedy']}")
        lines.append("\nchecked against trained networks on real nuclei (simulations/README.md): " + VALIDATED
                     + "; the other rows are the same model, unchecked")
        return "\n".join(lines)

    def plot(self, path: Any) -> None:
        """Write the plan's figure (predicted Dice against sampling ratio, flip rate and outline error, with the
        calibration's measured points) to ``path`` (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        c = self.calibration
        by = {r.label.kind: [] for r in self.rows}
        for r in self.rows:
            by[r.label.kind].append(r)
        clean = next(r.dice for r in self.rows if r.label.kind == "clean")
        fig, ax = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
        s = by.get("sample", [])
        ax[0].plot([1.0] + [float(r.label.params[0]) for r in s], [clean] + [r.dice for r in s], "o-",
                   label="predicted, at t* = p/2")
        if c.sparse_dice is not None and c.label.startswith("sample"):
            ax[0].plot([1.0, float(c.label.split()[1])], [c.clean_dice, c.sparse_dice], "k*", ms=12,
                       label=f"calibration points ({c.source}; measured on held-out images)")
        ax[0].set(xscale="log", xlabel="sampling ratio p (fraction of foreground pixels labelled)",
                  ylabel="predicted pooled Dice", title="sparse labels (RCL)")
        fl = [r for r in by.get("flip", []) if abs(float(r.label.params[0]) - float(r.label.params[1])) < 1e-12]
        ax[1].plot([0.0] + [float(r.label.params[0]) for r in fl], [clean] + [r.dice for r in fl], "o-",
                   label="predicted, at t* = 1/2")
        ax[1].set(xlabel="flip rate f = b (labels wrong in both classes)", title="flipped labels (RCL)")
        pcl = sorted([(-float(r.label.params[0]), r.dice) for r in by.get("erode", [])]
                     + [(0.0, clean)] + [(float(r.label.params[0]), r.dice) for r in by.get("dilate", [])])
        ax[2].plot([p[0] for p in pcl], [p[1] for p in pcl], "o-", label="predicted, at 1/2 (Theorem 1)")
        ax[2].set(xlabel="outline error (px): erode < 0 < dilate", title="outlines too wide / too narrow (PCL)")
        chance = next((r.dice for r in self.rows if r.family == "RL"), None)
        for a in ax:
            if chance is not None:
                a.axhline(chance, color="0.5", ls=":", lw=1, label="chance (random labels)")
            a.axhline(clean, color="C2", ls="--", lw=1, label="clean labels")
            a.set_ylim(0, 1.02)
            a.legend(fontsize=8, loc="lower left")
        fig.suptitle(f"annotation plan: {self.masks['count']} mask(s), foreground "
                     f"{100 * self.masks['foreground_fraction']:.1f}%; calibration {c.source} (clean Dice "
                     f"{c.clean_dice:.3f}, n_eff {c.n_eff:.3g})", fontsize=10)
        fig.savefig(path, dpi=110)
        plt.close(fig)


def table(masks: Any, *, calibration: Calibration | None = None, ratios: Sequence[float] = RATIOS,
          flips: Sequence[float] = FLIPS, radii: Sequence[int] = RADII, skeleton: bool = True) -> Plan:
    """The whole plan for masks like ``masks``: :func:`predict` for clean labels, every sampling ratio,
    symmetric flip rate (f = b), dilation and erosion radius, skeletons and random labels, and when one
    fixed draw gets memorised.

    The memorisation block treats ``masks`` as the training set (n_fg = its
    foreground pixels): index = min(1, k / n_fg) with k the calibration's
    ``capacity`` (this recipe) and :data:`NO_AUGMENT_CAPACITY` (no augmentation).
    """
    m = masks if isinstance(masks, Masks) else Masks(masks)
    cal = calibration or DEFAULT
    labels = ([LabelNoise("clean")] + [LabelNoise("sample", float(p)) for p in ratios]
              + [LabelNoise("flip", float(f), float(f)) for f in flips]
              + [LabelNoise("dilate", int(r)) for r in radii] + [LabelNoise("erode", int(r)) for r in radii]
              + ([LabelNoise("skeleton")] if skeleton else []) + [LabelNoise("random", 0.5)])
    rows = [predict(m, lab, calibration=cal) for lab in labels]
    k = cal.capacity
    from theory import curves

    mem = {"n_fg": m.n_fg, "capacity": k,
           "index": None if k is None else float(curves.memorised_fraction(m.n_fg, k)),
           "below": None if k is None else 2 * k,
           "capacity_no_augment": NO_AUGMENT_CAPACITY,
           "index_no_augment": float(curves.memorised_fraction(m.n_fg, NO_AUGMENT_CAPACITY)),
           "below_no_augment": 2 * NO_AUGMENT_CAPACITY,
           "remedy": "dihedral augmentation (train.fit(augment=True), in the recipe) or fresh draws "
                     "(train.fit(noise=...)) keep a sparse draw from being memorised"}
    info = {"count": len(m), "pixels": m.n_pixels, "foreground_fraction": m.foreground_fraction,
            "foreground_pixels": m.n_fg}
    return Plan(rows, cal, info, mem)


# ------------------------------------------------------------------ calibration
def solve_n_eff(masks: Any, label: Any, *, clean_dice: float, measured: float) -> tuple[float, str | None]:
    """The n_eff at which a network trained on ``label`` (sampled or flipped) is predicted to score ``measured``:
    ``clean_dice * Masks(masks).pooled_dice(n_eff, f, b) = measured``, solved by bisection in log n_eff
    (the left side rises with n_eff), and which end of [N_EFF_MIN, N_EFF_MAX] clipped it ("min", "max";
    None when inside).

    Raises:
        ValueError: bad masks, or a label type without finite sampling (not "sample" / "flip", or f + b = 1).
    """
    hold = masks if isinstance(masks, Masks) else Masks(masks)
    lab = _as_label(label)
    if _family(lab) != "RCL":
        raise ValueError(f"n_eff belongs to sampled or flipped labels (f + b != 1), got {lab.name!r}")
    f, b = _rates(lab)
    clean = float(clean_dice)

    def g(log_n: float) -> float:
        return clean * float(hold.pooled_dice(math.exp(log_n), f, b)[0]) - measured

    lo, hi = math.log(N_EFF_MIN), math.log(N_EFF_MAX)
    if g(hi) <= 0:
        return N_EFF_MAX, "max"
    if g(lo) >= 0:
        return N_EFF_MIN, "min"
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
    return float(math.exp(0.5 * (lo + hi))), None


def calibrate(key: jax.Array, images: Any, masks: Any, *, label: Any = "sample 0.1", holdout: float = 0.25,
              recipe: dict | None = None, names: Sequence[str] | None = None,
              progress: bool | None = None) -> Calibration:
    """Fit ``n_eff`` and ``clean_dice`` of a training recipe on the user's own images.

    The images are split (by ``key``) into ``ceil(holdout N)`` held-out images
    (at least 1, at most N - 1) and the rest. Two networks are trained on the rest with ``fit_kwargs(**recipe)``:
    one on the clean masks, one on **one fixed draw** of ``label`` (as a real
    annotation is drawn once). ``clean_dice`` is the first's pooled Dice on the
    held-out images at 1/2; ``n_eff`` solves ``clean_dice *
    pooled_dice(held-out masks, n_eff, f, b) = `` the second's pooled Dice at its
    t* (clipped to [N_EFF_MIN, N_EFF_MAX] with a warning). The sparse network's
    memorisation index on its training images (output on the drawn pixels
    minus on the left-out foreground) gives the recipe's ``capacity`` k =
    index x n_fg.

    Args:
        key: randomness for the split, the draw and both trainings.
        images: float (N, H, W) or (N, H, W, C), N >= 2.
        masks: binary (N, H, W), matching the images.
        label: the sparse label type to calibrate on: "sample p" or "flip f b"
            (f + b != 1), a ``LabelNoise`` or its name.
        holdout: the fraction of images held out for scoring, in (0, 1).
        recipe: overrides of :data:`DEFAULT_RECIPE`.
        names: the masks' names (file names) for error messages.
        progress: tqdm bars for the two trainings (default: on a terminal).

    Raises:
        ValueError: bad masks (naming them), images and masks of different
            shapes, fewer than 2 images, a label type without finite sampling,
            held-out masks without foreground, or a draw that labels fewer than
            50 foreground pixels (masks too sparse for any n_eff to fit; the
            message lists the sparsest masks).
    """
    import warnings

    from . import train

    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    ms = Masks(masks, names=names)
    y = ms.stacks[0] if len(ms.stacks) == 1 else None  # masks in their given order when all share one size
    if x.ndim != 4 or y is None or y.shape != x.shape[:3]:
        raise ValueError(f"images (N, H, W[, C]) and masks (N, H, W) must match, got images {np.shape(images)} "
                         f"and masks of shapes {sorted({m.shape for m in ms.masks})} x {len(ms)}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"calibration needs at least 2 images (some to train on, some to score), got {n}")
    if not 0 < float(holdout) < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    lab = _as_label(label)
    if _family(lab) != "RCL":
        raise ValueError(f"calibrate on a sparse or flipped label type ('sample p' or 'flip f b', f + b != 1), "
                         f"got {lab.name!r}")
    kw = fit_kwargs(**(recipe or {}))
    rec = {**DEFAULT_RECIPE, **(recipe or {})}
    k_split, k_draw, k_clean, k_sparse = jax.random.split(key, 4)
    n_hold = min(n - 1, max(1, math.ceil(float(holdout) * n)))
    perm = np.asarray(jax.random.permutation(k_split, n))
    tr, ho = np.sort(perm[n_hold:]), np.sort(perm[:n_hold])
    label_names = ms.names or [f"mask {i}" for i in range(n)]
    if not y[ho].any():
        raise ValueError("the held-out masks hold no foreground: " + ", ".join(label_names[i] for i in ho)
                         + " (more images, or a larger holdout)")
    noisy = np.asarray(lab(k_draw, y[tr]))
    drawn = (noisy == 1) & (y[tr] == 1)  # foreground pixels the draw labels foreground (flips add background ones)
    labelled = int(drawn.sum())
    if labelled < _MIN_LABELLED:
        fg = sorted((int(y[i].sum()), label_names[i]) for i in tr)
        raise ValueError(f"masks too sparse to fit n_eff: one draw of '{lab.name}' labels {labelled} foreground "
                         f"pixel(s) of the {len(tr)} training masks (at least {_MIN_LABELLED} needed); foreground "
                         "pixels of the sparsest: " + ", ".join(f"{nm} {c}" for c, nm in fg[:5])
                         + " (more or larger masks, or a larger ratio)")

    clean_net = train.fit(k_clean, x[tr], y[tr], label_type=LabelNoise("clean"), progress=progress, **kw)
    clean = float(metrics.dice(clean_net.predict(x[ho]) >= 0.5, y[ho]))
    sparse_net = train.fit(k_sparse, x[tr], noisy, label_type=lab, progress=progress, **kw)
    mt = lab.matched_threshold()
    sparse = float(metrics.dice(np.asarray(mt.apply(sparse_net.predict(x[ho]))), y[ho]))
    n_eff, clipped = solve_n_eff(y[ho], lab, clean_dice=clean, measured=sparse)
    if clipped:
        warnings.warn(f"calibrate: the sparse network's Dice {sparse:.3f} against clean {clean:.3f} lies "
                      f"{'above' if clipped == 'max' else 'below'} what any n_eff in [{N_EFF_MIN:g}, {N_EFF_MAX:g}] "
                      f"predicts; n_eff = {n_eff:g} (a {'noise-free' if clipped == 'max' else 'failed'} sparse "
                      "run: check the images and the recipe)", UserWarning, stacklevel=2)
    p_tr = sparse_net.predict(x[tr])
    left = ~drawn & (y[tr] == 1)
    index = float(p_tr[drawn].mean() - p_tr[left].mean()) if left.any() else None
    n_fg = int(y[tr].sum())
    cap = None if index is None else max(index, 0.0) * n_fg
    return Calibration(n_eff=n_eff, clean_dice=clean, recipe={k: rec[k] for k in DEFAULT_RECIPE}, label=lab.name,
                       sparse_dice=sparse, capacity=cap, memorisation_index=index, n_train=len(tr),
                       n_holdout=len(ho), source="calibrated")
