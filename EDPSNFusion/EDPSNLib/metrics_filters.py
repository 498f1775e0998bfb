"""Local filters and statistic maps behind the windowed fusion metrics (SSIM, VIF, Q^AB/F).

Every function takes float64 batches (..., H, W): separable 1-D correlations
(``scipy.ndimage.correlate1d`` / ``uniform_filter1d``) and numpy slicing run over the whole
batch at once, with no Python loop over slices or pixels. The public metric functions live
in :mod:`EDPSNLib.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

#: VIF window sizes of the four scales (Sheikh & Bovik vifp_mscale): N = 2**(5 - s) + 1.
VIF_WINDOWS = (17, 9, 5, 3)
#: Variance of the visual (HVS) noise, sigma_n^2, on the 0..255 scale.
VIF_SIGMA_N2 = 2.0
#: Variances below this count as zero (the reference code's eps).
VIF_EPS = 1e-10
#: Smallest image side on which all four VIF scales leave at least one pixel.
VIF_MIN_SIZE = 41
#: Side of the uniform SSIM window.
SSIM_WIN = 7
#: |s_x| this small (far below one grey level) is round-off and counts as 0 for the angle, so
#: that the convention "pi/2 where s_x = 0" does not depend on the order of summation.
SOBEL_ZERO = 1e-8
#: Xydeas & Petrovic sigmoid constants: (Gamma, kappa, sigma) for strength and for angle.
QABF_G = (0.9994, 15.0, 0.5)
QABF_A = (0.9879, 22.0, 0.8)


def gaussian_kernel_1d(n: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of length ``n``; its outer product is ``fspecial('gaussian', n, sigma)``.

    MATLAB zeroes taps below eps * max before normalising; for the VIF windows (sigma = n / 5)
    no tap is that small, so the 2-D window is exactly separable.
    """
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def _correlate_valid(x: np.ndarray, k: np.ndarray, axis: int, stride: int) -> np.ndarray:
    r = len(k) // 2
    y = ndimage.correlate1d(x, k, axis=axis, mode="constant")
    index = [slice(None)] * x.ndim
    index[axis] = slice(r, x.shape[axis] - r, stride)
    return y[tuple(index)]


def filter_valid(x: np.ndarray, k: np.ndarray, stride: int = 1) -> np.ndarray:
    """'valid' correlation of (..., H, W) with the window k (x) k, kept every ``stride`` pixels."""
    return _correlate_valid(_correlate_valid(x, k, -1, stride), k, -2, stride)


def box_valid(x: np.ndarray, n: int) -> np.ndarray:
    """'valid' n x n mean of (..., H, W) with running sums (scipy.ndimage.uniform_filter1d)."""
    r = n // 2
    y = ndimage.uniform_filter1d(x, n, axis=-1, mode="constant")[..., r : x.shape[-1] - r]
    return ndimage.uniform_filter1d(y, n, axis=-2, mode="constant")[..., r : x.shape[-2] - r, :]


def group_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of ``values`` with the given lengths (0 for an empty run).

    Boolean indexing keeps C order, so ``x[sel]`` holds each slice's pixels as one run.
    """
    counts = np.ravel(counts)
    starts = np.cumsum(counts) - counts
    padded = np.append(values, 0.0)  # a run starting at the end sums to this 0
    return np.where(counts > 0, np.add.reduceat(padded, starts), 0.0)


def crop_valid(mask: np.ndarray, n: int, stride: int = 1) -> np.ndarray:
    """The mask at the centre pixels of the 'valid' outputs of an n x n window (see filter_valid)."""
    r = n // 2
    return mask[..., r : mask.shape[-2] - r : stride, r : mask.shape[-1] - r : stride]


def local_moments(
    refs: np.ndarray, dist: np.ndarray, smooth: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windowed mean_r, mean_d, var_r, var_d, cov_rd of refs (R, N, H, W) against dist (N, H, W).

    ``smooth`` is a normalised 'valid' window filter; moments are E[xy] - E[x]E[y]. The
    distorted image's moments are computed once and shared by all references.
    """
    nr = len(refs)
    stack = np.empty((3 * nr + 2, *dist.shape))
    stack[:nr], stack[nr] = refs, dist
    np.multiply(refs, refs, out=stack[nr + 1 : 2 * nr + 1])
    np.multiply(dist, dist, out=stack[2 * nr + 1])
    np.multiply(refs, dist, out=stack[2 * nr + 2 :])
    s = smooth(stack)
    mu_r, mu_d = s[:nr], s[nr]
    var_r, var_d, cov = s[nr + 1 : 2 * nr + 1], s[2 * nr + 1], s[2 * nr + 2 :]
    var_r -= mu_r * mu_r  # in place: s is a fresh array
    var_d -= mu_d * mu_d
    cov -= mu_r * mu_d
    return mu_r, mu_d, var_r, var_d, cov


def ssim_maps(
    refs: np.ndarray, dist: np.ndarray, data_range: float, sample_covariance: bool
) -> np.ndarray:
    """SSIM maps (R, N, H-6, W-6) of refs (R, N, H, W) against dist, uniform 7x7 window.

    Constants C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = data_range; with ``sample_covariance``
    the (co)variances are scaled by 49/48 as scikit-image does by default.
    """
    mu_r, mu_d, var_r, var_d, cov = local_moments(refs, dist, lambda x: box_valid(x, SSIM_WIN))
    norm = SSIM_WIN**2 / (SSIM_WIN**2 - 1.0) if sample_covariance else 1.0
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2.0 * mu_r * mu_d + c1) * (2.0 * norm * cov + c2)
    den = (mu_r * mu_r + mu_d * mu_d + c1) * (norm * (var_r + var_d) + c2)
    return num / den


