"""Which videos belong together: the view named in a video's name, and the 2CH/4CH pairs of one patient.

A video's partner for biplane measurements (:func:`find_partner`) is the other apical view of the
same patient, found, in this order, by

1. ``link``: a link the user set (either video naming the other);
2. ``dicom``: the same DICOM PatientID and StudyInstanceUID;
3. ``name``: the same name once the view is taken out of it (CAMUS ``patient0001_2CH`` /
   ``patient0001_4CH``).

Only 2CH and 4CH videos pair (a linked video of unknown view is taken as the other view); when
several candidates qualify, the first by id is taken and the result says how many there were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

_VIEW_PATTERNS = (("2CH", re.compile(r"(?i)(?:^|[^a-z0-9])(?:2ch|a2c|ap2)(?:$|[^a-z0-9])")),
                  ("4CH", re.compile(r"(?i)(?:^|[^a-z0-9])(?:4ch|a4c|ap4)(?:$|[^a-z0-9])")))


def view_from_name(name: str) -> str:
    """``2CH`` or ``4CH`` when the video's name says so (``patient0001_2CH``, ``case_a4c``), else ``unknown``."""
    for view, pattern in _VIEW_PATTERNS:
        if pattern.search(name):
            return view
    return "unknown"


def patient_key(name: str) -> str:
    """The video's name without its view token: the 2CH and 4CH of one patient share it."""
    key = name
    for _, pattern in _VIEW_PATTERNS:
        key = pattern.sub("_", key)
    return key.strip("_")


_OTHER_VIEW = {"2CH": "4CH", "4CH": "2CH"}


@dataclass(frozen=True)
class VideoRecord:
    """What pairing needs to know of a video.

    Attributes:
        id: the video's id (its name in the datastore).
        view: ``2CH``, ``4CH`` or ``unknown``.
        patient_id, study_uid: DICOM PatientID and StudyInstanceUID, when known.
        partner: the id of the video the user linked it with, if any.
    """

    id: str
    view: str = "unknown"
    patient_id: Optional[str] = None
    study_uid: Optional[str] = None
    partner: Optional[str] = None


@dataclass(frozen=True)
class Partner:
    """The partner :func:`find_partner` found: ``record``, ``found_by`` (``link``, ``dicom``, ``name``), and
    ``candidates`` (how many videos qualified the same way)."""

    record: VideoRecord
    found_by: str
    candidates: int


def find_partner(video: VideoRecord, others: Sequence[VideoRecord]) -> Optional[Partner]:
    """The other apical view of ``video``'s patient among ``others`` (see the module docstring), or ``None``."""
    others = sorted((o for o in others if o.id != video.id), key=lambda o: o.id)
    wanted = _OTHER_VIEW.get(video.view)
    linked = [o for o in others if (video.partner and o.id == video.partner) or (o.partner and o.partner == video.id)]
    linked = [o for o in linked if wanted is None or o.view in (wanted, "unknown")]
    if linked and (wanted is not None or linked[0].view in _OTHER_VIEW):
        return Partner(linked[0], "link", len(linked))
    if wanted is None:
        return None
    if video.patient_id and video.study_uid:
        same = [o for o in others if o.view == wanted and o.patient_id == video.patient_id
                and o.study_uid == video.study_uid]
        if same:
            return Partner(same[0], "dicom", len(same))
    key = patient_key(video.id)
    named = [o for o in others if o.view == wanted and key and patient_key(o.id) == key]
    return Partner(named[0], "name", len(named)) if named else None
