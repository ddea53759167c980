"""LV measurements of a segmented cine as a DICOM Comprehensive SR (TID 5200 echo report), and back.

The document follows PS3.16 TID 5200 "Echocardiography Procedure Report"::

    CONTAINER (125200, DCM, "Adult Echocardiography Procedure Report")      TID 5200
      HAS CONCEPT MOD  Language = English (United States)                    TID 1204
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID/Name/...  TID 1002/1004
      CONTAINS CONTAINER (111028, DCM, "Image Library") → IMAGE: the source cine
      CONTAINS CONTAINER (121070, DCM, "Findings")                           TID 5202
        HAS CONCEPT MOD  Finding Site = (87878005, SCT, "Left Ventricle")
        CONTAINS CONTAINER (125007, DCM, "Measurement Group")
          HAS CONCEPT MOD  Image Mode = 2D mode
          CONTAINS NUM  LVEDV / LVESV / LVEF (LOINC, CID 12200), FAC (SCT), GLS (DCM, CID 12309)  TID 5203
            HAS CONCEPT MOD  Measurement Method = Method of Disks, Single Plane (CID 12227)
            HAS ACQ CONTEXT  Image View = Apical four/two chamber (CID 12226), when the view is known
            HAS CONCEPT MOD  Derivation = Mean (CID 3627)           the mean over beats only
            HAS PROPERTIES   Selection Status = Mean value chosen    TID 310, the mean only
            INFERRED FROM    IMAGE: the source cine, its ED/ES frames (Referenced Frame Number)

Each beat's EDV, ESV and EF is one measurement inferred from that beat's ED and ES frames; with
more than one beat their mean follows (Derivation = Mean, selected). GLS is written when the
measurements carry it (key ``gls``, percent). Only numbers that exist are written: a video without
pixel spacing gets EF and FAC (ratios) but no volumes.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, generate_uid
from pydicom.valuerep import DSfloat

from echoforge import __version__
from echoforge.errors import UnreadableFileError
from echoforge.io.dicom_seg import Code, derived_header

COMPREHENSIVE_SR = UID("1.2.840.10008.5.1.4.1.1.88.33")

REPORT_TITLE = Code("125200", "DCM", "Adult Echocardiography Procedure Report")
LANGUAGE = Code("121049", "DCM", "Language of Content Item and Descendants")
ENGLISH = Code("en-US", "RFC5646", "English (United States)")
OBSERVER_TYPE, DEVICE = Code("121005", "DCM", "Observer Type"), Code("121007", "DCM", "Device")
DEVICE_UID = Code("121012", "DCM", "Device Observer UID")
DEVICE_NAME = Code("121013", "DCM", "Device Observer Name")
DEVICE_MANUFACTURER = Code("121014", "DCM", "Device Observer Manufacturer")
DEVICE_MODEL = Code("121015", "DCM", "Device Observer Model Name")
IMAGE_LIBRARY = Code("111028", "DCM", "Image Library")
FINDINGS = Code("121070", "DCM", "Findings")
FINDING_SITE, LEFT_VENTRICLE = Code("363698007", "SCT", "Finding Site"), Code("87878005", "SCT", "Left Ventricle")
MEASUREMENT_GROUP = Code("125007", "DCM", "Measurement Group")
IMAGE_MODE, MODE_2D = Code("399264008", "SCT", "Image Mode"), Code("399064001", "SCT", "2D mode")
IMAGE_VIEW = Code("111031", "DCM", "Image View")
VIEWS = {"4CH": Code("399214001", "SCT", "Apical four chamber"),
         "2CH": Code("399232001", "SCT", "Apical two chamber"),
         "PLAX": Code("399139001", "SCT", "Parasternal long axis")}
METHOD, DISKS_SINGLE_PLANE = (Code("370129005", "SCT", "Measurement Method"),
                              Code("125208", "DCM", "Method of Disks, Single Plane"))
DERIVATION, MEAN = Code("121401", "DCM", "Derivation"), Code("373098007", "SCT", "Mean")
SELECTION_STATUS, MEAN_CHOSEN = Code("121404", "DCM", "Selection Status"), Code("121412", "DCM", "Mean value chosen")
ML, PERCENT = Code("ml", "UCUM", "milliliter"), Code("%", "UCUM", "Percent")
#: What each measurement is called in the report (CID 12200 "Echocardiography Left Ventricle").
EDV = Code("18026-5", "LN", "Left Ventricular End Diastolic Volume")
ESV = Code("18148-7", "LN", "Left Ventricular End Systolic Volume")
EF = Code("18043-0", "LN", "Left Ventricular Ejection Fraction by US")
FAC = Code("399287000", "SCT", "Left Ventricular Fractional Area Change")
#: CID 12309 "Core Echo Strain Measurement" (endocardial GLS at end systole, per view).
GLS = {"4CH": Code("130687", "DCM", "LV End-systolic GLS 4CH (Endocardial)"),
       "2CH": Code("130688", "DCM", "LV End-systolic GLS 2CH (Endocardial)")}
#: report key → (concept, unit); the keys :func:`read_echo_sr` returns.
QUANTITIES = {"edv_ml": (EDV, ML), "esv_ml": (ESV, ML), "ef": (EF, PERCENT)}


# ========================================================================================= writing
def write_echo_sr(measurements: dict[str, Any], source: Dataset, view: str = "unknown",
                  series_instance_uid: str | None = None, series_number: int = 902,
                  when: datetime.datetime | None = None) -> FileDataset:
    """The echo SR of ``measurements`` (:func:`echoforge.report.measurements`) of the cine ``source``.

    Args:
        measurements: ``ed``/``es``, ``edv_disks_ml``/``esv_disks_ml``, ``ef``, ``fac``, and when
            present ``beats`` (one dict per beat with its ``ed``, ``es``, volumes and EF) and ``gls``.
        source: the cine's data set (header only is enough).
        view: ``4CH``/``2CH``/``PLAX`` (the Image View of each measurement), else ``unknown``.
        series_instance_uid: the SR series (default: derived from the source instance).
        series_number, when: as in :func:`echoforge.io.dicom_seg.write_dicom_seg`.

    Returns:
        The SR data set with file meta.
    """
    when = when or datetime.datetime.now(datetime.timezone.utc)
    series_uid = series_instance_uid or generate_uid(entropy_srcs=["echoforge-sr-series", str(source.SOPInstanceUID)])
    ds = derived_header(source, COMPREHENSIVE_SR, "SR", series_uid, generate_uid(), series_number,
                        "EchoForge LV measurements", when)
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([_evidence(source)])

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([REPORT_TITLE.item()])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "5200"
    ds.ContentTemplateSequence = DicomSequence([template])
    group = [_code("HAS CONCEPT MOD", IMAGE_MODE, MODE_2D)]
    group += [_num(concept, value, unit, view, source, frames, derived)
              for concept, value, unit, frames, derived in _rows(measurements, view)]
    findings = _container("CONTAINS", FINDINGS, [_code("HAS CONCEPT MOD", FINDING_SITE, LEFT_VENTRICLE),
                                                 _container("CONTAINS", MEASUREMENT_GROUP, group)])
    ds.ContentSequence = DicomSequence([
        _code("HAS CONCEPT MOD", LANGUAGE, ENGLISH),
        _code("HAS OBS CONTEXT", OBSERVER_TYPE, DEVICE),
        _item("HAS OBS CONTEXT", "UIDREF", DEVICE_UID,
              UID=generate_uid(entropy_srcs=["echoforge-device", __version__])),
        _text("HAS OBS CONTEXT", DEVICE_NAME, "EchoForge"),
        _text("HAS OBS CONTEXT", DEVICE_MANUFACTURER, "EchoForge"),
        _text("HAS OBS CONTEXT", DEVICE_MODEL, f"EchoForge {__version__}"),
        _container("CONTAINS", IMAGE_LIBRARY, [_image("CONTAINS", source, ())]),
        findings,
    ])
    return ds


def _evidence(source: Dataset) -> Dataset:
    """Hierarchical SOP Instance Reference of the cine (study → series → instance)."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedSOPSequence = DicomSequence([instance])
    study = Dataset()
    study.StudyInstanceUID = source.StudyInstanceUID
    study.ReferencedSeriesSequence = DicomSequence([series])
    return study


