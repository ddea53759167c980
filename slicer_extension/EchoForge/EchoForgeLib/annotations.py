"""Which frames of a video the clinician drew, and what: the bookkeeping behind "segment the rest".

The module shows one labelmap per video (Slicer's segmentation). Before the first segmentation it
holds only what the clinician drew; afterwards it holds the server's result, which the clinician
may correct. :class:`FrameAnnotations` tells the two apart by comparing the labelmap with the last
server result (the *baseline*): a frame that differs from it — or, before any result, a frame with
anything drawn — becomes annotated. An annotated frame keeps following what is drawn there; erased
completely, it is no longer annotated.

Nothing here talks to the server, so a failed call never changes the annotations::

    notes = FrameAnnotations(n_frames=30, frame_size=(112, 112))
    notes.update(current_labels)                    # after each edit in Slicer
    labels, frames = notes.submission()             # raises AnnotationError when nothing is drawn
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

import numpy as np

from .errors import AnnotationError
from .labels import SEGMENT_NAMES

NOTHING_ANNOTATED = ("No frame is annotated yet: draw the LV cavity (and, if you can, the myocardium and left "
                     "atrium) on at least one frame, ideally ED and ES, then try again. Nothing was sent.")


class FrameAnnotations:
    """The drawn frames of one video and their labels.

    Args:
        n_frames: T.
        frame_size: (H, W).
    """

    def __init__(self, n_frames: int, frame_size: tuple[int, int]):
        if n_frames < 1:
            raise AnnotationError("a video needs at least one frame")
        self.shape = (int(n_frames), int(frame_size[0]), int(frame_size[1]))
        self._drawn: dict[int, np.ndarray] = {}

    @property
    def annotated_frames(self) -> list[int]:
        """The annotated frame indices, sorted."""
        return sorted(self._drawn)

    def is_annotated(self, frame: int) -> bool:
        return int(frame) in self._drawn

    def frame_labels(self, frame: int) -> np.ndarray:
        """The ``H×W`` labels drawn on an annotated frame."""
        if frame not in self._drawn:
            raise AnnotationError(f"frame {frame} is not annotated")
        return self._drawn[frame].copy()

    def frames_by_segment(self) -> dict[int, list[int]]:
        """Label value → the annotated frames where it is drawn (values other than 1-3 included)."""
        out: dict[int, list[int]] = {}
        for frame in self.annotated_frames:
            for value in np.unique(self._drawn[frame]):
                if value:
                    out.setdefault(int(value), []).append(frame)
        return out

    def label_values(self) -> set[int]:
        """Every non-zero label value drawn on an annotated frame."""
        return set(self.frames_by_segment())

    def unknown_values(self, known: Iterable[int] = SEGMENT_NAMES) -> set[int]:
        """Drawn label values that are not in ``known`` (by default the three EchoForge structures)."""
        return self.label_values() - {int(v) for v in known}

    def set_frame(self, frame: int, labels: np.ndarray) -> None:
        """Record ``labels`` (``H×W``) as drawn on ``frame``; an empty frame is no longer annotated."""
        index = self._index(frame)
        drawn = np.asarray(labels)
        if drawn.shape != self.shape[1:]:
            raise AnnotationError(f"frame {frame} labels have shape {drawn.shape}, the video's frames are "
                                  f"{self.shape[1:]}")
        if drawn.any():
            self._drawn[index] = drawn.astype(np.uint8, copy=True)
        else:
            self._drawn.pop(index, None)

    def remove_frame(self, frame: int) -> None:
        """Forget the annotation of ``frame`` (its drawing stays in Slicer but is not sent)."""
        self._drawn.pop(self._index(frame), None)

    def update(self, labels: np.ndarray, baseline: Optional[np.ndarray] = None) -> list[int]:
        """Take the current labelmap (``T×H×W``) and record the frames the clinician changed.

        Args:
            labels: what the labelmap holds now.
            baseline: the last server result shown (``None`` before any: every frame with
                something drawn is then annotated).

        Returns:
            The frames whose annotation changed (added, redrawn or erased).
        """
        current = np.asarray(labels)
        if current.shape != self.shape:
            raise AnnotationError(f"the labels have shape {current.shape}, the video is {self.shape} (T×H×W)")
        if baseline is None:
            touched = np.flatnonzero(current.reshape(self.shape[0], -1).any(axis=1))
        else:
            reference = np.asarray(baseline)
            if reference.shape != self.shape:
                raise AnnotationError(f"the baseline has shape {reference.shape}, the video is {self.shape}")
            touched = np.flatnonzero((current != reference).reshape(self.shape[0], -1).any(axis=1))
        changed = []
        # annotated frames follow what is drawn there now (erased completely: no longer annotated)
        for frame in sorted({int(t) for t in touched} | set(self._drawn)):
            before = self._drawn.get(frame)
            self.set_frame(frame, current[frame])
            after = self._drawn.get(frame)
            if (before is None) != (after is None) or (before is not None and not np.array_equal(before, after)):
                changed.append(frame)
        return changed

    def submission(self) -> tuple[np.ndarray, list[int]]:
        """The label volume to send (``T×H×W`` uint8, drawn frames only) and the annotated frames.

        Raises:
            AnnotationError: nothing is annotated (say so to the clinician; nothing is sent).
        """
        if not self._drawn:
            raise AnnotationError(NOTHING_ANNOTATED)
        volume = np.zeros(self.shape, dtype=np.uint8)
        for frame, drawn in self._drawn.items():
            volume[frame] = drawn
        return volume, self.annotated_frames

    def _index(self, frame: int) -> int:
        index = int(frame)
        if not 0 <= index < self.shape[0]:
            raise AnnotationError(f"frame {frame} is outside the video (frames 0 to {self.shape[0] - 1})")
        return index
