"""EDPSN Training: fine-tune EDPSN from the GUI and score fused volumes (GUI only).

Training is ``edpsn evaluate`` (base weights) -> ``edpsn train`` -> ``edpsn evaluate`` (new
weights), each a subprocess run by EDPSNFusionLogic.startProcess; the new weights are then
copied to the user models folder, where EDPSN Fusion lists them.
"""

import enum
import json
import os
import re
import shutil
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLLinearTransformNode,
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLTableNode,
)
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from EDPSNFusion import POLL_MS, Axis, Device, EDPSNFusionLogic, Modality
from EDPSNLib import jobs, paths, scene

#: Seconds a cancelled training gets to save its resumable checkpoint before it is killed.
CANCEL_GRACE_S = 120.0
METRICS = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")


class DataSource(enum.Enum):
    HARVARD = "harvard"
    CHAOS = "chaos"
    SCENE = "scene"

    def label(self):
        return {
            "harvard": "Harvard-layout folder",
            "chaos": "CHAOS folder",
            "scene": "Volumes in the scene",
        }[self.value]


class Pair(enum.Enum):
    MRI_CT = "MRI-CT"
    MRI_PET = "MRI-PET"
    MRI_SPECT = "MRI-SPECT"

    def label(self):
        return self.value


#: Sources the GUI offers but ``edpsn train`` cannot read yet, and what to do instead.
UNAVAILABLE = {
    DataSource.CHAOS: "Not available yet: 'edpsn train' reads Harvard-layout folders only, and "
    "CHAOS holds MR series without a CT or PET of the same patients. Use a Harvard-layout folder.",
    DataSource.SCENE: "Not available yet: 'edpsn train' cannot read volumes from the scene. Save "
    "registered slice pairs as PNGs in a Harvard-layout folder and pick that folder.",
}


class EDPSNTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "EDPSN Training"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = ["EDPSNFusion"]
        self.parent.contributors = ["EDPSN developers (SlicerEDPSN project)"]
        self.parent.helpText = """
Fine-tunes EDPSN on registered MRI / CT, PET or SPECT slice pairs (Harvard-layout folder), with
progress, a live plot of the loss and validation metrics, Cancel and Resume. The new weights go
to the user models folder and appear in EDPSN Fusion's model list; a table compares the seven
metrics on the test split before and after. The Evaluate section scores any fused volume in the
scene against its two sources, per slice, for the volume and per entropy region.
"""
        self.parent.acknowledgementText = """
EDPSN follows Qu et al., Information Fusion 123 (2025) 103312. Harvard Whole Brain Atlas:
K. A. Johnson and J. A. Becker, Harvard Medical School. CHAOS: A. E. Kavur et al., Medical Image
Analysis 69 (2021) 101950. torch comes from the PyTorch extension (SlicerPyTorch).
"""


@parameterNodeWrapper
class EDPSNTrainingParameterNode:
    source: DataSource = DataSource.HARVARD
    dataFolder: Path
    pair: Pair = Pair.MRI_PET
    baseWeights: str = ""  # a weights file, or "" for a new network; synced by hand
    epochs: Annotated[int, WithinRange(1, 1000)] = 10
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    learningRate: Annotated[float, WithinRange(1e-7, 0.1)] = 1e-4
    crop: Annotated[int, WithinRange(32, 512)] = 128
    device: Device = Device.AUTO
    outputName: str = "EDPSN-finetuned"
    resultsTable: vtkMRMLTableNode
    lossChart: vtkMRMLPlotChartNode
    validationChart: vtkMRMLPlotChartNode
    evalFused: vtkMRMLScalarVolumeNode
    evalMri: vtkMRMLScalarVolumeNode
    evalMoving: vtkMRMLScalarVolumeNode
    evalTransform: vtkMRMLLinearTransformNode
    evalRegions: vtkMRMLLabelMapVolumeNode
    evalModality: Modality = Modality.PET
    evalAxis: Axis = Axis.AXIAL
    evalTable: vtkMRMLTableNode
    evalChart: vtkMRMLPlotChartNode


class EDPSNTrainingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/EDPSNTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = EDPSNTrainingLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for widget, signal, slot in (
            (self.ui.startButton, "clicked(bool)", self.onStart),
            (self.ui.resumeButton, "clicked(bool)", self.onResume),
            (self.ui.refreshWeightsButton, "clicked(bool)", self.updateWeightsList),
            (self.ui.baseWeightsComboBox, "currentIndexChanged(int)", self.onWeightsSelected),
            (self.ui.evalFusedSelector, "currentNodeChanged(vtkMRMLNode*)", self.onFusedSelected),
            (self.ui.evaluateButton, "clicked(bool)", self.onEvaluate),
            (self.ui.exportCsvButton, "clicked(bool)", self.onExportCsv),
        ):
            widget.connect(signal, slot)
        self.initializeParameterNode()

    def cleanup(self):
        self._timer.stop()
        self.logic.cancel(force=True)
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
        if str(self._parameterNode.dataFolder) in ("", "."):
            self._parameterNode.dataFolder = paths.data_root()

    def setParameterNode(self, parameterNode):
        modified = vtk.vtkCommand.ModifiedEvent
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, modified, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, modified, self.onParameterNodeModified)
            self.updateWeightsList()
            self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        if self.ui.baseWeightsComboBox.property("pair") != p.pair.value:
            self.updateWeightsList()
        problem = self.logic.sourceProblem(p)
        self.ui.sourceNoteLabel.text = problem or ""
        self.ui.dataDirectoryButton.enabled = p.source != DataSource.SCENE
        if not self.logic.isRunning():
            self.ui.startButton.enabled = problem is None
            self.ui.startButton.toolTip = problem or "Start training; becomes Cancel while running."
            self.ui.resumeButton.enabled = problem is None and self.logic.checkpoint(p).is_file()
        self.ui.exportCsvButton.enabled = bool(p.evalTable)

    def updateWeightsList(self):
        p, combo = self._parameterNode, self.ui.baseWeightsComboBox
        if p is None:
            return
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for label, value in self.logic.baseWeightsChoices(p.pair.value):
            combo.addItem(label, value)
        combo.setProperty("pair", p.pair.value)
        combo.currentIndex = max(0, combo.findData(p.baseWeights))
        combo.blockSignals(wasBlocked)
        self.onWeightsSelected()

    def onWeightsSelected(self, index=None):
        if self._parameterNode is not None and self.ui.baseWeightsComboBox.count:
            self._parameterNode.baseWeights = self.ui.baseWeightsComboBox.currentData or ""

    def onStart(self, resume=False):
        if self.logic.isRunning():  # the button reads "Cancel": a second press kills at once
            self.ui.statusLabel.text = "Cancelling: saving a checkpoint to resume from..."
            self.logic.cancel(force=self.logic.cancelRequested)
            return
        p = self._parameterNode
        if (
            not resume
            and self.logic.checkpoint(p).is_file()
            and not slicer.util.confirmOkCancelDisplay(
                f"A training named '{p.outputName}' exists. Start it over (Resume continues it)?"
            )
        ):
            return
        self.ui.logTextEdit.clear()
        with slicer.util.tryWithErrorDisplay("Could not start the training.", waitCursor=True):
            self.logic.setupPythonRequirements()
            self.logic.startTraining(p, resume=resume)
            self.setRunning(True)

    def onResume(self):
        self.onStart(resume=True)

    def setRunning(self, running):
        self.ui.startButton.text = "Cancel" if running else "Start"
        self.ui.startButton.enabled = True
        self.ui.resumeButton.enabled = False
        self.ui.progressBar.setRange(0, 0 if running else 100)
        if running:
            self._timer.start()
        else:
            self._timer.stop()
            self.onParameterNodeModified()

    def onPoll(self):
        events = self.logic.poll()
        for event in events:
            kind, message = event["event"], event.get("message", "")
            if kind in ("stage", "log", "stdout", "stderr", "error"):
                self.ui.logTextEdit.appendPlainText(message)
                if kind == "stage":
                    self.ui.statusLabel.text = message
            elif kind == "start":
                self.ui.progressBar.setRange(
                    0, int(event["epochs"]) * int(event["steps_per_epoch"])
                )
            elif kind == "step":
                self.ui.progressBar.value = int(event["global_step"])
                eta = int(event.get("eta_s") or 0)
                self.ui.statusLabel.text = (
                    f"Epoch {event['epoch']}, step {event['step']}/{event['steps']}: "
                    f"loss {event['loss']:.4g}, about {eta // 60} min {eta % 60} s left"
                )
            elif kind in ("results", "cancelled", "failed"):
                self.ui.statusLabel.text = message
                if kind == "failed":
                    slicer.util.errorDisplay(message, detailedText=event.get("details", ""))
                if kind == "results":
                    EDPSNFusionLogic.showTable(self._parameterNode.resultsTable)
            elif kind == "exit" and not self.logic.isRunning():
                self.setRunning(False)
        if any(e["event"] in ("step", "epoch") for e in events):
            self.logic.updateCharts(self._parameterNode)

    def onFusedSelected(self, node):
        p = self._parameterNode
        if node is None or p is None:
            return
        for role in ("mri", "moving", "transform", "regions"):  # as EDPSN Fusion recorded them
            ref = node.GetNodeReference(f"EDPSN.{role}")
            if ref is not None:
                p.setValue("eval" + role.capitalize(), ref)
        for key, enumType in (("modality", Modality), ("axis", Axis)):
            if node.GetAttribute(f"EDPSN.{key}"):
                p.setValue("eval" + key.capitalize(), enumType(node.GetAttribute(f"EDPSN.{key}")))

    def onEvaluate(self):
        with slicer.util.tryWithErrorDisplay("Could not compute the metrics.", waitCursor=True):
            self.logic.setupPythonRequirements()
            self.logic.evaluate(self._parameterNode)
            EDPSNFusionLogic.showTable(self._parameterNode.evalTable)

    def onExportCsv(self):
        table = self._parameterNode.evalTable
        path = qt.QFileDialog.getSaveFileName(
            None, "Export metrics", f"{table.GetName()}.csv", "CSV (*.csv)"
        )
        if path:
            with slicer.util.tryWithErrorDisplay("Could not write the CSV file.", waitCursor=True):
                slicer.util.exportNode(table, path)


