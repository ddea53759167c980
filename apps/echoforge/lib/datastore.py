"""The studies folder: NIfTI/NRRD videos, DICOM cines and AVIs converted on ingest, labels checked.

* **Names**: every image id and label tag a client sends is checked by :mod:`lib.names` (422 when
  it is not a plain name) and every path built from one must stay inside the studies folder; an
  unknown id or tag is 404 for reading, writing and deleting alike. Files whose names are not
  valid ids are not served (logged once: rename them).
* **Ingest**: a DICOM cine (``.dcm``/``.dicom``) or a movie (``.avi``/``.mp4``) dropped into the studies
  folder is converted to ``<name>.nii.gz`` (H×W×T; DICOM sector detected and cropped, spacing and
  frame time kept in the header); the original moves to ``originals/`` and the conversion is
  recorded in the image info (source, spacing, frame time, crop box). A file that is not an echo
  video (a CT, a text file) stays where it is and is skipped with a logged reason, once.
* **Upload** (``PUT /datastore/image``): read from the request's own temporary folder only — a
  header that names a data file (MetaImage ``ElementDataFile``, NRRD ``data file``) is refused — then
  converted like an ingested file; an unreadable file or one of more than ``max_frames`` frames is
  refused with a 4xx. An id that already has labels is not overwritten (409).
* **Save label**: the label must have the video's shape and values 0-3, else the save is refused
  with a 4xx and nothing changes. Which frames were annotated — ``annotated_frames`` from the
  request (distinct frame numbers inside the video), or, for labels from MONAI Label's stock Slicer
  plugin (which writes 0 in frames nobody drew on), the frames holding foreground — is written into
  the stored label file's own header and into the label info. The stored file is the checked labels
  rewritten on the video's geometry. A model's prediction kept under another tag (``original``)
  has no annotated frames.
* **Durability**: every file (videos, labels, ``datastore_v2.json``) is written to a temporary file
  in its folder, synced and renamed, so a crash or a full disk (answered 507) leaves the previous
  version intact. On start, empty or unreadable videos and labels move to ``quarantine/`` with the
  reason logged and recorded in ``quarantine/quarantine.json``, and the label info is made to agree
  with the label files again (the file's header wins).
* **Threads**: requests, the file watcher (``MONAI_LABEL_DATASTORE_AUTO_RELOAD``) and start-up
  reconciliation all change the in-memory listing; one re-entrant lock serialises every change and
  every listing in the process (the file lock alone orders processes, not threads), so a delete
  racing the watcher's refresh is never a 500.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from echoforge.errors import EchoForgeError, InvalidVideoError, UnreadableFileError
from echoforge.io import detached_data_file, load_video
from echoforge.io.atomic import compound_suffix, remove_partial_files, write_json_atomic, write_text_atomic
from echoforge.io.volume import read_label_volume, write_labels_like, write_volume
from echoforge.video import EchoVideo, validate_labels

from lib.http import http_errors
from lib.names import check_name, inside, is_valid_name, safe_name
from lib.params import check_finite, frames, invalid, number

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = ("*.nii.gz", "*.nii", "*.nrrd")
INGEST_PATTERNS = ("*.dcm", "*.dicom", "*.avi", "*.mp4")
LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd")
ORIGINALS = "originals"
QUARANTINE = "quarantine"
SKIPPED_LOG = ".echoforge_skipped.json"


def conversion_info(video: EchoVideo, source: str) -> dict[str, Any]:
    """What the image info records about a converted video."""
    return {"converted_from": source, "spacing_mm": list(video.spacing) if video.spacing else None,
            "frame_time_ms": video.frame_time_ms, "frames": video.n_frames, "crop_box": video.meta.get("crop_box"),
            "original_size": video.meta.get("original_size"), "view": video.view,
            # pairs the 2CH and 4CH of one study for biplane measurements (lib/biplane.py)
            "patient_id": video.meta.get("patient_id") or None,
            "study_instance_uid": video.meta.get("study_instance_uid") or None}


def check_frame_count(video: EchoVideo, max_frames: int, what: str) -> None:
    if video.n_frames > max_frames:
        raise invalid(what, f"has {video.n_frames} frames, more than the {max_frames} this server takes "
                            "(--conf max_frames)")


def probe_volume(path: Path) -> None:
    """Read a volume's header (not its frames): raises when the file is empty or not a volume."""
    if path.stat().st_size == 0:
        raise UnreadableFileError("the file is empty", path)
    if compound_suffix(path) in (".nii", ".nii.gz"):
        import nibabel as nib

        try:
            nib.load(str(path)).header.get_data_shape()
        except Exception as err:  # nibabel raises many kinds for a corrupt header
            raise UnreadableFileError(f"cannot read as NIfTI ({err})", path) from None
    elif detached_data_file(path) is not None:
        raise UnreadableFileError("its data are in another file (detached header)", path)


