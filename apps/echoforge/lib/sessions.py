"""MONAI Label sessions (``PUT /session/``) that cannot write outside their own folder.

MONAI Label unpacks ``?uncompress=true`` archives with :func:`shutil.unpack_archive`, which follows
member names such as ``../x`` or ``/etc/x`` and creates links anywhere ("tar slip"). Here an
archive is unpacked only when every member is a plain file or folder whose path stays inside the
target folder, and within the upload size limit; otherwise the session is refused with 422 and
nothing is written. Session ids are checked like every other client-supplied name.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.utils.sessions import Sessions

from lib.names import check_name, inside, is_valid_name


class SafeSessions(Sessions):
    def __init__(self, store_path: str, expiry: int, max_bytes: int):
        super().__init__(store_path, expiry)
        self.max_bytes = max_bytes

    def get_session(self, session_id: str, update_ts: bool = True, fetch_cache: bool = True) -> Any:
        if not is_valid_name(session_id):
            return None
        return super().get_session(session_id, update_ts, fetch_cache)

    def remove_session(self, session_id: str) -> None:
        if is_valid_name(session_id):
            super().remove_session(session_id)

    def add_session(self, data_file: str, expiry: int = 0, uncompress: bool = False, session_id: Any = None) -> Any:
        if session_id is not None:
            check_name(session_id, "session id")
        if not uncompress or os.path.isdir(data_file):
            return super().add_session(data_file, expiry, False, session_id)
        folder = tempfile.mkdtemp(prefix="session-")
        try:
            unpack_safely(Path(data_file), Path(folder), self.max_bytes)
            return super().add_session(folder, expiry, False, session_id)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def unpack_safely(archive: Path, target: Path, max_bytes: int) -> None:
    """Unpack a tar or zip archive into ``target``; 422 (and nothing written) for any unsafe member."""
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            sizes = []
            for member in members:
                if not (member.isfile() or member.isdir()):
                    raise _refused(member.name, "is a link or a device, not a file")
                _member_path(target, member.name)
                sizes.append(member.size)
            _check_total(sum(sizes), max_bytes)
            tar.extractall(target, members=members, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            for info in infos:
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise _refused(info.filename, "is a link, not a file")
                _member_path(target, info.filename)
            _check_total(sum(i.file_size for i in infos), max_bytes)
            z.extractall(target)
    else:
        raise HTTPException(status_code=422, detail="uncompress=true needs a tar or zip archive")


def _member_path(target: Path, name: str) -> Path:
    if os.path.isabs(name) or "\\" in name:
        raise _refused(name, "has an absolute path")
    try:
        return inside(target, name)
    except HTTPException:
        raise _refused(name, "would be written outside the session folder") from None


def _check_total(total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise HTTPException(status_code=413, detail=f"the archive unpacks to {total} bytes, more than the "
                                                    f"{max_bytes} allowed (--conf max_upload_mb)")


def _refused(name: str, problem: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"archive member {name!r} {problem}: the archive was not unpacked")
