"""The clinical report: JSON plus PNGs (LV curve with ED/ES, ED/ES overlay montage, Bland–Altman).

One video gives ``<name>_report.json``, ``<name>_volume_curve.png`` and ``<name>_ed_es.png``, with
the JSON keys of the ``echoforge`` library's ``echoforge.report.video_report`` (``source``,
``frames``, ``size``, ``spacing_mm``, ``frame_time_ms``, ``view``, ``measurements``,
``annotated_frames``, ``seconds``, ``frame_confidence``, ``montage_png``, ``curve_png``).
Several videos give ``echoforge_report.json`` listing them, the biplane results, and — when at
least two videos have a reference EF (for example the scanner's own measurement) — the agreement
of EchoForge's EF with it and ``ef_bland_altman.png``.

NaN values are written as ``null`` so that every JSON file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from EchoForgeCore.agreement import agreement
from EchoForgeCore.clip import report_measurements
from EchoForgeCore.curves import lv_area_curve

from .charts import bland_altman_image, ed_es_montage, volume_curve_image
from .png import write_png

STUDY_REPORT_NAME = "echoforge_report.json"
BLAND_ALTMAN_NAME = "ef_bland_altman.png"


def video_report(name: str, frames: np.ndarray, labels: np.ndarray, spacing: Optional[tuple[float, float]],
                 frame_time_ms: Optional[float] = None, ed: Optional[int] = None, es: Optional[int] = None,
                 out_dir: Optional[str] = None, annotated_frames: Optional[Sequence[int]] = None,
                 server_result: Optional[Mapping[str, Any]] = None, view: str = "unknown",
                 source: Optional[str] = None) -> dict[str, Any]:
    """Measure one segmented video and, with ``out_dir``, write its report JSON and PNGs.

    Args:
        name: the video's name (image id); it names the files.
        frames: ``T×H×W`` uint8 grey frames (for the montage).
        labels: ``T×H×W`` labels of every frame.
        spacing: pixel size (row, col) in mm, or ``None`` when unknown (no volumes, EF from pixels).
        ed, es: frames marked by the clinician; detected from the LV areas when ``None``.
        annotated_frames: the frames the clinician drew.
        server_result: the server's segmentation JSON (its ``seconds`` and ``frame_confidence`` are kept).

    Returns:
        The report dictionary (with ``montage_png``/``curve_png``/``report_json`` paths when written).
    """
    labels = np.asarray(labels)
    m = report_measurements(labels, spacing, frame_time_ms, ed, es)
    report: dict[str, Any] = {"source": source or name, "frames": int(labels.shape[0]),
                              "size": [int(s) for s in labels.shape[1:]],
                              "spacing_mm": list(spacing) if spacing else None, "frame_time_ms": frame_time_ms,
                              "view": view, "measurements": m,
                              "annotated_frames": [int(f) for f in annotated_frames or []]}
    if server_result:
        for key in ("seconds", "frame_confidence", "adapted"):
            if key in server_result:
                report[key] = server_result[key]
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        base = os.path.join(out_dir, safe_file_name(name))
        report["montage_png"] = write_png(f"{base}_ed_es.png", ed_es_montage(frames, labels, m.get("ed"), m.get("es")))
        curve = m if m.get("areas") else {**m, "areas": lv_area_curve(labels, spacing).tolist(),
                                           "area_unit": "mm²" if spacing else "px²"}
        report["curve_png"] = write_png(f"{base}_volume_curve.png", curve_image(curve, frame_time_ms,
                                                                                 spacing is not None))
        report["report_json"] = write_json(f"{base}_report.json", report)
    return report


def curve_image(m: Mapping[str, Any], frame_time_ms: Optional[float], spacing_known: bool = True) -> np.ndarray:
    """The LV volume curve when every frame has a volume, else the area curve, with ED/ES marked."""
    volumes = m.get("volumes_ml") or []
    use_volumes = bool(volumes) and all(v is not None for v in volumes)
    values = volumes if use_volumes else m.get("areas") or []
    unit = m.get("area_unit") or "px²"
    ylabel = "LV volume (ml)" if use_volumes else f"LV area ({unit})"
    title = "LV over the clip (ED/ES marked)" + ("" if spacing_known else ", no pixel spacing")
    return volume_curve_image(values, m.get("ed"), m.get("es"), frame_time_ms, ylabel, title)


def study_report(videos: Sequence[Mapping[str, Any]], out_dir: str,
                 references: Optional[Mapping[str, Optional[float]]] = None,
                 biplane: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The summary of several measured videos: ``echoforge_report.json`` and, with references, a Bland–Altman plot.

    Args:
        videos: :func:`video_report` results (their ``source`` names them).
        out_dir: where to write.
        references: video name → reference EF in % (``None`` where unknown).
        biplane: biplane results (``EchoForgeLib.session.BiplaneResult.to_dict`` of each 2CH/4CH pair).
    """
    os.makedirs(out_dir, exist_ok=True)
    references = references or {}
    rows = []
    for video in videos:
        m = video.get("measurements") or {}
        rows.append({"video": video.get("source"), "ef": m.get("ef"), "edv_ml": m.get("edv_disks_ml"),
                     "esv_ml": m.get("esv_disks_ml"), "ed": m.get("ed"), "es": m.get("es"),
                     "available": m.get("available"), "reason": m.get("reason"),
                     "reference_ef": references.get(str(video.get("source")))})
    summary: dict[str, Any] = {"videos": rows, "biplane": list(biplane), "reports": [v.get("report_json")
                                                                                   for v in videos]}
    pairs = [(row["ef"], row["reference_ef"]) for row in rows
             if _finite(row["ef"]) and _finite(row["reference_ef"])]
    if len(pairs) >= 2:
        values, reference = [p for p, _ in pairs], [r for _, r in pairs]
        stats = agreement(values, reference)
        summary["ef_agreement"] = stats
        summary["bland_altman_png"] = write_png(os.path.join(out_dir, BLAND_ALTMAN_NAME),
                                                bland_altman_image(values, reference, stats))
    summary["report_json"] = write_json(os.path.join(out_dir, STUDY_REPORT_NAME), summary)
    return summary


def write_json(path: str, data: Any) -> str:
    """Write ``data`` as strict JSON (NaN/inf as null, numpy values as Python numbers), atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_plain(data), f, indent=2, allow_nan=False, ensure_ascii=False)
    os.replace(tmp, path)
    return path


def to_plain(value: Any) -> Any:
    """``value`` with numpy types turned into Python ones and non-finite floats into ``None``."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_plain(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def safe_file_name(name: str) -> str:
    """``name`` with characters that do not belong in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "video"


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float, np.floating)) and math.isfinite(float(value))

