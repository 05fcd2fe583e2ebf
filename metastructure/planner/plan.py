"""The presentation: a whole annotation plan for some masks, as a table, a text and a figure.

:func:`table` runs :func:`metastructure.planner.predict` over every label type
(clean, sampling ratios, flip rates, dilation and erosion radii, skeletons,
random labels) and adds when one fixed draw gets memorised; a :class:`Plan`
prints itself (:meth:`Plan.text`), draws itself (:meth:`Plan.plot`) and
serialises (:meth:`Plan.to_dict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from theory import curves

from .. import noise
from ..noise import LabelNoise
from .calibration import NO_AUGMENT_CAPACITY, Calibration
from .law import LEVEL
from .model import (
    ANNOTATIONS,
    MIN_LABELLED_UNITS,
    MIN_RESOLVED,
    MIN_RESOLVED_SKELETON,
    Masks,
    Prediction,
    _as_calibration,
    _law_at,
    predict,
    unresolved,
)

__all__ = ["FLIPS", "HOW_MANY_SLACK", "RADII", "RATIOS", "SPACINGS", "VALIDATED", "Plan", "table"]

#: the label types the ``planner`` simulation checks against trained networks (simulations/README.md)
VALIDATED = ("on real nuclei sample 0.5 to 0.05, flip 0.3 0.3 to 0.45 0.45, dilate 1 and 2, erode 1, also from "
             "calibrations trained on 12 of the 32 tiles (not every point within 0.05 there); on ER-like tubules "
             "1-3 and 1-2 px wide sample 0.5 to 0.05, flip 0.3 0.3 and 0.45 0.45, dilate 1, erode 1 (outside the "
             "0.05 target on 1-2 px tubules) and, on 1-3 px, skeleton")
RATIOS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
FLIPS = (0.1, 0.2, 0.3, 0.4)
RADII = (1, 2, 3)
#: the slice spacings k of a volume plan's "every k-th slice" rows (each with the unlabelled slices as background
#: and ignored)
SPACINGS = (2, 5, 10, 20, 50)
#: "how many slices": the largest spacing whose predicted Dice is within this of the clean Dice (Plan.text)
HOW_MANY_SLACK = 0.05


@dataclasses.dataclass
class Plan:
    """A whole annotation plan for some masks (:func:`table`).

    Attributes:
        rows: one :class:`Prediction` per label type, clean first.
        calibration: the :class:`Calibration` used.
        masks: ``{"count", "pixels", "foreground_fraction", "foreground_pixels", "resolved"}``
            (:attr:`Masks.resolved`).
        memorisation: when one fixed draw gets memorised: ``{"n_fg", "capacity",
            "index", "below", "capacity_no_augment", "index_no_augment",
            "below_no_augment", "remedy"}`` (theory/README.md, step 13: index
            min(1, k / n_fg) for a training set of n_fg foreground pixels;
            "below": the n_fg under which the index exceeds 1/2, i.e. 2k).
        not_predicted: the label types of the plan the model cannot answer for on these masks (structures too
            thin: :func:`~metastructure.planner.unresolved`), with the reason; empty for most masks.
    """

    rows: list[Prediction]
    calibration: Calibration
    masks: dict
    memorisation: dict
    not_predicted: list[tuple[LabelNoise, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"calibration": self.calibration.to_dict(), "masks": self.masks, "memorisation": self.memorisation,
                "rows": [{"label": r.label.name, "kind": r.label.kind,
                          "params": [v if isinstance(v, str) else float(v) for v in r.label.params],
                          "family": r.family, "dice": r.dice, "threshold": r.threshold, "inverted": r.inverted,
                          "model": r.model, "interval": None if r.interval is None else list(r.interval),
                          "n_images": r.n_images} for r in self.rows],
                "not_predicted": [{"label": lab.name, "reason": why} for lab, why in self.not_predicted]}

    def text(self) -> str:
        """The plan as a readable table."""
        c, mk, mem = self.calibration, self.masks, self.memorisation
        lines = [f"{mk['count']} mask(s), {mk['pixels']} pixels, foreground {100 * mk['foreground_fraction']:.1f}%",
                 f"calibration ({c.source}): clean Dice {c.clean_dice:.3f}, n_eff {c.n_eff:.3g} labels per decision"
                 + (f", fitted on '{c.label}' (Dice {c.sparse_dice:.3f})" if c.sparse_dice is not None else "")
                 + (f", {c.n_train} training images" if c.n_train else "")]
        n = next((r.n_images for r in self.rows if r.n_images is not None), None)
        if c.law is not None and n is not None:
            law = c.law
            lines.append(f"predicted for {n} training images ({law.passes(n):.3g} passes of the recipe's "
                         f"{c.recipe['steps']} steps; {n / c.n_train:.3g} x the {c.n_train} the calibration trained "
                         "on; simulations/README.md checks more images than a calibration saw); scale law rate "
                         f"{law.rate:.3g}, ratio "
                         f"{law.ratio:.3g}, one network within {law.residual_sd:.3f} Dice of it (rms, {law.dof} "
                         f"dof); intervals at {100 * LEVEL:.0f}%")
        lines += ["", f"{'labels':<18}{'family':<8}{'Dice':>6}  {'interval':<14}{'threshold':<22}model", "-" * 94]
        for r in self.rows:
            thr = "none" if r.threshold is None else f"{r.threshold:.3g}" + (" (inverted: below)" if r.inverted
                                                                               else "")
            iv = "" if r.interval is None else f"{r.interval[0]:.3f}-{r.interval[1]:.3f}"
            lines.append(f"{r.label.name:<18}{r.family:<8}{r.dice:>6.3f}  {iv:<14}{thr:<22}{r.model}")
        sl = [r for r in self.rows if isinstance(r.label, noise.Slices)]
        if sl:
            clean = next(r.dice for r in self.rows if isinstance(r.label, noise.Clean))
            lines.append("")
            if mk.get("ndim") == 3 and "on volumes" not in c.source:
                lines.append(f"note: these are volumes, and the calibration ({c.source}) was not measured on "
                             "volumes: its clean Dice and n_eff are a 2-D network's; calibrate on your volumes "
                             "(--images with --volumes) for numbers about a 3-D network")
            for sem in noise.UNLABELLED:
                ok = [r.label.spacing for r in sl if r.label.unlabelled == sem and r.dice >= clean - HOW_MANY_SLACK]
                lines.append(f"every k-th slice, unlabelled slices as {sem}: within {HOW_MANY_SLACK:g} of the clean "
                             "Dice up to " + (f"k = {max(ok)}" if ok else "no k of the plan"))
        few = [(lab, why) for lab, why in self.not_predicted
               if isinstance(lab, ANNOTATIONS) and "(p / q of the single" in why]
        thin = [lab for lab, why in self.not_predicted if (lab, why) not in few]
        if thin:
            lines += ["", "not predicted: " + ", ".join(lab.name for lab in thin),
                      f"  (structures too thin for the model: Masks.resolved {mk['resolved']:.2f}, below "
                      f"{MIN_RESOLVED:g} for sampled and flipped labels, {MIN_RESOLVED_SKELETON:g} for skeletons; "
                      "planner.unresolved says why for each)"]
        if few:
            lines += ["", "not predicted: " + ", ".join(lab.name for lab, _ in few),
                      f"  (fewer than {MIN_LABELLED_UNITS} labelled units with foreground expected in the training "
                      "set: too few for the model, and the networks failed there)"]
        lines += ["", f"memorisation of one fixed sparse draw (index k / n_fg; these masks: n_fg = {mem['n_fg']}):"]
        if mem["capacity"] is not None:
            lines.append(f"  this recipe (augment={c.recipe.get('augment')}): k = {mem['capacity']:.3g}, index "
                         f"{mem['index']:.3f}; memorised (index > 1/2) below n_fg = {mem['below']:.3g}")
        lines.append(f"  without augmentation (k fitted by simulations.memorisation, 400 steps): "
                     f"k = {mem['capacity_no_augment']:.4g}, index "
                     f"{mem['index_no_augment']:.3f}; memorised below n_fg = {mem['below_no_augment']:.4g}")
        lines.append(f"  remedy: {mem['remedy']}")
        lines.append("\nchecked against trained networks (simulations/README.md): " + VALIDATED
                     + "; the other rows are the same model, unchecked")
        if sl:
            lines.append("volumes: the annotation simulation checks slices, blocks and scattered voxels against "
                         "3-D networks on NUC-like and ER-like volumes and a real nuclei volume, trained on depth "
                         "windows (train.fit(crop=(d, None, None)); on whole thin stacks they learn which depths "
                         "were labelled) (simulations/README.md, annotation: where the model holds and where it "
                         "misses)")
        return "\n".join(lines)

    def plot(self, path: Any) -> None:
        """Write the plan's figure (predicted Dice against sampling ratio, flip rate and outline error, with the
        calibration's measured points) to ``path`` (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        c = self.calibration
        by: dict[type, list] = {}
        for r in self.rows:
            by.setdefault(type(r.label), []).append(r)
        clean = next(r.dice for r in self.rows if r.family == "CL" and isinstance(r.label, noise.Clean))
        sl = [r for r in self.rows if isinstance(r.label, noise.Slices)]
        fig, ax = plt.subplots(1, 3 + bool(sl), figsize=(14 + 4.6 * bool(sl), 4.2), constrained_layout=True)
        s = by.get(noise.Sample, [])
        ax[0].plot([1.0] + [float(r.label.params[0]) for r in s], [clean] + [r.dice for r in s], "o-",
                   label="predicted, at t* = p/2")
        sparse = LabelNoise.parse(c.label)
        if c.sparse_dice is not None and isinstance(sparse, noise.Sample):
            ax[0].plot([1.0, float(sparse.ratio)], [c.clean_dice, c.sparse_dice], "k*", ms=12,
                       label=f"calibration points ({c.source}; measured on held-out images)")
        ax[0].set(xscale="log", xlabel="sampling ratio p (fraction of foreground pixels labelled)",
                  ylabel="predicted pooled Dice", title="sparse labels (RCL)")
        fl = [r for r in by.get(noise.Flip, []) if abs(float(r.label.params[0]) - float(r.label.params[1])) < 1e-12]
        ax[1].plot([0.0] + [float(r.label.params[0]) for r in fl], [clean] + [r.dice for r in fl], "o-",
                   label="predicted, at t* = 1/2")
        ax[1].set(xlabel="flip rate f = b (labels wrong in both classes)", title="flipped labels (RCL)")
        pcl = sorted([(-float(r.label.params[0]), r.dice) for r in by.get(noise.Erode, [])]
                     + [(0.0, clean)] + [(float(r.label.params[0]), r.dice) for r in by.get(noise.Dilate, [])])
        ax[2].plot([p[0] for p in pcl], [p[1] for p in pcl], "o-", label="predicted, at 1/2 (Theorem 1)")
        ax[2].set(xlabel="outline error (px): erode < 0 < dilate", title="outlines too wide / too narrow (PCL)")
        def bars(a, xs: list[float], rs: list[Prediction]) -> None:
            pts = [(x, r) for x, r in zip(xs, rs, strict=True) if r.interval is not None]
            if pts:
                lo = [r.dice - r.interval[0] for _, r in pts]
                hi = [r.interval[1] - r.dice for _, r in pts]
                a.errorbar([x for x, _ in pts], [r.dice for _, r in pts], yerr=[lo, hi], fmt="none", ecolor="C0",
                           alpha=0.5, capsize=3, label=f"one network, {100 * LEVEL:.0f}% interval")

        bars(ax[0], [float(r.label.params[0]) for r in s], s)
        bars(ax[1], [float(r.label.params[0]) for r in fl], fl)
        pcl_rows = sorted(by.get(noise.Erode, []) + by.get(noise.Dilate, []),
                          key=lambda r: float(r.label.params[0]) * (1 if isinstance(r.label, noise.Dilate) else -1))
        bars(ax[2], [float(r.label.params[0]) * (1 if isinstance(r.label, noise.Dilate) else -1) for r in pcl_rows],
             pcl_rows)
        if sl:
            for sem, col in (("background", "C0"), ("ignore", "C1")):
                rs = sorted([r for r in sl if r.label.unlabelled == sem], key=lambda r: r.label.spacing)
                ax[3].plot([1] + [r.label.spacing for r in rs], [clean] + [r.dice for r in rs], "o-", color=col,
                           label=f"predicted, unlabelled = {sem} (at {'1/(2k)' if sem == 'background' else '1/2'})")
                bars(ax[3], [r.label.spacing for r in rs], rs)
            ax[3].set(xscale="log", xlabel="slice spacing k (every k-th slice labelled)", title="how many slices?")
        withheld = {type(lab) for lab, _ in self.not_predicted}
        for a, kinds in ((ax[0], (noise.Sample,)), (ax[1], (noise.Flip,))):
            if withheld & set(kinds) and not any(isinstance(r.label, kinds) for r in self.rows):
                a.text(0.5, 0.5, f"not predicted:\nstructures too thin for the model\n(Masks.resolved "
                       f"{self.masks['resolved']:.2f})", transform=a.transAxes, ha="center", va="center",
                       fontsize=10, color="C3")
        chance = next((r.dice for r in self.rows if r.family == "RL"), None)
        for a in ax:
            if chance is not None:
                a.axhline(chance, color="0.5", ls=":", lw=1, label="chance (random labels)")
            a.axhline(clean, color="C2", ls="--", lw=1, label="clean labels")
            a.set_ylim(0, 1.02)
            a.legend(fontsize=8, loc="lower left")
        n = next((r.n_images for r in self.rows if r.n_images is not None), None)
        fig.suptitle(f"annotation plan: {self.masks['count']} mask(s), foreground "
                     f"{100 * self.masks['foreground_fraction']:.1f}%; calibration {c.source} (clean Dice "
                     f"{c.clean_dice:.3f}, n_eff {c.n_eff:.3g})"
                     + (f"; predicted for {n} training images" if n is not None else ""), fontsize=10)
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _row_labels(name: str, values: Any, what: str, make: Callable[[Any], LabelNoise]) -> list[LabelNoise]:
    """The label types ``make`` builds from each of ``values`` (the argument ``name`` of :func:`table`), in order;
    a value the label type refuses raises its error, naming ``name``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers (each a {what}), got {values!r}")
    out: list[LabelNoise] = []
    for v in values:
        try:
            out.append(make(v))
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: {v!r} is not a {what}: {e}") from None
    return out


def table(masks: Any, *, calibration: Calibration | None = None, n_images: int | None = None,
          ratios: Sequence[float] = RATIOS, flips: Sequence[float] = FLIPS, radii: Sequence[float] = RADII,
          skeleton: bool = True, spacings: Sequence[int] | None = None) -> Plan:
    """The whole plan for masks like ``masks``: :func:`predict` for clean labels, every sampling ratio,
    symmetric flip rate (f = b), dilation and erosion radius, skeletons and random labels, and when one
    fixed draw gets memorised, for ``n_images`` training images (default: the calibration's own number;
    :func:`predict` says how, and gives each row its interval).

    On volumes (``Masks(..., ndim=3)``) it adds the answer to "how many slices": for each spacing k of
    ``spacings`` (default :data:`SPACINGS`; none on images unless given) the rows ``"slices k"``
    (the unlabelled slices stored as background) and ``"slices k ignore"``
    (:class:`~metastructure.noise.Slices`, predicted at the slices' lattice q, theory/README.md step 15).

    Each row is the label type itself, built from the value as given
    (``LabelNoise("sample", p)``, ``("flip", f, f)``, ``("dilate", r)``,
    ``("erode", r)``), so its name is that type's name: a radius of 1.5 is
    the row "dilate 1.5", as :class:`~metastructure.noise.Dilate` accepts it.

    Label types the model cannot answer for on these masks (sampled, flipped
    and skeleton labels of structures too thin for it,
    :func:`~metastructure.planner.unresolved`) are left out of the rows and
    listed in :attr:`Plan.not_predicted` with the reason.

    The memorisation block treats ``masks`` as the training set (n_fg = its
    foreground pixels): index = min(1, k / n_fg) with k the calibration's
    ``capacity`` (this recipe) and :data:`NO_AUGMENT_CAPACITY` (no augmentation).

    Raises:
        ValueError: bad masks (:class:`Masks`), a ratio or flip rate outside [0, 1], a negative or non-finite
            radius, a spacing below 1 (each naming ``ratios``, ``flips``, ``radii`` or ``spacings``), an
            ``n_images`` :func:`predict` refuses.
        TypeError: ``ratios``, ``flips``, ``radii`` or ``spacings`` not a sequence of numbers,
            ``calibration`` not a :class:`Calibration`.
    """
    m = masks if isinstance(masks, Masks) else Masks(masks)
    cal = _as_calibration(calibration)
    _law_at(cal, n_images)  # a bad n_images is refused even where no row gets predicted
    labels = ([LabelNoise("clean")]
              + _row_labels("ratios", ratios, "sampling ratio in [0, 1]", lambda p: LabelNoise("sample", p))
              + _row_labels("flips", flips, "flip rate in [0, 1]", lambda f: LabelNoise("flip", f, f))
              + _row_labels("radii", radii, "radius >= 0", lambda r: LabelNoise("dilate", r))
              + _row_labels("radii", radii, "radius >= 0", lambda r: LabelNoise("erode", r))
              + ([LabelNoise("skeleton")] if skeleton else []) + [LabelNoise("random", 0.5)])
    if spacings is None:
        spacings = SPACINGS if m.ndim == 3 else ()
    for sem in noise.UNLABELLED:
        labels += _row_labels("spacings", spacings, "slice spacing (an int >= 1)",
                              lambda k, sem=sem: noise.Slices(k, unlabelled=sem, ndim=m.ndim))
    rows, not_predicted = [], []
    for lab in labels:
        why = unresolved(m, lab)
        if why:
            not_predicted.append((lab, why))
            continue
        try:
            rows.append(predict(m, lab, calibration=cal, n_images=n_images))
        except ValueError as e:  # an annotation with too few labelled units (MIN_LABELLED_UNITS)
            if not isinstance(lab, ANNOTATIONS):
                raise
            not_predicted.append((lab, str(e)))
    k = cal.capacity
    mem = {"n_fg": m.n_fg, "capacity": k,
           "index": None if k is None else float(curves.memorised_fraction(m.n_fg, k)),
           "below": None if k is None else 2 * k,
           "capacity_no_augment": NO_AUGMENT_CAPACITY,
           "index_no_augment": float(curves.memorised_fraction(m.n_fg, NO_AUGMENT_CAPACITY)),
           "below_no_augment": 2 * NO_AUGMENT_CAPACITY,
           "remedy": "dihedral augmentation (train.fit(augment=True), in the recipe) or fresh draws "
                     "(train.fit(noise=...)) keep a sparse draw from being memorised"}
    info = {"count": len(m), "pixels": m.n_pixels, "foreground_fraction": m.foreground_fraction,
            "foreground_pixels": m.n_fg, "resolved": m.resolved, "ndim": m.ndim}
    return Plan(rows, cal, info, mem, not_predicted)

