"""Build ``sample-data/``: the small committed data set that the server and the tests start from.

Everything except the real DICOM cine is regenerated from seeds by ``echoforge sample-data``:

* ``camus/``   phantom patients in the CAMUS 2023 NIfTI layout (seed 1),
* ``echonet/`` a phantom EchoNet-Dynamic mini set (seed 2),
* ``studies/`` MONAI Label studies (NIfTI H×W×T): phantom 2CH/4CH videos of three patients (seed 3),
  the first patient with ED/ES labels drawn, plus the real apical 4-chamber cine converted from DICOM,
* ``previews/`` PNG contact sheets of the studies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from echoforge.io.studies import StudiesDataset, video_name
from echoforge.io.volume import write_volume
from echoforge.phantom_datasets import write_phantom_dataset

REAL_A4C_NAME = "pydicom-data-1.0.0__color3d_jpeg_baseline.dcm"
REAL_A4C_STUDY = "real_a4c_sonosite"
LAYOUT_SEEDS = {"camus": 1, "echonet": 2, "studies": 3}


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_sample_data(out: Path, real_dicom: str | os.PathLike[str] | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """(Re)write the generated parts of ``out`` and return a summary (sizes in MB)."""
    from echoforge.io.dicom import read_dicom

    out = Path(out)
    real = Path(real_dicom) if real_dicom else out / "real" / REAL_A4C_NAME
    for part in ("camus", "echonet", "studies"):
        shutil.rmtree(out / part, ignore_errors=True)
    write_phantom_dataset(out / "camus", "camus", patients=3, seed=LAYOUT_SEEDS["camus"], progress=progress)
    write_phantom_dataset(out / "echonet", "echonet", patients=8, seed=LAYOUT_SEEDS["echonet"], progress=progress)
    write_phantom_dataset(out / "studies", "nifti", patients=3, seed=LAYOUT_SEEDS["studies"], labelled="ed-es",
                          labelled_patients=1, progress=progress)
    if real.exists():
        video = read_dicom(real).replace(view="4CH")  # an apical 4-chamber cine (see real/NOTICE); no view tag
        write_volume(video, out / "studies" / f"{REAL_A4C_STUDY}.nii.gz")
    _write_previews(out)
    report: dict[str, Any] = {"out": str(out), "real_cine": str(real) if real.exists() else None}
    for part in ("camus", "echonet", "studies", "previews", "real"):
        if (out / part).exists():
            report[f"{part}_mb"] = round(_folder_size(out / part) / 1e6, 2)
    report["total_mb"] = round(_folder_size(out) / 1e6, 2)
    report["studies"] = StudiesDataset(out / "studies").names
    report["sha256"] = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                        for p in sorted((out / "studies").glob("*.nii.gz"))}
    return report


def _write_previews(out: Path) -> None:
    """One contact sheet per study: 6 frames across the clip, labels drawn where the clinician drew them."""
    import numpy as np

    from echoforge.viz import montage, overlay, save_png

    studies = StudiesDataset(out / "studies")
    tiles, titles = [], []
    for name in studies.names:
        video = studies.load(name, labels="reference" if studies.reference_path(name) else "final")
        picks = np.linspace(0, video.n_frames - 1, 4).round().astype(int)
        for t in picks:
            labels = video.labels[t] if video.labels is not None else None
            tiles.append(overlay(video.frames[t], labels))
            titles.append(f"{video_name(name)} t={t}")
    save_png(out / "previews" / "studies.png", montage(tiles, ncols=4, titles=titles))
