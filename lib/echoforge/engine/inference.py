"""Inference: stream frames one at a time with a bounded memory, or segment whole videos.

:class:`SegmentationCore` owns the memory (reference frames + recent predictions) and runs frames
in chunks: the encoder is batched over a chunk, the memory walk goes through it frame by frame.
A chunk of one frame is streaming (a live scanner, Slicer's frame-by-frame display); a chunk of
the whole clip is clip inference. Both go through the same memory and give the same masks. A
drawn frame may join the memory at any time (``step(frame, mask)``), as a clinician draws while
the video plays.

:func:`segment_video` is what users call: it letterboxes the video to the network's square input
(padding at the bottom/right, so the apex stays at the top as in training), runs the core with
the clinician's annotated frames as references, maps the result back to the original size and
keeps the annotated frames exactly as drawn. With drawn frames ("segment the rest") the whole
video is known, so it propagates in both directions and fuses them (:func:`fuse_directions`):
frames before the first drawn frame get the same propagation as frames after it. The video is cut
into pieces that walk both ways as one batch (:func:`propagate_both_ways`), each with its own
memory: 36 network steps for a 200-frame video instead of 200 (the two whole walks as one batch),
with their masks. The result is then blended with the drawn masks carried by optical flow both
ways (``prior_blend``): on held-out scanner styles the blend beats both the network and the flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echoforge import labels as L
from echoforge.engine.clips import Letterbox, to_classes
from echoforge.engine.precision import autocast, autocast_dtype
from echoforge.engine.propagation import distance_weight, flow_priors
from echoforge.errors import EmptyLabelError, InvalidVideoError
from echoforge.nets.echoforge_net import (
    EchoForgeNet,
    EncodedFrames,
    Memory,
    pad_to_stride,
    unpad,
)
from echoforge.video import EchoVideo

#: temporal scale (frames) over which a drawn frame's propagation loses half its weight in the fusion
FUSION_FRAMES = 10.0
#: weight of the drawn masks carried by optical flow both ways in the final probabilities of "segment the
#: rest" (:func:`segment_video`), chosen on videos of the training families: the network's output and
#: the flow's average better than either (``benchmarks/results/new_scanner.md``)
PRIOR_BLEND = 0.8


class SegmentationCore:
    """Frame-by-frame (or chunked) segmentation with a bounded memory.

    Args:
        model: an :class:`EchoForgeNet` in eval mode.
        references: frame index → (frame H×W float in [0, 1], class map H×W int) at the network's
            input size; these frames stay in memory for the whole video.
        device: where to run.
        amp: mixed precision (:mod:`echoforge.engine.precision`): float16 on CUDA, bfloat16 on a CPU
            that computes it natively; float32 otherwise or when ``False``.

    Example::

        core = SegmentationCore(model)
        for frame in scanner:                  # H×W float frames at the input size
            probs = core.step(frame)           # C×H×W
        probs = core.step(frame, mask=drawn)   # a drawn frame joins the memory and comes back as drawn
    """

    def __init__(self, model: EchoForgeNet, references: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                 device: str | torch.device = "cpu", amp: bool = True):
        self.model = model
        self.device = torch.device(device)
        self.dtype = autocast_dtype(self.device, amp)
        self.t = 0
        self.memory = Memory(model.config.memory_size)
        for index, (frame, classes) in sorted((references or {}).items()):
            self.add_reference(index, frame, classes)

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, frames: np.ndarray | torch.Tensor) -> tuple[EncodedFrames, tuple[int, int, int, int]]:
        """``T×H×W`` frames → their :class:`EncodedFrames` (padded grid) and the padding."""
        x = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        padded, pad = pad_to_stride(x[:, None])
        with self._autocast():
            return self.model.encode(padded), pad

    @torch.no_grad()
    def add_reference(self, index: int, frame: np.ndarray | torch.Tensor, classes: np.ndarray | torch.Tensor) -> None:
        """Frame ``index`` (``H×W`` at the input size) with its drawn ``classes`` joins the memory."""
        enc, pad = self.encode(torch.as_tensor(frame)[None])
        mask = F.pad(torch.as_tensor(classes, device=self.device)[None], pad)
        with self._autocast():
            self.memory.add_reference(index, self.model.reference(enc, mask))

    @torch.no_grad()
    def run_encoded(self, enc: EncodedFrames, pad: tuple[int, int, int, int], indices: list[int],
                    prior: torch.Tensor | None = None) -> torch.Tensor:
        """Segment encoded frames (``enc[k]`` is frame ``indices[k]``) in the order given; returns
        ``len(indices)×C×H×W`` probabilities (a reference frame returns its drawn mask). ``prior``:
        the frames' flow priors (``len(indices)×C×H×W`` at the input size), for a network that takes one."""
        probs = []
        if prior is not None:
            prior = F.pad(prior.to(self.device), pad)
        with self._autocast():
            for k, t in enumerate(indices):
                logits = self.model.step(t, enc[k:k + 1], self.memory, None if prior is None else prior[k:k + 1])[0]
                reference = self.memory.reference_at(t)
                probs.append(reference.probs if reference is not None else logits.float().softmax(dim=1))
        return unpad(torch.cat(probs), pad).float()

    def run(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Segment the next ``T×H×W`` frames as one chunk; returns ``T×C×H×W`` probabilities."""
        enc, pad = self.encode(frames)
        indices = list(range(self.t, self.t + enc.x16.shape[0]))
        self.t += len(indices)
        return self.run_encoded(enc, pad, indices)

    def step(self, frame: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """Segment one ``H×W`` frame; returns ``C×H×W`` probabilities. With ``mask`` (``H×W`` classes)
        the frame is a drawn frame: it joins the memory as a reference and comes back as drawn."""
        if mask is not None:
            self.add_reference(self.t, frame, mask)
        return self.run(torch.as_tensor(frame)[None])[0]


#: frames each parallel piece of "segment the rest" keeps (:func:`propagate_both_ways`)
PIECE_FRAMES = 32
#: frames a piece walks before the ones it keeps, so that its memory's recent entries come from its own walk
WARMUP_FRAMES = 4


def walk_windows(n_frames: int, piece: int = PIECE_FRAMES, warmup: int = WARMUP_FRAMES
                 ) -> list[tuple[list[int], range]]:
    """The walks of :func:`propagate_both_ways`: ``(order, kept frames)`` for each piece and direction.

    The video is cut into pieces of ``piece`` frames. Each piece is walked forwards from ``warmup``
    frames before it and backwards from ``warmup`` frames after it (less at the ends of the video);
    every walk has the same length, ``piece + warmup``, so that all of them go as one batch. A video
    no longer than that is one piece: the plain forward and backward walks over the whole video.
    """
    length = piece + warmup
    if n_frames <= length:
        order = list(range(n_frames))
        return [(order, range(n_frames)), (order[::-1], range(n_frames))]
    walks = []
    for start in range(0, n_frames, piece):
        stop = min(start + piece, n_frames)
        first = min(max(start - warmup, 0), n_frames - length)  # forwards: warm up on the frames before
        walks.append((list(range(first, first + length)), range(start, stop)))
        last = max(min(stop + warmup, n_frames), length)  # backwards: warm up on the frames after
        walks.append((list(range(last - 1, last - length - 1, -1)), range(start, stop)))
    return walks


@torch.no_grad()
def propagate_both_ways(core: SegmentationCore, enc: EncodedFrames, pad: tuple[int, int, int, int],
                        prior: torch.Tensor | None = None, piece: int | None = PIECE_FRAMES,
                        warmup: int = WARMUP_FRAMES, max_batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward and the backward propagation of a whole encoded video from ``core``'s references.

    The video is cut into pieces (:func:`walk_windows`) walked in both directions as one batch, each
    walk with its own memory (the references plus its recent predictions): a 200-frame video takes
    36 network steps instead of 200. A piece's memory starts from the references alone, as the
    first frame of a video does, and ``warmup`` frames later holds only predictions of its own walk.
    ``piece=None`` walks the whole video in each direction (two walks). At most ``max_batch`` walks
    go at once (bounded memory on long cines).

    Returns:
        forward and backward ``T×C×H×W`` probabilities (the drawn frames as drawn).
    """
    n, model = enc.x16.shape[0], core.model
    max_batch += max_batch % 2  # both directions of a piece in the same group
    walks = walk_windows(n, piece or n, 0 if piece is None else warmup)
    if prior is not None:
        prior = F.pad(prior.to(core.device), pad)
    out = [torch.empty(0), torch.empty(0)]
    for group in range(0, len(walks), max_batch):
        part = walks[group:group + max_batch]
        memories = [Memory(core.memory.size, core.memory.references) for _ in part]
        with core._autocast():
            logits = model.walk_together([enc] * len(part), [order for order, _ in part], memories,
                                         None if prior is None else [prior] * len(part))
        for i, ((order, kept), clip_logits) in enumerate(zip(part, logits, strict=True)):
            direction = (group + i) % 2  # walks alternate forwards, backwards
            if not out[direction].numel():
                out[direction] = clip_logits.new_empty(n, *clip_logits.shape[1:])
            steps = [k for k, t in enumerate(order) if t in kept]
            out[direction][[order[k] for k in steps]] = clip_logits[steps]
    result = []
    for logits in out:
        probs = logits.float().softmax(dim=1)
        for t, reference in core.memory.references.items():
            probs[t] = reference.probs[0].float()
        result.append(unpad(probs, pad))
    return result[0], result[1]


@dataclass
class Segmentation:
    """The result of :func:`segment_video`: CAMUS labels for every frame at the video's size.

    ``probabilities`` stay at the network's (letterboxed) input resolution: they serve confidence and
    uncertainty scores, and full-size copies of every class for long cines would cost hundreds of MB.
    """

    labels: np.ndarray  # T×H×W uint8, the video's size
    probabilities: np.ndarray  # T×C×h×w float16, network classes at the input size
    annotated: tuple[int, ...]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def confidence(self) -> np.ndarray:
        """Per-frame mean max-probability (a simple certainty score per frame)."""
        return self.probabilities.astype(np.float32).max(axis=1).mean(axis=(1, 2))


def class_argmax(probs: torch.Tensor) -> torch.Tensor:
    """``N×C×H×W`` → ``N×H×W`` uint8 index of the largest class (ties → the lower index).

    A running comparison over the few classes: on the CPU, ``argmax(dim=1)`` over a small channel
    axis of large frames is an order of magnitude slower.
    """
    best = probs[:, 0]
    index = torch.zeros(best.shape, dtype=torch.uint8)
    for c in range(1, probs.shape[1]):
        better = probs[:, c] > best
        best = torch.where(better, probs[:, c], best)
        index[better] = c
    return index


def classes_to_labels(classes: np.ndarray, mode: str) -> np.ndarray:
    return (classes == 1).astype(np.uint8) * L.LV if mode == "lv" else classes.astype(np.uint8)


def segment_video(model: torch.nn.Module, video: EchoVideo, use_annotations: bool = True, chunk: int | None = 16,
                  device: str | torch.device = "cpu", bidirectional: bool = True,
                  piece: int | None = PIECE_FRAMES, amp: bool = True, prior_blend: float = PRIOR_BLEND
                  ) -> Segmentation:
    """Segment every frame of ``video``.

    Args:
        model: trained network (eval mode): EchoForge, or a frame-by-frame baseline.
        video: the video; when ``use_annotations`` and it carries labels, its annotated frames are
            the memory references and are returned exactly as drawn ("segment the rest").
        chunk: frames per encoder batch (``1`` = streaming; ``None`` = the whole video at once).
        bidirectional: with drawn frames, propagate forwards and backwards and fuse
            (:func:`fuse_directions`); ``extra`` then holds each frame's ``disagreement`` between the
            two directions and ``next_frame``, the frame where the propagation is least certain. A
            network with ``use_flow_prior`` gets the drawn masks carried by optical flow too.
        piece: with drawn frames, the frames of each piece walked in parallel
            (:func:`propagate_both_ways`); ``None`` walks the whole video in each direction.
        amp: mixed precision where the hardware has it (see :class:`SegmentationCore`).
        prior_blend: with drawn frames and ``bidirectional``, the result is this much the drawn masks
            carried by optical flow both ways (:func:`~echoforge.engine.propagation.flow_prior` with
            ``both_ways``) and ``1 - prior_blend`` the network's; ``0`` is the network alone.

    ``extra["warnings"]`` lists what looks wrong in the drawn frames (:func:`check_drawn_frames`).

    Raises:
        EmptyLabelError: a drawn frame holds no LV cavity.
        ValueError: ``prior_blend`` outside [0, 1].
    """
    import time

    if not 0.0 <= prior_blend <= 1.0:
        raise ValueError(f"prior_blend must lie between 0 and 1, not {prior_blend}")
    if video.n_frames < 1:
        raise InvalidVideoError("the video has no frames", video.source or None)
    started = time.perf_counter()
    config = model.config
    box = Letterbox.fit(video.shape, tuple(config.input_size))
    frames = np.stack([box.forward(f) for f in video.frames])
    annotated = tuple(video.annotated) if use_annotations and video.has_labels else ()
    references = {t: (frames[t], to_classes(box.forward(video.labels[t], nearest=True), config.mode))
                  for t in annotated}
    step = video.n_frames if not chunk else chunk
    extra: dict[str, Any] = {"warnings": check_drawn_frames(video) if annotated else []}
    if not isinstance(model, EchoForgeNet):  # frame-by-frame baselines: no memory; drawn frames kept as drawn
        with torch.no_grad():
            probs = torch.cat([model(torch.as_tensor(frames[i:i + step], device=device)[None])["logits"][0]
                               .softmax(1).cpu() for i in range(0, video.n_frames, step)])
    elif annotated and bidirectional:
        prior, carried = None, None
        if config.use_flow_prior or prior_blend > 0.0:  # the network's prior from the nearest anchor, as in training
            prior, carried = (None if p is None else torch.from_numpy(p) for p in flow_priors(
                frames, {t: c for t, (_, c) in references.items()}, config.n_classes,
                which=(config.use_flow_prior, prior_blend > 0.0)))
        core = SegmentationCore(model, references, device, amp)
        parts = [core.encode(frames[i:i + step]) for i in range(0, video.n_frames, step)]
        enc, pad = EncodedFrames.cat([p[0] for p in parts]), parts[0][1]
        forward, backward = (p.cpu() for p in propagate_both_ways(core, enc, pad, prior, piece))
        probs, disagreement = fuse_directions(forward, backward, annotated)
        if carried is not None:
            probs = probs.mul_(1.0 - prior_blend).add_(carried, alpha=prior_blend)
        extra["disagreement"] = [round(float(d), 4) for d in disagreement]
        extra["next_frame"] = next_frame_to_draw(disagreement, annotated)
    else:  # automatic, or forward only (streaming order, no flow prior: the future is not known)
        core = SegmentationCore(model, references, device, amp)
        probs = torch.cat([core.run(frames[i:i + step]).cpu() for i in range(0, video.n_frames, step)])
    labels = np.empty(video.frames.shape, dtype=np.uint8)
    for i in range(0, video.n_frames, step):
        # labels at the video's size from interpolated probabilities, one chunk at a time (bounded memory)
        labels[i:i + step] = classes_to_labels(class_argmax(box.backward(probs[i:i + step])).numpy(), config.mode)
    for t in annotated:  # the clinician's frames, exactly as drawn
        labels[t] = video.labels[t]
    return Segmentation(labels, probs.half().numpy(), annotated, time.perf_counter() - started, extra)


def check_drawn_frames(video: EchoVideo) -> list[str]:
    """What to tell the clinician about the drawn frames before "segment the rest".

    A drawn frame without an LV cavity is refused (:class:`EmptyLabelError`): the LV is what every
    measurement needs, and an empty drawing would be propagated as "no heart". Warnings (the video is
    still segmented): a single drawn frame; a structure drawn on some frames but not others (it is
    not propagated from the frames that lack it); two drawn frames that disagree — consecutive drawn
    frames whose LV outlines barely overlap (Dice < 0.3) or whose LV areas differ more than four-fold
    (more than any heart beat), which usually means a frame drawn on the wrong structure or video.
    """
    drawn = sorted(video.annotated)
    warnings: list[str] = []
    lv = {t: video.labels[t] == L.LV for t in drawn}
    empty = [t for t in drawn if not lv[t].any()]
    if empty:
        raise EmptyLabelError(f"drawn frame{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} "
                              "hold no LV cavity (label 1): draw the LV there, or leave the frame undrawn",
                              video.source or None)
    if len(drawn) == 1:
        warnings.append(f"only frame {drawn[0]} is drawn: every other frame is propagated from it alone")
    for label, name in ((L.MYOCARDIUM, "myocardium"), (L.LA, "left atrium")):
        missing = [t for t in drawn if not (video.labels[t] == label).any()]
        if missing and len(missing) < len(drawn):
            warnings.append(f"the {name} is drawn on some frames but not on frame"
                            f"{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}: near "
                            f"{'them' if len(missing) > 1 else 'it'} it comes out smaller or missing")
    for a, b in zip(drawn, drawn[1:], strict=False):
        overlap = 2.0 * float((lv[a] & lv[b]).sum()) / float(lv[a].sum() + lv[b].sum())
        ratio = float(lv[a].sum()) / float(lv[b].sum())
        if overlap < 0.3 or not 0.25 <= ratio <= 4.0:
            warnings.append(f"drawn frames {a} and {b} disagree: their LV cavities overlap with a Dice of "
                            f"{overlap:.2f} and their areas differ {max(ratio, 1 / ratio):.1f}-fold; check that "
                            "both are drawn on the LV of this video")
    return warnings


def _distance_to_drawn(n_frames: int, drawn: tuple[int, ...], backward: bool) -> np.ndarray:
    """Frames from each frame back to the nearest drawn frame at or before it (``backward``: at or after
    it); ``n_frames`` where there is none on that side."""
    distance = np.full(n_frames, float(n_frames))
    for r in drawn:
        t = np.arange(n_frames)
        d = (r - t) if backward else (t - r)
        distance = np.where(d >= 0, np.minimum(distance, d), distance)
    return distance


def fuse_directions(forward: torch.Tensor, backward: torch.Tensor, drawn: tuple[int, ...]
                    ) -> tuple[torch.Tensor, np.ndarray]:
    """Fuse forward and backward propagation (``T×C×H×W`` probabilities each).

    Each direction's weight per pixel is its confidence (largest class probability) times
    ``1 / (1 + d / FUSION_FRAMES)``, with ``d`` the frames since the last drawn frame it passed (the
    whole clip length where it passed none). Returns the fused probabilities and, per frame, the
    disagreement of the two directions: half the mean absolute difference of their probabilities
    over the pixels where either sees a heart structure (0 = identical, 1 = opposite).
    """
    n = forward.shape[0]
    g_f = torch.from_numpy(distance_weight(_distance_to_drawn(n, drawn, False), FUSION_FRAMES)).float()
    g_b = torch.from_numpy(distance_weight(_distance_to_drawn(n, drawn, True), FUSION_FRAMES)).float()
    w_f = forward.amax(dim=1, keepdim=True) * g_f[:, None, None, None]
    w_b = backward.amax(dim=1, keepdim=True) * g_b[:, None, None, None]
    fused = (w_f * forward + w_b * backward) / (w_f + w_b).clamp(min=1e-6)
    heart = ((1.0 - forward[:, 0]) > 0.5) | ((1.0 - backward[:, 0]) > 0.5)
    difference = 0.5 * (forward - backward).abs().sum(dim=1)
    counts = heart.sum(dim=(1, 2)).clamp(min=1)
    disagreement = ((difference * heart).sum(dim=(1, 2)) / counts).numpy()
    return fused, disagreement


def next_frame_to_draw(uncertainty: np.ndarray, drawn: tuple[int, ...], gap: int = 2) -> int | None:
    """The frame with the largest ``uncertainty`` at least ``gap`` frames from every drawn frame."""
    candidates = [t for t in range(len(uncertainty)) if all(abs(t - r) > gap for r in drawn)]
    if not candidates:
        return None
    return int(max(candidates, key=lambda t: (uncertainty[t], -t)))
