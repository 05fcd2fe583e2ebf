"""Shared fixtures: small masks with known geometry; a child process that takes Ctrl-C."""

import signal

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


@pytest.fixture
def takes_ctrl_c():
    """Child processes started during the test take Ctrl-C. A child inherits an ignored SIGINT (a test session
    started as a background job, ``cmd &``, has one), and Python then never raises KeyboardInterrupt; a
    handled one is reset to the default action at exec, so this process handles SIGINT while the test runs."""
    old = signal.getsignal(signal.SIGINT)
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
