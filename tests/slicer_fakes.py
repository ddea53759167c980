"""Strict, behavioural stand-ins for the parts of 3D Slicer, VTK, Qt and CTK the EchoForge module uses.

3D Slicer cannot be installed here. These stand-ins are not catch-alls: each class defines only
names that exist in Slicer's (VTK's, Qt's, CTK's) own API — spelled, and taking arguments, as
there — so a call to anything Slicer does not have raises ``AttributeError`` (or ``TypeError``)
exactly as it would in Slicer. ``slicer_extension/Testing/check_slicer_api.py`` checks those names
against a Slicer source checkout (each class says which real class it stands for in ``API``).
Names that begin with an underscore are the stand-ins' own machinery, or what a test does as the
user (``_press`` a key, ``_emit`` a click, ``_paint`` with the Segment Editor).

Behaviour reproduced from Slicer's source, because the module broke on it:

* ``vtkSegmentation`` fires ``SourceRepresentationModified`` (``MasterRepresentationModified``
  before 5.4) on every content change, ``SegmentModified`` only when a segment is added or its
  first stroke makes it non-empty; ``vtkMRMLSegmentationNode`` re-invokes its segmentation's
  events (deferred while the node is between ``StartModify`` and ``EndModify``).
* The sequences logic updates a browser's proxy nodes when its selected item changes (content
  copied from the data node at the master's index value) and, for sequences with "save changes",
  copies a proxy's content back into the data node shown, except during playback.
* :func:`load_dicom_cine` builds a cine as ``DICOMImageSequencePlugin`` does: frames on
  diag(-1, -1, 1) with the calibration's spacing or 1.0, index name ``time`` in ``s`` written with
  three decimals, ``DICOM.instanceUIDs`` on the frames, a browser whose proxy is shown.
* ``slicer.util.setSliceViewerLayers(fit=True)`` centres the views on the middle slice of the
  background volume (a stacked H×W×T volume would show its middle frame).
* Qt shortcuts: two enabled shortcuts with the same keys in one window are ambiguous and
  neither fires; the sequence browser's play widget has Ctrl+Shift+Left/Right from Slicer 5.8.
"""

from __future__ import annotations

import itertools
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, Optional

import numpy as np

# ====================================================================================== VTK
_tags = itertools.count(1)


class vtkCommand:
    API = "vtkCommand"
    ModifiedEvent = 33


class vtkObject:
    """Observers and ``Modified`` as VTK has them (callbacks get ``(caller, event)``)."""

    API = "vtkObject"

    def __init__(self) -> None:
        self._observers: dict[int, tuple[int, Callable[..., Any]]] = {}

    def AddObserver(self, event: int, callback: Callable[..., Any], priority: float = 0.0) -> int:
        tag = next(_tags)
        self._observers[tag] = (int(event), callback)
        return tag

    def RemoveObserver(self, tag: int) -> None:
        self._observers.pop(tag, None)

    def InvokeEvent(self, event: int, callData: Any = None) -> int:
        for _, (observed, callback) in list(self._observers.items()):
            if observed == int(event):
                callback(self, event)
        return 0

    def Modified(self) -> None:
        self.InvokeEvent(vtkCommand.ModifiedEvent)

    def GetClassName(self) -> str:
        return type(self).API

    def IsA(self, className: str) -> bool:
        return any(getattr(k, "API", None) == className for k in type(self).__mro__)


