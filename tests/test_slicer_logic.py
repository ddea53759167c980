"""The Slicer module's numpy-only logic layer (``EchoForgeLib``) on its own, checked against the ``echoforge`` library.

The module measures with its copy of the library's numpy-only core (``EchoForgeCore``, checked to
be identical to ``echoforge.core`` in ``test_core.py``); files must be read and written the way
the library (and so the server) reads and writes them; the report, the multipart coding and the
annotation bookkeeping are checked directly.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoforge.io import volume as library_volume
from echoforge.phantom import make_patient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "EchoForge"))

from EchoForgeCore.clip import report_measurements  # noqa: E402 (the module folder is put on the path above)
from EchoForgeCore.volume import frame_layout, frames_from_slicer_array  # noqa: E402
from EchoForgeLib.annotations import FrameAnnotations  # noqa: E402
from EchoForgeLib.cine import frame_time_from_index, frames_kji, spacing_from_dicom  # noqa: E402
from EchoForgeLib.client import EchoForgeClient, _answer_error  # noqa: E402
from EchoForgeLib.errors import (  # noqa: E402
    AnnotationError,
    EchoForgeClientError,
    EchoForgeModuleError,
    ServerFailedError,
    ServerRejectedError,
    VolumeFormatError,
)
from EchoForgeLib.multipart import decode_multipart, encode_multipart  # noqa: E402
from EchoForgeLib.nrrd import read_nrrd  # noqa: E402
from EchoForgeLib.report import agreement, study_report, video_report  # noqa: E402
from EchoForgeLib.session import VideoSession  # noqa: E402
from EchoForgeLib.state import decode_states, encode_states, restore_session, session_state  # noqa: E402
from EchoForgeLib.volume import (  # noqa: E402
    parse_volume,
    read_volume,
    volume_from_frames,
    write_label_volume,
    write_volume,
)


@pytest.fixture(scope="module")
def phantoms():
    return {(seed, view): make_patient(seed).render(view, size=(128, 128)) for seed in (3, 4) for view in ("2CH", "4CH")}


# ---------------------------------------------------------------------- measurements
def test_the_module_measures_with_its_copy_of_the_core(phantoms):
    video = phantoms[(3, "4CH")]
    ours = report_measurements(video.labels, video.spacing, video.frame_time_ms)
    assert ours["available"] and 0 < ours["ef"] < 100 and len(ours["volumes_ml"]) == video.n_frames
    assert {"beats", "ef_mean", "ef_sd", "n_beats", "rhythm", "quality"} <= set(ours)
    assert report_measurements.__module__ == "EchoForgeCore.clip"


def test_an_unmeasurable_clip_is_reported_not_raised():
    labels = np.zeros((5, 32, 32), np.uint8)
    m = report_measurements(labels, (0.5, 0.5))
    assert m["available"] is False and "no LV cavity" in m["reason"] and m["ef"] is None
    with pytest.raises(EchoForgeModuleError, match="outside 0-3"):
        report_measurements(labels + 5, None)


# ---------------------------------------------------------------------- files and geometry
@pytest.mark.parametrize("extension", [".nii.gz", ".nii", ".nrrd"])
def test_volumes_read_and_write_like_the_library(tmp_path, extension):
    video = make_patient(5).render("4CH", size=(40, 52), n_frames=6).replace(spacing=(0.5, 0.4))
    path = tmp_path / f"video{extension}"
    library_volume.write_volume(video, path)
    ours, theirs = read_volume(path), library_volume.read_volume(path)
    np.testing.assert_array_equal(ours.frames, theirs.frames_uint8())
    assert ours.spacing == theirs.spacing and ours.frame_time_ms == pytest.approx(theirs.frame_time_ms)
    for label_extension in (".nii.gz", ".nrrd"):
        label_path = tmp_path / f"labels{label_extension}"
        write_label_volume(video.labels, ours, label_path, annotated_frames=[0, 3])
        written = library_volume.read_label_volume(label_path)  # what the server reads
        np.testing.assert_array_equal(written.labels, video.labels)
        assert written.annotated == (0, 3)
        library_volume.write_labels_like(video.labels, path, label_path, annotated=(1, 2))  # what the server writes
        back = read_volume(label_path)
        np.testing.assert_array_equal(back.frames, video.labels)
        assert back.annotated_frames == (1, 2)


def test_a_file_with_columns_along_its_first_axis_reads_upright_and_is_written_back_alike(tmp_path):
    labels = make_patient(2).render("2CH", size=(30, 44), n_frames=4).labels
    affine = np.diag([-0.4, -0.5, 1.0, 1.0])  # SimpleITK (CAMUS): axis 0 = columns, LPS identity
    image = nib.Nifti1Image(np.transpose(labels, (2, 1, 0)), affine)
    image.set_sform(affine, 1)
    image.header.set_xyzt_units("mm")
    nib.save(image, tmp_path / "camus.nii.gz")
    ours = read_volume(tmp_path / "camus.nii.gz")
    theirs = library_volume.read_label_volume(tmp_path / "camus.nii.gz")
    np.testing.assert_array_equal(ours.frames, theirs.labels)
    assert ours.spacing == theirs.spacing == (0.5, 0.4)
    write_label_volume(labels, ours, tmp_path / "back.nii.gz")
    back = nib.load(tmp_path / "back.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.transpose(labels, (2, 1, 0)))
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_allclose(back.header.get_qform(), affine, atol=1e-6)


def test_slicer_arrays_convert_with_the_orientation_rule():
    frames = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)  # T×H×W
    cases = {  # IJK→RAS: (file array from T×H×W frames)
        "echoforge (rows along i)": (np.array([[0, -0.4, 0], [-0.5, 0, 0], [0, 0, 1.0]]),
                                     lambda f: np.transpose(f, (1, 2, 0))),
        "itk (columns along i)": (np.diag([-0.4, -0.5, 1.0]), lambda f: np.transpose(f, (2, 1, 0))),
        "rows running anterior": (np.array([[0, -0.4, 0], [0.5, 0, 0], [0, 0, 1.0]]),
                                  lambda f: np.transpose(f[:, ::-1], (1, 2, 0))),
        "columns running right": (np.array([[0, 0.4, 0], [-0.5, 0, 0], [0, 0, 1.0]]),
                                  lambda f: np.transpose(f[:, :, ::-1], (1, 2, 0))),
    }
    for name, (directions, to_file) in cases.items():
        ijk = to_file(frames)
        kji = np.transpose(ijk, (2, 1, 0))  # what slicer.util.arrayFromVolume returns
        thw, layout = frames_from_slicer_array(kji, directions)
        np.testing.assert_array_equal(thw, frames, err_msg=name)
        assert layout.spacing == (0.5, 0.4), name
        np.testing.assert_array_equal(layout.to_slicer_array(thw), kji, err_msg=name)
    with pytest.raises(ValueError, match="do not fit"):
        frame_layout((3, 4, 2), np.eye(4)).from_frames(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("extension", [".nii.gz", ".nrrd"])
def test_uncalibrated_reads_as_uncalibrated_whichever_side_wrote_it(tmp_path, extension):
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 20), dtype=np.uint8)
    write_volume(volume_from_frames(frames, None), tmp_path / f"module{extension}")
    library_video = make_patient(5).render("4CH", size=(16, 20), n_frames=4).replace(spacing=None)
    library_volume.write_volume(library_video, tmp_path / f"library{extension}")
    for name in ("module", "library"):
        path = tmp_path / f"{name}{extension}"
        assert read_volume(path).spacing is None, name
        assert library_volume.read_volume(path).spacing is None, name
    back = read_volume(tmp_path / f"module{extension}")
    assert np.array_equal(back.frames, frames)
    np.testing.assert_array_equal(library_volume.read_volume(tmp_path / f"module{extension}").frames_uint8(), frames)


def test_long_frame_lists_survive_the_nifti_header(tmp_path):
    frames = np.zeros((60, 8, 8), np.uint8)
    drawn = list(range(0, 60, 2))  # longer than the 80-byte descrip: it goes in a comment extension
    like = volume_from_frames(frames, (0.4, 0.4))
    write_label_volume(frames, like, tmp_path / "labels.nii.gz", annotated_frames=drawn)
    assert read_volume(tmp_path / "labels.nii.gz").annotated_frames == tuple(drawn)
    assert library_volume.read_label_volume(tmp_path / "labels.nii.gz").annotated == tuple(drawn)
    assert nib.load(tmp_path / "labels.nii.gz").shape == (8, 8, 60)


def test_bad_files(tmp_path):
    for raw, words in ((b"", "empty"), (b"\x1f\x8b not gzip", "gzip"), (b"x" * 400, "not a NIfTI"),
                       (b"NRRD0004\ntype: uchar\n", "no end"),
                       (b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 10\nencoding: raw\n\n12", "truncated")):
        with pytest.raises(VolumeFormatError, match=words):
            parse_volume(raw, "upload")
    ascii_nrrd = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 1 1\nencoding: ascii\n\n-3 7\n"
    assert read_nrrd(ascii_nrrd).data.ravel().tolist() == [-3, 7]


# ---------------------------------------------------------------------- report
def test_report_files_are_strict_json_and_name_the_pictures_made_in_slicer(tmp_path):
    video = make_patient(4).render("4CH", size=(64, 64))
    report = video_report("patient0004_4CH", video.labels, video.spacing, video.frame_time_ms, out_dir=str(tmp_path),
                          annotated_frames=[0, 8], pictures={"curve_png": str(tmp_path / "curve.png")})
    written = json.loads(Path(report["report_json"]).read_text())  # strict: NaN written as null
    assert written["measurements"]["ef"] == pytest.approx(report["measurements"]["ef"])
    assert written["curve_png"] == str(tmp_path / "curve.png") and written["annotated_frames"] == [0, 8]
    no_spacing = video_report("uncalibrated", video.labels, None, out_dir=str(tmp_path))
    assert no_spacing["measurements"]["edv_disks_ml"] is None and no_spacing["spacing_mm"] is None
    one = study_report([report], str(tmp_path), {"patient0004_4CH": 60.0})
    assert "ef_agreement" not in one  # a Bland-Altman needs at least two videos with a reference
    two = study_report([report, {**report, "source": "second"}], str(tmp_path),
                       {"patient0004_4CH": 60.0, "second": 50.0}, pictures={"bland_altman_png": "ba.png"})
    assert two["ef_agreement"]["n"] == 2 and two["bland_altman_png"] == "ba.png"
    points = two["ef_bland_altman"]
    assert points["video"] == ["patient0004_4CH", "second"]
    assert points["difference"] == pytest.approx([report["measurements"]["ef"] - 60.0, report["measurements"]["ef"] - 50.0])
    assert not list(tmp_path.glob(".echoforge-*"))  # written atomically, nothing left half-written


def test_agreement_is_the_cores_and_takes_missing_values():
    from EchoForgeCore.agreement import agreement as core_agreement

    rng = np.random.default_rng(2)
    values, reference = list(rng.normal(55, 8, 9)), list(rng.normal(55, 8, 9))
    values[3] = None
    stats = agreement(values, reference)
    assert agreement is core_agreement
    assert stats["n"] == 8 and stats["n_dropped"] == 1 and math.isfinite(stats["loa_upper"])


# ---------------------------------------------------------------------- cines as Slicer holds them
def test_dicom_spacing_follows_the_librarys_rule(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from echoforge.io.dicom import read_dicom, write_dicom

    clip = make_patient(6).render("4CH", size=(40, 48), n_frames=3)
    for spacing in ((0.31, 0.27), None):
        path = write_dicom(clip.replace(spacing=spacing), tmp_path / f"cine_{bool(spacing)}.dcm")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert spacing_from_dicom(ds) == read_dicom(path, crop_to_sector=False).spacing
        assert (spacing_from_dicom(ds) is None) == (spacing is None)
    # two regions (a Doppler strip under the 2-D image), as the image-sequence plugin leaves at 1 mm
    path = write_dicom(clip.replace(spacing=(0.31, 0.27)), tmp_path / "two_regions.dcm")
    ds = pydicom.dcmread(path)
    doppler = Dataset()
    doppler.RegionSpatialFormat, doppler.RegionDataType = 3, 3
    doppler.PhysicalUnitsXDirection, doppler.PhysicalUnitsYDirection = 4, 7
    doppler.PhysicalDeltaX, doppler.PhysicalDeltaY = 0.01, 0.5
    ds.SequenceOfUltrasoundRegions = Sequence([*ds.SequenceOfUltrasoundRegions, doppler])
    del ds.PixelSpacing
    ds.save_as(path)
    assert spacing_from_dicom(pydicom.dcmread(path)) == pytest.approx((0.31, 0.27))
    assert spacing_from_dicom(pydicom.dcmread(path)) == read_dicom(path, crop_to_sector=False).spacing
    assert spacing_from_dicom(Dataset()) is None


def test_frame_time_from_the_plugins_rounded_index_values():
    for fps in (30.0, 49.7, 62.5):
        values = [f"{t / fps:.3f}" for t in range(40)]  # what DICOMImageSequencePlugin writes
        steps = {round((float(b) - float(a)) * 1000, 6) for a, b in zip(values, values[1:], strict=False)}
        assert len(steps) > 1 or 1000 / fps == pytest.approx(steps.pop())  # neighbours disagree by a ms
        assert frame_time_from_index(values, "s") == pytest.approx(1000 / fps, abs=1000 / 39 / 1000 + 1e-9)
        assert frame_time_from_index(values, "s", playback_fps=fps) == pytest.approx(1000 / fps, abs=1e-12)
        assert frame_time_from_index(values, "s", playback_fps=fps * 2) == frame_time_from_index(values, "s")
    assert frame_time_from_index(["0", "33.3", "66.6"], "ms") == pytest.approx(33.3)
    for values, unit in ((["1", "2", "3"], ""), (["1"], "s"), (["0", "0.1", "0.1"], "s"), (["a", "b"], "s")):
        assert frame_time_from_index(values, unit) is None, (values, unit)


def test_frames_of_scalar_vector_and_multivolume_arrays():
    rng = np.random.default_rng(1)
    scalar = rng.integers(0, 255, (5, 6, 7), dtype=np.uint8)
    np.testing.assert_array_equal(frames_kji(scalar, "scalar"), scalar)
    rgb = np.repeat(scalar[..., None], 3, axis=-1)
    np.testing.assert_allclose(frames_kji(rgb, "vector"), scalar, atol=1e-3)
    np.testing.assert_allclose(frames_kji(np.concatenate([rgb, rgb[..., :1]], -1), "vector"), scalar, atol=1e-3)
    multi = np.moveaxis(scalar, 0, -1)[None]  # [1, j, i, T]: time last
    np.testing.assert_array_equal(frames_kji(multi, "multivolume"), scalar)
    for array, kind, words in ((multi.repeat(2, axis=0), "multivolume", "3-D\\+t"), (scalar[..., None].repeat(5, -1),
                                                                                   "vector", "5 components"),
                               (scalar, "vector", "4-D")):
        with pytest.raises(VolumeFormatError, match=words):
            frames_kji(array, kind)


def test_session_state_round_trips_and_restores_the_bookkeeping():
    video = make_patient(8).render("2CH", size=(32, 40), n_frames=6)
    ours = volume_from_frames(video.frames_uint8(), video.spacing, video.frame_time_ms)
    session = VideoSession("patient0008_2CH", ours, suggested={"suggested_frames": [0, 4]})
    drawn = np.zeros_like(video.labels)
    drawn[[0, 2, 4]] = video.labels[[0, 2, 4]]
    session.annotations.update(drawn)
    session.annotations.remove_frame(2)
    session.mark_ed(0)
    session.reference_ef = 55.5
    session.result, session.result_info = video.labels, {"seconds": 0.1}
    states, problems = decode_states(encode_states([session_state(session)]))
    assert problems == []
    again = restore_session(states[0], ours.without_spacing(), video.labels)
    assert again.annotations.annotated_frames == [0, 4] and again.annotations.forgotten_frames == [2]
    assert (again.ed, again.reference_ef, again.video.spacing, again.suggested_frames) == (0, 55.5, ours.spacing, [0, 4])
    np.testing.assert_array_equal(again.result, video.labels)
    with pytest.raises(ValueError, match="frames"):
        restore_session(states[0], volume_from_frames(video.frames_uint8()[:3], None), video.labels[:3])


# ---------------------------------------------------------------------- client pieces and bookkeeping
def test_multipart_round_trip_with_binary_content():
    content = b"\r\n--\x00\xff binary \r\n\r\n" * 50
    body, content_type = encode_multipart({"params": json.dumps({"a": [1, 2]})},
                                          {"label": ("x.nii.gz", content, "application/octet-stream")})
    parts = decode_multipart(body, content_type)
    assert json.loads(parts["params"].content) == {"a": [1, 2]}
    assert parts["label"].content == content and parts["label"].filename == "x.nii.gz"
    with pytest.raises(ValueError, match="not a multipart"):
        decode_multipart(body, "application/json")


def test_server_answers_become_plain_errors():
    refused = _answer_error(422, json.dumps({"detail": "label values outside 0-3"}), "saving the annotation")
    assert isinstance(refused, ServerRejectedError) and refused.status == 422
    assert str(refused) == "The server refused saving the annotation: label values outside 0-3 (HTTP 422)."
    busy = _answer_error(429, json.dumps({"detail": "Training Task is Already Running"}), "starting training")
    assert "already running on the server" in str(busy)
    broken = _answer_error(500, "Internal Server Error", "segmenting video 'a'")
    assert isinstance(broken, ServerFailedError) and "failed while segmenting" in str(broken)
    assert EchoForgeClient("127.0.0.1:8000/").server_url == "http://127.0.0.1:8000"
    with pytest.raises(EchoForgeClientError, match="No server address"):
        EchoForgeClient("  ")


def test_annotation_bookkeeping():
    notes = FrameAnnotations(5, (4, 6))
    with pytest.raises(AnnotationError, match="No frame is annotated yet"):
        notes.submission()
    labels = np.zeros((5, 4, 6), np.uint8)
    labels[1, 1:3, 1:4] = 1
    labels[3, 0, 0] = 2
    assert notes.update(labels) == [1, 3] and notes.frames_by_segment() == {1: [1], 2: [3]}
    result = labels.copy()
    result[[0, 2, 4]] = 1  # the server's answer: every frame segmented, drawn frames unchanged
    assert notes.update(result, baseline=result) == [] and notes.annotated_frames == [1, 3]
    corrected = result.copy()
    corrected[4, 0, :] = 3
    assert notes.update(corrected, baseline=result) == [4] and notes.unknown_values() == set()
    corrected[3] = 0  # erased completely: no longer annotated
    assert notes.update(corrected, baseline=result) == [3]
    volume, frames = notes.submission()
    assert frames == [1, 4] and volume[0].max() == 0 and np.array_equal(volume[4], corrected[4])
    notes.set_frame(2, np.full((4, 6), 7, np.uint8))
    assert notes.unknown_values() == {7}
    with pytest.raises(AnnotationError, match="outside the video"):
        notes.set_frame(5, np.zeros((4, 6)))


def test_a_forgotten_frame_stays_out_until_its_drawing_changes():
    notes = FrameAnnotations(4, (3, 3))
    labels = np.zeros((4, 3, 3), np.uint8)
    labels[[1, 2], 1, 1] = 1
    notes.update(labels)
    notes.remove_frame(2)
    assert notes.annotated_frames == [1] and notes.forgotten_frames == [2]
    assert notes.update(labels) == [] and notes.annotated_frames == [1]  # a refresh does not bring it back
    assert not notes.update_frame(2, labels[2])
    result = labels.copy()
    result[[0, 3], 0, 0] = 1  # the server's answer for the other frames
    result[2] = 0
    result[2, 2, 2] = 1
    assert notes.update(result, baseline=result) == [] and notes.annotated_frames == [1]
    labels[2, 0, 2] = 3  # drawn on again (before any result): annotated again
    fresh = FrameAnnotations(4, (3, 3))
    fresh.update(labels)
    fresh.remove_frame(2)
    assert fresh.update_frame(2, labels[2]) is False
    redrawn = labels[2].copy()
    redrawn[0, 0] = 2
    assert fresh.update_frame(2, redrawn) is True and fresh.annotated_frames == [1, 2] and not fresh.forgotten_frames
