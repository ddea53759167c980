"""The module's state as text, so that it lives in the Slicer scene (a parameter node) and not in Python.

Module reload and scene save/load keep the scene's nodes; everything else the module knows about a
video — which frames were annotated or forgotten, the ED/ES marks, the reference EF, whether the
pixel spacing is calibrated, the server's last answer — is written here as JSON into the module's
parameter node (``vtkMRMLScriptedModuleNode``) and read back from it. The labels themselves are the
scene's segmentation sequences, so they are not repeated here.

The text comes back from a scene file, which anyone can edit: :func:`decode_states` checks every
field and drops (with a reason) what does not fit, instead of failing or trusting it::

    text = encode_states([session_state(s) for s in sessions])
    states, problems = decode_states(text)
    session = restore_session(states[0], video, labels_now)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Optional

import numpy as np

from .report import to_plain
from .session import VideoSession
from .volume import Volume

STATE_VERSION = 1


def session_state(session: VideoSession) -> dict[str, Any]:
    """What :func:`restore_session` needs to rebuild ``session`` besides its frames and labels."""
    return {"version": STATE_VERSION, "image_id": session.image_id, "view": session.view,
            "frames": session.video.n_frames, "suggested_frames": list(session.suggested_frames),
            "ed": session.ed, "es": session.es, "reference_ef": session.reference_ef,
            "annotated_frames": session.annotations.annotated_frames,
            "forgotten_frames": session.annotations.forgotten_frames,
            "spacing_mm": list(session.video.spacing) if session.video.spacing else None,
            "frame_time_ms": session.video.frame_time_ms,
            "has_result": session.result is not None, "result_info": session.result_info}


def encode_states(states: Sequence[dict[str, Any]]) -> str:
    """Strict JSON (no NaN) of a list of :func:`session_state` dicts."""
    return json.dumps(to_plain(list(states)), allow_nan=False, separators=(",", ":"))


def decode_states(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The states in ``text`` that are well formed, and one line for each that was dropped."""
    if not text or not text.strip():
        return [], []
    try:
        raw = json.loads(text)
    except ValueError as err:
        return [], [f"the saved EchoForge state is not JSON ({err}); it was ignored"]
    if not isinstance(raw, list):
        return [], ["the saved EchoForge state is not a list of videos; it was ignored"]
    states, problems = [], []
    for k, item in enumerate(raw):
        try:
            states.append(_checked_state(item))
        except ValueError as err:
            problems.append(f"saved video {k + 1}: {err}; it was ignored")
    return states, problems


def restore_session(state: dict[str, Any], video: Volume, labels: np.ndarray) -> VideoSession:
    """A session rebuilt from its :func:`session_state`, its video and what its segmentation holds now.

    Args:
        state: a state from :func:`decode_states`.
        video: the video's frames and geometry (read back from the scene); its spacing and frame
            time are replaced by the saved ones.
        labels: ``T×H×W`` labels the scene's segmentation holds. The annotated and forgotten
            frames take their drawing from it; with a saved result, it is also the baseline that
            later corrections are compared with.

    Raises:
        ValueError: the state does not fit the video (another frame count).
    """
    if state["frames"] != video.n_frames or np.asarray(labels).shape != video.frames.shape:
        raise ValueError(f"video {state['image_id']!r} has {video.n_frames} frames in the scene but "
                         f"{state['frames']} in the saved state")
    spacing = tuple(state["spacing_mm"]) if state["spacing_mm"] else None
    session = VideoSession(state["image_id"], replace(video, spacing=spacing, frame_time_ms=state["frame_time_ms"]),
                           view=state["view"], suggested={"suggested_frames": state["suggested_frames"]})
    session.mark_ed(state["ed"])
    session.mark_es(state["es"])
    session.reference_ef = state["reference_ef"]
    for frame in state["annotated_frames"]:
        session.annotations.set_frame(frame, labels[frame])
    for frame in state["forgotten_frames"]:
        session.annotations.remove_frame(frame, labels[frame])
    if state["has_result"]:
        session.result = np.array(labels, dtype=np.uint8)
        session.result_info = dict(state["result_info"])
    return session


def _checked_state(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("version") != STATE_VERSION:
        raise ValueError("not an EchoForge video state of this version")
    image_id = item.get("image_id")
    if not isinstance(image_id, str) or not image_id.strip():
        raise ValueError("no video id")
    frames = item.get("frames")
    if not _is_int(frames) or frames < 1:
        raise ValueError(f"video {image_id!r}: the frame count {frames!r} is not a positive integer")

    def frame_list(key: str) -> list[int]:
        values = item.get(key) or []
        if not isinstance(values, list) or not all(_is_int(v) and 0 <= v < frames for v in values):
            raise ValueError(f"video {image_id!r}: {key} must be frames 0 to {frames - 1}")
        return sorted(set(values))

    def optional_frame(key: str) -> Optional[int]:
        value = item.get(key)
        if value is not None and not (_is_int(value) and 0 <= value < frames):
            raise ValueError(f"video {image_id!r}: {key} frame {value!r} is outside the video")
        return value

    spacing = item.get("spacing_mm")
    if spacing is not None and not (isinstance(spacing, list) and len(spacing) == 2
                                    and all(_is_positive(v) for v in spacing)):
        raise ValueError(f"video {image_id!r}: spacing {spacing!r} is not two positive numbers (mm)")
    for key in ("frame_time_ms", "reference_ef"):
        if item.get(key) is not None and not _is_number(item[key]):
            raise ValueError(f"video {image_id!r}: {key} {item[key]!r} is not a number")
    if item.get("frame_time_ms") is not None and not _is_positive(item["frame_time_ms"]):
        raise ValueError(f"video {image_id!r}: frame time {item['frame_time_ms']!r} is not positive")
    info = item.get("result_info") or {}
    if not isinstance(info, dict):
        raise ValueError(f"video {image_id!r}: the server's answer is not a JSON object")
    view = item.get("view")
    return {"version": STATE_VERSION, "image_id": image_id, "frames": frames,
            "view": view if view in ("2CH", "4CH", "unknown") else None,
            "suggested_frames": frame_list("suggested_frames"), "ed": optional_frame("ed"),
            "es": optional_frame("es"), "reference_ef": item.get("reference_ef"),
            "annotated_frames": frame_list("annotated_frames"), "forgotten_frames": frame_list("forgotten_frames"),
            "spacing_mm": [float(v) for v in spacing] if spacing is not None else None,
            "frame_time_ms": item.get("frame_time_ms"), "has_result": bool(item.get("has_result")),
            "result_info": info}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0
