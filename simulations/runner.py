"""Running an experiment: its cells through the store, then its figure from the store.

What an experiment module provides, and which experiments there are, is
:mod:`simulations.registry`'s (its names, lookup, versions and failure types
are importable from here too). The runner, not the experiment, puts the version
of the code that computes a cell into its spec (:func:`versioned`), so changing
that code and bumping its ``VERSION`` makes every stored cell of that kind
stale, never silently reused.
After writing a record of the published figures (:data:`PUBLISHED`) at the full profile with the
profile's own configuration (:func:`publishes`), the runner calls the experiment's optional ``publish(results)``:
what the measurement changes outside the output folder (the planner's measured defaults).

:func:`run_experiment` computes the missing cells (a tqdm bar on a terminal),
writes ``OUT/NAME.json`` (config, cell keys, summary, versions) and draws
``OUT/NAME.png``. :func:`run_experiments` runs several; given a Dask client
(:mod:`simulations.cluster`) it computes all their cells on its workers.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from ._io import check_writable, draw_png, load, save
from .registry import (
    NAMES,
    CellFailure,
    CellsFailed,
    cell_version,
    compute_cell,
    config_of,
    experiment,
    names,
    unavailable,
    versioned,
)
from .store import Store

__all__ = ["NAMES", "CellFailure", "CellsFailed", "cell_version", "compute_cell", "config_of", "experiment", "names",
           "open_store", "replot", "run_experiment", "run_experiments", "unavailable", "versioned"]


def open_store(out: str | Path) -> Store:
    """The results store under ``OUT/store``, with cells versioned by :func:`versioned`."""
    return Store(Path(out) / "store", stamp=versioned)


def _bar(total: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, disable=not show, leave=False, dynamic_ncols=True)


def _order(names: list[str]) -> list[str]:
    """``names`` with each experiment's requirements before it, each once."""
    out: list[str] = []

    def visit(name: str) -> None:
        if name in out:
            return
        for req in getattr(experiment(name), "REQUIRES", ()):
            visit(req)
        out.append(name)

    for name in names:
        visit(name)
    return out


PUBLISHED = Path(__file__).resolve().parents[1] / "figures"
"""The folder of the published records (the repository's ``figures/``), whose runs the package's measured
defaults come from."""


def publishes(name: str, profile: str, config: dict, out: str | Path) -> bool:
    """Whether a run of ``name`` with ``config`` into ``out`` publishes its results (the experiment's
    ``publish``): only at the full profile, with exactly that profile's configuration, written to
    :data:`PUBLISHED` (a run into another folder, a scratch copy, leaves the package's defaults alone)."""
    return (hasattr(experiment(name), "publish") and profile == "full"
            and config == config_of(name, "full") and Path(out).resolve() == PUBLISHED)


def _write(name: str, out: Path, profile: str, config: dict, specs: list[dict], store: Store,
           seconds: float) -> dict:
    """Summarise ``name`` from the store and write ``OUT/NAME.json`` and ``OUT/NAME.png`` (then, where
    :func:`publishes`, the experiment's ``publish``)."""
    mod = experiment(name)
    summary = mod.summarise(config, store)
    record = {"experiment": name, "profile": profile, "config": config,
              "cells": [store.key(s) for s in specs], "results": summary, "seconds": seconds}
    saved = save(out, name, record, lambda path: mod.plot(record, path, store))
    if publishes(name, profile, config, out):
        try:
            mod.publish(summary)
        except OSError as e:  # a read-only install: the record stands, the defaults stay as they were
            warnings.warn(f"{name}: could not write the package's measured defaults ({e})", RuntimeWarning,
                          stacklevel=2)
    return saved


def run_experiment(
    name: str,
    out: str | Path,
    *,
    profile: str = "quick",
    seeds: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    config: dict | None = None,
    client=None,
    _done: set | None = None,
    _forced: set | None = None,
) -> dict:
    """Compute ``name``'s missing cells into ``OUT/store`` and write ``OUT/NAME.{json,png}``.

    Returns the record written, plus ``"computed"`` / ``"reused"`` cell counts
    of this call (not stored). ``force`` recomputes the experiment's cells
    (each shared cell once per call). ``config`` overrides entries of the
    profile's configuration (e.g. fewer rates in a notebook or a test).
    ``client``: a Dask ``Client`` to compute the cells on (see
    :func:`run_experiments`); without one they are computed here, one after another.
    """
    if client is not None:
        return run_experiments([name], out, profile=profile, seeds=seeds, force=force, progress=progress,
                               client=client, config={name: config or {}})[name]
    out = check_writable(out) if _done is None else Path(out)  # before any cell trains
    done = set() if _done is None else _done
    forced = set() if _forced is None else _forced
    mod = experiment(name)
    for req in getattr(mod, "REQUIRES", ()):
        if req not in done:
            run_experiment(req, out, profile=profile, seeds=seeds, force=force, progress=progress,
                           _done=done, _forced=forced)
    config = {**config_of(name, profile, seeds), **(config or {})}
    store = open_store(out)
    specs = mod.cells(config)
    computed = reused = 0
    t0 = time.perf_counter()
    bar = _bar(len(specs), name, progress)
    for spec in specs:
        key = store.key(spec)
        bar.set_postfix_str(spec.get("label", key)[:40], refresh=False)
        redo = force and key not in forced
        _, was_computed = store.compute(spec, compute_cell, force=redo)
        forced.add(key)
        computed += was_computed
        reused += not was_computed
        bar.update(1)
    bar.close()
    record = _write(name, out, profile, config, specs, store, time.perf_counter() - t0)
    done.add(name)
    return {**record, "computed": computed, "reused": reused}


