"""Rendering of one view of a :class:`~echoforge.phantom.anatomy.Heart`: labels and B-mode frames.

Speckle follows the tissue: the scatterers of the myocardium and of the surrounding tissue are a
random field attached to *material* points (their probe-frame position at end-diastole), and every
frame samples it where its pixels' material points are, so the speckle pattern moves and deforms
with the wall. Blood scatterers are drawn afresh every frame (blood speckle decorrelates within a
frame interval), the near-field clutter is static.
"""

from __future__ import annotations

import cv2
import numpy as np

from echoforge.phantom.anatomy import Heart, HeartPose, Scene, Tissue, WallTables
from echoforge.phantom.scanner import ScannerStyle, SectorGrid, SectorScanner, tissue_power

_VIEW_CODES = {"4CH": 4, "2CH": 2}
_SUBPIXEL_BITS = 4            # fixed-point precision of cv2.fillPoly
_MOTION_STEP = 4              # the (smooth) tissue motion is computed on a 4× coarser polar grid
_MOTION_DECAY_MM = 12.0       # how far outside the epicardium the wall motion drags the tissue
_BASE_TAPER_MM = 15.0         # below the mitral plane the lateral wall motion fades over this
_POOL_MARGIN = 64             # the fresh-noise pool is this much larger than a frame


