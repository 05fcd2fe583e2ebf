"""Test-session settings, applied before any test computes with JAX.

XLA compiles every jitted function for the CPU, and in the default suite
(tiny shapes, many distinct programs) compiling, not running, is most of the
time. That suite therefore asks XLA's backend for optimisation level 0 unless
``XLA_FLAGS`` already sets a level: the programs compute the same functions
(results agree to float rounding) and compile in about half the time. The slow
suite trains for hundreds of steps, where optimised code pays for its compile:
it keeps XLA's defaults, as do the simulations and the benchmarks.

The test processes themselves (pytest-xdist's workers) and the processes a
test starts (``python -m simulations ...``, Dask workers) keep JAX's
persistent compilation cache in a directory of this test session, not in the
user's ``~/.cache``, unless ``METASTRUCTURE_JAX_CACHE`` is set already
(``""`` turns it off): a program one worker compiled, another loads (the same
program, so the same numbers), without the size bound that
:func:`metastructure.runtime.use_compilation_cache` sets for a user's cache.
"""

import os
import shutil
import tempfile

_CACHE_ENV = "METASTRUCTURE_JAX_CACHE"  # metastructure.runtime.CACHE_ENV (not imported here: no JAX before the flags)
_made: list[str] = []


def pytest_configure(config):
    flags = os.environ.get("XLA_FLAGS", "")
    if config.getoption("markexpr", "").strip() == "not slow" and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
    if _CACHE_ENV not in os.environ:  # pytest-xdist's workers inherit the controller's
        _made.append(tempfile.mkdtemp(prefix="metastructure-test-jax-cache-"))
        os.environ[_CACHE_ENV] = _made[-1]
    if os.environ[_CACHE_ENV]:  # this process too (not through runtime.use_compilation_cache: its size bound
        import jax  # locks every entry, which costs more than it saves in a folder the session deletes)

        jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)
