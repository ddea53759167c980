"""The studies folder: NIfTI/NRRD videos, DICOM cines and AVIs converted on ingest, labels checked.

* **Ingest**: a DICOM cine (``.dcm``/``.dicom``) or a movie (``.avi``/``.mp4``) dropped into the studies
  folder is converted to ``<name>.nii.gz`` (H×W×T; DICOM sector detected and cropped, spacing and
  frame time kept in the header); the original moves to ``originals/`` and the conversion is
  recorded in the image info (source, spacing, frame time, crop box). A file that is not an echo
  video (a CT, a text file) stays where it is and is skipped with a logged reason, once.
* **Upload** (``PUT /datastore/image``): the same conversion for an uploaded DICOM/AVI; an uploaded
  volume is read and rewritten as ``.nii.gz``; an unreadable file is refused with a 4xx.
* **Save label**: the label must have the video's shape and values 0-3, else the save is refused
  with a 4xx and nothing changes. Which frames were annotated is recorded in the label info —
  ``annotated_frames`` from the request, or, for labels from MONAI Label's stock Slicer plugin
  (which writes 0 in frames nobody drew on), the frames holding foreground.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from monailabel.datastore.local import LocalDatastore

from echoforge.errors import DatasetLayoutError, EchoForgeError, UnknownFrameError
from echoforge.io import load_video
from echoforge.io.atomic import compound_suffix, write_json_atomic
from echoforge.io.volume import read_label_volume, write_volume
from echoforge.video import EchoVideo, validate_labels

from lib.http import http_errors

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = ("*.nii.gz", "*.nii", "*.nrrd")
INGEST_PATTERNS = ("*.dcm", "*.dicom", "*.avi", "*.mp4")
ORIGINALS = "originals"
SKIPPED_LOG = ".echoforge_skipped.json"


def conversion_info(video: EchoVideo, source: str) -> dict[str, Any]:
    """What the image info records about a converted video."""
    return {"converted_from": source, "spacing_mm": list(video.spacing) if video.spacing else None,
            "frame_time_ms": video.frame_time_ms, "frames": video.n_frames, "crop_box": video.meta.get("crop_box"),
            "original_size": video.meta.get("original_size"), "view": video.view,
            # pairs the 2CH and 4CH of one study for biplane measurements (lib/biplane.py)
            "patient_id": video.meta.get("patient_id") or None,
            "study_instance_uid": video.meta.get("study_instance_uid") or None}


def parse_frames(value: Any) -> list[int] | None:
    """``annotated_frames`` as sent: a list, or a string like ``"0, 9"``; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        items = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    else:
        items = list(value)
    try:
        return [int(v) for v in items]
    except (TypeError, ValueError):
        raise UnknownFrameError(f"annotated_frames must be frame numbers, got {value!r}") from None


class EchoDatastore(LocalDatastore):
    """:class:`LocalDatastore` that ingests echo cines and validates labels (see the module docstring)."""

    def __init__(self, studies: str, auto_reload: bool = False, read_only: bool = False):
        self._ingest_lock = threading.Lock()
        self._studies = Path(studies)
        super().__init__(studies, extensions=list(IMAGE_PATTERNS + INGEST_PATTERNS), auto_reload=auto_reload,
                         read_only=read_only)

    # ------------------------------------------------------------------ ingest
    def _list_files(self, path, patterns):  # noqa: ANN001, ANN202 (LocalDatastore's signature)
        # ingest formats are watched (so new files trigger a refresh) but never listed as images
        return super()._list_files(path, [p for p in patterns if p not in INGEST_PATTERNS])

    def _reconcile_datastore(self) -> None:
        converted = self.ingest()
        super()._reconcile_datastore()
        for image_id, info in converted.items():
            if image_id in self._datastore.objects:
                self.update_image_info(image_id, info)

    def ingest(self) -> dict[str, dict[str, Any]]:
        """Convert new DICOM/AVI files; returns image id → conversion info."""
        converted: dict[str, dict[str, Any]] = {}
        with self._ingest_lock:
            skipped = self._skipped()
            for path in sorted(p for pattern in INGEST_PATTERNS for p in self._studies.glob(pattern)):
                key = f"{path.name}:{path.stat().st_size}:{int(path.stat().st_mtime)}"
                if key in skipped:
                    continue
                try:
                    video = load_video(path)
                except EchoForgeError as err:
                    logger.warning(f"Skipping {path.name}: {err.problem}")
                    skipped[key] = err.problem
                    continue
                image_id = path.name.split(".")[0]
                if (self._studies / f"{image_id}.nii.gz").exists():
                    image_id = f"{image_id}_{path.suffix.lstrip('.')}"
                write_volume(video, self._studies / f"{image_id}.nii.gz")
                originals = self._studies / ORIGINALS
                originals.mkdir(exist_ok=True)
                shutil.move(str(path), originals / path.name)
                converted[image_id] = conversion_info(video, f"{ORIGINALS}/{path.name}")
                logger.info(f"Converted {path.name} → {image_id}.nii.gz ({video.n_frames} frames)")
            if skipped:
                write_json_atomic(self._studies / SKIPPED_LOG, skipped)
        return converted

    def _skipped(self) -> dict[str, str]:
        path = self._studies / SKIPPED_LOG
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            return {}

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """An uploaded video: DICOM/AVI converted as on ingest, volumes checked; 4xx for anything else.

        ``spacing_mm`` in the upload's params overrides the file's calibration: a (row, col) pair in mm,
        or ``null`` for a video whose pixel size is unknown (its header's nominal spacing is not trusted).
        """
        info = dict(image_info or {})
        with http_errors():
            video = load_video(image_filename)
            if "spacing_mm" in info:
                given = info["spacing_mm"]
                video = video.replace(spacing=tuple(float(v) for v in given) if given else None)
        with tempfile.TemporaryDirectory() as tmp:
            converted = Path(tmp) / f"{image_id or 'upload'}.nii.gz"
            write_volume(video, converted)
            # the upload arrives under a temporary name: only its format is worth recording
            info.update(conversion_info(video, f"upload{compound_suffix(image_filename)}"))
            return super().add_image(image_id, str(converted), info)

    # ------------------------------------------------------------------ labels
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Validate against the video, record the annotated frames, then save (nothing changes on error)."""
        with http_errors():
            label_info = dict(label_info or {})
            image_uri = self.get_image_uri(image_id)
            if not image_uri:
                raise DatasetLayoutError(f"unknown image id {image_id!r}")
            shape = read_label_volume(image_uri).labels.shape  # the video's T×H×W, without converting its frames
            volume = read_label_volume(label_filename)
            requested = parse_frames(label_info.get("annotated_frames"))
            chosen = requested if requested is not None else volume.annotated
            _, annotated = validate_labels(volume.labels, shape, chosen or (),
                                           os.path.basename(label_filename))
        label_info["annotated_frames"] = list(annotated)
        label_info["annotated_source"] = "request" if requested is not None else (
            "label header" if volume.annotated else "frames with foreground")
        return super().save_label(image_id, label_filename, label_tag, label_info)
