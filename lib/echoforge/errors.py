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

# the errors about labels and geometry live in the numpy-only core, which the Slicer module shares
from echoforge.core.errors import (  # noqa: F401 (re-exported)
    EchoForgeError,
    EmptyLabelError,
    InvalidVideoError,
    LabelError,
    LabelShapeError,
    LabelValueError,
    UnknownFrameError,
)


class UnreadableFileError(EchoForgeError):
    """The file is missing, truncated, corrupt, or not in the format its name says."""


class UnsupportedFormatError(EchoForgeError):
    """The file type (extension or content) is not one EchoForge reads or writes."""


class NotUltrasoundError(EchoForgeError):
    """A DICOM that is not an ultrasound image (for example a CT)."""


class NoPixelDataError(EchoForgeError):
    """A DICOM (or other container) without image data."""


class DatasetLayoutError(EchoForgeError):
    """A dataset folder that does not follow the layout it is read as (CAMUS, EchoNet-Dynamic, ...)."""


class CheckpointError(EchoForgeError):
    """A model file that is missing, corrupt, or made for another network configuration."""


class TrainingError(EchoForgeError):
    """Training cannot go on (no annotated video, a loss that became NaN, ...)."""
