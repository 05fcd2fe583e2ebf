"""metastructure.planner.model: the predictions against their oracles, Theorem 1 on masks, the scale law's
predictions at another number of images, bad input."""

import dataclasses
import math

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
from helpers import blobs
from scipy import stats

from metastructure import density, noise, planner
from metastructure.noise import LabelNoise
from metastructure.planner import model
from theory import curves

CAL = planner.Calibration(n_eff=300.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), source="test")


@pytest.fixture(scope="module")
def masks():
    return np.stack([blobs((48, 48), seed=s, sigma=2.5, level=0.75) for s in range(4)]).astype(np.int32)



def fields(masks):
    """The clean fraction fields at 1 px that curves.pooled_dice takes, one mask at a time."""
    return np.stack([np.asarray(density.fraction_field(m.astype(bool), 1.0), float) for m in masks])


def test_the_package_reexports_the_model():
    assert planner.predict is model.predict and planner.Masks is model.Masks
    assert planner.solve_n_eff is model.solve_n_eff and planner.N_EFF_MAX == model.N_EFF_MAX


# ------------------------------------------------------------------ predictions and their oracles
def test_binned_pooled_dice_equals_the_per_pixel_sum(masks):
    m = planner.Masks(masks)
    f = np.array([0.9, 0.95, 0.3, 0.7, 0.0])
    b = np.array([0.0, 0.0, 0.3, 0.6, 0.1])
    for n in (3.0, 100.0, 5000.0):
        np.testing.assert_allclose(m.pooled_dice(n, f, b), curves.pooled_dice(fields(masks), n, f, b), atol=2e-5)


def test_rcl_predictions_threshold_and_polarity(masks):
    m = planner.Masks(masks)
    p = planner.predict(m, "sample 0.1", calibration=CAL)
    assert (p.threshold, p.inverted, p.family) == (0.05, False, "RCL")
    assert p.dice == pytest.approx(0.9 * curves.pooled_dice(fields(masks), 300.0, 0.9, 0.0)[0], abs=2e-5)
    inv = planner.predict(m, LabelNoise("flip", 0.7, 0.6), calibration=CAL)
    assert inv.inverted and inv.threshold == pytest.approx(0.45) and inv.family == "RCL"
    assert inv.dice == pytest.approx(0.9 * curves.pooled_dice(fields(masks), 300.0, 0.7, 0.6)[0], abs=2e-5)
    # sampling 10% at a given n_eff is exactly flipping f = 0.9, b = 0, by the closed form
    assert planner.predict(m, "clean", calibration=CAL).dice == 0.9


def test_random_labels_and_the_collapse_predict_chance(masks):
    pi = masks.mean()
    for lab in ("random 0.3", "flip 0.5 0.5", LabelNoise("flip", 0.2, 0.8)):
        p = planner.predict(masks, lab, calibration=CAL)
        assert p.family == "RL" and p.threshold is None and p.dice == pytest.approx(2 * pi / (1 + pi))


def test_pcl_prediction_against_scipy_dilation(masks):
    """Dice(T(M), M) from scipy.ndimage (noise.disk footprint; erosion: outside is foreground), by curves.pcl_dice."""
    for r in (1, 2):
        fp = noise.disk(r).astype(bool)
        for kind, op, border in (("dilate", ndi.binary_dilation, 0), ("erode", ndi.binary_erosion, 1)):
            t = np.stack([op(mk.astype(bool), structure=fp, border_value=border) for mk in masks])
            label_dice = 2 * np.sum(t & (masks == 1)) / (t.sum() + masks.sum())
            p = planner.predict(masks, f"{kind} {r}", calibration=CAL)
            assert p.threshold == 0.5 and p.family == "PCL"
            assert p.dice == pytest.approx(float(curves.pcl_dice(label_dice, 0.9)), abs=1e-9)
    sk = planner.predict(masks, "skeleton", calibration=CAL)
    assert 0 < sk.threshold < 0.5 and 0 < sk.dice < 0.9
    assert sk.threshold == pytest.approx(LabelNoise("skeleton").matched_threshold(masks=masks).threshold)




