"""The echo phantom written in each real dataset layout.

The same seeded patients come out as a CAMUS download (either release), an EchoNet-Dynamic
folder, a MONAI Label studies folder, or ultrasound DICOM files, so every reader is tested end to
end on identical content and every benchmark knows the true answer.

Every layout carries the truth of every beat (:meth:`~echoforge.phantom.PhantomPatient.beat_truth`:
ED/ES frames and times, RR, EDV/ESV/EF, GLS, LA volume, LV mass): in ``dataset.json`` (studies and
DICOM layouts, ``meta.beats``), in the ``PhantomBeats.csv`` sidecar of the EchoNet layout, and as a
synthetic ECG in the DICOM files; the CAMUS ``Info_*.cfg`` keep the ED/ES truth of the half
sequence. With ``beats=N`` the clips hold N different beats (heart-rate variability, beat-to-beat
EF variation), a fraction ``irregular`` of the patients in an irregular rhythm (atrial fibrillation).

Patient ``i`` of a run with seed ``S`` uses phantom seed ``S * 1000 + i``: runs with different
seeds never share a patient (for up to 1000 patients per run), which keeps test sets apart from
training sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from echoforge.io.atomic import write_text_atomic
from echoforge.io.avi import write_avi
from echoforge.io.camus import sequential_split, write_camus_splits, write_camus_view
from echoforge.io.echonet import write_echonet
from echoforge.io.studies import LABELS_DIR, REFERENCE_DIR, write_manifest
from echoforge.io.volume import write_labels, write_volume
from echoforge.video import EchoVideo

LAYOUTS = ("camus", "camus-mhd", "echonet", "nifti", "dicom")
DEFAULT_SIZE = {"camus": (256, 256), "camus-mhd": (256, 256), "echonet": (112, 112), "nifti": (256, 256),
                "dicom": (256, 256)}
MAX_PATIENTS_PER_SEED = 1000


def patient_seed(seed: int, index: int) -> int:
    if not 0 <= index < MAX_PATIENTS_PER_SEED:
        raise ValueError(f"patient index must be in 0..{MAX_PATIENTS_PER_SEED - 1}")
    return seed * MAX_PATIENTS_PER_SEED + index


def _patients(n: int, seed: int, shifted: bool, desc: str, progress: bool, family: str | None = None
              ) -> Iterator[tuple[int, Any]]:
    from echoforge.phantom import make_patient
    from echoforge.phantom.families import make_family_patient

    for i in tqdm(range(n), desc=desc, unit="patient", disable=not progress):
        if family is None:
            yield i, make_patient(patient_seed(seed, i), shifted=shifted)
        else:
            yield i, make_family_patient(patient_seed(seed, i), family)


BEATS_SIDECAR = "PhantomBeats.csv"
_BEAT_COLUMNS = ("beat", "ed_frame", "es_frame", "complete", "ed_time_ms", "es_time_ms", "rr_ms", "edv_ml", "esv_ml",
                 "ef", "gls_4ch", "gls_2ch", "la_volume_ml", "lv_mass_g")


def _truth(patient: Any, video: EchoVideo | None = None) -> dict[str, Any]:
    truth: dict[str, Any] = {
        "true_ef": round(float(patient.true_ef), 2), "true_edv_ml": round(float(patient.true_edv_ml), 2),
        "true_esv_ml": round(float(patient.true_esv_ml), 2),
        "heart_rate_bpm": round(float(patient.heart_rate_bpm), 1), "phantom_seed": int(patient.seed)}
    if video is not None:
        truth["rhythm"] = video.meta.get("rhythm", "sinus")
        truth["beats"] = [_rounded(b) for b in video.meta.get("beats", [])]
    return truth


def _rounded(beat: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in beat.items()}


def _is_irregular(index: int, fraction: float) -> bool:
    """Whether patient ``index`` is one of the ``fraction`` in an irregular rhythm (spread evenly)."""
    return int((index + 1) * fraction) > int(index * fraction)


def _clip(patient: Any, view: str, size: tuple[int, int], beats: int | None, irregular: bool,
          fps: float = 30.0) -> EchoVideo:
    """One cycle (``beats=None``, as the layouts always had) or ``beats`` different beats of ``view``."""
    if beats is None:
        return patient.render(view=view, size=size, fps=fps)
    return patient.render_beats(view, patient.beat_sequence(beats, irregular), size=size, fps=fps)


def _keep_frames(video: EchoVideo, labelled: str) -> EchoVideo:
    """Reduce full per-frame labels to what a clinician would have drawn: ``ed-es``, ``all`` or ``none``."""
    if labelled == "all" or video.labels is None:
        return video
    if labelled == "none":
        return video.replace(labels=None, annotated=())
    frames = [f for f in (video.ed, video.es) if f is not None]
    labels = np.zeros_like(video.labels)
    labels[frames] = video.labels[frames]
    return video.with_labels(labels, frames)


def write_phantom_dataset(out: str | os.PathLike[str], layout: str, patients: int = 4, seed: int = 0,
                          size: tuple[int, int] | None = None, labelled: str = "ed-es",
                          labelled_patients: int | None = None, shifted: bool = False, progress: bool = True,
                          beats: int | None = None, irregular: float = 0.0, family: str | None = None) -> Path:
    """Write ``patients`` phantom patients (2CH and 4CH each) to ``out`` in ``layout``.

    Args:
        out: destination folder (created).
        layout: one of :data:`LAYOUTS`.
        patients: number of patients.
        seed: run seed (see the module docstring for how patient seeds derive from it).
        size: frame size (H, W); defaults per layout (112×112 for EchoNet, else 256×256).
        labelled: for the ``nifti`` studies layout, which frames get clinician labels in
            ``labels/final`` (``ed-es``, ``all`` or ``none``); full references always go to ``reference/``.
        labelled_patients: for the ``nifti`` layout, only the first this many patients get
            clinician labels (the others wait to be annotated); all when ``None``.
        shifted: draw patients from the style-shifted phantom domain (another "scanner").
        beats: clips of this many different beats (studies, EchoNet and DICOM layouts); ``None``: one
            cycle repeated, as these layouts always held.
        irregular: with ``beats``, the fraction of patients in an irregular rhythm (atrial fibrillation).
        family: draw the patients from this phantom style family (:data:`echoforge.phantom.families.FAMILIES`:
            its anatomy, scanner style and, for one-cycle clips, its acquisition) instead of the
            default domain; ``shifted`` is then ignored.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if patients < 1:
        raise ValueError("at least one patient is needed")
    out = Path(out)
    size = tuple(size) if size else DEFAULT_SIZE[layout]
    writer = {"camus": _write_camus, "camus-mhd": _write_camus, "echonet": _write_echonet,
              "nifti": _write_studies, "dicom": _write_dicom}[layout]
    if not 0.0 <= irregular <= 1.0:
        raise ValueError(f"irregular must be a fraction in [0, 1], got {irregular}")
    if beats is not None and beats < 1:
        raise ValueError("beats must be at least 1")
    if family is not None:
        from echoforge.phantom.families import FAMILIES

        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(sorted(FAMILIES))}, got {family!r}")
    writer(out, layout=layout, patients=patients, seed=seed, size=size, labelled=labelled, shifted=shifted,
           labelled_patients=patients if labelled_patients is None else labelled_patients, progress=progress,
           beats=beats, irregular=irregular, family=family)
    return out


