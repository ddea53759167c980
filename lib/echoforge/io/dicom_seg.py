"""Echo labels as a DICOM Segmentation (SEG) of the source multi-frame ultrasound image, and back.

A label volume (``T×H×W``, the CAMUS values of :mod:`echoforge.labels`) becomes a BINARY
Segmentation with one segment per structure (LV cavity, LV myocardium, left atrium). Each SEG frame
is one structure on one frame of the source cine: its Derivation Image Sequence names the source
instance and the source frame (Referenced Frame Number), so a PACS viewer overlays it on the right
frame. Only the *annotated* frames are encoded (every structure on each of them, empty or not), so
a partial label (two drawn frames) stays partial when it comes back: a frame absent from the SEG
was not annotated, a frame present with an empty segment was annotated as "no such structure".

Labels of a converted video live in the geometry of the cropped sector (``meta["crop_box"]`` of
:func:`echoforge.io.dicom.read_dicom`); :func:`write_dicom_seg` puts them back on the source's
Rows×Columns and :func:`read_dicom_seg` crops them again, so the round trip is exact.

Ultrasound images have no patient frame of reference, so the SEG has none either: spatial
locations are preserved frame by frame (the Derivation Image Sequence says so), and the pixel size
is the source's own calibration (its ultrasound regions), which applies to the SEG pixels unchanged.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixel_data_handlers.numpy_handler import pack_bits
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from echoforge import __version__
from echoforge import labels as L
from echoforge.errors import LabelShapeError, UnreadableFileError, UnsupportedFormatError
from echoforge.io.atomic import atomic_path

SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.4")
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")


@dataclass(frozen=True)
class Code:
    value: str
    scheme: str
    meaning: str

    def item(self) -> Dataset:
        ds = Dataset()
        ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = self.value, self.scheme, self.meaning
        return ds

    @classmethod
    def of(cls, item: Dataset) -> Code:
        return cls(str(item.get("CodeValue", "")), str(item.get("CodingSchemeDesignator", "")),
                   str(item.get("CodeMeaning", "")))

    def same(self, other: Code) -> bool:
        return (self.value, self.scheme) == (other.value, other.scheme)


#: CID 7150 "Segmentation Property Category".
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
#: Segmented property type of each label value (SNOMED CT, as listed in the DICOM code tables).
STRUCTURE_CODES: dict[int, Code] = {
    L.LV: Code("87878005", "SCT", "Left Ventricle"),
    L.MYOCARDIUM: Code("49848007", "SCT", "Left Ventricle Myocardium"),
    L.LA: Code("82471001", "SCT", "Left atrium"),
}
_DESCRIPTIONS = {L.LV: "left ventricular cavity (blood pool inside the endocardial border)",
                 L.MYOCARDIUM: "left ventricular myocardium", L.LA: "left atrial cavity"}
# (0028,9110) Pixel Measures, (0020,9111) Frame Content, (0062,000A) Segment Identification
_SEGMENT_NUMBER_POINTER, _SEGMENT_GROUP = Tag(0x0062, 0x000B), Tag(0x0062, 0x000A)
_TEMPORAL_INDEX_POINTER, _FRAME_CONTENT = Tag(0x0020, 0x9128), Tag(0x0020, 0x9111)
_SEGMENTATION_DERIVATION = Code("113076", "DCM", "Segmentation")
_SOURCE_FOR_PROCESSING = Code("121322", "DCM", "Source image for image processing operation")


@dataclass(frozen=True)
class SegLabels:
    """What :func:`read_dicom_seg` returns.

    Attributes:
        labels: ``T×H×W`` uint8 (crop applied); frames not in ``annotated`` are 0.
        annotated: the source frames (0-based) the SEG covers.
        source_sop_instance_uid: the multi-frame image the SEG belongs to.
        sop_instance_uid, series_instance_uid: the SEG's own identity.
        content_datetime: when the SEG was made (``YYYYMMDDHHMMSS.ffffff``), to pick the newest.
    """

    labels: np.ndarray
    annotated: tuple[int, ...]
    source_sop_instance_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    content_datetime: str


def uncrop(labels: np.ndarray, size: tuple[int, int], crop_box: Sequence[int] | None) -> np.ndarray:
    """``T×h×w`` labels of a cropped video placed on the ``T×H×W`` source frames (0 outside the box)."""
    if crop_box is None:
        if tuple(labels.shape[1:]) != tuple(size):
            raise LabelShapeError(f"labels of {labels.shape[1]}×{labels.shape[2]} do not match the source image "
                                  f"({size[0]}×{size[1]}) and no crop box says where they go")
        return labels
    r0, r1, c0, c1 = (int(v) for v in crop_box)
    if (r1 - r0, c1 - c0) != tuple(labels.shape[1:]) or r0 < 0 or c0 < 0 or r1 > size[0] or c1 > size[1]:
        raise LabelShapeError(f"labels of {labels.shape[1]}×{labels.shape[2]} do not fit the crop box {list(crop_box)} "
                              f"of the {size[0]}×{size[1]} source image")
    full = np.zeros((labels.shape[0], *size), dtype=labels.dtype)
    full[:, r0:r1, c0:c1] = labels
    return full


def crop(labels: np.ndarray, crop_box: Sequence[int] | None) -> np.ndarray:
    if crop_box is None:
        return labels
    r0, r1, c0, c1 = (int(v) for v in crop_box)
    return labels[:, r0:r1, c0:c1]


def write_dicom_seg(labels: np.ndarray, source: Dataset, annotated: Sequence[int] | None = None,
                    crop_box: Sequence[int] | None = None, algorithm_type: str = "SEMIAUTOMATIC",
                    series_instance_uid: str | None = None, series_number: int = 901,
                    when: datetime.datetime | None = None) -> FileDataset:
    """The DICOM SEG of ``labels`` on the multi-frame image ``source``.

    Args:
        labels: ``T×h×w`` label volume (values 0-3) of the converted video, ``T`` = the source's
            NumberOfFrames; ``h×w`` = the crop box, or the source's Rows×Columns without one.
        source: the source image's data set (its header is enough: ``stop_before_pixels``).
        annotated: frames to encode (default: every frame).
        crop_box: (row0, row1, col0, col1) of the labels in the source frames.
        algorithm_type: ``AUTOMATIC`` (model output as is), ``SEMIAUTOMATIC`` (model + clinician) or
            ``MANUAL``.
        series_instance_uid: the SEG series (give the same one for every revision of a label so a
            PACS keeps them together; default: derived from the source instance).
        series_number: the SEG's series number.
        when: content date/time (default: now, UTC).

    Returns:
        The SEG as a pydicom data set with file meta, ready for STOW-RS or :func:`save_dicom`.
    """
    if algorithm_type not in ALGORITHM_TYPES:
        raise ValueError(f"algorithm_type must be one of {ALGORITHM_TYPES}, got {algorithm_type!r}")
    n_frames = int(source.get("NumberOfFrames", 1) or 1)
    size = (int(source.Rows), int(source.Columns))
    if labels.ndim != 3 or labels.shape[0] != n_frames:
        raise LabelShapeError(f"labels of shape {labels.shape} do not match the {n_frames} frames of the source")
    full = uncrop(np.asarray(labels), size, crop_box)
    frames = sorted({int(t) for t in (range(n_frames) if annotated is None else annotated)})
    if not frames or frames[0] < 0 or frames[-1] >= n_frames:
        raise LabelShapeError(f"annotated frames {frames} are not frames of the {n_frames}-frame source")
    when = when or datetime.datetime.now(datetime.timezone.utc)
    source_uid = str(source.SOPInstanceUID)
    series_uid = series_instance_uid or generate_uid(entropy_srcs=["echoforge-seg-series", source_uid])
    instance_uid = generate_uid()

    ds = _seg_header(source, series_uid, instance_uid, series_number, when)
    ds.SegmentSequence = DicomSequence([_segment_item(value, algorithm_type) for value in STRUCTURE_CODES])
    # no Pixel Measures: the calibration is the source's (ultrasound regions), on the same pixels
    ds.SharedFunctionalGroupsSequence = DicomSequence([Dataset()])
    ds.DimensionOrganizationSequence, ds.DimensionIndexSequence = _dimensions(generate_uid())

    per_frame, masks = [], []
    for number, value in enumerate(STRUCTURE_CODES, start=1):
        for rank, t in enumerate(frames, start=1):
            per_frame.append(_frame_item(number, rank, t, source))
            masks.append(full[t] == value)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.NumberOfFrames = len(masks)
    ds.PixelData = pack_bits(np.stack(masks).astype(np.uint8))
    ds["PixelData"].VR = "OB"
    return ds


def save_dicom(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a data set made here (SEG, SR) as a DICOM Part-10 file, atomically."""
    with atomic_path(path) as tmp:
        ds.save_as(tmp, write_like_original=False)
    return Path(path)


