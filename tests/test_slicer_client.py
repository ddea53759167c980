"""The Slicer module's logic layer (``slicer_extension/EchoForge/EchoForgeLib``) against a real server.

A ``monailabel start_server`` with the EchoForge app runs on 127.0.0.1 over phantom videos (and
one AVI, which the server converts without a pixel spacing). The tests run in order as one
clinician session: connect → next sample → download → draw two frames → segment the rest →
measure → report → submit → train; then the bad input a clinician meets: no server, a server
that never answers, a video without spacing, nothing drawn, a label the server does not know.
Last, the module's widget itself (through the Slicer stand-ins of ``tests/slicer_fakes.py``) on
DICOM cines loaded the way Slicer's DICOM module loads them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from echoforge.core.measurements import measure_biplane, measure_labels
from echoforge.io.avi import write_avi
from echoforge.io.dicom import write_dicom
from echoforge.io.volume import read_label_volume, read_volume
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import write_phantom_dataset
from tests.server import copy_app, free_port, monailabel_server
from tests.slicer_fakes import FakeSlicer, draw_on_frame, import_echoforge, load_dicom_cine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "EchoForge"))

from EchoForgeLib import (  # noqa: E402 (the module folder is put on the path just above)
    AnnotationError,
    EchoForgeClient,
    ServerRejectedError,
    ServerTimeoutError,
    ServerUnreachableError,
    VideoSession,
    biplane_pairs,
    measure_pair,
    measurement_rows,
    volume_from_slicer,
    write_study_report,
)

SIZE = (64, 64)
AVI_VIDEO = "uncalibrated"  # converted by the server from uncalibrated.avi: no pixel spacing


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("slicer")
    studies = root / "studies"
    write_phantom_dataset(studies, "nifti", patients=2, seed=31, size=SIZE, labelled="none", progress=False)
    reference = root / "reference"  # the full phantom labels stay out of the served folder
    shutil.move(str(studies / "reference"), reference)
    movie = make_patient(909).render("4CH", size=SIZE, n_frames=8)
    write_avi(movie, studies / f"{AVI_VIDEO}.avi")
    app = copy_app(root)
    conf = {"network": "tiny", "use_shipped_weights": "false", "epochs": "2", "auto_train_every": "0",
            "chunk": "8", "adapt_steps": "3"}
    with monailabel_server(studies, conf, app, env={"MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"}) as url:
        yield {"url": url, "studies": studies, "reference": reference, "root": root, "movie": movie,
               "client": EchoForgeClient(url, timeout=60, work_timeout=300), "state": {}}


def _reference_labels(env, image_id: str) -> np.ndarray:
    return read_label_volume(env["reference"] / f"{image_id}.nii.gz").labels


def _two_drawn_frames(env, session: VideoSession) -> tuple[np.ndarray, list[int]]:
    """The phantom's own labels on its ED and ES frames, as a clinician would draw them; nothing elsewhere."""
    reference = _reference_labels(env, session.image_id)
    areas = (reference == 1).sum(axis=(1, 2))
    frames = sorted({int(np.argmax(areas)), int(np.argmin(areas))})
    drawn = np.zeros_like(reference)
    drawn[frames] = reference[frames]
    return drawn, frames


def _label_info(env, image_id: str) -> dict:
    with urllib.request.urlopen(f"{env['url']}/datastore/label/info?label={image_id}&tag=final", timeout=30) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def _silent_server(close_at_once: bool = False) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (or closes them at once)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            if close_at_once:
                connection.recv(65536)
                connection.close()
            else:
                accepted.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        listener.close()


# ---------------------------------------------------------------------- the clinician's session
def test_01_connect_and_see_the_model(env):
    info = env["client"].info()
    model = info["models"]["echoforge"]
    assert model["type"] == "segmentation"
    assert model["labels"] == {"LV cavity": 1, "LV myocardium": 2, "Left atrium": 3}
    assert "uncertainty" in info["strategies"] and info["echoforge"]["network"] == "tiny"
    assert env["client"].training_status() is None  # nothing trained on this server yet


def test_02_next_sample_suggests_frames(env):
    sample = env["client"].next_sample("uncertainty")
    assert sample is not None and sample["id"] in {"patient0001_2CH", "patient0001_4CH", "patient0002_2CH",
                                                   "patient0002_4CH", AVI_VIDEO}
    assert len(sample["suggested_frames"]) >= 2 and sample["ed"] in sample["suggested_frames"]
    env["state"]["sample"] = sample


