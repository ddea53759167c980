"""EchoForge for 3D Slicer: annotate two or three frames of an echo video, get every frame segmented,
see LV volumes and ejection fraction, and teach the model with what you drew.

A video is what Slicer makes of a 2-D+t cine: a sequence browser stepping a sequence of
single-slice frames (the DICOM module's image-sequence plugin makes one from an ultrasound cine;
the module makes one from an H×W×T volume or a video downloaded from the server). Its
segmentation is a second sequence, one 2-D segmentation per frame, synchronised in the same
browser: the contours play with the cine, the frame shown is the browser's frame, and every
Segment Editor tool edits that one frame only.

The widgets are thin: everything that does not need Slicer (the server client, the orientation of
videos and labels, which frames are annotated, measurements, the report data, the saved state)
lives in ``EchoForgeLib`` and is tested outside Slicer. This file turns Slicer nodes into
EchoForgeLib's arrays and back, keeps the module's state in its parameter node, and draws the
report's pictures with Slicer's plot and slice views.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import ctk
import numpy as np
import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from EchoForgeCore.volume import FrameLayout, frame_layout
from EchoForgeLib import (
    AnnotationError,
    EchoForgeClient,
    EchoForgeModuleError,
    ServerRejectedError,
    VideoSession,
    Volume,
    VolumeFormatError,
    measurement_rows,
    read_volume,
    volume_from_slicer,
    write_study_report,
)
from EchoForgeLib.cine import (
    MULTIVOLUME,
    SCALAR,
    VECTOR,
    frame_time_from_index,
    frames_kji,
    spacing_from_dicom,
)
from EchoForgeLib.labels import COLORS, SEGMENT_NAMES, label_values_by_name
from EchoForgeLib.report import agreement, bland_altman_points, ef_rows, safe_file_name
from EchoForgeLib.state import decode_states, encode_states, restore_session, session_state
from EchoForgeLib.volume import volume_from_frames

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
SETTINGS_URL = "EchoForge/serverUrl"
#: the API key is kept in Slicer's per-user settings only when the clinician ticks "Remember"
SETTINGS_API_KEY = "EchoForge/apiKey"
ANNOTATION_REFRESH_MS = 400
TRAINING_POLL_MS = 5000
#: frame stepping: the sequence browser's own keys since Slicer 5.8 (registered here for older versions only,
#: since two equal shortcuts are ambiguous and neither fires)
FRAME_SHORTCUTS = {"next_frame": "Ctrl+Shift+Right", "previous_frame": "Ctrl+Shift+Left"}
BROWSER_FRAME_SHORTCUTS_SINCE = (5, 8)
MARK_SHORTCUTS = {"mark_ed": "Ctrl+Shift+E", "mark_es": "Ctrl+Shift+S"}
#: parameter node contents: the sessions' state (JSON), the current video, and per session (same order)
#: its browser and its segmentation sequence as node references
PARAMETER_VIDEOS = "Videos"
PARAMETER_CURRENT = "CurrentVideo"
ROLE_BROWSER = "EchoForgeBrowser"
ROLE_SEGMENTATION = "EchoForgeSegmentation"
TEMPORARY_NODE_NAME = "__EchoForge temporary__"
#: Slicer's default pixel size: a 1.0 × 1.0 mm spacing without other evidence is no calibration
DEFAULT_SPACING_MM = (1.0, 1.0)


class EchoForge(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent: Any):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "EchoForge"
        parent.categories = ["Ultrasound"]
        parent.dependencies = []
        parent.contributors = ["EchoForge contributors"]
        parent.helpText = (
            "Semi-supervised segmentation of echocardiography videos (LV cavity, LV myocardium, left atrium) "
            "with an EchoForge MONAI Label server.<br>"
            "<b>1.</b> Connect to the server. <b>2.</b> Get the next video (the server suggests frames to draw) "
            "or use a cine loaded in Slicer (a DICOM cine from the DICOM module, or an H×W×T volume). <b>3.</b> "
            "Draw the structures on two or three frames (ED and ES are best) in the Segment Editor; each frame "
            "is edited on its own. <b>4.</b> Press <i>Segment the rest</i>: every other frame is segmented from "
            "your drawings, which come back unchanged, and the contours play with the cine in the sequence "
            "browser. <b>5.</b> Read EDV, ESV and EF (biplane when the 2CH and 4CH of a patient are segmented), "
            "correct frames if needed, and <i>Submit</i> so that the model learns from them.<br>"
            f"Shortcuts: next/previous frame {FRAME_SHORTCUTS['next_frame']}/{FRAME_SHORTCUTS['previous_frame']} "
            f"(the sequence browser's), mark ED {MARK_SHORTCUTS['mark_ed']}, mark ES {MARK_SHORTCUTS['mark_es']}."
            "<br>Without a calibrated pixel spacing no volume is shown; EF then comes from pixel areas.")
        parent.acknowledgementText = (
            "EchoForge builds on MONAI Label and 3D Slicer. The annotate-a-few-frames approach follows "
            "semi-supervised echocardiography video segmentation with anchor recalibration, temporal fusion "
            "and pseudo-label reforging. Labels follow the CAMUS convention.")


# ---------------------------------------------------------------------------------------------- widget
class EchoForgeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: server, video and frames, annotation, results, submit and train."""

    def __init__(self, parent: Any = None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[EchoForgeLogic] = None
        self.views: Optional[ReportViews] = None
        self._shortcuts: list[Any] = []

    # ------------------------------------------------------------------ layout
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = EchoForgeLogic()
        self.views = ReportViews()
        self._build_server_section()
        self._build_video_section()
        self._build_annotation_section()
        self._build_results_section()
        self._build_training_section()
        self.statusLabel = qt.QLabel("Not connected.")
        self.statusLabel.setWordWrap(True)
        self.layout.addWidget(self.statusLabel)
        self.layout.addStretch(1)

        self.annotationTimer = qt.QTimer()
        self.annotationTimer.setSingleShot(True)
        self.annotationTimer.setInterval(ANNOTATION_REFRESH_MS)
        self.annotationTimer.connect("timeout()", self.onAnnotationTimer)
        self.trainingTimer = qt.QTimer()
        self.trainingTimer.setInterval(TRAINING_POLL_MS)
        self.trainingTimer.connect("timeout()", self.onTrainingTimer)
        self._add_shortcuts()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._restore()

    def _section(self, title: str) -> Any:
        box = ctk.ctkCollapsibleButton()
        box.text = title
        self.layout.addWidget(box)
        return qt.QFormLayout(box)

    def _button(self, text: str, tooltip: str, slot: Any) -> Any:
        button = qt.QPushButton(text)
        button.toolTip = tooltip
        button.connect("clicked(bool)", slot)
        return button

    def _build_server_section(self) -> None:
        form = self._section("Server")
        settings = qt.QSettings()
        self.serverUrlEdit = qt.QLineEdit()
        self.serverUrlEdit.text = str(settings.value(SETTINGS_URL, DEFAULT_SERVER_URL))
        self.serverUrlEdit.toolTip = "Address of the EchoForge MONAI Label server"
        form.addRow("Server URL:", self.serverUrlEdit)
        remembered = str(settings.value(SETTINGS_API_KEY, "") or "")
        self.apiKeyEdit = qt.QLineEdit()
        self.apiKeyEdit.echoMode = qt.QLineEdit.Password
        self.apiKeyEdit.text = remembered
        self.apiKeyEdit.toolTip = ("API key, only when the server requires one (sent as a bearer token; never "
                                   "stored in the scene)")
        form.addRow("API key (optional):", self.apiKeyEdit)
        self.rememberKeyCheck = qt.QCheckBox("Remember the key on this computer")
        self.rememberKeyCheck.checked = bool(remembered)
        self.rememberKeyCheck.toolTip = ("Keep the key in Slicer's settings file of your user account (readable by "
                                         "anyone who can read your files); unticked, it is forgotten when Slicer "
                                         "closes")
        form.addRow(self.rememberKeyCheck)
        self.connectButton = self._button("Connect", "Connect and show the server's model and training state",
                                          self.onConnect)
        form.addRow(self.connectButton)
        self.serverInfoLabel = qt.QLabel("")
        self.serverInfoLabel.setWordWrap(True)
        form.addRow(self.serverInfoLabel)

    def _build_video_section(self) -> None:
        form = self._section("Video")
        self.strategyCombo = qt.QComboBox()
        self.strategyCombo.addItems(["uncertainty", "random", "first"])
        self.strategyCombo.toolTip = "How the server picks the next video (uncertainty also suggests frames)"
        self.nextSampleButton = self._button("Next video", "Fetch the next video to annotate from the server",
                                             self.onNextSample)
        row = qt.QHBoxLayout()
        row.addWidget(self.strategyCombo)
        row.addWidget(self.nextSampleButton)
        form.addRow("Next video:", row)

        self.volumeSelector = slicer.qMRMLNodeComboBox()
        self.volumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode", "vtkMRMLSequenceBrowserNode",
                                         "vtkMRMLSequenceNode"]
        self.volumeSelector.hideChildNodeTypes = ["vtkMRMLLabelMapVolumeNode"]
        self.volumeSelector.noneEnabled = True
        self.volumeSelector.addEnabled = False
        self.volumeSelector.removeEnabled = False
        self.volumeSelector.setMRMLScene(slicer.mrmlScene)
        self.volumeSelector.toolTip = ("A video already loaded in Slicer: a DICOM cine (its sequence, browser or the "
                                       "volume it shows) or an H×W×T volume (frames along the third axis)")
        self.volumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVideoNodeChosen)
        self.useVolumeButton = self._button("Use this video", "Send this video to the server and annotate it",
                                            self.onUseVolume)
        row = qt.QHBoxLayout()
        row.addWidget(self.volumeSelector)
        row.addWidget(self.useVolumeButton)
        form.addRow("Own video:", row)
        self.calibratedCheck = qt.QCheckBox("Pixel spacing is calibrated (mm)")
        self.calibratedCheck.checked = False
        self.calibratedCheck.toolTip = ("Ticked only when the source says how large a pixel is (a DICOM ultrasound "
                                        "region, a calibrated file header); without it volumes are not reported "
                                        "and EF comes from pixel areas")
        self.calibratedCheck.connect("toggled(bool)", self.onCalibratedToggled)
        form.addRow(self.calibratedCheck)
        self.calibrationLabel = qt.QLabel("")
        self.calibrationLabel.setWordWrap(True)
        form.addRow(self.calibrationLabel)

        self.frameSlider = ctk.ctkSliderWidget()
        self.frameSlider.decimals = 0
        self.frameSlider.singleStep = 1
        self.frameSlider.minimum = 0
        self.frameSlider.maximum = 0
        self.frameSlider.toolTip = ("Frame shown in the views; the sequence browser steps it too "
                                    f"({FRAME_SHORTCUTS['previous_frame']} / {FRAME_SHORTCUTS['next_frame']})")
        self.frameSlider.connect("valueChanged(double)", self.onFrameSlider)
        form.addRow("Frame:", self.frameSlider)
        self.markEdButton = self._button("Mark ED", f"This frame is end-diastole ({MARK_SHORTCUTS['mark_ed']})",
                                         self.onMarkEd)
        self.markEsButton = self._button("Mark ES", f"This frame is end-systole ({MARK_SHORTCUTS['mark_es']})",
                                         self.onMarkEs)
        row = qt.QHBoxLayout()
        row.addWidget(self.markEdButton)
        row.addWidget(self.markEsButton)
        form.addRow(row)
        self.videoInfoLabel = qt.QLabel("")
        self.videoInfoLabel.setWordWrap(True)
        form.addRow(self.videoInfoLabel)

    def _build_annotation_section(self) -> None:
        form = self._section("Annotate and segment")
        self.editButton = self._button("Draw in Segment Editor",
                                       "Open the Segment Editor on this frame's segments (LV cavity, LV "
                                       "myocardium, Left atrium); each frame is edited on its own",
                                       self.onEditSegments)
        form.addRow(self.editButton)
        self.annotatedList = qt.QListWidget()
        self.annotatedList.toolTip = "Frames you drew on (double-click to show one)"
        self.annotatedList.connect("itemDoubleClicked(QListWidgetItem*)", self.onAnnotatedFrameChosen)
        form.addRow("Annotated frames:", self.annotatedList)
        self.forgetFrameButton = self._button("Forget this frame",
                                              "Do not send the drawing of the current frame (until you draw there "
                                              "again)", self.onForgetFrame)
        form.addRow(self.forgetFrameButton)
        self.adaptCombo = qt.QComboBox()
        self.adaptCombo.addItems(["auto", "on", "off"])
        self.adaptCombo.toolTip = ("Adapt the model to this video before segmenting (auto: when the video looks "
                                   "unlike the training data)")
        form.addRow("Adapt to this video:", self.adaptCombo)
        self.segmentRestButton = self._button("Segment the rest",
                                              "Send the drawn frames; get every other frame segmented",
                                              self.onSegmentRest)
        self.segmentAutoButton = self._button("Segment without drawing",
                                              "Segment every frame with the model alone", self.onSegmentAutomatically)
        row = qt.QHBoxLayout()
        row.addWidget(self.segmentRestButton)
        row.addWidget(self.segmentAutoButton)
        form.addRow(row)

    def _build_results_section(self) -> None:
        form = self._section("Volumes and ejection fraction")
        self.resultsTable = qt.QTableWidget()
        self.resultsTable.setColumnCount(len(RESULT_COLUMNS))
        self.resultsTable.setHorizontalHeaderLabels([title for title, _ in RESULT_COLUMNS])
        self.resultsTable.toolTip = "Double-click Reference EF to enter a value to compare with (Bland-Altman)"
        self.resultsTable.connect("cellChanged(int,int)", self.onResultCellChanged)
        form.addRow(self.resultsTable)
        self.saveReportButton = self._button("Save report...",
                                             "Write the report (JSON, and pictures of the LV curve, the ED and ES "
                                             "frames and the EF agreement) of every segmented video",
                                             self.onSaveReport)
        form.addRow(self.saveReportButton)

    def _build_training_section(self) -> None:
        form = self._section("Submit and train")
        self.submitButton = self._button("Submit annotation",
                                         "Save the drawn frames on the server (it may retrain by itself)",
                                         self.onSubmit)
        form.addRow(self.submitButton)
        self.trainButton = self._button("Train now", "Start semi-supervised retraining on the server", self.onTrain)
        self.stopTrainingButton = self._button("Stop", "Stop the running training (the current model stays)",
                                               self.onStopTraining)
        row = qt.QHBoxLayout()
        row.addWidget(self.trainButton)
        row.addWidget(self.stopTrainingButton)
        form.addRow(row)
        self.trainingProgress = qt.QProgressBar()
        self.trainingProgress.setRange(0, 100)
        self.trainingProgress.setValue(0)
        form.addRow("Training:", self.trainingProgress)
        self.trainingLabel = qt.QLabel("")
        self.trainingLabel.setWordWrap(True)
        form.addRow(self.trainingLabel)

    def _add_shortcuts(self) -> None:
        window = slicer.util.mainWindow()
        keys = [(MARK_SHORTCUTS["mark_ed"], self.onMarkEd), (MARK_SHORTCUTS["mark_es"], self.onMarkEs)]
        if not sequence_browser_steps_frames():
            keys += [(FRAME_SHORTCUTS["next_frame"], self.onNextFrame),
                     (FRAME_SHORTCUTS["previous_frame"], self.onPreviousFrame)]
        for key, slot in keys:
            shortcut = qt.QShortcut(qt.QKeySequence(key), window)
            shortcut.connect("activated()", slot)
            self._shortcuts.append(shortcut)

    def cleanup(self) -> None:
        self.removeObservers()
        self.trainingTimer.stop()
        self.annotationTimer.stop()
        for shortcut in self._shortcuts:
            shortcut.disconnect("activated()")
            shortcut.setParent(None)
        self._shortcuts = []

    # ------------------------------------------------------------------ scene and saved state
    def _restore(self) -> None:
        """Take up what the parameter node holds (after a module reload, or a scene saved with EchoForge state)."""
        problems = self.logic.restore_state()
        if self.logic.session is not None:
            self._show_session()
            self._say(f"Resumed {len(self.logic.sessions)} video(s) from the scene; connect to segment or submit.")
        if problems:
            self._say(" ".join(problems), error=True)
        self._update_buttons()

    def onSceneStartClose(self, caller: Any = None, event: Any = None) -> None:
        """The scene is closing: its videos and the state about them go with it."""
        self.annotationTimer.stop()
        self.removeObservers(self.onBrowserModified)
        self.removeObservers(self.onSegmentationModified)
        self.logic.forget_all()
        self.annotatedList.clear()
        self.resultsTable.setRowCount(0)
        self.videoInfoLabel.text = ""
        self.calibrationLabel.text = ""
        self.frameSlider.maximum = 0

    def onSceneEndClose(self, caller: Any = None, event: Any = None) -> None:
        self._update_buttons()

    # ------------------------------------------------------------------ messages
    @contextlib.contextmanager
    def _doing(self, what: str) -> Iterator[None]:
        """Run a user action: wait cursor, and any failure said in plain words (nothing is lost)."""
        self.statusLabel.text = f"{what}..."
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            yield
        except EchoForgeModuleError as err:
            self._say(self._explain(err), error=True)
        except Exception as err:  # a bug: keep Slicer running and say so
            logging.error(traceback.format_exc())
            self._say(f"{what} failed unexpectedly: {err}. The details are in Slicer's log.", error=True)
        finally:
            slicer.app.restoreOverrideCursor()
            self._update_buttons()

    def _explain(self, err: EchoForgeModuleError) -> str:
        message = str(err)
        session = self.logic.session if self.logic else None
        if isinstance(err, ServerRejectedError) and session is not None:
            unknown = self.logic.unknown_segment_names()
            if unknown:
                message += (f" Segments the server has no label for: {', '.join(unknown)}. Rename them to "
                            f"{', '.join(SEGMENT_NAMES.values())}, or delete them.")
        if session is not None and not isinstance(err, AnnotationError):
            message += " Your annotations are kept."
        return message

    def _say(self, message: str, error: bool = False) -> None:
        self.statusLabel.text = message
        self.statusLabel.setStyleSheet("color: #c62828" if error else "")
        if error:
            slicer.util.errorDisplay(message, windowTitle="EchoForge")

    def _update_buttons(self) -> None:
        connected = self.logic is not None and self.logic.client is not None
        has_video = self.logic is not None and self.logic.session is not None
        has_result = has_video and self.logic.session.result is not None
        for button in (self.nextSampleButton, self.useVolumeButton, self.trainButton, self.stopTrainingButton):
            button.enabled = connected
        for button in (self.segmentRestButton, self.segmentAutoButton, self.submitButton):
            button.enabled = connected and has_video
        for button in (self.editButton, self.forgetFrameButton, self.markEdButton, self.markEsButton):
            button.enabled = has_video
        self.saveReportButton.enabled = has_result

    # ------------------------------------------------------------------ server
    def onConnect(self) -> None:
        with self._doing("Connecting"):
            url = self.serverUrlEdit.text.strip()
            api_key = self.apiKeyEdit.text.strip() or None
            info = self.logic.connect(url, api_key)
            settings = qt.QSettings()
            settings.setValue(SETTINGS_URL, url)
            if self.rememberKeyCheck.checked and api_key:
                settings.setValue(SETTINGS_API_KEY, api_key)
            else:
                settings.remove(SETTINGS_API_KEY)
            strategies = list((info.get("strategies") or {}).keys()) or ["random", "first"]
            self.strategyCombo.clear()
            self.strategyCombo.addItems(strategies)
            self.serverInfoLabel.text = self.logic.describe_server(info)
            self._say(f"Connected to {url}.")
            self.onTrainingTimer()

    # ------------------------------------------------------------------ video
    def onNextSample(self) -> None:
        with self._doing("Fetching the next video"):
            self._flush_annotations()
            session = self.logic.next_sample(self.strategyCombo.currentText)
            if session is None:
                self._say("Every video on the server is annotated: there is nothing left to suggest.")
                return
            self._show_session()
            suggested = ", ".join(str(f) for f in session.suggested_frames) or "none"
            self._say(f"Video {session.image_id}: draw on the suggested frames ({suggested}), then segment the rest.")

    def onVideoNodeChosen(self, node: Any) -> None:
        """Say what the chosen video tells about its pixel size, and tick the box only on evidence."""
        if node is None:
            self.calibrationLabel.text = ""
            return
        try:
            calibration = self.logic.calibration_of(node)
        except EchoForgeModuleError as err:
            self.calibrationLabel.text = str(err)
            return
        self.calibratedCheck.blockSignals(True)
        self.calibratedCheck.checked = calibration.spacing is not None
        self.calibratedCheck.blockSignals(False)
        self.calibrationLabel.text = calibration.describe()

    def onUseVolume(self) -> None:
        node = self.volumeSelector.currentNode()
        if node is None:
            self._say("Choose a video loaded in Slicer first (a DICOM cine or a volume).", error=True)
            return
        with self._doing("Sending the video to the server"):
            self._flush_annotations()
            session = self.logic.use_node(node, self.calibratedCheck.checked)
            self._show_session()
            self._say(f"Video {session.image_id} is on the server: draw two or three frames, then segment the rest.")

    def onCalibratedToggled(self, calibrated: bool) -> None:
        if self.logic is None or self.logic.session is None:
            return
        with self._doing("Changing the pixel spacing"):
            try:
                self.logic.set_calibrated(calibrated)
            finally:
                self.calibratedCheck.blockSignals(True)
                self.calibratedCheck.checked = self.logic.session.video.spacing is not None
                self.calibratedCheck.blockSignals(False)
            self._refresh_video_info()
            self._refresh_results()

    def _show_session(self) -> None:
        """Show the current session's video: slider range and frame, observers, lists and results."""
        session = self.logic.session
        cine = self.logic.cine
        self.removeObservers(self.onBrowserModified)
        self.removeObservers(self.onSegmentationModified)
        self.addObserver(cine.browser, vtk.vtkCommand.ModifiedEvent, self.onBrowserModified)
        self.addObserver(cine.proxy_segmentation(), source_representation_modified_event(),
                         self.onSegmentationModified)
        self.frameSlider.blockSignals(True)
        self.frameSlider.maximum = session.video.n_frames - 1
        self.frameSlider.value = self.logic.current_frame()
        self.frameSlider.blockSignals(False)
        self.calibratedCheck.blockSignals(True)
        self.calibratedCheck.checked = session.video.spacing is not None
        self.calibratedCheck.blockSignals(False)
        self._refresh_annotations()
        self._refresh_results()
        self._update_buttons()

    def onFrameSlider(self, value: float) -> None:
        if self.logic and self.logic.session is not None:
            self.logic.show_frame(int(round(value)))

    def onBrowserModified(self, caller: Any = None, event: Any = None) -> None:
        """The browser moved (its toolbar, its keys, playback, or the slider): the slider and labels follow."""
        if self.logic is None or self.logic.session is None:
            return
        frame = self.logic.current_frame()
        if int(round(self.frameSlider.value)) != frame:
            self.frameSlider.blockSignals(True)
            self.frameSlider.value = frame
            self.frameSlider.blockSignals(False)
        self._refresh_video_info()

    def onNextFrame(self) -> None:
        if self.logic and self.logic.session is not None:
            self.logic.step_frame(1)

    def onPreviousFrame(self) -> None:
        if self.logic and self.logic.session is not None:
            self.logic.step_frame(-1)

    def onMarkEd(self) -> None:
        if self.logic and self.logic.session is not None:
            with self._doing("Marking ED"):
                self.logic.mark_ed()
                self._refresh_video_info()
                self._refresh_results()

    def onMarkEs(self) -> None:
        if self.logic and self.logic.session is not None:
            with self._doing("Marking ES"):
                self.logic.mark_es()
                self._refresh_video_info()
                self._refresh_results()

    def _refresh_video_info(self) -> None:
        session = self.logic.session
        if session is None:
            self.videoInfoLabel.text = ""
            return
        frame = self.logic.current_frame()
        marks = ", ".join(f"{name} {value}" for name, value in (("ED", session.ed), ("ES", session.es))
                          if value is not None) or "not marked"
        spacing = (f"{session.video.spacing[0]:.3g} x {session.video.spacing[1]:.3g} mm"
                   if session.video.spacing else "unknown (no volumes)")
        timing = f"; {session.video.frame_time_ms:.4g} ms per frame" if session.video.frame_time_ms else ""
        forgotten = " (forgotten)" if frame in session.annotations.forgotten_frames else ""
        self.videoInfoLabel.text = (
            f"{session.image_id} ({session.view}): frame {frame} of 0-{session.video.n_frames - 1}"
            f"{' (annotated)' if session.annotations.is_annotated(frame) else forgotten}; ED/ES: {marks}; "
            f"suggested frames: {', '.join(str(f) for f in session.suggested_frames) or 'none'}; "
            f"pixel spacing: {spacing}{timing}")

    # ------------------------------------------------------------------ annotation
    def onEditSegments(self) -> None:
        with self._doing("Opening the Segment Editor"):
            self.logic.open_segment_editor()

    def onSegmentationModified(self, caller: Any = None, event: Any = None) -> None:
        if self.logic is not None and self.logic.note_edit():
            self.annotationTimer.start()

    def onAnnotationTimer(self) -> None:
        with self._doing("Updating the annotated frames"):
            self.logic.refresh_annotations()
            self._refresh_annotations()
            self.statusLabel.text = ""

    def _flush_annotations(self) -> None:
        """Take in edits whose timer has not fired yet (before the video changes or anything is sent)."""
        self.annotationTimer.stop()
        if self.logic.session is not None:
            self.logic.refresh_annotations()

    def onAnnotatedFrameChosen(self, item: Any) -> None:
        self.logic.show_frame(int(item.data(qt.Qt.UserRole)))

    def onForgetFrame(self) -> None:
        with self._doing("Forgetting the frame"):
            self.annotationTimer.stop()
            frame = self.logic.forget_frame()
            self._refresh_annotations()
            self._say(f"Frame {frame} will not be sent (until you draw on it again).")

    def _refresh_annotations(self) -> None:
        self.annotatedList.clear()
        session = self.logic.session
        if session is None:
            return
        by_value = session.annotations.frames_by_segment()
        for frame in session.annotations.annotated_frames:
            names = [self.logic.segment_name(value) for value, frames in sorted(by_value.items()) if frame in frames]
            item = qt.QListWidgetItem(f"frame {frame}: {', '.join(names)}")
            item.setData(qt.Qt.UserRole, frame)
            self.annotatedList.addItem(item)
        self._refresh_video_info()

    def onSegmentRest(self) -> None:
        with self._doing("Segmenting the rest"):
            self._flush_annotations()
            self.logic.segment_the_rest(self.adaptCombo.currentText)
            info = self.logic.session.result_info
            self._refresh_annotations()
            self._refresh_results()
            self._say(f"Segmented {info.get('frames', '?')} frames in {info.get('seconds', '?')} s from frames "
                      f"{info.get('annotated_frames')}{' (adapted to this video)' if info.get('adapted') else ''}; "
                      "play the cine to see the contours move.")

    def onSegmentAutomatically(self) -> None:
        with self._doing("Segmenting"):
            self._flush_annotations()
            self.logic.segment_automatically()
            self._refresh_annotations()
            self._refresh_results()
            self._say("Every frame segmented by the model alone; correct any frame and segment the rest.")

    # ------------------------------------------------------------------ results
    def _refresh_results(self) -> None:
        rows = self.logic.measurement_rows()
        self.resultsTable.blockSignals(True)
        self.resultsTable.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (_, key) in enumerate(RESULT_COLUMNS):
                item = qt.QTableWidgetItem(format_cell(row.get(key)))
                if key != "reference_ef" or row["method"] != "single plane (disks)":
                    item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                if row.get("note"):
                    item.setToolTip(row["note"])
                self.resultsTable.setItem(r, c, item)
        self.resultsTable.blockSignals(False)
        self.resultsTable.resizeColumnsToContents()
        session = self.logic.session
        if session is not None and session.result is not None:
            self.views.show_curve(session)

    def onResultCellChanged(self, row: int, column: int) -> None:
        if RESULT_COLUMNS[column][1] != "reference_ef":
            return
        video = self.resultsTable.item(row, 0).text()
        text = self.resultsTable.item(row, column).text().strip().rstrip("%").strip()
        try:
            value = float(text) if text and text != "-" else None
        except ValueError:
            self._say(f"The reference EF of {video} must be a number in % (for example 55), not {text!r}.", error=True)
            return
        self.logic.set_reference_ef(video, value)

    def onSaveReport(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder for the EchoForge report")
        if not folder:
            return
        with self._doing("Writing the report"):
            pictures = self.views.save_pictures(self.logic, folder)
            summary = self.logic.save_report(folder, pictures)
            self._say(f"Report written: {summary['report_json']}")

    # ------------------------------------------------------------------ submit and train
    def onSubmit(self) -> None:
        with self._doing("Submitting the annotation"):
            self._flush_annotations()
            answer = self.logic.submit()
            auto = answer.get("auto_train")
            self._say(f"Annotation of {answer.get('image')} saved (frames "
                      f"{self.logic.session.annotations.annotated_frames})."
                      + (" The server started retraining." if auto == "started" else ""))
            self.trainingTimer.start()

    def onTrain(self) -> None:
        with self._doing("Starting training"):
            self.logic.client.train()
            self._say("Training started on the server.")
            self.trainingTimer.start()

    def onStopTraining(self) -> None:
        with self._doing("Stopping training"):
            self.logic.client.stop_training()
            self._say("Training stopped; the previous model keeps serving.")

    def onTrainingTimer(self) -> None:
        if self.logic is None or self.logic.client is None:
            self.trainingTimer.stop()
            return
        try:
            progress = self.logic.client.training_progress()
        except EchoForgeModuleError as err:
            self.trainingLabel.text = str(err)
            self.trainingTimer.stop()
            return
        text, percent, running = describe_training(progress)
        self.trainingLabel.text = text
        self.trainingProgress.setValue(percent)
        if not running:
            self.trainingTimer.stop()


RESULT_COLUMNS: list[tuple[str, str]] = [("Video", "video"), ("View", "view"), ("ED", "ed"), ("ES", "es"),
                                         ("EDV (ml)", "edv_ml"), ("ESV (ml)", "esv_ml"), ("EF (%)", "ef"),
                                         ("Method", "method"), ("Reference EF (%)", "reference_ef")]


def format_cell(value: Any) -> str:
    """A results-table cell: numbers with one decimal, missing values as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.1f}"
    return str(value)


def describe_training(progress: dict[str, Any]) -> tuple[str, int, bool]:
    """(text, percent done, still running) from :meth:`EchoForgeClient.training_progress`."""
    status = progress.get("status")
    epoch, total = progress.get("epoch"), progress.get("total_epochs")
    percent = int(100 * epoch / total) if epoch and total else 0
    if status is None:
        return "No training has run on this server yet.", 0, False
    running = status in ("SUBMITTED", "RUNNING")
    text = f"{status.lower()}"
    if epoch and total:
        text += f": epoch {epoch} of {total}"
    if progress.get("best_metric") is not None:
        text += f", best Dice {progress['best_metric']:.3f}"
    if status == "ERROR" and progress.get("details"):
        text += f" ({progress['details'][-1]})"
    if status == "DONE" and progress.get("not_published"):
        text += f"; the model that served before still serves: {progress['not_published']}"
    return text, (100 if status == "DONE" else percent), running


def sequence_browser_steps_frames() -> bool:
    """Whether the sequence browser's play widget has its own Ctrl+Shift+Left/Right (Slicer 5.8 and later)."""
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion)) >= BROWSER_FRAME_SHORTCUTS_SINCE


