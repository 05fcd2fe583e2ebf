"""Annotation practice on volumes: how many slices, and ignore or background (theory/README.md, step 15).

3-D U-Nets trained on one fixed annotation per training volume of NUC-like and
ER-like stacks (``data.nuclei`` / ``data.er`` with ``ndim=3``: an anisotropic
PSF, shot noise), at equal label budgets: every k-th slice fully labelled
(``noise.Slices``), random 8-voxel cubes (``noise.Blocks``) or scattered voxels
(``noise.Scattered``), each with the unlabelled voxels stored as background
(read at t* = p/2) or ignored (read at 1/2). Against clean labels, and against
a 2-D U-Net trained on the labelled slices alone and run slice by slice.

Beside the synthetic stacks, the real nuclei volume the stardist wheel ships
(``data.real_nuclei(ndim=3)``): its 16 x 16 columns, two thirds for training.

The prediction beside each point is the clean Dice times
``theory.curves.annotated_dice`` on the test volumes' 1-px fraction fields,
for labels that come in sheets or blocks at their q (``planner.Masks.overlap``
of the training masks: ``curves.lattice_overlap`` for slices, one class of
planes labelled per volume; ``curves.cluster_overlap`` of the independent
blocks).
n_eff is fitted per data set and per semantics (background,
ignore: networks may pool differently, as the planner measures each label
family's memorisation apart) on the scattered-voxel cells only; slices and
blocks are then predicted, not fitted. Cells whose training set holds fewer
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

VERSION = 3  # bump when compute's results change: the runner versions every annotation cell with it
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
              "spacings": [4], "budgets": [0.25], "slicewise": [1, 4]},
    "full": {"profile": "full", "datasets": ["nuclei", "er", "real_nuclei"], "size": 32, "depth": 12, "n_train": 24,
             "n_test": 8, "net": [8, 16, 32], "opt": {"steps": 300, "batch": 2, "lr": 0.003}, "seeds": 5,
             "spacings": [2, 3, 5, 10, 50], "budgets": [0.1, 0.02], "slicewise": [1, 10, 50],
             # the background networks' t* misses, trained twice as long: does the t* Dice close on the oracle's?
             "longer": {"steps": 600, "labels": ["clean", "slices 10"], "datasets": ["nuclei", "er"], "seeds": 3}},
}
REQUIRES = ()
SEMANTICS = noise.UNLABELLED  # ("background", "ignore")


# the real volume (``data.real_nuclei(ndim=3)``, 31 x 61 x 57, 51 nuclei): its 16 x 16 columns, two thirds for
# training, a third for testing, the middle 28 planes (the U-Net's two poolings need a depth divisible by 4)
REAL = {"tile": 16, "split": [2 / 3, 0.0, 1 / 3], "depth": 28}


def _dataset(config: dict, name: str) -> dict:
    if name == "real_nuclei":
        return {"name": name, **REAL}
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
    return out


def _spec(config: dict, name: str, labels: str, seed: int, dim: int = 3) -> dict:
    return {"kind": "annotation", "label": f"{name} {labels} {dim}-D s{seed}", "data": _dataset(config, name),
            "labels": labels, "dim": dim, "net": list(config["net"]), "opt": dict(config["opt"]), "seed": seed}


def _slicewise(k: int) -> str:
    return "clean" if k == 1 else f"slices {k} ignore"


def _recipe(config: dict) -> dict:
    """The planner's recipe that trains as this experiment's 3-D networks do (whole volumes, augmented, ReLU)."""
    opt = config["opt"]
    return {"widths": list(config["net"]), "activation": "relu", "steps": opt["steps"], "batch_size": opt["batch"],
            "learning_rate": opt["lr"], "augment": True, "crop": None}


def _calibration_spec(config: dict, name: str) -> dict:
    return {"kind": "annotation", "role": "calibration", "label": f"{name} planner calibration",
            "data": _dataset(config, name), "recipe": _recipe(config), "repeats": 1, "seed": 0}


def cells(config: dict) -> list[dict]:
    return [_spec(config, n, lab, s) for n in config["datasets"] for lab in _labels(config)
            for s in range(config["seeds"])] + \
           [_spec(config, n, _slicewise(k), s, dim=2) for n in config["datasets"] for k in config["slicewise"]
            for s in range(config["seeds"])] + \
           [_calibration_spec(config, n) for n in config["datasets"]] + \
           [_longer_spec(config, n, lab, s) for n, lab, s in _longer_cells(config)]


def _longer_cells(config: dict) -> list[tuple[str, str, int]]:
    lg = config.get("longer")
    return [] if not lg else [(n, lab, s) for n in lg["datasets"] for lab in lg["labels"] for s in range(lg["seeds"])]


def _longer_spec(config: dict, name: str, labels: str, seed: int) -> dict:
    """A 3-D network of the main grid trained ``config["longer"]["steps"]`` steps instead."""
    spec = _spec(config, name, labels, seed)
    spec["opt"]["steps"] = config["longer"]["steps"]
    spec["label"] += f" {spec['opt']['steps']} steps"
    return spec


def compute(spec: dict) -> dict:
    """One network: the annotation drawn once (key: the seed), a U-Net trained on it, scored on the test volumes.

    3-D: ``train.fit`` on the volumes with the annotation (augmented by the 16 symmetries that keep z), and, with
    the unlabelled voxels stored as background, ``metrics.label_fit``'s memorisation index on the training
    volumes (the mean output on the labelled foreground minus on the unlabelled: 0 for a network that learnt
    the density p D, 1 for one that learnt the annotation). 2-D: a
    U-Net of the same widths on the labelled slices alone (every slice for clean labels), run on every slice of
    the test volumes. Scores: ``metrics.evaluate`` pooled over the test volumes (t*: the label type's, 1/2 with
    ignore), the labelled share of the training foreground, and how many slices the 2-D network saw. An
    annotation whose offsets miss every volume (k beyond the depth) leaves the 2-D network nothing to train on:
    Dice 0, threshold None.
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
        r = train.fit(jax.random.key(seed), tr.images, y, model=nets.unet(widths=tuple(spec["net"]), ndim=3),
                      batch_size=opt["batch"], label_type=ln, **kw)
        probs = np.asarray(r.predict(te.images))
        # how far it learnt this one annotation rather than its density: the memorisation index on the training
        # volumes (labels stored as background only; ignored voxels hold no wrong label to learn)
        out["memorisation"] = None if np.any(y == -1) else metrics.label_fit(
            np.asarray(r.predict(tr.images)), tr.masks, labels=y)["memorisation"]
    else:
        whole = np.all((y != -1).reshape(y.shape[:2] + (-1,)), axis=2)  # the labelled slices, (N, D)
        x2, y2 = tr.images[whole], y[whole]
        out["slices"] = int(x2.shape[0])
        if not out["slices"]:  # every offset past every volume's depth: no label, no network, nothing found
            nothing = {"dice": 0.0, "threshold": None}
            return {**out, "t_star": nothing, "oracle": nothing, "fixed_0.5": nothing, "mean_fg": 0.0}
        r = train.fit(jax.random.key(seed), x2, y2, model=nets.unet(widths=tuple(spec["net"])),
                      batch_size=4 * opt["batch"], **kw)
        flat = te.images.reshape((-1,) + te.images.shape[2:])
        probs = np.asarray(r.predict(flat)).reshape(te.masks.shape)
    scores = metrics.evaluate(probs, te.masks, label_type=ln, protocols=("fixed_0.5", "t_star", "oracle"))
    out.update({p: {"dice": scores[p]["dice"], "threshold": scores[p]["threshold"]}
                for p in ("t_star", "oracle", "fixed_0.5")})
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
            rows[lab] = {"dice": stats([r["t_star"]["dice"] for r in res]),
                         "oracle": stats([r["oracle"]["dice"] for r in res]),
                         "mean_fg": stats([r["mean_fg"] for r in res]),
                         "labelled_fg": stats([r["labelled_fg"] for r in res]),
                         "memorisation": None if all(r.get("memorisation") is None for r in res) else
                         stats([r.get("memorisation") for r in res]),
                         "values": [r["t_star"]["dice"] for r in res]}
        slicewise = {}
        for k in config["slicewise"]:
            res = [store.result(_spec(config, dname, _slicewise(k), s, dim=2)) for s in range(config["seeds"])]
            slicewise[str(k)] = {"dice": stats([r["t_star"]["dice"] for r in res]),
                                 "slices": stats([r["slices"] for r in res])}
        clean = rows["clean"]["dice"]["mean"]

        def predict(name: str, n_eff: float, base: float = clean, fields=fields, pm_train=pm_train) -> float:
            return _predict(name, n_eff, base, fields, None if name == "clean" else pm_train.overlap(name))

        fits = {}
        for sem in SEMANTICS:  # n_eff per semantics, on the scattered cells of that semantics only
            fit_on = [lab for lab in rows if _scheme(lab) == "scattered" and _semantics(lab) == sem]
            best = None
            for n in N_EFF:
                err = float(np.sqrt(np.mean([(predict(lab, n) - rows[lab]["dice"]["mean"]) ** 2 for lab in fit_on])))
                if best is None or err < best["rmse"]:
                    best = {"n_eff": n, "rmse": err, "on": fit_on}
            best["at_bound"] = best["n_eff"] in (min(N_EFF), max(N_EFF))  # a bound of the search, not a fit
            fits[sem] = best
        cal = planner.Calibration.from_dict(store.result(_calibration_spec(config, dname)))
        for lab, row in rows.items():
            n_eff = fits[_semantics(lab)]["n_eff"]
            row["predicted"] = predict(lab, n_eff)
            row["fitted"] = lab in fits[_semantics(lab)]["on"]
            row["labelled_units"] = None if lab == "clean" else pm_train.labelled_units(lab)
            row["in_model"] = lab == "clean" or row["labelled_units"] >= planner.MIN_LABELLED_UNITS
            try:
                row["planner"] = planner.predict(pm_train, noise.LabelNoise.parse(lab, ndim=3), calibration=cal,
                                                 n_images=len(train_masks)).dice
            except ValueError:  # too few labelled units: the planner refuses
                row["planner"] = None
        clean2 = slicewise["1"]["dice"]["mean"] if "1" in slicewise else None
        for k, row in slicewise.items():
            row["predicted"] = None if clean2 is None else predict(_slicewise(int(k)), fits["ignore"]["n_eff"],
                                                                   clean2)
        ks = np.unique(np.round(np.geomspace(1, max(config["spacings"]) * 1.5, 30)).astype(int))
        curve = {sem: [predict("clean" if k == 1 else _name("slices", 1 / k, sem), fits[sem]["n_eff"]) for k in ks]
                 for sem in SEMANTICS}
        units_k = {str(k): pm_train.labelled_units(f"slices {k}") for k in ks}
        errors = {lab: abs(row["predicted"] - row["dice"]["mean"]) for lab, row in rows.items()
                  if lab != "clean" and not row["fitted"] and row["in_model"]}
        oracle_errors = {lab: abs(rows[lab]["predicted"] - rows[lab]["oracle"]["mean"]) for lab in errors}
        planner_errors = {lab: abs(row["planner"] - row["dice"]["mean"]) for lab, row in rows.items()
                          if row["planner"] is not None}
        # ignore against background at equal budgets (Welch over seeds)
        versus = {}
        for lab in rows:
            if _semantics(lab) == "ignore":
                bg = lab.removesuffix(" ignore")
                a, b = rows[lab]["values"], rows[bg]["values"]
                p = float(sps.ttest_ind(a, b, equal_var=False).pvalue) if len(a) > 1 and np.std(a + b) > 0 else None
                versus[bg] = {"difference": float(np.mean(a) - np.mean(b)), "p": p}
        out[dname] = {"volumes": {"train": len(train_masks), "test": len(test_masks),
                                  "shape": list(train_masks.shape[1:])},
                      "by_label": rows, "slicewise": slicewise, "fit": fits,
                      "overlap": {lab: pm_train.overlap(lab) for lab in rows
                                  if lab != "clean" and _semantics(lab) == "background"},
                      "curve_k": ks.tolist(), "curve": curve, "curve_units": units_k, "errors": errors,
                      "max_error": max(errors.values()) if errors else None,
                      "max_error_oracle": max(oracle_errors.values()) if oracle_errors else None,
                      "ignore_vs_background": versus,
                      "planner": {"calibration": {"n_eff": cal.n_eff, "clean_dice": cal.clean_dice,
                                                  "source": cal.source, "n_train": cal.n_train},
                                  "errors": planner_errors,
                                  "max_error": max(planner_errors.values()) if planner_errors else None},
                      "how_many_slices": _how_many(config, rows, curve, ks, clean, units_k)}
        if dname in (config.get("longer") or {}).get("datasets", ()):
            lg = config["longer"]
            longer = {}
            for lab in lg["labels"]:
                res = [store.result(_longer_spec(config, dname, lab, s)) for s in range(lg["seeds"])]
                longer[lab] = {"dice": stats([r["t_star"]["dice"] for r in res]),
                               "oracle": stats([r["oracle"]["dice"] for r in res]),
                               "mean_fg": stats([r["mean_fg"] for r in res])}
            out[dname]["longer"] = {"steps": lg["steps"], "seeds": lg["seeds"], "by_label": longer}
    return out


