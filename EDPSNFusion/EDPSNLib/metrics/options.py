"""The conventions of the seven fusion metrics as one value: :class:`MetricOptions`.

The defaults are the textbook definitions of docs/metrics.md. Published tables are often made
with other conventions; :data:`CDDFUSE_EVALUATOR` reproduces the evaluator most recent fusion
papers use (MMIF-CDDFuse ``utils/Evaluator.py``), checked against its values by
``Testing/test_metrics_golden.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from EDPSNLib.errors import InputError


def check_options(data_range: float = 255.0, peak: float | None = 255.0) -> None:
    """Raise :class:`InputError` for an SSIM data range or a PSNR peak that is not > 0.

    Args:
        data_range: SSIM dynamic range L (255 for 8-bit images).
        peak: PSNR peak, or None for the maximum of F.

    Returns:
        None; raises :class:`EDPSNLib.errors.InputError` on a bad value.

    Example:
        >>> check_options(255.0, None)
        >>> check_options(0.0)
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.InputError: SSIM data range must be > 0 (255 for 8-bit images), got 0.0.
    """
    if not data_range > 0:
        raise InputError(f"SSIM data range must be > 0 (255 for 8-bit images), got {data_range}.")
    if peak is not None and not peak > 0:
        raise InputError(f"PSNR peak must be > 0 (255 for 8-bit images) or None, got {peak}.")


@dataclass(frozen=True)
class MetricOptions:
    """How the seven metrics are computed where conventions differ (docs/metrics.md).

    Attributes:
        ssim_data_range: SSIM dynamic range L: C1 = (0.01 L)^2, C2 = (0.03 L)^2. 255 for
            images on 0..255; 2.0 reproduces tables made with old scikit-image releases,
            which took the float dtype's range -1..1 when none was given.
        ssim_sample_covariance: (co)variances with the sample normalisation 49/48, as
            scikit-image's default; False gives Wang et al.'s population form.
        psnr_peak: PSNR peak; None takes the maximum of F (inside the mask), as the CDDFuse
            evaluator does.
        round_luma: round the luma (and grey inputs) half to even before scoring, as an
            evaluator that reads 8-bit grey images does.
        qabf_equal_strength_slip: in Q^AB/F, where the edge strengths g_S of a source and
            g_F of F are exactly equal, take the strength ratio as g_F instead of 1 (a slip
            in the CDDFuse evaluator's code, kept only to reproduce its values).
        qabf_flipped_sobel_x: in Q^AB/F, s_x = left - right instead of right - left, as
            the CDDFuse evaluator gets it from ``convolve2d`` (which flips its x kernel; its
            y kernel is given pre-flipped). It changes only pixels where s_x = 0 in one
            image and not in the other: their angle pi/2 meets the other angles negated.

    Example:
        >>> MetricOptions().psnr_peak
        255.0
        >>> CDDFUSE_EVALUATOR.psnr_peak is None and CDDFUSE_EVALUATOR.round_luma
        True
        >>> MetricOptions(psnr_peak=0.0)
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.InputError: PSNR peak must be > 0 (255 for 8-bit images) or None, got 0.0.
    """

    ssim_data_range: float = 255.0
    ssim_sample_covariance: bool = True
    psnr_peak: float | None = 255.0
    round_luma: bool = False
    qabf_equal_strength_slip: bool = False
    qabf_flipped_sobel_x: bool = False

    def __post_init__(self) -> None:
        check_options(self.ssim_data_range, self.psnr_peak)


#: The textbook conventions (docs/metrics.md): SSIM L = 255 with sample covariance, PSNR
#: peak 255, luma not rounded, Q^AB/F with Xydeas & Petrovic's rule and MATLAB's Sobel
#: orientation (``filter2``, correlation: s_x = right - left, s_y = bottom - top).
DEFAULT_OPTIONS = MetricOptions()

#: The CDDFuse evaluator (Zhaozixiang1228/MMIF-CDDFuse ``utils/Evaluator.py``) on its own
#: reader's rounded grey images: PSNR peak = max(F), Q^AB/F with its equal-strength slip
#: and its flipped s_x, SSIM a sum with data range 255 (the evaluator as run with a current scikit-image; pass
#: ``dataclasses.replace(CDDFUSE_EVALUATOR, ssim_data_range=2.0)`` for tables made with the
#: old scikit-image default). Matches its published values to about 1e-9 relative.
CDDFUSE_EVALUATOR = MetricOptions(
    psnr_peak=None, round_luma=True, qabf_equal_strength_slip=True, qabf_flipped_sobel_x=True
)
