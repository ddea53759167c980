"""Augmentation suited to echo: one random rotation/scale/shift per clip, gamma, contrast, brightness.

The same geometric transform is applied to every frame of a clip (the heart does not jump between
frames) and to its labels. Transforms are 2×3 affine matrices in the normalised coordinates of
``torch.nn.functional.affine_grid``, so pseudo-labels can be carried back to the canonical
geometry with :func:`invert_affine` (what the CPR bank needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities (each transform applied with probability ``p``)."""

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.15)
    translate: float = 0.05
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.05
    p: float = 0.5


def identity_affine(batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.eye(2, 3, device=device).unsqueeze(0).repeat(batch, 1, 1)


def random_affine(batch: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """``B×2×3`` matrices mapping output coordinates to input coordinates."""
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(batch, generator=generator)

    def on() -> torch.Tensor:
        return (torch.rand(batch, generator=generator) < cfg.p).float()

    angle = on() * uniform(-cfg.rotation_deg, cfg.rotation_deg) * math.pi / 180
    scale = 1 + on() * (uniform(*cfg.scale) - 1)
    shift = on()[:, None] * (torch.rand(batch, 2, generator=generator) * 2 - 1) * cfg.translate * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def invert_affine(theta: torch.Tensor) -> torch.Tensor:
    full = torch.cat([theta, torch.tensor([0.0, 0.0, 1.0], device=theta.device).expand(theta.shape[0], 1, 3)], 1)
    return torch.linalg.inv(full)[:, :2]


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Apply per-clip affines ``B×2×3`` to ``B×T×H×W`` or ``B×T×C×H×W`` tensors (zeros outside)."""
    b, t = x.shape[:2]
    five = x.dim() == 5
    flat = x.reshape(b * t, -1 if five else 1, *x.shape[-2:])
    grid = F.affine_grid(theta.repeat_interleave(t, 0).to(flat.dtype), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.reshape(x.shape)


def photometric(frames: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gamma, contrast and brightness per clip on ``B×T×H×W`` frames in [0, 1]."""
    b = frames.shape[0]
    shape = (b, 1, 1, 1)

    def draw(lo: float, hi: float) -> torch.Tensor:
        use = torch.rand(b, generator=generator) < cfg.p
        value = lo + (hi - lo) * torch.rand(b, generator=generator)
        return torch.where(use, value, torch.ones(b)).reshape(shape).to(frames.device)

    out = frames.clamp(0, 1) ** draw(*cfg.gamma)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * draw(*cfg.contrast) + mean
    shift = (torch.rand(b, generator=generator) * 2 - 1) * cfg.brightness
    out = out + (torch.rand(b, generator=generator) < cfg.p).float().mul(shift).reshape(shape).to(frames.device)
    return out.clamp(0, 1)


def appearance_shift(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A strong, random change of how a clip looks (``B×T×H×W`` in [0, 1]), the same for all its frames:
    a random grey-level curve (five knots, not necessarily monotonic), blur and speckle-like noise.

    Training shows the network such clips together with a flow prior computed on the original ones,
    so it learns to lean on the drawn frames' propagation when the image looks unlike anything it
    knows — as a new scanner does.
    """
    b = frames.shape[0]
    out = []
    for i in range(b):
        knots = torch.sort(torch.rand(5, generator=generator)).values
        if float(torch.rand((), generator=generator)) < 0.3:  # sometimes a curve that folds back
            knots = torch.rand(5, generator=generator)
        knots[0] = knots[0] * 0.2
        scale = torch.quantile(frames[i].flatten()[::7], 0.99).clamp(min=0.05)  # the curve spans the clip's own range
        x = (frames[i] / scale).clamp(0, 1) * 4
        low = x.floor().clamp(max=3).long()
        curve = knots.to(frames.device)
        y = curve[low] + (x - low) * (curve[(low + 1).clamp(max=4)] - curve[low])
        sigma = float(torch.rand((), generator=generator)) * 1.5
        if sigma > 0.3:
            radius = int(2 * sigma + 1)
            t = torch.arange(-radius, radius + 1, dtype=frames.dtype, device=frames.device)
            kernel = torch.exp(-0.5 * (t / sigma) ** 2)
            kernel = kernel / kernel.sum()
            y = F.conv2d(F.pad(y[:, None], (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
            y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))[:, 0]
        noise = float(torch.rand((), generator=generator)) * 0.3
        speckle = torch.randn(y.shape, generator=generator).to(frames.device)
        out.append((y * (1 + noise * speckle)).clamp(0, 1))
    return torch.stack(out)
