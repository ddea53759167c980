"""Training and evaluation clips: N frames of a video with the frames that are labelled.

A clip spans ED → ES when both are known (CAMUS half sequences, EchoNet's traced pair), otherwise
the annotated frames (a clinician may draw any frames), otherwise the whole video; ``N`` frames
(10 by default, as the paper) are sampled uniformly over the span, and every annotated frame inside
the span is part of the clip. Only annotated frames are labelled — ED/ES alone by default
(``labelled="ed-es"``), or every annotated frame (``"all"``, the oracle).

Videos are loaded by the data layer's readers (:func:`load_dataset`) and letterboxed once to the
network's square input (:class:`Letterbox`: scaled to fit, padded at the bottom/right, so the apex
stays at the top and shapes keep their proportions); clips keep frames as uint8 and are turned into
tensors per batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from echoforge import labels as L
from echoforge.errors import DatasetLayoutError, EmptyLabelError
from echoforge.video import EchoVideo

LAYOUTS = ("camus", "echonet", "nifti")
LABELLED_MODES = ("ed-es", "all")


def clip_indices(video: EchoVideo, n_frames: int = 10) -> list[int]:
    """``n_frames`` frame indices of ``video`` (see the module docstring); may repeat in short spans."""
    if video.ed is not None and video.es is not None and video.ed != video.es:
        start, stop = video.ed, video.es
    elif len(video.annotated) >= 2:
        start, stop = video.annotated[0], video.annotated[-1]
    elif len(video.annotated) == 1:
        half = n_frames // 2
        start = int(np.clip(video.annotated[0] - half, 0, max(video.n_frames - n_frames, 0)))
        stop = min(start + n_frames - 1, video.n_frames - 1)
    else:
        start, stop = 0, video.n_frames - 1
    idx = np.rint(np.linspace(start, stop, n_frames)).astype(int)
    lo, hi = min(start, stop), max(start, stop)
    for a in video.annotated:  # every annotated frame inside the span belongs to the clip
        if lo <= a <= hi and a not in idx:
            free = [k for k in range(n_frames) if idx[k] not in video.annotated]
            k = min(free, key=lambda k: abs(idx[k] - a)) if free else None
            if k is not None:
                idx[k] = a
    order = np.argsort(idx) if stop >= start else np.argsort(-idx)
    return [int(i) for i in idx[order]]


def restrict_labels(video: EchoVideo, labelled: str) -> EchoVideo:
    """Keep the labels of ED/ES only (``ed-es``) or of every annotated frame (``all``)."""
    if labelled not in LABELLED_MODES:
        raise ValueError(f"labelled must be one of {LABELLED_MODES}, got {labelled!r}")
    if labelled == "all" or not video.has_labels:
        return video
    keep = [f for f in (video.ed, video.es) if f is not None and f in video.annotated]
    if not keep:  # no ED/ES among the drawn frames: keep what was drawn
        return video
    return video.with_labels(video.labels, keep)


def to_classes(labels: np.ndarray, mode: str) -> np.ndarray:
    """CAMUS labels → the network's classes (``lv`` mode: 1 = LV cavity, 0 = everything else)."""
    return (labels == L.LV).astype(np.int64) if mode == "lv" else labels.astype(np.int64)


@dataclass
class Clip:
    """One training/evaluation clip (numpy, input size). ``reference`` holds full labels when known."""

    video_id: str
    frame_index: np.ndarray  # T source frame indices
    frames: np.ndarray  # T×H×W uint8
    labels: np.ndarray  # T×H×W uint8 (0 where unlabelled)
    labelled: np.ndarray  # T bool
    reference: np.ndarray | None  # T×H×W uint8 full labels (evaluation), or None
    spacing: tuple[float, float] | None
    view: str
    meta: dict
    #: optical-flow priors (T×C×H×W uint8 probabilities × 255) keyed by which labelled frames are drawn:
    #: "first", "last" or "ends" (first and last) — see :data:`PRIOR_SETS`
    priors: dict[str, np.ndarray] | None = None


#: the sets of drawn frames a training step can use as memory references, and so needs a flow prior for
PRIOR_SETS = ("first", "last", "ends")