def source_representation_modified_event() -> int:
    """The segmentation event fired on every content change (``MasterRepresentationModified`` before Slicer 5.4).

    ``SegmentModified`` is not it: Slicer fires that once per segment, on the first stroke.
    """
    if hasattr(slicer.vtkSegmentation, "SourceRepresentationModified"):
        return slicer.vtkSegmentation.SourceRepresentationModified
    else:  # Slicer before 5.4
        return slicer.vtkSegmentation.MasterRepresentationModified


# ---------------------------------------------------------------------------------------------- report pictures
class ReportViews:
    """The report's pictures, drawn with Slicer's plot views and slice views (widget layer)."""

    def __init__(self) -> None:
        self._nodes: dict[str, Any] = {}

    def show_curve(self, session: VideoSession) -> slicer.vtkMRMLPlotChartNode:
        """The LV volume (or area, without spacing) curve of ``session`` with ED/ES marked, in the plot view."""
        m = session.measurements()
        volumes = m.get("volumes_ml") or []
        if volumes and all(v is not None for v in volumes):
            values, title = volumes, "LV volume (ml)"
        else:
            values, title = m.get("areas") or [], f"LV area ({m.get('area_unit', 'px²')})"
        frames = np.arange(len(values), dtype=np.float64)
        x_title = "frame"
        if session.video.frame_time_ms:
            frames, x_title = frames * session.video.frame_time_ms, "time (ms)"
        curve = self._node("vtkMRMLTableNode", "EchoForge LV curve")
        slicer.util.updateTableFromArray(curve, [frames, np.asarray(values, dtype=np.float64)], [x_title, title])
        marked = [(frames[f], values[f]) for f in (m.get("ed"), m.get("es")) if f is not None and values[f] is not None]
        marks = self._node("vtkMRMLTableNode", "EchoForge ED ES")
        points = np.asarray(marked, dtype=np.float64).reshape(-1, 2)
        slicer.util.updateTableFromArray(marks, [points[:, 0], points[:, 1]], [x_title, "ED, ES"])
        chart = self._chart("EchoForge chart", [
            self._series("EchoForge LV", curve, x_title, title, (0.12, 0.47, 0.71), True),
            self._series("EchoForge ED/ES", marks, x_title, "ED, ES", (0.84, 0.15, 0.16), False)])
        chart.SetTitle(f"{session.image_id}: ED frame {m.get('ed')}, ES frame {m.get('es')}, EF "
                       f"{format_cell(m.get('ef'))} %{'' if session.video.spacing else ' (from pixel areas)'}")
        chart.SetXAxisTitle(x_title)
        chart.SetYAxisTitle(title)
        slicer.modules.plots.logic().ShowChartInLayout(chart)
        return chart

    def show_bland_altman(self, points: dict[str, list[Any]], stats: dict[str, Any]) -> slicer.vtkMRMLPlotChartNode:
        """EF differences against means with the bias and the 95 % limits of agreement, in the plot view."""
        table = self._node("vtkMRMLTableNode", "EchoForge EF agreement")
        slicer.util.updateTableFromArray(table, [np.asarray(points["mean"], dtype=np.float64),
                                                 np.asarray(points["difference"], dtype=np.float64)],
                                         ["mean EF (%)", "EchoForge - reference (%)"])
        low, high = min(points["mean"]) - 5.0, max(points["mean"]) + 5.0
        lines = self._node("vtkMRMLTableNode", "EchoForge EF agreement lines")
        levels = {"bias": stats["bias"], "lower": stats["loa_lower"], "upper": stats["loa_upper"]}
        columns = [np.array([low, high])] + [np.array([v, v], dtype=np.float64) for v in levels.values()]
        slicer.util.updateTableFromArray(lines, columns, ["mean EF (%)", *levels])
        series = [self._series("EchoForge EF pairs", table, "mean EF (%)", "EchoForge - reference (%)",
                               (0.12, 0.47, 0.71), False),
                  self._series("EchoForge bias", lines, "mean EF (%)", "bias", (0.84, 0.15, 0.16), True)]
        if np.isfinite(stats["loa_lower"]):
            series += [self._series(f"EchoForge LoA {name}", lines, "mean EF (%)", name, (0.84, 0.15, 0.16), True,
                                    dashed=True) for name in ("lower", "upper")]
        chart = self._chart("EchoForge EF agreement chart", series)
        chart.SetTitle(f"EF: EchoForge vs reference (n = {stats['n']}, bias {stats['bias']:+.1f} %)")
        chart.SetXAxisTitle("mean of EchoForge and reference EF (%)")
        chart.SetYAxisTitle("EchoForge - reference (%)")
        slicer.modules.plots.logic().ShowChartInLayout(chart)
        return chart

    def save_pictures(self, logic: EchoForgeLogic, folder: str) -> dict[str, dict[str, str]]:
        """Capture, for every segmented video, its curve and its ED and ES frames with contours; then the
        EF agreement. Returns the files by video id (``""``: the study's), as ``write_study_report`` takes them."""
        pictures: dict[str, dict[str, str]] = {}
        current = logic.session.image_id if logic.session is not None else None
        frame = logic.current_frame() if logic.session is not None else 0
        red = slicer.app.layoutManager().sliceWidget("Red").sliceView()
        try:
            for image_id, session in logic.sessions.items():
                if session.result is None:
                    continue
                base = os.path.join(folder, safe_file_name(image_id))
                logic.show_session(image_id)
                self.show_curve(session)
                files = {"curve_png": capture_view(self._plot_view(), f"{base}_volume_curve.png")}
                m = session.measurements()
                for phase in ("ed", "es"):
                    if m.get(phase) is not None:
                        logic.show_frame(m[phase])
                        files[f"{phase}_png"] = capture_view(red, f"{base}_{phase}.png")
                pictures[image_id] = files
            rows = ef_rows([{"source": s.image_id, "measurements": s.measurements()}
                            for s in logic.sessions.values() if s.result is not None],
                           {s.image_id: s.reference_ef for s in logic.sessions.values()})
            points = bland_altman_points(rows)
            if points["video"]:
                self.show_bland_altman(points, agreement(points["ef"], points["reference_ef"]))
                pictures[""] = {"bland_altman_png": capture_view(self._plot_view(),
                                                                 os.path.join(folder, "ef_bland_altman.png"))}
        finally:
            if current is not None:
                logic.show_session(current)
                logic.show_frame(frame)
        return pictures

    @staticmethod
    def _plot_view() -> slicer.qMRMLPlotView:
        return slicer.app.layoutManager().plotWidget(0).plotView()

    def _node(self, class_name: str, name: str) -> Any:
        node = self._nodes.get(name)
        if node is None or slicer.mrmlScene.GetNodeByID(node.GetID()) is None:
            node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
            self._nodes[name] = node
        return node

    def _chart(self, name: str, series: Sequence[Any]) -> slicer.vtkMRMLPlotChartNode:
        chart: slicer.vtkMRMLPlotChartNode = self._node("vtkMRMLPlotChartNode", name)
        chart.RemoveAllPlotSeriesNodeIDs()
        for item in series:
            chart.AddAndObservePlotSeriesNodeID(item.GetID())
        return chart

    def _series(self, name: str, table: slicer.vtkMRMLTableNode, x: str, y: str, color: tuple[float, float, float],
                line: bool, dashed: bool = False) -> slicer.vtkMRMLPlotSeriesNode:
        series: slicer.vtkMRMLPlotSeriesNode = self._node("vtkMRMLPlotSeriesNode", name)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x)
        series.SetYColumnName(y)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        if not line:
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
        else:
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash if dashed
                                else slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle if not dashed
                              else slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetMarkerSize(5 if line else 12)
        series.SetColor(*color)
        return series


