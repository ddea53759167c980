"""Echo measurements on returned labels, in numpy only: LV area curve, ED/ES, volumes and EF.

The algorithm is the one of the ``echoforge`` library (``echoforge.metrics.clinical``), re-written
without scipy, OpenCV or scikit-image so that it runs in 3D Slicer's Python, and checked against
the library on the same labels by the tests. In short, for the LV cavity (label 1) of one frame:

1. keep its largest 4-connected component and fill its holes;
2. resample cavity and left atrium (label 3) to square pixels of the smaller spacing (nearest);
3. trace the cavity outline at sub-pixel precision (marching squares, iso-line 0.5);
4. the mitral plane is the LV–LA interface when the atrium touches the cavity, else the longest
   straight stretch of the outline that faces the far end of the cavity;
5. the apex is the outline point farthest from the mitral midpoint; the long axis is cut into
   20 disks whose diameters are the outline chords through the disk centres.

Volumes (ml): single-plane disks π/4·Σdᵢ²·Δ, area–length 8A²/(3πL), biplane disks
π/4·Σd2CHᵢ·d4CHᵢ·Δ with Δ = max(L2CH, L4CH)/20. EF = 100·(EDV − ESV)/EDV.

Without a pixel spacing no volume is reported (``available`` is False and ``reason`` says why);
EF and FAC are still given, computed from pixel areas as ratios that do not depend on the scale.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .errors import MeasurementError
from .labels import LA, LV, MAX_LABEL

N_DISKS = 20
MIN_CAVITY_PIXELS = 4  # a cavity smaller than this has no measurable outline
MIN_INTERFACE = 0.1  # shortest LV–LA interface accepted, as a fraction of the cavity length
COS_45 = math.cos(math.pi / 4)
NO_SPACING_REASON = ("no pixel spacing: volumes are not reported; EF and FAC are ratios and are computed "
                     "assuming square pixels")
NO_SPACING_EF_NOTE = "no pixel spacing: EF from pixel areas (scale-free), volumes unavailable"

Spacing = tuple[float, float]


@dataclass(frozen=True, eq=False)
class LVGeometry:
    """Long axis and disks of one LV cavity.

    Points are (row, col) in (fractional) pixels of the label map; lengths in mm (pixels without
    spacing), the area in mm² (pixels²).

    Attributes:
        hinges: ``2×2`` the two mitral hinge points.
        base: ``2`` the midpoint of the mitral plane.
        apex: ``2`` the apex.
        length: base-to-apex distance L.
        area: cavity area (largest component, holes filled).
        diameters: ``n_disks`` disk diameters from base to apex.
        method: how the mitral plane was found, ``"la_interface"`` or ``"straight_segment"``.
    """

    hinges: np.ndarray
    base: np.ndarray
    apex: np.ndarray
    length: float
    area: float
    diameters: np.ndarray
    method: str

    @property
    def volume_disks(self) -> float:
        """Single-plane method of disks, in ml."""
        step = self.length / len(self.diameters)
        return float(math.pi / 4 * np.sum(self.diameters ** 2) * step / 1000.0)

    @property
    def volume_area_length(self) -> float:
        """Area–length volume 8A²/(3πL), in ml."""
        return float(8 * self.area ** 2 / (3 * math.pi * self.length) / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (points as lists)."""
        return {"hinges": self.hinges.tolist(), "base": self.base.tolist(), "apex": self.apex.tolist(),
                "length": self.length, "area": self.area, "diameters": self.diameters.tolist(),
                "method": self.method}


