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

The same validation runs on thin structures, where the model's 1-px clean
fraction field loses part of the masks: ER-like tubules 1-3 and 1-2 px wide
(``data.er``, 32 training and 16 test images of 64^2 each), calibrated on their own
training images, with sampling, flipping up to f = b = 0.45, dilation,
erosion and skeletons. The record's ``resolved`` is the planner's
``Masks.resolved``, the share of the masks that its 1-px partition keeps.
"""

from __future__ import annotations

import inspect
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
SKELETON_SLACK = 0.02  # how far a skeleton cell's t* (s/2 of its training masks) may lie from the test masks' s/2
VALIDATION = [("clean",), ("sample", 0.5), ("sample", 0.1), ("sample", 0.05), ("flip", 0.3, 0.3),
              ("dilate", 1), ("dilate", 2), ("erode", 1)]
BEYOND = [("sample", 0.01)]
# thin structures: ER-like tubules, where the 1-px clean partition loses the thinnest parts
THIN = [("clean",), ("sample", 0.5), ("sample", 0.1), ("sample", 0.05), ("flip", 0.3, 0.3), ("flip", 0.45, 0.45),
        ("dilate", 1), ("erode", 1), ("skeleton",)]


_ER_WIDTH = list(inspect.signature(data.er).parameters["width"].default)  # the tubules' width range by default


def _base(profile: str, **over) -> dict:
    cfg = base(profile, **over)
    del cfg["opt"]  # the recipe says how every network here trains
    return cfg


PROFILES = {
    "quick": _base("quick", recipe={"widths": [4, 8], "steps": 80, "batch_size": 8, "learning_rate": 0.005,
                                   "augment": True},
                  types=[VALIDATION[0], VALIDATION[2], VALIDATION[4], VALIDATION[5]], beyond=[],
                  thin=[{"data": "er", "n_train": 16, "types": [THIN[0], THIN[2], THIN[4]]}]),
    "full": _base("full", recipe={k: list(v) if isinstance(v, tuple) else v for k, v in planner.DEFAULT_RECIPE.items()},
                 types=VALIDATION, beyond=BEYOND,
                 thin=[{"data": "er", "n_train": 32, "types": THIN},
                       {"data": "er", "width": [1.0, 2.0], "n_train": 32, "types": THIN}]),
}
REQUIRES = ()


def unavailable() -> str | None:
    """Why the experiment cannot run here (None when it can)."""
    if data.real_available():
        return None
    return "needs the packaged image: pip install tifffile && pip install --no-deps stardist==0.9.2"


def _data(config: dict) -> dict:
    return dataset("real_nuclei", config["profile"])


def _thin_data(config: dict, thin: dict) -> dict:
    extra = {"width": thin["width"]} if "width" in thin else {}
    return dataset(thin["data"], config["profile"], n_train=thin["n_train"], **extra)


def _opt(config: dict) -> dict:
    r = config["recipe"]
    return {"steps": r["steps"], "batch": r["batch_size"], "lr": r["learning_rate"], "augment": r["augment"]}


def _train(config: dict, t: tuple, seed: int, dspec: dict | None = None) -> dict:
    cfg = {**config, "net": list(config["recipe"]["widths"])}
    return spec(cfg, dspec or _data(config), *t, regime="fixed", seed=seed, opt=_opt(config))


def _calibration_spec(config: dict, dspec: dict | None = None) -> dict:
    dspec = dspec or _data(config)
    return {"kind": "planner", "label": f"{dspec['name']} calibration", "data": dspec, "recipe": config["recipe"],
            "seed": 0}


def _sets(config: dict) -> list[tuple[dict, list]]:
    """(dataset spec, label types) of each validation: the real nuclei (validated, then beyond), the thin set."""
    return [(_data(config), config["types"] + config["beyond"])] + [(_thin_data(config, t), t["types"])
                                                                     for t in config["thin"]]


def cells(config: dict) -> list[dict]:
    if unavailable():
        raise RuntimeError(f"planner {unavailable()}")
    return [c for dspec, types in _sets(config)
            for c in [_calibration_spec(config, dspec)] + [_train(config, t, s, dspec) for t in types
                                                           for s in range(config["seeds"])]]


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


def _validate(config: dict, store, dspec: dict, types: list, validated: list) -> dict:
    """One data set's validation: its calibration cell, and per label type the prediction against the networks."""
    cal = planner.Calibration.from_dict(store.result(_calibration_spec(config, dspec)))
    d = _cells.load_data(dspec)
    masks = planner.Masks(d["test"].masks)
    rows = {}
    for t in types:
        lab = LabelNoise(*t)
        # the model's answer, also where the planner withholds it (masks too thin for it): this shows where it stops
        pred = planner.predict(masks, lab, calibration=cal, check_resolved=False)
        res = [store.result(_train(config, t, s, dspec)) for s in range(config["seeds"])]
        proto = "t_star"  # each cell is scored at its label type's t* (1/2 for clean, dilated, eroded masks)
        # the cell scored at the planner's threshold: t* = p/2, (1 + b - f)/2, or 1/2; a skeleton's s/2 is measured
        # on the masks at hand, the training masks for the cell and the test masks for the planner
        slack = SKELETON_SLACK if isinstance(lab, noise.Skeleton) else 1e-6
        used = [r["final"][proto]["threshold"] for r in res]
        if any(abs(u - pred.threshold) > slack for u in used):
            raise AssertionError(f"{_name(t)}: the cells threshold at {used}, the planner says {pred.threshold}")
        measured = stats([protocol_dice(r["final"], proto) for r in res])
        row = {"label": list(t), "family": pred.family, "threshold": pred.threshold, "inverted": pred.inverted,
               "predicted": pred.dice, "model": pred.model, "measured": measured,
               "oracle": stats([r["final"]["oracle"]["dice"] for r in res]),
               "diff": measured["mean"] - pred.dice, "validation": t in [tuple(v) for v in validated],
               "offered": planner.unresolved(masks, lab) is None}
        if max(abs(u - pred.threshold) for u in used) > 1e-6:
            row["cell_threshold"] = float(np.mean(used))
        row["within"] = abs(row["diff"]) <= TOLERANCE
        row["calibration_type"] = lab.family == "CL" or lab.name == cal.label  # calibrated on (other tiles)
        if pred.family == "PCL":
            row["product"] = cal.clean_dice * masks.label_dice(lab)
        rows[_name(t)] = row
    grid = np.geomspace(0.005, 1.0, 60)
    val = [r for r in rows.values() if r["validation"] and r["offered"]]  # what the planner answers on these masks
    other = [r for r in val if not r["calibration_type"]]
    return {
        "calibration": cal.to_dict(),
        "tiles": {k: len(v) for k, v in d.items()}, "tile_size": int(d["train"].images.shape[1]),
        "foreground_fraction_test": masks.foreground_fraction, "resolved_test": masks.resolved,
        "tolerance": TOLERANCE, "rows": rows,
        "all_within": all(r["within"] for r in val), "max_abs_diff": max(abs(r["diff"]) for r in val),
        # the points the calibration did not train on, and what a planner that predicts the clean Dice for every
        # label type would get right (how much the model adds)
        "rmse_other": float(np.sqrt(np.mean([r["diff"] ** 2 for r in other]))) if other else None,
        "constant_within": sum(abs(r["measured"]["mean"] - cal.clean_dice) <= TOLERANCE for r in other),
        "n_other": len(other),
        "curve_ratio": grid.tolist(),
        "curve": (cal.clean_dice * masks.pooled_dice(cal.n_eff, 1 - grid, 0.0)).tolist(),
    }


