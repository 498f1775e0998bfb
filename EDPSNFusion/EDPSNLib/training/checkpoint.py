"""Training checkpoints for exact resume: written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (model and Adam
state, position in the run, history, RNG states), so loading never unpickles arbitrary objects.
Before a resume, :func:`model_from_checkpoint` checks that the stored network is one this
version can rebuild and that it is the network the run asks for.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from EDPSNLib.atomic import atomic_path
from EDPSNLib.errors import InputError
from EDPSNLib.network.config import ARCHITECTURE, EDPSNConfig

CHECKPOINT_FORMAT = "edpsn-checkpoint/1"
#: Entries every checkpoint of this format holds (besides format and architecture).
REQUIRED_KEYS = (
    "pair",
    "model_config",
    "model",
    "optimizer",
    "epoch",
    "step",
    "global_step",
    "history",
    "best",
    "time_s",
    "rng",
)
_WHAT_TO_DO = (
    "It cannot be resumed: start a fresh run (without --resume), or fine-tune from weights made "
    "by this version with --init WEIGHTS."
)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch RNG states: CPU, and the training GPU's when training on CUDA.

    Only the device's own generator is kept (not one per visible GPU), so a checkpoint
    resumes on a machine with any number of GPUs.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`rng_state`; a CPU checkpoint on CUDA (or back) restores the CPU state."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type != "cuda" or cuda is None:
        return
    if isinstance(cuda, (list, tuple)):  # written by an earlier version: one state per GPU
        if not cuda:
            return
        index = device.index if device.index is not None else torch.cuda.current_device()
        cuda = cuda[min(index, len(cuda) - 1)]
    torch.cuda.set_rng_state(cuda, device)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (the previous one stays until the new one is whole).

    The bytes are made in memory and written with plain file I/O plus fsync, so a full disk
    or a file-size limit raises :class:`OSError` with its errno (ENOSPC, EFBIG, EDQUOT) before
    the old file is replaced; torch's own file writer would report it as a RuntimeError.
    """
    state = {"format": CHECKPOINT_FORMAT, "architecture": ARCHITECTURE, **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())  # some file systems report a full disk only here
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
            f"Checkpoint {path} was written for the network {ckpt.get('architecture')!r}, but this "
            f"EDPSN version trains {ARCHITECTURE!r}. {_WHAT_TO_DO}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise InputError(f"Checkpoint {path} lacks {', '.join(missing)}. {_WHAT_TO_DO}")
    return ckpt


def _state_mismatch(model: nn.Module, state: dict[str, Any]) -> list[str]:
    """What differs between a model's state dict and a stored one (missing, extra, shapes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    return problems


def model_from_checkpoint(
    ckpt: dict[str, Any], path: str | Path, requested: dict[str, Any] | None = None
) -> nn.Module:
    """The network stored in a checkpoint, after checking it matches ``requested`` config fields.

    ``requested`` holds the EDPSNConfig fields the run asks for (e.g. ``use_eem=False``); any
    that differ from the checkpoint's network, a config this version cannot build, or weights
    that do not fit it raise :class:`InputError` saying what to do.
    """
    from EDPSNLib.network.model import EDPSN

    try:
        config = EDPSNConfig.from_dict(dict(ckpt["model_config"]))
    except (InputError, TypeError, ValueError) as exc:
        raise InputError(
            f"Checkpoint {path} describes a network this version cannot build ({exc}). {_WHAT_TO_DO}"
        ) from exc
    stored = config.to_dict()
    wanted = EDPSNConfig(**{**stored, **(requested or {})}).to_dict()
    differ = [k for k in stored if stored[k] != wanted[k]]
    if differ:
        pairs = ", ".join(f"{k}={stored[k]} (asked: {wanted[k]})" for k in differ)
        raise InputError(
            f"Checkpoint {path} trains another network variant: {pairs}. Resume with the "
            "checkpoint's settings (drop or add the --no-eem/--no-ed/--no-dps switches), or "
            "start a fresh run without --resume for the new variant."
        )
    model = EDPSN(config)
    problems = _state_mismatch(model, ckpt["model"])
    if problems:
        raise InputError(
            f"Checkpoint {path}: its weights do not fit the network it describes "
            f"({'; '.join(problems)}); it is damaged or was edited. {_WHAT_TO_DO}"
        )
    model.load_state_dict(ckpt["model"])
    return model
