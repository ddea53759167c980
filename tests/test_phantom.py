"""Tests of the synthetic echo phantom: determinism, ground truth, cycle, image statistics."""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest
from scipy import ndimage

from echoforge.labels import LA, LV, MYOCARDIUM
from echoforge.phantom import (
    CardiacCycle,
    PhantomPatient,
    ScannerStyle,
    SectorGrid,
    SectorScanner,
    make_patient,
    phantom_generation_speed,
)
from echoforge.phantom.render import polygon_mask
from echoforge.video import EchoVideo

SIZE = (128, 128)


@pytest.fixture(scope="module")
def patient() -> PhantomPatient:
    return make_patient(3)


@pytest.fixture(scope="module")
def cycle_4ch(patient: PhantomPatient) -> EchoVideo:
    return patient.render("4CH", size=SIZE, fps=30.0)


# ---------------------------------------------------------------------------- biplane method of disks
def _disk_diameters(labels: np.ndarray, spacing: float, n_disks: int = 20) -> tuple[np.ndarray, float]:
    """Chord widths (mm) of the LV cavity perpendicular to its long axis at ``n_disks`` levels, and
    the long-axis length (mm), from a CAMUS label map alone: the axis runs from the mitral-plane
    midpoint (between the extreme LV pixels touching the LA) to the farthest LV pixel (the apex)."""
    lv, la = labels == LV, labels == LA
    contact = np.argwhere(lv & ndimage.binary_dilation(la))[:, ::-1].astype(float)
    centre = contact.mean(axis=0)
    direction = np.linalg.svd(contact - centre)[2][0]
    along = (contact - centre) @ direction
    mitral_mid = (contact[np.argmin(along)] + contact[np.argmax(along)]) / 2.0
    cavity = np.argwhere(lv)[:, ::-1].astype(float)
    apex = cavity[np.argmax(np.hypot(*(cavity - mitral_mid).T))]
    axis = mitral_mid - apex
    length = float(np.hypot(*axis))
    unit = axis / length
    normal = np.array([-unit[1], unit[0]])
    step = 0.05
    offsets = np.arange(-labels.shape[1], labels.shape[1], step)
    widths = []
    for i in range(n_disks):
        centre_i = apex + unit * (i + 0.5) / n_disks * length
        points = centre_i + offsets[:, None] * normal
        inside = ndimage.map_coordinates(lv.astype(np.uint8), [points[:, 1], points[:, 0]], order=0)
        widths.append(inside.sum() * step)
    return np.asarray(widths) * spacing, length * spacing


def _biplane_volume_ml(labels_4ch: np.ndarray, labels_2ch: np.ndarray, spacing: float, n_disks: int = 20) -> float:
    d4, length4 = _disk_diameters(labels_4ch, spacing, n_disks)
    d2, length2 = _disk_diameters(labels_2ch, spacing, n_disks)
    return float(np.pi / 4.0 * np.sum(d4 * d2) * max(length4, length2) / n_disks / 1000.0)


def test_biplane_disks_on_ground_truth_reproduce_true_ef() -> None:
    size = (256, 256)
    for seed in range(10):
        patient = make_patient(seed)
        phases = [0.0, patient.cycle.es]
        labels4 = patient.label_maps("4CH", phases, size)
        labels2 = patient.label_maps("2CH", phases, size)
        spacing = SectorGrid.create(patient.style.depth_mm, patient.style.sector_angle_deg, size).spacing_mm
        edv = _biplane_volume_ml(labels4[0], labels2[0], spacing)
        esv = _biplane_volume_ml(labels4[1], labels2[1], spacing)
        ef = 100.0 * (edv - esv) / edv
        assert abs(ef - patient.true_ef) < 2.0, (seed, ef, patient.true_ef)
        assert edv == pytest.approx(patient.true_edv_ml, rel=0.05)
        assert esv == pytest.approx(patient.true_esv_ml, rel=0.06)


# ---------------------------------------------------------------------------- determinism and format
def test_same_seed_gives_bit_identical_clips() -> None:
    a = make_patient(11).render("2CH", size=(96, 96), n_frames=4, start_phase=0.3)
    b = make_patient(11).render("2CH", size=(96, 96), n_frames=4, start_phase=0.3)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.labels, b.labels)
    assert a.meta == b.meta
    c = make_patient(12).render("2CH", size=(96, 96), n_frames=4, start_phase=0.3)
    assert not np.array_equal(a.frames, c.frames)


