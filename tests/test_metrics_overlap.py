"""Dice, IoU, HD95 and ASSD per structure and frame (echoforge.metrics.overlap)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

from echoforge.errors import InvalidVideoError, LabelShapeError, LabelValueError, UnknownFrameError
from echoforge.metrics import overlap_metrics


def heart(shift: tuple[int, int] = (0, 0), grow: int = 0, size: int = 128) -> np.ndarray:
    """An ``H×W`` label map: myocardium ring around an LV ellipse, LA disc below."""
    lab = np.zeros((size, size), np.uint8)
    cy, cx = 55 + shift[0], 64 + shift[1]
    cv2.ellipse(lab, (cx, cy), (22 + grow, 38 + grow), 0, 0, 360, 2, -1)
    cv2.ellipse(lab, (cx, cy), (16 + grow, 31 + grow), 0, 0, 360, 1, -1)
    cv2.circle(lab, (cx, cy + 52), 16 + grow, 3, -1)
    return lab


def test_identical_clips_score_perfectly():
    clip = np.stack([heart(), heart((2, 1))])
    res = overlap_metrics(clip, clip, spacing=(0.3, 0.3))
    assert res["unit"] == "mm"
    assert res["structures"] == ["LV", "myocardium", "LA"]
    assert res["frames"] == [0, 1]
    for name in res["structures"]:
        np.testing.assert_allclose(res["per_frame"][name]["dice"], 1.0)
        np.testing.assert_allclose(res["per_frame"][name]["iou"], 1.0)
        np.testing.assert_allclose(res["per_frame"][name]["hd95"], 0.0)
        np.testing.assert_allclose(res["per_frame"][name]["assd"], 0.0)
    assert res["mean"] == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


def test_shifted_rectangle_gives_exact_values_and_respects_row_col_spacing():
    ref = np.zeros((60, 80), np.uint8)
    ref[10:30, 10:50] = 1
    pred = np.roll(ref, 3, axis=0)  # 3 rows down
    # Dice = 2·|17×40| / (2·20×40), IoU = 17·40 / (23·40)
    for spacing, expected in (((0.5, 0.3), 1.5), ((0.3, 0.5), 0.9), (None, 3.0)):
        res = overlap_metrics(pred, ref, spacing=spacing, structures=("LV",))
        lv = res["per_structure"]["LV"]
        assert lv["dice"] == pytest.approx(2 * 17 * 40 / (2 * 20 * 40))
        assert lv["iou"] == pytest.approx(17 / 23)
        assert lv["hd95"] == pytest.approx(expected, rel=1e-5)
        assert 0 < lv["assd"] < expected
    assert overlap_metrics(pred, ref, None, structures=("LV",))["unit"] == "px"


def test_concentric_discs_distance_is_the_radius_difference():
    ref = np.zeros((1, 128, 128), np.uint8)
    pred = np.zeros_like(ref)
    cv2.circle(ref[0], (64, 64), 30, 1, -1)
    cv2.circle(pred[0], (64, 64), 35, 1, -1)
    res = overlap_metrics(pred, ref, spacing=(0.5, 0.5), structures=(1,))
    assert res["per_structure"]["LV"]["hd95"] == pytest.approx(2.5, abs=0.3)
    assert res["per_structure"]["LV"]["assd"] == pytest.approx(2.5, abs=0.3)


def test_distances_match_monai_reference_functions():
    rng = np.random.default_rng(0)
    pred = np.stack([heart((int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), int(rng.integers(-2, 3)))
                     for _ in range(6)])
    ref = np.stack([heart() for _ in range(6)])
    spacing = (0.31, 0.42)
    res = overlap_metrics(pred, ref, spacing=spacing)
    for label, name in ((1, "LV"), (2, "myocardium"), (3, "LA")):
        p = torch.from_numpy(pred == label)[:, None]
        r = torch.from_numpy(ref == label)[:, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing)
            asd = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=spacing)
        np.testing.assert_allclose(res["per_frame"][name]["hd95"], hd[:, 0].numpy(), rtol=1e-5)
        np.testing.assert_allclose(res["per_frame"][name]["assd"], asd[:, 0].numpy(), rtol=1e-5)
        inter = np.logical_and(pred == label, ref == label).sum(axis=(1, 2))
        dice = 2 * inter / ((pred == label).sum(axis=(1, 2)) + (ref == label).sum(axis=(1, 2)))
        np.testing.assert_allclose(res["per_frame"][name]["dice"], dice, rtol=1e-6)


def test_empty_structures_follow_the_documented_convention():
    ref = np.stack([heart(), heart(), heart()])
    pred = ref.copy()
    ref[1][ref[1] == 3] = 0  # LA: both empty on frame 1 ...
    pred[1][pred[1] == 3] = 0
    pred[2][pred[2] == 3] = 0  # ... and missed on frame 2
    res = overlap_metrics(pred, ref, spacing=(0.3, 0.3), structures=("LA",))
    la = res["per_frame"]["LA"]
    np.testing.assert_allclose(la["dice"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(la["iou"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(la["hd95"][:2], [0.0, 0.0])
    assert np.isnan(la["hd95"][2]) and np.isnan(la["assd"][2])
    summary = res["per_structure"]["LA"]
    assert summary["n_frames"] == 3 and summary["n_both_empty"] == 1 and summary["n_one_empty"] == 1
    assert summary["dice"] == pytest.approx(2 / 3)
    assert summary["hd95"] == 0.0  # the NaN frame is left out of the mean

    only_missed = overlap_metrics(pred[2:], ref[2:], spacing=(0.3, 0.3), structures=("LA",))
    assert np.isnan(only_missed["per_structure"]["LA"]["hd95"])
    assert np.isnan(only_missed["mean"]["assd"])


def test_structure_selection_binary_masks_and_epicardium():
    ref = heart()
    pred = heart((3, 0))
    res = overlap_metrics(pred, ref, spacing=(0.3, 0.3), structures=("LV", "LV_epi"))
    assert res["structures"] == ["LV", "LV_epi"]
    epi_ref, epi_pred = np.isin(ref, (1, 2)), np.isin(pred, (1, 2))
    expected = 2 * (epi_ref & epi_pred).sum() / (epi_ref.sum() + epi_pred.sum())
    assert res["per_structure"]["LV_epi"]["dice"] == pytest.approx(expected)
    binary = overlap_metrics(pred == 1, ref == 1, spacing=(0.3, 0.3), structures=("LV",))
    assert binary["per_structure"]["LV"]["dice"] == pytest.approx(res["per_structure"]["LV"]["dice"])
    assert res["mean"]["dice"] == pytest.approx(
        (res["per_structure"]["LV"]["dice"] + res["per_structure"]["LV_epi"]["dice"]) / 2)


def test_frame_selection():
    ref = np.stack([heart(), heart(), heart()])
    pred = np.stack([heart(), heart((4, 0)), heart((8, 0))])
    res = overlap_metrics(pred, ref, spacing=(0.3, 0.3), frames=[0, -1], structures=(1,))
    assert res["frames"] == [0, 2]
    assert res["per_frame"]["LV"]["dice"][0] == 1.0
    assert res["per_frame"]["LV"]["dice"][1] < 0.9
    with pytest.raises(UnknownFrameError, match="outside"):
        overlap_metrics(pred, ref, frames=[3])


def test_bad_input_raises_typed_errors():
    ref = np.stack([heart(), heart()])
    with pytest.raises(LabelShapeError, match="differs"):
        overlap_metrics(ref[:1], ref)
    with pytest.raises(LabelValueError, match="0-3|outside|values"):
        overlap_metrics(ref + 4, ref)
    with pytest.raises(LabelValueError):
        overlap_metrics(ref.astype(np.float32) + 0.5, ref)
    with pytest.raises(InvalidVideoError, match="spacing"):
        overlap_metrics(ref, ref, spacing=(0.3, 0.0))
    with pytest.raises(InvalidVideoError, match="spacing"):
        overlap_metrics(ref, ref, spacing=(0.3,))
    with pytest.raises(ValueError, match="unknown structure"):
        overlap_metrics(ref, ref, structures=("RV",))


def test_many_frames_are_scored_in_one_batch_as_each_frame_alone():
    # the batched path (one distance transform per structure for all frames) gives the per-frame scores
    ref = np.repeat(heart()[None], 120, axis=0)
    pred = np.repeat(heart((2, 1), 1)[None], 120, axis=0)
    pred[7] = heart((0, 3), 2)  # one frame unlike the others
    res = overlap_metrics(pred, ref, spacing=(0.3, 0.3))
    assert res["per_frame"]["LV"]["dice"].shape == (120,)
    for t in (0, 7, 119):
        alone = overlap_metrics(pred[t:t + 1], ref[t:t + 1], spacing=(0.3, 0.3))
        for structure in ("LV", "myocardium"):
            for key in ("dice", "hd95"):
                assert res["per_frame"][structure][key][t] == pytest.approx(alone["per_frame"][structure][key][0])
    assert res["per_frame"]["LV"]["dice"][7] != res["per_frame"]["LV"]["dice"][0]
    assert np.ptp(np.delete(res["per_frame"]["myocardium"]["hd95"], 7)) == 0  # equal frames score equally
