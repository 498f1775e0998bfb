"""Contrast shifts: the MRI as another scanner or sequence shows it, the functional image rescaled.

Every function takes float arrays on [0, 1] (MRI (..., H, W); functional (..., H, W) grey or
(..., H, W, 3) RGB), returns a new float32 array on [0, 1] and never changes its input. They
are deterministic (noise takes its seed). :data:`SHIFTS` is the evaluation suite (one table per
shift in docs/protocol.md); :func:`random_shift` draws the same kinds of change at random for
training augmentation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from EDPSNLib.color import LUMA_WEIGHTS
from EDPSNLib.errors import InputError

#: MRI pixels above this (on [0, 1]) are tissue when finding the head for the T2-like shift.
HEAD_THRESHOLD = 0.08


def _float(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def gamma(mri: np.ndarray, g: float) -> np.ndarray:
    """Gamma curve ``x ** g``: g < 1 brightens the mid-tones, g > 1 darkens them.

    Args:
        mri: image on [0, 1].
        g: exponent, > 0.

    Returns:
        ``mri ** g`` as float32 (0 and 1 stay where they are).

    Example:
        >>> float(gamma(np.array([0.25]), 0.5)[0])
        0.5
    """
    return np.power(_float(mri), np.float32(g))


def scale(mri: np.ndarray, factor: float) -> np.ndarray:
    """Global intensity scaling ``x * factor``, clipped to [0, 1].

    Example:
        >>> scale(np.array([0.5, 0.9]), 1.5).tolist()
        [0.75, 1.0]
    """
    return np.clip(_float(mri) * np.float32(factor), 0.0, 1.0)


def head_mask(mri: np.ndarray, threshold: float = HEAD_THRESHOLD) -> np.ndarray:
    """The head: pixels above ``threshold`` with holes (dark CSF, skull inside) filled, per slice.

    Args:
        mri: (H, W) or (N, H, W) image on [0, 1].

    Returns:
        bool array of the same shape.
    """
    arr = _float(mri)
    tissue = arr > threshold
    if arr.ndim == 2:
        return ndimage.binary_fill_holes(tissue)
    return np.stack([ndimage.binary_fill_holes(t) for t in tissue.reshape(-1, *arr.shape[-2:])])


def t2_like(mri: np.ndarray) -> np.ndarray:
    """T2-like contrast: tissue contrast inverted inside the head, background kept as it is.

    On tissue (above ``HEAD_THRESHOLD``) inside :func:`head_mask`, ``x -> lo + hi - x`` with
    lo, hi the 1st and 99th percentiles of that tissue, so dark CSF turns bright and bright
    white matter darker (as on a T2-weighted image) while the intensity range stays the
    head's own. Air and bone below the threshold stay dark (they are dark on T2 too), and
    the background outside the head is unchanged.

    Args:
        mri: (H, W) or (N, H, W) image on [0, 1] (each slice gets its own mask and range).

    Returns:
        float32 array of the same shape on [0, 1].
    """
    arr = _float(mri)
    flat = arr.reshape(-1, *arr.shape[-2:])
    masks = head_mask(flat).reshape(flat.shape) & (flat > HEAD_THRESHOLD)
    out = flat.copy()
    for img, mask, dst in zip(flat, masks, out):
        if not mask.any():
            continue
        lo, hi = np.percentile(img[mask], [1.0, 99.0])
        dst[mask] = np.clip(lo + hi - img[mask], 0.0, 1.0)
    return out.reshape(arr.shape)


def add_noise(mri: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma`` from a generator seeded by ``seed``, clipped."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=np.shape(mri))
    return np.clip(_float(mri) + noise.astype(np.float32), 0.0, 1.0)


def blur(mri: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels over the last two axes (a softer, lower-resolution scan)."""
    arr = _float(mri)
    sigmas = (0.0,) * (arr.ndim - 2) + (sigma, sigma)
    return np.clip(ndimage.gaussian_filter(arr, sigmas, mode="nearest"), 0.0, 1.0)