class EDPSNTrainingLogic(EDPSNFusionLogic):
    """Runs evaluate -> train -> evaluate in subprocesses; scores fused volumes in process."""

    def __init__(self):
        EDPSNFusionLogic.__init__(self)
        self.cancelRequested = False
        self._steps, self._job, self.history = [], None, {}

    def getParameterNode(self):
        return EDPSNTrainingParameterNode(ScriptedLoadableModuleLogic.getParameterNode(self))

    @staticmethod
    def sourceProblem(p):
        """Why training cannot start with this data source (None when it can)."""
        if p.source in UNAVAILABLE:
            return UNAVAILABLE[p.source]
        folder = jobs.harvard_folder(p.dataFolder)
        if not (folder / p.pair.value / "MRI").is_dir():
            return f"{folder} has no {p.pair.value}/MRI folder: pick a Harvard-layout folder."
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", p.outputName or ""):
            return "Give the output a name made of letters, digits, '-', '_' and '.'."
        return None

    @staticmethod
    def runFolder(p):
        return paths.user_models_dir() / "runs" / p.outputName

    def checkpoint(self, p):
        return self.runFolder(p) / "checkpoint.pt"

    @staticmethod
    def baseWeightsChoices(pair):
        """A new network, then every weights file made for the pair (no baselines)."""
        from EDPSNLib.methods import default_weights_path

        choices = [("New network (train from scratch)", "")]
        for label, value in jobs.weights_choices(pair):
            path = value or str(default_weights_path(pair))
            if not value.startswith(jobs.METHOD_PREFIX) and Path(path).is_file():
                choices.append((label, path))
        return choices

    def startTraining(self, p, resume=False, maxStepsPerEpoch=None):
        problem = self.sourceProblem(p)
        if problem:
            raise ValueError(problem)
        if self.isRunning():
            raise RuntimeError("A training is already running; wait for it or cancel it.")
        run, pair, device = self.runFolder(p), p.pair.value, p.device.value
        if resume and not self.checkpoint(p).is_file():
            raise ValueError(f"There is no checkpoint of '{p.outputName}' to resume from.")
        if not resume and run.exists():
            shutil.rmtree(run)
        run.mkdir(parents=True, exist_ok=True)
        common = dict(pair=pair, data=p.dataFolder, device=device)
        self._steps = []
        if p.baseWeights and not (run / "before" / "summary.csv").is_file():
            args = jobs.evaluate_arguments(weights=p.baseWeights, out=run / "before", **common)
            self._steps.append(("Scoring the base weights on the test split...", args))
        train = jobs.train_arguments(
            out=run, epochs=p.epochs, batch_size=p.batchSize, lr=p.learningRate, crop=p.crop,
            init=p.baseWeights or None, resume=self.checkpoint(p) if resume else None,
            max_steps_per_epoch=maxStepsPerEpoch, **common,
        )  # fmt: skip
        self._steps.append(("Training...", train))
        weights = run / f"EDPSN_{pair}.safetensors"
        after = jobs.evaluate_arguments(weights=weights, out=run / "after", **common)
        self._steps.append(("Scoring the new weights on the test split...", after))
        self._job = {"params": p, "run": run, "weights": weights}
        self.history = self._readHistory(run / "progress.jsonl")  # a resumed run keeps its curves
        self.cancelRequested = False
        self._startNext()

    def _startNext(self):
        message, args = self._steps.pop(0)
        self.log(message)
        self.process = self.startProcess("EDPSNLib.cli", args, grace_s=CANCEL_GRACE_S)
        return {"event": "stage", "message": message}

    @staticmethod
    def _readHistory(logFile):
        history = {"step": [], "loss": [], "epoch": [], "val_loss": [], **{k: [] for k in METRICS}}
        lines = logFile.read_text().splitlines() if logFile.is_file() else []
        for event in (json.loads(line) for line in lines if line.strip()):
            EDPSNTrainingLogic._record(history, event)
        return history

    @staticmethod
    def _record(history, event):
        if event.get("event") == "step":
            history["step"].append(event["global_step"])
            history["loss"].append(event["loss"])
        elif event.get("event") == "epoch":
            history["epoch"].append(event["epoch"])
            history["val_loss"].append(event["val_loss"])
            for k in METRICS:
                history[k].append(event["metrics"].get(k, float("nan")))

    def cancel(self, force=False):
        if self.isRunning():
            self.cancelRequested = True
            self._steps = []
            self.process.cancel(grace_s=0 if force else None)

    def poll(self):
        events = []
        for event in self.process.poll() if self.process is not None else []:
            self._record(self.history, event)
            if event["event"] == "exit":
                self.process = None
                events.append(self._stepFinished(event))
            events.append(event)
        return events

    def _stepFinished(self, exitEvent):
        tail = exitEvent["stderr_tail"]
        if exitEvent["cancelled"] or exitEvent["returncode"] == 130:
            self._steps = []
            return {
                "event": "cancelled",
                "message": "Training cancelled; press Resume to continue it.",
            }
        if exitEvent["returncode"] != 0:
            self._steps = []
            last = (tail.strip().splitlines() or [f"exit code {exitEvent['returncode']}"])[-1]
            return {"event": "failed", "message": last, "details": tail}
        if self._steps:
            return self._startNext()
        try:
            return {"event": "results", "message": self._finishTraining()}
        except Exception as exc:
            return {
                "event": "failed",
                "message": f"The new weights could not be registered: {exc}",
                "details": tail,
            }

    def _finishTraining(self):
        """Copy the best weights (and sidecar) to the user models folder; fill the results table."""
        p, run, weights = self._job["params"], self._job["run"], self._job["weights"]
        target = paths.user_models_dir() / f"{p.outputName}.safetensors"
        for source, dest in (
            (weights, target),
            (weights.with_suffix(".json"), target.with_suffix(".json")),
        ):
            partial = dest.with_name(dest.name + ".partial")
            shutil.copy2(source, partial)
            os.replace(partial, dest)  # never a half-copied weights file in the model list
        rows = []
        if (run / "before" / "summary.csv").is_file():
            rows.append(
                {
                    "scope": f"before: {Path(p.baseWeights).stem}",
                    **jobs.read_evaluation(run / "before"),
                }
            )
        rows.append({"scope": f"after: {p.outputName}", **jobs.read_evaluation(run / "after")})
        self._table(p, "resultsTable", rows, f"{p.outputName} test metrics")
        return f"Done: '{p.outputName}' is in EDPSN Fusion's model list ({target})."

    @staticmethod
    def _table(p, field, rows, name):
        if p.getValue(field):
            scene.update_metrics_table(p.getValue(field), rows)
        else:
            p.setValue(field, scene.add_metrics_table(rows, name))

    def updateCharts(self, p):
        """Live curves: training loss per step, validation loss and metrics per epoch."""
        h = self.history
        for field, x, series, xLabel in (
            ("lossChart", h["step"], {"training loss": h["loss"]}, "step"),
            (
                "validationChart",
                h["epoch"],
                {"validation loss": h["val_loss"], **{k: h[k] for k in METRICS}},
                "epoch",
            ),
        ):
            if not x:
                continue
            if p.getValue(field):
                scene.update_plot(p.getValue(field), x, series)
            else:
                p.setValue(field, scene.add_plot(x, series, f"EDPSN {field[:-5]}", x_label=xLabel))
                slicer.modules.plots.logic().ShowChartInLayout(p.getValue(field))

    def evaluate(self, p):
        """The seven metrics of p.evalFused against its sources: table and per-slice plot."""
        from EDPSNLib.volume_metrics import metrics_rows, score_fused_volume, slice_series

        if not (p.evalFused and p.evalMri and p.evalMoving):
            raise ValueError("Select the fused volume, its MRI and its CT, PET or SPECT volume.")
        fused = p.evalFused
        colormap = fused.GetAttribute("EDPSN.colormap")
        result = score_fused_volume(
            scene.volume_to_array(p.evalMri), scene.volume_to_array(p.evalMoving),
            scene.volume_to_array(fused), p.evalModality.value,
            moving_to_mri=slicer.util.arrayFromTransformMatrix(p.evalTransform, toWorld=True) if p.evalTransform else None,
            regions=scene.volume_to_array(p.evalRegions) if p.evalRegions else None,
            ct_window=fused.GetAttribute("EDPSN.ctWindow") or "brain",
            colormap=None if colormap in (None, "", "default") else colormap, axis=p.evalAxis.value,
        )  # fmt: skip
        self._table(p, "evalTable", metrics_rows(result), f"{fused.GetName()} metrics")
        x, series = slice_series(result)
        if p.evalChart:
            scene.update_plot(p.evalChart, x, series)
        else:
            p.evalChart = scene.add_plot(
                x, series, f"{fused.GetName()} per slice", x_label="slice", y_label="metric"
            )
        slicer.modules.plots.logic().ShowChartInLayout(p.evalChart)
        return result


