"""Heart geometry of the apical echo phantom: a 3-D left ventricle, its atria and the right heart.

Coordinate frames (all lengths in mm)
-------------------------------------
* **Probe frame**: origin at the transducer (the apex of the imaging sector), ``x`` towards the
  image right, ``y`` in depth (downwards in the image).
* **Heart frame** of a view: origin at the LV endocardial apex, ``z`` along the LV long axis towards
  the mitral plane, ``x`` across it in the imaging plane. In the 4CH view ``+x`` is the lateral wall
  (image right) and ``-x`` the septum, with the right heart beyond it; in the 2CH view ``+x`` is the
  anterior wall and ``-x`` the inferior wall. Both views share the apex (the probe sits on it), the
  long axis length and the timing; the heart frame tilts and rocks slightly in the sector.

The left ventricle is a 3-D body: its cross-section at height ``z`` is an ellipse whose diameters are
the endocardial chord widths ``d4(z)`` and ``d2(z)`` of the 4CH and 2CH planes, so its volume is
``V = π/4 ∫ d4(z) d2(z) dz`` exactly, the quantity the biplane method of disks estimates. The chord
half-width is ``R·f(z/L)`` with ``f(s) = (1 - ((s - a)/a)²)^p`` (a truncated ellipsoid for
``p = 0.5``, blunter or more pointed otherwise) around a slightly bowed centreline. The cardiac cycle
scales the length ``L`` (the base descends towards a fixed apex) and the radii ``R4``, ``R2`` so that
``V(t)/EDV = k(t)`` with ``L ∝ k^α``, ``R4 ∝ k^β4``, ``R2 ∝ k^β2`` and ``α + β4 + β2 = 1``; the
myocardium is a normal offset of the endocardium whose thickness keeps the myocardial volume
(approximately) constant, so the wall thickens in systole.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy.integrate import trapezoid

from echoforge.labels import LA, LV, MYOCARDIUM
from echoforge.phantom.cycle import CardiacCycle

#: Views the phantom renders.
PHANTOM_VIEWS = ("4CH", "2CH")

_PERICARDIUM_MM = 1.5   # pericardial layer around the heart (thicker behind the atria)
_ATRIAL_WALL_MM = 2.0
_RV_WALL_MM = 3.5
_SEPTUM_GAP_MM = 1.2    # half thickness of the interatrial septum


class Tissue(IntEnum):
    """Tissue classes painted into the echogenicity map (the image, not the labels)."""

    BACKGROUND = 0
    BLOOD = 1
    MYOCARDIUM = 2
    THIN_WALL = 3      # atrial and right-ventricular free walls
    PERICARDIUM = 4
    VALVE = 5
    FAT = 6            # atrioventricular groove
    LUNG = 7
    TRABECULAE = 8     # the spongy inner layer of the LV wall (inside the traced cavity)
    PAPILLARY = 9
    VESSEL_WALL = 10


def lv_profile(s: np.ndarray, widest: float, exponent: float, ripple: tuple[float, ...] = ()) -> np.ndarray:
    """Relative LV half-width ``f(s)`` at ``s`` = height / length (0 apex, 1 mitral plane).

    ``ripple`` = (a1, φ1, a2, φ2, ...) adds gentle bulges ``a_k·sin((k + 1)·π·s + φ_k)`` (k = 1, 2, ...),
    tapered to zero at the apex and the base, so that no two ventricles have the same outline.
    """
    s = np.asarray(s, dtype=float)
    q = 1.0 - ((s - widest) / widest) ** 2
    bulge = sum(amplitude * np.sin((k + 2) * np.pi * s + phase)
                for k, (amplitude, phase) in enumerate(zip(ripple[::2], ripple[1::2], strict=True)))
    return np.clip(q, 0.0, None) ** exponent * (1.0 + 4.0 * s * (1.0 - s) * bulge)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class HeartAnatomy:
    """The randomised anatomy of one synthetic patient (lengths in mm, at end-diastole).

    Attributes:
        edv_ml, ef_percent: true end-diastolic volume and ejection fraction.
        lv_length_mm: apex to mitral-plane distance at ED.
        lv_radius4_mm, lv_radius2_mm: largest endocardial half-width in the 4CH / 2CH plane.
        widest4, widest2: where the LV is widest, as a fraction of its length from the apex (> 0.5).
        apex_exponent4, apex_exponent2: profile exponent ``p`` (< 0.5 blunt, > 0.5 pointed apex).
        ripple4, ripple2: gentle bulges of the outline, see :func:`lv_profile`.
        bend4_mm, bend2_mm: bow of the LV centreline at mid-cavity.
        longitudinal_share: ``α``, the part of the volume change made by base descent.
        radial_share4: ``β4``, the part made by the 4CH width (``β2 = 1 - α - β4``).
        wall_mm: ED wall thickness (lateral / anterior wall, mid-cavity).
        septal_wall_ratio: thickness of the septum (4CH) or inferior wall (2CH) relative to ``wall_mm``.
        apex_wall_ratio: relative thickness at the apex.
        la_width4_mm, la_width2_mm, la_length_mm: left atrium at its smallest (ED).
        la_expansion: relative growth of the atrial dimensions at its largest (end of systole).
        la_tilt4_deg, la_tilt2_deg: tilt of the atrial axis relative to the LV axis.
        rv_width_mm: right-ventricular width at the tricuspid annulus (ED).
        rv_apex_fraction: height of the RV apex as a fraction of the LV length.
        rv_shortening: fractional RV width change in systole.
        tricuspid_offset_mm: how much closer to the apex the tricuspid annulus sits than the mitral one.
        tapse_mm: systolic excursion of the tricuspid annulus.
        ra_width_mm, ra_length_mm: right atrium at ED.
        atrial_septum_tilt_deg: tilt of the interatrial septum relative to the left atrium's axis.
        apex_x_mm, apex_depth_mm: LV apex in the probe frame.
        tilt4_deg, tilt2_deg: long-axis angle from the beam axis (positive: base towards image right).
        rocking_deg: rotation of the heart about its apex at end-systole.
        papillary4, papillary2: whether a papillary muscle is seen (inside the traced cavity).
        descending_aorta: whether the descending aorta shows behind the left atrium.
        lung_right, lung_left: echogenicity loss (0-1) from lung next to the lateral / right heart.
        foreshortening4, foreshortening2: the part of the LV length the view shows (1 = the true apex
            is in the plane; less = a foreshortened view, the plane passes below the apex). The true
            3-D volumes do not change; the labels show what the view shows.
    """

    edv_ml: float
    ef_percent: float
    lv_length_mm: float
    lv_radius4_mm: float
    lv_radius2_mm: float
    widest4: float
    widest2: float
    apex_exponent4: float
    apex_exponent2: float
    ripple4: tuple[float, ...]
    ripple2: tuple[float, ...]
    bend4_mm: float
    bend2_mm: float
    longitudinal_share: float
    radial_share4: float
    wall_mm: float
    septal_wall_ratio: float
    apex_wall_ratio: float
    la_width4_mm: float
    la_width2_mm: float
    la_length_mm: float
    la_expansion: float
    la_tilt4_deg: float
    la_tilt2_deg: float
    rv_width_mm: float
    rv_apex_fraction: float
    rv_shortening: float
    tricuspid_offset_mm: float
    tapse_mm: float
    ra_width_mm: float
    ra_length_mm: float
    atrial_septum_tilt_deg: float
    apex_x_mm: float
    apex_depth_mm: float
    tilt4_deg: float
    tilt2_deg: float
    rocking_deg: float
    papillary4: bool
    papillary2: bool
    descending_aorta: bool
    lung_right: float
    lung_left: float
    foreshortening4: float = 1.0
    foreshortening2: float = 1.0

    @classmethod
    def sample(cls, rng: np.random.Generator, shifted: bool = False) -> HeartAnatomy:
        """Draw an adult heart. EF covers 15-75 % (about half the patients with a reduced EF);
        a low EF comes with a larger, more spherical LV, as in dilated cardiomyopathy.

        ``shifted`` draws from another population: more spherical ventricles, thicker walls, larger
        atria, an apex further from the probe and the long axis leaning the other way.
        """
        u = rng.uniform
        ef = float(u(52.0, 75.0) if u() < 0.5 else u(15.0, 52.0))
        dilation = 1.0 + 0.018 * max(0.0, 50.0 - ef)
        edv = float(np.clip(rng.normal(112.0, 20.0), 70.0, 165.0) * dilation)
        sphericity = u(0.47, 0.58) + 0.004 * max(0.0, 50.0 - ef) + (0.07 if shifted else 0.0)
        widest4, widest2 = u(0.55, 0.63, size=2)
        p4, p2 = u(0.45, 0.62, size=2)
        width_ratio = u(0.88, 1.1)                     # R2 / R4
        s = np.linspace(0.0, 1.0, 4001)
        ripple4, ripple2 = (tuple(float(v) for v in np.column_stack(
            [rng.normal(0.0, 0.03, 3), rng.uniform(0.0, 2.0 * np.pi, 3)]).ravel()) for _ in range(2))
        shape_integral = float(trapezoid(lv_profile(s, widest4, p4, ripple4) * lv_profile(s, widest2, p2, ripple2), s))
        # V = π L R4 R2 ∫f4 f2 ds with R4 = sphericity·L/2 and R2 = width_ratio·R4
        length = (4.0 * edv * 1000.0 / (np.pi * sphericity**2 * width_ratio * shape_integral)) ** (1 / 3)
        radius4 = sphericity * length / 2.0
        alpha = u(0.14, 0.26) * (0.7 + 0.3 * min(ef, 60.0) / 60.0)
        wall = u(7.0, 10.5)
        if u() < 0.2:
            wall = u(10.5, 13.5)                        # hypertrophy
        if ef < 35.0:
            wall = u(6.0, 9.0)                          # thinned, dilated ventricle
        wall += 1.5 if shifted else 0.0
        la_scale = (1.0 + 0.006 * max(0.0, 50.0 - ef)) * (1.15 if shifted else 1.0)
        return cls(
            edv_ml=edv, ef_percent=ef, lv_length_mm=float(length), lv_radius4_mm=float(radius4),
            lv_radius2_mm=float(radius4 * width_ratio), widest4=float(widest4), widest2=float(widest2),
            apex_exponent4=float(p4), apex_exponent2=float(p2), ripple4=ripple4, ripple2=ripple2,
            bend4_mm=float(u(-2.0, 4.0)), bend2_mm=float(u(-3.0, 3.0)),
            longitudinal_share=float(alpha), radial_share4=float((1.0 - alpha) / 2.0 * u(0.88, 1.12)),
            wall_mm=float(wall), septal_wall_ratio=float(u(1.0, 1.25)), apex_wall_ratio=float(u(0.6, 0.8)),
            la_width4_mm=float(u(30.0, 40.0) * la_scale), la_width2_mm=float(u(30.0, 40.0) * la_scale),
            la_length_mm=float(u(28.0, 38.0) * la_scale), la_expansion=float(u(0.12, 0.22)),
            la_tilt4_deg=float(u(-12.0, 12.0)), la_tilt2_deg=float(u(-12.0, 12.0)),
            rv_width_mm=float(u(28.0, 40.0)), rv_apex_fraction=float(u(0.28, 0.45)),
            rv_shortening=float(u(0.18, 0.32) * np.sqrt(ef / 60.0)),
            tricuspid_offset_mm=float(u(4.0, 10.0)), tapse_mm=float(u(14.0, 24.0) * np.sqrt(ef / 60.0)),
            ra_width_mm=float(u(32.0, 44.0)), ra_length_mm=float(u(34.0, 46.0)),
            atrial_septum_tilt_deg=float(u(-5.0, 5.0)),
            apex_x_mm=float(u(-6.0, 10.0)), apex_depth_mm=float(u(32.0, 46.0) if shifted else u(24.0, 38.0)),
            tilt4_deg=float(u(-14.0, 2.0) if shifted else u(-4.0, 14.0)),
            tilt2_deg=float(u(-12.0, 4.0) if shifted else u(-6.0, 10.0)),
            rocking_deg=float(u(-3.0, 3.0)),
            papillary4=bool(u() < 0.5), papillary2=bool(u() < 0.5), descending_aorta=bool(u() < 0.75),
            lung_right=float(u(0.0, 1.0)), lung_left=float(u(0.0, 0.6)),
        )


@dataclass(frozen=True)
class HeartPose:
    """Where the heart frame of a view sits in the probe frame."""

    apex: np.ndarray   # (2,) probe-frame position of the LV apex
    axis: np.ndarray   # (2,) unit vector along the long axis (apex → base)
    across: np.ndarray  # (2,) unit vector along +x of the heart frame

    def to_probe(self, xz: np.ndarray) -> np.ndarray:
        """``N×2`` heart-frame (x, z) → ``N×2`` probe-frame (x, y)."""
        return self.apex + xz[..., :1] * self.across + xz[..., 1:2] * self.axis

    def to_heart(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probe-frame coordinates (any shape) → heart-frame (x, z)."""
        dx, dy = x - self.apex[0], y - self.apex[1]
        return dx * self.across[0] + dy * self.across[1], dx * self.axis[0] + dy * self.axis[1]


