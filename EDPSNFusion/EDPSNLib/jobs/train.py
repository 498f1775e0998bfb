"""The ``edpsn`` command lines of a training run from the Slicer module, and what it reads back.

A run is ``[prepare] -> [score the base weights] -> train -> [score the new weights]``, each an
``edpsn`` subprocess (see :mod:`jobs` for the contract; no torch at import here either).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from EDPSNLib.atomic import write_text_atomic
from EDPSNLib.errors import InputError
from EDPSNLib.models.registry import check_name, install_model, weights_file
from EDPSNLib.names import CHAOS_SEQUENCES, METRIC_NAMES, MODALITIES, REGISTRATION_METHODS
from EDPSNLib.paths import harvard_root, user_models_dir


def train_arguments(
    *,
    pair: str,
    out: str | Path,
    data: str | Path | None,
    epochs: int,
    batch_size: int,
    lr: float,
    crop: int,
    device: str,
    init: str | Path | None = None,
    resume: str | Path | None = None,
    max_steps_per_epoch: int | None = None,
    cancel_file: str | Path | None = None,
) -> list[str]:
    """``edpsn train`` arguments with JSON progress (``resume`` continues a cancelled run;
    ``cancel_file``: the run saves a checkpoint and stops when that file appears)."""
    args = [
        "train",
        "--pair",
        pair,
        "--out",
        out,
        "--epochs",
        epochs,
        "--batch-size",
        batch_size,
        "--lr",
        repr(float(lr)),
        "--crop",
        crop,
        "--device",
        device,
        "--json-progress",
    ]
    if data is not None:
        args += ["--data", harvard_root(data)]
    if resume is not None:
        args += ["--resume", resume]
    elif init is not None:
        args += ["--init", init]
    if max_steps_per_epoch:
        args += ["--max-steps-per-epoch", max_steps_per_epoch]
    if cancel_file is not None:
        args += ["--cancel-file", cancel_file]
    return [str(a) for a in args]


def evaluate_arguments(
    *, pair: str, weights: str | Path, out: str | Path, data: str | Path | None, device: str
) -> list[str]:
    """``edpsn evaluate`` of one weights file on the test split (no images written)."""
    args = [
        "evaluate",
        "--pair",
        pair,
        "--split",
        "test",
        "--method",
        "edpsn",
        "--weights",
        weights,
        "--device",
        device,
        "--out",
        out,
        "--no-images",
    ]
    if data is not None:
        args += ["--data", harvard_root(data)]
    return [str(a) for a in args]


def read_evaluation(out: str | Path) -> dict[str, float]:
    """The seven mean metrics of the (single) method in an ``edpsn evaluate`` summary.csv."""
    path = Path(out) / "summary.csv"
    try:
        with path.open(newline="") as f:
            row = next(csv.DictReader(f))
        return {k: float(row[k]) for k in METRIC_NAMES}
    except (OSError, StopIteration, KeyError, ValueError) as exc:
        raise InputError(
            f"No evaluation summary in {path} ({exc}); run the evaluation again."
        ) from exc


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_training_inputs(data: str | Path, pair: str, name: str) -> str | None:
    """Why ``edpsn train`` cannot start with this folder and output name (None when it can)."""
    folder = harvard_root(data)
    if not (folder / pair / "MRI").is_dir() or not (folder / "splits" / pair).is_dir():
        return (
            f"{folder} has no {pair}/MRI and splits/{pair} folders: pick a Harvard-layout folder."
        )
    return check_run_name(name)


def check_run_name(name: str) -> str | None:
    """Why ``name`` cannot name a run and its weights (None when it can): checked up front with
    the registry's own rule, so a finished training never fails at its install step."""
    if not _RUN_NAME.fullmatch(name or ""):
        return "Name the new weights with letters, digits, '-', '_' and '.' only."
    if name.startswith("EDPSN_MRI-"):
        return f"'{name}' would hide the shipped default weights; choose another name."
    try:
        check_name(name)
    except InputError as exc:
        return str(exc)
    return None


def run_folder(name: str) -> Path:
    """Where a named training run keeps its checkpoint, log and evaluations."""
    return user_models_dir() / "runs" / name


