"""Tests of the overlay, montage and PNG helpers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from echoforge.labels import COLORS, LA, LV, MYOCARDIUM
from echoforge.phantom import make_patient
from echoforge.viz import (
    cycle_frames,
    montage,
    overlay,
    phantom_vs_real_montage,
    save_phantom_vs_real_png,
    save_png,
    to_rgb,
)


def _labels() -> np.ndarray:
    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 20:44] = MYOCARDIUM
    labels[14:46, 26:38] = LV
    labels[50:60, 24:40] = LA
    return labels


def test_overlay_draws_contours_in_label_colours() -> None:
    frame = np.full((64, 64), 0.5, np.float32)
    out = overlay(frame, _labels())
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    colours = {tuple(c) for c in out.reshape(-1, 3)}
    for value in (LV, MYOCARDIUM, LA):
        assert COLORS[value] in colours
    # inside a structure (away from its outline) the frame shows through unchanged
    assert tuple(out[30, 32]) == (128, 128, 128)


def test_overlay_fill_and_no_labels() -> None:
    frame = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    assert np.array_equal(overlay(frame, None), to_rgb(frame))
    filled = overlay(frame, _labels(), contours=False)
    inside = filled[30, 32].astype(int)
    grey = int(round(frame[30, 32] * 255))
    expected = 0.65 * grey + 0.35 * np.asarray(COLORS[LV])
    assert np.abs(inside - expected).max() <= 1
    with pytest.raises(ValueError):
        overlay(frame, np.zeros((10, 10), np.uint8))


def test_to_rgb_accepts_grey_and_colour() -> None:
    assert to_rgb(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert to_rgb(np.ones((5, 6, 3), np.float32)).max() == 255
    with pytest.raises(ValueError):
        to_rgb(np.zeros((5, 6, 4), np.uint8))


def test_montage_layout_and_titles() -> None:
    images = [np.zeros((40, 60), np.float32), np.ones((80, 80, 3), np.uint8) * 200, np.zeros((20, 20), np.uint8)]
    out = montage(images, ncols=2, titles=["a", "b", "c"], pad=3)
    assert out.dtype == np.uint8 and out.ndim == 3
    # two rows, each tile resized to the tallest (80 px) plus a title strip
    assert out.shape[0] > 2 * 80 and out.shape[1] >= 3 + 2 * (120 + 3)
    assert (out == 200).any()                      # the second tile survives
    plain = montage(images, pad=0)
    assert plain.shape[0] == 80
    with pytest.raises(ValueError):
        montage(images, titles=["only one"])
    with pytest.raises(ValueError):
        montage([])


def test_save_png_is_rgb_and_atomic(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255                                # pure red
    path = save_png(tmp_path / "sub" / "red.png", rgb)
    assert path.exists()
    bgr = cv2.imread(str(path))
    assert tuple(bgr[0, 0]) == (0, 0, 255)
    assert [p.name for p in path.parent.iterdir()] == ["red.png"]


def test_phantom_vs_real_montage(tmp_path: Path) -> None:
    patient = make_patient(1)
    videos = [patient.render(view, size=(96, 96)) for view in ("4CH", "2CH")]
    picked = cycle_frames(videos[0])
    assert picked["ED"] == videos[0].ed and picked["ES"] == videos[0].es
    assert picked["ED"] < picked["mid-systole"] < picked["ES"] < picked["diastole"]
    real = np.random.default_rng(0).integers(0, 255, (10, 70, 90), dtype=np.uint8)
    rgb = phantom_vs_real_montage(videos, real, tile_height=96)
    assert rgb.ndim == 3 and rgb.shape[0] > 5 * 96             # 4 phantom rows and 1 real row
    path = save_phantom_vs_real_png(tmp_path / "pvr.png", videos, real, tile_height=96)
    assert cv2.imread(str(path)).shape == rgb.shape
