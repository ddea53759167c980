"""The Slicer module ``EchoForge.py`` driven through strict, behavioural stand-ins of Slicer (``tests/slicer_fakes.py``).

3D Slicer cannot be installed here. The stand-ins define only names Slicer defines (checked
against a Slicer source checkout by ``slicer_extension/Testing/check_slicer_api.py``, see
``test_slicer_api.py``) and reproduce the rules that broke the module: which segmentation events
fire when, how the DICOM image-sequence plugin builds a cine, what "fit" does to the slice
offset, how the sequence browser saves proxy edits, that equal shortcuts are ambiguous. They
cannot show that the module looks right or that Slicer behaves as the stand-ins say beyond what
its source says; ``EchoForgeTest`` (inside ``EchoForge.py``) does that in Slicer.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import unittest
from pathlib import Path

import numpy as np
import pytest

from echoforge.io.dicom import write_dicom
from echoforge.phantom import make_patient
from tests.server import free_port
from tests.slicer_fakes import (
    FakeSlicer,
    QFileDialog,
    QSettings,
    QShortcut,
    draw_on_frame,
    import_echoforge,
    load_dicom_cine,
    load_volume_file,
)

EXTENSION = Path(__file__).resolve().parents[1] / "slicer_extension"
MODULE_DIR = EXTENSION / "EchoForge"
MODULE_FILE = MODULE_DIR / "EchoForge.py"
LIB_DIR = MODULE_DIR / "EchoForgeLib"
CORE_DIR = MODULE_DIR / "EchoForgeCore"
VERSIONS = [(5, 0), (5, 4), (5, 8), (5, 10)]


@pytest.fixture(params=[(5, 8)], ids=lambda v: f"slicer{v[0]}.{v[1]}")
def slicer_version(request):
    return request.param


@pytest.fixture
def fake(slicer_version):
    return FakeSlicer(slicer_version)


@pytest.fixture
def module(fake, monkeypatch):
    return import_echoforge(fake, monkeypatch)


@pytest.fixture
def widget(module, fake):
    panel = module.EchoForgeWidget()
    panel.setup()
    fake.modules["slicer"].modules.echoforge = type("Representation", (), {"self": lambda _: panel})()
    fake.modules["slicer"].modules.echoforge.widgetRepresentation = lambda: fake.modules["slicer"].modules.echoforge
    yield panel
    panel.cleanup()


def synthetic(module, n_frames: int = 12, spacing=(0.4, 0.3)):
    return module.EchoForgeTest._synthetic_video(n_frames, (40, 48), spacing)


def open_synthetic(widget, module, image_id: str = "patient1_4CH", **kwargs):
    video, labels = synthetic(module, **kwargs)
    session = widget.logic.open_video(image_id, video, {"suggested_frames": [0, 6]})
    widget._show_session()
    return session, video, labels


def fire_annotation_timer(widget) -> None:
    widget.annotationTimer._fire()


# ---------------------------------------------------------------------- code that runs in Slicer 5.0-5.10
def test_module_files_are_python_3_9_and_the_logic_needs_no_slicer():
    files = [MODULE_FILE, *sorted(LIB_DIR.glob("*.py")), *sorted(CORE_DIR.glob("*.py"))]
    allowed = set(sys.stdlib_module_names) | {"numpy", "EchoForgeCore"}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and any(k.arg == "strict" for k in node.keywords) and \
                    getattr(node.func, "id", "") == "zip":
                pytest.fail(f"{path.name}:{node.lineno}: zip(strict=) needs Python 3.10")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance" and \
                    isinstance(node.args[1], ast.BinOp):
                pytest.fail(f"{path.name}:{node.lineno}: isinstance with X | Y needs Python 3.10")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dataclass" and \
                    any(k.arg in ("slots", "kw_only") for k in node.keywords):
                pytest.fail(f"{path.name}:{node.lineno}: dataclass(slots/kw_only) needs Python 3.10")
        if path.parent == MODULE_DIR:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_module_description_and_in_slicer_tests(module):
    parent = type("Parent", (), {})()
    module.EchoForge(parent)
    assert parent.title == "EchoForge" and parent.categories == ["Ultrasound"]
    assert "Segment the rest" in parent.helpText and parent.acknowledgementText
    for key in [*module.MARK_SHORTCUTS.values(), *module.FRAME_SHORTCUTS.values()]:
        assert key in parent.helpText
    tests = [name for name in dir(module.EchoForgeTest) if name.startswith("test_")]
    assert len(tests) >= 9 and hasattr(module.EchoForgeTest, "runTest")
    for name in tests:  # unittest calls them without arguments
        assert list(inspect.signature(getattr(module.EchoForgeTest, name)).parameters) == ["self"], name


def test_slicer_extension_cmake_lists_every_logic_file_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    for folder in (LIB_DIR, CORE_DIR):
        suffix = folder.name[len("EchoForge"):]
        listed = set(re.findall(r"\$\{MODULE_NAME\}" + suffix + r"/(\w+\.py)", cmake))
        assert listed == {p.name for p in folder.glob("*.py")}, folder.name
    assert "Resources/Icons/${MODULE_NAME}.png" in cmake and (MODULE_DIR / "Resources/Icons/EchoForge.png").exists()
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake and "WITH_GENERIC_TESTS" in cmake
    top = (EXTENSION / "CMakeLists.txt").read_text()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY \"Ultrasound\"", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS \"NA\"",
                  "add_subdirectory(EchoForge)"):
        assert field in top, field


def test_no_picture_is_drawn_by_the_logic_layer():
    assert not {"charts.py", "drawing.py", "font.py", "png.py"} & {p.name for p in LIB_DIR.glob("*.py")}
    report = (LIB_DIR / "report.py").read_text()
    assert "zlib" not in report and "png" not in report.split('"""', 2)[2].lower().replace("_png", "")


