r"""The lemmas and theorems of the meta-structure theory, derived in sympy.

Every function returns a :class:`Derivation`: the statement in words, the pieces
of the derivation (sympy objects), and the *claims*, sympy equations that must
simplify to identities. ``tests/test_theory_derivations.py`` checks every claim
symbolically and, where the result is about random labels or fields, numerically
against :mod:`metastructure`. The order below is the proof outline (see
``theory/README.md``).

Conventions: binary T = [[1-b, b], [f, 1-f]] (rows: true bg, fg); h is the
kernel bandwidth (gaussian sigma); phi_h and Phi are the normal density and cdf.
Results marked *leading order* are asymptotic expansions; their tests check them
in the regime where they hold and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sympy as sp
from sympy import stats as sps

__all__ = [
    "Claim",
    "Derivation",
    "affine_posterior",
    "finite_sampling",
    "kernel_geometry",
    "lemma1",
    "lemma2",
    "linearity_and_memorisation",
    "pcl_overlap",
    "proper_scoring",
    "random_labels",
    "theorem2",
    "transition_matrices",
]


class Claim(NamedTuple):
    """An equation ``lhs = rhs`` (scalars or matrices) that the derivation asserts."""

    lhs: Any
    rhs: Any

    def holds(self) -> bool:
        """True when lhs - rhs simplifies to zero (entrywise for matrices)."""
        diff = sp.Matrix(self.lhs) - sp.Matrix(self.rhs) if _is_matrix(self.lhs) else self.lhs - self.rhs
        entries = list(diff) if _is_matrix(diff) else [diff]
        return all(_is_zero(e) for e in entries)


@dataclass(frozen=True)
class Derivation:
    """A derived result: ``claims`` are equations that hold identically."""

    name: str
    statement: str
    claims: dict[str, Claim] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)

    def check(self) -> dict[str, bool]:
        """Each claim simplified: ``{name: holds}``."""
        return {k: c.holds() for k, c in self.claims.items()}


def _is_matrix(x: Any) -> bool:
    return isinstance(x, sp.MatrixBase)


def _is_zero(expr: Any) -> bool:
    e = sp.simplify(sp.expand(sp.sympify(expr).rewrite(sp.erf)))
    if e == 0:
        return True
    return sp.simplify(sp.expand_log(sp.logcombine(e, force=True), force=True)) == 0


def _phi(x, h):
    return sp.exp(-(x**2) / (2 * h**2)) / (sp.sqrt(2 * sp.pi) * h)


def _Phi(x):
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def _stochastic(m: int, name: str = "T") -> sp.Matrix:
    """A general row-stochastic M x M matrix: the last column is 1 - the others."""
    rows = []
    for j in range(m):
        free = list(sp.symbols(f"{name}{j}_0:{m - 1}", nonnegative=True))
        rows.append(free + [1 - sum(free)])
    return sp.Matrix(rows)


# --------------------------------------------------------------------- 1
def proper_scoring() -> Derivation:
    r"""Cross-entropy is a proper scoring rule: its expected value is minimised at
    the true class probabilities. Binary: argmin_q E[-y log q - (1-y) log(1-q)] = E[y]
    (second derivative 1/(pi(1-pi)) > 0). Softmax CE over M = 3 classes: q* = pi.
    With class-conditional noise T the noisy target's mean is T^T p(x), so the
    noisy-trained minimiser is q*(x) = T^T p(x).
    """
    q, pi = sp.symbols("q pi", positive=True)
    loss = -(pi * sp.log(q) + (1 - pi) * sp.log(1 - q))
    (sol,) = sp.solve(sp.diff(loss, q), q)
    curv = sp.simplify(sp.diff(loss, q, 2).subs(q, pi))

    q1, q2, p1, p2 = sp.symbols("q1 q2 pi1 pi2", positive=True)
    ce = -(p1 * sp.log(q1) + p2 * sp.log(q2) + (1 - p1 - p2) * sp.log(1 - q1 - q2))
    msol = sp.solve([sp.diff(ce, q1), sp.diff(ce, q2)], [q1, q2], dict=True)[0]

    t = _stochastic(3)
    pc = sp.Matrix(sp.symbols("p0:3", nonnegative=True))
    # E[1{y* = m} | x] = sum_j P(y = j | x) T[j, m]  (law of total probability)
    noisy_mean = sp.Matrix([sum(pc[j] * t[j, m] for j in range(3)) for m in range(3)])
    return Derivation(
        "proper_scoring",
        "The expected cross-entropy is minimised at the target's mean; with noise T, at T^T p(x).",
        claims={
            "binary_minimiser": Claim(sol, pi),
            "binary_curvature": Claim(curv, 1 / (pi * (1 - pi))),
            "softmax_minimiser_1": Claim(msol[q1], p1),
            "softmax_minimiser_2": Claim(msol[q2], p2),
            "noisy_minimiser": Claim(noisy_mean - t.T * pc, sp.zeros(3, 1)),
        },
        parts={"loss": loss, "softmax_loss": ce, "T": t, "noisy_minimiser": t.T * pc},
    )


# --------------------------------------------------------------------- 2
def affine_posterior() -> Derivation:
    r"""Binary class-conditional noise maps the posterior affinely:
    E[y* | x] = b + (1 - f - b) P(fg | x). The clean boundary P = 1/2 is the level
    set E[y*|x] = t* = (1 + b - f)/2; the slope 1 - f - b is negative when
    f + b > 1 (the order reverses: predict where the output is below t*) and zero
    when f + b = 1 (E[y*|x] = 1 - f whatever x: no information).
    """
    P, f, b = sp.symbols("P f b", nonnegative=True)
    mean = P * (1 - f) + (1 - P) * b
    t_star = mean.subs(P, sp.Rational(1, 2))
    slope = sp.diff(mean, P)
    (p_at_t,) = sp.solve(sp.Eq(mean, (1 + b - f) / 2), P)
    return Derivation(
        "affine_posterior",
        "E[y*|x] = b + (1-f-b) P; the clean boundary is its level set at t* = (1+b-f)/2.",
        claims={
            "affine": Claim(mean, b + (1 - f - b) * P),
            "t_star": Claim(t_star, (1 + b - f) / 2),
            "level_set_is_boundary": Claim(p_at_t, sp.Rational(1, 2)),
            "slope": Claim(slope, 1 - f - b),
            "no_information_at_f_plus_b_1": Claim(sp.diff(mean.subs(b, 1 - f), P), 0),
            "sampling_t_star": Claim(t_star.subs({f: 1 - sp.Symbol("p"), b: 0}), sp.Symbol("p") / 2),
        },
        parts={"mean": mean, "t_star": t_star, "slope": slope},
    )


# --------------------------------------------------------------------- 3
def transition_matrices() -> Derivation:
    r"""Determinants of the binary label types (sample p, flip 1-f-b, random 0,
    skeleton s, dilation 1-beta, erosion 1-epsilon, beta/epsilon being the fractions
    of bg/fg pixels the morphology changes), and the symmetric M-class flip
    T = (1-e) I + e/(M-1) (J - I) = a I + c J with a = 1 - eM/(M-1), c = e/(M-1):
    eigenvalue a + cM = 1 on the all-ones vector and a on its complement
    (multiplicity M-1), so det T = (1 - eM/(M-1))^(M-1), singular only at
    e = (M-1)/M. Its noisy minimiser T^T p = a p + c 1 is increasing in p when
    e < (M-1)/M: argmax preserved. Checked for M = 2..5 and, via a I + c J, for
    symbolic M.
    """
    p, f, b, r, s, beta, eps = sp.symbols("p f b r s beta epsilon", nonnegative=True)
    e = sp.Symbol("e", nonnegative=True)
    mats = {
        "sample": (sp.Matrix([[1, 0], [1 - p, p]]), p),
        "flip": (sp.Matrix([[1 - b, b], [f, 1 - f]]), 1 - f - b),
        "random": (sp.Matrix([[1 - r, r], [1 - r, r]]), 0),
        "skeleton": (sp.Matrix([[1, 0], [1 - s, s]]), s),
        "dilation": (sp.Matrix([[1 - beta, beta], [0, 1]]), 1 - beta),
        "erosion": (sp.Matrix([[1, 0], [eps, 1 - eps]]), 1 - eps),
    }
    claims = {f"det_{k}": Claim(m.det(), d) for k, (m, d) in mats.items()}
    M = sp.Symbol("M", integer=True, positive=True)
    a = 1 - e * M / (M - 1)
    c = e / (M - 1)
    claims["symmetric_is_aI_plus_cJ"] = Claim((1 - e) - (a + c), 0)  # diagonal
    claims["symmetric_offdiag"] = Claim(e / (M - 1) - c, 0)
    claims["ones_eigenvalue"] = Claim(a + c * M, 1)
    (e_sing,) = sp.solve(sp.Eq(a, 0), e)
    claims["singular_at"] = Claim(e_sing, (M - 1) / M)
    for m in range(2, 6):
        t = (1 - e) * sp.eye(m) + e / (m - 1) * (sp.ones(m, m) - sp.eye(m))
        ev = t.eigenvals()
        lam = sp.simplify(1 - e * m / (m - 1))
        claims[f"eigenvalues_M{m}"] = Claim(
            sp.Matrix(sorted([sp.simplify(k) for k in ev], key=sp.default_sort_key)),
            sp.Matrix(sorted({sp.Integer(1), lam}, key=sp.default_sort_key)),
        )
        claims[f"multiplicity_M{m}"] = Claim(ev.get(lam, 0) if lam != 1 else ev[1], m - 1)
        claims[f"det_M{m}"] = Claim(t.det(), lam ** (m - 1))
        pv = sp.Matrix(sp.symbols(f"p0:{m - 1}", nonnegative=True))
        pv = pv.col_join(sp.Matrix([1 - sum(pv)]))
        claims[f"argmax_affine_M{m}"] = Claim(t.T * pv - (lam * pv + e / (m - 1) * sp.ones(m, 1)), sp.zeros(m, 1))
    return Derivation(
        "transition_matrices",
        "det T of each label type; symmetric flip: eigenvalues 1 and 1 - eM/(M-1), singular at e = (M-1)/M.",
        claims=claims,
        parts={**{k: m for k, (m, _) in mats.items()}, "eigenvalue": a, "singular_at": e_sing},
    )


# --------------------------------------------------------------------- 4
def lemma1(m: int = 3, n_pixels: int = 3) -> Derivation:
    r"""Lemma 1: class-conditional noise acts affinely on fraction fields,
    E[D*_k(x)] = sum_j T[j, k] D_j(x). Each pixel i of a window (weights w_i)
    has clean class indicators z_ij (sum_j z_ij = 1) and keeps or changes class
    independently by T, so E[1{y*_i = k}] = sum_j z_ij T[j, k]; the field is
    linear in the indicators. Symbolic for a general M x M T (default M = 3) and
    a window of ``n_pixels`` pixels.
    """
    t = _stochastic(m)
    w = sp.symbols(f"w0:{n_pixels}", positive=True)
    z = []
    for i in range(n_pixels):
        free = list(sp.symbols(f"z{i}_0:{m - 1}", nonnegative=True))
        z.append(free + [1 - sum(free)])
    total = sum(w)
    clean = [sum(w[i] * z[i][j] for i in range(n_pixels)) / total for j in range(m)]
    expected_noisy = [sum(w[i] * sum(z[i][j] * t[j, k] for j in range(m)) for i in range(n_pixels)) / total
                      for k in range(m)]
    claims = {
        f"class_{k}": Claim(expected_noisy[k], sum(t[j, k] * clean[j] for j in range(m))) for k in range(m)
    }
    claims["fields_sum_to_one"] = Claim(sum(expected_noisy), 1)
    f, b, d = sp.symbols("f b D", nonnegative=True)
    binary = sp.Matrix([[1 - b, b], [f, 1 - f]])
    claims["binary_form"] = Claim((binary.T * sp.Matrix([1 - d, d]))[1], b + (1 - f - b) * d)
    return Derivation(
        "lemma1",
        "E[D*] = T^T D: the expected noisy fraction fields are the clean ones mapped by T^T.",
        claims=claims,
        parts={"T": t, "clean": sp.Matrix(clean), "expected_noisy": sp.Matrix(expected_noisy)},
    )


def lemma2() -> Derivation:
    r"""Lemma 2: the noisy labels can distinguish rank(T) classes. The expected
    noisy field at a pixel of clean composition F (a point of the simplex) is
    T^T F. Rows of a row-stochastic T lie on the hyperplane sum = 1, which misses
    the origin, so T 1 = 1 and the rows span an affine set of dimension
    rank(T) - 1: exactly rank(T) pure classes have affinely independent noisy
    signatures. Random labels (equal rows, rank 1): T^T F is the same for every F.
    Checked for general M = 2, 3 (full rank) and for rank-1 and rank-2 3 x 3 examples.
    """
    claims = {}
    parts = {}
    for m in (2, 3):
        t = _stochastic(m)
        claims[f"row_stochastic_M{m}"] = Claim(t * sp.ones(m, 1), sp.ones(m, 1))
        claims[f"generic_rank_M{m}"] = Claim(t.rank(simplify=True), m)
    r = sp.symbols("r0:2", nonnegative=True)
    row = [r[0], r[1], 1 - r[0] - r[1]]
    rl = sp.Matrix([row, row, row])
    a_, c_ = sp.symbols("a0:2", nonnegative=True), sp.symbols("c0:2", nonnegative=True)
    fa = sp.Matrix(a_).col_join(sp.Matrix([1 - sum(a_)]))
    fb = sp.Matrix(c_).col_join(sp.Matrix([1 - sum(c_)]))
    claims["random_labels_same_signature"] = Claim(rl.T * fa - rl.T * fb, sp.zeros(3, 1))
    claims["random_labels_rank"] = Claim(rl.rank(), 1)
    # a rank-2 example: classes 1 and 2 merged by the noise
    merged = sp.Matrix([[sp.Rational(8, 10), sp.Rational(1, 10), sp.Rational(1, 10)],
                        [sp.Rational(1, 10), sp.Rational(45, 100), sp.Rational(45, 100)],
                        [sp.Rational(1, 10), sp.Rational(45, 100), sp.Rational(45, 100)]])
    for name, mat in (("random", rl.subs({r[0]: sp.Rational(1, 5), r[1]: sp.Rational(3, 10)})), ("merged", merged)):
        diffs = sp.Matrix.vstack(*[mat[i, :] - mat[0, :] for i in range(1, 3)])
        claims[f"affine_dimension_{name}"] = Claim(diffs.rank(), mat.rank() - 1)
        parts[name] = mat
    return Derivation(
        "lemma2", "The noisy labels distinguish rank(T) classes; random labels (rank 1) none.", claims, parts
    )


def theorem2() -> Derivation:
    r"""Theorem 2: if rank(T) = M the clean fields are recoverable from the
    expected noisy ones, F = (T^T)^{-1} E[F*]. Binary: det T = 1 - f - b and
    D = (E[D*] - b) / (1 - f - b). Symbolic for general 2 x 2 and 3 x 3 T.
    """
    claims = {}
    parts = {}
    for m in (2, 3):
        t = _stochastic(m)
        F = sp.Matrix(sp.symbols(f"F0:{m}", nonnegative=True))
        noisy = t.T * F
        rec = t.T.inv() * noisy
        claims[f"recover_M{m}"] = Claim(rec - F, sp.zeros(m, 1))
        parts[f"inverse_M{m}"] = t.T.inv()
    f, b, d, en = sp.symbols("f b D Dstar", real=True)
    (sol,) = sp.solve(sp.Eq(en, b + (1 - f - b) * d), d)
    claims["binary_inverse"] = Claim(sol, (en - b) / (1 - f - b))
    claims["binary_det"] = Claim(sp.Matrix([[1 - b, b], [f, 1 - f]]).det(), 1 - f - b)
    return Derivation("theorem2", "Full-rank T: F = (T^T)^-1 E[F*].", claims, parts)


# --------------------------------------------------------------------- 5
def kernel_geometry() -> Derivation:
    r"""Where the 1/2 level set of a clean fraction field sits (continuous kernels).

    * Half-plane {u < 0}: gaussian D(x) = Phi(-x/h), box D(x) = (h - x)/(2h) on
      |x| <= h; both equal 1/2 on the edge: no bias for straight edges.
    * Disk of radius R, gaussian h (*leading order* in h/R): near a boundary
      point the disk is the half-plane minus the sliver 0 < u < v^2/(2R), whose
      kernel mass is phi_h(0) h^2/(2R) = h/(2 sqrt(2 pi) R); the field's slope
      across the edge is phi_h(0) = 1/(sqrt(2 pi) h). So D = 1/2 - h/(2 sqrt(2 pi) R)
      on the boundary and the 1/2 level set moves *inward* by
      delta = h^2/(2R), i.e. delta/R = (h/R)^2/2 + O((h/R)^4).
    * Stripe of width w (tube cross-section), gaussian: D(x) = Phi((w/2-x)/h) -
      Phi((-w/2-x)/h), peak D(0) = erf(w/(2 sqrt(2) h)); the 1/2 level set exists
      iff w > w_c = 2 sqrt(2) erfinv(1/2) h ~= 1.349 h. Box (half-width h): peak
      min(1, w/(2h)), survives iff w > h. Thin structures vanish when h is large
      relative to w.
    """
    x, u, v = sp.symbols("x u v", real=True)
    h, R, w = sp.symbols("h R w", positive=True)
    half_gauss = sp.integrate(_phi(u, h), (u, -sp.oo, -x))
    half_box = sp.integrate(1 / (2 * h), (u, -h, -x))  # window [x-h, x+h] meets u<0 on [x-h, 0]
    sliver = sp.integrate(_phi(v, h) * _phi(0, h) * v**2 / (2 * R), (v, -sp.oo, sp.oo))
    slope = _phi(0, h)
    delta = sp.simplify(sliver / slope)
    stripe = _Phi((w / 2 - x) / h) - _Phi((-w / 2 - x) / h)
    peak = sp.simplify(stripe.subs(x, 0))
    w_c = 2 * sp.sqrt(2) * sp.erfinv(sp.Rational(1, 2)) * h
    return Derivation(
        "kernel_geometry",
        "Straight edges are unbiased; disks shrink by h^2/(2R); stripes narrower than ~1.349 h vanish.",
        claims={
            "half_plane_gaussian_edge": Claim(half_gauss.subs(x, 0), sp.Rational(1, 2)),
            "half_plane_gaussian_form": Claim(half_gauss, _Phi(-x / h)),
            "half_plane_box_form": Claim(half_box, (h - x) / (2 * h)),
            "half_plane_box_edge": Claim(half_box.subs(x, 0), sp.Rational(1, 2)),
            "disk_missing_mass": Claim(sliver, h / (2 * sp.sqrt(2 * sp.pi) * R)),
            "disk_shift": Claim(delta, h**2 / (2 * R)),
            "stripe_peak": Claim(peak, sp.erf(w / (2 * sp.sqrt(2) * h))),
            "stripe_critical_width": Claim(peak.subs(w, w_c), sp.Rational(1, 2)),
            "stripe_peak_is_max": Claim(sp.diff(stripe, x).subs(x, 0), 0),
        },
        parts={
            "half_plane_gaussian": half_gauss,
            "half_plane_box": half_box,
            "disk_edge_value": sp.Rational(1, 2) - sliver,
            "disk_shift": delta,
            "stripe_field": stripe,
            "stripe_peak": peak,
            "critical_width": w_c,
        },
    )


# --------------------------------------------------------------------- 6
def finite_sampling(n_pixels: int = 3) -> Derivation:
    r"""Finite sampling: how sparse can labels get?

    With Bernoulli(p) sampling, D*(x) = sum_y w(x,y) y(y) B(y) (normalised weights
    w): E D* = p D and Var D* = p (1-p) S(x), S(x) = sum_y w(x,y)^2 y(y) (the
    D-weighted sum of squared weights; symbolic for ``n_pixels``). Normal
    approximation (many labelled pixels in the window): at t* = p/2 a pixel is
    called foreground with probability

        P_fg(x) = Phi((D(x) - 1/2) sqrt(p / ((1-p) S(x)))).

    For a straight edge and a gaussian kernel (continuous), at signed distance
    d (positive inside): D = Phi(d/h) and S = Phi(sqrt(2) d/h)/(4 pi h^2), so the
    misclassification probability

        P_err(d) = Phi(-|Phi(d/h) - 1/2| * 2 sqrt(pi) * sqrt(c / Phi(sqrt(2) d/h))),
        c = p h^2 / (1 - p),

    depends on h and p only through u = d/h and c: the expected boundary error
    (misclassified pixels per unit edge length) is h * E(c), and sparse labels
    are as good as dense ones once p h^2/(1-p) is large. The same two fields D, S
    on a pixel grid give the predicted Dice for any mask (:func:`theory.curves`).

    Multi-class: for a pixel of class j whose noisy class is j, m, k with
    probabilities (t_j, tau, tau), the margins I_j - I_m and I_j - I_k have
    variance t_j + tau - (t_j - tau)^2 and covariance t_j - (t_j - tau)^2 (per
    labelled pixel; divide by n_eff for a window): they are equicorrelated, which
    :func:`theory.curves.miou_symmetric_flip` integrates.
    """
    p = sp.Symbol("p", positive=True)
    ws = sp.symbols(f"w0:{n_pixels}", positive=True)
    ys = sp.symbols(f"y0:{n_pixels}", nonnegative=True)
    bs = [sps.Bernoulli(f"B{i}", p) for i in range(n_pixels)]
    dstar = sum(w * y * bb for w, y, bb in zip(ws, ys, bs))
    mean = sp.simplify(sps.E(dstar))
    var = sp.simplify(sps.variance(dstar))
    d = sp.Symbol("d", real=True)
    h = sp.Symbol("h", positive=True)
    u = sp.Symbol("u", real=True)
    sq_line = sp.integrate(_phi(u, h) ** 2, (u, -sp.oo, sp.oo))
    sq_half = sp.integrate(_phi(u, h) ** 2, (u, -sp.oo, d))
    S_half = sq_line * sq_half
    D_half = _Phi(d / h)
    c = sp.Symbol("c", positive=True)
    arg = sp.Abs(D_half - sp.Rational(1, 2)) * sp.sqrt(p / ((1 - p) * S_half))
    arg_scaled = sp.Abs(_Phi(u) - sp.Rational(1, 2)) * 2 * sp.sqrt(sp.pi) * sp.sqrt(c / _Phi(sp.sqrt(2) * u))
    p_err, p_err_scaled = _Phi(-arg), _Phi(-arg_scaled)
    # multi-class margins (used by theory.curves.miou_symmetric_flip): one pixel of
    # true class j becomes j, m or k with probabilities (tj, tau, tau) (+ the rest);
    # the margins I_j - I_m and I_j - I_k are equicorrelated
    tj, tau = sp.symbols("t_j tau", positive=True)
    pix = sps.FiniteRV("K", {0: tj, 1: tau, 2: tau, 3: 1 - tj - 2 * tau})
    ind = [sp.Piecewise((1, sp.Eq(pix, i)), (0, True)) for i in range(3)]
    dm, dk = ind[0] - ind[1], ind[0] - ind[2]
    lam = tj - tau
    return Derivation(
        "finite_sampling",
        "Var D* = p(1-p) sum w^2 y; boundary error depends on p and h through p h^2/(1-p).",
        claims={
            "mean": Claim(mean, p * sum(w * y for w, y in zip(ws, ys))),
            "variance": Claim(var, p * (1 - p) * sum(w**2 * y**2 for w, y in zip(ws, ys))),
            "squared_kernel_line": Claim(sq_line, 1 / (2 * sp.sqrt(sp.pi) * h)),
            "squared_kernel_half_plane": Claim(S_half, _Phi(sp.sqrt(2) * d / h) / (4 * sp.pi * h**2)),
            "margin_variance": Claim(sps.variance(dm), tj + tau - lam**2),
            "margin_covariance": Claim(sps.covariance(dm, dk), tj - lam**2),
            # both Phi arguments are >= 0, so equal squares mean equal probabilities
            "scaling": Claim((arg**2).subs(d, h * u), (arg_scaled**2).subs(c, p * h**2 / (1 - p))),
        },
        parts={"mean": mean, "variance": var, "S_half_plane": S_half, "p_err": p_err, "p_err_scaled": p_err_scaled},
    )


# --------------------------------------------------------------------- 7
def pcl_overlap() -> Derivation:
    r"""Theorem 1 quantified: structured label errors cost overlap at the boundary.

    A network trained on dilated / eroded labels learns their meta-structure,
    whose 1/2 level set is the perturbed boundary (straight edges are unbiased,
    :func:`kernel_geometry`), so its prediction agrees with the clean mask as the
    perturbed label does. Continuous cross-sections:

    * stripe of width w, radius r: dilated width w + 2r, Dice = w/(w+r),
      IoU = w/(w+2r); eroded (w > 2r) width w - 2r, Dice = (w-2r)/(w-r),
      IoU = (w-2r)/w. Thin structures lose most: at r = w/2 erosion deletes them.
    * disk of radius R: dilated Dice = 2R^2/(R^2 + (R+r)^2), IoU = R^2/(R+r)^2;
      eroded Dice = 2(R-r)^2/(R^2 + (R-r)^2), IoU = (R-r)^2/R^2.
    * skeleton of a stripe: its T is [[1, 0], [1-s, s]] with s = 1/w (one pixel of
      w per row), the same form as sampling, so t* = 1/(2w). But its density is
      the kernel itself, D_sk(x) = phi_h(x), not s * D(x): the t* level set is
      |x| = h sqrt(2 log(2w / (sqrt(2 pi) h))), a width set by h, not w. The label
      itself has Dice 2/(w+1) against the stripe.
    """
    w, r, R, h = sp.symbols("w r R h", positive=True)
    x = sp.Symbol("x", positive=True)

    def dice(a, b, inter):
        return 2 * inter / (a + b)

    def iou(a, b, inter):
        return inter / (a + b - inter)

    sols = sp.solve(sp.Eq(_phi(x, h), 1 / (2 * w)), x)
    band = h * sp.sqrt(2 * sp.log(2 * w / (sp.sqrt(2 * sp.pi) * h)))
    return Derivation(
        "pcl_overlap",
        "Dice of dilated/eroded stripes and disks; the skeleton's t* band is set by h, not w.",
        claims={
            "stripe_dilate_dice": Claim(dice(w, w + 2 * r, w), w / (w + r)),
            "stripe_dilate_iou": Claim(iou(w, w + 2 * r, w), w / (w + 2 * r)),
            "stripe_erode_dice": Claim(dice(w, w - 2 * r, w - 2 * r), (w - 2 * r) / (w - r)),
            "stripe_erode_iou": Claim(iou(w, w - 2 * r, w - 2 * r), (w - 2 * r) / w),
            "disk_dilate_dice": Claim(dice(R**2, (R + r) ** 2, R**2), 2 * R**2 / (R**2 + (R + r) ** 2)),
            "disk_dilate_iou": Claim(iou(R**2, (R + r) ** 2, R**2), R**2 / (R + r) ** 2),
            "disk_erode_dice": Claim(dice(R**2, (R - r) ** 2, (R - r) ** 2), 2 * (R - r) ** 2 / (R**2 + (R - r) ** 2)),
            "disk_erode_iou": Claim(iou(R**2, (R - r) ** 2, (R - r) ** 2), (R - r) ** 2 / R**2),
            "skeleton_label_dice": Claim(dice(w, 1, 1), 2 / (w + 1)),
            "skeleton_band": Claim(sp.simplify(sols[0] ** 2 - band**2), 0),
        },
        parts={"skeleton_half_width": band},
    )


# --------------------------------------------------------------------- 8
def random_labels() -> Derivation:
    r"""Random labels carry no meta-structure: T = 1 r^T has rank 1 (det 0 for
    M = 2), the joint Q = diag(pi) T = pi r^T factorises, and the mutual
    information I(Y; Y*) = sum Q log(Q / (Q_row Q_col)) is 0 (M = 2, 3).
    """
    claims = {}
    for m in (2, 3):
        pis = list(sp.symbols(f"pi0:{m - 1}", positive=True))
        pis.append(1 - sum(pis))
        rs = list(sp.symbols(f"r0:{m - 1}", positive=True))
        rs.append(1 - sum(rs))
        t = sp.Matrix([rs] * m)
        q = sp.diag(*pis) * t
        row = [sum(q[j, k] for k in range(m)) for j in range(m)]
        col = [sum(q[j, k] for j in range(m)) for k in range(m)]
        mi = sum(q[j, k] * sp.log(q[j, k] / (row[j] * col[k])) for j in range(m) for k in range(m))
        claims[f"mutual_information_M{m}"] = Claim(mi, 0)
        claims[f"rank_M{m}"] = Claim(t.rank(simplify=True), 1)
        claims[f"det_M{m}"] = Claim(t.det(), 0)
    return Derivation("random_labels", "Random labels: rank 1, zero mutual information.", claims)


# --------------------------------------------------------------------- 9
def linearity_and_memorisation(n_pixels: int = 3) -> Derivation:
    r"""Fresh draws are SGD on the soft-label problem; a fixed draw adds a
    zero-mean, memorisable term.

    * BCE(q; y) = -y log q - (1-y) log(1-q) is affine in y, so E_y BCE(q; y) =
      BCE(q; E y); the same for softmax CE (checked for M = 3).
    * For one fixed draw y* with means ybar_i = b + (1-f-b) y_i, the empirical loss
      over n pixels minus the soft-label loss is the gap
      G = -(1/n) sum_i (y*_i - ybar_i) logit(q_i), with E G = 0 and
      Var G = (1/n^2) sum_i ybar_i (1 - ybar_i) logit(q_i)^2. At the soft-label
      optimum q = ybar under p-sampling (ybar = p on the n_fg foreground pixels,
      0 elsewhere): Var G = n_fg p (1-p) logit(p)^2 / n^2.
    * A model that can move k free parameters to fit the draw (*model*: k groups
      of pixels, each with its own Bernoulli output fitted by maximum likelihood)
      lowers its training loss below the soft-label loss by n_g KL(yhat_g || ybar_g)/n
      per group; at second order KL ~= (yhat - ybar)^2 / (2 ybar (1-ybar)) and
      E (yhat - ybar)^2 = ybar(1-ybar)/n_g, so the expected optimism is k/(2n)
      nats per pixel (Wilks). What the draw offers to memorise is its entropy,
      (n_fg/n) H(p) per pixel under sampling; the fraction a model of k effective
      parameters can take, k / (2 n_fg H(p)), falls like 1/n_fg: memorisation
      sets in when the labelled pixels number fewer than about k / (2 H(p)).
      For a network, k is an effective capacity to be measured, not derived.
    """
    q, yb = sp.symbols("q ybar", positive=True)
    y = sps.Bernoulli("Y", yb)
    bce = -y * sp.log(q) - (1 - y) * sp.log(1 - q)
    bce_at_mean = -yb * sp.log(q) - (1 - yb) * sp.log(1 - q)
    q1, q2, a1, a2 = sp.symbols("q1 q2 a1 a2", positive=True)
    cat = sps.FiniteRV("C", {0: a1, 1: a2, 2: 1 - a1 - a2})
    logs = [sp.log(q1), sp.log(q2), sp.log(1 - q1 - q2)]
    ce = -sum(sp.Piecewise((lg, sp.Eq(cat, k)), (0, True)) for k, lg in enumerate(logs))
    ce_at_mean = -(a1 * logs[0] + a2 * logs[1] + (1 - a1 - a2) * logs[2])

    n = n_pixels
    qs = sp.symbols(f"q0:{n}", positive=True)
    ybs = sp.symbols(f"m0:{n}", positive=True)
    ys = [sps.Bernoulli(f"Y{i}", ybs[i]) for i in range(n)]

    def ell(qq, tt):
        return -tt * sp.log(qq) - (1 - tt) * sp.log(1 - qq)

    gap = sum(ell(qq, yy) - ell(qq, mm) for qq, yy, mm in zip(qs, ys, ybs)) / n
    logit = [sp.log(qq) - sp.log(1 - qq) for qq in qs]
    gap_form = -sum((yy - mm) * lg for yy, mm, lg in zip(ys, ybs, logit)) / n
    var_form = sum(mm * (1 - mm) * lg**2 for mm, lg in zip(ybs, logit)) / n**2

    yh, ng = sp.symbols("yhat n_g", positive=True)
    kl = yh * sp.log(yh / yb) + (1 - yh) * sp.log((1 - yh) / (1 - yb))
    kl2 = sp.series(kl, yh, yb, 3).removeO()
    optimism_per_group = sp.simplify(ng * kl2.subs((yh - yb) ** 2, yb * (1 - yb) / ng))
    return Derivation(
        "linearity_and_memorisation",
        "Losses are linear in the target; a fixed draw adds a zero-mean gap of variance sum ybar(1-ybar)logit^2/n^2.",
        claims={
            "bce_linear": Claim(sps.E(bce), bce_at_mean),
            "ce_linear": Claim(sps.E(ce), ce_at_mean),
            "gap_form": Claim(sp.expand(gap - gap_form), 0),
            "gap_mean": Claim(sps.E(gap_form), 0),
            "gap_variance": Claim(sps.variance(gap_form), var_form),
            "kl_second_order": Claim(kl2, (yh - yb) ** 2 / (2 * yb * (1 - yb))),
            "optimism_per_group": Claim(
                ng * ((yh - yb) ** 2 / (2 * yb * (1 - yb))).subs(yh - yb, sp.sqrt(yb * (1 - yb) / ng)),
                sp.Rational(1, 2),
            ),
        },
        parts={"gap": gap_form, "gap_variance": var_form, "kl_second_order": kl2, "optimism": optimism_per_group},
    )
