"""Echo measurements on label maps (echoforge.metrics.clinical).

The volume tests draw long-axis sections through truncated ellipsoids, whose volumes are known in
closed form, on isotropic, anisotropic and rotated pixel grids.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from echoforge.errors import EmptyLabelError, InvalidVideoError, UnknownFrameError
from echoforge.metrics import (
    biplane_volume,
    detect_ed_es,
    ejection_fraction,
    lv_area_curve,
    lv_geometry,
    measure_biplane,
    measure_labels,
    temporal_smoothness,
)


def section(a: float, r: float, cut: float, spacing: tuple[float, float] = (0.3, 0.3),
            size: tuple[int, int] = (256, 256), angle: float = 0.0,
            atrium: tuple[float, float] | None = None) -> np.ndarray:
    """``H×W`` labels of the long-axis section through an ellipsoid, truncated at a mitral plane.

    The ellipsoid (all lengths in mm) has semi-axis ``a`` along the long axis and ``r`` across it in
    this plane; the cavity (label 1) keeps the part from ``u = cut`` to the apex at ``u = a``, where
    ``u`` runs along the long axis from the image centre. With ``angle`` 0 the apex points up; the
    section is rotated counter-clockwise by ``angle`` degrees. ``atrium`` = (length, half-width) adds
    a half-ellipse of label 3 on the far side of the mitral plane. Pixels are tested at their centres.
    """
    sy, sx = spacing
    rows, cols = np.mgrid[0:size[0], 0:size[1]]
    dy = (rows + 0.5) * sy - size[0] * sy / 2
    dx = (cols + 0.5) * sx - size[1] * sx / 2
    th = math.radians(angle)
    u = -dy * math.cos(th) - dx * math.sin(th)
    v = dy * math.sin(th) - dx * math.cos(th)
    labels = np.zeros(size, np.uint8)
    labels[((u / a) ** 2 + (v / r) ** 2 <= 1) & (u >= cut)] = 1
    if atrium is not None:
        length, half_width = atrium
        labels[(u < cut) & (((u - cut) / length) ** 2 + (v / half_width) ** 2 <= 1)] = 3
    return labels


def truncated_volume_ml(a: float, b: float, c: float, cut: float) -> float:
    """Volume of the ellipsoid (semi-axes a; b, c across) between the plane u = cut and the apex."""
    return math.pi * b * c * ((a - cut) - (a ** 3 - cut ** 3) / (3 * a * a)) / 1000.0


def rotate(labels: np.ndarray, degrees: float) -> np.ndarray:
    """``labels`` rotated about the image centre (nearest neighbour)."""
    h, w = labels.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(labels, matrix, (w, h), flags=cv2.INTER_NEAREST)


# ----------------------------------------------------------------------------- area curve and timing
def test_area_curve_in_mm2_and_pixels():
    labels = np.zeros((3, 20, 20), np.uint8)
    labels[0, :5, :4] = 1
    labels[1, :2, :2] = 1
    labels[1, 10:, 10:] = 2  # myocardium does not count
    np.testing.assert_allclose(lv_area_curve(labels, (0.5, 0.2)), [2.0, 0.4, 0.0])
    np.testing.assert_allclose(lv_area_curve(labels, None), [20, 4, 0])
    with pytest.raises(InvalidVideoError):
        lv_area_curve(labels, (-1.0, 1.0))


def noisy(curve: np.ndarray, seed: int = 0) -> np.ndarray:
    return 1000 * (1 - 0.3 * curve) + np.random.default_rng(seed).normal(0, 4, curve.size)


def cosine(t: np.ndarray, ed: float, period: float) -> np.ndarray:
    """0 at ED, 1 at ES (half a period later)."""
    return (1 - np.cos(2 * np.pi * (t - ed) / period)) / 2


@pytest.mark.parametrize(("curve", "expected"), [
    (np.linspace(0, 1, 10), (0, 9)),  # a CAMUS half-sequence, ED → ES
    (np.linspace(1, 0, 10), (9, 0)),  # ES → ED: no systole, global max and min
    (cosine(np.arange(30), 4, 30), (4, 19)),
    (cosine(np.arange(48), 3, 20), (3, 13)),  # several beats: the first one
    (cosine(np.arange(40), 14, 20), (14, 24)),  # starts mid-systole: the first full systole
])
def test_detect_ed_es(curve, expected):
    ed, es = detect_ed_es(noisy(curve))
    assert abs(ed - expected[0]) <= 1 and abs(es - expected[1]) <= 1


def test_detect_ed_es_picks_the_most_prominent_systole():
    t = np.arange(40)
    curve = cosine(t, 3, 20) * np.where(t < 20, 0.3, 1.0)  # a weak first beat, a strong second one
    assert detect_ed_es(noisy(curve, 1)) == pytest.approx((23, 33), abs=1)


def test_detect_ed_es_edge_cases():
    assert detect_ed_es(np.full(5, 3.0)) == (0, 0)
    assert detect_ed_es([7.0]) == (0, 0)
    assert detect_ed_es([5.0, 2.0]) == (0, 1)
    with pytest.raises(ValueError):
        detect_ed_es([])
    with pytest.raises(ValueError):
        detect_ed_es([1.0, np.nan, 2.0])


def test_temporal_smoothness():
    t = np.arange(30)
    smooth = 1000 + 200 * np.sin(2 * np.pi * t / 30)
    jitter = smooth + np.random.default_rng(0).normal(0, 30, t.size)
    assert temporal_smoothness(np.linspace(100, 200, 10)) == pytest.approx(0.0, abs=1e-12)
    assert temporal_smoothness(jitter) > 5 * temporal_smoothness(smooth)
    assert temporal_smoothness(3.7 * jitter) == pytest.approx(temporal_smoothness(jitter))
    assert math.isnan(temporal_smoothness([1.0, 2.0]))
    assert math.isnan(temporal_smoothness(np.zeros(5)))


# ----------------------------------------------------------------------------- geometry and volumes
@pytest.mark.parametrize("cut", [0.0, -9.0, 6.0])  # half, more than half, less than half an ellipsoid
def test_single_plane_disks_recover_a_truncated_prolate_spheroid(cut):
    a, b = 32.0, 13.0
    geometry = lv_geometry(section(a, b, cut), (0.3, 0.3))
    assert geometry.method == "straight_segment"
    assert geometry.length == pytest.approx(a - cut, rel=0.01)
    assert geometry.volume_disks == pytest.approx(truncated_volume_ml(a, b, b, cut), rel=0.02)


def test_area_length_is_exact_for_a_half_ellipsoid():
    a, b = 32.0, 13.0
    geometry = lv_geometry(section(a, b, 0.0), (0.3, 0.3))
    assert geometry.area == pytest.approx(math.pi * a * b / 2, rel=0.01)
    assert geometry.volume_area_length == pytest.approx(truncated_volume_ml(a, b, b, 0.0), rel=0.02)


def test_geometry_landmarks():
    a, b, cut = 32.0, 13.0, -6.0
    geometry = lv_geometry(section(a, b, cut), (0.3, 0.3))
    # image centre at pixel 127.5; the apex is a / 0.3 pixels above it, the mitral plane cut / 0.3 below
    np.testing.assert_allclose(geometry.apex, [127.5 - a / 0.3, 127.5], atol=1.0)
    np.testing.assert_allclose(geometry.base, [127.5 - cut / 0.3, 127.5], atol=1.0)
    half_width = b * math.sqrt(1 - (cut / a) ** 2) / 0.3
    np.testing.assert_allclose(sorted(geometry.hinges[:, 1]), [127.5 - half_width, 127.5 + half_width], atol=1.5)
    assert geometry.diameters.shape == (20,)
    assert np.all(np.diff(geometry.diameters[5:]) < 0)  # narrowing towards the apex
    d = geometry.to_dict()
    assert d["method"] == "straight_segment" and len(d["diameters"]) == 20


@pytest.mark.parametrize("cut", [0.0, -9.0])
def test_biplane_recovers_a_general_truncated_ellipsoid(cut):
    a, b, c = 34.0, 12.0, 15.5
    g2 = lv_geometry(section(a, b, cut), (0.3, 0.3))
    g4 = lv_geometry(section(a, c, cut), (0.3, 0.3))
    assert biplane_volume(g2, g4) == pytest.approx(truncated_volume_ml(a, b, c, cut), rel=0.02)


@pytest.mark.parametrize("degrees", [30, 90, 180, 245])
def test_volumes_are_rotation_invariant(degrees):
    a, b, c, cut = 34.0, 12.0, 15.5, -5.0
    m2, m4 = section(a, b, cut), section(a, c, cut)
    upright = biplane_volume(lv_geometry(m2, (0.3, 0.3)), lv_geometry(m4, (0.3, 0.3)))
    g2, g4 = lv_geometry(rotate(m2, degrees), (0.3, 0.3)), lv_geometry(rotate(m4, degrees), (0.3, 0.3))
    assert biplane_volume(g2, g4) == pytest.approx(upright, rel=0.02)
    assert g2.volume_disks == pytest.approx(lv_geometry(m2, (0.3, 0.3)).volume_disks, rel=0.02)
    drawn = section(a, b, cut, angle=degrees)  # drawn rotated rather than rotated as a raster
    assert lv_geometry(drawn, (0.3, 0.3)).volume_disks == pytest.approx(truncated_volume_ml(a, b, b, cut), rel=0.02)


@pytest.mark.parametrize("spacing", [(0.25, 0.4), (0.45, 0.2)])
def test_anisotropic_pixels(spacing):
    a, b, c, cut = 34.0, 12.0, 15.5, -5.0
    size = (round(80 / spacing[0]), round(80 / spacing[1]))  # an 80 mm field of view
    for angle in (0, 30):
        g2 = lv_geometry(section(a, b, cut, spacing, size, angle=angle), spacing)
        g4 = lv_geometry(section(a, c, cut, spacing, size, angle=angle), spacing)
        assert g2.length == pytest.approx(a - cut, rel=0.015)
        assert biplane_volume(g2, g4) == pytest.approx(truncated_volume_ml(a, b, c, cut), rel=0.02)
        assert g2.volume_disks == pytest.approx(truncated_volume_ml(a, b, b, cut), rel=0.02)


@pytest.mark.parametrize("angle", [0, 30, 90, 200])
def test_left_atrium_sets_the_mitral_plane(angle):
    a, b, cut = 32.0, 13.0, -4.0
    with_la = section(a, b, cut, angle=angle, atrium=(16.0, 17.0))
    geometry = lv_geometry(with_la, (0.3, 0.3))
    assert geometry.method == "la_interface"
    assert geometry.length == pytest.approx(a - cut, rel=0.01)
    assert geometry.volume_disks == pytest.approx(truncated_volume_ml(a, b, b, cut), rel=0.02)
    hinge_gap = np.linalg.norm(geometry.hinges[1] - geometry.hinges[0]) * 0.3
    assert hinge_gap == pytest.approx(2 * b * math.sqrt(1 - (cut / a) ** 2), rel=0.03)


def test_left_atrium_interface_wins_over_a_longer_straight_edge():
    # a cavity whose flat side wall is longer than its mitral plane: only the atrium tells them apart
    labels = np.zeros((200, 200), np.uint8)
    labels[40:160, 80:120] = 1  # 120 × 40 pixel box, mitral plane at the bottom
    labels[160:180, 70:130] = 3
    geometry = lv_geometry(labels, (0.3, 0.3))
    assert geometry.method == "la_interface"
    np.testing.assert_allclose(geometry.base, [159.5, 99.5], atol=0.6)
    np.testing.assert_allclose(geometry.apex, [39.5, 99.5], atol=0.6)


def test_largest_component_with_holes_filled_is_measured():
    clean = section(32.0, 13.0, 0.0)
    dirty = clean.copy()
    dirty[120:124, 125:129] = 0  # a hole
    dirty[5:9, 5:9] = 1  # a speck
    assert lv_geometry(dirty, (0.3, 0.3)).volume_disks == pytest.approx(
        lv_geometry(clean, (0.3, 0.3)).volume_disks, rel=1e-6)


def test_geometry_errors():
    empty = np.zeros((64, 64), np.uint8)
    empty[10:20, 10:20] = 2
    with pytest.raises(EmptyLabelError, match="no LV cavity"):
        lv_geometry(empty, (0.3, 0.3))
    with pytest.raises(InvalidVideoError, match="spacing"):
        lv_geometry(section(32.0, 13.0, 0.0), (0.0, 0.3))
    with pytest.raises(ValueError, match="one"):
        lv_geometry(np.zeros((2, 8, 8), np.uint8), (0.3, 0.3))
    with pytest.raises(ValueError, match="n_disks"):
        lv_geometry(section(32.0, 13.0, 0.0), (0.3, 0.3), n_disks=0)
    tiny = np.zeros((32, 32), np.uint8)
    tiny[5, 5:7] = 1
    with pytest.raises(EmptyLabelError):
        lv_geometry(tiny, None)


# ----------------------------------------------------------------------------- EF and clip measurements
def test_ejection_fraction():
    assert ejection_fraction(120.0, 48.0) == pytest.approx(60.0)
    assert math.isnan(ejection_fraction(None, 40.0))
    assert math.isnan(ejection_fraction(100.0, float("nan")))
    with pytest.raises(ValueError, match="positive"):
        ejection_fraction(0.0, 1.0)


def beating_clip(shrink: float, n_frames: int = 20, ed: int = 2, axes: tuple[float, float] = (32.0, 13.0),
                 spacing: tuple[float, float] = (0.3, 0.3), atrium: bool = True) -> np.ndarray:
    """``T×H×W`` labels of a half ellipsoid whose axes shrink by ``shrink`` from ED to ES and back."""
    frames = []
    for t in range(n_frames):
        s = 1 - shrink * cosine(np.array(t), ed, n_frames)
        frames.append(section(axes[0] * s, axes[1] * s, 0.0, spacing, atrium=(15.0, 16.0) if atrium else None))
    return np.stack(frames)


def test_measure_labels_on_a_beating_half_ellipsoid():
    shrink = 0.2
    true_ef = 100 * (1 - (1 - shrink) ** 3)
    res = measure_labels(beating_clip(shrink), (0.3, 0.3), frame_time_ms=40.0)
    assert res["available"] and res["reason"] is None
    assert (res["ed"], res["es"]) == (2, 12)
    assert res["ed_source"] == res["es_source"] == "detected"
    assert res["ed_time_ms"] == 80.0 and res["es_time_ms"] == 480.0
    assert res["areas"].shape == (20,) and res["area_unit"] == "mm²"
    assert res["ef_disks"] == pytest.approx(true_ef, abs=1.0)
    assert res["ef_area_length"] == pytest.approx(true_ef, abs=1.0)
    assert res["ef"] == res["ef_disks"]
    assert res["fac"] == pytest.approx(100 * (1 - (1 - shrink) ** 2), abs=1.0)
    assert res["edv_disks_ml"] == pytest.approx(truncated_volume_ml(32.0, 13.0, 13.0, 0.0), rel=0.02)
    assert res["length_ed"] == pytest.approx(32.0, rel=0.01) and res["length_unit"] == "mm"
    assert res["smoothness"] < 0.05
    assert res["geometry"]["ed"]["method"] == "la_interface"


def test_measure_labels_without_spacing_reports_ratios_only():
    res = measure_labels(beating_clip(0.2), None)
    assert not res["available"] and "spacing" in res["reason"]
    assert res["edv_disks_ml"] is None and res["esv_area_length_ml"] is None
    assert res["ef"] == pytest.approx(100 * (1 - 0.8 ** 3), abs=1.0)
    assert res["area_unit"] == "px²" and res["length_unit"] == "px"


def test_measure_labels_given_frames_and_errors():
    clip = beating_clip(0.2, atrium=False)
    res = measure_labels(clip, (0.3, 0.3), ed=0, es=-8)
    assert (res["ed"], res["es"], res["ed_source"], res["es_source"]) == (0, 12, "given", "given")
    sparse = np.zeros_like(clip)
    sparse[[2, 12]] = clip[[2, 12]]
    assert measure_labels(sparse, (0.3, 0.3), ed=2, es=12)["ef"] == pytest.approx(48.8, abs=1.0)
    with pytest.raises(EmptyLabelError, match=r"frame \d+ \(ES, detected"):
        measure_labels(sparse, (0.3, 0.3))
    with pytest.raises(EmptyLabelError, match=r"frame 5 \(ES\)"):
        measure_labels(sparse, (0.3, 0.3), ed=2, es=5)
    with pytest.raises(UnknownFrameError, match="ED frame 20"):
        measure_labels(clip, (0.3, 0.3), ed=20, es=3)
    with pytest.raises(InvalidVideoError, match="spacing"):
        measure_labels(clip, (0.3, -0.3))
    with pytest.raises(InvalidVideoError, match="frame time"):
        measure_labels(clip, (0.3, 0.3), frame_time_ms=0.0)


def test_measure_biplane_recovers_ef_of_two_ellipsoids():
    shrink_2ch, a, b, c = 0.18, 34.0, 12.0, 15.0
    spacing_4ch = (0.35, 0.25)
    clip_2ch = beating_clip(shrink_2ch, axes=(a, b))
    clip_4ch = beating_clip(shrink_2ch, axes=(a, c), spacing=spacing_4ch, ed=5)
    res = measure_biplane(clip_2ch, (0.3, 0.3), clip_4ch, spacing_4ch)
    true_edv = truncated_volume_ml(a, b, c, 0.0)
    true_esv = true_edv * (1 - shrink_2ch) ** 3
    assert res["available"] and res["reason"] is None
    assert (res["2CH"]["ed"], res["2CH"]["es"], res["4CH"]["ed"], res["4CH"]["es"]) == (2, 12, 5, 15)
    assert res["edv_ml"] == pytest.approx(true_edv, rel=0.02)
    assert res["esv_ml"] == pytest.approx(true_esv, rel=0.02)
    assert res["ef"] == pytest.approx(100 * (1 - true_esv / true_edv), abs=1.0)
    assert res["2CH"]["ef"] == pytest.approx(res["ef"], abs=1.0)

    one = measure_biplane(clip_2ch, (0.3, 0.3), clip_4ch, None)
    assert not one["available"] and one["ef"] is None and one["edv_ml"] is None
    none = measure_biplane(clip_2ch, None, clip_4ch, None)
    assert none["edv_ml"] is None and math.isfinite(none["ef"])
    with pytest.raises(EmptyLabelError, match="4CH frame"):
        measure_biplane(clip_2ch, (0.3, 0.3), np.zeros_like(clip_4ch) + (clip_4ch == 3) * 3, spacing_4ch)


def phantom_module():
    phantom = pytest.importorskip("echoforge.phantom")
    if not hasattr(phantom, "make_patient"):
        pytest.skip("echoforge.phantom.make_patient is not available")
    return phantom


def test_phantom_ground_truth_biplane_ef_matches_its_true_ef():
    phantom = phantom_module()
    size = (256, 256)
    errors = []
    for seed in range(10):
        patient = phantom.make_patient(seed)
        views = {}
        for view in ("2CH", "4CH"):
            spacing = patient.render(view, size, n_frames=1).spacing
            views[view] = (patient.label_maps(view, [0.0, patient.cycle.es], size), spacing)
        res = measure_biplane(*views["2CH"], *views["4CH"], ed_2ch=0, es_2ch=1, ed_4ch=0, es_4ch=1)
        errors.append(res["ef"] - patient.true_ef)
        without_atrium = {view: (np.where(lab == 3, 0, lab), sp) for view, (lab, sp) in views.items()}
        res = measure_biplane(*without_atrium["2CH"], *without_atrium["4CH"], 0, 1, 0, 1)
        assert res["2CH"]["geometry"]["ed"]["method"] == "straight_segment"
        errors.append(res["ef"] - patient.true_ef)
    assert np.max(np.abs(errors)) <= 2.0, f"biplane EF errors (EF points): {np.round(errors, 2)}"


def test_phantom_ed_es_detection_matches_its_cardiac_events():
    phantom = phantom_module()
    for seed in range(3):
        patient = phantom.make_patient(seed)
        phases = patient.clip_phases(fps=30.0, start_phase=0.3)  # one cycle starting in systole
        labels = patient.label_maps("4CH", phases, (128, 128))
        ed, es = detect_ed_es(lv_area_curve(labels, None))
        true_ed, true_es = patient.event_frames(phases)
        assert abs(ed - true_ed) <= 1 and abs(es - true_es) <= 1
