"""A real PACS for the tests: Orthanc with its DICOMweb plugin, on free 127.0.0.1 ports.

The Debian packages ``orthanc`` and ``orthanc-dicomweb`` are installed with apt-get when missing
(CI runs as root on the same kind of machine); where they cannot be had the tests that need a PACS
are skipped with the reason. Each server has its own storage folder and configuration, answers on
loopback only (HTTP: RemoteAccessAllowed false; DICOM: no peer may query, retrieve or store), and is
stopped when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.server import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
#: the PACS, its DICOMweb plugin, and dicom3tools (dciodvfy checks what EchoForge writes against the IODs)
PACKAGES = ("orthanc", "orthanc-dicomweb", "dicom3tools")


def ensure_orthanc() -> str | None:
    """Install :data:`PACKAGES` when missing; returns why they cannot be had, or None when they are there."""
    if ORTHANC.exists() and DICOMWEB_PLUGIN.exists() and shutil.which("dciodvfy"):
        return None
    if shutil.which("apt-get") is None:
        return "Orthanc is not installed and there is no apt-get to install it (Debian packages orthanc, " \
               "orthanc-dicomweb)"
    if os.geteuid() != 0:
        return "Orthanc is not installed and installing the Debian packages orthanc, orthanc-dicomweb needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", *PACKAGES]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # an old or missing package list: refresh it once
        subprocess.run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=600"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not (ORTHANC.exists() and DICOMWEB_PLUGIN.exists()):
        return f"could not install {' '.join(PACKAGES)} with apt-get: {(result.stderr or result.stdout)[-500:]}"
    return None


@contextlib.contextmanager
def orthanc_server(root: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run Orthanc with storage in ``root``; yields its DICOMweb root URL (``http://127.0.0.1:PORT/dicom-web``)."""
    root.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config = {
        "Name": "EchoForgeTestPACS",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "ECHOFORGEPACS",
        "DicomPort": dicom_port,
        "DicomModalities": {},
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": True,
        "HttpDescribeErrors": True,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "SaveJobs": False,
        "StableAge": 1,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": "127.0.0.1",
                     "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = open(root / "orthanc.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([str(ORTHANC), str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=root)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({proc.returncode}): {(root / 'orthanc.log').read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/dicom-web/studies", timeout=5).status_code == 200:
                    break
            if time.time() > deadline:
                raise TimeoutError(f"Orthanc did not answer within {timeout} s")
            time.sleep(0.3)
        yield f"{base}/dicom-web"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def stow(url: str, paths: list[Path]) -> list[dict]:
    """STOW-RS the files to ``url`` (one request); returns Orthanc's per-instance answers."""
    boundary = "echoforge-test-boundary"
    body = b""
    for path in paths:
        body += (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    response = requests.post(f"{url}/studies", data=body, timeout=120, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    response.raise_for_status()
    stored = response.json().get("00081199", {}).get("Value", [])
    failed = response.json().get("00081198", {}).get("Value", [])
    if failed:
        raise RuntimeError(f"the PACS refused {len(failed)} instance(s): {failed}")
    return stored