def test_label_dice_is_theorem_1_against_direct_oracles(masks):
    """Masks.label_dice: scipy.ndimage morphology (dilate / erode) and a skeleton field cut at s/2, the Dice
    counted directly; any bandwidth for skeletons; a label type without a perturbed meta-structure refused."""
    m = planner.Masks(masks)
    truth = masks.astype(bool)
    fp = noise.disk(2).astype(bool)
    dil = np.stack([ndi.binary_dilation(t, structure=fp) for t in truth])
    assert m.label_dice("dilate 2") == pytest.approx(2 * np.sum(dil & truth) / (dil.sum() + truth.sum()), abs=1e-12)
    assert m.label_dice("clean") == 1.0
    sk = np.asarray(noise.skeletonize(truth)).astype(bool)
    s = sk.sum() / truth.sum()
    for h in (1.0, 2.5):
        field = np.asarray(density.fraction_field(sk, h))  # float32, cut at s/2 in float32 as MatchedThreshold does
        part = field > np.float32(s / 2)
        want = 2 * np.sum(part & truth) / (part.sum() + truth.sum())
        assert m.label_dice(LabelNoise("skeleton"), bandwidth=h) == pytest.approx(want, abs=1e-12)
    assert m.label_dice("skeleton", bandwidth=2.5) != m.label_dice("skeleton")  # the bandwidth is not ignored
    with pytest.raises(ValueError, match="structured"):
        m.label_dice("sample 0.1")


def test_pcl_dice_is_the_folded_normal_mean_by_monte_carlo():
    """1 - pcl_dice = E|mu + e|, e ~ N(0, s^2), s = (1 - clean) sqrt(pi/2): a fixed-key Monte Carlo."""
    z = np.asarray(jax.random.normal(jax.random.key(0), (400_000,)), float)
    for label_dice, clean in ((0.9, 0.92), (0.7, 0.95), (0.97, 0.8), (1.0, 0.9), (0.8, 1.0)):
        mu, s = 1 - label_dice, (1 - clean) * np.sqrt(np.pi / 2)
        mc = np.mean(np.abs(mu + s * z))
        assert 1 - curves.pcl_dice(label_dice, clean) == pytest.approx(mc, abs=2e-3 * max(s, 0.01))
    # it never beats either error alone, and never loses more than both
    ld, cd = np.meshgrid(np.linspace(0.5, 1, 11), np.linspace(0.5, 1, 11))
    out = curves.pcl_dice(ld, cd)
    assert np.all(out <= np.minimum(ld, cd) + 1e-12) and np.all(out >= ld + cd - 1 - 1e-12)


def test_masks_of_different_sizes_pool_their_pixels():
    a, b = blobs((40, 40), seed=3).astype(int), blobs((24, 56), seed=4).astype(int)
    both = planner.Masks([a, b])
    assert both.n_fg == a.sum() + b.sum() and both.n_pixels == a.size + b.size
    inter = sum(np.sum(np.asarray(noise.dilate(m, 1)).astype(bool) & (m == 1)) for m in (a, b))
    tot = sum(np.asarray(noise.dilate(m, 1)).sum() + m.sum() for m in (a, b))
    assert both.label_dice(LabelNoise("dilate", 1)) == pytest.approx(2 * inter / tot)
    cnt = both.histogram[1]
    assert cnt.sum() == a.size + b.size




# ------------------------------------------------------------------ thin structures
def _scipy_fraction_field(mask):
    """The border-correct gaussian fraction field at 1 px from scipy: smoothed mask over smoothed ones."""
    num = ndi.gaussian_filter(mask.astype(float), 1.0, mode="constant", truncate=4.0)
    den = ndi.gaussian_filter(np.ones(mask.shape), 1.0, mode="constant", truncate=4.0)
    return num / den


def _lines(width=1):
    m = np.zeros((64, 64), np.int32)
    for r in range(4, 60, 8):
        m[r:r + width, 2:62] = 1
    return m


