"""Symbolic derivations (sympy) and closed-form curves of the meta-structure theory.

The derivations land with the theory issue; today the package holds nothing but
this docstring, so that the three packages install together.
"""

__all__: list[str] = []
