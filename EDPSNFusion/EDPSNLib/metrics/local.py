"""SSIM and VIF: fusion metrics built on local (windowed) means, variances and covariances.

As in :mod:`EDPSNLib.metrics.maps`, ``*_maps`` computes the per-pixel maps once per batch chunk
and ``*_reduce`` sums them over a mask (or the whole image with ``mask=None``). Both metrics
compare F with each source: ``lin`` stacks the sources and F (R + 1, N, H, W), the local moments
of F are computed once and shared, all images are filtered in one stacked call, and SSIM and
VIF share the product images (x y, x^2). Maps live in the :class:`Workspace` until the next
chunk replaces them.
"""

from __future__ import annotations

import numpy as np

from EDPSNLib.metrics.filters import (
    Workspace,
    box_sum_valid,
    crop_valid,
    filter_valid,
    gaussian_kernel_1d,
)
from EDPSNLib.metrics.maps import Mask, masked_sum, pixel_count

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
#: VIF terms multiplied together before one logarithm (see :func:`log_sums`): a power of 2.
LOG_GROUP = 32
#: Pixels per image in one band of rows of the SSIM computation: its dozen temporaries then
#: stay in the core's L2 cache.
SSIM_BAND_PIXELS = 32768


def moment_products(lin: np.ndarray, ws: Workspace) -> np.ndarray:
    """The product images behind the local moments: refs * dist, refs^2, dist^2.

    Args:
        lin: refs and dist stacked (R + 1, N, H, W).
        ws: workspace for the output.

    Returns:
        (2R + 1, N, H, W); their local means and those of ``lin`` give the local moments.

    Example:
        >>> moment_products(np.array([2.0, 3.0]).reshape(2, 1, 1, 1), Workspace()).ravel().tolist()
        [6.0, 4.0, 9.0]
    """
    nr = len(lin) - 1
    refs, dist = lin[:nr], lin[nr]
    prods = ws.get("products", (2 * nr + 1, *dist.shape))
    np.multiply(refs, dist, out=prods[:nr])
    np.multiply(refs, refs, out=prods[nr : 2 * nr])
    np.multiply(dist, dist, out=prods[2 * nr])
    return prods


# ---------------------------------------------------------------------------------------- SSIM
def _ssim_band(
    lin: np.ndarray, prods: np.ndarray, consts: tuple[float, float, float], ws: Workspace
) -> np.ndarray:
    """Sum over refs of the SSIM map of one band of rows of lin and :func:`moment_products`
    (with the 6 rows below the band).

    Works on window sums S (not means): A1 A2 / (B1 B2) is unchanged when each factor is
    scaled by 49^2, e.g. 49^2 (2 mu_x mu_y + C1) = 2 S_x S_y + 49^2 C1.
    """
    c1, c2, norm = consts
    n2, nr = float(SSIM_WIN**2), len(lin) - 1
    shape = (*lin.shape[1:-2], lin.shape[-2] - SSIM_WIN + 1, lin.shape[-1] - SSIM_WIN + 1)
    s = box_sum_valid(lin, SSIM_WIN, ws.get("ssim_lin", (nr + 1, *shape)), ws)
    s_r, s_d = s[:nr], s[nr]
    s_rd = box_sum_valid(prods[:nr], SSIM_WIN, ws.get("ssim_rd", (nr, *shape)), ws)
    sq_in = np.add(prods[nr : 2 * nr], prods[2 * nr], out=ws.get("ssim_sq_in", prods[:nr].shape))
    s_sq = box_sum_valid(sq_in, SSIM_WIN, ws.get("ssim_sq", (nr, *shape)), ws)
    prod = np.multiply(s_r, s_d, out=ws.get("ssim_prod", (nr, *shape)))
    sq = np.multiply(s_r, s_r, out=ws.get("ssim_sq2", (nr, *shape)))
    sq += np.multiply(s_d, s_d, out=ws.get("ssim_d2", shape))
    s_rd *= n2
    s_rd -= prod
    s_rd *= 2.0 * norm
    s_rd += n2 * n2 * c2  # A2: 2 cov + C2
    s_sq *= n2
    s_sq -= sq
    s_sq *= norm
    s_sq += n2 * n2 * c2  # B2: var_x + var_y + C2
    prod *= 2.0
    prod += n2 * n2 * c1  # A1
    sq += n2 * n2 * c1  # B1
    prod *= s_rd
    sq *= s_sq
    prod /= sq
    return prod.sum(axis=0, out=ws.get("ssim_band", shape)) if nr > 1 else prod[0]


