"""The prediction model: what a network trained on a label type reaches, from the masks and a calibration.

:class:`Masks` summarises binary masks once (the clean fraction field's
histogram, the perturbed masks, the skeletons); :func:`predict` answers for one
label type (:mod:`metastructure.planner`: the formula of each family) and
:func:`solve_n_eff` inverts the finite-sampling prediction. The arithmetic is
:mod:`theory.curves` (``fg_probability``, ``dice_from_probability``,
``pcl_label_dice``, ``pcl_dice``) on arrays computed here with
:mod:`metastructure.density` and :mod:`metastructure.noise`.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from theory import curves

from .. import _checks, density, noise
from ..noise import LabelNoise
from .calibration import DEFAULT, N_EFF_MAX, N_EFF_MIN, Calibration, _dice_value
from .law import LEVEL, ScaleLaw

__all__ = ["ANNOTATIONS", "MIN_LABELLED_UNITS", "MIN_RESOLVED", "MIN_RESOLVED_SKELETON", "N_EFF_MAX", "N_EFF_MIN",
           "Masks", "Prediction", "predict", "solve_n_eff", "unresolved"]

#: sampled and flipped labels are predicted only on masks whose :attr:`Masks.resolved` reaches this, skeletons
#: only where it reaches :data:`MIN_RESOLVED_SKELETON`: their models read the 1-px clean partition of the masks, so
#: they speak only for the part of the masks it keeps (:func:`unresolved`; the levels are where the ``planner``
#: simulation finds the models within its tolerance on thin tubules, simulations/README.md).
MIN_RESOLVED = 0.8
MIN_RESOLVED_SKELETON = 0.9

_HIST_BINS = 4096  # bins of the clean fraction field per side of 1/2


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
        model: which formula gave ``dice`` (:mod:`metastructure.planner`), and
            how many of the calibration's networks on the family's draws failed
            to train (:data:`~metastructure.planner.FAILED`), where any did.
        interval: (low, high): where one network trained this way is expected
            to land, at :data:`~metastructure.planner.law.LEVEL` (from the
            calibration's scale law: :func:`predict`); None without a law, or
            for random labels.
        n_images: the training-set size the prediction is for (None: no
            ``n_images`` given and a calibration whose ``n_train`` is 0).
    """

    label: LabelNoise
    dice: float
    threshold: float | None
    inverted: bool
    family: str
    model: str
    interval: tuple[float, float] | None = None
    n_images: int | None = None