class vtkMatrix4x4(vtkObject):
    API = "vtkMatrix4x4"

    def __init__(self) -> None:
        super().__init__()
        self._m = np.eye(4)

    def SetElement(self, i: int, j: int, value: float) -> None:
        self._m[i, j] = float(value)

    def GetElement(self, i: int, j: int) -> float:
        return float(self._m[i, j])

    def DeepCopy(self, source: vtkMatrix4x4) -> None:
        self._m = source._m.copy()

    def MultiplyPoint(self, point: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(self._m @ np.asarray(point, dtype=float))


class vtkStringArray(vtkObject):
    API = "vtkStringArray"

    def __init__(self) -> None:
        super().__init__()
        self._values: list[str] = []

    def InsertNextValue(self, value: str) -> int:
        self._values.append(str(value))
        return len(self._values) - 1

    def GetValue(self, index: int) -> str:
        return self._values[index]

    def GetNumberOfValues(self) -> int:
        return len(self._values)


# ====================================================================================== MRML core
class vtkMRMLScene(vtkObject):
    """Nodes by ID, singletons, node references resolved through the scene, and the close events."""

    API = "vtkMRMLScene"
    NodeAddedEvent = 0x2001
    NodeRemovedEvent = 0x2003
    StartCloseEvent = 0x0101
    EndCloseEvent = 0x0201

    def __init__(self) -> None:
        super().__init__()
        self._nodes: dict[str, vtkMRMLNode] = {}
        self._counts: dict[str, int] = {}

    def CreateNodeByClass(self, className: str) -> vtkMRMLNode:
        if className not in NODE_CLASSES:
            raise ValueError(f"the stand-in scene cannot create {className}")
        return NODE_CLASSES[className]()

    def IsNodeClassRegistered(self, className: str) -> bool:
        return className in NODE_CLASSES

    def AddNode(self, node: vtkMRMLNode) -> vtkMRMLNode:
        class_name = node.API
        self._counts[class_name] = self._counts.get(class_name, 0) + 1
        node._id = f"{class_name}{self._counts[class_name]}"
        node._scene = self
        self._nodes[node._id] = node
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    def AddNewNodeByClass(self, className: str, nodeBaseName: str = "") -> vtkMRMLNode:
        node = self.CreateNodeByClass(className)
        node.SetName(nodeBaseName)
        return self.AddNode(node)

    def RemoveNode(self, node: vtkMRMLNode) -> None:
        if node is not None and self._nodes.pop(node.GetID(), None) is not None:
            for display in node._display_nodes():
                self.RemoveNode(display)
            self.InvokeEvent(self.NodeRemovedEvent, node)

    def GetNodeByID(self, id: str) -> Optional[vtkMRMLNode]:
        return self._nodes.get(id) if id else None

    def GetSingletonNode(self, singletonTag: str, className: str) -> Optional[vtkMRMLNode]:
        return next((n for n in self._nodes.values() if n.IsA(className) and n.GetSingletonTag() == singletonTag),
                    None)

    def GenerateUniqueName(self, baseName: str) -> str:
        return baseName

    def GetNumberOfNodes(self) -> int:
        return len(self._nodes)

    def IsImporting(self) -> bool:
        return False

    def Clear(self, removeSingletons: int = 0) -> None:
        self.InvokeEvent(self.StartCloseEvent)
        for node in list(self._nodes.values()):
            if node.GetSingletonTag() and not removeSingletons:
                node._reset()
            else:
                self.RemoveNode(node)
        self.InvokeEvent(self.EndCloseEvent)


class vtkMRMLNode(vtkObject):
    """ID, name, attributes, node references, Start/EndModify (events deferred), CopyContent."""

    API = "vtkMRMLNode"

    def __init__(self) -> None:
        super().__init__()
        self._id, self._name, self._scene = "", "", None
        self._attributes: dict[str, str] = {}
        self._references: dict[str, list[str]] = {}
        self._singleton = ""
        self._disable_modified = 0
        self._pending: list[int] = []

    def GetID(self) -> str:
        return self._id

    def GetName(self) -> str:
        return self._name

    def SetName(self, name: str) -> None:
        self._name = str(name)

    def GetScene(self) -> Optional[vtkMRMLScene]:
        return self._scene

    def GetAttribute(self, name: str) -> Optional[str]:
        return self._attributes.get(name)

    def SetAttribute(self, name: str, value: str) -> None:
        self._attributes[name] = str(value)

    def SetSingletonTag(self, tag: str) -> None:
        self._singleton = tag

    def GetSingletonTag(self) -> str:
        return self._singleton

    def CreateNodeInstance(self) -> vtkMRMLNode:
        return type(self)()

    def StartModify(self) -> int:
        previous = self._disable_modified
        self._disable_modified = 1
        return previous

    def EndModify(self, previousDisableModifiedEventState: int) -> int:
        self._disable_modified = previousDisableModifiedEventState
        if not self._disable_modified:
            pending, self._pending = self._pending, []
            for event in dict.fromkeys(pending):
                super().InvokeEvent(event)
        return self._disable_modified

    def InvokeEvent(self, event: int, callData: Any = None) -> int:
        if self._disable_modified:
            self._pending.append(int(event))
            return 0
        return super().InvokeEvent(event, callData)

    def InvokeCustomModifiedEvent(self, eventId: int, callData: Any = None) -> None:
        self.InvokeEvent(eventId, callData)

    def CopyContent(self, node: vtkMRMLNode, deepCopy: bool = True) -> None:
        self._attributes.update(node._attributes)
        self.Modified()

    # node references, resolved through the scene as Slicer does
    def SetNodeReferenceID(self, referenceRole: str, referencedNodeID: str) -> Optional[vtkMRMLNode]:
        self._references[referenceRole] = [referencedNodeID] if referencedNodeID else []
        self.Modified()
        return self.GetNodeReference(referenceRole)

    def SetNthNodeReferenceID(self, referenceRole: str, n: int, referencedNodeID: str) -> Optional[vtkMRMLNode]:
        ids = self._references.setdefault(referenceRole, [])
        ids.extend([""] * (n + 1 - len(ids)))
        ids[n] = referencedNodeID
        self.Modified()
        return self.GetNthNodeReference(referenceRole, n)

    def GetNodeReference(self, referenceRole: str) -> Optional[vtkMRMLNode]:
        return self.GetNthNodeReference(referenceRole, 0)

    def GetNthNodeReference(self, referenceRole: str, n: int) -> Optional[vtkMRMLNode]:
        ids = self._references.get(referenceRole, [])
        return self._scene.GetNodeByID(ids[n]) if self._scene is not None and n < len(ids) else None

    def GetNumberOfNodeReferences(self, referenceRole: str) -> int:
        return len(self._references.get(referenceRole, []))

    def RemoveNodeReferenceIDs(self, referenceRole: str) -> None:
        self._references.pop(referenceRole, None)
        self.Modified()

    def _display_nodes(self) -> list[vtkMRMLNode]:
        return []

    def _reset(self) -> None:
        self._attributes = {k: v for k, v in self._attributes.items() if k == "ModuleName"}
        self._references.clear()


class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    API = "vtkMRMLScriptedModuleNode"

    def __init__(self) -> None:
        super().__init__()
        self._parameters: dict[str, str] = {}

    def SetParameter(self, name: str, value: str) -> None:
        self._parameters[name] = str(value)
        self.Modified()

    def GetParameter(self, name: str) -> str:
        return self._parameters.get(name, "")

    def _reset(self) -> None:
        super()._reset()
        self._parameters.clear()


class vtkMRMLDisplayNode(vtkMRMLNode):
    API = "vtkMRMLDisplayNode"

    def __init__(self) -> None:
        super().__init__()
        self._color_node: Optional[vtkMRMLNode] = None

    def GetColorNode(self) -> Optional[vtkMRMLNode]:
        return self._color_node if self._color_node is not None and self._color_node.GetScene() else None

    def SetAndObserveColorNodeID(self, colorNodeID: str) -> None:
        self._color_node = self._scene.GetNodeByID(colorNodeID)  # a node of another scene is not found


class vtkMRMLColorTableNode(vtkMRMLNode):
    API = "vtkMRMLColorTableNode"


class vtkMRMLDisplayableNode(vtkMRMLNode):
    API = "vtkMRMLDisplayableNode"

    def __init__(self) -> None:
        super().__init__()
        self._display: Optional[vtkMRMLDisplayNode] = None

    def GetDisplayNode(self) -> Optional[vtkMRMLDisplayNode]:
        return self._display

    def CreateDefaultDisplayNodes(self) -> None:
        if self._display is None and self._scene is not None:
            self._display = self._scene.AddNewNodeByClass("vtkMRMLDisplayNode", f"{self._name} display")

    def _display_nodes(self) -> list[vtkMRMLNode]:
        return [self._display] if self._display is not None else []


class vtkMRMLStorageNode(vtkMRMLNode):
    API = "vtkMRMLStorageNode"

    def __init__(self) -> None:
        super().__init__()
        self._file = ""

    def GetFileName(self) -> str:
        return self._file

    def SetFileName(self, fileName: str) -> None:
        self._file = str(fileName)


class vtkMRMLVolumeNode(vtkMRMLDisplayableNode):
    """A volume's voxels as ``arrayFromVolume`` gives them ([k, j, i] or [k, j, i, c]) and its IJK→RAS matrix."""

    API = "vtkMRMLVolumeNode"

    def __init__(self) -> None:
        super().__init__()
        self._array: Optional[np.ndarray] = None
        self._ijk_to_ras = np.eye(4)
        self._storage: Optional[vtkMRMLStorageNode] = None

    def SetIJKToRASMatrix(self, mat: vtkMatrix4x4) -> None:
        self._ijk_to_ras = mat._m.copy()
        self.Modified()

    def GetIJKToRASMatrix(self, mat: vtkMatrix4x4) -> None:
        mat._m = self._ijk_to_ras.copy()

    def GetStorageNode(self) -> Optional[vtkMRMLStorageNode]:
        return self._storage

    def CopyContent(self, node: vtkMRMLNode, deepCopy: bool = True) -> None:
        self._array = None if node._array is None else (node._array.copy() if deepCopy else node._array)
        self._ijk_to_ras = node._ijk_to_ras.copy()
        super().CopyContent(node, deepCopy)


class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    API = "vtkMRMLScalarVolumeNode"


class vtkMRMLVectorVolumeNode(vtkMRMLScalarVolumeNode):
    API = "vtkMRMLVectorVolumeNode"


class vtkMRMLLabelMapVolumeNode(vtkMRMLScalarVolumeNode):
    API = "vtkMRMLLabelMapVolumeNode"


class vtkMRMLMultiVolumeNode(vtkMRMLScalarVolumeNode):
    """The MultiVolumeExplorer extension's node: ``arrayFromVolume`` is [k, j, i, T] (time last, not colour)."""

    API = "vtkMRMLMultiVolumeNode"


# ====================================================================================== segmentations
class vtkSegment(vtkObject):
    API = "vtkSegment"

    def __init__(self, name: str, color: tuple[float, float, float]):
        super().__init__()
        self._name, self._color, self._mask, self._label = name, tuple(color), None, 1

    def GetName(self) -> str:
        return self._name

    def SetName(self, name: str) -> None:
        self._name = name

    def GetColor(self) -> tuple[float, float, float]:
        return self._color

    def GetLabelValue(self) -> int:
        return self._label


class vtkSegmentation(vtkObject):
    """Segments with binary masks ([k, j, i] of the reference geometry) and Slicer's event rules."""

    API = "vtkSegmentation"
    RepresentationModified = 62101
    SegmentAdded = 62102
    SegmentRemoved = 62103
    SegmentModified = 62104
    EXTENT_REFERENCE_GEOMETRY = 0

    def __init__(self) -> None:
        super().__init__()
        self._segments: dict[str, vtkSegment] = {}

    def AddEmptySegment(self, segmentId: str = "", segmentName: str = "",
                        color: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> str:
        segment_id = segmentId or f"Segment_{len(self._segments) + 1}"
        self._segments[segment_id] = vtkSegment(segmentName or segment_id, color)
        self.InvokeEvent(self.SegmentAdded, segment_id)
        self.InvokeEvent(self.SegmentModified, segment_id)  # the added segment's properties
        return segment_id

    def GetNumberOfSegments(self) -> int:
        return len(self._segments)

    def GetNthSegmentID(self, index: int) -> str:
        return list(self._segments)[index]

    def GetSegment(self, segmentId: str) -> Optional[vtkSegment]:
        return self._segments.get(segmentId)

    def GetSegmentIdBySegmentName(self, name: str) -> str:
        return next((i for i, s in self._segments.items() if s.GetName().lower() == name.lower()), "")

    def RemoveSegment(self, segmentId: str) -> None:
        if self._segments.pop(segmentId, None) is not None:
            self.InvokeEvent(self.SegmentRemoved, segmentId)

    # --- content changes, as the Segment Editor, imports and the browser make them
    def _set_mask(self, segment_id: str, mask: Optional[np.ndarray]) -> None:
        segment = self._segments[segment_id]
        was_empty = segment._mask is None or not segment._mask.any()
        segment._mask = None if mask is None else np.asarray(mask, dtype=bool).copy()
        self.InvokeEvent(source_event())  # every content change
        if was_empty and segment._mask is not None and segment._mask.any():
            self.InvokeEvent(self.SegmentModified, segment_id)  # the first stroke only

    def _copy_from(self, other: vtkSegmentation) -> None:
        for segment_id in [i for i in self._segments if i not in other._segments]:
            self.RemoveSegment(segment_id)
        for segment_id, segment in other._segments.items():
            if segment_id not in self._segments:
                self._segments[segment_id] = vtkSegment(segment._name, segment._color)
                self.InvokeEvent(self.SegmentAdded, segment_id)
            mine = self._segments[segment_id]
            mine._name, mine._color = segment._name, segment._color
            mine._mask = None if segment._mask is None else segment._mask.copy()
        self.InvokeEvent(source_event())


_VERSION = [(5, 8)]  # the Slicer version the stand-ins currently imitate (see install)


def source_event() -> int:
    return 62100  # SourceRepresentationModified (MasterRepresentationModified before Slicer 5.4): the same id


class vtkMRMLSegmentationNode(vtkMRMLDisplayableNode):
    """Holds a vtkSegmentation and re-invokes its events on itself (as vtkMRMLSegmentationNode does)."""

    API = "vtkMRMLSegmentationNode"

    def __init__(self) -> None:
        super().__init__()
        self._segmentation = vtkSegmentation()
        self._reference_shape: Optional[tuple[int, ...]] = None
        for event in (source_event(), vtkSegmentation.SegmentAdded, vtkSegmentation.SegmentRemoved,
                      vtkSegmentation.SegmentModified):
            self._segmentation.AddObserver(event, lambda caller, e: self.InvokeCustomModifiedEvent(e))

    def GetSegmentation(self) -> vtkSegmentation:
        return self._segmentation

    def SetReferenceImageGeometryParameterFromVolumeNode(self, referenceVolumeNode: vtkMRMLVolumeNode) -> None:
        self._reference_shape = referenceVolumeNode._array.shape[:3]

    def CopyContent(self, node: vtkMRMLNode, deepCopy: bool = True) -> None:
        self._reference_shape = node._reference_shape
        self._segmentation._copy_from(node._segmentation)
        super().CopyContent(node, deepCopy)


# ====================================================================================== sequences
class vtkMRMLSequenceNode(vtkMRMLNode):
    """Data nodes (copies, in the sequence's own scene) sorted by index value; numeric values compared to 0.001."""

    API = "vtkMRMLSequenceNode"
    NumericIndex = 0
    TextIndex = 1

    def __init__(self) -> None:
        super().__init__()
        self._index_name, self._index_unit, self._index_type = "time", "s", self.NumericIndex
        self._items: list[tuple[str, vtkMRMLNode]] = []
        self._sequence_scene = vtkMRMLScene()

    def SetIndexName(self, str_: str) -> None:
        self._index_name = str_

    def GetIndexName(self) -> str:
        return self._index_name

    def SetIndexUnit(self, str_: str) -> None:
        self._index_unit = str_

    def GetIndexUnit(self) -> str:
        return self._index_unit

    def SetIndexType(self, indexType: int) -> None:
        self._index_type = int(indexType)

    def GetIndexType(self) -> int:
        return self._index_type

    def _position(self, value: str) -> Optional[int]:
        for n, (v, _) in enumerate(self._items):
            same = (abs(float(v) - float(value)) < 0.001 if self._index_type == self.NumericIndex else v == value)
            if same:
                return n
        return None

    def SetDataNodeAtValue(self, node: vtkMRMLNode, indexValue: str) -> vtkMRMLNode:
        copy = node.CreateNodeInstance()
        self._sequence_scene.AddNode(copy)
        copy.SetName(node.GetName())
        copy.CopyContent(node, True)
        position = self._position(indexValue)
        if position is not None:
            self._sequence_scene.RemoveNode(self._items[position][1])  # the replaced node leaves the sequence
            self._items[position] = (indexValue, copy)
        else:
            self._items.append((indexValue, copy))
            if self._index_type == self.NumericIndex:
                self._items.sort(key=lambda item: float(item[0]))
        self.Modified()
        return copy

    def UpdateDataNodeAtValue(self, node: vtkMRMLNode, indexValue: str, shallowCopy: bool = False) -> bool:
        position = self._position(indexValue)
        if position is None:
            return False
        self._items[position][1].CopyContent(node, not shallowCopy)
        return True

    def GetDataNodeAtValue(self, indexValue: str, exactMatchRequired: bool = True) -> Optional[vtkMRMLNode]:
        position = self._position(indexValue)
        return None if position is None else self._items[position][1]

    def GetNthDataNode(self, itemNumber: int) -> Optional[vtkMRMLNode]:
        return self._items[itemNumber][1] if 0 <= itemNumber < len(self._items) else None

    def GetNthIndexValue(self, itemNumber: int) -> str:
        return self._items[itemNumber][0] if 0 <= itemNumber < len(self._items) else ""

    def GetNumberOfDataNodes(self) -> int:
        return len(self._items)


class vtkMRMLSequenceBrowserNode(vtkMRMLNode):
    """Master and synchronised sequences, their proxies, selection, playback and "save changes"."""

    API = "vtkMRMLSequenceBrowserNode"

    def __init__(self) -> None:
        super().__init__()
        self._sequences: list[str] = []  # the first one is the master
        self._proxies: dict[str, str] = {}
        self._save_changes: dict[str, bool] = {}
        self._selected = -1
        self._playing = False
        self._fps = 10.0

    def SetAndObserveMasterSequenceNodeID(self, sequenceNodeID: str) -> str:
        state = self.StartModify()
        if self._sequences:
            self._sequences[0] = sequenceNodeID
        else:
            self._sequences.append(sequenceNodeID)
        self.SetSelectedItemNumber(0 if self.GetNumberOfItems() > 0 else -1)
        self.Modified()
        self.EndModify(state)
        return sequenceNodeID

    def GetMasterSequenceNode(self) -> Optional[vtkMRMLSequenceNode]:
        return self._scene.GetNodeByID(self._sequences[0]) if self._scene is not None and self._sequences else None

    def AddSynchronizedSequenceNode(self, synchronizedSequenceNode: Any) -> str:
        node_id = synchronizedSequenceNode if isinstance(synchronizedSequenceNode, str) else \
            synchronizedSequenceNode.GetID()
        if node_id in self._sequences:
            return node_id
        state = self.StartModify()
        first = not self._sequences
        self._sequences.append(node_id)
        if first:  # the first sequence is the master: the selection starts on its first item
            self.SetSelectedItemNumber(0 if self.GetNumberOfItems() > 0 else -1)
        self.Modified()
        self.EndModify(state)
        return node_id

    def _sequence_ids(self) -> list[str]:
        return list(self._sequences)

    def IsSynchronizedSequenceNode(self, sequenceNode: Any, includeMasterNode: bool = False) -> bool:
        node_id = sequenceNode if isinstance(sequenceNode, str) else sequenceNode.GetID()
        return node_id in (self._sequences if includeMasterNode else self._sequences[1:])

    def GetProxyNode(self, sequenceNode: vtkMRMLSequenceNode) -> Optional[vtkMRMLNode]:
        if sequenceNode is None:
            return None
        return self._scene.GetNodeByID(self._proxies.get(sequenceNode.GetID(), ""))

    def GetSequenceNode(self, proxyNode: vtkMRMLNode) -> Optional[vtkMRMLSequenceNode]:
        for sequence_id, proxy_id in self._proxies.items():
            if proxy_id == proxyNode.GetID():
                return self._scene.GetNodeByID(sequence_id)
        return None

    def SetSaveChanges(self, sequenceNode: vtkMRMLSequenceNode, save: bool) -> None:
        self._save_changes[sequenceNode.GetID()] = bool(save)

    def GetSaveChanges(self, sequenceNode: vtkMRMLSequenceNode) -> bool:
        return self._save_changes.get(sequenceNode.GetID(), False)

    def GetNumberOfItems(self) -> int:
        master = self.GetMasterSequenceNode()
        return master.GetNumberOfDataNodes() if master is not None else 0

    def GetSelectedItemNumber(self) -> int:
        return self._selected

    def SetSelectedItemNumber(self, _arg: int) -> None:
        if int(_arg) != self._selected:
            self._selected = int(_arg)
            self.Modified()

    def SelectNextItem(self, selectionIncrement: int = 1) -> int:
        n = self.GetNumberOfItems()
        if n == 0:
            return -1
        self.SetSelectedItemNumber(0 if self._selected < 0 else (self._selected + selectionIncrement) % n)
        return self._selected

    def GetPlaybackActive(self) -> bool:
        return self._playing

    def SetPlaybackActive(self, _arg: bool) -> None:
        self._playing = bool(_arg)
        self.Modified()

    def SetPlaybackRateFps(self, _arg: float) -> None:
        self._fps = float(_arg)

    def GetPlaybackRateFps(self) -> float:
        return self._fps


class vtkSlicerSequencesLogic:
    """Proxy nodes follow the browser's selection; proxy edits go back into "save changes" sequences."""

    API = "vtkSlicerSequencesLogic"

    def __init__(self, scene: vtkMRMLScene):
        self._scene = scene
        self._updating = False
        scene.AddObserver(vtkMRMLScene.NodeAddedEvent, self._on_node_added)

    def _browsers(self) -> Iterator[vtkMRMLSequenceBrowserNode]:
        return (n for n in list(self._scene._nodes.values()) if n.IsA("vtkMRMLSequenceBrowserNode"))

    def _on_node_added(self, scene: Any, event: Any) -> None:
        for browser in self._browsers():
            if not getattr(browser, "_observed", False):
                browser._observed = True
                browser.AddObserver(vtkCommand.ModifiedEvent, lambda b, e: self.UpdateProxyNodesFromSequences(b))

    def UpdateProxyNodesFromSequences(self, browserNode: vtkMRMLSequenceBrowserNode) -> None:
        master = browserNode.GetMasterSequenceNode()
        if self._updating or master is None or master.GetNumberOfDataNodes() == 0:
            return
        self._updating = True
        try:
            selected = browserNode.GetSelectedItemNumber()
            value = master.GetNthIndexValue(selected if 0 <= selected < master.GetNumberOfDataNodes() else 0)
            for sequence_id in browserNode._sequence_ids():
                sequence = self._scene.GetNodeByID(sequence_id)
                source = sequence.GetDataNodeAtValue(value, True) if sequence is not None else None
                if source is None:
                    continue
                proxy = browserNode.GetProxyNode(sequence)
                if proxy is None:
                    proxy = self._scene.AddNode(source.CreateNodeInstance())
                    proxy.SetName(sequence.GetName())
                    proxy.CreateDefaultDisplayNodes()
                    browserNode._proxies[sequence_id] = proxy.GetID()
                    for event in _content_events(proxy):
                        proxy.AddObserver(event, lambda p, e, b=browserNode: self.UpdateSequencesFromProxyNodes(b, p))
                state = proxy.StartModify()
                proxy.CopyContent(source, not browserNode.GetSaveChanges(sequence))
                proxy.EndModify(state)
        finally:
            self._updating = False

    def UpdateSequencesFromProxyNodes(self, browserNode: vtkMRMLSequenceBrowserNode, proxyNode: vtkMRMLNode) -> None:
        if self._updating or browserNode.GetPlaybackActive():
            return
        sequence = browserNode.GetSequenceNode(proxyNode)
        master = browserNode.GetMasterSequenceNode()
        if sequence is None or not browserNode.GetSaveChanges(sequence) or browserNode.GetSelectedItemNumber() < 0:
            return
        sequence.UpdateDataNodeAtValue(proxyNode, master.GetNthIndexValue(browserNode.GetSelectedItemNumber()), True)

    def GetFirstBrowserNodeForProxyNode(self, proxyNode: vtkMRMLNode) -> Optional[vtkMRMLSequenceBrowserNode]:
        return next((b for b in self._browsers() if proxyNode.GetID() in b._proxies.values()), None)

    def GetFirstBrowserNodeForSequenceNode(self, sequenceNode: vtkMRMLSequenceNode
                                           ) -> Optional[vtkMRMLSequenceBrowserNode]:
        return next((b for b in self._browsers() if sequenceNode.GetID() in b._sequence_ids()), None)


def _content_events(node: vtkMRMLNode) -> list[int]:
    if node.IsA("vtkMRMLSegmentationNode"):
        return [source_event(), vtkSegmentation.SegmentAdded, vtkSegmentation.SegmentRemoved]
    return [vtkCommand.ModifiedEvent]


# ====================================================================================== segmentations logic
class vtkSlicerSegmentationsModuleLogic:
    """Export segments to a labelmap (segment n → label n + 1, later segments win) and import them back."""

    API = "vtkSlicerSegmentationsModuleLogic"

    def __init__(self, scene: vtkMRMLScene):
        self._scene = scene

    def ExportSegmentsToLabelmapNode(self, segmentationNode: vtkMRMLSegmentationNode, segmentIDs: vtkStringArray,
                                     labelmapNode: vtkMRMLLabelMapVolumeNode,
                                     referenceVolumeNode: Optional[vtkMRMLVolumeNode] = None,
                                     extentComputationMode: int = 0, colorTableNode: Any = None) -> bool:
        if segmentationNode.GetScene() is None or labelmapNode.GetScene() is None:
            return False  # Slicer refuses nodes outside a scene
        shape = referenceVolumeNode._array.shape[:3]
        merged = np.zeros(shape, np.uint8)
        for n in range(segmentIDs.GetNumberOfValues()):
            segment = segmentationNode.GetSegmentation().GetSegment(segmentIDs.GetValue(n))
            if segment is not None and segment._mask is not None:
                if segment._mask.shape != shape:
                    raise ValueError(f"stand-in: segment {segment.GetName()} is {segment._mask.shape}, reference {shape}")
                merged[segment._mask] = n + 1
        labelmapNode._array = merged
        labelmapNode._ijk_to_ras = referenceVolumeNode._ijk_to_ras.copy()
        if labelmapNode.GetDisplayNode() is None:
            labelmapNode.CreateDefaultDisplayNodes()
        display = labelmapNode.GetDisplayNode()
        if display.GetColorNode() is None:  # as Slicer does: a colour table in the *segmentation's* scene
            table = segmentationNode.GetScene().AddNewNodeByClass("vtkMRMLColorTableNode", "colors")
            display.SetAndObserveColorNodeID(table.GetID())
        return True

    def ImportLabelmapToSegmentationNode(self, labelmapNode: vtkMRMLLabelMapVolumeNode,
                                         segmentationNode: vtkMRMLSegmentationNode, updatedSegmentIDs: Any) -> bool:
        if not isinstance(updatedSegmentIDs, vtkStringArray):
            raise TypeError("stand-in: only the (labelmap, segmentation, vtkStringArray) form is imitated")
        segmentation = segmentationNode.GetSegmentation()
        state = segmentationNode.StartModify()
        for n in range(updatedSegmentIDs.GetNumberOfValues()):
            segment_id = updatedSegmentIDs.GetValue(n)
            if segmentation.GetSegment(segment_id) is None:
                segmentation.AddEmptySegment(segment_id, segment_id)
            segmentation._set_mask(segment_id, labelmapNode._array == n + 1)
        segmentationNode.EndModify(state)
        return True


# ====================================================================================== plots and tables
class vtkMRMLTableNode(vtkMRMLNode):
    API = "vtkMRMLTableNode"


class vtkMRMLPlotSeriesNode(vtkMRMLNode):
    API = "vtkMRMLPlotSeriesNode"
    PlotTypeScatter = 1
    LineStyleNone = 0
    LineStyleSolid = 1
    LineStyleDash = 2
    MarkerStyleNone = 0
    MarkerStyleCircle = 3

    def SetAndObserveTableNodeID(self, tableNodeID: str) -> None:
        self.SetNodeReferenceID("table", tableNodeID)

    def SetXColumnName(self, xColumnName: str) -> None:
        self._x = xColumnName

    def SetYColumnName(self, yColumnName: str) -> None:
        self._y = yColumnName

    def SetPlotType(self, type: int) -> None:
        pass

    def SetLineStyle(self, style: int) -> None:
        pass

    def SetMarkerStyle(self, style: int) -> None:
        pass

    def SetMarkerSize(self, _arg: float) -> None:
        pass

    def SetColor(self, _arg1: float, _arg2: float, _arg3: float) -> None:
        pass


class vtkMRMLPlotChartNode(vtkMRMLNode):
    API = "vtkMRMLPlotChartNode"

    def __init__(self) -> None:
        super().__init__()
        self._series: list[str] = []
        self._title = ""

    def RemoveAllPlotSeriesNodeIDs(self) -> None:
        self._series = []

    def AddAndObservePlotSeriesNodeID(self, plotSeriesNodeID: str) -> None:
        self._series.append(plotSeriesNodeID)

    def SetTitle(self, title: str) -> None:
        self._title = title

    def SetXAxisTitle(self, title: str) -> None:
        pass

    def SetYAxisTitle(self, title: str) -> None:
        pass


class vtkSlicerPlotsLogic:
    API = "vtkSlicerPlotsLogic"

    def __init__(self) -> None:
        self._shown: Optional[vtkMRMLPlotChartNode] = None

    def ShowChartInLayout(self, chartNode: vtkMRMLPlotChartNode) -> None:
        self._shown = chartNode


# ====================================================================================== slice views
class vtkMRMLSliceNode(vtkMRMLNode):
    API = "vtkMRMLSliceNode"

    def __init__(self) -> None:
        super().__init__()
        self._offset = 0.0

    def RotateToVolumePlane(self, volumeNode: vtkMRMLVolumeNode, forceSlicePlaneToSingleSlice: bool = True) -> None:
        pass


class vtkMRMLSliceLogic(vtkObject):
    API = "vtkMRMLSliceLogic"

    def __init__(self, slice_node: vtkMRMLSliceNode):
        super().__init__()
        self._slice_node = slice_node

    def GetSliceOffset(self) -> float:
        return self._slice_node._offset

    def SetSliceOffset(self, offset: float) -> None:
        self._slice_node._offset = float(offset)


# ====================================================================================== Qt, CTK, Slicer widgets
QT5 = "Qt5"


class QObject:
    """Signals by their PythonQt signature (connect checks the class has that signal), properties as attributes.

    Setting an attribute that is not a property of the class raises, as a typo would in Slicer's Qt.
    """

    API = "QObject"
    SIGNALS: tuple[str, ...] = ("destroyed()",)
    PROPERTIES: tuple[str, ...] = ("objectName",)

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "_slots", {})
        object.__setattr__(self, "_blocked", False)
        object.__setattr__(self, "_parent", next((a for a in args if isinstance(a, QObject)), None))
        object.__setattr__(self, "objectName", "")

    @classmethod
    def _all(cls, name: str) -> set[str]:
        return {item for klass in cls.__mro__ for item in getattr(klass, name, ())}

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in type(self)._all("PROPERTIES"):
            raise AttributeError(f"{type(self).API} has no property {name!r}")
        object.__setattr__(self, name, value)

    def connect(self, signal: str, slot: Callable[..., Any]) -> bool:
        if signal not in type(self)._all("SIGNALS"):
            raise AttributeError(f"{type(self).API} has no signal {signal!r}")
        self._slots.setdefault(signal, []).append(slot)
        return True

    def disconnect(self, signal: str, slot: Optional[Callable[..., Any]] = None) -> bool:
        if slot is None:
            self._slots.pop(signal, None)
        elif slot in self._slots.get(signal, []):
            self._slots[signal].remove(slot)
        return True

    def blockSignals(self, b: bool) -> bool:
        previous = self._blocked
        object.__setattr__(self, "_blocked", bool(b))
        return previous

    def setParent(self, parent: Optional[QObject]) -> None:
        object.__setattr__(self, "_parent", parent)

    def _emit(self, signal: str, *args: Any) -> None:
        if signal not in type(self)._all("SIGNALS"):
            raise AttributeError(f"{type(self).API} has no signal {signal!r}")
        if not self._blocked:
            for slot in list(self._slots.get(signal, [])):
                slot(*args[:_positional_count(slot, len(args))])  # PythonQt drops what the slot does not take


def _positional_count(slot: Callable[..., Any], available: int) -> int:
    import inspect

    parameters = inspect.signature(slot).parameters.values()
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return available
    return min(available, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters))


