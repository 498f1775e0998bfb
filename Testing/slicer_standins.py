"""Every stand-in of the Slicer test harness, in one place (see Testing/slicer_harness.py).

Slicer's Python layer (../shared/slicer/Base/Python) and the MRML classes and module logics
(slicer-core wheel) are real. What follows replaces only what needs Qt, which cannot run here:

- ``qt`` / ``ctk``: the Python modules PythonQt builds. QIcon, QColor, QSettings and the Qt
  namespace hold values; every other class is a type that the parameter node wrapper can name
  in its type checks, and that raises when a test tries to build a widget from it.
- ``App``: ``slicer.app`` (qSlicerApplication): temporary path, testing mode, the application
  logic, settings, the startup environment, processEvents (no event loop: nothing to do).
- ``LayoutManager``: qSlicerLayoutManager: the slice view names, their slice nodes and logics
  (real vtkMRMLSliceLogic objects), the layout node's arrangement, resetSliceViews.
- ``IOManager``: qSlicerCoreIOManager: loadNodes/saveNodes/exportNodes through the real
  storage nodes and volumes logic (Slicer's own readers and writers).
- ``slicer_widget_class``: the ``slicer.q*`` widget classes (qMRMLNodeComboBox, ...) as
  type names, like the other Qt classes.
- ``ModuleParent``: qSlicerScriptedLoadableModule / qSlicerAbstractCoreModule, the C++ object
  a module class gets as ``parent`` and that ``slicer.modules.<name>`` holds (with ``logic()``).
- ``ProcessEnvironment``: QProcessEnvironment, what ``startupEnvironment()`` returns.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import types
from pathlib import Path

import slicer
import vtk

NEEDS_QT = "needs Qt, which the test harness does not have (run it in the Slicer application)"


# --------------------------------------------------------------------------- qt and ctk
class _QtClass:
    """Any Qt/CTK class without a stand-in below: a name to compare types with; not buildable."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} {NEEDS_QT}")


class QIcon:
    """qt.QIcon: keeps the path of the icon file (ScriptedLoadableModule sets parent.icon)."""

    def __init__(self, path=""):
        self.path = str(path)

    def isNull(self):
        return not Path(self.path).is_file()


class QColor:
    """qt.QColor: a colour name (the parameter node wrapper subclasses it for QColor fields)."""

    def __init__(self, name="#000000"):
        self._name = str(name)

    def name(self):
        return self._name

    def setNamedColor(self, name):
        self._name = str(name)


class QSettings:
    """qt.QSettings: an in-memory store shared by all instances, like the settings file."""

    _store: dict = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def setValue(self, key, value):
        self._store[key] = value

    def contains(self, key):
        return key in self._store


class _QtNamespace:
    """qt.Qt: enum values (cursor shapes, key modifiers) as their names."""

    def __getattr__(self, name):
        return f"Qt.{name}"


def _module(name, classes):
    """A module whose listed classes are real stand-ins and whose other Qt names are _QtClass."""
    module = types.ModuleType(name, f"Stand-in for PythonQt's '{name}' module ({NEEDS_QT}).")
    module.__dict__.update(classes)

    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        cls = type(attr, (_QtClass,), {"__module__": name})
        setattr(module, attr, cls)  # one type per name: type(w) == qt.QCheckBox stays stable
        return cls

    module.__getattr__ = missing
    return module


def qt_module():
    """The ``qt`` stand-in."""
    classes = {"QIcon": QIcon, "QColor": QColor, "QSettings": QSettings, "Qt": _QtNamespace()}
    return _module("qt", classes)


def ctk_module():
    """The ``ctk`` stand-in (only type names: every CTK class is a widget)."""
    return _module("ctk", {})


_SLICER_WIDGETS = _module("slicer_widgets", {})


def slicer_widget_class(name):
    """``slicer.q*`` (qMRMLNodeComboBox, qSlicerWidget, ...): the Qt widget classes of Slicer,
    type names only; any other missing ``slicer`` attribute stays an AttributeError."""
    if len(name) > 1 and name[0] == "q" and name[1].isupper():
        return getattr(_SLICER_WIDGETS, name)
    raise AttributeError(f"module 'slicer' has no attribute '{name}'")


# --------------------------------------------------------------------------- slicer.app
class ProcessEnvironment:
    """QProcessEnvironment: the environment the application was started with."""

    def __init__(self, env):
        self._env = dict(env)

    def keys(self):
        return list(self._env)

    def value(self, key, default=""):
        return self._env.get(key, default)


class LayoutManager:
    """qSlicerLayoutManager over the real layout node, slice nodes and slice logics."""

    def __init__(self, harness):
        self._h = harness

    def sliceViewNames(self):
        return list(self._h.slice_logics)

    def sliceWidget(self, name):
        logic = self._h.slice_logics[name]
        return types.SimpleNamespace(
            mrmlSliceNode=logic.GetSliceNode,
            sliceLogic=lambda: logic,
            sliceController=lambda: None,
        )

    def mrmlSliceLogics(self):
        collection = vtk.vtkCollection()
        for logic in self._h.slice_logics.values():
            collection.AddItem(logic)
        return collection

    def setLayout(self, layout):
        self._h.layout_node.SetViewArrangement(layout)

    @property
    def layout(self):
        return self._h.layout_node.GetViewArrangement()

    def resetSliceViews(self):
        for logic in self._h.slice_logics.values():
            logic.FitSliceToBackground()  # what the slice views' reset button does
            logic.SnapSliceOffsetToIJK()

    def threeDWidget(self, index):
        raise NotImplementedError(f"a 3D view {NEEDS_QT}")


