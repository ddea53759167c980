"""The CAMUS dataset, read exactly as it is downloaded.

Two releases are supported:

* **2023 NIfTI release** (``CAMUS_public``)::

      CAMUS_public/
        database_nifti/patient0001/
          patient0001_2CH_half_sequence.nii.gz     ED→ES (or ES→ED) frames
          patient0001_2CH_half_sequence_gt.nii.gz  labels on every frame
          patient0001_2CH_ED.nii.gz, ..._ED_gt.nii.gz, ..._ES.nii.gz, ..._ES_gt.nii.gz
          Info_2CH.cfg                              ED, ES (1-based), NbFrame, ..., EF, FrameRate
          (the same for 4CH)
        database_split/subgroup_{training,validation,testing}.txt

* **first release** (MetaImage): ``patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES}[_gt].mhd`` + ``.raw``,
  ``patientXXXX_{view}_sequence.mhd`` (the half sequence) with an optional ``_sequence_gt.mhd``,
  ``Info_{view}.cfg`` (with ``LVedv``, ``LVesv``, ``LVef``), and cross-validation folds in
  ``listSubGroups/subGroup{k}_{training,validation,testing}.txt``.

Images are stored by (Simple)ITK with x = image column, so a NIfTI array reads as W×H[×T]; the
volume reader reorders it from the header geometry. Spacing comes from the headers.

Splits: ``official`` (the release's subgroup files), ``sequential`` (the 7:1:2 split over sorted
patient ids that the peer semi-supervised papers use: train 0001-0350, val 0351-0400, test
0401-0500 on the full set), and ``fold-K`` for the first release's folds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoforge.errors import DatasetLayoutError, UnreadableFileError
from echoforge.io.atomic import write_text_atomic
from echoforge.io.metaimage import read_mhd, write_mhd
from echoforge.io.volume import read_label_volume, read_volume
from echoforge.video import EchoVideo

CAMUS_VIEWS = ("2CH", "4CH")
INSTANTS = ("half_sequence", "ED", "ES")
SPLITS = ("training", "validation", "testing")
_PATIENT = re.compile(r"^patient\d{4}$")


def read_info_cfg(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse ``Info_{view}.cfg`` (``Key: value`` lines); numbers become int/float."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    info: dict[str, Any] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        try:
            info[key] = int(value)
        except ValueError:
            try:
                info[key] = float(value)
            except ValueError:
                info[key] = value
    for key in ("ED", "ES"):
        if not isinstance(info.get(key), int):
            raise DatasetLayoutError(f"{key} frame number is missing or not an integer", path)
    return info


def write_info_cfg(path: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    lines = [f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in info.items()]
    return write_text_atomic(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class CamusDataset:
    """A CAMUS download on disk.

    Args:
        root: ``CAMUS_public`` (or its ``database_nifti``) for the 2023 release, or the folder that
            holds the ``patientXXXX`` folders of the first release.

    Example::

        camus = CamusDataset("~/data/CAMUS_public")
        video = camus.load("patient0001", "4CH")          # half sequence with labels on every frame
        train = camus.split("training", scheme="sequential")
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetLayoutError("not a folder", root)
        object.__setattr__(self, "root", root)

    # ------------------------------------------------------------------ layout
    @property
    def patients_dir(self) -> Path:
        nifti = self.root / "database_nifti"
        return nifti if nifti.is_dir() else self.root

    @property
    def release(self) -> str:
        """``"nifti"`` (2023) or ``"mhd"`` (first release)."""
        first = self.patients[0]
        folder = self.patients_dir / first
        return "nifti" if any(folder.glob("*.nii.gz")) or any(folder.glob("*.nii")) else "mhd"

    @property
    def patients(self) -> list[str]:
        found = sorted(p.name for p in self.patients_dir.iterdir() if p.is_dir() and _PATIENT.match(p.name))
        if not found:
            raise DatasetLayoutError("no patientXXXX folders found (is this a CAMUS download?)", self.patients_dir)
        return found

    def views(self, patient: str) -> list[str]:
        folder = self._folder(patient)
        return [v for v in CAMUS_VIEWS if (folder / f"Info_{v}.cfg").exists()]

    def info(self, patient: str, view: str) -> dict[str, Any]:
        return read_info_cfg(self._folder(patient) / f"Info_{view}.cfg")

    def _folder(self, patient: str) -> Path:
        folder = self.patients_dir / patient
        if not folder.is_dir():
            raise DatasetLayoutError(f"patient {patient!r} not found", self.patients_dir)
        return folder

    def image_path(self, patient: str, view: str, instant: str = "half_sequence", gt: bool = False) -> Path:
        if instant not in INSTANTS:
            raise ValueError(f"instant must be one of {INSTANTS}, got {instant!r}")
        folder = self._folder(patient)
        suffix = "_gt" if gt else ""
        if self.release == "nifti":
            for ext in (".nii.gz", ".nii"):
                path = folder / f"{patient}_{view}_{instant}{suffix}{ext}"
                if path.exists():
                    return path
            return folder / f"{patient}_{view}_{instant}{suffix}.nii.gz"
        name = "sequence" if instant == "half_sequence" else instant
        return folder / f"{patient}_{view}_{name}{suffix}.mhd"

    # ------------------------------------------------------------------ reading
    def load(self, patient: str, view: str, instant: str = "half_sequence", with_labels: bool = True) -> EchoVideo:
        """One view of one patient as an :class:`EchoVideo`.

        For the half sequence, every frame with a reference label is annotated (all frames in the
        2023 release; only ED and ES in the first release, whose sequences have no labels —
        those are taken from the ED/ES files). ``ed``/``es`` come from ``Info_{view}.cfg``.
        """
        info = self.info(patient, view)
        path = self.image_path(patient, view, instant)
        if not path.exists():
            raise DatasetLayoutError(f"{path.name} is missing", path.parent)
        if path.suffix == ".mhd":
            array, spacing = read_mhd(path)
            frames = array if array.ndim == 3 else array[None]
            video = EchoVideo(frames.astype(np.float32) / 255.0, spacing=(spacing[-2], spacing[-1]),
                              source=str(path))
        else:
            video = read_volume(path)
        frame_rate = info.get("FrameRate")
        meta = {"dataset": "CAMUS", "patient": patient, "instant": instant, "info": info, "release": self.release}
        ef = info.get("EF", info.get("LVef"))
        if ef is not None:
            meta["reference_ef"] = float(ef)
        ed = es = None
        if instant == "half_sequence":
            ed, es = info["ED"] - 1, info["ES"] - 1
            if not (0 <= ed < video.n_frames and 0 <= es < video.n_frames):
                raise DatasetLayoutError(
                    f"Info_{view}.cfg gives ED {info['ED']} / ES {info['ES']} outside the {video.n_frames} frames", path)
        elif instant == "ED":
            ed = 0
        else:
            es = 0
        video = video.replace(view=view, ed=ed, es=es, meta=meta,
                              frame_time_ms=1000.0 / float(frame_rate) if frame_rate else video.frame_time_ms)
        if with_labels:
            video = self._attach_reference(video, patient, view, instant)
        return video

    def _attach_reference(self, video: EchoVideo, patient: str, view: str, instant: str) -> EchoVideo:
        gt = self.image_path(patient, view, instant, gt=True)
        if gt.exists():
            labels = read_mhd(gt)[0] if gt.suffix == ".mhd" else read_label_volume(gt).labels
            labels = labels if labels.ndim == 3 else labels[None]
            return video.with_labels(labels)
        if instant != "half_sequence":
            return video
        # first release: the sequence has no labels, the ED and ES files do
        labels = np.zeros(video.frames.shape, dtype=np.uint8)
        annotated = []
        for which, index in (("ED", video.ed), ("ES", video.es)):
            path = self.image_path(patient, view, which, gt=True)
            if path.exists() and index is not None:
                frame = read_mhd(path)[0] if path.suffix == ".mhd" else read_label_volume(path).labels
                labels[index] = frame.reshape(video.shape)
                annotated.append(index)
        return video.with_labels(labels, annotated) if annotated else video

    # ------------------------------------------------------------------ splits
    def split(self, subset: str, scheme: str = "official") -> list[str]:
        """Patients of ``subset`` (``training``/``validation``/``testing``) under ``scheme``.

        ``official``: the release's ``database_split/subgroup_*.txt``; ``sequential``: 7:1:2 in
        patient order; ``fold-K``: the first release's cross-validation fold K.
        """
        if subset not in SPLITS:
            raise ValueError(f"subset must be one of {SPLITS}, got {subset!r}")
        if scheme == "sequential":
            return sequential_split(self.patients)[subset]
        if scheme == "official":
            base = self.root if (self.root / "database_split").is_dir() else self.root.parent
            path = base / "database_split" / f"subgroup_{subset}.txt"
        elif scheme.startswith("fold-"):
            path = self.root / "listSubGroups" / f"subGroup{scheme[5:]}_{subset}.txt"
        else:
            raise ValueError(f"unknown split scheme {scheme!r} (official, sequential, fold-K)")
        if not path.exists():
            raise DatasetLayoutError(f"split file {path.name} not found", path.parent)
        known = set(self.patients)
        listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return [p for p in listed if p in known]


