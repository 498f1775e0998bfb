"""Bring a moving volume onto a fixed volume's grid through a registration transform."""

from __future__ import annotations

import SimpleITK as sitk

from EDPSNLib.errors import InputError
from EDPSNLib.volume.io import Volume

__all__ = ["resample_to"]


def resample_to(
    fixed: Volume,
    moving: Volume,
    transform: sitk.Transform | None = None,
    default_value: float | None = None,
    interpolator: str = "linear",
) -> Volume:
    """``moving`` on ``fixed``'s grid.

    Args:
        fixed: the volume whose grid is used.
        moving: the volume resampled (scalar, or RGB channel by channel).
        transform: fixed -> moving points (None: identity).
        default_value: the value outside ``moving`` (None: its minimum; 0 for RGB).
        interpolator: 'linear' (float32; RGB rounded to uint8) or 'nearest' (pixel type kept).

    Returns:
        A Volume on ``fixed``'s grid with ``moving``'s modality.

    Example:
        >>> import SimpleITK as sitk
        >>> v = Volume(sitk.Image([4, 4, 4], sitk.sitkFloat32), "MR")
        >>> resample_to(v, v).shape
        (4, 4, 4)
    """
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}.get(interpolator)
    if interp is None:
        raise InputError(f"Unknown interpolator '{interpolator}'; choose 'linear' or 'nearest'.")
    t = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    img = moving.image
    if moving.is_rgb:
        fill = 0.0 if default_value is None else float(default_value)
        channels = []
        for c in range(3):
            ch = sitk.VectorIndexSelectionCast(img, c, sitk.sitkFloat32)
            ch = sitk.Resample(ch, fixed.image, t, interp, fill, sitk.sitkFloat32)
            channels.append(
                sitk.Cast(sitk.Clamp(sitk.Round(ch), sitk.sitkFloat32, 0, 255), sitk.sitkUInt8)
            )
        out = sitk.Compose(channels)
    else:
        fill = (
            float(sitk.GetArrayViewFromImage(img).min())
            if default_value is None
            else float(default_value)
        )
        pixel = sitk.sitkFloat32 if interpolator == "linear" else img.GetPixelID()
        out = sitk.Resample(img, fixed.image, t, interp, fill, pixel)
    meta = {k: v for k, v in moving.meta.items() if k != "path"}
    meta["resampled_onto"] = fixed.path
    return Volume(out, moving.modality, meta)
