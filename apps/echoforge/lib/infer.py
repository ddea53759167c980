"""Infer task ``echoforge``: segment every frame of a video, or "segment the rest" from drawn frames.

Request (MONAI Label ``POST /infer/echoforge?image=<id>``, multipart):

* ``label`` part (optional): a label volume holding the frames the clinician drew; with
  ``annotated_frames`` in params (a list or ``"0,9"``) only those frames count, otherwise the frames
  holding foreground. Drawn frames become the memory references and come back exactly as drawn.
* params: ``adapt`` (``auto``/``on``/``off``), ``adapt_steps`` (1 to ``max_adapt_steps``), ``chunk``
  (1 to ``max_chunk``), ``prior_blend`` (0 to 1: the share of the drawn masks carried by optical flow in
  "segment the rest"; ``--conf prior_blend``, default 0.8), ``result_extension`` (``.nrrd`` as 3D Slicer asks, ``.nii.gz``, ``.nii``;
  default: the image's own format), ``ed``/``es`` (frames the clinician marked, used for their beat).
  A bad value is a 422 naming the parameter.

The image is a datastore id (the app resolves it; see ``EchoForgeApp.infer``), never a server path,
and inference never saves a label: a clinician's labels change only by ``PUT /datastore/label``.

Result: a uint8 label volume on the image's geometry (0 background, 1 LV cavity, 2 myocardium,
3 left atrium) and JSON with ``measurements`` (every beat's ED/ES, EDV/ESV/EF where the spacing
allows, GLS, LA volume, LV mass, their means and quality flags, and the single-beat values),
``biplane`` (with the patient's other apical view in the datastore, see ``lib/biplane.py``), the
annotated frames, per-frame confidence, ``next_frame_to_draw`` (where the propagation
is least certain: drawing it there helps most) with each frame's ``frame_disagreement`` between
forward and backward propagation, ``warnings`` about the drawn frames (one drawn frame, a
structure missing on some, two that disagree; a drawn frame without an LV is a 422), and what
adaptation did (``adapt=auto`` adapts only when the drawn frames are not re-found from each other
with a Dice of at least ``fit_threshold``: ``propagation_fit``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from echoforge import labels as L
from echoforge.engine.adapt import AdaptConfig, adapt_to_video, prepare, propagation_fit, shift_score
from echoforge.engine.inference import segment_video
from echoforge.errors import InvalidVideoError, UnreadableFileError
from echoforge.io.atomic import compound_suffix, finite_json
from echoforge.io.studies import video_name
from echoforge.io.volume import attach_labels, read_volume, write_labels_like
from echoforge.report import video_clip

from lib.biplane import BiplanePartners
from lib.datastore import check_frame_count
from lib.http import http_errors
from lib.models import ModelStore
from lib.params import choice, frames, integer, invalid, number
from lib.settings import AppSettings

logger = logging.getLogger(__name__)

LABELS = {L.LONG_NAMES[k]: k for k in (L.LV, L.MYOCARDIUM, L.LA)}
RESULT_EXTENSIONS = (".nrrd", ".nii.gz", ".nii")


class EchoForgeInfer(InferTask):
    """Segmentation of 2-D+t echo volumes (H×W×T) with the EchoForge network."""

    def __init__(self, store: ModelStore, settings: AppSettings, partners: BiplanePartners | None = None):
        super().__init__(type=InferType.SEGMENTATION, labels=LABELS, dimension=3,
                         description="EchoForge: every frame of an echo video (LV cavity, myocardium, left atrium); "
                                     "send drawn frames as the label to segment the rest",
                         config={"adapt": ["auto", "on", "off"], "adapt_steps": settings.adapt_steps,
                                 "prior_blend": settings.prior_blend, "annotated_frames": ""})
        self.store, self.settings, self.partners = store, settings, partners

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        with http_errors():
            return self._run(request)

    def _run(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        s = self.settings
        adapt = choice(request, "adapt", s.adapt, ("auto", "on", "off", "true", "false"))
        steps = integer(request, "adapt_steps", s.adapt_steps, 1, s.max_adapt_steps)
        chunk = integer(request, "chunk", s.chunk, 1, s.max_chunk)
        blend = number(request, "prior_blend", s.prior_blend, 0.0, 1.0)
        extension = request.get("result_extension") or None
        if extension is not None and extension not in RESULT_EXTENSIONS:
            raise invalid("result_extension", f"must be one of {', '.join(RESULT_EXTENSIONS)}, got {extension!r}")
        image = request.get("image") or ""
        if not isinstance(image, str) or not os.path.isfile(image):
            raise UnreadableFileError("the image was not found on the server")
        video = read_volume(image)
        check_frame_count(video, s.max_frames, "image")
        drawn = frames(request.get("annotated_frames"), n_frames=video.n_frames)
        if request.get("label"):
            video = attach_labels(video, request["label"], tuple(drawn) if drawn is not None else None)
        elif drawn:
            raise invalid("annotated_frames", "were given without the drawn labels (send them as the label file)")
        ed, es = (_marked(request, name, video.n_frames) for name in ("ed", "es"))
        model, payload = self.store.get()
        info: dict[str, Any] = {"model": self.store.version()[0], "adapted": False}
        if video.has_labels and adapt in ("auto", "on", "true"):
            model = self._adapt(model, payload, video, adapt in ("on", "true"), steps, info)
        seg = segment_video(model, video, use_annotations=True, chunk=chunk, device=self.store.device,
                            prior_blend=blend)
        extension = extension or compound_suffix(image)
        fd, out = tempfile.mkstemp(suffix=extension if extension in RESULT_EXTENSIONS else ".nrrd")
        os.close(fd)
        try:
            write_labels_like(seg.labels, image, out, annotated=seg.annotated)
        except BaseException:
            os.unlink(out)
            raise
        clip = video_clip(video, seg.labels, seg, ed, es)
        params = {"label_names": LABELS, "annotated_frames": list(seg.annotated), "frames": video.n_frames,
                  "seconds": round(seg.seconds, 3), "fps": round(video.n_frames / max(seg.seconds, 1e-6), 2),
                  "frame_confidence": [round(float(c), 4) for c in seg.confidence],
                  "next_frame_to_draw": seg.extra.get("next_frame"),
                  "frame_disagreement": seg.extra.get("disagreement"), "warnings": seg.extra.get("warnings", []),
                  "measurements": clip.result, **info}
        if self.partners is not None:
            version = (self.store.version(), os.path.getmtime(image))
            self.partners.remember(video_name(image), version, clip)

            def segment(other: Any) -> tuple[Any, Any]:  # the partner, with the served (not adapted) model
                if other.n_frames > s.max_frames:
                    raise InvalidVideoError(f"it has {other.n_frames} frames, more than the {s.max_frames} this "
                                            "server takes (--conf max_frames)")
                done = segment_video(self.store.get()[0], other, use_annotations=True, chunk=chunk,
                                     device=self.store.device, prior_blend=blend)
                return done.labels, done

            try:
                params["biplane"] = self.partners.measure(video_name(image), video, clip, self.store.version(),
                                                          segment)
            except Exception:  # the partner is another file: its failure never fails this video's segmentation
                logger.exception(f"Biplane measurement of {video_name(image)} failed")
                params["biplane"] = {"available": False,
                                     "reason": "the partner view could not be measured (see the server log)"}
        logger.info(f"EchoForge infer: {video.n_frames} frames in {seg.seconds:.2f} s, "
                    f"annotated {list(seg.annotated)}, adapted {info['adapted']}")
        return out, finite_json(params)

    def _adapt(self, model: Any, payload: dict[str, Any], video: Any, always: bool, steps: int,
               info: dict[str, Any]) -> Any:
        """Per-video adaptation (``on``), or ``auto``: only when the drawn frames are not re-found well
        from each other (:func:`echoforge.engine.adapt.propagation_fit` below ``auto_threshold``)."""
        device = self.store.device
        config = AdaptConfig(steps=steps)
        views = prepare(model, video, config, device)
        fit = propagation_fit(model, views[0])
        stats = payload.get("feature_stats")
        info.update({"propagation_fit": fit, "fit_threshold": config.auto_threshold,
                     "shift_score": shift_score(model, video, stats, device) if stats else None})
        if always or (fit is not None and fit < config.auto_threshold):
            model, info["adaptation"] = adapt_to_video(model, video, config, device, views=views)
            info["adapted"] = True
        return model


def _marked(request: dict[str, Any], name: str, n_frames: int) -> int | None:
    """A frame the clinician marked as ED or ES (absent or empty: none), checked against the clip."""
    if request.get(name) in (None, ""):
        return None
    return integer(request, name, 0, 0, n_frames - 1)
