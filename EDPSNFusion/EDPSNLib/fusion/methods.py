"""Fusion methods by name: the classical baselines and the EDPSN network, on batches of slices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from EDPSNLib.errors import InputError
from EDPSNLib.names import NETWORK_METHOD

#: (N, H, W) MRI and (N, H, W[, 3]) functional images on [0, 1] -> fused, shaped like ``func``.
BatchFusion = Callable[[np.ndarray, np.ndarray], np.ndarray]
NETWORK = NETWORK_METHOD


def method_names() -> list[str]:
    """Every method ``fusion_method`` accepts: the baselines, then the network.

    Returns:
        The method names.
    """
    from EDPSNLib.fusion.baselines import BASELINES

    return [*BASELINES, NETWORK]


def _per_image(fuse_one: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> BatchFusion:
    def fuse_batch(mri: np.ndarray, func: np.ndarray) -> np.ndarray:
        """(N, H, W) ``mri``, (N, H, W[, 3]) ``func`` -> fused pair by pair, like ``func``."""
        return np.stack([fuse_one(m, f) for m, f in zip(mri, func)])

    return fuse_batch


def network_fusion(
    weights: str | Path | None, pair: str, device: str = "cpu", batch_size: int | None = None
) -> BatchFusion:
    """The EDPSN network loaded from weights as a batch fusion function (no gradients); the
    same slice fuser as the volume pipeline, keeping only the fused images.

    Args:
        weights: weights file or name (None: the shipped weights of ``pair``).
        pair: the modality pair, e.g. ``MRI-CT``.
        device: torch device.
        batch_size: slices per forward pass (None: the device's default).

    Returns:
        A function of (B, H, W) MRI and (B, H, W[, 3]) functional batches on [0, 1] giving the
        fused batch.
    """
    from EDPSNLib.fusion.slices import make_slice_fuser

    fuser, _info = make_slice_fuser(NETWORK, pair, weights, device, batch_size)
    return lambda mri, func: fuser(mri, func)[0]


def fusion_method(
    name: str, pair: str, weights: str | Path | None = None, device: str = "cpu"
) -> BatchFusion:
    """A batch fusion function by method name (a baseline, or ``edpsn`` with its weights).

    Args:
        name: a baseline name (see :func:`method_names`) or ``edpsn``.
        pair: the modality pair, e.g. ``MRI-PET``.
        weights: EDPSN weights file or name (``edpsn`` only).
        device: torch device (``edpsn`` only).

    Returns:
        A function of (B, H, W) MRI and (B, H, W[, 3]) functional batches on [0, 1] giving the
        fused batch.
    """
    if name == NETWORK:
        return network_fusion(weights, pair, device=device)
    from EDPSNLib.fusion.baselines import BASELINES

    if name not in BASELINES:
        raise InputError(f"Unknown method '{name}'; choose from {', '.join(method_names())}.")
    return _per_image(BASELINES[name])
