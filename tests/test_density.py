"""Density fields: scipy oracles at every pixel, Lemma 1 by Monte Carlo, t*, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from helpers import blobs

from metastructure import density, noise, ntm

ACC = density.ACCURACY


def oracle(labels, bandwidth, kernel, *, cls=1, ignore=-1, ndim=2):
    """Normalised convolution in float64 by scipy.ndimage, written independently."""
    lab = np.asarray(labels).astype(np.int64)
    valid = (lab != ignore).astype(np.float64)
    ind = ((lab == cls) & (lab != ignore)).astype(np.float64)

    def filt(x):
        if kernel == "gaussian":
            return ndi.gaussian_filter(x, bandwidth, mode="constant", cval=0.0, truncate=4.0)
        if kernel == "box":
            return ndi.uniform_filter(x, size=2 * int(bandwidth) + 1, mode="constant", cval=0.0)
        r = int(np.floor(bandwidth))
        g = np.mgrid[tuple(slice(-r, r + 1) for _ in range(ndim))]
        fp = np.maximum(0.0, 1.0 - (g**2).sum(0) / bandwidth**2)
        return ndi.convolve(x, fp, mode="constant", cval=0.0)

    axes = lab.shape[: lab.ndim - ndim]
    num = np.empty(lab.shape)
    den = np.empty(lab.shape)
    for idx in np.ndindex(*axes):
        num[idx] = filt(ind[idx])
        den[idx] = filt(valid[idx])
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den, den


CASES = [("gaussian", 0.7), ("gaussian", 2.0), ("gaussian", 5.5), ("box", 1), ("box", 4), ("epanechnikov", 3.0)]


@pytest.fixture(params=["dense", "fft"])
def path(request, monkeypatch):
    """Run each oracle test through both filtering paths (dense matmul and FFT)."""
    if request.param == "fft":
        monkeypatch.setattr(density, "DENSE_MAX", 8)
    jax.clear_caches()
    yield request.param
    jax.clear_caches()


@pytest.mark.parametrize("kernel,bw", CASES)
def test_fraction_field_equals_scipy_oracle(path, kernel, bw):
    m = blobs((37, 52), seed=2)
    want, _ = oracle(m, bw, kernel)
    got = np.asarray(density.fraction_field(m, bw, kernel=kernel))
    assert got.shape == m.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=ACC, rtol=0)


@pytest.mark.parametrize("kernel,bw", [("gaussian", 3.0), ("box", 2), ("epanechnikov", 4.0)])
def test_ignore_excluded_from_numerator_and_denominator(path, kernel, bw):
    m = blobs((30, 41), seed=5).astype(np.int32)
    rng = np.random.default_rng(0)
    m[rng.random(m.shape) < 0.3] = -1
    m[:6, :9] = -1
    want, den = oracle(m, bw, kernel)
    got = np.asarray(density.fraction_field(m, bw, kernel=kernel))
    ok = den > 1e-5
    np.testing.assert_allclose(got[ok], want[ok], atol=ACC, rtol=0)


def test_bandwidth_larger_than_image(path):
    m = blobs((20, 24), seed=3)
    want, _ = oracle(m, 40.0, "gaussian")
    np.testing.assert_allclose(density.fraction_field(m, 40.0), want, atol=ACC)
    np.testing.assert_allclose(density.fraction_field(m, 30, kernel="box"), oracle(m, 30, "box")[0], atol=ACC)


def test_3d_and_batched(path):
    vol = blobs((10, 12, 14), seed=6, sigma=2.0)
    for kernel, bw in [("gaussian", 1.5), ("box", 2), ("epanechnikov", 2.5)]:
        want, _ = oracle(vol, bw, kernel, ndim=3)
        np.testing.assert_allclose(density.fraction_field(vol, bw, kernel=kernel, ndim=3), want, atol=ACC)
    b = np.stack([blobs((16, 18), seed=s) for s in range(4)]).reshape(2, 2, 16, 18)
    want, _ = oracle(b, 2.0, "gaussian")
    np.testing.assert_allclose(density.fraction_field(b, 2.0), want, atol=ACC)


def test_constant_maps_give_constant_fields():
    for kernel, bw in [("gaussian", 3.0), ("box", 5), ("epanechnikov", 6.0)]:
        ones = np.ones((25, 31), np.int32)
        np.testing.assert_allclose(density.fraction_field(ones, bw, kernel=kernel), 1.0, atol=ACC)
        np.testing.assert_allclose(density.fraction_field(0 * ones, bw, kernel=kernel), 0.0, atol=ACC)


def test_half_plane_is_one_half_on_the_edge():
    # exact symmetry: the edge sits between columns 15 and 16; their mean is 1/2
    m = np.zeros((40, 32), bool)
    m[:, :16] = True
    for kernel, bw in [("gaussian", 3.0), ("box", 3), ("epanechnikov", 4.0)]:
        d = np.asarray(density.fraction_field(m, bw, kernel=kernel))
        np.testing.assert_allclose(d[:, 15] + d[:, 16], 1.0, atol=2 * ACC)
        assert np.all(np.diff(d[20]) <= ACC), "monotone across the edge"


def test_multiclass_sums_to_one_and_matches_binary():
    rng = np.random.default_rng(1)
    lab = ndi.zoom(rng.integers(0, 4, (6, 7)), 6, order=0)
    lab[rng.random(lab.shape) < 0.1] = -1
    d = np.asarray(density.fraction_field(lab, 2.5, num_classes=4))
    assert d.shape == lab.shape + (4,)
    np.testing.assert_allclose(d.sum(-1), 1.0, atol=4 * ACC)
    for c in range(4):
        np.testing.assert_allclose(d[..., c], oracle(lab, 2.5, "gaussian", cls=c)[0], atol=ACC)
    binary = (lab == 2).astype(np.int32)
    binary[lab == -1] = -1
    np.testing.assert_allclose(density.fraction_field(binary, 2.5), d[..., 2], atol=ACC)


def test_all_ignore_neighbourhood_is_nan():
    m = np.full((40, 40), -1, np.int32)
    m[:5, :5] = 1
    d = np.asarray(density.fraction_field(m, 1.0))
    assert np.isnan(d[30, 30]) and d[2, 2] == pytest.approx(1.0)


def test_jit_and_vmap_agree(batch):
    f = lambda x: density.fraction_field(x, 2.0)  # noqa: E731
    plain = np.asarray(f(batch))
    np.testing.assert_array_equal(np.asarray(jax.jit(f)(batch)), plain)
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(jnp.asarray(batch))), plain, atol=1e-6)


def test_intensity_field_sums_to_one_and_is_kde_inside():
    m = np.zeros((64, 64), bool)
    m[20:44, 24:40] = True
    f = np.asarray(density.intensity_field(m, 2.0))
    assert f.sum() == pytest.approx(1.0, abs=1e-5)
    kde = ndi.gaussian_filter(m.astype(float), 2.0, mode="constant", truncate=4.0) / m.sum()
    np.testing.assert_allclose(f, kde, atol=1e-6)  # no border effect here: object far from the border
    fm = np.asarray(density.intensity_field(np.stack([m, m]).astype(np.int32) * 1, 2.0, num_classes=2))
    np.testing.assert_allclose(fm.sum(axis=(1, 2)), 1.0, atol=1e-4)  # float32 sums of 4096 terms


def test_intensity_of_empty_class_is_an_error():
    with pytest.raises(ValueError, match="no pixel"):
        density.intensity_field(np.zeros((8, 8), bool), 1.0)


# ------------------------------------------------------------- Lemma 1 (Monte Carlo)
def test_lemma1_flip_bernoulli_monte_carlo():
    """mean_k D*_k -> b + (1-f-b) D, with the Monte Carlo error bounded per pixel.

    Each noisy pixel is Bernoulli, so Var D*(x) = sum_y w(x,y)^2 t_y (1 - t_y)
    <= 0.25 sum_y w(x,y)^2, where w are the normalised kernel weights. Over K
    draws the mean's sd is sqrt(Var / K); we allow 5 sd at every pixel.
    """
    m = blobs((48, 48), seed=8)
    f, b, k, bw = 0.35, 0.2, 400, 2.0
    keys = jax.random.split(jax.random.key(4), k)
    noisy = jax.vmap(lambda key: density.fraction_field(noise.flip(key, m, f, b, exact=False), bw))(keys)
    mean = np.asarray(noisy).mean(0)
    want = np.asarray(density.expected_fraction_field(density.fraction_field(m, bw), ntm.flip_matrix(f, b)))
    den = ndi.gaussian_filter(np.ones(m.shape), bw, mode="constant")
    sq = ndi.correlate(np.ones(m.shape), density.kernel_weights("gaussian", bw) ** 2, mode="constant")
    sd = np.sqrt(0.25 * sq / den**2 / k)
    assert np.all(np.abs(mean - want) < 5 * sd + ACC)
    assert np.abs(mean - want).mean() < 1.2 * sd.mean()  # and errors look like noise, not bias


def test_lemma1_exact_sampling_monte_carlo():
    """Exact-count sampling keeps each fg pixel with probability k/N exactly: E D* = (k/N) D."""
    m = blobs((40, 40), seed=9)
    p, k, bw = 0.1, 400, 3.0
    keys = jax.random.split(jax.random.key(5), k)
    noisy = jax.vmap(lambda key: density.fraction_field(noise.sample(key, m, p), bw))(keys)
    n = m.sum()
    kept = int(np.ceil(p * n))
    want = kept / n * np.asarray(density.fraction_field(m, bw))
    den = ndi.gaussian_filter(np.ones(m.shape), bw, mode="constant")
    sq = ndi.correlate(np.ones(m.shape), density.kernel_weights("gaussian", bw) ** 2, mode="constant")
    sd = np.sqrt(0.25 * sq / den**2 / k)  # without-replacement draws only shrink the variance
    assert np.all(np.abs(np.asarray(noisy).mean(0) - want) < 5 * sd + ACC)


def test_lemma1_multiclass_expected_field():
    """E[D*_m] by three routes: the implementation (T^T D), the definition (the fraction field is linear in the
    labels, so its mean is scipy's normalised convolution of the expected one-hot labels T[label]), and Monte
    Carlo over corrupted maps."""
    rng = np.random.default_rng(2)
    lab = ndi.zoom(rng.integers(0, 3, (5, 5)), 8, order=0)
    t = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    clean = density.fraction_field(lab, 2.0, num_classes=3)
    want = np.asarray(density.expected_fraction_field(clean, t))
    soft = t[lab]  # (H, W, M): P(noisy label = m) at each pixel
    ones = np.ones(lab.shape)
    den = ndi.gaussian_filter(ones, 2.0, mode="constant", cval=0.0, truncate=4.0)
    oracle_field = np.stack([ndi.gaussian_filter(soft[..., m], 2.0, mode="constant", cval=0.0, truncate=4.0) / den
                             for m in range(3)], axis=-1)
    np.testing.assert_allclose(want, oracle_field, atol=3 * ACC)
    keys = jax.random.split(jax.random.key(6), 300)
    noisy = jax.vmap(lambda key: density.fraction_field(noise.corrupt(key, lab, t), 2.0, num_classes=3))(keys)
    # per-pixel sd <= sqrt(0.25 sum w^2 / K) <= 0.5 * 0.14 / sqrt(300) ~ 0.004
    np.testing.assert_allclose(np.asarray(noisy).mean(0), want, atol=0.025)


def test_expected_fraction_field_stacked_binary():
    """A 2 x 2 T with ``stacked``: class fractions (..., 2) in, (..., 2) out, equal to the binary form on the
    foreground column and summing to 1."""
    m = blobs((30, 34), seed=4)
    d = np.asarray(density.fraction_field(m, 2.0))
    t = ntm.flip_matrix(0.3, 0.1)
    both = np.stack([1 - d, d], axis=-1)
    out = np.asarray(density.expected_fraction_field(both, t, stacked=True))
    assert out.shape == both.shape
    np.testing.assert_allclose(out[..., 1], np.asarray(density.expected_fraction_field(d, t)), atol=1e-6)
    np.testing.assert_allclose(out[..., 0], 0.9 * (1 - d) + 0.3 * d, atol=1e-6)  # (1-b)(1-D) + f D
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="last axis"):
        density.expected_fraction_field(d, t, stacked=True)


# ------------------------------------------------------------- t*, partition
def test_matched_threshold_values():
    assert density.matched_threshold(ntm.sample_matrix(0.1)).threshold == 0.05
    assert density.matched_threshold(ntm.sample_matrix(0.1)).invert is False
    m = density.matched_threshold(ntm.flip_matrix(0.45, 0.45))
    assert m.threshold == pytest.approx(0.5) and not m.invert
    m = density.matched_threshold(ntm.flip_matrix(0.9, 0.9))
    assert m.invert and m.threshold == pytest.approx(0.5)
    assert density.matched_threshold(ntm.flip_matrix(0.3, 0.1)).threshold == pytest.approx(0.4)
    with pytest.raises(ValueError, match="f \\+ b = 1"):
        density.matched_threshold(ntm.flip_matrix(0.6, 0.4))
    with pytest.raises(ValueError, match="2 x 2"):
        density.matched_threshold(np.eye(3))


def test_matched_threshold_recovers_clean_partition():
    m = blobs((50, 50), seed=10)
    d = density.fraction_field(m, 2.0)
    for t in (ntm.sample_matrix(0.1), ntm.flip_matrix(0.3, 0.2), ntm.flip_matrix(0.8, 0.7)):
        e = density.expected_fraction_field(d, t)
        np.testing.assert_array_equal(
            density.partition(e, threshold=density.matched_threshold(t)), density.partition(d)
        )


def test_partition_multiclass():
    d = np.array([[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]])
    assert density.partition(d, multiclass=True).tolist() == [[1, 0]]


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda m: density.fraction_field(m, 0.0), ValueError, "bandwidth"),
        (lambda m: density.fraction_field(m, -2), ValueError, "bandwidth"),
        (lambda m: density.fraction_field(m, float("nan")), ValueError, "bandwidth"),
        (lambda m: density.fraction_field(m, 2, kernel="triangle"), ValueError, "kernel"),
        (lambda m: density.fraction_field(m, 2.5, kernel="box"), ValueError, "bandwidth"),
        (lambda m: density.fraction_field(m.astype(int) * 3, 2), ValueError, "labels"),
        (lambda m: density.fraction_field(m.astype(int) * 3, 2, num_classes=2), ValueError, "labels"),
        (lambda m: density.fraction_field(m, 2, num_classes=1), ValueError, "num_classes"),
        (lambda m: density.fraction_field(m[0], 2), ValueError, "labels"),
        (lambda m: density.fraction_field(m, 2, ndim=1), ValueError, "ndim"),
        (lambda m: density.expected_fraction_field(m, [[0.5, 0.6], [0, 1]]), ValueError, "transition"),
        (lambda m: density.expected_fraction_field(np.ones((4, 2)), ntm.symmetric_matrix(0.2, 3)), ValueError, "M=3"),
    ],
)
def test_bad_input(mask, call, exc, match):
    with pytest.raises(exc, match=match):
        call(mask)


def test_kernel_weights_and_smooth():
    w = density.kernel_weights("epanechnikov", 2.0)
    assert w.shape == (5, 5) and w[0, 0] == 0 and w.sum() == pytest.approx(1.0)
    x = np.zeros((9, 9))
    x[4, 4] = 1.0
    np.testing.assert_allclose(density.smooth(x, 2.0, kernel="epanechnikov")[2:7, 2:7], w, atol=1e-6)
    np.testing.assert_allclose(density.smooth(x, 1.0)[4, 3:6], density.kernel_weights("gaussian", 1.0)[4, 3:6])


def test_uint8_and_int_masks_give_the_bool_field():
    m = blobs((30, 30), seed=12)
    want = np.asarray(density.fraction_field(m, 2.0))
    for dt in (np.uint8, np.int32, np.int64):
        # the integer path checks for ignore pixels: same field up to float32 rounding
        np.testing.assert_allclose(np.asarray(density.fraction_field(m.astype(dt), 2.0)), want, atol=1e-6)
