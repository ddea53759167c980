"""Find the imaging sector (the fan) in echocardiography frames.

Scanner exports carry more than the image: UI text, an ECG trace, calipers, colour and grey bars,
depth scales, sometimes a colour-Doppler box inside the fan. :func:`detect_sector` separates the
fan from all that so readers can crop to it and mask the rest.

The approach, on a ``T×H×W`` stack (a single frame works too; long cines are subsampled to
:data:`STATISTIC_FRAMES` evenly spaced frames):

1. *Content*: a pixel is active in a frame when it differs from the background level (the median
   of the image border) or, in a cine, flickers around its own temporal median. It is content when
   active in at least a quarter of the frames: speckle is there most of the time, even in a far
   field as dark as the background, while a sweeping ECG trace or cursor passes each pixel briefly.
2. *Density*: the share of content pixels in a square window 4 % of the image wide. The fan is a
   solid area, whereas text, ECG traces, dotted scales and caliper marks are thin, so they stay
   below one half and drop out. A morphological opening then cuts thin bridges between the fan and
   UI elements that touch it.
3. *Shape*: the largest connected component is the fan. Its convex hull (a fan narrower than
   180° is convex) fills the dark cavities and dropouts inside it; content pixels within half a
   window of it (in a cine only flickering ones, so static markers stay out) restore the rim that
   the density threshold pulled in. Finally pixels much fainter than the fan around them (the
   ringing halo lossy JPEG leaves outside a bright rim) are dropped before the last hull.
4. *Geometry*: straight lines fitted to the left and right rims meet at the apex (the probe's
   virtual origin, often above the visible top); the edge angles and the radii from the apex
   describe the fan (see :func:`fit_sector_geometry`).

Measured on synthetic scanner clips with burned-in UI (``tests/test_sector.py``) the mask has an
IoU above 0.98 with the true fan, for cines and single frames, and after JPEG compression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from echoforge.errors import InvalidVideoError

#: Minimum share of the image a fan must cover to be accepted.
MIN_SECTOR_FRACTION = 0.02
#: Frames (evenly spaced) over which the per-pixel statistics of a long cine are taken.
STATISTIC_FRAMES = 48
#: Share of the frames in which a pixel must differ from the background to count as content.
MIN_PRESENCE = 0.25
#: Rim pixels fainter than this share of the fan's mean brightness next to them are left out.
RIM_CONTRAST = 0.35


@dataclass(frozen=True, eq=False)
class SectorGeometry:
    """The imaging sector of a clip.

    Args:
        mask: ``H×W`` bool, true inside the fan.
        box: tight bounding box of ``mask`` as (row0, row1, col0, col1), end exclusive (the
            convention of :meth:`echoforge.video.EchoVideo.cropped`).
        apex: (row, col) in pixels where the two straight rims meet, or ``None`` when the area is
            not a fan (for instance a rectangle from a linear probe). May lie outside the image.
        angles_deg: directions of the (left, right) rims in degrees from the downward vertical,
            negative towards the left of the image, or ``None`` without an apex.
        radius: (smallest, largest) distance in pixels from the apex to the fan, or ``None``.
    """

    mask: np.ndarray
    box: tuple[int, int, int, int]
    apex: tuple[float, float] | None = None
    angles_deg: tuple[float, float] | None = None
    radius: tuple[float, float] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Frame size (H, W) the geometry refers to."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def opening_deg(self) -> float | None:
        """Full opening angle of the fan in degrees, or ``None`` without a fitted apex."""
        if self.angles_deg is None:
            return None
        return self.angles_deg[1] - self.angles_deg[0]

    @property
    def fraction(self) -> float:
        """Share of the frame covered by the fan."""
        return float(self.mask.mean())

    def crop_box(self, margin: int = 0) -> tuple[int, int, int, int]:
        """The bounding box grown by ``margin`` pixels on each side, clipped to the frame."""
        r0, r1, c0, c1 = self.box
        h, w = self.shape
        return max(0, r0 - margin), min(h, r1 + margin), max(0, c0 - margin), min(w, c1 + margin)

    def cropped(self, box: tuple[int, int, int, int]) -> SectorGeometry:
        """The same sector in the coordinates of the crop ``box`` = (row0, row1, col0, col1)."""
        r0, r1, c0, c1 = (int(v) for v in box)
        mask = self.mask[r0:r1, c0:c1]
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            raise InvalidVideoError(f"crop box {box} does not overlap the sector")
        apex = None if self.apex is None else (self.apex[0] - r0, self.apex[1] - c0)
        return replace(self, mask=mask, apex=apex, box=(int(rows.min()), int(rows.max()) + 1,
                                                        int(cols.min()), int(cols.max()) + 1))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (everything but the mask)."""
        def rounded(values: tuple[float, float] | None) -> list[float] | None:
            return None if values is None else [round(float(v), 2) for v in values]

        opening = self.opening_deg
        return {"box": list(self.box), "shape": list(self.shape), "fraction": round(self.fraction, 4),
                "apex": rounded(self.apex), "angles_deg": rounded(self.angles_deg),
                "opening_deg": None if opening is None else round(opening, 2),
                "radius": rounded(self.radius)}


