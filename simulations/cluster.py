"""Cells on Dask distributed: from the cores of one machine to a cluster (``pip install metastructure[cluster]``).

A cell (one network, one label type, one seed) is the unit of parallel work.
The driver (the process that runs ``python -m simulations ... --workers N`` or
calls :func:`simulations.runner.run_experiments` with ``client=``) submits to
Dask only the cells its store lacks, each once however many experiments share
it; workers compute and send back ``(result, arrays)``; the driver writes each
cell to its store as it arrives (atomic, as in-process) and draws each figure
once the cells it reads are in. Workers need the package installed, but no
shared filesystem and no write access to the store.

* **One machine**: :func:`open_client` with ``workers=N`` starts a
  ``LocalCluster`` of N worker processes, each running one cell at a time on
  ``threads`` cores of its own (its CPU affinity is set before JAX starts, which
  is what sets XLA:CPU's thread pools; XLA's flags do not reach every kernel).
* **A cluster**: ``open_client(scheduler="tcp://host:8786")`` connects to a
  running scheduler (``dask scheduler``, then ``dask worker ADDRESS --nthreads 1``
  on each machine; dask-jobqueue and dask-kubernetes start the same). Those
  workers keep the cores they were given; use ``taskset -c ...`` to choose.

Numbers do not depend on where a cell ran, given the number of cores its
process has: XLA:CPU's sums split over its threads, so a cell computed on one
core and the same cell on two differ in the last bits of the parameters and
then by up to about a percent of them after a few hundred steps
(``bench/sweep.py`` prints the effect on the test Dice). On one core
each, a LocalCluster run is bitwise equal to ``taskset -c 0 python -m
simulations ...`` in one process.

Compilation: every worker process (and the in-process path of ``python -m
simulations``) keeps JAX's persistent compilation cache in
:func:`metastructure.runtime.compilation_cache_dir` (shared by the workers of
one machine, so a program compiled by one worker is loaded, not recompiled, by
the others and by later runs; one cache serves any thread count). The
directory holds a fingerprint of the CPU and the jaxlib version, so a home
folder shared by machines of different kinds never mixes their code; JAX locks
the cache (``filelock``) so that workers never read an entry another is still
writing, and keeps it under :data:`metastructure.runtime.CACHE_BYTES` (least
recently used entries go first). Where the directory cannot be written a worker keeps its
cache in its own local directory; ``METASTRUCTURE_JAX_CACHE=""`` turns the
cache off.

From a script, start the client under ``if __name__ == "__main__":`` (worker
processes are spawned, and import the script's main module); notebooks need
nothing special::

    from simulations import cluster, runner
    with cluster.open_client(workers=4) as client:
        runner.run_experiments(["rcl_sampling", "pcl"], "figures", profile="full", client=client)

Faults: a worker that dies mid-cell costs that cell's recomputation (Dask runs
it again elsewhere; a cell whose workers die three times is reported as
failed); a cell that raises is reported with its spec and the others go on;
Ctrl-C cancels what is queued and keeps what finished. The in-process path
(no ``client``) never imports Dask.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from metastructure import runtime

from .registry import CellFailure, CellsFailed, compute_cell
from .store import Store

try:
    import distributed
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - the message says what to install
    raise ImportError("running cells on Dask needs distributed: pip install 'metastructure[cluster]'") from None

__all__ = ["CONNECT_TIMEOUT_S", "CellFailure", "CellWorker", "CellsFailed", "compile_seconds", "compute_cells",
           "core_sets", "count_compile_time", "open_client", "setup_process", "worker_info"]

#: Seconds :func:`open_client` waits for a running scheduler to answer (Dask's own default is 30): a scheduler
#: that is up answers in milliseconds; an address where none listens should fail while the user still watches.
#: A Dask configuration that sets ``distributed.comm.timeouts.connect`` to another value than Dask's wins.
CONNECT_TIMEOUT_S = 5.0
_CONNECT_KEY = "distributed.comm.timeouts.connect"


def _connect_timeout() -> float:
    """:data:`CONNECT_TIMEOUT_S`, or the user's own ``distributed.comm.timeouts.connect`` where their Dask
    configuration (a YAML file, an environment variable, ``dask.config.set``) changed it from Dask's default."""
    import dask.config
    from dask.utils import parse_timedelta

    shipped = set()  # the value Dask's own default configuration files give
    for defaults in dask.config.defaults:
        with contextlib.suppress(KeyError, TypeError):
            shipped.add(defaults["distributed"]["comm"]["timeouts"]["connect"])
    configured = dask.config.get(_CONNECT_KEY, None)
    if configured is None or configured in shipped:
        return CONNECT_TIMEOUT_S
    return float(parse_timedelta(configured, default="seconds"))

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]  # this process's time in JAX's tracing, lowering and compiling (or loading from the cache)
_counting = [False]


