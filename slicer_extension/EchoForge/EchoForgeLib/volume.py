"""Echo videos and label volumes as T×H×W arrays with the geometry needed to write them back.

A :class:`Volume` is what the module works on: the frames (T×H×W, upright by the orientation rule
of :mod:`EchoForgeCore.volume`), the pixel spacing when it is known, and the layout of the file or
Slicer node it came from. Labels computed on the frames are written back with
:func:`write_label_volume` on that same layout, so the server (whose shape check compares the
label with its own copy of the video) and Slicer overlay them exactly.

Files are NIfTI-1 (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``), recognised by their content. Their
header fields (frame time, annotated frames, ECG R-waves, ``calibrated=no``) are read and written
with the core's rules, the same as the server's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional, Union

import numpy as np

from EchoForgeCore.volume import (
    FrameLayout,
    decode_fields,
    encode_fields,
    frame_layout,
    frames_from_slicer_array,
    upright_ijk_to_ras,
)

from .errors import VolumeFormatError
from .nifti import read_nifti, write_nifti
from .nrrd import read_nrrd, write_nrrd

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Volume:
    """An echo video (or a label volume) as T×H×W frames.

    Attributes:
        frames: ``T×H×W`` array, as stored (uint8 labels stay uint8).
        layout: how the frames map to the source array and its IJK→RAS geometry.
        spacing: pixel size (row, col) in mm, or ``None`` when the source gives no physical spacing
            (volumes are then not measured; EF comes from pixel areas).
        frame_time_ms: time between frames, when the source says.
        annotated_frames: the frames a label file says were annotated (EchoForge header field), if any.
        r_waves_ms: ECG R-wave times from the first frame (header field of a converted DICOM), if any.
    """

    frames: np.ndarray
    layout: FrameLayout
    spacing: Optional[tuple[float, float]]
    frame_time_ms: Optional[float] = None
    annotated_frames: Optional[tuple[int, ...]] = None
    r_waves_ms: Optional[tuple[float, ...]] = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def without_spacing(self) -> Volume:
        """The same volume with its spacing marked unknown (for an uncalibrated scanner export)."""
        return replace(self, spacing=None)

    def grey_uint8(self) -> np.ndarray:
        """The frames as ``T×H×W`` uint8 grey levels (uint8 as is, anything else by its min-max range)."""
        if self.frames.dtype == np.uint8:
            return self.frames
        arr = self.frames.astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return np.round(np.nan_to_num(scaled) * 255.0).astype(np.uint8)


def volume_from_array(array_ijk: np.ndarray, ijk_to_ras: np.ndarray,
                      fields: Optional[dict[str, str]] = None) -> Volume:
    """A :class:`Volume` from an (i, j, k) array (frames along k), its IJK→RAS matrix and header fields
    (``calibrated=no`` among them marks the spacing as nominal)."""
    layout = frame_layout(array_ijk.shape, ijk_to_ras)
    info = decode_fields(fields or {})
    return Volume(frames=layout.to_frames(array_ijk), layout=layout,
                  spacing=layout.spacing if info["calibrated"] else None, frame_time_ms=info.get("frame_time_ms"),
                  annotated_frames=info.get("annotated_frames"), r_waves_ms=info.get("r_waves_ms"))


def volume_from_slicer(array_kji: np.ndarray, ijk_to_ras: np.ndarray, calibrated: bool = True) -> Volume:
    """A :class:`Volume` from ``slicer.util.arrayFromVolume(node)`` ([k, j, i]) and the node's IJK→RAS matrix."""
    frames, layout = frames_from_slicer_array(array_kji, ijk_to_ras)
    return Volume(frames=frames, layout=layout, spacing=layout.spacing if calibrated else None)


