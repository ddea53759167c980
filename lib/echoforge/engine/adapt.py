"""Per-video adaptation: make two drawn frames enough on a video unlike the training data.

:func:`adapt_to_video` fine-tunes the mask decoder of a *copy* of the network on one video in
under 1 s: the rest (frame encoder, ARC, TSF, readout) is frozen, and the clip spanning the drawn
frames is encoded once in a few augmented versions, so each step runs only the memory walk (TSF,
readout, decoder). The walk's memory is remembered without gradients (truncated
back-propagation), so each step's backward pass runs through the decoder alone.
Each step propagates from one drawn frame to the other forwards and backwards at once (one batched
walk, :meth:`~echoforge.nets.echoforge_net.EchoForgeNet.walk_together`) and learns to re-find the
held-out drawn frame of each direction (Dice + CE), which is exactly what "segment the rest" must
do on this video. The clip is short (``clip_frames`` 4: the drawn frames and two between; 10 frames
bought nothing on held-out scanner styles, at twice the time), and so are the steps (8 at a
learning rate of 1e-3 did as well as 12; a higher rate with fewer steps did worse, and bfloat16
steps were no faster on the CPU). It stops early once the drawn frames are re-found well
(:func:`propagation_fit`). The served network is never changed.

Whether to adapt (``adapt=auto``) is decided by the same measure before any step: when the drawn
frames are already re-found with a Dice of at least ``AdaptConfig.auto_threshold`` there is little
to gain, and adaptation is skipped. :func:`shift_score` (how far the video's features lie from the
training data's, stored in the checkpoint by :func:`feature_stats`) is reported alongside.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echoforge.engine.augment import AugmentConfig, photometric, random_affine, warp
from echoforge.engine.clips import Clip, Letterbox, make_clip, to_classes
from echoforge.engine.losses import LabelledLoss
from echoforge.errors import EmptyLabelError
from echoforge.nets.echoforge_net import EchoForgeNet, EncodedFrames, Memory, pad_to_stride, unpad
from echoforge.video import EchoVideo


@dataclass(frozen=True)
class AdaptConfig:
    """Bounded fine-tuning on one video (under 1 s for ``light`` at 112×112 on a 2-core CPU).

    Attributes:
        steps: at most this many steps (each walks both directions). lr: Adam learning rate.
        clip_frames: frames of the clip spanning the drawn frames. views: augmented versions of the
        clip, encoded once.
        fit_target: stop once the drawn frames are re-found with this mean Dice.
        check_every: steps between fit checks. auto_threshold: ``adapt=auto`` adapts only below
        this fit. seed: augmentation seed.
    """

    steps: int = 8
    lr: float = 1e-3
    clip_frames: int = 4
    views: int = 3
    fit_target: float = 0.95
    check_every: int = 4
    auto_threshold: float = 0.9
    seed: int = 0


#: the parts of the network that adaptation trains: the mask decoder (and the per-frame head of the
#: no-TSF ablation). The frame encoder, ARC, TSF and the readout stay as they are: training TSF and
#: the readout as well did no better on held-out scanner styles (LV 95.71 ± 0.19 against
#: 95.74 ± 0.10, 3 seeds) and took longer
ADAPTED = ("decoder.", "plain_head.")


@dataclass
class _EncodedClip:
    enc: EncodedFrames  # T frames
    labels: torch.Tensor  # 1×T×H×W classes (0 where not drawn)
    labelled: torch.Tensor  # 1×T bool
    pad: tuple[int, int, int, int]
    priors: dict[str, torch.Tensor] | None  # flow priors 1×T×C×H×W on the padded grid (see Clip.priors)


def _encode_views(net: EchoForgeNet, clip: Clip, views: int, seed: int, device: torch.device) -> list[_EncodedClip]:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.from_numpy(clip.frames).float().div(255.0)[None].to(device)
    labels = torch.from_numpy(to_classes(clip.labels, net.config.mode))[None].to(device)
    labelled = torch.from_numpy(clip.labelled)[None].to(device)
    priors = {k: torch.from_numpy(v).float().div(255.0)[None].to(device) for k, v in clip.priors.items()} \
        if clip.priors else None
    out = []
    with torch.no_grad():
        for v in range(views):
            f, lab, pri = frames, labels, priors
            if v:  # the first view is the clip itself
                theta = random_affine(1, AugmentConfig(), generator).to(device)
                f = photometric(warp(frames, theta), AugmentConfig(), generator)
                lab = warp(labels.float(), theta, mode="nearest").long()
                pri = {k: warp(p, theta) for k, p in priors.items()} if priors else None
            padded, pad = pad_to_stride(f[0][:, None])
            pri = {k: F.pad(p, pad) for k, p in pri.items()} if pri else None
            out.append(_EncodedClip(net.encode(padded), lab, labelled, pad, pri))
    return out


def _walk_both(net: EchoForgeNet, clip: _EncodedClip) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Propagate through ``clip`` forwards and backwards at once (one network call per step for both),
    each from every drawn frame but the last one it reaches, which it must re-find.

    Returns ``(logits 2×T×C×H×W, target 2×T, labels 2×T×H×W)``, each direction in its processing order
    (forwards first); ``target`` marks the frame to re-find.
    """
    t = clip.labelled.shape[1]
    drawn = torch.nonzero(clip.labelled[0]).flatten().tolist()
    masks = F.pad(clip.labels, clip.pad)
    orders, memories, targets = [], [], []
    for backward in (False, True):
        order = list(range(t - 1, -1, -1)) if backward else list(range(t))
        held_out = drawn[0] if backward else drawn[-1]  # the last drawn frame this direction reaches
        memories.append(Memory(net.config.memory_size, {i: net.reference(clip.enc[i:i + 1], masks[:, i])
                                                        for i in drawn if i != held_out}, detach=True))
        orders.append(order)
        targets.append(torch.tensor([i == held_out for i in order], device=clip.labels.device))
    priors = None
    if clip.priors:  # the prior from the drawn frame(s) propagation starts from, as at inference
        priors = [clip.priors["first"][0], clip.priors["last"][0]]
    logits = unpad(net.walk_together([clip.enc, clip.enc], orders, memories, priors), clip.pad)
    labels = torch.stack([clip.labels[0, order] for order in orders])
    return logits, torch.stack(targets), labels


