"""The clinician's loop for one video, without Slicer: annotate → segment the rest → measure → submit.

:class:`VideoSession` ties a video to its annotations, its ED/ES marks and the last segmentation;
the Slicer module keeps one per loaded video and its widgets only call these methods::

    client = EchoForgeClient(url)
    sample = client.next_sample("uncertainty")
    session = VideoSession(sample["id"], client.download_image(sample["id"]), suggested=sample)
    session.annotations.set_frame(0, drawn_ed)          # or .update(labels) after Slicer edits
    session.annotations.set_frame(9, drawn_es)
    session.segment_the_rest(client)                    # every frame; drawn ones come back exactly
    session.measurements()                              # EDV/ESV/EF (EF from pixels without spacing)
    session.submit(client)                              # the server may retrain by itself

A failed server call raises and leaves the annotations and the previous result as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from EchoForgeCore.clip import ClipMeasurement, measure_clip
from EchoForgeCore.clip import measure_pair as measure_clip_pair
from EchoForgeCore.errors import EchoForgeError
from EchoForgeCore.pairing import patient_key, view_from_name

from .annotations import FrameAnnotations
from .client import EchoForgeClient
from .errors import AnnotationError
from .report import study_report, video_report
from .volume import Volume


class VideoSession:
    """One video being annotated.

    Args:
        image_id: the video's id on the server.
        video: its frames and geometry (:meth:`EchoForgeClient.download_image`, or from a Slicer node).
        view: ``2CH``/``4CH``/``unknown`` (default: from the name).
        suggested: the next-sample answer, for its ``suggested_frames`` (and detected ED/ES).
    """

    def __init__(self, image_id: str, video: Volume, view: Optional[str] = None,
                 suggested: Optional[Mapping[str, Any]] = None):
        self.image_id = image_id
        self.video = video
        self.view = view or view_from_name(image_id)
        self.annotations = FrameAnnotations(video.n_frames, video.frame_size)
        self.suggested_frames: list[int] = [int(f) for f in (suggested or {}).get("suggested_frames") or []]
        self.ed: Optional[int] = None
        self.es: Optional[int] = None
        self.reference_ef: Optional[float] = None
        self.result: Optional[np.ndarray] = None
        self.result_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ cardiac phases
    def mark_ed(self, frame: Optional[int]) -> None:
        """Mark (or with ``None`` clear) the end-diastolic frame; measurements then use it."""
        self.ed = self._frame(frame, "ED")

    def mark_es(self, frame: Optional[int]) -> None:
        """Mark (or with ``None`` clear) the end-systolic frame."""
        self.es = self._frame(frame, "ES")

    # ------------------------------------------------------------------ the server loop
    def segment_the_rest(self, client: EchoForgeClient, adapt: str = "auto") -> np.ndarray:
        """Send the drawn frames, get every frame segmented (drawn ones unchanged), keep it as the result.

        Raises:
            AnnotationError: nothing is drawn (nothing is sent).
            EchoForgeClientError: the call failed; annotations and the previous result are kept.
        """
        labels, frames = self.annotations.submission()
        outcome = client.segment_with_result(self.image_id, labels, frames, adapt, like=self.video)
        self.result, self.result_info = outcome.labels, outcome.info
        return outcome.labels

    def segment_automatically(self, client: EchoForgeClient) -> np.ndarray:
        """Segment every frame with the model alone (no drawn frame), keep it as the result."""
        outcome = client.segment_with_result(self.image_id, like=self.video)
        self.result, self.result_info = outcome.labels, outcome.info
        return outcome.labels

    def submit(self, client: EchoForgeClient) -> dict[str, Any]:
        """Save the drawn frames as this video's label on the server (with the frame list).

        Raises:
            AnnotationError: nothing is drawn (nothing is sent).
        """
        labels, frames = self.annotations.submission()
        return client.save_label(self.image_id, labels, frames, like=self.video)

    # ------------------------------------------------------------------ measuring and reporting
    def measurements(self) -> dict[str, Any]:
        """Every beat's ED/ES, EDV/ESV/EF, GLS, LA volume and LV mass, their means, the LV curves, of the last
        result (the marked ED/ES are used for their beat; the ECG's R-waves, when the video has them, cut
        the beats; the server's per-frame confidence flags poor frames).

        Raises:
            AnnotationError: no segmentation yet.
        """
        return self.clip().result

    def clip(self) -> ClipMeasurement:
        """The measurements of the last result with the geometries behind them (for biplane pairs)."""
        confidence = self.result_info.get("frame_confidence")
        if confidence is not None and len(confidence) != self.video.n_frames:
            confidence = None
        return measure_clip(self.require_result(), self.video.spacing, self.video.frame_time_ms, self.ed, self.es,
                            self.video.r_waves_ms, confidence)

    def report(self, out_dir: Optional[str] = None, pictures: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
        """The clinical report of this video (JSON dict; with ``out_dir``, also its file).

        ``pictures``: picture files made for this video (e.g. ``curve_png``), named in the JSON.
        """
        return video_report(self.image_id, self.require_result(), self.video.spacing, self.video.frame_time_ms,
                            self.ed, self.es, out_dir, self.annotations.annotated_frames, self.result_info,
                            self.view, pictures=pictures)

    def require_result(self) -> np.ndarray:
        if self.result is None:
            raise AnnotationError(f"Video {self.image_id!r} has no segmentation yet: segment it first.")
        return self.result

    def _frame(self, frame: Optional[int], name: str) -> Optional[int]:
        if frame is None:
            return None
        index = int(frame)
        if not 0 <= index < self.video.n_frames:
            raise AnnotationError(f"{name} frame {frame} is outside the video (frames 0 to {self.video.n_frames - 1})")
        return index


@dataclass(frozen=True)
class BiplaneResult:
    """Biplane measurements of one patient's 2CH and 4CH videos."""

    patient: str
    video_2ch: str
    video_4ch: str
    measurements: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        m = self.measurements
        return {"patient": self.patient, "2CH": self.video_2ch, "4CH": self.video_4ch,
                **{k: m.get(k) for k in ("available", "reason", "edv_ml", "esv_ml", "ef", "ef_mean", "ef_sd", "n_beats", "pairing",
                                         "pairing_note", "beats", "la_volume_ml", "lv_mass_g")}}


def biplane_pairs(sessions: Sequence[VideoSession]) -> list[tuple[VideoSession, VideoSession]]:
    """The (2CH, 4CH) sessions of the same patient (by name) that both have a segmentation."""
    by_patient: dict[str, dict[str, VideoSession]] = {}
    for session in sessions:
        if session.result is not None and session.view in ("2CH", "4CH"):
            by_patient.setdefault(patient_key(session.image_id), {})[session.view] = session
    return [(views["2CH"], views["4CH"]) for _, views in sorted(by_patient.items())
            if "2CH" in views and "4CH" in views]


def measure_pair(two_chamber: VideoSession, four_chamber: VideoSession) -> BiplaneResult:
    """Biplane EDV/ESV/EF (every beat, paired), LA volume and LV mass of a 2CH and a 4CH session."""
    m = measure_clip_pair(two_chamber.clip(), four_chamber.clip())
    return BiplaneResult(patient_key(two_chamber.image_id), two_chamber.image_id, four_chamber.image_id, m)


def write_study_report(sessions: Sequence[VideoSession], out_dir: str,
                       pictures: Optional[Mapping[str, Mapping[str, str]]] = None) -> dict[str, Any]:
    """Reports of every segmented session, the biplane results and the EF agreement with references.

    ``pictures``: picture files by video id (named in that video's JSON), and under ``""`` the
    study-wide ones (e.g. ``bland_altman_png``).
    """
    measured = [s for s in sessions if s.result is not None]
    if not measured:
        raise AnnotationError("No video has a segmentation yet: there is nothing to report.")
    pictures = pictures or {}
    reports = [s.report(out_dir, pictures.get(s.image_id)) for s in measured]
    biplane = []
    for pair in biplane_pairs(measured):
        try:
            biplane.append(measure_pair(*pair).to_dict())
        except EchoForgeError as err:
            biplane.append({"patient": patient_key(pair[0].image_id), "available": False, "reason": str(err)})
    return study_report(reports, out_dir, {s.image_id: s.reference_ef for s in measured}, biplane, pictures.get(""))


def measurement_rows(sessions: Sequence[VideoSession]) -> list[dict[str, Any]]:
    """The module's results table: one row per segmented video, then one per 2CH/4CH pair (biplane).

    Each row has ``video``, ``view``, ``ed``, ``es``, ``edv_ml``, ``esv_ml``, ``ef`` (the single-beat values),
    ``ef_mean``, ``ef_sd`` and ``n_beats`` (over the usable beats), ``method``, ``note`` (why a value is
    missing, how many beats, how biplane beats were paired) and ``reference_ef``.
    """
    rows = []
    for session in sessions:
        if session.result is None:
            continue
        m = session.measurements()
        rows.append({"video": session.image_id, "view": session.view, "ed": m.get("ed"), "es": m.get("es"),
                     "edv_ml": m.get("edv_disks_ml"), "esv_ml": m.get("esv_disks_ml"), "ef": m.get("ef"),
                     "ef_mean": m.get("ef_mean"), "ef_sd": m.get("ef_sd"), "n_beats": m.get("n_beats_used"),
                     "method": "single plane (disks)", "note": m.get("reason") or m.get("beats_note") or "",
                     "reference_ef": session.reference_ef})
    for two, four in biplane_pairs(sessions):
        row = {"video": f"{patient_key(two.image_id)} (biplane)", "view": "2CH+4CH", "ed": None, "es": None,
               "edv_ml": None, "esv_ml": None, "ef": None, "ef_mean": None, "ef_sd": None, "n_beats": None,
               "method": "biplane (disks)", "note": "", "reference_ef": None}
        try:
            b = measure_pair(two, four).measurements
            row.update(edv_ml=b["edv_ml"], esv_ml=b["esv_ml"], ef=b["ef"], ef_mean=b["ef_mean"], ef_sd=b["ef_sd"],
                       n_beats=b["n_beats"], note=b["reason"] or b["pairing"] or "")
        except EchoForgeError as err:
            row["note"] = str(err)
        rows.append(row)
    return rows