def _as_mask_list(masks: Any, names: Sequence[str] | None, ndim: int = 2) -> list[np.ndarray]:
    one = "(H, W)" if ndim == 2 else "(D, H, W)"
    if not isinstance(masks, (list, tuple)):  # one array
        arr = np.asarray(masks)
        if arr.ndim == ndim:
            arr = arr[None]
        if arr.ndim != ndim + 1:
            many = "(N, H, W)" if ndim == 2 else "(N, D, H, W)"
            raise ValueError(f"masks must be {many}, {one} or a list of {one} arrays, got shape {arr.shape}"
                             + (" (volumes: ndim=3)" if ndim == 2 and arr.ndim == 4 else ""))
        items = list(arr)
    else:
        items = [np.asarray(m) for m in masks]
    if not items:
        raise ValueError("no masks given")
    names = list(names) if names is not None else [f"mask {i}" for i in range(len(items))]
    if len(names) != len(items):
        raise ValueError(f"{len(names)} names for {len(items)} masks")
    out = []
    for name, m in zip(names, items, strict=True):
        if m.ndim != ndim or m.size == 0:
            raise ValueError(f"{name}: a mask must be a non-empty {one} array, got shape {m.shape}")
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

    ``Masks(masks, names=None, ndim=2)``: an (N, H, W) or (H, W) array or a list of
    (H, W) arrays of differing sizes, values 0 / 1 (``names`` label the masks
    in error messages, e.g. file names); with ``ndim=3`` volumes: an
    (N, D, H, W) or (D, H, W) array or a list of (D, H, W) arrays, whose
    fields, perturbations and skeletons are 3-D. Every prediction pools over
    all pixels (voxels) of all masks.

    Raises:
        ValueError: no masks, a mask that is not a non-empty 2-D 0/1 array
            (naming it), or masks without any foreground or without any
            background pixel (no boundary: every label type would score as
            clean labels do, random ones 1).
    """

    def __init__(self, masks: Any, *, names: Sequence[str] | None = None, ndim: int = 2):
        if isinstance(masks, Masks):  # the same summary (and its caches), perhaps with other names
            self.__dict__.update(masks.__dict__)
            if names is not None:
                if len(names) != len(self.masks):
                    raise ValueError(f"{len(names)} names for {len(self.masks)} masks")
                self.names = list(names)
            return
        self.ndim = _checks.check_ndim(ndim)
        self.names = list(names) if names is not None else None
        self.masks = _as_mask_list(masks, names, self.ndim)
        self.n_fg = int(sum(int(m.sum()) for m in self.masks))
        self.n_pixels = int(sum(m.size for m in self.masks))
        if self.n_fg == 0:
            raise ValueError(f"the {len(self.masks)} mask(s) hold no foreground pixel: nothing to plan for")
        if self.n_fg == self.n_pixels:
            raise ValueError(f"the {len(self.masks)} mask(s) hold no background pixel (all {self.n_pixels} pixels "
                             "are foreground): no boundary, nothing to plan for")
        by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
        for m in self.masks:
            by_shape.setdefault(m.shape, []).append(m)
        self.stacks = [np.stack(ms) for ms in by_shape.values()]  # (N_g, [D,] H, W) bool, one per mask size
        self._label_dice: dict[tuple[str, float | None], float] = {}
        self._units_q: dict[tuple, float] = {}  # an annotation's q, by kind, parameters and lattice or not

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def foreground_fraction(self) -> float:
        """Foreground pixels / all pixels, over all masks."""
        return self.n_fg / self.n_pixels

    @functools.cached_property
    def histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(d, count, inside)``: the clean fraction field D (``density.fraction_field`` at 1 px, gaussian, the
        fields :func:`theory.curves.pooled_dice` takes) of every pixel, binned: bin means, pixel counts and
        whether the bin lies in the clean partition {D > 1/2}."""
        return self._clean_summary[0]

    @property
    def resolved(self) -> float:
        """How much of the masks the model resolves: the pooled Dice between the masks and the clean partition
        {D > 1/2} of their 1-px fraction field (``density.fraction_field``, gaussian). Near 1 for structures
        wider than about 2 px; 0 for 1-px lines and single pixels, whose field stays below 1/2."""
        return self._clean_summary[1]

    @functools.cached_property
    def _clean_summary(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], float]:
        cnt = np.zeros(2 * _HIST_BINS)
        tot = np.zeros(2 * _HIST_BINS)
        overlap = called = 0
        for stack in self.stacks:
            d = np.asarray(density.fraction_field(stack, 1.0, ndim=self.ndim))
            overlap += int(np.count_nonzero((d > 0.5) & stack))
            called += int(np.count_nonzero(d > 0.5))
            d = d.ravel()
            b = np.minimum((d * _HIST_BINS).astype(np.int32), _HIST_BINS - 1)  # bin i: [i/B, (i+1)/B)
            b += np.where(d > 0.5, 0, _HIST_BINS).astype(np.int32)  # first half: inside {D > 1/2}; second: outside
            cnt += np.bincount(b, minlength=2 * _HIST_BINS)
            tot += np.bincount(b, weights=d, minlength=2 * _HIST_BINS)
        keep = cnt > 0
        inside = np.arange(2 * _HIST_BINS) < _HIST_BINS
        return (tot[keep] / cnt[keep], cnt[keep], inside[keep]), 2 * overlap / (called + self.n_fg)

    def annotated_dice(self, n_eff: float, fraction: float, unlabelled: str, *, overlap: float = 0.0) -> float:
        """:func:`theory.curves.annotated_dice` of these masks (a fraction p annotated, the rest background or
        ignored, in units of q = ``overlap``), up to the binning of D, as :meth:`pooled_dice`."""
        d, cnt, inside = self.histogram
        prob = curves.annotated_probability(d, n_eff, fraction, unlabelled=unlabelled, overlap=overlap)
        return float(curves.dice_from_probability(prob, inside[None], axes=(1,), weight=cnt[None])[0])

    def overlap(self, label: Any) -> float:
        """The q of an annotation label type on these masks (treated as the training set), what
        :func:`theory.curves.clustered_n_eff` takes: for slices :func:`theory.curves.lattice_overlap` of each
        mask's classes of slices (one class labelled per mask: ``noise.Slices.class_counts``), for blocks
        :func:`theory.curves.grid_overlap` (independent blocks on a grid at a random phase per mask), for
        scattered pixels :func:`theory.curves.cluster_overlap` of the pixels."""
        lab = _as_label(label)
        return self._q(lab, lattice=isinstance(lab, noise.Slices))

    def labelled_units(self, label: Any) -> float:
        """How many of an annotation label type's units (slices, blocks, pixels) with foreground these masks
        hold labelled: p times the effective number of single units, 1 / q of the units labelled independently
        (:func:`theory.curves.cluster_overlap` of the single slices' or pixels' foreground counts,
        ``unit_counts``; for blocks :func:`theory.curves.grid_overlap`, the q of their randomly shifted grid)."""
        lab = _as_label(label)
        return float(lab.labelled_fraction) / self._q(lab, lattice=False)

    def _q(self, lab: LabelNoise, *, lattice: bool) -> float:
        """q of ``lab``'s units (the lattice's, the blocks' ``grid_overlap``, or the single units'
        ``cluster_overlap``), computed once per
        kind and parameters: the semantics (the last parameter) does not change it."""
        key = (lab.kind, lab.params[:-1], lattice)
        if key not in self._units_q:
            lab = _with_ndim(lab, self.ndim)
            if lattice:
                q = curves.lattice_overlap(np.concatenate([lab.class_counts(st) for st in self.stacks]))
            elif isinstance(lab, noise.Blocks):  # one q per mask size, weighted by its foreground squared
                fg = np.array([st.sum() for st in self.stacks], float)
                if not fg.sum() > 0:
                    raise ValueError("the masks hold no foreground: no blocks' q")
                qs = np.array([curves.grid_overlap(st, lab.params[1], ndim=self.ndim) if f else 0.0
                               for st, f in zip(self.stacks, fg, strict=True)])
                q = float(np.sum(qs * fg**2) / fg.sum() ** 2)
            else:
                q = curves.cluster_overlap(np.concatenate([lab.unit_counts(st) for st in self.stacks]))
            self._units_q[key] = q
        return self._units_q[key]

    def pooled_dice(self, n_eff: float, fg_to_bg: Any, bg_to_fg: Any) -> np.ndarray:
        """:func:`theory.curves.pooled_dice` of these masks, shape (K,), up to the binning of D (4096 bins per side
        of 1/2, each pixel at its bin's mean)."""
        d, cnt, inside = self.histogram
        f = np.atleast_1d(np.asarray(fg_to_bg, float))
        b = np.broadcast_to(np.asarray(bg_to_fg, float), f.shape)
        prob = curves.fg_probability(d[None], d[None] / n_eff, (1 - d[None]) / n_eff, f[:, None], b[:, None])
        return curves.dice_from_probability(prob, inside[None], axes=(1,), weight=cnt[None])

    def label_dice(self, label: Any, *, bandwidth: float = 1.0) -> float:
        """Theorem 1 on these masks: :func:`theory.curves.pcl_label_dice`, the pooled Dice against the masks of
        what a network trained on ``label`` learns, cut at its threshold: for "dilate r" / "erode r" the
        perturbed masks at 1/2, for "skeleton" the skeletons' fraction field at ``bandwidth`` (gaussian; the
        planner's model: 1 px) at :attr:`skeleton_threshold` (s/2), for "clean" the masks themselves (1).

        Raises:
            ValueError: a label type of another family (sampled, flipped, random: no perturbed meta-structure).
            TypeError: ``label`` is not a label type.
        """
        lab = _as_label(label)
        if lab.family == "CL":
            return 1.0
        if not isinstance(lab, (noise.Dilate, noise.Erode, noise.Skeleton)):
            raise ValueError(f"label must be clean, dilate, erode or skeleton (structured errors), got {lab.name!r}")
        skeleton = isinstance(lab, noise.Skeleton)
        key = (lab, float(bandwidth) if skeleton else None)  # label types hash by value
        if key not in self._label_dice:
            if skeleton:
                learned = [density.fraction_field(sk, bandwidth, ndim=self.ndim) for sk in self.skeletons]
                threshold = self.skeleton_threshold.threshold
            else:
                perturb = _with_ndim(lab, self.ndim)
                learned, threshold = [perturb(None, m) for m in self.stacks], 0.5
            self._label_dice[key] = curves.pcl_label_dice(learned, self.stacks, threshold=threshold)
        return self._label_dice[key]

    @functools.cached_property
    def skeletons(self) -> list[np.ndarray]:
        """``noise.skeletonize`` of each stack of equal-size masks."""
        return [np.asarray(noise.skeletonize(m, ndim=self.ndim)) for m in self.stacks]

    @functools.cached_property
    def skeleton_threshold(self) -> Any:
        r"""The skeleton labels' t* = s/2, :math:`s = |\text{skeleton}| / |\text{mask}|` pooled over all masks:
        ``density.matched_threshold`` of the transition the (mask, skeleton) pairs show
        (what ``LabelNoise("skeleton").matched_threshold(masks=...)`` gives for one stack)."""
        kept = sum(int(np.count_nonzero(sk & m)) for sk, m in zip(self.skeletons, self.stacks, strict=True))
        stray = sum(int(np.count_nonzero(sk & ~m)) for sk, m in zip(self.skeletons, self.stacks, strict=True))
        s_, b_ = kept / self.n_fg, stray / max(self.n_pixels - self.n_fg, 1)
        return density.matched_threshold(np.array([[1 - b_, b_], [1 - s_, s_]]))


