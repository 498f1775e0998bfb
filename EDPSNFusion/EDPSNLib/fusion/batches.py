"""One batch of slices: fuse it, label its entropy regions, score it (used by the pipeline)."""

from __future__ import annotations

import numpy as np

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.fusion.slices import SliceFuser
from EDPSNLib.metrics import fusion_metrics_regions

#: A pixel is background when both normalised images are below this (air outside the head).
BACKGROUND_LEVEL = 2.0 / 255.0


def fuse_batch(
    fuser: SliceFuser, mri01: np.ndarray, functional01: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse a batch of slices and label its regions, with the air outside the head zeroed.

    Args:
        fuser: the network or baseline, (B, H, W) MRI and functional slices -> fused, labels.
        mri01: (B, H, W) MRI on [0, 1].
        functional01: (B, H, W) grey or (B, H, W, 3) RGB functional slices on [0, 1].

    Returns:
        The fused slices as uint8 (B, H, W[, 3]) and the region labels (B, H, W) uint8 with
        0 where both inputs are background, else 1 + the entropy region (low, mid, high).
    """
    out, region_index = fuser(mri01, functional01)
    f_luma = rgb_to_luma(functional01) if functional01.ndim == 4 else functional01
    background = (mri01 <= BACKGROUND_LEVEL) & (f_luma <= BACKGROUND_LEVEL)
    labels = np.where(background, 0, region_index.astype(np.uint8) + 1).astype(np.uint8)
    out_u8 = to_uint8(out)
    out_u8[background] = 0
    return out_u8, labels


def score_batch(
    mri01: np.ndarray, functional01: np.ndarray, fused_u8: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]], np.ndarray]:
    """The seven metrics of a batch of fused slices, whole and inside each entropy region.

    Args:
        mri01: (B, H, W) MRI on [0, 1].
        functional01: (B, H, W[, 3]) functional slices on [0, 1].
        fused_u8: (B, H, W[, 3]) fused slices, uint8.
        labels: (B, H, W) region labels (0 background, 1 low, 2 mid, 3 high).

    Returns:
        Per-slice metrics ``{name: (B,)}``, the same for each region (low, mid, high), and the
        pixels of each region per slice, (B, 3).
    """
    masks = labels[None] == np.arange(1, 4, dtype=np.uint8)[:, None, None, None]
    whole, by_region = fusion_metrics_regions(mri01 * 255.0, functional01 * 255.0, fused_u8, masks)
    return whole, by_region, masks.sum(axis=(2, 3)).T
