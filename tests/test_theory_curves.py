"""Curves: vectorised, consistent with the derivations, and right against Monte Carlo."""


import itertools

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
import sympy as sp
from scipy.special import ndtr

from metastructure import density, metrics, noise, ntm
from theory import curves
from theory import derivations as d


def stripe_mask(w, shape=(64, 96)):
    m = np.zeros(shape, bool)
    top = shape[0] // 2 - w // 2
    m[top : top + w, :] = True
    return m


def predicted(mask, h, f, b):
    """curves.predicted_dice of a mask's fields at bandwidth h."""
    return curves.predicted_dice(density.sampling_fields(mask, h), mask, f, b)


def test_output_levels_match_the_affine_posterior():
    mean = d.affine_posterior().parts["mean"]
    P, f, b = sp.symbols("P f b", nonnegative=True)
    fs = np.array([0.0, 0.3, 0.9])
    inside, outside = curves.output_levels(fs, 0.2)
    for i, fv in enumerate(fs):
        assert inside[i] == pytest.approx(float(mean.subs({P: 1, f: fv, b: 0.2})))
        assert outside[i] == pytest.approx(float(mean.subs({P: 0, f: fv, b: 0.2})))
    assert curves.output_levels(1 - 0.1, 0.0)[0] == pytest.approx(0.1)


def test_pcl_curves_match_the_symbolic_formulas():
    der = d.pcl_overlap()
    w, r, R, q = sp.symbols("w r R q", positive=True)
    for name, shape, size, op in (("stripe_dilate", "stripe", 9.0, "dilate"), ("disk_erode", "disk", 12.0, "erode")):
        for rv in (1.0, 2.5):
            sub = {w: size, R: size, r: rv, q: size - rv}  # q: the eroded radius
            dice, iou = curves.overlap_pcl(shape, size, rv, op=op)
            assert float(dice) == pytest.approx(float(der.claims[f"{name}_dice"].rhs.subs(sub)))
            assert float(iou) == pytest.approx(float(der.claims[f"{name}_iou"].rhs.subs(sub)))
    assert float(curves.overlap_pcl("stripe", 4, 2, op="erode")[0]) == 0.0  # eroded away


def test_vectorised_shapes():
    ps = np.array([[1.0, 0.5], [0.1, 0.01]])
    assert curves.dice_stripe(8, 2, 1 - ps, 0.0).shape == (2, 2)
    assert predicted(stripe_mask(8), 2.0, 1 - ps, 0.0).shape == (2, 2)
    assert curves.miou_symmetric_flip(np.linspace(0, 1, 5), 19, n_eff=100).shape == (5,)
    assert curves.boundary_error(np.array([1.0, 10.0])).shape == (2,)


def test_clean_limit_is_the_geometric_bias():
    # p = 1: no noise; Dice is that of the clean field's 1/2 level set
    h = 3.0
    assert float(curves.dice_stripe(3, h, 0.0, 0.0)) == 0.0  # w < 1.349 h: the stripe vanishes
    assert float(curves.dice_stripe(40, h, 0.0, 0.0)) == pytest.approx(1.0, abs=1e-3)


def test_continuous_stripe_agrees_with_the_grid():
    # the continuous cross-section vs the same stripe on pixels (midpoint error of sums)
    # (not p = 1: without noise the grid's band is whole pixels, the continuum's is not)
    ps = np.array([0.5, 0.3, 0.05])
    for w, h in ((9, 2.0), (5, 3.0)):
        grid = predicted(stripe_mask(w, (64, 64)), h, 1 - ps, 0.0)
        cont = curves.dice_stripe(w, h, 1 - ps, 0.0)
        np.testing.assert_allclose(grid, cont, atol=0.03)


def test_flip_curve_is_symmetric_through_the_inversion():
    m = stripe_mask(10)
    fs = np.array([0.1, 0.3, 0.45])
    np.testing.assert_allclose(predicted(m, 2.0, fs, fs), predicted(m, 2.0, 1 - fs, 1 - fs))
    at_collapse = curves.fg_probability(0.8, 1e-3, 1e-3, 0.6, 0.4)
    assert float(at_collapse) == 0.5


@pytest.mark.parametrize(
    "f,b",
    [(0.9, 0.0), (0.95, 0.0), (0.3, 0.3), (0.7, 0.7)],
    ids=["sample10", "sample5", "flip30", "flip70-inverted"],
)
def test_predicted_dice_matches_monte_carlo(f, b):
    """Mean Dice of 300 noisy fields thresholded at t* vs the prediction.

    The prediction is a ratio of expected counts and a normal approximation;
    the MC mean's sd is < 0.005. Bound 0.03.
    """
    m = stripe_mask(7)
    h = 3.0
    t = density.matched_threshold(ntm.flip_matrix(f, b))
    keys = jax.random.split(jax.random.key(17), 300)

    def one(k):
        y = noise.flip(k, m, f, b, exact=False)
        return metrics.dice(t.apply(density.fraction_field(y, h)), m)

    mc = float(np.mean(np.asarray(jax.vmap(one)(keys), np.float64)))
    assert mc == pytest.approx(float(predicted(m, h, f, b)), abs=0.03)


