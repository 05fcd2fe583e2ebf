"""Theory curves beside Monte Carlo: the kernel model of a network, predicted and measured.

Every curve of :mod:`theory.curves` is drawn with points measured by
:mod:`metastructure` on pixel grids: a label map is corrupted (fixed keys), its
gaussian fraction field (bandwidth h, the model of a network's receptive field)
is thresholded at t*, and Dice / accuracy against the clean mask is averaged over
draws (mean +- sd). The trained networks' counterparts are the rcl_sampling, rcl_flipping, pcl
and multiclass experiments.

Panels: (a) Dice vs sampling ratio for stripes of width 3, 6, 12 px (h = 3);
(b) Dice vs symmetric flip rate f = b, with the collapse at f + b = 1 and the
inversion beyond; (c) Dice vs dilation / erosion radius for a stripe and a disk,
and the skeleton; (d) mIoU vs symmetric multi-class flip rate (M = 4).
Writes ``OUT/theory_curves.png`` and ``OUT/theory_curves.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np

from metastructure import density, metrics, noise, ntm
from theory import curves

from ._common import pyplot, save_figure
from ._text import bullet, g, listing, nearest, num, para, span

PROFILES = {
    "quick": {"bandwidth": 3.0, "draws": 10, "seed": 0, "widths": [3, 6, 12], "multiclass_bandwidth": 2.0},
    "full": {"bandwidth": 3.0, "draws": 40, "seed": 0, "widths": [3, 6, 12], "multiclass_bandwidth": 2.0},
}
REQUIRES = ()


def stripe(w: int, shape=(48, 96)) -> np.ndarray:
    m = np.zeros(shape, bool)
    top = shape[0] // 2 - w // 2
    m[top : top + w] = True
    return m


def _mc_dice(key, mask, f, b, h, draws):
    t = density.matched_threshold(ntm.flip_matrix(f, b))
    keys = jax.random.split(key, draws)

    def one(k):
        return metrics.dice(t.apply(density.fraction_field(noise.flip(k, mask, f, b, exact=False), h)), mask)

    v = np.asarray(jax.vmap(one)(keys), np.float64)
    return float(v.mean()), float(v.std())


VERSION = 1  # bump when a panel's computation changes: the runner versions the cell with it


def cells(config: dict) -> list[dict]:
    """One cell: the Monte Carlo points are already averages over ``draws`` keyed draws."""
    return [{"kind": "theory_curves", "label": "theory", **{k: v for k, v in config.items() if k != "seeds"}}]


def compute(spec: dict) -> dict:
    """The four panels' theory curves and Monte Carlo points; the panels fold distinct offsets into the cell's key
    (sampling 100 i + j for width i, ratio j; flipping 1000 + j; multi-class 2000 + j), so their draws differ."""
    key = jax.random.key(spec["seed"])
    return {"sampling": sampling_panel(key, spec), "flipping": flipping_panel(key, spec),
            "pcl": pcl_panel(spec), "multiclass": multiclass_panel(key, spec)}


def summarise(config: dict, store) -> dict:
    return store.result(cells(config)[0])


def sampling_panel(key: jax.Array, config: dict) -> dict:
    """(a) Dice at t* = p/2 vs sampling ratio on stripes of each width: theory and Monte Carlo."""
    h, draws = config["bandwidth"], config["draws"]
    ratios = np.array([1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01])
    grid = np.geomspace(0.005, 1.0, 60)
    out = {}
    for i, w in enumerate(config["widths"]):
        m = stripe(w)
        fields = density.sampling_fields(m, h)
        pts = [_mc_dice(jax.random.fold_in(key, 100 * i + j), m, 1 - p, 0.0, h, draws) for j, p in enumerate(ratios)]
        out[str(w)] = {
            "ratio": ratios.tolist(),
            "mc_mean": [p[0] for p in pts],
            "mc_sd": [p[1] for p in pts],
            "predicted_at_ratio": curves.predicted_dice(fields, m, 1 - ratios, 0.0).tolist(),
            "curve_ratio": grid.tolist(),
            "curve": curves.predicted_dice(fields, m, 1 - grid, 0.0).tolist(),
        }
    return out


def flipping_panel(key: jax.Array, config: dict) -> dict:
    """(b) Dice at t* vs symmetric flip rate on an 8-px stripe, through the collapse at f + b = 1."""
    h, draws = config["bandwidth"], config["draws"]
    m = stripe(8)
    fields = density.sampling_fields(m, h)
    rates = np.array([0.0, 0.2, 0.35, 0.45, 0.55, 0.65, 0.8, 0.95])
    fgrid = np.linspace(0, 0.99, 100)
    pts = []
    for j, r in enumerate(rates):
        if abs(2 * r - 1) < 1e-9:
            pts.append((float("nan"), float("nan")))
            continue
        pts.append(_mc_dice(jax.random.fold_in(key, 1000 + j), m, r, r, h, draws))
    return {
        "width": 8,
        "rate": rates.tolist(),
        "mc_mean": [p[0] for p in pts],
        "mc_sd": [p[1] for p in pts],
        "predicted_at_rate": curves.predicted_dice(fields, m, rates, rates).tolist(),
        "curve_rate": fgrid.tolist(),
        "curve": curves.predicted_dice(fields, m, fgrid, fgrid).tolist(),
    }


def pcl_panel(config: dict) -> dict:
    """(c) Dice of dilated / eroded stripes and disks against the clean mask, and of the skeleton's field at t*."""
    h = config["bandwidth"]
    radii = np.arange(1, 5)
    pcl = {"radius": radii.tolist()}
    w = 12
    ms = stripe(w)
    n, R = 80, 20
    yy, xx = np.mgrid[:n, :n] - n // 2
    md = yy**2 + xx**2 <= R * R
    for name, mask, shape, size in (("stripe", ms, "stripe", w), ("disk", md, "disk", R)):
        for op, fn in (("dilate", noise.dilate), ("erode", noise.erode)):
            pcl[f"{name}_{op}_grid"] = [float(metrics.dice(fn(mask, int(r)), mask)) for r in radii]
            pcl[f"{name}_{op}_theory"] = curves.overlap_pcl(shape, size, radii, op=op)[0].tolist()
    sk = np.asarray(noise.skeletonize(ms))
    tsk = density.matched_threshold(ntm.skeleton_matrix(ms, sk))
    pcl["skeleton_grid"] = float(metrics.dice(tsk.apply(density.fraction_field(sk, h)), ms))
    pcl["skeleton_theory"] = float(curves.dice_skeleton_stripe(1 / float(ntm.skeleton_matrix(ms, sk)[1, 1]), h))
    pcl["sampling_10pct_theory"] = float(curves.predicted_dice(density.sampling_fields(ms, h), ms, 0.9, 0.0))
    return pcl


