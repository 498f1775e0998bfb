"""EEM, the edge enhancement module: a central concentration gradient added to HSI intensity.

Our reading of the paper's central concentration gradient (CCG), the 3x3 operator of the
centre against its 8 neighbours:

    CCG(p) = 1/8 * sum_{n in N8(p)} max(I(p) - I(n), 0)      (replicate padding)

i.e. how much the centre stands above its neighbours on average. It is 0 on flat regions and
positive on the bright side of an edge or on a thin bright structure, and 0 on the dark side,
so adding it to I sharpens edges without painting a grey rim into the black background
around the head (which the two-sided mean |I(p) - I(n)| does). The functional image is taken
to HSI (Gonzalez & Woods), ``I' = I + weight * CCG(I)`` keeps hue and saturation, and the
result goes back to RGB, clamped to [0, 1]. A grey image (CT) gets the same on its intensity.
All functions are differentiable and NaN-free at black and grey pixels (hue and saturation
are undefined there and set to 0 with safe denominators).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from EDPSNLib.errors import InputError

_EPS = 1e-8
_TWO_PI = 2.0 * math.pi
_SECTOR = _TWO_PI / 3.0  # 120 degrees
_SQRT3 = math.sqrt(3.0)


def _check(image: torch.Tensor, channels: tuple[int, ...], name: str) -> None:
    if image.dim() != 4 or image.shape[1] not in channels:
        raise InputError(
            f"{name}: expected (B, {'|'.join(map(str, channels))}, H, W), got {tuple(image.shape)}"
        )


def rgb_to_hsi(image: torch.Tensor) -> torch.Tensor:
    """RGB to HSI (Gonzalez & Woods), differentiable and NaN-free at black and grey pixels.

    Args:
        image: (B, 3, H, W) on [0, 1].

    Returns:
        (B, 3, H, W): hue as a fraction of a turn, saturation and intensity on [0, 1] (hue and
        saturation 0 where they are undefined).

    Example:
        >>> rgb_to_hsi(torch.rand(1, 3, 4, 4)).shape
        torch.Size([1, 3, 4, 4])
        >>> rgb_to_hsi(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten().tolist()
        [0.0, 1.0, 0.3333333432674408]
    """
    _check(image, (3,), "rgb_to_hsi")
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    intensity = (r + g + b) / 3.0
    # Hue angle from the chroma plane (equal to the arccos formula, with no arccos'(+-1) = inf).
    x = 2.0 * r - g - b
    y = _SQRT3 * (g - b)
    grey = (x * x + y * y) < _EPS * _EPS
    x_safe = torch.where(grey, torch.ones_like(x), x)
    y_safe = torch.where(grey, torch.zeros_like(y), y)
    angle = torch.remainder(torch.atan2(y_safe, x_safe), _TWO_PI)
    hue = torch.where(grey, torch.zeros_like(angle), angle / _TWO_PI)
    dark = intensity < _EPS
    i_safe = torch.where(dark, torch.ones_like(intensity), intensity)
    minimum = torch.min(image, dim=1, keepdim=True).values
    saturation = torch.where(dark, torch.zeros_like(intensity), 1.0 - minimum / i_safe)
    return torch.cat((hue, saturation, intensity), dim=1)


def hsi_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """HSI as given by :func:`rgb_to_hsi` back to RGB (not clamped).

    Args:
        image: (B, 3, H, W) hue (fraction of a turn), saturation, intensity.

    Returns:
        (B, 3, H, W) RGB.

    Example:
        >>> rgb = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1)
        >>> torch.allclose(hsi_to_rgb(rgb_to_hsi(rgb)), rgb, atol=1e-6)
        True
    """
    _check(image, (3,), "hsi_to_rgb")
    hue, sat, inten = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    angle = torch.remainder(hue * _TWO_PI, _TWO_PI)
    sector = torch.clamp(torch.floor(angle / _SECTOR), 0, 2)
    local = angle - sector * _SECTOR  # in [0, 120 deg): cos(60 deg - local) >= 0.5, no blow-up
    low = inten * (1.0 - sat)
    high = inten * (1.0 + sat * torch.cos(local) / torch.cos(_SECTOR / 2.0 - local))
    rest = 3.0 * inten - low - high
    # Sector 0: (R, G, B) = (high, rest, low); each further sector rotates the roles by one.
    s0, s1 = sector == 0, sector == 1
    red = torch.where(s0, high, torch.where(s1, low, rest))
    green = torch.where(s0, rest, torch.where(s1, high, low))
    blue = torch.where(s0, low, torch.where(s1, rest, high))
    return torch.cat((red, green, blue), dim=1)


def central_concentration_gradient(intensity: torch.Tensor) -> torch.Tensor:
    """CCG: the mean over the 8 neighbours of max(centre - neighbour, 0), replicate padding.

    Args:
        intensity: (B, 1, H, W).

    Returns:
        (B, 1, H, W) >= 0: 0 on flat regions and on the dark side of an edge.

    Example:
        >>> central_concentration_gradient(torch.ones(1, 1, 5, 5)).abs().max().item()
        0.0
        >>> dot = torch.zeros(1, 1, 3, 3)
        >>> dot[..., 1, 1] = 1.0  # a bright pixel stands 1 above all 8 neighbours
        >>> central_concentration_gradient(dot)[0, 0].tolist()
        [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    _check(intensity, (1,), "central_concentration_gradient")
    h, w = intensity.shape[-2:]
    padded = F.pad(intensity, (1, 1, 1, 1), mode="replicate")
    total = torch.zeros_like(intensity)
    for dy in range(3):  # 8 shifted views, vectorised over all pixels
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            total = total + torch.relu(intensity - padded[:, :, dy : dy + h, dx : dx + w])
    return total / 8.0


def edge_enhance(image: torch.Tensor, weight: float = 0.5) -> torch.Tensor:
    """EEM: I' = I + weight * CCG(I) on the HSI intensity of a functional image, clamped to [0, 1].

    Hue and saturation are kept; a grey image (CT) gets the same on its values.

    Args:
        image: (B, 1, H, W) grey or (B, 3, H, W) RGB on [0, 1].
        weight: strength of the CCG term; 0 returns the input unchanged.

    Returns:
        (B, C, H, W) on [0, 1].

    Example:
        >>> dot = torch.zeros(1, 1, 3, 3)
        >>> dot[..., 1, 1] = 0.5
        >>> edge_enhance(dot, weight=0.5)[0, 0, 1].tolist()
        [0.0, 0.75, 0.0]
    """
    _check(image, (1, 3), "edge_enhance")
    if weight == 0:
        return image
    if image.shape[1] == 1:
        return torch.clamp(image + weight * central_concentration_gradient(image), 0.0, 1.0)
    hsi = rgb_to_hsi(image)
    intensity = hsi[:, 2:3]
    enhanced = intensity + weight * central_concentration_gradient(intensity)
    rgb = hsi_to_rgb(torch.cat((hsi[:, :2], enhanced), dim=1))
    return torch.clamp(rgb, 0.0, 1.0)


class EdgeEnhancement(nn.Module):
    """Module wrapper of :func:`edge_enhance` with a fixed weight (no parameters).

    Args:
        weight: strength of the CCG term.

    Example:
        >>> EdgeEnhancement(0.5)(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, weight: float = 0.5) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) grey or (B, 3, H, W) RGB on [0, 1] -> enhanced, same shape, on [0, 1]."""
        return edge_enhance(image, self.weight)
