"""Training outputs: validation on whole images, the JSON-lines progress log, the curves PNG."""

from __future__ import annotations

import errno
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from EDPSNLib.atomic import atomic_path
from EDPSNLib.fusion.normalize import to_uint8 as uint8_image
from EDPSNLib.training.datasets import to_tensor
from EDPSNLib.training.losses import FusionLoss, luminance

#: Validation metrics drawn, one panel each, after the loss panel.
CURVE_METRICS = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")


def append_jsonl(path: str | Path, event: dict[str, Any]) -> None:
    """Append one event as a JSON line (strict JSON: no NaN) and flush it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, allow_nan=False, default=str) + "\n")
        fh.flush()


def os_reason(exc: OSError) -> str:
    """'No space left on device (ENOSPC)' for an OSError, or its text."""
    code = errno.errorcode.get(exc.errno or -1)
    return f"{exc.strerror or exc} ({code})" if code else str(exc)


def write_failure_message(
    what: str, path: Path, exc: OSError, saved: tuple[Path, int, int] | None
) -> str:
    """Why training stopped on a write error, which checkpoint is intact and how to go on.

    ``saved`` is the last good checkpoint as (path, completed epochs, step in the next epoch).
    """
    if saved is None:
        kept = "No checkpoint had been written yet: free disk space and start the run again."
    else:
        good, epoch, step = saved
        at = f"after epoch {epoch}" if step == 0 else f"epoch {epoch + 1}, step {step}"
        kept = (
            f"The previous checkpoint {good} ({at}) is kept unchanged: free disk space (or raise "
            f"the quota or file-size limit) and continue with --resume {good}."
        )
    return f"Training stopped: could not write {what} {path}: {os_reason(exc)}. {kept}"


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every event of a progress log, oldest first."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_curves(
    path: str | Path, history: dict[str, list[dict[str, Any]]], steps_per_epoch: int
) -> Path:
    """Write a PNG: training loss per step and per epoch, validation loss, and each metric per epoch.

    Uses matplotlib's Agg canvas directly (no pyplot), so no GUI backend is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, epochs = history.get("steps", []), history.get("epochs", [])
    fig = Figure(figsize=(14, 6), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4).ravel()
    ax = axes[0]
    if steps:
        x = [(s["epoch"] - 1) + s["step"] / steps_per_epoch for s in steps]
        ax.plot(x, [s["loss"] for s in steps], lw=0.8, alpha=0.6, label="train (step)")
    if epochs:
        ex = [e["epoch"] for e in epochs]
        ax.plot(ex, [e["train_loss"] for e in epochs], "o-", label="train (epoch mean)")
        ax.plot(ex, [e["val_loss"] for e in epochs], "s-", label="validation")
    ax.set(title="loss", xlabel="epoch")
    ax.legend(fontsize=7)
    for ax, name in zip(axes[1:], CURVE_METRICS):
        if epochs:
            values = [e["metrics"].get(name) for e in epochs]
            ax.plot(
                [e["epoch"] for e in epochs],
                [float("nan") if v is None else v for v in values],
                "o-",
            )
        ax.set(title=f"validation {name}", xlabel="epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) on [0, 1] to uint8 (B, H, W) or (B, H, W, 3), rounded like saved PNGs."""
    arr = uint8_image(x.detach().float().cpu().numpy())
    return arr[:, 0] if arr.shape[1] == 1 else np.moveaxis(arr, 1, -1)


def validate(
    model: nn.Module,
    loss_fn: FusionLoss,
    mri: np.ndarray,
    func: np.ndarray,
    device: torch.device,
    batch_size: int,
) -> tuple[float, dict[str, float]]:
    """Mean loss and the seven metrics' means on whole images, through the product ``forward``."""
    from EDPSNLib.metrics import fusion_metrics_batch

    was_training = model.training
    model.eval()
    losses, fused_all = [], []
    with torch.no_grad():
        for start in range(0, len(mri), batch_size):
            m = torch.stack([to_tensor(x) for x in mri[start : start + batch_size]]).to(device)
            f = torch.stack([to_tensor(x) for x in func[start : start + batch_size]]).to(device)
            fused = model(m, f).clamp(0.0, 1.0)
            total, _ = loss_fn(luminance(fused), m, luminance(f))
            losses.append(float(total) * len(m))
            fused_all.append(to_uint8(fused))
    model.train(was_training)  # the weight average stays in eval mode
    metrics = fusion_metrics_batch(mri, func, np.concatenate(fused_all))
    return sum(losses) / len(mri), {k: float(np.nanmean(v)) for k, v in metrics.items()}


def progress_bar(enabled: bool, total: int, initial: int, desc: str) -> Any:
    """A tqdm bar on stderr for one epoch, or a do-nothing context when disabled."""
    if not enabled:
        return nullcontext()
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, file=sys.stderr, leave=True, dynamic_ncols=True
    )
