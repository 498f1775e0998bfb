"""The seven fusion metrics (EN, SD, SCD, Q^AB/F, VIF, PSNR, SSIM) on grey images, vectorised.

The public calls live in :mod:`EDPSNLib.metrics.compute` and are re-exported here; the
building blocks are ``filters`` (separable filters), ``maps`` (per-pixel maps), ``local``
(windowed statistics) and ``checks`` (input validation).
"""

from EDPSNLib.metrics.compute import (
    CONSTANT_VARIANCE,
    DEFAULT_WORKERS,
    METRIC_NAMES,
    PSNR_CAP_DB,
    entropy,
    fusion_metrics,
    fusion_metrics_batch,
    fusion_metrics_regions,
    psnr,
    qabf,
    scd,
    ssim,
    ssim_index,
    standard_deviation,
    vif,
    vifp,
)

__all__ = [
    "CONSTANT_VARIANCE",
    "DEFAULT_WORKERS",
    "METRIC_NAMES",
    "PSNR_CAP_DB",
    "entropy",
    "fusion_metrics",
    "fusion_metrics_batch",
    "fusion_metrics_regions",
    "psnr",
    "qabf",
    "scd",
    "ssim",
    "ssim_index",
    "standard_deviation",
    "vif",
    "vifp",
]