def test_boundary_error_scaling_against_the_grid():
    # misclassified pixels per unit edge: h * E(p h^2/(1-p)), continuous vs a half-plane on pixels
    n = 80
    m = np.zeros((n, 40), bool)
    m[: n // 2] = True
    for p, h in ((0.1, 2.0), (0.3, 4.0)):
        D, s_fg, s_bg = density.sampling_fields(m, h)
        prob = curves.fg_probability(D, s_fg, s_bg, 1 - p, 0.0)
        c = p * h * h / (1 - p)
        col = np.where(m, 1 - prob, prob)[10 : n - 10, 20]  # one column, away from the ends
        inside = m[10 : n - 10, 20].sum()
        assert col[:5].mean() == pytest.approx(float(curves.bulk_error(c)), abs=0.005)
        # the continuous P_err at the pixel centres (d = 39.5 - row) sums like the grid ...
        u = (39.5 - np.arange(10, n - 10)) / h
        arg = np.abs(ndtr(u) - 0.5) * 2 * np.sqrt(np.pi) * np.sqrt(c / ndtr(np.sqrt(2) * u))
        assert col.sum() == pytest.approx(ndtr(-arg).sum(), rel=0.02)
        # ... and that midpoint sum approximates the integral; the integrand peaks at the
        # edge within ~h/sqrt(c) px, which pixel centres at +-0.5 px sample coarsely
        want = inside * float(curves.bulk_error(c)) + h * float(curves.boundary_error(c))
        assert col.sum() == pytest.approx(want, rel=0.1)
    e = curves.boundary_error(np.array([0.1, 1.0, 10.0, 100.0]))
    assert np.all(np.diff(e) < 0) and np.all(np.diff(curves.bulk_error([0.1, 1.0, 10.0])) < 0)


def test_miou_symmetric_flip_collapse_and_monte_carlo():
    m_cls = 19
    e = np.array([0.0, 0.9, (m_cls - 1) / m_cls])
    v = curves.miou_symmetric_flip(e, m_cls, n_eff=1e9)
    assert v[0] == 1.0 and v[1] == pytest.approx(1.0)
    chance = 1 / m_cls
    assert v[2] == pytest.approx(chance / (2 - chance))  # at e = (M-1)/M the argmax is a guess
    # interior pixels of big blocks, 4 classes, gaussian h: n_eff = 1 / sum w^2
    h, m4 = 2.0, 4
    lab = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 40, 0), 40, 1)
    n_eff = 1 / float((density.kernel_weights("gaussian", h) ** 2).sum())
    interior = np.zeros(lab.shape, bool)
    for i in (0, 40):
        for j in (0, 40):
            interior[i + 10 : i + 30, j + 10 : j + 30] = True
    for rate in (0.6, 0.7):
        t = ntm.symmetric_matrix(rate, m4)
        keys = jax.random.split(jax.random.key(23), 40)
        preds = jax.vmap(
            lambda k: density.partition(density.fraction_field(noise.corrupt(k, lab, t), h, num_classes=m4),  # noqa: B023
                                        multiclass=True)
        )(keys)
        acc = float(np.mean(np.asarray(preds)[:, interior] == lab[interior]))
        iou_pred = float(curves.miou_symmetric_flip(rate, m4, n_eff=n_eff))
        a_pred = 2 * iou_pred / (1 + iou_pred)  # invert IoU = a / (2 - a)
        # MC sd of acc over 40 x 1600 correlated pixels ~0.01; normal approximation ~0.02
        assert acc == pytest.approx(a_pred, abs=0.04), (rate, acc, a_pred)


def test_pooled_dice_against_monte_carlo_of_its_model():
    """Each pixel averages n_eff noisy labels of mean b + (1-f-b) D and is called at t*: simulate it."""
    yy, xx = np.mgrid[:40, :40]
    mask = np.hypot(yy - 20, xx - 20) <= 9
    d = np.asarray(density.fraction_field(mask, 1.0), float)
    rng = np.random.default_rng(0)
    for f, b, n_eff in [(0.9, 0.0, 200), (0.3, 0.3, 50), (0.7, 0.6, 400)]:
        t = density.matched_threshold(ntm.flip_matrix(f, b))
        mean = b + (1 - f - b) * d
        est = rng.binomial(n_eff, mean, size=(400, *d.shape)) / n_eff
        pred = np.asarray(t.apply(est))
        ref = d > 0.5
        tp, fp, fn = (pred & ref).sum(), (pred & ~ref).sum(), (~pred & ref).sum()
        mc = 2 * tp / (2 * tp + fp + fn)
        assert curves.pooled_dice(d[None], n_eff, f, b)[0] == pytest.approx(mc, abs=0.02), (f, b, n_eff)
    assert curves.pooled_dice(d[None], 10, 0.0, 0.0)[0] == pytest.approx(1.0)  # clean labels lose nothing
    several = curves.pooled_dice(d, 100, [0.5, 0.9, 0.99], 0.0)
    assert several[2] == curves.pooled_dice(d[None], 100, 0.99, 0.0)[0] and several[0] > several[1] > several[2]


def test_an_eroded_stripe_below_the_critical_width_vanishes_as_in_the_fields():
    """derivations.pcl_overlap: the PCL prediction is the perturbed field's 1/2 level set, so an eroded stripe
    narrower than w_c = 1.349 h predicts nothing; overlap_pcl(bandwidth=h) says so, and so does the field."""
    h = 2.0
    for width, r in ((6, 2), (10, 2)):
        eroded = np.asarray(noise.erode(stripe_mask(width), r))
        field_max = float(np.max(density.fraction_field(eroded, h)))
        dice = float(curves.overlap_pcl("stripe", width, r, op="erode", bandwidth=h)[0])
        left = width - 2 * r
        assert (left > curves.critical_width(h)) == (field_max > 0.5) == (dice > 0), (width, r, field_max, dice)


