"""Settings and result of a training run, output file names, device and data-folder resolution.

Re-exported by :mod:`EDPSNLib.training.trainer`, so ``from EDPSNLib.training.trainer import TrainConfig`` works.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from EDPSNLib.data.harvard import PAIR_NAMES, harvard_root
from EDPSNLib.data.splits import parse_fold_split
from EDPSNLib.errors import InputError
from EDPSNLib.models.weights import json_safe
from EDPSNLib.training.augment import parse_augment
from EDPSNLib.training.losses import LossConfig
from EDPSNLib.training.report import CURVE_METRICS

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "progress.jsonl"
CURVES_NAME = "curves.png"
LAST_NAME = "last.safetensors"
Progress = Callable[[dict[str, Any]], None]
#: Settings that fix the order, crops and count of batches: resume is exact only if they match.
#: The number of processes is not among them: ``batch_size`` is the global batch, so a run
#: may be resumed with another world size (equal up to floating-point summation order).
DATA_ORDER_KEYS = ("seed", "batch_size", "crop", "max_steps_per_epoch", "split", "augment")
#: Learning-rate schedules over the run's steps (``learning_rate``).
LR_SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.01  # the cosine schedule ends at 1 % of --lr: the last steps still move a little
#: Training splits: the source repo's train list with a seeded 20 % validation, or a case fold.
TRAIN_SPLIT_HELP = (
    "source (the source repo's train list, validation a seeded 20 %% of it) or case-fold-<k> "
    "(train on the fold's training cases, select on its validation case; data/splits.py) or "
    "case-all (every case but fold 0's validation case, which selects: the shipped weights)"
)


@dataclass
class TrainConfig:
    """Every training setting; ``epochs`` is the total to reach (a resumed run continues to it)."""

    out: str | Path
    pair: str = "MRI-PET"
    data: str | Path | None = None  # data root (holding harvard/) or the harvard folder itself
    epochs: int = 10
    batch_size: int = 8  # the global batch: split over the processes of a distributed run
    lr: float = 1e-4  # on resume this replaces the checkpoint's learning rate
    crop: int = 128
    device: str = "auto"
    resume: str | Path | None = None
    init: str | Path | None = None  # weights file to fine-tune from
    seed: int = 0
    vgg_weights: str | Path | None = None
    max_steps_per_epoch: int | None = None
    workers: int = 0
    max_val_images: int | None = None  # None: the whole validation split
    select: str = "loss"  # best epoch: lowest val loss, or highest value of a metric name
    loss: LossConfig = field(default_factory=LossConfig)
    model: dict[str, Any] | None = None  # EDPSNConfig fields (fresh network; checked on resume)
    progress_bar: bool = False
    command: str | None = None  # recorded in the weights' metadata
    loss_source: str | None = None  # which loss weights were given, where the others came from
    weights_name: str | None = None  # default EDPSN_<pair>.safetensors
    # When this file appears, training stops between two steps like on SIGINT. A file written
    # before ``cancel_since`` (epoch seconds; None: when the run is set up) is stale, e.g. from
    # a GUI's earlier cancel: it is removed, with a warning.
    cancel_file: str | Path | None = None
    cancel_since: float | None = None
    split: str = "source"  # "source", "case-fold-<k>" or "case-all" (see train_val_splits)
    augment: tuple[str, ...] = ()  # subset of training.augment.AUGMENT_KINDS
    # > 0: validate and save an exponential moving average of the weights (weight_average.py).
    ema_decay: float = 0.0
    lr_schedule: str = "constant"  # or "cosine": from lr down to COSINE_FLOOR * lr at the end

    def __post_init__(self) -> None:
        self.augment = parse_augment(self.augment)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (paths as strings, loss weights as a dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["loss"] = self.loss.to_dict()
        out["augment"] = list(self.augment)
        return json_safe({k: str(v) if isinstance(v, Path) else v for k, v in out.items()})


@dataclass
class TrainResult:
    """What a run produced; ``cancelled`` runs still leave a resumable checkpoint."""

    out: Path
    checkpoint: Path
    weights: Path | None  # the product (best) weights, None before the first epoch ends
    last_weights: Path | None
    epochs_done: int
    global_step: int
    cancelled: bool
    perceptual: str
    time_s: float
    history: dict[str, list[dict[str, Any]]]
    best: dict[str, Any] | None
    world_size: int = 1  # processes that trained together (torchrun)


def learning_rate(base: float, schedule: str, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total``.

    ``constant``: ``base``. ``cosine``: half a cosine from ``base`` at step 0 to
    ``COSINE_FLOOR * base`` at step ``total``; a function of the step alone, so a resumed run
    follows the same schedule.

    Example:
        >>> learning_rate(2e-3, "cosine", 0, 100), learning_rate(2e-3, "cosine", 100, 100)
        (0.002, 2e-05)
        >>> round(learning_rate(1.0, "cosine", 50, 100), 3), learning_rate(1.0, "constant", 99, 100)
        (0.505, 1.0)
    """
    if schedule == "constant":
        return base
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return base * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * t)))


