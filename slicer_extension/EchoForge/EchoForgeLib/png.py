"""PNG encoding with numpy and zlib only (8-bit grey, RGB or RGBA, no interlacing)."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Union

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an ``H×W`` (grey), ``H×W×3`` (RGB) or ``H×W×4`` (RGBA) uint8 image."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"PNG images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        colour_type = 0
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        colour_type = 2 if arr.shape[2] == 3 else 6
    else:
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 image, got shape {arr.shape}")
    height, width = arr.shape[:2]
    rows = np.ascontiguousarray(arr).reshape(height, -1)
    scanlines = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9))
            + chunk(b"IEND", b""))


def write_png(path: Union[str, os.PathLike[str]], image: np.ndarray) -> str:
    """Write ``image`` as a PNG file; returns the path."""
    data = encode_png(image)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)
