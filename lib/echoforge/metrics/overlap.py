"""Overlap and surface-distance metrics between two label clips, per structure and per frame.

Dice and IoU come from MONAI's :func:`~monai.metrics.compute_iou` (Dice = 2·IoU / (1 + IoU), the
same number as :class:`~monai.metrics.DiceMetric`, vectorised over all frames at once). HD95 and
ASSD follow MONAI's definitions exactly:

* HD95 = max of the two directed 95th percentiles of edge-to-edge distances, as
  :func:`~monai.metrics.compute_hausdorff_distance` with ``percentile=95``;
* ASSD = mean of the pooled distances in both directions, as
  :func:`~monai.metrics.compute_average_surface_distance` with ``symmetric=True``.

Both are derived from one call to MONAI's :func:`~monai.metrics.utils.get_edge_surface_distance`
per frame and structure, which is what those two functions call internally; sharing it halves the
cost. (medpy, used by some published evaluation scripts, pools both directions before taking the
95th percentile and averages the two directed means for ASSD, which gives slightly different values.)

Edge cases, the same for every structure and frame:

==========================  ==========  =========================================
reference / prediction      Dice, IoU   HD95, ASSD
==========================  ==========  =========================================
both empty                  1.0         0.0 (perfect agreement; counted in means)
exactly one empty           0.0         NaN (left out of means, counted)
==========================  ==========  =========================================
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_iou
from monai.metrics.utils import get_edge_surface_distance

from echoforge import labels as L
from echoforge.core.validation import check_labels, check_spacing
from echoforge.errors import LabelShapeError, UnknownFrameError

#: Named structures and the label values each is the union of. ``LV_epi`` (LV cavity plus
#: myocardium) is the epicardial contour used by CAMUS loaders.
STRUCTURE_LABELS: dict[str, tuple[int, ...]] = {
    "LV": (L.LV,),
    "myocardium": (L.MYOCARDIUM,),
    "LA": (L.LA,),
    "LV_epi": (L.LV, L.MYOCARDIUM),
}
METRICS = ("dice", "iou", "hd95", "assd")
_CHUNK = 256  # frames per vectorised Dice/IoU batch, bounds memory for long clips


def resolve_structures(structures: Sequence[int | str]) -> dict[str, tuple[int, ...]]:
    """Map label values (1, 2, 3) or names (``"LV"``, ``"myocardium"``, ``"LA"``, ``"LV_epi"``) to label sets."""
    resolved: dict[str, tuple[int, ...]] = {}
    for s in structures:
        name = L.STRUCTURES.get(s) if isinstance(s, (int, np.integer)) else s
        if name not in STRUCTURE_LABELS:
            raise ValueError(f"unknown structure {s!r}; use 1, 2, 3 or one of {sorted(STRUCTURE_LABELS)}")
        resolved[name] = STRUCTURE_LABELS[name]
    if not resolved:
        raise ValueError("no structure to evaluate")
    return resolved


def overlap_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    frames: Sequence[int] | None = None,
    structures: Sequence[int | str] = (L.LV, L.MYOCARDIUM, L.LA),
) -> dict[str, Any]:
    """Dice, IoU, HD95 and ASSD of ``pred`` against ``ref`` for each structure on each frame.

    Args:
        pred: ``T×H×W`` (or ``H×W``) predicted labels, values 0-3.
        ref: reference labels of the same shape.
        spacing: pixel size (row, col) in mm; ``None`` gives distances in pixels.
        frames: the frames to score (e.g. ``[ed, es]``), default all; negative indices count from the end.
        structures: label values and/or names: ``1``/``"LV"``, ``2``/``"myocardium"``, ``3``/``"LA"``,
            ``"LV_epi"`` (labels 1 ∪ 2). Binary LV evaluation is ``structures=("LV",)``; a binary 0/1
            mask is read as LV.

    Returns:
        ``unit``: ``"mm"`` or ``"px"`` (for HD95/ASSD); ``spacing``: (row, col) or ``None``;
        ``frames``: the scored frame indices (F); ``structures``: names in order;
        ``per_frame``: ``{name: {"dice", "iou", "hd95", "assd": float64 (F,)}}``;
        ``per_structure``: ``{name: {"dice", "iou", "hd95", "assd": mean over frames,
        "n_frames", "n_both_empty", "n_one_empty"}}``;
        ``mean``: ``{"dice", "iou", "hd95", "assd"}``, the mean of the per-structure means.
        Means skip NaN (distances where exactly one mask is empty) and are NaN when nothing is left.

    Raises:
        LabelShapeError, LabelValueError: bad label arrays or different shapes.
        UnknownFrameError: a frame index outside the clip.
        InvalidVideoError: non-positive spacing.
    """
    p = check_labels(pred, "pred")
    r = check_labels(ref, "ref")
    if p.shape != r.shape:
        raise LabelShapeError(f"pred shape {p.shape} differs from ref shape {r.shape}")
    sp = check_spacing(spacing)
    n = p.shape[0]
    idx = list(range(n)) if frames is None else [int(f) for f in frames]
    bad = [f for f in idx if not -n <= f < n]
    if bad:
        raise UnknownFrameError(f"frame(s) {bad} are outside the clip (0..{n - 1})")
    idx = [f % n for f in idx]
    if not idx:
        raise UnknownFrameError("no frame to score")
    p, r = p[idx], r[idx]

    per_frame: dict[str, dict[str, np.ndarray]] = {}
    per_structure: dict[str, dict[str, float | int]] = {}
    for name, values in resolve_structures(structures).items():
        mp, mr = _member(p, values), _member(r, values)
        scores = _binary_scores(mp, mr, sp)
        per_frame[name] = scores
        has_p, has_r = mp.any(axis=(1, 2)), mr.any(axis=(1, 2))
        per_structure[name] = {
            **{m: _nanmean(scores[m]) for m in METRICS},
            "n_frames": len(idx),
            "n_both_empty": int(np.sum(~has_p & ~has_r)),
            "n_one_empty": int(np.sum(has_p != has_r)),
        }
    mean = {m: _nanmean(np.array([s[m] for s in per_structure.values()], dtype=float)) for m in METRICS}
    return {
        "unit": "mm" if sp else "px",
        "spacing": sp,
        "frames": idx,
        "structures": list(per_frame),
        "per_frame": per_frame,
        "per_structure": per_structure,
        "mean": mean,
    }


def _binary_scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] | None) -> dict[str, np.ndarray]:
    """Per-frame scores of two ``F×H×W`` bool masks; see the module docstring for empty masks."""
    n = pred.shape[0]
    iou = np.empty(n)
    for start in range(0, n, _CHUNK):
        tp = torch.from_numpy(pred[start:start + _CHUNK, None])
        tr = torch.from_numpy(ref[start:start + _CHUNK, None])
        iou[start:start + _CHUNK] = compute_iou(tp, tr, include_background=True, ignore_empty=False)[:, 0].numpy()
    hd95, assd = np.full(n, np.nan), np.full(n, np.nan)
    has_p, has_r = pred.any(axis=(1, 2)), ref.any(axis=(1, 2))
    hd95[~has_p & ~has_r] = 0.0
    assd[~has_p & ~has_r] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's internal use of a deprecated argument
        for i in np.flatnonzero(has_p & has_r):
            box = _union_box(pred[i], ref[i])
            _, (d_pr, d_rp), _ = get_edge_surface_distance(
                torch.from_numpy(pred[i][box]), torch.from_numpy(ref[i][box]), spacing=spacing, symmetric=True)
            hd95[i] = max(float(torch.quantile(d_pr, 0.95)), float(torch.quantile(d_rp, 0.95)))
            assd[i] = float(torch.cat((d_pr, d_rp)).mean())
    return {"dice": 2 * iou / (1 + iou), "iou": iou, "hd95": hd95, "assd": assd}


def _member(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """``labels ∈ values`` as a bool array (faster than :func:`numpy.isin` for a few values)."""
    mask = labels == values[0]
    for v in values[1:]:
        mask |= labels == v
    return mask


def _union_box(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of ``a | b`` grown by one pixel (clipped to the frame).

    Cropping to it leaves every edge and distance unchanged and spares MONAI's own cropping of the
    full frame, which dominates the cost for small structures.
    """
    union = a | b
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    return (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN (without a warning) when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
