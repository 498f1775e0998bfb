"""Intensity normalisation of each modality to [0, 1], and colour maps for scalar PET/SPECT."""

from __future__ import annotations

import numpy as np

from EDPSNLib import names
from EDPSNLib.errors import InputError
from EDPSNLib.fusion.colormap_data import HARVARD_PET, HARVARD_SPECT

#: CT windows as (level, width) in HU, the usual radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "soft-tissue": (50.0, 400.0),
    "bone": (600.0, 2800.0),
}
#: Colour maps for scalar PET/SPECT. The harvard ones are the atlas palettes the network was
#: trained on (tools/derive_colormaps.py); any matplotlib colour map name also works.
COLORMAPS: dict[str, list[list[int]]] = dict(
    zip(names.HARVARD_COLORMAPS, (HARVARD_PET, HARVARD_SPECT))
)
DEFAULT_COLORMAP = names.DEFAULT_COLORMAP


def robust_range(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Percentiles of the voxels above the volume's minimum (the air/background is left out).

    Args:
        volume: values of any shape.
        low: lower percentile.
        high: upper percentile.

    Returns:
        ``(lo, hi)``; both the minimum when every voxel is the minimum.

    Example:
        >>> robust_range(np.r_[np.zeros(5), np.arange(1.0, 101.0)], 0.0, 100.0)
        (1.0, 100.0)
    """
    vol = np.asarray(volume)
    vmin = float(vol.min())
    tissue = vol[vol > vmin]
    if tissue.size == 0:
        return vmin, vmin
    lo, hi = np.percentile(tissue, (low, high))
    return float(lo), float(hi)


def rescale(volume: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] to [0, 1], clipped, float32; a flat range gives zeros.

    Args:
        volume: values of any shape.
        lo: the value mapped to 0.
        hi: the value mapped to 1.

    Returns:
        float32 values on [0, 1].

    Example:
        >>> rescale(np.array([0.0, 5.0, 20.0]), 0.0, 10.0).tolist()
        [0.0, 0.5, 1.0]
    """
    vol = np.asarray(volume, dtype=np.float32)
    if hi <= lo:
        return np.zeros_like(vol)
    return np.clip((vol - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


def normalize_mri(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """MRI to [0, 1] by robust percentiles of the tissue (MR has no absolute scale).

    Args:
        volume: MR values of any shape.
        low: lower percentile of the tissue (the minimum is used when lower).
        high: upper percentile of the tissue, mapped to 1.

    Returns:
        float32 values on [0, 1].
    """
    lo, hi = robust_range(volume, low, high)
    return rescale(volume, min(lo, float(np.min(volume))), hi)


def window_ct(volume: np.ndarray, window: str | tuple[float, float] = "brain") -> np.ndarray:
    """CT in HU to [0, 1] through a window: a preset name or (level, width).

    Args:
        volume: CT values in HU, any shape.
        window: a preset name of :data:`CT_WINDOWS` or ``(level, width)`` in HU.

    Returns:
        float32 values on [0, 1].

    Example:
        >>> window_ct(np.array([-1000.0, 40.0, 1000.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise InputError(
                f"Unknown CT window '{window}'; choose {', '.join(CT_WINDOWS)} or level,width."
            )
        level, width = CT_WINDOWS[window]
    else:
        level, width = window
    if width <= 0:
        raise InputError(f"CT window width must be positive, got {width}.")
    return rescale(volume, level - width / 2.0, level + width / 2.0)


#: Headroom of the default PET/SPECT display range: the top of the colour map may rise up to
#: this many times the robust maximum of the uptake (its 99.5th percentile, which is about
#: normal grey matter in a brain PET). A lesion with 2-3x grey-matter uptake then keeps its
#: own colour instead of saturating with normal tissue; a volume with nothing hotter than
#: normal tissue keeps (almost) the old scale, since the top is never above the volume's max.
PET_HEADROOM = 3.0


def functional_range(
    volume: np.ndarray, high: float = 99.5, headroom: float = PET_HEADROOM
) -> tuple[float, float]:
    """The default display range of a scalar PET/SPECT volume, kept for lesions.

    The low end is zero (or a negative minimum); the top is the volume's maximum, but at most
    ``headroom`` times the ``high`` percentile of the uptake (voxels above the minimum). It is
    computed once, so a volume can be scaled batch by batch. SUV or Bq/ml alike: the rule only
    uses ratios. With ``headroom=1`` it is the robust maximum alone (hot lesions saturate).

    Args:
        volume: scalar uptake values of any shape (counts, Bq/ml or SUV).
        high: percentile of the uptake taken as normal tissue's top.
        headroom: how far above that percentile the top of the colour map may go (>= 1).

    Returns:
        ``(lo, hi)`` in the volume's units.

    Example:
        >>> vol = np.r_[np.zeros(10), np.full(1000, 8.0), np.full(5, 24.0)]  # lesion at 3x
        >>> functional_range(vol)
        (0.0, 24.0)
        >>> functional_range(vol, headroom=1.0)
        (0.0, 8.0)
    """
    if headroom < 1.0:
        raise InputError(f"The PET/SPECT headroom must be at least 1, got {headroom:g}.")
    vol = np.asarray(volume)
    _, robust_top = robust_range(vol, 0.0, high)
    top = min(float(vol.max()), headroom * robust_top)
    return min(0.0, float(vol.min())), max(top, robust_top)


def check_display_range(lo: float, hi: float) -> tuple[float, float]:
    """A user's PET/SPECT display range as floats, refused when empty or not finite.

    Args:
        lo: the value shown with the colour map's first colour.
        hi: the value shown with its last colour (higher values saturate).

    Returns:
        ``(lo, hi)`` as floats.

    Example:
        >>> check_display_range(0, 12)
        (0.0, 12.0)
    """
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise InputError(
            f"The PET/SPECT display range {lo:g}..{hi:g} is empty or not finite; give LOW HIGH "
            "with LOW < HIGH in the volume's units (SUV with --suv), e.g. 0 12."
        )
    return lo, hi


def normalize_functional(volume: np.ndarray, high: float = 99.5) -> np.ndarray:
    """Scalar PET/SPECT (counts, Bq/ml or SUV) to [0, 1] with :func:`functional_range`.

    Args:
        volume: scalar uptake values of any shape.
        high: percentile of the uptake taken as normal tissue's top.

    Returns:
        float32 values on [0, 1], zero staying zero.
    """
    return rescale(volume, *functional_range(volume, high))


#: A CT in Hounsfield units has air near -1000 HU and fat near -100 HU: its minimum is below this.
HU_MIN_BELOW = -100.0
#: Warn when a CT window maps more than this share of the tissue to white.
MAX_SATURATED_SHARE = 0.5


def ct_warnings(volume: np.ndarray, window: str | tuple[float, float] = "brain") -> list[str]:
    """What looks wrong about a CT and its window, as sentences for the user (empty: nothing).

    Two checks: the values are not Hounsfield-like (no value below -100 HU, so no air and no
    fat: a CT stored as raw or shifted numbers), and the window turns most of the tissue
    (voxels above the minimum, and above -500 HU when in HU) white.

    Args:
        volume: CT values of any shape.
        window: a preset name of :data:`CT_WINDOWS` or ``(level, width)`` in HU.

    Returns:
        A list of warnings.

    Example:
        >>> ct_warnings(np.array([-1000.0, -1000.0, 30.0, 40.0, 50.0, 900.0]))
        []
        >>> len(ct_warnings(np.array([0.0, 500.0, 900.0, 1200.0])))
        2
    """
    vol = np.asarray(volume)
    level, width = CT_WINDOWS[window] if isinstance(window, str) else window
    out = []
    vmin = float(vol.min())
    hu_like = vmin < HU_MIN_BELOW
    if not hu_like:
        out.append(
            f"The CT's values ({vmin:g}..{float(vol.max()):g}) do not look like Hounsfield "
            "units (no air near -1000, no fat near -100): CT windows assume HU, so the picture "
            "may be washed out. Convert the CT to HU (apply its rescale slope and intercept) "
            "or give --ct-window LEVEL,WIDTH in its own units."
        )
    tissue = vol > (max(vmin, -500.0) if hu_like else vmin)
    if tissue.any():
        share = float(np.count_nonzero(tissue & (vol >= level + width / 2.0))) / tissue.sum()
        if share > MAX_SATURATED_SHARE:
            out.append(
                f"The CT window (level {level:g}, width {width:g}) shows {share:.0%} of the "
                "tissue as white; choose a wider window (e.g. --ct-window soft-tissue, bone "
                "or LEVEL,WIDTH)."
            )
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 with rounding and clipping (what a saved PNG or NRRD holds).

    Args:
        image: floats on [0, 1], any shape.

    Returns:
        uint8 values 0..255.

    Example:
        >>> to_uint8(np.array([0.0, 0.5, 1.2])).tolist()
        [0, 128, 255]
    """
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def colormap_lut(name: str, size: int = 256) -> np.ndarray:
    """A (size, 3) float32 lookup table on [0, 1] for a colour map name.

    Args:
        name: ``harvard-pet``, ``harvard-spect`` or a matplotlib colour map name.
        size: number of entries.

    Returns:
        The lookup table (size, 3), float32 on [0, 1].
    """
    if name in COLORMAPS:
        curve = np.asarray(COLORMAPS[name], dtype=np.float32) / 255.0
        pos = np.linspace(0.0, 1.0, len(curve))
        x = np.linspace(0.0, 1.0, size)
        return np.stack([np.interp(x, pos, curve[:, c]) for c in range(3)], axis=1).astype(
            np.float32
        )
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        known = ", ".join(COLORMAPS)
        raise InputError(
            f"Unknown colour map '{name}'; use {known} or a matplotlib name."
        ) from None
    return cmap(np.linspace(0.0, 1.0, size))[:, :3].astype(np.float32)


def apply_colormap(values: np.ndarray, name: str) -> np.ndarray:
    """Scalars on [0, 1] (any shape) to channel-last RGB float32 on [0, 1].

    Args:
        values: scalars on [0, 1], any shape.
        name: a colour map name (see :func:`colormap_lut`).

    Returns:
        RGB float32 on [0, 1], the input's shape plus a last axis of 3.

    Example:
        >>> apply_colormap(np.array([0.0, 1.0]), "gray").tolist()
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """
    lut = colormap_lut(name)
    idx = np.rint(np.clip(values, 0.0, 1.0) * (len(lut) - 1)).astype(np.intp)
    return lut[idx]
