r"""Noise transition matrices (NTM) of the label types, and what they preserve.

A label type with class-conditional noise is described by its transition matrix
:math:`T_{jm} = P(y^* = m \mid y = j)` (rows: true class, row-stochastic). The
binary forms (rows: true background, foreground):

=================== ==========================================
sample, ratio p     ``[[1, 0], [1-p, p]]``
flip, rates (f, b)  ``[[1-b, b], [f, 1-f]]``
random, rate r      ``[[1-r, r], [1-r, r]]`` (rank 1)
skeleton            ``[[1, 0], [1-s, s]]``, s = skeleton / mask pixels
=================== ==========================================

Dilation and erosion are full rank but data dependent (their change sits on the
boundary): use :func:`estimate` on a (clean, noisy) pair. The symmetric M-class
flip with rate e, :math:`(1-e) I + \frac{e}{M-1}(\mathbf{1}\mathbf{1}^T - I)`, has
eigenvalues 1 and :math:`1 - eM/(M-1)`: singular only at :math:`e = (M-1)/M`.

Information measures of the joint :math:`Q_{jm} = P(y=j, y^*=m)`: the mutual
information :math:`I(Y; Y^*)` (nats) and DMI, :math:`|\det Q|` (Xu et al., 2019).
Lemma 2: the number of classes the noisy labels can distinguish is rank(T).

These are small host-side computations: they take and return numpy arrays
(float64) and are not meant for ``jit``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks

__all__ = [
    "determinant",
    "dmi",
    "estimate",
    "flip_matrix",
    "joint",
    "joint_from_transition",
    "mutual_information",
    "numerical_rank",
    "random_matrix",
    "rank",
    "sample_matrix",
    "skeleton_matrix",
    "symmetric_matrix",
]


def sample_matrix(ratio: float) -> np.ndarray:
    """T of sampling: keep a fraction ``ratio`` of the foreground, rest background.

    >>> sample_matrix(0.1).tolist()
    [[1.0, 0.0], [0.9, 0.1]]
    """
    _checks.check_unit_interval("ratio", ratio, scalar=True)
    p = float(ratio)
    return np.array([[1.0, 0.0], [1.0 - p, p]])


def flip_matrix(fg_to_bg: float, bg_to_fg: float) -> np.ndarray:
    """T of flipping: fraction f of fg -> bg and b of bg -> fg, ``[[1-b, b], [f, 1-f]]``.

    >>> flip_matrix(0.3, 0.1).tolist()
    [[0.9, 0.1], [0.3, 0.7]]
    """
    _checks.check_unit_interval("fg_to_bg", fg_to_bg, scalar=True)
    _checks.check_unit_interval("bg_to_fg", bg_to_fg, scalar=True)
    f, b = float(fg_to_bg), float(bg_to_fg)
    return np.array([[1.0 - b, b], [f, 1.0 - f]])


def random_matrix(rate: float, *, num_classes: int = 2) -> np.ndarray:
    """T of random labels, independent of the image: every row is the same.

    Binary: each row is ``[1-rate, rate]`` (rank 1: no meta-structure). For
    uniform random labels over M > 2 classes use ``symmetric_matrix((M-1)/M, M)``.

    >>> random_matrix(0.3).tolist()
    [[0.7, 0.3], [0.7, 0.3]]
    """
    _checks.check_unit_interval("rate", rate, scalar=True)
    if _checks.check_num_classes(num_classes) != 2:
        raise ValueError(
            f"random_matrix is binary (num_classes=2); for M={num_classes} uniform random labels use "
            "symmetric_matrix((M - 1) / M, M)"
        )
    r = float(rate)
    return np.array([[1.0 - r, r], [1.0 - r, r]])


def skeleton_matrix(mask: Any, skeleton: Any) -> np.ndarray:
    r"""T of a skeleton label: ``[[1, 0], [1-s, s]]`` with :math:`s = |\text{skeleton}| / |\text{mask}|`.

    The same form as sampling with ratio s, but the kept pixels sit on the
    medial axis instead of being spread uniformly (which is why skeletons hurt).
    """
    _checks.check_binary("mask", mask)
    _checks.check_binary("skeleton", skeleton)
    m = np.asarray(mask).astype(bool)
    k = np.asarray(skeleton).astype(bool)
    _checks.check_same_shape("mask", m, "skeleton", k)
    if np.any(k & ~m):
        raise ValueError("skeleton must lie inside mask")
    n = m.sum()
    if n == 0:
        raise ValueError("mask is empty: the skeleton ratio is undefined")
    return sample_matrix(k.sum() / n)


def symmetric_matrix(rate: float, num_classes: int) -> np.ndarray:
    r"""Symmetric M-class flip: keep with 1-e, else a uniformly chosen other class.

    :math:`T = (1-e) I + \frac{e}{M-1} (\mathbf{1}\mathbf{1}^T - I)`.

    >>> np.round(np.linalg.eigvalsh(symmetric_matrix(0.5, 3)), 6).tolist()
    [0.25, 0.25, 1.0]
    """
    _checks.check_unit_interval("rate", rate, scalar=True)
    e, m = float(rate), _checks.check_num_classes(num_classes)
    return (1.0 - e) * np.eye(m) + e / (m - 1) * (np.ones((m, m)) - np.eye(m))


def joint(clean: Any, noisy: Any, *, num_classes: int = 2, ignore: int | None = -1) -> np.ndarray:
    r"""Empirical joint distribution :math:`Q_{jm}` of (clean, noisy) labels.

    Pixels where either map is ``ignore`` are excluded.

    Args:
        clean, noisy: integer (or bool) maps of the same shape, classes in
            ``[0, num_classes)``.

    Returns:
        (M, M) float64 array summing to 1.
    """
    num_classes = _checks.check_num_classes(num_classes)
    ignore = _checks.check_ignore(ignore, num_classes)
    c = np.asarray(clean)
    n = np.asarray(noisy)
    _checks.check_same_shape("clean", c, "noisy", n)
    _checks.check_labels("clean", c.astype(np.int64) if c.dtype == bool else c, num_classes, ignore=ignore)
    _checks.check_labels("noisy", n.astype(np.int64) if n.dtype == bool else n, num_classes, ignore=ignore)
    c = c.astype(np.int64).ravel()
    n = n.astype(np.int64).ravel()
    keep = np.ones(c.shape, bool) if ignore is None else (c != ignore) & (n != ignore)
    if not keep.any():
        raise ValueError("clean and noisy share no labelled pixel (all ignore): the joint is undefined")
    counts = np.bincount(c[keep] * num_classes + n[keep], minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes) / keep.sum()


def estimate(clean: Any, noisy: Any, *, num_classes: int = 2, ignore: int | None = -1) -> np.ndarray:
    """Estimated transition matrix: the joint with each row normalised.

    A class absent from ``clean`` has an undefined row: NaN.

    >>> import numpy as np
    >>> estimate(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    q = joint(clean, noisy, num_classes=num_classes, ignore=ignore)
    rows = q.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, q / np.where(rows > 0, rows, 1.0), np.nan)


