"""AVI (and other OpenCV-readable movie) files: EchoNet-Dynamic's format and common cine exports."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echoforge.errors import InvalidVideoError, UnreadableFileError
from echoforge.io.atomic import atomic_path
from echoforge.video import EchoVideo

MOVIE_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".wmv")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def is_movie_container(path: str | os.PathLike[str]) -> bool:
    """True when the file starts like an AVI, MP4/MOV, Matroska or ASF (WMV) container.

    FFmpeg (behind OpenCV) guesses formats from content and also opens playlists and concat lists
    that name other files or URLs; checking the container first means only a movie file is decoded.
    """
    with open(path, "rb") as f:
        head = f.read(16)
    return ((head[:4] == b"RIFF" and head[8:12] == b"AVI ") or head[4:8] in _MP4_BOXES
            or head[:4] == b"\x1a\x45\xdf\xa3" or head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")


def read_movie_frames(path: str | os.PathLike[str]) -> tuple[np.ndarray, float | None]:
    """Decode every frame as ``T×H×W`` uint8 grayscale (luma) and return it with the file's fps."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    if not is_movie_container(path):
        raise UnreadableFileError("not a movie file (AVI, MP4/MOV, MKV or WMV container expected)", path)
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
