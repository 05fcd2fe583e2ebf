"""Annotation practice on volumes: how many slices, and ignore or background (theory/README.md, step 15).

3-D U-Nets trained on one fixed annotation per training volume of NUC-like and
ER-like stacks (``data.nuclei`` / ``data.er`` with ``ndim=3``: an anisotropic
PSF, shot noise), at equal label budgets: every k-th slice fully labelled
(``noise.Slices``), random 8-voxel cubes (``noise.Blocks``) or scattered voxels
(``noise.Scattered``), each with the unlabelled voxels stored as background
(read at t* = p/2) or ignored (read at 1/2). Against clean labels, and against
a 2-D U-Net trained on the labelled slices alone and run slice by slice.

The 3-D networks train on depth windows (``train.fit(crop=(d, None, None))``,
every row and column kept), so that a plane's depth in what the network sees
changes from step to step, for ``planes`` / d steps (as many planes per batch
slot on every data set). The theory's premise is that a network cannot tell
a labelled slice from an unlabelled one; on whole thin stacks it can, by the
plane's distance from the stack's faces (the convolutions' zero padding), and
it learns each depth's labelled share across the training stacks. A control
arm trains background slices on whole stacks and records how far the networks'
output follows that share (``depth_tracking``).

Beside the synthetic stacks, the real nuclei volume the stardist wheel ships
(``data.real_nuclei(ndim=3)``): its 16 x 16 columns, two thirds for training.

The prediction beside each point is the clean Dice times
``theory.curves.annotated_dice`` on the test volumes' 1-px fraction fields,
for labels that come in sheets or blocks at their q (``planner.Masks.overlap``
of the training masks: ``curves.lattice_overlap`` for slices, one class of
planes labelled per volume; ``curves.grid_overlap`` of the independent
blocks on their randomly shifted grid).
n_eff is fitted per data set, per reading (t*, own level) and per semantics (background,
ignore: networks may pool differently, as the planner measures each label
family's memorisation apart) on the scattered-voxel cells only; slices and
blocks are then predicted, not fitted. Labels are pooled in gaussian patches
(``curves.local_design``, theory step 15 "How locally a network pools"): their
width sigma is fitted per data set at the own level on one more cell, blocks of
another side (``locality``) with background semantics, and every other cell is
predicted with it. Read at its own level a background network follows the
training set's labelled share, so its prediction drops q and keeps the
patches' design effect; at t* and under ignore both count. Cells whose training set holds fewer
than ``planner.MIN_LABELLED_UNITS`` labelled units with foreground (p / q of the single units) lie
outside the model and are reported apart.

Beside the theory, the planner: ``planner.calibrate(..., ndim=3)`` on each
data set's training volumes with this experiment's recipe (one calibration
cell per data set), then ``planner.predict`` of every label type for the
training volumes' masks: its predictions against the same trained networks.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import jax
import numpy as np
from scipy import stats as sps

from metastructure import data, density, metrics, nets, noise, planner, train
from theory import curves

from ._common import N_EFF, errorbar, pyplot, save_figure, stats
from ._text import DATA, SHORT, listing, num, para, pct, pm, span, table

VERSION = 5  # bump when compute's results change: the runner versions every annotation cell with it
TOLERANCE = 0.05  # the goal: every predicted point within this much Dice of the measured one
BLOCK = 8  # the blocks' side in voxels
ALPHA = 0.05  # the level of the ignore-against-background tests (Welch, over seeds)

# each data set's generator settings: NUC-like ellipsoids, ER-like tubules wide enough to see through the z blur
GENERATORS = {
    "nuclei": {"radius": [3.0, 7.0], "count": [3, 6]},
    "er": {"nodes": 10, "width": [2.0, 4.0], "photons": 80.0, "z_blur": 2.0},
}

PROFILES = {
    "quick": {"profile": "quick", "datasets": ["nuclei"], "size": 16, "depth": 8, "n_train": 6, "n_test": 2,
              "net": [4, 8], "opt": {"steps": 30, "batch": 2, "lr": 0.005}, "seeds": 1,
              "spacings": [4], "budgets": [0.25], "slicewise": [1, 4], "zcrop": 4, "planes": 240, "locality": 2,
              "whole": {"labels": ["slices 4"], "datasets": ["nuclei"], "seeds": 1}},
    "full": {"profile": "full", "datasets": ["nuclei", "er", "real_nuclei"], "size": 32, "depth": 12, "n_train": 24,
             "n_test": 8, "net": [8, 16, 32], "opt": {"steps": 300, "batch": 2, "lr": 0.003}, "seeds": 5,
             "spacings": [2, 3, 5, 10, 50], "budgets": [0.1, 0.02], "slicewise": [1, 10, 50],
             # the 3-D networks train on windows of zcrop planes (the real volume: REAL's), every row and column,
             # planes / zcrop steps: each sees as many planes as 300 steps of whole 12-plane stacks
             "zcrop": 8, "planes": 3600,
             # the side of the blocks whose cell (background, the first budget) fits the pooling's locality sigma
             "locality": 4,
             # the control: background slices on whole stacks, where a plane's depth tells the network its share
             "whole": {"labels": ["slices 5", "slices 10"], "datasets": ["nuclei", "er", "real_nuclei"], "seeds": 5}},
}
REQUIRES = ()
SEMANTICS = noise.UNLABELLED  # ("background", "ignore")
# how a network's output becomes a mask: at the label type's t* (p/2 with background, 1/2 with ignore), or at
# its own level (metrics.level_threshold: half its mean output on the training voxels labelled foreground)
READINGS = ("t_star", "level")
NOTHING = {"dice": 0.0, "threshold": None}  # a reading that calls nothing foreground (no network, or no level)
# the pooling widths sigma (voxels) searched for curves.local_design, fitted on the locality cell
SIGMAS = tuple(float(v) for v in np.round(np.arange(0.0, 3.0001, 0.05), 2))


# the real volume (``data.real_nuclei(ndim=3)``, 31 x 61 x 57, 51 nuclei): its 16 x 16 columns, two thirds for
# training, a third for testing, the middle 28 planes (the U-Net's two poolings need a depth divisible by 4); its
# 3-D networks train on windows of 12 of them
REAL = {"tile": 16, "split": [2 / 3, 0.0, 1 / 3], "depth": 28, "zcrop": 12}


def _dataset(config: dict, name: str) -> dict:
    if name == "real_nuclei":
        return {"name": name, **{k: v for k, v in REAL.items() if k != "zcrop"}}
    return {"name": name, "size": config["size"], "depth": config["depth"], "n_train": config["n_train"],
            "n_test": config["n_test"], "seed": 0, **GENERATORS[name]}


@functools.lru_cache(maxsize=4)
def _load(dspec_json: str) -> dict[str, data.Dataset]:
    d = json.loads(dspec_json)
    if d["name"] == "real_nuclei":
        parts = data.real_nuclei(ndim=3, tile=d["tile"], split=tuple(d["split"]))
        start = (parts["train"].masks.shape[1] - d["depth"]) // 2
        return {split: data.Dataset(parts[split].images[:, start:start + d["depth"]],
                                    parts[split].masks[:, start:start + d["depth"]]) for split in ("train", "test")}
    gen = {"nuclei": data.nuclei, "er": data.er}[d["name"]]
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()
          if k not in ("name", "n_train", "n_test", "seed")}
    key = jax.random.key(d["seed"])
    return {split: gen(jax.random.fold_in(key, i), d[f"n_{split}"], ndim=3, **kw)
            for i, split in enumerate(("train", "test"))}


def load_data(dspec: dict) -> dict[str, data.Dataset]:
    """The train / test volumes of a cell (cached per process)."""
    return _load(json.dumps(dspec, sort_keys=True))


def _name(kind: str, budget: float, semantics: str) -> str:
    """A scheme's label type name at a budget p (slices: k = 1/p)."""
    text = {"slices": f"slices {round(1 / budget)}", "blocks": f"blocks {budget:g} {BLOCK}",
            "scattered": f"scattered {budget:g}"}[kind]
    return text if semantics == "background" else f"{text} ignore"


