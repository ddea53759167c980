"""EchoNet-Dynamic reader on a folder written in the exact downloaded layout."""

import numpy as np
import pytest

from echoforge import EchoVideo
from echoforge.errors import DatasetLayoutError, UnreadableFileError
from echoforge.io.avi import write_avi
from echoforge.io.echonet import EchoNetDataset, mask_to_tracing, tracing_to_mask, write_echonet


def _ellipse_mask(shape, centre, axes):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((xx - centre[0]) / axes[0]) ** 2 + ((yy - centre[1]) / axes[1]) ** 2 <= 1.0


def _tracing(shape, centre, axes):
    mask = _ellipse_mask(shape, centre, axes)
    return mask, mask_to_tracing(mask, apex=(centre[0], centre[1] - axes[1]), base_mid=(centre[0], centre[1] + axes[1]))


def test_tracing_round_trip_matches_the_mask():
    mask, tracing = _tracing((112, 112), (56, 50), (18, 34))
    assert tracing.shape == (21, 4)
    rebuilt = tracing_to_mask(tracing, mask.shape)
    dice = 2 * (rebuilt & mask).sum() / (rebuilt.sum() + mask.sum())
    assert dice > 0.93  # the chord polygon leaves out the apical and basal caps, as EchoNet's does


def _write_dataset(root, n=5, traced=True):
    rng = np.random.default_rng(3)
    entries = []
    for i in range(n):
        name = f"0X{i:016X}"
        write_avi(EchoVideo(rng.random((20, 112, 112)), frame_time_ms=20.0), root / "Videos" / f"{name}.avi")
        tracings = {}
        if traced and i != n - 1:  # the last video has no tracing, as a few in the release
            _, small = _tracing((112, 112), (56, 52), (14, 28))
            _, large = _tracing((112, 112), (56, 50), (19, 34))
            tracings = {12: small, 3: large}
        entries.append({"FileName": name, "EF": 55.0 + i, "ESV": 40.0, "EDV": 90.0, "FrameHeight": 112,
                        "FrameWidth": 112, "FPS": 50, "NumberOfFrames": 20,
                        "Split": ["TRAIN", "TRAIN", "VAL", "TEST", "TEST"][i], "tracings": tracings})
    write_echonet(root, entries)


def test_reads_the_layout(tmp_path):
    _write_dataset(tmp_path)
    echonet = EchoNetDataset(tmp_path)
    assert len(echonet.files) == 5
    assert echonet.split("train") == echonet.files[:2]
    assert len(echonet.split("TEST")) == 2
    video = echonet.load(echonet.files[0])
    assert video.n_frames == 20 and video.shape == (112, 112)
    assert video.annotated == (3, 12)
    assert (video.ed, video.es) == (3, 12)  # the larger tracing is ED
    assert video.spacing is None  # EchoNet carries no calibration
    assert video.frame_time_ms == pytest.approx(20.0)
    assert video.meta["reference_ef"] == pytest.approx(55.0)
    assert set(np.unique(video.labels)) == {0, 1}


def test_video_without_tracing_loads_unlabelled(tmp_path):
    _write_dataset(tmp_path)
    echonet = EchoNetDataset(tmp_path)
    video = echonet.load(echonet.files[-1])
    assert not video.has_labels and video.ed is None


def test_incomplete_tracings_are_discarded(tmp_path):
    _write_dataset(tmp_path)
    lines = (tmp_path / "VolumeTracings.csv").read_text().splitlines()
    name = EchoNetDataset(tmp_path).files[1]
    # drop one chord of frame 12 of the second video
    drop = next(i for i, line in enumerate(lines) if line.startswith(name) and line.endswith(",12"))
    (tmp_path / "VolumeTracings.csv").write_text("\n".join(lines[:drop] + lines[drop + 1:]) + "\n")
    echonet = EchoNetDataset(tmp_path)
    assert sorted(echonet.tracings(name)) == [3]
    assert echonet.load(name).annotated == (3,)


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="FileList.csv"):
        EchoNetDataset(tmp_path)
    _write_dataset(tmp_path, traced=False)
    echonet = EchoNetDataset(tmp_path)
    with pytest.raises(DatasetLayoutError, match="not listed"):
        echonet.load("0XDEADBEEF")
    (tmp_path / "Videos" / f"{echonet.files[0]}.avi").write_bytes(b"RIFF....AVI garbage")
    with pytest.raises(UnreadableFileError):
        echonet.load(echonet.files[0])
    (tmp_path / "Videos" / f"{echonet.files[1]}.avi").unlink()
    with pytest.raises(UnreadableFileError, match="not found"):
        echonet.load(echonet.files[1])
