"""Which videos belong together: the view named in a video's name, and the 2CH/4CH pairs of one patient."""

from __future__ import annotations

import re

_VIEW_PATTERNS = (("2CH", re.compile(r"(?i)(?:^|[^a-z0-9])(?:2ch|a2c|ap2)(?:$|[^a-z0-9])")),
                  ("4CH", re.compile(r"(?i)(?:^|[^a-z0-9])(?:4ch|a4c|ap4)(?:$|[^a-z0-9])")))


def view_from_name(name: str) -> str:
    """``2CH`` or ``4CH`` when the video's name says so (``patient0001_2CH``, ``case_a4c``), else ``unknown``."""
    for view, pattern in _VIEW_PATTERNS:
        if pattern.search(name):
            return view
    return "unknown"


def patient_key(name: str) -> str:
    """The video's name without its view token: the 2CH and 4CH of one patient share it."""
    key = name
    for _, pattern in _VIEW_PATTERNS:
        key = pattern.sub("_", key)
    return key.strip("_")
