"""metastructure.losses: the formulas against numpy, linearity in the target, DMI's shift by log det T."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metastructure import losses


# ------------------------------------------------------------------ losses
def test_bce_formula_and_linearity_in_the_target():
    z = jnp.array([-2.0, 0.3, 1.5])
    t = jnp.array([0.0, 1.0, 1.0])
    sig, tt = 1 / (1 + np.exp(-np.asarray(z))), np.asarray(t)
    want = -np.mean(tt * np.log(sig) + (1 - tt) * np.log(1 - sig))
    assert float(losses.bce_with_logits(z, t)) == pytest.approx(want, rel=1e-5)
    a = 0.3
    mix = losses.bce_with_logits(z, a * t)
    parts = a * losses.bce_with_logits(z, t) + (1 - a) * losses.bce_with_logits(z, 0 * t)
    assert float(mix) == pytest.approx(float(parts), rel=1e-5)


def test_cross_entropy_with_ignore():
    z = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    lab = jnp.array([0, 1, -1])
    logp = np.asarray(jax.nn.log_softmax(z))
    assert float(losses.cross_entropy(z, lab)) == pytest.approx(-(logp[0, 0] + logp[1, 1]) / 2, rel=1e-6)


def test_dmi_is_shifted_by_log_det_of_the_noise():
    # soft noisy targets S* = T^T S per pixel: det(P S*^T) = det(P S^T) det(T)
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal(200))
    s = jnp.asarray((rng.random(200) < 0.4).astype(np.float32))
    f, b = 0.3, 0.2
    noisy = b + (1 - f - b) * s
    gap = float(losses.dmi_loss(z, noisy) - losses.dmi_loss(z, s))
    assert gap == pytest.approx(-math.log(1 - f - b), rel=1e-4)
    assert float(losses.soft_iou_loss(jnp.full(4, 20.0), jnp.ones(4))) == pytest.approx(0.0, abs=1e-6)
