"""EDPSN Training: fine-tune EDPSN from the GUI and score fused volumes (GUI only).

A training runs ``edpsn evaluate`` (base weights), ``edpsn train`` and ``edpsn evaluate`` (new
weights) one after the other, each in a subprocess (see EDPSNFusionLogic.startFusion for why);
the new weights are then copied to the user models folder, where EDPSN Fusion lists them.
Scoring a fused volume (Evaluate) is ``python -m EDPSNLib.volume_metrics``, also a subprocess:
a volume takes tens of seconds. One job runs at a time.
"""

import enum
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLLabelMapVolumeNode as LabelMapNode
from slicer import vtkMRMLLinearTransformNode as TransformNode
from slicer import vtkMRMLPlotChartNode as ChartNode
from slicer import vtkMRMLScalarVolumeNode as VolumeNode
from slicer import vtkMRMLTableNode as TableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from EDPSNFusion import Axis, Device, EDPSNFusionLogic, EDPSNWidgetBase, Modality
from EDPSNLib import jobs, paths, scene

#: Seconds a cancelled training gets to save its resumable checkpoint before it is killed.
CANCEL_GRACE_S = 120.0


class DataSource(enum.Enum):
    HARVARD = "Harvard-layout folder"
    CHAOS = "CHAOS folder"
    SCENE = "Volumes in the scene"

    def label(self):
        return self.value


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
progress, live plots of the loss and validation metrics, Cancel and Resume. The new weights go
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
    baseWeights: str = ""  # a weights file, "" for a new network; synced with its combo by hand
    epochs: Annotated[int, WithinRange(1, 1000)] = 10
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    learningRate: Annotated[float, WithinRange(1e-7, 0.1)] = 1e-4
    crop: Annotated[int, WithinRange(32, 512)] = 128
    device: Device = Device.AUTO
    outputName: str = "EDPSN-finetuned"
    resultsTable: TableNode
    lossChart: ChartNode
    validationChart: ChartNode
    evalFused: VolumeNode
    evalMri: VolumeNode
    evalMoving: VolumeNode
    evalTransform: TransformNode
    evalRegions: LabelMapNode
    evalModality: Modality = Modality.PET
    evalAxis: Axis = Axis.AXIAL
    evalTable: TableNode
    evalChart: ChartNode


