"""Feature similarity (linear CKA) of every layer to clean-trained networks', per label type.

U-Nets on NUC-like images trained on clean, sampled, flipped, dilated, eroded,
skeleton and random labels. Each layer's features on probe images (fixed
pixel positions of the first test images) are compared with linear CKA to
those of every clean-trained network of *another* seed (the same seed shares
the initialisation), and a network's score is that CKA averaged over the
references and the layers. Every pair of clean networks gives the floor of
seed-to-seed variation. The ordering to see, the paper's feature-map analysis
as we read its text (arXiv 2103.11594): RCL ~ CL > PCL > RL. It is decided by
a permutation test over networks (:func:`scipy.stats.permutation_test`, the
difference of the family means of the scores): RCL > PCL one-sided, RCL
against CL two-sided. (With one seed a network would have no clean reference
of another seed: both profiles use at least two.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats as sps

from metastructure import metrics
from metastructure.noise import LabelNoise

from ._common import base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import listing, mean, num, para, pm, span

TYPES = [("clean",), ("sample", 0.1), ("flip", 0.3, 0.3), ("dilate", 2), ("erode", 2), ("skeleton",),
         ("random", 0.3)]
# graded: RCL at two strengths of each kind, PCL at radius 1-3 both ways (issue 28)
FULL_TYPES = [("clean",), ("sample", 0.1), ("sample", 0.01), ("flip", 0.3, 0.3), ("flip", 0.45, 0.45),
              ("dilate", 1), ("dilate", 2), ("dilate", 3), ("erode", 1), ("erode", 2), ("erode", 3),
              ("skeleton",), ("random", 0.3)]
PERMUTATIONS = 9999  # resamples of each permutation test (seeded: the record is reproducible)
ALPHA = 0.05  # the level at which a test decides
# two seeds even in the quick profile: a network's clean references are the clean networks of the other seeds
PROFILES = {"quick": base("quick", types=TYPES, seeds=2),
            "full": base("full", types=FULL_TYPES, seeds=8, net=[16, 32, 64], probes=16)}
REQUIRES = ()


def _name(t) -> str:
    return " ".join([t[0], *(f"{v:g}" for v in t[1:2])])


def _family(t) -> str:
    """The paper's family of a configured label type (``("flip", 0.3, 0.3)``: RCL)."""
    return LabelNoise(*t).family


def _spec(config: dict, t, seed: int) -> dict:
    extra = {"probes": config["probes"]} if "probes" in config else {}
    return spec(config, dataset("nuclei", config["profile"]), *t, seed=seed, features=True, **extra)


def cells(config: dict) -> list[dict]:
    return [_spec(config, t, s) for t in config["types"] for s in range(config["seeds"])]


def pval(t: dict) -> str:
    """A test's p value as the text writes it: ``p = 0.03``, or at the resolution of its resamples ``p <= 1e-04``
    (the least value its ``resamples`` can give: observed among them, counted once)."""
    floor = 1 / (t["resamples"] + 1)
    return f"p <= {floor:.0e}" if t["p"] <= floor * (1 + 1e-9) else f"p = {t['p']:.2g}"


def _above(t: dict | None) -> bool:
    """Whether a one-sided test's first group lies above its second at :data:`ALPHA` (False without a test)."""
    return t is not None and t["p"] < ALPHA and t["difference"] > 0