@pytest.mark.parametrize("shape", ["lines 1", "lines 2", "lines 3", "spots 2", "spots 3", "blobs"])
def test_resolved_is_the_dice_of_the_clean_partition_against_scipy(masks, shape):
    if shape.startswith("lines"):
        m = _lines(int(shape[-1]))[None]
    elif shape.startswith("spots"):
        k = int(shape[-1])
        m = np.zeros((1, 48, 48), np.int32)
        for r in range(4, 44, 8):
            for c in range(4, 44, 8):
                m[0, r:r + k, c:c + k] = 1
    else:
        m = masks
    inside = np.stack([_scipy_fraction_field(x) > 0.5 for x in m])
    want = 2 * np.sum(inside & (m == 1)) / (inside.sum() + m.sum())
    assert planner.Masks(m).resolved == pytest.approx(want, abs=1e-12)
    if shape in ("lines 1", "spots 2"):  # gone from the 1-px partition
        assert want == 0
    if shape in ("lines 3", "blobs"):
        assert want > 0.9


def test_thin_masks_refuse_sampled_and_flipped_labels_but_not_the_rest():
    """1-px lines vanish from the 1-px clean partition: the finite-sampling rows are refused (they used to read
    Dice 0, even for labels equal to the clean ones, and below chance), the others keep their formulas."""
    m = planner.Masks(_lines(1))
    assert m.resolved < planner.MIN_RESOLVED
    for lab in ("sample 0.1", "flip 0.1 0.1", "flip 0.3 0.2", LabelNoise("sample", 0.5)):
        with pytest.raises(ValueError, match=r"masks: .*too thin.*Masks.resolved"):
            planner.predict(m, lab, calibration=CAL)
    with pytest.raises(ValueError, match="too thin"):
        planner.solve_n_eff(m, "sample 0.1", clean_dice=0.9, measured=0.8)
    assert planner.predict(m, "flip 0 0", calibration=CAL).dice == planner.predict(m, "clean", calibration=CAL).dice
    assert planner.predict(m, "clean", calibration=CAL).dice == 0.9
    # dilating a 1-px line by 1 triples it: Dice(T(M), M) = 2 / (1 + 3), then the clean network's jitter
    dil = planner.predict(m, "dilate 1", calibration=CAL)
    assert m.label_dice(LabelNoise("dilate", 1)) == pytest.approx(2 * 60 / (60 + 3 * 60 + 2), rel=0.02)
    assert 0 < dil.dice <= 0.5
    assert planner.predict(m, "erode 1", calibration=CAL).dice == 0  # nothing is left to learn
    assert planner.predict(m, "random 0.5", calibration=CAL).family == "RL"
    # 3-px lines are resolved, and their sampled rows fall with the ratio from the clean Dice
    thick = planner.Masks(_lines(3))
    got = [planner.predict(thick, f"sample {p}", calibration=CAL).dice for p in (0.5, 0.1, 0.01)]
    assert 0.9 > got[0] > got[1] > got[2] > 0


def test_skeletons_need_more_resolution_than_sampled_labels_and_check_resolved_false_answers_anyway():
    """4 x 4 spots keep 12 of 16 pixels in the 1-px partition (Masks.resolved = 2 x 12 / 28): enough for sampled
    and flipped labels, not for skeletons (MIN_RESOLVED_SKELETON); check_resolved=False gives the model's number,
    the same formula (Theorem 1 + jitter on the skeleton field)."""
    m = np.zeros((48, 48), np.int32)
    for r in range(4, 44, 8):
        for c in range(4, 44, 8):
            m[r:r + 4, c:c + 4] = 1
    held = planner.Masks(m)
    assert held.resolved == pytest.approx(2 * 12 / 28)
    assert planner.MIN_RESOLVED <= held.resolved < planner.MIN_RESOLVED_SKELETON
    assert planner.unresolved(held, "sample 0.1") is None and planner.unresolved(held, "dilate 1") is None
    assert "skeleton model needs 0.9" in planner.unresolved(held, "skeleton")
    with pytest.raises(ValueError, match="too thin to predict 'skeleton'"):
        planner.predict(held, "skeleton", calibration=CAL)
    anyway = planner.predict(held, "skeleton", calibration=CAL, check_resolved=False)
    assert anyway.dice == pytest.approx(float(curves.pcl_dice(held.label_dice(LabelNoise("skeleton")), 0.9)))
    assert planner.predict(held, "sample 0.1", calibration=CAL).dice > 0
    with pytest.raises(TypeError, match="check_resolved"):
        planner.predict(held, "sample 0.1", calibration=CAL, check_resolved=1)