def capture_view(view: Any, path: str) -> str:
    """Save a picture of a Slicer view (slice or plot) as PNG, atomically (written next to it, then renamed)."""
    import ScreenCapture  # Slicer's own module; imported here as it is only needed for reports

    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=".echoforge-", suffix=".png", dir=folder)
    os.close(fd)
    try:
        ScreenCapture.ScreenCaptureLogic().captureImageFromView(view, partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return path


# ---------------------------------------------------------------------------------------------- logic
@dataclass
class Cine:
    """A video in the scene: the browser that steps it, the sequence of its frames, and its segmentation sequence.

    The segmentation sequence holds one segmentation per frame (segments *LV cavity*, *LV
    myocardium*, *Left atrium*) at the index values of the browser's master sequence, so that
    it plays with the cine; the browser saves edits of its proxy into it.
    """

    browser: slicer.vtkMRMLSequenceBrowserNode
    frames: slicer.vtkMRMLSequenceNode
    segmentation: slicer.vtkMRMLSequenceNode

    def master(self) -> slicer.vtkMRMLSequenceNode:
        return self.browser.GetMasterSequenceNode()

    def n_frames(self) -> int:
        return self.browser.GetNumberOfItems()

    def index_value(self, frame: int) -> str:
        return self.master().GetNthIndexValue(frame)

    def proxy_volume(self) -> slicer.vtkMRMLScalarVolumeNode:
        return self.browser.GetProxyNode(self.frames)

    def proxy_segmentation(self) -> slicer.vtkMRMLSegmentationNode:
        return self.browser.GetProxyNode(self.segmentation)

    def segmentation_at(self, frame: int) -> slicer.vtkMRMLSegmentationNode:
        node = self.segmentation.GetDataNodeAtValue(self.index_value(frame), True)
        if node is None:
            raise AnnotationError(f"The segmentation sequence holds nothing for frame {frame}.")
        return node

    def in_scene(self) -> bool:
        return all(node is not None and slicer.mrmlScene.GetNodeByID(node.GetID()) is not None
                   for node in (self.browser, self.frames, self.segmentation))


@dataclass(frozen=True)
class Calibration:
    """What a video's source says about its pixel size.

    Attributes:
        spacing: (row, col) in mm when the source calibrates it, else ``None``.
        source: where that comes from, in words.
    """

    spacing: Optional[tuple[float, float]]
    source: str

    def describe(self) -> str:
        if self.spacing is None:
            return f"Pixel spacing unknown: {self.source}. Volumes will not be reported."
        return f"Pixel spacing {self.spacing[0]:.4g} x {self.spacing[1]:.4g} mm ({self.source})."


class EchoForgeLogic(ScriptedLoadableModuleLogic):
    """Slicer glue: server calls through EchoForgeLib, nodes ↔ arrays, and the state in the parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.client: Optional[EchoForgeClient] = None
        self.server_labels: dict[str, int] = {name: value for value, name in SEGMENT_NAMES.items()}
        self.sessions: dict[str, VideoSession] = {}
        self.cines: dict[str, Cine] = {}
        self.session: Optional[VideoSession] = None
        self.cine: Optional[Cine] = None
        self.importing = False
        self._edited_frames: set[int] = set()
        self._extra_values: dict[str, int] = {}  # segment names the server does not know → values 4, 5, ...
        self._extra_names: dict[int, str] = {}

    # ------------------------------------------------------------------ server
    def connect(self, url: str, api_key: Optional[str] = None) -> dict[str, Any]:
        client = EchoForgeClient(url, api_key=api_key)
        info = client.info()
        self.client = client
        model = (info.get("models") or {}).get(client.model) or {}
        self.server_labels = dict(model.get("labels") or info.get("labels") or self.server_labels)
        return info

    def describe_server(self, info: dict[str, Any]) -> str:
        model = (info.get("models") or {}).get(self.client.model if self.client else "echoforge") or {}
        store = info.get("datastore") or {}
        network = (info.get("echoforge") or {}).get("network", "?")
        trained = (info.get("echoforge") or {}).get("trained")
        return (f"{info.get('name', 'server')} {info.get('version', '')}: model '{self.client.model}' "
                f"({model.get('type', '?')}, network {network}, {'trained' if trained else 'not trained yet'}); "
                f"labels {', '.join(self.server_labels)}; videos {store.get('total', '?')}, "
                f"annotated {store.get('completed', '?')}.")

    def _require_client(self) -> EchoForgeClient:
        if self.client is None:
            raise AnnotationError("Connect to an EchoForge server first.")
        return self.client

    def _require_session(self) -> VideoSession:
        if self.session is None or self.cine is None:
            raise AnnotationError("Load a video first: Next video, or Use this video.")
        return self.session

    # ------------------------------------------------------------------ videos
    def next_sample(self, strategy: str) -> Optional[VideoSession]:
        client = self._require_client()
        sample = client.next_sample(strategy)
        if sample is None:
            return None
        video = client.download_image(sample["id"])
        return self.open_video(sample["id"], video, sample)

    def calibration_of(self, node: Any) -> Calibration:
        """What the chosen node's source says about its pixel size (DICOM attributes, or the file's header)."""
        source = resolve_video_node(node)
        if source.sequence is not None:
            return dicom_calibration(source.sequence.GetNthDataNode(0))
        return file_calibration(source.volume)

    def use_node(self, node: Any, calibrated: bool) -> VideoSession:
        """Send a video loaded in Slicer (DICOM cine, its proxy, browser or sequence, or a volume) and open it.

        ``calibrated``: whether its pixel spacing is physical. With evidence (DICOM ultrasound region,
        calibrated file header) the evidence's spacing is used; without, the node's own spacing — unless
        it is Slicer's default 1 mm, which is no calibration.
        """
        client = self._require_client()
        source = resolve_video_node(node)
        for image_id, cine in self.cines.items():
            if source.browser is not None and cine.browser.GetID() == source.browser.GetID():
                self.show_session(image_id)  # already ours: nothing to send again
                return self._require_session()
        if source.sequence is not None:
            video = video_from_sequence(source.sequence, source.browser)
            calibration = dicom_calibration(source.sequence.GetNthDataNode(0))
        else:
            video = video_from_volume_node(source.volume)
            calibration = file_calibration(source.volume)
        video = Volume(video.frames, video.layout, chosen_spacing(calibrated, calibration, video.layout.spacing),
                       video.frame_time_ms)
        image_id = client.upload_image(video, safe_image_id(source.name))
        cine = None
        if source.sequence is not None:
            cine = Cine(source.browser, source.sequence,
                        add_segmentation_sequence(source.browser, source.sequence, image_id, None, video))
        return self.open_video(image_id, video, None, cine)

    def open_video(self, image_id: str, video: Volume, sample: Optional[dict[str, Any]],
                   cine: Optional[Cine] = None) -> VideoSession:
        """Show ``video`` as a cine with its segmentation sequence, and start (or resume) its session.

        Args:
            cine: the scene's own cine of it (a DICOM cine with its new segmentation sequence);
                by default one is made from ``video`` (or the session's existing one is reused).
        """
        session = self.sessions.get(image_id)
        if session is None or session.video.frames.shape != video.frames.shape:
            session = VideoSession(image_id, video, suggested=sample)
            self.sessions[image_id] = session
        existing = self.cines.get(image_id)
        if cine is None and existing is not None and existing.in_scene() and existing.n_frames() == video.n_frames:
            cine = existing
        if cine is None:
            cine = cine_from_video(video, image_id)
            cine = Cine(cine.browser, cine.frames,
                        add_segmentation_sequence(cine.browser, cine.frames, image_id, session.result, video))
        self.cines[image_id] = cine
        self.show_session(image_id)
        self.save_state()
        return session

    def show_session(self, image_id: str) -> None:
        """Make ``image_id`` the current video: its proxy volume in the views, its browser in the toolbar."""
        if self.session is not None and self.session.image_id != image_id and self._edited_frames:
            self.refresh_annotations()
        self.session, self.cine = self.sessions[image_id], self.cines[image_id]
        self._edited_frames.clear()
        if self.cine.browser.GetSelectedItemNumber() < 0:
            self.cine.browser.SetSelectedItemNumber(0)
        volume = self.cine.proxy_volume()
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode().RotateToVolumePlane(volume)
        slicer.modules.sequences.setToolBarActiveBrowserNode(self.cine.browser)
        slicer.modules.sequences.showSequenceBrowser(self.cine.browser)

    def set_calibrated(self, calibrated: bool) -> None:
        """Tick or untick "calibrated" for the current video: the module measures with the new spacing.

        (The server keeps the spacing it was given with the video; its own JSON measurements follow that.)
        """
        session = self._require_session()
        if calibrated == (session.video.spacing is not None):
            return
        if calibrated:
            spacing = chosen_spacing(True, dicom_calibration(self.cine.frames.GetNthDataNode(0)),
                                     session.video.layout.spacing)
            session.video = Volume(session.video.frames, session.video.layout, spacing, session.video.frame_time_ms,
                                   session.video.annotated_frames)
        else:
            session.video = session.video.without_spacing()
        self.save_state()

    # ------------------------------------------------------------------ frames
    def current_frame(self) -> int:
        """The frame the views show: the browser's selected item."""
        self._require_session()
        return max(0, int(self.cine.browser.GetSelectedItemNumber()))

    def show_frame(self, frame: int) -> None:
        """Show ``frame`` in every view (and the browser's toolbar)."""
        self._require_session()
        frame = int(np.clip(frame, 0, self.cine.n_frames() - 1))
        if self.cine.browser.GetSelectedItemNumber() != frame:
            self.cine.browser.SetSelectedItemNumber(frame)

    def step_frame(self, step: int) -> None:
        self.show_frame(self.current_frame() + step)

    def mark_ed(self) -> None:
        self._require_session().mark_ed(self.current_frame())
        self.save_state()

    def mark_es(self) -> None:
        self._require_session().mark_es(self.current_frame())
        self.save_state()

    # ------------------------------------------------------------------ segments
    def segment_name(self, value: int) -> str:
        return SEGMENT_NAMES.get(value) or self._extra_names.get(value) or f"label {value}"

    def value_of(self, segment_name: str) -> int:
        """Label value of a segment by name: the server's labels; names it does not know get 4, 5, ...

        Unknown segments are sent with values the server does not know, so that it refuses them and
        says why, instead of them being dropped silently.
        """
        key = segment_name.strip().lower()
        known = label_values_by_name(self.server_labels)
        if key in known:
            return known[key]
        if key not in self._extra_values:
            value = max(SEGMENT_NAMES) + 1 + len(self._extra_values)
            self._extra_values[key], self._extra_names[value] = value, segment_name.strip()
        return self._extra_values[key]

    def unknown_segment_names(self) -> list[str]:
        """Names of segments with content that the server has no label for (in the annotated frames)."""
        session = self._require_session()
        return sorted(self._extra_names[v] for v in session.annotations.unknown_values() if v in self._extra_names)

    def note_edit(self) -> bool:
        """The proxy segmentation changed: remember the frame (unless it is playback or our own import)."""
        if self.session is None or self.importing or self.cine.browser.GetPlaybackActive():
            return False
        self._edited_frames.add(self.current_frame())
        return True

    def refresh_annotations(self) -> list[int]:
        """Record the frames the clinician drew or corrected since the last server result."""
        session = self._require_session()
        frames, self._edited_frames = sorted(self._edited_frames), set()
        changed = []
        with FrameReader(self.cine, self.value_of) as reader:
            for frame in frames:
                baseline = None if session.result is None else session.result[frame]
                if session.annotations.update_frame(frame, reader.frame(frame, session.video), baseline):
                    changed.append(frame)
        if changed:
            self.save_state()
        return changed

    def forget_frame(self) -> int:
        """Leave the current frame's drawing out of what is sent (until it is drawn on again)."""
        session = self._require_session()
        if self._edited_frames:
            self.refresh_annotations()
        frame = self.current_frame()
        with FrameReader(self.cine, self.value_of) as reader:
            session.annotations.remove_frame(frame, reader.frame(frame, session.video))
        self.save_state()
        return frame

    def labels_from_segments(self) -> np.ndarray:
        """The segmentation sequence as T×H×W labels (later segments win where they overlap)."""
        session = self._require_session()
        with FrameReader(self.cine, self.value_of) as reader:
            return np.stack([reader.frame(t, session.video) for t in range(session.video.n_frames)])

    def show_labels(self, labels: np.ndarray) -> None:
        """Replace every frame's segments by T×H×W ``labels`` (a server result)."""
        session = self._require_session()
        self.importing = True
        try:
            write_segmentation_frames(self.cine.segmentation, self.cine.master(), self.cine.proxy_volume(),
                                      session.video.layout.to_slicer_array(np.asarray(labels, dtype=np.uint8)))
            slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(self.cine.browser)
        finally:
            self.importing = False
        self._edited_frames.clear()

    def open_segment_editor(self) -> None:
        """Slicer's Segment Editor on the current frame's segmentation (the browser's proxy) and frame."""
        self._require_session()
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(self.cine.proxy_segmentation())
        if hasattr(editor, "setSourceVolumeNode"):
            editor.setSourceVolumeNode(self.cine.proxy_volume())
        else:  # Slicer before 5.2
            editor.setMasterVolumeNode(self.cine.proxy_volume())

    # ------------------------------------------------------------------ server loop
    def segment_the_rest(self, adapt: str = "auto") -> np.ndarray:
        session = self._require_session()
        labels = session.segment_the_rest(self._require_client(), adapt)
        self.show_labels(labels)
        self.save_state()
        return labels

    def segment_automatically(self) -> np.ndarray:
        session = self._require_session()
        labels = session.segment_automatically(self._require_client())
        self.show_labels(labels)
        self.save_state()
        return labels

    def submit(self) -> dict[str, Any]:
        return self._require_session().submit(self._require_client())

    # ------------------------------------------------------------------ results
    def measurement_rows(self) -> list[dict[str, Any]]:
        return measurement_rows(list(self.sessions.values()))

    def set_reference_ef(self, video: str, value: Optional[float]) -> None:
        if video in self.sessions:
            self.sessions[video].reference_ef = value
            self.save_state()

    def save_report(self, folder: str, pictures: Optional[dict[str, dict[str, str]]] = None) -> dict[str, Any]:
        return write_study_report(list(self.sessions.values()), folder, pictures)

    # ------------------------------------------------------------------ state in the parameter node
    def save_state(self) -> None:
        """Write every session's state and nodes into the module's parameter node."""
        node = self.getParameterNode()
        ids = [i for i in self.sessions if i in self.cines]
        was_modifying = node.StartModify()
        try:
            node.SetParameter(PARAMETER_VIDEOS, encode_states([session_state(self.sessions[i]) for i in ids]))
            node.SetParameter(PARAMETER_CURRENT, self.session.image_id if self.session is not None else "")
            for role in (ROLE_BROWSER, ROLE_SEGMENTATION):
                node.RemoveNodeReferenceIDs(role)
            for n, image_id in enumerate(ids):
                node.SetNthNodeReferenceID(ROLE_BROWSER, n, self.cines[image_id].browser.GetID())
                node.SetNthNodeReferenceID(ROLE_SEGMENTATION, n, self.cines[image_id].segmentation.GetID())
        finally:
            node.EndModify(was_modifying)

    def restore_state(self) -> list[str]:
        """Rebuild the sessions from the parameter node (module reload, or a saved scene). Returns the problems."""
        node = self.getParameterNode()
        states, problems = decode_states(node.GetParameter(PARAMETER_VIDEOS))
        for n, state in enumerate(states):
            browser: Optional[slicer.vtkMRMLSequenceBrowserNode] = node.GetNthNodeReference(ROLE_BROWSER, n)
            segmentation: Optional[slicer.vtkMRMLSequenceNode] = node.GetNthNodeReference(ROLE_SEGMENTATION, n)
            if browser is None or segmentation is None or browser.GetMasterSequenceNode() is None:
                problems.append(f"video {state['image_id']!r} is no longer in the scene; it was left out.")
                continue
            cine = Cine(browser, browser.GetMasterSequenceNode(), segmentation)
            try:
                video = video_from_sequence(cine.frames, cine.browser)
                with FrameReader(cine, self.value_of) as reader:
                    labels = np.stack([reader.frame(t, video) for t in range(video.n_frames)])
                self.sessions[state["image_id"]] = restore_session(state, video, labels)
                self.cines[state["image_id"]] = cine
            except (ValueError, EchoForgeModuleError) as err:
                problems.append(f"video {state['image_id']!r} could not be resumed: {err}")
        current = node.GetParameter(PARAMETER_CURRENT)
        if self.sessions:
            self.show_session(current if current in self.sessions else next(iter(self.sessions)))
        return problems

    def forget_all(self) -> None:
        """The scene is closing: drop every session and node (the parameter node goes with the scene)."""
        self.sessions.clear()
        self.cines.clear()
        self.session = self.cine = None
        self._edited_frames.clear()


# ---------------------------------------------------------------------------------------------- node conversion
@dataclass(frozen=True)
class VideoSource:
    """The node a clinician chose, resolved: a sequence of frames in its browser, or a volume."""

    name: str
    browser: Optional[slicer.vtkMRMLSequenceBrowserNode] = None
    sequence: Optional[slicer.vtkMRMLSequenceNode] = None
    volume: Optional[slicer.vtkMRMLScalarVolumeNode] = None


def resolve_video_node(node: Any) -> VideoSource:
    """A DICOM cine whichever of its nodes was chosen (the volume shown is its browser's proxy), or a volume.

    Raises:
        AnnotationError: a sequence no browser plays, or a browser without frames.
    """
    sequences = slicer.modules.sequences.logic()
    if node.IsA("vtkMRMLSequenceBrowserNode"):
        master = node.GetMasterSequenceNode()
        if master is None:
            raise AnnotationError(f"The sequence browser {node.GetName()!r} has no sequence to play.")
        return VideoSource(master.GetName(), node, master)
    if node.IsA("vtkMRMLSequenceNode"):
        browser = sequences.GetFirstBrowserNodeForSequenceNode(node)
        if browser is None:
            raise AnnotationError(f"The sequence {node.GetName()!r} is not in a sequence browser; choose the "
                                  "cine's volume or browser.")
        return VideoSource(node.GetName(), browser, node)
    browser = sequences.GetFirstBrowserNodeForProxyNode(node)
    if browser is not None:  # the volume a cine's browser shows: the whole cine, not its current frame
        sequence = browser.GetSequenceNode(node)
        return VideoSource(sequence.GetName(), browser, sequence)
    return VideoSource(node.GetName(), volume=node)


def safe_image_id(name: str) -> str:
    """A datastore id from a node name: letters, digits, ``-`` and ``_`` only."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)).strip("_")
    return cleaned or "slicer_video"


def ijk_to_ras_array(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """A volume node's IJK→RAS matrix as a 4×4 numpy array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def volume_kind(node: slicer.vtkMRMLVolumeNode) -> str:
    """How ``arrayFromVolume(node)`` is laid out: a MultiVolume's 4th axis is time, a vector volume's colour."""
    if node.IsA("vtkMRMLMultiVolumeNode"):
        return MULTIVOLUME
    if node.IsA("vtkMRMLVectorVolumeNode"):
        return VECTOR
    return SCALAR


def video_from_volume_node(node: slicer.vtkMRMLScalarVolumeNode) -> Volume:
    """T×H×W frames of a scalar volume (frames along its third axis), an RGB volume or a one-slice MultiVolume.

    The spacing is the node's; whether it is a calibration is decided by the caller.
    """
    kind = volume_kind(node)
    kji = frames_kji(slicer.util.arrayFromVolume(node), kind, node.GetName())
    video = volume_from_slicer(kji, ijk_to_ras_array(node), calibrated=True)
    frame_time = None
    if kind == MULTIVOLUME:  # the MultiVolume importer's frame times
        labels = (node.GetAttribute("MultiVolume.FrameLabels") or "").split(",")
        frame_time = frame_time_from_index(labels, node.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits")
                                           or "")
    return Volume(video.frames, video.layout, video.spacing, frame_time)


def video_from_sequence(sequence: slicer.vtkMRMLSequenceNode, browser: slicer.vtkMRMLSequenceBrowserNode) -> Volume:
    """Stack the single-slice frames of ``sequence`` (in the order of ``browser``'s master) into a video.

    The frame time comes from the master's index values (all of them: the DICOM plugin rounds each
    to the millisecond) and the browser's playback rate when they agree. The spacing is the frames';
    whether it is a calibration is decided by the caller.
    """
    master = browser.GetMasterSequenceNode()
    n = master.GetNumberOfDataNodes()
    if n == 0:
        raise AnnotationError("The sequence holds no frame.")
    values = [master.GetNthIndexValue(t) for t in range(n)]
    frames, geometry = [], None
    for t, value in enumerate(values):
        item = sequence.GetDataNodeAtValue(value, True)
        if item is None or not item.IsA("vtkMRMLScalarVolumeNode"):
            raise VolumeFormatError(f"{sequence.GetName()}: frame {t} ({value}) is not an image.")
        kji = frames_kji(slicer.util.arrayFromVolume(item), volume_kind(item), f"frame {t} of {sequence.GetName()}")
        if kji.shape[0] != 1:
            raise VolumeFormatError(f"Frame {t} of {sequence.GetName()} is a 3-D volume ({kji.shape[0]} slices); "
                                    "EchoForge segments 2-D cine loops.")
        if frames and kji.shape[1:] != frames[0].shape:
            raise VolumeFormatError(f"Frame {t} of {sequence.GetName()} is {kji.shape[1:]}, frame 0 is "
                                    f"{frames[0].shape}: the frames must all be the same size.")
        frames.append(kji[0])
        geometry = geometry if geometry is not None else ijk_to_ras_array(item)
    video = volume_from_slicer(np.stack(frames), geometry, calibrated=True)  # the frames become the k axis
    frame_time = frame_time_from_index(values, master.GetIndexUnit(), browser.GetPlaybackRateFps())
    return Volume(video.frames, video.layout, video.spacing, frame_time)


def dicom_calibration(frame: slicer.vtkMRMLVolumeNode) -> Calibration:
    """The pixel size the DICOM file of a cine frame declares (its ultrasound regions), read with pydicom."""
    uids = (frame.GetAttribute("DICOM.instanceUIDs") or "").split()
    path = slicer.dicomDatabase.fileForInstance(uids[0]) if uids and getattr(slicer, "dicomDatabase", None) else ""
    if not path:
        return Calibration(None, "the cine did not come from the DICOM database, so nothing says how large a pixel is")
    import pydicom  # shipped with Slicer's DICOM module

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        return Calibration(None, f"its DICOM file could not be read ({err})")
    spacing = spacing_from_dicom(dataset)
    if spacing is None:
        return Calibration(None, "the DICOM file has no ultrasound calibration region or pixel spacing")
    return Calibration(spacing, "from the DICOM ultrasound calibration")


def file_calibration(volume: slicer.vtkMRMLScalarVolumeNode) -> Calibration:
    """The pixel size a volume's NIfTI/NRRD file declares (EchoForge's "uncalibrated" field honoured)."""
    storage = volume.GetStorageNode()
    path = storage.GetFileName() if storage is not None else None
    if not path or not os.path.isfile(path):
        return Calibration(None, "the volume has no file that says how large a pixel is")
    try:
        spacing = read_volume(path).spacing
    except VolumeFormatError as err:
        return Calibration(None, f"its file could not be read for its calibration ({err})")
    if spacing is None or is_default_spacing(spacing):
        return Calibration(None, f"{os.path.basename(path)} records no calibration")
    return Calibration(spacing, f"from the header of {os.path.basename(path)}")


def is_default_spacing(spacing: Sequence[float]) -> bool:
    """Whether ``spacing`` is the 1 × 1 mm that Slicer and file writers put where a source gives none.

    An echo pixel is a few tenths of a millimetre (a 1 mm pixel would make a 600-row frame 60 cm
    deep), so 1 × 1 mm is read as "no calibration", never as one.
    """
    return tuple(round(float(s), 6) for s in spacing) == DEFAULT_SPACING_MM


def chosen_spacing(calibrated: bool, calibration: Calibration,
                   node_spacing: tuple[float, float]) -> Optional[tuple[float, float]]:
    """The spacing to measure with: the evidence's, else the node's when the clinician vouches for it.

    Raises:
        AnnotationError: "calibrated" without evidence on Slicer's default 1 mm pixel, which is no calibration.
    """
    if not calibrated:
        return None
    if calibration.spacing is not None:
        return calibration.spacing
    if is_default_spacing(node_spacing):
        raise AnnotationError("This video's pixel spacing is 1 x 1 mm, the value Slicer uses when the source gives "
                              "none, so it cannot be taken as calibrated. Set the real spacing on the volume "
                              "(Volumes module, Volume Information) first, or leave it uncalibrated.")
    return tuple(float(s) for s in node_spacing)  # type: ignore[return-value]


def cine_from_video(video: Volume, name: str) -> Cine:
    """A sequence of single-slice frames of ``video`` on its own geometry, in a new browser (no segmentation yet).

    Every frame keeps the video's IJK→RAS matrix, so the frames overlay; index values are times in
    seconds when the frame time is known, else frame numbers.
    """
    scene = slicer.mrmlScene
    kji = video.layout.to_slicer_array(video.frames)  # [T, j, i]
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} frames")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    if video.frame_time_ms:
        sequence.SetIndexName("time")
        sequence.SetIndexUnit("s")
        values = [f"{t * video.frame_time_ms / 1000.0:.6f}" for t in range(video.n_frames)]
    else:
        sequence.SetIndexName("frame")
        sequence.SetIndexUnit("")
        values = [str(t) for t in range(video.n_frames)]
    frame = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", TEMPORARY_NODE_NAME)
    try:
        frame.SetIJKToRASMatrix(vtk_matrix(video.layout.ijk_to_ras))
        was_modifying = sequence.StartModify()
        for t, value in enumerate(values):
            slicer.util.updateVolumeFromArray(frame, np.ascontiguousarray(kji[t:t + 1]))
            sequence.SetDataNodeAtValue(frame, value)
        sequence.EndModify(was_modifying)
    finally:
        scene.RemoveNode(frame)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetPlaybackRateFps(1000.0 / video.frame_time_ms if video.frame_time_ms else 10.0)
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    return Cine(browser, sequence, sequence)


