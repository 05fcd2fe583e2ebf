"""Command line: ``python -m metastructure plan MASK_FOLDER [--images IMAGE_FOLDER] [--n-images N] [--out DIR]``.

``plan`` reads the binary masks of MASK_FOLDER (PNG or TIFF, the conventions
of :func:`metastructure.data.load_masks`) and prints the annotation plan of
:func:`metastructure.planner.table`: the predicted Dice of a network trained on
sparse, flipped, dilated, eroded, skeletonized or random labels of masks like
these, the threshold to use on its output, and when one fixed draw gets
memorised. With ``--images`` (images matched to the masks by file name, as
:func:`metastructure.data.load_pairs`) it first calibrates the training recipe
on them (:func:`metastructure.planner.calibrate`: a clean network and one per
label family, at two training-set sizes, ``--repeats`` draws each, every
run ``--steps`` steps on ``--crop`` x ``--crop`` windows, the recipe's by
default); without, it uses the default calibration measured on the packaged
real nuclei.
``--n-images N`` predicts for a training set of N images at the recipe's steps
(the calibration's scale law); each row gets its interval. ``--volumes`` reads
each file as a volume (a TIFF stack), plans with 3-D fields, calibrates 3-D
networks, and adds the rows "every k-th slice" (the unlabelled slices stored
as background, and ignored).
It writes ``plan.json`` (every number, the calibration included) and
``plan.png`` (predicted Dice against sampling ratio, flip rate and outline
error) to ``--out`` (default: the current directory).

A problem with the input (no folder, no mask files, a mask that is not binary,
masks without foreground or without background, images without masks, images
without contrast, masks too sparse to calibrate on) prints one line naming the
file and exits with status 2. Masks too thin for the model (1-px lines, tiny
spots: ``planner.unresolved``) get the rows it can predict and a line naming
the others; should every sampled and flipped row still come out at Dice 0, the
command refuses the plan (no table of zeros is printed, nothing is written).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metastructure", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="predict what cheaper labels of masks like these give")
    plan.add_argument("masks", type=Path, metavar="MASK_FOLDER", help="a folder of binary masks (PNG or TIFF)")
    plan.add_argument("--images", type=Path, default=None, metavar="IMAGE_FOLDER",
                      help="the images of the masks (same file names): calibrate on them (short trainings)")
    plan.add_argument("--out", type=Path, default=Path("."), help="where plan.json and plan.png go (default: .)")
    plan.add_argument("--seed", type=int, default=0, help="the calibration's key (default 0)")
    plan.add_argument("--steps", type=int, default=None,
                      help="training steps of each calibration run (default: the recipe's)")
    plan.add_argument("--crop", type=int, default=None, metavar="PX",
                      help="each calibration run trains on PX x PX windows of the images (default: the recipe's, "
                           "64; 0: whole images, slower on large ones)")
    plan.add_argument("--n-images", type=int, default=None, metavar="N",
                      help="predict for a training set of N images (default: the calibration's own number)")
    plan.add_argument("--repeats", type=int, default=None, metavar="R",
                      help="networks per label type and size in the calibration (default 2; more: a steadier "
                           "calibration and narrower intervals, at about R times the training)")
    plan.add_argument("--volumes", action="store_true",
                      help="each file is a volume, a TIFF stack of planes (Z or pages): 3-D fields and, with "
                           "--images, 3-D networks; the plan adds 'every k-th slice' rows (unlabelled slices as "
                           "background or ignored)")
    args = ap.parse_args(argv)
    try:
        return _plan(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr, flush=True)
        return 130
    except (ValueError, OSError, ImportError) as e:  # OSError: missing folders, an --out that is a file...
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def _plan(args: argparse.Namespace) -> int:
    from . import planner

    t0 = time.perf_counter()
    for flag, value, least in (("--steps", args.steps, 1), ("--repeats", args.repeats, 1), ("--crop", args.crop, 0)):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
        if value is not None and args.images is None:
            raise ValueError(f"{flag} sets how the calibration trains: it needs --images")
    if args.n_images is not None and args.n_images < 1:
        raise ValueError(f"--n-images must be >= 1, got {args.n_images}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)  # before any work: an --out that cannot be a folder fails now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            names, summary, cal = _work(args)
        finally:
            for msg in dict.fromkeys(str(w.message) for w in caught):  # once each, in order
                print(f"note: {msg}", file=sys.stderr)
    plan = planner.table(summary, calibration=cal, n_images=args.n_images)
    sampled = [r for r in plan.rows if r.family == "RCL"]  # sample 0.5 ... 0.01, flip 0.1 ... 0.4
    if sampled and all(r.dice < 5e-4 for r in sampled):  # every one would print as 0.000: a table of zeros
        raise ValueError(f"{args.masks}: the model predicts Dice 0 for every sampled and flipped label type of these "
                         f"{len(summary)} mask(s) ({summary.n_fg} foreground pixels), even for half the pixels "
                         "labelled: it cannot describe them (structures too thin or too small for it?), so there is "
                         "no plan to print (nothing written)")
    record = {"masks_folder": str(args.masks), "images_folder": None if args.images is None else str(args.images),
              "files": names, **plan.to_dict()}
    (out / "plan.json").write_text(json.dumps(record, indent=1) + "\n")
    plan.plot(out / "plan.png")
    print(plan.text())
    print(f"\nwrote {out / 'plan.json'} and {out / 'plan.png'} in {time.perf_counter() - t0:.1f} s")
    return 0


def _work(args: argparse.Namespace):
    """Read the masks (and images), calibrate when there are images: ``(names, Masks, calibration or None)``."""
    from . import data, planner

    nd = 3 if args.volumes else 2
    try:
        names, masks = data.load_masks(args.masks, ndim=nd)
    except data.NotBinaryMaskError as e:  # its advice (binary=False) is the library's; here, what the user can do
        raise ValueError(f"{e.path}: {e.summary()} (an instance or class map? the plan is for binary masks: save "
                         "each mask binarised, every label > 0 as 1, and run the command again)") from None
    paths = [str(args.masks / n) for n in names]
    summary = planner.Masks(masks, names=paths, ndim=nd)
    if args.images is None:
        return names, summary, None
    pairs = data.load_pairs(args.images, args.masks, ndim=nd)
    import jax

    from . import runtime

    runtime.configure_cpu()
    repeats = args.repeats or 2
    print(f"calibrating on {len(names)} image(s) of {args.images} (up to {2 + 4 * repeats} trainings) ...",
          file=sys.stderr, flush=True)
    recipe = {} if args.steps is None else {"steps": args.steps}
    if args.crop is not None:
        recipe["crop"] = args.crop or None  # 0: whole images
    cal = planner.calibrate(jax.random.key(args.seed), pairs.images, pairs.masks, recipe=recipe or None, names=paths,
                            repeats=repeats, ndim=nd)
    return names, summary, cal


if __name__ == "__main__":
    sys.exit(main())
