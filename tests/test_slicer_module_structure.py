"""The Slicer module file ``EchoForge.py`` loaded with stand-in modules for ``slicer``, ``qt``, ``ctk`` and ``vtk``.

3D Slicer cannot be installed here, so these tests do NOT test Slicer or how the module behaves in
it (``EchoForgeTest`` inside ``EchoForge.py`` does that, run in Slicer). They catch what can be
caught without it: import errors, Python 3.9 syntax, the module description, widgets built and
every button/shortcut wired to an existing handler, error messages reaching the status line, the
extension's CMake file listing every logic file, and the node ↔ array glue (and ``EchoForgeTest``'s
own methods) run against a small in-memory stand-in scene that follows Slicer's array conventions
([k, j, i] arrays, IJK→RAS) — conventions the stand-in assumes, which only Slicer can confirm.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
import types
import unittest
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server import free_port

EXTENSION = Path(__file__).resolve().parents[1] / "slicer_extension"
MODULE_DIR = EXTENSION / "EchoForge"
MODULE_FILE = MODULE_DIR / "EchoForge.py"
LIB_DIR = MODULE_DIR / "EchoForgeLib"
CORE_DIR = MODULE_DIR / "EchoForgeCore"


# ---------------------------------------------------------------------- stand-ins
class StandIn:
    """Anything: every attribute, call, item and operator gives another stand-in; ``connect`` is recorded."""

    connections: list[tuple[str, str, Any]] = []

    def __init__(self, name: str = "standin", *args: Any, **kwargs: Any):
        self._name = name

    def __getattr__(self, name: str) -> StandIn:
        if name.startswith("__"):
            raise AttributeError(name)
        return StandIn(f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> StandIn:
        return StandIn(f"{self._name}()")

    def __or__(self, other: Any) -> StandIn:
        return StandIn(f"{self._name}|")

    def __iter__(self):
        return iter(())

    def __str__(self) -> str:
        return self._name

    def connect(self, signal: str, slot: Any) -> None:
        StandIn.connections.append((self._name, signal, slot))


class StandInModule(types.ModuleType):
    """A module whose every attribute is a stand-in (``qt.QPushButton(...)``, ``qt.Qt.UserRole``, ...)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return StandIn(f"{self.__name__}.{name}")


class ScriptedLoadableModule:
    def __init__(self, parent: Any):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent: Any = None):
        self.parent = parent

    def setup(self) -> None:
        self.layout = StandIn("layout")


class ScriptedLoadableModuleLogic:
    def __init__(self, parent: Any = None):
        pass


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message: str, msec: int = 100) -> None:  # noqa: N802 (Slicer's name)
        pass


class VTKObservationMixin:
    def __init__(self) -> None:
        self.observations: list[tuple[Any, Any, Any]] = []

    def addObserver(self, obj: Any, event: Any, method: Any) -> None:  # noqa: N802 (Slicer's name)
        self.observations.append((obj, event, method))

    def removeObservers(self, method: Any = None) -> None:  # noqa: N802 (Slicer's name)
        self.observations = [o for o in self.observations if method is not None and o[2] != method]


# a small in-memory scene with Slicer's conventions, for the node glue
class Matrix4x4:
    def __init__(self) -> None:
        self.values = np.eye(4)

    def SetElement(self, r: int, c: int, v: float) -> None:  # noqa: N802
        self.values[r, c] = v

    def GetElement(self, r: int, c: int) -> float:  # noqa: N802
        return float(self.values[r, c])

    def DeepCopy(self, other: Matrix4x4) -> None:  # noqa: N802
        self.values = other.values.copy()

    def MultiplyPoint(self, point: tuple[float, ...]) -> tuple[float, ...]:  # noqa: N802
        return tuple(self.values @ np.asarray(point, dtype=float))