def test_solve_n_eff_inverts_the_prediction(masks):
    m = planner.Masks(masks)
    for n in (12.0, 400.0, 9000.0):
        for lab, (f, b) in (("sample 0.1", (0.9, 0.0)), ("flip 0.3 0.2", (0.3, 0.2))):
            measured = 0.9 * float(m.pooled_dice(n, f, b)[0])
            got, clipped = planner.solve_n_eff(m, lab, clean_dice=0.9, measured=measured)
            assert clipped is None and got == pytest.approx(n, rel=1e-3)
    assert planner.solve_n_eff(m, "sample 0.1", clean_dice=0.9, measured=0.95) == (planner.N_EFF_MAX, "max")
    assert planner.solve_n_eff(m, "sample 0.1", clean_dice=0.9, measured=0.01) == (planner.N_EFF_MIN, "min")
    with pytest.raises(ValueError, match="sampled or flipped"):
        planner.solve_n_eff(m, "dilate 1", clean_dice=0.9, measured=0.8)




@pytest.mark.parametrize("how", ["values", "empty list", "no foreground", "3-d", "nan", "multiclass", "type"])
def test_predict_refuses_bad_masks_by_name(masks, how):
    bad = masks.copy()
    err = ValueError
    if how == "values":
        bad[1, 0, 0] = 2
        arg, lab = bad, "sample 0.1"
    elif how == "empty list":
        arg, lab = [], "sample 0.1"
    elif how == "no foreground":
        arg, lab = np.zeros_like(masks), "sample 0.1"
    elif how == "3-d":
        arg, lab = [masks], "sample 0.1"
    elif how == "nan":
        arg, lab = [np.full((4, 4), np.nan)], "sample 0.1"
    elif how == "multiclass":
        arg, lab = masks, LabelNoise("symmetric", 0.2, num_classes=3)
    else:
        arg, lab, err = masks, 0.1, TypeError
    with pytest.raises(err) as e:
        planner.predict(arg, lab, calibration=CAL)
    if how == "values":
        assert "mask 1" in str(e.value) and "binary" in str(e.value)
    if how == "no foreground":
        assert "no foreground" in str(e.value)



@pytest.mark.parametrize("how", ["0/1", "0/255 read as 0/1", "1 x 1", "list"])
def test_masks_without_background_are_refused(masks, how):
    """No background pixel, no boundary: main printed random labels at Dice 1.000 and every dilate / erode row
    equal to clean (issue 31, item 6). Refused as all-background masks are, naming the count."""
    arg = {"0/1": np.ones((2, 16, 16), np.int32), "0/255 read as 0/1": np.ones((3, 8, 8), np.uint8),
           "1 x 1": np.ones((1, 1)), "list": [np.ones((4, 4)), np.ones((6, 5), bool)]}[how]
    count = {"0/1": 2, "0/255 read as 0/1": 3, "1 x 1": 1, "list": 2}[how]
    with pytest.raises(ValueError, match=f"the {count} mask\\(s\\) hold no background pixel"):
        planner.Masks(arg)
    with pytest.raises(ValueError, match="no background"):
        planner.predict(arg, "random 0.5", calibration=CAL)
    # one all-foreground mask among others still has a boundary: the pooled chance Dice 2 pi / (1 + pi)
    mixed = [masks[0], np.ones((8, 8))]
    pi = (masks[0].sum() + 64) / (masks[0].size + 64)
    assert planner.predict(mixed, "random 0.5", calibration=CAL).dice == pytest.approx(2 * pi / (1 + pi))


