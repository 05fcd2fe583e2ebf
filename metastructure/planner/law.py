r"""The scale law inside the planner: a calibration's answer at another number of training images.

A network trained on one fixed draw pools about n_eff labels per decision, with
(theory/README.md, step 14; :func:`theory.curves.scale_n_eff`)

    1 / n_eff = 1 / (rate N) + m(P) / ratio          ("distinct", the planner's)
    1 / n_eff = 1 / (rate N P) + m(P) / ratio        ("seen", simulations.scale's)

N training images seen P times each, m the memorisation index of the draw on
its training images (:func:`metastructure.metrics.label_fit`), ``rate`` and
``ratio`` two numbers of the recipe and the images. The averaging term counts
the distinct labelled images for a network trained long on one fixed draw
(re-seeing a label adds no new noise to average: the planner's recipe, 75 and
more augmented passes), the images seen while a network is still learning
(the ``scale`` experiment, 3 to 96 passes); the ``planner`` simulation
measures both forms on its calibrations (simulations/README.md). The planner's
recipe trains a fixed number of steps, so P = steps x batch / N: more images
mean fewer passes, hence a smaller m. The label type enters only
through m (the k-group model's n_eff = 1/m holds for any class-conditional
draw, ``theory.derivations.pooling_and_scale``), and a flipped draw and a
sampled one are memorised differently, so m is measured per family:
log m = alpha + beta log P, from the calibration's networks at two
training-set sizes (:func:`metastructure.planner.calibrate`).

:class:`ScaleLaw` is the record (the fitted numbers, what they were fitted on,
how well they are determined); the prediction and its interval are computed by
:func:`metastructure.planner.predict`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from theory import curves

from .. import _checks

__all__ = ["LEVEL", "N_EFF_MAX", "N_EFF_MIN", "ScaleLaw"]

#: the confidence of the planner's prediction intervals
LEVEL = 0.9

#: n_eff lies in [N_EFF_MIN, N_EFF_MAX] (labels per decision): the range a
#: :class:`~metastructure.planner.Calibration` accepts, :func:`metastructure.planner.solve_n_eff` searches and
#: the law's predictions are clipped to.
N_EFF_MIN, N_EFF_MAX = 1.0, 1e6


def _matrix(name: str, value: Any) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if value is None:
        return None
    a = np.asarray(value, float)
    if a.shape != (2, 2) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a finite 2 x 2 matrix or None, got {value!r}")
    if not np.allclose(a, a.T, rtol=1e-6, atol=1e-12) or np.linalg.eigvalsh(0.5 * (a + a.T)).min() < -1e-9 * max(
            1.0, float(np.abs(a).max())):
        raise ValueError(f"{name} must be symmetric positive semi-definite (an information matrix), got {value!r}")
    return ((float(a[0, 0]), float(a[0, 1])), (float(a[1, 0]), float(a[1, 1])))


@dataclasses.dataclass(frozen=True)
class ScaleLaw:
    """The scale law of one training recipe on one set of images, as a calibration measured it.

    Attributes:
        rate, ratio: the law's two numbers (> 0): 1 / n_eff = 1 / (rate N) +
            m / ratio, or with ``averaging="seen"`` 1 / (rate N P) + m / ratio
            (:func:`theory.curves.scale_n_eff`, with P = 1 for "distinct").
        information: the Fisher information (J^T J / s^2, J the Jacobian of the
            calibration networks' predicted Dice) of (log rate, log ratio); it
            may be singular (a direction the networks did not determine), which
            widens the intervals to the bounds :data:`LOG_RATE` / :data:`LOG_RATIO`.
        memorisation: per label family (``"sample"``, ``"flip"``): ``{"alpha",
            "beta", "information", "sd", "dof"}``, log m = alpha + beta log P;
            information of (alpha, beta) from the regression, sd how far one
            network's log m lies from it, on dof residual degrees of freedom
            (None, 0: too few networks to tell).
        clean: ``((n_images, clean Dice), ...)`` of the clean networks, by n_images.
        images_seen: the images' worth of pixels the recipe trains on, steps x
            batch x (window / image pixels) (N P; steps x batch when it trains
            on whole images); a float.
        residual_sd: the rms difference, in Dice, between the calibration's sparse
            networks and the law (``dof`` degrees of freedom): how far one network
            lies from the law, its own training noise included.
        dof: sparse networks minus 2 (the law's numbers); 0 gives no interval.
        points: the calibration networks (label, n_images, key, Dice, memorisation, n_eff); those
            :func:`~metastructure.planner.calibrate` marks ``failed`` (True) were not fitted.
        averaging: "distinct" (the averaging term counts distinct training
            images) or "seen" (images seen, N P).
        scatter: ``((n_images, sd, networks), ...)``: one network's scatter
            about the law at each calibration size (the rms residual there,
            inflated by networks / dof); empty: ``residual_sd`` at every size.
        batch_size: the recipe's batch (None: not recorded). A training set
            smaller than its batch is drawn whole at every step
            (:func:`metastructure.train.fit`), so :meth:`passes` counts
            min(batch, N) samples a step.

    Raises:
        ValueError: a number out of its range, a malformed matrix or curve, no clean point.
        TypeError: a count that is not an int.
    """

    rate: float
    ratio: float
    information: Any
    memorisation: dict
    clean: Any
    images_seen: float
    residual_sd: float
    dof: int
    points: Any = ()
    averaging: str = "distinct"
    scatter: Any = ()
    batch_size: int | None = None

    #: (log) bounds of the law's numbers: the fit searches, and the intervals reach, no further
    LOG_RATE = (math.log(1e-4), math.log(1e4))
    LOG_RATIO = (math.log(1e-3), math.log(1e3))

    def __post_init__(self):
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for name, (lo, hi) in (("rate", self.LOG_RATE), ("ratio", self.LOG_RATIO)):
            v = _checks.check_real_number(name, getattr(self, name), minimum=0.0, strict=True)
            if not math.exp(lo) * (1 - 1e-9) <= v <= math.exp(hi) * (1 + 1e-9):
                raise ValueError(f"{name} must lie in [{math.exp(lo):g}, {math.exp(hi):g}], got {v!r}")
            put(name, v)
        put("information", _matrix("information", self.information))
        if self.information is None:
            raise ValueError("information must be a 2 x 2 matrix")
        if not isinstance(self.memorisation, Mapping) or not self.memorisation:
            raise ValueError(f"memorisation must map a label family to its curve, got {self.memorisation!r}")
        curves_ = {}
        for kind, c in self.memorisation.items():
            if kind not in ("sample", "flip") or not isinstance(c, Mapping) or {"alpha", "beta"} - set(c):
                raise ValueError(f"memorisation: {kind!r}: {c!r} is not a family's curve (needs 'alpha' and 'beta'; "
                                 "'information', 'sd', 'dof' optional; families 'sample' and 'flip')")
            sd = c.get("sd")
            curves_[kind] = {"alpha": _checks.check_real_number(f"{kind} alpha", c["alpha"]),
                             "beta": _checks.check_real_number(f"{kind} beta", c["beta"]),
                             "information": _matrix(f"{kind} information", c.get("information")),
                             "sd": None if sd is None else _checks.check_real_number(f"{kind} sd", sd, minimum=0.0),
                             "dof": _checks.check_int(f"{kind} dof", c.get("dof", 0), minimum=0)}
        put("memorisation", curves_)
        pts = sorted((_checks.check_int("clean n_images", n, minimum=1), _checks.check_real_number("clean dice", d))
                     for n, d in self.clean)
        if not pts or any(not 0 <= d <= 1 for _, d in pts):
            raise ValueError(f"clean must hold (n_images, Dice) pairs, Dice in [0, 1], got {self.clean!r}")
        put("clean", tuple(pts))
        put("images_seen", _checks.check_real_number("images_seen", self.images_seen, minimum=0.0, strict=True))
        if self.batch_size is not None:
            put("batch_size", _checks.check_int("batch_size", self.batch_size, minimum=1))
        put("residual_sd", _checks.check_real_number("residual_sd", self.residual_sd, minimum=0.0))
        put("dof", _checks.check_int("dof", self.dof, minimum=0))
        put("points", tuple(dict(p) for p in self.points))
        if self.averaging not in ("distinct", "seen"):
            raise ValueError(f"averaging must be 'distinct' or 'seen', got {self.averaging!r}")
        put("scatter", tuple(sorted((_checks.check_int("scatter n_images", n, minimum=1),
                                     _checks.check_real_number("scatter sd", v, minimum=0.0),
                                     _checks.check_int("scatter networks", k, minimum=1)) for n, v, k in self.scatter)))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The label families whose memorisation the calibration measured."""
        return tuple(self.memorisation)

    def passes(self, n_images: float) -> float:
        """P: how often the recipe shows each pixel of ``n_images`` training images, images_seen / n_images, or
        with a ``batch_size`` B above n_images (the whole set each step) images_seen / B."""
        return _passes(self.images_seen, self.batch_size, n_images)

    def memorisation_index(self, kind: str, n_images: float, *, curve: tuple[float, float] | None = None) -> float:
        """m of a ``kind`` draw ("sample" or "flip") on ``n_images`` training images: exp(alpha + beta log P)
        (``curve`` = (alpha, beta) in place of the fitted one)."""
        alpha, beta = curve if curve is not None else (self.memorisation[kind]["alpha"],
                                                         self.memorisation[kind]["beta"])
        return float(math.exp(alpha + beta * math.log(self.passes(n_images))))

    def n_eff(self, kind: str, n_images: float, *, log_law: tuple[float, float] | None = None,
              curve: tuple[float, float] | None = None) -> float:
        """n_eff of a ``kind`` draw on ``n_images`` training images: :func:`theory.curves.scale_n_eff` at
        N = ``n_images`` and P = 1 ("distinct") or :meth:`passes` ("seen"), m at :meth:`passes` (``log_law`` =
        (log rate, log ratio) in place of the fitted ones)."""
        rate, ratio = (self.rate, self.ratio) if log_law is None else (math.exp(log_law[0]), math.exp(log_law[1]))
        m = self.memorisation_index(kind, n_images, curve=curve)
        return float(curves.scale_n_eff(n_images, _averaged(self.averaging, self.passes(n_images)), m, rate=rate,
                                        ratio=ratio))

    def scatter_at(self, n_images: float) -> tuple[float, int]:
        """(sd, dof) of one network's scatter about the law for ``n_images`` training images: at the calibration
        size nearest in log (the largest for more images), on its networks minus one degrees of freedom (at least
        1); ``(residual_sd, dof)`` without per-size scatter."""
        if not self.scatter:
            return self.residual_sd, self.dof
        n, sd, k = min(self.scatter, key=lambda t: (abs(math.log(t[0] / float(n_images))), -t[0]))
        return sd, max(k - 1, 1)

    def clean_dice(self, n_images: float) -> float:
        """The clean network's Dice at ``n_images``: measured at the calibration's sizes, linear in log N between
        them, held at the nearest size outside (more images are not assumed to help a clean network)."""
        ns = np.log([n for n, _ in self.clean])
        ds = [d for _, d in self.clean]
        return float(np.interp(math.log(float(n_images)), ns, ds))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (:meth:`from_dict` reads it back)."""
        out = dataclasses.asdict(self)
        out["information"] = [list(r) for r in self.information]
        out["memorisation"] = {k: {**c, "information": None if c["information"] is None else
                                   [list(r) for r in c["information"]]} for k, c in self.memorisation.items()}
        out["clean"] = [list(p) for p in self.clean]
        out["scatter"] = [list(p) for p in self.scatter]
        out["points"] = [dict(p) for p in self.points]
        return out

    @classmethod
    def fit(cls, points: Sequence[Mapping[str, Any]], masks: Any, *, clean: Mapping[int, float],
            images_seen: float, averaging: str = "distinct", batch_size: int | None = None) -> ScaleLaw:
        """The law of a set of networks trained on fixed draws (what :func:`~metastructure.planner.calibrate` does
        with its networks).

        1. The memorisation curves: log m = alpha_kind + beta log P by least
           squares over the networks, one intercept per label family, one slope
           shared (indices at or below 1e-6 count as 1e-6); the information of
           each family's (alpha, beta) is the inverse of their 2 x 2 block of
           s^2 (X^T X)^-1, and s is one network's scatter about the curve (both
           None without a residual degree of freedom; with one number of
           passes beta = 0 and neither).
        2. (log rate, log ratio) by bounded least squares (scipy's
           ``least_squares``, from 9 starts, the best kept) of the networks'
           Dice against ``clean[n] * masks.pooled_dice(n_eff, f, b)``, n_eff
           from :func:`theory.curves.scale_n_eff` (the ``averaging`` form) at
           each network's own memorisation index (clipped to [N_EFF_MIN, N_EFF_MAX]);
           ``residual_sd`` = sqrt(SSR / dof), dof = networks - 2; information
           J^T J / max(residual_sd, 1e-4)^2; :attr:`scatter` per size.

        Args:
            points: one dict per network: ``label`` (a sampled or flipped label
                type's name), ``n_images``, ``dice`` (held-out, at t*),
                ``memorisation`` (its index on its training images); other keys
                are kept in :attr:`points`.
            masks: the held-out masks, a :class:`~metastructure.planner.Masks`
                (anything with its ``pooled_dice(n_eff, f, b)``).
            clean: n_images -> the clean network's Dice at that size, for
                every size of the points.
            images_seen: the images' worth of pixels the recipe trains on (:attr:`images_seen`).
            averaging: the law's form, "distinct" or "seen" (:attr:`averaging`).
            batch_size: the recipe's batch (:attr:`batch_size`; None: P = images_seen / n_images at every size).

        Raises:
            ValueError: fewer than 2 networks, a point without those keys, a
                label that is not sampled or flipped, a size without a clean
                Dice, an unknown ``averaging``.
        """
        from scipy.optimize import least_squares

        from ..noise import LabelNoise

        pts = [dict(p) for p in points]
        if len(pts) < 2:
            raise ValueError(f"a scale law needs at least 2 networks, got {len(pts)}")
        rates = {}
        for p in pts:
            if {"label", "n_images", "dice", "memorisation"} - set(p):
                raise ValueError(f"a point needs label, n_images, dice and memorisation, got {sorted(p)}")
            lab = LabelNoise.parse(p["label"])
            if lab.family != "RCL":
                raise ValueError(f"points are networks on sampled or flipped labels, got {p['label']!r}")
            t = lab.transition()
            rates[p["label"]] = (float(t[1, 0]), float(t[0, 1]))
            p["kind"] = lab.kind
            if p["n_images"] not in clean:
                raise ValueError(f"no clean Dice at {p['n_images']} images (clean has {sorted(clean)})")
            for k in ("dice", "memorisation"):
                if p[k] is None or not math.isfinite(float(p[k])):
                    raise ValueError(f"a point's {k} must be a finite number, got {p[k]!r} ({p['label']}, "
                                     f"{p['n_images']} images)")
        images_seen = _checks.check_real_number("images_seen", images_seen, minimum=0.0, strict=True)
        if batch_size is not None:
            batch_size = _checks.check_int("batch_size", batch_size, minimum=1)
        if averaging not in ("distinct", "seen"):
            raise ValueError(f"averaging must be 'distinct' or 'seen', got {averaging!r}")
        curves_ = _fit_memorisation([p["kind"] for p in pts], [_passes(images_seen, batch_size, p["n_images"])
                                                              for p in pts],
                                    [p["memorisation"] for p in pts])
        measured = np.array([p["dice"] for p in pts], float)
        lo_n, hi_n = N_EFF_MIN, N_EFF_MAX

        def predicted(theta: np.ndarray) -> np.ndarray:
            out = []
            for p in pts:
                passes = _passes(images_seen, batch_size, p["n_images"])
                n_eff = float(curves.scale_n_eff(p["n_images"], _averaged(averaging, passes),
                                                 max(float(p["memorisation"]), 0.0), rate=math.exp(theta[0]),
                                                 ratio=math.exp(theta[1])))
                out.append(clean[p["n_images"]] * float(masks.pooled_dice(min(max(n_eff, lo_n), hi_n),
                                                                           *rates[p["label"]])[0]))
            return np.array(out)

        lo, hi = (cls.LOG_RATE[0], cls.LOG_RATIO[0]), (cls.LOG_RATE[1], cls.LOG_RATIO[1])
        best = None
        for start in itertools.product(np.log([0.01, 1.0, 100.0]), np.log([0.1, 1.0, 10.0])):
            sol = least_squares(lambda t: predicted(t) - measured, np.array(start), bounds=(lo, hi), diff_step=1e-3)
            if best is None or sol.cost < best.cost:
                best = sol
        dof = max(len(pts) - 2, 0)
        sd = float(np.sqrt(np.sum(best.fun**2) / dof)) if dof else 0.0
        jac = np.asarray(best.jac)
        info = jac.T @ jac / max(sd, 1e-4) ** 2  # sd floored at 1e-4 Dice: a perfect fit is not infinite information
        # one network's scatter at each size: the rms residual of its networks, inflated by n / dof for the two
        # fitted numbers (smaller networks' sets scatter more than larger ones')
        sizes = np.array([p["n_images"] for p in pts])
        scatter = []
        if dof:
            for n in sorted(set(sizes.tolist())):
                r = best.fun[sizes == n]
                scatter.append((int(n), float(np.sqrt(np.mean(r**2) * len(pts) / dof)), int(r.size)))
        return cls(rate=float(np.exp(best.x[0])), ratio=float(np.exp(best.x[1])), information=info.tolist(),
                   memorisation=curves_, clean=[(int(n), float(d)) for n, d in clean.items()],
                   images_seen=images_seen, residual_sd=sd, dof=dof, points=pts, averaging=averaging,
                   scatter=scatter, batch_size=batch_size)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScaleLaw:
        """The law :meth:`to_dict` wrote, checked as the constructor checks it.

        Raises:
            TypeError: ``d`` is not a dict.
            ValueError: a missing or unknown key, or a value out of range.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"a scale law must be a dict (what ScaleLaw.to_dict wrote), got {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in d and f.default is dataclasses.MISSING]
        if unknown or missing:
            raise ValueError(f"not a scale law record: unknown keys {unknown}, missing {missing}")
        return cls(**d)


def _averaged(averaging: str, passes: float) -> float:
    """The P of the averaging term: 1 when it counts distinct images, the passes when it counts images seen."""
    return 1.0 if averaging == "distinct" else float(passes)


def _fit_memorisation(kinds: Sequence[str], passes: Sequence[float], index: Sequence[float]) -> dict[str, dict]:
    """log m = alpha_kind + beta log P by least squares over the calibration networks: one intercept per label
    family, one slope shared by all (memorisation grows with the passes alike for every family: the ``scale``
    experiment measures it so). Indices at or below 1e-6 (noise around no memorisation) count as 1e-6.

    Returns per family {"alpha", "beta", "information", "sd", "dof"}: the information of (alpha_kind, beta) is the
    inverse of their 2 x 2 block of s^2 (X^T X)^-1, s^2 the residual variance, and "sd" is s (how far one network's
    log m lies from the curve), with the regression's residual degrees of freedom (networks minus families minus
    1); both None without one. Without a slope to tell (a single number of passes, or each family at one size
    only) beta = 0 (m the same at every size), information and sd None.
    """
    names = list(dict.fromkeys(kinds))
    logp = np.log(np.asarray(passes, float))
    y = np.log(np.maximum(np.asarray(index, float), 1e-6))
    col = {k: np.array([float(k2 == k) for k2 in kinds]) for k in names}
    x = np.stack([col[k] for k in names] + [logp], axis=1)
    if np.ptp(logp) < 1e-12 or np.linalg.matrix_rank(x) < x.shape[1]:  # no slope to tell (one size per family)
        return {k: {"alpha": float(y[col[k] > 0].mean()), "beta": 0.0, "information": None, "sd": None, "dof": 0}
                for k in names}
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(y) - x.shape[1]
    cov, s2 = None, None
    if dof > 0:
        s2 = max(float(np.sum((y - x @ coef) ** 2)) / dof, 1e-12)
        cov = s2 * np.linalg.inv(x.T @ x)
    out = {}
    for i, k in enumerate(names):
        info = None
        if cov is not None:
            block = cov[np.ix_([i, len(names)], [i, len(names)])]
            info = np.linalg.inv(block).tolist()
        out[k] = {"alpha": float(coef[i]), "beta": float(coef[-1]), "information": info,
                  "sd": None if s2 is None else math.sqrt(s2), "dof": max(dof, 0)}
    return out


def _passes(images_seen: float, batch_size: int | None, n_images: float) -> float:
    """P for ``n_images`` training images (:meth:`ScaleLaw.passes`)."""
    n = float(n_images)
    return images_seen / (n if batch_size is None else max(n, float(batch_size)))
