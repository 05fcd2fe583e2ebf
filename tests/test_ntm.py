"""Transition matrices: closed forms against estimates from the noise functions."""

import jax
import numpy as np
import pytest
from helpers import blobs

from metastructure import noise, ntm

KEY = jax.random.key(0)


def test_closed_forms_match_estimates_from_noise():
    m = blobs((200, 200), seed=1)
    np.testing.assert_allclose(ntm.estimate(m, noise.sample(KEY, m, 0.1)), ntm.sample_matrix(0.1), atol=1e-3)
    np.testing.assert_allclose(ntm.estimate(m, noise.flip(KEY, m, 0.3, 0.2)), ntm.flip_matrix(0.3, 0.2), atol=1e-3)
    # random labels: Bernoulli, each row a proportion over ~2e4 pixels (sd < 0.004)
    np.testing.assert_allclose(
        ntm.estimate(m, noise.random_labels(KEY, m.shape, 0.4)), ntm.random_matrix(0.4), atol=0.02
    )
    s = noise.skeletonize(m)
    np.testing.assert_allclose(ntm.estimate(m, s), ntm.skeleton_matrix(m, s), atol=1e-12)


def test_dilation_is_full_rank_but_boundary_bound():
    m = blobs((120, 120), seed=2)
    t = ntm.estimate(m, noise.dilate(m, 2))
    assert t[1, 1] == 1.0 and 0 < t[0, 1] < 0.5
    assert ntm.rank(t) == 2


def test_determinant_rank_and_symmetric_eigenvalues():
    assert ntm.determinant(ntm.flip_matrix(0.3, 0.2)) == pytest.approx(0.5)
    assert ntm.determinant(ntm.sample_matrix(0.1)) == pytest.approx(0.1)
    assert ntm.rank(ntm.random_matrix(0.3)) == 1
    assert ntm.rank(ntm.flip_matrix(0.6, 0.4)) == 1
    for m_ in (3, 19):
        e = 0.9
        ev = np.sort(np.linalg.eigvals(ntm.symmetric_matrix(e, m_)).real)
        np.testing.assert_allclose(ev[:-1], 1 - e * m_ / (m_ - 1), atol=1e-12)
        assert ev[-1] == pytest.approx(1.0)
        assert ntm.rank(ntm.symmetric_matrix((m_ - 1) / m_, m_)) == 1
        assert ntm.rank(ntm.symmetric_matrix(e, m_)) == m_


def test_numerical_rank_tolerance():
    t = ntm.flip_matrix(0.5, 0.4999)
    assert ntm.rank(t) == 2 and ntm.numerical_rank(t) == 1
    assert ntm.numerical_rank(ntm.flip_matrix(0.3, 0.2)) == 2


def test_information_measures():
    prior = [0.7, 0.3]
    q = ntm.joint_from_transition(ntm.random_matrix(0.3), prior)
    assert ntm.mutual_information(q) == pytest.approx(0.0, abs=1e-12)
    assert ntm.dmi(q) == pytest.approx(0.0, abs=1e-12)
    clean = ntm.joint_from_transition(np.eye(2), prior)
    h = -sum(p * np.log(p) for p in prior)
    assert ntm.mutual_information(clean) == pytest.approx(h)  # I(Y; Y) = H(Y)
    t = ntm.flip_matrix(0.3, 0.2)
    assert ntm.dmi(ntm.joint_from_transition(t, prior)) == pytest.approx(0.7 * 0.3 * 0.5)
    # mutual information shrinks as flipping approaches f + b = 1
    mis = [ntm.mutual_information(ntm.joint_from_transition(ntm.flip_matrix(f, f), prior)) for f in (0, 0.2, 0.4)]
    assert mis[0] > mis[1] > mis[2] > 0


def test_joint_and_estimate_exclude_ignore():
    c = np.array([0, 0, 1, 1, -1, 1])
    n = np.array([0, 1, 1, 1, 0, -1])
    np.testing.assert_allclose(ntm.joint(c, n), [[0.25, 0.25], [0.0, 0.5]])
    est = ntm.estimate(np.zeros(4, int), np.zeros(4, int))
    assert np.isnan(est[1]).all() and est[0].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ntm.sample_matrix(1.2), "ratio"),
        (lambda: ntm.flip_matrix(0.1, -0.1), "bg_to_fg"),
        (lambda: ntm.symmetric_matrix(0.5, 1), "num_classes"),
        (lambda: ntm.random_matrix(0.5, num_classes=3), "symmetric_matrix"),
        (lambda: ntm.joint(np.zeros(3, int), np.zeros(4, int)), "same shape"),
        (lambda: ntm.joint(np.array([0, 2]), np.array([0, 1])), "clean"),
        (lambda: ntm.joint_from_transition(np.eye(2), [0.5, 0.6]), "prior"),
        (lambda: ntm.joint_from_transition([[0.5, 0.4], [0, 1]], [0.5, 0.5]), "transition"),
        (lambda: ntm.skeleton_matrix(np.zeros((3, 3)), np.zeros((3, 3))), "empty"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
