"""The one place where a name a client sent (image id, label tag, session id) becomes a path.

Every id, tag or file name that arrives over HTTP goes through :func:`check_name` before it is
joined to a folder, and every path built from one goes through :func:`inside` before it is read,
written or deleted:

* grammar: ASCII letters, digits and ``. _ -``, starting with a letter or digit, at most
  :data:`MAX_LENGTH` characters, no ``..`` — so no separator, no absolute path, no parent folder,
  no hidden file, no shell or URL metacharacter;
* the resolved path (symbolic links followed) must lie inside the folder it was joined to.

A name that breaks the grammar is refused with 422 whatever exists on the disk, so the answer
never tells a client whether some server path exists.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from pathlib import Path

from fastapi import HTTPException

MAX_LENGTH = 128
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_LENGTH - 1}}}")


def is_valid_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None and ".." not in value


def check_name(value: object, what: str) -> str:
    """``value`` (as a plain ``str``) if it is a valid name, else a 422 naming ``what`` (e.g. ``"image id"``)."""
    if isinstance(value, enum.Enum):  # MONAI Label passes DefaultLabelTag members
        value = value.value
    if not is_valid_name(value):
        shown = value if isinstance(value, str) and len(value) <= 2 * MAX_LENGTH else type(value).__name__
        raise HTTPException(status_code=422, detail=(
            f"{what} {shown!r} is not valid: use 1-{MAX_LENGTH} letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (no folders, no '..')"))
    return str(value)


def safe_name(text: str) -> str:
    """A valid name made from a file name the server found itself (a dropped DICOM, say)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).replace("..", "_").strip("._-")[:MAX_LENGTH]
    return name if is_valid_name(name) else "video_" + hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:10]


def inside(root: str | os.PathLike[str], *names: str) -> Path:
    """``root/names...`` resolved, refused (422) unless it lies inside ``root`` (resolved too)."""
    base = Path(root).resolve()
    path = base.joinpath(*names).resolve()
    if path != base and base not in path.parents:
        raise HTTPException(status_code=422, detail=f"{'/'.join(names)!r} is outside the server's folder")
    return path
