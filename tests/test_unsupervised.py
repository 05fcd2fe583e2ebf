"""EMS, pseudo-label selection, iGTT mechanics and the baselines (the iGTT model of arXiv 2103.11594)."""

import math

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.filters import threshold_local, threshold_otsu
from skimage.morphology import skeletonize

from metastructure import data, losses, metrics, nets, noise
from metastructure import unsupervised as u


def _masks():
    yy, xx = np.mgrid[:48, :48]
    a = (np.hypot(yy - 16, xx - 16) <= 9) | ((np.abs(yy - 36) <= 2) & (xx > 6) & (xx < 42))
    b = ~a  # covers more than half: EMS works on its inverse
    return np.stack([a, b])


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_ems_stays_within_the_radius_of_the_skeleton_and_keeps_exactly_ceil_ratio_n(radius):
    m = _masks()
    ratio = 0.3
    key = jax.random.key(3)
    out = np.asarray(u.ems(key, m, radius=radius, ratio=ratio))
    k_shift, _ = jax.random.split(key)
    for i, mi in enumerate(m):
        minority = mi if mi.mean() <= 0.5 else ~mi
        sk = skeletonize(minority)  # scikit-image as the oracle
        # every kept pixel lies within Chebyshev distance `radius` of a skeleton pixel
        near = ndi.binary_dilation(sk, structure=np.ones((3, 3)), iterations=radius) if radius else sk
        assert out[i].any() and not (out[i] & ~near).any()
    # exact count: ceil(ratio * N) of the N shifted skeleton pixels, per image
    shifted = np.asarray(noise.shift(k_shift, noise.skeletonize(np.stack([m[0], ~m[1]])), radius))
    for i in range(2):
        assert out[i].sum() == math.ceil(ratio * shifted[i].sum() - 1e-9)


def test_ems_rejects_bad_input():
    with pytest.raises(ValueError, match="ratio"):
        u.ems(jax.random.key(0), _masks(), ratio=1.5)
    with pytest.raises(ValueError, match="mask"):
        u.ems(jax.random.key(0), np.full((8, 8), 2))


def test_selection_recovers_the_mask_from_a_clean_bimodal_output():
    m = _masks()[0]
    rng = np.random.default_rng(0)
    probs = np.where(m, 0.8, 0.15) + rng.uniform(-0.05, 0.05, m.shape)
    sel = np.asarray(u.select_pseudo_labels(np.stack([probs, 1 - probs])))
    np.testing.assert_array_equal(sel[0], m)
    np.testing.assert_array_equal(sel[1], ~m)  # DMI is blind to polarity: it picks the split, not the side
    assert not np.asarray(u.select_pseudo_labels(np.full((8, 8), 0.3))).any()  # constant output: nothing
    with pytest.raises(ValueError, match="num_thresholds"):
        u.select_pseudo_labels(probs, num_thresholds=0)