def _write_camus(out: Path, layout: str, patients: int, seed: int, size: tuple[int, int], shifted: bool,
                 progress: bool, family: str | None = None, **_: Any) -> None:
    release = "mhd" if layout == "camus-mhd" else "nifti"
    ids = []
    for i, patient in _patients(patients, seed, shifted, f"CAMUS ({release})", progress, family):
        pid = f"patient{i + 1:04d}"
        ids.append(pid)
        rng = np.random.default_rng(patient.seed)
        for view in ("2CH", "4CH"):
            video = patient.render_half_sequence(view=view, size=size)
            info = {"Sex": "F" if rng.random() < 0.5 else "M", "Age": int(rng.integers(20, 90)),
                    "ImageQuality": "Good", "EF": round(patient.true_ef, 2),
                    "FrameRate": round(video.fps or 30.0, 2), "LVedv": round(patient.true_edv_ml, 2),
                    "LVesv": round(patient.true_esv_ml, 2), "PhantomSeed": patient.seed}
            write_camus_view(out, pid, video, info, release=release)
    if release == "nifti":
        write_camus_splits(out, sequential_split(ids))


def _write_echonet(out: Path, patients: int, seed: int, size: tuple[int, int], shifted: bool, progress: bool,
                   beats: int | None = None, irregular: float = 0.0, family: str | None = None, **_: Any) -> None:
    entries = []
    beat_rows = [",".join(("FileName", "Rhythm") + _BEAT_COLUMNS)]
    split = sequential_split([str(i) for i in range(patients)])
    split_of = {int(i): name for name, group in (("TRAIN", split["training"]), ("VAL", split["validation"]),
                                                 ("TEST", split["testing"])) for i in group}
    for i, patient in _patients(patients, seed, shifted, "EchoNet-Dynamic", progress, family):
        name = f"0X{seed:04X}{i:012X}"
        fps = 50.0
        rng = np.random.default_rng(patient.seed)
        cycle_frames = 60.0 / patient.heart_rate_bpm * fps
        n_frames = int(np.ceil(cycle_frames * 1.3))
        start_phase = -float(rng.uniform(0.05, 0.25))
        if beats is None:
            video = patient.render(view="4CH", size=size, fps=fps, n_frames=n_frames, start_phase=start_phase)
        else:
            video = _clip(patient, "4CH", size, beats, _is_irregular(i, irregular), fps)
        write_avi(video, out / "Videos" / f"{name}.avi")
        for beat in video.meta["beats"]:
            beat_rows.append(",".join([name, video.meta["rhythm"]] + [_csv(beat[c]) for c in _BEAT_COLUMNS]))
        # EchoNet lists the small (ES) tracing first and the large (ED) one last
        tracings = {f: _tracing(video.labels[f]) for f in (video.es, video.ed) if f is not None}
        entries.append({"FileName": name, "EF": round(patient.true_ef, 4), "ESV": round(patient.true_esv_ml, 4),
                        "EDV": round(patient.true_edv_ml, 4), "FrameHeight": size[0], "FrameWidth": size[1],
                        "FPS": fps, "NumberOfFrames": video.n_frames, "Split": split_of[i], "tracings": tracings})
    write_echonet(out, entries)
    write_text_atomic(out / BEATS_SIDECAR, "\n".join(beat_rows) + "\n")


