"""Linear transforms: points, overlap of two volumes, ITK .tfm files, RIRE ground-truth points.

ITK convention throughout: a registration transform maps fixed-space points to moving space.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from EDPSNLib.atomic import atomic_path, check_output_path
from EDPSNLib.errors import InputError

__all__ = [
    "linear_parts",
    "transform_points",
    "corner_points",
    "rotation_deg",
    "overlap_fraction",
    "save_transform",
    "load_transform",
    "read_rire_points",
]


def _box(image: sitk.Image, n: int) -> sitk.Image:
    """An n^3 uint8 grid spanning the same physical box (voxel edges) as ``image``."""
    size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    new_spacing = spacing * size / n
    origin = np.array(image.GetOrigin()) + direction @ ((new_spacing - spacing) / 2)
    out = sitk.Image([n] * 3, sitk.sitkUInt8)
    out.SetSpacing(new_spacing.tolist())
    out.SetOrigin(origin.tolist())
    out.SetDirection(image.GetDirection())
    return out


def overlap_fraction(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Fraction of the smaller volume that lies inside the other one under ``transform``."""

    def inside(grid_of: sitk.Image, box_of: sitk.Image, t: sitk.Transform) -> float:
        """Fraction of ``grid_of``'s box (24^3 samples) that ``t`` maps inside ``box_of``'s box."""
        ones = _box(box_of, 2) + 1
        hits = sitk.Resample(ones, _box(grid_of, 24), t, sitk.sitkNearestNeighbor, 0)
        return float(sitk.GetArrayViewFromImage(hits).mean())

    return max(inside(fixed, moving, transform), inside(moving, fixed, transform.GetInverse()))


def linear_parts(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with T(x) = A x + b for any linear ITK transform (rigid, affine, composite...)."""
    if not transform.IsLinear():
        raise InputError(
            f"{transform.GetName()} is not linear; only rigid or affine transforms are supported."
        )
    # An affine map is fixed by where it sends the origin and the three unit vectors.
    b = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    a = np.stack([np.array(transform.TransformPoint(tuple(e))) - b for e in np.eye(3)], axis=1)
    return a, b


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """Map (N, 3) physical points through a linear transform, vectorised."""
    a, b = linear_parts(transform)
    return np.asarray(points, dtype=np.float64) @ a.T + b


def corner_points(image: sitk.Image) -> np.ndarray:
    """(8, 3) physical positions of the corner voxel centres of an image."""
    size = np.array(image.GetSize()) - 1
    idx = np.array(np.meshgrid(*[[0, s] for s in size], indexing="ij")).reshape(3, -1).T
    return np.array([image.TransformContinuousIndexToPhysicalPoint(i.tolist()) for i in idx])


def rotation_deg(a: np.ndarray) -> float:
    """Rotation angle (degrees) of the rotation nearest to a 3x3 matrix."""
    u, _, vt = np.linalg.svd(a)
    r = u @ vt  # nearest rotation, so this also works for affine matrices
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def save_transform(
    result: sitk.Transform | Any,
    path: str | os.PathLike,
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write the transform as an ITK text file (.tfm or .txt), atomically; returns the path."""
    t = getattr(result, "transform", result)  # a RegistrationResult or a bare transform
    out = check_output_path(path, inputs)
    if out.suffix.lower() not in (".tfm", ".txt"):
        raise InputError(f"Save transforms as .tfm (ITK text), not '{out.suffix}'.")
    with atomic_path(out) as tmp:
        sitk.WriteTransform(t, str(tmp))
    return out


def load_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read an ITK transform file (.tfm/.txt/.h5)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"Transform file {p} does not exist; check the path.")
    try:
        return sitk.ReadTransform(str(p)).Downcast()
    except RuntimeError:
        raise InputError(
            f"{p} is not a readable ITK transform file; save it again as .tfm."
        ) from None


def read_rire_points(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The (8, 3) 'from' and 'to' corner points (mm) of a RIRE ``.standard`` ground-truth file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0].isdigit():
            rows.append([float(v) for v in parts[1:]])
    if len(rows) != 8:
        raise InputError(
            f"{path} holds {len(rows)} point rows, not the 8 of a RIRE .standard file."
        )
    pts = np.array(rows)
    return pts[:, :3], pts[:, 3:]