def unresolved(masks: Any, label: Any) -> str | None:
    """Why :func:`predict` cannot answer for ``label`` on ``masks`` because the structures are too thin, or None.

    Sampled and flipped labels (the finite-sampling model) and skeletons (the
    skeleton's 1-px fraction field) are read on the 1-px clean partition of the
    masks; where :attr:`Masks.resolved` lies below :data:`MIN_RESOLVED`
    (:data:`MIN_RESOLVED_SKELETON` for skeletons) that partition has lost too
    much of them. Clean labels, dilation, erosion and random labels do not
    depend on it.

    Raises:
        ValueError, TypeError: bad masks or label (as :func:`predict`).
    """
    m = masks if isinstance(masks, Masks) else Masks(masks)
    lab = _as_label(label)
    skeleton = isinstance(lab, noise.Skeleton)
    if not (lab.family == "RCL" or skeleton or isinstance(lab, ANNOTATIONS)):
        return None
    need = MIN_RESOLVED_SKELETON if skeleton else MIN_RESOLVED
    if m.resolved >= need:
        return None
    return (f"masks: the structures are too thin to predict {lab.name!r}: the clean partition of their 1-px "
            f"fraction field keeps {m.resolved:.2f} of them (Masks.resolved, a Dice; the "
            f"{'skeleton' if skeleton else 'finite-sampling'} model needs {need:g}, which 1-px lines and spots of "
            "3 x 3 px or less fall short of), so it is not predicted for these masks; clean labels, dilation, "
            "erosion and random labels are")


