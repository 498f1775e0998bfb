"""Score a fused volume that already exists against its two sources, as ``edpsn fuse`` scores it.

The Slicer modules hold volumes as numpy arrays (K, J, I[, 3]) with a 4x4 IJK-to-RAS matrix;
the core works on :class:`~EDPSNLib.volume.io.Volume` (SimpleITK, LPS). This file converts
between the two and scores a fused volume per slice, for the volume and per entropy region.

The scoring runs :func:`EDPSNLib.fusion.pipeline.fuse_volumes` itself with a "replay" fuser that hands
back the given fused slices instead of computing them, so normalisation, tissue slices,
background and aggregation are exactly those of a real fusion. As there, pixels that are
background in both sources count as 0 in the fused image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import numpy as np
import SimpleITK as sitk

from EDPSNLib.errors import EDPSNError, InputError
from EDPSNLib.fusion.normalize import normalize_mri
from EDPSNLib.fusion.pipeline import (
    BACKGROUND_LEVEL,
    MIN_TISSUE_PIXELS,
    FusionOptions,
    VolumeFusion,
    fuse_volumes,
    metrics_rows,
    slice_axis,
)
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.names import AXES, MODALITIES
from EDPSNLib.volume.io import Volume
from EDPSNLib.volume.registration import resample_to

#: RAS <-> LPS flip of a 4x4 matrix (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])

__all__ = [
    "ijk_to_ras_matrix",
    "volume_from_ijk_to_ras",
    "sitk_transform_from_ras",
    "score_fused_volume",
    "metrics_rows",
    "slice_series",
]


def ijk_to_ras_matrix(volume: Volume) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a core volume (what a Slicer volume node holds).

    Args:
        volume: a core volume (LPS geometry).

    Returns:
        The 4x4 matrix mapping voxel indices (i, j, k, 1) to RAS millimetres.
    """
    m = np.eye(4)
    m[:3, :3] = volume.direction * np.asarray(volume.spacing)[None, :]
    m[:3, 3] = volume.origin
    return _FLIP @ m


def volume_from_ijk_to_ras(array: np.ndarray, ijk_to_ras: np.ndarray, modality: str = "") -> Volume:
    """A core volume from (K, J, I) or (K, J, I, 3) voxels and a 4x4 IJK-to-RAS matrix.

    Args:
        array: voxels (K, J, I) or (K, J, I, 3), as a Slicer node's array.
        ijk_to_ras: the 4x4 IJK-to-RAS matrix.
        modality: the modality recorded in the volume.

    Returns:
        The volume with LPS geometry.
    """
    arr = np.asarray(array)
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] != 3) or 0 in arr.shape:
        raise InputError(
            f"A volume must be (K, J, I) or (K, J, I, 3) voxels, got shape {arr.shape}."
        )
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InputError("The IJK-to-RAS matrix must be a finite 4x4 matrix.")
    lps = _FLIP @ m
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(lps[:3, :3])) < 1e-12:
        raise InputError(
            "The volume's IJK-to-RAS matrix is singular (zero spacing); fix its geometry."
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=arr.ndim == 4)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing[None, :]).ravel().tolist())
    return Volume(image, modality)


def sitk_transform_from_ras(moving_to_fixed: np.ndarray) -> sitk.AffineTransform:
    """The ITK resampling transform (fixed->moving, LPS) of a Slicer "to parent" RAS matrix.

    Args:
        moving_to_fixed: the 4x4 RAS matrix moving the moving volume onto the fixed one.

    Returns:
        The affine transform mapping fixed LPS points to moving LPS points.
    """
    t = np.asarray(moving_to_fixed, dtype=np.float64)
    if (
        t.shape != (4, 4)
        or not np.allclose(t[3], (0, 0, 0, 1))
        or abs(np.linalg.det(t[:3, :3])) < 1e-12
    ):
        raise InputError("The moving-to-MRI transform must be an invertible 4x4 linear matrix.")
    a = _FLIP @ np.linalg.inv(t) @ _FLIP
    out = sitk.AffineTransform(3)
    out.SetMatrix(a[:3, :3].ravel().tolist())
    out.SetTranslation(a[:3, 3].tolist())
    return out


def _check_on_grid(what: str, shape: tuple[int, ...], m: np.ndarray, ref: Volume) -> None:
    ref_m = ijk_to_ras_matrix(ref)
    if tuple(shape[:3]) != ref.shape or not np.allclose(m, ref_m, atol=1e-3):
        raise InputError(
            f"The {what} is not on the MRI's voxel grid (shape {tuple(shape[:3])} vs {ref.shape}); "
            "pick the MRI it was fused with, or resample it onto that MRI first."
        )


