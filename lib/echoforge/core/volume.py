"""Echo clips as H×W×T volumes: the orientation rule and the header fields, for every reader and writer.

An echo clip is stored as a 3-D volume whose third axis (k) is the frame axis (MONAI Label studies,
3D Slicer scalar volumes). Which of the two in-plane axes holds the image rows depends on who wrote
the file: EchoForge and MONAI Label write rows along axis i (IJK→RAS ``[[0, -sx, 0], [-sy, 0, 0],
[0, 0, 1]]``), SimpleITK (CAMUS) writes columns along axis i. The rule, the way Slicer displays it:

* of the two in-plane axes, the one most aligned with anterior–posterior (RAS y) is the row axis;
* rows are flipped when they run anterior (so that they grow downward on screen, posterior);
* columns are flipped when they run toward the patient's right (so that they grow to the
  patient's left, screen right).

:class:`FrameLayout` records the permutation and flips, so that labels computed on T×H×W frames
are written back in the file's (or the Slicer node's) own axis order and overlay exactly.

Header fields travel with the volume: NRRD ``echoforge_<key>:=<value>`` lines, and in NIfTI the
``descrip`` field (``echoforge:key=value;...``) with a comment extension for what does not fit in
its 80 bytes. The keys are :data:`FIELDS`. **Uncalibrated** (the pixel size is not known) is said in
one way only: the field ``calibrated=no``; the volume's own spacing is then a nominal 1 mm that no
measurement may use. Every writer writes it and every reader reads it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .labels import normalize_view

FRAME_AXIS = 2
#: Nominal spacing of the frame axis (it is time, not space).
FRAME_AXIS_SPACING_MM = 1.0
#: The header fields, in writing order.
FIELDS = ("view", "calibrated", "frame_time_ms", "ed", "es", "annotated_frames", "r_waves_ms")
NIFTI_PREFIX = "echoforge:"
NRRD_PREFIX = "echoforge_"
NIFTI_DESCRIP_BYTES = 79  # 80 bytes with the terminating zero
_LISTS = ("annotated_frames", "r_waves_ms")  # fields that can outgrow the NIfTI descrip


@dataclass(frozen=True)
class FrameLayout:
    """How an (i, j, k) array maps to T×H×W frames.

    Attributes:
        shape: the (i, j, k) array shape.
        ijk_to_ras: 4×4 IJK→RAS matrix (directions scaled by the spacing, and the origin).
        perm: the transpose taking (i, j, k) to (T, H, W).
        flip_rows, flip_cols: whether rows/columns are reversed after the transpose.
    """

    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray
    perm: tuple[int, int, int]
    flip_rows: bool
    flip_cols: bool

    @property
    def spacing(self) -> tuple[float, float]:
        """Pixel size (row, col) in the units of the geometry (mm), rounded like float32 headers."""
        norms = np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)
        norms = np.where(norms > 0, norms, 1.0)
        return round(float(norms[self.perm[1]]), 6), round(float(norms[self.perm[2]]), 6)

    @property
    def frames_shape(self) -> tuple[int, int, int]:
        """(T, H, W)."""
        return tuple(self.shape[a] for a in self.perm)  # type: ignore[return-value]

    def to_frames(self, ijk: np.ndarray) -> np.ndarray:
        """An (i, j, k) array as T×H×W (contiguous)."""
        if tuple(ijk.shape) != self.shape:
            raise ValueError(f"array shape {ijk.shape} differs from the layout's {self.shape}")
        arr = np.transpose(ijk, self.perm)
        if self.flip_rows:
            arr = arr[:, ::-1]
        if self.flip_cols:
            arr = arr[:, :, ::-1]
        return np.ascontiguousarray(arr)

    def from_frames(self, thw: np.ndarray) -> np.ndarray:
        """A T×H×W array back in (i, j, k) order (contiguous); the inverse of :meth:`to_frames`."""
        if tuple(thw.shape) != self.frames_shape:
            raise ValueError(f"frames of shape {thw.shape} do not fit this video ({self.frames_shape}, T×H×W)")
        arr = thw[:, ::-1] if self.flip_rows else thw
        arr = arr[:, :, ::-1] if self.flip_cols else arr
        return np.ascontiguousarray(np.transpose(arr, np.argsort(self.perm)))

    def to_slicer_array(self, thw: np.ndarray) -> np.ndarray:
        """T×H×W frames as the [k, j, i] array ``slicer.util.updateVolumeFromArray`` takes."""
        return np.ascontiguousarray(np.transpose(self.from_frames(thw), (2, 1, 0)))


def frame_layout(shape: Sequence[int], ijk_to_ras: np.ndarray) -> FrameLayout:
    """The layout of an (i, j, k) array with frames along k, from its IJK→RAS matrix (4×4, or the 3×3
    directions); see the module docstring for the rule."""
    if len(shape) != 3:
        raise ValueError(f"an echo clip is a 3-D (i, j, k) array, got shape {tuple(shape)}")
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    if matrix.shape == (3, 3):
        full = np.eye(4)
        full[:3, :3] = matrix
        matrix = full
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ValueError("the IJK→RAS matrix must be a finite 4×4 (or 3×3) matrix")
    spatial = [a for a in range(3) if a != FRAME_AXIS]
    directions = matrix[:3, spatial]
    norms = np.linalg.norm(directions, axis=0)
    unit = directions / np.where(norms > 0, norms, 1.0)
    row = int(np.argmax(np.abs(unit[1])))  # the in-plane axis most aligned with anterior-posterior
    perm = (FRAME_AXIS, spatial[row], spatial[1 - row])
    return FrameLayout(shape=tuple(int(s) for s in shape), ijk_to_ras=matrix, perm=perm,  # type: ignore[arg-type]
                       flip_rows=bool(unit[1, row] > 0), flip_cols=bool(unit[0, 1 - row] > 0))


def upright_ijk_to_ras(spacing: Optional[Sequence[float]]) -> np.ndarray:
    """The IJK→RAS matrix EchoForge writes for an (H, W, T) array: rows → posterior, columns → patient
    left, frames along +S at :data:`FRAME_AXIS_SPACING_MM`; a nominal 1 mm pixel without ``spacing``."""
    sy, sx = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    return np.array([[0.0, -sx, 0.0, 0.0],
                     [-sy, 0.0, 0.0, 0.0],
                     [0.0, 0.0, FRAME_AXIS_SPACING_MM, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


def frames_from_slicer_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> tuple[np.ndarray, FrameLayout]:
    """T×H×W frames and their layout from ``slicer.util.arrayFromVolume`` ([k, j, i]) and the node's IJK→RAS."""
    ijk = np.transpose(np.asarray(array_kji), (2, 1, 0))
    layout = frame_layout(ijk.shape, ijk_to_ras)
    return layout.to_frames(ijk), layout


