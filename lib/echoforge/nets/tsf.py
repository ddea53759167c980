"""TSF — Temporal Semantic Fusion, the second half of Anchor Semantic Awareness (ASA).

Past frames (the memory: their features and masks) tell the current frame what each structure
looks like in *this* video:

1. **mask pooling**: one semantic token per class, the mask-weighted mean of the memory features
   ``t_c = Σ m_c F_r / Σ m_c`` over all memory frames;
2. **in-context fusion** (self-attention → cross-attention → FFN): the tokens attend to the current
   frame's patches and become the semantic prototypes ``P_sem``; the current features attend back
   to the prototypes and become the enhanced features ``F_t'``;
3. **query–prototype decoding**: learnt queries ``Q`` and the prototypes share a self-attention;
   the queries then do masked cross-attention into ``F_t'`` (each query sees only the pixels its own
   current mask covers, as in Mask2Former) and an FFN; the prototypes an FFN;
4. **mask head**: per pixel, ``softmax_q⟨Q_q, F'⟩ ⊗ σ⟨P_c, F'⟩`` (queries × classes) → FFN → class
   logits at stride 16, plus the prototype logits ``⟨P_c, F'⟩`` as a residual path so that every
   class always has a direct route to the output.

Choices where the paper is silent: one token per class pooled over the whole memory; learnt
*prior* tokens stand in for the memory when it is empty (the first frame of an unannotated video)
and fill in classes the memory masks do not cover; the number of queries and layers per named
configuration (see :mod:`echoforge.nets.config`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from echoforge.nets.attention import CrossAttention, FeedForward, SelfAttention


class InContextFusion(nn.Module):
    """Semantic tokens ↔ current-frame features. ``(N×C×D, N×L×D) -> (P_sem N×C×D, F' N×L×D)``."""

    def __init__(self, dim: int, heads: int, ffn_mult: int = 4):
        super().__init__()
        self.token_self = SelfAttention(dim, heads)
        self.token_cross = CrossAttention(dim, heads)
        self.token_ffn = FeedForward(dim, ffn_mult)
        self.feature_cross = CrossAttention(dim, heads)
        self.feature_ffn = FeedForward(dim, mult=2)

    def forward(self, tokens: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prototypes = self.token_ffn(self.token_cross(self.token_self(tokens), features))
        enhanced = self.feature_ffn(self.feature_cross(features, prototypes))
        return prototypes, enhanced


class QueryPrototypeLayer(nn.Module):
    """Shared self-attention over [queries; prototypes], masked cross-attention + FFN for the queries."""

    def __init__(self, dim: int, heads: int, ffn_mult: int = 4):
        super().__init__()
        self.shared_self = SelfAttention(dim, heads)
        self.masked_cross = CrossAttention(dim, heads)
        self.query_ffn = FeedForward(dim, ffn_mult)
        self.prototype_ffn = FeedForward(dim, ffn_mult)

    def forward(self, queries: torch.Tensor, prototypes: torch.Tensor, features: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        nq = queries.shape[1]
        joint = self.shared_self(torch.cat([queries, prototypes], dim=1))
        queries, prototypes = joint[:, :nq], joint[:, nq:]
        # each query attends only where its current mask is on (sigmoid of the dot product > 0.5)
        blocked = torch.einsum("nqd,nld->nql", queries, features) < 0
        queries = self.query_ffn(self.masked_cross(queries, features, blocked.detach()))
        return queries, self.prototype_ffn(prototypes)


class TemporalSemanticFusion(nn.Module):
    """Memory-conditioned mask prediction at stride 16.

    Args:
        dim: feature channels D.
        n_classes: output classes C (4 for CAMUS labels, 2 for binary LV).
        n_queries: learnt queries.
        n_layers: query–prototype layers.
        heads: attention heads.
        ffn_mult: hidden width of the feed-forward blocks, in multiples of D.
    """

    def __init__(self, dim: int, n_classes: int, n_queries: int = 8, n_layers: int = 1, heads: int = 4,
                 ffn_mult: int = 4):
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.prior_tokens = nn.Parameter(torch.randn(n_classes, dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.fusion = InContextFusion(dim, heads, ffn_mult)
        self.layers = nn.ModuleList(QueryPrototypeLayer(dim, heads, ffn_mult) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        hidden = max(2 * n_classes * n_queries, 32)
        self.mask_ffn = nn.Sequential(nn.Conv2d(n_queries * n_classes, hidden, 1), nn.GELU(),
                                      nn.Conv2d(hidden, n_classes, 1))

    def semantic_tokens(self, mem_features: torch.Tensor | None, mem_masks: torch.Tensor | None,
                        mem_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Mask pooling of the memory.

        Args:
            mem_features: N×M×D×h×w features of M memory frames (or None: empty memory).
            mem_masks: N×M×C×h×w class probabilities of those frames.
            mem_valid: N×M weights (0 for padding entries).

        Returns:
            N×C×D tokens; where a class has (almost) no mask mass, the prior token fills in.
        """
        if mem_features is None or mem_features.shape[1] == 0:
            return self.prior_tokens.unsqueeze(0)
        masks = mem_masks if mem_valid is None else mem_masks * mem_valid[:, :, None, None, None]
        mass = masks.sum(dim=(1, 3, 4))  # N×C
        pooled = torch.einsum("nmchw,nmdhw->ncd", masks, mem_features) / (mass.unsqueeze(-1) + 1e-6)
        # a class covering less than one feature pixel in the memory falls back to the prior
        trust = (mass / (mass + 1.0)).unsqueeze(-1)
        return trust * pooled + (1.0 - trust) * self.prior_tokens.unsqueeze(0)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N×D×h×w, N×C×D) -> (F' N×D×h×w, logits N×C×h×w)``."""
        n, d, h, w = features.shape
        flat = features.flatten(2).transpose(1, 2)  # N×hw×D
        tokens = tokens.expand(n, -1, -1)
        prototypes, enhanced = self.fusion(tokens, flat)
        queries = self.queries.unsqueeze(0).expand(n, -1, -1)
        for layer in self.layers:
            queries, prototypes = layer(queries, prototypes, enhanced)
        enhanced_n = self.norm(enhanced)
        scale = 1.0 / math.sqrt(d)
        query_logits = torch.einsum("nqd,nld->nql", self.norm(queries), enhanced_n) * scale
        proto_logits = torch.einsum("ncd,nld->ncl", self.norm(prototypes), enhanced_n) * scale
        combined = query_logits.softmax(dim=1).unsqueeze(2) * torch.sigmoid(proto_logits).unsqueeze(1)  # N×Q×C×hw
        logits = self.mask_ffn(combined.reshape(n, -1, h, w)) + proto_logits.reshape(n, -1, h, w)
        return enhanced.transpose(1, 2).reshape(n, d, h, w), logits