def test_clip_format(patient: PhantomPatient, cycle_4ch: EchoVideo) -> None:
    video = cycle_4ch
    n = int(round(patient.period_s * 30.0))
    assert video.frames.shape == (n, *SIZE) and video.frames.dtype == np.float32
    assert video.labels is not None and video.labels.shape == video.frames.shape and video.labels.dtype == np.uint8
    assert 0.0 <= video.frames.min() and video.frames.max() <= 1.0
    assert video.annotated == tuple(range(n))
    assert video.view == "4CH" and video.source == "phantom:seed=3:4CH"
    assert video.frame_time_ms == pytest.approx(1000.0 / 30.0)
    assert video.ed == 0 and video.es is not None and 0.3 * n < video.es < 0.5 * n
    sy, sx = video.spacing
    assert sy == sx and 0.5 < sy < 3.0
    # the whole fan fits: the sector touches neither the left/right edges nor the bottom row
    assert video.sector is not None and video.sector.shape == SIZE
    assert not video.sector[:, 0].any() and not video.sector[:, -1].any() and not video.sector[-1].any()
    assert (video.frames[:, ~video.sector] == 0).all()
    assert (video.labels[:, ~video.sector] == 0).all()
    meta = video.meta
    for key in ("phantom_seed", "true_ef", "true_edv_ml", "true_esv_ml", "heart_rate_bpm", "true_lv_volume_ml",
                "depth_mm", "sector_angle_deg"):
        assert key in meta
    assert len(meta["true_lv_volume_ml"]) == n
    assert meta["true_ef"] == pytest.approx(patient.true_ef)
    assert meta["depth_mm"] == pytest.approx(patient.style.depth_mm)
    # the fan is depth_mm deep in the picture
    rows = np.flatnonzero(video.sector.any(axis=1))
    assert (rows[-1] - rows[0] + 1) * sy == pytest.approx(meta["depth_mm"], rel=0.03)


def test_both_views_share_the_heart(patient: PhantomPatient) -> None:
    video2 = patient.render("A2C", size=(96, 96), n_frames=3)
    assert video2.view == "2CH"
    assert video2.meta["true_edv_ml"] == patient.true_edv_ml
    with pytest.raises(ValueError):
        patient.render("PLAX")


# ---------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("view", ["4CH", "2CH"])
def test_every_frame_has_all_structures(view: str) -> None:
    for seed in (0, 5, 9):
        video = make_patient(seed).render(view, size=(96, 96), fps=20.0)
        for labels in video.labels:
            counts = np.bincount(labels.ravel(), minlength=4)
            assert (counts[[LV, MYOCARDIUM, LA]] > 20).all(), (seed, counts)


def test_lv_area_largest_at_ed_and_smallest_at_es() -> None:
    for seed in (1, 4, 8):
        patient = make_patient(seed)
        for view in ("4CH", "2CH"):
            labels = patient.label_maps(view, patient.clip_phases(fps=40.0), size=(256, 256))
            ed, es = patient.event_frames(patient.clip_phases(fps=40.0), fps=40.0)
            area = (labels == LV).reshape(len(labels), -1).sum(axis=1)
            assert area[ed] >= area.max() * 0.995 and area[es] <= area.min() * 1.005, (seed, view)


def test_true_ef_and_volumes_are_plausible() -> None:
    efs = []
    for seed in range(60):
        patient = make_patient(seed)
        efs.append(patient.true_ef)
        assert 15.0 <= patient.true_ef <= 75.0
        assert 60.0 < patient.true_edv_ml < 320.0 and 15.0 < patient.true_esv_ml < patient.true_edv_ml
        assert 50.0 <= patient.heart_rate_bpm <= 110.0
        assert 0.3 < patient.cycle.es < 0.45
    assert min(efs) < 30.0 and max(efs) > 60.0          # the clinical range is covered


def test_volume_curve_follows_the_cycle() -> None:
    patient = make_patient(2)
    cycle = patient.cycle
    phases = np.linspace(0.0, 1.0, 2001)
    volume = patient.true_lv_volume_ml(phases)
    assert volume.max() == pytest.approx(patient.true_edv_ml) and volume[0] == pytest.approx(volume.max())
    assert volume.min() == pytest.approx(patient.true_esv_ml)
    assert phases[np.argmin(volume)] == pytest.approx(cycle.es, abs=0.002)
    ejection = (phases > cycle.ejection_start) & (phases < cycle.es)
    assert (np.diff(volume[ejection]) <= 1e-9).all()
    filling = phases > cycle.filling_start
    assert (np.diff(volume[filling]) >= -1e-9).all()
    # rapid filling brings most of the stroke volume back, the atrial kick the rest
    stroke = patient.true_edv_ml - patient.true_esv_ml
    after_e = patient.true_lv_volume_ml(cycle.diastasis_start) - patient.true_esv_ml
    before_a = patient.true_lv_volume_ml(cycle.atrial_start)
    assert 0.4 * stroke < after_e < 0.9 * stroke
    assert before_a < patient.true_edv_ml - 0.08 * stroke
    # the left atrium fills during systole: it is largest just after ES
    la_phases = np.linspace(0.0, 1.0, 41)
    la_area = (patient.label_maps("4CH", la_phases, (128, 128)) == LA).reshape(41, -1).sum(axis=1)
    assert cycle.es - 0.05 <= la_phases[np.argmax(la_area)] <= cycle.filling_start + 0.05
    assert la_area.argmin() in (0, 40, 39, 1)


