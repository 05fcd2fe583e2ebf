"""The experiments: their names, how to find each module, and the cells they compute.

:data:`NAMES` is the one list of the simulations' experiments, in the order of
the command line's ``all`` and of the results document; adding an experiment
is one module ``simulations/NAME.py`` and one line here (see
``simulations/CONTRIBUTING.md``). An experiment module has

* ``PROFILES = {"quick": {...}, "full": {...}}``: configurations (``seeds`` among them);
* ``REQUIRES``: experiments whose cells it reads (run first; shared cells cost nothing);
* ``cells(config) -> list[spec]``: every cell it needs, in order;
* ``summarise(config, store) -> dict``: the numbers behind the figure, read from the store;
* ``plot(record, path, store)``: the figure, drawn from the record (and, for
  images, the arrays of the cells it names in the store);
* ``TITLE`` and ``report(record, records, default_steps) -> list[str]``: its
  section of the results document (:mod:`simulations.report`), markdown blocks
  written with :mod:`simulations._text` from its record (``records`` maps every
  experiment's name to its record or None; ``default_steps`` is the training
  length most experiments share, or None);
* for cells of its own kind (``spec["kind"]`` equal to the experiment's name):
  ``compute(spec)`` (one cell's result, or ``(result, arrays)``) and an int
  ``VERSION``. Cells of kind ``"train"`` are the shared training cell
  (:func:`simulations._cells.train_cell`, version ``_cells.VERSION``);
* optionally ``unavailable() -> str | None``: why it cannot run on this machine.
* optionally ``publish(results)``: what its measurement changes outside the
  output folder (the planner's measured defaults, read by the library from a
  JSON inside the package); the runner calls it after writing the record, only
  at the full profile with the profile's own configuration, into the published
  ``figures/`` (:func:`simulations.runner.publishes`).

The registry, not the experiment, puts the version of the code that computes a
cell into its spec (:func:`versioned`, which the runner's store applies), so
changing that code and bumping its ``VERSION`` makes every stored cell of that
kind stale, never silently reused.

Modules are looked up by name through :mod:`importlib` (``simulations.NAME``)
when first asked for, so this module imports no experiment at load time: the
runner, the Dask path and the experiments import it, never the other way round.
:func:`register` adds an experiment defined elsewhere (a module object) to this
process only (tests; a Dask worker, another process, does not see it).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterable, Iterator
from types import ModuleType

from . import _cells

__all__ = ["NAMES", "CellFailure", "CellsFailed", "cell_version", "compute_cell", "config_of", "experiment", "names",
           "register", "registered", "unavailable", "unregister", "versioned"]

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
    "scale",
    "real_nuclei",
    "planner",
    "igtt",
    "annotation",
)
"""The simulations' experiments (modules ``simulations.NAME``), in the order they run and are reported."""

_REGISTERED: dict[str, ModuleType] = {}  # added by register(), after NAMES


class CellFailure(dict):
    """One cell that raised: ``{"key", "label", "spec", "error", "traceback"}``."""

    def __str__(self) -> str:
        return (f"cell {self['label']!r} ({self['key']}) failed: {self['error']}\n"
                f"  spec: {json.dumps(self['spec'], sort_keys=True)}")


class CellsFailed(RuntimeError):
    """Some cells raised; the others were computed and stored. ``failures`` lists them."""

    def __init__(self, failures: list[CellFailure], skipped: Iterable[str] = ()):
        self.failures = list(failures)
        self.skipped = list(skipped)
        lines = [f"{len(self.failures)} cell(s) failed"
                 + (f"; not written: {', '.join(self.skipped)}" if self.skipped else "")]
        super().__init__("\n".join(lines + [str(f) for f in self.failures]))


def names() -> tuple[str, ...]:
    """Every experiment this process knows: :data:`NAMES`, then those added by :func:`register`."""
    return NAMES + tuple(_REGISTERED)


def register(name: str, module: ModuleType) -> None:
    """Add ``module`` as experiment ``name`` for this process (after :data:`NAMES`; see the module docstring).

    Raises:
        TypeError: ``module`` is not a module.
        ValueError: ``name`` is not an identifier, or is already an experiment.
    """
    if not isinstance(module, ModuleType):
        raise TypeError(f"module must be a module, got {type(module).__name__}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier (it names files and cells), got {name!r}")
    if name in names() or name == "train":
        raise ValueError(f"name {name!r} is already taken")
    _REGISTERED[name] = module


def unregister(name: str) -> None:
    """Remove an experiment added by :func:`register`; ``ValueError`` for any other name."""
    if name not in _REGISTERED:
        raise ValueError(f"name {name!r} was not added by register()")
    del _REGISTERED[name]


@contextlib.contextmanager
def registered(name: str, module: ModuleType) -> Iterator[ModuleType]:
    """:func:`register` for the ``with`` block, :func:`unregister` after it."""
    register(name, module)
    try:
        yield module
    finally:
        unregister(name)


def experiment(name: str) -> ModuleType:
    """The module of experiment ``name``; ``ValueError`` naming the choices for an unknown one."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(names())}")
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


def unavailable(name: str) -> str | None:
    """Why experiment ``name`` cannot run on this machine (e.g. missing optional data), or None."""
    check = getattr(experiment(name), "unavailable", None)
    return check() if check else None


def config_of(name: str, profile: str, seeds: int | None = None) -> dict:
    """Experiment ``name``'s configuration for ``profile``, with ``seeds`` seeds per cell when given.

    Raises:
        ValueError: an unknown experiment or profile, or ``seeds`` below 1.
    """
    mod = experiment(name)
    if profile not in mod.PROFILES:
        raise ValueError(f"profile must be one of {sorted(mod.PROFILES)}, got {profile!r}")
    config = dict(mod.PROFILES[profile])
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        config["seeds"] = int(seeds)
    return config
