"""The label convention shared by every part of EchoForge (the CAMUS convention).

Defined in :mod:`echoforge.core.labels` (shared with the Slicer module) and importable from here:

=====  =================  ===================
value  structure          colour (RGB, 0-255)
=====  =================  ===================
0      background
1      LV cavity          (230, 70, 70)
2      LV myocardium      (80, 170, 230)
3      left atrium        (240, 200, 60)
=====  =================  ===================
"""

from echoforge.core.labels import (  # noqa: F401 (re-exported)
    BACKGROUND,
    COLORS,
    LA,
    LONG_NAMES,
    LV,
    MAX_LABEL,
    MYOCARDIUM,
    NUM_CLASSES,
    STRUCTURES,
    VIEWS,
    normalize_view,
)
