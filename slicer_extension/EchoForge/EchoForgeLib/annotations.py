"""Which frames of a video the clinician drew, and what: the bookkeeping behind "segment the rest".

The module shows one labelmap per video (Slicer's segmentation). Before the first segmentation it
holds only what the clinician drew; afterwards it holds the server's result, which the clinician
may correct. :class:`FrameAnnotations` tells the two apart by comparing the labelmap with the last
server result (the *baseline*): a frame that differs from it — or, before any result, a frame with
anything drawn — becomes annotated. An annotated frame keeps following what is drawn there; erased
completely, it is no longer annotated. A frame the clinician *forgets* stays out, drawing and all,
until its drawing changes again (a new stroke there makes it annotated again).

Nothing here talks to the server, so a failed call never changes the annotations::

    notes = FrameAnnotations(n_frames=30, frame_size=(112, 112))
    notes.update(current_labels)                    # after edits in Slicer (or update_frame per frame)
    notes.remove_frame(4)                           # "forget this frame": not sent, until redrawn
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
        self._forgotten: dict[int, np.ndarray] = {}  # frame → what it held when it was forgotten

    @property
    def annotated_frames(self) -> list[int]:
        """The annotated frame indices, sorted."""
        return sorted(self._drawn)

    @property
    def forgotten_frames(self) -> list[int]:
        """Frames the clinician left out that still hold the drawing they had then, sorted."""
        return sorted(self._forgotten)

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
        drawn = self._frame_array(frame, labels)
        self._forgotten.pop(index, None)
        if drawn.any():
            self._drawn[index] = drawn.astype(np.uint8, copy=True)
        else:
            self._drawn.pop(index, None)

    def remove_frame(self, frame: int, labels: Optional[np.ndarray] = None) -> None:
        """Forget the annotation of ``frame``: its drawing stays in Slicer but is not sent.

        The frame stays forgotten while it holds what it held when forgotten (``labels``, by
        default its recorded drawing); any change to it afterwards makes it annotated again.
        """
        index = self._index(frame)
        drawn = self._drawn.pop(index, None)
        held = drawn if labels is None else self._frame_array(frame, labels)
        if held is not None:
            self._forgotten[index] = np.array(held, dtype=np.uint8)

    def update_frame(self, frame: int, labels: np.ndarray, baseline: Optional[np.ndarray] = None) -> bool:
        """Take what ``frame`` holds now (``H×W``) and record whether the clinician drew or changed it.

        Args:
            baseline: that frame of the last server result shown (``None`` before any: the frame
                is annotated when anything is drawn on it).

        Returns:
            Whether the frame's annotation changed (added, redrawn or erased).
        """
        index = self._index(frame)
        current = self._frame_array(frame, labels)
        held = self._forgotten.get(index)
        if held is not None:
            if np.array_equal(current, held):
                return False  # forgotten, and untouched since
            del self._forgotten[index]
        before = self._drawn.get(index)
        touched = bool(current.any()) if baseline is None else not np.array_equal(current,
                                                                                  self._frame_array(frame, baseline))
        if not touched and before is None:
            return False
        self.set_frame(index, current)  # an annotated frame follows what is drawn there now
        after = self._drawn.get(index)
        return (before is None) != (after is None) or (before is not None and not np.array_equal(before, after))

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
            reference = None
            touched = np.flatnonzero(current.reshape(self.shape[0], -1).any(axis=1))
        else:
            reference = np.asarray(baseline)
            if reference.shape != self.shape:
                raise AnnotationError(f"the baseline has shape {reference.shape}, the video is {self.shape}")
            touched = np.flatnonzero((current != reference).reshape(self.shape[0], -1).any(axis=1))
        frames = sorted({int(t) for t in touched} | set(self._drawn) | set(self._forgotten))
        return [f for f in frames if self.update_frame(f, current[f], None if reference is None else reference[f])]

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

    def _frame_array(self, frame: int, labels: np.ndarray) -> np.ndarray:
        drawn = np.asarray(labels)
        if drawn.shape != self.shape[1:]:
            raise AnnotationError(f"frame {frame} labels have shape {drawn.shape}, the video's frames are "
                                  f"{self.shape[1:]}")
        return drawn

    def _index(self, frame: int) -> int:
        index = int(frame)
        if not 0 <= index < self.shape[0]:
            raise AnnotationError(f"frame {frame} is outside the video (frames 0 to {self.shape[0] - 1})")
        return index
