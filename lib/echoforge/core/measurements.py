"""Single-view and biplane measurements of a labelled clip: ED/ES, volumes, EF, FAC.

Volumes come from :mod:`.geometry` (method of disks, area–length, biplane disks); EF = 100 ·
(EDV − ESV) / EDV and FAC (fractional area change) = 100 · (EDA − ESA) / EDA.

Without a pixel spacing (an uncalibrated video) no volume is reported: ``available`` is False and
``reason`` says why, while EF and FAC are still given, computed from pixels as ratios that do not
depend on the scale (square pixels assumed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from .curves import detect_ed_es, lv_area_curve, temporal_smoothness
from .errors import EchoForgeError
from .geometry import N_DISKS, LVGeometry, biplane_volume, frame_geometry
from .labels import LV
from .validation import check_frame, check_frame_time, check_labels, check_spacing

NO_SPACING_REASON = ("no pixel spacing: volumes are not reported; EF and FAC are ratios and are computed "
                     "assuming square pixels")
NO_SPACING_EF_NOTE = "no pixel spacing: EF from pixel areas (scale-free), volumes unavailable"
ONE_VIEW_SPACING_REASON = "pixel spacing is known for one view only: biplane volumes and EF are not reported"
#: The keys of :func:`measure_labels` that a clinical report carries (see :func:`report_measurements`).
SUMMARY_KEYS = ("available", "reason", "ed", "es", "ed_source", "es_source", "ed_time_ms", "es_time_ms", "area_unit",
                "ed_area", "es_area",
                "fac", "smoothness", "edv_disks_ml", "esv_disks_ml", "ef_disks", "edv_area_length_ml",
                "esv_area_length_ml", "ef_area_length", "ef", "length_unit", "length_ed", "length_es")


def ejection_fraction(edv: Optional[float], esv: Optional[float]) -> float:
    """EF in percent, 100 · (EDV − ESV) / EDV; NaN when either volume is missing or NaN.

    Raises:
        ValueError: a non-positive EDV.
    """
    if edv is None or esv is None or not (np.isfinite(edv) and np.isfinite(esv)):
        return float("nan")
    if edv <= 0:
        raise ValueError(f"the end-diastolic volume must be positive, got {edv}")
    return float(100.0 * (edv - esv) / edv)


def measure_labels(labels: np.ndarray, spacing: Optional[Sequence[float]], frame_time_ms: Optional[float] = None,
                   ed: Optional[int] = None, es: Optional[int] = None, n_disks: int = N_DISKS) -> dict[str, Any]:
    """Single-view measurements of a labelled clip: area curve, ED/ES, volumes and EF.

    Args:
        labels: ``T×H×W`` labels (1 = LV cavity; 3 = left atrium helps find the mitral plane).
        spacing: pixel size (row, col) in mm, or ``None`` (see ``available``).
        frame_time_ms: time between frames, to report ED/ES times.
        ed, es: known ED/ES frames; each one not given is taken from :func:`~.curves.detect_ed_es`.
        n_disks: disks of the method of disks.

    Returns:
        ``available`` (volumes reported) and ``reason`` (why not, else ``None``); ``spacing``;
        ``frame_time_ms``; ``n_frames``; ``ed``, ``es`` and ``ed_source``/``es_source``
        (``"given"`` or ``"detected"``); ``ed_time_ms``/``es_time_ms`` (``None`` without a frame time);
        ``areas`` (``T``, mm² or px²) with ``area_unit``; ``ed_area``, ``es_area``; ``fac``
        (fractional area change, %); ``smoothness`` (:func:`~.curves.temporal_smoothness`);
        ``length_ed``/``length_es`` (long axis) with ``length_unit`` (``"mm"``/``"px"``);
        ``edv_disks_ml``, ``esv_disks_ml``, ``ef_disks``; ``edv_area_length_ml``,
        ``esv_area_length_ml``, ``ef_area_length``; ``ef`` (= ``ef_disks``); ``geometry``
        (``{"ed", "es"}`` :meth:`~.geometry.LVGeometry.to_dict`, points in pixels). Without spacing
        every ``*_ml`` is ``None`` while EF and FAC are still given, computed as if pixels were square.

    Raises:
        EmptyLabelError: the ED or ES frame has no LV cavity (the message names it).
        UnknownFrameError: ``ed``/``es`` outside the clip.
        InvalidVideoError: non-positive spacing or frame time.
    """
    result, _, _ = measure_view(labels, spacing, frame_time_ms, ed, es, n_disks, "")
    return result


def measure_biplane(labels_2ch: np.ndarray, spacing_2ch: Optional[Sequence[float]],
                    labels_4ch: np.ndarray, spacing_4ch: Optional[Sequence[float]],
                    ed_2ch: Optional[int] = None, es_2ch: Optional[int] = None,
                    ed_4ch: Optional[int] = None, es_4ch: Optional[int] = None,
                    n_disks: int = N_DISKS) -> dict[str, Any]:
    """Biplane (CAMUS) volumes and EF from a 2CH and a 4CH clip, plus each view's own measurements.

    Each view's ED/ES is given or detected independently (:func:`measure_labels`).

    Returns:
        ``available``, ``reason``; ``edv_ml``, ``esv_ml`` (biplane disks) and ``ef``; ``"2CH"`` and
        ``"4CH"``: the :func:`measure_labels` result of each view. Without spacing in both views the
        volumes are ``None`` and EF is computed in pixels (square pixels of the same size in both
        views assumed); with spacing in only one view the biplane values are all ``None``.
    """
    r2, ed2, es2 = measure_view(labels_2ch, spacing_2ch, None, ed_2ch, es_2ch, n_disks, "2CH ")
    r4, ed4, es4 = measure_view(labels_4ch, spacing_4ch, None, ed_4ch, es_4ch, n_disks, "4CH ")
    edv, esv = biplane_volume(ed2, ed4), biplane_volume(es2, es4)
    ef: Optional[float] = ejection_fraction(edv, esv)
    known = (r2["spacing"] is not None) + (r4["spacing"] is not None)
    reason = None
    if known == 1:
        reason = ONE_VIEW_SPACING_REASON
        ef = None
    elif known == 0:
        reason = NO_SPACING_REASON
    return {"available": known == 2, "reason": reason, "edv_ml": edv if known == 2 else None,
            "esv_ml": esv if known == 2 else None, "ef": ef, "2CH": r2, "4CH": r4}


def measure_view(labels: np.ndarray, spacing: Optional[Sequence[float]], frame_time_ms: Optional[float],
                 ed: Optional[int], es: Optional[int], n_disks: int = N_DISKS,
                 view: str = "") -> tuple[dict[str, Any], LVGeometry, LVGeometry]:
    """:func:`measure_labels` plus the ED and ES geometries; ``view`` prefixes error messages."""
    lab = check_labels(labels)
    sp = check_spacing(spacing)
    frame_time_ms = check_frame_time(frame_time_ms)
    n = lab.shape[0]
    areas = lv_area_curve(lab, sp)
    detected = detect_ed_es(areas) if ed is None or es is None else (0, 0)
    frames = {name: guess if given is None else check_frame(given, n, f"{view}{name} frame")
              for name, given, guess in (("ED", ed, detected[0]), ("ES", es, detected[1]))}
    geometry = {}
    for name, index in frames.items():
        what = f"{view}frame {index} ({name})"
        if (ed if name == "ED" else es) is None:
            what = f"{view}frame {index} ({name}, detected from the LV areas; give ed/es for sparse labels)"
        geometry[name] = frame_geometry(lab[index], sp or (1.0, 1.0), n_disks, what)
    g_ed, g_es = geometry["ED"], geometry["ES"]
    volumes = {"disks": (g_ed.volume_disks, g_es.volume_disks),
               "area_length": (g_ed.volume_area_length, g_es.volume_area_length)}
    result: dict[str, Any] = {
        "available": sp is not None,
        "reason": None if sp else NO_SPACING_REASON,
        "spacing": sp,
        "frame_time_ms": frame_time_ms,
        "n_frames": n,
        "ed": frames["ED"],
        "es": frames["ES"],
        "ed_source": "given" if ed is not None else "detected",
        "es_source": "given" if es is not None else "detected",
        "ed_time_ms": frames["ED"] * frame_time_ms if frame_time_ms else None,
        "es_time_ms": frames["ES"] * frame_time_ms if frame_time_ms else None,
        "areas": areas,
        "area_unit": "mm²" if sp else "px²",
        "ed_area": float(areas[frames["ED"]]),
        "es_area": float(areas[frames["ES"]]),
        "fac": ejection_fraction(float(areas[frames["ED"]]), float(areas[frames["ES"]])),
        "smoothness": temporal_smoothness(areas),
        "length_ed": g_ed.length,
        "length_es": g_es.length,
        "length_unit": "mm" if sp else "px",
    }
    for method, (v_ed, v_es) in volumes.items():
        result[f"edv_{method}_ml"] = v_ed if sp else None
        result[f"esv_{method}_ml"] = v_es if sp else None
        result[f"ef_{method}"] = ejection_fraction(v_ed, v_es)
    result["ef"] = result["ef_disks"]
    result["geometry"] = {"ed": g_ed.to_dict(), "es": g_es.to_dict()}
    return result, g_ed, g_es


def frame_geometries(labels: np.ndarray, spacing: Optional[Sequence[float]],
                     n_disks: int = N_DISKS) -> list[Optional[LVGeometry]]:
    """The :class:`~.geometry.LVGeometry` of every frame (pixels without spacing); ``None`` where the
    frame has no measurable LV cavity."""
    lab = check_labels(labels)
    sp = check_spacing(spacing) or (1.0, 1.0)
    out: list[Optional[LVGeometry]] = []
    for index, frame in enumerate(lab):
        if not (frame == LV).any():
            out.append(None)
            continue
        try:
            out.append(frame_geometry(frame, sp, n_disks, f"frame {index}"))
        except EchoForgeError:
            out.append(None)
    return out


def lv_volume_curve(labels: np.ndarray, spacing: Optional[Sequence[float]]) -> list[Optional[float]]:
    """Single-plane method-of-disks LV volume (ml, 3 decimals) of every frame; ``None`` where it cannot be
    measured, and on every frame without a spacing."""
    lab = check_labels(labels)
    if check_spacing(spacing) is None:
        return [None] * lab.shape[0]
    return [None if g is None else round(g.volume_disks, 3) for g in frame_geometries(lab, spacing)]
