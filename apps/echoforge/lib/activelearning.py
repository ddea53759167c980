"""Active learning: rank unannotated videos by uncertainty and say which frames to annotate.

The uncertainty of a video (:func:`echoforge.engine.uncertainty.video_uncertainty`: predictive
entropy + temporal inconsistency of one automatic segmentation) is stored in its image info under
``echoforge_uncertainty`` together with the model version that produced it, so scores are reused
until the model changes. The strategy scores what is missing (at most ``max_new`` videos per
request, the rest keep older scores) and returns the most uncertain video with its suggested frames
(ED and ES detected on its predicted LV curve, plus its most uncertain frame). A video that cannot
be read is recorded with its error (for that model version) and left out, so one bad file never
stops the ranking or scoring of the others.
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from echoforge.engine.inference import segment_video
from echoforge.engine.uncertainty import video_uncertainty
from echoforge.errors import EchoForgeError
from echoforge.io.atomic import finite_json
from echoforge.io.volume import read_volume

from lib.models import ModelStore

logger = logging.getLogger(__name__)

KEY = "echoforge_uncertainty"


def score_video(store: ModelStore, datastore: Datastore, image_id: str, chunk: int) -> dict[str, Any]:
    """Segment one video automatically, measure its uncertainty and store it in the image info.

    An unreadable video gets ``{"error": ...}`` instead of a score.
    """
    model, _ = store.get()
    try:
        video = read_volume(datastore.get_image_uri(image_id))
        result = finite_json(video_uncertainty(segment_video(model, video, use_annotations=False, chunk=chunk,
                                                             device=store.device)))
    except (EchoForgeError, OSError) as err:
        logger.error(f"Cannot score {image_id}: {err}")
        result = {"error": str(err)}
    result["model_version"] = list(store.version())
    datastore.update_image_info(image_id, {KEY: result})
    return result


def stored_score(store: ModelStore, datastore: Datastore, image_id: str) -> dict[str, Any] | None:
    entry = (datastore.get_image_info(image_id) or {}).get(KEY)
    return entry if entry and entry.get("model_version") == list(store.version()) else None


class UncertaintyStrategy(Strategy):
    """Next video = the most uncertain unannotated one, with the frames to annotate."""

    def __init__(self, store: ModelStore, chunk: int = 16, max_new: int = 8):
        super().__init__("Most uncertain video first (entropy + temporal inconsistency); suggests frames")
        self.store, self.chunk, self.max_new = store, chunk, max_new

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        candidates = datastore.get_unlabeled_images()
        if not candidates:
            return None
        scores: dict[str, dict[str, Any]] = {}
        new = 0
        for image_id in candidates:
            entry = stored_score(self.store, datastore, image_id)
            if entry is None and new < self.max_new:
                entry = score_video(self.store, datastore, image_id, self.chunk)
                new += 1
            if entry is not None and "error" not in entry:
                scores[image_id] = entry
        if not scores:
            return None
        best = max(scores, key=lambda i: scores[i]["score"])
        entry = scores[best]
        return {"id": best, "uncertainty": entry["score"], "suggested_frames": entry["suggested_frames"],
                "ed": entry["ed"], "es": entry["es"], "most_uncertain_frame": entry["most_uncertain_frame"],
                "ranking": sorted(scores, key=lambda i: -scores[i]["score"])}


class UncertaintyScoring(ScoringMethod):
    """Score every unannotated video (stores ``echoforge_uncertainty`` in the datastore)."""

    def __init__(self, store: ModelStore, chunk: int = 16):
        super().__init__("Uncertainty of each unannotated video (entropy + temporal inconsistency)")
        self.store, self.chunk = store, chunk

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        result = {}
        for image_id in datastore.get_unlabeled_images():
            entry = stored_score(self.store, datastore, image_id) or score_video(
                self.store, datastore, image_id, self.chunk)
            result[image_id] = {"error": entry["error"]} if "error" in entry else {
                k: entry[k] for k in ("score", "suggested_frames")}
        logger.info(f"EchoForge uncertainty scored for {len(result)} videos")
        return result