class QWidget(QObject):
    API = "QWidget"
    PROPERTIES = ("enabled", "toolTip", "visible", "styleSheet")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "enabled", True)
        object.__setattr__(self, "toolTip", "")
        object.__setattr__(self, "visible", True)
        object.__setattr__(self, "styleSheet", "")

    def setStyleSheet(self, styleSheet: str) -> None:
        object.__setattr__(self, "styleSheet", styleSheet)


class QLayout(QObject):
    API = "QLayout"

    def addWidget(self, w: Any) -> None:
        pass


class QBoxLayout(QLayout):
    API = "QBoxLayout"

    def addStretch(self, stretch: int = 0) -> None:
        pass


class QVBoxLayout(QBoxLayout):
    API = "QVBoxLayout"


class QHBoxLayout(QBoxLayout):
    API = "QHBoxLayout"


class QFormLayout(QLayout):
    API = "QFormLayout"

    def addRow(self, *args: Any) -> None:
        pass


class QLabel(QWidget):
    API = "QLabel"
    PROPERTIES = ("text", "wordWrap")

    def __init__(self, text: str = "", *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "wordWrap", False)

    def setWordWrap(self, on: bool) -> None:
        object.__setattr__(self, "wordWrap", bool(on))


class QAbstractButton(QWidget):
    API = "QAbstractButton"
    SIGNALS = ("clicked()", "clicked(bool)", "toggled(bool)", "pressed()", "released()")
    PROPERTIES = ("text", "checkable", "checked")

    def __init__(self, text: str = "", *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "text", text if isinstance(text, str) else "")
        object.__setattr__(self, "checkable", False)
        object.__setattr__(self, "checked", False)

    def __setattr__(self, name: str, value: Any) -> None:
        changed = name == "checked" and bool(value) != self.checked
        super().__setattr__(name, value)
        if changed:
            self._emit("toggled(bool)", bool(value))

    def _click(self) -> None:
        if self.enabled:
            if self.checkable:
                self.checked = not self.checked
            self._emit("clicked(bool)", self.checked)