def _check_resolved(m: Masks, label: LabelNoise) -> None:
    why = unresolved(m, label)
    if why:
        raise ValueError(why)


#: the annotation-practice label types (a region labelled, the rest background or ignored): predicted with
#: :func:`theory.curves.annotated_dice` at their units' q (:meth:`Masks.overlap`)
ANNOTATIONS = (noise.Slices, noise.Blocks, noise.Scattered)
#: an annotation is predicted only when the training set is expected to hold at least this many labelled units
#: (slices, blocks) with foreground, p / q: below it the count of labelled units is too small for the normal
#: approximation (the textbook n p >= 10), and the ``annotation`` simulation's networks failed there
#: (simulations/README.md)
MIN_LABELLED_UNITS = 10


def _with_ndim(label: LabelNoise, ndim: int) -> LabelNoise:
    """``label`` drawing in ``ndim`` spatial axes, its parameters exactly as they are (no round trip through
    its name)."""
    out = copy.copy(label)
    out.ndim = ndim
    return out


def _rates(label: LabelNoise) -> tuple[float, float]:
    """(f, b) of a class-conditional binary label type: T[1, 0] and T[0, 1] of its transition matrix."""
    t = label.transition()
    return float(t[1, 0]), float(t[0, 1])


def _as_label(label: Any) -> LabelNoise:
    """``label`` as a binary label type: a :class:`~metastructure.noise.LabelNoise`, or its name
    (:meth:`LabelNoise.parse <metastructure.noise.LabelNoise.parse>`)."""
    if isinstance(label, str):
        if not label.strip():
            raise ValueError("label is an empty string; give a label type such as 'sample 0.1'")
        try:
            label = LabelNoise.parse(label)
        except ValueError as e:  # parse names its own argument, text: say which one of ours it was
            reason = str(e).removeprefix(f"text {label!r}: ")
            raise ValueError(f"label {label!r} is not a label type's name: {reason}") from None
    if not isinstance(label, LabelNoise):
        raise TypeError("label must be a noise.LabelNoise (or its name, e.g. 'sample 0.1'), "
                        f"got {type(label).__name__}")
    if label.num_classes not in (None, 2) or isinstance(label, (noise.SampleClasses, noise.SymmetricFlip)):
        raise ValueError(f"label must be a binary label type (the planner is binary); {label!r} is multi-class")
    return label


