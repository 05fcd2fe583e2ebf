"""Simulations: the experiments that reproduce the paper's findings, theory beside measurement.

``python -m simulations list | run NAME [NAME...] | all | plot NAME | report`` (see
:mod:`simulations.__main__`). :mod:`simulations.registry` lists the experiments
(``simulations/CONTRIBUTING.md``: adding one is a module and a line). Each
experiment module declares ``PROFILES`` (quick, full), the ``cells`` it needs,
how to ``summarise`` the store into the numbers behind its figure, how to
``plot`` them (ending in :func:`simulations._common.save_figure`), and its
section of the results document (``TITLE``, ``report``); experiments with cells
of their own kind also say how to ``compute`` one and its ``VERSION``.
:mod:`simulations.runner` runs them through the results store
(:mod:`simulations.store`: one atomic JSON per cell, keyed by the versioned
spec, so interrupted runs resume and stale cells are never reused; verified
on read, recomputed when damaged; locked per cell, so runs may share a folder) and writes
``OUT/NAME.png`` and ``OUT/NAME.json``; :mod:`simulations.report` writes the
results document from those records, each experiment its own section. Every
learning experiment trains through one shared cell,
:func:`simulations._cells.train_cell`, so experiments that need the same
network share it. :mod:`simulations.cluster` computes the cells
on Dask distributed workers instead (``--workers N`` / ``--scheduler ADDRESS``,
the ``cluster`` extra), with the numbers of an in-process run on as many cores.
"""

__all__: list[str] = []
