"""Process set-up for fast CPU work: :func:`configure_cpu` and :func:`use_compilation_cache`.

:func:`configure_cpu` has two settings, each optional:

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

:func:`use_compilation_cache` keeps what XLA compiles on disk (JAX's
persistent compilation cache), so the next process that needs the same program
loads it instead of compiling it again: the network's steps, and the many small
programs a first run compiles besides (JAX's random initialisers and the data
generators compile once per array shape). Numbers are unchanged: the cache
holds the executable the process would compile, and its key holds no thread
count: XLA splits its sums over the threads it has when a program runs
(``tests/test_runtime.py`` checks a cache written by a one-core process
against a two-core one).
``python -m simulations`` and its Dask workers call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import mmap
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

__all__ = ["CACHE_BYTES", "CACHE_ENV", "backend_started", "compilation_cache_dir", "configure_cpu", "has_ynn_flag",
           "use_compilation_cache"]

#: The environment variable that places (or, empty, turns off) the persistent compilation cache.
CACHE_ENV = "METASTRUCTURE_JAX_CACHE"
#: The cache's bound in bytes: beyond it the least recently used entries are evicted.
CACHE_BYTES = 2 * 2**30

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


# ------------------------------------------------------------------ the persistent compilation cache
def _fingerprint() -> str:
    """What compiled CPU code depends on: the machine's architecture and instruction-set flags, jaxlib."""
    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except ImportError:  # pragma: no cover - the toolkit needs jax
        jaxlib_version = "none"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{platform.machine()} {platform.system()} {jaxlib_version} {flags}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def compilation_cache_dir() -> Path | None:
    """Where :func:`use_compilation_cache` keeps compiled programs by default; None when turned off.

    ``$METASTRUCTURE_JAX_CACHE`` if set (empty: off), else
    ``${XDG_CACHE_HOME:-~/.cache}/metastructure/jax/FINGERPRINT``, FINGERPRINT a
    hash of the CPU's architecture and instruction-set flags and the jaxlib
    version: a home folder shared by machines of different kinds never mixes
    their code.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "metastructure" / "jax" / _fingerprint()


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def use_compilation_cache(*, path: str | os.PathLike | None = None,
                          fallback: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process; returns the directory, or None.

    Every program this process compiles from now on is written to the
    directory (however short its compile), and one compiled before, by this or
    another process, is loaded instead of compiled. Processes may share the
    directory: JAX locks its entries (``filelock``) so none reads an entry
    another is still writing, and keeps the directory under
    :data:`CACHE_BYTES` (least recently used entries go first).

    Args:
        path: the directory; default :func:`compilation_cache_dir` (which
            ``METASTRUCTURE_JAX_CACHE=""`` turns off: then nothing changes and
            None is returned).
        fallback: where to go when ``path`` cannot be created or written (a
            worker's local scratch folder, say); None: no cache then.

    Returns:
        The directory in use, or None when the cache is off, no directory is
        writable, or it came too late (warned).

    Warns (``RuntimeWarning``) and changes nothing when JAX's backend has
    already started: JAX decides at the first compilation whether to use a
    cache, and keeps that decision. Call it before any JAX computation. It
    replaces a directory given to JAX otherwise (``JAX_COMPILATION_CACHE_DIR``);
    when it returns None it leaves such a setting as it was.
    """
    if backend_started():
        warnings.warn("use_compilation_cache() came after JAX's backend started, so it changed nothing; call it "
                      "before the first JAX computation", RuntimeWarning, stacklevel=2)
        return None
    cache = Path(path).expanduser() if path is not None else compilation_cache_dir()
    if cache is None:
        return None
    if not _writable_dir(cache):
        cache = Path(fallback).expanduser() if fallback is not None else None
        if cache is None or not _writable_dir(cache):
            return None
    import jax

    try:  # JAX's size bound (LRU eviction) locks the entries with filelock (a dependency of the toolkit)
        import filelock  # noqa: F401
    except ImportError:
        warnings.warn("filelock is not installed, so the compilation cache grows without bound: "
                      "pip install filelock", RuntimeWarning, stacklevel=2)
    else:
        jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # every entry, however small
    return cache