def _dice(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    pred, scores = logits.argmax(1), []
    for c in range(1, n_classes):
        p, r = pred == c, labels == c
        total = int(p.sum() + r.sum())
        if total:
            scores.append(2.0 * float((p & r).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


@torch.no_grad()
def propagation_fit(net: EchoForgeNet, clip: _EncodedClip) -> float | None:
    """Mean Dice with which the drawn frames are re-found from the others (forwards and backwards);
    ``None`` with fewer than two drawn frames."""
    if int(clip.labelled.sum()) < 2:
        return None
    logits, target, labels = _walk_both(net, clip)
    return float(np.mean([_dice(logits[d][target[d]], labels[d][target[d]], net.config.n_classes) for d in (0, 1)]))


def prepare(model: EchoForgeNet, video: EchoVideo, config: AdaptConfig = AdaptConfig(),
            device: str | torch.device = "cpu") -> list[_EncodedClip]:
    """The encoded views of the clip spanning ``video``'s drawn frames (what adaptation trains on)."""
    if not video.has_labels:
        raise EmptyLabelError("adaptation needs at least one annotated frame", video.source or None)
    clip = make_clip(video, tuple(model.config.input_size), config.clip_frames, "all", video_id="adapt",
                     priors=model.config.use_flow_prior, mode=model.config.mode)
    return _encode_views(model.eval(), clip, config.views, config.seed, torch.device(device))


def adapt_to_video(model: EchoForgeNet, video: EchoVideo, config: AdaptConfig = AdaptConfig(),
                   device: str | torch.device = "cpu", views: list[_EncodedClip] | None = None
                   ) -> tuple[EchoForgeNet, dict[str, Any]]:
    """Fine-tune a copy of ``model`` to re-find ``video``'s drawn frames from each other.

    Args:
        views: the encoded clip from :func:`prepare`, when the caller made it already (``auto``).

    Returns:
        ``(adapted network in eval mode, info)``: ``steps`` taken, ``seconds``, ``fit_before`` and
        ``fit_after`` (:func:`propagation_fit`), ``stopped_early``, ``loss_first``/``loss_last`` (means
        over the first and last cycle of views).
    """
    started = time.perf_counter()
    device = torch.device(device)
    net = copy.deepcopy(model).to(device).eval()  # eval: batch statistics of one clip would be noise
    views = views if views is not None else prepare(net, video, config, device)
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith(ADAPTED))
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    loss_fn = LabelledLoss()
    fit_before = fit = propagation_fit(net, views[0])
    steps, losses, fit_steps = 0, [], 0  # fit_steps: the steps taken when ``fit`` was measured
    pairs = int(views[0].labelled.sum()) >= 2
    for step in range(config.steps if pairs else 0):
        if fit is not None and fit >= config.fit_target:
            break
        logits, target, labels = _walk_both(net, views[step % len(views)])
        loss = loss_fn(logits, labels, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        steps += 1
        if steps % config.check_every == 0:
            fit, fit_steps = propagation_fit(net, views[0]), steps
    for p in net.parameters():
        p.requires_grad_(True)
    fit_after = fit if fit_steps == steps else propagation_fit(net, views[0])
    cycle = min(len(losses), len(views))
    return net.eval(), {"steps": steps, "seconds": round(time.perf_counter() - started, 3),
                        "fit_before": None if fit_before is None else round(fit_before, 4),
                        "fit_after": None if fit_after is None else round(fit_after, 4),
                        "stopped_early": steps < config.steps,
                        # means over a cycle of views, so that first and last compare like with like
                        "loss_first": float(np.mean(losses[:cycle])) if losses else None,
                        "loss_last": float(np.mean(losses[-cycle:])) if losses else None}


# ---------------------------------------------------------------------- domain shift
@torch.no_grad()
def pooled_features(model: EchoForgeNet, frames: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """``T×H×W`` frames in [0, 1] at the input size → ``T×D`` globally pooled encoder features."""
    from echoforge.nets.echoforge_net import INPUT_MEAN, INPUT_STD

    model.eval()
    x = torch.as_tensor(frames, dtype=torch.float32, device=device)[:, None]
    x = pad_to_stride(x)[0]
    f16 = model.encoder((x - INPUT_MEAN) / INPUT_STD)[2]
    return model.project(f16).mean(dim=(2, 3)).cpu().numpy()


def _video_frames(model: EchoForgeNet, video: EchoVideo, n: int = 10) -> np.ndarray:
    box = Letterbox.fit(video.shape, tuple(model.config.input_size))
    idx = np.unique(np.linspace(0, video.n_frames - 1, min(n, video.n_frames)).round().astype(int))
    return np.stack([box.forward(video.frames[i]) for i in idx])


def feature_stats(model: EchoForgeNet, clips: list[Clip], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Training-data feature statistics and the shift threshold, to store in a checkpoint."""
    per_video = [pooled_features(model, c.frames.astype(np.float32) / 255.0, device) for c in clips]
    frames = np.concatenate(per_video)
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6
    scores = [float(np.mean(np.abs(v.mean(axis=0) - mean) / std)) for v in per_video]
    threshold = float(np.percentile(scores, 95) * 1.5) if scores else float("inf")
    return {"mean": mean.tolist(), "std": std.tolist(), "train_scores": [round(s, 4) for s in scores],
            "threshold": round(threshold, 4)}


def shift_score(model: EchoForgeNet, video: EchoVideo, stats: dict[str, Any],
                device: str | torch.device = "cpu") -> float:
    """How far ``video`` lies from the training data (≈ the training videos' own scores when in domain)."""
    features = pooled_features(model, _video_frames(model, video), device)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    return float(np.mean(np.abs(features.mean(axis=0) - mean) / std))