def _csv(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _tracing(labels: np.ndarray) -> np.ndarray:
    """EchoNet-style tracing of a frame's LV along its measured long axis (apex → mitral-plane midpoint)."""
    from echoforge.core.geometry import lv_geometry
    from echoforge.io.echonet import mask_to_tracing

    geometry = lv_geometry(labels, None)  # points are (row, col) pixels; tracings are (x, y)
    return mask_to_tracing(labels == 1, apex=geometry.apex[::-1], base_mid=geometry.base[::-1])


def _write_studies(out: Path, patients: int, seed: int, size: tuple[int, int], labelled: str, shifted: bool,
                   labelled_patients: int, progress: bool, beats: int | None = None, irregular: float = 0.0,
                   family: str | None = None, **_: Any) -> None:
    entries = []
    split = sequential_split([f"patient{i + 1:04d}" for i in range(patients)])
    split_of = {p: name for name, group in split.items() for p in group}
    for i, patient in _patients(patients, seed, shifted, "studies", progress, family):
        pid = f"patient{i + 1:04d}"
        for view in ("2CH", "4CH"):
            name = f"{pid}_{view}"
            video = _clip(patient, view, size, beats, _is_irregular(i, irregular))
            write_volume(video, out / f"{name}.nii.gz")
            write_labels(video, out / REFERENCE_DIR / f"{name}.nii.gz")
            drawn = _keep_frames(video, labelled if i < labelled_patients else "none")
            if drawn.labels is not None:
                write_labels(drawn, out / LABELS_DIR / f"{name}.nii.gz")
            entries.append({"name": name, "patient": pid, "view": view, "split": split_of[pid], "ed": video.ed,
                            "es": video.es, "frame_time_ms": video.frame_time_ms, "meta": _truth(patient, video)})
    write_manifest(out, entries)


def _write_dicom(out: Path, patients: int, seed: int, size: tuple[int, int], shifted: bool, progress: bool,
                 beats: int | None = None, irregular: float = 0.0, family: str | None = None, **_: Any) -> None:
    from pydicom.uid import generate_uid

    from echoforge.io.dicom import write_dicom

    entries = []
    for i, patient in _patients(patients, seed, shifted, "DICOM", progress, family):
        pid = f"patient{i + 1:04d}"
        for view in ("2CH", "4CH"):
            video = _clip(patient, view, size, beats, _is_irregular(i, irregular))
            # one study per patient, so that its 2CH and 4CH pair up by PatientID and StudyInstanceUID
            study = generate_uid(entropy_srcs=["echoforge-phantom-study", str(patient.seed), str(shifted)])
            video = video.replace(meta={**video.meta, "patient_id": pid, "study_instance_uid": study})
            rel = Path(pid) / f"{pid}_{view}.dcm"
            write_dicom(video, out / rel)
            write_labels(video, out / REFERENCE_DIR / f"{pid}_{view}.nii.gz")
            entries.append({"name": f"{pid}_{view}", "file": str(rel), "patient": pid, "view": view,
                            "ed": video.ed, "es": video.es, "meta": _truth(patient, video)})
    write_manifest(out, entries)
