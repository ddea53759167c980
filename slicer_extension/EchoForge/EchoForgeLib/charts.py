"""The report's pictures as RGB arrays: LV curve with ED/ES, Bland–Altman, and the ED/ES overlay montage.

Drawn with :mod:`EchoForgeLib.drawing` (numpy only); :mod:`EchoForgeLib.png` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from .drawing import BLACK, Canvas, Color, draw_label_contours, enlarge, grey_to_rgb
from .font import text_size
from .labels import COLORS, SEGMENT_NAMES

BLUE: Color = (31, 119, 180)
RED: Color = (214, 39, 40)
GREEN: Color = (44, 160, 44)
GREY: Color = (110, 110, 110)
GRID: Color = (225, 225, 225)
TEXT_SCALE = 2


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 × 10ᵏ apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def format_number(value: float, step: float = 0.0) -> str:
    """A tick or legend number with as many decimals as ``step`` needs (none for whole numbers)."""
    decimals = 0 if step == 0 or step >= 1 else min(int(math.ceil(-math.log10(step) - 1e-9)), 4)
    if step and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    text = f"{value:.{decimals}f}"
    return "0" if text in ("-0", "-0.0", "-0.00") else text


class Plot:
    """A canvas with one set of axes: frame, grid, ticks, axis labels, title and legend."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_range: tuple[float, float],
                 title: str, xlabel: str, ylabel: str):
        self.canvas = Canvas(height, width)
        char_h = text_size("0", TEXT_SCALE)[0]
        self.x_ticks = nice_ticks(*x_range)
        self.y_ticks = nice_ticks(*y_range)
        self.x_range = (min(x_range[0], self.x_ticks[0]), max(x_range[1], self.x_ticks[-1]))
        self.y_range = (min(y_range[0], self.y_ticks[0]), max(y_range[1], self.y_ticks[-1]))
        y_step = self.y_ticks[1] - self.y_ticks[0] if len(self.y_ticks) > 1 else 0.0
        x_step = self.x_ticks[1] - self.x_ticks[0] if len(self.x_ticks) > 1 else 0.0
        self.y_labels = [format_number(v, y_step) for v in self.y_ticks]
        self.x_labels = [format_number(v, x_step) for v in self.x_ticks]
        widest = max(text_size(t, TEXT_SCALE)[1] for t in self.y_labels)
        self.left = 16 + char_h + 12 + widest + 10
        self.right = width - 24
        self.top = 16 + char_h + 16
        self.bottom = height - (16 + char_h + 12 + char_h + 10)
        self._draw_axes(title, xlabel, ylabel)

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        px = self.left + (x - x0) / (x1 - x0) * (self.right - self.left)
        py = self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top)
        return px, py

    def _draw_axes(self, title: str, xlabel: str, ylabel: str) -> None:
        c = self.canvas
        for k, value in enumerate(self.y_ticks):
            label = self.y_labels[k]
            _, py = self.to_pixel(self.x_range[0], value)
            c.line((self.left, py), (self.right, py), GRID)
            c.line((self.left - 6, py), (self.left, py), BLACK)
            c.text(self.left - 10, py, label, BLACK, TEXT_SCALE, align="right", valign="middle")
        for k, value in enumerate(self.x_ticks):
            label = self.x_labels[k]
            px, _ = self.to_pixel(value, self.y_range[0])
            c.line((px, self.top), (px, self.bottom), GRID)
            c.line((px, self.bottom), (px, self.bottom + 6), BLACK)
            c.text(px, self.bottom + 10, label, BLACK, TEXT_SCALE, align="center")
        c.stroke_rect(self.left, self.top, self.right, self.bottom, BLACK)
        c.text((self.left + self.right) / 2, 14, title, BLACK, TEXT_SCALE, align="center")
        c.text((self.left + self.right) / 2, c.height - 10, xlabel, BLACK, TEXT_SCALE, align="center",
               valign="bottom")
        c.text(14, (self.top + self.bottom) / 2, ylabel, BLACK, TEXT_SCALE, valign="middle", vertical=True)

    def hline(self, y: float, color: Color, width: int = 1, dash: Optional[tuple[float, float]] = None) -> None:
        _, py = self.to_pixel(self.x_range[0], y)
        self.canvas.line((self.left, py), (self.right, py), color, width, dash)

    def vline(self, x: float, color: Color, width: int = 1, dash: Optional[tuple[float, float]] = None) -> None:
        px, _ = self.to_pixel(x, self.y_range[0])
        self.canvas.line((px, self.top), (px, self.bottom), color, width, dash)

    def curve(self, xs: Sequence[float], ys: Sequence[float], color: Color, width: int = 2,
              marker_radius: float = 3.0) -> list[tuple[float, float]]:
        """A line through the finite points (gaps at NaN) with a marker on each; returns them in pixels."""
        points = [self.to_pixel(xs[k], ys[k]) if math.isfinite(ys[k]) else None for k in range(len(xs))]
        for a, b in ((points[k - 1], points[k]) for k in range(1, len(points))):
            if a is not None and b is not None:
                self.canvas.line(a, b, color, width)
        for p in points:
            if p is not None and marker_radius > 0:
                self.canvas.marker(p[0], p[1], marker_radius, color)
        return [p for p in points if p is not None]

    def legend(self, entries: Sequence[tuple[str, Color, str]],
               avoid: Sequence[tuple[float, float]] = ()) -> None:
        """A boxed legend in the corner covering fewest of the ``avoid`` points (pixels); each entry is
        (text, colour, ``line``/``dash``/``dot``)."""
        if not entries:
            return
        line_h = text_size("0", TEXT_SCALE)[0] + 8
        width = max(text_size(text, TEXT_SCALE)[1] for text, _, _ in entries) + 48
        height = line_h * len(entries) + 8
        corners = [(self.right - width - 8, self.top + 8), (self.left + 8, self.top + 8),
                   (self.right - width - 8, self.bottom - height - 8), (self.left + 8, self.bottom - height - 8)]

        def covered(corner: tuple[float, float]) -> int:
            x, y = corner
            return sum(1 for px, py in avoid if x - 6 <= px <= x + width + 6 and y - 6 <= py <= y + height + 6)

        left, top = min(corners, key=covered)
        self.canvas.fill_rect(left, top, left + width, top + height, (255, 255, 255))
        self.canvas.stroke_rect(left, top, left + width, top + height, GREY)
        for k, (text, color, style) in enumerate(entries):
            y = top + 6 + k * line_h + line_h / 2 - 4
            if style == "dot":
                self.canvas.marker(left + 18, y, 5, color)
            else:
                self.canvas.line((left + 6, y), (left + 32, y), color, 2, (6, 4) if style == "dash" else None)
            self.canvas.text(left + 40, y, text, BLACK, TEXT_SCALE, valign="middle")


