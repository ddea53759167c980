"""The ASA network: shapes, ARC behaviour, TSF memory, configurations, odd input sizes."""

import pytest
import torch

from echoforge.nets import CONFIGS, build_model, get_config
from echoforge.nets.arc import AnchorRecalibration
from echoforge.nets.echoforge_net import Memory, downsample_labels, stack_memory
from echoforge.nets.tsf import TemporalSemanticFusion


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_named_configurations():
    assert {"paper", "light", "tiny"} <= set(CONFIGS)
    assert get_config("paper").encoder_depth == 50
    assert get_config("light", mode="lv").n_classes == 2
    with pytest.raises(ValueError, match="unknown network configuration"):
        get_config("huge")
    with pytest.raises(ValueError, match="mode"):
        get_config("light", mode="rgb")


@pytest.mark.parametrize("mode,classes", [("camus", 4), ("lv", 2)])
def test_clip_forward_shapes(mode, classes):
    net = build_model("tiny", mode=mode).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64))
    assert out["logits"].shape == (2, 3, classes, 64, 64)
    assert out["logits16"].shape == (2, 3, classes, 4, 4)
    assert out["arc_weight_logits"].shape == (2, 3, 2, 4, 4)
    assert out["arc_patch_logit"].shape == out["arc_weight"].shape == (2, 3, 1, 4, 4)


def test_sizes_that_are_not_multiples_of_the_stride():
    net = build_model("tiny").eval()
    with torch.no_grad():
        out = net(torch.rand(1, 2, 50, 71))
    assert out["logits"].shape == (1, 2, 4, 50, 71)


def test_ablations_build_and_run():
    for overrides in ({"use_arc": False}, {"use_tsf": False}, {"n_anchors": 1}, {"n_anchors": 4},
                      {"use_readout": False}, {"patch": 2}):
        net = build_model("tiny", **overrides).eval()
        with torch.no_grad():
            assert torch.isfinite(net(torch.rand(1, 2, 64, 64))["logits"]).all()
    assert "arc_weight" not in build_model("tiny", use_arc=False)(torch.rand(1, 1, 64, 64))


def test_arc_leaves_confident_patches_untouched_and_pulls_uncertain_ones():
    arc = AnchorRecalibration(dim=8, n_anchors=2, knn=4, patch=1)
    with torch.no_grad():
        arc.strength.fill_(10.0)  # full strength, to see the pull clearly
    x = torch.randn(1, 8, 6, 6)
    out, aux = arc(x)
    p = aux["p_fg"][0, 0]
    confident = (p < 0.4) | (p > 0.6)
    changed = (out - x).abs().amax(dim=1)[0] > 1e-6
    assert not changed[confident].any()
    uncertain = ~confident & ((p - 0.5).abs() < 0.099)
    assert changed[uncertain].all()
    assert aux["weight_maps"].sum(dim=1).allclose(torch.ones(1, 6, 6))


def test_tsf_prior_tokens_when_memory_is_empty_and_mask_pooling_otherwise():
    tsf = TemporalSemanticFusion(dim=8, n_classes=2, n_queries=2)
    assert torch.equal(tsf.semantic_tokens(None, None), tsf.prior_tokens.unsqueeze(0))
    feats = torch.zeros(1, 1, 8, 4, 4)
    feats[0, 0, :, :2] = 1.0  # class 1 lives in the top half, with feature vector 1
    masks = torch.zeros(1, 1, 2, 4, 4)
    masks[0, 0, 1, :2] = 1.0
    masks[0, 0, 0, 2:] = 1.0
    tokens = tsf.semantic_tokens(feats, masks, torch.ones(1, 1))
    assert tokens[0, 1].allclose(torch.full((8,), 8 / 9) + tsf.prior_tokens[1] / 9, atol=1e-5)


def test_memory_is_bounded_and_references_never_see_themselves():
    net = build_model("tiny").eval()
    with torch.no_grad():
        enc = net.encode(torch.rand(6, 1, 64, 64))
        ref = net.reference(enc[0:1], torch.zeros(1, 64, 64, dtype=torch.long))
        memory = Memory(size=3, references={0: ref})
        for t in range(1, 6):
            memory.push(t, net.remember(enc[t:t + 1], torch.full((1, 4, 64, 64), 0.25)))
    assert len(memory.gather(0)) == 2  # the reference itself is left out; two recent frames kept
    assert len(memory.gather(9)) == 3
    assert torch.equal(memory.gather(9)[-1].x16, enc.x16[5:6])
    feats, masks, valid = stack_memory(memory.gather(9), "x16", "mask16")
    assert feats.shape == (1, 3, 32, 4, 4) and masks.shape == (1, 3, 4, 4, 4) and valid.shape == (1, 3)
    memory.add_reference(3, ref)  # a frame drawn later joins; the recent frames make room
    assert len(memory.recent) == 1 and len(memory.gather(9)) == 3


def test_readout_carries_the_drawn_shape_to_matching_pixels():
    from echoforge.nets.readout import MemoryReadout

    readout = MemoryReadout(c8=8, n_classes=2, key_dim=4, value_dim=3)
    query = torch.zeros(1, 4, 2, 2)
    query[0, 0, 0, 0] = 5.0  # one pixel matches the memory's left column, the others its right column
    keys = torch.zeros(1, 1, 4, 2, 2)
    keys[0, 0, 0, :, 0] = 5.0
    masks = torch.zeros(1, 1, 2, 2, 2)
    masks[0, 0, 1, :, 0] = 1.0  # class 1 on the left column
    masks[0, 0, 0, :, 1] = 1.0
    out = readout(query, keys, torch.zeros(1, 1, 3, 2, 2), masks, torch.ones(1, 1))
    propagated = out[0, -2:]
    assert propagated[1, 0, 0] > 0.99 and propagated[1, 1, 1] < 0.01
    empty = readout(query, None, None, None, None)
    assert empty.shape == (1, 5, 2, 2) and not empty.any()
    padding = readout(query, keys, torch.zeros(1, 1, 3, 2, 2), masks, torch.zeros(1, 1))
    assert not padding.any()


def test_references_change_the_prediction():
    net = build_model("tiny").eval()
    frames = torch.rand(1, 4, 64, 64)
    labels = torch.randint(0, 4, (1, 4, 64, 64))
    valid = torch.tensor([[True, False, False, False]])
    with torch.no_grad():
        auto = net(frames)["logits"]
        guided = net(frames, labels, valid)["logits"]
    assert torch.allclose(auto[:, 0], guided[:, 0], atol=1e-5)  # frame 0 never sees its own mask
    assert not torch.allclose(auto[:, 1:], guided[:, 1:], atol=1e-4)


def test_downsample_labels_gives_class_fractions():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, :16] = 2
    fractions = downsample_labels(labels, 4, (2, 2))
    assert fractions.shape == (1, 4, 2, 2)
    assert fractions.sum(1).allclose(torch.ones(1, 2, 2))
    assert fractions[0, 2, 0].allclose(torch.ones(2))


def test_local_encoder_weights_only(tmp_path):
    import torchvision

    from echoforge.errors import UnreadableFileError

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    net = build_model("tiny", encoder_weights=str(path))
    assert net.encoder.stem[0].weight.shape == (64, 1, 7, 7)
    with pytest.raises(UnreadableFileError, match="not found"):
        build_model("tiny", encoder_weights=str(tmp_path / "missing.pth"))
    torch.save({"nonsense": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(UnreadableFileError, match="matching ResNet"):
        build_model("tiny", encoder_weights=str(tmp_path / "bad.pth"))