@pytest.mark.parametrize("slicer_version", VERSIONS, indirect=True, ids=lambda v: f"slicer{v[0]}.{v[1]}")
def test_every_handler_is_wired_and_the_shortcuts_never_clash(widget, module, fake, slicer_version):
    handlers = {name for name, _ in inspect.getmembers(widget, inspect.ismethod) if name.startswith("on")}
    wired = set()
    for obj in [value for value in vars(widget).values() if hasattr(value, "_slots")] + QShortcut._registry:
        wired |= {getattr(slot, "__name__", "") for slots in obj._slots.values() for slot in slots}
    wired |= {method.__name__ for _, _, method, _ in widget._observations}
    per_video = {"onBrowserModified", "onSegmentationModified"}  # observe the video being shown
    frame_keys = {"onNextFrame", "onPreviousFrame"} if slicer_version >= (5, 8) else set()  # the browser's own
    assert handlers - per_video - frame_keys <= wired, handlers - per_video - frame_keys - wired
    open_synthetic(widget, module)
    assert {m.__name__ for _, _, m, _ in widget._observations} >= per_video
    # Ctrl+Shift+Right steps exactly one frame whatever the version (one shortcut, not two ambiguous ones)
    for key, expected in (("Ctrl+Shift+Right", 1), ("Ctrl+Shift+Right", 2), ("Ctrl+Shift+Left", 1)):
        assert QShortcut._press(key) == 1, (key, slicer_version)
        assert widget.logic.current_frame() == expected and int(widget.frameSlider.value) == expected
    QShortcut._press("Ctrl+Shift+E")
    assert widget.logic.session.ed == 1


def test_equal_shortcuts_are_ambiguous_in_the_stand_in(fake, module):
    """The rule that broke frame stepping in Slicer 5.8: the module's copy of the browser's keys killed both."""
    from tests.slicer_fakes import QKeySequence

    clash = QShortcut(QKeySequence("Ctrl+Shift+Right"), fake.main_window)
    assert QShortcut._press("Ctrl+Shift+Right") == 0
    clash.setParent(None)
    assert QShortcut._press("Ctrl+Shift+Right") == 1


