"""Biplane measurements in the app's infer result: a real ``monailabel`` server finds a video's other
apical view in its datastore (by name, by DICOM PatientID/StudyInstanceUID, by a link set in the
image info) and reports biplane EDV/ESV/EF with every beat, saying how the beats were paired."""

from __future__ import annotations

import json
import math

import pytest
import requests

from echoforge.io.dicom import write_dicom
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import copy_app, monailabel_server

SIZE = (112, 112)  # the shipped light model's input size


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("biplane")
    studies = root / "studies"
    write_phantom_dataset(studies, "nifti", patients=1, seed=91, size=SIZE, labelled="none", beats=3, progress=False)
    for seed, (name_4ch, name_2ch), meta in ((92, ("loop_a4c", "other_a2c"), {"patient_id": "P92",
                                                                              "study_instance_uid": "1.2.826.0.92"}),
                                             (93, ("solo_x", "solo_y"), {})):
        patient = make_patient(seed)
        beats = patient.beat_sequence(3)
        for view, name in (("4CH", name_4ch), ("2CH", name_2ch)):
            video = patient.render_beats(view, beats, size=SIZE)
            write_dicom(video.replace(meta={**video.meta, **meta}), studies / f"{name}.dcm")  # ingested as DICOM
    app = copy_app(root)
    conf = {"network": "light", "use_shipped_weights": "true", "auto_train_every": "0", "adapt": "off"}
    with monailabel_server(studies, conf, app) as url:
        yield {"url": url, "studies": studies}


def _infer(env, image, params=None):
    response = requests.post(f"{env['url']}/infer/echoforge?image={image}&output=json",
                             data={"params": json.dumps(params or {})}, timeout=300)
    return response


def _biplane(env, image, params=None):
    response = _infer(env, image, params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_camus_named_pair_gives_biplane_beats(env):
    result = _biplane(env, "patient0001_4CH")
    m, b = result["measurements"], result["biplane"]
    assert m["n_beats"] >= 1 and {"beats", "ef_mean", "ef_sd", "n_beats", "ef", "ed", "es"} <= set(m)
    assert b["partner"] == "patient0001_2CH" and b["found_by"] == "name" and b["partner_view"] == "2CH"
    assert b["pairing"] in ("beat-matched", "per-view means") and b["n_beats"] >= 1 and b["pairing_note"]
    assert b["available"] and b["edv_mean_ml"] > b["esv_mean_ml"] > 0 and 5 < b["ef_mean"] < 90
    assert {"beat_2ch", "beat_4ch", "edv_ml", "esv_ml", "ef", "la_volume_ml", "lv_mass_g"} <= set(b["beats"][0])
    again = _biplane(env, "patient0001_2CH")["biplane"]  # the 4CH segmentation is remembered
    assert again["partner"] == "patient0001_4CH" and again["ef_mean"] == pytest.approx(b["ef_mean"], abs=1e-6)


def test_dicom_ids_pair_videos_whatever_their_names(env):
    info = requests.get(f"{env['url']}/datastore/image/info?image=loop_a4c", timeout=30).json()
    assert info["patient_id"] == "P92" and info["view"] == "4CH"
    b = _biplane(env, "loop_a4c")["biplane"]
    assert b["partner"] == "other_a2c" and b["found_by"] == "dicom" and math.isfinite(b["ef_mean"])


def test_a_link_set_in_the_image_info_pairs_two_videos(env):
    assert _biplane(env, "solo_x")["biplane"] is None  # nothing says solo_y is the same patient
    for target in ("../../etc/passwd", "no_such_video"):  # links to nothing pair with nothing
        requests.put(f"{env['url']}/datastore/image/info?image=solo_x", data={"info": json.dumps(
            {"biplane_partner": target})}, timeout=30).raise_for_status()
        assert _biplane(env, "solo_x")["biplane"] is None
    requests.put(f"{env['url']}/datastore/image/info?image=solo_x", data={"info": json.dumps(
        {"biplane_partner": "solo_y"})}, timeout=30).raise_for_status()
    b = _biplane(env, "solo_x")["biplane"]
    assert b["partner"] == "solo_y" and b["found_by"] == "link" and b["n_beats"] >= 1


def test_marked_frames_are_used_and_bad_marks_refused(env):
    plain = _biplane(env, "patient0001_4CH")["measurements"]
    beat = plain["beats"][0]
    marked = _biplane(env, "patient0001_4CH", {"ed": beat["ed"] + 1, "es": str(beat["es"])})["measurements"]
    assert (marked["beats"][0]["ed"], marked["beats"][0]["ed_source"]) == (beat["ed"] + 1, "given")
    assert marked["ed"] == beat["ed"] + 1 and marked["ed_source"] == "given"
    for bad in ({"ed": "first"}, {"es": 10_000}, {"ed": [1, 2]}):
        response = _infer(env, "patient0001_4CH", bad)
        assert response.status_code == 422, (bad, response.text)
