"""The echo phantom written in each real dataset layout.

The same seeded patients come out as a CAMUS download (either release), an EchoNet-Dynamic
folder, a MONAI Label studies folder, or ultrasound DICOM files, so every reader is tested end to
end on identical content and every benchmark knows the true answer.

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


def _patients(n: int, seed: int, shifted: bool, desc: str, progress: bool) -> Iterator[tuple[int, Any]]:
    from echoforge.phantom import make_patient

    for i in tqdm(range(n), desc=desc, unit="patient", disable=not progress):
        yield i, make_patient(patient_seed(seed, i), shifted=shifted)


def _truth(patient: Any) -> dict[str, float]:
    return {"true_ef": round(float(patient.true_ef), 2), "true_edv_ml": round(float(patient.true_edv_ml), 2),
            "true_esv_ml": round(float(patient.true_esv_ml), 2),
            "heart_rate_bpm": round(float(patient.heart_rate_bpm), 1), "phantom_seed": int(patient.seed)}


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
                          labelled_patients: int | None = None, shifted: bool = False, progress: bool = True) -> Path:
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
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if patients < 1:
        raise ValueError("at least one patient is needed")
    out = Path(out)
    size = tuple(size) if size else DEFAULT_SIZE[layout]
    writer = {"camus": _write_camus, "camus-mhd": _write_camus, "echonet": _write_echonet,
              "nifti": _write_studies, "dicom": _write_dicom}[layout]
    writer(out, layout=layout, patients=patients, seed=seed, size=size, labelled=labelled, shifted=shifted,
           labelled_patients=patients if labelled_patients is None else labelled_patients, progress=progress)
    return out


def _write_camus(out: Path, layout: str, patients: int, seed: int, size: tuple[int, int], shifted: bool,
                 progress: bool, **_: Any) -> None:
    release = "mhd" if layout == "camus-mhd" else "nifti"
    ids = []
    for i, patient in _patients(patients, seed, shifted, f"CAMUS ({release})", progress):
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
                   **_: Any) -> None:
    entries = []
    split = sequential_split([str(i) for i in range(patients)])
    split_of = {int(i): name for name, group in (("TRAIN", split["training"]), ("VAL", split["validation"]),
                                                 ("TEST", split["testing"])) for i in group}
    for i, patient in _patients(patients, seed, shifted, "EchoNet-Dynamic", progress):
        name = f"0X{seed:04X}{i:012X}"
        fps = 50.0
        rng = np.random.default_rng(patient.seed)
        cycle_frames = 60.0 / patient.heart_rate_bpm * fps
        n_frames = int(np.ceil(cycle_frames * 1.3))
        video = patient.render(view="4CH", size=size, fps=fps, n_frames=n_frames,
                               start_phase=-float(rng.uniform(0.05, 0.25)))
        write_avi(video, out / "Videos" / f"{name}.avi")
        # EchoNet lists the small (ES) tracing first and the large (ED) one last
        tracings = {f: _tracing(video.labels[f]) for f in (video.es, video.ed) if f is not None}
        entries.append({"FileName": name, "EF": round(patient.true_ef, 4), "ESV": round(patient.true_esv_ml, 4),
                        "EDV": round(patient.true_edv_ml, 4), "FrameHeight": size[0], "FrameWidth": size[1],
                        "FPS": fps, "NumberOfFrames": video.n_frames, "Split": split_of[i], "tracings": tracings})
    write_echonet(out, entries)


def _tracing(labels: np.ndarray) -> np.ndarray:
    """EchoNet-style tracing of a frame's LV along its measured long axis (apex → mitral-plane midpoint)."""
    from echoforge.core.geometry import lv_geometry
    from echoforge.io.echonet import mask_to_tracing

    geometry = lv_geometry(labels, None)  # points are (row, col) pixels; tracings are (x, y)
    return mask_to_tracing(labels == 1, apex=geometry.apex[::-1], base_mid=geometry.base[::-1])


def _write_studies(out: Path, patients: int, seed: int, size: tuple[int, int], labelled: str, shifted: bool,
                   labelled_patients: int, progress: bool, **_: Any) -> None:
    entries = []
    split = sequential_split([f"patient{i + 1:04d}" for i in range(patients)])
    split_of = {p: name for name, group in split.items() for p in group}
    for i, patient in _patients(patients, seed, shifted, "studies", progress):
        pid = f"patient{i + 1:04d}"
        for view in ("2CH", "4CH"):
            name = f"{pid}_{view}"
            video = patient.render(view=view, size=size)
            write_volume(video, out / f"{name}.nii.gz")
            write_labels(video, out / REFERENCE_DIR / f"{name}.nii.gz")
            drawn = _keep_frames(video, labelled if i < labelled_patients else "none")
            if drawn.labels is not None:
                write_labels(drawn, out / LABELS_DIR / f"{name}.nii.gz")
            entries.append({"name": name, "patient": pid, "view": view, "split": split_of[pid], "ed": video.ed,
                            "es": video.es, "frame_time_ms": video.frame_time_ms, "meta": _truth(patient)})
    write_manifest(out, entries)


def _write_dicom(out: Path, patients: int, seed: int, size: tuple[int, int], shifted: bool, progress: bool,
                 **_: Any) -> None:
    from echoforge.io.dicom import write_dicom

    entries = []
    for i, patient in _patients(patients, seed, shifted, "DICOM", progress):
        pid = f"patient{i + 1:04d}"
        for view in ("2CH", "4CH"):
            video = patient.render(view=view, size=size)
            video = video.replace(meta={**video.meta, "patient_id": pid})
            rel = Path(pid) / f"{pid}_{view}.dcm"
            write_dicom(video, out / rel)
            write_labels(video, out / REFERENCE_DIR / f"{pid}_{view}.nii.gz")
            entries.append({"name": f"{pid}_{view}", "file": str(rel), "patient": pid, "view": view,
                            "ed": video.ed, "es": video.es, "meta": _truth(patient)})
    write_manifest(out, entries)
