"""What every HTTP request passes before MONAI Label sees it, and where it then runs.

MONAI Label 0.8.5 serves its endpoints as ``async def`` functions that call the app synchronously:
one inference holds the server's only event loop, and nothing else — not even ``/info/`` — is
answered until it ends. Its CORS middleware lets any web origin call it, credentials included.
:func:`install` puts the :class:`Gate` in the place of that middleware in the running FastAPI
app, and for each request the gate:

1. **Host and origin.** A request from a browser page (it carries ``Origin``) is refused (403)
   unless that origin is the server's own or in ``--conf cors_origins`` (answered with CORS
   headers then). Without an API key the server is loopback-only and also refuses a ``Host`` that
   is not a loopback name, so a web page cannot reach it by DNS rebinding.
2. **API key.** When one is required (see :func:`access_policy`), ``Authorization: Bearer <key>``
   must match (401 otherwise).
3. **Routes this app does not serve.** ``POST /reload`` (it would start a second app beside the
   running one) and ``PUT``/``DELETE /model/…`` (weights are published by training only): 405.
4. **Size.** A body over ``--conf max_upload_mb`` is refused with 413, from its
   ``Content-Length`` or, when it streams without one, as soon as it grows past the limit.
5. **Where it runs.** Model work (``POST /infer``, ``/activelearning``, ``/scoring``, ``/batch``)
   runs in ``--conf infer_workers`` threads, each with an event loop of its own, with at most
   ``--conf infer_queue`` more waiting (503 with ``Retry-After`` beyond that). Other writes
   (uploads, labels, training requests, deletions) run in a few threads of their own. Everything
   else stays on the server's event loop, which therefore keeps answering while the model works.
6. **Temporary files.** A request run in a thread gets a temporary folder of its own: Python's
   :mod:`tempfile` (where MONAI Label puts uploads and results) uses it for that request (a
   context variable), and the folder is deleted once the answer is sent — on success and on
   failure alike (MONAI Label's own clean-up runs after successful answers only).
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import ipaddress
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from echoforge.io.atomic import write_text_atomic

from lib.settings import AppSettings

logger = logging.getLogger(__name__)

API_KEY_ENV = "ECHOFORGE_API_KEY"
API_KEY_FILE_ENV = "ECHOFORGE_API_KEY_FILE"
GENERATED_KEY_NAME = "api_key"
MODEL_PATHS = ("/infer/", "/activelearning/", "/scoring/", "/batch/")
IO_WORKERS = 4
IO_QUEUE = 16
RETRY_AFTER_S = 5
LOOPBACK_NAMES = ("localhost",)

REQUEST_FOLDER: contextvars.ContextVar[str | None] = contextvars.ContextVar("echoforge_request_folder", default=None)
_system_gettempdir = tempfile.gettempdir


def request_folder() -> Path | None:
    """The private temporary folder of the request being handled (``None`` outside one)."""
    folder = REQUEST_FOLDER.get()
    return Path(folder) if folder else None


def _request_gettempdir() -> str:
    return REQUEST_FOLDER.get() or _system_gettempdir()


def _request_gettempdirb() -> bytes:
    return os.fsencode(_request_gettempdir())


# ----------------------------------------------------------------------------- who may call
@dataclass(frozen=True)
class AccessPolicy:
    """How requests are authenticated: ``api_key`` (None = none needed) and the host the server listens on."""

    api_key: str | None
    host: str
    origins: tuple[str, ...]

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def listening_host(argv: list[str]) -> str:
    """The ``--host``/``-i`` of ``monailabel start_server`` (MONAI Label listens on 0.0.0.0 without one)."""
    for i, arg in enumerate(argv):
        if arg in ("--host", "-i") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--host="):
            return arg.split("=", 1)[1]
    return "0.0.0.0"


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def access_policy(settings: AppSettings, app_dir: Path, keycloak: bool, argv: list[str] | None = None) -> AccessPolicy:
    """Whether an API key is needed, and which one.

    ``--conf auth auto`` needs a key when the server listens beyond loopback, ``on`` always, ``off``
    never. With MONAI Label's own authentication (``MONAI_LABEL_AUTH_ENABLE``, Keycloak tokens) the
    API key is off: the same ``Authorization`` header then carries the identity server's token.
    """
    host = listening_host(sys.argv if argv is None else argv)
    needed = settings.auth == "on" or (settings.auth == "auto" and not is_loopback(host))
    if keycloak:
        logger.info("Authentication by MONAI Label (MONAI_LABEL_AUTH_ENABLE): the EchoForge API key is off")
        return AccessPolicy(None, host, settings.allowed_origins)
    if not needed:
        if not is_loopback(host):
            logger.warning(f"Listening on {host} WITHOUT authentication (--conf auth off): anyone who can reach "
                           "this address can read and change the studies")
        return AccessPolicy(None, host, settings.allowed_origins)
    return AccessPolicy(_read_api_key(settings, app_dir, host), host, settings.allowed_origins)


def _read_api_key(settings: AppSettings, app_dir: Path, host: str) -> str:
    """The key from ``--conf api_key_file``, ``$ECHOFORGE_API_KEY_FILE`` or ``$ECHOFORGE_API_KEY``, else a new one."""
    source = settings.api_key_file or os.environ.get(API_KEY_FILE_ENV, "")
    if source:
        try:
            key = Path(source).read_text().strip()
        except OSError as err:
            raise RuntimeError(f"cannot read the API key file {source}: {err.strerror}") from None
        where = f"the file {source}"
    elif os.environ.get(API_KEY_ENV, "").strip():
        key, where = os.environ[API_KEY_ENV].strip(), f"${API_KEY_ENV}"
    else:
        path = app_dir / GENERATED_KEY_NAME
        if not path.exists():
            write_text_atomic(path, secrets.token_urlsafe(32) + "\n")
            os.chmod(path, 0o600)
            logger.warning(f"No API key was configured: a new one was written to {path}")
        key, where = path.read_text().strip(), f"the file {path}"
    if len(key) < 16 or any(c.isspace() for c in key):
        raise RuntimeError(f"the API key in {where} must be at least 16 characters without spaces")
    logger.info(f"Listening on {host}: every request needs the API key (Authorization: Bearer …) from {where}")
    return key


# ----------------------------------------------------------------------------- the gate
@dataclass(frozen=True)
class Limits:
    max_body: int
    infer_workers: int
    infer_queue: int


class _Pool:
    """Threads that each run a request's ASGI call on an event loop of their own; bounded admission."""

    def __init__(self, name: str, workers: int, queue: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self.capacity = workers + queue
        self.admitted = 0  # only touched on the server's event loop

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()

        def relay(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def relayed(*args: Any) -> Any:  # runs on the worker's loop, awaits on the server's
                return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(*args), loop))
            return relayed

        def work() -> None:
            folder = tempfile.mkdtemp(prefix="echoforge-request-", dir=_system_gettempdir())
            try:
                async def handle() -> None:
                    REQUEST_FOLDER.set(folder)
                    await app(scope, relay(receive), relay(send))
                asyncio.run(handle())
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        self.admitted += 1
        try:
            await loop.run_in_executor(self.executor, work)
        finally:
            self.admitted -= 1


