"""AVI (and other OpenCV-readable movie) files: EchoNet-Dynamic's format and common cine exports."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echoforge.errors import InvalidVideoError, UnreadableFileError
from echoforge.io.atomic import atomic_path
from echoforge.video import EchoVideo

MOVIE_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".wmv")


def read_movie_frames(path: str | os.PathLike[str]) -> tuple[np.ndarray, float | None]:
    """Decode every frame as ``T×H×W`` uint8 grayscale (luma) and return it with the file's fps."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UnreadableFileError("cannot open as a movie (unknown or corrupt container)", path)
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
    finally:
        capture.release()
    if not frames:
        raise UnreadableFileError("the movie holds no decodable frame (truncated or empty)", path)
    return np.stack(frames), fps


def read_avi(path: str | os.PathLike[str]) -> EchoVideo:
    """Read a movie as an :class:`EchoVideo` (no spacing: movie files carry no calibration)."""
    frames, fps = read_movie_frames(path)
    return EchoVideo(frames.astype(np.float32) / 255.0, frame_time_ms=1000.0 / fps if fps else None,
                     source=str(path), meta={"format": Path(path).suffix.lower().lstrip(".")})


def write_avi(video: EchoVideo, path: str | os.PathLike[str], codec: str = "MJPG") -> Path:
    """Write the frames as a colour (gray-replicated) AVI, as EchoNet-Dynamic distributes them."""
    import cv2

    path = Path(path)
    fps = video.fps or 30.0
    h, w = video.shape
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (w, h), True)
        if not writer.isOpened():
            raise InvalidVideoError(f"OpenCV cannot encode {codec!r} video here", path)
        try:
            for frame in video.frames_uint8():
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()
    return path