def vif_sums(
    refs: np.ndarray, dist: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """VIFp numerator and denominator (R, N), summed over the 4 scales inside the mask.

    Also returns, per slice, how many pixels were summed (N,) and whether ``dist`` has any
    local variance there (N,), for the degenerate cases. The mask follows the image: at each
    scale it is restricted to the centres of the 'valid' windows and subsampled by 2.
    """
    nr, n = refs.shape[:2]
    num, den = np.zeros((nr, n)), np.zeros((nr, n))
    count, dist_active = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    eps = VIF_EPS
    for scale, size in enumerate(VIF_WINDOWS):
        k = gaussian_kernel_1d(size, size / 5.0)
        if scale > 0:
            both = filter_valid(np.concatenate([refs, dist[None]]), k, stride=2)
            refs, dist = both[:nr], both[nr]
            mask = crop_valid(mask, size, stride=2)
        _, _, s1, s2, s12 = local_moments(refs, dist, lambda x: filter_valid(x, k))  # noqa: B023
        m = crop_valid(mask, size)
        s1, s2 = np.maximum(s1, 0.0), np.maximum(s2, 0.0)
        # Sheikh & Bovik set g = 0 and sigma1^2 = 0 where sigma1^2 < eps, and g = 0 where
        # sigma2^2 < eps or g < 0: both log terms vanish there, so only the remaining pixels
        # are gathered (C order keeps each slice's pixels together for group_sums).
        ref_var = (s1 >= eps) & m
        den += group_sums(
            np.log10(1.0 + s1[ref_var] / VIF_SIGMA_N2), ref_var.sum(axis=(-2, -1))
        ).reshape(nr, n)
        dist_var = s2 >= eps
        gain = ref_var & dist_var & (s12 > 0)
        v1, v2, v12 = s1[gain], np.broadcast_to(s2, s1.shape)[gain], s12[gain]
        g = v12 / (v1 + eps)
        sv = np.maximum(v2 - g * v12, eps)
        num += group_sums(
            np.log10(1.0 + g * g * v1 / (sv + VIF_SIGMA_N2)), gain.sum(axis=(-2, -1))
        ).reshape(nr, n)
        count += m.sum(axis=(-2, -1))
        dist_active |= np.any(dist_var & m, axis=(-2, -1))
    return num, den, count, dist_active


def sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel responses (s_x, s_y) of (..., H, W) with zero padding (correlation, s_x along W)."""
    p = np.zeros((*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2))
    p[..., 1:-1, 1:-1] = x
    dx = p[..., :, 2:] - p[..., :, :-2]  # [-1, 0, 1] along W, then [1, 2, 1] along H
    sx = dx[..., :-2, :] + dx[..., 2:, :]
    sx += 2.0 * dx[..., 1:-1, :]
    sm = p[..., :, :-2] + p[..., :, 2:]  # [1, 2, 1] along W, then [-1, 0, 1] along H
    sm += 2.0 * p[..., :, 1:-1]
    return sx, sm[..., 2:, :] - sm[..., :-2, :]


def qabf_sums(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q^AB/F numerator and denominator (N,) of x = stack(A, B, F) (3, N, H, W) inside the mask.

    Also returns whether F has any edge inside the mask (N,), for the degenerate case.
    """
    sx, sy = sobel(x)
    g = np.sqrt(sx * sx + sy * sy)
    zero = np.abs(sx) <= SOBEL_ZERO
    angle = np.arctan(np.divide(sy, sx, out=np.zeros_like(sy), where=~zero))
    angle[zero] = np.pi / 2
    weight = g[:2] * mask
    q = edge_preservation(g[:2], angle[:2], g[2], angle[2])
    num = np.einsum("rnhw,rnhw->n", q, weight)
    den = np.einsum("rnhw->n", weight)
    return num, den, np.any((g[2] > SOBEL_ZERO) & mask, axis=(-2, -1))


def edge_preservation(
    g_src: np.ndarray, a_src: np.ndarray, g_fused: np.ndarray, a_fused: np.ndarray
) -> np.ndarray:
    """Xydeas-Petrovic Q^{SF}: sigmoid(strength ratio <= 1) * sigmoid(angle agreement).

    The strength ratio is min/max of the two strengths, 1 where both are 0 (such pixels
    carry no weight in Q^AB/F); the angle agreement is 1 - |a_S - a_F| / (pi / 2).
    Written in place: Q = Gamma_g Gamma_a / ((1 + e^{-kg (G - Dg)}) (1 + e^{-ka (A - Da)})).
    """
    (tg, kg, dg), (ta, ka, da) = QABF_G, QABF_A
    hi = np.maximum(g_src, g_fused)
    strength = np.divide(np.minimum(g_src, g_fused), hi, out=np.ones_like(hi), where=hi > 0)
    strength -= dg
    strength *= -kg
    np.exp(strength, out=strength)
    strength += 1.0
    agreement = a_src - a_fused
    np.abs(agreement, out=agreement)
    agreement *= ka / (np.pi / 2)  # -ka * (A - Da) with A = 1 - |d| / (pi / 2)
    agreement -= ka * (1.0 - da)
    np.exp(agreement, out=agreement)
    agreement += 1.0
    strength *= agreement
    return np.divide(tg * ta, strength, out=strength)
