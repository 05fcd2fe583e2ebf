"""Simulations: the experiments that reproduce the paper's curves, and their CLI.

``python -m simulations list`` names what can run; ``python -m simulations run
demo`` computes the density demo and writes ``figures/demo_density.{png,json}``.
The paper's experiments join this CLI with the simulations issue.
"""

__all__: list[str] = []
