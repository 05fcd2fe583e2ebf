r"""Annotation planner: what a network trained on cheaper labels will reach, on masks like yours.

A lab deciding how to annotate asks: if we label only 10% of the foreground
pixels, or our outlines are 2 px too wide, or 30% of the labels are wrong, what
Dice do we get, and where do we threshold the output? The theory answers from
the masks alone, once two numbers of the training recipe are known
(theory/README.md; arXiv 2103.11594, Theorems 1-2 and Section 4):

* **Random label errors** (RCL: sampling a ratio p of the foreground, flipping
  foreground to background with rate f and background to foreground with rate
  b): the network learns the noisy meta-structure b + (1 - f - b) D of the
  clean fraction field D (Lemma 1), so thresholding at the matched t* =
  (1 + b - f)/2 recovers the clean boundary (inverted beyond f + b = 1). What
  is lost comes from finite sampling: each decision pools about ``n_eff``
  noisy labels, so pixels near the boundary are called wrong with the
  probability :func:`theory.curves.pooled_dice` gives. Predicted Dice =
  ``clean_dice * pooled_dice(D, n_eff, f, b)``, at t*, D the masks' clean
  fraction fields at 1 px.
* **Structured errors** (PCL: dilated, eroded or skeletonized outlines):
  Theorem 1, the network learns the perturbed meta-structure, whose boundary no
  threshold moves back: at 1/2 it calls T(M), the perturbed masks (for
  skeletons: the skeleton's fraction field at bandwidth 1 px cut at t* = s/2,
  s the kept fraction), whose pooled Dice against the masks M is the
  perturbation's error (:func:`theory.curves.pcl_label_dice`). The network
  adds its own boundary error, the one its clean Dice shows; the two overlap
  instead of adding: :func:`theory.curves.pcl_dice` (``Dice(T(M), M)``, ``clean_dice``).
* **Random labels** (RL, and flipping at f + b = 1): no meta-structure; chance,
  the Dice of calling everything foreground, 2 pi / (1 + pi) for a foreground
  fraction pi; no threshold.
* **Annotation practice** (every k-th slice, random blocks, scattered pixels:
  :class:`~metastructure.noise.Slices`, :class:`~metastructure.noise.Blocks`,
  :class:`~metastructure.noise.Scattered`; the rest stored as background or
  ignored): ``clean_dice * annotated_dice(D, n_eff, p, unlabelled, overlap=q)``
  (:func:`theory.curves.annotated_dice`) with q that of labels that come in
  slices or blocks (:meth:`Masks.overlap`: a lattice for slices, independent
  units for blocks; theory/README.md, step 15). On volumes
  (``Masks(masks, ndim=3)``) :func:`table` adds the "every k-th slice" rows,
  both ways.

The two numbers, ``n_eff`` and ``clean_dice``, depend on the network, the
recipe, the images and the training-set size, not on the label type's rates:
:func:`calibrate` measures them on the user's own images. It trains, on a
split of the data at two training-set sizes, a clean network and networks on
fixed draws of a sampled and a flipped label type (``repeats`` draws each),
scores them on the held-out images and fits the **scale law** of n_eff
(:mod:`~metastructure.planner.law`; theory/README.md, step 14):
1/n_eff = 1/(rate N) + m(P)/ratio for N training images, the label family
entering only through m, the memorisation index of its draw at
P = steps x batch x (crop window / image pixels) / N passes over each
pixel, measured per family (a flipped draw and a
sampled one need not be memorised alike). So
``predict(..., n_images=N)`` answers for N training images at the recipe's
steps, with an interval where one such network lands (at :data:`LEVEL`: the
law's own uncertainty and one network's scatter, measured by the
calibration). Without a calibration :data:`DEFAULT` (measured on the packaged
real nuclei by the ``planner`` simulation, simulations/README.md, and read
from the package's ``calibration.json``) stands in.
:func:`predict` answers for one label type, :func:`table` for a whole plan,
with the training-set size below which one fixed draw gets memorised
(theory/README.md, step 13: index k / n_fg). ``python -m metastructure plan
MASKS [--images IMAGES] [--n-images N]`` prints the plan and draws it.

Thin structures: the finite-sampling model compares the noisy partition with
the clean partition {D > 1/2} of the 1-px fraction field, and the skeleton
model cuts the skeleton's 1-px field; that partition loses 1-px lines and
spots of 2 x 2 px entirely, and part of structures up to about 2 px wide
(:attr:`Masks.resolved` measures how much of the masks it keeps, as a Dice).
Sampled and flipped labels are predicted only where that reaches
:data:`MIN_RESOLVED`, skeletons where it reaches
:data:`MIN_RESOLVED_SKELETON`; below it :func:`predict` refuses them and
says why (:func:`unresolved`), and :func:`table` lists them as not
predicted. The ``planner`` simulation checks the model on ER-like tubules
(simulations/README.md).

Where the model is known to be weak: with very few labelled pixels per object
(sampling 1% of small objects: about one labelled pixel per kernel window or
fewer) the normal approximation and an n_eff fitted at another ratio no longer
describe the network, and a fixed draw on little data is memorised (the table
says when). simulations/README.md reports the
measured gaps, and those of the plain product ``clean_dice * Dice(T(M), M)``
for structured errors, which counts the two boundary errors in full.

The parts, each with its public seam (every name is re-exported here):

* :mod:`~metastructure.planner.calibration`: the :class:`Calibration` record,
  the recipe (:data:`DEFAULT_RECIPE`, :func:`fit_kwargs`) and the measured
  defaults (:data:`DEFAULT`, :data:`NO_AUGMENT_CAPACITY`, read from its JSON;
  :func:`write_constants`);
* :mod:`~metastructure.planner.law`: the scale law a calibration measures
  (:class:`ScaleLaw`, :data:`LEVEL`);
* :mod:`~metastructure.planner.model`: the prediction model (:class:`Masks`,
  :func:`predict`, :func:`solve_n_eff`);
* :mod:`~metastructure.planner.training`: :func:`calibrate` (:data:`CALIBRATION_LABELS`,
  :data:`FAILED`, :func:`calibration_split`), the part that trains networks;
* :mod:`~metastructure.planner.plan`: the presentation (:class:`Plan`, :func:`table`).
"""