def _as_calibration(calibration: Any) -> Calibration:
    """``calibration``, or :data:`DEFAULT` for None; ``TypeError`` for anything but a :class:`Calibration`."""
    if calibration is None:
        return DEFAULT
    if not isinstance(calibration, Calibration):
        raise TypeError("calibration must be a planner.Calibration (Calibration.from_dict reads a stored one) or "
                        f"None, got {type(calibration).__name__}")
    return calibration


def predict(masks: Any, label: Any, *, calibration: Calibration | None = None, n_images: int | None = None,
            check_resolved: bool = True) -> Prediction:
    """The predicted pooled Dice, threshold and polarity of a network trained on ``label`` for masks like ``masks``.

    With a calibration that holds a scale law (:func:`metastructure.planner.calibrate`
    makes one; :mod:`metastructure.planner.law`), the prediction is for
    ``n_images`` training images at the recipe's steps: the clean Dice at that
    size (:meth:`ScaleLaw.clean_dice <metastructure.planner.law.ScaleLaw.clean_dice>`),
    and for sampled and flipped labels n_eff of the label's family at that
    size (:meth:`ScaleLaw.n_eff <metastructure.planner.law.ScaleLaw.n_eff>`:
    the memorisation of that family at P passes over each pixel, :meth:`ScaleLaw.passes
    <metastructure.planner.law.ScaleLaw.passes>`).
    The interval is where one such network lands, at
    :data:`~metastructure.planner.law.LEVEL`: the law's numbers moved over
    their joint confidence regions (the law's two and the family's memorisation
    curve's two, each at LEVEL), the new network's own
    memorisation index about the curve (its ``sd``), and the scatter of two
    networks (the new one and the calibration's clean one; each
    :meth:`ScaleLaw.scatter_at <metastructure.planner.law.ScaleLaw.scatter_at>`
    this size, times Student's t at LEVEL), all added in quadrature; clean,
    dilated, eroded and skeleton labels get the scatter only (their own model error is not in it: the ``planner``
    simulation measures it). Without a law, n_eff is the calibration's and no
    interval is given.

    Args:
        masks: binary masks (see :class:`Masks`), or a :class:`Masks`.
        label: a binary :class:`~metastructure.noise.LabelNoise` (or its name,
            ``"sample 0.1"``, ``"flip 0.3 0.3"``, ``"dilate 2"``...). Sampled
            and flipped labels are one fixed draw, as a real annotation is.
        calibration: from :func:`metastructure.planner.calibrate`; default
            :data:`metastructure.planner.DEFAULT`.
        n_images: training images, >= 1 (default: the calibration's ``n_train``).
        check_resolved: refuse what :func:`unresolved` refuses (default). False
            answers anyway, with the same formula, for studying the model where
            it is known not to hold (the ``planner`` simulation does, to show
            where it stops).

    Returns:
        A :class:`Prediction` (:mod:`metastructure.planner`: the formula of each family).

    Raises:
        ValueError: bad masks (:class:`Masks`: none, not binary, no foreground
            or no background pixel), a multi-class label type, a label name
            that does not parse (naming ``label``, with the grammar), a dilate /
            erode radius beyond the masks' diagonal, sampled, flipped or skeleton
            labels on masks too thin for the model (:func:`unresolved`; unless
            ``check_resolved`` is False), ``n_images`` below 1, or ``n_images``
            other than ``n_train`` for a calibration without a law.
        TypeError: ``label`` is not a label type, ``calibration`` not a
            :class:`Calibration` (its values are checked when it is built),
            ``check_resolved`` not a bool, ``n_images`` not an int.
    """
    if not isinstance(check_resolved, bool):
        raise TypeError(f"check_resolved must be True or False, got {check_resolved!r}")
    m = masks if isinstance(masks, Masks) else Masks(masks)
    label = _as_label(label)
    cal = _as_calibration(calibration)
    law, n = _law_at(cal, n_images)
    if check_resolved:
        _check_resolved(m, label)
    fam = label.family
    clean = cal.clean_dice if law is None else law.clean_dice(n)
    # one network's scatter at this size, twice: the new network's, and the calibration's clean network's, which
    # every prediction multiplies (assumed to scatter as the sparse networks do about the law)
    scatter = 0.0
    if law is not None and law.dof:
        sd, dof = law.scatter_at(n)
        scatter = math.sqrt(2) * sd * float(stats.t.ppf(0.5 + LEVEL / 2, dof))

    def done(dice: float, threshold, inverted: bool, model: str, spread: tuple[float, float] | None = None):
        interval = None
        if law is not None and law.dof and fam != "RL":
            lo, hi = spread if spread is not None else (0.0, 0.0)
            interval = (max(0.0, dice - math.hypot(lo, scatter)), min(1.0, dice + math.hypot(hi, scatter)))
        return Prediction(label, float(dice), threshold, inverted, fam, model, interval, n)

    if isinstance(label, ANNOTATIONS):
        if float(label.labelled_fraction) > 0:
            # the training set the units are counted in: n_images, or the calibration's own when it was measured
            # on masks of this kind; a 2-D calibration's tile count says nothing about volumes: the masks given
            same_kind = (m.ndim == 3) == ("on volumes" in cal.source)
            units_n = n if (n_images is not None or same_kind) else len(m)
            return _annotation(m, label, cal, law, n, clean, done, units_n)
        if label.unlabelled == "ignore":
            raise ValueError(f"label {label.name!r} labels no pixel and ignores the rest: nothing to learn from")
    if fam == "CL":
        return done(clean, 0.5, False, "calibrated clean Dice" + ("" if law is None else f" at {n} images"))
    if fam == "RL":
        pi = m.foreground_fraction
        return done(2 * pi / (1 + pi), None, False, "chance (all foreground)")
    if fam == "RCL":
        f, b = _rates(label)
        mt = label.matched_threshold()
        if law is None:
            dice = cal.clean_dice * float(m.pooled_dice(cal.n_eff, f, b)[0])
            return done(dice, float(mt.threshold), bool(mt.invert), f"finite sampling, n_eff = {cal.n_eff:.3g}")
        kind = label.kind if label.kind in law.kinds else law.kinds[0]
        n_eff, dice, spread = _law_dice(m, law, kind, n, lambda n_eff: float(m.pooled_dice(n_eff, f, b)[0]))
        note = "" if kind == label.kind else f", memorisation of {kind} draws ({label.kind} not calibrated)"
        ran = [p for p in law.points if p.get("kind") == label.kind]  # this family's own networks
        if failed := sum(bool(p.get("failed")) for p in ran):  # networks that did not train: not in the law
            note += f"; {failed} of {len(ran)} calibration networks on {label.kind} draws failed to train"
        return done(dice, float(mt.threshold), bool(mt.invert),
                    f"scale law, n_eff = {n_eff:.3g} at {n} images ({law.passes(n):.3g} passes){note}", spread)
    if isinstance(label, (noise.Dilate, noise.Erode)):
        reach = max(math.hypot(*stack.shape[1:]) for stack in m.stacks)
        if float(label.params[0]) > reach:
            raise ValueError(f"label {label.name!r}: a radius beyond the masks' diagonal ({reach:.1f} px) makes "
                             "every perturbed mask all foreground (dilate) or all background (erode); give a radius "
                             "up to it")
    dice = float(curves.pcl_dice(m.label_dice(label), clean))
    if isinstance(label, noise.Skeleton):
        return done(dice, float(m.skeleton_threshold.threshold), False, "Theorem 1 + jitter, skeleton field at 1 px")
    return done(dice, 0.5, False, "Theorem 1 + jitter, perturbed masks")


