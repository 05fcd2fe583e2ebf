"""Structured label errors: dilation, erosion (radius 1..4) and skeletons, on thin and thick structures.

U-Nets on ER-like (thin tubules) and NUC-like (blobs) images trained on dilated,
eroded or skeletonized masks, beside clean (CL), 10%-sampled (RCL) and random
(RL) labels. Scores: test Dice at t* (where Theorem 1 makes its
prediction) and at the oracle threshold (the paper's protocol).

The prediction (Theorem 1, ``theory.curves.pcl_label_dice`` through
``metastructure.planner.Masks.label_dice``): a network trained on a perturbed label learns the
perturbed meta-structure, so at its t* (1/2 for dilate / erode;
s/2 for skeletons, s the kept fraction) its Dice against the truth is that of the perturbed test
masks themselves, Dice(dilate_r(M), M), scaled by the clean network's Dice.
The oracle threshold can undo part of a dilation (it may cut the smooth
output higher than t*), so the network is scored both ways. For skeletons it is the skeleton's fraction field at its t*
(s/2, s the kept fraction) at ``skeleton_bandwidth``, stated in the config.
For 10% sampling it is the finite-sampling prediction of ``rcl_sampling``
(its fitted n_eff). The ordering to see: CL ~ RCL > PCL > RL, and PCL worse as
r grows, most for thin structures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metastructure import planner
from metastructure.noise import Dilate, LabelNoise

from . import _cells, registry
from ._common import base, dataset, errorbar, protocol_dice, pyplot, save_figure, spec, stats
from ._text import DATA, SHORT, listing, mean, num, para, pm, slash, span, table, verdict

PROFILES = {
    "quick": base("quick", datasets=["er", "nuclei"], radii=[1, 2], skeleton_bandwidth=1.0),
    "full": base("full", datasets=["er", "nuclei"], radii=[1, 2, 3, 4], skeleton_bandwidth=1.0),
}
REQUIRES = ("rcl_sampling",)  # its fitted n_eff predicts the 10%-sampling bar


def _types(config: dict) -> list[tuple]:
    return ([("clean",), ("sample", 0.1)] + [("dilate", r) for r in config["radii"]]
            + [("erode", r) for r in config["radii"]] + [("skeleton",), ("random", 0.3)])


def _name(t: tuple) -> str:
    """A row's name: the label type's family, then what it is ("RCL sample 10%", "PCL dilate r=2")."""
    ln = LabelNoise(*t)
    what = ln.kind if not ln.params else (f"{ln.kind} {100 * ln.params[0]:g}%" if ln.random
                                          else f"{ln.kind} r={ln.params[0]:g}")
    return f"{ln.family} {what}"


def _spec(config: dict, name: str, t: tuple, seed: int) -> dict:
    return spec(config, dataset(name, config["profile"]), *t, seed=seed)


def cells(config: dict) -> list[dict]:
    return [_spec(config, n, t, s) for n in config["datasets"] for t in _types(config) for s in range(config["seeds"])]


def _label_dice(summary: planner.Masks, t: tuple, h: float) -> float | None:
    """Theorem 1's Dice against the truth (before scaling) of label type ``t``: ``summary.label_dice`` with the
    skeleton's field at bandwidth ``h``, rounded to float32 as the records have always held it (it was
    ``metrics.dice``, which divides in float32); None for sampled and random labels (no perturbed
    meta-structure)."""
    lab = LabelNoise(*t)
    if lab.family not in ("CL", "PCL"):
        return None
    return float(np.float32(summary.label_dice(lab, bandwidth=h)))


def summarise(config: dict, store) -> dict:
    rcl = registry.experiment("rcl_sampling")
    sampled = rcl.summarise(registry.config_of("rcl_sampling", config["profile"], config["seeds"]), store)
    out = {}
    for name in config["datasets"]:
        masks = _cells.load_data(_spec(config, name, ("clean",), 0)["data"])["test"].masks
        summary = planner.Masks(masks)
        rows = {}
        for t in _types(config):
            res = [store.result(_spec(config, name, t, s)) for s in range(config["seeds"])]
            rows[_name(t)] = {"type": list(t),
                              "t_star": stats([protocol_dice(r["final"], "t_star") for r in res]),
                              "oracle": stats([r["final"]["oracle"]["dice"] for r in res]),
                              "auc": stats([r["final"]["auc"]["value"] for r in res]),
                              "label_dice": _label_dice(summary, t, config["skeleton_bandwidth"])}
        clean = rows["CL clean"]["t_star"]["mean"]
        for r in rows.values():
            r["predicted"] = None if r["label_dice"] is None else clean * r["label_dice"]
        if name in sampled and "0.1" in sampled[name]["by_ratio"]:  # finite sampling, rcl_sampling's n_eff
            i = list(sampled[name]["by_ratio"]).index("0.1")
            rows["RCL sample 10%"]["predicted"] = sampled[name]["predicted_at_ratio"][i]
            rows["RCL sample 10%"]["n_eff"] = sampled[name]["fit"]["n_eff"]
        prior = float(np.mean(masks))
        rows["RL random 30%"]["predicted"] = 2 * prior / (1 + prior)  # all foreground: the best a blind call does
        out[name] = rows
    out["_notes"] = _notes(out)
    return out


def _notes(res: dict) -> list[str]:
    """Where the network at t* departs from the prediction by more than 2 sd over seeds (and 0.02)."""
    notes = []
    for name, rows in res.items():
        off = [f"{k.replace('PCL ', '').replace('RCL ', '')} {r['t_star']['mean'] - r['predicted']:+.2f}"
               for k, r in rows.items()
               if k != "CL clean" and r["predicted"] is not None and r["t_star"]["mean"] is not None
               and abs(r["t_star"]["mean"] - r["predicted"]) > max(2 * r["t_star"]["std"], 0.02)]
        if off:
            notes.append(f"{name}: network - prediction beyond 2 sd: " + ", ".join(off))
    return notes


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    radii = cfg["radii"]
    fig, ax = plt.subplots(1, 2, figsize=(14, 4.6), constrained_layout=True)
    for j, (name, rows) in enumerate((k, v) for k, v in res.items() if not k.startswith("_")):
        col = f"C{j}"
        for op, ls, mk in (("dilate", "-", "o"), ("erode", "--", "s")):
            rs = [rows[f"PCL {op} r={r}"] for r in radii]
            errorbar(ax[0], radii, [r["t_star"] for r in rs], color=col, ls=ls, marker=mk, ms=4,
                     label=f"{name} {op}: network at t*")
            ax[0].plot(radii, [r["oracle"]["mean"] for r in rs], color=col, ls="none", marker=mk, mfc="none", ms=6)
            ax[0].plot(radii, [r["predicted"] for r in rs], color=col, ls=ls, lw=2.5, alpha=0.35,
                       label=f"{name} {op}: Theorem 1")
        ax[0].axhline(rows["CL clean"]["t_star"]["mean"], color=col, lw=0.8, ls=":")
        names = list(rows)
        x = np.arange(len(names)) + 0.4 * j - 0.2
        ax[1].bar(x, [rows[n]["t_star"]["mean"] or 0 for n in names], 0.4,
                  yerr=[rows[n]["t_star"]["std"] or 0 for n in names], color=col, alpha=0.75, capsize=2,
                  label=f"{name}: network at t*")
        ax[1].plot(x, [rows[n]["oracle"]["mean"] for n in names], "x", color=col, ms=6,
                   label=f"{name}: oracle threshold")
        ax[1].plot(x, [np.nan if rows[n]["predicted"] is None else rows[n]["predicted"] for n in names], "k_", ms=12)
    ax[0].set(xlabel="radius r (px)", ylabel="test Dice", ylim=(0, 1),
              title="(a) PCL vs radius: at t* (filled), oracle (hollow), Theorem 1 (wide); dotted: clean")
    ax[0].legend(fontsize=7)
    ax[1].set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax[1].set(ylabel="test Dice", ylim=(0, 1),
              title="(b) CL ~ RCL > PCL > RL (bars: at t*; x: oracle; dash: theory)")
    ax[1].legend(fontsize=7)
    save_figure(fig, path,
                f"pcl: U-Net {cfg['net']}, ER-like (thin) and NUC-like (thick), {cfg['seeds']} seed(s), mean +- sd"
                + "".join(f"\n{n}" for n in res.get("_notes", [])), fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "dilation, erosion and skeletons move the boundary"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    ds = cfg["datasets"]
    rows_names = list(res[ds[0]])
    header = ["labels"] + [f"{SHORT.get(d, d)} {c}" for d in ds for c in ("t*", "predicted", "oracle")]
    rows = []
    for n in rows_names:
        line = [n]
        for d in ds:
            r = res[d][n]
            line += [pm(r["t_star"]) if mean(r["t_star"]) is not None else "no t*",
                     num(r["predicted"]) if r["predicted"] is not None else "n/a", pm(r["oracle"])]
        rows.append(line)
    out = [para(
        "Theorem 1 says a network trained on perturbed masks learns the perturbed meta-structure, so at its t* its "
        "Dice is that of the perturbed test masks times the clean network's (the prediction; for RL it is chance, "
        "calling everything foreground). Measured at t* against predicted, and at the oracle threshold, on "
        + listing([DATA.get(d, d) for d in ds]) + f" images (radii r = {listing([str(r) for r in cfg['radii']])} "
        "px):"), table(header, rows)]

    label = {n: LabelNoise(*res[ds[0]][n]["type"]) for n in rows_names}

    def fam(n: str) -> str:
        return label[n].family

    txt = ""
    dil = [(d, n) for d in ds for n in rows_names if isinstance(label[n], Dilate)]
    if dil:
        diff = [mean(res[d][n]["t_star"]) - res[d][n]["predicted"] for d, n in dil]
        sds = [res[d][n]["t_star"]["std"] for d, n in dil]
        beyond = sum(x > 2 * s for x, s in zip(diff, sds, strict=True))
        sign = "beat" if min(diff) > 0 else ("fall short of" if max(diff) < 0 else "straddle")
        txt += (f"The networks {sign} the prediction for dilation by {span(diff)} (network minus prediction), "
                f"against a spread over seeds of sd <= {num(max(sds))}: beyond twice the sd in {beyond} of "
                f"{len(dil)} cases")
        txt += ("; the learned boundary lies slightly inside the dilated one (a network's output follows the "
                "image's edges a little)." if sign == "beat" else ".")
    other = [(d, n) for d in ds for n in rows_names
             if fam(n) == "PCL" and not isinstance(label[n], Dilate) and mean(res[d][n]["t_star"]) is not None]
    if other:
        diff = [abs(mean(res[d][n]["t_star"]) - res[d][n]["predicted"]) for d, n in other]
        txt += (f" For erosion and the skeleton, measured and predicted differ by at most {num(max(diff))}.")
    gone = {d: [n for n in rows_names if fam(n) == "PCL" and mean(res[d][n]["t_star"]) == 0] for d in ds}
    for d, names in gone.items():
        if names:
            txt += (f" On {SHORT.get(d, d)} " + listing([f"`{n.replace('PCL ', '')}`" for n in names])
                    + f" find nothing at t* (the perturbed labels keep little or nothing of the objects: label Dice "
                    f"{span(res[d][n]['label_dice'] for n in names)}).")
    out.append(para(txt))

    # the ordering CL > RCL > PCL > RL
    parts, holds = [], {}
    for d in ds:
        r = res[d]
        cl = [mean(r[n]["t_star"]) for n in rows_names if fam(n) == "CL"]
        rcl = [mean(r[n]["t_star"]) for n in rows_names if fam(n) == "RCL"]
        pcl = [(n, mean(r[n]["t_star"])) for n in rows_names if fam(n) == "PCL"]
        pcl_max = max((v for _, v in pcl if v is not None), default=None)
        rl = [n for n in rows_names if fam(n) == "RL"]
        chance = max(r[n]["predicted"] for n in rl) if rl else 0.0
        below_rl = [n for n, v in pcl if v is None or v <= chance]
        faults = []
        if min(cl) <= max(rcl):
            faults.append("RCL reaches CL")
        if pcl_max is not None and min(rcl) <= pcl_max:
            faults.append("some PCL reaches RCL")
        if below_rl:
            faults.append(listing([f"`{n.replace('PCL ', '')}`" for n in below_rl]) + " fall to or below RL's chance")
        holds[d] = not faults
        s = (f"{SHORT.get(d, d)}: CL {slash(cl)}, RCL {slash(rcl)}, PCL {span(v for _, v in pcl)}, RL no t* "
             f"(oracle {slash([mean(r[n]['oracle']) for n in rl])}, chance {slash([r[n]['predicted'] for n in rl])})")
        if faults:
            s += ", where " + listing(faults)
        parts.append((d, s + "."))
    txt = ("At t*, the ordering CL > RCL > PCL > RL "
           + ("holds " + verdict(holds, SHORT) if any(holds.values()) else "holds on no data set")
           + ". " + " ".join(t for _, t in sorted(parts, key=lambda x: not holds[x[0]])))
    clean = {d: next(mean(res[d][n]["t_star"]) for n in rows_names if fam(n) == "CL") for d in ds}
    rel = {d: {n: mean(res[d][n]["t_star"]) / clean[d] for n in rows_names if fam(n) == "PCL"} for d in ds}
    avg = {d: sum(v.values()) / len(v) for d, v in rel.items()}
    if len(ds) == 2 and all(rel[d] for d in ds):
        lo, hi = sorted(ds, key=avg.__getitem__)
        exc = [n.replace("PCL ", "") for n in rel[lo] if n in rel[hi] and rel[lo][n] > rel[hi][n]]
        txt += (f" Relative to clean, PCL costs more on {DATA.get(lo, lo)} structures (t* Dice over the clean "
                f"network's, averaged over the PCL variants: {num(avg[lo])} against {num(avg[hi])})"
                + (", except " + listing([f"`{n}`" for n in exc]) + f", which costs more on {SHORT.get(hi, hi)}"
                   if exc else "") + ".")
    lift = [(mean(res[d][n]["oracle"]) - mean(res[d][n]["t_star"]), d, n)
            for d in ds for n in rows_names if fam(n) == "PCL" and mean(res[d][n]["t_star"]) is not None]
    if lift:
        big = max(lift)
        txt += (f" The oracle threshold hides part of the damage: over the PCL variants it scores "
                f"{span(x for x, _, _ in lift)} above t* (most for {SHORT.get(big[1], big[1])} "
                f"`{big[2].replace('PCL ', '')}`: {num(mean(res[big[1]][big[2]]['t_star']))} at t*, "
                f"{num(mean(res[big[1]][big[2]]['oracle']))} at the oracle).")
    out.append(para(txt))
    return out
