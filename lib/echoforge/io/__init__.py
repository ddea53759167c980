"""Readers and writers for the echo formats users have.

:func:`load_video` opens any supported file by its content and name:

==========================  =============================================================
DICOM (``.dcm``, ``.dcm.gz``, no extension)  ultrasound cine or still, sector detected and cropped
``.avi`` ``.mp4`` ...       movie files (EchoNet-Dynamic); no spacing
``.nii`` ``.nii.gz`` ``.nrrd`` ``.seq.nrrd``  H×W×T volumes as 3D Slicer and MONAI Label store them
``.mhd``                    MetaImage (first CAMUS release)
==========================  =============================================================

CAMUS files (``patientXXXX_4CH_half_sequence.nii.gz`` and friends) are recognised by name and
get their view, ED/ES and reference labels from the files beside them.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

from echoforge.errors import UnreadableFileError, UnsupportedFormatError
from echoforge.io.atomic import compound_suffix
from echoforge.io.avi import MOVIE_EXTS, read_avi, write_avi
from echoforge.io.volume import (
    NRRD_EXTS,
    attach_labels,
    is_volume_path,
    nrrd_data_file,
    read_volume,
    write_labels,
    write_volume,
)
from echoforge.video import EchoVideo

_CAMUS_NAME = re.compile(r"^(patient\d{4})_(2CH|4CH)_(half_sequence|ED|ES|sequence)(_gt)?\.(nii\.gz|nii|mhd)$")

__all__ = ["is_dicom", "load_video", "save_video", "write_labels", "read_volume", "attach_labels",
           "detached_data_file"]


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """True when the file starts like a DICOM Part-10 file (``DICM`` at byte 128), gzipped or not."""
    path = Path(path)
    try:
        opener = gzip.open if compound_suffix(path) == ".dcm.gz" else open
        with opener(path, "rb") as f:
            head = f.read(132)
    except (OSError, EOFError):
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def detached_data_file(path: str | os.PathLike[str]) -> str | None:
    """The other file whose data a header file names (MetaImage ``ElementDataFile``, NRRD ``data file``).

    ``None`` for a file that holds its own data (every format but detached MetaImage and NRRD
    headers). A server uses this to refuse uploads that would make it read another file.
    """
    ext = compound_suffix(path)
    if ext == ".mhd":
        from echoforge.io.metaimage import mhd_data_file

        return mhd_data_file(path)
    if ext in NRRD_EXTS:
        return nrrd_data_file(path)
    return None


def load_video(path: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None) -> EchoVideo:
    """Read any supported echo file as an :class:`EchoVideo`.

    Args:
        path: the video (see the table above).
        labels: optional label file of the same geometry (NIfTI/NRRD, CAMUS values 0-3).

    Raises:
        UnreadableFileError: missing, truncated or corrupt file.
        UnsupportedFormatError: a file type EchoForge does not read.
        EchoForgeError: any other problem with the content (see :mod:`echoforge.errors`).
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    if path.is_dir():
        raise UnsupportedFormatError("is a folder; give a video file (or use a dataset reader for folders)", path)
    ext = compound_suffix(path)
    camus = _CAMUS_NAME.match(path.name)
    if camus and not camus.group(4):
        video = _load_camus_file(path, camus)
    elif ext in MOVIE_EXTS:
        video = read_avi(path)
    elif is_volume_path(path):
        video = read_volume(path)
    elif ext == ".mhd":
        video = _read_plain_mhd(path)
    elif ext in (".dcm", ".dicom", ".dcm.gz") or is_dicom(path):
        from echoforge.io.dicom import read_dicom

        video = read_dicom(path)
    else:
        raise UnsupportedFormatError(
            f"unknown file type {ext or '(no extension)'!r}; EchoForge reads DICOM, AVI/MP4, NIfTI, NRRD and MetaImage",
            path)
    if labels is not None:
        video = attach_labels(video, labels)
    return video


def _load_camus_file(path: Path, match: re.Match[str]) -> EchoVideo:
    from echoforge.io.camus import CamusDataset

    patient, view, instant = match.group(1), match.group(2), match.group(3)
    instant = "half_sequence" if instant == "sequence" else instant
    info = path.parent / f"Info_{view}.cfg"
    if not info.exists():  # a lone CAMUS-named file: read it as a plain volume
        return read_volume(path) if path.suffix != ".mhd" else _read_plain_mhd(path)
    root = path.parent.parent
    return CamusDataset(root).load(patient, view, instant)


def _read_plain_mhd(path: Path) -> EchoVideo:
    from echoforge.io.metaimage import read_mhd

    array, spacing = read_mhd(path)
    frames = array if array.ndim == 3 else array[None]
    return EchoVideo(frames / 255.0, spacing=(spacing[-2], spacing[-1]), source=str(path))


def save_video(video: EchoVideo, path: str | os.PathLike[str]) -> Path:
    """Write the frames to ``path``: NIfTI/NRRD volume, AVI, or DICOM, chosen by extension."""
    path = Path(path)
    ext = compound_suffix(path)
    if is_volume_path(path):
        return write_volume(video, path)
    if ext in MOVIE_EXTS:
        return write_avi(video, path)
    if ext == ".dcm":
        from echoforge.io.dicom import write_dicom

        return write_dicom(video, path)
    raise UnsupportedFormatError(f"cannot write {ext!r}; use .nii.gz, .nrrd, .avi or .dcm", path)