class EDPSNTrainingWidget(EDPSNWidgetBase):
    def createLogic(self):
        return EDPSNTrainingLogic()

    def connections(self):
        ui = self.ui
        return (
            (ui.startButton, "clicked(bool)", self.onStart),
            (ui.resumeButton, "clicked(bool)", self.onResume),
            (ui.refreshWeightsButton, "clicked(bool)", self.updateWeightsList),
            (ui.baseWeightsComboBox, "currentIndexChanged(int)", self.onWeightsSelected),
            (ui.evalFusedSelector, "currentNodeChanged(vtkMRMLNode*)", self.onFusedSelected),
            (ui.evaluateButton, "clicked(bool)", self.onEvaluate),
            (ui.exportCsvButton, "clicked(bool)", self.onExportCsv),
        )

    def initializeParameterNode(self):
        EDPSNWidgetBase.initializeParameterNode(self)
        if str(self._parameterNode.dataFolder) in ("", "."):
            self._parameterNode.dataFolder = paths.data_root()

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        if self.ui.baseWeightsComboBox.property("choicesKey") != p.pair.value:
            self.updateWeightsList()
        problem = self.logic.sourceProblem(p)
        self.ui.sourceNoteLabel.text = problem or ""
        self.ui.dataDirectoryButton.enabled = p.source == DataSource.HARVARD
        if not self.logic.isRunning():
            self.ui.evaluateButton.enabled = bool(p.evalFused and p.evalMri and p.evalMoving)
            self.ui.startButton.enabled = problem is None
            self.ui.startButton.toolTip = problem or "Start training; becomes Cancel while running."
            checkpoint = (jobs.run_folder(p.outputName) / "checkpoint.pt").is_file()
            self.ui.resumeButton.enabled = problem is None and checkpoint
        self.ui.exportCsvButton.enabled = bool(p.evalTable)

    def updateWeightsList(self):
        p = self._parameterNode
        if p is not None:
            choices = self.logic.baseWeightsChoices(p.pair.value)
            self.fillComboBox(self.ui.baseWeightsComboBox, p.pair.value, choices, p.baseWeights)
            self.onWeightsSelected()

    def onWeightsSelected(self, index=None):
        if self._parameterNode is not None and self.ui.baseWeightsComboBox.count:
            self._parameterNode.baseWeights = self.ui.baseWeightsComboBox.currentData or ""

    def onStart(self, checked=False, resume=False):
        if self.logic.isRunning():  # the button reads "Cancel"; a second press kills at once
            self.ui.statusLabel.text = "Cancelling: saving a checkpoint to resume from..."
            self.logic.cancel(force=self.logic.cancelRequested)
            return
        p = self._parameterNode
        exists = (jobs.run_folder(p.outputName) / "checkpoint.pt").is_file()
        startOver = (
            f"A training named '{p.outputName}' exists. Start it over (Resume continues it)?"
        )
        if exists and not resume and not slicer.util.confirmOkCancelDisplay(startOver):
            return
        self.ui.logTextEdit.clear()
        with slicer.util.tryWithErrorDisplay("Could not start the training.", waitCursor=True):
            self.logic.setupPythonRequirements()
            self.logic.startTraining(p, resume=resume)
            self.setJobRunning(True)

    def onResume(self):
        self.onStart(resume=True)

    def onPoll(self):
        events = self.logic.poll()
        for event in events:
            if self.reportEvent(event):
                continue
            if event["event"] == "start":
                total = int(event["epochs"]) * int(event["steps_per_epoch"])
                self.ui.progressBar.setRange(0, total)
            elif event["event"] == "step":
                self.ui.progressBar.value = int(event["global_step"])
                eta = int(event.get("eta_s") or 0)
                self.ui.statusLabel.text = (
                    f"Epoch {event['epoch']}, step {event['step']}/{event['steps']}: loss "
                    f"{event['loss']:.4g}, about {eta // 60} min {eta % 60} s left"
                )
            elif event["event"] == "progress":  # scoring a volume
                self.ui.progressBar.setRange(0, max(1, int(event["total"])))
                self.ui.progressBar.value = int(event["done"])
            elif event["event"] == "results":
                EDPSNFusionLogic.showTable(self.logic.params.getValue(event["table"]))
            elif event["event"] == "exit" and not self.logic.isRunning():
                self.setJobRunning(False)
        if any(e["event"] in ("step", "epoch") for e in events):
            self.logic.updateCharts()

    def onFusedSelected(self, node):
        p = self._parameterNode
        if node is None or p is None:
            return
        for role in ("mri", "moving", "transform", "regions"):  # as EDPSN Fusion recorded them
            if node.GetNodeReference(f"EDPSN.{role}") is not None:
                p.setValue("eval" + role.capitalize(), node.GetNodeReference(f"EDPSN.{role}"))
        for key, enumType in (("modality", Modality), ("axis", Axis)):
            if node.GetAttribute(f"EDPSN.{key}"):
                p.setValue("eval" + key.capitalize(), enumType(node.GetAttribute(f"EDPSN.{key}")))

    def setJobRunning(self, running):
        """The button of the running job reads "Cancel"; the other job cannot start meanwhile."""
        training = self.logic.job == "train"
        button, idle = (self.ui.startButton, "Start") if training else (self.ui.evaluateButton, "Compute metrics")  # fmt: skip
        other = self.ui.evaluateButton if training else self.ui.startButton
        self.setRunning(button, running, idle)
        if running:
            other.enabled = self.ui.resumeButton.enabled = False

    def onEvaluate(self):
        if self.logic.isRunning():  # "Cancel" while scoring
            self.logic.cancel(force=True)
            return
        with slicer.util.tryWithErrorDisplay("Could not compute the metrics.", waitCursor=True):
            self.logic.setupPythonRequirements()
            self.logic.startEvaluation(self._parameterNode)
            self.setJobRunning(True)

    def onExportCsv(self):
        table = self._parameterNode.evalTable
        name = f"{table.GetName()}.csv"
        path = qt.QFileDialog.getSaveFileName(None, "Export metrics", name, "CSV (*.csv)")
        if path:
            with slicer.util.tryWithErrorDisplay("Could not write the CSV file.", waitCursor=True):
                slicer.util.exportNode(table, path)


