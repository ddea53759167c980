"""Crashes and faults against a real server: ``kill -9`` mid-save and mid-training, a full disk, races.

One studies folder lives through several servers in turn (each test restarts it as a crash would
leave it): a clinician's label must come back as the old or the new one, never empty or torn; a
restarted server must not find a second trainer, a stale lock or a broken model; files that broke
while it was down are quarantined with a reason instead of breaking everything else.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import requests

from echoforge.engine.checkpoint import load_model
from echoforge.io.volume import read_label_volume, write_labels_like, write_volume
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import APP, copy_app, start_server

SIZE = (112, 112)
VIDEO = "patient0001_4CH"
OTHER = "patient0001_2CH"
CONF = {"network": "tiny", "use_shipped_weights": "false", "epochs": "1", "auto_train_every": "0", "chunk": "8"}


def _app_module(name):
    """One of the app's own ``lib`` modules, imported from the app folder."""
    sys.path.insert(0, str(APP))
    try:
        return importlib.import_module(f"lib.{name}")
    finally:
        sys.path.remove(str(APP))


def _runs():
    """The app's own ``lib.runs`` (the training lock and run tokens)."""
    return _app_module("runs")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    studies = root / "studies"
    write_phantom_dataset(studies, "nifti", patients=1, seed=21, size=SIZE, labelled="none", progress=False)
    (studies / "reference").rename(root / "reference")
    app = copy_app(root)
    state = {"root": root, "studies": studies, "app": app, "server": None}
    yield state
    if state["server"] is not None:
        state["server"].stop()


@pytest.fixture(autouse=True)
def no_server_left(lab):
    """A test that fails midway leaves no server behind for the next one to meet."""
    yield
    if lab["server"] is not None:
        _stop(lab)


def _start(lab):
    lab["server"] = start_server(lab["studies"], CONF, lab["app"])
    return lab["server"].url


def _stop(lab, kill=False):
    server, lab["server"] = lab["server"], None
    server.kill9() if kill else server.stop()


def _label(lab, frames, name=VIDEO):
    reference = read_label_volume(lab["root"] / "reference" / f"{name}.nii.gz").labels
    labels = np.zeros_like(reference)
    labels[frames] = reference[frames]
    path = lab["root"] / f"label_{name}_{'_'.join(map(str, frames))}.nii.gz"
    write_labels_like(labels, lab["studies"] / f"{name}.nii.gz", path)
    return path, labels


def _save(url, path, frames, name=VIDEO):
    return requests.put(f"{url}/datastore/label", params={"image": name, "tag": "final"},
                        files={"label": (path.name, path.read_bytes())},
                        data={"params": json.dumps({"annotated_frames": frames})}, timeout=120)


def _stored(lab, name=VIDEO):
    return lab["studies"] / "labels" / "final" / f"{name}.nii.gz"


def _label_info(url, name=VIDEO):
    return requests.get(f"{url}/datastore/label/info", params={"label": name, "tag": "final"}, timeout=30).json()


