"""The seven fusion metrics (EN, SD, SCD, Q^AB/F, VIF, PSNR, SSIM) on grey images, vectorised.

The public calls are re-exported here: all seven together from
:mod:`EDPSNLib.metrics.compute`, one at a time from :mod:`EDPSNLib.metrics.single`, their
conventions as one :class:`MetricOptions` from :mod:`EDPSNLib.metrics.options`. The building
blocks are ``runner`` (chunks and threads), ``filters`` (separable filters), ``maps``
(per-pixel maps), ``local`` (windowed statistics) and ``checks`` (input validation).
"""

from EDPSNLib.metrics.compute import (
    METRIC_NAMES,
    PSNR_CAP_DB,
    fusion_metrics,
    fusion_metrics_batch,
    fusion_metrics_regions,
)
from EDPSNLib.metrics.maps import CONSTANT_VARIANCE
from EDPSNLib.metrics.options import CDDFUSE_EVALUATOR, DEFAULT_OPTIONS, MetricOptions
from EDPSNLib.metrics.runner import DEFAULT_WORKERS
from EDPSNLib.metrics.single import (
    entropy,
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
    "CDDFUSE_EVALUATOR",
    "CONSTANT_VARIANCE",
    "DEFAULT_OPTIONS",
    "DEFAULT_WORKERS",
    "METRIC_NAMES",
    "PSNR_CAP_DB",
    "MetricOptions",
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
