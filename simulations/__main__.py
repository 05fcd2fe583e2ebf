"""Command line: ``python -m simulations list | run NAME [NAME...] | all | plot NAME [NAME...] | report``.

Options of ``run`` and ``all``: ``--profile quick|full`` (quick: tiny sizes, one
seed, minutes; full: the configuration behind the published figures),
``--seeds N`` (seeds per cell), ``--out DIR`` (default ``./figures`` for the
full profile and ``./figures/quick`` for the quick one, in the current
directory), ``--force`` (recompute finished cells). Finished cells live in
``OUT/store`` and are never recomputed unless forced: an interrupted run
(Ctrl-C, or killed), started again, resumes where it stopped. A stored cell
that is damaged (truncated, edited, another cell's, its arrays missing) is
recomputed with a warning naming it; two runs on one ``--out`` compute each
cell once (a lock per cell). ``--out`` is checked for writing before any cell
trains. ``plot`` redraws figures from their
JSON alone; ``report`` writes the results document (every number from
``OUT/*.json``).

Parallel cells (needs ``pip install 'metastructure[cluster]'``): ``--workers N``
computes the cells on a Dask LocalCluster of N worker processes, each on
``--threads-per-worker T`` cores of its own (default 1); ``--scheduler ADDRESS``
on a running Dask cluster instead (one that does not answer within
:data:`simulations.cluster.CONNECT_TIMEOUT_S`, 5 s, or your Dask
configuration's ``distributed.comm.timeouts.connect`` where you set one, is an
error). Without either,
cells run one after another in this process and Dask is not imported.

Compiled programs are kept in JAX's persistent compilation cache
(:func:`metastructure.runtime.use_compilation_cache`: by default under
``~/.cache/metastructure/jax``; ``METASTRUCTURE_JAX_CACHE=DIR`` moves it, an
empty value turns it off), so a second run loads what the first compiled.
Numbers are the same with and without it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from metastructure import runtime

from . import report as _report
from . import runner
from ._io import atomic_write, check_writable

DEFAULT_OUT = Path("figures")  # relative: under the current directory, never inside the installed package


def _first_line(name: str) -> str:
    doc = runner.experiment(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main(argv: list[str] | None = None, *, compile_cache: bool = False) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    ``compile_cache`` turns on JAX's persistent compilation cache
    (:func:`metastructure.runtime.use_compilation_cache`) before ``run`` or
    ``all`` computes: ``python -m simulations`` does; a caller's own process
    keeps its own choice.
    """
    ap = argparse.ArgumentParser(prog="python -m simulations", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run the named experiments")
    run.add_argument("names", nargs="+", metavar="NAME")
    allp = sub.add_parser("all", help="run every experiment")
    plot = sub.add_parser("plot", help="redraw figures from their JSON")
    plot.add_argument("names", nargs="+", metavar="NAME")
    report = sub.add_parser("report", help="write the results document from OUT/*.json")
    report.add_argument("--doc", type=Path, default=None,
                        help="where to write it (default: OUT/README.md); image links are relative to it")
    for p in (run, allp, plot, report):
        p.add_argument("--out", type=Path, default=None,
                       help=f"output folder (default: ./{DEFAULT_OUT} of the current directory for --profile full, "
                       f"./{DEFAULT_OUT}/quick for quick, so a quick run never overwrites full-profile figures)")
        p.add_argument("--profile", choices=("quick", "full"), default="quick",
                       help="quick: tiny sizes, one seed (default); full: the README's figures")
    for p in (run, allp):
        p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the profile's)")
        p.add_argument("--force", action="store_true", help="recompute cells already in the store")
        par = p.add_mutually_exclusive_group()
        par.add_argument("--workers", type=int, default=None, metavar="N",
                         help="compute cells on a Dask LocalCluster of N worker processes")
        par.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="compute cells on a running Dask cluster (e.g. tcp://host:8786), which must answer "
                         "within 5 s (or Dask's distributed.comm.timeouts.connect, where you set it)")
        p.add_argument("--threads-per-worker", type=int, default=1, metavar="T",
                       help="cores per local worker process, i.e. XLA's threads (default 1)")
    args = ap.parse_args(argv)
    try:
        return _main(ap, args, compile_cache=compile_cache)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        print(f"\ninterrupted: finished cells are kept in {out}/store; run the same command again to resume",
              file=sys.stderr, flush=True)
        return 130
    except _UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except runner.CellsFailed as e:  # the others were stored and their experiments written
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