def detect_sector(frames: np.ndarray, within: tuple[int, int, int, int] | None = None) -> SectorGeometry:
    """Find the imaging sector (fan) in a clip with scanner UI burned in.

    Args:
        frames: ``T×H×W`` or ``H×W`` grayscale frames, float in [0, 1] or uint8.
        within: optional (row0, row1, col0, col1) box known to contain the fan (for instance the
            tissue region of a DICOM's ultrasound-region calibration); content outside is ignored.

    Returns:
        The :class:`SectorGeometry`, with an ``H×W`` mask.

    Raises:
        InvalidVideoError: frames of the wrong shape, or no solid image area (a blank clip).
    """
    stack = _as_float_stack(frames)
    _, h, w = stack.shape
    content, dynamic, brightness = _content_mask(stack)
    if within is not None:
        r0, r1, c0, c1 = _clip_box(within, h, w)
        keep = np.zeros_like(content)
        keep[r0:r1, c0:c1] = True
        content &= keep
    window = _odd(max(5, round(0.04 * min(h, w))))
    density = cv2.boxFilter(content.astype(np.float32), -1, (window, window),
                            borderType=cv2.BORDER_CONSTANT)
    solid = (density >= 0.5).astype(np.uint8)
    opening = _disk(max(1, window // 4))
    solid = cv2.morphologyEx(solid, cv2.MORPH_OPEN, opening)
    count, components, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if count < 2:
        raise InvalidVideoError("no imaging sector found: the frames hold no solid image area")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    core = _filled_hull(components == largest)
    # The density threshold pulls the border inwards where the fan is dark; the content pixels
    # within half a window of the core restore it without reaching UI further away (in a cine,
    # only the flickering ones, so static markers next to the rim stay out).
    near = cv2.dilate(core.astype(np.uint8), _disk(window // 2)).astype(bool)
    rim = content if dynamic is None else content & dynamic
    mask = _trim_faint_rim(_filled_hull(core | (rim & near)), brightness, window)
    if mask.mean() < MIN_SECTOR_FRACTION:
        raise InvalidVideoError(
            f"no imaging sector found: the largest solid area covers only {mask.mean():.1%} of the frame")
    return fit_sector_geometry(mask)


def fit_sector_geometry(mask: np.ndarray) -> SectorGeometry:
    """Describe a sector mask: bounding box, and apex, rim angles and radii when it is a fan.

    The left and right rims are fitted with straight lines on the rows between the top of the
    mask and its widest row (below which the bottom arc starts); their intersection is the apex.

    Args:
        mask: ``H×W`` bool mask of the imaging area.

    Raises:
        InvalidVideoError: an empty mask or one that is not 2-D.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InvalidVideoError(f"a sector mask must be H×W, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise InvalidVideoError("the sector mask is empty")
    cols = np.flatnonzero(mask.any(axis=0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    apex, angles, radius = _fit_fan(mask, rows)
    return SectorGeometry(mask=mask, box=box, apex=apex, angles_deg=angles, radius=radius)


# ------------------------------------------------------------------------------------ internals
def _as_float_stack(frames: np.ndarray) -> np.ndarray:
    """``T×H×W`` float32 in [0, 1] from ``T×H×W`` / ``H×W`` float or integer frames, keeping at
    most :data:`STATISTIC_FRAMES` evenly spaced frames of a long cine."""
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] < 8 or arr.shape[2] < 8 or arr.shape[0] == 0:
        raise InvalidVideoError(f"sector detection needs T×H×W or H×W grayscale frames, got shape {arr.shape}")
    if arr.shape[0] > STATISTIC_FRAMES:
        arr = arr[np.linspace(0, arr.shape[0] - 1, STATISTIC_FRAMES).round().astype(int)]
    if arr.dtype.kind in "ub":
        scale = 1.0 if arr.dtype.kind == "b" else float(np.iinfo(arr.dtype).max)
        return arr.astype(np.float32) / np.float32(scale)
    if arr.dtype.kind == "i":
        top = max(1.0, float(arr.max()))
        return np.clip(arr.astype(np.float32) / np.float32(top), 0.0, 1.0)
    arr = arr.astype(np.float32, copy=False)
    return arr if np.isfinite(arr).all() else np.nan_to_num(arr)


def _content_mask(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Per-pixel evidence from a ``T×H×W`` stack, each ``H×W``: content (bool), flicker (bool; a
    cine of three frames or more, else ``None``) and mean distance from the background (float).

    A pixel is *active* in a frame when it differs from the background level, or (in a cine) from
    its own median over time; it is content when active in at least :data:`MIN_PRESENCE` of the
    frames, and flickers when the second test alone passes that often. Static UI counts as content;
    the shape analysis removes it.
    """
    background, noise = _border_level(stack)
    distance = np.abs(stack - background)
    active = distance > np.float32(max(1.5 / 255.0, 3.0 * noise))
    brightness = distance.mean(axis=0)
    if stack.shape[0] < 3:
        return active.mean(axis=0) >= MIN_PRESENCE, None, brightness
    deviation = np.abs(stack - np.median(stack, axis=0))
    _, flutter = _border_level(deviation)
    flicker = deviation > np.float32(max(0.5 / 255.0, 3.0 * flutter))
    active |= flicker
    return active.mean(axis=0) >= MIN_PRESENCE, flicker.mean(axis=0) >= MIN_PRESENCE, brightness


def _trim_faint_rim(mask: np.ndarray, brightness: np.ndarray, window: int) -> np.ndarray:
    """The hull of the mask pixels that are not much fainter than the fan around them.

    Lossy compression rings around a high-contrast rim, leaving a faint, flickering halo up to a
    block wide outside the fan; it fails this contrast test, while a dim far field, compared with
    the equally dim fan next to it, passes. Dark cavities inside the fan fail it too, but the hull
    of what remains restores them.
    """
    size = (2 * window + 1, 2 * window + 1)
    inside = mask.astype(np.float32)
    weight = cv2.boxFilter(inside, -1, size, normalize=False)
    level = cv2.boxFilter(brightness * inside, -1, size, normalize=False) / np.maximum(weight, 1.0)
    return _filled_hull(mask & (brightness >= RIM_CONTRAST * level))


def _border_level(stack: np.ndarray) -> tuple[np.float32, float]:
    """Median of the pixels on the image border over all frames, and their noise (robust std).

    The noise comes from the border pixels close to the median, so UI or a fan touching the
    border does not inflate it.
    """
    border = np.concatenate([stack[:, 0].ravel(), stack[:, -1].ravel(),
                             stack[:, :, 0].ravel(), stack[:, :, -1].ravel()])
    level = np.median(border)
    spread = np.abs(border - level)
    spread = spread[spread < 10.0 / 255.0]
    return np.float32(level), 1.4826 * float(np.median(spread)) if spread.size else 0.0


def _filled_hull(region: np.ndarray) -> np.ndarray:
    """The filled convex hull of a bool mask, as a bool mask."""
    points = cv2.findNonZero(region.astype(np.uint8))
    out = np.zeros(region.shape, np.uint8)
    if points is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool)


def _fit_fan(mask: np.ndarray, rows: np.ndarray) -> tuple[
        tuple[float, float] | None, tuple[float, float] | None, tuple[float, float] | None]:
    """Apex (row, col), rim angles (deg) and radii (px) of a fan mask, or three ``None``."""
    left = np.argmax(mask[rows], axis=1).astype(np.float64)
    right = (mask.shape[1] - 1 - np.argmax(mask[rows, ::-1], axis=1)).astype(np.float64)
    widest = int(np.argmax(right - left))  # rows below it belong to the bottom arc
    if widest < 8:
        return None, None, None
    # Skip the top (the rounded skin line near the apex) and the corner where the arc starts.
    use = slice(int(0.15 * widest), int(0.9 * widest) + 1)
    y = rows[use].astype(np.float64)
    if y.size < 5:
        return None, None, None
    slope_l, icpt_l = _robust_line(y, left[use])
    slope_r, icpt_r = _robust_line(y, right[use])
    spread = math.atan(slope_r) - math.atan(slope_l)
    if spread < math.radians(10.0):  # parallel rims: a rectangle, not a fan
        return None, None, None
    apex_row = (icpt_l - icpt_r) / (slope_r - slope_l)
    apex_col = slope_l * apex_row + icpt_l
    if apex_row > rows[0] + 0.1 * (rows[-1] - rows[0]):
        return None, None, None
    rr, cc = np.nonzero(mask)
    dist = np.hypot(rr - apex_row, cc - apex_col)
    return ((float(apex_row), float(apex_col)),
            (math.degrees(math.atan(slope_l)), math.degrees(math.atan(slope_r))),
            (float(dist.min()), float(dist.max())))


def _robust_line(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Least-squares ``x = slope*y + intercept`` refitted without points off by more than 2 px."""
    slope, icpt = np.polyfit(y, x, 1)
    inliers = np.abs(slope * y + icpt - x) <= 2.0
    if inliers.sum() >= max(5, y.size // 2):
        slope, icpt = np.polyfit(y[inliers], x[inliers], 1)
    return float(slope), float(icpt)


def _clip_box(box: tuple[int, int, int, int], h: int, w: int) -> tuple[int, int, int, int]:
    r0, r1, c0, c1 = (int(v) for v in box)
    r0, c0 = max(0, r0), max(0, c0)
    r1, c1 = min(h, r1), min(w, c1)
    if r1 - r0 < 8 or c1 - c0 < 8:
        raise InvalidVideoError(f"the search box {box} leaves too little of the {h}×{w} frame")
    return r0, r1, c0, c1


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _odd(n: float) -> int:
    n = int(n)
    return n if n % 2 else n + 1
