"""MetaImage (``.mhd`` header + ``.raw`` data), the format of the first CAMUS release.

Only what 2-D+t echo needs: 2-D/3-D scalar images, little- or big-endian, optionally
zlib-compressed, data inline (``ElementDataFile = LOCAL``) or in a file beside the header.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from echoforge.errors import UnreadableFileError, UnsupportedFormatError
from echoforge.io.atomic import write_bytes_atomic

_TYPES = {
    "MET_UCHAR": np.uint8, "MET_CHAR": np.int8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16,
    "MET_UINT": np.uint32, "MET_INT": np.int32, "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64,
}
_NAMES = {np.dtype(v): k for k, v in _TYPES.items()}
_HEADER_BYTES = 64 * 1024  # a MetaImage header is a few hundred bytes of text


def _parse_header(raw: bytes, path: Path) -> tuple[dict[str, str], int]:
    """The header's key/value pairs and the byte offset where inline (``LOCAL``) data starts."""
    header: dict[str, str] = {}
    offset = 0
    for line in raw.split(b"\n"):
        offset += len(line) + 1
        text = line.decode("latin-1").strip()
        if "=" not in text:
            if text:
                raise UnreadableFileError(f"not a MetaImage header (line {text[:40]!r})", path)
            continue
        key, value = (s.strip() for s in text.split("=", 1))
        header[key] = value
        if key == "ElementDataFile":
            break
    return header, offset


def mhd_data_file(path: str | os.PathLike[str]) -> str | None:
    """The separate data file a MetaImage header names (``None`` for inline ``LOCAL`` data)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    header, _ = _parse_header(head, path)
    data_file = header.get("ElementDataFile")
    return None if data_file in (None, "LOCAL") else data_file


def data_file_beside(path: Path, data_file: str) -> Path:
    """The data file a header names, beside the header; a name with a folder in it (``../x``,
    ``/etc/x``), a missing file or a link to another folder is refused (MetaImage and NRRD alike)."""
    if not data_file or data_file != Path(data_file).name or data_file in (".", "..") or "\\" in data_file:
        raise UnreadableFileError(f"its data file {data_file!r} is not a file beside the header "
                                  "(only a plain file name in the header's folder is read)", path)
    data_path = path.parent / data_file
    if not data_path.is_file():
        raise UnreadableFileError(f"its data file {data_file} is missing", path)
    if data_path.resolve().parent != path.resolve().parent:
        raise UnreadableFileError(f"its data file {data_file} is a link to another folder", path)
    return data_path


def read_mhd(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a MetaImage as ``(array, spacing)``.

    The data are inline (``ElementDataFile = LOCAL``) or in a file beside the header named by its
    plain file name; a header pointing anywhere else (another folder, an absolute path) is refused,
    so a header can never make EchoForge read an unrelated file.

    Returns:
        The array in C order, slowest axis first: ``(T, H, W)`` for 3-D, ``(H, W)`` for 2-D; and the
        element spacing in the same order (so ``spacing[-2:]`` is (row, col) in mm).
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("file not found", path)
    raw = path.read_bytes()
    header, offset = _parse_header(raw, path)
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(_TYPES[header["ElementType"]])
        data_file = header["ElementDataFile"]
    except KeyError as err:
        raise UnreadableFileError(f"MetaImage header lacks {err.args[0]}", path) from None
    if header.get("ElementNumberOfChannels", "1") != "1":
        raise UnsupportedFormatError("multi-channel MetaImage is not supported", path)
    if header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")).lower() == "true":
        dtype = dtype.newbyteorder(">")
    spacing = [float(v) for v in header.get("ElementSpacing", header.get("ElementSize", " ".join(["1"] * len(dims)))).split()]
    payload = raw[offset:] if data_file == "LOCAL" else data_file_beside(path, data_file).read_bytes()
    if header.get("CompressedData", "False").lower() == "true":
        try:
            payload = zlib.decompress(payload)
        except zlib.error as err:
            raise UnreadableFileError(f"corrupt compressed data ({err})", path) from None
    count = int(np.prod(dims))
    if len(payload) < count * dtype.itemsize:
        raise UnreadableFileError(
            f"data is truncated ({len(payload)} bytes, {count * dtype.itemsize} expected)", path)
    array = np.frombuffer(payload, dtype=dtype, count=count).reshape(dims[::-1]).astype(dtype.newbyteorder("="))
    return array, tuple(spacing[::-1])


def write_mhd(path: str | os.PathLike[str], array: np.ndarray, spacing: tuple[float, ...],
              compress: bool = False) -> Path:
    """Write ``array`` (slowest axis first) as ``path`` (.mhd) + a sibling ``.raw``, both atomically."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in _NAMES:
        raise UnsupportedFormatError(f"cannot write dtype {array.dtype} to MetaImage", path)
    payload = array.tobytes()
    if compress:
        payload = zlib.compress(payload)
    raw_name = path.with_suffix(".raw").name
    dims = " ".join(str(d) for d in array.shape[::-1])
    sp = " ".join(f"{s:.6g}" for s in tuple(spacing)[::-1])
    n = array.ndim
    header = "\n".join([
        "ObjectType = Image", f"NDims = {n}", "BinaryData = True", "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compress}", f"TransformMatrix = {' '.join('1' if i % (n + 1) == 0 else '0' for i in range(n * n))}",
        f"Offset = {' '.join(['0'] * n)}", f"CenterOfRotation = {' '.join(['0'] * n)}",
        "AnatomicalOrientation = RAI", f"ElementSpacing = {sp}", f"DimSize = {dims}",
        f"ElementType = {_NAMES[dtype]}", f"ElementDataFile = {raw_name}", ""])
    write_bytes_atomic(path.parent / raw_name, payload)
    write_bytes_atomic(path, header.encode("latin-1"))
    return path