class IOManager:
    """qSlicerCoreIOManager: Slicer's readers and writers are the real storage nodes."""

    def __init__(self, harness):
        self._h = harness

    @staticmethod
    def fileType(filename):
        name = str(filename).lower()
        return "SceneFile" if name.endswith(".mrml") else "VolumeFile"

    def loadNodes(self, fileType, properties, loadedNodes=None, userMessages=None):
        scene, path = slicer.mrmlScene, str(properties["fileName"])
        if fileType == "SceneFile":
            scene.SetURL(path)
            return bool(scene.Import())
        if fileType != "VolumeFile":
            raise NotImplementedError(f"loading {fileType} files is not in the test harness")
        name = properties.get("name") or Path(path).name.split(".")[0]
        labelmap = 1 if properties.get("labelmap") else 0
        node = self._h.logics["volumes"].AddArchetypeVolume(path, name, labelmap)
        if node is not None and loadedNodes is not None:
            loadedNodes.AddItem(node)
        if node is not None and properties.get("show", True):
            slicer.util.setSliceViewerLayers(background=node)
        return node is not None

    @staticmethod
    def fileWriterFileType(node):
        return "SceneFile" if node is None else "NodeFile"

    @staticmethod
    def fileWriterExtensions(node):
        storage = node.CreateDefaultStorageNode()
        slicer.mrmlScene.AddNode(storage)  # a storage node knows its formats inside a scene
        storage.UnRegister(None)
        formats = storage.GetSupportedWriteFileTypes()
        found = [formats.GetValue(i) for i in range(formats.GetNumberOfValues())]
        slicer.mrmlScene.RemoveNode(storage)
        return found

    def extractKnownExtension(self, filename, node):
        name = str(filename).lower()
        helper = slicer.vtkDataFileFormatHelper
        known = [
            helper.GetFileExtensionFromFormatString(f) for f in self.fileWriterExtensions(node)
        ]
        return max((e for e in known if e and name.endswith(e)), key=len, default="")

    def saveNodes(self, fileType, properties, userMessages=None):
        if fileType == "SceneFile":
            slicer.mrmlScene.SetURL(str(properties["fileName"]))
            return bool(slicer.mrmlScene.Commit())
        node = slicer.mrmlScene.GetNodeByID(properties["nodeID"])
        storage = node.GetStorageNode()
        if storage is None:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
        storage.SetFileName(str(properties["fileName"]))
        return bool(storage.WriteData(node))

    def exportNodes(self, nodeIDs, fileNames, properties, hardenTransform, userMessages=None):
        """Write copies of the nodes (a temporary scene: the nodes' own storage is untouched)."""
        ok = True
        for nodeID, fileName in zip(nodeIDs, fileNames):
            node = slicer.mrmlScene.GetNodeByID(nodeID)
            scene = slicer.vtkMRMLScene()
            copy = scene.AddNewNodeByClass(node.GetClassName())
            copy.Copy(node)
            copy.CopyContent(node, True)
            copy.SetAndObserveTransformNodeID(None)
            parent = node.GetParentTransformNode()
            if hardenTransform and parent is not None:
                toWorld = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
                m = vtk.vtkMatrix4x4()
                parent.GetMatrixTransformToWorld(m)
                toWorld.SetMatrixTransformToParent(m)
                copy.SetAndObserveTransformNodeID(toWorld.GetID())
                slicer.vtkSlicerTransformLogic.hardenTransform(copy)
            storage = copy.CreateDefaultStorageNode()
            scene.AddNode(storage)
            storage.UnRegister(None)
            storage.SetFileName(str(fileName))
            ok = bool(storage.WriteData(copy)) and ok
        return ok


class App:
    """slicer.app (qSlicerApplication) for a harness: testing mode on, no event loop."""

    applicationName = "Slicer"
    majorVersion, minorVersion = 5, 10

    def __init__(self, harness):
        self._h = harness
        self.temporaryPath = tempfile.mkdtemp(prefix="EDPSN-harness-")
        atexit.register(shutil.rmtree, self.temporaryPath, True)
        self._env = ProcessEnvironment(os.environ)
        self._layout, self._io = LayoutManager(harness), IOManager(harness)
        self._settings = QSettings()

    def testingEnabled(self):
        return True  # Slicer under ctest or --testing: message boxes return at once

    def commandOptions(self):
        return types.SimpleNamespace(testingEnabled=True, noMainWindow=True)

    def applicationLogic(self):
        return self._h.app_logic

    def mrmlScene(self):
        return slicer.mrmlScene

    def processEvents(self, *args):
        pass  # no Qt event loop: the MRML events have been delivered already

    def layoutManager(self):
        return self._layout

    def coreIOManager(self):
        return self._io

    ioManager = coreIOManager

    def startupEnvironment(self):
        return self._env

    def settings(self):
        return self._settings

    userSettings = settings

    def translate(self, context, text):
        return text

    def moduleManager(self):
        raise NotImplementedError(f"the module manager (module widgets) {NEEDS_QT}")

    def setOverrideCursor(self, cursor):
        pass  # a wait cursor is a widget thing

    def restoreOverrideCursor(self):
        pass


class ModuleParent:
    """qSlicerAbstractCoreModule: what a module class gets as ``parent`` and what
    ``slicer.modules.<name>`` holds (``logic()`` gives the module's real C++ logic, if any)."""

    def __init__(self, name, path=None, logic=None):
        self.name, self.path, self._logic = name, str(path) if path else "", logic
        self.title, self.categories, self.dependencies, self.contributors = name, [], [], []
        self.helpText = self.acknowledgementText = ""
        self.icon, self.hidden, self.isEntered = None, False, False

    def logic(self):
        return self._logic