# ------------------------------------------------------------------ Theorem 1 on arrays
def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


def test_pcl_label_dice_against_scipy_morphology_and_a_direct_dice():
    """Dilated / eroded masks (scipy.ndimage, disk footprint) at 1/2, a blurred perturbed mask (scipy's gaussian
    filter, float32) at a t*, masks of different sizes pooled by counts (not a mean of Dice)."""
    yy, xx = np.mgrid[-3:4, -3:4]
    rng = np.random.default_rng(5)
    a = ndi.gaussian_filter(rng.random((40, 52)), 3) > 0.5
    b = ndi.gaussian_filter(rng.random((24, 30)), 2) > 0.52
    for r in (1, 2, 3):
        fp = yy[3 - r : 4 + r, 3 - r : 4 + r] ** 2 + xx[3 - r : 4 + r, 3 - r : 4 + r] ** 2 <= r * r
        dil = ndi.binary_dilation(a, structure=fp)
        ero = ndi.binary_erosion(a, structure=fp, border_value=1)
        got = curves.pcl_label_dice(dil.astype(np.int32), a.astype(np.int32))
        assert got == pytest.approx(_dice(dil, a), abs=1e-15)
        assert curves.pcl_label_dice(ero, a) == pytest.approx(_dice(ero, a), abs=1e-15)
        both = [ndi.binary_dilation(m, structure=fp) for m in (a, b)]
        pooled = 2 * sum(np.sum(t & m) for t, m in zip(both, (a, b), strict=True)) / sum(
            t.sum() + m.sum() for t, m in zip(both, (a, b), strict=True))
        assert curves.pcl_label_dice(both, [a, b]) == pytest.approx(pooled, abs=1e-15)
        assert pooled != pytest.approx(np.mean([_dice(t, m) for t, m in zip(both, (a, b), strict=True)]), abs=1e-6)
    field = ndi.gaussian_filter(ndi.binary_dilation(a, iterations=2).astype(np.float32), 1.5)
    for t in (0.2, 0.5, 0.8):
        assert curves.pcl_label_dice(field, a, threshold=t) == pytest.approx(_dice(field > np.float32(t), a), abs=1e-15)
    # the project's metric agrees (it counts in int32 and divides in float32)
    want = float(metrics.dice(field > 0.3, a))
    assert curves.pcl_label_dice(field, a, threshold=0.3) == pytest.approx(want, rel=1e-6)


def test_pcl_label_dice_is_theorem_1s_stripe_overlap():
    """A stripe of width w dilated by r on the grid: Theorem 1's Dice w / (w + r) (curves.overlap_pcl) exactly;
    eroded: (w - 2r) / (w - r); both empty: 1; a partition that misses entirely: 0."""
    for w, r in ((6, 1), (9, 2), (12, 4)):
        m = stripe_mask(w)
        wide, thin = np.zeros_like(m), np.zeros_like(m)
        top = m.shape[0] // 2 - w // 2
        wide[top - r : top + w + r] = True
        thin[top + r : top + w - r] = True
        assert curves.pcl_label_dice(wide, m) == pytest.approx(float(curves.overlap_pcl("stripe", w, r)[0]), abs=1e-12)
        assert curves.pcl_label_dice(thin, m) == pytest.approx(
            float(curves.overlap_pcl("stripe", w, r, op="erode")[0]), abs=1e-12)
    z = np.zeros((4, 4), bool)
    assert curves.pcl_label_dice(z, z) == 1.0 and curves.pcl_label_dice(z, ~z) == 0.0


@pytest.mark.parametrize("how", ["shapes", "counts", "not binary", "nan"])
def test_pcl_label_dice_refuses_bad_input(how):
    m = stripe_mask(6, (16, 16))
    with pytest.raises(ValueError) as e:
        if how == "shapes":
            curves.pcl_label_dice(m[:8], m)
        elif how == "counts":
            curves.pcl_label_dice([m, m], [m])
        elif how == "not binary":
            curves.pcl_label_dice(m, m * 2)
        else:
            curves.pcl_label_dice(np.full(m.shape, np.nan), m)
    assert {"shapes": "same shapes", "counts": "arrays", "not binary": "binary", "nan": "NaN"}[how] in str(e.value)


def test_predicted_and_pooled_dice_take_arrays_and_refuse_bad_ones():
    m = stripe_mask(6, (16, 16))
    with pytest.raises(ValueError, match="three arrays"):
        curves.predicted_dice(density.sampling_fields(m, 1.0)[:2], m, 0.5, 0.0)
    with pytest.raises(ValueError, match="shape"):
        curves.predicted_dice(density.sampling_fields(m[:8], 1.0), m, 0.5, 0.0)
    with pytest.raises(ValueError, match="fractions"):
        curves.pooled_dice(np.full((4, 4), 2.0), 10.0, 0.5, 0.0)
    with pytest.raises(ValueError, match="n_eff"):
        curves.pooled_dice(np.zeros((4, 4)), 0.0, 0.5, 0.0)
    with pytest.raises(ValueError, match="a mask"):  # the masks themselves, as the old signature took them
        curves.pooled_dice(m[None].astype(np.int32), 10.0, 0.5, 0.0)


def test_pcl_dice_is_a_dice_even_where_the_errors_exceed_the_overlap():
    """A clean Dice near 0 with any shift: the overlap-units error E|mu + e| exceeds 1, which read as a Dice was
    negative (-0.03 for a shift of 0.1 at clean Dice 0); the Dice is 0 there, and in [0, 1] everywhere."""
    label, clean = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 41))
    got = curves.pcl_dice(label, clean)
    assert np.all((got >= 0) & (got <= 1))
    assert float(curves.pcl_dice(0.9, 0.0)) == 0.0 and float(curves.pcl_dice(1.0, 0.0)) == 0.0
    # where it was a Dice already, unchanged: the two ends of the model
    np.testing.assert_allclose(curves.pcl_dice(label[0], 1.0), label[0])