def run_experiments(
    names: list[str],
    out: str | Path,
    *,
    profile: str = "quick",
    seeds: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    client=None,
    config: dict[str, dict] | None = None,
    on_record=None,
) -> dict[str, dict]:
    """Run ``names`` (and their requirements, first) into ``OUT``; returns their records by name.

    Without ``client``: each experiment in turn through :func:`run_experiment`,
    in this process. With a Dask ``Client`` (:func:`simulations.cluster.open_client`):
    the cells of every experiment, each distinct cell once, are submitted to its
    workers at once, only those the store lacks; each is stored as it arrives,
    and each experiment's figure is drawn here as soon as the cells it reads are
    in. ``config`` maps a name to overrides of its configuration.
    ``on_record(record)`` is called after each experiment is written.

    Raises:
        CellsFailed: some cells raised (with a client); the
            others were stored, and every experiment that does not read a failed
            cell was written.
    """
    out = check_writable(out)
    config = config or {}
    order = _order(list(names))
    if client is None:
        done: set = set()
        forced: set = set()
        records = {}
        for name in order:
            if name in done:
                continue
            rec = run_experiment(name, out, profile=profile, seeds=seeds, force=force, progress=progress,
                                 config=config.get(name), _done=done, _forced=forced)
            records[name] = rec
            if on_record is not None:
                on_record(rec)
        return records
    from . import cluster  # here, not at the top: it imports Dask (the optional cluster extra)

    store = open_store(out)
    t0 = time.perf_counter()
    plans: dict[str, tuple[dict, list[dict]]] = {}
    needs: dict[str, set[str]] = {}
    for name in order:
        cfg = {**config_of(name, profile, seeds), **(config.get(name) or {})}
        specs = experiment(name).cells(cfg)
        plans[name] = (cfg, specs)
        needs[name] = {store.key(s) for s in specs}.union(
            *(needs[r] for r in getattr(experiment(name), "REQUIRES", ())))
    all_specs = [s for _, specs in plans.values() for s in specs]
    ready: set[str] = set()
    computed: set[str] = set()
    claimed: set[str] = set()
    failures: list = []
    records: dict[str, dict] = {}
    bar = _bar(len({store.key(s) for s in all_specs}), "cells", progress)

    def finish_ready() -> None:
        for name in order:
            if name not in records and needs[name] <= ready:
                cfg, specs = plans[name]
                rec = _write(name, out, profile, cfg, specs, store, time.perf_counter() - t0)
                mine = 0  # as in-process: a cell computed in this run counts once, for the first experiment
                for k in rec["cells"]:  # written that reads it; every other read of it is a reuse
                    if k in computed and k not in claimed:
                        claimed.add(k)
                        mine += 1
                records[name] = {**rec, "computed": mine, "reused": len(specs) - mine}
                if on_record is not None:
                    on_record(records[name])

    try:
        finish_ready()  # experiments with no cells of their own
        for key, failure, was_computed in cluster.compute_cells(client, store, all_specs, force=force,
                                                                 progress=bar):
            if failure is not None:
                failures.append(failure)
                bar.write(f"error: {failure}")
                continue
            ready.add(key)
            if was_computed:
                computed.add(key)
            finish_ready()
    finally:
        bar.close()
    if failures:
        raise CellsFailed(failures, skipped=[n for n in order if n not in records])
    return records


def replot(name: str, out: str | Path) -> None:
    """Redraw ``OUT/NAME.png`` from ``OUT/NAME.json`` alone.

    Raises:
        FileNotFoundError: no ``OUT/NAME.json``.
        ValueError: a record that cannot be used (not JSON, not ``NAME``'s
            record, or without what its figure reads), naming its file.
    """
    record = load(out, name)
    try:
        draw_png(out, name, lambda path: experiment(name).plot(record, path, open_store(out)))
    except (KeyError, TypeError, IndexError, ValueError) as e:  # a record of another version, or edited by hand
        raise ValueError(f"{Path(out) / f'{name}.json'} lacks what its figure reads ({type(e).__name__}: {e}): "
                         f"run `python -m simulations run {name} --out {out}` again to rewrite it") from e