def multiclass_panel(key: jax.Array, config: dict) -> dict:
    """(d) mIoU on interior pixels vs symmetric M-class flip rate (M = 4): theory, Monte Carlo, and M = 19."""
    hm, mcls, draws = config["multiclass_bandwidth"], 4, config["draws"]
    lab = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 40, 0), 40, 1)
    n_eff = 1 / float((density.kernel_weights("gaussian", hm) ** 2).sum())
    interior = np.zeros(lab.shape, bool)
    for i in (0, 40):
        for j in (0, 40):
            interior[i + 10 : i + 30, j + 10 : j + 30] = True
    erates = np.array([0.0, 0.3, 0.5, 0.6, 0.7, 0.74, 0.8])
    mc = []
    for j, e in enumerate(erates):
        t = ntm.symmetric_matrix(e, mcls)
        keys = jax.random.split(jax.random.fold_in(key, 2000 + j), draws)
        preds = np.asarray(jax.vmap(lambda k, t=t: density.partition(
            density.fraction_field(noise.corrupt(k, lab, t), hm, num_classes=mcls), multiclass=True))(keys))
        vals = [float(metrics.miou(p_, np.where(interior, lab, -1), mcls)) for p_ in preds]
        mc.append((float(np.mean(vals)), float(np.std(vals))))
    egrid = np.linspace(0, 0.95, 96)
    return {
        "num_classes": mcls,
        "n_eff": n_eff,
        "rate": erates.tolist(),
        "mc_mean": [v[0] for v in mc],
        "mc_sd": [v[1] for v in mc],
        "predicted_at_rate": curves.miou_symmetric_flip(erates, mcls, n_eff=n_eff).tolist(),
        "curve_rate": egrid.tolist(),
        "curve": curves.miou_symmetric_flip(egrid, mcls, n_eff=n_eff).tolist(),
        "curve_19_classes": curves.miou_symmetric_flip(egrid, 19, n_eff=n_eff).tolist(),
    }


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, config = record["results"], record["config"]
    fig, ax = plt.subplots(1, 4, figsize=(18, 4.4), constrained_layout=True)
    h = config["bandwidth"]
    for (w, s), col in zip(res["sampling"].items(), ("C0", "C1", "C2"), strict=False):
        ax[0].plot(s["curve_ratio"], s["curve"], color=col, label=f"theory, stripe w = {w} px")
        ax[0].errorbar(s["ratio"], s["mc_mean"], yerr=s["mc_sd"], fmt="o", color=col, ms=4, capsize=2)
    ax[0].set_xscale("log")
    ax[0].set(xlabel="sampling ratio p", ylabel="Dice at t* = p/2", title=f"(a) RCL sampling, h = {h:g} px")
    ax[0].legend(fontsize=8)

    fl = res["flipping"]
    ax[1].plot(fl["curve_rate"], fl["curve"], color="C3", label="theory (inverted beyond 0.5)")
    ax[1].errorbar(fl["rate"], fl["mc_mean"], yerr=fl["mc_sd"], fmt="o", color="C3", ms=4, capsize=2,
                   label="Monte Carlo")
    ax[1].axvline(0.5, color="gray", ls=":", lw=1)
    ax[1].set(xlabel="symmetric flip rate f = b", ylabel="Dice at t*", title="(b) RCL flipping: collapse at f + b = 1")
    ax[1].legend(fontsize=8)

    p = res["pcl"]
    r = p["radius"]
    for name, col in (("stripe", "C0"), ("disk", "C1")):
        for op, ls in (("dilate", "-"), ("erode", "--")):
            ax[2].plot(r, p[f"{name}_{op}_theory"], ls, color=col, label=f"{name} {op}: theory")
            ax[2].plot(r, p[f"{name}_{op}_grid"], "o", color=col, ms=4)
    ax[2].axhline(p["skeleton_theory"], color="C4", lw=1, label=f"skeleton (w = 12): theory {p['skeleton_theory']:.2f}")
    ax[2].plot([1], [p["skeleton_grid"]], "s", color="C4", ms=5)
    ax[2].axhline(p["sampling_10pct_theory"], color="C2", lw=1, ls=":", label="10% sampling (w = 12): theory")
    ax[2].set(xlabel="radius (px)", ylabel="Dice vs clean", title="(c) PCL: stripe w = 12 px, disk R = 20 px")
    ax[2].legend(fontsize=7)

    mc = res["multiclass"]
    ax[3].plot(mc["curve_rate"], mc["curve"], color="C5", label="theory, M = 4")
    ax[3].errorbar(mc["rate"], mc["mc_mean"], yerr=mc["mc_sd"], fmt="o", color="C5", ms=4, capsize=2,
                   label="Monte Carlo, M = 4")
    ax[3].plot(mc["curve_rate"], mc["curve_19_classes"], color="C7", ls="--", label="theory, M = 19")
    for m_, col in ((4, "C5"), (19, "C7")):
        ax[3].axvline((m_ - 1) / m_, color=col, ls=":", lw=1)
    ax[3].set(xlabel="symmetric flip rate e", ylabel="mIoU (interior pixels)",
              title=f"(d) multi-class, n_eff = {mc['n_eff']:.0f} px")
    ax[3].legend(fontsize=8)
    save_figure(fig, path, "Kernel model of a network (gaussian field at t*): theory lines, Monte Carlo points "
                 f"(mean +- sd over {config['draws']} draws)", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "the theory's predictions beside Monte Carlo"
AGREE = 0.02  # "measured and predicted agree": within this much Dice
CITYSCAPES_RATES = (0.8, 0.9)  # where the 19-class prediction is read (the paper flips up to 90%)


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    h = cfg["bandwidth"]
    intro = para(
        f"`python -m simulations run theory_curves` draws each prediction of `theory.curves` beside Monte Carlo "
        f"points ({cfg['draws']} fixed-key draws) of the model it describes: a gaussian field of bandwidth "
        f"h = {g(h)} px (the model of a network's receptive field) thresholded at t*. The trained networks' "
        f"counterparts are `rcl_sampling`, `rcl_flipping`, `pcl` and `multiclass` below.")
    out = [intro]

    # (a) sampling
    samp = res["sampling"]
    widths = sorted(samp, key=float)
    wide, thin = widths[-1], widths[0]
    s = samp[wide]
    ok = None
    for i in range(len(s["ratio"])):  # ratios run from 1 down
        if abs(s["mc_mean"][i] - s["predicted_at_ratio"][i]) <= AGREE:
            ok = i
        else:
            break
    a = f"(a) Sampling, on stripes of width {listing(widths)} px: on the {wide}-px stripe the prediction is "
    if ok is not None:
        a += (f"within {g(AGREE)} of the measured Dice from p = {g(s['ratio'][0])} down to p = {g(s['ratio'][ok])} "
              f"({num(s['mc_mean'][ok])} measured, {num(s['predicted_at_ratio'][ok])} predicted there)")
        if ok + 1 < len(s["ratio"]):
            nxt = ok + 1
            a += (f"; at p = {g(s['ratio'][nxt])} it is off by "
                  f"{num(abs(s['mc_mean'][nxt] - s['predicted_at_ratio'][nxt]))}")
    else:
        a += f"off by more than {g(AGREE)} already at p = {g(s['ratio'][0])}"
    last = {w: samp[w]["predicted_at_ratio"][-1] - samp[w]["mc_mean"][-1] for w in widths}
    p_last = g(s["ratio"][-1])
    if all(v > 0 for v in last.values()):
        a += (f". It is optimistic where a window holds very few labelled pixels (the normal approximation of a "
              f"Poisson count): by {span(last.values())} at p = {p_last} on every width")
    else:
        a += f". At p = {p_last} prediction minus measurement is {span(last.values())} over the widths"
    t = samp[thin]
    crit = float(curves.critical_width(h))
    if float(thin) < crit and t["mc_mean"][0] < 0.01:
        best = max(range(1, len(t["ratio"])), key=lambda i: t["mc_mean"][i])
        a += (f". The {thin}-px stripe vanishes from the clean field (w < {num(crit / h)} h = {num(crit, 2)} px, "
              f"measured Dice {num(t['mc_mean'][0])} at p = {g(t['ratio'][0])}) yet is partly found under sparse "
              f"labels (Dice up to {num(t['mc_mean'][best])} at p = {g(t['ratio'][best])}, predicted "
              f"{num(t['predicted_at_ratio'][best])}): sampling noise lifts parts of the thin field over t*")
    out.append(bullet(a + "."))

    # (b) flipping
    fl = res["flipping"]
    gaps = [abs(m - p) for m, p in zip(fl["mc_mean"], fl["predicted_at_rate"], strict=True)]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    below = [i for i, r in enumerate(fl["rate"]) if r < 0.5]
    above = [i for i, r in enumerate(fl["rate"]) if r > 0.5]
    b = (f"(b) Flipping f = b, on a stripe of width {fl['width']} px: measured and predicted Dice agree within "
         f"{num(max(gaps))} at every rate (largest gap at f = b = {g(fl['rate'][worst])}: "
         f"{num(fl['mc_mean'][worst])} measured, {num(fl['predicted_at_rate'][worst])} predicted)")
    if below and above:
        i, j = below[-1], above[0]
        b += (f", through the collapse at f + b = 1 (Dice {num(fl['mc_mean'][i])} at {g(fl['rate'][i])} and "
              f"{num(fl['mc_mean'][j])} at {g(fl['rate'][j])}) and the inversion beyond it (Dice "
              f"{num(fl['mc_mean'][above[-1]])} at {g(fl['rate'][above[-1]])})")
    out.append(bullet(b + "."))

    # (c) structured noise
    pc = res["pcl"]
    radius = pc["radius"]
    d0 = pc["stripe_dilate_theory"][0]
    w = round(radius[0] * d0 / (1 - d0))  # the stripe's width, from w / (w + r) at the first radius
    dil_gap = max(abs(x - y) for x, y in zip(pc["stripe_dilate_grid"], pc["stripe_dilate_theory"], strict=True))
    how = "exactly" if dil_gap < 5e-4 else f"within {num(dil_gap)}"
    c = (f"(c) Structured noise: dilating a stripe of width w = {w} px by r costs {how} w/(w+r) "
         f"({num(pc['stripe_dilate_grid'][0])} -> {num(pc['stripe_dilate_grid'][-1])} from r = {radius[0]} to "
         f"{radius[-1]})")
    more = all(e < d for e, d in zip(pc["stripe_erode_grid"], pc["stripe_dilate_grid"], strict=True))
    c += (f"; erosion costs {'more at every r' if more else 'not always more'} "
          f"({num(pc['stripe_erode_grid'][0])} -> {num(pc['stripe_erode_grid'][-1])})")
    disk = max(abs(x - y) for k in ("disk_dilate", "disk_erode")
               for x, y in zip(pc[f"{k}_grid"], pc[f"{k}_theory"], strict=True))
    c += f"; on a disk the formulas are within {num(disk)} of the grid"
    sk, sk_t, s10 = pc["skeleton_grid"], pc["skeleton_theory"], pc["sampling_10pct_theory"]
    c += (f". The skeleton's field at its t* gives Dice {num(sk)} (predicted {num(sk_t)}), "
          f"{'below' if sk < s10 else 'above'} the {num(s10)} predicted for 10% sampling of the same stripe.")
    out.append(bullet(c))

    # (d) multi-class
    mc = res["multiclass"]
    m = mc["num_classes"]
    gaps = [abs(x - y) for x, y in zip(mc["mc_mean"], mc["predicted_at_rate"], strict=True)]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    d = (f"(d) Multi-class symmetric flipping (M = {m}): mIoU within {num(max(gaps))} of the prediction "
         f"(largest gap at e = {g(mc['rate'][worst])}: {num(mc['mc_mean'][worst])} measured, "
         f"{num(mc['predicted_at_rate'][worst])} predicted), collapsing at e = (M-1)/M = {num((m - 1) / m, 2)}.")
    big = [k for k in mc if re.fullmatch(r"curve_(\d+)_classes", k)]
    if big:
        k = int(re.fullmatch(r"curve_(\d+)_classes", big[0]).group(1))
        vals = []
        for e in CITYSCAPES_RATES:
            i = nearest(mc["curve_rate"], e)
            if i is not None:
                vals.append(f"{num(mc[big[0]][i], 2)} at e = {g(e)}")
        margin = 1 - CITYSCAPES_RATES[-1] * k / (k - 1)
        d += (f" For {k} classes the same window (n_eff = {mc['n_eff']:.0f} labelled pixels) predicts mIoU "
              f"{listing(vals, 'but')}: the paper's {g(100 * CITYSCAPES_RATES[-1])}% flipping on Cityscapes needs "
              f"many more labelled pixels per decision than this window holds (the margin 1 - eM/(M-1) shrinks "
              f"to {num(margin, 2)}).")
    out.append(bullet(d))
    return out
