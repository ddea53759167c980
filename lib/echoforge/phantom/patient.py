"""Synthetic patients: one heart, one scanner style, rendered as apical 4CH and 2CH cine clips.

A clip is one cycle repeated (:meth:`PhantomPatient.render`) or several different beats
(:meth:`PhantomPatient.render_beats`: heart-rate variability, beat-to-beat EF variation, an
irregular rhythm), with the exact truth of every beat (:meth:`PhantomPatient.beat_truth`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from echoforge.labels import normalize_view
from echoforge.phantom.anatomy import PHANTOM_VIEWS, Heart, HeartAnatomy
from echoforge.phantom.cycle import BeatSequence, CardiacCycle
from echoforge.phantom.families import Acquisition, apply_acquisition
from echoforge.phantom.render import ViewRenderer, label_map
from echoforge.phantom.scanner import ScannerStyle, SectorScanner
from echoforge.video import EchoVideo

_EDGE_MARGIN_DEG = 2.0     # labelled structures stay this far inside the fan edges
_DEPTH_MARGIN_MM = 15.0    # and this far above its bottom


class PhantomPatient:
    """A synthetic patient with exact ground truth; build it with :func:`make_patient`.

    Attributes:
        seed: the seed it was made from. shifted: whether it comes from the style-shifted domain.
        family, acquisition: its style family and :class:`~echoforge.phantom.families.Acquisition`
            (``None`` for the original phantom, see :mod:`echoforge.phantom.families`).
        anatomy, cycle, style: its :class:`HeartAnatomy`, :class:`CardiacCycle` and :class:`ScannerStyle`.
        heart: the animated :class:`Heart` (geometry and true volumes at any phase).
        heart_rate_bpm, true_ef (percent), true_edv_ml, true_esv_ml: the truth measurements aim at.
    """

    def __init__(self, seed: int, anatomy: HeartAnatomy, cycle: CardiacCycle, style: ScannerStyle,
                 shifted: bool = False, family: str | None = None, acquisition: Acquisition | None = None):
        self.seed = int(seed)
        self.shifted = bool(shifted)
        self.family = family
        self.acquisition = acquisition
        self.anatomy = anatomy
        self.cycle = cycle
        self.style = style
        self.heart = Heart(anatomy, cycle)
        self.heart_rate_bpm = float(cycle.heart_rate_bpm)
        self.true_edv_ml = float(self.heart.lv_volume_ml(0.0))
        self.true_esv_ml = float(self.heart.lv_volume_ml(cycle.es))
        self.true_ef = 100.0 * (self.true_edv_ml - self.true_esv_ml) / self.true_edv_ml

    def __repr__(self) -> str:
        return (f"PhantomPatient(seed={self.seed}, hr={self.heart_rate_bpm:.0f} bpm, EF={self.true_ef:.1f} %, "
                f"EDV={self.true_edv_ml:.0f} ml, ESV={self.true_esv_ml:.0f} ml)")

    @property
    def period_s(self) -> float:
        return self.cycle.period_s

    def true_lv_volume_ml(self, phase: np.ndarray | float) -> np.ndarray:
        """True LV cavity volume at ``phase`` (0 = ED)."""
        return self.heart.lv_volume_ml(phase)

    def clip_phases(self, fps: float, n_frames: int | None = None, start_phase: float = 0.0) -> np.ndarray:
        """Cycle phases (unwrapped, starting at ``start_phase``) of the frames of a clip at ``fps``;
        ``n_frames=None`` covers one cycle."""
        step = 1.0 / (self.period_s * fps)
        n = int(n_frames) if n_frames is not None else max(1, int(round(1.0 / step)))
        return start_phase + np.arange(n) * step

    def event_frames(self, phases: Sequence[float] | np.ndarray, fps: float | None = None
                     ) -> tuple[int | None, int | None]:
        """ED and ES frame indices of a clip with ``phases`` (first occurrence, ``None`` if absent).

        An event is in the clip when a frame lies within one frame interval of its instant (from
        ``fps``, or else from the spacing of ``phases``); of those frames the one with the largest
        (ED) or smallest (ES) true volume is taken, as a reader does.
        """
        phases = np.asarray(phases, dtype=float)
        volumes = self.true_lv_volume_ml(phases)
        if fps is not None:
            step = 1.0 / (self.period_s * fps)
        else:
            step = float(phases[1] - phases[0]) if len(phases) > 1 else 1e-6

        def first(event: float, pick) -> int | None:
            for instant in np.arange(np.floor(phases[0] - step - event), phases[-1] + step - event + 1) + event:
                near = np.flatnonzero(np.abs(phases - instant) <= step + 1e-9)
                if near.size:
                    return int(near[pick(volumes[near])])
            return None

        return first(0.0, np.argmax), first(self.cycle.es, np.argmin)

    def render(self, view: str = "4CH", size: tuple[int, int] = (256, 256), fps: float = 30.0,
               n_frames: int | None = None, start_phase: float = 0.0) -> EchoVideo:
        """Render a cine clip of ``view`` ("4CH" or "2CH") with labels on every frame.

        Args:
            size: output (H, W); the whole fan fits in it with isotropic pixels.
            fps: frame rate; ``n_frames=None`` renders one full cycle.
            start_phase: cycle phase of the first frame (0 = ED).

        Returns:
            An :class:`EchoVideo`: frames ``T×H×W`` float32 in [0, 1], labels ``T×H×W`` uint8 (all
            frames annotated), spacing in mm, ED/ES indices, sector mask and the truth in ``meta``
            (with ``beats``, the truth of every beat as in :meth:`render_beats`, and ``r_waves_ms``).
        """
        view = self._check_view(view)
        phases = self.clip_phases(fps, n_frames, start_phase)
        renderer = ViewRenderer(self.heart, self.style, view, size, self.seed)
        rendered = [renderer.frame(float(p)) for p in phases]
        frames = np.stack([f for f, _ in rendered])
        labels = np.stack([lab for _, lab in rendered])
        ed, es = self.event_frames(phases, fps)
        grid = renderer.grid
        beats, times = self._repeated_beats(phases)
        sector = renderer.scanner.sector
        if self.acquisition is not None:
            frames, labels, sectors = apply_acquisition(frames, labels, sector, self.acquisition, grid.spacing_mm,
                                                        1000.0 / fps)
            sector = sectors.all(axis=0)
        meta = {
            "phantom_seed": self.seed,
            "shifted": self.shifted,
            "family": self.family,
            "true_ef": self.true_ef,
            "true_edv_ml": self.true_edv_ml,
            "true_esv_ml": self.true_esv_ml,
            "heart_rate_bpm": self.heart_rate_bpm,
            "true_lv_volume_ml": [float(v) for v in self.true_lv_volume_ml(phases)],
            "phases": [float(p) for p in phases],
            "es_phase": float(self.cycle.es),
            "beats": self.beat_truth(beats, times),
            "r_waves_ms": [float(1000.0 * (t - times[0])) for t in beats.starts_s if times[0] <= t <= times[-1]],
            "rhythm": "sinus",
            "depth_mm": grid.depth_mm,
            "sector_angle_deg": float(np.degrees(grid.angle_rad)),
            "style": dataclasses.asdict(self.style),
        }
        return EchoVideo(frames=frames, spacing=(grid.spacing_mm, grid.spacing_mm), frame_time_ms=1000.0 / fps,
                         view=view, labels=labels, annotated=tuple(range(len(phases))), ed=ed, es=es,
                         sector=sector, source=f"phantom:seed={self.seed}:{view}", meta=meta)

    def render_half_sequence(self, view: str = "4CH", size: tuple[int, int] = (256, 256),
                             fps: float = 30.0) -> EchoVideo:
        """The frames from ED to ES (the CAMUS "half sequence"); ED is frame 0 and ES the last."""
        step = 1.0 / (self.period_s * fps)
        n = int(np.ceil(self.cycle.es / step - 1e-9)) + 1
        video = self.render(view, size, fps, n_frames=n)
        if video.es is not None and video.es < video.n_frames - 1:
            video = video.select(range(video.es + 1))
        return video

    def label_maps(self, view: str, phases: Sequence[float], size: tuple[int, int] = (256, 256)) -> np.ndarray:
        """Ground-truth labels only (``T×H×W`` uint8) at arbitrary ``phases``: fast, no image formation."""
        view = self._check_view(view)
        renderer = ViewRenderer(self.heart, self.style, view, size, self.seed)
        return np.stack([renderer.labels(float(p)) for p in phases])

    def _repeated_beats(self, phases: np.ndarray) -> tuple[BeatSequence, np.ndarray]:
        """This patient's one cycle as a :class:`BeatSequence` covering ``phases``, and the phases' times on it."""
        first = int(np.floor(phases[0]))
        count = int(np.floor(phases[-1])) - first + 1
        period = self.period_s
        beats = BeatSequence(starts_s=tuple(k * period for k in range(count)), periods_s=(period,) * count,
                             ef_percent=(self.anatomy.ef_percent,) * count, cycles=(self.cycle,) * count)
        return beats, (np.asarray(phases, dtype=np.float64) - first) * period

    # ------------------------------------------------------------------ several different beats
    def beat_sequence(self, n_beats: int, irregular: bool = False) -> BeatSequence:
        """``n_beats`` beats of this patient's heart (see :meth:`BeatSequence.sample`), the same for
        the same patient and arguments."""
        rng = np.random.default_rng([self.seed, int(self.shifted), 4, int(irregular), int(n_beats)])
        return BeatSequence.sample(rng, self.cycle, self.anatomy.ef_percent, n_beats, irregular)

    def beat_clip_times(self, beats: BeatSequence, fps: float = 30.0, lead_in: float = 0.35,
                        lead_out: float = 0.45) -> np.ndarray:
        """Frame times (s, the beats' clock) of a clip over ``beats``: it starts ``lead_in`` of the first
        cycle after its R-wave and stops ``lead_out`` of the last cycle into it, so that the first and
        last beats are cut by the clip and the ones between are complete."""
        start = beats.starts_s[0] + lead_in * beats.periods_s[0]
        stop = beats.starts_s[-1] + lead_out * beats.periods_s[-1]
        return start + np.arange(int(np.floor((stop - start) * fps)) + 1) / fps

    def render_beats(self, view: str, beats: BeatSequence, size: tuple[int, int] = (256, 256), fps: float = 30.0,
                     times_s: np.ndarray | None = None) -> EchoVideo:
        """Render a clip of several different beats with labels on every frame.

        Args:
            beats: the beats (:meth:`beat_sequence`).
            times_s: frame times on the beats' clock; default :meth:`beat_clip_times`.

        Returns:
            An :class:`EchoVideo` like :meth:`render`'s; its ``ed``/``es`` are those of the first
            complete beat, ``meta["beats"]`` holds every beat's truth (:meth:`beat_truth`),
            ``meta["r_waves_ms"]`` the R-wave times from the first frame (for a synthetic ECG) and
            ``meta["rhythm"]`` ``"sinus"`` or ``"irregular"``.
        """
        view = self._check_view(view)
        times = self.beat_clip_times(beats, fps) if times_s is None else np.asarray(times_s, dtype=np.float64)
        heart = _BeatingHeart(self.anatomy, beats)
        renderer = ViewRenderer(heart, self.style, view, size, self.seed)  # type: ignore[arg-type]
        index, phase = beats.locate(times)
        clock = index + phase
        rendered = [renderer.frame(float(u)) for u in clock]
        truth = self.beat_truth(beats, times)
        first = next((b for b in truth if b["complete"]), truth[0] if truth else None)
        grid = renderer.grid
        meta = {
            "phantom_seed": self.seed, "shifted": self.shifted, "true_ef": self.true_ef,
            "true_edv_ml": self.true_edv_ml, "true_esv_ml": self.true_esv_ml,
            "heart_rate_bpm": float(60.0 / np.mean(beats.periods_s)),
            "true_lv_volume_ml": [float(heart.lv_volume_ml(u)) for u in clock],
            "phases": [float(p) for p in clock], "beats": truth,
            "r_waves_ms": [float(1000.0 * (t - times[0])) for t in beats.starts_s if times[0] <= t <= times[-1]],
            "rhythm": "irregular" if beats.irregular else "sinus",
            "depth_mm": grid.depth_mm, "sector_angle_deg": float(np.degrees(grid.angle_rad)),
            "style": dataclasses.asdict(self.style),
        }
        return EchoVideo(frames=np.stack([f for f, _ in rendered]), spacing=(grid.spacing_mm, grid.spacing_mm),
                         frame_time_ms=1000.0 / fps, view=view, labels=np.stack([lab for _, lab in rendered]),
                         annotated=tuple(range(len(times))), ed=first["ed_frame"] if first else None,
                         es=first["es_frame"] if first else None, sector=renderer.scanner.sector,
                         source=f"phantom:seed={self.seed}:{view}:beats", meta=meta)

    def beat_label_maps(self, view: str, beats: BeatSequence, times_s: np.ndarray,
                        size: tuple[int, int] = (256, 256)) -> np.ndarray:
        """Ground-truth labels only (``T×H×W`` uint8) of a several-beat clip at ``times_s``: fast, no image."""
        view = self._check_view(view)
        heart, scanner = _BeatingHeart(self.anatomy, beats), SectorScanner(self.style, size)
        index, phase = beats.locate(np.asarray(times_s, dtype=np.float64))
        return np.stack([label_map(heart.label_polygons(view, float(u)), scanner.grid, scanner.sector)
                         for u in index + phase])

    def spacing_mm(self, size: tuple[int, int] = (256, 256)) -> tuple[float, float]:
        """The (isotropic) pixel spacing of this patient's clips at ``size``."""
        spacing = SectorScanner(self.style, size).grid.spacing_mm
        return spacing, spacing

    def beat_truth(self, beats: BeatSequence, times_s: np.ndarray) -> list[dict]:
        """The exact truth of every beat whose end-diastole lies in a clip with frame times ``times_s``.

        Per beat: ``beat``; ``ed_time_ms``, ``es_time_ms`` (from the first frame); ``ed_frame``,
        ``es_frame`` (of the frames within one frame interval of each event, the one with the largest,
        resp. smallest, true volume; ``None`` when the event is outside the clip); ``complete`` (the
        clip holds a frame before its ED and one after the ventricle has started to refill, so that
        its ED and ES can be told from the volume curve alone); ``rr_ms``; ``edv_ml``, ``esv_ml``, ``ef`` (at the event instants);
        ``gls_4ch``, ``gls_2ch`` (%, from the endocardial contour lengths);
        ``la_volume_ml`` (at ES); ``lv_mass_g`` (1.05 g/ml × the myocardial volume at ED).
        """
        times = np.asarray(times_s, dtype=np.float64)
        step = float(times[1] - times[0]) if times.size > 1 else 1.0
        heart = _BeatingHeart(self.anatomy, beats)
        index, phase = beats.locate(times)
        volumes = np.array([float(heart.lv_volume_ml(u)) for u in index + phase])
        out = []
        for k in range(beats.n_beats):
            ed_t = beats.starts_s[k]
            es_t = ed_t + beats.cycles[k].es * beats.periods_s[k]
            if not times[0] - step < ed_t < times[-1] + step:
                continue

            def frame(at: float, pick) -> int | None:  # noqa: ANN001 (argmax or argmin)
                near = np.flatnonzero(np.abs(times - at) <= step + 1e-9)
                return int(near[pick(volumes[near])]) if near.size else None

            one = heart.hearts[k]
            es_phase = beats.cycles[k].es
            lengths = {view: (one.endocardial_length_mm(view, 0.0), one.endocardial_length_mm(view, es_phase))
                       for view in PHANTOM_VIEWS}
            edv, esv = float(one.lv_volume_ml(0.0)), float(one.lv_volume_ml(es_phase))
            ed_frame, es_frame = frame(ed_t, np.argmax), frame(es_t, np.argmin)
            out.append({
                "beat": k, "ed_time_ms": 1000.0 * (ed_t - times[0]), "es_time_ms": 1000.0 * (es_t - times[0]),
                "ed_frame": ed_frame, "es_frame": es_frame,
                "complete": (ed_frame is not None and es_frame is not None and ed_frame > 0
                             and times[-1] >= ed_t + beats.cycles[k].filling_start * beats.periods_s[k] + step),
                "rr_ms": 1000.0 * beats.periods_s[k], "edv_ml": edv, "esv_ml": esv, "ef": 100.0 * (edv - esv) / edv,
                **{f"gls_{view.lower()}": 100.0 * (es_len - ed_len) / ed_len for view, (ed_len, es_len) in lengths.items()},
                "la_volume_ml": one.la_volume_ml(es_phase),
                "lv_mass_g": 1.05 * one.myocardial_volume_ml(0.0),
            })
        return out

    @staticmethod
    def _check_view(view: str) -> str:
        normalized = normalize_view(view)
        if normalized not in PHANTOM_VIEWS:
            raise ValueError(f"the phantom renders the views {PHANTOM_VIEWS}, not {view!r}")
        return normalized


class _BeatingHeart:
    """Several beats of one heart as one :class:`Heart` to the renderer: its ``phase`` arguments are the
    beat clock ``k + phase`` (beat ``k``, phase in it), each beat a heart of its own EF and cycle."""

    def __init__(self, anatomy: HeartAnatomy, beats: BeatSequence):
        self.anatomy = anatomy
        self.hearts = [Heart(dataclasses.replace(anatomy, ef_percent=ef), cycle)
                       for ef, cycle in zip(beats.ef_percent, beats.cycles, strict=True)]

    def _at(self, clock: float) -> tuple[Heart, float]:
        k = int(np.clip(np.floor(clock), 0, len(self.hearts) - 1))
        return self.hearts[k], float(clock - k)

    def pose(self, view: str, clock: float):  # noqa: ANN201 (a HeartPose)
        heart, phase = self._at(clock)
        return heart.pose(view, phase)

    def wall_tables(self, view: str, clock: float):  # noqa: ANN201 (a WallTables)
        heart, phase = self._at(clock)
        return heart.wall_tables(view, phase)

    def scene(self, view: str, clock: float):  # noqa: ANN201 (a Scene)
        heart, phase = self._at(clock)
        return heart.scene(view, phase)

    def label_polygons(self, view: str, clock: float) -> list[tuple[int, np.ndarray]]:
        heart, phase = self._at(clock)
        return heart.label_polygons(view, phase)

    def lv_volume_ml(self, clock: float) -> float:
        heart, phase = self._at(clock)
        return float(heart.lv_volume_ml(phase))


def make_patient(seed: int, style: ScannerStyle | None = None, shifted: bool = False) -> PhantomPatient:
    """A deterministic synthetic patient: the same seed always gives the same heart and images.

    Args:
        seed: any non-negative integer.
        style: scanner settings; ``None`` draws them from the seed (its depth then grows if the
            heart would not fit). An explicit style is used as given.
        shifted: draw the anatomy (and a ``None`` style) from the shifted domain, a different
            population imaged by a different scanner, to measure domain adaptation.
    """
    domain = 1 if shifted else 0
    anatomy = HeartAnatomy.sample(np.random.default_rng([seed, domain, 1]), shifted=shifted)
    cycle = CardiacCycle.sample(np.random.default_rng([seed, domain, 2]), anatomy.ef_percent)
    sampled_style = style is None
    if style is None:
        style = ScannerStyle.sample(np.random.default_rng([seed, domain, 3]), shifted=shifted)
    anatomy, style = fit_in_sector(anatomy, cycle, style, adjust_depth=sampled_style)
    return PhantomPatient(seed, anatomy, cycle, style, shifted=shifted)


def fit_in_sector(anatomy: HeartAnatomy, cycle: CardiacCycle, style: ScannerStyle,
                   adjust_depth: bool) -> tuple[HeartAnatomy, ScannerStyle]:
    """Place the heart so its labelled structures stay inside the fan, as a sonographer would: an
    apex too wide for the narrow top of the fan moves the probe back (deeper apex), a ventricle or
    atrium past an edge turns and shifts the heart. A drawn sector deepens until the atria fit."""
    limit = np.radians(style.sector_angle_deg / 2.0 - _EDGE_MARGIN_DEG)
    for _ in range(20):
        heart = Heart(anatomy, cycle)
        changes: dict[str, float] = {}
        deepest = 0.0
        for view in PHANTOM_VIEWS:
            points = np.concatenate([p for phase in (0.0, cycle.es, cycle.filling_start)
                                     for _, p in heart.label_polygons(view, phase)])
            angles = np.arctan2(points[:, 0], points[:, 1])
            deepest = max(deepest, float(np.hypot(points[:, 0], points[:, 1]).max()))
            outside = np.abs(angles) > limit
            if not outside.any():
                continue
            if points[outside, 1].min() < anatomy.apex_depth_mm + 0.35 * anatomy.lv_length_mm:
                changes["apex_depth_mm"] = anatomy.apex_depth_mm + 2.0
            else:
                tilt = "tilt4_deg" if view == "4CH" else "tilt2_deg"
                side = 1.0 if angles[outside].mean() > 0 else -1.0
                changes[tilt] = getattr(anatomy, tilt) - 2.0 * side
                changes["apex_x_mm"] = anatomy.apex_x_mm - 1.5 * side
        if adjust_depth and deepest + _DEPTH_MARGIN_MM > style.depth_mm:
            style = style.replace(depth_mm=deepest + _DEPTH_MARGIN_MM)
        if not changes:
            break
        anatomy = dataclasses.replace(anatomy, **changes)
    return anatomy, style


def phantom_generation_speed(size: tuple[int, int] = (112, 112), n_frames: int = 10, repeats: int = 3,
                             view: str = "4CH") -> float:
    """Frames per second of phantom generation (patient creation + rendering with labels), measured
    over ``repeats`` different patients."""
    start = time.perf_counter()
    for seed in range(repeats):
        make_patient(seed).render(view, size=size, n_frames=n_frames)
    return repeats * n_frames / (time.perf_counter() - start)
