"""Train or fine-tune EDPSN on Harvard pairs: seeded, resumable, cancellable, NaN-guarded.

Files in ``out``: ``checkpoint.pt`` (weights, Adam state, position, RNG, history; written
atomically after every epoch and on cancel), ``progress.jsonl`` (one JSON event per line),
``curves.png``, ``last.safetensors`` and the product weights ``EDPSN_<pair>.safetensors``
(the epoch with the best validation score), each with its JSON sidecar. Under ``torchrun``
the processes train one DDP model together and rank 0 alone writes these files
(see :mod:`EDPSNLib.training.distributed` and docs/training.md).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from EDPSNLib.atomic import check_output_path
from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.errors import InputError, TrainingError
from EDPSNLib.models.registry import weights_file
from EDPSNLib.models.weights import save_weights
from EDPSNLib.network.config import EDPSNConfig
from EDPSNLib.training import config as tc
from EDPSNLib.training import distributed as dist
from EDPSNLib.training.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_state,
)
from EDPSNLib.training.config import TrainConfig, TrainResult, resolve_device, resolve_harvard_root
from EDPSNLib.training.datasets import HarvardFusionDataset, epoch_batches, steps_per_epoch
from EDPSNLib.training.losses import LOSS_TERMS, FusionLoss, luminance
from EDPSNLib.training.perceptual import build_extractor
from EDPSNLib.training.report import (
    plot_curves,
    progress_bar,
    validate,
)
from EDPSNLib.training.run_outputs import RunOutputs
from EDPSNLib.training.weight_average import WeightAverage, resume_average

__all__ = ["TrainConfig", "TrainResult", "resolve_device", "resolve_harvard_root", "train"]


class _Run(RunOutputs):
    """One call of :func:`train`: holds the model, optimiser, history and output paths."""

    def __init__(
        self,
        cfg: TrainConfig,
        progress: tc.Progress | None,
        ctx: dist.DistContext,
        device: torch.device,
    ) -> None:
        tc.check_config(cfg)
        self.cfg, self.ctx, self.device = cfg, ctx, device
        self.progress = progress if ctx.is_main else None  # other ranks stay silent
        self.out = check_output_path(cfg.out)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / tc.CHECKPOINT_NAME
        self.weights_path = self.out / (cfg.weights_name or weights_file(".", cfg.pair).name)
        self.last_path = self.out / tc.LAST_NAME
        self.cancel_file = Path(cfg.cancel_file).expanduser() if cfg.cancel_file else None
        self.created = time.time()  # cancel files older than this are stale
        self.root = resolve_harvard_root(cfg.data)
        self.train_split, self.val_split = tc.train_val_splits(cfg.split)
        self.train_pairs = list_pairs(cfg.pair, self.train_split, self.root)
        val_pairs = list_pairs(cfg.pair, self.val_split, self.root)[: cfg.max_val_images or None]
        self.dataset = HarvardFusionDataset(self.train_pairs, cfg.crop, cfg.augment)
        dist.check_global_batch(cfg.batch_size, len(self.dataset), ctx)
        self.val_mri, self.val_func = load_pairs(val_pairs)
        self.n_val = len(val_pairs)
        self.extractor = build_extractor(cfg.vgg_weights).to(device)
        self.loss_fn = FusionLoss(cfg.loss, self.extractor).to(device)
        # Training loss: with several processes the perceptual term's normaliser is the global
        # batch's, so the mean of the ranks' losses is the single-process loss.
        reduce = partial(dist.mean_over_ranks, ctx) if ctx.distributed else None
        self.criterion = FusionLoss(cfg.loss, self.extractor, reduce).to(device)
        n = len(self.dataset)
        self.steps = steps_per_epoch(n, min(cfg.batch_size, n), cfg.max_steps_per_epoch)
        self.history: dict[str, list[dict[str, Any]]] = {"steps": [], "epochs": []}
        self.epoch = self.step = self.global_step = 0
        self.prior_time = 0.0
        self.best: dict[str, Any] | None = None
        self.warnings: list[str] = []
        self.init_pair: str | None = None  # pair of the --init weights, when fine-tuning
        self.saved: tuple[Path, int, int] | None = None  # last good checkpoint, epoch, step
        self.pending: TrainingError | None = None  # rank 0's write error, shared at the next sync
        self._build_model()
        if self.cancel_file is not None:  # a file there before we start is stale: remove it
            since = cfg.cancel_since if cfg.cancel_since is not None else self.created
            removed = tc.remove_stale_cancel_file(self.cancel_file, since)
            # Also a barrier: no rank polls the file before every rank has cleared it.
            if dist.any_rank(ctx, [removed])[0]:
                self.warnings.append(
                    f"Removed the cancel file {self.cancel_file} left from an earlier run; "
                    "create it again to stop this run."
                )

    def _build_model(self) -> None:
        from EDPSNLib.models.weights import load_weights
        from EDPSNLib.network.model import EDPSN

        cfg, ckpt = self.cfg, None
        if cfg.resume:
            ckpt = load_checkpoint(cfg.resume)
            if ckpt["pair"] != cfg.pair:
                raise InputError(
                    f"Checkpoint {cfg.resume} is for {ckpt['pair']}, not {cfg.pair}; use --pair "
                    f"{ckpt['pair']} to resume it, or start a fresh {cfg.pair} run without --resume."
                )
            self.model = model_from_checkpoint(ckpt, cfg.resume, cfg.model)
        elif cfg.init:
            # Any pair's weights are a valid starting point (e.g. MRI-CT fine-tuned from
            # MRI-PET); the init file and its pair are recorded in the new metadata.
            from EDPSNLib.models.lookup import resolve_weights  # a file, or a registry name

            self.model, init_meta = load_weights(resolve_weights(cfg.init, cfg.pair))
            self.init_pair = init_meta.get("pair")
        else:
            torch.manual_seed(cfg.seed)  # seeded initial weights
            self.model = EDPSN(EDPSNConfig(**(cfg.model or {})))
        self.model.to(self.device).train()
        # The weights validated and saved: the EMA of the trained ones when asked for.
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.net = dist.wrap_ddp(dist.TrainForward(self.model), self.ctx)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        if ckpt is None:
            torch.manual_seed(cfg.seed)
            if self.device.type == "cuda":
                torch.cuda.manual_seed_all(cfg.seed)
            return
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            raise InputError(
                f"Checkpoint {cfg.resume}: its optimiser state does not fit its network ({exc}); "
                "start a fresh run without --resume, or use --init with weights."
            ) from exc
        self.epoch, self.step, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        self.history, self.best, self.prior_time = ckpt["history"], ckpt["best"], ckpt["time_s"]
        self.saved = (Path(cfg.resume), self.epoch, self.step)
        restore_rng_state(ckpt["rng"], self.device)
        message = resume_average(self.ema, ckpt.get("ema"), self.global_step)
        if message:
            self.warnings.append(message)
        old = ckpt.get("train_config", {})
        now = cfg.to_dict()  # compared as stored (tuples become lists)
        changed = [k for k in tc.DATA_ORDER_KEYS if k in old and old[k] != now[k]]
        if changed:
            self.warnings.append(
                f"Resuming with other {', '.join(changed)} than the checkpoint's run "
                f"({', '.join(f'{k}={old[k]}' for k in changed)}): training continues, but not "
                "exactly as the interrupted run would have."
            )

    # -- loop ------------------------------------------------------------------------------
    def train_step(self, mri: torch.Tensor, func: torch.Tensor) -> tuple[float, dict[str, float]]:
        """One optimizer step: (loss, {term: value}), means over ranks; non-finite values raise."""
        mri, func = mri.to(self.device), func.to(self.device)
        fused = self.net(mri, func)
        total, terms = self.criterion(fused, mri, luminance(func))
        self.optimizer.zero_grad(set_to_none=True)
        # Logged values are means over ranks: the loss of the global batch on every rank, so
        # the NaN guard below decides the same everywhere.
        values = torch.stack([total.detach(), *(terms[k].detach() for k in LOSS_TERMS)])
        values = dist.mean_over_ranks(self.ctx, values).tolist()
        loss = values[0]
        if not math.isfinite(loss):
            self.fail(f"the loss became {loss}")
        total.backward()  # DDP averages the gradients over ranks here
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            self.fail("the gradients became non-finite")
        # Every step sets its rate, so a resumed run takes --lr (not the checkpoint's) too.
        lr = tc.learning_rate(
            self.cfg.lr, self.cfg.lr_schedule, self.global_step, self.cfg.epochs * self.steps
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss, dict(zip(LOSS_TERMS, values[1:]))

    def eta(self) -> float:
        """Seconds left: remaining steps at this run's mean step time, plus validations."""
        left = (self.cfg.epochs - self.epoch) * self.steps - self.step
        per_step = self.step_time / max(1, self.run_steps)
        val = self.history["epochs"][-1]["val_time_s"] if self.history["epochs"] else 0.0
        return left * per_step + (self.cfg.epochs - self.epoch) * val

    def run(self, cancel: Callable[[], bool] | None) -> TrainResult:
        """Train the remaining epochs from where the run stands; stop early when ``cancel()``."""
        cfg = self.cfg
        self.t0 = time.monotonic()
        self.log_step(
            dict(
                event="start",
                pair=cfg.pair,
                epochs=cfg.epochs,
                steps_per_epoch=self.steps,
                train_pairs=len(self.dataset),
                val_pairs=self.n_val,
                device=str(self.device),
                perceptual=self.extractor.identifier,
                resumed_from=str(cfg.resume) if cfg.resume else None,
                epoch=self.epoch,
                step=self.step,
                world_size=self.ctx.world_size,
                batch_size=cfg.batch_size,
                cancel_file=str(self.cancel_file) if self.cancel_file else None,
                loss=cfg.loss.to_dict(),
                loss_source=cfg.loss_source,
            )
        )
        for message in self.warnings:
            self.log_step({"event": "warning", "message": message})
        self.run_steps, self.step_time = 0, 0.0
        while self.epoch < cfg.epochs:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
            # The generator keeps DataLoader from drawing on the global RNG (exact resume).
            batches = epoch_batches(
                len(self.dataset), cfg.batch_size, cfg.seed, self.epoch, cfg.max_steps_per_epoch
            )
            mine = dist.rank_share(batches[self.step :], self.ctx)
            loader = DataLoader(
                self.dataset, batch_sampler=mine, num_workers=cfg.workers, generator=gen
            )
            desc = f"epoch {self.epoch + 1}/{cfg.epochs}"
            with progress_bar(
                cfg.progress_bar and self.ctx.is_main, self.steps, self.step, desc
            ) as bar:
                for mri, func in loader:
                    if self._stop_requested(cancel):
                        return self.finish(cancelled=True)
                    t_step = time.monotonic()
                    loss, terms = self.train_step(mri, func)
                    self.step_time += time.monotonic() - t_step
                    self.step += 1
                    self.global_step += 1
                    self.run_steps += 1
                    rec = {"epoch": self.epoch + 1, "step": self.step, "loss": loss, **terms}
                    self.history["steps"].append(rec)
                    self.log_step(
                        {
                            "event": "step",
                            "steps": self.steps,
                            "global_step": self.global_step,
                            **rec,
                            "elapsed_s": self.elapsed(),
                            "eta_s": self.eta(),
                        }
                    )
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                        bar.update(1)
            self.end_epoch()
        return self.finish(cancelled=False)

    def end_epoch(self) -> None:
        """Validate and record the epoch; rank 0 writes the weights, checkpoint, curves and log."""
        # Every rank validates the same (synchronised) weights on the same images: no
        # communication, and the NaN check below decides the same on every rank.
        t_val = time.monotonic()
        net = self.ema.model if self.ema is not None else self.model
        val_loss, metrics = validate(
            net, self.loss_fn, self.val_mri, self.val_func, self.device, self.cfg.batch_size
        )
        epoch = self.epoch + 1
        losses = [s["loss"] for s in self.history["steps"] if s["epoch"] == epoch]
        entry = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "metrics": metrics,
            "val_time_s": time.monotonic() - t_val,
        }
        if not math.isfinite(val_loss):
            self.fail(f"the validation loss became {val_loss}")
        self.history["epochs"].append(entry)
        self.epoch, self.step = epoch, 0
        select = self.cfg.select
        is_best = self.best is None or tc.score(entry, select) > tc.score(self.best, select)
        if is_best:
            self.best = entry
        error = None
        if self.ctx.is_main and self.pending is None:
            # Weights before the checkpoint: if they cannot be written, the checkpoint still
            # points at the previous epoch and a resume redoes this one.
            try:
                with self.writing("the weights", self.last_path):
                    save_weights(self.last_path, net, self.metadata(entry))
                if is_best:
                    with self.writing("the weights", self.weights_path):
                        save_weights(self.weights_path, net, self.metadata(entry))
                self.save_checkpoint()
                with self.writing("the curves", self.out / tc.CURVES_NAME):
                    plot_curves(self.out / tc.CURVES_NAME, self.history, self.steps)
                self.log(
                    {
                        "event": "epoch",
                        **entry,
                        "best": is_best,
                        "elapsed_s": self.elapsed(),
                        "eta_s": self.eta(),
                    }
                )
            except TrainingError as exc:
                error = exc
        self.agree(error)

    def finish(self, cancelled: bool) -> TrainResult:
        """Log the end (with a checkpoint when cancelled) and return the run's TrainResult."""
        error = None
        if self.ctx.is_main and self.pending is None:
            try:
                if cancelled:
                    self.save_checkpoint()
                weights = str(self.weights_path) if self.best else None
                self.log(
                    {
                        "event": "cancelled" if cancelled else "done",
                        "epoch": self.epoch,
                        "step": self.step,
                        "elapsed_s": self.elapsed(),
                        "weights": weights,
                        "checkpoint": str(self.ckpt_path),
                    }
                )
            except TrainingError as exc:
                error = exc
        self.agree(error)
        if cancelled and self.cancel_file is not None:
            self.cancel_file.unlink(missing_ok=True)  # honoured: consumed
        return TrainResult(
            out=self.out,
            checkpoint=self.ckpt_path,
            weights=self.weights_path if self.best else None,
            last_weights=self.last_path if self.history["epochs"] else None,
            epochs_done=self.epoch,
            global_step=self.global_step,
            cancelled=cancelled,
            perceptual=self.extractor.identifier,
            time_s=self.elapsed(),
            history=self.history,
            best=self.best,
            world_size=self.ctx.world_size,
        )


def train(
    cfg: TrainConfig, progress: tc.Progress | None = None, cancel: Callable[[], bool] | None = None
) -> TrainResult:
    """Train EDPSN; ``progress(event)`` gets every logged event, ``cancel()`` is polled between steps.

    Cancelling (``cancel()`` true or ``cfg.cancel_file`` present) saves a resumable checkpoint
    and returns (``result.cancelled``). A non-finite loss or gradient, or an output that cannot
    be written (full disk), raises :class:`TrainingError` and leaves the last good checkpoint as
    it was. Under ``torchrun`` (WORLD_SIZE > 1) every process calls this; they train one DDP
    model, rank 0 alone writes files and calls ``progress``, and all stop at the same step.
    """
    device = resolve_device(cfg.device)
    # CPU kernels used here are deterministic already; CUDA needs the switch (best effort:
    # warn_only, as a few CUDA backward kernels have no deterministic version).
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    ctx, device = dist.setup(device)
    finished = False
    try:
        result = _Run(cfg, progress, ctx, device).run(cancel)
        finished = True
        return result
    finally:
        dist.shutdown(ctx, finished)
        if torch.are_deterministic_algorithms_enabled() != was_deterministic:
            torch.use_deterministic_algorithms(was_deterministic)
