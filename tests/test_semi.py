"""CPR (channel cross-attention, pseudo-label bank) and the FlameRise schedule."""

import pytest
import torch

from echoforge.semi.cpr import ChannelCrossAttention, PseudoLabelBank, nearest_labelled, reforge
from echoforge.semi.schedule import FlameRise


def test_flamerise_burn_in_ramp_and_threshold():
    flame = FlameRise(e0=5, e1=15, lambda_max=0.8, tau0=0.95, tau1=0.75)
    assert flame.weight(0) == 0 and flame.weight(4.99) == 0
    assert flame.weight(10) == pytest.approx(0.4)
    assert flame.weight(15) == flame.weight(40) == pytest.approx(0.8)
    assert flame.threshold(0) == pytest.approx(0.95)
    assert flame.threshold(10) == pytest.approx(0.85)
    assert flame.threshold(50) == pytest.approx(0.75)
    defaults = FlameRise.for_epochs(50)
    assert (defaults.e0, defaults.e1) == (10, 30)
    with pytest.raises(ValueError):
        FlameRise(e0=10, e1=5)
    with pytest.raises(ValueError):
        FlameRise(e0=1, e1=2, tau0=0.7, tau1=0.9)


def test_channel_cross_attention_starts_as_identity_and_uses_the_query():
    torch.manual_seed(0)
    cpr = ChannelCrossAttention(8)
    f_l, f_u = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    assert torch.equal(cpr(f_l, f_u), f_u)  # zero-initialised output projection: starts as identity
    torch.nn.init.normal_(cpr.out.weight)
    a, b = cpr(f_l, f_u), cpr(torch.randn(2, 8, 5, 5), f_u)
    assert not torch.allclose(a, b)  # the labelled frame (query) shapes the reforged features


def test_nearest_labelled_frame():
    labelled = torch.tensor([[True, False, False, False, False, True]])
    assert nearest_labelled(labelled).tolist() == [[0, 0, 0, 5, 5, 5]]
    assert nearest_labelled(labelled, exclude_self=True).tolist() == [[5, 0, 0, 5, 5, 0]]


def test_reforge_shapes():
    cpr = ChannelCrossAttention(4)
    head = torch.nn.Conv2d(4, 3, 1)

    def classify(features, size):
        return torch.nn.functional.interpolate(head(features), size=size)

    features = torch.randn(2, 5, 4, 6, 6)
    labelled = torch.zeros(2, 5, dtype=torch.bool)
    labelled[:, 0] = labelled[:, 4] = True
    assert reforge(cpr, classify, features, labelled, (12, 12)).shape == (2, 5, 3, 12, 12)


def test_bank_blends_new_pseudo_labels_and_survives_a_round_trip():
    bank = PseudoLabelBank(momentum=0.5)
    ones = torch.ones(1, 1, 2, 3, 3)
    bank.update(["v"], [[4]], ones * torch.tensor([1.0, 0.0])[None, None, :, None, None], ones[:, :, :1])
    bank.update(["v"], [[4]], ones * torch.tensor([0.0, 1.0])[None, None, :, None, None], ones[:, :, :1])
    probs, valid = bank.lookup(["v", "w"], [[4], [4]], like=torch.zeros(2, 1, 2, 3, 3))
    assert probs[0, 0, :, 0, 0].tolist() == [0.5, 0.5]
    assert valid[0].min() == 1 and valid[1].max() == 0  # unknown video: invalid
    restored = PseudoLabelBank()
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.lookup(["v"], [[4]], like=torch.zeros(1, 1, 2, 3, 3))[0], probs[:1])
    with pytest.raises(ValueError):
        PseudoLabelBank(momentum=1.0)