def add_segmentation_sequence(browser: slicer.vtkMRMLSequenceBrowserNode, frames: slicer.vtkMRMLSequenceNode,
                              name: str, labels: Optional[np.ndarray], video: Volume) -> slicer.vtkMRMLSequenceNode:
    """A segmentation sequence for every frame of ``browser`` (empty, or ``labels`` T×H×W), synchronised and saved.

    Edits of its proxy (the Segment Editor's segmentation) are saved into the frame shown.
    """
    master = browser.GetMasterSequenceNode()
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} segmentation")
    sequence.SetIndexName(master.GetIndexName())
    sequence.SetIndexUnit(master.GetIndexUnit())
    sequence.SetIndexType(master.GetIndexType())
    shape = (video.n_frames, *video.frame_size)
    kji = video.layout.to_slicer_array(np.zeros(shape, np.uint8) if labels is None else np.asarray(labels, np.uint8))
    write_segmentation_frames(sequence, master, browser.GetProxyNode(frames), kji)
    browser.AddSynchronizedSequenceNode(sequence)
    browser.SetSaveChanges(sequence, True)
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    return sequence


def write_segmentation_frames(sequence: slicer.vtkMRMLSequenceNode, master: slicer.vtkMRMLSequenceNode,
                              reference: slicer.vtkMRMLScalarVolumeNode, kji: np.ndarray) -> None:
    """Set every frame of a segmentation sequence from labels ``[T, j, i]`` (values 1-3; others ignored).

    Each frame is a segmentation with the segments *LV cavity*, *LV myocardium* and *Left atrium*
    (named and coloured as the server's labels) on the geometry of ``reference`` (one frame).
    """
    scene = slicer.mrmlScene
    segmentations = slicer.modules.segmentations.logic()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", TEMPORARY_NODE_NAME)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", TEMPORARY_NODE_NAME)
    try:
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        segment_ids = vtk.vtkStringArray()  # label value v → segment v - 1 of this list
        for value in range(1, max(SEGMENT_NAMES) + 1):
            name = SEGMENT_NAMES[value]
            segmentation.GetSegmentation().AddEmptySegment(name, name, tuple(c / 255.0 for c in COLORS[value]))
            segment_ids.InsertNextValue(name)
        matrix = vtk.vtkMatrix4x4()
        reference.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        was_modifying = sequence.StartModify()
        try:
            for t in range(kji.shape[0]):
                slicer.util.updateVolumeFromArray(labelmap, np.ascontiguousarray(kji[t:t + 1], dtype=np.uint8))
                if not segmentations.ImportLabelmapToSegmentationNode(labelmap, segmentation, segment_ids):
                    raise AnnotationError(f"Slicer could not set the segments of frame {t}.")
                sequence.SetDataNodeAtValue(segmentation, master.GetNthIndexValue(t))
        finally:
            sequence.EndModify(was_modifying)
    finally:
        scene.RemoveNode(labelmap)
        scene.RemoveNode(segmentation)


