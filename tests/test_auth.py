"""The API key and the CORS allow-list, on real servers: needed beyond loopback, never logged.

On loopback without ``--conf auth on`` no key is needed (every other server test runs that way,
MONAI Label's stock Slicer client included).
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
import requests

from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import APP, copy_app, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "EchoForge"))

from EchoForgeLib import EchoForgeClient, ServerRejectedError  # noqa: E402 (the module folder is put on the path above)

CONF = {"network": "tiny", "use_shipped_weights": "false", "auto_train_every": "0"}
VIEWER = "http://viewer.example.org"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth") / "studies"
    write_phantom_dataset(folder, "nifti", patients=1, seed=3, size=(48, 48), labelled="none", progress=False)
    return folder


def _logs(app: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in [app / "server.log", *(app / "logs").glob("*")]
                   if p.is_file())


def test_beyond_loopback_a_key_is_required_and_made_when_none_is_given(studies, tmp_path):
    app = copy_app(tmp_path)
    server = start_server(studies, CONF, app, host="0.0.0.0")  # MONAI Label's own default host
    try:
        key_file = app / "api_key"
        assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        r = requests.get(f"{server.url}/info/", timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "API key" in r.json()["detail"]
        for path in ("/datastore/?output=all", "/datastore/image?image=patient0001_4CH", "/train/", "/logs/"):
            assert requests.get(f"{server.url}{path}", timeout=30).status_code == 401, path
        assert requests.post(f"{server.url}/infer/echoforge?image=patient0001_4CH", timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * len(key)}
        assert requests.get(f"{server.url}/info/", headers=wrong, timeout=30).status_code == 401
        good = {"Authorization": f"Bearer {key}"}
        info = requests.get(f"{server.url}/info/", headers=good, timeout=30).json()
        assert info["name"] == "EchoForge" and info["echoforge"]["api_key_required"]
        r = requests.post(f"{server.url}/infer/echoforge?image=patient0001_4CH&output=json", headers=good, timeout=300)
        assert r.status_code == 200, r.text
        assert key not in _logs(app) and str(key_file) in _logs(app)  # where the key is, never the key
    finally:
        server.stop()


def test_a_key_from_a_file_the_slicer_client_and_a_cors_allow_list(studies, tmp_path):
    key = "k3y-from-a-file-0123456789abcdef"
    (tmp_path / "key.txt").write_text(key + "\n")
    app = copy_app(tmp_path)
    conf = {**CONF, "auth": "on", "api_key_file": str(tmp_path / "key.txt"), "cors_origins": VIEWER}
    server = start_server(studies, conf, app, env={"ECHOFORGE_API_KEY": "another-key-that-is-not-used-0000"})
    try:
        with pytest.raises(ServerRejectedError) as refused:
            EchoForgeClient(server.url, timeout=30).info()
        assert refused.value.status == 401 and "needs its API key" in str(refused.value)
        with pytest.raises(ServerRejectedError) as wrong:
            EchoForgeClient(server.url, timeout=30, api_key="not-the-key-0123456789").info()
        assert "did not accept the API key" in str(wrong.value)
        client = EchoForgeClient(server.url, timeout=30, work_timeout=300, api_key=key)
        assert client.info()["name"] == "EchoForge"
        assert client.next_sample("first")["id"]
        assert client.download_image("patient0001_4CH").frames.shape[1:] == (48, 48)
        # a web viewer on the allow-list may call the server (it still needs the key); other pages may not
        preflight = requests.options(f"{server.url}/info/", headers={
            "Origin": VIEWER, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"}, timeout=30)
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == VIEWER
        r = requests.get(f"{server.url}/info/", headers={"Origin": VIEWER, "Authorization": f"Bearer {key}"},
                         timeout=30)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == VIEWER
        assert "access-control-allow-credentials" not in r.headers
        r = requests.get(f"{server.url}/info/", headers={"Origin": "http://evil.example",
                                                         "Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        assert key not in _logs(app)
    finally:
        server.stop()


def test_the_key_may_come_from_the_environment_and_loopback_needs_none(tmp_path, monkeypatch):
    sys.path.insert(0, str(APP))
    try:
        from lib.gate import access_policy
        from lib.settings import AppSettings
    finally:
        sys.path.remove(str(APP))
    monkeypatch.setenv("ECHOFORGE_API_KEY", "env-key-0123456789abcdef")
    monkeypatch.delenv("ECHOFORGE_API_KEY_FILE", raising=False)
    auto = AppSettings.from_conf({})
    assert access_policy(auto, tmp_path, keycloak=False, argv=["--host", "127.0.0.1"]).api_key is None
    assert access_policy(auto, tmp_path, keycloak=False, argv=["--host", "::1"]).api_key is None
    assert access_policy(auto, tmp_path, keycloak=False, argv=["--host", "10.1.2.3"]).api_key == \
        "env-key-0123456789abcdef"
    assert access_policy(auto, tmp_path, keycloak=False, argv=[]).api_key is not None  # MONAI Label: 0.0.0.0
    assert access_policy(auto, tmp_path, keycloak=True, argv=[]).api_key is None  # Keycloak tokens instead
    on = AppSettings.from_conf({"auth": "on"})
    assert access_policy(on, tmp_path, keycloak=False, argv=["--host", "127.0.0.1"]).api_key is not None
    monkeypatch.setenv("ECHOFORGE_API_KEY", "short")
    with pytest.raises(RuntimeError, match="at least 16"):
        access_policy(on, tmp_path, keycloak=False, argv=[])
    assert not (tmp_path / "api_key").exists()  # a key from the environment is not written anywhere


@pytest.mark.parametrize("conf, problem", [({"prior_blend": "1.5"}, "prior_blend"), ({"prior_blend": "-0.1"},
                                           "prior_blend"), ({"adapt": "maybe"}, "adapt"), ({"chunk": "0"}, "chunk")])
def test_conf_values_out_of_range_stop_the_app_with_their_name(conf, problem):
    sys.path.insert(0, str(APP))
    try:
        from lib.settings import AppSettings
    finally:
        sys.path.remove(str(APP))
    assert AppSettings.from_conf({}).prior_blend == 0.8
    assert AppSettings.from_conf({"prior_blend": "0"}).prior_blend == 0.0
    with pytest.raises(ValueError, match=problem):
        AppSettings.from_conf(conf)
