"""The seven fusion quality metrics together: EN, SD, SCD, Q^AB/F, VIF, PSNR and SSIM.

A and B are the two sources (MRI, and CT or PET/SPECT), F the fused image, all on 0..255.
Colour images are reduced to BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B (float64, not
rounded unless ``options.round_luma``). The conventions are one :class:`MetricOptions`
value: the textbook ones by default, :data:`CDDFUSE_EVALUATOR` for the evaluator most recent
fusion papers use; docs/metrics.md lists them.

``mask`` restricts every metric to its pixels. A slice where nothing is left to evaluate (an
empty mask, or for SSIM/VIF no window centre inside it) gets 0.0: exclude such slices with
``mask.any(axis=(1, 2))`` before averaging. Degenerate images give defined values, never NaN.
:func:`fusion_metrics_regions` scores several masks (entropy regions) at little more than the
cost of one: the per-pixel maps (:mod:`EDPSNLib.metrics.maps`, :mod:`EDPSNLib.metrics.local`)
are computed once per chunk of slices and only the sums are repeated per mask. The metrics
one at a time are in :mod:`EDPSNLib.metrics.single`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from EDPSNLib import names
from EDPSNLib.errors import InputError
from EDPSNLib.metrics import local as ml
from EDPSNLib.metrics import maps as mm
from EDPSNLib.metrics.checks import prepare, region_masks
from EDPSNLib.metrics.filters import Workspace
from EDPSNLib.metrics.local import VIF_MIN_SIZE
from EDPSNLib.metrics.maps import Mask
from EDPSNLib.metrics.options import CDDFUSE_EVALUATOR, DEFAULT_OPTIONS, MetricOptions
from EDPSNLib.metrics.runner import Result, run

__all__ = [
    "CDDFUSE_EVALUATOR",
    "DEFAULT_OPTIONS",
    "METRIC_NAMES",
    "PSNR_CAP_DB",
    "MetricOptions",
    "fusion_metrics",
    "fusion_metrics_batch",
    "fusion_metrics_regions",
]

METRIC_NAMES = names.METRIC_NAMES
#: PSNR is clipped to +-100 dB; +100 dB is also the value for MSE = 0 (identical images).
PSNR_CAP_DB = 100.0


def _check_options(options: MetricOptions) -> MetricOptions:
    if not isinstance(options, MetricOptions):
        raise InputError(
            f"options must be a MetricOptions (e.g. MetricOptions(psnr_peak=None) or "
            f"CDDFUSE_EVALUATOR), got {type(options).__name__}."
        )
    return options


def seven_metrics(
    abf: np.ndarray, *, masks: list[Mask], ws: Workspace, options: MetricOptions
) -> list[Result]:
    """The seven metrics of one chunk for each mask: the core :func:`fusion_metrics_batch` runs.

    The maps (filtering, transcendentals) are computed once; only the sums run per mask.

    Args:
        abf: A, B, F luma stacked (3, n, H, W), float64.
        masks: bool (n, H, W) masks or None (whole image), one result each.
        ws: the thread's workspace.
        options: the conventions.

    Returns:
        One ``{name: (n,)}`` per mask.
    """
    f = abf[2]
    prods = ml.moment_products(abf, ws)  # A F, B F, A^2, B^2, F^2: shared by SSIM and VIF
    ssim_map = ml.ssim_maps(abf, options.ssim_data_range, options.ssim_sample_covariance, prods, ws)
    vif_maps = ml.vif_maps(abf, prods, ws)
    levels, diffs = mm.entropy_maps(f, ws), mm.difference_maps(abf, ws)
    qabf_maps = mm.qabf_maps(
        abf, ws, options.qabf_equal_strength_slip, options.qabf_flipped_sobel_x
    )
    return [
        {
            "EN": mm.entropy_reduce(levels, m),
            "SD": mm.std_reduce(f, m, ws),
            "SCD": mm.scd_reduce(diffs, abf, m, ws),
            "Qabf": mm.qabf_reduce(qabf_maps, m),
            "VIF": ml.vif_reduce(vif_maps, m, ws).sum(axis=0),
            "PSNR": mm.psnr_reduce(diffs, f, m, options.psnr_peak, PSNR_CAP_DB),
            "SSIM": ml.ssim_reduce(ssim_map, m),
        }
        for m in masks
    ]


def _scored(
    named: dict[str, ArrayLike],
    regions: ArrayLike | None,
    mask: ArrayLike | None,
    options: MetricOptions,
    workers: int | None,
    batched: bool,
) -> list[Result]:
    """The seven metrics over ``mask`` (one Result), or over the whole image and each of the
    (K, N, H, W) ``regions`` (1 + K Results)."""
    _check_options(options)
    arrays, m, _ = prepare(named, mask, batched=batched, min_size=VIF_MIN_SIZE)
    chosen = [m] if regions is None else [None, *region_masks(regions, *arrays[0].shape[:3])]

    def core(lin: np.ndarray, masks: list[Mask], ws: Workspace) -> list[Result]:
        """The seven metrics of a chunk's luma ``lin`` (k, n, H, W): one Result per mask."""
        return seven_metrics(lin, masks=masks, ws=ws, options=options)

    return run(core, arrays, chosen, METRIC_NAMES, options.round_luma, workers)