def _law_at(cal: Calibration, n_images: Any) -> tuple[ScaleLaw | None, int | None]:
    """The calibration's law and the training-set size to predict at (``n_images``, or the calibration's own)."""
    if n_images is None:
        return cal.law, cal.n_train or None
    n = _checks.check_int("n_images", n_images, minimum=1)
    if cal.law is None and n != cal.n_train:
        raise ValueError(f"n_images = {n}: this calibration ({cal.source}) has no scale law, so it predicts only at "
                         f"its own training-set size ({cal.n_train} images); planner.calibrate measures one")
    return cal.law, n


def _annotation(m: Masks, label: LabelNoise, cal: Calibration, law: ScaleLaw | None, n: int | None, clean: float,
                done: Any, units_n: int | None) -> Prediction:
    """An annotation label type: the clean Dice times ``Masks.annotated_dice`` at the calibration's or the law's
    n_eff and the units' q (``Masks.overlap``, the masks standing for ``units_n`` training images of their kind: q
    scaled by len(masks) / units_n); with a law, the memorisation of sampled draws (its first family, as the
    annotated region is fixed) sets n_eff."""
    p, sem = float(label.labelled_fraction), label.unlabelled
    # the masks' units per mask, over the training set's masks: units_n of them (q falls, the count grows, as
    # 1 / the number of masks)
    scale = len(m) / units_n if units_n else 1.0
    q = m.overlap(label) * scale
    labelled = m.labelled_units(label) / scale
    mt = label.matched_threshold()
    units = {"slices": "slices", "blocks": "blocks", "scattered": "pixels"}[label.kind]
    if labelled < MIN_LABELLED_UNITS:
        raise ValueError(f"label {label.name!r}: the {units_n or len(m)} training images would hold about "
                         f"{labelled:.3g} labelled {units} with foreground (p / q of the single {units}), fewer than "
                         f"{MIN_LABELLED_UNITS}: too few for the model (and for training: the annotation simulation's "
                         f"networks failed there); label more {units} or more images")
    if sem == "ignore":  # two effects the model leaves out, of opposite signs
        caveat = ("; ignore-trained networks pool more labels than sampled ones (higher), and units alike in the "
                  "image cost more than the model's (lower): simulations/README.md, annotation")
    elif label.kind == "slices":  # a plane's depth is visible on whole stacks
        caveat = ("; assumes the network cannot tell which slices were labelled: train on depth windows "
                  "(train.fit(crop=(d, None, None))), since on whole thin stacks networks learnt each depth's "
                  "labelled share (simulations/README.md, annotation)")
    elif label.kind != "scattered":
        caveat = "; assumes the network cannot tell which blocks were labelled (simulations/README.md, annotation)"
    else:
        caveat = ""
    if sem == "background":  # t* = p/2 reads a network whose output on objects settled below p as empty
        caveat += ("; threshold the network at its own level (metrics.level_threshold): at t* networks whose "
                   "output on objects settled below p read as empty (simulations/README.md, annotation)")
    via = " (ignore: through 1 + 1/(p n'))" if sem == "ignore" else ""

    def share(n_eff: float) -> float:
        return m.annotated_dice(n_eff, p, sem, overlap=q)

    if law is None:
        n_units = float(curves.clustered_n_eff(cal.n_eff, q))
        return done(cal.clean_dice * share(cal.n_eff), float(mt.threshold), False,
                    f"annotation ({sem}), n_eff = {cal.n_eff:.3g}, n' = {n_units:.3g} in {units} (q = {q:.3g})"
                    f"{via}{caveat}")
    kind = "sample" if "sample" in law.kinds else law.kinds[0]
    n_eff, dice, spread = _law_dice(m, law, kind, n, share)
    n_units = float(curves.clustered_n_eff(n_eff, q))
    return done(dice, float(mt.threshold), False,
                f"annotation ({sem}), scale law n_eff = {n_eff:.3g} at {n} images ({law.passes(n):.3g} passes, "
                f"memorisation of {kind} draws), n' = {n_units:.3g} in {units} (q = {q:.3g}){via}{caveat}", spread)