# ----------------------------------------------------------------------------- header fields
def encode_fields(view: Optional[str] = None, calibrated: bool = True, frame_time_ms: Optional[float] = None,
                  ed: Optional[int] = None, es: Optional[int] = None,
                  annotated_frames: Optional[Sequence[int]] = None,
                  r_waves_ms: Optional[Sequence[float]] = None) -> dict[str, str]:
    """The header fields of a volume, as text (only the ones that say something).

    Args:
        view: ``2CH``/``4CH``/... (``unknown`` is not written).
        calibrated: whether the spacing is physical; ``False`` writes ``calibrated=no``.
        frame_time_ms: time between frames.
        ed, es: end-diastolic and end-systolic frames.
        annotated_frames: the frames of a label volume that were drawn.
        r_waves_ms: ECG R-wave times from the first frame, in ms.
    """
    fields: dict[str, str] = {}
    if view and normalize_view(view) != "unknown":
        fields["view"] = normalize_view(view)
    if not calibrated:
        fields["calibrated"] = "no"
    if frame_time_ms:
        fields["frame_time_ms"] = f"{float(frame_time_ms):.6g}"
    if ed is not None:
        fields["ed"] = str(int(ed))
    if es is not None:
        fields["es"] = str(int(es))
    if annotated_frames:
        fields["annotated_frames"] = ",".join(str(int(a)) for a in annotated_frames)
    if r_waves_ms:
        fields["r_waves_ms"] = ",".join(f"{float(t):.1f}" for t in r_waves_ms)
    return fields


def decode_fields(fields: dict[str, str]) -> dict[str, Any]:
    """The values of header fields: ``calibrated`` (always), and ``view``, ``frame_time_ms``, ``ed``, ``es``,
    ``annotated_frames`` (tuple), ``r_waves_ms`` (tuple) where present and readable.

    A damaged or foreign value is left out rather than refused: it is not worth losing the volume for.
    """
    out: dict[str, Any] = {"calibrated": str(fields.get("calibrated", "yes")).strip().lower() != "no"}
    if fields.get("view"):
        out["view"] = normalize_view(fields["view"])
    for key, kind in (("frame_time_ms", float), ("ed", int), ("es", int)):
        try:
            value = kind(str(fields[key]).strip())
        except (KeyError, ValueError):
            continue
        if kind is int or (np.isfinite(value) and value > 0):
            out[key] = value
    for key, kind in (("annotated_frames", int), ("r_waves_ms", float)):
        text = str(fields.get(key, "")).strip()
        try:
            values = tuple(kind(v) for v in re.split(r"[,\s]+", text) if v)
        except ValueError:
            continue
        if values:
            out[key] = values
    return out


def parse_field_text(text: str) -> dict[str, str]:
    """Fields from NIfTI text (``descrip`` or a comment extension): ``echoforge:key=value;key=value``."""
    text = text.strip("\x00 ")
    if not text.startswith(NIFTI_PREFIX):
        return {}
    return dict(re.findall(r"(\w+)=([^;]*)", text[len(NIFTI_PREFIX):]))


def nifti_field_texts(fields: dict[str, str]) -> tuple[str, Optional[str]]:
    """``(descrip, extension)`` texts for NIfTI: every field in ``descrip`` when it fits in 79 bytes, else
    the list fields (annotated frames, R-waves) move to a comment extension (``None`` when not needed)."""
    def join(items: dict[str, str]) -> str:
        return NIFTI_PREFIX + ";".join(f"{k}={v}" for k, v in items.items()) if items else ""

    descrip = join(fields)
    if len(descrip) <= NIFTI_DESCRIP_BYTES:
        return descrip, None
    short = {k: v for k, v in fields.items() if k not in _LISTS}
    return join(short)[:NIFTI_DESCRIP_BYTES], join({k: v for k, v in fields.items() if k in _LISTS})