def ssim_maps(
    lin: np.ndarray, data_range: float, sample_covariance: bool, prods: np.ndarray, ws: Workspace
) -> np.ndarray:
    """Sum over refs of the SSIM maps against dist, uniform 7x7 window, 'valid' centres.

    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = data_range; with ``sample_covariance`` the
    (co)variances are scaled by 49/48 as scikit-image does by default.

    Args:
        lin: refs and dist stacked (R + 1, N, H, W).
        data_range: L.
        sample_covariance: the 49/48 normalisation.
        prods: :func:`moment_products` of ``lin``.
        ws: workspace for the outputs.

    Returns:
        (N, H - 6, W - 6).
    """
    n, h, w = lin.shape[1:]
    norm = SSIM_WIN**2 / (SSIM_WIN**2 - 1.0) if sample_covariance else 1.0
    consts = ((0.01 * data_range) ** 2, (0.03 * data_range) ** 2, norm)
    out = ws.get("ssim_map", (n, h - SSIM_WIN + 1, w - SSIM_WIN + 1))
    step = max(1, SSIM_BAND_PIXELS // (n * w))
    for r0 in range(0, out.shape[-2], step):
        r1 = min(r0 + step, out.shape[-2])
        band = slice(r0, r1 + SSIM_WIN - 1)
        out[:, r0:r1] = _ssim_band(lin[:, :, band], prods[:, :, band], consts, ws)
    return out


def ssim_reduce(smap: np.ndarray, mask: Mask) -> np.ndarray:
    """Mean of an SSIM map over the window centres inside a mask.

    Args:
        smap: :func:`ssim_maps` output (N, H - 6, W - 6).
        mask: bool (N, H, W), or None.

    Returns:
        (N,), 0 where no centre is inside.
    """
    centres = None if mask is None else crop_valid(mask, SSIM_WIN)
    count = pixel_count(centres, smap.shape)
    return np.where(count > 0, masked_sum(smap, centres) / np.maximum(count, 1), 0.0)


# ----------------------------------------------------------------------------------------- VIF
def _vif_terms(
    s_lin: np.ndarray, s_prod: np.ndarray, terms: np.ndarray, dist_var: np.ndarray, ws: Workspace
) -> None:
    """VIF log arguments from the local means of lin (R + 1, N, h, w) and of its products
    (2R + 1, N, h, w) (both overwritten).

    terms[0] = 1 + g^2 s1 / (sv + sn2), terms[1] = 1 + s1 / sn2 (exactly 1 where a pixel does
    not count); dist_var = s2 >= eps. Sheikh & Bovik set g = 0 and s1 = 0 where s1 < eps, and
    g = 0 where s2 < eps or g < 0, with sv = s2 - g s12 >= eps: zeroing s1 and s12 does it all.
    """
    eps, sn2, nr = VIF_EPS, VIF_SIGMA_N2, len(s_lin) - 1
    mu_r, mu_d = s_lin[:nr], s_lin[nr]
    e_rd, e_rr, e_dd = s_prod[:nr], s_prod[nr : 2 * nr], s_prod[2 * nr]
    tmp = np.multiply(mu_r, mu_r, out=ws.get("vif_tmp", mu_r.shape))
    s1 = np.subtract(e_rr, tmp, out=e_rr)
    np.multiply(mu_r, mu_d, out=tmp)
    s12 = np.subtract(e_rd, tmp, out=e_rd)
    s2 = np.subtract(e_dd, np.multiply(mu_d, mu_d, out=tmp[0]), out=e_dd)
    s1 *= np.greater_equal(s1, eps, out=ws.get("vif_flag", s1.shape, bool))  # s1 < eps -> 0
    np.greater_equal(s2, eps, out=dist_var)
    np.maximum(s12, 0.0, out=s12)
    s12 *= dist_var  # g = 0 where s2 < eps or s12 <= 0
    g = np.add(s1, eps, out=terms[0])
    np.divide(s12, g, out=g)
    s12 *= g
    np.subtract(s2, s12, out=s12)  # sv
    np.maximum(s12, eps, out=s12)
    s12 += sn2
    g *= g
    g *= s1
    g /= s12
    g += 1.0
    np.multiply(s1, 1.0 / sn2, out=terms[1])
    terms[1] += 1.0


def vif_maps(
    lin: np.ndarray, prods: np.ndarray, ws: Workspace
) -> list[tuple[np.ndarray, np.ndarray]]:
    """VIF log arguments of dist against each ref at the four scales.

    Gaussian windows 17, 9, 5, 3 ('valid'), subsampled by 2 between scales.

    Args:
        lin: refs and dist stacked (R + 1, N, H, W).
        prods: :func:`moment_products` of ``lin``.
        ws: workspace for the outputs.

    Returns:
        Per scale: the log arguments (2, R, N, P) with P = h w rounded up to LOG_GROUP (the
        tail set to 1), and the dist variance flags (N, h, w).
    """
    nr = len(lin) - 1
    out = []
    for scale, size in enumerate(VIF_WINDOWS):
        k = gaussian_kernel_1d(size, size / 5.0)
        if scale > 0:  # alternate two buffers: the filter must not write over its input
            down = filter_valid(lin, k, stride=2, ws=ws, name="vif_down")
            lin = ws.get(f"vif_lin{scale % 2}", down.shape)
            lin[...] = down
            prods = moment_products(lin, ws)
        s_lin = filter_valid(lin, k, ws=ws, name="vif_mu")
        s_prod = filter_valid(prods, k, ws=ws, name="vif_e")
        n, h, w = s_lin.shape[1:]
        flat = ws.get(f"vif_terms{scale}", (2, nr, n, -(-h * w // LOG_GROUP) * LOG_GROUP))
        flat[..., h * w :] = 1.0
        dist_var = ws.get(f"vif_dist_var{scale}", (n, h, w), bool)
        terms = flat[..., : h * w].reshape(2, nr, n, h, w)
        _vif_terms(s_lin, s_prod, terms, dist_var, ws)
        out.append((flat, dist_var))
    return out


def log_sums(flat: np.ndarray, shape: tuple[int, int], mask: Mask, ws: Workspace) -> np.ndarray:
    """Per-slice sums of ln(terms) over a mask, taking products of LOG_GROUP terms before each
    logarithm (32x fewer logs, the costliest step).

    A product cannot overflow for 0..255 images (VIF terms stay below 1 + 255^2 / 8); if one
    would (other value ranges), each term gets its own logarithm.

    Args:
        flat: padded terms (..., N, P) >= 1.
        shape: (h, w) of the unpadded terms.
        mask: bool (N, h, w), or None.
        ws: workspace for the temporaries.

    Returns:
        (..., N).

    Example:
        >>> flat = np.full((1, LOG_GROUP), np.e)
        >>> log_sums(flat, (1, LOG_GROUP), None, Workspace()).round(9).tolist()
        [32.0]
    """
    p = shape[0] * shape[1]
    if mask is not None:
        masked = ws.get("log_masked", flat.shape)
        masked[...] = 1.0
        view = masked[..., :p].reshape(*flat.shape[:-1], *shape)
        np.copyto(view, flat[..., :p].reshape(view.shape), where=mask)
        flat = masked
    prods, i = flat, 0
    while prods.shape[-1] > flat.shape[-1] // LOG_GROUP:  # halves: wide vector multiplies
        half = prods.shape[-1] // 2
        nxt = ws.get(f"log_half{i % 2}", (*flat.shape[:-1], half))
        prods, i = np.multiply(prods[..., :half], prods[..., half:], out=nxt), i + 1
    if prods.size and not np.max(prods) < np.inf:
        return np.log(flat).sum(axis=-1)
    return np.log(prods).sum(axis=-1)


def vif_reduce(
    maps: list[tuple[np.ndarray, np.ndarray]], mask: Mask, ws: Workspace | None = None
) -> np.ndarray:
    """VIFp of dist against each ref over a mask, cropped and subsampled like the images.

    Args:
        maps: :func:`vif_maps` output.
        mask: bool (N, H, W), or None.
        ws: workspace for the temporaries (a fresh one if None).

    Returns:
        (R, N); a reference without local variance in the mask gives 1 if dist has none
        either, else 0; 0 where no window centre lies in the mask.
    """
    ws = Workspace() if ws is None else ws
    n = maps[0][1].shape[0]
    num = np.zeros(maps[0][0].shape[1:3])
    den = np.zeros_like(num)
    count = np.zeros(n, dtype=np.int64)
    active = np.zeros(n, dtype=bool)
    for scale, (size, (flat, dist_var)) in enumerate(zip(VIF_WINDOWS, maps)):
        centres = None
        if mask is not None:
            if scale > 0:
                mask = crop_valid(mask, size, stride=2)
            centres = crop_valid(mask, size)
        lnum, lden = log_sums(flat, dist_var.shape[-2:], centres, ws)
        num += lnum
        den += lden
        count += pixel_count(centres, dist_var.shape)
        active |= np.any(dist_var if centres is None else dist_var & centres, axis=(-2, -1))
    flat_value = np.broadcast_to(np.where(active, 0.0, 1.0), num.shape).copy()
    return np.where(count > 0, np.divide(num, den, out=flat_value, where=den > 0), 0.0)
