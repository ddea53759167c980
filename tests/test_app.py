"""The MONAI Label app, end to end: a real ``monailabel`` server on 127.0.0.1 driven over HTTP.

The tests run in order as one clinician session: empty datastore → next sample → infer →
save a partial label → segment the rest → train → uncertainty → background training; bad input
in between must give 4xx answers and leave the datastore as it was.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

from echoforge.io.dicom import write_dicom
from echoforge.io.studies import StudiesDataset
from echoforge.io.volume import read_label_volume, write_labels, write_labels_like
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import copy_app, monailabel_server

SIZE = (64, 64)
VIDEO = "patient0001_4CH"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    studies = root / "studies"
    write_phantom_dataset(studies, "nifti", patients=2, seed=77, size=SIZE, labelled="none", progress=False)
    reference = root / "reference"  # keep the full labels out of the served folder
    shutil.move(str(studies / "reference"), reference)
    app = copy_app(root)
    conf = {"network": "tiny", "use_shipped_weights": "false", "epochs": "2", "auto_train_every": "0",
            "adapt_steps": "3", "chunk": "8"}
    with monailabel_server(studies, conf, app, env={"MONAI_LABEL_DATASTORE_AUTO_RELOAD": "true"}) as url:
        yield {"url": url, "studies": studies, "reference": reference, "app": app, "root": root}


def _reference(env, name=VIDEO):
    return StudiesDataset(env["studies"]).load(name, labels="none").with_labels(
        read_label_volume(env["reference"] / f"{name}.nii.gz").labels)


def _partial_label_file(env, frames, name=VIDEO, mutate=None):
    """A label file holding ``frames`` of the reference (optionally spoilt by ``mutate``), on the video's geometry."""
    ref = _reference(env, name)
    labels = np.zeros_like(ref.labels)
    labels[frames] = ref.labels[frames]
    if mutate is not None:
        labels = mutate(labels)
    path = env["root"] / f"partial_{name}_{'_'.join(map(str, frames))}{'_bad' if mutate else ''}.nii.gz"
    write_labels_like(labels, env["studies"] / f"{name}.nii.gz", path)
    return path, labels, ref


def _datastore(env):
    return requests.get(f"{env['url']}/datastore/?output=all", timeout=30).json()


def _infer(env, image=VIDEO, params=None, label=None, output="image"):
    files = {"label": (label.name, open(label, "rb"))} if label else None
    return requests.post(f"{env['url']}/infer/echoforge?image={image}&output={output}", files=files,
                         data={"params": json.dumps(params or {})}, timeout=300)


def _labels_from(response, tmp: Path, ext=".nii.gz"):
    path = tmp / f"result{ext}"
    path.write_bytes(response.content)
    return read_label_volume(path).labels


# ---------------------------------------------------------------------- the session
def test_01_info_lists_the_model_the_way_slicer_needs_it(env):
    info = requests.get(f"{env['url']}/info/", timeout=30).json()
    assert "config" not in info  # the stock Slicer plugin refuses servers with a top-level config
    model = info["models"]["echoforge"]
    assert model["type"] == "segmentation" and model["labels"] == {"LV cavity": 1, "LV myocardium": 2,
                                                                    "Left atrium": 3}
    assert set(info["strategies"]) >= {"uncertainty", "random", "first"}
    assert info["datastore"]["total"] == 4 and info["echoforge"]["network"] == "tiny"


def test_02_training_with_no_annotated_video_is_refused(env):
    r = requests.post(f"{env['url']}/train/echoforge?run_sync=true", json={}, timeout=60)
    assert r.status_code == 400 and "annotated" in r.json()["detail"]
    r = requests.post(f"{env['url']}/train/echoforge", json={}, timeout=60)  # background: refused before it starts
    assert r.status_code == 400


def test_03_next_sample(env):
    first = requests.post(f"{env['url']}/activelearning/first", json={}, timeout=60).json()
    assert first["id"] == "patient0001_2CH" and Path(first["path"]).exists()
    assert requests.post(f"{env['url']}/activelearning/random", json={}, timeout=60).json()["id"]


def test_04_infer_a_whole_video(env, tmp_path):
    r = _infer(env, params={"result_extension": ".nrrd"})
    assert r.status_code == 200
    labels = _labels_from(r, tmp_path, ".nrrd")
    ref = _reference(env)
    assert labels.shape == ref.frames.shape and labels.dtype == np.uint8 and labels.max() <= 3
    result = _infer(env, output="json").json()
    assert result["frames"] == ref.n_frames and result["annotated_frames"] == []
    assert {"ed", "es", "areas", "volumes_ml", "ef"} <= set(result["measurements"])
    assert len(result["frame_confidence"]) == ref.n_frames


