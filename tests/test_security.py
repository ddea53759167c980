"""The server under attack: a real ``monailabel start_server`` on 127.0.0.1, driven as an attacker would.

Next to the studies folder lies a *canary* folder (a secret file, a victim video, a victim label):
after every test its checksums must be as they were, so nothing outside the studies folder was
created, changed or deleted, and no answer may carry the secret's bytes. Each attack must be
refused with a 4xx that says why, never a 500.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests

from echoforge.io.volume import read_label_volume, write_labels_like, write_volume
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import copy_app, monailabel_server

SIZE = (48, 48)
VIDEO = "patient0001_4CH"
OTHER = "patient0001_2CH"
CONF = {"network": "tiny", "use_shipped_weights": "false", "epochs": "1", "auto_train_every": "0",
        "adapt_steps": "2", "chunk": "8", "max_upload_mb": "2", "max_frames": "40", "max_adapt_steps": "60",
        "max_chunk": "32", "infer_workers": "1", "infer_queue": "2"}
OWN = ("studies", "echoforge-app", "tmp", "sessions", "client")  # the server's folders and the test's own files


def _strict_json(text: str):
    """JSON as a browser reads it: NaN and Infinity are errors."""
    def refuse(token):
        raise ValueError(f"{token} in a JSON answer")
    return json.loads(text, parse_constant=refuse)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file (and the name of every folder) under ``root`` outside the server's own folders."""
    out = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:  # the server's own folders are not walked: it removes request files there
            dirs[:] = [d for d in dirs if d not in OWN]
        for name in dirs + [f for f in files if not (Path(folder) == root and f in OWN)]:
            path = Path(folder) / name
            rel = path.relative_to(root)
            out[str(rel)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    studies = root / "studies"
    write_phantom_dataset(studies, "nifti", patients=1, seed=5, size=SIZE, labelled="none", progress=False)
    client = root / "client"
    client.mkdir()
    (studies / "reference").rename(client / "reference")
    canary = root / "canary"
    (canary / "victim").mkdir(parents=True)
    secret = b"SECRET-" + bytes(range(256)) * 64
    (canary / "secret.bin").write_bytes(secret)
    victim = make_patient(31).render("4CH", size=SIZE, n_frames=6)
    write_volume(victim, canary / "victim" / "victim.nii.gz")
    write_volume(victim, canary / "x.nii.gz")
    write_labels_like(np.ones((6, *SIZE), np.uint8), canary / "x.nii.gz", canary / f"{VIDEO}.nii.gz")
    (root / "tmp").mkdir()
    app = copy_app(root)
    server_env = {"TMPDIR": str(root / "tmp"), "MONAI_LABEL_SESSIONS": "true",
                  "MONAI_LABEL_SESSION_PATH": str(root / "sessions"), "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "true"}
    with monailabel_server(studies, CONF, app, env=server_env) as url:
        yield {"url": url, "root": root, "studies": studies, "client": client, "canary": canary, "secret": secret,
               "app": app, "tmp": root / "tmp"}


@pytest.fixture(autouse=True)
def canary_untouched(env):
    before = snapshot(env["root"])
    yield
    assert snapshot(env["root"]) == before, "something outside the studies folder was created, changed or deleted"


def _reference(env, name=VIDEO):
    return read_label_volume(env["client"] / "reference" / f"{name}.nii.gz").labels


def _label_file(env, frames, name=VIDEO, tag="drawn"):
    ref = _reference(env, name)
    labels = np.zeros_like(ref)
    labels[frames] = ref[frames]
    path = env["client"] / f"{tag}_{name}_{'_'.join(map(str, frames))}.nii.gz"
    write_labels_like(labels, env["studies"] / f"{name}.nii.gz", path)
    return path


def _video_file(env, name, n_frames=8, seed=77):
    path = env["client"] / name
    write_volume(make_patient(seed).render("4CH", size=SIZE, n_frames=n_frames), path)
    return path


def _put_image(env, image_id, name, data, params=None):
    query = f"?image={image_id}" if image_id is not None else ""
    return requests.put(f"{env['url']}/datastore/image{query}", files={"file": (name, data)},
                        data={"params": params if isinstance(params, str) else json.dumps(params or {})}, timeout=60)


def _put_label(env, image_id, path_or_bytes, params=None, tag="final", name=None):
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return requests.put(f"{env['url']}/datastore/label", params={"image": image_id, "tag": tag},
                        files={"label": (name or "label.nii.gz", data)},
                        data={"params": params if isinstance(params, str) else json.dumps(params or {})}, timeout=60)


def _infer(env, image=VIDEO, params=None, label=None, output="json", file=None):
    files = {}
    if label is not None:
        files["label"] = (label.name, label.read_bytes())
    if file is not None:
        files["file"] = file
    return requests.post(f"{env['url']}/infer/echoforge", params={"image": image, "output": output},
                         files=files or None,
                         data={"params": params if isinstance(params, str) else json.dumps(params or {})}, timeout=300)


def _datastore(env):
    return requests.get(f"{env['url']}/datastore/?output=all", timeout=30).json()["objects"]


def _refused(response, status, *words):
    assert response.status_code == status, (response.status_code, response.text[:500])
    detail = response.json()["detail"]
    for word in words:
        assert word in str(detail), (word, detail)
    return detail


def _no_secret(env, response):
    assert env["secret"][:64] not in response.content


# ----------------------------------------------------------------------------- reading outside the studies
def test_a_header_naming_a_file_elsewhere_is_refused(env):
    secret = env["canary"] / "secret.bin"
    headers = {
        "mhd_abs.mhd": f"ObjectType = Image\nNDims = 3\nDimSize = 16 16 4\nElementType = MET_UCHAR\n"
                       f"ElementDataFile = {secret}\n",
        "mhd_rel.mhd": "ObjectType = Image\nNDims = 3\nDimSize = 16 16 4\nElementType = MET_UCHAR\n"
                       "ElementDataFile = ../../../../../../../../../../.." + str(secret) + "\n",
        "nhdr_abs.nhdr": f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 16 16 4\nencoding: raw\ndata file: {secret}\n\n",
        "nrrd_detached.nrrd": f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 16 16 4\nencoding: raw\n"
                              f"data file: {secret}\n\n",
    }
    for name, text in headers.items():
        image_id = name.split(".")[0]
        r = _put_image(env, image_id, name, text.encode())
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        _no_secret(env, r)
        assert image_id not in _datastore(env)
        r = requests.get(f"{env['url']}/datastore/image", params={"image": image_id}, timeout=30)
        assert r.status_code == 404
        _no_secret(env, r)
        r = _infer(env, image="", file=(name, text.encode()))  # an upload to infer on, read the same way
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        _no_secret(env, r)
        r = _put_label(env, VIDEO, text.encode(), name=name)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)


def test_a_movie_that_is_really_a_playlist_is_refused(env):
    playlist = f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile://{env['canary'] / 'secret.bin'}\n#EXT-X-ENDLIST\n"
    r = _put_image(env, "playlist", "playlist.avi", playlist.encode())
    _refused(r, 400, "not a movie file")
    _no_secret(env, r)


def test_infer_takes_datastore_ids_only_and_does_not_tell_what_exists(env):
    existing, missing = env["canary"] / "victim" / "victim.nii.gz", env["canary"] / "nope.nii.gz"
    a, b = _infer(env, image=str(existing)), _infer(env, image=str(missing))
    assert a.status_code == b.status_code == 422
    assert a.json()["detail"].replace(str(existing), "P") == b.json()["detail"].replace(str(missing), "P")
    # a valid-looking id that happens to name a file in the server's working folder is still just an id
    a, b = _infer(env, image="README.md"), _infer(env, image="NOT-A-FILE.md")
    assert a.status_code == b.status_code == 404
    for params in ({"image": str(existing)}, {"label": str(env["canary"] / f"{VIDEO}.nii.gz")}):
        r = _infer(env, params=params)
        assert r.status_code == 422, (params, r.text)
    r = _infer(env, image="", params={"image": str(existing)})
    assert r.status_code == 422


def test_ids_and_tags_cannot_reach_outside_the_studies(env):
    good = _video_file(env, "good.nii.gz").read_bytes()
    label = _label_file(env, [0]).read_bytes()
    root = env["root"]
    attacks = [
        requests.put(f"{env['url']}/datastore/?image=../canary/victim/victim", files={"file": ("v.nii.gz", good)},
                     timeout=60),
        _put_image(env, f"{root}/canary/abs", "v.nii.gz", good),
        _put_image(env, None, "..%2F..%2Fcanary%2Fevil.nii.gz", good),  # id from the file name
        _put_label(env, VIDEO, label, tag="../../canary"),
        _put_label(env, "../canary/victim/victim", label),
        _infer(env, params={"save_label": True, "label_tag": "../../canary"}),
        requests.delete(f"{env['url']}/datastore/?id=../canary/x", timeout=30),
        requests.delete(f"{env['url']}/datastore/image?id={root}/canary/x", timeout=30),
        requests.delete(f"{env['url']}/datastore/label?id=x&tag=../../canary", timeout=30),
        requests.get(f"{env['url']}/datastore/image?image=../canary/victim/victim", timeout=30),
        requests.get(f"{env['url']}/datastore/label?label={VIDEO}&tag=../../canary", timeout=30),
        requests.head(f"{env['url']}/datastore/image?image=../canary/x", timeout=30),
        requests.put(f"{env['url']}/datastore/image/info?image=../canary/x", data={"info": "{}"}, timeout=30),
        requests.get(f"{env['url']}/datastore/image/info?image=../canary/x", timeout=30),
        requests.put(f"{env['url']}/datastore/label/info?label={VIDEO}&tag=../../canary", data={"info": "{}"},
                     timeout=30),
    ]
    for r in attacks:
        assert r.status_code == 422, (r.request.method, r.request.url, r.status_code, r.text[:300])
        _no_secret(env, r)
    assert set(_datastore(env)) == {VIDEO, OTHER}


def _tar(members: dict[str, bytes], link: tuple[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tar.addfile(info)
    return buffer.getvalue()


def test_session_archives_cannot_slip_out(env):
    target = env["canary"] / "slipped.txt"
    deep = "../" * 20 + str(target).lstrip("/")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr(deep, b"zip slip")
    archives = {"relative": _tar({deep: b"tar slip"}), "absolute": _tar({str(target): b"tar slip"}),
                "link": _tar({}, link=("evil", str(env["canary"]))), "zip": zipped.getvalue()}
    for kind, data in archives.items():
        r = requests.put(f"{env['url']}/session/?uncompress=true", files={"files": (f"{kind}.tar.gz", data)},
                         timeout=60)
        assert r.status_code == 422, (kind, r.status_code, r.text)
    good = _tar({"video.nii.gz": _video_file(env, "session.nii.gz").read_bytes()})
    r = requests.put(f"{env['url']}/session/?uncompress=true", files={"files": ("good.tar.gz", good)}, timeout=60)
    assert r.status_code == 200, r.text
    single = requests.put(f"{env['url']}/session/", files={"files": ("one.nii.gz", _video_file(
        env, "one.nii.gz").read_bytes())}, timeout=60)
    assert single.status_code == 200
    r = requests.post(f"{env['url']}/infer/echoforge", params={"session_id": single.json()["session_id"],
                                                               "output": "json"}, timeout=300)
    assert r.status_code == 200, r.text
    assert requests.get(f"{env['url']}/session/a..b", timeout=30).status_code == 404


# ----------------------------------------------------------------------------- the clinicians' labels
def test_infer_never_writes_a_clinicians_label(env):
    label = _label_file(env, [0, 5])
    assert _put_label(env, VIDEO, label, {"annotated_frames": [0, 5]}).status_code == 200
    stored = env["studies"] / "labels" / "final" / f"{VIDEO}.nii.gz"
    before, info = stored.read_bytes(), _datastore(env)[VIDEO]["labels"]["final"]["info"]
    _refused(_infer(env, params={"save_label": True, "label_tag": "final"}), 422, "save_label")
    _refused(_infer(env, params={"save_label": "yes please"}), 422, "save_label")
    assert _infer(env, params={"label_tag": "final"}).status_code == 200
    # a prediction may be kept under another tag (MONAI Label's pre-annotation), with no frame counted as drawn
    assert _infer(env, params={"save_label": True}).status_code == 200
    assert stored.read_bytes() == before and _datastore(env)[VIDEO]["labels"]["final"]["info"] == info
    assert read_label_volume(stored).annotated == (0, 5)  # the frames travel in the label file itself
    kept = _datastore(env)[VIDEO]["labels"]["original"]["info"]
    assert kept["annotated_frames"] == [] and kept["annotated_source"] == "model prediction"
    assert read_label_volume(env["studies"] / "labels" / "original" / f"{VIDEO}.nii.gz").annotated is None
    assert requests.delete(f"{env['url']}/datastore/label?id={VIDEO}&tag=original", timeout=30).status_code == 200


@pytest.mark.parametrize("frames", [[-17], [7.9], [True], [999], [3, 3], "x", "1;2", {"a": 1}])
def test_annotated_frames_must_be_frame_numbers_inside_the_video(env, frames):
    before = _datastore(env)
    r = _put_label(env, OTHER, _label_file(env, [0, 3], name=OTHER), {"annotated_frames": frames})
    _refused(r, 422, "annotated_frames")
    assert _datastore(env) == before
    r = requests.put(f"{env['url']}/datastore/label/info", params={"label": VIDEO, "tag": "final"},
                     data={"info": json.dumps({"annotated_frames": frames})}, timeout=30)
    _refused(r, 422, "annotated_frames")
    assert _datastore(env) == before


def test_label_info_frames_are_checked_and_training_keeps_working(env):
    stored = env["studies"] / "labels" / "final" / f"{VIDEO}.nii.gz"
    r = requests.put(f"{env['url']}/datastore/label/info", params={"label": VIDEO, "tag": "final"},
                     data={"info": json.dumps({"annotated_frames": [1]})}, timeout=30)
    _refused(r, 422, "contain no foreground")  # frame 1 was not drawn
    r = requests.put(f"{env['url']}/datastore/label/info", params={"label": VIDEO, "tag": "final"},
                     data={"info": json.dumps({"annotated_frames": [5]})}, timeout=30)
    assert r.status_code == 200, r.text
    assert read_label_volume(stored).annotated == (5,)
    assert _datastore(env)[VIDEO]["labels"]["final"]["info"]["annotated_frames"] == [5]
    r = requests.post(f"{env['url']}/train/echoforge?run_sync=true", json={"max_epochs": 1}, timeout=600)
    assert r.status_code == 200, r.text


# ----------------------------------------------------------------------------- malformed requests
MALFORMED = [
    ("infer", {"params": "not json"}, "params"),
    ("infer", {"params": "[1, 2]"}, "params"),
    ("infer", {"params": '{"chunk": NaN}'}, "params"),
    ("infer", {"params": {"adapt_steps": "x"}}, "adapt_steps"),
    ("infer", {"params": {"adapt_steps": 61}}, "adapt_steps"),
    ("infer", {"params": {"adapt_steps": 2.5}}, "adapt_steps"),
    ("infer", {"params": {"chunk": -3}}, "chunk"),
    ("infer", {"params": {"chunk": 1000}}, "chunk"),
    ("infer", {"params": {"adapt": "maybe"}}, "adapt"),
    ("infer", {"params": {"prior_blend": "x"}}, "prior_blend"),
    ("infer", {"params": {"prior_blend": 1.5}}, "prior_blend"),
    ("infer", {"params": {"prior_blend": "nan"}}, "prior_blend"),
    ("infer", {"params": {"result_extension": ".exe"}}, "result_extension"),
    ("infer", {"params": {"annotated_frames": [0, 1]}}, "annotated_frames"),
    ("label", {"params": "not json"}, "params"),
    ("label", {"params": "[]"}, "params"),
    ("label", {"params": '{"x": Infinity}'}, "params"),
    ("image", {"params": "[1]"}, "params"),
    ("image", {"params": {"spacing_mm": [0.3]}}, "spacing_mm"),
    ("image", {"params": {"spacing_mm": ["a", 1]}}, "spacing_mm"),
    ("image_info", {"info": "nope"}, "info"),
    ("image_info", {"info": "[1]"}, "info"),
    ("train", {"max_epochs": "x"}, "max_epochs"),
    ("train", {"max_epochs": 0}, "max_epochs"),
    ("train", {"max_epochs": 10**6}, "max_epochs"),
    ("train", {"learning_rate": "fast"}, "learning_rate"),
]


@pytest.mark.parametrize("kind,fields,words", MALFORMED, ids=[f"{k}-{w}-{i}" for i, (k, _, w) in enumerate(MALFORMED)])
def test_every_malformed_parameter_is_a_4xx_naming_it(env, kind, fields, words):
    before = _datastore(env)
    if kind == "infer":
        r = _infer(env, params=fields["params"])
    elif kind == "label":
        r = _put_label(env, OTHER, _label_file(env, [0], name=OTHER), fields["params"])
    elif kind == "image":
        r = _put_image(env, "malformed", "m.nii.gz", _video_file(env, "m.nii.gz").read_bytes(), fields["params"])
    elif kind == "image_info":
        r = requests.put(f"{env['url']}/datastore/image/info", params={"image": VIDEO}, data=fields, timeout=30)
    else:
        r = requests.post(f"{env['url']}/train/echoforge", json=fields, timeout=60)
    _refused(r, 422, words)
    assert _datastore(env) == before


def test_unknown_names_are_404_and_missing_input_422(env):
    base = env["url"]
    for r in (requests.post(f"{base}/infer/nosuchmodel?image={VIDEO}", timeout=30),
              requests.post(f"{base}/activelearning/nosuchstrategy", json={}, timeout=30),
              requests.post(f"{base}/scoring/nosuchmethod", json={}, timeout=30),
              requests.post(f"{base}/train/nosuchmodel", json={}, timeout=30),
              requests.delete(f"{base}/datastore/?id=nosuchimage", timeout=30),
              requests.delete(f"{base}/datastore/label?id=nosuchimage&tag=final", timeout=30),
              requests.delete(f"{base}/datastore/label?id={OTHER}&tag=final", timeout=30),
              requests.put(f"{base}/datastore/image/info?image=nosuchimage", data={"info": "{}"}, timeout=30),
              requests.put(f"{base}/datastore/label/info?label=nosuchimage&tag=final", data={"info": "{}"},
                           timeout=30)):
        assert r.status_code == 404, (r.request.method, r.request.url, r.text)
        assert r.json()["detail"]
    _refused(requests.post(f"{base}/infer/echoforge", timeout=30), 422, "image")
    _refused(requests.post(f"{base}/infer/echoforge?image={VIDEO}&output=dicom_seg", timeout=30), 422, "output")
    _refused(requests.post(f"{base}/reload", timeout=30), 405)
    _refused(requests.put(f"{base}/model/echoforge", files={"file": ("m.pt", b"junk")}, timeout=30), 405)


def test_limits_answer_413_and_422(env):
    big = b"\0" * (2 * 2**20 + 1)
    _refused(_put_image(env, "big", "big.nii.gz", big), 413, "max_upload_mb")

    def chunks():  # a well-formed start of a multipart upload whose file part never ends
        yield b'--xyz\r\nContent-Disposition: form-data; name="label"; filename="l.nii.gz"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 2**16
    r = requests.put(f"{env['url']}/datastore/label?image={VIDEO}", data=chunks(), timeout=60,
                     headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    _refused(r, 413, "max_upload_mb")  # streamed without Content-Length: cut at the limit
    long_video = _video_file(env, "long.nii.gz", n_frames=41)
    _refused(_put_image(env, "long", "long.nii.gz", long_video.read_bytes()), 422, "max_frames")
    assert not {"big", "long"} & set(_datastore(env))


def test_a_single_frame_or_2d_video_has_no_ef_and_no_nan(env):
    frame = make_patient(12).render("4CH", size=SIZE, n_frames=1)
    write_volume(frame, env["client"] / "one.nii.gz")
    flat = (frame.frames[0] * 255).astype(np.uint8)
    nib.save(nib.Nifti1Image(flat, np.diag([0.3, 0.3, 1, 1])), env["client"] / "flat.nii.gz")
    for image_id, name in (("oneframe", "one.nii.gz"), ("flat2d", "flat.nii.gz")):
        assert _put_image(env, image_id, name, (env["client"] / name).read_bytes()).status_code == 200
        r = _infer(env, image=image_id)
        assert r.status_code == 200, r.text
        m = _strict_json(r.text)["measurements"]
        assert m["available"] is False and m["ef"] is None and "single frame" in m["reason"]
        assert requests.delete(f"{env['url']}/datastore/?id={image_id}", timeout=30).status_code == 200


def test_uploads_deletes_and_listings_racing_the_file_watcher_never_fail(env):
    # each write wakes the watcher thread, whose refresh runs while other requests change the listing
    video = _video_file(env, "race.nii.gz", n_frames=3).read_bytes()
    answers, stop = [], threading.Event()

    def list_all():
        while not stop.is_set():
            answers.append(requests.get(f"{env['url']}/datastore/?output=all", timeout=30).status_code)

    def churn(name):
        for _ in range(10):
            answers.append(_put_image(env, name, "race.nii.gz", video).status_code)
            answers.append(requests.delete(f"{env['url']}/datastore/?id={name}", timeout=30).status_code)

    lister = threading.Thread(target=list_all)
    writers = [threading.Thread(target=churn, args=(f"race{i}",)) for i in range(2)]
    lister.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    lister.join()
    assert set(answers) == {200}, sorted(set(answers))
    assert not {"race0", "race1"} & set(_datastore(env))


def test_one_bad_video_breaks_neither_ranking_nor_scoring(env):
    (env["studies"] / "broken.nii.gz").write_bytes(b"")
    (env["studies"] / "garbage.nii.gz").write_bytes(b"\x1f\x8b\x08 not a volume")
    deadline = time.time() + 60
    while time.time() < deadline and not {"broken", "garbage"} <= set(_datastore(env)):
        time.sleep(0.5)
    assert {"broken", "garbage"} <= set(_datastore(env))
    r = requests.post(f"{env['url']}/activelearning/uncertainty", json={}, timeout=300)
    assert r.status_code == 200, r.text
    assert _strict_json(r.text)["id"] in (VIDEO, OTHER)  # a readable video, whichever the network ranks first
    r = requests.post(f"{env['url']}/scoring/uncertainty?run_sync=true", json={}, timeout=300)
    assert r.status_code == 200, r.text
    scores = _strict_json(r.text)
    assert "error" in scores["broken"] and "error" in scores["garbage"]
    assert all("score" in scores[i] for i in (VIDEO, OTHER) if i in scores) and OTHER in scores
    for image_id in ("broken", "garbage"):
        assert requests.delete(f"{env['url']}/datastore/?id={image_id}", timeout=30).status_code == 200


def test_the_server_answers_while_the_model_works_and_says_when_it_is_full(env):
    """Model work runs beside the server's event loop: /info/ answers meanwhile; a full queue is a 503."""
    label = _label_file(env, [0, 5])
    answers: list[requests.Response] = []
    finished: list[float] = []  # when each segmentation came back

    start = threading.Barrier(5)

    def slow_infer():
        start.wait()  # all at once: three are admitted (one running, two waiting), the others find it full
        r = _infer(env, label=label, params={"annotated_frames": [0, 5], "adapt": "on", "adapt_steps": 4})
        answers.append(r)
        if r.status_code == 200:
            finished.append(time.time())

    threads = [threading.Thread(target=slow_infer) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    info_answered = []
    while not finished and len(info_answered) < 3:
        r = requests.get(f"{env['url']}/info/", timeout=30)
        assert r.status_code == 200
        info_answered.append(time.time())
    for t in threads:
        t.join()
    assert len(info_answered) == 3 and info_answered[-1] < min(finished)  # answered while the model worked
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 3 and codes.count(503) == 2, codes
    busy = [a for a in answers if a.status_code == 503]
    assert busy and busy[0].headers["Retry-After"] and "busy" in busy[0].json()["detail"]


def test_browser_pages_and_rebound_host_names_are_refused(env):
    url = env["url"]
    assert requests.get(f"{url}/info/", timeout=30).status_code == 200
    assert requests.get(f"{url}/info/", headers={"Origin": url}, timeout=30).status_code == 200  # its own pages
    r = requests.get(f"{url}/info/", headers={"Origin": "http://evil.example"}, timeout=30)
    _refused(r, 403, "cors_origins")
    assert "access-control-allow-origin" not in r.headers
    r = requests.options(f"{url}/datastore/label", headers={"Origin": "http://evil.example",
                                                            "Access-Control-Request-Method": "PUT"}, timeout=30)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    port = url.rsplit(":", 1)[1]
    _refused(requests.get(f"{url}/info/", headers={"Host": f"evil.example:{port}"}, timeout=30), 403, "rebinding")
    assert requests.get(f"{url}/info/", headers={"Host": f"localhost:{port}"}, timeout=30).status_code == 200


def test_temporary_files_are_removed_on_every_path(env):
    """The server's private TMPDIR holds nothing more after a run of rejected and accepted requests."""
    def listing():
        return sorted(p.name for p in env["tmp"].iterdir())

    before = listing()
    good = _label_file(env, [0, 3], name=OTHER)
    for _ in range(2):
        _put_image(env, "junk", "junk.dcm", b"not a dicom")
        _put_image(env, "mhd", "x.mhd", b"ObjectType = Image\nElementDataFile = /etc/hostname\n")
        _put_label(env, OTHER, b"\x1f\x8b corrupt")
        _put_label(env, OTHER, good, {"annotated_frames": [999]})
        _infer(env, image=OTHER, label=good, params={"annotated_frames": [1]})
        _infer(env, image=OTHER, params={"chunk": -3})
        _infer(env, image=OTHER, output="image")
        requests.put(f"{env['url']}/session/?uncompress=true", files={"files": ("x.tar.gz", _tar({"../x": b"x"}))},
                     timeout=60)
    deadline = time.time() + 20  # MONAI Label removes some files in background tasks after the answer
    while time.time() < deadline and listing() != before:
        time.sleep(0.5)
    assert listing() == before
