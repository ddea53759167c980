"""Domain-randomised phantom: scanner *families*, wider anatomy and acquisition, held-out families.

A network trained on one simulated scanner learns that scanner. Real echo comes from many scanners,
presets, windows and hands, so the phantom draws each patient from a *style family* — a
distribution over scanner settings (PSF size, centre frequency, speckle density, dynamic range and
grey map, gain and TGC, haze, clutter and reverberation, dropout, noise, sector angle and depth),
anatomy (LV shape, wall thickness, trabeculation, papillary muscles, atrial size, the right heart
and valves in view) and acquisition (foreshortening, translation and rotation inside the sector,
zoom, frame rate, resolution, probe motion during the clip). Whole families are held out for
testing (:data:`TEST_FAMILIES`), so a benchmark measures what a *new scanner* does to a model::

    from echoforge.phantom.families import make_family_patient, TRAIN_FAMILIES

    patient = make_family_patient(seed=3, family="hazy")
    video = patient.render("4CH", size=(112, 112), fps=patient.acquisition.fps, n_frames=150)

Published anchors for what this should buy: a network trained on synthetic echo alone reached a
median LV Dice of 0.87–0.91 on four real datasets (Gilbert et al., IEEE TMI 2021), and anatomically
plausible geometric augmentation transfers across datasets better than intensity or artefact
augmentation (EAGT, 2026) — hence the wide geometry and acquisition ranges here, and the
geometric augmentation in training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from echoforge.phantom.anatomy import HeartAnatomy
from echoforge.phantom.cycle import CardiacCycle
from echoforge.phantom.scanner import ScannerStyle

Range = tuple[float, float]


@dataclass(frozen=True)
class Acquisition:
    """How one clip is acquired, beyond the scanner settings (applied by :func:`apply_acquisition`).

    Attributes:
        fps: frame rate. resolution: the image is formed at this fraction of the output size and
            scaled back up (a low-resolution scanner or a video capture). motion_mm, motion_deg:
            amplitude of the slow probe motion during the clip (translation, rotation about the
            transducer). motion_period_s: its period. seed: its random phase.
    """

    fps: float = 30.0
    resolution: float = 1.0
    motion_mm: float = 0.0
    motion_deg: float = 0.0
    motion_period_s: float = 3.0
    seed: int = 0


@dataclass(frozen=True)
class StyleFamily:
    """A distribution of scanners, patients and acquisitions.

    ``scanner`` ranges replace those of :meth:`ScannerStyle.sample` (uniform); ``anatomy`` ranges
    replace fields of :class:`HeartAnatomy`; ``acquisition`` ranges those of :class:`Acquisition`.
    """

    name: str
    description: str
    scanner: dict[str, Range] = field(default_factory=dict)
    anatomy: dict[str, Range] = field(default_factory=dict)
    acquisition: dict[str, Range] = field(default_factory=dict)


#: every family widens these (real hearts, real hands): foreshortened views, an apex anywhere near
#: the top of the sector, the heart turned either way, probe drift during the clip, any common frame rate
_COMMON_ANATOMY: dict[str, Range] = {
    "foreshortening4": (0.82, 1.0), "foreshortening2": (0.82, 1.0),
    "apex_x_mm": (-12.0, 14.0), "apex_depth_mm": (20.0, 44.0),
    "tilt4_deg": (-12.0, 16.0), "tilt2_deg": (-12.0, 12.0), "rocking_deg": (-5.0, 5.0),
    "lung_right": (0.0, 1.0), "lung_left": (0.0, 0.8),
}
_COMMON_ACQUISITION: dict[str, Range] = {"fps": (25.0, 60.0), "motion_mm": (0.0, 3.0), "motion_deg": (0.0, 3.0),
                                         "motion_period_s": (1.5, 6.0)}

FAMILIES: dict[str, StyleFamily] = {f.name: f for f in (
    StyleFamily("crisp", "high-end system, fine speckle, good window (the original phantom's scanner)", scanner={
        "axial_psf_mm": (0.25, 0.4), "lateral_psf_deg": (0.35, 0.55), "dynamic_range_db": (48.0, 60.0),
        "gain_db": (-6.0, 2.0), "haze_db": (-8.0, -2.0), "smoothing_px": (0.0, 0.4)}),
    StyleFamily("soft", "low-frequency probe and heavy smoothing: coarse, blurred speckle", scanner={
        "axial_psf_mm": (0.5, 0.8), "lateral_psf_deg": (0.7, 1.1), "smoothing_px": (0.5, 1.2),
        "persistence": (0.3, 0.55), "dynamic_range_db": (40.0, 50.0), "defocus": (0.6, 1.0)}),
    StyleFamily("hazy", "poor acoustic window: near-field haze, reverberation and clutter inside the cavities", scanner={
        "haze_db": (0.0, 6.0), "haze_depth_mm": (25.0, 50.0), "reverberation_db": (-16.0, -8.0),
        "blood_db": (-22.0, -15.0), "noise_db": (-58.0, -50.0), "side_lobe_db": (-22.0, -16.0)},
        anatomy={"lung_right": (0.5, 1.0)}),
    StyleFamily("bright", "bright surroundings: pericardium and tissue around the heart as bright as the wall, "
                "weak specular echoes, strong lateral dropout", scanner={
        "background_db": (-6.0, 2.0), "pericardium_db": (6.0, 11.0), "specular_db": (2.0, 6.0),
        "dropout": (0.7, 0.98), "anisotropy_db": (5.0, 9.0), "gain_db": (-3.0, 4.0)},
        anatomy={"lung_right": (0.0, 0.3), "lung_left": (0.0, 0.3)}),
    StyleFamily("sparse", "washed-out video export: sparse, spotty speckle, compressed grey levels, high gain", scanner={
        "scatterer_density": (0.12, 0.35), "lateral_psf_deg": (0.5, 0.8), "gain_db": (2.0, 7.0),
        "dynamic_range_db": (34.0, 44.0), "gray_gamma": (0.75, 1.0), "texture": (0.6, 0.9),
        "blood_db": (-26.0, -18.0)}),
    StyleFamily("lowres", "portable scanner: deep narrow sector, low resolution, noisy, probe held unsteadily", scanner={
        "depth_mm": (185.0, 230.0), "sector_angle_deg": (58.0, 68.0), "noise_db": (-56.0, -48.0),
        "tgc_compensation": (0.55, 0.85), "smoothing_px": (0.3, 0.8), "dropout": (0.5, 0.9)},
        acquisition={"resolution": (0.35, 0.55), "motion_mm": (1.5, 4.0), "motion_deg": (1.5, 4.0)}),
)}

#: families a shipped model is trained on, and families held out to test a "new scanner"
TRAIN_FAMILIES = ("crisp", "soft", "hazy", "bright")
TEST_FAMILIES = ("sparse", "lowres")


def _uniform(rng: np.random.Generator, ranges: dict[str, Range]) -> dict[str, float]:
    return {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(ranges.items())}


def sample_style(rng: np.random.Generator, family: str) -> ScannerStyle:
    """A scanner of ``family``: the original phantom's ranges, with the family's own ranges over them."""
    spec = _family(family)
    return ScannerStyle.sample(rng).replace(**_uniform(rng, spec.scanner))


def sample_anatomy(rng: np.random.Generator, family: str) -> HeartAnatomy:
    """A heart drawn as :meth:`HeartAnatomy.sample` does, with the wider pose and view ranges of every
    family (foreshortening in 30 % of the views) and the family's own ranges."""
    spec = _family(family)
    anatomy = HeartAnatomy.sample(rng)
    changes = _uniform(rng, {**_COMMON_ANATOMY, **spec.anatomy})
    for view in ("4", "2"):
        if rng.uniform() > 0.3:
            changes[f"foreshortening{view}"] = 1.0
    return dataclasses.replace(anatomy, **changes)


