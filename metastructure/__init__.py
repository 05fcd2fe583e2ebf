"""metastructure: why segmentation networks learn the meta-structure of noisy labels.

Modules (one concept each):

* :mod:`metastructure.noise`: label types (sample, flip, corrupt, dilate, erode,
  skeletonize, shift, random labels, boundary noise).
* :mod:`metastructure.ntm`: their transition matrices, estimates and information.
* :mod:`metastructure.density`: fraction and intensity fields, the partition,
  Lemma 1 and the matched threshold t*.
* :mod:`metastructure.metrics`: Dice, IoU, accuracy, ROC-AUC, mIoU, and
  :func:`~metastructure.metrics.evaluate`, every threshold protocol side by side.
* :mod:`metastructure.data`: synthetic NUC / MITO / ER images and multi-class
  scenes, the packaged real nuclei, a user's folder of image/mask pairs, and
  ``as_images``, the one image normaliser.
* :mod:`metastructure.nets`: small U-Net and FCN as ``(init, apply)`` pairs.
* :mod:`metastructure.losses`: BCE, cross-entropy with ``ignore``, soft IoU, DMI.
* :mod:`metastructure.train`: ``init``/``step``, ``make_step`` (the one jitted
  training step), ``fit`` (fixed or fresh noisy labels; the result knows its
  label type), ``fit_many``.
* :mod:`metastructure.planner`: what a network trained on cheaper labels of
  masks like yours reaches, and where to threshold it (``calibrate``,
  ``predict``, ``table``; ``python -m metastructure plan``).
* :mod:`metastructure.thresholds`: Otsu, adaptive and exact k-means thresholds,
  and the ground-truth-free local separation score of a mask.
* :mod:`metastructure.unsupervised`: iGTT with EMS and pseudo-label selection
  by DMI or Otsu's criterion, starting from those thresholds.
* :mod:`metastructure.runtime`: :func:`configure_cpu`, process set-up for fast
  CPU training, and ``use_compilation_cache`` (compiled programs kept on disk
  for the next process); call them before the first JAX computation.
"""

from . import data, density, losses, metrics, nets, noise, ntm, planner, runtime, thresholds, train, unsupervised
from .density import (
    MatchedThreshold,
    expected_fraction_field,
    fraction_field,
    intensity_field,
    matched_threshold,
    partition,
)
from .runtime import configure_cpu


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, the one source); ``0+unknown`` when the package
    is imported from a folder that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("metastructure")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

__all__ = [
    "MatchedThreshold",
    "__version__",
    "configure_cpu",
    "data",
    "density",
    "expected_fraction_field",
    "fraction_field",
    "intensity_field",
    "losses",
    "matched_threshold",
    "metrics",
    "nets",
    "noise",
    "ntm",
    "partition",
    "planner",
    "runtime",
    "thresholds",
    "train",
    "unsupervised",
]
