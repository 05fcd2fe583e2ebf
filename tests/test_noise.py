"""Label types: exact counts, rates, oracles, purity, and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from helpers import blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from metastructure import noise, ntm

KEY = jax.random.key(0)


def ceil_count(p, n):
    return math.ceil(round(p * n, 9))


# ----------------------------------------------------------------- sample
@pytest.mark.parametrize("p", [0.0, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_sample_exact_count_per_image(batch, p):
    y = np.asarray(noise.sample(KEY, batch, p))
    assert y.dtype == batch.dtype
    assert not np.any(y & ~batch), "sampled pixels must be foreground"
    for img, out in zip(batch, y, strict=True):
        assert out.sum() == ceil_count(p, img.sum())


def test_sample_float_rounding_counts():
    # float32(0.1) * 10 = 1.0000000149: ceil must still give 1, and 0.3 * 10 -> 3
    m = np.zeros((1, 10), bool)
    m[0, :] = True
    assert int(noise.sample(KEY, m, 0.1).sum()) == 1
    assert int(noise.sample(KEY, m, 0.3).sum()) == 3
    assert int(noise.sample(KEY, m, 0.7).sum()) == 7


def test_sample_empty_mask_stays_empty():
    m = np.zeros((16, 16), bool)
    assert not noise.sample(KEY, m, 0.5).any()
    assert not noise.sample(KEY, m, 0.5, exact=False).any()


def test_sample_int_mask_keeps_dtype(mask):
    y = noise.sample(KEY, mask.astype(np.int32), 0.5)
    assert y.dtype == jnp.int32 and set(np.unique(y)) <= {0, 1}


def test_sample_exact_is_uniform_over_pixels():
    # Each of N=40 foreground pixels is kept with probability k/N = 8/40 = 0.2.
    # Over K=500 keys its count is Binomial(500, 0.2)-like: mean 100, sd 8.9;
    # all 40 counts within 5 sd holds with probability > 0.9999.
    m = np.zeros((8, 8), bool)
    m.flat[:40] = True
    keys = jax.random.split(jax.random.key(7), 500)
    ys = np.asarray(jax.vmap(lambda k: noise.sample(k, m, 0.2))(keys))
    counts = ys.sum(axis=0)[m]
    assert np.all(ys.sum(axis=(1, 2)) == 8)
    assert np.all(np.abs(counts - 100) < 5 * math.sqrt(500 * 0.2 * 0.8))


def test_sample_bernoulli_rate():
    # Count ~ Binomial(N, p); |count - Np| < 5 sd.
    m = np.ones((256, 256), bool)
    for p in (0.01, 0.1, 0.5):
        c = int(noise.sample(KEY, m, p, exact=False).sum())
        n = m.size
        assert abs(c - n * p) < 5 * math.sqrt(n * p * (1 - p))


# a few shapes (each is one compile), the edge ones included; masks, rates and keys range freely
@settings(max_examples=25, deadline=None)
@given(
    h=st.sampled_from([1, 3, 12]),
    w=st.sampled_from([1, 5, 12]),
    p=st.floats(0, 1, width=32, allow_subnormal=False),
    seed=st.integers(0, 2**16),
)
def test_sample_property(h, w, p, seed):
    rng = np.random.default_rng(seed)
    m = rng.random((h, w)) < rng.random()
    y = np.asarray(noise.sample(jax.random.key(seed), m, p))
    assert not np.any(y & ~m)
    n = int(m.sum())
    # float32 tolerance: the count is ceil(p N) up to the documented 2^-22 rule
    assert y.sum() in {math.ceil(p * n * (1 - 2**-20)), math.ceil(p * n)}


# ----------------------------------------------------------------- flip
@pytest.mark.parametrize("f,b", [(0.0, 0.0), (0.45, 0.45), (0.3, 0.1), (0.9, 0.9), (1.0, 0.0), (0.2, 1.0)])
def test_flip_exact_counts(batch, f, b):
    y = np.asarray(noise.flip(KEY, batch, f, b))
    for img, out in zip(batch, y, strict=True):
        nf, nb = img.sum(), (~img).sum()
        assert (img & ~out).sum() == math.floor(round(f * nf, 9))
        assert (~img & out).sum() == math.floor(round(b * nb, 9))


def test_flip_matches_sample_count(batch):
    for p in (0.1, 0.3, 0.75):
        a = np.asarray(noise.flip(KEY, batch, 1 - p, 0.0)).sum(axis=(1, 2))
        b = np.asarray(noise.sample(KEY, batch, p)).sum(axis=(1, 2))
        np.testing.assert_array_equal(a, b)


def test_flip_bernoulli_rates():
    m = np.zeros((256, 256), bool)
    m[:, :128] = True
    f, b = 0.3, 0.2
    y = np.asarray(noise.flip(KEY, m, f, b, exact=False))
    n = m.sum()
    assert abs((m & ~y).sum() - f * n) < 5 * math.sqrt(n * f * (1 - f))
    assert abs((~m & y).sum() - b * n) < 5 * math.sqrt(n * b * (1 - b))


# ----------------------------------------------------------------- purity
RANDOM_FUNCS = {
    "sample": lambda k, m: noise.sample(k, m, 0.3),
    "sample_bern": lambda k, m: noise.sample(k, m, 0.3, exact=False),
    "flip": lambda k, m: noise.flip(k, m, 0.4, 0.2),
    "flip_bern": lambda k, m: noise.flip(k, m, 0.4, 0.2, exact=False),
    "shift": lambda k, m: noise.shift(k, m, 2),
    "boundary": lambda k, m: noise.boundary_noise(k, m, steps=3, p_outer=0.5, p_inner=0.3),
    "corrupt": lambda k, m: noise.corrupt(k, m.astype(np.int32), ntm.flip_matrix(0.3, 0.2)),
    "classes": lambda k, m: noise.sample_classes(k, m.astype(np.int32), 0.4, num_classes=2),
}


@pytest.mark.parametrize("name", sorted(RANDOM_FUNCS))
def test_plain_jit_vmap_agree(mask, name):
    fn = RANDOM_FUNCS[name]
    keys = jax.random.split(jax.random.key(3), 4)
    plain = np.stack([np.asarray(fn(k, mask)) for k in keys])
    jitted = np.stack([np.asarray(jax.jit(fn)(k, mask)) for k in keys])
    vmapped = np.asarray(jax.vmap(fn, in_axes=(0, None))(keys, mask))
    np.testing.assert_array_equal(plain, jitted)
    np.testing.assert_array_equal(plain, vmapped)
    np.testing.assert_array_equal(plain[0], np.asarray(fn(keys[0], mask)))  # same key, same output
    assert not np.array_equal(plain[0], plain[1])  # different keys, different draws


def test_vmap_over_ratios(mask):
    ps = jnp.array([0.1, 0.5, 1.0])
    ys = jax.vmap(lambda p: noise.sample(KEY, mask, p))(ps)
    assert [int(y.sum()) for y in ys] == [ceil_count(p, mask.sum()) for p in (0.1, 0.5, 1.0)]


def test_random_labels_rate_and_independence():
    y = np.asarray(noise.random_labels(KEY, (200, 200), 0.3))
    n = y.size
    assert abs(y.sum() - 0.3 * n) < 5 * math.sqrt(n * 0.21)
    assert y.dtype == bool
    est = ntm.estimate(blobs((200, 200)), y)
    np.testing.assert_allclose(est[0], est[1], atol=0.03)  # rank 1: rows equal


# ----------------------------------------------------------------- morphology
@pytest.mark.parametrize("r", [0, 1, 1.5, 2, 3, 4])
def test_dilate_erode_equal_scipy(mask, r):
    fp = noise.disk(r)
    np.testing.assert_array_equal(noise.dilate(mask, r), ndi.binary_dilation(mask, fp))
    np.testing.assert_array_equal(noise.erode(mask, r), ndi.binary_erosion(mask, fp, border_value=1))


def test_disk_is_the_disk():
    for r in (1, 2, 2.5, 4):
        n = int(r)
        yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
        np.testing.assert_array_equal(noise.disk(r), yy**2 + xx**2 <= r * r)


def test_dilate_erode_3d_and_batch():
    vol = blobs((12, 14, 16), seed=4, sigma=2.0)
    fp = noise.disk(2, ndim=3)
    np.testing.assert_array_equal(noise.dilate(vol, 2, ndim=3), ndi.binary_dilation(vol, fp))
    np.testing.assert_array_equal(noise.erode(vol, 2, ndim=3), ndi.binary_erosion(vol, fp, border_value=1))
    b = np.stack([blobs((20, 20), seed=s) for s in range(3)])
    np.testing.assert_array_equal(noise.dilate(b, 2), np.stack([ndi.binary_dilation(x, noise.disk(2)) for x in b]))


def test_skeleton_properties():
    eight = np.ones((3, 3), bool)
    for seed in range(4):
        m = blobs((64, 64), seed=seed, sigma=4.0, level=0.5)
        s = np.asarray(noise.skeletonize(m))
        assert not np.any(s & ~m), "skeleton inside the mask"
        # one pixel wide: no 2 x 2 block fully on
        blocks = s[:-1, :-1] & s[1:, :-1] & s[:-1, 1:] & s[1:, 1:]
        assert not blocks.any()
        assert ndi.label(s, eight)[1] == ndi.label(m, eight)[1], "components kept"
        assert s.sum() < 0.3 * m.sum()


def test_skeleton_of_a_bar_is_its_midline():
    m = np.zeros((11, 40), bool)
    m[3:8, 5:35] = True
    s = np.asarray(noise.skeletonize(m))
    assert s[5, 8:32].all(), "the midline, away from the ends, is the skeleton"
    assert s[:, 8:32].sum() == 24, "and nothing else there"
    t = ntm.skeleton_matrix(m, s)
    assert t[1, 1] == pytest.approx(s.sum() / m.sum())


def test_skeleton_3d_is_scikit_images_lee_thinning_per_volume():
    from skimage.morphology import skeletonize as sk

    rng = np.random.default_rng(3)
    vols = np.stack([ndi.gaussian_filter(rng.random((14, 16, 18)), 2.0) > 0.5 for _ in range(2)])
    out = np.asarray(noise.skeletonize(vols, ndim=3))
    assert out.shape == vols.shape and out.dtype == vols.dtype
    for v, o in zip(vols, out, strict=True):  # the oracle, one volume at a time
        np.testing.assert_array_equal(o, sk(v))
        assert o.any() and not np.any(o & ~v) and o.sum() < 0.3 * v.sum()
    tube = np.zeros((9, 9, 30), bool)
    tube[2:7, 2:7, 3:27] = True  # a square rod: its skeleton is (part of) its axis
    axis = np.asarray(noise.skeletonize(tube, ndim=3))
    assert axis[4, 4, 8:22].all() and axis[:, :, 8:22].sum() == 14


def test_skeleton_under_jit(mask):
    np.testing.assert_array_equal(jax.jit(noise.skeletonize)(mask), noise.skeletonize(mask))


# ----------------------------------------------------------------- shift
def test_shift_offsets_uniform_and_within_radius():
    m = np.zeros((15, 15), bool)
    m[7, 7] = True
    r, n = 2, 2500
    keys = jax.random.split(jax.random.key(11), n)
    ys = np.asarray(jax.vmap(lambda k: noise.shift(k, m, r))(keys))
    assert np.all(ys.sum(axis=(1, 2)) == 1)
    hist = ys.sum(axis=0)
    assert hist.sum() == n and hist[5:10, 5:10].sum() == n
    expected = n / 25  # 100 per cell, sd sqrt(100 * 24/25) ~ 9.8
    assert np.all(np.abs(hist[5:10, 5:10] - expected) < 5 * math.sqrt(expected * 24 / 25))


def test_shift_clips_at_border_and_radius_zero_is_identity(mask):
    m = np.zeros((6, 6), bool)
    m[0, 0] = True
    ys = jax.vmap(lambda k: noise.shift(k, m, 3))(jax.random.split(KEY, 200))
    assert np.all(np.asarray(ys).sum(axis=(1, 2)) == 1)
    np.testing.assert_array_equal(noise.shift(KEY, mask, 0), mask)


# ----------------------------------------------------------------- multi-class
def test_corrupt_empirical_transition():
    t = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
    lab = np.repeat(np.arange(3), 40000).reshape(120, 1000)
    lab[0, :10] = -1
    y = np.asarray(noise.corrupt(KEY, lab, t))
    assert np.all(y[0, :10] == -1), "ignore untouched"
    est = ntm.estimate(lab, y, num_classes=3)
    # each entry is a proportion over ~40000 pixels: sd <= 0.0025, bound 5 sd
    np.testing.assert_allclose(est, t, atol=0.0125)


def test_corrupt_symmetric_keeps_argmax_of_counts():
    lab = np.repeat(np.arange(4), 10000).reshape(40, 1000)
    y = np.asarray(noise.corrupt(KEY, lab, ntm.symmetric_matrix(0.7, 4)))
    est = ntm.estimate(lab, y, num_classes=4)
    assert np.all(np.argmax(est, axis=1) == np.arange(4))  # 0.3 > 0.7/3 on the diagonal


def test_sample_classes_exact_and_fill():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, size=(2, 30, 30))
    lab[0, 0, :5] = -1
    y = np.asarray(noise.sample_classes(KEY, lab, [0.1, 0.5, 1.0, 0.0], num_classes=4))
    for i in range(2):
        for c, p in enumerate([0.1, 0.5, 1.0, 0.0]):
            assert (y[i] == c).sum() == ceil_count(p, (lab[i] == c).sum())
    assert np.all(y[0, 0, :5] == -1)
    z = np.asarray(noise.sample_classes(KEY, lab, 0.5, num_classes=4, fill=0))
    assert not np.any(z[lab != -1] == -1)


# ----------------------------------------------------------------- boundary noise
def test_boundary_noise_extremes_are_cross_morphology(mask):
    cross = ndi.generate_binary_structure(2, 1)
    grow = noise.boundary_noise(KEY, mask, steps=3, p_outer=1.0)
    np.testing.assert_array_equal(grow, ndi.binary_dilation(mask, cross, iterations=3))
    shrink = noise.boundary_noise(KEY, mask, steps=2, p_outer=0.0, p_inner=1.0)
    np.testing.assert_array_equal(shrink, ndi.binary_erosion(mask, cross, iterations=2, border_value=1))
    np.testing.assert_array_equal(noise.boundary_noise(KEY, mask, steps=0, p_outer=1.0), mask)


def test_boundary_noise_changes_only_near_boundary(mask):
    y = np.asarray(noise.boundary_noise(KEY, mask, steps=4, p_outer=0.3, p_inner=0.3))
    cross = ndi.generate_binary_structure(2, 1)
    band = ndi.binary_dilation(mask, cross, iterations=4) & ~ndi.binary_erosion(
        mask, cross, iterations=4, border_value=1
    )
    assert not np.any((y != mask) & ~band)
    assert np.any(y != mask)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: noise.sample(KEY, m, 1.5), "ratio"),
        (lambda m: noise.sample(KEY, m, -0.1), "ratio"),
        (lambda m: noise.sample(KEY, m.astype(int) * 2, 0.5), "mask"),
        (lambda m: noise.flip(KEY, m, 0.2, 2.0), "bg_to_fg"),
        (lambda m: noise.random_labels(KEY, (4, 4), float("nan")), "rate"),
        (lambda m: noise.dilate(m, -1), "radius"),
        (lambda m: noise.shift(KEY, m, 1.5), "radius"),
        (lambda m: noise.corrupt(KEY, m.astype(int), [[0.5, 0.4], [0, 1]]), "transition"),
        (lambda m: noise.corrupt(KEY, m.astype(int), [[1.0, 0, 0], [0, 1, 0]]), "transition"),
        (lambda m: noise.corrupt(KEY, m.astype(int) + 5, np.eye(2)), "labels"),
        (lambda m: noise.sample_classes(KEY, m.astype(int), 0.5, num_classes=2, ndim=4), "ndim"),
        (lambda m: noise.sample(KEY, m[0], 0.5), "mask"),
        (lambda m: noise.boundary_noise(KEY, m, steps=-1, p_outer=0.1), "steps"),
    ],
)
def test_bad_input_names_the_argument(mask, call, match):
    with pytest.raises(ValueError, match=match):
        call(mask)


def test_float_mask_rejected(mask):
    with pytest.raises(TypeError, match="mask"):
        noise.sample(KEY, mask.astype(np.float32), 0.5)


def test_label_noise_values():
    m = np.zeros((2, 16, 16), bool)
    m[:, 4:12, 4:12] = True
    k = jax.random.key(1)
    np.testing.assert_array_equal(noise.LabelNoise("sample", 0.25)(k, m), noise.sample(k, m, 0.25))
    np.testing.assert_array_equal(noise.LabelNoise("flip", 0.3, 0.1)(k, m), noise.flip(k, m, 0.3, 0.1))
    np.testing.assert_array_equal(noise.LabelNoise("dilate", 2)(k, m), noise.dilate(m, 2))
    np.testing.assert_array_equal(noise.LabelNoise("clean")(k, m), m)
    lab = np.repeat(np.arange(4), 64).reshape(16, 16)
    sym = noise.LabelNoise("symmetric", 0.6, num_classes=4)
    np.testing.assert_array_equal(sym(k, lab), noise.corrupt(k, lab, ntm.symmetric_matrix(0.6, 4)))
    # T from ntm's closed forms; data-dependent kinds estimated from the masks they are given
    np.testing.assert_array_equal(sym.transition(), ntm.symmetric_matrix(0.6, 4))
    np.testing.assert_array_equal(noise.LabelNoise("random", 0.3).transition(), ntm.random_matrix(0.3))
    np.testing.assert_array_equal(noise.LabelNoise("flip", 0.3, 0.1).transition(), ntm.flip_matrix(0.3, 0.1))
    np.testing.assert_array_equal(noise.LabelNoise("sample", 0.2).transition(), ntm.sample_matrix(0.2))
    assert noise.LabelNoise("skeleton").transition() is None and not noise.LabelNoise("erode", 1).random
    sk = np.asarray(noise.skeletonize(m))
    np.testing.assert_allclose(noise.LabelNoise("skeleton").transition(masks=m), ntm.skeleton_matrix(m, sk),
                               atol=1e-15)
    ring = 4 * 8 / (16 * 16 - 8 * 8)  # a disk of radius 1 grows each 8 x 8 square by its 4 x 8 edge pixels
    np.testing.assert_allclose(noise.LabelNoise("dilate", 1).transition(masks=m), [[1 - ring, ring], [0, 1]])
    # t*: (1 + b - f)/2; none at f + b = 1; 1/2 for the shapes dilation / erosion make; s/2 for skeletons
    assert noise.LabelNoise("flip", 0.3, 0.1).matched_threshold().threshold == pytest.approx(0.4)
    assert noise.LabelNoise("flip", 0.9, 0.8).matched_threshold().invert
    assert noise.LabelNoise("flip", 0.6, 0.4).matched_threshold() is None
    assert noise.LabelNoise("random", 0.3).matched_threshold() is None
    assert noise.LabelNoise("erode", 2).matched_threshold() == (0.5, False)
    assert noise.LabelNoise("skeleton").matched_threshold(masks=m).threshold == pytest.approx(sk.sum() / m.sum() / 2)
    with pytest.raises(ValueError, match="depends on the masks"):
        noise.LabelNoise("skeleton").matched_threshold()
    with pytest.raises(ValueError, match="multi-class"):
        sym.matched_threshold()
    # rates are pytree leaves (traced under jit, vmap over rates); radii are static
    assert jax.tree_util.tree_leaves(noise.LabelNoise("flip", 0.3, 0.1)) == [0.3, 0.1]
    assert jax.tree_util.tree_leaves(noise.LabelNoise("dilate", 2)) == []
    counts = jax.vmap(lambda p: noise.LabelNoise("sample", p)(k, m[0]).sum())(jnp.array([0.25, 0.5]))
    assert counts.tolist() == [16, 32]
    for bad, match in [(("sample", 1.5), "rate"), (("flip", 0.1), "parameter"), (("blur", 1), "kind"),
                       (("dilate", -1), "radius")]:
        with pytest.raises(ValueError, match=match):
            noise.LabelNoise(*bad)
    with pytest.raises(ValueError, match="num_classes"):
        noise.LabelNoise("symmetric", 0.1)


# ------------------------------------------------------------- one class per label type
M4 = np.repeat(np.arange(4), 64).reshape(16, 16)  # a 4-class map, 64 pixels per class


def _square():
    m = np.zeros((2, 16, 16), bool)
    m[:, 4:12, 4:12] = True
    return m


# (label type, the plain function it must equal, binary?) for every class
DRAWS = [
    (noise.Clean(), lambda k, m: m, True),
    (noise.Sample(0.25), lambda k, m: noise.sample(k, m, 0.25), True),
    (noise.Flip(0.3, 0.1), lambda k, m: noise.flip(k, m, 0.3, 0.1), True),
    (noise.RandomLabels(0.3), lambda k, m: noise.random_labels(k, m.shape, 0.3), True),
    (noise.Dilate(2), lambda k, m: noise.dilate(m, 2), True),
    (noise.Erode(1.5), lambda k, m: noise.erode(m, 1.5), True),
    (noise.Skeleton(), lambda k, m: noise.skeletonize(m), True),
    (noise.Shift(2), lambda k, m: noise.shift(k, m, 2), True),
    (noise.BoundaryNoise(3, 0.5, 0.2), lambda k, m: noise.boundary_noise(k, m, steps=3, p_outer=0.5, p_inner=0.2),
     True),
    (noise.SampleClasses(0.5, num_classes=4), lambda k, m: noise.sample_classes(k, m, 0.5, num_classes=4), False),
    (noise.SymmetricFlip(0.6, num_classes=4), lambda k, m: noise.corrupt(k, m, ntm.symmetric_matrix(0.6, 4)), False),
    (noise.SampleVoid(0.3, num_classes=4), lambda k, m: noise.sample_classes(k, m, 0.3, num_classes=4, fill=4), False),
]
IDS = [type(n).__name__ for n, _, _ in DRAWS]


@pytest.mark.parametrize("ln, plain, binary", DRAWS, ids=IDS)
def test_each_class_draws_what_its_plain_function_draws(ln, plain, binary):
    k = jax.random.key(7)
    x = _square() if binary else M4
    np.testing.assert_array_equal(ln(k, x), plain(k, x))
    # under jit, the rates traced as pytree leaves: the same draw as the plain function with traced rates
    got = jax.jit(lambda n, k, x: n(k, x))(ln, k, jnp.asarray(x))
    np.testing.assert_array_equal(got, jax.jit(lambda k, x: plain(k, x))(k, jnp.asarray(x)))


def _ball_volumes() -> np.ndarray:
    """Two volumes (2, 6, 12, 12) of overlapping balls, integer 0/1 with a few ignore (-1) voxels."""
    z, r, c = np.mgrid[:6, :12, :12]
    two = ((z - 2.5) ** 2 + (r - 5) ** 2 + (c - 6) ** 2 < 10) | ((z - 4) ** 2 + (r - 8) ** 2 + (c - 3) ** 2 < 5)
    m = np.stack([two, (z - 1) ** 2 / 4 + (r - 6) ** 2 / 16 + (c - 6) ** 2 / 9 < 1]).astype(np.int32)
    m[0, 0, 0, :3] = -1
    return m


DRAWS3 = [
    ("sample 0.25", {}, lambda k, m: noise.sample(k, m, 0.25, ndim=3)),
    ("flip 0.3 0.1", {}, lambda k, m: noise.flip(k, m, 0.3, 0.1, ndim=3)),
    ("dilate 1.5", {}, lambda k, m: noise.dilate(m, 1.5, ndim=3)),
    ("erode 1", {}, lambda k, m: noise.erode(m, 1, ndim=3)),
    ("skeleton", {}, lambda k, m: noise.skeletonize(m, ndim=3)),
    ("shift 1", {}, lambda k, m: noise.shift(k, m, 1, ndim=3)),
    ("boundary_noise 2 0.5 0.2", {}, lambda k, m: noise.boundary_noise(k, m, steps=2, p_outer=0.5, p_inner=0.2,
                                                                         ndim=3)),
    ("sample_classes 0.5", {"num_classes": 2}, lambda k, m: noise.sample_classes(k, m, 0.5, num_classes=2, ndim=3)),
]


@pytest.mark.parametrize("name, kw, plain", DRAWS3, ids=[d[0] for d in DRAWS3])
def test_a_3d_label_type_draws_what_its_function_draws_on_volumes(name, kw, plain):
    """``ndim=3`` (static) reaches the draw: the label type equals its function with ``ndim=3``, eagerly and
    under jit, and differs from drawing each (H, W) plane alone where the type is spatial in z."""
    k, m = jax.random.key(5), _ball_volumes()
    ln = noise.LabelNoise.parse(name, ndim=3, **kw)
    assert ln.ndim == 3 and ln.name == name and ln != noise.LabelNoise.parse(name, **kw)
    want = np.asarray(plain(k, m))
    np.testing.assert_array_equal(ln(k, m), want)
    np.testing.assert_array_equal(jax.jit(lambda n, k, x: n(k, x))(ln, k, jnp.asarray(m)), want)
    back = jax.tree_util.tree_unflatten(*reversed(jax.tree_util.tree_flatten(ln)))
    assert back == ln and back.ndim == 3
    if name.startswith(("dilate", "erode")):  # the ball reaches across planes; the disk does not
        assert not np.array_equal(want, np.asarray(noise.LabelNoise.parse(name)(k, m)))


def test_ndim_is_static_and_checked():
    ln = noise.Sample(0.1, ndim=3)
    assert repr(ln) == "LabelNoise('sample', 0.1, ndim=3)" and repr(noise.Sample(0.1)) == "LabelNoise('sample', 0.1)"
    assert ln == noise.LabelNoise("sample", 0.1, ndim=3) and hash(ln) == hash(noise.Sample(0.1, ndim=3))
    assert noise.Sample(0.1).ndim == 2 and ln != noise.Sample(0.1)
    for bad in (1, 4, "3"):
        with pytest.raises(ValueError, match="ndim"):
            noise.Sample(0.1, ndim=bad)
        with pytest.raises(ValueError, match="ndim"):
            noise.LabelNoise.parse("sample 0.1", ndim=bad)


def test_the_legacy_constructor_builds_the_subclass():
    for args, kw, want in [(("sample", 0.1), {}, noise.Sample(0.1)), (("flip", 0.3, 0.2), {}, noise.Flip(0.3, 0.2)),
                           (("random", 0.5), {}, noise.RandomLabels(0.5)), (("dilate", 2), {}, noise.Dilate(2)),
                           (("erode", 1), {}, noise.Erode(1)), (("skeleton",), {}, noise.Skeleton()),
                           (("clean",), {}, noise.Clean()),
                           (("clean",), {"num_classes": 3}, noise.Clean(num_classes=3)),
                           (("shift", 1), {}, noise.Shift(1)),
                           (("boundary_noise", 2, 0.5, 0.0), {}, noise.BoundaryNoise(2, 0.5, 0.0)),
                           (("sample_classes", 0.5), {"num_classes": 3}, noise.SampleClasses(0.5, num_classes=3)),
                           (("symmetric", 0.9), {"num_classes": 19}, noise.SymmetricFlip(0.9, num_classes=19)),
                           (("sample_void", 0.1), {"num_classes": 19}, noise.SampleVoid(0.1, num_classes=19)),
                           (("flip", 0.1, 0.2), {"num_classes": 2}, noise.Flip(0.1, 0.2))]:
        ln = noise.LabelNoise(*args, **kw)
        assert type(ln) is type(want) and ln == want and isinstance(ln, noise.LabelNoise)
        assert ln.kind == args[0] and ln.params == args[1:]
    # names and reprs as they were (simulation cell labels and figure keys are built from the names)
    assert [noise.LabelNoise(*a).name for a in [("clean",), ("sample", 0.1), ("flip", 0.3, 0.2), ("random", 0.5),
                                                 ("dilate", 2), ("erode", 1), ("skeleton",)]] == \
        ["clean", "sample 0.1", "flip 0.3 0.2", "random 0.5", "dilate 2", "erode 1", "skeleton"]
    assert noise.SymmetricFlip(0.9, num_classes=19).name == "symmetric 0.9"
    assert noise.SampleClasses(0.25, num_classes=3).name == "sample_classes 0.25"
    assert repr(noise.Flip(0.3, 0.2)) == "LabelNoise('flip', 0.3, 0.2)"
    assert repr(noise.SymmetricFlip(0.9, num_classes=19)) == "LabelNoise('symmetric', 0.9, num_classes=19)"
    assert noise.Flip(0.3, 0.2).fg_to_bg == 0.3 and noise.BoundaryNoise(3, 0.5, 0.1).p_inner == 0.1
    assert [n.random for n, _, _ in DRAWS] == [False, True, True, True, False, False, False, True, True, True, True,
                                               True]
    assert [n.data_dependent for n, _, _ in DRAWS] == [False] * 4 + [True] * 5 + [False] * 3
    # the network's outputs: M for every type, M + 1 for void (its extra class)
    assert [n.output_classes for n, _, _ in DRAWS] == [None] * 9 + [4, 4, 5]


def test_transitions_against_ntm_and_a_draw():
    m = _square()
    np.testing.assert_array_equal(noise.Clean().transition(), np.eye(2))
    np.testing.assert_array_equal(noise.Clean(num_classes=3).transition(), np.eye(3))
    np.testing.assert_array_equal(noise.Sample(0.2).transition(), ntm.sample_matrix(0.2))
    np.testing.assert_array_equal(noise.Flip(0.3, 0.1).transition(), ntm.flip_matrix(0.3, 0.1))
    np.testing.assert_array_equal(noise.RandomLabels(0.3).transition(), ntm.random_matrix(0.3))
    np.testing.assert_array_equal(noise.SymmetricFlip(0.6, num_classes=4).transition(), ntm.symmetric_matrix(0.6, 4))
    np.testing.assert_array_equal(noise.SampleClasses(0.5, num_classes=4).transition(), np.eye(4))
    # void: M x (M + 1), [p I | (1 - p) 1]; a draw shows it (exact counts: ceil(p N) of N kept, the rest void)
    lab = np.repeat(np.arange(4), 40).reshape(4, 40)
    void = noise.SampleVoid(0.25, num_classes=4)
    np.testing.assert_allclose(void.transition(), [[0.25, 0, 0, 0, 0.75], [0, 0.25, 0, 0, 0.75],
                                                   [0, 0, 0.25, 0, 0.75], [0, 0, 0, 0.25, 0.75]])
    y = np.asarray(void(jax.random.key(2), lab))
    np.testing.assert_allclose([[np.mean(y[lab == c] == k) for k in range(5)] for c in range(4)], void.transition())
    # a draw shows its T: exact counts, floor(f N) of N flip
    y = noise.Flip(0.25, 0.125)(jax.random.key(3), m)
    np.testing.assert_allclose(ntm.estimate(m, y), noise.Flip(0.25, 0.125).transition(), atol=1 / 192)
    # the structured ones: estimated from the masks they are given, None without them or when random
    ring = 4 * 8 / (16 * 16 - 8 * 8)
    np.testing.assert_allclose(noise.Dilate(1).transition(masks=m), [[1 - ring, ring], [0, 1]])
    np.testing.assert_allclose(noise.Erode(1).transition(masks=m), [[1, 0], [28 / 64, 36 / 64]])
    assert noise.Erode(1).transition() is None and noise.Skeleton().transition() is None
    assert noise.Shift(1).transition(masks=m) is None and noise.BoundaryNoise(1, 0.5, 0.0).transition(masks=m) is None


def test_matched_thresholds():
    m = _square()
    assert noise.Sample(0.1).matched_threshold() == (0.05, False)
    assert noise.Flip(0.3, 0.1).matched_threshold().threshold == pytest.approx(0.4)
    inv = noise.Flip(0.9, 0.8).matched_threshold()
    assert inv.invert and inv.threshold == pytest.approx(0.45)
    assert noise.Flip(0.6, 0.4).matched_threshold() is None and noise.RandomLabels(0.3).matched_threshold() is None
    assert noise.Clean().matched_threshold() == (0.5, False)
    for ln in (noise.Dilate(2), noise.Erode(1), noise.Shift(1), noise.BoundaryNoise(2, 0.5, 0.1)):
        assert ln.matched_threshold() == (0.5, False)
    s = noise.skeletonize(m).sum() / m.sum()
    assert noise.Skeleton().matched_threshold(masks=m).threshold == pytest.approx(s / 2)
    with pytest.raises(ValueError, match="depends on the masks"):
        noise.Skeleton().matched_threshold()
    for multi in (noise.SymmetricFlip(0.1, num_classes=3), noise.SampleClasses(0.5, num_classes=3),
                  noise.SampleVoid(0.5, num_classes=3), noise.Clean(num_classes=3)):
        with pytest.raises(ValueError, match="multi-class"):
            multi.matched_threshold()


@pytest.mark.parametrize("ln, family", [
    (noise.Clean(), "CL"), (noise.Clean(num_classes=5), "CL"), (noise.Sample(1.0), "CL"), (noise.Flip(0, 0), "CL"),
    (noise.SymmetricFlip(0.0, num_classes=4), "CL"), (noise.SampleClasses(0.3, num_classes=4), "CL"),
    (noise.Sample(0.5), "RCL"), (noise.Sample(0.01), "RCL"), (noise.Flip(0.3, 0.2), "RCL"),
    (noise.Flip(0.6, 0.6), "RCL"),
    (noise.Flip(0.5, 0.5 - 1e-9), "RCL"), (noise.SymmetricFlip(0.5, num_classes=4), "RCL"),
    (noise.SymmetricFlip(0.9, num_classes=19), "RCL"),  # det = 0.05^18 ~ 4e-24, yet rank 19
    (noise.Sample(0.0), "RL"), (noise.Flip(0.5, 0.5), "RL"), (noise.Flip(0.3, 0.7), "RL"), (noise.Flip(1.0, 0.0), "RL"),
    (noise.Flip(0.5, 0.5 + 1e-13), "RL"), (noise.RandomLabels(0.3), "RL"), (noise.RandomLabels(0.0), "RL"),
    (noise.SymmetricFlip(0.75, num_classes=4), "RL"),
    (noise.SampleVoid(1.0, num_classes=4), "CL"), (noise.SampleVoid(0.1, num_classes=19), "RCL"),
    (noise.SampleVoid(0.0, num_classes=4), "RL"),
    (noise.Dilate(2), "PCL"), (noise.Dilate(0), "PCL"), (noise.Erode(1), "PCL"), (noise.Skeleton(), "PCL"),
    (noise.Shift(1), "PCL"), (noise.BoundaryNoise(2, 0.5, 0.0), "PCL"),
], ids=lambda v: v.name if isinstance(v, noise.LabelNoise) else v)
def test_family(ln, family):
    assert ln.family == family
    if family in ("CL", "RCL", "RL"):  # the oracle: T's rank and whether it is the identity
        t = ln.transition()  # M x M, or M x (M + 1) with void's column
        ident = np.array_equal(t[:, :len(t)], np.eye(len(t))) and not t[:, len(t):].any()
        want = "CL" if ident else "RL" if np.linalg.matrix_rank(t) < len(t) else "RCL"
        assert want == family or abs(1 - t[1, 0] - t[0, 1]) < 1e-12  # flip 0.5 0.5+1e-13: full rank to numpy
    if isinstance(ln, noise.Flip) and family == "RCL":
        assert ln.matched_threshold().invert == (sum(ln.params) > 1)


def test_family_is_not_decided_under_tracing():
    @jax.jit
    def fam(ln):
        return ln.family

    with pytest.raises(TypeError, match="traced"):
        fam(noise.Flip(0.3, 0.2))
    assert jax.jit(lambda ln: jnp.float32(ln.family == "PCL"))(noise.Dilate(1)) == 1  # PCL needs no rate


ALL = [n for n, _, _ in DRAWS] + [noise.Flip(0.6, 0.6), noise.Dilate(1.5), noise.Clean(num_classes=3),
                                  noise.BoundaryNoise(0, 1.0, 0.25), noise.Sample(0.05), noise.Flip(0, 1)]


@pytest.mark.parametrize("ln", ALL, ids=lambda n: n.name)
def test_parse_reads_the_name(ln):
    back = noise.LabelNoise.parse(ln.name, num_classes=ln.num_classes)
    assert back == ln and type(back) is type(ln) and hash(back) == hash(ln)
    assert type(ln).parse(ln.name, num_classes=ln.num_classes) == ln


@pytest.mark.parametrize("text, kw, match", [
    ("blur 1", {}, "unknown label type 'blur'; allowed: clean; sample RATIO; flip FG_TO_BG BG_TO_FG"),
    ("", {}, "unknown label type"),
    ("flip 0.1", {}, "takes 2 parameter"),
    ("skeleton 1", {}, "takes 0 parameter"),
    ("sample abc", {}, "ratio of 'sample' must be a number, got 'abc'"),
    ("sample 1.5", {}, "must lie in"),
    ("dilate -1", {}, "radius"),
    ("shift 1.5", {}, "integer"),
    ("boundary_noise 2.5 0.5 0", {}, "steps must be an int"),
    ("symmetric 0.9", {}, "needs num_classes"),
    ("sample 0.1", {"num_classes": 3}, "binary label type"),
])
def test_parse_errors(text, kw, match):
    with pytest.raises(ValueError, match=match):
        noise.LabelNoise.parse(text, **kw)


def test_parse_checks_the_class_and_the_type():
    assert noise.Sample.parse("sample 0.1") == noise.Sample(0.1)
    with pytest.raises(ValueError, match="names a Sample, not a Flip"):
        noise.Flip.parse("sample 0.1")
    with pytest.raises(TypeError, match="text"):
        noise.LabelNoise.parse(0.1)
    assert type(noise.LabelNoise.parse("dilate 2").params[0]) is int  # radii written as ints stay ints
    assert type(noise.LabelNoise.parse("sample 1").params[0]) is float  # rates are floats


def test_equality_and_hash():
    assert noise.Sample(0.1) == noise.LabelNoise("sample", 0.1) and hash(noise.Sample(0.1)) == hash(noise.Sample(0.1))
    assert noise.Dilate(2) == noise.Dilate(2.0)
    assert noise.Sample(0.1) != noise.Sample(0.2) and noise.Dilate(1) != noise.Erode(1)
    assert noise.Clean() != noise.Clean(num_classes=3)
    assert noise.SymmetricFlip(0.1, num_classes=3) != noise.SymmetricFlip(0.1, num_classes=4)
    assert noise.Sample(0.1) != "sample 0.1"
    assert len({noise.Flip(0.1, 0.2), noise.LabelNoise("flip", 0.1, 0.2), noise.Flip(0.2, 0.1)}) == 2
    import pickle

    assert pickle.loads(pickle.dumps(noise.BoundaryNoise(2, 0.5, 0.1))) == noise.BoundaryNoise(2, 0.5, 0.1)
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lambda ln: hash(ln))(noise.Sample(0.1))


def test_the_pytree_compiles_once_per_label_type_and_vmaps_over_rates():
    m = _square()
    k = jax.random.key(2)
    traces = []

    @jax.jit
    def draw(ln, k, m):
        traces.append(ln.kind)  # runs at trace time only
        return ln(k, m)

    for ln in (noise.Sample(0.1), noise.Sample(0.3), noise.Flip(0.1, 0.2), noise.Flip(0.4, 0.0),
               noise.BoundaryNoise(2, 0.5, 0.0), noise.BoundaryNoise(2, 0.1, 0.3), noise.Dilate(1), noise.Dilate(2)):
        np.testing.assert_array_equal(draw(ln, k, m), ln(k, m))
    assert traces == ["sample", "flip", "boundary_noise", "dilate", "dilate"]  # a radius is static: recompiles
    assert jax.tree_util.tree_leaves(noise.BoundaryNoise(2, 0.5, 0.1)) == [0.5, 0.1]
    assert jax.tree_util.tree_leaves(noise.SymmetricFlip(0.2, num_classes=3)) == [0.2]
    assert jax.tree_util.tree_leaves(noise.Shift(2)) == [] == jax.tree_util.tree_leaves(noise.Skeleton())
    # vmap over rates: a batched pytree, and rates given to the constructor
    _, treedef = jax.tree_util.tree_flatten(noise.Flip(0.0, 0.0))
    batched = jax.tree_util.tree_unflatten(treedef, [jnp.array([0.25, 0.5]), jnp.array([0.0, 0.125])])
    got = jax.vmap(lambda ln: ln(k, m).sum(axis=(1, 2)))(batched)
    want = [noise.flip(k, m, f, b).sum(axis=(1, 2)) for f, b in [(0.25, 0.0), (0.5, 0.125)]]
    np.testing.assert_array_equal(got, np.stack(want))
    counts = jax.vmap(lambda p: noise.Sample(p)(k, m[0]).sum())(jnp.array([0.25, 0.5]))
    assert counts.tolist() == [16, 32]
    # vmap over keys
    keys = jax.random.split(k, 3)
    ys = jax.vmap(lambda kk: noise.Sample(0.5)(kk, m[0]))(keys)
    for kk, y in zip(keys, ys, strict=True):
        np.testing.assert_array_equal(y, noise.sample(kk, m[0], 0.5))


def test_a_stored_spec_float_step_count_is_the_int_it_is():
    """Simulation specs store every parameter as a float: ``boundary_noise 2.0`` is ``boundary_noise 2`` (same
    draw, same name, equal), and a non-integral count is still refused."""
    m = blobs((24, 24), seed=2)
    a, b = noise.LabelNoise("boundary_noise", 2.0, 0.5, 0.0), noise.LabelNoise("boundary_noise", 2, 0.5, 0.0)
    assert a == b and a.params[0] == 2 and isinstance(a.params[0], int) and a.name == "boundary_noise 2 0.5 0"
    np.testing.assert_array_equal(a(jax.random.key(0), m), b(jax.random.key(0), m))
    with pytest.raises(TypeError, match="steps must be an int"):
        noise.LabelNoise("boundary_noise", 2.5, 0.5, 0.0)


@pytest.mark.parametrize("ln", [
    noise.Sample(1e-13), noise.Sample(1e-12), noise.Sample(5e-12), noise.Sample(1e-10), noise.Sample(1e-9),
    noise.Sample(2e-9), noise.Sample(1e-8), noise.Flip(0.5, 0.5 - 1e-10), noise.Flip(0.5, 0.5 - 1e-9),
    noise.Flip(0.3, 0.7 + 1e-10), noise.RandomLabels(1e-10),
], ids=lambda v: v.name if isinstance(v, noise.LabelNoise) else v)
def test_family_and_matched_threshold_agree_near_no_information(ln):
    """RL exactly where no t* exists, on both sides of the tolerance (issue 31: "sample 1e-9" was RCL without a
    t*, and the planner raised AttributeError on its None threshold); where a t* exists it is (1 + b - f) / 2."""
    mt = ln.matched_threshold()
    assert (ln.family == "RL") == (mt is None)
    if mt is not None:
        t = ln.transition()
        assert mt.threshold == pytest.approx((1 + t[0, 1] - t[1, 0]) / 2, abs=1e-15)


@pytest.mark.parametrize("text, match", [
    ("sample 10%", "ratio of 'sample' must be a number, got '10%'"),
    ("flip 0.3, 0.3", "fg_to_bg of 'flip' must be a number, got '0.3,'"),
    ("sample abc", "ratio"), ("sample 2", "must lie in"), ("shift 1.5", "integer"),
])
def test_parse_errors_name_text_and_give_the_grammar(text, match):
    with pytest.raises(ValueError, match=match) as e:
        noise.LabelNoise.parse(text)
    msg = str(e.value)
    assert msg.startswith(f"text {text!r}: ")
    assert "allowed: clean; sample RATIO; flip FG_TO_BG BG_TO_FG;" in msg and "dilate RADIUS" in msg


def test_parse_reads_integral_and_fractional_radii():
    assert noise.LabelNoise.parse("dilate 2.0") == noise.Dilate(2) and noise.LabelNoise.parse("dilate 2.0").name \
        == "dilate 2"
    assert noise.LabelNoise.parse("shift 2.0") == noise.Shift(2)
    half = noise.LabelNoise.parse("dilate 1.5")
    m = np.zeros((9, 9), np.int32)
    m[4, 4] = 1
    # a disk of radius 1.5 around one pixel: the 3 x 3 square (every offset with dx^2 + dy^2 <= 2.25)
    np.testing.assert_array_equal(np.asarray(half(None, m)), ndi.binary_dilation(m, np.ones((3, 3))).astype(int))


def test_a_radius_beyond_the_image_is_exact_and_costs_no_more_than_the_image():
    """Regression (issue 31): dilate / erode shifted the masks 2 r + 1 times, so radius 1e6 never returned. Offsets
    are capped at the image's size; the result is scipy's disk dilation (all foreground where a mask has any)."""
    rng = np.random.default_rng(3)
    m = rng.random((2, 9, 23)) < 0.08
    m[1] = False
    for r in (8.5, 22.0, 30.0):
        rr = int(r)
        yy, xx = np.mgrid[-rr:rr + 1, -rr:rr + 1]
        want = np.stack([ndi.binary_dilation(mi, (yy ** 2 + xx ** 2) <= r * r) for mi in m])
        np.testing.assert_array_equal(np.asarray(noise.dilate(m, r)), want)
    huge = np.asarray(noise.dilate(m, 1e6))
    assert huge[0].all() and not huge[1].any()
    assert not np.asarray(noise.erode(m, 1e300)).any()


# ------------------------------------------------------------------- annotation practice
ANNOTATIONS = [
    ("slices 3", lambda k, m, u, nd: noise.slices(k, m, 3, unlabelled=u, ndim=nd), 1 / 3),
    ("blocks 0.3 4", lambda k, m, u, nd: noise.blocks(k, m, 0.3, 4, unlabelled=u, ndim=nd), 0.3),
    ("scattered 0.2", lambda k, m, u, nd: noise.scattered(k, m, 0.2, unlabelled=u, ndim=nd), 0.2),
]




@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("unlabelled", ["background", "ignore"])
@pytest.mark.parametrize("name, plain, p", ANNOTATIONS, ids=[a[0] for a in ANNOTATIONS])
def test_an_annotation_labels_each_pixel_with_probability_p(name, plain, p, unlabelled, ndim):
    """Monte Carlo (400 draws, a fixed key): the labelled pixels are the mask's own and each pixel is labelled
    with probability p, wherever it lies (the region is independent of the mask: T = sample_matrix(p) with
    background semantics, I on the labelled pixels with ignore); the label type draws what its function draws."""
    shape = (7, 10, 9) if ndim == 3 else (10, 9)  # sides not multiples of k or s: border slices and tiles
    m = np.asarray(blobs(shape[-2:], seed=3), np.int32)
    m = np.broadcast_to(m, shape).copy()
    keys = jax.random.split(jax.random.key(11), 400)
    ys = np.asarray(jax.vmap(lambda k: plain(k, m, unlabelled, ndim))(keys))
    if unlabelled == "ignore":
        lab = ys != -1
        assert ys.dtype == np.int32 and np.array_equal(np.where(lab, ys, m[None]), np.broadcast_to(m, ys.shape))
        freq = lab.mean(axis=0)
    else:
        assert ys.dtype == m.dtype and not (ys.astype(bool) & ~m.astype(bool)).any()  # only the mask's pixels
        freq = ys.astype(bool).mean(axis=0)[m.astype(bool)]
        t = noise.LabelNoise.parse(name, ndim=ndim).transition()
        np.testing.assert_allclose(t, ntm.sample_matrix(p))
    # per pixel: within 5 binomial sd of 400 draws (the offsets, phases and tiles are shared by a whole region,
    # so that is wide enough for a cluster of pixels, and a border that a rule missed falls far outside it)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / 400) + 1e-9), (freq.min(), freq.max())
    assert abs(freq.mean() - p) < 0.03
    ln = noise.LabelNoise.parse(name if unlabelled == "background" else f"{name} ignore", ndim=ndim)
    k = jax.random.key(4)
    np.testing.assert_array_equal(ln(k, m), plain(k, m, unlabelled, ndim))
    np.testing.assert_array_equal(jax.jit(lambda n, k, x: n(k, x))(ln, k, jnp.asarray(m)), plain(k, m, unlabelled,
                                                                                                   ndim))


def test_slices_are_whole_planes_k_apart_and_exactly_one_in_k():
    """Every labelled plane is whole, planes are k apart from a per-image offset, and over the k offsets each
    plane is labelled exactly once (so p = 1/k exactly, for any depth)."""
    m = np.ones((64, 11, 5, 4), np.int32)
    y = np.asarray(noise.slices(jax.random.key(0), m, 4, unlabelled="ignore", ndim=3))
    planes = (y != -1).reshape(64, 11, -1)
    assert np.all(planes.all(axis=2) | ~planes.any(axis=2))  # whole planes
    first = planes[:, :, 0].argmax(axis=1)
    want = (np.arange(11)[None] - first[:, None]) % 4 == 0
    np.testing.assert_array_equal(planes[:, :, 0], want)
    assert set(first.tolist()) == {0, 1, 2, 3}  # every offset drawn among 64 images
    rows = np.asarray(noise.slices(jax.random.key(1), np.ones((3, 9, 6), bool), 2))  # 2-D: rows
    assert np.all(rows.all(axis=2) | ~rows.any(axis=2)) and rows.any(axis=2).sum(axis=1).tolist() in (
        [5, 5, 5], [4, 4, 4], [5, 4, 5], [4, 5, 4], [5, 5, 4], [4, 4, 5], [5, 4, 4], [4, 5, 5])
    assert np.array_equal(noise.slices(jax.random.key(2), m, 1, ndim=3), m)  # k = 1: the clean mask


def test_blocks_are_cubes_on_a_shifted_grid():
    """The labelled region is constant on the s-cubes of one grid phase per image (found by search)."""
    m = np.ones((6, 9, 10, 11), np.int32)
    y = np.asarray(noise.blocks(jax.random.key(3), m, 0.5, 3, unlabelled="ignore", ndim=3)) != -1
    z, r, c = np.indices(m.shape[1:])
    for lab in y:
        ok = False
        for pz in range(3):
            for pr in range(3):
                for pc in range(3):
                    tile = ((z + pz) // 3) * 100 + ((r + pr) // 3) * 10 + (c + pc) // 3
                    if all(len(set(lab[tile == t].tolist())) == 1 for t in np.unique(tile)):
                        ok = True
        assert ok
    assert 0.2 < y.mean() < 0.8
    assert np.all(np.asarray(noise.blocks(jax.random.key(3), m, 1.0, 3, unlabelled="ignore", ndim=3)) == 1)


def test_annotation_meta_structure_is_lemma_1s():
    """The expected meta-structure (Monte Carlo over 300 draws of slices 4 on volumes): the mean fraction field
    of the background annotations is (1/k) D, Lemma 1 with T = sample_matrix(1/k)
    (``density.expected_fraction_field``); of the ignore annotations (counting labelled voxels only) the ratio
    of the expected smoothed labels to the expected smoothed labelled indicator is D. (One draw's ignore field is
    not D on average: with a window narrower than k in z it follows the nearest labelled slice; a network, which
    reads the image at every voxel, learns E[y | image] over the labelled voxels, which is the clean one.)"""
    from metastructure import density

    z, r, c = np.mgrid[:12, :16, :16]
    m = (((z - 6) / 4.5) ** 2 + ((r - 8) / 5) ** 2 + ((c - 7) / 6) ** 2 < 1).astype(np.int32)
    d = np.asarray(density.fraction_field(m, 2.0, ndim=3))
    keys = jax.random.split(jax.random.key(9), 300)
    bg = np.asarray(jax.vmap(lambda k: noise.slices(k, m, 4, ndim=3))(keys))
    mean_bg = np.asarray(density.fraction_field(bg, 2.0, ndim=3)).mean(axis=0)
    want = np.asarray(density.expected_fraction_field(d, noise.Slices(4).transition()))
    assert np.abs(mean_bg - want).max() < 0.02 and np.abs(mean_bg - d).max() > 0.3
    ig = np.asarray(jax.vmap(lambda k: noise.slices(k, m, 4, unlabelled="ignore", ndim=3))(keys))
    num = np.asarray(density.smooth((ig == 1).astype(np.float32), 2.0, ndim=3)).mean(axis=0)
    den = np.asarray(density.smooth((ig != -1).astype(np.float32), 2.0, ndim=3)).mean(axis=0)
    assert np.abs(num / den - d).max() < 0.02


def test_annotation_errors_and_names():
    m = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="unlabelled must be one of"):
        noise.slices(jax.random.key(0), m, 2, unlabelled="void")
    with pytest.raises(ValueError, match="ignore=None"):
        noise.scattered(jax.random.key(0), m, 0.5, unlabelled="ignore", ignore=None)
    with pytest.raises(ValueError, match="spacing"):
        noise.slices(jax.random.key(0), m, 0)
    with pytest.raises(ValueError, match="size"):
        noise.blocks(jax.random.key(0), m, 0.5, 0)
    with pytest.raises(ValueError, match="unlabelled of 'slices' must be one of"):
        noise.LabelNoise.parse("slices 10 void")
    with pytest.raises(ValueError, match="takes 1 to 2 parameter"):
        noise.LabelNoise.parse("slices")
    assert noise.Slices(10).name == "slices 10" and noise.Slices(10, unlabelled="ignore").name == "slices 10 ignore"
    assert noise.LabelNoise("blocks", 0.1, 8) == noise.Blocks(0.1, 8, unlabelled="background")
    assert noise.Slices(10) != noise.Slices(10, unlabelled="ignore")
    assert [noise.LabelNoise.parse(t).family for t in ("slices 10", "slices 10 ignore", "slices 1", "scattered 0")] \
        == ["RCL", "CL", "CL", "RL"]
    assert noise.Slices(10).matched_threshold().threshold == 0.05
    assert noise.Blocks(0.1, 4, unlabelled="ignore").matched_threshold().threshold == 0.5
    assert noise.Slices(5).labelled_fraction == 0.2 and noise.Scattered(0.3, unlabelled="ignore").unlabelled == "ignore"
    # bool masks cannot hold -1: ignore annotations are int32; signed masks keep their dtype
    assert noise.slices(jax.random.key(0), m, 2, unlabelled="ignore").dtype == jnp.int32
    assert noise.slices(jax.random.key(0), m.astype(np.int8), 2, unlabelled="ignore").dtype == jnp.int8


def test_unit_counts_are_the_foreground_of_each_unit():
    m = np.asarray(_ball_volumes() == 1)
    np.testing.assert_array_equal(noise.Slices(3, ndim=3).unit_counts(m), m.sum(axis=(2, 3)).ravel())
    np.testing.assert_array_equal(noise.Slices(3).unit_counts(m[:, 2]), m[:, 2].sum(axis=2).ravel())  # rows
    np.testing.assert_array_equal(noise.Blocks(0.1, 12, ndim=3).unit_counts(m), m.sum(axis=(1, 2, 3)))
    b = noise.Blocks(0.1, 4, ndim=3).unit_counts(m)  # 2 x 3 x 3 blocks per volume (6 deep: padded)
    assert b.size == 2 * 2 * 3 * 3 and b.sum() == m.sum() and b[0] == m[0, :4, :4, :4].sum()
    np.testing.assert_array_equal(noise.Scattered(0.1, ndim=3).unit_counts(m), m.ravel())


def test_class_counts_group_the_slices_one_offset_labels():
    m = np.asarray(_ball_volumes() == 1)  # (N, 6, H, W)
    per = m.sum(axis=(2, 3))
    c = noise.Slices(4, ndim=3).class_counts(m)  # planes {0, 4}, {1, 5}, {2}, {3}
    np.testing.assert_array_equal(c, np.stack([per[:, 0] + per[:, 4], per[:, 1] + per[:, 5], per[:, 2], per[:, 3]],
                                              axis=1))
    assert noise.Slices(10, ndim=3).class_counts(m).shape == (m.shape[0], 10)  # classes past the depth: empty
    np.testing.assert_array_equal(noise.Slices(10, ndim=3).class_counts(m)[:, 6:], 0)
    np.testing.assert_array_equal(noise.Slices(1, ndim=3).class_counts(m), per.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(noise.Slices(2).class_counts(m[0, 3]),  # one image: its rows, one row of classes
                                  [[m[0, 3, 0::2].sum(), m[0, 3, 1::2].sum()]])
    with pytest.raises(ValueError):
        noise.Slices(2, ndim=3).class_counts(m[0, 0])  # an image is not a volume
