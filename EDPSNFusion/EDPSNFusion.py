"""EDPSN Fusion: fuse an MRI with a CT, PET or SPECT volume of the scene (GUI only).

The computing is ``edpsn fuse`` (EDPSNLib.cli_fuse) in a subprocess: see startFusion.
EDPSN Training reuses EDPSNWidgetBase and EDPSNFusionLogic from this file.
"""

import enum
import importlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLLabelMapVolumeNode as LabelMapNode
from slicer import vtkMRMLLinearTransformNode as TransformNode
from slicer import vtkMRMLScalarVolumeNode as VolumeNode
from slicer import vtkMRMLTableNode as TableNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from EDPSNLib import jobs, requirements, scene
from EDPSNLib.normalize import CT_WINDOWS
from EDPSNLib.process import BackgroundProcess, child_environment, module_command

COLORMAPS = ("default", "harvard-pet", "harvard-spect", "hot", "inferno", "viridis", "gray")
DICOM_MODALITY = {"CT": "CT", "PT": "PET", "NM": "SPECT", "ST": "SPECT"}
POLL_MS = 300


class Modality(enum.Enum):
    CT = "CT"
    PET = "PET"
    SPECT = "SPECT"


class Registration(enum.Enum):
    RIGID = "rigid"
    AFFINE = "affine"
    NONE = "none"

    def label(self):
        return "Already aligned" if self is Registration.NONE else self.value.capitalize()


