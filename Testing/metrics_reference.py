"""A plain per-image implementation of the seven fusion metrics, written from the spec.

It follows the definitions of docs/metrics.md literally, one grey float64 image at a time
(scipy.signal 2-D correlations with the full windows, scikit-image SSIM and MSE,
scipy.stats.entropy), with none of EDPSNLib's tricks (separable or banded filters, shared
maps, grouped logarithms, chunks, threads). The metric tests compare EDPSNLib.metrics with
it, and benchmarks/bench_metrics.py times it as the baseline (importing it from here).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import convolve2d, correlate2d
from scipy.stats import entropy as scipy_entropy
from skimage.metrics import mean_squared_error, structural_similarity


def _in(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.ones(shape, dtype=bool) if mask is None else mask


def ref_en(f: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Entropy of the 256-bin histogram of round(F), with scipy.stats.entropy."""
    levels = np.clip(np.round(f), 0, 255).astype(np.int64)[_in(mask, f.shape)]
    return float(scipy_entropy(np.bincount(levels, minlength=256), base=2)) if levels.size else 0.0


def ref_sd(f: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.std(f[_in(mask, f.shape)]))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.var(x) <= 1e-20 or np.var(y) <= 1e-20:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def ref_scd(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None = None) -> float:
    m = _in(mask, f.shape)
    return _pearson((f - b)[m], a[m]) + _pearson((f - a)[m], b[m])


def _sobel(img: np.ndarray, flipped_x: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and angle; MATLAB's orientation (filter2: s_x = right - left, s_y =
    bottom - top), or s_x = left - right with ``flipped_x`` (the CDDFuse evaluator)."""
    kx = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    sx = correlate2d(img, -kx if flipped_x else kx, mode="same")  # zero padding
    sy = correlate2d(img, kx.T, mode="same")
    angle = np.full(img.shape, math.pi / 2)
    nz = np.abs(sx) > 1e-8  # |s_x| <= 1e-8 is round-off: angle pi/2 (docs/metrics.md)
    angle[nz] = np.arctan(sy[nz] / sx[nz])
    return np.sqrt(sx**2 + sy**2), angle


def _edge_q(
    g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray, slip: bool = False
) -> np.ndarray:
    """Q^SF; with ``slip`` the strength ratio is g_F where g_S == g_F (the CDDFuse evaluator)."""
    ratio = g_f.copy() if slip else np.ones_like(g_s)
    lt, gt = g_s < g_f, g_s > g_f
    ratio[lt] = g_s[lt] / g_f[lt]
    ratio[gt] = g_f[gt] / g_s[gt]
    agree = 1 - np.abs(a_s - a_f) / (math.pi / 2)
    return 0.9994 / (1 + np.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + np.exp(-22 * (agree - 0.8)))


def ref_qabf(
    a: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    mask: np.ndarray | None = None,
    equal_strength_slip: bool = False,
    flipped_sobel_x: bool = False,
) -> float:
    """Q^AB/F of Xydeas & Petrovic; the two flags reproduce the CDDFuse evaluator's code."""
    m = _in(mask, f.shape)
    (ga, aa), (gb, ab), (gf, af) = (_sobel(x, flipped_sobel_x) for x in (a, b, f))
    qa = _edge_q(ga, aa, gf, af, equal_strength_slip)
    qb = _edge_q(gb, ab, gf, af, equal_strength_slip)
    num = np.sum((qa * ga + qb * gb)[m])
    return float(num / np.sum((ga + gb)[m]))


def _fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    r = (n - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def ref_vifp(ref: np.ndarray, dist: np.ndarray, mask: np.ndarray | None = None) -> float:
    """vifp_mscale of Sheikh & Bovik, one image, with the mask cropped like the 'valid' outputs."""
    m, eps, sn2, num, den = _in(mask, ref.shape), 1e-10, 2.0, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win, r = _fspecial_gaussian(n, n / 5), n // 2
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
            m = m[r:-r, r:-r][::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        mc = m[r:-r, r:-r]
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sn2))[mc])
        den += np.sum(np.log10(1 + s1 / sn2)[mc])
    return float(num / den)


def ref_psnr(
    a: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    mask: np.ndarray | None = None,
    peak: float | None = 255.0,
) -> float:
    """PSNR of the mean of the two MSEs; ``peak=None``: the maximum of F in the mask."""
    m = _in(mask, f.shape)
    if mask is None:
        mse = (mean_squared_error(a, f) + mean_squared_error(b, f)) / 2
    else:
        mse = (np.mean((a - f)[m] ** 2) + np.mean((b - f)[m] ** 2)) / 2
    top = float(np.max(f[m])) if peak is None else peak
    return float(10 * np.log10(top**2 / mse))


def ref_ssim_index(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None, data_range: float = 255.0
) -> float:
    """skimage SSIM (uniform 7x7, sample covariance); with a mask, the masked mean of its map."""
    if mask is None:
        return float(structural_similarity(x, y, win_size=7, data_range=data_range))
    _, smap = structural_similarity(x, y, win_size=7, data_range=data_range, full=True)
    return float(np.mean(smap[3:-3, 3:-3][mask[3:-3, 3:-3]]))


def reference_metrics(
    a: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    mask: np.ndarray | None = None,
    evaluator: bool = False,
) -> dict[str, float]:
    """The seven metrics of one grey/luma float64 triple (H, W), straightforwardly.

    ``evaluator``: the CDDFuse evaluator's conventions (PSNR peak = max F, its two Q^AB/F
    slips); the rounding of its reader is up to the caller.
    """
    return {
        "EN": ref_en(f, mask),
        "SD": ref_sd(f, mask),
        "SCD": ref_scd(a, b, f, mask),
        "Qabf": ref_qabf(a, b, f, mask, evaluator, evaluator),
        "VIF": ref_vifp(a, f, mask) + ref_vifp(b, f, mask),
        "PSNR": ref_psnr(a, b, f, mask, None if evaluator else 255.0),
        "SSIM": ref_ssim_index(a, f, mask) + ref_ssim_index(b, f, mask),
    }
