"""Echo cines straight from a PACS over DICOMweb; labels back as DICOM SEG, measurements as SR.

``monailabel start_server --app apps/echoforge --studies http://HOST/dicom-web`` serves every
ultrasound cine (Ultrasound Multi-frame Image with two or more frames) that QIDO-RS lists. Each
multi-frame instance is one video; its image id is its SOPInstanceUID (digits and dots only, so a
safe file name). Anything else is skipped with a logged reason, once: non-ultrasound series (CT,
MR, ...), still images, 3-D volumes, malformed UIDs, cines too large to decode.

* **First use** of a video (infer, label, active learning, download) retrieves the instance with
  WADO-RS (original transfer syntax), converts it exactly as the studies-folder ingest does (sector
  cropped, spacing from the ultrasound regions, frame time) and caches it; later uses read the cache.
* **Saving a final label** validates it as on a folder (:class:`~lib.datastore.EchoDatastore`),
  keeps it in the cache, and stores a DICOM SEG of the annotated frames in the cine's study with
  STOW-RS; when every frame is labelled, the LV measurements (ED/ES, EDV, ESV, EF, FAC, per beat
  and mean when given, GLS when given) go along as a TID 5200 Comprehensive SR. What was stored is
  recorded in the label info under ``pacs``; a store that failed is retried at the next listing.
* **Labels already in the PACS** (EchoForge SEGs, or any SEG coding the same structures) count as
  labels: the video is listed as labelled, and the label is fetched and re-loaded on first use
  (download, training).

The cache folder is ``$MONAI_LABEL_DATASTORE_CACHE_PATH`` (or ``$MONAI_LABEL_DICOMWEB_CACHE_PATH``),
by default ``~/.cache/monailabel/echoforge-dicomweb``, with one sub-folder per PACS URL. Nothing is
downloaded from the internet (MONAI Label's own DICOMweb datastore needs dcmqi tools from GitHub).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from echoforge.errors import EchoForgeError
from echoforge.io.dicom import US_SOP_CLASSES, _valid_uid, _view
from echoforge.io.dicom_seg import SEGMENTATION_STORAGE, read_dicom_seg, save_dicom, write_dicom_seg
from echoforge.io.dicom_sr import write_echo_sr
from echoforge.io.volume import read_label_volume, write_labels_like
from echoforge.report import measurements

from lib.datastore import EchoDatastore

logger = logging.getLogger(__name__)
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # else one INFO line per request

#: Decoded size above which a cine is not fetched (frames × rows × columns × samples × bytes).
MAX_CINE_BYTES = 1 << 30
MAX_FRAMES = 10_000
#: Seconds a PACS listing is reused before QIDO-RS is asked again.
LISTING_TTL_S = 30.0
TIMEOUT_S = (10.0, 120.0)  # connect, read
ORIGINALS = "originals"
# QIDO-RS attribute tags
_STUDY, _SERIES, _INSTANCE, _SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
_MODALITY, _FRAMES, _ROWS, _COLUMNS, _SAMPLES, _BITS = "00080060", "00280008", "00280010", "00280011", \
    "00280002", "00280100"
_PATIENT_ID, _STUDY_DATE, _DESCRIPTION = "00100020", "00080020", "0008103E"
_INSTANCE_FIELDS = (_FRAMES, _ROWS, _COLUMNS, _SAMPLES, _BITS, _SOP_CLASS)


@dataclass(frozen=True)
class Cine:
    """A multi-frame ultrasound instance listed by the PACS (every value checked)."""

    study: str
    series: str
    instance: str
    frames: int
    rows: int
    columns: int
    patient_id: str
    study_date: str
    description: str

    def info(self) -> dict[str, Any]:
        return {"StudyInstanceUID": self.study, "SeriesInstanceUID": self.series, "SOPInstanceUID": self.instance,
                "PatientID": self.patient_id, "StudyDate": self.study_date, "Modality": "US",
                "SeriesDescription": self.description, "frames": self.frames, "size": [self.rows, self.columns]}


class _TimeoutSession(requests.Session):
    """A session whose requests time out (the DICOMweb client sets none)."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # noqa: D102
        kwargs.setdefault("timeout", TIMEOUT_S)
        return super().request(*args, **kwargs)


