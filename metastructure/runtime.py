"""Process set-up for fast CPU work: :func:`configure_cpu`.

Two settings, each optional:

* **XLA**: turn off XLA:CPU's YNNPACK fusions
  (``--xla_cpu_experimental_ynn_fusion_type=``), so convolutions and
  reductions run on XLA's own (Eigen) path. Whether that is faster depends on
  the network's size: measure your case (``bench/train.py``; bench/README.md
  has what it measured). It changes the order of floating-point sums, so
  trained parameters differ in the last bits from an unconfigured process
  (the same key still gives bitwise identical parameters within one
  configuration).
* **allocator** (glibc only): one malloc arena, no mmap for large blocks and no
  trimming (``mallopt``). XLA's per-execution scratch buffers and Eigen's
  packing buffers exceed glibc's mmap threshold, so without this every step
  maps fresh pages and faults them in; with it the pages are kept for reuse.
  The cost: memory freed by the process is kept rather than returned to the
  system (the resident size stays at its peak). Numbers are unchanged.

Both must happen before JAX starts its backend (its thread pools and flag
parsing), so call :func:`configure_cpu` first thing in a script or notebook,
before any JAX computation. Nothing here runs on import: the toolkit never
changes a process behind its user's back. ``python bench/train.py`` calls it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import platform
import sys
import warnings
from pathlib import Path

__all__ = ["backend_started", "configure_cpu", "has_ynn_flag"]

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_YNN_NAME = b"xla_cpu_experimental_ynn_fusion_type"

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def backend_started() -> bool:
    """Whether JAX's backend has started in this process (its flags parsed, its thread pools made):
    after that, :func:`configure_cpu` and a change of CPU affinity no longer reach XLA."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # no jax: nothing started
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else False


def has_ynn_flag() -> bool:
    """Whether this jaxlib knows XLA's YNNPACK fusion flag (``configure_cpu(xla=True)`` sets it only then,
    since XLA aborts on flags it does not know). Read from the strings of jaxlib's shared libraries."""
    try:
        import jaxlib
    except ImportError:
        return False
    for lib in sorted(Path(jaxlib.__file__).parent.glob("*.so")):
        try:
            with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if m.find(_YNN_NAME) >= 0:
                    return True
        except (OSError, ValueError):
            continue
    return False


def _tune_glibc_malloc() -> bool:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(_M_ARENA_MAX, 1)
    ok &= libc.mallopt(_M_MMAP_MAX, 0)
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok)


def configure_cpu(*, xla: bool = True, allocator: bool = True) -> dict[str, bool | str]:
    """Set this process up for fast CPU training; call it before any JAX computation.

    Args:
        xla: append ``--xla_cpu_experimental_ynn_fusion_type=`` to ``XLA_FLAGS``
            (YNNPACK fusions off), unless ``XLA_FLAGS`` already sets that flag
            (yours is kept) or this jaxlib does not know it.
        allocator: on Linux with glibc, one malloc arena, no mmap for large
            blocks and no trimming (``mallopt``), so large scratch buffers are
            reused instead of page-faulted in at every step.

    Returns:
        ``{"xla": ..., "allocator": ...}``: ``True`` where the setting took
        effect, ``False`` where it did not (not asked, not available, or too
        late), and ``"user"`` for an ``XLA_FLAGS`` that already chose.

    Warns (``RuntimeWarning``) and changes nothing when JAX's backend has
    already started: XLA has parsed its flags and created its threads by then.

    Example (first thing in a script, before any JAX computation)::

        import metastructure
        metastructure.configure_cpu()   # {'xla': True, 'allocator': True}
    """
    done: dict[str, bool | str] = {"xla": False, "allocator": False}
    if not (xla or allocator):
        return done
    if backend_started():
        warnings.warn("configure_cpu() came after JAX's backend started, so it changed nothing; call it before "
                      "the first JAX computation", RuntimeWarning, stacklevel=2)
        return done
    if xla:
        flags = os.environ.get("XLA_FLAGS", "")
        if _YNN_NAME.decode() in flags:
            done["xla"] = "user"
        elif has_ynn_flag():
            os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()
            done["xla"] = True
    if allocator:
        done["allocator"] = _tune_glibc_malloc()
    return done