class Node:
    count = 0

    def __init__(self, class_name: str, name: str):
        Node.count += 1
        self.class_name, self.name, self.id = class_name, name, f"{class_name}{Node.count}"
        self.array: np.ndarray | None = None
        self.matrix = Matrix4x4()
        self.segments: dict[str, list[Any]] = {}

    def GetID(self) -> str:  # noqa: N802
        return self.id

    def GetName(self) -> str:  # noqa: N802
        return self.name

    def IsA(self, class_name: str) -> bool:  # noqa: N802
        return self.class_name == class_name

    def SetIJKToRASMatrix(self, matrix: Matrix4x4) -> None:  # noqa: N802
        self.matrix.DeepCopy(matrix)

    def GetIJKToRASMatrix(self, matrix: Matrix4x4) -> None:  # noqa: N802
        matrix.DeepCopy(self.matrix)

    def GetSegmentation(self) -> Node:  # noqa: N802
        return self

    def AddEmptySegment(self, segment_id: str, name: str, color: Any) -> str:  # noqa: N802
        self.segments[segment_id] = [name, None]
        return segment_id

    def GetNumberOfSegments(self) -> int:  # noqa: N802
        return len(self.segments)

    def GetNthSegmentID(self, index: int) -> str:  # noqa: N802
        return list(self.segments)[index]

    def GetSegment(self, segment_id: str) -> Any:  # noqa: N802
        name = self.segments[segment_id][0]
        return types.SimpleNamespace(GetName=lambda: name)

    def __getattr__(self, name: str) -> Any:  # display nodes, reference geometry, ...: accepted
        if name.startswith("__"):
            raise AttributeError(name)
        return StandIn(f"{self.name}.{name}")


class Scene:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def AddNewNodeByClass(self, class_name: str, name: str = "") -> Node:  # noqa: N802
        node = Node(class_name, name)
        self.nodes[node.id] = node
        return node

    def GetNodeByID(self, node_id: str) -> Node | None:  # noqa: N802
        return self.nodes.get(node_id)

    def Clear(self) -> None:  # noqa: N802
        self.nodes.clear()


def _slicer_util(scene: Scene) -> types.ModuleType:
    util = StandInModule("slicer.util")
    util.VTKObservationMixin = VTKObservationMixin

    def update_volume_from_array(node: Node, array: np.ndarray) -> None:
        node.array = np.array(array)

    def array_from_segment(segmentation: Node, segment_id: str, reference: Node) -> np.ndarray:
        mask = segmentation.segments[segment_id][1]
        return np.zeros(reference.array.shape, np.uint8) if mask is None else mask.copy()

    def update_segment(mask: np.ndarray, segmentation: Node, segment_id: str, reference: Node) -> None:
        assert mask.shape == reference.array.shape, (mask.shape, reference.array.shape)
        segmentation.segments[segment_id][1] = np.array(mask, dtype=np.uint8)

    util.updateVolumeFromArray = update_volume_from_array
    util.arrayFromVolume = lambda node: node.array
    util.arrayFromSegmentBinaryLabelmap = array_from_segment
    util.updateSegmentBinaryLabelmapFromArray = update_segment
    return util


