"""Every beat of a clip: end-diastole and end-systole of each cardiac cycle, the rhythm, and quality.

Beats are cut from the per-frame LV volume curve (:func:`detect_beats`):

* **With the ECG** (R-wave times, from a DICOM Waveform Sequence): each R-wave starts a beat; its
  ED is the largest LV volume within 40 ms of the R-wave and its ES the smallest volume before the
  next R-wave. A beat whose next R-wave falls after the clip keeps its ES only when the clip runs
  at least half a typical RR interval past its ED (or the volume visibly refills before the end),
  and the ES is not the last frame.
* **Without it**: the curve is smoothed (Gaussian, 1 frame) and cut into alternating maxima and
  minima whose swings reach 10 % of its range; each maximum followed by a minimum is a beat, ED and
  ES moved to the raw extrema within two frames. The clip's first and last frames are never an
  extremum on their own: a beat whose ED or ES falls on them is cut by the clip and dropped, and so
  is one whose ES the curve has not turned back from (by 2 % of its range) by the last frame.
* **Clinician's marks**: an ED (or ES) frame marked by the clinician replaces the detected one of
  its beat (for an ED: the beat whose detected ED is within half its systole of the mark; for an
  ES: the beat holding it), even on the clip's first frame; a mark outside every detected beat
  makes a beat of its own with the detected extremum of the other phase.

The rhythm (:func:`rhythm`) comes from the RR intervals: R-wave to R-wave with the ECG, else the
interval between successive ejection onsets (the steepest fall of the smoothed volume curve,
interpolated between frames, a sharper landmark than the flat top of the curve at ED). It is
called **irregular** when the normalised RMSSD of the intervals (root mean square of successive
differences / mean interval) exceeds :data:`IRREGULAR_RMSSD` (0.12): AF detectors use a
normalised RMSSD near 0.1, sinus rhythm with its respiratory variation stays well below, and at
least two intervals are needed to say anything. Echo guidelines average 3 beats in sinus rhythm and
5 in atrial fibrillation (:data:`GUIDELINE_BEATS`).

Quality flags (:func:`beat_flags`, :func:`curve_flags`) mark a beat as low quality, which leaves
it out of the means (it is still reported, with the reasons):

* ``foreshortened``: its ED long axis is shorter than :data:`FORESHORTENING` (90 %) of the video's own
  ED long axis (the median over its beats, the longest when it has fewer than three): the plane
  misses the true apex in that beat;
* ``apex_far_from_probe``: in an apical view the probe sits on the apex; an apex farther from the
  sector's origin than :data:`APEX_DEPTH` (80 %) of the LV length means the view is off-apex;
* ``lv_missing``: frames of the beat without a measurable LV cavity;
* ``confidence_drop``: frames of the beat whose segmentation confidence falls below
  :data:`CONFIDENCE_DROP` (85 %) of the video's median;
* ``implausible_cycle``: a cycle shorter than 300 ms or longer than 2 s (200 or 30 bpm).

A video whose curve swings less than :data:`FLAT_SWING` (5 %) of its mean is flat (no beat is
measured); one whose frame-to-frame jitter exceeds :data:`NOISY_JITTER` (35 %) of its swing does not
look cardiac (flagged on the video). A frame whose volume jumps away from both its neighbours (in
the same direction) by more than :data:`SPIKE` (12 %) of the swing is a one-frame segmentation
error: it is flagged on the video (``volume_spikes``) and never taken as an ED or ES.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .curves import refine_extremum, smooth_curve, turning_points

IRREGULAR_RMSSD = 0.12
GUIDELINE_BEATS = {"sinus": 3, "irregular": 5}
FORESHORTENING = 0.9
APEX_DEPTH = 0.8
CONFIDENCE_DROP = 0.85
FLAT_SWING = 0.05
NOISY_JITTER = 0.35
SPIKE = 0.12
MIN_CYCLE_MS, MAX_CYCLE_MS = 300.0, 2000.0
ECG_ED_WINDOW_MS = 40.0
_SIGMA_FRAMES = 1.0
_MIN_SWING = 0.1
_MIN_TURN = 0.02  # how far the curve must have turned back after an extremum at the end of the clip


@dataclass
class Beat:
    """One cardiac cycle of a clip (frame indices).

    Attributes:
        ed, es: its end-diastolic and end-systolic frames.
        next_ed: the ED of the next beat, when the clip holds it (the cycle is then complete).
        ed_source, es_source: ``"ecg"``, ``"curve"`` or ``"given"`` (marked by the clinician).
        onset: when the beat starts, in (fractional) frames: its R-wave, or without the ECG the onset
            of ejection.
        cycle: frames from its onset to the next beat's (``None`` when the clip ends first).
    """

    ed: int
    es: int
    next_ed: Optional[int]
    ed_source: str
    es_source: str
    onset: float
    cycle: Optional[float] = None


def filled_curve(values: Sequence[Optional[float]]) -> Optional[np.ndarray]:
    """``values`` as floats with missing frames (``None``/NaN) interpolated; ``None`` under 3 known frames."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    known = np.isfinite(v)
    if known.sum() < 3:
        return None
    index = np.arange(v.size)
    return np.interp(index, index[known], v[known])


