"""Fusion metrics as per-pixel maps and masked reductions: EN, SD, SCD, PSNR and Q^AB/F.

Each metric is split in two: ``*_maps`` does the expensive part once per batch chunk
(filtering, transcendental functions) and ``*_reduce`` turns the maps into one value per slice
(N,) over a boolean mask (N, H, W), or over the whole image with ``mask=None``. Scoring
several masks (entropy regions) therefore repeats only the reductions. Inputs are grey
float64 (N, H, W) on 0..255. SSIM and VIF are in :mod:`EDPSNLib.metrics.local`, the filters
in :mod:`EDPSNLib.metrics.filters`, the public API in :mod:`EDPSNLib.metrics`; the
definitions are in docs/metrics.md.
"""

from __future__ import annotations

import math

import numpy as np

from EDPSNLib.metrics.filters import Workspace, sobel_valid, zero_pad

#: |s_x| this small (far below one grey level) is round-off and counts as 0 for the angle, so
#: that the convention "pi/2 where s_x = 0" does not depend on the order of summation.
SOBEL_ZERO = 1e-8
#: Xydeas & Petrovic sigmoid constants: (Gamma, kappa, sigma) for strength and for angle.
QABF_G = (0.9994, 15.0, 0.5)
QABF_A = (0.9879, 22.0, 0.8)
#: A sample whose variance (0..255 scale) is at most this is constant: its correlation is 0.
CONSTANT_VARIANCE = 1e-20
#: Added to the larger Sobel strength before the ratio min / max: exact for any real strength,
#: and 0 / 0 becomes 0 (such pixels have no weight) instead of NaN.
_TINY = 1e-300

Mask = np.ndarray | None


# ------------------------------------------------------------------------- masked reductions
def masked_sum(x: np.ndarray, mask: Mask) -> np.ndarray:
    """Per-slice sums over a mask.

    Args:
        x: (..., N, H, W).
        mask: bool (N, H, W), or None for all pixels.

    Returns:
        (..., N).

    Example:
        >>> masked_sum(np.ones((2, 3, 3)), np.eye(3, dtype=bool)[None].repeat(2, 0)).tolist()
        [3.0, 3.0]
    """
    if mask is None:
        return x.sum(axis=(-2, -1))
    return np.einsum("...nhw,nhw->...n", x, mask)


def masked_dot(x: np.ndarray, y: np.ndarray, mask: Mask) -> np.ndarray:
    """Per-slice sums of x * y over a mask, with no temporary image (numpy's own loop, no BLAS).

    Args:
        x: (N, H, W).
        y: (N, H, W).
        mask: bool (N, H, W), or None for all pixels.

    Returns:
        (N,).

    Example:
        >>> masked_dot(np.full((1, 2, 2), 2.0), np.full((1, 2, 2), 3.0), None).tolist()
        [24.0]
    """
    if mask is None:
        return np.einsum("nhw,nhw->n", x, y)
    return np.einsum("nhw,nhw,nhw->n", x, y, mask)


