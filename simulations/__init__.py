"""Simulations: the experiments that reproduce the paper's findings, theory beside measurement.

``python -m simulations list | run NAME [NAME...] | all | plot NAME`` (see
:mod:`simulations.__main__`). Each experiment module declares ``PROFILES``
(quick, full), the ``cells`` it needs, how to ``compute`` one, how to
``summarise`` the store into the numbers behind its figure, and how to
``plot`` them; :mod:`simulations._runner` runs them through the results store
(:mod:`simulations.store`: one atomic JSON per cell, so interrupted runs
resume) and writes ``OUT/NAME.png`` and ``OUT/NAME.json``. Every learning
experiment trains through one shared cell, :func:`simulations._cells.train_cell`,
so experiments that need the same network share it.
"""

__all__: list[str] = []
