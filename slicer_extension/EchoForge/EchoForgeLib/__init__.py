"""The EchoForge Slicer module's logic: everything except the widgets, with no Slicer import.

Needs only what 3D Slicer's own Python ships (numpy and the standard library), so it runs — and is
tested — in plain Python too:

* :mod:`.client` — :class:`EchoForgeClient`, the HTTP client for the EchoForge MONAI Label server;
* :mod:`.volume`, :mod:`.nifti`, :mod:`.nrrd` — videos and labels as T×H×W arrays, converted from
  and to files and Slicer arrays with the server's orientation rule and header fields;
* :mod:`.annotations`, :mod:`.session` — which frames were drawn, ED/ES marks, the loop per video;
* :mod:`.report`, :mod:`.charts`, :mod:`.drawing`, :mod:`.font`, :mod:`.png` — the clinical report.

Measurements (LV areas, ED/ES, volumes, EF), labels, agreement statistics and the orientation rule
come from ``EchoForgeCore``, the ``echoforge`` library's numpy-only core, shipped with the module
as an identical copy.
"""

from .annotations import FrameAnnotations
from .client import EchoForgeClient, SegmentationResult
from .errors import (
    AnnotationError,
    EchoForgeClientError,
    EchoForgeModuleError,
    ServerFailedError,
    ServerRejectedError,
    ServerTimeoutError,
    ServerUnreachableError,
    VolumeFormatError,
)
from .session import VideoSession, biplane_pairs, measure_pair, measurement_rows, write_study_report
from .volume import Volume, read_volume, volume_from_slicer, write_label_volume, write_volume

__all__ = [
    "AnnotationError",
    "EchoForgeClient",
    "EchoForgeClientError",
    "EchoForgeModuleError",
    "FrameAnnotations",
    "SegmentationResult",
    "ServerFailedError",
    "ServerRejectedError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "VideoSession",
    "Volume",
    "VolumeFormatError",
    "biplane_pairs",
    "measure_pair",
    "measurement_rows",
    "read_volume",
    "volume_from_slicer",
    "write_label_volume",
    "write_study_report",
    "write_volume",
]
