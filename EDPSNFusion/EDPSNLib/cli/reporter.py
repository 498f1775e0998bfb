"""What a running command tells its user: a progress bar and lines on stderr for a person,
or JSON lines on stdout for the Slicer modules (``--json-progress``)."""

from __future__ import annotations

import json
import sys


class Reporter:
    """Human progress (tqdm on stderr) or JSON lines on stdout for the Slicer module."""

    def __init__(self, json_lines: bool, stage: str = "fuse"):
        self.json_lines = json_lines
        self.label = stage  # the stage named in progress events and on the bar
        self.bar = None

    def emit(self, **event: object) -> None:
        """Print ``event`` as JSON on stdout, or a stage or log event's message on stderr."""
        if self.json_lines:
            print(json.dumps(event), flush=True)
        elif event["event"] in ("stage", "log"):
            print(event["message"], file=sys.stderr)

    def stage(self, stage: str, message: str) -> None:
        """Announce ``stage``: a JSON "stage" event, or ``message`` on stderr."""
        self.emit(event="stage", stage=stage, message=message)

    def log(self, message: str) -> None:
        """A log line: a JSON "log" event, or ``message`` on stderr."""
        self.emit(event="log", message=message)

    def warn(self, message: str) -> None:
        """A warning: a JSON "warning" event, or one "edpsn fuse: warning:" line on stderr."""
        if self.json_lines:
            self.emit(event="warning", message=message)
        else:
            print(f"edpsn {self.label}: warning: {message}", file=sys.stderr)

    def progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` slices: a JSON "progress" event, or the tqdm bar on stderr."""
        if self.json_lines:
            self.emit(event="progress", stage=self.label, done=done, total=total)
            return
        if self.bar is None:
            from tqdm import tqdm

            # Counting from the first report: the work before it took longer than tqdm's
            # clock saw, so a rate over it would be absurd (millions of slices per second).
            self.bar = tqdm(total=total, desc=self.label, unit="slice", initial=done)
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.bar.close()

    def registration(self, step) -> None:
        """A registration step (EDPSNLib.volume.registration.RegistrationStep): level changes
        and the result on stderr, every step as JSON progress; the result as its own event."""
        if step.result is not None:
            r = step.result
            self.emit(event="registration", message=r.summary(), **r.figures())
            for warning in r.warnings:
                self.emit(event="warning", message=warning)
                if not self.json_lines:
                    print(f"WARNING: {warning}", file=sys.stderr)
            if not self.json_lines:
                print(r.summary(), file=sys.stderr)
        elif self.json_lines:
            self.emit(
                event="progress",
                stage="register",
                done=step.done,
                total=step.total,
                message=step.message,
            )
        elif "iteration" not in step.message:
            print(step.message, file=sys.stderr)