class Gate:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, access: AccessPolicy, limits: Limits, api_prefix: str = ""):
        self.app = app
        self.access = access
        self.limits = limits
        self.prefix = api_prefix.rstrip("/")
        self.cors = CORSMiddleware(self._checked, allow_origins=list(access.origins), allow_methods=["*"],
                                   allow_headers=["*"], allow_credentials=False) if access.origins else None
        self.model_pool = _Pool("echoforge-model", limits.infer_workers, limits.infer_queue)
        self.io_pool = _Pool("echoforge-io", IO_WORKERS, IO_QUEUE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        problem = self._host_or_origin_problem(headers)
        if problem:
            return await _answer(send, 403, problem)
        if self.cors is not None:
            return await self.cors(scope, receive, send)
        return await self._checked(scope, receive, send)

    def _host_or_origin_problem(self, headers: Headers) -> str | None:
        host = headers.get("host", "")
        if self.access.api_key is None and self.access.loopback and host and not is_loopback(_hostname(host)):
            return f"Host {host!r} is not this loopback server (DNS rebinding is refused)"
        origin = headers.get("origin")
        if origin is None:
            return None
        origin = origin.rstrip("/")
        own = {f"http://{host}", f"https://{host}"} if host else set()
        if origin in own or origin in self.access.origins:
            return None
        return (f"requests from web pages of {origin!r} are not allowed; add the origin to --conf cors_origins "
                "to let a web viewer call this server")

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if self.access.api_key is not None and not _key_matches(headers, self.access.api_key):
            return await _answer(send, 401, "this server needs its API key: send 'Authorization: Bearer <key>'",
                                 {"WWW-Authenticate": 'Bearer realm="EchoForge"'})
        method, path = scope["method"], self._path(scope)
        if (method == "POST" and path.rstrip("/") == "/reload") or (
                method in ("PUT", "DELETE") and path.startswith("/model/")):
            return await _answer(send, 405, f"{method} {path} is not served by the EchoForge app "
                                            "(models are published by training)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limits.max_body):
            return await _answer(send, 413, self._too_large())
        pool = self._pool_for(method, path)
        if pool is not None and pool.admitted >= pool.capacity:
            return await _answer(send, 503, f"the server is busy: {pool.admitted} requests are running or "
                                            "waiting; try again in a moment", {"Retry-After": str(RETRY_AFTER_S)})
        bounded_receive, guarded_send, overflow = self._bounded(receive, send)
        try:
            if pool is None:
                await self.app(scope, bounded_receive, guarded_send)
            else:
                await pool.run(self.app, scope, bounded_receive, guarded_send)
        except Exception:
            if not overflow["hit"]:
                raise
        if overflow["hit"] and not overflow["answered"]:
            await _answer(send, 413, self._too_large())

    def _path(self, scope: Scope) -> str:
        path = scope["path"]
        return path[len(self.prefix):] if self.prefix and path.startswith(self.prefix) else path

    def _pool_for(self, method: str, path: str) -> _Pool | None:
        if method == "POST" and path.startswith(MODEL_PATHS):
            return self.model_pool
        if method not in ("GET", "HEAD", "OPTIONS") or path.startswith("/datastore/dataset"):
            return self.io_pool
        return None

    def _too_large(self) -> str:
        return (f"the request is larger than {self.limits.max_body // 2**20} MB (--conf max_upload_mb); "
                "nothing was stored")

    def _bounded(self, receive: Receive, send: Send) -> tuple[Receive, Send, dict[str, Any]]:
        """``receive`` that stops a body at the size limit, and ``send`` that then answers 413 instead."""
        state: dict[str, Any] = {"hit": False, "answered": False, "received": 0}
        limit = self.limits.max_body

        async def bounded_receive() -> Message:
            if state["hit"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["hit"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["hit"]:  # whatever MONAI Label makes of the cut body, the answer is 413
                if message["type"] == "http.response.start" and not state["answered"]:
                    state["answered"] = True
                    await _answer(send, 413, self._too_large())
                return
            await send(message)

        return bounded_receive, guarded_send, state


def _hostname(host: str) -> str:
    return urlsplit(f"//{host}").hostname or host


def _key_matches(headers: Headers, key: str) -> bool:
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


# ----------------------------------------------------------------------------- installation
def install(fastapi_app: Any, access: AccessPolicy, limits: Limits, api_prefix: str = "") -> Gate:
    """Put the gate where MONAI Label's CORS middleware is in the running server's middleware stack."""
    if getattr(fastapi_app.state, "echoforge_gate", None) is not None:
        return fastapi_app.state.echoforge_gate
    if fastapi_app.middleware_stack is None:
        fastapi_app.middleware_stack = fastapi_app.build_middleware_stack()
    parent = fastapi_app.middleware_stack
    while not isinstance(getattr(parent, "app", None), CORSMiddleware):
        parent = getattr(parent, "app", None)
        if parent is None:
            raise RuntimeError("MONAI Label's CORS middleware was not found: the EchoForge gate cannot be installed")
    gate = Gate(parent.app.app, access, limits, api_prefix)
    parent.app = gate
    tempfile.gettempdir = _request_gettempdir
    tempfile.gettempdirb = _request_gettempdirb
    fastapi_app.state.echoforge_gate = gate
    logger.info(f"EchoForge gate: API key {'required' if access.api_key else 'off'}, "
                f"CORS origins {list(access.origins) or 'none'}, body ≤ {limits.max_body // 2**20} MB, "
                f"{limits.infer_workers} model worker(s) + {limits.infer_queue} waiting")
    return gate
