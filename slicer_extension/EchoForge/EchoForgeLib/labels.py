"""The label convention (CAMUS), from the shared core (:mod:`EchoForgeCore.labels`).

=====  =================  ===================
value  segment name       colour (RGB, 0-255)
=====  =================  ===================
0      background
1      LV cavity          (230, 70, 70)
2      LV myocardium      (80, 170, 230)
3      Left atrium        (240, 200, 60)
=====  =================  ===================

Segment names in Slicer are the long names; the server's ``/info/`` lists the same names and values.
"""

from __future__ import annotations

from EchoForgeCore.labels import BACKGROUND, COLORS, LA, LV, MAX_LABEL, MYOCARDIUM  # noqa: F401 (re-exported)
from EchoForgeCore.labels import LONG_NAMES as SEGMENT_NAMES


def label_values_by_name(server_labels: dict[str, int]) -> dict[str, int]:
    """Segment name → label value, from the server's label table where it gives one.

    Names are matched without regard to case or surrounding spaces; the server's table wins over the
    built-in one so that a server with other values is still followed.
    """
    table = {name.strip().lower(): value for value, name in SEGMENT_NAMES.items()}
    table.update({str(name).strip().lower(): int(value) for name, value in (server_labels or {}).items()})
    return table
