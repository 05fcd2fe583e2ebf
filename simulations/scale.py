"""Where "the same boundary" holds: the gap to clean labels over noise, training-set size and training length.

U-Nets on NUC-like and ER-like images trained on one fixed draw (flipping
f = b, sampling p), on clean labels, and on fresh draws (a new draw at every
step: the control in which nothing fixed can be memorised), on N training
images, each run evaluated every few passes through its training set (a
pass: N / batch steps; a longer run's first steps are those of a shorter run,
since the batches are drawn with the step's own key and the learning rate is
constant). At each evaluation: test Dice at t*, at the threshold chosen on
validation images and at the best (oracle) threshold, and on the training
images the memorisation index and the training loss against the labels'
entropy (``metastructure.metrics.label_fit``).

The law (theory/README.md, step 14; ``theory.curves.scale_n_eff``): the
finite-sampling prediction ``clean * theory.curves.pooled_dice`` with n_eff
from the number of images and of passes, two numbers fitted per dataset on
the smaller sizes and used to predict the largest (held out), inside the
domain the law decides for itself: networks trained at least the profile's
``min_steps`` steps (sparse labels are learnt slowly) and a predicted loss of
at most :data:`MAX_GAP`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from metastructure import noise, planner
from theory import curves

from . import _cells
from ._common import base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import DATA, g, listing, mean, num, para, pct, table

PROFILES = {
    "quick": base("quick", datasets=["nuclei"], sizes=[16, 64], flips=[0.45], ratios=[0.1],
                  fresh=[["flip", 0.45, 0.45]], passes={"16": 8, "64": 4}, eval_passes=[2, 4, 8],
                  long={"size": 64, "passes": 8, "datasets": ["nuclei"],
                        "labels": ["clean", "flip 0.45 0.45"]}, fit_sizes=[16], min_steps=8,
                  report_passes=4,
                  n_val=4, n_test=8),
    "full": base("full", datasets=["nuclei", "er"], sizes=[64, 256, 1024], flips=[0.3, 0.4, 0.45, 0.47, 0.49],
                 ratios=[0.1, 0.01], fresh=[["flip", 0.49, 0.49], ["sample", 0.1]],
                 passes={"64": 96, "256": 24, "1024": 6}, eval_passes=[3, 6, 12, 24, 48, 96],
                 # no longer runs on 1024 images: 24 passes there for three settings (23.8 of 142 core-minutes)
                 # put the profile over its 120; long training is measured on 64 (96 passes) and 256 (24)
                 long={"size": 1024, "passes": 6, "datasets": [], "labels": []},
                 fit_sizes=[64, 256], min_steps=192,
                 report_passes=6, n_val=16, n_test=32),
}
REQUIRES = ()

MAX_GAP = 0.1  # the law's domain: points it predicts to lose at most this, trained at least min_steps steps
GOAL = 0.03  # the held-out rms error the law aims at
MAX_REFITS = 10  # refits of the law's self-decided domain before giving up on a fixed point
SAME_M = 1.5  # memorisation indices within this factor across N count as "the same"
MEM_PASSES = 12  # compare memorisation indices where they stand above their noise
SHOW_FLIP = 0.45  # the flip rate the figure follows over training (with the first sampling ratio)
TOLERANCE = 0.02  # "the same boundary": within 0.02 Dice of clean labels at the same N and passes
GRID_RATE = np.geomspace(0.01, 100, 9)  # starts of the fit (labels per image-pass; ratio: n_eff times m)
GRID_RATIO = np.geomspace(0.1, 100, 7)
PAPER = {"images": 1232, "pixels": 256 * 256, "passes": 100}  # arXiv 2103.11594 as the authors' code prepares ER


def settings(config: dict) -> list[tuple[str, tuple[float, ...], str]]:
    """Every label setting ``(kind, params, regime)``: clean, the fixed flips and samples, the fresh controls."""
    out: list[tuple[str, tuple[float, ...], str]] = [("clean", (), "fixed")]
    out += [("flip", (float(f), float(f)), "fixed") for f in config["flips"]]
    out += [("sample", (float(p),), "fixed") for p in config["ratios"]]
    out += [(k, tuple(float(v) for v in params), "fresh") for k, *params in config["fresh"]]
    return out


def setting_name(kind: str, params: tuple[float, ...], regime: str) -> str:
    """``"flip 0.45 0.45"`` for a fixed draw, ``"flip 0.49 0.49 fresh"`` for fresh draws (the label type's name)."""
    name = _cells.label_noise({"kind": kind, "params": list(params)}).name
    return name if regime == "fixed" else f"{name} fresh"


def passes_of(config: dict, dataset_name: str, n: int, name: str) -> int:
    """Passes through the training set that the run of setting ``name`` on ``n`` images of ``dataset_name``
    trains for (the profile's ``passes``, or its ``long`` runs)."""
    long = config["long"]
    if n == long["size"] and name in long["labels"] and dataset_name in long["datasets"]:
        return int(long["passes"])
    return int(config["passes"][str(n)])


def steps_per_pass(config: dict, n: int) -> int:
    """Training steps in one pass through ``n`` images (batches of the profile's size)."""
    b = config["opt"]["batch"]
    if n % b:
        raise ValueError(f"training-set sizes must be multiples of the batch ({b}), got {n}")
    return n // b


def _spec(config: dict, name: str, n: int, setting: tuple, seed: int) -> dict:
    kind, params, regime = setting
    d = dataset(name, config["profile"], n_train=n, n_val=config["n_val"], n_test=config["n_test"])
    per = steps_per_pass(config, n)
    total = passes_of(config, name, n, setting_name(*setting))
    opt = {**config["opt"], "steps": per * total}
    at = [per * p for p in config["eval_passes"] if p <= total]
    return spec({**config, "every": per * config["eval_passes"][0]}, d, kind, *params, regime=regime, seed=seed,
                opt=opt, track=True, at=at)


def cells(config: dict) -> list[dict]:
    return [_spec(config, name, n, st, s) for name in config["datasets"] for n in config["sizes"]
            for st in settings(config) for s in range(config["seeds"])]


def _series(config: dict, store, name: str, n: int, setting: tuple) -> dict[str, Any]:
    """One setting's scores over training, mean +- sd over seeds at each evaluation."""
    res = [store.result(_spec(config, name, n, setting, s)) for s in range(config["seeds"])]
    per = steps_per_pass(config, n)
    steps = [h["step"] for h in res[0]["history"]]
    out: dict[str, Any] = {"passes": [s / per for s in steps]}
    for key in ("dice_tstar", "dice_val", "dice_best", "memorisation", "train_loss"):
        out[key] = [stats([r["history"][i].get(key) for r in res]) for i in range(len(steps))]
    out["label_entropy"] = stats([r["history"][-1].get("label_entropy") for r in res])
    out["seconds"] = float(sum(r["train_seconds"] for r in res))
    return out


def _rates(setting: str) -> tuple[float, float]:
    """(f, b) of a setting's label type: T[1, 0] and T[0, 1] of its transition matrix."""
    t = noise.LabelNoise.parse(setting.removesuffix(" fresh")).transition()
    return float(t[1, 0]), float(t[0, 1])


def _points(config: dict, sizes: dict) -> list[dict]:
    """Every noisy (N, setting, passes) point with its clean control at the same N and passes."""
    pts = []
    for n, by in sizes.items():
        clean = by["clean"]
        for setting, ser in by.items():
            if setting == "clean":
                continue
            f, b = _rates(setting)
            for i, p in enumerate(ser["passes"]):
                j = clean["passes"].index(p) if p in clean["passes"] else None
                if j is None or mean(ser["dice_tstar"][i]) is None or mean(clean["dice_tstar"][j]) is None:
                    continue
                pts.append({"n": int(n), "setting": setting, "fresh": setting.endswith("fresh"),
                            "family": "sample" if setting.startswith("sample") else "flip", "f": f, "b": b,
                            "passes": p, "measured": ser["dice_tstar"][i], "clean": clean["dice_tstar"][j],
                            "memorisation_own": ser["memorisation"][i]})
    return pts


def memorisation_curve(points: list[dict], sizes: list[int]) -> dict[str, dict[float, float]]:
    """m(P) per fixed setting: the memorisation index at P passes, averaged over the training-set sizes
    ``sizes`` (the law's m depends on the passes, not on N; the held-out sizes are predicted with it)."""
    acc: dict[str, dict[float, list[float]]] = {}
    for p in points:
        if p["fresh"] or p["n"] not in sizes or mean(p["memorisation_own"]) is None:
            continue
        acc.setdefault(p["setting"], {}).setdefault(p["passes"], []).append(mean(p["memorisation_own"]))
    return {s: {P: float(np.mean(v)) for P, v in sorted(by.items())} for s, by in acc.items()}


def _m_at(curve: dict[str, dict[float, float]], setting: str, passes: float) -> float:
    """m(P) of ``setting`` at the nearest measured number of passes (in log P)."""
    if setting.endswith("fresh"):
        return 0.0
    by = curve[setting]
    near = min(by, key=lambda q: abs(np.log(q / passes)))
    return by[near]


def law_dice(masks: planner.Masks, pts: list[dict], curve: dict, rate: float, ratio: float, *,
             averaging: str = "seen") -> np.ndarray:
    """The law's Dice at each point: clean * pooled_dice(n_eff(N, P, m(P)), f, b) (``curves.scale_n_eff``; with
    ``averaging="distinct"`` the averaging term counts distinct images, 1/(rate N), the planner's form)."""
    out = []
    for p in pts:
        n_eff = float(curves.scale_n_eff(p["n"], p["passes"] if averaging == "seen" else 1.0,
                                         _m_at(curve, p["setting"], p["passes"]), rate=rate, ratio=ratio))
        out.append(mean(p["clean"]) * float(masks.pooled_dice(min(n_eff, planner.N_EFF_MAX), p["f"], p["b"])[0]))
    return np.asarray(out)


def fit_law(masks: planner.Masks, pts: list[dict], curve: dict, *, averaging: str = "seen") -> dict[str, Any]:
    """``rate`` and ``ratio`` by least squares (Nelder-Mead in their logs from a grid's best start) on the
    points of ``pts`` in the law's domain: those where it predicts a loss of at most :data:`MAX_GAP`
    (decided by the law itself: refitted on the points the last fit keeps in its domain, a set that only
    shrinks, until every fitted point lies in the fit's own domain, ``converged``; after :data:`MAX_REFITS`
    refits the last fit is kept, and ``n_fit`` counts its points).

    Raises:
        ValueError: no point to fit, or a fit whose own domain is empty."""
    if not pts:
        raise ValueError("the law has no point to fit: no fixed-draw evaluation of the fit sizes reaches the "
                         "profile's min_steps")
    y = np.asarray([mean(p["measured"]) for p in pts])
    clean = np.asarray([mean(p["clean"]) for p in pts])
    # the distinct-images form's rate is per image, not per image-pass: its starts reach the passes' factor higher
    rates = GRID_RATE if averaging == "seen" else np.geomspace(GRID_RATE[0], GRID_RATE[-1] * 100, len(GRID_RATE))
    grid = [(a, c) for a in np.log(rates) for c in np.log(GRID_RATIO)]
    inside = np.ones(len(pts), bool)
    converged = False
    for _ in range(MAX_REFITS):
        sel = [p for p, k in zip(pts, inside, strict=True) if k]

        def loss(v, sel=sel, ys=y[inside]):
            return float(np.sqrt(np.mean((law_dice(masks, sel, curve, *np.exp(v), averaging=averaging) - ys) ** 2)))

        best = optimize.minimize(loss, min(grid, key=loss), method="Nelder-Mead",
                                 options={"xatol": 1e-3, "fatol": 1e-6})
        fitted = inside
        now = fitted & (clean - law_dice(masks, pts, curve, *np.exp(best.x), averaging=averaging)
                        <= MAX_GAP)  # shrinks only
        if not now.any():
            raise ValueError(f"the law's domain is empty: fitted on {int(fitted.sum())} points, it predicts a loss "
                             f"above {MAX_GAP} at every one")
        if np.array_equal(now, fitted):  # every fitted point lies in the fit's own domain
            converged = True
            break
        inside = now
    rate, ratio = np.exp(best.x)
    return {"rate": float(rate), "ratio": float(ratio), "rmse": float(best.fun), "n_fit": int(fitted.sum()),
            "converged": converged}


def summarise(config: dict, store) -> dict:
    """Per dataset: every setting's series, the law fitted on ``fit_sizes`` and its predictions elsewhere."""
    out: dict[str, Any] = {"datasets": {}, "min_steps": config["min_steps"], "max_gap": MAX_GAP,
                           "tolerance": TOLERANCE, "report_passes": config["report_passes"]}
    for name in config["datasets"]:
        sizes = {str(n): {setting_name(*st): _series(config, store, name, n, st) for st in settings(config)}
                 for n in config["sizes"]}
        test = _cells.load_data(_spec(config, name, config["sizes"][0], settings(config)[0], 0)["data"])["test"]
        masks = planner.Masks(np.asarray(test.masks))
        pts = _points(config, sizes)
        curve = memorisation_curve(pts, config["fit_sizes"])
        for p in pts:
            p["steps"] = p["passes"] * steps_per_pass(config, p["n"])
        law = fit_law(masks, [p for p in pts if p["n"] in config["fit_sizes"] and not p["fresh"]
                              and p["steps"] >= config["min_steps"]], curve)
        pred = law_dice(masks, pts, curve, law["rate"], law["ratio"])
        for p, v in zip(pts, pred, strict=True):
            p["predicted"] = float(v)
            p["in_domain"] = bool(p["steps"] >= config["min_steps"] and mean(p["clean"]) - v <= MAX_GAP)
            p["role"] = ("fresh" if p["fresh"] else "fit" if p["n"] in config["fit_sizes"] else "held out")
            p["memorisation_law"] = _m_at(curve, p["setting"], p["passes"])
        held = [p for p in pts if p["role"] == "held out" and p["in_domain"]]
        law["rmse_held_out"] = _rmse(held)
        ratios = [mean(p["memorisation_own"]) / p["memorisation_law"] for p in pts if p["role"] == "held out"
                  and p["passes"] >= MEM_PASSES and mean(p["memorisation_own"]) is not None
                  and mean(p["memorisation_own"]) > 0
                  and p["memorisation_law"] > 0]
        law["memorisation_held_out_ratio"] = float(np.exp(np.mean(np.log(ratios)))) if ratios else None
        law["rmse_fresh"] = _rmse([p for p in pts if p["role"] == "fresh" and p["in_domain"]])
        law["rmse_outside"] = _rmse([p for p in pts if not p["fresh"] and not p["in_domain"]])
        law["rmse_by_family"] = {fam: _rmse([p for p in held if p["family"] == fam]) for fam in ("flip", "sample")}
        # the planner's form (averaging over distinct images) fitted on the same points, scored on the same held-out
        # points: which count of averaging these networks follow
        fitted = [p for p in pts if p["n"] in config["fit_sizes"] and not p["fresh"]
                  and p["steps"] >= config["min_steps"]]
        alt = fit_law(masks, fitted, curve, averaging="distinct")
        alt_pred = law_dice(masks, held, curve, alt["rate"], alt["ratio"], averaging="distinct")
        alt["rmse_held_out"] = (float(np.sqrt(np.mean([(mean(p["measured"]) - v) ** 2 for p, v in
                                                       zip(held, alt_pred, strict=True)]))) if held else None)
        law["distinct"] = alt
        out["datasets"][name] = {"sizes": sizes, "points": pts, "law": law, "memorisation_curve":
                                 {s: [[P, m] for P, m in by.items()] for s, by in curve.items()},
                                 "foreground_fraction": masks.foreground_fraction,
                                 "critical": _critical(config, masks, pts, curve, law),
                                 "paper_scale": _paper_scale(config, masks, curve, law)}
    return out


def _rmse(pts: list[dict]) -> float | None:
    if not pts:
        return None
    return float(np.sqrt(np.mean([(p["predicted"] - mean(p["measured"])) ** 2 for p in pts])))


def _lambda_c(masks: planner.Masks, clean: float) -> float:
    """lambda at which flipping loses TOLERANCE of a network's ``clean`` Dice on these masks: the n_eff that
    ``planner.solve_n_eff`` finds for any rate (here f = b = 1/4; the loss depends on f and n_eff only through
    lambda, ``derivations.pooling_and_scale``), as lambda = (1-2f)^2 n_eff / (f(1-f))."""
    f = 0.25
    n_eff, _ = planner.solve_n_eff(masks, f"flip {f} {f}", clean_dice=clean, measured=clean - TOLERANCE)
    return (1 - 2 * f) ** 2 * n_eff / (f * (1 - f))


def _critical(config: dict, masks: planner.Masks, pts: list[dict], curve: dict, law: dict) -> dict:
    """The critical flip rate (largest f = b within TOLERANCE of clean) against N at the report's passes:
    measured (bracketed by the largest tested rate within the tolerance and the next rate beyond it) and
    predicted (``curves.critical_flip_rate``, with m the mean index of the fixed flips at those passes and
    the clean Dice of the largest size at those passes)."""
    rp = config["report_passes"]
    flips = [s for s in curve if s.startswith("flip")]
    if not flips:
        raise ValueError("the critical flip rate needs fixed flipped settings")
    m = max(float(np.mean([_m_at(curve, s, rp) for s in flips])), 0.0)
    rows = []
    for n in config["sizes"]:
        at = [p for p in pts if p["n"] == n and p["passes"] == rp and p["family"] == "flip" and not p["fresh"]]
        clean = mean(at[0]["clean"]) if at else None
        ok = [p["f"] for p in at if mean(p["clean"]) - mean(p["measured"]) <= TOLERANCE]
        beyond = [p["f"] for p in at if mean(p["clean"]) - mean(p["measured"]) > TOLERANCE]
        top = max(ok) if ok else None
        lam = _lambda_c(masks, clean) if clean else None
        n_eff = float(curves.scale_n_eff(n, rp, m, rate=law["rate"], ratio=law["ratio"]))
        rows.append({"n": n, "measured": top,
                     "first_beyond": min((f for f in beyond if top is None or f > top), default=None),
                     "monotone": top is None or all(f > top for f in beyond),
                     "in_domain": bool(steps_per_pass(config, n) * rp >= config["min_steps"]),
                     "tested": sorted(p["f"] for p in at),
                     "predicted": None if lam is None else float(curves.critical_flip_rate(n_eff, lam)),
                     "lambda_c": lam, "n_eff": n_eff})
    grid = np.geomspace(min(config["sizes"]) / 4, 1e6, 60)
    big = [p for p in pts if p["n"] == max(config["sizes"]) and p["passes"] == rp]
    if not big:
        raise ValueError(f"the largest training-set size has no evaluation at {rp} passes")
    lam = _lambda_c(masks, mean(big[0]["clean"]))
    ne = curves.scale_n_eff(grid, rp, m, rate=law["rate"], ratio=law["ratio"])
    return {"passes": rp, "rows": rows, "curve_n": grid.tolist(),
            "curve": curves.critical_flip_rate(ne, lam).tolist(),
            "ceiling": float(curves.critical_flip_rate(law["ratio"] / max(m, 1e-12), lam)), "memorisation": m}


def _paper_scale(config: dict, masks: planner.Masks, curve: dict, law: dict) -> dict:
    """What the law predicts for this recipe at the paper's scale (arXiv 2103.11594: 154 crops of 256^2 in 8
    dihedral copies, each with its own draw, 1,232 images, 100 epochs), as labelled pixels counted in
    images of this experiment's size, with m at the longest measured training."""
    out = {"images": PAPER["images"], "pixels": PAPER["pixels"], "passes": PAPER["passes"], "rows": []}
    for setting in sorted(curve):
        if not setting.startswith(("flip", "sample")):
            continue
        f, b = _rates(setting)
        for passes in (config["report_passes"], PAPER["passes"]):
            m = max(_m_at(curve, setting, passes), 0.0)
            n = PAPER["images"] * PAPER["pixels"] / masks.masks[0].size
            n_eff = float(curves.scale_n_eff(n, passes, m, rate=law["rate"], ratio=law["ratio"]))
            share = float(masks.pooled_dice(min(n_eff, planner.N_EFF_MAX), f, b)[0])
            out["rows"].append({"setting": setting, "passes": passes, "memorisation": m, "n_eff": n_eff,
                                "share": share})
    return out


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    names = list(res["datasets"])
    fig, axes = plt.subplots(len(names), 5, figsize=(26, 4.8 * len(names)), constrained_layout=True, squeeze=False)
    for ax, name in zip(axes, names, strict=True):
        d = res["datasets"][name]
        pts, law = d["points"], d["law"]
        sizes = [int(n) for n in d["sizes"]]
        fixed = [s for s in d["sizes"][str(sizes[0])] if s != "clean" and not s.endswith("fresh")]
        # (a) the map: loss to clean at the report's passes, measured and predicted, by setting and N
        xs = np.arange(len(fixed))
        for i, n in enumerate(sizes):
            at = {p["setting"]: p for p in pts if p["n"] == n and p["passes"] == res.get("report_passes", 6)}
            sel = [s for s in fixed if s in at]
            x = [fixed.index(s) + (i - 1) * 0.12 for s in sel]
            gap = [mean(at[s]["clean"]) - mean(at[s]["measured"]) for s in sel]
            ax[0].errorbar(x, gap, yerr=[at[s]["measured"]["std"] for s in sel], fmt="o", color=f"C{i}", capsize=2,
                           label=f"N = {n} measured")
            ax[0].plot(x, [mean(at[s]["clean"]) - at[s]["predicted"] for s in sel], "_", color=f"C{i}", ms=14,
                       mew=2, label=f"N = {n} law")
        ax[0].axhline(res["tolerance"], color="gray", ls=":", lw=1)
        ax[0].set(xticks=xs, yscale="symlog", ylabel="clean Dice - Dice at t*",
                  title=f"(a) {DATA[name]}: loss at {res.get('report_passes', 6)} passes (dotted: "
                        f"{g(res['tolerance'])})")
        ax[0].set_yscale("symlog", linthresh=0.01)
        ticks = [s.replace("flip ", "f=").split()[0] if s.startswith("flip") else s.replace("sample ", "p=")
                 for s in fixed]
        ax[0].set_xticks(xs, ticks, fontsize=8)
        ax[0].legend(fontsize=7, ncol=2)
        # (b) Dice over passes for two fixed settings and a fresh control, measured (points) and law (lines)
        flips = [s for s in fixed if s.startswith("flip")]
        show = [min(flips, key=lambda s: abs(_rates(s)[0] - SHOW_FLIP))] if flips else []
        show += [s for s in fixed if s.startswith("sample")][:1]
        for i, n in enumerate(sizes):
            for j, s in enumerate(dict.fromkeys(show)):
                ps = sorted((p for p in pts if p["n"] == n and p["setting"] == s), key=lambda p: p["passes"])
                errorbar(ax[1], [p["passes"] for p in ps], [p["measured"] for p in ps], color=f"C{i}",
                         marker="os"[j], ms=4, ls="none", label=f"N = {n}, {s}")
                ax[1].plot([p["passes"] for p in ps], [p["predicted"] for p in ps], color=f"C{i}",
                           ls=["-", "--"][j], lw=1)
        ax[1].set(xscale="log", ylim=(0, 1), xlabel="passes through the training set", ylabel="Dice at t*",
                  title="(b) measured (points) and the law (lines) over training")
        ax[1].legend(fontsize=7)
        # (c) memorisation index against passes, every size: the law reads it at the passes alone
        for i, n in enumerate(sizes):
            for j, s in enumerate(dict.fromkeys(show)):
                ser = d["sizes"][str(n)][s]
                pos = [(p, m) for p, m in zip(ser["passes"], ser["memorisation"], strict=True)
                       if m["mean"] is not None and m["mean"] > 0]  # a log axis: indices at noise level left out
                if pos:
                    errorbar(ax[2], [p for p, _ in pos], [m for _, m in pos], band=True, color=f"C{i}",
                             marker="os"[j], ms=4, ls=["-", "--"][j], label=f"N = {n}, {s}")
        ax[2].set(xscale="log", yscale="log", xlabel="passes", ylabel="memorisation index m (band: sd)",
                  title="(c) memorisation index over training, by N")
        ax[2].legend(fontsize=7)
        # (d) predicted against measured
        for role, mk, col in (("fit", "o", "0.6"), ("held out", "o", "C3"), ("fresh", "s", "C2")):
            for inside in (True, False):
                ps = [p for p in pts if p["role"] == role and p["in_domain"] == inside]
                if ps:
                    ax[3].scatter([p["predicted"] for p in ps], [mean(p["measured"]) for p in ps], s=18, marker=mk,
                                  facecolors=col if inside else "none", edgecolors=col,
                                  label=f"{role}{'' if inside else ', outside the domain'}")
        ax[3].plot([0, 1], [0, 1], color="k", lw=0.8)
        ax[3].set(xlim=(0, 1), ylim=(0, 1), xlabel="the law's Dice", ylabel="measured Dice",
                  title=f"(d) rate {law['rate']:.3g}, ratio {law['ratio']:.3g}; held-out rms "
                        f"{num(law['rmse_held_out'])}")
        ax[3].legend(fontsize=7)
        # (e) the critical flip rate against N
        c = d["critical"]
        ax[4].plot(c["curve_n"], c["curve"], color="k", lw=1.2, label=f"law at {c['passes']} passes")
        ax[4].axhline(c["ceiling"], color="gray", ls=":", lw=1, label="ceiling ratio / m (memorisation)")
        for k, r in enumerate(c["rows"]):  # the measured rate lies between the last rate within and the first beyond
            lo = r["measured"] if r["measured"] is not None else 0.25
            hi = r["first_beyond"] if r["first_beyond"] is not None else 0.5
            ax[4].plot([r["n"], r["n"]], [lo, hi], color="C3", lw=4, alpha=0.6,
                       label="measured: between the tested rates" if k == 0 else None)
        ax[4].set(xscale="log", ylim=(0.25, 0.5), xlabel="training images N", ylabel="critical flip rate f = b",
                  title=f"(e) within {g(res['tolerance'])} of clean up to f_c(N)")
        ax[4].legend(fontsize=7)
    save_figure(fig, path, f"scale: U-Net {cfg['net']}, one fixed draw (fresh: a new draw each step), "
                           f"{cfg['seeds']} seed(s), mean +- sd", fontsize=11)


# ------------------------------------------------------------------ the results document
TITLE = "where the same boundary holds: noise, data and training length"


def _gap(p: dict) -> float:
    return mean(p["clean"]) - mean(p["measured"])


def _index_ratio(d: dict, settings_: list[str], n_a: int, n_b: int, min_passes: float) -> float | None:
    """Geometric mean over fixed settings and shared passes >= ``min_passes`` of m(n_a) / m(n_b)."""
    out = []
    for s in settings_:
        a, b = d["sizes"][str(n_a)][s], d["sizes"][str(n_b)][s]
        for i, p in enumerate(a["passes"]):
            if p < min_passes or p not in b["passes"]:
                continue
            ma, mb = mean(a["memorisation"][i]), mean(b["memorisation"][b["passes"].index(p)])
            if ma is not None and mb is not None and ma > 0 and mb > 0:
                out.append(np.log(ma / mb))
    return float(np.exp(np.mean(out))) if out else None


def _bracket(row: dict) -> str:
    """Where the measured critical rate lies on the tested grid, in words."""
    lo, hi = row["measured"], row["first_beyond"]
    if not row.get("monotone", True):
        return (f"at least {g(lo)}, with a lower tested rate beyond the tolerance (the losses do not rise in "
                "order of the rate)")
    if lo is None:
        return f"below {g(hi)}, the lowest rate tested" if hi is not None else "not measured"
    return f"between {g(lo)} and {g(hi)}" if hi is not None else f"at least {g(lo)}, the highest rate tested"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    tol, rp = res["tolerance"], res["report_passes"]
    blocks = [para(
        f"U-Net {'-'.join(map(str, cfg['net']))} on {listing([DATA[n] for n in res['datasets']])} images, "
        f"{listing([str(n) for n in cfg['sizes']])} training images, trained "
        + listing([f"{cfg['passes'][str(n)]} passes on {n}" for n in cfg["sizes"]])
        + (f" ({cfg['long']['passes']} on {cfg['long']['size']} for {listing(cfg['long']['labels'])} on "
           f"{listing([DATA[n] for n in cfg['long']['datasets']])})" if cfg["long"]["labels"]
           and cfg["long"]["datasets"] else "") + ", "
        f"{cfg['seeds']} seed{'s' if cfg['seeds'] > 1 else ''} per cell, one fixed draw (fresh: a new draw each "
        "step), evaluated at "
        f"{listing([g(p) for p in cfg['eval_passes']])} passes. \"Within\" means the mean Dice at t* lies within "
        f"{g(tol)} of the clean labels' at the same N and passes.")]
    for name, d in res["datasets"].items():
        pts, law = d["points"], d["law"]
        sizes = [int(n) for n in d["sizes"]]
        at = {(p["n"], p["setting"]): p for p in pts if p["passes"] == rp}
        settings_ = [s for s in d["sizes"][str(sizes[0])] if s != "clean"]
        rows = []
        for s in settings_:
            row = [s]
            for n in sizes:
                p = at.get((n, s))
                if p is None:
                    row.append("")
                    continue
                mark = "yes" if _gap(p) <= tol else "no"
                row.append(f"{num(_gap(p))} +- {num(p['measured']['std'])} / {num(mean(p['clean']) - p['predicted'])}"
                           f" ({mark}{'' if p['in_domain'] else ', outside'})")
            rows.append(row)
        blocks.append(para(f"{DATA[name]}, loss to clean at {g(rp)} passes, measured (mean +- sd over seeds) / the "
                           f"law's, and whether the measured loss is within {g(tol)} (\"outside\": outside the law's "
                           "domain, below):"))
        blocks.append(table(["labels"] + [f"N = {n}" for n in sizes], rows))
        diffs = {k: [mean(ser[k][i]) - mean(ser["dice_tstar"][i]) for n in sizes
                     for s, ser in d["sizes"][str(n)].items() if s != "clean"
                     for i, p in enumerate(ser["passes"]) if p == rp
                     and mean(ser[k][i]) is not None and mean(ser["dice_tstar"][i]) is not None]
                 for k in ("dice_val", "dice_best")}
        if diffs["dice_val"]:
            blocks.append(para(
                f"Other thresholds at {g(rp)} passes, against t* on the same networks: the threshold chosen on "
                f"the validation images (with their clean masks) changes the Dice by "
                f"{num(float(np.mean(diffs['dice_val'])))} on average (from {num(min(diffs['dice_val']))} to "
                f"{num(max(diffs['dice_val']))}), the oracle by {num(float(np.mean(diffs['dice_best'])))} (up to "
                f"{num(max(diffs['dice_best']))}): "
                + ("t* loses little to a threshold tuned on clean validation masks."
                   if np.mean(diffs["dice_val"]) <= tol else
                   "a threshold tuned on clean validation masks recovers part of the loss at t*.")))
        # memorisation: m at the same passes across N; the long runs
        fixed = [s for s in settings_ if not s.endswith("fresh")]
        fit_sizes = [n for n in sizes if n in cfg["fit_sizes"]]
        r_fit = _index_ratio(d, fixed, fit_sizes[-1], fit_sizes[0], MEM_PASSES)
        r_held = law["memorisation_held_out_ratio"]
        flat = [r for r in (r_fit, r_held) if r is not None]
        alike = bool(flat) and all(1 / SAME_M <= r <= SAME_M for r in flat)

        def same(r: float | None) -> str:
            if r is None:
                return "not measured"
            return f"{num(r, 2)} ({'about the same' if 1 / SAME_M <= r <= SAME_M else 'not the same'})"

        small = sizes[0]
        probe = min((s for s in fixed if s.startswith("flip")), key=lambda s: abs(_rates(s)[0] - SHOW_FLIP),
                    default=fixed[0])
        ser = d["sizes"][str(small)][probe]
        curve = [mean(v) for v in ser["dice_tstar"]]
        top = int(np.argmax(curve))
        loss_end, ent = mean(ser["train_loss"][-1]), mean(ser["label_entropy"])
        blocks.append(para(
            f"Memorisation: at the same number of passes (at least {g(MEM_PASSES)}), the memorisation index"
            + (f" on {fit_sizes[-1]} images is {same(r_fit)} times that on {fit_sizes[0]} (geometric mean over "
               "the fixed draws)" if len(fit_sizes) > 1 else "")
            + ("" if r_held is None else f"{',' if len(fit_sizes) > 1 else ''} on the held-out images "
               f"{same(r_held)} times the fit sizes'")
            + f" (within a factor {g(SAME_M)} counts as about the same): "
            + ("set by the passes, not by the number of images, as the law reads it. " if alike else
               "it falls with the number of images, which the law, reading it at the passes alone, does not "
               "follow. ")
            + f"With {probe} on {small} images the Dice at t* peaks at {g(ser['passes'][top])} passes "
            f"({num(curve[top])}) and ends at {num(curve[-1])} after {g(ser['passes'][-1])} passes, where the "
            f"training loss ({num(loss_end)} nats) is "
            + (f"below the labels' entropy given the clean class ({num(ent)}): the draw is memorised."
               if loss_end < ent else f"still above the labels' entropy given the clean class ({num(ent)}).")
            + " Fresh draws, with nothing to memorise: "
            + listing([f"{s} reaches {num(mean(d['sizes'][str(small)][s]['dice_tstar'][-1]))}"
                       for s in settings_ if s.endswith("fresh")]) + f" there (clean "
            f"{num(mean(d['sizes'][str(small)]['clean']['dice_tstar'][-1]))})."))
        by_fam = law["rmse_by_family"]
        held = [p for p in pts if p["role"] == "held out"]
        inside = [p for p in held if p["in_domain"]]
        outside = [p for p in pts if not p["fresh"] and not p["in_domain"]]
        far = [p for p in outside if p["steps"] >= res["min_steps"]]  # out for the predicted loss, not the steps
        above = sum(mean(p["measured"]) > p["predicted"] for p in far)
        goal = ("" if law["rmse_held_out"] is None else
                "meets " if law["rmse_held_out"] <= GOAL else "misses ") + f"the goal of {g(GOAL)}"
        if law["rmse_held_out"] is None:
            goal = "no held-out point in its domain"
        blocks.append(para(
            f"The law (theory/README.md, step 14): 1/n_eff = 1/(rate N P) + m(P)/ratio, fitted on "
            f"{listing([str(n) for n in cfg['fit_sizes']])} images: rate {law['rate']:.3g} labels per image-pass, "
            f"ratio {law['ratio']:.3g}, rms error {num(law['rmse'])} on the {law['n_fit']} fitted points of its "
            f"domain (at least {res['min_steps']} steps, a predicted loss of at most {g(res['max_gap'])}). On the "
            f"held-out {listing(sorted({str(p['n']) for p in held}))} images it predicts {len(inside)} points in "
            f"its domain with rms error {num(law['rmse_held_out'])} ({goal}; sampling "
            f"{num(by_fam['sample'])}, flipping {num(by_fam['flip'])}), and fresh draws (m = 0) with rms error "
            f"{num(law['rmse_fresh'])}. Outside its domain ({len(outside)} points, rms {num(law['rmse_outside'])}; "
            f"{len(outside) - len(far)} of them for too few steps) it misses; of the {len(far)} outside for a "
            f"predicted loss above {g(res['max_gap'])}, the measured Dice lies above the law's at {above}"
            + (": there the law is pessimistic (one reading: it gives every pixel the same n_eff, while a network "
               "may pool far more labels for pixels deep inside objects and background than at the boundary)."
               if far and above >= 2 * len(far) / 3 else
               ": there the law is optimistic (the networks lose more than it predicts)."
               if far and above <= len(far) / 3 else ": it misses in both directions." if far else ".")
            + (f" The planner's form, averaging over distinct images (1/(rate N) + m(P)/ratio), fitted on the same "
               f"sizes (in its own domain: {law['distinct']['n_fit']} points): rms {num(law['distinct']['rmse'])} on "
               f"its fit, {num(law['distinct']['rmse_held_out'])} on the same held-out points: these networks, 3 "
               "to 96 passes without augmentation, follow the images "
               "seen " + ("better." if (law["distinct"]["rmse_held_out"] or 0) > (law["rmse_held_out"] or 0)
                          else "no better than the distinct images.") if law.get("distinct") else "")))
        c = d["critical"]
        blocks.append(para(
            f"Critical flip rate at {g(c['passes'])} passes (the largest f = b within {g(tol)} of clean): "
            + "; ".join(f"N = {r['n']}: law {num(r['predicted'])}"
                        + ("" if r["in_domain"] else " (outside its domain: too few steps)")
                        + ", measured " + _bracket(r) for r in c["rows"])
            + f". The law raises it with N only up to {num(c['ceiling'])}, where memorisation at "
            f"{g(c['passes'])} passes (mean m of the fixed flips {c['memorisation']:.2g}) caps n_eff at ratio / m "
            "(a prediction: no run here reaches that ceiling)."))
        ps = d["paper_scale"]
        rows_p = {(r["setting"], r["passes"]): r for r in ps["rows"]}
        worst = max((s for s, _ in rows_p if s.startswith("flip")), key=lambda s: _rates(s)[0])
        early, late = rows_p[(worst, rp)], rows_p[(worst, ps["passes"])]
        mem_share = late["memorisation"] / law["ratio"] * late["n_eff"]  # the share of 1/n_eff that memorisation is
        r = law["memorisation_held_out_ratio"]
        blocks.append(para(
            f"Prediction at the paper's scale (its ER data as the authors' code prepares it: {ps['images']:,} "
            f"images of {int(ps['pixels'] ** 0.5)}^2, {ps['passes']} passes; here as that many labelled pixels "
            f"on this data set's law, m read at the longest measured training): with {worst} the law gives n_eff "
            f"{late['n_eff']:,.0f} and {pct(late['share'])} of the clean Dice after {ps['passes']} passes, "
            f"{early['n_eff']:,.0f} and {pct(early['share'])} after {g(rp)}; after {ps['passes']} passes "
            f"memorisation makes {pct(mem_share)} of 1/n_eff"
            + (", so memorisation, not data, limits a fixed draw trained that long." if mem_share > 0.5 else ".")
            + " A prediction, not a measurement: it reads m(P) off the fit sizes"
            + ("." if r is None else
               f", and on the held-out images the measured index is {num(r, 2)} times that (geometric mean, at "
               f"least {g(MEM_PASSES)} passes)"
               + (", so at larger N it likely overstates memorisation and the Dice after "
                  f"{ps['passes']} passes is likely higher than this." if r < 1 / SAME_M else "."))))
    return blocks