def sample_acquisition(rng: np.random.Generator, family: str) -> Acquisition:
    spec = _family(family)
    values = _uniform(rng, {**_COMMON_ACQUISITION, **spec.acquisition})
    return Acquisition(seed=int(rng.integers(2**31)), **values)


def make_family_patient(seed: int, family: str):  # noqa: ANN201 (a PhantomPatient; imported lazily)
    """A deterministic patient of ``family`` (see :func:`echoforge.phantom.make_patient` for the rest)."""
    from echoforge.phantom.patient import PhantomPatient, fit_in_sector

    code = 10 + sorted(FAMILIES).index(_family(family).name)
    anatomy = sample_anatomy(np.random.default_rng([seed, code, 1]), family)
    cycle = CardiacCycle.sample(np.random.default_rng([seed, code, 2]), anatomy.ef_percent)
    style = sample_style(np.random.default_rng([seed, code, 3]), family)
    acquisition = sample_acquisition(np.random.default_rng([seed, code, 4]), family)
    anatomy, style = fit_in_sector(anatomy, cycle, style, adjust_depth=True)
    return PhantomPatient(seed, anatomy, cycle, style, family=family, acquisition=acquisition)


def true_beats(volumes: np.ndarray) -> list[tuple[int, int]]:
    """(ED, ES) frames of every complete beat of a true LV volume curve: a local maximum, then the
    next local minimum."""
    v = np.asarray(volumes)
    maxima = [t for t in range(1, len(v) - 1) if v[t] >= v[t - 1] and v[t] > v[t + 1]]
    minima = [t for t in range(1, len(v) - 1) if v[t] <= v[t - 1] and v[t] < v[t + 1]]
    return [(ed, next(es for es in minima if es > ed)) for ed in maxima if any(es > ed for es in minima)]