class EDPSNTrainingLogic(EDPSNFusionLogic):
    """Runs one job at a time: a training (jobs.training_steps) or a scoring, as subprocesses."""

    def __init__(self):
        EDPSNFusionLogic.__init__(self)
        self.cancelRequested, self._steps, self.curves = False, [], jobs.TrainingCurves()
        self.params = None  # the parameter node of the running job (the GUI may leave the module)
        self.job = None  # "train" or "evaluate"

    def getParameterNode(self):
        return EDPSNTrainingParameterNode(super(EDPSNFusionLogic, self).getParameterNode())

    @staticmethod
    def sourceProblem(p):
        """Why training cannot start with these choices (None when it can)."""
        if p.source in UNAVAILABLE:
            return UNAVAILABLE[p.source]
        return jobs.check_training_inputs(p.dataFolder, p.pair.value, p.outputName)

    @staticmethod
    def baseWeightsChoices(pair):
        """A new network, then every installed weights file made for the pair."""
        from EDPSNLib.methods import default_weights_path

        choices = [("New network (train from scratch)", "")]
        for label, value in jobs.weights_choices(pair):
            path = value or str(default_weights_path(pair))
            if not value.startswith(jobs.METHOD_PREFIX) and Path(path).is_file():
                choices.append((label, path))
        return choices

    def startTraining(self, p, resume=False, maxStepsPerEpoch=None):
        if self.sourceProblem(p):
            raise ValueError(self.sourceProblem(p))
        if self.isRunning():
            raise RuntimeError("A training is already running; wait for it or cancel it.")
        run = jobs.run_folder(p.outputName)
        if resume and not (run / "checkpoint.pt").is_file():
            raise ValueError(f"There is no checkpoint of '{p.outputName}' to resume from.")
        if not resume and run.exists():
            shutil.rmtree(run)  # the user agreed to start this run over
        run.mkdir(parents=True, exist_ok=True)
        steps = jobs.training_steps(
            name=p.outputName, pair=p.pair.value, data=p.dataFolder, device=p.device.value,
            epochs=p.epochs, batch_size=p.batchSize, lr=p.learningRate, crop=p.crop,
            base=p.baseWeights or None, resume=resume, max_steps_per_epoch=maxStepsPerEpoch,
        )  # fmt: skip
        self._steps = [(message, "EDPSNLib.cli", args) for message, args in steps]
        self.params, self.job, self.cancelRequested = p, "train", False
        self.curves = jobs.TrainingCurves.from_log(run / "progress.jsonl")  # resumed: old curves
        self._startNext()

    def _startNext(self):
        message, module, args = self._steps.pop(0)
        self.log(message)
        self.process = self.startProcess(module, args, grace_s=CANCEL_GRACE_S)
        return {"event": "stage", "message": message}

    def startEvaluation(self, p):
        """Export the selected volumes and score the fused one in a subprocess."""
        if not (p.evalFused and p.evalMri and p.evalMoving):
            raise ValueError("Select the fused volume, its MRI and its CT, PET or SPECT volume.")
        if self.isRunning():
            raise RuntimeError("Another job is running; wait for it or cancel it.")
        tmp = Path(tempfile.mkdtemp(prefix="EDPSNEvaluate-", dir=slicer.app.temporaryPath))
        files = jobs.score_files(tmp)
        nodes = {"mri": p.evalMri, "moving": p.evalMoving, "fused": p.evalFused, "regions": p.evalRegions}  # fmt: skip
        try:
            for key, node in nodes.items():
                if node is not None:  # world=True: a parent transform is applied to a copy
                    slicer.util.exportNode(node, str(files[key]), world=True)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fused, transform = p.evalFused, p.evalTransform
        colormap = fused.GetAttribute("EDPSN.colormap")
        args = jobs.score_arguments(
            files, p.evalModality.value, ct_window=fused.GetAttribute("EDPSN.ctWindow") or "brain",
            colormap=None if colormap in (None, "", "default") else colormap, axis=p.evalAxis.value,
            moving_to_mri=slicer.util.arrayFromTransformMatrix(transform, toWorld=True) if transform else None,
            regions=p.evalRegions is not None,
        )  # fmt: skip
        self._run = {"tmp": tmp, "csv": files["metrics"], "name": fused.GetName()}
        self.params, self.job, self.cancelRequested = p, "evaluate", False
        self._steps = [(f"Scoring {fused.GetName()}...", "EDPSNLib.volume_metrics", args)]
        self._startNext()

    def cancel(self, force=False):
        if self.isRunning():
            self.cancelRequested, self._steps = True, []
            self.process.cancel(grace_s=0 if force else None)

    def poll(self):
        events = []
        for event in self.process.poll() if self.process is not None else []:
            self.curves.record(event)
            if event["event"] == "exit":
                self.process = None
                events.append(self._stepFinished(event))
            events.append(event)
        return events

    def _stepFinished(self, exitEvent):
        tail, code = exitEvent["stderr_tail"], exitEvent["returncode"]
        if self.job == "evaluate" and (exitEvent["cancelled"] or code != 0):
            shutil.rmtree(self._run["tmp"], ignore_errors=True)
        if exitEvent["cancelled"] or code == 130:  # 130: edpsn train saved a checkpoint
            self._steps = []
            resume = " Press Resume to continue." if self.job == "train" else ""
            return {"event": "cancelled", "message": "Cancelled." + resume}
        if code != 0:
            self._steps = []
            last = (tail.strip().splitlines() or [f"exit code {code}"])[-1]
            return {"event": "failed", "message": last, "details": tail}
        if self._steps:
            return self._startNext()
        if self.job == "evaluate":
            return self._finishEvaluation(tail)
        p = self.params
        try:
            target = jobs.install_weights(p.outputName, p.pair.value)
            rows = jobs.comparison_rows(p.outputName, p.baseWeights or None)
        except Exception as exc:  # report it; never leave the GUI stuck in "running"
            message = f"The new weights could not be installed: {exc}"
            return {"event": "failed", "message": message, "details": tail}
        self._table(p, "resultsTable", rows, f"{p.outputName} test metrics")
        message = f"Done: '{p.outputName}' is in EDPSN Fusion's model list ({target})."
        return {"event": "results", "message": message, "table": "resultsTable"}

    def _finishEvaluation(self, tail):
        """The scores as a table (volume, regions, slices) and a per-slice plot."""
        p, run = self.params, self._run
        try:
            rows = jobs.read_metrics_csv(run["csv"])
            self._table(p, "evalTable", rows, f"{run['name']} metrics")
            x, series = jobs.slice_series(rows)
            if p.evalChart:
                scene.update_plot(p.evalChart, x, series)
            else:
                name = f"{run['name']} per slice"
                p.evalChart = scene.add_plot(x, series, name, x_label="slice", y_label="metric")
            slicer.modules.plots.logic().ShowChartInLayout(p.evalChart)
        except Exception as exc:  # report it; never leave the GUI stuck in "running"
            message = f"The metrics could not be shown: {exc}"
            return {"event": "failed", "message": message, "details": tail}
        finally:
            shutil.rmtree(run["tmp"], ignore_errors=True)
        message = f"Metrics of {run['name']} computed."
        return {"event": "results", "message": message, "table": "evalTable"}

    @staticmethod
    def _table(p, field, rows, name):
        if p.getValue(field):
            scene.update_metrics_table(p.getValue(field), rows)
        else:
            p.setValue(field, scene.add_metrics_table(rows, name))

    def updateCharts(self):
        """Live curves: training loss per step; validation loss and metrics per epoch."""
        p = self.params
        for chart, x, series, xLabel in self.curves.charts():
            field = f"{chart}Chart"
            if p.getValue(field):
                scene.update_plot(p.getValue(field), x, series)
            else:
                p.setValue(field, scene.add_plot(x, series, f"EDPSN {chart}", x_label=xLabel))
                slicer.modules.plots.logic().ShowChartInLayout(p.getValue(field))


