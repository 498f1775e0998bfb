"""Classical fusion baselines (mean, max, PCA, DWT, Laplacian pyramid) to compare EDPSN with.

Every public ``fuse_*`` function takes the same inputs as the network: an MRI slice, grey
(H, W), and a functional slice, grey (H, W) (CT) or RGB (H, W, 3) (PET/SPECT), both float on
[0, 1]. RGB functional images are fused through YCbCr: the MRI is fused with the luminance Y
and the chroma (Cb, Cr) is put back (:func:`fuse_luminance`). The result has the functional
image's shape, float32 on [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pywt
from scipy import ndimage

from EDPSNLib.errors import InputError
from EDPSNLib.network.color import merge_luma, split_luma

#: A grey fusion rule: two float64 (H, W) images -> fused (H, W) image.
GreyRule = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Inputs may leave [0, 1] by this much (interpolation overshoot) before they are refused.
RANGE_TOLERANCE = 1e-3

#: Default wavelet: Daubechies 2 (4 taps) is short enough to keep edges sharp and smooth
#: enough to avoid the blocking of Haar; 3 levels suit 256 x 256 slices (coarsest band 1/8).
DEFAULT_WAVELET = "db2"
DEFAULT_DWT_LEVELS = 3
#: Default Laplacian pyramid depth: 4 detail levels + a base at 1/16 of the size.
DEFAULT_PYRAMID_LEVELS = 4

# Burt & Adelson (1983) generating kernel with a = 0.375: [1, 4, 6, 4, 1] / 16.
_BURT_ADELSON = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
# Whole-sample symmetric extension: after zero insertion it keeps samples and zeros
# alternating across both borders for either parity, so expanding a constant stays constant.
_BOUNDARY = "mirror"


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"The {what} has dtype {arr.dtype}; give a real-valued image on [0, 1].")
    if arr.size == 0:
        raise InputError(f"The {what} is empty (shape {arr.shape}); give a non-empty slice.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"The {what} holds NaN or infinite values; clean or re-normalise it.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise InputError(
            f"The {what} has values on [{lo:g}, {hi:g}]; expected [0, 1]. "
            "Normalise it first (e.g. divide 8-bit images by 255)."
        )
    return np.clip(arr, 0.0, 1.0)


def check_pair(mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (MRI, functional) pair; return both as float64 clipped to [0, 1].

    Raises :class:`InputError` on a shape mismatch, wrong channel count, NaN/inf or values
    outside [0, 1].

    Args:
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].

    Returns:
        ``(mri, func)`` as float64 clipped to [0, 1].

    Raises:
        InputError: on a shape mismatch, a wrong channel count, NaN/inf or values outside [0, 1].
    """
    mri_shape, func_shape = np.shape(mri), np.shape(func)
    if len(mri_shape) != 2:
        found = mri_shape[-1] if len(mri_shape) == 3 else f"{len(mri_shape)}-D"
        raise InputError(
            f"The MRI must be grey (H, W); got shape {mri_shape} ({found} channels found, "
            "1 expected). Convert it to grey first."
        )
    if len(func_shape) not in (2, 3) or (len(func_shape) == 3 and func_shape[-1] != 3):
        found = func_shape[-1] if len(func_shape) == 3 else f"{len(func_shape)}-D"
        raise InputError(
            f"The functional image must be grey (H, W) or RGB (H, W, 3); got shape {func_shape} "
            f"({found} channels found, 1 or 3 expected). Drop the alpha channel or convert it."
        )
    if func_shape[:2] != mri_shape:
        raise InputError(
            f"The MRI {mri_shape} and the functional image {func_shape} differ in size; "
            "register and resample the functional image onto the MRI grid first."
        )
    return _check_image(mri, "MRI"), _check_image(func, "functional image")


def fuse_luminance(fuse_grey: GreyRule, mri: np.ndarray, func: np.ndarray) -> np.ndarray:
    """Apply a grey fusion rule to (MRI, functional); RGB is fused on Y with Cb, Cr restored.

    Returns the functional image's shape (H, W) or (H, W, 3), float32 on [0, 1].

    Args:
        fuse_grey: a rule of two grey float64 images (H, W) giving one (H, W).
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].

    Returns:
        The fused slice in the functional image's shape, float32 on [0, 1].

    Example:
        >>> out = fuse_luminance(np.maximum, np.zeros((4, 4)), np.full((4, 4, 3), 0.5))
        >>> out.shape, float(out.max())
        ((4, 4, 3), 0.5)
    """
    mri64, func64 = check_pair(mri, func)
    y, cbcr = split_luma(func64)
    fused_y = np.asarray(fuse_grey(mri64, np.asarray(y, dtype=np.float64)), dtype=np.float64)
    if fused_y.shape != mri64.shape:
        raise InputError(
            f"The fusion rule returned shape {fused_y.shape}, expected {mri64.shape}; "
            "it must return one grey image of the inputs' size."
        )
    # Detail-boosting rules overshoot a little; clip Y so the colour stays in range.
    fused_y = np.clip(fused_y, 0.0, 1.0)
    return merge_luma(fused_y, cbcr).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- grey rules
