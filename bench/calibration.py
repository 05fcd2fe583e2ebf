"""How often the planner's calibration networks fail to train, for a recipe, over calibration keys.

``planner.calibrate`` with its defaults (a clean network, and 2 fixed draws
each of ``sample 0.1`` and ``flip 0.4 0.4`` at the training split and half of
it) on the images of ``bench/plan.py``'s second run: 20 NUC-like images of
256 x 256 (``data.nuclei(key(0), 20, size=256)``), written to PNG files and
read back with ``data.load_pairs`` as ``python -m metastructure plan --images``
reads them. One calibration per key; a draw's network whose held-out Dice is
below ``planner.FAILED`` x the clean network's failed to train. Prints each
key's networks (label type, training images, held-out Dice, failed) and its
wall time, then the failed count per label type over all keys.

    python bench/calibration.py [--keys 0 1 2 3 4] [--widths 16 32 64] [--activation leaky_relu]
                                [--steps 300] [--images 20] [--image-size 256]

The recipe is the planner's ``DEFAULT_RECIPE`` with the given keys replaced
(``--widths 8 16 32 --activation relu`` is the recipe before leaky ReLU).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
import warnings
from pathlib import Path

from plan import write_pngs  # bench/plan.py, beside this script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--widths", type=int, nargs="+", default=None)
    ap.add_argument("--activation", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=256)
    a = ap.parse_args()
    import jax

    from metastructure import data, planner, runtime

    runtime.configure_cpu()
    recipe = {k: v for k, v in (("widths", a.widths), ("activation", a.activation), ("steps", a.steps))
              if v is not None}
    print(f"recipe: {planner.fit_kwargs(**recipe)['model'].config}, overrides {recipe or 'none'}")
    d = data.nuclei(jax.random.key(0), a.images, size=a.image_size)
    with tempfile.TemporaryDirectory() as tmp:  # the PNG round trip of bench/plan.py and the plan command
        root = Path(tmp)
        write_pngs(d, root / "im", root / "mk")
        pairs = data.load_pairs(root / "im", root / "mk")
    failed: collections.Counter = collections.Counter()
    trained: collections.Counter = collections.Counter()
    for key in a.keys:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the failures are counted below
            cal = planner.calibrate(jax.random.key(key), pairs.images, pairs.masks, recipe=recipe, progress=False)
        wall = time.perf_counter() - t0
        points = cal.law.points if cal.law is not None else []
        for p in points:
            failed[p["label"]] += bool(p["failed"])
            trained[p["label"]] += 1
        print(f"key {key}: clean {cal.clean_dice:.3f}, {wall:.0f} s; "
              + "; ".join(f"{p['label']} n{p['n_images']} {p['dice']:.3f}" + (" FAILED" if p["failed"] else "")
                          for p in points), flush=True)
    for label in trained:
        print(f"{label}: {failed[label]} of {trained[label]} networks failed to train")


if __name__ == "__main__":
    main()
