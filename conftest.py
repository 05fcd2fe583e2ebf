"""Test-session settings, applied before any test computes with JAX.

XLA compiles every jitted function for the CPU, and in the default suite
(tiny shapes, many distinct programs) compiling, not running, is most of the
time. That suite therefore asks XLA's backend for optimisation level 0 unless
``XLA_FLAGS`` already sets a level: the programs compute the same functions
(results agree to float rounding) and compile in about half the time. The slow
suite trains for hundreds of steps, where optimised code pays for its compile:
it keeps XLA's defaults, as do the simulations and the benchmarks.

The processes a test starts (``python -m simulations ...``, Dask workers) keep
JAX's persistent compilation cache in a directory of this test session, not in
the user's ``~/.cache``, unless ``METASTRUCTURE_JAX_CACHE`` is set already.
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


def pytest_unconfigure(config):
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)
