"""EchoForge network: encoder → ARC → TSF (with a memory of past frames) → decoder.

Two ways to run it, giving the same masks on the same frames:

* :meth:`EchoForgeNet.forward` — a whole clip ``B×T×H×W`` (training and clip inference): the encoder,
  ARC and decoder run batched over all frames; only TSF walks through time, because each frame's
  memory holds the frames before it.
* :class:`echoforge.engine.streaming.StreamingSegmenter` — one frame at a time with a bounded
  memory, for a live scanner or Slicer (see that module).

Memory (choices where the paper is silent): *reference* frames — frames whose masks are given
(clinician annotations, or ground truth during training) — stay in memory for the whole clip with
their given masks, except while the frame itself is being predicted; besides them the memory keeps
the most recent predicted frames (first in, first out), ``memory_size`` frames in all (at least one
recent frame). Memory masks are class probabilities at stride 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from echoforge.nets.arc import AnchorRecalibration
from echoforge.nets.config import NetConfig
from echoforge.nets.decoder import MaskDecoder
from echoforge.nets.encoder import ResNetEncoder
from echoforge.nets.tsf import TemporalSemanticFusion

STRIDE = 16
#: frames in [0, 1] are standardised inside the network with these (echo frames are dark on average)
INPUT_MEAN, INPUT_STD = 0.2, 0.2


@dataclass
class EncodedFrames:
    """Per-frame encoder outputs: ``f4``, ``f8`` skips, ``x16`` (after ARC) and ARC's anchor maps."""

    f4: torch.Tensor
    f8: torch.Tensor
    x16: torch.Tensor
    weight_maps: torch.Tensor | None