class Axis(enum.Enum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    def label(self):
        return self.value.capitalize()


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    def label(self):
        return {"auto": "Auto (GPU when usable)", "cpu": "CPU", "cuda": "GPU (CUDA)"}[self.value]


class EDPSNFusion(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "EDPSN Fusion"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = []
        self.parent.contributors = ["EDPSN developers (SlicerEDPSN project)"]
        self.parent.helpText = """
Fuses an MRI volume with a CT, PET or SPECT volume using EDPSN, an entropy-aware dynamic path
selection network. The second volume is registered to the MRI (rigid or affine, Mattes mutual
information) and fused slice by slice on the CPU or a GPU. The scene gets the fused volume on
the MRI grid, the entropy region map (low, mid, high information), the registration transform
and a table of seven fusion quality metrics; the inputs are never changed. Apply becomes
Cancel while the fusion runs. See <a href="https://github.com/edpsn/SlicerEDPSN">the docs</a>.
"""
        self.parent.acknowledgementText = """
EDPSN follows Qu et al., "EDPSN: entropy-aware dynamic path selection network for multi-modality
medical image fusion", Information Fusion 123 (2025) 103312. Default weights were trained on the
Harvard Whole Brain Atlas (K. A. Johnson and J. A. Becker, Harvard Medical School). torch comes
from the PyTorch extension (SlicerPyTorch).
"""


@parameterNodeWrapper
class EDPSNFusionParameterNode:
    mriVolume: VolumeNode
    movingVolume: VolumeNode
    modality: Modality = Modality.PET
    registration: Registration = Registration.RIGID
    ctWindow: Annotated[str, Choice(list(CT_WINDOWS))] = "brain"
    colormap: Annotated[str, Choice(list(COLORMAPS))] = "default"
    axis: Axis = Axis.AXIAL
    device: Device = Device.AUTO
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    model: str = ""  # a jobs.weights_choices value, synced with modelComboBox by hand
    createFused: bool = True
    createRegions: bool = True
    createMetrics: bool = True
    createTransform: bool = True
    regionLabelmap: LabelMapNode
    regionOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    fusedVolume: VolumeNode
    metricsTable: TableNode
    transformNode: TransformNode


class EDPSNWidgetBase(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """What both EDPSN widgets share: the .ui, the parameter node binding, the poll timer."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.createLogic()
        self.logic.logCallback = self.ui.logTextEdit.appendPlainText
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for widget, signal, slot in self.connections():
            widget.connect(signal, slot)
        self.initializeParameterNode()

    def cleanup(self):
        self._timer.stop()
        self.logic.cancel(force=True)  # never leave a job running behind a closed Slicer
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        modified = vtk.vtkCommand.ModifiedEvent
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, modified, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, modified, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def fillComboBox(self, combo, key, choices, current):
        """Refill a combo box of (label, value) choices not bound by connectGui; keep ``current``."""
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for label, value in choices:
            combo.addItem(label, value)
        combo.setProperty("choicesKey", key)
        combo.currentIndex = max(0, combo.findData(current))
        combo.blockSignals(wasBlocked)

    def setRunning(self, button, running, idleText):
        button.text, button.enabled = ("Cancel" if running else idleText), True
        self.ui.progressBar.setRange(0, 0 if running else 100)  # busy until counts arrive
        self.ui.progressBar.value = 0
        if running:
            self._timer.start()
        else:
            self._timer.stop()
            self.onParameterNodeModified()

    def reportEvent(self, event):
        """Log, status and failure dialog for the events every job sends; True if handled."""
        kind, message = event["event"], event.get("message", "")
        if kind in ("stage", "log", "stdout", "stderr", "error"):
            self.ui.logTextEdit.appendPlainText(message)
        if kind in ("stage", "results", "cancelled", "failed"):
            self.ui.statusLabel.text = message
        if kind == "stage":
            self.ui.progressBar.setRange(0, 0)  # busy until the stage reports counts
        if kind == "failed":
            slicer.util.errorDisplay(message, detailedText=event.get("details", ""))
        return kind in ("stage", "log", "stdout", "stderr", "error", "cancelled", "failed")


class EDPSNFusionWidget(EDPSNWidgetBase):
    def createLogic(self):
        return EDPSNFusionLogic()

    def connections(self):
        ui = self.ui
        return (
            (ui.applyButton, "clicked(bool)", self.onApplyButton),
            (ui.checkDeviceButton, "clicked(bool)", self.onCheckDevice),
            (ui.refreshModelsButton, "clicked(bool)", self.updateModelList),
            (ui.modelComboBox, "currentIndexChanged(int)", self.onModelSelected),
            (ui.movingSelector, "currentNodeChanged(vtkMRMLNode*)", self.onMovingSelected),
            (ui.regionOpacitySlider, "valueChanged(double)", self.onShowRegions),
            (ui.regionSelector, "currentNodeChanged(vtkMRMLNode*)", self.onShowRegions),
            (ui.convertToSegmentationButton, "clicked(bool)", self.onConvertToSegmentation),
            (ui.showMetricsButton, "clicked(bool)", self.onShowMetrics),
        )

    def initializeParameterNode(self):
        EDPSNWidgetBase.initializeParameterNode(self)
        if not self._parameterNode.mriVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            self._parameterNode.mriVolume = first

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        ct = p.modality == Modality.CT
        self.ui.ctWindowComboBox.enabled, self.ui.colormapComboBox.enabled = ct, not ct
        if self.ui.modelComboBox.property("choicesKey") != self.logic.pair(p):
            self.updateModelList()
        if not self.logic.isRunning():
            ready = bool(p.mriVolume and p.movingVolume and p.mriVolume != p.movingVolume)
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = "Register and fuse" if ready else "Select two volumes"

    def updateModelList(self):
        if self._parameterNode is not None:
            pair = self.logic.pair(self._parameterNode)
            choices = jobs.weights_choices(pair)
            self.fillComboBox(self.ui.modelComboBox, pair, choices, self._parameterNode.model)
            self.onModelSelected()

    def onModelSelected(self, index=None):
        if self._parameterNode is not None and self.ui.modelComboBox.count:
            self._parameterNode.model = self.ui.modelComboBox.currentData or ""

    def onMovingSelected(self, node):
        modality = self.logic.guessModality(node) if node else None
        if modality and self._parameterNode is not None:
            self._parameterNode.modality = Modality(modality)
        found = f"{modality} read from the DICOM Modality attribute."
        self.ui.modalityHintLabel.text = (
            found if modality else "Check the modality." if node else ""
        )

    def onCheckDevice(self):
        with slicer.util.tryWithErrorDisplay("Could not check the device.", waitCursor=True):
            report = self.logic.deviceReport(self._parameterNode.device.value)
            self.ui.deviceInfoLabel.text = report["text"]

    def onApplyButton(self):
        if self.logic.isRunning():  # the button reads "Cancel" while a fusion runs
            self.ui.statusLabel.text = "Cancelling..."
            self.logic.cancel()
            return
        p = self._parameterNode
        self.ui.logTextEdit.clear()
        with slicer.util.tryWithErrorDisplay("Could not start the fusion.", waitCursor=True):
            self.logic.setupPythonRequirements()
            if p.device != Device.CPU:
                report = self.logic.deviceReport(p.device.value)
                self.ui.deviceInfoLabel.text = text = report["text"]
                if not report["usable"]:
                    raise ValueError(text + " Choose 'auto' or 'cpu'.")
                goOn = "\nThe fusion may fall back to smaller batches or the CPU. Go on?"
                if report["low_memory"] and not slicer.util.confirmOkCancelDisplay(text + goOn):
                    return
            self.logic.startFusion(p)
            self.setRunning(self.ui.applyButton, True, "Apply")

    def onPoll(self):
        for event in self.logic.poll():
            if self.reportEvent(event):
                continue
            if event["event"] == "progress":
                self.ui.progressBar.setRange(0, max(1, int(event["total"])))
                self.ui.progressBar.value = int(event["done"])
            elif event["event"] == "results":
                self.ui.statusLabel.text = "Fusion done."
                self.onShowRegions()
            elif event["event"] == "exit":
                self.setRunning(self.ui.applyButton, False, "Apply")

    def onShowRegions(self, *args):
        # Read the widgets: this slot can run before connectGui has updated the parameter node.
        labelmap, opacity = self.ui.regionSelector.currentNode(), self.ui.regionOpacitySlider.value
        if labelmap is not None:
            scene.show_in_slice_views(label=labelmap, label_opacity=opacity)

    def onConvertToSegmentation(self):
        with slicer.util.tryWithErrorDisplay("Could not convert the region map.", waitCursor=True):
            if not self._parameterNode.regionLabelmap:
                raise ValueError("Select a region map first.")
            scene.convert_labelmap_to_segmentation(self._parameterNode.regionLabelmap)

    def onShowMetrics(self):
        if self._parameterNode.metricsTable:
            self.logic.showTable(self._parameterNode.metricsTable)


class EDPSNFusionLogic(ScriptedLoadableModuleLogic):
    """Starts ``edpsn fuse`` on exported copies of the inputs and brings the outputs back."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.logCallback = self.process = self._run = None

    def getParameterNode(self):
        return EDPSNFusionParameterNode(super().getParameterNode())

    def log(self, text):
        logging.info(text)
        if self.logCallback:
            self.logCallback(text)

    @staticmethod
    def pair(p):
        return f"MRI-{p.modality.value}"

    def setupPythonRequirements(self, askConfirmation=True):
        """torch from the PyTorch extension (never pip here), the other packages with pip."""
        try:
            import PyTorchUtils
        except ModuleNotFoundError as exc:
            raise RuntimeError(
                "EDPSN needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
                "restart Slicer and try again."
            ) from exc
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            self.log("Installing PyTorch with PyTorch Utils (this can take several minutes)...")
            need = requirements.TORCH_REQUIREMENT
            if (
                torchLogic.installTorch(
                    askConfirmation=askConfirmation, torchVersionRequirement=need
                )
                is None
            ):
                raise RuntimeError("PyTorch was not installed; EDPSN cannot run without it.")
        missing = requirements.missing_requirements()
        if missing:
            self.log(f"Installing {', '.join(missing)}...")
            folder = tempfile.mkdtemp(prefix="EDPSN-pip-", dir=slicer.app.temporaryPath)
            constraints = Path(folder) / "constraints.txt"  # keeps Slicer's numpy and SimpleITK
            constraints.write_text(requirements.constraints_text())
            pydeps = self._pipModule()
            if pydeps is not None:  # check, ask, install with progress, offer a restart
                pydeps.pip_ensure(missing, requester="EDPSN", constraints=str(constraints))
            else:
                slicer.util.pip_install(["-c", str(constraints), *missing])
        if requirements.missing_requirements():
            still = ", ".join(requirements.missing_requirements())
            raise RuntimeError(f"These Python packages could not be installed: {still}.")

    @staticmethod
    def _pipModule():
        """Slicer's package helper with pip_ensure (5.11: slicer.pydeps, later slicer.packaging)."""
        for name in ("slicer.packaging", "slicer.pydeps"):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            if hasattr(module, "pip_ensure"):
                return module
        return None

    @staticmethod
    def startProcess(module, args, grace_s=10.0):
        """``PythonSlicer -u -m module args`` with EDPSNLib importable, as a BackgroundProcess."""
        python = shutil.which("PythonSlicer")
        if python is None and Path(sys.executable).name.lower().startswith("python"):
            python = sys.executable
        if python is None:
            raise RuntimeError("PythonSlicer was not found beside Slicer; reinstall Slicer.")
        libParent = Path(jobs.__file__).resolve().parents[1]  # the folder holding EDPSNLib
        # The launcher builds its own environment from the startup one; this session's
        # EDPSN_* settings (models and data folders) are passed on.
        base = dict(slicer.util.startupEnvironment())
        base.update({k: v for k, v in os.environ.items() if k.startswith("EDPSN_")})
        command = module_command(python, module, *args)
        logging.info("EDPSN runs: %s", " ".join(command))
        env = child_environment(base, [libParent])
        return BackgroundProcess(command, cwd=libParent, env=env, grace_s=grace_s).start()

    def deviceReport(self, device):
        """EDPSNLib.device_info's report, asked in a subprocess (no CUDA context in Slicer)."""
        proc = self.startProcess("EDPSNLib.device_info", ["--device", device])
        proc.wait(timeout=180)
        reports = [e for e in proc.poll() if e["event"] == "device"]
        if not reports:
            proc.cancel(grace_s=0)
            failed = f"The device check failed: {proc.stderr_tail}"
            return {"usable": False, "low_memory": False, "text": failed}
        return reports[-1]

    @staticmethod
    def guessModality(node):
        """'CT', 'PET' or 'SPECT' from the DICOM Modality of a volume loaded from DICOM, else None."""
        code = node.GetAttribute("DICOM.Modality") or ""
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        if not code and sh:
            code = sh.GetItemAttribute(sh.GetItemByDataNode(node), "DICOM.Modality") or ""
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
        db = getattr(slicer, "dicomDatabase", None)
        if not code and uids and db is not None and db.isOpen:
            filePath = db.fileForInstance(uids[0])
            code = db.fileValue(filePath, "0008,0060") if filePath else ""
        return DICOM_MODALITY.get(code.strip().upper())

    def isRunning(self):
        return self.process is not None and self.process.running

    def cancel(self, force=False):
        if self.isRunning():
            self.process.cancel(grace_s=0 if force else None)

    def startFusion(self, p):
        """Export the inputs and start ``edpsn fuse``; poll() then reports its progress.

        A subprocess, not a thread or the main thread: the GUI stays responsive, Cancel ends
        the whole process tree cleanly (a Python thread cannot be stopped), all host and GPU
        memory is given back when it exits, a crash cannot take Slicer down, and it runs the
        same code path as batch users of the command line.
        """
        if self.isRunning():
            raise RuntimeError("A fusion is already running; wait for it or cancel it.")
        if not p.mriVolume or not p.movingVolume or p.mriVolume == p.movingVolume:
            raise ValueError("Select an MRI volume and a different CT, PET or SPECT volume.")
        tmp = Path(tempfile.mkdtemp(prefix="EDPSNFusion-", dir=slicer.app.temporaryPath))
        files = jobs.fuse_files(tmp)
        for key, node in (("mri", p.mriVolume), ("moving", p.movingVolume)):
            # world=True hardens a parent transform on a temporary copy: the input is untouched.
            slicer.util.exportNode(node, str(files[key]), world=True)
            if not files[key].is_file():
                raise RuntimeError(f"Could not write {node.GetName()} to {files[key]}.")
        colormap = None if p.colormap == "default" else p.colormap
        job = jobs.FuseJob(p.modality.value, p.registration.value, p.ctWindow, colormap,
                           p.axis.value, p.device.value, p.batchSize, p.model)  # fmt: skip
        self._run = {"params": p, "tmp": tmp, "done": None}
        self.process = self.startProcess("EDPSNLib.cli", jobs.fuse_arguments(job, files))

    def poll(self):
        """Events of the running fusion; before "exit" comes "results", "cancelled" or "failed"."""
        events = []
        for event in self.process.poll() if self.process is not None else []:
            if event["event"] == "done":
                self._run["done"] = event
            if event["event"] == "exit":
                events.append(self._finish(event))
                self.process = None
            events.append(event)
        return events

    def _finish(self, exitEvent):
        run, tail = self._run, exitEvent["stderr_tail"]
        try:
            if exitEvent["cancelled"]:
                return {
                    "event": "cancelled",
                    "message": "Cancelled; nothing was added to the scene.",
                }
            if exitEvent["returncode"] != 0 or run["done"] is None:
                last = (tail.strip().splitlines() or [f"exit code {exitEvent['returncode']}"])[-1]
                return {"event": "failed", "message": last, "details": tail}
            return {"event": "results", "nodes": self.importResults(run["params"], run["done"])}
        except Exception as exc:  # report it; never leave the GUI stuck in "running"
            logging.exception("EDPSN: the results could not be loaded")
            message = f"The results could not be loaded: {exc}"
            return {"event": "failed", "message": message, "details": tail}
        finally:
            shutil.rmtree(run["tmp"], ignore_errors=True)

    def importResults(self, p, done):
        """Add the outputs that were asked for to the scene and record them in the parameter node."""
        import SimpleITK as sitk

        from EDPSNLib.volume_io import read_volume
        from EDPSNLib.volume_metrics import ijk_to_ras_matrix

        def load(key):
            vol = read_volume(done["outputs"][key], validate=False)
            return vol.array, ijk_to_ras_matrix(vol)

        name, nodes = f"{p.movingVolume.GetName()} on {p.mriVolume.GetName()}", {}
        fused = nodes["fused"] = scene.add_fused_volume(*load("fused"), f"{name} EDPSN fused")
        for key in ("modality", "ctWindow", "colormap", "axis"):  # read back by EDPSN Training
            value = p.getValue(key)
            fused.SetAttribute(f"EDPSN.{key}", getattr(value, "value", value))
        fused.SetNodeReferenceID("EDPSN.mri", p.mriVolume.GetID())
        fused.SetNodeReferenceID("EDPSN.moving", p.movingVolume.GetID())
        if p.createRegions:
            regions = scene.add_region_labelmap(*load("regions"), f"{name} EDPSN regions")
            nodes["regions"] = p.regionLabelmap = regions
            fused.SetNodeReferenceID("EDPSN.regions", regions.GetID())
        if p.createTransform and done["outputs"].get("transform"):
            itk = sitk.ReadTransform(done["outputs"]["transform"])
            toMri = f"{p.movingVolume.GetName()} to {p.mriVolume.GetName()}"
            transform = scene.add_transform_node(scene.transform_matrix_from_sitk(itk), toMri)
            nodes["transform"] = p.transformNode = transform
            fused.SetNodeReferenceID("EDPSN.transform", transform.GetID())
        if p.createMetrics:
            table = scene.add_metrics_table(jobs.metric_rows(done), f"{name} EDPSN metrics")
            nodes["metrics"] = p.metricsTable = table
        if p.createFused:
            p.fusedVolume = fused
        else:  # it only carried the links to the other outputs
            slicer.mrmlScene.RemoveNode(nodes.pop("fused"))
        background, opacity = nodes.get("fused", p.mriVolume), p.regionOpacity
        scene.show_in_slice_views(background, label=nodes.get("regions"), label_opacity=opacity)
        slicer.util.resetSliceViews()
        return nodes

    @staticmethod
    def showTable(table):
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()


class EDPSNFusionTest(ScriptedLoadableModuleTest):
    """Runs in Slicer on volumes it makes (no download); needs torch (PyTorch extension)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_GuessModality, self.test_FuseSyntheticPair, self.test_Cancel):
            self.setUp()
            test()

    def _start(self):
        from EDPSNLib.methods import default_weights_path
        from EDPSNLib.synthetic import synthetic_mri_pet

        logic = EDPSNFusionLogic()
        try:
            logic.setupPythonRequirements(askConfirmation=False)
        except RuntimeError as exc:
            self.skipTest(f"EDPSN's Python packages are not available: {exc}")
        mri, mriMatrix, pet, petMatrix = synthetic_mri_pet()
        p = logic.getParameterNode()
        p.mriVolume = slicer.util.addVolumeFromArray(mri, ijkToRAS=mriMatrix, name="MRI")
        p.movingVolume = slicer.util.addVolumeFromArray(pet, ijkToRAS=petMatrix, name="PET")
        p.modality, p.registration, p.device = Modality.PET, Registration.NONE, Device.CPU
        weights = default_weights_path("MRI-PET").is_file()
        p.model = "" if weights else "method:max"  # without shipped weights: a baseline
        logic.startFusion(p)
        return logic, p

    def _wait(self, logic, timeout=600):
        import time

        events, deadline = [], time.time() + timeout
        while logic.process is not None:
            events += logic.poll()
            slicer.app.processEvents()
            time.sleep(0.1)
            self.assertLess(time.time(), deadline, "the fusion did not finish in time")
        return events

    def test_GuessModality(self):
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        self.assertIsNone(EDPSNFusionLogic.guessModality(node))
        for code, expected in (("PT", "PET"), ("NM", "SPECT"), ("CT", "CT"), ("MR", None)):
            node.SetAttribute("DICOM.Modality", code)
            self.assertEqual(EDPSNFusionLogic.guessModality(node), expected)

    def test_FuseSyntheticPair(self):
        logic, p = self._start()
        before = slicer.util.arrayFromVolume(p.movingVolume).copy()
        results = [e for e in self._wait(logic) if e["event"] in ("results", "failed")]
        self.assertEqual(results[-1]["event"], "results", str(results))
        self.assertTrue(p.fusedVolume.IsA("vtkMRMLVectorVolumeNode"))
        self.assertEqual(slicer.util.arrayFromVolume(p.fusedVolume).shape, (24, 64, 64, 3))
        fusedMatrix, mriMatrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        p.fusedVolume.GetIJKToRASMatrix(fusedMatrix)
        p.mriVolume.GetIJKToRASMatrix(mriMatrix)
        for r in range(4):
            for c in range(4):
                self.assertAlmostEqual(fusedMatrix.GetElement(r, c), mriMatrix.GetElement(r, c), 5)
        labels = set(slicer.util.arrayFromVolume(p.regionLabelmap).ravel().tolist())
        self.assertTrue({1, 2, 3} & labels and labels <= {0, 1, 2, 3})
        self.assertEqual(p.metricsTable.GetNumberOfRows(), 4)  # volume and three regions
        self.assertTrue((slicer.util.arrayFromVolume(p.movingVolume) == before).all())
        self.assertIsNone(p.movingVolume.GetParentTransformNode())

    def test_Cancel(self):
        logic, p = self._start()
        logic.cancel()
        self.assertIn("cancelled", [e["event"] for e in self._wait(logic, timeout=60)])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"), 2)
