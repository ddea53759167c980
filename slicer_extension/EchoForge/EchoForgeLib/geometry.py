"""From a volume's array and IJK→RAS geometry to the T×H×W frames the server and the measurements use, and back.

An echo clip is stored as a 3-D volume whose third axis (k) is the frame axis. Which of the two
in-plane axes holds the image rows depends on who wrote the file: EchoForge and MONAI Label write
rows along axis i (affine ``[[0, -sx, 0], [-sy, 0, 0], [0, 0, 1]]``), SimpleITK (CAMUS) writes
columns along axis i. The rule, the same as the ``echoforge`` library's:

* of the two in-plane axes, the one most aligned with anterior–posterior (RAS y) is the row axis;
* rows are flipped when they run anterior (so that they grow downward on screen, posterior);
* columns are flipped when they run toward the patient's right (so that they grow to the
  patient's left, screen right).

:class:`FrameLayout` records the permutation and flips, so that labels computed on T×H×W frames
are written back in the file's (or the Slicer node's) own axis order and overlay exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

FRAME_AXIS = 2


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


def frame_layout(shape: tuple[int, ...], ijk_to_ras: np.ndarray) -> FrameLayout:
    """The layout of an (i, j, k) array with frames along k, from its IJK→RAS matrix (see the module docstring)."""
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


def upright_ijk_to_ras(spacing: Optional[tuple[float, float]]) -> np.ndarray:
    """The IJK→RAS matrix EchoForge writes for an (H, W, T) array: rows → posterior, columns → patient left."""
    sy, sx = spacing if spacing else (1.0, 1.0)
    return np.array([[0.0, -sx, 0.0, 0.0],
                     [-sy, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


def frames_from_slicer_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> tuple[np.ndarray, FrameLayout]:
    """T×H×W frames and their layout from ``slicer.util.arrayFromVolume`` ([k, j, i]) and the node's IJK→RAS."""
    ijk = np.transpose(np.asarray(array_kji), (2, 1, 0))
    layout = frame_layout(ijk.shape, ijk_to_ras)
    return layout.to_frames(ijk), layout