# ------------------------------------------------------------------ on the workers
def _pin(cores: list[int]) -> bool:
    """Set the CPU affinity of every thread of this process (threads started later inherit it)."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cores)
    return True


def _count_compile(event: str, seconds: float, **_: Any) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += seconds


def compile_seconds() -> float:
    """This process's seconds in JAX's tracing, lowering and compiling (or loading from the cache)
    since :func:`count_compile_time` was first called."""
    return _compile_seconds[0]


def count_compile_time() -> None:
    """Start adding JAX's compile events to :func:`compile_seconds` (once per process: idempotent)."""
    if not _counting[0]:
        import jax

        jax.monitoring.register_event_duration_secs_listener(_count_compile)
        _counting[0] = True


def setup_process(*, cores: list[int] | None = None, local_directory: str | None = None) -> dict:
    """Prepare this (worker) process before its first cell; returns what it did.

    glibc's allocator set to keep its pages (:func:`metastructure.configure_cpu`
    with ``xla=False``: numbers unchanged), the process pinned to ``cores``,
    JAX's persistent compilation cache on
    (:func:`metastructure.runtime.use_compilation_cache`; in
    ``local_directory/jax-cache`` where its directory cannot be written),
    compile time counted. Must come before JAX's backend starts.
    """
    done: dict[str, Any] = {"cores": None, "cache": None, "allocator": False}
    if not runtime.backend_started():
        # glibc gives each thread (a Dask worker computes in an executor thread) an arena that it trims
        # after every large free, so XLA's scratch buffers are faulted in afresh at every step: one arena
        # that keeps its pages instead (numbers unchanged; metastructure.runtime.configure_cpu)
        done["allocator"] = runtime.configure_cpu(xla=False, allocator=True)["allocator"]
    if cores:
        if runtime.backend_started():
            warnings.warn("a worker's JAX backend had started before it was pinned; its thread count is the "
                          "machine's", RuntimeWarning, stacklevel=2)
        elif _pin(cores):
            done["cores"] = list(cores)
    done["cache"] = runtime.use_compilation_cache(
        fallback=Path(local_directory) / "jax-cache" if local_directory else None)
    if done["cache"] is not None:
        done["cache"] = str(done["cache"])
    count_compile_time()
    return done


def _cell(spec: dict) -> dict:
    """The task a worker runs: one cell, timed, with the compile time it took."""
    compiled = compile_seconds()
    t0 = time.perf_counter()
    out = compute_cell(spec)
    result, arrays = out if isinstance(out, tuple) else (out, None)
    return {"result": result, "arrays": arrays, "seconds": time.perf_counter() - t0,
            "compile_seconds": compile_seconds() - compiled}


class CellWorker(WorkerPlugin):
    """Runs :func:`setup_process` on each worker as it joins: its cores (``cores[str(worker.name)]``,
    LocalCluster workers only) and the compilation cache. ``local`` workers (the driver's children)
    ignore SIGINT: Ctrl-C in the terminal is the driver's to handle."""

    name = "metastructure-cells"

    def __init__(self, cores: dict | None = None, *, local: bool = False):
        self.cores = cores
        self.local = local

    def setup(self, worker) -> None:
        if self.local and threading.current_thread() is threading.main_thread():
            # a local worker shares the driver's terminal: Ctrl-C is the driver's to handle (it cancels the
            # queued cells and closes the cluster), not a traceback in every worker
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        mine = None if self.cores is None else self.cores.get(str(worker.name))
        worker.metastructure = setup_process(cores=mine, local_directory=worker.local_directory)


