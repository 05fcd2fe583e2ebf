"""Every derivation: its claims hold symbolically, and it agrees with metastructure numerically.

Monte Carlo statistics are accumulated in float64 numpy from fixed-key draws;
each bound is stated next to its check.
"""

import math

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
import sympy as sp
from helpers import blobs
from scipy.optimize import minimize_scalar

from metastructure import density, noise, ntm
from theory import curves
from theory import derivations as d

ALL = list(d.ALL)


@pytest.fixture(scope="module")
def built():
    """Every derivation, built once for the tests that read them (building is most of their cost)."""
    return {fn.__name__: fn() for fn in ALL}


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_every_claim_holds_symbolically(fn, built):
    der = built[fn.__name__]
    assert der.claims, "a derivation must assert something"
    assert der.statement and fn.__doc__ and der.uses
    assert all(c.what for c in der.claims.values()), f"{der.name}: every claim says what it derives"
    failed = [k for k, ok in der.check().items() if not ok]
    assert not failed, f"{der.name}: claims that do not simplify to identities: {failed}"


def test_a_wrong_claim_is_caught(built):
    # the checker is not a rubber stamp: perturbed statements fail
    P, f, b = sp.symbols("P f b")
    assert not d.Claim(b + (1 - f - b) * P, b + (1 + f - b) * P).holds()
    kg = built["kernel_geometry"]
    h, R = sp.symbols("h R", positive=True)
    assert not d.Claim(kg.parts["disk_shift"], h**2 / R).holds()
    assert not d.Claim(sp.Matrix([1, 2]), sp.Matrix([1, 3])).holds()


def test_the_checker_rejects_false_identities():
    """Regression: the checker fell back to logcombine(force=True) / expand_log(force=True), which ignore
    assumptions, so log(x^2) = 2 log(x) and log(xy) = log(x) + log(y) 'held' for real x, y."""
    x, y = sp.symbols("x y", real=True)
    assert not d.Claim(sp.log(x**2), 2 * sp.log(x)).holds()
    assert not d.Claim(sp.log(x * y), sp.log(x) + sp.log(y)).holds()
    assert not d.Claim(sp.sqrt(x**2), x).holds()
    xp, yp = sp.symbols("x y", positive=True)  # with the assumption declared, they are identities
    assert d.Claim(sp.log(xp**2), 2 * sp.log(xp)).holds()
    assert d.Claim(sp.log(xp * yp), sp.log(xp) + sp.log(yp)).holds()


# the model changed, not the result: each wrong model must make some claim fail
NEGATIVE_CONTROLS = {
    "T for T^T": ("noisy_given_clean", lambda t, j, m: t[m, j],
                  (d.proper_scoring, d.lemma1, d.theorem2, d.pooling_and_scale)),
    "unnormalised kernel": ("kernel", lambda u, h, normalised=d.kernel: 2 * normalised(u, h),
                            (d.kernel_geometry, d.pcl_overlap, d.finite_sampling)),
    "wrong noise rate": ("flip_matrix", lambda f, b: sp.Matrix([[1 - b, b], [f / 2, 1 - f / 2]]),
                         (d.affine_posterior, d.transition_matrices, d.theorem2, d.pooling_and_scale)),
}


@pytest.mark.parametrize("control", sorted(NEGATIVE_CONTROLS))
def test_a_wrong_model_fails_some_claim(control, monkeypatch):
    """Each derivation starts from the model's definitions, so replacing one by a wrong model (the noise acting
    by T instead of T^T, a kernel of mass 2, a foreground flip rate off by half) makes claims fail: the claims
    derive their left sides, they do not restate them."""
    name, wrong, derivations = NEGATIVE_CONTROLS[control]
    monkeypatch.setattr(d, name, wrong)
    for fn in derivations:
        der = fn()
        assert not all(der.check().values()), f"{control}: every claim of {der.name} still holds"