def volume_from_frames(frames: np.ndarray, spacing: Optional[tuple[float, float]],
                       frame_time_ms: Optional[float] = None) -> Volume:
    """A :class:`Volume` for T×H×W frames made here, on EchoForge's own upright geometry."""
    thw = np.asarray(frames)
    if thw.ndim != 3:
        raise VolumeFormatError(f"frames must be T×H×W, got shape {thw.shape}")
    hwt = np.transpose(thw, (1, 2, 0))
    layout = frame_layout(hwt.shape, upright_ijk_to_ras(spacing))
    return Volume(frames=np.ascontiguousarray(thw), layout=layout, spacing=layout.spacing if spacing else None,
                  frame_time_ms=frame_time_ms)


def parse_volume(raw: bytes, name: str = "the volume") -> Volume:
    """Read NIfTI or NRRD bytes (recognised by content) as a :class:`Volume`.

    Raises:
        VolumeFormatError: not NIfTI/NRRD, corrupt, or not a 2-D image or 3-D volume.
    """
    if not raw:
        raise VolumeFormatError(f"{name} is empty")
    if raw.startswith(b"NRRD"):
        image = read_nrrd(raw, name)
    else:
        image = read_nifti(raw, name)
    data = image.data
    if data.ndim > 3:
        data = data.reshape([s for s in data.shape if s != 1] or [1])
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise VolumeFormatError(f"{name}: expected a 2-D image or an H×W×T volume, got shape {image.data.shape}")
    affine = image.affine if image.data.ndim <= 3 else np.eye(4)
    return volume_from_array(data, affine, image.fields)


def read_volume(path: PathLike) -> Volume:
    """Read a ``.nii``, ``.nii.gz`` or ``.nrrd`` file as a :class:`Volume`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise VolumeFormatError(f"cannot read {os.fspath(path)}: {err.strerror or err}") from None
    return parse_volume(raw, os.path.basename(os.fspath(path)))


def encode_volume(frames: np.ndarray, layout: FrameLayout, extension: str = ".nii.gz", calibrated: bool = True,
                  annotated_frames: Optional[Sequence[int]] = None,
                  frame_time_ms: Optional[float] = None) -> bytes:
    """File bytes of T×H×W ``frames`` on ``layout`` (the source's axis order and geometry).

    Args:
        extension: ``.nii.gz``, ``.nii`` or ``.nrrd``.
        calibrated: whether the spacing is physical (else the header says ``calibrated=no``).
        annotated_frames: recorded in the header (EchoForge field), if given.
        frame_time_ms: recorded in the header, if given.
    """
    fields = encode_fields(calibrated=calibrated, frame_time_ms=frame_time_ms, annotated_frames=annotated_frames)
    array = layout.from_frames(np.asarray(frames))
    if extension == ".nrrd":
        return write_nrrd(array, layout.ijk_to_ras, fields)
    if extension in (".nii.gz", ".nii"):
        return write_nifti(array, layout.ijk_to_ras, fields, compress=extension == ".nii.gz")
    raise VolumeFormatError(f"cannot write {extension!r}: use .nii.gz, .nii or .nrrd")


def write_volume(volume: Volume, path: PathLike) -> str:
    """Write ``volume`` (its frames on its layout) to ``path``; the format follows the extension."""
    data = encode_volume(volume.frames, volume.layout, file_extension(path), volume.spacing is not None,
                         volume.annotated_frames, volume.frame_time_ms)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def write_label_volume(labels: np.ndarray, like: Volume, path: PathLike,
                       annotated_frames: Optional[Sequence[int]] = None) -> str:
    """Write T×H×W ``labels`` (uint8) on the geometry of the video ``like``."""
    data = encode_volume(np.asarray(labels, dtype=np.uint8), like.layout, file_extension(path),
                         like.spacing is not None, annotated_frames)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def file_extension(path: PathLike) -> str:
    """``.nii.gz``, ``.nii`` or ``.nrrd`` from a file name (others are returned as found)."""
    name = os.path.basename(os.fspath(path)).lower()
    for extension in (".nii.gz", ".nii", ".nrrd"):
        if name.endswith(extension):
            return extension
    return os.path.splitext(name)[1]