def train_val_splits(split: str) -> tuple[str, str]:
    """The (training, validation) split names of a training split.

    Example:
        >>> train_val_splits("source"), train_val_splits("case-fold-1")
        (('train', 'val'), ('case-fold-1/train', 'case-fold-1/val'))
        >>> train_val_splits("case-all")
        ('case-all/train', 'case-all/val')
    """
    if split == "source":
        return "train", "val"
    parsed = parse_fold_split(split) if split.startswith("case-") else None
    if parsed is None or "/" in split:
        raise InputError(f"Unknown training split '{split}'; use {TRAIN_SPLIT_HELP}.")
    return f"{split}/train", f"{split}/val"


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, else mps, else cpu; an unavailable explicit device is an InputError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"Unknown device '{name}'; use auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"Device '{name}' asked for but CUDA is not available; use --device cpu.")
    return device


def resolve_harvard_root(data: str | Path | None) -> Path | None:
    """A data folder given by the user: the Harvard folder itself or a folder holding ``harvard/``."""
    if data is None:
        return None
    root = Path(data).expanduser()
    if not root.is_dir():
        raise InputError(f"Data folder {root} does not exist; give the folder holding harvard/.")
    return harvard_root(root)


def check_config(cfg: TrainConfig) -> None:
    """Refuse out-of-range settings with one message listing every problem."""
    problems = []
    if cfg.pair not in PAIR_NAMES:
        problems.append(f"pair must be one of {', '.join(PAIR_NAMES)}, got '{cfg.pair}'")
    for name in ("epochs", "batch_size"):
        if int(getattr(cfg, name)) < 1:
            problems.append(f"{name} must be >= 1")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        problems.append(f"lr must be a positive number, got {cfg.lr}")
    if cfg.max_steps_per_epoch is not None and cfg.max_steps_per_epoch < 1:
        problems.append("max_steps_per_epoch must be >= 1")
    if cfg.workers < 0:
        problems.append("workers must be >= 0")
    if cfg.lr_schedule not in LR_SCHEDULES:
        problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
    if not (math.isfinite(cfg.ema_decay) and 0 <= cfg.ema_decay < 1):
        problems.append(f"ema_decay must be in [0, 1) (0: off), got {cfg.ema_decay}")
    if cfg.select != "loss" and cfg.select not in CURVE_METRICS:
        problems.append(f"select must be 'loss' or one of {', '.join(CURVE_METRICS)}")
    try:
        train_val_splits(cfg.split)
    except InputError as exc:
        problems.append(str(exc).rstrip("."))
    if cfg.cancel_file is not None and Path(cfg.cancel_file).expanduser().is_dir():
        problems.append(f"cancel_file {cfg.cancel_file} is a folder; give a file path")
    if problems:
        raise InputError("Invalid training settings: " + "; ".join(problems) + ".")


def score(entry: dict[str, Any], select: str) -> float:
    """Higher is better: minus the validation loss, or the chosen metric."""
    value = entry["val_loss"] if select == "loss" else entry["metrics"].get(select, float("nan"))
    value = float("nan") if value is None else float(value)
    return -value if select == "loss" else value


def remove_stale_cancel_file(path: Path, since: float) -> bool:
    """Delete a cancel file written before ``since`` (True if there was one); a newer one is a
    cancel asked for while the run was starting, and stays."""
    try:
        if not path.is_file() or path.stat().st_mtime >= since:
            return False
    except FileNotFoundError:
        return False
    try:
        path.unlink(missing_ok=True)  # another rank may have removed it first
    except OSError as exc:
        raise InputError(
            f"Cancel file {path} already exists and cannot be removed ({exc}); delete it or "
            "choose another --cancel-file."
        ) from exc
    return True
