"""Metrics against brute force and scikit-image; threshold protocols."""

import itertools

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.filters import threshold_otsu

from metastructure import metrics, noise, ntm
from metastructure.density import MatchedThreshold


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
    want = [2 * (a & b).sum() / (a.sum() + b.sum()) for a, b in zip(p, t, strict=True)]
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
    # classes=3 of 4: predictions of class 3 (void) are misses of their true class; the mean is over 0-2 only
    t3 = np.where(t == 3, 0, t)
    ious3 = [((p == c) & (t3 == c) & v).sum() / (((p == c) | (t3 == c)) & v).sum() for c in range(3)]
    assert float(metrics.miou(p, t3, 4, classes=3)) == pytest.approx(np.mean(ious3), rel=1e-6)
    assert float(metrics.miou(np.where(p == 3, 0, p), t3, 4, classes=3)) == float(metrics.miou(np.where(p == 3, 0, p),
                                                                                               t3, 3))
    with pytest.raises(ValueError, match="target"):  # the truth holds only the scored classes
        metrics.miou(p, t, 4, classes=3)
    with pytest.raises(ValueError, match="at most num_classes"):
        metrics.miou(p, t, 4, classes=5)


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
    r = metrics.evaluate(s, t, label_type=ntm.sample_matrix(0.1), validation=(s, t))
    assert r["t_star"]["threshold"] == 0.05 and r["t_star"]["dice"] == 1.0
    assert r["oracle"]["dice"] == 1.0 and r["validation"]["dice"] == 1.0
    assert r["fixed_0.5"]["dice"] == 0.0 and r["auc"]["value"] == 1.0
    # the output's levels against numpy's
    assert r["mean_fg"]["value"] == pytest.approx(float(s[t].mean()), rel=1e-6)
    assert r["mean_bg"]["q90"] == pytest.approx(float(np.quantile(s[~t].astype(np.float32), 0.9)), rel=1e-6)
    # f = b = 0.9: the output is 0.9 - 0.8 P, low on objects; t* = 0.5, inverted
    flipped = np.where(t, 0.1, 0.9) + 0.02 * rng.random(t.shape)
    inv = metrics.evaluate(flipped, t, label_type=noise.LabelNoise("flip", 0.9, 0.9))
    assert inv["t_star"]["invert"] and inv["t_star"]["dice"] == 1.0
    assert inv["oracle"]["dice"] < 0.5 < inv["oracle_inverted"]["dice"] == 1.0
    # no label type: no t* entry; a label type without one (f + b = 1): t* is None, the rest is scored
    assert "t_star" not in metrics.evaluate(s, t)
    none = metrics.evaluate(s, t, label_type=noise.LabelNoise("flip", 0.5, 0.5))
    assert none["t_star"] is None and none["oracle"]["dice"] == 1.0
    # a subset of protocols: the same numbers, only fewer of them
    few = metrics.evaluate(s, t, label_type=ntm.sample_matrix(0.1), protocols=("t_star", "oracle"))
    assert set(few) == {"t_star", "oracle", "auc", "mean_fg", "mean_bg"} and few["oracle"] == r["oracle"]
    with pytest.raises(ValueError, match="protocols"):
        metrics.evaluate(s, t, protocols=("best",))


def test_evaluate_against_independent_scores():
    """Each protocol's Dice / IoU equals the numpy count at its threshold, and the oracle is the best of a
    brute-force sweep over every distinct score (Dice and IoU pick the same threshold)."""
    rng = np.random.default_rng(8)
    t = rng.random((3, 12, 12)) < 0.4
    s = np.clip(np.where(t, 0.6, 0.35) + 0.3 * rng.standard_normal(t.shape), 0, 1).astype(np.float32)
    r = metrics.evaluate(s, t, label_type=ntm.flip_matrix(0.2, 0.1))

    def np_scores(pred):
        tp, fp, fn = (pred & t).sum(), (pred & ~t).sum(), (~pred & t).sum()
        return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)

    for proto in ("t_star", "oracle", "otsu", "fixed_0.5"):
        e = r[proto]
        assert (e["dice"], e["iou"]) == pytest.approx(np_scores(s > e["threshold"]), abs=1e-6), proto
    assert r["t_star"]["threshold"] == pytest.approx(0.45)
    brute = max(np_scores(s > th)[1] for th in np.unique(s))
    assert r["oracle"]["iou"] == pytest.approx(brute, abs=1e-6)
    assert metrics.evaluate(s, t, metric="dice")["oracle"]["dice"] == pytest.approx(r["oracle"]["dice"], abs=1e-7)
    auc = np.mean([(a > b) + 0.5 * (a == b) for a in s[t] for b in s[~t]])
    assert r["auc"]["value"] == pytest.approx(auc, abs=1e-6)