def test_wall_thickens_in_systole() -> None:
    for seed in range(6):
        patient = make_patient(seed)
        heart = patient.heart
        assert heart.wall_mm(patient.cycle.es) > heart.wall_mm(0.0) * 1.05
        assert heart.lv_length_mm(patient.cycle.es) < heart.lv_length_mm(0.0)    # the base descends


def test_apex_stays_put_while_the_base_descends() -> None:
    patient = make_patient(4)
    ed = patient.label_maps("4CH", [0.0], (256, 256))[0]
    es = patient.label_maps("4CH", [patient.cycle.es], (256, 256))[0]
    top_ed = np.flatnonzero((ed == LV).any(axis=1))[0]
    top_es = np.flatnonzero((es == LV).any(axis=1))[0]
    bottom_ed = np.flatnonzero((ed == LV).any(axis=1))[-1]
    bottom_es = np.flatnonzero((es == LV).any(axis=1))[-1]
    assert abs(top_ed - top_es) <= 2
    assert bottom_ed - bottom_es >= 4


def test_event_frames_of_partial_clips(patient: PhantomPatient) -> None:
    step = 1.0 / (patient.period_s * 30.0)
    video = patient.render("4CH", size=(64, 64), n_frames=5, start_phase=0.6)
    assert video.ed is None and video.es is None
    assert patient.render("4CH", size=(64, 64), n_frames=1, start_phase=0.5).ed is None
    assert patient.render("4CH", size=(64, 64), n_frames=1, start_phase=1.0).ed == 0
    video = patient.render("4CH", size=(64, 64), n_frames=8, start_phase=patient.cycle.es - 4 * step)
    assert video.ed is None and video.es is not None
    assert np.argmin(video.meta["true_lv_volume_ml"]) == video.es or np.isclose(
        video.meta["true_lv_volume_ml"][video.es], min(video.meta["true_lv_volume_ml"]))


def test_half_sequence_runs_from_ed_to_es(patient: PhantomPatient) -> None:
    video = patient.render_half_sequence("2CH", size=(64, 64), fps=25.0)
    assert video.ed == 0 and video.es == video.n_frames - 1
    volumes = video.meta["true_lv_volume_ml"]
    assert volumes[0] == pytest.approx(patient.true_edv_ml)
    assert volumes[-1] == pytest.approx(patient.true_esv_ml, rel=0.01)


def test_polygon_mask_is_unbiased() -> None:
    t = np.linspace(0.0, 2.0 * np.pi, 400, endpoint=False)
    for radius in (8.3, 25.6, 51.2):
        points = np.stack([64.3 + radius * np.cos(t), 63.7 + 1.2 * radius * np.sin(t)], axis=1)
        area = polygon_mask((140, 140), points).sum()
        assert area == pytest.approx(np.pi * 1.2 * radius**2, rel=max(0.02, 1.5 / radius))


# ---------------------------------------------------------------------------- image formation
def test_myocardium_is_brighter_than_blood() -> None:
    for seed in (0, 7, 13):
        patient = make_patient(seed)
        for view in ("4CH", "2CH"):
            video = patient.render(view, size=SIZE, n_frames=3)
            frames, labels = video.frames, video.labels
            myocardium = frames[labels == MYOCARDIUM].mean()
            cavity = frames[labels == LV].mean()
            atrium = frames[labels == LA].mean()
            assert myocardium > 2.0 * cavity and myocardium > 2.0 * atrium, (seed, view)