from __future__ import annotations

from .calibration import (
    CONSTANTS_FILE,
    DEFAULT,
    DEFAULT_RECIPE,
    NO_AUGMENT_CAPACITY,
    Calibration,
    fit_kwargs,
    read_constants,
    write_constants,
)
from .law import LEVEL, ScaleLaw
from .model import (
    ANNOTATIONS,
    MIN_LABELLED_UNITS,
    MIN_RESOLVED,
    MIN_RESOLVED_SKELETON,
    N_EFF_MAX,
    N_EFF_MIN,
    Masks,
    Prediction,
    predict,
    solve_n_eff,
    unresolved,
)
from .plan import FLIPS, HOW_MANY_SLACK, RADII, RATIOS, SPACINGS, VALIDATED, Plan, table
from .training import CALIBRATION_LABELS, FAILED, calibrate, calibration_split

__all__ = [
    "ANNOTATIONS",
    "CALIBRATION_LABELS",
    "FAILED",
    "CONSTANTS_FILE",
    "DEFAULT",
    "DEFAULT_RECIPE",
    "FLIPS",
    "HOW_MANY_SLACK",
    "LEVEL",
    "MIN_LABELLED_UNITS",
    "MIN_RESOLVED",
    "MIN_RESOLVED_SKELETON",
    "NO_AUGMENT_CAPACITY",
    "N_EFF_MAX",
    "N_EFF_MIN",
    "RADII",
    "RATIOS",
    "SPACINGS",
    "ScaleLaw",
    "VALIDATED",
    "Calibration",
    "Masks",
    "Plan",
    "Prediction",
    "calibrate",
    "calibration_split",
    "fit_kwargs",
    "predict",
    "read_constants",
    "solve_n_eff",
    "table",
    "unresolved",
    "write_constants",
]