@pytest.mark.parametrize("p", [1e-9, 5e-10, 1e-11])
def test_a_ratio_within_the_tolerance_of_no_information_is_chance(masks, p):
    """'sample 1e-9' raised AttributeError ('NoneType' has no attribute 'threshold'): its family said RCL while
    its t* was None. A label type whose T is singular within the tolerance is RL: chance, no threshold."""
    pred = planner.predict(masks, f"sample {p:g}", calibration=CAL)
    pi = masks.mean()
    assert (pred.family, pred.threshold) == ("RL", None) and pred.dice == pytest.approx(2 * pi / (1 + pi))
    # just above the tolerance: a t* = p / 2 and finite sampling
    above = planner.predict(masks, "sample 1e-8", calibration=CAL)
    assert above.family == "RCL" and above.threshold == pytest.approx(5e-9)


@pytest.mark.parametrize("text", ["sample abc", "flip 0.3, 0.3", "sample 10%", "shift 1.5", "sample 2"])
def test_a_label_name_that_does_not_parse_is_refused_naming_label(masks, text):
    with pytest.raises(ValueError) as e:
        planner.predict(masks, text, calibration=CAL)
    msg = str(e.value)
    assert msg.startswith(f"label {text!r} is not a label type's name: ") and "allowed: clean; sample RATIO" in msg


@pytest.mark.parametrize("arg, value", [("measured", float("nan")), ("measured", 1.5), ("measured", -0.1),
                                        ("clean_dice", float("nan")), ("clean_dice", 1.7), ("clean_dice", -1.0),
                                        ("measured", float("inf"))])
def test_solve_n_eff_refuses_a_value_that_is_not_a_dice(masks, arg, value):
    """main returned (1.0, None), as if in range, for measured = NaN."""
    kw = {"clean_dice": 0.9, "measured": 0.8, arg: value}
    with pytest.raises(ValueError, match=arg):
        planner.solve_n_eff(masks, "sample 0.1", **kw)


def test_predict_refuses_a_calibration_that_is_not_one(masks):
    with pytest.raises(TypeError, match="calibration must be a planner.Calibration"):
        planner.predict(masks, "sample 0.1", calibration=CAL.to_dict())


def test_a_radius_beyond_the_masks_diagonal_is_refused(masks):
    """The perturbed masks of such a radius are all foreground or all background; main computed them one disk row
    at a time (2 r + 1 shifts: a radius of 1e6 never returned)."""
    reach = np.hypot(48, 48)
    assert planner.predict(masks, LabelNoise("erode", 60), calibration=CAL).family == "PCL"  # within: predicted
    for lab in (LabelNoise("erode", reach + 0.5), LabelNoise("dilate", 1000), "dilate 1e6"):
        with pytest.raises(ValueError, match="radius beyond the masks' diagonal"):
            planner.predict(masks, lab, calibration=CAL)


# ------------------------------------------------------------------ n_images: the calibration's scale law
LAW = planner.ScaleLaw(
    rate=0.3, ratio=1.5, information=[[40.0, 5.0], [5.0, 20.0]], images_seen=2400, residual_sd=0.01, dof=6,
    memorisation={"sample": {"alpha": -9.0, "beta": 1.2, "information": [[10.0, 1.0], [1.0, 3.0]], "sd": 0.3,
                             "dof": 5},
                  "flip": {"alpha": -9.8, "beta": 1.2, "information": [[10.0, 1.0], [1.0, 3.0]], "sd": 0.3,
                           "dof": 5}},
    clean=[(6, 0.86), (12, 0.9)])
CAL_LAW = planner.Calibration(n_eff=100.0, clean_dice=0.9, recipe=dict(planner.DEFAULT_RECIPE), n_train=12,
                              law=LAW, source="test")


