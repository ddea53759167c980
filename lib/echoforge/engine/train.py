"""Semi-supervised training: labelled ED/ES frames + CPR pseudo-labels under FlameRise.

Per step, for a batch of clips (B×T frames):

1. one random affine per clip (frames and labels), gamma/contrast/brightness;
2. the network runs through the clip; the labelled frames may serve as memory references
   (none, the first, or all labelled frames, drawn per batch so the model learns both automatic
   and "segment the rest" use);
3. losses: Dice + CE on the labelled frames (full resolution), CE on the stride-16 logits (deep
   supervision, ``aux16_weight``), BCE on ARC's foreground map (``arc_weight``), CPR's own loss
   on the drawn pairs (``cpr_weight``), and the unlabelled loss ``λ(e)`` × CE against the bank's
   pseudo-labels where their confidence exceeds ``τ(e)`` (FlameRise);
4. CPR reforges this clip's unlabelled frames and stores them in the bank for the next epoch.

Adam, poly learning-rate decay (power 0.9), gradient clipping; AMP (float16 + GradScaler) and
channels-last on CUDA; DistributedDataParallel when started by ``torchrun`` (gloo on CPU, NCCL on
CUDA; each rank keeps a fixed shard of the videos so its pseudo-label bank stays local). Runs are
seeded, show tqdm progress, log TensorBoard events plus ``metrics.jsonl``, write checkpoints
atomically every epoch (``last.pt``, resumable after a kill; ``best.pt`` by validation Dice) and
stop with a clear :class:`~echoforge.errors.TrainingError` when a loss becomes NaN.
"""

from __future__ import annotations

import json
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
    identity_affine,
    invert_affine,
    photometric,
    random_affine,
    warp,
)
from echoforge.engine.checkpoint import add_to_checkpoint, read_checkpoint, save_checkpoint, unwrap
from echoforge.engine.clips import Clip, collate
from echoforge.engine.losses import LabelledLoss, anchor_map_loss, masked_cross_entropy
from echoforge.errors import TrainingError
from echoforge.io.atomic import write_json_atomic
from echoforge.nets import NetConfig, build_model
from echoforge.nets.config import settings_from_dict, settings_to_dict
from echoforge.nets.echoforge_net import downsample_labels, pad_to_stride
from echoforge.semi.cpr import ChannelCrossAttention, PseudoLabelBank, reforge
from echoforge.semi.schedule import FlameRise