class QPushButton(QAbstractButton):
    API = "QPushButton"


class QCheckBox(QAbstractButton):
    API = "QCheckBox"
    SIGNALS = ("stateChanged(int)",)

    def __init__(self, text: str = "", *args: Any) -> None:
        super().__init__(text, *args)
        object.__setattr__(self, "checkable", True)


class QLineEdit(QWidget):
    API = "QLineEdit"
    SIGNALS = ("textChanged(QString)", "editingFinished()", "returnPressed()")
    PROPERTIES = ("text", "echoMode", "placeholderText", "readOnly")
    Normal, NoEcho, Password = 0, 1, 2

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "text", "")
        object.__setattr__(self, "echoMode", self.Normal)


class QComboBox(QWidget):
    API = "QComboBox"
    SIGNALS = ("currentIndexChanged(int)", "currentTextChanged(QString)")
    PROPERTIES = ("currentText", "currentIndex")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "_items", [])
        object.__setattr__(self, "currentText", "")
        object.__setattr__(self, "currentIndex", -1)

    def addItems(self, texts: list[str]) -> None:
        self._items.extend(texts)
        if self.currentIndex < 0 and self._items:
            object.__setattr__(self, "currentIndex", 0)
            object.__setattr__(self, "currentText", self._items[0])

    def clear(self) -> None:
        self._items.clear()
        object.__setattr__(self, "currentIndex", -1)
        object.__setattr__(self, "currentText", "")