def _law_dice(m: Masks, law: ScaleLaw, kind: str, n: int, share: Any) -> tuple[float, float, tuple[float, float]]:
    """(n_eff, Dice, (how far the uncertainty reaches below, above)) of a ``kind`` draw on ``n`` images whose share
    of the clean Dice at a given n_eff is ``share(n_eff)`` (``Masks.pooled_dice`` of its rates, or of an
    annotation). Three parts, added in quadrature: the region of (log rate, log ratio) and that of the family's
    (alpha, beta), each the joint region of its two numbers at LEVEL (the ellipse of its information, radius^2
    2 F(LEVEL; 2, dof): wider than the delta method's t-interval of the one prediction, which the prediction's
    curvature far from the calibration's sizes makes too narrow; clipped to the law's bounds where the information
    leaves a direction open) walked at 24 points; and the new network's own memorisation index, which scatters
    about the curve by its ``sd`` in log (at Student's t of LEVEL with the curve's dof)."""
    clean = law.clean_dice(n)
    c = law.memorisation[kind]

    def dice(log_law=None, curve=None) -> tuple[float, float]:
        n_eff = float(np.clip(law.n_eff(kind, n, log_law=log_law, curve=curve), N_EFF_MIN, N_EFF_MAX))
        return n_eff, clean * share(n_eff)

    n_eff, d0 = dice()
    theta = np.log([law.rate, law.ratio])
    box = (np.array([ScaleLaw.LOG_RATE[0], ScaleLaw.LOG_RATIO[0]]),
           np.array([ScaleLaw.LOG_RATE[1], ScaleLaw.LOG_RATIO[1]]))
    regions = [(theta, np.asarray(law.information), box, law.dof, lambda t: dice(log_law=tuple(t))[1])]
    if c["information"] is not None and c["dof"]:
        regions.append((np.array([c["alpha"], c["beta"]]), np.asarray(c["information"]), None, c["dof"],
                        lambda t: dice(curve=tuple(t))[1]))
    below, above = [], []
    for centre, info, bounds, dof, at in regions:
        # the joint region of the two numbers (radius^2 2 F(LEVEL; 2, dof)), not the delta method's t: far from the
        # calibration's sizes the prediction is not linear in them, and the t-interval under-covers there (the
        # Monte Carlo of a known law in tests/test_planner_law.py)
        q = 2 * float(stats.f.ppf(LEVEL, 2, dof))
        values = [d0]
        for a in np.linspace(0, 2 * np.pi, 24, endpoint=False):
            u = np.array([np.cos(a), np.sin(a)])
            curv = float(u @ info @ u)
            r = math.sqrt(q / curv) if curv > 1e-12 else np.inf
            if bounds is not None:  # no further than the box along u
                with np.errstate(divide="ignore"):
                    reach = np.where(u > 0, (bounds[1] - centre) / u, np.where(u < 0, (bounds[0] - centre) / u, np.inf))
                r = min(r, float(reach.min()))
            if np.isfinite(r):
                values.append(at(centre + r * u))
        below.append(d0 - min(values))
        above.append(max(values) - d0)
    if c.get("sd") and c["dof"]:
        z = float(stats.t.ppf(0.5 + LEVEL / 2, c["dof"])) * c["sd"]
        own = [dice(curve=(c["alpha"] + s, c["beta"]))[1] for s in (-z, z)]  # less memorised: more Dice
        below.append(max(d0 - min(own), 0.0))
        above.append(max(max(own) - d0, 0.0))
    return n_eff, d0, (math.hypot(*below), math.hypot(*above))


