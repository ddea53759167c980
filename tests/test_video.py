import numpy as np
import pytest

from echoforge import EchoVideo
from echoforge.errors import (
    EmptyLabelError,
    InvalidVideoError,
    LabelShapeError,
    LabelValueError,
    UnknownFrameError,
)


def test_single_frame_is_promoted_to_a_video():
    video = EchoVideo(np.zeros((10, 12)))
    assert video.frames.shape == (1, 10, 12)
    assert video.frames.dtype == np.float32


@pytest.mark.parametrize("frames", [np.zeros((0, 10, 10)), np.zeros((2, 3, 4, 5)), np.zeros(7)])
def test_wrong_dimensionality_or_empty_is_rejected(frames):
    with pytest.raises(InvalidVideoError):
        EchoVideo(frames)


def test_nan_frames_are_rejected():
    frames = np.zeros((2, 8, 8), np.float32)
    frames[1, 3, 3] = np.nan
    with pytest.raises(InvalidVideoError, match="NaN"):
        EchoVideo(frames, source="clip.nii.gz")


def test_annotated_frames_inferred_from_foreground(small_video):
    unannotated = small_video.labels.copy()
    unannotated[1:5] = 0
    video = small_video.with_labels(unannotated)
    assert video.annotated == (0, 5)


def test_label_errors(small_video):
    with pytest.raises(LabelShapeError, match=r"differs"):
        small_video.with_labels(small_video.labels[:, :-1])
    bad = small_video.labels.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(LabelValueError, match="outside 0-3"):
        small_video.with_labels(bad)
    with pytest.raises(EmptyLabelError):
        small_video.with_labels(np.zeros_like(small_video.labels))
    with pytest.raises(UnknownFrameError):
        small_video.with_labels(small_video.labels, annotated=[0, 9])
    with pytest.raises(EmptyLabelError, match=r"\[2\]"):
        labels = small_video.labels.copy()
        labels[2] = 0
        small_video.with_labels(labels, annotated=[0, 2])


def test_error_message_names_the_file():
    with pytest.raises(InvalidVideoError) as err:
        EchoVideo(np.zeros((1, 1, 1)), source="/data/x.dcm")
    assert str(err.value).startswith("/data/x.dcm: ")


def test_select_keeps_labels_ed_es_and_timing(small_video):
    sub = small_video.select([0, 1, 3, 5])
    assert sub.n_frames == 4
    assert sub.annotated == (0, 3)
    assert (sub.ed, sub.es) == (0, 3)
    assert sub.frame_time_ms == pytest.approx(33.3 * 5 / 3)
    np.testing.assert_array_equal(sub.labels[3], small_video.labels[5])


def test_resize_rescales_spacing_and_keeps_label_values(small_video):
    big = small_video.resized((96, 128))
    assert big.spacing == pytest.approx((0.25, 0.2))
    assert set(np.unique(big.labels)) == set(np.unique(small_video.labels))
    assert big.frames.min() >= 0 and big.frames.max() <= 1


def test_crop(small_video):
    crop = small_video.cropped((4, 40, 8, 60))
    assert crop.shape == (36, 52)
    with pytest.raises(InvalidVideoError):
        small_video.cropped((0, 100, 0, 10))
