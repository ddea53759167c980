"""The clinical report of one segmented video: ED/ES, LV volume curve, EDV/ESV/EF, PNGs.

Produced by ``echoforge segment --report`` and by the MONAI Label app's infer result; the Slicer
module writes the same JSON keys from its own (numpy-only) logic layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from echoforge import labels as L
from echoforge.errors import EchoForgeError
from echoforge.io.atomic import finite_json, write_json_atomic
from echoforge.video import EchoVideo


def lv_volume_curve(labels: np.ndarray, spacing: tuple[float, float] | None) -> list[float | None]:
    """Single-plane method-of-disks LV volume (ml) of every frame; ``None`` where it cannot be measured."""
    from echoforge.metrics.clinical import lv_geometry

    if spacing is None:
        return [None] * labels.shape[0]
    curve: list[float | None] = []
    for frame in labels:
        try:
            curve.append(round(float(lv_geometry(frame, spacing).volume_disks), 3) if (frame == L.LV).any() else None)
        except EchoForgeError:
            curve.append(None)
    return curve


#: the single-beat keys every measurement result carries (``None`` when unavailable)
MEASUREMENT_KEYS = ("available", "reason", "ed", "es", "ed_time_ms", "es_time_ms", "area_unit", "ed_area", "es_area",
                    "fac", "smoothness", "edv_disks_ml", "esv_disks_ml", "ef_disks", "edv_area_length_ml",
                    "esv_area_length_ml", "ef_area_length", "ef", "length_unit", "length_ed", "length_es")


def measurements(labels: np.ndarray, spacing: tuple[float, float] | None,
                 frame_time_ms: float | None = None) -> dict[str, Any]:
    """ED/ES, area and volume curves, EDV/ESV/EF of ``labels`` (T×H×W, every frame segmented).

    Never raises on a poor segmentation: when ED/ES cannot be measured (no LV on them, a single
    frame, ED and ES on the same frame) the result says so in ``reason``, ``available`` is false, EF
    is ``None``, and the area curve is still there. No value is NaN or infinite (``None`` instead).
    """
    from echoforge.metrics.clinical import measure_labels

    if labels.shape[0] < 2:
        return _unavailable(labels, spacing, "a single frame: ED, ES and EF need the frames of a heartbeat")
    try:
        m = measure_labels(labels, spacing, frame_time_ms)
    except EchoForgeError as err:
        return _unavailable(labels, spacing, err.problem)
    if m["ed"] == m["es"]:
        return _unavailable(labels, spacing, f"ED and ES fall on the same frame ({m['ed']}): the LV area does "
                                             "not change over the video, so there is no EF to report")
    out = {k: m.get(k) for k in MEASUREMENT_KEYS}
    out["areas"] = [round(float(a), 3) for a in m["areas"]]
    out["volumes_ml"] = lv_volume_curve(labels, spacing)
    if spacing is None:
        out["ef_note"] = "no pixel spacing: EF from pixel areas (scale-free), volumes unavailable"
    return finite_json(out)


def _unavailable(labels: np.ndarray, spacing: tuple[float, float] | None, reason: str) -> dict[str, Any]:
    from echoforge.metrics.clinical import lv_area_curve

    areas = lv_area_curve(labels, spacing)  # the same keys as a measured video, unavailable, with the reason
    return finite_json({**dict.fromkeys(MEASUREMENT_KEYS), "available": False, "reason": reason,
                        "area_unit": "mm²" if spacing else "px²", "areas": [round(float(a), 3) for a in areas],
                        "volumes_ml": [None] * labels.shape[0]})


def video_report(video: EchoVideo, labels: np.ndarray, segmentation: Any | None = None,
                 report_path: str | os.PathLike[str] | None = None,
                 montage_path: str | os.PathLike[str] | None = None,
                 curve_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Measure ``labels`` of ``video`` and write the report JSON and PNGs that are asked for."""
    m = measurements(labels, video.spacing, video.frame_time_ms)
    report: dict[str, Any] = {"source": video.source, "frames": video.n_frames, "size": list(video.shape),
                              "spacing_mm": list(video.spacing) if video.spacing else None,
                              "frame_time_ms": video.frame_time_ms, "view": video.view, "measurements": m}
    if segmentation is not None:
        report["annotated_frames"] = list(segmentation.annotated)
        report["seconds"] = round(segmentation.seconds, 3)
        report["frame_confidence"] = [round(float(c), 4) for c in segmentation.confidence]
        report["next_frame_to_draw"] = segmentation.extra.get("next_frame")
        report["warnings"] = segmentation.extra.get("warnings", [])
    if montage_path:
        report["montage_png"] = str(write_ed_es_montage(video.frames, labels, m.get("ed"), m.get("es"), montage_path))
    if report_path:
        base = Path(report_path).with_suffix("")
        curve = Path(curve_path) if curve_path else base.parent / f"{base.name}_volume_curve.png"
        report["curve_png"] = str(write_volume_curve(m, video.frame_time_ms, curve))
        write_json_atomic(report_path, report)
    return report


def write_ed_es_montage(frames: np.ndarray, labels: np.ndarray | None, ed: int | None, es: int | None,
                        path: str | os.PathLike[str]) -> Path:
    """ED and ES (plus a few frames between) with label contours, as one PNG."""
    from echoforge.viz import montage, overlay, save_png

    n = frames.shape[0]
    picks = sorted({int(i) for i in np.linspace(0, n - 1, 4).round()} | {f for f in (ed, es) if f is not None})
    tiles, titles = [], []
    for t in picks:
        tiles.append(overlay(frames[t], None if labels is None else labels[t]))
        tag = " ED" if t == ed else " ES" if t == es else ""
        titles.append(f"frame {t}{tag}")
    return save_png(path, montage(tiles, ncols=min(len(tiles), 3), titles=titles))


def write_volume_curve(m: dict[str, Any], frame_time_ms: float | None, path: str | os.PathLike[str]) -> Path:
    from echoforge.plots import volume_curve_png

    volumes = m.get("volumes_ml") or []
    use_volumes = bool(volumes) and all(v is not None for v in volumes)
    values = volumes if use_volumes else m.get("areas", [])
    values = [np.nan if v is None else v for v in values]
    ylabel = "LV volume (ml)" if use_volumes else f"LV area ({m.get('area_unit', 'px²')})"
    return volume_curve_png(values, path, ed=m.get("ed"), es=m.get("es"), frame_time_ms=frame_time_ms,
                            ylabel=ylabel, title="LV over the clip (ED/ES marked)")
