"""EMS, pseudo-label selection and iGTT mechanics (the iGTT model of arXiv 2103.11594); the thresholds it starts
from are tested in test_thresholds.py."""

import math

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.morphology import skeletonize

from metastructure import data, losses, metrics, nets, noise, thresholds
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


def test_ems_of_the_mask_itself_is_a_shifted_sample_of_the_object():
    """source="mask": no thinning; with radius 0 the labels are exactly noise.sample of the (minority-side)
    mask with EMS's second key. With radius r, deep inside the object a pixel stays occupied unless none of
    its q = (2r + 1)^2 neighbours lands on it, so the density is ratio * (1 - (1 - 1/q)^q) (Monte Carlo)."""
    m = _masks()
    key = jax.random.key(5)
    out = np.asarray(u.ems(key, m, radius=0, ratio=0.2, source="mask"))
    minority = np.stack([m[0], ~m[1]])
    np.testing.assert_array_equal(out, noise.sample(jax.random.split(key)[1], minority, 0.2))
    assert not (out & ~minority).any() and out.sum() > np.stack([skeletonize(x) for x in minority]).sum() * 0.2
    dens = np.mean([np.asarray(u.ems(jax.random.key(s), m[0], radius=1, ratio=0.2, source="mask"))
                    for s in range(200)], axis=0)
    inner = ndi.binary_erosion(m[0], iterations=2)  # away from the edge the shift moves mass in and out evenly
    occupied = 1 - (8 / 9) ** 9
    assert dens[inner].mean() == pytest.approx(0.2 * occupied, abs=0.006)
    assert dens[~ndi.binary_dilation(m[0], structure=np.ones((3, 3)))].max() == 0


def test_thick_share_is_the_area_an_opening_by_a_disc_keeps():
    """scikit-image's opening by its own disc as the oracle; bands narrower than the disc vanish, blobs stay."""
    from skimage.morphology import disk, opening

    rng = np.random.default_rng(4)
    f = ndi.gaussian_filter(rng.normal(size=(3, 48, 48)), (0, 2.5, 2.5))
    m = f > 0.5 * f.std()
    assert 0.1 < u.thick_share(m) < 0.9  # both kinds of parts
    kept = sum(opening(x, disk(3)).astype(bool).sum() for x in u.minority_side(m))
    assert u.thick_share(m, radius=3) == pytest.approx(kept / u.minority_side(m).sum())
    for w, thick in ((3, False), (5, False), (7, True), (11, True)):
        band = np.zeros((64, 64), bool)
        band[20:20 + w, 4:60] = True
        assert (u.thick_share(band, radius=3) > 0.5) == thick
    yy, xx = np.mgrid[:64, :64]
    disc = np.hypot(yy - 32, xx - 32) <= 12
    assert u.thick_share(disc) > 0.95 and u.thick_share(~disc) == u.thick_share(disc)  # the minority side
    big = np.zeros((64, 64), bool)
    big[2:62, 2:62] = True  # objects covering most of the image: as given, thick; their minority side is a rim
    assert u.thick_share(big, minority=False) > 0.95 and u.thick_share(big) == 0.0
    assert u.thick_share(np.zeros((2, 8, 8), bool)) == 0.0


def test_ems_rejects_bad_input():
    with pytest.raises(ValueError, match="ratio"):
        u.ems(jax.random.key(0), _masks(), ratio=1.5)
    with pytest.raises(ValueError, match="mask"):
        u.ems(jax.random.key(0), np.full((8, 8), 2))
    with pytest.raises(ValueError, match="source"):
        u.ems(jax.random.key(0), _masks(), source="edges")


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


def test_dmi_of_a_candidate_is_minus_log_covariance():
    """det(P S^T / n) = cov(p, s) for binary s: the selection maximises pi (1 - pi) |E[p|s] - E[p|~s]|."""
    rng = np.random.default_rng(4)
    p = rng.random(500)
    s = rng.random(500) < 0.3
    cov = np.mean(p * s) - p.mean() * s.mean()
    assert float(losses.dmi_loss_from_probs(p, s)) == pytest.approx(-np.log(abs(cov)), rel=1e-4)
    gap = p[s].mean() - p[~s].mean()
    assert abs(cov) == pytest.approx(s.mean() * (1 - s.mean()) * abs(gap))
    # the common form on unnormalised counts U = P S^T, -log(|det U| + 1e-3), is this loss minus 2 log n
    img_p, img_s = rng.random((128, 128)), rng.random((128, 128)) < 0.3
    u_counts = np.stack([img_p, 1 - img_p]).reshape(2, -1) @ np.stack([img_s, ~img_s]).reshape(2, -1).T
    n = img_p.size
    assert -np.log(abs(np.linalg.det(u_counts)) + 1e-3) == pytest.approx(
        float(losses.dmi_loss_from_probs(img_p, img_s)) - 2 * np.log(n), abs=1e-4)


