"""The ``edpsn`` command lines the Slicer modules run, and the results they read back.

The modules run the same commands as batch users (``edpsn fuse``, ``train``, ``evaluate``) in a
subprocess; this file is the contract between the two, tested against the real parser. It is
imported by the module files before torch is installed, so it never imports torch at load time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .paths import default_models_dir, user_models_dir

#: Files of one fusion in its working folder (the inputs are exported there by the module).
FUSE_FILES = {
    "mri": "mri.nrrd", "moving": "moving.nrrd", "fused": "fused.nrrd", "regions": "regions.nrrd",
    "metrics": "metrics.csv", "transform": "moving_to_mri.tfm",
}  # fmt: skip
#: The seven metrics, in table order (as EDPSNLib.metrics.METRIC_NAMES, which imports torch).
METRIC_NAMES = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")
#: The classical baselines of EDPSNLib.baselines.BASELINES (named here: that module imports torch).
BASELINE_NAMES = ("mean", "max", "pca", "dwt", "laplacian")
#: Model-list value prefix of a classical baseline ("method:max"); "" is the default weights.
METHOD_PREFIX = "method:"


@dataclass
class FuseJob:
    """What the user chose in EDPSN Fusion."""

    modality: str
    register: str = "rigid"
    ct_window: str = "brain"
    colormap: str | None = None  # None: the modality's default colour map
    axis: str = "axial"
    device: str = "auto"
    batch_size: int = 4  # slices per pass; small batches are fastest on a CPU
    model: str = ""  # "" default weights, "method:NAME" a baseline, else a weights file or name


def fuse_files(folder: str | Path) -> dict[str, Path]:
    """The paths of one fusion's inputs and outputs in ``folder``."""
    return {key: Path(folder) / name for key, name in FUSE_FILES.items()}


def fuse_arguments(job: FuseJob, files: dict[str, Path]) -> list[str]:
    """``edpsn fuse`` arguments (after the program name) with JSON progress on stdout."""
    args = [
        "fuse", "--mri", files["mri"], "--moving", files["moving"], "--modality", job.modality,
        "--out", files["fused"], "--regions", files["regions"], "--metrics", files["metrics"],
        "--register", job.register, "--ct-window", job.ct_window, "--axis", job.axis,
        "--device", job.device, "--batch-size", job.batch_size, "--json-progress",
    ]  # fmt: skip
    if job.register != "none":
        args += ["--transform", files["transform"]]
    if job.colormap:
        args += ["--colormap", job.colormap]
    if job.model.startswith(METHOD_PREFIX):
        args += ["--method", job.model[len(METHOD_PREFIX) :]]
    elif job.model:
        args += ["--weights", job.model]
    return [str(a) for a in args]


