"""Helpers shared by several test files (plain functions; the fixtures are in conftest.py): data builders and
small readers. Test files import them as ``from helpers import ...`` (pytest puts tests/ on sys.path)."""

import json
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from PIL import Image


def blobs(shape, *, seed=0, sigma=3.0, level=0.55):
    """A random binary map of smooth blobs (deterministic by seed)."""
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.random(shape), sigma)
    return x > np.quantile(x, level)


def write_pngs(folder: Path, arrays, scale=1):
    """Each array of ``arrays`` times ``scale`` as an 8-bit PNG ``folder/imgNN.png`` (the folder is created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray((np.asarray(a) * scale).astype(np.uint8)).save(folder / f"img{i:02d}.png")


def record(out: Path, name: str) -> dict:
    """The record ``OUT/NAME.json`` an experiment's run wrote."""
    return json.loads((out / f"{name}.json").read_text())
