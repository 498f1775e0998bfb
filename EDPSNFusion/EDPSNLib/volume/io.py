"""Read and write 3-D volumes (DICOM series, NIfTI, NRRD, MetaImage) with their geometry.

A :class:`Volume` wraps a SimpleITK image, so origin, spacing and direction travel with the
voxels; numpy views are (z, y, x) for scalar and (z, y, x, 3) for RGB volumes. Geometry is
always in SimpleITK's LPS world coordinates (NIfTI's RAS is converted by the reader).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from EDPSNLib.atomic import atomic_path, check_output_path
from EDPSNLib.errors import InputError
from EDPSNLib.volume.dicom import read_dicom_series, suv_factor

__all__ = [
    "Volume",
    "read_volume",
    "write_volume",
    "validate_volume",
    "suv_factor",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
]

#: File endings read as single-file volumes (a folder is read as a DICOM series).
READ_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
#: File endings ``write_volume`` writes (single-file formats only, so the write stays atomic).
WRITE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")


@dataclass
class Volume:
    """A 3-D scalar or RGB volume: a SimpleITK image plus modality and metadata."""

    image: sitk.Image
    modality: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def array(self) -> np.ndarray:
        """A copy of the voxels, (z, y, x) or (z, y, x, 3)."""
        return sitk.GetArrayFromImage(self.image)

    @property
    def is_rgb(self) -> bool:
        """True for a 3-component (RGB) vector volume."""
        return self.image.GetNumberOfComponentsPerPixel() == 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size as (z, y, x)."""
        return tuple(reversed(self.image.GetSize()))  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm, (x, y, z)."""
        return self.image.GetSpacing()

    @property
    def origin(self) -> tuple[float, float, float]:
        """World (LPS) position of voxel (0, 0, 0) in mm."""
        return self.image.GetOrigin()

    @property
    def direction(self) -> np.ndarray:
        """3x3 direction cosines; column i is the world direction of index axis i."""
        return np.asarray(self.image.GetDirection(), dtype=np.float64).reshape(3, 3)

    @property
    def path(self) -> str | None:
        """The file or folder the volume was read from, if any."""
        return self.meta.get("path")

    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        reference: Volume,
        modality: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Volume:
        """Wrap a (z, y, x) or (z, y, x, 3) array on ``reference``'s grid (origin, spacing, direction)."""
        arr = np.asarray(array)
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
            raise InputError(
                f"Expected a (z, y, x) or (z, y, x, 3) array, got shape {arr.shape}; "
                "pass one scalar or RGB volume."
            )
        if arr.shape[:3] != reference.shape:
            raise InputError(
                f"Array shape {arr.shape[:3]} (z, y, x) does not match the reference grid "
                f"{reference.shape}; resample the data onto the reference first."
            )
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        image = sitk.GetImageFromArray(arr, isVector=arr.ndim == 4)
        image.CopyInformation(reference.image)
        return cls(image, reference.modality if modality is None else modality, dict(meta or {}))


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def _to_3d(image: sitk.Image, source: str) -> sitk.Image:
    """Accept 3-D images (and 4-D ones with a single time point); refuse 2-D and 4-D data."""
    size = image.GetSize()
    if image.GetDimension() == 4:
        if size[3] != 1:
            raise InputError(
                f"{source} is a 4-D series ({size[3]} time points or frames of {size[:3]}); "
                "EDPSN fuses one 3-D volume: extract one frame (e.g. a summed PET frame) first."
            )
        image = image[:, :, :, 0]
    if image.GetDimension() == 2 or (image.GetDimension() == 3 and size[2] == 1):
        raise InputError(
            f"{source} is a 2-D image (size {size}); EDPSN Fusion needs a 3-D volume. "
            "Load the whole series (its folder) or use the 2-D tools for single slices."
        )
    if image.GetDimension() != 3:
        raise InputError(f"{source} has {image.GetDimension()} dimensions; give a 3-D volume.")
    ncomp = image.GetNumberOfComponentsPerPixel()
    if ncomp not in (1, 3):
        raise InputError(
            f"{source} has {ncomp} components per voxel; only scalar and RGB volumes are "
            "supported: convert it to grey or RGB first."
        )
    return image


def _read_file(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"Cannot read {path}: the file is damaged or not a volume SimpleITK understands "
            f"({str(exc).strip().splitlines()[-1][:200]}). Re-export it as NIfTI, NRRD or DICOM."
        ) from None


