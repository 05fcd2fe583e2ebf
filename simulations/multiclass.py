"""Multi-class scenes: mIoU vs sampling and symmetric flipping past (M-1)/M, at M = 4 and M = 19.

U-Nets with softmax cross-entropy on synthetic natural-like scenes, one fixed
noisy draw per image. Sampling keeps a fraction p of every class's pixels and
marks the rest ``ignore`` (``sample_classes``) or, as an annotation tool
stores them, gives the rest a class of its own, *void*, which the network
then outputs too (``sample_void``: T = [p I | (1-p) 1], M x (M+1)); symmetric
flipping with rate e moves a pixel to each other class with probability
e/(M-1). Predictions: sampling with ``ignore`` keeps the clean mIoU; with
void, the plain argmax is void wherever p < 1/2 (mIoU 0) and the clean one
for p > 1/2, while the least-squares inverse of Theorem 2, (T^T)^+, is the
argmax over the M real classes and keeps the clean mIoU; flipping
(``theory.curves.miou_symmetric_flip``): the argmax stays right while the
eigenvalue 1 - e M/(M-1) of T is positive, collapses at e = (M-1)/M and picks
a wrong class beyond; its one free parameter, the effective number of pixels a
decision pools (n_eff), is fitted per M and reported. Beyond the collapse,
undoing T (Theorem 2) recovers the classes: both argmaxes are shown.

M = 4: scenes of 10 Voronoi regions. M = 19 (the ``many`` block, the
paper's Cityscapes count): street-scene-like maps of 6 large regions and 24
small objects (``data.scenes(objects=24)``), classes about equally frequent
(Cityscapes' are not), collapse at 18/19 = 0.947. The paper's Cityscapes
numbers (clean 64.8, sampled 10-50% 64.5-64.8, flipped 50-90% 64.6-64.7
mIoU) come from a secondary summary of the paper, not its text.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from theory import curves

from ._common import OPT, base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import g, listing, mean, num, para, pct, pm, span, steps_note

M = 4
MANY = {"num_classes": 19, "regions": 6, "objects": 24}  # the many-class scenes' layout
TOL = 0.02  # "about the clean mIoU": within this much (mIoU as a fraction)
PROFILES = {
    "quick": base("quick", ratios=[0.1], rates=[0.5, 0.9], net=[8, 16], n_train=16,
                  many={**MANY, "n_train": 16, "ratios": [0.1], "rates": [0.9], "opt": dict(OPT["quick"])}),
    # 19 classes take longer to learn: 4x the steps on 4x the images (the same ~12 passes as M = 4)
    "full": base("full", ratios=[0.5, 0.1], rates=[0.3, 0.5, 0.7, 0.8, 0.9], n_train=128,
                 many={**MANY, "n_train": 512, "ratios": [0.5, 0.1], "rates": [0.5, 0.8, 0.9, 0.93],
                       "opt": {**OPT["full"], "steps": 800}}),
}
REQUIRES = ()
N_EFF = tuple(np.geomspace(2, 4096, 34).round(2))


def _data(config: dict, many: bool = False) -> dict:
    if many:
        mc = config["many"]
        return dataset("scenes", config["profile"], num_classes=mc["num_classes"], n_train=mc["n_train"],
                       regions=mc["regions"], objects=mc["objects"])
    return dataset("scenes", config["profile"], num_classes=M, n_train=config["n_train"])


def _spec(config: dict, kind: str, rate: float | None, seed: int, many: bool = False) -> dict:
    args = () if kind == "clean" else (rate,)
    m = config["many"]["num_classes"] if many else M
    return spec(config, _data(config, many), kind, *args, num_classes=m, seed=seed,
                opt=config["many"]["opt"] if many else None)


def _settings(config: dict, many: bool = False) -> list[tuple]:
    c = config["many"] if many else config
    return ([("clean", None)] + [("sample_classes", p) for p in c["ratios"]]
            + ([("sample_void", p) for p in c["ratios"]] if many else [])
            + [("symmetric", e) for e in c["rates"]])


def cells(config: dict) -> list[dict]:
    return ([_spec(config, k, r, s) for k, r in _settings(config) for s in range(config["seeds"])]
            + [_spec(config, k, r, s, True) for k, r in _settings(config, True) for s in range(config["seeds"])])


def _relative(rates, m: int, n_eff: float) -> np.ndarray:
    """``miou_symmetric_flip`` at ``rates`` over its value at e = 0: the prediction as a fraction of the clean
    mIoU (what the measured clean mIoU scales)."""
    return curves.miou_symmetric_flip(rates, m, n_eff=n_eff) / curves.miou_symmetric_flip(0.0, m, n_eff=n_eff)


def _fit(rates: np.ndarray, measured: np.ndarray, m: int) -> dict:
    """n_eff of ``miou_symmetric_flip`` (over :data:`N_EFF`), scaled so that e = 0 gives the measured clean
    mIoU ``measured[0]``, by least squares."""
    best = None
    for n in N_EFF:
        pred = measured[0] * _relative(rates, m, n)
        err = float(np.sqrt(np.mean((pred - measured) ** 2)))
        if best is None or err < best["rmse"]:
            best = {"n_eff": float(n), "rmse": err}
    return best


def _block(config: dict, store, many: bool) -> dict:
    """One M's rows, fit and curve."""
    c = config["many"] if many else config
    m = c["num_classes"] if many else M
    rows = {}
    for k, r in _settings(config, many):
        res = [store.result(_spec(config, k, r, s, many)) for s in range(config["seeds"])]
        rows[f"{k} {r}" if r is not None else "clean"] = {
            "kind": k, "rate": r,
            "miou": stats([x["final"]["miou"] for x in res]),
            "miou_corrected": stats([x["final"].get("miou_corrected", x["final"]["miou"]) for x in res]),
        }
    clean = rows["clean"]["miou"]["mean"]
    rates = np.array([0.0] + [float(e) for e in c["rates"]])
    measured = np.array([clean] + [rows[f"symmetric {e}"]["miou"]["mean"] for e in c["rates"]])
    best = _fit(rates, measured, m)
    grid = np.linspace(0, 0.97 if m < 10 else 0.985, 60)
    curve = clean * _relative(grid, m, best["n_eff"])
    for row in rows.values():  # each row's prediction: the clean mIoU, the flip curve, void's plain argmax
        if row["kind"] == "symmetric":
            row["predicted"] = float(clean * _relative(float(row["rate"]), m, best["n_eff"]))
        elif row["kind"] == "sample_void":
            p = float(row["rate"])
            row["predicted"] = clean if p > 0.5 else 0.0 if p < 0.5 else None  # a tie at 1/2: not predicted
            row["predicted_corrected"] = clean
        else:
            row["predicted"] = clean
    out = {"num_classes": m, "n_train": c["n_train"], "rows": rows, "fit": best, "curve_rate": grid.tolist(),
           "curve": curve.tolist(), "collapse": (m - 1) / m}
    if many:
        out["layout"] = {k: c[k] for k in ("regions", "objects")}
        out["scale"] = _needed(c, rows, best, m)
    return out