def make_clip(video: EchoVideo, input_size: tuple[int, int], n_frames: int = 10, labelled: str = "ed-es",
              reference: EchoVideo | None = None, video_id: str | None = None, priors: bool = False,
              mode: str = "camus") -> Clip:
    """Cut the clip of ``video`` and resize it to ``input_size``.

    Args:
        video: the video with the labels training may use.
        reference: the same video with full labels, for evaluation only (never used in training).
        priors: also compute the optical-flow priors of the clip (:data:`PRIOR_SETS`), propagated over
            every frame of the video between the clip's ends as inference does, then sampled.
        mode: the network's classes, for the priors (``camus`` or ``lv``).
    """
    restricted = restrict_labels(video, labelled)
    idx = clip_indices(restricted, n_frames)
    sub = _select_with_repeats(restricted, idx)
    box = Letterbox.fit(sub.shape, input_size)
    labels = np.zeros((len(idx), *input_size), np.uint8)
    mask = np.zeros(len(idx), bool)
    for k in sub.annotated:
        labels[k] = box.forward(sub.labels[k], nearest=True)
        mask[k] = True
    ref = None
    if reference is not None and reference.labels is not None:
        ref = np.stack([box.forward(reference.labels[i], nearest=True) for i in idx])
    spacing = None
    if sub.spacing is not None:
        spacing = (sub.spacing[0] * sub.shape[0] / box.scaled[0], sub.spacing[1] * sub.shape[1] / box.scaled[1])
    frames = np.stack([box.forward(f) for f in sub.frames_uint8()])
    clip = Clip(video_id or video.source, np.asarray(idx), frames, labels, mask, ref, spacing, sub.view,
                dict(video.meta))
    if priors and mask.any():
        clip.priors = clip_priors(restricted, idx, mask, box, mode)
    return clip


def clip_priors(video: EchoVideo, idx: list[int], labelled: np.ndarray, box: Letterbox, mode: str
                ) -> dict[str, np.ndarray]:
    """The flow priors of a clip (see :class:`Clip`) from the frames of ``video`` it spans."""
    from echoforge.engine.propagation import PairFlows, flow_prior

    lo, hi = min(idx), max(idx)
    span = np.stack([box.forward(f) for f in video.frames_uint8(slice(lo, hi + 1))])
    flows = PairFlows(span)
    positions = np.flatnonzero(labelled)
    drawn = {"first": [positions[0]], "last": [positions[-1]], "ends": sorted({positions[0], positions[-1]})}
    out = {}
    for name, chosen in drawn.items():
        classes = {idx[k] - lo: to_classes(box.forward(video.labels[idx[k]], nearest=True), mode) for k in chosen}
        prior = flow_prior(span, classes, 4 if mode == "camus" else 2, flows)
        out[name] = np.round(prior[np.asarray(idx) - lo] * 255).astype(np.uint8)
    return out


def _select_with_repeats(video: EchoVideo, idx: list[int]) -> EchoVideo:
    """The frames ``idx`` (repeats allowed: short ED→ES spans) with the labels of the annotated ones."""
    labels = annotated = None
    if video.labels is not None:
        annotated = [k for k, i in enumerate(idx) if i in video.annotated]
        labels = video.labels[idx] if annotated else None
    return EchoVideo(video.frames[idx], spacing=video.spacing, view=video.view, labels=labels,
                     annotated=tuple(annotated or ()), source=video.source, meta=video.meta)


