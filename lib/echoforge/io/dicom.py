"""Ultrasound DICOM (single- and multi-frame) to and from :class:`~echoforge.video.EchoVideo`.

:func:`read_dicom` reads what scanners and PACS export: Ultrasound (Multi-frame) Image Storage or a
Secondary Capture with Modality US; MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422 and PALETTE COLOR
pixels; uncompressed, RLE and JPEG (baseline and lossless, the latter through pylibjpeg) transfer
syntaxes; ``.dcm.gz`` files transparently. Frames become grayscale luma in [0, 1]. Colour-Doppler
pixels are kept as their luma too (BT.601 weights, the luma a JPEG stores), so flow jets look like
moderately bright echoes; ``meta["colour_fraction"]`` says how much of the clip is colour.
The imaging sector is found with :func:`echoforge.sector.detect_sector`, and by default the frames
are cropped to it with everything outside the fan set to 0.

:func:`write_dicom` writes an Ultrasound (Multi-frame) Image Storage file with the physical pixel
size in an ultrasound-region calibration, the way scanners do, so that 3D Slicer, pydicom and
PACS viewers show the right scale and frame rate.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixel_data_handlers.util import apply_color_lut
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessP14,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from echoforge import __version__
from echoforge.errors import (
    InvalidVideoError,
    NoPixelDataError,
    NotUltrasoundError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from echoforge.io.atomic import atomic_path, compound_suffix
from echoforge.sector import SectorGeometry, detect_sector, fit_sector_geometry
from echoforge.video import EchoVideo

US_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
US_MULTIFRAME_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
ENHANCED_US_VOLUME_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.2")
#: SOP classes read as ultrasound whatever the Modality says (current and retired US storage).
US_SOP_CLASSES = frozenset({US_IMAGE_STORAGE, US_MULTIFRAME_IMAGE_STORAGE,
                            UID("1.2.840.10008.5.1.4.1.1.6"), UID("1.2.840.10008.5.1.4.1.1.3")})

COMPRESSIONS = ("none", "rle", "jpeg-baseline")
PHOTOMETRICS = ("MONOCHROME2", "RGB", "YBR_FULL_422")
#: Which photometric interpretations each compression can write.
_WRITABLE = {"none": ("MONOCHROME2", "RGB"), "rle": ("MONOCHROME2", "RGB"),
             "jpeg-baseline": ("MONOCHROME2", "YBR_FULL_422")}
JPEG_QUALITY = 95

#: Private block holding where ``burn_in_ui`` placed the frames: (row0, row1, col0, col1).
PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "EchoForge"
PRIVATE_FRAME_BOX = 0x01

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_CM_UNITS = 3  # PhysicalUnitsX/YDirection: centimetres
_DECODER_PACKAGES = {
    JPEGBaseline8Bit: "Pillow, or pylibjpeg with pylibjpeg-libjpeg",
    JPEGExtended12Bit: "pylibjpeg with pylibjpeg-libjpeg",
    JPEGLosslessP14: "pylibjpeg with pylibjpeg-libjpeg (or python-gdcm)",
    JPEGLosslessSV1: "pylibjpeg with pylibjpeg-libjpeg (or python-gdcm)",
    JPEGLSLossless: "pylibjpeg with pylibjpeg-libjpeg (or python-gdcm)",
    JPEGLSNearLossless: "pylibjpeg with pylibjpeg-libjpeg (or python-gdcm)",
    JPEG2000Lossless: "pylibjpeg with pylibjpeg-openjpeg (or python-gdcm)",
    JPEG2000: "pylibjpeg with pylibjpeg-openjpeg (or python-gdcm)",
}
_VIEW_PATTERNS = (
    ("4CH", re.compile(r"(?<![A-Z0-9])(A4C|AP4|A?4 ?-?CH(AMBER)?)(?![A-Z0-9])|APICAL[ _-]*(4|FOUR)|FOUR[ _-]*CHAMBER")),
    ("2CH", re.compile(r"(?<![A-Z0-9])(A2C|AP2|A?2 ?-?CH(AMBER)?)(?![A-Z0-9])|APICAL[ _-]*(2|TWO)|TWO[ _-]*CHAMBER")),
    ("PLAX", re.compile(r"(?<![A-Z0-9])(PS?LAX|PS LAX)(?![A-Z0-9])|PARA ?STERNAL[ _-]*LONG")),
)
_VIEW_DESCRIPTIONS = {"4CH": "A4C", "2CH": "A2C", "PLAX": "PLAX"}


# ========================================================================================= reading
def read_dicom(path: str | os.PathLike[str], crop_to_sector: bool = True) -> EchoVideo:
    """Read an ultrasound DICOM file (``.dcm`` or ``.dcm.gz``) as an :class:`EchoVideo`.

    Args:
        path: the file.
        crop_to_sector: crop the frames to the bounding box of the detected imaging sector and set
            every pixel outside the fan to 0. ``meta["crop_box"]`` = [row0, row1, col0, col1] and
            ``meta["original_size"]`` = [H, W] map results back onto the stored frames.

    Returns:
        The video: ``T×H×W`` float32 luma in [0, 1]; ``spacing`` in mm from the tissue region of
        the ultrasound-region calibration (else PixelSpacing / ImagerPixelSpacing, else ``None``:
        never guessed); ``frame_time_ms`` from FrameTime, FrameTimeVector, CineRate or
        RecommendedDisplayFrameRate (else ``None``); ``view`` from ViewCodeSequence,
        SeriesDescription or ProtocolName (else ``"unknown"``); ``sector`` the fan mask (``None``
        when no fan was found, in which case nothing is cropped). ``meta`` holds manufacturer,
        model, SOP class, photometric interpretation, transfer syntax, patient / study / series
        ids (never names), frame count, the calibration regions and ``sector_geometry`` (see
        :meth:`echoforge.sector.SectorGeometry.to_dict`, in the coordinates of the returned frames);
        with an ECG in a Waveform Sequence, ``r_waves_ms`` (its R-wave times from the first frame:
        the waveform's MultiplexGroupTimeOffset is taken relative to it) and ``ecg_source``.

    Raises:
        UnreadableFileError: missing file, not DICOM, truncated or corrupt, or compressed pixel
            data without an installed decoder (the message names the package to install).
        NotUltrasoundError: a DICOM of another modality (CT, MR, ...).
        NoPixelDataError: a DICOM without pixel data (a report, a structured document).
        UnsupportedFormatError: a 3-D ultrasound volume or an unknown photometric interpretation.
    """
    path = Path(path)
    ds = _read_dataset(path)
    _require_ultrasound(ds, path)
    if "PixelData" not in ds:
        raise NoPixelDataError("the DICOM holds no pixel data (no image to read)", path)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    transfer_syntax = _transfer_syntax(ds)
    pixels = _decode_pixels(ds, transfer_syntax, path)
    frames, colour_fraction = _to_luma(pixels, ds, path)
    regions = _ultrasound_regions(ds)
    spacing, spacing_source = _pixel_spacing(ds, regions)
    frame_time, time_source = _frame_time(ds)
    height, width = frames.shape[1:]
    meta: dict[str, Any] = {
        "format": "dicom",
        "manufacturer": _text(ds, "Manufacturer"),
        "model": _text(ds, "ManufacturerModelName"),
        "modality": _text(ds, "Modality"),
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "sop_class": _uid_name(ds.get("SOPClassUID")),
        "photometric": photometric,
        "transfer_syntax_uid": str(transfer_syntax),
        "transfer_syntax": transfer_syntax.name,
        "patient_id": _text(ds, "PatientID"),
        "study_instance_uid": _text(ds, "StudyInstanceUID"),
        "series_instance_uid": _text(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "n_frames": int(frames.shape[0]),
        "original_size": [int(height), int(width)],
        "regions": regions,
        "spacing_source": spacing_source,
        "frame_time_source": time_source,
        "colour_fraction": colour_fraction,
    }
    r_waves = _ecg_r_waves(ds)
    if r_waves is not None:
        meta["r_waves_ms"] = r_waves
        meta["ecg_source"] = "waveform"
    geometry = _find_sector(frames, regions)
    if geometry is not None and crop_to_sector:
        r0, r1, c0, c1 = geometry.box
        frames = frames[:, r0:r1, c0:c1] * geometry.mask[r0:r1, c0:c1]
        meta["crop_box"] = [r0, r1, c0, c1]
        geometry = geometry.cropped(geometry.box)
    meta["sector_geometry"] = None if geometry is None else geometry.to_dict()
    return EchoVideo(frames, spacing=spacing, frame_time_ms=frame_time, view=_view(ds),
                     sector=None if geometry is None else geometry.mask, source=str(path), meta=meta)


def _read_dataset(path: Path) -> Dataset:
    """The parsed data set; every way a file can be unreadable becomes :class:`UnreadableFileError`."""
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    if path.is_dir():
        raise UnreadableFileError("is a folder, not a DICOM file", path)
    try:
        with path.open("rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        source: Any = str(path)
        if gzipped:
            source = io.BytesIO(gzip.decompress(path.read_bytes()))
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnreadableFileError(f"the gzip compression is truncated or corrupt ({exc})", path) from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read ({exc.strerror or exc})", path) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(source)
        except InvalidDicomError:
            ds = _read_headerless(source)
            if ds is None:
                raise UnreadableFileError("not a DICOM file (no DICOM header and no DICOM data elements)",
                                          path) from None
        except Exception as exc:  # pydicom raises many types on garbage input
            raise UnreadableFileError(f"not a readable DICOM file: {_one_line(exc)}", path) from None
    if _is_truncated(ds, [str(w.message) for w in caught]):
        raise UnreadableFileError("the file is truncated (it ends in the middle of its data)", path)
    if "SOPClassUID" not in ds and "Modality" not in ds:
        raise UnreadableFileError("the DICOM data set is incomplete (no SOP Class UID, no Modality): "
                                  "the file is truncated or damaged", path)
    return ds


def _read_headerless(source: Any) -> Dataset | None:
    """A DICOM data set written without preamble and file meta (old equipment), or ``None``."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        ds = pydicom.dcmread(source, force=True)
    except Exception:  # garbage: not DICOM at all
        return None
    tags = list(ds.keys())
    if not tags or tags[0].group > 0x0008 or ("SOPClassUID" not in ds and "Modality" not in ds):
        return None
    return ds


def _is_truncated(ds: Dataset, messages: list[str]) -> bool:
    """Whether the file ended early: pydicom warns, or stores a shorter value than declared."""
    if any("End of file" in m for m in messages):
        return True
    if not ds.keys():
        return True
    last = ds.get_item(list(ds.keys())[-1])
    length = getattr(last, "length", None)
    value = getattr(last, "value", None)
    return (isinstance(value, bytes) and length is not None and length != 0xFFFFFFFF
            and len(value) < length)


def _require_ultrasound(ds: Dataset, path: Path) -> None:
    sop = UID(_text(ds, "SOPClassUID") or _text(ds.file_meta, "MediaStorageSOPClassUID"))
    modality = _text(ds, "Modality").upper()
    if sop == ENHANCED_US_VOLUME_STORAGE:
        raise UnsupportedFormatError("3-D ultrasound volumes (Enhanced US Volume) are not supported; "
                                     "export 2-D cines", path)
    if modality == "US" or sop in US_SOP_CLASSES:
        return
    what = f"Modality is {modality!r}" if modality else "no Modality"
    raise NotUltrasoundError(f"not an ultrasound DICOM ({what}, SOP class {_uid_name(sop) or 'missing'})", path)


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax))
    return ImplicitVRLittleEndian if ds.is_implicit_VR in (True, None) else ExplicitVRLittleEndian