# ------------------------------------------------------------------ on the driver
def core_sets(workers: int, threads: int, available: Iterable[int] | None = None) -> list[list[int]]:
    """The cores of each of ``workers`` local workers, ``threads`` each, taken in order from the
    ``available`` ones (this process's affinity), wrapping around when there are too few.

    >>> core_sets(2, 1, [0, 1])
    [[0], [1]]
    >>> core_sets(3, 2, [0, 1, 2, 3])
    [[0, 1], [2, 3], [0, 1]]
    """
    cpus = sorted(available if available is not None else os.sched_getaffinity(0))
    if threads > len(cpus):
        raise ValueError(f"threads_per_worker={threads} but this process may use {len(cpus)} core(s)")
    per_round = len(cpus) // threads
    return [cpus[(i % per_round) * threads:(i % per_round) * threads + threads] for i in range(workers)]


def _check_address(scheduler: Any) -> str:
    """``scheduler`` as a Dask address (``tcp://host:port``, or another scheme Dask knows); ``ValueError`` naming it."""
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be an address string such as tcp://host:8786, got {scheduler!r}")
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, loc = parse_address(scheduler)
        get_backend(scheme)  # an unknown scheme raises
        if scheme in ("tcp", "tls"):
            host, _ = parse_host_port(loc)
            if not host:
                raise ValueError("no host")
    except ValueError as e:
        raise ValueError(f"scheduler must be a Dask scheduler address such as tcp://host:8786, got {scheduler!r} "
                         f"({e})") from None
    return scheduler