def solve_n_eff(masks: Any, label: Any, *, clean_dice: float, measured: float) -> tuple[float, str | None]:
    """The n_eff at which a network trained on ``label`` (sampled or flipped) is predicted to score ``measured``:
    ``clean_dice * Masks(masks).pooled_dice(n_eff, f, b) = measured``, solved by bisection in log n_eff
    (the left side rises with n_eff), and which end of [N_EFF_MIN, N_EFF_MAX] clipped it ("min", "max";
    None when inside).

    Raises:
        ValueError: bad masks, a label type without finite sampling (not "sample" / "flip", or f + b = 1), masks
            too thin for the model (:attr:`Masks.resolved` below :data:`MIN_RESOLVED`), or ``clean_dice`` /
            ``measured`` not a finite number in [0, 1] (a Dice).
        TypeError: ``clean_dice`` / ``measured`` not a real number.
    """
    clean = _dice_value("clean_dice", clean_dice)
    measured = _dice_value("measured", measured)
    hold = masks if isinstance(masks, Masks) else Masks(masks)
    lab = _as_label(label)
    if lab.family != "RCL" or isinstance(lab, ANNOTATIONS):
        raise ValueError(f"n_eff is solved on sampled or flipped labels (f + b != 1), got {lab.name!r}"
                         + (" (an annotation's labels come in slices or blocks: calibrate on 'sample p')"
                            if isinstance(lab, ANNOTATIONS) else ""))
    _check_resolved(hold, lab)
    f, b = _rates(lab)

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