def _labels(config: dict) -> list[str]:
    """Every 3-D network's label type: clean, slices at each spacing, blocks and scattered voxels at each budget."""
    out = ["clean"]
    for sem in SEMANTICS:
        out += [_name("slices", 1 / k, sem) for k in config["spacings"]]
        out += [_name(kind, p, sem) for kind in ("blocks", "scattered") for p in config["budgets"]]
    return out + [_locality_label(config)]


def _locality_label(config: dict) -> str:
    """The cell that fits how locally the networks pool (curves.local_design's sigma): blocks of side
    ``locality`` at the first budget, unlabelled = background; another side than the scored blocks' (BLOCK).

    Raises:
        ValueError: ``locality`` is BLOCK (the fit would take a scored cell).
    """
    if config["locality"] == BLOCK:
        raise ValueError(f"the locality cell's blocks need another side than the scored ones ({BLOCK})")
    return f"blocks {config['budgets'][0]:g} {config['locality']}"


def _window(config: dict, name: str) -> list:
    """The 3-D networks' training window: ``zcrop`` planes (the real volume's: REAL's), every row and column."""
    return [REAL["zcrop"] if name == "real_nuclei" else config["zcrop"], None, None]


def _steps(config: dict, name: str) -> int:
    """A 3-D network's steps on windows: ``planes`` / window depth, so that every data set's networks see as many
    planes per batch slot (the opt's steps serve the whole-stack control and the 2-D networks)."""
    return config["planes"] // _window(config, name)[0]


def _spec(config: dict, name: str, labels: str, seed: int, dim: int = 3, *, whole: bool = False) -> dict:
    """One network's cell: 3-D networks train on depth windows, or on whole stacks with ``whole`` (the control);
    2-D networks on whole slices."""
    spec = {"kind": "annotation", "label": f"{name} {labels} {dim}-D s{seed}" + (" whole stacks" if whole else ""),
            "data": _dataset(config, name), "labels": labels, "dim": dim, "net": list(config["net"]),
            "opt": dict(config["opt"]), "seed": seed}
    if dim == 3 and not whole:
        spec["crop"] = _window(config, name)
        spec["opt"]["steps"] = _steps(config, name)
    return spec


def _slicewise(k: int) -> str:
    return "clean" if k == 1 else f"slices {k} ignore"


def _recipe(config: dict, name: str) -> dict:
    """The planner's recipe that trains as this experiment's 3-D networks do (depth windows, augmented, ReLU)."""
    opt = config["opt"]
    return {"widths": list(config["net"]), "activation": "relu", "steps": _steps(config, name),
            "batch_size": opt["batch"],
            "learning_rate": opt["lr"], "augment": True, "crop": _window(config, name)}


def _calibration_spec(config: dict, name: str) -> dict:
    return {"kind": "annotation", "role": "calibration", "label": f"{name} planner calibration",
            "data": _dataset(config, name), "recipe": _recipe(config, name), "repeats": 1, "seed": 0}


def cells(config: dict) -> list[dict]:
    return [_spec(config, n, lab, s) for n in config["datasets"] for lab in _labels(config)
            for s in range(config["seeds"])] + \
           [_spec(config, n, _slicewise(k), s, dim=2) for n in config["datasets"] for k in config["slicewise"]
            for s in range(config["seeds"])] + \
           [_calibration_spec(config, n) for n in config["datasets"]] + \
           [_spec(config, n, lab, s, whole=True) for n, lab, s in _whole_cells(config)]


def _whole_cells(config: dict) -> list[tuple[str, str, int]]:
    wh = config.get("whole")
    return [] if not wh else [(n, lab, s) for n in wh["datasets"] for lab in wh["labels"] for s in range(wh["seeds"])]


