"""Sweep throughput: a fixed set of full-profile cells in one process against Dask workers, in one run.

The cells (default: the 54 of ``rcl_sampling``'s full profile, training cells
of 200 steps on 256 images of 64^2; ``--cells N`` keeps the first N) are
computed from an empty store by each configuration in turn, each in a fresh
child process of this script, with JAX's persistent compilation cache as
``python -m simulations`` keeps it (:func:`metastructure.runtime.use_compilation_cache`)
empty (a first run on the machine); then ``in-process`` and the first
multi-worker configuration once more with the cache their first run left
(warm: every later run):

* ``in-process``: the default, one process with every core this one may
  use (XLA picks its threads), cells one after another;
* ``W x T``: a Dask LocalCluster (:mod:`simulations.cluster`) of W worker
  processes pinned to T cores each, for W in ``--workers`` (default 1, 2, 4,
  8, 16 up to the cores available), T = ``--threads-per-worker`` (default 1),
  sharing one cache; and the first multi-worker configuration once more with
  the cache off (``METASTRUCTURE_JAX_CACHE=""``; skip it with ``--no-cache-run``).

Printed: wall time, cells per minute, the speed-up over ``in-process`` with
the cache in the same state (wall-time ratio; > 1: the workers are faster;
the no-cache row against the empty-cache in-process row) and the share of
the cells' time spent tracing and compiling, or loading from the cache
(JAX's compile events). The first line says the machine. Target on a 2-core
machine: 2 x 1 at least 1.25x ``in-process``.

    python bench/sweep.py                      # every configuration this machine has cores for
    python bench/sweep.py --workers 2 --cells 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cells(experiment: str, n: int | None) -> list[dict]:
    from simulations import runner

    specs = runner.experiment(experiment).cells(runner.config_of(experiment, "full"))
    return specs[:n] if n else specs


def one(args: argparse.Namespace) -> dict:
    """In a child: compute the cells into a fresh store; what it took."""
    from metastructure import runtime
    from simulations import cluster, runner

    specs = cells(args.experiment, args.cells)
    with tempfile.TemporaryDirectory() as tmp:
        store = runner.open_store(args.store or tmp)
        t0 = time.perf_counter()
        if args.config == "in-process":
            cache = runtime.use_compilation_cache()  # as python -m simulations does (METASTRUCTURE_JAX_CACHE)
            cluster.count_compile_time()
            per_cell = []
            for s in specs:
                before = cluster.compile_seconds()
                c0 = time.perf_counter()
                store.compute(s, runner.compute_cell)
                per_cell.append((time.perf_counter() - c0, cluster.compile_seconds() - before))
        else:
            workers, threads = (int(v) for v in args.config.split("x"))
            with cluster.open_client(workers, threads_per_worker=threads) as client:
                started = time.perf_counter() - t0
                caches = {i["cache"] for i in cluster.worker_info(client).values()}
                cache = caches.pop() if len(caches) == 1 else f"{len(caches)} caches"
                for _, failure, _ in cluster.compute_cells(client, store, specs):
                    if failure is not None:
                        raise RuntimeError(str(failure))
            per_cell = []
            for s in specs:
                rec = store.load(s)
                per_cell.append((rec["seconds"], rec.get("compile_seconds", 0.0)))
        wall = time.perf_counter() - t0
    out = {"wall": wall, "cells": len(specs), "cell_seconds": sum(c for c, _ in per_cell),
           "compile_seconds": sum(k for _, k in per_cell), "first_cell": per_cell[0],
           "cache": None if cache is None else str(cache)}
    if args.config != "in-process":
        out["cluster_start"] = started
    return out


def run_child(config: str, args: argparse.Namespace, cache: str, store: str) -> dict:
    env = dict(os.environ)
    env["METASTRUCTURE_JAX_CACHE"] = cache  # "" turns it off
    cmd = [sys.executable, __file__, "--_child", config, "--experiment", args.experiment, "--_store", store]
    if args.cells:
        cmd += ["--cells", str(args.cells)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{config} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="rcl_sampling", help="whose full-profile cells (default rcl_sampling)")
    ap.add_argument("--cells", type=int, default=None, help="keep the first N cells")
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default 1 2 4 8 16)")
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--no-cache-run", action="store_true", help="skip the run with the compilation cache off")
    ap.add_argument("--_child", dest="config", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_store", dest="store", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.config is not None:
        print(json.dumps(one(args)))
        return
    cores = len(os.sched_getaffinity(0))
    t = args.threads_per_worker
    counts = args.workers or [w for w in (1, 2, 4, 8, 16) if w * t <= cores]
    import jax

    n = len(cells(args.experiment, args.cells))
    print(f"{platform.node()}: {cores} cores, {platform.processor() or platform.machine()}, jax {jax.__version__}; "
          f"{n} full-profile cells of {args.experiment}, an empty store for each row",
          flush=True)
    rows = []
    stores = []
    with tempfile.TemporaryDirectory() as caches:
        def cache_of(config):
            return str(Path(caches) / f"cache-{config}")

        runs = [("in-process", cache_of("in-process"), "in-process, cache empty", 0)]
        runs += [(f"{w}x{t}", cache_of(f"{w}x{t}"), f"{w} workers x {t} thread(s), cache empty", 0) for w in counts]
        multi = [w for w in counts if w > 1]
        if multi and not args.no_cache_run:
            runs.append((f"{multi[0]}x{t}", "", f"{multi[0]} workers x {t} thread(s), no cache", 0))
        warm = len(runs)
        runs.append(("in-process", cache_of("in-process"), "in-process, cache warm", warm))
        runs += [(f"{w}x{t}", cache_of(f"{w}x{t}"), f"{w} workers x {t} thread(s), cache warm", warm)
                 for w in multi[:1]]
        for i, (config, cache, name, against) in enumerate(runs):
            stores.append(str(Path(caches) / f"store-{i}"))
            r = run_child(config, args, cache, stores[-1])
            if (r["cache"] or "") != cache:
                sys.exit(f"{name}: the compilation cache was {r['cache']!r}, not {cache or None!r}")
            rows.append((name, r))
            base = rows[against][1]["wall"]
            print(f"{name:48s} {r['wall']:7.1f} s  {60 * r['cells'] / r['wall']:6.1f} cells/min  "
                  f"speed-up {base / r['wall']:5.2f}x  compile {100 * r['compile_seconds'] / r['cell_seconds']:4.1f}% "
                  f"of cell time (first cell {r['first_cell'][1]:.1f} of {r['first_cell'][0]:.1f} s)"
                  + (f"; cluster start {r['cluster_start']:.1f} s" if "cluster_start" in r else ""), flush=True)
        print("numbers against in-process (same cells, same seeds):")
        for (name, _), store in zip(rows[1:], stores[1:], strict=True):
            print(f"  {name:46s} {agreement(args, stores[0], store)}")
        print("numbers against the same configuration's first run (the cache changes none):")
        for i, (config, _, name, _) in enumerate(runs):
            first = next(k for k, r in enumerate(runs) if r[0] == config)
            if first != i:
                print(f"  {name:46s} {agreement(args, stores[first], stores[i])}")


def _leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path, float(x)


def agreement(args: argparse.Namespace, a: str, b: str) -> str:
    """How two stores' results of the same cells compare: cells bitwise equal (``train_seconds``
    aside), and the differences of the test Dice (``final.<protocol>.dice``) between them."""
    from simulations import runner

    sa, sb = runner.open_store(a), runner.open_store(b)
    equal, diffs = 0, []
    specs = cells(args.experiment, args.cells)
    for s in specs:
        ra, rb = sa.result(s), sb.result(s)
        equal += {**ra, "train_seconds": 0} == {**rb, "train_seconds": 0}
        da = {p: v for p, v in _leaves(ra["final"]) if p.endswith(".dice")}
        db = {p: v for p, v in _leaves(rb["final"]) if p.endswith(".dice")}
        diffs += [abs(da[p] - db[p]) for p in da.keys() & db.keys()]
    d = sorted(diffs)
    return (f"{equal} of {len(specs)} cells bitwise equal; |difference| of a test Dice (every protocol): median "
            f"{d[len(d) // 2]:.4f}, 90th percentile {d[int(0.9 * (len(d) - 1))]:.4f}, largest {d[-1]:.4f}")


if __name__ == "__main__":
    main()
