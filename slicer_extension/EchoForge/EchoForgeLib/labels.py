"""The label convention (CAMUS), the same as the ``echoforge`` library's.

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

BACKGROUND = 0
LV = 1
MYOCARDIUM = 2
LA = 3
MAX_LABEL = 3

#: label value → segment name shown to clinicians (and used by the server's ``/info/``)
SEGMENT_NAMES: dict[int, str] = {LV: "LV cavity", MYOCARDIUM: "LV myocardium", LA: "Left atrium"}
#: label value → RGB colour, 0-255
COLORS: dict[int, tuple[int, int, int]] = {LV: (230, 70, 70), MYOCARDIUM: (80, 170, 230), LA: (240, 200, 60)}


def label_values_by_name(server_labels: dict[str, int]) -> dict[str, int]:
    """Segment name → label value, from the server's label table where it gives one.

    Names are matched without regard to case or surrounding spaces; the server's table wins over the
    built-in one so that a server with other values is still followed.
    """
    table = {name.strip().lower(): value for value, name in SEGMENT_NAMES.items()}
    table.update({str(name).strip().lower(): int(value) for name, value in (server_labels or {}).items()})
    return table
