"""EDPSN: entropy-aware dynamic path selection network (Qu et al., Inf. Fusion 123 (2025) 103312).

Data flow of :meth:`EDPSN.forward` (our reading of the paper; choices in ``config.py``):

1. EEM (``edge.py``) on the functional image (RGB PET/SPECT or grey CT).
2. RGB functional images go to YCbCr; the network fuses the MRI with the enhanced Y. The
   Cb/Cr put back are those of the *enhanced* image: EEM keeps hue and saturation and scales
   RGB with I, so its chroma matches the luminance the network saw.
3. ED (``entropy.py``): 3-class local-entropy regions of max(MRI, Y); one-hot masks.
4. DPS: shallow features of (MRI, Y) times each mask feed one AFM path per region, depths
   (1, 2, 3) for low/mid/high entropy; the three outputs are concatenated, merged by a 1x1
   convolution and added to the shallow features; the head decodes the fused luminance.

With ``dps_gate`` a 3x3 convolution of the shallow features and the masks gives per-pixel
softmax weights over the three path outputs before the merge (:func:`path_gate`); it starts at
the hard masks (logits 4 x mask) and learns where to soften them.

Switches: ``use_eem=False`` skips step 1. ``use_ed=False``: no masks, every path gets the
same (unmasked) shallow features. ``use_dps=False``: one shared path of depth
max(path_depths) replaces the three; with ED on it runs on each masked feature map (shared
weights, stacked along the batch), so ED still matters and only the per-region paths go.
Every layer keeps H x W, so any image size works without padding.
"""

from __future__ import annotations

import torch
from torch import nn

from EDPSNLib.errors import InputError
from EDPSNLib.network.blocks import AdaptiveFusionModule, FusionHead, ShallowExtractor
from EDPSNLib.network.color import rgb_to_ycbcr, ycbcr_to_rgb
from EDPSNLib.network.config import ARCHITECTURE, EDPSNConfig
from EDPSNLib.network.edge import edge_enhance
from EDPSNLib.network.entropy import region_map, region_masks

#: Logit of a pixel's own region in a fresh gate: softmax(4 * one-hot) gives it 0.96.
GATE_PRIOR = 4.0


def path_gate(width: int) -> nn.Conv2d:
    """The DPS gate: (features, 3 masks) -> 3 path logits, initialised to GATE_PRIOR * masks."""
    gate = nn.Conv2d(width + 3, 3, 3, padding=1)
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.zero_()
        for k in range(3):
            gate.weight[k, width + k, 1, 1] = GATE_PRIOR
    return gate


def _check_image(x: torch.Tensor, name: str, channels: tuple[int, ...]) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(
            f"{name} must be a tensor (B, {'|'.join(map(str, channels))}, H, W), got {shape}."
        )
    if not x.is_floating_point():
        raise InputError(f"{name} must be floating point on [0, 1], got {x.dtype}; divide by 255.")


def _check_pair(mri: torch.Tensor, other: torch.Tensor, name: str) -> None:
    if mri.shape[0] != other.shape[0] or mri.shape[-2:] != other.shape[-2:]:
        raise InputError(
            f"MRI {tuple(mri.shape)} and {name} {tuple(other.shape)} differ in batch or size; "
            "resample the functional image onto the MRI grid first."
        )


