"""Input validation shared by the public functions.

Checks run only on concrete values: inside ``jax.jit`` or ``jax.vmap`` the
arguments are tracers whose values are unknown, and the checks are skipped
(documented in every public docstring that validates values).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__: list[str] = []


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a numpy array if its value is known now, else ``None``."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # pragma: no cover - exotic array types
        return None


def _real(v: np.ndarray) -> bool:
    return v.dtype == bool or np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)


def check_unit_interval(name: str, value: Any, *, scalar: bool = False) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` lies in [0, 1] (a single number with ``scalar``).

    ``TypeError`` for a value that is not real (None, a string, a complex number).
    """
    v = concrete(value)
    if v is None:
        return
    if not _real(v):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    if scalar and v.ndim != 0:
        raise ValueError(f"{name} must be a single number in [0, 1], got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def _static_number(name: str, value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a static Python number (it fixes array shapes), got a traced value")
    return check_real_number(name, value, minimum=0.0, strict=not allow_zero)


def check_positive(name: str, value: Any) -> float:
    """A static positive finite number (a bandwidth); ``ValueError`` otherwise."""
    return _static_number(name, value, allow_zero=False)


def check_radius(name: str, value: Any) -> float:
    """A static non-negative finite number (a structuring-element radius)."""
    return _static_number(name, value, allow_zero=True)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """A Python or numpy integer (not a bool, not a float such as ``3.0``), at least ``minimum``.

    Raises ``TypeError`` for a non-integer, ``ValueError`` below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v}")
    return v


def check_num_classes(num_classes: Any) -> int:
    """The number of classes M: an integer >= 2."""
    return check_int("num_classes", num_classes, minimum=2)


def check_ignore(ignore: Any, num_classes: int | None) -> int | None:
    """``ignore`` as an int (or None); ``ValueError`` when it is a real class (0/1, or [0, M)).

    An ignore value equal to a class would silently drop every pixel of that class.
    """
    if ignore is None:
        return None
    ig = check_int("ignore", ignore)
    classes = 2 if num_classes is None else int(num_classes)
    if 0 <= ig < classes:
        real = "0 or 1 (binary)" if num_classes is None else f"in [0, {classes})"
        raise ValueError(f"ignore={ig} is a real class ({real}): choose a value outside them, e.g. -1")
    return ig


def check_real_number(name: str, value: Any, *, minimum: float | None = None, strict: bool = False) -> float:
    """A finite real scalar (``minimum`` < value with ``strict``, else <=)."""
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or (minimum is not None and (v <= minimum if strict else v < minimum)):
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return v


def check_ndim(ndim: Any) -> int:
    if ndim not in (2, 3):
        raise ValueError(f"ndim (the number of spatial axes) must be 2 or 3, got {ndim!r}")
    return int(ndim)


def check_spatial(name: str, x: Any, ndim: int) -> None:
    if np.ndim(x) < ndim:
        raise ValueError(
            f"{name} must have at least {ndim} spatial axes (shape (..., {'D, ' if ndim == 3 else ''}H, W)), "
            f"got shape {np.shape(x)}"
        )


def check_binary(name: str, mask: Any, *, ignore: int | None = None) -> None:
    """``ValueError`` unless ``mask`` holds only 0/1 (or ``ignore``)."""
    m = concrete(mask)
    if m is None or m.dtype == bool:
        return
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise TypeError(f"{name} must be a bool or integer array, got dtype {m.dtype}")
    ok = (m == 0) | (m == 1)
    if ignore is not None:
        ok |= m == ignore
    if not np.all(ok):
        bad = np.unique(m[~ok])[:5]
        allowed = "0/1" + (f" or ignore={ignore}" if ignore is not None else "")
        hint = ""
        if np.all(np.isin(np.unique(m[~ok]), (255, 65535))):
            hint = " (an 8- or 16-bit mask stored as 0/255 or 0/65535? binarise it, e.g. mask > 0)"
        raise ValueError(f"{name} must be binary ({allowed}); found values {bad.tolist()}{hint}")


def check_labels(name: str, labels: Any, num_classes: int, *, ignore: int | None) -> None:
    """``ValueError`` unless labels are integers in [0, num_classes) or ``ignore``."""
    lab = concrete(labels)
    if lab is None:
        return
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise TypeError(f"{name} must be an integer class map, got dtype {lab.dtype}")
    ok = (lab >= 0) & (lab < num_classes)
    if ignore is not None:
        ok |= lab == ignore
    if not np.all(ok):
        bad = np.unique(lab[~ok])[:5]
        raise ValueError(
            f"{name} must hold classes in [0, {num_classes})"
            + (f" or ignore={ignore}" if ignore is not None else "")
            + f"; found {bad.tolist()}"
        )


def check_transition(name: str, transition: Any, *, atol: float = 1e-5, wide: bool = False) -> None:
    """``ValueError`` unless ``transition`` is a square row-stochastic matrix (``wide``: M x K with
    K >= M, a label type with extra noisy classes such as void)."""
    t = concrete(transition)
    if t is None:
        return
    if not _real(t):
        raise TypeError(f"{name} must be a real M x M matrix, got {transition!r}")
    if t.ndim != 2 or t.shape[0] < 2 or (t.shape[1] < t.shape[0] if wide else t.shape[0] != t.shape[1]):
        want = "an M x K matrix with K >= M >= 2" if wide else "a square M x M matrix with M >= 2"
        raise ValueError(f"{name} must be {want}, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < -atol):
        raise ValueError(f"{name} must have finite non-negative entries, got {t.tolist()}")
    rows = t.sum(axis=1)
    if not np.allclose(rows, 1.0, atol=atol):
        hint = ""
        if np.isclose(t.sum(), 1.0, atol=atol):
            hint = (" (its entries sum to 1: a joint distribution Q = diag(prior) T? "
                    "T is Q with each row normalised, ntm.estimate)")
        raise ValueError(f"rows of {name} must sum to 1, got row sums {rows.tolist()}{hint}")


def check_joint(name: str, joint: Any, *, atol: float = 1e-6) -> np.ndarray:
    """A square joint distribution of (clean, noisy) labels: finite, non-negative, entries summing to 1.

    A transition matrix (rows summing to 1, entries summing to M) is named as such.
    """
    q = np.asarray(joint)
    if not _real(q):
        raise TypeError(f"{name} must be a real M x M matrix, got {joint!r}")
    q = q.astype(np.float64)
    if q.ndim != 2 or q.shape[0] != q.shape[1] or q.shape[0] < 1:
        raise ValueError(f"{name} must be a square M x M matrix, got shape {q.shape}")
    if not np.all(np.isfinite(q)) or np.any(q < -atol):
        raise ValueError(f"{name} must have finite non-negative entries, got {q.tolist()}")
    if not np.isclose(q.sum(), 1.0, atol=atol):
        if q.shape[0] > 1 and np.allclose(q.sum(axis=1), 1.0, atol=atol):
            raise ValueError(f"{name} has rows summing to 1: that is a transition matrix T, not a joint "
                             "distribution (entries summing to 1); pass ntm.joint_from_transition(T, prior)")
        raise ValueError(f"the entries of {name} must sum to 1 (a joint distribution), got {q.sum()}")
    return q


def check_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {np.shape(a)} and {np.shape(b)}")


def check_finite(name: str, x: Any) -> None:
    """``TypeError`` unless ``x`` is a real (bool, integer or float) array; ``ValueError`` on NaN or inf."""
    v = concrete(x)
    if v is None:
        return
    if not _real(v):
        raise TypeError(f"{name} must be a real-valued array, got dtype {v.dtype}")
    if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_nonempty(name: str, x: Any) -> None:
    """``ValueError`` for an array with no element."""
    if np.size(x) == 0:
        raise ValueError(f"{name} is empty (shape {np.shape(x)})")
