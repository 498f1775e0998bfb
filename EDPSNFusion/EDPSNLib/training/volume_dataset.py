"""Training slices from one MRI + CT/PET/SPECT volume pair, so a user can adapt EDPSN to a scanner.

The moving volume is registered and resampled onto the MRI grid by the fusion pipeline's own
:func:`fusion.prepare_moving`, and every slice is normalised exactly as
:func:`fusion.fuse_volumes` hands it to the network (same MRI percentiles, CT window, PET/SPECT
colour map, slice axis). Slices with tissue in both images go through
:func:`dataset_writer.add_case` into the Harvard layout that ``edpsn train --data`` reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from EDPSNLib.errors import InputError
from EDPSNLib.fusion.normalize import (
    CT_WINDOWS,
    DEFAULT_COLORMAP,
    colormap_lut,
    robust_range,
    window_ct,
)
from EDPSNLib.fusion.pipeline import (
    AXES,
    BACKGROUND_LEVEL,
    MIN_TISSUE_PIXELS,
    MODALITIES,
    FusionOptions,
    prepare_slices,
)
from EDPSNLib.names import REGISTRATION_METHODS
from EDPSNLib.training.dataset_writer import (
    add_case,
    check_case_name,
    check_slice_size,
    read_manifest,
    remove_case,
)
from EDPSNLib.training.volume_slices import (
    TISSUE_FRACTION,
    TISSUE_LEVEL,
    tissue_training_slices,
)
from EDPSNLib.volume.io import Volume, read_volume, validate_volume
from EDPSNLib.volume.registration import RegistrationResult

#: Slices dropped between the train and test blocks (neighbours are near-duplicates).
DEFAULT_TEST_GAP = 2
#: A scalar PET/SPECT with this share of voxels below -500 looks like CT in Hounsfield units.
_HU_AIR, _HU_SHARE = -500.0, 0.05

Progress = Callable[[int, int], None]


@dataclass
class PreparedCase:
    """What one preparation wrote: slice names per split and the recorded source."""

    root: Path
    pair: str
    case: str
    train: list[str]
    test: list[str]
    size: tuple[int, int]
    source: dict[str, Any] = field(default_factory=dict)
    registration: RegistrationResult | None = None

    @property
    def test_case(self) -> str:
        """Name of the case that holds the held-out block."""
        return test_case_name(self.case)


def test_case_name(case: str) -> str:
    """The held-out block of ``case`` is stored as its own case, ``<case>-test``."""
    return f"{case}-test"


def _same_file(a: str | None, b: str | None) -> bool:
    """True when two recorded input paths name the same file or folder."""
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def case_name_from_path(path: str | os.PathLike) -> str:
    """A case name from a volume file or DICOM folder name: 'sub-01_T1w.nii.gz' -> 'sub-01_T1w'."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._-")
    return name or "case"


def _load(vol: Volume | str | os.PathLike, role: str) -> Volume:
    if isinstance(vol, Volume):
        return validate_volume(vol, role)
    return read_volume(vol)


def check_modality(moving: Volume, modality: str) -> None:
    """Refuse a moving volume that cannot be the stated modality (RGB as CT, HU as PET/SPECT)."""
    if modality not in MODALITIES:
        raise InputError(f"Unknown modality '{modality}'; choose {', '.join(MODALITIES)}.")
    if modality == "CT" and moving.is_rgb:
        raise InputError(
            "The moving volume is RGB, but CT training slices are grey Hounsfield images. If it "
            "is a colour PET or SPECT give --modality PET or SPECT; if it is a CT saved as "
            "colour, convert it back to a scalar volume first."
        )
    if modality != "CT" and not moving.is_rgb:
        arr = moving.array
        share = float(np.count_nonzero(arr < _HU_AIR)) / arr.size
        if share >= _HU_SHARE:
            raise InputError(
                f"The moving volume given as {modality} has {share:.0%} of its voxels below "
                f"{_HU_AIR:g}, like the air of a CT in Hounsfield units; PET and SPECT values "
                "are not negative. Give --modality CT if it is a CT."
            )


