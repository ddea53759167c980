"""Biplane measurements in the infer result: the other apical view of the same patient, found in the datastore.

After a video is segmented, :class:`BiplanePartners` looks for its partner (the 2CH of a 4CH or the
other way round; :func:`echoforge.core.pairing.find_partner`: a link set in the image info as
``biplane_partner``, the DICOM PatientID and StudyInstanceUID recorded on ingest, or a CAMUS-style
name) and measures the pair (:func:`echoforge.core.clip.measure_pair`: biplane EDV/ESV/EF by the
CAMUS method of disks, LA volume, LV mass, and how the beats were paired). The partner's labels
are its last segmentation by this app when the model and the file are unchanged, its saved label
when that covers every frame, else it is segmented now (its drawn frames guiding the rest).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from echoforge.core.clip import ClipMeasurement, measure_pair
from echoforge.core.pairing import Partner, VideoRecord, find_partner, view_from_name
from echoforge.errors import EchoForgeError
from echoforge.io.volume import attach_labels, read_volume
from echoforge.report import video_clip
from echoforge.video import EchoVideo

logger = logging.getLogger(__name__)

LINK_KEY = "biplane_partner"
_CACHE_SIZE = 64


class BiplanePartners:
    """Finds a video's partner view in the datastore and measures the pair; remembers recent segmentations.

    Args:
        datastore: returns the app's datastore (called when needed, not at construction).
    """

    def __init__(self, datastore: Callable[[], Any]):
        self._datastore = datastore
        self._lock = threading.Lock()
        self._clips: dict[str, tuple[tuple[Any, ...], ClipMeasurement]] = {}

    def remember(self, image_id: str, version: tuple[Any, ...], clip: ClipMeasurement) -> None:
        """Keep ``clip`` as ``image_id``'s latest measurement under ``version`` (model and file)."""
        with self._lock:
            self._clips.pop(image_id, None)
            self._clips[image_id] = (version, clip)
            while len(self._clips) > _CACHE_SIZE:
                self._clips.pop(next(iter(self._clips)))

    def measure(self, image_id: str, video: EchoVideo, clip: ClipMeasurement, model_version: Any,
                segment: Callable[[EchoVideo], tuple[Any, Any]]) -> dict[str, Any] | None:
        """The biplane result of ``image_id`` (just measured as ``clip``) with its partner, or ``None``.

        Args:
            segment: segments a video, returning ``(labels, segmentation)``.

        Returns:
            :func:`~echoforge.core.clip.measure_pair`'s keys plus ``partner`` (its id), ``partner_view``,
            ``found_by`` and ``candidates``; ``available`` False with the ``reason`` when the partner
            cannot be read or measured.
        """
        datastore = self._datastore()
        partner = find_partner(self._record(datastore, image_id, video.view),
                               [self._record(datastore, other) for other in datastore.list_images()])
        if partner is None:
            return None
        about = {"partner": partner.record.id, "found_by": partner.found_by, "candidates": partner.candidates}
        try:
            partner_video, partner_clip = self._partner_clip(datastore, partner, model_version, segment)
        except EchoForgeError as err:
            logger.warning(f"Biplane partner {partner.record.id} of {image_id} not measured: {err}")
            return {"available": False, "reason": f"the partner video {partner.record.id!r} cannot be measured: "
                                                  f"{err.problem}", **about}
        view = video.view if video.view in ("2CH", "4CH") else ("2CH" if partner_video.view == "4CH" else "4CH")
        two, four = (clip, partner_clip) if view == "2CH" else (partner_clip, clip)
        return {**measure_pair(two, four), **about, "partner_view": "4CH" if view == "2CH" else "2CH"}

    def _partner_clip(self, datastore: Any, partner: Partner, model_version: Any,
                      segment: Callable[[EchoVideo], tuple[Any, Any]]) -> tuple[EchoVideo, ClipMeasurement]:
        image_id = partner.record.id
        path = datastore.get_image_uri(image_id)
        video = read_volume(path)
        if video.view == "unknown" and partner.record.view != "unknown":
            video = video.replace(view=partner.record.view)
        version = (model_version, os.path.getmtime(path))
        with self._lock:
            cached = self._clips.get(image_id)
        if cached is not None and cached[0] == version:
            return video, cached[1]
        label = (datastore.get_labels_by_image_id(image_id) or {}).get("final")
        if label:
            video = attach_labels(video, datastore.get_label_uri(image_id, "final"))
        if video.has_labels and len(video.annotated) == video.n_frames:
            clip = video_clip(video, video.labels)
        else:
            labels, seg = segment(video)
            clip = video_clip(video, labels, seg)
        self.remember(image_id, version, clip)
        return video, clip

    @staticmethod
    def _record(datastore: Any, image_id: str, view: str | None = None) -> VideoRecord:
        info = datastore.get_image_info(image_id) or {}
        known = view if view in ("2CH", "4CH") else info.get("view")
        return VideoRecord(id=image_id, view=known if known in ("2CH", "4CH") else view_from_name(image_id),
                           patient_id=_text(info.get("patient_id")), study_uid=_text(info.get("study_instance_uid")),
                           partner=_text(info.get(LINK_KEY)))


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, (str, int)) and str(value).strip() else None