class _ReplayFuser:
    """A SliceFuser that returns the given fused slices, in the order fuse_volumes asks for them."""

    def __init__(
        self, mri01: np.ndarray, fused: np.ndarray, regions: np.ndarray | None, todo: np.ndarray
    ):
        self.mri01, self.fused, self.regions, self.todo = mri01, fused, regions, todo
        self.cursor, self.region_fuser = 0, None

    def __call__(self, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = self.todo[self.cursor : self.cursor + len(mri)]
        self.cursor += len(mri)
        if len(idx) != len(mri) or not np.array_equal(self.mri01[idx], mri):
            raise RuntimeError(
                "fuse_volumes no longer visits tissue slices in order; update _ReplayFuser."
            )
        # C order: the luma (a matrix product) of a strided array can differ in the last bit.
        out = np.ascontiguousarray(self.fused[idx], np.float32) / np.float32(255.0)
        if self.regions is not None:
            return out, np.maximum(self.regions[idx].astype(np.int16) - 1, 0).astype(np.uint8)
        # The regions edpsn fuse writes: EDPSN's own EEM + ED, which use no learned weights;
        # the baseline fuser computes exactly those (its fused output is not used).
        if self.region_fuser is None:
            from EDPSNLib.fusion.slices import BaselineSliceFuser

            self.region_fuser = BaselineSliceFuser("max")
        return out, self.region_fuser(mri, func)[1]


def score_fused_volume(
    mri: tuple[np.ndarray, np.ndarray],
    moving: tuple[np.ndarray, np.ndarray],
    fused: tuple[np.ndarray, np.ndarray],
    modality: str,
    *,
    moving_to_mri: np.ndarray | None = None,
    regions: tuple[np.ndarray, np.ndarray] | None = None,
    ct_window: str | tuple[float, float] = "brain",
    colormap: str | None = None,
    axis: str = "axial",
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> VolumeFusion:
    """The seven metrics of a fused volume per slice, for the volume and per entropy region.

    Each volume is ``(voxels, ijk_to_ras)``; ``fused`` (and ``regions``, a labelmap with 0
    background, 1 low, 2 mid, 3 high) must lie on the MRI's grid. ``moving_to_mri`` is the
    registration as a Slicer "to parent" RAS matrix (None: the moving volume is already placed
    in world space). Without ``regions`` they are computed as ``edpsn fuse`` does (needs torch).

    Args:
        mri: the MRI as ``(voxels, ijk_to_ras)``.
        moving: the CT, PET or SPECT volume as ``(voxels, ijk_to_ras)``.
        fused: the fused volume on the MRI grid as ``(voxels, ijk_to_ras)``.
        modality: CT, PET or SPECT.
        moving_to_mri: the registration as a 4x4 RAS matrix, or None.
        regions: the region labelmap on the MRI grid, or None to compute it.
        ct_window: the CT window the fusion used.
        colormap: the PET/SPECT colour map the fusion used (None: the default).
        axis: the slicing axis the fusion used.
        batch_size: slices scored per batch.
        progress: called with (slices done, slices to do).

    Returns:
        The metrics (per slice, volume, regions) and the labels, as :func:`fuse_volumes` gives.
    """
    mri_v = volume_from_ijk_to_ras(*mri, modality="MR")
    moving_v = volume_from_ijk_to_ras(*moving, modality=modality)
    fused_arr = np.asarray(fused[0])
    _check_on_grid("fused volume", fused_arr.shape, np.asarray(fused[1], np.float64), mri_v)
    if (fused_arr.ndim == 4) != (modality != "CT"):
        want = (
            "a grey (scalar) volume for CT" if modality == "CT" else f"an RGB volume for {modality}"
        )
        raise InputError(f"The fused volume should be {want}; check the modality or the volume.")
    labels = None
    if regions is not None:
        labels = np.asarray(regions[0])
        _check_on_grid("region labelmap", labels.shape, np.asarray(regions[1], np.float64), mri_v)
    if moving_to_mri is not None or not _same_grid(moving_v, mri_v):
        t = None if moving_to_mri is None else sitk_transform_from_ras(moving_to_mri)
        moving_v = resample_to(mri_v, moving_v, t, default_value=0.0 if moving_v.is_rgb else None)
    opts = FusionOptions(
        modality=modality,
        register="none",
        ct_window=ct_window,
        colormap=colormap,
        axis=axis,
        batch_size=batch_size,
        method="replay",
    )
    ax = slice_axis(mri_v, axis)
    mri01 = normalize_mri(np.moveaxis(mri_v.array, ax, 0))  # as fuse_volumes computes it
    todo = np.flatnonzero((mri01 > BACKGROUND_LEVEL).sum(axis=(1, 2)) >= MIN_TISSUE_PIXELS)
    labels = None if labels is None else np.moveaxis(labels, ax, 0)
    replay = _ReplayFuser(mri01, np.moveaxis(fused_arr, ax, 0), labels, todo)
    return fuse_volumes(mri_v, moving_v, opts, fuser=replay, progress=progress)


def _same_grid(a: Volume, b: Volume) -> bool:
    return a.shape == b.shape and np.allclose(ijk_to_ras_matrix(a), ijk_to_ras_matrix(b), atol=1e-3)


def slice_series(result: VolumeFusion) -> tuple[list[int], dict[str, list[float]]]:
    """Per-slice metrics of the tissue slices, ready to plot: (slice indices, {metric: values}).

    Args:
        result: a fusion or scoring result.

    Returns:
        ``(slice indices, {metric: values})`` of the tissue slices.
    """
    idx = np.flatnonzero(result.tissue)
    return idx.tolist(), {k: result.slice_metrics[k][idx].tolist() for k in METRIC_NAMES}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m EDPSNLib.fusion.scoring``: score fused volume files into a metrics CSV.

    EDPSN Training runs this in a subprocess (a volume takes tens of seconds: the GUI must not
    wait on it); with ``--json-progress`` it prints the events ``edpsn fuse`` prints.
    """
    from EDPSNLib.atomic import write_text_atomic
    from EDPSNLib.metrics.table import metrics_csv_text
    from EDPSNLib.volume.io import read_volume

    parser = argparse.ArgumentParser(
        prog="python -m EDPSNLib.fusion.scoring", description=main.__doc__
    )
    for name in ("--mri", "--moving", "--fused", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--modality", required=True, choices=MODALITIES)
    parser.add_argument("--regions", help="region labelmap (default: computed as edpsn fuse does)")
    parser.add_argument(
        "--moving-to-mri", help="16 numbers: the 4x4 RAS 'to parent' matrix, row by row"
    )
    parser.add_argument("--ct-window", default="brain", help="a preset name or LEVEL,WIDTH")
    parser.add_argument("--colormap")
    parser.add_argument("--axis", default="axial", choices=AXES)
    parser.add_argument("--json-progress", action="store_true")
    args = parser.parse_args(argv)

    def emit(**event: object) -> None:
        """Print ``event`` as one JSON line on stdout when --json-progress is given."""
        if args.json_progress:
            print(json.dumps(event), flush=True)

    def load(path: str) -> tuple[np.ndarray, np.ndarray]:
        """Read a volume without validation: (its array, its 4x4 IJK-to-RAS matrix)."""
        vol = read_volume(path, validate=False)
        return vol.array, ijk_to_ras_matrix(vol)

    try:
        window = args.ct_window
        if "," in window:
            window = tuple(float(v) for v in window.split(","))
        matrix = None
        if args.moving_to_mri:
            matrix = np.array([float(v) for v in args.moving_to_mri.split(",")]).reshape(4, 4)
        emit(event="stage", stage="read", message="Reading the volumes")
        volumes = [load(p) for p in (args.mri, args.moving, args.fused)]
        emit(event="stage", stage="metrics", message="Scoring the fused volume slice by slice")
        result = score_fused_volume(
            *volumes,
            args.modality,
            moving_to_mri=matrix,
            regions=load(args.regions) if args.regions else None,
            ct_window=window,
            colormap=args.colormap,
            axis=args.axis,
            progress=lambda done, total: emit(
                event="progress", stage="metrics", done=done, total=total
            ),
        )
        write_text_atomic(args.out, metrics_csv_text(metrics_rows(result)))
    except (EDPSNError, ValueError) as exc:
        print(f"edpsn score: error: {exc}", file=sys.stderr)
        return 2
    emit(
        event="done",
        outputs={"metrics": str(args.out)},
        volume_metrics=result.volume_metrics,
        region_metrics=result.region_metrics,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
