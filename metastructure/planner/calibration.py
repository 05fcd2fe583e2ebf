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
import functools
import json
import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .. import _checks, nets
from ..noise import LabelNoise
from .law import N_EFF_MAX, N_EFF_MIN, ScaleLaw

__all__ = [
    "CONSTANTS_FILE",
    "DEFAULT",
    "DEFAULT_RECIPE",
    "NO_AUGMENT_CAPACITY",
    "N_EFF_MAX",
    "N_EFF_MIN",
    "Calibration",
    "fit_kwargs",
    "read_constants",
    "write_constants",
]

#: The training recipe the predictions are about: ``train.fit`` with ``nets.unet(widths, activation)``, fixed
#: labels, dihedral augmentation (the remedy for memorising one fixed draw), Adam, on ``crop`` x ``crop`` windows
#: (images no larger are taken whole; None: whole images), so that a step costs the same on any image size.
#: Leaky ReLU and the 16-32-64 widths make heavily flipped networks fail to train far less often than ReLU at
#: 8-16-32, whose networks on ``flip 0.4 0.4`` labels could lose their last layer's channels and output a
#: constant (bench/README.md, "Calibration failures").
DEFAULT_RECIPE: dict[str, Any] = {"widths": (16, 32, 64), "activation": "leaky_relu", "steps": 300, "batch_size": 8,
                                  "learning_rate": 2e-3, "augment": True, "crop": 64}
#: Recipe keys added after calibrations were first recorded, with the value a record without them trained with.
_LEGACY_RECIPE = {"crop": None, "activation": "relu"}

#: The JSON file (package data) that holds the measured defaults.
CONSTANTS_FILE = Path(__file__).with_name("calibration.json")


#: Significant digits each measured number is stored with (:func:`write_constants`).
SIGNIFICANT = {"n_eff": 6, "clean_dice": 5, "sparse_dice": 5, "capacity": 5, "memorisation_index": 5,
               "no_augment_capacity": 6}


