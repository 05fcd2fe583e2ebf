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
    "ALL",
    "Claim",
    "Derivation",
    "affine_posterior",
    "annotation",
    "flip_matrix",
    "finite_sampling",
    "kernel",
    "kernel_geometry",
    "lemma1",
    "lemma2",
    "linearity_and_memorisation",
    "noisy_given_clean",
    "pcl_overlap",
    "pooling_and_scale",
    "proper_scoring",
    "random_labels",
    "table",
    "theorem2",
    "transition_matrices",
]


class Claim(NamedTuple):
    """An equation ``lhs = rhs`` (scalars or matrices) that the derivation asserts.

    ``lhs`` is built from the model's definitions (the module-level
    ``flip_matrix``, ``noisy_given_clean``, ``kernel``, a categorical pixel,
    a Bernoulli draw) and ``rhs`` is the result, typed independently, so that
    wrong maths or a wrong model fails the claim. ``what`` says in words what it
    derives (the table in theory/README.md, :func:`table`).
    """

    lhs: Any
    rhs: Any
    what: str = ""

    def holds(self) -> bool:
        """True when lhs - rhs simplifies to zero (entrywise for matrices) under the symbols' assumptions."""
        diff = sp.Matrix(self.lhs) - sp.Matrix(self.rhs) if _is_matrix(self.lhs) else self.lhs - self.rhs
        entries = list(diff) if _is_matrix(diff) else [diff]
        return all(_is_zero(e) for e in entries)


@dataclass(frozen=True)
class Derivation:
    """A derived result: ``claims`` are equations that hold identically; ``uses`` names the definitions they start
    from."""

    name: str
    statement: str
    claims: dict[str, Claim] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)
    uses: str = ""

    def check(self) -> dict[str, bool]:
        """Each claim simplified: ``{name: holds}``."""
        return {k: c.holds() for k, c in self.claims.items()}


def _is_matrix(x: Any) -> bool:
    return isinstance(x, sp.MatrixBase)


def _is_zero(expr: Any) -> bool:
    """True when ``expr`` simplifies to 0 under the assumptions declared on its symbols, and nothing else.

    No forced rewriting: ``logcombine(force=True)`` / ``expand_log(force=True)``
    ignore assumptions and accept false identities such as log(x^2) = 2 log(x)
    for real x. A claim that needs positivity declares it on its symbols.
    """
    e = sp.simplify(sp.expand(sp.sympify(expr).rewrite(sp.erf)))
    if e == 0:
        return True
    return sp.simplify(sp.expand_log(e)) == 0


# ------------------------------------------------------------ the model's definitions
# Every derivation starts from these (public: they are the model); the tests' negative controls replace them by
# wrong models (T for T^T, an unnormalised kernel, a wrong noise rate) and require some claim to fail.
def flip_matrix(f: Any, b: Any) -> sp.Matrix:
    """Binary class-conditional noise: rows true background, foreground; f = P(fg -> bg), b = P(bg -> fg)."""
    return sp.Matrix([[1 - b, b], [f, 1 - f]])


def noisy_given_clean(t: sp.Matrix, j: int, m: int) -> Any:
    """P(y* = m | y = j) under class-conditional noise with transition matrix T (rows: true class)."""
    return t[j, m]


def kernel(u: Any, h: Any) -> Any:
    """The smoothing kernel along one axis: the normal density of sd h (integrates to 1)."""
    return _phi(u, h)


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


def _simplex(name: str, m: int) -> list:
    """A general point of the probability simplex in M dimensions (the last coordinate 1 - the others)."""
    free = list(sp.symbols(f"{name}0:{m - 1}", nonnegative=True))
    return free + [1 - sum(free)]


def _noisy_class_probabilities(clean: list, t: sp.Matrix) -> list:
    """P(y* = m) for m = 0..M-1 of one pixel whose clean class is categorical(``clean``), noised by T.

    The pair (y, y*) is one finite random variable of ``sympy.stats`` with
    P(y = j, y* = m) = clean_j * P(y* = m | y = j); the marginals are its
    probabilities, not a formula typed here.
    """
    m = t.shape[0]
    pair = sps.FiniteRV("Y", {j * m + k: clean[j] * noisy_given_clean(t, j, k) for j in range(m) for k in range(m)})
    return [sp.simplify(sps.P(sp.Or(*[sp.Eq(pair, j * m + k) for j in range(m)]))) for k in range(m)]


def _interval(x: Any, half: Any) -> Any:
    """The indicator of :math:`|x| <` ``half`` (a stripe's cross-section)."""
    return sp.Piecewise((1, (x > -half) & (x < half)), (0, True))


def _overlap(a: Any, b: Any) -> Any:
    """Length of the intersection of the centred intervals of widths a and b, by integration."""
    x = sp.Symbol("x", real=True)
    return sp.integrate(_interval(x, a / 2) * _interval(x, b / 2), (x, -sp.oo, sp.oo))


def _dice(a: Any, b: Any, inter: Any) -> Any:
    return 2 * inter / (a + b)


def _iou(a: Any, b: Any, inter: Any) -> Any:
    return inter / (a + b - inter)


# --------------------------------------------------------------------- 1
def proper_scoring() -> Derivation:
    r"""Cross-entropy is a proper scoring rule: its expected value is minimised at
    the true class probabilities. Binary: argmin_q E[-y log q - (1-y) log(1-q)] = E[y]
    (second derivative 1/(pi(1-pi)) > 0). Softmax CE over M = 3 classes: q* = pi.
    With class-conditional noise T: a pixel's clean class is categorical(p(x))
    and its noisy class follows T; the expected noisy cross-entropy, built from
    that pair of random variables and minimised over the simplex, has its
    minimiser at q*(x) = T^T p(x). *Assumes* (step 1 of the outline) that the
    network reaches the population minimiser: enough capacity and data, and
    optimisation to convergence.
    """
    q, pi = sp.symbols("q pi", positive=True)
    loss = -(pi * sp.log(q) + (1 - pi) * sp.log(1 - q))
    (sol,) = sp.solve(sp.diff(loss, q), q)
    curv = sp.simplify(sp.diff(loss, q, 2).subs(q, pi))

    q1, q2, p1, p2 = sp.symbols("q1 q2 pi1 pi2", positive=True)
    ce = -(p1 * sp.log(q1) + p2 * sp.log(q2) + (1 - p1 - p2) * sp.log(1 - q1 - q2))
    msol = sp.solve([sp.diff(ce, q1), sp.diff(ce, q2)], [q1, q2], dict=True)[0]

    t = _stochastic(3)
    pc = _simplex("p", 3)
    a = _noisy_class_probabilities(pc, t)  # P(y* = m | x)
    qa, qb = sp.symbols("qa qb", positive=True)
    qs = [qa, qb, 1 - qa - qb]
    noisy_ce = -sum(a[m] * sp.log(qs[m]) for m in range(3))  # E over y* of -log q_{y*}
    stationary = sp.solve([sp.diff(noisy_ce, qa), sp.diff(noisy_ce, qb)], [qa, qb], dict=True)[0]
    minimiser = sp.Matrix([stationary[qa], stationary[qb], 1 - stationary[qa] - stationary[qb]])
    return Derivation(
        "proper_scoring",
        "The expected cross-entropy is minimised at the target's mean; with noise T, at T^T p(x).",
        claims={
            "binary_minimiser": Claim(sol, pi, "stationary point of the expected binary cross-entropy is E[y]"),
            "binary_curvature": Claim(curv, 1 / (pi * (1 - pi)), "its second derivative there is positive"),
            "softmax_minimiser_1": Claim(msol[q1], p1, "softmax CE (M = 3): stationary point q1 = pi1"),
            "softmax_minimiser_2": Claim(msol[q2], p2, "... and q2 = pi2"),
            "noisy_minimiser": Claim(minimiser, t.T * sp.Matrix(pc),
                                     "minimiser of the expected CE against the noisy class is T^T p"),
        },
        parts={"loss": loss, "softmax_loss": ce, "T": t, "noisy_minimiser": minimiser},
        uses="cross-entropy; a categorical clean class and noisy_given_clean (sympy.stats)",
    )