def test_failures_reach_the_status_line_in_plain_words(widget, module, fake):
    widget.serverUrlEdit.text = f"http://127.0.0.1:{free_port()}"
    widget.onConnect()
    assert "connection was refused" in widget.statusLabel.text and widget.logic.client is None
    assert fake.errors and "connection was refused" in fake.errors[-1]
    widget.onSegmentRest()
    assert "Load a video first" in widget.statusLabel.text
    assert module.describe_training({"status": None})[2] is False
    text, percent, running = module.describe_training({"status": "RUNNING", "epoch": 2, "total_epochs": 8,
                                                       "best_metric": 0.5})
    assert running and percent == 25 and "epoch 2 of 8" in text
    text, percent, running = module.describe_training({"status": "DONE", "epoch": 8, "total_epochs": 8,
                                                       "not_published": "the retraining made it worse"})
    assert not running and percent == 100 and "still serves: the retraining made it worse" in text
    assert module.format_cell(float("nan")) == "-" and module.format_cell(41.26) == "41.3"
    assert fake.app._cursor_depth == 0  # every wait cursor was restored


# ---------------------------------------------------------------------- the frame the clinician sees
def test_the_frame_is_the_browsers_both_ways_and_marks_go_where_the_clinician_looks(widget, module, fake):
    session, video, _ = open_synthetic(widget, module)
    cine = widget.logic.cine
    shown = fake.red_background()
    assert shown is cine.proxy_volume() and shown._array.shape[0] == 1  # one 2-D frame: no slice offset to misread
    cine.browser.SelectNextItem(4)  # the sequence browser's toolbar (or playback) moves
    assert int(widget.frameSlider.value) == 4 and "frame 4 of 0-11" in widget.videoInfoLabel.text
    np.testing.assert_array_equal(shown._array, video.layout.to_slicer_array(video.frames)[4:5])
    widget.frameSlider.value = 9  # the module's slider moves the browser
    assert cine.browser.GetSelectedItemNumber() == 9
    widget.markEsButton._click()
    cine.browser.SelectNextItem(-9)
    widget.markEdButton._click()
    assert (session.ed, session.es) == (0, 9)
    widget.onAnnotatedFrameChosen(type("Item", (), {"data": lambda self, role: 7})())
    assert cine.browser.GetSelectedItemNumber() == 7 and int(widget.frameSlider.value) == 7


def test_fit_centres_a_stacked_volume_on_its_middle_frame_so_the_module_plays_it_as_a_cine(widget, module, fake,
                                                                                         tmp_path):
    """An H×W×T volume shown as it is would sit on its middle frame after fit; the module makes it a cine."""
    video, _ = synthetic(module, n_frames=9)
    volume = load_volume_file(fake, str(tmp_path / "own_4CH.nrrd"), video.layout.to_slicer_array(video.frames),
                              video.layout.ijk_to_ras)
    fake.modules["slicer"].util.setSliceViewerLayers(background=volume, fit=True)
    red = fake.app.layoutManager().sliceWidget("Red")
    assert red.sliceLogic().GetSliceOffset() == pytest.approx(4.0)  # the middle frame, not the slider's 0
    source = module.resolve_video_node(volume)
    own = module.video_from_volume_node(source.volume)
    np.testing.assert_array_equal(own.frames, video.frames)
    widget.logic.open_video("own_4CH", own, None)
    widget._show_session()
    assert fake.red_background() is widget.logic.cine.proxy_volume() and widget.logic.current_frame() == 0
    np.testing.assert_array_equal(fake.red_background()._array, video.layout.to_slicer_array(video.frames)[0:1])


# ---------------------------------------------------------------------- drawing, per frame
def test_annotated_frames_follow_every_stroke_not_only_the_first(widget, module, fake):
    session, video, labels = open_synthetic(widget, module)
    seen: list[int] = []
    proxy = widget.logic.cine.proxy_segmentation()
    segmentation = proxy.GetSegmentation()
    tag = segmentation.AddObserver(segmentation.SegmentModified, lambda caller, event: seen.append(event))
    first = (labels[2] == 1) & (np.arange(video.frame_size[1])[None, :] < 24)
    draw_on_frame(fake, widget, 2, "LV cavity", first)
    fire_annotation_timer(widget)
    assert session.annotations.annotated_frames == [2] and widget.annotatedList.count() == 1
    draw_on_frame(fake, widget, 2, "LV cavity", labels[2] == 1)  # a second stroke on the same segment
    assert len(seen) == 1  # Slicer's SegmentModified came once, on the first stroke only
    assert widget.annotationTimer.isActive()  # ... but the module heard the second one
    fire_annotation_timer(widget)
    np.testing.assert_array_equal(session.annotations.frame_labels(2) == 1, labels[2] == 1)
    segmentation.RemoveObserver(tag)
    assert widget.annotatedList.item(0).text() == "frame 2: LV cavity"


