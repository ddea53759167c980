"""Evaluation metrics: overlap and surface distances, clinical measurements, agreement statistics.

* :mod:`~echoforge.metrics.overlap`: Dice, IoU, HD95 and ASSD per structure and frame.
* :mod:`~echoforge.metrics.clinical`: LV area curve, ED/ES detection, long axis, volumes (method of
  disks, area–length, biplane) and ejection fraction.
* :mod:`~echoforge.metrics.agreement`: bias, limits of agreement, correlation of paired measurements.
"""

from echoforge.metrics.agreement import agreement
from echoforge.metrics.clinical import (
    LVGeometry,
    biplane_volume,
    detect_ed_es,
    ejection_fraction,
    lv_area_curve,
    lv_geometry,
    measure_biplane,
    measure_labels,
    temporal_smoothness,
)
from echoforge.metrics.overlap import STRUCTURE_LABELS, overlap_metrics

__all__ = [
    "STRUCTURE_LABELS",
    "LVGeometry",
    "agreement",
    "biplane_volume",
    "detect_ed_es",
    "ejection_fraction",
    "lv_area_curve",
    "lv_geometry",
    "measure_biplane",
    "measure_labels",
    "overlap_metrics",
    "temporal_smoothness",
]
