"""Inference: stream frames one at a time with a bounded memory, or segment whole videos.

:class:`SegmentationCore` owns the memory (reference frames + recent predictions) and runs frames
in chunks: the encoder and decoder are batched over a chunk, TSF walks through it frame by frame.
A chunk of one frame is streaming (a live scanner, Slicer's frame-by-frame display); a chunk of
the whole clip is clip inference. Both go through the same memory and give the same masks.

:func:`segment_video` is what users call: it letterboxes the video to the network's square input
(padding at the bottom/right, so the apex stays at the top as in training), runs the core with
the clinician's annotated frames as references, maps the result back to the original size and
keeps the annotated frames exactly as drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echoforge import labels as L
from echoforge.engine.clips import Letterbox, to_classes
from echoforge.errors import InvalidVideoError
from echoforge.nets.echoforge_net import EchoForgeNet, Memory, downsample_labels, pad_to_stride, unpad
from echoforge.video import EchoVideo


class SegmentationCore:
    """Frame-by-frame (or chunked) segmentation with a bounded memory.

    Args:
        model: an :class:`EchoForgeNet` in eval mode.
        references: frame index → (frame H×W float in [0, 1], class map H×W int) at the network's
            input size; these frames stay in memory for the whole video.
        device: where to run.
        amp: float16 autocast when running on CUDA.

    Example::

        core = SegmentationCore(model)
        for frame in scanner:                  # H×W float frames at the input size
            probs = core.step(frame)           # C×H×W
    """

    def __init__(self, model: EchoForgeNet, references: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                 device: str | torch.device = "cpu", amp: bool = True):
        self.model = model
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"  # float16 autocast on CUDA only
        self.t = 0
        refs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for index, (frame, classes) in sorted((references or {}).items()):
                frame_t = torch.as_tensor(frame, dtype=torch.float32, device=self.device)[None, None]
                padded, pad = pad_to_stride(frame_t)
                x16 = model.encode(padded).x16
                mask = torch.as_tensor(classes, device=self.device)[None]
                mask16 = downsample_labels(F.pad(mask, pad), model.config.n_classes, x16.shape[-2:])
                refs[int(index)] = (x16, mask16, torch.ones(1, device=self.device))
        self.memory = Memory(model.config.memory_size, refs)

    @torch.no_grad()
    def run(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Segment the next ``T×H×W`` frames as one chunk; returns ``T×C×H×W`` probabilities."""
        x = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        t, h, w = x.shape
        padded, pad = pad_to_stride(x[:, None])
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            enc = self.model.encode(padded)
            logits = []
            for i in range(t):
                logits.append(self.model.step(self.t, enc.x16[i:i + 1], enc.f4[i:i + 1], enc.f8[i:i + 1],
                                              self.memory)[0])
                self.t += 1
        return unpad(torch.cat(logits), pad).float().softmax(dim=1)

    def step(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Segment one ``H×W`` frame; returns ``C×H×W`` probabilities."""
        return self.run(torch.as_tensor(frame)[None])[0]


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
                  device: str | torch.device = "cpu") -> Segmentation:
    """Segment every frame of ``video``.

    Args:
        model: trained network (eval mode): EchoForge, or a frame-by-frame baseline.
        video: the video; when ``use_annotations`` and it carries labels, its annotated frames are
            the memory references and are returned exactly as drawn ("segment the rest").
        chunk: frames per chunk (``1`` = streaming; ``None`` = the whole video at once).
    """
    import time

    if video.n_frames < 1:
        raise InvalidVideoError("the video has no frames", video.source or None)
    started = time.perf_counter()
    config = model.config
    box = Letterbox.fit(video.shape, tuple(config.input_size))
    frames = np.stack([box.forward(f) for f in video.frames])
    references = {}
    annotated = tuple(video.annotated) if use_annotations and video.has_labels else ()
    for t in annotated:
        references[t] = (frames[t], to_classes(box.forward(video.labels[t], nearest=True), config.mode))
    step = video.n_frames if not chunk else chunk
    core = SegmentationCore(model, references, device) if isinstance(model, EchoForgeNet) else None
    labels = np.empty(video.frames.shape, dtype=np.uint8)
    kept = []
    for i in range(0, video.n_frames, step):
        if core is not None:
            probs = core.run(frames[i:i + step])
        else:  # frame-by-frame baselines: no memory; drawn frames are only kept as drawn
            with torch.no_grad():
                probs = model(torch.as_tensor(frames[i:i + step], device=device)[None])["logits"][0].softmax(1)
        probs = probs.cpu()
        # labels at the video's size from interpolated probabilities, one chunk at a time (bounded memory)
        labels[i:i + step] = classes_to_labels(class_argmax(box.backward(probs)).numpy(), config.mode)
        kept.append(probs.numpy().astype(np.float16))
    for t in annotated:  # the clinician's frames, exactly as drawn
        labels[t] = video.labels[t]
    return Segmentation(labels, np.concatenate(kept), annotated, time.perf_counter() - started)
