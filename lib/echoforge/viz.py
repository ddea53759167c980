"""Pictures for people: label overlays, montages and PNG output (used by reports and previews).

Everything returns or takes RGB ``uint8`` arrays; colours follow :data:`echoforge.labels.COLORS`.

Example::

    rgb = montage([overlay(video.frames[i], video.labels[i]) for i in (video.ed, video.es)],
                  titles=["ED", "ES"])
    save_png("previews/ed_es.png", rgb)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from echoforge.io.atomic import write_bytes_atomic
from echoforge.labels import COLORS
from echoforge.video import EchoVideo


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``H×W`` (float in [0, 1] or uint8) or ``H×W×3`` → ``H×W×3`` uint8 RGB."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H×W or H×W×3 image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def overlay(frame: np.ndarray, labels: np.ndarray | None = None, contours: bool = True,
            fill_alpha: float | None = None) -> np.ndarray:
    """A frame with its labels drawn on: ``H×W×3`` uint8 RGB.

    Args:
        frame: ``H×W`` grey levels (float in [0, 1] or uint8) or an RGB image.
        labels: ``H×W`` CAMUS labels (0 background, 1 LV, 2 myocardium, 3 LA), or ``None``.
        contours: draw the outline of each structure.
        fill_alpha: opacity of a colour fill; ``None`` means none with contours and 0.35 without.
    """
    rgb = to_rgb(frame)
    if labels is None:
        return rgb
    labels = np.asarray(labels)
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"labels {labels.shape} and frame {rgb.shape[:2]} differ in size")
    alpha = (0.0 if contours else 0.35) if fill_alpha is None else float(fill_alpha)
    out = rgb.astype(np.float32)
    if alpha > 0:
        for value, colour in COLORS.items():
            mask = labels == value
            out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
    out = np.round(out).astype(np.uint8)
    if contours:
        thickness = max(1, int(round(min(labels.shape) / 256)))
        for value, colour in COLORS.items():
            mask = (labels == value).astype(np.uint8)
            if mask.any():
                found, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(out, found, -1, colour, thickness, lineType=cv2.LINE_8)
    return out


def montage(images: Sequence[np.ndarray], ncols: int | None = None, titles: Sequence[str] | None = None,
            pad: int = 4, height: int | None = None) -> np.ndarray:
    """Tile images on a grid: ``RGB uint8``.

    Args:
        images: ``H×W`` or ``H×W×3`` arrays (any sizes; each is resized to a common ``height``,
            by default the tallest, keeping its aspect ratio).
        ncols: tiles per row (default: all in one row).
        titles: one caption per image, written above it.
        pad: pixels of black between tiles and around the montage.
    """
    if not images:
        raise ValueError("montage needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    tiles = [to_rgb(image) for image in images]
    h = int(height or max(t.shape[0] for t in tiles))
    tiles = [t if t.shape[0] == h else cv2.resize(
        t, (max(1, round(t.shape[1] * h / t.shape[0])), h),
        interpolation=cv2.INTER_AREA if t.shape[0] > h else cv2.INTER_LINEAR) for t in tiles]
    font_scale = max(0.35, h / 600.0)
    title_h = int(round(26 * font_scale / 0.5)) if titles else 0
    if titles:
        captioned = []
        for tile, title in zip(tiles, titles, strict=True):
            strip = np.zeros((title_h, tile.shape[1], 3), np.uint8)
            cv2.putText(strip, str(title), (3, int(title_h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                        (235, 235, 235), 1, cv2.LINE_AA)
            captioned.append(np.concatenate([strip, tile]))
        tiles = captioned
    ncols = len(tiles) if ncols is None else max(1, int(ncols))
    rows = [tiles[i: i + ncols] for i in range(0, len(tiles), ncols)]
    cell_w = max(t.shape[1] for t in tiles)
    cell_h = h + title_h
    canvas = np.zeros((pad + len(rows) * (cell_h + pad), pad + ncols * (cell_w + pad), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
            canvas[y: y + tile.shape[0], x: x + tile.shape[1]] = tile
    return canvas


def save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an RGB (or grey) image as PNG, atomically."""
    image = to_rgb(rgb)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    return write_bytes_atomic(path, encoded.tobytes())


def cycle_frames(video: EchoVideo) -> dict[str, int]:
    """Indices of ED, mid-systole, ES and early diastole in a one-cycle phantom clip (from its meta)."""
    phases = np.mod(np.asarray(video.meta["phases"], dtype=float), 1.0)
    es = float(video.meta["es_phase"])
    targets = {"ED": 0.0, "mid-systole": es / 2.0, "ES": es, "diastole": es + 0.3 * (1.0 - es)}
    picked = {}
    for name, target in targets.items():
        distance = np.abs((phases - target + 0.5) % 1.0 - 0.5)
        picked[name] = int(np.argmin(distance))
    if video.ed is not None:
        picked["ED"] = video.ed
    if video.es is not None:
        picked["ES"] = video.es
    return picked


def phantom_vs_real_montage(phantom_videos: Sequence[EchoVideo], real_frames: np.ndarray, real_title: str = "real A4C",
                            tile_height: int = 256) -> np.ndarray:
    """Phantom clips (ED, mid-systole, ES, diastole; plain and with label contours) above frames of
    a real cine, for judging realism by eye.

    Args:
        phantom_videos: one-cycle phantom :class:`~echoforge.video.EchoVideo` clips (e.g. 4CH and 2CH),
            with labels and a sector mask; they are shown cropped to the fan.
        real_frames: ``T×H×W`` grey frames (uint8 or float in [0, 1]) of a real echo, cropped to its
            sector; four are shown, spread over the clip.
        real_title: caption prefix of the real frames.
    """
    images: list[np.ndarray] = []
    titles: list[str] = []
    for video in phantom_videos:
        picked = cycle_frames(video)
        # crop to the fan, as the real frames are cropped to their ultrasound region
        rows, cols = (np.flatnonzero(video.sector.any(axis=a)) for a in (1, 0))
        box = np.s_[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
        for with_labels in (False, True):
            for name, index in picked.items():
                labels = video.labels[index][box] if with_labels else None
                images.append(overlay(video.frames[index][box], labels))
                suffix = " + labels" if with_labels else ""
                titles.append(f"{video.view} {name}{suffix}")
    real = np.asarray(real_frames)
    for index in np.linspace(0, len(real) - 1, 4).round().astype(int):
        images.append(to_rgb(real[index]))
        titles.append(f"{real_title} frame {index}")
    return montage(images, ncols=4, titles=titles, height=tile_height)


def save_phantom_vs_real_png(path: str | os.PathLike[str], phantom_videos: Sequence[EchoVideo], real_frames: np.ndarray,
                             real_title: str = "real A4C", tile_height: int = 256) -> Path:
    """Write :func:`phantom_vs_real_montage` as a PNG."""
    return save_png(path, phantom_vs_real_montage(phantom_videos, real_frames, real_title, tile_height))