def metric_rows(done: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows (volume, then each region) from the "done" event of ``edpsn fuse``."""
    try:
        rows = [{"scope": "volume", **done["volume_metrics"]}]
        rows += [{"scope": f"region: {r}", **m} for r, m in done["region_metrics"].items()]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"edpsn fuse reported no metrics ({exc}); update EDPSNLib.") from exc
    return rows


#: Files of one scoring of a fused volume (EDPSN Training's Evaluate section).
SCORE_FILES = {
    "mri": "mri.nrrd", "moving": "moving.nrrd", "fused": "fused.nrrd", "regions": "regions.nrrd",
    "metrics": "metrics.csv",
}  # fmt: skip


def score_files(folder: str | Path) -> dict[str, Path]:
    """The paths of one scoring's inputs and its metrics CSV in ``folder``."""
    return {key: Path(folder) / name for key, name in SCORE_FILES.items()}


def score_arguments(
    files: dict[str, Path], modality: str, *, ct_window: str = "brain", colormap: str | None = None,
    axis: str = "axial", moving_to_mri: Any = None, regions: bool = True,
) -> list[str]:  # fmt: skip
    """Arguments of ``python -m EDPSNLib.volume_metrics`` (``moving_to_mri``: a 4x4 RAS matrix)."""
    args = ["--mri", files["mri"], "--moving", files["moving"], "--fused", files["fused"],
            "--modality", modality, "--ct-window", ct_window, "--axis", axis,
            "--out", files["metrics"], "--json-progress"]  # fmt: skip
    if regions:
        args += ["--regions", files["regions"]]
    if colormap:
        args += ["--colormap", colormap]
    if moving_to_mri is not None:
        rows = [[float(v) for v in row] for row in moving_to_mri]
        if len(rows) != 4 or any(len(r) != 4 for r in rows):
            raise InputError("The moving-to-MRI transform must be a 4x4 matrix.")
        args += ["--moving-to-mri", ",".join(repr(v) for row in rows for v in row)]
    return [str(a) for a in args]


def metrics_csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV text with columns scope + the seven metrics (the layout of ``edpsn fuse --metrics``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scope", *METRIC_NAMES])
    for row in rows:
        writer.writerow([row["scope"], *(f"{float(row[k]):.6f}" for k in METRIC_NAMES)])
    return buf.getvalue()


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows (scope + seven floats, NaN kept) of a metrics CSV from ``edpsn fuse`` or scoring."""
    try:
        with Path(path).open(newline="") as f:
            return [
                {"scope": r["scope"], **{k: float(r[k]) for k in METRIC_NAMES}}
                for r in csv.DictReader(f)
            ]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"Cannot read the metrics in {path} ({exc}); compute them again.") from exc


def slice_series(rows: list[dict[str, Any]]) -> tuple[list[int], dict[str, list[float]]]:
    """The "slice N" rows as plot data: (slice indices, {metric: values})."""
    slices = [r for r in rows if str(r["scope"]).startswith("slice ")]
    x = [int(str(r["scope"]).split()[1]) for r in slices]
    return x, {k: [float(r[k]) for r in slices] for k in METRIC_NAMES}


def harvard_folder(folder: str | Path) -> Path:
    """A data folder as the user picks it: the Harvard folder itself or one holding ``harvard/``."""
    root = Path(folder).expanduser()
    return root / "harvard" if (root / "harvard").is_dir() else root


def train_arguments(
    *, pair: str, out: str | Path, data: str | Path | None, epochs: int, batch_size: int,
    lr: float, crop: int, device: str, init: str | Path | None = None,
    resume: str | Path | None = None, max_steps_per_epoch: int | None = None,
) -> list[str]:  # fmt: skip
    """``edpsn train`` arguments with JSON progress (``resume`` continues a cancelled run)."""
    args = ["train", "--pair", pair, "--out", out, "--epochs", epochs, "--batch-size", batch_size,
            "--lr", repr(float(lr)), "--crop", crop, "--device", device, "--json-progress"]  # fmt: skip
    if data is not None:
        args += ["--data", harvard_folder(data)]
    if resume is not None:
        args += ["--resume", resume]
    elif init is not None:
        args += ["--init", init]
    if max_steps_per_epoch:
        args += ["--max-steps-per-epoch", max_steps_per_epoch]
    return [str(a) for a in args]


def evaluate_arguments(
    *, pair: str, weights: str | Path, out: str | Path, data: str | Path | None, device: str
) -> list[str]:
    """``edpsn evaluate`` of one weights file on the test split (no images written)."""
    args = ["evaluate", "--pair", pair, "--split", "test", "--method", "edpsn", "--weights", weights,
            "--device", device, "--out", out, "--no-images"]  # fmt: skip
    if data is not None:
        args += ["--data", harvard_folder(data)]
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


def weights_choices(pair: str) -> list[tuple[str, str]]:
    """(label, value) of every model a user can pick for a pair: default weights, weights in
    the user and shipped models folders made for this pair (read from their JSON sidecars),
    and the classical baselines (value ``method:NAME``)."""
    default = default_models_dir() / f"EDPSN_{pair}.safetensors"
    state = "" if default.is_file() else " (not installed)"
    choices = [(f"Default EDPSN weights for {pair}{state}", "")]
    for folder, source in ((user_models_dir(), "user"), (default_models_dir(), "shipped")):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                meta = json.loads(path.with_suffix(".json").read_text())
            except (OSError, ValueError):
                continue  # weights without a readable sidecar cannot be checked: not listed
            if path != default and isinstance(meta, dict) and meta.get("pair") == pair:
                choices.append((f"{path.stem} ({source})", str(path)))
    choices += [
        (f"Baseline without network: {name}", METHOD_PREFIX + name) for name in BASELINE_NAMES
    ]
    return choices


# ------------------------------------------------------------------------------ training
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_training_inputs(data: str | Path, pair: str, name: str) -> str | None:
    """Why ``edpsn train`` cannot start with this folder and output name (None when it can)."""
    folder = harvard_folder(data)
    if not (folder / pair / "MRI").is_dir() or not (folder / "splits" / pair).is_dir():
        return (
            f"{folder} has no {pair}/MRI and splits/{pair} folders: pick a Harvard-layout folder."
        )
    if not _RUN_NAME.fullmatch(name or ""):
        return "Name the new weights with letters, digits, '-', '_' and '.' only."
    return None


def run_folder(name: str) -> Path:
    """Where a named training run keeps its checkpoint, log and evaluations."""
    return user_models_dir() / "runs" / name


def training_steps(
    *, name: str, pair: str, data: str | Path | None, device: str, epochs: int, batch_size: int,
    lr: float, crop: int, base: str | Path | None = None, resume: bool = False,
    max_steps_per_epoch: int | None = None,
) -> list[tuple[str, list[str]]]:  # fmt: skip
    """(message, arguments) of each command of a training: score the base weights on the test
    split (once per run), train (or resume), score the new weights."""
    run = run_folder(name)
    common = {"pair": pair, "data": data, "device": device}
    steps = []
    if base and not (run / "before" / "summary.csv").is_file():
        before = evaluate_arguments(weights=base, out=run / "before", **common)
        steps.append(("Scoring the base weights on the test split...", before))
    train = train_arguments(
        out=run, epochs=epochs, batch_size=batch_size, lr=lr, crop=crop, init=base or None,
        resume=run / "checkpoint.pt" if resume else None, max_steps_per_epoch=max_steps_per_epoch,
        **common,
    )  # fmt: skip
    steps.append(("Resuming the training..." if resume else "Training...", train))
    after = evaluate_arguments(
        weights=run / f"EDPSN_{pair}.safetensors", out=run / "after", **common
    )
    steps.append(("Scoring the new weights on the test split...", after))
    return steps


def install_weights(name: str, pair: str) -> Path:
    """Copy a run's best weights and sidecar to ``<user models>/<name>.safetensors`` (atomically)."""
    source = run_folder(name) / f"EDPSN_{pair}.safetensors"
    target = user_models_dir() / f"{name}.safetensors"
    if not source.is_file():
        raise InputError(f"The run '{name}' wrote no weights ({source}); train at least one epoch.")
    for src, dst in ((source, target), (source.with_suffix(".json"), target.with_suffix(".json"))):
        partial = dst.with_name(dst.name + ".partial")
        shutil.copy2(src, partial)
        os.replace(partial, dst)  # never a half-copied file in the model list
    return target


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
        charts = [("loss", self.steps, {"training loss": self.loss}, "step"),
                  ("validation", self.epochs, self.validation, "epoch")]  # fmt: skip
        return [c for c in charts if c[1]]