def test_ems_without_the_size_rule_keeps_the_given_side():
    m = _masks()[1]  # covers more than half
    key = jax.random.key(5)
    kept = np.asarray(u.ems(key, m, radius=0, ratio=1.0, invert=False))
    np.testing.assert_array_equal(kept, skeletonize(m))  # radius 0, ratio 1: exactly the skeleton of m itself
    flipped = np.asarray(u.ems(key, m, radius=0, ratio=1.0))
    np.testing.assert_array_equal(flipped, skeletonize(~m))


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


# ------------------------------------------------------------------ iGTT, the loop and its options
TINY = {"widths": (4, 8)}


def _dihedral_np(x, t):
    r = np.rot90(x, t % 4, axes=(0, 1))
    return r[:, ::-1] if t >= 4 else r


def test_igtt_recommended_mechanics_and_monitor():
    """Rounds, history, start, labels = EMS of the start's masks (sparse, within the shift radius of their
    skeleton), final masks = the configuration's selection of the output; the monitor sees every round."""
    tr = data.nuclei(jax.random.key(0), 4, size=32)
    calls = []

    def monitor(rnd, fit, sel):
        calls.append((rnd, fit.predict(tr.images).shape, sel.copy()))
        return {"dice_selected": float(metrics.dice(sel, tr.masks))}

    r = u.igtt(jax.random.key(1), tr.images, rounds=1, steps=3, monitor=monitor, **TINY)
    assert r.history[0]["dice_selected"] == float(metrics.dice(r.selected, tr.masks)) and "separation" in r.history[0]
    start, name = u.start_masks(tr.images, start="auto")
    # blobs: thick objects, so Otsu's masks (not a local threshold's) and EMS of the masks, not of their skeleton
    assert r.start == name == "otsu" and r.config == u.PRESETS["recommended"].replace(rounds=1, steps=3,
                                                                                          ems_source="mask", **TINY)
    near = np.stack([ndi.binary_dilation(m, structure=np.ones((3, 3))) for m in start])
    assert r.labels.any() and not (r.labels & ~near).any() and r.labels.sum() <= 0.15 * near.sum()
    assert r.labels.sum() > 2 * np.stack([skeletonize(m) for m in start]).sum() * 0.1
    assert [c[0] for c in calls] == [1] and calls[0][1] == (4, 32, 32)
    np.testing.assert_array_equal(calls[0][2], r.selected)
    probs = r.predict(tr.images)
    np.testing.assert_array_equal(probs, r.fit.predict(tr.images, tta=True))  # tta: the recommended reads the mean
    np.testing.assert_array_equal(r.selected, u.select_pseudo_labels(probs, selection="otsu"))
    np.testing.assert_array_equal(u.igtt_masks(r, tr.images), r.selected)  # orient "high": never inverted
    h = r.history[0]
    assert h["round"] == 1 and np.isfinite(h["loss"]) and h["selected_fraction"] == pytest.approx(r.selected.mean())
    r3 = u.igtt(jax.random.key(1), tr.images, rounds=1, steps=2, init_labels=tr.masks, **TINY)
    assert r3.start == "given"
    with pytest.raises(ValueError, match="init_labels"):
        u.igtt(jax.random.key(1), tr.images, init_labels=tr.masks[:2], **TINY)


