"""Bad input becomes a clear HTTP 4xx with the library's message (MONAI Label would answer 500).

A full disk (or a file-size limit) while writing is 507 Insufficient Storage: the server's problem,
not the client's, said plainly; the writers are atomic, so nothing was half-written.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from fastapi import HTTPException

from echoforge.errors import (
    CheckpointError,
    DatasetLayoutError,
    EchoForgeError,
    LabelError,
    TrainingError,
    UnknownFrameError,
)

from lib.runs import TrainingBusyError

#: error type → HTTP status (first match wins)
STATUS: tuple[tuple[type[EchoForgeError], int], ...] = (
    (TrainingBusyError, 429),
    (LabelError, 422),
    (UnknownFrameError, 422),
    (TrainingError, 400),
    (DatasetLayoutError, 404),
    (CheckpointError, 500),
    (EchoForgeError, 400),
)


#: errors of a write that ran out of room (a full disk, a quota, a file-size limit)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def status_for(error: EchoForgeError) -> int:
    return next(code for kind, code in STATUS if isinstance(error, kind))


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """Turn an :class:`EchoForgeError` (or a full disk) raised inside the block into an ``HTTPException``."""
    try:
        yield
    except EchoForgeError as err:
        raise HTTPException(status_code=status_for(err), detail=str(err)) from None
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        raise HTTPException(status_code=507, detail=f"the server's disk is full ({err.strerror}): nothing was "
                                                    "saved and the previous version is intact") from None
