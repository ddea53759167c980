"""What can go wrong in the EchoForge module, as typed errors with plain-word messages.

Every error here carries a message a clinician can read in a dialog box as it is::

    try:
        client.segment(image_id, label, annotated_frames=[0, 9])
    except EchoForgeModuleError as err:
        show_message(str(err))  # "The server refused the request: label values ... (HTTP 422)"

``EchoForgeClientError`` and its subclasses are about the server; the others are about the data
in the module (nothing annotated, an unreadable file). Labels and measurements that cannot be used
(no LV cavity on the ED frame, values outside 0-3, a frame outside the video) raise the shared
core's errors (:mod:`EchoForgeCore.errors`), which are module errors too.
"""

from __future__ import annotations

from typing import Optional

from EchoForgeCore.errors import EchoForgeError

#: Base class of every error the EchoForge module reports to its user: the core's own base, so that
#: the core's label and measurement errors are caught with the module's.
EchoForgeModuleError = EchoForgeError


class EchoForgeClientError(EchoForgeModuleError):
    """A call to the EchoForge server did not give a usable answer."""


class ServerUnreachableError(EchoForgeClientError):
    """No connection: the server is not running, is restarting, or the address is wrong."""


class ServerTimeoutError(EchoForgeClientError):
    """The server accepted the connection but did not answer in time."""


class ServerRejectedError(EchoForgeClientError):
    """The server refused the request as bad input (HTTP 4xx) and said why.

    Attributes:
        status: the HTTP status code.
        detail: the server's own explanation (its ``detail`` field, or the response text).
    """

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status = status
        self.detail = detail


class ServerBusyError(EchoForgeClientError):
    """The server is up but has too much work queued (HTTP 503); try again after ``retry_after`` seconds.

    Attributes:
        retry_after: the seconds the server asked to wait (``None`` when it did not say).
        detail: the server's own explanation.
    """

    def __init__(self, message: str, retry_after: Optional[float], detail: str):
        super().__init__(message)
        self.retry_after = retry_after
        self.detail = detail


class ServerFailedError(EchoForgeClientError):
    """The server failed while handling a valid-looking request (HTTP 5xx or an unreadable answer).

    Attributes:
        status: the HTTP status code (0 when the answer itself could not be read).
        detail: what the server said, if anything.
    """

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status = status
        self.detail = detail


class AnnotationError(EchoForgeModuleError):
    """The annotations cannot be sent as they are (nothing drawn, a frame outside the video, ...)."""


class VolumeFormatError(EchoForgeModuleError):
    """A video or label file that cannot be read or written (corrupt, unsupported, wrong shape)."""