def test_baselines_against_scikit_image():
    ds = data.er(jax.random.key(0), 3, size=48)
    im = ds.images[..., 0]
    np.testing.assert_array_equal(u.adaptive(ds.images, block_size=15),
                                  np.stack([x > threshold_local(x, 15, method="mean") for x in im]))
    ours = u.otsu(ds.images)
    ref = np.stack([x > threshold_otsu(x) for x in im])
    assert np.mean(ours != ref) < 0.005  # float32 histogram vs scikit-image's float64: a bin may differ
    km = u.kmeans(ds.images)
    for x, k in zip(im, km):  # the bright cluster: every foreground pixel brighter than every background one
        assert x[k].min() >= x[~k].max() - 1e-9
        # the global optimum: no cut between distinct intensities has a smaller within-cluster sum of squares
        v = np.sort(x.ravel().astype(np.float64))

        def sse(cut):
            lo, hi = v[:cut], v[cut:]
            return ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum()

        ours = sse(int((~k).sum()))
        cuts = np.flatnonzero(v[1:] > v[:-1]) + 1
        assert ours <= min(sse(c) for c in cuts[:: max(1, len(cuts) // 400)]) + 1e-9 * ours
    assert not u.kmeans(np.ones((1, 4, 4))).any()  # constant image: no cut, all background
    with pytest.raises(ValueError, match="block_size"):
        u.adaptive(ds.images, block_size=4)


def test_igtt_mechanics():
    tr = data.nuclei(jax.random.key(0), 4, size=32)
    kw = {"epochs": 2, "steps_per_epoch": 3, "model": nets.unet(widths=(4, 8))}
    r = u.igtt(jax.random.key(1), tr.images, **kw)
    assert r.pseudo_labels.shape == (3, 4, 32, 32) and not r.pseudo_labels[0].any()  # all-background start
    assert r.selected.shape == (2, 4, 32, 32) and [h["epoch"] for h in r.history] == [1, 2]
    assert r.predict(tr.images).shape == (4, 32, 32)
    for h, sel in zip(r.history, r.selected):  # what every record holds, from the selection itself
        assert h["selected_fraction"] == pytest.approx(float(sel.mean()))
        assert h["inverted_fraction"] == pytest.approx(float(np.mean(sel.mean(axis=(1, 2)) > 0.5)))
    # with EMS the next labels are sparse (10% of a skeleton); without, they are the selected masks
    assert r.pseudo_labels[1].sum() < 0.2 * r.selected[0].sum() + 4
    r2 = u.igtt(jax.random.key(1), tr.images, use_ems=False, **kw)
    np.testing.assert_array_equal(r2.pseudo_labels[1], r2.selected[0])
    r3 = u.igtt(jax.random.key(1), tr.images, init_labels=tr.masks, **kw)
    np.testing.assert_array_equal(r3.pseudo_labels[0], tr.masks.astype(bool))
    assert u.igtt_masks(r, tr.images).shape == (4, 32, 32)
    with pytest.raises(ValueError, match="init_labels"):
        u.igtt(jax.random.key(1), tr.images, init_labels=tr.masks[:2], **kw)
    with pytest.raises(ValueError, match="loss"):
        u.igtt(jax.random.key(1), tr.images, loss="hinge", **kw)


def test_dmi_of_a_candidate_is_minus_log_covariance():
    """det(P S^T / n) = cov(p, s) for binary s: the selection maximises pi (1 - pi) |E[p|s] - E[p|~s]|."""
    rng = np.random.default_rng(4)
    p = rng.random(500)
    s = rng.random(500) < 0.3
    cov = np.mean(p * s) - p.mean() * s.mean()
    assert float(losses.dmi_loss_from_probs(p, s)) == pytest.approx(-np.log(abs(cov)), rel=1e-4)
    gap = p[s].mean() - p[~s].mean()
    assert abs(cov) == pytest.approx(s.mean() * (1 - s.mean()) * abs(gap))


def test_ems_without_the_size_rule_keeps_the_given_side():
    m = _masks()[1]  # covers more than half
    key = jax.random.key(5)
    kept = np.asarray(u.ems(key, m, radius=0, ratio=1.0, invert=False))
    np.testing.assert_array_equal(kept, skeletonize(m))  # radius 0, ratio 1: exactly the skeleton of m itself
    flipped = np.asarray(u.ems(key, m, radius=0, ratio=1.0))
    np.testing.assert_array_equal(flipped, skeletonize(~m))


def test_igtt_orient_and_monitor_hooks():
    """The method never sees ground truth; a caller's ``orient`` replaces the size rule (EMS then keeps the
    given side) and ``monitor`` adds its records, called with each epoch's output and selection."""
    tr = data.nuclei(jax.random.key(0), 4, size=32)
    kw = {"epochs": 2, "steps_per_epoch": 3, "model": nets.unet(widths=(4, 8))}
    truth = tr.masks.astype(bool)
    calls = []

    def monitor(epoch, probs, sel):
        calls.append((epoch, probs.shape, sel.copy()))
        return {"dice_selected": float(metrics.dice(sel, truth))}

    key = jax.random.key(1)
    flip_first = lambda probs, sel: np.arange(len(sel)) == 0  # noqa: E731 - invert image 0, keep the rest
    r = u.igtt(key, tr.images, orient=flip_first, monitor=monitor, **kw)
    assert [c[0] for c in calls] == [1, 2] and all(c[1] == (4, 32, 32) for c in calls)
    assert [h["dice_selected"] for h in r.history] == [float(metrics.dice(c[2], truth)) for c in calls]
    for e, (_, _, raw) in enumerate(calls):  # stored selections are the oriented ones
        np.testing.assert_array_equal(r.selected[e][0], ~raw[0])
        np.testing.assert_array_equal(r.selected[e][1:], raw[1:])
        # and EMS keeps the side it is given: the next labels are ems(..., invert=False) of them, same key
        _, k_ems = jax.random.split(jax.random.fold_in(key, e))
        np.testing.assert_array_equal(r.pseudo_labels[e + 1], u.ems(k_ems, r.selected[e], invert=False))
    assert r.selected[-1][0].mean() > 0.5 or calls[-1][2][0].mean() > 0.5  # one side of image 0 is the large one
    with pytest.raises(ValueError, match="one bool per image"):
        u.igtt(key, tr.images, orient=lambda probs, sel: True, **kw)
    with pytest.raises(TypeError):
        u.igtt(key, tr.images, masks=tr.masks, **kw)  # no ground truth argument any more


def test_selection_is_unchanged_by_increasing_affine_maps_per_image():
    """Thresholds sit at fixed fractions of each image's range and det = cov(p, s) only scales: the
    selection on min-max scaled intensity is the selection on the intensity (used by the igtt diagnostics)."""
    img = data.er(jax.random.key(2), 3, size=48).images[..., 0]
    lo, hi = img.min(axis=(1, 2), keepdims=True), img.max(axis=(1, 2), keepdims=True)
    scaled = (img - lo) / (hi - lo)
    ref = np.asarray(u.select_pseudo_labels(scaled))
    np.testing.assert_array_equal(np.asarray(u.select_pseudo_labels(0.2 + 0.5 * scaled)), ref)
    assert 0 < ref.mean() < 1
    # a non-affine increasing map (a sigmoid of the raw intensity) may pick another mask
    assert not np.array_equal(np.asarray(u.select_pseudo_labels(1 / (1 + np.exp(-img)))), ref)