class EDPSNTrainingTest(ScriptedLoadableModuleTest):
    """Runs in Slicer on data it makes (no download); needs torch (PyTorch extension)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_SourcesNotAvailableYet, self.test_Evaluate, self.test_TrainTiny):
            self.setUp()
            test()

    def _logic(self):
        logic = EDPSNTrainingLogic()
        try:
            logic.setupPythonRequirements(askConfirmation=False)
        except RuntimeError as exc:
            self.skipTest(f"EDPSN's Python packages are not available: {exc}")
        return logic

    def _wait(self, logic, timeout):
        import time

        events, deadline = [], time.time() + timeout
        while logic.process is not None:
            events += logic.poll()
            slicer.app.processEvents()
            time.sleep(0.2)
            self.assertLess(time.time(), deadline, "the job did not finish in time")
        ends = [e for e in events if e["event"] in ("results", "failed", "cancelled")]
        self.assertEqual(ends[-1]["event"], "results", str(ends))
        return events

    def test_SourcesNotAvailableYet(self):
        p = EDPSNTrainingLogic().getParameterNode()
        for source in (DataSource.CHAOS, DataSource.SCENE):
            p.source = source
            self.assertIn("Not available yet", EDPSNTrainingLogic.sourceProblem(p))
        p.source, p.dataFolder = DataSource.HARVARD, Path(slicer.app.temporaryPath) / "nothing"
        self.assertIn("pick a Harvard-layout folder", EDPSNTrainingLogic.sourceProblem(p))

    def test_Evaluate(self):
        from EDPSNLib.fusion import FusionOptions, fuse_volumes
        from EDPSNLib.synthetic import synthetic_mri_pet
        from EDPSNLib.volume_metrics import volume_from_ijk_to_ras as volume

        logic = self._logic()
        mri, mriMatrix, pet, petMatrix = synthetic_mri_pet()
        options = FusionOptions("PET", register="none", method="max", device="cpu")
        fusion = fuse_volumes(volume(mri, mriMatrix), volume(pet, petMatrix), options)
        p = logic.getParameterNode()
        p.evalMri = slicer.util.addVolumeFromArray(mri, ijkToRAS=mriMatrix, name="MRI")
        p.evalMoving = slicer.util.addVolumeFromArray(pet, ijkToRAS=petMatrix, name="PET")
        p.evalFused = scene.add_fused_volume(fusion.fused, mriMatrix, "fused")
        p.evalModality = Modality.PET
        logic.startEvaluation(p)
        self._wait(logic, timeout=300)
        self.assertEqual(p.evalTable.GetNumberOfRows(), 4 + int(fusion.tissue.sum()))
        for k in jobs.METRIC_NAMES:  # the scores are the fusion's own (volume row first)
            value = slicer.util.arrayFromTableColumn(p.evalTable, k)[0]
            self.assertAlmostEqual(value, fusion.volume_metrics[k], places=4)
        self.assertEqual(p.evalChart.GetNumberOfPlotSeriesNodes(), len(jobs.METRIC_NAMES))

    def test_TrainTiny(self):
        from EDPSNLib.synthetic import synthetic_harvard

        logic = self._logic()
        folder = Path(tempfile.mkdtemp(dir=slicer.app.temporaryPath))
        old = os.environ.get(paths.USER_MODELS_ENV)
        os.environ[paths.USER_MODELS_ENV] = str(folder / "models")
        try:
            p = logic.getParameterNode()
            p.source, p.pair, p.dataFolder = (
                DataSource.HARVARD,
                Pair.MRI_PET,
                synthetic_harvard(folder),
            )
            p.epochs, p.batchSize, p.crop, p.device = 1, 2, 32, Device.CPU
            p.baseWeights, p.outputName = "", "tiny"
            logic.startTraining(p, maxStepsPerEpoch=2)
            self._wait(logic, timeout=900)
            weights = str(folder / "models" / "tiny.safetensors")
            self.assertIn(weights, [v for _, v in jobs.weights_choices("MRI-PET")])
            self.assertEqual(p.resultsTable.GetNumberOfRows(), 1)  # from scratch: no "before"
            self.assertEqual(len(logic.curves.epochs), 1)
        finally:
            if old is None:
                os.environ.pop(paths.USER_MODELS_ENV, None)
            else:
                os.environ[paths.USER_MODELS_ENV] = old
