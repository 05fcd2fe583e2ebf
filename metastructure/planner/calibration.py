"""What a calibration is, the training recipe it belongs to, and the measured defaults.

A :class:`Calibration` holds the two numbers of a training recipe the
predictions need (``n_eff``, ``clean_dice``) and how they were obtained;
:func:`metastructure.planner.calibrate` measures one by training networks.
Without the user's images, :data:`DEFAULT` stands in, and :data:`NO_AUGMENT_CAPACITY`
gives the memorisation capacity of the recipe without augmentation. Both are
measurements, read at import from ``calibration.json`` beside this module
(:data:`CONSTANTS_FILE`, shipped as package data), which the experiments that
measure them write when they run at the full profile (:func:`write_constants`):

* ``python -m simulations run planner --profile full``: ``default_calibration``
  (``results.calibration`` of figures/planner.json, with its source named);
* ``python -m simulations run memorisation --profile full``:
  ``no_augment_capacity`` (``results.fitted_k`` of figures/memorisation.json).

A new measurement changes the defaults without a source edit; a process that
has already imported the planner keeps the values it read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from .. import nets

__all__ = [
    "CONSTANTS_FILE",
    "DEFAULT",
    "DEFAULT_RECIPE",
    "NO_AUGMENT_CAPACITY",
    "Calibration",
    "fit_kwargs",
    "read_constants",
    "write_constants",
]

#: The training recipe the predictions are about: ``train.fit`` with ``nets.unet(widths)``, fixed labels,
#: dihedral augmentation (the remedy for memorising one fixed draw), Adam.
DEFAULT_RECIPE: dict[str, Any] = {"widths": (8, 16, 32), "steps": 300, "batch_size": 8, "learning_rate": 2e-3,
                                  "augment": True}

#: The JSON file (package data) that holds the measured defaults.
CONSTANTS_FILE = Path(__file__).with_name("calibration.json")

#: Significant digits each measured number is stored with (:func:`write_constants`).
SIGNIFICANT = {"n_eff": 6, "clean_dice": 5, "sparse_dice": 5, "capacity": 5, "memorisation_index": 5,
               "no_augment_capacity": 6}


def fit_kwargs(**recipe: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`metastructure.train.fit` for a recipe: :data:`DEFAULT_RECIPE` with
    ``recipe``'s keys replaced (``widths`` of the U-Net, ``steps``, ``batch_size``, ``learning_rate``,
    ``augment``), e.g. ``fit_kwargs(steps=100)``.

    Raises:
        ValueError: a key that is not a recipe key.
    """
    r = {**DEFAULT_RECIPE, **recipe}
    unknown = set(r) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; a recipe has {sorted(DEFAULT_RECIPE)}")
    return {"model": nets.unet(widths=tuple(int(w) for w in r["widths"])), "steps": int(r["steps"]),
            "batch_size": int(r["batch_size"]), "learning_rate": float(r["learning_rate"]),
            "augment": bool(r["augment"])}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The two numbers of a training recipe the predictions need, and how they were obtained.

    Attributes:
        n_eff: noisy labels each decision of the network pools (the free
            parameter of :func:`theory.curves.pooled_dice`).
        clean_dice: pooled Dice of the network trained on clean labels, at 1/2.
        recipe: the training recipe (:data:`DEFAULT_RECIPE`'s keys).
        label: the sparse label type it was fitted on (a ``LabelNoise`` name).
        sparse_dice: that network's pooled Dice at its t* (None for a default).
        capacity: k of the memorisation index k / n_fg for this recipe,
            from the sparse network's index on its training images (None: not measured).
        memorisation_index: that index (mean output on the drawn pixels minus
            on the foreground pixels the draw left out).
        n_train, n_holdout: images trained on and scored on.
        source: "calibrated", or where a default comes from.
    """

    n_eff: float
    clean_dice: float
    recipe: dict
    label: str = "sample 0.1"
    sparse_dice: float | None = None
    capacity: float | None = None
    memorisation_index: float | None = None
    n_train: int = 0
    n_holdout: int = 0
    source: str = "calibrated"

    def __post_init__(self):
        rec = {k: tuple(int(w) for w in v) if k == "widths" else v for k, v in self.recipe.items()}
        object.__setattr__(self, "recipe", rec)

    @property
    def fit_kwargs(self) -> dict[str, Any]:
        """``train.fit(key, images, labels, **cal.fit_kwargs)`` trains the network the predictions are about."""
        return fit_kwargs(**self.recipe)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``Calibration.from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The calibration :meth:`to_dict` wrote (e.g. read back from a ``plan.json``)."""
        return cls(**d)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else float(f"{float(value):.{digits}g}")


def read_constants(*, path: str | Path | None = None) -> tuple[Calibration, float]:
    """``(default calibration, no-augmentation capacity)`` from a constants file (default: the package's,
    :data:`CONSTANTS_FILE`), as :func:`write_constants` wrote it.

    Raises:
        OSError: no such file.
        KeyError, TypeError: a file without the two entries.
    """
    if path is None:
        text = resources.files(__package__).joinpath(CONSTANTS_FILE.name).read_text()
    else:
        text = Path(path).read_text()
    record = json.loads(text)
    return Calibration.from_dict(record["default_calibration"]), float(record["no_augment_capacity"])


def write_constants(*, default: Calibration | None = None, no_augment_capacity: float | None = None,
                    path: str | Path | None = None) -> dict[str, Any]:
    """Store measured defaults in a constants file (default: the package's, :data:`CONSTANTS_FILE`), rounded to
    :data:`SIGNIFICANT` digits; an entry not given keeps the file's value. Returns the record written.

    The experiments that measure the defaults call it at the full profile
    (``simulations.planner.publish``, ``simulations.memorisation.publish``);
    :data:`DEFAULT` and :data:`NO_AUGMENT_CAPACITY` read the package's file at import.

    Raises:
        TypeError: ``default`` is not a :class:`Calibration`.
        ValueError: ``no_augment_capacity`` is not a positive number, or the file would lack an entry
            (a new file needs both).
    """
    target = CONSTANTS_FILE if path is None else Path(path)
    record: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
    if default is not None:
        if not isinstance(default, Calibration):
            raise TypeError(f"default must be a Calibration, got {type(default).__name__}")
        cal = default.to_dict()
        for k, digits in SIGNIFICANT.items():
            if k in cal:
                cal[k] = _round(cal[k], digits)
        cal["recipe"] = {k: list(v) if isinstance(v, tuple) else v for k, v in cal["recipe"].items()}
        record["default_calibration"] = cal
    if no_augment_capacity is not None:
        k = float(no_augment_capacity)
        if not k > 0:
            raise ValueError(f"no_augment_capacity must be a positive number, got {no_augment_capacity!r}")
        record["no_augment_capacity"] = _round(k, SIGNIFICANT["no_augment_capacity"])
    missing = {"default_calibration", "no_augment_capacity"} - set(record)
    if missing:
        raise ValueError(f"{target} would lack {sorted(missing)}: give them")
    out = {"about": "measured defaults of metastructure.planner (DEFAULT, NO_AUGMENT_CAPACITY), written by "
                    "'python -m simulations run planner|memorisation --profile full'",
           "default_calibration": record["default_calibration"], "no_augment_capacity": record["no_augment_capacity"]}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, target)
    return out


_MEASURED = read_constants()

#: The calibration without the user's images: :func:`metastructure.planner.calibrate` on the 32 training tiles
#: (64 x 64) of the packaged real nuclei (``data.real_nuclei(tile=64)``) with :data:`DEFAULT_RECIPE`, key 0, by
#: ``python -m simulations run planner --profile full`` (``results.calibration`` of figures/planner.json),
#: read from :data:`CONSTANTS_FILE` at import.
DEFAULT: Calibration = _MEASURED[0]

#: The k of the memorisation index k / n_fg for the recipe *without* augmentation (U-Net 8-16-32, 400 steps of
#: batch 8 on 64 x 64 NUC-like images), fitted by ``python -m simulations run memorisation --profile full``
#: (``results.fitted_k`` of figures/memorisation.json), read from :data:`CONSTANTS_FILE` at import.
NO_AUGMENT_CAPACITY: float = _MEASURED[1]
