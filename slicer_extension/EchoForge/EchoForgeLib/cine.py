"""What a cine loaded in 3D Slicer says about itself: its frames, its frame time, its pixel size.

Slicer holds a 2-D+t echo video in one of three ways, and each needs reading differently:

* a **sequence** of single-slice frames (what the DICOM module's image-sequence plugin makes of an
  ultrasound cine): each frame is ``[1, j, i]`` (grey) or ``[1, j, i, 3]`` (RGB); the frame time is
  in the sequence's index values, seconds rounded to the millisecond;
* a **scalar volume** with the frames along its third axis (NIfTI/NRRD): ``[k, j, i]``;
* a **MultiVolume** (the MultiVolume importer): ``[k, j, i, T]`` where the *last* axis is time, not
  colour.

The pixel size is only known when the source says so. The image-sequence plugin keeps a 1.0 mm
spacing when the DICOM has no usable ultrasound calibration region (and since Slicer 5.8 its
"Image spacing may need to be calibrated" warning no longer appears), so the spacing is read
from the DICOM attributes themselves, with the rule the ``echoforge`` library uses.

No Slicer import: the Slicer module passes arrays, index values and the DICOM dataset in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from .errors import VolumeFormatError

#: how ``slicer.util.arrayFromVolume`` of each kind of node is laid out
SCALAR, VECTOR, MULTIVOLUME = "scalar", "vector", "multivolume"
#: ITU-R BT.601 luma, the weights the ``echoforge`` library converts colour frames with
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: sequence index units whose values are times, and their factor to milliseconds
TIME_UNITS_MS = {"s": 1000.0, "sec": 1000.0, "ms": 1.0, "msec": 1.0}
#: DICOM PhysicalUnitsX/YDirection value for centimetres; RegionSpatialFormat and RegionDataType for 2-D tissue
CM_UNITS, SPATIAL_2D, TISSUE = 3, 1, 1


def frames_kji(array: np.ndarray, kind: str, name: str = "the video") -> np.ndarray:
    """The frames of ``arrayFromVolume(node)`` as a ``[frames, j, i]`` grey array.

    Args:
        array: ``[k, j, i]`` (scalar), ``[k, j, i, c]`` (vector: c = 3 or 4 colour components, or 1)
            or ``[k, j, i, T]`` (MultiVolume, one slice: k = 1).
        kind: :data:`SCALAR`, :data:`VECTOR` or :data:`MULTIVOLUME`.

    Raises:
        VolumeFormatError: a layout that is not a 2-D+t video (a 3-D MultiVolume, a vector volume
            with an unknown number of components).
    """
    values = np.asarray(array)
    if kind == SCALAR:
        if values.ndim != 3:
            raise VolumeFormatError(f"{name}: a scalar volume is [k, j, i], got shape {values.shape}")
        return values
    if values.ndim != 4:
        raise VolumeFormatError(f"{name}: a {kind} volume is 4-D, got shape {values.shape}")
    if kind == VECTOR:
        components = values.shape[3]
        if components == 1:
            return values[..., 0]
        if components in (3, 4):  # RGB or RGBA: the grey level the library would compute
            return values[..., :3].astype(np.float32) @ LUMA
        raise VolumeFormatError(f"{name}: a vector volume with {components} components is not a colour video")
    if kind == MULTIVOLUME:
        if values.shape[0] != 1:
            raise VolumeFormatError(f"{name}: a MultiVolume of {values.shape[0]} slices is a 3-D+t series; "
                                    "EchoForge segments 2-D cine loops (one slice over time).")
        return np.ascontiguousarray(np.moveaxis(values[0], -1, 0))  # [T, j, i]
    raise ValueError(f"unknown volume kind {kind!r}")


def frame_time_from_index(index_values: Sequence[str], unit: str,
                          playback_fps: Optional[float] = None) -> Optional[float]:
    """Time between frames in ms from a sequence's index values, or ``None`` when they are not times.

    The image-sequence plugin writes the times in seconds with three decimals (``0.033``,
    ``0.067``, ...), so the step between two neighbours is off by up to a millisecond; the mean
    step over the whole clip ((last − first) / (n − 1)) is off by at most 1 ms / (n − 1). The
    plugin also sets the browser's playback rate to the exact frame rate: when ``playback_fps``
    agrees with the index values within that rounding, it gives the exact frame time.
    """
    factor = TIME_UNITS_MS.get(str(unit).strip().lower())
    if factor is None or len(index_values) < 2:
        return None
    try:
        times = [float(v) for v in index_values]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(t) for t in times) or any(times[k + 1] <= times[k] for k in range(len(times) - 1)):
        return None
    mean_step = (times[-1] - times[0]) / (len(times) - 1) * factor
    if playback_fps and math.isfinite(playback_fps) and playback_fps > 0:
        exact = 1000.0 / playback_fps
        if abs(exact - mean_step) <= 1.0 / (len(times) - 1) + 1e-9:
            return exact
    return mean_step


def spacing_from_dicom(dataset: Any) -> Optional[tuple[float, float]]:
    """Pixel size (row, col) in mm from a DICOM dataset's attributes, or ``None`` when it has no calibration.

    The rule of the ``echoforge`` library: the 2-D region of ``SequenceOfUltrasoundRegions``
    calibrated in cm (a tissue region if there is one, the largest such), else ``PixelSpacing``,
    else ``ImagerPixelSpacing``. Any object with pydicom-style attribute access works.
    """
    usable = []
    for region in getattr(dataset, "SequenceOfUltrasoundRegions", None) or []:
        deltas = (_number(region, "PhysicalDeltaX"), _number(region, "PhysicalDeltaY"))
        if (_number(region, "RegionSpatialFormat") == SPATIAL_2D
                and _number(region, "PhysicalUnitsXDirection") == CM_UNITS
                and _number(region, "PhysicalUnitsYDirection") == CM_UNITS
                and all(d is not None and math.isfinite(d) and d > 0 for d in deltas)):
            usable.append((region, deltas))
    if usable:
        tissue = [u for u in usable if _number(u[0], "RegionDataType") == TISSUE]
        _, (dx, dy) = max(tissue or usable, key=lambda u: _region_area(u[0]))
        return dy * 10.0, dx * 10.0
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(dataset, keyword, None)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
            return row, col
    return None


def _number(item: Any, keyword: str) -> Optional[float]:
    value = getattr(item, keyword, None)
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _region_area(region: Any) -> float:
    box = [_number(region, k) for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1",
                                        "RegionLocationMaxY1")]
    if any(v is None for v in box):
        return 0.0
    x0, y0, x1, y1 = box
    return (x1 - x0 + 1) * (y1 - y0 + 1)
