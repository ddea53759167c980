"""Shared fixtures: small synthetic videos built in memory (fast), phantom videos (realistic)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from echoforge import EchoVideo

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample-data"
REAL_A4C = SAMPLE_DATA / "real" / "pydicom-data-1.0.0__color3d_jpeg_baseline.dcm"
TEST_DATA = Path(__file__).resolve().parent / "data"
SHARED_REAL_ECHO = Path(os.environ.get("ECHOFORGE_SHARED_REAL_ECHO", REPO.parent / "shared" / "data" / "real-echo"))


def ellipse_labels(n_frames: int = 6, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """T×H×W labels: an LV ellipse shrinking over time, a myocardial ring and an LA below."""
    import cv2

    labels = np.zeros((n_frames, *shape), dtype=np.uint8)
    h, w = shape
    for t in range(n_frames):
        scale = 1.0 - 0.3 * t / max(n_frames - 1, 1)
        axes = (int(w * 0.12 * scale) + 1, int(h * 0.28 * scale) + 1)
        centre = (w // 2, int(h * 0.42))
        cv2.ellipse(labels[t], centre, (axes[0] + 3, axes[1] + 3), 0, 0, 360, 2, -1)
        cv2.ellipse(labels[t], centre, axes, 0, 0, 360, 1, -1)
        cv2.ellipse(labels[t], (w // 2, int(h * 0.85)), (int(w * 0.1), int(h * 0.1)), 0, 0, 360, 3, -1)
    return labels


@pytest.fixture
def small_video() -> EchoVideo:
    """A 6-frame 48×64 video with labels on frames 0 and 5 (ED/ES)."""
    rng = np.random.default_rng(0)
    labels = ellipse_labels()
    frames = (0.2 + 0.6 * (labels == 2) + 0.1 * rng.random(labels.shape)).astype(np.float32)
    video = EchoVideo(frames, spacing=(0.5, 0.4), frame_time_ms=33.3, view="4CH", ed=0, es=5,
                      source="synthetic")
    return video.with_labels(labels, annotated=[0, 5])