def test_03_download_the_video_upright(env):
    image_id = "patient0001_4CH"
    video = env["client"].download_image(image_id)
    served = read_volume(env["studies"] / f"{image_id}.nii.gz")  # the library's reading of the same file
    assert video.frames.shape == served.frames.shape and video.frames.dtype == np.uint8
    np.testing.assert_array_equal(video.frames, served.frames_uint8())
    assert video.spacing == pytest.approx(served.spacing) and video.frame_time_ms == pytest.approx(
        served.frame_time_ms)
    env["state"]["video"] = video


def test_04_annotate_two_frames_and_segment_the_rest(env):
    client, video = env["client"], env["state"]["video"]
    session = VideoSession("patient0001_4CH", video, suggested=env["state"]["sample"])
    drawn, frames = _two_drawn_frames(env, session)
    assert session.annotations.update(drawn) == frames
    areas = (drawn == 1).sum(axis=(1, 2))
    session.mark_ed(int(np.argmax(areas)))
    session.mark_es(int(np.argmin(np.where(areas > 0, areas, areas.max() + 1))))
    result = session.segment_the_rest(client, adapt="auto")
    assert result.shape == video.frames.shape and result.dtype == np.uint8 and result.max() <= 3
    for f in frames:  # the drawn frames come back exactly as drawn
        np.testing.assert_array_equal(result[f], drawn[f])
    assert session.result_info["annotated_frames"] == frames
    assert session.result is result and client.last_result is session.result_info
    # a correction after the result: the corrected frame joins the annotated ones
    corrected = result.copy()
    other = next(f for f in range(video.n_frames) if f not in frames)
    corrected[other][:4, :4] = 1  # the clinician paints on an undrawn frame
    assert session.annotations.update(corrected, baseline=result) == [other]
    assert session.annotations.annotated_frames == sorted([*frames, other])
    session.annotations.remove_frame(other)
    env["state"]["session"] = session


def test_05_measure_the_result_like_the_library_and_the_server(env):
    session = env["state"]["session"]
    result, spacing = session.result, session.video.spacing
    m = session.measurements()  # on the ED and ES frames the clinician marked (both drawn)
    library = measure_labels(result, spacing, session.video.frame_time_ms, ed=session.ed, es=session.es)
    assert m["available"] and (m["ed"], m["es"]) == (session.ed, session.es)
    for key in ("edv_disks_ml", "esv_disks_ml", "ef", "fac", "length_ed", "length_es"):
        assert m[key] == pytest.approx(library[key], rel=1e-9), key
    assert m["edv_disks_ml"] > m["esv_disks_ml"] > 0 and 0 < m["ef"] < 100
    # with ED/ES detected, the module's numbers are the server's own (its infer JSON)
    marks = session.ed, session.es
    session.mark_ed(None)
    session.mark_es(None)
    ours, server = session.measurements(), session.result_info["measurements"]
    session.mark_ed(marks[0])
    session.mark_es(marks[1])
    assert (ours["available"], ours["reason"], ours["ed"], ours["es"]) == (
        server["available"], server["reason"], server["ed"], server["es"])
    for key in ("edv_disks_ml", "esv_disks_ml", "ef"):  # absent or None on both sides when ED/ES hold no LV
        if ours.get(key) is None or server.get(key) is None:
            assert ours.get(key) is None and server.get(key) is None, key
        else:
            assert ours[key] == pytest.approx(server[key], rel=1e-6, nan_ok=True), key
    assert ours.get("areas") == pytest.approx(server.get("areas"), rel=1e-6)


def test_06_report_json(env, tmp_path):
    session = env["state"]["session"]
    report = session.report(str(tmp_path))
    written = json.loads(Path(report["report_json"]).read_text())
    assert {"source", "frames", "size", "spacing_mm", "frame_time_ms", "view", "measurements",
            "annotated_frames"} <= set(written)
    assert written["view"] == "4CH" and written["annotated_frames"] == session.annotations.annotated_frames
    assert written["measurements"]["ef"] == pytest.approx(session.measurements()["ef"])


def test_07_submit_the_drawn_frames(env):
    session = env["state"]["session"]
    answer = session.submit(env["client"])
    assert answer["image"] == session.image_id and answer["auto_train"] == "off"
    info = _label_info(env, session.image_id)
    assert info["annotated_frames"] == session.annotations.annotated_frames
    assert info["annotated_source"] == "request"