def training_steps(
    *,
    name: str,
    pair: str,
    data: str | Path | None,
    device: str,
    epochs: int,
    batch_size: int,
    lr: float,
    crop: int,
    base: str | Path | None = None,
    resume: bool = False,
    max_steps_per_epoch: int | None = None,
    cancel_file: str | Path | None = None,
    score: bool = True,
) -> list[tuple[str, list[str]]]:
    """(message, arguments) of each command of a training: score the base weights on the test
    split (once per run), train (or resume), score the new weights. ``score=False`` leaves the
    two scorings out (a data set without a test split)."""
    run = run_folder(name)
    common = {"pair": pair, "data": data, "device": device}
    steps = []
    if score and base and not (run / "before" / "summary.csv").is_file():
        before = evaluate_arguments(weights=base, out=run / "before", **common)
        steps.append(("Scoring the base weights on the test split...", before))
    train = train_arguments(
        out=run,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        crop=crop,
        init=base or None,
        resume=run / "checkpoint.pt" if resume else None,
        max_steps_per_epoch=max_steps_per_epoch,
        cancel_file=cancel_file,
        **common,
    )
    steps.append(("Resuming the training..." if resume else "Training...", train))
    if score:
        after = evaluate_arguments(weights=weights_file(run, pair), out=run / "after", **common)
        steps.append(("Scoring the new weights on the test split...", after))
    return steps


# ---------------------------------------------------------------------- prepared data sets
#: Choices of ``edpsn prepare chaos --mr-sequence`` and ``edpsn prepare volumes --register``.
MR_SEQUENCES = CHAOS_SEQUENCES
REGISTRATIONS = REGISTRATION_METHODS
#: Written last by ``edpsn prepare`` (EDPSNLib.training.dataset_writer.MANIFEST_NAME).
DATASET_MANIFEST = "dataset.json"
#: Written by the module when a preparation has finished, so a resumed run skips it.
PREPARED_MARKER = "prepared.json"
#: The scene pair, exported for ``edpsn prepare volumes``.
PREPARE_FILES = {"mri": "mri.nrrd", "moving": "moving.nrrd"}


def prepare_files(folder: str | Path) -> dict[str, Path]:
    """The paths of the exported scene pair in ``folder``."""
    return {key: Path(folder) / name for key, name in PREPARE_FILES.items()}


def dataset_folder(name: str) -> Path:
    """Where a run prepared from CHAOS or a volume pair keeps its Harvard-layout data set."""
    return run_folder(name) / "dataset"


def cancel_file(name: str) -> Path:
    """The file whose appearance makes ``edpsn train --cancel-file`` save and stop."""
    return run_folder(name) / "cancel.request"


def prepare_chaos_arguments(
    *, chaos: str | Path, out: str | Path, mr_sequence: str = "T2SPIR"
) -> list[str]:
    """``edpsn prepare chaos`` arguments: MRI-CT pairs from a CHAOS folder, JSON progress."""
    if mr_sequence not in MR_SEQUENCES:
        raise InputError(f"Unknown MR sequence '{mr_sequence}'; choose one of {MR_SEQUENCES}.")
    args = [
        "prepare",
        "chaos",
        "--chaos",
        Path(chaos).expanduser(),
        "--out",
        out,
        "--mr-sequence",
        mr_sequence,
        "--json-progress",
    ]
    return [str(a) for a in args]


def prepare_volumes_arguments(
    *,
    mri: str | Path,
    moving: str | Path,
    modality: str,
    out: str | Path,
    case: str,
    register: str = "rigid",
    test_fraction: float = 0.0,
) -> list[str]:
    """``edpsn prepare volumes`` arguments: one MRI + CT/PET/SPECT pair as training slices
    (``test_fraction``: a middle block held out to score the weights before and after)."""
    if modality not in MODALITIES:
        raise InputError(f"Unknown modality '{modality}'; choose CT, PET or SPECT.")
    if register not in REGISTRATIONS:
        raise InputError(f"Unknown registration '{register}'; choose one of {REGISTRATIONS}.")
    if not _RUN_NAME.fullmatch(case):
        raise InputError(f"Case name '{case}' must be letters, digits, '.', '_' or '-'.")
    args = [
        "prepare",
        "volumes",
        "--mri",
        mri,
        "--moving",
        moving,
        "--modality",
        modality,
        "--out",
        out,
        "--case",
        case,
        "--register",
        register,
        "--json-progress",
    ]
    if test_fraction:
        if not 0.0 < test_fraction < 1.0:
            raise InputError(f"Held-out fraction must be in [0, 1), got {test_fraction:g}.")
        args += ["--test-fraction", repr(float(test_fraction))]
    return [str(a) for a in args]