def compute(spec: dict) -> dict:
    """One network: the annotation drawn once (key: the seed), a U-Net trained on it, scored on the test volumes.

    3-D: ``train.fit`` on the volumes with the annotation (augmented by the 16 symmetries that keep z; on the
    spec's ``crop`` windows, whole volumes without one), and, with
    the unlabelled voxels stored as background, ``metrics.label_fit``'s memorisation index on the training
    volumes (the mean output on the labelled foreground minus on the unlabelled: 0 for a network that learnt
    the density p D, 1 for one that learnt the annotation) and, for slices, ``metrics.depth_tracking`` (near 0
    for a network blind to depth, near 1 for one that learnt each depth's labelled share). 2-D: a
    U-Net of the same widths on the labelled slices alone (every slice for clean labels), run on every slice of
    the test volumes. Scores: ``metrics.evaluate`` pooled over the test volumes at each of READINGS (t*: the
    label type's, 1/2 with ignore; level: half the network's own mean output on its training voxels labelled
    foreground, ``metrics.level_threshold``), at the oracle threshold and at 1/2, the labelled share of the
    training foreground, and how many slices the 2-D network saw. An annotation whose offsets miss every volume
    (k beyond the depth) leaves the 2-D network nothing to train on: Dice 0, threshold None.
    """
    d = load_data(spec["data"])
    tr, te = d["train"], d["test"]
    if spec.get("role") == "calibration":  # planner.calibrate on the training volumes, this experiment's recipe
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a clipped n_eff or a failed network is in the record
            cal = planner.calibrate(jax.random.key(spec["seed"]), tr.images, tr.masks, recipe=spec["recipe"],
                                    repeats=spec["repeats"], progress=False, ndim=3)
        return cal.to_dict()
    ln = noise.LabelNoise.parse(spec["labels"], ndim=3)
    seed = spec["seed"]
    y = np.asarray(ln(jax.random.fold_in(jax.random.key(seed), 1), tr.masks), np.int32)
    opt = spec["opt"]
    kw = dict(steps=opt["steps"], learning_rate=opt["lr"], augment=True, progress=False)
    fg = tr.masks == 1
    out = {"labelled_fg": float(np.count_nonzero((y == 1) & fg) / max(np.count_nonzero(fg), 1))}
    if spec["dim"] == 3:
        crop = None if spec.get("crop") is None else tuple(spec["crop"])
        r = train.fit(jax.random.key(seed), tr.images, y, model=nets.unet(widths=tuple(spec["net"]), ndim=3),
                      batch_size=opt["batch"], label_type=ln, crop=crop, **kw)
        probs = np.asarray(r.predict(te.images))
        own = (np.asarray(r.predict(tr.images)), y)  # its outputs on the training volumes, for the level reading
        # how far it learnt this one annotation rather than its density: the memorisation index on the training
        # volumes (labels stored as background only; ignored voxels hold no wrong label to learn)
        background = not np.any(y == -1)
        out["memorisation"] = metrics.label_fit(own[0], tr.masks, labels=y)["memorisation"] if background else None
        out["depth_tracking"] = metrics.depth_tracking(own[0], tr.masks, y) if background and ln.kind == "slices" \
            else None
    else:
        whole = np.all((y != -1).reshape(y.shape[:2] + (-1,)), axis=2)  # the labelled slices, (N, D)
        x2, y2 = tr.images[whole], y[whole]
        out["slices"] = int(x2.shape[0])
        if not out["slices"]:  # every offset past every volume's depth: no label, no network, nothing found
            return {**out, **dict.fromkeys(READINGS + ("oracle", "fixed_0.5"), NOTHING), "mean_fg": 0.0}
        r = train.fit(jax.random.key(seed), x2, y2, model=nets.unet(widths=tuple(spec["net"])),
                      batch_size=4 * opt["batch"], **kw)
        flat = te.images.reshape((-1,) + te.images.shape[2:])
        probs = np.asarray(r.predict(flat)).reshape(te.masks.shape)
        own = (np.asarray(r.predict(x2)), y2)
    scores = metrics.evaluate(probs, te.masks, label_type=ln, training=own,
                              protocols=("fixed_0.5", "oracle") + READINGS)
    out.update({p: NOTHING if scores[p] is None else {"dice": scores[p]["dice"], "threshold": scores[p]["threshold"]}
                for p in READINGS + ("oracle", "fixed_0.5")})  # None: no labelled foreground, no level to read
    out["mean_fg"] = scores["mean_fg"]["value"]
    return out


# ------------------------------------------------------------------ summary and prediction
def _fraction(name: str) -> float:
    return float(noise.LabelNoise.parse(name).labelled_fraction) if name != "clean" else 1.0


def _semantics(name: str) -> str:
    return "ignore" if name.endswith(" ignore") else "background"


def _scheme(name: str) -> str:
    return name.split()[0]


