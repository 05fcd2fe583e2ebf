"""The results store: one JSON file per cell, keyed by what the cell computes.

A *cell* is a JSON-able ``spec`` (what to compute: data, label type, training
setup, seed...). Its key is a hash of the canonical JSON of the spec, so

* two experiments that need the same computation share one cell (the clean
  network of ``rcl_sampling`` is the clean network of ``pcl``);
* a changed configuration is a new cell, never a stale hit.

Files live in ``ROOT/KIND/SLUG-KEY.json`` (plus ``.npz`` for arrays, written
before the JSON). Every file is written to a temporary name and renamed, and
the JSON is written last: a cell exists if and only if its JSON does, so a
run killed at any moment leaves either a finished cell or nothing, and a
resumed run recomputes exactly the unfinished cells.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._io import atomic_write, versions

__all__ = ["Store", "cell_key"]


def _canonical(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def cell_key(spec: dict) -> str:
    """The first 16 hex digits of the SHA-256 of the spec's canonical JSON."""
    return hashlib.sha256(_canonical(spec).encode()).hexdigest()[:16]


def _jsonable(o: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists."""
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _slug(spec: dict) -> str:
    label = spec.get("label") or spec.get("kind", "cell")
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(label)).strip("-")[:60] or "cell"


class Store:
    """Finished cells under ``root``; see the module docstring.

    ``stamp(spec) -> spec`` is applied to every spec first: the runner uses it
    to add the version of the code that computes the cell (so experiments never
    write versions by hand, and a bumped version is a new cell).
    """

    def __init__(self, root: str | Path, *, stamp: Callable[[dict], dict] | None = None):
        self.root = Path(root)
        self._stamp = stamp or (lambda spec: spec)

    def spec(self, spec: dict) -> dict:
        """The spec as stored: stamped."""
        return self._stamp(spec)

    def key(self, spec: dict) -> str:
        """The cell's key: :func:`cell_key` of the stamped spec."""
        return cell_key(self._stamp(spec))

    def path(self, spec: dict, suffix: str = ".json") -> Path:
        spec = self._stamp(spec)
        kind = re.sub(r"[^A-Za-z0-9_]+", "_", str(spec.get("kind", "cell")))
        return self.root / kind / f"{_slug(spec)}-{cell_key(spec)}{suffix}"

    def has(self, spec: dict) -> bool:
        return self.path(spec).exists()

    def load(self, spec: dict) -> dict:
        """The stored record ``{"spec", "result", "seconds", "versions"}`` of a finished cell."""
        spec = self._stamp(spec)
        p = self.path(spec)
        if not p.exists():
            raise KeyError(f"cell not in the store: {p.name} ({_canonical(spec)[:200]})")
        return json.loads(p.read_text())

    def result(self, spec: dict) -> dict:
        return self.load(spec)["result"]

    def arrays(self, spec: dict) -> dict[str, np.ndarray]:
        """The arrays a cell saved (an empty dict when it saved none)."""
        p = self.path(spec, ".npz")
        if not p.exists():
            return {}
        with np.load(p) as z:
            return {k: z[k] for k in z.files}

    def put(self, spec: dict, result: dict, arrays: dict[str, np.ndarray] | None = None,
            seconds: float = 0.0) -> None:
        spec = self._stamp(spec)
        path = self.path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write(self.path(spec, ".npz"), buf.getvalue())
        record = {"spec": spec, "key": cell_key(spec), "result": result, "seconds": seconds,
                  "versions": versions()}
        atomic_write(path, (json.dumps(record, indent=1, default=_jsonable) + "\n").encode())

    def compute(self, spec: dict, fn: Callable[[dict], Any], *, force: bool = False) -> tuple[dict, bool]:
        """The cell's result, computing (and storing) it unless finished; returns (result, computed).

        ``fn(spec)`` (called with the stamped spec) returns a result dict, or ``(result, arrays)``.
        """
        spec = self._stamp(spec)
        if not force and self.has(spec):
            return self.result(spec), False
        t0 = time.perf_counter()
        out = fn(spec)
        result, arrays = out if isinstance(out, tuple) else (out, None)
        self.put(spec, result, arrays, time.perf_counter() - t0)
        return json.loads(json.dumps(result, default=_jsonable)), True
