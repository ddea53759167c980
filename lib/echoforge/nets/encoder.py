"""Image encoders: torchvision ResNets cut at stride 16, for single-channel echo frames.

Weights are only ever read from a local file (a torchvision ImageNet checkpoint or one of ours);
with none given the encoder starts from random initialisation. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from echoforge.errors import UnreadableFileError

RESNETS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}


class ResNetEncoder(nn.Module):
    """ResNet stem + layer1..layer3 giving features at strides 4, 8 and 16 (+ layer4 at stride 32).

    The first convolution takes one grey channel; ImageNet RGB weights are folded into it by
    summing over the colour axis (the standard way to reuse them for grey images).

    Args:
        depth: 18, 34 or 50.
        weights: optional local path to a torchvision ResNet state dict.
        layer4: keep the last stage too (``paper``: the whole ResNet-50 of the paper's encoder).

    Shapes:
        ``forward(N×1×H×W) -> (N×C4×H/4×W/4, N×C8×H/8×W/8, N×C16×H/16×W/16[, N×C32×H/32×W/32])``
    """

    def __init__(self, depth: int = 18, weights: str | os.PathLike[str] | None = None, layer4: bool = False):
        super().__init__()
        if depth not in RESNETS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNETS)}, got {depth}")
        net = RESNETS[depth](weights=None)
        if weights is not None:
            load_imagenet_weights(net, weights)
        conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            conv1.weight.copy_(net.conv1.weight.sum(dim=1, keepdim=True))
        self.stem = nn.Sequential(conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.layer4 = net.layer4 if layer4 else None
        expansion = 4 if depth == 50 else 1
        self.channels = (64 * expansion, 128 * expansion, 256 * expansion)
        self.channels32 = 512 * expansion if layer4 else 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f4 = self.layer1(self.stem(x))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        if self.layer4 is None:
            return f4, f8, f16
        return f4, f8, f16, self.layer4(f16)


def load_imagenet_weights(net: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local torchvision ResNet checkpoint into ``net`` (the classifier head may be absent)."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("encoder weights not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise UnreadableFileError(f"cannot read encoder weights ({err})", path) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = net.load_state_dict(state, strict=False)
    core_missing = [k for k in missing if not k.startswith("fc.")]
    if core_missing or unexpected:
        raise UnreadableFileError(
            f"not a matching ResNet checkpoint ({len(core_missing)} missing, {len(unexpected)} unexpected keys)", path)
