"""metastructure: why segmentation networks learn the meta-structure of noisy labels.

Modules (one concept each):

* :mod:`metastructure.noise`: label types (sample, flip, corrupt, dilate, erode,
  skeletonize, shift, random labels, boundary noise).
* :mod:`metastructure.ntm`: their transition matrices, estimates and information.
* :mod:`metastructure.density`: fraction and intensity fields, the partition,
  Lemma 1 and the matched threshold t*.
* :mod:`metastructure.metrics`: Dice, IoU, accuracy, ROC-AUC, mIoU, and the
  threshold protocols.
"""

from . import density, metrics, noise, ntm
from .density import (
    MatchedThreshold,
    expected_fraction_field,
    fraction_field,
    intensity_field,
    matched_threshold,
    partition,
)

__version__ = "0.1.0"

__all__ = [
    "MatchedThreshold",
    "__version__",
    "density",
    "expected_fraction_field",
    "fraction_field",
    "intensity_field",
    "matched_threshold",
    "metrics",
    "noise",
    "ntm",
    "partition",
]
