"""Atomic, durable file output: a file is either written completely or not at all.

Writers produce into a temporary file in the destination folder, which is flushed to the disk
(``fsync``) and only then moved into place with :func:`os.replace` (the folder is synced too, so the
rename itself survives a power cut). An interrupted run, a full disk or a failing encoder therefore
never leaves a half-written file where a user (or 3D Slicer, or the MONAI Label datastore) would
find it: the previous file, if any, stays as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def compound_suffix(path: str | os.PathLike[str]) -> str:
    """The full extension of ``path``: ``.nii.gz`` for ``a.nii.gz``, ``.seq.nrrd`` for ``b.seq.nrrd``."""
    name = Path(path).name.lower()
    for ext in (".nii.gz", ".seq.nrrd", ".seg.nrrd", ".dcm.gz", ".tar.gz"):
        if name.endswith(ext):
            return ext
    return Path(name).suffix


PARTIAL_MARK = ".part"


def is_partial_file(name: str) -> bool:
    """True for the temporary file of an unfinished :func:`atomic_path` write (left by a killed process)."""
    return name.startswith(".") and PARTIAL_MARK in name


def remove_partial_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` writes that never finished in ``folder`` (not
    below it); returns what was deleted. Call it where a killed writer's folder is opened again."""
    folder = Path(folder)
    removed = [p for p in folder.iterdir() if is_partial_file(p.name) and p.is_file()] if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``, on error delete it.

    The temporary name keeps the extension of ``path`` so that libraries choosing the format from
    the name (nibabel, OpenCV, pynrrd) write the right one. An empty result counts as a failure
    (an encoder that silently wrote nothing) unless ``allow_empty``::

        with atomic_path("out/labels.nii.gz") as tmp:
            nibabel.save(image, tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = compound_suffix(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{PARTIAL_MARK}{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or (tmp.stat().st_size == 0 and not allow_empty):
            raise OSError(f"{target}: the writer produced no data")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file_atomic(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copy ``source`` onto ``path`` atomically (the previous ``path`` stays intact if the copy fails)."""
    import shutil

    with atomic_path(path, allow_empty=True) as tmp:
        shutil.copyfile(source, tmp)
    return Path(path)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread exists
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path, allow_empty=True) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON (NaN and infinities become ``null``, see :func:`finite_json`)."""
    return write_text_atomic(path, json.dumps(finite_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def finite_json(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays unpacked, NaN and ±Infinity as ``None``.

    JSON has no NaN: a strict parser (a browser, FastAPI's encoder) rejects a document holding one.
    """
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return finite_json(_json_default(obj))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
