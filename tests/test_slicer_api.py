"""``slicer_extension/Testing/check_slicer_api.py``: the module's (and the stand-ins') Slicer API against Slicer's source.

The real check needs Slicer's source: set ``SLICER_SOURCE_DIR`` to a checkout (several, for several
versions, separated by ``os.pathsep``), and ``CTK_SOURCE_DIR`` / ``VTK_SOURCE_DIR`` to CTK and VTK
checkouts; without ``SLICER_SOURCE_DIR`` that test is skipped. The checker itself is tested here
on a small source tree that imitates Slicer's layout, so that a checker that stops finding
mistakes is noticed without a checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "slicer_extension" / "Testing" / "check_slicer_api.py"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_slicer_api", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_slicer_api"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("check_slicer_api", None)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def small_slicer(tmp_path):
    """Two 'versions' of a tiny Slicer: a browser node, a widget with signals and properties, slicer.util."""
    versions = []
    for minor, event in ((0, "MasterRepresentationModified"), (8, "SourceRepresentationModified")):
        root = tmp_path / f"slicer5.{minor}"
        _write(root, "CMakeLists.txt", f'set(Slicer_VERSION_MAJOR "5")\nset(Slicer_VERSION_MINOR "{minor}")\n'
                                       'set(Slicer_VERSION_PATCH "0")\n')
        _write(root, "Libs/MRML/Core/vtkMRMLNode.h", """
class VTK_MRML_EXPORT vtkMRMLNode : public vtkObject
{
public:
  vtkTypeMacro(vtkMRMLNode, vtkObject);
  const char* GetID();  // an id, "like: this"
  vtkGetStringMacro(Name);
  vtkSetStringMacro(Name);
};""")
        _write(root, "Modules/Loadable/Sequences/MRML/vtkMRMLSequenceBrowserNode.h", """
class VTK_SLICER_SEQUENCES_MODULE_MRML_EXPORT vtkMRMLSequenceBrowserNode : public vtkMRMLNode
{
public:
  vtkGetMacro(SelectedItemNumber, int);
  vtkSetMacro(SelectedItemNumber, int);
  int SelectNextItem(int selectionIncrement = 1);
  vtkMRMLNode* GetProxyNode(vtkMRMLSequenceNode* sequenceNode);
  enum { ProxyNodeModifiedEvent = 21001 };
#ifndef __VTK_WRAP__
  void NotWrapped(std::vector<int>& values);
#endif
protected:
  void Hidden();
};""")
        _write(root, "Libs/vtkSegmentationCore/vtkSegmentation.h", f"""
class vtkSegmentationCore_EXPORT vtkSegmentation : public vtkObject
{{
public:
  enum {{ {event} = 62100, SegmentModified }};
}};""")
        _write(root, "Libs/MRML/Widgets/qMRMLNodeComboBox.h", """
