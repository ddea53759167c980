"""Baselines users would pick instead of EchoForge, behind the same clip interface.

* ``unet``: MONAI's 2-D U-Net (residual units), the usual supervised baseline;
* ``deeplabv3``: EchoNet-Dynamic's segmentation network, torchvision DeepLabV3-ResNet50 (random
  initialisation: nothing is downloaded), fed the grey frame replicated to three channels as
  EchoNet does.

Both segment each frame on its own: ``forward(frames B×T×H×W) -> {"logits": B×T×C×H×W}``; the
memory arguments of :class:`~echoforge.nets.echoforge_net.EchoForgeNet` are accepted and ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from echoforge.nets.config import NetConfig
from echoforge.nets.echoforge_net import INPUT_MEAN, INPUT_STD, pad_to_stride, unpad


class FrameSegmenter(nn.Module):
    """Apply a per-frame network (``N×1×H×W -> N×C×H×W`` logits) to clips."""

    stride = 16

    def __init__(self, config: NetConfig, net: nn.Module, rgb: bool = False):
        super().__init__()
        self.config, self.net, self.rgb = config, net, rgb

    def forward(self, frames: torch.Tensor, ref_masks: torch.Tensor | None = None,
                ref_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b, t, h, w = frames.shape
        padded, pad = pad_to_stride(frames, self.stride)
        x = (padded.reshape(b * t, 1, *padded.shape[-2:]) - INPUT_MEAN) / INPUT_STD
        if self.rgb:
            x = x.expand(-1, 3, -1, -1)
        logits = self.net(x)
        if isinstance(logits, dict):  # torchvision segmentation models return {"out": ...}
            logits = logits["out"]
        return {"logits": unpad(logits, pad).reshape(b, t, -1, h, w)}


def build_baseline(config: NetConfig) -> FrameSegmenter:
    if config.arch == "unet":
        from monai.networks.nets import UNet

        net = UNet(spatial_dims=2, in_channels=1, out_channels=config.n_classes, channels=(16, 32, 64, 128, 256),
                   strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
        return FrameSegmenter(config, net)
    if config.arch == "deeplabv3":
        from torchvision.models.segmentation import deeplabv3_resnet50

        net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=config.n_classes, aux_loss=False)
        return FrameSegmenter(config, net, rgb=True)
    raise ValueError(f"unknown baseline architecture {config.arch!r}")
