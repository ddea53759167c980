"""Small transformer building blocks shared by ARC, TSF and CPR (pre-norm, residual)."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """``x + MLP(LN(x))`` on token sequences ``N×L×D``."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(self.norm(x))


class CrossAttention(nn.Module):
    """``q + MHA(LN(q), LN(kv), LN(kv))`` with an optional boolean mask (True = blocked).

    Shapes: ``q`` N×Lq×D, ``kv`` N×Lk×D, ``blocked`` N×Lq×Lk.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, blocked: torch.Tensor | None = None) -> torch.Tensor:
        mask = None
        if blocked is not None:
            # a query with every key blocked would give NaNs: let it see everything instead
            blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
            mask = blocked.repeat_interleave(self.heads, dim=0)
        kv_n = self.norm_kv(kv)
        out, _ = self.attn(self.norm_q(q), kv_n, kv_n, attn_mask=mask, need_weights=False)
        return q + out


class SelfAttention(nn.Module):
    """``x + MHA(LN(x))`` on ``N×L×D``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        out, _ = self.attn(n, n, n, need_weights=False)
        return x + out
