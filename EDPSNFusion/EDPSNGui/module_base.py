"""What the two EDPSN modules' widgets and logics share: the .ui, the parameter node binding,
the poll timer, the log, job events and torch setup."""

import logging

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from .python_setup import setupPythonRequirements
from .runner import deviceReport

#: How often the widgets read the running job's events (ms).
POLL_MS = 300
#: Job events that go to the log.
LOGGED = ("stage", "log", "stdout", "stderr", "error", "warning")


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
        self.ui.progressBar.format = "%p%"
        if running:
            self._timer.start()
        else:
            self._timer.stop()
            self.onParameterNodeModified()

    def reportEvent(self, event):
        """Log, status and failure dialog for the events every job sends; True if handled."""
        kind, message = event["event"], str(event.get("message", ""))
        if kind in LOGGED:
            self.ui.logTextEdit.appendPlainText(
                f"Warning: {message}" if kind == "warning" else message
            )
        if kind in ("stage", "results", "cancelled", "failed"):
            self.ui.statusLabel.text = message
        if kind == "stage":
            self.ui.progressBar.setRange(0, 0)  # busy until the stage reports counts
            if event.get("label"):  # a step of a chain: the bar says which one
                self.ui.progressBar.format = f"{event['label']}: %p%"
        if kind == "failed":
            slicer.util.errorDisplay(message, detailedText=event.get("details", ""))
        return kind in (*LOGGED, "cancelled", "failed")

    def showProgress(self, event):
        """A "progress" event's counts on the bar (events without usable counts are skipped)."""
        done, total = event.get("done"), event.get("total")
        try:
            done, total = int(done), int(total)
        except (TypeError, ValueError):
            return
        self.ui.progressBar.setRange(0, max(1, total))
        self.ui.progressBar.value = max(0, min(done, total))


class EDPSNLogicBase(ScriptedLoadableModuleLogic):
    """What both EDPSN logics share: the log callback the widget shows, torch setup, the device."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.logCallback = None

    def log(self, text):
        logging.info(text)
        if self.logCallback:
            self.logCallback(text)

    def setupPythonRequirements(self, askConfirmation=True):
        """torch from the PyTorch extension (never pip here), the other packages with pip."""
        setupPythonRequirements(self.log, askConfirmation)

    @staticmethod
    def deviceReport(device):
        """EDPSNLib.device_info's report, asked in a subprocess (no CUDA context in Slicer)."""
        return deviceReport(device)