def test_evaluate_multiclass_undoes_an_invertible_transition():
    """Theorem 2: an output T^T q of the class probabilities q has the wrong argmax past the collapse,
    and (T^T)^-1 applied to it recovers the classes."""
    m = 3
    lab = np.random.default_rng(9).integers(0, m, (2, 10, 10))
    t = ntm.symmetric_matrix(0.8, m)  # past (M-1)/M: the argmax of T^T q is a wrong class
    q = np.eye(m)[lab] * 0.9 + 0.1 / m
    out = q @ t  # per pixel the row vector q^T T, i.e. T^T q
    r = metrics.evaluate(out, lab, num_classes=m, label_type=noise.LabelNoise("symmetric", 0.8, num_classes=m))
    assert r["miou"] < 0.1 and r["miou_corrected"] == 1.0
    assert r["accuracy"] == pytest.approx(float(np.mean(out.argmax(-1) == lab)))
    assert "miou_corrected" not in metrics.evaluate(out, lab, num_classes=m, label_type=ntm.symmetric_matrix(2 / 3, m))
    with pytest.raises(ValueError, match="probs"):
        metrics.evaluate(out[..., :2], lab, num_classes=m)


def test_evaluate_multiclass_with_void_scores_the_real_classes():
    """Sparse labels stored with a void class (T = [p I | (1-p) 1], M x (M + 1)): the expected output T^T y has
    its plain argmax on void for p < 1/2 (mIoU 0 over the M classes), and the least-squares inverse (T^T)^+ equals
    the argmax over the M real classes (the oracle), which recovers them."""
    m, p = 4, 0.2
    lab = np.random.default_rng(3).integers(0, m, (2, 12, 12))
    void = noise.SampleVoid(p, num_classes=m)
    out = void.transition()[lab]  # (2, 12, 12, 5): p on the true class, 1 - p on void
    r = metrics.evaluate(out, lab, num_classes=m + 1, label_type=void)
    assert r["miou"] == 0.0 and r["accuracy"] == 0.0 and r["miou_corrected"] == 1.0
    # a noisy output: the corrected argmax is the argmax over the first M channels
    noisy = out + np.random.default_rng(4).uniform(0, 0.3, out.shape)
    noisy /= noisy.sum(-1, keepdims=True)
    r = metrics.evaluate(noisy, lab, num_classes=m + 1, label_type=void)
    assert r["miou_corrected"] == pytest.approx(float(metrics.miou(noisy[..., :m].argmax(-1), lab, m)))
    assert r["miou"] == pytest.approx(float(metrics.miou(noisy.argmax(-1), lab, m + 1, classes=m)))
    # above 1/2 the plain argmax is right
    assert metrics.evaluate(noise.SampleVoid(0.7, num_classes=m).transition()[lab], lab, num_classes=m + 1,
                            label_type=noise.SampleVoid(0.7, num_classes=m))["miou"] == 1.0
    with pytest.raises(ValueError, match="M x 5"):  # a T of other outputs than the network's
        metrics.evaluate(out, lab, num_classes=m + 1, label_type=noise.SampleVoid(p, num_classes=5))


def test_jit_agrees():
    rng = np.random.default_rng(7)
    s = rng.random((2, 16, 16)).astype(np.float32)
    t = rng.random((2, 16, 16)) < 0.5
    assert float(jax.jit(metrics.roc_auc)(s, t)) == float(metrics.roc_auc(s, t))
    assert float(jax.jit(metrics.dice)(s > 0.5, t)) == float(metrics.dice(s > 0.5, t))
    # concrete scores are computed in float64, traced ones in float32: equal to float32 precision
    assert float(jax.jit(metrics.otsu_threshold)(s)) == pytest.approx(float(metrics.otsu_threshold(s)), rel=1e-6)


