"""The meta-structure theory: symbolic derivations and closed-form curves.

* :mod:`theory.derivations`: each lemma and theorem as sympy, returning a
  :class:`~theory.derivations.Derivation` whose ``claims`` the tests simplify to
  identities.
* :mod:`theory.curves`: the same results as vectorised numpy predictions
  (output levels, Dice vs sampling ratio / flip rates / PCL radius, mIoU vs
  symmetric flip rate) that the simulations draw beside measured points.

``theory/README.md`` is the proof outline, step by step, naming the function and
the test behind each step.
"""

from . import curves, derivations

__all__ = ["curves", "derivations"]