def _disks():
    yy, xx = np.mgrid[:48, :48]
    return np.stack([np.hypot(yy - 24, xx - 24) <= r for r in (6, 9, 13)])


def test_critical_flip_rate_is_where_the_pooled_dice_loses_the_gap():
    """f_c from lambda_c (found once, at another rate and n_eff) loses exactly the gap at every n_eff: the
    pooled Dice depends on f and n_eff only through lambda (derivations.pooling_and_scale). Oracle: the pooled
    Dice on the full fields, solved for the rate by scipy's brentq."""
    from scipy.optimize import brentq

    fields = np.stack([np.asarray(density.fraction_field(m, 1.0), float) for m in _disks()])
    loss = 0.02
    f0 = 0.2  # lambda_c: the n_eff at which flipping at f0 loses the gap, as lambda
    n0 = brentq(lambda n: curves.pooled_dice(fields, n, f0, f0)[0] - (1 - loss), 1e-2, 1e6)
    lam_c = (1 - 2 * f0) ** 2 * n0 / (f0 * (1 - f0))
    for n_eff in (50.0, 800.0, 3e4):
        oracle = brentq(lambda f, n=n_eff: curves.pooled_dice(fields, n, f, f)[0] - (1 - loss), 1e-4, 0.5 - 1e-9)
        assert float(curves.critical_flip_rate(n_eff, lam_c)) == pytest.approx(oracle, abs=1e-6)
    # more pooled labels, a higher critical rate, tending to 1/2
    rates = curves.critical_flip_rate(np.array([1e2, 1e4, 1e8]), lam_c)
    assert np.all(np.diff(rates) > 0) and rates[-1] == pytest.approx(0.5, abs=1e-3)


def test_scale_n_eff_adds_the_two_variances():
    """1/n_eff = 1/(rate N P) + m/ratio: fresh draws (m = 0) average every label seen, a fixed draw is capped
    at ratio/m however many images, and the inverse variances combine as independent errors do (Monte Carlo
    of a mean of rate N P labels plus a memorised error of variance q(1-q) m / ratio)."""
    assert float(curves.scale_n_eff(64, 6, 0.0, rate=2.0, ratio=1.5)) == pytest.approx(2.0 * 64 * 6)
    assert float(curves.scale_n_eff(1e15, 6, 0.01, rate=2.0, ratio=1.5)) == pytest.approx(150.0)
    assert float(curves.scale_n_eff(64, 6, -0.001, rate=2.0, ratio=1.5)) == pytest.approx(768.0)  # noise on 0
    got = curves.scale_n_eff([64, 256], [6, 24], [0.001, 0.007], rate=0.75, ratio=1.35)
    assert got.shape == (2,) and np.all(got < [0.75 * 64 * 6, 0.75 * 256 * 24])
    rng = np.random.default_rng(0)
    q, n_a, m, ratio = 0.45, 300, 0.004, 1.35
    labels = rng.binomial(n_a, q, size=200_000) / n_a
    memorised = rng.normal(0.0, np.sqrt(q * (1 - q) * m / ratio), size=labels.size)
    n_mc = q * (1 - q) / np.var(labels + memorised)
    assert n_mc == pytest.approx(float(curves.scale_n_eff(n_a, 1, m, rate=1.0, ratio=ratio)), rel=0.02)
    with pytest.raises(ValueError, match="positive"):
        curves.scale_n_eff(0, 6, 0.0, rate=1.0, ratio=1.0)


def test_pooled_variance_and_index_by_monte_carlo():
    """The k-group model on held-out and training pixels (derivations.pooling_and_scale): a group of n_g
    labels, a fraction D of them foreground flipped with f and the rest background flipped with b, has mean
    b + (1-f-b) D and variance (D f(1-f) + (1-D) b(1-b)) / n_g, and a pixel's own label moves the mean by
    1/n_g, so n_eff = 1/m."""
    rng = np.random.default_rng(1)
    n_g, frac, f, b = 40, 0.3, 0.35, 0.2
    n_fg = int(frac * n_g)
    fg = rng.random((100_000, n_fg)) >= f  # label 1 with probability 1 - f
    bg = rng.random((100_000, n_g - n_fg)) < b
    out = (fg.sum(1) + bg.sum(1)) / n_g
    assert out.mean() == pytest.approx(b + (1 - f - b) * frac, abs=2e-3)
    assert out.var() == pytest.approx((frac * f * (1 - f) + (1 - frac) * b * (1 - b)) / n_g, rel=0.03)
    index = out[fg[:, 0]].mean() - out[~fg[:, 0]].mean()
    assert index == pytest.approx(1 / n_g, rel=0.05)