# ----------------------------------------------------------------------------- input checks
def check_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as ``T×H×W`` uint8 (an ``H×W`` map becomes one frame), values 0-3.

    Raises:
        MeasurementError: wrong dimensionality, non-integer values or values outside 0-3.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise MeasurementError(f"labels must be T×H×W (or H×W), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise MeasurementError("labels must hold whole numbers 0-3")
    elif arr.dtype.kind not in "iu":
        raise MeasurementError(f"labels must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > MAX_LABEL:
        raise MeasurementError(
            f"labels hold values in [{lo}, {hi}]; expected 0 background, 1 LV cavity, 2 myocardium, 3 left atrium")
    return arr.astype(np.uint8, copy=False)


def check_spacing(spacing: Optional[Sequence[float]]) -> Optional[Spacing]:
    """A pixel spacing (row, col) in mm as two floats; ``None`` passes through (pixels)."""
    if spacing is None:
        return None
    values = tuple(float(v) for v in np.asarray(spacing, dtype=float).ravel())
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        raise MeasurementError(f"pixel spacing must be two positive numbers (row, col) in mm, got {spacing}")
    return values[0], values[1]


# ----------------------------------------------------------------------------- curves and timing
def lv_area_curve(labels: np.ndarray, spacing: Optional[Sequence[float]]) -> np.ndarray:
    """LV cavity area of every frame: ``T`` float64 in mm² (pixels² without spacing)."""
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    counts = (lab == LV).sum(axis=(1, 2)).astype(np.float64)
    return counts * (sp[0] * sp[1] if sp else 1.0)


def gaussian_smooth(values: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """1-D Gaussian smoothing with edge values repeated beyond the ends (scipy's ``mode="nearest"``)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    weights /= weights.sum()
    padded = np.pad(values, radius, mode="edge")
    out = np.zeros(values.size, dtype=np.float64)
    for k, w in enumerate(weights):
        out += w * padded[k:k + values.size]
    return out


def detect_ed_es(areas: np.ndarray, sigma_frames: float = 1.0, min_swing: float = 0.1) -> tuple[int, int]:
    """End-diastolic and end-systolic frames from an LV area (or volume) curve.

    The curve is smoothed (σ = ``sigma_frames``, not below 5 frames) and cut into alternating
    maxima and minima whose swings reach ``min_swing`` × its range (the ends count). Each maximum
    pairs with the minimum after it, or with the one before when that one is deeper by more than the
    same margin; the pair with the largest change wins (the earliest within 10 % of it). ED and ES
    then move to the raw extrema within 2σ. A flat curve gives ``(0, 0)``.
    """
    a = np.asarray(areas, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise MeasurementError("the area curve must be a non-empty sequence of finite numbers")
    smooth = gaussian_smooth(a, sigma_frames) if a.size >= 5 and sigma_frames > 0 else a
    span = float(smooth.max() - smooth.min())
    if span <= 0:
        return 0, 0
    margin = min_swing * span
    pivots = _turning_points(smooth, margin)
    if len(pivots) < 2:
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
    w = max(1, math.ceil(2 * sigma_frames))
    ed = max(ed - w, 0) + int(np.argmax(a[max(ed - w, 0):ed + w + 1]))
    es = max(es - w, 0) + int(np.argmin(a[max(es - w, 0):es + w + 1]))
    return ed, es


def _turning_points(curve: np.ndarray, threshold: float) -> list[int]:
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
            pivots.append(hi)
            trend, lo = -1, k
        elif trend <= 0 and v - curve[lo] >= threshold:
            pivots.append(lo)
            trend, hi = 1, k
    if trend:
        pivots.append(hi if trend > 0 else lo)
    return pivots


def temporal_smoothness(areas: np.ndarray) -> float:
    """Frame-to-frame jitter of a curve: mean |second difference| / mean value (NaN under 3 frames)."""
    a = np.asarray(areas, dtype=np.float64).ravel()
    mean = float(np.mean(a)) if a.size else 0.0
    if a.size < 3 or mean == 0:
        return float("nan")
    return float(np.mean(np.abs(np.diff(a, n=2))) / mean)


# ----------------------------------------------------------------------------- geometry
def _geometry(labels: np.ndarray, spacing: Spacing, n_disks: int, what: str) -> LVGeometry:
    if n_disks < 1:
        raise MeasurementError(f"n_disks must be at least 1, got {n_disks}")
    cavity = _clean_cavity(labels == LV)
    if cavity.sum() < MIN_CAVITY_PIXELS:
        raise MeasurementError(f"{what} has no LV cavity (label 1) to measure")
    area = float(cavity.sum()) * spacing[0] * spacing[1]
    cavity_iso, iso = _to_isotropic(cavity, spacing)
    atrium_iso, _ = _to_isotropic(labels == LA, spacing)
    outline_px = _outline(cavity_iso)
    outline = (outline_px + 0.5) * np.array(iso)
    extent = 2.0 * float(np.linalg.norm(outline - outline.mean(axis=0), axis=1).max())

    hinges = _hinges_from_atrium(outline, outline_px, cavity_iso, atrium_iso, extent)
    method = "la_interface"
    if hinges is None:
        hinges = _hinges_from_outline(outline, extent, max(iso))
        method = "straight_segment"
    base = hinges.mean(axis=0)
    apex = _apex(outline, base, max(iso))
    length = float(np.linalg.norm(apex - base))
    diameters = _disk_diameters(outline, base, apex, n_disks)

    def to_pixels(p: np.ndarray) -> np.ndarray:
        return p / np.array(spacing) - 0.5

    return LVGeometry(hinges=to_pixels(hinges), base=to_pixels(base), apex=to_pixels(apex), length=length,
                      area=area, diameters=diameters, method=method)


def _grow(region: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``region`` grown through 4-connected steps inside ``allowed`` until it stops changing."""
    region = region & allowed
    while True:
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= allowed
        if np.array_equal(grown, region):
            return region
        region = grown


def _clean_cavity(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (the first in raster order on a tie), holes filled."""
    remaining = mask.copy()
    largest, largest_size = np.zeros_like(mask), 0
    while remaining.any():
        seed = np.zeros_like(mask)
        seed.flat[int(np.argmax(remaining))] = True
        component = _grow(seed, remaining)
        size = int(component.sum())
        if size > largest_size:
            largest, largest_size = component, size
        remaining &= ~component
    outside = np.zeros_like(mask)  # background reachable from the border; the rest is a hole
    outside[[0, -1], :] = True
    outside[:, [0, -1]] = True
    outside = _grow(outside, ~largest)
    return ~outside


def _nearest_exact_index(source: int, target: int) -> np.ndarray:
    """Source index of each target index in a nearest-neighbour resize sampled at pixel centres.

    The 16-bit fixed-point arithmetic of OpenCV's ``INTER_NEAREST_EXACT``, so that results match the
    library's bit for bit.
    """
    step = ((source << 16) + target // 2) // target
    offset = step // 2 - source % 2
    return np.minimum((step * np.arange(target) + offset) >> 16, source - 1)


def _to_isotropic(mask: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, Spacing]:
    """``mask`` resampled (nearest) to square pixels of the smaller spacing, and the exact new spacing."""
    h, w = mask.shape
    iso = min(spacing)
    nh, nw = max(round(h * spacing[0] / iso), 1), max(round(w * spacing[1] / iso), 1)
    if (nh, nw) == (h, w):
        return mask.astype(bool), spacing
    rows, cols = _nearest_exact_index(h, nh), _nearest_exact_index(w, nw)
    return mask[np.ix_(rows, cols)].astype(bool), (spacing[0] * h / nh, spacing[1] * w / nw)


# marching squares on a binary image at level 0.5, low values 8-connected: for each square case
# (bit 1 upper-left, 2 upper-right, 4 lower-left, 8 lower-right above the level) the segments as
# (from, to) edge names, drawn with the lower values on their left
_SQUARE_SEGMENTS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (("top", "left"),), 2: (("right", "top"),), 3: (("right", "left"),), 4: (("left", "bottom"),),
    5: (("top", "bottom"),), 6: (("right", "top"), ("left", "bottom")), 7: (("right", "bottom"),),
    8: (("bottom", "right"),), 9: (("top", "left"), ("bottom", "right")), 10: (("bottom", "top"),),
    11: (("bottom", "left"),), 12: (("left", "right"),), 13: (("top", "right"),), 14: (("left", "top"),),
}


def _contour_segments(image: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Marching-squares segments of a binary image, square by square in raster order."""
    high = image > 0.5
    case = (high[:-1, :-1] * 1 + high[:-1, 1:] * 2 + high[1:, :-1] * 4 + high[1:, 1:] * 8).astype(np.int64)
    segments = []
    for r0, c0 in np.argwhere((case != 0) & (case != 15)):
        r, c = float(r0), float(c0)
        edges = {"top": (r, c + 0.5), "bottom": (r + 1.0, c + 0.5), "left": (r + 0.5, c), "right": (r + 0.5, c + 1.0)}
        for start, end in _SQUARE_SEGMENTS[int(case[r0, c0])]:
            segments.append((edges[start], edges[end]))
    return segments


def _assemble_contours(segments: list[tuple[tuple[float, float], tuple[float, float]]]) -> list[np.ndarray]:
    """Chain segments into contours, in the order of each contour's first segment."""
    current = 0
    contours: dict[int, deque] = {}
    starts: dict[tuple[float, float], tuple[deque, int]] = {}
    ends: dict[tuple[float, float], tuple[deque, int]] = {}
    for from_point, to_point in segments:
        tail, tail_num = starts.pop(to_point, (None, None))
        head, head_num = ends.pop(from_point, (None, None))
        if tail is not None and head is not None:
            if tail is head:
                head.append(to_point)  # closes a contour
            elif tail_num > head_num:
                head.extend(tail)
                contours.pop(tail_num, None)
                starts[head[0]] = (head, head_num)
                ends[head[-1]] = (head, head_num)
            else:
                tail.extendleft(reversed(head))
                starts.pop(head[0], None)
                contours.pop(head_num, None)
                starts[tail[0]] = (tail, tail_num)
                ends[tail[-1]] = (tail, tail_num)
        elif tail is None and head is None:
            contour = deque((from_point, to_point))
            contours[current] = contour
            starts[from_point] = (contour, current)
            ends[to_point] = (contour, current)
            current += 1
        elif head is None:
            tail.appendleft(from_point)
            starts[from_point] = (tail, tail_num)
        else:
            head.append(to_point)
            ends[to_point] = (head, head_num)
    return [np.array(contour) for _, contour in sorted(contours.items(), key=lambda item: item[0])]


def _outline(mask: np.ndarray) -> np.ndarray:
    """``N×2`` closed sub-pixel outline (row, col) of a single-component mask, without the repeated end point."""
    contours = _assemble_contours(_contour_segments(np.pad(mask, 1).astype(np.float64)))
    return max(contours, key=len)[:-1] - 1.0


def _hinges_from_atrium(outline: np.ndarray, outline_px: np.ndarray, cavity: np.ndarray, atrium: np.ndarray,
                        extent: float) -> Optional[np.ndarray]:
    """Ends (``2×2`` mm) of the LV–LA interface, or ``None`` when the atrium does not touch the cavity.

    An outline point is on the interface when the pixel outside the cavity next to it, or the next
    one in the same direction (a one-pixel gap), is atrium.
    """
    if not atrium.any():
        return None
    pad = 2
    cavity, atrium = np.pad(cavity, pad), np.pad(atrium, pad)
    rc = outline_px + pad
    vertical = np.abs(rc[:, 0] - np.round(rc[:, 0])) > 0.25  # the two pixels are stacked vertically
    first = np.stack([np.where(vertical, np.floor(rc[:, 0]), np.round(rc[:, 0])),
                      np.where(vertical, np.round(rc[:, 1]), np.floor(rc[:, 1]))], axis=1).astype(int)
    second = first + np.stack([vertical, ~vertical], axis=1)
    first_inside = cavity[first[:, 0], first[:, 1]][:, None]
    outside = np.where(first_inside, second, first)
    beyond = np.clip(2 * outside - np.where(first_inside, first, second), 0, np.array(atrium.shape) - 1)
    touching = outline[atrium[outside[:, 0], outside[:, 1]] | atrium[beyond[:, 0], beyond[:, 1]]]
    if len(touching) < 3:
        return None
    hinges = _fit_chord(touching)
    if np.linalg.norm(hinges[1] - hinges[0]) < MIN_INTERFACE * extent:
        return None
    return hinges


def _hinges_from_outline(outline: np.ndarray, extent: float, pixel: float) -> np.ndarray:
    """Ends (``2×2`` mm) of the mitral plane found as the longest straight stretch facing the apex.

    A stretch qualifies when the line from its midpoint to the farthest outline point is within 45°
    of perpendicular to it and at least 75 % as long as the longest such line; of those, the one
    with the largest length · sin(angle) · reach wins.
    """
    first, last = _straight_stretches(outline, max(1.5 * pixel, 0.02 * extent))
    a, b = outline[first], outline[last]
    edge = b - a
    length = np.linalg.norm(edge, axis=1)
    mid = (a + b) / 2
    distance = np.linalg.norm(outline[None] - mid[:, None], axis=2)
    far = outline[np.argmax(distance, axis=1)] - mid
    reach = distance.max(axis=1)
    cos = np.abs(np.sum(edge * far, axis=1)) / np.maximum(length * reach, 1e-12)
    score = length * np.sqrt(1.0 - np.minimum(cos, 1.0) ** 2) * reach
    ok = (cos <= COS_45) & (reach >= 0.75 * reach.max())
    k = int(np.argmax(np.where(ok, score, -1.0) if ok.any() else score))
    return _fit_chord(_arc(outline, first[k], last[k]))


def _douglas_peucker_closed(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Vertices (``K×2`` float32) of the Douglas–Peucker simplification of a closed polygon.

    OpenCV's ``approxPolyDP(closed=True)`` on float32 points, step for step (its start points, its
    distance-to-segment test and its final removal of nearly collinear vertices), so that the
    vertices are the ones the library gets.
    """
    src = np.asarray(points, dtype=np.float32)
    count = len(src)
    eps = float(tolerance) ** 2

    def squared_distances(start: int, positions: np.ndarray) -> np.ndarray:
        delta = (src[positions] - src[start]).astype(np.float64)  # float32 differences, as in C++
        return delta[:, 0] * delta[:, 0] + delta[:, 1] * delta[:, 1]

    # 1. two roughly farthest points: three passes of "farthest from the current start"
    start, farthest, below_eps = 0, 0, False
    for _ in range(3):
        start = (start + farthest) % count
        dist = squared_distances(start, (start + np.arange(1, count)) % count)
        best = float(dist.max()) if dist.size else 0.0
        if best > 0:
            farthest = int(np.argmax(dist)) + 1
        below_eps = best <= eps
    stack: list[tuple[int, int]] = []
    out: list[int] = []
    if below_eps:
        out.append(start)
    else:
        second = (start + farthest) % count
        stack.append((second, start))
        stack.append((start, second))

    # 2. split every slice at its farthest point until all points lie within the tolerance
    while stack:
        slice_start, slice_end = stack.pop()
        inner = (slice_start + 1) % count
        if inner == slice_end:
            out.append(slice_start)
            continue
        s, e = src[slice_start], src[slice_end]
        dx, dy = float(e[0] - s[0]), float(e[1] - s[1])
        segment_len_2 = dx * dx + dy * dy
        positions = (inner + np.arange((slice_end - inner) % count)) % count
        rel, rel_end = src[positions] - s, src[positions] - e  # float32, as in C++
        projection = rel[:, 0].astype(np.float64) * dx + rel[:, 1].astype(np.float64) * dy
        across = rel[:, 1].astype(np.float64) * dx - rel[:, 0].astype(np.float64) * dy
        to_start = (rel[:, 0] * rel[:, 0] + rel[:, 1] * rel[:, 1]).astype(np.float64) * segment_len_2
        to_end = (rel_end[:, 0] * rel_end[:, 0] + rel_end[:, 1] * rel_end[:, 1]).astype(np.float64) * segment_len_2
        dist = np.where(projection < 0, to_start, np.where(projection > segment_len_2, to_end, across * across))
        best = float(dist.max())
        if best <= eps * segment_len_2:
            out.append(slice_start)
        else:
            split = int(positions[int(np.argmax(dist))])
            stack.append((split, slice_end))
            stack.append((slice_start, split))

    # 3. remove vertices on [almost] straight lines between their neighbours
    dst = [src[i].copy() for i in out]
    count = new_count = len(dst)
    pos = count - 1
    start_pt = dst[pos]
    pos = 0
    wpos = pos
    pt = dst[pos]
    pos = 1 % count
    i = 0
    while i < count and new_count > 2:
        end_pt = dst[pos]
        pos = (pos + 1) % count
        dx, dy = float(end_pt[0] - start_pt[0]), float(end_pt[1] - start_pt[1])
        dist = abs(float(pt[0] - start_pt[0]) * dy - float(pt[1] - start_pt[1]) * dx)
        inner_product = float((pt[0] - start_pt[0]) * (end_pt[0] - pt[0]) + (pt[1] - start_pt[1]) * (end_pt[1] - pt[1]))
        if dist * dist <= 0.5 * eps * (dx * dx + dy * dy) and dx != 0 and dy != 0 and inner_product >= 0:
            new_count -= 1
            dst[wpos] = start_pt = end_pt
            wpos = (wpos + 1) % count
            pt = dst[pos]
            pos = (pos + 1) % count
            i += 2
            continue
        dst[wpos] = start_pt = pt
        wpos = (wpos + 1) % count
        pt = end_pt
        i += 1
    return np.array(dst[:new_count], dtype=np.float32)


def _straight_stretches(ring: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices into the closed ``ring`` of its maximal straight stretches.

    Douglas–Peucker edges stay within ``tolerance`` of the outline but may split one straight
    stretch in two; vertices are then removed, flattest first, while the merged edge still does.
    """
    vertices = _douglas_peucker_closed(ring, tolerance)
    index = list(np.sort(np.argmin(np.linalg.norm(ring[None] - vertices[:, None], axis=2), axis=1)))
    while len(index) > 3:
        deviations = []
        for k in range(len(index)):
            i0, i2 = index[k - 1], index[(k + 1) % len(index)]
            arc = _arc(ring, i0, i2)
            chord = ring[i2] - ring[i0]
            cross = chord[0] * (arc[:, 1] - ring[i0][1]) - chord[1] * (arc[:, 0] - ring[i0][0])
            deviations.append(np.abs(cross).max() / max(float(np.linalg.norm(chord)), 1e-12))
        k = int(np.argmin(deviations))
        if deviations[k] > tolerance:
            break
        del index[k]
    first = np.array(index)
    return first, np.roll(first, -1)


def _arc(ring: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The points of the closed ``ring`` from index ``start`` to ``stop`` (both included), wrapping around."""
    n = len(ring)
    return ring[np.arange(start, stop + (n if stop < start else 0) + 1) % n]


def _fit_chord(points: np.ndarray) -> np.ndarray:
    """The ends (``2×2``) of the least-squares line through ``points``, spanning their extent."""
    centre = points.mean(axis=0)
    direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
    along = (points - centre) @ direction
    return centre + np.outer([along.min(), along.max()], direction)


def _apex(outline: np.ndarray, base: np.ndarray, pixel: float) -> np.ndarray:
    """The outline point farthest from ``base``, taken in the mean direction of all points within a pixel of it."""
    offset = outline - base
    distance = np.linalg.norm(offset, axis=1)
    near = offset[distance >= distance.max() - pixel]
    direction = (near / np.linalg.norm(near, axis=1, keepdims=True)).mean(axis=0)
    direction /= np.linalg.norm(direction)
    return base + direction * _cuts(outline, base[None], direction)[0].max()


def _disk_diameters(outline: np.ndarray, base: np.ndarray, apex: np.ndarray, n_disks: int) -> np.ndarray:
    """``n_disks`` chord lengths of the closed ``outline`` perpendicular to base→apex at the disk centres."""
    length = float(np.linalg.norm(apex - base))
    d = (apex - base) / length
    centres = base + np.outer((np.arange(n_disks) + 0.5) / n_disks * length, d)
    diameters = np.zeros(n_disks)
    for i, cuts in enumerate(_cuts(outline, centres, np.array([-d[1], d[0]]))):
        if cuts.size < 2:
            continue
        spans = cuts[: cuts.size // 2 * 2].reshape(-1, 2)  # inside intervals (even-odd rule)
        gap = np.maximum(spans[:, 0], 0.0) - np.minimum(spans[:, 1], 0.0)  # 0 for the span holding the centre
        k = int(np.argmin(gap))
        diameters[i] = spans[k, 1] - spans[k, 0]
    return diameters


def _cuts(outline: np.ndarray, points: np.ndarray, direction: np.ndarray) -> list[np.ndarray]:
    """For the line through each of ``points`` along unit ``direction``: the sorted signed positions
    (from the point) where it crosses the closed ``outline``."""
    normal = np.array([-direction[1], direction[0]])
    side = (outline @ normal)[None, :] - (points @ normal)[:, None]
    side_next = np.roll(side, -1, axis=1)
    crossing = (side > 0) != (side_next > 0)
    position = outline @ direction
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(crossing, side / (side - side_next), 0.0)
    t = position[None, :] + frac * (np.roll(position, -1) - position)[None, :] - (points @ direction)[:, None]
    return [np.sort(t[k, crossing[k]]) for k in range(len(points))]


# ----------------------------------------------------------------------------- volumes and EF
def biplane_volume(geometry_2ch: LVGeometry, geometry_4ch: LVGeometry) -> float:
    """Biplane method of disks, in ml: π/4 · Σ d2CHᵢ · d4CHᵢ · Δ with Δ = max(L2CH, L4CH) / n."""
    if len(geometry_2ch.diameters) != len(geometry_4ch.diameters):
        raise MeasurementError("the two views were measured with different numbers of disks")
    step = max(geometry_2ch.length, geometry_4ch.length) / len(geometry_2ch.diameters)
    return float(math.pi / 4 * np.sum(geometry_2ch.diameters * geometry_4ch.diameters) * step / 1000.0)


def ejection_fraction(edv: Optional[float], esv: Optional[float]) -> float:
    """EF in percent, 100 · (EDV − ESV) / EDV; NaN when either volume is missing or NaN."""
    if edv is None or esv is None or not (np.isfinite(edv) and np.isfinite(esv)):
        return float("nan")
    if edv <= 0:
        raise MeasurementError(f"the end-diastolic volume must be positive, got {edv}")
    return float(100.0 * (edv - esv) / edv)


def measure_labels(labels: np.ndarray, spacing: Optional[Sequence[float]], frame_time_ms: Optional[float] = None,
                   ed: Optional[int] = None, es: Optional[int] = None, n_disks: int = N_DISKS) -> dict[str, Any]:
    """Single-view measurements of a labelled clip (the library's ``measure_labels``, same keys).

    Args:
        labels: ``T×H×W`` labels (1 = LV cavity; 3 = left atrium helps find the mitral plane).
        spacing: pixel size (row, col) in mm, or ``None`` when unknown.
        frame_time_ms: time between frames, to report ED/ES times.
        ed, es: known ED/ES frames (for example marked by the clinician); detected when ``None``.

    Returns:
        ``available``/``reason``, ``spacing``, ``n_frames``, ``ed``/``es`` with their ``*_source``
        and ``*_time_ms``, ``areas`` with ``area_unit``, ``ed_area``/``es_area``, ``fac``,
        ``smoothness``, ``length_ed``/``length_es``/``length_unit``, ``edv_disks_ml``,
        ``esv_disks_ml``, ``ef_disks``, the area–length equivalents, ``ef`` and ``geometry``.
        Without spacing every ``*_ml`` is ``None`` and EF is computed as if pixels were square.

    Raises:
        MeasurementError: no LV cavity on the ED or ES frame (the message names it), a frame outside
            the clip, or bad labels/spacing/frame time.
    """
    result, _, _ = _measure_view(labels, spacing, frame_time_ms, ed, es, n_disks, "")
    return result


def measure_biplane(labels_2ch: np.ndarray, spacing_2ch: Optional[Sequence[float]],
                    labels_4ch: np.ndarray, spacing_4ch: Optional[Sequence[float]],
                    ed_2ch: Optional[int] = None, es_2ch: Optional[int] = None,
                    ed_4ch: Optional[int] = None, es_4ch: Optional[int] = None,
                    n_disks: int = N_DISKS) -> dict[str, Any]:
    """Biplane (2CH + 4CH) volumes and EF plus each view's own measurements (the library's ``measure_biplane``).

    Returns:
        ``available``, ``reason``, ``edv_ml``, ``esv_ml``, ``ef``, ``"2CH"``, ``"4CH"``. Without
        spacing in both views the volumes are ``None`` and EF comes from pixels; with spacing in
        only one view the biplane values are all ``None``.
    """
    r2, ed2, es2 = _measure_view(labels_2ch, spacing_2ch, None, ed_2ch, es_2ch, n_disks, "2CH ")
    r4, ed4, es4 = _measure_view(labels_4ch, spacing_4ch, None, ed_4ch, es_4ch, n_disks, "4CH ")
    edv, esv = biplane_volume(ed2, ed4), biplane_volume(es2, es4)
    ef: Optional[float] = ejection_fraction(edv, esv)
    known = (r2["spacing"] is not None) + (r4["spacing"] is not None)
    reason = None
    if known == 1:
        reason = "pixel spacing is known for one view only: biplane volumes and EF are not reported"
        ef = None
    elif known == 0:
        reason = NO_SPACING_REASON
    return {"available": known == 2, "reason": reason, "edv_ml": edv if known == 2 else None,
            "esv_ml": esv if known == 2 else None, "ef": ef, "2CH": r2, "4CH": r4}


def _measure_view(labels: np.ndarray, spacing: Optional[Sequence[float]], frame_time_ms: Optional[float],
                  ed: Optional[int], es: Optional[int], n_disks: int,
                  view: str) -> tuple[dict[str, Any], LVGeometry, LVGeometry]:
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    if frame_time_ms is not None and not (np.isfinite(frame_time_ms) and frame_time_ms > 0):
        raise MeasurementError(f"frame time must be positive, got {frame_time_ms}")
    n = lab.shape[0]
    areas = lv_area_curve(lab, sp)
    detected = detect_ed_es(areas) if ed is None or es is None else (0, 0)
    frames: dict[str, int] = {}
    for name, given, guess in (("ED", ed, detected[0]), ("ES", es, detected[1])):
        index = guess if given is None else int(given)
        if not -n <= index < n:
            raise MeasurementError(f"{view}{name} frame {given} is outside the clip (0..{n - 1})")
        frames[name] = index % n
    geometry = {}
    for name, index in frames.items():
        what = f"{view}frame {index} ({name})"
        if (ed if name == "ED" else es) is None:
            what = f"{view}frame {index} ({name}, detected from the LV areas; give ed/es for sparse labels)"
        geometry[name] = _geometry(lab[index], sp or (1.0, 1.0), n_disks, what)
    g_ed, g_es = geometry["ED"], geometry["ES"]
    volumes = {"disks": (g_ed.volume_disks, g_es.volume_disks),
               "area_length": (g_ed.volume_area_length, g_es.volume_area_length)}
    result: dict[str, Any] = {
        "available": sp is not None,
        "reason": None if sp else NO_SPACING_REASON,
        "spacing": sp,
        "frame_time_ms": frame_time_ms,
        "n_frames": n,
        "ed": frames["ED"],
        "es": frames["ES"],
        "ed_source": "given" if ed is not None else "detected",
        "es_source": "given" if es is not None else "detected",
        "ed_time_ms": frames["ED"] * frame_time_ms if frame_time_ms else None,
        "es_time_ms": frames["ES"] * frame_time_ms if frame_time_ms else None,
        "areas": areas,
        "area_unit": "mm²" if sp else "px²",
        "ed_area": float(areas[frames["ED"]]),
        "es_area": float(areas[frames["ES"]]),
        "fac": ejection_fraction(float(areas[frames["ED"]]), float(areas[frames["ES"]])),
        "smoothness": temporal_smoothness(areas),
        "length_ed": g_ed.length,
        "length_es": g_es.length,
        "length_unit": "mm" if sp else "px",
    }
    for method, (v_ed, v_es) in volumes.items():
        result[f"edv_{method}_ml"] = v_ed if sp else None
        result[f"esv_{method}_ml"] = v_es if sp else None
        result[f"ef_{method}"] = ejection_fraction(v_ed, v_es)
    result["ef"] = result["ef_disks"]
    result["geometry"] = {"ed": g_ed.to_dict(), "es": g_es.to_dict()}
    return result, g_ed, g_es


# ----------------------------------------------------------------------------- the report's summary
SUMMARY_KEYS = ("available", "reason", "ed", "es", "ed_time_ms", "es_time_ms", "area_unit", "ed_area", "es_area",
                "fac", "smoothness", "edv_disks_ml", "esv_disks_ml", "ef_disks", "edv_area_length_ml",
                "esv_area_length_ml", "ef_area_length", "ef", "length_unit", "length_ed", "length_es")


def lv_volume_curve(labels: np.ndarray, spacing: Optional[Sequence[float]]) -> list[Optional[float]]:
    """Single-plane method-of-disks LV volume (ml) of every frame; ``None`` where it cannot be measured."""
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    if sp is None:
        return [None] * lab.shape[0]
    curve: list[Optional[float]] = []
    for index, frame in enumerate(lab):
        if not (frame == LV).any():
            curve.append(None)
            continue
        try:
            curve.append(round(float(_geometry(frame, sp, N_DISKS, f"frame {index}").volume_disks), 3))
        except MeasurementError:
            curve.append(None)
    return curve


def clip_measurements(labels: np.ndarray, spacing: Optional[Sequence[float]], frame_time_ms: Optional[float] = None,
                      ed: Optional[int] = None, es: Optional[int] = None) -> dict[str, Any]:
    """The ``measurements`` block of a clinical report (the library's ``echoforge.report.measurements``).

    ED/ES are detected unless given. A clip that cannot be measured (no LV cavity on ED or ES) gives
    ``available`` False with the reason instead of raising.
    """
    lab = check_labels(labels)
    try:
        m = measure_labels(lab, spacing, frame_time_ms, ed, es)
    except MeasurementError as err:
        return {"available": False, "reason": str(err), "ed": None, "es": None, "ef": None}
    out = {k: m.get(k) for k in SUMMARY_KEYS}
    out["areas"] = [round(float(a), 3) for a in m["areas"]]
    out["volumes_ml"] = lv_volume_curve(lab, m["spacing"])
    if m["spacing"] is None:
        out["ef_note"] = NO_SPACING_EF_NOTE
    return out
