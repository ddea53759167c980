"""EchoForge network: encoder → ARC → TSF (with a memory of past frames) [+ memory readout] → decoder.

Two ways to run it, giving the same masks on the same frames:

* :meth:`EchoForgeNet.forward` — a whole clip ``B×T×H×W`` (training and clip inference): the encoder,
  ARC and the key projection run batched over all frames; TSF, the readout and the decoder walk
  through time, because each frame's memory holds the frames before it.
* :class:`echoforge.engine.inference.SegmentationCore` — one frame (or a chunk) at a time with a
  bounded memory, for a live scanner or Slicer; drawn frames may join the memory at any time.

Memory (choices where the paper is silent): *reference* frames — frames whose masks are given
(clinician annotations, or ground truth during training) — stay in memory for the whole clip with
their given masks, except while the frame itself is being predicted; besides them the memory keeps
the most recent predicted frames (first in, first out), ``memory_size`` frames in all (at least one
recent frame). Each entry (:class:`MemoryEntry`) holds what TSF pools (features and class
probabilities at stride 16) and, with the readout, the stride-8 keys, values and masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from echoforge.nets.arc import AnchorRecalibration
from echoforge.nets.config import NetConfig
from echoforge.nets.decoder import MaskDecoder
from echoforge.nets.encoder import ResNetEncoder
from echoforge.nets.readout import MemoryReadout
from echoforge.nets.tsf import TemporalSemanticFusion

STRIDE = 16
#: what ARC hands on per frame (see :class:`~echoforge.nets.arc.AnchorRecalibration`)
ARC_OUTPUTS = ("weight_logits", "patch_logit", "weight")
#: the flow prior's probabilities are floored at this before their logarithm joins the logits
PRIOR_FLOOR = 0.05
#: frames in [0, 1] are standardised inside the network with these (echo frames are dark on average)
INPUT_MEAN, INPUT_STD = 0.2, 0.2


@dataclass
class EncodedFrames:
    """Per-frame encoder outputs: ``f4``, ``f8`` skips, ``x16`` (after ARC), the readout keys ``key8``
    (``None`` without the readout) and ARC's outputs (``weight_logits``, ``patch_logit``, ``weight``;
    empty without ARC). Indexing (``enc[i:j]``) selects frames."""

    f4: torch.Tensor
    f8: torch.Tensor
    x16: torch.Tensor
    key8: torch.Tensor | None
    arc: dict[str, torch.Tensor]

    def __getitem__(self, index: slice | torch.Tensor) -> EncodedFrames:
        return EncodedFrames(self.f4[index], self.f8[index], self.x16[index],
                             None if self.key8 is None else self.key8[index],
                             {k: v[index] for k, v in self.arc.items()})

    @staticmethod
    def cat(parts: list[EncodedFrames]) -> EncodedFrames:
        """Frames of several encoder batches, in order."""
        first = parts[0]
        return EncodedFrames(torch.cat([p.f4 for p in parts]), torch.cat([p.f8 for p in parts]),
                             torch.cat([p.x16 for p in parts]),
                             None if first.key8 is None else torch.cat([p.key8 for p in parts]),
                             {k: torch.cat([p.arc[k] for p in parts]) for k in first.arc})


@dataclass
class MemoryEntry:
    """One frame in memory, for a batch of N clips.

    ``x16`` N×D×h×w features and ``mask16`` N×C×h×w class probabilities (TSF); with the readout
    ``key8`` N×K×h'×w', ``value8`` N×V×h'×w' and ``mask8`` N×C×h'×w' (stride 8); ``weight`` N says
    in which clips of the batch the entry is present (1) or padding (0).
    """

    x16: torch.Tensor
    mask16: torch.Tensor
    key8: torch.Tensor | None
    value8: torch.Tensor | None
    mask8: torch.Tensor | None
    weight: torch.Tensor


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
        self.encoder = ResNetEncoder(config.encoder_depth, weights=config.encoder_weights, layer4=config.layer4)
        c4, c8, c16 = self.encoder.channels
        self.project = nn.Sequential(nn.Conv2d(c16, config.dim, 1, bias=False), nn.BatchNorm2d(config.dim),
                                     nn.ReLU(inplace=True))
        # layer4 (stride 32) joins the stride-16 features, upsampled, before ARC
        self.project32 = nn.Sequential(nn.Conv2d(self.encoder.channels32, config.dim, 1, bias=False),
                                       nn.BatchNorm2d(config.dim)) if config.layer4 else None
        self.arc = AnchorRecalibration(config.dim, config.n_anchors, config.knn, config.patch,
                                       config.heads) if config.use_arc else None
        if config.use_tsf:
            self.tsf = TemporalSemanticFusion(config.dim, config.n_classes, config.n_queries, config.n_layers,
                                              config.heads, config.ffn_mult)
            self.plain_head = None
        else:  # ablation: no temporal memory, a per-frame classifier on the (recalibrated) features
            self.tsf = None
            self.plain_head = nn.Conv2d(config.dim, config.n_classes, 1)
        self.readout = MemoryReadout(c8, config.n_classes, config.key_dim, config.value_dim) \
            if config.use_readout else None
        # the flow prior enters the logits as log-probabilities with a learnt gain (softplus(0.55) ≈ 1)
        self.prior_gain = nn.Parameter(torch.tensor(0.55)) if config.use_flow_prior else None
        self.decoder = MaskDecoder(c4, c8, config.dim, config.dec_dim, config.n_classes,
                                   readout_dim=self.readout.channels if self.readout is not None else 0,
                                   prior_dim=config.n_classes + 1 if config.use_flow_prior else 0)

    # ------------------------------------------------------------------ stages
    def encode(self, frames: torch.Tensor) -> EncodedFrames:
        """``N×1×H×W`` frames (H, W multiples of 16) → :class:`EncodedFrames`."""
        f4, f8, f16, *f32 = self.encoder((frames - INPUT_MEAN) / INPUT_STD)
        x16 = self.project(f16)
        if self.project32 is not None:
            x16 = x16 + F.interpolate(self.project32(f32[0]), size=x16.shape[-2:], mode="bilinear",
                                      align_corners=False)
        arc: dict[str, torch.Tensor] = {}
        if self.arc is not None:
            x16, aux = self.arc(x16)
            arc = {k: aux[k] for k in ARC_OUTPUTS}
        key8 = self.readout.key(f8) if self.readout is not None else None
        return EncodedFrames(f4, f8, x16, key8, arc)

    def remember(self, enc: EncodedFrames, probs: torch.Tensor, weight: torch.Tensor | None = None) -> MemoryEntry:
        """The memory entry of one encoded frame (N clips) with class probabilities ``probs`` N×C×H×W
        (predicted, or the one-hot of a drawn mask) on the padded grid."""
        mask16 = F.adaptive_avg_pool2d(probs, enc.x16.shape[-2:])
        key8 = value8 = mask8 = None
        if self.readout is not None:
            mask8 = F.adaptive_avg_pool2d(probs, enc.f8.shape[-2:])
            key8, value8 = enc.key8, self.readout.value(enc.f8, mask8)
        if weight is None:
            weight = torch.ones(enc.x16.shape[0], device=enc.x16.device, dtype=enc.x16.dtype)
        return MemoryEntry(enc.x16, mask16, key8, value8, mask8, weight)

    def fuse(self, x16: torch.Tensor, memory: list[MemoryEntry]) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``N×D×h×w`` with its memory → ``(features N×D×h×w, logits16 N×C×h×w)``."""
        if self.tsf is None:
            return x16, self.plain_head(x16)
        feats, masks, valid = stack_memory(memory, "x16", "mask16")
        tokens = self.tsf.semantic_tokens(feats, masks, valid)
        return self.tsf(x16, tokens)

    def read(self, key8: torch.Tensor, memory: list[MemoryEntry]) -> torch.Tensor | None:
        """The readout of one frame (``None`` without the readout)."""
        if self.readout is None:
            return None
        keys, values, masks, valid = stack_memory(memory, "key8", "value8", "mask8")
        return self.readout(key8, keys, values, masks, valid)

    def step(self, t: int, enc: EncodedFrames, memory: Memory | ClipMemories, prior: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Segment frame ``t`` of a batch (``enc`` holds that one frame of each clip), then remember it.

        The memory keeps this frame's *final* prediction (full-resolution probabilities pooled to
        strides 16 and 8), the best-supervised output of the network, rather than coarse logits.

        Args:
            prior: N×C×H×W flow-prior probabilities of this frame on the padded grid (``None``: no prior;
                ignored without ``use_flow_prior``).

        Returns:
            ``(logits N×C×H×W, logits16 N×C×h×w, decoder features N×E×H/4×W/4, readout masks
            N×C×h'×w' or None)`` on the padded grid.
        """
        entries = memory.gather(t)
        fused, logits16 = self.fuse(enc.x16, entries)
        readout = self.read(enc.key8, entries)
        prior_input = self.prior_input(enc, prior)
        logits, features = self.decoder(enc.f4, enc.f8, fused, logits16, readout, prior_input)
        if prior_input is not None:  # the decoder corrects the prior rather than replacing it
            present = prior_input[:, -1:]
            logits = logits + present * F.softplus(self.prior_gain) * torch.log(prior_input[:, :-1] + PRIOR_FLOOR)
        probs = logits.softmax(dim=1)
        reference = memory.reference_at(t)
        if reference is not None:  # clips of the batch where frame t is drawn remember the drawing
            w = reference.weight[:, None, None, None]
            probs = w * reference.probs + (1 - w) * probs
        memory.push(t, self.remember(enc, probs))
        return logits, logits16, features, None if readout is None else readout[:, -self.config.n_classes:]

    def prior_input(self, enc: EncodedFrames, prior: torch.Tensor | None) -> torch.Tensor | None:
        """The decoder's prior input: the prior's probabilities and a presence channel (zeros when absent)."""
        if not self.config.use_flow_prior:
            return None
        n, size = enc.f4.shape[0], (enc.f4.shape[-2] * 4, enc.f4.shape[-1] * 4)
        if prior is None:
            return enc.f4.new_zeros(n, self.config.n_classes + 1, *size)
        present = prior.sum(dim=1, keepdim=True).clamp(max=1.0)  # an all-zero prior (this clip has none) is absent
        return torch.cat([prior.to(enc.f4.dtype), present.to(enc.f4.dtype)], dim=1)

    def reference(self, enc: EncodedFrames, classes: torch.Tensor, weight: torch.Tensor | None = None
                  ) -> ReferenceEntry:
        """A drawn frame as a memory reference: ``classes`` N×H×W integer labels on the padded grid."""
        onehot = F.one_hot(classes.long().clamp(0, self.config.n_classes - 1), self.config.n_classes)
        probs = onehot.movedim(-1, 1).to(enc.x16.dtype)
        entry = self.remember(enc, probs, weight)
        return ReferenceEntry(**vars(entry), probs=probs)

    # ------------------------------------------------------------------ clip forward
    def forward(self, frames: torch.Tensor, ref_masks: torch.Tensor | None = None,
                ref_valid: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Segment clips.

        Args:
            frames: B×T×H×W in [0, 1] (any H, W: padded to a multiple of 16 inside).
            ref_masks: B×T×H×W integer labels (or None) for the reference frames.
            ref_valid: B×T bool, which frames of which clip are references.
            prior: B×T×C×H×W flow-prior probabilities (:func:`echoforge.engine.propagation.flow_prior`;
                all zeros for a clip without one), or None.

        Returns:
            ``logits`` B×T×C×H×W, ``logits16`` B×T×C×h×w, ``features`` B×T×E×H/4×W/4 (padded grid),
            ``pad`` (the padding of that grid, see :func:`pad_to_stride`); with the readout
            ``readout_masks`` B×T×C×H/8×W/8 (the propagated masks it read); with ARC also
            ``arc_weight_logits`` B×T×A×h×w (anchor heat-map logits), ``arc_patch_logit`` and
            ``arc_weight`` B×T×1×h'×w' (per-patch foreground logit and recalibration weight).
        """
        b, t, h, w = frames.shape
        padded, pad = pad_to_stride(frames)
        hp, wp = padded.shape[-2:]
        flat = self.encode(padded.reshape(b * t, 1, hp, wp))
        out = self.walk(flat, b, pad, ref_masks, ref_valid, None if prior is None else F.pad(prior, pad))
        for key, value in flat.arc.items():
            out[f"arc_{key}"] = value.reshape(b, t, *value.shape[1:])
        return out

    def walk(self, flat: EncodedFrames, batch: int, pad: tuple[int, int, int, int],
             ref_masks: torch.Tensor | None = None, ref_valid: torch.Tensor | None = None,
             prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The memory walk through encoded clips (``flat`` holds B·T frames, clip-major; ``prior`` is on
        the padded grid), as in :meth:`forward`, which it serves; per-video adaptation reuses encoded
        frames through it."""
        t = flat.x16.shape[0] // batch
        per_frame = [flat[i::t] for i in range(t)]  # frame i of every clip
        refs: dict[int, ReferenceEntry] = {}
        if ref_masks is not None and ref_valid is not None and bool(ref_valid.any()):
            masks = F.pad(ref_masks, pad)
            weight = ref_valid.to(flat.x16.dtype)
            refs = {i: self.reference(per_frame[i], masks[:, i], weight[:, i])
                    for i in range(t) if bool(ref_valid[:, i].any())}
        memory = Memory(self.config.memory_size, refs)
        steps = [self.step(i, per_frame[i], memory, None if prior is None else prior[:, i]) for i in range(t)]
        logits, logits16, features = (torch.stack(parts, 1) for parts in list(zip(*steps, strict=True))[:3])
        out = {"logits": unpad(logits, pad), "logits16": logits16, "features": features, "pad": pad}
        if self.readout is not None:
            out["readout_masks"] = torch.stack([s[3] for s in steps], 1)
        return out

    def walk_together(self, encs: list[EncodedFrames], orders: list[list[int]], memories: list[Memory],
                      priors: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Several clips walked at once, each in its own order with its own memory (:class:`ClipMemories`).

        Args:
            encs: clip ``i``'s encoded frames (padded grid), frame ``t`` at ``encs[i][t]``.
            orders: at step ``k`` clip ``i`` segments its frame ``orders[i][k]`` (orders of equal length).
            memories: each clip's memory (its references already in; one clip of batch each).
            priors: each clip's ``T×C×H×W`` flow prior on the padded grid (frame-indexed), or None.

        Returns:
            ``N×T×C×H×W`` logits on the padded grid, each clip's in its processing order.
        """
        together = ClipMemories(memories, orders)
        steps = []
        for k in range(len(orders[0])):
            enc = EncodedFrames.cat([e[o[k]:o[k] + 1] for e, o in zip(encs, orders, strict=True)])
            prior = None if priors is None else \
                torch.cat([p[o[k]:o[k] + 1] for p, o in zip(priors, orders, strict=True)])
            steps.append(self.step(k, enc, together, prior)[0])
        return torch.stack(steps, 1)


@dataclass
class ReferenceEntry(MemoryEntry):
    """A drawn frame in memory: a :class:`MemoryEntry` plus its one-hot ``probs`` N×C×H×W."""

    probs: torch.Tensor


class Memory:
    """The bounded memory TSF and the readout read: reference frames (kept) + the most recent
    predicted frames (FIFO).

    Args:
        size: frames in memory in all (at least one recent frame is always kept).
        references: frame index → :class:`ReferenceEntry`; its ``weight`` says in which clips of the
            batch the frame is a reference (1) or not (0). More may be added with :meth:`add_reference`.
        detach: remember predicted frames without their gradient (truncated back-propagation: a
            step's loss then trains that step's decoder only, not the walk that led to it).
    """

    def __init__(self, size: int, references: dict[int, ReferenceEntry] | None = None, detach: bool = False):
        self.size, self.detach = size, detach
        self.references: dict[int, ReferenceEntry] = {}
        self.recent: list[MemoryEntry] = []
        for index, entry in (references or {}).items():
            self.add_reference(index, entry)

    @property
    def n_recent(self) -> int:
        return max(1, self.size - len(self.references))

    def add_reference(self, index: int, entry: ReferenceEntry) -> None:
        """A drawn frame joins the memory (streaming: the clinician draws while the video plays)."""
        self.references[int(index)] = entry
        self.recent = self.recent[-self.n_recent:]

    def gather(self, t: int) -> list[MemoryEntry]:
        """Memory for predicting frame ``t`` (a reference never sees itself)."""
        return [entry for r, entry in self.references.items() if r != t] + self.recent

    def reference_at(self, t: int) -> ReferenceEntry | None:
        """The reference of frame ``t`` (``None`` where it is not drawn)."""
        return self.references.get(t)

    def push(self, t: int, entry: MemoryEntry) -> None:
        """Remember frame ``t`` (its drawn mask where it is a reference in every clip: then it is
        already in memory and not pushed again)."""
        reference = self.references.get(t)
        if reference is not None and bool((reference.weight > 0).all()):
            return
        if self.detach:
            entry = _map_entry(entry, torch.Tensor.detach)
        self.recent = (self.recent + [entry])[-self.n_recent:]


class ClipMemories:
    """The memories of N clips walked together (one network call per step for all of them).

    Step ``k`` is frame ``orders[i][k]`` of clip ``i``; clip ``i`` reads and fills only its own
    :class:`Memory` (batch of one), so each clip's result is the one it would get walked alone. Shorter
    memories are padded with absent entries (weight 0), which TSF and the readout ignore. "Segment the
    rest" walks the forward and the backward pass of a video like this, at about the cost of one.
    """

    def __init__(self, memories: list[Memory], orders: list[list[int]]):
        if len(memories) != len(orders) or len({len(o) for o in orders}) > 1:
            raise ValueError("one order per memory, all of the same length")
        self.memories, self.orders = memories, orders

    def gather(self, k: int) -> list[MemoryEntry]:
        per_clip = [m.gather(o[k]) for m, o in zip(self.memories, self.orders, strict=True)]
        template = next((e[0] for e in per_clip if e), None)
        if template is None:
            return []
        length = max(len(e) for e in per_clip)
        return [_cat_entries([e[j] if j < len(e) else _absent(template) for e in per_clip], MemoryEntry)
                for j in range(length)]

    def reference_at(self, k: int) -> ReferenceEntry | None:
        refs = [m.reference_at(o[k]) for m, o in zip(self.memories, self.orders, strict=True)]
        template = next((r for r in refs if r is not None), None)
        if template is None:
            return None
        return _cat_entries([r if r is not None else _absent(template) for r in refs], ReferenceEntry)

    def push(self, k: int, entry: MemoryEntry) -> None:
        for i, (memory, order) in enumerate(zip(self.memories, self.orders, strict=True)):
            memory.push(order[k], _select(entry, i))


def _fields(entry: MemoryEntry, kind: type[MemoryEntry] | None = None) -> dict[str, torch.Tensor | None]:
    """An entry's tensors by field name (only ``kind``'s fields: a reference read as a plain entry)."""
    return {f.name: getattr(entry, f.name) for f in dataclasses.fields(kind or type(entry))}


EntryType = TypeVar("EntryType", bound=MemoryEntry)


def _map_entry(entry: EntryType, fn: Callable[[torch.Tensor], torch.Tensor]) -> EntryType:
    """The entry with ``fn`` applied to each of its tensors (absent fields stay ``None``)."""
    return type(entry)(**{k: None if v is None else fn(v) for k, v in _fields(entry).items()})


def _select(entry: MemoryEntry, i: int) -> MemoryEntry:
    """Clip ``i`` of a batched entry (a batch of one)."""
    return _map_entry(entry, lambda v: v[i:i + 1])


def _absent(template: MemoryEntry) -> MemoryEntry:
    """An entry shaped like ``template`` that is not there (weight 0, zero masks)."""
    return _map_entry(template, torch.zeros_like)


def _cat_entries(parts: list[MemoryEntry], kind: type[EntryType]) -> EntryType:
    """Batch-of-one entries joined along the batch, as ``kind``."""
    fields = [_fields(p, kind) for p in parts]
    return kind(**{k: None if v is None else torch.cat([f[k] for f in fields]) for k, v in fields[0].items()})


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


def stack_memory(entries: list[MemoryEntry], *fields: str) -> tuple[torch.Tensor | None, ...]:
    """The ``fields`` of memory entries stacked along a memory axis (``N×M×…`` each), then the weights
    ``N×M``; Nones for an empty memory."""
    if not entries:
        return (None,) * (len(fields) + 1)
    stacked = tuple(torch.stack([getattr(e, f) for e in entries], 1) for f in fields)
    return (*stacked, torch.stack([e.weight for e in entries], 1))