# --------------------------------------------------------------------- 2
def affine_posterior() -> Derivation:
    r"""Binary class-conditional noise maps the posterior affinely:
    E[y* | x] = b + (1 - f - b) P(fg | x), computed as P(y* = 1) of a pixel whose
    clean label is Bernoulli(P) noised by T = [[1-b, b], [f, 1-f]]. The clean
    boundary P = 1/2 is the level set E[y*|x] = t* = (1 + b - f)/2, and the
    identity that carries the inversion is E[y*|x] - t* = (1 - f - b)(P - 1/2):
    the output is above t* exactly where P > 1/2 when f + b < 1, exactly where
    P < 1/2 when f + b > 1 (read inverted), and equals t* everywhere at
    f + b = 1 (no information). *Assumes* class-conditional noise that does not
    depend on position (the same T at every pixel).
    """
    P, f, b = sp.symbols("P f b", nonnegative=True)
    noisy = _noisy_class_probabilities([1 - P, P], flip_matrix(f, b))
    mean = noisy[1]
    t_star = mean.subs(P, sp.Rational(1, 2))
    slope = sp.diff(mean, P)
    (p_at_t,) = sp.solve(sp.Eq(mean, (1 + b - f) / 2), P)
    p = sp.Symbol("p", nonnegative=True)
    return Derivation(
        "affine_posterior",
        "E[y*|x] = b + (1-f-b) P; the clean boundary is its level set at t* = (1+b-f)/2.",
        claims={
            "affine": Claim(mean, b + (1 - f - b) * P, "E[y*|x] = b + (1-f-b) P (Lemma 1's binary form)"),
            "t_star": Claim(t_star, (1 + b - f) / 2, "the output at the clean boundary P = 1/2"),
            "level_set_is_boundary": Claim(p_at_t, sp.Rational(1, 2),
                                           "the t* level set is P = 1/2 (f + b != 1: solve divides by 1 - f - b; "
                                           "the degenerate case is no_information_at_f_plus_b_1)"),
            "inversion_identity": Claim(mean - t_star, (1 - f - b) * (P - sp.Rational(1, 2)),
                                        "E[y*|x] - t* = (1-f-b)(P - 1/2): the sign of 1-f-b orients the output"),
            "slope": Claim(slope, 1 - f - b, "the slope in P"),
            "no_information_at_f_plus_b_1": Claim(sp.diff(mean.subs(b, 1 - f), P), 0,
                                                  "at f + b = 1 the output does not depend on P"),
            "sampling_t_star": Claim(t_star.subs({f: 1 - p, b: 0}), p / 2, "sampling with ratio p: t* = p/2"),
        },
        parts={"mean": mean, "t_star": t_star, "slope": slope},
        uses="flip_matrix, noisy_given_clean, a Bernoulli(P) clean label",
    )


# --------------------------------------------------------------------- 3
def transition_matrices() -> Derivation:
    r"""Determinants of the binary label types (sample p, flip 1-f-b, random 0,
    skeleton s, dilation 1-beta, erosion 1-epsilon, beta/epsilon being the fractions
    of bg/fg pixels the morphology changes), and the symmetric M-class flip with
    entries T_jj = 1 - e, T_jk = e/(M-1).

    For **symbolic M**, from those entries alone: each row sums to
    (1 - e) + (M - 1) e/(M-1) = 1, so the all-ones vector has eigenvalue 1; for
    each k != 1, T (e_1 - e_k) has entry T_11 - T_1k on row 1, T_k1 - T_kk on
    row k and T_i1 - T_ik = 0 elsewhere, so e_1 - e_k (M - 1 independent
    vectors) has eigenvalue lambda = 1 - eM/(M-1); hence det T =
    lambda^(M-1) (the product of the eigenvalues, stated, not a separate
    claim), singular only at e = (M-1)/M. For M = 2..5 the same from sympy's eigenvalues
    of the explicit matrices, and the noisy minimiser T^T p = lambda p + e/(M-1) 1
    (argmax preserved while lambda > 0).

    Dilation and erosion are counted here as class-conditional, but they are
    count summaries of spatial perturbations: dilation's T has full rank
    (det 1 - beta) and yet the clean boundary cannot be recovered from it, the
    counterexample to reading Theorem 2 naively (it assumes noise independent of
    position) and the reason PCL needs Theorem 1 (:func:`pcl_overlap`).
    """
    p, f, b, r, s, beta, eps = sp.symbols("p f b r s beta epsilon", nonnegative=True)
    e = sp.Symbol("e", nonnegative=True)
    mats = {
        "sample": (flip_matrix(1 - p, 0), p),
        "flip": (flip_matrix(f, b), 1 - f - b),
        "random": (flip_matrix(1 - r, r), 0),
        "skeleton": (flip_matrix(1 - s, 0), s),
        "dilation": (flip_matrix(0, beta), 1 - beta),
        "erosion": (flip_matrix(eps, 0), 1 - eps),
    }
    claims = {f"det_{k}": Claim(m.det(), d, f"det T of {k} labels") for k, (m, d) in mats.items()}
    M = sp.Symbol("M", integer=True, positive=True)
    diag, off = 1 - e, e / (M - 1)  # the definition's entries, for any M >= 2
    row_sum = diag + (M - 1) * off
    lam = diag - off  # row 1 of T (e_1 - e_k); row k gives off - diag = -lam; other rows off - off = 0
    claims["ones_eigenvalue"] = Claim(row_sum, 1, "symbolic M: rows sum to 1, so T 1 = 1")
    claims["complement_eigenvalue"] = Claim(lam, 1 - e * M / (M - 1),
                                            "symbolic M: T (e_1 - e_k) = (1 - eM/(M-1)) (e_1 - e_k)")
    (e_sing,) = sp.solve(sp.Eq(lam, 0), e)
    claims["singular_at"] = Claim(e_sing, (M - 1) / M, "symbolic M: singular only at e = (M-1)/M")
    for m in range(2, 6):
        t = (1 - e) * sp.eye(m) + e / (m - 1) * (sp.ones(m, m) - sp.eye(m))
        ev = t.eigenvals()
        lam_m = sp.simplify(1 - e * m / (m - 1))
        claims[f"eigenvalues_M{m}"] = Claim(
            sp.Matrix(sorted([sp.simplify(k) for k in ev], key=sp.default_sort_key)),
            sp.Matrix(sorted({sp.Integer(1), lam_m}, key=sp.default_sort_key)),
            f"M = {m}: sympy's eigenvalues of the explicit matrix are 1 and 1 - eM/(M-1)",
        )
        claims[f"multiplicity_M{m}"] = Claim(ev.get(lam_m, 0) if lam_m != 1 else ev[1], m - 1,
                                             f"M = {m}: 1 - eM/(M-1) has multiplicity M - 1")
        claims[f"det_M{m}"] = Claim(t.det(), lam_m ** (m - 1), f"M = {m}: det T")
        pv = sp.Matrix(_simplex("p", m))
        claims[f"argmax_affine_M{m}"] = Claim(t.T * pv, lam_m * pv + e / (m - 1) * sp.ones(m, 1),
                                              f"M = {m}: T^T p = lambda p + e/(M-1) 1 (argmax kept for lambda > 0)")
    return Derivation(
        "transition_matrices",
        "det T of each label type; symmetric flip: eigenvalues 1 and 1 - eM/(M-1), singular at e = (M-1)/M.",
        claims=claims,
        parts={**{k: m for k, (m, _) in mats.items()}, "eigenvalue": lam, "singular_at": e_sing},
        uses="flip_matrix; the symmetric flip's entries 1 - e and e/(M-1)",
    )


# --------------------------------------------------------------------- 4
def lemma1(m: int = 3, n_pixels: int = 3) -> Derivation:
    r"""Lemma 1: class-conditional noise acts affinely on fraction fields,
    E[D*_k(x)] = sum_j T[j, k] D_j(x). Each pixel i of a window (weights w_i)
    has a clean class that is categorical(z_i) (a one-hot z_i for a hard label)
    and a noisy class that follows T independently of the other pixels; the
    noisy class probabilities of each pixel come from that pair of random
    variables (``sympy.stats``), and the field is their weighted mean. The
    binary form b + (1 - f - b) D is :func:`affine_posterior`'s ``affine``.
    Symbolic for a general M x M T (default M = 3) and a window of ``n_pixels``
    pixels. *Assumes* the same T at every pixel (noise independent of
    position): dilation, erosion and skeletons violate it.
    """
    t = _stochastic(m)
    w = sp.symbols(f"w0:{n_pixels}", positive=True)
    z = [_simplex(f"z{i}_", m) for i in range(n_pixels)]
    total = sum(w)
    clean = sp.Matrix([sum(w[i] * z[i][j] for i in range(n_pixels)) / total for j in range(m)])
    per_pixel = [_noisy_class_probabilities(z[i], t) for i in range(n_pixels)]
    expected_noisy = sp.Matrix([sum(w[i] * per_pixel[i][k] for i in range(n_pixels)) / total for k in range(m)])
    claims = {f"class_{k}": Claim(expected_noisy[k], (t.T * clean)[k], f"E[D*_{k}] = (T^T D)_{k}")
              for k in range(m)}
    claims["fields_sum_to_one"] = Claim(sum(expected_noisy), 1, "the expected noisy fields sum to 1")
    return Derivation(
        "lemma1",
        "E[D*] = T^T D: the expected noisy fraction fields are the clean ones mapped by T^T.",
        claims=claims,
        parts={"T": t, "clean": clean, "expected_noisy": expected_noisy},
        uses="fraction field as a weighted mean; a categorical pixel and noisy_given_clean (sympy.stats)",
    )


