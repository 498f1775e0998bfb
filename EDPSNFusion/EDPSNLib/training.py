"""Train or fine-tune EDPSN on Harvard pairs: seeded, resumable, cancellable, NaN-guarded.

Files in ``out``: ``checkpoint.pt`` (weights, Adam state, position, RNG, history; written
atomically after every epoch and on cancel), ``progress.jsonl`` (one JSON event per line),
``curves.png``, ``last.safetensors`` and the product weights ``EDPSN_<pair>.safetensors``
(the epoch with the best validation score), each with its JSON sidecar.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .atomic import check_output_path
from .checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from .config import EDPSNConfig
from .datasets import HarvardFusionDataset, epoch_batches, steps_per_epoch
from .errors import InputError, TrainingError
from .harvard import PAIR_NAMES, harvard_root, list_pairs, load_pairs
from .losses import LOSS_TERMS, FusionLoss, LossConfig, luminance
from .paths import data_root
from .perceptual import build_extractor
from .training_report import CURVE_METRICS, append_jsonl, plot_curves, validate
from .weights import json_safe, save_weights

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "progress.jsonl"
CURVES_NAME = "curves.png"
LAST_NAME = "last.safetensors"
Progress = Callable[[dict[str, Any]], None]
#: Settings that fix the order, crops and count of batches: resume is exact only if they match.
_DATA_ORDER_KEYS = ("seed", "batch_size", "crop", "max_steps_per_epoch")


@dataclass
class TrainConfig:
    """Every training setting; ``epochs`` is the total to reach (a resumed run continues to it)."""

    out: str | Path
    pair: str = "MRI-PET"
    data: str | Path | None = None  # data root (holding harvard/) or the harvard folder itself
    epochs: int = 10
    batch_size: int = 8
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
    model: dict[str, Any] | None = None  # EDPSNConfig fields for a fresh network
    progress_bar: bool = False
    command: str | None = None  # recorded in the weights' metadata
    weights_name: str | None = None  # default EDPSN_<pair>.safetensors

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (paths as strings, loss weights as a dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["loss"] = self.loss.to_dict()
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


def _check_config(cfg: TrainConfig) -> None:
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
    if cfg.select != "loss" and cfg.select not in CURVE_METRICS:
        problems.append(f"select must be 'loss' or one of {', '.join(CURVE_METRICS)}")
    if problems:
        raise InputError("Invalid training settings: " + "; ".join(problems) + ".")


def _score(entry: dict[str, Any], select: str) -> float:
    """Higher is better: minus the validation loss, or the chosen metric."""
    value = entry["val_loss"] if select == "loss" else entry["metrics"].get(select, float("nan"))
    value = float("nan") if value is None else float(value)
    return -value if select == "loss" else value


class _Run:
    """One call of :func:`train`: holds the model, optimiser, history and output paths."""

    def __init__(self, cfg: TrainConfig, progress: Progress | None) -> None:
        _check_config(cfg)
        self.cfg, self.progress = cfg, progress
        self.out = check_output_path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / CHECKPOINT_NAME
        self.weights_path = self.out / (cfg.weights_name or f"EDPSN_{cfg.pair}.safetensors")
        self.last_path = self.out / LAST_NAME
        self.device = resolve_device(cfg.device)
        self.root = resolve_harvard_root(cfg.data)
        self.train_pairs = list_pairs(cfg.pair, "train", self.root)
        val_pairs = list_pairs(cfg.pair, "val", self.root)[: cfg.max_val_images or None]
        self.dataset = HarvardFusionDataset(self.train_pairs, cfg.crop)
        self.val_mri, self.val_func = load_pairs(val_pairs)
        self.n_val = len(val_pairs)
        self.extractor = build_extractor(cfg.vgg_weights).to(self.device)
        self.loss_fn = FusionLoss(cfg.loss, self.extractor).to(self.device)
        n = len(self.dataset)
        self.steps = steps_per_epoch(n, min(cfg.batch_size, n), cfg.max_steps_per_epoch)
        self.history: dict[str, list[dict[str, Any]]] = {"steps": [], "epochs": []}
        self.epoch = self.step = self.global_step = 0
        self.prior_time = 0.0
        self.best: dict[str, Any] | None = None
        self.warnings: list[str] = []
        self.init_pair: str | None = None  # pair of the --init weights, when fine-tuning
        self._build_model()

    def _build_model(self) -> None:
        from .model import EDPSN
        from .weights import load_weights

        cfg, ckpt = self.cfg, None
        if cfg.resume:
            ckpt = load_checkpoint(cfg.resume)
            if ckpt["pair"] != cfg.pair:
                raise InputError(
                    f"Checkpoint {cfg.resume} is for {ckpt['pair']}, not {cfg.pair}; use --pair {ckpt['pair']}."
                )
            self.model = EDPSN(EDPSNConfig.from_dict(ckpt["model_config"]))
            self.model.load_state_dict(ckpt["model"])
        elif cfg.init:
            # Any pair's weights are a valid starting point (e.g. MRI-CT fine-tuned from
            # MRI-PET); the init file and its pair are recorded in the new metadata.
            self.model, init_meta = load_weights(cfg.init)
            self.init_pair = init_meta.get("pair")
        else:
            torch.manual_seed(cfg.seed)  # seeded initial weights
            self.model = EDPSN(EDPSNConfig(**(cfg.model or {})))
        self.model.to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        if ckpt is None:
            torch.manual_seed(cfg.seed)
            if self.device.type == "cuda":
                torch.cuda.manual_seed_all(cfg.seed)
            return
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr
        self.epoch, self.step, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        self.history, self.best, self.prior_time = ckpt["history"], ckpt["best"], ckpt["time_s"]
        restore_rng_state(ckpt["rng"], self.device)
        old = ckpt.get("train_config", {})
        changed = [k for k in _DATA_ORDER_KEYS if k in old and old[k] != getattr(cfg, k)]
        if changed:
            self.warnings.append(
                f"Resuming with other {', '.join(changed)} than the checkpoint's run "
                f"({', '.join(f'{k}={old[k]}' for k in changed)}): training continues, but not "
                "exactly as the interrupted run would have."
            )

    # -- outputs ---------------------------------------------------------------------------
    def log(self, event: dict[str, Any]) -> None:
        event = json_safe(event)
        append_jsonl(self.out / LOG_NAME, event)
        if self.progress is not None:
            self.progress(event)

    def elapsed(self) -> float:
        return self.prior_time + time.monotonic() - self.t0

    def save_checkpoint(self) -> None:
        model_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = dict(
            pair=self.cfg.pair, model_config=self.model.config.to_dict(), model=model_state,
            train_config=self.cfg.to_dict(), optimizer=self.optimizer.state_dict(),
            epoch=self.epoch, step=self.step, global_step=self.global_step, history=self.history,
            best=self.best, time_s=self.elapsed(), rng=rng_state(self.device),
            perceptual=self.extractor.identifier,
        )  # fmt: skip
        save_checkpoint(self.ckpt_path, state)

    def metadata(self, entry: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        settings = {k: v for k, v in cfg.to_dict().items() if k not in ("loss", "command")}
        settings["init_pair"] = self.init_pair
        return dict(
            pair=cfg.pair, data=str(self.root or data_root() / "harvard"), split="train",
            validation_split="val", train_pairs=len(self.dataset), val_pairs=self.n_val,
            epochs=entry["epoch"], steps=self.global_step, metrics=entry["metrics"],
            val_loss=entry["val_loss"], selected_by=cfg.select, loss=cfg.loss.to_dict(),
            perceptual=self.extractor.identifier, training=settings,
            command=cfg.command or f"EDPSNLib.training.train(TrainConfig(**{cfg.to_dict()}))",
            time_s=round(self.elapsed(), 2),
        )  # fmt: skip

    # -- loop ------------------------------------------------------------------------------
    def train_step(self, mri: torch.Tensor, func: torch.Tensor) -> tuple[float, dict[str, float]]:
        mri, func = mri.to(self.device), func.to(self.device)
        func_y, _cbcr = self.model.preprocess_functional(func)
        fused = self.model.fuse_luma(mri, func_y)["fused"]
        total, terms = self.loss_fn(fused, mri, luminance(func))
        self.optimizer.zero_grad(set_to_none=True)
        loss = total.item()
        if not math.isfinite(loss):
            self.fail(f"the loss became {loss}")
        total.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            self.fail("the gradients became non-finite")
        self.optimizer.step()
        return loss, {k: terms[k].item() for k in LOSS_TERMS}

    def fail(self, what: str) -> None:
        good = self.ckpt_path if self.ckpt_path.is_file() else self.cfg.resume
        kept = (
            f"The last good checkpoint {good} is kept unchanged; resume from it with a lower --lr."
            if good
            else "No checkpoint had been written yet; start again with a lower --lr."
        )
        msg = f"Training stopped at epoch {self.epoch + 1}, step {self.step + 1}: {what}. {kept}"
        self.log({"event": "error", "message": msg})
        raise TrainingError(msg)

    def eta(self) -> float:
        """Seconds left: remaining steps at this run's mean step time, plus validations."""
        left = (self.cfg.epochs - self.epoch) * self.steps - self.step
        per_step = self.step_time / max(1, self.run_steps)
        val = self.history["epochs"][-1]["val_time_s"] if self.history["epochs"] else 0.0
        return left * per_step + (self.cfg.epochs - self.epoch) * val

    def run(self, cancel: Callable[[], bool] | None) -> TrainResult:
        cfg = self.cfg
        self.t0 = time.monotonic()
        self.log(dict(
            event="start", pair=cfg.pair, epochs=cfg.epochs, steps_per_epoch=self.steps,
            train_pairs=len(self.dataset), val_pairs=self.n_val, device=str(self.device),
            perceptual=self.extractor.identifier, resumed_from=str(cfg.resume) if cfg.resume else None,
            epoch=self.epoch, step=self.step,
        ))  # fmt: skip
        for message in self.warnings:
            self.log({"event": "warning", "message": message})
        self.run_steps, self.step_time = 0, 0.0
        while self.epoch < cfg.epochs:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
            # The generator keeps DataLoader from drawing on the global RNG (exact resume).
            batches = epoch_batches(len(self.dataset), cfg.batch_size, cfg.seed, self.epoch, cfg.max_steps_per_epoch)  # fmt: skip
            loader = DataLoader(self.dataset, batch_sampler=batches[self.step :], num_workers=cfg.workers, generator=gen)  # fmt: skip
            desc = f"epoch {self.epoch + 1}/{cfg.epochs}"
            with _progress_bar(cfg, self.steps, self.step, desc) as bar:
                for mri, func in loader:
                    if cancel is not None and cancel():
                        return self.finish(cancelled=True)
                    t_step = time.monotonic()
                    loss, terms = self.train_step(mri, func)
                    self.step_time += time.monotonic() - t_step
                    self.step += 1
                    self.global_step += 1
                    self.run_steps += 1
                    rec = {"epoch": self.epoch + 1, "step": self.step, "loss": loss, **terms}
                    self.history["steps"].append(rec)
                    self.log({"event": "step", "steps": self.steps, "global_step": self.global_step,
                              **rec, "elapsed_s": self.elapsed(), "eta_s": self.eta()})  # fmt: skip
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                        bar.update(1)
            self.end_epoch()
        return self.finish(cancelled=False)

    def end_epoch(self) -> None:
        t_val = time.monotonic()
        val_loss, metrics = validate(self.model, self.loss_fn, self.val_mri, self.val_func, self.device, self.cfg.batch_size)  # fmt: skip
        epoch = self.epoch + 1
        losses = [s["loss"] for s in self.history["steps"] if s["epoch"] == epoch]
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                 "metrics": metrics, "val_time_s": time.monotonic() - t_val}  # fmt: skip
        if not math.isfinite(val_loss):
            self.fail(f"the validation loss became {val_loss}")
        self.history["epochs"].append(entry)
        self.epoch, self.step = epoch, 0
        select = self.cfg.select
        is_best = self.best is None or _score(entry, select) > _score(self.best, select)
        save_weights(self.last_path, self.model, self.metadata(entry))
        if is_best:
            self.best = entry
            save_weights(self.weights_path, self.model, self.metadata(entry))
        self.save_checkpoint()
        plot_curves(self.out / CURVES_NAME, self.history, self.steps)
        self.log({"event": "epoch", **entry, "best": is_best, "elapsed_s": self.elapsed(), "eta_s": self.eta()})  # fmt: skip

    def finish(self, cancelled: bool) -> TrainResult:
        if cancelled:
            self.save_checkpoint()
        weights = self.weights_path if self.best else None
        self.log({"event": "cancelled" if cancelled else "done", "epoch": self.epoch, "step": self.step,
                  "elapsed_s": self.elapsed(), "weights": str(weights) if weights else None})  # fmt: skip
        return TrainResult(
            out=self.out, checkpoint=self.ckpt_path, weights=weights,
            last_weights=self.last_path if self.history["epochs"] else None,
            epochs_done=self.epoch, global_step=self.global_step, cancelled=cancelled,
            perceptual=self.extractor.identifier, time_s=self.elapsed(), history=self.history,
            best=self.best,
        )  # fmt: skip


def _progress_bar(cfg: TrainConfig, total: int, initial: int, desc: str) -> Any:
    if not cfg.progress_bar:
        return nullcontext()
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, file=sys.stderr, leave=True, dynamic_ncols=True
    )


def train(
    cfg: TrainConfig, progress: Progress | None = None, cancel: Callable[[], bool] | None = None
) -> TrainResult:
    """Train EDPSN; ``progress(event)`` gets every logged event, ``cancel()`` is polled between steps.

    Cancelling saves a resumable checkpoint and returns (``result.cancelled``). A non-finite
    loss or gradient raises :class:`TrainingError` and leaves the last good checkpoint as it was.
    """
    # CPU kernels used here are deterministic already; CUDA needs the switch (best effort:
    # warn_only, as a few CUDA backward kernels have no deterministic version).
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if resolve_device(cfg.device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _Run(cfg, progress).run(cancel)
    finally:
        if torch.are_deterministic_algorithms_enabled() != was_deterministic:
            torch.use_deterministic_algorithms(was_deterministic)
