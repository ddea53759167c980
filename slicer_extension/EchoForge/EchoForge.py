"""EchoForge for 3D Slicer: annotate two or three frames of an echo video, get every frame segmented,
see LV volumes and ejection fraction, and teach the model with what you drew.

The widgets are thin: everything that does not need Slicer (the server client, the orientation of
videos and labels, which frames are annotated, measurements, the report) lives in ``EchoForgeLib``
and is tested outside Slicer. This file turns Slicer nodes into EchoForgeLib's arrays and back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import traceback
from collections.abc import Iterator
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

from EchoForgeLib import (
    AnnotationError,
    EchoForgeClient,
    EchoForgeModuleError,
    ServerRejectedError,
    VideoSession,
    Volume,
    measurement_rows,
    volume_from_slicer,
    write_study_report,
)
from EchoForgeLib.labels import COLORS, SEGMENT_NAMES, label_values_by_name
from EchoForgeLib.volume import volume_from_frames

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
SETTINGS_URL = "EchoForge/serverUrl"
ANNOTATION_REFRESH_MS = 400
TRAINING_POLL_MS = 5000
SHORTCUTS = {"next_frame": "Ctrl+Shift+Right", "previous_frame": "Ctrl+Shift+Left", "mark_ed": "Ctrl+Shift+E",
             "mark_es": "Ctrl+Shift+S"}


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
            "or use a video loaded in Slicer. <b>3.</b> Draw the structures on two or three frames (ED and ES are "
            "best) in the Segment Editor. <b>4.</b> Press <i>Segment the rest</i>: every other frame is "
            "segmented from your drawings, which come back unchanged. <b>5.</b> Read EDV, ESV and EF (biplane "
            "when the 2CH and 4CH of a patient are segmented), correct frames if needed, and <i>Submit</i> so "
            "that the model learns from them.<br>"
            f"Shortcuts: next/previous frame {SHORTCUTS['next_frame']}/{SHORTCUTS['previous_frame']}, mark ED "
            f"{SHORTCUTS['mark_ed']}, mark ES {SHORTCUTS['mark_es']}.<br>"
            "Without a calibrated pixel spacing no volume is shown; EF then comes from pixel areas.")
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
        self._shortcuts: list[Any] = []

    # ------------------------------------------------------------------ layout
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = EchoForgeLogic()
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
        self._update_buttons()

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
        self.serverUrlEdit = qt.QLineEdit()
        self.serverUrlEdit.text = str(qt.QSettings().value(SETTINGS_URL, DEFAULT_SERVER_URL))
        self.serverUrlEdit.toolTip = "Address of the EchoForge MONAI Label server"
        form.addRow("Server URL:", self.serverUrlEdit)
        self.tokenEdit = qt.QLineEdit()
        self.tokenEdit.echoMode = qt.QLineEdit.Password
        self.tokenEdit.toolTip = "Access token, only when the server requires one"
        form.addRow("Token (optional):", self.tokenEdit)
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
        self.volumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode", "vtkMRMLSequenceBrowserNode"]
        self.volumeSelector.noneEnabled = True
        self.volumeSelector.addEnabled = False
        self.volumeSelector.removeEnabled = False
        self.volumeSelector.setMRMLScene(slicer.mrmlScene)
        self.volumeSelector.toolTip = ("A video already loaded in Slicer: a NIfTI/NRRD volume (frames along the "
                                       "third axis) or a DICOM cine (sequence browser)")
        self.useVolumeButton = self._button("Use this video", "Send this video to the server and annotate it",
                                            self.onUseVolume)
        row = qt.QHBoxLayout()
        row.addWidget(self.volumeSelector)
        row.addWidget(self.useVolumeButton)
        form.addRow("Own video:", row)
        self.calibratedCheck = qt.QCheckBox("Pixel spacing is calibrated (mm)")
        self.calibratedCheck.checked = True
        self.calibratedCheck.toolTip = ("Untick for an export without calibration (spacing 1 or unknown): "
                                        "volumes are then not reported and EF comes from pixel areas")
        self.calibratedCheck.connect("toggled(bool)", self.onCalibratedToggled)
        form.addRow(self.calibratedCheck)

        self.frameSlider = ctk.ctkSliderWidget()
        self.frameSlider.decimals = 0
        self.frameSlider.singleStep = 1
        self.frameSlider.minimum = 0
        self.frameSlider.maximum = 0
        self.frameSlider.toolTip = (f"Frame shown in the red view ({SHORTCUTS['previous_frame']} / "
                                    f"{SHORTCUTS['next_frame']})")
        self.frameSlider.connect("valueChanged(double)", self.onFrameSlider)
        form.addRow("Frame:", self.frameSlider)
        self.markEdButton = self._button("Mark ED", f"This frame is end-diastole ({SHORTCUTS['mark_ed']})",
                                         self.onMarkEd)
        self.markEsButton = self._button("Mark ES", f"This frame is end-systole ({SHORTCUTS['mark_es']})",
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
                                       "Open the Segment Editor on this video's segments (LV cavity, LV "
                                       "myocardium, Left atrium)", self.onEditSegments)
        form.addRow(self.editButton)
        self.annotatedList = qt.QListWidget()
        self.annotatedList.toolTip = "Frames you drew on (double-click to show one)"
        self.annotatedList.connect("itemDoubleClicked(QListWidgetItem*)", self.onAnnotatedFrameChosen)
        form.addRow("Annotated frames:", self.annotatedList)
        self.forgetFrameButton = self._button("Forget this frame", "Do not send the drawing of the current frame",
                                              self.onForgetFrame)
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
                                             "Write the report (JSON and PNG figures) of every segmented video",
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
        for name, slot in (("next_frame", self.onNextFrame), ("previous_frame", self.onPreviousFrame),
                           ("mark_ed", self.onMarkEd), ("mark_es", self.onMarkEs)):
            shortcut = qt.QShortcut(qt.QKeySequence(SHORTCUTS[name]), window)
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
        has_video = connected and self.logic.session is not None
        has_result = has_video and self.logic.session.result is not None
        for button in (self.nextSampleButton, self.useVolumeButton, self.trainButton, self.stopTrainingButton):
            button.enabled = connected
        for button in (self.editButton, self.forgetFrameButton, self.segmentRestButton, self.segmentAutoButton,
                       self.submitButton, self.markEdButton, self.markEsButton):
            button.enabled = has_video
        self.saveReportButton.enabled = has_result

    # ------------------------------------------------------------------ server
    def onConnect(self) -> None:
        with self._doing("Connecting"):
            url = self.serverUrlEdit.text.strip()
            info = self.logic.connect(url, self.tokenEdit.text.strip() or None)
            qt.QSettings().setValue(SETTINGS_URL, url)
            strategies = list((info.get("strategies") or {}).keys()) or ["random", "first"]
            self.strategyCombo.clear()
            self.strategyCombo.addItems(strategies)
            self.serverInfoLabel.text = self.logic.describe_server(info)
            self._say(f"Connected to {url}.")
            self.onTrainingTimer()

    # ------------------------------------------------------------------ video
    def onNextSample(self) -> None:
        with self._doing("Fetching the next video"):
            session = self.logic.next_sample(self.strategyCombo.currentText)
            if session is None:
                self._say("Every video on the server is annotated: there is nothing left to suggest.")
                return
            self._show_session()
            suggested = ", ".join(str(f) for f in session.suggested_frames) or "none"
            self._say(f"Video {session.image_id}: draw on the suggested frames ({suggested}), then segment the rest.")

    def onUseVolume(self) -> None:
        node = self.volumeSelector.currentNode()
        if node is None:
            self._say("Choose a video loaded in Slicer first (a volume or a DICOM cine).", error=True)
            return
        with self._doing("Sending the video to the server"):
            session = self.logic.use_node(node, self.calibratedCheck.checked)
            self._show_session()
            self._say(f"Video {session.image_id} is on the server: draw two or three frames, then segment the rest.")

    def onCalibratedToggled(self, calibrated: bool) -> None:
        if self.logic and self.logic.session is not None:
            self.logic.set_calibrated(calibrated)
            self._refresh_results()

    def _show_session(self) -> None:
        session = self.logic.session
        self.frameSlider.maximum = session.video.n_frames - 1
        self.frameSlider.value = session.suggested_frames[0] if session.suggested_frames else 0
        self.calibratedCheck.checked = session.video.spacing is not None
        self.removeObservers(self.onSegmentationModified)
        self.addObserver(self.logic.segmentation_node.GetSegmentation(), slicer.vtkSegmentation.SegmentModified,
                         self.onSegmentationModified)
        self._refresh_annotations()
        self._refresh_results()

    def onFrameSlider(self, value: float) -> None:
        if self.logic and self.logic.session is not None:
            self.logic.show_frame(int(round(value)))
            self._refresh_video_info()

    def onNextFrame(self) -> None:
        self.frameSlider.value = min(self.frameSlider.value + 1, self.frameSlider.maximum)

    def onPreviousFrame(self) -> None:
        self.frameSlider.value = max(self.frameSlider.value - 1, 0)

    def onMarkEd(self) -> None:
        if self.logic and self.logic.session is not None:
            with self._doing("Marking ED"):
                self.logic.session.mark_ed(int(self.frameSlider.value))
                self._refresh_video_info()
                self._refresh_results()

    def onMarkEs(self) -> None:
        if self.logic and self.logic.session is not None:
            with self._doing("Marking ES"):
                self.logic.session.mark_es(int(self.frameSlider.value))
                self._refresh_video_info()
                self._refresh_results()

    def _refresh_video_info(self) -> None:
        session = self.logic.session
        if session is None:
            self.videoInfoLabel.text = ""
            return
        frame = int(self.frameSlider.value)
        marks = ", ".join(f"{name} {value}" for name, value in (("ED", session.ed), ("ES", session.es))
                          if value is not None) or "not marked"
        spacing = (f"{session.video.spacing[0]:.3g} x {session.video.spacing[1]:.3g} mm"
                   if session.video.spacing else "unknown (no volumes)")
        self.videoInfoLabel.text = (
            f"{session.image_id} ({session.view}): frame {frame} of 0-{session.video.n_frames - 1}"
            f"{' (annotated)' if session.annotations.is_annotated(frame) else ''}; ED/ES: {marks}; "
            f"suggested frames: {', '.join(str(f) for f in session.suggested_frames) or 'none'}; "
            f"pixel spacing: {spacing}")

    # ------------------------------------------------------------------ annotation
    def onEditSegments(self) -> None:
        with self._doing("Opening the Segment Editor"):
            self.logic.open_segment_editor()

    def onSegmentationModified(self, caller: Any = None, event: Any = None) -> None:
        if not self.logic.importing:
            self.annotationTimer.start()

    def onAnnotationTimer(self) -> None:
        with self._doing("Updating the annotated frames"):
            self.logic.refresh_annotations()
            self._refresh_annotations()
            self.statusLabel.text = ""

    def onAnnotatedFrameChosen(self, item: Any) -> None:
        self.frameSlider.value = int(item.data(qt.Qt.UserRole))

    def onForgetFrame(self) -> None:
        with self._doing("Forgetting the frame"):
            self.logic.session.annotations.remove_frame(int(self.frameSlider.value))
            self._refresh_annotations()

    def _refresh_annotations(self) -> None:
        self.annotatedList.clear()
        session = self.logic.session
        if session is None:
            return
        by_value = session.annotations.frames_by_segment()
        for frame in session.annotations.annotated_frames:
            names = [SEGMENT_NAMES.get(value, f"label {value}") for value, frames in sorted(by_value.items())
                     if frame in frames]
            item = qt.QListWidgetItem(f"frame {frame}: {', '.join(names)}")
            item.setData(qt.Qt.UserRole, frame)
            self.annotatedList.addItem(item)
        self._refresh_video_info()

    def onSegmentRest(self) -> None:
        with self._doing("Segmenting the rest"):
            self.logic.refresh_annotations()
            self.logic.segment_the_rest(self.adaptCombo.currentText)
            info = self.logic.session.result_info
            self._refresh_annotations()
            self._refresh_results()
            self._say(f"Segmented {info.get('frames', '?')} frames in {info.get('seconds', '?')} s from frames "
                      f"{info.get('annotated_frames')}{' (adapted to this video)' if info.get('adapted') else ''}.")

    def onSegmentAutomatically(self) -> None:
        with self._doing("Segmenting"):
            self.logic.segment_automatically()
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
        self.logic.update_chart()

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
            summary = self.logic.save_report(folder)
            self._say(f"Report written: {summary['report_json']}")

    # ------------------------------------------------------------------ submit and train
    def onSubmit(self) -> None:
        with self._doing("Submitting the annotation"):
            self.logic.refresh_annotations()
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
    return text, (100 if status == "DONE" else percent), running


# ---------------------------------------------------------------------------------------------- logic
class EchoForgeLogic(ScriptedLoadableModuleLogic):
    """Slicer glue: server calls through EchoForgeLib, and conversion between Slicer nodes and its arrays."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.client: Optional[EchoForgeClient] = None
        self.server_labels: dict[str, int] = {name: value for value, name in SEGMENT_NAMES.items()}
        self.sessions: dict[str, VideoSession] = {}
        self.session: Optional[VideoSession] = None
        self.volume_node: Any = None
        self.segmentation_node: Any = None
        self.importing = False
        self._nodes: dict[str, tuple[Any, Any]] = {}
        self._chart_nodes: dict[str, Any] = {}

    # ------------------------------------------------------------------ server
    def connect(self, url: str, token: Optional[str] = None) -> dict[str, Any]:
        client = EchoForgeClient(url, token=token)
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
        if self.session is None:
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

    def use_node(self, node: Any, calibrated: bool) -> VideoSession:
        """Send a video loaded in Slicer (volume or DICOM cine sequence) to the server and open it."""
        client = self._require_client()
        video = video_from_node(node, calibrated)
        image_id = safe_image_id(node.GetName())
        image_id = client.upload_image(video, image_id)
        return self.open_video(image_id, video, None)

    def open_video(self, image_id: str, video: Volume, sample: Optional[dict[str, Any]]) -> VideoSession:
        """Show ``video`` as a volume with its segmentation, and start (or resume) its session."""
        session = self.sessions.get(image_id)
        if session is None or session.video.frames.shape != video.frames.shape:
            session = VideoSession(image_id, video, suggested=sample)
            self.sessions[image_id] = session
        self.session = session
        nodes = self._nodes.get(image_id)
        if nodes is None or any(slicer.mrmlScene.GetNodeByID(node.GetID()) is None for node in nodes):
            self.volume_node = volume_node_from_video(video, image_id)
            self.segmentation_node = self._new_segmentation(image_id)
            self._nodes[image_id] = (self.volume_node, self.segmentation_node)
            if session.result is not None:
                self.show_labels(session.result)
        else:
            self.volume_node, self.segmentation_node = nodes
        slicer.util.setSliceViewerLayers(background=self.volume_node, fit=True)
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        red.RotateToVolumePlane(self.volume_node)
        return session

    def set_calibrated(self, calibrated: bool) -> None:
        session = self._require_session()
        if calibrated and session.video.spacing is None:
            session.video = Volume(session.video.frames, session.video.layout, session.video.layout.spacing,
                                   session.video.frame_time_ms, session.video.annotated_frames)
        elif not calibrated:
            session.video = session.video.without_spacing()

    def show_frame(self, frame: int) -> None:
        """Put the red view on ``frame`` (frames are the volume's third axis)."""
        if self.volume_node is None:
            return
        shape = self._require_session().video.layout.shape
        ijk_to_ras = vtk.vtkMatrix4x4()
        self.volume_node.GetIJKToRASMatrix(ijk_to_ras)
        ras = ijk_to_ras.MultiplyPoint(((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0, float(frame), 1.0))
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        red.JumpSliceByOffsetting(ras[0], ras[1], ras[2])

    # ------------------------------------------------------------------ segments
    def _new_segmentation(self, image_id: str) -> Any:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{image_id} segmentation")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
        for value, name in sorted(SEGMENT_NAMES.items()):
            color = tuple(c / 255.0 for c in COLORS[value])
            node.GetSegmentation().AddEmptySegment(name, name, color)
        return node

    def segment_ids(self) -> list[tuple[str, str]]:
        """(segment id, segment name) of every segment of the current segmentation."""
        segmentation = self.segmentation_node.GetSegmentation()
        ids = []
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            ids.append((segment_id, segmentation.GetSegment(segment_id).GetName()))
        return ids

    def segment_values(self) -> dict[str, int]:
        """Segment id → label value: the server's labels by name; other segments get 4, 5, ...

        Unknown segments are sent with values the server does not know, so that it refuses them
        and says why, instead of them being dropped silently.
        """
        known = label_values_by_name(self.server_labels)
        values, extra = {}, max(SEGMENT_NAMES) + 1
        for segment_id, name in self.segment_ids():
            value = known.get(name.strip().lower())
            if value is None:
                value, extra = extra, extra + 1
            values[segment_id] = value
        return values

    def unknown_segment_names(self) -> list[str]:
        known = label_values_by_name(self.server_labels)
        return [name for segment_id, name in self.segment_ids() if name.strip().lower() not in known
                and self._segment_has_content(segment_id)]

    def _segment_has_content(self, segment_id: str) -> bool:
        return bool(slicer.util.arrayFromSegmentBinaryLabelmap(self.segmentation_node, segment_id,
                                                                self.volume_node).any())

    def labels_from_segments(self) -> np.ndarray:
        """The segmentation as T×H×W labels on the video's frames (later segments win where they overlap)."""
        session = self._require_session()
        labels = np.zeros(session.video.layout.shape[::-1], dtype=np.uint8)  # [k, j, i], like arrayFromVolume
        for segment_id, value in self.segment_values().items():
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(self.segmentation_node, segment_id, self.volume_node)
            labels[np.asarray(mask) > 0] = value
        return session.video.layout.to_frames(np.transpose(labels, (2, 1, 0)))

    def show_labels(self, labels: np.ndarray) -> None:
        """Replace the segments' content by T×H×W ``labels`` (a server result)."""
        session = self._require_session()
        kji = session.video.layout.to_slicer_array(np.asarray(labels, dtype=np.uint8))
        values = self.segment_values()
        self.importing = True
        try:
            for segment_id, value in values.items():
                mask = (kji == value).astype(np.uint8)
                slicer.util.updateSegmentBinaryLabelmapFromArray(mask, self.segmentation_node, segment_id,
                                                                 self.volume_node)
        finally:
            self.importing = False

    def refresh_annotations(self) -> list[int]:
        """Record the frames the clinician drew or corrected since the last server result."""
        session = self._require_session()
        return session.annotations.update(self.labels_from_segments(), baseline=session.result)

    def open_segment_editor(self) -> None:
        self._require_session()
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(self.segmentation_node)
        if hasattr(editor, "setSourceVolumeNode"):
            editor.setSourceVolumeNode(self.volume_node)
        else:  # Slicer before 5.2
            editor.setMasterVolumeNode(self.volume_node)

    # ------------------------------------------------------------------ server loop
    def segment_the_rest(self, adapt: str = "auto") -> np.ndarray:
        labels = self._require_session().segment_the_rest(self._require_client(), adapt)
        self.show_labels(labels)
        return labels

    def segment_automatically(self) -> np.ndarray:
        labels = self._require_session().segment_automatically(self._require_client())
        self.show_labels(labels)
        return labels

    def submit(self) -> dict[str, Any]:
        return self._require_session().submit(self._require_client())

    # ------------------------------------------------------------------ results
    def measurement_rows(self) -> list[dict[str, Any]]:
        return measurement_rows(list(self.sessions.values()))

    def set_reference_ef(self, video: str, value: Optional[float]) -> None:
        if video in self.sessions:
            self.sessions[video].reference_ef = value

    def save_report(self, folder: str) -> dict[str, Any]:
        return write_study_report(list(self.sessions.values()), folder)

    def update_chart(self) -> None:
        """The LV volume (or area) curve of the current video with ED/ES marked, in a Slicer plot view."""
        session = self.session
        if session is None or session.result is None:
            return
        m = session.measurements()
        volumes = m.get("volumes_ml") or []
        if volumes and all(v is not None for v in volumes):
            values, title = volumes, "LV volume (ml)"
        else:
            values, title = m.get("areas") or [], f"LV area ({m.get('area_unit', 'px²')})"
        if not values:
            return
        frames = np.arange(len(values), dtype=np.float64)
        curve = self._chart_node("vtkMRMLTableNode", "EchoForge LV curve")
        slicer.util.updateTableFromArray(curve, np.column_stack([frames, np.asarray(values, dtype=np.float64)]),
                                         ["frame", title])
        marked = [(f, values[f]) for f in (m.get("ed"), m.get("es")) if f is not None]
        marks = self._chart_node("vtkMRMLTableNode", "EchoForge ED ES")
        slicer.util.updateTableFromArray(marks, np.asarray(marked, dtype=np.float64).reshape(-1, 2),
                                         ["frame", "ED, ES"])
        line = self._series("EchoForge LV", curve, "frame", title, (0.12, 0.47, 0.71), True)
        dots = self._series("EchoForge ED/ES", marks, "frame", "ED, ES", (0.84, 0.15, 0.16), False)
        chart = self._chart_node("vtkMRMLPlotChartNode", "EchoForge chart")
        chart.RemoveAllPlotSeriesNodeIDs()
        chart.AddAndObservePlotSeriesNodeID(line.GetID())
        chart.AddAndObservePlotSeriesNodeID(dots.GetID())
        chart.SetTitle(f"{session.image_id}: ED frame {m.get('ed')}, ES frame {m.get('es')}, EF "
                       f"{format_cell(m.get('ef'))} %")
        chart.SetXAxisTitle("frame")
        chart.SetYAxisTitle(title)
        slicer.modules.plots.logic().ShowChartInLayout(chart)

    def _chart_node(self, class_name: str, name: str) -> Any:
        node = self._chart_nodes.get(name)
        if node is None or slicer.mrmlScene.GetNodeByID(node.GetID()) is None:
            node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
            self._chart_nodes[name] = node
        return node

    def _series(self, name: str, table: Any, x: str, y: str, color: tuple[float, float, float], line: bool) -> Any:
        series = self._chart_node("vtkMRMLPlotSeriesNode", name)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x)
        series.SetYColumnName(y)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid if line
                            else slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        series.SetMarkerSize(5 if line else 12)
        series.SetColor(*color)
        return series


