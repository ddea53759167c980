"""The clinical report of one segmented video: ED/ES, LV volume curve, EDV/ESV/EF, PNGs.

Produced by ``echoforge segment --report`` and by the MONAI Label app's infer result. The
``measurements`` block is :func:`echoforge.core.measurements.report_measurements`, which the Slicer
module runs too (it ships the same core).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from echoforge.core.measurements import lv_volume_curve
from echoforge.core.measurements import report_measurements as measurements
from echoforge.io.atomic import write_json_atomic
from echoforge.video import EchoVideo

__all__ = ["lv_volume_curve", "measurements", "video_report", "write_ed_es_montage", "write_volume_curve"]


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