def _decode_pixels(ds: Dataset, syntax: UID, path: Path) -> np.ndarray:
    """All frames at once as pydicom decodes them (``[T×]H×W[×3]``)."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation") if k not in ds]
    if missing:
        raise UnreadableFileError(f"the image attributes {', '.join(missing)} are missing", path)
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = syntax
    handlers = [h for h in pydicom.config.pixel_data_handlers if h.supports_transfer_syntax(syntax)]
    if not any(h.is_available() for h in handlers):
        packages = _DECODER_PACKAGES.get(syntax)
        if packages:
            hint = f"install {packages}"
        else:
            hint = "pydicom has no decoder for it; convert the file first (for example gdcmconv --raw)"
        raise UnreadableFileError(f"no decoder for {syntax.name} pixel data is installed: {hint}", path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ds.pixel_array
        except Exception as exc:  # handlers raise ValueError, RuntimeError, OSError, ...
            raise UnreadableFileError(f"the {syntax.name} pixel data cannot be decoded (truncated or corrupt): "
                                      f"{_one_line(exc)}", path) from None


def _to_luma(pixels: np.ndarray, ds: Dataset, path: Path) -> tuple[np.ndarray, float]:
    """``T×H×W`` float32 luma in [0, 1] and the share of strongly chromatic pixels.

    pydicom 2 leaves YBR data (JPEG baseline included) in YCbCr, so Y is the luma; its handlers
    rename the photometric interpretation when they convert, which is why it is read after
    decoding.
    """
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = pixels if n_frames > 1 else pixels[None]
    if arr.ndim != (4 if samples == 3 else 3):
        raise UnreadableFileError(f"unexpected decoded pixel array of shape {pixels.shape}", path)
    bits = int(ds.get("BitsStored", ds.BitsAllocated) or 8)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        arr = arr.astype(np.int64) + 2 ** (bits - 1)
    top = np.float32(2**bits - 1)
    if photometric == "PALETTE COLOR":
        return _palette_luma(arr, ds, path)
    if samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        luma = _scaled(arr, top)
        if photometric == "MONOCHROME1":
            np.subtract(1.0, luma, out=luma)
        return luma, 0.0
    sample = arr[:: max(1, arr.shape[0] // 8)].astype(np.float32)  # a few frames for the colour share
    if samples == 3 and photometric in ("YBR_FULL", "YBR_FULL_422"):
        chroma = np.abs(sample[..., 1:] - (top + 1) / 2).sum(axis=-1) / top
        return _scaled(arr[..., 0], top), _colour_share(chroma)
    if samples == 3 and photometric in ("RGB", "YBR_ICT", "YBR_RCT"):  # JPEG 2000 decoders output RGB
        chroma = (sample.max(axis=-1) - sample.min(axis=-1)) / top
        luma = arr @ _LUMA
        return _scaled(np.rint(luma, out=luma), top), _colour_share(chroma)  # integer luma, as in YCbCr
    raise UnsupportedFormatError(f"photometric interpretation {photometric!r} with {samples} sample(s) "
                                 "per pixel is not supported", path)


def _scaled(values: np.ndarray, top: np.float32) -> np.ndarray:
    """``values / top`` as float32 in [0, 1], in as few passes over the data as possible."""
    out = values.astype(np.float32)
    out /= top
    if values.dtype.kind == "u" and np.iinfo(values.dtype).max <= top:
        return out  # unsigned values that cannot exceed ``top``: already in range
    return np.clip(out, 0.0, 1.0, out=out)


def _palette_luma(arr: np.ndarray, ds: Dataset, path: Path) -> tuple[np.ndarray, float]:
    """Luma of PALETTE COLOR pixels through a luma lookup table built from the palette."""
    try:
        entries, first, bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
        entries = entries or 65536
        index_dtype = np.uint16 if first + entries > 256 else np.uint8
        palette = apply_color_lut(np.arange(first, first + entries, dtype=index_dtype), ds).astype(np.float32)
    except Exception as exc:  # missing or malformed lookup tables
        raise UnreadableFileError(f"the palette colour lookup table is missing or corrupt: {_one_line(exc)}",
                                  path) from None
    # Some vendors declare 16-bit entries but store 8-bit values.
    top = np.float32(255 if bits <= 8 or palette.max() <= 255 else 65535)
    luma_lut = np.clip(palette @ _LUMA / top, 0.0, 1.0).astype(np.float32)
    chroma_lut = (palette.max(axis=1) - palette.min(axis=1)) / top
    index = np.clip(arr.astype(np.int64) - first, 0, entries - 1)
    return luma_lut[index], _colour_share(chroma_lut[index])


def _colour_share(chroma: np.ndarray) -> float:
    """Share of pixels whose chroma (0-1 scale) marks them as colour Doppler rather than gray."""
    return round(float((chroma > 0.15).mean()), 4)


def _ultrasound_regions(ds: Dataset) -> list[dict[str, Any]]:
    """The SequenceOfUltrasoundRegions as JSON-friendly dicts (box = [x0, y0, x1, y1] inclusive)."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions", []) or []:
        box = [_number(item, k) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                          "RegionLocationMaxX1", "RegionLocationMaxY1")]
        reference = [_number(item, "ReferencePixelX0"), _number(item, "ReferencePixelY0")]
        regions.append({
            "spatial_format": int(_number(item, "RegionSpatialFormat") or 0),
            "data_type": int(_number(item, "RegionDataType") or 0),
            "flags": int(_number(item, "RegionFlags") or 0),
            "box": [int(v) for v in box] if None not in box else None,  # type: ignore[arg-type]
            "units": [int(_number(item, "PhysicalUnitsXDirection") or 0),
                      int(_number(item, "PhysicalUnitsYDirection") or 0)],
            "delta": [_number(item, "PhysicalDeltaX"), _number(item, "PhysicalDeltaY")],
            "reference_pixel": [int(v) for v in reference] if None not in reference else None,  # type: ignore[arg-type]
        })
    return regions


