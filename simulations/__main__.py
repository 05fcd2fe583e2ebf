"""Command line: ``python -m simulations list | run NAME [NAME...] | all [--profile quick|full] [--out DIR]``.

``--profile quick`` (default) runs each experiment at tiny sizes; ``full`` runs
the configuration whose numbers the README quotes. Experiments without a quick
profile (the demo, the theory curves) take seconds either way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import demo, learning, theory_curves

EXPERIMENTS = {"demo": demo, "theory_curves": theory_curves, "learning": learning}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "figures"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run the named experiments")
    run.add_argument("names", nargs="+", metavar="NAME")
    allp = sub.add_parser("all", help="run every experiment")
    for p in (run, allp):
        p.add_argument("--out", type=Path, default=None,
                       help=f"output folder (default: {DEFAULT_OUT} for --profile full, {DEFAULT_OUT}/quick for quick, "
                       "so a quick run never overwrites the committed full-profile figures)")
        p.add_argument("--profile", choices=("quick", "full"), default="quick",
                       help="quick: tiny sizes (default); full: the configuration behind the README's numbers")
    args = ap.parse_args(argv)

    if args.command == "list":
        for name, mod in EXPERIMENTS.items():
            print(f"{name:16s} {mod.__doc__.strip().splitlines()[0]}")
        return 0
    if args.out is None:
        args.out = DEFAULT_OUT if args.profile == "full" else DEFAULT_OUT / "quick"
    names = list(EXPERIMENTS) if args.command == "all" else args.names
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        ap.error(f"unknown experiment(s) {unknown}; choose from {sorted(EXPERIMENTS)}")
    for name in names:
        t0 = time.perf_counter()
        mod = EXPERIMENTS[name]
        config = getattr(mod, "QUICK", mod.CONFIG) if args.profile == "quick" else getattr(mod, "FULL", mod.CONFIG)
        mod.run(args.out, config)
        stem = "demo_density" if name == "demo" else name
        print(f"{name}: wrote {args.out}/{stem}.png and .json in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