def _predict(name: str, n_eff: float, base: float, fields: np.ndarray, q: float | None) -> float:
    """The clean Dice ``base`` times ``curves.annotated_dice`` on the test fields at n_eff and the label type's q
    (``planner.Masks.overlap`` of the training masks); ``base`` itself for clean labels."""
    if name == "clean":
        return base
    return base * float(curves.annotated_dice(fields, n_eff, _fraction(name), unlabelled=_semantics(name),
                                              overlap=q)[0])


def _how_many(config: dict, rows: dict, curve: dict, ks: np.ndarray, clean: float, units: dict) -> dict:
    """Per semantics: the largest measured spacing k whose Dice is within TOLERANCE of clean (each smaller
    spacing too), and the largest k of the predicted curve that is, among the spacings inside the model."""
    out = {}
    for sem in SEMANTICS:
        meas = None
        for k in sorted(config["spacings"]):
            if rows[_name("slices", 1 / k, sem)]["dice"]["mean"] < clean - TOLERANCE:
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
    fig, ax = plt.subplots(2, n, figsize=(6.2 * n, 8.4), constrained_layout=True, squeeze=False)
    marks = {"background": ("C0", "o"), "ignore": ("C1", "s")}
    for j, (dname, r) in enumerate(res.items()):
        a = ax[0, j]
        rows = r["by_label"]
        clean = rows["clean"]["dice"]
        a.axhspan(clean["mean"] - clean["std"], clean["mean"] + clean["std"], color="0.85", lw=0)
        a.axhline(clean["mean"], color="0.4", lw=1, label=f"clean 3-D: {clean['mean']:.3f}")
        for sem, (col, mk) in marks.items():
            ks = cfg["spacings"]
            errorbar(a, ks, [rows[_name("slices", 1 / k, sem)]["dice"] for k in ks], color=col, marker=mk, ms=5,
                     ls="none", label=f"3-D, unlabelled = {sem} (t* = {'1/(2k)' if sem == 'background' else '1/2'})")
            a.plot(np.asarray(ks) * (1.06 if sem == "ignore" else 0.94),
                   [rows[_name("slices", 1 / k, sem)]["oracle"]["mean"] for k in ks], color=col, marker=mk, ms=5,
                   mfc="none", ls="none", label=f"the same at the best threshold (oracle), {sem}")
            inside = [r["curve_units"][str(k)] >= planner.MIN_LABELLED_UNITS for k in r["curve_k"]]
            kin = [k for k, ok in zip(r["curve_k"], inside, strict=True) if ok]
            kout = [k for k, ok in zip(r["curve_k"], inside, strict=True) if not ok]
            a.plot(kin, r["curve"][sem][:len(kin)], color=col, lw=1.2,
                   label=f"predicted, {sem} (n_eff {_n_eff_text(r['fit'][sem]).split(' (')[0]})")
            if kout:
                start = max(len(kin) - 1, 0)
                a.plot(r["curve_k"][start:], r["curve"][sem][start:], color=col, lw=1, ls=":")
        cut = [k for k in r["curve_k"] if r["curve_units"][str(k)] < planner.MIN_LABELLED_UNITS]
        if cut:
            a.axvspan(cut[0], max(r["curve_k"]), color="C3", alpha=0.07, lw=0,
                      label=f"< {planner.MIN_LABELLED_UNITS} labelled slices with objects: outside the model")
        sw = r["slicewise"]
        ks2 = [int(k) for k in sw if int(k) > 1]
        if ks2:
            errorbar(a, ks2, [sw[str(k)]["dice"] for k in ks2], color="C2", marker="^", ms=6, ls="none",
                     label="2-D U-Net on the labelled slices")
        a.set(xscale="log", xlabel="slice spacing k (every k-th slice labelled; p = 1/k)", ylabel="test Dice",
              ylim=(0, 1), title=f"{DATA.get(dname, dname)} volumes: how many slices?")
        a.legend(fontsize=7, loc="lower left")
        b = ax[1, j]
        names = [lab for lab in rows if lab != "clean" and _scheme(lab) != "slices"] + \
            [_name("slices", p, sem) for p in cfg["budgets"] for sem in SEMANTICS
             if _name("slices", p, sem) in rows]
        names = sorted(names, key=lambda s: (-_fraction(s), _scheme(s), _semantics(s)))
        x = np.arange(len(names))
        for i, lab in enumerate(names):
            col = marks[_semantics(lab)][0]
            st = rows[lab]["dice"]
            b.bar(i, st["mean"], yerr=st["std"], color=col, alpha=0.35 if rows[lab]["fitted"] else 0.7,
                  capsize=2, hatch=None if rows[lab]["in_model"] else "//")
            b.plot([i - 0.4, i + 0.4], [rows[lab]["predicted"]] * 2, color="k", lw=1.5,
                   ls="-" if rows[lab]["in_model"] else ":")
            if rows[lab]["planner"] is not None:
                b.plot(i, rows[lab]["planner"], marker="D", color="C2", ms=5, ls="none")
        b.axhline(clean["mean"], color="0.4", lw=1)
        b.set_xticks(x, [f"{_scheme(s)} {pct(_fraction(s))}\n{_semantics(s)}" for s in names], fontsize=6,
                     rotation=90)
        b.set(ylim=(0, 1), ylabel="test Dice",
              title="bars: measured (pale: fitted; hatched: outside the model)\nblack: theory; green: planner",
              )
        b.title.set_fontsize(9)
    save_figure(fig, path, f"annotation: one fixed annotation per volume, {cfg['seeds']} seed(s), mean +- sd\n"
                           "blue: unlabelled = background, orange: ignored", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "Annotating volumes: how many slices, ignore or background"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document, from its record."""
    cfg, res = record["config"], record["results"]
    ds = list(res)
    opt = cfg["opt"]
    out = [para(
        f"3-D U-Nets ({'-'.join(map(str, cfg['net']))}, {opt['steps']} steps of {opt['batch']} volumes, augmented) "
        "on " + listing([_volumes_text(d, res[d]) for d in ds]) + ", each trained on "
        f"one fixed annotation: every k-th slice (k = {listing([str(k) for k in cfg['spacings']])}), random "
        f"{BLOCK}-voxel cubes or scattered voxels at budgets of {listing([pct(p) for p in cfg['budgets']])} of the "
        "voxels, the unlabelled voxels stored as background (read at t* = p/2) or ignored (read at 1/2); "
        f"{cfg['seeds']} seed(s) each (a seed draws the network and the annotation). Dice on the test volumes "
        "(pooled), mean +- sd, at t* (**measured**) and at the best threshold (**oracle**); **memorised**: with "
        "the unlabelled voxels stored as background, the networks' memorisation index on their training volumes "
        "(`metrics.label_fit`: the mean output on the labelled foreground minus on the unlabelled, 0 for the "
        "density p D, 1 for the annotation itself). **theory**: the clean "
        "Dice times `theory.curves.annotated_dice` "
        "(theory/README.md, step 15), n_eff fitted per semantics on the scattered-voxel cells alone (marked "
        "fitted), slices and blocks at their units' q (slices at one random offset per volume are a lattice, "
        "`curves.lattice_overlap`; blocks independent units, `curves.cluster_overlap`). "
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
            theory = num(row["predicted"]) + (" (fitted)" if row["fitted"] else "")
            if not row["in_model"]:
                theory = f"outside ({num(row['predicted'])})"
            mem = row.get("memorisation")
            body.append([f"`{lab}`", pct(_fraction(lab)), units, pm(row["dice"]), num(row["oracle"]["mean"]),
                         "" if mem is None or mem["mean"] is None else num(mem["mean"]), theory,
                         num(row["planner"]) if row["planner"] is not None else "refused"])
        sw = r["slicewise"]
        for k, row in sw.items():
            if int(k) > 1:
                body.append([f"2-D U-Net on `{_slicewise(int(k))}`'s slices", pct(1 / int(k)),
                             f"{row['slices']['mean']:.0f} slices", pm(row["dice"]), "", "", num(row["predicted"]),
                             ""])
        f = r["fit"]
        pl = r["planner"]
        out.append(para(
            f"**{DATA.get(dname, dname)}**: clean 3-D {pm(rows['clean']['dice'])}; a 2-D U-Net on every slice "
            f"{pm(sw['1']['dice']) if '1' in sw else 'n/a'}. n_eff fitted {_n_eff_text(f['background'])} "
            f"(background, rms {num(f['background']['rmse'])}) and {_n_eff_text(f['ignore'])} (ignore, rms "
            f"{num(f['ignore']['rmse'])}); the planner's calibration: clean Dice "
            f"{num(pl['calibration']['clean_dice'])}, n_eff {pl['calibration']['n_eff']:.0f} "
            f"({pl['calibration']['source']}, {pl['calibration']['n_train']} training volumes):"))
        out.append(table(["label type", "budget", "units", "measured", "oracle", "memorised", "theory", "planner"],
                         body))
    out.append(para(_answers(cfg, res)))
    return out


def _volumes_text(dname: str, r: dict) -> str:
    """'24 training and 8 test volumes of 12 x 32 x 32 voxels (NUC-like, ...)' from a data set's record."""
    v = r["volumes"]
    what = (f"the real nuclei volume the stardist wheel ships, in columns of its middle {v['shape'][0]} planes"
            if dname == "real_nuclei" else
            f"{DATA.get(dname, dname)}, imaged with a PSF 2-3 times wider along z")
    return f"{v['train']} training and {v['test']} test volumes of {' x '.join(map(str, v['shape']))} voxels ({what})"


def _n_eff_text(fit: dict) -> str:
    """A fitted n_eff, or the search's bound it reached ("at least 100000": the points ask for more)."""
    n = fit["n_eff"]
    if fit.get("at_bound"):
        return f"at least {n:.0f} (the search's upper end)" if n == max(N_EFF) else f"at most {n:.0f}"
    return f"{n:.0f}"


def _answers(cfg: dict, res: dict) -> str:
    ds = list(res)
    txt = []
    errs = {d: res[d]["max_error"] for d in ds}
    within = [d for d in ds if errs[d] is not None and errs[d] <= TOLERANCE]
    txt.append("Inside the model (not fitted), the theory lies within "
               + listing([f"{num(errs[d])} ({SHORT.get(d, d)})" for d in ds]) + " of the measured Dice: within "
               f"the goal of {TOLERANCE:g} on " + (listing([SHORT.get(d, d) for d in within]) if within else
                                                   "no data set") + "; and within "
               + listing([f"{num(res[d]['max_error_oracle'])} ({SHORT.get(d, d)})" for d in ds])
               + " of the Dice at the oracle threshold.")
    for d in ds:
        worst = sorted(res[d]["errors"].items(), key=lambda kv: -kv[1])[:3]
        if worst and worst[0][1] > TOLERANCE:
            by = res[d]["by_label"]

            def calibration(lab: str, by=by) -> str:  # a network read at t* = p/2 needs its output at p D
                if _semantics(lab) != "background":
                    return ""
                want = _fraction(lab) * by["clean"]["mean_fg"]["mean"]
                return (f"; output on objects {pm(by[lab]['mean_fg'])} over the networks, against p times the "
                        f"clean networks' {num(want)}")

            txt.append(f"On {SHORT.get(d, d)} it misses most at " + listing(
                [f"`{lab}` ({num(by[lab]['predicted'] - by[lab]['dice']['mean'])}; "
                 f"{num(by[lab]['predicted'] - by[lab]['oracle']['mean'])} against the oracle-threshold Dice"
                 f"{calibration(lab)})" for lab, e in worst if e > TOLERANCE]) + " (theory minus measured).")
        out = [lab for lab, row in res[d]["by_label"].items() if not row["in_model"]]
        if out:
            units = span([res[d]["by_label"][lab]["labelled_units"] for lab in out], 0)
            txt.append(f"Outside the model on {SHORT.get(d, d)} ({units} labelled units with objects expected in "
                       "the training set): " + listing(
                [f"`{lab}` {pm(res[d]['by_label'][lab]['dice'])} (at the oracle threshold "
                 f"{num(res[d]['by_label'][lab]['oracle']['mean'])}, output on objects "
                 f"{num(res[d]['by_label'][lab]['mean_fg']['mean'])})" for lab in out]) + ".")
        mem = {lab: row["memorisation"]["mean"] for lab, row in res[d]["by_label"].items()
               if row.get("memorisation") and row["memorisation"]["mean"] is not None and row["in_model"]}
        if mem:
            most = {kind: max(((v, lab) for lab, v in mem.items() if _scheme(lab) == kind), default=None)
                    for kind in ("slices", "blocks", "scattered")}
            txt.append(f"The background networks' largest memorisation index on {SHORT.get(d, d)}, inside the "
                       "model: " + listing([f"{num(v)} for {kind} (`{lab}`)" for kind, m in most.items()
                                            if m is not None for v, lab in [m]]) + ".")
        pl = res[d]["planner"]
        if pl["max_error"] is not None:
            txt.append(f"The planner, calibrated on the {SHORT.get(d, d)} training volumes, lies within "
                       f"{num(pl['max_error'])} of every network it answers for.")
        h = res[d]["how_many_slices"]
        if "longer" in res[d]:
            lg = res[d]["longer"]
            txt.append(f"Trained {lg['steps']} steps instead of {cfg['opt']['steps']} ({lg['seeds']} seeds) on "
                       f"{SHORT.get(d, d)}: " + listing(
                           [f"`{lab}` {pm(row['dice'])} at t*, {num(row['oracle']['mean'])} at the oracle "
                            f"threshold (at {cfg['opt']['steps']}: {pm(res[d]['by_label'][lab]['dice'])}, "
                            f"{num(res[d]['by_label'][lab]['oracle']['mean'])}), output on objects "
                            f"{pm(row['mean_fg'])}" for lab, row in lg["by_label"].items()]) + ".")
        txt.append(f"**How many slices ({SHORT.get(d, d)})?** Within {TOLERANCE:g} of clean up to k = "
                   f"{h['ignore']['measured']} measured with the unlabelled voxels ignored (theory: k = "
                   f"{h['ignore']['predicted']}), up to k = {h['background']['measured']} with them stored as "
                   f"background (theory: k = {h['background']['predicted']}).")
        vs = res[d]["ignore_vs_background"]
        wins = [k for k, v in vs.items() if v["difference"] > 0 and v["p"] is not None and v["p"] < ALPHA]
        ahead = [k for k, v in vs.items() if v["difference"] > 0]
        txt.append(f"**Ignore or background ({SHORT.get(d, d)})?** Ignoring is ahead in {len(ahead)} of {len(vs)} "
                   f"schemes and separated from background at p < {ALPHA:g} (Welch, {cfg['seeds']} seeds, "
                   f"uncorrected) in {len(wins)}" + (f" ({listing([f'`{k}`' for k in wins])})" if wins else "")
                   + "; the differences: " + listing([f"{num(v['difference'])} for `{k}`" for k, v in vs.items()])
                   + ".")
    return " ".join(txt)