def _needed(c: dict, rows: dict, fit: dict, m: int) -> dict:
    """At each flip rate below the collapse, the n_eff the prediction needs to come within :data:`TOL` of the
    clean mIoU (None: not on the :data:`N_EFF` grid's extension to 1e7), and the training images that averaging
    alone (n_eff proportional to N, theory/README.md step 14 without memorisation) would need for it."""
    clean = rows["clean"]["miou"]["mean"]
    grid = np.geomspace(2, 1e7, 400)
    out = {}
    for e in c["rates"]:
        if e >= (m - 1) / m:
            continue
        ratio = np.array([_relative(float(e), m, n) for n in grid])
        ok = np.nonzero(clean * ratio >= clean - TOL)[0]
        need = float(grid[ok[0]]) if ok.size else None
        out[f"{e:g}"] = {"n_eff_needed": need,
                         "n_train_needed": None if need is None else float(c["n_train"] * need / fit["n_eff"])}
    return out


def summarise(config: dict, store) -> dict:
    out = _block(config, store, False)
    out["many"] = _block(config, store, True)
    out["paper_cityscapes"] = {"clean": 64.8, "sampled_10_50": [64.5, 64.8], "flipped_50_90": [64.6, 64.7]}
    return out


def _flip_panel(ax, blk: dict, rates: list[float]) -> None:
    rows = blk["rows"]
    sym = [rows["clean"]] + [rows[f"symmetric {e}"] for e in rates]
    xs = [0.0] + list(rates)
    errorbar(ax, xs, [r["miou"] for r in sym], color="C1", marker="o", label="network, argmax")
    errorbar(ax, xs, [r["miou_corrected"] for r in sym], color="C2", marker="s", ls=":",
             label="network, argmax of (T^T)^-1 output (Theorem 2)")
    ax.plot(blk["curve_rate"], blk["curve"], color="k", lw=1.2,
            label=f"theory, argmax (fitted n_eff = {blk['fit']['n_eff']:.0f} px)")
    ax.axvline(blk["collapse"], color="gray", ls=":", lw=1)
    ax.set(xlabel="symmetric flip rate e", ylabel="test mIoU", ylim=(0, 1),
           title=f"M = {blk['num_classes']}: symmetric flipping, collapse at (M-1)/M = {blk['collapse']:.3f}")


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    rows = res["rows"]
    fig, ax = plt.subplots(2, 2, figsize=(13, 9), constrained_layout=True)
    ax = ax.ravel()
    ratios = [1.0] + cfg["ratios"]
    errorbar(ax[0], ratios, [rows["clean"]["miou"]] + [rows[f"sample_classes {p}"]["miou"] for p in cfg["ratios"]],
             color="C0", marker="o", label="network (rest of the pixels: ignore)")
    ax[0].axhline(rows["clean"]["miou"]["mean"], color="k", ls="--", lw=1, label="prediction: the clean mIoU")
    ax[0].set(xscale="log", xlabel="sampling ratio p", ylabel="test mIoU", ylim=(0, 1),
              title=f"(a) M = {M}: sampling ({res.get('n_train', cfg.get('n_train'))} training images)")
    _flip_panel(ax[1], res, cfg["rates"])
    ax[1].set_title("(b) " + ax[1].get_title())
    many, mc = res.get("many"), cfg.get("many")
    if many:
        r19 = many["rows"]
        ps = [1.0] + mc["ratios"]
        clean19 = r19["clean"]["miou"]
        errorbar(ax[2], ps, [clean19] + [r19[f"sample_classes {p}"]["miou"] for p in mc["ratios"]], color="C0",
                 marker="o", label="unlabelled = ignore")
        errorbar(ax[2], ps, [clean19] + [r19[f"sample_void {p}"]["miou"] for p in mc["ratios"]], color="C3",
                 marker="v", label="unlabelled = void: argmax over M + 1")
        errorbar(ax[2], ps, [clean19] + [r19[f"sample_void {p}"]["miou_corrected"] for p in mc["ratios"]],
                 color="C2", marker="s", ls=":", label="void: argmax over the M classes, (T^T)^+ (Theorem 2)")
        ax[2].axhline(clean19["mean"], color="k", ls="--", lw=1, label="prediction: the clean mIoU")
        pv = [(p, r19[f"sample_void {p}"]["predicted"]) for p in mc["ratios"]]
        pv = [(p, v) for p, v in pv if v is not None]
        if pv:
            ax[2].plot(*zip(*pv, strict=True), "x", color="C3", ms=10, mew=2,
                       label="prediction, void argmax: 0 for p < 1/2")
        ax[2].set(xscale="log", xlabel="sampling ratio p", ylabel="test mIoU", ylim=(-0.02, 1),
                  title=f"(c) M = {many['num_classes']}: sampling ({many['n_train']} training images)")
        _flip_panel(ax[3], many, mc["rates"])
        ax[3].set_title("(d) " + ax[3].get_title())
    for i, a in enumerate(ax):
        if a.has_data():  # the 19-class panels' points lie low: their legends go above them
            a.legend(fontsize=8, loc="lower left" if i < 2 else "upper right")
    save_figure(fig, path, f"multiclass: synthetic scenes, U-Net {'-'.join(map(str, cfg['net']))}, one fixed draw, "
                f"{cfg['seeds']} seed(s), mean +- sd", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "mIoU under sampling and symmetric flipping"


def _verdict(row: dict, clean: dict) -> tuple[str, float | None]:
    """``("holds", None)`` when the row's mean mIoU is within :data:`TOL` of clean; ``("fails", p)`` when it is
    further below and Welch's test separates it from clean (p < 0.05); else ``("undecided", p)``."""
    m, c = mean(row["miou"]), mean(clean)
    if m is not None and m >= c - TOL:
        return "holds", None
    p = _welch(clean, row["miou"])
    return ("fails" if p is not None and p < 0.05 else "undecided"), p


def _paper_claims(many: dict) -> list[tuple[str, dict]]:
    """The rows of the 19-class block that test the paper's Cityscapes claims: sampling 10-50% (ignore) and
    flipping 50-90%, each with its name."""
    return [(f"sampling {pct(r['rate'])}" if r["kind"] == "sample_classes" else f"flipping e = {g(r['rate'])}", r)
            for r in many["rows"].values()
            if (r["kind"] == "sample_classes" and 0.1 <= r["rate"] <= 0.5)
            or (r["kind"] == "symmetric" and 0.5 <= r["rate"] <= 0.9)]


def _welch(a: dict, b: dict) -> float | None:
    """Welch's two-sided p of the difference of two stats dicts' means (scipy's ``ttest_ind_from_stats``);
    None with fewer than two values on a side."""
    from scipy import stats as sps

    if min(a["n"], b["n"]) < 2:
        return None
    return float(sps.ttest_ind_from_stats(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"],
                                          equal_var=False).pvalue)


def _chance(m: int) -> float:
    """The mIoU of a uniformly random argmax over m balanced classes: a / (2 - a) with a = 1/m."""
    return (1 / m) / (2 - 1 / m)


def _decidable(blk: dict) -> bool:
    """Whether the clean network is clear of chance (above twice the chance mIoU), so that "within
    :data:`TOL` of clean" says something."""
    return mean(blk["rows"]["clean"]["miou"]) > 2 * _chance(blk["num_classes"])


def not_reproduced(record: dict, records: dict) -> list[str]:
    """The results document's "not reproduced" entry: the paper's Cityscapes claims (19 classes: sampling
    10-50% and flipping 50-90% at about the clean mIoU) that the 19-class scenes do not hold within
    :data:`TOL`."""
    res = record["results"]
    many, paper = res.get("many"), res.get("paper_cityscapes")
    if not many or not paper or not _decidable(many):
        return []
    clean = many["rows"]["clean"]["miou"]
    miss = [(name, r) for name, r in _paper_claims(many) if _verdict(r, clean)[0] == "fails"]
    if not miss:
        return []
    need = many.get("scale", {})
    lo, hi = paper["flipped_50_90"]
    text = (f"Cityscapes, 19 classes, sampling 10-50% and flipping 50-90% at about the clean mIoU (flipped "
            f"{g(lo)}-{g(hi)} against {g(paper['clean'])}; from a secondary summary of the paper): on "
            f"{many['num_classes']}-class synthetic scenes with {many['n_train']} training images, "
            + listing([f"{name} gives {pm(r['miou'])}" for name, r in miss])
            + f" against clean {pm(many['rows']['clean']['miou'])}, more than {g(TOL)} below.")
    far = [(e, v) for e, v in need.items() if v["n_eff_needed"] and v["n_eff_needed"] > many["fit"]["n_eff"] and any(
        r["kind"] == "symmetric" and f"{r['rate']:g}" == e for _, r in miss)]
    if far:
        text += (" The flip prediction puts the cause in the data size: within " + g(TOL) + " of clean it needs "
                 + listing([f"n_eff {v['n_eff_needed']:.0f} at e = {e} (about {v['n_train_needed']:.0f} images)"
                            for e, v in far])
                 + f", if n_eff grows in proportion to the images, against n_eff {many['fit']['n_eff']:.0f} fitted "
                 "here: untested at that scale, not refuted.")
    return [text]


def _flip_text(blk: dict) -> str:
    rows, collapse = blk["rows"], blk["collapse"]
    sym = [r for r in rows.values() if r["kind"] == "symmetric"]
    pre = [r for r in sym if r["rate"] < collapse]
    post = [r for r in sym if r["rate"] > collapse]
    text = "symmetric flipping " + ", ".join(f"e = {g(r['rate'])}: {pm(r['miou'])} (predicted "
                                             f"{num(r.get('predicted'))})" for r in pre)
    if post:
        text += ("; past the collapse, where the argmax picks a wrong class, "
                 + ", ".join(f"e = {g(r['rate'])}: {pm(r['miou'])}" for r in post))
    text += (f". The prediction (`theory.curves.miou_symmetric_flip`, n_eff = {blk['fit']['n_eff']:.0f} fitted) has "
             f"rms error {num(blk['fit']['rmse'])}.")
    if post:
        better = all(mean(r["miou_corrected"]) > mean(r["miou"]) for r in post)
        text += (" Undoing T (Theorem 2: argmax of (T^T)^-1 q) " + ("recovers " if better else "gives ")
                 + listing([f"{num(mean(r['miou_corrected']))} at e = {g(r['rate'])}" for r in post]) + ".")
    return text


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    res, cfg = record["results"], record["config"]
    rows, collapse = res["rows"], res["collapse"]
    m = round(1 / (1 - collapse))
    clean = rows.get("clean")
    samp = [r for r in rows.values() if r["kind"] == "sample_classes"]
    steps = steps_note(record, default_steps)
    n_train = res.get("n_train", cfg.get("n_train"))
    text = (f"Scenes of M = {m} classes (so the collapse (M-1)/M is at {g(collapse)}), {n_train} training images, "
            "softmax cross-entropy" + (f", {steps}" if steps else "") + ". mIoU: clean "
            + (pm(clean["miou"]) if clean else "n/a") + "; sampling each class (the rest ignored) "
            + ", ".join(f"{pct(r['rate'])}: {pm(r['miou'])}" for r in samp) + "; " + _flip_text(res))
    out = [para(text)]
    many = res.get("many")
    if many:
        r19 = many["rows"]
        c19 = mean(r19["clean"]["miou"])
        ign = [r for r in r19.values() if r["kind"] == "sample_classes"]
        void = [r for r in r19.values() if r["kind"] == "sample_void"]
        text = (f"**{many['num_classes']} classes**, the paper's Cityscapes count: street-scene-like maps of "
                f"{many['layout']['regions']} large regions and {many['layout']['objects']} small objects "
                f"(classes about equally frequent, unlike Cityscapes'), {many['n_train']} training images, "
                f"{cfg['many']['opt']['steps']} steps of batch {cfg['many']['opt']['batch']}, collapse "
                f"at {num(many['collapse'])}. Clean {pm(r19['clean']['miou'])}. Sampling with the unlabelled pixels "
                "ignored: " + ", ".join(f"{pct(r['rate'])} {pm(r['miou'])}" for r in ign)
                + "; the same labels with the unlabelled pixels stored as a void class (the network outputs "
                f"{many['num_classes'] + 1} classes): plain argmax "
                + ", ".join(f"{pct(r['rate'])} {pm(r['miou'])} (predicted "
                            + ("none: a tie at p = 1/2" if r["predicted"] is None else num(r["predicted"])) + ")"
                            for r in void)
                + ", argmax over the real classes, the least-squares inverse of Theorem 2, "
                + ", ".join(f"{pct(r['rate'])} {pm(r['miou_corrected'])}" for r in void)
                + " (predicted with unlimited data: the clean mIoU). ")
        ign_at = {r["rate"]: r for r in ign}
        tests = [(v, ign_at[v["rate"]], _welch(ign_at[v["rate"]]["miou"], v["miou_corrected"]))
                 for v in void if v["rate"] in ign_at]
        split = [p is not None and p < 0.05 and mean(i["miou"]) > mean(v["miou_corrected"]) for v, i, p in tests]
        decided = [t for t, ok in zip(tests, split, strict=True) if ok]
        if decided:
            text += ("So store unlabelled pixels as ignore, not as a class: "
                     + listing([f"at {pct(v['rate'])} the right read-out of void scores "
                                f"{num(mean(i['miou']) - mean(v['miou_corrected']))} below the same labels ignored "
                                f"(Welch p = {p:.2g})" for v, i, p in decided])
                     + f", {cfg['seeds']} seeds each")
            rest = [t for t, ok in zip(tests, split, strict=True) if not ok]
            if rest:
                text += ("; " + listing([f"at {pct(v['rate'])} the gap "
                                         f"{num(mean(i['miou']) - mean(v['miou_corrected']))} is not separated from "
                                         f"the seeds' spread (p = {p:.2g})" for v, i, p in rest]))
            text += (" (our reading: the void class takes most of the output, and the real classes are told apart "
                     "by what is left of it). ")
        flips = _flip_text(many)
        text += flips[0].upper() + flips[1:]
        claims = _paper_claims(many)
        verdicts = [(name, *_verdict(r, r19["clean"]["miou"])) for name, r in claims]
        held = [name for name, v, _ in verdicts if v == "holds"]
        missed = [f"{name} (Welch p = {p:.2g} against clean)" for name, v, p in verdicts if v == "fails"]
        open_ = [f"{name} (p = {p:.2g})" for name, v, p in verdicts if v == "undecided"]
        if not _decidable(many):
            text += (f" The clean network is within twice chance ({num(c19)} against chance "
                     f"{num(_chance(many['num_classes']))}): too small a run to test the paper's claim.")
        else:
            text += (f" Against the paper's claim (within {g(TOL)} of clean): "
                     + (f"holds for {listing(held)}" if held else "holds for none of its settings")
                     + (f"; does not for {listing(missed)}" if missed else "")
                     + (f"; more than {g(TOL)} below but not separated from clean with {cfg['seeds']} seeds for "
                        f"{listing(open_)}" if open_ else "") + ".")
        need = {e: v for e, v in many.get("scale", {}).items()
                if v["n_eff_needed"] and v["n_eff_needed"] > many["fit"]["n_eff"]}
        if need:
            text += (f" The fitted n_eff ({many['fit']['n_eff']:.0f} at {many['num_classes']} classes against "
                     f"{res['fit']['n_eff']:.0f} at {m}) says how little each decision pools here, with a clean "
                     f"network at {num(c19)} (chance {num(_chance(many['num_classes']))}). What the flip prediction "
                     f"asks of the data: to come within {g(TOL)} of clean, "
                     + listing([f"e = {e} needs n_eff {v['n_eff_needed']:.0f} (about {v['n_train_needed']:.0f} "
                                "images)" for e, v in need.items()])
                     + f" of this size ({_data(cfg, True)['size']}^2), if n_eff grew in proportion to the images "
                     "as the averaging term of theory/README.md step 14 does without memorisation. A prediction at "
                     "that scale, not a measurement.")
        out.append(para(text))
    paper = res.get("paper_cityscapes")
    if paper:
        def rng(k: str) -> str:
            mt = re.search(r"_(\d+)_(\d+)$", k)
            return f" {mt.group(1)}-{mt.group(2)}%" if mt else ""
        bits = []
        for k, v in paper.items():
            label = k.split("_")[0]
            bits.append(f"{label}{rng(k)} " + (span(v, 1) if isinstance(v, list) else num(v, 1)))
        out.append(para("The paper's Cityscapes (from a secondary summary of the paper, not its text, which we could "
                        "not read): " + ", ".join(bits) + " mIoU."))
    return out
