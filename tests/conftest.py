"""Shared fixtures (fixtures only; the helpers they use are in helpers.py): small masks with known geometry;
a child process that takes Ctrl-C."""

import signal

import numpy as np
import pytest
from helpers import blobs


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