def permutation(a, b, *, alternative: str) -> dict:
    """The difference of means ``mean(a) - mean(b)`` of two groups of per-network scores and its
    permutation p value (:func:`scipy.stats.permutation_test`, :data:`PERMUTATIONS` resamples,
    ``default_rng(0)``; ``alternative`` ``"greater"`` or ``"two-sided"``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    res = sps.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                               vectorized=True, n_resamples=PERMUTATIONS, alternative=alternative,
                               rng=np.random.default_rng(0))
    return {"difference": float(a.mean() - b.mean()), "p": float(res.pvalue), "alternative": alternative,
            "n": [int(a.size), int(b.size)], "resamples": PERMUTATIONS}


def summarise(config: dict, store) -> dict:
    n = config["seeds"]
    ref = [store.arrays(_spec(config, ("clean",), s)) for s in range(n)]
    layers = [k[5:] for k in ref[0] if k.startswith("feat_")]

    def cka(a, s):  # (references, layers): CKA of arrays a (seed s) to the clean networks of the other seeds
        return np.array([[metrics.linear_cka(a[f"feat_{lay}"], ref[r][f"feat_{lay}"]) for lay in layers]
                         for r in range(n) if r != s])

    out = {"layers": layers, "types": {}}
    for t in config["types"]:
        # (networks, layers): each network's CKA averaged over its references
        per_net = [cka(ref[s] if t == ("clean",) else store.arrays(_spec(config, t, s)), s).mean(0)
                   for s in range(n)]
        res = [store.result(_spec(config, t, s)) for s in range(n)]
        scores = np.mean(per_net, axis=1)
        out["types"][_name(t)] = {
            "family": _family(t),
            "cka": [stats(v) for v in np.array(per_net).T],
            "mean_cka": stats(scores),
            "scores": [float(v) for v in scores],
            "oracle_dice": stats([max(r["final"]["oracle"]["dice"], r["final"]["oracle_inverted"]["dice"])
                                  for r in res]),
        }
    floor = np.array([[metrics.linear_cka(ref[i][f"feat_{lay}"], ref[j][f"feat_{lay}"]) for lay in layers]
                      for i in range(n) for j in range(i + 1, n)])  # every pair of clean networks, once
    out["floor"] = {"pairs": len(floor), "cka": [stats(v) for v in floor.T], "mean_cka": stats(floor.mean(1))}
    fam = {f: [v for r in out["types"].values() if r["family"] == f for v in r["scores"]]
           for f in ("CL", "RCL", "PCL", "RL")}
    out["tests"] = {}
    if fam["RCL"] and fam["PCL"]:
        out["tests"]["rcl_vs_pcl"] = permutation(fam["RCL"], fam["PCL"], alternative="greater")
        # the other direction, so that an ordering the data reverse is told from one they leave undecided
        out["tests"]["pcl_vs_rcl"] = permutation(fam["PCL"], fam["RCL"], alternative="greater")
    if fam["RCL"] and len(fam["CL"]) > 1:
        out["tests"]["rcl_vs_cl"] = permutation(fam["RCL"], fam["CL"], alternative="two-sided")
    t, rev = out["tests"].get("rcl_vs_pcl"), out["tests"].get("pcl_vs_rcl")
    if t is not None and not _above(t):
        turned = _above(rev)
        out["note"] = (f"RCL > PCL {'reversed' if turned else 'not decided'} by CKA: RCL minus PCL "
                       f"{t['difference']:+.3f}, one-sided permutation {pval(rev if turned else t)} "
                       f"{'for PCL > RCL ' if turned else ''}over {t['n'][0]} + {t['n'][1]} networks")
    return out


FAMILY_COLOURS = {"CL": "Greys", "RCL": "Blues", "PCL": "Oranges", "RL": "Purples"}


def _colours(res: dict) -> dict[str, tuple]:
    """One colour a label type: its family's colour map, graded within the family."""
    plt = pyplot()
    out = {}
    for fam, cmap in FAMILY_COLOURS.items():
        names = [k for k, r in res["types"].items() if r["family"] == fam]
        for i, k in enumerate(names):
            out[k] = plt.get_cmap(cmap)(0.85 - 0.45 * i / max(len(names) - 1, 1))
    return out


