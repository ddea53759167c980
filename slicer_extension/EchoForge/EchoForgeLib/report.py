"""The clinical report as data: JSON per video and for the study, with the EF agreement statistics.

One video gives ``<name>_report.json`` with the JSON keys of the ``echoforge`` library's
``echoforge.report.video_report`` (``source``, ``frames``, ``size``, ``spacing_mm``,
``frame_time_ms``, ``view``, ``measurements``, ``annotated_frames``, ``seconds``,
``frame_confidence``). Several videos give ``echoforge_report.json`` listing them, the biplane
results, and — when at least two videos have a reference EF (for example the scanner's own
measurement) — the agreement of EchoForge's EF with it and the Bland–Altman points.

Pictures are not drawn here: the Slicer module draws them with Slicer's own plot and slice views
and passes their file names in (``pictures``), so that the JSON names them.

NaN values are written as ``null`` so that every JSON file is strict JSON, and every file is
written atomically (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from EchoForgeCore.agreement import agreement
from EchoForgeCore.clip import report_measurements

STUDY_REPORT_NAME = "echoforge_report.json"


def video_report(name: str, labels: np.ndarray, spacing: Optional[tuple[float, float]],
                 frame_time_ms: Optional[float] = None, ed: Optional[int] = None, es: Optional[int] = None,
                 out_dir: Optional[str] = None, annotated_frames: Optional[Sequence[int]] = None,
                 server_result: Optional[Mapping[str, Any]] = None, view: str = "unknown",
                 source: Optional[str] = None, pictures: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Measure one segmented video and, with ``out_dir``, write its report JSON.

    Args:
        name: the video's name (image id); it names the file.
        labels: ``T×H×W`` labels of every frame.
        spacing: pixel size (row, col) in mm, or ``None`` when unknown (no volumes, EF from pixels).
        ed, es: frames marked by the clinician; detected from the LV areas when ``None``.
        annotated_frames: the frames the clinician drew.
        server_result: the server's segmentation JSON (its ``seconds`` and ``frame_confidence`` are kept).
        pictures: picture files made for this video (key → path, e.g. ``curve_png``), listed in the JSON.

    Returns:
        The report dictionary (with ``report_json`` when written).
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
    report.update(pictures or {})
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        report["report_json"] = write_json(os.path.join(out_dir, f"{safe_file_name(name)}_report.json"), report)
    return report


def study_report(videos: Sequence[Mapping[str, Any]], out_dir: str,
                 references: Optional[Mapping[str, Optional[float]]] = None,
                 biplane: Sequence[Mapping[str, Any]] = (),
                 pictures: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """The summary of several measured videos: ``echoforge_report.json``, with the EF agreement when references allow.

    Args:
        videos: :func:`video_report` results (their ``source`` names them).
        out_dir: where to write.
        references: video name → reference EF in % (``None`` where unknown).
        biplane: biplane results (``EchoForgeLib.session.BiplaneResult.to_dict`` of each 2CH/4CH pair).
        pictures: study-wide picture files (e.g. ``bland_altman_png``), listed in the JSON.
    """
    os.makedirs(out_dir, exist_ok=True)
    rows = ef_rows(videos, references)
    summary: dict[str, Any] = {"videos": rows, "biplane": list(biplane), "reports": [v.get("report_json")
                                                                                   for v in videos]}
    points = bland_altman_points(rows)
    if points["video"]:
        summary["ef_agreement"] = agreement(points["ef"], points["reference_ef"])
        summary["ef_bland_altman"] = points
    summary.update(pictures or {})
    summary["report_json"] = write_json(os.path.join(out_dir, STUDY_REPORT_NAME), summary)
    return summary


def ef_rows(videos: Sequence[Mapping[str, Any]],
            references: Optional[Mapping[str, Optional[float]]] = None) -> list[dict[str, Any]]:
    """One row per measured video: its EF, EDV, ESV, ED/ES and the reference EF typed for it."""
    references = references or {}
    rows = []
    for video in videos:
        m = video.get("measurements") or {}
        rows.append({"video": video.get("source"), "ef": m.get("ef"), "edv_ml": m.get("edv_disks_ml"),
                     "esv_ml": m.get("esv_disks_ml"), "ed": m.get("ed"), "es": m.get("es"),
                     "available": m.get("available"), "reason": m.get("reason"),
                     "reference_ef": references.get(str(video.get("source")))})
    return rows


def bland_altman_points(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The Bland–Altman points of the rows with both an EF and a reference EF (at least two, else none).

    Returns ``video``, ``ef``, ``reference_ef``, ``mean`` (of the two) and ``difference`` (EF − reference),
    one entry per video, in %.
    """
    pairs = [(row["video"], float(row["ef"]), float(row["reference_ef"])) for row in rows
             if _finite(row.get("ef")) and _finite(row.get("reference_ef"))]
    if len(pairs) < 2:
        pairs = []
    return {"video": [v for v, _, _ in pairs], "ef": [e for _, e, _ in pairs],
            "reference_ef": [r for _, _, r in pairs], "mean": [(e + r) / 2 for _, e, r in pairs],
            "difference": [e - r for _, e, r in pairs]}


def write_json(path: str, data: Any) -> str:
    """Write ``data`` as strict JSON (NaN/inf as null, numpy values as Python numbers), atomically."""
    text = json.dumps(to_plain(data), indent=2, allow_nan=False, ensure_ascii=False)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".echoforge-", suffix=".json.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
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

