"""Checks of what every measurement takes: label maps, pixel spacings, frame times, annotated frames.

Each check returns the value in the form the measurements use, or raises an
:class:`~.errors.EchoForgeError` subclass whose message says what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np

from .errors import EmptyLabelError, InvalidVideoError, LabelShapeError, LabelValueError, UnknownFrameError
from .labels import MAX_LABEL

Spacing = tuple[float, float]


def check_label_values(labels: np.ndarray, name: str = "labels", source: Optional[str] = None) -> np.ndarray:
    """``labels`` as uint8 when they hold whole numbers 0-3 (bool is read as 0/1).

    Raises:
        LabelValueError: non-integer values, or values outside 0-3 (the message lists a few).
    """
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise LabelValueError(f"{name} must hold whole numbers 0-3", source)
    elif arr.dtype.kind not in "iu":
        raise LabelValueError(f"{name} must be integers, got dtype {arr.dtype}", source)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > MAX_LABEL:
            bad = sorted(int(v) for v in np.unique(arr) if v < 0 or v > MAX_LABEL)
            raise LabelValueError(f"{name} hold values {bad[:8]} outside 0-3 (0 background, 1 LV cavity, "
                                  "2 myocardium, 3 left atrium)", source)
    return arr.astype(np.uint8, copy=False)


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Validate a label clip and return it as ``T×H×W`` uint8 (an ``H×W`` map becomes one frame).

    Raises:
        LabelShapeError: not 2-D or 3-D, or an empty frame size.
        LabelValueError: non-integer values or values outside 0-3.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise LabelShapeError(f"{name} must be T×H×W (or H×W), got shape {arr.shape}")
    return check_label_values(arr, name)


def check_spacing(spacing: Optional[Sequence[float]]) -> Optional[Spacing]:
    """Validate a pixel spacing (row, col) in mm; ``None`` (uncalibrated) passes through.

    Raises:
        InvalidVideoError: not two finite positive numbers.
    """
    if spacing is None:
        return None
    values = tuple(float(v) for v in np.asarray(spacing, dtype=float).ravel())
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidVideoError(f"pixel spacing must be two positive numbers (row, col) in mm, got {spacing}")
    return values[0], values[1]


def check_frame_time(frame_time_ms: Optional[float]) -> Optional[float]:
    """Validate a frame time in ms; ``None`` (unknown) passes through.

    Raises:
        InvalidVideoError: not a finite positive number.
    """
    if frame_time_ms is None:
        return None
    value = float(frame_time_ms)
    if not (math.isfinite(value) and value > 0):
        raise InvalidVideoError(f"frame time must be positive, got {frame_time_ms}")
    return value


def check_frame(index: int, n_frames: int, what: str = "frame") -> int:
    """A frame index in ``0..n_frames-1`` (negative counts from the end).

    Raises:
        UnknownFrameError: outside the clip.
    """
    value = int(index)
    if not -n_frames <= value < n_frames:
        raise UnknownFrameError(f"{what} {index} is outside the clip (0..{n_frames - 1})")
    return value % n_frames


def validate_labels(labels: np.ndarray, frames_shape: Sequence[int], annotated: Iterable[int] = (),
                    source: Optional[str] = None, require_foreground: bool = True) -> tuple[np.ndarray, tuple[int, ...]]:
    """Check a label volume against its video and return ``(labels uint8, annotated frames)``.

    Without ``annotated`` the frames holding foreground are the annotated ones.
    ``require_foreground=False`` accepts labels with no foreground at all (a model's prediction may
    find nothing); annotated frames must still hold foreground.

    Raises:
        LabelShapeError: the shape differs from the frames'.
        LabelValueError: values outside 0-3 (or not integers).
        EmptyLabelError: no foreground at all, or an annotated frame without foreground.
        UnknownFrameError: an annotated index outside the video.
    """
    arr = np.asarray(labels)
    frames_shape = tuple(frames_shape)
    if arr.ndim == 2 and len(frames_shape) == 3 and frames_shape[0] == 1:
        arr = arr[None]
    if arr.shape != frames_shape:
        raise LabelShapeError(f"label shape {arr.shape} differs from the video's {frames_shape} (T×H×W)", source)
    arr = check_label_values(arr, "labels", source)
    foreground = arr.reshape(arr.shape[0], -1).any(axis=1)
    if require_foreground and not foreground.any():
        raise EmptyLabelError("the labels contain no foreground (every value is 0)", source)
    n = arr.shape[0]
    ann = sorted({_frame_number(a, source) for a in annotated})
    if not ann:
        ann = [int(i) for i in np.flatnonzero(foreground)]
    for a in ann:
        if not 0 <= a < n:
            raise UnknownFrameError(f"annotated frame {a} is outside the video (0..{n - 1})", source)
    empty = [a for a in ann if not foreground[a]]
    if empty:
        raise EmptyLabelError(f"annotated frame(s) {empty} contain no foreground", source)
    return arr, tuple(ann)


def _frame_number(value: object, source: Optional[str]) -> int:
    """A frame index as given: a whole number (``True`` or ``7.9`` are not frame numbers)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UnknownFrameError(f"annotated frames must be whole frame numbers, got {value!r}", source)
    return int(value)
