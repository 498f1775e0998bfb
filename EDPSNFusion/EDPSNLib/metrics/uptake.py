"""Uptake fidelity: does the fused image keep what the functional image shows brighter than the MRI?

None of the seven fusion metrics catches a fusion that turns bright PET uptake dark: a blend
that gives the MRI most of the weight scores well on SSIM and PSNR against the MRI. Two
figures, on grey levels 0..255, per image:

* **uptake loss**: on the pixels where the functional luminance B exceeds the MRI A by more
  than ``margin`` (10 grey levels), the mean of ``max(B - F, 0)``: how much darker than the
  functional image the fused luminance F is where the functional image is the brighter
  source. 0 for the pixel maximum, ``(B - A) / 2`` on average for the plain mean.
* **hue difference**: where the functional image has colour (HSV saturation above
  ``min_saturation`` and value above ``min_value``), the mean circular difference in degrees
  (0..180) between the HSV hue of F and of the functional image. A fused pixel without any
  chroma has hue 0 (red) by convention, so lost colour shows as a difference. Grey functional
  images (CT) have no hue: NaN.

An image with no pixel of the kind counted gives NaN (average with ``np.nanmean``).
"""

from __future__ import annotations

import numpy as np

from EDPSNLib.color import rgb_to_luma

#: Grey levels by which B must exceed A for a pixel to count as functional uptake.
UPTAKE_MARGIN = 10.0
#: HSV saturation and value (on [0, 1]) above which a functional pixel has a colour.
MIN_SATURATION = 0.2
MIN_VALUE = 0.1


def _batch(image: np.ndarray, rgb: bool) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    return arr[None] if arr.ndim == (3 if rgb else 2) else arr


def _is_rgb(image: np.ndarray) -> bool:
    return image.ndim >= 3 and image.shape[-1] == 3


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over ``mask`` per image (N, H, W) -> (N,), NaN where the mask is empty."""
    count = mask.sum(axis=(-2, -1))
    total = np.where(mask, values, 0.0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def uptake_loss(
    mri: np.ndarray, func: np.ndarray, fused: np.ndarray, margin: float = UPTAKE_MARGIN
) -> np.ndarray:
    """Mean of max(B - F, 0) where B > A + margin, in grey levels, per image.

    Args:
        mri: A, (H, W) or (N, H, W) on 0..255.
        func: the functional image, grey like ``mri`` or RGB (..., 3) on 0..255.
        fused: F, grey or RGB, same size, on 0..255.
        margin: grey levels by which B must exceed A.

    Returns:
        (N,) float64 (NaN for an image without such pixels).

    Example:
        >>> a, b = np.full((1, 2, 2), 50.0), np.array([[[200.0, 0.0], [200.0, 0.0]]])
        >>> uptake_loss(a, b, (a + b) / 2).tolist(), uptake_loss(a, b, np.maximum(a, b)).tolist()
        ([75.0], [0.0])
    """
    a = _batch(mri, rgb=False)
    b = _batch(rgb_to_luma(func), rgb=False)
    f = _batch(rgb_to_luma(fused), rgb=False)
    if not (a.shape == b.shape == f.shape):
        raise ValueError(f"MRI, functional and fused sizes differ: {a.shape}, {b.shape}, {f.shape}")
    return _masked_mean(np.maximum(b - f, 0.0), b - a > margin)


def hsv_hue_saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSV hue in degrees [0, 360), saturation and value on [0, 1] of RGB (..., 3) on 0..255.

    Example:
        >>> h, s, v = hsv_hue_saturation_value(np.array([[255.0, 255.0, 0.0]]))
        >>> float(h[0]), float(s[0]), float(v[0])
        (60.0, 1.0, 1.0)
    """
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    top, bottom = x.max(axis=-1), x.min(axis=-1)
    delta = top - bottom
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.select(
        [delta == 0, top == r, top == g],
        [0.0, ((g - b) / safe) % 6.0, (b - r) / safe + 2.0],
        default=(r - g) / safe + 4.0,
    )
    saturation = np.where(top > 0, delta / np.where(top > 0, top, 1.0), 0.0)
    return hue * 60.0, saturation, top


def hue_difference(
    func: np.ndarray,
    fused: np.ndarray,
    min_saturation: float = MIN_SATURATION,
    min_value: float = MIN_VALUE,
) -> np.ndarray:
    """Mean circular hue difference (degrees, 0..180) of F and the functional image where it has colour.

    Args:
        func: RGB (H, W, 3) or (N, H, W, 3) on 0..255; grey gives NaN.
        fused: RGB of the same shape (grey fused images count as hue 0 everywhere).

    Returns:
        (N,) float64 (NaN where the functional image has no coloured pixel).

    Example:
        >>> red, yellow = np.zeros((1, 1, 2, 3)), np.zeros((1, 1, 2, 3))
        >>> red[..., 0] = 255; yellow[..., :2] = 255
        >>> hue_difference(red, yellow).tolist()
        [60.0]
    """
    fu = np.asarray(func)
    if not _is_rgb(fu):
        return np.full(max(1, fu.shape[0] if fu.ndim == 3 else 1), np.nan)
    fu = _batch(fu, rgb=True)
    fz = np.asarray(fused, dtype=np.float64)
    fz = np.repeat(fz[..., None], 3, axis=-1) if not _is_rgb(fz) else fz
    fz = _batch(fz, rgb=True)
    if fu.shape != fz.shape:
        raise ValueError(f"Functional and fused sizes differ: {fu.shape}, {fz.shape}")
    hue_b, sat_b, val_b = hsv_hue_saturation_value(fu)
    hue_f = hsv_hue_saturation_value(fz)[0]
    diff = np.abs(hue_f - hue_b) % 360.0
    diff = np.minimum(diff, 360.0 - diff)
    return _masked_mean(diff, (sat_b > min_saturation) & (val_b > min_value))


def uptake_figures(mri: np.ndarray, func: np.ndarray, fused: np.ndarray) -> dict[str, np.ndarray]:
    """Both figures per image: ``{"uptake_loss": (N,), "hue_diff": (N,)}`` (see the module doc)."""
    return {
        "uptake_loss": uptake_loss(mri, func, fused),
        "hue_diff": hue_difference(func, fused),
    }