class _UserError(Exception):
    """A problem the user fixes (an unwritable --out, a figure with no JSON): one line, no traceback."""


def _main(ap: argparse.ArgumentParser, args: argparse.Namespace, *, compile_cache: bool) -> int:
    if args.command == "list":
        for name in runner.names():
            print(f"{name:18s} {_first_line(name)}")
        return 0
    if args.out is None:
        args.out = DEFAULT_OUT if args.profile == "full" else DEFAULT_OUT / "quick"
    if args.command in ("run", "all"):
        try:
            check_writable(args.out)  # before the first cell trains
        except OSError as e:
            raise _UserError(f"--out: {e}") from None
    if args.command == "report":
        doc = args.doc or args.out / "README.md"
        try:
            text = _report.render(args.out, doc_path=doc)
        except ValueError as e:  # a record that is not JSON, not a record, or lacks what its section reads
            raise _UserError(str(e)) from None
        try:
            doc.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(doc, text.encode())
        except OSError as e:  # a --doc under a regular file, a read-only folder
            file = next((a for a in (doc.parent, *doc.parent.parents) if a.exists() and not a.is_dir()), None)
            raise _UserError(f"--doc: cannot write {doc}: "
                             + (f"{file} is a file, not a folder" if file else str(e.strerror or e))) from None
        print(f"wrote {doc} from {args.out}/*.json", flush=True)
        return 0
    known = runner.names()
    names = list(known) if args.command == "all" else args.names
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"unknown experiment(s) {unknown}; choose from {', '.join(known)}")
    if args.command == "plot":
        for name in names:
            try:
                runner.replot(name, args.out)
            except (FileNotFoundError, ValueError) as e:  # no JSON, unreadable JSON, a corrupt store cell
                raise _UserError(str(e)) from None
            print(f"{name}: redrew {args.out}/{name}.png", flush=True)
        return 0
    if args.seeds is not None and args.seeds < 1:
        ap.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    if args.threads_per_worker < 1:
        ap.error(f"--threads-per-worker must be >= 1, got {args.threads_per_worker}")
    if args.scheduler is not None and args.threads_per_worker != 1:
        ap.error("--threads-per-worker sets local workers' cores; a cluster's workers keep the cores they were "
                 "started with (taskset, dask worker --nthreads)")
    missing = {n: why for n in names if (why := runner.unavailable(n))}
    if missing and args.command == "run":
        ap.error("; ".join(f"{n} {why}" for n, why in missing.items()))
    for name in missing:
        print(f"{name}: skipped, {missing[name]}", flush=True)
    names = [n for n in names if n not in missing]
    t_all = time.perf_counter()
    last = [t_all]

    def said(rec: dict) -> None:
        now = time.perf_counter()
        print(f"{rec.get('experiment')}: {len(rec['cells'])} cells ({rec['computed']} computed, {rec['reused']} "
              f"from the store); wrote {args.out}/{rec.get('experiment')}.png and .json in {now - last[0]:.1f} s",
              flush=True)
        last[0] = now

    kw = dict(profile=args.profile, seeds=args.seeds, force=args.force, on_record=said)
    if compile_cache:
        runtime.use_compilation_cache()
    if args.workers is None and args.scheduler is None:
        runner.run_experiments(names, args.out, **kw)
    else:
        try:
            from . import cluster
        except ImportError as e:
            raise _UserError(str(e)) from None
        with contextlib.ExitStack() as stack:
            try:  # only the connection's errors are the user's to fix: those of the run stay tracebacks
                client = stack.enter_context(cluster.open_client(
                    args.workers, threads_per_worker=args.threads_per_worker, scheduler=args.scheduler))
            except (OSError, ValueError) as e:
                raise _UserError(f"{'--scheduler' if args.scheduler is not None else '--workers'}: {e}") from None
            runner.run_experiments(names, args.out, client=client, **kw)
    print(f"total {time.perf_counter() - t_all:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(compile_cache=True))