def summarise(config: dict, store) -> dict:
    """Per data set: each label type's Dice at every reading (READINGS) and the oracle, the theory's prediction
    per reading (n_eff fitted per reading and semantics on the scattered cells), the planner's, the errors, the
    plain answers, and the whole-stack control."""
    out = {}
    for dname in config["datasets"]:
        dspec = _dataset(config, dname)
        d = load_data(dspec)
        train_masks, test_masks = d["train"].masks, d["test"].masks
        fields = np.asarray(density.fraction_field(test_masks.astype(bool), 1.0, ndim=3), float)
        pm_train = planner.Masks(train_masks, ndim=3)
        rows = {}
        for lab in _labels(config):
            res = [store.result(_spec(config, dname, lab, s)) for s in range(config["seeds"])]
            rows[lab] = {**_readings(res), "oracle": stats([r["oracle"]["dice"] for r in res]),
                         "mean_fg": stats([r["mean_fg"] for r in res]),
                         "labelled_fg": stats([r["labelled_fg"] for r in res]),
                         "memorisation": _optional_stats(res, "memorisation"),
                         "depth_tracking": _optional_stats(res, "depth_tracking")}
        slicewise = {}
        for k in config["slicewise"]:
            res = [store.result(_spec(config, dname, _slicewise(k), s, dim=2)) for s in range(config["seeds"])]
            slicewise[str(k)] = {**_readings(res), "slices": stats([r["slices"] for r in res])}
        clean = {rd: rows["clean"][rd]["mean"] for rd in READINGS}
        design = _Designs(train_masks)

        def predict(name: str, n_eff: float, base: float, reading: str, sigma: float, *, planar: bool = False,
                    previous: bool = False, fields=fields, pm_train=pm_train, design=design) -> float:
            """``planar``: a 2-D network, pooling within a plane; ``previous``: the model before the patches (q
            kept at every reading, design 1), the control."""
            if name == "clean":
                return base
            # read at its own level a background network follows the training set's share: q drops out
            drop = reading == "level" and _semantics(name) == "background" and not previous
            q = 0.0 if drop else pm_train.overlap(name)
            return _predict(name, n_eff, base, fields, q, 1.0 if previous else design(name, sigma, planar=planar))

        fits = {rd: {} for rd in READINGS}
        for rd, sem in ((rd, sem) for rd in READINGS for sem in SEMANTICS):
            # n_eff per reading and semantics, on the scattered cells of that semantics only (design 1 at any sigma)
            fit_on = [lab for lab in rows if _scheme(lab) == "scattered" and _semantics(lab) == sem]
            best = None
            for n in N_EFF:
                err = float(np.sqrt(np.mean([(predict(lab, n, clean[rd], rd, 0.0) - rows[lab][rd]["mean"]) ** 2
                                             for lab in fit_on])))
                if best is None or err < best["rmse"]:
                    best = {"n_eff": n, "rmse": err, "on": fit_on}
            best["at_bound"] = best["n_eff"] in (min(N_EFF), max(N_EFF))  # a bound of the search, not a fit
            fits[rd][sem] = best
        # how locally the networks pool: sigma fitted at their own level on the locality cell alone
        loc = _locality_label(config)
        n_loc = fits["level"]["background"]["n_eff"]
        miss = [abs(predict(loc, n_loc, clean["level"], "level", sg) - rows[loc]["level"]["mean"]) for sg in SIGMAS]
        sigma = SIGMAS[int(np.argmin(miss))]
        st = rows[loc]["level"]
        se = None if st["n"] < 2 else st["std"] / np.sqrt(st["n"])  # the cell's standard error over the seeds
        near = [sg for sg, e in zip(SIGMAS, miss, strict=True) if se is not None and e <= se]
        locality = {"sigma": sigma, "on": loc, "error": float(min(miss)),
                    "range": [min(near), max(near)] if near else None,
                    "at_bound": sigma in (min(SIGMAS), max(SIGMAS)),
                    "design": {lab: design(lab, sigma) for lab in rows
                               if lab != "clean" and _semantics(lab) == "background"}}
        cal = planner.Calibration.from_dict(store.result(_calibration_spec(config, dname)))
        for lab, row in rows.items():
            row["predicted"] = {rd: predict(lab, fits[rd][_semantics(lab)]["n_eff"], clean[rd], rd, sigma)
                                for rd in READINGS}
            row["fitted"] = lab in fits["t_star"][_semantics(lab)]["on"] or lab == loc
            row["labelled_units"] = None if lab == "clean" else pm_train.labelled_units(lab)
            row["in_model"] = lab == "clean" or row["labelled_units"] >= planner.MIN_LABELLED_UNITS
            try:
                row["planner"] = planner.predict(pm_train, noise.LabelNoise.parse(lab, ndim=3), calibration=cal,
                                                 n_images=len(train_masks)).dice
            except ValueError:  # too few labelled units: the planner refuses
                row["planner"] = None
        for k, row in slicewise.items():
            row["predicted"] = None if "1" not in slicewise else {
                rd: predict(_slicewise(int(k)), fits[rd]["ignore"]["n_eff"], slicewise["1"][rd]["mean"], rd, sigma,
                            planar=True) for rd in READINGS}
        ks = np.unique(np.round(np.geomspace(1, max(config["spacings"]) * 1.5, 30)).astype(int))
        curve = {rd: {sem: [predict("clean" if k == 1 else _name("slices", 1 / k, sem), fits[rd][sem]["n_eff"],
                                    clean[rd], rd, sigma) for k in ks] for sem in SEMANTICS} for rd in READINGS}
        units_k = {str(k): pm_train.labelled_units(f"slices {k}") for k in ks}
        scored = [lab for lab, row in rows.items() if lab != "clean" and not row["fitted"] and row["in_model"]]
        errors = {rd: {lab: abs(rows[lab]["predicted"][rd] - rows[lab][rd]["mean"]) for lab in scored}
                  for rd in READINGS}
        oracle_errors = {rd: {lab: abs(rows[lab]["predicted"][rd] - rows[lab]["oracle"]["mean"]) for lab in scored}
                         for rd in READINGS}
        # how much the own-level goal rests on sigma: the worst miss over its one-standard-error range, and the
        # controls: labels pooled one by one (sigma = 0), and the model before the patches (q kept, no design)
        def worst(sigmas: list, previous: bool = False, scored=scored, fits=fits, clean=clean, rows=rows,
                  predict=predict) -> float | None:
            return None if not sigmas or not scored else max(
                abs(predict(lab, fits["level"][_semantics(lab)]["n_eff"], clean["level"], "level", sg,
                            previous=previous) - rows[lab]["level"]["mean"]) for sg in sigmas for lab in scored)

        lo, hi = locality["range"] or (None, None)
        locality["max_error_over_range"] = None if lo is None else worst([sg for sg in SIGMAS if lo <= sg <= hi])
        locality["max_error_uniform"] = worst([0.0])
        locality["max_error_previous"] = worst([0.0], previous=True)
        planner_errors = {rd: {lab: abs(row["planner"] - row[rd]["mean"]) for lab, row in rows.items()
                               if row["planner"] is not None} for rd in READINGS}
        versus = {rd: {} for rd in READINGS}  # ignore against background at equal budgets (Welch over seeds)
        for rd, lab in ((rd, lab) for rd in READINGS for lab in rows if _semantics(lab) == "ignore"):
            bg = lab.removesuffix(" ignore")
            versus[rd][bg] = _welch(rows[lab][rd]["values"], rows[bg][rd]["values"])
        out[dname] = {"volumes": {"train": len(train_masks), "test": len(test_masks),
                                  "shape": list(train_masks.shape[1:])},
                      "by_label": rows, "slicewise": slicewise, "fit": fits, "locality": locality,
                      "overlap": {lab: pm_train.overlap(lab) for lab in rows
                                  if lab != "clean" and _semantics(lab) == "background"},
                      "curve_k": ks.tolist(), "curve": curve, "curve_units": units_k, "errors": errors,
                      "max_error": {rd: max(e.values()) if e else None for rd, e in errors.items()},
                      "max_error_oracle": {rd: max(e.values()) if e else None for rd, e in oracle_errors.items()},
                      "ignore_vs_background": versus,
                      "planner": {"calibration": {"n_eff": cal.n_eff, "clean_dice": cal.clean_dice,
                                                  "source": cal.source, "n_train": cal.n_train},
                                  "errors": planner_errors,
                                  "max_error": {rd: max(e.values()) if e else None
                                                for rd, e in planner_errors.items()}},
                      "how_many_slices": {rd: _how_many(config, rows, rd, curve[rd], ks, clean[rd], units_k)
                                          for rd in READINGS}}
        if dname in (config.get("whole") or {}).get("datasets", ()):
            wh = config["whole"]
            whole = {}
            for lab in wh["labels"]:
                res = [store.result(_spec(config, dname, lab, s, whole=True)) for s in range(wh["seeds"])]
                w = {**_readings(res), "oracle": stats([r["oracle"]["dice"] for r in res]),
                     "mean_fg": stats([r["mean_fg"] for r in res]),
                     "memorisation": stats([r["memorisation"] for r in res]),
                     "depth_tracking": _optional_stats(res, "depth_tracking")}
                w["windows_minus_whole"] = {rd: _welch(rows[lab][rd]["values"], w[rd]["values"]) for rd in READINGS}
                whole[lab] = w
            out[dname]["whole"] = {"seeds": wh["seeds"], "by_label": whole}
    return out


def _readings(results: list[dict]) -> dict:
    """stats of the cells' Dice at each reading, with the values themselves (for the Welch tests)."""
    return {rd: {**stats([r[rd]["dice"] for r in results]), "values": [r[rd]["dice"] for r in results]}
            for rd in READINGS}


def _welch(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) and Welch's p (None with a single value on either side or no spread at all)."""
    p = float(sps.ttest_ind(a, b, equal_var=False).pvalue) if len(a) > 1 and len(b) > 1 and \
        np.std(a + b) > 0 else None
    return {"difference": float(np.mean(a) - np.mean(b)), "p": p}