# ------------------------------------------------------------------ 15: annotation practice
@pytest.mark.parametrize("p", [0.05, 0.2])
def test_annotated_dice_ignore_matches_the_pooled_model_by_monte_carlo(p):
    """The pooled model of ``annotated_dice(..., unlabelled="ignore")`` simulated: at each pixel n = 400 labels,
    n D of them foreground, each labelled with probability p, the decision the labelled ones' mean > 1/2 (a tie
    or none labelled: a coin). 4000 draws per pixel; the normal approximation of the prediction within 0.02."""
    n = 400
    yy, xx = np.mgrid[:40, :40]
    d = np.asarray(density.fraction_field((yy - 20) ** 2 + (xx - 19) ** 2 < 120, 1.0), float)
    d = np.round(d * n) / n  # n D foreground labels exactly
    rng = np.random.default_rng(0)
    uniq, inv = np.unique(d, return_inverse=True)
    fg = rng.binomial(np.round(uniq * n).astype(int)[:, None], p, (uniq.size, 4000))
    bg = rng.binomial(np.round((1 - uniq) * n).astype(int)[:, None], p, (uniq.size, 4000))
    tot = fg + bg
    call = np.where(tot > 0, np.sign(2 * fg - tot), 0)
    prob = np.mean(np.where(call == 0, 0.5, call > 0), axis=1)[inv].reshape(d.shape)
    mc = float(curves.dice_from_probability(prob, d > 0.5, axes=(0, 1)))
    pred = float(curves.annotated_dice(d, n, p, unlabelled="ignore")[0])
    assert pred == pytest.approx(mc, abs=0.02)
    assert pred < 1.0


def test_annotated_probability_ignore_with_units_by_monte_carlo():
    """The pooled model with units, ignore semantics: n = 200 labels picked from 60 units of 20-120 pixels, each
    unit labelled with probability p = 0.1 as a whole, n D of the labels foreground (placed at random), the call
    the labelled ones' mean > 1/2 (none labelled or a tie: a coin). Over 20000 draws P(fg) is
    annotated_probability(..., overlap=q) within 0.025 at every D: the units cost only through how many labels
    a decision sees (1 + 1/(p n')). Giving ignore the units' n' as its n_eff, as background needs, is off by
    more than 0.1 (the control)."""
    rng = np.random.default_rng(2)
    sizes = rng.integers(20, 120, 60)
    owner = np.repeat(np.arange(sizes.size), sizes)
    q = curves.cluster_overlap(sizes)
    n, p, draws = 200, 0.1, 20000
    worst_control = 0.0
    for level in (0.3, 0.42, 0.47, 0.53, 0.58, 0.7):
        picks = owner[rng.integers(0, owner.size, (draws, n))]
        labelled = np.take_along_axis(rng.random((draws, sizes.size)) < p, picks, axis=1)
        y = rng.permuted(np.tile(np.arange(n) < round(n * level), (draws, 1)), axis=1)
        m, f = labelled.sum(1), (labelled & y).sum(1)
        call = np.where(m > 0, np.sign(2 * f - m), 0)
        mc = float(np.mean(np.where(call == 0, 0.5, call > 0)))
        dd = np.array(round(n * level) / n)
        pred = float(curves.annotated_probability(dd, n, p, unlabelled="ignore", overlap=q)[0])
        assert pred == pytest.approx(mc, abs=0.025), level
        control = float(curves.annotated_probability(dd, float(curves.clustered_n_eff(n, q)), p,
                                                     unlabelled="ignore")[0])
        worst_control = max(worst_control, abs(control - mc))
    assert worst_control > 0.1
    # background takes the units' n' (test_clustered_n_eff_by_monte_carlo checks that variance)
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(curves.annotated_probability(grid, n, p, overlap=q),
                               curves.annotated_probability(grid, float(curves.clustered_n_eff(n, q)), p))
    with pytest.raises(ValueError, match="overlap"):
        curves.annotated_probability(grid, n, p, overlap=1.5)


def test_annotated_dice_background_is_pooled_dice_and_ignore_beats_it():
    """Background is sampling (pooled_dice with f = 1 - p); ignore has (1 - D)(1 + 1/(p n)) times its variance,
    so it is at least as good at every p here, and both reach 1 at p = 1."""
    yy, xx = np.mgrid[:32, :32]
    d = np.asarray(density.fraction_field((yy - 15) ** 2 + (xx - 16) ** 2 < 60, 1.0), float)
    ps = np.array([0.02, 0.1, 0.5, 1.0])
    bg = curves.annotated_dice(d, 50.0, ps)
    np.testing.assert_allclose(bg, curves.pooled_dice(d, 50.0, 1 - ps, 0.0))
    ig = curves.annotated_dice(d, 50.0, ps, unlabelled="ignore")
    assert np.all(ig >= bg - 1e-12) and ig[-1] == 1.0 and bg[-1] == 1.0 and ig[0] > bg[0]
    with pytest.raises(ValueError, match="unlabelled"):
        curves.annotated_dice(d, 50.0, 0.1, unlabelled="void")
    with pytest.raises(ValueError, match="fraction"):
        curves.annotated_dice(d, 50.0, 0.0)


def test_ignore_variance_of_a_smoothed_annotation_by_monte_carlo():
    """The real smoother (``density.fraction_field`` of ``noise.scattered(..., unlabelled="ignore")``, gaussian
    h = 2): over 3000 draws the field's variance at the boundary pixels is (1-p)/p ((1-D)^2 S_fg + D^2 S_bg)
    (``derivations.annotation``, first order), within 15%, and its mean is D within 0.01."""
    m = np.zeros((24, 24), bool)
    m[:, :12] = True
    p, h = 0.3, 2.0
    D, s_fg, s_bg = density.sampling_fields(m, h)
    keys = jax.random.split(jax.random.key(3), 3000)
    fields = np.asarray(jax.vmap(lambda k: density.fraction_field(
        noise.scattered(k, m.astype(np.int32), p, unlabelled="ignore"), h))(keys), float)
    want = (1 - p) / p * ((1 - D) ** 2 * s_fg + D**2 * s_bg)
    rows = slice(8, 16)
    for col in (10, 11, 12, 13):
        assert fields[:, rows, col].var(axis=0).mean() == pytest.approx(want[rows, col].mean(), rel=0.15)
        assert abs(fields[:, rows, col].mean() - D[rows, col].mean()) < 0.01


