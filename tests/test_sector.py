"""Sector (fan) detection on synthetic scanner frames with burned-in UI and on real echo files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from echoforge.errors import InvalidVideoError
from echoforge.sector import SectorGeometry, detect_sector, fit_sector_geometry

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real-echo"
A4C_CINE = ROOT / "sample-data" / "real" / "pydicom-data-1.0.0__color3d_jpeg_baseline.dcm"


# ------------------------------------------------------------------------------- synthetic frames
def fan_mask(shape: tuple[int, int], apex: tuple[float, float], half_angle_deg: float,
             r_min: float, r_max: float, steer_deg: float = 0.0) -> np.ndarray:
    """``H×W`` bool: the fan of a phased-array probe at ``apex`` (row, col)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    dr, dc = rows - apex[0], cols - apex[1]
    radius = np.hypot(dr, dc)
    angle = np.degrees(np.arctan2(dc, dr)) - steer_deg
    return (radius >= r_min) & (radius <= r_max) & (np.abs(angle) <= half_angle_deg) & (dr > 0)


def scanner_clip(n_frames: int = 12, shape: tuple[int, int] = (380, 480), apex: tuple[float, float] = (24, 240),
                 half_angle_deg: float = 38.0, r_min: float = 18.0, r_max: float = 300.0,
                 steer_deg: float = 0.0, doppler_box: bool = False,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic scanner export: ``T×H×W`` float32 frames and the ``H×W`` true fan.

    The fan holds speckle (Rayleigh noise over a smooth echogenicity map with a dark cavity and
    depth attenuation) that changes from frame to frame; around and over it are UI text, a frame
    counter, a grey bar, an orientation marker, a dotted depth scale with labels, a sweeping ECG
    trace, caliper crosses and optionally a colour-Doppler box (its luma) inside the fan.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    fan = fan_mask(shape, apex, half_angle_deg, r_min, r_max, steer_deg)
    rows, cols = np.mgrid[:h, :w].astype(np.float32)
    depth = np.hypot(rows - apex[0], cols - apex[1]) / r_max
    tissue = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 12)
    tissue = 0.25 + 0.6 * (tissue - tissue.min()) / (np.ptp(tissue) + 1e-6)
    cy, cx = apex[0] + 0.55 * r_max, apex[1] + 0.15 * r_max
    frames = np.zeros((n_frames, h, w), np.float32)
    for t in range(n_frames):
        beat = 1.0 + 0.15 * math.sin(2 * math.pi * t / n_frames)
        cavity = ((rows - cy) / (0.28 * r_max * beat)) ** 2 + ((cols - cx) / (0.14 * r_max * beat)) ** 2 < 1
        speckle = rng.rayleigh(0.5, shape).astype(np.float32)
        image = tissue * speckle * (1.0 - 0.45 * depth)
        image[cavity] *= 0.08
        frames[t] = np.where(fan, np.clip(image, 0.0, 1.0), 0.0)

    ui = np.zeros((n_frames, h, w), np.float32)
    font = cv2.FONT_HERSHEY_SIMPLEX
    k = h / 380  # UI layout scale
    right = int(apex[1] + r_max * math.sin(math.radians(half_angle_deg + abs(steer_deg))) + 14 * k)
    for t in range(n_frames):
        canvas = ui[t]
        for i, text in enumerate(("EchoForge US", "Gen THI", "16cm 49Hz")):
            cv2.putText(canvas, text, (4, int((16 + 16 * i) * k)), font, 0.45 * k, 0.9, 1, cv2.LINE_AA)
        for i, text in enumerate(("MI 0.9", "TIS 0.7")):
            cv2.putText(canvas, text, (w - int(62 * k), int((16 + 16 * i) * k)), font, 0.45 * k, 0.85, 1,
                        cv2.LINE_AA)
        cv2.putText(canvas, f"{t + 1}/{n_frames}", (w - int(60 * k), h - int(50 * k)), font, 0.4 * k, 0.8, 1,
                    cv2.LINE_AA)
        canvas[int(50 * k):int(130 * k), w - int(16 * k):w - int(6 * k)] = np.linspace(
            1.0, 0.0, int(130 * k) - int(50 * k), dtype=np.float32)[:, None]
        cv2.circle(canvas, (int(apex[1] + 30 * k), int(apex[0] + 4 * k)), max(2, int(4 * k)), 0.7, -1)
        for depth_cm, row in enumerate(range(int(apex[0] + 10 * k), h - int(60 * k), int(20 * k))):
            canvas[row:row + 2, right:right + 2] = 0.8
            if depth_cm % 5 == 0:
                cv2.putText(canvas, str(depth_cm), (right + 5, row + 4), font, 0.3 * k, 0.8, 1, cv2.LINE_AA)
        xs = np.arange(20, w - 20)
        phase = (xs - 20 + 9 * t) / (90.0 * k)
        ecg = h - k * (22 + 14 * np.exp(-(((phase % 1.0) - 0.3) / 0.02) ** 2) - 2 * np.sin(2 * np.pi * phase))
        cv2.polylines(canvas, [np.stack([xs, ecg], 1).astype(np.int32)], False, 0.6, 1, cv2.LINE_AA)
        sweep = 20 + (9 * t) % (w - 40)
        cv2.line(canvas, (sweep, h - int(40 * k)), (sweep, h - int(8 * k)), 0.9, 1)
        for cross in ((apex[0] + 0.4 * r_max, apex[1] - 0.13 * r_max), (apex[0] + 0.67 * r_max, apex[1] + 0.1 * r_max)):
            r, c, a = int(cross[0]), int(cross[1]), max(3, int(5 * k))
            cv2.line(canvas, (c - a, r), (c + a, r), 1.0, 1)
            cv2.line(canvas, (c, r - a), (c, r + a), 1.0, 1)
        if doppler_box:
            r0, c0 = int(apex[0] + 0.3 * r_max), int(apex[1] - 0.2 * r_max)
            r1, c1 = int(apex[0] + 0.7 * r_max), int(apex[1] + 0.2 * r_max)
            box = (rng.random((r1 - r0, c1 - c0)) > 0.5) & fan[r0:r1, c0:c1]
            frames[t, r0:r1, c0:c1][box] = 0.35 + 0.3 * rng.random(int(box.sum()))
            cv2.rectangle(canvas, (c0, r0), (c1, r1), 0.8, 1)
    return np.maximum(frames, ui), fan


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ----------------------------------------------------------------------------------- synthetic tests
def test_cine_with_burned_in_ui() -> None:
    frames, fan = scanner_clip()
    geometry = detect_sector(frames)
    assert iou(geometry.mask, fan) > 0.95
    assert geometry.mask.shape == fan.shape and geometry.mask.dtype == bool
    rows, cols = np.nonzero(fan)
    truth = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
    assert np.abs(np.subtract(geometry.box, truth)).max() <= 4
    assert geometry.apex is not None and geometry.angles_deg is not None and geometry.radius is not None
    assert math.dist(geometry.apex, (24, 240)) < 6
    assert geometry.angles_deg == pytest.approx((-38.0, 38.0), abs=2.0)
    assert geometry.radius[1] == pytest.approx(300.0, rel=0.02)
    assert geometry.opening_deg == pytest.approx(76.0, abs=3.0)