def _padded_range(values: Sequence[float], pad: float = 0.08) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    margin = (hi - lo) * pad or max(abs(hi) * 0.1, 1.0)
    return lo - margin, hi + margin


def volume_curve_image(values: Sequence[Optional[float]], ed: Optional[int] = None, es: Optional[int] = None,
                       frame_time_ms: Optional[float] = None, ylabel: str = "LV area (mm²)",
                       title: str = "LV over the clip (ED/ES marked)", size: tuple[int, int] = (960, 520)) -> np.ndarray:
    """LV area or volume of every frame with ED and ES marked, as an RGB image.

    Args:
        values: ``T`` areas or volumes (``None``/NaN frames are gaps).
        ed, es: frames to mark.
        frame_time_ms: x in ms when given, in frames otherwise.
        size: (width, height) in pixels.
    """
    v = [float("nan") if x is None else float(x) for x in values]
    if not v:
        raise ValueError("no values to plot")
    step = frame_time_ms or 1.0
    xs = [k * step for k in range(len(v))]
    x_pad = 0.02 * max(xs[-1] - xs[0], step)
    plot = Plot(size[0], size[1], (xs[0] - x_pad, xs[-1] + x_pad), _padded_range(v, 0.15),
                title, "time (ms)" if frame_time_ms else "frame", ylabel)
    entries = []
    for index, name, color in ((ed, "ED", RED), (es, "ES", GREEN)):
        if index is None:
            continue
        if not 0 <= index < len(v):
            raise ValueError(f"{name} frame {index} is outside the {len(v)} frames")
        plot.vline(xs[index], color, 2, (8, 6))
    drawn = plot.curve(xs, v, BLUE)
    for index, name, color in ((ed, "ED", RED), (es, "ES", GREEN)):
        if index is None:
            continue
        if math.isfinite(v[index]):
            px, py = plot.to_pixel(xs[index], v[index])
            plot.canvas.marker(px, py, 7, color, outline=(255, 255, 255))
            entries.append((f"{name}: frame {index} ({v[index]:.1f})", color, "dot"))
        else:
            entries.append((f"{name}: frame {index} (not measurable)", color, "dash"))
    plot.legend(entries, drawn)
    return plot.canvas.pixels