def scale_functional(func: np.ndarray, factor: float) -> np.ndarray:
    """Functional image brighter or darker by ``factor``; for RGB the hue is kept.

    Grey: ``x * factor`` clipped. RGB: every channel of a pixel is multiplied by the same
    ``min(factor, 1 / max channel)``, so hue and saturation stay exactly and the luminance
    scales by ``factor`` except where a channel would pass 1 (there it stops at 1).

    Args:
        func: (..., H, W) grey or (..., H, W, 3) RGB on [0, 1].
        factor: > 0.

    Returns:
        float32 array of the same shape.

    Example:
        >>> scale_functional(np.array([[[0.5, 0.25, 0.0]]]), 4.0).tolist()
        [[[1.0, 0.5, 0.0]]]
    """
    arr = _float(func)
    if arr.ndim < 3 or arr.shape[-1] != 3:
        return np.clip(arr * np.float32(factor), 0.0, 1.0)
    peak = arr.max(axis=-1, keepdims=True)
    per_pixel = np.minimum(np.float32(factor), 1.0 / np.maximum(peak, 1e-6))
    return np.clip(arr * per_pixel, 0.0, 1.0)


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of channel-last RGB, grey as is (float32, same scale as the input)."""
    arr = _float(image)
    if arr.ndim >= 3 and arr.shape[-1] == 3:
        return arr @ np.asarray(LUMA_WEIGHTS, np.float32)
    return arr


Shift = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _on_mri(fn: Callable[[np.ndarray], np.ndarray]) -> Shift:
    return lambda mri, func: (fn(mri), _float(func))


def _on_func(factor: float) -> Shift:
    return lambda mri, func: (_float(mri), scale_functional(func, factor))


#: The evaluation suite: name -> ``(mri, func) -> (mri', func')``. "none" is the held-out
#: pairs as they are. Noise is seeded, so every run sees the same noisy images.
SHIFTS: dict[str, Shift] = {
    "none": _on_mri(_float),
    "gamma-0.6": _on_mri(lambda x: gamma(x, 0.6)),
    "gamma-1.6": _on_mri(lambda x: gamma(x, 1.6)),
    "scale-0.6": _on_mri(lambda x: scale(x, 0.6)),
    "scale-1.3": _on_mri(lambda x: scale(x, 1.3)),
    "t2-like": _on_mri(t2_like),
    "noise-0.03": _on_mri(lambda x: add_noise(x, 0.03, seed=0)),
    "blur-1.0": _on_mri(lambda x: blur(x, 1.0)),
    "func-0.7": _on_func(0.7),
    "func-1.3": _on_func(1.3),
}


def apply_shift(name: str, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply one named shift of :data:`SHIFTS` to a pair (arrays on [0, 1])."""
    if name not in SHIFTS:
        raise InputError(f"Unknown contrast shift '{name}'; choose from {', '.join(SHIFTS)}.")
    return SHIFTS[name](mri, func)


def random_mri_shift(mri: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random MRI appearance for training: the suite's kinds of change with random strength.

    In this order, each with the probability given: T2-like inversion (0.25), gamma with
    log-uniform exponent in [0.5, 2.0] (0.5), scaling by U(0.55, 1.35) (0.5), blur with
    sigma U(0.3, 1.5) (0.2), noise with sigma U(0.005, 0.05) (0.3). Draws always happen in the
    same order, so the result is a pure function of the generator's state.
    """
    u = rng.random(5)
    g = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    factor, blur_sigma = rng.uniform(0.55, 1.35), rng.uniform(0.3, 1.5)
    noise_sigma, noise_seed = rng.uniform(0.005, 0.05), int(rng.integers(0, 2**31))
    out = _float(mri)
    if u[0] < 0.25:
        out = t2_like(out)
    if u[1] < 0.5:
        out = gamma(out, g)
    if u[2] < 0.5:
        out = scale(out, factor)
    if u[3] < 0.2:
        out = blur(out, blur_sigma)
    if u[4] < 0.3:
        out = add_noise(out, noise_sigma, noise_seed)
    return out


def random_functional_scale(func: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The functional image scaled by U(0.7, 1.3) (hue kept, see :func:`scale_functional`)."""
    return scale_functional(func, float(rng.uniform(0.7, 1.3)))
