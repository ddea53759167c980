"""Echo measurements on label maps: LV area curve, ED/ES frames, long axis, volumes and ejection fraction.

Geometry of one LV cavity (:func:`lv_geometry`), used by every volume method:

1. The cavity is label 1, reduced to its largest 4-connected component with holes filled.
2. Cavity and left atrium (label 3) are resampled to isotropic pixels (the smaller spacing, nearest
   neighbour), as the CAMUS evaluation script does. The cavity outline is traced at sub-pixel
   precision (iso-line 0.5) and expressed in mm.
3. Mitral plane, by one of two methods (``method`` in the result):

   * ``"la_interface"``: when the left atrium touches the cavity, the plane is the LV–LA interface
     (outline points with atrium across them, a one-pixel gap allowed) and the hinge points are its
     two ends along its main direction. An interface shorter than 10 % of the cavity length is ignored.
   * ``"straight_segment"``: otherwise, as in CAMUS, the longest near-straight stretch of the
     outline (tolerance max(1.5 pixels, 2 % of the cavity length)). The CAMUS script only accepts
     stretches within 45° of horizontal, which assumes an upright ventricle. Here a stretch must
     instead face the far end of the cavity: the line from its midpoint to the outline point
     farthest from it must be within 45° of perpendicular to it and at least 75 % as long as the
     longest such line, and the stretch facing it most squarely wins over a slightly longer
     oblique one. That excludes straight side walls whatever the in-plane orientation, for any
     cavity at least about 0.8 times as long as it is wide (real ventricles are longer).

4. Apex = the outline point farthest from the mitral midpoint, steadied on a blunt or flat-topped
   apex (the middle of the tip in the mean direction of all points within a pixel of the largest
   distance); long axis length L = its distance from the mitral midpoint.
5. Disks: ``n_disks`` (20) slices of thickness Δ = L/20 perpendicular to the long axis. The diameter
   of disk i is the chord of the outline along the perpendicular through the disk centre, at
   (i + ½)·Δ from the mitral midpoint (the chord that contains the centre; the nearest one if the
   centre falls outside a very curved cavity).

Volumes (ml = mm³ / 1000):

* single-plane disks: V = π/4 · Σ dᵢ² · Δ;
* area–length: V = 8·A² / (3π·L), exact for a half or a whole ellipsoid of revolution;
* biplane disks (CAMUS): V = π/4 · Σ d2CHᵢ · d4CHᵢ · Δ, with Δ = max(L2CH, L4CH) / 20.

Two deliberate differences from the official CAMUS script: it measures each diameter at the basal
edge of its disk, which overestimates a half ellipsoid by about 4 %, where the disk centre is used
here; and it takes one Δ for both instants (the largest L over the ED and ES masks of both views),
which inflates the ES volume, where Δ is taken per instant here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

from echoforge import labels as L
from echoforge.errors import EmptyLabelError, InvalidVideoError, UnknownFrameError
from echoforge.metrics.overlap import check_labels, check_spacing

N_DISKS = 20
_MIN_PIXELS = 4  # a cavity smaller than this has no measurable outline
_MIN_INTERFACE = 0.1  # shortest LV–LA interface accepted, as a fraction of the cavity length
_COS_45 = math.cos(math.pi / 4)
_NO_SPACING = ("no pixel spacing: volumes are not reported; EF and FAC are ratios and are computed "
               "assuming square pixels")


@dataclass(frozen=True, eq=False)
class LVGeometry:
    """Long axis and disks of one LV cavity.

    Points are (row, col) in (fractional) pixels of the label map they were measured on; lengths
    are in mm (pixels when measured without spacing), the area in mm² (pixels²).

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
        """Single-plane method of disks, in ml (mm³ / 1000)."""
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


# ----------------------------------------------------------------------------- curves and timing
def lv_area_curve(labels: np.ndarray, spacing: Sequence[float] | None) -> np.ndarray:
    """LV cavity area on every frame: ``T`` float64 in mm² (pixels² when ``spacing`` is ``None``).

    Counts label-1 pixels as they are (no component cleaning), so it is fast on long clips.
    """
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    counts = (lab == L.LV).sum(axis=(1, 2)).astype(np.float64)
    return counts * (sp[0] * sp[1] if sp else 1.0)


