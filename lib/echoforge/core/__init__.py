"""The numpy-only core of EchoForge: labels, checks, LV geometry, clinical measurements, agreement
statistics, and the volume orientation rule and header fields.

It needs numpy and the Python standard library only (Python 3.9 or later) and imports its own
modules relatively, so 3D Slicer ships it as it is: the Slicer module carries an identical copy
(``slicer_extension/EchoForge/EchoForgeCore``, kept identical by ``python -m echoforge.core_copy`` and
checked by the tests). The ``echoforge`` library, the MONAI Label app and the Slicer module all
measure with this code.

* :mod:`.labels`, :mod:`.errors`, :mod:`.validation` — the label convention, typed errors, input checks;
* :mod:`.contours` — binary-mask primitives (components, outline, resampling, polygon simplification);
* :mod:`.geometry` — mitral plane, apex, long axis, disks, contour length, volumes of one frame;
* :mod:`.curves` — LV area curve, ED/ES of one beat, jitter;
* :mod:`.measurements` — single-beat single-view and biplane EDV/ESV/EF/FAC of a clip;
* :mod:`.beats`, :mod:`.ecg` — every beat of a clip (from the volume curve or the ECG), rhythm, quality flags;
* :mod:`.clip` — every-beat EF, FAC, GLS, LA volume and LV mass, biplane pairs, the report block;
* :mod:`.agreement` — bias, limits of agreement, correlation;
* :mod:`.volume` — H×W×T orientation rule and header fields (one way to say "uncalibrated");
* :mod:`.pairing` — views from names, 2CH/4CH pairs of one patient.
"""

from .agreement import agreement
from .clip import measure_clip, measure_pair, report_measurements
from .curves import detect_ed_es, lv_area_curve, temporal_smoothness
from .errors import (
    EchoForgeError,
    EmptyLabelError,
    InvalidVideoError,
    LabelError,
    LabelShapeError,
    LabelValueError,
    UnknownFrameError,
)
from .geometry import N_DISKS, LVGeometry, biplane_volume, lv_geometry
from .measurements import (
    NO_SPACING_REASON,
    ejection_fraction,
    lv_volume_curve,
    measure_biplane,
    measure_labels,
)

__all__ = [
    "N_DISKS",
    "NO_SPACING_REASON",
    "EchoForgeError",
    "EmptyLabelError",
    "InvalidVideoError",
    "LVGeometry",
    "LabelError",
    "LabelShapeError",
    "LabelValueError",
    "UnknownFrameError",
    "agreement",
    "biplane_volume",
    "detect_ed_es",
    "ejection_fraction",
    "lv_area_curve",
    "lv_geometry",
    "lv_volume_curve",
    "measure_biplane",
    "measure_clip",
    "measure_labels",
    "measure_pair",
    "report_measurements",
    "temporal_smoothness",
]
