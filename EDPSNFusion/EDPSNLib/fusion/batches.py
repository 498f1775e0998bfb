"""Batches of slices: fuse, label entropy regions and score them; the loop over a volume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.errors import EDPSNError
from EDPSNLib.fusion.body_mask import body_mask
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.fusion.slices import SliceFuser
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_regions
from EDPSNLib.names import REGION_NAMES
from EDPSNLib.volume.io import Volume
from EDPSNLib.volume.registration import RegistrationResult

#: A pixel is background when both normalised images are below this (air outside the head).
BACKGROUND_LEVEL = 2.0 / 255.0


@dataclass
class SliceInputs:
    """A volume pair as the network sees it, slice-first on the MRI grid (fusion and training)."""

    mri01: np.ndarray  # (N, H, W) float32 on [0, 1]
    moving: np.ndarray  # (N, H, W[, 3]) moving values resampled onto the MRI grid
    functional: Callable[[np.ndarray], np.ndarray]  # moving slices -> network input on [0, 1]
    tissue: np.ndarray  # (N,) bool: slices with MRI tissue
    axis: int  # the numpy axis (of z, y, x) the slices were taken along
    resampled: Volume
    registration: RegistrationResult | None
    #: Scalar PET/SPECT: the values mapped to the colour map's ends; None for CT or RGB.
    display_range: tuple[float, float] | None = None
    #: What looks wrong about the inputs (a CT not in HU, a window that saturates).
    warnings: list[str] = field(default_factory=list)


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


class FusionCancelled(EDPSNError):
    """The user cancelled; nothing was written."""


@dataclass
class _SliceResults:
    """What the fuse-and-score loop fills, slice-first on the MRI grid."""

    fused: np.ndarray  # (N, H, W[, 3]) uint8
    regions: np.ndarray  # (N, H, W) uint8: 0 background, 1 low, 2 mid, 3 high
    per_slice: dict[str, np.ndarray]  # metric -> (N,)
    per_region: dict[str, dict[str, np.ndarray]]  # region -> metric -> (N,)
    region_pixels: np.ndarray  # (N, 3) pixels of each region per slice

    @classmethod
    def empty(cls, shape: tuple[int, int, int], rgb: bool) -> _SliceResults:
        """Results for ``shape`` (N, H, W) slices: zero images, NaN metrics, zero pixel counts."""
        n = shape[0]
        return cls(
            fused=np.zeros(shape + ((3,) if rgb else ()), np.uint8),
            regions=np.zeros(shape, np.uint8),
            per_slice={k: np.full(n, np.nan) for k in METRIC_NAMES},
            per_region={r: {k: np.full(n, np.nan) for k in METRIC_NAMES} for r in REGION_NAMES},
            region_pixels=np.zeros((n, 3), np.int64),
        )


def fuse_and_score(
    inputs: SliceInputs,
    fuser: SliceFuser,
    rgb: bool,
    step: int,
    timings: dict[str, float],
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> _SliceResults:
    """Fuse and score the tissue slices batch by batch (slices without MRI tissue stay zero).

    Args:
        inputs: the prepared slices (normalised MRI, moving values and their normaliser, tissue).
        fuser: the network or baseline.
        rgb: whether the fused output is RGB (PET/SPECT) or grey (CT).
        step: slices per batch.
        timings: ``fuse_s`` and ``metrics_s`` are added to.
        progress: called with (slices done, slices to do) after each batch.
        cancel: polled between batches; True stops with :class:`FusionCancelled`.

    Returns:
        The fused slices, region labels (0 outside the body), per-slice and per-region metrics.
    """
    res = _SliceResults.empty(inputs.mri01.shape, rgb)
    todo = np.flatnonzero(inputs.tissue)  # the MRI grid is the reference: air slices skipped
    body = body_mask(inputs.mri01)  # regions (and region metrics) only inside the head
    for done in range(0, len(todo), step):
        if cancel is not None and cancel():
            raise FusionCancelled("Fusion cancelled by the user; nothing was written.")
        idx = todo[done : done + step]
        m, f = inputs.mri01[idx], inputs.functional(inputs.moving[idx])
        if not rgb and f.ndim == 4:
            f = rgb_to_luma(f).astype(np.float32)
        clock = time.perf_counter()
        res.fused[idx], labels = fuse_batch(fuser, m, f)
        res.regions[idx] = np.where(body[idx], labels, 0)
        timings["fuse_s"] += time.perf_counter() - clock
        clock = time.perf_counter()
        whole, by_region, res.region_pixels[idx] = score_batch(
            m, f, res.fused[idx], res.regions[idx]
        )
        for k in METRIC_NAMES:
            res.per_slice[k][idx] = whole[k]
            for name, values in zip(REGION_NAMES, by_region):
                res.per_region[name][k][idx] = values[k]
        timings["metrics_s"] += time.perf_counter() - clock
        if progress is not None:
            progress(min(done + step, len(todo)), len(todo))
    return res
