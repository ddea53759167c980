"""CPR (channel cross-attention, pseudo-label bank) and the FlameRise schedule."""

import pytest
import torch

from echoforge.nets import build_model
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


def test_nearest_labelled_frame():
    labelled = torch.tensor([[True, False, False, False, False, True]])
    assert nearest_labelled(labelled).tolist() == [[0, 0, 0, 5, 5, 5]]
    assert nearest_labelled(labelled, exclude_self=True).tolist() == [[5, 0, 0, 5, 5, 0]]


def test_reforge_shapes():
    cpr = ChannelCrossAttention(4, 3)
    head = torch.nn.Conv2d(4, 3, 1)
    features = torch.randn(2, 5, 4, 6, 6)
    labelled = torch.zeros(2, 5, dtype=torch.bool)
    labelled[:, 0] = labelled[:, 4] = True
    masks = torch.rand(2, 5, 3, 6, 6)
    assert reforge(cpr, head, features, labelled, masks, (0, 0, 0, 0)).shape == (2, 5, 3, 24, 24)
    assert reforge(cpr, head, features, labelled, masks, (1, 1, 2, 2), size=(10, 11)).shape == (2, 5, 3, 10, 11)


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


@pytest.mark.parametrize("size", [(72, 72), (50, 71), (112, 112)])
def test_cpr_pseudo_labels_line_up_with_the_frames_for_any_size(size):
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    frames = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = net(frames)

        class Identity(torch.nn.Module):
            def forward(self, labelled, mask, unlabelled):  # noqa: ANN001, ANN201
                return unlabelled

        labelled = torch.tensor([[True, False, True]])
        masks = torch.zeros(1, 3, 4, *out["features"].shape[-2:])
        decoded = reforge(Identity(), net.decoder.head, out["features"], labelled, masks, out["pad"])
    # with an identity reforging the pseudo-labels are exactly the network's own logits, pixel for pixel
    assert decoded.shape == out["logits"].shape
    assert torch.allclose(decoded, out["logits"], atol=1e-5)


def test_cpr_reforging_depends_on_the_drawn_mask_and_has_no_identity_path():
    torch.manual_seed(0)
    cpr = ChannelCrossAttention(8, 4)
    f_l, f_u = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    mask_a = torch.zeros(2, 4, 5, 5)
    mask_a[:, 1] = 1.0
    mask_b = torch.zeros(2, 4, 5, 5)
    mask_b[:, 2] = 1.0
    a, b = cpr(f_l, mask_a, f_u), cpr(f_l, mask_b, f_u)
    assert not torch.allclose(a, b)  # the drawn labels of the query frame shape the reforged features
    assert not torch.allclose(a, f_u, atol=1e-2)
