"""The app on a real PACS: Orthanc + DICOMweb started here, cines in by STOW-RS, SEG/SR back out.

One session, in order: the server lists the echo cines of the PACS (and says why it skips the rest)
→ converts a cine on first use exactly as the folder ingest does → infer → a partial label goes
back as a DICOM SEG of its two frames → a full label goes back as SEG + echo SR → segment the rest,
training, active learning on PACS videos → a second server with an empty cache finds the labels
in the PACS and re-loads them identical → bad requests get 4xx and store nothing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from echoforge import EchoVideo
from echoforge.io import load_video, write_labels
from echoforge.io.dicom import PRIVATE_CREATOR, PRIVATE_FRAME_BOX, PRIVATE_GROUP, write_dicom
from echoforge.io.dicom_seg import SEGMENTATION_STORAGE, crop, read_dicom_seg
from echoforge.io.dicom_sr import COMPREHENSIVE_SR, read_echo_sr
from echoforge.io.volume import read_label_volume, read_volume, write_labels_like
from echoforge.phantom import make_patient
from echoforge.report import measurements
from tests.conftest import REAL_A4C, TEST_DATA
from tests.orthanc import ensure_orthanc, orthanc_server, stow
from tests.server import copy_app, monailabel_server

CONF = {"network": "tiny", "use_shipped_weights": "false", "epochs": "1", "auto_train_every": "0",
        "adapt_steps": "2", "chunk": "8"}
REAL_CINE = TEST_DATA / "real-echo" / "pydicom-3.0.2__examples_ybr_color.dcm"
REAL_STILLS = sorted((TEST_DATA / "real-echo").glob("pydicom-data-1.0.0__*.dcm"))


def _ct(path: Path) -> Path:
    """A small CT slice: a PACS holds more than echo."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "CT", "ct-patient"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((16, 16), np.uint16).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)
    return path


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    problem = ensure_orthanc()
    if problem:
        pytest.skip(f"no PACS for the DICOMweb tests: {problem}")
    root = tmp_path_factory.mktemp("dicomweb")
    phantoms = {}
    for seed, view, options in ((31, "4CH", {"photometric": "YBR_FULL_422", "compression": "jpeg-baseline",
                                             "burn_in_ui": True}),
                                (32, "2CH", {"compression": "rle"})):
        video = make_patient(seed).render_half_sequence(view, size=(96, 96))
        path = write_dicom(video.replace(meta={**video.meta, "patient_id": f"phantom{seed}"}),
                           root / f"phantom_{view}.dcm", **options)
        phantoms[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = (path, video)
    files = [p for p, _ in phantoms.values()] + [REAL_CINE, REAL_A4C, *REAL_STILLS, _ct(root / "ct.dcm")]
    with orthanc_server(root / "orthanc") as url:
        stow(url, files)
        app = copy_app(root)
        env = {"MONAI_LABEL_DATASTORE_CACHE_PATH": str(root / "cache")}
        with monailabel_server(url, CONF, app, env=env) as server:
            yield {"url": server, "pacs": url, "root": root, "app": app, "phantoms": phantoms,
                   "client": DICOMwebClient(url)}


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _info(env, image):
    return requests.get(f"{env['url']}/datastore/image/info?image={image}", timeout=60).json()


def _label_info(env, image):
    return requests.get(f"{env['url']}/datastore/label/info?label={image}&tag=final", timeout=60).json()


def _instances(env, sop_class):
    return env["client"].search_for_instances(search_filters={"SOPClassUID": sop_class})


def _fetch(env, item) -> Dataset:
    uid = lambda tag: item[tag]["Value"][0]  # noqa: E731
    return env["client"].retrieve_instance(uid("0020000D"), uid("0020000E"), uid("00080018"))


def _infer(env, image, params=None, label=None, output="image"):
    files = {"label": (label.name, open(label, "rb"))} if label else None
    return requests.post(f"{env['url']}/infer/echoforge?image={image}&output={output}", files=files,
                         data={"params": json.dumps(params or {})}, timeout=300)


def _save(env, image, path, params=None):
    return requests.put(f"{env['url']}/datastore/label?image={image}&tag=final",
                        files={"label": (path.name, open(path, "rb"))},
                        data={"params": json.dumps(params or {})}, timeout=120)


def _phantom_labels(env, uid):
    """The phantom's true labels on the converted (sector-cropped) video."""
    path, video = env["phantoms"][uid]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    full = np.zeros((video.n_frames, ds.Rows, ds.Columns), np.uint8)
    r0, r1, c0, c1 = 0, ds.Rows, 0, ds.Columns
    with contextlib.suppress(KeyError):  # where write_dicom put the frames inside its scanner screen
        r0, r1, c0, c1 = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[PRIVATE_FRAME_BOX].value
    full[:, r0:r1, c0:c1] = video.labels
    return crop(full, _info(env, uid).get("crop_box"))


# ---------------------------------------------------------------------- the session
def test_01_lists_the_echo_cines_and_says_why_it_skips_the_rest(pacs):
    env = pacs
    # the 30-frame MIT cine is a cut of the 120-frame one and kept its SOP Instance UID: the PACS keeps the first
    assert _uid(REAL_CINE) == _uid(REAL_A4C)
    expected = set(env["phantoms"]) | {_uid(REAL_CINE)}
    listing = requests.get(f"{env['url']}/datastore/?output=all", timeout=60).json()["objects"]
    assert set(listing) == expected
    stats = requests.get(f"{env['url']}/datastore/?output=stats", timeout=60).json()
    assert stats["total"] == 3 and stats["completed"] == 0
    log = (env["app"] / "server.log").read_text()
    assert "(Modality CT): not ultrasound" in log
    assert log.count("a single frame, not a cine") == len(REAL_STILLS)
    assert not any(listing[uid]["image"]["info"]["cached"] for uid in expected)
    assert not list((env["app"] / "bin").iterdir())  # no dcmqi tools were downloaded


def test_02_first_use_converts_the_cine_as_the_folder_ingest_does(pacs, tmp_path):
    env = pacs
    uid = _uid(REAL_CINE)
    r = _infer(env, uid)
    assert r.status_code == 200, r.text
    info = _info(env, uid)
    local = load_video(REAL_CINE)  # what the studies-folder ingest does with the same file
    cached = read_volume(info["path"])
    assert cached.frames.shape == local.frames.shape == (30, *local.shape)
    np.testing.assert_allclose(cached.spacing, local.spacing, rtol=1e-6)
    assert cached.frame_time_ms == pytest.approx(local.frame_time_ms)
    assert info["crop_box"] == local.meta["crop_box"] and info["SeriesInstanceUID"] == local.meta["series_instance_uid"]
    assert np.abs(cached.frames - local.frames).max() <= 1 / 255 + 1e-6
    path = tmp_path / "result.nii.gz"
    path.write_bytes(r.content)
    assert read_label_volume(path).labels.shape == cached.frames.shape


def test_03_partial_label_goes_to_the_pacs_as_a_seg_of_its_frames(pacs, tmp_path):
    env = pacs
    uid = next(u for u, (p, _) in env["phantoms"].items() if "4CH" in p.name)
    _infer(env, uid)  # caches it
    truth = _phantom_labels(env, uid)
    frames = [0, truth.shape[0] - 1]
    partial = np.zeros_like(truth)
    partial[frames] = truth[frames]
    path = tmp_path / "partial.nii.gz"
    write_labels_like(partial, _info(env, uid)["path"], path)
    r = _save(env, uid, path, {"annotated_frames": frames})
    assert r.status_code == 200, r.text
    pacs_info = _label_info(env, uid)["pacs"]
    assert pacs_info["seg"]["stored"] and pacs_info["seg"]["frames"] == frames
    assert not pacs_info["sr"]["stored"] and "measurements need all" in pacs_info["sr"]["reason"]
    segs = _instances(env, SEGMENTATION_STORAGE)
    assert len(segs) == 1
    seg = _fetch(env, segs[0])
    source = pydicom.dcmread(env["phantoms"][uid][0], stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID  # kept with the cine's study
    back = read_dicom_seg(seg, truth.shape[0], _info(env, uid)["crop_box"])
    assert back.annotated == tuple(frames) and back.source_sop_instance_uid == uid
    np.testing.assert_array_equal(back.labels, partial)
    _check_with_highdicom_and_dciodvfy(seg, source, tmp_path)


def _check_with_highdicom_and_dciodvfy(seg: Dataset, source: Dataset, tmp_path: Path) -> None:
    import highdicom

    parsed = highdicom.seg.Segmentation.from_dataset(seg)
    assert [s.segment_label for s in parsed.SegmentSequence] == ["LV cavity", "LV myocardium", "Left atrium"]
    frames = sorted({int(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                     for f in seg.PerFrameFunctionalGroupsSequence})
    pixels = parsed.get_pixels_by_source_frame(source_sop_instance_uid=str(source.SOPInstanceUID),
                                               source_frame_numbers=frames, combine_segments=True)
    assert pixels.shape == (len(frames), source.Rows, source.Columns)
    if shutil.which("dciodvfy"):  # David Clunie's IOD validator (Debian dicom3tools), where present
        path = tmp_path / "check.dcm"
        seg.save_as(path, write_like_original=False)
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        assert "Error" not in report, report


def test_04_full_label_goes_back_as_seg_and_echo_sr(pacs, tmp_path):
    env = pacs
    uid = next(u for u, (p, _) in env["phantoms"].items() if "2CH" in p.name)
    _infer(env, uid)
    truth = _phantom_labels(env, uid)
    path = tmp_path / "full.nii.gz"
    write_labels_like(truth, _info(env, uid)["path"], path)
    r = _save(env, uid, path, {"annotated_frames": list(range(truth.shape[0]))})
    assert r.status_code == 200, r.text
    pacs_info = _label_info(env, uid)["pacs"]
    assert pacs_info["seg"]["stored"] and pacs_info["sr"]["stored"]
    srs = _instances(env, COMPREHENSIVE_SR)
    assert len(srs) == 1
    sr = read_echo_sr(_fetch(env, srs[0]))
    cached = read_volume(_info(env, uid)["path"])
    expected = measurements(truth, cached.spacing, cached.frame_time_ms)
    beat = sr["beats"][0]
    assert (beat["ed"], beat["es"]) == (expected["ed"], expected["es"])
    assert beat["ef"] == pytest.approx(expected["ef"], abs=1e-3)
    assert beat["edv_ml"] == pytest.approx(expected["edv_disks_ml"], abs=1e-3)
    assert beat["esv_ml"] == pytest.approx(expected["esv_disks_ml"], abs=1e-3)
    assert sr["fac"] == pytest.approx(expected["fac"], abs=1e-3) and sr["view"] == "2CH"
    assert sr["source_sop_instance_uid"] == uid
    seg = next(s for s in _instances(env, SEGMENTATION_STORAGE) if s["00080018"]["Value"][0]
               == pacs_info["seg"]["instance"])
    back = read_dicom_seg(_fetch(env, seg), truth.shape[0], _info(env, uid)["crop_box"])
    np.testing.assert_array_equal(back.labels, truth)


def test_05_segment_the_rest_training_and_active_learning_on_pacs_videos(pacs, tmp_path):
    env = pacs
    uid = next(u for u, (p, _) in env["phantoms"].items() if "4CH" in p.name)
    truth = _phantom_labels(env, uid)
    frames = [0, truth.shape[0] - 1]
    drawn = np.zeros_like(truth)
    drawn[frames] = truth[frames]
    path = tmp_path / "drawn.nii.gz"
    write_labels_like(drawn, _info(env, uid)["path"], path)
    r = _infer(env, uid, params={"annotated_frames": frames, "adapt": "on"}, label=path)
    assert r.status_code == 200, r.text
    out = tmp_path / "rest.nii.gz"
    out.write_bytes(r.content)
    result = read_label_volume(out).labels
    for f in frames:
        np.testing.assert_array_equal(result[f], drawn[f])
    r = requests.post(f"{env['url']}/train/echoforge?run_sync=true", json={}, timeout=600)
    assert r.status_code == 200, r.text
    nxt = requests.post(f"{env['url']}/activelearning/uncertainty", json={}, timeout=600).json()
    assert nxt["id"] == _uid(REAL_CINE)  # the two labelled phantoms are not proposed
    assert len(nxt["suggested_frames"]) >= 2


def test_06_a_fresh_server_finds_the_labels_in_the_pacs(pacs, tmp_path):
    env = pacs
    app = copy_app(tmp_path)
    with monailabel_server(env["pacs"], CONF, app,
                           env={"MONAI_LABEL_DATASTORE_CACHE_PATH": str(tmp_path / "cache")}) as url:
        stats = requests.get(f"{url}/datastore/?output=stats", timeout=60).json()
        assert stats["total"] == 3 and stats["completed"] == 2
        for uid in env["phantoms"]:
            r = requests.get(f"{url}/datastore/label?label={uid}&tag=final", timeout=120)
            assert r.status_code == 200, r.text
            path = tmp_path / f"{uid}.nii.gz"
            path.write_bytes(r.content)
            mine = requests.get(f"{env['url']}/datastore/label?label={uid}&tag=final", timeout=120)
            (tmp_path / "mine.nii.gz").write_bytes(mine.content)
            np.testing.assert_array_equal(read_label_volume(path).labels,
                                          read_label_volume(tmp_path / "mine.nii.gz").labels)
            info = requests.get(f"{url}/datastore/label/info?label={uid}&tag=final", timeout=60).json()
            assert info["annotated_frames"] == _label_info(env, uid)["annotated_frames"]
        assert len(requests.get(f"{url}/datastore/?output=train", timeout=120).json()) == 2
        assert len(_instances(env, SEGMENTATION_STORAGE)) == 2  # re-loading stored nothing new


def test_07_bad_requests_get_4xx_and_store_nothing(pacs, tmp_path):
    env = pacs
    before = len(_instances(env, SEGMENTATION_STORAGE))
    assert _infer(env, "1.2.3.4.5").status_code == 404
    assert 400 <= _infer(env, "../../etc/passwd").status_code < 500
    uid = _uid(REAL_CINE)
    small = tmp_path / "small.nii.gz"
    write_labels(EchoVideo(np.zeros((30, 8, 8), np.float32)), small, labels=np.ones((30, 8, 8), np.uint8))
    wrong = tmp_path / "wrong.nii.gz"
    frames = read_volume(_info(env, uid)["path"]).frames
    write_labels_like(np.full(frames.shape, 7, np.uint8), _info(env, uid)["path"], wrong)
    for path, status in ((small, 422), (wrong, 422)):
        assert _save(env, uid, path).status_code == status
    assert _save(env, "1.2.3.4.5", wrong).status_code == 404
    r = requests.put(f"{env['url']}/datastore/image?image=x", files={"file": ("x.dcm", open(REAL_CINE, "rb"))},
                     timeout=60)
    assert r.status_code == 405 and "PACS" in r.json()["detail"]
    assert len(_instances(env, SEGMENTATION_STORAGE)) == before
