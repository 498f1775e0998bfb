"""Building blocks of EDPSN's dynamic path selection: MFB, AFM, channel attention, heads.

- MFB (multi-scale feature fusion block): parallel 3x3 convolutions with different
  dilations (receptive fields 3, 5, 7 for dilations 1, 2, 3) see the same features; their
  outputs are concatenated, merged by a 1x1 convolution and added to the input (residual).
- AFM (adaptive fusion module): a chain of ``depth`` MFBs closed by squeeze-and-excitation
  channel attention, which re-weights channels from global statistics of the region's
  features (the "adaptive" part). One AFM is one path of the network.
All blocks keep H x W (padding = dilation), so the network takes any image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from EDPSNLib.network.filters import split_detail


class MultiScaleFusionBlock(nn.Module):
    """MFB: parallel dilated 3x3 branches, concatenated, 1x1 merge, residual; keeps the shape.

    Args:
        channels: input and output width C.
        branch_channels: width of each branch.
        dilations: one 3x3 branch per dilation (receptive fields 3, 5, 7 for 1, 2, 3).
        negative_slope: LeakyReLU slope after the branches.

    Example:
        >>> MultiScaleFusionBlock(8, 4)(torch.zeros(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(
        self,
        channels: int,
        branch_channels: int,
        dilations: Sequence[int] = (1, 2, 3),
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, branch_channels, 3, padding=d, dilation=d) for d in dilations
        )
        self.act = nn.LeakyReLU(negative_slope)
        self.merge = nn.Conv2d(branch_channels * len(dilations), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): the input plus the merged dilated branches."""
        multi = torch.cat([branch(x) for branch in self.branches], dim=1)
        return x + self.merge(self.act(multi))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: per-channel gates in (0, 1) from the global average of x.

    Args:
        channels: width C.
        reduction: the hidden width is C // reduction (at least 1).

    Example:
        >>> ChannelAttention(8)(torch.ones(2, 8, 3, 3)).shape
        torch.Size([2, 8, 3, 3])
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): x scaled by its per-channel gates."""
        return x * self.gate(x)


class AdaptiveFusionModule(nn.Module):
    """AFM: ``depth`` MFBs, LeakyReLU, then optional channel attention; one path of the DPS stage.

    Args:
        channels: input and output width C.
        depth: number of MFBs.
        branch_channels: width of each MFB branch.
        dilations: the MFB branches' dilations.
        negative_slope: LeakyReLU slope.
        attention: close the path with :class:`ChannelAttention`.
        reduction: the attention's reduction.

    Example:
        >>> AdaptiveFusionModule(8, depth=2, branch_channels=4)(torch.zeros(1, 8, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(
        self,
        channels: int,
        depth: int,
        branch_channels: int,
        dilations: Sequence[int] = (1, 2, 3),
        negative_slope: float = 0.1,
        attention: bool = True,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            MultiScaleFusionBlock(channels, branch_channels, dilations, negative_slope)
            for _ in range(depth)
        ]
        blocks.append(nn.LeakyReLU(negative_slope))
        if attention:
            blocks.append(ChannelAttention(channels, reduction))
        self.body = nn.Sequential(*blocks)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) through the MFBs, the activation and the attention."""
        return self.body(x)


class ShallowExtractor(nn.Module):
    """Shallow features of the stacked (MRI, functional Y) pair: (B, 2, H, W) -> (B, C, H, W).

    Args:
        channels: output width C.
        negative_slope: LeakyReLU slope.

    Example:
        >>> ShallowExtractor(16)(torch.zeros(1, 2, 7, 9)).shape
        torch.Size([1, 16, 7, 9])
    """

    def __init__(self, channels: int, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, channels, 3, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(channels, channels, 1),
            nn.LeakyReLU(negative_slope),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) stacked MRI and functional Y -> (B, C, H, W) features."""
        return self.body(x)


MIX_SHARE_LOGIT = -2.0  # the ``mix`` head's decoder share starts at sigmoid(-2) = 0.12
MIX_SUPPORT = 0.05  # signal (about 13 grey levels) below which the decoder is faded out


class FusionHead(nn.Module):
    """Decoder from fused features to the fused luminance on [0, 1].

    ``blend``: w = sigmoid(a), fused = w * mri + (1 - w) * func_y + scale * tanh(r) * max(mri,
    func_y), clamped; a per-pixel choice between the inputs (it can express the max rule
    exactly) plus a small learned correction, which trains fast and keeps the inputs' crisp
    detail. The correction is relative to the local signal so that black background (both
    inputs 0) stays exactly black: an absolute one left a grey veil there that costs SSIM.
    ``detail``: each input split into a Gaussian base and its detail (``filters.split_detail``);
    fused = w * base(mri) + (1 - w) * base(func_y) + g_m * detail(mri) + g_f * detail(func_y) +
    the same correction, with gains g = 2 sigmoid(.) in (0, 2). The blend head can only show
    MRI structure inside uptake by mixing in the MRI's darker base as well (the uptake loss);
    this one keeps the brighter base and lays the other image's detail over it.
    ``mix``: a decoder beside the blend: fused = (1 - g) * blend + g * sigmoid(d) * support, with
    a per-pixel share g = sigmoid(.) starting near 0.12 and support = min(1, max(mri, func_y) /
    0.05), so the decoder may draw intensities that no blend of the inputs gives while black
    background stays black.
    ``direct``: fused = sigmoid(conv(features)).

    Args:
        channels: width of the features.
        hidden: width of the hidden 3x3 layer.
        mode: ``blend``, ``detail``, ``mix`` or ``direct``.
        residual_scale: the blend correction's scale.
        negative_slope: LeakyReLU slope.
        sigma: Gaussian sigma (pixels) of the ``detail`` head's base.

    Example:
        >>> head = FusionHead(8, 4)
        >>> fused, w = head(torch.zeros(1, 8, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
        >>> fused.abs().max().item(), w.shape  # black inputs stay black
        (0.0, torch.Size([1, 1, 4, 4]))
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        mode: str = "blend",
        residual_scale: float = 0.2,
        negative_slope: float = 0.1,
        sigma: float = 2.0,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.residual_scale = float(residual_scale)
        self.sigma = float(sigma)
        out = {"blend": 2, "detail": 4, "mix": 4}.get(mode, 1)
        self.hidden = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.LeakyReLU(negative_slope)
        )
        self.out = nn.Conv2d(hidden, out, 3, padding=1)
        # Start near the plain average (w = 0.5, r = 0, detail gains 1): small but non-zero, so
        # every weight receives a gradient from the first step.
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            if mode == "mix":  # the decoder starts with a small share: the blend trains fast
                self.out.bias[2] = MIX_SHARE_LOGIT

    def forward(
        self, features: torch.Tensor, mri: torch.Tensor, func_y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fused luminance and, for ``blend`` and ``detail``, the MRI's per-pixel share w.

        Args:
            features: (B, C, H, W) fused deep features.
            mri: (B, 1, H, W) on [0, 1].
            func_y: (B, 1, H, W) functional luminance on [0, 1].

        Returns:
            (fused (B, 1, H, W) float32, or float64 for a double model; w (B, 1, H, W) (of the
            bases for ``detail``, of the blend for ``mix``) or None for ``direct``).
        """
        raw = self.out(self.hidden(features))
        dtype = torch.promote_types(raw.dtype, torch.float32)  # float32 out of autocast
        raw = raw.to(dtype)
        if self.mode == "direct":
            return torch.sigmoid(raw), None
        weight = torch.sigmoid(raw[:, :1])
        mri, func_y = mri.to(dtype), func_y.to(dtype)
        residual = self.residual_scale * torch.tanh(raw[:, 1:2]) * torch.maximum(mri, func_y)
        if self.mode in ("blend", "mix"):
            fused = weight * mri + (1.0 - weight) * func_y + residual
            if self.mode == "mix":
                share = torch.sigmoid(raw[:, 2:3])
                support = torch.clamp(torch.maximum(mri, func_y) / MIX_SUPPORT, max=1.0)
                fused = (1.0 - share) * fused + share * torch.sigmoid(raw[:, 3:4]) * support
        else:
            (base_m, detail_m), (base_f, detail_f) = (
                split_detail(x, self.sigma) for x in (mri, func_y)
            )
            gains = 2.0 * torch.sigmoid(raw[:, 2:4])
            fused = weight * base_m + (1.0 - weight) * base_f + residual
            fused = fused + gains[:, :1] * detail_m + gains[:, 1:] * detail_f
        return torch.clamp(fused, 0.0, 1.0), weight

    def decoder_share(self, features: torch.Tensor) -> torch.Tensor:
        """The ``mix`` head's per-pixel decoder share g (B, 1, H, W) for these features."""
        if self.mode != "mix":
            raise ValueError(f"Only the 'mix' head has a decoder share, not {self.mode!r}.")
        return torch.sigmoid(self.out(self.hidden(features))[:, 2:3].float())
