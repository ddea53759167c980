"""Optical-flow propagation of drawn frames, and its blend into "segment the rest"."""

import numpy as np
import pytest
import torch

from echoforge.engine.clips import Letterbox, to_classes
from echoforge.engine.inference import segment_video
from echoforge.engine.propagation import BOTH_WAYS_FRAMES, PairFlows, flow_prior
from echoforge.nets import build_model
from echoforge.phantom import make_patient

SIZE = (64, 64)


@pytest.fixture(scope="module")
def video():
    return make_patient(9301).render("4CH", size=SIZE, n_frames=14)


def test_both_ways_weighs_the_walk_from_each_side_by_its_distance(video):
    first, last = 2, 11
    flows = PairFlows(video.frames)
    drawn = {first: video.labels[first], last: video.labels[last]}
    both = flow_prior(video.frames, drawn, 4, flows, across_beats=False, both_ways=True)
    from_first = flow_prior(video.frames, {first: video.labels[first]}, 4, flows, across_beats=False)
    from_last = flow_prior(video.frames, {last: video.labels[last]}, 4, flows, across_beats=False)
    for t in range(first + 1, last):
        g_first, g_last = (1.0 / (1.0 + abs(t - r) / BOTH_WAYS_FRAMES) for r in (first, last))
        expected = (g_first * from_first[t] + g_last * from_last[t]) / (g_first + g_last)
        np.testing.assert_allclose(both[t], expected, atol=1e-5)
    # outside the drawn frames there is one side only; the drawn frames are one-hot as drawn
    np.testing.assert_allclose(both[:first], from_first[:first], atol=1e-6)
    np.testing.assert_allclose(both[last + 1:], from_last[last + 1:], atol=1e-6)
    np.testing.assert_array_equal(both[first].argmax(0), video.labels[first])
    np.testing.assert_allclose(both.sum(axis=1), 1.0, atol=1e-4)


def test_nearest_anchor_prior_takes_each_frame_from_one_drawn_frame(video):
    first, last = 2, 11
    flows = PairFlows(video.frames)
    nearest = flow_prior(video.frames, {first: video.labels[first], last: video.labels[last]}, 4, flows,
                         across_beats=False)
    from_first = flow_prior(video.frames, {first: video.labels[first]}, 4, flows, across_beats=False)
    from_last = flow_prior(video.frames, {last: video.labels[last]}, 4, flows, across_beats=False)
    middle = (first + last) // 2  # ties go to the earlier drawn frame
    np.testing.assert_allclose(nearest[:middle + 1], from_first[:middle + 1], atol=1e-6)
    np.testing.assert_allclose(nearest[middle + 1:], from_last[middle + 1:], atol=1e-6)
    one = flow_prior(video.frames, {first: video.labels[first]}, 4, flows, across_beats=False, both_ways=True)
    np.testing.assert_allclose(one, from_first, atol=1e-6)  # a single drawn frame has no other side


def test_segment_the_rest_blends_the_network_with_the_flow(video):
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    drawn = video.with_labels(video.labels, annotated=[2, 11])
    network = segment_video(net, drawn, prior_blend=0.0)
    flow = segment_video(net, drawn, prior_blend=1.0)
    half = segment_video(net, drawn, prior_blend=0.5)
    box = Letterbox.fit(video.shape, tuple(net.config.input_size))
    frames = np.stack([box.forward(f) for f in video.frames])
    classes = {t: to_classes(box.forward(video.labels[t], nearest=True), net.config.mode) for t in (2, 11)}
    carried = flow_prior(frames, classes, net.config.n_classes, both_ways=True)
    np.testing.assert_allclose(flow.probabilities.astype(np.float32), carried, atol=2e-3)
    np.testing.assert_allclose(half.probabilities.astype(np.float32),
                               0.5 * network.probabilities.astype(np.float32) + 0.5 * carried, atol=2e-3)
    assert not np.array_equal(network.labels, flow.labels)  # an untrained network is not the flow
    for seg in (network, flow, half):  # the drawn frames stay as drawn whatever the blend
        np.testing.assert_array_equal(seg.labels[[2, 11]], video.labels[[2, 11]])
    with pytest.raises(ValueError, match="prior_blend"):
        segment_video(net, drawn, prior_blend=1.5)