class QListWidgetItem:
    API = "QListWidgetItem"

    def __init__(self, text: str = "") -> None:
        self._text, self._data = text, {}

    def setData(self, role: int, value: Any) -> None:
        self._data[role] = value

    def data(self, role: int) -> Any:
        return self._data.get(role)

    def text(self) -> str:
        return self._text


class QListWidget(QWidget):
    API = "QListWidget"
    SIGNALS = ("itemDoubleClicked(QListWidgetItem*)", "itemClicked(QListWidgetItem*)", "currentRowChanged(int)")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "_items", [])

    def clear(self) -> None:
        self._items.clear()

    def addItem(self, item: QListWidgetItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def item(self, row: int) -> Optional[QListWidgetItem]:
        return self._items[row] if 0 <= row < len(self._items) else None


class QTableWidgetItem:
    API = "QTableWidgetItem"

    def __init__(self, text: str = "") -> None:
        self._text, self._flags, self._tooltip = text, None, ""

    def setFlags(self, flags: int) -> None:
        self._flags = flags

    def setToolTip(self, toolTip: str) -> None:
        self._tooltip = toolTip

    def text(self) -> str:
        return self._text


class QTableWidget(QWidget):
    API = "QTableWidget"
    SIGNALS = ("cellChanged(int,int)", "cellDoubleClicked(int,int)")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "_cells", {})
        object.__setattr__(self, "_rows", 0)

    def setColumnCount(self, columns: int) -> None:
        pass

    def setHorizontalHeaderLabels(self, labels: list[str]) -> None:
        pass

    def setRowCount(self, rows: int) -> None:
        object.__setattr__(self, "_rows", rows)
        for key in [k for k in self._cells if k[0] >= rows]:
            del self._cells[key]

    def rowCount(self) -> int:
        return self._rows

    def setItem(self, row: int, column: int, item: QTableWidgetItem) -> None:
        self._cells[(row, column)] = item

    def item(self, row: int, column: int) -> Optional[QTableWidgetItem]:
        return self._cells.get((row, column))

    def resizeColumnsToContents(self) -> None:
        pass


class QProgressBar(QWidget):
    API = "QProgressBar"
    PROPERTIES = ("value",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "value", 0)

    def setRange(self, minimum: int, maximum: int) -> None:
        pass

    def setValue(self, value: int) -> None:
        object.__setattr__(self, "value", int(value))


class QTimer(QObject):
    API = "QTimer"
    SIGNALS = ("timeout()",)
    PROPERTIES = ("singleShot", "interval", "active")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "singleShot", False)
        object.__setattr__(self, "interval", 0)
        object.__setattr__(self, "active", False)

    def setSingleShot(self, singleShot: bool) -> None:
        object.__setattr__(self, "singleShot", bool(singleShot))

    def setInterval(self, msec: int) -> None:
        object.__setattr__(self, "interval", int(msec))

    def start(self) -> None:
        object.__setattr__(self, "active", True)

    def stop(self) -> None:
        object.__setattr__(self, "active", False)

    def isActive(self) -> bool:
        return self.active

    def _fire(self) -> None:
        """Time passes: a running timer times out."""
        if self.active:
            if self.singleShot:
                self.stop()
            self._emit("timeout()")


class QKeySequence:
    API = "QKeySequence"

    def __init__(self, key: str) -> None:
        self._key = str(key)

    def toString(self) -> str:
        return self._key


