"""Writing results: atomic files, package versions, and the JSON + PNG pair of an experiment."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are for everyone to read
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    """Versions of the packages behind a result, for its JSON record."""
    import jax
    import matplotlib
    import numpy
    import scipy
    import sympy

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "sympy": sympy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def save(out: str | Path, stem: str, record: dict, draw: Callable[[Path], None]) -> dict:
    """Write ``OUT/stem.json`` (``record`` plus versions) and ``OUT/stem.png`` (drawn by ``draw(path)``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {**record, "versions": versions()}
    atomic_write(out / f"{stem}.json", (json.dumps(record, indent=2) + "\n").encode())
    draw_png(out, stem, draw)
    return record


def draw_png(out: str | Path, stem: str, draw: Callable[[Path], None]) -> None:
    """Draw ``OUT/stem.png`` through a uniquely named temporary file and a rename (concurrent runs may draw it)."""
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=".png")
    os.close(fd)
    try:
        draw(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, Path(out) / f"{stem}.png")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable(out: str | Path) -> Path:
    """Create ``out`` if needed and prove a file can be written there; ``OSError`` naming it otherwise."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(f"cannot write results to {out}: {e.strerror or e}") from None
    return out


def load(out: str | Path, stem: str) -> dict:
    """The JSON record an experiment wrote.

    Raises:
        FileNotFoundError: no ``OUT/stem.json`` (the message says how to make it).
        ValueError: the file is not valid JSON (truncated, edited), or not an
            experiment's record: not an object with the keys :data:`RECORD_KEYS`
            (``config`` and ``results`` objects), or another experiment's.
    """
    path = Path(out) / f"{stem}.json"
    again = f"run `python -m simulations run {stem} --out {out}` again to rewrite it"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: run `python -m simulations run {stem} --out {out}` "
                                "first (plot redraws a figure from the JSON a run wrote)") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise ValueError(f"{path} cannot be read as a JSON record ({type(e).__name__}): {again}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}): {again}") from None
    missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else list(RECORD_KEYS)
    if missing:
        raise ValueError(f"{path} is not an experiment's record (no {', '.join(map(repr, missing))}): {again}")
    if not isinstance(record["config"], dict) or not isinstance(record["results"], dict):
        raise ValueError(f"{path} is not an experiment's record (its config and results must be objects): {again}")
    if record["experiment"] != stem:
        raise ValueError(f"{path} holds the record of {record['experiment']!r}, not {stem!r}: {again}")
    return record


#: The keys every experiment's JSON record has (:func:`load` checks them).
RECORD_KEYS = ("experiment", "profile", "config", "results")
