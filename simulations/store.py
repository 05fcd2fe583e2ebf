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

What is read is verified. A record holds its key, its spec and the SHA-256 of
its result and of its ``.npz``; :meth:`Store.problem` says why a stored cell
cannot be used (unreadable or empty JSON, another cell's record under this
name, an edited result, a missing or altered ``.npz``), :meth:`Store.compute`
then recomputes it and warns (``RuntimeWarning``, naming the file), and
:meth:`Store.load` / :meth:`Store.arrays` raise :class:`CorruptCell` instead of
returning it. Records written before digests existed are checked by key and
spec only.

Several processes may share one store: :meth:`Store.compute` holds an
exclusive lock per cell (``fcntl.flock`` on ``ROOT/.locks/KEY.lock``, released
by the operating system even when a process is killed) while it checks and
computes, so a cell is computed once and the others wait for it and read it.
Where ``fcntl`` does not exist (Windows) there is no lock, and two processes
may both compute a cell; the atomic renames keep the store consistent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write, versions

__all__ = ["CorruptCell", "Store", "cell_key"]


class CorruptCell(ValueError):
    """A stored cell that cannot be used as it is (the message names its file and why)."""


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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _result_digest(result: Any) -> str:
    """SHA-256 of the result's canonical JSON (as stored, so a round trip does not change it)."""
    return _digest(json.dumps(result, sort_keys=True, separators=(",", ":"), default=_jsonable).encode())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed); no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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
        """The file of a cell: ``ROOT/KIND/SLUG-KEY{suffix}``, KIND and SLUG read from the stamped spec."""
        spec = self._stamp(spec)
        kind = re.sub(r"[^A-Za-z0-9_]+", "_", str(spec.get("kind", "cell")))
        return self.root / kind / f"{_slug(spec)}-{cell_key(spec)}{suffix}"

    def has(self, spec: dict) -> bool:
        """Whether the cell's JSON exists (:meth:`problem` says whether it can be used)."""
        return self.path(spec).exists()

    def _record(self, spec: dict) -> tuple[dict | None, str | None]:
        """(the record, None) if the stored JSON is this cell's and its result is intact, else (None, why)."""
        spec = self._stamp(spec)
        p = self.path(spec)
        try:
            text = p.read_text()
        except FileNotFoundError:
            return None, "missing"
        except OSError as e:
            return None, f"unreadable ({e})"
        if not text.strip():
            return None, "empty file"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            return None, f"not valid JSON ({e.msg} at line {e.lineno})"
        if not isinstance(record, dict) or not {"spec", "key", "result"} <= set(record):
            return None, "not a cell record (no spec, key or result)"
        if record["key"] != cell_key(spec) or _canonical(record["spec"]) != _canonical(json.loads(_canonical(spec))):
            return None, f"holds another cell's record (key {record['key']})"
        digest = record.get("digest")
        if digest is not None and not isinstance(digest, dict):
            return None, "not a cell record (malformed digest)"
        if digest is not None and _result_digest(record["result"]) != digest.get("result"):
            return None, "its result was changed after it was written (digest mismatch)"
        return record, None

    def _usable(self, spec: dict) -> tuple[dict | None, str | None]:
        """(the record, None) if the whole cell can be used, else (None, why): :meth:`_record` plus its ``.npz``."""
        record, why = self._record(spec)
        if why is not None:
            return None, why
        digest = (record.get("digest") or {}).get("arrays")
        if digest is not None:
            p = self.path(spec, ".npz")
            if not p.exists():
                return None, f"its arrays file {p.name} is missing"
            if _digest(p.read_bytes()) != digest:
                return None, f"its arrays file {p.name} was changed after it was written (digest mismatch)"
        return record, None

    def problem(self, spec: dict) -> str | None:
        """Why the stored cell cannot be used ("missing", "empty file", ...), or None when it can.

        Checks the JSON (readable, this cell's key and spec, the result's
        digest) and the ``.npz`` the record names (present, same digest).
        """
        return self._usable(spec)[1]

    def load(self, spec: dict) -> dict:
        """The stored record ``{"spec", "key", "result", "digest", "seconds", "versions"}`` of a finished cell.

        Raises:
            KeyError: the cell is not in the store.
            CorruptCell: its JSON cannot be used (see :meth:`problem`).
        """
        spec = self._stamp(spec)
        record, why = self._record(spec)
        if why == "missing":
            raise KeyError(f"cell not in the store: {self.path(spec)} ({_canonical(spec)[:200]})")
        if why is not None:
            raise CorruptCell(f"{self.path(spec)}: {why}; run the experiment again to recompute it")
        return record

    def result(self, spec: dict) -> dict:
        """The stored result of a finished cell (:meth:`load`'s errors)."""
        return self.load(spec)["result"]

    def arrays(self, spec: dict) -> dict[str, np.ndarray]:
        """The arrays a cell saved (an empty dict when it saved none), verified against the record's digest.

        Raises:
            CorruptCell: the record names arrays whose file is missing or altered.
        """
        for attempt in range(2):
            record = self.load(spec)
            digest = (record.get("digest") or {}).get("arrays")
            p = self.path(spec, ".npz")
            if digest is None and ("digest" in record or not p.exists()):  # saved none (a legacy record: if absent)
                return {}
            try:
                data = p.read_bytes()
            except FileNotFoundError:
                data = None
            if data is not None and (digest is None or _digest(data) == digest):
                with np.load(io.BytesIO(data)) as z:
                    return {k: z[k] for k in z.files}
            if attempt == 0:  # another process may be rewriting the cell (npz first, JSON last): wait for it
                with _locked(self.root / ".locks" / f"{cell_key(self._stamp(spec))}.lock"):
                    pass
        why = "missing (its cell's record names arrays)" if data is None else \
            "changed after it was written (digest mismatch)"
        raise CorruptCell(f"{p}: {why}; run the experiment again to recompute it")

    def put(self, spec: dict, result: dict, arrays: dict[str, np.ndarray] | None = None,
            seconds: float = 0.0, *, compile_seconds: float | None = None) -> None:
        """Write a finished cell (arrays first, the JSON last, each atomically).

        ``seconds``: how long it took; ``compile_seconds``: of which JAX's
        tracing and compiling, where measured (cells computed on Dask workers).
        """
        spec = self._stamp(spec)
        path = self.path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        npz_digest = None
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            npz_digest = _digest(buf.getvalue())
            atomic_write(self.path(spec, ".npz"), buf.getvalue())
        result = json.loads(json.dumps(result, default=_jsonable))  # as it will read back
        record = {"spec": spec, "key": cell_key(spec), "result": result,
                  "digest": {"result": _result_digest(result), "arrays": npz_digest},
                  "seconds": seconds, "versions": versions()}
        if compile_seconds is not None:
            record["compile_seconds"] = compile_seconds
        atomic_write(path, (json.dumps(record, indent=1, default=_jsonable) + "\n").encode())

    def compute(self, spec: dict, fn: Callable[[dict], Any], *, force: bool = False) -> tuple[dict, bool]:
        """The cell's result, computing (and storing) it unless finished; returns (result, computed).

        ``fn(spec)`` (called with the stamped spec) returns a result dict, or
        ``(result, arrays)``. A stored cell that cannot be used (:meth:`problem`)
        is recomputed with a ``RuntimeWarning`` naming its file and why. A cell
        found usable is read without locking; otherwise the cell's lock is taken,
        the check repeated and the computation done under it, so concurrent
        processes compute each cell once.
        """
        spec = self._stamp(spec)
        if not force:
            record, _ = self._usable(spec)
            if record is not None:
                return record["result"], False
        with _locked(self.root / ".locks" / f"{cell_key(spec)}.lock"):
            record, why = (None, "forced") if force else self._usable(spec)
            if record is not None:  # another process finished it while this one waited
                return record["result"], False
            if why not in ("missing", "forced"):
                warnings.warn(f"store: {self.path(spec)}: {why}; recomputing it", RuntimeWarning, stacklevel=2)
            t0 = time.perf_counter()
            out = fn(spec)
            result, arrays = out if isinstance(out, tuple) else (out, None)
            self.put(spec, result, arrays, time.perf_counter() - t0)
        return json.loads(json.dumps(result, default=_jsonable)), True