def lemma2() -> Derivation:
    r"""Lemma 2, in the mixture sense: T cannot tell apart classes whose noisy
    signatures are mixtures of others.

    A pixel of clean composition F (a point of the simplex) has expected noisy
    composition T^T F, so the noisy signatures of all compositions form the
    image of the simplex under T^T. For a row-stochastic T, T^T maps the
    zero-sum hyperplane H = {v : 1^T v = 0} into itself (1^T T^T v = 1^T v) and
    sends e_1 off it (1^T T^T e_1 = 1), so T^T(H) has dimension rank(T) - 1:
    the noisy signatures span an affine set of dimension rank(T) - 1 (symbolic,
    general 3 x 3 T). When rank(T) < M some class's signature is an affine
    combination of the others, and the noisy labels cannot separate it from that
    mixture. That does not make the pure-class signatures equal: rows (.8, .1,
    .1), (.1, .8, .1), (.45, .45, .1) have rank 2 and three distinct signatures,
    the third the mean of the first two. Random labels (equal rows, rank 1):
    T^T F is the same for every F.
    """
    t = _stochastic(3)
    v = sp.Matrix(sp.symbols("v0:3", real=True))
    ones = sp.ones(3, 1)
    e1 = sp.Matrix([1, 0, 0])
    claims = {
        "hyperplane_preserved": Claim((ones.T * t.T * v)[0], (ones.T * v)[0],
                                      "1^T T^T v = 1^T v: T^T maps the zero-sum hyperplane into itself"),
        "image_leaves_hyperplane": Claim((ones.T * t.T * e1)[0], 1,
                                         "1^T T^T e_1 = 1: so dim T^T(H) = rank(T) - 1"),
    }
    rs = _simplex("r", 3)
    rl = sp.Matrix([rs, rs, rs])
    fa, fb = sp.Matrix(_simplex("a", 3)), sp.Matrix(_simplex("c", 3))
    claims["random_labels_same_signature"] = Claim(rl.T * fa, rl.T * fb,
                                                   "random labels: every composition has the same signature")
    claims["random_labels_rank"] = Claim(rl.rank(simplify=True), 1, "random labels: rank T = 1")
    mixed = sp.Matrix([[sp.Rational(8, 10), sp.Rational(1, 10), sp.Rational(1, 10)],
                       [sp.Rational(1, 10), sp.Rational(8, 10), sp.Rational(1, 10)],
                       [sp.Rational(45, 100), sp.Rational(45, 100), sp.Rational(1, 10)]])
    claims["mixture_rank"] = Claim(mixed.rank(), 2, "the mixture example has rank 2 ...")
    claims["mixture_signature"] = Claim(mixed.T * sp.Matrix([0, 0, 1]),
                                        (mixed.T * sp.Matrix([1, 0, 0]) + mixed.T * sp.Matrix([0, 1, 0])) / 2,
                                        "... because class 3's signature is the mean of classes 1 and 2's")
    return Derivation(
        "lemma2", "The noisy labels distinguish classes up to mixtures: signatures span rank(T) - 1 dimensions.",
        claims, {"random": rl, "mixture": mixed}, uses="a row-stochastic T (rows on the hyperplane sum = 1)",
    )


def theorem2() -> Derivation:
    r"""Theorem 2: with class-conditional noise independent of position and
    det T != 0, the clean fields are recoverable from the expected noisy ones,
    F = (T^T)^{-1} E[F*], and so is the partition (the argmax of F).

    Without dividing by anything: adj(T^T) (T^T F) = det(T) F for every T
    (general 2 x 2 and 3 x 3), which recovers F exactly when det T != 0 (the
    hypothesis, used here as a hypothesis) and says nothing when det T = 0: then
    distinct F share one noisy signature (:func:`lemma2`'s
    ``random_labels_same_signature``). Binary: (1 - f - b) D = E[D*] - b, with
    det T = 1 - f - b (:func:`transition_matrices`' ``det_flip``). Estimation
    error is amplified by (T^T)^{-1}: an error eps in E[D*] becomes
    eps / (1 - f - b) in D, and for the symmetric M-class flip an error along
    e_1 - e_2 becomes that error / (1 - eM/(M-1)).

    Sparse labels stored with a void class (:class:`metastructure.noise.SampleVoid`,
    T = [p I | (1-p) 1], M x (M+1)) have no inverse, but T^T has full column
    rank for p > 0: the least-squares inverse (T^T)^+ = (T T^T)^{-1} T recovers F
    (M = 3, p symbolic), and applied to any output q it is q's first M entries
    over p plus a number common to them, so its argmax is the argmax over the M
    real classes (what :func:`metastructure.metrics.evaluate` scores).
    """
    claims = {}
    parts = {}
    for m in (2, 3):
        t = _stochastic(m)
        F = sp.Matrix(_simplex("F", m))
        noisy = sp.Matrix(m, 1, lambda k, _, t=t, F=F, m=m: sum(F[j] * noisy_given_clean(t, j, k) for j in range(m)))
        claims[f"recover_M{m}"] = Claim(t.T.adjugate() * noisy, t.det() * F,
                                        f"M = {m}: adj(T^T) E[F*] = det(T) F, for every T")
        parts[f"adjugate_M{m}"] = t.T.adjugate()
    f, b, d, eps = sp.symbols("f b D epsilon", real=True)
    noisy_d = _noisy_class_probabilities([1 - d, d], flip_matrix(f, b))[1]
    claims["binary_recover"] = Claim((1 - f - b) * d, noisy_d - b, "binary: (1 - f - b) D = E[D*] - b")
    (d_hat,) = sp.solve(sp.Eq(noisy_d.subs(d, sp.Symbol("Dhat")), noisy_d + eps), sp.Symbol("Dhat"))
    claims["binary_amplification"] = Claim(d_hat - d, eps / (1 - f - b),
                                           "an error eps in E[D*] is eps / (1 - f - b) in D (f + b != 1; at f + b = 1 "
                                           "affine_posterior's no_information_at_f_plus_b_1)")
    e = sp.Symbol("e", nonnegative=True)
    t3 = (1 - e) * sp.eye(3) + e / 2 * (sp.ones(3, 3) - sp.eye(3))
    x = sp.Matrix(sp.symbols("x0:3"))
    sol = sp.solve(list(t3.T * x - sp.Matrix([1, -1, 0])), list(x), dict=True)[0]
    claims["symmetric_amplification"] = Claim(x.subs(sol), sp.Matrix([1, -1, 0]) / (1 - 3 * e / 2),
                                              "M = 3 symmetric flip: (T^T)^-1 (e_1 - e_2) = (e_1 - e_2) / lambda "
                                              "(e != 2/3; singular there, transition_matrices' singular_at)")
    # void (noise.SampleVoid): T = [p I | (1-p) 1] is M x (M+1), no inverse; T^T has full column rank for p > 0,
    # so the least-squares inverse (T^T)^+ = (T T^T)^-1 T recovers F, and on any output q it is q's first M
    # entries over p plus one common number: the argmax over the M real classes
    p = sp.Symbol("p", positive=True)
    tv = sp.Matrix.hstack(p * sp.eye(3), (1 - p) * sp.ones(3, 1))
    pinv = (tv * tv.T).inv() * tv
    fv = sp.Matrix(_simplex("F", 3))
    # the noise model on M + 1 classes, void kept void (a square T, so that the model's definition applies)
    tsq = sp.Matrix.vstack(tv, sp.Matrix([[0, 0, 0, 1]]))
    noisy_v = sp.Matrix(4, 1, lambda k, _: sum(fv[j] * noisy_given_clean(tsq, j, k) for j in range(3)))
    claims["void_recover"] = Claim(pinv * noisy_v, fv,
                                   "void, M = 3 (T = [p I | (1-p) 1], 3 x 4): (T^T)^+ E[F*] = F, "
                                   "(T^T)^+ = (T T^T)^-1 T the least-squares inverse")
    q = sp.Matrix(sp.symbols("q0:4"))
    shifted = pinv * q - q[:3, :] / p
    claims["void_argmax_real_classes"] = Claim(sp.Matrix([shifted[1] - shifted[0], shifted[2] - shifted[0]]),
                                               sp.zeros(2, 1),
                                               "void: (T^T)^+ q = q[:M] / p + a common number, for any output q: "
                                               "its argmax is the argmax over the M real classes")
    parts["void_pinv_M3"] = pinv
    return Derivation("theorem2", "det T != 0: F = (T^T)^-1 E[F*], errors amplified by (T^T)^-1; void: the "
                      "least-squares inverse.", claims, parts,
                      uses="noisy_given_clean; the adjugate identity; flip_matrix; the Moore-Penrose inverse")