def test_reading_and_writing_frames_leaves_no_node_behind(widget, module, fake):
    session, video, labels = open_synthetic(widget, module)
    sequence = widget.logic.cine.segmentation
    before = (fake.scene.GetNumberOfNodes(), sequence._sequence_scene.GetNumberOfNodes())
    for _ in range(2):
        widget.logic.show_labels(labels)
        np.testing.assert_array_equal(widget.logic.labels_from_segments(), labels)
    assert (fake.scene.GetNumberOfNodes(), sequence._sequence_scene.GetNumberOfNodes()) == (before[0], before[1])


def test_segment_editor_tools_edit_one_frame_only(widget, module, fake):
    session, video, labels = open_synthetic(widget, module)
    widget.logic.show_labels(labels)
    before = widget.logic.labels_from_segments()
    np.testing.assert_array_equal(before, labels)
    blob = np.zeros(video.frame_size, bool)
    blob[5:15, 5:15] = True
    draw_on_frame(fake, widget, 4, "Left atrium", blob, radius_slices=2)  # sphere brush / smoothing across k
    after = widget.logic.labels_from_segments()
    changed = np.flatnonzero((after != before).reshape(video.n_frames, -1).any(axis=1))
    assert changed.tolist() == [4]
    assert (after[4][blob] == 3).all()


def test_the_same_brush_on_a_stacked_volume_spills_into_neighbouring_frames(fake):
    """Why frames are not stacked along k for editing: the stand-in editor reproduces the spill."""
    from tests.slicer_fakes import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

    stacked = vtkMRMLScalarVolumeNode()
    stacked._array = np.zeros((7, 10, 10), np.uint8)
    segmentation = vtkMRMLSegmentationNode()
    segmentation.GetSegmentation().AddEmptySegment("LA", "LA")
    fake.editor.setSegmentationNode(segmentation)
    fake.editor._set_source(stacked)
    mask = np.zeros((7, 10, 10), bool)
    mask[3, 2:5, 2:5] = True
    fake.editor._paint("LA", mask, radius_slices=2)
    painted = segmentation.GetSegmentation().GetSegment("LA")._mask
    assert np.flatnonzero(painted.any(axis=(1, 2))).tolist() == [1, 2, 3, 4, 5]


def test_forget_this_frame_sticks_until_the_frame_is_drawn_again(widget, module, fake):
    session, video, labels = open_synthetic(widget, module)
    for frame in (0, 6):
        draw_on_frame(fake, widget, frame, "LV cavity", labels[frame] == 1)
    fire_annotation_timer(widget)
    assert session.annotations.annotated_frames == [0, 6]
    widget.logic.show_frame(6)
    widget.forgetFrameButton._click()
    assert session.annotations.annotated_frames == [0] and "Frame 6 will not be sent" in widget.statusLabel.text
    widget._flush_annotations()  # what Segment the rest and Submit do first
    widget.logic.note_edit()  # even a spurious event on that frame
    widget.logic.refresh_annotations()
    assert session.annotations.annotated_frames == [0] and "(forgotten)" in widget.videoInfoLabel.text
    assert widget.logic.labels_from_segments()[6].any()  # the drawing itself stays in Slicer
    draw_on_frame(fake, widget, 6, "Left atrium", labels[6] == 3)  # drawing there again brings it back
    fire_annotation_timer(widget)
    assert session.annotations.annotated_frames == [0, 6]