def _check_options(opts: FusionOptions, is_rgb: bool) -> dict[str, Any]:
    """Fail on a bad window, colour map or axis before the (slow) registration; describe them."""
    if opts.axis not in AXES:
        raise InputError(f"Unknown axis '{opts.axis}'; choose {', '.join(AXES)}.")
    if opts.modality == "CT":
        window_ct(np.zeros(1, np.float32), opts.ct_window)
        window = CT_WINDOWS.get(opts.ct_window) if isinstance(opts.ct_window, str) else None
        return {"ct_window": opts.ct_window, "level_width": list(window or opts.ct_window)}
    if is_rgb:
        return {"rgb": "used as is (value / 255)"}
    cmap = opts.colormap or DEFAULT_COLORMAP[opts.modality]
    colormap_lut(cmap)
    return {"colormap": cmap}


def _registration_record(opts: FusionOptions, reg: RegistrationResult | None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "mode": opts.register,
        "init": opts.init,
        "orientation": opts.orientation,
    }
    if reg is None:
        rec["result"] = "already on the MRI grid: used as is"
        return rec
    t = reg.transform
    rec["result"] = {
        "metric": "Mattes MI (ITK sign: lower is better)",
        "metric_before": reg.metric_before,
        "final_metric": reg.final_metric,
        "iterations": reg.iterations,
        "stop_reason": reg.stop_reason,
        "init": reg.init,
        "overlap": reg.overlap,
        "orientation": reg.orientation,
        "elapsed_s": reg.elapsed_s,
        "transform": {
            "type": t.GetName(),
            "parameters": list(t.GetParameters()),
            "fixed_parameters": list(t.GetFixedParameters()),
            "direction": "MRI (fixed) points to moving points",
        },
    }
    return rec


def _check_split(test_fraction: float, gap: int) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"--test-fraction must be in [0, 1), got {test_fraction:g}.")
    if gap < 0:
        raise InputError(f"--test-gap must be >= 0 slices, got {gap}.")


