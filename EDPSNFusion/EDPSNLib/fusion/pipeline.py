"""Fusion of volumes: register the moving volume to the MRI, normalise each modality, fuse slice
by slice in streamed batches, and score the result per slice, for the volume and per region."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from EDPSNLib import interrupts
from EDPSNLib.color import rgb_to_luma
from EDPSNLib.errors import InputError
from EDPSNLib.fusion.batches import BACKGROUND_LEVEL, SliceInputs, fuse_and_score
from EDPSNLib.fusion.normalize import (
    DEFAULT_COLORMAP,
    apply_colormap,
    check_display_range,
    ct_warnings,
    functional_range,
    normalize_mri,
    rescale,
    window_ct,
)
from EDPSNLib.fusion.slices import SliceFuser, make_slice_fuser
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.names import AXES, MODALITIES, REGION_NAMES
from EDPSNLib.volume.io import Volume, validate_volume
from EDPSNLib.volume.registration import (
    RegistrationProgress,
    RegistrationResult,
    register,
    resample_to,
)

#: A slice holds tissue when at least this many of its MRI pixels are above the background level.
MIN_TISSUE_PIXELS = 64
#: A region enters the volume's region metrics from slices where it has at least this many pixels.
MIN_REGION_PIXELS = 64

Progress = Callable[[int, int], None]


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
    #: PET/SPECT display range (LOW, HIGH) in the volume's units (SUV when known); None: the
    #: robust range with headroom for lesions (:func:`normalize.functional_range`).
    pet_range: tuple[float, float] | None = None


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
    """The numpy axis (of z, y, x) whose slices are axial, coronal or sagittal in world space.

    Args:
        volume: the volume whose direction matrix decides.
        axis: ``axial``, ``coronal`` or ``sagittal``.

    Returns:
        0, 1 or 2: the numpy axis to slice along.
    """
    if axis not in AXES:
        raise InputError(f"Unknown axis '{axis}'; choose {', '.join(AXES)}.")
    world = {"sagittal": 0, "coronal": 1, "axial": 2}[axis]  # LPS x, y, z
    index_axis = int(np.argmax(np.abs(volume.direction[world, :])))  # i, j or k
    return 2 - index_axis


def display_range(moving: np.ndarray, opts: FusionOptions) -> tuple[float, float]:
    """The values a scalar PET/SPECT maps to the colour map's ends: the user's or the default.

    Args:
        moving: scalar PET/SPECT values (any shape), as resampled onto the MRI grid.
        opts: the user's choices; ``opts.pet_range`` wins over the default.

    Returns:
        ``(lo, hi)`` in the volume's units.

    Example:
        >>> display_range(np.arange(10.0), FusionOptions("PET", pet_range=(0, 4)))
        (0.0, 4.0)
    """
    if opts.pet_range is not None:
        return check_display_range(*opts.pet_range)
    return functional_range(moving)


def functional_normaliser(
    moving: np.ndarray,
    is_rgb: bool,
    opts: FusionOptions,
    value_range: tuple[float, float] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a batch of resampled moving slices to [0, 1] grey (CT) or RGB.

    Args:
        moving: the resampled moving values, slice-first (N, H, W[, 3]).
        is_rgb: whether they are RGB colours (used as they are) or scalars.
        opts: modality, CT window, colour map and PET/SPECT range.
        value_range: the PET/SPECT display range when already computed (else
            :func:`display_range`).

    Returns:
        A function of a batch of slices giving float32 on [0, 1], (B, H, W) or (B, H, W, 3).
    """
    if opts.modality == "CT":
        if is_rgb:
            return lambda x: (rgb_to_luma(x) / 255.0).astype(np.float32)
        return lambda x: window_ct(x, opts.ct_window)
    if is_rgb:
        return lambda x: np.asarray(x, np.float32) / 255.0
    lo, hi = value_range if value_range is not None else display_range(moving, opts)
    cmap = opts.colormap or DEFAULT_COLORMAP[opts.modality]
    return lambda x: apply_colormap(rescale(x, lo, hi), cmap)


def value_units(volume: Volume) -> str:
    """The unit of a PET/SPECT volume's values, for messages: SUV, Bq/ml, or '' when unknown.

    Args:
        volume: a PET or SPECT volume (its ``meta["Units"]`` is read).

    Returns:
        ``SUV``, ``Bq/ml`` or ``''``.
    """
    units = str(volume.meta.get("Units", "")).upper()
    return {"SUVBW": "SUV", "GML": "SUV", "BQML": "Bq/ml"}.get(units, "")


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
    """Register (unless 'none' and already on the grid) and resample the moving volume onto the MRI.

    Args:
        mri: the reference MRI volume.
        moving: the CT, PET or SPECT volume.
        opts: the registration choices.
        registration_progress: receives the registration's steps and, at its end, its result.

    Returns:
        The moving volume on the MRI grid and the registration (None when none was run).
    """
    same_grid = (
        moving.shape == mri.shape
        and np.allclose(moving.spacing, mri.spacing)
        and np.allclose(moving.origin, mri.origin)
        and np.allclose(moving.direction, mri.direction)
    )
    if opts.register == "none" and same_grid:
        return moving, None
    with interrupts.deferred():  # ITK calls Python back: an interrupt must wait for its end
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
    """(N,) bool: the slices of (N, H, W) normalised MRI that hold tissue (the ones fused).

    Args:
        mri01: normalised MRI slices (N, H, W) on [0, 1].

    Returns:
        (N,) bool.

    Example:
        >>> tissue_mask(np.stack([np.zeros((16, 16)), np.ones((16, 16))])).tolist()
        [False, True]
    """
    return (mri01 > BACKGROUND_LEVEL).sum(axis=(1, 2)) >= MIN_TISSUE_PIXELS


