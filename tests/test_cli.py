"""The ``echoforge`` command as a user runs it: real processes, real files, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from echoforge.engine.checkpoint import save_checkpoint
from echoforge.io import load_video
from echoforge.io.camus import CamusDataset
from echoforge.io.dicom import read_dicom
from echoforge.io.echonet import EchoNetDataset
from echoforge.io.studies import StudiesDataset
from echoforge.nets import build_model
from tests.conftest import REAL_A4C


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "echoforge.cli", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same three phantom patients in every layout."""
    root = tmp_path_factory.mktemp("layouts")
    for layout in ("camus", "camus-mhd", "nifti", "dicom", "echonet"):
        size = ["--size", "112", "112"] if layout == "echonet" else ["--size", "96", "96"]
        run("phantom", "--out", str(root / layout), "--layout", layout, "--patients", "3", "--seed", "5",
            "--labelled", "all", "--quiet", *size)
    return root


def test_help_reads_well():
    out = run("--help").stdout
    for command in ("inspect", "measure", "phantom", "convert", "segment", "train", "evaluate", "export", "serve"):
        assert command in out
    assert "usage: echoforge" in run("segment", "--help").stdout


def test_the_same_phantom_reads_identically_in_every_layout(layouts):
    camus = CamusDataset(layouts / "camus").load("patient0002", "4CH")
    mhd = CamusDataset(layouts / "camus-mhd").load("patient0002", "4CH")
    np.testing.assert_array_equal(camus.frames_uint8(), mhd.frames_uint8())
    np.testing.assert_array_equal(camus.labels[[camus.ed, camus.es]], mhd.labels[[mhd.ed, mhd.es]])
    assert camus.spacing == pytest.approx(mhd.spacing, rel=1e-5)
    info = CamusDataset(layouts / "camus").info("patient0002", "4CH")
    assert 15 <= info["EF"] <= 75 and info["ED"] == 1

    studies = StudiesDataset(layouts / "nifti")
    full = studies.load("patient0002_4CH", labels="reference")
    dicom = read_dicom(layouts / "dicom" / "patient0002" / "patient0002_4CH.dcm", crop_to_sector=False)
    np.testing.assert_array_equal(dicom.frames_uint8(), full.frames_uint8())
    assert dicom.spacing == pytest.approx(full.spacing, rel=1e-4)
    assert dicom.frame_time_ms == pytest.approx(full.frame_time_ms, rel=1e-4)
    assert studies.manifest["patient0002_4CH"]["meta"]["true_ef"] == pytest.approx(info["EF"], abs=0.01)

    echonet = EchoNetDataset(layouts / "echonet")
    video = echonet.load(echonet.files[1])
    assert video.annotated == tuple(sorted((video.ed, video.es))) and video.meta["reference_ef"] > 0
    rows = (layouts / "echonet" / "VolumeTracings.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 * 21  # header + 2 traced frames × 21 rows per video


def test_inspect_file_folder_and_json(layouts):
    out = run("inspect", str(layouts / "camus" / "database_nifti" / "patient0001" / "patient0001_2CH_half_sequence.nii.gz"))
    assert "spacing mm" in out.stdout and "2CH" in out.stdout
    summary = json.loads(run("inspect", str(REAL_A4C), "--json").stdout)
    assert summary["frames"] == 120 and summary["spacing_mm"] == pytest.approx([0.5105, 0.5105], abs=1e-4)
    assert json.loads(run("inspect", str(layouts / "echonet"), "--json").stdout)["layout"] == "echonet"
    assert json.loads(run("inspect", str(layouts / "camus"), "--json").stdout)["patients"] == 3


def test_measure_single_and_biplane(layouts, tmp_path):
    folder = layouts / "nifti" / "reference"
    single = json.loads(run("measure", str(folder / "patient0001_4CH.nii.gz"), "--json",
                            "--curve-png", str(tmp_path / "curve.png")).stdout)
    assert single["available"] and single["edv_disks_ml"] > single["esv_disks_ml"] > 0
    assert (tmp_path / "curve.png").stat().st_size > 1000
    both = json.loads(run("measure", str(folder / "patient0001_4CH.nii.gz"), "--labels-2ch",
                          str(folder / "patient0001_2CH.nii.gz"), "--json").stdout)
    true_ef = StudiesDataset(layouts / "nifti").manifest["patient0001_4CH"]["meta"]["true_ef"]
    assert both["ef"] == pytest.approx(true_ef, abs=2.0)
    assert "EDV" not in run("measure", str(folder / "patient0001_4CH.nii.gz")).stderr


def test_convert_dicom_to_nifti_keeps_spacing(tmp_path):
    run("convert", str(REAL_A4C), "--out", str(tmp_path / "cine.nii.gz"))
    video = load_video(tmp_path / "cine.nii.gz")
    assert video.n_frames == 120 and video.spacing == pytest.approx((0.5105, 0.5105), abs=1e-4)
    assert video.frame_time_ms == pytest.approx(33.333, abs=0.01)


@pytest.mark.parametrize("args,words", [
    (("inspect", "missing.dcm"), "file not found"),
    (("inspect", "{ct}"), "not an ultrasound DICOM"),
    (("inspect", "{txt}"), "unknown file type"),
    (("convert", "{truncated}", "--out", "{out}"), ""),
    (("measure", "{bad_labels}"), "outside 0-3"),
    (("measure", "{empty_labels}"), "no foreground"),
    (("segment", "{video}", "--labels", "{small_labels}", "--out", "{out}", "--model", "{model}"), "differs"),
    (("segment", "{video}", "--labels", "{drawn}", "--annotated", "0,99", "--out", "{out}", "--model", "{model}"),
     "outside the video"),
    (("segment", "{video}", "--out", "{out}", "--model", "{txt}"), "not a readable model file"),
    (("segment", "{video}", "--labels", "{drawn}", "--prior-blend", "1.5", "--out", "{out}", "--model", "{model}"),
     "between 0 and 1"),
    (("segment", "{video}", "--labels", "{drawn}", "--prior-blend", "nan", "--out", "{out}", "--model", "{model}"),
     "between 0 and 1"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(args, words, tmp_path, layouts):
    import nibabel as nib
    import pydicom

    from echoforge.io.volume import read_volume, write_labels_like

    ref = layouts / "nifti" / "reference" / "patient0001_4CH.nii.gz"
    video_path = layouts / "nifti" / "patient0001_4CH.nii.gz"
    video = read_volume(video_path, ref)
    ct = pydicom.dcmread(layouts / "dicom" / "patient0001" / "patient0001_4CH.dcm")
    ct.Modality, ct.SOPClassUID = "CT", "1.2.840.10008.5.1.4.1.1.2"
    ct.save_as(tmp_path / "ct.dcm")
    (tmp_path / "notes.txt").write_text("hello")
    raw = REAL_A4C.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[: len(raw) // 3])
    bad = video.labels.copy()
    bad[0, 0, 0] = 9
    write_labels_like(bad, video_path, tmp_path / "bad.nii.gz")
    write_labels_like(np.zeros_like(bad), video_path, tmp_path / "empty.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), tmp_path / "small.nii.gz")
    write_labels_like(np.where(np.arange(video.n_frames)[:, None, None] == 0, video.labels, 0), video_path,
                      tmp_path / "drawn.nii.gz")
    net = build_model("tiny")
    save_checkpoint(tmp_path / "tiny.pt", net, net.config)
    names = {"ct": tmp_path / "ct.dcm", "txt": tmp_path / "notes.txt", "truncated": tmp_path / "cut.dcm",
             "out": tmp_path / "out.nii.gz", "bad_labels": tmp_path / "bad.nii.gz",
             "empty_labels": tmp_path / "empty.nii.gz", "video": video_path, "small_labels": tmp_path / "small.nii.gz",
             "drawn": tmp_path / "drawn.nii.gz", "model": tmp_path / "tiny.pt"}
    done = run(*(a.format(**names) for a in args), check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert words in done.stderr
    assert not (tmp_path / "out.nii.gz").exists() and not list(tmp_path.glob(".*part*"))


def test_segment_with_the_shipped_demo_model(layouts, tmp_path):
    video = layouts / "nifti" / "patient0003_2CH.nii.gz"
    run("segment", str(video), "--out", str(tmp_path / "seg.nrrd"), "--report", str(tmp_path / "report.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    n = load_video(video).n_frames
    assert report["frames"] == n and report["measurements"]["available"]
    true_ef = StudiesDataset(layouts / "nifti").manifest["patient0003_2CH"]["meta"]["true_ef"]
    assert abs(report["measurements"]["ef"] - true_ef) < 15  # single plane, phantom-trained demo model
    assert (tmp_path / "seg_overlay.png").exists() and (tmp_path / "report_volume_curve.png").exists()
    assert load_video(video, labels=tmp_path / "seg.nrrd").annotated == tuple(range(n))  # LV found on every frame


def test_segment_a_camus_file_uses_drawn_frames_only_when_given(layouts, tmp_path):
    """A CAMUS file inside its dataset tree has its reference beside it: that is not a drawing."""
    torch.manual_seed(0)
    net = build_model("tiny")
    save_checkpoint(tmp_path / "tiny.pt", net, net.config)
    folder = layouts / "camus" / "database_nifti" / "patient0001"
    video, gt = folder / "patient0001_4CH_half_sequence.nii.gz", folder / "patient0001_4CH_half_sequence_gt.nii.gz"
    reference = load_video(gt).frames  # the _gt file read as a volume: its values are the labels
    run("segment", str(video), "--out", str(tmp_path / "auto.nii.gz"), "--report", str(tmp_path / "auto.json"),
        "--model", str(tmp_path / "tiny.pt"))
    assert json.loads((tmp_path / "auto.json").read_text())["annotated_frames"] == []
    auto = load_video(video, labels=None)
    from echoforge.io.volume import read_label_volume

    predicted = read_label_volume(tmp_path / "auto.nii.gz").labels
    assert predicted.shape == auto.frames.shape and not np.array_equal(predicted, np.rint(reference * 255))
    run("segment", str(video), "--labels", str(gt), "--annotated", "0", "--out", str(tmp_path / "rest.nii.gz"),
        "--report", str(tmp_path / "rest.json"), "--model", str(tmp_path / "tiny.pt"))
    assert json.loads((tmp_path / "rest.json").read_text())["annotated_frames"] == [0]


def test_evaluate_and_export_from_the_command_line(layouts, tmp_path):
    torch.manual_seed(0)
    net = build_model("tiny")
    save_checkpoint(tmp_path / "tiny.pt", net, net.config)
    run("evaluate", "--model", str(tmp_path / "tiny.pt"), "--data", str(layouts / "camus"), "--layout", "camus",
        "--out", str(tmp_path / "eval"), "--quiet")
    summary = json.loads((tmp_path / "eval" / "report.json").read_text())["summary"]
    assert summary["videos"] >= 2 and "all_dice_mean" in summary and (tmp_path / "eval" / "report.md").exists()
    run("export", "--model", str(tmp_path / "tiny.pt"), "--format", "torchscript", "--out",
        str(tmp_path / "m.ts"), "--frames", "2")
    assert (tmp_path / "m.ts").stat().st_size > 1000