def _optional_stats(results: list[dict], key: str) -> dict | None:
    """stats of ``key`` over the cells' results; None where no cell has a value."""
    values = [r.get(key) for r in results]
    return None if all(v is None for v in values) else stats(values)


def _predict(name: str, n_eff: float, base: float, fields: np.ndarray, q: float, design: float) -> float:
    """The clean Dice ``base`` times ``curves.annotated_dice`` on the test fields at n_eff, the label type's q
    (``planner.Masks.overlap`` of the training masks; 0 where the reading removes it) and the pooling's design
    effect (``curves.local_design``)."""
    return base * float(curves.annotated_dice(fields, n_eff, _fraction(name), unlabelled=_semantics(name),
                                              overlap=q, design=design)[0])


class _Designs:
    """``curves.local_design`` of the training masks for a label type (its semantics aside) at a sigma, cached;
    ``planar``: a 2-D network's, whose patches stay within a plane (no pair across planes)."""

    def __init__(self, masks: np.ndarray):
        self.masks = np.asarray(masks, bool)
        self.cache: dict = {}

    def __call__(self, name: str, sigma: float, *, planar: bool = False) -> float:
        lab = noise.LabelNoise.parse(name.removesuffix(" ignore"), ndim=3)
        key = (lab.name, sigma, planar)
        if key not in self.cache:
            corr = lab.pair_correlation
            if planar:
                def corr(d, lab=lab):
                    return ((d == 0).astype(float),) + lab.pair_correlation(d)[1:]
            self.cache[key] = curves.local_design(self.masks, corr, sigma, ndim=3)
        return self.cache[key]


def _how_many(config: dict, rows: dict, reading: str, curve: dict, ks: np.ndarray, clean: float,
              units: dict) -> dict:
    """Per semantics, at one reading: the largest measured spacing k whose Dice is within TOLERANCE of clean
    (each smaller spacing too), and the largest k of the predicted curve that is, among the spacings inside the
    model."""
    out = {}
    for sem in SEMANTICS:
        meas = None
        for k in sorted(config["spacings"]):
            if rows[_name("slices", 1 / k, sem)][reading]["mean"] < clean - TOLERANCE:
                break
            meas = k
        inside = {int(k) for k in ks if units[str(k)] >= planner.MIN_LABELLED_UNITS}
        pred = [int(k) for k, v in zip(ks, curve[sem], strict=True) if v >= clean - TOLERANCE and int(k) in inside]
        out[sem] = {"measured": meas, "predicted": max(pred) if pred else None}
    return out