def test_a_result_plays_with_the_cine(widget, module, fake):
    session, video, labels = open_synthetic(widget, module)
    widget.logic.show_labels(labels)
    session.result = labels
    browser, proxy = widget.logic.cine.browser, widget.logic.cine.proxy_segmentation()
    layout = module.single_frame_layout(video)
    browser.SetPlaybackActive(True)
    for frame in (3, 4, 5, 11):
        browser.SetSelectedItemNumber(frame)
        shown = proxy.GetSegmentation().GetSegment("LV cavity")._mask
        np.testing.assert_array_equal(shown, layout.to_slicer_array(labels[frame:frame + 1]) == 1)
    browser.SetPlaybackActive(False)
    assert not widget.annotationTimer.isActive() or widget.logic.refresh_annotations() == []


# ---------------------------------------------------------------------- cines as Slicer loads them
def _dicom_cine(fake, tmp_path, seed: int = 3, spacing=(0.31, 0.29), rgb: bool = False, name: str = "1: US A4C [1]"):
    video = make_patient(seed).render("4CH", size=(48, 56), n_frames=10)
    video = video.replace(spacing=spacing, frame_time_ms=1000.0 / 30)
    path = write_dicom(video, tmp_path / f"cine{seed}{'rgb' if rgb else ''}.dcm", photometric="RGB" if rgb else
                       "MONOCHROME2")
    frames = video.frames_uint8()
    if rgb:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    return load_dicom_cine(fake, str(path), frames, spacing, video.frame_time_ms, name), video


def test_a_cines_proxy_resolves_to_the_whole_cine_with_its_exact_frame_time(module, fake, tmp_path):
    browser, video = _dicom_cine(fake, tmp_path)
    proxy = browser.GetProxyNode(browser.GetMasterSequenceNode())
    for chosen in (proxy, browser, browser.GetMasterSequenceNode()):
        source = module.resolve_video_node(chosen)
        assert source.sequence is browser.GetMasterSequenceNode() and source.browser is browser
    stacked = module.video_from_sequence(source.sequence, browser)
    assert stacked.n_frames == 10  # not the single frame the proxy shows
    np.testing.assert_array_equal(stacked.frames, video.frames_uint8())
    assert stacked.frame_time_ms == pytest.approx(1000.0 / 30, abs=1e-9)
    index = [browser.GetMasterSequenceNode().GetNthIndexValue(t) for t in range(10)]
    assert index[1] == "0.033"  # what the plugin wrote, rounded
    from EchoForgeLib.cine import frame_time_from_index

    assert frame_time_from_index(index, "s") == pytest.approx(33.333, abs=0.12)  # all index values, no rate
    assert float(index[1]) * 1000 == pytest.approx(33.0)  # neighbours alone would say 33


def test_rgb_cines_become_grey_and_multivolumes_are_frames_not_colour(module, fake, tmp_path):
    browser, video = _dicom_cine(fake, tmp_path, rgb=True)
    grey = module.video_from_sequence(browser.GetMasterSequenceNode(), browser)
    np.testing.assert_allclose(grey.frames, video.frames_uint8(), atol=0.51)
    frames = video.frames_uint8()  # T×H×W
    multi = np.moveaxis(np.transpose(frames, (0, 1, 2))[:, None], 0, -1)  # [1, j, i, T]
    node = load_volume_file(fake, str(tmp_path / "multi.nrrd"), multi, np.diag([-0.3, -0.3, 1.0, 1.0]),
                            "vtkMRMLMultiVolumeNode", {"MultiVolume.FrameLabels": ",".join(str(33.3 * t) for t in
                                                                                           range(10)),
                                                       "MultiVolume.FrameIdentifyingDICOMTagUnits": "ms"})
    as_video = module.video_from_volume_node(node)
    assert as_video.n_frames == 10 and as_video.frame_time_ms == pytest.approx(33.3)
    np.testing.assert_array_equal(as_video.frames, frames)  # 10 frames, not 1 frame of 10 "colours"
    node._array = np.repeat(multi, 2, axis=0)
    with pytest.raises(module.VolumeFormatError, match="3-D\\+t"):
        module.video_from_volume_node(node)