def _value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _text(value: Any, limit: int = 64) -> str:
    """A PACS string made safe to log and store: printable, bounded."""
    text = "" if value is None else str(value.get("Alphabetic", "") if isinstance(value, dict) else value)
    return "".join(c for c in text if c.isprintable())[:limit]


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def cache_folder(url: str) -> Path:
    base = settings.MONAI_LABEL_DATASTORE_CACHE_PATH or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH
    root = Path(base.strip()).expanduser() if base and base.strip() else \
        Path.home() / ".cache" / "monailabel" / "echoforge-dicomweb"
    return root / hashlib.sha256(url.encode()).hexdigest()[:16]


def make_client(url: str) -> DICOMwebClient:
    session = _TimeoutSession()
    user = settings.MONAI_LABEL_DATASTORE_USERNAME or settings.MONAI_LABEL_DICOMWEB_USERNAME
    password = settings.MONAI_LABEL_DATASTORE_PASSWORD or settings.MONAI_LABEL_DICOMWEB_PASSWORD
    if user and password:
        session.auth = (user, password)
    return DICOMwebClient(url=url, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                          wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                          stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)


def series_filter() -> dict[str, Any]:
    """The QIDO-RS series filter from ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER``, except MONAI Label's
    default (Modality CT), which would hide every echo."""
    given = dict(settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER or {})
    return {} if given == {"Modality": "CT"} else given


