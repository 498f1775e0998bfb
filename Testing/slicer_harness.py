"""Slicer's own Python layer on the slicer-core wheel: the modules run on Slicer's real code.

``slicer-core`` (PyPI) gives the ``slicer`` package with every MRML class and module logic;
``../shared/slicer/Base/Python`` (Slicer's own pure-Python layer, used in place, never copied or
edited) gives ``slicer.util``, ``ScriptedLoadableModule``, ``parameterNodeWrapper``,
``packaging``, ``i18n``. The Slicer application assembles the package the same way (its
``slicer/__init__.py``): the compiled kits first, then the Python modules of the package
folder, ``slicer.modules`` and ``slicer.moduleNames`` as plain modules, ``slicer.app`` and
``slicer.mrmlScene`` set by the application. Only what needs Qt is stood in for, all of it in
Testing/slicer_standins.py.

The scene is set up as the application sets it up: application logic, colour logic with
Slicer's default colour files, the data-IO logics, the module logics, the layout logic (which
makes the Red, Yellow and Green slice nodes) and one slice logic per slice node, whose
blended image is what a slice view displays.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Slicer's own Python layer and colour files (../shared/slicer beside the repository).
SLICER_SOURCE = REPO.parent / "shared" / "slicer"
BASE_PYTHON = SLICER_SOURCE / "Base" / "Python"
#: The Python the harness must start on (the slicer-core wheels are built for it).
HARNESS_PYTHON = (3, 11)
#: Module name -> the C++ logic class behind ``slicer.modules.<name>.logic()``.
MODULE_LOGICS = {
    "volumes": "vtkSlicerVolumesLogic",
    "colors": "vtkSlicerColorLogic",
    "segmentations": "vtkSlicerSegmentationsModuleLogic",
    "tables": "vtkSlicerTablesLogic",
    "plots": "vtkSlicerPlotsLogic",
    "transforms": "vtkSlicerTransformLogic",
    "subjecthierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
}
SLICE_VIEWS = ("Red", "Yellow", "Green")


class HarnessError(RuntimeError):
    """The harness cannot start: what is missing and how to get it."""


def _graft_slicer_python(standins):
    """Put Slicer's Base/Python/slicer package over the wheel's ``slicer`` package."""
    import slicer

    if not hasattr(slicer, "vtkMRMLScene"):
        raise HarnessError(
            "the installed 'slicer' package is not slicer-core (pip install slicer-core)"
        )
    if not (BASE_PYTHON / "slicer" / "ScriptedLoadableModule.py").is_file():
        raise HarnessError(f"Slicer's Python layer is missing: {BASE_PYTHON} (see shared/slicer)")
    sys.modules.setdefault("qt", standins.qt_module())
    sys.modules.setdefault("ctk", standins.ctk_module())
    slicer.__getattr__ = standins.slicer_widget_class  # PEP 562: only for missing names
    # The wheel's own slicer.util (array helpers only) gives way to Slicer's util.py.
    sys.modules.pop("slicer.util", None)
    folder = str(BASE_PYTHON / "slicer")
    if folder not in slicer.__path__:
        slicer.__path__.insert(0, folder)
    if str(BASE_PYTHON) not in sys.path:
        sys.path.append(str(BASE_PYTHON))  # sitkUtils, as in the application
    for name in ("modules", "moduleNames"):  # slicer/__init__.py makes these plain modules
        module = types.ModuleType(f"slicer.{name}")
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)
    import slicer.util

    slicer.util = sys.modules["slicer.util"]
    return slicer


class Harness:
    """One Slicer-like application in this process (``slicer.app``, ``slicer.mrmlScene``)."""

    def __init__(self):
        import Testing_slicer_standins as standins  # noqa: N813 (see load_standins)

        self.standins = standins
        self.slicer = slicer = _graft_slicer_python(standins)
        self.scene = slicer.vtkMRMLScene()
        slicer.mrmlScene = self.scene
        self.app_logic = app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(self.scene)
        # The colour logic finds Slicer's default tables at <home>/<share>/ColorFiles.
        app_logic.SetHomeDirectory(str(SLICER_SOURCE / "Base" / "Logic"))
        app_logic.SetShareDirectory("Resources")
        self.logics = {}
        for name, cls in MODULE_LOGICS.items():
            logic = getattr(slicer, cls)()
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(self.scene)
            app_logic.SetModuleLogic(name.capitalize(), logic)
            self.logics[name] = logic
        app_logic.SetColorLogic(self.logics["colors"])
        self.io_logic = slicer.vtkDataIOManagerLogic()
        self.io_logic.SetMRMLApplicationLogic(app_logic)
        self.io_logic.SetMRMLScene(self.scene)
        self.remote_io = slicer.vtkMRMLRemoteIOLogic()
        self.remote_io.SetMRMLScene(self.scene)
        self.remote_io.AddDataIOToScene()  # else storage nodes report no write formats
        self.layout_logic = slicer.vtkMRMLLayoutLogic()
        self.layout_logic.SetMRMLApplicationLogic(app_logic)
        self.layout_logic.SetMRMLScene(self.scene)
        self.layout_node = self.layout_logic.GetLayoutNode()
        self.slice_logics = {}
        import vtk

        collection = vtk.vtkCollection()
        for view in SLICE_VIEWS:
            node = slicer.vtkMRMLSliceNode.SafeDownCast(
                self.scene.GetNodeByID(f"vtkMRMLSliceNode{view}")
            )
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(self.scene)
            logic.SetSliceNode(node)
            self.slice_logics[view] = logic
            collection.AddItem(logic)
        app_logic.SetSliceLogics(collection)
        slicer.app = standins.App(self)
        for name, logic in self.logics.items():
            setattr(slicer.modules, name, standins.ModuleParent(name, logic=logic))
        self.scripted = {}

    # ----------------------------------------------------------------------- modules
    def load_scripted_module(self, path):
        """Load a scripted module as Slicer's module factory does; its instance.

        Slicer puts the module's folder on ``sys.path``, executes the file as a module named
        after it, builds ``<Name>(parent)`` with the C++ module object as parent and files
        both under ``slicer.modules`` (``<name lower-case>`` and ``<Name>Instance``).
        """
        path = Path(path).resolve()
        name = path.stem
        if name in self.scripted:
            return self.scripted[name]
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent = self.standins.ModuleParent(name, path=path)
        instance = getattr(module, name)(parent)
        for dependency in parent.dependencies:
            if dependency not in self.scripted:
                raise HarnessError(f"{name} needs module {dependency}: load it first")
        setattr(self.slicer.modules, name.lower(), parent)
        setattr(self.slicer.modules, f"{name}Instance", instance)
        setattr(self.slicer.moduleNames, name, name)
        self.scripted[name] = module
        return module

    def close_scene(self):
        """File > Close Scene: every node but the singletons (colours, layout, slice nodes)."""
        self.slicer.mrmlScene = self.scene  # another test file may have set its own scene
        self.scene.Clear(0)

    # ----------------------------------------------------------------------- views
    def blended_image(self, view, size=(256, 256)):
        """The RGBA image slice view ``view`` displays, (H, W, 4) uint8, row 0 at the top."""
        from vtk.util.numpy_support import vtk_to_numpy

        logic = self.slice_logics[view]
        node = logic.GetSliceNode()
        node.SetDimensions(size[0], size[1], 1)
        logic.FitSliceToBackground()
        logic.SnapSliceOffsetToIJK()
        port = logic.GetImageDataConnection()
        port.GetProducer().Update()
        image = port.GetProducer().GetOutputDataObject(port.GetIndex())
        w, h, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)
        return np.ascontiguousarray(pixels[::-1])  # VTK rows go up; images go down

    def xy_to_ras(self, view):
        """The 4x4 matrix from the view's pixel (x, y, 0, 1) to RAS."""
        m = self.slice_logics[view].GetSliceNode().GetXYToRAS()
        return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def load_standins():
    """Import Testing/slicer_standins.py under a name that cannot clash with a real module."""
    name = "Testing_slicer_standins"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("slicer_standins.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_HARNESS: Harness | None = None


def start():
    """The process's harness (started on first use)."""
    global _HARNESS
    if _HARNESS is None:
        load_standins()
        _HARNESS = Harness()
    return _HARNESS