def spike_frames(curve: np.ndarray) -> np.ndarray:
    """Frames whose volume jumps away from both neighbours, in the same direction, by more than
    :data:`SPIKE` of the curve's swing: one-frame segmentation errors (the LV leaking into the atrium,
    a missed wall). A true ED or ES is reached and left gradually over a few frames."""
    if curve.size < 3:
        return np.zeros(0, dtype=int)
    swing = float(np.percentile(curve, 95) - np.percentile(curve, 5))
    before, after = curve[1:-1] - curve[:-2], curve[1:-1] - curve[2:]
    jump = SPIKE * swing
    isolated = ((before > jump) & (after > jump)) | ((before < -jump) & (after < -jump))
    return np.flatnonzero(isolated) + 1 if swing > 0 else np.zeros(0, dtype=int)


def despiked(curve: np.ndarray) -> np.ndarray:
    """``curve`` with each of its :func:`spike_frames` replaced by the mean of its two neighbours."""
    spikes = spike_frames(curve)
    out = curve.copy()
    out[spikes] = (curve[spikes - 1] + curve[spikes + 1]) / 2
    return out


def is_flat(curve: np.ndarray) -> bool:
    """Whether the curve swings less than :data:`FLAT_SWING` of its mean (no cardiac motion)."""
    mean = float(np.mean(np.abs(curve)))
    return mean <= 0 or float(curve.max() - curve.min()) < FLAT_SWING * mean


def detect_beats(volumes: Sequence[Optional[float]], r_waves: Optional[Sequence[float]] = None,
                 frame_time_ms: Optional[float] = None, ed: Optional[int] = None,
                 es: Optional[int] = None) -> tuple[list[Beat], str]:
    """The beats of a clip from its LV volume curve (see the module docstring).

    Args:
        volumes: ``T`` LV volumes (any unit; ``None``/NaN where the LV could not be measured).
        r_waves: ECG R-wave positions in (fractional) frames, if known.
        frame_time_ms: time between frames (for the ECG's 40 ms ED window).
        ed, es: frames marked by the clinician.

    Returns:
        The beats in clip order and what timed them: ``"ecg"``, ``"curve"``, or ``"none"`` for a
        flat or unmeasurable curve.
    """
    v = filled_curve(volumes)
    if v is None or is_flat(v):
        return [], "none"
    v = despiked(v)  # a one-frame segmentation error is never an ED or ES
    n = v.size
    smooth = smooth_curve(v, _SIGMA_FRAMES)
    if r_waves is not None and len(r_waves) > 0:
        window = max(1, int(round(ECG_ED_WINDOW_MS / frame_time_ms))) if frame_time_ms else 1
        beats, source = _beats_from_ecg(v, smooth, np.asarray(r_waves, dtype=float), window), "ecg"
    else:
        beats, source = _beats_from_curve(v, smooth), "curve"
    beats = _apply_marks(beats, v, smooth, ed, es, n)
    for k, b in enumerate(beats):
        following = beats[k + 1] if k + 1 < len(beats) else None
        if source == "ecg":
            later = [r for r in np.sort(np.asarray(r_waves, dtype=float)) if r > b.onset + 0.5]
            b.cycle = float(later[0] - b.onset) if later else None
        elif following is not None and following.ed == b.next_ed:
            b.cycle = following.onset - b.onset
        elif b.next_ed is not None:
            b.cycle = float(b.next_ed - b.ed)
    return beats, source


