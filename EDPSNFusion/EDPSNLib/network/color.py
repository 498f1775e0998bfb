"""YCbCr conversions on tensors (BT.601 full range, the JPEG/kornia convention)."""

from __future__ import annotations

import numpy as np
import torch

from EDPSNLib.color import LUMA_WEIGHTS

_DELTA = 0.5  # chroma offset for images on [0, 1]


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """RGB to YCbCr, BT.601 full range (the JPEG/kornia convention), Cb and Cr centred on 0.5.

    Args:
        image: (*, 3, H, W) on [0, 1].

    Returns:
        (*, 3, H, W): Y on [0, 1], Cb and Cr around 0.5.

    Raises:
        ValueError: if the third-last axis is not 3.

    Example:
        >>> rgb_to_ycbcr(torch.rand(2, 3, 4, 5)).shape
        torch.Size([2, 3, 4, 5])
        >>> rgb_to_ycbcr(torch.ones(1, 3, 1, 1)).flatten().round(decimals=4).tolist()  # white
        [1.0, 0.5, 0.5]
    """
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"Expected an image of shape (*, 3, H, W), got {tuple(image.shape)}")
    r, g, b = image[..., 0, :, :], image[..., 1, :, :], image[..., 2, :, :]
    y = LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b
    cb = (b - y) * 0.564 + _DELTA
    cr = (r - y) * 0.713 + _DELTA
    return torch.stack((y, cb, cr), dim=-3)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YCbCr back to RGB; the exact inverse of :func:`rgb_to_ycbcr` (not clamped).

    Args:
        image: (*, 3, H, W) as :func:`rgb_to_ycbcr` gives it.

    Returns:
        (*, 3, H, W) RGB.

    Raises:
        ValueError: if the third-last axis is not 3.

    Example:
        >>> rgb = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
        >>> torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-6)
        True
    """
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"Expected an image of shape (*, 3, H, W), got {tuple(image.shape)}")
    y = image[..., 0, :, :]
    cb = image[..., 1, :, :] - _DELTA
    cr = image[..., 2, :, :] - _DELTA
    r = y + cr / 0.713
    b = y + cb / 0.564
    g = (y - LUMA_WEIGHTS[0] * r - LUMA_WEIGHTS[2] * b) / LUMA_WEIGHTS[1]
    return torch.stack((r, g, b), dim=-3)


def split_luma(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A channel-last image as (Y, CbCr) for fusing the luma alone; grey images pass through.

    Args:
        image: (..., H, W, 3) RGB or (..., H, W) grey on [0, 1].

    Returns:
        (Y (..., H, W), CbCr (..., H, W, 2)) as float32, or (image, None) for grey.

    Example:
        >>> y, cbcr = split_luma(np.ones((2, 2, 3)))
        >>> y.tolist(), cbcr.shape
        ([[1.0, 1.0], [1.0, 1.0]], (2, 2, 2))
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim >= 3 and arr.shape[-1] == 3:
        ycc = rgb_to_ycbcr(torch.from_numpy(np.moveaxis(arr, -1, -3).copy())).numpy()
        ycc = np.moveaxis(ycc, -3, -1)
        return ycc[..., 0], ycc[..., 1:]
    return arr, None


def merge_luma(y: np.ndarray, cbcr: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_luma`: a (fused) luma put back with its chroma, clipped to [0, 1].

    Args:
        y: (..., H, W) luma on [0, 1].
        cbcr: (..., H, W, 2) from :func:`split_luma`, or None for grey.

    Returns:
        float32 (..., H, W, 3) RGB, or (..., H, W) grey when ``cbcr`` is None.

    Example:
        >>> merge_luma(np.full((1, 1), 1.5), None).tolist()
        [[1.0]]
        >>> merge_luma(np.ones((1, 1)), np.full((1, 1, 2), 0.5)).round(4).tolist()  # white
        [[[1.0, 1.0, 1.0]]]
    """
    y = np.asarray(y, dtype=np.float32)
    if cbcr is None:
        return np.clip(y, 0.0, 1.0)
    ycc = np.concatenate([y[..., None], np.asarray(cbcr, dtype=np.float32)], axis=-1)
    rgb = ycbcr_to_rgb(torch.from_numpy(np.moveaxis(ycc, -1, -3).copy())).numpy()
    return np.clip(np.moveaxis(rgb, -3, -1), 0.0, 1.0)