def bland_altman_image(values: Sequence[float], reference: Sequence[float], stats: dict, unit: str = "%",
                       title: str = "EF: EchoForge vs reference (Bland-Altman)", method: str = "EchoForge",
                       size: tuple[int, int] = (760, 640)) -> np.ndarray:
    """Differences (values − reference) against means, with the bias and the 95 % limits of agreement.

    ``stats`` is the :func:`EchoForgeLib.report.agreement` of the same pairs.
    """
    p = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    mean, diff = (p + r) / 2, p - r
    lines = [0.0] + [stats[k] for k in ("bias", "loa_lower", "loa_upper") if math.isfinite(stats.get(k, math.nan))]
    plot = Plot(size[0], size[1], _padded_range(list(mean), 0.15), _padded_range(list(diff) + lines, 0.2),
                title, f"mean of {method} and reference ({unit})", f"{method} - reference ({unit})")
    plot.hline(0.0, GREY)
    entries = [(f"n = {stats['n']}", BLUE, "dot")]
    if stats["n"]:
        plot.hline(stats["bias"], RED, 2)
        entries.append((f"bias {stats['bias']:+.2f} {unit}", RED, "line"))
    if math.isfinite(stats.get("sd", math.nan)):
        plot.hline(stats["loa_upper"], RED, 2, (8, 6))
        plot.hline(stats["loa_lower"], RED, 2, (8, 6))
        entries.append((f"95% LoA [{stats['loa_lower']:.2f}, {stats['loa_upper']:.2f}] {unit}", RED, "dash"))
    dots = [plot.to_pixel(x, y) for x, y in np.stack([mean, diff], axis=1)]
    for px, py in dots:
        plot.canvas.marker(px, py, 5, BLUE)
    plot.legend(entries, dots)
    return plot.canvas.pixels


def ed_es_montage(frames: np.ndarray, labels: np.ndarray, ed: Optional[int], es: Optional[int],
                  picks: Optional[Sequence[int]] = None, min_tile_height: int = 240) -> np.ndarray:
    """ED, ES and a few frames between, each with its label contours and a caption, as one RGB image.

    Args:
        frames: ``T×H×W`` uint8 grey frames.
        labels: ``T×H×W`` labels on the same frames.
        ed, es: frames to include and name in the captions.
        picks: the frames to show (default: four spread over the clip, plus ED and ES).
        min_tile_height: small frames are enlarged (whole factors) to at least this height.
    """
    n = frames.shape[0]
    if picks is None:
        spread = {int(round(i)) for i in np.linspace(0, n - 1, 4)}
        picks = sorted(spread | {f for f in (ed, es) if f is not None})
    h, w = frames.shape[1:]
    factor = max(1, int(math.ceil(min_tile_height / h)))
    thickness = max(1, factor // 2)
    caption_h = text_size("0", TEXT_SCALE)[0] + 12
    columns = min(len(picks), 3)
    rows = int(math.ceil(len(picks) / columns))
    pad = 8
    tile_h, tile_w = h * factor, w * factor
    legend_h = caption_h
    canvas = Canvas(pad + rows * (caption_h + tile_h + pad) + legend_h, pad + columns * (tile_w + pad), (0, 0, 0))
    for k, t in enumerate(picks):
        row, col = divmod(k, columns)
        top, left = pad + row * (caption_h + tile_h + pad), pad + col * (tile_w + pad)
        tile = draw_label_contours(enlarge(grey_to_rgb(frames[t]), factor), enlarge(labels[t], factor), thickness)
        canvas.paste(tile, top + caption_h, left)
        tag = " ED" if t == ed else " ES" if t == es else ""
        canvas.text(left + 2, top + 4, f"frame {t}{tag}", (235, 235, 235), TEXT_SCALE)
    x = pad
    y = canvas.height - legend_h + 4
    for value, name in SEGMENT_NAMES.items():
        canvas.fill_rect(x, y + 2, x + 14, y + 16, COLORS[value])
        _, width = canvas.text(x + 20, y, name, (235, 235, 235), TEXT_SCALE)
        x += 20 + width + 24
    return canvas.pixels
