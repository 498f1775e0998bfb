"""EDPSN Fusion: fuse an MRI with a CT, PET or SPECT volume of the scene (GUI only).

The computing is ``edpsn fuse`` (EDPSNLib.cli.fuse) in a subprocess: see startFusion. The GUI
code both EDPSN modules share is the EDPSNGui package beside this file.
"""

import logging
import shutil
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLLabelMapVolumeNode as LabelMapNode
from slicer import vtkMRMLLinearTransformNode as TransformNode
from slicer import vtkMRMLScalarVolumeNode as VolumeNode
from slicer import vtkMRMLTableNode as TableNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from EDPSNGui import advice, mrml, runner, scene_io
from EDPSNGui.choices import COLORMAPS, Axis, Device, Modality, Registration
from EDPSNGui.module_base import EDPSNLogicBase, EDPSNWidgetBase
from EDPSNGui.selftest_base import EDPSNTestBase
from EDPSNLib.fusion.normalize import CT_WINDOWS
from EDPSNLib.jobs import fuse as fuse_jobs


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
    petRange: str = ""  # "LOW HIGH" in the volume's units; "" the default (lesion headroom)
    axis: Axis = Axis.AXIAL
    device: Device = Device.AUTO
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    model: str = ""  # a fuse_jobs.weights_choices value, synced with modelComboBox by hand
    createFused: bool = True
    createRegions: bool = True
    createMetrics: bool = True
    createTransform: bool = True
    regionLabelmap: LabelMapNode
    showRegions: bool = True
    regionOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.2  # the anatomy stays visible
    fusedVolume: VolumeNode
    metricsTable: TableNode
    transformNode: TransformNode


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
            (ui.showRegionsCheckBox, "toggled(bool)", self.onShowRegions),
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
        self.ui.petRangeLineEdit.enabled = not ct
        if self.ui.modelComboBox.property("choicesKey") != self.logic.pair(p):
            self.updateModelList()
        if not self.logic.isRunning():
            ready = bool(p.mriVolume and p.movingVolume and p.mriVolume != p.movingVolume)
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = "Register and fuse" if ready else "Select two volumes"

    def updateModelList(self):
        if self._parameterNode is not None:
            pair = self.logic.pair(self._parameterNode)
            choices = fuse_jobs.weights_choices(pair)
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
            # The console's path (process) without waiting: onPoll reads the events.
            self.logic.process(p.mriVolume, p.movingVolume, p.modality, p, waitForCompletion=False)
            self.setRunning(self.ui.applyButton, True, "Apply")

    def onPoll(self):
        for event in self.logic.poll():
            if self.reportEvent(event):
                continue
            if event["event"] == "progress":
                self.showProgress(event)
            elif event["event"] == "registration":  # its figures, before the fusion starts
                self.ui.statusLabel.text = event["message"]
                self.ui.logTextEdit.appendPlainText(event["message"])
            elif event["event"] == "results":
                self.ui.statusLabel.text = "Fusion done."
                self.onShowRegions()
            elif event["event"] == "exit":
                self.setRunning(self.ui.applyButton, False, "Apply")

    def onShowRegions(self, *args):
        # Read the widgets: this slot can run before connectGui has updated the parameter node.
        labelmap, opacity = self.ui.regionSelector.currentNode(), self.ui.regionOpacitySlider.value
        scene_io.showRegions(labelmap, self.ui.showRegionsCheckBox.checked, opacity)

    def onConvertToSegmentation(self):
        with slicer.util.tryWithErrorDisplay("Could not convert the region map.", waitCursor=True):
            if not self._parameterNode.regionLabelmap:
                raise ValueError("Select a region map first.")
            mrml.convert_labelmap_to_segmentation(self._parameterNode.regionLabelmap)

    def onShowMetrics(self):
        if self._parameterNode.metricsTable:
            self.logic.showTable(self._parameterNode.metricsTable)


