"""Per-video adaptation: make two drawn frames enough on a video unlike the training data.

:func:`adapt_to_video` fine-tunes a *copy* of the network on one video for a bounded number of steps:
the drawn frames teach directly, CPR reforges pseudo-labels for the other frames under FlameRise
(each step is one pass over the video's clip), with the same augmentation and losses as training.
The served network is never changed.

Whether a video "looks unlike the training data" is decided by :func:`shift_score`: the mean,
over encoder channels, of the standardised difference between the video's average pooled feature
and the training frames' (stored in the checkpoint as ``feature_stats`` by :func:`feature_stats`).
The threshold is the 95th percentile of the training videos' own scores times 1.5; the benchmark
reports how well it separates phantom videos of a shifted style from in-domain ones.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from echoforge.engine.clips import Clip, Letterbox, make_clip
from echoforge.engine.train import TrainConfig, Trainer
from echoforge.errors import EmptyLabelError
from echoforge.nets.echoforge_net import EchoForgeNet, pad_to_stride
from echoforge.video import EchoVideo


@dataclass(frozen=True)
class AdaptConfig:
    """Bounded fine-tuning on one video (defaults take a few seconds for ``light`` on a 2-core CPU)."""

    steps: int = 24
    lr: float = 3e-4
    clip_frames: int = 10
    seed: int = 0


def adapt_to_video(model: EchoForgeNet, video: EchoVideo, config: AdaptConfig = AdaptConfig(),
                   device: str | torch.device = "cpu") -> tuple[EchoForgeNet, dict[str, Any]]:
    """Fine-tune a copy of ``model`` on ``video``'s annotated frames (+ CPR on the rest).

    Returns:
        ``(adapted network in eval mode, info)`` with ``steps``, ``seconds`` and the first/last loss.
    """
    if not video.has_labels:
        raise EmptyLabelError("adaptation needs at least one annotated frame", video.source or None)
    started = time.perf_counter()
    net = copy.deepcopy(model).to(device)
    clip = make_clip(video, tuple(model.config.input_size), config.clip_frames, "all", video_id="adapt")
    train_config = TrainConfig(epochs=config.steps, batch_size=1, lr=config.lr, seed=config.seed,
                               device=str(device), progress=False, burn_in=0.25, ramp_end=0.6)
    summary = Trainer(model.config, train_config, run_dir=None, net=net).fit([clip])
    losses = [h.get("loss_total") for h in summary["history"]]
    return net.eval(), {"steps": config.steps, "seconds": round(time.perf_counter() - started, 3),
                        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}


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
