"""Shared fixtures: small masks with known geometry."""

import numpy as np
import pytest
import scipy.ndimage as ndi


def blobs(shape, *, seed=0, sigma=3.0, level=0.55):
    """A random binary map of smooth blobs (deterministic by seed)."""
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.random(shape), sigma)
    return x > np.quantile(x, level)


@pytest.fixture
def mask():
    return blobs((48, 56), seed=1)


@pytest.fixture
def batch():
    return np.stack([blobs((40, 44), seed=s) for s in range(3)])
