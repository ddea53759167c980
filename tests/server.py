"""Start a real ``monailabel start_server`` with the EchoForge app on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "echoforge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def monailabel_server(studies: Path, conf: dict[str, str], app_dir: Path, env: dict[str, str] | None = None,
                      timeout: float = 180.0) -> Iterator[str]:
    """Run the server for the duration of the block; yields its base URL; the log is ``app_dir/server.log``."""
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   "MONAI_LABEL_TRACKING_ENABLED": "false", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
                   "MONAI_LABEL_SESSIONS": "false", **(env or {})}
    cmd = [str(Path(bin_dir) / "monailabel"), "start_server", "--app", str(app_dir), "--studies", str(studies),
           "--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        cmd += ["--conf", key, value]
    log = open(app_dir / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): {(app_dir / 'server.log').read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/info/", timeout=5).json().get("name") == "EchoForge":
                    break
            if time.time() > deadline:
                raise TimeoutError(f"server did not answer within {timeout} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def copy_app(dest: Path) -> Path:
    """A private copy of the app folder (its model/ and logs/ stay out of the repository)."""
    import shutil

    target = dest / "echoforge-app"
    shutil.copytree(APP, target, ignore=shutil.ignore_patterns("model", "logs", "__pycache__", "bin"))
    return target