class EchoForgeNet(nn.Module):
    """The EchoForge segmentation network (see the module docstring).

    Args:
        config: a :class:`~echoforge.nets.config.NetConfig` (use :func:`~echoforge.nets.build_model`).

    Example::

        net = build_model("light")
        out = net(frames)                       # frames: B×T×H×W in [0, 1]
        masks = out["logits"].argmax(2)         # B×T×H×W
    """

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.encoder = ResNetEncoder(config.encoder_depth, weights=config.encoder_weights)
        c4, c8, c16 = self.encoder.channels
        self.project = nn.Sequential(nn.Conv2d(c16, config.dim, 1, bias=False), nn.BatchNorm2d(config.dim),
                                     nn.ReLU(inplace=True))
        self.arc = AnchorRecalibration(config.dim, config.n_anchors, config.knn, config.patch,
                                       config.heads) if config.use_arc else None
        if config.use_tsf:
            self.tsf = TemporalSemanticFusion(config.dim, config.n_classes, config.n_queries, config.n_layers,
                                              config.heads)
            self.plain_head = None
        else:  # ablation: no temporal memory, a per-frame classifier on the (recalibrated) features
            self.tsf = None
            self.plain_head = nn.Conv2d(config.dim, config.n_classes, 1)
        self.decoder = MaskDecoder(c4, c8, config.dim, config.dec_dim, config.n_classes)

    # ------------------------------------------------------------------ stages
    def encode(self, frames: torch.Tensor) -> EncodedFrames:
        """``N×1×H×W`` frames (H, W multiples of 16) → :class:`EncodedFrames`."""
        f4, f8, f16 = self.encoder((frames - INPUT_MEAN) / INPUT_STD)
        x16 = self.project(f16)
        maps = None
        if self.arc is not None:
            x16, aux = self.arc(x16)
            maps = aux["weight_maps"]
        return EncodedFrames(f4, f8, x16, maps)

    def fuse(self, x16: torch.Tensor, mem_features: torch.Tensor | None, mem_masks: torch.Tensor | None,
             mem_valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``N×D×h×w`` with its memory → ``(features N×D×h×w, logits16 N×C×h×w)``."""
        if self.tsf is None:
            return x16, self.plain_head(x16)
        tokens = self.tsf.semantic_tokens(mem_features, mem_masks, mem_valid)
        return self.tsf(x16, tokens)

    def step(self, t: int, x16: torch.Tensor, f4: torch.Tensor, f8: torch.Tensor, memory: Memory
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment frame ``t`` of a batch with its memory, then remember it.

        The memory keeps this frame's *final* prediction (full-resolution probabilities pooled to
        stride 16), the best-supervised output of the network, rather than the coarse stride-16 logits.

        Returns:
            ``(logits N×C×H×W, logits16 N×C×h×w, decoder features N×E×H/4×W/4)`` on the padded grid.
        """
        fused, logits16 = self.fuse(x16, *memory.gather(t))
        logits, features = self.decoder(f4, f8, fused, logits16)
        memory.push(t, x16, F.adaptive_avg_pool2d(logits.softmax(dim=1), x16.shape[-2:]))
        return logits, logits16, features

    # ------------------------------------------------------------------ clip forward
    def forward(self, frames: torch.Tensor, ref_masks: torch.Tensor | None = None,
                ref_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Segment clips.

        Args:
            frames: B×T×H×W in [0, 1] (any H, W: padded to a multiple of 16 inside).
            ref_masks: B×T×H×W integer labels (or None) for the reference frames.
            ref_valid: B×T bool, which frames of which clip are references.

        Returns:
            ``logits`` B×T×C×H×W, ``logits16`` B×T×C×h×w, ``features`` B×T×E×H/4×W/4 (padded grid),
            ``weight_maps`` B×T×A×h×w (ARC heat maps; absent without ARC).
        """
        b, t, h, w = frames.shape
        padded, pad = pad_to_stride(frames)
        hp, wp = padded.shape[-2:]
        enc = self.encode(padded.reshape(b * t, 1, hp, wp))
        x16 = enc.x16.reshape(b, t, *enc.x16.shape[1:])
        refs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if ref_masks is not None and ref_valid is not None and bool(ref_valid.any()):
            refs16 = downsample_labels(F.pad(ref_masks, pad), self.config.n_classes, x16.shape[-2:])
            weight = ref_valid.to(x16.dtype)
            refs = {i: (x16[:, i], refs16[:, i], weight[:, i]) for i in range(t) if bool(ref_valid[:, i].any())}
        memory = Memory(self.config.memory_size, refs)
        f4 = enc.f4.reshape(b, t, *enc.f4.shape[1:])
        f8 = enc.f8.reshape(b, t, *enc.f8.shape[1:])
        steps = [self.step(i, x16[:, i], f4[:, i], f8[:, i], memory) for i in range(t)]
        logits, logits16, features = (torch.stack(parts, 1) for parts in zip(*steps, strict=True))
        out = {"logits": unpad(logits, pad), "logits16": logits16, "features": features}
        if enc.weight_maps is not None:
            out["weight_maps"] = enc.weight_maps.reshape(b, t, *enc.weight_maps.shape[1:])
        return out


class Memory:
    """The bounded memory TSF reads: reference frames (kept) + the most recent predicted frames (FIFO).

    Args:
        size: frames in memory in all (at least one recent frame is always kept).
        references: frame index → (features N×D×h×w, class fractions N×C×h×w, weight N); the weight
            says in which clips of the batch the frame is a reference (1) or not (0).
    """

    def __init__(self, size: int, references: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        self.references = references
        self.n_recent = max(1, size - len(references))
        self.recent: list[tuple[torch.Tensor, torch.Tensor]] = []

    def gather(self, t: int) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Memory for predicting frame ``t`` (a reference never sees itself)."""
        entries = [entry for r, entry in self.references.items() if r != t]
        entries += [(f, m, torch.ones(f.shape[0], device=f.device, dtype=f.dtype)) for f, m in self.recent]
        return stack_memory(entries)

    def push(self, t: int, features: torch.Tensor, probs: torch.Tensor) -> None:
        """Remember frame ``t`` with its predicted ``probs`` (drawn masks where it is a reference)."""
        if t in self.references:
            _, drawn, weight = self.references[t]
            if bool((weight > 0).all()):
                return  # already in memory as a reference
            w = weight[:, None, None, None]
            probs = w * drawn + (1 - w) * probs
        self.recent = (self.recent + [(features, probs)])[-self.n_recent:]


# ---------------------------------------------------------------------- helpers
def pad_to_stride(frames: torch.Tensor, stride: int = STRIDE) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims up to a multiple of ``stride``; returns the pad (left, right, top, bottom)."""
    h, w = frames.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(frames, pad) if ph or pw else frames), pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


def downsample_labels(labels: torch.Tensor, n_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """Integer labels ``…×H×W`` → class fractions ``…×C×h×w`` (area average of the one-hot)."""
    lead = labels.shape[:-2]
    onehot = F.one_hot(labels.long().clamp(0, n_classes - 1), n_classes).movedim(-1, -3).float()
    flat = onehot.reshape(-1, n_classes, *labels.shape[-2:])
    return F.adaptive_avg_pool2d(flat, size).reshape(*lead, n_classes, *size)


def stack_memory(entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``[(N×D×h×w, N×C×h×w, N)]`` → ``(N×M×D×h×w, N×M×C×h×w, N×M)``, or Nones for an empty memory."""
    if not entries:
        return None, None, None
    feats, masks, valid = zip(*entries, strict=True)
    return torch.stack(feats, 1), torch.stack(masks, 1), torch.stack(valid, 1)