def _test_line(res: dict) -> str:
    parts = []
    for key, label in (("rcl_vs_pcl", "RCL - PCL"), ("rcl_vs_cl", "RCL - CL")):
        t = res.get("tests", {}).get(key)
        if t:
            parts.append(f"{label} {t['difference']:+.3f} ({pval(t)}, {t['alternative']})")
    return "; ".join(parts)


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    col = _colours(res)
    fig, ax = plt.subplots(1, 3, figsize=(18, 5), constrained_layout=True, gridspec_kw={"width_ratios": [3, 3, 2]})
    x = np.arange(len(res["layers"]))
    fl = res["floor"]
    lo = [c["mean"] - c["std"] for c in fl["cka"]]
    hi = [c["mean"] + c["std"] for c in fl["cka"]]
    ax[0].fill_between(x, lo, hi, color="0.6", alpha=0.3, lw=0, label=f"floor: {fl['pairs']} clean pairs, +- sd")
    for name, r in res["types"].items():
        errorbar(ax[0], x, r["cka"], color=col[name], marker="o", ms=3, label=name)
    ax[0].set_xticks(x, res["layers"])
    ax[0].set(xlabel="layer", ylabel="linear CKA to the clean networks of other seeds", ylim=(0, 1.02),
              title="(a) per layer, mean +- sd over networks")
    ax[0].legend(fontsize=7, ncol=2)
    names = list(res["types"])
    xs = np.arange(len(names))
    f = res["floor"]["mean_cka"]
    ax[1].axhspan(f["mean"] - f["std"], f["mean"] + f["std"], color="0.6", alpha=0.3, lw=0, label="floor +- sd")
    for i, k in enumerate(names):
        v = res["types"][k]["scores"]
        jitter = np.linspace(-0.2, 0.2, len(v)) if len(v) > 1 else [0.0]
        ax[1].plot(i + np.asarray(jitter), v, "o", ms=4, color=col[k], alpha=0.8)
        ax[1].plot([i - 0.3, i + 0.3], [np.mean(v)] * 2, "-", color="k", lw=1)
    ax[1].set_xticks(xs, names, rotation=45, ha="right", fontsize=8)
    ax[1].set(ylabel="a network's CKA (mean over layers and references)", ylim=(0, 1.02),
              title="(b) every network; " + (_test_line(res) or "no test"))
    ax[1].title.set_fontsize(9)
    ax[1].legend(fontsize=8, loc="lower left")
    m = [res["types"][k]["mean_cka"] for k in names]
    d = [res["types"][k]["oracle_dice"] for k in names]
    for i, k in enumerate(names):
        ax[2].errorbar([m[i]["mean"]], [d[i]["mean"]], xerr=[m[i]["std"]], yerr=[d[i]["std"]], fmt="o",
                       color=col[k], capsize=3, label=k)
    ax[2].set(xlabel="mean CKA over layers", ylabel="test Dice (oracle)", xlim=(0, 1.02), ylim=(0, 1),
              title="(c) similar features, similar segmentation")
    save_figure(fig, path, f"feature_maps: U-Net {cfg['net']} on NUC-like images, {cfg['seeds']} seeds, "
                f"{cfg.get('probes', 2)} probe images" + (f"\n{res['note']}" if res.get("note") else ""),
                fontsize=10)


# ------------------------------------------------------------------ the results document
def _decided(res: dict) -> bool | None:
    """Whether RCL > PCL is decided at :data:`ALPHA` (None: no test in the record)."""
    t = res.get("tests", {}).get("rcl_vs_pcl")
    return None if t is None else _above(t)


def not_reproduced(record: dict, records: dict) -> list[str]:
    """The results document's "not reproduced" entry: the RCL ~ CL > PCL feature ordering, when the
    permutation test does not put RCL above PCL."""
    res, cfg = record["results"], record["config"]
    if _decided(res) is not False:
        return []
    t, rev = res["tests"]["rcl_vs_pcl"], res["tests"].get("pcl_vs_rcl")
    reversed_ = _above(rev)
    return [f"the feature ordering RCL ~ CL > PCL (the paper's feature-map analysis as we read its text; its "
            f"figure was not available to us): the RCL networks' CKA to clean networks is not above the PCL "
            f"networks' (difference {t['difference']:+.3f}, one-sided permutation {pval(t)} over "
            f"{t['n'][0]} + {t['n'][1]} networks, {cfg['seeds']} seeds, {cfg.get('probes', 2)} probe images)"
            + (f"; the data reverse it (PCL above RCL, {pval(rev)}): one fixed noisy draw moves a "
               "network's features further from clean networks' than a moved boundary does, while the oracle "
               f"Dice spans {span(_dice(res, 'RCL'))} for the RCL types and {span(_dice(res, 'PCL'))} for the "
               "PCL types." if reversed_ else ".")]