def joint_from_transition(transition: Any, prior: Any) -> np.ndarray:
    """:math:`Q = \\mathrm{diag}(\\pi) T` for a class prior :math:`\\pi`."""
    _checks.check_transition("transition", transition)
    t = np.asarray(transition, dtype=np.float64)
    _checks.check_finite("prior", prior)
    p = np.asarray(prior, dtype=np.float64)
    if p.shape != (t.shape[0],) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"prior must be a probability vector of length {t.shape[0]}, got {prior!r}")
    return p[:, None] * t


def determinant(transition: Any) -> float:
    """det(T). Binary flip: 1 - f - b; zero means no information."""
    _checks.check_transition("transition", transition)
    return float(np.linalg.det(np.asarray(transition, dtype=np.float64)))


def rank(transition: Any) -> int:
    """Rank of T at machine precision (numpy's default tolerance)."""
    _checks.check_transition("transition", transition)
    return int(np.linalg.matrix_rank(np.asarray(transition, dtype=np.float64)))


def numerical_rank(transition: Any, *, rtol: float = 1e-3) -> int:
    """Number of singular values above ``rtol`` times the largest.

    Estimated matrices are never exactly singular; a loose tolerance tells how
    many classes are distinguishable *in practice*.
    """
    _checks.check_transition("transition", transition)
    _checks.check_real_number("rtol", rtol, minimum=0.0)
    s = np.linalg.svd(np.asarray(transition, dtype=np.float64), compute_uv=False)
    if s[0] == 0:
        return 0
    return int(np.sum(s > rtol * s[0]))


def mutual_information(joint_matrix: Any) -> float:
    r""":math:`I(Y; Y^*) = \sum_{jm} Q_{jm} \log \frac{Q_{jm}}{Q_{j\cdot} Q_{\cdot m}}` in nats.

    >>> round(mutual_information(joint_from_transition(random_matrix(0.3), [0.5, 0.5])), 12)
    0.0
    """
    q = np.clip(_checks.check_joint("joint_matrix", joint_matrix), 0.0, None)
    pr = q.sum(axis=1, keepdims=True)
    pc = q.sum(axis=0, keepdims=True)
    nz = q > 0
    return float(np.sum(q[nz] * np.log(q[nz] / (pr @ pc)[nz])))


def dmi(joint_matrix: Any) -> float:
    """Determinant-based mutual information, :math:`|\\det Q|` (Xu et al., 2019).

    Zero exactly when the noisy labels cannot separate some classes (rank < M);
    it factorises as ``|det diag(prior)| * |det T|``.

    Raises:
        ValueError: ``joint_matrix`` is not a joint distribution (square,
            non-negative, entries summing to 1); a transition matrix T (rows
            summing to 1) is named as such: pass ``joint_from_transition(T, prior)``.

    >>> round(dmi(joint_from_transition(flip_matrix(0.1, 0.1), [0.5, 0.5])), 6)  # 0.25 * (1 - f - b)
    0.2
    """
    q = _checks.check_joint("joint_matrix", joint_matrix)
    return float(abs(np.linalg.det(q)))