def test_igtt_options_are_checked():
    x = np.zeros((2, 16, 16, 1), np.float32)
    for bad, match in (({"loss": "hinge"}, "loss"), ({"selection": "mean"}, "selection"), ({"rounds": 0}, "rounds"),
                       ({"steps": 0}, "steps"), ({"iou_power": 3}, "iou_power"), ({"start": "grey"}, "start"),
                       ({"norm": "layer"}, "norm"), ({"ratio": 2.0}, "ratio"), ({"ems_source": "edges"}, "ems_source"),
                       ({"thick_radius": 0.0}, "thick_radius")):
        with pytest.raises(ValueError, match=match):
            u.igtt(jax.random.key(0), x, **bad)
    with pytest.raises(TypeError):
        u.igtt(jax.random.key(0), x, epochs=2)  # not an option
    blobs = data.nuclei(jax.random.key(0), 4, size=32).images
    with pytest.raises(FloatingPointError, match="diverged in round 1"):
        u.igtt(jax.random.key(0), blobs, rounds=2, steps=3, learning_rate=1e12, optimizer="sgd", **TINY)
    with pytest.raises(ValueError, match="preset"):
        u.igtt(jax.random.key(0), x, preset="authors")
    with pytest.raises(ValueError, match="images"):
        u.igtt(jax.random.key(0), x[..., 0])
    assert u.IGTTConfig(**u.PRESETS["paper"].to_dict()) == u.PRESETS["paper"]


@pytest.fixture(scope="module")
def trained():
    """A tiny recommended iGTT trained on 4 nuclei images of 32^2 (20 steps: it segments them, Dice ~0.87)."""
    tr = data.nuclei(jax.random.key(0), 4, size=32)
    return tr, u.igtt(jax.random.key(1), tr.images, rounds=1, steps=20, progress=False, **TINY)


def test_igtt_masks_find_no_object_in_images_without_contrast(trained):
    """A blank, constant or near-constant image (variations below 1e-6) has no object: the masks are empty, as
    Otsu's, adaptive's and k-means' masks of a constant image are (the oracle); an image with contrast in the
    same batch still gets its objects. Trained on a batch holding a blank image, iGTT starts and selects
    nothing there."""
    tr, r = trained
    rng = np.random.default_rng(0)
    flat = np.stack([np.zeros((32, 32, 1)), np.full((32, 32, 1), 5.0), np.full((32, 32, 1), -3.7),
                     np.full((32, 32, 1), 1e8 + 0.1), 0.3 + 1e-9 * rng.normal(size=(32, 32, 1))])
    for f in (thresholds.otsu, thresholds.adaptive, thresholds.kmeans):
        assert not f(flat[:4]).any(), f.__name__
    masks = u.igtt_masks(r, np.concatenate([flat, tr.images[:1].astype(np.float64)]))
    assert not masks[:5].any()
    np.testing.assert_array_equal(masks[5], u.igtt_masks(r, tr.images[:1])[0])
    assert metrics.dice(masks[5], tr.masks[0]) > 0.5
    two_channels = np.concatenate([np.zeros((1, 32, 32, 1)), np.ones((1, 32, 32, 1))], axis=-1)  # each constant
    r2 = u.igtt(jax.random.key(1), np.concatenate([two_channels, two_channels + rng.normal(size=(1, 32, 32, 2))]),
                rounds=1, steps=1, progress=False, **TINY)
    assert not u.igtt_masks(r2, two_channels).any()
    # channels of differing means, each with contrast, are not flat (their standardised spread is small only
    # beside the gap between the means): iGTT starts from their objects and selects some
    objects = np.asarray(tr.masks[:2], float)
    rgb = np.stack([base + 5 * rng.normal(size=objects.shape) + 30 * objects for base in (200, 50, 10)], axis=-1)
    r4 = u.igtt(jax.random.key(2), rgb, rounds=1, steps=2, start="otsu", progress=False, **TINY)
    assert r4.selected[0].any() and r4.selected[1].any()
    x = np.concatenate([tr.images, np.zeros((1, 32, 32, 1), np.float32)])
    r3 = u.igtt(jax.random.key(1), x, rounds=1, steps=2, start="adaptive", progress=False, **TINY)
    assert not r3.selected[4].any() and not r3.labels[4].any() and r3.selected[:4].any()


@pytest.mark.parametrize("bad", [0.3, -1, np.nan, 2, "a"], ids=["soft", "ignore", "nan", "two", "string"])
def test_igtt_init_labels_must_be_zero_one(bad):
    """init_labels are binary masks (EMS and the losses read them so): soft maps, the ignore value, NaN and
    strings are refused by name; bool, integer and float 0/1 are accepted."""
    x = data.nuclei(jax.random.key(0), 2, size=16).images
    labels = np.zeros((2, 16, 16), object if bad == "a" else float)
    labels[:, 4:8, 4:8] = 1
    labels[0, 0, 0] = bad
    with pytest.raises(TypeError if bad == "a" else ValueError, match="init_labels"):
        u.igtt(jax.random.key(0), x, init_labels=labels.astype(str) if bad == "a" else labels, rounds=1, steps=1,
               progress=False, **TINY)
    if bad == 0.3:
        for ok in (labels > 0.5, (labels > 0.5).astype(np.int32), (labels > 0.5).astype(np.float32)):
            assert u.igtt(jax.random.key(0), x, init_labels=ok, rounds=1, steps=1, progress=False,
                          **TINY).start == "given"