def test_05_bad_input_gives_4xx_and_leaves_the_datastore_alone(env, tmp_path):
    before = _datastore(env)
    assert _infer(env, image="no_such_video").status_code == 404
    ref = _reference(env)
    frames = [ref.ed, ref.es]
    small = tmp_path / "small.nii.gz"
    write_labels(ref.resized((32, 32)), small)
    bad_values, _, _ = _partial_label_file(env, frames, mutate=lambda lab: np.where(lab == 3, 7, lab))
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    good, _, _ = _partial_label_file(env, frames)
    cases = [(small, {}, 422, "differs"), (bad_values, {}, 422, "outside 0-3"), (corrupt, {}, 400, ""),
             (empty, {}, 400, ""), (good, {"annotated_frames": [0, 999]}, 422, "outside the video")]
    for path, params, status, words in cases:
        r = requests.put(f"{env['url']}/datastore/label?image={VIDEO}&tag=final",
                         files={"label": (path.name, open(path, "rb"))}, data={"params": json.dumps(params)},
                         timeout=60)
        assert r.status_code == status, (path.name, r.text)
        assert words in r.json()["detail"]
        r = _infer(env, label=path, params=params)
        assert r.status_code == status, (path.name, r.text)
    r = requests.put(f"{env['url']}/datastore/label?image=no_such_video&tag=final",
                     files={"label": (good.name, open(good, "rb"))}, timeout=60)
    assert r.status_code == 404
    assert _datastore(env) == before
    assert not list((env["studies"] / "labels" / "final").glob("*"))


def test_06_save_a_partial_label_for_two_frames(env):
    ref = _reference(env)
    frames = [ref.ed, ref.es]
    path, _, _ = _partial_label_file(env, frames)
    r = requests.put(f"{env['url']}/datastore/label?image={VIDEO}&tag=final",
                     files={"label": (path.name, open(path, "rb"))},
                     data={"params": json.dumps({"annotated_frames": frames})}, timeout=60)
    assert r.status_code == 200, r.text
    info = requests.get(f"{env['url']}/datastore/label/info?label={VIDEO}&tag=final", timeout=30).json()
    assert info["annotated_frames"] == sorted(frames) and info["annotated_source"] == "request"


def test_07_stock_slicer_label_without_frame_list(env):
    # the stock plugin exports every frame, 0 where nobody drew: the frames with foreground are the annotated ones
    name = "patient0002_4CH"
    ref = _reference(env, name)
    path, _, _ = _partial_label_file(env, [2], name=name)
    r = requests.put(f"{env['url']}/datastore/label?image={name}&tag=final",
                     files={"label": (path.name, open(path, "rb"))}, data={"params": json.dumps({"label_info": [
                         {"name": "LV cavity", "idx": 1}]})}, timeout=60)
    assert r.status_code == 200, r.text
    info = requests.get(f"{env['url']}/datastore/label/info?label={name}&tag=final", timeout=30).json()
    assert info["annotated_frames"] == [2] and ref.n_frames > 3


def test_08_segment_the_rest_keeps_the_drawn_frames_exactly(env, tmp_path):
    ref = _reference(env)
    frames = [ref.ed, ref.es]
    path, drawn, _ = _partial_label_file(env, frames)
    for adapt in ("off", "on"):
        r = _infer(env, label=path, params={"annotated_frames": frames, "adapt": adapt})
        assert r.status_code == 200, r.text
        labels = _labels_from(r, tmp_path)
        for f in frames:
            np.testing.assert_array_equal(labels[f], drawn[f])
    result = _infer(env, label=path, params={"annotated_frames": frames, "adapt": "on"}, output="json").json()
    assert result["annotated_frames"] == sorted(frames) and result["adapted"]
    assert result["adaptation"]["steps"] <= 3 and 0 <= result["propagation_fit"] <= 1
    assert result["adaptation"]["fit_after"] is not None
    # where to draw next: a frame away from the drawn ones; what looks wrong in the drawing: nothing here
    assert result["next_frame_to_draw"] not in frames and len(result["frame_disagreement"]) == ref.n_frames
    assert result["warnings"] == []
    auto = _infer(env, label=path, params={"annotated_frames": frames, "adapt": "auto"}, output="json").json()
    assert auto["adapted"] == (auto["propagation_fit"] < auto["fit_threshold"])


def test_08b_a_drawn_frame_without_an_lv_is_refused(env):
    ref = _reference(env)
    frames = [ref.ed, ref.es]

    def erase_lv(labels):
        labels[ref.es][labels[ref.es] == 1] = 0
        return labels

    path, _, _ = _partial_label_file(env, frames, mutate=erase_lv)
    r = _infer(env, label=path, params={"annotated_frames": frames})
    assert r.status_code == 422 and "no LV cavity" in r.text, r.text


