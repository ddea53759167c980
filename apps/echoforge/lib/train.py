"""Train task ``echoforge``: semi-supervised retraining on the clinicians' annotated frames.

Every video with a ``final`` label and at least one annotated frame takes part; its annotated
frames teach directly and CPR reforges pseudo-labels for all its other frames (FlameRise), starting
from the serving model's own "segment the rest" of the video (so they teach from the first epoch).
Training starts from the model that serves now, runs on CUDA when present (AMP) and on the CPU
otherwise, and publishes the new weights atomically at the end (``model/echoforge.pt``): a run that
is stopped or fails leaves the previous model serving, and so does one whose best epoch re-finds the
annotated frames worse than the model it started from (by more than
:data:`~echoforge.engine.train.RETRAIN_TOLERANCE` Dice; ``train_stats`` then says ``not_published``
and why). Only one run trains at a time, even across
processes and server restarts, and a run publishes only while it is the current one
(:mod:`lib.runs`). A video whose files cannot be read is left out with a logged reason. Progress
goes to the task log (one line per epoch, visible in ``GET /train/``) and to
``model/train_stats.json`` (``/info/`` ``train_stats``).

Request parameters (each checked, 422 naming it otherwise): ``max_epochs`` (1 to
``--conf max_train_epochs``), ``learning_rate``, ``batch_size``, ``clip_frames``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.train import TrainTask

from echoforge.engine.clips import make_clip
from echoforge.engine.train import TrainConfig, Trainer, keeps_model
from echoforge.errors import EchoForgeError, TrainingError
from echoforge.io.atomic import write_json_atomic
from echoforge.io.volume import attach_labels, read_volume
from echoforge.video import EchoVideo

from lib.http import http_errors
from lib.models import ModelStore
from lib.params import integer, number
from lib.runs import Run, TrainingLock
from lib.settings import AppSettings

logger = logging.getLogger(__name__)

STATS_NAME = "train_stats.json"


def annotated_videos(datastore: Datastore) -> list[tuple[str, EchoVideo]]:
    """Videos with a final label, with the annotated frames recorded when the label was saved."""
    items = []
    for image_id in datastore.get_labeled_images():
        label_uri = datastore.get_label_uri(image_id, DefaultLabelTag.FINAL)
        info = datastore.get_label_info(image_id, DefaultLabelTag.FINAL) or {}
        frames = info.get("annotated_frames")
        try:
            video = attach_labels(read_volume(datastore.get_image_uri(image_id)), label_uri,
                                  tuple(frames) if frames else None)
        except (EchoForgeError, OSError) as err:  # one bad video must not stop training on the others
            logger.error(f"Training without {image_id}: {err}")
            continue
        if video.has_labels:
            items.append((image_id, video))
    return items


class EchoForgeTrain(TrainTask):
    """Semi-supervised retraining (see the module docstring)."""

    def __init__(self, store: ModelStore, settings: AppSettings):
        super().__init__("EchoForge semi-supervised training (annotated frames + CPR pseudo-labels)")
        self.store, self.settings = store, settings

    def config(self) -> dict[str, Any]:
        s = self.settings
        return {"max_epochs": s.epochs, "learning_rate": s.lr, "batch_size": s.batch_size,
                "clip_frames": s.clip_frames}

    def stats(self) -> dict[str, Any]:
        path = self.store.model_dir / STATS_NAME
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            return {}

    @property
    def lock(self) -> TrainingLock:
        return TrainingLock(self.store.model_dir)

    def parse_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The run's settings from a training request (422 naming the first bad parameter)."""
        s = self.settings
        return {"epochs": integer(request, "max_epochs", s.epochs, 1, s.max_train_epochs),
                "lr": number(request, "learning_rate", s.lr, 1e-8, 1.0),
                "batch_size": integer(request, "batch_size", s.batch_size, 1, 64),
                "clip_frames": integer(request, "clip_frames", s.clip_frames, 2, 256)}

    def check(self, datastore: Datastore) -> None:
        """Refuse a training request that cannot teach anything (called before a background run starts)."""
        with http_errors():
            if not datastore.get_labeled_images():
                raise TrainingError("no video has an annotated frame yet: save a label first, then train")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        with http_errors(), self.lock.hold():
            return self._train(request, datastore)

    def _train(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        run = Run(self.store.model_dir)
        options = self.parse_request(request)
        items = annotated_videos(datastore)
        if not items:
            raise TrainingError("no video has an annotated frame yet: save a label first, then train")
        model, _ = self.store.get()
        config = model.config
        epochs, clip_frames = options["epochs"], options["clip_frames"]
        clips = [make_clip(video, tuple(config.input_size), clip_frames, "all", video_id=vid,
                           priors=config.use_flow_prior, mode=config.mode) for vid, video in items]
        # CPR's bank starts from the serving model's own "segment the rest" of each video (Trainer.seed_bank),
        # so the pseudo-labels teach from the first epoch: no burn-in
        train_config = TrainConfig(epochs=epochs, batch_size=options["batch_size"], lr=options["lr"], labelled="all",
                                   clip_frames=clip_frames, device=self.settings.device, progress=False,
                                   burn_in=0.0, ramp_end=0.3)
        run_dir = self.store.model_dir / "runs" / time.strftime("%Y%m%d_%H%M%S")
        started = time.time()
        logger.info(f"EchoForge training: {len(clips)} annotated videos, {epochs} epochs, run folder {run_dir}")

        def progress(record: dict[str, Any]) -> None:
            stats = _stats(record, epochs, started, best=max((h.get("val_dice_mean", 0.0) for h in trainer.history),
                                                               default=0.0))
            write_json_atomic(self.store.model_dir / STATS_NAME, stats)
            logger.info(f"epoch {record['epoch']}/{epochs}: loss {record.get('loss_total', float('nan')):.4f}, "
                        f"Dice on annotated frames {record.get('val_dice_mean', float('nan')):.4f}")

        trainer = Trainer(config, train_config, run_dir, resume=False, net=_copy(model))
        summary = trainer.fit(clips, clips, on_epoch=progress)
        stats = _stats(summary["history"][-1], epochs, started, best=summary.get("best_val_dice") or 0.0)
        keep, why = keeps_model(summary)
        if not keep:  # e.g. a collapse on two new videos: the model that served keeps serving
            stats.update(published=None, not_published=why, start_metric=round(summary["start_val_score"], 5))
            if run.is_current():  # a superseded run leaves the statistics to the run that replaced it
                write_json_atomic(self.store.model_dir / STATS_NAME, stats)
            logger.warning(f"EchoForge training done in {time.time() - started:.1f} s, not published: {why}")
            return stats
        best = run_dir / "checkpoints" / "best.pt"
        # publish atomically (the infer task reloads on the new mtime), only if this run is still the current one
        run.publish(best if best.exists() else run_dir / "checkpoints" / "last.pt", self.store.published)
        stats["published"] = str(self.store.published)
        write_json_atomic(self.store.model_dir / STATS_NAME, stats)
        logger.info(f"EchoForge training done in {time.time() - started:.1f} s; published {self.store.published}")
        return stats


def _copy(model: Any) -> Any:
    import copy

    return copy.deepcopy(model).train()


def _stats(record: dict[str, Any], total_epochs: int, started: float, best: float) -> dict[str, Any]:
    """Training statistics in the shape MONAI Label clients (the Slicer plugin) read."""
    elapsed = time.time() - started
    return {"epoch": record["epoch"], "total_epochs": total_epochs, "current_epoch": record["epoch"],
            "best_metric": round(float(best), 5), "total_time": time.strftime("%H:%M:%S", time.gmtime(elapsed)),
            "seconds": round(elapsed, 1), "start_ts": int(started), "loss": record.get("loss_total"),
            "train": {"metrics": {k: v for k, v in record.items() if k.startswith(("loss_", "val_"))}}}
