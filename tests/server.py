"""Start a real ``monailabel start_server`` with the EchoForge app on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "echoforge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running server: its base URL (always via 127.0.0.1), process and log file."""

    url: str
    proc: subprocess.Popen
    log: Path

    def kill9(self) -> None:
        """``kill -9`` the server process alone (not its children), as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_server(studies: Path, conf: dict[str, str], app_dir: Path, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", headers: dict[str, str] | None = None, timeout: float = 180.0,
                 preexec_fn: Callable[[], None] | None = None) -> Server:
    """Start the server and wait until ``/info/`` answers; the log is ``app_dir/server.log``.

    A server that needs an API key counts as up once it answers 401 (send ``headers`` to wait for 200).
    """
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   "MONAI_LABEL_TRACKING_ENABLED": "false", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
                   "MONAI_LABEL_SESSIONS": "false", **(env or {})}
    cmd = [str(Path(bin_dir) / "monailabel"), "start_server", "--app", str(app_dir), "--studies", str(studies),
           "--host", host, "--port", str(port)]
    for key, value in conf.items():
        cmd += ["--conf", key, value]
    log_path = app_dir / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=preexec_fn)
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError, ValueError):
                answer = requests.get(f"{server.url}/info/", headers=headers, timeout=5)
                if (answer.status_code == 401 and not headers) or answer.json().get("name") == "EchoForge":
                    return server
            if time.time() > deadline:
                raise TimeoutError(f"server did not answer within {timeout} s")
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def monailabel_server(studies: Path, conf: dict[str, str], app_dir: Path, env: dict[str, str] | None = None,
                      timeout: float = 180.0, **options: object) -> Iterator[str]:
    """Run the server for the duration of the block; yields its base URL; the log is ``app_dir/server.log``.

    After the block, a request the server failed to handle (a 500, whoever sent it) fails the block.
    """
    log = app_dir / "server.log"
    offset = log.stat().st_size if log.exists() else 0  # the log is appended to: only this server's part counts
    server = start_server(studies, conf, app_dir, env, timeout=timeout, **options)  # type: ignore[arg-type]
    try:
        yield server.url
    finally:
        server.stop()
    failures = unhandled_errors(server.log, offset)
    assert not failures, "requests the server failed to handle (500s):\n\n" + "\n\n".join(failures)


def unhandled_errors(log: Path, offset: int = 0) -> list[str]:
    """Each request the server failed to handle (an exception that reached uvicorn: a 500), with its traceback."""
    with open(log, "rb") as file:
        file.seek(offset)
        text = file.read().decode(errors="replace")
    blocks = text.split("Exception in ASGI application")[1:]
    return [block.split("\n[20", 1)[0].strip()[-2500:] for block in blocks]


def copy_app(dest: Path) -> Path:
    """A private copy of the app folder (its model/ and logs/ stay out of the repository)."""
    import shutil

    target = dest / "echoforge-app"
    shutil.copytree(APP, target, ignore=shutil.ignore_patterns("model", "logs", "__pycache__", "bin", "api_key"))
    return target