@dataclass
class WallTables:
    """LV walls of one view at one phase tabulated against height ``z`` (heart frame), used to move
    tissue with the wall: endocardial and epicardial distances from the centreline on each side."""

    z: np.ndarray                 # (n,) heights, ascending
    centre: np.ndarray            # (n,) centreline x
    endo: np.ndarray              # (2, n) distance centreline → endocardium, [left, right]
    epi: np.ndarray               # (2, n) distance centreline → epicardium
    base_z: float                 # height of the mitral plane


@dataclass
class Scene:
    """One view at one phase: what to paint into the image and into the labels.

    Attributes:
        tissue: ``(Tissue, N×2 polygon)`` pairs in probe-frame mm, painted in order.
        labels: ``(label, N×2 polygon)`` pairs in probe-frame mm, painted in order (CAMUS values).
        pose: the heart frame of this phase; ``walls`` the LV wall tables in it.
        brightness: heart-frame ``(x, z, radius_x, radius_z, weight)`` Gaussian blobs brightening the
            echo by ``weight`` × the style's septal gain.
        dropout: heart-frame ``(x, z, radius_x, radius_z)`` of the free wall (lateral in 4CH, anterior
            in 2CH) that runs parallel to the beams and fades by the style's dropout.
    """

    tissue: list[tuple[Tissue, np.ndarray]]
    labels: list[tuple[int, np.ndarray]]
    pose: HeartPose
    walls: WallTables
    brightness: list[tuple[float, float, float, float, float]]
    dropout: tuple[float, float, float, float]


