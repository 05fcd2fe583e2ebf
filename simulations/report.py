"""The simulations' results document, written from the experiments' JSON records.

:func:`render` reads ``FIGURES/NAME.json`` for every experiment of
:func:`simulations.registry.names` and returns the markdown of
``simulations/README.md``: an introduction, the setup the learning experiments
share, the paper's claims the records do not reproduce (each module's optional
``not_reproduced(record, records)``), and one section per experiment: its
``TITLE``, its figure, and what its numbers say, written by the experiment
module's own ``report(record, records, default_steps)`` with the helpers of
:mod:`simulations._text`.

The rule: no number in the document is typed by hand. Every value (Dice,
standard deviations, fitted n_eff, rms errors, steps, seeds, image counts,
widths, rates...) is read from a record (``record["config"]`` or
``record["results"]``) and formatted, and every statement that depends on
the numbers (a range, an ordering, "within 0.02", "holds" / "does not hold") is
computed from them, so that other numbers give other words. What stays fixed
is the explanation, and the tolerances and focus points the sentences use
(named constants beside each section). Run times are left out: a record's
``seconds`` count only the cells its run computed, not the ones it reused from
the store.

An experiment whose record is missing gets one line saying how to run it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._io import load
from ._text import bullet, g, listing, para, unet_name
from .registry import experiment, names

__all__ = ["render"]

CONTRIBUTING = Path(__file__).resolve().with_name("CONTRIBUTING.md")  # how to add an experiment, linked from the intro


# ------------------------------------------------------------------ the document
def render(figures_dir: str | os.PathLike, *, doc_path: str | os.PathLike) -> str:
    """The markdown of the results document, from ``figures_dir/NAME.json`` for every experiment.

    Image links point at ``figures_dir/NAME.png`` relative to the folder of
    ``doc_path``; a missing record gives a line saying how to run it.

    Raises:
        ValueError: a record that cannot be used (not JSON, not an
            experiment's record: the checks of ``simulations._io.load``, or
            without what its section reads), naming its file.
    """
    figures_dir, doc_path = Path(figures_dir), Path(doc_path)
    records = {}
    for name in names():
        path = figures_dir / f"{name}.json"
        records[name] = load(figures_dir, name) if path.exists() else None

    def link(name: str) -> str:
        return os.path.relpath(figures_dir / f"{name}.png", doc_path.parent).replace(os.sep, "/")

    cmd = commands(records, figures_dir, doc_path)
    blocks = [_intro(records, figures_dir, doc_path, cmd), "## Common setup", *_setup(records, cmd),
              *_not_reproduced(records, figures_dir), "## The experiments"]
    default = _default_steps(records)
    for name in records:
        mod = experiment(name)
        blocks.append(f"### {name}: {mod.TITLE}")
        rec = records[name]
        if rec is None:
            blocks.append(missing(name, cmd))  # one line, unwrapped
            continue
        blocks.append(f"![{name}]({link(name)})")
        try:
            blocks.extend(mod.report(rec, records, default))
        except (KeyError, TypeError, IndexError, ValueError) as e:  # a record of another version, or edited by hand
            raise ValueError(f"{figures_dir / f'{name}.json'} lacks what its section reads ({type(e).__name__}: "
                             f"{e}): run `python -m simulations run {name} --out {figures_dir}` again to rewrite "
                             "it") from e
    return "\n\n".join(blocks) + "\n"


def commands(records: dict, figures_dir: Path, doc_path: Path) -> dict[str, str]:
    """The commands the document names, for its own records' profile and paths (relative to the
    current directory, where ``python -m simulations report`` runs; defaults left out)."""
    profiles = sorted({r["profile"] for r in records.values() if r is not None})
    prof = profiles[0] if len(profiles) == 1 else "full"
    out = os.path.relpath(figures_dir).replace(os.sep, "/")
    doc = os.path.relpath(doc_path).replace(os.sep, "/")
    o = "" if out == ("figures" if prof == "full" else "figures/quick") else f" --out {out}"
    d = "" if doc == f"{out}/README.md" else f" --doc {doc}"
    base = f"--profile {prof}{o}"
    return {"all": f"python -m simulations all {base}", "run": f"python -m simulations run NAME {base}",
            "plot": f"python -m simulations plot NAME {base}", "report": f"python -m simulations report {base}{d}"}


def missing(name: str, cmd: dict[str, str]) -> str:
    """The line of an experiment whose record is missing."""
    return (f"`{name}` has not been run: no `{name}.json` in the figures folder. Run "
            f"`{cmd['run'].replace('NAME', name)}`, then regenerate this document.")


def _intro(records: dict, figures_dir: Path, doc_path: Path, cmd: dict[str, str]) -> str:
    folder = os.path.relpath(figures_dir, doc_path.parent).replace(os.sep, "/")
    contributing = os.path.relpath(CONTRIBUTING, doc_path.parent.resolve()).replace(os.sep, "/")
    profiles = sorted({r["profile"] for r in records.values() if r is not None})
    seeds = sorted({r["config"]["seeds"] for r in records.values() if r is not None and "seeds" in r["config"]})
    text = [
        "# Simulations: the paper, curve by curve",
        para(f"This document is generated by `python -m simulations report` from the experiments' records "
             f"`{folder}/NAME.json`, which `{cmd['all']}` writes beside the figures; every number "
             f"in it is read from those records by the code of `simulations/`, and every comparison in the text is "
             f"computed from them. Do not edit it by hand: after a run (all experiments, or `{cmd['run']}` for "
             f"some), regenerate it with `{cmd['report']}`. Each experiment's section is written by the "
             f"experiment's own module; adding an experiment is one module and one line "
             f"([`simulations/CONTRIBUTING.md`]({contributing}))."),
        para((f"Profile{'s' if len(profiles) > 1 else ''} of the records: {listing(profiles)}; seeds per cell: "
              f"{listing([str(s) for s in seeds])}. " if profiles else "No experiment has been run yet. ")
             + "Numbers are mean +- sd over seeds (sample sd); a number without "
             "sd was the same for every seed, or comes from one deterministic run. Scores are pooled over the "
             "test images. Thresholds: *t\\** is the one the theory gives for the label type (midway between "
             "the expected network output on objects and on background: p/2 for sampling a fraction p, "
             "(1 - f + b)/2 for flipping), *validation* the best on the validation images, *oracle* the best on "
             "the test images (the paper's protocol), *Otsu* Otsu's threshold on the output. CL, RCL, PCL and "
             "RL are the paper's clean, random-corrupted (sampled or flipped), perturbed (dilated, eroded, "
             "skeletonised) and random labels."),
    ]
    return "\n\n".join(text)


NOT_REPRODUCED = "Not reproduced here, and why"  # the section's title (the front page links to it)


def _not_reproduced(records: dict, figures_dir: Path) -> list[str]:
    """The section that lists the paper's claims the records do not reproduce: one bullet per claim, from the
    optional ``not_reproduced(record, records) -> list[str]`` of each experiment module (computed from its
    record, like ``report``), each linked to the experiment's section."""
    bullets = []
    for name, rec in records.items():
        hook = getattr(experiment(name), "not_reproduced", None)
        if rec is None or hook is None:
            continue
        try:
            items = hook(rec, records)
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise ValueError(f"{figures_dir / f'{name}.json'} lacks what its 'not reproduced' entry reads "
                             f"({type(e).__name__}: {e}): run `python -m simulations run {name} --out "
                             f"{figures_dir}` again to rewrite it") from e
        anchor = "#" + _anchor(f"{name}: {experiment(name).TITLE}")
        bullets += [bullet(f"[`{name}`]({anchor}): {item}") for item in items]
    if not bullets:
        return []
    return [f"## {NOT_REPRODUCED}", para("The paper's claims that the records below do not reproduce at this "
                                         "toolkit's scale, each with the numbers that decide it and the "
                                         "difference we hold responsible."), "\n".join(bullets)]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, each space a ``-``."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def _default_steps(records: dict) -> int | None:
    steps = [r["config"]["opt"]["steps"] for r in records.values()
             if r is not None and "opt" in r["config"] and "depth" not in r["config"]]  # the image experiments
    return max(set(steps), key=steps.count) if steps else None