def sequential_split(patients: list[str], ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> dict[str, list[str]]:
    """The sequential (unshuffled) 7:1:2 split over sorted patient ids."""
    ordered = sorted(patients)
    n = len(ordered)
    n_train = int(round(n * ratios[0]))
    n_val = int(round(n * ratios[1]))
    return {"training": ordered[:n_train], "validation": ordered[n_train:n_train + n_val],
            "testing": ordered[n_train + n_val:]}


# ---------------------------------------------------------------------- writing (for phantoms)
def write_camus_view(root: str | os.PathLike[str], patient: str, half_sequence: EchoVideo,
                     info: dict[str, Any], release: str = "nifti") -> Path:
    """Write one view of one patient in the CAMUS layout of ``release`` (``nifti`` or ``mhd``).

    ``half_sequence`` must have labels on every frame and ``ed``/``es`` set; ``info`` is written to
    ``Info_{view}.cfg`` after ED, ES and NbFrame.
    """
    if half_sequence.ed is None or half_sequence.es is None:
        raise ValueError("the half sequence needs ED and ES indices")
    view = half_sequence.view
    root = Path(root)
    folder = (root / "database_nifti" / patient) if release == "nifti" else (root / patient)
    folder.mkdir(parents=True, exist_ok=True)
    frames = half_sequence.frames_uint8()
    labels = half_sequence.labels
    spacing = half_sequence.spacing or (1.0, 1.0)
    ed, es = half_sequence.ed, half_sequence.es
    items = {"half_sequence": (frames, labels), "ED": (frames[ed], labels[ed] if labels is not None else None),
             "ES": (frames[es], labels[es] if labels is not None else None)}
    for instant, (image, gt) in items.items():
        if release == "nifti":
            _write_itk_nifti(folder / f"{patient}_{view}_{instant}.nii.gz", image, spacing)
            if gt is not None:
                _write_itk_nifti(folder / f"{patient}_{view}_{instant}_gt.nii.gz", gt, spacing)
        else:
            name = "sequence" if instant == "half_sequence" else instant
            stack = image if image.ndim == 3 else image[None]
            write_mhd(folder / f"{patient}_{view}_{name}.mhd", stack, (1.0, *spacing))
            if gt is not None and instant != "half_sequence":  # the first release has no sequence labels
                write_mhd(folder / f"{patient}_{view}_{name}_gt.mhd", gt[None], (1.0, *spacing))
    cfg = {"ED": ed + 1, "ES": es + 1, "NbFrame": half_sequence.n_frames, **info}
    write_info_cfg(folder / f"Info_{view}.cfg", cfg)
    return folder


def write_camus_splits(root: str | os.PathLike[str], splits: dict[str, list[str]]) -> None:
    """Write ``database_split/subgroup_{training,validation,testing}.txt``."""
    for subset in SPLITS:
        write_text_atomic(Path(root) / "database_split" / f"subgroup_{subset}.txt",
                          "".join(f"{p}\n" for p in splits.get(subset, [])))


def _write_itk_nifti(path: Path, array: np.ndarray, spacing: tuple[float, float]) -> None:
    """Write like SimpleITK does: x = column, y = row, identity LPS direction (RAS diag(-1, -1, 1))."""
    import nibabel as nib

    from echoforge.io.atomic import atomic_path

    sy, sx = spacing
    data = np.transpose(array, (2, 1, 0)) if array.ndim == 3 else array.T
    affine = np.diag([-sx, -sy, 1.0, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
