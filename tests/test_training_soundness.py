"""The paper's parts must work in training: AMP-safe losses, no ground-truth leak, CPR alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from echoforge.engine.clips import collate, make_clip
from echoforge.engine.train import SemiSupervisedModel, TrainConfig, Trainer, supervised_frames
from echoforge.nets import build_model, get_config
from echoforge.phantom import make_patient

#: aten ops that CUDA autocast refuses to run ("unsafe to autocast"): it raises on the first call
CUDA_AUTOCAST_BANNED = {"binary_cross_entropy"}

#: every configuration a user can train (network overrides, training overrides)
CONFIGURATIONS = [
    ("tiny", {}, {}),
    ("tiny", {"use_arc": False}, {}),
    ("tiny", {"use_tsf": False}, {}),
    ("tiny", {"n_anchors": 1}, {}),
    ("tiny", {}, {"use_cpr": False}),
    ("light", {}, {}),
    ("paper", {}, {}),
    ("unet", {}, {"use_cpr": False}),
    ("deeplabv3", {}, {"use_cpr": False}),
]


class OpRecorder(TorchDispatchMode):
    """Records the name of every aten op that runs inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        self.ops.add(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def clips():
    out = []
    for seed in range(2):
        patient = make_patient(9300 + seed)
        video = patient.render_half_sequence("4CH", size=(64, 64), fps=40.0)
        out.append(make_clip(video, (64, 64), 4, "ed-es", reference=video, video_id=f"p{seed}", priors=True))
    return out


@pytest.mark.parametrize("name,net_overrides,train_overrides", CONFIGURATIONS)
def test_a_training_step_uses_no_op_cuda_autocast_refuses(clips, name, net_overrides, train_overrides):
    torch.manual_seed(0)
    net_config = get_config(name, input_size=(64, 64), **net_overrides)
    config = TrainConfig(epochs=2, batch_size=2, lr=1e-4, clip_frames=4, progress=False, burn_in=0.0,
                         ramp_end=0.0, **train_overrides)
    trainer = Trainer(net_config, config, run_dir=None)
    trainer.fit(clips)  # first epoch fills CPR's bank, the second trains on it
    recorder = OpRecorder()
    with recorder:
        losses = trainer._step(collate(clips, net_config.mode), epoch=1.5)
    assert torch.isfinite(torch.tensor(losses["total"]))
    assert not recorder.ops & CUDA_AUTOCAST_BANNED, f"{name}: {recorder.ops & CUDA_AUTOCAST_BANNED}"
    if net_config.arch == "echoforge" and net_config.use_arc:
        assert "arc_patch" in losses
    if train_overrides.get("use_cpr", True) and net_config.arch == "echoforge":
        assert {"cpr", "unlabelled"} <= set(losses)


def test_no_ground_truth_reaches_its_own_frames_prediction():
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    frames = torch.rand(1, 6, 64, 64)
    labels = torch.randint(0, 4, (1, 6, 64, 64))
    labelled = torch.tensor([[True, False, False, False, False, True]])
    ref_valid = labelled.clone()  # "segment the rest" with both drawn frames in memory
    supervised = supervised_frames(labelled, ref_valid)
    assert supervised.tolist() == [[True, False, False, False, False, False]]
    with torch.no_grad():
        base = net(frames, labels, ref_valid)["logits"]
        for t in range(6):
            changed = labels.clone()
            changed[:, t] = (changed[:, t] + 1) % 4
            moved = not torch.equal(net(frames, changed, ref_valid)["logits"][:, t], base[:, t])
            # a supervised frame never sees its own mask; the left-out reference does, through recent memory
            assert moved == (bool(labelled[0, t]) and not bool(supervised[0, t])), t
    no_refs = torch.zeros_like(labelled)
    assert torch.equal(supervised_frames(labelled, no_refs), labelled)


def test_cpr_pair_loss_trains_cpr_only():
    torch.manual_seed(0)
    model = SemiSupervisedModel(build_model("tiny"), use_cpr=True, cpr_jitter=0.3)
    frames = torch.rand(1, 4, 64, 64)
    labels = torch.randint(0, 4, (1, 4, 64, 64))
    labelled = torch.tensor([[True, False, False, True]])
    out = model(frames, labels, torch.zeros_like(labelled), labelled)
    out["cpr_logits"].sum().backward()
    assert all(p.grad is None for p in model.net.parameters())
    assert model.cpr.q.weight.grad is not None and model.cpr.q_mask.weight.grad is not None


def test_training_log_reports_arc_and_cpr_activity(clips, tmp_path):
    config = TrainConfig(epochs=2, batch_size=2, lr=1e-3, clip_frames=4, progress=False, burn_in=0.0)
    summary = Trainer(get_config("tiny"), config, tmp_path / "run").fit(clips, clips)
    record = summary["history"][-1]
    for key in ("arc_uncertain", "arc_weight", "arc_uncertain_border", "cpr_change", "cpr_change_right",
                "cpr_change_wrong"):
        assert key in record and 0.0 <= record[key] <= 1.0, key
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"cpr_change":') == 2


def test_retraining_from_a_model_seeds_cprs_bank_with_its_own_segment_the_rest(clips):
    net = build_model("tiny")
    config = TrainConfig(epochs=1, batch_size=2, lr=1e-4, clip_frames=4, progress=False, burn_in=0.0, ramp_end=0.0,
                         tau0=0.01, tau1=0.01)  # a random network is not confident: let every pixel teach
    trainer = Trainer(get_config("tiny"), config, run_dir=None, net=net)
    unlabelled = sum(int((~c.labelled).sum()) for c in clips)
    assert trainer.seed_bank(clips) == unlabelled and len(trainer.bank) == unlabelled
    fresh = Trainer(get_config("tiny"), config, run_dir=None)
    record = fresh.fit(clips)["history"][0]
    seeded = Trainer(get_config("tiny"), config, run_dir=None, net=build_model("tiny")).fit(clips)["history"][0]
    assert record["bank"] == seeded["bank"] == unlabelled
    assert record["loss_unlabelled"] == 0 < seeded["loss_unlabelled"]  # seeded pseudo-labels teach from the first step


def test_clip_flow_priors_start_from_the_drawn_frames_and_reach_the_training_step(clips):
    clip = clips[0]
    first, last = np.flatnonzero(clip.labelled)[[0, -1]]
    assert set(clip.priors) == {"first", "last", "ends"} and clip.priors["ends"].shape == (4, 4, 64, 64)
    assert np.array_equal(clip.priors["first"][first].argmax(0), clip.labels[first])  # one-hot where drawn
    assert np.array_equal(clip.priors["ends"][last].argmax(0), clip.labels[last])
    assert not np.array_equal(clip.priors["first"][last].argmax(0), clip.labels[last])  # propagated, not copied
    trainer = Trainer(get_config("tiny", input_size=(64, 64)), TrainConfig(epochs=1, prior_dropout=0.0), run_dir=None)
    batch = collate(clips, "camus")
    theta = torch.eye(2, 3).repeat(2, 1, 1)
    assert trainer._prior(batch, "none", theta) is None
    assert torch.allclose(trainer._prior(batch, "ends", theta), batch["priors"]["ends"], atol=1e-5)
    net = build_model("tiny").eval()
    frames, labels, labelled = batch["frames"], batch["labels"], batch["labelled"]
    with torch.no_grad():
        plain = net(frames, labels, labelled)["logits"]
        guided = net(frames, labels, labelled, batch["priors"]["ends"])["logits"]
    assert not torch.allclose(plain, guided, atol=1e-4)


def test_the_seeded_bank_blends_the_flow_from_both_ends_as_segment_the_rest_does(clips):
    from echoforge.engine.propagation import BOTH_WAYS_FRAMES
    from echoforge.engine.train import both_ways_prior

    batch = collate(clips, "camus")
    carried = both_ways_prior(batch["priors"], batch["frame_index"], batch["labelled"])
    frames, first = batch["frame_index"][0], batch["priors"]["first"][0]
    drawn = [f for f, d in zip(frames, batch["labelled"][0].tolist(), strict=True) if d]
    t = 1  # an unlabelled frame: each end's walk weighs 1 / (1 + distance / BOTH_WAYS_FRAMES)
    g_first, g_last = (1.0 / (1.0 + abs(frames[t] - r) / BOTH_WAYS_FRAMES) for r in (drawn[0], drawn[-1]))
    expected = (g_first * first[t] + g_last * batch["priors"]["last"][0, t]) / (g_first + g_last)
    torch.testing.assert_close(carried[0, t], expected)
    torch.testing.assert_close(carried.sum(dim=2), torch.ones_like(carried.sum(dim=2)), atol=0.02, rtol=0)
    banks = {}
    for blend in (0.0, 1.0):
        config = TrainConfig(epochs=1, batch_size=2, clip_frames=4, progress=False, seed_blend=blend)
        torch.manual_seed(0)
        trainer = Trainer(get_config("tiny"), config, run_dir=None, net=build_model("tiny"))
        trainer.seed_bank(clips)
        banks[blend] = trainer.bank.lookup(batch["video_id"], batch["frame_index"], torch.zeros(2, 4, 4, 32, 32))[0]
    half = torch.nn.functional.interpolate(carried.flatten(0, 1), size=(32, 32), mode="bilinear",
                                           align_corners=False).reshape(2, 4, 4, 32, 32)
    unlabelled = ~batch["labelled"]
    torch.testing.assert_close(banks[1.0][unlabelled], half[unlabelled], atol=2e-3, rtol=0)  # float16 bank
    assert not torch.allclose(banks[0.0][unlabelled], half[unlabelled], atol=0.05)  # the network's own


def test_a_retraining_that_re_finds_the_annotated_frames_worse_than_its_start_is_not_kept(clips):
    import copy

    from echoforge.engine.evaluate import clip_dice
    from echoforge.engine.train import RETRAIN_TOLERANCE, keeps_model

    config = get_config("tiny", input_size=(64, 64))
    scratch = Trainer(config, TrainConfig(epochs=3, batch_size=2, lr=1e-3, clip_frames=4, progress=False), run_dir=None)
    summary = scratch.fit(clips, clips)
    assert summary["start_val_score"] is None  # nothing to compare a network trained from scratch with
    assert keeps_model(summary)[0]
    start = copy.deepcopy(scratch.model.net)
    expected = clip_dice(copy.deepcopy(start), clips, "camus")["val_score"]
    runs = {}
    for lr in (1e-3, 1.0):  # an ordinary retraining, and one that wrecks the network
        trainer = Trainer(config, TrainConfig(epochs=1, batch_size=2, lr=lr, clip_frames=4, progress=False, burn_in=0.0),
                          run_dir=None, net=copy.deepcopy(start))
        runs[lr] = trainer.fit(clips, clips)
        assert runs[lr]["start_val_score"] == expected  # scored on the same clips before the first step
    wrecked = runs[1.0]["history"][-1]["val_score"]
    assert wrecked < expected - RETRAIN_TOLERANCE
    keep, why = keeps_model(runs[1.0])
    assert not keep and "not kept" in why and f"{expected:.3f}" in why
    assert keeps_model(runs[1e-3])[0]
    # the rule itself: within the tolerance is kept, below it is not, a run without a score is not
    assert keeps_model({"start_val_score": 0.9, "best_val_dice": 0.9 - RETRAIN_TOLERANCE / 2})[0]
    assert not keeps_model({"start_val_score": 0.9, "best_val_dice": 0.9 - 2 * RETRAIN_TOLERANCE})[0]
    assert not keeps_model({"start_val_score": 0.9, "best_val_dice": float("nan")})[0]
    assert keeps_model({"start_val_score": 0.9, "best_val_dice": 0.1}, score=0.95)[0]
