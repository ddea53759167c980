"""A synthetic apical echocardiography phantom with exact per-frame ground truth.

One seed makes one patient: a 3-D left ventricle (with its atria, right heart, valves and
pericardium) beating through a realistic cardiac cycle, imaged by a randomised phased-array scanner
in the apical 4-chamber and 2-chamber views. Every frame carries CAMUS labels (1 LV cavity,
2 myocardium, 3 left atrium), and the true volumes, EF and ED/ES frames are known exactly::

    from echoforge.phantom import make_patient

    patient = make_patient(seed=3)
    video = patient.render("4CH", size=(256, 256), fps=30.0)      # one cycle, an EchoVideo
    patient.true_ef, patient.true_edv_ml, video.ed, video.es
    shifted = make_patient(seed=3, shifted=True)                  # an unseen scanner and population

Design
------
* Units: mm, ml, seconds; time as the cycle phase in [0, 1) with 0 = ED (start of systole).
* Frames (see :mod:`echoforge.phantom.anatomy`): the probe frame has the transducer at the origin
  and depth downwards; each view has a heart frame with the LV apex at the origin and the long axis
  towards the mitral plane. Output pixels are isotropic, the whole fan fits in the image.
* Ground truth: the LV cross-section at each height is an ellipse with the 4CH and 2CH chord widths
  as diameters, so the true volume is ``π/4 ∫ d4 d2 dz``; label masks contain exactly the pixels
  whose centre lies inside the structure.
* Randomised per patient (:class:`HeartAnatomy`, :class:`CardiacCycle`, :class:`ScannerStyle`):
  EF 15-75 % (half of the patients below 52 %), EDV about 70-270 ml (larger when EF is low), LV
  length, sphericity, apex shape, outline bulges, wall thickness, base descent vs radial shortening,
  LA and RA size, RV size, axis tilt, apex position, papillary muscle, descending aorta; heart rate
  50-110 bpm with the systolic fraction growing with it; scanner depth about 155-210 mm (deep
  enough for the atria), sector 72-82°, speckle size, gain, dynamic range, grey map, haze,
  reverberations, noise, lateral-wall dropout, rib shadow, persistence. ``shifted=True`` draws all
  of it from another distribution.
* Image formation (:mod:`echoforge.phantom.scanner`): complex Gaussian scatterers attached to the
  moving tissue, times the square root of the echogenicity, blurred by a depth-dependent PSF in the
  polar domain, envelope, attenuation and imperfect TGC, log compression and scan conversion.
"""

from echoforge.phantom.anatomy import PHANTOM_VIEWS, Heart, HeartAnatomy, Tissue
from echoforge.phantom.cycle import CardiacCycle
from echoforge.phantom.patient import PhantomPatient, make_patient, phantom_generation_speed
from echoforge.phantom.scanner import ScannerStyle, SectorGrid, SectorScanner

__all__ = [
    "PHANTOM_VIEWS",
    "CardiacCycle",
    "Heart",
    "HeartAnatomy",
    "PhantomPatient",
    "ScannerStyle",
    "SectorGrid",
    "SectorScanner",
    "Tissue",
    "make_patient",
    "phantom_generation_speed",
]
