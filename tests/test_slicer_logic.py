"""The Slicer module's numpy-only logic layer (``EchoForgeLib``) on its own, checked against the ``echoforge`` library.

The module measures with its copy of the library's numpy-only core (``EchoForgeCore``, checked to
be identical to ``echoforge.core`` in ``test_core.py``); files must be read and written the way
the library (and so the server) reads and writes them; the report, the multipart coding and the
annotation bookkeeping are checked directly.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from echoforge.io import volume as library_volume
from echoforge.phantom import make_patient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "EchoForge"))

from EchoForgeCore.clip import report_measurements  # noqa: E402 (the module folder is put on the path above)
from EchoForgeCore.volume import frame_layout, frames_from_slicer_array  # noqa: E402
from EchoForgeLib.annotations import FrameAnnotations  # noqa: E402
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
from EchoForgeLib.png import encode_png  # noqa: E402
from EchoForgeLib.report import agreement, study_report, video_report  # noqa: E402
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
def test_report_files_are_valid_png_and_strict_json(tmp_path):
    video = make_patient(4).render("4CH", size=(64, 64))
    report = video_report("patient0004_4CH", video.frames_uint8(), video.labels, video.spacing,
                          video.frame_time_ms, out_dir=str(tmp_path), annotated_frames=[0, 8])
    written = json.loads(Path(report["report_json"]).read_text())  # strict: NaN written as null
    assert written["measurements"]["ef"] == pytest.approx(report["measurements"]["ef"])
    montage, curve = Image.open(report["montage_png"]), Image.open(report["curve_png"])
    assert montage.mode == curve.mode == "RGB" and curve.size == (960, 520) and montage.size[1] > 240
    no_spacing = video_report("uncalibrated", video.frames_uint8(), video.labels, None, out_dir=str(tmp_path))
    assert no_spacing["measurements"]["edv_disks_ml"] is None and Path(no_spacing["curve_png"]).exists()
    one = study_report([report], str(tmp_path), {"patient0004_4CH": 60.0})
    assert "ef_agreement" not in one  # a Bland-Altman needs at least two videos with a reference
    two = study_report([report, {**report, "source": "second"}], str(tmp_path),
                       {"patient0004_4CH": 60.0, "second": 50.0})
    assert two["ef_agreement"]["n"] == 2 and Image.open(two["bland_altman_png"]).size == (760, 640)


def test_agreement_takes_missing_values_and_png_round_trips():
    rng = np.random.default_rng(2)
    values, reference = list(rng.normal(55, 8, 9)), list(rng.normal(55, 8, 9))
    values[3] = None
    stats = agreement(values, reference)
    assert stats["n"] == 8 and stats["n_dropped"] == 1 and math.isfinite(stats["loa_upper"])
    image = rng.integers(0, 255, (7, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image)))), image)
    grey = image[..., 0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(grey)))), grey)


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
