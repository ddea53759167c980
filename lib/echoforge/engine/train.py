"""Semi-supervised training: labelled ED/ES frames + CPR pseudo-labels under FlameRise.

Per step, for a batch of clips (B×T frames):

1. half of the batches play backwards in time; one random affine per clip (frames and labels),
   gamma/contrast/brightness;
2. the network runs through the clip; labelled frames may serve as memory references (none, the
   first, or the first and last labelled frames, drawn per batch so the model learns both automatic
   and "segment the rest" use, in both directions);
3. losses: Dice + CE on the labelled frames whose own ground truth could not reach their prediction
   (:func:`supervised_frames`: inference never shows a frame its own mask), CE on the stride-16
   logits (deep supervision, ``aux16_weight``), BCE on ARC's foreground map (``arc_weight``) and on
   its per-patch foreground probability (``arc_patch_weight``), CPR's own loss on the drawn pairs
   (``cpr_weight``), and the unlabelled loss ``λ(e)`` × CE against the bank's pseudo-labels where
   their confidence exceeds ``τ(e)`` (FlameRise);
4. CPR reforges this clip's unlabelled frames and stores them in the bank for the next epoch.

Every loss is computed from logits (no ``binary_cross_entropy`` on probabilities), so CUDA
autocast can run all of them. Each epoch's record also carries diagnostics that show an inert
part as a number (:func:`_diagnostics`: ARC's uncertain-patch fraction and recalibration weight,
CPR's change rate and how often its changes are right).

Adam, poly learning-rate decay (power 0.9), gradient clipping; AMP (float16 + GradScaler) and
channels-last on CUDA; DistributedDataParallel when started by ``torchrun`` (gloo on CPU, NCCL on
CUDA; each rank keeps a fixed shard of the videos so its pseudo-label bank stays local). Runs are
seeded, show tqdm progress, log TensorBoard events plus ``metrics.jsonl``, write checkpoints
atomically every epoch (``last.pt``, resumable after a kill; ``best.pt`` by validation Dice) and
stop with a clear :class:`~echoforge.errors.TrainingError` when a loss becomes NaN.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from echoforge.engine.augment import (
    AugmentConfig,
    appearance_shift,
    identity_affine,
    invert_affine,
    photometric,
    random_affine,
    warp,
)
from echoforge.engine.checkpoint import add_to_checkpoint, read_checkpoint, save_checkpoint, unwrap
from echoforge.engine.clips import Clip, collate
from echoforge.engine.inference import PRIOR_BLEND
from echoforge.engine.losses import (
    LabelledLoss,
    anchor_map_loss,
    arc_patch_loss,
    foreground_fraction,
    masked_cross_entropy,
)
from echoforge.engine.propagation import distance_weight
from echoforge.errors import TrainingError
from echoforge.io.atomic import remove_partial_files, write_json_atomic
from echoforge.nets import NetConfig, build_model
from echoforge.nets.config import settings_from_dict, settings_to_dict
from echoforge.nets.echoforge_net import downsample_labels, pad_to_stride
from echoforge.semi.cpr import ChannelCrossAttention, PseudoLabelBank, reforge
from echoforge.semi.schedule import FlameRise

logger = logging.getLogger(__name__)

#: which labelled frames of a clip are memory references in a step: none (automatic use), the first
#: one, or the first and the last one ("segment the rest" from ED and ES)
REFERENCE_MODES = ("none", "first", "ends")


@dataclass
class TrainConfig:
    """Training settings (stored in every checkpoint). Defaults follow the paper where it speaks."""

    epochs: int = 50
    batch_size: int = 2
    lr: float = 1e-4
    poly_power: float = 0.9
    weight_decay: float = 0.0
    clip_frames: int = 10
    labelled: str = "ed-es"
    use_cpr: bool = True
    burn_in: float = 0.2
    ramp_end: float = 0.6
    lambda_max: float = 1.0
    tau0: float = 0.95
    tau1: float = 0.80
    cpr_momentum: float = 0.5
    aux16_weight: float = 0.4
    arc_weight: float = 0.1
    arc_patch_weight: float = 0.2
    cpr_jitter: float = 0.3
    cpr_weight: float = 0.5
    reference_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)
    reverse_prob: float = 0.5
    prior_dropout: float = 0.2
    appearance_shift: float = 0.5
    readout_weight: float = 0.2
    augment: bool = True
    grad_clip: float = 3.0
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    progress: bool = True
    seed_bank: bool = True
    seed_blend: float = PRIOR_BLEND

    def flame_rise(self) -> FlameRise:
        return FlameRise.for_epochs(self.epochs, self.burn_in, self.ramp_end, lambda_max=self.lambda_max,
                                    tau0=self.tau0, tau1=self.tau1)

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return settings_from_dict(cls, d)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's global generators (numpy randomness here always uses explicit Generators)."""
    random.seed(seed)
    torch.manual_seed(seed)


