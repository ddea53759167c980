"""Reading and writing ultrasound DICOM: real scanner files, round trips, and every bad input."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pydicom.config
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from echoforge import EchoForgeError, EchoVideo
from echoforge.errors import (
    NoPixelDataError,
    NotUltrasoundError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from echoforge.io.dicom import (
    PRIVATE_CREATOR,
    PRIVATE_FRAME_BOX,
    PRIVATE_GROUP,
    US_IMAGE_STORAGE,
    US_MULTIFRAME_IMAGE_STORAGE,
    read_dicom,
    write_dicom,
)
from echoforge.sector import detect_sector

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real-echo"
YBR_CINE = REAL / "pydicom-3.0.2__examples_ybr_color.dcm"
PLAX_STILL = REAL / "pydicom-data-1.0.0__JPGLosslessP14SV1_1s_1f_8b.dcm"
RGB_STILL = REAL / "pydicom-data-1.0.0__color-pl.dcm"
A4C_CINE = ROOT / "sample-data" / "real" / "pydicom-data-1.0.0__color3d_jpeg_baseline.dcm"
# Local-only files (GPL / too large to commit): the checks are skipped where they are absent.
SHARED = Path("/work/shared/data/real-echo")
PALETTE_CINE = SHARED / "octave-dicom-0.5.1-1__US-PAL-8-10x-echo.dcm"
DEID_CINE = SHARED / "deid-data-0.0.20__ultrasound-multiframe.dcm.gz"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def phantom(n_frames: int = 6, shape: tuple[int, int] = (200, 260), seed: int = 0, **fields: object) -> EchoVideo:
    """A clip whose fan (apex at the top centre, 80° wide) holds smooth speckle; black elsewhere."""
    rng = np.random.default_rng(seed)
    h, w = shape
    rows, cols = np.mgrid[:h, :w].astype(np.float64)
    dr, dc = rows - 6.0, cols - w / 2
    radius, angle = np.hypot(dr, dc), np.degrees(np.arctan2(dc, dr))
    fan = (radius >= 8) & (radius <= h - 12) & (np.abs(angle) <= 40)
    frames = np.zeros((n_frames, h, w), np.float32)
    for t in range(n_frames):
        speckle = cv2.GaussianBlur(rng.rayleigh(0.35, shape).astype(np.float32), (0, 0), 1.2)
        frames[t] = np.where(fan, np.clip(0.08 + speckle, 0, 1), 0)
    defaults: dict[str, object] = {"spacing": (0.3, 0.3), "frame_time_ms": 20.0, "view": "4CH", "sector": fan}
    defaults.update(fields)
    return EchoVideo(frames, **defaults)  # type: ignore[arg-type]


def as_stored(video: EchoVideo) -> np.ndarray:
    """The frames as 8-bit storage gives them back."""
    return video.frames_uint8().astype(np.float32) / np.float32(255)


# ============================================================================================ real
def test_real_a4c_cine_is_cropped_to_the_fan() -> None:
    video = read_dicom(A4C_CINE)
    assert video.n_frames == 120
    assert video.frame_time_ms == pytest.approx(33.333)
    assert video.spacing == pytest.approx((0.5105, 0.5105), abs=5e-5)
    assert video.meta["original_size"] == [480, 640]
    r0, r1, c0, c1 = video.meta["crop_box"]
    # UI text sits left of column 80 and right of 600; the bottom bar below row 440.
    assert 80 <= c0 <= 90 and 590 <= c1 <= 600 and 30 <= r0 <= 50 and 395 <= r1 <= 415
    assert video.shape == (r1 - r0, c1 - c0) and video.sector is not None
    assert video.sector.shape == video.shape and 0.55 < video.sector.mean() < 0.7
    assert not video.frames[:, ~video.sector].any()  # outside the fan is zero
    heart = video.frames[:, 150 - r0:380 - r0, 230 - c0:450 - c0]
    assert video.sector[150 - r0:380 - r0, 230 - c0:450 - c0].all() and heart.mean() > 0.1
    assert video.frames.dtype == np.float32 and 0.0 <= video.frames.min() and video.frames.max() <= 1.0
    meta = video.meta
    assert meta["manufacturer"] == "SonoSite, Inc." and meta["model"] == "Turbo"
    assert meta["photometric"] == "YBR_FULL_422" and meta["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.50"
    assert meta["sop_class_uid"] == US_MULTIFRAME_IMAGE_STORAGE and meta["patient_id"] == "204"
    assert meta["n_frames"] == 120 and meta["spacing_source"] == "SequenceOfUltrasoundRegions"
    assert meta["regions"][0]["box"] == [84, 31, 595, 414]
    assert meta["sector_geometry"]["opening_deg"] == pytest.approx(86, abs=4)
    assert "PatientName" not in json.dumps(meta) and "PLA" not in json.dumps(meta)
    assert video.view == "unknown"  # the file has no view description


def test_real_a4c_cine_uncropped_keeps_the_full_frame() -> None:
    video = read_dicom(A4C_CINE, crop_to_sector=False)
    assert video.shape == (480, 640) and "crop_box" not in video.meta
    assert video.sector is not None and not video.sector[:, :80].any() and not video.sector[440:].any()
    assert video.frames[:, :40, :80].max() > 0.5  # the UI text is still there


def test_real_ybr_copy() -> None:
    video = read_dicom(YBR_CINE, crop_to_sector=False)
    assert video.n_frames == 30 and video.shape == (240, 320)
    assert video.frame_time_ms == pytest.approx(33.333)
    assert video.spacing == pytest.approx((0.5105, 0.5105), abs=5e-5)
    assert video.sector is not None and video.sector[80:190, 120:220].all() and not video.sector[:, :38].any()


def test_real_jpeg_lossless_caliper_still() -> None:
    video = read_dicom(PLAX_STILL, crop_to_sector=False)
    assert video.n_frames == 1 and video.shape == (768, 1024) and video.frame_time_ms is None
    assert tuple(round(s, 4) for s in video.spacing or ()) == (0.2548, 0.2548)
    # The burned-in caliper reads "Asc Ao Diam 3.3 cm": 33 mm is about 130 pixels.
    assert 33.0 / video.spacing[1] == pytest.approx(129.5, abs=1)  # type: ignore[index]
    assert video.meta["transfer_syntax"].startswith("JPEG Lossless")
    assert video.frames.max() > 0.9
    assert video.sector is not None and not video.sector[:140].any() and not video.sector[:, 940:].any()


def test_real_rgb_still_without_calibration() -> None:
    video = read_dicom(RGB_STILL)
    assert video.n_frames == 1 and video.spacing is None and video.frame_time_ms is None
    assert video.meta["photometric"] == "RGB" and video.meta["colour_fraction"] > 0.05
    raw = pydicom.dcmread(RGB_STILL).pixel_array.astype(np.float32)
    luma = np.rint(raw @ np.array([0.299, 0.587, 0.114], np.float32)) / 255
    full = read_dicom(RGB_STILL, crop_to_sector=False)
    np.testing.assert_allclose(full.frames[0], luma, atol=1e-5)


def test_gzip_file_reads_like_the_original(tmp_path: Path) -> None:
    packed = tmp_path / "cine.dcm.gz"
    packed.write_bytes(gzip.compress(YBR_CINE.read_bytes()))
    a, b = read_dicom(YBR_CINE), read_dicom(packed)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.spacing == b.spacing and a.frame_time_ms == b.frame_time_ms


@pytest.mark.skipif(not PALETTE_CINE.exists(), reason="local GPL test file not available")
def test_local_palette_colour_rle_cine() -> None:
    video = read_dicom(PALETTE_CINE)
    assert video.n_frames == 10 and video.frame_time_ms == pytest.approx(76.0)
    assert video.spacing is None and video.view == "PLAX"  # series "PS LAX MR & AI"
    assert video.meta["photometric"] == "PALETTE COLOR" and video.meta["colour_fraction"] > 0.01
    r0, r1, c0, c1 = video.meta["crop_box"]
    assert r0 > 40 and c0 > 80 and c1 < 520  # the text columns and the thumbnail are out


@pytest.mark.skipif(not DEID_CINE.exists(), reason="local 43 MB test file not available")
def test_local_uncompressed_rgb_colour_doppler_cine() -> None:
    video = read_dicom(DEID_CINE)
    assert video.n_frames == 30 and video.frame_time_ms == pytest.approx(54.241)
    assert video.spacing == pytest.approx((0.3076, 0.3076), abs=5e-5)
    assert video.meta["manufacturer"] == "Philips Medical Systems" and video.meta["colour_fraction"] > 0.01
    r0, r1, c0, c1 = video.meta["crop_box"]
    assert c0 > 60 and c1 < 760 and r1 < 580  # colour bar, text, ECG stay out


# ====================================================================================== round trips
@pytest.mark.parametrize(("compression", "photometric"), [
    ("none", "MONOCHROME2"), ("none", "RGB"), ("rle", "MONOCHROME2"), ("rle", "RGB")])
def test_lossless_round_trip(tmp_path: Path, compression: str, photometric: str) -> None:
    video = phantom()
    path = write_dicom(video, tmp_path / "clip.dcm", photometric=photometric, compression=compression)
    back = read_dicom(path, crop_to_sector=False)
    np.testing.assert_array_equal(back.frames, as_stored(video))
    assert back.spacing == pytest.approx(video.spacing)
    assert back.frame_time_ms == pytest.approx(video.frame_time_ms)
    assert back.view == "4CH"
    assert back.sector is not None and iou(back.sector, video.sector) > 0.97  # type: ignore[arg-type]
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == photometric
    assert ds.SamplesPerPixel == (1 if photometric == "MONOCHROME2" else 3)
    expected = {"none": "1.2.840.10008.1.2.1", "rle": "1.2.840.10008.1.2.5"}[compression]
    assert ds.file_meta.TransferSyntaxUID == expected


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "YBR_FULL_422"])
def test_jpeg_baseline_round_trip(tmp_path: Path, photometric: str) -> None:
    video = phantom()
    path = write_dicom(video, tmp_path / "clip.dcm", photometric=photometric, compression="jpeg-baseline")
    back = read_dicom(path, crop_to_sector=False)
    assert np.abs(back.frames - as_stored(video)).mean() < 3 / 255
    assert back.spacing == pytest.approx(video.spacing) and back.frame_time_ms == pytest.approx(20.0)
    assert back.sector is not None and iou(back.sector, video.sector) > 0.95  # type: ignore[arg-type]
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.PhotometricInterpretation == photometric and ds.LossyImageCompression == "01"


def test_cropped_round_trip_keeps_the_fan(tmp_path: Path) -> None:
    video = phantom()
    back = read_dicom(write_dicom(video, tmp_path / "clip.dcm"))
    r0, r1, c0, c1 = back.meta["crop_box"]
    assert back.meta["original_size"] == [200, 260]
    assert video.sector is not None and back.sector is not None
    assert iou(back.sector, video.sector[r0:r1, c0:c1]) > 0.97
    inside = back.sector & video.sector[r0:r1, c0:c1]
    np.testing.assert_array_equal(back.frames[:, inside], as_stored(video)[:, r0:r1, c0:c1][:, inside])


@pytest.mark.parametrize(("photometric", "compression"), [
    ("MONOCHROME2", "none"), ("RGB", "rle"), ("YBR_FULL_422", "jpeg-baseline")])
def test_burned_in_ui_is_cropped_away(tmp_path: Path, photometric: str, compression: str) -> None:
    video = phantom(n_frames=8, shape=(240, 320), seed=1)
    path = write_dicom(video, tmp_path / "screen.dcm", photometric=photometric, compression=compression,
                       burn_in_ui=True)
    ds = pydicom.dcmread(path)
    f0, f1, g0, g1 = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[PRIVATE_FRAME_BOX].value
    assert (f1 - f0, g1 - g0) == (240, 320) and ds.Rows > 240 and ds.Columns > 320
    assert ds.BurnedInAnnotation == "YES"
    screen = read_dicom(path, crop_to_sector=False)
    assert screen.frames[:, :f0].max() > 0.5  # UI text above the frames
    assert screen.frames[:, f1:].max() > 0.3  # ECG below
    tolerance = 0 if compression != "jpeg-baseline" else 3 / 255
    placed = screen.frames[:, f0:f1, g0:g1]
    assert np.abs(placed - as_stored(video)).mean() <= tolerance
    # The fan is found among the UI both with and without the calibration region as a hint.
    truth = np.zeros(screen.shape, bool)
    truth[f0:f1, g0:g1] = video.sector  # type: ignore[assignment]
    assert iou(detect_sector(screen.frames).mask, truth) > 0.95
    back = read_dicom(path)
    r0, r1, c0, c1 = back.meta["crop_box"]
    assert back.sector is not None and iou(back.sector, truth[r0:r1, c0:c1]) > 0.95
    assert back.spacing == pytest.approx((0.3, 0.3)) and back.frame_time_ms == pytest.approx(20.0)


def test_written_attributes(tmp_path: Path) -> None:
    video = phantom(meta={"patient_id": "ANON-7", "study_instance_uid": "1.2.3.4.5"})
    ds = pydicom.dcmread(write_dicom(video, tmp_path / "clip.dcm"))
    assert ds.file_meta.MediaStorageSOPClassUID == US_MULTIFRAME_IMAGE_STORAGE == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "US" and ds.NumberOfFrames == 6
    assert ds.FrameIncrementPointer == 0x00181063
    assert float(ds.FrameTime) == pytest.approx(20.0) and ds.CineRate == 50
    assert ds.PatientID == "ANON-7" and ds.StudyInstanceUID == "1.2.3.4.5" and ds.PatientName == ""
    assert ds.SeriesDescription == "A4C"
    (region,) = ds.SequenceOfUltrasoundRegions
    assert (region.RegionSpatialFormat, region.RegionDataType) == (1, 1)
    assert (region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection) == (3, 3)
    assert region.PhysicalDeltaX == pytest.approx(0.03) and region.PhysicalDeltaY == pytest.approx(0.03)
    rows, cols = np.nonzero(video.sector)
    assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (cols.min(), rows.min())
    assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (cols.max(), rows.max())
    # The reference pixel is the probe apex (row 6, column 130), relative to the region corner.
    assert region.ReferencePixelX0 + region.RegionLocationMinX0 == pytest.approx(130, abs=2)
    assert region.ReferencePixelY0 + region.RegionLocationMinY0 == pytest.approx(6, abs=3)
    assert [float(v) for v in ds.PixelSpacing] == [0.3, 0.3]


@pytest.mark.parametrize(("photometric", "compression"), [
    ("MONOCHROME2", "none"), ("RGB", "rle"), ("YBR_FULL_422", "jpeg-baseline")])
def test_itk_gdcm_reads_the_output(tmp_path: Path, photometric: str, compression: str) -> None:
    """ITK's GDCM reader (the one behind 3D Slicer's DICOM volume loader) gets pixels and scale."""
    sitk = pytest.importorskip("SimpleITK")
    video = phantom()
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(write_dicom(video, tmp_path / "clip.dcm", photometric=photometric,
                                       compression=compression)))
    image = reader.Execute()
    assert image.GetSize() == (260, 200, 6) and image.GetSpacing()[:2] == pytest.approx((0.3, 0.3))
    pixels = sitk.GetArrayFromImage(image).astype(np.float32)
    gray = pixels if pixels.ndim == 3 else pixels[..., 0]
    assert np.abs(gray / 255 - as_stored(video)).mean() < 3 / 255


def test_single_frame_uses_us_image_storage(tmp_path: Path) -> None:
    video = phantom(n_frames=1, frame_time_ms=None, spacing=None, view="PLAX")
    path = write_dicom(video, tmp_path / "still.dcm", compression="rle")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == US_IMAGE_STORAGE and "NumberOfFrames" not in ds
    assert "SequenceOfUltrasoundRegions" not in ds  # no calibration is ever made up
    back = read_dicom(path, crop_to_sector=False)
    np.testing.assert_array_equal(back.frames, as_stored(video))
    assert back.spacing is None and back.frame_time_ms is None and back.view == "PLAX"


def test_uids_are_deterministic(tmp_path: Path) -> None:
    video = phantom()
    a = pydicom.dcmread(write_dicom(video, tmp_path / "a.dcm"))
    b = pydicom.dcmread(write_dicom(video, tmp_path / "b.dcm"))
    c = pydicom.dcmread(write_dicom(video, tmp_path / "c.dcm", compression="rle"))
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.StudyInstanceUID == b.StudyInstanceUID
    assert c.SOPInstanceUID != a.SOPInstanceUID
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()


def test_gzip_output_and_atomic_write(tmp_path: Path) -> None:
    video = phantom()
    path = write_dicom(video, tmp_path / "deep" / "clip.dcm.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_dicom(path, crop_to_sector=False).frames, as_stored(video))
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.dcm.gz"]  # no temporary left


@pytest.mark.parametrize(("photometric", "compression"), [
    ("RGB", "jpeg-baseline"), ("YBR_FULL_422", "none"), ("MONOCHROME1", "none"), ("MONOCHROME2", "jpeg2000")])
def test_unsupported_write_options(tmp_path: Path, photometric: str, compression: str) -> None:
    with pytest.raises(UnsupportedFormatError):
        write_dicom(phantom(), tmp_path / "x.dcm", photometric=photometric, compression=compression)
    assert not list(tmp_path.iterdir())


# ======================================================================================= tag logic
def rewrite(tmp_path: Path, edit: object, name: str = "edited.dcm") -> Path:
    """A written phantom modified by ``edit(dataset)``."""
    source = write_dicom(phantom(), tmp_path / "source.dcm")
    ds = pydicom.dcmread(source)
    edit(ds)  # type: ignore[operator]
    out = tmp_path / name
    ds.save_as(out, write_like_original=False)
    return out


def test_frame_time_fallbacks(tmp_path: Path) -> None:
    def vector(ds: Dataset) -> None:
        del ds.FrameTime, ds.CineRate, ds.RecommendedDisplayFrameRate
        ds.FrameTimeVector = [0, 40, 40, 41, 39, 40]

    def cine_rate(ds: Dataset) -> None:
        del ds.FrameTime, ds.RecommendedDisplayFrameRate
        ds.CineRate = 25

    def display_rate(ds: Dataset) -> None:
        del ds.FrameTime, ds.CineRate
        ds.RecommendedDisplayFrameRate = 50

    def nothing(ds: Dataset) -> None:
        del ds.FrameTime, ds.CineRate, ds.RecommendedDisplayFrameRate

    for edit, expected, source in ((vector, 40.0, "FrameTimeVector"), (cine_rate, 40.0, "CineRate"),
                                   (display_rate, 20.0, "RecommendedDisplayFrameRate"),
                                   (nothing, None, None)):
        video = read_dicom(rewrite(tmp_path, edit), crop_to_sector=False)
        assert video.frame_time_ms == (None if expected is None else pytest.approx(expected))
        assert video.meta["frame_time_source"] == source


def test_spacing_fallbacks(tmp_path: Path) -> None:
    def pixel_spacing(ds: Dataset) -> None:
        del ds.SequenceOfUltrasoundRegions
        ds.PixelSpacing = [0.25, 0.5]

    def millimetre_region(ds: Dataset) -> None:  # units other than cm are not a spacing
        ds.SequenceOfUltrasoundRegions[0].PhysicalUnitsXDirection = 0
        del ds.PixelSpacing

    def conflicting(ds: Dataset) -> None:  # the ultrasound region wins over PixelSpacing
        ds.PixelSpacing = [0.9, 0.9]

    def doppler_plus_tissue(ds: Dataset) -> None:
        doppler = copy.deepcopy(ds.SequenceOfUltrasoundRegions[0])
        doppler.RegionDataType, doppler.PhysicalDeltaX, doppler.PhysicalDeltaY = 2, 0.5, 0.5
        ds.SequenceOfUltrasoundRegions.insert(0, doppler)

    assert read_dicom(rewrite(tmp_path, pixel_spacing), crop_to_sector=False).spacing == (0.25, 0.5)
    assert read_dicom(rewrite(tmp_path, millimetre_region), crop_to_sector=False).spacing is None
    assert read_dicom(rewrite(tmp_path, conflicting), crop_to_sector=False).spacing == pytest.approx((0.3, 0.3))
    assert read_dicom(rewrite(tmp_path, doppler_plus_tissue), crop_to_sector=False).spacing == pytest.approx(
        (0.3, 0.3))


@pytest.mark.parametrize(("field", "value", "view"), [
    ("SeriesDescription", "Apical 4 chamber", "4CH"), ("SeriesDescription", "A2C zoom", "2CH"),
    ("ProtocolName", "PLAX", "PLAX"), ("SeriesDescription", "APLAX", "unknown"),
    ("SeriesDescription", "Echocardiogram", "unknown"), ("ViewCodeSequence", "Apical two chamber", "2CH")])
def test_view_from_tags(tmp_path: Path, field: str, value: str, view: str) -> None:
    def edit(ds: Dataset) -> None:
        ds.SeriesDescription = ""
        if field == "ViewCodeSequence":
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399232001", "SCT", value
            ds.ViewCodeSequence = [code]
        else:
            setattr(ds, field, value)

    assert read_dicom(rewrite(tmp_path, edit), crop_to_sector=False).view == view


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        ds.PhotometricInterpretation = "MONOCHROME1"

    video = read_dicom(rewrite(tmp_path, edit), crop_to_sector=False)
    np.testing.assert_allclose(video.frames, 1.0 - as_stored(phantom()), atol=1e-6)


def test_implicit_little_endian_and_headerless_files(tmp_path: Path) -> None:
    video = phantom()
    ds = pydicom.dcmread(write_dicom(video, tmp_path / "explicit.dcm"))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.is_implicit_VR = True
    ds.save_as(tmp_path / "implicit.dcm", write_like_original=False)
    ds.preamble = None
    del ds.file_meta  # a bare data set, as some old equipment writes
    ds.save_as(tmp_path / "bare.dcm", write_like_original=True)
    assert (tmp_path / "bare.dcm").read_bytes()[128:132] != b"DICM"
    for name in ("implicit.dcm", "bare.dcm"):
        back = read_dicom(tmp_path / name, crop_to_sector=False)
        np.testing.assert_array_equal(back.frames, as_stored(video))
        assert back.spacing == pytest.approx((0.3, 0.3))


def test_secondary_capture_with_modality_us_is_accepted(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"

    assert read_dicom(rewrite(tmp_path, edit)).n_frames == 6


# ========================================================================================= errors
def ct_dataset(with_pixels: bool = True) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if with_pixels:
        ds.PixelData = np.zeros((16, 16), np.uint16).tobytes()
    return ds


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="file not found") as err:
        read_dicom(tmp_path / "absent.dcm")
    assert str(tmp_path / "absent.dcm") in str(err.value)
    with pytest.raises(UnreadableFileError, match="folder"):
        read_dicom(tmp_path)


@pytest.mark.parametrize("content", [b"", b"patient,ef\n1,55\n" * 40, b"\x00" * 50])
def test_not_a_dicom(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.dcm"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as err:
        read_dicom(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fraction", [0.001, 0.004, 0.02, 0.5, 0.99])
@pytest.mark.parametrize("source", [YBR_CINE, RGB_STILL])
def test_truncated_real_file(tmp_path: Path, source: Path, fraction: float) -> None:
    data = source.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(UnreadableFileError) as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cine.dcm.gz"
    path.write_bytes(gzip.compress(YBR_CINE.read_bytes())[:5000])
    with pytest.raises(UnreadableFileError, match="gzip"):
        read_dicom(path)


def test_ct_is_not_ultrasound(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    ct_dataset().save_as(path, write_like_original=False)
    with pytest.raises(NotUltrasoundError, match="Modality is 'CT'") as err:
        read_dicom(path)
    assert "CT Image Storage" in str(err.value) and str(path) in str(err.value)


def test_ultrasound_without_pixel_data(tmp_path: Path) -> None:
    def drop_pixels(ds: Dataset) -> None:
        del ds.PixelData

    with pytest.raises(NoPixelDataError, match="no pixel data"):
        read_dicom(rewrite(tmp_path, drop_pixels))


def test_3d_volume_is_unsupported(tmp_path: Path) -> None:
    def volume(ds: Dataset) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.2"

    with pytest.raises(UnsupportedFormatError, match="3-D"):
        read_dicom(rewrite(tmp_path, volume))


def test_missing_decoder_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixel_data_handlers import numpy_handler, rle_handler

    monkeypatch.setattr(pydicom.config, "pixel_data_handlers", [numpy_handler, rle_handler])
    with pytest.raises(UnreadableFileError, match="pylibjpeg-libjpeg") as err:
        read_dicom(PLAX_STILL)
    assert "JPEG Lossless" in str(err.value)


def test_corrupt_compressed_pixels(tmp_path: Path) -> None:
    data = bytearray(YBR_CINE.read_bytes())
    start = data.index(b"\xff\xd8\xff")  # the first JPEG frame: wipe its tables
    data[start + 2:start + 102] = b"\x00" * 100
    path = tmp_path / "garbled.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match="JPEG Baseline .* cannot be decoded") as err:
        read_dicom(path)
    assert str(path) in str(err.value)


def test_errors_are_echoforge_errors() -> None:
    for error in (UnreadableFileError, NotUltrasoundError, NoPixelDataError, UnsupportedFormatError):
        assert issubclass(error, EchoForgeError)
