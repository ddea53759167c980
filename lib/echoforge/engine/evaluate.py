"""Evaluation: overlap per structure on all frames and on ED/ES, EF agreement, plots and reports.

Each video is segmented automatically (no annotation given to the model) with
:func:`~echoforge.engine.inference.segment_video`, at its own resolution, and scored against its
reference labels: on every frame that has a reference ("all frames", the CAMUS-Full protocol) and
on the ED/ES frames alone (CAMUS-Semi). EF is measured on the predicted and the reference labels at
the reference ED/ES frames — biplane (method of disks, 20 disks) when a patient has both views,
single-plane otherwise — and compared with bias, limits of agreement and Pearson r, with
Bland–Altman and regression plots.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from echoforge import labels as L
from echoforge.engine.clips import Clip, to_classes
from echoforge.engine.inference import segment_video
from echoforge.errors import EchoForgeError
from echoforge.io.atomic import write_json_atomic, write_text_atomic
from echoforge.video import EchoVideo

STRUCTURES = {"camus": ("LV", "myocardium", "LA"), "lv": ("LV",)}


@torch.no_grad()
def clip_dice(model: torch.nn.Module, clips: list[Clip], mode: str, device: torch.device | str = "cpu"
              ) -> dict[str, float]:
    """Quick validation in the two ways the model is used.

    * automatic (nothing drawn): mean Dice per class over all frames with a reference (else the
      labelled ones) — ``val_dice_<class>``, ``val_dice_mean``;
    * "segment the rest": the labelled frames are memory references and the *other* frames with a
      reference are scored — ``val_rest_dice_mean`` (clips with a reference and a labelled frame).

    ``val_score`` (what picks the best checkpoint) is the mean of the two where both exist.
    """
    model.eval()
    n_classes = 4 if mode == "camus" else 2
    inter = np.zeros(n_classes)
    total = np.zeros(n_classes)
    per_clip, per_clip_rest = [], []
    for clip in clips:
        frames = torch.from_numpy(clip.frames).float().div(255.0)[None].to(device)
        pred = model(frames)["logits"][0].argmax(1).cpu().numpy()
        if clip.reference is not None:
            ref, use = to_classes(clip.reference, mode), np.ones(len(pred), bool)
        else:
            ref, use = to_classes(clip.labels, mode), clip.labelled
        per_clip.append(_mean_dice(pred[use], ref[use], n_classes, inter, total))
        rest = ~clip.labelled
        if clip.reference is not None and clip.labelled.any() and rest.any() and getattr(model, "tsf", None):
            labels = torch.from_numpy(to_classes(clip.labels, mode))[None].to(device)
            refs = torch.from_numpy(clip.labelled)[None].to(device)
            guided = model(frames, labels, refs)["logits"][0].argmax(1).cpu().numpy()
            per_clip_rest.append(_mean_dice(guided[rest], ref[rest], n_classes))
    names = ["background", "LV", "myocardium", "LA"] if mode == "camus" else ["background", "LV"]
    out = {f"val_dice_{names[c]}": round(2 * inter[c] / total[c], 5) for c in range(1, n_classes) if total[c] > 0}
    out["val_dice_mean"] = round(float(np.mean(per_clip)), 5) if per_clip else float("nan")
    scores = [out["val_dice_mean"]]
    if per_clip_rest:
        out["val_rest_dice_mean"] = round(float(np.mean(per_clip_rest)), 5)
        scores.append(out["val_rest_dice_mean"])
    out["val_score"] = round(float(np.mean(scores)), 5)
    return out


def _mean_dice(pred: np.ndarray, ref: np.ndarray, n_classes: int, inter: np.ndarray | None = None,
               total: np.ndarray | None = None) -> float:
    """Mean over foreground classes present of the Dice of ``pred`` vs ``ref`` (1 when none is present);
    accumulates per-class intersections and sums into ``inter``/``total`` when given."""
    scores = []
    for c in range(1, n_classes):
        p, r = pred == c, ref == c
        i, s = float((p & r).sum()), float(p.sum() + r.sum())
        if inter is not None and total is not None:
            inter[c] += i
            total[c] += s
        if s > 0:
            scores.append(2 * i / s)
    return float(np.mean(scores)) if scores else 1.0


def _scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] | None, frames: list[int],
            mode: str) -> dict[str, Any]:
    from echoforge.metrics.overlap import overlap_metrics

    return overlap_metrics(pred, ref, spacing, frames=frames, structures=STRUCTURES[mode])


def evaluate_videos(model: torch.nn.Module, items: list[tuple[str, EchoVideo, EchoVideo | None]], out_dir: str | os.PathLike[str],
                    mode: str, device: str | torch.device = "cpu", chunk: int | None = 16,
                    progress: bool = True, title: str = "EchoForge evaluation") -> dict[str, Any]:
    """Segment and score every video that has reference labels; write JSON, Markdown and PNGs to ``out_dir``.

    Args:
        items: ``(id, video, reference video)`` as :func:`echoforge.engine.clips.load_dataset` gives.
        mode: ``camus`` (LV, myocardium, LA) or ``lv``.
    """
    from echoforge.core.agreement import agreement
    from echoforge.core.measurements import measure_biplane, measure_labels

    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    per_patient: dict[str, dict[str, tuple[np.ndarray, np.ndarray, EchoVideo]]] = defaultdict(dict)
    started = time.time()
    scored = [(vid, video, ref) for vid, video, ref in items if ref is not None and ref.has_labels]
    if not scored:
        raise EchoForgeError("no video with reference labels to evaluate against")
    for vid, video, ref in tqdm(scored, desc="evaluate", unit="video", disable=not progress):
        seg = segment_video(model, video.replace(labels=None, annotated=()), use_annotations=False, chunk=chunk,
                            device=device)
        reference = ref.labels if mode == "camus" else (ref.labels == L.LV).astype(np.uint8)
        annotated = list(ref.annotated)
        ed_es = [f for f in (ref.ed, ref.es) if f is not None and f in ref.annotated] or annotated
        all_scores = _scores(seg.labels, reference, ref.spacing, annotated, mode)
        ed_es_scores = _scores(seg.labels, reference, ref.spacing, ed_es, mode)
        row: dict[str, Any] = {"id": vid, "view": video.view, "frames_scored": len(annotated),
                               "seconds": round(seg.seconds, 3), "fps": round(video.n_frames / seg.seconds, 2)}
        for name, scores in (("all", all_scores), ("ed_es", ed_es_scores)):
            for struct, values in scores["per_structure"].items():
                for metric in ("dice", "hd95", "assd"):
                    row[f"{name}_{metric}_{struct}"] = values[metric]
            for metric in ("dice", "hd95", "assd"):
                row[f"{name}_{metric}_mean"] = scores["mean"][metric]
        row["distance_unit"] = all_scores["unit"]
        if ref.ed is not None and ref.es is not None and ref.ed in ref.annotated and ref.es in ref.annotated:
            try:
                m_pred = measure_labels(seg.labels, ref.spacing, ed=ref.ed, es=ref.es)
                m_ref = measure_labels(ref.labels, ref.spacing, ed=ref.ed, es=ref.es)
                row.update({"ef_pred": m_pred["ef"], "ef_ref": m_ref["ef"]})
            except EchoForgeError as err:  # e.g. no LV predicted on ED: recorded, not fatal
                row["ef_error"] = str(err)
            patient = str(ref.meta.get("patient") or vid.rsplit("_", 1)[0])
            per_patient[patient][video.view] = (seg.labels, ref.labels, ref)
        if "true_ef" in ref.meta:
            row["ef_true_single_view"] = ref.meta["true_ef"]
        rows.append(row)
    biplane = []
    for patient, views in sorted(per_patient.items()):
        if {"2CH", "4CH"} <= set(views):
            (p2, r2, v2), (p4, r4, v4) = views["2CH"], views["4CH"]
            try:
                pred = measure_biplane(p2, v2.spacing, p4, v4.spacing, v2.ed, v2.es, v4.ed, v4.es)
                ref = measure_biplane(r2, v2.spacing, r4, v4.spacing, v2.ed, v2.es, v4.ed, v4.es)
            except EchoForgeError as err:
                biplane.append({"patient": patient, "error": str(err)})
                continue
            biplane.append({"patient": patient, "ef_pred": pred["ef"], "ef_ref": ref["ef"],
                            "edv_pred": pred["edv_ml"], "edv_ref": ref["edv_ml"], "esv_pred": pred["esv_ml"],
                            "esv_ref": ref["esv_ml"], "ef_true": v4.meta.get("true_ef")})
    summary = _summarise(rows, biplane, mode, agreement)
    summary.update({"title": title, "videos": len(rows), "seconds": round(time.time() - started, 1)})
    report = {"summary": summary, "videos": rows, "biplane": biplane}
    write_json_atomic(out_dir / "report.json", report)
    _plots(out_dir, rows, biplane)
    write_text_atomic(out_dir / "report.md", markdown_report(report))
    return report


def _summarise(rows: list[dict[str, Any]], biplane: list[dict[str, Any]], mode: str, agreement: Any) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = np.array([r[key] for r in rows if key in r], dtype=float)
        values = values[np.isfinite(values)]
        return round(float(values.mean()), 4) if values.size else None

    summary: dict[str, Any] = {"mode": mode, "distance_unit": rows[0]["distance_unit"] if rows else "mm"}
    for scope in ("all", "ed_es"):
        for metric in ("dice", "hd95", "assd"):
            for struct in (*STRUCTURES[mode], "mean"):
                summary[f"{scope}_{metric}_{struct}"] = mean(f"{scope}_{metric}_{struct}")
    pairs = [(r["ef_pred"], r["ef_ref"]) for r in rows if r.get("ef_pred") is not None and r.get("ef_ref") is not None]
    if len(pairs) >= 2:
        summary["ef_single_plane"] = agreement(np.array([p for p, _ in pairs]), np.array([r for _, r in pairs]))
    bi = [(b["ef_pred"], b["ef_ref"]) for b in biplane if b.get("ef_pred") is not None and b.get("ef_ref") is not None]
    if len(bi) >= 2:
        summary["ef_biplane"] = agreement(np.array([p for p, _ in bi]), np.array([r for _, r in bi]))
    summary["fps_mean"] = mean("fps")
    return summary


def _plots(out_dir: Path, rows: list[dict[str, Any]], biplane: list[dict[str, Any]]) -> None:
    from echoforge.plots import bland_altman_png, regression_png

    bi = [(b["ef_pred"], b["ef_ref"]) for b in biplane if b.get("ef_pred") is not None and b.get("ef_ref") is not None]
    pairs = bi or [(r["ef_pred"], r["ef_ref"]) for r in rows
                   if r.get("ef_pred") is not None and r.get("ef_ref") is not None]
    if len(pairs) >= 2:
        pred, ref = np.array(pairs, dtype=float).T
        kind = "biplane" if bi else "single-plane"
        bland_altman_png(pred, ref, out_dir / "ef_bland_altman.png", title=f"EF ({kind}): prediction vs reference",
                         unit="%")
        regression_png(pred, ref, out_dir / "ef_regression.png", title=f"EF ({kind})", unit="%")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary table per scope, EF agreement, then one row per video."""
    s = report["summary"]
    structs = [k for k in ("LV", "myocardium", "LA") if f"all_dice_{k}" in s]
    lines = [f"# {s['title']}", "", f"{s['videos']} videos, distances in {s['distance_unit']}.", "",
             "| frames | " + " | ".join(f"Dice {k}" for k in structs) + " | Dice mean | HD95 mean | ASSD mean |",
             "|---" * (len(structs) + 4) + "|"]
    for scope, label in (("all", "all frames"), ("ed_es", "ED/ES")):
        cells = [_fmt(100 * s[f"{scope}_dice_{k}"]) if s[f"{scope}_dice_{k}"] is not None else "—" for k in structs]
        mean_d = s[f"{scope}_dice_mean"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_fmt(100 * mean_d) if mean_d is not None else '—'} | "
                     f"{_fmt(s[f'{scope}_hd95_mean'])} | {_fmt(s[f'{scope}_assd_mean'])} |")
    for key, label in (("ef_biplane", "EF, biplane"), ("ef_single_plane", "EF, single plane")):
        if key in s:
            a = s[key]
            lines += ["", f"**{label}** (n = {a['n']}): r = {_fmt(a['pearson_r'], 3)}, bias = {_fmt(a['bias'])} %, "
                      f"SD = {_fmt(a['sd'])}, 95 % LoA [{_fmt(a['loa_lower'])}, {_fmt(a['loa_upper'])}], "
                      f"MAE = {_fmt(a['mae'])}"]
    lines += ["", "| video | view | Dice all | Dice ED/ES | HD95 | EF pred | EF ref |", "|---|---|---|---|---|---|---|"]
    for r in report["videos"]:
        lines.append(f"| {r['id']} | {r['view']} | {_fmt(100 * r['all_dice_mean'])} | {_fmt(100 * r['ed_es_dice_mean'])} | "
                     f"{_fmt(r['all_hd95_mean'])} | {_fmt(r.get('ef_pred'))} | {_fmt(r.get('ef_ref'))} |")
    return "\n".join(lines) + "\n"