def prepare_slices(
    mri: Volume,
    moving: Volume,
    opts: FusionOptions,
    registration_progress: RegistrationProgress | None = None,
) -> SliceInputs:
    """Register and resample the moving volume, slice both along the chosen axis, normalise.

    Args:
        mri: the reference MRI volume (scalar).
        moving: the CT, PET or SPECT volume.
        opts: the user's choices.
        registration_progress: receives the registration's steps and, at its end, its result.

    Returns:
        The slices as the network sees them, with the display range and any warnings.
    """
    resampled, reg = prepare_moving(mri, moving, opts, registration_progress)
    axis = slice_axis(mri, opts.axis)
    mri01 = normalize_mri(np.moveaxis(mri.array, axis, 0))  # one float32 copy on the host
    mov_arr = np.moveaxis(resampled.array, axis, 0)
    value_range, warnings = None, []
    if opts.modality == "CT" and not resampled.is_rgb:
        warnings = ct_warnings(mov_arr, opts.ct_window)
    elif opts.modality != "CT" and not resampled.is_rgb:
        value_range = display_range(mov_arr, opts)
    func_norm = functional_normaliser(mov_arr, resampled.is_rgb, opts, value_range)
    tissue = tissue_mask(mri01)
    return SliceInputs(
        mri01, mov_arr, func_norm, tissue, axis, resampled, reg, value_range, warnings
    )


def _check_inputs(mri: Volume, moving: Volume, opts: FusionOptions) -> None:
    if opts.modality not in MODALITIES:
        raise InputError(f"Unknown modality '{opts.modality}'; choose {', '.join(MODALITIES)}.")
    if mri.is_rgb:
        raise InputError("The MRI volume is RGB; give the scalar MR series as the reference.")
    validate_volume(mri, "MRI")
    validate_volume(moving, opts.modality)


def fuse_volumes(
    mri: Volume,
    moving: Volume,
    opts: FusionOptions,
    *,
    fuser: SliceFuser | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    registration_progress: RegistrationProgress | None = None,
) -> VolumeFusion:
    """Fuse an MRI with a CT, PET or SPECT volume: register, normalise, fuse, label and score.

    Args:
        mri: the reference MRI volume; the outputs lie on its grid.
        moving: the CT, PET or SPECT volume (scalar, or RGB already colour-mapped).
        opts: the user's choices (modality, registration, window or display range, ...).
        fuser: the slice fuser to use (default: made from ``opts.method`` and weights).
        progress: called with (slices done, slices to do) after each batch.
        cancel: polled between batches; True stops with :class:`~EDPSNLib.fusion.batches.FusionCancelled`.
        log: receives progress messages (display range, weights).
        warn: receives warnings (a CT not in HU, ...); default ``log``. They are also kept
            in ``info["warnings"]``.
        registration_progress: receives the registration's steps and, at its end, its result.

    Returns:
        The fused volume, region labelmap, metrics and registration.
    """
    _check_inputs(mri, moving, opts)
    info: dict = {"warnings": []}
    if fuser is None:
        fuser, made = make_slice_fuser(
            opts.method, f"MRI-{opts.modality}", opts.weights, opts.device, opts.batch_size, log
        )
        info.update(made)
    clock = time.perf_counter()
    inputs = prepare_slices(mri, moving, opts, registration_progress)  # batches go one by one
    timings = {"register_s": time.perf_counter() - clock, "fuse_s": 0.0, "metrics_s": 0.0}
    for message in inputs.warnings:
        info["warnings"].append(message)
        (warn or log or (lambda _m: None))(message)
    if inputs.display_range is not None:
        lo, hi = inputs.display_range
        units = value_units(moving)
        info["display_range"] = {"low": lo, "high": hi, "units": units}
        if log is not None:
            chosen = "as given" if opts.pet_range is not None else "default, lesion headroom"
            log(f"{opts.modality} display range {lo:.4g}..{hi:.4g} {units} ({chosen})".strip())
    step = max(1, opts.batch_size or 16)  # slices per metrics batch (the fuser may split it)
    rgb = opts.modality != "CT"
    res = fuse_and_score(inputs, fuser, rgb, step, timings, progress, cancel)
    region_metrics = {
        name: _aggregate(res.per_region[name], res.region_pixels[:, r] >= MIN_REGION_PIXELS)
        for r, name in enumerate(REGION_NAMES)
    }
    info.update(slices=len(inputs.mri01), tissue_slices=int(inputs.tissue.sum()), timings=timings)
    return VolumeFusion(
        fused=np.moveaxis(res.fused, 0, inputs.axis),
        regions=np.moveaxis(res.regions, 0, inputs.axis),
        slice_metrics=res.per_slice,
        tissue=inputs.tissue,
        volume_metrics=_aggregate(res.per_slice, inputs.tissue),
        region_metrics=region_metrics,
        registration=inputs.registration,
        axis=inputs.axis,
        info=info,
    )


def metrics_rows(result: VolumeFusion) -> list[dict]:
    """Rows (scope + seven metrics) for a CSV or a Slicer table: volume, regions, tissue slices.

    Args:
        result: a fusion result.

    Returns:
        One dict per row: ``scope`` and the seven metrics.
    """
    rows = [{"scope": "volume", **result.volume_metrics}]
    rows += [{"scope": f"region: {r}", **result.region_metrics[r]} for r in REGION_NAMES]
    for i in np.flatnonzero(result.tissue):
        rows.append(
            {"scope": f"slice {i}", **{k: float(result.slice_metrics[k][i]) for k in METRIC_NAMES}}
        )
    return rows
