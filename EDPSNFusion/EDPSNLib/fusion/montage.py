"""A PNG montage of a fusion that a person can look at: MRI, functional, fused, regions."""

from __future__ import annotations

import numpy as np

from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.names import REGION_NAMES

#: Region label names and colours (RGBA 0..255): background, low, mid, high information. The Slicer
#: colour table (EDPSNGui/mrml.py) uses the same ones so the montage and the slice views agree.
_REGION_RGBA = ((51, 115, 242, 255), (191, 217, 38, 255), (230, 38, 26, 255))  # blue, yellow, red
REGION_COLORS: tuple[tuple[str, tuple[int, int, int, int]], ...] = (
    ("background", (0, 0, 0, 0)),
    *((f"{name} information", rgba) for name, rgba in zip(REGION_NAMES, _REGION_RGBA)),
)


def _rgb(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.uint8:
        arr = to_uint8(arr)
    return np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr


def region_overlay(background: np.ndarray, labels: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend region colours over a grey or RGB slice; background label 0 stays untouched.

    Args:
        background: a grey (H, W) or RGB (H, W, 3) uint8 slice.
        labels: region labels (H, W): 0 background, 1 low, 2 mid, 3 high.
        opacity: weight of the region colour (0 invisible, 1 opaque).

    Returns:
        The blended RGB slice (H, W, 3), uint8.
    """
    base = _rgb(background).astype(np.float32)
    lut = np.array([c[:3] for _, c in REGION_COLORS], np.float32)
    alpha = np.where(labels[..., None] > 0, opacity, 0.0).astype(np.float32)
    return np.clip(base * (1 - alpha) + lut[labels] * alpha, 0, 255).astype(np.uint8)


def fusion_montage(
    mri: np.ndarray,
    func: np.ndarray,
    fused: np.ndarray,
    regions: np.ndarray,
    slices: list[int],
    titles: tuple[str, ...] = ("MRI", "functional", "fused", "regions"),
) -> np.ndarray:
    """Rows of (MRI, functional, fused, regions over MRI) for the given slice indices (axis 0).

    Args:
        mri: MRI slices (N, H, W), uint8 (floats on [0, 1] are converted).
        func: functional slices (N, H, W) or (N, H, W, 3), uint8.
        fused: fused slices (N, H, W) or (N, H, W, 3), uint8.
        regions: region labels (N, H, W).
        slices: the slice indices shown, one row each.
        titles: the column titles.

    Returns:
        The montage as an RGB image, uint8: a title strip, then one row of 4 tiles per slice.
    """
    from PIL import Image, ImageDraw  # here, so the Slicer scene adapter can import the colours

    tiles = []
    for k in slices:
        row = [_rgb(mri[k]), _rgb(func[k]), _rgb(fused[k]), region_overlay(mri[k], regions[k])]
        tiles.append(np.concatenate(row, axis=1))
    grid = np.concatenate(tiles, axis=0)
    header = Image.new("RGB", (grid.shape[1], 18), "black")
    draw = ImageDraw.Draw(header)
    w = grid.shape[1] // len(titles)
    for i, title in enumerate(titles):
        draw.text((i * w + 4, 3), title, fill=(255, 255, 255))
    return np.concatenate([np.asarray(header), grid], axis=0)


def pick_slices(tissue: np.ndarray, count: int = 4) -> list[int]:
    """``count`` evenly spread slice indices among those with tissue.

    Args:
        tissue: (N,) bool, the slices that hold tissue.
        count: how many slices to pick.

    Returns:
        Sorted slice indices (fewer when fewer slices hold tissue).

    Example:
        >>> pick_slices(np.array([False, True, True, True, True, False]), 2)
        [2, 3]
    """
    idx = np.flatnonzero(tissue)
    if len(idx) == 0:
        return []
    pos = np.linspace(0, len(idx) - 1, min(count, len(idx)) + 2)[1:-1]
    return [int(idx[int(round(p))]) for p in pos]
