"""Input checks of the fusion metrics API (:mod:`EDPSNLib.metrics`): shapes, dtypes, masks.

Every problem a user can meet raises :class:`EDPSNLib.errors.InputError` saying what is wrong
and what to pass instead.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from EDPSNLib.errors import InputError
from EDPSNLib.metrics.maps import Mask


def _numeric(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name} has dtype {arr.dtype}; pass a numeric image on 0..255.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(
            f"{name} contains NaN or infinite values; fix or mask them before scoring."
        )
    return arr


def _images(x: ArrayLike, name: str, batched: bool | None) -> tuple[np.ndarray, bool]:
    """(N, H, W[, 3]) view of one image or a batch, and whether it was a single image.

    ``batched=None``: grey only, (H, W) or (N, H, W); True/False: (N,) H, W with optional RGB.
    """
    arr = _numeric(x, name)
    if batched is None:
        if arr.ndim == 3 and arr.shape[-1] == 3:
            raise InputError(
                f"{name} has shape {arr.shape}, which looks like channel-last RGB; reduce it with "
                "EDPSNLib.color.rgb_to_luma first, or use fusion_metrics."
            )
        if arr.ndim not in (2, 3):
            raise InputError(
                f"{name} has shape {arr.shape}; expected (H, W) or (N, H, W) grey images."
            )
        return (arr[None] if arr.ndim == 2 else arr), arr.ndim == 2
    grey = 3 if batched else 2
    if arr.ndim == grey or (arr.ndim == grey + 1 and arr.shape[-1] == 3):
        return (arr if batched else arr[None]), not batched
    want = "(N, H, W) or (N, H, W, 3)" if batched else "(H, W) or (H, W, 3)"
    raise InputError(f"{name} has shape {arr.shape}; expected {want} (grey or RGB) on 0..255.")


def prepare(
    named: dict[str, ArrayLike],
    mask: ArrayLike | None,
    *,
    batched: bool | None = None,
    min_size: int = 1,
) -> tuple[list[np.ndarray], Mask, bool]:
    """Checked metric inputs as (N, H, W[, 3]) views, a bool mask, and whether one image was given.

    Args:
        named: the images by the name error messages use (``a``, ``b``, ``f``, ...).
        mask: bool (or 0/1 integer) mask of the images' shape, or None.
        batched: None: grey (H, W) or (N, H, W); True: (N, H, W[, 3]); False: (H, W[, 3]).
        min_size: the smallest H and W the metric accepts.

    Returns:
        (arrays, mask (N, H, W) or None, single image).

    Raises:
        InputError: non-numeric or non-finite values, shapes that differ or do not fit, images
            that are too small, a bad mask.

    Example:
        >>> arrays, mask, single = prepare({"f": np.zeros((4, 5))}, None)
        >>> arrays[0].shape, mask, single
        ((1, 4, 5), None, True)
    """
    arrays, singles = zip(*(_images(x, k, batched) for k, x in named.items()))
    if len({a.shape[:3] for a in arrays}) > 1:
        listed = ", ".join(f"{k} {np.shape(x)}" for k, x in named.items())
        raise InputError(f"The images must have the same number and size; got {listed}.")
    n, h, w = arrays[0].shape[:3]
    if min(h, w) < min_size:
        raise InputError(
            f"Images of {h}x{w} pixels are too small: this needs at least {min_size}x{min_size}."
        )
    if mask is None:
        return list(arrays), None, singles[0]
    expected = (h, w) if singles[0] else (n, h, w)
    return list(arrays), bool_mask(mask, expected, "mask").reshape(n, h, w), singles[0]


def bool_mask(mask: ArrayLike, expected: tuple[int, ...], name: str) -> np.ndarray:
    """A mask as bool after checking its dtype and shape.

    Args:
        mask: bool or 0/1 integer array.
        expected: the shape it must have.
        name: its name in error messages.

    Returns:
        The bool array (no copy when it already is one).

    Raises:
        InputError: a float mask or a wrong shape.

    Example:
        >>> bool_mask(np.array([0, 1]), (2,), "mask").tolist()
        [False, True]
    """
    m = np.asarray(mask)
    if m.dtype.kind not in "bui":
        raise InputError(f"{name} has dtype {m.dtype}; pass a boolean (or 0/1 integer) array.")
    if m.shape != expected:
        raise InputError(f"{name} has shape {m.shape} but the images need {expected}.")
    return m.astype(bool, copy=False)


def region_masks(masks: ArrayLike, n: int, h: int, w: int) -> list[np.ndarray]:
    """K boolean masks (N, H, W) from a (K, N, H, W) array.

    Args:
        masks: (K, N, H, W) bool or 0/1 integers.
        n: number of slices N.
        h: image height H.
        w: image width W.

    Returns:
        A list of K (N, H, W) bool arrays.

    Raises:
        InputError: another number of axes, another shape or a float dtype.

    Example:
        >>> len(region_masks(np.zeros((3, 2, 4, 4), dtype=bool), 2, 4, 4))
        3
    """
    m = np.asarray(masks)
    if m.ndim != 4:
        raise InputError(
            f"masks has shape {m.shape}; expected (K, N, H, W) = (K, {n}, {h}, {w}): one boolean "
            "mask per region, stacked on a first axis."
        )
    return list(bool_mask(m, (m.shape[0], n, h, w), "masks"))
