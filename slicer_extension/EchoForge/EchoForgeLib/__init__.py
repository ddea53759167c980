"""The EchoForge Slicer module's logic: everything except the widgets, with no Slicer import.

Needs only what 3D Slicer's own Python ships (numpy and the standard library), so it runs — and is
tested — in plain Python too:

* :mod:`.client` — :class:`EchoForgeClient`, the HTTP client for the EchoForge MONAI Label server;
* :mod:`.volume`, :mod:`.nifti`, :mod:`.nrrd` — videos and labels as T×H×W arrays, converted from
  and to files and Slicer arrays with the server's orientation rule and header fields;
* :mod:`.cine` — a cine as Slicer holds it: frames of sequences, volumes and MultiVolumes, the
  frame time from a sequence's index values, the pixel size from the DICOM attributes;
* :mod:`.annotations`, :mod:`.session` — which frames were drawn, ED/ES marks, the loop per video;
* :mod:`.state` — the module's state as JSON for its parameter node (survives module reload);
* :mod:`.report` — the clinical report as data (JSON); its pictures are drawn by the module with
  Slicer's plot and slice views.

Measurements (every beat's ED/ES, volumes, EF, GLS, LA volume, LV mass, quality flags), labels,
agreement statistics and the orientation rule come from ``EchoForgeCore``, the ``echoforge``
library's numpy-only core, shipped with the module as an identical copy.
"""

from .annotations import FrameAnnotations
from .client import EchoForgeClient, SegmentationResult
from .errors import (
    AnnotationError,
    EchoForgeClientError,
    EchoForgeModuleError,
    ServerBusyError,
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
    "ServerBusyError",
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
