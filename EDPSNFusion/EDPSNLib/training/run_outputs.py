"""The outputs side of a training run: cancel polling, the progress log, checkpoint and
weights metadata, and failing with the last good checkpoint kept.

:class:`RunOutputs` is the base of :class:`EDPSNLib.training.trainer._Run`; it uses the
attributes the run sets up (``cfg``, ``ctx``, ``out``, ``model``, ``optimizer``, ``history``,
position and paths), and keeps the trainer module to the loop itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from EDPSNLib.errors import TrainingError
from EDPSNLib.models.weights import json_safe
from EDPSNLib.paths import data_root
from EDPSNLib.training import config as tc
from EDPSNLib.training import distributed as dist
from EDPSNLib.training.checkpoint import rng_state
from EDPSNLib.training.checkpoint import save_checkpoint as write_checkpoint
from EDPSNLib.training.report import append_jsonl, write_failure_message
from EDPSNLib.training.weight_average import WeightAverage


class RunOutputs:
    """Cancel, logging and checkpoint writing of one training run (see the module docstring)."""

    cfg: tc.TrainConfig
    ctx: dist.DistContext
    device: torch.device
    out: Path
    progress: tc.Progress | None
    pending: TrainingError | None
    saved: tuple[Path, int, int] | None
    ema: WeightAverage | None

    # -- cancel ----------------------------------------------------------------------------
    def _stop_requested(self, cancel: Callable[[], bool] | None) -> bool:
        """Cancel asked on any rank (callback, signal or cancel file); a write error stops all."""
        local = bool(cancel is not None and cancel())
        local = local or (self.cancel_file is not None and self.cancel_file.exists())
        stop, failed = dist.any_rank(self.ctx, [local, self.pending is not None])
        if failed:
            raise self._rank_error()
        return stop

    def _rank_error(self) -> TrainingError:
        return self.pending or TrainingError(
            "Training stopped on every process: rank 0 could not write its outputs (see its "
            "message)."
        )

    # -- outputs ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, what: str, path: Path) -> Iterator[None]:
        """Turn an OSError (full disk, quota, file-size limit) into a TrainingError saying what to do."""
        try:
            yield
        except OSError as exc:
            raise TrainingError(write_failure_message(what, path, exc, self.saved)) from exc

    def log(self, event: dict[str, Any]) -> None:
        """Rank 0 only: append ``event`` to the JSONL log and pass it to the progress callback."""
        if not self.ctx.is_main:
            return
        event = json_safe(event)
        with self.writing("the progress log", self.out / tc.LOG_NAME):
            append_jsonl(self.out / tc.LOG_NAME, event)
        if self.progress is not None:
            self.progress(event)

    def log_step(self, event: dict[str, Any]) -> None:
        """Log; under DDP a write error waits for the next sync so that every rank stops."""
        try:
            self.log(event)
        except TrainingError as exc:
            if not self.ctx.distributed:
                raise
            self.pending = exc

    def agree(self, error: TrainingError | None) -> None:
        """After rank 0's writes: raise the same error on every rank if any write failed."""
        error = error or self.pending
        if dist.any_rank(self.ctx, [error is not None])[0]:
            self.pending = error
            if error is not None:
                with contextlib.suppress(OSError, TrainingError):
                    self.log({"event": "error", "message": str(error)})
            raise self._rank_error()

    def elapsed(self) -> float:
        """Training seconds so far, including those of the runs this one resumes."""
        return self.prior_time + time.monotonic() - self.t0

    def save_checkpoint(self) -> None:
        """Write the resumable state (model, optimizer, counters, history, RNG) to ckpt_path."""
        model_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = dict(
            pair=self.cfg.pair,
            model_config=self.model.config.to_dict(),
            model=model_state,
            train_config=self.cfg.to_dict(),
            optimizer=self.optimizer.state_dict(),
            epoch=self.epoch,
            step=self.step,
            global_step=self.global_step,
            history=self.history,
            best=self.best,
            time_s=self.elapsed(),
            rng=rng_state(self.device),
            perceptual=self.extractor.identifier,
        )
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        with self.writing("the checkpoint", self.ckpt_path):
            write_checkpoint(self.ckpt_path, state)
        self.saved = (self.ckpt_path, self.epoch, self.step)

    def metadata(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The metadata saved with the weights of epoch ``entry``: data, settings, metrics, time."""
        cfg = self.cfg
        settings = {k: v for k, v in cfg.to_dict().items() if k not in ("loss", "command")}
        settings.update(init_pair=self.init_pair, world_size=self.ctx.world_size)
        return dict(
            pair=cfg.pair,
            data=str(self.root or data_root() / "harvard"),
            split=self.train_split,
            validation_split=self.val_split,
            augment=list(cfg.augment),
            train_pairs=len(self.dataset),
            val_pairs=self.n_val,
            epochs=entry["epoch"],
            steps=self.global_step,
            metrics=entry["metrics"],
            val_loss=entry["val_loss"],
            selected_by=cfg.select,
            loss=cfg.loss.to_dict(),
            perceptual=self.extractor.identifier,
            training=settings,
            command=cfg.command
            or f"EDPSNLib.training.trainer.train(TrainConfig(**{cfg.to_dict()}))",
            time_s=round(self.elapsed(), 2),
        )

    def fail(self, what: str) -> None:
        """Log and raise a TrainingError saying where training stopped and how to go on."""
        good = self.saved[0] if self.saved else None
        kept = (
            f"The last good checkpoint {good} is kept unchanged; resume from it with a lower --lr."
            if good
            else "No checkpoint had been written yet; start again with a lower --lr."
        )
        msg = f"Training stopped at epoch {self.epoch + 1}, step {self.step + 1}: {what}. {kept}"
        with contextlib.suppress(TrainingError):  # the error matters more than logging it
            self.log({"event": "error", "message": msg})
        raise TrainingError(msg)
