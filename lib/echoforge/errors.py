"""Typed errors for bad input.

Every error raised on bad user input is an :class:`EchoForgeError`. Its message names the file (when
there is one) and says what is wrong in plain words, so the command line can print it without a
traceback::

    try:
        video = load_video("scan.dcm")
    except EchoForgeError as err:
        print(err)          # "scan.dcm: not an ultrasound DICOM (Modality is 'CT')"
"""

from __future__ import annotations

import os
from typing import Any


class EchoForgeError(Exception):
    """Base class of all errors about bad input.

    Args:
        problem: what is wrong, in plain words.
        path: the file concerned, if any; it prefixes the message.
    """

    def __init__(self, problem: str, path: str | os.PathLike[str] | None = None):
        self.problem = problem
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (used by the command line ``--json`` output and the server)."""
        return {"error": type(self).__name__, "problem": self.problem, "path": self.path}


class UnreadableFileError(EchoForgeError):
    """The file is missing, truncated, corrupt, or not in the format its name says."""


class UnsupportedFormatError(EchoForgeError):
    """The file type (extension or content) is not one EchoForge reads or writes."""


class NotUltrasoundError(EchoForgeError):
    """A DICOM that is not an ultrasound image (for example a CT)."""


class NoPixelDataError(EchoForgeError):
    """A DICOM (or other container) without image data."""


class InvalidVideoError(EchoForgeError):
    """Frames with a wrong dimensionality, no frames, non-finite values or an invalid geometry."""


class LabelError(EchoForgeError):
    """Base class of problems with segmentation labels."""


class LabelShapeError(LabelError):
    """Labels whose shape differs from the video they belong to."""


class LabelValueError(LabelError):
    """Label values outside the CAMUS convention (0 background, 1 LV, 2 myocardium, 3 LA)."""


class EmptyLabelError(LabelError):
    """Labels without any foreground where foreground is required."""


class UnknownFrameError(EchoForgeError):
    """A frame index outside the video."""


class DatasetLayoutError(EchoForgeError):
    """A dataset folder that does not follow the layout it is read as (CAMUS, EchoNet-Dynamic, ...)."""


class CheckpointError(EchoForgeError):
    """A model file that is missing, corrupt, or made for another network configuration."""


class TrainingError(EchoForgeError):
    """Training cannot go on (no annotated video, a loss that became NaN, ...)."""
