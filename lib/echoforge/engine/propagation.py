"""The simple ways to fill the undrawn frames that a user could pick instead of the network.

* :func:`copy_nearest`: every frame takes the labels of the drawn frame nearest in time;
* :func:`flow_propagation`: the drawn labels are carried frame by frame with OpenCV's Farneback
  optical flow, in both directions from each drawn frame, and every frame takes the propagation
  from its nearest drawn frame.

Both return T×H×W uint8 labels with the drawn frames exactly as drawn; they are the baselines of
``benchmarks/bench_new_scanner.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

from echoforge.errors import EmptyLabelError
from echoforge.video import EchoVideo


def _drawn(video: EchoVideo) -> tuple[int, ...]:
    if not video.has_labels:
        raise EmptyLabelError("propagation needs at least one drawn frame", video.source or None)
    return tuple(video.annotated)


def nearest_drawn(n_frames: int, drawn: tuple[int, ...]) -> np.ndarray:
    """For each frame, the drawn frame nearest in time (the earlier one on ties)."""
    t = np.arange(n_frames)[:, None]
    d = np.asarray(sorted(drawn))[None, :]
    return d[0, np.argmin(np.abs(t - d), axis=1)]


def copy_nearest(video: EchoVideo) -> np.ndarray:
    """Labels of the nearest drawn frame on every frame."""
    drawn = _drawn(video)
    return video.labels[nearest_drawn(video.n_frames, drawn)].copy()


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense Farneback flow from grey frame ``b`` back to ``a`` (for warping ``a``'s labels onto ``b``)."""
    to_u8 = [np.clip(f * 255.0 if f.dtype.kind == "f" else f, 0, 255).astype(np.uint8) for f in (b, a)]
    return cv2.calcOpticalFlowFarneback(to_u8[0], to_u8[1], None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def flow_propagation(video: EchoVideo, n_classes: int = 4) -> np.ndarray:
    """Drawn labels carried frame to frame by optical flow (soft one-hot warped bilinearly, argmax at the end)."""
    drawn = _drawn(video)
    n, (h, w) = video.n_frames, video.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    nearest = nearest_drawn(n, drawn)
    out = np.empty((n, h, w), np.uint8)
    for r in drawn:
        out[r] = video.labels[r]
        for direction in (1, -1):
            probs = np.eye(n_classes, dtype=np.float32)[np.clip(video.labels[r], 0, n_classes - 1)]
            t = r + direction
            while 0 <= t < n and nearest[t] == r:
                flow = _flow(video.frames[t - direction], video.frames[t])
                probs = cv2.remap(probs, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
                out[t] = probs.argmax(axis=-1)
                t += direction
    return out
