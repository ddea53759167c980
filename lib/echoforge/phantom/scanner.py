"""Image formation of the phantom: a phased-array sector scanner.

The echo is formed in the polar (range × beam) domain, as a scanner does, and scan-converted to a
Cartesian image at the end, so the lateral speckle size grows with depth:

1. scatterers: complex Gaussian amplitudes (fully developed speckle) times ``sqrt(echogenicity)``;
   attenuation, imperfect time-gain compensation, near-field haze and electronic noise join here;
2. point-spread function: a separable Gaussian, ``axial_psf_mm`` along the beam and an angular width
   that is narrowest at the focus, plus a wide low-level side lobe;
3. envelope detection (modulus), log compression to ``dynamic_range_db``, a grey map (gamma);
4. persistence (frame averaging) and scan conversion (bilinear) to the output grid; 0 outside the fan.

Echogenicities are powers relative to myocardium (0 dB) at the same depth with an ideal TGC.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from echoforge.phantom.anatomy import Tissue


@dataclass(frozen=True)
class ScannerStyle:
    """Settings of one simulated scanner and preset (randomised per patient by :meth:`sample`).

    Geometry
        depth_mm: imaging depth (radius of the fan). ``sector_angle_deg``: opening angle of the fan.
    Resolution (speckle size)
        axial_psf_mm: σ of the pulse envelope along the beam.
        lateral_psf_deg: σ of the beam profile at the focus, as an angle (wider in mm with depth).
        focus_depth_mm: transmit focus. defocus: relative beam widening one focal distance away.
        side_lobe_db: level of a wide lateral side lobe that smears bright echoes sideways.
    Tissue contrast (dB relative to myocardium)
        blood_db, background_db, pericardium_db, valve_db; texture: σ (natural-log units) of the
        slowly varying tissue reflectivity; specular_db: strength of the interfaces met head-on.
        septum_gain_db: extra brightness of the septum (specular, near the beam axis).
        anisotropy_db: loss of a fibrous wall running along the beam relative to one facing it.
    Gain chain
        attenuation_db_cm: round-trip attenuation. tgc_compensation: the fraction of it the TGC undoes.
        tgc_ripple_db: gain errors at 5 equally spaced depths (interpolated smoothly).
        gain_db: overall gain (at 0 dB myocardium sits at 45 % of the display window).
        dynamic_range_db: the window of the log compression. gray_gamma: exponent of the grey map
        (> 1 darkens the low echoes).
        noise_db: electronic noise at the skin (grows with depth by the TGC).
    Artefacts
        haze_db / haze_depth_mm: near-field clutter decaying with depth (it also veils the apex).
        reverberation_db / chest_wall_mm: reverberation bands at multiples of the chest-wall depth.
        dropout: loss (0-1) of the lateral (4CH) or anterior (2CH) wall, parallel to the beams.
        rib_shadow: depth of an acoustic shadow (0 none) at ``rib_shadow_deg`` from the centre.
        edge_falloff: loss of sensitivity towards the sector edges (0-1).
        scatterer_density: fraction of tissue cells holding a scatterer (1 = fully developed speckle;
            less = sparse, spotty speckle).
    Processing
        persistence: frame averaging weight of the previous frame (0-1).
        smoothing_px: σ of the display smoothing after scan conversion, in output pixels.
    """

    depth_mm: float = 160.0
    sector_angle_deg: float = 76.0
    axial_psf_mm: float = 0.32
    lateral_psf_deg: float = 0.45
    focus_depth_mm: float = 80.0
    defocus: float = 0.5
    side_lobe_db: float = -28.0
    blood_db: float = -28.0
    background_db: float = -16.0
    pericardium_db: float = 5.0
    valve_db: float = 7.0
    texture: float = 0.45
    specular_db: float = 9.0
    septum_gain_db: float = 5.0
    anisotropy_db: float = 5.0
    attenuation_db_cm: float = 2.5
    tgc_compensation: float = 0.85
    tgc_ripple_db: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    gain_db: float = 0.0
    dynamic_range_db: float = 52.0
    gray_gamma: float = 1.2
    noise_db: float = -63.0
    haze_db: float = -3.0
    haze_depth_mm: float = 18.0
    reverberation_db: float = -23.0
    chest_wall_mm: float = 12.0
    dropout: float = 0.6
    rib_shadow: float = 0.0
    rib_shadow_deg: float = 25.0
    edge_falloff: float = 0.5
    persistence: float = 0.15
    smoothing_px: float = 0.25
    scatterer_density: float = 1.0

    @classmethod
    def sample(cls, rng: np.random.Generator, shifted: bool = False) -> ScannerStyle:
        """A random scanner/preset. ``shifted`` draws from another domain: coarser speckle (lower
        frequency probe), brighter gain, lower dynamic range, deeper and narrower sector, more haze."""
        u = rng.uniform
        if shifted:
            geometry = {"depth_mm": u(170.0, 210.0), "sector_angle_deg": u(62.0, 70.0),
                        "axial_psf_mm": u(0.5, 0.7), "lateral_psf_deg": u(0.7, 0.9),
                        "gain_db": u(2.0, 5.0), "dynamic_range_db": u(40.0, 48.0),
                        "gray_gamma": u(0.9, 1.15), "haze_db": u(-3.0, 2.0),
                        "persistence": u(0.35, 0.5), "smoothing_px": u(0.5, 0.9)}
        else:
            geometry = {"depth_mm": u(140.0, 175.0), "sector_angle_deg": u(72.0, 82.0),
                        "axial_psf_mm": u(0.25, 0.4), "lateral_psf_deg": u(0.35, 0.55),
                        "gain_db": u(-6.0, 3.0), "dynamic_range_db": u(45.0, 58.0),
                        "gray_gamma": u(1.0, 1.4), "haze_db": u(-6.0, 0.0),
                        "persistence": u(0.0, 0.3), "smoothing_px": u(0.0, 0.5)}
        return cls(
            focus_depth_mm=u(60.0, 110.0), defocus=u(0.3, 0.7), side_lobe_db=u(-32.0, -24.0),
            blood_db=u(-32.0, -24.0), background_db=u(-19.0, -13.0), pericardium_db=u(3.0, 8.0),
            valve_db=u(5.0, 10.0), texture=u(0.35, 0.6), specular_db=u(6.0, 12.0),
            septum_gain_db=u(3.0, 8.0), anisotropy_db=u(3.0, 7.0), attenuation_db_cm=u(1.8, 3.2),
            tgc_compensation=u(0.7, 1.0),
            tgc_ripple_db=tuple(float(v) for v in rng.normal(0.0, 1.5, 5)),
            noise_db=u(-68.0, -58.0), haze_depth_mm=u(12.0, 25.0), reverberation_db=u(-28.0, -18.0),
            chest_wall_mm=u(8.0, 16.0), dropout=u(0.3, 0.9),
            rib_shadow=u(0.4, 0.9) if u() < 0.2 else 0.0, rib_shadow_deg=u(18.0, 32.0) * rng.choice([-1, 1]),
            edge_falloff=u(0.3, 0.7), **{k: float(v) for k, v in geometry.items()})

    def replace(self, **changes: Any) -> ScannerStyle:
        """A copy with some settings changed, e.g. ``style.replace(gain_db=5.0)``."""
        return dataclasses.replace(self, **changes)

    def tissue_db(self) -> np.ndarray:
        """Echogenicity (dB) of each :class:`Tissue`, indexed by its value; the thin walls, fat,
        trabeculae and papillary muscles have fixed levels relative to the myocardium."""
        table = np.zeros(len(Tissue), dtype=np.float32)
        table[Tissue.BACKGROUND] = self.background_db
        table[Tissue.BLOOD] = self.blood_db
        table[Tissue.MYOCARDIUM] = 0.0
        table[Tissue.THIN_WALL] = -9.0
        table[Tissue.PERICARDIUM] = self.pericardium_db
        table[Tissue.VALVE] = self.valve_db
        table[Tissue.FAT] = -2.0
        table[Tissue.LUNG] = self.background_db - 6.0
        table[Tissue.TRABECULAE] = -9.0
        table[Tissue.PAPILLARY] = -1.0
        table[Tissue.VESSEL_WALL] = self.pericardium_db - 2.0
        return table


#: σ (natural-log units) of the coarse and fine reflectivity texture of each tissue, relative to
#: ``ScannerStyle.texture``; and an acoustic impedance proxy that makes interfaces specular.
_COARSE_TEXTURE = np.array([1.6, 0.5, 1.6, 1.2, 1.4, 0.4, 1.4, 2.0, 0.6, 1.0, 0.8], dtype=np.float32)
_FINE_TEXTURE = np.array([0.6, 0.3, 1.1, 0.8, 0.8, 0.3, 0.8, 0.8, 2.6, 0.8, 0.6], dtype=np.float32)
_IMPEDANCE = np.array([0.55, 0.0, 1.0, 0.9, 1.4, 1.2, 0.9, 0.3, 0.35, 0.9, 1.3], dtype=np.float32)
#: Fibrous tissues whose reflectivity depends on the beam angle.
_FIBROUS = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1], dtype=np.float32)


@dataclass(frozen=True)
class SectorGrid:
    """Sampling of a sector scan for one output size.

    The polar grid has ``n_samples`` ranges (rows) × ``n_beams`` beam angles (columns), sample
    centres at ``(i + 0.5)·depth/n_samples`` and ``-angle/2 + (j + 0.5)·angle/n_beams``. The output
    image is ``size`` = (H, W) pixels of ``spacing_mm`` with the probe at the top centre and the whole
    fan inside; pixel ``(row, col)`` is centred at ``(x_left + (col + 0.5)·s, y_top + (row + 0.5)·s)``.
    """

    depth_mm: float
    angle_rad: float
    size: tuple[int, int]
    n_samples: int
    n_beams: int
    spacing_mm: float
    x_left_mm: float
    y_top_mm: float
    ranges: np.ndarray = field(repr=False)       # (n_samples,)
    angles: np.ndarray = field(repr=False)       # (n_beams,)

    @classmethod
    def create(cls, depth_mm: float, angle_deg: float, size: tuple[int, int]) -> SectorGrid:
        h, w = (int(v) for v in size)
        angle = math.radians(angle_deg)
        fan_width = 2.0 * depth_mm * math.sin(angle / 2.0)
        margin = 0.015 * depth_mm
        spacing = max(fan_width * 1.02 / w, (depth_mm + 2.0 * margin) / h)
        n_samples = int(math.ceil(1.6 * depth_mm / spacing))
        n_beams = int(math.ceil(1.15 * depth_mm * angle / spacing))
        ranges = (np.arange(n_samples) + 0.5) * depth_mm / n_samples
        angles = -angle / 2.0 + (np.arange(n_beams) + 0.5) * angle / n_beams
        return cls(depth_mm=float(depth_mm), angle_rad=angle, size=(h, w), n_samples=n_samples,
                   n_beams=n_beams, spacing_mm=float(spacing), x_left_mm=-w * spacing / 2.0,
                   y_top_mm=-margin, ranges=ranges, angles=angles)

    @property
    def range_step_mm(self) -> float:
        return self.depth_mm / self.n_samples

    @property
    def angle_step_rad(self) -> float:
        return self.angle_rad / self.n_beams

    def polar_positions(self, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Probe-frame (x, y) of the polar samples (every ``step``-th), each ``n_samples × n_beams``."""
        r = self.ranges[::step, None]
        a = self.angles[None, ::step]
        return r * np.sin(a), r * np.cos(a)

    def to_polar_pixels(self, points: np.ndarray) -> np.ndarray:
        """``N×2`` probe-frame mm → ``N×2`` (beam, sample) fractional indices."""
        theta = np.arctan2(points[:, 0], points[:, 1])
        r = np.hypot(points[:, 0], points[:, 1])
        return np.stack([(theta + self.angle_rad / 2.0) / self.angle_step_rad - 0.5,
                         r / self.range_step_mm - 0.5], axis=1)

    def to_image_pixels(self, points: np.ndarray) -> np.ndarray:
        """``N×2`` probe-frame mm → ``N×2`` (col, row) fractional output-pixel coordinates."""
        return np.stack([(points[:, 0] - self.x_left_mm) / self.spacing_mm - 0.5,
                         (points[:, 1] - self.y_top_mm) / self.spacing_mm - 0.5], axis=1)

    def scan_conversion_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(beam map, sample map) float32 for :func:`cv2.remap` and the ``H×W`` bool sector mask."""
        h, w = self.size
        x = self.x_left_mm + (np.arange(w) + 0.5) * self.spacing_mm
        y = self.y_top_mm + (np.arange(h) + 0.5) * self.spacing_mm
        xx, yy = np.meshgrid(x, y)
        theta = np.arctan2(xx, yy)
        r = np.hypot(xx, yy)
        beam = (theta + self.angle_rad / 2.0) / self.angle_step_rad - 0.5
        sample = r / self.range_step_mm - 0.5
        sector = (r <= self.depth_mm) & (np.abs(theta) <= self.angle_rad / 2.0) & (yy > 0)
        return beam.astype(np.float32), sample.astype(np.float32), sector


def _unit_gain_kernel(sigma: float) -> np.ndarray:
    """A 1-D Gaussian kernel with unit sum (a smoothing that keeps levels)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _energy_kernel(sigma: float) -> np.ndarray:
    """A 1-D Gaussian kernel with unit energy (Σk² = 1): it keeps the variance of white noise."""
    sigma = max(sigma, 0.35)
    radius = max(1, int(math.ceil(3.5 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / np.sqrt(np.sum(k**2))).astype(np.float32)


class SectorScanner:
    """Turns scatterer fields into B-mode frames for one :class:`ScannerStyle` and output size.

    Example::

        scanner = SectorScanner(style, (256, 256))
        polar = scanner.bmode(scanner.echo_field(power, scatterers, clutter, noise))
        image = scanner.scan_convert(polar)
    """

    def __init__(self, style: ScannerStyle, size: tuple[int, int]):
        self.style = style
        self.grid = grid = SectorGrid.create(style.depth_mm, style.sector_angle_deg, size)
        r = grid.ranges[:, None]
        theta = grid.angles[None, :]
        r_cm = r / 10.0
        ripple = np.interp(r, np.linspace(0.0, grid.depth_mm, len(style.tgc_ripple_db)), style.tgc_ripple_db)
        residual_db = -(1.0 - style.tgc_compensation) * style.attenuation_db_cm * r_cm + ripple
        edge = 1.0 - style.edge_falloff * (np.abs(theta) / (grid.angle_rad / 2.0)) ** 4
        amplitude = 10.0 ** (residual_db / 20.0) * edge
        if style.rib_shadow > 0:
            window = np.exp(-0.5 * ((theta - math.radians(style.rib_shadow_deg)) / math.radians(4.0)) ** 2)
            beyond = 1.0 / (1.0 + np.exp(-(r - style.chest_wall_mm) / 2.0))
            amplitude = amplitude * (1.0 - style.rib_shadow * window * beyond)
        #: (n_samples, n_beams) amplitude gain applied to the echoes (not to haze).
        self.echo_gain = amplitude.astype(np.float32)
        tgc_db = style.tgc_compensation * style.attenuation_db_cm * r_cm + ripple
        #: (n_samples, 1) amplitude of the electronic noise, amplified by the TGC.
        self.noise_gain = (10.0 ** ((style.noise_db + tgc_db) / 20.0)).astype(np.float32)
        reverberation = sum(0.6**k * np.exp(-0.5 * ((r - k * style.chest_wall_mm) / 1.8) ** 2)
                            for k in range(1, 4))
        haze = (10.0 ** (style.haze_db / 10.0) * np.exp(-r / style.haze_depth_mm)
                + 10.0 ** (style.reverberation_db / 10.0) * reverberation)
        #: (n_samples, 1) power of the near-field clutter.
        self.haze_power = haze.astype(np.float32)
        self._axial = _energy_kernel(style.axial_psf_mm / grid.range_step_mm)
        lateral = math.radians(style.lateral_psf_deg) / grid.angle_step_rad
        self._lateral_focus = _energy_kernel(lateral)
        self._lateral_far = _energy_kernel(lateral * (1.0 + style.defocus))
        self._side_lobe_width = 2 * int(round(lateral * 8.0)) + 1
        defocus = np.clip(np.abs(r - style.focus_depth_mm) / style.focus_depth_mm, 0.0, 1.0)
        self._far_weight = defocus.astype(np.float32)[..., None]
        self._side_lobe_level = 10.0 ** (style.side_lobe_db / 20.0)
        # the focus/far blend and the side lobe change the power a little, differently with depth:
        # measure it once on white noise so the PSF keeps the power of white scatterers
        self._psf_scale = np.ones((grid.n_samples, 1, 1), np.float32)
        white = np.random.default_rng(0).standard_normal((grid.n_samples, max(grid.n_beams, 256), 2),
                                                          dtype=np.float32)
        power = (self.point_spread(white) ** 2).sum(axis=-1).mean(axis=1) / 2.0
        power = np.convolve(np.pad(power, 8, mode="edge"), np.ones(17) / 17.0, mode="valid")
        self._psf_scale = (1.0 / np.sqrt(power)).astype(np.float32)[:, None, None]
        self._maps = grid.scan_conversion_maps()
        pixel = 0.4 * grid.spacing_mm
        self._antialias = (max(pixel / (grid.angle_step_rad * grid.depth_mm * 0.6), 0.3),
                           max(pixel / grid.range_step_mm, 0.3))

    @property
    def sector(self) -> np.ndarray:
        return self._maps[2]

    def echo_field(self, power: np.ndarray, scatterers: np.ndarray, clutter: np.ndarray,
                   noise: np.ndarray) -> np.ndarray:
        """The received complex field before the PSF: ``n_samples × n_beams × 2`` (re, im) float32.

        Args:
            power: ``n_samples × n_beams`` echogenicity (linear power, myocardium = 1).
            scatterers: complex Gaussian scatterers of the tissue (``… × 2``, unit variance).
            clutter: complex Gaussian scatterers of the near-field haze (``… × 2``).
            noise: complex Gaussian electronic noise (``… × 2``).
        """
        echo = (np.sqrt(power) * self.echo_gain)[..., None] * scatterers
        return echo + np.sqrt(self.haze_power)[..., None] * clutter + self.noise_gain[..., None] * noise

    def point_spread(self, field: np.ndarray) -> np.ndarray:
        """Convolve a complex field (``… × 2``) with the beam: axial pulse × lateral beam profile that
        widens away from the focus, plus a wide side lobe. Keeps the variance of white input."""
        border = cv2.BORDER_REFLECT
        focus = cv2.sepFilter2D(field, -1, self._lateral_focus, self._axial, borderType=border)
        far = cv2.sepFilter2D(field, -1, self._lateral_far, self._axial, borderType=border)
        # the side lobe is a box along the beams (cheap for its width), scaled to unit energy
        width = self._side_lobe_width
        side = cv2.boxFilter(focus, -1, (width, 1), borderType=border) * np.float32(np.sqrt(width))
        return (focus + self._far_weight * (far - focus) + self._side_lobe_level * side) * self._psf_scale

    def envelope(self, field: np.ndarray) -> np.ndarray:
        """Envelope (modulus) of the beamformed complex field: ``n_samples × n_beams`` float32."""
        beamformed = self.point_spread(field)
        return cv2.magnitude(beamformed[..., 0], beamformed[..., 1])

    def log_compress(self, envelope: np.ndarray) -> np.ndarray:
        """Envelope → grey level in [0, 1]: 20·log10, gain, dynamic range window, grey map."""
        style = self.style
        db = 20.0 * np.log10(envelope + 1e-12) + style.gain_db
        # 0 dB (myocardium with an ideal TGC) lands at 45 % of the window before the grey map
        level = np.clip((db + 0.45 * style.dynamic_range_db) / style.dynamic_range_db, 0.0, 1.0)
        return (level ** style.gray_gamma).astype(np.float32)

    def scan_convert(self, polar: np.ndarray) -> np.ndarray:
        """Polar grey levels → ``H×W`` output frame (0 outside the sector), display smoothing included.

        The polar data are low-passed to the output pixel size first, so speckle finer than a pixel
        is averaged (as when a scanner image is resized) rather than aliased into salt and pepper.
        """
        beam, sample, sector = self._maps
        polar = cv2.GaussianBlur(polar, (0, 0), sigmaX=self._antialias[0], sigmaY=self._antialias[1])
        image = cv2.remap(polar, beam, sample, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.style.smoothing_px > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), self.style.smoothing_px)
        image[~sector] = 0.0
        return np.clip(image, 0.0, 1.0)


def tissue_power(classes: np.ndarray, texture_coarse: np.ndarray, texture_fine: np.ndarray,
                 gain: np.ndarray, style: ScannerStyle, grid: SectorGrid) -> np.ndarray:
    """Echogenicity (linear power) of a polar tissue-class map.

    Besides the tissue level and texture, two angle effects shape what the beam sees: fibrous walls
    reflect less when they run along the beam (anisotropy), and interfaces met head-on reflect
    specularly.

    Args:
        classes: ``n_samples × n_beams`` uint8 :class:`Tissue` values.
        texture_coarse, texture_fine: unit-variance smooth random fields attached to the tissue.
        gain: multiplicative brightness map (septum, dropout, surroundings), same shape.
        grid: the polar sampling (range step and beam angle step set the derivative scales).
    """
    level = (10.0 ** (style.tissue_db() / 10.0)).astype(np.float32)
    log_texture = style.texture * (_COARSE_TEXTURE[classes] * texture_coarse + _FINE_TEXTURE[classes] * texture_fine)
    power = level[classes] * np.exp(log_texture)
    fibrous = _FIBROUS[classes]
    floor = 10.0 ** (-style.anisotropy_db / 10.0)
    power *= np.where(fibrous > 0, floor + (1.0 - floor) * _facing_beam(fibrous, grid), np.float32(1.0))

    # specular interfaces: the square of the range derivative of an impedance proxy over about a
    # millimetre is bright where a boundary is perpendicular to the beam
    dr = grid.range_step_mm
    impedance = cv2.sepFilter2D(_IMPEDANCE[classes], -1, np.ones(1, np.float32),
                                _unit_gain_kernel(max(0.6 / dr, 0.5)), borderType=cv2.BORDER_REPLICATE)
    derivative = np.gradient(impedance, axis=0) / np.float32(dr)
    specular = np.float32(10.0 ** (style.specular_db / 10.0)) * derivative**2
    return ((power + specular) * gain).astype(np.float32)


def _facing_beam(walls: np.ndarray, grid: SectorGrid, step: int = 4) -> np.ndarray:
    """cos² of the angle between the beam and the normal of the walls in a ``walls`` mask.

    It comes from the structure tensor of the smoothed mask, so it is defined in the middle of a
    wall as well as on its edges; the orientation field is smooth and computed ``step`` times
    coarser than the polar grid.
    """
    n_samples, n_beams = walls.shape
    coarse = cv2.resize(walls, (max(2, n_beams // step), max(2, n_samples // step)), interpolation=cv2.INTER_AREA)
    dr = grid.range_step_mm * n_samples / coarse.shape[0]
    d_angle = grid.angle_step_rad * n_beams / coarse.shape[1]
    ranges = (np.arange(coarse.shape[0], dtype=np.float32) + 0.5) * np.float32(dr)
    lateral = max(2.0 / (d_angle * grid.depth_mm * 0.5), 0.5)
    smooth = cv2.GaussianBlur(coarse, (0, 0), sigmaX=lateral, sigmaY=max(2.0 / dr, 0.5))
    along = np.gradient(smooth, axis=0) / np.float32(dr)
    across = np.gradient(smooth, axis=1) / (np.float32(d_angle) * ranges[:, None])
    tensor = cv2.GaussianBlur(np.stack([along * along, across * across], axis=-1), (0, 0),
                              sigmaX=2.0 * lateral, sigmaY=max(4.0 / dr, 1.0))
    facing = tensor[..., 0] / (tensor[..., 0] + tensor[..., 1] + np.float32(1e-6))
    return cv2.resize(facing, (n_beams, n_samples), interpolation=cv2.INTER_LINEAR)