def pixel_count(mask: Mask, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels inside the mask per slice.

    Args:
        mask: bool (N, H, W), or None for all pixels.
        shape: the maps' shape (N, H, W) (used when ``mask`` is None).

    Returns:
        int64 (N,).

    Example:
        >>> pixel_count(None, (2, 4, 5)).tolist()
        [20, 20]
    """
    if mask is None:
        return np.full(shape[0], shape[-2] * shape[-1], dtype=np.int64)
    return np.count_nonzero(mask, axis=(-2, -1))


def masked_mean(x: np.ndarray, mask: Mask) -> np.ndarray:
    """Per-slice means over a mask; 0 where the mask is empty.

    Args:
        x: (N, H, W).
        mask: bool (N, H, W), or None for all pixels.

    Returns:
        (N,).

    Example:
        >>> masked_mean(np.arange(4.0).reshape(1, 2, 2), np.zeros((1, 2, 2), bool)).tolist()
        [0.0]
    """
    return masked_sum(x, mask) / np.maximum(pixel_count(mask, x.shape[-3:]), 1)


# ------------------------------------------------------------------ global metrics: EN, SD, SCD
def entropy_maps(f: np.ndarray, ws: Workspace) -> np.ndarray:
    """Grey levels of F rounded half to even, clipped to 0..255, offset by 256 per slice (so one
    ``bincount`` counts every slice).

    Args:
        f: float64 (N, H, W).
        ws: workspace for the outputs.

    Returns:
        intp (N, H, W).
    """
    rounded = np.rint(f, out=ws.get("en_round", f.shape))
    np.clip(rounded, 0, 255, out=rounded)
    levels = ws.get("en_levels", f.shape, np.intp)
    np.copyto(levels, rounded, casting="unsafe")
    levels += 256 * np.arange(len(f))[:, None, None]
    return levels


def entropy_reduce(levels: np.ndarray, mask: Mask) -> np.ndarray:
    """EN in bits over a mask from :func:`entropy_maps`.

    Args:
        levels: :func:`entropy_maps` output (N, H, W).
        mask: bool (N, H, W), or None.

    Returns:
        (N,), 0 for an empty mask.
    """
    n = len(levels)
    picked = levels.ravel() if mask is None else levels[mask]
    counts = np.bincount(picked, minlength=256 * n).reshape(n, 256)
    prob = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return 0.0 - np.sum(prob * np.log2(np.where(prob > 0, prob, 1.0)), axis=1)  # +0.0, not -0.0


def _centred(x: np.ndarray, mask: Mask, out: np.ndarray) -> np.ndarray:
    return np.subtract(x, masked_mean(x, mask)[:, None, None], out=out)


def std_reduce(f: np.ndarray, mask: Mask, ws: Workspace) -> np.ndarray:
    """SD: population standard deviation of F over a mask (two passes: exactly 0 if constant).

    Args:
        f: float64 (N, H, W).
        mask: bool (N, H, W), or None.
        ws: workspace for the temporaries.

    Returns:
        (N,).
    """
    c = _centred(f, mask, ws.get("centred_x", f.shape))
    return np.sqrt(masked_dot(c, c, mask) / np.maximum(pixel_count(mask, f.shape), 1))


def _corr(x: np.ndarray, y: np.ndarray, mask: Mask, ws: Workspace) -> np.ndarray:
    xc = _centred(x, mask, ws.get("centred_x", x.shape))
    yc = _centred(y, mask, ws.get("centred_y", y.shape))
    vx, vy, cxy = masked_dot(xc, xc, mask), masked_dot(yc, yc, mask), masked_dot(xc, yc, mask)
    count = np.maximum(pixel_count(mask, x.shape), 1)
    ok = (vx / count > CONSTANT_VARIANCE) & (vy / count > CONSTANT_VARIANCE)
    return np.clip(np.divide(cxy, np.sqrt(vx * vy), out=np.zeros_like(cxy), where=ok), -1.0, 1.0)


def difference_maps(abf: np.ndarray, ws: Workspace) -> np.ndarray:
    """F - A and F - B, shared by SCD and PSNR.

    Args:
        abf: A, B, F stacked (3, N, H, W).
        ws: workspace for the output.

    Returns:
        (2, N, H, W).
    """
    return np.subtract(abf[2], abf[:2], out=ws.get("differences", abf[:2].shape))


def scd_reduce(diffs: np.ndarray, abf: np.ndarray, mask: Mask, ws: Workspace) -> np.ndarray:
    """SCD = corr(F - B, A) + corr(F - A, B) over a mask; a constant's correlation is 0.

    Args:
        diffs: :func:`difference_maps` output (2, N, H, W).
        abf: A, B, F stacked (3, N, H, W).
        mask: bool (N, H, W), or None.
        ws: workspace for the temporaries.

    Returns:
        (N,) in [-2, 2].
    """
    return _corr(diffs[1], abf[0], mask, ws) + _corr(diffs[0], abf[1], mask, ws)


def psnr_reduce(
    diffs: np.ndarray,
    f: np.ndarray,
    mask: Mask,
    peak: float | None,
    cap: float,
) -> np.ndarray:
    """PSNR in dB of the mean of the two MSEs over a mask, clipped to +-cap (MSE 0 -> cap).

    Args:
        diffs: :func:`difference_maps` output (2, N, H, W).
        f: F (N, H, W).
        mask: bool (N, H, W), or None.
        peak: the peak value, or None for the maximum of F inside the mask.
        cap: the clip in dB.

    Returns:
        (N,), 0 for an empty mask.
    """
    count = pixel_count(mask, f.shape)
    sse = masked_dot(diffs[0], diffs[0], mask) + masked_dot(diffs[1], diffs[1], mask)
    mse = sse / (2.0 * np.maximum(count, 1))
    if peak is None:
        top = np.max(f, axis=(-2, -1), where=True if mask is None else mask, initial=0.0)
    else:
        top = np.full(len(f), float(peak))
    ratio = np.divide(top * top, mse, out=np.full_like(mse, np.inf), where=mse > 0)
    with np.errstate(divide="ignore"):  # a zero peak gives -inf, clipped below
        db = np.clip(10.0 * np.log10(ratio), -cap, cap)
    return np.where(count > 0, db, 0.0)


# ------------------------------------------------------------------------------------- Q^AB/F
def _edge_preservation(
    sx: np.ndarray,
    sy: np.ndarray,
    ws: Workspace,
    equal_strength_slip: bool = False,
    flipped_sobel_x: bool = False,
) -> np.ndarray:
    """Sum over S = A, B of Q^SF g_S / (Gamma_g Gamma_a), from Sobel responses (3, K) of A, B, F
    at K pixels (overwritten: the strengths g are left in sx).

    Q^SF = Gamma_g Gamma_a / ((1 + e^{-kg (G - Dg)}) (1 + e^{-ka (A - Da)})) with the strength
    ratio G = min / max and the angle agreement A = 1 - |a_S - a_F| / (pi / 2). The two
    flags reproduce the CDDFuse evaluator (:class:`EDPSNLib.metrics.options.MetricOptions`):
    ``equal_strength_slip``: G = g_F where g_S == g_F exactly; ``flipped_sobel_x``: s_x of
    the opposite sign. Negating s_x negates every angle except the pi/2 given where s_x = 0,
    and |a_S - a_F| does not change when all angles are negated: so it is the same as
    keeping s_x and giving -pi/2 where s_x = 0, which costs nothing.
    """
    (_, kg, dg), (_, ka, da) = QABF_G, QABF_A
    angle = np.abs(sx, out=ws.get("q_angle", sx.shape))
    zero = np.less_equal(angle, SOBEL_ZERO, out=ws.get("q_zero", sx.shape, bool))
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(sy, sx, out=angle)
    np.arctan(angle, out=angle)
    vertical = -math.pi / 2 if flipped_sobel_x else math.pi / 2
    np.copyto(angle, vertical, where=zero)  # the convention for s_x = 0 (also 0 / 0)
    sx *= sx
    sy *= sy
    sx += sy
    g = np.sqrt(sx, out=sx)
    g_src, g_fused = g[:2], g[2]
    hi = np.maximum(g_src, g_fused, out=sy[:2])
    hi += _TINY
    e_g = np.minimum(g_src, g_fused, out=ws.get("q_strength", g_src.shape))
    e_g /= hi  # strength ratio G = min / max
    if equal_strength_slip:
        equal = np.equal(g_src, g_fused, out=ws.get("q_equal", g_src.shape, bool))
        np.copyto(e_g, np.broadcast_to(g_fused, e_g.shape), where=equal)
    e_g *= -kg
    e_g += kg * dg
    np.exp(e_g, out=e_g)
    e_g += 1.0  # 1 + e^{-kg (G - Dg)}
    e_a = np.subtract(angle[:2], angle[2], out=angle[:2])
    np.abs(e_a, out=e_a)
    e_a *= ka / (math.pi / 2)  # -ka (A - Da) = ka |a_S - a_F| / (pi / 2) - ka (1 - Da)
    e_a -= ka * (1.0 - da)
    np.exp(e_a, out=e_a)
    e_a += 1.0
    e_g *= e_a
    np.divide(g_src, e_g, out=e_g)
    return np.add(e_g[0], e_g[1], out=e_a[0])


QabfMaps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def qabf_maps(
    abf: np.ndarray,
    ws: Workspace,
    equal_strength_slip: bool = False,
    flipped_sobel_x: bool = False,
) -> QabfMaps:
    """Q^AB/F weights at the K pixels where a source has an edge (the others weigh nothing).

    3x3 Sobel with zero padding. The costly angles and sigmoids are computed at the K pixels
    only (about half of a head slice is flat background).

    Args:
        abf: A, B, F stacked (3, N, H, W).
        ws: workspace for the outputs.
        equal_strength_slip: the CDDFuse evaluator's strength ratio g_F where g_S == g_F
            (``MetricOptions.qabf_equal_strength_slip``).
        flipped_sobel_x: the CDDFuse evaluator's s_x = left - right
            (``MetricOptions.qabf_flipped_sobel_x``).

    Returns:
        (flat indices (K,), slice numbers (K,), weights (2, K): sum over S of
        Q^SF g_S / (Gamma_g Gamma_a) and g_A + g_B, whether F has an edge (N, H, W)).
    """
    sx, sy = sobel_valid(zero_pad(abf, ws), ws)
    mag2 = np.multiply(sx, sx, out=ws.get("q_mag2", sx.shape))
    mag2 += np.multiply(sy, sy, out=ws.get("q_tmp", sy.shape))
    edge = np.greater(mag2[2], SOBEL_ZERO * SOBEL_ZERO, out=ws.get("q_edge", mag2[2].shape, bool))
    active = np.greater(mag2[0], 0.0, out=ws.get("q_active", mag2[0].shape, bool)).ravel()
    active |= mag2[1].ravel() > 0.0
    k = int(np.count_nonzero(active))
    idx = np.compress(active, ws.arange(active.size), out=ws.get("q_idx", (k,), np.intp))
    slice_of = np.floor_divide(idx, mag2[0, 0].size, out=ws.get("q_slice", (k,), np.intp))
    sx_k = np.take(sx.reshape(3, -1), idx, axis=1, out=ws.get("q_sx", (3, k)))
    sy_k = np.take(sy.reshape(3, -1), idx, axis=1, out=ws.get("q_sy", (3, k)))
    weights = ws.get("q_weights", (2, k))
    weights[0] = _edge_preservation(sx_k, sy_k, ws, equal_strength_slip, flipped_sobel_x)
    np.add(sx_k[0], sx_k[1], out=weights[1])  # g_A + g_B (_edge_preservation left g in sx_k)
    return idx, slice_of, weights, edge


def qabf_reduce(maps: QabfMaps, mask: Mask) -> np.ndarray:
    """Q^AB/F over a mask from :func:`qabf_maps`.

    Args:
        maps: :func:`qabf_maps` output.
        mask: bool (N, H, W), or None.

    Returns:
        (N,) in [0, 1]; where no source has an edge, 1 if F has none either, else 0; 0 for an
        empty mask.
    """
    idx, slice_of, weights, fused_edge = maps
    n = len(fused_edge)
    if mask is not None:
        inside = np.take(mask.ravel(), idx)
        slice_of, weights = slice_of[inside], weights[:, inside]
    if n == 1:  # the usual chunk: one slice
        num, den = weights.sum(axis=-1, keepdims=True)
    else:
        num = np.bincount(slice_of, weights=weights[0], minlength=n)
        den = np.bincount(slice_of, weights=weights[1], minlength=n)
    num = num * (QABF_G[0] * QABF_A[0])
    has_edge = fused_edge if mask is None else fused_edge & mask
    value = np.divide(num, den, out=np.where(has_edge.any(axis=(-2, -1)), 0.0, 1.0), where=den > 0)
    return np.where(pixel_count(mask, fused_edge.shape) > 0, value, 0.0)