def test_igtt_segments_large_valued_images_as_the_images_themselves(trained):
    """x + 1e8 and x * 1e30 are standardised per image: trained on them, iGTT's masks are those of x, and their
    Dice to the truth is of Otsu's order on x (the oracle; Otsu's own threshold on x + 1e8 is float32's
    business, metrics.otsu_threshold)."""
    tr, r = trained
    x = tr.images.astype(np.float64)
    otsu_dice = float(metrics.dice(thresholds.otsu(x), tr.masks))
    ours = u.igtt_masks(r, x)
    for big in (x + 1e8, x * 1e30, x * 1e300):
        rb = u.igtt(jax.random.key(1), big, rounds=1, steps=20, progress=False, **TINY)
        mb = u.igtt_masks(rb, big)
        assert float(metrics.dice(mb, tr.masks)) >= otsu_dice - 0.1
        assert float(metrics.dice(mb, ours)) >= 0.95 and float(metrics.dice(u.igtt_masks(r, big), ours)) >= 0.95


def test_igtt_refuses_non_integer_counts():
    """As train.fit does: steps=2.5 is not run as 2 steps."""
    x = np.zeros((2, 16, 16, 1), np.float32)
    for name, value in (("steps", 2.5), ("rounds", 1.5), ("batch_size", 2.0), ("num_thresholds", 30.5),
                        ("decay_every", 2.5), ("block_size", 35.0)):
        with pytest.raises(TypeError, match=name):
            u.igtt(jax.random.key(0), x, **{name: value})
        with pytest.raises(TypeError, match=name):
            u.IGTTConfig(**{name: value})


@pytest.mark.parametrize("case", ["3 channels", "(N, H, W)", "(H, W)", "empty", "nan", "strings", "no result"])
def test_igtt_masks_refuse_bad_images_and_results_by_name(trained, case):
    tr, r = trained
    x = tr.images
    nan = x.copy()
    nan[1, 3, 3, 0] = np.nan
    images, result, err, name = {
        "3 channels": (np.repeat(x, 3, axis=-1), r, ValueError, "images must have 1 channel"),
        "(N, H, W)": (x[..., 0], r, ValueError, "images must be"),
        "(H, W)": (x[0, ..., 0], r, ValueError, "images must be"),
        "empty": (x[:0], r, ValueError, "images is empty"),
        "nan": (nan, r, ValueError, "images contains NaN"),
        "strings": (x.astype(str), r, TypeError, "images"),
        "no result": (x, None, TypeError, "result must be an IGTTResult"),
    }[case]
    with pytest.raises(err, match=name):
        u.igtt_masks(result, images)
    if result is not None:
        with pytest.raises(err, match=name):
            r.predict(images)


def test_in_step_selection_comes_from_each_batch_output_before_its_step():
    """select_when="step": with a vanishing learning rate the stored selections are those of the output
    before the step; with shared=True one threshold index serves the batch; with augmentation each stored
    selection is one of the 8 dihedral copies' selections, mapped back to the image's orientation."""
    tr = data.nuclei(jax.random.key(2), 4, size=32)
    kw = dict(start="otsu", rounds=1, steps=None, batch_size=4, select_when="step", selection="dmi",
              learning_rate=1e-12, optimizer="sgd", **TINY)
    r = u.igtt(jax.random.key(3), tr.images, augment=False, shared=True, **kw)
    probs = r.fit.predict(tr.images)  # the network's own output (r.predict averages over transforms: tta)
    np.testing.assert_array_equal(r.selected, u.select_pseudo_labels(probs, shared=True))
    shared = np.asarray(u.select_pseudo_labels(probs, shared=True))
    per_image = np.asarray(u.select_pseudo_labels(probs))
    assert not np.array_equal(shared, per_image)  # the option matters here
    r2 = u.igtt(jax.random.key(3), tr.images, augment=True, shared=False, **kw)
    for i in range(4):
        copies = []
        for t in range(8):
            xi = _dihedral_np(tr.images[i], t)[None]
            s = np.asarray(u.select_pseudo_labels(r2.fit.predict(np.ascontiguousarray(xi))))[0]
            back = np.rot90(s[:, ::-1] if t >= 4 else s, -(t % 4), axes=(0, 1))
            copies.append(back)
        assert any(np.array_equal(r2.selected[i], c) for c in copies)


