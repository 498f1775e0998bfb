"""The unsupervised fusion loss: intensity MSE + Sobel gradient loss + perceptual feature loss.

Fusion has no ground truth, so every term compares the fused luminance ``F`` with the two
sources ``A`` (MRI) and ``B`` (functional luminance, before edge enhancement):

* ``max_intensity``: MSE(F, max(A, B)). Keeps the brighter of the two sources at every pixel,
  so PET/SPECT hot spots and bright MRI tissue both survive; the max rule leads the classical
  baselines on SD, SCD, Q^AB/F and VIF. With ``detail_gain`` k > 0 the target becomes
  max(A, B) + k * highpass(min(A, B)) (:func:`detail_target`): the darker source's fine
  structure, which the max rule drops, laid over the brighter one, so MRI anatomy shows through
  uptake and bone edges through bright MRI (``detail_same_sign`` keeps only the detail whose
  sign agrees with the brighter source's, for CT, where skull edges of the two run opposite).
* ``mean_intensity``: MSE(F, (A + B) / 2). A weaker pull towards both sources at once: the
  darker source's detail is not dropped where the other is brighter, and F stays close to
  each source (the max rule alone loses 3 dB PSNR and 0.3 bits EN against the mean).
* ``gradient``: L1(|grad F|, max(|grad A|, |grad B|)) with Sobel magnitudes: the stronger edge
  of either source at every pixel (what Q^AB/F measures).
* ``perceptual``: relative MSE between the features of F and the element-wise max of the
  features of A and B in a frozen extractor (:mod:`EDPSNLib.training.perceptual`): structure at
  several scales, compared in feature space. The network's own fused features (``fuse_luma``'s
  "features") get no direct term: unsupervised fusion has no target for them.
* ``uptake``: where the functional image carries uptake (B > A + ``uptake_margin``), the mean
  over all pixels of max(B - F, 0)^2 (zero elsewhere). One-sided: it only pulls F up to the
  brighter functional source, the failure a radiologist reads as missing uptake (issue 10;
  the uptake-loss figure of :mod:`EDPSNLib.metrics.uptake` is its L1, per uptake pixel).
  Normalised by all pixels, not by the uptake pixels, so the data-parallel mean over
  processes equals the single-process value. Off by default (weight 0): its weight is
  chosen on a case fold's validation case only (docs/protocol.md).
* ``ssim``: 1 - (SSIM(F, A) + SSIM(F, B)) / 2 with the metric's own window (uniform 7x7,
  sample covariance, C1 = 0.01^2, C2 = 0.03^2 on [0, 1]): the SSIM figure itself, which the
  MRI-PET networks lose to the pixel maximum by hundredths on some shifts. Off by default.
* ``contrast``: per image, max(SD(max(A, B)) - SD(F), 0): F at least as contrasted as the
  pixel maximum, on the SD figure the MRI-PET networks lose to it on intensity-shifted MRIs.
  One-sided and global (one number per image): it does not say where the contrast should
  be. Off by default: it turns SD losses into PSNR losses (docs/protocol.md, "MRI-PET: longer
  training and a contrast term").
* ``qabf``: 1 - Q^AB/F (Xydeas-Petrovic edge preservation, the metric's sigmoid constants, 3x3
  Sobel with zero padding) computed differentiably: the metric the pixel maximum wins against
  every network. Off by default: on MRI-PET it raised Q^AB/F by 0.01, not past the maximum, and
  cost PSNR (docs/protocol.md, "MRI-PET: a Q^AB/F loss term").

Weights (:class:`LossConfig`). The intensity pair sets where F sits between the mean and the
max of the sources: w_max : w_mean = 4 : 1 puts the optimum at 0.8 max + 0.2 mean. On the
49 MRI-PET validation pairs that fixed blend beats the mean, PCA, DWT and Laplacian baselines
on SD, SCD, Q^AB/F, VIF and SSIM, and the max rule on EN, PSNR and SSIM (EN 5.03 vs 4.79,
PSNR 13.4 vs 12.6 dB), while staying within 0.04 of max on SCD, 0.011 on Q^AB/F and 0.03 on
VIF (``python benchmarks/bench_loss_targets.py MRI-PET --split val --shifts none``; a source
split, so only the first figures). The detail target ``max + 0.6 highpass(min)`` beats the max
rule on five of the seven on every contrast shift of the MRI-PET and MRI-SPECT fold-0 validation
cases (same command, default split; docs/protocol.md). The structure terms add the
sharpness a per-pixel blend lacks. Their weights make each a comparable share of the total on
Harvard crops: w_gradient = 1 (the Sobel L1 is 0.01-0.05 between candidate fusions, like the
intensity MSEs) and w_perceptual = 0.05 (the relative feature error is 0.1-0.8, for VGG-16
and the fallback alike).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from EDPSNLib.errors import InputError
from EDPSNLib.metrics.maps import QABF_A, QABF_G
from EDPSNLib.network.color import rgb_to_ycbcr
from EDPSNLib.network.filters import split_detail
from EDPSNLib.training.perceptual import FeatureExtractor

#: The loss terms, in the order they are logged.
LOSS_TERMS = (
    "max_intensity",
    "mean_intensity",
    "gradient",
    "perceptual",
    "uptake",
    "ssim",
    "contrast",
    "qabf",
)


@dataclass
class LossConfig:
    """Weights of the fusion loss terms (see the module docstring for why each exists)."""

    w_max_intensity: float = 1.0
    w_mean_intensity: float = 0.25
    w_gradient: float = 1.0
    w_perceptual: float = 0.05
    w_uptake: float = 0.0
    w_ssim: float = 0.0
    w_contrast: float = 0.0
    w_qabf: float = 0.0
    uptake_margin: float = 10.0 / 255.0  # B must exceed A by this (10 grey levels) to count
    detail_gain: float = 0.0  # k of the max target's detail (see detail_target); 0: plain max
    detail_sigma: float = 2.0  # Gaussian sigma (pixels) splitting detail from the local mean
    detail_same_sign: bool = False  # add only detail whose sign agrees with the brighter source's
    eps: float = 1e-6  # inside the Sobel magnitude's square root: finite gradient at flat pixels

    def __post_init__(self) -> None:
        bad = [f.name for f in dataclasses.fields(self) if float(getattr(self, f.name)) < 0]
        if bad:
            raise InputError(f"Loss weights must be >= 0; negative: {', '.join(bad)}.")
        if self.detail_sigma <= 0:
            raise InputError(f"detail_sigma must be > 0 pixels, got {self.detail_sigma}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`InputError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Unknown loss setting(s) {unknown}; known: {sorted(known)}.")
        return cls(**data)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey as is, (B, 3, H, W) RGB to its BT.601 luma (B, 1, H, W)."""
    return image if image.shape[1] == 1 else rgb_to_ycbcr(image)[:, :1]