def _ejection_onset(smooth: np.ndarray, ed: int, es: int) -> float:
    """The steepest fall of ``smooth`` between ``ed`` and ``es``, interpolated between frames."""
    slope = np.diff(smooth)  # slope[k] lies between frames k and k + 1
    lo, hi = ed, max(es, ed + 1)
    k = lo + int(np.argmin(slope[lo:hi]))
    offset = 0.0
    if lo < k < hi - 1:
        a, b, c = slope[k - 1], slope[k], slope[k + 1]
        denominator = a - 2 * b + c
        if denominator != 0:
            offset = float(np.clip(0.5 * (a - c) / denominator, -0.5, 0.5))
    return k + 0.5 + offset


def _beats_from_curve(v: np.ndarray, smooth: np.ndarray) -> list[Beat]:
    n = v.size
    span = float(smooth.max() - smooth.min())
    pivots = turning_points(smooth, _MIN_SWING * span)
    if len(pivots) < 2:
        return []
    maxima = [smooth[p] > smooth[pivots[k + 1] if k + 1 < len(pivots) else pivots[k - 1]]
              for k, p in enumerate(pivots)]
    frames = [refine_extremum(v, p, _SIGMA_FRAMES, largest) for p, largest in zip(pivots, maxima)]
    inside = [0 < f < n - 1 for f in frames]
    # the last pivot is the curve's running extreme, confirmed by no swing after it: it is an extremum
    # only if the curve has visibly turned back by the last frame
    back = float(v[-1] - v[frames[-1]])
    if (back if not maxima[-1] else -back) < _MIN_TURN * span:
        inside[-1] = False
    beats = []
    for k in range(len(pivots) - 1):
        if maxima[k] and not maxima[k + 1] and inside[k] and inside[k + 1] and frames[k] < frames[k + 1]:
            following = frames[k + 2] if k + 2 < len(pivots) and inside[k + 2] else None
            beats.append(Beat(frames[k], frames[k + 1], following, "curve", "curve",
                              _ejection_onset(smooth, frames[k], frames[k + 1])))
    return beats


def _beats_from_ecg(v: np.ndarray, smooth: np.ndarray, r_waves: np.ndarray, window: int) -> list[Beat]:
    n = v.size
    span = float(smooth.max() - smooth.min())
    eds = []
    for r in r_waves:
        centre = int(round(r))
        lo, hi = max(centre - window, 0), min(centre + window, n - 1)
        frames = np.arange(lo, hi + 1)
        top = frames[v[lo:hi + 1] == v[lo:hi + 1].max()]
        eds.append(int(top[np.argmin(np.abs(top - r))]))  # of equal volumes, the frame nearest the R-wave
    beats = []
    for k, ed in enumerate(eds):
        stop = int(round(r_waves[k + 1])) if k + 1 < len(eds) else n
        if stop <= ed + 1:
            continue
        es = ed + 1 + int(np.argmin(v[ed + 1:stop]))
        if k + 1 >= len(eds):  # the cycle runs past the clip: is its systole over before the last frame?
            typical = float(np.median(np.diff(r_waves))) if len(r_waves) >= 2 else None
            over = (typical is not None and n - 1 - ed >= 0.5 * typical
                    or float(v[es + 1:].max(initial=-np.inf)) - float(v[es]) >= _MIN_SWING * span)
            if es >= n - 1 or not over:
                continue
        beats.append(Beat(ed, es, eds[k + 1] if k + 1 < len(eds) else None, "ecg", "curve",
                          float(r_waves[k])))
    return beats