def _rows(m: dict[str, Any], view: str) -> list[tuple[Code, float, Code, tuple[int, ...], bool]]:
    """(concept, value, unit, source frames, is the mean) of every number to write."""
    beats = [b for b in (m.get("beats") or []) if isinstance(b, dict)]
    if not beats:
        beats = [{"ed": m.get("ed"), "es": m.get("es"), "edv_ml": m.get("edv_disks_ml"),
                  "esv_ml": m.get("esv_disks_ml"), "ef": m.get("ef")}]
    rows = []
    per_key: dict[str, list[float]] = {key: [] for key in QUANTITIES}
    for beat in beats:
        frames = tuple(int(f) for f in (beat.get("ed"), beat.get("es")) if _finite(f))
        for key, (concept, unit) in QUANTITIES.items():
            value = _beat_value(beat, key)
            if value is not None:
                rows.append((concept, value, unit, frames, False))
                per_key[key].append(value)
    if len(beats) > 1:
        for key, (concept, unit) in QUANTITIES.items():
            values = per_key[key]
            if len(values) > 1:
                rows.append((concept, float(np.mean(values)), unit, (), True))
    ed_es = tuple(int(f) for f in (m.get("ed"), m.get("es")) if _finite(f))
    if _finite(m.get("fac")):
        rows.append((FAC, float(m["fac"]), PERCENT, ed_es, False))
    if _finite(m.get("gls")) and view in GLS:
        rows.append((GLS[view], float(m["gls"]), PERCENT, ed_es, False))
    return rows