@pytest.fixture
def module(monkeypatch):
    """``EchoForge.py`` imported with the stand-ins in ``sys.modules``."""
    StandIn.connections = []
    scene = Scene()
    slicer = StandInModule("slicer")
    slicer.mrmlScene = scene
    slicer.util = _slicer_util(scene)
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(scripted, cls.__name__, cls)
    slicer.ScriptedLoadableModule = scripted
    vtk = StandInModule("vtk")
    vtk.vtkMatrix4x4 = Matrix4x4
    for name, value in (("slicer", slicer), ("slicer.util", slicer.util), ("slicer.ScriptedLoadableModule", scripted),
                        ("qt", StandInModule("qt")), ("ctk", StandInModule("ctk")), ("vtk", vtk)):
        monkeypatch.setitem(sys.modules, name, value)
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    for name in [m for m in sys.modules if m == "EchoForgeLib" or m.startswith("EchoForgeLib.")]:
        monkeypatch.delitem(sys.modules, name)
    spec = importlib.util.spec_from_file_location("EchoForge", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


# ---------------------------------------------------------------------- the tests
def test_slicer_module_structure_with_standin_modules(module):
    parent = types.SimpleNamespace()
    module.EchoForge(parent)
    assert parent.title == "EchoForge" and parent.categories == ["Ultrasound"]
    assert "Segment the rest" in parent.helpText and parent.acknowledgementText
    for shortcut in module.SHORTCUTS.values():
        assert shortcut in parent.helpText
    assert issubclass(module.EchoForgeTest, unittest.TestCase)
    tests = [name for name in dir(module.EchoForgeTest) if name.startswith("test_")]
    assert tests and hasattr(module.EchoForgeTest, "runTest")
    for name in tests:  # unittest calls them without arguments
        assert list(inspect.signature(getattr(module.EchoForgeTest, name)).parameters) == ["self"], name


def test_slicer_widget_wiring_with_standin_modules(module):
    widget = module.EchoForgeWidget()
    widget.setup()
    handlers = {name for name, _ in inspect.getmembers(widget, inspect.ismethod) if name.startswith("on")}
    slots = [slot for _, _, slot in StandIn.connections] + [method for _, _, method in widget.observations]
    assert all(getattr(slot, "__self__", None) is widget for slot in slots)
    wired = {slot.__name__ for slot in slots}
    per_video = {"onSegmentationModified"}  # observes the segmentation of the video being shown
    assert wired == handlers - per_video, f"not wired: {handlers - per_video - wired}; unknown: {wired - handlers}"
    shortcuts = [slot.__name__ for _, signal, slot in StandIn.connections if signal == "activated()"]
    assert sorted(shortcuts) == ["onMarkEd", "onMarkEs", "onNextFrame", "onPreviousFrame"]

    from EchoForgeLib.volume import volume_from_frames

    widget.logic.open_video("patient1_4CH", volume_from_frames(np.zeros((3, 8, 8), np.uint8), (0.3, 0.3)), None)
    widget._show_session()
    assert [method.__name__ for _, _, method in widget.observations] == ["onSegmentationModified"]
    widget.cleanup()


def test_slicer_widget_reports_failures_in_plain_words_with_standin_modules(module):
    widget = module.EchoForgeWidget()
    widget.setup()
    widget.serverUrlEdit.text = f"http://127.0.0.1:{free_port()}"
    widget.tokenEdit.text = ""
    widget.onConnect()
    assert "connection was refused" in widget.statusLabel.text and widget.logic.client is None
    widget.onSegmentRest()
    assert "Load a video first" in widget.statusLabel.text
    assert module.describe_training({"status": None})[2] is False
    text, percent, running = module.describe_training({"status": "RUNNING", "epoch": 2, "total_epochs": 8,
                                                       "best_metric": 0.5})
    assert running and percent == 25 and "epoch 2 of 8" in text
    assert module.format_cell(float("nan")) == "-" and module.format_cell(41.26) == "41.3"


def test_slicer_node_glue_with_standin_scene(module):
    """Video → volume node → video, and labels → segments → labels, on an oblique-free but transposed geometry."""
    from EchoForgeCore.volume import frame_layout
    from EchoForgeLib.volume import Volume

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 20, 30), dtype=np.uint8)  # T×H×W
    labels = rng.integers(0, 4, frames.shape, dtype=np.uint8)
    ijk_to_ras = np.diag([-0.3, -0.4, 1.0, 1.0])  # SimpleITK-like: axis i runs along the columns
    layout = frame_layout((30, 20, 6), ijk_to_ras)
    video = Volume(frames, layout, layout.spacing)
    logic = module.EchoForgeLogic()
    session = logic.open_video("patient7_2CH", video, {"suggested_frames": [1, 4]})
    assert logic.volume_node.array.shape == (6, 20, 30)  # [k, j, i] as Slicer stores it
    back = module.video_from_node(logic.volume_node, calibrated=True)
    np.testing.assert_array_equal(back.frames, frames)
    assert back.spacing == (0.4, 0.3) and module.video_from_node(logic.volume_node, False).spacing is None

    drawn = np.zeros_like(labels)
    drawn[[1, 4]] = labels[[1, 4]]
    logic.show_labels(drawn)
    assert logic.refresh_annotations() == [1, 4] and session.suggested_frames == [1, 4]
    np.testing.assert_array_equal(logic.labels_from_segments(), drawn)
    session.result = labels
    logic.show_labels(labels)
    assert logic.refresh_annotations() == [] and session.annotations.annotated_frames == [1, 4]

    segment = logic.segmentation_node.AddEmptySegment("RV", "Right ventricle", (0, 1, 0))
    mask = np.zeros((6, 20, 30), np.uint8)
    mask[2, 5:8, 5:9] = 1
    logic.segmentation_node.segments[segment][1] = mask
    assert logic.segment_values()[segment] == 4 and logic.unknown_segment_names() == ["Right ventricle"]
    assert logic.refresh_annotations() == [2] and session.annotations.unknown_values() == {4}


def test_slicer_module_own_tests_run_against_the_standin_scene(module, monkeypatch):
    """EchoForgeTest's methods (meant for Slicer) run here against the stand-ins: no Python error in them."""
    monkeypatch.delenv("ECHOFORGE_SERVER_URL", raising=False)
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(module.EchoForgeTest).run(result)
    assert result.testsRun == 4 and result.wasSuccessful(), result.errors + result.failures


def test_slicer_module_files_parse_as_python_3_9_and_the_logic_needs_no_slicer():
    files = [MODULE_FILE, *sorted(LIB_DIR.glob("*.py")), *sorted(CORE_DIR.glob("*.py"))]
    allowed = set(sys.stdlib_module_names) | {"numpy", "EchoForgeCore"}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
        if path.parent == MODULE_DIR:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


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