def test_predict_for_n_images_is_the_law_with_an_interval_around_it(masks):
    """Sampled and flipped labels: clean Dice at N times pooled_dice at the family's n_eff at N; the interval holds
    the prediction; more images (fewer passes, less memorisation) predict more; the default N is the
    calibration's own."""
    m = planner.Masks(masks)
    previous = 0.0
    for n, label, (f, b), kind in [(None, "sample 0.1", (0.9, 0.0), "sample"), (24, "sample 0.1", (0.9, 0.0), "sample"),
                                   (96, "sample 0.1", (0.9, 0.0), "sample"), (24, "flip 0.4 0.4", (0.4, 0.4), "flip")]:
        pred = planner.predict(m, label, calibration=CAL_LAW, n_images=n)
        size = n or 12
        assert pred.n_images == size and f"at {size} images" in pred.model
        want = LAW.clean_dice(size) * float(m.pooled_dice(LAW.n_eff(kind, size), f, b)[0])
        assert pred.dice == pytest.approx(want, rel=1e-9)
        lo, hi = pred.interval
        assert 0 <= lo < pred.dice < hi <= 1
        if kind == "sample":
            assert pred.dice > previous
            previous = pred.dice
    # the flipped draw is memorised less (alpha -9.8): at the same N it pools more labels than a sampled one
    assert LAW.n_eff("flip", 24) > LAW.n_eff("sample", 24)


def test_clean_and_structured_rows_get_two_networks_scatter_and_random_labels_none(masks):
    """Clean: the clean Dice at N, +- sqrt(2) t(0.95, dof) residual_sd (the new network's and the calibration's
    clean network's scatter); dilation the same about Theorem 1's prediction; random labels no interval."""
    m = planner.Masks(masks)
    half = math.sqrt(2) * stats.t.ppf(0.95, 6) * 0.01
    pred = planner.predict(m, "clean", calibration=CAL_LAW, n_images=8)
    assert pred.dice == pytest.approx(LAW.clean_dice(8))
    assert LAW.clean_dice(8) == pytest.approx(0.86 + 0.04 * math.log2(8 / 6))
    assert pred.interval == pytest.approx((pred.dice - half, pred.dice + half))
    dil = planner.predict(m, "dilate 1", calibration=CAL_LAW, n_images=8)
    assert dil.dice == pytest.approx(float(curves.pcl_dice(m.label_dice("dilate 1"), LAW.clean_dice(8))))
    assert dil.interval == pytest.approx((dil.dice - half, dil.dice + half))
    assert planner.predict(m, "random 0.5", calibration=CAL_LAW, n_images=8).interval is None


def test_a_wider_scatter_or_a_vaguer_law_widens_the_interval(masks):
    m = planner.Masks(masks)
    width = lambda cal: np.diff(planner.predict(m, "sample 0.05", calibration=cal, n_images=48).interval)[0]  # noqa: E731
    base = width(CAL_LAW)
    vague = dataclasses.replace(LAW, information=[[0.4, 0.05], [0.05, 0.2]])
    noisy = dataclasses.replace(LAW, residual_sd=0.03)
    assert width(dataclasses.replace(CAL_LAW, law=vague)) > base
    assert width(dataclasses.replace(CAL_LAW, law=noisy)) > base
    # a law that leaves a direction open (singular information) still gives a finite interval: the bounds stop it
    open_ = dataclasses.replace(LAW, information=[[40.0, 0.0], [0.0, 0.0]])
    cal = dataclasses.replace(CAL_LAW, law=open_)
    lo, hi = planner.predict(m, "sample 0.05", calibration=cal, n_images=48).interval
    assert 0 <= lo < hi <= 1


