"""Bad input becomes a clear HTTP 4xx with the library's message (MONAI Label would answer 500)."""

from __future__ import annotations

import contextlib
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

#: error type → HTTP status (first match wins)
STATUS: tuple[tuple[type[EchoForgeError], int], ...] = (
    (LabelError, 422),
    (UnknownFrameError, 422),
    (TrainingError, 400),
    (DatasetLayoutError, 404),
    (CheckpointError, 500),
    (EchoForgeError, 400),
)


def status_for(error: EchoForgeError) -> int:
    return next(code for kind, code in STATUS if isinstance(error, kind))


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """Turn an :class:`EchoForgeError` raised inside the block into an ``HTTPException``."""
    try:
        yield
    except EchoForgeError as err:
        raise HTTPException(status_code=status_for(err), detail=str(err)) from None