class QMRML_WIDGETS_EXPORT qMRMLNodeComboBox : public QWidget
{
  Q_OBJECT
  Q_PROPERTY(QStringList nodeTypes READ nodeTypes WRITE setNodeTypes)
public:
  Q_INVOKABLE vtkMRMLNode* currentNode() const;
public slots:
  void setMRMLScene(vtkMRMLScene* scene);
signals:
  void currentNodeChanged(vtkMRMLNode* node);
  void currentNodeChanged(bool validNode);
};""")
        _write(root, "Base/Python/slicer/util.py", "def arrayFromVolume(volumeNode):\n    pass\n\n\n"
                                                   "def setSliceViewerLayers(background='keep-current', fit=False):\n"
                                                   "    pass\n")
        versions.append(root)
    return versions


def test_the_checker_finds_what_the_small_slicer_does_not_have(checker, small_slicer, tmp_path):
    module = tmp_path / "Bad.py"
    module.write_text('''
from __future__ import annotations
import qt
import slicer


def use(browser: slicer.vtkMRMLSequenceBrowserNode, box: slicer.qMRMLNodeComboBox) -> None:
    browser.SetSelectedItemNumber(3)                     # fine
    browser.SelectNextItem()                             # fine (default argument)
    browser.SetSelectedItemNumber(1, 2)                  # too many arguments
    browser.GetPrimarySequenceNode()                     # no such method, in any class
    browser.Hidden()                                     # protected
    browser.NotWrapped([1])                              # not wrapped for Python
    browser.GetProxyNode(None).GetName()                 # the proxy is a vtkMRMLNode: fine
    box.nodeTypes = ["vtkMRMLScalarVolumeNode"]          # a property
    box.nodeType = ["x"]                                 # not one
    box.connect("currentNodeChanged(vtkMRMLNode*)", use)  # a signal
    box.connect("currentNodeChanged(QString)", use)      # not one
    qt.QPushButton("x").connect("clicked(bool)", use)    # Qt's own, from the table
    slicer.util.arrayFromVolume(browser)
    slicer.util.setSliceViewerLayers(backgound=None)     # misspelt keyword
    x = browser.ProxyNodeModifiedEvent
    if hasattr(slicer.vtkSegmentation, "SourceRepresentationModified"):
        y = slicer.vtkSegmentation.SourceRepresentationModified
    else:
        y = slicer.vtkSegmentation.MasterRepresentationModified
    z = slicer.vtkSegmentation.SourceRepresentationModified  # unguarded: missing in 5.0
''')
    indexes = [checker.SourceIndex(root, None, None) for root in small_slicer]
    assert [i.version for i in indexes] == ["5.0.0", "5.8.0"]
    result = checker.check_module(module, indexes)
    failures = {(f["name"], f["line"]) for f in result["failures"]}
    lines = module.read_text().split("\n")

    def line_of(text: str) -> int:
        return next(n for n, line in enumerate(lines, 1) if text in line)

    expected = {("SetSelectedItemNumber", line_of("(1, 2)")), ("GetPrimarySequenceNode", line_of("GetPrimary")),
                ("Hidden", line_of("Hidden")), ("NotWrapped", line_of("NotWrapped")),
                ("nodeType", line_of("nodeType =")), ("currentNodeChanged(QString)", line_of("(QString)")),
                ("setSliceViewerLayers", line_of("backgound")),
                ("SourceRepresentationModified", line_of("unguarded"))}
    assert failures == expected, failures ^ expected
    guarded = {(g["name"], tuple(g["missing_in"])) for g in result["version_guarded"]}
    assert guarded == {("SourceRepresentationModified", ("5.0.0",)), ("MasterRepresentationModified", ("5.8.0",))}
    assert result["by_kind"]["signal"] == 3 and result["checked"] >= 17


def test_the_checker_finds_stand_ins_that_invent_api(checker, small_slicer, tmp_path):
    fakes = tmp_path / "fakes.py"
    fakes.write_text('''
class Browser:
    API = "vtkMRMLSequenceBrowserNode"

    def GetSelectedItemNumber(self): ...
    def GetName(self): ...
    def GetSelectedItem(self): ...
    def _helper(self): ...


class Combo:
    API = "qMRMLNodeComboBox"
    SIGNALS = ("currentNodeChanged(vtkMRMLNode*)", "nodeChanged(vtkMRMLNode*)")
    PROPERTIES = ("nodeTypes", "nodesTypes")
''')
    result = checker.check_fakes(fakes, [checker.SourceIndex(root, None, None) for root in small_slicer])
    assert result["checked"] == 7
    assert {(f["class"], f["name"]) for f in result["failures"]} == {
        ("Browser", "GetSelectedItem"), ("Combo", "nodeChanged(vtkMRMLNode*)"), ("Combo", "nodesTypes")}


@pytest.mark.skipif(not os.environ.get("SLICER_SOURCE_DIR"),
                    reason="set SLICER_SOURCE_DIR to a Slicer source checkout (several: os.pathsep-separated)")
def test_the_module_and_the_stand_ins_use_only_what_slicer_has(checker, tmp_path, capsys):
    args = [f"--slicer={path}" for path in os.environ["SLICER_SOURCE_DIR"].split(os.pathsep) if path]
    for option, variable in (("--ctk", "CTK_SOURCE_DIR"), ("--vtk", "VTK_SOURCE_DIR")):
        if os.environ.get(variable):
            args.append(f"{option}={os.environ[variable]}")
    out = tmp_path / "api.json"
    status = checker.main([*args, f"--fakes={ROOT / 'tests' / 'slicer_fakes.py'}", f"--json={out}"])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert status == 0, printed
    assert not result["module"]["failures"] and not result["fakes"]["failures"], printed
    assert result["module"]["checked"] > 300 and result["fakes"]["checked"] > 200, printed