def test_a_calibration_without_a_law_predicts_only_at_its_own_size(masks):
    m = planner.Masks(masks)
    pred = planner.predict(m, "sample 0.1", calibration=CAL)  # made by hand: n_train 0, no law
    assert pred.interval is None and pred.n_images is None and "n_eff = 300" in pred.model
    own = dataclasses.replace(CAL, n_train=20)
    assert planner.predict(m, "sample 0.1", calibration=own, n_images=20).dice == pytest.approx(pred.dice)
    with pytest.raises(ValueError, match="no scale law"):
        planner.predict(m, "sample 0.1", calibration=own, n_images=40)
    with pytest.raises(ValueError, match="n_images"):
        planner.predict(m, "sample 0.1", calibration=CAL_LAW, n_images=0)
    with pytest.raises(TypeError, match="n_images"):
        planner.predict(m, "sample 0.1", calibration=CAL_LAW, n_images=2.5)


# ------------------------------------------------------------------ volumes and annotation practice
def _volumes():
    """Four volumes (10, 20, 20) of ellipsoids."""
    rng = np.random.default_rng(5)
    z, r, c = np.mgrid[:10, :20, :20]
    out = []
    for _ in range(4):
        m = np.zeros((10, 20, 20), bool)
        for _ in range(3):
            cz, cy, cx = rng.uniform([2, 4, 4], [8, 16, 16])
            m |= ((z - cz) / 3) ** 2 + ((r - cy) / 4.5) ** 2 + ((c - cx) / 4) ** 2 < 1
        out.append(m)
    return np.stack(out)


