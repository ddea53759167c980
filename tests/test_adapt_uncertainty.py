"""Per-video adaptation, the domain-shift score, and the uncertainty used for active learning."""

import numpy as np
import pytest
import torch

from echoforge.engine.adapt import (
    ADAPTED,
    AdaptConfig,
    adapt_to_video,
    feature_stats,
    prepare,
    propagation_fit,
    shift_score,
)
from echoforge.engine.clips import make_clip, restrict_labels
from echoforge.engine.inference import Segmentation
from echoforge.engine.uncertainty import frame_entropy, video_uncertainty
from echoforge.errors import EmptyLabelError
from echoforge.nets import build_model
from echoforge.phantom import make_patient

SIZE = (64, 64)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def test_adaptation_fine_tunes_a_copy_and_leaves_the_model_alone(net):
    video = restrict_labels(make_patient(321).render("4CH", size=SIZE, n_frames=12), "ed-es")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapted, info = adapt_to_video(net, video, AdaptConfig(steps=3, fit_target=1.1))
    assert adapted is not net and not adapted.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith(ADAPTED) for k in changed)  # only the decoder learns
    assert info["steps"] == 3 and info["seconds"] > 0 and 0 <= info["fit_before"] <= 1
    assert all(p.requires_grad for p in adapted.parameters())
    with pytest.raises(EmptyLabelError):
        adapt_to_video(net, video.replace(labels=None, annotated=()))


def test_adaptation_learns_to_refind_the_drawn_frames_and_stops_when_they_fit(net):
    video = restrict_labels(make_patient(322).render("4CH", size=SIZE, n_frames=12), "ed-es")
    views = prepare(net, video, AdaptConfig(views=2))
    adapted, info = adapt_to_video(net, video, AdaptConfig(steps=24, fit_target=1.1, views=2), views=views)
    assert info["steps"] == 24 and not info["stopped_early"] and info["loss_last"] < info["loss_first"]
    assert propagation_fit(adapted, views[0]) == pytest.approx(info["fit_after"], abs=1e-4)
    fitting = adapt_to_video(net, video, AdaptConfig(steps=16, fit_target=0.0), views=views)[1]
    assert fitting["steps"] == 0 and fitting["stopped_early"]  # already fits: nothing to do
    single = video.with_labels(video.labels, annotated=[video.ed])  # nothing to re-find: no step taken
    assert adapt_to_video(net, single, AdaptConfig(steps=5))[1]["steps"] == 0


def test_shift_score_flags_a_video_unlike_the_training_data(net):
    clips = [make_clip(make_patient(400 + i).render("4CH", size=SIZE, n_frames=8), SIZE, 6, "all", video_id=str(i))
             for i in range(6)]
    stats = feature_stats(net, clips)
    assert len(stats["mean"]) == net.config.dim and len(stats["train_scores"]) == 6
    familiar = make_patient(500).render("4CH", size=SIZE, n_frames=8)
    odd = familiar.replace(frames=1.0 - familiar.frames, labels=None, annotated=())  # inverted grey levels
    assert shift_score(net, odd, stats) > stats["threshold"] > 0
    assert shift_score(net, familiar, stats) < shift_score(net, odd, stats)


def _segmentation(probs: np.ndarray) -> Segmentation:
    return Segmentation(probs.argmax(1).astype(np.uint8), probs.astype(np.float16), (), 0.1)


def test_uncertainty_ranks_confident_below_unsure_and_suggests_ed_es():
    t, h, w = 8, 32, 32
    confident = np.zeros((t, 4, h, w), np.float32)
    confident[:, 0] = 1.0
    for i in range(t):  # an LV that shrinks then grows: ED at 0, ES at 4
        r = 10 - min(i, 8 - i)
        confident[i, 1, 16 - r // 2:16 + r // 2, 10:22], confident[i, 0, 16 - r // 2:16 + r // 2, 10:22] = 1.0, 0.0
    unsure = 0.6 * confident + 0.4 / 4
    a, b = video_uncertainty(_segmentation(confident)), video_uncertainty(_segmentation(unsure))
    assert a["score"] < b["score"] and a["entropy"] < 0.01
    assert {a["ed"], a["es"]} <= set(a["suggested_frames"]) and len(a["suggested_frames"]) == 3
    assert frame_entropy(unsure.astype(np.float16)).shape == (t,)


def test_a_detached_memory_remembers_frames_without_their_gradient():
    # adaptation's truncated back-propagation: a step's loss trains that step's decoder, not the walk before
    from echoforge.nets.echoforge_net import Memory, MemoryEntry

    features = torch.ones(1, 2, 3, 3, requires_grad=True) * 2
    entry = MemoryEntry(features, features, None, None, None, torch.ones(1))
    detached, kept = Memory(4, detach=True), Memory(4)
    detached.push(0, entry)
    kept.push(0, entry)
    assert not detached.recent[0].x16.requires_grad and detached.recent[0].key8 is None
    assert kept.recent[0].x16.requires_grad
    assert torch.equal(detached.recent[0].mask16, features.detach())