class SemiSupervisedModel(nn.Module):
    """The network plus CPR's channel cross-attention, trained and saved together.

    Everything that needs gradients runs inside :meth:`forward`, as DistributedDataParallel requires.
    """

    def __init__(self, net: nn.Module, use_cpr: bool, cpr_jitter: float = 0.0):
        super().__init__()
        self.net = net
        self.cpr_jitter = cpr_jitter
        # CPR reforges decoder features, which only the EchoForge network has
        self.cpr = (ChannelCrossAttention(net.config.dec_dim, net.config.n_classes)
                    if use_cpr and net.config.arch == "echoforge" else None)

    def forward(self, frames: torch.Tensor, labels: torch.Tensor | None = None,
                ref_valid: torch.Tensor | None = None, labelled: torch.Tensor | None = None,
                generator: torch.Generator | None = None, prior: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """The network's outputs (``labels`` of the ``ref_valid`` frames as memory references, ``prior``
        the flow prior from them); with ``labelled`` (B×T) and CPR also ``cpr_logits`` for the clips
        with two or more labelled frames (``cpr_pairs``) and ``reforged`` probabilities at half
        resolution for every frame."""
        out = self.net(frames, labels, ref_valid, prior) if prior is not None else self.net(frames, labels, ref_valid)
        if self.cpr is None or labelled is None or labels is None or not bool(labelled.any()):
            return out
        features, pad = out["features"], out["pad"]
        masks = downsample_labels(F.pad(labels, pad), self.net.config.n_classes, features.shape[-2:])
        head = unwrap(self.net).decoder.head
        pairs = labelled.sum(dim=1) >= 2
        if bool(pairs.any()):  # CPR learns on the drawn pairs: reforge ES from ED (and back) → drawn labels
            out["cpr_logits"] = reforge(self.cpr, head, features[pairs], labelled[pairs], masks[pairs], pad,
                                        exclude_self=True, detach=True, jitter=self.cpr_jitter, generator=generator)
            out["cpr_pairs"] = pairs
        with torch.no_grad():  # pseudo-labels of every frame, each from its nearest labelled frame
            size = tuple(frames.shape[-2:])
            half = (max(size[0] // 2, 1), max(size[1] // 2, 1))
            out["reforged"] = reforge(self.cpr, head, features.detach(), labelled, masks, pad,
                                      size=half).float().softmax(dim=2)
        return out


def supervised_frames(labelled: torch.Tensor, ref_valid: torch.Tensor) -> torch.Tensor:
    """The labelled frames whose own ground truth cannot have reached their prediction (B×T bool).

    A reference stays in memory for the whole clip, so every frame predicted before it reads its
    mask, and those predictions enter the recent memory the reference itself then reads. Only the
    first frame of a clip is predicted before any such frame exists; a reference anywhere else is
    left out of the supervised loss (at inference a drawn frame is returned as drawn anyway).
    """
    first = torch.zeros_like(labelled)
    first[:, 0] = True
    return labelled & (~ref_valid | first)


class Trainer:
    """Train an EchoForge network on clips.

    Example::

        trainer = Trainer(get_config("light"), TrainConfig(epochs=30), "runs/light")
        summary = trainer.fit(train_clips, val_clips)
    """

    def __init__(self, net_config: NetConfig, config: TrainConfig, run_dir: str | os.PathLike[str] | None,
                 resume: bool = True, net: nn.Module | None = None):
        """``run_dir=None`` trains without writing anything (per-video adaptation); ``net`` starts from an
        existing network instead of a fresh one."""
        self.net_config, self.config = net_config, config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = self.run_dir is not None
        self.rank, self.world = _init_distributed()
        self.device = resolve_device(config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        seed_everything(config.seed + self.rank)
        self.model = SemiSupervisedModel(net if net is not None else build_model(net_config),
                                         config.use_cpr, config.cpr_jitter).to(self.device)
        if config.channels_last and self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.bank = PseudoLabelBank(config.cpr_momentum)
        self.flame = config.flame_rise()
        self.loss_labelled = LabelledLoss()
        self.generator = torch.Generator().manual_seed(config.seed * 7919 + self.rank)
        self.start_epoch = 0
        self.pretrained = net is not None
        self.best = -math.inf
        self.history: list[dict[str, Any]] = []
        self.ddp_model: nn.Module = self.model
        if resume and self.writes and (self.run_dir / "checkpoints" / "last.pt").exists():
            self._resume(self.run_dir / "checkpoints" / "last.pt")
        if self.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def writes_files(self) -> bool:
        return self.writes and self.is_main

    # ------------------------------------------------------------------ public
    def fit(self, train: list[Clip], val: list[Clip] | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train for the configured epochs (continuing a resumed run); returns the final summary.

        ``on_epoch`` is called on the main process with each epoch's record (losses, validation Dice).
        """
        if not train:
            raise TrainingError("no training clip (no video with an annotated frame)")
        shard = train[self.rank::self.world] if self.world > 1 else train
        if self.writes_files:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for folder in (self.run_dir, self.run_dir / "checkpoints"):  # a killed run's unfinished writes
                for path in remove_partial_files(folder):
                    logger.warning(f"Removed {path.name}: a write that never finished (the run was killed)")
            write_json_atomic(self.run_dir / "config.json", {"net": self.net_config.to_dict(),
                                                             "train": self.config.to_dict()})
        writer = _summary_writer(self.run_dir / "logs") if self.writes_files else None
        if self.config.seed_bank and self.pretrained and self.start_epoch == 0 and self.model.cpr is not None:
            self.seed_bank(shard)
        start_score = None  # what the network it started from scores on the validation clips (see keeps_model)
        if val and self.is_main and self.pretrained and self.start_epoch == 0:
            from echoforge.engine.evaluate import clip_dice

            start_score = clip_dice(unwrap(self.model.net), val, self.net_config.mode, self.device)["val_score"]
        steps_per_epoch = math.ceil(len(shard) / self.config.batch_size)
        if self.config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, self.config.max_steps_per_epoch)
        total_steps = max(1, steps_per_epoch * self.config.epochs)
        for epoch in range(self.start_epoch, self.config.epochs):
            self.model.train()
            # seeded per epoch, so a resumed run visits the clips in the same order as an unbroken one
            order = np.random.default_rng([self.config.seed, self.rank, epoch]).permutation(len(shard))
            totals: dict[str, float] = {}
            counts: dict[str, int] = {}
            started = time.time()
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="step",
                       disable=not (self.config.progress and self.is_main), leave=False)
            for step in bar:
                batch_idx = order[step * self.config.batch_size:(step + 1) * self.config.batch_size]
                if len(batch_idx) == 0:
                    break
                global_step = epoch * steps_per_epoch + step
                self._set_lr(global_step / total_steps)
                losses = self._step(collate([shard[i] for i in batch_idx], self.net_config.mode),
                                    epoch + step / steps_per_epoch)
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
                bar.set_postfix(loss=f"{losses['total']:.3f}")
            record: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(time.time() - started, 2),
                                      "lr": self.optimizer.param_groups[0]["lr"],
                                      "unlabelled_weight": self.flame.weight(epoch + 1),
                                      "threshold": self.flame.threshold(epoch + 1), "bank": len(self.bank)}
            record.update({f"loss_{k}": round(v / steps_per_epoch, 5) for k, v in totals.items()
                           if not k.startswith("diag_")})
            record.update({k[len("diag_"):]: round(v / counts[k], 5) for k, v in totals.items() if k.startswith("diag_")})
            if val and self.is_main:
                from echoforge.engine.evaluate import clip_dice

                record.update(clip_dice(unwrap(self.model.net), val, self.net_config.mode, self.device))
            self._end_epoch(epoch, record, writer)
            if on_epoch is not None and self.is_main:
                on_epoch(self.history[-1])
        if writer is not None:
            writer.close()
        if self.writes_files:
            self._store_feature_stats(shard)
        if self.world > 1:
            dist.barrier()
        return {"run_dir": str(self.run_dir) if self.writes else None, "epochs": self.config.epochs,
                "history": self.history,
                "best_val_dice": None if self.best == -math.inf else self.best, "start_val_score": start_score}

    @torch.no_grad()
    def seed_bank(self, clips: list[Clip]) -> int:
        """Start CPR's bank with the starting model's own "segment the rest" of each clip: the
        labelled frames as memory references, propagated forwards and backwards and averaged, then
        blended as "segment the rest" does (``seed_blend``, :data:`~echoforge.engine.inference.PRIOR_BLEND`)
        with the drawn masks carried by optical flow from both ends (:func:`both_ways_prior`), stored
        for the unlabelled frames. Retraining on a few new videos then starts from the best labels
        the current model can give them instead of waiting for the burn-in. Returns the frames stored."""
        net = unwrap(self.model.net).eval()
        stored = 0
        for start in range(0, len(clips), self.config.batch_size):
            batch = collate(clips[start:start + self.config.batch_size], self.net_config.mode)
            frames, labels = batch["frames"].to(self.device), batch["labels"].to(self.device)
            labelled = batch["labelled"].to(self.device)
            unlabelled = ~labelled
            if not bool(unlabelled.any()) or not bool(labelled.any()):
                continue
            prior = batch["priors"]["ends"].to(self.device) if "priors" in batch else None
            forward = net(frames, labels, labelled, prior)["logits"].float().softmax(2)
            backward = net(frames.flip(1), labels.flip(1), labelled.flip(1),
                           None if prior is None else prior.flip(1))["logits"].float().softmax(2).flip(1)
            probs = (forward + backward) / 2
            if "priors" in batch and self.config.seed_blend > 0.0:
                carried = both_ways_prior(batch["priors"], batch["frame_index"], labelled.cpu()).to(probs)
                probs = (1.0 - self.config.seed_blend) * probs + self.config.seed_blend * carried
            half = (max(frames.shape[-2] // 2, 1), max(frames.shape[-1] // 2, 1))
            probs = F.interpolate(probs.flatten(0, 1), size=half, mode="bilinear", align_corners=False)
            probs = probs.reshape(*frames.shape[:2], *probs.shape[1:])
            keep = [[f for f, u in zip(idx, unl, strict=True) if u]
                    for idx, unl in zip(batch["frame_index"], unlabelled.tolist(), strict=True)]
            self.bank.update(batch["video_id"], keep, _ragged(probs, unlabelled),
                             _ragged(torch.ones_like(probs[:, :, :1]), unlabelled))
            stored += int(unlabelled.sum())
        net.train()
        return stored

    # ------------------------------------------------------------------ one step
    def _step(self, batch: dict[str, Any], epoch: float) -> dict[str, float]:
        """One optimisation step; returns the loss parts and the ``diag_*`` diagnostics of the batch."""
        cfg = self.config
        frames = batch["frames"].to(self.device)
        labels = batch["labels"].to(self.device)
        labelled = batch["labelled"].to(self.device)
        if cfg.augment and float(torch.rand((), generator=self.generator)) < cfg.reverse_prob:
            batch = _reverse_time(batch)  # so that propagation learns both directions (bidirectional inference)
            frames, labels, labelled = (batch[k].to(self.device) for k in ("frames", "labels", "labelled"))
        b, t, h, w = frames.shape
        theta = (random_affine(b, AugmentConfig(), self.generator) if cfg.augment
                 else identity_affine(b)).to(self.device)
        if cfg.augment:
            frames = photometric(warp(frames, theta), AugmentConfig(), self.generator)
            labels = warp(labels.float(), theta, mode="nearest").long()
        ref_valid, mode = self._reference_frames(labelled)
        prior = self._prior(batch, mode, theta)
        if prior is not None and float(torch.rand((), generator=self.generator)) < cfg.appearance_shift:
            frames = appearance_shift(frames, self.generator)
        supervised = supervised_frames(labelled, ref_valid)
        padded_labels = pad_to_stride(labels)[0]
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.ddp_model(frames, labels, ref_valid, labelled, self.generator, prior)
            parts = {"labelled": self.loss_labelled(out["logits"], labels, supervised)}
            if "logits16" in out and bool(supervised.any()):  # deep supervision at stride 16 (EchoForge only)
                target16 = downsample_labels(padded_labels, self.net_config.n_classes, out["logits16"].shape[-2:])
                log_p = F.log_softmax(out["logits16"][supervised].float(), dim=1)
                parts["aux16"] = cfg.aux16_weight * -(target16[supervised] * log_p).sum(1).mean()
            if "readout_masks" in out and bool(supervised.any()):  # the readout itself must find the structures
                target8 = downsample_labels(padded_labels, self.net_config.n_classes, out["readout_masks"].shape[-2:])
                read = out["readout_masks"][supervised].float().clamp(min=1e-4)
                parts["readout"] = cfg.readout_weight * -(target8[supervised] * read.log()).sum(1).mean()
            if "arc_weight_logits" in out:
                parts["arc"] = cfg.arc_weight * anchor_map_loss(out["arc_weight_logits"], padded_labels, labelled)
                parts["arc_patch"] = cfg.arc_patch_weight * arc_patch_loss(
                    out["arc_patch_logit"], padded_labels, labelled, self.net_config.patch)
            if self.model.cpr is not None:
                parts.update(self._cpr_losses(batch, out, labels, labelled, supervised, theta, epoch, (h, w)))
            total = sum(parts.values())
        if not torch.isfinite(total):
            raise TrainingError(
                f"the training loss became {total.item()} at epoch {epoch:.2f} "
                f"({', '.join(f'{k}={v.item():.4g}' for k, v in parts.items())}); lower the learning rate "
                f"(now {self.optimizer.param_groups[0]['lr']:.2g}) or check the input data for corrupt frames")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        result = {k: float(v.detach()) for k, v in parts.items()}
        result["total"] = float(total.detach())
        result.update(_diagnostics(out, padded_labels, labelled, batch, theta, self.net_config.patch))
        return result

    def _reference_frames(self, labelled: torch.Tensor) -> tuple[torch.Tensor, str]:
        """B×T bool: the memory references of this step, and their mode (of :data:`REFERENCE_MODES`,
        drawn per batch)."""
        mode = REFERENCE_MODES[int(torch.multinomial(torch.tensor(self.config.reference_probs), 1,
                                                     generator=self.generator))]
        ref = torch.zeros_like(labelled)
        if mode == "none":
            return ref, mode
        rows = torch.arange(labelled.shape[0], device=labelled.device)
        present = labelled.any(dim=1)
        ref[rows, labelled.float().argmax(dim=1)] = present
        if mode == "ends":
            last = labelled.shape[1] - 1 - labelled.flip(1).float().argmax(dim=1)
            ref[rows, last] = present
        return ref, mode

    def _prior(self, batch: dict[str, Any], mode: str, theta: torch.Tensor) -> torch.Tensor | None:
        """The flow prior that goes with the references of ``mode`` (warped like the frames), or None:
        without references, without clip priors, for a network that takes none, and in
        ``prior_dropout`` of the steps (streaming, where there is no prior)."""
        cfg = self.net_config
        if mode == "none" or "priors" not in batch or not (cfg.use_flow_prior and cfg.arch == "echoforge"):
            return None
        if float(torch.rand((), generator=self.generator)) < self.config.prior_dropout:
            return None
        prior = batch["priors"]["first" if mode == "first" else "ends"].to(self.device)
        return warp(prior, theta) if self.config.augment else prior

    def _cpr_losses(self, batch: dict[str, Any], out: dict[str, torch.Tensor], labels: torch.Tensor,
                    labelled: torch.Tensor, supervised: torch.Tensor, theta: torch.Tensor, epoch: float,
                    size: tuple[int, int]) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        if "cpr_logits" in out:  # targets: labelled frames whose features never saw their own ground truth
            pairs = out["cpr_pairs"]
            parts["cpr"] = self.config.cpr_weight * self.loss_labelled(out["cpr_logits"], labels[pairs],
                                                                       supervised[pairs])
        unlabelled = ~labelled
        if "reforged" not in out or not bool(unlabelled.any()):
            return parts
        weight, tau = self.flame.weight(epoch), self.flame.threshold(epoch)
        if weight > 0:  # learn from the previous epochs' reforged labels
            stored, valid = self.bank.lookup(batch["video_id"], batch["frame_index"], like=out["reforged"])
            stored, valid = warp(stored, theta), warp(valid, theta)  # canonical → this step's augmentation
            probs = F.interpolate(stored.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
            valid = F.interpolate(valid.flatten(0, 1), size=size, mode="nearest")[:, 0]
            confidence, target = probs.max(dim=1)
            use = (valid > 0.5) & (confidence > tau) & unlabelled.flatten()[:, None, None]
            parts["unlabelled"] = weight * masked_cross_entropy(out["logits"].flatten(0, 1), target, use.float())
        # store this clip's reforged unlabelled frames (in canonical geometry) for the next epoch
        inverse = invert_affine(theta)
        reforged = out["reforged"]
        canonical = warp(reforged, inverse)
        canonical_valid = warp(torch.ones_like(reforged[:, :, :1]), inverse)
        keep_frames = [[f for f, u in zip(frames, unl, strict=True) if u]
                       for frames, unl in zip(batch["frame_index"], unlabelled.tolist(), strict=True)]
        self.bank.update(batch["video_id"], keep_frames, _ragged(canonical, unlabelled),
                         _ragged(canonical_valid, unlabelled))
        return parts

    # ------------------------------------------------------------------ bookkeeping
    def _set_lr(self, progress: float) -> None:
        lr = self.config.lr * (1.0 - min(progress, 1.0)) ** self.config.poly_power
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _end_epoch(self, epoch: int, record: dict[str, Any], writer: Any) -> None:
        record = json.loads(json.dumps(record, default=float))  # plain floats: checkpoints load with weights_only
        self.history.append(record)
        score = record.get("val_score", record.get("val_dice_mean"))
        is_best = score is not None and score > self.best  # NaN is never the best
        if is_best:
            self.best = score
        if not self.writes_files:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    writer.add_scalar(k, v, epoch + 1)
            writer.flush()
        state = {"train": self.config.to_dict(), "epoch": epoch + 1, "metrics": record,
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "bank": self.bank.state_dict(), "best": self.best, "history": self.history,
                 "cpr": unwrap(self.model).cpr.state_dict() if self.model.cpr is not None else {},
                 "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}}
        ckpt = self.run_dir / "checkpoints"
        save_checkpoint(ckpt / "last.pt", self.model.net, self.net_config, **state)
        if is_best or score is None:
            save_checkpoint(ckpt / "best.pt", self.model.net, self.net_config, train=self.config.to_dict(),
                            epoch=epoch + 1, metrics=record)

    def _store_feature_stats(self, clips: list[Clip]) -> None:
        """Training-data feature statistics in the checkpoints, for detecting unfamiliar videos later."""
        from echoforge.engine.adapt import feature_stats
        from echoforge.nets.echoforge_net import EchoForgeNet

        net = unwrap(self.model.net)
        if not isinstance(net, EchoForgeNet):
            return
        stats = feature_stats(net, clips, self.device)
        for name in ("last.pt", "best.pt"):
            path = self.run_dir / "checkpoints" / name
            if path.exists():
                add_to_checkpoint(path, feature_stats=stats)

    def _resume(self, path: Path) -> None:
        payload = read_checkpoint(path)
        self.model.net.load_state_dict(payload["model"])
        if self.model.cpr is not None and payload.get("cpr"):
            self.model.cpr.load_state_dict(payload["cpr"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.bank.load_state_dict(payload["bank"])
        self.start_epoch = int(payload["epoch"])
        self.best = float(payload["best"])
        self.history = list(payload.get("history", []))
        torch.set_rng_state(payload["rng"]["torch"])
        self.generator.set_state(payload["rng"]["generator"])


@torch.no_grad()
def _diagnostics(out: dict[str, torch.Tensor], padded_labels: torch.Tensor, labelled: torch.Tensor,
                 batch: dict[str, Any], theta: torch.Tensor, patch: int) -> dict[str, float]:
    """Numbers that show an inert part (logged per epoch as ``arc_*`` / ``cpr_*``).

    * ARC: the fraction of patches in the uncertainty band (``arc_uncertain``) and the mean
      recalibration weight (``arc_weight``) over all frames; on the labelled frames, the same split
      into patches on the heart border (foreground fraction strictly between 5 % and 95 %) and the
      others (``arc_uncertain_border`` / ``arc_uncertain_other``).
    * CPR: on unlabelled frames, the fraction of pixels where the reforged pseudo-label differs from
      the network's own prediction (``cpr_change``); where the clips carry reference labels (phantom),
      the fraction of those changed pixels that the reforging got right (``cpr_change_right``: the
      plain prediction was wrong there) and wrong (``cpr_change_wrong``: it was right).
    """
    diag: dict[str, float] = {}
    if "arc_weight" in out:
        weight = out["arc_weight"].float()
        diag["diag_arc_uncertain"] = float((weight > 0).float().mean())
        diag["diag_arc_weight"] = float(weight.mean())
        if bool(labelled.any()):
            cells = (padded_labels.shape[-2] // 16, padded_labels.shape[-1] // 16)
            fraction = foreground_fraction(padded_labels[labelled], cells, patch)
            border = (fraction > 0.05) & (fraction < 0.95)
            active = weight[labelled] > 0
            if bool(border.any()):
                diag["diag_arc_uncertain_border"] = float(active[border].float().mean())
            if bool((~border).any()):
                diag["diag_arc_uncertain_other"] = float(active[~border].float().mean())
    unlabelled = ~labelled
    if "reforged" in out and bool(unlabelled.any()):
        reforged = out["reforged"][unlabelled]  # N×C×h×w at half resolution
        half = reforged.shape[-2:]
        plain = F.interpolate(out["logits"][unlabelled].float(), size=half, mode="bilinear",
                              align_corners=False).argmax(1)
        new = reforged.argmax(1)
        changed = new != plain
        diag["diag_cpr_change"] = float(changed.float().mean())
        if "reference" in batch and bool(changed.any()):
            truth = warp(batch["reference"].to(theta.device).float(), theta, mode="nearest")[unlabelled]
            truth = F.interpolate(truth[:, None], size=half, mode="nearest")[:, 0].long()
            n = changed.sum().float()
            diag["diag_cpr_change_right"] = float(((new == truth) & changed).sum() / n)
            diag["diag_cpr_change_wrong"] = float(((plain == truth) & changed).sum() / n)
    return diag


def _reverse_time(batch: dict[str, Any]) -> dict[str, Any]:
    """The clips of a batch played backwards (tensors flipped along T, frame indices reversed)."""
    out = dict(batch)
    for key in ("frames", "labels", "labelled", "reference"):
        if key in batch:
            out[key] = batch[key].flip(1)
    out["frame_index"] = [list(reversed(f)) for f in batch["frame_index"]]
    if "priors" in batch:  # played backwards, the first drawn frame is the last one
        priors = {name: p.flip(1) for name, p in batch["priors"].items()}
        out["priors"] = {**priors, "first": priors["last"], "last": priors["first"]}
    return out


#: a retraining whose network scores this much (Dice) below the network it started from on the
#: validation clips is not kept (:func:`keeps_model`): retraining on two new videos sometimes collapses
#: (mean automatic Dice on their own labelled frames 0.81 → 0.57 on a held-out scanner style, LV Dice on
#: other videos of the style 92.4 → 84.4), and the collapse shows on those frames as clearly as elsewhere
RETRAIN_TOLERANCE = 0.05


def keeps_model(summary: dict[str, Any], score: float | None = None, tolerance: float = RETRAIN_TOLERANCE
                ) -> tuple[bool, str]:
    """Whether a retraining (:meth:`Trainer.fit` ``summary`` of a run that started from an existing
    network, with validation clips) is better kept than the network it started from, and why.

    ``score`` is the kept network's validation score (default: the run's best epoch). A run without a
    start score (trained from scratch, or without validation clips) is kept."""
    start = summary.get("start_val_score")
    score = summary.get("best_val_dice") if score is None else score
    if start is None or not math.isfinite(start):
        return True, "no score of the starting network to compare with"
    if score is None:
        return False, "the retrained network has no score on the annotated frames: it is not kept"
    if not math.isfinite(score) or score < start - tolerance:
        return False, (f"the retrained network re-finds the annotated frames with Dice {score:.3f}, the network it "
                       f"started from with {start:.3f}: the retraining made it worse and is not kept")
    return True, f"Dice on the annotated frames {start:.3f} before, {score:.3f} after"


def both_ways_prior(priors: dict[str, torch.Tensor], frame_index: list[list[int]], labelled: torch.Tensor
                    ) -> torch.Tensor:
    """A batch's both-ways flow prior (:func:`~echoforge.engine.propagation.flow_prior` with ``both_ways``)
    from its one-sided ones: the walks from the first and from the last labelled frame of each clip,
    weighted by their distance in video frames (``priors["first"]``, ``["last"]``: B×T×C×H×W)."""
    weights = []
    for frames, drawn in zip(frame_index, labelled.tolist(), strict=True):
        positions = [f for f, d in zip(frames, drawn, strict=True) if d]
        t = torch.tensor(frames, dtype=torch.float32)
        g = [distance_weight((t - positions[k]).abs()) for k in (0, -1)]
        weights.append(torch.stack(g))  # 2×T
    w = torch.stack(weights)[..., None, None, None]  # B×2×T×1×1×1
    return (w[:, 0] * priors["first"] + w[:, 1] * priors["last"]) / (w[:, 0] + w[:, 1])


def _ragged(x: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Keep, per clip, only the selected frames, left-aligned and zero-padded: ``B×T×… -> B×max_sel×…``."""
    counts = select.sum(dim=1)
    out = torch.zeros(x.shape[0], int(counts.max()), *x.shape[2:], device=x.device, dtype=x.dtype)
    for i in range(x.shape[0]):
        out[i, : int(counts[i])] = x[i, select[i]]
    return out


def _summary_writer(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.jsonl is always written
        return None
    return SummaryWriter(str(path))


def _init_distributed() -> tuple[int, int]:
    """Join the process group when started by ``torchrun`` (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()