def summarise(config: dict, store) -> dict:
    (nuclei, types), *thin = _sets(config)
    return {**_validate(config, store, nuclei, types, config["types"]),
            "thin": [{"data": d["name"], "width": list(d.get("width", _ER_WIDTH)), **_validate(config, store, d, t, t)}
                     for d, t in thin]}


def _scatter(ax, rows: dict, tol: float, title: str) -> None:
    """Predicted against measured Dice, one marker per label type (family by shape), the tolerance band."""
    lo = min(min(r["predicted"], r["measured"]["mean"]) for r in rows.values()) - 0.05
    xs = np.linspace(max(lo, 0), 1, 2)
    ax.fill_between(xs, xs - tol, xs + tol, color="0.9", label=f"within {tol:g}")
    ax.plot(xs, xs, color="0.5", lw=1)
    for i, (name, r) in enumerate(rows.items()):
        mk = {"CL": "s", "RCL": "o", "PCL": "^", "RL": "x"}[r["family"]]
        shown = r["validation"] and r.get("offered", True)  # hollow: beyond the range, or withheld by the planner
        note = "" if shown else " (beyond)" if not r["validation"] else " (withheld by the planner)"
        ax.errorbar(r["predicted"], r["measured"]["mean"], yerr=r["measured"]["std"] or 0, marker=mk,
                    color=f"C{i % 10}", capsize=2, ls="none", mfc=None if shown else "none",
                    label=f"{name}{note}: {r['diff']:+.3f}")
        if "product" in r:
            ax.plot(r["product"], r["measured"]["mean"], "|", color=f"C{i % 10}", ms=10)
    ax.set(xlabel="predicted Dice (planner)", ylabel="measured Dice at the planner's threshold", title=title)
    ax.set_xlim(max(lo, 0), 1)
    ax.set_ylim(max(lo, 0), 1)
    ax.legend(fontsize=7, loc="upper left")


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    rows, cal, tol = res["rows"], res["calibration"], res["tolerance"]
    thin = res["thin"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 10), constrained_layout=True)
    ax = axes.ravel()
    ax[0].plot(res["curve_ratio"], res["curve"], "-", color="C0", lw=2, alpha=0.5,
               label=f"predicted at t* = p/2 (n_eff = {cal['n_eff']:.0f}, clean Dice {cal['clean_dice']:.3f})")
    smp = sorted((lab.ratio, r) for r in rows.values() if isinstance(lab := LabelNoise(*r["label"]), noise.Sample))
    errorbar(ax[0], [p for p, _ in smp], [r["measured"] for _, r in smp], color="C0", marker="o", ls="none",
             label=f"measured on test tiles, mean +- sd of {cfg['seeds']} seed(s)")
    if cal.get("sparse_dice") is not None:
        ax[0].plot([float(LabelNoise.parse(cal["label"]).ratio)], [cal["sparse_dice"]], "k*", ms=12,
                   label=f"calibration point ({cal['n_holdout']} held-out training tiles)")
    ax[0].set(xscale="log", xlabel="sampling ratio p (one fixed draw)", ylabel="pooled test Dice", ylim=(0, 1),
              title="(a) real nuclei, sparse labels: the planner's curve and the networks")
    ax[0].legend(fontsize=8, loc="lower right")
    _scatter(ax[1], rows, tol, "(b) real nuclei, every label type\n(|: the plain product clean x Dice(T(M), M))")
    for i, t in enumerate(thin[:2]):
        _scatter(ax[2 + i], t["rows"], tol, f"({'cd'[i]}) thin: {t['data'].upper()}-like tubules "
                 f"{t['width'][0]:g}-{t['width'][1]:g} px wide (n_eff = {t['calibration']['n_eff']:.0f}),\n"
                 f"Masks.resolved {t['resolved_test']:.2f}")
    for a in ax[2 + len(thin):]:
        a.axis("off")
    tiles = res["tiles"]
    tubules = (f", and on thin tubules (train {thin[0]['tiles']['train']}, test {thin[0]['tiles']['test']} each)"
               if thin else "")
    save_figure(fig, path, f"planner on real nuclei: {res['tile_size']} px tiles (train {tiles['train']}, test "
                f"{tiles['test']}){tubules}; U-Net {list(cfg['recipe']['widths'])}, "
                f"{cfg['recipe']['steps']} steps, augment={cfg['recipe']['augment']}")


