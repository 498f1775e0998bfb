"""What registration measures and optimises: the intensity image, Mattes MI, the pyramid.

ITK convention: a transform maps fixed (MRI) points to moving points; Mattes MI is negative,
lower is better.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from EDPSNLib import interrupts
from EDPSNLib.color import LUMA_WEIGHTS
from EDPSNLib.errors import RegistrationError
from EDPSNLib.volume.io import Volume

__all__ = ["MIN_SAMPLES", "registration_image", "mattes_mi", "pyramid_level", "optimise"]

#: BT.601 luma weights: registration of RGB volumes runs on their luminance.
_LUMA = np.array(LUMA_WEIGHTS, dtype=np.float32)
#: Fewest metric samples per evaluation: 2 % of a small or coarse image is too noisy.
MIN_SAMPLES = 20_000
#: ITK's recursive Gaussian needs at least this many voxels along an axis it smooths.
MIN_SMOOTHED_VOXELS = 4


def registration_image(vol: Volume) -> sitk.Image:
    """The image registration sees: float32 luminance clipped to its 0.5-99.5 percentiles.

    A few outliers (metal, CT padding, PET hot spots) would otherwise squeeze the tissue into
    one or two of the metric's histogram bins.

    Args:
        vol: a scalar or RGB volume.

    Returns:
        A float32 scalar image on ``vol``'s grid.

    Example:
        >>> import SimpleITK as sitk
        >>> img = registration_image(Volume(sitk.Image([8, 8, 8], sitk.sitkUInt8), "MR"))
        >>> img.GetPixelIDTypeAsString()
        '32-bit float'
    """
    if vol.is_rgb:
        img = sitk.GetImageFromArray(vol.array.astype(np.float32) @ _LUMA)
        img.CopyInformation(vol.image)
    else:
        img = sitk.Cast(vol.image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(img).ravel()
    lo, hi = np.percentile(arr[:: max(1, arr.size // 200_000)], [0.5, 99.5])
    return sitk.Clamp(img, sitk.sitkFloat32, float(lo), float(hi)) if hi > lo else img


def metric_method(
    bins: int, fraction: float, seed: int, threads: int | None, image: sitk.Image
) -> sitk.ImageRegistrationMethod:
    """An ITK registration method set up with our Mattes MI sampling (no optimiser yet)."""
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    r.SetMetricSamplingStrategy(r.RANDOM)
    n = float(np.prod(image.GetSize()))
    r.SetMetricSamplingPercentage(min(1.0, max(fraction, MIN_SAMPLES / n)), seed)
    r.SetInterpolator(sitk.sitkLinear)
    # Gradients at the sampled points only: a full-resolution gradient image of a 256^3
    # volume costs seconds per call and is not needed for a 2 % sample.
    r.SetMetricUseFixedImageGradientFilter(False)
    r.SetMetricUseMovingImageGradientFilter(False)
    if threads:
        r.SetNumberOfThreads(threads)
    return r


def mattes_mi(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    bins: int = 50,
    fraction: float = 0.02,
    seed: int = 1,
    threads: int | None = None,
) -> float:
    """Mattes mutual information of two images under ``transform``.

    Args:
        fixed: the reference image (its voxels are sampled).
        moving: the image looked up at ``transform(x)``.
        transform: fixed -> moving points.
        bins: histogram bins.
        fraction: fraction of fixed voxels sampled (at least :data:`MIN_SAMPLES`).
        seed: sampling seed (the same seed samples the same voxels).
        threads: ITK threads (None: ITK's global default).

    Returns:
        MI in ITK's sign: negative, lower is better.

    Raises:
        RegistrationError: too few samples fall inside the moving image.
    """
    r = metric_method(bins, fraction, seed, threads, fixed)
    r.SetInitialTransform(transform, inPlace=False)
    try:
        return float(r.MetricEvaluate(fixed, moving))
    except RuntimeError:
        raise RegistrationError(
            "The volumes do not overlap enough to compare them (too few metric samples "
            "inside the moving volume). Check that the right volumes are paired, or try "
            "{0} or {1}.",
            options=[("init", "geometry"), ("init", "moments")],
        ) from None


def pyramid_level(image: sitk.Image, factor: int) -> sitk.Image:
    """``image`` block-averaged by about ``factor`` and smoothed by half a coarse voxel.

    The factor is smaller along thick-slice or short axes, so coarse voxels stay near
    isotropic and >= 8 per axis; together with the smoothing this is about the usual
    2/1/0-voxel Gaussian of a 4/2/1 pyramid. Axes shorter than 4 voxels (a 2-3 slice MRI)
    are neither shrunk nor smoothed (ITK's recursive Gaussian needs 4).

    Args:
        image: a 3-D scalar image.
        factor: the nominal shrink factor (1: ``image`` itself).

    Returns:
        The coarse image (same physical box).

    Example:
        >>> import SimpleITK as sitk
        >>> pyramid_level(sitk.Image([64, 64, 3], sitk.sitkFloat32), 4).GetSize()
        (16, 16, 3)
    """
    if factor == 1:
        return image
    spacing, size = np.array(image.GetSpacing()), np.array(image.GetSize())
    f = np.clip(np.rint(factor * spacing.min() / spacing), 1, factor)
    f = np.minimum(f, np.maximum(1, size // 8)).astype(int)
    out = sitk.BinShrink(image, f.tolist())
    for axis, (n, s) in enumerate(zip(out.GetSize(), out.GetSpacing())):
        if n >= MIN_SMOOTHED_VOXELS:
            out = sitk.RecursiveGaussian(out, sigma=0.5 * s, direction=axis)
    return out


def _braces(text: str) -> str:
    """``text`` safe inside a message template (literal braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


#: progress(iterations done in this level, metric value)
IterationCallback = Callable[[int, float], None]


def optimise(
    fixed: list[sitk.Image],
    moving: list[sitk.Image],
    transform: sitk.Transform,
    bins: int,
    fraction: float,
    seed: int,
    iterations: int,
    threads: int | None,
    on_level: Callable[[int], IterationCallback | None] | None = None,
    first_step: float = 2.0,
) -> tuple[int, str]:
    """Regular-step gradient descent over pyramid levels (coarse first), in place on ``transform``.

    Args:
        fixed: fixed images, coarse to fine.
        moving: moving images, coarse to fine.
        transform: the start; optimised in place.
        bins, fraction, seed, threads: the metric's settings (see :func:`mattes_mi`).
        iterations: the most iterations per level.
        on_level: called with the level index before each level; may return a callback
            that gets (iterations so far in the level, metric value) after each iteration.
        first_step: the optimiser's first step (about mm, through the physical-shift scales).

    Returns:
        (iterations over all levels, the optimiser's stop reason at the last level).

    Raises:
        RegistrationError: the volumes lost their overlap while optimising.
    """
    count, reason = 0, ""
    for level, (f_img, m_img) in enumerate(zip(fixed, moving)):
        r = metric_method(bins, fraction, seed, threads, f_img)
        r.SetOptimizerAsRegularStepGradientDescent(
            learningRate=first_step,
            minStep=1e-3,
            numberOfIterations=iterations,
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        r.SetOptimizerScalesFromPhysicalShift()  # steps of ~1 mm for rotations and shifts alike
        r.SetInitialTransform(transform, inPlace=True)
        tick = on_level(level) if on_level is not None else None
        r.AddCommand(sitk.sitkIterationEvent, lambda r=r, tick=tick: _on_iteration(r, tick))
        try:
            r.Execute(f_img, m_img)
        except RuntimeError as exc:
            raise RegistrationError(
                "Registration stopped: the volumes lost their overlap while optimising "
                f"({_braces(str(exc).strip().splitlines()[-1][:160])}). Try {{0}}, or check "
                "that the two volumes show the same body region.",
                options=[("init", "moments")],
            ) from None
        count += r.GetOptimizerIteration()
        reason = r.GetOptimizerStopConditionDescription()
        if interrupts.requested():  # the deferred interrupt is raised when registration returns
            break
    return count, reason


def _on_iteration(r: sitk.ImageRegistrationMethod, tick: Callable | None) -> None:
    """After each optimiser iteration: stop at once when Ctrl-C or SIGTERM is waiting (ITK
    runs the loop, so the interrupt is deferred until it returns), else report progress."""
    if interrupts.requested():
        r.StopRegistration()
    elif tick is not None:
        tick(r.GetOptimizerIteration() + 1, r.GetMetricValue())