def test_the_readme_table_lists_every_claim(built):
    """theory/README.md holds derivations.table(): every claim, what it derives, from which definitions."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "theory" / "README.md").read_text()
    table = d.table([built[fn.__name__] for fn in ALL])
    assert table in readme, "regenerate the table in theory/README.md from theory.derivations.table()"
    # the section holds the table and nothing after it (no stale claim count left behind by a regeneration)
    start = readme.index("## Every claim, and what it derives")
    section = readme[start:readme.index("\n## ", start + 1)]
    assert section.rstrip().endswith(table.rstrip()), "the claims section must end with derivations.table()"


def test_lemma2_holds_in_the_mixture_sense_only(built):
    """Rank 2, yet three distinct pure-class signatures: Lemma 2 is about mixtures, not equal signatures."""
    t = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.45, 0.45, 0.1]])
    assert np.linalg.matrix_rank(t) == 2 and ntm.rank(t) == 2
    sig = t  # row j: the noisy signature of a pure class j, T^T e_j
    assert min(np.abs(sig[i] - sig[j]).max() for i in range(3) for j in range(i)) > 0.3  # all distinct
    np.testing.assert_allclose(sig[2], (sig[0] + sig[1]) / 2)  # the third is a mixture of the others
    der = built["lemma2"]
    assert der.claims["mixture_signature"].holds() and der.claims["mixture_rank"].holds()


def test_dilation_has_full_rank_yet_the_boundary_is_not_recovered():
    """The counterexample to reading Theorem 2 naively: dilation's count T is invertible (det 1 - beta), but
    inverting it does not give back the clean boundary, because the noise depends on position."""
    m = blobs((96, 96), seed=4)
    dil = np.asarray(noise.dilate(m, 1))
    t = ntm.estimate(m, dil)
    assert ntm.determinant(t) > 0.75  # far from singular (0.80 here)
    f = np.asarray(density.fraction_field(dil, 2.0), np.float64)
    recovered = (f - t[0, 1]) / (1 - t[1, 0] - t[0, 1])  # Theorem 2's binary inverse
    clean = np.asarray(density.fraction_field(m, 2.0), np.float64)
    wrong = (recovered > 0.5) != (clean > 0.5)
    assert wrong.mean() > 0.04  # 6.6% of the pixels (12% before inverting): a band around every object


# ------------------------------------------------------------ 1, 2
def test_proper_scoring_numerically():
    for pi in (0.05, 0.3, 0.8):
        res = minimize_scalar(lambda q, pi=pi: -(pi * math.log(q) + (1 - pi) * math.log(1 - q)),
                              bounds=(1e-9, 1 - 1e-9), method="bounded", options={"xatol": 1e-10})
        assert res.x == pytest.approx(pi, abs=1e-6)


def test_affine_posterior_by_monte_carlo(built):
    # pixels whose clean label is Bernoulli(P); flip with (f, b); mean of y* vs b + (1-f-b) P
    key = jax.random.key(21)
    n = 400_000
    f, b = 0.35, 0.15
    for i, P in enumerate((0.1, 0.5, 0.9)):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        y = jax.random.bernoulli(k1, P, (1, n))
        ystar = np.asarray(noise.flip(k2, y, f, b, exact=False), np.float64)
        want = b + (1 - f - b) * P
        sd = math.sqrt(want * (1 - want) / n)
        assert abs(ystar.mean() - want) < 5 * sd
    t = built["affine_posterior"].parts["t_star"]
    fs, bs = sp.symbols("f b", nonnegative=True)
    assert float(t.subs({fs: f, bs: b})) == pytest.approx(density.matched_threshold(ntm.flip_matrix(f, b)).threshold)


# ------------------------------------------------------------ 3
def test_transition_matrices_numerically():
    for m, e in ((19, 0.9), (4, 0.5), (3, 2 / 3)):
        ev = np.sort(np.linalg.eigvals(ntm.symmetric_matrix(e, m)).real)
        np.testing.assert_allclose(ev[:-1], 1 - e * m / (m - 1), atol=1e-12)
    # dilation: T = [[1 - beta, beta], [0, 1]] with beta = added band / background
    m = blobs((96, 96), seed=3)
    dil = np.asarray(noise.dilate(m, 2))
    beta = (dil & ~m).sum() / (~m).sum()
    np.testing.assert_allclose(ntm.estimate(m, dil), [[1 - beta, beta], [0, 1]], atol=1e-12)
    assert ntm.determinant(ntm.estimate(m, dil)) == pytest.approx(1 - beta)


# ------------------------------------------------------------ 4
def test_lemma1_symbolic_matches_code(built):
    der = built["lemma1"]
    rng = np.random.default_rng(0)
    t = rng.dirichlet(np.ones(3), size=3)
    subs = {sp.Symbol(f"T{j}_{k}", nonnegative=True): t[j, k] for j in range(3) for k in range(2)}
    z = rng.dirichlet(np.ones(3), size=3)
    subs.update({sp.Symbol(f"z{i}_{k}", nonnegative=True): z[i, k] for i in range(3) for k in range(2)})
    w = rng.random(3) + 0.1
    subs.update({sp.Symbol(f"w{i}", positive=True): w[i] for i in range(3)})
    clean = np.array([float(v.subs(subs)) for v in der.parts["clean"]])
    noisy = np.array([float(v.subs(subs)) for v in der.parts["expected_noisy"]])
    np.testing.assert_allclose(noisy, np.asarray(density.expected_fraction_field(clean, t), np.float64), atol=1e-6)


def test_lemma2_and_theorem2_numerically():
    lab = ndi.zoom(np.random.default_rng(1).integers(0, 3, (4, 4)), 12, order=0)
    t = np.array([[0.6, 0.25, 0.15], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])
    keys = jax.random.split(jax.random.key(5), 200)
    fields = jax.vmap(lambda k: density.fraction_field(noise.corrupt(k, lab, t), 2.0, num_classes=3))(keys)
    mean = np.asarray(fields, np.float64).mean(0)
    recovered = mean @ np.linalg.inv(t)  # F = (T^T)^-1 E[F*] in row-vector form
    clean = np.asarray(density.fraction_field(lab, 2.0, num_classes=3), np.float64)
    # per-pixel sd of the mean <= 0.5 sqrt(sum w^2 / 200) ~ 0.005; inv(T) amplifies by <= ||inv(T)|| ~ 3
    np.testing.assert_allclose(recovered, clean, atol=0.08)
    assert np.abs(recovered - clean).mean() < 0.01
    # random labels: estimated T has numerical rank 1 (rows estimated from ~49000
    # pixels each: sd <= 0.0023, far below the 5% rank tolerance)
    big = np.tile(lab, (8, 8))
    rl = noise.corrupt(jax.random.key(6), big, np.tile([0.2, 0.5, 0.3], (3, 1)))
    assert ntm.numerical_rank(ntm.estimate(big, rl, num_classes=3), rtol=0.05) == 1


# ------------------------------------------------------------ 5
def test_disk_shift_leading_order_against_exact_and_code():
    # leading order: relative error O((h/R)^2); 10% at R/h = 2.5, < 1% at R/h >= 10
    for ratio, tol in ((2.5, 0.10), (5, 0.03), (10, 0.01), (20, 0.005)):
        R, h = 2.0 * ratio, 2.0
        exact = R - curves.disk_level_radius(R, h)
        assert exact == pytest.approx(float(curves.disk_level_shift(R, h)), rel=tol)
    # the pixel grid: radius from the area of {D > 1/2} vs from the mask's area
    n, R, h = 128, 24.0, 6.0
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    m = yy**2 + xx**2 <= R**2
    dfield = np.asarray(density.fraction_field(m, h), np.float64)
    shift = math.sqrt(m.sum() / math.pi) - math.sqrt((dfield > 0.5).sum() / math.pi)
    assert shift == pytest.approx(h * h / (2 * R), abs=0.15)  # 0.75 px predicted; grid error ~0.1 px


@pytest.mark.parametrize("w,h", [(3, 3.0), (5, 3.0), (7, 2.0), (9, 4.0)])
def test_stripe_peak_and_survival_on_the_grid(w, h):
    m = np.zeros((64, 40), bool)
    m[32 - w // 2 : 32 + w // 2 + 1, :] = True
    peak = float(np.asarray(density.fraction_field(m, h))[32, 20])
    # discrete sum vs continuous integral of the gaussian: midpoint error < 0.01 for h >= 2
    assert peak == pytest.approx(float(curves.stripe_peak(w, h)), abs=0.01)
    assert (peak > 0.5) == (w > float(curves.critical_width(h)))


# ------------------------------------------------------------ 6
def test_finite_sampling_variance_and_misclassification_by_monte_carlo():
    """Predicted P(called fg at t*) vs the fraction of 2000 sampled masks that call it.

    Bernoulli sampling p = 0.2, gaussian h = 3 (about p * 4 pi h^2 = 23 labelled
    pixels per window). MC sd of an empirical probability <= 0.011; the normal
    approximation adds skew error near the edge; bound 0.05 per pixel and 0.01 on average.
    """
    m = blobs((48, 48), seed=11, sigma=4.0, level=0.5)
    p, h, k = 0.2, 3.0, 2000
    keys = jax.random.split(jax.random.key(12), k)
    fields = np.asarray(
        jax.vmap(lambda key: density.fraction_field(noise.sample(key, m, p, exact=False), h))(keys), np.float64
    )
    D, s_fg, s_bg = density.sampling_fields(m, h)
    # variance: p (1 - p) S_fg; the sample variance of 2000 draws has relative sd ~ 3%
    var = fields.var(0)
    pred = p * (1 - p) * s_fg
    big = pred > 1e-4
    np.testing.assert_allclose(var[big], pred[big], rtol=0.15)
    np.testing.assert_allclose(fields.mean(0), p * D, atol=5 * math.sqrt(pred.max() / k) + 1e-5)
    emp = (fields > p / 2).mean(0)
    prob = curves.fg_probability(D, s_fg, s_bg, 1 - p, 0.0)
    err = np.abs(emp - prob)
    assert err.max() < 0.05 and err.mean() < 0.01


# ------------------------------------------------------------ 7
@pytest.mark.parametrize("w,r", [(6, 1), (9, 2), (12, 4)])
def test_pcl_stripe_dice_is_exact_on_the_grid(w, r):
    m = np.zeros((48, 32), bool)
    m[20 : 20 + w, :] = True
    from metastructure import metrics

    dice_d, iou_d = curves.overlap_pcl("stripe", w, r, op="dilate")
    assert float(metrics.dice(noise.dilate(m, r), m)) == pytest.approx(float(dice_d), abs=1e-6)
    assert float(metrics.iou(noise.dilate(m, r), m)) == pytest.approx(float(iou_d), abs=1e-6)
    dice_e, iou_e = curves.overlap_pcl("stripe", w, r, op="erode")
    assert float(metrics.dice(noise.erode(m, r), m)) == pytest.approx(float(dice_e), abs=1e-6)
    assert float(metrics.iou(noise.erode(m, r), m)) == pytest.approx(float(iou_e), abs=1e-6)


def test_pcl_disk_dice_on_the_grid():
    from metastructure import metrics

    n, R = 96, 20
    yy, xx = np.mgrid[:n, :n] - n // 2
    m = yy**2 + xx**2 <= R * R
    for r in (1, 2, 4):
        for op, fn in (("dilate", noise.dilate), ("erode", noise.erode)):
            want = float(curves.overlap_pcl("disk", R, r, op=op)[0])
            got = float(metrics.dice(fn(m, r), m))
            # digital disks reach less than their nominal radius off the axes, so the
            # grid moves the boundary slightly less than r: measured 0.004-0.015 above
            assert 0.0 <= got - want < 0.016


def test_skeleton_band_on_the_grid():
    w, h = 15, 2.5
    m = np.zeros((64, 200), bool)
    m[25 : 25 + w, :] = True
    s = np.asarray(noise.skeletonize(m))
    t = ntm.skeleton_matrix(m, s)
    tstar = density.matched_threshold(t).threshold
    band = np.asarray(density.fraction_field(s, h))[:, 100] > tstar
    rows = np.nonzero(band)[0]
    half = (rows.max() - rows.min() + 1) / 2
    # in the interior the skeleton is the midline: one pixel of w per column (s = 1/w)
    assert s[:, 100].sum() == 1 and s[25 + w // 2, 100]
    # t* = s/2 with the measured s (the skeleton stops short of the image ends);
    # a one-pixel line's field is phi_h sampled on pixels; band edges are quantised to 1 px
    assert half == pytest.approx(float(curves.skeleton_half_width(1 / t[1, 1], h)), abs=1.0)


# ------------------------------------------------------------ 8
def test_random_labels_have_no_information_numerically():
    m = blobs((200, 200), seed=2)
    y = noise.random_labels(jax.random.key(3), m.shape, 0.3)
    q = ntm.joint(m, y)
    # plug-in MI of independent variables: E ~ (M-1)^2 / (2N) = 1.25e-5 nats, sd similar
    assert ntm.mutual_information(q) < 2e-4
    assert ntm.numerical_rank(ntm.estimate(m, y), rtol=0.05) == 1


# ------------------------------------------------------------ 9
def test_linearity_and_gap_variance_by_monte_carlo():
    rng = np.random.default_rng(0)
    n, p, k = 400, 0.1, 4000
    y = rng.random(n) < 0.4
    ybar = p * y
    q = np.clip(ybar + 0.05, 1e-3, 1 - 1e-3)  # any fixed predictor
    keys = jax.random.split(jax.random.key(9), k)
    draws = np.asarray(jax.vmap(lambda kk: noise.sample(kk, y[None], p, exact=False))(keys), np.float64)[:, 0]

    def bce(t):
        return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(-1)

    losses = bce(draws)
    # linearity: the mean loss over draws is the loss at the mean label
    assert losses.mean() == pytest.approx(bce(ybar), abs=5 * losses.std() / math.sqrt(k))
    gap = losses - bce(ybar)
    logit = np.log(q / (1 - q))
    var_pred = (ybar * (1 - ybar) * logit**2).sum() / n**2
    assert gap.mean() == pytest.approx(0.0, abs=5 * math.sqrt(var_pred / k))
    assert gap.var() == pytest.approx(var_pred, rel=0.1)  # sd of a variance estimate: sqrt(2/k) ~ 2%


def test_memorisation_optimism_is_k_over_2n():
    """k groups, each fitting its own Bernoulli output to a fixed draw: drop = k/(2n) nats/pixel.

    Second-order (Wilks) result: accurate when every group holds many pixels.
    """
    rng = np.random.default_rng(1)
    k_groups, n_g, p, reps = 20, 500, 0.3, 2000
    n = k_groups * n_g
    draws = rng.random((reps, k_groups, n_g)) < p
    yhat = np.clip(draws.mean(-1), 1e-12, 1 - 1e-12)

    def ent(t, q):
        return -(t * np.log(q) + (1 - t) * np.log(1 - q))

    drop = (n_g * (ent(yhat, p) - ent(yhat, yhat))).sum(-1) / n  # soft-label loss minus fitted loss
    assert drop.mean() == pytest.approx(k_groups / (2 * n), rel=0.05)


def test_memorisation_index_of_the_k_group_model_is_k_over_n_fg_whatever_p(built):
    """Monte Carlo of the k-group model (k groups of the n_fg foreground pixels, each output its group's drawn
    fraction): output on the drawn pixels minus on the left-out ones is k / n_fg for every p, as
    derivations.linearity_and_memorisation derives and curves.memorised_fraction says. The earlier formula
    min(1, k / (2 n_fg H(p))) depended on p, which this model does not support (0.031 against 0.020 here)."""
    from theory import curves

    rng = np.random.default_rng(9)
    k, n_fg, trials = 20, 1000, 4000
    n_g = n_fg // k
    index = built["linearity_and_memorisation"].parts["memorisation_index"]
    derived = float(index.subs(sp.Symbol("n_g", positive=True), n_g))
    for p in (0.05, 0.1, 0.3, 0.6):
        drawn = rng.random((trials, k, n_g)) < p
        out = np.broadcast_to(drawn.mean(-1, keepdims=True), drawn.shape)  # each group fitted to its draw
        on = (out * drawn).sum((1, 2)).sum() / drawn.sum()  # ratio of expectations, pooled over trials
        off = (out * ~drawn).sum((1, 2)).sum() / (~drawn).sum()
        # sd of the pooled difference is below 2e-4 at these sizes (checked by splitting the trials)
        assert on - off == pytest.approx(derived, abs=1e-3), p  # the symbolic index at n_g, for every p
    assert float(curves.memorised_fraction(n_fg, k)) == pytest.approx(derived)
    assert curves.memorised_fraction(10, 1e9) == 1.0  # k >= n_fg: every pixel its own group, the draw itself