def _dice(res: dict, family: str) -> list[float | None]:
    """The mean oracle Dice of each label type of ``family``."""
    return [mean(r["oracle_dice"]) for r in res["types"].values() if r["family"] == family]


TITLE = "how similar are the learned features?"


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    res, cfg = record["results"], record["config"]
    types = res["types"]
    order = sorted(types, key=lambda n: -types[n]["mean_cka"]["mean"])
    fl = res["floor"]
    text = (f"Linear CKA of every layer's features ({', '.join(res['layers'])}) to the clean networks of the other "
            f"seeds, U-Net {'-'.join(map(str, cfg['net']))}, NUC-like images, features at fixed pixels of "
            f"{cfg.get('probes', 2)} probe images, {cfg['seeds']} seeds a label type; a network's score is its mean "
            f"over layers and references. The floor, every pair of clean networks ({fl['pairs']} "
            f"pair{'s' if fl['pairs'] > 1 else ''}): "
            f"{pm(fl['mean_cka'])}. "
            "Mean score by label type: "
            + ", ".join(f"`{n}` {pm(types[n]['mean_cka'])}" for n in order) + ".")
    rl = [n for n in types if types[n]["family"] == "RL"]
    rest = [n for n in types if types[n]["family"] != "RL"]
    if rl and rest:
        low = max(types[n]["mean_cka"]["mean"] for n in rl)
        nxt = min(types[n]["mean_cka"]["mean"] for n in rest)
        text += (f" Random labels stand apart, lowest ({num(low)} against at least {num(nxt)} for the others), as "
                 "we read the paper's feature-map analysis (its figure was not available to us)." if low < nxt else
                 f" Random labels are not the lowest ({num(low)} against {num(nxt)}), unlike the paper's "
                 "feature-map analysis as we read it (its figure was not available to us).")
    tests = res.get("tests", {})
    if "rcl_vs_pcl" in tests:
        t = tests["rcl_vs_pcl"]
        ok = _decided(res)
        rev = tests.get("pcl_vs_rcl")
        reversed_ = _above(rev)
        text += (f" The test (a permutation test over networks of the difference of family means, "
                 f"{t['resamples']} resamples, decided at p < {ALPHA:g}): RCL minus PCL {t['difference']:+.3f}, "
                 f"one-sided {pval(t)} over {t['n'][0]} RCL and {t['n'][1]} PCL networks, so RCL > PCL is "
                 + ("reproduced by the features" if ok else
                    f"not reproduced: the data reverse it, PCL above RCL with one-sided {pval(rev)}"
                    if reversed_ else "not reproduced by the features (undecided either way)") + ".")
    if "rcl_vs_cl" in tests:
        t = tests["rcl_vs_cl"]
        text += (f" RCL minus CL {t['difference']:+.3f}, two-sided {pval(t)} "
                 + ("(RCL's features are measurably further from clean networks than clean networks are from "
                    "each other)" if t["p"] < ALPHA and t["difference"] < 0 else
                    "(RCL's features measurably closer to clean networks than the floor)" if t["p"] < ALPHA else
                    "(RCL not separated from the clean-to-clean floor)") + ".")
    below = [n for n in types if fl["pairs"] > 1 and types[n]["family"] in ("RCL", "PCL")
             and types[n]["mean_cka"]["mean"] < fl["mean_cka"]["mean"] - 2 * fl["mean_cka"]["std"]]
    if below:
        text += f" More than two floor sds below the floor's mean: {listing([f'`{n}`' for n in below])}."
    dice = {f: _dice(res, f) for f in ("RCL", "PCL")}
    if dice["RCL"] and dice["PCL"]:
        dsep = min(dice["RCL"]) > max(dice["PCL"])
        text += (f" The segmentations themselves: oracle Dice {span(dice['RCL'])} for the RCL types against "
                 f"{span(dice['PCL'])} for the PCL types ({'separated' if dsep else 'overlapping'}).")
    return [para(text)]
