"""CPR — Continuous Pseudo-label Reforging.

Only ED and ES are drawn; the frames in between need targets. CPR makes them from what the
network knows about the drawn frames:

* **channel-wise cross-attention** (:class:`ChannelCrossAttention`): queries from a labelled frame,
  keys and values from an unlabelled frame ``F^U``; ``A = softmax(IN(Q Kᵀ))`` is a C×C channel
  affinity (instance-normalised before the softmax) and the reforged features are ``W_o(A V)``.
  The network's own classifier decodes them into pseudo-labels. CPR is trained on the drawn pairs:
  reforging ES with ED as the query (and the reverse) must give the drawn ES (ED) labels.
* **the bank** (:class:`PseudoLabelBank`): each step stores the reforged pseudo-labels of a clip's
  unlabelled frames, keyed by (video, frame); the next epoch trains on them (the paper's "epoch
  t−1 flow"). Entries are kept in the *canonical* geometry (before augmentation) so they line up
  with any later augmentation of the same frames, and each new reforging is blended with the
  stored one (``momentum``), which makes the labels evolve continuously rather than jump.

Choices where the paper is silent:

* features are the decoder's stride-4 features; the query frame for an unlabelled frame is the
  labelled frame nearest in time;
* the query carries the labelled frame's *drawn mask* (``Q = W_q F^L + W_m Y^L``): the drawn labels
  are what the labelled frame knows that the unlabelled one does not;
* no residual path: ``F̂^U = W_o(A V)``. With ``F^U + W_o(A V)`` the identity is already optimal
  for the only supervised task (decode a drawn frame's labels from its own features), CPR learns
  nothing and the "reforged" labels are the plain predictions;
* CPR learns on features and classifier weights that are *detached* (:func:`reforge` with
  ``detach=True``): it is a pseudo-label generator and its loss does not reshape the segmentation
  network; during that training the keys/values get a random per-channel gain and offset
  (``jitter``), so CPR must take the channel statistics from the labelled frame rather than copy
  the target frame through;
* the pseudo-labels are stored as probabilities at half the input resolution (float16, on the
  CPU); blend momentum 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelCrossAttention(nn.Module):
    """Reforge ``F^U`` (N×E×h×w) with a labelled frame (features ``F^L`` N×E×h×w and its mask
    ``Y^L`` N×C×h×w, class fractions) as the query.

    Args:
        channels: feature channels E.
        n_classes: classes C of the labelled frame's mask.
    """

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.q = nn.Conv2d(channels, channels, 1, bias=False)
        self.q_mask = nn.Conv2d(n_classes, channels, 1, bias=False)
        self.k = nn.Conv2d(channels, channels, 1, bias=False)
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)
        self.norm = nn.InstanceNorm2d(1)

    def forward(self, labelled: torch.Tensor, labelled_mask: torch.Tensor, unlabelled: torch.Tensor) -> torch.Tensor:
        n, c, h, w = unlabelled.shape
        q = (self.q(labelled) + self.q_mask(labelled_mask)).flatten(2)  # N×C×hw
        k = self.k(unlabelled).flatten(2)
        v = self.v(unlabelled).flatten(2)
        affinity = self.norm((q @ k.transpose(1, 2)).unsqueeze(1)).squeeze(1).softmax(dim=-1)  # N×C×C
        return self.out((affinity @ v).reshape(n, c, h, w))


class PseudoLabelBank:
    """Per-video, per-frame pseudo-label probabilities in canonical geometry (CPU, float16).

    Example::

        bank.update(["vid1"], [[3, 4]], probs, valid)   # probs N×F×C×h×w, valid N×F×1×h×w
        probs, valid = bank.lookup(["vid1"], [[3, 4]], like=probs)
    """

    def __init__(self, momentum: float = 0.5):
        if not 0 <= momentum < 1:
            raise ValueError("momentum must be in [0, 1)")
        self.momentum = momentum
        self._store: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def update(self, videos: list[str], frames: list[list[int]], probs: torch.Tensor, valid: torch.Tensor) -> None:
        for i, video in enumerate(videos):
            for j, frame in enumerate(frames[i]):
                new_p = probs[i, j].detach().to("cpu", torch.float16)
                new_v = valid[i, j].detach().to("cpu", torch.float16)
                key = (video, int(frame))
                if key in self._store:
                    old_p, old_v = self._store[key]
                    both = (old_v > 0.5) & (new_v > 0.5)
                    blended = torch.where(both, self.momentum * old_p + (1 - self.momentum) * new_p,
                                          torch.where(new_v > 0.5, new_p, old_p))
                    new_p, new_v = blended, torch.maximum(old_v, new_v)
                self._store[key] = (new_p, new_v)

    def lookup(self, videos: list[str], frames: list[list[int]], like: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored entries for ``frames`` of ``videos`` shaped like ``like`` (N×F×C×h×w); missing ones are invalid."""
        n, f, c, h, w = like.shape
        probs = torch.zeros(n, f, c, h, w)
        valid = torch.zeros(n, f, 1, h, w)
        for i, video in enumerate(videos):
            for j, frame in enumerate(frames[i]):
                entry = self._store.get((video, int(frame)))
                if entry is not None and entry[0].shape[-2:] == (h, w):
                    probs[i, j], valid[i, j] = entry[0].float(), entry[1].float()
        return probs.to(like.device), valid.to(like.device)

    def state_dict(self) -> dict[str, object]:
        keys = sorted(self._store)
        return {"momentum": self.momentum, "keys": [[v, f] for v, f in keys],
                "probs": [self._store[k][0] for k in keys], "valid": [self._store[k][1] for k in keys]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.momentum = float(state["momentum"])
        self._store = {(str(v), int(f)): (p, q) for (v, f), p, q in
                       zip(state["keys"], state["probs"], state["valid"], strict=True)}


def nearest_labelled(labelled: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """For each frame of each clip (``B×T`` bool), the index of the labelled frame nearest in time.

    With ``exclude_self`` a labelled frame gets the nearest *other* labelled frame (itself when it
    is the only one), which is how CPR is trained on the drawn pairs.
    """
    t = labelled.shape[1]
    positions = torch.arange(t, device=labelled.device)
    distance = (positions[None, :, None] - positions[None, None, :]).abs().float().expand(labelled.shape[0], t, t)
    distance = distance.masked_fill(~labelled[:, None, :], float("inf"))
    if exclude_self:
        others = distance.masked_fill(torch.eye(t, dtype=torch.bool, device=labelled.device)[None], float("inf"))
        distance = torch.where(torch.isinf(others).all(-1, keepdim=True), distance, others)
    return distance.argmin(dim=-1)


def channel_jitter(features: torch.Tensor, strength: float, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """A random per-channel gain ``exp(N(0, s))`` and offset ``N(0, s)·std`` for each sample of ``N×E×h×w``."""
    if strength <= 0:
        return features
    n, c = features.shape[:2]
    gain = torch.exp(strength * torch.randn(n, c, 1, 1, generator=generator)).to(features)
    std = features.detach().std(dim=(2, 3), keepdim=True)
    offset = strength * torch.randn(n, c, 1, 1, generator=generator).to(features) * std
    return features * gain + offset


def reforge(cpr: ChannelCrossAttention, head: nn.Conv2d, features: torch.Tensor, labelled: torch.Tensor,
            masks: torch.Tensor, pad: tuple[int, int, int, int], size: tuple[int, int] | None = None,
            exclude_self: bool = False, detach: bool = False, jitter: float = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Reforged logits ``B×T×C×H×W`` for every frame, each with its nearest labelled frame as the query.

    Args:
        cpr: the channel cross-attention.
        head: the decoder's 1×1 classifier (decodes reforged features into class logits).
        features: B×T×E×h×w decoder features on the padded grid (stride 4).
        labelled: B×T bool.
        masks: B×T×C×h×w class fractions of the labelled frames at the features' resolution.
        pad: the padding of the feature grid (left, right, top, bottom) in input pixels: logits are
            decoded on the padded grid and cropped, so they line up with the frames for any size.
        size: output size (default: the unpadded input size); logits are resized to it after cropping.
        exclude_self: query labelled frames with another labelled frame (CPR training).
        detach: CPR's own training: no gradient into the network's features or classifier.
        jitter: per-channel gain/offset noise on the keys/values (:func:`channel_jitter`).
    """
    b, t = labelled.shape
    if detach:
        features = features.detach()
    src = nearest_labelled(labelled, exclude_self)  # B×T
    index = src[:, :, None, None, None]
    query = torch.gather(features, 1, index.expand_as(features))
    query_mask = torch.gather(masks, 1, index.expand(-1, -1, *masks.shape[2:]))
    target = channel_jitter(features.flatten(0, 1), jitter, generator)
    reforged = cpr(query.flatten(0, 1), query_mask.flatten(0, 1), target)
    weight, bias = (head.weight.detach(), head.bias.detach()) if detach else (head.weight, head.bias)
    padded = (features.shape[-2] * 4, features.shape[-1] * 4)
    logits = F.interpolate(F.conv2d(reforged, weight, bias), size=padded, mode="bilinear", align_corners=False)
    left, right, top, bottom = pad
    logits = logits[..., top:padded[0] - bottom, left:padded[1] - right]
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits.reshape(b, t, -1, *logits.shape[-2:])