def _dice_value(name: str, value: Any) -> float:
    """``value`` as a float Dice: a finite real number in [0, 1]; ``ValueError`` / ``TypeError`` naming ``name``."""
    v = _checks.check_real_number(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a Dice, a number in [0, 1], got {value!r}")
    return v


def _check_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``recipe`` (some of :data:`DEFAULT_RECIPE`'s keys) checked, ``widths`` as a tuple of ints."""
    unknown = set(recipe) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; a recipe has {sorted(DEFAULT_RECIPE)}")
    out = dict(recipe)
    if "widths" in out:
        w = out["widths"]
        if isinstance(w, (str, bytes)) or not isinstance(w, (list, tuple)) or not w:
            raise TypeError(f"recipe widths must be a non-empty list of channel counts, got {w!r}")
        out["widths"] = tuple(_checks.check_int("recipe widths", v, minimum=1) for v in w)
    for k in ("steps", "batch_size"):
        if k in out:
            out[k] = _checks.check_int(f"recipe {k}", out[k], minimum=1)
    if "learning_rate" in out:
        out["learning_rate"] = _checks.check_real_number("recipe learning_rate", out["learning_rate"], minimum=0.0,
                                                         strict=True)
    if "augment" in out and not isinstance(out["augment"], bool):
        raise TypeError(f"recipe augment must be True or False, got {out['augment']!r}")
    if isinstance(out.get("crop"), (list, tuple)):  # one side per spatial axis, None: that side whole
        if len(out["crop"]) not in (2, 3):
            raise ValueError(f"recipe crop must be an int, or one side per spatial axis (2 or 3), got {out['crop']!r}")
        out["crop"] = tuple(None if v is None else _checks.check_int("recipe crop", v, minimum=1)
                            for v in out["crop"])
        if all(v is None for v in out["crop"]):  # every side whole: whole images
            out["crop"] = None
    elif out.get("crop") is not None:
        out["crop"] = _checks.check_int("recipe crop", out["crop"], minimum=1)
    if "activation" in out and out["activation"] not in nets.ACTIVATIONS:
        raise ValueError(f"recipe activation must be one of {tuple(nets.ACTIVATIONS)}, got {out['activation']!r}")
    return out


def fit_kwargs(*, ndim: int | None = None, **recipe: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`metastructure.train.fit` for a recipe: :data:`DEFAULT_RECIPE` with
    ``recipe``'s keys replaced (``widths`` and ``activation`` of the U-Net, ``steps``, ``batch_size``,
    ``learning_rate``, ``augment``, ``crop``), e.g. ``fit_kwargs(steps=100)``; with ``ndim=3`` the U-Net is
    3-D (``nets.unet(ndim=3)``, for volumes; ``crop`` cuts cubes, each side at most the volume's, or, as a
    list, one side per axis as :func:`metastructure.train.fit` takes it, e.g. ``[8, None, None]``). ``ndim``
    None (default): the number of sides such a crop names, else 2.

    Raises:
        ValueError: a key that is not a recipe key, a count below 1, a learning rate that is not a finite
            number > 0, an activation not in :data:`metastructure.nets.ACTIVATIONS`, a crop list whose length
            is not ``ndim``.
        TypeError: widths not a non-empty list of ints, steps / batch_size / crop not an int (crop: or a list of
            ints and None), augment not a bool.
    """
    r = _check_recipe({**DEFAULT_RECIPE, **recipe})
    sides = len(r["crop"]) if isinstance(r["crop"], tuple) else None
    ndim = _checks.check_ndim(ndim if ndim is not None else sides or 2)
    if sides is not None and sides != ndim:
        raise ValueError(f"recipe crop {list(r['crop'])} names {len(r['crop'])} sides, but ndim={ndim}")
    return {"model": nets.unet(widths=r["widths"], activation=r["activation"], ndim=ndim), "steps": r["steps"],
            "batch_size": r["batch_size"], "learning_rate": r["learning_rate"], "augment": r["augment"],
            "crop": r["crop"]}


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
        n_train, n_holdout: images trained on (the training-set size the
            calibration describes; the steps are ``recipe["steps"]``) and scored on.
        source: "calibrated", or where a default comes from; a calibration
            whose n_eff sits at an end of its search range ([:data:`N_EFF_MIN`,
            :data:`N_EFF_MAX`]: a bound, not a measurement) says so here
            (:func:`metastructure.planner.calibrate`).

    Every value is checked when the record is built (the constructor and
    :meth:`from_dict` alike), numbers stored as floats and ints.

    Raises:
        ValueError: ``n_eff`` not a finite number in [:data:`N_EFF_MIN`,
            :data:`N_EFF_MAX`]; ``clean_dice`` or
            ``sparse_dice`` not a Dice (finite, in [0, 1]); ``capacity`` not a
            finite number >= 0; ``memorisation_index`` not finite in [-1, 1]
            (a difference of two mean outputs in [0, 1]); ``n_train`` or
            ``n_holdout`` negative; a law with ``n_train`` below 1 or another
            steps x batch than the recipe's; ``label`` not the name of a sampled or
            flipped label type (f + b != 1); an empty ``source``; a recipe
            key that is not one of :data:`DEFAULT_RECIPE`'s, or a recipe
            value out of range (:func:`fit_kwargs`).
        TypeError: a value of the wrong type (a number that is not real, a
            count that is not an int, a recipe that is not a dict, a label or
            source that is not a str).
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
    law: ScaleLaw | None = None

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)
        n_eff = _checks.check_real_number("n_eff", self.n_eff)
        if not N_EFF_MIN <= n_eff <= N_EFF_MAX:
            raise ValueError(f"n_eff must lie in [N_EFF_MIN, N_EFF_MAX] = [{N_EFF_MIN:g}, {N_EFF_MAX:g}] (labels "
                             f"per decision), got {self.n_eff!r}")
        put("n_eff", n_eff)
        put("clean_dice", _dice_value("clean_dice", self.clean_dice))
        if self.sparse_dice is not None:
            put("sparse_dice", _dice_value("sparse_dice", self.sparse_dice))
        if self.capacity is not None:
            put("capacity", _checks.check_real_number("capacity", self.capacity, minimum=0.0))
        if self.memorisation_index is not None:
            index = _checks.check_real_number("memorisation_index", self.memorisation_index)
            if not -1.0 <= index <= 1.0:
                raise ValueError(f"memorisation_index must lie in [-1, 1] (a difference of two mean outputs), "
                                 f"got {self.memorisation_index!r}")
            put("memorisation_index", index)
        for name in ("n_train", "n_holdout"):
            put(name, _checks.check_int(name, getattr(self, name), minimum=0))
        if not isinstance(self.recipe, Mapping):
            raise TypeError(f"recipe must be a dict of training settings, got {type(self.recipe).__name__}")
        put("recipe", _check_recipe(self.recipe))
        if not isinstance(self.label, str):
            raise TypeError(f"label must be a label type's name (a str), got {self.label!r}")
        try:
            family = LabelNoise.parse(self.label).family
        except ValueError as e:
            raise ValueError(f"label {self.label!r} is not a label type's name: {e}") from None
        if family != "RCL":
            raise ValueError(f"label must name the sampled or flipped label type calibrated on ('sample p' or "
                             f"'flip f b', f + b != 1), got {self.label!r}")
        if isinstance(self.law, Mapping):
            put("law", ScaleLaw.from_dict(self.law))
        elif self.law is not None and not isinstance(self.law, ScaleLaw):
            raise TypeError(f"law must be a planner.ScaleLaw, its dict or None, got {type(self.law).__name__}")
        if self.law is not None:
            if self.n_train < 1:
                raise ValueError("a calibration with a scale law needs its n_train (the training-set size it "
                                 f"predicts at by default), got {self.n_train}")
            r = {**DEFAULT_RECIPE, **self.recipe}
            seen = r["steps"] * r["batch_size"]
            whole = r["crop"] is None  # whole images: steps x batch; windows: a part of it
            if (not math.isclose(self.law.images_seen, seen, rel_tol=1e-9) if whole
                    else self.law.images_seen > seen * (1 + 1e-9)):
                raise ValueError(f"the law's images_seen ({self.law.images_seen}) is not "
                                 + ("" if whole else "at most ") + f"the recipe's steps x batch_size ({seen})")
            if self.law.batch_size is not None and self.law.batch_size != r["batch_size"]:
                raise ValueError(f"the law's batch_size ({self.law.batch_size}) is not the recipe's "
                                 f"({r['batch_size']})")
        if not isinstance(self.source, str) or not self.source.strip():
            raise (TypeError if not isinstance(self.source, str) else ValueError)(
                f"source must be a non-empty str, got {self.source!r}")

    @property
    def fit_kwargs(self) -> dict[str, Any]:
        """``train.fit(key, images, labels, **cal.fit_kwargs)`` trains the network the predictions are about."""
        return fit_kwargs(**self.recipe)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``Calibration.from_dict`` reads it back)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["recipe"] = dict(self.recipe)
        out["law"] = None if self.law is None else self.law.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The calibration :meth:`to_dict` wrote (e.g. read back from a ``plan.json``), its values checked as the
        constructor checks them. A recipe with every key but ``crop`` and / or ``activation`` (a full record
        from before recipes had them) trained on whole images and / or with ReLU: it is read with ``crop`` None,
        ``activation`` "relu".

        Raises:
            TypeError: ``d`` is not a dict, or a value of the wrong type (the constructor's).
            ValueError: ``d`` lacks ``n_eff``, ``clean_dice`` or ``recipe``, has a key that is not a field, or a
                value out of range (the constructor's).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a dict (what Calibration.to_dict wrote), got {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        missing = [k for k in ("n_eff", "clean_dice", "recipe") if k not in d]
        if unknown or missing:
            raise ValueError(f"d is not a calibration record: {f'unknown keys {unknown}' if unknown else ''}"
                             f"{'; ' if unknown and missing else ''}{f'missing {missing}' if missing else ''} "
                             f"(the keys are {fields})")
        if isinstance(d["recipe"], Mapping):
            absent = set(DEFAULT_RECIPE) - set(d["recipe"])
            if absent and absent <= set(_LEGACY_RECIPE):
                d = {**d, "recipe": {**d["recipe"], **{k: _LEGACY_RECIPE[k] for k in absent}}}
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
