"""The classical thresholds and the local separation score, against scikit-image, scipy and brute force."""

import jax
import numpy as np
import pytest
from skimage.filters import threshold_local, threshold_otsu

from metastructure import data, metrics, thresholds


@pytest.fixture(scope="module")
def er():
    return data.er(jax.random.key(0), 3, size=48)


def test_grayscale_is_the_channel_mean_in_every_layout():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    g = thresholds.grayscale(x)
    assert g.dtype == np.float64 and g.shape == (2, 5, 6)
    np.testing.assert_allclose(g, x.astype(np.float64).mean(axis=-1), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thresholds.grayscale(x[..., 0]), x[..., 0])  # (N, H, W): one channel
    np.testing.assert_array_equal(thresholds.grayscale(x[0, ..., 0]), x[:1, ..., 0])  # (H, W): one image
    for bad, err, match in ((x[None], ValueError, r"\(N, H, W, C\), \(N, H, W\) or \(H, W\)"),
                            (np.zeros(4), ValueError, "images must be"),
                            (np.full((2, 3, 3), np.nan), ValueError, "NaN"),
                            (np.zeros((0, 3, 3)), ValueError, "empty"),
                            (np.full((3, 3), "a"), TypeError, "real-valued")):
        with pytest.raises(err, match=match):
            thresholds.otsu(bad)


def test_otsu_against_scikit_image(er):
    im = er.images[..., 0]
    ours = thresholds.otsu(er.images)
    ref = np.stack([x > threshold_otsu(x) for x in im])
    assert ours.dtype == bool and ours.shape == im.shape
    assert np.mean(ours != ref) < 0.005  # a float32 histogram against scikit-image's float64: a bin may differ
    for x in im:  # the threshold itself: within one bin of scikit-image's
        assert abs(float(metrics.otsu_threshold(x)) - threshold_otsu(x)) <= (x.max() - x.min()) / 256 + 1e-6
    # two well-separated levels: the maximum is flat across the gap, and both take its first bin
    rng = np.random.default_rng(1)
    truth = rng.random((2, 20, 24)) < 0.3
    two = np.where(truth, 5.0, 1.0) + rng.uniform(-0.5, 0.5, truth.shape)
    np.testing.assert_array_equal(thresholds.otsu(two), np.stack([x > threshold_otsu(x) for x in two]))
    assert np.mean(thresholds.otsu(two) != truth) < 0.02
    # channels are averaged first; a constant image is all background
    rgb = np.stack([two, 2 * two, 3 * two], axis=-1)
    np.testing.assert_array_equal(thresholds.otsu(rgb), np.stack([x > threshold_otsu(x) for x in rgb.mean(-1)]))
    assert not thresholds.otsu(np.ones((1, 4, 4))).any()


@pytest.mark.parametrize("block_size, offset", [(15, 0.0), (35, 0.0), (7, 0.2)])
def test_adaptive_against_scikit_image(er, block_size, offset):
    im = er.images[..., 0]
    np.testing.assert_array_equal(
        thresholds.adaptive(er.images, block_size=block_size, offset=offset),
        np.stack([x > threshold_local(x, block_size, method="mean", offset=offset) for x in im]))


@pytest.mark.parametrize("block_size", [4, 1, 0])
def test_adaptive_rejects_even_or_small_blocks(er, block_size):
    with pytest.raises(ValueError, match="block_size"):
        thresholds.adaptive(er.images, block_size=block_size)


def test_kmeans_is_the_exact_two_cluster_optimum(er):
    im = er.images[..., 0]
    km = thresholds.kmeans(er.images)
    for x, k in zip(im, km, strict=True):  # the bright cluster: every foreground pixel brighter than every other
        assert x[k].min() >= x[~k].max() - 1e-9
        # the global optimum: no cut between distinct intensities has a smaller within-cluster sum of squares
        v = np.sort(x.ravel().astype(np.float64))

        def sse(cut, v=v):
            lo, hi = v[:cut], v[cut:]
            return ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum()

        ours = sse(int((~k).sum()))
        cuts = np.flatnonzero(v[1:] > v[:-1]) + 1
        assert ours <= min(sse(c) for c in cuts) + 1e-9 * ours
    assert not thresholds.kmeans(np.ones((1, 4, 4))).any()  # constant image: no cut, all background
    # worked by hand: between-class k (n - k) (m1 - m2)^2 is 333, 428, 252 for cuts after 0, 1, 4
    v = np.array([[0.0] * 10 + [1.0, 4.0, 5.0]])
    np.testing.assert_array_equal(thresholds.kmeans(v)[0], v > 2.0)