def _apply_marks(beats: list[Beat], v: np.ndarray, smooth: np.ndarray, ed: Optional[int], es: Optional[int],
                 n: int) -> list[Beat]:
    """The clinician's ED/ES frames in place of the detected ones of their beats (see the module docstring)."""
    beats = sorted(beats, key=lambda b: b.ed)
    if ed is not None:
        ed = int(ed)
        # its beat: the one whose detected ED is closer to the mark than half the beat's systole
        host = next((b for k, b in enumerate(beats) if (beats[k - 1].es if k else -1) < ed < b.es
                     and abs(b.ed - ed) <= max(2.0, (b.es - b.ed) / 2)), None)
        if host is not None:
            host.ed, host.ed_source = ed, "given"
        else:
            later = [b.ed for b in beats if b.ed > ed]
            stop = later[0] if later else n
            end: Optional[int] = None
            if es is not None and ed < es < stop:
                end = int(es)
            elif stop > ed + 1:
                end = ed + 1 + int(np.argmin(v[ed + 1:stop]))
                end = end if end < n - 1 else None  # the lowest volume on the last frame: systole is cut
            if end is not None:
                beats.append(Beat(ed, end, later[0] if later else None, "given",
                                  "given" if end == es else "curve", 0.0))
    if es is not None:
        es = int(es)
        host = next((b for b in beats if b.ed < es < (b.next_ed if b.next_ed is not None else n)), None)
        if host is not None:
            host.es, host.es_source = es, "given"
        else:
            earlier = [b.es for b in beats if b.es < es]
            start = earlier[-1] + 1 if earlier else 0
            peak = start + int(np.argmax(v[start:es])) if es > start else 0
            if peak > 0:  # the highest volume on the first frame: diastole is cut
                later = [b.ed for b in beats if b.ed > es]
                beats.append(Beat(peak, es, later[0] if later else None, "curve", "given", 0.0))
    beats.sort(key=lambda b: b.ed)
    for b in beats:
        if b.ed_source != "ecg":
            b.onset = _ejection_onset(smooth, b.ed, b.es)
    return beats


def rhythm(beats: Sequence[Beat], r_waves: Optional[Sequence[float]], frame_time_ms: Optional[float]
           ) -> dict[str, Any]:
    """Heart rate and regularity from the RR intervals (see the module docstring).

    Returns:
        ``rr_ms`` (the intervals; in frames without a frame time, with ``rr_unit``), ``heart_rate_bpm``,
        ``rmssd_fraction`` (normalised RMSSD), ``threshold``, ``irregular`` (``None`` with fewer than
        two intervals), ``source`` (``"ecg"`` or ``"curve"``) and ``note``.
    """
    if r_waves is not None and len(r_waves) >= 2:
        intervals, source = np.diff(np.sort(np.asarray(r_waves, dtype=float))), "ecg"
    else:
        intervals, source = np.array([b.cycle for b in beats if b.cycle is not None], dtype=float), "curve"
    scale = float(frame_time_ms) if frame_time_ms else 1.0
    rr = intervals * scale
    out: dict[str, Any] = {"rr_ms": [round(float(x), 1) for x in rr], "rr_unit": "ms" if frame_time_ms else "frames",
                           "heart_rate_bpm": None, "rmssd_fraction": None, "threshold": IRREGULAR_RMSSD,
                           "irregular": None, "source": source, "note": None}
    if rr.size and frame_time_ms:
        out["heart_rate_bpm"] = round(60000.0 / float(rr.mean()), 1)
    if rr.size < 2:
        out["note"] = "the rhythm needs at least two RR intervals (three beats); this clip has " + (
            "one" if rr.size == 1 else "none")
        return out
    fraction = float(np.sqrt(np.mean(np.diff(rr) ** 2)) / rr.mean())
    out["rmssd_fraction"] = round(fraction, 4)
    out["irregular"] = bool(fraction > IRREGULAR_RMSSD)
    if out["irregular"]:
        out["note"] = (f"irregular rhythm: RR intervals vary by {100 * fraction:.0f} % beat to beat "
                       f"(normalised RMSSD above {100 * IRREGULAR_RMSSD:.0f} %), as in atrial fibrillation")
    return out


def flag(code: str, reason: str) -> dict[str, str]:
    return {"code": code, "reason": reason}


