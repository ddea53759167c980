"""CAMUS readers on files written in the exact downloaded layouts (both releases)."""

import numpy as np
import pytest

from echoforge.errors import DatasetLayoutError, UnreadableFileError
from echoforge.io import load_video
from echoforge.io.camus import (
    CamusDataset,
    read_info_cfg,
    sequential_split,
    write_camus_splits,
    write_camus_view,
)
from tests.conftest import ellipse_labels


def _write_tree(root, release, n_patients=3):
    rng = np.random.default_rng(1)
    labels = ellipse_labels(7, (40, 36))
    for i in range(1, n_patients + 1):
        for view in ("2CH", "4CH"):
            from echoforge import EchoVideo

            video = EchoVideo(rng.random(labels.shape), spacing=(0.31, 0.154), view=view, ed=0, es=6)
            write_camus_view(root, f"patient{i:04d}", video.with_labels(labels),
                             {"Sex": "M", "Age": 61, "ImageQuality": "Medium", "EF": 42.5, "FrameRate": 25.0},
                             release=release)
    return labels


@pytest.mark.parametrize("release", ["nifti", "mhd"])
def test_reads_both_releases(tmp_path, release):
    labels = _write_tree(tmp_path, release)
    camus = CamusDataset(tmp_path)
    assert camus.release == release
    assert camus.patients == ["patient0001", "patient0002", "patient0003"]
    assert camus.views("patient0002") == ["2CH", "4CH"]
    video = camus.load("patient0002", "4CH")
    assert video.frames.shape == labels.shape
    assert video.spacing == pytest.approx((0.31, 0.154))
    assert video.frame_time_ms == pytest.approx(40.0)
    assert (video.ed, video.es, video.view) == (0, 6, "4CH")
    assert video.meta["reference_ef"] == pytest.approx(42.5)
    if release == "nifti":  # the 2023 half sequences are labelled on every frame
        assert video.annotated == tuple(range(7))
        np.testing.assert_array_equal(video.labels, labels)
    else:  # the first release labels only ED and ES
        assert video.annotated == (0, 6)
        np.testing.assert_array_equal(video.labels[[0, 6]], labels[[0, 6]])
    ed = camus.load("patient0002", "4CH", "ED")
    assert ed.n_frames == 1 and ed.annotated == (0,)
    np.testing.assert_array_equal(ed.labels[0], labels[0])


def test_camus_file_opened_directly_gets_its_context(tmp_path):
    _write_tree(tmp_path, "nifti", 1)
    path = tmp_path / "database_nifti" / "patient0001" / "patient0001_2CH_half_sequence.nii.gz"
    video = load_video(path)
    assert video.view == "2CH" and video.ed == 0 and video.es == 6 and video.has_labels


def test_reversed_half_sequence_keeps_file_order(tmp_path):
    _write_tree(tmp_path, "nifti", 1)
    cfg = tmp_path / "database_nifti" / "patient0001" / "Info_4CH.cfg"
    cfg.write_text(cfg.read_text().replace("ED: 1", "ED: 7").replace("ES: 7", "ES: 1"))
    video = CamusDataset(tmp_path).load("patient0001", "4CH")
    assert (video.ed, video.es) == (6, 0)


def test_splits(tmp_path):
    _write_tree(tmp_path, "nifti", 3)
    write_camus_splits(tmp_path, {"training": ["patient0001", "patient0003"], "validation": ["patient0002"],
                                  "testing": []})
    camus = CamusDataset(tmp_path)
    assert camus.split("training") == ["patient0001", "patient0003"]
    assert CamusDataset(tmp_path / "database_nifti").split("validation") == ["patient0002"]
    ids = [f"patient{i:04d}" for i in range(1, 501)]
    split = sequential_split(ids)
    assert (split["training"][0], split["training"][-1]) == ("patient0001", "patient0350")
    assert (split["validation"][0], split["validation"][-1]) == ("patient0351", "patient0400")
    assert (split["testing"][0], split["testing"][-1]) == ("patient0401", "patient0500")


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError):
        CamusDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="patientXXXX"):
        _ = CamusDataset(tmp_path / "empty").patients
    _write_tree(tmp_path / "c", "nifti", 1)
    with pytest.raises(DatasetLayoutError, match="not found"):
        CamusDataset(tmp_path / "c").load("patient0009", "4CH")
    cfg = tmp_path / "c" / "database_nifti" / "patient0001" / "Info_2CH.cfg"
    cfg.write_text("ED: x\n")
    with pytest.raises(DatasetLayoutError, match="ED"):
        read_info_cfg(cfg)
    with pytest.raises(UnreadableFileError):
        read_info_cfg(tmp_path / "missing.cfg")


def test_truncated_mhd_raw(tmp_path):
    _write_tree(tmp_path, "mhd", 1)
    raw = tmp_path / "patient0001" / "patient0001_4CH_sequence.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(UnreadableFileError, match="truncated"):
        CamusDataset(tmp_path).load("patient0001", "4CH")