def test_masks_of_volumes_use_3d_fields_and_a_depth_one_volume_is_its_image():
    vol = _volumes()
    m = planner.Masks(vol, ndim=3)
    d = np.asarray(density.fraction_field(vol, 1.0, ndim=3))
    want = 2 * np.count_nonzero((d > 0.5) & vol) / (np.count_nonzero(d > 0.5) + vol.sum())
    assert m.ndim == 3 and m.resolved == pytest.approx(want) and m.n_fg == vol.sum()
    img = np.stack([blobs((32, 32), seed=s) for s in range(3)])
    flat, deep = planner.Masks(img), planner.Masks(img[:, None], ndim=3)
    assert deep.resolved == pytest.approx(flat.resolved, abs=1e-6)
    assert float(deep.pooled_dice(50.0, 0.9, 0.0)[0]) == pytest.approx(float(flat.pooled_dice(50.0, 0.9, 0.0)[0]),
                                                                        abs=1e-6)
    assert planner.predict(deep, "dilate 1").dice == pytest.approx(planner.predict(flat, "dilate 1").dice, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(N, H, W\).*ndim=3"):
        planner.Masks(vol.astype(np.int32))  # volumes read as images
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        planner.Masks([vol[0], vol[0, 0]], ndim=3)


def test_masks_overlap_is_the_lattice_for_slices_and_the_units_for_blocks():
    """Masks.overlap: the slices' lattice q (one class of planes per volume), the blocks' q on their randomly
    shifted grid (grid_overlap), the pixels' independent units' q, the same for both
    semantics; Masks.labelled_units: p over the single units' q."""
    vol = _volumes()
    m = planner.Masks(vol, ndim=3)
    sl = noise.Slices(5, ndim=3)
    assert m.overlap("slices 5") == pytest.approx(curves.lattice_overlap(sl.class_counts(vol)))
    assert m.overlap("slices 5 ignore") == m.overlap("slices 5")
    assert m.overlap("slices 5") < curves.cluster_overlap(sl.unit_counts(vol))  # objects deeper than 1 plane
    assert m.overlap("blocks 0.2 4") == pytest.approx(curves.grid_overlap(vol, 4, ndim=3))
    assert m.labelled_units("blocks 0.2 4") == pytest.approx(0.2 / curves.grid_overlap(vol, 4, ndim=3))
    assert m.labelled_units("slices 5") == pytest.approx(0.2 / curves.cluster_overlap(sl.unit_counts(vol)))
    assert m.labelled_units("scattered 0.1") == pytest.approx(0.1 * vol.sum())  # one pixel per unit


def test_annotation_predictions_follow_the_theory():
    """Each annotation row is the calibration's clean Dice times curves.annotated_dice at the units' q
    (checked by hand on the masks' fields, without a law); scattered pixels are sampling; sheets cost more than
    scattered pixels, ignoring less than background; slices 1 is clean."""
    vol = _volumes()
    m = planner.Masks(vol, ndim=3)
    # a calibration on 32 such volumes (measured on volumes: the units count in its training set)
    cal = dataclasses.replace(planner.DEFAULT, law=None, n_train=8 * len(vol), source="calibrated on volumes (test)")
    fields = np.asarray(density.fraction_field(vol, 1.0, ndim=3), float)
    for name in ("slices 5", "slices 5 ignore", "blocks 0.2 4", "scattered 0.2 ignore"):
        lab = noise.LabelNoise.parse(name, ndim=3)
        # slices: one class of planes per volume (a lattice); blocks, pixels: independent units
        q = (curves.lattice_overlap(lab.class_counts(vol)) if name.startswith("slices") else
             curves.grid_overlap(vol, 4, ndim=3) if name.startswith("blocks") else
             curves.cluster_overlap(lab.unit_counts(vol))) / 8  # the masks stand for 8 times as many volumes
        want = cal.clean_dice * float(curves.annotated_dice(fields, cal.n_eff, float(lab.labelled_fraction),
                                                            unlabelled=lab.unlabelled, overlap=q)[0])
        got = planner.predict(m, name, calibration=cal)
        assert got.dice == pytest.approx(want, abs=2e-3), name  # the histogram's binning of D
        assert got.threshold == (0.5 if lab.unlabelled == "ignore" else float(lab.labelled_fraction) / 2)
    dice = {t: planner.predict(m, t, calibration=cal).dice for t in
            ("slices 5", "slices 5 ignore", "scattered 0.2", "scattered 0.2 ignore", "sample 0.2", "slices 1")}
    assert dice["slices 5"] < dice["scattered 0.2"] and dice["slices 5 ignore"] < dice["scattered 0.2 ignore"]
    assert dice["slices 5"] < dice["slices 5 ignore"] and dice["scattered 0.2"] < dice["scattered 0.2 ignore"]
    # scattered pixels are sampling once the training set holds far more voxels than a decision pools (its q =
    # 1/V is the chance that two pooled labels are one voxel): for 400 such volumes
    big = dataclasses.replace(cal, n_train=100 * len(vol))
    assert planner.predict(m, "scattered 0.2", calibration=big).dice == pytest.approx(
        planner.predict(m, "sample 0.2", calibration=big).dice, abs=1e-3)
    assert dice["scattered 0.2"] < dice["sample 0.2"]
    assert dice["slices 1"] == pytest.approx(cal.clean_dice)
    # more training volumes: more sheets, so the same spacing loses less; too few labelled sheets: refused
    more = planner.predict(m, "slices 5", calibration=dataclasses.replace(cal, n_train=40 * len(vol)))
    assert more.dice > dice["slices 5"]
    with pytest.raises(ValueError, match="labelled slices with foreground"):
        planner.predict(m, "slices 5", calibration=dataclasses.replace(cal, n_train=len(vol)))
    # a 2-D calibration says nothing about how many volumes: the masks given are the training set
    flat = dataclasses.replace(cal, source="default (2-D tiles)")
    with pytest.raises(ValueError, match="the 4 training images"):
        planner.predict(m, "slices 5", calibration=flat)
    assert planner.predict(m, "slices 5", calibration=dataclasses.replace(flat, n_train=32), n_images=32).dice == \
        pytest.approx(dice["slices 5"])
    few = planner.table(m, calibration=dataclasses.replace(cal, n_train=len(vol)), spacings=(2, 5))
    assert [lab.name for lab, _ in few.not_predicted] == ["slices 5", "slices 5 ignore"]
    assert "fewer than 10 labelled units" in few.text()
    with pytest.raises(ValueError, match="slices or blocks"):
        planner.solve_n_eff(m, "slices 5", clean_dice=0.9, measured=0.8)
    with pytest.raises(ValueError, match="labels no pixel"):
        planner.predict(m, "scattered 0 ignore", calibration=cal)