def beat_flags(beat: Beat, lengths: np.ndarray, measurable: np.ndarray, rr_ms: Optional[float],
               reference_length: Optional[float] = None, confidence: Optional[np.ndarray] = None,
               apex_depth: Optional[float] = None) -> list[dict[str, str]]:
    """Quality flags of one beat (see the module docstring); an empty list for a good beat.

    Args:
        beat: the beat.
        lengths: ``T`` LV long axes (NaN where not measurable).
        measurable: ``T`` bool, frames with a measurable LV cavity.
        rr_ms: its cycle length, if known.
        reference_length: the video's own ED long axis (see the module docstring).
        confidence: ``T`` segmentation confidences, if known.
        apex_depth: distance of its ED apex from the sector's origin, in the unit of ``lengths``.
    """
    flags = []
    last = beat.next_ed if beat.next_ed is not None else beat.es
    span = np.arange(beat.ed, last + 1)
    missing = [int(t) for t in span if not measurable[t]]
    if missing:
        flags.append(flag("lv_missing", f"no measurable LV cavity on frame(s) {_frames_text(missing)}"))
    reference = float("nan") if reference_length is None else float(reference_length)
    length = float(lengths[beat.ed])
    if math.isfinite(length) and math.isfinite(reference) and length < FORESHORTENING * reference:
        flags.append(flag("foreshortened", f"the ED long axis is {100 * length / reference:.0f} % of the video's "
                                           f"own (below {100 * FORESHORTENING:.0f} %): the view may miss the true "
                                           "apex"))
    if apex_depth is not None and math.isfinite(length) and length > 0 and apex_depth > APEX_DEPTH * length:
        flags.append(flag("apex_far_from_probe", f"the apex lies {100 * apex_depth / length:.0f} % of the LV length "
                                                 "from the probe: the view is probably off the true apex"))
    if confidence is not None:
        floor = CONFIDENCE_DROP * float(np.median(confidence))
        low = [int(t) for t in span if confidence[t] < floor]
        if low:
            flags.append(flag("confidence_drop", f"segmentation confidence drops on frame(s) {_frames_text(low)}"))
    if rr_ms is not None and not MIN_CYCLE_MS <= rr_ms <= MAX_CYCLE_MS:
        flags.append(flag("implausible_cycle", f"a cycle of {rr_ms:.0f} ms ({60000.0 / rr_ms:.0f} bpm) is not "
                                               "a heart beat"))
    return flags


def curve_flags(volumes: Sequence[Optional[float]], confidence: Optional[np.ndarray] = None) -> list[dict[str, str]]:
    """Quality flags of the whole video's LV volume curve (see the module docstring)."""
    v = np.array([np.nan if x is None else x for x in volumes], dtype=np.float64)
    flags = []
    missing = [int(t) for t in np.flatnonzero(~np.isfinite(v))]
    if missing:
        flags.append(flag("lv_missing", f"no measurable LV cavity on frame(s) {_frames_text(missing)}"))
    curve = filled_curve(volumes)
    if curve is None:
        flags.append(flag("no_curve", "fewer than three frames have a measurable LV cavity"))
        return flags
    if is_flat(curve):
        flags.append(flag("flat_curve", f"the LV volume changes by less than {100 * FLAT_SWING:.0f} % over the "
                                        "clip: no cardiac motion to measure"))
        return flags
    spikes = [int(t) for t in spike_frames(curve)]
    if spikes:
        flags.append(flag("volume_spikes", f"the LV volume jumps away from its neighbours on frame(s) "
                                           f"{_frames_text(spikes)} (segmentation errors, never taken as ED or ES)"))
    swing = float(curve.max() - curve.min())
    jitter = float(np.mean(np.abs(np.diff(curve, n=2)))) if curve.size >= 3 else 0.0
    if jitter > NOISY_JITTER * swing:
        flags.append(flag("not_cardiac", f"the LV volume jumps by {100 * jitter / swing:.0f} % of its swing from "
                                         "frame to frame: the curve does not look cardiac"))
    if confidence is not None and confidence.size:
        floor = CONFIDENCE_DROP * float(np.median(confidence))
        low = [int(t) for t in np.flatnonzero(confidence < floor)]
        if low:
            flags.append(flag("confidence_drop", f"segmentation confidence drops on frame(s) {_frames_text(low)}"))
    return flags


def _frames_text(frames: Sequence[int]) -> str:
    shown = ", ".join(str(f) for f in frames[:8])
    return shown + (f" and {len(frames) - 8} more" if len(frames) > 8 else "")
