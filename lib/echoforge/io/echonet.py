"""EchoNet-Dynamic, read exactly as it is downloaded::

    EchoNet-Dynamic/
      FileList.csv        FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
      VolumeTracings.csv  FileName,X1,Y1,X2,Y2,Frame
      Videos/<FileName>.avi

Each traced frame has 21 rows in ``VolumeTracings.csv``: the first is the LV long axis, the next 20
are the method-of-disks chords. The LV mask is rasterised as EchoNet does: a polygon through the
chords' first end points followed by their second end points in reverse order
(``skimage.draw.polygon`` on rounded coordinates). Frames whose tracing does not have 21 rows are
discarded, like the reference loader. The traced frames are the annotated ones; of the two, the one
with the larger traced area is ED (the reference loader takes the last traced frame in file order as
"large", which is the same frame in the released data). Videos with no tracing (a handful in the
release) load without labels. EchoNet videos carry no pixel spacing: distances are in pixels.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echoforge import labels as L
from echoforge.errors import DatasetLayoutError
from echoforge.io.atomic import write_text_atomic
from echoforge.io.avi import read_avi
from echoforge.video import EchoVideo

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
ROWS_PER_TRACING = 21
SPLITS = ("TRAIN", "VAL", "TEST")


def tracing_to_mask(tracing: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise one traced frame (``21×4``: X1, Y1, X2, Y2) to an ``H×W`` bool LV mask."""
    import skimage.draw

    x1, y1, x2, y2 = tracing[:, 0], tracing[:, 1], tracing[:, 2], tracing[:, 3]
    x = np.concatenate((x1[1:], np.flip(x2[1:])))
    y = np.concatenate((y1[1:], np.flip(y2[1:])))
    rows, cols = skimage.draw.polygon(np.rint(y).astype(int), np.rint(x).astype(int), shape)
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def mask_to_tracing(mask: np.ndarray, apex: tuple[float, float], base_mid: tuple[float, float],
                    n_disks: int = ROWS_PER_TRACING - 1) -> np.ndarray:
    """Describe an LV mask the way EchoNet tracings do: ``21×4`` rows of (X1, Y1, X2, Y2).

    Row 0 is the long axis (apex → mitral-plane midpoint); rows 1..20 are the chords perpendicular
    to it at the centres of 20 equal disks, each ending where the mask ends on either side.

    Args:
        mask: ``H×W`` bool LV mask.
        apex, base_mid: long-axis end points as (x, y) = (column, row) in pixels.
    """
    apex_p = np.asarray(apex, dtype=float)
    base_p = np.asarray(base_mid, dtype=float)
    length = float(np.linalg.norm(apex_p - base_p))
    if length < 1.0:
        raise ValueError("the long axis is shorter than a pixel")
    axis = (apex_p - base_p) / length
    normal = np.array([-axis[1], axis[0]])
    centres = base_p + np.outer((np.arange(n_disks) + 0.5) / n_disks * length, axis)  # n × 2
    steps = np.arange(0.0, float(np.hypot(*mask.shape)), 0.25)
    h, w = mask.shape
    ends = []
    for sign in (1.0, -1.0):
        pts = centres[:, None, :] + sign * steps[None, :, None] * normal  # n × S × 2
        cols = np.clip(np.rint(pts[..., 0]).astype(int), 0, w - 1)
        rows = np.clip(np.rint(pts[..., 1]).astype(int), 0, h - 1)
        inside = mask[rows, cols] & (pts[..., 0] >= 0) & (pts[..., 0] < w) & (pts[..., 1] >= 0) & (pts[..., 1] < h)
        # the chord ends at the last sample before the first one outside the mask
        first_out = np.where(inside.all(axis=1), len(steps), np.argmin(inside, axis=1))
        reach = steps[np.maximum(first_out - 1, 0)]
        ends.append(centres + sign * reach[:, None] * normal)
    chords = np.concatenate([ends[0], ends[1]], axis=1)
    return np.vstack([np.concatenate([apex_p, base_p])[None], chords])


