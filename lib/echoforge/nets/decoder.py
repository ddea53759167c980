"""The decoder from stride-16 masks back to full resolution (FPN-style, with encoder skips)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MaskDecoder(nn.Module):
    """Fuse the TSF output (features + stride-16 logits) with stride-8 and stride-4 encoder features,
    and with the memory readout at stride 8 when there is one.

    Shapes:
        ``forward(f4 N×C4×H/4×W/4, f8 N×C8×H/8×W/8, f16 N×D×H/16×W/16, logits16 N×K×H/16×W/16,
        readout N×R×H/8×W/8 or None)`` ``-> (logits N×K×H×W, features N×E×H/4×W/4)``; the features
        are what CPR reforges. The readout's last K channels (the propagated masks) also join the
        stride-16 input, pooled. ``prior`` (N×(K+1)×H×W: the optical-flow prior's class probabilities
        and a channel saying whether there is one) joins at strides 8 and 4.
    """

    def __init__(self, c4: int, c8: int, dim: int, dec_dim: int, n_classes: int, readout_dim: int = 0,
                 prior_dim: int = 0):
        super().__init__()
        self.n_classes = n_classes
        self.top = conv_block(dim + n_classes + (n_classes if readout_dim else 0), dec_dim)
        self.readout8 = nn.Conv2d(readout_dim, dec_dim, 1) if readout_dim else None
        self.prior8 = nn.Conv2d(prior_dim, dec_dim, 1) if prior_dim else None
        self.prior4 = nn.Conv2d(prior_dim, dec_dim, 1) if prior_dim else None
        self.lateral8 = nn.Conv2d(c8, dec_dim, 1)
        self.fuse8 = conv_block(dec_dim, dec_dim)
        self.lateral4 = nn.Conv2d(c4, dec_dim, 1)
        self.fuse4 = conv_block(dec_dim, dec_dim)
        self.head = nn.Conv2d(dec_dim, n_classes, 1)

    def features(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor, logits16: torch.Tensor,
                 readout: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
        top = [f16, logits16]
        if self.readout8 is not None:
            top.append(F.adaptive_avg_pool2d(readout[:, -self.n_classes:], f16.shape[-2:]))
        x = self.top(torch.cat(top, dim=1))
        x = F.interpolate(x, size=f8.shape[-2:], mode="bilinear", align_corners=False) + self.lateral8(f8)
        if self.readout8 is not None:
            x = x + self.readout8(readout)
        if self.prior8 is not None:
            x = x + self.prior8(F.adaptive_avg_pool2d(prior, f8.shape[-2:]))
        x = F.interpolate(self.fuse8(x), size=f4.shape[-2:], mode="bilinear", align_corners=False) + self.lateral4(f4)
        if self.prior4 is not None:
            x = x + self.prior4(F.adaptive_avg_pool2d(prior, f4.shape[-2:]))
        return self.fuse4(x)

    def classify(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits at ``size`` from decoder features."""
        return F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)

    def forward(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor, logits16: torch.Tensor,
                readout: torch.Tensor | None = None, prior: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(f4, f8, f16, logits16, readout, prior)
        size = (f4.shape[-2] * 4, f4.shape[-1] * 4)
        return self.classify(features, size), features
