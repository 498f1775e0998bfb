"""EDPSN Training: fine-tune EDPSN from the GUI and score fused volumes (GUI only).

A training is a chain of subprocesses (EDPSNGui.training_plan): ``edpsn prepare`` when the data
is a CHAOS folder or the scene's MRI + moving volume pair (skipped when a resumed run's data set
is ready), ``edpsn evaluate`` (base weights), ``edpsn train`` and ``edpsn evaluate`` (new
weights); the new weights are then copied to the user models folder, where EDPSN Fusion lists
them. Scoring a fused volume (Evaluate) is ``python -m EDPSNLib.fusion.scoring``, also a
subprocess: a volume takes tens of seconds. One job runs at a time.
"""

import json
import shutil
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
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from EDPSNGui import mrml, scene_io, scoring, training_plan
from EDPSNGui.choices import Axis, DataSource, Device, Modality, MrSequence, Pair, Registration
from EDPSNGui.module_base import EDPSNLogicBase, EDPSNWidgetBase
from EDPSNGui.runner import StepChain
from EDPSNGui.selftest_base import EDPSNTestBase
from EDPSNLib import paths
from EDPSNLib.jobs import fuse as fuse_jobs
from EDPSNLib.jobs import prepare as prepare_jobs
from EDPSNLib.jobs import results as result_jobs
from EDPSNLib.names import METRIC_NAMES


class EDPSNTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "EDPSN Training"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = ["EDPSNFusion"]
        self.parent.contributors = ["EDPSN developers (SlicerEDPSN project)"]
        self.parent.helpText = """
Fine-tunes EDPSN on registered MRI / CT, PET or SPECT slice pairs: a Harvard-layout folder, a
CHAOS folder (MRI-CT pairs) or the MRI + moving volume pair of the scene (made into a training
set first), with progress, live plots of the loss and validation metrics, Cancel and Resume.
The new weights go to the user models folder and appear in EDPSN Fusion's model list; a table
compares the seven metrics on the test split before and after. The Evaluate section scores any fused volume in the
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
    chaosFolder: Path
    mrSequence: MrSequence = MrSequence.T2SPIR
    sceneMri: VolumeNode
    sceneMoving: VolumeNode
    sceneRegistration: Registration = Registration.RIGID
    sceneTestPercent: Annotated[int, WithinRange(0, 50)] = 15  # held-out block, before/after
    pair: Pair = Pair.MRI_PET
    baseWeights: str = ""  # a weights file, "" for a new network; synced with its combo by hand
    epochs: Annotated[int, WithinRange(1, 1000)] = 10
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    learningRate: Annotated[float, WithinRange(1e-7, 0.1)] = 1e-4
    crop: Annotated[int, WithinRange(32, 512)] = 128
    weightAverage: bool = False  # save a moving average of the weights (--ema-decay)
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
            (ui.sceneMovingSelector, "currentNodeChanged(vtkMRMLNode*)", self.onSceneMoving),
            (ui.evalFusedSelector, "currentNodeChanged(vtkMRMLNode*)", self.onFusedSelected),
            (ui.evaluateButton, "clicked(bool)", self.onEvaluate),
            (ui.exportCsvButton, "clicked(bool)", self.onExportCsv),
        )

    def initializeParameterNode(self):
        EDPSNWidgetBase.initializeParameterNode(self)
        if str(self._parameterNode.dataFolder) in ("", "."):
            self._parameterNode.dataFolder = paths.data_root()

    def sourceWidgets(self):
        """The fields of each data source (only the chosen source's are enabled)."""
        ui = self.ui
        return {
            DataSource.HARVARD: (ui.dataLabel1, ui.dataDirectoryButton),
            DataSource.CHAOS: (
                ui.chaosLabel,
                ui.chaosDirectoryButton,
                ui.mrSequenceLabel,
                ui.mrSequenceComboBox,
            ),
            DataSource.SCENE: (
                ui.sceneMriLabel,
                ui.sceneMriSelector,
                ui.sceneMovingLabel,
                ui.sceneMovingSelector,
                ui.sceneRegistrationLabel,
                ui.sceneRegistrationComboBox,
                ui.sceneTestLabel,
                ui.sceneTestSpinBox,
            ),
        }

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        if self.ui.baseWeightsComboBox.property("choicesKey") != p.pair.value:
            self.updateWeightsList()
        for source, widgets in self.sourceWidgets().items():
            for widget in widgets:
                widget.enabled = source == p.source
        problem, resumeProblem = self.logic.sourceProblem(p), self.logic.sourceProblem(p, True)
        self.ui.sourceNoteLabel.text = problem or ""
        if not self.logic.isRunning():
            self.ui.evaluateButton.enabled = bool(p.evalFused and p.evalMri and p.evalMoving)
            self.ui.startButton.enabled = problem is None
            self.ui.startButton.toolTip = problem or "Start training; becomes Cancel while running."
            resumable = resumeProblem is None and prepare_jobs.resumable(p.outputName)
            self.ui.resumeButton.enabled = resumable
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

    def onSceneMoving(self, node):
        modality = scene_io.guessModality(node) if node else None
        if modality and self._parameterNode is not None:
            self._parameterNode.pair = Pair(f"MRI-{modality}")

    def onStart(self, checked=False, resume=False):
        if self.logic.isRunning():  # the button reads "Cancel"; a second press kills at once
            self.ui.statusLabel.text = "Cancelling: saving a checkpoint to resume from..."
            self.logic.cancel(force=self.logic.cancelRequested)
            return
        p = self._parameterNode
        startOver = (
            f"A training named '{p.outputName}' exists. Start it over (Resume continues it)?"
        )
        exists = prepare_jobs.resumable(p.outputName)
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
                if event.get("loss_source"):  # fine-tuning keeps its base weights' loss
                    self.logic.log(f"Loss: {event['loss_source']}.")
            elif event["event"] == "step":
                self.ui.progressBar.value = int(event["global_step"])
                self.ui.statusLabel.text = training_plan.stepStatus(event)
            elif event["event"] == "progress":  # preparing a data set or scoring a volume
                self.showProgress(event)
            elif event["event"] == "results" and event.get("table"):
                scene_io.showTable(self.logic.params.getValue(event["table"]))
            elif event["event"] == "exit" and not self.logic.isRunning():
                self.setJobRunning(False)
        if any(e["event"] in ("step", "epoch") for e in events):
            self.logic.updateCharts()

    def onFusedSelected(self, node):
        if node is not None and self._parameterNode is not None:
            scoring.takeFusionSources(self._parameterNode, node)

    def setJobRunning(self, running):
        """The button of the running job reads "Cancel"; the other job cannot start meanwhile."""
        training = self.logic.job == "train"
        button, idle = (
            (self.ui.startButton, "Start")
            if training
            else (self.ui.evaluateButton, "Compute metrics")
        )
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
        if path and not path.lower().endswith(".csv"):
            path += ".csv"  # the format is chosen by extension; some dialogs do not add it
        if path:
            with slicer.util.tryWithErrorDisplay("Could not write the CSV file.", waitCursor=True):
                # properties={}: see scene_io.exportNodes; exportNode returns False on failure.
                if not slicer.util.exportNode(table, path, properties={}):
                    raise RuntimeError(f"{path} could not be written (see the log).")


class EDPSNTrainingLogic(EDPSNLogicBase):
    """Runs one job at a time, a training or a scoring, as a chain of subprocesses."""

    sourceProblem = staticmethod(training_plan.sourceProblem)
    baseWeightsChoices = staticmethod(training_plan.baseWeightsChoices)

    def __init__(self):
        EDPSNLogicBase.__init__(self)
        self.chain, self.curves = None, result_jobs.TrainingCurves()
        self.params = None  # the parameter node of the running job (the GUI may leave the module)
        self.job = self._tmp = self._run = None  # "train"/"evaluate"; the scoring's files

    def getParameterNode(self):
        return EDPSNTrainingParameterNode(super().getParameterNode())

    def isRunning(self):
        return self.chain is not None and not self.chain.finished

    @property
    def cancelRequested(self):
        return self.chain is not None and self.chain.cancelRequested

    def cancel(self, force=False):
        """Cancel the job; a training saves a checkpoint first (Resume continues it)."""
        if self.isRunning():
            self.chain.cancel(force=force)

    def startTraining(self, p, resume=False, maxStepsPerEpoch=None):
        """Start the chain of a training; a resumed run keeps its data set and checkpoint."""
        if self.sourceProblem(p, resume):
            raise ValueError(self.sourceProblem(p, resume))
        if self.isRunning():
            raise RuntimeError("A job is already running; wait for it or cancel it.")
        run = training_plan.runFolder(p, resume)
        self.params, self.job = p, "train"
        self.curves = result_jobs.TrainingCurves.from_log(run / "progress.jsonl")  # resumed: old
        self.chain = training_plan.trainingChain(p, self.log, maxStepsPerEpoch).start()

    def startEvaluation(self, p):
        """Export the selected volumes and score the fused one in a subprocess."""
        if self.isRunning():
            raise RuntimeError("Another job is running; wait for it or cancel it.")
        step, self._tmp, csv = scoring.scoreStep(p)
        self.params, self.job, self._run = p, "evaluate", (csv, p.evalFused.GetName())
        self.chain = StepChain([step], self.log).start()

    def poll(self):
        """Events of the running job; before the last "exit" comes "results", "cancelled" or
        "failed"."""
        events = self.chain.poll() if self.chain is not None else []
        for i, event in enumerate(events):
            self.curves.record(event)
            if event["event"] == "steps-done":
                training = self.job == "train"
                p = self.params
                events[i] = (
                    training_plan.finishTraining(p)
                    if training
                    else scoring.showScores(p, *self._run)
                )
            elif event["event"] == "cancelled" and self.job == "train":
                event["message"] += " Press Resume to continue."
        if self._tmp is not None and not self.isRunning():
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return events

    def updateCharts(self):
        """Live curves: training loss per step; validation loss and metrics per epoch."""
        for chart, x, series, xLabel in self.curves.charts():
            scene_io.setChart(
                self.params, f"{chart}Chart", x, series, f"EDPSN {chart}", x_label=xLabel
            )


class EDPSNTrainingTest(EDPSNTestBase):
    """Runs in Slicer on data it makes (no download); needs torch (PyTorch extension)."""

    def runTest(self):
        self.runTests(
            self.test_SourceProblems,
            self.test_Evaluate,
            self.test_TrainTiny,
            self.test_TrainFromScenePair,
        )

    def _logic(self):
        return self.requireSetup(EDPSNTrainingLogic())

    def _wait(self, logic, timeout):
        events = self.waitForJob(logic, logic.isRunning, timeout)
        ends = [e for e in events if e["event"] in ("results", "failed", "cancelled")]
        self.assertEqual(ends[-1]["event"], "results", str(ends))
        return events

    def test_SourceProblems(self):
        p = EDPSNTrainingLogic().getParameterNode()
        tmp = Path(slicer.app.temporaryPath)  # a Path parameter accepts only Path values
        p.source, p.pair, p.chaosFolder = DataSource.CHAOS, Pair.MRI_PET, tmp
        self.assertIn("MRI-CT pairs only", EDPSNTrainingLogic.sourceProblem(p))
        p.pair = Pair.MRI_CT
        self.assertIsNone(EDPSNTrainingLogic.sourceProblem(p))
        p.source = DataSource.SCENE
        self.assertIn("Select the MRI volume", EDPSNTrainingLogic.sourceProblem(p))
        p.source, p.dataFolder = DataSource.HARVARD, tmp / "nothing"
        self.assertIn("pick a Harvard-layout folder", EDPSNTrainingLogic.sourceProblem(p))

    def test_Evaluate(self):
        from EDPSNLib.data.synthetic import synthetic_mri_pet
        from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes
        from EDPSNLib.fusion.scoring import volume_from_ijk_to_ras as volume

        logic = self._logic()
        mri, mriMatrix, pet, petMatrix = synthetic_mri_pet()
        options = FusionOptions("PET", register="none", method="max", device="cpu")
        fusion = fuse_volumes(volume(mri, mriMatrix), volume(pet, petMatrix), options)
        p = logic.getParameterNode()
        p.evalMri = slicer.util.addVolumeFromArray(mri, ijkToRAS=mriMatrix, name="MRI")
        p.evalMoving = slicer.util.addVolumeFromArray(pet, ijkToRAS=petMatrix, name="PET")
        p.evalFused = mrml.add_fused_volume(fusion.fused, mriMatrix, "fused")
        p.evalModality = Modality.PET
        logic.startEvaluation(p)
        self._wait(logic, timeout=300)
        self.assertEqual(p.evalTable.GetNumberOfRows(), 4 + int(fusion.tissue.sum()))
        for k in METRIC_NAMES:  # the scores are the fusion's own (volume row first)
            value = slicer.util.arrayFromTableColumn(p.evalTable, k)[0]
            self.assertAlmostEqual(value, fusion.volume_metrics[k], places=4)
        self.assertEqual(p.evalChart.GetNumberOfPlotSeriesNodes(), len(METRIC_NAMES))

    def test_TrainTiny(self):
        from EDPSNLib.data.synthetic import synthetic_harvard

        logic = self._logic()
        with self.privateUserModels() as folder:
            p = logic.getParameterNode()
            p.source, p.pair = DataSource.HARVARD, Pair.MRI_PET
            p.dataFolder = synthetic_harvard(folder)
            p.epochs, p.batchSize, p.crop, p.device = 1, 2, 32, Device.CPU
            p.baseWeights, p.outputName, p.weightAverage = "", "tiny", True
            logic.startTraining(p, maxStepsPerEpoch=2)
            self._wait(logic, timeout=900)
            weights = str(folder / "models" / "tiny.safetensors")
            self.assertIn(weights, [v for _, v in fuse_jobs.weights_choices("MRI-PET")])
            sidecar = json.loads(Path(weights).with_suffix(".json").read_text())
            self.assertEqual(sidecar["training"]["ema_decay"], 0.99)  # "Average the weights"
            self.assertEqual(p.resultsTable.GetNumberOfRows(), 1)  # from scratch: no "before"
            self.assertEqual(len(logic.curves.epochs), 1)

    def test_TrainFromScenePair(self):
        from EDPSNLib.data.synthetic import synthetic_mri_pet

        logic = self._logic()
        with self.privateUserModels() as folder:
            mri, mriMatrix, pet, petMatrix = synthetic_mri_pet()
            p = logic.getParameterNode()
            p.source, p.pair, p.sceneRegistration = (
                DataSource.SCENE,
                Pair.MRI_PET,
                Registration.NONE,
            )
            p.sceneMri = slicer.util.addVolumeFromArray(mri, ijkToRAS=mriMatrix, name="MRI")
            p.sceneMoving = slicer.util.addVolumeFromArray(pet, ijkToRAS=petMatrix, name="PET")
            p.epochs, p.batchSize, p.crop, p.device = 1, 2, 32, Device.CPU
            p.baseWeights, p.outputName = "", "scene"
            logic.startTraining(p, maxStepsPerEpoch=2)
            events = self._wait(logic, timeout=900)
            self.assertEqual(
                [e["label"] for e in events if e.get("label")][:2], ["Preparing", "Training"]
            )
            self.assertTrue(prepare_jobs.is_prepared("scene"))
            self.assertIn(
                str(folder / "models" / "scene.safetensors"),
                [v for _, v in fuse_jobs.weights_choices("MRI-PET")],
            )
            logic.startTraining(p, resume=True, maxStepsPerEpoch=2)  # no second preparation
            events = self._wait(logic, timeout=900)
            self.assertNotIn("Preparing", [e.get("label") for e in events])
