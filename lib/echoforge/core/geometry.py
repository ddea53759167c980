"""Geometry of one LV cavity in one label map: mitral plane, apex, long axis, disks and volumes.

:func:`lv_geometry`, used by every volume method:

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
from typing import Any, Optional

import numpy as np

from .contours import (
    douglas_peucker_closed,
    gaussian_smooth,
    largest_component_filled,
    nearest_exact_index,
    outline,
)
from .errors import EmptyLabelError
from .labels import LA, LV
from .validation import Spacing, check_labels, check_spacing

N_DISKS = 20
MIN_CAVITY_PIXELS = 4  # a cavity smaller than this has no measurable outline
_MIN_INTERFACE = 0.1  # shortest LV–LA interface accepted, as a fraction of the cavity length
_COS_45 = math.cos(math.pi / 4)
#: Gaussian smoothing (in mm along the outline) before the endocardial contour length is taken:
#: it removes the pixel staircase, which would otherwise lengthen every contour by a few percent.
CONTOUR_SMOOTHING_MM = 1.5


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
        contour_length: length of the endocardial contour from hinge to hinge over the apex (the
            mitral plane left out), after :data:`CONTOUR_SMOOTHING_MM` of smoothing; GLS uses it.
    """

    hinges: np.ndarray
    base: np.ndarray
    apex: np.ndarray
    length: float
    area: float
    diameters: np.ndarray
    method: str
    contour_length: float

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
                "method": self.method, "contour_length": self.contour_length}


def lv_geometry(labels: np.ndarray, spacing: Optional[Sequence[float]], n_disks: int = N_DISKS) -> LVGeometry:
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
    return frame_geometry(lab[0], check_spacing(spacing) or (1.0, 1.0), n_disks, "the label map")


def frame_geometry(labels: np.ndarray, spacing: Spacing, n_disks: int = N_DISKS, what: str = "the frame",
                   cavity_label: int = LV, plane_label: int = LA) -> LVGeometry:
    """:func:`lv_geometry` of a checked ``H×W`` map; ``what`` names it in the error message.

    ``cavity_label`` is the chamber measured and ``plane_label`` the chamber whose interface with it
    is the valve plane: the LV against the atrium by default, the atrium against the LV for the
    left-atrial volume.
    """
    if n_disks < 1:
        raise ValueError(f"n_disks must be at least 1, got {n_disks}")
    offset = np.zeros(2)
    wanted = (labels == cavity_label) | (labels == plane_label)
    if spacing[0] == spacing[1]:
        # square pixels need no resampling, so the bounding box of both chambers (plus a margin)
        # measures exactly the same geometry as the whole frame, at a fraction of the cost
        rows, cols = np.flatnonzero(wanted.any(axis=1)), np.flatnonzero(wanted.any(axis=0))
        if rows.size:
            r0, c0 = max(int(rows[0]) - 2, 0), max(int(cols[0]) - 2, 0)
            labels = labels[r0:int(rows[-1]) + 3, c0:int(cols[-1]) + 3]
            offset = np.array([r0, c0], dtype=float)
    cavity = largest_component_filled(labels == cavity_label)
    if cavity.sum() < MIN_CAVITY_PIXELS:
        name = "LV cavity (label 1)" if cavity_label == LV else f"label {cavity_label}"
        raise EmptyLabelError(f"{what} has no {name} to measure")
    area = float(cavity.sum()) * spacing[0] * spacing[1]
    cavity_iso, iso = _to_isotropic(cavity, spacing)
    other_iso, _ = _to_isotropic(labels == plane_label, spacing)
    outline_px = outline(cavity_iso)
    ring = (outline_px + 0.5) * np.array(iso)  # mm, origin at the image corner
    extent = 2.0 * float(np.linalg.norm(ring - ring.mean(axis=0), axis=1).max())  # about the cavity length

    hinges = _hinges_from_neighbour(ring, outline_px, cavity_iso, other_iso, extent)
    method = "la_interface"
    if hinges is None:
        hinges = _hinges_from_outline(ring, extent, max(iso))
        method = "straight_segment"
    base = hinges.mean(axis=0)
    apex = _apex(ring, base, max(iso))
    length = float(np.linalg.norm(apex - base))
    diameters = _disk_diameters(ring, base, apex, n_disks)

    def to_pixels(p: np.ndarray) -> np.ndarray:
        return p / np.array(spacing) - 0.5 + offset

    return LVGeometry(hinges=to_pixels(hinges), base=to_pixels(base), apex=to_pixels(apex), length=length,
                      area=area, diameters=diameters, method=method,
                      contour_length=_wall_length(ring, hinges, apex, max(iso)))


