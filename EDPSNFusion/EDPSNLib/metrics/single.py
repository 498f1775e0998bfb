"""The fusion metrics one at a time, on grey (luma) images: (H, W) -> float, (N, H, W) -> (N,).

Each call computes only what its metric needs; for all seven use
:func:`EDPSNLib.metrics.fusion_metrics_batch`, which shares the work between them. Colour
must be reduced first (``EDPSNLib.color.rgb_to_luma``): an (N, H, 3) array is refused as
probably channel-last RGB. Definitions and degenerate cases: docs/metrics.md.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from EDPSNLib.metrics import local as ml
from EDPSNLib.metrics import maps as mm
from EDPSNLib.metrics.compute import PSNR_CAP_DB
from EDPSNLib.metrics.filters import Workspace
from EDPSNLib.metrics.local import SSIM_WIN, VIF_MIN_SIZE
from EDPSNLib.metrics.options import check_options
from EDPSNLib.metrics.runner import metric_core, single_metric

Value = float | np.ndarray


def _vif_maps(lin: np.ndarray, ws: Workspace) -> list[tuple[np.ndarray, np.ndarray]]:
    return ml.vif_maps(lin, ml.moment_products(lin, ws), ws)


def _ssim_maps(lin: np.ndarray, ws: Workspace, data_range: float, sample_cov: bool) -> np.ndarray:
    return ml.ssim_maps(lin, data_range, sample_cov, ml.moment_products(lin, ws), ws)


def entropy(f: ArrayLike, *, mask: ArrayLike | None = None) -> Value:
    """EN: Shannon entropy (bits) of the 256-bin histogram of F, rounded and clipped to 0..255.

    Args:
        f: the fused image (H, W) or a batch (N, H, W) on 0..255; rounded half to even.
        mask: bool of the same shape restricting the histogram to its pixels, or None.

    Returns:
        A float for one image, float64 (N,) for a batch.

    Example:
        >>> entropy(np.array([[0, 255], [255, 0]]))
        1.0
    """
    core = metric_core(
        lambda x, ws: mm.entropy_maps(x[0], ws), lambda y, m, ws: mm.entropy_reduce(y, m)
    )
    return single_metric(core, {"f": f}, mask)


def standard_deviation(f: ArrayLike, *, mask: ArrayLike | None = None) -> Value:
    """SD: population standard deviation of F (not rounded) on 0..255.

    Args:
        f: the fused image (H, W) or a batch (N, H, W).
        mask: bool of the same shape, or None.

    Returns:
        A float for one image, float64 (N,) for a batch.

    Example:
        >>> standard_deviation(np.array([[0, 255], [255, 0]]))
        127.5
    """
    return single_metric(metric_core(lambda x, ws: x[0], mm.std_reduce), {"f": f}, mask)


def scd(a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None) -> Value:
    """SCD: corr(F - B, A) + corr(F - A, B), Pearson over the pixels; a constant's is 0.

    Args:
        a: the MRI (H, W) or (N, H, W) on 0..255.
        b: the CT/PET/SPECT luma, same shape.
        f: the fused image, same shape.
        mask: bool of the same shape, or None.

    Returns:
        A float in [-2, 2] for one image, float64 (N,) for a batch.

    Example:
        >>> a, b = np.array([[0.0, 10.0], [20.0, 5.0]]), np.array([[3.0, 1.0], [0.0, 9.0]])
        >>> round(scd(a, b, a + b), 12)  # F - B = A and F - A = B
        2.0
    """
    core = metric_core(
        lambda x, ws: (mm.difference_maps(x, ws), x), lambda y, m, ws: mm.scd_reduce(*y, m, ws)
    )
    return single_metric(core, {"a": a, "b": b, "f": f}, mask)


def qabf(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    equal_strength_slip: bool = False,
    flipped_sobel_x: bool = False,
) -> Value:
    """Q^AB/F (Xydeas & Petrovic): edge information of A and B kept in F, 3x3 Sobel, zero padding.

    Args:
        a: the MRI (H, W) or (N, H, W) on 0..255.
        b: the CT/PET/SPECT luma, same shape.
        f: the fused image, same shape.
        mask: bool of the same shape, or None.
        equal_strength_slip: strength ratio g_F instead of 1 where g_S == g_F, as the CDDFuse
            evaluator computes it (see ``MetricOptions.qabf_equal_strength_slip``).
        flipped_sobel_x: s_x = left - right, as the CDDFuse evaluator's ``convolve2d`` gives
            it (see ``MetricOptions.qabf_flipped_sobel_x``).

    Returns:
        A float in [0, 1] for one image, float64 (N,) for a batch; where no source has an
        edge, 1 if F has none either, else 0.

    Example:
        >>> a = np.tile(np.arange(8.0), (8, 1))
        >>> round(qabf(a, a, a), 5)  # the two sigmoids at 1
        0.97479
    """
    core = metric_core(
        partial(
            mm.qabf_maps,
            equal_strength_slip=equal_strength_slip,
            flipped_sobel_x=flipped_sobel_x,
        ),
        lambda y, m, ws: mm.qabf_reduce(y, m),
    )
    return single_metric(core, {"a": a, "b": b, "f": f}, mask)


def vifp(ref: ArrayLike, dist: ArrayLike, *, mask: ArrayLike | None = None) -> Value:
    """Pixel-domain 4-scale VIF of ``dist`` against ``ref`` (Sheikh & Bovik), sigma_n^2 = 2.

    Args:
        ref: the reference (H, W) or (N, H, W) on 0..255, H, W >= 41.
        dist: the image compared with it, same shape.
        mask: bool of the same shape, or None.

    Returns:
        A float >= 0 for one image (1 for ``dist = ref``), float64 (N,) for a batch.

    Example:
        >>> x = np.tile(np.arange(64.0), (64, 1)) % 9 * 20
        >>> round(vifp(x, x), 6), vifp(x, x * 0 + 100) == 0
        (1.0, True)
    """
    core = metric_core(_vif_maps, lambda y, m, ws: ml.vif_reduce(y, m, ws)[0])
    return single_metric(core, {"ref": ref, "dist": dist}, mask, VIF_MIN_SIZE)


def vif(a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None) -> Value:
    """VIF: vifp(A, F) + vifp(B, F).

    Args:
        a: the MRI (H, W) or (N, H, W) on 0..255, H, W >= 41.
        b: the CT/PET/SPECT luma, same shape.
        f: the fused image, same shape.
        mask: bool of the same shape, or None.

    Returns:
        A float for one image, float64 (N,) for a batch.

    Example:
        >>> x = np.tile(np.arange(64.0), (64, 1)) % 9 * 20
        >>> round(vif(x, x, x), 6)
        2.0
    """
    core = metric_core(_vif_maps, lambda y, m, ws: ml.vif_reduce(y, m, ws).sum(axis=0))
    return single_metric(core, {"a": a, "b": b, "f": f}, mask, VIF_MIN_SIZE)


def psnr(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    peak: float | None = 255.0,
) -> Value:
    """PSNR: 10 log10(peak^2 / ((MSE(A, F) + MSE(B, F)) / 2)) in dB, clipped to +-100.

    Args:
        a: the MRI (H, W) or (N, H, W) on 0..255.
        b: the CT/PET/SPECT luma, same shape.
        f: the fused image, same shape.
        mask: bool of the same shape, or None.
        peak: the peak value; None takes the maximum of F (inside the mask), as the CDDFuse
            evaluator does.

    Returns:
        dB as a float for one image, float64 (N,) for a batch; 100 where both MSEs are 0.

    Example:
        >>> a = np.full((4, 4), 100.0)
        >>> round(psnr(a, a, a + 2.55), 6)  # MSE 2.55^2: 10 log10(100^2)
        40.0
    """
    check_options(peak=peak)
    core = metric_core(
        lambda x, ws: (mm.difference_maps(x, ws), x[2]),
        lambda y, m, ws: mm.psnr_reduce(*y, m, peak, PSNR_CAP_DB),
    )
    return single_metric(core, {"a": a, "b": b, "f": f}, mask)


def ssim_index(
    x: ArrayLike,
    y: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: float = 255.0,
    sample_covariance: bool = True,
) -> Value:
    """Mean SSIM of x and y: uniform 7x7 window, K1 = 0.01, K2 = 0.03, over the 'valid' centres.

    Equals ``skimage.metrics.structural_similarity(x, y, win_size=7, data_range=data_range,
    use_sample_covariance=sample_covariance)``.

    Args:
        x: one image (H, W) or (N, H, W), H, W >= 7.
        y: the other, same shape.
        mask: bool of the same shape: the mean runs over the window centres inside it.
        data_range: L in C1 = (0.01 L)^2, C2 = (0.03 L)^2.
        sample_covariance: 49/48 (sample) normalisation of the (co)variances.

    Returns:
        A float in [-1, 1] for one image, float64 (N,) for a batch.

    Example:
        >>> x = np.tile(np.arange(16.0), (16, 1))
        >>> ssim_index(x, x)
        1.0
    """
    check_options(data_range=data_range)
    core = metric_core(
        partial(_ssim_maps, data_range=data_range, sample_cov=sample_covariance),
        lambda y, m, ws: ml.ssim_reduce(y, m),
    )
    return single_metric(core, {"x": x, "y": y}, mask, SSIM_WIN)


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: float = 255.0,
    sample_covariance: bool = True,
) -> Value:
    """SSIM: ssim_index(A, F) + ssim_index(B, F), a sum in [-2, 2] as MMIF tables report it.

    Args:
        a: the MRI (H, W) or (N, H, W) on 0..255, H, W >= 7.
        b: the CT/PET/SPECT luma, same shape.
        f: the fused image, same shape.
        mask: bool of the same shape, or None.
        data_range: as :func:`ssim_index`.
        sample_covariance: as :func:`ssim_index`.

    Returns:
        A float for one image, float64 (N,) for a batch.

    Example:
        >>> x = np.tile(np.arange(16.0), (16, 1))
        >>> ssim(x, x, x)
        2.0
    """
    check_options(data_range=data_range)
    core = metric_core(
        partial(_ssim_maps, data_range=data_range, sample_cov=sample_covariance),
        lambda y, m, ws: ml.ssim_reduce(y, m),
    )
    return single_metric(core, {"a": a, "b": b, "f": f}, mask, SSIM_WIN)
