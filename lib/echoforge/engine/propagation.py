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

import os
from concurrent.futures import ThreadPoolExecutor

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
    """Farneback flows between frames of ``T×H×W`` frames (float in [0, 1] or uint8), computed when
    first asked for and kept: ``between(t, s)`` maps frame ``t`` onto frame ``s`` (what warps frame
    ``s``'s labels onto frame ``t``); ``back(t, direction)`` is ``between(t, t - direction)``."""

    def __init__(self, frames: np.ndarray):
        self.frames = [np.clip(f * 255.0 if f.dtype.kind == "f" else f, 0, 255).astype(np.uint8) for f in frames]
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def between(self, t: int, s: int) -> np.ndarray:
        if (t, s) not in self._cache:
            self._cache[(t, s)] = self._flow(t, s)
        return self._cache[(t, s)]

    def _flow(self, t: int, s: int) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(self.frames[t], self.frames[s], None, pyr_scale=0.5, levels=3,
                                            winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

    def back(self, t: int, direction: int) -> np.ndarray:
        return self.between(t, t - direction)

    def prefetch(self, pairs: list[tuple[int, int]], workers: int | None = None) -> None:
        """Compute the flows of ``pairs`` ((t, s) as in :meth:`between`) on ``workers`` threads (OpenCV
        runs one flow on one core and releases the GIL; default: up to 4, one per CPU)."""
        todo = [pair for pair in dict.fromkeys(pairs) if pair not in self._cache]
        workers = workers or min(4, os.cpu_count() or 1)
        if workers < 2 or len(todo) < 2:
            for t, s in todo:
                self.between(t, s)
            return
        with ThreadPoolExecutor(workers) as pool:
            for pair, flow in zip(todo, pool.map(lambda ts: self._flow(*ts), todo), strict=True):
                self._cache[pair] = flow


def similar_frames(frames: np.ndarray, drawn: list[int], min_gap: int = 6) -> dict[int, int]:
    """Frames of other heart beats that look like a drawn frame: frame → the drawn frame it resembles.

    A clip of several beats passes through the drawn frames' phases again; carrying a drawn mask
    there frame by frame accumulates the flow's drift over a whole beat, while the frame at the same
    phase of the next beat is only a small, direct flow away. A frame qualifies when it is at least
    ``min_gap`` frames from every drawn frame, is a local maximum (over ±3 frames) of its
    correlation with the drawn frame (frames blurred and reduced 4×), and correlates at least as
    well as the drawn frame's own neighbours 3 frames away do.
    """
    small = np.stack([cv2.resize(cv2.GaussianBlur(f.astype(np.float32), (0, 0), 1.5), None, fx=0.25, fy=0.25,
                                 interpolation=cv2.INTER_AREA) for f in frames])
    flat = small.reshape(len(small), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    flat = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6)
    n, anchors = len(frames), {}
    for r in drawn:
        corr = flat @ flat[r]
        neighbours = [corr[r + k] for k in (-3, 3) if 0 <= r + k < n]
        if not neighbours:
            continue
        threshold = min(neighbours)
        for t in range(n):
            window = corr[max(t - 3, 0):t + 4]
            far = all(abs(t - d) >= min_gap for d in drawn)
            if far and corr[t] >= threshold and corr[t] == window.max() and corr[t] > anchors.get(t, (None, -1))[1]:
                anchors[t] = (r, float(corr[t]))
    return {t: r for t, (r, _) in anchors.items()}


#: with ``both_ways``, the propagation from an anchor ``d`` frames away weighs ``1 / (1 + d / BOTH_WAYS_FRAMES)``
BOTH_WAYS_FRAMES = 10.0


def distance_weight(distance, scale: float = BOTH_WAYS_FRAMES):  # noqa: ANN001, ANN201 (numbers, arrays, tensors)
    """``1 / (1 + distance / scale)``: the weight of a propagation ``distance`` frames from where it started."""
    return 1.0 / (1.0 + distance / scale)


def flow_prior(frames: np.ndarray, drawn: dict[int, np.ndarray], n_classes: int,
               flows: PairFlows | None = None, across_beats: bool = True, both_ways: bool = False) -> np.ndarray:
    """Soft drawn masks carried by optical flow to every frame from its nearest anchor.

    The anchors are the drawn frames and, with ``across_beats``, the frames of other beats that look
    like one of them (:func:`similar_frames`), which get that drawn mask by one direct flow; every
    other frame is reached frame by frame from the anchor nearest in time, in both directions. With
    ``both_ways``, a frame between two anchors takes both propagations, the one from the anchor before
    it and the one from the anchor after it, each weighted by its distance (``BOTH_WAYS_FRAMES``):
    the drift of one long walk is averaged with the other's.

    Args:
        frames: T×H×W frames. drawn: frame index → H×W class map. n_classes: classes C.
        flows: the flows of ``frames`` (to share them between several calls).

    Returns:
        T×C×H×W float32 class probabilities (one-hot on the drawn frames), warped bilinearly.
    """
    nearest, both = flow_priors(frames, drawn, n_classes, flows, across_beats, (not both_ways, both_ways))
    return both if both_ways else nearest


def flow_priors(frames: np.ndarray, drawn: dict[int, np.ndarray], n_classes: int, flows: PairFlows | None = None,
                across_beats: bool = True, which: tuple[bool, bool] = (True, True)
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`flow_prior` from the nearest anchor and ``both_ways``, from one set of walks (the walk to
    the nearest anchor is the first part of the one to the next anchor); ``which`` says which of the
    two to compute (the other is ``None``)."""
    if not drawn:
        raise EmptyLabelError("propagation needs at least one drawn frame")
    n, (h, w) = len(frames), frames.shape[-2:]
    flows = flows or PairFlows(frames)
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    eye = np.eye(n_classes, dtype=np.float32)

    def warp(probs: np.ndarray, flow: np.ndarray) -> np.ndarray:  # H×W×C by a flow
        parts = [cv2.remap(np.ascontiguousarray(probs[..., c:c + 4]), grid_x + flow[..., 0], grid_y + flow[..., 1],
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                 for c in range(0, n_classes, 4)]  # remap takes at most 4 channels
        return np.concatenate([p[..., None] if p.ndim == 2 else p for p in parts], axis=-1)

    starts = {r: eye[np.clip(classes, 0, n_classes - 1)] for r, classes in drawn.items()}  # H×W×C
    similar = similar_frames(frames, sorted(drawn)) if across_beats else {}
    anchors = sorted({*starts, *similar})
    nearest = nearest_drawn(n, anchors)
    walks = []  # (anchor, direction, frames walked): up to the next anchor, or as far as it is the nearest
    for i, r in enumerate(anchors):
        for direction in (1, -1):
            j = i + direction
            end = anchors[j] if 0 <= j < len(anchors) else (n if direction > 0 else -1)
            span = range(r + direction, end, direction)
            walks.append((r, direction, span if which[1] else [t for t in span if nearest[t] == r]))
    flows.prefetch([*similar.items(), *((t, t - direction) for _, direction, span in walks for t in span)])
    for t, r in similar.items():
        starts[t] = warp(starts[r], flows.between(t, r))
    near = np.empty((n, n_classes, h, w), np.float32) if which[0] else None
    both = np.zeros((n, n_classes, h, w), np.float32) if which[1] else None
    weight = np.zeros(n, np.float32)
    for r, direction, span in walks:
        probs = starts[r]
        for t in span:
            probs = warp(probs, flows.back(t, direction))
            if near is not None and nearest[t] == r:
                near[t] = probs.transpose(2, 0, 1)
            if both is not None:
                g = distance_weight(abs(t - r))
                both[t] += g * probs.transpose(2, 0, 1)
                weight[t] += g
    if both is not None:
        weight[list(starts)] = 1.0  # no walk reaches an anchor: it is set below
        both /= weight[:, None, None, None]
    for prior in (p for p in (near, both) if p is not None):
        for r, start in starts.items():
            prior[r] = start.transpose(2, 0, 1)
    return near, both


def _drawn(video: EchoVideo) -> tuple[int, ...]:
    if not video.has_labels:
        raise EmptyLabelError("propagation needs at least one drawn frame", video.source or None)
    return tuple(video.annotated)


def copy_nearest(video: EchoVideo) -> np.ndarray:
    """Labels of the nearest drawn frame on every frame."""
    drawn = _drawn(video)
    return video.labels[nearest_drawn(video.n_frames, drawn)].copy()


def flow_propagation(video: EchoVideo, n_classes: int = 4, across_beats: bool = False,
                     both_ways: bool = False) -> np.ndarray:
    """Drawn labels carried frame to frame by optical flow (soft one-hot warped bilinearly, argmax at the
    end); ``across_beats`` also starts from the frames of other beats that look like a drawn frame, and
    ``both_ways`` averages the walks from the anchors before and after each frame (:func:`flow_prior`)."""
    drawn = _drawn(video)
    prior = flow_prior(video.frames, {t: video.labels[t] for t in drawn}, n_classes, across_beats=across_beats,
                       both_ways=both_ways)
    out = prior.argmax(axis=1).astype(np.uint8)
    for t in drawn:
        out[t] = video.labels[t]
    return out