# --------------------------------------------------------------------- 5
def kernel_geometry() -> Derivation:
    r"""Where the 1/2 level set of a clean fraction field sits (continuous kernels).

    * Half-plane {u < 0}: gaussian D(x) = Phi(-x/h), box D(x) = (h - x)/(2h) on
      :math:`|x| \le h`; both equal 1/2 on the edge: no bias for straight edges.
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
    half_gauss = sp.integrate(kernel(u, h), (u, -sp.oo, -x))
    half_box = sp.integrate(1 / (2 * h), (u, -h, -x))  # window [x-h, x+h] meets u<0 on [x-h, 0]
    sliver = sp.integrate(kernel(v, h) * kernel(0, h) * v**2 / (2 * R), (v, -sp.oo, sp.oo))
    slope = kernel(0, h)
    delta = sp.simplify(sliver / slope)
    stripe = _stripe_field(x, w, h)
    peak = sp.simplify(stripe.subs(x, 0))
    w_c = 2 * sp.sqrt(2) * sp.erfinv(sp.Rational(1, 2)) * h
    return Derivation(
        "kernel_geometry",
        "Straight edges are unbiased; disks shrink by h^2/(2R); stripes narrower than ~1.349 h vanish.",
        claims={
            "half_plane_gaussian_edge": Claim(half_gauss.subs(x, 0), sp.Rational(1, 2),
                                              "gaussian field of a half-plane is 1/2 on its edge"),
            "half_plane_gaussian_form": Claim(half_gauss, _Phi(-x / h), "... and Phi(-x/h) across it"),
            "half_plane_box_form": Claim(half_box, (h - x) / (2 * h), "box field of a half-plane: (h - x)/(2h)"),
            "half_plane_box_edge": Claim(half_box.subs(x, 0), sp.Rational(1, 2), "... 1/2 on the edge"),
            "disk_missing_mass": Claim(sliver, h / (2 * sp.sqrt(2 * sp.pi) * R),
                                       "disk: kernel mass of the boundary sliver (leading order)"),
            "disk_shift": Claim(delta, h**2 / (2 * R), "disk: the 1/2 level set moves in by h^2/(2R)"),
            "stripe_peak": Claim(peak, sp.erf(w / (2 * sp.sqrt(2) * h)), "stripe: the field's peak"),
            "stripe_critical_width": Claim(peak.subs(w, w_c), sp.Rational(1, 2),
                                           "stripe: the peak is 1/2 at w_c = 2 sqrt 2 erfinv(1/2) h"),
            "stripe_peak_is_max": Claim(sp.diff(stripe, x).subs(x, 0), 0, "stripe: the peak is at the centre"),
            "stripe_peak_increasing": Claim(sp.diff(peak, w), sp.exp(-w**2 / (8 * h**2)) / (sp.sqrt(2 * sp.pi) * h),
                                            "stripe: the peak grows with w, so the stripe vanishes iff w < w_c"),
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
        uses="kernel (a normalised gaussian; box for the half-plane)",
    )


def _stripe_field(x: Any, width: Any, h: Any) -> Any:
    """The fraction field of a stripe |u| < width/2: the kernel's mass over it, by integration of ``kernel``."""
    u = sp.Symbol("u", real=True)
    return sp.integrate(kernel(u - x, h), (u, -width / 2, width / 2))


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

    .. math::

        P_{err}(d) = \Phi\left(-\left|\Phi(d/h) - \tfrac12\right| \cdot 2\sqrt{\pi}\,
        \sqrt{c / \Phi(\sqrt2\, d/h)}\right), \quad c = p h^2 / (1 - p),

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
    dstar = sum(w * y * bb for w, y, bb in zip(ws, ys, bs, strict=True))
    mean = sp.simplify(sps.E(dstar))
    var = sp.simplify(sps.variance(dstar))
    d = sp.Symbol("d", real=True)
    h = sp.Symbol("h", positive=True)
    u = sp.Symbol("u", real=True)
    sq_line = sp.integrate(kernel(u, h) ** 2, (u, -sp.oo, sp.oo))
    sq_half = sp.integrate(kernel(u, h) ** 2, (u, -sp.oo, d))
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
            "mean": Claim(mean, p * sum(w * y for w, y in zip(ws, ys, strict=True)),
                          "E D* = p D of a Bernoulli(p)-sampled field"),
            "variance": Claim(var, p * (1 - p) * sum(w**2 * y**2 for w, y in zip(ws, ys, strict=True)),
                              "Var D* = p(1-p) sum w^2 y^2 (= sum w^2 y for a 0/1 mask y)"),
            "squared_kernel_line": Claim(sq_line, 1 / (2 * sp.sqrt(sp.pi) * h), "integral of phi_h^2 on a line"),
            "squared_kernel_half_plane": Claim(S_half, _Phi(sp.sqrt(2) * d / h) / (4 * sp.pi * h**2),
                                               "S(d) of a straight edge"),
            "margin_variance": Claim(sps.variance(dm), tj + tau - lam**2, "multi-class margin variance per pixel"),
            "margin_covariance": Claim(sps.covariance(dm, dk), tj - lam**2, "... and the margins' covariance"),
            # both Phi arguments are >= 0, so equal squares mean equal probabilities
            "scaling": Claim((arg**2).subs(d, h * u), (arg_scaled**2).subs(c, p * h**2 / (1 - p)),
                             "P_err depends on p and h only through u = d/h and c = p h^2/(1-p)"),
        },
        parts={"mean": mean, "variance": var, "S_half_plane": S_half, "p_err": p_err, "p_err_scaled": p_err_scaled},
        uses="Bernoulli(p) sampling of each pixel (sympy.stats); kernel; a categorical noisy pixel",
    )