def test_08_biplane_and_study_report(env, tmp_path):
    client = env["client"]
    four = env["state"]["session"]
    two = VideoSession("patient0001_2CH", client.download_image("patient0001_2CH"))
    drawn, frames = _two_drawn_frames(env, two)
    two.annotations.update(drawn)
    two.segment_the_rest(client, adapt="off")
    assert biplane_pairs([four, two]) == [(two, four)]
    pair = measure_pair(two, four)
    single_2ch = two.clip().result  # the 2CH has no marks: its single beat is its first detected beat
    library = measure_biplane(two.result, two.video.spacing, four.result, four.video.spacing,
                              ed_2ch=single_2ch["ed"], es_2ch=single_2ch["es"], ed_4ch=four.ed, es_4ch=four.es)
    assert [row["video"] for row in measurement_rows([four, two])] == ["patient0001_4CH", "patient0001_2CH",
                                                                       "patient0001 (biplane)"]
    assert pair.measurements["available"]
    for key in ("edv_ml", "esv_ml", "ef"):
        assert pair.measurements[key] == pytest.approx(library[key], rel=1e-9)
    four.reference_ef, two.reference_ef = 60.0, 55.0
    summary = write_study_report([four, two], str(tmp_path))
    assert summary["biplane"][0]["2CH"] == "patient0001_2CH" and summary["ef_agreement"]["n"] == 2
    assert summary["ef_bland_altman"]["video"] == ["patient0001_4CH", "patient0001_2CH"]
    assert json.loads(Path(summary["report_json"]).read_text())["videos"][0]["reference_ef"] == 60.0


def test_09_train_in_the_background_and_follow_it(env):
    client = env["client"]
    record = client.train({"max_epochs": 1})
    assert record["status"] in ("SUBMITTED", "RUNNING")
    time.sleep(1.0)
    with pytest.raises(ServerRejectedError) as busy:
        client.train({"max_epochs": 1})
    assert busy.value.status == 429 and "already running" in str(busy.value)
    deadline, progress = time.time() + 300, {}
    while time.time() < deadline:
        progress = client.training_progress()
        if progress["status"] in ("DONE", "ERROR", "STOPPED"):
            break
        time.sleep(2)
    assert progress["status"] == "DONE", progress
    assert progress["epoch"] == progress["total_epochs"] == 1
    assert "not_published" in progress  # None when the run was published, else why not
    assert client.info()["echoforge"]["trained"]