def test_no_labelled_pixel_scores_nan_and_hosts_refuse_it():
    """Regression (issue 31, item 8): dice, iou and accuracy were 1.0 when every pixel was ignored (roc_auc NaN)."""
    pred = np.array([[[1, 1, 0, 0], [0, 0, 0, 0]], [[1, 0, 1, 0], [0, 1, 0, 0]]])
    target = np.array([[[-1, -1, -1, -1], [-1, -1, -1, -1]], [[1, 1, 0, 0], [-1, 0, 0, 1]]])
    for fn in (metrics.dice, metrics.iou, metrics.accuracy):
        assert np.isnan(float(fn(pred[0], target[0], ignore=-1))), fn.__name__
        per = np.asarray(fn(pred, target, per_image=True, ignore=-1))
        assert np.isnan(per[0]) and np.isfinite(per[1]), fn.__name__
    # the labelled image by hand: 7 labelled pixels, TP 1, FP 2, FN 2, TN 2
    per = [float(np.asarray(f(pred, target, per_image=True, ignore=-1))[1])
           for f in (metrics.dice, metrics.iou, metrics.accuracy)]
    assert per == pytest.approx([2 / 6, 1 / 5, 3 / 7])
    assert float(metrics.dice(pred, target, ignore=-1)) == pytest.approx(2 / 6)  # pooled: the ignored image adds 0
    assert np.isnan(float(metrics.miou(np.zeros((2, 2), int), np.full((2, 2), -1), 2)))
    sweep = metrics.threshold_sweep(np.linspace(0, 1, 8), np.full(8, -1), np.array([0.2, 0.5]), ignore=-1)
    assert np.isnan(np.asarray(sweep["dice"])).all() and np.isnan(np.asarray(sweep["iou"])).all()
    with pytest.raises(ValueError, match="target has no labelled pixel"):
        metrics.best_threshold(np.linspace(0, 1, 8), np.full(8, -1), ignore=-1)
    with pytest.raises(ValueError, match="masks has no labelled pixel"):
        metrics.evaluate(np.full((1, 2, 4), 0.3), target[:1], ignore=-1)
    with pytest.raises(ValueError, match="masks has no labelled pixel"):
        metrics.evaluate(np.full((1, 2, 4, 3), 1 / 3), target[:1], num_classes=3)
    assert float(metrics.dice(np.zeros((2, 2)), np.zeros((2, 2)))) == 1.0  # both empty, labelled: agreement


@pytest.mark.parametrize("case", ["1e8 + k", "+-3e38 float32", "+-1e300"])
def test_otsu_keeps_huge_and_close_values_apart(case):
    """Regression (issue 31, item 10): in float32 1e8 ... 1e8 + 3 collapsed to one value (nothing above the
    threshold) and values spanning +-3e38 gave inf. skimage (float64) is the oracle."""
    rng = np.random.default_rng(3)
    if case == "1e8 + k":
        s = 1e8 + np.concatenate([rng.integers(0, 2, 300), rng.integers(2, 4, 100)]).astype(np.float64)
    elif case == "+-3e38 float32":
        s = np.concatenate([rng.uniform(-3.3e38, -2e38, 300), rng.uniform(1e38, 3.3e38, 100)]).astype(np.float32)
    else:
        s = np.concatenate([rng.uniform(-1e300, -5e299, 300), rng.uniform(2e299, 1e300, 100)])
    t = float(metrics.otsu_threshold(s))
    scale = 2.0 ** -1000 if case == "+-1e300" else 1.0  # skimage squares its values: exact powers of two
    assert t == pytest.approx(threshold_otsu(s.astype(np.float64) * scale) / scale, rel=1e-12)
    assert 0 < np.sum(s > t) < s.size
    if case != "+-1e300":  # traced: float32, JAX's default precision
        assert float(jax.jit(metrics.otsu_threshold)(s)) == pytest.approx(t, rel=1e-5 if case[0] == "+" else 1e-3)


