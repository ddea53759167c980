"""Phantom style families: the training families and the held-out "new scanners" of the benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from echoforge.io.camus import CamusDataset
from echoforge.phantom.families import (
    FAMILIES,
    TEST_FAMILIES,
    TRAIN_FAMILIES,
    family_cine,
    make_family_patient,
)
from echoforge.phantom_datasets import write_phantom_dataset


def test_held_out_families_are_not_trained_on():
    assert set(TRAIN_FAMILIES) | set(TEST_FAMILIES) <= set(FAMILIES)
    assert not set(TRAIN_FAMILIES) & set(TEST_FAMILIES)


def test_a_family_patient_is_deterministic_and_families_differ():
    a, b = make_family_patient(7, "sparse"), make_family_patient(7, "sparse")
    assert a.true_ef == b.true_ef and a.style == b.style
    crisp = make_family_patient(7, "crisp")
    assert crisp.style != a.style and crisp.family == "crisp" and a.family == "sparse"
    with pytest.raises(ValueError, match="family"):
        make_family_patient(7, "no-such-family")


def test_a_family_cine_lists_every_beat_and_keeps_the_renderers_truth():
    video = family_cine(11, "lowres", "4CH", 2.2, size=(64, 64), random_start=False)
    frames = video.meta["beat_frames"]
    assert len(frames) >= 2 and (video.ed, video.es) == frames[0]
    volumes = np.asarray(video.meta["true_lv_volume_ml"])
    for ed, es in frames:
        assert ed < es and volumes[ed] > volumes[es]
    assert isinstance(video.meta["beats"], list) and all(isinstance(b, dict) for b in video.meta["beats"])


def test_a_dataset_of_a_held_out_family(tmp_path):
    write_phantom_dataset(tmp_path / "camus", "camus", patients=2, seed=3, size=(64, 64), progress=False,
                          family="sparse")
    data = CamusDataset(tmp_path / "camus")
    assert data.patients == ["patient0001", "patient0002"]
    video = data.load("patient0001", "4CH")
    assert video.n_frames >= 2 and video.has_labels
    assert data.info("patient0001", "4CH")["EF"] == pytest.approx(make_family_patient(3000, "sparse").true_ef, abs=0.01)
    with pytest.raises(ValueError, match="family must be one of"):
        write_phantom_dataset(tmp_path / "bad", "camus", patients=1, family="nope", progress=False)


def test_tracked_speckle_correlation_follows_moving_speckle_and_not_fresh_noise(monkeypatch):
    """The realism benchmark's tracked correlation: speckle that only moves survives the warp back,
    speckle drawn afresh every frame does not."""
    import cv2

    from tests.conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from bench_phantom_realism import tracked_correlation

    rng = np.random.default_rng(0)
    field = cv2.GaussianBlur(rng.random((160, 160), dtype=np.float32), (0, 0), 1.5)  # speckle ≈ 5 px, as real
    field = (field - field.min()) / (field.max() - field.min())
    moving = np.stack([field[20 + t // 2: 132 + t // 2, 24: 136] for t in range(12)])  # downwards, 15 px/s
    fresh = np.stack([cv2.GaussianBlur(rng.random((112, 112), dtype=np.float32), (0, 0), 1.5) for _ in range(12)])
    mask = np.ones((112, 112), bool)
    tracked = tracked_correlation(moving, mask, 33.3, (33, 100, 300))
    assert min(tracked.values()) > 0.9
    assert max(tracked_correlation(fresh, mask, 33.3, (33, 100, 300)).values()) < 0.2
    assert np.isnan(tracked_correlation(moving[:3], mask, 33.3, (300,))[300])  # no frame that late
