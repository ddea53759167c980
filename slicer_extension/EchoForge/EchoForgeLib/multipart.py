"""``multipart/form-data`` encoding (requests to the server) and decoding (its ``output=all`` answers).

Standard library only (no ``cgi``, which Python 3.13 removed, and no ``requests``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

#: a file part: (file name, content, content type)
FilePart = tuple[str, bytes, str]


@dataclass(frozen=True)
class Part:
    """One part of a multipart body."""

    name: str
    filename: Optional[str]
    content_type: Optional[str]
    content: bytes


def encode_multipart(fields: Mapping[str, str], files: Optional[Mapping[str, FilePart]] = None) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its ``Content-Type`` header value."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        chunks.append(value.encode("utf-8") + b"\r\n")
    for name, (filename, content, content_type) in (files or {}).items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      f"Content-Type: {content_type}\r\n\r\n".encode())
        chunks.append(content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def boundary_of(content_type: str) -> Optional[str]:
    """The ``boundary`` parameter of a multipart ``Content-Type`` header, if any."""
    match = re.search(r'boundary="?([^";]+)"?', content_type or "", re.IGNORECASE)
    return match.group(1) if match else None


def decode_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """The parts of a multipart body by name.

    Raises:
        ValueError: no boundary in ``content_type``, or a part without headers or a name.
    """
    boundary = boundary_of(content_type)
    if not boundary:
        raise ValueError(f"not a multipart answer (content type {content_type!r})")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    parts: dict[str, Part] = {}
    for chunk in (b"\r\n" + body).split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        header_end = chunk.find(b"\r\n\r\n")
        if header_end < 0:
            raise ValueError("a multipart part has no header")
        headers = _headers(chunk[:header_end].decode("latin-1"))
        disposition = headers.get("content-disposition", "")
        name = _parameter(disposition, "name")
        if name is None:
            raise ValueError("a multipart part has no name")
        parts[name] = Part(name=name, filename=_parameter(disposition, "filename"),
                           content_type=headers.get("content-type"), content=chunk[header_end + 4:])
    return parts


def _headers(text: str) -> dict[str, str]:
    out = {}
    for line in text.strip("\r\n").split("\r\n"):
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip().lower()] = value.strip()
    return out


def _parameter(header: str, key: str) -> Optional[str]:
    match = re.search(rf'(?:^|;)\s*{key}="([^"]*)"', header) or re.search(rf"(?:^|;)\s*{key}=([^;\s]+)", header)
    return match.group(1) if match else None