def split_blocks(n: int, test_fraction: float, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into n slices in order) of the train and test slices: the test slices are one
    contiguous block in the middle, and ``gap`` slices on each side of it are left out."""
    _check_split(test_fraction, gap)
    pos = np.arange(n)
    if test_fraction == 0.0:
        return pos, pos[:0]
    n_test = max(1, round(test_fraction * n))
    start = (n - n_test) // 2
    test = pos[start : start + n_test]
    train = pos[(pos < start - gap) | (pos >= start + n_test + gap)]
    if len(train) == 0:
        raise InputError(
            f"Only {n} tissue slices: a test block of {n_test} plus {gap} gap slices on each side "
            "leaves none for training. Lower --test-fraction or use a larger volume."
        )
    return train, test


def prepare_volume_pair(
    mri: Volume | str | os.PathLike,
    moving: Volume | str | os.PathLike,
    opts: FusionOptions,
    out: str | os.PathLike,
    case: str | None = None,
    *,
    test_fraction: float = 0.0,
    test_gap: int = DEFAULT_TEST_GAP,
    size: int | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> PreparedCase:
    """Register ``moving`` onto ``mri`` as ``edpsn fuse`` does and add its tissue slices to the
    data set ``out`` as case ``case`` (train), and ``<case>-test`` for the held-out block.

    Args:
        mri: the MRI volume or its path.
        moving: the CT, PET or SPECT volume or its path.
        opts: the fusion options (modality, registration, window or colour map, axis) the
            slices are normalised with, exactly as ``edpsn fuse`` would.
        out: the data set folder (Harvard layout, created when missing).
        case: the case name (default: from the MRI's file name).
        test_fraction: share of the tissue slices held out as a middle block.
        test_gap: slices dropped on each side of the held-out block.
        size: pad each slice to a square and resample it to ``size`` x ``size``.
        progress: called with (slices done, slices to do).
        log: receives progress messages.

    Returns:
        What was written. ``opts.register='none'`` takes the volumes as aligned in world
        coordinates. Re-running replaces the case.
    """
    say = log or (lambda _msg: None)
    modality, register = opts.modality, opts.register
    mri_vol, mov_vol = _load(mri, "MRI"), _load(moving, modality)
    if mri_vol.is_rgb:
        raise InputError("The MRI volume is RGB; give the scalar MR series as the reference.")
    check_modality(mov_vol, modality)
    if size is not None and size < 16:
        raise InputError(f"--size must be at least 16 pixels, got {size}.")
    derived = case is None
    if derived:
        case = case_name_from_path(mri_vol.path or "case")
    check_case_name(case)
    if register not in REGISTRATION_METHODS:
        raise InputError(f"Unknown registration '{register}'; choose rigid, affine or none.")
    pair = f"MRI-{modality}"
    root = Path(out).expanduser()
    manifest = read_manifest(root)  # a damaged or foreign dataset.json stops us early
    if derived:  # 'patA/T1' and 'patB/T1' both give 'T1': never replace another exam silently
        for e in manifest["cases"]:
            other = e.get("source", {}).get("mri")
            if e["pair"] == pair and e["case"] == case and not _same_file(other, mri_vol.path):
                raise InputError(
                    f"Case '{case}' (named after the MRI file) is already in {root}, made from "
                    f"another MRI ({other}); give this one its own name with --case."
                )
    functional = _check_options(opts, mov_vol.is_rgb)
    _check_split(test_fraction, test_gap)  # bad values fail before the registration

    say(
        f"Registering the {modality} volume onto the MRI ({register})"
        if register != "none"
        else f"Resampling the {modality} volume onto the MRI grid (no registration)"
    )
    inputs = prepare_slices(mri_vol, mov_vol, opts)  # exactly what edpsn fuse feeds the network
    resampled, reg = inputs.resampled, inputs.registration
    if reg is not None and register != "none":
        say(
            f"Registration: Mattes MI {reg.metric_before:.4f} -> {reg.final_metric:.4f}, "
            f"overlap {reg.overlap:.0%} ({reg.stop_reason})"
        )
    ax, mri01, mov_arr, func_norm = inputs.axis, inputs.mri01, inputs.moving, inputs.functional
    mri_arr = np.moveaxis(mri_vol.array, ax, 0)
    if inputs.display_range is not None:
        functional["range"] = list(inputs.display_range)
    fill = 0.0 if resampled.is_rgb else float(mov_arr.min())  # what resample_to puts outside
    todo = np.flatnonzero(inputs.tissue)
    indices, mri_u8, func_u8 = tissue_training_slices(
        todo, mri01, mov_arr, func_norm, fill, size, progress
    )

    train_pos, test_pos = split_blocks(len(indices), test_fraction, test_gap)
    hw = tuple(int(v) for v in mri_u8.shape[1:3])
    lo, hi = robust_range(mri_arr)
    source = {
        "kind": "volume pair",
        "mri": mri_vol.path,
        "moving": mov_vol.path,
        "modality": modality,
        "mri_shape_zyx": list(mri_vol.shape),
        "moving_shape_zyx": list(mov_vol.shape),
        "registration": _registration_record(opts, reg),
        "axis": {"name": opts.axis, "array_axis_zyx": ax, "slices": len(mri01)},
        "normalisation": {
            "mri": {"percentiles": [0.5, 99.5], "range": [min(lo, float(mri_arr.min())), hi]},
            "functional": functional,
        },
        "tissue": {
            "rule": "MRI tissue as in fusion, and both images above level in min_fraction",
            "level": TISSUE_LEVEL,
            "min_fraction": TISSUE_FRACTION,
            "fusion_background_level": BACKGROUND_LEVEL,
            "fusion_min_pixels": MIN_TISSUE_PIXELS,
            "slices": len(indices),
        },
        "slice_size": list(mri01.shape[1:]),
        "size": size,
        "split": {
            "test_fraction": test_fraction,
            "test_gap": test_gap,
            "test_case": test_case_name(case) if len(test_pos) else None,
            "test_slices": [int(indices[test_pos[0]]), int(indices[test_pos[-1]])]
            if len(test_pos)
            else None,
        },
    }
    test_name = test_case_name(case)
    check_slice_size(root, pair, hw, replacing=(case, test_name))  # before anything is written
    remove_case(root, pair, test_name)  # first: its old size must not block the new case
    say(f"Writing {len(train_pos)} train and {len(test_pos)} test slices of {case} to {root}")
    train = add_case(
        root,
        pair,
        case,
        mri_u8[train_pos],
        func_u8[train_pos],
        indices[train_pos].tolist(),
        "train",
        source,
    )
    test: list[str] = []
    if len(test_pos):
        test = add_case(
            root,
            pair,
            test_name,
            mri_u8[test_pos],
            func_u8[test_pos],
            indices[test_pos].tolist(),
            "test",
            {"held_out_from": case, **source},
        )
    return PreparedCase(root, pair, case, train, test, hw, source, reg)  # type: ignore[arg-type]


def suggested_crop(size: tuple[int, int], crop: int = 128) -> int:
    """The training crop that fits the slices: ``crop`` or the slices' smaller side."""
    return min(crop, min(size))


__all__ = [
    "PreparedCase",
    "prepare_volume_pair",
    "split_blocks",
    "check_modality",
    "case_name_from_path",
    "test_case_name",
    "suggested_crop",
]