# --------------------------------------------------------------------- 7
def pcl_overlap() -> Derivation:
    r"""Theorem 1 quantified: structured label errors cost overlap at the boundary.

    A network trained on dilated / eroded labels learns *their* meta-structure,
    the fraction field of the perturbed mask; its prediction is that field's
    1/2 level set. Built from :func:`kernel_geometry`'s fields:

    * stripe: the perturbed stripe of width w' has a field whose value at its
      edge is 1/2 - Phi(-w'/h), so the level set is the perturbed edge up to an
      offset exponentially small in w'/h (exact value here); the predicted width
      is w', and the overlap with the clean stripe (an integral of indicators)
      gives dilation (w' = w + 2r) Dice w/(w+r), IoU w/(w+2r), erosion
      (w' = w - 2r) Dice (w-2r)/(w-r), IoU (w-2r)/w. When w' < w_c = 1.349 h the
      field never reaches 1/2 (its peak grows with w' and is 1/2 at w_c,
      ``kernel_geometry``'s ``stripe_peak_increasing`` and
      ``stripe_critical_width``): the prediction is empty and the Dice 0, as an
      eroded thin tubule vanishes from the fields.
    * disk of radius R' (R + r dilated, R - r eroded): the level set is the disk
      of radius R' - delta(R') with ``kernel_geometry``'s ``disk_shift``
      delta = h^2/(2R) (leading order in h/R); areas by integration in polar
      coordinates. The claims are the limit h/R -> 0 (where the kernel drops
      out): Dice 2R^2/(R^2 + (R+r)^2) (dilation) and 2(R-r)^2/(R^2 + (R-r)^2)
      (erosion). At finite h both the clean and the perturbed predictions shrink
      by that bias, which the numeric tests measure on the grid.
    * skeleton of a stripe: its T is [[1, 0], [1-s, s]] with s = 1/w (one pixel of
      w per row), the same form as sampling, so t* = 1/(2w). But its density is
      the kernel itself, D_sk(x) = phi_h(x), not s * D(x): the t* level set is
      :math:`|x| = h \sqrt{2 \log(2w / (\sqrt{2\pi}\, h))}`, a width set by h, not w. The label
      (a centre line of width 1) has Dice 2/(w+1) against the stripe.
    * a trained network's own boundary error: if the clean network's boundary
      sits a random normal distance e ~ N(0, s^2) from the truth, its overlap
      error is proportional to E|e|, and the network trained on labels shifted
      by mu (dilation, erosion) has error E|mu + e| =
      s sqrt(2/pi) exp(-mu^2/(2 s^2)) + mu (1 - 2 Phi(-mu/s)), which tends to
      mu when s << mu and to E|e| = s sqrt(2/pi) when mu -> 0: the two errors
      overlap instead of adding (``theory.curves.pcl_dice``).
    """
    w, r, R, h, q = sp.symbols("w r R h q", positive=True)  # q: an eroded width or radius (w - 2r, R - r > 0)
    g = sp.Symbol("g", nonnegative=True)
    x = sp.Symbol("x", positive=True)
    wp = sp.Symbol("w'", positive=True)
    edge_offset = sp.simplify(_stripe_field(wp / 2, wp, h) - sp.Rational(1, 2))

    def stripe(clean, predicted):
        inter = _overlap(clean, predicted)
        return _dice(clean, predicted, inter), _iou(clean, predicted, inter)

    dil, ero = stripe(w, w + 2 * r), stripe(q + 2 * r, q)
    rho = sp.Symbol("rho", positive=True)

    def disk_area(a, b):  # area of the intersection of centred disks of radii a and b
        ind = sp.Piecewise((1, rho < a), (0, True)) * sp.Piecewise((1, rho < b), (0, True))
        return sp.integrate(2 * sp.pi * rho * ind, (rho, 0, sp.oo))

    shift = kernel_geometry().parts["disk_shift"]  # h^2 / (2 R), derived from the kernel
    h_kg, r_kg = sp.Symbol("h", positive=True), sp.Symbol("R", positive=True)

    def disk(clean, perturbed):
        pred = perturbed - shift.subs({r_kg: perturbed, h_kg: h})  # the perturbed field's 1/2 level set
        inter = disk_area(clean, pred)
        a, b = sp.pi * clean**2, sp.pi * pred**2
        return (sp.simplify(_dice(a, b, inter).subs(h, 0)), sp.simplify(_iou(a, b, inter).subs(h, 0)))

    ddil, dero = disk(R, R + r), disk(q + r, q)
    sols = sp.solve(sp.Eq(kernel(x, h), 1 / (2 * w)), x)
    band = h * sp.sqrt(2 * sp.log(2 * w / (sp.sqrt(2 * sp.pi) * h)))
    mu, sd = sp.symbols("mu s", positive=True)
    z = sp.Symbol("z", real=True)
    jitter = sp.integrate(sp.Abs(mu + sd * z) * kernel(z, 1), (z, -sp.oo, sp.oo))  # E|mu + s Z|, Z ~ N(0, 1)
    return Derivation(
        "pcl_overlap",
        "PCL predictions are the perturbed fields' level sets: Dice of dilated/eroded stripes and disks; "
        "thin eroded stripes vanish; the skeleton's t* band is set by h, not w.",
        claims={
            "stripe_level_set_at_the_perturbed_edge": Claim(
                edge_offset, -_Phi(-wp / h), "the perturbed field at the perturbed edge: 1/2 - Phi(-w'/h)"),
            "stripe_dilate_dice": Claim(dil[0], w / (w + r), "dilated stripe: Dice from the overlap integral"),
            "stripe_dilate_iou": Claim(dil[1], w / (w + 2 * r), "... IoU"),
            "stripe_erode_dice": Claim(ero[0], q / (q + r), "eroded stripe (w' = w - 2r > w_c): Dice (w-2r)/(w-r)"),
            "stripe_erode_iou": Claim(ero[1], q / (q + 2 * r), "... IoU (w-2r)/w"),
            "disk_dilate_dice": Claim(ddil[0], 2 * R**2 / (R**2 + (R + r) ** 2),
                                      "dilated disk: Dice of the level set, in the limit h/R -> 0"),
            "disk_dilate_iou": Claim(ddil[1], R**2 / (R + r) ** 2, "... IoU"),
            "disk_erode_dice": Claim(dero[0], 2 * q**2 / ((q + r) ** 2 + q**2),
                                     "eroded disk (R - r > 0): Dice, h/R -> 0"),
            "disk_erode_iou": Claim(dero[1], q**2 / (q + r) ** 2, "... IoU"),
            "skeleton_label_dice": Claim(stripe(1 + g, 1)[0], 2 / ((1 + g) + 1),
                                         "a skeleton (width-1 centre line) against its stripe of width w = 1 + g"),
            "skeleton_band": Claim(
                sp.simplify(sols[0] ** 2 - band**2), 0,
                "the skeleton field's t* = 1/(2w) level set: |x| = h sqrt(2 log(2w/(sqrt(2 pi) h)))"),
            "jittered_shift": Claim(jitter, sd * sp.sqrt(2 / sp.pi) * sp.exp(-mu**2 / (2 * sd**2))
                                    + mu * (1 - 2 * _Phi(-mu / sd)),
                                    "a boundary shifted by mu with N(0, s^2) jitter: E|mu + e| (folded normal mean)"),
        },
        parts={"skeleton_half_width": band, "edge_offset": edge_offset},
        uses="kernel (kernel_geometry's stripe field; its disk shift, which vanishes in the disk claims' limit); "
             "overlaps by integrating indicators",
    )


