"""Metrics against brute force and scikit-image; threshold protocols."""

import itertools

import jax
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from metastructure import metrics, ntm


def brute_auc(s, t):
    pos = s[t == 1]
    neg = s[t == 0]
    total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(4))
def test_auc_equals_pair_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    t = rng.random(300) < 0.3
    s = rng.integers(0, 6, 300).astype(np.float32) + t  # many ties
    assert float(metrics.roc_auc(s, t)) == pytest.approx(brute_auc(s, t), abs=1e-6)


def test_auc_extremes_and_ignore():
    t = np.array([0, 0, 1, 1, -1])
    assert float(metrics.roc_auc(np.array([0.1, 0.2, 0.8, 0.9, 0.0]), t, ignore=-1)) == 1.0
    assert float(metrics.roc_auc(np.array([0.9, 0.8, 0.2, 0.1, 5.0]), t, ignore=-1)) == 0.0
    assert float(metrics.roc_auc(np.ones(5), t, ignore=-1)) == 0.5
    assert np.isnan(float(metrics.roc_auc(np.ones(3), np.zeros(3, int))))


def test_overlap_metrics_against_numpy():
    rng = np.random.default_rng(1)
    p = rng.random((3, 20, 20)) < 0.4
    t = rng.random((3, 20, 20)) < 0.5
    tp, fp, fn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum()
    assert float(metrics.dice(p, t)) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert float(metrics.iou(p, t)) == pytest.approx(tp / (tp + fp + fn))
    assert float(metrics.accuracy(p, t)) == pytest.approx((p == t).mean())
    per = np.asarray(metrics.dice(p, t, per_image=True))
    want = [2 * (a & b).sum() / (a.sum() + b.sum()) for a, b in zip(p, t)]
    np.testing.assert_allclose(per, want, rtol=1e-6)


def test_empty_masks_agree_perfectly():
    z = np.zeros((4, 4), bool)
    assert float(metrics.dice(z, z)) == 1.0 and float(metrics.iou(z, z)) == 1.0
    o = z.copy()
    o[0, 0] = True
    assert float(metrics.dice(o, z)) == 0.0


def test_ignore_in_target():
    p = np.array([[1, 1, 0, 0]])
    t = np.array([[1, -1, 1, -1]])
    assert float(metrics.dice(p, t, ignore=-1)) == pytest.approx(2 / 3)
    assert float(metrics.accuracy(p, t, ignore=-1)) == pytest.approx(0.5)


def test_miou():
    rng = np.random.default_rng(2)
    p = rng.integers(0, 4, (2, 15, 15))
    t = rng.integers(0, 4, (2, 15, 15))
    t[0, 0] = -1
    v = t != -1
    ious = [((p == c) & (t == c) & v).sum() / (((p == c) | (t == c)) & v).sum() for c in range(4)]
    assert float(metrics.miou(p, t, 4)) == pytest.approx(np.mean(ious), rel=1e-6)
    # a class absent from both is skipped, not counted as 0 or 1
    assert float(metrics.miou(np.array([0, 1]), np.array([0, 1]), 5)) == 1.0


def test_threshold_sweep_against_loop():
    rng = np.random.default_rng(3)
    s = rng.random(500).astype(np.float32)
    t = (s + 0.3 * rng.standard_normal(500)) > 0.5
    th = np.linspace(0, 1, 17)
    r = metrics.threshold_sweep(s, t, th)
    for i, x in enumerate(th):
        assert float(r["dice"][i]) == pytest.approx(float(metrics.dice(s > x, t)), abs=1e-6)
        assert float(r["iou"][i]) == pytest.approx(float(metrics.iou(s > x, t)), abs=1e-6)


def test_best_threshold_recovers_low_separation():
    # outputs of a 10%-sampled network: ~0.1 on objects, ~0 outside
    rng = np.random.default_rng(4)
    t = rng.random(4000) < 0.3
    s = np.where(t, 0.1, 0.0) + 0.01 * rng.random(4000)
    th, val = metrics.best_threshold(s, t)
    assert s[~t].max() <= th < s[t].min() and val == 1.0
    assert float(metrics.dice(s > 0.5, t)) == 0.0  # why 0.5 fails


def test_otsu_matches_skimage():
    rng = np.random.default_rng(5)
    for _ in range(5):
        s = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.7, 0.1, 1000)]).astype(np.float32)
        width = (s.max() - s.min()) / 256
        assert abs(float(metrics.otsu_threshold(s)) - threshold_otsu(s)) <= width * 1.01


def test_protocols_side_by_side():
    rng = np.random.default_rng(6)
    t = rng.random((2, 30, 30)) < 0.3
    s = np.where(t, 0.1, 0.0) + 0.02 * rng.random(t.shape)
    r = metrics.threshold_protocols(s, t, transition=ntm.sample_matrix(0.1), val_scores=s, val_target=t)
    assert r["t_star"]["threshold"] == 0.05 and r["t_star"]["dice"] == 1.0
    assert r["oracle"]["dice"] == 1.0 and r["validation"]["dice"] == 1.0
    assert r["fixed_0.5"]["dice"] == 0.0 and r["auc"]["value"] == 1.0
    # f = b = 0.9: the output is 0.9 - 0.8 P, low on objects; t* = 0.5, inverted
    flipped = np.where(t, 0.1, 0.9) + 0.02 * rng.random(t.shape)
    inv = metrics.threshold_protocols(flipped, t, transition=ntm.flip_matrix(0.9, 0.9))
    assert inv["t_star"]["invert"] and inv["t_star"]["dice"] == 1.0


def test_jit_agrees():
    rng = np.random.default_rng(7)
    s = rng.random((2, 16, 16)).astype(np.float32)
    t = rng.random((2, 16, 16)) < 0.5
    assert float(jax.jit(metrics.roc_auc)(s, t)) == float(metrics.roc_auc(s, t))
    assert float(jax.jit(metrics.dice)(s > 0.5, t)) == float(metrics.dice(s > 0.5, t))
    assert float(jax.jit(metrics.otsu_threshold)(s)) == float(metrics.otsu_threshold(s))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: metrics.dice(np.zeros((3, 3)), np.zeros((3, 4))), "same shape"),
        (lambda: metrics.roc_auc(np.array([0.1, np.nan]), np.array([0, 1])), "NaN"),
        (lambda: metrics.dice(np.array([0, 2]), np.array([0, 1])), "pred"),
        (lambda: metrics.roc_auc(np.array([0.1, 0.2]), np.array([0, 3])), "target"),
        (lambda: metrics.best_threshold(np.ones(2), np.ones(2), metric="f2"), "metric"),
        (lambda: metrics.miou(np.array([0, 9]), np.array([0, 1]), 3), "pred"),
        (lambda: metrics.threshold_protocols(np.ones(2), np.ones(2), val_scores=np.ones(2)), "val_target"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
