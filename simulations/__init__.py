"""Simulations: the experiments that reproduce the paper's curves, and their CLI.

``python -m simulations list`` names what can run; ``run NAME`` or ``all`` runs
them (``--profile quick`` by default, ``full`` for the README's numbers) and
writes ``figures/NAME.png`` with the numbers behind it in ``figures/NAME.json``:
``demo`` (label types and their fields), ``theory_curves`` (theory beside Monte
Carlo) and ``learning`` (U-Nets under each label regime). The paper's full set
of experiments joins this CLI with the simulations issue.
"""

__all__: list[str] = []
