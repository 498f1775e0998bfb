"""Run ``PythonSlicer -m EDPSNLib...`` commands from the GUI: one at a time, or steps in a row.

A subprocess, not a thread or the main thread: the GUI stays responsive, Cancel ends the whole
process tree cleanly (a Python thread cannot be stopped), all host and GPU memory is given back
when it exits, a crash cannot take Slicer down, and it runs the same code path as batch users
of the command line. EDPSNLib.jobs.process.BackgroundProcess does the process work (tested there).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import slicer

from EDPSNLib.jobs import fuse as fuse_jobs
from EDPSNLib.jobs.process import BackgroundProcess, child_environment, module_command

#: Exit code of ``edpsn train`` when it stopped on request with a checkpoint.
EXIT_CANCELLED = 130


def startProcess(module, args, grace_s=10.0):
    """``PythonSlicer -u -m module args`` with EDPSNLib importable, as a BackgroundProcess."""
    python = shutil.which("PythonSlicer")
    if python is None and Path(sys.executable).name.lower().startswith("python"):
        python = sys.executable
    if python is None:
        raise RuntimeError("PythonSlicer was not found beside Slicer; reinstall Slicer.")
    libParent = Path(fuse_jobs.__file__).resolve().parents[1]  # the folder holding EDPSNLib
    # The launcher builds its own environment from the startup one; this session's
    # EDPSN_* settings (models and data folders) are passed on.
    base = dict(slicer.util.startupEnvironment())
    base.update({k: v for k, v in os.environ.items() if k.startswith("EDPSN_")})
    command = module_command(python, module, *args)
    logging.info("EDPSN runs: %s", " ".join(command))
    env = child_environment(base, [libParent])
    return BackgroundProcess(command, cwd=libParent, env=env, grace_s=grace_s).start()


def deviceReport(device):
    """EDPSNLib.device_info's report, asked in a subprocess (no CUDA context in Slicer)."""
    proc = startProcess("EDPSNLib.device_info", ["--device", device])
    deadline = time.monotonic() + 180.0  # importing torch with CUDA can take a while
    while proc.wait(timeout=0.05) is None and time.monotonic() < deadline:
        slicer.app.processEvents()  # the GUI stays responsive while torch starts
    reports = [e for e in proc.poll() if e["event"] == "device"]
    if not reports:
        proc.cancel(grace_s=0)
        failed = f"The device check failed: {proc.stderr_tail}"
        return {"usable": False, "low_memory": False, "text": failed}
    return reports[-1]


@dataclass
class Step:
    """One command of a chain."""

    message: str  # log and status text
    label: str  # what the progress bar says ("Preparing", "Training", ...)
    module: str  # run as ``PythonSlicer -m module args``
    args: list
    graceS: float = 10.0  # after SIGTERM (CTRL_BREAK), seconds before the tree is killed
    cancelFile: Path | None = None  # the command stops cleanly when this file appears
    then: Callable[[], list] | None = None  # after success: record it, return more steps
    tmp: Path | None = None  # a folder of exported inputs, removed when the step ends


class StepChain:
    """Steps run one after the other as BackgroundProcesses; poll() passes their events on.

    Between steps a "stage" event (with the step's label) is added; the chain's last events
    are "cancelled", "failed" or "steps-done", then the last step's "exit". Cancel asks the
    running step to stop through its cancel file when it has one (portable, Windows included)
    and falls back to the process group (SIGTERM, then kill) after ``fileGraceS``.
    """

    def __init__(self, steps, log, expected=None, fileGraceS=30.0):
        self.steps, self.log, self.fileGraceS = list(steps), log, fileGraceS
        self.count, self.index = max(len(self.steps), expected or 0), 0
        self.step = self.process = None
        self.cancelRequested = self.finished = False
        self._deadline, self._pending = None, []

    def start(self):
        try:
            self._pending.append(self._startNext())
        except Exception:
            self._end({})
            raise
        return self

    def _startNext(self):
        self.step, self.index = self.steps.pop(0), self.index + 1
        if self.step.cancelFile is not None:  # a request left from before would stop it at once
            Path(self.step.cancelFile).unlink(missing_ok=True)
        message = f"Step {self.index} of {self.count}: {self.step.message}"
        self.log(message)
        self.process = startProcess(self.step.module, self.step.args, grace_s=self.step.graceS)
        return {"event": "stage", "message": message, "label": self.step.label}

    def cancel(self, force=False):
        """Ask the running step to stop (its checkpoint is kept); ``force`` kills it now."""
        if self.finished or self.process is None:
            return
        self.cancelRequested, self.steps = True, []
        if force:
            self.process.cancel(grace_s=0)
        elif self.step.cancelFile is not None and self._deadline is None:
            Path(self.step.cancelFile).parent.mkdir(parents=True, exist_ok=True)
            Path(self.step.cancelFile).touch()
            self._deadline = time.monotonic() + self.fileGraceS
        elif self.step.cancelFile is None:
            self.process.cancel()

    def poll(self):
        """Events since the last call (never blocks); starts the next step when one ends."""
        events, self._pending = self._pending, []
        if self.finished or self.process is None:
            return events
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._deadline = None
            self.log("No answer to the cancel request: stopping the process.")
            self.process.cancel()  # SIGTERM / CTRL_BREAK now, killed after the step's grace
        for event in self.process.poll():
            if event["event"] == "exit":
                events.append(self._stepFinished(event))
            events.append(event)
        return events

    def _stepFinished(self, exitEvent):
        step, code, tail = self.step, exitEvent["returncode"], exitEvent["stderr_tail"]
        self.process, self._deadline = None, None
        if step.tmp is not None:
            shutil.rmtree(step.tmp, ignore_errors=True)
        if step.cancelFile is not None:
            Path(step.cancelFile).unlink(missing_ok=True)
        try:
            if code == 0 and step.then is not None:
                self.steps += step.then()  # even after a late cancel: what it records is true
                self.count = self.index + len(self.steps)
            if self.cancelRequested or exitEvent["cancelled"] or code == EXIT_CANCELLED:
                return self._end({"event": "cancelled", "message": "Cancelled."})
            if code != 0:
                last = (tail.strip().splitlines() or [f"exit code {code}"])[-1]
                return self._end({"event": "failed", "message": last, "details": tail})
            if self.steps:
                return self._startNext()
        except Exception as exc:  # report it; never leave the GUI stuck in "running"
            logging.exception("EDPSN: the next step could not start")
            message = f"{step.label} is done, but the next step could not start: {exc}"
            return self._end({"event": "failed", "message": message, "details": tail})
        return self._end({"event": "steps-done", "message": f"{step.label} done."})

    def _end(self, event):
        for step in (self.step, *self.steps):
            if step is not None and step.tmp is not None:
                shutil.rmtree(step.tmp, ignore_errors=True)
        self.finished, self.steps = True, []
        return event
