"""What EDPSN Training reads back from a run: its scores and its loss and metric curves.

No torch at import (the module file imports this before torch is installed).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from EDPSNLib.errors import InputError
from EDPSNLib.jobs.train import run_folder
from EDPSNLib.names import METRIC_NAMES


def read_evaluation(out: str | Path) -> dict[str, float]:
    """The seven mean metrics of the (single) method of an ``edpsn evaluate`` run.

    Args:
        out: the evaluation's folder, holding ``summary.csv``.

    Returns:
        ``{metric: mean}`` for ``names.METRIC_NAMES``, from the first row.

    Raises:
        InputError: the summary is missing, empty or lacks a metric.

    Example:
        >>> read_evaluation("no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.InputError: No evaluation summary in ...
    """
    path = Path(out) / "summary.csv"
    try:
        with path.open(newline="") as f:
            row = next(csv.DictReader(f))
        return {k: float(row[k]) for k in METRIC_NAMES}
    except (OSError, StopIteration, KeyError, ValueError) as exc:
        raise InputError(
            f"No evaluation summary in {path} ({exc}); run the evaluation again."
        ) from exc


def comparison_rows(name: str, base: str | Path | None) -> list[dict[str, Any]]:
    """The table comparing a run's new weights with the weights it started from.

    Args:
        name: the run's name.
        base: the weights the run fine-tuned (None: trained from scratch).

    Returns:
        A row "before: <base>" when the base weights were scored, then "after: <name>", each
        with the test metrics.

    Raises:
        InputError: the new weights were not scored (no ``after/summary.csv``).
    """
    run = run_folder(name)
    rows = []
    if base and (run / "before" / "summary.csv").is_file():
        rows.append({"scope": f"before: {Path(base).stem}", **read_evaluation(run / "before")})
    rows.append({"scope": f"after: {name}", **read_evaluation(run / "after")})
    return rows


class TrainingCurves:
    """Training loss per step, and validation loss and metrics per epoch, from train events.

    Example:
        >>> curves = TrainingCurves()
        >>> curves.record({"event": "step", "global_step": 1, "loss": 0.5})
        True
        >>> curves.charts()
        [('loss', [1], {'training loss': [0.5]}, 'step')]
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.epochs: list[int] = []
        self.validation: dict[str, list[float]] = {
            k: [] for k in ("validation loss", *METRIC_NAMES)
        }

    def record(self, event: dict[str, Any]) -> bool:
        """Add one event of ``edpsn train --json-progress`` to the curves.

        Args:
            event: a decoded event; "step" and "epoch" events are used, others ignored.

        Returns:
            True when the curves changed.
        """
        if event.get("event") == "step":
            self.steps.append(int(event["global_step"]))
            self.loss.append(float(event["loss"]))
        elif event.get("event") == "epoch":
            self.epochs.append(int(event["epoch"]))
            self.validation["validation loss"].append(float(event["val_loss"]))
            for k in METRIC_NAMES:
                value = (event.get("metrics") or {}).get(k)
                self.validation[k].append(float("nan") if value is None else float(value))
        else:
            return False
        return True

    @classmethod
    def from_log(cls, path: str | Path) -> TrainingCurves:
        """The curves of a run so far, from its ``progress.jsonl``.

        Args:
            path: the run's progress log; a line cut by a kill is skipped.

        Returns:
            The curves; empty when there is no log yet.
        """
        curves, p = cls(), Path(path)
        for line in p.read_text().splitlines() if p.is_file() else []:
            try:
                curves.record(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: skip it
        return curves

    def charts(self) -> list[tuple[str, list[int], dict[str, list[float]], str]]:
        """The charts that have data, as the module plots them.

        Returns:
            ``(chart name, x, {series: y}, x label)`` of the loss chart and the validation
            chart, each only once it has a point.
        """
        charts = [
            ("loss", self.steps, {"training loss": self.loss}, "step"),
            ("validation", self.epochs, self.validation, "epoch"),
        ]
        return [c for c in charts if c[1]]
