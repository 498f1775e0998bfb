"""Fusion of volumes: register the moving volume to the MRI, normalise each modality, fuse slice
by slice in streamed batches, and score the result per slice, for the volume and per region."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.errors import EDPSNError, InputError
from EDPSNLib.fusion.body_mask import body_mask
from EDPSNLib.fusion.normalize import (
    DEFAULT_COLORMAP,
    apply_colormap,
    functional_range,
    normalize_mri,
    rescale,
    to_uint8,
    window_ct,
)
from EDPSNLib.fusion.slices import SliceFuser, make_slice_fuser
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_regions
from EDPSNLib.names import AXES, MODALITIES, REGION_NAMES
from EDPSNLib.volume.io import Volume, validate_volume
from EDPSNLib.volume.registration import (
    RegistrationProgress,
    RegistrationResult,
    register,
    resample_to,
)

#: A pixel is background when both normalised images are below this (air outside the head).
BACKGROUND_LEVEL = 2.0 / 255.0
#: A slice holds tissue when at least this many of its MRI pixels are above the background level.
MIN_TISSUE_PIXELS = 64
#: A region enters the volume's region metrics from slices where it has at least this many pixels.
MIN_REGION_PIXELS = 64

Progress = Callable[[int, int], None]


class FusionCancelled(EDPSNError):
    """The user cancelled; nothing was written."""


@dataclass
class FusionOptions:
    """What the user chose for one fusion (the CLI and the Slicer module fill it)."""

    modality: str
    register: str = "rigid"
    init: str = "auto"  # scanner coordinates when both share a frame of reference, else centres
    orientation: str = "auto"  # search the turns when one fits clearly better (head/feet first)
    ct_window: str | tuple[float, float] = "brain"
    colormap: str | None = None
    axis: str = "axial"
    device: str = "auto"
    batch_size: int | None = None  # slices per forward pass; None: 4 on CPU, 16 on CUDA
    weights: str | Path | None = None
    method: str = "edpsn"


@dataclass
class VolumeFusion:
    """Outputs on the MRI grid (numpy (z, y, x[, 3])) and the metrics."""

    fused: np.ndarray
    regions: np.ndarray
    slice_metrics: dict[str, np.ndarray]
    tissue: np.ndarray
    volume_metrics: dict[str, float]
    region_metrics: dict[str, dict[str, float]]
    registration: RegistrationResult | None
    axis: int
    info: dict = field(default_factory=dict)


def slice_axis(volume: Volume, axis: str) -> int:
    """The numpy axis (of z, y, x) whose slices are axial, coronal or sagittal in world space."""
    if axis not in AXES:
        raise InputError(f"Unknown axis '{axis}'; choose {', '.join(AXES)}.")
    world = {"sagittal": 0, "coronal": 1, "axial": 2}[axis]  # LPS x, y, z
    index_axis = int(np.argmax(np.abs(volume.direction[world, :])))  # i, j or k
    return 2 - index_axis


def functional_normaliser(
    moving: np.ndarray, is_rgb: bool, opts: FusionOptions
) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a batch of resampled moving slices to [0, 1] grey (CT) or RGB."""
    if opts.modality == "CT":
        if is_rgb:
            return lambda x: (rgb_to_luma(x) / 255.0).astype(np.float32)
        return lambda x: window_ct(x, opts.ct_window)
    if is_rgb:
        return lambda x: np.asarray(x, np.float32) / 255.0
    lo, hi = functional_range(moving)
    cmap = opts.colormap or DEFAULT_COLORMAP[opts.modality]
    return lambda x: apply_colormap(rescale(x, lo, hi), cmap)


def _aggregate(per_slice: dict[str, np.ndarray], use: np.ndarray) -> dict[str, float]:
    if not use.any():
        return {k: float("nan") for k in METRIC_NAMES}
    return {k: float(np.mean(per_slice[k][use])) for k in METRIC_NAMES}


def prepare_moving(
    mri: Volume,
    moving: Volume,
    opts: FusionOptions,
    registration_progress: RegistrationProgress | None = None,
) -> tuple[Volume, RegistrationResult | None]:
    """Register (unless 'none' and already on the grid) and resample the moving volume onto the MRI."""
    same_grid = (
        moving.shape == mri.shape
        and np.allclose(moving.spacing, mri.spacing)
        and np.allclose(moving.origin, mri.origin)
        and np.allclose(moving.direction, mri.direction)
    )
    if opts.register == "none" and same_grid:
        return moving, None
    reg = register(
        mri,
        moving,
        method=opts.register,
        init=opts.init,
        orientation=opts.orientation,
        progress=registration_progress,
    )
    return resample_to(
        mri, moving, reg.transform, default_value=0.0 if moving.is_rgb else None
    ), reg


def tissue_mask(mri01: np.ndarray) -> np.ndarray:
    """(N,) bool: the slices of (N, H, W) normalised MRI that hold tissue (the ones fused)."""
    return (mri01 > BACKGROUND_LEVEL).sum(axis=(1, 2)) >= MIN_TISSUE_PIXELS


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