def test_an_uncalibrated_dicom_cine_is_never_measured_in_ml(widget, module, fake, tmp_path):
    calibrated, _ = _dicom_cine(fake, tmp_path, seed=3, spacing=(0.31, 0.29))
    bare, _ = _dicom_cine(fake, tmp_path, seed=4, spacing=None, name="2: US [1]")
    widget.volumeSelector.setCurrentNode(calibrated.GetProxyNode(calibrated.GetMasterSequenceNode()))
    assert widget.calibratedCheck.checked and "0.31 x 0.29 mm" in widget.calibrationLabel.text
    widget.volumeSelector.setCurrentNode(bare.GetProxyNode(bare.GetMasterSequenceNode()))
    assert not widget.calibratedCheck.checked and "no ultrasound calibration" in widget.calibrationLabel.text
    with pytest.raises(module.AnnotationError, match="1 x 1 mm"):  # ticking it anyway is refused
        module.chosen_spacing(True, module.dicom_calibration(bare.GetMasterSequenceNode().GetNthDataNode(0)),
                              (1.0, 1.0))
    assert module.chosen_spacing(False, module.Calibration((0.3, 0.3), "x"), (0.3, 0.3)) is None
    assert module.chosen_spacing(True, module.Calibration(None, "x"), (0.25, 0.3)) == (0.25, 0.3)


def test_calibration_from_a_file_header(module, fake, tmp_path):
    from EchoForgeLib.volume import volume_from_frames, write_volume

    frames = np.zeros((4, 16, 20), np.uint8)
    for spacing in ((0.5, 0.4), None):
        path = tmp_path / f"clip_{bool(spacing)}.nrrd"
        video = volume_from_frames(frames, spacing)
        write_volume(video, path)
        node = load_volume_file(fake, str(path), video.layout.to_slicer_array(frames), video.layout.ijk_to_ras)
        assert module.file_calibration(node).spacing == spacing
    orphan = load_volume_file(fake, str(tmp_path / "gone.nrrd"), np.zeros((2, 3, 4)), np.eye(4))
    assert module.file_calibration(orphan).spacing is None


# ---------------------------------------------------------------------- state in the scene
def test_state_survives_module_reload_and_is_cleared_on_scene_close(widget, module, fake):
    session, video, labels = open_synthetic(widget, module, image_id="patient2_2CH")
    for frame in (1, 8):
        draw_on_frame(fake, widget, frame, "LV cavity", labels[frame] == 1)
    fire_annotation_timer(widget)
    widget.logic.show_frame(8)
    widget.onForgetFrame()
    widget.logic.show_frame(1)
    widget.onMarkEd()
    widget.logic.set_reference_ef("patient2_2CH", 57.0)
    widget.cleanup()  # Reload: the widget and its logic go, the scene stays

    reloaded = module.EchoForgeWidget()
    reloaded.setup()
    again = reloaded.logic.sessions["patient2_2CH"]
    assert again.annotations.annotated_frames == [1] and again.annotations.forgotten_frames == [8]
    assert (again.ed, again.reference_ef, again.video.spacing) == (1, 57.0, video.spacing)
    np.testing.assert_array_equal(again.annotations.frame_labels(1), session.annotations.frame_labels(1))
    assert again.video.frame_time_ms == pytest.approx(video.frame_time_ms)
    assert "Resumed 1 video" in reloaded.statusLabel.text and reloaded.logic.current_frame() == 1

    fake.scene.Clear(0)  # File > Close scene
    assert reloaded.logic.sessions == {} and reloaded.logic.session is None
    assert reloaded.annotatedList.count() == 0 and not reloaded.markEdButton.enabled
    assert module.EchoForgeLogic().restore_state() == []
    reloaded.cleanup()