def test_boundary_distance_refuses_empty_batches():
    """Regression (issue 31): an empty batch raised numpy's "need at least one array to concatenate" (pooled)
    and an IndexError (per image)."""
    for shape in ((0, 8, 8), (8, 0)):
        for per_image in (False, True):
            with pytest.raises(ValueError, match="pred is empty"):
                metrics.boundary_distance(np.zeros(shape, bool), np.zeros(shape, bool), per_image=per_image)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: metrics.dice(np.zeros((3, 3)), np.zeros((3, 4))), "same shape"),
        (lambda: metrics.roc_auc(np.array([0.1, np.nan]), np.array([0, 1])), "NaN"),
        (lambda: metrics.dice(np.array([0, 2]), np.array([0, 1])), "pred"),
        (lambda: metrics.roc_auc(np.array([0.1, 0.2]), np.array([0, 3])), "target"),
        (lambda: metrics.best_threshold(np.ones(2), np.ones(2), metric="f2"), "metric"),
        (lambda: metrics.miou(np.array([0, 9]), np.array([0, 1]), 3), "pred"),
        (lambda: metrics.evaluate(np.ones(2), np.ones(2), metric="f2"), "metric"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ boundary distance, CKA
def _brute_boundary_distances(a, b):
    from scipy.spatial.distance import cdist

    def edge(m):  # a pixel of m with a 4-neighbour outside m or outside the image
        p = np.pad(m, 1)
        nb = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return np.argwhere(m & ~nb)

    ea, eb = edge(a), edge(b)
    d = cdist(ea, eb)
    return np.concatenate([d.min(1), d.min(0)])


def test_boundary_distance_against_brute_force():
    rng = np.random.default_rng(0)
    for i in range(6):
        a = ndi.binary_opening(rng.random((24, 30)) < 0.45 + 0.05 * i)
        b = ndi.binary_dilation(a, iterations=i % 3) if i % 2 else ndi.shift(a, (1, -2), order=0)
        d = _brute_boundary_distances(a, b)
        got = metrics.boundary_distance(a, b)
        assert got["mean"] == pytest.approx(d.mean(), rel=1e-12)
        assert got["max"] == pytest.approx(d.max())
        assert got["hd95"] == pytest.approx(np.percentile(d, 95))


def test_boundary_distance_disks_and_edge_cases():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    a, b = r <= 10, r <= 14  # concentric disks: every boundary pixel ~4 px from the other boundary
    got = metrics.boundary_distance(a, b)
    assert 3.5 <= got["mean"] <= 4.5 and got["max"] <= 5
    both = metrics.boundary_distance(np.stack([a, a]), np.stack([b, a]), per_image=True)
    assert both["mean"][1] == 0 and both["mean"][0] == pytest.approx(got["mean"])
    empty = np.zeros_like(a)
    assert metrics.boundary_distance(empty, empty)["mean"] == 0
    assert metrics.boundary_distance(a, empty)["hd95"] == np.inf
    with pytest.raises(ValueError, match="pred"):
        metrics.boundary_distance(a[:10], b)


def test_linear_cka_invariances_and_hsic_oracle():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 6))
    y = x[:, :3] @ rng.normal(size=(3, 5)) + 0.5 * rng.normal(size=(80, 5))
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    assert metrics.linear_cka(x, x) == pytest.approx(1.0)
    assert metrics.linear_cka(x, 2.5 * x @ q + 7) == pytest.approx(1.0)
    # the HSIC form with Gram matrices K = X X^T and centring H (Gretton et al.): an independent route
    h = np.eye(80) - 1 / 80
    kx, ky = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    ref = hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))
    assert metrics.linear_cka(x, y) == pytest.approx(ref, rel=1e-10)
    assert 0 < metrics.linear_cka(x, y) < 1
    assert metrics.linear_cka(x, rng.normal(size=(80, 5))) < 0.2  # unrelated features
    with pytest.raises(ValueError, match="same n"):
        metrics.linear_cka(x, y[:10])
    with pytest.raises(ValueError, match="constant"):
        metrics.linear_cka(np.ones((5, 2)), x[:5])


