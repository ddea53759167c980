"""DICOM SEG and echo SR files: exact label round trips, valid IODs, the measurements back, bad input refused."""

from __future__ import annotations

import shutil
import subprocess

import highdicom
import numpy as np
import pydicom
import pytest

from echoforge.errors import LabelShapeError, UnreadableFileError
from echoforge.io.dicom import read_dicom, write_dicom
from echoforge.io.dicom_seg import read_dicom_seg, save_dicom, uncrop, write_dicom_seg
from echoforge.io.dicom_sr import read_echo_sr, write_echo_sr
from echoforge.phantom import make_patient
from echoforge.report import measurements
from tests.orthanc import ensure_orthanc


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    """A phantom cine inside a scanner screen (so the video is a crop of the DICOM frames) and its labels."""
    root = tmp_path_factory.mktemp("segsr")
    phantom = make_patient(41).render_half_sequence("4CH", size=(96, 96))
    path = write_dicom(phantom, root / "cine.dcm", burn_in_ui=True)
    video = read_dicom(path)
    source = pydicom.dcmread(path, stop_before_pixels=True)
    return {"root": root, "video": video, "source": source, "labels": _labels(video)}


def _labels(video):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(video.n_frames, *video.shape)).astype(np.uint8)
    labels[:, :3] = 0
    return labels


def _validate(path):
    if ensure_orthanc() is None or shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        assert "Error" not in report, report


def test_seg_round_trip_is_exact_and_only_annotated_frames_travel(cine):
    video, labels = cine["video"], cine["labels"]
    frames = [0, video.n_frames // 2, video.n_frames - 1]
    partial = np.zeros_like(labels)
    partial[frames] = labels[frames]
    seg = write_dicom_seg(partial, cine["source"], frames, video.meta["crop_box"])
    assert seg.NumberOfFrames == 3 * len(frames) and seg.Rows == cine["source"].Rows
    path = save_dicom(seg, cine["root"] / "seg.dcm")
    back = read_dicom_seg(path, video.n_frames, video.meta["crop_box"])
    assert back.annotated == tuple(frames) and back.source_sop_instance_uid == cine["source"].SOPInstanceUID
    np.testing.assert_array_equal(back.labels, partial)
    _validate(path)
    parsed = highdicom.seg.Segmentation.from_dataset(pydicom.dcmread(path))
    pixels = parsed.get_pixels_by_source_frame(source_sop_instance_uid=str(cine["source"].SOPInstanceUID),
                                               source_frame_numbers=[f + 1 for f in frames], combine_segments=True)
    full = uncrop(partial, (cine["source"].Rows, cine["source"].Columns), video.meta["crop_box"])
    np.testing.assert_array_equal(pixels, full[frames])


def test_seg_refuses_labels_that_do_not_fit(cine):
    video = cine["video"]
    with pytest.raises(LabelShapeError, match="frames"):
        write_dicom_seg(cine["labels"][:-1], cine["source"], crop_box=video.meta["crop_box"])
    with pytest.raises(LabelShapeError, match="crop box"):
        write_dicom_seg(cine["labels"][:, :-1], cine["source"], crop_box=video.meta["crop_box"])
    with pytest.raises(LabelShapeError, match="annotated"):
        write_dicom_seg(cine["labels"], cine["source"], [video.n_frames], video.meta["crop_box"])


def test_seg_reader_refuses_what_it_cannot_place(cine):
    video = cine["video"]
    seg = write_dicom_seg(cine["labels"], cine["source"], [0, 1], video.meta["crop_box"])
    with pytest.raises(UnreadableFileError, match="outside"):
        read_dicom_seg(seg, 1, video.meta["crop_box"])  # a cine with fewer frames than the SEG says
    with pytest.raises(UnreadableFileError, match="its image is"):
        read_dicom_seg(seg, video.n_frames, video.meta["crop_box"], size=(32, 32))
    seg.PerFrameFunctionalGroupsSequence = seg.PerFrameFunctionalGroupsSequence[:-1]
    with pytest.raises(UnreadableFileError, match="frame descriptions"):
        read_dicom_seg(seg, video.n_frames, video.meta["crop_box"])
    with pytest.raises(UnreadableFileError, match="not a DICOM Segmentation"):
        read_dicom_seg(cine["source"], video.n_frames)


def test_echo_sr_carries_each_beat_and_the_mean(cine):
    phantom = make_patient(41).render_half_sequence("4CH", size=(96, 96))
    m = measurements(phantom.labels, phantom.spacing, phantom.frame_time_ms)
    beats = [{"ed": 0, "es": 6, "edv_ml": 120.0, "esv_ml": 50.0, "ef": 58.3},
             {"ed": 12, "es": 18, "edv_ml": 110.0, "esv_ml": 48.0, "ef": 56.4}]
    sr = write_echo_sr({**m, "beats": beats, "gls": -19.2}, cine["source"], view="4CH")
    path = save_dicom(sr, cine["root"] / "sr.dcm")
    _validate(path)
    highdicom.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(path))
    back = read_echo_sr(pydicom.dcmread(path))
    assert back["beats"] == beats
    assert back["mean"] == pytest.approx({"edv_ml": 115.0, "esv_ml": 49.0, "ef": 57.35})
    assert back["fac"] == pytest.approx(m["fac"], abs=1e-3) and back["gls"] == -19.2 and back["view"] == "4CH"
    template = pydicom.dcmread(path).ContentTemplateSequence[0]
    assert (template.MappingResource, template.TemplateIdentifier) == ("DCMR", "5200")


def test_echo_sr_of_a_video_without_spacing_has_ratios_only(cine):
    phantom = make_patient(41).render_half_sequence("4CH", size=(96, 96))
    m = measurements(phantom.labels, None, None)
    back = read_echo_sr(write_echo_sr(m, cine["source"]))
    assert back["beats"] == [{"ed": m["ed"], "es": m["es"], "ef": pytest.approx(m["ef"], abs=1e-3)}]
    assert back["view"] == "unknown" and back["mean"] == {}