def test_a_tampered_saved_state_is_refused_field_by_field(module, widget):
    from EchoForgeLib.state import decode_states

    states, problems = decode_states(json.dumps([
        {"version": 1, "image_id": "a", "frames": 5, "annotated_frames": [1, 9]},
        {"version": 1, "image_id": "b", "frames": 5, "spacing_mm": [0.3, -1]},
        {"version": 1, "image_id": "c", "frames": 5, "ed": True},
        {"version": 1, "image_id": "ok", "frames": 5, "annotated_frames": [2], "frame_time_ms": 33.3},
        "junk"]))
    assert [s["image_id"] for s in states] == ["ok"] and len(problems) == 4
    assert "frames 0 to 4" in problems[0] and "spacing" in problems[1]
    assert decode_states("{not json")[0] == [] and "not JSON" in decode_states("{not json")[1][0]
    node = widget.logic.getParameterNode()
    node.SetParameter(module.PARAMETER_VIDEOS, json.dumps([{"version": 1, "image_id": "gone", "frames": 3}]))
    assert "no longer in the scene" in widget.logic.restore_state()[0]


# ---------------------------------------------------------------------- report and key
def test_report_pictures_come_from_slicer_views_at_the_ed_and_es_frames(widget, module, fake, tmp_path):
    for image_id, ef in (("patient3_4CH", 61.0), ("patient4_4CH", 48.0)):
        session, video, labels = open_synthetic(widget, module, image_id=image_id)
        widget.logic.show_labels(labels)
        session.result = labels
        widget.logic.set_reference_ef(image_id, ef)
    widget._show_session()
    QFileDialog._answer = str(tmp_path)
    widget.saveReportButton._click()
    assert "Report written" in widget.statusLabel.text, widget.statusLabel.text
    summary = json.loads((tmp_path / "echoforge_report.json").read_text())
    assert summary["ef_agreement"]["n"] == 2 and Path(summary["bland_altman_png"]).exists()
    red = fake.app.layoutManager().sliceWidget("Red").sliceView()
    shown_frames = [frame for _, view, frame in fake.captures if view is red]
    expected = []
    for image_id in ("patient3_4CH", "patient4_4CH"):
        report = json.loads((tmp_path / f"{image_id}_report.json").read_text())
        expected += [report["measurements"]["ed"], report["measurements"]["es"]]
        for key in ("curve_png", "ed_png", "es_png"):
            assert Path(report[key]).name.startswith(image_id) and Path(report[key]).exists(), key
    assert shown_frames == expected  # each picture taken while the views showed that frame
    assert len(fake.captures) == 2 * 3 + 1
    assert not list(tmp_path.glob(".echoforge-*"))  # no partial file left
    assert widget.logic.session.image_id == "patient4_4CH"  # the view is back where it was


def test_api_key_goes_as_a_bearer_token_and_never_into_the_scene(widget, module, fake):
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization", ""))
            body = json.dumps({"name": "EchoForge", "models": {"echoforge": {"labels": {"LV cavity": 1}}}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        widget.serverUrlEdit.text = f"http://127.0.0.1:{server.server_port}"
        widget.apiKeyEdit.text = "s3cret-key"
        assert widget.apiKeyEdit.echoMode == fake.modules["qt"].QLineEdit.Password
        widget.onConnect()
        assert seen and seen[0] == "Bearer s3cret-key", widget.statusLabel.text
        assert module.SETTINGS_API_KEY not in QSettings._store  # not remembered unless asked
        widget.rememberKeyCheck.checked = True
        widget.onConnect()
        assert QSettings._store[module.SETTINGS_API_KEY] == "s3cret-key"
    finally:
        server.shutdown()
        thread.join(timeout=5)
    open_synthetic(widget, module)
    node = widget.logic.getParameterNode()
    assert all("s3cret" not in value for value in node._parameters.values())


@pytest.mark.parametrize("slicer_version", [(5, 0), (5, 8)], indirect=True, ids=lambda v: f"slicer{v[0]}.{v[1]}")
def test_the_in_slicer_tests_run_against_the_stand_ins(module, widget, monkeypatch, slicer_version):
    """EchoForgeTest's methods (meant for Slicer) run here too: no Python error in them, and they pass here."""
    monkeypatch.delenv("ECHOFORGE_SERVER_URL", raising=False)
    result = unittest.TestResult()
    suite = unittest.TestSuite(module.EchoForgeTest(name) for name in dir(module.EchoForgeTest)
                               if name.startswith("test_"))
    suite.run(result)
    assert result.testsRun >= 11 and result.wasSuccessful(), result.errors + result.failures