def test_label_fit_is_the_memorisation_index_and_the_loss_against_the_draw():
    """label_fit against a direct count: per clean class, output on drawn-1 minus drawn-0 pixels, averaged over
    the classes that hold both; the BCE against the draw; the entropy of the draw given the clean class."""
    rng = np.random.default_rng(0)
    masks = rng.random((3, 16, 16)) < 0.3
    labels = np.where(masks, rng.random(masks.shape) >= 0.4, rng.random(masks.shape) < 0.2)  # f = 0.4, b = 0.2
    probs = np.clip(0.5 * labels + 0.3 * masks + 0.1 * rng.random(masks.shape), 0, 1)
    got = metrics.label_fit(probs, masks, labels=labels)
    per_class = [probs[c & labels].mean() - probs[c & ~labels].mean() for c in (masks, ~masks)]
    assert got["memorisation"] == pytest.approx(np.mean(per_class))
    q = np.clip(probs, 1e-7, 1 - 1e-7)
    assert got["train_loss"] == pytest.approx(-np.mean(labels * np.log(q) + (1 - labels) * np.log(1 - q)))

    def h(x):
        return -(x * np.log(x) + (1 - x) * np.log(1 - x))

    want = masks.mean() * h(labels[masks].mean()) + (~masks).mean() * h(labels[~masks].mean())
    assert got["label_entropy"] == pytest.approx(want)
    # sampling: only the foreground holds both labels; clean labels hold none; fresh draws: the loss alone
    sampled = masks & (rng.random(masks.shape) < 0.1)
    assert metrics.label_fit(probs, masks, labels=sampled)["memorisation"] == pytest.approx(
        probs[masks & sampled].mean() - probs[masks & ~sampled].mean())
    assert metrics.label_fit(probs, masks, labels=masks)["memorisation"] is None
    assert set(metrics.label_fit(probs, masks)) == {"train_loss"}
    with pytest.raises(ValueError, match="labels"):
        metrics.label_fit(probs, masks, labels=labels[:2])
    with pytest.raises(ValueError, match="probs"):
        metrics.label_fit(probs + 1, masks, labels=labels)


def test_depth_tracking_is_the_per_plane_correlation_of_share_and_output():
    """depth_tracking against scipy.stats.pearsonr of the per-plane vectors counted by loops; 1 for a network
    that outputs each depth's labelled share of every-k-th-slice labels (noise.Slices), None for one whose
    output is the same on every plane, None with fewer than 3 planes holding foreground; bad inputs refused."""
    from scipy import stats

    rng = np.random.default_rng(1)
    masks = rng.random((4, 9, 8, 8)) < 0.3
    labels = masks & (rng.random(masks.shape) < rng.random((1, 9, 1, 1)))  # each depth its own share
    probs = rng.random(masks.shape)
    share = [labels[:, z][masks[:, z]].mean() for z in range(9)]
    level = [probs[:, z][masks[:, z]].mean() for z in range(9)]
    want = stats.pearsonr(share, level)[0]
    assert metrics.depth_tracking(probs, masks, labels) == pytest.approx(want)
    assert metrics.depth_tracking(probs, masks, labels, axis=-3) == pytest.approx(want)
    # the planes along another axis: the volumes transposed, the same number
    assert metrics.depth_tracking(probs.transpose(0, 2, 1, 3), masks.transpose(0, 2, 1, 3),
                                  labels.transpose(0, 2, 1, 3), axis=2) == pytest.approx(want)
    assert metrics.depth_tracking(probs, masks, masks) is None  # every plane fully labelled: one share
    # every 3rd slice at one offset per volume: an output of each depth's share tracks it exactly
    y = np.asarray(noise.Slices(3, ndim=3)(jax.random.key(0), masks.astype(np.int32)))
    per_z = np.array([y[:, z][masks[:, z]].mean() for z in range(9)])
    assert metrics.depth_tracking(per_z[None, :, None, None] * masks, masks, y) == pytest.approx(1.0)
    assert metrics.depth_tracking(0.3 * masks, masks, y) is None  # blind to depth: one level everywhere
    few = masks.copy()
    few[:, 2:] = False
    assert metrics.depth_tracking(probs, few, labels & few) is None
    with pytest.raises(ValueError, match="labels"):
        metrics.depth_tracking(probs, masks, np.where(labels, 1, -1))
    with pytest.raises(ValueError, match="axis"):
        metrics.depth_tracking(probs, masks, labels, axis=4)
    with pytest.raises(TypeError, match="axis"):
        metrics.depth_tracking(probs, masks, labels, axis=1.0)
    with pytest.raises(TypeError, match="labels"):
        metrics.depth_tracking(probs, masks, None)