def _beat_value(beat: dict[str, Any], key: str) -> float | None:
    aliases = {"edv_ml": ("edv_ml", "edv_disks_ml", "edv"), "esv_ml": ("esv_ml", "esv_disks_ml", "esv"),
               "ef": ("ef", "ef_disks")}[key]
    for alias in aliases:
        if _finite(beat.get(alias)):
            return float(beat[alias])
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def _item(relationship: str, value_type: str, concept: Code, **values: Any) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = relationship, value_type
    item.ConceptNameCodeSequence = DicomSequence([concept.item()])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _code(relationship: str, concept: Code, value: Code) -> Dataset:
    return _item(relationship, "CODE", concept, ConceptCodeSequence=DicomSequence([value.item()]))


def _text(relationship: str, concept: Code, text: str) -> Dataset:
    return _item(relationship, "TEXT", concept, TextValue=text)


def _container(relationship: str, concept: Code, children: list[Dataset]) -> Dataset:
    return _item(relationship, "CONTAINER", concept, ContinuityOfContent="SEPARATE",
                 ContentSequence=DicomSequence(children))


def _image(relationship: str, source: Dataset, frames: Iterable[int]) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    numbers = list(dict.fromkeys(int(f) + 1 for f in frames))  # ED then ES, as given
    if numbers:
        reference.ReferencedFrameNumber = numbers
    item = Dataset()
    item.RelationshipType, item.ValueType = relationship, "IMAGE"
    item.ReferencedSOPSequence = DicomSequence([reference])
    return item