# ------------------------------------------------------------------ the results document
TITLE = "the annotation planner, predicted against measured"


def _thin_text(thin: list[dict], cfg: dict) -> str:
    """The thin-structure validations, in one paragraph."""
    t0 = thin[0]
    text = (f"Thin structures: ER-like tubules ({t0['tile_size']} px images, {t0['tiles']['train']} for training, "
            f"{t0['tiles']['test']} for testing), where the model's 1-px clean partition {{D > 1/2}} keeps only part "
            "of the masks (`Masks.resolved`, the Dice between the two; 1-px lines give 0). The planner predicts "
            f"sampled and flipped labels only from `Masks.resolved` = {planner.MIN_RESOLVED:g} and skeletons from "
            f"{planner.MIN_RESOLVED_SKELETON:g} (`planner.unresolved`); below, the model's number is shown here "
            "but withheld by the planner. Each set is calibrated on its own training images, and the same networks, "
            f"{cfg['seeds']} seed(s) each, are scored.")
    for t in thin:
        cal, rows, tol = t["calibration"], t["rows"], t["tolerance"]
        offered = {n: r for n, r in rows.items() if r["offered"]}
        withheld = {n: r for n, r in rows.items() if not r["offered"]}
        worst = max(offered, key=lambda n: abs(offered[n]["diff"]))
        text += (f" Tubules {t['width'][0]:g}-{t['width'][1]:g} px wide (`Masks.resolved` {num(t['resolved_test'])} "
                 f"on the test masks; clean Dice {num(cal['clean_dice'])}, n_eff = {cal['n_eff']:.0f} from one fixed "
                 f"`{cal['label']}` draw): "
                 + "; ".join(f"`{n}` {pm(r['measured'])} against {num(r['predicted'])} ({r['diff']:+.3f}"
                             + (", withheld" if not r["offered"] else "") + ")" for n, r in rows.items())
                 + "".join(f" (`{n}` scored at its cells' t* {num(r['cell_threshold'])}, s/2 of their training "
                           f"masks, where the planner's from the test masks is {num(r['threshold'])})"
                           for n, r in rows.items() if "cell_threshold" in r)
                 + f". {'Every' if t['all_within'] else 'Not every'} point the planner gives lies within {tol:g} "
                 f"(the largest gap: `{worst}`, {offered[worst]['diff']:+.3f}; rms {num(t['rmse_other'])} over the "
                 "points other than the calibration's own types, where the clean Dice alone lands within "
                 f"{tol:g} on {t['constant_within']} of {t['n_other']})"
                 + (f"; withheld: {listing([f'`{n}`' for n in withheld])}, off by "
                    + listing([f"{r['diff']:+.3f}" for r in withheld.values()]) if withheld else "") + ".")
    return text


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
    if res["thin"]:
        out.append(para(_thin_text(res["thin"], cfg)))
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
