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
    """Percentiles of the voxels above the volume's minimum (the air/background is left out)."""
    vol = np.asarray(volume)
    vmin = float(vol.min())
    tissue = vol[vol > vmin]
    if tissue.size == 0:
        return vmin, vmin
    lo, hi = np.percentile(tissue, (low, high))
    return float(lo), float(hi)


def rescale(volume: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] to [0, 1], clipped, float32; a flat range gives zeros."""
    vol = np.asarray(volume, dtype=np.float32)
    if hi <= lo:
        return np.zeros_like(vol)
    return np.clip((vol - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


def normalize_mri(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """MRI to [0, 1] by robust percentiles of the tissue (MR has no absolute scale)."""
    lo, hi = robust_range(volume, low, high)
    return rescale(volume, min(lo, float(np.min(volume))), hi)


def window_ct(volume: np.ndarray, window: str | tuple[float, float] = "brain") -> np.ndarray:
    """CT in HU to [0, 1] through a window: a preset name or (level, width)."""
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


def functional_range(volume: np.ndarray, high: float = 99.5) -> tuple[float, float]:
    """The (lo, hi) that :func:`normalize_functional` maps to (0, 1): zero (or a negative
    minimum) and the robust maximum; computed once so a volume can be scaled batch by batch."""
    _, hi = robust_range(volume, 0.0, high)
    return min(0.0, float(np.min(volume))), hi


def normalize_functional(volume: np.ndarray, high: float = 99.5) -> np.ndarray:
    """Scalar PET/SPECT (counts, Bq/ml or SUV) to [0, 1]: zero stays zero, robust maximum to 1."""
    return rescale(volume, *functional_range(volume, high))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 with rounding and clipping (what a saved PNG or NRRD holds)."""
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def colormap_lut(name: str, size: int = 256) -> np.ndarray:
    """A (size, 3) float32 lookup table on [0, 1] for a colour map name."""
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
    """Scalars on [0, 1] (any shape) to channel-last RGB float32 on [0, 1]."""
    lut = colormap_lut(name)
    idx = np.rint(np.clip(values, 0.0, 1.0) * (len(lut) - 1)).astype(np.intp)
    return lut[idx]