class QShortcut(QObject):
    """Shortcuts of one window: equal keys twice are ambiguous and neither fires (Qt's rule)."""

    API = "QShortcut"
    SIGNALS = ("activated()", "activatedAmbiguously()")
    PROPERTIES = ("enabled",)
    _registry: list[QShortcut] = []

    def __init__(self, key: QKeySequence, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        object.__setattr__(self, "_key", key.toString())
        object.__setattr__(self, "enabled", True)
        QShortcut._registry.append(self)

    def key(self) -> QKeySequence:
        return QKeySequence(self._key)

    def setParent(self, parent: Optional[QObject]) -> None:
        super().setParent(parent)
        if parent is None and self in QShortcut._registry:
            QShortcut._registry.remove(self)

    @classmethod
    def _press(cls, key: str) -> int:
        """The user presses ``key``: returns how many shortcuts fired (0 when ambiguous)."""
        matching = [s for s in cls._registry if s._key == key and s.enabled]
        if len(matching) == 1:
            matching[0]._emit("activated()")
            return 1
        for shortcut in matching:
            shortcut._emit("activatedAmbiguously()")
        return 0


class QSettings(QObject):
    API = "QSettings"
    _store: dict[str, Any] = {}

    def value(self, key: str, defaultValue: Any = None) -> Any:
        return QSettings._store.get(key, defaultValue)

    def setValue(self, key: str, value: Any) -> None:
        QSettings._store[key] = value

    def remove(self, key: str) -> None:
        QSettings._store.pop(key, None)

    def contains(self, key: str) -> bool:
        return key in QSettings._store


class QFileDialog(QWidget):
    API = "QFileDialog"
    _answer = ""

    @staticmethod
    def getExistingDirectory(parent: Any = None, caption: str = "", dir: str = "", options: int = 0) -> str:
        return QFileDialog._answer


class Qt:
    API = "Qt"
    UserRole = 0x0100
    WaitCursor = 3
    ItemIsSelectable = 1
    ItemIsEnabled = 32


class ctkCollapsibleButton(QAbstractButton):
    API = "ctkCollapsibleButton"
    PROPERTIES = ("collapsed",)


class ctkSliderWidget(QWidget):
    """Its value is clamped to [minimum, maximum] and valueChanged(double) is emitted when it changes."""

    API = "ctkSliderWidget"
    SIGNALS = ("valueChanged(double)", "valueIsChanging(double)")
    PROPERTIES = ("decimals", "singleStep", "minimum", "maximum", "value")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        for name, value in (("decimals", 2), ("singleStep", 1.0), ("minimum", 0.0), ("maximum", 99.0),
                            ("value", 0.0)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("minimum", "maximum"):
            super().__setattr__(name, float(value))
            name, value = "value", self.value  # re-clamped like ctkSliderWidget
        if name == "value":
            clamped = float(min(max(float(value), self.minimum), self.maximum))
            changed = clamped != self.value
            super().__setattr__("value", clamped)
            if changed:
                self._emit("valueChanged(double)", clamped)
            return
        super().__setattr__(name, value)


class qMRMLNodeComboBox(QWidget):
    API = "qMRMLNodeComboBox"
    SIGNALS = ("currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)", "currentNodeIDChanged(QString)")
    PROPERTIES = ("nodeTypes", "hideChildNodeTypes", "noneEnabled", "addEnabled", "removeEnabled")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        for name in self.PROPERTIES:
            object.__setattr__(self, name, None)
        object.__setattr__(self, "_current", None)

    def setMRMLScene(self, scene: vtkMRMLScene) -> None:
        pass

    def currentNode(self) -> Optional[vtkMRMLNode]:
        return self._current

    def setCurrentNode(self, node: Optional[vtkMRMLNode]) -> None:
        object.__setattr__(self, "_current", node)
        self._emit("currentNodeChanged(vtkMRMLNode*)", node)


class qMRMLSegmentEditorWidget(QWidget):
    """The editor: edits reach only the segmentation it was given (the proxy: one frame)."""

    API = "qMRMLSegmentEditorWidget"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "_segmentation", None)
        object.__setattr__(self, "_source", None)

    def setSegmentationNode(self, node: vtkMRMLSegmentationNode) -> None:
        object.__setattr__(self, "_segmentation", node)

    def segmentationNode(self) -> Optional[vtkMRMLSegmentationNode]:
        return self._segmentation

    def _set_source(self, node: vtkMRMLVolumeNode) -> None:
        object.__setattr__(self, "_source", node)

    def _paint(self, segment_name: str, mask: np.ndarray, radius_slices: int = 0) -> None:
        """One stroke: adds ``mask`` ([k, j, i] of the source volume's shape, or one [j, i] slice to use on
        slice 0) to a segment. ``radius_slices`` > 0 is the sphere brush (or smoothing) reaching that many
        slices along k — all the slices the edited segmentation has."""
        node = self._segmentation
        segmentation = node.GetSegmentation()
        segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
        shape = self._source._array.shape[:3]
        stroke = np.zeros(shape, bool)
        paint = np.asarray(mask, bool)
        stroke[...] = paint if paint.ndim == 3 else paint[None]
        drawn = stroke.copy()
        for shift in range(1, min(radius_slices, shape[0] - 1) + 1):  # a 3-D brush reaches the neighbouring slices
            stroke[shift:] |= drawn[:-shift]
            stroke[:-shift] |= drawn[shift:]
        current = segmentation.GetSegment(segment_id)._mask
        segmentation._set_mask(segment_id, stroke if current is None else (current | stroke))

    def _erase(self, segment_name: str) -> None:
        segmentation = self._segmentation.GetSegmentation()
        segmentation._set_mask(segmentation.GetSegmentIdBySegmentName(segment_name), None)


def _source_volume_methods(version: tuple[int, int]) -> dict[str, Callable[..., Any]]:
    def set_source(self: qMRMLSegmentEditorWidget, node: vtkMRMLVolumeNode) -> None:
        self._set_source(node)

    names = ["setMasterVolumeNode"] + (["setSourceVolumeNode"] if version >= (5, 2) else [])
    return {name: set_source for name in names}


# ====================================================================================== Slicer application
class qMRMLSequenceBrowserToolBar(QWidget):
    API = "qMRMLSequenceBrowserToolBar"

    def __init__(self, version: tuple[int, int]) -> None:
        super().__init__()
        object.__setattr__(self, "_browser", None)
        object.__setattr__(self, "_play_shortcuts", [])
        if version >= (5, 8):  # qMRMLSequenceBrowserPlayWidget's own shortcuts since 5.8
            for key, step in (("Ctrl+Shift+Right", 1), ("Ctrl+Shift+Left", -1)):
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.connect("activated()", lambda s=step: self._browser and self._browser.SelectNextItem(s))
                self._play_shortcuts.append(shortcut)

    def activeBrowserNode(self) -> Optional[vtkMRMLSequenceBrowserNode]:
        return self._browser

    def setActiveBrowserNode(self, browserNode: vtkMRMLSequenceBrowserNode) -> None:
        object.__setattr__(self, "_browser", browserNode)


class qSlicerSequencesModule:
    API = "qSlicerSequencesModule"

    def __init__(self, scene: vtkMRMLScene, version: tuple[int, int]) -> None:
        self._logic = vtkSlicerSequencesLogic(scene)
        self._toolbar = qMRMLSequenceBrowserToolBar(version)

    def logic(self) -> vtkSlicerSequencesLogic:
        return self._logic

    def toolBar(self) -> qMRMLSequenceBrowserToolBar:
        return self._toolbar

    def setToolBarActiveBrowserNode(self, browserNode: vtkMRMLSequenceBrowserNode) -> None:
        self._toolbar.setActiveBrowserNode(browserNode)

    def showSequenceBrowser(self, browserNode: vtkMRMLSequenceBrowserNode) -> bool:
        return True


class qSlicerSegmentationsModule:
    API = "qSlicerSegmentationsModule"

    def __init__(self, scene: vtkMRMLScene) -> None:
        self._logic = vtkSlicerSegmentationsModuleLogic(scene)

    def logic(self) -> vtkSlicerSegmentationsModuleLogic:
        return self._logic


class qSlicerPlotsModule:
    API = "qSlicerPlotsModule"

    def __init__(self) -> None:
        self._logic = vtkSlicerPlotsLogic()

    def logic(self) -> vtkSlicerPlotsLogic:
        return self._logic


class qSlicerScriptedLoadableModuleWidget:
    """``slicer.modules.segmenteditor.widgetRepresentation()``: ``self()`` is the Python widget (SegmentEditor.py)."""

    API = "qSlicerScriptedLoadableModuleWidget"

    def __init__(self, python_widget: Any) -> None:
        self._python = python_widget

    def self(self) -> Any:
        return self._python


class qSlicerSegmentEditorModule:
    API = "qSlicerScriptedLoadableModule"

    def __init__(self, version: tuple[int, int]) -> None:
        editor_class = type("qMRMLSegmentEditorWidget", (qMRMLSegmentEditorWidget,), _source_volume_methods(version))
        self._widget = qSlicerScriptedLoadableModuleWidget(types.SimpleNamespace(editor=editor_class()))

    def widgetRepresentation(self) -> qSlicerScriptedLoadableModuleWidget:
        return self._widget


class qMRMLSliceView(QWidget):
    API = "qMRMLSliceView"


class qMRMLSliceWidget(QWidget):
    API = "qMRMLSliceWidget"

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_node", vtkMRMLSliceNode())
        object.__setattr__(self, "_logic", vtkMRMLSliceLogic(self._node))
        object.__setattr__(self, "_view", qMRMLSliceView())
        object.__setattr__(self, "_background", None)

    def mrmlSliceNode(self) -> vtkMRMLSliceNode:
        return self._node

    def sliceLogic(self) -> vtkMRMLSliceLogic:
        return self._logic

    def sliceView(self) -> qMRMLSliceView:
        return self._view


class qMRMLPlotView(QWidget):
    API = "qMRMLPlotView"


class qMRMLPlotWidget(QWidget):
    API = "qMRMLPlotWidget"

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_view", qMRMLPlotView())

    def plotView(self) -> qMRMLPlotView:
        return self._view


class qSlicerLayoutManager(QObject):
    API = "qMRMLLayoutManager"

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_slices", {name: qMRMLSliceWidget() for name in ("Red", "Yellow", "Green")})
        object.__setattr__(self, "_plot", qMRMLPlotWidget())

    def sliceWidget(self, name: str) -> qMRMLSliceWidget:
        return self._slices[name]

    def plotWidget(self, id: int) -> qMRMLPlotWidget:
        return self._plot


class qSlicerApplication(QObject):
    API = "qSlicerApplication"
    PROPERTIES = ("majorVersion", "minorVersion")

    def __init__(self, version: tuple[int, int]) -> None:
        super().__init__()
        object.__setattr__(self, "majorVersion", version[0])
        object.__setattr__(self, "minorVersion", version[1])
        object.__setattr__(self, "_layout", qSlicerLayoutManager())
        object.__setattr__(self, "_cursor_depth", 0)

    def layoutManager(self) -> qSlicerLayoutManager:
        return self._layout

    def setOverrideCursor(self, cursor: Any) -> None:
        object.__setattr__(self, "_cursor_depth", self._cursor_depth + 1)

    def restoreOverrideCursor(self) -> None:
        object.__setattr__(self, "_cursor_depth", self._cursor_depth - 1)

    def processEvents(self) -> None:
        pass


class ctkDICOMDatabase:
    """``slicer.dicomDatabase``: files by SOP instance UID."""

    API = "ctkDICOMDatabase"

    def __init__(self) -> None:
        self._files: dict[str, str] = {}

    def fileForInstance(self, sopInstanceUID: str) -> str:
        return self._files.get(sopInstanceUID, "")

    def instanceForFile(self, fileName: str) -> str:
        return next((uid for uid, path in self._files.items() if path == fileName), "")


# ====================================================================================== slicer.util and modules
class VTKObservationMixin:
    """Observations by (object, event, method), removable by method, as ``slicer.util.VTKObservationMixin``."""

    API = "VTKObservationMixin"

    def __init__(self) -> None:
        self._observations: list[tuple[Any, int, Any, int]] = []

    def addObserver(self, obj: Any, event: int, method: Any, group: str = "none", priority: float = 0.0) -> None:
        if any(o is obj and e == event and m == method for o, e, m, _ in self._observations):
            return
        self._observations.append((obj, event, method, obj.AddObserver(event, method, priority)))

    def removeObserver(self, obj: Any, event: int, method: Any) -> None:
        for item in [i for i in self._observations if i[0] is obj and i[1] == event and i[2] == method]:
            obj.RemoveObserver(item[3])
            self._observations.remove(item)

    def removeObservers(self, method: Any = None) -> None:
        for item in [i for i in self._observations if method is None or i[2] == method]:
            item[0].RemoveObserver(item[3])
            self._observations.remove(item)

    def hasObserver(self, obj: Any, event: int, method: Any) -> bool:
        return any(o is obj and e == event and m == method for o, e, m, _ in self._observations)


class ScriptedLoadableModule:
    API = "ScriptedLoadableModule"

    def __init__(self, parent: Any) -> None:
        self.parent = parent


class ScriptedLoadableModuleWidget:
    API = "ScriptedLoadableModuleWidget"

    def __init__(self, parent: Any = None) -> None:
        self.parent = parent

    def setup(self) -> None:
        self.layout = QVBoxLayout()


class ScriptedLoadableModuleLogic:
    """``getParameterNode`` as Slicer's: one singleton ``vtkMRMLScriptedModuleNode`` per module, in the scene."""

    API = "ScriptedLoadableModuleLogic"

    def __init__(self, parent: Any = None) -> None:
        name = type(self).__name__
        self.moduleName = name[:-5] if name.endswith("Logic") else name
        self.isSingletonParameterNode = True

    def getParameterNode(self) -> vtkMRMLScriptedModuleNode:
        scene = sys.modules["slicer"].mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node.SetName(self.moduleName)
            scene.AddNode(node)
        return node


NODE_CLASSES: dict[str, type] = {cls.API: cls for cls in (
    vtkMRMLScriptedModuleNode, vtkMRMLDisplayNode, vtkMRMLColorTableNode, vtkMRMLStorageNode, vtkMRMLScalarVolumeNode,
    vtkMRMLVectorVolumeNode, vtkMRMLLabelMapVolumeNode, vtkMRMLMultiVolumeNode, vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode, vtkMRMLSequenceBrowserNode, vtkMRMLTableNode, vtkMRMLPlotSeriesNode, vtkMRMLPlotChartNode)}


class FakeSlicer:
    """The stand-in modules, installed in ``sys.modules`` (``slicer``, ``slicer.util``, ``qt``, ``ctk``, ``vtk``, ...)."""

    def __init__(self, version: tuple[int, int] = (5, 8)) -> None:
        self.version = version
        QShortcut._registry = []
        QSettings._store = {}
        self.scene = vtkMRMLScene()
        self.errors: list[str] = []
        self.captures: list[tuple[str, Any, int]] = []
        self.selected_modules: list[str] = []
        self.dicom = ctkDICOMDatabase()
        self.sequences = qSlicerSequencesModule(self.scene, version)
        self.segmenteditor = qSlicerSegmentEditorModule(version)
        self.plots = qSlicerPlotsModule()
        self.app = qSlicerApplication(version)
        self.main_window = QWidget()
        self.modules = self._build_modules()

    @property
    def editor(self) -> qMRMLSegmentEditorWidget:
        return self.segmenteditor.widgetRepresentation().self().editor

    @property
    def toolbar(self) -> qMRMLSequenceBrowserToolBar:
        return self.sequences.toolBar()

    def red_background(self) -> Optional[vtkMRMLVolumeNode]:
        return self.app.layoutManager().sliceWidget("Red")._background

    def _build_modules(self) -> dict[str, types.ModuleType]:
        fake = self
        vtk = types.ModuleType("vtk")
        for cls in (vtkCommand, vtkObject, vtkMatrix4x4, vtkStringArray):
            setattr(vtk, cls.API, cls)

        slicer = types.ModuleType("slicer")
        slicer.mrmlScene = self.scene
        slicer.app = self.app
        slicer.dicomDatabase = self.dicom
        slicer.modules = types.SimpleNamespace(sequences=self.sequences, segmenteditor=self.segmenteditor,
                                               plots=self.plots, segmentations=qSlicerSegmentationsModule(self.scene))
        segmentation_class = type("vtkSegmentation", (vtkSegmentation,), {
            ("SourceRepresentationModified" if self.version >= (5, 4) else "MasterRepresentationModified"):
                source_event()})
        slicer.vtkSegmentation = segmentation_class
        for cls in (vtkMRMLSequenceNode, vtkMRMLSequenceBrowserNode, vtkMRMLPlotSeriesNode, vtkMRMLPlotChartNode,
                    vtkMRMLTableNode, vtkMRMLScalarVolumeNode, vtkMRMLVolumeNode, vtkMRMLSegmentationNode,
                    vtkMRMLScene, qMRMLNodeComboBox, qMRMLPlotView):
            setattr(slicer, cls.API, cls)

        util = types.ModuleType("slicer.util")
        util.VTKObservationMixin = VTKObservationMixin

        def array_from_volume(volumeNode: vtkMRMLVolumeNode) -> np.ndarray:
            return volumeNode._array

        def update_volume_from_array(volumeNode: vtkMRMLVolumeNode, narray: np.ndarray) -> None:
            volumeNode._array = np.array(narray)
            volumeNode.Modified()

        def array_from_segment(segmentationNode: vtkMRMLSegmentationNode, segmentId: str,
                               referenceVolumeNode: Optional[vtkMRMLVolumeNode] = None) -> np.ndarray:
            segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
            shape = referenceVolumeNode._array.shape[:3]
            return np.zeros(shape, np.uint8) if segment._mask is None else segment._mask.astype(np.uint8)

        def update_segment(narray: np.ndarray, segmentationNode: vtkMRMLSegmentationNode, segmentId: str,
                           referenceVolumeNode: Optional[vtkMRMLVolumeNode] = None) -> None:
            segmentationNode.GetSegmentation()._set_mask(segmentId, np.asarray(narray) > 0)

        def set_slice_viewer_layers(background: Any = "keep-current", foreground: Any = "keep-current",
                                    label: Any = "keep-current", foregroundOpacity: Any = None,
                                    labelOpacity: Any = None, fit: bool = False, rotateToVolumePlane: bool = False
                                    ) -> None:
            for widget in fake.app.layoutManager()._slices.values():
                if background != "keep-current":
                    object.__setattr__(widget, "_background", background)
                if fit and widget._background is not None:  # FitSliceToAll: the middle of the volume's k extent
                    volume = widget._background
                    k = (volume._array.shape[0] - 1) / 2.0
                    widget.sliceLogic().SetSliceOffset(float((volume._ijk_to_ras @ [0, 0, k, 1])[2]))

        def update_table(tableNode: vtkMRMLTableNode, narrays: Any, columnNames: Any = None) -> vtkMRMLTableNode:
            if not isinstance(narrays, (list, tuple, np.ndarray)):
                raise ValueError("narrays must be an array or a list of arrays")
            tableNode._columns = dict(zip(columnNames or [], narrays, strict=False))
            return tableNode

        util.arrayFromVolume = array_from_volume
        util.updateVolumeFromArray = update_volume_from_array
        util.arrayFromSegmentBinaryLabelmap = array_from_segment
        util.updateSegmentBinaryLabelmapFromArray = update_segment
        util.setSliceViewerLayers = set_slice_viewer_layers
        util.updateTableFromArray = update_table
        util.mainWindow = lambda: fake.main_window
        util.errorDisplay = lambda text, windowTitle=None, parent=None, standardButtons=None, **kw: fake.errors.append(text)
        util.selectModule = lambda module: fake.selected_modules.append(module)
        slicer.util = util

        scripted = types.ModuleType("slicer.ScriptedLoadableModule")
        for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic):
            setattr(scripted, cls.__name__, cls)

        class ScriptedLoadableModuleTest(__import__("unittest").TestCase):
            def delayDisplay(self, message: str, requestedDelay: Any = None, msec: Any = None) -> None:
                pass

        scripted.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
        slicer.ScriptedLoadableModule = scripted

        qt = types.ModuleType("qt")
        for cls in (QObject, QWidget, QLabel, QPushButton, QCheckBox, QLineEdit, QComboBox, QListWidget,
                    QListWidgetItem, QTableWidget, QTableWidgetItem, QProgressBar, QTimer, QKeySequence, QShortcut,
                    QSettings, QFileDialog, QFormLayout, QHBoxLayout, QVBoxLayout, Qt):
            setattr(qt, cls.API, cls)
        ctk = types.ModuleType("ctk")
        ctk.ctkCollapsibleButton = ctkCollapsibleButton
        ctk.ctkSliderWidget = ctkSliderWidget

        screen_capture = types.ModuleType("ScreenCapture")

        class ScreenCaptureLogic:
            API = "ScreenCaptureLogic"

            def captureImageFromView(self, view: Any, filename: Any = None, transparentBackground: bool = False,
                                     volumeNode: Any = None) -> None:
                from PIL import Image

                browser = fake.toolbar.activeBrowserNode()
                fake.captures.append((str(filename), view, browser.GetSelectedItemNumber() if browser else -1))
                Image.new("RGB", (8, 6), (20, 20, 20)).save(filename)

        screen_capture.ScreenCaptureLogic = ScreenCaptureLogic
        return {"vtk": vtk, "slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": scripted,
                "qt": qt, "ctk": ctk, "ScreenCapture": screen_capture}


