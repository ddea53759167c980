"""NIfTI / NRRD volumes H×W×T: round trips, orientation as Slicer shows it, header fields, bad files."""

import gzip

import nibabel as nib
import nrrd
import numpy as np
import pytest

from echoforge import EchoVideo
from echoforge.errors import (
    InvalidVideoError,
    LabelShapeError,
    LabelValueError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from echoforge.io import load_video, save_video
from echoforge.io.volume import attach_labels, read_volume, write_labels, write_volume


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd"])
def test_round_trip(small_video, tmp_path, ext):
    write_volume(small_video, tmp_path / f"v{ext}")
    write_labels(small_video, tmp_path / f"l{ext}")
    video = read_volume(tmp_path / f"v{ext}", tmp_path / f"l{ext}")
    assert video.frames.shape == small_video.frames.shape
    assert np.abs(video.frames - small_video.frames).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(video.labels, small_video.labels)
    assert video.annotated == (0, 5)
    assert video.spacing == pytest.approx(small_video.spacing)
    assert video.frame_time_ms == pytest.approx(33.3)
    assert (video.view, video.ed, video.es) == ("4CH", 0, 5)


def test_file_is_frame_axis_last_and_upright_for_slicer(small_video, tmp_path):
    write_volume(small_video, tmp_path / "v.nii.gz")
    img = nib.load(tmp_path / "v.nii.gz")
    assert img.shape == (48, 64, 6)  # H × W × T
    assert nib.aff2axcodes(img.affine) == ("P", "L", "S")  # rows go down (posterior), columns to screen right
    assert img.header.get_zooms()[:2] == pytest.approx((0.5, 0.4))
    data, header = nrrd.read(str(write_volume(small_video, tmp_path / "v.nrrd")), index_order="F")
    assert data.shape == (48, 64, 6)
    assert header["space"] == "left-posterior-superior"


def test_itk_style_file_is_reoriented(small_video, tmp_path):
    # SimpleITK writes x = column; identity LPS direction = RAS diag(-1, -1, 1)
    sy, sx = small_video.spacing
    arr = np.transpose(small_video.frames_uint8(), (2, 1, 0))
    nib.save(nib.Nifti1Image(arr, np.diag([-sx, -sy, 1.0, 1.0])), tmp_path / "itk.nii.gz")
    video = read_volume(tmp_path / "itk.nii.gz")
    np.testing.assert_array_equal(video.frames_uint8(), small_video.frames_uint8())
    assert video.spacing == pytest.approx((sy, sx))


def test_slicer_sequence_nrrd_with_list_axis(small_video, tmp_path):
    frames = small_video.frames_uint8()  # T, H, W
    data = np.transpose(frames, (0, 2, 1))  # list axis first, then x = column, y = row (Fortran order)
    header = {"kinds": ["list", "domain", "domain"], "space": "left-posterior-superior",
              "space directions": [[np.nan] * 3, [0.4, 0, 0], [0, 0.5, 0]],
              "axis 0 index values": " ".join(f"{t * 0.0333:.4f}" for t in range(6)), "axis 0 unit": "s"}
    nrrd.write(str(tmp_path / "cine.seq.nrrd"), data, header, index_order="F")
    video = load_video(tmp_path / "cine.seq.nrrd")
    np.testing.assert_array_equal(video.frames_uint8(), frames)
    assert video.spacing == pytest.approx((0.5, 0.4))
    assert video.frame_time_ms == pytest.approx(33.3, abs=0.1)


def test_many_annotated_frames_survive_the_nifti_header(small_video, tmp_path):
    labels = np.repeat(small_video.labels[:1], 40, axis=0)
    video = EchoVideo(np.zeros((40, 48, 64)), spacing=(0.5, 0.4)).with_labels(labels, list(range(0, 40, 2)))
    write_volume(video, tmp_path / "v.nii.gz")
    write_labels(video, tmp_path / "l.nii.gz")
    assert read_volume(tmp_path / "v.nii.gz", tmp_path / "l.nii.gz").annotated == tuple(range(0, 40, 2))


def test_bad_files(tmp_path, small_video):
    with pytest.raises(UnreadableFileError, match="not found"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(UnreadableFileError, match="junk.nii.gz"):
        read_volume(tmp_path / "junk.nii.gz")
    write_volume(small_video, tmp_path / "v.nii.gz")
    raw = gzip.decompress((tmp_path / "v.nii.gz").read_bytes())
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(UnreadableFileError):
        read_volume(tmp_path / "cut.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 4, 2), np.uint8), np.eye(4)), tmp_path / "5d.nii.gz")
    with pytest.raises(InvalidVideoError, match="shape"):
        read_volume(tmp_path / "5d.nii.gz")
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(UnsupportedFormatError):
        load_video(tmp_path / "notes.txt")
    with pytest.raises(UnsupportedFormatError):
        save_video(small_video, tmp_path / "out.png")


def test_labels_checked_against_video(small_video, tmp_path):
    write_volume(small_video, tmp_path / "v.nii.gz")
    video = read_volume(tmp_path / "v.nii.gz")
    other = small_video.resized((24, 32))
    write_labels(other, tmp_path / "small_labels.nii.gz")
    with pytest.raises(LabelShapeError, match="small_labels"):
        attach_labels(video, tmp_path / "small_labels.nii.gz")
    bad = small_video.labels.copy()
    bad[0, 0, 0] = 9
    nib.save(nib.Nifti1Image(np.transpose(bad, (1, 2, 0)), np.diag([0, 0, 1, 1]) + np.array(
        [[0, -0.4, 0, 0], [-0.5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])), tmp_path / "bad.nii.gz")
    with pytest.raises(LabelValueError, match="9"):
        attach_labels(video, tmp_path / "bad.nii.gz")


def test_failed_write_leaves_no_file(small_video, tmp_path, monkeypatch):
    import nibabel

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nibabel, "save", broken_save)
    with pytest.raises(OSError):
        write_volume(small_video, tmp_path / "v.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out_ext", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("ref_kind", ["itk", "ours", "nrrd"])
def test_labels_written_on_the_reference_geometry(small_video, tmp_path, out_ext, ref_kind):
    from echoforge.io.volume import read_label_volume, write_labels_like

    sy, sx = small_video.spacing
    if ref_kind == "itk":  # x = column, like CAMUS / SimpleITK files
        ref = tmp_path / "ref.nii.gz"
        nib.save(nib.Nifti1Image(np.transpose(small_video.frames_uint8(), (2, 1, 0)),
                                 np.diag([-sx, -sy, 1.0, 1.0])), ref)
    else:
        ref = write_volume(small_video, tmp_path / ("ref.nii.gz" if ref_kind == "ours" else "ref.nrrd"))
    out = write_labels_like(small_video.labels, ref, tmp_path / f"labels{out_ext}", annotated=(0, 5))
    back = read_label_volume(out)
    np.testing.assert_array_equal(back.labels, small_video.labels)
    assert back.spacing == pytest.approx((sy, sx))
    video = read_volume(ref, out)
    assert video.annotated == (0, 5)
    if ref_kind == "itk" and out_ext == ".nii.gz":  # same axis order and affine as the reference file
        assert nib.load(out).shape == nib.load(ref).shape
        np.testing.assert_allclose(nib.load(out).affine, nib.load(ref).affine)


def test_a_video_without_calibration_stays_uncalibrated(small_video, tmp_path):
    from echoforge.io.volume import read_label_volume, write_labels_like

    video = small_video.replace(spacing=None)
    for ext in (".nii.gz", ".nrrd"):
        write_volume(video, tmp_path / f"v{ext}")
        assert read_volume(tmp_path / f"v{ext}").spacing is None  # the header's nominal 1 mm is not reported
        write_labels_like(video.labels, tmp_path / f"v{ext}", tmp_path / f"l{ext}")
        assert read_label_volume(tmp_path / f"l{ext}").spacing is None