def test_single_frame() -> None:
    frames, fan = scanner_clip(n_frames=1, seed=1)
    assert iou(detect_sector(frames[0]).mask, fan) > 0.95


def test_steered_off_centre_fan_with_doppler_box() -> None:
    frames, fan = scanner_clip(n_frames=8, apex=(10, 200), half_angle_deg=30, steer_deg=8,
                               r_min=10, r_max=280, doppler_box=True, seed=2)
    geometry = detect_sector(frames)
    assert iou(geometry.mask, fan) > 0.95
    assert geometry.angles_deg == pytest.approx((-22.0, 38.0), abs=2.5)


@pytest.mark.parametrize("shape", [(190, 240), (760, 960)])
def test_other_sizes(shape: tuple[int, int]) -> None:
    scale = shape[0] / 380
    frames, fan = scanner_clip(n_frames=6, shape=shape, apex=(24 * scale, 240 * scale),
                               r_min=18 * scale, r_max=300 * scale, seed=3)
    assert iou(detect_sector(frames).mask, fan) > 0.95


def test_uint8_input_matches_float() -> None:
    frames, fan = scanner_clip(n_frames=4, seed=4)
    as_uint8 = np.round(frames * 255).astype(np.uint8)
    assert iou(detect_sector(as_uint8).mask, detect_sector(frames).mask) > 0.99


def test_search_box_limits_the_result() -> None:
    frames, fan = scanner_clip(n_frames=4, seed=5)
    geometry = detect_sector(frames, within=(0, 200, 0, 480))
    assert geometry.box[1] <= 200
    assert not geometry.mask[200:].any()