# ====================================================================================== how Slicer loads cines
def load_dicom_cine(fake: FakeSlicer, path: str, frames: np.ndarray, spacing: Optional[tuple[float, float]],
                    frame_time_ms: Optional[float], name: str = "1: US echo [1]") -> vtkMRMLSequenceBrowserNode:
    """The nodes ``DICOMImageSequencePlugin.load`` makes of an ultrasound cine file (frames ``T×H×W`` or ``T×H×W×3``).

    ``spacing`` is what the plugin found in the file's one ultrasound region ((row, col) mm), else
    the plugin keeps 1.0; the file at ``path`` is registered in the DICOM database for the frames.
    """
    scene = fake.scene
    uid = f"1.2.826.0.1.3680043.9.7.{len(fake.dicom._files) + 1}"
    fake.dicom._files[uid] = str(path)
    grey = frames.ndim == 3
    frame = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode" if grey else "vtkMRMLVectorVolumeNode")
    sx, sy = (spacing[1], spacing[0]) if spacing else (1.0, 1.0)
    frame._ijk_to_ras = np.diag([-sx, -sy, 1.0, 1.0])  # the plugin's "rotate 180°", spacing on i and j
    frame.SetAttribute("DICOM.instanceUIDs", uid)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    if frame_time_ms:
        sequence.SetIndexName("time")
        sequence.SetIndexUnit("s")
    else:
        sequence.SetIndexName("frame")
        sequence.SetIndexUnit("")
    for t in range(frames.shape[0]):
        frame._array = frames[t:t + 1].copy()  # [1, j, i] (or [1, j, i, 3])
        value = f"{t * frame_time_ms / 1000.0:.3f}" if frame_time_ms else str(t)
        sequence.SetDataNodeAtValue(frame, value)
    scene.RemoveNode(frame)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetPlaybackRateFps(1000.0 / frame_time_ms if frame_time_ms else 10.0)
    browser.AddSynchronizedSequenceNode(sequence)  # the first one added is the master
    fake.sequences.logic().UpdateProxyNodesFromSequences(browser)
    fake.sequences.setToolBarActiveBrowserNode(browser)
    return browser