def fill_polygons(shape: tuple[int, int], polygons: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Paint ``(value, N×2 (col, row) pixel coordinates)`` polygons in order onto a zero uint8 image.

    Fast, for the tissue map; outlines come out about half a pixel fat (see :func:`polygon_mask`).
    """
    image = np.zeros(shape, dtype=np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    for value, points in polygons:
        fixed = np.round(points * scale).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(image, [fixed], int(value), lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return image


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """``H×W`` bool mask of the pixels whose centre lies inside a polygon (even-odd rule).

    Unlike :func:`cv2.fillPoly`, which also paints every pixel the outline touches (about half a
    pixel of extra border), this is unbiased: areas and chord lengths measured on the mask match
    the polygon's, as ground truth must.

    Args:
        shape: (H, W).
        points: ``N×2`` (col, row) vertices in pixel units, pixel centres at integer coordinates.
    """
    h, w = shape
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    rows = np.arange(max(0, int(np.ceil(y0.min()))), min(h, int(np.floor(y0.max())) + 1))
    mask = np.zeros(shape, dtype=bool)
    if rows.size == 0:
        return mask
    y = rows[:, None].astype(np.float64)
    crosses = ((y0 <= y) & (y < y1)) | ((y1 <= y) & (y < y0))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    row_index, edge_index = np.nonzero(crosses)
    # a crossing at x flips inside/outside for the pixel centres to its right
    first = np.clip(np.floor(x[row_index, edge_index]).astype(np.int64) + 1, 0, w)
    flips = np.zeros((rows.size, w + 1), dtype=np.int32)
    np.add.at(flips, (row_index, first), 1)
    mask[rows] = (np.cumsum(flips, axis=1)[:, :w] % 2).astype(bool)
    return mask


def label_map(polygons: list[tuple[int, np.ndarray]], grid: SectorGrid, sector: np.ndarray) -> np.ndarray:
    """``H×W`` uint8 CAMUS labels from probe-frame label polygons, painted in order (nothing
    outside the sector)."""
    labels = np.zeros(grid.size, dtype=np.uint8)
    for value, points in polygons:
        labels[polygon_mask(grid.size, grid.to_image_pixels(points))] = value
    labels[~sector] = 0
    return labels


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


class MaterialField:
    """Random tissue properties attached to material points, on a regular probe-frame grid.

    Channels: complex scatterer amplitude (re, im; unit total variance; a ``density`` below one
    leaves most cells without a scatterer), a coarse reflectivity texture (correlation ≈ 6 mm) and a
    fine one (≈ 0.7 mm), both unit variance.
    """

    def __init__(self, grid: SectorGrid, rng: np.random.Generator, density: float = 1.0):
        self.step_mm = 0.8 * grid.range_step_mm
        half_width = grid.depth_mm * np.sin(grid.angle_rad / 2.0) + 15.0
        self.x0, self.y0 = -half_width, -15.0
        shape = (int(np.ceil((grid.depth_mm + 30.0) / self.step_mm)), int(np.ceil(2 * half_width / self.step_mm)))
        noise = rng.standard_normal((*shape, 3), dtype=np.float32)
        if density < 1.0:  # sparse scatterers: most cells empty, the rest stronger (same mean power)
            keep = rng.random(shape, dtype=np.float32) < density
            noise[..., 0:2] *= (keep / np.sqrt(max(density, 1e-3)))[..., None]
        # the coarse texture is made on a grid 8 times coarser (same statistics, far cheaper)
        coarse = rng.standard_normal((shape[0] // 8 + 2, shape[1] // 8 + 2), dtype=np.float32)
        coarse = cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 6.0 / (8 * self.step_mm)),
                            (8 * coarse.shape[1], 8 * coarse.shape[0]), interpolation=cv2.INTER_CUBIC)
        channels = [cv2.GaussianBlur(noise[..., 0:2], (0, 0), 0.6),
                    coarse[: shape[0], : shape[1], None],
                    cv2.GaussianBlur(noise[..., 2], (0, 0), 0.7 / self.step_mm)[..., None]]
        field = np.concatenate(channels, axis=2)
        scale = np.array([np.sqrt(0.5), np.sqrt(0.5), 1.0, 1.0], np.float32) / field.reshape(-1, 4).std(axis=0)
        self.values = (field * scale).astype(np.float32)

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The field at probe-frame material positions ``x``, ``y`` (mm): ``shape × 4`` float32."""
        map_x = ((x - self.x0) / self.step_mm).astype(np.float32)
        map_y = ((y - self.y0) / self.step_mm).astype(np.float32)
        return cv2.remap(self.values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def material_heart_coordinates(x: np.ndarray, z: np.ndarray, now: WallTables, ed: WallTables
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Heart-frame positions ``(x, z)`` now → the heart-frame positions of the same tissue at ED.

    Along the axis, tissue between the (fixed) apex and the mitral plane scales with the LV length and
    the stretch fades out 50 mm beyond. Across it, a point keeps its relative depth in the wall
    (endocardium → epicardium), and outside the epicardium the wall displacement decays over
    ``_MOTION_DECAY_MM``.
    """
    far = ed.base_z + 50.0
    z_ed = z + np.interp(z, [0.0, now.base_z, far], [0.0, ed.base_z - now.base_z, 0.0])
    centre = np.interp(z, now.z, now.centre)
    offset = x - centre
    right = offset >= 0
    a = np.abs(offset)

    def side_table(table: WallTables, values: np.ndarray, at: np.ndarray) -> np.ndarray:
        return np.where(right, np.interp(at, table.z, values[1]), np.interp(at, table.z, values[0]))

    endo_now, epi_now = side_table(now, now.endo, z), side_table(now, now.epi, z)
    endo_ed, epi_ed = side_table(ed, ed.endo, z_ed), side_table(ed, ed.epi, z_ed)
    in_wall = endo_ed + (a - endo_now) * (epi_ed - endo_ed) / np.maximum(epi_now - endo_now, 1e-3)
    outside = a + (epi_ed - epi_now) * np.exp(-np.maximum(a - epi_now, 0.0) / _MOTION_DECAY_MM)
    cavity = a * endo_ed / np.maximum(endo_now, 1e-3)
    a_ed = np.where(a <= endo_now, cavity, np.where(a <= epi_now, in_wall, outside))
    x_ed = np.interp(z_ed, ed.z, ed.centre) + np.where(right, a_ed, -a_ed)
    taper = np.clip(1.0 - (z - now.base_z) / _BASE_TAPER_MM, 0.0, 1.0)
    return x + (x_ed - x) * taper, z_ed


class ViewRenderer:
    """Renders frames of one view of a heart with one scanner style at one output size.

    The random fields are seeded from ``seed`` and the view only, so the same call always gives the
    same frames (bit-identical).
    """

    def __init__(self, heart: Heart, style: ScannerStyle, view: str, size: tuple[int, int], seed: int):
        self.heart = heart
        self.style = style
        self.view = view
        self.scanner = SectorScanner(style, size)
        self.grid = grid = self.scanner.grid
        code = _VIEW_CODES[view]
        static = np.random.default_rng([seed, code, 1])
        self.material = MaterialField(grid, static, style.scatterer_density)
        shape = (grid.n_samples, grid.n_beams)
        # reverberation clutter is smeared along arcs: white noise blurred across the beams (≈ 3 mm)
        clutter = static.standard_normal((*shape, 2), dtype=np.float32)
        clutter = cv2.GaussianBlur(clutter, (0, 0), sigmaX=3.0 / (grid.angle_step_rad * grid.depth_mm * 0.3),
                                   sigmaY=0.5)
        # fresh blood scatterers and electronic noise: random windows into a larger white-noise pool
        # (two windows a pixel apart are independent), much cheaper than new draws every frame
        pool = (shape[0] + _POOL_MARGIN, shape[1] + _POOL_MARGIN, 4)
        self._pool = static.standard_normal(pool, dtype=np.float32) * np.float32(np.sqrt(0.5))
        self._rng = np.random.default_rng([seed, code, 2])
        self._x, self._y = (v.astype(np.float32) for v in grid.polar_positions())
        self._coarse_x, self._coarse_y = self._coarse_positions()
        self._ed_pose = heart.pose(view, 0.0)
        self._ed_walls = heart.wall_tables(view, 0.0)
        self._background_gain = self._background(static)
        self.clutter = clutter * self._speckle_normalisation(clutter)
        self._tissue_scale = self._speckle_normalisation(self.material.sample(self._x, self._y)[..., 0:2])
        self._previous: np.ndarray | None = None

    def _speckle_normalisation(self, field: np.ndarray) -> np.ndarray:
        """``n_samples × 1 × 1`` factors that give a correlated scatterer ``field`` unit mean power
        after the PSF.

        The material field is correlated over several polar samples (beams converge towards the
        probe) and the clutter is smeared across beams, so the PSF sums them partly coherently; the
        gain depends on depth and is measured once.
        """
        beamformed = self.scanner.point_spread(np.ascontiguousarray(field))
        power = (beamformed**2).sum(axis=-1).mean(axis=1)
        power = np.convolve(np.pad(power, 8, mode="edge"), np.ones(17) / 17.0, mode="valid")
        return (1.0 / np.sqrt(power))[:, None, None].astype(np.float32)

    def _coarse_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Probe-frame positions of a grid ``_MOTION_STEP`` times coarser, with cell centres where
        :func:`cv2.resize` puts them when it upsamples back."""
        g = self.grid
        step = _MOTION_STEP
        rows = (np.arange(-(-g.n_samples // step)) + 0.5) * step - 0.5
        cols = (np.arange(-(-g.n_beams // step)) + 0.5) * step - 0.5
        r = (rows[:, None] + 0.5) * g.range_step_mm
        theta = -g.angle_rad / 2.0 + (cols[None, :] + 0.5) * g.angle_step_rad
        return r * np.sin(theta), r * np.cos(theta)

    def _upsample(self, coarse: np.ndarray) -> np.ndarray:
        g = self.grid
        h, w = coarse.shape[:2]
        full = cv2.resize(coarse.astype(np.float32), (w * _MOTION_STEP, h * _MOTION_STEP),
                          interpolation=cv2.INTER_LINEAR)
        return full[: g.n_samples, : g.n_beams]

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """Static brightness of the tissue around the heart: chest-wall layers near the probe, bright
        fibrous and fatty tissue behind the atria (the bottom of an apical view), and dark lung beside
        the free wall (4CH lateral, and beyond the right ventricle)."""
        a = self.heart.anatomy
        y = self._y
        layers = np.ones_like(y)
        chest = self.style.chest_wall_mm
        for depth, width, level in zip(rng.uniform(1.0, chest, 4), rng.uniform(0.5, 1.5, 4),
                                       rng.uniform(3.0, 10.0, 4), strict=True):
            layers += level * np.exp(-0.5 * ((y - depth) / width) ** 2)
        layers += 4.0 * _sigmoid((chest - y) / 1.5)
        xh, zh = self._ed_pose.to_heart(self._x, y)
        roof = a.lv_length_mm + 0.9 * a.la_length_mm
        posterior = 10.0 ** (rng.uniform(10.0, 16.0) / 10.0) * _sigmoid((zh - roof) / 5.0)
        reach = (a.lv_radius4_mm if self.view == "4CH" else a.lv_radius2_mm) + a.wall_mm + 10.0
        beside = _sigmoid((zh + 5.0) / 6.0) * _sigmoid((0.9 * a.lv_length_mm - zh) / 8.0)
        lung = a.lung_right * beside * _sigmoid((xh - reach) / 6.0)
        if self.view == "4CH":
            rv_reach = reach + a.rv_width_mm + 12.0
            lung = lung + a.lung_left * beside * _sigmoid(-(xh + rv_reach) / 6.0)
        return ((layers + posterior) * (1.0 - 0.85 * np.clip(lung, 0.0, 1.0))).astype(np.float32)

    def _motion_and_gain(self, scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Material positions (probe frame, mm) of every polar sample and the brightness map."""
        pose: HeartPose = scene.pose
        xh, zh = pose.to_heart(self._coarse_x, self._coarse_y)
        x_ed, z_ed = material_heart_coordinates(xh, zh, scene.walls, self._ed_walls)
        material = self._ed_pose.to_probe(np.stack([x_ed, z_ed], axis=-1))
        gain = np.ones_like(xh)
        septal = 10.0 ** (self.style.septum_gain_db / 10.0) - 1.0
        for bx, bz, rx, rz, weight in scene.brightness:
            gain += weight * septal * np.exp(-((xh - bx) / rx) ** 2 - ((zh - bz) / rz) ** 2)
        dx, dz, rx, rz = scene.dropout
        gain *= 1.0 - self.style.dropout * np.exp(-((xh - dx) / rx) ** 2 - ((zh - dz) / rz) ** 2)
        shift = np.stack([material[..., 0] - self._coarse_x, material[..., 1] - self._coarse_y, gain], axis=-1)
        full = self._upsample(shift)
        return self._x + full[..., 0], self._y + full[..., 1], full[..., 2]

    def labels(self, phase: float) -> np.ndarray:
        """``H×W`` uint8 ground-truth labels at ``phase``."""
        return label_map(self.heart.label_polygons(self.view, phase), self.grid, self.scanner.sector)

    def frame(self, phase: float) -> tuple[np.ndarray, np.ndarray]:
        """The next frame of the clip at ``phase``: (``H×W`` float32 image in [0, 1], ``H×W`` labels).

        Frames must be requested in clip order: the persistence filter blends in the previous one.
        """
        g = self.grid
        scene = self.heart.scene(self.view, phase)
        classes = fill_polygons((g.n_samples, g.n_beams),
                                [(int(kind), g.to_polar_pixels(p)) for kind, p in scene.tissue])
        material_x, material_y, gain = self._motion_and_gain(scene)
        properties = self.material.sample(material_x, material_y)
        gain = np.where(classes == Tissue.BACKGROUND, gain * self._background_gain, gain)
        power = tissue_power(classes, properties[..., 2], properties[..., 3], gain, self.style, g)
        row, col = self._rng.integers(0, _POOL_MARGIN + 1, size=2)
        fresh = self._pool[row: row + g.n_samples, col: col + g.n_beams]
        blood = (classes == Tissue.BLOOD)[..., None]
        scatterers = np.where(blood, fresh[..., 0:2], properties[..., 0:2] * self._tissue_scale)
        field = self.scanner.echo_field(power, scatterers, self.clutter, fresh[..., 2:4])
        polar = self.scanner.log_compress(self.scanner.envelope(field))
        if self._previous is not None and self.style.persistence > 0:
            polar = (1.0 - self.style.persistence) * polar + self.style.persistence * self._previous
        self._previous = polar
        return self.scanner.scan_convert(polar), label_map(scene.labels, g, self.scanner.sector)
