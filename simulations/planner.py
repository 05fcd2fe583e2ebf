"""The annotation planner checked on real nuclei: predicted against measured Dice for cheaper labels.

``metastructure.planner`` predicts, from the masks and a short calibration,
the Dice a network trained on cheaper labels reaches and the threshold to use.
Here: calibrate on the training tiles of the packaged real nuclei image
(``planner.calibrate``: clean labels and one fixed 10% draw, trained on three
quarters of the tiles and scored on the rest); then train networks with the
calibration's ``fit_kwargs`` on all training tiles, one fixed draw per seed,
for sampling 0.5 / 0.1 / 0.05, flipping f = b = 0.3, dilation by 1 and 2 and
erosion by 1 (the validation set), and for 1% sampling (beyond it: few
labelled pixels per object); score them on the test tiles at the planner's
thresholds and compare with ``planner.predict`` on the test masks. For
structured errors the plain product ``clean_dice * Dice(T(M), M)`` is
reported beside the planner's prediction.

The calibration is the planner's default: run at the full profile (as the
profile defines it, no overrides) into the published ``figures/``, the
runner calls :func:`publish`, which
writes it to the package's ``metastructure/planner/calibration.json``
(``planner.write_constants``), where ``planner.DEFAULT`` is read from at
import. Quick runs, and runs with other settings or into other folders, write
nothing there.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from metastructure import data, noise, planner
from metastructure.noise import LabelNoise

from . import _cells
from ._common import base, dataset, errorbar, protocol_dice, pyplot, save_figure, spec, stats
from ._text import listing, num, para, pct, pm

VERSION = 1  # bump when compute's results change: the runner versions every planner cell with it
TOLERANCE = 0.05  # the issue's target: every validation point within this much Dice
VALIDATION = [("clean",), ("sample", 0.5), ("sample", 0.1), ("sample", 0.05), ("flip", 0.3, 0.3),
              ("dilate", 1), ("dilate", 2), ("erode", 1)]
BEYOND = [("sample", 0.01)]
def _base(profile: str, **over) -> dict:
    cfg = base(profile, **over)
    del cfg["opt"]  # the recipe says how every network here trains
    return cfg


PROFILES = {
    "quick": _base("quick", recipe={"widths": [4, 8], "steps": 80, "batch_size": 8, "learning_rate": 0.005,
                                   "augment": True},
                  types=[VALIDATION[0], VALIDATION[2], VALIDATION[4], VALIDATION[5]], beyond=[]),
    "full": _base("full", recipe={k: list(v) if isinstance(v, tuple) else v for k, v in planner.DEFAULT_RECIPE.items()},
                 types=VALIDATION, beyond=BEYOND),
}
REQUIRES = ()


def unavailable() -> str | None:
    """Why the experiment cannot run here (None when it can)."""
    if data.real_available():
        return None
    return "needs the packaged image: pip install tifffile && pip install --no-deps stardist==0.9.2"


def _data(config: dict) -> dict:
    return dataset("real_nuclei", config["profile"])


def _opt(config: dict) -> dict:
    r = config["recipe"]
    return {"steps": r["steps"], "batch": r["batch_size"], "lr": r["learning_rate"], "augment": r["augment"]}


def _train(config: dict, t: tuple, seed: int) -> dict:
    cfg = {**config, "net": list(config["recipe"]["widths"])}
    return spec(cfg, _data(config), *t, regime="fixed", seed=seed, opt=_opt(config))


def _calibration_spec(config: dict) -> dict:
    return {"kind": "planner", "label": "real_nuclei calibration", "data": _data(config),
            "recipe": config["recipe"], "seed": 0}


def cells(config: dict) -> list[dict]:
    if unavailable():
        raise RuntimeError(f"planner {unavailable()}")
    return [_calibration_spec(config)] + [_train(config, t, s) for t in config["types"] + config["beyond"]
                                          for s in range(config["seeds"])]


def compute(spec: dict) -> dict:
    """The calibration cell: ``planner.calibrate`` on the training tiles (key = the spec's seed)."""
    tr = _cells.load_data(spec["data"])["train"]
    cal = planner.calibrate(jax.random.key(spec["seed"]), tr.images, tr.masks, recipe=spec["recipe"], progress=False)
    return cal.to_dict()


def publish(results: dict, *, path: str | Path | None = None) -> dict:
    """Write the calibration of a full run's ``results`` as the planner's default (``planner.DEFAULT``):
    ``planner.write_constants`` to ``path`` (default: the package's calibration.json), its source naming the
    data. Returns the record written."""
    cal = planner.Calibration.from_dict({**results["calibration"],
                                         "source": f"default (real nuclei, {results['tile_size']} px tiles)"})
    return planner.write_constants(default=cal, path=path)


def _name(t: tuple) -> str:
    return " ".join([t[0], *(f"{v:g}" for v in t[1:])])


def summarise(config: dict, store) -> dict:
    cal = planner.Calibration.from_dict(store.result(_calibration_spec(config)))
    d = _cells.load_data(_data(config))
    masks = planner.Masks(d["test"].masks)
    rows = {}
    for t in config["types"] + config["beyond"]:
        lab = LabelNoise(*t)
        pred = planner.predict(masks, lab, calibration=cal)
        res = [store.result(_train(config, t, s)) for s in range(config["seeds"])]
        proto = "t_star"  # each cell is scored at its label type's t* (1/2 for clean, dilated, eroded masks)
        for r in res:  # the cell scored at the planner's threshold: t* = p/2, (1 + b - f)/2, or 1/2
            used = r["final"][proto]["threshold"]
            if abs(used - pred.threshold) > 1e-6:
                raise AssertionError(f"{_name(t)}: the cell thresholds at {used}, the planner says {pred.threshold}")
        measured = stats([protocol_dice(r["final"], proto) for r in res])
        row = {"label": list(t), "family": pred.family, "threshold": pred.threshold, "inverted": pred.inverted,
               "predicted": pred.dice, "model": pred.model, "measured": measured,
               "oracle": stats([r["final"]["oracle"]["dice"] for r in res]),
               "diff": measured["mean"] - pred.dice, "validation": t in [tuple(v) for v in config["types"]]}
        row["within"] = abs(row["diff"]) <= TOLERANCE
        row["calibration_type"] = lab.family == "CL" or lab.name == cal.label  # calibrated on (other tiles)
        if pred.family == "PCL":
            row["product"] = cal.clean_dice * masks.label_dice(lab)
        rows[_name(t)] = row
    grid = np.geomspace(0.005, 1.0, 60)
    val = [r for r in rows.values() if r["validation"]]
    other = [r for r in val if not r["calibration_type"]]
    return {
        "calibration": cal.to_dict(),
        "tiles": {k: len(v) for k, v in d.items()}, "tile_size": int(d["train"].images.shape[1]),
        "foreground_fraction_test": masks.foreground_fraction, "tolerance": TOLERANCE, "rows": rows,
        "all_within": all(r["within"] for r in val), "max_abs_diff": max(abs(r["diff"]) for r in val),
        # the points the calibration did not train on, and what a planner that predicts the clean Dice for every
        # label type would get right (how much the model adds)
        "rmse_other": float(np.sqrt(np.mean([r["diff"] ** 2 for r in other]))) if other else None,
        "constant_within": sum(abs(r["measured"]["mean"] - cal.clean_dice) <= TOLERANCE for r in other),
        "n_other": len(other),
        "curve_ratio": grid.tolist(),
        "curve": (cal.clean_dice * masks.pooled_dice(cal.n_eff, 1 - grid, 0.0)).tolist(),
    }


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    rows, cal, tol = res["rows"], res["calibration"], res["tolerance"]
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    ax[0].plot(res["curve_ratio"], res["curve"], "-", color="C0", lw=2, alpha=0.5,
               label=f"predicted at t* = p/2 (n_eff = {cal['n_eff']:.0f}, clean Dice {cal['clean_dice']:.3f})")
    smp = sorted((lab.ratio, r) for r in rows.values() if isinstance(lab := LabelNoise(*r["label"]), noise.Sample))
    errorbar(ax[0], [p for p, _ in smp], [r["measured"] for _, r in smp], color="C0", marker="o", ls="none",
             label=f"measured on test tiles, mean +- sd of {cfg['seeds']} seed(s)")
    if cal.get("sparse_dice") is not None:
        ax[0].plot([float(LabelNoise.parse(cal["label"]).ratio)], [cal["sparse_dice"]], "k*", ms=12,
                   label=f"calibration point ({cal['n_holdout']} held-out training tiles)")
    ax[0].set(xscale="log", xlabel="sampling ratio p (one fixed draw)", ylabel="pooled test Dice", ylim=(0, 1),
              title="(a) sparse labels: the planner's curve and the networks")
    ax[0].legend(fontsize=8, loc="lower right")
    lo = min(min(r["predicted"], r["measured"]["mean"]) for r in rows.values()) - 0.05
    xs = np.linspace(max(lo, 0), 1, 2)
    ax[1].fill_between(xs, xs - tol, xs + tol, color="0.9", label=f"within {tol:g}")
    ax[1].plot(xs, xs, color="0.5", lw=1)
    for i, (name, r) in enumerate(rows.items()):
        mk = {"CL": "s", "RCL": "o", "PCL": "^", "RL": "x"}[r["family"]]
        ax[1].errorbar(r["predicted"], r["measured"]["mean"], yerr=r["measured"]["std"] or 0, marker=mk,
                       color=f"C{i % 10}", capsize=2, ls="none", mfc="none" if not r["validation"] else None,
                       label=f"{name}{'' if r['validation'] else ' (beyond)'}: {r['diff']:+.3f}")
        if "product" in r:
            ax[1].plot(r["product"], r["measured"]["mean"], "|", color=f"C{i % 10}", ms=10)
    ax[1].set(xlabel="predicted Dice (planner)", ylabel="measured Dice at the planner's threshold",
              title="(b) every label type (|: the plain product clean x Dice(T(M), M))")
    ax[1].set_xlim(max(lo, 0), 1)
    ax[1].set_ylim(max(lo, 0), 1)
    ax[1].legend(fontsize=7, loc="upper left")
    tiles = res["tiles"]
    save_figure(fig, path, f"planner on real nuclei: {res['tile_size']} px tiles (train {tiles['train']}, test "
                f"{tiles['test']}), U-Net {list(cfg['recipe']['widths'])}, {cfg['recipe']['steps']} steps, "
                f"augment={cfg['recipe']['augment']}")


# ------------------------------------------------------------------ the results document
TITLE = "the annotation planner, predicted against measured"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    res, cfg = record["results"], record["config"]
    cal, rows, tol = res["calibration"], res["rows"], res["tolerance"]
    val = {n: r for n, r in rows.items() if r["validation"]}
    beyond = {n: r for n, r in rows.items() if not r["validation"]}
    tiles = res["tiles"]
    text = (f"`metastructure.planner` predicts the Dice of a network trained on cheaper labels from the masks and "
            f"two numbers of the training recipe, which `planner.calibrate` measures: here on the {tiles['train']} "
            f"training tiles of the real nuclei ({res['tile_size']} px; {cal['n_train']} trained on, "
            f"{cal['n_holdout']} scored), clean Dice {num(cal['clean_dice'])} and, from one fixed "
            f"`{cal['label']}` draw (Dice {num(cal['sparse_dice'])} at t*), n_eff = {cal['n_eff']:.0f} labels per "
            f"decision. Networks trained with the calibration's `fit_kwargs` (U-Net {list(cfg['recipe']['widths'])}, "
            f"{cfg['recipe']['steps']} steps, augmentation {'on' if cfg['recipe']['augment'] else 'off'}) on all "
            f"training tiles, {cfg['seeds']} seed(s) each with its own fixed draw, scored on the {tiles['test']} test "
            "tiles at the planner's threshold, against its prediction: "
            + "; ".join(f"`{n}` {pm(r['measured'])} against {num(r['predicted'])} ({r['diff']:+.3f})"
                        for n, r in val.items()) + ".")
    worst = max(val, key=lambda n: abs(val[n]["diff"]))
    cal_types = [n for n, r in val.items() if r.get("calibration_type")]
    misses = [n for n, r in val.items() if not r.get("calibration_type")
              and abs(r["measured"]["mean"] - cal["clean_dice"]) > tol]
    text += (f" {'Every' if res['all_within'] else 'Not every'} validation point lies within {tol:g} of its "
             f"prediction (the largest gap: `{worst}`, {val[worst]['diff']:+.3f}).")
    if res.get("rmse_other") is not None:
        text += (f" {listing([f'`{n}`' for n in cal_types])} are the calibration's own label types (other tiles, "
                 f"other networks); on the {res['n_other']} others the rms gap is {num(res['rmse_other'])}, while "
                 f"predicting the clean Dice for every label type would land within {tol:g} on "
                 f"{res['constant_within']} of them"
                 + (f" (it misses {listing([f'`{n}`' for n in misses])})" if misses else "")
                 + f": on this image a {tol:g} target separates little, so the gaps, not the target, say how well "
                 "the model does.")
    pcl = {n: r for n, r in val.items() if "product" in r}
    out = [para(text)]
    if pcl:
        prod = {n: r["measured"]["mean"] - r["product"] for n, r in pcl.items()}
        w = max(prod, key=lambda n: abs(prod[n]))
        t2 = ("For structured errors the prediction reads the perturbation's overlap error and the clean "
              "network's own as a boundary shift and a normal boundary jitter, an assumption of the model, and "
              "combines them as the mean of |shift + jitter| (`theory.curves.pcl_dice`; the integral is "
              "`derivations.pcl_overlap`'s claim `jittered_shift`): the errors overlap. The plain product "
              f"clean Dice x Dice(T(M), M), which adds them, is off by up to {prod[w]:+.3f} (`{w}`)"
              + (f", beyond the {tol:g} target" if abs(prod[w]) > tol else "") + ".")
        out.append(para(t2))
    for n, r in beyond.items():
        side = "pessimistic" if r["diff"] > 0 else "optimistic"
        ratio = float(LabelNoise(*r["label"]).params[0])
        out.append(para(
            f"Beyond the validated range, `{n}` (one fixed draw labels {pct(ratio)} of the foreground "
            f"pixels): measured {pm(r['measured'])} against {num(r['predicted'])}, the prediction {side} by "
            f"{num(abs(r['diff']), 2)}{'' if abs(r['diff']) <= tol else f', outside {tol:g}'}. With so few labelled "
            "pixels the normal approximation and a single n_eff fitted at another ratio no longer describe the "
            "network: the planner's number there is " + ("conservative" if r["diff"] > 0 else "too hopeful")
            + " on these images; measure before relying on it."))
    return out
