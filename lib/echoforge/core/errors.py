"""Typed errors for bad input, shared by the library, the server and the Slicer module.

Every error raised on bad user input is an :class:`EchoForgeError`. Its message names the file (when
there is one) and says what is wrong in plain words, so it can be shown as it is::

    try:
        measure_labels(labels, spacing)
    except EchoForgeError as err:
        print(err)          # "frame 12 (ES) has no LV cavity (label 1) to measure"
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union


class EchoForgeError(Exception):
    """Base class of all errors about bad input.

    Args:
        problem: what is wrong, in plain words.
        path: the file concerned, if any; it prefixes the message.
    """

    def __init__(self, problem: str, path: Optional[Union[str, os.PathLike[str]]] = None):
        self.problem = problem
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (used by the command line ``--json`` output and the server)."""
        return {"error": type(self).__name__, "problem": self.problem, "path": self.path}


class InvalidVideoError(EchoForgeError):
    """Frames with a wrong dimensionality, no frames, non-finite values or an invalid geometry
    (a non-positive pixel spacing or frame time)."""


class LabelError(EchoForgeError):
    """Base class of problems with segmentation labels."""


class LabelShapeError(LabelError):
    """Labels whose shape differs from the video they belong to, or that are not ``T×H×W``."""


class LabelValueError(LabelError):
    """Label values outside the CAMUS convention (0 background, 1 LV, 2 myocardium, 3 LA)."""


class EmptyLabelError(LabelError):
    """Labels without any foreground where foreground is required (no LV cavity to measure)."""


class UnknownFrameError(EchoForgeError):
    """A frame index outside the video."""
