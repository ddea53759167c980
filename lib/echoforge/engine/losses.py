"""Losses of semi-supervised training (all on B×T clips, restricted to the frames they concern)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss


class LabelledLoss:
    """Cross-entropy + Dice (MONAI ``DiceCELoss``, 1:1) on the labelled frames' full-resolution logits."""

    def __init__(self) -> None:
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, squared_pred=False,
                                  batch=False, lambda_dice=1.0, lambda_ce=1.0)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """``logits`` B×T×C×H×W, ``labels`` B×T×H×W, ``labelled`` B×T bool."""
        if not bool(labelled.any()):
            return logits.sum() * 0.0
        return self.dice_ce(logits[labelled].float(), labels[labelled].unsqueeze(1))


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean CE over pixels with ``weight`` (N×H×W, 0/1); zero when no pixel is selected."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * weight).sum() / weight.sum().clamp(min=1.0)


def anchor_map_loss(weight_maps: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """BCE between ARC's foreground weight map (channel 0) and the foreground fraction of each cell.

    Our addition (the paper is silent on how the anchors learn what foreground is): a light
    auxiliary signal on the labelled frames only.
    """
    if not bool(labelled.any()):
        return weight_maps.sum() * 0.0
    fg = (labels[labelled] > 0).float().unsqueeze(1)
    target = F.adaptive_avg_pool2d(fg, weight_maps.shape[-2:])
    return F.binary_cross_entropy(weight_maps[labelled][:, :1].float().clamp(1e-6, 1 - 1e-6), target)
