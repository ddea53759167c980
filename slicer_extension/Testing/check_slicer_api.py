#!/usr/bin/env python3
"""Check every Slicer, MRML, VTK, Qt and CTK name the EchoForge module uses against Slicer's own source.

Slicer cannot run everywhere the module is developed; this reads the module the way a careful
reviewer reads it against a Slicer checkout, and does it for every Slicer version given::

    python slicer_extension/Testing/check_slicer_api.py \\
        --slicer /src/Slicer-v5.0.3 --slicer /src/Slicer-v5.8.1 --slicer /src/Slicer \\
        --ctk /src/CTK --vtk /src/VTK [--fakes tests/slicer_fakes.py] [--json result.json]

What is checked (in ``EchoForge.py``; the logic layer imports no Slicer):

* ``slicer.util.f(...)``, ``slicer.ScriptedLoadableModule`` bases, Slicer's scripted modules
  (``ScreenCapture``, the Segment Editor's ``editor``): the function or method exists in the
  Python source, and takes the number of arguments (and keyword names) given;
* every method call, attribute and constant on an object whose class is known — from a
  constructor, ``AddNewNodeByClass("vtkMRML...")``, an annotation (``browser:
  slicer.vtkMRMLSequenceBrowserNode``), ``slicer.app``/``slicer.mrmlScene``/``slicer.modules.x``,
  or the C++ return type of the method that produced it: the name exists in that class or a base
  (C++ headers of Slicer, CTK and VTK, including ``vtkGetMacro``-style accessors, enums,
  ``Q_PROPERTY``, slots and ``Q_INVOKABLE``), with an argument count some overload accepts;
* every ``connect("signal(args)", ...)``: the signal exists in the receiver's class (``signals:``
  of Slicer/CTK headers; Qt's own classes from the table :data:`QT5` below);
* every property set on a Qt/CTK/Slicer widget (``slider.decimals = 0``): a ``Q_PROPERTY``;
* names that exist only in some versions must be in a branch of an ``if``/conditional
  expression that tests ``hasattr``/``getattr``;
* with ``--fakes``: every public name of the test stand-ins exists in the class it stands for.

What it cannot check: Qt's own classes are not in these checkouts, so :data:`QT5` lists the Qt 5
API the module uses, from Qt's documentation (signals are also looked up in Slicer's sources,
where PythonQt-style ``SIGNAL(...)``/``connect("...")`` strings corroborate them); whether VTK's
Python wrapping wraps a method (C++-only signatures are counted as present); argument *types*;
calls on objects whose class it cannot infer (counted and listed as unresolved; for CamelCase
names it still checks that some class has the name); behaviour (what an event does, when it
fires) — the behavioural stand-ins and ``EchoForgeTest`` do that.

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
MODULE = HERE.parent / "EchoForge" / "EchoForge.py"

# Qt 5 classes as the module uses them (from the Qt 5 reference documentation: qt.io/qt-5)
QT5: dict[str, dict[str, Any]] = {
    "QObject": {"base": None, "methods": {"connect", "disconnect", "blockSignals", "setParent", "parent",
                                          "deleteLater", "setObjectName", "findChild", "findChildren"},
                "signals": {"destroyed()", "objectNameChanged(QString)"}, "properties": {"objectName"}},
    "QCoreApplication": {"base": "QObject", "methods": {"processEvents", "exit", "quit"}},
    "QGuiApplication": {"base": "QCoreApplication", "methods": {"setOverrideCursor", "restoreOverrideCursor"}},
    "QApplication": {"base": "QGuiApplication", "methods": set()},
    "QWidget": {"base": "QObject", "methods": {"setStyleSheet", "setToolTip", "setEnabled", "setVisible", "show",
                                               "hide", "grab", "repaint", "update", "setLayout", "layout",
                                               "setWindowTitle", "setMinimumWidth", "setSizePolicy"},
                "properties": {"enabled", "toolTip", "visible", "styleSheet", "windowTitle", "minimumWidth"}},
    "QFrame": {"base": "QWidget"},
    "QMainWindow": {"base": "QWidget"},
    "QToolBar": {"base": "QWidget"},
    "QLayout": {"base": "QObject", "methods": {"addWidget", "setContentsMargins", "setSpacing"}},
    "QBoxLayout": {"base": "QLayout", "methods": {"addWidget", "addStretch", "addLayout", "addSpacing"}},
    "QHBoxLayout": {"base": "QBoxLayout"},
    "QVBoxLayout": {"base": "QBoxLayout"},
    "QFormLayout": {"base": "QLayout", "methods": {"addRow", "insertRow", "removeRow"}},
    "QLabel": {"base": "QFrame", "methods": {"setText", "text", "setWordWrap"},
               "properties": {"text", "wordWrap", "alignment"}},
    "QAbstractButton": {"base": "QWidget", "methods": {"setText", "setChecked", "click", "toggle", "isChecked"},
                        "signals": {"clicked()", "clicked(bool)", "toggled(bool)", "pressed()", "released()"},
                        "properties": {"text", "checkable", "checked", "icon"}},
    "QPushButton": {"base": "QAbstractButton"},
    "QCheckBox": {"base": "QAbstractButton", "signals": {"stateChanged(int)"}},
    "QLineEdit": {"base": "QWidget", "methods": {"setText", "text", "clear"},
                  "signals": {"textChanged(QString)", "textEdited(QString)", "editingFinished()", "returnPressed()"},
                  "properties": {"text", "echoMode", "placeholderText", "readOnly"},
                  "constants": {"Normal", "NoEcho", "Password", "PasswordEchoOnEdit"}},
    "QComboBox": {"base": "QWidget", "methods": {"addItem", "addItems", "clear", "setCurrentIndex", "findText",
                                                 "currentText", "count"},
                  "signals": {"currentIndexChanged(int)", "currentIndexChanged(QString)", "currentTextChanged(QString)",
                              "activated(int)"},
                  "properties": {"currentText", "currentIndex", "count"}},
    "QListWidget": {"base": "QWidget", "methods": {"addItem", "clear", "count", "item", "currentItem", "setCurrentRow"},
                    "signals": {"itemDoubleClicked(QListWidgetItem*)", "itemClicked(QListWidgetItem*)",
                                "currentRowChanged(int)", "itemSelectionChanged()"}},
    "QListWidgetItem": {"base": None, "methods": {"setData", "data", "text", "setText", "setToolTip", "setFlags"}},
    "QTableWidget": {"base": "QWidget", "methods": {"setColumnCount", "setRowCount", "rowCount", "columnCount",
                                                    "setHorizontalHeaderLabels", "setItem", "item",
                                                    "resizeColumnsToContents", "clear"},
                     "signals": {"cellChanged(int,int)", "cellClicked(int,int)", "cellDoubleClicked(int,int)",
                                 "itemChanged(QTableWidgetItem*)"}},
    "QTableWidgetItem": {"base": None, "methods": {"setFlags", "flags", "setToolTip", "text", "setText", "setData",
                                                   "data"}},
    "QProgressBar": {"base": "QWidget", "methods": {"setRange", "setValue", "reset", "value"},
                     "signals": {"valueChanged(int)"}, "properties": {"value", "minimum", "maximum", "format"}},
    "QTimer": {"base": "QObject", "methods": {"setSingleShot", "setInterval", "start", "stop", "isActive",
                                             "singleShot"},
               "signals": {"timeout()"}, "properties": {"singleShot", "interval", "active"}},
    "QShortcut": {"base": "QObject", "methods": {"setKey", "key", "setEnabled", "setContext"},
                  "signals": {"activated()", "activatedAmbiguously()"}, "properties": {"key", "enabled", "context"}},
    "QKeySequence": {"base": None, "methods": {"toString"}},
    "QSettings": {"base": "QObject", "methods": {"value", "setValue", "remove", "contains", "sync", "allKeys",
                                                "beginGroup", "endGroup"}},
    "QFileDialog": {"base": "QWidget", "methods": {"getExistingDirectory", "getOpenFileName", "getSaveFileName"}},
    "Qt": {"base": None, "constants": {"UserRole", "DisplayRole", "ToolTipRole", "WaitCursor", "ArrowCursor",
                                       "ItemIsSelectable", "ItemIsEnabled", "ItemIsEditable"}},
}

# slicer.modules.<name>: the module class and, for .logic(), its logic class
SLICER_MODULES = {"sequences": ("qSlicerSequencesModule", "vtkSlicerSequencesLogic"),
                  "segmentations": ("qSlicerSegmentationsModule", "vtkSlicerSegmentationsModuleLogic"),
                  "plots": ("qSlicerPlotsModule", "vtkSlicerPlotsLogic"),
                  "segmenteditor": ("SegmentEditor.py", None)}
# Slicer's Python: where the scripted bases, slicer.util and the scripted modules the module uses are
PYTHON_SOURCES = {"slicer.util": "Base/Python/slicer/util.py",
                  "slicer.ScriptedLoadableModule": "Base/Python/slicer/ScriptedLoadableModule.py",
                  "ScreenCapture": "Modules/Scripted/ScreenCapture/ScreenCapture.py",
                  "SegmentEditor.py": "Modules/Scripted/SegmentEditor/SegmentEditor.py"}
GLOBAL_OBJECTS = {"slicer.app": "qSlicerApplication", "slicer.mrmlScene": "vtkMRMLScene",
                  "slicer.dicomDatabase": "ctkDICOMDatabase"}
# classes of extensions that are not in Slicer's source (the module only tests for them with IsA)
EXTENSION_CLASSES = {"vtkMRMLMultiVolumeNode": "MultiVolumeExplorer extension"}


# =============================================================================================== C++ headers
@dataclass
class CppClass:
    name: str
    base: Optional[str]
    file: str
    methods: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # name → [(min, max, return)]
    signals: set[str] = field(default_factory=set)
    properties: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)


_CLASS = re.compile(r"\bclass\s+((?:\w+(?:\([^()]*\))?\s+)*\w+)\s*(?::\s*(?:public|protected|private)\s+([\w:]+)[^{;]*)?\{")
_MACRO_ACCESSOR = re.compile(r"\b(vtk|vtkMRML)(Get|Set|Boolean)(\w*)Macro\s*\(\s*(\w+)\s*(?:,\s*([\w:]+))?")
_PROPERTY = re.compile(r"Q_PROPERTY\s*\(\s*[\w:<>*&\s]+?\s+(\w+)\s+(?:READ|WRITE|MEMBER)")
_ENUM = re.compile(r"\benum\b[^{;]*\{([^}]*)\}")
_SECTION = re.compile(r"^\s*((?:public|protected|private)?\s*(?:slots|Q_SLOTS)|public|protected|private|signals|"
                      r"Q_SIGNALS)\s*:(?!:)", re.M)
# comments and string/char literals, whichever starts first (so "http://..." is a string, not a comment)
_LEXEMES = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_MACRO_CALL = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b\s*(?:\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\))?")
_KEYWORDS = {"virtual", "static", "inline", "explicit", "Q_INVOKABLE", "const", "unsigned", "signed", "struct",
             "typename", "friend", "VTK_NEWINSTANCE", "override", "VTK_SIZEHINT", "VTK_EXPECTS"}


def _strip(text: str) -> str:
    """Source without comments, string contents and sections hidden from VTK's Python wrapping."""
    text = _LEXEMES.sub(lambda m: '""' if m.group(0)[0] in "\"'" else " ", text)
    out, skip, depth = [], 0, 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#if"):
            depth += 1
            if skip == 0 and ("__VTK_WRAP__" in stripped and ("ifndef" in stripped or "!defined" in stripped)):
                skip = depth
        elif stripped.startswith("#endif"):
            if skip == depth:
                skip = 0
            depth -= 1
            continue
        elif stripped.startswith("#else") and skip == depth:
            skip = 0
            continue
        if skip == 0 and not stripped.startswith("#"):
            out.append(line)
    return "\n".join(out)


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    for k in range(start, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(text)


def _top_level(body: str) -> str:
    """The class body with nested braces (inline function bodies, nested types) emptied."""
    out, depth = [], 0
    for char in body:
        if char == "{":
            depth += 1
            out.append("{" if depth == 1 else "")
        elif char == "}":
            depth -= 1
            out.append(";" if depth == 0 else "")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _split_params(params: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in params:
        if char in "<([":
            depth += 1
        elif char in ">)]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip() and p.strip() != "void"]


def _normal_type(param: str) -> str:
    """``const QString& text = ""`` → ``QString``; ``vtkMRMLNode* node`` → ``vtkMRMLNode*``."""
    text = param.split("=")[0].replace("&", " ").strip()
    text = re.sub(r"\bconst\b", " ", text)
    tokens = re.findall(r"[\w:]+|\*", text)
    words = [t for t in tokens if t != "*"]
    if len(words) > 1 and tokens[-1] != "*":  # drop the parameter's name
        tokens = tokens[:-1]
    return "".join(tokens).replace("unsignedint", "uint")


def _declarations(text: str, class_name: str) -> Iterable[tuple[str, str, list[str], str]]:
    """(section, name, params, return type) of the function declarations in a top-level class body."""
    marks = [(m.start(), re.sub(r"\s+", " ", m.group(1)).strip()) for m in _SECTION.finditer(text)]
    position = 0
    for statement in re.split(r"[;{]", text):
        start = text.find(statement, position)
        position = start + len(statement)
        cleaned = _SECTION.sub(lambda m: " " * len(m.group(0)), statement)
        cleaned = _MACRO_CALL.sub(lambda m: " " * len(m.group(0)), cleaned)  # Q_PROPERTY(...), Q_OBJECT, VTK_...
        match = re.search(r"(~?\w+)\s*\(((?:[^()]|\([^()]*\))*)\)\s*(?:const)?\s*"
                          r"(?:(?:override|final|=\s*0|=\s*delete|=\s*default|VTK_\w+(?:\((?:[^()]|\([^()]*\))*\))?)\s*)*$",
                          cleaned, re.S)
        if not match:
            continue
        name = match.group(1)
        if name.startswith("~") or name == class_name or name.isupper() or name in ("operator", "Q_OBJECT"):
            continue
        where = start + match.start(1)
        section = next((label for mark, label in reversed(marks) if mark < where), "private")
        types = [t for t in re.findall(r"\w+", cleaned[:match.start(1)]) if t not in _KEYWORDS]
        yield section, name, _split_params(match.group(2)), (types[-1] if types else "")


def parse_header(path: Path, root: Path) -> list[CppClass]:
    try:
        text = _strip(path.read_text(errors="replace"))
    except OSError:
        return []
    classes = []
    for match in _CLASS.finditer(text):
        name, base = match.group(1).split()[-1], match.group(2)
        end = _matching_brace(text, match.end() - 1)
        raw = text[match.end():end]
        body = _top_level(raw)
        cls = CppClass(name, base.split("::")[-1] if base else None, str(path.relative_to(root)))
        for section, method, params, returns in _declarations(body, name):
            if "signals" in section.lower():
                cls.signals.add(f"{method}({','.join(_normal_type(p) for p in params)})")
                continue
            if not section.startswith("public"):  # Python sees public methods and public slots only
                continue
            required = sum("=" not in p for p in params)
            cls.methods.setdefault(method, []).append((required, len(params), returns))
        for verb, suffix, member, kind in ((m.group(2), m.group(3), m.group(4), m.group(5) or "")
                                           for m in _MACRO_ACCESSOR.finditer(body)):
            if verb == "Boolean":
                names = [(f"{member}On", 0, 0), (f"{member}Off", 0, 0)]
            elif verb == "Get":
                names = [(f"Get{member}", 0, 1 if "Vector" in suffix else 0)]
            else:
                names = [(f"Set{member}", 1, 4 if "Vector" in suffix else 1)]
            for method, low, high in names:  # vtkGetObjectMacro(Segmentation, vtkSegmentation) returns the type
                cls.methods.setdefault(method, []).append((low, high, kind.split("::")[-1] if verb == "Get" else ""))
        if re.search(r"\bvtkMRMLCopyContentMacro\b", body):
            cls.methods.setdefault("CopyContent", []).append((1, 2, ""))
        cls.properties |= set(_PROPERTY.findall(body))
        if re.search(r"\bvtk(?:Type|AbstractType)Macro\s*\(", body):  # the type methods VTK's macro declares
            for method, low, high in (("IsA", 1, 1), ("GetClassName", 0, 0), ("SafeDownCast", 1, 1),
                                      ("NewInstance", 0, 0), ("IsTypeOf", 1, 1)):
                cls.methods.setdefault(method, []).append((low, high, name if method == "NewInstance" else ""))
        for enum in _ENUM.findall(raw):
            cls.constants |= {item.split("=")[0].strip() for item in enum.split(",") if item.split("=")[0].strip()}
        if name == "vtkCommand":  # its events are generated by a macro
            cls.constants |= set(re.findall(r"_vtk_add_event\((\w+)\)", text))
        classes.append(cls)
    return classes


# =============================================================================================== Python sources
@dataclass
class PyFunction:
    required: int
    maximum: Optional[int]  # None: *args
    keywords: set[str]
    kwargs: bool


def _py_function(node: ast.FunctionDef, method: bool) -> PyFunction:
    args = node.args
    positional = [a.arg for a in args.posonlyargs + args.args][1 if method else 0:]
    required = len(positional) - len(args.defaults)
    return PyFunction(required, None if args.vararg else len(positional),
                      set(positional) | {a.arg for a in args.kwonlyargs}, args.kwarg is not None)


@dataclass
class PyModule:
    functions: dict[str, PyFunction] = field(default_factory=dict)
    classes: dict[str, dict[str, PyFunction]] = field(default_factory=dict)
    class_bases: dict[str, list[str]] = field(default_factory=dict)
    editor_class: Optional[str] = None


def parse_python(path: Path) -> PyModule:
    tree = ast.parse(path.read_text(errors="replace"))
    module = PyModule()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            module.functions[node.name] = _py_function(node, False)
        elif isinstance(node, ast.ClassDef):
            module.classes[node.name] = {item.name: _py_function(item, not _is_static(item))
                                         for item in node.body if isinstance(item, ast.FunctionDef)}
            module.class_bases[node.name] = [ast.unparse(b).split(".")[-1] for b in node.bases]
    for node in ast.walk(tree):  # SegmentEditor.py: self.editor = ...qMRMLSegmentEditorWidget()
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == "self.editor" for t in node.targets) and \
                isinstance(node.value, ast.Call):
            module.editor_class = ast.unparse(node.value.func).split(".")[-1]
    return module


def _is_static(node: ast.FunctionDef) -> bool:
    return any(ast.unparse(d) in ("staticmethod", "classmethod") for d in node.decorator_list)


# =============================================================================================== the index
class SourceIndex:
    """Classes of one Slicer version (with CTK and VTK), Slicer's Python, and the Qt 5 table."""

    def __init__(self, slicer: Path, ctk: Optional[Path], vtk: Optional[Path]):
        self.slicer = slicer
        self.version = slicer_version(slicer)
        self.classes: dict[str, CppClass] = {}
        roots = [(slicer, ("Libs", "Base", "Modules")), *((r, ("Libs",)) for r in [ctk] if r),
                 *((r, ("Common",)) for r in [vtk] if r)]
        for root, folders in roots:
            for folder in folders:
                for path in sorted((root / folder).rglob("*.h")):
                    if "Testing" in path.parts or "Resources" in path.parts:
                        continue
                    for cls in parse_header(path, root):
                        known = self.classes.get(cls.name)
                        if known is None or len(cls.methods) + len(cls.properties) > len(known.methods) + len(
                                known.properties):
                            self.classes[cls.name] = cls
        self.python = {key: parse_python(slicer / rel) for key, rel in PYTHON_SOURCES.items()
                       if (slicer / rel).exists()}
        self._signal_text = None

    def chain(self, name: str) -> list[str]:
        """``name`` and its bases, nearest first (C++ and the Qt table)."""
        out, current = [], name
        while current and current not in out:
            out.append(current)
            if current in self.classes:
                current = self.classes[current].base
            elif current in QT5:
                current = QT5[current].get("base")
            else:
                current = None
        return out

    def known(self, name: str) -> bool:
        return name in self.classes or name in QT5

    def methods(self, name: str, method: str) -> Optional[list[tuple[int, int, str]]]:
        found = []
        for cls in self.chain(name):
            if cls in self.classes and method in self.classes[cls].methods:
                found += self.classes[cls].methods[method]
            elif cls in QT5 and method in QT5[cls].get("methods", set()):
                found.append((0, 99, ""))
        return found or None

    def has_member(self, name: str, member: str) -> bool:
        for cls in self.chain(name):
            if cls in self.classes:
                c = self.classes[cls]
                if member in c.methods or member in c.constants or member in c.properties:
                    return True
            if cls in QT5 and any(member in QT5[cls].get(k, set()) for k in ("methods", "constants", "properties")):
                return True
        return False

    def has_property(self, name: str, prop: str) -> bool:
        return any((cls in self.classes and prop in self.classes[cls].properties) or
                   (cls in QT5 and prop in QT5[cls].get("properties", set())) for cls in self.chain(name))

    def has_signal(self, name: str, signal: str) -> bool:
        wanted = _normal_signal(signal)
        return any(wanted in {_normal_signal(s) for s in (self.classes[cls].signals if cls in self.classes
                                                          else QT5.get(cls, {}).get("signals", set()))}
                   for cls in self.chain(name))

    def any_class_with(self, member: str) -> list[str]:
        return sorted(c for c, cls in self.classes.items() if member in cls.methods or member in cls.constants)

    def signal_corroborated(self, signal: str) -> bool:
        """Whether Slicer's own source connects to this signal by the same PythonQt-style string."""
        if self._signal_text is None:
            chunks = []
            for pattern in ("Base/**/*.cxx", "Modules/**/*.cxx", "Base/Python/**/*.py", "Modules/Scripted/**/*.py"):
                for path in self.slicer.glob(pattern):
                    try:
                        chunks.append(path.read_text(errors="replace"))
                    except OSError:
                        pass
            self._signal_text = re.sub(r"\s+", "", "\n".join(chunks))
        compact = signal.replace(" ", "")
        return f"SIGNAL({compact})" in self._signal_text or f'"{compact}"' in self._signal_text or \
            f"'{compact}'" in self._signal_text

    def return_type(self, name: str, method: str) -> Optional[str]:
        for cls in self.chain(name):
            if cls in self.classes and method in self.classes[cls].methods:
                for _, _, returns in self.classes[cls].methods[method]:
                    if returns and self.known(returns):
                        return returns
                return None
        return None


def slicer_version(root: Path) -> str:
    text = (root / "CMakeLists.txt").read_text(errors="replace") if (root / "CMakeLists.txt").exists() else ""
    parts = [re.search(rf"set\(Slicer_VERSION_{k}\s+\"?(\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(p.group(1) for p in parts if p) or root.name


def _normal_signal(signal: str) -> str:
    name, _, params = signal.partition("(")
    return f"{name}({','.join(_normal_type(p) for p in _split_params(params.rstrip(')')))})"


# =============================================================================================== the module's uses
@dataclass
class Use:
    kind: str  # call, attribute, property, signal, function, module
    owner: str  # class name, or python source key
    name: str
    line: int
    args: Optional[int] = None
    keywords: tuple[str, ...] = ()


@dataclass
class Analysis:
    uses: list[Use] = field(default_factory=list)
    unresolved: list[Use] = field(default_factory=list)
    guarded_lines: set[int] = field(default_factory=set)


class ModuleReader(ast.NodeVisitor):
    """Infers the Slicer class of expressions in the module and records every use of Slicer's API."""

    def __init__(self, index: SourceIndex, tree: ast.Module):
        self.index = index
        self.result = Analysis()
        self.own_classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        self.imported = {alias.asname or alias.name.split(".")[0] for n in ast.walk(tree)
                         if isinstance(n, (ast.Import, ast.ImportFrom)) for alias in n.names}
        self.own_module = MODULE_NAME_OF(tree)
        self.own_functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        self.attributes: dict[str, dict[str, str]] = {name: {} for name in self.own_classes}
        self.scopes: list[dict[str, str]] = [{}]
        self.current_class: Optional[str] = None
        for _ in range(2):  # attribute types settle after a second pass
            for cls in self.own_classes.values():
                self._collect_attributes(cls)

    # ------------------------------------------------------------------ types
    def annotation_type(self, node: Optional[ast.AST]) -> Optional[str]:
        if node is None:
            return None
        text = ast.unparse(node) if not isinstance(node, ast.Constant) else str(node.value)
        text = re.sub(r"^Optional\[(.*)\]$", r"\1", text)
        if text.startswith(("slicer.", "vtk.", "qt.", "ctk.")):
            return text.split(".")[-1]
        return f"own:{text}" if text in self.own_classes else None

    def type_of(self, node: ast.AST) -> Optional[str]:
        text = ast.unparse(node)
        if text in GLOBAL_OBJECTS:
            return GLOBAL_OBJECTS[text]
        if isinstance(node, ast.Name):  # the function's own names, then the module's (class bodies are not seen)
            for scope in (self.scopes[-1], self.scopes[0]):
                if node.id in scope:
                    return scope[node.id]
            return None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and self.current_class:
                return self._self_attribute(self.current_class, node.attr)
            if text.startswith("slicer.modules.") and text.count(".") == 2:
                return f"module:{node.attr}"
            if isinstance(node.value, ast.Name) and node.value.id in ("slicer", "qt", "ctk", "vtk") and \
                    (self.index.known(node.attr) or node.attr in EXTENSION_CLASSES):
                return node.attr  # the class itself: its constants and static methods are checked like members
            owner = self.type_of(node.value)
            if owner and owner.startswith("own:"):
                return self.attributes.get(owner[4:], {}).get(node.attr)
            if owner == "python:editor-widget" and node.attr == "editor":
                editor = self.index.python.get("SegmentEditor.py")
                return editor.editor_class if editor else None
            return None
        if isinstance(node, ast.Call):
            return self._call_type(node)
        return None

    def _self_attribute(self, cls: str, name: str) -> Optional[str]:
        for klass in self._own_chain(cls):
            if name in self.attributes.get(klass, {}):
                return self.attributes[klass][name]
        return None

    def _own_chain(self, cls: str) -> list[str]:
        out = [cls]
        node = self.own_classes.get(cls)
        for base in (node.bases if node else []):
            name = ast.unparse(base)
            if name in self.own_classes:
                out += self._own_chain(name)
        return out

    def _call_type(self, node: ast.Call) -> Optional[str]:
        func = node.func
        text = ast.unparse(func)
        if text.startswith(("qt.", "ctk.", "vtk.", "slicer.")) and text.count(".") == 1:
            name = text.split(".")[1]
            if self.index.known(name):
                return name
        if isinstance(func, ast.Name):
            if func.id in self.own_classes:
                return f"own:{func.id}"
            if func.id in self.own_functions:
                return self.annotation_type(self.own_functions[func.id].returns)
            return None
        if not isinstance(func, ast.Attribute):
            return None
        if func.attr in ("AddNewNodeByClass", "CreateNodeByClass") and node.args and \
                isinstance(node.args[0], ast.Constant):
            return str(node.args[0].value)
        owner = self.type_of(func.value)
        if owner == f"module:{self.own_module}":  # this module: its widget is the module's own widget class
            return "python:own-representation" if func.attr == "widgetRepresentation" else None
        if owner == "python:own-representation" and func.attr == "self":
            return next((f"own:{n}" for n in self.own_classes if n.endswith("Widget")), None)
        if owner and owner.startswith("module:"):
            module = SLICER_MODULES.get(owner[7:])
            if func.attr == "logic" and module:
                return module[1]
            if func.attr == "widgetRepresentation":
                return "python:editor-representation"
            return module[0] if module else None
        if owner == "python:editor-representation" and func.attr == "self":
            return "python:editor-widget"
        if owner and owner.startswith("own:") and func.attr in PYTHON_BASE_RETURNS:
            return PYTHON_BASE_RETURNS[func.attr]
        if owner and owner.startswith("own:"):
            for klass in self._own_chain(owner[4:]):
                method = next((m for m in self.own_classes[klass].body
                               if isinstance(m, ast.FunctionDef) and m.name == func.attr), None)
                if method is not None:
                    return self.annotation_type(method.returns)
            return None
        if owner:
            return self.index.return_type(owner, func.attr)
        return None

    def _collect_attributes(self, cls: ast.ClassDef) -> None:
        self.current_class = cls.name
        for item in cls.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):  # dataclass fields
                found = self.annotation_type(item.annotation)
                if found:
                    self.attributes[cls.name][item.target.id] = found
        for method in (m for m in cls.body if isinstance(m, ast.FunctionDef)):
            self.scopes = [self._parameters(method)]
            for node in ast.walk(method):
                targets = []
                if isinstance(node, ast.Assign):
                    targets, value = node.targets, node.value
                elif isinstance(node, ast.AnnAssign):
                    targets, value = [node.target], node.value
                pairs = []
                for target in targets:
                    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                        pairs += list(zip(target.elts, value.elts, strict=False))
                    else:
                        pairs.append((target, value))
                for target, item in pairs:
                    if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self":
                        found = (self.annotation_type(node.annotation) if isinstance(node, ast.AnnAssign) else None) \
                            or (self.type_of(item) if item is not None else None)
                        if found:
                            self.attributes[cls.name][target.attr] = found
        self.current_class = None
        self.scopes = [{}]

    def _parameters(self, function: ast.FunctionDef) -> dict[str, str]:
        scope = {}
        for arg in function.args.posonlyargs + function.args.args + function.args.kwonlyargs:
            found = self.annotation_type(arg.annotation)
            if found:
                scope[arg.arg] = found
        if self.current_class and function.args.args and function.args.args[0].arg == "self":
            scope["self"] = f"own:{self.current_class}"
        return scope

    # ------------------------------------------------------------------ walking
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        previous, self.current_class = self.current_class, node.name
        self.scopes.append({})  # the class body's names (dataclass fields) are attributes, not variables
        self.generic_visit(node)
        self.scopes.pop()
        self.current_class = previous

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.scopes.append(self._parameters(node))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        found = self.type_of(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and found:
                self.scopes[-1][target.id] = found
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for name, value in zip(target.elts, node.value.elts, strict=False):
                    if isinstance(name, ast.Name) and self.type_of(value):
                        self.scopes[-1][name.id] = self.type_of(value)
            self._store(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        found = self.annotation_type(node.annotation) or (self.type_of(node.value) if node.value else None)
        if isinstance(node.target, ast.Name) and found:
            self.scopes[-1][node.target.id] = found
        self._store(node.target)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if isinstance(item.optional_vars, ast.Name) and self.type_of(item.context_expr):
                self.scopes[-1][item.optional_vars.id] = self.type_of(item.context_expr)
        for statement in node.body:
            self.visit(statement)

    def _store(self, target: ast.AST) -> None:
        if isinstance(target, ast.Attribute):
            owner = self.type_of(target.value)
            if owner and self._is_slicer_class(owner):
                self.result.uses.append(Use("property", owner, target.attr, target.lineno))
            self.visit(target.value)

    def _is_slicer_class(self, name: str) -> bool:
        return not name.startswith(("own:", "module:", "python:")) and (self.index.known(name)
                                                                          or name in EXTENSION_CLASSES)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        text = ast.unparse(func)
        n_args = None if any(isinstance(a, ast.Starred) for a in node.args) else len(node.args)
        keywords = tuple(k.arg for k in node.keywords if k.arg)
        if text.startswith("slicer.util.") and text.count(".") == 2:
            self.result.uses.append(Use("function", "slicer.util", func.attr, node.lineno, n_args, keywords))
        elif text == "ScreenCapture.ScreenCaptureLogic":
            self.result.uses.append(Use("method", "ScreenCapture.ScreenCaptureLogic", "__init__", node.lineno,
                                        n_args, keywords))
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and \
                ast.unparse(func.value.func) == "ScreenCapture.ScreenCaptureLogic":
            self.result.uses.append(Use("method", "ScreenCapture.ScreenCaptureLogic", func.attr, node.lineno, n_args,
                                        keywords))
        elif isinstance(func, ast.Attribute):
            owner = self.type_of(func.value)
            if func.attr == "connect" and node.args and isinstance(node.args[0], ast.Constant) and owner:
                self.result.uses.append(Use("signal", owner, str(node.args[0].value), node.lineno))
            elif owner and owner.startswith("own:"):
                base = self._scripted_base(owner[4:], func.attr)
                if base:
                    self.result.uses.append(Use("method", base, func.attr, node.lineno, n_args, keywords))
            elif owner and owner.startswith("module:") and owner[7:] != self.own_module:
                module_class = SLICER_MODULES.get(owner[7:], ("?",))[0]
                if not module_class.endswith(".py"):
                    self.result.uses.append(Use("call", module_class, func.attr, node.lineno, n_args))
            elif owner and self._is_slicer_class(owner):
                self.result.uses.append(Use("call", owner, func.attr, node.lineno, n_args))
            elif owner is None and func.attr[:1].isupper() and not (
                    isinstance(func.value, ast.Name) and func.value.id in self.imported):
                self.result.unresolved.append(Use("call", "?", func.attr, node.lineno, n_args))
        self.generic_visit(node)

    def _scripted_base(self, cls: str, method: str) -> Optional[str]:
        """The Slicer Python base that defines ``method`` when ``cls`` (the module's own class) does not."""
        own = any(method == m.name for klass in self._own_chain(cls) for m in self.own_classes[klass].body
                  if isinstance(m, ast.FunctionDef))
        if own or method in UNITTEST_METHODS:
            return None
        candidates = []
        for klass in self._own_chain(cls):
            for base in self.own_classes[klass].bases:
                name = ast.unparse(base)
                if name.startswith("ScriptedLoadableModule"):
                    candidates.append(("slicer.ScriptedLoadableModule", name))
                elif name == "VTKObservationMixin":
                    candidates.append(("slicer.util", name))
        for source, name in candidates:  # the base that defines it (else the first, where it is then missing)
            module = self.index.python.get(source)
            if module and method in module.classes.get(name, {}):
                return f"{source}.{name}"
        return f"{candidates[0][0]}.{candidates[0][1]}" if candidates else None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module in PYTHON_SOURCES:  # from slicer.util import VTKObservationMixin
            for alias in node.names:
                self.result.uses.append(Use("function", node.module, alias.name, node.lineno))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):
            text = ast.unparse(node)
            if text.startswith("slicer.modules.") and text.count(".") == 2:
                if node.attr != self.own_module:
                    self.result.uses.append(Use("module", "slicer.modules", node.attr, node.lineno))
            elif text.startswith(("slicer.", "qt.", "ctk.", "vtk.")) and text.count(".") == 1 and \
                    node.attr not in ("util", "modules", "app", "mrmlScene", "dicomDatabase", "ScriptedLoadableModule"):
                self.result.uses.append(Use("class", node.attr, node.attr, node.lineno))
            else:
                owner = self.type_of(node.value)
                if owner and self._is_slicer_class(owner) and not self._is_call_target(node):
                    self.result.uses.append(Use("attribute", owner, node.attr, node.lineno))
        self.generic_visit(node)

    def _is_call_target(self, node: ast.Attribute) -> bool:
        return id(node) in self._call_targets

    def run(self, tree: ast.Module) -> Analysis:
        self._call_targets = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for branch in (n for n in ast.walk(tree) if isinstance(n, (ast.If, ast.IfExp)) and any(
                isinstance(c, ast.Call) and ast.unparse(c.func) in ("hasattr", "getattr") for c in ast.walk(n.test))):
            # if hasattr(x, "New"): x.New() else: x.Old() — both branches are version-guarded
            parts = [branch.body, branch.orelse] if isinstance(branch, ast.IfExp) else [*branch.body, *branch.orelse]
            self.result.guarded_lines |= {line for part in parts for line in range(part.lineno, part.end_lineno + 1)}
        self.visit(tree)
        return self.result


def MODULE_NAME_OF(tree: ast.Module) -> str:  # noqa: N802 (reads like the constant it computes)
    """``slicer.modules.<name>`` of the module in ``tree``: its ScriptedLoadableModule class name, lower case."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "ScriptedLoadableModule" for b in node.bases):
            return node.name.lower()
    return ""


#: what Slicer's Python bases return (ScriptedLoadableModuleLogic.getParameterNode)
PYTHON_BASE_RETURNS = {"getParameterNode": "vtkMRMLScriptedModuleNode"}
UNITTEST_METHODS = {name for name in dir(__import__("unittest").TestCase) if not name.startswith("_")}


# =============================================================================================== checking
@dataclass
class Outcome:
    use: Use
    versions_ok: list[str]
    versions_missing: list[str]
    detail: str = ""


def check_use(use: Use, index: SourceIndex) -> tuple[bool, str]:
    """Whether ``use`` holds in one Slicer version, and why not."""
    if use.owner in EXTENSION_CLASSES or use.name in EXTENSION_CLASSES:
        return True, f"{EXTENSION_CLASSES.get(use.owner) or EXTENSION_CLASSES[use.name]} (not in Slicer's source)"
    if use.kind == "class":
        return index.known(use.name), "no such class"
    if use.kind == "module":
        return use.name in SLICER_MODULES and _module_exists(use.name, index), "no such module"
    if use.kind == "function":
        module = index.python.get(use.owner)
        function = module.functions.get(use.name) if module else None
        if use.name == "VTKObservationMixin" or (module and use.name in module.classes):
            return True, ""
        return _arity(function, use)
    if use.kind == "method":
        source, _, cls = use.owner.rpartition(".")
        module = index.python.get(source)
        if cls == "VTKObservationMixin":
            module = index.python.get("slicer.util")
        classes = module.classes if module else {}
        if use.name == "__init__" and cls in classes and "__init__" not in classes[cls]:
            return True, ""
        return _arity(classes.get(cls, {}).get(use.name) if cls in classes else None, use)
    if use.kind == "signal":
        ok = index.has_signal(use.owner, use.name)
        return ok, "" if ok else f"{use.owner} has no signal {use.name}"
    if use.kind == "property":
        ok = index.has_property(use.owner, use.name)
        return ok, "" if ok else f"{use.owner} has no property {use.name}"
    if use.kind == "attribute":
        ok = index.has_member(use.owner, use.name)
        return ok, "" if ok else f"{use.owner} has no member {use.name}"
    if use.kind == "call":
        overloads = index.methods(use.owner, use.name)
        if overloads is None:
            if index.has_property(use.owner, use.name):
                return True, ""
            return False, f"{use.owner} has no method {use.name}"
        if use.args is not None and not any(low <= use.args <= high for low, high, _ in overloads):
            return False, f"{use.owner}.{use.name} takes {sorted({(lo, hi) for lo, hi, _ in overloads})} arguments, " \
                          f"given {use.args}"
        return True, ""
    return False, f"unknown use {use.kind}"


def _module_exists(name: str, index: SourceIndex) -> bool:
    module_class, _ = SLICER_MODULES[name]
    return module_class in index.python or index.known(module_class)


def _arity(function: Optional[PyFunction], use: Use) -> tuple[bool, str]:
    if function is None:
        return False, f"{use.owner} has no {use.name}"
    if use.args is not None:
        if use.args < function.required - len(use.keywords) or (function.maximum is not None and
                                                                  use.args > function.maximum):
            return False, f"{use.owner}.{use.name} given {use.args} positional arguments"
    unknown = [k for k in use.keywords if k not in function.keywords and not function.kwargs]
    return (not unknown), (f"{use.owner}.{use.name} has no argument {unknown}" if unknown else "")


def check_module(module_file: Path, indexes: list[SourceIndex]) -> dict[str, Any]:
    tree = ast.parse(module_file.read_text())
    outcomes: dict[tuple, Outcome] = {}
    unresolved: dict[str, list[int]] = {}
    guarded: set[int] = set()
    for index in indexes:
        analysis = ModuleReader(index, tree).run(tree)
        guarded |= analysis.guarded_lines
        for use in analysis.uses:
            key = (use.kind, use.owner, use.name, use.line)
            ok, detail = check_use(use, index)
            outcome = outcomes.setdefault(key, Outcome(use, [], []))
            (outcome.versions_ok if ok else outcome.versions_missing).append(index.version)
            if not ok:
                outcome.detail = detail
        for use in analysis.unresolved:
            unresolved.setdefault(use.name, []).append(use.line)
    failures, version_guarded = [], []
    for outcome in outcomes.values():
        if not outcome.versions_missing:
            continue
        if outcome.versions_ok and outcome.use.line in guarded:
            version_guarded.append(outcome)
        else:
            failures.append(outcome)
    weak_missing = {name: lines for name, lines in unresolved.items()
                    if not any(index.any_class_with(name) for index in indexes)}
    uses = [o.use for o in outcomes.values()]
    signals = [u for u in uses if u.kind == "signal"]
    return {
        "module": str(module_file), "versions": [i.version for i in indexes],
        "checked": len(outcomes),
        "by_kind": {kind: len({(u.owner, u.name) for u in uses if u.kind == kind})
                    for kind in sorted({u.kind for u in uses})},
        "distinct_names": len({(u.owner, u.name) for u in uses}),
        "signals": sorted({f"{u.owner}.{u.name}" for u in signals}),
        "signals_corroborated_in_slicer_source": sorted({u.name for u in signals
                                                         if indexes[-1].signal_corroborated(u.name)}),
        "failures": [_describe(o) for o in sorted(failures, key=lambda o: o.use.line)],
        "version_guarded": [_describe(o) for o in sorted(version_guarded, key=lambda o: o.use.line)],
        "unresolved_receivers": {name: sorted(set(lines)) for name, lines in sorted(unresolved.items())},
        "unresolved_names_in_no_class": {name: sorted(set(lines)) for name, lines in weak_missing.items()},
    }


def _describe(outcome: Outcome) -> dict[str, Any]:
    use = outcome.use
    return {"line": use.line, "kind": use.kind, "owner": use.owner, "name": use.name, "ok_in": outcome.versions_ok,
            "missing_in": outcome.versions_missing, "detail": outcome.detail}


def check_fakes(fakes_file: Path, indexes: list[SourceIndex]) -> dict[str, Any]:
    """Every public name of the stand-in classes exists in the real class they stand for (in some version)."""
    tree = ast.parse(fakes_file.read_text())
    checked, failures, skipped = 0, [], []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        api = next((ast.literal_eval(s.value) for s in cls.body if isinstance(s, ast.Assign)
                    and any(getattr(t, "id", "") == "API" for t in s.targets)), None)
        if api is None:
            continue
        if api in EXTENSION_CLASSES:
            skipped.append(f"{cls.name} ({EXTENSION_CLASSES[api]})")
            continue
        names: list[tuple[str, str]] = []
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                names.append(("member", item.name))
            elif isinstance(item, ast.Assign):
                for target in item.targets:
                    name = getattr(target, "id", "")
                    if name in ("SIGNALS", "PROPERTIES"):
                        for value in ast.literal_eval(item.value):
                            names.append((name.lower()[:-1], value))
                    elif name and not name.startswith("_") and name != "API":
                        names.append(("member", name))
        for kind, name in names:
            checked += 1
            if not any(_fake_name_ok(index, api, kind, name) for index in indexes):
                failures.append({"class": cls.name, "stands_for": api, "kind": kind, "name": name})
    return {"file": str(fakes_file), "checked": checked, "failures": failures, "not_checkable": skipped}


def _fake_name_ok(index: SourceIndex, api: str, kind: str, name: str) -> bool:
    if kind == "signal":
        return index.has_signal(api, name)
    if kind == "propertie":
        return index.has_property(api, name)
    if index.known(api):
        return index.has_member(api, name) or index.has_property(api, name) or \
            (name in ("connect", "disconnect") and "QObject" in index.chain(api))
    for module in index.python.values():  # Slicer's Python classes (ScriptedLoadableModule*, VTKObservationMixin)
        if api in module.classes:
            return name in module.classes[api] or any(name in module.classes.get(b, {})
                                                      for b in module.class_bases.get(api, []))
    return False


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slicer", action="append", required=True, type=Path,
                        help="a Slicer source checkout (repeat for several versions)")
    parser.add_argument("--ctk", type=Path, help="a CTK source checkout (ctk widgets, ctkDICOMDatabase)")
    parser.add_argument("--vtk", type=Path, help="a VTK source checkout (vtkObject, vtkMatrix4x4, vtkCommand, ...)")
    parser.add_argument("--module", type=Path, default=MODULE, help="the module file to check")
    parser.add_argument("--fakes", type=Path, help="the test stand-ins to check as well")
    parser.add_argument("--json", type=Path, help="write the full result here")
    args = parser.parse_args(argv)
    indexes = [SourceIndex(root, args.ctk, args.vtk) for root in args.slicer]
    result = {"module": check_module(args.module, indexes)}
    if args.fakes:
        result["fakes"] = check_fakes(args.fakes, indexes)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    failed = result["module"]["failures"] or result["module"]["unresolved_names_in_no_class"] or \
        result.get("fakes", {}).get("failures")
    return 1 if failed else 0


def report(result: dict[str, Any]) -> None:
    module = result["module"]
    print(f"Slicer versions: {', '.join(module['versions'])}")
    print(f"{module['checked']} uses checked ({module['distinct_names']} distinct names): "
          + ", ".join(f"{k} {v}" for k, v in module["by_kind"].items()))
    print(f"signals: {len(module['signals'])} ({len(module['signals_corroborated_in_slicer_source'])} also connected "
          "by that name in Slicer's own source)")
    for item in module["version_guarded"]:
        print(f"  guarded: line {item['line']}: {item['owner']}.{item['name']} (missing in {item['missing_in']})")
    print(f"unresolved receivers: {len(module['unresolved_receivers'])} names "
          f"({', '.join(module['unresolved_receivers']) or 'none'})")
    for item in module["failures"]:
        print(f"FAIL line {item['line']}: {item['kind']} {item['owner']}.{item['name']}: {item['detail']} "
              f"(ok in {item['ok_in'] or 'no version'})")
    for name, lines in module["unresolved_names_in_no_class"].items():
        print(f"FAIL lines {lines}: {name} is a method of no class in these sources")
    if "fakes" in result:
        fakes = result["fakes"]
        print(f"stand-ins: {fakes['checked']} names checked, {len(fakes['failures'])} not in Slicer"
              + (f"; not checkable: {', '.join(fakes['not_checkable'])}" if fakes["not_checkable"] else ""))
        for item in fakes["failures"]:
            print(f"FAIL stand-in {item['class']}.{item['name']} ({item['kind']}) is not in {item['stands_for']}")


if __name__ == "__main__":
    sys.exit(main())