def test_clustered_n_eff_by_monte_carlo():
    """n labels drawn from a foreground in clusters labelled as a whole (Bernoulli(p) each): the labelled
    fraction's variance over 20000 draws is p(1-p) / clustered_n_eff(n, cluster_overlap(sizes)), within 5%."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 60, 40)
    owner = np.repeat(np.arange(sizes.size), sizes)
    p, n = 0.2, 30
    picks = owner[rng.integers(0, owner.size, (20000, n))]
    labelled = rng.random((20000, sizes.size)) < p
    frac = np.take_along_axis(labelled, picks, axis=1).mean(axis=1)
    q = curves.cluster_overlap(sizes)
    assert q == pytest.approx(float((sizes**2).sum() / sizes.sum() ** 2))
    assert frac.var() == pytest.approx(p * (1 - p) / float(curves.clustered_n_eff(n, q)), rel=0.05)
    assert float(curves.clustered_n_eff(n, 1 / 1e9)) == pytest.approx(n, rel=1e-6)  # one label per cluster
    assert float(curves.clustered_n_eff(1e9, q)) == pytest.approx(1 / q, rel=1e-6)  # sheets bound it
    with pytest.raises(ValueError, match="counts"):
        curves.cluster_overlap([0, 0])


def _lattice_volumes():
    """Three 7-deep volumes of ellipsoids of different depths (some deeper than 3 planes, some one plane)."""
    z, r, c = np.mgrid[:7, :10, :10]
    out = np.zeros((3, 7, 10, 10), bool)
    for v, (cz, az) in enumerate([(3.0, 3.5), (1.0, 0.9), (4.5, 1.8)]):
        out[v] = ((z - cz) / az) ** 2 + ((r - 4.5) / 4) ** 2 + ((c - 4.5) / 3) ** 2 < 1
    return out


@pytest.mark.parametrize("k", [2, 3, 10])
def test_lattice_overlap_by_enumeration_and_monte_carlo(k):
    """Every k-th slice at a uniform offset per volume: the labelled share of the foreground has variance
    p(1-p) lattice_overlap(class_counts) exactly (every combination of offsets enumerated), and over 4000
    draws of noise.Slices within 8% (the variance's relative sd at 4000 draws: 2.2%). The independent units'
    cluster_overlap of the planes is not it when the objects are deeper than k (k = 2: the lattice labels half
    of every deep object, always)."""
    m = _lattice_volumes()
    lab = noise.Slices(k, ndim=3)
    p = 1 / k
    fg = m.sum(axis=(2, 3))  # (3, 7)
    total = fg.sum()
    shares = []
    for offs in itertools.product(range(k), repeat=len(m)):
        hit = [(np.arange(7) - o) % k == 0 for o in offs]
        shares.append(sum(fg[v][hit[v]].sum() for v in range(len(m))) / total)
    exact = np.var(shares)
    q = curves.lattice_overlap(lab.class_counts(m))
    assert exact == pytest.approx(p * (1 - p) * q, rel=1e-9)
    draws = np.asarray(lab(jax.random.key(k), np.broadcast_to(m, (4000,) + m.shape)))
    mc = ((draws == 1) & m).sum(axis=(1, 2, 3, 4)) / total
    assert mc.mean() == pytest.approx(p, rel=0.02)
    assert mc.var() == pytest.approx(exact, rel=0.08)
    independent = p * (1 - p) * curves.cluster_overlap(lab.unit_counts(m))
    if k == 2:
        assert independent > 2 * exact
    if k == 10:  # deeper than every volume: each class at most one plane; the exclusion still lowers q
        assert exact < independent


def test_grid_overlap_by_enumeration_and_monte_carlo():
    """Blocks of side 3 on a grid at a uniform phase per volume and axis: grid_overlap is the mean over the 27
    phases of cluster_overlap of the shifted grid's blocks (to 1e-12), and the labelled share of the foreground
    over 4000 draws of noise.Blocks has variance p(1-p) grid_overlap within 8%. The control: on cubes aligned
    with the phase-0 grid, that grid's q (noise.Blocks.unit_counts) is over 1.5 times too high (2.6 here), and
    the Monte Carlo tells them apart."""
    m = np.zeros((3, 6, 9, 9), bool)
    m[0, :3, :3, :3] = m[0, 3:, 6:, 3:6] = m[1, 3:, 3:6, :6] = m[2, :3, 6:, 6:] = True  # aligned 3-cubes
    m = m | _lattice_volumes()[:, :6, :9, :9] * (np.arange(9) < 2)  # and a slab of ellipsoids
    s, p = 3, 0.3
    lab = noise.Blocks(p, s, ndim=3)
    phases = [curves.cluster_overlap(lab.unit_counts(np.pad(m, [(0, 0)] + [(int(a), 0) for a in ph])))
              for ph in itertools.product(range(s), repeat=3)]
    q = curves.grid_overlap(m, s, ndim=3)
    assert q == pytest.approx(np.mean(phases), rel=1e-12)
    draws = np.asarray(lab(jax.random.key(3), np.broadcast_to(m, (4000,) + m.shape)))
    mc = ((draws == 1) & m).sum(axis=(1, 2, 3, 4)) / m.sum()
    assert mc.mean() == pytest.approx(p, rel=0.02)
    assert mc.var() == pytest.approx(p * (1 - p) * q, rel=0.08)
    phase0 = curves.cluster_overlap(lab.unit_counts(m))
    assert phase0 > 1.5 * q and abs(mc.var() - p * (1 - p) * phase0) > 0.25 * mc.var()
    # in 2-D, size 1 is the pixels' 1 / count; bad arguments refused by name
    assert curves.grid_overlap(m[0, 0], 1) == pytest.approx(1 / m[0, 0].sum())
    for kw, match in (({"size": 0}, "size"), ({"size": 2.5}, "size"), ({"size": 2, "ndim": 4}, "ndim")):
        with pytest.raises(ValueError, match=match):
            curves.grid_overlap(m, **kw)
    with pytest.raises(ValueError, match="foreground"):
        curves.grid_overlap(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="axes"):
        curves.grid_overlap(np.ones(4), 2)


def _pairs_design(m, lab, sigma):
    """local_design by enumeration: every pair of foreground voxels of one volume, rho from the label type."""
    total = 0.0
    for vol in m:
        x = np.argwhere(vol)
        d = x[:, None, :] - x[None, :, :]  # (N, N, 3) offsets
        rho = np.prod(np.stack([lab.pair_correlation(d[..., a])[a] for a in range(3)]), axis=0)
        total += float((rho * np.exp(-(d * d).sum(axis=-1) / (2 * sigma**2))).sum())
    return total / m.sum()


@pytest.mark.parametrize("lab", [noise.Blocks(0.3, 3, ndim=3), noise.Slices(3, ndim=3), noise.Scattered(0.3, ndim=3)],
                         ids=["blocks", "slices", "scattered"])
def test_local_design_by_enumeration_and_monte_carlo(lab):
    """theory/README.md, step 15, "How locally a network pools": local_design equals the sum over every pair of
    foreground voxels of one volume of rho(d) exp(-|d|^2 / 2 sigma^2), over the foreground count (to 1e-6), and
    the label type's own draws (2000) give the quadratic form sum_xx' f f' g (l - p)(l' - p) the mean
    p(1-p) N deff within 8%: the pair correlations are the draws'. The control: labels pooled one by one
    (design 1) lie outside that for blocks and slices; scattered voxels are 1 at every sigma."""
    m = np.zeros((3, 6, 9, 9), bool)
    m[0, :3, :3, :3] = m[0, 3:, 6:, 3:6] = m[1, 3:, 3:6, :6] = m[2, :3, 6:, 6:] = True
    m = m | _lattice_volumes()[:, :6, :9, :9] * (np.arange(9) < 2)
    sigma = 1.2
    deff = curves.local_design(m, lab.pair_correlation, sigma, ndim=3)
    assert deff == pytest.approx(_pairs_design(m, lab, sigma), rel=1e-6)  # it stops at 4 sigma; this does not
    p = float(lab.labelled_fraction)
    draws = np.asarray(lab(jax.random.key(7), np.broadcast_to(m, (2000,) + m.shape)))
    u = ((draws == 1) - p) * m  # (draws, volumes, D, H, W): l - p on the foreground
    r = int(np.ceil(4 * sigma))
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
    c = u
    for ax in (2, 3, 4):
        c = ndi.convolve1d(c, g, axis=ax, mode="constant")
    mc = float((u * c).sum(axis=(1, 2, 3, 4)).mean()) / (p * (1 - p) * m.sum())
    assert mc == pytest.approx(deff, rel=0.08)
    if lab.kind == "scattered":
        assert deff == pytest.approx(1.0, abs=1e-12)
    else:
        assert deff > 1.5 and abs(mc - 1.0) > 0.3 * deff
    assert curves.local_design(m, lab.pair_correlation, 0.0, ndim=3) == 1.0  # pooled one by one


def test_local_design_factors_and_errors():
    """pair_correlation: the lattice's 1 / -1/(k-1) along z and 1 across, the blocks' tent on every axis, a
    single pixel for scattered; bad arguments refused by name."""
    d = np.arange(-4, 5)
    z, y = noise.Slices(4, ndim=3).pair_correlation(d)[:2]
    np.testing.assert_allclose(z, np.where(d % 4 == 0, 1.0, -1 / 3))
    np.testing.assert_array_equal(y, np.ones(9))
    assert len(noise.Slices(4).pair_correlation(d)) == 2 and np.all(noise.Slices(1).pair_correlation(d)[0] == 1)
    np.testing.assert_allclose(noise.Blocks(0.1, 4).pair_correlation(d)[1], np.maximum(0, 1 - np.abs(d) / 4))
    np.testing.assert_array_equal(noise.Scattered(0.1).pair_correlation(d)[0], d == 0)
    with pytest.raises(ValueError, match="integers"):
        noise.Blocks(0.1, 4).pair_correlation(np.array([0.5]))
    m = np.ones((2, 5, 5), bool)
    corr = noise.Blocks(0.1, 2).pair_correlation
    for args, kw, match in (((m, corr, -1.0), {}, "sigma"), ((m, corr, np.inf), {}, "sigma"),
                            ((m, corr, 1.0), {"ndim": 4}, "ndim"), ((np.ones(4), corr, 1.0), {}, "axes"),
                            ((np.zeros((4, 4)), corr, 1.0), {}, "foreground"),
                            ((np.where(m, -1, 1), corr, 1.0), {}, "binary"),
                            ((m, noise.Blocks(0.1, 2, ndim=3).pair_correlation, 1.0), {}, "correlation"),
                            ((m, lambda d: (d * 0.0, d * 0.0), 1.0), {}, "correlation")):
        with pytest.raises(ValueError, match=match):
            curves.local_design(*args, **kw)
    # the design divides n (q = 0: read at the own level), and the model takes it
    assert float(curves.clustered_n_eff(100.0, 0.0, design=4.0)) == 25.0
    assert float(curves.clustered_n_eff(100.0, 0.01, design=1.0)) == pytest.approx(100 / 1.99)
    yy, xx = np.mgrid[:32, :32]
    f = np.asarray(density.fraction_field((yy - 15) ** 2 + (xx - 16) ** 2 < 60, 1.0), float)
    np.testing.assert_allclose(curves.annotated_dice(f, 200.0, 0.1, design=4.0), curves.annotated_dice(f, 50.0, 0.1))
    for bad in (0.0, -1.0, np.nan, np.ones(2)):
        with pytest.raises(ValueError, match="design"):
            curves.annotated_dice(f, 200.0, 0.1, design=bad)
    with pytest.raises(ValueError, match="design"):
        curves.clustered_n_eff(100.0, 0.0, design=0.0)


def test_a_decision_pooling_uniformly_sees_the_unit_term_only_through_the_training_sets_share():
    """theory/README.md, step 15, "Reading a network at its own level": n labels pooled uniformly (with
    replacement) from the training foreground of one blocks annotation have a labelled fraction L of variance
    p(1-p) [1/n + (1 - 1/n) q] over annotations and pools (q = grid_overlap: the model's n'), while L minus
    the training set's own labelled share G has variance p(1-p)(1 - q)/n: the unit term is G's fluctuation,
    which a threshold at the network's own level follows. Monte Carlo over 3000 annotations, within 8%."""
    m = np.zeros((3, 6, 9, 9), bool)
    m[0, :3, :3, :3] = m[0, 3:, 6:, 3:6] = m[1, 3:, 3:6, :6] = m[2, :3, 6:, 6:] = True
    s, p, n = 3, 0.3, 20
    q = curves.grid_overlap(m, s, ndim=3)
    draws = np.asarray(noise.Blocks(p, s, ndim=3)(jax.random.key(5), np.broadcast_to(m, (3000,) + m.shape)))
    labelled = (draws == 1)[:, m]  # (annotations, foreground voxels)
    share = labelled.mean(axis=1)
    pools = np.random.default_rng(0).integers(0, m.sum(), (3000, n))
    pooled = np.take_along_axis(labelled, pools, axis=1).mean(axis=1)
    assert pooled.var() == pytest.approx(p * (1 - p) * (1 / n + (1 - 1 / n) * q), rel=0.08)
    assert (pooled - share).var() == pytest.approx(p * (1 - p) * (1 - q) / n, rel=0.08)
    assert pooled.var() > 1.5 * (pooled - share).var()  # the unit term is large here