# --------------------------------------------------------------------- 8
def random_labels() -> Derivation:
    r"""Random labels carry no meta-structure: T = 1 r^T (every row the same), the
    joint Q = diag(pi) T = pi r^T factorises, and the mutual information
    I(Y; Y*) = sum Q log(Q / (Q_row Q_col)) is 0 (M = 2, 3). Its rank is 1
    (:func:`lemma2`'s ``random_labels_rank`` for M = 3, ``rank_M2`` here) and
    det T = 0 for M = 2 (:func:`transition_matrices`' ``det_random``).
    """
    claims = {}
    for m in (2, 3):
        pis = _simplex("pi", m)
        rs = _simplex("r", m)
        t = sp.Matrix([rs] * m)
        q = sp.diag(*pis) * t
        row = [sum(q[j, k] for k in range(m)) for j in range(m)]
        col = [sum(q[j, k] for j in range(m)) for k in range(m)]
        mi = sum(q[j, k] * sp.log(q[j, k] / (row[j] * col[k])) for j in range(m) for k in range(m))
        claims[f"mutual_information_M{m}"] = Claim(mi, 0, f"M = {m}: I(Y; Y*) = 0")
        if m == 2:
            claims["rank_M2"] = Claim(t.rank(simplify=True), 1, "M = 2: rank T = 1")
        else:
            claims["det_M3"] = Claim(t.det(), 0, "M = 3: det T = 0")
    return Derivation("random_labels", "Random labels: rank 1, zero mutual information.", claims,
                      uses="random labels' T: every row the same distribution r")


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
    * *Model* (the k-group model): the network can move k free parameters to
      fit the draw: the n_fg foreground pixels fall into k groups of n_g =
      n_fg / k, each with its own output fitted by maximum likelihood, yhat_g =
      d_g / n_g where d_g ~ Binomial(n_g, p) pixels of the group were drawn
      (its moments from the moment generating function (1 - p + p e^s)^n_g).
      Fitting lowers the training loss below the soft-label loss by
      n_g KL(yhat_g || p)/n per group; at second order KL ~= (yhat - p)^2 /
      (2 p (1-p)) and E (yhat - p)^2 = p(1-p)/n_g, so the expected optimism is
      k/(2n) nats per pixel (Wilks).
    * The memorisation index of the k-group model, m = (mean output on the
      drawn pixels) - (mean output on the foreground pixels left out), as a
      ratio of expectations: E[sum_g d_g yhat_g] / E[sum_g d_g] -
      E[sum_g (n_g - d_g) yhat_g] / E[sum_g (n_g - d_g)] = 1/n_g = k / n_fg,
      **whatever p**: memorisation falls like 1/n_fg (foreground pixels, not
      labelled ones) and sets in when n_fg is about k. At k = n_fg (one pixel a
      group) the model outputs exactly the draw and m = 1, so min(1, k / n_fg)
      (:func:`theory.curves.memorised_fraction`). For a network k is an
      effective capacity, fitted to measurements, not derived.
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

    gap = sum(ell(qq, yy) - ell(qq, mm) for qq, yy, mm in zip(qs, ys, ybs, strict=True)) / n
    logit = [sp.log(qq) - sp.log(1 - qq) for qq in qs]
    gap_form = -sum((yy - mm) * lg for yy, mm, lg in zip(ys, ybs, logit, strict=True)) / n
    var_form = sum(mm * (1 - mm) * lg**2 for mm, lg in zip(ybs, logit, strict=True)) / n**2

    yh, ng = sp.symbols("yhat n_g", positive=True)
    kl = yh * sp.log(yh / yb) + (1 - yh) * sp.log((1 - yh) / (1 - yb))
    kl2 = sp.series(kl, yh, yb, 3).removeO()
    # the k-group model: d ~ Binomial(n_g, p), moments from the MGF of n_g independent Bernoulli(p) pixels
    s_ = sp.Symbol("s", real=True)
    mgf = (1 - yb + yb * sp.exp(s_)) ** ng
    e_d, e_d2 = (sp.simplify(sp.diff(mgf, s_, k).subs(s_, 0)) for k in (1, 2))
    moments = {0: sp.Integer(1), 1: e_d / ng, 2: e_d2 / ng**2}  # E[yhat^k], yhat = d / n_g

    def expect(poly_in_yhat):  # E of a polynomial of degree <= 2 in yhat, term by term
        poly = sp.Poly(sp.expand(poly_in_yhat), yh)
        return sp.simplify(sum(c * moments[k] for (k,), c in poly.terms()))

    mean_sq_dev = expect((yh - yb) ** 2)
    optimism_per_group = sp.simplify(ng * expect(kl2))  # E[n_g KL] at second order
    drawn = (e_d2 / ng) / e_d  # E[sum d_g * d_g/n_g] / E[sum d_g], k groups cancel
    left_out = (e_d - e_d2 / ng) / (ng - e_d)  # E[sum (n_g - d_g) d_g/n_g] / E[sum (n_g - d_g)]
    memorisation_index = sp.simplify(drawn - left_out)
    return Derivation(
        "linearity_and_memorisation",
        "Losses are linear in the target; a fixed draw adds a zero-mean gap of variance sum ybar(1-ybar)logit^2/n^2.",
        claims={
            "bce_linear": Claim(sps.E(bce), bce_at_mean, "E over a Bernoulli target of BCE = BCE at its mean"),
            "ce_linear": Claim(sps.E(ce), ce_at_mean, "the same for softmax CE (M = 3)"),
            "gap_form": Claim(sp.expand(gap - gap_form), 0,
                              "fixed-draw loss minus soft-label loss = -(1/n) sum (y*-ybar) logit q"),
            "gap_mean": Claim(sps.E(gap_form), 0, "the gap has mean 0"),
            "gap_variance": Claim(sps.variance(gap_form), var_form, "... and variance sum ybar(1-ybar) logit^2 / n^2"),
            "kl_second_order": Claim(kl2, (yh - yb) ** 2 / (2 * yb * (1 - yb)), "KL at second order"),
            "group_mean_square_deviation": Claim(mean_sq_dev, yb * (1 - yb) / ng,
                                                 "k-group model: E (yhat - p)^2 = p(1-p)/n_g from the binomial MGF"),
            "optimism_per_group": Claim(optimism_per_group, sp.Rational(1, 2),
                                        "k-group model: each group's expected optimism is 1/2 nat (k/(2n) per pixel)"),
            "memorisation_index": Claim(memorisation_index, 1 / ng,
                                        "k-group model: memorisation index = 1/n_g = k/n_fg, whatever p"),
        },
        parts={"gap": gap_form, "gap_variance": var_form, "kl_second_order": kl2, "optimism": optimism_per_group,
               "memorisation_index": memorisation_index},
        uses="BCE / CE; Bernoulli targets (sympy.stats); the k-group model with a binomial draw per group",
    )


# --------------------------------------------------------------------- 14
def pooling_and_scale(n_pixels: int = 3) -> Derivation:
    r"""One pooling number for held-out variance and training-set memorisation; the critical noise it implies.

    The k-group model of :func:`linearity_and_memorisation`, read on held-out
    images: the network's output at a pixel is the mean of the n_g drawn labels
    of the group it falls in (pixels it cannot tell apart), n_g = n / k for n
    labelled pixels and k groups.

    * A group holding a fraction D of foreground pixels (labels Bernoulli(1-f))
      and 1 - D of background (Bernoulli(b)) outputs a mean of expectation
      b + (1-f-b) D and variance (D f(1-f) + (1-D) b(1-b)) / n_g (binomial
      moments from the generating functions): the variance of
      :func:`theory.curves.pooled_dice` with n_eff = n_g.
    * On the training images, a pixel's own label moves its group's output by
      1/n_g whatever the other labels' means (``sympy.stats`` conditional
      expectations on ``n_pixels`` Bernoulli labels of distinct means): the
      memorisation index m = 1/n_g, so the held-out variance is m times the mean
      label variance, **n_eff = 1/m**: a number measured on the training images
      fixes the noise on images never seen.
    * Two independent error sources of a decision (an estimate that has not yet
      averaged enough labels, variance v/n_a, and the memorised draw, v/n_m)
      add: 1/n_eff = 1/n_a + 1/n_m.
    * Symmetric flipping f = b: the decision margin over its sd is
      (1-2f)(D - 1/2) / sqrt(f(1-f)/n_eff), which depends on f and n_eff only
      through lambda = (1-2f)^2 n_eff / (f(1-f)); the largest rate whose loss
      stays below a given Dice gap, whose lambda is lambda_c (computed once on
      the masks), is f_c = (1 - sqrt(lambda_c / (lambda_c + 4 n_eff))) / 2,
      which tends to 1/2 as n_eff grows. Sampling with ratio p: through
      mu = p n_eff / (1-p), so p_c = mu_c / (mu_c + n_eff).

    How n_a and n_m depend on the number of images and of passes is not derived
    here: it is the phenomenological part of the law (theory/README.md, step
    14; :func:`theory.curves.scale_n_eff`), fitted by ``simulations.scale``.
    """
    f, b, D, ng = sp.symbols("f b D n_g", positive=True)
    s_ = sp.Symbol("s", real=True)

    def moments(n, q):  # E d and E d^2 of d ~ Binomial(n, q), from its generating function
        mgf = (1 - q + q * sp.exp(s_)) ** n
        return tuple(sp.diff(mgf, s_, k).subs(s_, 0) for k in (1, 2))

    t = flip_matrix(f, b)  # a foreground pixel's label is 1 with noisy_given_clean(T, 1, 1), a background's with (0, 1)
    (m1, m2), (o1, o2) = moments(D * ng, noisy_given_clean(t, 1, 1)), moments((1 - D) * ng, noisy_given_clean(t, 0, 1))
    mean = (m1 + o1) / ng
    second = (m2 + 2 * m1 * o1 + o2) / ng**2  # d_fg and d_bg independent
    variance = sp.simplify(second - mean**2)

    qs = sp.symbols(f"q0:{n_pixels}", positive=True)
    ys = [sps.Bernoulli(f"Y{i}", q) for i, q in enumerate(qs)]
    out = sum(ys) / n_pixels
    index = sp.simplify(sps.E(out, sp.Eq(ys[0], 1)) - sps.E(out, sp.Eq(ys[0], 0)))
    held_out_variance = sps.variance(out)
    mean_label_variance = sum(q * (1 - q) for q in qs) / n_pixels

    v, na, nm = sp.symbols("v n_a n_m", positive=True)
    ea, em = sps.Normal("E_a", 0, sp.sqrt(v / na)), sps.Normal("E_m", 0, sp.sqrt(v / nm))

    n, lam_c, mu_c, p = sp.symbols("n lambda_c mu_c p", positive=True)
    # the decision's squared margin over its variance, from the group's own mean and variance at t* (n_g = n)
    t_star = b + (1 - f - b) / 2
    z2 = (mean - t_star) ** 2 / variance.subs(ng, n)
    ratio_flip = z2.subs(b, f)
    ratio_sample = z2.subs({f: 1 - p, b: 0})
    lam = (1 - 2 * f) ** 2 * n / (f * (1 - f))
    f_c = (1 - sp.sqrt(lam_c / (lam_c + 4 * n))) / 2
    mu = p * n / (1 - p)
    p_c = mu_c / (mu_c + n)
    return Derivation(
        "pooling_and_scale",
        "One pooling number: held-out variance v/n_g and training index 1/n_g; the critical rate it implies.",
        claims={
            "pooled_mean": Claim(sp.simplify(mean), b + (1 - f - b) * D,
                                 "a group's mean label: b + (1-f-b) D (Lemma 1 on a group)"),
            "pooled_variance": Claim(variance, (D * f * (1 - f) + (1 - D) * b * (1 - b)) / ng,
                                     "... its variance (D f(1-f) + (1-D) b(1-b)) / n_g: pooled_dice's, n_eff = n_g"),
            "own_label_index": Claim(index, sp.Rational(1, n_pixels),
                                     f"a pixel's own label moves its group's output by 1/n_g (n_g = {n_pixels}, "
                                     "labels of distinct means)"),
            "n_eff_is_inverse_index": Claim(sp.simplify(held_out_variance), index * mean_label_variance,
                                            "held-out variance = index x mean label variance: n_eff = 1/m"),
            "variances_add": Claim(sps.variance(ea + em), v * (1 / na + 1 / nm),
                                   "independent averaging and memorisation errors: 1/n_eff = 1/n_a + 1/n_m"),
            "flip_through_lambda": Claim(sp.simplify(ratio_flip), lam * (D - sp.Rational(1, 2)) ** 2,
                                         "f = b: the margin over the sd at t*, from the group's mean and variance, "
                                         "depends on f and n_eff only through lambda = (1-2f)^2 n_eff / (f(1-f))"),
            "lambda_falls_with_f": Claim(sp.factor(sp.simplify(sp.diff(lam, f))),
                                         -n * (1 - 2 * f) / (f**2 * (1 - f) ** 2),
                                         "d lambda / df < 0 on (0, 1/2): one rate reaches lambda_c, the largest "
                                         "within the gap"),
            "critical_flip_rate": Claim(sp.simplify(lam.subs(f, f_c)), lam_c,
                                        "f_c = (1 - sqrt(lambda_c / (lambda_c + 4 n_eff))) / 2 (< 1/2) has "
                                        "lambda = lambda_c"),
            "sample_through_mu": Claim(sp.simplify(ratio_sample), mu * (D - sp.Rational(1, 2)) ** 2 / D,
                                       "sampling (f = 1-p, b = 0): only through mu = p n_eff / (1-p)"),
            "critical_sampling_ratio": Claim(sp.simplify(mu.subs(p, p_c)), mu_c,
                                             "p_c = mu_c / (mu_c + n_eff) has mu = mu_c"),
        },
        parts={"variance": variance, "index": index, "lambda": lam, "f_c": f_c, "mu": mu, "p_c": p_c},
        uses="flip_matrix, noisy_given_clean; binomial groups (generating functions); Bernoulli labels and normal "
             "errors (sympy.stats)",
    )


