"""Request parameters checked one by one: a bad value is a 422 that names the parameter.

MONAI Label hands the app whatever the client put in ``params`` (a JSON string in a multipart
form) or in a JSON body. Numbers may arrive as numbers or, from MONAI Label's Slicer plugin, as
strings; frame lists as a list or as ``"0, 9"``. Nothing else is coerced: ``true`` is not a frame
number, ``7.9`` is not a step count, NaN is not a value at all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException


def invalid(name: str, problem: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"{name}: {problem}")


def json_object(text: Any, name: str) -> dict[str, Any]:
    """A form field that must hold a JSON object (``""`` and missing mean ``{}``)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        value: Any = text
    else:
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except ValueError as err:
            raise invalid(name, f"is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise invalid(name, f"must be a JSON object ({{...}}), got a JSON {type(value).__name__}")
    check_finite(value, name)
    return value


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def check_finite(value: Any, name: str) -> None:
    """Refuse NaN and infinities anywhere in a decoded JSON value."""
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(name, "holds NaN or an infinite number")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{name}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_finite(item, name)


def integer(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """``params[name]`` as a whole number in ``[low, high]`` (``default`` when absent)."""
    value = params.get(name, default)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}, got {value}")
    return value


def number(params: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    """``params[name]`` as a finite number in ``[low, high]``."""
    value = params.get(name, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid(name, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(name, f"must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise invalid(name, f"must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def choice(params: dict[str, Any], name: str, default: str, allowed: Sequence[str]) -> str:
    value = params.get(name, default)
    value = value.strip().lower() if isinstance(value, str) else value
    if value not in allowed:
        raise invalid(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def flag(params: dict[str, Any], name: str) -> bool:
    """A yes/no parameter (``true``/``false``, ``1``/``0``, or the strings of those)."""
    value = params.get(name, False)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off", ""):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise invalid(name, f"must be true or false, got {value!r}")


def frames(value: Any, name: str = "annotated_frames", n_frames: int | None = None) -> list[int] | None:
    """A frame list: distinct non-negative whole numbers (below ``n_frames`` when given); None when absent.

    Accepted forms: a JSON list of integers, or a string of integers separated by commas/spaces.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        items: list[Any] = [v for v in re.split(r"[,\s]+", value.strip()) if v]
        if not all(re.fullmatch(r"\d+", v) for v in items):
            raise invalid(name, f"must be frame numbers like \"0, 9\", got {value!r}")
        items = [int(v) for v in items]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise invalid(name, f"must be a list of frame numbers, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise invalid(name, f"frame numbers are whole numbers, got {item!r}")
        if item < 0:
            raise invalid(name, f"frame numbers start at 0, got {item}")
        if n_frames is not None and item >= n_frames:
            raise invalid(name, f"frame {item} is outside the video (frames 0..{n_frames - 1})")
    if len(set(items)) != len(items):
        raise invalid(name, f"lists a frame twice: {items}")
    return sorted(items)