# ---------------------------------------------------------------------------------------------- node conversion
def safe_image_id(name: str) -> str:
    """A datastore id from a node name: letters, digits, ``-`` and ``_`` only."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)).strip("_")
    return cleaned or "slicer_video"


def ijk_to_ras_array(node: Any) -> np.ndarray:
    """A volume node's IJK→RAS matrix as a 4×4 numpy array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def video_from_node(node: Any, calibrated: bool) -> Volume:
    """T×H×W frames of a scalar volume (frames along its third axis) or of a DICOM cine's sequence browser."""
    if node.IsA("vtkMRMLSequenceBrowserNode"):
        primary = (node.GetPrimarySequenceNode() if hasattr(node, "GetPrimarySequenceNode")
                   else node.GetMasterSequenceNode())  # renamed in Slicer 5.4
        return video_from_sequence(primary, calibrated)
    array = slicer.util.arrayFromVolume(node)
    if array.ndim == 4:  # an RGB (vector) volume: grey levels
        array = array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return volume_from_slicer(array, ijk_to_ras_array(node), calibrated)


def video_from_sequence(sequence: Any, calibrated: bool) -> Volume:
    """Stack the single-frame volumes of a sequence (DICOM cine) along the frame axis."""
    count = sequence.GetNumberOfDataNodes()
    if count == 0:
        raise AnnotationError("The sequence holds no frame.")
    frames, geometry = [], None
    for index in range(count):
        item = sequence.GetNthDataNode(index)
        array = np.asarray(slicer.util.arrayFromVolume(item))
        if array.ndim == 4:
            array = array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if array.shape[0] != 1:
            raise AnnotationError(f"Frame {index} of the sequence is a 3-D volume ({array.shape}); EchoForge "
                                  "segments 2-D cine loops.")
        frames.append(array[0])
        geometry = geometry if geometry is not None else ijk_to_ras_array(item)
    kji = np.stack(frames)  # the frames become the k axis of one volume
    video = volume_from_slicer(kji, geometry, calibrated)
    time_step = _sequence_frame_time_ms(sequence)
    return Volume(video.frames, video.layout, video.spacing, time_step)


