"""The clinical report of one segmented video: every beat's ED/ES, EDV/ESV/EF, GLS, LA volume, LV mass, PNGs.

Produced by ``echoforge segment --report`` and by the MONAI Label app's infer result. The
``measurements`` block is :func:`echoforge.core.clip.report_measurements`, which the Slicer module
runs too (it ships the same core); :func:`video_measurements` feeds it what the video knows (frame
time, ECG R-waves, the probe's position, the segmentation's per-frame confidence).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from echoforge.core.clip import ClipMeasurement, measure_clip, report_measurements
from echoforge.core.measurements import lv_volume_curve
from echoforge.io.atomic import finite_json, write_json_atomic
from echoforge.video import EchoVideo

__all__ = ["lv_volume_curve", "measurements", "probe_position", "video_clip", "video_measurements", "video_report",
           "write_ed_es_montage", "write_volume_curve"]

MAX_MONTAGE_BEATS = 8


def measurements(labels: np.ndarray, spacing: tuple[float, float] | None, frame_time_ms: float | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """:func:`~echoforge.core.clip.report_measurements` with every NaN or infinity as ``None`` (JSON-safe).

    Never raises on a poor segmentation (a single frame, no LV on ED/ES, ED and ES on one frame):
    ``available`` is false and ``reason`` says why; the curves are still there.
    """
    return finite_json(report_measurements(labels, spacing, frame_time_ms, **kwargs))


def probe_position(video: EchoVideo) -> tuple[float, float] | None:
    """(row, col) of the sector's origin (the probe) in the video's frames, when its fan is known."""
    geometry = video.meta.get("sector_geometry")
    if isinstance(geometry, dict) and geometry.get("apex") is not None:
        return float(geometry["apex"][0]), float(geometry["apex"][1])
    if video.sector is not None:
        from echoforge.sector import fit_sector_geometry

        apex = fit_sector_geometry(video.sector).apex
        return None if apex is None else (float(apex[0]), float(apex[1]))
    return None


def video_clip(video: EchoVideo, labels: np.ndarray, segmentation: Any | None = None, ed: int | None = None,
               es: int | None = None) -> ClipMeasurement:
    """:func:`~echoforge.core.clip.measure_clip` of ``labels`` (T×H×W) with everything ``video`` knows.

    ``ed``/``es`` are frames the clinician marked; the video's own ED/ES (from a file header) are
    not taken as marks: the beats are found in the volume curve (and the ECG) instead.
    """
    confidence = getattr(segmentation, "confidence", None)
    return measure_clip(labels, video.spacing, video.frame_time_ms, ed, es, video.meta.get("r_waves_ms"), confidence,
                        probe_position(video))


def video_measurements(video: EchoVideo, labels: np.ndarray, segmentation: Any | None = None,
                       ed: int | None = None, es: int | None = None) -> dict[str, Any]:
    """The report's ``measurements`` block of ``labels`` (:func:`video_clip`'s result)."""
    return finite_json(video_clip(video, labels, segmentation, ed, es).result)


def video_report(video: EchoVideo, labels: np.ndarray, segmentation: Any | None = None,
                 report_path: str | os.PathLike[str] | None = None,
                 montage_path: str | os.PathLike[str] | None = None,
                 curve_path: str | os.PathLike[str] | None = None,
                 biplane: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure ``labels`` of ``video`` and write the report JSON and PNGs that are asked for.

    ``biplane`` (a :func:`~echoforge.core.clip.measure_pair` result with the partner video) is
    reported as it is.
    """
    m = video_measurements(video, labels, segmentation)
    report: dict[str, Any] = {"source": video.source, "frames": video.n_frames, "size": list(video.shape),
                              "spacing_mm": list(video.spacing) if video.spacing else None,
                              "frame_time_ms": video.frame_time_ms, "view": video.view, "measurements": m}
    if biplane is not None:
        report["biplane"] = biplane
    if segmentation is not None:
        report["annotated_frames"] = list(segmentation.annotated)
        report["seconds"] = round(segmentation.seconds, 3)
        report["frame_confidence"] = [round(float(c), 4) for c in segmentation.confidence]
        report["next_frame_to_draw"] = segmentation.extra.get("next_frame")
        report["warnings"] = segmentation.extra.get("warnings", [])
    if montage_path:
        report["montage_png"] = str(write_ed_es_montage(video.frames, labels, m.get("ed"), m.get("es"), montage_path,
                                                        beats=m.get("beats")))
    if report_path:
        base = Path(report_path).with_suffix("")
        curve = Path(curve_path) if curve_path else base.parent / f"{base.name}_volume_curve.png"
        report["curve_png"] = str(write_volume_curve(m, video.frame_time_ms, curve, video.meta.get("r_waves_ms")))
        write_json_atomic(report_path, report)
    return report


def write_ed_es_montage(frames: np.ndarray, labels: np.ndarray | None, ed: int | None, es: int | None,
                        path: str | os.PathLike[str], beats: list[dict[str, Any]] | None = None) -> Path:
    """The ED and ES frames with label contours, as one PNG: ED and ES of each beat (titled with the
    frame numbers and EF; "out" for a beat left out of the means) when ``beats`` are given, else ED and
    ES plus a few frames between."""
    from echoforge.viz import montage, overlay, save_png

    def tile(t: int) -> np.ndarray:
        return overlay(frames[t], None if labels is None else labels[t])

    if beats:
        tiles, titles = [], []
        for beat in beats[:MAX_MONTAGE_BEATS]:  # short titles: they must fit over small frames
            ef = beat.get("ef")
            tiles += [tile(beat["ed"]), tile(beat["es"])]
            titles += [f"beat {beat['index'] + 1} ED {beat['ed']}",
                       f"ES {beat['es']}" + (f" EF {ef:.0f}%" if ef is not None else "")
                       + ("" if beat.get("included", True) else " out")]
        return save_png(path, montage(tiles, ncols=4 if len(tiles) > 4 else 2, titles=titles))
    n = frames.shape[0]
    picks = sorted({int(i) for i in np.linspace(0, n - 1, 4).round()} | {f for f in (ed, es) if f is not None})
    titles = [f"frame {t}{' ED' if t == ed else ' ES' if t == es else ''}" for t in picks]
    return save_png(path, montage([tile(t) for t in picks], ncols=min(len(picks), 3), titles=titles))


def write_volume_curve(m: dict[str, Any], frame_time_ms: float | None, path: str | os.PathLike[str],
                       r_waves_ms: list[float] | None = None) -> Path:
    """The LV volume curve (the area curve when a volume is missing) with every beat's ED/ES and EF."""
    from echoforge.plots import volume_curve_png

    volumes = m.get("volumes_ml") or []
    use_volumes = bool(volumes) and all(v is not None for v in volumes)
    values = volumes if use_volumes else m.get("areas", [])
    values = [np.nan if v is None else v for v in values]
    ylabel = "LV volume (ml)" if use_volumes else f"LV area ({m.get('area_unit', 'px²')})"
    title = "LV over the clip (ED/ES marked)"
    if m.get("ef_mean") is not None:
        sd = f" ± {m['ef_sd']:.1f}" if m.get("ef_sd") is not None else ""
        title = f"LV over the clip: EF {m['ef_mean']:.1f}{sd} % over {m['n_beats_used']} beat(s)"
    beats = m.get("beats") or None
    return volume_curve_png(values, path, ed=m.get("ed"), es=m.get("es"), frame_time_ms=frame_time_ms,
                            ylabel=ylabel, title=title, beats=beats, r_waves_ms=r_waves_ms)
