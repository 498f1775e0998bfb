"""Seeded training augmentation beyond crops and flips: MRI contrast, functional scale, rotation.

The network must fuse MRIs from other scanners and sequences (darker, T2-like, noisier) and
functional images of other brightness without losing uptake; three atlas PET subjects cannot
show that variety, so it is drawn at random (the kinds of change of the evaluation's
contrast-shift suite, :mod:`EDPSNLib.data.shifts`):

* ``mri``: :func:`~EDPSNLib.data.shifts.random_mri_shift` (T2-like, gamma, scaling, blur, noise).
* ``func``: the functional image scaled by U(0.7, 1.3), hue kept.
* ``geom``: both images rotated by the same angle U(-10, 10) degrees about the centre
  (bilinear, zero outside), before the crop.

Each item's changes come from a generator seeded by its augmentation seed on a separate
stream from the crop and flips, so switching augmentation on or off leaves those as they were,
and a run stays a pure function of its seed (exact resume).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from EDPSNLib.data.shifts import random_functional_scale, random_mri_shift
from EDPSNLib.errors import InputError

#: The augmentation kinds, in the order they are applied.
AUGMENT_KINDS = ("mri", "func", "geom")
#: Largest rotation of ``geom``, in degrees.
MAX_ROTATION_DEG = 10.0


def parse_augment(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"mri,geom"`` / ``"all"`` / ``"none"`` / a list -> the kinds in canonical order.

    Example:
        >>> parse_augment("geom,mri"), parse_augment("all"), parse_augment(None)
        (('mri', 'geom'), ('mri', 'func', 'geom'), ())
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    kinds = {v.strip() for v in items if v.strip()}
    if "all" in kinds:
        kinds = (kinds - {"all"}) | set(AUGMENT_KINDS)
    kinds.discard("none")
    unknown = sorted(kinds - set(AUGMENT_KINDS))
    if unknown:
        raise InputError(
            f"Unknown augmentation {unknown}; use a comma list of {', '.join(AUGMENT_KINDS)}, "
            "'all' or 'none'."
        )
    return tuple(k for k in AUGMENT_KINDS if k in kinds)


def rotate_pair(
    mri: np.ndarray, func: np.ndarray, angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (H, W) and (H, W[, 3]) arrays by the same angle about the centre (bilinear, 0 outside)."""

    def turn(x: np.ndarray) -> np.ndarray:
        """``x`` rotated by ``angle_deg`` (same shape), clipped to [0, 1], as float32."""
        out = ndimage.rotate(x, angle_deg, axes=(1, 0), reshape=False, order=1, mode="constant")
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    return turn(mri), turn(func)


def augment_pair(
    mri: np.ndarray, func: np.ndarray, seed: int, kinds: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One item's random changes: float arrays on [0, 1] in, new float32 arrays out.

    Args:
        mri: (H, W) on [0, 1].
        func: (H, W) grey or (H, W, 3) RGB on [0, 1].
        seed: the item's augmentation seed (the crop's seed; a separate stream is used).
        kinds: a subset of :data:`AUGMENT_KINDS`.

    Returns:
        (mri, func), the same shapes.
    """
    rng = np.random.default_rng([int(seed), 0xA06])
    # Every draw happens whatever the kinds, so one kind's values do not depend on another's.
    mri_rng, func_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 2))
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    a, b = np.asarray(mri, np.float32), np.asarray(func, np.float32)
    if "mri" in kinds:
        a = random_mri_shift(a, mri_rng)
    if "func" in kinds:
        b = random_functional_scale(b, func_rng)
    if "geom" in kinds:
        a, b = rotate_pair(a, b, angle)
    return a, b
