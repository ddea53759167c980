"""The loop runs itself: saving a label retrains in the background; stopping a run keeps the old model."""

from __future__ import annotations

import json
import time

import numpy as np
import requests

from echoforge.io.studies import StudiesDataset
from echoforge.io.volume import read_label_volume, write_labels_like
from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import copy_app, monailabel_server


def _wait(url: str, done=("DONE", "ERROR", "STOPPED"), timeout: float = 400) -> dict:
    deadline = time.time() + timeout
    status: dict = {}
    while time.time() < deadline:
        r = requests.get(f"{url}/train/", timeout=30)
        status = r.json() if r.status_code == 200 else {}
        if status.get("status") in done:
            return status
        time.sleep(1)
    return status


def test_saving_a_label_retrains_and_stopping_keeps_the_serving_model(tmp_path):
    studies = tmp_path / "studies"
    write_phantom_dataset(studies, "nifti", patients=1, seed=66, size=(64, 64), labelled="none", progress=False)
    reference = read_label_volume(studies / "reference" / "patient0001_4CH.nii.gz").labels
    video = StudiesDataset(studies).load("patient0001_4CH", labels="none")
    drawn = np.zeros_like(reference)
    drawn[[0, 5]] = reference[[0, 5]]
    label = write_labels_like(drawn, studies / "patient0001_4CH.nii.gz", tmp_path / "drawn.nii.gz")
    app = copy_app(tmp_path)
    published = app / "model" / "echoforge.pt"
    conf = {"network": "tiny", "use_shipped_weights": "false", "epochs": "2", "auto_train_every": "1"}
    with monailabel_server(studies, conf, app) as url:
        r = requests.put(f"{url}/datastore/label?image=patient0001_4CH&tag=final",
                         files={"label": ("drawn.nii.gz", open(label, "rb"))},
                         data={"params": json.dumps({"annotated_frames": [0, 5]})}, timeout=60)
        assert r.status_code == 200 and r.json()["auto_train"] == "started"
        assert _wait(url)["status"] == "DONE"
        assert published.exists() and requests.get(f"{url}/info/", timeout=30).json()["echoforge"]["trained"]
        before = published.read_bytes()
        r = requests.post(f"{url}/train/echoforge", json={"max_epochs": 500}, timeout=60)
        assert r.status_code == 200
        _wait(url, done=("RUNNING",), timeout=60)
        time.sleep(3)
        requests.delete(f"{url}/train/", timeout=60)
        assert _wait(url)["status"] == "STOPPED"
        assert published.read_bytes() == before  # the stopped run published nothing
        r = requests.post(f"{url}/infer/echoforge?image=patient0001_4CH&output=json", timeout=120)
        assert r.status_code == 200 and r.json()["frames"] == video.n_frames
