"""Running an experiment: its cells through the store, then its figure from the store.

An experiment is a module with

* ``PROFILES = {"quick": {...}, "full": {...}}``: configurations (``seeds`` among them);
* ``REQUIRES``: experiments whose cells it reads (run first; shared cells cost nothing);
* ``cells(config) -> list[spec]``: every cell it needs, in order;
* ``summarise(config, store) -> dict``: the numbers behind the figure, read from the store;
* ``plot(record, path, store)``: the figure, drawn from the record (and, for
  images, the arrays of the cells it names in the store);
* for cells of its own kind (``spec["kind"]`` equal to the experiment's name):
  ``compute(spec)`` (one cell's result, or ``(result, arrays)``) and
  ``VERSION``. Cells of kind ``"train"`` are the shared training cell
  (:func:`simulations._cells.train_cell`, version ``_cells.VERSION``).

The runner, not the experiment, puts the version of the code that computes a
cell into its spec (:func:`versioned`), so changing that code and bumping its
``VERSION`` makes every stored cell of that kind stale, never silently reused.

:func:`run_experiment` computes the missing cells (a tqdm bar on a terminal),
writes ``OUT/NAME.json`` (config, cell keys, summary, versions) and draws
``OUT/NAME.png``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

from . import _cells
from ._io import check_writable, draw_png, load, save
from .store import Store

NAMES = (
    "meta_structure",
    "theory_curves",
    "decision_boundary",
    "rcl_sampling",
    "rcl_flipping",
    "pcl",
    "random_labels",
    "multiclass",
    "ntm_information",
    "feature_maps",
    "memorisation",
    "real_nuclei",
    "igtt",
)


def experiment(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"simulations.{name}")


def cell_version(kind: str) -> int:
    """The version of the code that computes cells of ``kind`` ("train" or an experiment's name)."""
    if kind == "train":
        return _cells.VERSION
    version = getattr(experiment(kind), "VERSION", None)
    if not isinstance(version, int):
        raise TypeError(f"experiment {kind!r} computes cells of its own kind, so it must set an int VERSION")
    return version


def versioned(spec: dict) -> dict:
    """``spec`` with ``"v"``, the version of the code that computes it (idempotent)."""
    return {**spec, "v": cell_version(spec["kind"])}


def compute_cell(spec: dict):
    """Compute one cell: the shared training cell, or the ``compute`` of the experiment named by its kind."""
    if spec["kind"] == "train":
        return _cells.train_cell(spec)
    return experiment(spec["kind"]).compute(spec)


def open_store(out: str | Path) -> Store:
    """The results store under ``OUT/store``, with cells versioned by :func:`versioned`."""
    return Store(Path(out) / "store", stamp=versioned)


def unavailable(name: str) -> str | None:
    """Why experiment ``name`` cannot run on this machine (e.g. missing optional data), or None."""
    check = getattr(experiment(name), "unavailable", None)
    return check() if check else None


def config_of(name: str, profile: str, seeds: int | None = None) -> dict:
    mod = experiment(name)
    if profile not in mod.PROFILES:
        raise ValueError(f"profile must be one of {sorted(mod.PROFILES)}, got {profile!r}")
    config = dict(mod.PROFILES[profile])
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        config["seeds"] = int(seeds)
    return config


def _bar(total: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, disable=not show, leave=False, dynamic_ncols=True)


def run_experiment(
    name: str,
    out: str | Path,
    *,
    profile: str = "quick",
    seeds: int | None = None,
    force: bool = False,
    progress: bool | None = None,
    config: dict | None = None,
    _done: set | None = None,
    _forced: set | None = None,
) -> dict:
    """Compute ``name``'s missing cells into ``OUT/store`` and write ``OUT/NAME.{json,png}``.

    Returns the record written, plus ``"computed"`` / ``"reused"`` cell counts
    of this call (not stored). ``force`` recomputes the experiment's cells
    (each shared cell once per call). ``config`` overrides entries of the
    profile's configuration (e.g. fewer rates in a notebook or a test).
    """
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
    summary = mod.summarise(config, store)
    record = {"experiment": name, "profile": profile, "config": config,
              "cells": [store.key(s) for s in specs], "results": summary,
              "seconds": time.perf_counter() - t0}
    record = save(out, name, record, lambda path: mod.plot(record, path, store))
    done.add(name)
    return {**record, "computed": computed, "reused": reused}


def replot(name: str, out: str | Path) -> None:
    """Redraw ``OUT/NAME.png`` from ``OUT/NAME.json`` alone."""
    record = load(out, name)
    draw_png(out, name, lambda path: experiment(name).plot(record, path, open_store(out)))