def read_dicom_seg(seg: Dataset | str | os.PathLike[str], n_frames: int,
                   crop_box: Sequence[int] | None = None, size: tuple[int, int] | None = None) -> SegLabels:
    """Labels from a DICOM SEG of a multi-frame image (one made by :func:`write_dicom_seg` or by any
    tool that codes the structures with :data:`STRUCTURE_CODES`; other segments are ignored).

    Args:
        seg: the SEG (data set or file).
        n_frames: frames of the source cine.
        crop_box: crop the source-geometry labels to the converted video's frames.
        size: the source's Rows×Columns, when known: a SEG of another size is refused.

    Raises:
        UnreadableFileError: not a readable SEG, or one that references several source images or
            frames outside the cine.
        UnsupportedFormatError: a FRACTIONAL segmentation.
    """
    ds = pydicom.dcmread(os.fspath(seg)) if not isinstance(seg, Dataset) else seg
    where = None if isinstance(seg, Dataset) else seg
    if str(ds.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise UnreadableFileError("not a DICOM Segmentation", where)
    if str(ds.get("SegmentationType", "")).upper() != "BINARY":
        raise UnsupportedFormatError(f"only BINARY segmentations are read, not {ds.get('SegmentationType')!r}",
                                     where)
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if size is not None and (rows, columns) != tuple(size):
        raise UnreadableFileError(f"the SEG is {rows}×{columns} but its image is {size[0]}×{size[1]}", where)
    value_of: dict[int, int] = {}
    for item in ds.get("SegmentSequence", []):
        codes = item.get("SegmentedPropertyTypeCodeSequence") or []
        if not codes:
            continue
        code = Code.of(codes[0])
        for value, known in STRUCTURE_CODES.items():
            if code.same(known):
                value_of[int(item.SegmentNumber)] = value
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for broken pixel data
        raise UnreadableFileError(f"the SEG pixel data cannot be decoded: {exc}", where) from None
    pixels = pixels.reshape(-1, int(ds.Rows), int(ds.Columns))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != pixels.shape[0]:
        raise UnreadableFileError(f"the SEG has {pixels.shape[0]} frames but {len(per_frame)} frame descriptions",
                                  where)
    labels = np.zeros((n_frames, int(ds.Rows), int(ds.Columns)), np.uint8)
    annotated: set[int] = set()
    sources: set[str] = set()
    for index, item in enumerate(per_frame):
        try:
            number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            source_item = item.DerivationImageSequence[0].SourceImageSequence[0]
            frame = int(source_item.ReferencedFrameNumber) - 1
            sources.add(str(source_item.ReferencedSOPInstanceUID))
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            raise UnreadableFileError(f"SEG frame {index + 1} does not say which segment and source frame it is",
                                      where) from None
        if not 0 <= frame < n_frames:
            raise UnreadableFileError(f"SEG frame {index + 1} references source frame {frame + 1}, outside the "
                                      f"{n_frames}-frame cine", where)
        annotated.add(frame)
        if number in value_of:
            labels[frame][pixels[index] > 0] = value_of[number]
    if len(sources) != 1:
        raise UnreadableFileError(f"the SEG references {len(sources)} source images; one cine is expected", where)
    return SegLabels(labels=crop(labels, crop_box), annotated=tuple(sorted(annotated)),
                     source_sop_instance_uid=sources.pop(), sop_instance_uid=str(ds.SOPInstanceUID),
                     series_instance_uid=str(ds.SeriesInstanceUID),
                     content_datetime=f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}")


# ----------------------------------------------------------------------------------------- parts
def derived_header(source: Dataset, sop_class: UID, modality: str, series_uid: str, instance_uid: str,
                   series_number: int, series_description: str, when: datetime.datetime) -> FileDataset:
    """Patient, study, series, equipment and SOP common attributes of an object derived from ``source``
    (kept in the source's study, so a PACS files it with the cine)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ECHOFORGE_{__version__}"[:16]
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance_uid
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(ds, keyword, source.get(keyword, ""))
    ds.Modality = modality
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, series_number, 1
    ds.SeriesDescription = series_description
    ds.Manufacturer = "EchoForge"
    ds.ManufacturerModelName = "EchoForge"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = __version__
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S.%f")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    return ds


def reference_item(source: Dataset) -> Dataset:
    """Common Instance Reference: the source's series and instance."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedInstanceSequence = DicomSequence([instance])
    return series


def _seg_header(source: Dataset, series_uid: str, instance_uid: str, series_number: int,
                when: datetime.datetime) -> FileDataset:
    ds = derived_header(source, SEGMENTATION_STORAGE, "SEG", series_uid, instance_uid, series_number,
                        "EchoForge segmentation", when)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PatientOrientation = source.get("PatientOrientation", "")  # type 2C: no plane orientation in US
    ds.ContentLabel = "ECHOFORGE"
    ds.ContentDescription = "LV cavity, LV myocardium and left atrium, frame by frame"
    ds.ContentCreatorName = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(source.Rows), int(source.Columns)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.LossyImageCompression = "00"
    ds.SegmentationType = "BINARY"
    ds.SegmentsOverlap = "NO"
    ds.ReferencedSeriesSequence = DicomSequence([reference_item(source)])
    return ds


def _segment_item(value: int, algorithm_type: str) -> Dataset:
    item = Dataset()
    item.SegmentNumber = list(STRUCTURE_CODES).index(value) + 1
    item.SegmentLabel = L.LONG_NAMES[value]
    item.SegmentDescription = _DESCRIPTIONS[value]
    item.SegmentAlgorithmType = algorithm_type
    if algorithm_type != "MANUAL":
        item.SegmentAlgorithmName = "EchoForge"
    item.SegmentedPropertyCategoryCodeSequence = DicomSequence([ANATOMICAL_STRUCTURE.item()])
    item.SegmentedPropertyTypeCodeSequence = DicomSequence([STRUCTURE_CODES[value].item()])
    item.RecommendedDisplayCIELabValue = _cielab(L.COLORS[value])
    return item


def _frame_item(segment_number: int, rank: int, source_frame: int, source: Dataset) -> Dataset:
    content = Dataset()
    content.TemporalPositionIndex = rank
    content.DimensionIndexValues = [segment_number, rank]
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    reference.ReferencedFrameNumber = source_frame + 1
    reference.PurposeOfReferenceCodeSequence = DicomSequence([_SOURCE_FOR_PROCESSING.item()])
    reference.SpatialLocationsPreserved = "YES"
    derivation = Dataset()
    derivation.DerivationCodeSequence = DicomSequence([_SEGMENTATION_DERIVATION.item()])
    derivation.SourceImageSequence = DicomSequence([reference])
    segment = Dataset()
    segment.ReferencedSegmentNumber = segment_number
    item = Dataset()
    item.FrameContentSequence = DicomSequence([content])
    item.DerivationImageSequence = DicomSequence([derivation])
    item.SegmentIdentificationSequence = DicomSequence([segment])
    return item


def _dimensions(organization_uid: str) -> tuple[DicomSequence, DicomSequence]:
    organization = Dataset()
    organization.DimensionOrganizationUID = organization_uid
    index = []
    for pointer, group, label in ((_SEGMENT_NUMBER_POINTER, _SEGMENT_GROUP, "Segment"),
                                  (_TEMPORAL_INDEX_POINTER, _FRAME_CONTENT, "Annotated frame")):
        item = Dataset()
        item.DimensionOrganizationUID = organization_uid
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = group
        item.DimensionDescriptionLabel = label
        index.append(item)
    return DicomSequence([organization]), DicomSequence(index)


def _cielab(rgb: tuple[int, int, int]) -> list[int]:
    """sRGB (0-255) → DICOM-scaled CIELab (D65), as RecommendedDisplayCIELabValue wants."""
    def linear(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           0.0193 * r + 0.1192 * g + 0.9505 * b)
    white = (0.95047, 1.0, 1.08883)

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = (f(v / w) for v, w in zip(xyz, white, strict=True))
    lab = (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))
    return [int(round(lab[0] * 65535 / 100)), int(round((lab[1] + 128) * 65535 / 255)),
            int(round((lab[2] + 128) * 65535 / 255))]