def _check_grey(*images: torch.Tensor) -> None:
    shape = images[0].shape
    for img in images:
        if img.dim() != 4 or img.shape[1] != 1 or img.shape != shape:
            raise ValueError(
                f"Expected grey batches (B, 1, H, W) of one shape, got {[tuple(i.shape) for i in images]}"
            )


def sobel_gradients(
    image: torch.Tensor, padding: str = "replicate"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (gx, gy) of (B, C, H, W), normalised by 8, same shape; ``padding`` is
    F.pad's mode ("replicate", or "constant" for the zeros of the Q^AB/F metric)."""
    kx = image.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    kernel = torch.stack((kx, kx.t())).unsqueeze(1)  # (2, 1, 3, 3): x then y
    b, c, h, w = image.shape
    padded = F.pad(image.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode=padding)
    grads = F.conv2d(padded, kernel).reshape(b, c, 2, h, w)
    return grads[:, :, 0], grads[:, :, 1]


def sobel_magnitude(image: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Sobel gradient magnitude sqrt(gx^2 + gy^2 + eps) of (B, C, H, W), same shape."""
    gx, gy = sobel_gradients(image)
    return torch.sqrt(gx * gx + gy * gy + eps)


def detail_target(
    a: torch.Tensor, b: torch.Tensor, gain: float, sigma: float = 2.0, same_sign: bool = False
) -> torch.Tensor:
    """max(A, B) + gain * (m - blur(m)) with m = min(A, B): the brighter source plus the darker one's detail.

    Example:
        >>> a, b = torch.zeros(1, 1, 9, 9), torch.ones(1, 1, 9, 9)
        >>> a[..., 4, 4] = 0.5  # a dot of MRI detail under uniform uptake
        >>> t = detail_target(a, b, 1.0)  # the dot shows through; far from it the max is kept
        >>> round(t[0, 0, 4, 4].item(), 2), round(t[0, 0, 0, 0].item(), 2)
        (1.48, 1.0)
    """
    brighter, darker = torch.maximum(a, b), torch.minimum(a, b)
    detail = split_detail(darker, sigma)[1]
    if same_sign:
        detail = detail * (detail * split_detail(brighter, sigma)[1] >= 0)
    return brighter + gain * detail


def max_intensity_loss(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    detail_gain: float = 0.0,
    detail_sigma: float = 2.0,
    detail_same_sign: bool = False,
) -> torch.Tensor:
    """MSE between the fused image and max(A, B), plus the darker source's detail when gain > 0."""
    _check_grey(fused, a, b)
    if detail_gain == 0:
        return F.mse_loss(fused, torch.maximum(a, b))
    with torch.no_grad():
        target = detail_target(a, b, detail_gain, detail_sigma, detail_same_sign)
    return F.mse_loss(fused, target)


def mean_intensity_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE between the fused image and the mean of the sources."""
    _check_grey(fused, a, b)
    return F.mse_loss(fused, 0.5 * (a + b))


def gradient_loss(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """L1 between |grad F| and max(|grad A|, |grad B|) (Sobel magnitudes)."""
    _check_grey(fused, a, b)
    target = torch.maximum(sobel_magnitude(a, eps), sobel_magnitude(b, eps))
    return F.l1_loss(sobel_magnitude(fused, eps), target)


def perceptual_loss(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    extractor: FeatureExtractor,
    reduce_energy: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean over extractor stages of MSE(phi(F), T) / mean(T^2), T = max(phi(A), phi(B)).

    Dividing by the target's energy makes the term scale-free, so one weight serves VGG-16
    and the random-conv fallback, whose activations differ in size by orders of magnitude.
    ``reduce_energy`` maps the per-stage energies of this batch to those of the global batch
    (data-parallel training averages them over the processes).
    """
    _check_grey(fused, a, b)
    with torch.no_grad():  # the targets and their energies are constants: no graph
        targets = [torch.maximum(fa, fb) for fa, fb in zip(extractor(a), extractor(b))]
        energy = torch.stack([t.square().mean() for t in targets])
        if reduce_energy is not None:
            energy = reduce_energy(energy)
    feats = extractor(fused)
    terms = [F.mse_loss(f, t) / (e + 1e-12) for f, t, e in zip(feats, targets, energy)]
    return torch.stack(terms).mean()


def uptake_loss(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, margin: float = 10.0 / 255.0
) -> torch.Tensor:
    """Mean over all pixels of max(B - F, 0)^2 where B > A + margin, 0 elsewhere.

    Example:
        >>> a, b = torch.zeros(1, 1, 1, 2), torch.tensor([[[[0.5, 0.02]]]])
        >>> round(uptake_loss(a, a, b).item(), 4)  # F = A: only the first pixel counts
        0.125
    """
    _check_grey(fused, a, b)
    uptake = (b - a > margin).to(fused.dtype)
    return (uptake * torch.relu(b - fused).square()).mean()


def contrast_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of max(SD(max(A, B)) - SD(F), 0), SD per image: F no flatter than the max.

    Example:
        >>> a, b = torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
        >>> contrast_loss(b, a, b).item(), contrast_loss(0.5 * b, a, b).item()
        (0.0, 0.25)
    """
    _check_grey(fused, a, b)
    sd_max = torch.maximum(a, b).flatten(1).std(dim=1, correction=0)
    return torch.relu(sd_max - fused.flatten(1).std(dim=1, correction=0)).mean()


def _edge_strength_and_angle(image: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(strength, orientation) of (B, 1, H, W) as Q^AB/F takes them: Sobel with zero padding,
    angle atan(gy / gx)."""
    gx, gy = sobel_gradients(image, padding="constant")
    # the metric's angle is pi/2 where gx = 0; a tiny gx gives it and a finite gradient
    safe_gx = torch.where(gx.abs() < eps, torch.full_like(gx, eps), gx)
    return torch.sqrt(gx * gx + gy * gy + eps * eps), torch.atan(gy / safe_gx)


def qabf_loss(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """1 - Q^AB/F per image, averaged over the batch: the edge strength and orientation of A and B
    kept in F, weighted by the sources' edge strength (differentiable).

    Example:
        >>> a = torch.zeros(1, 1, 8, 8); a[..., 4:] = 1.0
        >>> round(qabf_loss(a, a, a).item(), 3)  # F = A = B: every edge kept, Q at its ceiling
        0.025
    """
    _check_grey(fused, a, b)
    (gs, kg, dg), (ga, ka, da) = QABF_G, QABF_A  # the metric's sigmoid constants
    g_f, ang_f = _edge_strength_and_angle(fused, eps)
    num, den = 0.0, 0.0
    for source in (a, b):
        g_s, ang_s = _edge_strength_and_angle(source, eps)
        ratio = torch.minimum(g_s, g_f) / torch.maximum(g_s, g_f)
        agreement = 1.0 - (ang_s - ang_f).abs() / (torch.pi / 2)
        q = gs * torch.sigmoid(kg * (ratio - dg)) * ga * torch.sigmoid(ka * (agreement - da))
        num = num + (q * g_s).flatten(1).sum(1)
        den = den + g_s.flatten(1).sum(1)
    return (1.0 - num / den).mean()


#: The SSIM metric's window side (EDPSNLib.metrics.local: uniform 7x7, scikit-image's default).
SSIM_WINDOW = 7


def ssim_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - (SSIM(F, A) + SSIM(F, B)) / 2 over 'valid' 7x7 windows, images in [0, 1].

    Example:
        >>> a = torch.rand(1, 1, 16, 16)
        >>> round(ssim_loss(a, a, a).item(), 6)
        0.0
    """
    _check_grey(fused, a, b)
    n = SSIM_WINDOW
    c1, c2, norm = 0.01**2, 0.03**2, n * n / (n * n - 1.0)
    stack = torch.cat((fused, a, b), dim=1)  # (B, 3, H, W): one pooling pass for all moments
    prods = torch.cat((stack * stack, fused * a, fused * b), dim=1)
    mu = F.avg_pool2d(stack, n, stride=1)
    m2 = F.avg_pool2d(prods, n, stride=1)
    mu_f, mu_r = mu[:, :1], mu[:, 1:]  # r: the two references A and B
    var_f = norm * (m2[:, :1] - mu_f.square())
    var_r = norm * (m2[:, 1:3] - mu_r.square())
    cov = norm * (m2[:, 3:] - mu_f * mu_r)
    num = (2 * mu_f * mu_r + c1) * (2 * cov + c2)
    den = (mu_f.square() + mu_r.square() + c1) * (var_f + var_r + c2)
    return 1.0 - (num / den).mean()


class FusionLoss(nn.Module):
    """Weighted sum of the terms: ``forward(F, A, B) -> (total, {term: value})``."""

    def __init__(
        self,
        config: LossConfig | None = None,
        extractor: FeatureExtractor | None = None,
        reduce_energy: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        self.config = config or LossConfig()
        self.reduce_energy = reduce_energy  # see perceptual_loss (data-parallel training)
        if extractor is None and self.config.w_perceptual > 0:
            from EDPSNLib.training.perceptual import random_conv_extractor

            extractor = random_conv_extractor()
        self.extractor = extractor

    def forward(
        self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """F, A, B (B, 1, H, W) -> (weighted total, {term: unweighted value}), 0-dim tensors."""
        cfg = self.config
        terms = {
            "max_intensity": max_intensity_loss(
                fused, a, b, cfg.detail_gain, cfg.detail_sigma, cfg.detail_same_sign
            ),
            "mean_intensity": mean_intensity_loss(fused, a, b),
            "gradient": gradient_loss(fused, a, b, cfg.eps),
            "uptake": uptake_loss(fused, a, b, cfg.uptake_margin),
            "ssim": ssim_loss(fused, a, b) if cfg.w_ssim > 0 else fused.new_zeros(()),
            "contrast": contrast_loss(fused, a, b),
            "qabf": qabf_loss(fused, a, b) if cfg.w_qabf > 0 else fused.new_zeros(()),
        }
        if self.extractor is not None and cfg.w_perceptual > 0:
            terms["perceptual"] = perceptual_loss(fused, a, b, self.extractor, self.reduce_energy)
        else:
            terms["perceptual"] = fused.new_zeros(())
        total = sum(getattr(cfg, f"w_{k}") * terms[k] for k in LOSS_TERMS)  # weight w_<term>
        return total, terms
