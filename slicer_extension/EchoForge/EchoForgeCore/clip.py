"""Every-beat measurements of a segmented clip, and of a 2CH/4CH pair: what echo labs report.

:func:`measure_clip` measures every beat of a clip (:mod:`.beats`) and the indices labs report,
each by a named method (:data:`METHODS`):

* **EDV, ESV, EF** per beat by the single-plane method of disks (area–length too);
* **FAC** (fractional area change) per beat;
* **GLS** (global longitudinal strain, %, negative for shortening) per beat from the endocardial
  contour length L (hinge to hinge over the apex): 100 · (L_ES − L_ED) / L_ED;
* **LA volume** at LV end-systole (the beat's ES frame, when the atrium is largest), by the method
  of disks and by area–length on the left atrium (label 3), its long axis from the middle of the
  mitral plane (the LV–LA interface) to the atrial roof;
* **LV mass** at ED by area–length (ASE, 1.05 g/ml): 1.05 · (8·A_epi²/(3π·L_epi) − 8·A_endo²/(3π·L_endo)),
  the epicardial contour being that of the cavity and the myocardium together.

Beats flagged as low quality are listed with their reasons and left out of the means; the means
(and SDs, over at least two beats) are over the others. Without a pixel spacing no volume or mass
is given (with the reason) while EF, FAC and GLS, being ratios, still are. The single-beat keys
(kept for compatibility) are those of the marked ED/ES, else of the first complete beat; a clip
without a complete beat gives the single-beat values of :func:`~.measurements.measure_labels` (its
clearest systole) with a note, and no mean.

:func:`measure_pair` gives the biplane (CAMUS method of disks) EDV, ESV and EF of a 2CH and a 4CH
clip of the same patient, plus biplane LA volume and LV mass, saying how beats were paired:
``beat-matched`` when both clips have the same number of usable beats with cycle lengths within
10 % of each other beat by beat (the same rhythm, as in a simultaneous biplane acquisition or
consecutive loops in a regular rhythm), else ``per-view means`` (the biplane volumes of every pairing
of a usable 2CH beat with a usable 4CH beat, averaged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .beats import GUIDELINE_BEATS, Beat, beat_flags, curve_flags, detect_beats, rhythm
from .curves import lv_area_curve
from .ecg import r_wave_frames
from .errors import EchoForgeError, InvalidVideoError
from .geometry import LVGeometry, biplane_area_length, biplane_volume, frame_geometry
from .labels import LA, LV, MYOCARDIUM
from .measurements import (
    NO_SPACING_EF_NOTE,
    NO_SPACING_REASON,
    ONE_VIEW_SPACING_REASON,
    SUMMARY_KEYS,
    ejection_fraction,
    frame_geometries,
    measure_view,
)
from .validation import check_frame, check_frame_time, check_labels, check_spacing

#: Density of myocardium, g/ml (ASE).
MYOCARDIAL_DENSITY = 1.05
#: Cycle lengths of two views' beats within this fraction of each other count as the same rhythm.
PAIRING_TOLERANCE = 0.10
_MIN_STRUCTURE_PIXELS = 20  # an atrium or myocardium smaller than this is not measured
NO_SPACING_VOLUME_REASON = "no pixel spacing: volumes and mass need the pixel size"
METHODS = {
    "ef": "single-plane method of disks (20 disks), per beat; EF = 100·(EDV − ESV)/EDV",
    "fac": "fractional area change of the LV cavity, 100·(EDA − ESA)/EDA, per beat",
    "gls": "global longitudinal strain from the endocardial contour length L (hinge to hinge over the apex, "
           "smoothed 1.5 mm): 100·(L_ES − L_ED)/L_ED, per beat",
    "la_volume": "left atrium at LV end-systole: method of disks (20 disks) and area–length 8A²/(3πL), "
                 "long axis from the mitral plane to the atrial roof",
    "lv_mass": "area–length (ASE): 1.05 g/ml · (8·A_epi²/(3π·L_epi) − 8·A_endo²/(3π·L_endo)) at ED",
    "biplane": "CAMUS biplane method of disks: π/4·Σ d2CH·d4CH·Δ, Δ = max(L2CH, L4CH)/20",
    "biplane_la_volume": "biplane method of disks and biplane area–length 8·A2CH·A4CH/(3π·L) on the left atrium",
    "biplane_lv_mass": "biplane area–length (1.05 g/ml): 8·A2CH·A4CH/(3π·L) of the epicardial minus the "
                       "endocardial contours, L the shorter long axis",
}


@dataclass
class BeatGeometry:
    """The geometries a beat was measured on (``None`` where the structure is absent)."""

    beat: Beat
    lv_ed: Optional[LVGeometry]
    lv_es: Optional[LVGeometry]
    la_es: Optional[LVGeometry]
    epi_ed: Optional[LVGeometry]


@dataclass
class ClipMeasurement:
    """:func:`measure_clip`'s result: the JSON-ready ``result`` and the geometries behind its beats.

    ``beats[k]`` belongs to ``result["beats"][k]``; :func:`measure_pair` combines two views' geometries.
    """

    result: dict[str, Any]
    beats: list[BeatGeometry] = field(default_factory=list)
    spacing: Optional[tuple[float, float]] = None
    single: Optional[tuple[LVGeometry, LVGeometry]] = None  # the single-beat ED and ES geometries


def measure_clip(labels: np.ndarray, spacing: Optional[Sequence[float]], frame_time_ms: Optional[float] = None,
                 ed: Optional[int] = None, es: Optional[int] = None,
                 r_waves_ms: Optional[Sequence[float]] = None, confidence: Optional[Sequence[float]] = None,
                 probe: Optional[Sequence[float]] = None) -> ClipMeasurement:
    """Single-beat and every-beat measurements of a segmented clip (see the module docstring).

    Args:
        labels: ``T×H×W`` labels of every frame (1 LV cavity, 2 myocardium, 3 left atrium).
        spacing: pixel size (row, col) in mm, or ``None`` when unknown.
        frame_time_ms: time between frames.
        ed, es: frames marked by the clinician (used for their beat, and for the single-beat keys;
            without marks those are the first complete beat's, ``ed_source`` ``"first beat"``).
        r_waves_ms: ECG R-wave times from the first frame (they cut the beats when given).
        confidence: ``T`` per-frame segmentation confidences (for the ``confidence_drop`` flag).
        probe: (row, col) pixel position of the sector's origin (for the ``apex_far_from_probe`` flag).

    Returns:
        A :class:`ClipMeasurement` whose ``result`` holds the keys of :func:`report_measurements`.

    Raises:
        LabelShapeError, LabelValueError: the labels are not a ``T×H×W`` map of values 0-3.
        InvalidVideoError: a non-positive spacing or frame time.
        UnknownFrameError: ``ed``/``es`` outside the clip.
    """
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    ft = check_frame_time(frame_time_ms)
    n = lab.shape[0]
    ed = None if ed is None else check_frame(ed, n, "ED frame")
    es = None if es is None else check_frame(es, n, "ES frame")
    geometries = frame_geometries(lab, sp)
    volumes = [None if g is None else g.volume_disks for g in geometries]
    conf = None if confidence is None else np.asarray(confidence, dtype=np.float64).ravel()
    if conf is not None and conf.size != n:
        raise ValueError(f"confidence has {conf.size} values for {n} frames")
    r_frames = r_wave_frames(r_waves_ms, ft, n)
    beats, source = detect_beats(volumes, r_frames, ft, ed, es)
    # the single-beat keys: the marked frames, else the clip's first complete beat, else the clip's
    # clearest systole (detected from the LV areas)
    single_ed, single_es = (beats[0].ed, beats[0].es) if ed is None and es is None and beats else (ed, es)
    result: dict[str, Any]
    single_geometry = None
    try:
        if n < 2:
            raise InvalidVideoError("a single frame: ED, ES and EF need the frames of a heartbeat")
        single, g_ed, g_es = measure_view(lab, sp, ft, single_ed, single_es)
        if ed is None and es is None and beats:
            single["ed_source"] = single["es_source"] = "first beat"
        if single["ed"] == single["es"]:
            raise InvalidVideoError(f"ED and ES fall on the same frame ({single['ed']}): the LV area does not change "
                                    "over the video, so there is no EF to report")
        single_geometry = (g_ed, g_es)
        result = {k: single.get(k) for k in SUMMARY_KEYS}
        result["areas"] = [round(float(a), 3) for a in single["areas"]]
        if sp is None:
            result["ef_note"] = NO_SPACING_EF_NOTE
    except EchoForgeError as err:  # a single frame, or no LV cavity (or no change) on the single-beat ED/ES
        result = {**dict.fromkeys(SUMMARY_KEYS), "available": False, "reason": err.problem,
                  "area_unit": "mm²" if sp else "px²",
                  "areas": [round(float(a), 3) for a in lv_area_curve(lab, sp)]}
    result["volumes_ml"] = [None if v is None or sp is None else round(v, 3) for v in volumes]
    clip = ClipMeasurement(result, [], sp, single_geometry)
    lengths = np.array([np.nan if g is None else g.length for g in geometries])
    measurable = np.array([g is not None for g in geometries])
    # the video's own long axis at ED: the beats' median (robust to one beat whose LV leaks into the
    # atrium), or the longest of fewer than three
    ed_lengths = [lengths[b.ed] for b in beats if math.isfinite(lengths[b.ed])]
    reference = (float(np.median(ed_lengths)) if len(ed_lengths) >= 3 else max(ed_lengths)) if ed_lengths else None
    rows = []
    for index, beat in enumerate(beats):
        row, geometry = _measure_beat(index, beat, lab, sp, ft, geometries, lengths, measurable, reference, conf,
                                      probe)
        rows.append(row)
        clip.beats.append(geometry)
    result.update(_summary(rows, sp))
    result["beats"] = rows
    result["beat_source"] = source
    result["rhythm"] = rhythm(beats, r_frames if source == "ecg" else None, ft)
    result["quality"] = curve_flags(volumes, conf)
    result["beats_note"] = _beats_note(rows, result["rhythm"], result["quality"])
    result["methods"] = METHODS
    return clip


def report_measurements(labels: np.ndarray, spacing: Optional[Sequence[float]],
                        frame_time_ms: Optional[float] = None, ed: Optional[int] = None, es: Optional[int] = None,
                        r_waves_ms: Optional[Sequence[float]] = None, confidence: Optional[Sequence[float]] = None,
                        probe: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """The ``measurements`` block of a clinical report (every JSON that reports measurements).

    Never raises on a poor segmentation: when the single-beat ED/ES cannot be measured (no LV on
    them) ``available`` is False with the ``reason``, and the curves and beats are still given.

    Returns:
        The single-beat keys (``available``, ``reason``, ``ed``, ``es``, their sources and times, ``area_unit``,
        ``ed_area``, ``es_area``, ``fac``, ``smoothness``, ``edv_disks_ml``, ``esv_disks_ml``,
        ``ef_disks``, the area–length equivalents, ``ef``, ``length_*``; ``ef_note`` without spacing),
        the curves (``areas``, ``volumes_ml``), and every beat: ``beats`` (one object per beat:
        ``index``, ``ed``, ``es``, ``next_ed``, ``ed_source``, ``es_source``, ``ed_time_ms``,
        ``es_time_ms``, ``rr_ms``, ``heart_rate_bpm``, ``edv_ml``, ``esv_ml``, ``ef``,
        ``ef_area_length``, ``fac``, ``gls``, ``length_ed``, ``length_es``, ``la_volume_ml``,
        ``la_volume_area_length_ml``, ``lv_mass_g``, ``quality`` (``good``/``low``), ``included``,
        ``flags``), ``n_beats``, ``n_beats_used``, ``ef_mean``, ``ef_sd``, ``edv_mean_ml``,
        ``esv_mean_ml``, ``fac_mean``, ``gls_mean``, ``gls_sd``, ``la_volume_ml``, ``lv_mass_g``,
        ``volume_reason``, ``heart_rate_bpm``, ``beat_source``, ``rhythm``, ``quality`` (flags of
        the whole curve), ``beats_note``, ``methods``.
    """
    return measure_clip(labels, spacing, frame_time_ms, ed, es, r_waves_ms, confidence, probe).result


def _measure_beat(index: int, beat: Beat, lab: np.ndarray, sp: Optional[tuple[float, float]], ft: Optional[float],
                  geometries: list[Optional[LVGeometry]], lengths: np.ndarray, measurable: np.ndarray,
                  reference_length: Optional[float], confidence: Optional[np.ndarray],
                  probe: Optional[Sequence[float]]) -> tuple[dict[str, Any], BeatGeometry]:
    scale = sp or (1.0, 1.0)
    g_ed, g_es = geometries[beat.ed], geometries[beat.es]
    la = _structure_geometry(lab[beat.es], scale, LA, LV)
    epi = None
    if (lab[beat.ed] == MYOCARDIUM).sum() >= _MIN_STRUCTURE_PIXELS:
        epi = _structure_geometry(np.where(lab[beat.ed] == MYOCARDIUM, LV, lab[beat.ed]), scale, LV, LA)
    rr = beat.cycle * ft if beat.cycle is not None and ft else None
    apex_depth = None
    if probe is not None and g_ed is not None:
        apex_depth = float(np.linalg.norm((g_ed.apex - np.asarray(probe, dtype=float)) * np.array(scale)))
    flags = beat_flags(beat, lengths, measurable, rr, reference_length, confidence, apex_depth)
    ok = g_ed is not None and g_es is not None
    row: dict[str, Any] = {
        "index": index, "ed": beat.ed, "es": beat.es, "next_ed": beat.next_ed,
        "ed_source": beat.ed_source, "es_source": beat.es_source,
        "ed_time_ms": beat.ed * ft if ft else None, "es_time_ms": beat.es * ft if ft else None,
        "rr_ms": round(rr, 1) if rr else None, "heart_rate_bpm": round(60000.0 / rr, 1) if rr else None,
        "edv_ml": g_ed.volume_disks if ok and sp else None, "esv_ml": g_es.volume_disks if ok and sp else None,
        "ef": ejection_fraction(g_ed.volume_disks, g_es.volume_disks) if ok else None,
        "ef_area_length": ejection_fraction(g_ed.volume_area_length, g_es.volume_area_length) if ok else None,
        "fac": ejection_fraction(g_ed.area, g_es.area) if ok else None,
        "gls": _strain(g_ed, g_es) if ok else None,
        "length_ed": g_ed.length if g_ed is not None else None,
        "length_es": g_es.length if g_es is not None else None,
        "la_volume_ml": la.volume_disks if la is not None and sp else None,
        "la_volume_area_length_ml": la.volume_area_length if la is not None and sp else None,
        "lv_mass_g": _mass(epi, g_ed) if epi is not None and g_ed is not None and sp else None,
    }
    included = ok and not flags
    row.update(quality="good" if included else "low", included=included, flags=flags)
    return row, BeatGeometry(beat, g_ed, g_es, la, epi)


def _structure_geometry(frame: np.ndarray, spacing: tuple[float, float], cavity: int, plane: int
                        ) -> Optional[LVGeometry]:
    """The geometry of one chamber against its neighbour (the valve plane from their interface, else the
    chamber's straight base), ``None`` when it is absent or unmeasurable."""
    if (frame == cavity).sum() < _MIN_STRUCTURE_PIXELS:
        return None
    try:
        return frame_geometry(frame, spacing, cavity_label=cavity, plane_label=plane)
    except EchoForgeError:
        return None


def _strain(ed: LVGeometry, es: LVGeometry) -> float:
    """GLS in %: 100 · (L_ES − L_ED) / L_ED of the endocardial contour lengths."""
    return 100.0 * (es.contour_length - ed.contour_length) / ed.contour_length


def _area_length(area: float, length: float) -> float:
    return 8 * area ** 2 / (3 * math.pi * length) / 1000.0


def _mass(epicardium: LVGeometry, endocardium: LVGeometry) -> float:
    """ASE area–length LV mass (g) from the epicardial and endocardial geometries of one view."""
    return MYOCARDIAL_DENSITY * (_area_length(epicardium.area, epicardium.length)
                                 - _area_length(endocardium.area, endocardium.length))


def _mean_sd(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    known = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not known:
        return None, None
    return float(np.mean(known)), float(np.std(known, ddof=1)) if len(known) >= 2 else None


def _summary(rows: list[dict[str, Any]], sp: Optional[tuple[float, float]]) -> dict[str, Any]:
    used = [r for r in rows if r["included"]]
    out: dict[str, Any] = {"n_beats": len(rows), "n_beats_used": len(used)}
    for key, name in (("ef", "ef"), ("gls", "gls")):
        out[f"{name}_mean"], out[f"{name}_sd"] = _mean_sd([r[key] for r in used])
    out["fac_mean"] = _mean_sd([r["fac"] for r in used])[0]
    out["edv_mean_ml"] = _mean_sd([r["edv_ml"] for r in used])[0]
    out["esv_mean_ml"] = _mean_sd([r["esv_ml"] for r in used])[0]
    out["la_volume_ml"] = _mean_sd([r["la_volume_ml"] for r in used])[0]
    out["la_volume_area_length_ml"] = _mean_sd([r["la_volume_area_length_ml"] for r in used])[0]
    out["lv_mass_g"] = _mean_sd([r["lv_mass_g"] for r in used])[0]
    out["heart_rate_bpm"] = _mean_sd([r["heart_rate_bpm"] for r in used])[0]
    out["volume_reason"] = None if sp else NO_SPACING_VOLUME_REASON
    return out


def _beats_note(rows: list[dict[str, Any]], rhythm_info: dict[str, Any], quality: list[dict[str, str]]
                ) -> Optional[str]:
    codes = {f["code"] for f in quality}
    if "flat_curve" in codes or "no_curve" in codes:
        return "no beat is measured: " + next(f["reason"] for f in quality if f["code"] in ("flat_curve", "no_curve"))
    if not rows:
        return ("no complete beat in the clip (a beat needs its ED and its ES inside the clip, neither on its first "
                "or last frame): the single-beat values are of the clip's clearest systole, and there is no mean")
    used = sum(r["included"] for r in rows)
    if not used:
        return "every beat is of low quality (see its flags): there is no mean"
    kind = "irregular" if rhythm_info.get("irregular") else "sinus"
    wanted = GUIDELINE_BEATS[kind]
    if used < wanted:
        rhythm_name = "atrial fibrillation or another irregular rhythm" if kind == "irregular" else "sinus rhythm"
        return f"{used} beat{'s' if used > 1 else ''} averaged; guidelines average {wanted} in {rhythm_name}"
    return None


# ----------------------------------------------------------------------------- biplane
def measure_pair(clip_2ch: ClipMeasurement, clip_4ch: ClipMeasurement) -> dict[str, Any]:
    """Biplane EDV/ESV/EF (CAMUS method of disks), LA volume and LV mass of a 2CH and a 4CH clip.

    Returns:
        The single-beat keys of :func:`~.measurements.measure_biplane` (``available``, ``reason``,
        ``edv_ml``, ``esv_ml``, ``ef``: each view's single-beat ED and ES), and every beat:
        ``pairing`` (``beat-matched`` or ``per-view means``) and ``pairing_note``; ``beats`` (one
        object per pairing: ``beat_2ch``, ``beat_4ch``, ``edv_ml``, ``esv_ml``, ``ef``,
        ``la_volume_ml``, ``la_volume_area_length_ml``, ``lv_mass_g``); ``n_beats``;
        ``edv_mean_ml``, ``esv_mean_ml``, ``ef_mean`` (means over the pairings) and ``ef_sd`` (over
        beat-matched pairs only); ``la_volume_ml``, ``la_volume_area_length_ml``, ``lv_mass_g``;
        ``beats_note`` (why there is no beat) and ``methods``. Without spacing in both views the
        volumes and mass are ``None`` and EF comes from pixels; with spacing in one view only, every
        value is ``None``.
    """
    known = (clip_2ch.spacing is not None) + (clip_4ch.spacing is not None)
    volumes = known == 2
    out: dict[str, Any] = {"available": volumes, "reason": None, "edv_ml": None, "esv_ml": None, "ef": None,
                           "pairing": None, "pairing_note": None, "beats": [], "n_beats": 0, "edv_mean_ml": None,
                           "esv_mean_ml": None, "ef_mean": None, "ef_sd": None, "la_volume_ml": None,
                           "la_volume_area_length_ml": None, "lv_mass_g": None, "beats_note": None,
                           "methods": {k: METHODS[k] for k in ("biplane", "biplane_la_volume", "biplane_lv_mass")}}
    if known == 1:
        out["reason"] = ONE_VIEW_SPACING_REASON
        return out
    if known == 0:
        out["reason"] = NO_SPACING_REASON
    if clip_2ch.single is not None and clip_4ch.single is not None:
        edv = biplane_volume(clip_2ch.single[0], clip_4ch.single[0])
        esv = biplane_volume(clip_2ch.single[1], clip_4ch.single[1])
        out.update(edv_ml=edv if volumes else None, esv_ml=esv if volumes else None, ef=ejection_fraction(edv, esv))
    else:
        failed = [(v, c) for v, c in (("2CH", clip_2ch), ("4CH", clip_4ch)) if c.single is None]
        out["available"] = False
        out["reason"] = "; ".join(f"{v}: {c.result.get('reason')}" for v, c in failed)
    usable = [[k for k, row in enumerate(c.result.get("beats", [])) if row["included"]] for c in (clip_2ch, clip_4ch)]
    if not usable[0] or not usable[1]:
        which = " and the ".join(v for v, u in zip(("2CH", "4CH"), usable) if not u)
        out["beats_note"] = f"the {which} clip has no usable beat: no biplane beat"
        return out
    pairs, matched = _pair_beats(clip_2ch, clip_4ch, usable[0], usable[1])
    out["pairing"] = "beat-matched" if matched else "per-view means"
    out["pairing_note"] = (f"beat k of the 2CH clip with beat k of the 4CH clip ({len(pairs)} pairs): same number of "
                           f"usable beats and cycle lengths within {100 * PAIRING_TOLERANCE:.0f} %" if matched else
                           f"every usable 2CH beat ({len(usable[0])}) with every usable 4CH beat ({len(usable[1])}), "
                           "averaged: the clips' beats do not correspond one to one")
    rows = []
    for i, j in pairs:
        a, b = clip_2ch.beats[i], clip_4ch.beats[j]
        edv, esv = biplane_volume(a.lv_ed, b.lv_ed), biplane_volume(a.lv_es, b.lv_es)
        row: dict[str, Any] = {"beat_2ch": i, "beat_4ch": j, "edv_ml": edv if volumes else None,
                               "esv_ml": esv if volumes else None, "ef": ejection_fraction(edv, esv),
                               "la_volume_ml": None, "la_volume_area_length_ml": None, "lv_mass_g": None}
        if volumes and a.la_es is not None and b.la_es is not None:
            row["la_volume_ml"] = biplane_volume(a.la_es, b.la_es)
            row["la_volume_area_length_ml"] = biplane_area_length(a.la_es.area, b.la_es.area, a.la_es.length,
                                                                  b.la_es.length)
        if volumes and a.epi_ed is not None and b.epi_ed is not None:
            row["lv_mass_g"] = MYOCARDIAL_DENSITY * (
                biplane_area_length(a.epi_ed.area, b.epi_ed.area, a.epi_ed.length, b.epi_ed.length)
                - biplane_area_length(a.lv_ed.area, b.lv_ed.area, a.lv_ed.length, b.lv_ed.length))
        rows.append(row)
    out["beats"], out["n_beats"] = rows, len(rows)
    out["edv_mean_ml"] = _mean_sd([r["edv_ml"] for r in rows])[0]
    out["esv_mean_ml"] = _mean_sd([r["esv_ml"] for r in rows])[0]
    for key in ("la_volume_ml", "la_volume_area_length_ml", "lv_mass_g"):
        out[key] = _mean_sd([r[key] for r in rows])[0]
    out["ef_mean"], sd = _mean_sd([r["ef"] for r in rows])
    out["ef_sd"] = sd if matched else None
    return out


def _pair_beats(clip_2ch: ClipMeasurement, clip_4ch: ClipMeasurement, usable_2ch: list[int], usable_4ch: list[int]
                ) -> tuple[list[tuple[int, int]], bool]:
    """The (2CH beat, 4CH beat) pairs and whether they are beat-matched (see the module docstring)."""
    if len(usable_2ch) == len(usable_4ch):
        cycles = [(clip_2ch.beats[i].beat.cycle, clip_4ch.beats[j].beat.cycle) for i, j in zip(usable_2ch, usable_4ch)]
        times = [(clip_2ch.result["beats"][i]["rr_ms"], clip_4ch.result["beats"][j]["rr_ms"])
                 for i, j in zip(usable_2ch, usable_4ch)]
        compared = [(a, b) for a, b in (times if all(t is not None for pair in times for t in pair) else cycles)
                    if a is not None and b is not None]
        if compared and all(abs(a - b) <= PAIRING_TOLERANCE * max(a, b) for a, b in compared):
            return list(zip(usable_2ch, usable_4ch)), True
    return [(i, j) for i in usable_2ch for j in usable_4ch], False