def read_volume(
    path: str | os.PathLike,
    series_uid: str | None = None,
    series_description: str | None = None,
    suv: bool = False,
    modality: str | None = None,
    validate: bool = True,
) -> Volume:
    """Read a DICOM series folder (or one of its files), NIfTI, NRRD or MetaImage volume.

    ``series_uid`` / ``series_description`` pick one series in a folder holding several.
    ``suv=True`` converts a PET series in Bq/ml to body-weight SUV (see :func:`suv_factor`).
    ``modality`` overrides the DICOM Modality tag (files without one get ``""``).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p} does not exist; check the path (a DICOM folder or a volume file).")
    is_dicom_file = p.is_file() and _has_suffix(p, (".dcm",))
    if p.is_dir() or is_dicom_file:
        image, meta = read_dicom_series(
            p, series_uid=series_uid, series_description=series_description
        )
        mod = meta.get("Modality", "")
    else:
        if suv:
            raise InputError(
                f"SUV conversion needs the DICOM PET tags, and {p.name} is not DICOM; "
                "read the PET DICOM folder instead, or read without SUV conversion (leave out --suv)."
            )
        image = _read_file(p)
        meta = {"format": "file"}
        mod = ""
    image = _to_3d(image, str(p))
    meta["path"] = str(p.resolve())
    if suv:
        factor = suv_factor(p, series_uid=series_uid, series_description=series_description)
        image = sitk.Cast(image, sitk.sitkFloat32) * factor
        meta.update(suv_factor=factor, Units="SUVbw")  # the DICOM value was BQML
    vol = Volume(image, (modality if modality is not None else mod).upper(), meta)
    if validate:
        validate_volume(vol, role=vol.modality or p.name)
    return vol


def validate_volume(vol: Volume, role: str = "MRI") -> Volume:
    """Check a volume is usable for fusion: 3-D, >= 2 voxels along each axis, finite, not constant."""
    size = vol.image.GetSize()
    if vol.image.GetDimension() != 3 or min(size) < 2:
        raise InputError(
            f"The {role} volume has size {size}; a 3-D volume with at least 2 voxels along "
            "each axis is needed (load the whole series, not a single slice)."
        )
    arr = sitk.GetArrayViewFromImage(vol.image)
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise InputError(
                f"The {role} volume has {bad} NaN or infinite voxels; replace them (e.g. with "
                "the background value) in the source software and load it again."
            )
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise InputError(
            f"The {role} volume is constant (every voxel is {lo:g}); it holds no image. "
            "Check that the right series was loaded and that it is not empty."
        )
    return vol


def _as_volume(vol_or_array: Volume | np.ndarray, reference: Volume | None) -> Volume:
    if isinstance(vol_or_array, Volume):
        if reference is None:
            return vol_or_array
        return Volume.from_array(vol_or_array.array, reference, vol_or_array.modality)
    if reference is None:
        raise InputError(
            "Writing a bare array needs a reference volume for its origin, spacing and "
            "direction; pass reference=<the volume whose grid the array is on>."
        )
    return Volume.from_array(vol_or_array, reference)


def _rgb_uint8(image: sitk.Image) -> sitk.Image:
    """RGB as uint8: float colours must be on [0, 1] (the core's convention) and are rounded."""
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype == np.uint8:
        return image
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise InputError(
                "A float RGB volume must hold colours on [0, 1]; scale it (or give uint8 0..255)."
            )
        out = np.rint(np.asarray(arr, dtype=np.float64) * 255.0).astype(np.uint8)
    elif arr.min() >= 0 and arr.max() <= 255:
        out = arr.astype(np.uint8)
    else:
        raise InputError("An integer RGB volume must hold values 0..255; convert it to uint8.")
    rgb = sitk.GetImageFromArray(out, isVector=True)
    rgb.CopyInformation(image)
    return rgb


def write_volume(
    vol_or_array: Volume | np.ndarray,
    path: str | os.PathLike,
    reference: Volume | None = None,
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write a volume (or an array on ``reference``'s grid) to .nrrd, .nii(.gz) or .mha, atomically.

    RGB volumes are written as 3-component uint8 vector volumes. The output may not be the
    reference's or any of ``inputs``' source path. Returns the resolved output path.
    """
    vol = _as_volume(vol_or_array, reference)
    out_path = Path(path).expanduser()
    if not _has_suffix(out_path, WRITE_SUFFIXES):
        raise InputError(
            f"Cannot write {out_path.name}: choose one of {', '.join(WRITE_SUFFIXES)} as the ending."
        )
    sources = [s for s in (vol.path, reference.path if reference else None) if s]
    out = check_output_path(out_path, (*inputs, *sources))
    image = vol.image
    if vol.is_rgb:
        image = _rgb_uint8(image)
    elif image.GetPixelID() == sitk.sitkFloat64:
        image = sitk.Cast(image, sitk.sitkFloat32)  # float32 keeps 7 digits, halves the file
    with atomic_path(out) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=True)
        except RuntimeError as exc:
            raise InputError(
                f"Could not write {out}: {str(exc).strip().splitlines()[-1][:200]}. "
                "Check free disk space and permissions."
            ) from None
        _check_written(tmp, image, out)
    return out


def _check_written(path: Path, image: sitk.Image, out: Path) -> None:
    """Read a written volume back: ITK's NIfTI writer reports a short write (full disk) only on
    the console and returns success, which would leave a truncated file behind."""
    try:
        back = sitk.ReadImage(str(path))
        same = back.GetSize() == image.GetSize() and np.array_equal(
            sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)
        )
    except RuntimeError:
        same = False
    if not same:
        raise InputError(
            f"Could not write {out}: the file on disk is incomplete (the disk may be full). "
            "Check free disk space and permissions."
        )