@dataclass
class Letterbox:
    """How a frame was fitted into the network input: scale, then pad at the bottom/right."""

    original: tuple[int, int]
    scaled: tuple[int, int]
    size: tuple[int, int]

    @classmethod
    def fit(cls, original: tuple[int, int], size: tuple[int, int]) -> Letterbox:
        scale = min(size[0] / original[0], size[1] / original[1])
        scaled = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
        return cls(original, scaled, size)

    def forward(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        out = np.zeros(self.size, dtype=image.dtype)
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
        out[: self.scaled[0], : self.scaled[1]] = cv2.resize(image, self.scaled[::-1], interpolation=interp)
        return out

    def backward(self, probs: torch.Tensor) -> torch.Tensor:
        """``…×C×size`` probabilities → ``…×C×original`` (crop the padding, resize bilinearly)."""
        crop = probs[..., : self.scaled[0], : self.scaled[1]]
        lead = crop.shape[:-2]
        flat = F.interpolate(crop.reshape(-1, 1, *self.scaled), size=self.original, mode="bilinear",
                             align_corners=False)
        return flat.reshape(*lead, *self.original)


def collate(clips: list[Clip], mode: str) -> dict[str, object]:
    """Stack clips into tensors: ``frames`` B×T×H×W float, ``labels`` B×T×H×W long, ``labelled`` B×T bool;
    ``reference`` B×T×H×W long (full labels) when every clip has them — for diagnostics only, never a
    training target; ``priors`` (name → B×T×C×H×W float) when every clip has flow priors."""
    batch: dict[str, object] = {
        "frames": torch.from_numpy(np.stack([c.frames for c in clips])).float() / 255.0,
        "labels": torch.from_numpy(np.stack([to_classes(c.labels, mode) for c in clips])),
        "labelled": torch.from_numpy(np.stack([c.labelled for c in clips])),
        "video_id": [c.video_id for c in clips],
        "frame_index": [c.frame_index.tolist() for c in clips],
    }
    if all(c.reference is not None for c in clips):
        batch["reference"] = torch.from_numpy(np.stack([to_classes(c.reference, mode) for c in clips]))
    if all(c.priors is not None for c in clips):
        batch["priors"] = {name: torch.from_numpy(np.stack([c.priors[name] for c in clips])).float() / 255.0
                           for name in PRIOR_SETS}
    return batch


# ---------------------------------------------------------------------- datasets on disk
def load_dataset(data: str | os.PathLike[str], layout: str, subset: str | None = None,
                 views: tuple[str, ...] = ("2CH", "4CH")) -> list[tuple[str, EchoVideo, EchoVideo | None]]:
    """Videos of a dataset folder as ``(id, video with usable labels, video with reference labels or None)``.

    ``subset``: CAMUS/studies ``training``/``validation``/``testing`` (CAMUS: the official split when
    the download has one, else the sequential 7:1:2 split); EchoNet ``TRAIN``/``VAL``/``TEST``
    (case-insensitive, the CAMUS names map onto them); ``None`` = everything.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(data)
    items: list[tuple[str, EchoVideo, EchoVideo | None]] = []
    if layout == "camus":
        from echoforge.io.camus import CamusDataset

        camus = CamusDataset(root)
        patients = camus.patients
        if subset is not None:
            try:
                patients = camus.split(subset, "official")
            except DatasetLayoutError:
                patients = camus.split(subset, "sequential")
        for p in patients:
            for view in camus.views(p):
                if view in views:
                    video = camus.load(p, view)
                    items.append((f"{p}_{view}", video, video))
    elif layout == "echonet":
        from echoforge.io.echonet import EchoNetDataset

        echonet = EchoNetDataset(root)
        mapping = {"training": "TRAIN", "validation": "VAL", "testing": "TEST"}
        names = echonet.files if subset is None else echonet.split(mapping.get(subset, subset))
        for name in names:
            video = echonet.load(name)
            items.append((name, video, video if video.has_labels else None))
    else:
        from echoforge.io.studies import StudiesDataset

        studies = StudiesDataset(root)
        names = studies.names if subset is None else studies.split(subset)
        for name in names:
            video = studies.load(name, labels="final")
            reference = studies.load(name, labels="reference") if studies.reference_path(name) else None
            items.append((name, video, reference))
    if not items:
        raise DatasetLayoutError(f"no videos found for subset {subset!r}", root)
    return items


def cycle_clips(videos: list[EchoVideo], input_size: tuple[int, int], labelled: str = "ed-es",
                priors: bool = True, mode: str = "camus") -> list[Clip]:
    """Systole (ED → ES) and diastole (ES → the next ED) clips of fully labelled cine videos.

    Each half is labelled at its two ends (``ed-es``) or on every frame (``all``, an oracle); the
    full labels stay as the clip's reference (diagnostics only). The next ED is the first local
    maximum of the LV area after ES. With ``priors``, each clip carries its flow priors.
    """
    clips = []
    for k, video in enumerate(videos):
        ed, es = video.ed, video.es
        halves = [(ed, es)]
        area = (video.labels == L.LV).sum(axis=(1, 2))
        refill = [t for t in range(es + 1, video.n_frames - 1) if area[t] >= area[t - 1] and area[t] > area[t + 1]]
        if refill:
            halves.append((es, refill[0]))
        for h, (a, b) in enumerate(halves):
            # the diastolic half has no ED → ES span: its clip runs over its two drawn ends, forwards in time
            part = video.select(range(a, b + 1)).replace(ed=0 if h == 0 else None, es=b - a if h == 0 else None)
            sparse = part if labelled == "all" else part.with_labels(part.labels, annotated=(0, b - a))
            clips.append(make_clip(sparse, input_size, 10, "all", reference=part, video_id=f"{video.source}:{k}:{h}",
                                   priors=priors, mode=mode))
    return clips


def training_clips(items: list[tuple[str, EchoVideo, EchoVideo | None]], input_size: tuple[int, int],
                   n_frames: int = 10, labelled: str = "ed-es") -> list[Clip]:
    """Clips of the videos that have at least one annotated frame (others cannot teach)."""
    clips = [make_clip(video, input_size, n_frames, labelled, reference=ref, video_id=vid)
             for vid, video, ref in items if video.has_labels]
    if not clips:
        raise EmptyLabelError("no video has an annotated frame: nothing to train on")
    return clips