# ------------------------------------------------------------------ figure
def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    n = len(res)
    fig, ax = plt.subplots(2, n, figsize=(6.2 * n, 9.4), constrained_layout=True, squeeze=False)
    marks = {"background": ("C0", "o"), "ignore": ("C1", "s")}
    legend: dict = {}  # one legend for the top row: every panel's entries, by label
    for j, (dname, r) in enumerate(res.items()):
        a = ax[0, j]
        rows = r["by_label"]
        clean = rows["clean"]["level"]
        a.axhspan(clean["mean"] - clean["std"], clean["mean"] + clean["std"], color="0.85", lw=0)
        a.axhline(clean["mean"], color="0.4", lw=1, label="clean 3-D (mean +- sd)")
        for sem, (col, mk) in marks.items():
            ks = cfg["spacings"]
            errorbar(a, ks, [rows[_name("slices", 1 / k, sem)]["level"] for k in ks], color=col, marker=mk, ms=5,
                     ls="none", label=f"3-D, unlabelled = {sem}, read at its own level")
            a.plot(np.asarray(ks) * (1.06 if sem == "ignore" else 0.94),
                   [rows[_name("slices", 1 / k, sem)]["t_star"]["mean"] for k in ks], color=col, marker=mk, ms=5,
                   mfc="none", ls="none", label=f"the same at t* = {'1/(2k)' if sem == 'background' else '1/2'}")
            inside = [r["curve_units"][str(k)] >= planner.MIN_LABELLED_UNITS for k in r["curve_k"]]
            kin = [k for k, ok in zip(r["curve_k"], inside, strict=True) if ok]
            kout = [k for k, ok in zip(r["curve_k"], inside, strict=True) if not ok]
            a.plot(kin, r["curve"]["level"][sem][:len(kin)], color=col, lw=1.2, label=f"predicted, {sem}")
            if kout:
                start = max(len(kin) - 1, 0)
                a.plot(r["curve_k"][start:], r["curve"]["level"][sem][start:], color=col, lw=1, ls=":")
        if "whole" in r:
            wk = sorted(round(1 / _fraction(lab)) for lab in r["whole"]["by_label"])
            errorbar(a, np.asarray(wk) * 0.86, [r["whole"]["by_label"][f"slices {k}"]["level"] for k in wk],
                     color="C7", marker="x", ms=7, ls="none",
                     label="3-D, background, trained on whole stacks (it can tell depths apart), own level")
        cut = [k for k in r["curve_k"] if r["curve_units"][str(k)] < planner.MIN_LABELLED_UNITS]
        if cut:
            a.axvspan(cut[0], max(r["curve_k"]), color="C3", alpha=0.07, lw=0,
                      label=f"< {planner.MIN_LABELLED_UNITS} labelled slices with objects: outside the model")
        sw = r["slicewise"]
        ks2 = [int(k) for k in sw if int(k) > 1]
        if ks2:
            errorbar(a, ks2, [sw[str(k)]["level"] for k in ks2], color="C2", marker="^", ms=6, ls="none",
                     label="2-D U-Net on the labelled slices, own level")
        fits = ", ".join(f"{_n_eff_text(r['fit']['level'][sem]).split(' (')[0]} ({sem})" for sem in SEMANTICS)
        a.set(xscale="log", xlabel="slice spacing k (every k-th slice labelled; p = 1/k)", ylabel="test Dice",
              ylim=(0, 1), title=f"{DATA.get(dname, dname)} volumes: how many slices?\n"
                                 f"clean 3-D {clean['mean']:.3f}; predicted with n_eff {fits}\n"
                                 f"in patches of width sigma = {num(r['locality']['sigma'], 2)} voxels "
                                 f"(fitted on `{r['locality']['on']}`)")
        a.title.set_fontsize(10)
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
        b = ax[1, j]
        names = [lab for lab in rows if lab != "clean" and _scheme(lab) != "slices"] + \
            [_name("slices", p, sem) for p in cfg["budgets"] for sem in SEMANTICS
             if _name("slices", p, sem) in rows]
        names = sorted(names, key=lambda s: (-_fraction(s), _scheme(s), _semantics(s)))
        x = np.arange(len(names))
        for i, lab in enumerate(names):
            col = marks[_semantics(lab)][0]
            st = rows[lab]["level"]
            b.bar(i, st["mean"], yerr=st["std"], color=col, alpha=0.35 if rows[lab]["fitted"] else 0.7,
                  capsize=2, hatch=None if rows[lab]["in_model"] else "//")
            b.plot(i, rows[lab]["t_star"]["mean"], marker="v", color="k", mfc="none", ms=5, ls="none")
            b.plot([i - 0.4, i + 0.4], [rows[lab]["predicted"]["level"]] * 2, color="k", lw=1.5,
                   ls="-" if rows[lab]["in_model"] else ":")
            if rows[lab]["planner"] is not None:
                b.plot(i, rows[lab]["planner"], marker="D", color="C2", ms=5, ls="none")
        b.axhline(clean["mean"], color="0.4", lw=1)
        side = {s: f", side {s.split()[2]}" if _scheme(s) == "blocks" else "" for s in names}
        b.set_xticks(x, [f"{_scheme(s)} {pct(_fraction(s))}{side[s]}\n{_semantics(s)}" for s in names], fontsize=6,
                     rotation=90)
        b.set(ylim=(0, 1), ylabel="test Dice",
              title="bars: measured at the network's own level (pale: fitted; hatched: outside the model)\n"
                    "open triangles: the same at t*; black: theory; green: planner",
              )
        b.title.set_fontsize(9)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=min(n, 3), fontsize=8)
    save_figure(fig, path, f"annotation: one fixed annotation per volume, {cfg['seeds']} seed(s), mean +- sd\n"
                           "each network read at its own level (half its output on its labelled foreground)\n"
                           "blue: unlabelled = background, orange: ignored", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "Annotating volumes: how many slices, ignore or background"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document, from its record."""
    cfg, res = record["config"], record["results"]
    ds = list(res)
    opt = cfg["opt"]
    out = [para(
        f"3-D U-Nets ({'-'.join(map(str, cfg['net']))}, augmented) trained on windows of {_window_text(cfg, ds)} "
        "planes with every row and column (`train.fit(crop=(d, None, None))`), "
        f"{cfg['planes']} / d steps of {opt['batch']} windows ({_steps_text(cfg, ds)}: {cfg['planes']} planes per "
        f"batch slot, as many as {opt['steps']} steps of whole {cfg['depth']}-plane synthetic stacks), "
        "on " + listing([_volumes_text(d, res[d]) for d in ds]) + ", each trained on "
        f"one fixed annotation: every k-th slice (k = {listing([str(k) for k in cfg['spacings']])}), random "
        f"{BLOCK}-voxel cubes or scattered voxels at budgets of {listing([pct(p) for p in cfg['budgets']])} of the "
        "voxels, the unlabelled voxels stored as background (read at t* = p/2) or ignored (read at 1/2); "
        f"{cfg['seeds']} seed(s) each (a seed draws the network and the annotation). Dice on the test volumes "
        "(pooled), mean +- sd, read at the label type's t* (**t\\***), at the network's **own level** "
        "(`metrics.level_threshold`: half its mean output on its training voxels labelled foreground, which is "
        "t* with the network's own output on objects in place of the label type's p or 1) and at the best "
        "threshold (**oracle**, an upper bound); **memorised**: with "
        "the unlabelled voxels stored as background, the networks' memorisation index on their training volumes "
        "(`metrics.label_fit`: the mean output on the labelled foreground minus on the unlabelled, 0 for the "
        "density p D, 1 for the annotation itself). **theory**: the clean "
        "Dice times `theory.curves.annotated_dice` "
        "(theory/README.md, step 15), n_eff fitted per reading and semantics on the scattered-voxel cells alone "
        "(marked fitted), given as the prediction at t* / at the own level; slices and blocks at their units' q "
        "(slices at one random offset per volume are a lattice, "
        "`curves.lattice_overlap`; blocks independent units on a randomly shifted grid, `curves.grid_overlap`), "
        "their labels pooled in gaussian patches whose width sigma is fitted per data set at the own level on "
        f"`{_locality_label(cfg)}` alone (marked fitted; `curves.local_design`, the patches' design effect). "
        "Read at its own level a background network follows its training set's labelled share, so there the "
        "prediction drops q and keeps the design effect; at t* and with ignore both count. "
        "**planner**: `planner.predict` from "
        "`planner.calibrate(..., ndim=3)` on the same training volumes with the same recipe (one calibration "
        f"per data set). Units: labelled slices or blocks with objects expected in the training set (p / q of the "
        "single slices or blocks, `planner.Masks.labelled_units`); "
        f"below {planner.MIN_LABELLED_UNITS} the cell is outside the model (and the planner refuses it).")]
    for dname in ds:
        r = res[dname]
        rows = r["by_label"]
        body = []
        for lab, row in rows.items():
            if lab == "clean":
                continue
            units = "" if row["labelled_units"] is None else f"{row['labelled_units']:.0f}"
            theory = " / ".join(num(row["predicted"][rd]) for rd in READINGS)
            theory = f"outside ({theory})" if not row["in_model"] else theory + (" (fitted)" if row["fitted"] else "")
            mem = row.get("memorisation")
            body.append([f"`{lab}`", pct(_fraction(lab)), units, pm(row["t_star"]), pm(row["level"]),
                         num(row["oracle"]["mean"]), "" if mem is None or mem["mean"] is None else num(mem["mean"]),
                         theory, num(row["planner"]) if row["planner"] is not None else "refused"])
        sw = r["slicewise"]
        for k, row in sw.items():
            if int(k) > 1:
                body.append([f"2-D U-Net on `{_slicewise(int(k))}`'s slices", pct(1 / int(k)),
                             f"{row['slices']['mean']:.0f} slices", pm(row["t_star"]), pm(row["level"]), "", "",
                             "" if row["predicted"] is None else
                             " / ".join(num(row["predicted"][rd]) for rd in READINGS), ""])
        f = r["fit"]
        pl = r["planner"]
        fitted = listing([f"{' / '.join(_n_eff_text(f[rd][sem]) for rd in READINGS)} ({sem}, rms "
                          f"{' / '.join(num(f[rd][sem]['rmse']) for rd in READINGS)})" for sem in SEMANTICS])
        fitted += "; " + _locality_text(r["locality"])
        out.append(para(
            f"**{DATA.get(dname, dname)}**: clean 3-D {pm(rows['clean']['t_star'])} at 1/2, "
            f"{pm(rows['clean']['level'])} at its own level; a 2-D U-Net on every slice "
            f"{pm(sw['1']['t_star']) if '1' in sw else 'n/a'}. n_eff fitted at t* / at the own level: {fitted}; "
            f"the planner's calibration: clean Dice "
            f"{num(pl['calibration']['clean_dice'])}, n_eff {pl['calibration']['n_eff']:.0f} "
            f"({pl['calibration']['source']}, {pl['calibration']['n_train']} training volumes):"))
        out.append(table(["label type", "budget", "units", "t*", "own level", "oracle", "memorised",
                          "theory (t* / own level)", "planner"], body))
    out += _whole_section(cfg, res)
    out.append(para(_answers(cfg, res)))
    return out


def _window_text(cfg: dict, ds: list[str]) -> str:
    """'8 (12 on the real volume)': the window depths of the data sets in ``ds``."""
    real = "real_nuclei" in ds
    synthetic = [d for d in ds if d != "real_nuclei"]
    if not synthetic:
        return str(REAL["zcrop"])
    return str(cfg["zcrop"]) + (f" ({REAL['zcrop']} on the real volume)" if real else "")


def _steps_text(cfg: dict, ds: list[str]) -> str:
    """'450 steps, 300 on the real volume': the steps of the data sets in ``ds``."""
    synthetic = [d for d in ds if d != "real_nuclei"]
    parts = [f"{_steps(cfg, synthetic[0])} steps"] if synthetic else []
    if "real_nuclei" in ds:
        parts.append(f"{_steps(cfg, 'real_nuclei')} on the real volume")
    return ", ".join(parts)


def _whole_section(cfg: dict, res: dict) -> list[str]:
    """The control: background slices trained on whole stacks against the same on depth windows."""
    sets = [d for d in res if "whole" in res[d]]
    if not sets:
        return []
    body = []
    for d in sets:
        for lab, w in res[d]["whole"]["by_label"].items():
            row = res[d]["by_label"][lab]
            vs = w["windows_minus_whole"]["t_star"]
            pv = "n/a" if vs["p"] is None else f"{vs['p']:.2g}"
            body.append([SHORT.get(d, d), f"`{lab}`", pm(w["t_star"]), num(w["oracle"]["mean"]),
                         num(w["memorisation"]["mean"]), num((w["depth_tracking"] or {}).get("mean")),
                         pm(row["t_star"]), num(row["oracle"]["mean"]), num(row["memorisation"]["mean"]),
                         num((row["depth_tracking"] or {}).get("mean")),
                         f"{num(vs['difference'])} (p {pv})"])
    seeds, steps = res[sets[0]]["whole"]["seeds"], cfg["opt"]["steps"]
    gains = [res[d]["by_label"][lab]["oracle"]["mean"] - w["oracle"]["mean"] for d in sets
             for lab, w in res[d]["whole"]["by_label"].items()]
    at = {rd: [w["windows_minus_whole"][rd] for d in sets for w in res[d]["whole"]["by_label"].values()]
          for rd in READINGS}
    apart = {rd: sum(v["difference"] > 0 and v["p"] is not None and v["p"] < ALPHA for v in vs)
             for rd, vs in at.items()}
    real = ""
    if "real_nuclei" in sets:
        real = (f" The real volume's whole-stack control sees whole {REAL['depth']}-plane columns for {steps} steps, "
                f"{steps * REAL['depth']} planes per batch slot against its windows' {cfg['planes']}.")
    return [para(
        "**Depth windows against whole stacks.** The theory's premise for slices is that a network cannot tell a "
        "labelled slice from an unlabelled one. Trained on whole thin stacks it can: a plane sits at a fixed "
        "distance from the stack's faces, which the convolutions' zero padding makes visible, and across the "
        "training stacks each depth is labelled in a different share of them. **depth tracking** is the "
        "correlation over the planes of the training volumes between that labelled share and the network's mean "
        "output on the foreground (0: blind to depth; 1: it learnt each depth's share). The same background "
        f"annotations ({seeds} seeds), trained on whole stacks ({steps} steps) and on depth windows, Dice at t*, "
        "oracle Dice, memorisation index, depth tracking; last column: windows minus whole stacks, Welch p:"),
        table(["data", "label type", "whole: t*", "whole: oracle", "whole: memorised", "whole: depth tracking",
               "windows: t*", "windows: oracle", "windows: memorised", "windows: depth tracking",
               "windows - whole"], body),
        para(f"At t* the windows are ahead at {sum(v['difference'] > 0 for v in at['t_star'])} of "
             f"{len(at['t_star'])} points, separated at p < {ALPHA:g} (Welch, {seeds} seeds) at {apart['t_star']}; "
             f"read at each network's own level, ahead at {sum(v['difference'] > 0 for v in at['level'])}, "
             f"separated at {apart['level']} ({listing([num(v['difference']) for v in at['level']])}); at the "
             f"oracle threshold ahead at {sum(g > 0 for g in gains)} of {len(gains)} "
             f"({listing([num(g) for g in gains])})." + real)]


def _volumes_text(dname: str, r: dict) -> str:
    """'24 training and 8 test volumes of 12 x 32 x 32 voxels (NUC-like, ...)' from a data set's record."""
    v = r["volumes"]
    what = (f"the real nuclei volume the stardist wheel ships, in columns of its middle {v['shape'][0]} planes"
            if dname == "real_nuclei" else
            f"{DATA.get(dname, dname)}, imaged with a PSF 2-3 times wider along z")
    return f"{v['train']} training and {v['test']} test volumes of {' x '.join(map(str, v['shape']))} voxels ({what})"


def _locality_text(loc: dict) -> str:
    """The fitted pooling width and what it gives the background label types."""
    rng = "" if not loc["range"] else (
        f" ({num(loc['range'][0], 2)}-{num(loc['range'][1], 2)} within one standard error of that cell's mean, over "
        f"which the worst miss at the own level stays within {num(loc['max_error_over_range'])}; with the labels "
        f"pooled one by one, sigma = 0, it would be {num(loc['max_error_uniform'])}, and with the model before the "
        f"patches, q kept and no design effect, {num(loc['max_error_previous'])})")
    bound = " (a bound of the search, not a fit)" if loc["at_bound"] else ""
    des = [f"`{lab}` {v:.2f}" for lab, v in loc["design"].items() if v != 1.0 and lab != loc["on"]]
    return (f"the patches' width sigma {num(loc['sigma'], 2)} voxels on `{loc['on']}`{rng}{bound}, a design "
            f"effect of " + (listing(des) if des else "1 everywhere"))


def _n_eff_text(fit: dict) -> str:
    """A fitted n_eff, or the search's bound it reached ("at least 100000": the points ask for more)."""
    n = fit["n_eff"]
    if fit.get("at_bound"):
        return f"at least {n:.0f} (the search's upper end)" if n == max(N_EFF) else f"at most {n:.0f}"
    return f"{n:.0f}"


def _answers(cfg: dict, res: dict) -> str:
    ds = list(res)
    txt = []
    words = {"level": "read at each network's own level", "t_star": "at t*"}
    for rd in ("level", "t_star"):
        errs = {d: res[d]["max_error"][rd] for d in ds}
        within = [d for d in ds if errs[d] is not None and errs[d] <= TOLERANCE]
        txt.append(f"Inside the model (not fitted), {words[rd]}, the theory lies within "
                   + listing([f"{num(errs[d])} ({SHORT.get(d, d)})" for d in ds]) + " of the measured Dice: within "
                   f"the goal of {TOLERANCE:g} on " + (listing([SHORT.get(d, d) for d in within]) if within else
                                                       "no data set") + "; and within "
                   + listing([f"{num(res[d]['max_error_oracle'][rd])} ({SHORT.get(d, d)})" for d in ds])
                   + " of the Dice at the oracle threshold.")
    for d in ds:
        by = res[d]["by_label"]
        for rd in ("level", "t_star"):
            worst = sorted(res[d]["errors"][rd].items(), key=lambda kv: -kv[1])[:3]
            if not worst or worst[0][1] <= TOLERANCE:
                continue

            def calibration(lab: str, by=by, rd=rd) -> str:  # a network read at t* = p/2 needs its output at p D
                if _semantics(lab) != "background" or rd != "t_star":
                    return ""
                want = _fraction(lab) * by["clean"]["mean_fg"]["mean"]
                return (f"; output on objects {pm(by[lab]['mean_fg'])} over the networks, against p times the "
                        f"clean networks' {num(want)}; Dice sd over the networks {num(by[lab]['t_star']['std'])} "
                        f"at t*, {num(by[lab]['level']['std'])} at their own level, "
                        f"{num(by[lab]['oracle']['std'])} at the oracle threshold")

            txt.append(f"On {SHORT.get(d, d)}, {words[rd]}, it misses most at " + listing(
                [f"`{lab}` ({num(by[lab]['predicted'][rd] - by[lab][rd]['mean'])}; "
                 f"{num(by[lab]['predicted'][rd] - by[lab]['oracle']['mean'])} against the oracle-threshold Dice"
                 f"{calibration(lab)})" for lab, e in worst if e > TOLERANCE]) + " (theory minus measured).")
        cost = [(b_, by[s_]["level"]["mean"] - by[b_]["level"]["mean"], _welch(by[s_]["level"]["values"],
                                                                             by[b_]["level"]["values"])["p"])
                for b_, s_ in ((_name("blocks", p, "background"), _name("scattered", p, "background"))
                               for p in cfg["budgets"]) if by[b_]["in_model"]]
        if cost:
            txt.append(f"On {SHORT.get(d, d)}, read at their own level, background blocks still lose " + listing(
                [f"{num(c)} Dice to scattered voxels at the same budget (`{b_}`, Welch p "
                 f"{'n/a' if pv is None else f'{pv:.2g}'})" for b_, c, pv in cost])
                + "; a decision pooling its labels uniformly from the training set would lose nothing more than "
                  "scattered labels there; pooling them in patches of the fitted width predicts a loss of " + listing(
                [f"{num(by[s_]['predicted']['level'] - by[b_]['predicted']['level'])}"
                 for b_, s_ in ((_name("blocks", p, "background"), _name("scattered", p, "background"))
                                for p in cfg["budgets"]) if by[b_]["in_model"]]) + " (theory/README.md, step 15).")
        out = [lab for lab, row in by.items() if not row["in_model"]]
        if out:
            units = span([by[lab]["labelled_units"] for lab in out], 0)
            txt.append(f"Outside the model on {SHORT.get(d, d)} ({units} labelled units with objects expected in "
                       "the training set): " + listing(
                [f"`{lab}` {pm(by[lab]['level'])} at its own level, {pm(by[lab]['t_star'])} at t* (at the oracle "
                 f"threshold {num(by[lab]['oracle']['mean'])}, output on objects "
                 f"{num(by[lab]['mean_fg']['mean'])})" for lab in out]) + ".")
        mem = {lab: row["memorisation"]["mean"] for lab, row in by.items()
               if row.get("memorisation") and row["memorisation"]["mean"] is not None and row["in_model"]}
        if mem:
            most = {kind: max(((v, lab) for lab, v in mem.items() if _scheme(lab) == kind), default=None)
                    for kind in ("slices", "blocks", "scattered")}
            txt.append(f"The background networks' largest memorisation index on {SHORT.get(d, d)}, inside the "
                       "model: " + listing([f"{num(v)} for {kind} (`{lab}`)" for kind, m in most.items()
                                            if m is not None for v, lab in [m]]) + ".")
        pl = res[d]["planner"]["max_error"]
        if pl["level"] is not None:
            txt.append(f"The planner, calibrated on the {SHORT.get(d, d)} training volumes, lies within "
                       f"{num(pl['level'])} of every network it answers for read at its own level ({num(pl['t_star'])} "
                       "at t*).")
        h = res[d]["how_many_slices"]
        txt.append(f"**How many slices ({SHORT.get(d, d)})?** " + " ".join(
            f"{words[rd][0].upper() + words[rd][1:]}: within {TOLERANCE:g} of clean up to k = "
            f"{h[rd]['ignore']['measured']} with the unlabelled voxels ignored (theory: k = "
            f"{h[rd]['ignore']['predicted']}), up to k = {h[rd]['background']['measured']} with them stored as "
            f"background (theory: k = {h[rd]['background']['predicted']})." for rd in ("level", "t_star")))
        parts = []
        for rd in ("level", "t_star"):
            vs = res[d]["ignore_vs_background"][rd]
            wins = [k for k, v in vs.items() if v["difference"] > 0 and v["p"] is not None and v["p"] < ALPHA]
            ahead = [k for k, v in vs.items() if v["difference"] > 0]
            parts.append(f"{words[rd][0].upper() + words[rd][1:]}, ignoring is ahead in {len(ahead)} of {len(vs)} "
                         f"schemes and separated from background at p < {ALPHA:g} (Welch, {cfg['seeds']} seeds, "
                         f"uncorrected) in {len(wins)}" + (f" ({listing([f'`{k}`' for k in wins])})" if wins else "")
                         + "; the differences: " + listing([f"{num(v['difference'])} for `{k}`"
                                                            for k, v in vs.items()]) + ".")
        txt.append(f"**Ignore or background ({SHORT.get(d, d)})?** " + " ".join(parts))
    return " ".join(txt)
