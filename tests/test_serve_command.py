"""`echoforge serve` (what `make serve` runs) starts a working MONAI Label server on the studies folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import copy_app, free_port


def test_serve_command_starts_the_echoforge_server(tmp_path):
    studies = tmp_path / "studies"
    write_phantom_dataset(studies, "nifti", patients=1, seed=88, size=(64, 64), labelled="none", progress=False)
    app = copy_app(tmp_path)
    port = free_port()
    env = {**os.environ, "PATH": f"/usr/bin{os.pathsep}/bin"}  # the venv is not on PATH: serve must cope
    proc = subprocess.Popen([sys.executable, "-m", "echoforge.cli", "serve", "--studies", str(studies), "--app", str(app),
                             "--port", str(port), "--conf", "network", "tiny"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        info = _wait_for_info(proc, port)
        assert info["name"] == "EchoForge" and info["datastore"]["total"] == 2
        assert info["echoforge"]["network"] == "tiny"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_serve_command_explains_what_is_missing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "echoforge.cli", "serve", "--studies", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "studies folder not found" in done.stderr
    assert Path(tmp_path).exists()


def test_serve_command_takes_a_dicomweb_url(tmp_path):
    # a PACS that does not answer: the server still starts, lists nothing, and makes no folder named "http:"
    app = copy_app(tmp_path)
    port, dead = free_port(), free_port()
    env = {**os.environ, "MONAI_LABEL_DATASTORE_CACHE_PATH": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "echoforge.cli", "serve", "--studies",
                             f"http://127.0.0.1:{dead}/dicom-web", "--app", str(app), "--port", str(port),
                             "--conf", "network", "tiny"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        info = _wait_for_info(proc, port)
        assert info["datastore"]["total"] == 0
        assert not (tmp_path / "http:").exists() and (tmp_path / "cache").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _wait_for_info(proc: subprocess.Popen, port: int) -> dict:
    """The server's ``/info/`` once it answers (the test fails if it never does or exits first)."""
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            return requests.get(f"http://127.0.0.1:{port}/info/", timeout=5).json()
        except requests.ConnectionError:
            time.sleep(0.5)
    raise AssertionError("the server did not answer")