class Heart:
    """A synthetic heart: :class:`HeartAnatomy` animated by a :class:`CardiacCycle`.

    Example::

        heart = Heart(HeartAnatomy.sample(rng), CardiacCycle.sample(rng, ef_percent=55.0))
        heart.lv_volume_ml(0.0), heart.lv_volume_ml(heart.cycle.es)   # EDV, ESV
        scene = heart.scene("4CH", phase=0.2)
    """

    _N_PROFILE = 121

    def __init__(self, anatomy: HeartAnatomy, cycle: CardiacCycle):
        self.anatomy = anatomy
        self.cycle = cycle
        self._s = np.linspace(0.0, 1.0, self._N_PROFILE) ** 2          # dense near the apex
        self._s_fine = np.linspace(0.0, 1.0, 20001)
        a = anatomy
        self._shape = {"4CH": (a.widest4, a.apex_exponent4, a.ripple4), "2CH": (a.widest2, a.apex_exponent2, a.ripple2)}
        self._myocardial_volume = self._myocardial_volume_at(1.0, a.wall_mm)
        s = self._s_fine
        self._shape_integral = float(trapezoid(lv_profile(s, *self._shape["4CH"]) * lv_profile(s, *self._shape["2CH"]), s))

    # ------------------------------------------------------------------ LV size
    def volume_ratio(self, phase: np.ndarray | float) -> np.ndarray:
        """``k = V / EDV`` at ``phase``."""
        return 1.0 - self.anatomy.ef_percent / 100.0 * (1.0 - self.cycle.lv_volume_fraction(phase))

    def lv_length_mm(self, phase: np.ndarray | float) -> np.ndarray:
        return self.anatomy.lv_length_mm * self.volume_ratio(phase) ** self.anatomy.longitudinal_share

    def lv_radius_mm(self, view: str, phase: np.ndarray | float) -> np.ndarray:
        """Largest endocardial half-width in the plane of ``view``."""
        a = self.anatomy
        beta4 = a.radial_share4
        beta2 = 1.0 - a.longitudinal_share - beta4
        k = self.volume_ratio(phase)
        return a.lv_radius4_mm * k**beta4 if view == "4CH" else a.lv_radius2_mm * k**beta2

    def lv_volume_ml(self, phase: np.ndarray | float) -> np.ndarray:
        """True LV cavity volume ``π/4 ∫ d4(z) d2(z) dz`` (ml): the profile product is integrated
        numerically over 20 001 heights once, then scaled by the phase's length and radii."""
        d4 = 2.0 * self.lv_radius_mm("4CH", phase)
        d2 = 2.0 * self.lv_radius_mm("2CH", phase)
        return np.pi / 4.0 * d4 * d2 * self._shape_integral * self.lv_length_mm(phase) / 1000.0

    def _wall_profile(self) -> np.ndarray:
        """Relative wall thickness along ``self._s`` (thinner apex)."""
        ratio = self.anatomy.apex_wall_ratio
        return ratio + (1.0 - ratio) * _smoothstep(self._s / 0.35)

    def _myocardial_volume_at(self, k: float, wall: float) -> float:
        """Myocardial volume (mm³) for a volume ratio ``k`` and wall thickness ``wall``, treating the
        epicardial cross-sections as ellipses with diameters ``d + 2h`` (roughly; it sets the thickening)."""
        quadratic, linear = self._thickening_terms(k)
        return quadratic * wall**2 + linear * wall

    def _thickening_terms(self, k: float) -> tuple[float, float]:
        """``(A, B)`` with myocardial volume ``A·h² + B·h`` for wall thickness ``h`` at volume ratio ``k``."""
        a = self.anatomy
        s = self._s
        w = self._wall_profile() * (1.0 + a.septal_wall_ratio) / 2.0
        length = a.lv_length_mm * k**a.longitudinal_share
        d4 = 2.0 * a.lv_radius4_mm * k**a.radial_share4 * lv_profile(s, *self._shape["4CH"])
        d2 = 2.0 * a.lv_radius2_mm * k ** (1.0 - a.longitudinal_share - a.radial_share4) * lv_profile(
            s, *self._shape["2CH"])
        quadratic = np.pi / 4.0 * trapezoid(4.0 * w**2, s) * length
        linear = np.pi / 4.0 * trapezoid(2.0 * w * (d4 + d2), s) * length
        return float(quadratic), float(linear)

    def wall_mm(self, phase: float) -> float:
        """Wall thickness (mid-cavity, lateral) keeping the myocardial volume of ED."""
        quadratic, linear = self._thickening_terms(float(self.volume_ratio(phase)))
        return float((-linear + np.sqrt(linear**2 + 4.0 * quadratic * self._myocardial_volume)) / (2 * quadratic))

    # ------------------------------------------------------------------ truth of the other indices
    def endocardial_length_mm(self, view: str, phase: float) -> float:
        """Length of the endocardial contour of ``view`` from one mitral hinge over the apex to the other
        (the mitral plane left out), the quantity GLS is measured from."""
        endo = self.lv_outline(view, phase)["endo"]
        return float(np.linalg.norm(np.diff(endo, axis=0), axis=1).sum())

    def la_volume_ml(self, phase: float) -> float:
        """True left-atrial volume (ml): each cross-section across the LV long axis is an ellipse whose
        diameters are the atrium's widths in the 4CH and 2CH planes at that height, as for the LV."""
        heights, widths = [], []
        for view in PHANTOM_VIEWS:
            la = self._left_atrium(view, phase, self.lv_outline(view, phase))[0]
            half = (len(la) + 1) // 2  # right side from the annulus up, then the left side back down
            right, left = la[:half], la[half - 1:][::-1]
            z = np.linspace(right[0, 1], right[-1, 1], 4001)
            heights.append(z)
            widths.append(np.interp(z, right[:, 1], right[:, 0]) - np.interp(z, left[:, 1], left[:, 0]))
        return _elliptic_stack_ml(heights, widths)

    def myocardial_volume_ml(self, phase: float) -> float:
        """True LV myocardial volume (ml): the epicardial body (elliptic cross-sections with the 4CH and 2CH
        epicardial widths, from the epicardial apex to the mitral plane) less the cavity."""
        heights, widths = [], []
        for view in PHANTOM_VIEWS:
            outline = self.lv_outline(view, phase)
            left, right = outline["epi_left"], outline["epi_right"]
            z = np.linspace(max(left[0, 1], right[0, 1]), min(left[-1, 1], right[-1, 1]), 4001)
            heights.append(z)
            widths.append(np.interp(z, right[:, 1], right[:, 0]) - np.interp(z, left[:, 1], left[:, 0]))
        return _elliptic_stack_ml(heights, widths) - float(self.lv_volume_ml(phase))

    # ------------------------------------------------------------------ geometry of a view
    def pose(self, view: str, phase: float) -> HeartPose:
        a = self.anatomy
        tilt = a.tilt4_deg if view == "4CH" else a.tilt2_deg
        contraction = 1.0 - float(self.cycle.lv_volume_fraction(phase))
        angle = np.radians(tilt + a.rocking_deg * contraction)
        axis = np.array([np.sin(angle), np.cos(angle)])
        across = np.array([np.cos(angle), -np.sin(angle)])
        return HeartPose(apex=np.array([a.apex_x_mm, a.apex_depth_mm]), axis=axis, across=across)

    def lv_outline(self, view: str, phase: float, extra_mm: float | np.ndarray = 0.0) -> dict[str, np.ndarray]:
        """LV contours of ``view`` at ``phase`` in the heart frame.

        Returns ``endo`` (closed endocardial polygon from the left hinge over the apex to the right
        hinge, ``N×2``), ``epi`` (the epicardium, offset ``extra_mm`` further out, a scalar or one
        value per ``endo`` point, truncated at the mitral plane), ``epi_left`` / ``epi_right`` (the
        two epicardial branches, apex → base), ``centre`` and ``radius`` along ``s``, and the
        scalars ``length`` and ``wall``.
        """
        a = self.anatomy
        s = self._s
        length = float(self.lv_length_mm(phase)) * (a.foreshortening4 if view == "4CH" else a.foreshortening2)
        radius = float(self.lv_radius_mm(view, phase)) * lv_profile(s, *self._shape[view])
        bend = a.bend4_mm if view == "4CH" else a.bend2_mm
        centre = 4.0 * bend * s * (1.0 - s) * length / a.lv_length_mm
        z = s * length
        left = np.stack([centre - radius, z], axis=1)
        right = np.stack([centre + radius, z], axis=1)
        curve = np.concatenate([left[::-1], right[1:]])             # left hinge → apex → right hinge
        wall = self.wall_mm(phase)
        side = 1.0 + (a.septal_wall_ratio - 1.0) * _smoothstep(s / 0.3)
        profile = self._wall_profile()
        thickness = wall * np.concatenate([(profile * side)[::-1], profile[1:]])
        epi = _offset(curve, thickness + extra_mm)
        n = len(s)
        epi_left = _clip_branch(epi[:n][::-1], length)
        epi_right = _clip_branch(epi[n - 1:], length)
        return {"endo": curve, "epi": np.concatenate([epi_left[::-1], epi_right[1:]]),
                "epi_left": epi_left, "epi_right": epi_right, "centre": centre, "radius": radius,
                "length": np.float64(length), "wall": np.float64(wall)}

    def wall_tables(self, view: str, phase: float) -> WallTables:
        """The LV walls of ``view`` at ``phase`` as :class:`WallTables` (for moving the tissue)."""
        outline = self.lv_outline(view, phase)
        length = float(outline["length"])
        top = -self.anatomy.wall_mm * 2.0
        z = np.concatenate([np.linspace(top, 0.0, 12, endpoint=False), self._s * length])
        centre = np.interp(z, self._s * length, outline["centre"])
        radius = np.interp(z, self._s * length, outline["radius"], left=0.0)
        endo = np.stack([radius, radius])
        epi = np.empty_like(endo)
        for i, branch in enumerate((outline["epi_left"], outline["epi_right"])):
            distance = np.abs(branch[:, 0] - np.interp(branch[:, 1], z, centre))
            epi[i] = np.interp(z, branch[:, 1], distance, left=0.0)
        epi = np.maximum(epi, endo + 0.5)
        return WallTables(z=z, centre=centre, endo=endo, epi=epi, base_z=length)

    def _left_atrium(self, view: str, phase: float, lv: dict[str, np.ndarray]) -> tuple[
            np.ndarray, np.ndarray, np.ndarray]:
        """LA cavity, outer wall and pericardial layer (heart frame), hanging from the mitral hinges.
        In 4CH the interatrial septum cuts the atria apart (see :meth:`_atrial_septum`)."""
        a = self.anatomy
        length = float(lv["length"])
        hinge_left, hinge_right = lv["endo"][0, 0], lv["endo"][-1, 0]
        grow = 1.0 + a.la_expansion * float(self.cycle.la_filling(phase))
        width = (a.la_width4_mm if view == "4CH" else a.la_width2_mm) * grow
        tilt = np.radians(a.la_tilt4_deg if view == "4CH" else a.la_tilt2_deg)
        # the atrial roof stays put while the mitral plane descends, so the atrium stretches in systole
        la_length = a.la_length_mm * grow + (a.lv_length_mm - float(self.lv_length_mm(phase)))
        wall, peri = _ATRIAL_WALL_MM, _PERICARDIUM_MM
        # in 4CH the septal side of the left atrium is nearly flat (it is the interatrial septum)
        share = float(np.clip(1.15 * (hinge_right - hinge_left) / 2.0 / width, 0.3, 0.5)) if view == "4CH" else 0.5
        cavity = _atrium(hinge_left, hinge_right, length, width, la_length, tilt, share)
        outer = _atrium(hinge_left - wall, hinge_right + wall, length, width + 2 * wall, la_length + wall, tilt, share)
        # the pericardium behind the atria (the bottom of the image) is thick and bright
        pericardium = _atrium(hinge_left - wall, hinge_right + wall, length, width + 2 * wall,
                              la_length + wall + 6 * peri, tilt, share)
        if view == "4CH":
            septum = self._atrial_septum(lv)
            cavity = _clip_x(cavity, septum, _SEPTUM_GAP_MM, keep="right")
            outer = _clip_x(outer, septum, 0.0, keep="right")
        return cavity, outer, pericardium

    def _atrial_septum(self, lv: dict[str, np.ndarray]) -> tuple[float, float, float]:
        """The interatrial septum (4CH) as a line ``(x0, z0, slope)``: down from the crux, just septal
        of the mitral hinge."""
        a = self.anatomy
        return (float(lv["endo"][0, 0]) - 3.0, float(lv["length"]),
                float(np.tan(np.radians(a.la_tilt4_deg + a.atrial_septum_tilt_deg))))

    def label_polygons(self, view: str, phase: float) -> list[tuple[int, np.ndarray]]:
        """``(label, N×2 probe-frame polygon)`` pairs in painting order: myocardium, LV cavity, LA."""
        pose = self.pose(view, phase)
        lv = self.lv_outline(view, phase)
        la = self._left_atrium(view, phase, lv)[0]
        return [(MYOCARDIUM, pose.to_probe(lv["epi"])), (LV, pose.to_probe(lv["endo"])), (LA, pose.to_probe(la))]

    def scene(self, view: str, phase: float) -> Scene:
        """Everything ``view`` shows at ``phase`` (see :class:`Scene`)."""
        a = self.anatomy
        pose = self.pose(view, phase)
        lv = self.lv_outline(view, phase)
        length, wall = float(lv["length"]), float(lv["wall"])
        endo = lv["endo"]
        hinge_left, hinge_right = endo[0], endo[-1]
        opening = float(self.cycle.valve_opening(phase))
        la, la_outer, la_pericardium = self._left_atrium(view, phase, lv)

        # the pericardium wraps the free walls; in 4CH the septum faces the right ventricle instead
        apical = 1.0 - _smoothstep(self._s / 0.3)
        left = _PERICARDIUM_MM * (0.6 * apical if view == "4CH" else np.ones_like(apical))
        around = np.concatenate([left[::-1], np.full(len(self._s) - 1, _PERICARDIUM_MM)])
        layers: dict[Tissue, list[np.ndarray]] = {
            Tissue.PERICARDIUM: [self.lv_outline(view, phase, extra_mm=around)["epi"], la_pericardium],
            # fat in the atrioventricular groove, around the base of the free wall
            Tissue.FAT: [_ellipse(hinge_right[0] + 0.7 * wall, length + 2.0, wall * 0.9 + 2.0, 7.0)],
            Tissue.MYOCARDIUM: [lv["epi"]],
            Tissue.THIN_WALL: [la_outer],
            Tissue.VESSEL_WALL: [],
            Tissue.BLOOD: [la],
            Tissue.VALVE: _leaflets(hinge_left, hinge_right, opening),
        }
        if view == "4CH":
            self._add_right_heart(layers, lv, phase)
        else:
            # the coronary sinus runs in the inferior atrioventricular groove
            sinus = (hinge_left[0] - 0.6 * wall - 2.0, length + 4.0)
            layers[Tissue.FAT].append(_ellipse(hinge_left[0] - 0.6 * wall, length + 2.0, wall * 0.9 + 2.0, 7.0))
            layers[Tissue.VESSEL_WALL].append(_ellipse(*sinus, 5.5, 4.5))
            layers[Tissue.BLOOD].append(_ellipse(*sinus, 3.8, 2.8))
        if a.descending_aorta:
            # fixed behind the left atrium at its ED position (it does not follow the ventricle)
            roof = a.lv_length_mm + a.la_length_mm + 3.0
            centre = ((a.la_width4_mm if view == "4CH" else -a.la_width2_mm) * 0.25, roof + 14.0)
            layers[Tissue.VESSEL_WALL].append(_ellipse(*centre, 13.0, 12.0))
            layers[Tissue.BLOOD].append(_ellipse(*centre, 10.5, 9.5))
        # the spongy trabecular layer and the papillary muscles lie inside the traced cavity
        compact_cavity = _clip_branch_polygon(_offset(endo, -(1.2 + 0.12 * wall)), length)
        inside_cavity = [(Tissue.TRABECULAE, endo), (Tissue.BLOOD, compact_cavity)]
        if a.papillary4 if view == "4CH" else a.papillary2:
            i = int(np.searchsorted(self._s, 0.55))
            root = (lv["centre"][i] + lv["radius"][i], self._s[i] * length)
            inside_cavity.append((Tissue.PAPILLARY, _ellipse(root[0] - 3.5, root[1] - 2.0, 4.0, 9.0, angle=-0.25)))

        order = [Tissue.PERICARDIUM, Tissue.FAT, Tissue.MYOCARDIUM, Tissue.THIN_WALL, Tissue.VESSEL_WALL]
        painted = [(kind, p) for kind in order for p in layers[kind]] + inside_cavity
        painted += [(Tissue.BLOOD, p) for p in layers[Tissue.BLOOD]] + [(Tissue.VALVE, p) for p in layers[Tissue.VALVE]]
        tissue = [(kind, pose.to_probe(_densify(p))) for kind, p in painted]
        labels = [(MYOCARDIUM, pose.to_probe(lv["epi"])), (LV, pose.to_probe(endo)), (LA, pose.to_probe(la))]

        septal_weight = 1.0 if view == "4CH" else 0.5
        free_wall = float(lv["radius"].max()) + 0.5 * wall
        brightness = [
            # the septum (4CH) or inferior wall (2CH) is thick and specular: the brightest wall
            (-free_wall, 0.6 * length, wall, 0.45 * length, septal_weight),
            # the base of the septum and the crux are fibrous
            (hinge_left[0] - 0.5 * wall, length, 1.3 * wall, 9.0, septal_weight),
        ]
        dropout = (free_wall, 0.55 * length, 1.5 * wall + 3.0, 0.28 * length)
        return Scene(tissue=tissue, labels=labels, pose=pose, walls=self.wall_tables(view, phase),
                     brightness=brightness, dropout=dropout)

    def _add_right_heart(self, layers: dict[Tissue, list[np.ndarray]], lv: dict[str, np.ndarray],
                         phase: float) -> None:
        """Add the 4CH right ventricle, right atrium, tricuspid valve and crux to ``layers``."""
        a = self.anatomy
        contraction = 1.0 - float(self.cycle.lv_volume_fraction(phase))
        rv, rv_outer, (septal, lateral) = self._right_ventricle(lv, contraction)
        grow = 1.0 + 0.8 * a.la_expansion * float(self.cycle.la_filling(phase))
        width, length = a.ra_width_mm * grow, a.ra_length_mm * grow
        z_t = septal[1]
        # the right atrium bulges to the left; its septal (right) side is flat
        share = 1.0 - float(np.clip(1.15 * (septal[0] - lateral[0]) / 2.0 / width, 0.3, 0.5))
        tilt = np.radians(a.la_tilt4_deg + a.atrial_septum_tilt_deg)
        wall, peri = _ATRIAL_WALL_MM, _PERICARDIUM_MM
        ra = _atrium(lateral[0], septal[0], z_t, width, length, tilt, share)
        ra_outer = _atrium(lateral[0] - _RV_WALL_MM, septal[0] + wall, z_t, width + 2 * wall, length + wall,
                           tilt, share)
        ra_pericardium = _atrium(lateral[0] - _RV_WALL_MM, septal[0] + wall, z_t, width + 2 * wall,
                                 length + wall + 6 * peri, tilt, share)
        septum = self._atrial_septum(lv)
        layers[Tissue.PERICARDIUM].append(ra_pericardium)
        layers[Tissue.THIN_WALL] += [rv_outer, _clip_x(ra_outer, septum, 0.0, keep="left")]
        layers[Tissue.BLOOD] += [rv, _clip_x(ra, septum, _SEPTUM_GAP_MM, keep="left")]
        hinge_left = lv["endo"][0]
        layers[Tissue.FAT] += [_ellipse(0.5 * (hinge_left[0] + septal[0]), float(lv["length"]) + 1.0, 6.0, 6.0),
                               _ellipse(lateral[0] - 3.0, z_t + 2.0, 5.0, 6.0)]
        layers[Tissue.VALVE] += _leaflets(lateral, septal, float(self.cycle.valve_opening(phase)))

    def _right_ventricle(self, lv: dict[str, np.ndarray], contraction: float) -> tuple[
            np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """RV cavity and outer wall (heart frame, 4CH) and the tricuspid hinges (septal, lateral).

        The cavity leans on the RV side of the septum (the LV epicardium) and widens from the RV apex,
        part-way down the LV, to the tricuspid annulus.
        """
        a = self.anatomy
        septum = lv["epi_left"]                                     # apex → base, x < 0
        # the tricuspid annulus sits closer to the apex and travels further (TAPSE) than the mitral one
        z_annulus = min(a.lv_length_mm - a.tricuspid_offset_mm - a.tapse_mm * contraction, float(lv["length"]) - 2.0)
        z_apex = a.rv_apex_fraction * a.lv_length_mm
        width = a.rv_width_mm * (1.0 - a.rv_shortening * contraction)

        def chamber(extra: float) -> np.ndarray:
            v = np.linspace(0.0, 1.0, 60)
            z = z_apex - extra + (z_annulus - z_apex + extra) * v
            x_septum = np.interp(z, septum[:, 1], septum[:, 0])
            free_wall = x_septum - (width + extra) * (1.0 - (1.0 - v) ** 2) ** 0.55 * (1.0 + 0.12 * np.sin(np.pi * v))
            return np.concatenate([np.stack([x_septum, z], axis=1)[::-1], np.stack([free_wall, z], axis=1)])

        cavity = chamber(0.0)
        return cavity, chamber(_RV_WALL_MM), (cavity[0], cavity[-1])


# ---------------------------------------------------------------------------- shape helpers
def _elliptic_stack_ml(heights: list[np.ndarray], widths: list[np.ndarray]) -> float:
    """π/4 ∫ w4(z)·w2(z) dz in ml, over the heights both views cover (widths sampled at ``heights``)."""
    z = np.linspace(max(h[0] for h in heights), min(h[-1] for h in heights), 8001)
    w4, w2 = (np.clip(np.interp(z, h, w), 0.0, None) for h, w in zip(heights, widths, strict=True))
    return float(np.pi / 4.0 * trapezoid(w4 * w2, z) / 1000.0)


def _offset(curve: np.ndarray, distance: np.ndarray | float) -> np.ndarray:
    """Offset an open ``N×2`` curve (x, z) along its normal; positive is to the left of the walking
    direction, which is outwards for the endocardium walked left hinge → apex → right hinge."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    return curve + normal * np.asarray(distance, dtype=float).reshape(-1, 1)


def _clip_branch(branch: np.ndarray, z_max: float) -> np.ndarray:
    """Cut a branch walked apex → base at the mitral plane ``z = z_max`` (extending it if short)."""
    z = np.maximum.accumulate(branch[:, 1])
    keep = z < z_max
    kept = np.stack([branch[keep, 0], z[keep]], axis=1)
    if keep.all():
        end = np.array([[branch[-1, 0], z_max]])
    else:
        end = np.array([[np.interp(z_max, z, branch[:, 0]), z_max]])
    return np.concatenate([kept, end])


def _clip_branch_polygon(curve: np.ndarray, z_max: float) -> np.ndarray:
    """Cut a left-hinge → apex → right-hinge curve at ``z = z_max`` (both branches)."""
    apex = int(np.argmin(curve[:, 1]))
    left = _clip_branch(curve[: apex + 1][::-1], z_max)
    right = _clip_branch(curve[apex:], z_max)
    return np.concatenate([left[::-1], right[1:]])


def _atrium(hinge_left: float, hinge_right: float, z_annulus: float, width: float, length: float,
            tilt: float, left_share: float = 0.5, n: int = 48) -> np.ndarray:
    """An atrium hanging from its annulus, as a closed polygon (right hinge first).

    Each side is a quarter of an ellipse that starts at its hinge, bulges out to its share of
    ``width`` and closes at ``length`` below the annulus; ``left_share`` < 0.5 flattens the left side
    (the septal side of the left atrium). The axis is sheared by ``tilt`` (rad).
    """
    half = (hinge_right - hinge_left) / 2.0
    v = length * np.sin(np.linspace(0.0, np.pi / 2.0, n))
    mid = (hinge_left + hinge_right) / 2.0 + np.tan(tilt) * v
    sides = []
    for share in (1.0 - left_share, left_share):
        semi = max(width * share, 1.04 * half)
        q = np.sqrt(1.0 - (half / semi) ** 2)
        centre_v = q * length / (1.0 + q)
        semi_v = length - centre_v
        sides.append(semi * np.sqrt(np.clip(1.0 - ((v - centre_v) / semi_v) ** 2, 0.0, 1.0)))
    right = np.stack([mid + sides[0], z_annulus + v], axis=1)
    left = np.stack([mid - sides[1], z_annulus + v], axis=1)
    return np.concatenate([right, left[::-1][1:]])


def _clip_x(polygon: np.ndarray, line: tuple[float, float, float], gap: float, keep: str) -> np.ndarray:
    """Clamp a polygon to one side (``"left"`` or ``"right"``, less ``gap``) of the line
    ``x = x0 + slope·(z - z0)`` given as ``line = (x0, z0, slope)``."""
    x0, z0, slope = line
    limit = x0 + slope * (polygon[:, 1] - z0)
    x = np.maximum(polygon[:, 0], limit + gap) if keep == "right" else np.minimum(polygon[:, 0], limit - gap)
    return np.stack([x, polygon[:, 1]], axis=1)


def _ellipse(cx: float, cz: float, rx: float, rz: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x, z = rx * np.cos(t), rz * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * z, cz + s * x + c * z], axis=1)


def _leaflets(hinge_left: np.ndarray, hinge_right: np.ndarray, opening: float) -> list[np.ndarray]:
    """Two valve leaflets as thin polygons: closed they meet just on the ventricular side of the
    annulus, open they swing towards the apex (``-z``). The left one (anterior mitral, anterior
    tricuspid) is the longer."""
    span = hinge_right - hinge_left
    width = float(np.hypot(*span))
    share = 0.57
    coaptation = hinge_left + span * share + np.array([0.0, -0.07 * width])
    leaflets = []
    for hinge, sign in ((hinge_left, 1.0), (hinge_right, -1.0)):
        closed = coaptation - hinge
        leaflet_length = float(np.hypot(*closed)) * 1.04
        closed_angle = np.arctan2(closed[1], closed[0])
        open_angle = np.arctan2(-1.0, 0.18 * sign)
        angle = closed_angle + opening * _angle_difference(open_angle, closed_angle)
        t = np.linspace(0.0, 1.0, 12)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        bow = 0.08 * leaflet_length * np.sin(np.pi * t) * sign * (1.0 - 2.0 * opening)
        centre = hinge + np.outer(t * leaflet_length, direction) + np.outer(bow, normal)
        thickness = 0.8 * (1.0 - 0.4 * t) + 0.2          # half thickness (mm): thick hinge, fine tip
        leaflets.append(np.concatenate([centre + np.outer(thickness, normal),
                                        (centre - np.outer(thickness, normal))[::-1]]))
    return leaflets


def _angle_difference(a: float, b: float) -> float:
    return float((a - b + np.pi) % (2.0 * np.pi) - np.pi)


def _densify(polygon: np.ndarray, step_mm: float = 1.0) -> np.ndarray:
    """Insert points so that no edge of the closed polygon is longer than ``step_mm`` (straight edges
    must stay straight after the polar transform of the image formation)."""
    closed = np.concatenate([polygon, polygon[:1]])
    edges = np.diff(closed, axis=0)
    counts = np.maximum(1, np.ceil(np.hypot(edges[:, 0], edges[:, 1]) / step_mm).astype(int))
    if counts.max() == 1:
        return polygon
    edge = np.repeat(np.arange(len(counts)), counts)
    t = (np.arange(edge.size) - np.repeat(np.cumsum(counts) - counts, counts)) / counts[edge]
    return closed[edge] + edges[edge] * t[:, None]
