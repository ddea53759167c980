"""NRRD (``.nrrd``, attached header) read and write in numpy only: the subset MONAI Label and Slicer produce.

Reads raw, gzip, bzip2 and ascii encodings of the usual scalar types, with ``space``,
``space directions``, ``space origin`` and ``kinds`` (a ``list``/``time`` axis is the frame axis, as
in Slicer's ``.seq.nrrd``), plus ``key:=value`` fields. Writes gzip-encoded 3-D volumes in
left-posterior-superior space, as Slicer does.
"""

from __future__ import annotations

import bz2
import gzip
import re
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from EchoForgeCore.volume import NRRD_PREFIX

from .errors import VolumeFormatError

_TYPES: dict[str, str] = {}
for _names, _code in ((("signed char", "int8", "int8_t", "char"), "i1"),
                      (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
                      (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
                      (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
                      (("int", "signed int", "int32", "int32_t"), "i4"),
                      (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
                      (("longlong", "long long", "long long int", "signed long long", "signed long long int",
                        "int64", "int64_t"), "i8"),
                      (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
                      (("float",), "f4"), (("double",), "f8")):
    for _name in _names:
        _TYPES[_name] = _code
_TYPE_NAMES = {"i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32", "u4": "uint32",
               "i8": "int64", "u8": "uint64", "f4": "float", "f8": "double"}
#: named NRRD space → the matrix taking its coordinates to RAS
_TO_RAS = {"left-posterior-superior": np.diag([-1.0, -1.0, 1.0]), "lps": np.diag([-1.0, -1.0, 1.0]),
           "right-anterior-superior": np.eye(3), "ras": np.eye(3),
           "left-anterior-superior": np.diag([-1.0, 1.0, 1.0]), "las": np.diag([-1.0, 1.0, 1.0])}


@dataclass(frozen=True)
class NrrdImage:
    """What an NRRD file holds.

    Attributes:
        data: the array, axes in file order (a frame axis of kind ``list``/``time`` moved last).
        affine: 4×4 IJK→RAS matrix of those axes (identity directions when the file has none).
        fields: ``key:=value`` fields whose key starts with ``echoforge_`` (prefix removed).
    """

    data: np.ndarray
    affine: np.ndarray
    fields: dict[str, str]


def read_nrrd(raw: bytes, name: str = "the NRRD file") -> NrrdImage:
    """Parse NRRD bytes with an attached header.

    Raises:
        VolumeFormatError: not NRRD, a detached header, an unsupported type or encoding, or truncated data.
    """
    if not raw.startswith(b"NRRD000"):
        raise VolumeFormatError(f"{name} is not an NRRD file")
    end = raw.find(b"\n\n")
    if end < 0:
        raise VolumeFormatError(f"{name} has no end to its NRRD header")
    lines = raw[:end].decode("latin-1").replace("\r", "").split("\n")[1:]
    header: dict[str, str] = {}
    custom: dict[str, str] = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            custom[key.strip()] = value.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.strip()
    if "data file" in header or "datafile" in header:
        raise VolumeFormatError(f"{name} has a detached header (data file {header.get('data file')!r}); "
                                "save it as a single .nrrd file")
    try:
        dtype = np.dtype(_TYPES[header["type"].lower()])
        dimension = int(header["dimension"])
        sizes = [int(s) for s in header["sizes"].split()]
    except (KeyError, ValueError):
        raise VolumeFormatError(f"{name} lacks a valid type, dimension or sizes field") from None
    if len(sizes) != dimension:
        raise VolumeFormatError(f"{name}: {dimension} dimensions but {len(sizes)} sizes")
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if header.get("endian", "little").lower() == "big" else "<")
    body = raw[end + 2:]
    if "byte skip" in header and int(header["byte skip"]) > 0:
        body = body[int(header["byte skip"]):]
    encoding = header.get("encoding", "raw").lower()
    count = int(np.prod(sizes))
    try:
        if encoding in ("gzip", "gz"):
            body = gzip.decompress(body)
        elif encoding in ("bzip2", "bz2"):
            body = bz2.decompress(body)
        elif encoding in ("ascii", "text", "txt"):
            values = np.array(body.split(), dtype=np.float64)
            body = values.astype(dtype).tobytes()
        elif encoding != "raw":
            raise VolumeFormatError(f"{name} uses the NRRD encoding {encoding!r}, which is not supported here")
    except (OSError, EOFError, zlib.error, ValueError) as err:
        raise VolumeFormatError(f"{name}: its {encoding} data cannot be decoded ({err})") from None
    if len(body) < count * dtype.itemsize:
        raise VolumeFormatError(f"{name} is truncated: it holds less image data than its header says")
    data = np.frombuffer(body, dtype=dtype, count=count).reshape(sizes, order="F")

    kinds = header.get("kinds", " ".join(["domain"] * dimension)).lower().split()
    frame_axis = next((a for a, kind in enumerate(kinds) if kind in ("list", "time")), None)
    directions = _directions(header.get("space directions"), dimension)
    to_ras = _TO_RAS.get(header.get("space", "left-posterior-superior").lower(), _TO_RAS["lps"])
    spatial = [a for a in range(dimension) if directions[a] is not None]
    affine = np.eye(4)
    if spatial:
        columns = np.stack([to_ras @ directions[a] for a in spatial], axis=1)
        affine[:3, :min(columns.shape[1], 3)] = columns[:, :3]
        if "space origin" in header:
            origin = _vectors(header["space origin"])
            if origin and len(origin[0]) == 3:
                affine[:3, 3] = to_ras @ np.asarray(origin[0])
    if frame_axis is not None and dimension == 3:
        data = np.moveaxis(data, frame_axis, -1)
    fields = {k[len(NRRD_PREFIX):]: v for k, v in custom.items() if k.startswith(NRRD_PREFIX)}
    return NrrdImage(data=data, affine=affine, fields=fields)


def write_nrrd(data: np.ndarray, affine: np.ndarray, fields: Optional[dict[str, str]] = None) -> bytes:
    """NRRD bytes (gzip encoding, LPS space) of a 3-D array in (i, j, k) order with its IJK→RAS ``affine``."""
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    code = arr.dtype.str[1:]
    if code not in _TYPE_NAMES or arr.ndim != 3:
        raise VolumeFormatError(f"cannot write a {arr.ndim}-D array of type {arr.dtype} as an NRRD volume")
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    matrix = np.asarray(affine, dtype=np.float64)
    lps = _TO_RAS["lps"] @ matrix[:3, :3]
    origin = _TO_RAS["lps"] @ matrix[:3, 3]

    def vector(v: np.ndarray) -> str:
        return "(" + ",".join(f"{float(x):.17g}" for x in v) + ")"

    lines = ["NRRD0004", f"type: {_TYPE_NAMES[code]}", "dimension: 3", "space: left-posterior-superior",
             "sizes: " + " ".join(str(s) for s in arr.shape),
             "space directions: " + " ".join(vector(lps[:, a]) for a in range(3)),
             "kinds: domain domain domain", "endian: little", "encoding: gzip",
             f"space origin: {vector(origin)}"]
    lines += [f"{NRRD_PREFIX}{k}:={v}" for k, v in (fields or {}).items()]
    return ("\n".join(lines) + "\n\n").encode("latin-1") + gzip.compress(arr.tobytes(order="F"), compresslevel=6)


def _vectors(text: str) -> list[tuple[float, ...]]:
    return [tuple(float(x) for x in group.split(",")) for group in re.findall(r"\(([^)]*)\)", text)]


def _directions(text: Optional[str], dimension: int) -> list[Optional[np.ndarray]]:
    """One RAS-space-agnostic direction vector per axis (``None`` for ``none`` axes or when absent)."""
    if not text:
        return [None] * dimension
    out: list[Optional[np.ndarray]] = []
    for token in re.findall(r"\([^)]*\)|none", text.lower()):
        if token == "none":
            out.append(None)
        else:
            vector = np.asarray(_vectors(token)[0], dtype=np.float64)
            out.append(vector if vector.size == 3 and np.isfinite(vector).all() else None)
    return (out + [None] * dimension)[:dimension]
