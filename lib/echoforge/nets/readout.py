"""Pixel-level memory readout: every pixel of the current frame reads the masks of the memory frames.

TSF pools one token per class over the whole memory at stride 16: a drawn mask tells the network
what the LV looks like in this video, never *where* it is. The readout (space-time memory
attention, as in STM, XMem, Cutie and SAM 2) carries the shape: at stride 8, each pixel of the
current frame compares its *key* with the keys of every pixel of the memory frames (the drawn
frames and the most recent predictions) and reads, weighted by that affinity,

* their *values* (an embedding of the frame's features together with its mask), and
* their masks themselves (class probabilities) — the drawn contours, propagated.

Both go to the decoder (:class:`~echoforge.nets.decoder.MaskDecoder`). This part goes beyond the
paper; ``use_readout`` switches it off (the ``paper`` configuration and the ablation).

Choices (Cutie/XMem conventions): keys from a 1×1 projection of the stride-8 encoder features;
affinity the negative squared L2 distance between keys scaled by 1/√K (XMem), softmax over all
memory pixels; values from a small convolution of [projected stride-8 features, mask]; an empty
memory (the first frame of an automatic run) reads zeros.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MemoryReadout(nn.Module):
    """Keys, values and the affinity readout of the stride-8 memory.

    Args:
        c8: channels of the stride-8 encoder features.
        n_classes: mask classes C.
        key_dim: key channels K.
        value_dim: value channels V.

    Shapes: ``key(f8 N×c8×h×w) -> N×K×h×w``; ``value(f8, mask N×C×h×w) -> N×V×h×w``;
    ``forward(query N×K×h×w, keys N×M×K×h×w, values N×M×V×h×w, masks N×M×C×h×w, valid N×M)
    -> N×(V+C)×h×w``.
    """

    def __init__(self, c8: int, n_classes: int, key_dim: int = 64, value_dim: int = 64):
        super().__init__()
        self.n_classes, self.key_dim, self.value_dim = n_classes, key_dim, value_dim
        self.key_proj = nn.Conv2d(c8, key_dim, 1)
        self.value_proj = nn.Conv2d(c8, value_dim, 1)
        self.value_fuse = nn.Sequential(nn.Conv2d(value_dim + n_classes, value_dim, 3, padding=1),
                                        nn.GroupNorm(1, value_dim), nn.ReLU(inplace=True),
                                        nn.Conv2d(value_dim, value_dim, 3, padding=1))

    @property
    def channels(self) -> int:
        """Channels of the readout handed to the decoder (values + masks)."""
        return self.value_dim + self.n_classes

    def key(self, f8: torch.Tensor) -> torch.Tensor:
        return self.key_proj(f8)

    def value(self, f8: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.value_fuse(torch.cat([self.value_proj(f8), mask], dim=1))

    def forward(self, query: torch.Tensor, keys: torch.Tensor | None, values: torch.Tensor | None,
                masks: torch.Tensor | None, valid: torch.Tensor | None) -> torch.Tensor:
        n, k, h, w = query.shape
        if keys is None or keys.shape[1] == 0:
            return query.new_zeros(n, self.channels, h, w)
        m = keys.shape[1]
        q = query.flatten(2)  # N×K×hw
        mk = keys.transpose(1, 2).flatten(2)  # N×K×(M·h'w')
        # −‖q − k‖² / √K without the ‖q‖² term, which is the same for every key of a query pixel
        similarity = (2.0 * torch.einsum("nkq,nkp->nqp", q, mk) - (mk * mk).sum(1, keepdim=True)) / math.sqrt(k)
        if valid is not None:
            blocked = (valid <= 0).repeat_interleave(mk.shape[-1] // m, dim=1)  # N×(M·h'w')
            similarity = similarity.masked_fill(blocked[:, None, :], float("-inf"))
        affinity = similarity.float().softmax(dim=-1).to(query.dtype)
        affinity = torch.nan_to_num(affinity)  # a clip of the batch with no valid memory entry reads zeros
        read = torch.cat([values, masks], dim=2).transpose(1, 2).flatten(2)  # N×(V+C)×(M·h'w')
        return torch.einsum("nqp,ncp->ncq", affinity, read).reshape(n, -1, h, w)