def _trainers(server) -> list[psutil.Process]:
    """Live training processes started by ``server`` (or orphaned by it)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "monailabel.interfaces.utils.app" not in cmdline or \
                "train" not in cmdline:
            continue
        try:
            if proc.environ().get("ECHOFORGE_SERVER_PID") == str(server.proc.pid):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_during_label_saves_leaves_the_old_or_the_new_label(lab):
    url = _start(lab)
    old_path, old = _label(lab, [0, 5])
    new_path, new = _label(lab, [2, 7])
    assert _save(url, old_path, [0, 5]).status_code == 200
    folder = _stored(lab).parent
    caught = threading.Event()

    def kill_mid_write():  # kill -9 the moment a save's temporary file appears in the label folder
        deadline = time.time() + 60
        while time.time() < deadline and not caught.is_set():
            if any(".part" in name for name in os.listdir(folder)):
                caught.set()
                lab["server"].kill9()
                return

    watcher = threading.Thread(target=kill_mid_write)
    watcher.start()
    with pytest.raises(requests.ConnectionError):
        for i in range(200):
            _save(url, *((new_path, [2, 7]) if i % 2 == 0 else (old_path, [0, 5])))
    watcher.join()
    assert caught.is_set(), "no save was caught mid-write"
    lab["server"] = None
    unfinished = [n for n in os.listdir(folder) if ".part" in n]  # empty when the kill landed just after a rename

    url = _start(lab)  # restart after the crash
    stored = read_label_volume(_stored(lab))
    assert np.array_equal(stored.labels, old) or np.array_equal(stored.labels, new)
    assert _label_info(url)["annotated_frames"] == list(stored.annotated) and stored.annotated in ((0, 5), (2, 7))
    assert not [n for n in os.listdir(folder) if n.startswith(".")]  # an unfinished write is cleared away
    assert not unfinished or "a write that never finished" in lab["server"].log.read_text()
    _stop(lab)


def test_a_restart_quarantines_what_broke_while_the_server_was_down(lab):
    studies = lab["studies"]
    (studies / "empty.nii.gz").write_bytes(b"")
    (studies / "garbage.nrrd").write_bytes(b"this is not a volume")
    (studies / "labels" / "final" / f"{OTHER}.nii.gz").write_bytes(b"")  # an empty label left by a crash
    config = studies / "datastore_v2.json"
    config.write_text(config.read_text()[: len(config.read_text()) // 2])  # torn by a crash of an older server
    url = _start(lab)
    quarantine = studies / "quarantine"
    moved = {e["file"]: e["reason"] for e in json.loads((quarantine / "quarantine.json").read_text())}
    assert set(moved) == {"empty.nii.gz", "garbage.nrrd", f"labels/final/{OTHER}.nii.gz", "datastore_v2.json"}
    assert "empty" in moved["empty.nii.gz"] and "NRRD" in moved["garbage.nrrd"]
    assert (quarantine / "empty.nii.gz").exists() and (quarantine / "labels" / "final" / f"{OTHER}.nii.gz").exists()
    log = lab["server"].log.read_text()
    assert "Quarantined empty.nii.gz" in log and "Quarantined labels/final" in log
    objects = requests.get(f"{url}/datastore/?output=all", timeout=30).json()["objects"]
    assert set(objects) == {VIDEO, OTHER} and "final" not in objects[OTHER]["labels"]
    frames = list(read_label_volume(_stored(lab)).annotated)
    assert _label_info(url)["annotated_frames"] == frames  # rebuilt from the label file itself
    assert requests.post(f"{url}/activelearning/uncertainty", json={}, timeout=300).json()["id"] == OTHER
    r = requests.post(f"{url}/train/echoforge?run_sync=true", json={"max_epochs": 1}, timeout=600)
    assert r.status_code == 200, r.text
    _stop(lab)


def test_kill_during_training_takes_the_trainer_along_and_a_restart_trains_again(lab):
    runs = _runs()
    url = _start(lab)
    server = lab["server"]
    published = lab["app"] / "model" / "echoforge.pt"
    before = published.read_bytes()
    r = requests.post(f"{url}/train/echoforge", json={"max_epochs": 500}, timeout=60)
    assert r.status_code == 200, r.text
    lock = runs.TrainingLock(lab["app"] / "model")
    deadline = time.time() + 120
    while time.time() < deadline and lock.holder() is None:
        time.sleep(0.2)
    holder = lock.holder()
    assert holder and holder["pid"] != server.proc.pid  # a child process trains
    assert [p.pid for p in _trainers(server)] == [holder["pid"]]
    server.kill9()
    lab["server"] = None
    deadline = time.time() + 15
    # A killed process shows as a zombie while the kernel still tears it down; its files (and with
    # them the lock) are closed a moment later.
    while time.time() < deadline and not (_gone(holder["pid"]) and lock.holder() is None):
        time.sleep(0.2)
    assert _gone(holder["pid"]), "the training process outlived its server"
    assert lock.holder() is None, "the dead trainer's lock was not released"
    assert published.read_bytes() == before
    load_model(published)  # still the valid model of the last finished run

    url = _start(lab)
    r = requests.post(f"{url}/train/echoforge?run_sync=true", json={"max_epochs": 1}, timeout=600)
    assert r.status_code == 200, r.text
    assert published.read_bytes() != before
    load_model(published)
    _stop(lab)


def test_concurrent_training_requests_start_exactly_one_run(lab):
    url = _start(lab)
    server = lab["server"]
    answers: list[requests.Response] = []
    barrier = threading.Barrier(6)

    def train(enqueue: bool):
        barrier.wait()
        answers.append(requests.post(f"{url}/train/echoforge", params={"enqueue": str(enqueue).lower()},
                                     json={"max_epochs": 3}, timeout=120))

    threads = [threading.Thread(target=train, args=(i == 5,)) for i in range(6)]
    for t in threads:
        t.start()
    most = 0
    while any(t.is_alive() for t in threads) or requests.get(f"{url}/train/", timeout=30).json().get(
            "status") in ("SUBMITTED", "RUNNING"):
        most = max(most, len(_trainers(server)))
        time.sleep(0.2)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 429, 429, 429, 429, 429], [a.text for a in answers]
    assert most <= 1
    status = requests.get(f"{url}/train/", params={"all": "true"}, timeout=30).json()
    assert [t["status"] for t in status] == ["DONE"]
    _stop(lab)


def test_a_lock_held_elsewhere_blocks_training_until_its_holder_dies(lab):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from lib.runs import TrainingLock\n"
        "with TrainingLock(sys.argv[2]).hold():\n    print('held', flush=True); time.sleep(600)"),
        str(APP), str(lab["app"] / "model")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        url = _start(lab)
        r = requests.post(f"{url}/train/echoforge", json={"max_epochs": 1}, timeout=60)
        assert r.status_code == 429 and f"process {holder.pid}" in r.json()["detail"]
        r = requests.post(f"{url}/train/echoforge?run_sync=true", json={"max_epochs": 1}, timeout=60)
        assert r.status_code == 429
        holder.send_signal(signal.SIGKILL)  # the holder crashes: the kernel releases its lock
        holder.wait()
        r = requests.post(f"{url}/train/echoforge?run_sync=true", json={"max_epochs": 1}, timeout=600)
        assert r.status_code == 200, r.text
    finally:
        holder.kill()
        holder.wait()
    _stop(lab)


def test_a_run_from_an_earlier_server_or_superseded_publishes_nothing(lab, tmp_path, monkeypatch):
    runs = _runs()
    monkeypatch.setenv(runs.SERVER_TOKEN_ENV, "")
    monkeypatch.setenv(runs.SERVER_PID_ENV, "")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"new weights")
    published = model_dir / "echoforge.pt"
    published.write_bytes(b"serving weights")
    runs.start_server_generation(model_dir)
    stale = runs.Run(model_dir)
    runs.start_server_generation(model_dir)  # the server restarted while the run trained
    with pytest.raises(runs.TrainingError, match="superseded"):
        stale.publish(weights, published)
    current = runs.Run(model_dir)
    newer = runs.Run(model_dir)  # a newer run of the same server
    with pytest.raises(runs.TrainingError):
        current.publish(weights, published)
    assert published.read_bytes() == b"serving weights"
    newer.publish(weights, published)
    assert published.read_bytes() == b"new weights"


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB filesystem for the studies (tmpfs, as root); else a 256 kB file-size limit on the server."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode == 0:
        yield mount, None
        subprocess.run(["umount", "-l", str(mount)], check=False)
    else:
        import resource

        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        yield mount, limit_file_size


def test_a_full_disk_refuses_the_save_and_keeps_the_previous_label(tmp_path, small_disk):
    disk, limit = small_disk
    studies = disk / "studies"
    studies.mkdir()
    shape = (100, *SIZE)  # T×H×W
    write_volume(make_patient(5).render("4CH", size=SIZE, n_frames=shape[0]), studies / "clip.nii.gz")
    app = copy_app(tmp_path)
    server = start_server(studies, CONF, app, preexec_fn=limit)
    try:
        small = np.zeros(shape, np.uint8)
        small[0, 40:60, 40:60] = 1
        write_labels_like(small, studies / "clip.nii.gz", tmp_path / "small.nii.gz")
        big = np.random.default_rng(0).integers(0, 4, size=shape, dtype=np.uint8)  # incompressible: ~300 kB
        write_labels_like(big, studies / "clip.nii.gz", tmp_path / "big.nii.gz")
        url = server.url
        assert _save(url, tmp_path / "small.nii.gz", [0], name="clip").status_code == 200
        stored = studies / "labels" / "final" / "clip.nii.gz"
        before, info = stored.read_bytes(), _label_info(url, "clip")
        if limit is None:  # fill the disk but for a little room: less than the new label needs
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            (disk / "filler").write_bytes(b"\0" * max(free - 64 * 1024, 0))
        r = _save(url, tmp_path / "big.nii.gz", list(range(shape[0])), name="clip")
        assert r.status_code == 507 and "disk is full" in r.json()["detail"], r.text
        assert stored.read_bytes() == before and _label_info(url, "clip") == info
        assert not [n for n in os.listdir(stored.parent) if n.startswith(".")]
        if limit is None:
            (disk / "filler").unlink()
            assert _save(url, tmp_path / "big.nii.gz", list(range(shape[0])), name="clip").status_code == 200
            assert np.array_equal(read_label_volume(stored).labels, big)
    finally:
        server.stop()


def test_the_file_watchers_refresh_racing_uploads_deletes_and_listings_never_raises(tmp_path):
    # in one process, as in the server: the watcher thread refreshes while request threads change the listing
    datastore_module = _app_module("datastore")
    studies = tmp_path / "studies"
    write_phantom_dataset(studies, "nifti", patients=2, seed=3, size=(32, 32), labelled="none", progress=False)
    video = tmp_path / "upload.nii.gz"
    write_volume(make_patient(4).render("4CH", size=(32, 32), n_frames=2), video)
    store = datastore_module.EchoDatastore(str(studies), auto_reload=False)
    errors, stop = [], threading.Event()

    def repeat(work):
        try:
            while not stop.is_set():
                work()
        except Exception as err:  # noqa: BLE001 (the test reports whatever escaped)
            errors.append(repr(err))

    def churn():
        for i in range(4):
            store.add_image(f"upload{i}", str(video), {})
        for i in range(4):
            store.remove_image(f"upload{i}")

    def listing():
        store.datalist()
        store.list_images()
        store.get_unlabeled_images()

    threads = [threading.Thread(target=repeat, args=(work,)) for work in (store.refresh, churn, listing)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(store.list_images()) == sorted(p.name[:-7] for p in studies.glob("*.nii.gz"))
