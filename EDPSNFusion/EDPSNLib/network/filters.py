"""Small image filters shared by the network's detail head and the fusion loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), radius ceil(3 sigma), replicate-padded, same shape.

    Example:
        >>> x = torch.full((1, 1, 5, 5), 0.5)
        >>> torch.allclose(gaussian_blur(x, 2.0), x)  # a constant image is unchanged
        True
    """
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    b, c, h, w = image.shape
    out = F.pad(image.reshape(b * c, 1, h, w), (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.conv2d(out, kernel.view(1, 1, -1, 1))
    return out.reshape(b, c, h, w)


def split_detail(image: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(base, detail) of (B, C, H, W): the Gaussian-blurred image and the rest; base + detail = image."""
    base = gaussian_blur(image, sigma)
    return base, image - base