# --------------------------------------------------------------------- 15
def annotation(n_pixels: int = 3, clusters: int = 3, images: int = 2, spacing: int = 3) -> Derivation:
    r"""Annotation practice: unlabelled pixels as ignore or as background, and labels that come in sheets.

    *Ignore.* A fraction p of the pixels is labelled (L_i ~ Bernoulli(p)), the
    rest left out of the loss. A smoother of the labelled pixels estimates
    :math:`R = \sum a_i L_i y_i / \sum a_i L_i`; at L = p it is D = sum w y
    (w = a / sum a): no shift, read at 1/2. To first order in L - p,
    :math:`R - D = \sum_i w_i (y_i - D)(L_i - p) / p`, whose variance is
    :math:`\tfrac{1-p}{p} \sum w^2 (y - D)^2 = \tfrac{1-p}{p}\,[(1-D)^2 S_{fg} + D^2 S_{bg}]`,
    and in the pooled model (S_fg = D/n, S_bg = (1-D)/n) :math:`\tfrac{1-p}{p} D(1-D)/n`.
    Stored as background the same labels give :math:`E[D^*] = pD` with variance
    p(1-p) D / n (:func:`finite_sampling`), i.e. :math:`\tfrac{1-p}{p} D / n` in units of D:
    ignoring has (1 - D) times that variance, half of it at the boundary, and
    needs no t*.

    *Sheets.* When the labels come in clusters (the pixels of one slice of one
    volume, a block) labelled or not together, a decision pooling n labels drawn
    from the training set's foreground (cluster c holding a share m_c / V)
    sees a labelled fraction of variance :math:`p(1-p)[1/n + (1 - 1/n) q]`,
    :math:`q = \sum_c (m_c / V)^2`: that of :math:`n' = n / (1 + (n-1) q)`
    independent labels (:func:`theory.curves.clustered_n_eff`). Checked for two
    pooled labels and ``clusters`` clusters of symbolic sizes.

    *Slices are a lattice.* Every k-th slice at a random offset labels exactly
    one of each image's k classes of slices (z = r, r + k, ...): two classes of
    one image are never labelled together, so the labels' indicators have
    covariance p(1-p) within a class, -p^2 between the classes of an image, 0
    across images (p = 1/k). The labelled share of the foreground (class r of
    image v holding s_vr, image v holding S_v, all T) then has variance
    p(1-p) q with :math:`q = \sum_v \sum_r (s_{vr} - S_v/k)^2 / ((1 - 1/k) T^2)`
    (:func:`theory.curves.lattice_overlap`), not the independent units' sum
    (s_vr / T)^2. Checked for ``images`` images of ``spacing`` classes of
    symbolic sizes, each image's offset uniform.

    *Pooling in patches.* Within one image the lattice's indicators correlate by 1 within a class and
    -p^2 / (p(1-p)) = -1/(k-1) between classes (``noise.Slices.pair_correlation``). A decision that pools
    its labels in patches, weights w_i with pair correlations rho_ij, sees the weighted labelled fraction
    with variance :math:`p(1-p) \sum_{ij} w_i w_j \rho_{ij} / (\sum w)^2`: that of independent labels,
    :math:`p(1-p) \sum w^2 / (\sum w)^2`, times the design effect
    :math:`1 + \sum_{i \ne j} w_i w_j \rho_{ij} / \sum w^2` (:func:`theory.curves.local_design` takes a
    gaussian pair weight over the foreground for :math:`w_i w_j`: a modelling assumption). Checked for three
    labels, two of them in one block, and the same on the lattice (negative rho).

    *Units under ignore.* Given which pixels are labelled (weights a_i = w_i L_i),
    the pooled model's labels (y_i independent Bernoulli(D)) give the ratio the
    variance D(1-D) sum a^2 / (sum a)^2: the units enter only through how many
    labels a decision sees, not through the y's (two labels' y - D are
    uncorrelated). With equal weights that is D(1-D)/M for M labelled of n;
    M has mean np and variance n^2 p(1-p)/n' (n' as above), so to second order
    E[1/M] = (1 + (1-p)/(p n'))/(np), and the variance above clean labels'
    D(1-D)/n is :math:`\tfrac{1-p}{p} \tfrac{D(1-D)}{n} (1 + \tfrac{1}{p n'})`.
    """
    p = sp.Symbol("p", positive=True)
    a = sp.symbols(f"a0:{n_pixels}", positive=True)
    ys = sp.symbols(f"y0:{n_pixels}", nonnegative=True)
    ls = sp.symbols(f"l0:{n_pixels}", positive=True)
    w = [ai / sum(a) for ai in a]
    d_clean = sum(wi * y for wi, y in zip(w, ys, strict=True))
    ratio = sum(ai * li * y for ai, li, y in zip(a, ls, ys, strict=True)) / sum(ai * li for ai, li in zip(a, ls,
                                                                                                        strict=True))
    at_p = {li: p for li in ls}
    grad = [sp.diff(ratio, li).subs(at_p) for li in ls]
    bern = [sps.Bernoulli(f"L{i}", p) for i in range(n_pixels)]
    linear = sum(g * (bb - p) for g, bb in zip(grad, bern, strict=True))
    var_ignore = sps.variance(linear)
    # a 0/1 mask: y = (1, ..., 1, 0): the squared-weight sums over foreground and background
    mask = {y: (0 if i == n_pixels - 1 else 1) for i, y in enumerate(ys)}
    dm = d_clean.subs(mask)
    s_fg = sum(wi**2 for i, wi in enumerate(w) if i < n_pixels - 1)
    s_bg = w[-1] ** 2
    dd, n = sp.Symbol("D", positive=True), sp.Symbol("n", positive=True)
    pooled_ignore = (1 - p) / p * ((1 - dd) ** 2 * dd / n + dd**2 * (1 - dd) / n)
    pooled_background = p * (1 - p) * dd / n / p**2
    # sheets: two labels drawn from the foreground, cluster c with probability m_c / V, each cluster labelled
    # with probability p as a whole
    m = sp.symbols(f"m0:{clusters}", positive=True)
    total = sum(m)
    picks = [sps.FiniteRV(f"C{k}", {c: m[c] / total for c in range(clusters)}) for k in range(2)]
    lab = [sps.Bernoulli(f"S{c}", p) for c in range(clusters)]
    seen = sum(sum(sp.Piecewise((1, sp.Eq(pick, c)), (0, True)) for pick in picks) * lab[c]
               for c in range(clusters)) / 2
    q = sum((mc / total) ** 2 for mc in m)
    nn = sp.Symbol("n", positive=True)
    qq = sp.Symbol("q", positive=True)
    # slices: per image one of `spacing` classes labelled, at a uniform offset; the labelled share of the foreground
    counts = [sp.symbols(f"s{v}_0:{spacing}", positive=True) for v in range(images)]
    offsets = [sps.DiscreteUniform(f"O{v}", list(range(spacing))) for v in range(images)]
    whole = sum(sum(row) for row in counts)
    share = sum(sum(c * sp.Piecewise((1, sp.Eq(off, r)), (0, True)) for r, c in enumerate(row))
                for row, off in zip(counts, offsets, strict=True)) / whole
    pk = sp.Rational(1, spacing)
    q_lattice = sum(sum((c - sum(row) / spacing) ** 2 for c in row) for row in counts) / ((1 - pk) * whole**2)
    # ignore with units: given the labelling (weights a), the ratio over independent Bernoulli(D) labels
    ys_d = [sps.Bernoulli(f"Y{i}", dd) for i in range(n_pixels)]
    given = sum(ai * y for ai, y in zip(a, ys_d, strict=True)) / sum(a)
    # E[1/M] to second order: the Taylor expansion of 1/M about its mean, M - mean of mean 0 and variance var_m
    mu, dm_, var_m = sp.symbols("mu delta v", positive=True)
    inv_taylor = sp.series(1 / (mu + dm_), dm_, 0, 3).removeO()
    inv_mean = inv_taylor.coeff(dm_, 0) + inv_taylor.coeff(dm_, 2) * var_m  # E[delta] = 0, E[delta^2] = v
    n_units = sp.Symbol("n'", positive=True)
    at_units = {mu: nn * p, var_m: nn**2 * p * (1 - p) / n_units}
    # the lattice's correlation between two classes of one image (offset of image 0), and a patch of three
    # labels, the first two in one block labelled as a whole, the third in another
    first = [sp.Piecewise((1, sp.Eq(offsets[0], r)), (0, True)) for r in range(2)]
    pw = sp.symbols("w0:3", positive=True)
    blk = [sps.Bernoulli("B0", p), sps.Bernoulli("B1", p)]
    patch = (pw[0] * blk[0] + pw[1] * blk[0] + pw[2] * blk[1]) / sum(pw)
    deff = 1 + 2 * pw[0] * pw[1] / sum(wi**2 for wi in pw)
    # the same patch on the lattice: the first two labels in class 0 of one image, the third in its class 1
    lat = (pw[0] * first[0] + pw[1] * first[0] + pw[2] * first[1]) / sum(pw)
    rho = -1 / sp.Integer(spacing - 1)
    deff_lat = 1 + 2 * (pw[0] * pw[1] + rho * (pw[0] + pw[1]) * pw[2]) / sum(wi**2 for wi in pw)
    return Derivation(
        "annotation",
        "Unlabelled as ignore: unbiased, variance (1-p)/p D(1-D)/n, (1-D) times the background one; "
        "labels in sheets: n_eff' = n / (1 + (n-1) q), every k-th slice a lattice of q = sum (s_vr - S_v/k)^2 / "
        "((1-1/k) T^2) whose classes correlate by -1/(k-1); labels pooled in patches: a design effect "
        "1 + sum_(i != j) w_i w_j rho_ij / sum w^2; units under ignore: (1-p)/p D(1-D)/n (1 + 1/(p n')).",
        claims={
            "ignore_unbiased": Claim(ratio.subs(at_p), d_clean,
                                     "ignore: the ratio of smoothed labels at L = p is the clean field D (no shift)"),
            "ignore_linear_variance": Claim(var_ignore, (1 - p) / p * sum(wi**2 * (y - d_clean) ** 2
                                                                            for wi, y in zip(w, ys, strict=True)),
                                            "its first-order variance over Bernoulli(p) labelling: "
                                            "(1-p)/p sum w^2 (y - D)^2"),
            "ignore_variance_on_a_mask": Claim(sum(wi**2 * (y - d_clean) ** 2 for wi, y in zip(w, ys, strict=True)
                                                   ).subs(mask), (1 - dm) ** 2 * s_fg + dm**2 * s_bg,
                                               "on a 0/1 mask: (1-D)^2 S_fg + D^2 S_bg"),
            "ignore_pooled": Claim(pooled_ignore, (1 - p) / p * dd * (1 - dd) / n,
                                   "pooled (S_fg = D/n, S_bg = (1-D)/n): (1-p)/p D(1-D)/n"),
            "ignore_over_background": Claim(pooled_ignore / pooled_background, 1 - dd,
                                            "ignore's variance over background's (in units of D): 1 - D"),
            "cluster_variance": Claim(sps.variance(seen), p * (1 - p) * (sp.Rational(1, 2) + q / 2),
                                      "two labels from clusters labelled as a whole: p(1-p)(1/2 + q/2), "
                                      "q = sum (m_c/V)^2"),
            "clustered_n_eff": Claim(p * (1 - p) * (1 / nn + (1 - 1 / nn) * qq),
                                     p * (1 - p) / (nn / (1 + (nn - 1) * qq)),
                                     "n labels in clusters: the variance of n / (1 + (n-1) q) independent ones"),
            "ignore_given_units": Claim(sps.variance(given),
                                        dd * (1 - dd) * sum(ai**2 for ai in a) / sum(a) ** 2,
                                        "ignore, given the labelled pixels: the ratio's variance over independent "
                                        "labels is D(1-D) sum a^2 / (sum a)^2, whatever units they came in"),
            "ignore_units_second_order": Claim(dd * (1 - dd) * inv_mean.subs(at_units) - dd * (1 - dd) / nn,
                                               (1 - p) / p * dd * (1 - dd) / nn * (1 + 1 / (p * n_units)),
                                               "ignore with units: D(1-D) E[1/M] to second order, above clean "
                                               "labels' D(1-D)/n, is (1-p)/p D(1-D)/n (1 + 1/(p n'))"),
            "lattice_overlap": Claim(sps.variance(share), pk * (1 - pk) * q_lattice,
                                     "every k-th slice at a uniform offset per image: the labelled share's variance "
                                     "is p(1-p) q, q = sum (s_vr - S_v/k)^2 / ((1-1/k) T^2)"),
            "lattice_pair_correlation": Claim(sps.correlation(first[0], first[1]), -1 / sp.Integer(spacing - 1),
                                              "two classes of slices of one image: correlation -1/(k-1)"),
            "patch_design_effect": Claim(sps.variance(patch),
                                         p * (1 - p) * sum(wi**2 for wi in pw) / sum(pw) ** 2 * deff,
                                         "a patch's weighted labelled fraction: p(1-p) sum w^2 / (sum w)^2 times "
                                         "the design effect 1 + sum_{i != j} w_i w_j rho_ij / sum w^2"),
            "patch_design_effect_lattice": Claim(sps.variance(lat),
                                                 pk * (1 - pk) * sum(wi**2 for wi in pw) / sum(pw) ** 2 * deff_lat,
                                                 "the same on the slice lattice, rho = -1/(k-1) between classes: "
                                                 "the design effect takes negative correlations too"),
        },
        parts={"ratio": ratio, "variance_ignore": var_ignore, "cluster_seen": seen, "lattice_share": share},
        uses="Bernoulli(p) labelling of each pixel or cluster, a uniform slice offset per image (sympy.stats); a "
             "smoother of the labelled pixels",
    )


#: Every derivation, in the order of the proof outline (theory/README.md).
ALL = (proper_scoring, affine_posterior, linearity_and_memorisation, lemma1, transition_matrices, lemma2, theorem2,
       random_labels, kernel_geometry, pcl_overlap, finite_sampling, pooling_and_scale, annotation)


def table(derivations: list[Derivation] | None = None) -> str:
    """The markdown table of every claim: derivation, claim, what it derives, from which definitions.

    ``derivations`` defaults to every one of :data:`ALL`, built afresh (pass
    them if already built). theory/README.md holds exactly this text (a test
    checks it), so the list of claims cannot drift from the code.
    """
    rows = ["| derivation | claim | what it derives | from |", "|---|---|---|---|"]
    n = 0
    for der in derivations if derivations is not None else [fn() for fn in ALL]:
        for name, claim in der.claims.items():
            cells = [f"`{der.name}`", f"`{name}`", claim.what, der.uses]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a | inside a cell
            n += 1
    return "\n".join(rows) + f"\n\n{n} claims in {len(ALL) if derivations is None else len(derivations)} derivations.\n"