def test_level_threshold_is_half_the_output_on_the_labelled_foreground():
    """level_threshold against a numpy mean over the pixels labelled 1 (ignored pixels left out); equal to t*
    for a network whose output on objects is the label type's expected level (1 - f) D; a network at a fifth
    of that level is empty at t* = p/2 and exact at its own level, which evaluate's "level" protocol reads;
    None where T labels background as foreground, is unknown, or no label is foreground; bad inputs refused."""
    rng = np.random.default_rng(5)
    masks = rng.random((3, 6, 10, 10)) < 0.3
    probs = rng.random(masks.shape)
    y = np.asarray(noise.Blocks(0.3, 2, ndim=3)(jax.random.key(1), masks.astype(np.int32)))
    want = probs[y == 1].mean() / 2
    for lt in (noise.Blocks(0.3, 2, ndim=3), ntm.sample_matrix(0.3)):
        assert metrics.level_threshold(probs, y, label_type=lt) == pytest.approx(want, rel=1e-12)
    ign = np.asarray(noise.Blocks(0.3, 2, unlabelled="ignore", ndim=3)(jax.random.key(1), masks.astype(np.int32)))
    assert (ign == -1).any() and (ign == 0).any()
    assert metrics.level_threshold(probs, ign, label_type=noise.Blocks(0.3, 2, unlabelled="ignore")) == \
        pytest.approx(probs[ign == 1].mean() / 2, rel=1e-12)
    # the labelled foreground is a random share of the objects: over draws (Monte Carlo, fixed keys) the
    # threshold is half the mean output on all of them, for blocks and for every k-th slice, also for an output
    # that grows along z and x (a share biased in depth or position would miss it)
    z, x = np.meshgrid(np.arange(6) / 5, np.arange(10) / 9, indexing="ij")
    ramp = np.broadcast_to(((z[:, None, :] + x[:, None, :]) / 2)[None], masks.shape)
    for lt in (noise.Blocks(0.3, 2, ndim=3), noise.Slices(3, ndim=3)):
        for out in (probs, ramp):
            draws = [metrics.level_threshold(out, np.asarray(lt(jax.random.key(i), masks.astype(np.int32))),
                                             label_type=lt) for i in range(300)]
            assert np.mean(draws) == pytest.approx(out[masks].mean() / 2, rel=0.01), lt.name
    # the expected meta-structure p D: the level protocol is t*; a fifth of it: t* finds nothing, the level all
    p = 0.1
    for c, t_star_dice in ((1.0, 1.0), (0.2, 0.0)):
        out = c * p * masks
        r = metrics.evaluate(out, masks, label_type=noise.Scattered(p), training=(out, y))
        assert r["t_star"]["dice"] == t_star_dice and r["level"]["dice"] == 1.0
        assert r["level"]["threshold"] == pytest.approx(c * p / 2)
    assert "level" not in metrics.evaluate(out, masks, label_type=noise.Scattered(p))  # no training outputs
    # None: background labelled foreground (b > 0), T unknown (structured, no label type, a bare t*), no label 1
    for lt in (noise.LabelNoise("flip", 0.2, 0.1), noise.Dilate(1), None, MatchedThreshold(0.05, False),
               ntm.random_matrix(0.3)):
        assert metrics.level_threshold(probs, y, label_type=lt) is None, lt
    assert metrics.evaluate(out, masks, label_type=noise.LabelNoise("flip", 0.2, 0.1),
                            training=(out, y))["level"] is None
    assert metrics.level_threshold(probs, np.zeros_like(y), label_type=noise.Scattered(p)) is None
    with pytest.raises(ValueError, match="labels"):
        metrics.level_threshold(probs, np.where(y == 1, 2, 0), label_type=noise.Scattered(p))
    with pytest.raises(ValueError, match="labels"):
        metrics.level_threshold(probs, y[:, :3], label_type=noise.Scattered(p))
    with pytest.raises(ValueError, match="probs"):
        metrics.level_threshold(probs + 1, y, label_type=noise.Scattered(p))
    with pytest.raises(ValueError, match="training"):
        metrics.evaluate(np.full((2, 4, 4, 3), 1 / 3), np.zeros((2, 4, 4), int), num_classes=3,
                         training=(probs, y))