def fusion_metrics_regions(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    masks: ArrayLike,
    *,
    options: MetricOptions = DEFAULT_OPTIONS,
    workers: int | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """The seven metrics of N slices over the whole image and inside each of K masks.

    Each per-mask result equals ``fusion_metrics_batch(a, b, f, mask=masks[k])``, but the
    filtered maps are computed once for all masks; only the sums are repeated.

    Args:
        a: the MRI, (N, H, W) grey or (N, H, W, 3) RGB on 0..255, H, W >= 41.
        b: the CT/PET/SPECT image, same shape rules.
        f: the fused image, same shape rules.
        masks: (K, N, H, W) bool, e.g. the three entropy regions.
        options: the conventions (default: textbook; :data:`CDDFUSE_EVALUATOR`).
        workers: threads sharing the slices (default ``DEFAULT_WORKERS``).

    Returns:
        The whole-image ``{name: float64 (N,)}`` and a list of K such dicts, one per mask.

    Example:
        >>> x = np.tile(np.arange(64.0), (1, 64, 1))  # one 64 x 64 ramp
        >>> whole, (left,) = fusion_metrics_regions(x, x, x, x[None] < 32)
        >>> round(float(whole["SSIM"][0]), 6), round(float(left["SD"][0]), 3)
        (2.0, 9.233)
    """
    named = {"a": a, "b": b, "f": f}
    out = _scored(named, masks, None, options, workers, batched=True)
    return out[0], out[1:]


def fusion_metrics_batch(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    options: MetricOptions = DEFAULT_OPTIONS,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """The seven metrics of N fused slices, one value per slice and metric.

    Args:
        a: the MRI, (N, H, W) grey or (N, H, W, 3) RGB on 0..255, H, W >= 41; any numeric
            dtype.
        b: the CT/PET/SPECT image, same shape rules (may differ from ``a`` in grey/RGB).
        f: the fused image, same shape rules.
        mask: (N, H, W) bool restricting every metric to its pixels, or None.
        options: the conventions (default: textbook; :data:`CDDFUSE_EVALUATOR` reproduces the
            CDDFuse evaluator).
        workers: threads sharing the slices (default ``DEFAULT_WORKERS``).

    Returns:
        ``{name: float64 (N,)}`` for the names of :data:`METRIC_NAMES`.

    Example:
        >>> x = np.tile(np.arange(64.0), (2, 64, 1))  # two 64 x 64 ramps
        >>> out = fusion_metrics_batch(x, x, x)
        >>> out["PSNR"].tolist(), out["EN"].round(6).tolist()
        ([100.0, 100.0], [6.0, 6.0])
    """
    return _scored({"a": a, "b": b, "f": f}, None, mask, options, workers, batched=True)[0]


def fusion_metrics(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    options: MetricOptions = DEFAULT_OPTIONS,
) -> dict[str, float]:
    """The seven metrics of one fused image.

    Args:
        a: the MRI, (H, W) grey or (H, W, 3) RGB on 0..255, H, W >= 41; any numeric dtype.
        b: the CT/PET/SPECT image, same shape rules.
        f: the fused image, same shape rules.
        mask: (H, W) bool restricting every metric to its pixels, or None.
        options: the conventions, as in :func:`fusion_metrics_batch`.

    Returns:
        ``{name: float}`` for the names of :data:`METRIC_NAMES`.

    Example:
        >>> a = np.tile(np.arange(64.0), (64, 1))
        >>> out = fusion_metrics(a, 255 - a, a, options=CDDFUSE_EVALUATOR)
        >>> sorted(out) == sorted(METRIC_NAMES), round(out["SD"], 4)
        (True, 18.473)
    """
    out = _scored({"a": a, "b": b, "f": f}, None, mask, options, 1, batched=False)[0]
    return {k: float(v[0]) for k, v in out.items()}
