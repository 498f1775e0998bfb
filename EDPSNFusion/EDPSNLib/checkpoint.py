"""Training checkpoints for exact resume: written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (model and Adam
state, position in the run, history, RNG states), so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .config import ARCHITECTURE
from .errors import InputError

CHECKPOINT_FORMAT = "edpsn-checkpoint/1"


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device when training on CUDA)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (the previous one stays until the new one is whole)."""
    state = {"format": CHECKPOINT_FORMAT, "architecture": ARCHITECTURE, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, read with ``torch.load(weights_only=True)`` (never unpickles objects)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"Checkpoint {path} not found; give the checkpoint.pt of an earlier run.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"Cannot read checkpoint {path} ({exc}); it is damaged or not an EDPSN checkpoint."
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not an EDPSN training checkpoint ({CHECKPOINT_FORMAT}).")
    if ckpt.get("architecture") != ARCHITECTURE:
        raise InputError(
            f"{path} was written for architecture {ckpt.get('architecture')!r}, not {ARCHITECTURE!r}."
        )
    return ckpt