def test_paper_preset_first_round_on_all_background_has_zero_gradient():
    """Epoch 0 of the paper trains on all-black labels: DMI and soft IoU have zero gradient, so without
    weight decay the learning rate does not change the weights; the selections come from that output."""
    tr = data.nuclei(jax.random.key(4), 4, size=32)
    kw = dict(preset="paper", rounds=1, weight_decay=0.0, **TINY)
    a = u.igtt(jax.random.key(5), tr.images, learning_rate=0.05, **kw)
    b = u.igtt(jax.random.key(5), tr.images, learning_rate=5.0, **kw)
    for la, lb in zip(jax.tree_util.tree_leaves(a.fit.params), jax.tree_util.tree_leaves(b.fit.params), strict=True):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    assert not a.labels.any() and a.start == "black" and a.selected.any()
    c = u.igtt(jax.random.key(5), tr.images, preset="paper", rounds=1, **TINY)  # weight decay alone moves them
    leaves_a, leaves_c = jax.tree_util.tree_leaves(a.fit.params), jax.tree_util.tree_leaves(c.fit.params)
    assert any(not np.array_equal(np.asarray(la), np.asarray(lc)) for la, lc in zip(leaves_a, leaves_c, strict=True))


def test_otsu_selection_is_otsus_criterion_and_dmi_prefers_half_masks():
    """selection="otsu" maximises corr(p, s)^2 among the candidates (checked by brute force); DMI's
    sqrt(pi (1 - pi)) factor pulls its choice towards half the image on a skewed output."""
    rng = np.random.default_rng(6)
    m = np.zeros((32, 32), bool)
    m[4:12, 4:12] = True  # 6% foreground
    p = np.clip(np.where(m, 0.7, 0.2) + rng.normal(0, 0.12, m.shape), 0, 1)
    ot = np.asarray(u.select_pseudo_labels(p, selection="otsu"))
    lo, hi = p.min(), p.max()
    cands = [p > lo + (k / 31) * (hi - lo) for k in range(1, 31)]
    corr2 = [np.corrcoef(p.ravel(), c.ravel())[0, 1] ** 2 for c in cands]
    np.testing.assert_array_equal(ot, cands[int(np.argmax(corr2))])
    dmi = np.asarray(u.select_pseudo_labels(p, selection="dmi"))
    assert abs(dmi.mean() - 0.5) < abs(ot.mean() - 0.5) and metrics.dice(ot, m) > metrics.dice(dmi, m)


@pytest.mark.parametrize("shared", [False, True])
def test_dmi_selection_is_the_candidate_of_least_dmi_loss(shared):
    """The selection's sums (a count and a centred sum per threshold) pick what scoring every candidate mask
    with losses.dmi_loss_from_probs picks: per image, or the least mean loss over the batch with ``shared``."""
    rng = np.random.default_rng(7)
    z = np.kron(rng.normal(0, 2, (5, 12, 12)), np.ones((3, 3))) + rng.normal(0, 0.4, (5, 36, 36))
    p = 1 / (1 + np.exp(-(z + rng.uniform(-2, 2, (5, 1, 1)))))
    lo, hi = p.min(axis=(1, 2)), p.max(axis=(1, 2))
    cands = np.stack([p > (lo + (k / 31) * (hi - lo))[:, None, None] for k in range(1, 31)], axis=1)
    loss = np.array([[float(losses.dmi_loss_from_probs(p[i], c)) for c in cands[i]] for i in range(5)])
    k = np.full(5, np.argmin(loss.mean(axis=0))) if shared else np.argmin(loss, axis=1)
    got = np.asarray(u.select_pseudo_labels(p, shared=shared))
    np.testing.assert_array_equal(got, cands[np.arange(5), k])
    assert len(set(np.argmin(loss, axis=1))) > 1  # the images disagree: shared and per image differ here