class EDPSNTrainingTest(ScriptedLoadableModuleTest):
    """Runs in Slicer on data it makes (no download); needs torch (PyTorch extension)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (
            self.test_SourcesNotAvailableYet,
            self.test_EvaluateFusedVolume,
            self.test_TrainTinyRun,
        ):
            self.setUp()
            test()

    def _logic(self):
        logic = EDPSNTrainingLogic()
        try:
            logic.setupPythonRequirements(askConfirmation=False)
        except RuntimeError as exc:
            self.skipTest(f"EDPSN's Python packages are not available: {exc}")
        return logic

    def test_SourcesNotAvailableYet(self):
        p = EDPSNTrainingLogic().getParameterNode()
        for source in (DataSource.CHAOS, DataSource.SCENE):
            p.source = source
            self.assertIn("Not available yet", EDPSNTrainingLogic.sourceProblem(p))
        p.source, p.dataFolder = (
            DataSource.HARVARD,
            Path(slicer.app.temporaryPath) / "no-such-folder",
        )
        self.assertIn("pick a Harvard-layout folder", EDPSNTrainingLogic.sourceProblem(p))

    def test_EvaluateFusedVolume(self):
        from EDPSNLib.fusion import FusionOptions, fuse_volumes
        from EDPSNLib.synthetic import synthetic_mri_pet
        from EDPSNLib.volume_metrics import volume_from_ijk_to_ras

        logic = self._logic()
        mri, mriMatrix, pet, petMatrix = synthetic_mri_pet()
        options = FusionOptions("PET", register="none", method="max", device="cpu")
        fusion = fuse_volumes(
            volume_from_ijk_to_ras(mri, mriMatrix), volume_from_ijk_to_ras(pet, petMatrix), options
        )
        p = logic.getParameterNode()
        p.evalMri = slicer.util.addVolumeFromArray(mri, ijkToRAS=mriMatrix, name="MRI")
        p.evalMoving = slicer.util.addVolumeFromArray(pet, ijkToRAS=petMatrix, name="PET")
        p.evalFused = scene.add_fused_volume(fusion.fused, mriMatrix, "fused")
        p.evalModality = Modality.PET
        result = logic.evaluate(p)
        for k in METRICS:  # the Evaluate section reproduces the fusion's own scores
            self.assertAlmostEqual(result.volume_metrics[k], fusion.volume_metrics[k], places=4)
        self.assertEqual(p.evalTable.GetNumberOfRows(), 4 + int(fusion.tissue.sum()))
        self.assertEqual(p.evalChart.GetNumberOfPlotSeriesNodes(), len(METRICS))

    def test_TrainTinyRun(self):
        import tempfile
        import time

        from EDPSNLib.synthetic import synthetic_harvard

        logic = self._logic()
        folder = Path(tempfile.mkdtemp(dir=slicer.app.temporaryPath))
        old = os.environ.get(paths.USER_MODELS_ENV)
        os.environ[paths.USER_MODELS_ENV] = str(folder / "models")
        try:
            p = logic.getParameterNode()
            p.dataFolder, p.pair, p.source = (
                synthetic_harvard(folder / "data"),
                Pair.MRI_PET,
                DataSource.HARVARD,
            )
            p.epochs, p.batchSize, p.crop, p.device, p.baseWeights, p.outputName = (
                1,
                2,
                32,
                Device.CPU,
                "",
                "tiny",
            )
            logic.startTraining(p, maxStepsPerEpoch=2)
            events, deadline = [], time.time() + 900
            while logic.process is not None and time.time() < deadline:
                events += logic.poll()
                slicer.app.processEvents()
                time.sleep(0.2)
            finished = [e for e in events if e["event"] in ("results", "failed", "cancelled")]
            self.assertEqual(finished[-1]["event"], "results", str(finished))
            self.assertTrue((folder / "models" / "tiny.safetensors").is_file())
            self.assertIn(
                str(folder / "models" / "tiny.safetensors"),
                [v for _, v in jobs.weights_choices("MRI-PET")],
            )
            self.assertEqual(p.resultsTable.GetNumberOfRows(), 1)  # from scratch: no "before" row
            self.assertEqual(len(logic.history["epoch"]), 1)
        finally:
            if old is None:
                os.environ.pop(paths.USER_MODELS_ENV, None)
            else:
                os.environ[paths.USER_MODELS_ENV] = old
