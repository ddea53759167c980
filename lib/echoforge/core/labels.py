"""The label convention shared by every part of EchoForge (the CAMUS convention).

=====  =================  ===================
value  structure          colour (RGB, 0-255)
=====  =================  ===================
0      background
1      LV cavity          (230, 70, 70)
2      LV myocardium      (80, 170, 230)
3      left atrium        (240, 200, 60)
=====  =================  ===================

Segment names in 3D Slicer and the server's ``/info/`` are the long names.
"""

from __future__ import annotations

from typing import Optional

BACKGROUND = 0
LV = 1
MYOCARDIUM = 2
LA = 3

#: Foreground structures, in label order.
STRUCTURES: dict[int, str] = {LV: "LV", MYOCARDIUM: "myocardium", LA: "LA"}
#: Long names, as shown to clinicians (Slicer segment names use these).
LONG_NAMES: dict[int, str] = {LV: "LV cavity", MYOCARDIUM: "LV myocardium", LA: "Left atrium"}
COLORS: dict[int, tuple[int, int, int]] = {LV: (230, 70, 70), MYOCARDIUM: (80, 170, 230), LA: (240, 200, 60)}
NUM_CLASSES = 4
MAX_LABEL = 3

VIEWS = ("2CH", "4CH", "PLAX", "unknown")
_VIEW_ALIASES = {"2CH": "2CH", "A2C": "2CH", "AP2": "2CH", "4CH": "4CH", "A4C": "4CH", "AP4": "4CH",
                 "PLAX": "PLAX", "PSLAX": "PLAX"}


def normalize_view(view: Optional[str]) -> str:
    """Map spellings such as ``a4c``, ``4ch``, ``A2C`` or ``None`` onto :data:`VIEWS`."""
    if not view:
        return "unknown"
    v = str(view).strip().upper().replace("-", "").replace("_", "").replace(" ", "")
    return _VIEW_ALIASES.get(v, "unknown")
