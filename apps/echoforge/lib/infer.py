"""Infer task ``echoforge``: segment every frame of a video, or "segment the rest" from drawn frames.

Request (MONAI Label ``POST /infer/echoforge?image=<id>``, multipart):

* ``label`` part (optional): a label volume holding the frames the clinician drew; with
  ``annotated_frames`` in params (a list or ``"0,9"``) only those frames count, otherwise the frames
  holding foreground. Drawn frames become the memory references and come back exactly as drawn.
* params: ``adapt`` (``auto``/``on``/``off``), ``adapt_steps``, ``chunk``, ``result_extension``
  (``.nrrd`` as 3D Slicer asks, ``.nii.gz``; default: the image's own format), ``ed``/``es`` (frames
  the clinician marked, used for their beat).

Result: a uint8 label volume on the image's geometry (0 background, 1 LV cavity, 2 myocardium,
3 left atrium) and JSON with ``measurements`` (every beat's ED/ES, EDV/ESV/EF where the spacing
allows, GLS, LA volume, LV mass, their means and quality flags, and the single-beat values),
``biplane`` (with the patient's other apical view in the datastore, see ``lib/biplane.py``), the
annotated frames, per-frame confidence, and what adaptation did.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from echoforge import labels as L
from echoforge.engine.adapt import AdaptConfig, adapt_to_video, shift_score
from echoforge.engine.inference import segment_video
from echoforge.errors import UnknownFrameError, UnreadableFileError
from echoforge.io.atomic import compound_suffix
from echoforge.io.studies import video_name
from echoforge.io.volume import attach_labels, read_volume, write_labels_like
from echoforge.report import video_clip

from lib.biplane import BiplanePartners
from lib.datastore import parse_frames
from lib.http import http_errors
from lib.models import ModelStore
from lib.settings import AppSettings

logger = logging.getLogger(__name__)

LABELS = {L.LONG_NAMES[k]: k for k in (L.LV, L.MYOCARDIUM, L.LA)}


class EchoForgeInfer(InferTask):
    """Segmentation of 2-D+t echo volumes (H×W×T) with the EchoForge network."""

    def __init__(self, store: ModelStore, settings: AppSettings, partners: BiplanePartners | None = None):
        super().__init__(type=InferType.SEGMENTATION, labels=LABELS, dimension=3,
                         description="EchoForge: every frame of an echo video (LV cavity, myocardium, left atrium); "
                                     "send drawn frames as the label to segment the rest",
                         config={"adapt": ["auto", "on", "off"], "adapt_steps": settings.adapt_steps,
                                 "annotated_frames": ""})
        self.store, self.settings, self.partners = store, settings, partners

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        with http_errors():
            return self._run(request)

    def _run(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        image = request.get("image") or ""
        if not isinstance(image, str) or not os.path.exists(image):
            raise UnreadableFileError("the image was not found on the server", image or None)
        video = read_volume(image)
        if request.get("label"):
            video = attach_labels(video, request["label"], _frames(request.get("annotated_frames")))
        model, payload = self.store.get()
        info: dict[str, Any] = {"model": self.store.version()[0], "adapted": False}
        adapt = str(request.get("adapt", self.settings.adapt)).lower()
        if video.has_labels and adapt in ("auto", "on", "true"):
            stats = payload.get("feature_stats")
            score = shift_score(model, video, stats, self.store.device) if stats else None
            info["shift_score"] = score
            info["shift_threshold"] = stats["threshold"] if stats else None
            if adapt in ("on", "true") or (score is not None and score > stats["threshold"]):
                steps = int(request.get("adapt_steps", self.settings.adapt_steps))
                model, info["adaptation"] = adapt_to_video(model, video, AdaptConfig(steps=steps), self.store.device)
                info["adapted"] = True
        chunk = int(request.get("chunk", self.settings.chunk)) or None
        seg = segment_video(model, video, use_annotations=True, chunk=chunk, device=self.store.device)
        extension = request.get("result_extension") or compound_suffix(image)
        fd, out = tempfile.mkstemp(suffix=extension if extension in (".nrrd", ".nii.gz", ".nii") else ".nrrd")
        os.close(fd)
        write_labels_like(seg.labels, image, out, annotated=seg.annotated)
        clip = video_clip(video, seg.labels, seg, _frame(request.get("ed")), _frame(request.get("es")))
        params = {"label_names": LABELS, "annotated_frames": list(seg.annotated), "frames": video.n_frames,
                  "seconds": round(seg.seconds, 3), "fps": round(video.n_frames / max(seg.seconds, 1e-6), 2),
                  "frame_confidence": [round(float(c), 4) for c in seg.confidence],
                  "measurements": clip.result, **info}
        if self.partners is not None:
            version = (self.store.version(), os.path.getmtime(image))
            self.partners.remember(video_name(image), version, clip)

            def segment(other: Any) -> tuple[Any, Any]:  # the partner, with the served (not adapted) model
                done = segment_video(self.store.get()[0], other, use_annotations=True, chunk=chunk,
                                     device=self.store.device)
                return done.labels, done

            params["biplane"] = self.partners.measure(video_name(image), video, clip, self.store.version(), segment)
        logger.info(f"EchoForge infer: {video.n_frames} frames in {seg.seconds:.2f} s, "
                    f"annotated {list(seg.annotated)}, adapted {info['adapted']}")
        return out, params


def _frames(value: Any) -> tuple[int, ...] | None:
    frames = parse_frames(value)
    return tuple(frames) if frames is not None else None


def _frame(value: Any) -> int | None:
    """A marked ED/ES frame as sent (a number or its text); checked against the clip when measured."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    frames = parse_frames(value) if isinstance(value, (str, list)) else None
    if frames is None or len(frames) != 1:
        raise UnknownFrameError(f"an ED or ES mark is one frame number, got {value!r}")
    return frames[0]
