"""Rasterising on an RGB numpy image: lines (solid or dashed), markers, rectangles, bitmap text and label contours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from .font import text_mask
from .labels import COLORS

Color = tuple[int, int, int]
BLACK: Color = (0, 0, 0)
WHITE: Color = (255, 255, 255)


class Canvas:
    """An ``H×W×3`` uint8 RGB image to draw on; coordinates are (x = column, y = row) in pixels."""

    def __init__(self, height: int, width: int, background: Color = WHITE):
        self.pixels = np.empty((int(height), int(width), 3), dtype=np.uint8)
        self.pixels[:] = background

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def fill_rect(self, left: float, top: float, right: float, bottom: float, color: Color) -> None:
        """Fill the pixels with left ≤ x < right and top ≤ y < bottom (clipped to the canvas)."""
        x0, x1 = max(int(round(left)), 0), min(int(round(right)), self.width)
        y0, y1 = max(int(round(top)), 0), min(int(round(bottom)), self.height)
        if x0 < x1 and y0 < y1:
            self.pixels[y0:y1, x0:x1] = color

    def stroke_rect(self, left: float, top: float, right: float, bottom: float, color: Color, width: int = 1) -> None:
        corners = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
        self.polyline(corners, color, width)

    def line(self, start: tuple[float, float], end: tuple[float, float], color: Color, width: int = 1,
             dash: Optional[tuple[float, float]] = None) -> None:
        """A straight line of ``width`` pixels; ``dash`` = (drawn, skipped) lengths in pixels."""
        (x0, y0), (x1, y1) = start, end
        length = float(np.hypot(x1 - x0, y1 - y0))
        steps = max(int(np.ceil(length * 2)), 1)
        t = np.linspace(0.0, 1.0, steps + 1)
        if dash is not None:
            period = dash[0] + dash[1]
            t = t[(t * length) % period < dash[0]]
        xs = np.round(x0 + t * (x1 - x0)).astype(int)
        ys = np.round(y0 + t * (y1 - y0)).astype(int)
        self._stamp(xs, ys, color, width)

    def polyline(self, points: Sequence[tuple[float, float]], color: Color, width: int = 1,
                 dash: Optional[tuple[float, float]] = None) -> None:
        for k in range(1, len(points)):
            self.line(points[k - 1], points[k], color, width, dash)

    def marker(self, x: float, y: float, radius: float, color: Color, outline: Optional[Color] = None) -> None:
        """A filled disc (with an optional one-pixel outline)."""
        r = int(np.ceil(radius)) + 1
        cx, cy = int(round(x)), int(round(y))
        yy, xx = np.mgrid[cy - r:cy + r + 1, cx - r:cx + r + 1]
        distance = np.hypot(xx - x, yy - y)
        inside = (yy >= 0) & (yy < self.height) & (xx >= 0) & (xx < self.width)
        if outline is not None:
            ring = inside & (distance <= radius + 1.0)
            self.pixels[yy[ring], xx[ring]] = outline
        disc = inside & (distance <= radius)
        self.pixels[yy[disc], xx[disc]] = color

    def text(self, x: float, y: float, text: str, color: Color = BLACK, scale: int = 2, align: str = "left",
             valign: str = "top", vertical: bool = False) -> tuple[int, int]:
        """Write ``text`` with its box aligned at (x, y); returns the box's (height, width).

        Args:
            align: ``left``, ``center`` or ``right`` — where x is on the box.
            valign: ``top``, ``middle`` or ``bottom`` — where y is on the box.
            vertical: rotate a quarter turn counter-clockwise (for a y-axis label).
        """
        mask = text_mask(text, scale)
        if vertical:
            mask = np.rot90(mask)
        h, w = mask.shape
        left = x - {"left": 0, "center": w / 2, "right": w}[align]
        top = y - {"top": 0, "middle": h / 2, "bottom": h}[valign]
        self.stamp_mask(mask, int(round(top)), int(round(left)), color)
        return h, w

    def stamp_mask(self, mask: np.ndarray, top: int, left: int, color: Color) -> None:
        """Paint ``color`` where ``mask`` is true, with its top-left corner at (left, top), clipped."""
        h, w = mask.shape
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + h, self.height), min(left + w, self.width)
        if y0 < y1 and x0 < x1:
            region = mask[y0 - top:y1 - top, x0 - left:x1 - left]
            self.pixels[y0:y1, x0:x1][region] = color

    def paste(self, image: np.ndarray, top: int, left: int) -> None:
        """Copy an RGB image in with its top-left corner at (left, top) (it must fit)."""
        h, w = image.shape[:2]
        self.pixels[top:top + h, left:left + w] = image

    def _stamp(self, xs: np.ndarray, ys: np.ndarray, color: Color, width: int) -> None:
        half = (width - 1) // 2
        for dy in range(-half, width - half):
            for dx in range(-half, width - half):
                x, y = xs + dx, ys + dy
                keep = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
                self.pixels[y[keep], x[keep]] = color


def grey_to_rgb(frame: np.ndarray) -> np.ndarray:
    """An ``H×W`` uint8 grey frame as ``H×W×3`` RGB."""
    return np.repeat(np.asarray(frame, dtype=np.uint8)[..., None], 3, axis=2)


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor."""
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def label_outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` with a 4-neighbour outside it (its one-pixel inner outline)."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def draw_label_contours(rgb: np.ndarray, labels: np.ndarray, thickness: int = 1) -> np.ndarray:
    """``rgb`` with the outline of each label drawn in its colour (``thickness`` pixels inward)."""
    out = rgb.copy()
    for value, color in COLORS.items():
        mask = labels == value
        for _ in range(max(thickness, 1)):
            if not mask.any():
                break
            edge = label_outline(mask)
            out[edge] = color
            mask = mask & ~edge
    return out