def detect_ed_es(areas: np.ndarray, sigma_frames: float = 1.0, min_swing: float = 0.1) -> tuple[int, int]:
    """End-diastolic and end-systolic frames from an LV area (or volume) curve.

    ED is a largest and ES a smallest cavity of the same beat. The curve is smoothed with a Gaussian
    of ``sigma_frames`` (skipped below 5 frames) and cut into alternating maxima and minima, ignoring
    swings smaller than ``min_swing`` × its range (the clip ends count as extrema). Each maximum is
    paired with the minimum after it (its systole), or with the one before it when that one is
    deeper by more than the same margin (a systole cut short by the end of the clip). The pair with
    the largest area change wins, the earliest of those within 10 % of it, so a multi-beat clip gives
    its first clear beat and a clip that starts or ends mid-systole does not give a partial one. ED
    and ES are finally moved to the raw extrema within 2σ of the smoothed ones.

    So a single ED→ES half cycle gives its first and last frames, an ES→ED clip its last and first
    (the global maximum and minimum), and a flat curve ``(0, 0)``.

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
    smooth = ndimage.gaussian_filter1d(a, sigma_frames, mode="nearest") if a.size >= 5 and sigma_frames > 0 else a
    span = float(smooth.max() - smooth.min())
    if span <= 0:
        return 0, 0
    margin = min_swing * span
    pivots = _turning_points(smooth, margin)
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


# ----------------------------------------------------------------------------- geometry
def lv_geometry(labels: np.ndarray, spacing: Sequence[float] | None, n_disks: int = N_DISKS) -> LVGeometry:
    """Mitral plane, apex, long axis and disk diameters of the LV cavity in one label map.

    Args:
        labels: ``H×W`` labels (1 = LV cavity, 3 = left atrium if present); a binary mask is read as LV.
        spacing: pixel size (row, col) in mm; ``None`` measures in pixels.
        n_disks: number of disks (20 in the CAMUS protocol).

    Raises:
        EmptyLabelError: no LV cavity (or fewer than 4 pixels of it).
        InvalidVideoError: non-positive spacing.
    """
    lab = check_labels(labels)
    if lab.shape[0] != 1:
        raise ValueError(f"lv_geometry measures one H×W frame, got {lab.shape[0]} frames")
    return _geometry(lab[0], check_spacing(spacing) or (1.0, 1.0), n_disks, "the label map")


def _geometry(labels: np.ndarray, spacing: tuple[float, float], n_disks: int, what: str) -> LVGeometry:
    """:func:`lv_geometry` of a checked ``H×W`` map; ``what`` names it in the error message."""
    if n_disks < 1:
        raise ValueError(f"n_disks must be at least 1, got {n_disks}")
    offset = np.zeros(2)
    if spacing[0] == spacing[1]:
        # square pixels need no resampling, so the bounding box of LV ∪ LA (plus a margin) measures exactly
        # the same geometry as the whole frame, at a fraction of the cost on large frames (per-frame curves)
        rows, cols = np.nonzero((labels == L.LV) | (labels == L.LA))
        if rows.size:
            r0, c0 = max(int(rows.min()) - 2, 0), max(int(cols.min()) - 2, 0)
            labels = labels[r0:int(rows.max()) + 3, c0:int(cols.max()) + 3]
            offset = np.array([r0, c0], dtype=float)
    cavity = _clean_cavity(labels == L.LV)
    if cavity.sum() < _MIN_PIXELS:
        raise EmptyLabelError(f"{what} has no LV cavity (label 1) to measure")
    area = float(cavity.sum()) * spacing[0] * spacing[1]
    cavity_iso, iso = _to_isotropic(cavity, spacing)
    atrium_iso, _ = _to_isotropic(labels == L.LA, spacing)
    outline_px = _outline(cavity_iso)
    scale = np.array(iso)
    outline = (outline_px + 0.5) * scale  # mm, origin at the image corner
    extent = 2.0 * float(np.linalg.norm(outline - outline.mean(axis=0), axis=1).max())  # about the cavity length

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
        return p / np.array(spacing) - 0.5 + offset

    return LVGeometry(hinges=to_pixels(hinges), base=to_pixels(base), apex=to_pixels(apex), length=length,
                      area=area, diameters=diameters, method=method)


def _clean_cavity(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` with its holes filled."""
    components, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(components.ravel())[1:]
        mask = components == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