class FrameReader:
    """Reads frames of a cine's segmentation sequence as ``H×W`` labels.

    Each frame is copied into one temporary segmentation in the scene and exported from there:
    exporting a sequence's own data node would make Slicer put a colour table into the sequence's
    internal scene (and look for a subject hierarchy there) on every read.
    """

    def __init__(self, cine: Cine, value_of: Any):
        self.cine, self.value_of = cine, value_of
        self._segmentation: Optional[slicer.vtkMRMLSegmentationNode] = None
        self._labelmap: Optional[slicer.vtkMRMLLabelMapVolumeNode] = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._labelmap is not None:
            display = self._labelmap.GetDisplayNode()
            if display is not None and display.GetColorNode() is not None:
                slicer.mrmlScene.RemoveNode(display.GetColorNode())  # the export made it
            slicer.mrmlScene.RemoveNode(self._labelmap)
        if self._segmentation is not None:
            slicer.mrmlScene.RemoveNode(self._segmentation)
        self._segmentation = self._labelmap = None

    def frame(self, frame: int, video: Volume) -> np.ndarray:
        """Frame ``frame`` as ``H×W`` uint8 labels, upright like the video's frames (later segments win)."""
        if self._segmentation is None:
            self._segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", TEMPORARY_NODE_NAME)
            self._labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", TEMPORARY_NODE_NAME)
        self._segmentation.CopyContent(self.cine.segmentation_at(frame), True)
        segmentation = self._segmentation.GetSegmentation()
        ids, values = vtk.vtkStringArray(), []
        for n in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(n)
            ids.InsertNextValue(segment_id)
            values.append(self.value_of(segmentation.GetSegment(segment_id).GetName()))
        layout = single_frame_layout(video)
        kji = layout.to_slicer_array(np.zeros((1, *video.frame_size), np.uint8))  # [1, j, i]
        if values:
            if not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                    self._segmentation, ids, self._labelmap, self.cine.proxy_volume(),
                    slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise AnnotationError(f"Slicer could not read the segments of frame {frame}.")
            exported = np.asarray(slicer.util.arrayFromVolume(self._labelmap))
            if exported.shape != kji.shape:
                raise AnnotationError(f"The segments of frame {frame} are {exported.shape[1:]} pixels, the frame is "
                                      f"{kji.shape[1:]}.")
            for n, value in enumerate(values):  # segment n was exported as label n + 1
                kji[exported == n + 1] = value
        return layout.to_frames(np.transpose(kji, (2, 1, 0)))[0]


