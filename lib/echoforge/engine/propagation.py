"""Optical-flow propagation of drawn labels, and the simple ways to fill the undrawn frames.

* :func:`copy_nearest`: every frame takes the labels of the drawn frame nearest in time;
* :func:`flow_propagation`: the drawn labels are carried frame by frame with OpenCV's Farneback
  optical flow, in both directions from each drawn frame, and every frame takes the propagation
  from its nearest drawn frame.

Both return T×H×W uint8 labels with the drawn frames exactly as drawn; they are the baselines of
``benchmarks/bench_new_scanner.py``. :func:`flow_prior` is the soft version that the network can
take as an extra input (``use_flow_prior``): it refines the flow's propagation instead of starting
from nothing on a video unlike its training data.
"""

from __future__ import annotations

import cv2
import numpy as np

from echoforge.errors import EmptyLabelError
from echoforge.video import EchoVideo


def nearest_drawn(n_frames: int, drawn: tuple[int, ...] | list[int]) -> np.ndarray:
    """For each frame, the drawn frame nearest in time (the earlier one on ties)."""
    t = np.arange(n_frames)[:, None]
    d = np.asarray(sorted(drawn))[None, :]
    return d[0, np.argmin(np.abs(t - d), axis=1)]


class PairFlows:
    """Farneback flows between consecutive frames of ``T×H×W`` frames (float in [0, 1] or uint8),
    computed when first asked for and kept: ``back(t, direction)`` maps frame ``t`` onto frame
    ``t - direction`` (what warps that frame's labels onto frame ``t``)."""

    def __init__(self, frames: np.ndarray):
        self.frames = [np.clip(f * 255.0 if f.dtype.kind == "f" else f, 0, 255).astype(np.uint8) for f in frames]
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def back(self, t: int, direction: int) -> np.ndarray:
        key = (t, direction)
        if key not in self._cache:
            self._cache[key] = cv2.calcOpticalFlowFarneback(
                self.frames[t], self.frames[t - direction], None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                poly_n=5, poly_sigma=1.2, flags=0)
        return self._cache[key]


def flow_prior(frames: np.ndarray, drawn: dict[int, np.ndarray], n_classes: int,
               flows: PairFlows | None = None) -> np.ndarray:
    """Soft drawn masks carried by optical flow to every frame from its nearest drawn frame.

    Args:
        frames: T×H×W frames. drawn: frame index → H×W class map. n_classes: classes C.
        flows: the consecutive-frame flows of ``frames`` (to share them between several calls).

    Returns:
        T×C×H×W float32 class probabilities (one-hot on the drawn frames), warped bilinearly.
    """
    if not drawn:
        raise EmptyLabelError("propagation needs at least one drawn frame")
    n, (h, w) = len(frames), frames.shape[-2:]
    flows = flows or PairFlows(frames)
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    nearest = nearest_drawn(n, list(drawn))
    out = np.empty((n, n_classes, h, w), np.float32)
    eye = np.eye(n_classes, dtype=np.float32)
    for r, classes in drawn.items():
        start = eye[np.clip(classes, 0, n_classes - 1)]  # H×W×C
        out[r] = start.transpose(2, 0, 1)
        for direction in (1, -1):
            probs, t = start, r + direction
            while 0 <= t < n and nearest[t] == r:
                flow = flows.back(t, direction)
                warped = [cv2.remap(np.ascontiguousarray(probs[..., c:c + 4]), grid_x + flow[..., 0],
                                    grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                          for c in range(0, n_classes, 4)]  # remap takes at most 4 channels
                probs = np.concatenate([p[..., None] if p.ndim == 2 else p for p in warped], axis=-1)
                out[t] = probs.transpose(2, 0, 1)
                t += direction
    return out


def _drawn(video: EchoVideo) -> tuple[int, ...]:
    if not video.has_labels:
        raise EmptyLabelError("propagation needs at least one drawn frame", video.source or None)
    return tuple(video.annotated)


def copy_nearest(video: EchoVideo) -> np.ndarray:
    """Labels of the nearest drawn frame on every frame."""
    drawn = _drawn(video)
    return video.labels[nearest_drawn(video.n_frames, drawn)].copy()


def flow_propagation(video: EchoVideo, n_classes: int = 4) -> np.ndarray:
    """Drawn labels carried frame to frame by optical flow (soft one-hot warped bilinearly, argmax at the end)."""
    drawn = _drawn(video)
    prior = flow_prior(video.frames, {t: video.labels[t] for t in drawn}, n_classes)
    out = prior.argmax(axis=1).astype(np.uint8)
    for t in drawn:
        out[t] = video.labels[t]
    return out
