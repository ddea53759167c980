"""NIfTI and NRRD: echo clips stored as H×W×T volumes, the frame axis last.

This is how MONAI Label studies hold echo videos and how 3D Slicer saves a scalar volume: frames
are stacked along the third axis. Orientation follows the geometry in the header, the way Slicer
displays it: of the two in-plane axes, the one running along anterior-posterior is the image row
axis (rows grow downward = posterior) and the one along right-left is the column axis (columns
grow toward the patient's left = screen right). So a CAMUS file written by SimpleITK, a volume saved
by Slicer and a volume written here all read upright, whatever their axis order on disk.

The orientation rule and the header fields (view, frame time, ED/ES, annotated frames, ECG
R-waves, and ``calibrated=no`` for a video whose pixel size is unknown) are those of
:mod:`echoforge.core.volume`, which the Slicer module shares. Slicer sequence files (``.seq.nrrd``,
frame axis of kind ``list``) are read too. The frame axis is given a nominal spacing of 1 mm (it
is time, not space).
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoforge.core.volume import (
    NRRD_PREFIX,
    FrameLayout,
    decode_fields,
    encode_fields,
    frame_layout,
    nifti_field_texts,
    parse_field_text,
    upright_ijk_to_ras,
)
from echoforge.errors import InvalidVideoError, LabelShapeError, UnreadableFileError, UnsupportedFormatError
from echoforge.io.atomic import atomic_path, compound_suffix
from echoforge.io.metaimage import data_file_beside
from echoforge.video import EchoVideo

NIFTI_EXTS = (".nii", ".nii.gz")
NRRD_EXTS = (".nrrd", ".nhdr", ".seq.nrrd", ".seg.nrrd")


def is_volume_path(path: str | os.PathLike[str]) -> bool:
    return compound_suffix(path) in NIFTI_EXTS + NRRD_EXTS


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class FileLayout:
    """How a file's array was turned into T×H×W, so that results can be written back the same way.

    Attributes:
        stored_shape: the array shape in the file (before any reordering).
        pre_order: the transpose that moved a sequence's list axis last (``None`` when not needed).
        squeezed_shape: the shape after ``pre_order`` (before singleton axes were dropped).
        frames: the orientation of the 3-D array (:class:`~echoforge.core.volume.FrameLayout`).
        affine: 4×4 RAS affine of the file's three axes (``None`` for sequences and 4-D files).
    """

    stored_shape: tuple[int, ...]
    pre_order: tuple[int, ...] | None
    squeezed_shape: tuple[int, ...]
    frames: FrameLayout
    affine: np.ndarray | None

    def to_file(self, thw: np.ndarray) -> np.ndarray:
        """The inverse of reading: a T×H×W array in the file's own axis order and shape."""
        arr = self.frames.from_frames(thw).reshape(self.squeezed_shape)
        if self.pre_order is not None:
            arr = np.transpose(arr, np.argsort(self.pre_order))
        return np.ascontiguousarray(arr)


