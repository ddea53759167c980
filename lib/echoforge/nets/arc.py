"""ARC — Anchor Recalibration, the first half of Anchor Semantic Awareness (ASA).

Speckle makes many feature patches ambiguous between heart and background. ARC learns foreground
and background *anchors* from the frame itself and pulls the ambiguous patches toward the anchor
they are closer to, leaving confident patches untouched:

1. weight maps ``M = softmax_channels(conv1x1(X))`` (one map per anchor) and initial anchors by
   weighted average pooling ``a_i = Σ M_i X / Σ M_i``;
2. KNN filtering: the ``K`` pixel features nearest (cosine) to each anchor;
3. Feature Fusion: cross-attention from the anchor to its ``K`` neighbours, with residual + FFN;
4. patch-wise recalibration: each ``P×P`` patch gets a foreground probability from its cosine
   similarity to the anchors; patches with probability in the uncertainty band [0.4, 0.6] are
   linearly interpolated toward the more confident anchor, with a weight that grows as the
   similarity difference shrinks; the others keep their features.

Choices where the paper is silent (documented, and measured by the ablation benchmark):

* ``K = 16`` neighbours; the patch size per configuration (``patch`` in :mod:`echoforge.nets.config`);
  anchors split into foreground (first ⌈A/2⌉) and background (the rest); a single anchor is a
  foreground anchor with ``p_fg = (1 + cos) / 2``.
* anchor probabilities ``p_fg = σ(ℓ)`` with the patch logit
  ``ℓ = logsumexp(cos_fg / T) − logsumexp(cos_bg / T)`` (= the softmax over anchors summed over
  the foreground ones), ``T = 0.1``;
* cosines are taken between *centred* vectors (the frame's mean feature subtracted from patches and
  anchors). Without centring the ReLU'd features of a frame all point into one orthant, every
  cosine is close to one and a drifting anchor pushes all patches to the same side of the band;
* the patch probability is *supervised* on annotated frames (:func:`echoforge.engine.losses.arc_patch_loss`:
  BCE against the patch's foreground fraction). A patch on a structure border is half heart, half
  background, so its target lies inside the band: ARC stays active exactly where the boundary is
  unclear instead of leaving the band during training (where its weight, hence its gradient, is zero);
* interpolation weight ``w = s · (1 − |p_fg − 0.5| / 0.1)`` inside the band, with a learnt strength
  ``s = σ(θ)`` (θ = 0 at start, so s = 0.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from echoforge.nets.attention import CrossAttention, FeedForward


class AnchorRecalibration(nn.Module):
    """Recalibrate ``N×D×h×w`` features toward learnt FG/BG anchors.

    Args:
        dim: feature channels D.
        n_anchors: number of anchors A (2 = one foreground, one background, as in the paper).
        knn: neighbours K per anchor.
        patch: patch size on the feature map.
        heads: attention heads of the Feature Fusion.
        band: the uncertainty band of foreground probability.
        temperature: softmax temperature on cosine similarities.

    Returns from ``forward``: the recalibrated features (same shape) and a dict with
    ``weight_logits`` (N×A×h×w, before the channel softmax) and ``weight_maps`` (the anchor heat
    maps; channel 0 is foreground), ``patch_logit`` (N×1×h'×w', the foreground logit of each patch),
    ``p_fg`` (its sigmoid) and ``weight`` (N×1×h'×w', the recalibration weight of each patch).
    """

    def __init__(self, dim: int, n_anchors: int = 2, knn: int = 16, patch: int = 2, heads: int = 4,
                 band: tuple[float, float] = (0.4, 0.6), temperature: float = 0.1):
        super().__init__()
        if n_anchors < 1:
            raise ValueError("ARC needs at least one anchor")
        self.n_anchors, self.knn, self.patch, self.band, self.temperature = n_anchors, knn, patch, band, temperature
        self.n_fg = math.ceil(n_anchors / 2)
        self.weight_conv = nn.Conv2d(dim, n_anchors, kernel_size=1)
        self.fusion = CrossAttention(dim, heads)
        self.fusion_ffn = FeedForward(dim, mult=2)
        self.strength = nn.Parameter(torch.zeros(()))

    def anchors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchors ``N×A×D`` after KNN filtering and fusion, and the weight-map logits ``N×A×h×w``."""
        n, d, h, w = x.shape
        logits = self.weight_conv(x)
        maps = logits.softmax(dim=1)
        tokens = x.flatten(2)  # N×D×hw
        initial = torch.einsum("nap,ndp->nad", maps.flatten(2), tokens) / (maps.flatten(2).sum(-1, keepdim=True) + 1e-6)
        k = min(self.knn, h * w)
        sim = torch.einsum("nad,ndp->nap", F.normalize(initial, dim=-1), F.normalize(tokens, dim=1))
        idx = sim.topk(k, dim=-1).indices  # N×A×K
        neighbours = torch.gather(tokens.transpose(1, 2).unsqueeze(1).expand(n, self.n_anchors, h * w, d), 2,
                                  idx.unsqueeze(-1).expand(n, self.n_anchors, k, d))  # N×A×K×D
        fused = self.fusion(initial.reshape(n * self.n_anchors, 1, d), neighbours.reshape(n * self.n_anchors, k, d))
        fused = self.fusion_ffn(fused).reshape(n, self.n_anchors, d)
        return fused, logits

    def patch_logit(self, cos: torch.Tensor) -> torch.Tensor:
        """Anchor cosines ``N×A×h'×w'`` → foreground logit ``N×1×h'×w'`` (see the module docstring)."""
        if self.n_anchors == self.n_fg:  # foreground anchors only: p = (1 + max cos) / 2
            p = ((1.0 + cos.max(dim=1, keepdim=True).values) / 2.0).clamp(1e-4, 1 - 1e-4)
            return torch.log(p) - torch.log1p(-p)
        scaled = cos / self.temperature
        return (torch.logsumexp(scaled[:, : self.n_fg], dim=1, keepdim=True)
                - torch.logsumexp(scaled[:, self.n_fg:], dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n, d, h, w = x.shape
        anchors, weight_logits = self.anchors(x)
        patches = F.avg_pool2d(x, self.patch, ceil_mode=True) if self.patch > 1 else x
        centre = x.mean(dim=(2, 3))  # N×D, the frame's mean feature
        cos = torch.einsum("nad,ndhw->nahw", F.normalize(anchors - centre[:, None], dim=-1),
                           F.normalize(patches - centre[:, :, None, None], dim=1))
        logit = self.patch_logit(cos)
        p_fg = torch.sigmoid(logit)
        lo, hi = self.band
        half_width = (hi - lo) / 2.0
        uncertain = (p_fg >= lo) & (p_fg <= hi)
        weight = torch.sigmoid(self.strength) * (1.0 - (p_fg - 0.5).abs() / half_width).clamp(min=0.0) * uncertain
        # the more confident side decides the target; within it, the most similar anchor
        fg_best = cos[:, : self.n_fg].argmax(dim=1, keepdim=True)
        bg_best = cos[:, self.n_fg:].argmax(dim=1, keepdim=True) + self.n_fg if self.n_anchors > self.n_fg else fg_best
        choice = torch.where(p_fg >= 0.5, fg_best, bg_best)  # N×1×h'×w'
        target = torch.gather(anchors, 1, choice.flatten(1).unsqueeze(-1).expand(-1, -1, d))  # N×h'w'×D
        target = target.transpose(1, 2).reshape(n, d, *choice.shape[2:])
        patch_weight = weight
        if self.patch > 1:
            weight = F.interpolate(weight, scale_factor=self.patch, mode="nearest")[..., :h, :w]
            target = F.interpolate(target, scale_factor=self.patch, mode="nearest")[..., :h, :w]
        out = (1.0 - weight) * x + weight * target
        return out, {"weight_logits": weight_logits, "weight_maps": weight_logits.softmax(dim=1),
                     "patch_logit": logit, "p_fg": p_fg, "weight": patch_weight}
