"""Random labels: held-out Dice high early, then falling as the network memorises the draw.

U-Nets on a small set of NUC-like images trained on i.i.d. Bernoulli(r) labels
that ignore the image (rank-1 T: no meta-structure), one fixed draw, and, for
contrast, a fresh draw at every step (nothing to memorise). Over training:
held-out Dice at the best threshold (the most any threshold can get from the
output), AUC, and the training loss. Predictions: a network that learned
nothing from the labels sits at the loss H(r) (the labels' entropy, nats) and
at the chance Dice 2 pi / (1 + pi) (call every pixel foreground; pi the
foreground fraction); a training loss below H(r) is memorisation.

The early peak, decided: per seed, the step and threshold are chosen on the
validation images (the checkpoint whose validation Dice at its best threshold
is highest, the earliest of ties), and the test Dice there is compared between
the fixed draw and the fresh-draw control over the seeds: the difference of
the means with its 95% Welch interval. The claim (a fixed draw learns
something before memorising) is reproduced only when the interval lies above 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _cells
from ._common import base, dataset, errorbar, pyplot, save_figure, spec, stats
from ._text import g, mean, num, para, pm, span

PROFILES = {
    "quick": base("quick", n_train=8, rate=0.3, opt={"steps": 60, "batch": 8, "lr": 0.003}),
    "full": base("full", n_train=16, rate=0.3, opt={"steps": 600, "batch": 8, "lr": 0.002}, seeds=8),
}
REQUIRES = ()


def _spec(config: dict, regime: str, seed: int) -> dict:
    d = dataset("nuclei", config["profile"], n_train=config["n_train"])
    return spec(config, d, "random", config["rate"], regime=regime, seed=seed, track=True)


def cells(config: dict) -> list[dict]:
    return [_spec(config, reg, s) for reg in ("fixed", "fresh") for s in range(config["seeds"])]


def summarise(config: dict, store) -> dict:
    r = config["rate"]
    out = {"entropy": float(-(r * np.log(r) + (1 - r) * np.log(1 - r)))}
    masks = _cells.load_data(_spec(config, "fixed", 0)["data"])["test"].masks
    prior = float(np.mean(masks))
    out["chance_dice"] = 2 * prior / (1 + prior)
    out["n_val"] = int(_spec(config, "fixed", 0)["data"]["n_val"])
    for reg in ("fixed", "fresh"):
        res = [store.result(_spec(config, reg, s)) for s in range(config["seeds"])]
        steps = [h["step"] for h in res[0]["history"]]
        out[reg] = {
            "steps": steps,
            "dice_best": [stats(v) for v in np.array([[h["dice_best"] for h in r["history"]] for r in res]).T],
            "auc": [stats(v) for v in np.array([[h["auc"] for h in r["history"]] for r in res]).T],
            "loss": [stats(v) for v in np.array([r["loss"] for r in res]).T],
        }
        d = np.array([[h["dice_best"] for h in r["history"]] for r in res])
        out[reg]["peak_dice"] = stats(d.max(1))
        out[reg]["final_dice"] = stats(d[:, -1])
        out[reg]["final_loss"] = stats([r["loss"][-1] for r in res])
        # the validation-chosen checkpoint of each seed, and its test Dice at the validation threshold
        pick = [int(np.argmax([h["val_dice"] for h in r["history"]])) for r in res]
        out[reg]["selected_step"] = [steps[i] for i in pick]
        values = [float(r["history"][i]["dice_val"]) for r, i in zip(res, pick, strict=True)]
        out[reg]["selected_dice"] = stats(values)
        out[reg]["selected_values"] = values
    out["selected_difference"] = _welch(out["fixed"]["selected_values"], out["fresh"]["selected_values"])
    return out


def _welch(a: list[float], b: list[float], *, level: float = 0.95) -> dict:
    """mean(a) - mean(b) with its Welch t interval at ``level`` (scipy's ``ttest_ind(equal_var=False)``; ``low``
    and ``high`` None with fewer than 2 values a side or no spread)."""
    from scipy import stats as st

    a, b = np.asarray(a, float), np.asarray(b, float)
    out = {"mean": float(a.mean() - b.mean()), "low": None, "high": None, "level": level}
    if min(a.size, b.size) >= 2:
        test = st.ttest_ind(a, b, equal_var=False)
        ci = test.confidence_interval(level)
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            out.update(low=float(ci.low), high=float(ci.high), dof=float(test.df))
    return out


def plot(record: dict, path: Path, store=None) -> None:
    plt = pyplot()
    res, cfg = record["results"], record["config"]
    fig, ax = plt.subplots(1, 3, figsize=(17, 4.4), constrained_layout=True)
    for i, reg in enumerate(("fixed", "fresh")):
        r = res[reg]
        kw = {"color": f"C{i}", "marker": "o", "ms": 3, "label": f"{reg} draw"}
        errorbar(ax[0], r["steps"], r["dice_best"], **kw)
        errorbar(ax[1], r["steps"], r["auc"], **kw)
        errorbar(ax[2], r["steps"], r["loss"], **kw)
        if "selected_values" in r:  # each seed's validation-chosen checkpoint, at its validation threshold
            ax[0].scatter(r["selected_step"], r["selected_values"], marker="x", s=30, color=f"C{i}",
                          label=f"{reg}: step and threshold chosen on validation")
    ax[0].axhline(res["chance_dice"], color="k", ls="--", lw=1, label="chance: all foreground")
    ax[1].axhline(0.5, color="k", ls="--", lw=1, label="chance")
    ax[2].axhline(res["entropy"], color="k", ls="--", lw=1, label=f"H(r) = {res['entropy']:.3f} nats: learned nothing")
    ax[0].set(xlabel="training step", ylabel="held-out Dice, best threshold", ylim=(0, 1), title="(a) held-out Dice")
    ax[1].set(xlabel="training step", ylabel="held-out AUC", ylim=(0, 1), title="(b) held-out AUC")
    ax[2].set(xlabel="training step", ylabel="training loss (BCE)", title="(c) below H(r) = memorised")
    for a in ax:
        a.legend(fontsize=8)
    save_figure(fig, path, f"random_labels: Bernoulli({cfg['rate']}) labels on {cfg['n_train']} NUC-like images, U-Net "
                 f"{cfg['net']}, {cfg['seeds']} seed(s), mean +- sd", fontsize=10)


# ------------------------------------------------------------------ the results document
TITLE = "learned nothing, then memorised"


def _decided(res: dict) -> str:
    """'reproduced' (the difference's interval above 0), 'not reproduced' (it holds 0 or lies below) or
    'undecided' (no interval: one seed)."""
    d = res["selected_difference"]
    if d["low"] is None:
        return "undecided"
    return "reproduced" if d["low"] > 0 else "not reproduced"


def not_reproduced(record: dict, records: dict) -> list[str]:
    """The results document's "not reproduced" entry: the early peak of random labels, when the fixed draw's
    validation-chosen test Dice is not above the fresh-draw control's (:func:`_decided`)."""
    res = record["results"]
    if _decided(res) == "reproduced":
        return []
    d, fx, fr = res["selected_difference"], res["fixed"], res["fresh"]
    ci = ("" if d["low"] is None else
          f", {100 * d['level']:.0f}% interval {num(d['low'])} to {num(d['high'])}")
    return [f"random labels' early peak (validation Dice first high, then falling as the network memorises; from a "
            f"secondary summary of the paper): with the step and threshold chosen on validation images, the fixed "
            f"draw's test Dice {pm(fx['selected_dice'])} against the fresh-draw control's {pm(fr['selected_dice'])} "
            f"({fx['selected_dice']['n']} seeds each): difference {num(d['mean'])}{ci}, "
            + ("one seed: undecided" if d["low"] is None else "not above 0")
            + ", so the peak of the best of the checkpoints at the best test threshold measures that selection, "
              "not learning."]


def report(record: dict, records: dict, default_steps: int | None) -> list[str]:
    """This experiment's section of the results document (markdown blocks), from its record."""
    cfg, res = record["config"], record["results"]
    fx, fr = res["fixed"], res["fresh"]
    chance, h = res["chance_dice"], res["entropy"]
    curve = [mean(s) for s in fx["dice_best"]]
    top = max(range(len(curve)), key=curve.__getitem__)
    at_chance = abs(mean(fx["final_dice"]) - chance) < 0.005
    below_h = mean(fx["final_loss"]) < h
    text = (f"Bernoulli({g(cfg['rate'])}) labels on {cfg['n_train']} images, {cfg['opt']['steps']} steps. With "
            f"one fixed draw the held-out Dice at the best threshold peaks early (highest mean at step "
            f"{fx['steps'][top]}: {num(curve[top])}; per-seed peaks {pm(fx['peak_dice'])}) against a chance level "
            f"of {num(chance)} (calling everything foreground), and ends at {pm(fx['final_dice'])}"
            + (", chance," if at_chance else ",")
            + f" as the training loss falls {'below' if below_h else 'to'} the labels' entropy "
              f"H({g(cfg['rate'])}) = {num(h)} nats, to {pm(fx['final_loss'])}"
            + (": the network memorises the draw." if below_h and at_chance else "."))
    aucs = [mean(s) for s in fr["auc"]]
    text += (f" With fresh draws the loss stays at {pm(fr['final_loss'])} (nothing to memorise) and the mean AUC "
             f"stays between {num(min(aucs))} and {num(max(aucs))} over training (chance 0.5). The early peak of "
             f"the fixed draw is {num(mean(fx['peak_dice']) - chance)} above chance, but the best of "
             f"{len(fx['steps'])} checkpoints at the best test threshold is a selection: the fresh-draw control "
             f"peaks at {pm(fr['peak_dice'])}.")
    d = res["selected_difference"]
    verdict = _decided(res)
    text2 = (f"Chosen on the {res['n_val']} validation images instead (per seed, the checkpoint "
             "with the highest validation Dice and its threshold), the test Dice is "
             f"{pm(fx['selected_dice'])} for the fixed draw (steps {span(fx['selected_step'], 0)}) against "
             f"{pm(fr['selected_dice'])} for the fresh-draw control (steps {span(fr['selected_step'], 0)}): "
             f"difference {num(d['mean'])}"
             + ("" if d["low"] is None else
                f" ({100 * d['level']:.0f}% Welch interval {num(d['low'])} to {num(d['high'])}, "
                f"{fx['selected_dice']['n']} seeds each)")
             + f". The early peak is **{verdict}**"
             + (" (one seed: no interval)." if verdict == "undecided" else
                ": the fixed draw learns something before it memorises." if verdict == "reproduced" else
                ": the fixed draw is no better than labels with nothing to learn."))
    return [para(text), para(text2)]