def test_fully_developed_speckle_has_rayleigh_snr() -> None:
    style = ScannerStyle(depth_mm=150.0, sector_angle_deg=75.0)
    scanner = SectorScanner(style, (200, 200))
    grid = scanner.grid
    rng = np.random.default_rng(0)
    scatterers = rng.standard_normal((grid.n_samples, grid.n_beams, 2), dtype=np.float32) * np.float32(np.sqrt(0.5))
    envelope = scanner.envelope(scatterers)
    patch = envelope[grid.n_samples // 3: 2 * grid.n_samples // 3, grid.n_beams // 4: 3 * grid.n_beams // 4]
    snr = patch.mean() / patch.std()
    assert snr == pytest.approx(1.91, abs=0.08)
    assert (patch**2).mean() == pytest.approx(1.0, rel=0.1)     # the PSF keeps the echo power


def test_speckle_moves_with_the_wall_and_blood_decorrelates() -> None:
    # a clean scanner with visible blood speckle, no papillary muscle, valves shut (mid-systole)
    quiet = ScannerStyle.sample(np.random.default_rng(0)).replace(
        haze_db=-90.0, reverberation_db=-90.0, side_lobe_db=-90.0, persistence=0.0, noise_db=-120.0,
        blood_db=-10.0)
    base = make_patient(6, style=quiet)
    patient = PhantomPatient(6, dataclasses.replace(base.anatomy, papillary4=False), base.cycle, quiet)
    video = patient.render("4CH", size=(160, 160), fps=60.0, n_frames=2, start_phase=0.15)
    (a, b), (la, lb) = (f - cv2.GaussianBlur(f, (0, 0), 3.0) for f in video.frames), video.labels
    myocardium = ndimage.binary_erosion((la == MYOCARDIUM) & (lb == MYOCARDIUM))
    blood = ndimage.binary_erosion((la == LV) & (lb == LV), iterations=4)
    wall_corr = np.corrcoef(a[myocardium], b[myocardium])[0, 1]
    blood_corr = np.corrcoef(a[blood], b[blood])[0, 1]
    assert wall_corr > 0.6 and blood_corr < 0.35, (wall_corr, blood_corr)


def test_style_shift_changes_image_statistics() -> None:
    def stats(shifted: bool) -> np.ndarray:
        rows = []
        for seed in range(4):
            patient = make_patient(seed, shifted=shifted)
            video = patient.render("4CH", size=SIZE, n_frames=1)
            frame, sector = video.frames[0], video.sector
            # lateral speckle correlation: neighbours two pixels apart in a row, inside the fan
            inner = ndimage.binary_erosion(sector, iterations=3)
            left, right = frame[:, :-2][inner[:, 2:] & inner[:, :-2]], frame[:, 2:][inner[:, 2:] & inner[:, :-2]]
            rows.append([frame[sector].mean(), np.corrcoef(left, right)[0, 1], patient.style.sector_angle_deg,
                         patient.style.depth_mm])
        return np.asarray(rows).mean(axis=0)

    standard, shifted = stats(False), stats(True)
    assert shifted[0] > standard[0] * 1.2                 # brighter
    assert shifted[1] > standard[1] + 0.05                # coarser speckle
    assert shifted[2] < standard[2] - 5.0                 # narrower sector
    assert shifted[3] > standard[3]                       # deeper


def test_explicit_style_is_used_as_given() -> None:
    style = ScannerStyle(depth_mm=200.0, sector_angle_deg=84.0, gain_db=2.0)
    patient = make_patient(5, style=style)
    assert patient.style.depth_mm == 200.0 and patient.style.gain_db == 2.0
    video = patient.render("4CH", size=(64, 80), n_frames=1)
    assert video.meta["sector_angle_deg"] == pytest.approx(84.0)
    assert video.frames.shape == (1, 64, 80)


def test_cycle_sampling_is_consistent() -> None:
    for seed in range(20):
        cycle = CardiacCycle.sample(np.random.default_rng(seed), ef_percent=20.0 + 3 * seed)
        assert 0.0 < cycle.ejection_start < cycle.es < cycle.filling_start < cycle.diastasis_start
        assert cycle.diastasis_start <= cycle.atrial_start < 1.0
        phases = np.linspace(0.0, 1.0, 501)
        opening = cycle.valve_opening(phases)
        assert opening[phases < cycle.filling_start].max() == 0.0 and opening.max() > 0.95
        fill = cycle.la_filling(phases)
        assert fill.min() >= -1e-9 and fill.max() <= 1.0 + 1e-9


def test_generation_speed_is_reported() -> None:
    for size in ((112, 112), (256, 256)):
        start = time.perf_counter()
        fps = phantom_generation_speed(size=size, n_frames=10, repeats=2)
        print(f"phantom generation {size[0]}x{size[1]}: {fps:.0f} frames/s "
              f"({10 / fps:.3f} s per 10-frame clip, measured in {time.perf_counter() - start:.2f} s)")
        assert fps > 0