REFERENCE_MODES = ("none", "first", "all")


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
    cpr_weight: float = 0.5
    reference_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)
    augment: bool = True
    grad_clip: float = 3.0
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    progress: bool = True

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

    def __init__(self, net: nn.Module, use_cpr: bool):
        super().__init__()
        self.net = net
        # CPR reforges decoder features, which only the EchoForge network has
        self.cpr = ChannelCrossAttention(net.config.dec_dim) if use_cpr and net.config.arch == "echoforge" else None

    def forward(self, frames: torch.Tensor, ref_masks: torch.Tensor | None = None,
                ref_valid: torch.Tensor | None = None, labelled: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """The network's outputs; with ``labelled`` (B×T) and CPR also ``cpr_logits`` for the clips with
        two or more labelled frames (``cpr_pairs``) and ``reforged`` probabilities at half resolution."""
        out = self.net(frames, ref_masks, ref_valid)
        if self.cpr is None or labelled is None or not bool(labelled.any()):
            return out
        size = tuple(frames.shape[-2:])
        pairs = labelled.sum(dim=1) >= 2
        if bool(pairs.any()):  # CPR learns on the drawn pairs: reforge ES from ED (and back) → drawn labels
            out["cpr_logits"] = reforge(self.cpr, self.net.decoder.classify, out["features"][pairs], labelled[pairs],
                                        size, exclude_self=True)
            out["cpr_pairs"] = pairs
        with torch.no_grad():  # pseudo-labels of every frame, each from its nearest labelled frame
            half = (max(size[0] // 2, 1), max(size[1] // 2, 1))
            out["reforged"] = reforge(self.cpr, self.net.decoder.classify, out["features"].detach(), labelled,
                                      half).float().softmax(dim=2)
        return out


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
                                         config.use_cpr).to(self.device)
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
            write_json_atomic(self.run_dir / "config.json", {"net": self.net_config.to_dict(),
                                                             "train": self.config.to_dict()})
        writer = _summary_writer(self.run_dir / "logs") if self.writes_files else None
        steps_per_epoch = math.ceil(len(shard) / self.config.batch_size)
        if self.config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, self.config.max_steps_per_epoch)
        total_steps = max(1, steps_per_epoch * self.config.epochs)
        for epoch in range(self.start_epoch, self.config.epochs):
            self.model.train()
            # seeded per epoch, so a resumed run visits the clips in the same order as an unbroken one
            order = np.random.default_rng([self.config.seed, self.rank, epoch]).permutation(len(shard))
            totals: dict[str, float] = {}
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
                bar.set_postfix(loss=f"{losses['total']:.3f}")
            record: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(time.time() - started, 2),
                                      "lr": self.optimizer.param_groups[0]["lr"],
                                      "unlabelled_weight": self.flame.weight(epoch + 1),
                                      "threshold": self.flame.threshold(epoch + 1), "bank": len(self.bank)}
            record.update({f"loss_{k}": round(v / steps_per_epoch, 5) for k, v in totals.items()})
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
                "best_val_dice": None if self.best == -math.inf else self.best}

    # ------------------------------------------------------------------ one step
    def _step(self, batch: dict[str, Any], epoch: float) -> dict[str, float]:
        cfg = self.config
        frames = batch["frames"].to(self.device)
        labels = batch["labels"].to(self.device)
        labelled = batch["labelled"].to(self.device)
        b, t, h, w = frames.shape
        theta = (random_affine(b, AugmentConfig(), self.generator) if cfg.augment
                 else identity_affine(b)).to(self.device)
        if cfg.augment:
            frames = photometric(warp(frames, theta), AugmentConfig(), self.generator)
            labels = warp(labels.float(), theta, mode="nearest").long()
        ref_valid = self._reference_frames(labelled)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.ddp_model(frames, labels, ref_valid, labelled)
            logits = out["logits"]
            loss_sup = self.loss_labelled(logits, labels, labelled)
            parts = {"labelled": loss_sup}
            if "logits16" in out and bool(labelled.any()):  # deep supervision at stride 16 (EchoForge only)
                target16 = downsample_labels(pad_to_stride(labels)[0], self.net_config.n_classes,
                                             out["logits16"].shape[-2:])
                log_p = F.log_softmax(out["logits16"][labelled].float(), dim=1)
                parts["aux16"] = cfg.aux16_weight * -(target16[labelled] * log_p).sum(1).mean()
            if "weight_maps" in out:
                parts["arc"] = cfg.arc_weight * anchor_map_loss(out["weight_maps"], labels, labelled)
            if self.model.cpr is not None:
                parts.update(self._cpr_losses(batch, out, labels, labelled, theta, epoch, (h, w)))
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
        return result

    def _reference_frames(self, labelled: torch.Tensor) -> torch.Tensor:
        mode = REFERENCE_MODES[int(torch.multinomial(torch.tensor(self.config.reference_probs), 1,
                                                     generator=self.generator))]
        if mode == "none":
            return torch.zeros_like(labelled)
        if mode == "all":
            return labelled.clone()
        first = labelled.float().argmax(dim=1)
        ref = torch.zeros_like(labelled)
        ref[torch.arange(labelled.shape[0]), first] = labelled.any(dim=1)
        return ref

    def _cpr_losses(self, batch: dict[str, Any], out: dict[str, torch.Tensor], labels: torch.Tensor,
                    labelled: torch.Tensor, theta: torch.Tensor, epoch: float, size: tuple[int, int]
                    ) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        if "cpr_logits" in out:
            pairs = out["cpr_pairs"]
            parts["cpr"] = self.config.cpr_weight * self.loss_labelled(out["cpr_logits"], labels[pairs], labelled[pairs])
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
        if not self.writes_files:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    writer.add_scalar(k, v, epoch + 1)
            writer.flush()
        score = record.get("val_dice_mean")
        is_best = score is not None and score > self.best
        if is_best:
            self.best = score
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