def family_cine(seed: int, family: str, view: str, cycles: float, size: tuple[int, int] = (112, 112),
                random_start: bool = True):  # noqa: ANN201 (an EchoVideo)
    """A clip of ``cycles`` heart beats of patient ``seed`` of ``family`` at its frame rate, with full
    labels; ED/ES are those of its first complete beat and ``meta["beat_frames"]`` lists every beat's
    (ED, ES) frames (``meta["beats"]`` keeps the renderer's per-beat truth). It starts
    at a random phase (``random_start``) or just before end-diastole."""
    patient = make_family_patient(seed, family)
    fps = patient.acquisition.fps
    start = float(np.random.default_rng([seed, 7]).uniform(0.0, 1.0)) if random_start else -0.05
    video = patient.render(view, size=size, fps=fps, n_frames=int(round(cycles * patient.period_s * fps)),
                           start_phase=start)
    found = true_beats(np.asarray(video.meta["true_lv_volume_ml"]))
    ed, es = found[0] if found else (video.ed, video.es)
    return video.replace(ed=ed, es=es, meta={**video.meta, "beat_frames": found})


def apply_acquisition(frames: np.ndarray, labels: np.ndarray, sector: np.ndarray, acquisition: Acquisition,
                      spacing_mm: float, frame_time_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resolution loss and probe motion on rendered ``T×H×W`` frames, labels and the ``H×W`` sector.

    The image is formed at ``resolution`` × the output size and scaled back (labels stay exact);
    the probe drifts smoothly — a translation and a rotation about the transducer (top centre) with
    random phases — and frames, labels and the sector move together. Returns the sector of each
    frame (``T×H×W``).
    """
    t, h, w = frames.shape
    frames = frames.copy()
    if acquisition.resolution < 0.999:
        small = (max(8, round(w * acquisition.resolution)), max(8, round(h * acquisition.resolution)))
        for i in range(t):
            low = cv2.resize(frames[i], small, interpolation=cv2.INTER_AREA)
            frames[i] = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR) * sector
    sectors = np.repeat(sector[None], t, axis=0)
    if acquisition.motion_mm <= 0 and acquisition.motion_deg <= 0:
        return frames, labels, sectors
    rng = np.random.default_rng(acquisition.seed)
    phases = rng.uniform(0, 2 * np.pi, 3)
    time_s = np.arange(t) * frame_time_ms / 1000.0
    wave = [np.sin(2 * np.pi * time_s / acquisition.motion_period_s + p) for p in phases]
    out_labels = np.empty_like(labels)
    for i in range(t):
        angle = acquisition.motion_deg * wave[0][i]
        dx, dy = (acquisition.motion_mm / spacing_mm * wave[1][i], acquisition.motion_mm / spacing_mm * wave[2][i] * 0.5)
        matrix = cv2.getRotationMatrix2D((w / 2.0, 0.0), angle, 1.0)
        matrix[:, 2] += (dx, dy)
        frames[i] = cv2.warpAffine(frames[i], matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        out_labels[i] = cv2.warpAffine(labels[i], matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        sectors[i] = cv2.warpAffine(sector.astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
    return frames, out_labels, sectors


def _family(name: str) -> StyleFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown phantom style family {name!r}; choose from {sorted(FAMILIES)}")
    return FAMILIES[name]