class EDPSN(nn.Module):
    """The fusion network: (MRI, functional image) -> fused image on [0, 1].

    Any image size works (every layer keeps H x W); see the module docstring for the data flow.

    Args:
        config: the settings (default: the shipped network, :class:`EDPSNConfig`).

    Example:
        >>> model = EDPSN().eval()
        >>> with torch.no_grad():
        ...     fused = model(torch.zeros(1, 1, 16, 16), torch.zeros(1, 3, 16, 16))
        >>> fused.shape, fused.abs().max().item()  # black in, black out
        (torch.Size([1, 3, 16, 16]), 0.0)
    """

    architecture = ARCHITECTURE

    def __init__(self, config: EDPSNConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else EDPSNConfig()
        cfg = self.config
        width = cfg.channels

        def path(depth: int) -> AdaptiveFusionModule:
            """One DPS path: an AFM of ``depth`` MFBs with the config's settings."""
            return AdaptiveFusionModule(
                width,
                depth,
                cfg.branch_channels,
                cfg.dilations,
                cfg.negative_slope,
                cfg.use_attention,
                cfg.attention_reduction,
            )

        self.shallow = ShallowExtractor(width, cfg.negative_slope)
        depths = cfg.path_depths if cfg.use_dps else (max(cfg.path_depths),)
        self.paths = nn.ModuleList(path(d) for d in depths)
        self.merge = nn.Conv2d(3 * width, width, 1)
        self.act = nn.LeakyReLU(cfg.negative_slope)
        self.head = FusionHead(
            width,
            cfg.decoder_channels,
            cfg.head,
            cfg.residual_scale,
            cfg.negative_slope,
            cfg.head_sigma,
        )
        # Made last, so that a seeded network draws the same weights for the other layers.
        self.gate = path_gate(width) if cfg.dps_gate else None

    def preprocess_functional(self, func: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """EEM (when on), then the enhanced luminance and chroma of the functional image.

        Args:
            func: (B, 1, H, W) grey or (B, 3, H, W) RGB on [0, 1].

        Returns:
            (Y (B, 1, H, W), CbCr (B, 2, H, W)) for RGB, (image, None) for grey; float32.
        """
        _check_image(func, "functional image", (1, 3))
        with torch.autocast(func.device.type, enabled=False):
            func = func.float()
            if self.config.use_eem:
                func = edge_enhance(func, self.config.eem_weight)
            if func.shape[1] == 1:
                return func, None
            ycc = rgb_to_ycbcr(func)
            return ycc[:, :1], ycc[:, 1:]

    def regions(self, mri: torch.Tensor, func_y: torch.Tensor) -> torch.Tensor:
        """Entropy region labels of a pair with this config's ED settings.

        Args:
            mri: (B, 1, H, W) on [0, 1].
            func_y: (B, 1, H, W) functional luminance on [0, 1].

        Returns:
            int64 (B, 1, H, W): 0 low, 1 mid, 2 high.
        """
        cfg = self.config
        return region_map(mri, func_y, cfg.entropy_levels, cfg.otsu_bins, cfg.entropy_source)

    def _run_paths(self, feats: torch.Tensor, masks: torch.Tensor | None) -> list[torch.Tensor]:
        if masks is None:
            inputs = [feats] * 3
        else:
            inputs = [feats * masks[:, k : k + 1] for k in range(3)]
        if self.config.use_dps:
            return [path(x) for path, x in zip(self.paths, inputs)]
        if masks is None:  # one shared path on identical inputs: compute once
            return [self.paths[0](feats)] * 3
        return list(self.paths[0](torch.cat(inputs, dim=0)).chunk(3, dim=0))

    def fuse_luma(
        self, mri: torch.Tensor, func_y: torch.Tensor, regions: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Fuse the MRI with the (enhanced) functional luminance.

        Args:
            mri: (B, 1, H, W) on [0, 1].
            func_y: (B, 1, H, W) on [0, 1].
            regions: precomputed labels (B, 1, H, W) to skip the entropy step (computed under
                no_grad either way), or None.

        Returns:
            ``fused`` (B, 1, H, W) float32 on [0, 1], ``features`` (B, C, H, W) (fused deep
            features before the head), ``regions`` (B, 1, H, W) int64, and ``blend_weight``
            (B, 1, H, W), the MRI's share, when the head is ``blend``; ``path_gates``
            (B, 3, H, W), the paths' weights, with ``dps_gate``.
        """
        _check_image(mri, "MRI", (1,))
        _check_image(func_y, "functional luminance", (1,))
        _check_pair(mri, func_y, "functional luminance")
        if regions is None:  # also without ED: the region map is shown to users
            regions = self.regions(mri, func_y)
        dtype = self.merge.weight.dtype  # e.g. float64 inputs to a float32 model
        feats = self.shallow(torch.cat((mri, func_y), dim=1).to(dtype))
        masks = region_masks(regions).to(feats.dtype) if self.config.use_ed else None
        outs = self._run_paths(feats, masks)
        gates = None
        if self.gate is not None:
            prior = (
                masks if masks is not None else feats.new_zeros(feats.shape[0], 3, *feats.shape[2:])
            )
            gates = torch.softmax(self.gate(torch.cat((feats, prior), dim=1)), dim=1)
            outs = [out * gates[:, k : k + 1] for k, out in enumerate(outs)]
        merged = self.act(self.merge(torch.cat(outs, dim=1)) + feats)
        fused, weight = self.head(merged, mri, func_y)
        result = {"fused": fused, "features": merged, "regions": regions}
        if gates is not None:
            result["path_gates"] = gates
        if weight is not None:
            result["blend_weight"] = weight
        return result

    def fuse(self, mri: torch.Tensor, func: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused image and the entropy regions it used.

        Args:
            mri: (B, 1, H, W) on [0, 1].
            func: (B, 1, H, W) grey or (B, 3, H, W) RGB on [0, 1], on the MRI's grid.

        Returns:
            (fused (B, C, H, W) on [0, 1] with C of ``func``, regions (B, 1, H, W) int64).

        Raises:
            InputError: for shapes, dtypes or sizes that do not fit.
        """
        _check_image(mri, "MRI", (1,))
        _check_image(func, "functional image", (1, 3))
        _check_pair(mri, func, "functional image")
        func_y, cbcr = self.preprocess_functional(func)
        out = self.fuse_luma(mri, func_y)
        fused = out["fused"]
        if cbcr is not None:
            with torch.autocast(fused.device.type, enabled=False):
                rgb = ycbcr_to_rgb(torch.cat((fused.float(), cbcr.float()), dim=1))
            fused = torch.clamp(rgb, 0.0, 1.0)
        return fused, out["regions"]

    def forward(self, mri: torch.Tensor, func: torch.Tensor) -> torch.Tensor:
        """The fused image (B, C, H, W) float32 on [0, 1] of MRI (B, 1, H, W) and func (B, C, H, W)."""
        return self.fuse(mri, func)[0]