def _setup(records: dict, cmd: dict[str, str]) -> list[str]:
    # the image experiments (a volume experiment, whose config has a depth, states its own setup in its section)
    learn = {n: r for n, r in records.items() if r is not None and "net" in r["config"] and "depth" not in r["config"]}
    if not learn:
        return [para("No learning experiment has been run yet.")]
    nets = {n: unet_name(r["config"]["net"], (r["config"].get("recipe") or {}).get("activation"))
            for n, r in learn.items()}
    named = list(nets.values())
    common = max(set(named), key=named.count)
    opts = [r["config"]["opt"] for r in learn.values() if "opt" in r["config"]]
    steps = _default_steps(records)
    lrs = sorted({o["lr"] for o in opts} | {r["config"]["lr"] for r in learn.values() if "lr" in r["config"]})
    batches = sorted({o["batch"] for o in opts})
    weights = None
    if records.get("memorisation") is not None:
        weights = records["memorisation"]["results"].get("num_params")
    text = (f"All learning experiments train the same kind of network: a U-Net {common}"
            + (f" ({weights:,} weights)" if weights else "")
            + f", Adam (lr {listing([g(x) for x in lrs], 'or')}), batch {listing([str(b) for b in batches], 'or')}")
    db = records.get("decision_boundary")
    data = db["config"].get("data") if db is not None else None
    if data:
        text += f", {data['size']} x {data['size']} images"
    text += f", {steps} steps unless stated."
    if data:
        seen = steps * db["config"]["opt"]["batch"] / data["n_train"]
        text += (f" Synthetic data sets have {data['n_train']} training, {data['n_val']} validation and "
                 f"{data['n_test']} test images unless stated, so a training image is seen about "
                 f"{seen:.0f} times (the paper trained 100 epochs; the `scale` section maps how the loss to "
                 "clean labels changes with the number of images and of passes).")
    text += (" Noisy labels are drawn once per image before training (*fixed*, the paper's protocol) unless "
             "a section says *fresh* (a new draw at every step).")
    odd = [f"`{n}`: U-Net {name}" for n, name in nets.items() if name != common]
    if odd:
        text += " Other networks: " + "; ".join(odd) + "."
    blocks = [para(text)]
    blocks.append(para("Each experiment is a set of cells (one network each) kept in the results store, so a "
                       "rerun computes only what is missing; the store verifies every cell it reads (its key, spec "
                       "and digests: a damaged or foreign cell is recomputed, with a warning naming it) and locks "
                       "each cell while it is computed, so several runs may share one folder. "
                       f"`{cmd['run']}` writes `NAME.json` and `NAME.png`, "
                       f"and `{cmd['plot']}` redraws the figure from the JSON. The cells are independent: "
                       f"`{cmd['all']} --workers N` computes them on N local worker processes of one core each "
                       "(Dask distributed, the `cluster` extra; `--scheduler ADDRESS` on a running cluster), "
                       "each cell once, with the numbers an in-process run gives on one core "
                       "(`simulations.cluster`; the README says how they differ from a run on more cores)."))
    return blocks