def _tissue_region(regions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The 2-D region calibrated in cm: a tissue one if any, the largest such otherwise."""
    usable = [r for r in regions if r["spatial_format"] == 1 and r["units"] == [_CM_UNITS, _CM_UNITS]
              and all(d is not None and math.isfinite(d) and d > 0 for d in r["delta"])]
    if not usable:
        return None

    def area(region: dict[str, Any]) -> int:
        if region["box"] is None:
            return 0
        x0, y0, x1, y1 = region["box"]
        return (x1 - x0 + 1) * (y1 - y0 + 1)

    tissue = [r for r in usable if r["data_type"] == 1]
    return max(tissue or usable, key=area)


def _pixel_spacing(ds: Dataset, regions: list[dict[str, Any]]) -> tuple[tuple[float, float] | None, str | None]:
    """(row, col) spacing in mm and the attribute it came from."""
    region = _tissue_region(regions)
    if region is not None:
        dx, dy = region["delta"]
        return (dy * 10.0, dx * 10.0), "SequenceOfUltrasoundRegions"
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        with contextlib.suppress(TypeError, ValueError):
            row, col = (float(v) for v in value)
            if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
                return (row, col), keyword
    return None, None


def _frame_time(ds: Dataset) -> tuple[float | None, str | None]:
    """Time between frames in ms and the attribute it came from."""
    value = _positive(ds.get("FrameTime"))
    if value is not None:
        return value, "FrameTime"
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        values = vector if isinstance(vector, MultiValue) else [vector]
        increments = [_positive(v) for v in list(values)[1:]]  # the first entry is 0 by definition
        positive = [v for v in increments if v is not None]
        if positive:
            return float(np.mean(positive)), "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive(ds.get(keyword))
        if rate is not None:
            return 1000.0 / rate, keyword
    return None, None


def _view(ds: Dataset) -> str:
    """``4CH``, ``2CH``, ``PLAX`` from the view code or descriptions, else ``unknown``."""
    texts = []
    for item in ds.get("ViewCodeSequence", []) or []:
        texts += [_text(item, "CodeMeaning"), _text(item, "CodeValue")]
    texts += [_text(ds, k) for k in ("SeriesDescription", "ProtocolName", "ImageComments")]
    for text in texts:
        upper = text.upper().replace("_", " ")
        for view, pattern in _VIEW_PATTERNS:
            if pattern.search(upper):
                return view
    return "unknown"


def _find_sector(frames: np.ndarray, regions: list[dict[str, Any]]) -> SectorGeometry | None:
    """The fan, searched inside the tissue region when the calibration gives a plausible one."""
    height, width = frames.shape[1:]
    within = None
    region = _tissue_region(regions)
    if region is not None and region["box"] is not None:
        x0, y0, x1, y1 = region["box"]
        # Some files carry the region of a larger original; such a box is no guide.
        if 0 <= x0 < x1 < width and 0 <= y0 < y1 < height and (x1 - x0) * (y1 - y0) > 0.05 * height * width:
            within = (y0, y1 + 1, x0, x1 + 1)
    try:
        return detect_sector(frames, within=within)
    except InvalidVideoError:
        return None


# ========================================================================================= writing
def write_dicom(video: EchoVideo, path: str | os.PathLike[str], photometric: str = "MONOCHROME2",
                compression: str = "none", burn_in_ui: bool = False) -> Path:
    """Write ``video`` as an Ultrasound Multi-frame Image Storage DICOM (Ultrasound Image Storage
    for a single frame); a path ending in ``.dcm.gz`` is gzip-compressed.

    The file carries Modality US; for a cine NumberOfFrames, FrameTime with FrameIncrementPointer
    (0018,1063) and CineRate; and, when the spacing is known, one 2-D tissue region in
    SequenceOfUltrasoundRegions (location: the sector's bounding box, or the whole frame without a
    sector; physical deltas in cm; reference pixel: the fitted probe apex) plus PixelSpacing in mm
    for readers that ignore ultrasound regions. Without a spacing no calibration is written (never
    made up). With ``video.meta["r_waves_ms"]`` (a phantom's R-waves) the file carries a synthetic
    lead-II ECG in a Waveform Sequence (500 Hz, 16-bit, µV; no P waves when ``meta["rhythm"]`` is
    ``"irregular"``), which :func:`read_dicom` turns back into R-waves. PatientID and StudyInstanceUID
    come from ``video.meta`` when present; UIDs are derived deterministically from the content,
    so writing the same video with the same options gives the same file. Labels are not written.

    Args:
        video: the clip; frames are stored as 8-bit.
        path: the output file, written atomically.
        photometric: ``MONOCHROME2``; ``RGB`` (uncompressed or RLE); ``YBR_FULL_422`` (JPEG
            baseline only, where colour JPEG means YCbCr 4:2:2).
        compression: ``none`` (explicit VR little endian), ``rle`` (RLE lossless) or
            ``jpeg-baseline`` (lossy, each frame JPEG-encoded at quality :data:`JPEG_QUALITY`).
        burn_in_ui: place the frames in a larger canvas with scanner-like UI around them (text,
            frame counter, grey bar, dotted depth scale, a sweeping ECG trace; colour in the
            colour photometrics), to test sector detection end to end. Where the frames went is
            stored as (row0, row1, col0, col1) in the private tag (0009,xx01) of creator
            ``EchoForge``.

    Returns:
        The written path.

    Raises:
        UnsupportedFormatError: an unknown compression or photometric, or a combination DICOM
            does not allow (RGB with JPEG baseline, YBR_FULL_422 without it).
    """
    path = Path(path)
    photometric = photometric.upper()
    if compression not in COMPRESSIONS:
        raise UnsupportedFormatError(f"unknown compression {compression!r}; choose one of {COMPRESSIONS}", path)
    if photometric not in PHOTOMETRICS:
        raise UnsupportedFormatError(f"unknown photometric interpretation {photometric!r}; "
                                     f"choose one of {PHOTOMETRICS}", path)
    if photometric not in _WRITABLE[compression]:
        raise UnsupportedFormatError(f"{photometric} cannot be written with compression {compression!r} "
                                     f"(allowed: {', '.join(_WRITABLE[compression])})", path)
    gray = video.frames_uint8()
    geometry = fit_sector_geometry(video.sector) if video.sector is not None else None
    colour = photometric != "MONOCHROME2"
    frame_box = (0, gray.shape[1], 0, gray.shape[2])
    if burn_in_ui:
        pixels, (top, left) = _scanner_screen(gray, video)
        frame_box = (top, top + gray.shape[1], left, left + gray.shape[2])
        if not colour:
            pixels = np.round(pixels @ _LUMA).astype(np.uint8)
    else:
        top = left = 0
        pixels = np.repeat(gray[..., None], 3, axis=-1) if colour else gray

    ds = _base_dataset(video, pixels, photometric, compression, burn_in_ui)
    region_box = frame_box if geometry is None else (geometry.box[0] + top, geometry.box[1] + top,
                                                     geometry.box[2] + left, geometry.box[3] + left)
    if video.spacing is not None:
        apex = None if geometry is None or geometry.apex is None else (geometry.apex[0] + top,
                                                                        geometry.apex[1] + left)
        ds.SequenceOfUltrasoundRegions = Sequence([_tissue_region_item(region_box, video.spacing, apex)])
        # Readers that ignore ultrasound regions (ITK/GDCM, hence 3D Slicer's volume loader) use this.
        ds.PixelSpacing = [DSfloat(v, auto_format=True) for v in video.spacing]
    if video.meta.get("r_waves_ms") and video.frame_time_ms:
        ds.WaveformSequence = Sequence([_ecg_item(video)])
    if burn_in_ui:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(PRIVATE_FRAME_BOX, "UL", list(frame_box))
    _set_pixel_data(ds, pixels, compression)

    with atomic_path(path) as tmp:
        if compound_suffix(path) == ".dcm.gz":
            buffer = io.BytesIO()
            ds.save_as(buffer, write_like_original=False)
            tmp.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
        else:
            ds.save_as(tmp, write_like_original=False)
    return path


def _base_dataset(video: EchoVideo, pixels: np.ndarray, photometric: str, compression: str,
                  burn_in_ui: bool) -> FileDataset:
    """Every attribute but the pixel data and the calibration."""
    n_frames, rows, cols = pixels.shape[:3]
    digest = hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest()
    options = f"{photometric}|{compression}|{burn_in_ui}|{video.spacing}|{video.frame_time_ms}|{video.view}"
    patient_id = str(video.meta.get("patient_id") or "")
    study_uid = str(video.meta.get("study_instance_uid") or "")
    if not _valid_uid(study_uid):
        study_uid = generate_uid(entropy_srcs=["echoforge-study", patient_id, digest])
    series_uid = generate_uid(entropy_srcs=["echoforge-series", study_uid, digest, options])
    instance_uid = generate_uid(entropy_srcs=["echoforge-instance", series_uid, digest, options])
    sop_class = US_MULTIFRAME_IMAGE_STORAGE if n_frames > 1 else US_IMAGE_STORAGE

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ECHOFORGE_{__version__}"[:16]
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance_uid
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.Modality = "US"
    ds.Manufacturer = "EchoForge"
    ds.SoftwareVersions = __version__
    ds.SeriesDescription = _VIEW_DESCRIPTIONS.get(video.view, "")
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", patient_id, "", ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES" if burn_in_ui else "NO"
    ds.SamplesPerPixel = 1 if photometric == "MONOCHROME2" else 3
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if n_frames > 1:
        ds.NumberOfFrames = n_frames
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        if video.frame_time_ms is not None:
            ds.FrameTime = DSfloat(video.frame_time_ms, auto_format=True)
            ds.CineRate = ds.RecommendedDisplayFrameRate = max(1, round(1000.0 / video.frame_time_ms))
    return ds


def _ecg_item(video: EchoVideo) -> Dataset:
    """A Waveform Sequence item holding a synthetic ECG with the video's R-waves, over the clip."""
    from echoforge.core.ecg import ECG_SAMPLING_HZ, synthetic_ecg

    duration = video.n_frames * float(video.frame_time_ms)
    signal = synthetic_ecg(video.meta["r_waves_ms"], duration, ECG_SAMPLING_HZ,
                           atrial_waves=video.meta.get("rhythm") != "irregular",
                           seed=int(video.meta.get("phantom_seed") or 0))
    samples = np.clip(np.round(signal), -32768, 32767).astype("<i2")
    channel = Dataset()
    source = Dataset()
    source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = "2:2", "MDC", "Lead II"
    channel.ChannelSourceSequence = Sequence([source])
    units = Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "uV", "UCUM", "microvolt"
    channel.ChannelSensitivity = DSfloat(1, auto_format=True)
    channel.ChannelSensitivityUnitsSequence = Sequence([units])
    channel.ChannelSensitivityCorrectionFactor = DSfloat(1, auto_format=True)
    channel.ChannelBaseline = DSfloat(0, auto_format=True)
    channel.ChannelSampleSkew = DSfloat(0, auto_format=True)
    channel.WaveformBitsStored = 16
    item = Dataset()
    item.MultiplexGroupTimeOffset = DSfloat(0, auto_format=True)
    item.WaveformOriginality = "DERIVED"
    item.NumberOfWaveformChannels = 1
    item.NumberOfWaveformSamples = int(samples.size)
    item.SamplingFrequency = DSfloat(ECG_SAMPLING_HZ, auto_format=True)
    item.MultiplexGroupLabel = "ECG"
    item.ChannelDefinitionSequence = Sequence([channel])
    item.WaveformBitsAllocated = 16
    item.WaveformSampleInterpretation = "SS"
    item.WaveformData = samples.tobytes()
    return item


def _ecg_r_waves(ds: Dataset) -> list[float] | None:
    """R-wave times (ms from the first frame) of the ECG in the Waveform Sequence, or ``None``.

    The first multiplex group labelled or coded as an ECG lead is used, its first channel; a
    waveform that cannot be decoded is ignored (the beats then come from the volume curve).
    """
    from echoforge.core.ecg import detect_r_waves

    for index, item in enumerate(ds.get("WaveformSequence") or []):
        label = str(item.get("MultiplexGroupLabel", "")).upper()
        channels = item.get("ChannelDefinitionSequence") or []
        names = " ".join(str(s.get("CodeMeaning", "")) for c in channels for s in c.get("ChannelSourceSequence") or [])
        if "ECG" not in label and "LEAD" not in names.upper():
            continue
        try:
            signal = np.asarray(ds.waveform_array(index), dtype=np.float64)
            rate = float(item.SamplingFrequency)
        except (AttributeError, ValueError, TypeError, KeyError, IndexError):
            return None
        if signal.ndim != 2 or signal.shape[0] < 3 or not rate > 0:
            return None
        offset = float(item.get("MultiplexGroupTimeOffset") or 0.0)
        return [round(float(t) + offset, 1) for t in detect_r_waves(signal[:, 0], rate)]
    return None


def _tissue_region_item(box: tuple[int, int, int, int], spacing: tuple[float, float],
                        apex: tuple[float, float] | None) -> Dataset:
    """One 2-D tissue region over ``box`` (row0, row1, col0, col1; end exclusive), cm units."""
    r0, r1, c0, c1 = box
    item = Dataset()
    item.RegionSpatialFormat = 1  # 2-D
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = c0, r0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = c1 - 1, r1 - 1
    if apex is not None:  # relative to the region's top-left corner
        item.ReferencePixelX0 = int(round(apex[1])) - c0
        item.ReferencePixelY0 = int(round(apex[0])) - r0
        item.ReferencePixelPhysicalValueX = item.ReferencePixelPhysicalValueY = 0.0
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = _CM_UNITS
    item.PhysicalDeltaX = spacing[1] / 10.0
    item.PhysicalDeltaY = spacing[0] / 10.0
    return item


def _set_pixel_data(ds: FileDataset, pixels: np.ndarray, compression: str) -> None:
    """Store ``pixels`` (``T×H×W`` or ``T×H×W×3`` uint8) with the chosen compression."""
    single = pixels.shape[0] == 1
    if compression == "rle":
        ds.compress(RLELossless, pixels[0] if single else pixels)
    elif compression == "jpeg-baseline":
        encoded = []
        for frame in pixels:
            buffer = io.BytesIO()
            image = Image.fromarray(frame)  # L for H×W, RGB for H×W×3
            # subsampling=1 is 4:2:2, what YBR_FULL_422 declares
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=1)
            encoded.append(buffer.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = DSfloat(pixels.nbytes / sum(len(e) for e in encoded), auto_format=True)
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds["PixelData"].VR = "OB"


def _scanner_screen(gray: np.ndarray, video: EchoVideo) -> tuple[np.ndarray, tuple[int, int]]:
    """``T×H'×W'×3`` uint8 RGB: ``gray`` (``T×H×W``) inside a canvas with scanner-like UI, and the
    (row, col) where the frames start."""
    n_frames, height, width = gray.shape
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, height / 600)
    px_per_cm = 10.0 / video.spacing[0] if video.spacing else height / 15.0
    header = ["ECHOFORGE", f"{_VIEW_DESCRIPTIONS.get(video.view, 'ECHO')} Gen THI",
              f"{height / px_per_cm:.0f}cm {video.fps or 0:.0f}Hz"]
    status = ["MI 0.9", "TIS 0.7", f"{n_frames}/{n_frames}"]
    text_width = max(cv2.getTextSize(text, font, scale, 1)[0][0] for text in header + status)
    line = cv2.getTextSize("Hg", font, scale, 1)[0][1] * 2
    top, bottom = max(32, height // 8), max(48, height // 5)
    side = max(72, width // 5, text_width + 16)
    rows, cols = height + top + bottom, width + 2 * side
    canvas = np.zeros((n_frames, rows, cols, 3), np.uint8)
    white, grey, green, yellow = (235, 235, 235), (170, 170, 170), (40, 200, 60), (230, 200, 40)
    scale_col = side + width + 8
    ecg_base, ecg_height = rows - bottom // 2, bottom / 3
    xs = np.arange(side // 2, cols - side // 2)
    beat = max(40.0, (cols - side) / 3.0)
    for t in range(n_frames):
        screen = canvas[t]
        for i, text in enumerate(header):
            cv2.putText(screen, text, (6, line * (i + 1)), font, scale, white, 1, cv2.LINE_AA)
        status[-1] = f"{t + 1}/{n_frames}"
        for i, text in enumerate(status):
            cv2.putText(screen, text, (6, line * (i + 5)), font, scale, grey, 1, cv2.LINE_AA)
        bar_top, bar_bottom = top + line, top + line + height // 3
        screen[bar_top:bar_bottom, cols - 16:cols - 8] = np.linspace(
            255, 0, bar_bottom - bar_top).astype(np.uint8)[:, None, None]
        for cm in range(int(height / px_per_cm) + 1):
            row = top + int(round(cm * px_per_cm))
            cv2.circle(screen, (scale_col, row), 1, white, -1)
            if cm % 5 == 0:
                cv2.putText(screen, str(cm), (scale_col + 6, row + 4), font, scale * 0.7, grey, 1, cv2.LINE_AA)
        phase = ((xs - xs[0]) + t * beat / 12.0) / beat % 1.0
        trace = ecg_base - ecg_height * (np.exp(-((phase - 0.3) / 0.015) ** 2)
                                         + 0.25 * np.exp(-((phase - 0.6) / 0.05) ** 2))
        cv2.polylines(screen, [np.stack([xs, trace], 1).round().astype(np.int32)], False, green, 1, cv2.LINE_AA)
        sweep = int(xs[0] + (t * beat / 12.0) % (xs[-1] - xs[0]))
        cv2.line(screen, (sweep, ecg_base - int(ecg_height) - 4), (sweep, ecg_base + 6), yellow, 1)
    # The frames go in last, so UI reaching into their box never alters them.
    canvas[:, top:top + height, side:side + width] = gray[..., None]
    return canvas, (top, side)


# ========================================================================================= helpers
def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword) if ds is not None else None
    return "" if value is None else str(value).strip()


def _uid_name(uid: Any) -> str:
    if not uid:
        return ""
    uid = UID(str(uid))
    return uid.name if uid.name != str(uid) else str(uid)


def _number(ds: Dataset, keyword: str) -> float | None:
    """A numeric attribute as float, or ``None`` when absent, empty or not a number."""
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _valid_uid(uid: str) -> bool:
    return bool(uid) and len(uid) <= 64 and re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) is not None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