def _to_isotropic(mask: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, Spacing]:
    """``mask`` resampled (nearest) to square pixels of the smaller spacing, and the exact new spacing."""
    h, w = mask.shape
    iso = min(spacing)
    nh, nw = max(round(h * spacing[0] / iso), 1), max(round(w * spacing[1] / iso), 1)
    if (nh, nw) == (h, w):
        return mask.astype(bool, copy=False), spacing
    rows, cols = nearest_exact_index(h, nh), nearest_exact_index(w, nw)
    return mask[np.ix_(rows, cols)].astype(bool), (spacing[0] * h / nh, spacing[1] * w / nw)


def _hinges_from_neighbour(ring: np.ndarray, outline_px: np.ndarray, cavity: np.ndarray, neighbour: np.ndarray,
                           extent: float) -> Optional[np.ndarray]:
    """Ends (``2×2`` mm) of the interface with the neighbouring chamber, or ``None`` when it does not touch.

    Each outline point lies midway between a cavity pixel and an outside pixel; it belongs to the
    interface when that outside pixel, or the next one in the same direction (a one-pixel gap), is
    the neighbour.
    """
    if not neighbour.any():
        return None
    pad = 2
    cavity, neighbour = np.pad(cavity, pad), np.pad(neighbour, pad)
    rc = outline_px + pad
    vertical = np.abs(rc[:, 0] - np.round(rc[:, 0])) > 0.25  # the two pixels are stacked vertically
    first = np.stack([np.where(vertical, np.floor(rc[:, 0]), np.round(rc[:, 0])),
                      np.where(vertical, np.round(rc[:, 1]), np.floor(rc[:, 1]))], axis=1).astype(int)
    second = first + np.stack([vertical, ~vertical], axis=1)
    first_inside = cavity[first[:, 0], first[:, 1]][:, None]
    outside = np.where(first_inside, second, first)
    beyond = np.clip(2 * outside - np.where(first_inside, first, second), 0, np.array(neighbour.shape) - 1)
    touching = ring[neighbour[outside[:, 0], outside[:, 1]] | neighbour[beyond[:, 0], beyond[:, 1]]]
    if len(touching) < 3:
        return None
    hinges = _fit_chord(touching)
    if np.linalg.norm(hinges[1] - hinges[0]) < _MIN_INTERFACE * extent:
        return None
    return hinges


def _hinges_from_outline(ring: np.ndarray, extent: float, pixel: float) -> np.ndarray:
    """Ends (``2×2`` mm) of the mitral plane found as the longest straight stretch across the cavity.

    The outline is cut into maximal straight stretches (within a tolerance). A stretch qualifies when
    the line from its midpoint to the outline point farthest from it (its "reach") is within 45° of
    perpendicular to it and nearly the longest such line (≥ 75 % of the longest over all stretches):
    the mitral plane faces the apex along the whole length of the cavity, whereas a straight side
    wall faces the opposite hinge, across it. Of those, the stretch with the largest
    width-across-its-reach × reach wins (length · sin(angle) · reach): the longest, favouring the
    stretches most squarely facing the farthest end.
    """
    first, last = _straight_stretches(ring, max(1.5 * pixel, 0.02 * extent))
    a, b = ring[first], ring[last]
    edge = b - a
    length = np.linalg.norm(edge, axis=1)
    mid = (a + b) / 2
    distance = np.linalg.norm(ring[None] - mid[:, None], axis=2)
    far = ring[np.argmax(distance, axis=1)] - mid
    reach = distance.max(axis=1)
    cos = np.abs(np.sum(edge * far, axis=1)) / np.maximum(length * reach, 1e-12)
    score = length * np.sqrt(1.0 - np.minimum(cos, 1.0) ** 2) * reach
    ok = (cos <= _COS_45) & (reach >= 0.75 * reach.max())
    k = int(np.argmax(np.where(ok, score, -1.0) if ok.any() else score))
    return _fit_chord(_arc(ring, first[k], last[k]))