def load_volume_file(fake: FakeSlicer, path: str, kji: np.ndarray, ijk_to_ras: np.ndarray,
                     node_class: str = "vtkMRMLScalarVolumeNode", attributes: Optional[dict[str, str]] = None
                     ) -> vtkMRMLScalarVolumeNode:
    """A volume node as Slicer makes it from a file: its voxels, geometry, and a storage node naming the file."""
    node = fake.scene.AddNewNodeByClass(node_class, str(path).split("/")[-1].split(".")[0])
    node._array = np.array(kji)
    node._ijk_to_ras = np.array(ijk_to_ras, dtype=float)
    storage = fake.scene.AddNewNodeByClass("vtkMRMLStorageNode")
    storage.SetFileName(str(path))
    node._storage = storage
    for key, value in (attributes or {}).items():
        node.SetAttribute(key, value)
    return node


def import_echoforge(fake: FakeSlicer, monkeypatch: Any) -> types.ModuleType:
    """``EchoForge.py`` imported with the stand-ins in ``sys.modules`` (and its ``EchoForgeLib`` freshly)."""
    import importlib.util
    from pathlib import Path

    module_dir = Path(__file__).resolve().parents[1] / "slicer_extension" / "EchoForge"
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(module_dir))
    for name in [m for m in sys.modules if m == "EchoForgeLib" or m.startswith("EchoForgeLib.")]:
        monkeypatch.delitem(sys.modules, name)
    spec = importlib.util.spec_from_file_location("EchoForge", module_dir / "EchoForge.py")
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "EchoForge", loaded)  # as Slicer imports it (dataclasses look it up)
    spec.loader.exec_module(loaded)
    return loaded


def draw_on_frame(fake: FakeSlicer, widget: Any, frame: int, segment: str, mask_hw: np.ndarray,
                  radius_slices: int = 0) -> None:
    """The clinician shows ``frame``, opens the Segment Editor from the module and paints ``mask_hw``
    (upright H×W, like the video's frames) into ``segment``; ``radius_slices`` makes it a 3-D brush."""
    widget.logic.cine.browser.SetSelectedItemNumber(frame)
    widget.onEditSegments()
    layout = sys.modules["EchoForge"].single_frame_layout(widget.logic.session.video)
    fake.editor._paint(segment, layout.to_slicer_array(np.asarray(mask_hw)[None].astype(np.uint8)) > 0, radius_slices)