def test_er_uneven_calibration():
    """Otsu's pooled Dice in 0.60-0.72 and a 35-px adaptive threshold at least 0.05 above it (3 sets)."""
    for seed in range(3):
        d = data.er_uneven(jax.random.key(seed), 16)
        assert d.images.shape == (16, 128, 128, 1) and 0.2 <= d.masks.mean() <= 0.35
        o = float(metrics.dice(thresholds.otsu(d.images), d.masks))
        a = float(metrics.dice(thresholds.adaptive(d.images, block_size=35), d.masks))
        assert 0.60 <= o <= 0.72 and a >= o + 0.05, (seed, o, a)
    np.testing.assert_array_equal(data.er_uneven(jax.random.key(0), 2, size=64).masks,
                                  data.er_uneven(jax.random.key(0), 2, size=64).masks)


def test_auto_start_picks_the_local_threshold_only_under_uneven_illumination():
    """local_separation (no truth) ranks adaptive above Otsu on er_uneven and below it on er."""
    uneven = data.er_uneven(jax.random.key(7), 6)
    even = data.er(jax.random.key(7), 6, size=64)
    assert u.start_masks(uneven.images, start="auto")[1] == "adaptive"
    assert u.start_masks(even.images, start="auto")[1] == "otsu"
    # thin tubules: EMS samples the skeleton (the paper's); a given thick start switches it to the masks
    assert u.igtt(jax.random.key(0), even.images, rounds=1, steps=1, **TINY).config.ems_source == "skeleton"
    blobs = np.asarray(data.nuclei(jax.random.key(7), 6, size=64).masks)
    assert u.igtt(jax.random.key(0), even.images, rounds=1, steps=1, init_labels=blobs,
                  **TINY).config.ems_source == "mask"
    confluent = np.zeros(blobs.shape, bool)
    confluent[:, 4:60, 4:60] = True  # objects over most of the image: thick on the side EMS samples (orient high)
    assert u.igtt(jax.random.key(0), even.images, rounds=1, steps=1, init_labels=confluent,
                  **TINY).config.ems_source == "mask"


def test_batchnorm_unet_normalises_with_the_batch_and_normal_init():
    model = nets.unet(widths=(4, 8), norm="batch", init="normal")
    p = model.init(jax.random.key(0), 1)
    w = np.concatenate([np.ravel(c["w"]) for lvl in p["enc"] + p["dec"] for c in lvl])
    assert abs(w.std() - 0.02) < 0.003
    g = np.concatenate([np.ravel(c["bn"]["gamma"]) for lvl in p["enc"] + p["dec"] for c in lvl])
    assert abs(g.mean() - 1) < 0.01 and 0.005 < g.std() < 0.04
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 1)).astype(np.float32)
    _, feats = model.apply(p, x, features=True)
    # the batch's statistics: the same image predicted with other images gives another output
    alone = np.asarray(model.apply(p, x[:1]))
    together = np.asarray(model.apply(p, x))[:1]
    assert not np.allclose(alone, together)
    with pytest.raises(ValueError, match="norm"):
        nets.unet(norm="group")
    with pytest.raises(ValueError, match="init"):
        nets.unet(init="xavier")


def test_soft_iou_with_squares_in_the_denominator():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(2, 8, 8)).astype(np.float32)
    t = (rng.random((2, 8, 8)) < 0.3).astype(np.float32)
    p = 1 / (1 + np.exp(-z))
    ref = 1 - (p * t).sum() / (p ** 2 + t - p * t).sum()
    assert float(losses.soft_iou_loss(z, t, power=2)) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="power"):
        losses.soft_iou_loss(z, t, power=3)


@pytest.mark.slow
def test_recommended_igtt_beats_thresholds_on_er_uneven():
    """igtt(key, images) with its defaults, on the igtt experiment's er_uneven split (48 + 16 images of 128^2,
    seed 0 of its 5: the margin over adaptive is thin, and seed 3 of the experiment loses it)."""
    key = jax.random.key(0)
    tr, te = data.er_uneven(jax.random.fold_in(key, 0), 48), data.er_uneven(jax.random.fold_in(key, 2), 16)
    r = u.igtt(jax.random.key(0), tr.images)
    d = float(metrics.dice(u.igtt_masks(r, te.images), te.masks))
    assert d > float(metrics.dice(thresholds.adaptive(te.images), te.masks)) > float(
        metrics.dice(thresholds.otsu(te.images), te.masks))