class EDPSNFusionLogic(EDPSNLogicBase):
    """Starts ``edpsn fuse`` on exported copies of the inputs and brings the outputs back."""

    guessModality = staticmethod(scene_io.guessModality)
    showTable = staticmethod(scene_io.showTable)

    def __init__(self):
        EDPSNLogicBase.__init__(self)
        self.fusionProcess = self._run = None

    def getParameterNode(self):
        return EDPSNFusionParameterNode(super().getParameterNode())

    def process(
        self,
        mriVolume,
        movingVolume,
        modality,
        parameterNode=None,
        waitForCompletion=True,
        eventCallback=None,
        **options,
    ):
        """Fuse ``movingVolume`` onto ``mriVolume``: the call for scripts and the Python console.

        Args:
            mriVolume: the MRI volume node (the reference grid).
            movingVolume: the CT, PET or SPECT volume node.
            modality: "CT", "PET" or "SPECT" (or a Modality).
            parameterNode: the parameter node to use (default: the module's).
            waitForCompletion: wait for the fusion and return its output nodes; False returns
                None at once and the caller polls (``poll()``), as the module's GUI does.
            eventCallback: called with each event (progress, log, results, failed, ...).
            options: other parameter node fields, e.g. ``registration="none"``,
                ``device="cpu"``, ``model="method:max"``, ``createMetrics=False``.

        Returns:
            ``{"fused", "regions", "transform", "metrics"}`` output nodes (those asked for)
            when waiting; None otherwise. Raises RuntimeError when the fusion fails or is
            cancelled. Example (Python console)::

                from EDPSNFusion import EDPSNFusionLogic
                nodes = EDPSNFusionLogic().process(getNode("MRI"), getNode("PET"), "PET", device="cpu")
        """
        p = parameterNode or self.getParameterNode()
        p.mriVolume, p.movingVolume, p.modality = mriVolume, movingVolume, Modality(modality)
        fields = EDPSNFusionParameterNode.allParameters  # the wrapper's own description
        for name, value in options.items():
            if name not in fields:
                raise ValueError(f"Unknown option '{name}'; choose from {', '.join(fields)}.")
            kind = EDPSNFusionParameterNode.dataType(name)
            isEnum = isinstance(kind, type) and issubclass(kind, Enum)
            p.setValue(name, kind(value) if isEnum else value)  # "none" -> Registration.NONE
        self.startFusion(p)
        if not waitForCompletion:
            return None
        end = None
        while self.fusionProcess is not None:
            for event in self.poll():
                end = event if event["event"] in ("results", "failed", "cancelled") else end
                if eventCallback is not None:
                    eventCallback(event)
            slicer.app.processEvents()  # the GUI (if any) stays responsive meanwhile
            time.sleep(0.05)
        if end is None or end["event"] != "results":
            raise RuntimeError(end["message"] if end else "The fusion ended without results.")
        return end["nodes"]

    @staticmethod
    def pair(p):
        return f"MRI-{p.modality.value}"

    def isRunning(self):
        return self.fusionProcess is not None and self.fusionProcess.running

    def cancel(self, force=False):
        if self.isRunning():
            self.fusionProcess.cancel(grace_s=0 if force else None)

    def startFusion(self, p):
        """Export the inputs and start ``edpsn fuse``; poll() then reports its progress.

        A subprocess (EDPSNGui.runner says why): the GUI stays responsive and Cancel works.
        """
        if self.isRunning():
            raise RuntimeError("A fusion is already running; wait for it or cancel it.")
        if not p.mriVolume or not p.movingVolume or p.mriVolume == p.movingVolume:
            raise ValueError("Select an MRI volume and a different CT, PET or SPECT volume.")
        tmp = Path(tempfile.mkdtemp(prefix="EDPSNFusion-", dir=slicer.app.temporaryPath))
        files = fuse_jobs.fuse_files(tmp)
        try:
            scene_io.exportNodes({"mri": p.mriVolume, "moving": p.movingVolume}, files)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        colormap = None if p.colormap == "default" else p.colormap
        job = fuse_jobs.FuseJob(
            p.modality.value,
            p.registration.value,
            p.ctWindow,
            colormap,
            p.axis.value,
            p.device.value,
            p.batchSize,
            p.model,
            fuse_jobs.parse_pet_range(p.petRange),
        )
        self._run = {"params": p, "tmp": tmp, "done": None}
        self.fusionProcess = runner.startProcess(
            "EDPSNLib.cli", fuse_jobs.fuse_arguments(job, files)
        )

    def poll(self):
        """Events of the running fusion; before "exit" comes "results", "cancelled" or "failed"."""
        events = []
        for event in self.fusionProcess.poll() if self.fusionProcess is not None else []:
            if event["event"] == "done":
                self._run["done"] = event
            if event["event"] == "error":  # named in the module's words, for log and dialog
                event = self._run["error"] = {**event, "message": advice.gui_message(event)}
            if event["event"] == "exit":
                events.append(self._finish(event))
                self.fusionProcess = None
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
                last = run["error"]["message"] if run.get("error") else last
                return {"event": "failed", "message": last, "details": tail}
            return {"event": "results", "nodes": self.importResults(run["params"], run["done"])}
        except Exception as exc:  # report it; never leave the GUI stuck in "running"
            logging.exception("EDPSN: the results could not be loaded")
            message = f"The results could not be loaded: {exc}"
            return {"event": "failed", "message": message, "details": tail}
        finally:
            shutil.rmtree(run["tmp"], ignore_errors=True)

    @staticmethod
    def importResults(p, done):
        """Add the outputs that were asked for to the scene and record them in the parameter node."""
        return scene_io.importFusionResults(p, done)


class EDPSNFusionTest(EDPSNTestBase):
    """Runs in Slicer on volumes it makes (no download); needs torch (PyTorch extension)."""

    def runTest(self):
        self.runTests(self.test_GuessModality, self.test_FuseSyntheticPair, self.test_Cancel)

    def _start(self):
        from EDPSNLib.data.synthetic import synthetic_mri_pet
        from EDPSNLib.models.lookup import default_weights_path

        logic = self.requireSetup(EDPSNFusionLogic())
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
        return self.waitForJob(
            logic, lambda: logic.fusionProcess is not None, timeout, "the fusion"
        )

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
