"""Evaluation metrics: overlap and surface distances, clinical measurements, agreement statistics.

* :mod:`~echoforge.metrics.overlap`: Dice, IoU, HD95 and ASSD per structure and frame (MONAI).
* Clinical measurements (LV area curve, ED/ES, long axis, volumes by the method of disks,
  area–length and biplane, EF) and agreement statistics come from the numpy-only core,
  :mod:`echoforge.core`, and are importable from here too.
"""

from echoforge.core.agreement import agreement
from echoforge.core.curves import detect_ed_es, lv_area_curve, temporal_smoothness
from echoforge.core.geometry import LVGeometry, biplane_volume, lv_geometry
from echoforge.core.measurements import ejection_fraction, measure_biplane, measure_labels
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