def _frames_to_unit(data: np.ndarray) -> np.ndarray:
    """Intensities to float32 [0, 1]: uint8 by /255, anything else by its min-max range."""
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    arr = data.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InvalidVideoError("the volume contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0 and data.dtype.kind == "f":
        return arr
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def _squeeze_to_3d(data: np.ndarray, path: Path, allow_rgb: bool) -> np.ndarray:
    if data.dtype.names:  # NIfTI RGB24 / RGBA32 voxels
        data = np.stack([data[n] for n in data.dtype.names[:3]], axis=-1)
    if allow_rgb and data.ndim == 4 and data.shape[-1] in (3, 4):  # H×W×T×RGB(A)
        rgb = data[..., :3].astype(np.float32)
        data = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    squeezed = data.reshape([s for s in data.shape if s != 1] or [1])
    if squeezed.ndim == 2:  # a single frame
        return squeezed[..., None]
    if squeezed.ndim != 3:
        raise InvalidVideoError(
            f"expected a 2-D image or an H×W×T volume, got an array of shape {data.shape}", path)
    return squeezed


# ----------------------------------------------------------------------------- header fields
def _video_fields(video: EchoVideo) -> dict[str, str]:
    """The header fields of ``video`` (the annotated frames are added by the label writers)."""
    return encode_fields(view=video.view, calibrated=video.spacing is not None, frame_time_ms=video.frame_time_ms,
                         ed=video.ed, es=video.es, r_waves_ms=video.meta.get("r_waves_ms"))


# ----------------------------------------------------------------------------- NIfTI
def _read_nifti(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise UnreadableFileError(f"cannot read as NIfTI ({err})", path) from None
    descrip = img.header.get("descrip")
    fields = parse_field_text(descrip.tobytes().decode("latin-1")) if descrip is not None else {}
    directions = img.affine[:3, :3]
    affine = np.asarray(img.affine, dtype=float) if data.ndim <= 3 else None
    if data.ndim > 3:
        directions = np.eye(3)  # 4-D+ NIfTI: only the first three axes carry geometry
    return data, {"directions": directions, "fields": fields, "frame_axis": None, "affine": affine}


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, fields: dict[str, str]) -> None:
    """Write a NIfTI atomically with ``fields`` in its 80-byte ``descrip`` (long lists go in an extension)."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "msec")
    descrip, extension = nifti_field_texts(fields)
    if extension:
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", extension.encode("latin-1")))
    img.header["descrip"] = descrip.encode("latin-1")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _nifti_extension_fields(path: Path) -> dict[str, str]:
    import nibabel as nib

    out: dict[str, str] = {}
    for ext in nib.load(str(path)).header.extensions:
        content = ext.get_content()
        if isinstance(content, bytes):
            out.update(parse_field_text(content.decode("latin-1")))
    return out


# ----------------------------------------------------------------------------- NRRD
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def nrrd_data_file(path: str | os.PathLike[str]) -> str | None:
    """The separate data file an NRRD header names (``data file:``; detached ``.nhdr``), else ``None``."""
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except (OSError, EOFError, UnicodeDecodeError, ValueError, nrrd.NRRDError) as err:
        raise UnreadableFileError(f"cannot read as NRRD ({err})", path) from None
    data_file = header.get("data file", header.get("datafile"))
    return str(data_file) if data_file is not None else None


def _check_nrrd_data_file(path: Path) -> None:
    """Refuse a header whose data live anywhere but in one file beside it (no folders, lists or patterns)."""
    data_file = nrrd_data_file(path)
    if data_file is None:
        return
    if data_file.upper().startswith("LIST") or "%" in data_file or " " in data_file.strip():
        raise UnreadableFileError(f"its data file {data_file!r} is not a file beside the header "
                                  "(only a plain file name in the header's folder is read)", path)
    data_file_beside(path, data_file)


def _read_nrrd(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import nrrd

    _check_nrrd_data_file(path)
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except (OSError, EOFError, zlib.error, ValueError, nrrd.NRRDError) as err:
        raise UnreadableFileError(f"cannot read as NRRD ({err})", path) from None
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * data.ndim)]
    frame_axis = next((i for i, k in enumerate(kinds) if k in ("list", "time")), None)
    space = str(header.get("space", "left-posterior-superior")).lower()
    raw_dirs = header.get("space directions")
    spatial_axes = [i for i, k in enumerate(kinds) if k in ("domain", "space")]
    directions = np.eye(3)
    if raw_dirs is not None:
        rows = [np.asarray(d, dtype=float) for d in raw_dirs]
        dirs = np.stack([rows[i] for i in spatial_axes if i < len(rows) and np.all(np.isfinite(rows[i]))], axis=1) \
            if spatial_axes else np.eye(3)
        if space in ("left-posterior-superior", "lps"):
            dirs = _LPS_TO_RAS @ dirs
        directions = dirs
    fields = {k[len(NRRD_PREFIX):]: str(v) for k, v in header.items() if str(k).startswith(NRRD_PREFIX)}
    affine = None
    if frame_axis is None and data.ndim == 3 and directions.shape == (3, 3):
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
        if space in ("left-posterior-superior", "lps"):
            origin = _LPS_TO_RAS @ origin
        affine = np.eye(4)
        affine[:3, :3], affine[:3, 3] = directions, np.nan_to_num(origin)
    meta: dict[str, Any] = {"fields": fields, "frame_axis": frame_axis, "directions": directions,
                            "kinds": kinds, "spatial_axes": spatial_axes, "affine": affine}
    if frame_axis is not None and "frame_time_ms" not in fields:
        values = str(header.get(f"axis {frame_axis} index values", "")).split()
        unit = str(header.get(f"axis {frame_axis} unit", "")).lower()
        try:
            times = np.asarray([float(v) for v in values])
        except ValueError:
            times = np.asarray([])
        if times.size > 1:
            step = float(np.median(np.diff(times)))
            fields["frame_time_ms"] = str(step if "ms" in unit else step * 1000.0)
    return data, meta


def _save_nrrd(path: Path, array: np.ndarray, affine: np.ndarray, fields: dict[str, str]) -> None:
    """Write a 3-D NRRD atomically (LPS space, gzip) with ``fields`` as ``echoforge_*`` key/values."""
    import nrrd

    header = {
        "space": "left-posterior-superior",
        "space directions": (_LPS_TO_RAS @ affine[:3, :3]).T,  # one row per axis
        "space origin": _LPS_TO_RAS @ affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        **{f"{NRRD_PREFIX}{k}": v for k, v in fields.items()},
    }
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), np.ascontiguousarray(array), header, index_order="F",
                   custom_field_map={f"{NRRD_PREFIX}{k}": "string" for k in fields})


# ----------------------------------------------------------------------------- public API
def _read_array(path: Path) -> tuple[np.ndarray, tuple[float, float], dict[str, str], FileLayout]:
    """Read a volume file as ``(T×H×W array, (row, col) spacing, echoforge fields, layout)``."""
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    ext = compound_suffix(path)
    if ext in NIFTI_EXTS:
        data, meta = _read_nifti(path)
        meta["fields"].update(_nifti_extension_fields(path))
    elif ext in NRRD_EXTS:
        data, meta = _read_nrrd(path)
    else:
        raise UnsupportedFormatError(f"not a NIfTI or NRRD file (extension {ext!r})", path)
    stored_shape = data.shape
    frame_axis = meta["frame_axis"]
    pre_order = None
    if frame_axis is not None and data.ndim == 3:
        pre_order = tuple(a for a in range(3) if a != frame_axis) + (frame_axis,)
    elif frame_axis is not None and data.ndim == 4 and meta["kinds"][-1] in ("vector", "rgb-color", "3-vector"):
        pre_order = tuple(a for a in range(3) if a != frame_axis) + (frame_axis, 3)
    if pre_order is not None:
        data = np.transpose(data, pre_order)
    squeezed_shape = data.shape
    data = _squeeze_to_3d(data, path, allow_rgb=True)
    directions = meta["directions"]
    if directions.shape != (3, 3):
        full = np.eye(3)
        full[:, : directions.shape[1]] = directions[:, :3]
        directions = full
    frames = frame_layout(data.shape, directions)
    rgb = len(squeezed_shape) == 4 and squeezed_shape[-1] in (3, 4)
    layout = FileLayout(stored_shape, pre_order, data.shape if rgb else squeezed_shape, frames, meta["affine"])
    return frames.to_frames(data), frames.spacing, meta["fields"], layout


def read_volume(path: str | os.PathLike[str], labels_path: str | os.PathLike[str] | None = None,
                annotated: tuple[int, ...] | None = None) -> EchoVideo:
    """Read an echo clip stored as an H×W×T NIfTI/NRRD volume (optionally with its label volume).

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr`` or Slicer ``.seq.nrrd``.
        labels_path: a label volume of the same geometry (CAMUS values 0-3).
        annotated: which frames of the labels were drawn; by default read from the label file's
            header, else the frames holding foreground.

    Returns:
        An :class:`EchoVideo` (spacing from the header, in mm).
    """
    path = Path(path)
    raw, spacing, fields, _ = _read_array(path)
    try:
        frames = _frames_to_unit(raw)
    except InvalidVideoError as err:
        raise InvalidVideoError(err.problem, path) from None
    info = decode_fields(fields)
    meta: dict[str, Any] = {"format": "nifti" if compound_suffix(path) in NIFTI_EXTS else "nrrd"}
    if "r_waves_ms" in info:
        meta["r_waves_ms"] = list(info["r_waves_ms"])
    video = EchoVideo(frames, spacing=spacing if info["calibrated"] else None, frame_time_ms=info.get("frame_time_ms"),
                      view=info.get("view", "unknown"), ed=info.get("ed"), es=info.get("es"),
                      source=str(path), meta=meta)
    if labels_path is not None:
        video = attach_labels(video, labels_path, annotated)
    return video


@dataclass(frozen=True)
class LabelVolume:
    """A label file as read: ``labels`` T×H×W (unchecked), its geometry, and the frames its header lists."""

    labels: np.ndarray
    spacing: tuple[float, float] | None
    frame_time_ms: float | None
    annotated: tuple[int, ...] | None


def read_label_volume(path: str | os.PathLike[str]) -> LabelVolume:
    """Read a label volume (values are checked when attached to a video, see :func:`attach_labels`)."""
    raw, spacing, fields, _ = _read_array(Path(path))
    info = decode_fields(fields)
    return LabelVolume(raw, spacing if info["calibrated"] else None, info.get("frame_time_ms"),
                       info.get("annotated_frames"))


def attach_labels(video: EchoVideo, labels_path: str | os.PathLike[str],
                  annotated: tuple[int, ...] | None = None) -> EchoVideo:
    """``video`` with the labels of ``labels_path`` (checked against the video's shape and values).

    ``annotated`` overrides the frames recorded in the label file's header; with neither, the
    frames holding foreground are the annotated ones.
    """
    from echoforge.video import validate_labels

    volume = read_label_volume(labels_path)
    chosen = annotated if annotated is not None else volume.annotated
    checked, ann = validate_labels(volume.labels, video.frames.shape, chosen or (), os.fspath(labels_path))
    return video.replace(labels=checked, annotated=ann)


def write_volume(video: EchoVideo, path: str | os.PathLike[str]) -> Path:
    """Write the frames as an H×W×T uint8 volume (NIfTI or NRRD by extension) that Slicer reads upright."""
    path = Path(path)
    array = np.transpose(video.frames_uint8(), (1, 2, 0))
    _write(path, array, video.spacing, _video_fields(video))
    return path


def write_labels(video: EchoVideo, path: str | os.PathLike[str], labels: np.ndarray | None = None,
                 annotated: tuple[int, ...] | None = None) -> Path:
    """Write labels as an H×W×T uint8 label volume on ``video``'s geometry, annotated frames in the header.

    By default the video's own labels; ``labels`` (T×H×W) writes another array — a prediction, which
    may have empty frames — with ``annotated`` as its frame list.
    """
    if labels is None:
        if video.labels is None:
            raise InvalidVideoError("the video has no labels to write", video.source or None)
        labels, annotated = video.labels, video.annotated
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.shape != video.frames.shape:
        raise LabelShapeError(f"label shape {labels.shape} differs from the video's {video.frames.shape}", path)
    fields = {**_video_fields(video), **encode_fields(annotated_frames=annotated)}
    _write(Path(path), np.transpose(labels, (1, 2, 0)), video.spacing, fields)
    return Path(path)


def write_labels_like(labels: np.ndarray, reference: str | os.PathLike[str], path: str | os.PathLike[str],
                      annotated: tuple[int, ...] = ()) -> Path:
    """Write T×H×W ``labels`` on the geometry of the volume file ``reference`` (NIfTI or NRRD by ``path``).

    The result has the reference's axis order, orientation and spacing, so a viewer (3D Slicer, the
    MONAI Label client) overlays it exactly on the image it loaded, whatever wrote that image.
    """
    reference, path = Path(reference), Path(path)
    raw, spacing, ref_fields, layout = _read_array(reference)
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.shape != raw.shape:
        raise LabelShapeError(f"label shape {labels.shape} differs from the video's {raw.shape} (T×H×W)", path)
    fields = encode_fields(calibrated=decode_fields(ref_fields)["calibrated"], annotated_frames=annotated)
    if layout.affine is None:  # sequences and unusual files: our own upright geometry
        _write(path, np.transpose(labels, (1, 2, 0)), spacing, fields)
        return path
    array = layout.to_file(labels)
    ext = compound_suffix(path)
    if ext in NIFTI_EXTS:
        _save_nifti(path, array, layout.affine, fields)
    elif ext in (".nrrd", ".seg.nrrd"):
        _save_nrrd(path, array, layout.affine, fields)
    else:
        raise UnsupportedFormatError(f"cannot write {ext!r}: use .nii.gz, .nii or .nrrd", path)
    return path


def _write(path: Path, array_hwt: np.ndarray, spacing: tuple[float, float] | None, fields: dict[str, str]) -> None:
    ext = compound_suffix(path)
    if ext in NIFTI_EXTS:
        _save_nifti(path, array_hwt, upright_ijk_to_ras(spacing), fields)
    elif ext in (".nrrd", ".seq.nrrd"):
        _save_nrrd(path, array_hwt, upright_ijk_to_ras(spacing), fields)
    else:
        raise UnsupportedFormatError(f"cannot write {ext!r}: use .nii.gz, .nii or .nrrd", path)
