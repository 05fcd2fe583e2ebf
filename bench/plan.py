"""The `plan` command's wall time, as a user runs it, against the issue's targets.

1. ``python -m metastructure plan MASKS`` on 100 masks of 512 x 512 (default
   calibration): target under 10 s.
2. ``python -m metastructure plan MASKS --images IMAGES`` on 20 NUC-like images
   of 256 x 256 (the calibration: a clean network and ``--repeats`` draws of a
   sampled and a flipped label type, at the training split and half of it,
   each the default recipe, 300 steps of batch 8 on 64 x 64 crops; 10
   trainings by default): target under 5 minutes on 2 cores.

Each is a fresh process (imports, JAX start-up and compilation included), on
PNG files written first; the bench prints each time and its ratio to the
target, and for (2) the calibration's line and its warnings (networks that
failed to train). The masks of (1) are random
disks (5-40 px radius, about 10-25% foreground), the images of (2)
``data.nuclei(key(0), 20, size=256)``.

    python bench/plan.py [--masks 100] [--size 512] [--images 20] [--image-size 256]
                         [--repeats R] [--steps S] [--crop PX]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _disks(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    m = np.zeros((size, size), np.uint8)
    target = rng.uniform(0.1, 0.25)
    while m.mean() < target:
        cy, cx = rng.integers(0, size, 2)
        r = rng.uniform(5, 40)
        m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    return m


def write_pngs(d, images: Path, masks: Path) -> None:
    """A data set as PNG files a user would have: each image min-max scaled to 8 bits, its mask 0/1, both named
    ``nNN.png`` (``bench/calibration.py`` reads the same files)."""
    images.mkdir()
    masks.mkdir()
    for i, (x, m) in enumerate(zip(np.asarray(d.images[..., 0]), np.asarray(d.masks), strict=True)):
        Image.fromarray(((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)).save(images / f"n{i:02d}.png")
        Image.fromarray(m.astype(np.uint8)).save(masks / f"n{i:02d}.png")


def _run(args: list[str]) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "metastructure", "plan", *args], capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"plan failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc.stdout, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--repeats", type=int, default=None, help="the plan command's --repeats (default: its own)")
    ap.add_argument("--steps", type=int, default=None, help="the plan command's --steps (default: the recipe's)")
    ap.add_argument("--crop", type=int, default=None,
                    help="the plan command's --crop (default: the recipe's, 64; 0: whole images)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        (root / "masks").mkdir()
        for i in range(a.masks):
            Image.fromarray(_disks(rng, a.size)).save(root / "masks" / f"m{i:03d}.png")
        wall, out, _ = _run([str(root / "masks"), "--out", str(root / "out1")])
        print(f"plan, {a.masks} masks of {a.size}^2, default calibration: {wall:.1f} s "
              f"(target 10 s: {wall / 10:.2f} of it)")
        if a.skip_calibration:
            return
        import jax

        from metastructure import data

        write_pngs(data.nuclei(jax.random.key(0), a.images, size=a.image_size), root / "im", root / "mk")
        extra = [f"--{k}={v}" for k, v in (("repeats", a.repeats), ("steps", a.steps), ("crop", a.crop))
                 if v is not None]
        wall, out, err = _run([str(root / "mk"), "--images", str(root / "im"), "--out", str(root / "out2"), *extra])
        cal = next(line for line in out.splitlines() if line.startswith("calibration"))
        print(f"plan --images, {a.images} images of {a.image_size}^2: {wall:.1f} s "
              f"(target 300 s: {wall / 300:.2f} of it)\n  {cal}")
        for line in err.splitlines():  # what the calibration warned about (networks that failed to train...)
            if line.startswith("note: calibrate"):
                print("  " + line)


if __name__ == "__main__":
    main()