def prepare_slices(
    mri: Volume,
    moving: Volume,
    opts: FusionOptions,
    registration_progress: RegistrationProgress | None = None,
) -> SliceInputs:
    """Register and resample the moving volume, slice both along the chosen axis, normalise."""
    resampled, reg = prepare_moving(mri, moving, opts, registration_progress)
    axis = slice_axis(mri, opts.axis)
    mri01 = normalize_mri(np.moveaxis(mri.array, axis, 0))  # one float32 copy on the host
    mov_arr = np.moveaxis(resampled.array, axis, 0)
    func_norm = functional_normaliser(mov_arr, resampled.is_rgb, opts)
    return SliceInputs(mri01, mov_arr, func_norm, tissue_mask(mri01), axis, resampled, reg)


def fuse_volumes(
    mri: Volume,
    moving: Volume,
    opts: FusionOptions,
    *,
    fuser: SliceFuser | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    registration_progress: RegistrationProgress | None = None,
) -> VolumeFusion:
    """The whole job on volumes: register, normalise, fuse tissue slices, regions and metrics.

    ``registration_progress`` gets the registration's steps and, at its end, its result.
    """
    if opts.modality not in MODALITIES:
        raise InputError(f"Unknown modality '{opts.modality}'; choose {', '.join(MODALITIES)}.")
    if mri.is_rgb:
        raise InputError("The MRI volume is RGB; give the scalar MR series as the reference.")
    validate_volume(mri, "MRI")
    validate_volume(moving, opts.modality)
    info: dict = {}
    if fuser is None:
        fuser, info = make_slice_fuser(
            opts.method, f"MRI-{opts.modality}", opts.weights, opts.device, opts.batch_size, log
        )
    clock = time.perf_counter()
    inputs = prepare_slices(mri, moving, opts, registration_progress)  # batches go one by one
    timings = {"register_s": time.perf_counter() - clock, "fuse_s": 0.0, "metrics_s": 0.0}
    mri01, mov_arr, func_norm = inputs.mri01, inputs.moving, inputs.functional
    axis, reg, tissue = inputs.axis, inputs.registration, inputs.tissue

    n = len(mri01)
    rgb = opts.modality != "CT"
    fused = np.zeros(mri01.shape + ((3,) if rgb else ()), np.uint8)
    regions = np.zeros(mri01.shape, np.uint8)
    per_slice = {k: np.full(n, np.nan) for k in METRIC_NAMES}
    per_region = {r: {k: np.full(n, np.nan) for k in METRIC_NAMES} for r in REGION_NAMES}
    region_pixels = np.zeros((n, 3), np.int64)
    # Slices outside the head (no MRI tissue) are skipped: the MRI grid is the reference.
    todo = np.flatnonzero(tissue)
    body = body_mask(mri01)  # regions (and region metrics) only inside the head, never in air
    step = max(1, opts.batch_size or 16)  # slices per metrics batch (the fuser may split it)
    for done in range(0, len(todo), step):
        if cancel is not None and cancel():
            raise FusionCancelled("Fusion cancelled by the user; nothing was written.")
        idx = todo[done : done + step]
        m, f = mri01[idx], func_norm(mov_arr[idx])
        if not rgb and f.ndim == 4:
            f = rgb_to_luma(f).astype(np.float32)
        clock = time.perf_counter()
        out, reg_lbl = fuser(m, f)
        f_luma = rgb_to_luma(f) if f.ndim == 4 else f
        background = (m <= BACKGROUND_LEVEL) & (f_luma <= BACKGROUND_LEVEL)
        labels = np.where(background | ~body[idx], 0, reg_lbl.astype(np.uint8) + 1)
        labels = labels.astype(np.uint8)
        out_u8 = to_uint8(out)
        out_u8[background] = 0
        fused[idx], regions[idx] = out_u8, labels
        timings["fuse_s"] += time.perf_counter() - clock
        clock = time.perf_counter()
        a, b = m * 255.0, f * 255.0
        masks = labels[None] == np.arange(1, 4, dtype=np.uint8)[:, None, None, None]
        whole, by_region = fusion_metrics_regions(a, b, out_u8, masks)  # filters run once
        region_pixels[idx] = masks.sum(axis=(2, 3)).T
        for k in METRIC_NAMES:
            per_slice[k][idx] = whole[k]
            for name, values in zip(REGION_NAMES, by_region):
                per_region[name][k][idx] = values[k]
        timings["metrics_s"] += time.perf_counter() - clock
        if progress is not None:
            progress(min(done + step, len(todo)), len(todo))
    region_metrics = {
        name: _aggregate(per_region[name], region_pixels[:, r] >= MIN_REGION_PIXELS)
        for r, name in enumerate(REGION_NAMES)
    }
    info.update(slices=n, tissue_slices=int(tissue.sum()), timings=timings)
    return VolumeFusion(
        fused=np.moveaxis(fused, 0, axis),
        regions=np.moveaxis(regions, 0, axis),
        slice_metrics=per_slice,
        tissue=tissue,
        volume_metrics=_aggregate(per_slice, tissue),
        region_metrics=region_metrics,
        registration=reg,
        axis=axis,
        info=info,
    )


def metrics_rows(result: VolumeFusion) -> list[dict]:
    """Rows (scope + seven metrics) for a CSV or a Slicer table: volume, regions, tissue slices."""
    rows = [{"scope": "volume", **result.volume_metrics}]
    rows += [{"scope": f"region: {r}", **result.region_metrics[r]} for r in REGION_NAMES]
    for i in np.flatnonzero(result.tissue):
        rows.append(
            {"scope": f"slice {i}", **{k: float(result.slice_metrics[k][i]) for k in METRIC_NAMES}}
        )
    return rows