def _mean_rule(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a + b) * 0.5


def _max_rule(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(a, b)


def _max_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per coefficient, the one of larger magnitude (ties keep ``a``): the stronger detail."""
    return np.where(np.abs(a) >= np.abs(b), a, b)


def pca_weights(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Weights (w_a, w_b), summing to 1, from the principal eigenvector of the 2x2 covariance.

    Magnitudes of the eigenvector are used so anti-correlated inputs still get weights on
    [0, 1]; two constant images get (0.5, 0.5).

    Args:
        a: first image, any shape.
        b: second image, the same number of pixels.

    Returns:
        ``(w_a, w_b)``, each on [0, 1], summing to 1.

    Example:
        >>> pca_weights(np.zeros((3, 3)), np.zeros((3, 3)))
        (0.5, 0.5)
    """
    cov = np.cov(np.stack([np.ravel(a), np.ravel(b)]).astype(np.float64), bias=True)
    _, vecs = np.linalg.eigh(cov)  # eigenvalues ascending: last column is the principal axis
    v = np.abs(vecs[:, -1])
    total = float(v.sum())
    if not np.isfinite(total) or total <= 0.0 or float(np.trace(cov)) <= 0.0:
        return 0.5, 0.5
    return float(v[0] / total), float(v[1] / total)


def _pca_rule(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    wa, wb = pca_weights(a, b)
    return wa * a + wb * b


def _dwt_rule(a: np.ndarray, b: np.ndarray, wavelet: pywt.Wavelet, levels: int) -> np.ndarray:
    # Fewer levels on small images: beyond dwt_max_level every coefficient is boundary effect.
    levels = min(levels, pywt.dwt_max_level(min(a.shape), wavelet.dec_len))
    if levels < 1:
        return _mean_rule(a, b)  # too small to separate any detail band
    ca = pywt.wavedec2(a, wavelet, mode="symmetric", level=levels)
    cb = pywt.wavedec2(b, wavelet, mode="symmetric", level=levels)
    fused = [_mean_rule(ca[0], cb[0])]
    for da, db in zip(ca[1:], cb[1:]):
        fused.append(tuple(_max_abs(x, y) for x, y in zip(da, db)))
    out = pywt.waverec2(fused, wavelet, mode="symmetric")
    return out[: a.shape[0], : a.shape[1]]  # odd sizes reconstruct one row/column larger


# ------------------------------------------------------------------- Laplacian pyramid
def _blur(image: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Separable 5x5 Burt-Adelson blur; ``gain`` scales the 1-D kernel (2 for expansion)."""
    out = image
    for axis in (0, 1):
        # A one-pixel axis is neither reduced nor expanded: leave it as it is.
        if out.shape[axis] > 1:
            out = ndimage.correlate1d(out, _BURT_ADELSON * gain, axis=axis, mode=_BOUNDARY)
    return out


def _reduce(image: np.ndarray) -> np.ndarray:
    return _blur(image)[::2, ::2]


def _expand(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample to ``shape`` (zeros between samples, then blur x4) for any parity of ``shape``."""
    up = np.zeros(shape, dtype=np.float64)
    up[::2, ::2] = image
    return _blur(up, gain=2.0)


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid ``[L_0 (H, W), ..., L_{levels-1}, base]``; exactly inverted by
    :func:`collapse_laplacian` for any size (each level is ceil(n / 2) of the one above).

    Args:
        image: grey image (H, W).
        levels: number of detail levels (>= 0).

    Returns:
        ``levels`` detail images, finest first, then the base, float64.

    Example:
        >>> img = np.arange(35.0).reshape(5, 7)
        >>> bool(np.allclose(collapse_laplacian(laplacian_pyramid(img, 2)), img))
        True
    """
    if levels < 0:
        raise InputError(f"levels must be >= 0, got {levels}.")
    current = np.asarray(image, dtype=np.float64)
    pyramid = []
    for _ in range(levels):
        smaller = _reduce(current)
        pyramid.append(current - _expand(smaller, current.shape))
        current = smaller
    pyramid.append(current)
    return pyramid


def collapse_laplacian(pyramid: list[np.ndarray]) -> np.ndarray:
    """Rebuild the image from :func:`laplacian_pyramid` output (finest level first).

    Args:
        pyramid: detail levels, finest first, then the base.

    Returns:
        The image (H, W) of the finest level's size, float64.
    """
    current = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        current = detail + _expand(current, detail.shape)
    return current


def _laplacian_rule(a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    # Stop once the base is one pixel wide: deeper levels would only repeat it.
    levels = min(levels, int(np.ceil(np.log2(min(a.shape)))))
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    fused = [_max_abs(x, y) for x, y in zip(pa[:-1], pb[:-1])]
    fused.append(_mean_rule(pa[-1], pb[-1]))
    return collapse_laplacian(fused)


# ----------------------------------------------------------------------------- public API
def fuse_mean(mri: np.ndarray, func: np.ndarray) -> np.ndarray:
    """Pixel average of the MRI and the functional image (luminance for RGB).

    Args:
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].

    Returns:
        The fused slice in the functional image's shape, float32 on [0, 1].

    Example:
        >>> float(fuse_mean(np.zeros((2, 2)), np.ones((2, 2)))[0, 0])
        0.5
    """
    return fuse_luminance(_mean_rule, mri, func)


def fuse_max(mri: np.ndarray, func: np.ndarray) -> np.ndarray:
    """Pixel maximum of the MRI and the functional image (luminance for RGB).

    Args:
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].

    Returns:
        The fused slice in the functional image's shape, float32 on [0, 1].
    """
    return fuse_luminance(_max_rule, mri, func)


def fuse_pca(mri: np.ndarray, func: np.ndarray) -> np.ndarray:
    """Weighted average with weights from :func:`pca_weights` (favouring higher variance).

    Args:
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].

    Returns:
        The fused slice in the functional image's shape, float32 on [0, 1].
    """
    return fuse_luminance(_pca_rule, mri, func)


def fuse_dwt(
    mri: np.ndarray,
    func: np.ndarray,
    wavelet: str = DEFAULT_WAVELET,
    levels: int = DEFAULT_DWT_LEVELS,
) -> np.ndarray:
    """2-D DWT fusion: mean of the approximation band, max-abs of every detail coefficient.

    ``levels`` is lowered to what the image size allows (``pywt.dwt_max_level``); images
    smaller than the wavelet filter fall back to the mean.

    Args:
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].
        wavelet: a discrete PyWavelets wavelet name.
        levels: decomposition levels (>= 1, lowered to what the size allows).

    Returns:
        The fused slice in the functional image's shape, float32 on [0, 1].
    """
    try:
        wav = pywt.Wavelet(wavelet)
    except ValueError as exc:
        raise InputError(
            f"Unknown wavelet {wavelet!r}; pick one of pywt.wavelist(kind='discrete'), e.g. 'db2'."
        ) from exc
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise InputError(f"DWT levels must be an integer >= 1, got {levels!r}.")
    return fuse_luminance(lambda a, b: _dwt_rule(a, b, wav, int(levels)), mri, func)


def fuse_laplacian(
    mri: np.ndarray, func: np.ndarray, levels: int = DEFAULT_PYRAMID_LEVELS
) -> np.ndarray:
    """Laplacian pyramid fusion (Burt-Adelson 5x5): max-abs detail levels, mean base.

    ``levels`` is lowered so the base is at least one pixel (``ceil(log2(min(H, W)))``).

    Args:
        mri: grey MRI slice (H, W) on [0, 1].
        func: functional slice, grey (H, W) or RGB (H, W, 3), on [0, 1].
        levels: pyramid detail levels (>= 1, lowered to what the size allows).

    Returns:
        The fused slice in the functional image's shape, float32 on [0, 1].
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise InputError(f"Laplacian pyramid levels must be an integer >= 1, got {levels!r}.")
    return fuse_luminance(lambda a, b: _laplacian_rule(a, b, int(levels)), mri, func)


#: Name -> fusion function with default settings, for benchmarks and the CLI.
BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": fuse_mean,
    "max": fuse_max,
    "pca": fuse_pca,
    "dwt": fuse_dwt,
    "laplacian": fuse_laplacian,
}
