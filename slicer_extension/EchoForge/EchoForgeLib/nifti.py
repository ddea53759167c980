"""NIfTI-1 (``.nii``, ``.nii.gz``) read and write in numpy only: the subset echo volumes use.

Reads 2-D and 3-D images (4-D when the extra axes have size 1) of the usual integer and float
types and RGB24, little or big endian, with the geometry of the sform, else the qform, else the
default (nibabel's ``get_best_affine`` order). Writes a 3-D volume with both sform and qform set.

EchoForge keeps a few fields in the header (:mod:`EchoForgeCore.volume`): ``descrip``
(``echoforge:key=value;...``) and, for lists too long for it, a comment extension
(``echoforge:annotated_frames=0,9``). Whether the spacing is physical is one of them
(``calibrated=no``), not the NIfTI unit code.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from EchoForgeCore.volume import nifti_field_texts, parse_field_text

from .errors import VolumeFormatError

HEADER_SIZE = 348
DATA_OFFSET = 352
UNITS_MM = 2
COMMENT_EXTENSION = 6

#: NIfTI datatype code → numpy type (byte order applied separately)
DATATYPES: dict[int, str] = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
                             1024: "i8", 1280: "u8"}
RGB24 = 128
_CODES = {np.dtype(v).str[1:]: k for k, v in DATATYPES.items()}


@dataclass(frozen=True)
class NiftiImage:
    """What a NIfTI file holds: the array in file axis order, its IJK→RAS affine and extra fields.

    Attributes:
        data: the voxel array, axes (i, j, k, ...) as in the file.
        affine: 4×4 IJK→RAS matrix.
        fields: EchoForge's ``key=value`` fields from ``descrip`` and comment extensions.
    """

    data: np.ndarray
    affine: np.ndarray
    fields: dict[str, str]


def read_nifti(raw: bytes, name: str = "the NIfTI file") -> NiftiImage:
    """Parse NIfTI-1 bytes (gzip-compressed or not).

    Raises:
        VolumeFormatError: not NIfTI-1, truncated, or a data type this reader does not handle.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise VolumeFormatError(f"{name} is not a readable gzip file ({err})") from None
    if len(raw) < HEADER_SIZE:
        raise VolumeFormatError(f"{name} is too short to be a NIfTI file ({len(raw)} bytes)")
    endian = next((e for e in "<>" if struct.unpack(e + "i", raw[:4])[0] == HEADER_SIZE), None)
    if endian is None or raw[344:347] not in (b"n+1", b"ni1"):
        raise VolumeFormatError(f"{name} is not a NIfTI-1 file")

    def unpack(fmt: str, offset: int) -> tuple:
        return struct.unpack_from(endian + fmt, raw, offset)

    dims = unpack("8h", 40)
    datatype = unpack("h", 70)[0]
    pixdim = unpack("8f", 76)
    vox_offset = int(unpack("f", 108)[0])
    slope, intercept = unpack("2f", 112)
    qform_code, sform_code = unpack("2h", 252)
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise VolumeFormatError(f"{name} has an invalid number of dimensions ({ndim})")
    shape = tuple(int(d) for d in dims[1:ndim + 1])
    if datatype == RGB24:
        dtype = np.dtype([("r", "u1"), ("g", "u1"), ("b", "u1")])
    elif datatype in DATATYPES:
        dtype = np.dtype(endian + DATATYPES[datatype])
    else:
        raise VolumeFormatError(f"{name} has NIfTI data type {datatype}, which is not supported here")
    count = int(np.prod(shape))
    start = vox_offset if vox_offset >= HEADER_SIZE else DATA_OFFSET
    if len(raw) < start + count * dtype.itemsize:
        raise VolumeFormatError(f"{name} is truncated: it holds less image data than its header says")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(shape, order="F")
    if datatype == RGB24:
        data = (np.stack([data["r"], data["g"], data["b"]], axis=-1).astype(np.float32)
                @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    elif np.isfinite(slope) and slope != 0.0 and (slope != 1.0 or (np.isfinite(intercept) and intercept != 0.0)):
        data = data * np.float64(slope) + (np.float64(intercept) if np.isfinite(intercept) else 0.0)
    if sform_code > 0:
        affine = np.vstack([np.array(unpack("12f", 280), dtype=np.float64).reshape(3, 4), [0, 0, 0, 1]])
    elif qform_code > 0:
        affine = _qform_affine(unpack("3f", 256), unpack("3f", 268), pixdim)
    else:  # no orientation: the ANALYZE default nibabel uses
        zooms = [abs(p) if p else 1.0 for p in pixdim[1:4]]
        affine = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    fields = parse_field_text(raw[148:228].split(b"\x00", 1)[0].decode("latin-1"))
    fields.update(_extension_fields(raw, start, endian))
    return NiftiImage(data=data, affine=affine, fields=fields)


def write_nifti(data: np.ndarray, affine: np.ndarray, fields: Optional[dict[str, str]] = None,
                compress: bool = True) -> bytes:
    """NIfTI-1 bytes of a 3-D array (axes i, j, k) with ``affine`` as sform and qform, lengths in mm.

    Args:
        data: the array in file axis order; uint8, integer or float.
        affine: 4×4 IJK→RAS matrix.
        fields: EchoForge ``key=value`` header fields (``descrip``, and a comment extension for long lists).
        compress: gzip the result (for ``.nii.gz``).
    """
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    code = _CODES.get(arr.dtype.str[1:])
    if code is None:
        raise VolumeFormatError(f"cannot write voxels of type {arr.dtype} as NIfTI")
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    matrix = np.asarray(affine, dtype=np.float64)
    header = bytearray(HEADER_SIZE)
    zooms = np.linalg.norm(matrix[:3, :3], axis=0)
    quaternion, qfac = _quaternion(matrix[:3, :3] / np.where(zooms > 0, zooms, 1.0))
    dims = [arr.ndim, *arr.shape] + [1] * (7 - arr.ndim)
    pixdim = [qfac, *zooms] + [1.0] * (7 - len(zooms))
    struct.pack_into("<i", header, 0, HEADER_SIZE)
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<2h", header, 70, code, arr.dtype.itemsize * 8)
    struct.pack_into("<8f", header, 76, *pixdim)
    descrip, extension = nifti_field_texts(fields or {})
    extension_block = b""
    if extension:  # a comment extension: size (a multiple of 16, 8 header bytes included), code, text
        text = extension.encode("latin-1") + b"\x00"
        size = -(-(len(text) + 8) // 16) * 16
        extension_block = struct.pack("<2i", size, COMMENT_EXTENSION) + text.ljust(size - 8, b"\x00")
    struct.pack_into("<f", header, 108, float(DATA_OFFSET + len(extension_block)))
    struct.pack_into("<2f", header, 112, 1.0, 0.0)
    header[123] = UNITS_MM
    header[148:148 + len(descrip)] = descrip.encode("latin-1")
    struct.pack_into("<2h", header, 252, 1, 1)
    struct.pack_into("<3f", header, 256, *quaternion)
    struct.pack_into("<3f", header, 268, *matrix[:3, 3])
    struct.pack_into("<12f", header, 280, *matrix[:3, :4].ravel())
    header[344:348] = b"n+1\x00"
    flag = b"\x01\x00\x00\x00" if extension_block else b"\x00" * 4
    payload = bytes(header) + flag + extension_block + arr.tobytes(order="F")
    return gzip.compress(payload, compresslevel=6) if compress else payload


def _qform_affine(quatern: tuple[float, ...], offset: tuple[float, ...], pixdim: tuple[float, ...]) -> np.ndarray:
    b, c, d = (float(q) for q in quatern)
    a = float(np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d))))
    rotation = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                         [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                         [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    zooms = np.array([pixdim[1], pixdim[2], pixdim[3] * qfac], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = rotation * zooms
    affine[:3, 3] = offset
    return affine


def _quaternion(rotation: np.ndarray) -> tuple[tuple[float, float, float], float]:
    """(b, c, d) and qfac of a rotation (or reflection) matrix, as the NIfTI reference code computes them."""
    r = np.array(rotation, dtype=np.float64)
    qfac = 1.0
    if np.linalg.det(r) < 0:
        qfac = -1.0
        r[:, 2] = -r[:, 2]
    a = r[0, 0] + r[1, 1] + r[2, 2] + 1.0
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b, c, d = 0.25 * (r[2, 1] - r[1, 2]) / a, 0.25 * (r[0, 2] - r[2, 0]) / a, 0.25 * (r[1, 0] - r[0, 1]) / a
    else:
        xd, yd, zd = 1.0 + r[0, 0] - (r[1, 1] + r[2, 2]), 1.0 + r[1, 1] - (r[0, 0] + r[2, 2]), \
            1.0 + r[2, 2] - (r[0, 0] + r[1, 1])
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd)
            c, d, a = 0.25 * (r[0, 1] + r[1, 0]) / b, 0.25 * (r[0, 2] + r[2, 0]) / b, 0.25 * (r[2, 1] - r[1, 2]) / b
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd)
            b, d, a = 0.25 * (r[0, 1] + r[1, 0]) / c, 0.25 * (r[1, 2] + r[2, 1]) / c, 0.25 * (r[0, 2] - r[2, 0]) / c
        else:
            d = 0.5 * np.sqrt(zd)
            b, c, a = 0.25 * (r[0, 2] + r[2, 0]) / d, 0.25 * (r[1, 2] + r[2, 1]) / d, 0.25 * (r[1, 0] - r[0, 1]) / d
        if a < 0:
            b, c, d = -b, -c, -d
    return (float(b), float(c), float(d)), qfac


def _extension_fields(raw: bytes, data_start: int, endian: str) -> dict[str, str]:
    """EchoForge fields from comment extensions (between the header and the data)."""
    fields: dict[str, str] = {}
    if len(raw) < DATA_OFFSET or raw[HEADER_SIZE] == 0:
        return fields
    offset = DATA_OFFSET
    while offset + 8 <= data_start:
        size, code = struct.unpack_from(endian + "2i", raw, offset)
        if size < 8 or offset + size > data_start:
            break
        if code == COMMENT_EXTENSION:
            fields.update(parse_field_text(raw[offset + 8:offset + size].split(b"\x00", 1)[0].decode("latin-1")))
        offset += size
    return fields