def case_name(text: str) -> str:
    """A case name ``edpsn prepare`` accepts, made from a node name ("MR T2 (1)" -> "MR_T2_1")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-").rstrip("_") or "scene"


def check_chaos_inputs(folder: str | Path, pair: str, name: str) -> str | None:
    """Why ``edpsn prepare chaos`` cannot start with these choices (None when it can)."""
    if pair != "MRI-CT":
        return "CHAOS gives MRI-CT pairs only: choose the MRI-CT modality pair."
    if str(folder) in ("", ".") or not Path(folder).expanduser().is_dir():
        return "Pick the CHAOS folder (the one holding Train_Sets, or the NIfTI MR-T2SPIR layout)."
    return check_run_name(name)


def is_prepared(name: str) -> bool:
    """True when the run's data set was prepared to the end (a resumed run skips preparing)."""
    return (run_folder(name) / PREPARED_MARKER).is_file() and (
        dataset_folder(name) / DATASET_MANIFEST
    ).is_file()


def mark_prepared(name: str, source: dict[str, Any]) -> Path:
    """Record that the run's data set is complete, and from what (atomically)."""
    path = run_folder(name) / PREPARED_MARKER
    write_text_atomic(path, json.dumps({"dataset": str(dataset_folder(name)), **source}) + "\n")
    return path


def resumable(name: str) -> bool:
    """True when a run left a checkpoint or a (partly) prepared data set to continue from."""
    run = run_folder(name)
    return (run / "checkpoint.pt").is_file() or (dataset_folder(name) / DATASET_MANIFEST).is_file()


def split_size(data: str | Path, pair: str, split: str = "test") -> int:
    """Number of names in ``splits/<pair>/<split>.txt`` of a data folder (0 when missing)."""
    path = harvard_root(data) / "splits" / pair / f"{split}.txt"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def install_weights(name: str, pair: str) -> Path:
    """Install a run's best weights as the user model ``name`` (checked, then copied atomically)."""
    source = weights_file(run_folder(name), pair)
    if not source.is_file():
        raise InputError(f"The run '{name}' wrote no weights ({source}); train at least one epoch.")
    return install_model(source, name, overwrite=True)


def comparison_rows(name: str, base: str | Path | None) -> list[dict[str, Any]]:
    """Table rows: the test metrics of the base weights (if scored) and of the new ones."""
    run = run_folder(name)
    rows = []
    if base and (run / "before" / "summary.csv").is_file():
        rows.append({"scope": f"before: {Path(base).stem}", **read_evaluation(run / "before")})
    rows.append({"scope": f"after: {name}", **read_evaluation(run / "after")})
    return rows


class TrainingCurves:
    """Training loss per step and validation loss and metrics per epoch, from train events."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.epochs: list[int] = []
        self.validation: dict[str, list[float]] = {
            k: [] for k in ("validation loss", *METRIC_NAMES)
        }

    def record(self, event: dict[str, Any]) -> bool:
        """Add a "step" or "epoch" event; True when the curves changed."""
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
        """The curves of a run so far, from its ``progress.jsonl`` (empty if there is none)."""
        curves, p = cls(), Path(path)
        for line in p.read_text().splitlines() if p.is_file() else []:
            try:
                curves.record(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: skip it
        return curves

    def charts(self) -> list[tuple[str, list[int], dict[str, list[float]], str]]:
        """(chart name, x, {series: y}, x label) of the two charts that have data."""
        charts = [
            ("loss", self.steps, {"training loss": self.loss}, "step"),
            ("validation", self.epochs, self.validation, "epoch"),
        ]
        return [c for c in charts if c[1]]
