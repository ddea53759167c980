"""A folder of NIfTI/NRRD echo videos in the MONAI Label studies layout (the ``nifti`` layout)::

    studies/
      <name>.nii.gz                 a video, H×W×T (frame axis last)
      labels/final/<name>.nii.gz    the clinician's labels; the frames drawn are listed in the header
      reference/<name>.nii.gz       optional full per-frame reference labels (phantoms), for evaluation
      dataset.json                  optional manifest: per video its view, patient, split, ED/ES, true EF

``monailabel start_server --studies studies/`` serves such a folder as it is; EchoForge trains and
evaluates on it with ``--layout nifti``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoforge.errors import DatasetLayoutError
from echoforge.io.atomic import compound_suffix, write_json_atomic
from echoforge.io.volume import attach_labels, is_volume_path, read_volume
from echoforge.video import EchoVideo

MANIFEST = "dataset.json"
LABELS_DIR = Path("labels") / "final"
REFERENCE_DIR = Path("reference")


def video_name(path: str | os.PathLike[str]) -> str:
    """The id of a video file: its name without the (compound) extension."""
    name = Path(path).name
    return name[: len(name) - len(compound_suffix(name))]


@dataclass(frozen=True)
class StudiesDataset:
    """Videos of a studies folder, with their labels and manifest entries.

    Example::

        studies = StudiesDataset("sample-data/studies")
        for name in studies.names:
            video = studies.load(name)            # with the clinician's labels, if any
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetLayoutError("not a folder", root)
        object.__setattr__(self, "root", root)

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        path = self.root / MANIFEST
        if not path.exists():
            return {}
        try:
            entries = json.loads(path.read_text())["videos"]
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetLayoutError(f"{MANIFEST} is not a valid manifest ({err})", path) from None
        return {e["name"]: e for e in entries}

    @property
    def names(self) -> list[str]:
        names = sorted(video_name(p) for p in self.root.iterdir() if p.is_file() and is_volume_path(p))
        if not names:
            raise DatasetLayoutError("no NIfTI/NRRD videos found", self.root)
        return names

    def _find(self, folder: Path, name: str) -> Path | None:
        for ext in (".nii.gz", ".nii", ".nrrd"):
            path = folder / f"{name}{ext}"
            if path.exists():
                return path
        return None

    def video_path(self, name: str) -> Path:
        path = self._find(self.root, name)
        if path is None:
            raise DatasetLayoutError(f"video {name!r} not found", self.root)
        return path

    def label_path(self, name: str) -> Path | None:
        return self._find(self.root / LABELS_DIR, name)

    def reference_path(self, name: str) -> Path | None:
        return self._find(self.root / REFERENCE_DIR, name)

    def split(self, subset: str) -> list[str]:
        """Videos whose manifest ``split`` is ``subset`` (``training``, ``validation``, ``testing``)."""
        manifest = self.manifest
        return [n for n in self.names if manifest.get(n, {}).get("split") == subset]

    def load(self, name: str, labels: str = "final") -> EchoVideo:
        """Video ``name`` with its ``final`` (clinician) labels, its ``reference`` labels, or ``none``."""
        video = read_volume(self.video_path(name))
        entry = self.manifest.get(name, {})
        changes: dict[str, Any] = {"meta": {**video.meta, **entry.get("meta", {}), "name": name}}
        for key in ("view", "ed", "es", "frame_time_ms"):
            if entry.get(key) is not None and getattr(video, key) in (None, "unknown"):
                changes[key] = entry[key]
        video = video.replace(**changes)
        path = {"final": self.label_path, "reference": self.reference_path}.get(labels, lambda _: None)(name)
        return attach_labels(video, path) if path is not None else video


def write_manifest(root: str | os.PathLike[str], entries: list[dict[str, Any]]) -> Path:
    """Write ``dataset.json`` with one entry per video (``name`` required)."""
    return write_json_atomic(Path(root) / MANIFEST, {"format": "echoforge-studies", "version": 1, "videos": entries})