# ---------------------------------------------------------------------- bad input
def test_10_no_server_is_said_plainly_and_nothing_is_lost(env):
    session = VideoSession("patient0002_2CH", env["client"].download_image("patient0002_2CH"))
    session.annotations.update(_two_drawn_frames(env, session)[0])
    before = session.annotations.submission()
    closed = EchoForgeClient(f"127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(ServerUnreachableError) as refused:
        closed.info()
    assert "connection was refused" in str(refused.value) and "running" in str(refused.value)
    with pytest.raises(ServerUnreachableError):
        session.segment_the_rest(closed)
    after = session.annotations.submission()
    assert after[1] == before[1] and np.array_equal(after[0], before[0])


def test_11_a_server_that_never_answers_times_out(env):
    with _silent_server() as url:
        client = EchoForgeClient(url, timeout=0.5)
        started = time.time()
        with pytest.raises(ServerTimeoutError) as slow:
            client.info()
        assert time.time() - started < 10
        assert "did not answer within 0.5 s" in str(slow.value)
    with _silent_server(close_at_once=True) as url:  # a server going down mid-request
        with pytest.raises(ServerUnreachableError) as lost:
            EchoForgeClient(url, timeout=5).info()
        assert "restarting" in str(lost.value)


def test_12_video_without_spacing_reports_no_volume(env, tmp_path):
    client = env["client"]
    video = client.download_image(AVI_VIDEO)
    assert video.spacing is None and video.n_frames == env["movie"].n_frames
    session = VideoSession(AVI_VIDEO, video)
    drawn = np.zeros_like(env["movie"].labels)
    drawn[[0, 4]] = env["movie"].labels[[0, 4]]
    session.annotations.update(drawn)
    session.mark_ed(0)
    session.mark_es(4)
    result = session.segment_the_rest(client, adapt="off")
    m = session.measurements()
    library = measure_labels(result, None, ed=0, es=4)
    assert m["available"] is False and m["reason"] == library["reason"]
    assert m["edv_disks_ml"] is None and m["esv_disks_ml"] is None and set(m["volumes_ml"]) == {None}
    assert m["area_unit"] == "px²" and m["ef"] == pytest.approx(library["ef"], rel=1e-12)
    assert "no pixel spacing" in m["ef_note"]
    written = json.loads(Path(session.report(str(tmp_path))["report_json"]).read_text())
    assert written["spacing_mm"] is None and written["measurements"]["edv_disks_ml"] is None


def test_13_nothing_drawn_is_refused_before_anything_is_sent(env):
    video = env["client"].download_image("patient0002_4CH")
    session = VideoSession("patient0002_4CH", video)
    nowhere = EchoForgeClient(f"http://127.0.0.1:{free_port()}", timeout=5)  # any request would fail otherwise
    for action in (session.segment_the_rest, session.submit):
        with pytest.raises(AnnotationError) as empty:
            action(nowhere)
        assert "No frame is annotated yet" in str(empty.value) and "Nothing was sent" in str(empty.value)
    with pytest.raises(AnnotationError):
        nowhere.segment("patient0002_4CH", np.zeros_like(video.frames), like=video)


def test_14_a_label_the_server_does_not_know_is_refused_and_kept(env):
    client = env["client"]
    image_id = "patient0002_4CH"
    session = VideoSession(image_id, client.download_image(image_id))
    drawn, frames = _two_drawn_frames(env, session)
    drawn[frames[0]][drawn[frames[0]] == 3] = 4  # a "right ventricle" segment the server has no label for
    session.annotations.update(drawn)
    assert session.annotations.unknown_values() == {4}
    for action in (session.segment_the_rest, session.submit):
        with pytest.raises(ServerRejectedError) as refused:
            action(client)
        assert refused.value.status == 422 and "outside 0-3" in refused.value.detail
        assert "outside 0-3" in str(refused.value)
    assert session.annotations.annotated_frames == frames and session.result is None
    np.testing.assert_array_equal(session.annotations.frame_labels(frames[0]), drawn[frames[0]])
    with pytest.raises(ServerRejectedError) as unknown:
        client.download_image("no_such_video")
    assert unknown.value.status == 404
    with urllib.request.urlopen(f"{env['url']}/datastore/?output=all", timeout=30) as r:
        assert not json.loads(r.read())["objects"][image_id]["labels"]  # nothing was saved


def test_15_a_video_of_ones_own_on_another_axis_order(env):
    """A video loaded in Slicer from a file with columns along its first axis, sent to the server."""
    client = env["client"]
    movie = make_patient(515).render("2CH", size=(48, 56), n_frames=6)
    ijk_to_ras = np.diag([-0.35, -0.3, 1.0, 1.0])  # SimpleITK-like: axis i runs along the columns
    kji = np.transpose(np.transpose(movie.frames_uint8(), (2, 1, 0)), (2, 1, 0))  # arrayFromVolume order
    video = volume_from_slicer(kji, ijk_to_ras)
    np.testing.assert_array_equal(video.frames, movie.frames_uint8())
    for image_id, own in (("own_2CH", video), ("own_uncalibrated_2CH", video.without_spacing())):
        assert client.upload_image(own, image_id) == image_id
        served = client.download_image(image_id)
        np.testing.assert_array_equal(served.frames, video.frames)
        assert served.spacing == own.spacing
        session = VideoSession(image_id, own)
        drawn = np.zeros_like(movie.labels)
        drawn[[0, 3]] = movie.labels[[0, 3]]
        session.annotations.update(drawn)
        result = session.segment_the_rest(client, adapt="off")
        for f in (0, 3):  # the server read the video and the drawing the same way round as the module
            np.testing.assert_array_equal(result[f], drawn[f])
        assert session.submit(client)["image"] == image_id


# ---------------------------------------------------------------------- the module's widget on a DICOM cine
@pytest.fixture
def panel(env, monkeypatch):
    fake = FakeSlicer((5, 8))
    module = import_echoforge(fake, monkeypatch)
    widget = module.EchoForgeWidget()
    widget.setup()
    widget.serverUrlEdit.text = env["url"]
    widget.connectButton._click()
    assert widget.statusLabel.text == f"Connected to {env['url']}.", widget.statusLabel.text
    yield fake, module, widget
    widget.cleanup()


def _cine_file(tmp_path, seed: int, spacing):
    movie = make_patient(seed).render("4CH", size=SIZE, n_frames=10).replace(spacing=spacing, frame_time_ms=1000 / 30)
    return movie, write_dicom(movie, tmp_path / f"cine{seed}.dcm")


def test_16_the_widget_loop_on_a_calibrated_dicom_cine(env, panel, tmp_path):
    fake, module, widget = panel
    movie, path = _cine_file(tmp_path, 616, (0.3, 0.25))
    browser = load_dicom_cine(fake, str(path), movie.frames_uint8(), movie.spacing, movie.frame_time_ms,
                              name="7: US patient0616_4CH [1]")
    widget.volumeSelector.setCurrentNode(browser.GetProxyNode(browser.GetMasterSequenceNode()))  # the obvious pick
    assert widget.calibratedCheck.checked, widget.calibrationLabel.text
    widget.useVolumeButton._click()
    session = widget.logic.session
    assert session is not None, widget.statusLabel.text
    assert widget.logic.cine.browser is browser  # the cine as Slicer loaded it, not a copy
    assert session.video.n_frames == 10 and session.video.spacing == pytest.approx((0.3, 0.25))
    assert session.video.frame_time_ms == pytest.approx(1000 / 30, abs=1e-9)
    for frame in (0, 5, 8):
        draw_on_frame(fake, widget, frame, "LV cavity", movie.labels[frame] == 1)
        draw_on_frame(fake, widget, frame, "LV myocardium", movie.labels[frame] == 2)
    widget.annotationTimer._fire()
    assert session.annotations.annotated_frames == [0, 5, 8]
    widget.frameSlider.value = 8
    widget.forgetFrameButton._click()
    widget.segmentRestButton._click()
    assert "Segmented 10 frames" in widget.statusLabel.text, widget.statusLabel.text
    assert session.result_info["annotated_frames"] == [0, 5]  # the forgotten frame stayed out
    drawn = np.where(np.isin(movie.labels, (1, 2)), movie.labels, 0)
    for frame in (0, 5):
        np.testing.assert_array_equal(session.result[frame], drawn[frame])
    layout = module.single_frame_layout(session.video)
    proxy = widget.logic.cine.proxy_segmentation()
    for frame in range(10):  # the contours play with the cine
        browser.SetSelectedItemNumber(frame)
        shown = proxy.GetSegmentation().GetSegment("LV cavity")._mask
        np.testing.assert_array_equal(shown, layout.to_slicer_array(session.result[frame:frame + 1]) == 1)
    row = widget.logic.measurement_rows()[0]
    assert row["edv_ml"] > row["esv_ml"] > 0 and widget.resultsTable.item(0, 4).text() != "-"
    widget.submitButton._click()
    assert "saved (frames [0, 5])" in widget.statusLabel.text, widget.statusLabel.text
    assert _label_info(env, session.image_id)["annotated_frames"] == [0, 5]


def test_17_an_uncalibrated_dicom_cine_gets_no_ml_and_the_server_agrees(env, panel, tmp_path):
    fake, module, widget = panel
    movie, path = _cine_file(tmp_path, 617, None)
    browser = load_dicom_cine(fake, str(path), movie.frames_uint8(), None, movie.frame_time_ms,
                              name="8: US patient0617_4CH [1]")
    widget.volumeSelector.setCurrentNode(browser)
    assert not widget.calibratedCheck.checked and "no ultrasound calibration" in widget.calibrationLabel.text
    widget.useVolumeButton._click()
    session = widget.logic.session
    assert session.video.spacing is None
    widget.calibratedCheck.checked = True  # ticking it on the plugin's 1 mm is refused
    assert "cannot be taken as calibrated" in widget.statusLabel.text and not widget.calibratedCheck.checked
    widget.segmentAutoButton._click()
    assert session.result is not None, widget.statusLabel.text
    server = session.result_info["measurements"]
    assert server["area_unit"] == "px²" and server["edv_disks_ml"] is None  # the server never had a spacing
    row = widget.logic.measurement_rows()[0]
    assert row["edv_ml"] is None and row["esv_ml"] is None and row["ef"] is not None
    assert widget.resultsTable.item(0, 4).text() == "-"


def test_16_the_api_key_travels_as_a_bearer_token_and_a_busy_server_is_said_plainly():
    """Against an HTTP server that records what it receives and answers 503 (the key check itself: test_auth.py)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from EchoForgeLib import EchoForgeClientError, ServerBusyError

    received: list[str | None] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            received.append(self.headers.get("Authorization"))
            body = b'{"detail": "the server is busy: 5 requests are running or waiting; try again in a moment"}'
            self.send_response(503)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ServerBusyError) as busy:
            EchoForgeClient(url, timeout=5, api_key="the-key-0123456789").info()
        assert busy.value.retry_after == 7 and "try again in 7 s" in str(busy.value)
        with pytest.raises(ServerBusyError):
            EchoForgeClient(url, timeout=5, token="a-site-token").info()  # an identity server's token, sent alike
        with pytest.raises(ServerBusyError):
            EchoForgeClient(url, timeout=5).info()
        assert received == ["Bearer the-key-0123456789", "Bearer a-site-token", None]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(EchoForgeClientError, match="not both"):
        EchoForgeClient(url, api_key="one-key-0123456789", token="another-token")