@dataclass
class EchoNetDataset:
    """An EchoNet-Dynamic download on disk.

    Example::

        echonet = EchoNetDataset("~/data/EchoNet-Dynamic")
        test = echonet.split("TEST")
        video = echonet.load(test[0])          # LV labels on the two traced frames
    """

    root: Path
    _files: dict[str, dict[str, str]] = field(init=False, repr=False)
    _tracings: dict[str, dict[int, np.ndarray]] = field(init=False, repr=False)

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser()
        filelist = self.root / "FileList.csv"
        if not filelist.exists():
            raise DatasetLayoutError("FileList.csv not found (is this an EchoNet-Dynamic download?)", self.root)
        self._files = {}
        with open(filelist, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"FileName", "Split"} - set(reader.fieldnames or ())
            if missing:
                raise DatasetLayoutError(f"FileList.csv lacks column(s) {sorted(missing)}", filelist)
            for row in reader:
                self._files[_stem(row["FileName"])] = row
        self._tracings = _read_tracings(self.root / "VolumeTracings.csv")

    @property
    def files(self) -> list[str]:
        """Video names (without ``.avi``), in FileList order."""
        return list(self._files)

    def split(self, subset: str) -> list[str]:
        """Videos of the official split ``TRAIN``, ``VAL`` or ``TEST``."""
        subset = subset.upper()
        if subset not in SPLITS:
            raise ValueError(f"subset must be one of {SPLITS}, got {subset!r}")
        return [name for name, row in self._files.items() if row["Split"].strip().upper() == subset]

    def tracings(self, name: str) -> dict[int, np.ndarray]:
        """Frame index → ``21×4`` tracing, for the frames with a complete tracing."""
        return self._tracings.get(_stem(name), {})

    def video_path(self, name: str) -> Path:
        return self.root / "Videos" / f"{_stem(name)}.avi"

    def load(self, name: str, with_labels: bool = True) -> EchoVideo:
        name = _stem(name)
        if name not in self._files:
            raise DatasetLayoutError(f"video {name!r} is not listed in FileList.csv", self.root)
        row = self._files[name]
        video = read_avi(self.video_path(name))
        meta: dict[str, Any] = {"dataset": "EchoNet-Dynamic", "file": name, "split": row.get("Split", "")}
        for key in ("EF", "EDV", "ESV"):
            if row.get(key, "").strip():
                meta[f"reference_{key.lower()}"] = float(row[key])
        fps = float(row["FPS"]) if row.get("FPS", "").strip() else video.fps
        video = video.replace(view="4CH", meta=meta, frame_time_ms=1000.0 / fps if fps else None)
        traced = {f: t for f, t in self.tracings(name).items() if f < video.n_frames}
        if not with_labels or not traced:
            return video
        labels = np.zeros(video.frames.shape, dtype=np.uint8)
        areas = {}
        for frame, tracing in traced.items():
            mask = tracing_to_mask(tracing, video.shape)
            labels[frame][mask] = L.LV
            areas[frame] = int(mask.sum())
        ed = max(areas, key=areas.__getitem__)
        es = min(areas, key=areas.__getitem__) if len(areas) > 1 else None
        return video.replace(ed=ed, es=es).with_labels(labels, sorted(traced))


def _stem(name: str) -> str:
    name = name.strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def _read_tracings(path: Path) -> dict[str, dict[int, np.ndarray]]:
    if not path.exists():
        return {}
    rows: dict[str, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(TRACING_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DatasetLayoutError(f"VolumeTracings.csv lacks column(s) {sorted(missing)}", path)
        for row in reader:
            rows[_stem(row["FileName"])][int(float(row["Frame"]))].append(
                [float(row["X1"]), float(row["Y1"]), float(row["X2"]), float(row["Y2"])])
    return {name: {frame: np.asarray(pts) for frame, pts in frames.items() if len(pts) == ROWS_PER_TRACING}
            for name, frames in rows.items()}


# ---------------------------------------------------------------------- writing (for phantoms)
def write_echonet(root: str | os.PathLike[str], entries: list[dict[str, Any]]) -> Path:
    """Write ``FileList.csv`` and ``VolumeTracings.csv`` for ``entries``.

    Each entry: ``FileName`` (no extension), ``EF``, ``ESV``, ``EDV``, ``FrameHeight``,
    ``FrameWidth``, ``FPS``, ``NumberOfFrames``, ``Split`` and ``tracings`` = {frame: 21×4 array}
    (frames listed in the order they are written: EchoNet lists the ES (small) trace before ED).
    The AVIs are written separately (:func:`echoforge.io.avi.write_avi` into ``Videos/``).
    """
    root = Path(root)
    lines = [",".join(FILELIST_COLUMNS)]
    traces = [",".join(TRACING_COLUMNS)]
    for entry in entries:
        values = [entry["FileName"]] + [_fmt(entry[c]) for c in FILELIST_COLUMNS[1:]]
        lines.append(",".join(values))
        for frame, tracing in entry.get("tracings", {}).items():
            for x1, y1, x2, y2 in np.asarray(tracing, dtype=float):
                traces.append(f"{entry['FileName']}.avi,{x1:.6f},{y1:.6f},{x2:.6f},{y2:.6f},{int(frame)}")
    write_text_atomic(root / "FileList.csv", "\n".join(lines) + "\n")
    write_text_atomic(root / "VolumeTracings.csv", "\n".join(traces) + "\n")
    return root


def _fmt(value: Any) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