class DicomWebDatastore(EchoDatastore):
    """The EchoForge datastore on a DICOMweb PACS, with a local cache (see the module docstring)."""

    def __init__(self, url: str, client: DICOMwebClient | None = None, cache: str | os.PathLike[str] | None = None,
                 read_only: bool = False, max_frames: int = 1000):
        self.url = url.rstrip("/")
        self.client = client or make_client(self.url)
        self.cache = Path(cache) if cache else cache_folder(self.url)
        self.cache.mkdir(parents=True, exist_ok=True)
        (self.cache / ORIGINALS).mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self._cines: dict[str, Cine] = {}
        self._remote_labels: dict[str, dict[str, str]] = {}  # cine → the newest SEG referencing it
        self._seen_segs: dict[str, str | None] = {}  # SEG instance → the cine it references (None: not ours)
        self._listed_at = -math.inf
        self._reported: set[str] = set()
        super().__init__(str(self.cache), auto_reload=False, read_only=read_only, max_frames=max_frames)
        logger.info(f"DICOMweb datastore on {self.url}; cache {self.cache}")

    def name(self) -> str:
        return self.url

    # ------------------------------------------------------------------ listing
    def _skip(self, key: str, reason: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            logger.info(f"DICOMweb: skipping {reason}")

    def _listing(self) -> dict[str, Cine]:
        """The PACS's cines (QIDO-RS), reused for :data:`LISTING_TTL_S`; the last one when the PACS is down."""
        with self._lock:
            if time.monotonic() - self._listed_at < LISTING_TTL_S:
                return self._cines
            try:
                self._cines = self._query_cines()
                self._remote_labels = self._query_segs()
            except (requests.RequestException, ValueError) as err:
                logger.warning(f"DICOMweb: the PACS at {self.url} did not answer the listing ({_text(err, 300)}); "
                               f"serving the {len(self._cines)} cines listed before")
            self._listed_at = time.monotonic()
            self._push_pending()
            return self._cines

    def _query_cines(self) -> dict[str, Cine]:
        cines: dict[str, Cine] = {}
        for series in self.client.search_for_series(search_filters=series_filter(), get_remaining=True):
            study_uid, series_uid = _text(_value(series, _STUDY)), _text(_value(series, _SERIES))
            modality = _text(_value(series, _MODALITY), 16).upper()
            if not (_valid_uid(study_uid) and _valid_uid(series_uid)):
                self._skip(f"series:{series_uid!r}", f"a series with malformed UIDs ({study_uid!r}, {series_uid!r})")
                continue
            if modality in ("SEG", "SR"):  # results, not videos
                continue
            if modality != "US":
                self._skip(f"series:{series_uid}", f"series {series_uid} (Modality {modality or 'missing'}): "
                                                    "not ultrasound")
                continue
            instances = self.client.search_for_instances(study_uid, series_uid, fields=list(_INSTANCE_FIELDS),
                                                         get_remaining=True)
            for item in instances:
                cine = self._checked_cine(item, study_uid, series_uid, series)
                if cine is not None:
                    cines[cine.instance] = cine
        return cines

    def _checked_cine(self, item: dict[str, Any], study_uid: str, series_uid: str,
                      series: dict[str, Any]) -> Cine | None:
        uid = _text(_value(item, _INSTANCE))
        sop_class = _text(_value(item, _SOP_CLASS))
        what = f"instance {uid!r} of series {series_uid}"
        if not _valid_uid(uid):
            self._skip(f"instance:{uid!r}", f"{what}: malformed SOP Instance UID")
            return None
        frames, rows, columns = (_int(_value(item, tag)) for tag in (_FRAMES, _ROWS, _COLUMNS))
        samples, bits = _int(_value(item, _SAMPLES)) or 1, _int(_value(item, _BITS)) or 8
        if sop_class not in US_SOP_CLASSES:
            self._skip(f"instance:{uid}", f"{what}: SOP class {sop_class or 'missing'} is not an ultrasound image")
        elif not frames or frames < 2:
            self._skip(f"instance:{uid}", f"{what}: a single frame, not a cine")
        elif not rows or not columns or frames > MAX_FRAMES or samples > 4 or bits > 16:
            self._skip(f"instance:{uid}", f"{what}: implausible image size ({frames} frames of {rows}×{columns})")
        elif frames * rows * columns * samples * math.ceil(bits / 8) > MAX_CINE_BYTES:
            self._skip(f"instance:{uid}", f"{what}: {frames} frames of {rows}×{columns} exceed the "
                                          f"{MAX_CINE_BYTES >> 20} MiB decoding limit")
        else:
            return Cine(study_uid, series_uid, uid, frames, rows, columns,
                        _text(_value(item, _PATIENT_ID) or _value(series, _PATIENT_ID)),
                        _text(_value(series, _STUDY_DATE), 8), _text(_value(series, _DESCRIPTION)))
        return None

    def _query_segs(self) -> dict[str, dict[str, str]]:
        """The newest SEG instance referencing each listed cine (WADO-RS metadata, each SEG read once)."""
        newest: dict[str, dict[str, str]] = {}
        for item in self.client.search_for_instances(search_filters={"SOPClassUID": SEGMENTATION_STORAGE},
                                                     get_remaining=True):
            seg_uid, study_uid, series_uid = (_text(_value(item, tag)) for tag in (_INSTANCE, _STUDY, _SERIES))
            if not all(_valid_uid(u) for u in (seg_uid, study_uid, series_uid)):
                continue
            if seg_uid not in self._seen_segs:
                self._seen_segs[seg_uid] = self._seg_source(study_uid, series_uid, seg_uid)
            source = self._seen_segs[seg_uid]
            if source is None or source not in self._cines:
                continue
            entry = {"study": study_uid, "series": series_uid, "instance": seg_uid,
                     "when": _text(_value(item, "00080023"), 8) + _text(_value(item, "00080033"), 16)}
            if source not in newest or entry["when"] > newest[source]["when"]:
                newest[source] = entry
        return newest

    def _seg_source(self, study_uid: str, series_uid: str, seg_uid: str) -> str | None:
        try:
            meta = Dataset.from_json(self.client.retrieve_instance_metadata(study_uid, series_uid, seg_uid))
            reference = meta.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
            source = str(reference.ReferencedSOPInstanceUID)
        except (requests.RequestException, AttributeError, IndexError, KeyError, TypeError, ValueError):
            self._skip(f"seg:{seg_uid}", f"SEG {seg_uid}: it does not say which image it segments")
            return None
        return source if _valid_uid(source) else None

    # ------------------------------------------------------------------ images
    def list_images(self) -> list[str]:
        return sorted(set(self._listing()) | set(super().list_images()))

    def get_image_uri(self, image_id: str) -> str:
        """The cached video (converted on first use), or ``""`` for an id the PACS does not list."""
        cached = super().get_image_uri(image_id)
        if cached and os.path.exists(cached):
            return cached
        cine = self._listing().get(image_id)
        if cine is None:
            return ""
        with self._lock:
            cached = super().get_image_uri(image_id)
            return cached if cached and os.path.exists(cached) else self._fetch(cine)

    def _fetch(self, cine: Cine) -> str:
        """Retrieve, check and convert one cine into the cache (4xx if the PACS sends something else)."""
        started = time.perf_counter()
        try:
            ds = self.client.retrieve_instance(cine.study, cine.series, cine.instance,
                                               media_types=(("application/dicom", "*"),))
        except Exception as err:  # a network failure or bytes that do not parse: either way the PACS failed
            raise HTTPException(status_code=502, detail=f"the PACS did not send {cine.instance}: "
                                                        f"{_text(err, 300)}") from None
        if str(ds.get("SOPInstanceUID", "")) != cine.instance or int(ds.get("NumberOfFrames", 0) or 0) != cine.frames:
            raise HTTPException(status_code=502, detail=f"the PACS sent another object than {cine.instance} "
                                                        "(identity or frame count differ from its listing)")
        original = self.cache / ORIGINALS / f"{cine.instance}.dcm"
        save_dicom(ds, original)
        try:
            EchoDatastore.add_image(self, cine.instance, str(original), cine.info())
        except HTTPException:
            original.unlink(missing_ok=True)
            self._cines.pop(cine.instance, None)
            self._skip(f"instance:{cine.instance}", f"instance {cine.instance}: it cannot be read as an echo video")
            raise
        self.update_image_info(cine.instance, {"converted_from": f"dicomweb:{ORIGINALS}/{original.name}"})
        logger.info(f"DICOMweb: cached {cine.instance} ({cine.frames} frames) in "
                    f"{time.perf_counter() - started:.1f} s")
        return super().get_image_uri(cine.instance)

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        info = super().get_image_info(image_id)
        cine = self._cines.get(image_id)
        return info if info or cine is None else {**cine.info(), "cached": False}

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        raise HTTPException(status_code=405, detail=f"this server reads its videos from the PACS at {self.url}; "
                                                    "store new cines in the PACS (STOW-RS)")

    def remove_image(self, image_id: str) -> None:
        raise HTTPException(status_code=405, detail="videos served from a PACS are not deleted from here")

    def json(self) -> dict[str, Any]:
        out = super().json()
        objects = out.setdefault("objects", {})
        for uid, cine in self._listing().items():
            labels = {DefaultLabelTag.FINAL: {"info": {"dicom_seg": self._remote_labels[uid]}}} \
                if uid in self._remote_labels else {}
            objects.setdefault(uid, {"image": {"ext": ".nii.gz", "info": {**cine.info(), "cached": False}},
                                     "labels": labels})
        return out

    # ------------------------------------------------------------------ labels
    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        listing = self._listing()
        return sorted(set(super().get_labeled_images()) | (set(self._remote_labels) & set(listing)))

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return sorted(set(self.list_images()) - set(self.get_labeled_images()))

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        uri = super().get_label_uri(label_id, label_tag)
        if not uri and label_tag == DefaultLabelTag.FINAL and label_id in self._remote_labels:
            self._pull_label(label_id)
            uri = super().get_label_uri(label_id, label_tag)
        return uri

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        for image_id in self.get_labeled_images():
            if not super().get_label_uri(image_id, DefaultLabelTag.FINAL):
                self._pull_label(image_id)
        return super().datalist(full_path)

    def _pull_label(self, image_id: str) -> None:
        """Re-load the newest SEG of ``image_id`` from the PACS as its final label (validated as any label)."""
        entry = self._remote_labels[image_id]
        image = self.get_image_uri(image_id)
        info = self.get_image_info(image_id)
        try:
            seg = self.client.retrieve_instance(entry["study"], entry["series"], entry["instance"],
                                                media_types=(("application/dicom", "*"),))
            size = info.get("original_size")
            loaded = read_dicom_seg(seg, int(info.get("frames") or read_label_volume(image).labels.shape[0]),
                                    info.get("crop_box"), tuple(size) if size else None)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{image_id}.nii.gz"
                write_labels_like(loaded.labels, image, path, annotated=loaded.annotated)
                EchoDatastore.save_label(self, image_id, str(path), DefaultLabelTag.FINAL,
                                         {"annotated_frames": list(loaded.annotated),
                                          "pacs": {"seg": {"stored": True, "from_pacs": True, **entry}}})
        except (requests.RequestException, EchoForgeError, HTTPException) as err:
            logger.warning(f"DICOMweb: the SEG {entry['instance']} of {image_id} cannot be loaded: "
                           f"{_text(getattr(err, 'detail', err), 300)}")
            return
        logger.info(f"DICOMweb: label of {image_id} re-loaded from SEG {entry['instance']} "
                    f"({len(loaded.annotated)} annotated frames)")

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Validate and keep the label as on a folder; a final label also goes to the PACS as SEG (+ SR)."""
        if not self.get_image_uri(image_id):
            raise HTTPException(status_code=404, detail=f"unknown image id {image_id!r}")
        label_id = super().save_label(image_id, label_filename, label_tag, label_info)
        if label_tag == DefaultLabelTag.FINAL:
            self._push(image_id)
        return label_id

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise HTTPException(status_code=405, detail="labels are kept in the PACS as DICOM SEG and not deleted from here")

    def _push(self, image_id: str) -> dict[str, Any]:
        """Store the final label of ``image_id`` as SEG (and SR when every frame is labelled)."""
        info = self.get_image_info(image_id)
        label_info = self.get_label_info(image_id, DefaultLabelTag.FINAL)
        volume = read_label_volume(super().get_label_uri(image_id, DefaultLabelTag.FINAL))
        source = pydicom.dcmread(self.cache / ORIGINALS / f"{image_id}.dcm", stop_before_pixels=True)
        annotated = [int(f) for f in label_info.get("annotated_frames") or []]
        when = datetime.datetime.now(datetime.timezone.utc)
        result: dict[str, Any] = {}
        try:
            seg = write_dicom_seg(volume.labels, source, annotated, info.get("crop_box"), when=when)
            self.client.store_instances([seg])
            result["seg"] = {"stored": True, "instance": str(seg.SOPInstanceUID),
                             "series": str(seg.SeriesInstanceUID), "frames": annotated}
            if len(annotated) == volume.labels.shape[0]:
                m = measurements(volume.labels, volume.spacing, volume.frame_time_ms)
                sr = write_echo_sr(m, source, view=_view(source), when=when)
                self.client.store_instances([sr])
                result["sr"] = {"stored": True, "instance": str(sr.SOPInstanceUID), "ef": m.get("ef")}
            else:
                result["sr"] = {"stored": False, "reason": f"the label covers {len(annotated)} of "
                                                           f"{volume.labels.shape[0]} frames; measurements need all"}
        except (requests.RequestException, EchoForgeError) as err:
            result.setdefault("seg", {"stored": False, "error": _text(err, 300)})
            logger.error(f"DICOMweb: the label of {image_id} is saved here but the PACS did not take it "
                         f"({_text(err, 300)}); retried at the next listing")
        self.update_label_info(image_id, DefaultLabelTag.FINAL, {**label_info, "pacs": result})
        if result["seg"]["stored"]:
            logger.info(f"DICOMweb: label of {image_id} stored in the PACS as SEG {result['seg']['instance']}"
                        + (f" and SR {result['sr']['instance']}" if result.get("sr", {}).get("stored") else ""))
        return result

    def _push_pending(self) -> None:
        for image_id in super().get_labeled_images():
            pacs = self.get_label_info(image_id, DefaultLabelTag.FINAL).get("pacs") or {}
            if pacs and not pacs.get("seg", {}).get("stored"):
                self._push(image_id)