def test_local_separation_is_the_mean_windowed_otsu_share():
    """Brute force on a small image: every pixel's window (scipy's "reflect" border is numpy's "symmetric")."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(12, 14)) + np.linspace(0, 3, 14)
    m = x > np.median(x)
    m[:5, :5] = True  # a window of one class scores 0
    xp, mp = np.pad(x, 2, mode="symmetric"), np.pad(m, 2, mode="symmetric")
    shares = []
    for i in range(12):
        for j in range(14):
            w, mw = xp[i:i + 5, j:j + 5], mp[i:i + 5, j:j + 5]
            pi = mw.mean()
            shares.append(0.0 if pi in (0.0, 1.0) else pi * (1 - pi) * (w[mw].mean() - w[~mw].mean()) ** 2 / w.var())
    s = thresholds.local_separation(x[None], m[None], window=5)
    assert s.shape == (1,) and s[0] == pytest.approx(np.mean(shares), rel=1e-6)
    assert thresholds.local_separation(x, m, window=5)[0] == s[0]  # (H, W) in: one image
    with pytest.raises(ValueError, match="window"):
        thresholds.local_separation(x, m, window=2)
    with pytest.raises(ValueError, match="masks"):
        thresholds.local_separation(x, m[:6], window=5)


def test_local_separation_prefers_the_local_threshold_only_under_uneven_illumination():
    """Bright stripes on a ramp: Otsu splits the ramp and a 15-px local mean finds the stripes, and the score
    (which sees no truth) ranks them so; without the ramp Otsu is right and scores higher."""
    rng = np.random.default_rng(0)
    xx = np.mgrid[:64, :64][1]
    truth = (xx % 12) < 4
    for ramp, local_wins in ((6.0, True), (0.0, False)):
        x = ramp * xx / 63 + 1.5 * truth + 0.3 * rng.normal(size=truth.shape)
        ot, ad = thresholds.otsu(x), thresholds.adaptive(x, block_size=15)
        assert (np.mean(ad == truth) > np.mean(ot == truth)) == local_wins  # the premise
        s_ot, s_ad = (thresholds.local_separation(x, m)[0] for m in (ot, ad))
        assert 0 <= min(s_ot, s_ad) and max(s_ot, s_ad) <= 1 and (s_ad > s_ot) == local_wins


def test_local_separation_refuses_masks_of_another_shape_or_not_binary():
    """Masks are 0/1 of the images' (N, H, W): the same number of pixels in another shape, soft or NaN masks and
    strings are refused by name (they used to be reshaped or read as weights)."""
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1))
    m = x[..., 0] > 0
    for bad in (m.reshape(2, 8, 32), m[..., None], m[:1], m.astype(float) * 0.5 + 0.25, np.where(m, np.nan, 0.0)):
        with pytest.raises(ValueError, match="masks"):
            thresholds.local_separation(x, bad, window=5)
    with pytest.raises(TypeError, match="masks"):
        thresholds.local_separation(x, m.astype(str), window=5)
    with pytest.raises(TypeError, match="window"):
        thresholds.local_separation(x, m, window=5.5)
    assert thresholds.local_separation(x, m.astype(np.float32), window=5).tolist() == thresholds.local_separation(
        x, m, window=5).tolist()


def test_thresholds_are_scale_free_on_huge_values_and_empty_on_constant_images():
    """Each threshold and the score are invariant to scaling the image (the oracle: their result on x itself, and
    scikit-image's threshold_otsu on x); values near the float64 limit no longer overflow to NaN or cut nothing.
    A constant image, at any level, is all background."""
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 24, 24)) + 2.0 * (np.mgrid[:24, :24][1] % 8 < 3)
    ref = {"otsu": thresholds.otsu(x), "adaptive": thresholds.adaptive(x, block_size=7), "kmeans": thresholds.kmeans(x)}
    assert np.mean(ref["otsu"] == np.stack([im > threshold_otsu(im) for im in x])) > 0.99
    for s in (1e30, 1e200, 1e300):
        xs = x * s
        np.testing.assert_array_equal(thresholds.otsu(xs), ref["otsu"])
        np.testing.assert_array_equal(thresholds.adaptive(xs, block_size=7), ref["adaptive"])
        np.testing.assert_array_equal(thresholds.adaptive(xs, block_size=7, offset=0.25 * s),  # offset scales too
                                      thresholds.adaptive(x, block_size=7, offset=0.25))
        np.testing.assert_array_equal(thresholds.kmeans(xs), ref["kmeans"])
        np.testing.assert_allclose(thresholds.local_separation(xs, ref["otsu"], window=5),
                                   thresholds.local_separation(x, ref["otsu"], window=5), rtol=1e-9)
    for level in (0.0, -3.7, 1e8 + 0.1, 1e300):
        c = np.full((1, 16, 16), level)
        for f in (thresholds.otsu, thresholds.adaptive, thresholds.kmeans):
            assert not f(c).any(), (f.__name__, level)
