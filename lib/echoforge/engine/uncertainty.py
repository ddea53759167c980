"""Which videos — and which of their frames — a clinician should annotate next.

Two signals from one automatic segmentation of the video:

* **predictive entropy** per frame: the mean normalised entropy (0–1) of the class probabilities
  over the pixels where the network sees any heart structure (foreground probability > 0.05);
* **temporal inconsistency**: the LV area should change smoothly over the cycle; the mean absolute
  second difference of the area curve, relative to the mean area, measures jitter.

``score = mean frame entropy + 0.5 · inconsistency`` (both about 0–1; higher = more uncertain).
Suggested frames: ED and ES detected on the predicted LV area curve, plus the most uncertain other
frame — the frames whose annotation teaches the most.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echoforge import labels as L
from echoforge.engine.inference import Segmentation

INCONSISTENCY_WEIGHT = 0.5


def frame_entropy(probabilities: np.ndarray) -> np.ndarray:
    """``T×C×H×W`` probabilities → ``T`` mean normalised entropy over the heart region of each frame."""
    p = np.clip(probabilities.astype(np.float32), 1e-6, 1.0)
    entropy = -(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])  # T×H×W in [0, 1]
    region = 1.0 - p[:, 0] > 0.05
    counts = region.sum(axis=(1, 2))
    return np.where(counts > 0, (entropy * region).sum(axis=(1, 2)) / np.maximum(counts, 1), 1.0)


def video_uncertainty(seg: Segmentation) -> dict[str, Any]:
    """Uncertainty score of a segmented video and the frames worth annotating."""
    from echoforge.core.curves import detect_ed_es, temporal_smoothness

    entropy = frame_entropy(seg.probabilities)
    areas = (seg.labels == L.LV).sum(axis=(1, 2)).astype(float)
    inconsistency = temporal_smoothness(areas) if areas.mean() > 0 and len(areas) >= 3 else 1.0
    inconsistency = float(inconsistency) if np.isfinite(inconsistency) else 1.0
    ed, es = detect_ed_es(areas) if areas.max() > 0 else (0, len(areas) - 1)
    order = [int(t) for t in np.argsort(-entropy) if int(t) not in (ed, es)]
    suggested = sorted({int(ed), int(es), *order[:1]})
    return {"score": round(float(entropy.mean() + INCONSISTENCY_WEIGHT * inconsistency), 5),
            "entropy": round(float(entropy.mean()), 5), "inconsistency": round(inconsistency, 5),
            "frame_entropy": [round(float(e), 4) for e in entropy], "ed": int(ed), "es": int(es),
            "most_uncertain_frame": order[0] if order else None, "suggested_frames": suggested}