def single_frame_layout(video: Volume) -> FrameLayout:
    """The layout of one frame of ``video`` as a one-slice volume (the video's rule, its k axis of length 1)."""
    i, j, _ = video.layout.shape
    return frame_layout((i, j, 1), video.layout.ijk_to_ras)


# ---------------------------------------------------------------------------------------------- tests in Slicer
class EchoForgeTest(ScriptedLoadableModuleTest):
    """Runs inside 3D Slicer (Reload & Test, or ctest): cines ↔ arrays, per-frame segmentation, state, measurements.

    Set ``ECHOFORGE_SERVER_URL`` to a running server to also run the whole loop against it.
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            getattr(self, name)()

    @staticmethod
    def _synthetic_video(n_frames: int = 12, size: tuple[int, int] = (64, 80),
                         spacing: Optional[tuple[float, float]] = (0.4, 0.3)) -> tuple[Volume, np.ndarray]:
        """A video whose LV (an ellipse) shrinks and grows once, with its labels."""
        rows, cols = np.mgrid[0:size[0], 0:size[1]]
        labels = np.zeros((n_frames, *size), dtype=np.uint8)
        for t in range(n_frames):
            scale = 1.0 - 0.35 * np.sin(np.pi * t / (n_frames - 1))
            lv = ((rows - size[0] * 0.45) / (size[0] * 0.3)) ** 2 + ((cols - size[1] * 0.5) / (size[1] * 0.15 * scale)) ** 2
            ring = ((rows - size[0] * 0.45) / (size[0] * 0.36)) ** 2 + ((cols - size[1] * 0.5) / (size[1] * 0.2 * scale)) ** 2
            la = ((rows - size[0] * 0.85) / (size[0] * 0.1)) ** 2 + ((cols - size[1] * 0.5) / (size[1] * 0.12)) ** 2
            labels[t][ring <= 1] = 2
            labels[t][lv <= 1] = 1
            labels[t][la <= 1] = 3
        frames = (40 + 60 * (labels == 2) + 20 * (labels == 3)).astype(np.uint8)
        return volume_from_frames(frames, spacing, 33.3), labels

    @staticmethod
    def _dicom_like_cine(frames: np.ndarray, frame_time_ms: float) -> Cine:
        """A cine built the way the DICOM image-sequence plugin builds one (frames on diag(-1, -1, 1), times in s)."""
        scene = slicer.mrmlScene
        sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "1: US echo cine")
        sequence.SetIndexName("time")
        sequence.SetIndexUnit("s")
        frame = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "frame")
        frame.SetIJKToRASMatrix(vtk_matrix(np.diag([-1.0, -1.0, 1.0, 1.0])))
        for t in range(frames.shape[0]):
            slicer.util.updateVolumeFromArray(frame, frames[t:t + 1])
            sequence.SetDataNodeAtValue(frame, f"{t * frame_time_ms / 1000.0:.3f}")
        scene.RemoveNode(frame)
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "1: US echo cine browser")
        browser.SetPlaybackRateFps(1000.0 / frame_time_ms)
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        return Cine(browser, sequence, sequence)

    def _paint(self, cine: Cine, frame: int, segment: str, mask: np.ndarray) -> None:
        """Draw ``mask`` ([1, j, i]) into ``segment`` of ``frame`` through the proxy, as the Segment Editor does."""
        cine.browser.SetSelectedItemNumber(frame)
        slicer.app.processEvents()
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, cine.proxy_segmentation(), segment, cine.proxy_volume())
        slicer.app.processEvents()

    def test_video_round_trip_through_a_cine(self) -> None:
        self.delayDisplay("Video to a cine (sequence of frames) and back")
        video, _ = self._synthetic_video()
        cine = cine_from_video(video, "echoforge_test")
        self.assertEqual(cine.n_frames(), video.n_frames)
        self.assertEqual(slicer.util.arrayFromVolume(cine.proxy_volume()).shape[0], 1)  # one 2-D frame shown
        back = video_from_sequence(cine.frames, cine.browser)
        np.testing.assert_array_equal(back.frames, video.frames)
        self.assertAlmostEqual(back.frame_time_ms, 33.3, places=3)

    def test_dicom_cine_frame_time_and_proxy_resolution(self) -> None:
        self.delayDisplay("DICOM-like cine: exact frame time, proxy resolved to the whole cine")
        video, _ = self._synthetic_video(n_frames=30)
        cine = self._dicom_like_cine(video.frames, 1000.0 / 30)
        source = resolve_video_node(cine.proxy_volume())
        self.assertEqual(source.sequence.GetID(), cine.frames.GetID())
        back = video_from_sequence(source.sequence, cine.browser)
        self.assertEqual(back.n_frames, 30)  # not the one frame the proxy shows
        self.assertAlmostEqual(back.frame_time_ms, 1000.0 / 30, places=6)  # 33.33, not the rounded 33 or 34
        self.assertIsNone(dicom_calibration(source.sequence.GetNthDataNode(0)).spacing)
        self.assertIsNone(chosen_spacing(False, Calibration(None, "none"), back.layout.spacing))
        with self.assertRaises(AnnotationError):  # the plugin's 1 mm is no calibration
            chosen_spacing(True, Calibration(None, "none"), (1.0, 1.0))

    def test_segmentation_plays_with_the_cine_and_edits_stay_on_their_frame(self) -> None:
        self.delayDisplay("Segmentation sequence: plays with the cine; an edit changes one frame only")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        session = logic.open_video("echoforge_test_4CH", video, {"suggested_frames": [0, 6]})
        logic.show_labels(labels)
        for frame in (0, 5, 11):
            logic.show_frame(frame)
            slicer.app.processEvents()
            shown = slicer.util.arrayFromSegmentBinaryLabelmap(logic.cine.proxy_segmentation(), "LV cavity",
                                                               logic.cine.proxy_volume())
            expected = video.layout.to_slicer_array(labels)[frame:frame + 1] == 1
            np.testing.assert_array_equal(np.asarray(shown) > 0, expected)
        before = logic.labels_from_segments()
        mask = np.ones((1, *np.asarray(slicer.util.arrayFromVolume(logic.cine.proxy_volume())).shape[1:]), np.uint8)
        self._paint(logic.cine, 4, "Left atrium", mask)
        after = logic.labels_from_segments()
        changed = np.flatnonzero((after != before).reshape(video.n_frames, -1).any(axis=1))
        self.assertEqual(changed.tolist(), [4])
        session.result = before
        logic.note_edit()
        self.assertEqual(logic.refresh_annotations(), [4])

    def test_source_representation_event_follows_every_stroke(self) -> None:
        self.delayDisplay("The annotated frames follow every stroke, not only the first")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        logic.open_video("echoforge_strokes", video, None)
        seen: list[int] = []
        proxy = logic.cine.proxy_segmentation()
        tag = proxy.AddObserver(source_representation_modified_event(), lambda caller, event: seen.append(1))
        try:
            kji = video.layout.to_slicer_array(labels)
            for stroke in range(3):
                mask = (kji[2:3] == 1).astype(np.uint8)
                mask[:, : 4 * (stroke + 1)] = 0
                self._paint(logic.cine, 2, "LV cavity", mask)
        finally:
            proxy.RemoveObserver(tag)
        self.assertGreaterEqual(len(seen), 3)

    def test_forget_sticks_through_segment_and_submit_refreshes(self) -> None:
        self.delayDisplay("Forget this frame stays forgotten")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        session = logic.open_video("echoforge_forget", video, None)
        kji = video.layout.to_slicer_array(labels)
        for frame in (0, 6):
            self._paint(logic.cine, frame, "LV cavity", (kji[frame:frame + 1] == 1).astype(np.uint8))
            logic.note_edit()
        logic.refresh_annotations()
        self.assertEqual(session.annotations.annotated_frames, [0, 6])
        logic.show_frame(6)
        self.assertEqual(logic.forget_frame(), 6)
        logic.note_edit()
        logic.refresh_annotations()
        self.assertEqual(session.annotations.annotated_frames, [0])

    def test_state_survives_a_reload_and_goes_with_the_scene(self) -> None:
        self.delayDisplay("State in the parameter node: kept across logic instances, cleared with the scene")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        session = logic.open_video("echoforge_state_2CH", video, None)
        logic.show_labels(labels)
        session.result = labels
        logic.show_frame(3)
        logic.mark_ed()
        again = EchoForgeLogic()  # what a module reload makes
        self.assertEqual(again.restore_state(), [])
        self.assertEqual(again.sessions["echoforge_state_2CH"].ed, 3)
        np.testing.assert_array_equal(again.sessions["echoforge_state_2CH"].result, labels)
        slicer.mrmlScene.Clear(0)
        self.assertEqual(EchoForgeLogic().restore_state(), [])
        self.assertEqual(EchoForgeLogic().sessions, {})

    def test_measurements_chart_and_report(self) -> None:
        self.delayDisplay("Measurements, chart and report")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        session = logic.open_video("echoforge_test_4CH", video, None)
        logic.show_labels(labels)
        session.result = labels
        m = session.measurements()
        self.assertTrue(m["available"])
        self.assertGreater(m["edv_disks_ml"], m["esv_disks_ml"])
        self.assertEqual(len(logic.measurement_rows()), 1)
        with tempfile.TemporaryDirectory() as folder:
            pictures = ReportViews().save_pictures(logic, folder)
            summary = logic.save_report(folder, pictures)
            self.assertTrue(os.path.exists(summary["report_json"]))
            for path in pictures["echoforge_test_4CH"].values():
                self.assertTrue(os.path.getsize(path) > 0)

    def test_widget_frame_follows_the_browser(self) -> None:
        self.delayDisplay("Frame slider and marks follow the sequence browser")
        widget = slicer.modules.echoforge.widgetRepresentation().self()
        logic = widget.logic
        video, _ = self._synthetic_video()
        logic.open_video("echoforge_widget", video, None)
        widget._show_session()
        logic.cine.browser.SelectNextItem(5)
        slicer.app.processEvents()
        self.assertEqual(int(widget.frameSlider.value), 5)
        widget.onMarkEd()
        self.assertEqual(logic.session.ed, 5)
        widget.frameSlider.value = 2
        self.assertEqual(logic.cine.browser.GetSelectedItemNumber(), 2)

    def test_frame_shortcuts_do_not_clash_with_the_sequence_browser(self) -> None:
        self.delayDisplay("Frame shortcuts: one owner for Ctrl+Shift+Left/Right")
        widget = slicer.modules.echoforge.widgetRepresentation().self()
        ours = [s.key().toString() for s in widget._shortcuts]
        for key in FRAME_SHORTCUTS.values():
            self.assertEqual(key in ours, not sequence_browser_steps_frames(), key)
        for key in MARK_SHORTCUTS.values():
            self.assertIn(key, ours)

    def test_multivolume_frames_are_not_taken_as_colour(self) -> None:
        if not slicer.mrmlScene.IsNodeClassRegistered("vtkMRMLMultiVolumeNode"):
            self.delayDisplay("No MultiVolume support in this Slicer: skipped")
            return
        self.delayDisplay("A one-slice MultiVolume is a 2-D+t video, not a colour image")
        video, _ = self._synthetic_video(n_frames=7)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMultiVolumeNode", "echoforge_multivolume")
        kji = video.layout.to_slicer_array(video.frames)  # [T, j, i]
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.moveaxis(kji, 0, -1)[None]))  # [1, j, i, T]
        node.SetIJKToRASMatrix(vtk_matrix(video.layout.ijk_to_ras))
        back = video_from_volume_node(node)
        self.assertEqual(back.n_frames, 7)
        np.testing.assert_array_equal(back.frames, video.frames)

    def test_loop_against_a_server(self) -> None:
        url = os.environ.get("ECHOFORGE_SERVER_URL")
        if not url:
            self.delayDisplay("ECHOFORGE_SERVER_URL is not set: the loop against a server is not run")
            return
        self.delayDisplay(f"Whole loop against {url}")
        logic = EchoForgeLogic()
        logic.connect(url, os.environ.get("ECHOFORGE_API_KEY"))
        session = logic.next_sample("random")
        self.assertIsNotNone(session)
        result = logic.segment_automatically()
        drawn = np.zeros_like(result)
        drawn[0] = result[0]
        logic.show_labels(drawn)
        session.result = None
        session.annotations.update(drawn)
        labels = logic.segment_the_rest("off")
        np.testing.assert_array_equal(labels[0], drawn[0])
        self.delayDisplay("Loop against the server passed")
