"""`EchoVideo`: the one in-memory representation of an echocardiography clip.

Every reader returns an :class:`EchoVideo` and every writer takes one, so a video read from a DICOM
cine, an EchoNet AVI or a CAMUS NIfTI looks the same to the network, the metrics and the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from echoforge import labels as L
from echoforge.core.validation import validate_labels
from echoforge.errors import InvalidVideoError, LabelShapeError, UnknownFrameError

__all__ = ["EchoVideo", "validate_labels"]


@dataclass(eq=False)
class EchoVideo:
    """A 2-D echocardiography clip with optional sparse labels.

    Args:
        frames: ``T×H×W`` grayscale intensities, float32 in [0, 1].
        spacing: physical pixel size in mm as (row, col), or ``None`` when the file carries no
            calibration (volumes and EF are then reported as unavailable, never guessed).
        frame_time_ms: time between frames in ms, or ``None`` when unknown.
        view: ``"2CH"``, ``"4CH"``, ``"PLAX"`` or ``"unknown"``.
        labels: ``T×H×W`` uint8 in the CAMUS convention (see :mod:`echoforge.labels`), or ``None``.
            Only the frames listed in ``annotated`` carry meaning; the others are ignored.
        annotated: indices of the frames that were actually annotated. When ``labels`` is given
            without it, the frames holding any foreground are taken as annotated (the convention of
            label maps exported by 3D Slicer, which store 0 in frames nobody drew on).
        ed, es: end-diastolic and end-systolic frame indices when known.
        sector: ``H×W`` bool mask of the imaging sector (the fan), or ``None``.
        source: where the video came from (a path), used in error messages.
        meta: free-form source metadata (patient id, manufacturer, true EF of a phantom, ...).

    Example::

        video = EchoVideo(frames, spacing=(0.3, 0.3), frame_time_ms=33.3, view="4CH")
        video = video.with_labels(labels, annotated=[0, 9])
    """

    frames: np.ndarray
    spacing: tuple[float, float] | None = None
    frame_time_ms: float | None = None
    view: str = "unknown"
    labels: np.ndarray | None = None
    annotated: tuple[int, ...] = ()
    ed: int | None = None
    es: int | None = None
    sector: np.ndarray | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source or None
        frames = np.asarray(self.frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise InvalidVideoError(
                f"frames must be T×H×W (or H×W for a single frame), got an array of shape {frames.shape}", where)
        if frames.shape[0] == 0 or frames.shape[1] < 2 or frames.shape[2] < 2:
            raise InvalidVideoError(f"the video is empty (shape {frames.shape})", where)
        frames = frames.astype(np.float32, copy=False)
        if not np.isfinite(frames).all():
            raise InvalidVideoError("frames contain NaN or infinite values", where)
        self.frames = frames
        self.view = L.normalize_view(self.view)
        if self.spacing is not None:
            sy, sx = (float(v) for v in self.spacing)
            if not (np.isfinite(sy) and np.isfinite(sx) and sy > 0 and sx > 0):
                raise InvalidVideoError(f"pixel spacing must be positive, got {self.spacing}", where)
            self.spacing = (sy, sx)
        if self.frame_time_ms is not None:
            ft = float(self.frame_time_ms)
            if not (np.isfinite(ft) and ft > 0):
                raise InvalidVideoError(f"frame time must be positive, got {self.frame_time_ms}", where)
            self.frame_time_ms = ft
        for name in ("ed", "es"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, self._check_frame(value, name.upper()))
        if self.sector is not None:
            sector = np.asarray(self.sector, dtype=bool)
            if sector.shape != self.shape:
                raise InvalidVideoError(f"sector mask shape {sector.shape} differs from frame size {self.shape}", where)
            self.sector = sector
        if self.labels is not None:
            self.labels, self.annotated = validate_labels(self.labels, self.frames.shape, self.annotated, where)
        elif self.annotated:
            raise LabelShapeError("annotated frames were given without labels", where)
        else:
            self.annotated = ()

    # ---------------------------------------------------------------- properties
    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Frame size (H, W)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def fps(self) -> float | None:
        return 1000.0 / self.frame_time_ms if self.frame_time_ms else None

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and len(self.annotated) > 0

    @property
    def annotated_mask(self) -> np.ndarray:
        """``T`` bool: which frames carry labels."""
        mask = np.zeros(self.n_frames, dtype=bool)
        mask[list(self.annotated)] = True
        return mask

    @property
    def pixel_area_mm2(self) -> float | None:
        return self.spacing[0] * self.spacing[1] if self.spacing else None

    # ------------------------------------------------------------------ helpers
    def _check_frame(self, index: int, what: str = "frame") -> int:
        i = int(index)
        if not -self.n_frames <= i < self.n_frames:
            raise UnknownFrameError(f"{what} index {index} is outside the video (0..{self.n_frames - 1})",
                                    self.source or None)
        return i % self.n_frames

    def replace(self, **changes: Any) -> EchoVideo:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_labels(self, labels: np.ndarray | None, annotated: Iterable[int] | None = None) -> EchoVideo:
        """A copy carrying ``labels`` (``T×H×W``) annotated on ``annotated`` frames (inferred if ``None``)."""
        return self.replace(labels=labels, annotated=tuple(annotated) if annotated is not None else ())

    def select(self, indices: Sequence[int]) -> EchoVideo:
        """The sub-video made of ``indices`` (in that order); labels, ED/ES and timing follow."""
        idx = [self._check_frame(i) for i in indices]
        if not idx:
            raise InvalidVideoError("cannot select zero frames", self.source or None)
        pos = {frame: k for k, frame in enumerate(idx)}
        labels = annotated = None
        if self.labels is not None:
            kept = [pos[a] for a in self.annotated if a in pos]
            if kept:
                labels, annotated = self.labels[idx], tuple(sorted(kept))
        frame_time = self.frame_time_ms
        if frame_time is not None and len(idx) > 1:
            frame_time *= abs(idx[-1] - idx[0]) / (len(idx) - 1) or 1.0
        meta = dict(self.meta, selected_frames=[int(i) for i in idx])
        return dataclasses.replace(
            self, frames=self.frames[idx], labels=labels, annotated=annotated or (),
            ed=pos.get(self.ed) if self.ed is not None else None,
            es=pos.get(self.es) if self.es is not None else None,
            frame_time_ms=frame_time, meta=meta)

    def resized(self, size: tuple[int, int]) -> EchoVideo:
        """The video resampled to ``size`` = (H, W): frames bilinear, labels and sector nearest, spacing rescaled."""
        import cv2

        h, w = (int(s) for s in size)
        if (h, w) == self.shape:
            return self
        if h < 2 or w < 2:
            raise InvalidVideoError(f"cannot resize to {size}", self.source or None)
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA if h < self.shape[0]
                                      else cv2.INTER_LINEAR) for f in self.frames])
        labels = None
        if self.labels is not None:
            labels = np.stack([cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST) for lab in self.labels])
        sector = None
        if self.sector is not None:
            sector = cv2.resize(self.sector.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        spacing = None
        if self.spacing is not None:
            spacing = (self.spacing[0] * self.shape[0] / h, self.spacing[1] * self.shape[1] / w)
        return dataclasses.replace(self, frames=np.clip(frames, 0.0, 1.0), labels=labels,
                                   annotated=self.annotated if labels is not None else (),
                                   sector=sector, spacing=spacing)

    def cropped(self, box: tuple[int, int, int, int]) -> EchoVideo:
        """The video cropped to ``box`` = (row0, row1, col0, col1) (end exclusive)."""
        r0, r1, c0, c1 = (int(v) for v in box)
        h, w = self.shape
        if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
            raise InvalidVideoError(f"crop box {box} is outside the {h}×{w} frame", self.source or None)
        return dataclasses.replace(
            self, frames=self.frames[:, r0:r1, c0:c1],
            labels=None if self.labels is None else self.labels[:, r0:r1, c0:c1],
            annotated=self.annotated if self.labels is not None else (),
            sector=None if self.sector is None else self.sector[r0:r1, c0:c1],
            meta=dict(self.meta, crop_box=[r0, r1, c0, c1]))

    def frames_uint8(self, frames: slice | None = None) -> np.ndarray:
        """Frames (``frames`` of them: all by default) as ``T×H×W`` uint8 (0-255), the form written to
        DICOM, AVI and studies."""
        chosen = self.frames if frames is None else self.frames[frames]
        return np.round(np.clip(chosen, 0.0, 1.0) * 255.0).astype(np.uint8)

    def summary(self) -> dict[str, Any]:
        """What ``echoforge inspect`` prints: a JSON-friendly description."""
        present: list[int] = []
        if self.labels is not None and self.annotated:
            present = [int(v) for v in np.unique(self.labels[list(self.annotated)])]
        return {
            "source": self.source,
            "frames": self.n_frames,
            "height": self.shape[0],
            "width": self.shape[1],
            "spacing_mm": list(self.spacing) if self.spacing else None,
            "frame_time_ms": self.frame_time_ms,
            "fps": round(self.fps, 3) if self.fps else None,
            "view": self.view,
            "ed": self.ed,
            "es": self.es,
            "label_values": present,
            "annotated_frames": list(self.annotated),
            "sector_fraction": round(float(self.sector.mean()), 4) if self.sector is not None else None,
        }