def test_09_two_inference_requests_at_once(env, tmp_path):
    results: dict[int, requests.Response] = {}

    def call(i):
        results[i] = _infer(env, image=["patient0001_2CH", "patient0002_2CH"][i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, name in enumerate(["patient0001_2CH", "patient0002_2CH"]):
        assert results[i].status_code == 200
        assert _labels_from(results[i], tmp_path).shape == _reference(env, name).frames.shape


def test_10_train_synchronously_publishes_and_infer_reloads(env):
    published = env["app"] / "model" / "echoforge.pt"
    assert not published.exists()
    r = requests.post(f"{env['url']}/train/echoforge?run_sync=true", json={"max_epochs": 2}, timeout=600)
    assert r.status_code == 200, r.text
    assert r.json()["total_epochs"] == 2 and published.exists()
    first = published.stat().st_mtime
    info = requests.get(f"{env['url']}/info/", timeout=30).json()
    assert info["echoforge"]["trained"] and info["echoforge"]["weights"].endswith("echoforge.pt")
    assert info["train_stats"]["echoforge"]["epoch"] == 2
    assert _infer(env, output="json").json()["model"].endswith("echoforge.pt")
    r = requests.post(f"{env['url']}/train/echoforge?run_sync=true", json={"max_epochs": 1}, timeout=600)
    assert r.status_code == 200 and published.stat().st_mtime > first


def test_10b_a_retraining_that_makes_the_model_worse_is_not_published(env):
    published = env["app"] / "model" / "echoforge.pt"
    before, served = published.stat().st_mtime, published.read_bytes()
    # a learning rate of 1 wrecks the network: its best epoch re-finds the annotated frames worse than the model it started from
    r = requests.post(f"{env['url']}/train/echoforge?run_sync=true", json={"max_epochs": 1, "learning_rate": 1.0},
                      timeout=600)
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["published"] is None and "not kept" in stats["not_published"], stats
    assert stats["best_metric"] < stats["start_metric"] - 0.05
    assert published.stat().st_mtime == before and published.read_bytes() == served  # the old model serves on
    info = requests.get(f"{env['url']}/info/", timeout=30).json()
    assert info["train_stats"]["echoforge"]["not_published"] == stats["not_published"]
    assert _infer(env, output="json").json()["model"].endswith("echoforge.pt")


def test_11_uncertainty_strategy_and_scoring(env):
    r = requests.post(f"{env['url']}/activelearning/uncertainty", json={}, timeout=300)
    assert r.status_code == 200
    sample = r.json()
    assert sample["id"] in ("patient0001_2CH", "patient0002_2CH")  # only unannotated videos
    assert len(sample["suggested_frames"]) >= 2 and sample["ed"] in sample["suggested_frames"]
    r = requests.post(f"{env['url']}/scoring/uncertainty?run_sync=true", json={}, timeout=300)
    assert r.status_code == 200
    objects = _datastore(env)["objects"]
    for name in ("patient0001_2CH", "patient0002_2CH"):
        entry = objects[name]["image"]["info"]["echoforge_uncertainty"]
        assert 0 <= entry["score"] and entry["suggested_frames"]


def test_12_background_training_status_and_conflict(env):
    r = requests.post(f"{env['url']}/train/echoforge", json={"max_epochs": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["status"] in ("SUBMITTED", "RUNNING")
    time.sleep(1.0)
    r2 = requests.post(f"{env['url']}/train/echoforge", json={"max_epochs": 1}, timeout=60)
    assert r2.status_code == 429 and "already running" in r2.json()["detail"].lower()
    deadline = time.time() + 400
    status = {}
    while time.time() < deadline:
        status = requests.get(f"{env['url']}/train/", timeout=30).json()
        if status.get("status") in ("DONE", "ERROR", "STOPPED"):
            break
        time.sleep(2)
    assert status.get("status") == "DONE", status
    assert any("epoch 3/3" in line for line in status["details"]) or any("done" in line for line in status["details"])


def test_13_dicom_dropped_into_the_studies_is_converted_and_a_ct_is_skipped(env, tmp_path):
    video = make_patient(4242).render("4CH", size=SIZE, n_frames=6)
    write_dicom(video, tmp_path / "scan.dcm")
    ct = pydicom.dcmread(tmp_path / "scan.dcm")
    ct.Modality, ct.SOPClassUID = "CT", "1.2.840.10008.5.1.4.1.1.2"
    ct.save_as(tmp_path / "ct.dcm")
    shutil.copy(tmp_path / "ct.dcm", env["studies"] / "ct.dcm")
    shutil.copy(tmp_path / "scan.dcm", env["studies"] / "scan.dcm")
    deadline = time.time() + 180
    while time.time() < deadline and "scan" not in _datastore(env)["objects"]:
        time.sleep(1)
    objects = _datastore(env)["objects"]
    assert "scan" in objects and "ct" not in objects
    info = objects["scan"]["image"]["info"]
    assert info["converted_from"] == "originals/scan.dcm" and info["frames"] == 6
    assert info["spacing_mm"] == pytest.approx(list(video.spacing), rel=1e-3)
    assert (env["studies"] / "originals" / "scan.dcm").exists() and (env["studies"] / "ct.dcm").exists()
    assert "not an ultrasound DICOM" in (env["app"] / "server.log").read_text()
    assert _infer(env, image="scan").status_code == 200  # the server keeps serving


def test_14_monai_label_stock_slicer_client_runs_the_loop(env, tmp_path):
    """MONAI Label's own client (the one its stock Slicer plugin ships) drives the app like the plugin does."""
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(env["url"], tmpdir=str(tmp_path), client_id="slicer")
    info = client.info()
    assert "config" not in info and info["models"]["echoforge"]["type"] == "segmentation"
    # the plugin sends the first element of every list in a task's config, plus these two result options
    params = {k: v[0] if isinstance(v, list) else v for k, v in info["models"]["echoforge"]["config"].items()}
    params.update({"result_extension": ".nrrd", "result_dtype": "uint8"})
    sample = client.next_sample("first", {})
    assert sample["id"]
    result_file, result = client.infer("echoforge", sample["id"], params)
    assert result_file.endswith(".nrrd") and result["label_names"]["LV cavity"] == 1
    labels = read_label_volume(result_file).labels
    assert labels.shape == _reference(env, sample["id"]).frames.shape
    # save as the plugin does: the whole labelmap, label_info, no frame list (0 = nobody drew there)
    partial = np.zeros_like(labels)
    ref = _reference(env, sample["id"])
    partial[ref.ed] = ref.labels[ref.ed]
    path = tmp_path / "slicer_label.nrrd"
    write_labels_like(partial, env["studies"] / f"{sample['id']}.nii.gz", path)
    saved = client.save_label(sample["id"], str(path), params={"label_info": [
        {"name": name, "idx": idx} for name, idx in result["label_names"].items()]})
    assert saved["image"] == sample["id"]
    info_label = requests.get(f"{env['url']}/datastore/label/info?label={sample['id']}&tag=final", timeout=30).json()
    assert info_label["annotated_frames"] == [ref.ed]
    train_params = {k: v[0] if isinstance(v, list) else v for k, v in info["trainers"]["echoforge"]["config"].items()}
    train_params["max_epochs"] = 1
    client.train_start("echoforge", train_params)
    deadline = time.time() + 300  # poll the last task (right after a start, "running?" may still say no)
    while time.time() < deadline and client.train_status()["status"] in ("SUBMITTED", "RUNNING"):
        time.sleep(2)
    assert client.train_status()["status"] == "DONE"


def test_15_uploaded_avi_is_converted_and_never_given_a_fake_calibration(env, tmp_path):
    from echoforge.io.avi import write_avi

    video = make_patient(4343).render("4CH", size=SIZE, n_frames=8)
    write_avi(video, tmp_path / "upload.avi")
    r = requests.put(f"{env['url']}/datastore/image?image=uploaded", files={"file": ("upload.avi", open(
        tmp_path / "upload.avi", "rb"))}, timeout=60)
    assert r.status_code == 200 and r.json()["image"] == "uploaded"
    info = _datastore(env)["objects"]["uploaded"]["image"]["info"]
    assert info["spacing_mm"] is None and info["frames"] == 8 and info["converted_from"] == "upload.avi"
    drawn = tmp_path / "drawn.nii.gz"  # every frame drawn, so that the measurement does not hang on the model
    write_labels_like(video.labels, env["studies"] / "uploaded.nii.gz", drawn)
    result = _infer(env, image="uploaded", output="json", label=drawn,
                    params={"annotated_frames": list(range(8))}).json()
    m = result["measurements"]
    assert m["edv_disks_ml"] is None and m["esv_disks_ml"] is None and "no pixel spacing" in m["reason"]
    r = requests.put(f"{env['url']}/datastore/image?image=calibrated", data={"params": json.dumps(
        {"spacing_mm": [0.5, 0.5]})}, files={"file": ("upload.avi", open(tmp_path / "upload.avi", "rb"))}, timeout=60)
    assert r.status_code == 200
    assert _datastore(env)["objects"]["calibrated"]["image"]["info"]["spacing_mm"] == [0.5, 0.5]
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom")
    before = _datastore(env)
    r = requests.put(f"{env['url']}/datastore/image?image=junk", files={"file": ("junk.dcm", open(
        tmp_path / "junk.dcm", "rb"))}, timeout=60)
    assert r.status_code == 400 and _datastore(env)["objects"].keys() == before["objects"].keys()
