"""Test-session settings, applied before any test computes with JAX.

XLA compiles every jitted function for the CPU, and in the default suite
(tiny shapes, many distinct programs) compiling, not running, is most of the
time. That suite therefore asks XLA's backend for optimisation level 0 unless
``XLA_FLAGS`` already sets a level: the programs compute the same functions
(results agree to float rounding) and compile in about half the time. The slow
suite trains for hundreds of steps, where optimised code pays for its compile:
it keeps XLA's defaults, as do the simulations and the benchmarks.
"""

import os


def pytest_configure(config):
    flags = os.environ.get("XLA_FLAGS", "")
    if config.getoption("markexpr", "").strip() == "not slow" and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