@contextlib.contextmanager
def open_client(workers: int | None = None, *, threads_per_worker: int = 1, scheduler: str | None = None,
                progress: bool = False, connect_timeout: float | None = None) -> Iterator[Any]:
    """A Dask ``Client`` for the cells, closed (with its LocalCluster) on exit.

    Args:
        workers: start a ``LocalCluster`` of this many worker processes, one
            cell at a time each.
        threads_per_worker: cores per local worker process (its CPU affinity,
            hence XLA:CPU's thread count). ``workers * threads_per_worker`` at
            most the cores this process may use, else workers share cores (warned).
        scheduler: the address of a running scheduler (``tcp://host:8786``)
            instead of a local cluster; its workers keep their own cores.
        connect_timeout: seconds to wait for ``scheduler`` to answer (default
            :data:`CONNECT_TIMEOUT_S`, read at each call, or your Dask
            configuration's ``distributed.comm.timeouts.connect`` where you set one).

    Raises:
        ImportError: Dask distributed is not installed (``pip install metastructure[cluster]``).
        ValueError: neither or both of ``workers`` and ``scheduler``, counts below 1, a
            ``scheduler`` that is not an address (no port, an unknown scheme), or a
            ``connect_timeout`` that is not a positive number.
        TypeError: a ``scheduler`` that is not a string.
        OSError: no scheduler answered at ``scheduler`` within ``connect_timeout``.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError("give one of workers (a local cluster) or scheduler (an address)")
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if int(threads_per_worker) != threads_per_worker or threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be an int >= 1, got {threads_per_worker!r}")
    import logging

    if scheduler is not None:
        scheduler = _check_address(scheduler)
        timeout = _connect_timeout() if connect_timeout is None else connect_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}")
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except OSError as e:
            raise OSError(f"no Dask scheduler answered at {scheduler} within {timeout:g} s (is `dask scheduler` "
                          f"running there, and reachable from here?): {e}") from None
        with client:
            client.register_plugin(CellWorker(None))
            yield client
        return
    pinned = hasattr(os, "sched_setaffinity")
    cores = None
    if pinned:
        sets = core_sets(workers, threads_per_worker)
        if workers * threads_per_worker > len(os.sched_getaffinity(0)):
            warnings.warn(f"{workers} workers x {threads_per_worker} threads exceed the "
                          f"{len(os.sched_getaffinity(0))} cores this process may use: workers share cores",
                          RuntimeWarning, stacklevel=3)
        cores = {str(i): c for i, c in enumerate(sets)}
    else:
        warnings.warn("this system cannot pin processes to cores: each worker's thread count is the machine's",
                      RuntimeWarning, stacklevel=3)
    import dask

    # the workers' statistical profiler samples the computing thread every 10 ms on the worker's own core;
    # their logs stay quiet up to CRITICAL: a cell's error and a dead worker reach the driver, which reports
    # them, while on Ctrl-C a worker whose scheduler has gone logs a heartbeat traceback at ERROR (a race)
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
    try:
        with distributed.Client(cluster) as client:
            client.register_plugin(CellWorker(cores, local=True))
            yield client
    finally:
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


def compute_cells(client: Any, store: Store, specs: Iterable[dict], *, force: bool = False,
                  progress: Any = None) -> Iterator[tuple[str, CellFailure | None, bool]]:
    """Compute the cells of ``specs`` the store lacks on ``client``'s workers, storing each as it arrives.

    Yields ``(key, failure, computed)`` for every distinct cell as it becomes
    ready: first the usable stored ones (``computed`` False), then the others
    in the order they finish (``failure`` a :class:`CellFailure` when the cell
    raised or its workers kept dying; nothing is stored for it). ``force``
    recomputes every cell. A stored cell that cannot be used is recomputed with
    a ``RuntimeWarning`` naming its file. ``progress`` is a tqdm-like bar
    (``update``, ``set_postfix_str``) advanced once per cell.

    On ``KeyboardInterrupt`` (or any error of the driver) the queued cells are
    cancelled; those already stored stay.
    """
    unique: dict[str, dict] = {}
    for s in specs:
        unique.setdefault(store.key(s), store.spec(s))
    todo = []
    for key, spec in unique.items():
        why = "forced" if force else store.problem(spec)
        if why is None:
            if progress is not None:
                progress.update(1)
            yield key, None, False
            continue
        if why not in ("missing", "forced"):
            warnings.warn(f"store: {store.path(spec)}: {why}; recomputing it", RuntimeWarning, stacklevel=2)
        todo.append((key, spec))
    if not todo:
        return
    futures = {client.submit(_cell, spec, key=f"cell-{key}-{time.time_ns()}", pure=False): (key, spec)
               for key, spec in todo}
    try:
        for fut in distributed.as_completed(list(futures)):
            key, spec = futures.pop(fut)
            if fut.status == "finished":
                out = fut.result()
                store.put(spec, out["result"], out["arrays"], out["seconds"], compile_seconds=out["compile_seconds"])
                failure = None
            else:
                exc = fut.exception()
                failure = CellFailure(key=key, label=spec.get("label", key), spec=spec,
                                      error=f"{type(exc).__name__}: {exc}",
                                      traceback="".join(_format_tb(fut)))
            fut.release()
            if progress is not None:
                progress.set_postfix_str(spec.get("label", key)[:40], refresh=False)
                progress.update(1)
            yield key, failure, failure is None
    finally:
        if futures:
            with contextlib.suppress(Exception):
                client.cancel(list(futures), force=True)


def _format_tb(fut) -> list[str]:
    import traceback

    try:
        tb = fut.traceback()
    except Exception:  # noqa: BLE001 - a traceback is a courtesy
        return []
    return traceback.format_tb(tb) if tb is not None else []


def worker_info(client: Any) -> dict[str, dict]:
    """What each worker's set-up did (cores, cache) and its compile seconds so far, by worker address."""

    def info(dask_worker=None):
        return {**getattr(dask_worker, "metastructure", {}), "compile_seconds": compile_seconds(), "pid": os.getpid()}

    return client.run(info)