def _sequence_frame_time_ms(sequence: Any) -> Optional[float]:
    if sequence.GetNumberOfDataNodes() < 2:
        return None
    try:
        first, second = float(sequence.GetNthIndexValue(0)), float(sequence.GetNthIndexValue(1))
    except ValueError:
        return None
    unit = str(sequence.GetIndexUnit()).lower()
    step = second - first
    return step if unit == "ms" else step * 1000.0 if unit == "s" else None


def volume_node_from_video(video: Volume, name: str) -> Any:
    """A scalar volume node showing ``video`` on its own geometry (what the server has)."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, video.layout.to_slicer_array(video.grey_uint8()))
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(video.layout.ijk_to_ras[r, c]))
    node.SetIJKToRASMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    return node


# ---------------------------------------------------------------------------------------------- tests in Slicer
class EchoForgeTest(ScriptedLoadableModuleTest):
    """Runs inside 3D Slicer (Reload & Test, or ctest): nodes ↔ arrays, annotation tracking, measurements.

    Set ``ECHOFORGE_SERVER_URL`` to a running server to also run the whole loop against it.
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_video_round_trip_through_a_volume_node()
        self.setUp()
        self.test_drawn_frames_are_tracked_and_results_shown()
        self.setUp()
        self.test_measurements_chart_and_report()
        self.setUp()
        self.test_loop_against_a_server()

    @staticmethod
    def _synthetic_video(n_frames: int = 12, size: tuple[int, int] = (64, 80)) -> tuple[Volume, np.ndarray]:
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
        return volume_from_frames(frames, (0.4, 0.3), 33.3), labels

    def test_video_round_trip_through_a_volume_node(self) -> None:
        self.delayDisplay("Video to volume node and back")
        video, _ = self._synthetic_video()
        node = volume_node_from_video(video, "echoforge_test")
        back = video_from_node(node, calibrated=True)
        np.testing.assert_array_equal(back.frames, video.frames)
        self.assertEqual(back.spacing, video.spacing)

    def test_drawn_frames_are_tracked_and_results_shown(self) -> None:
        self.delayDisplay("Drawn frames tracked, results shown")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        session = logic.open_video("echoforge_test", video, {"suggested_frames": [0, 6]})
        drawn = np.zeros_like(labels)
        drawn[[0, 6]] = labels[[0, 6]]
        logic.show_labels(drawn)  # as if painted in the Segment Editor
        self.assertEqual(logic.refresh_annotations(), [0, 6])
        np.testing.assert_array_equal(logic.labels_from_segments(), drawn)
        session.result = labels  # as if the server answered
        logic.show_labels(labels)
        self.assertEqual(logic.refresh_annotations(), [])
        self.assertEqual(session.annotations.annotated_frames, [0, 6])

    def test_measurements_chart_and_report(self) -> None:
        self.delayDisplay("Measurements, chart and report")
        logic = EchoForgeLogic()
        video, labels = self._synthetic_video()
        session = logic.open_video("echoforge_test_4CH", video, None)
        session.result = labels
        m = session.measurements()
        self.assertTrue(m["available"])
        self.assertGreater(m["edv_disks_ml"], m["esv_disks_ml"])
        logic.update_chart()
        self.assertEqual(len(logic.measurement_rows()), 1)
        with tempfile.TemporaryDirectory() as folder:
            summary = logic.save_report(folder)
            self.assertTrue(os.path.exists(summary["report_json"]))

    def test_loop_against_a_server(self) -> None:
        url = os.environ.get("ECHOFORGE_SERVER_URL")
        if not url:
            self.delayDisplay("ECHOFORGE_SERVER_URL is not set: the loop against a server is not run")
            return
        self.delayDisplay(f"Whole loop against {url}")
        logic = EchoForgeLogic()
        logic.connect(url)
        session = logic.next_sample("random")
        self.assertIsNotNone(session)
        result = logic.segment_automatically()
        drawn = np.zeros_like(result)
        drawn[0] = result[0]
        logic.show_labels(drawn)
        session.result = None
        logic.refresh_annotations()
        labels = logic.segment_the_rest("off")
        np.testing.assert_array_equal(labels[0], drawn[0])
        self.delayDisplay("Loop against the server passed")