def _to_isotropic(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """``mask`` resampled (nearest) to square pixels of the smaller spacing, and the exact new spacing."""
    h, w = mask.shape
    iso = min(spacing)
    nh, nw = max(round(h * spacing[0] / iso), 1), max(round(w * spacing[1] / iso), 1)
    if (nh, nw) == (h, w):
        return mask.astype(bool), spacing
    resized = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
    return resized.astype(bool), (spacing[0] * h / nh, spacing[1] * w / nw)


def _outline(mask: np.ndarray) -> np.ndarray:
    """``N×2`` closed sub-pixel outline (row, col) of a single-component mask, without the repeated end point."""
    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    return max(contours, key=len)[:-1] - 1.0


def _hinges_from_atrium(outline: np.ndarray, outline_px: np.ndarray, cavity: np.ndarray, atrium: np.ndarray,
                        extent: float) -> np.ndarray | None:
    """Ends (``2×2`` mm) of the LV–LA interface, or ``None`` when the atrium does not touch the cavity.

    Each outline point lies midway between a cavity pixel and an outside pixel; it belongs to the
    interface when that outside pixel, or the next one in the same direction (a one-pixel gap), is atrium.
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
    if np.linalg.norm(hinges[1] - hinges[0]) < _MIN_INTERFACE * extent:
        return None
    return hinges


def _hinges_from_outline(outline: np.ndarray, extent: float, pixel: float) -> np.ndarray:
    """Ends (``2×2`` mm) of the mitral plane found as the longest straight stretch across the cavity.

    The outline is cut into maximal straight stretches (within a tolerance). A stretch qualifies when
    the line from its midpoint to the outline point farthest from it (its "reach") is within 45° of
    perpendicular to it and nearly the longest such line (≥ 75 % of the longest over all stretches):
    the mitral plane faces the apex along the whole length of the cavity, whereas a straight side
    wall faces the opposite hinge, across it. Of those, the stretch with the largest
    width-across-its-reach × reach wins (length · sin(angle) · reach): the longest, favouring the
    stretches most squarely facing the farthest end.
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
    ok = (cos <= _COS_45) & (reach >= 0.75 * reach.max())
    k = int(np.argmax(np.where(ok, score, -1.0) if ok.any() else score))
    return _fit_chord(_arc(outline, first[k], last[k]))


def _straight_stretches(ring: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices into the closed ``ring`` of its maximal straight stretches.

    Douglas–Peucker gives edges that each stay within ``tolerance`` of the outline, but may split
    one straight stretch in two; vertices are then removed, flattest first, while the merged edge
    still stays within ``tolerance``.
    """
    vertices = cv2.approxPolyDP(ring.astype(np.float32).reshape(-1, 1, 2), tolerance, True).reshape(-1, 2)
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
    """The ends (``2×2``) of the least-squares line through ``points``, spanning their extent.

    A straight boundary on a pixel grid is a staircase around the true line; the fitted line goes
    through its middle, where its extreme points would lean to one side.
    """
    centre = points.mean(axis=0)
    direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
    along = (points - centre) @ direction
    return centre + np.outer([along.min(), along.max()], direction)


def _apex(outline: np.ndarray, base: np.ndarray, pixel: float) -> np.ndarray:
    """The outline point farthest from ``base``, steadied against pixel noise on a blunt apex.

    The outline points within one pixel of the largest distance give a mean direction; the apex is
    where the ray from ``base`` in that direction leaves the outline. A round or flat-topped cap
    thus gives its middle rather than whichever side a pixel happens to favour.
    """
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
    """Where the line through each of ``points`` (``K×2``) along unit ``direction`` crosses the closed
    ``outline``: for each line, the sorted signed positions along ``direction`` from its point."""
    normal = np.array([-direction[1], direction[0]])
    side = (outline @ normal)[None, :] - (points @ normal)[:, None]  # K×N, signed distance to each line
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
        raise ValueError("the two views were measured with different numbers of disks")
    step = max(geometry_2ch.length, geometry_4ch.length) / len(geometry_2ch.diameters)
    return float(math.pi / 4 * np.sum(geometry_2ch.diameters * geometry_4ch.diameters) * step / 1000.0)


def ejection_fraction(edv: float | None, esv: float | None) -> float:
    """EF in percent, 100 · (EDV − ESV) / EDV; NaN when either volume is missing or NaN.

    Raises:
        ValueError: a non-positive EDV.
    """
    if edv is None or esv is None or not (np.isfinite(edv) and np.isfinite(esv)):
        return float("nan")
    if edv <= 0:
        raise ValueError(f"the end-diastolic volume must be positive, got {edv}")
    return float(100.0 * (edv - esv) / edv)


def measure_labels(labels: np.ndarray, spacing: Sequence[float] | None, frame_time_ms: float | None = None,
                   ed: int | None = None, es: int | None = None, n_disks: int = N_DISKS) -> dict[str, Any]:
    """Single-view measurements of a labelled clip: area curve, ED/ES, volumes and EF.

    Args:
        labels: ``T×H×W`` labels (1 = LV cavity; 3 = left atrium helps find the mitral plane).
        spacing: pixel size (row, col) in mm, or ``None`` (see ``available``).
        frame_time_ms: time between frames, to report ED/ES times.
        ed, es: known ED/ES frames; each one not given is taken from :func:`detect_ed_es`.
        n_disks: disks of the method of disks.

    Returns:
        ``available`` (volumes reported) and ``reason`` (why not, else ``None``); ``spacing``;
        ``frame_time_ms``; ``n_frames``; ``ed``, ``es`` and ``ed_source``/``es_source``
        (``"given"`` or ``"detected"``); ``ed_time_ms``/``es_time_ms`` (``None`` without a frame time);
        ``areas`` (``T``, mm² or px²) with ``area_unit``; ``ed_area``, ``es_area``; ``fac``
        (fractional area change, %); ``smoothness`` (:func:`temporal_smoothness`);
        ``length_ed``/``length_es`` (long axis) with ``length_unit`` (``"mm"``/``"px"``);
        ``edv_disks_ml``, ``esv_disks_ml``, ``ef_disks``; ``edv_area_length_ml``,
        ``esv_area_length_ml``, ``ef_area_length``; ``ef`` (= ``ef_disks``); ``geometry``
        (``{"ed", "es"}`` :meth:`LVGeometry.to_dict`, points in pixels). Without spacing every
        ``*_ml`` is ``None`` while EF and FAC are still given, computed as if pixels were square.

    Raises:
        EmptyLabelError: the ED or ES frame has no LV cavity (the message names it).
        UnknownFrameError: ``ed``/``es`` outside the clip.
        InvalidVideoError: non-positive spacing or frame time.
    """
    result, _, _ = _measure_view(labels, spacing, frame_time_ms, ed, es, n_disks, "")
    return result


def measure_biplane(labels_2ch: np.ndarray, spacing_2ch: Sequence[float] | None,
                    labels_4ch: np.ndarray, spacing_4ch: Sequence[float] | None,
                    ed_2ch: int | None = None, es_2ch: int | None = None,
                    ed_4ch: int | None = None, es_4ch: int | None = None,
                    n_disks: int = N_DISKS) -> dict[str, Any]:
    """Biplane (CAMUS) volumes and EF from a 2CH and a 4CH clip, plus each view's own measurements.

    Each view's ED/ES is given or detected independently (:func:`measure_labels`).

    Returns:
        ``available``, ``reason``; ``edv_ml``, ``esv_ml`` (biplane disks) and ``ef``; ``"2CH"`` and
        ``"4CH"``: the :func:`measure_labels` result of each view. Without spacing in both views the
        volumes are ``None`` and EF is computed in pixels (square pixels of the same size in both
        views assumed); with spacing in only one view the biplane values are all ``None``.
    """
    r2, ed2, es2 = _measure_view(labels_2ch, spacing_2ch, None, ed_2ch, es_2ch, n_disks, "2CH ")
    r4, ed4, es4 = _measure_view(labels_4ch, spacing_4ch, None, ed_4ch, es_4ch, n_disks, "4CH ")
    edv, esv = biplane_volume(ed2, ed4), biplane_volume(es2, es4)
    ef = ejection_fraction(edv, esv)
    known = (r2["spacing"] is not None) + (r4["spacing"] is not None)
    reason = None
    if known == 1:
        reason = "pixel spacing is known for one view only: biplane volumes and EF are not reported"
        ef = None
    elif known == 0:
        reason = _NO_SPACING
    return {
        "available": known == 2,
        "reason": reason,
        "edv_ml": edv if known == 2 else None,
        "esv_ml": esv if known == 2 else None,
        "ef": ef,
        "2CH": r2,
        "4CH": r4,
    }


def _measure_view(labels: np.ndarray, spacing: Sequence[float] | None, frame_time_ms: float | None,
                  ed: int | None, es: int | None, n_disks: int,
                  view: str) -> tuple[dict[str, Any], LVGeometry, LVGeometry]:
    """:func:`measure_labels` plus the ED and ES geometries; ``view`` prefixes error messages."""
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    if frame_time_ms is not None and not (np.isfinite(frame_time_ms) and frame_time_ms > 0):
        raise InvalidVideoError(f"frame time must be positive, got {frame_time_ms}")
    n = lab.shape[0]
    areas = lv_area_curve(lab, sp)
    detected = detect_ed_es(areas) if ed is None or es is None else (0, 0)
    frames: dict[str, int] = {}
    for name, given, guess in (("ED", ed, detected[0]), ("ES", es, detected[1])):
        index = guess if given is None else int(given)
        if not -n <= index < n:
            raise UnknownFrameError(f"{view}{name} frame {given} is outside the clip (0..{n - 1})")
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
        "reason": None if sp else _NO_SPACING,
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