@pytest.mark.parametrize("k", [2, 3])
def test_a_depths_labelled_share_has_the_cluster_variance_of_its_planes(k):
    """theory/README.md, step 15, "Depth is visible on whole stacks": at depth z the labelled share of the
    foreground over the volumes has variance p(1-p) q_z, q_z = cluster_overlap of the volumes' depth-z
    foreground: exactly over every combination of offsets, and within 8% over 4000 draws of noise.Slices. It is
    far above the variance of the training set's whole share (lattice_overlap), the one a depth-blind network
    pools."""
    m = _lattice_volumes()
    lab = noise.Slices(k, ndim=3)
    p = 1 / k
    fg = m.sum(axis=(2, 3)).astype(float)  # (volumes, depth)
    depths = [z for z in range(fg.shape[1]) if (fg[:, z] > 0).sum() > 1]
    want = {z: p * (1 - p) * curves.cluster_overlap(fg[:, z]) for z in depths}
    shares = {z: [] for z in depths}
    for offs in itertools.product(range(k), repeat=len(m)):
        for z in depths:
            hit = np.array([(z - o) % k == 0 for o in offs])
            shares[z].append(fg[hit, z].sum() / fg[:, z].sum())
    for z in depths:
        assert np.var(shares[z]) == pytest.approx(want[z], rel=1e-9)
    draws = np.asarray(lab(jax.random.key(10 + k), np.broadcast_to(m, (4000,) + m.shape)))
    labelled = ((draws == 1) & m).sum(axis=(3, 4))  # (draws, volumes, depth)
    for z in depths:
        mc = labelled[:, :, z].sum(axis=1) / fg[:, z].sum()
        assert mc.var() == pytest.approx(want[z], rel=0.08)
    whole = p * (1 - p) * curves.lattice_overlap(lab.class_counts(m))
    assert min(want.values()) > 3 * whole


def test_lattice_overlap_rows_and_errors():
    """In 2-D the slices are rows: the same enumeration on one image's rows; k = 1 is clean (0)."""
    m = _lattice_volumes()[0, :, 4]  # one 7 x 10 image
    fg = m.sum(axis=1)
    k = 3
    shares = [fg[(np.arange(7) - o) % k == 0].sum() / fg.sum() for o in range(k)]
    assert np.var(shares) == pytest.approx(2 / 9 * curves.lattice_overlap(noise.Slices(k).class_counts(m)))
    assert curves.lattice_overlap([[5], [3]]) == 0.0
    for bad in ([[0, 0]], [1, 2, 3], [[1, -1]]):
        with pytest.raises(ValueError, match="counts"):
            curves.lattice_overlap(bad)