def test_rectangle_is_not_a_fan() -> None:
    rng = np.random.default_rng(6)
    frames = np.zeros((5, 200, 260), np.float32)
    frames[:, 30:170, 40:220] = rng.rayleigh(0.3, (5, 140, 180)).clip(0, 1)
    geometry = detect_sector(frames)
    assert geometry.apex is None and geometry.angles_deg is None and geometry.opening_deg is None
    truth = np.zeros((200, 260), bool)
    truth[30:170, 40:220] = True
    assert iou(geometry.mask, truth) > 0.95


def test_blank_and_malformed_input() -> None:
    with pytest.raises(InvalidVideoError, match="no imaging sector"):
        detect_sector(np.zeros((3, 100, 120), np.float32))
    with pytest.raises(InvalidVideoError, match="T×H×W"):
        detect_sector(np.zeros((2, 3, 100, 120), np.float32))
    with pytest.raises(InvalidVideoError, match="empty"):
        fit_sector_geometry(np.zeros((50, 50), bool))


def test_geometry_helpers() -> None:
    fan = fan_mask((300, 400), (20, 200), 40, 15, 260)
    geometry = fit_sector_geometry(fan)
    assert isinstance(geometry, SectorGeometry)
    assert geometry.apex == pytest.approx((20, 200), abs=2.0)
    assert geometry.radius == pytest.approx((15, 260), abs=2.0)
    assert geometry.fraction == pytest.approx(fan.mean())
    r0, r1, c0, c1 = geometry.box
    assert geometry.crop_box(margin=5) == (max(0, r0 - 5), min(300, r1 + 5), max(0, c0 - 5), min(400, c1 + 5))
    inner = geometry.cropped(geometry.box)
    assert inner.shape == (r1 - r0, c1 - c0)
    assert inner.box == (0, r1 - r0, 0, c1 - c0)
    assert inner.apex == pytest.approx((geometry.apex[0] - r0, geometry.apex[1] - c0))
    summary = json.loads(json.dumps(geometry.to_dict()))
    assert summary["box"] == list(geometry.box) and summary["opening_deg"] == pytest.approx(80, abs=1.5)
    with pytest.raises(InvalidVideoError, match="does not overlap"):
        geometry.cropped((0, 5, 0, 5))


# ---------------------------------------------------------------------------------------- real files
def _luma_stack(path: Path) -> np.ndarray:
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if ds.SamplesPerPixel == 3:  # YBR as decoded by pydicom 2.x: Y is the luma
        pixels = pixels[..., 0]
    return pixels if pixels.ndim == 3 else pixels[None]


def test_real_apical_four_chamber_cine() -> None:
    geometry = detect_sector(_luma_stack(A4C_CINE))
    mask = geometry.mask
    assert mask.shape == (480, 640)
    assert not mask[:, :80].any() and not mask[:, 602:].any()  # UI text and depth dots
    assert not mask[430:].any()  # bottom tool bar
    assert not mask[:35].any()  # text and marker above the apex
    assert mask[150:380, 230:450].all()  # the heart
    r0, r1, c0, c1 = geometry.box
    assert 35 <= r0 <= 50 and 395 <= r1 <= 415 and 80 <= c0 <= 90 and 590 <= c1 <= 602
    assert geometry.opening_deg == pytest.approx(86, abs=4)  # rims at about -43° and +43°
    assert 0.3 < geometry.fraction < 0.42


def test_real_single_frame_parasternal_long_axis_with_calipers() -> None:
    geometry = detect_sector(_luma_stack(REAL / "pydicom-data-1.0.0__JPGLosslessP14SV1_1s_1f_8b.dcm"))
    mask = geometry.mask
    assert not mask[:, :130].any()  # text column on the left
    assert not mask[:, 940:].any()  # grey bar, heart rate
    assert not mask[680:].any()  # ECG trace
    assert not mask[:140].any()  # measurement text, marker
    assert mask[250:550, 360:660].all()
    assert geometry.opening_deg == pytest.approx(88, abs=4)
    assert geometry.apex is not None and geometry.apex[1] == pytest.approx(512, abs=10)


def test_real_small_ybr_copy() -> None:
    geometry = detect_sector(_luma_stack(REAL / "pydicom-3.0.2__examples_ybr_color.dcm"))
    assert not geometry.mask[:, :38].any() and not geometry.mask[215:].any()
    assert geometry.mask[80:190, 120:220].all()
    assert geometry.opening_deg == pytest.approx(84, abs=5)
