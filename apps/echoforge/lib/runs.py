"""Training runs: one at a time, none outliving its server, and only the current one publishes.

* **One trainer.** A run holds an exclusive ``flock`` on ``model/.train.lock`` while it trains. The
  kernel drops the lock when the holding process dies, however it dies (``kill -9``, a crash, a
  power cut), so a dead server never blocks training; the lock file says who holds it (pid, start
  time) for the 429 answer.
* **Dies with its server.** MONAI Label runs background training (and scoring) in a child process.
  The child asks the kernel for SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``) and also
  watches its parent's pid, so it cannot go on training, or publish, after the server is gone.
* **Only the current run publishes.** Each server start writes a new server token
  (``model/server.json``) and each run a run token (``model/train_run.json``); new weights are moved
  into place only while both still name this run, so a run begun under an earlier server (or
  superseded by a newer run) publishes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echoforge.errors import TrainingError
from echoforge.io.atomic import copy_file_atomic, write_json_atomic

logger = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"
SERVER_NAME = "server.json"
RUN_NAME = "train_run.json"
SERVER_PID_ENV = "ECHOFORGE_SERVER_PID"
SERVER_TOKEN_ENV = "ECHOFORGE_SERVER_TOKEN"
_PR_SET_PDEATHSIG = 1
_WATCH_SECONDS = 1.0


class TrainingBusyError(TrainingError):
    """Another run holds the training lock (HTTP 429)."""


class TrainingLock:
    """The exclusive training lock of a model folder (an ``flock``, released by the kernel on death)."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.path = Path(model_dir) / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (``{"pid", "started"}``), or ``None`` when it is free."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    return json.loads(os.pread(fd, 4096, 0) or b"{}")
                except ValueError:
                    return {}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block; :class:`TrainingBusyError` when another run has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TrainingBusyError(busy_message(self.holder())) from None
        try:
            record = json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def busy_message(holder: dict[str, Any] | None) -> str:
    who = f" (process {holder.get('pid')}, since {holder.get('started')})" if holder else ""
    return f"a training run is already running{who}; wait for it to finish or stop it (DELETE /train/)"


# ----------------------------------------------------------------------------- server generations
def start_server_generation(model_dir: str | os.PathLike[str]) -> str:
    """Record a new server start (its token) and export it to the training processes it will start."""
    token = uuid.uuid4().hex
    write_json_atomic(Path(model_dir) / SERVER_NAME, {"token": token, "pid": os.getpid(),
                                                      "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    os.environ[SERVER_TOKEN_ENV] = token
    os.environ[SERVER_PID_ENV] = str(os.getpid())
    return token


def _read_token(path: Path, key: str) -> str | None:
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None


class Run:
    """One training run's identity: published weights come only from the current run of the current server."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.model_dir = Path(model_dir)
        self.token = uuid.uuid4().hex
        self.server_token = os.environ.get(SERVER_TOKEN_ENV)
        write_json_atomic(self.model_dir / RUN_NAME, {"token": self.token, "server": self.server_token,
                                                     "pid": os.getpid(),
                                                     "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    def is_current(self) -> bool:
        if _read_token(self.model_dir / RUN_NAME, "token") != self.token:
            return False
        return self.server_token is None or _read_token(self.model_dir / SERVER_NAME, "token") == self.server_token

    def publish(self, weights: Path, published: Path) -> None:
        """Move ``weights`` onto ``published`` atomically, if this run is still the current one."""
        if not self.is_current():
            raise TrainingError("this training run was superseded (the server restarted or a newer run "
                                "started): its weights were not published")
        copy_file_atomic(weights, published)


# ----------------------------------------------------------------------------- child processes
def is_task_process() -> bool:
    """True in the child process MONAI Label starts for background training, scoring or batch inference."""
    return Path(sys.argv[0]).as_posix().endswith("monailabel/interfaces/utils/app.py")


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit as soon as ``parent_pid`` (the server) is gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.warning(f"PR_SET_PDEATHSIG failed (errno {ctypes.get_errno()}); relying on the watchdog")

    def orphaned() -> bool:
        return os.getppid() != parent_pid

    if orphaned():  # the server died before the request above took effect
        os._exit(1)

    def watch() -> None:
        while not orphaned():
            time.sleep(_WATCH_SECONDS)
        logger.error(f"the server (pid {parent_pid}) is gone: stopping this task")
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