def _straight_stretches(ring: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices into the closed ``ring`` of its maximal straight stretches.

    Douglas–Peucker gives edges that each stay within ``tolerance`` of the outline, but may split
    one straight stretch in two; vertices are then removed, flattest first, while the merged edge
    still stays within ``tolerance``.
    """
    vertices = douglas_peucker_closed(ring, tolerance)
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


def _apex(ring: np.ndarray, base: np.ndarray, pixel: float) -> np.ndarray:
    """The outline point farthest from ``base``, steadied against pixel noise on a blunt apex.

    The outline points within one pixel of the largest distance give a mean direction; the apex is
    where the ray from ``base`` in that direction leaves the outline. A round or flat-topped cap
    thus gives its middle rather than whichever side a pixel happens to favour.
    """
    offset = ring - base
    distance = np.linalg.norm(offset, axis=1)
    near = offset[distance >= distance.max() - pixel]
    direction = (near / np.linalg.norm(near, axis=1, keepdims=True)).mean(axis=0)
    direction /= np.linalg.norm(direction)
    return base + direction * _cuts(ring, base[None], direction)[0].max()


def _disk_diameters(ring: np.ndarray, base: np.ndarray, apex: np.ndarray, n_disks: int) -> np.ndarray:
    """``n_disks`` chord lengths of the closed ``ring`` perpendicular to base→apex at the disk centres."""
    length = float(np.linalg.norm(apex - base))
    d = (apex - base) / length
    centres = base + np.outer((np.arange(n_disks) + 0.5) / n_disks * length, d)
    diameters = np.zeros(n_disks)
    for i, cuts in enumerate(_cuts(ring, centres, np.array([-d[1], d[0]]))):
        if cuts.size < 2:
            continue
        spans = cuts[: cuts.size // 2 * 2].reshape(-1, 2)  # inside intervals (even-odd rule)
        gap = np.maximum(spans[:, 0], 0.0) - np.minimum(spans[:, 1], 0.0)  # 0 for the span holding the centre
        k = int(np.argmin(gap))
        diameters[i] = spans[k, 1] - spans[k, 0]
    return diameters


def _cuts(ring: np.ndarray, points: np.ndarray, direction: np.ndarray) -> list[np.ndarray]:
    """Where the line through each of ``points`` (``K×2``) along unit ``direction`` crosses the closed
    ``ring``: for each line, the sorted signed positions along ``direction`` from its point."""
    normal = np.array([-direction[1], direction[0]])
    side = (ring @ normal)[None, :] - (points @ normal)[:, None]  # K×N, signed distance to each line
    side_next = np.roll(side, -1, axis=1)
    crossing = (side > 0) != (side_next > 0)
    position = ring @ direction
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(crossing, side / (side - side_next), 0.0)
    t = position[None, :] + frac * (np.roll(position, -1) - position)[None, :] - (points @ direction)[:, None]
    return [np.sort(t[k, crossing[k]]) for k in range(len(points))]


def _wall_length(ring: np.ndarray, hinges: np.ndarray, apex: np.ndarray, pixel: float) -> float:
    """Length (mm) of the outline from one hinge to the other over the apex, smoothed first.

    The closed outline is smoothed along its arc length (:data:`CONTOUR_SMOOTHING_MM`), cut at the
    outline points nearest to the hinges, and the arc holding the point nearest to the apex is measured.
    """
    n = len(ring)
    sigma = CONTOUR_SMOOTHING_MM / max(float(np.median(np.linalg.norm(np.diff(ring, axis=0), axis=1))), 1e-9)
    if n >= 8 and sigma > 0:
        reach = min(int(4 * sigma + 0.5), n // 2 - 1)
        wrapped = np.concatenate([ring[-reach:], ring, ring[:reach]]) if reach > 0 else ring
        smooth = np.stack([gaussian_smooth(wrapped[:, k], sigma)[reach:reach + n] for k in range(2)], axis=1)
    else:
        smooth = ring
    ends = sorted(int(np.argmin(np.linalg.norm(ring - h, axis=1))) for h in hinges)
    tip = int(np.argmin(np.linalg.norm(ring - apex, axis=1)))
    arc = _arc(smooth, ends[0], ends[1]) if ends[0] <= tip <= ends[1] else _arc(smooth, ends[1], ends[0])
    return float(np.linalg.norm(np.diff(arc, axis=0), axis=1).sum())


# ----------------------------------------------------------------------------- volumes
def biplane_volume(geometry_2ch: LVGeometry, geometry_4ch: LVGeometry) -> float:
    """Biplane method of disks, in ml: π/4 · Σ d2CHᵢ · d4CHᵢ · Δ with Δ = max(L2CH, L4CH) / n."""
    if len(geometry_2ch.diameters) != len(geometry_4ch.diameters):
        raise ValueError("the two views were measured with different numbers of disks")
    step = max(geometry_2ch.length, geometry_4ch.length) / len(geometry_2ch.diameters)
    return float(math.pi / 4 * np.sum(geometry_2ch.diameters * geometry_4ch.diameters) * step / 1000.0)


def biplane_area_length(area_2ch: float, area_4ch: float, length_2ch: float, length_4ch: float) -> float:
    """Biplane area–length volume, in ml: 8·A2CH·A4CH / (3π·L) with L the shorter long axis."""
    return float(8 * area_2ch * area_4ch / (3 * math.pi * min(length_2ch, length_4ch)) / 1000.0)