def _serialised(method):  # noqa: ANN001, ANN202
    """Run a datastore method under the instance's listing lock (module docstring: Threads)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        with self._state_lock:
            return method(self, *args, **kwargs)
    return locked


class EchoDatastore(LocalDatastore):
    """:class:`LocalDatastore` that checks names, ingests echo cines and validates labels (module docstring)."""

    def __init__(self, studies: str, auto_reload: bool = False, read_only: bool = False, max_frames: int = 1000):
        self._ingest_lock = threading.Lock()
        self._state_lock = threading.RLock()  # taken before the file lock, never after it
        self._studies = Path(studies).resolve()
        self._max_frames = max_frames
        self._ignored_names: set[str] = set()
        self._started = read_only  # the start-up checks (quarantine, clean-up) only where files may be changed
        super().__init__(str(self._studies), extensions=list(IMAGE_PATTERNS + INGEST_PATTERNS),
                         auto_reload=auto_reload, read_only=read_only)

    # every listing and the watcher's refresh see one consistent state (module docstring: Threads)
    refresh = _serialised(LocalDatastore.refresh)
    datalist = _serialised(LocalDatastore.datalist)
    list_images = _serialised(LocalDatastore.list_images)
    get_labeled_images = _serialised(LocalDatastore.get_labeled_images)
    get_unlabeled_images = _serialised(LocalDatastore.get_unlabeled_images)
    status = _serialised(LocalDatastore.status)
    json = _serialised(LocalDatastore.json)

    # ------------------------------------------------------------------ the datastore file
    @_serialised
    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        try:
            super()._init_from_datastore_file(throw_exception=True)
        except ValueError as err:
            if not throw_exception:  # a reload of a file someone is editing: keep what is loaded
                logger.error(f"Cannot reload {self._datastore_config_path}: {err}")
                return
            self._quarantine(Path(self._datastore_config_path), f"unreadable datastore file ({err}); "
                             "rebuilt from the files in the studies folder")
            super()._init_from_datastore_file(throw_exception=True)
        for image_id in [i for i in self._datastore.objects if not is_valid_name(i)]:
            self._ignore_name(image_id)
            del self._datastore.objects[image_id]

    def _update_datastore_file(self, lock: bool = True) -> None:
        def write() -> None:
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            write_text_atomic(self._datastore_config_path, text)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()

    # ------------------------------------------------------------------ listing, start-up checks, ingest
    def _list_files(self, path, patterns):  # noqa: ANN001, ANN202 (LocalDatastore's signature)
        # ingest formats are watched (so new files trigger a refresh) but never listed as images;
        # hidden files (our own temporary files) and names that are not valid ids are not listed either
        listed = super()._list_files(path, [p for p in patterns if p not in INGEST_PATTERNS])
        served = {}
        for name, file in listed.items():
            if name.startswith("."):
                continue
            if not is_valid_name(self._to_id(name)[0]):
                self._ignore_name(name)
                continue
            served[name] = file
        return served

    def _ignore_name(self, name: str) -> None:
        if name not in self._ignored_names:
            self._ignored_names.add(name)
            logger.warning(f"Not serving {name!r}: an id may only hold letters, digits, '.', '_' and '-'; rename it")

    def _reconcile_datastore(self) -> None:
        first = not self._started
        self._started = True
        headers = self._quarantine_unreadable() if first else {}
        converted = self.ingest()
        super()._reconcile_datastore()
        for image_id, info in converted.items():
            if image_id in self._datastore.objects:
                self.update_image_info(image_id, info)
        if headers:
            self._agree_with_label_files(headers)

    def _quarantine_unreadable(self) -> dict[tuple[str, str], tuple[int, ...] | None]:
        """Move empty or unreadable videos and labels aside; returns each good label's header frames.

        Temporary files of writes that never finished (the server was killed meanwhile) are deleted.
        """
        labels_root = Path(self._datastore.label_path(None))
        for folder in [self._studies, *(p for p in labels_root.iterdir() if p.is_dir())]:
            for path in remove_partial_files(folder):
                logger.warning(f"Removed {path.relative_to(self._studies)}: a write that never finished")
        for name in self._list_files(self._datastore.image_path(), list(IMAGE_PATTERNS)):
            path = Path(self._datastore.image_path()) / name
            try:
                probe_volume(path)
            except EchoForgeError as err:
                self._quarantine(path, err.problem)
        headers: dict[tuple[str, str], tuple[int, ...] | None] = {}
        for tag_dir in sorted(p for p in labels_root.iterdir() if p.is_dir()):
            for name in self._list_files(str(tag_dir), list(IMAGE_PATTERNS)):
                path = tag_dir / name
                try:
                    if path.stat().st_size == 0:
                        raise UnreadableFileError("the file is empty", path)
                    headers[(self._to_id(name)[0], tag_dir.name)] = read_label_volume(path).annotated
                except EchoForgeError as err:
                    self._quarantine(path, err.problem)
        return headers

    def _quarantine(self, path: Path, reason: str) -> None:
        folder = self._studies / QUARANTINE / path.parent.relative_to(self._studies)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        if target.exists():
            target = folder / f"{time.strftime('%Y%m%d_%H%M%S')}_{path.name}"
        os.replace(path, target)
        log_path = self._studies / QUARANTINE / "quarantine.json"
        try:
            entries = json.loads(log_path.read_text()) if log_path.exists() else []
        except ValueError:
            entries = []
        entries.append({"file": str(path.relative_to(self._studies)), "moved_to": str(target.relative_to(self._studies)),
                        "reason": reason, "ts": int(time.time())})
        write_json_atomic(log_path, entries)
        logger.error(f"Quarantined {path.relative_to(self._studies)}: {reason} (moved to {target})")

    def _agree_with_label_files(self, headers: dict[tuple[str, str], tuple[int, ...] | None]) -> None:
        """After a crash between a label file and the datastore file, the label file's frames win."""
        changed = False
        for (image_id, tag), annotated in headers.items():
            label = self._datastore.label(image_id, tag)
            if label is None or not annotated or label.info.get("annotated_frames") == list(annotated):
                continue
            logger.warning(f"Label {tag}/{image_id}: annotated frames {label.info.get('annotated_frames')} in the "
                           f"datastore file, {list(annotated)} in the label file; keeping the label file's")
            label.info["annotated_frames"] = list(annotated)
            label.info.setdefault("annotated_source", "label header")
            changed = True
        if changed:
            self._update_datastore_file()

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
                    if video.n_frames > self._max_frames:
                        raise InvalidVideoError(f"{video.n_frames} frames, more than --conf max_frames "
                                                f"{self._max_frames}", path)
                except EchoForgeError as err:
                    logger.warning(f"Skipping {path.name}: {err.problem}")
                    skipped[key] = err.problem
                    continue
                image_id = safe_name(path.name.split(".")[0])
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

    # ------------------------------------------------------------------ where things are
    def _image(self, image_id: str) -> ImageLabelModel:
        obj = self._datastore.objects.get(check_name(image_id, "image id"))
        if obj is None:
            raise HTTPException(status_code=404, detail=f"unknown image id {image_id!r}")
        return obj

    def _image_path(self, image_id: str, ext: str) -> Path:
        return inside(self._studies, self._filename(image_id, ext))

    def _label_path(self, image_id: str, tag: str, ext: str) -> Path:
        return inside(self._studies, self._datastore.labels_dir, check_name(tag, "label tag"),
                      self._filename(image_id, ext))

    def get_image_uri(self, image_id: str) -> str:
        obj = self._datastore.objects.get(check_name(image_id, "image id"))
        return str(self._image_path(image_id, obj.image.ext)) if obj else ""

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        check_name(label_id, "image id")
        label_tag = check_name(label_tag, "label tag")
        label = self._datastore.label(label_id, label_tag)
        return str(self._label_path(label_id, label_tag, label.ext)) if label else ""

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        check_name(image_id, "image id")
        return super().get_image_info(image_id)

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        check_name(label_id, "image id")
        return super().get_label_info(label_id, check_name(label_tag, "label tag"))

    def get_dataset_archive(self, limit_cases: int | None) -> str:
        if not self.datalist():
            raise HTTPException(status_code=404, detail="no video has a final label yet: there is nothing to archive")
        return super().get_dataset_archive(limit_cases)

    # ------------------------------------------------------------------ images
    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """An uploaded video: DICOM/AVI converted as on ingest, volumes checked; 4xx for anything else.

        ``spacing_mm`` in the upload's params overrides the file's calibration: a (row, col) pair in mm,
        or ``null`` for a video whose pixel size is unknown (its header's nominal spacing is not trusted).
        """
        check_name(image_id, "image id")
        info = dict(image_info or {})
        check_finite(info, "params")
        existing = self._datastore.objects.get(image_id)
        if existing is not None and existing.labels:
            raise HTTPException(status_code=409, detail=(
                f"image id {image_id!r} already has labels ({', '.join(existing.labels)}); it is not replaced: "
                "upload under another id, or delete it first"))
        with http_errors():
            if detached_data_file(image_filename) is not None:
                raise HTTPException(status_code=422, detail=(
                    "file: a header whose data are in another file (MetaImage ElementDataFile, NRRD data file) "
                    "cannot be uploaded; send one self-contained file (.nii.gz, .nrrd, DICOM, AVI)"))
            video = load_video(image_filename)
            check_frame_count(video, self._max_frames, "file")
            if "spacing_mm" in info:
                video = video.replace(spacing=_spacing(info["spacing_mm"]))
            # the upload arrives under a temporary name: only its format is worth recording
            info.update(conversion_info(video, f"upload{compound_suffix(image_filename)}"))
            ext = ".nii.gz"
            with self._state_lock, FileLock(self._lock_file):
                write_volume(video, self._image_path(image_id, ext))
                if existing is not None and existing.image.ext != ext:
                    self._image_path(image_id, existing.image.ext).unlink(missing_ok=True)
                info.update(ts=int(time.time()), name=self._filename(image_id, ext))
                self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
                self._update_datastore_file(lock=False)
        logger.info(f"Added image {image_id} ({video.n_frames} frames)")
        return image_id

    @_serialised
    def remove_image(self, image_id: str) -> None:
        obj = self._image(image_id)
        for tag in list(obj.labels):
            self.remove_label(image_id, tag)
        self._image_path(image_id, obj.image.ext).unlink(missing_ok=True)
        self.refresh()

    @_serialised
    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        obj = self._image(image_id)
        if not isinstance(info, dict):
            raise invalid("info", "must be a JSON object")
        check_finite(info, "info")
        obj.image.info.update(info)
        self._update_datastore_file()

    # ------------------------------------------------------------------ labels
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Validate against the video, record the annotated frames, then save (nothing changes on error)."""
        obj = self._image(image_id)
        label_tag = check_name(label_tag, "label tag")
        label_info = dict(label_info or {})
        check_finite(label_info, "params")
        # a model's prediction (MONAI Label's batch pre-annotation) is kept, but no frame of it counts as drawn
        prediction = label_tag != DefaultLabelTag.FINAL.value and "model" in label_info
        image_uri = self.get_image_uri(image_id)
        with http_errors():
            if detached_data_file(label_filename) is not None:
                raise HTTPException(status_code=422, detail="label: a detached header (its data in another file) "
                                                            "cannot be saved; send one .nii.gz or .nrrd file")
            shape = read_label_volume(image_uri).labels.shape  # the video's T×H×W, without converting its frames
            volume = read_label_volume(label_filename)
            requested = frames(label_info.get("annotated_frames"), n_frames=shape[0])
            chosen = requested if requested is not None else volume.annotated
            labels, annotated = validate_labels(volume.labels, shape, () if prediction else chosen or (),
                                                os.path.basename(label_filename), require_foreground=not prediction)
            if prediction:
                annotated = ()
            label_info["annotated_frames"] = list(annotated)
            label_info["annotated_source"] = "model prediction" if prediction else "request" if requested is not None \
                else "label header" if volume.annotated else "frames with foreground"
            ext = compound_suffix(label_filename)
            ext = ext if ext in LABEL_EXTENSIONS else ".nii.gz"
            with self._state_lock, FileLock(self._lock_file):
                self._write_label(image_id, label_tag, ext, labels, annotated, image_uri)
                previous = obj.labels.get(label_tag)
                if previous is not None and previous.ext != ext:
                    self._label_path(image_id, label_tag, previous.ext).unlink(missing_ok=True)
                label_info.update(ts=int(time.time()), name=self._filename(image_id, ext))
                obj.labels[label_tag] = DataModel(info=label_info, ext=ext)
                self._update_datastore_file(lock=False)
        logger.info(f"Saved label {label_tag}/{image_id}: annotated frames {list(annotated)}")
        return image_id

    def _write_label(self, image_id: str, tag: str, ext: str, labels: Any, annotated: tuple[int, ...],
                     image_uri: str) -> None:
        """The checked labels on the video's geometry, their annotated frames in the header (atomically)."""
        path = self._label_path(image_id, tag, ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_labels_like(labels, image_uri, path, annotated=annotated)

    @_serialised
    def remove_label(self, label_id: str, label_tag: str) -> None:
        label_tag = check_name(label_tag, "label tag")
        label = self._image(label_id).labels.get(label_tag)
        if label is None:
            raise HTTPException(status_code=404, detail=f"image {label_id!r} has no {label_tag!r} label")
        self._label_path(label_id, label_tag, label.ext).unlink(missing_ok=True)
        self.refresh()

    @_serialised
    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        """Update a label's info; new ``annotated_frames`` are checked against the label and written into it."""
        obj = self._image(label_id)
        label_tag = check_name(label_tag, "label tag")
        label = obj.labels.get(label_tag)
        if label is None:
            raise HTTPException(status_code=404, detail=f"image {label_id!r} has no {label_tag!r} label")
        if not isinstance(info, dict):
            raise invalid("info", "must be a JSON object")
        info = dict(info)
        check_finite(info, "info")
        with http_errors(), FileLock(self._lock_file):
            if "annotated_frames" in info:
                image_uri = self.get_image_uri(label_id)
                volume = read_label_volume(self.get_label_uri(label_id, label_tag))
                requested = frames(info["annotated_frames"], n_frames=volume.labels.shape[0])
                if not requested:
                    raise invalid("annotated_frames", "must list at least one frame")
                labels, annotated = validate_labels(volume.labels, read_label_volume(image_uri).labels.shape,
                                                    requested, f"{label_tag}/{label_id}")
                self._write_label(label_id, label_tag, label.ext, labels, annotated, image_uri)
                info.update(annotated_frames=list(annotated), annotated_source="request")
            label.info.update(info)
            self._update_datastore_file(lock=False)


def _spacing(value: Any) -> tuple[float, float] | None:
    """``spacing_mm`` as sent: ``null`` (unknown) or a (row, col) pair of positive sizes in mm."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise invalid("spacing_mm", f"must be [row, column] in mm or null, got {value!r}")
    return tuple(number({"spacing_mm": v}, "spacing_mm", 0.0, 1e-6, 1e3) for v in value)  # type: ignore[return-value]

