"""LV area and volume curves over a clip: the area curve, ED/ES of one beat, frame-to-frame jitter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from .contours import gaussian_smooth
from .labels import LV
from .validation import check_labels, check_spacing


def lv_area_curve(labels: np.ndarray, spacing: Optional[Sequence[float]]) -> np.ndarray:
    """LV cavity area on every frame: ``T`` float64 in mm² (pixels² when ``spacing`` is ``None``).

    Counts label-1 pixels as they are (no component cleaning), so it is fast on long clips.
    """
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    counts = (lab == LV).sum(axis=(1, 2)).astype(np.float64)
    return counts * (sp[0] * sp[1] if sp else 1.0)


def smooth_curve(values: np.ndarray, sigma_frames: float = 1.0) -> np.ndarray:
    """``values`` smoothed by a Gaussian of ``sigma_frames`` (returned as they are below 5 frames)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    return gaussian_smooth(a, sigma_frames) if a.size >= 5 and sigma_frames > 0 else a


def detect_ed_es(areas: np.ndarray, sigma_frames: float = 1.0, min_swing: float = 0.1) -> tuple[int, int]:
    """End-diastolic and end-systolic frames of one beat from an LV area (or volume) curve.

    ED is a largest and ES a smallest cavity of the same beat. The curve is smoothed with a Gaussian
    of ``sigma_frames`` (skipped below 5 frames) and cut into alternating maxima and minima, ignoring
    swings smaller than ``min_swing`` × its range (the clip ends count as extrema). Each maximum is
    paired with the minimum after it (its systole), or with the one before it when that one is
    deeper by more than the same margin (a systole cut short by the end of the clip). The pair with
    the largest area change wins, the earliest of those within 10 % of it, so a multi-beat clip gives
    its first clear beat and a clip that starts or ends mid-systole does not give a partial one. ED
    and ES are finally moved to the raw extrema within 2σ of the smoothed ones.

    So a single ED→ES half cycle gives its first and last frames, an ES→ED clip its last and first
    (the global maximum and minimum), and a flat curve ``(0, 0)``. Every beat of a clip, with the
    clip ends never taken as extrema on their own, is :func:`~.beats.detect_beats`.

    Args:
        areas: ``T`` LV areas or volumes, finite.
        sigma_frames: smoothing, in frames.
        min_swing: smallest swing taken as a beat, as a fraction of the curve's range.

    Returns:
        ``(ed, es)`` frame indices.
    """
    a = np.asarray(areas, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError("the area curve must be a non-empty sequence of finite numbers")
    smooth = smooth_curve(a, sigma_frames)
    span = float(smooth.max() - smooth.min())
    if span <= 0:
        return 0, 0
    margin = min_swing * span
    pivots = turning_points(smooth, margin)
    if len(pivots) < 2:  # no swing reaches the margin
        return int(np.argmax(a)), int(np.argmin(a))
    pairs = []
    for k, peak in enumerate(pivots):
        before = pivots[k - 1] if k > 0 else None
        after = pivots[k + 1] if k + 1 < len(pivots) else None
        if smooth[peak] < smooth[after if after is not None else before]:
            continue  # a minimum: the pivots alternate
        if after is None or (before is not None and smooth[before] < smooth[after] - margin):
            after = before
        pairs.append((peak, after))
    changes = np.array([smooth[ed] - smooth[es] for ed, es in pairs])
    ed, es = pairs[int(np.flatnonzero(changes >= 0.9 * changes.max())[0])]
    return refine_extremum(a, ed, sigma_frames, largest=True), refine_extremum(a, es, sigma_frames, largest=False)


def refine_extremum(values: np.ndarray, index: int, sigma_frames: float, largest: bool) -> int:
    """The raw maximum (or minimum) of ``values`` within 2σ (at least one frame) of ``index``."""
    w = max(1, math.ceil(2 * sigma_frames))
    lo = max(index - w, 0)
    window = values[lo:index + w + 1]
    return lo + int(np.argmax(window) if largest else np.argmin(window))


def turning_points(curve: np.ndarray, threshold: float) -> list[int]:
    """Indices of the alternating maxima and minima whose swings reach ``threshold`` (ends included)."""
    pivots: list[int] = []
    hi = lo = 0
    trend = 0  # +1 rising, -1 falling, 0 not yet known
    for k in range(1, curve.size):
        v = curve[k]
        if trend >= 0 and v > curve[hi]:
            hi = k
        if trend <= 0 and v < curve[lo]:
            lo = k
        if trend >= 0 and curve[hi] - v >= threshold:
            pivots.append(hi)  # a maximum confirmed by the fall after it
            trend, lo = -1, k
        elif trend <= 0 and v - curve[lo] >= threshold:
            pivots.append(lo)
            trend, hi = 1, k
    if trend:
        pivots.append(hi if trend > 0 else lo)
    return pivots


def temporal_smoothness(areas: np.ndarray) -> float:
    """Frame-to-frame jitter of an area (or volume) curve: mean |second difference| / mean value.

    0 for a curve that changes linearly; a segmentation that flickers scores high. Scale-free, so
    mm² and pixel² curves give the same number. NaN for fewer than 3 frames or a zero mean.
    """
    a = np.asarray(areas, dtype=np.float64).ravel()
    mean = float(np.mean(a)) if a.size else 0.0
    if a.size < 3 or mean == 0:
        return float("nan")
    return float(np.mean(np.abs(np.diff(a, n=2))) / mean)
