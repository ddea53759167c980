"""Losses of semi-supervised training (all on B×T clips, restricted to the frames they concern)."""

from __future__ import annotations

import math

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


def foreground_fraction(labels: torch.Tensor, size: tuple[int, int], patch: int = 1) -> torch.Tensor:
    """Heart (label > 0) fraction of each stride-16 cell (``patch`` > 1: of each ``patch×patch`` group
    of cells, pooled as ARC pools its patches): ``N×H×W`` labels → ``N×1×h×w``."""
    fg = (labels > 0).float().unsqueeze(1)
    fg = F.adaptive_avg_pool2d(fg, size)
    return F.avg_pool2d(fg, patch, ceil_mode=True) if patch > 1 else fg


def _foreground_logit(logits: torch.Tensor, n_fg: int) -> torch.Tensor:
    """``N×A×h×w`` anchor logits → ``N×1×h×w`` logit of the foreground anchors' summed softmax."""
    return (torch.logsumexp(logits[:, :n_fg], dim=1, keepdim=True)
            - torch.logsumexp(logits[:, n_fg:], dim=1, keepdim=True))


def anchor_map_loss(weight_logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """BCE between ARC's foreground weight map and the foreground fraction of each cell.

    Our addition (the paper is silent on how the anchors learn what foreground is): a light
    auxiliary signal on the labelled frames only. Computed from logits (``binary_cross_entropy_with_logits``),
    which CUDA autocast allows, unlike BCE on probabilities. A single anchor has no map to supervise.

    Args:
        weight_logits: B×T×A×h×w anchor heat-map logits (channels: foreground anchors first).
        labels: B×T×H×W (padded to the stride grid), labelled: B×T bool.
    """
    n_anchors = weight_logits.shape[2]
    if n_anchors < 2 or not bool(labelled.any()):
        return weight_logits.sum() * 0.0
    logit = _foreground_logit(weight_logits[labelled].float(), math.ceil(n_anchors / 2))
    target = foreground_fraction(labels[labelled], logit.shape[-2:])
    return F.binary_cross_entropy_with_logits(logit, target)


def arc_patch_loss(patch_logit: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor, patch: int
                   ) -> torch.Tensor:
    """BCE (with logits) between ARC's per-patch foreground logit and the patch's foreground fraction.

    Keeps ARC's uncertainty band meaningful: a patch half on the heart has target 0.5, inside the
    band, where ARC recalibrates (see :mod:`echoforge.nets.arc`).

    Args:
        patch_logit: B×T×1×h'×w'. labels: B×T×H×W padded to the stride grid. labelled: B×T bool.
        patch: ARC's patch size on the stride-16 grid.
    """
    if not bool(labelled.any()):
        return patch_logit.sum() * 0.0
    logit = patch_logit[labelled].float()
    cells = (labels.shape[-2] // 16, labels.shape[-1] // 16)
    target = foreground_fraction(labels[labelled], cells, patch)
    return F.binary_cross_entropy_with_logits(logit, target)