def _num(concept: Code, value: float, unit: Code, view: str, source: Dataset, frames: tuple[int, ...],
         mean: bool) -> Dataset:
    measured = Dataset()
    measured.NumericValue = DSfloat(round(value, 4), auto_format=True)
    measured.MeasurementUnitsCodeSequence = DicomSequence([unit.item()])
    children = []
    if concept in (EDV, ESV, EF):
        children.append(_code("HAS CONCEPT MOD", METHOD, DISKS_SINGLE_PLANE))
    if view in VIEWS:
        children.append(_code("HAS ACQ CONTEXT", IMAGE_VIEW, VIEWS[view]))
    if mean:
        children += [_code("HAS CONCEPT MOD", DERIVATION, MEAN), _code("HAS PROPERTIES", SELECTION_STATUS, MEAN_CHOSEN)]
    if frames:
        children.append(_image("INFERRED FROM", source, frames))
    num = _item("CONTAINS", "NUM", concept, MeasuredValueSequence=DicomSequence([measured]))
    if children:
        num.ContentSequence = DicomSequence(children)
    return num


# ========================================================================================= reading
def read_echo_sr(ds: Dataset) -> dict[str, Any]:
    """The LV measurements of an echo SR written by :func:`write_echo_sr` (or any TID 5200 report
    using the same concepts).

    Returns:
        ``beats``: one dict per beat (``ed``, ``es`` frames from the INFERRED FROM image reference,
        ``edv_ml``, ``esv_ml``, ``ef``); ``mean``: ``{key: value}`` of the Derivation = Mean items;
        ``fac``, ``gls`` (or ``None``); ``view``; ``source_sop_instance_uid``.

    Raises:
        UnreadableFileError: not an echo procedure report.
    """
    title = ds.get("ConceptNameCodeSequence") or []
    if str(ds.get("SOPClassUID", "")) != COMPREHENSIVE_SR or not title or not Code.of(title[0]).same(REPORT_TITLE):
        raise UnreadableFileError("not an EchoForge echocardiography SR (TID 5200 Comprehensive SR)")
    beats: dict[tuple[int, ...], dict[str, Any]] = {}
    result: dict[str, Any] = {"beats": [], "mean": {}, "fac": None, "gls": None, "view": "unknown",
                              "source_sop_instance_uid": None}
    for item in _walk(ds):
        if item.get("ValueType") == "IMAGE" and result["source_sop_instance_uid"] is None:
            result["source_sop_instance_uid"] = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        if item.get("ValueType") != "NUM":
            continue
        concept = Code.of(item.ConceptNameCodeSequence[0])
        value = float(item.MeasuredValueSequence[0].NumericValue)
        modifiers = {Code.of(c.ConceptNameCodeSequence[0]).value: c for c in item.get("ContentSequence", [])
                     if c.get("ConceptNameCodeSequence")}
        if IMAGE_VIEW.value in modifiers:
            shown = Code.of(modifiers[IMAGE_VIEW.value].ConceptCodeSequence[0])
            result["view"] = next((k for k, code in VIEWS.items() if code.same(shown)), result["view"])
        frames: tuple[int, ...] = ()
        for child in item.get("ContentSequence", []):
            if child.get("ValueType") == "IMAGE":
                numbers = child.ReferencedSOPSequence[0].get("ReferencedFrameNumber", [])
                numbers = [numbers] if isinstance(numbers, int) else list(numbers)
                frames = tuple(int(n) - 1 for n in numbers)
        is_mean = DERIVATION.value in modifiers
        if concept.same(FAC):
            result["fac"] = value
        elif any(concept.same(code) for code in GLS.values()):
            result["gls"] = value
        for key, (known, _) in QUANTITIES.items():
            if concept.same(known):
                if is_mean:
                    result["mean"][key] = value
                else:
                    beat = beats.setdefault(frames, {"ed": frames[0] if frames else None,
                                                     "es": frames[-1] if len(frames) > 1 else None})
                    beat[key] = value
    result["beats"] = list(beats.values())
    return result


def _walk(item: Dataset) -> Iterable[Dataset]:
    for child in item.get("ContentSequence", []):
        yield child
        if child.get("ValueType") == "CONTAINER":
            yield from _walk(child)
