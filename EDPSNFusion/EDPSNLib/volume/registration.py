"""Register a CT/PET/SPECT volume onto an MRI: rigid (optionally affine) Mattes MI with SimpleITK.

Transforms follow ITK: ``T`` maps a point of the fixed (MRI) space to the moving space, so
``resample_to(fixed, moving, T)`` brings the moving volume onto the fixed grid. A result is
checked before it is returned (overlap, metric gain, plausible motion); when a check fails a
:class:`RegistrationError` says why, instead of handing back a wrong transform.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from EDPSNLib.color import LUMA_WEIGHTS
from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.names import REGISTRATION_METHODS
from EDPSNLib.volume.io import Volume
from EDPSNLib.volume.transforms import (
    corner_points,
    linear_parts,
    load_transform,
    overlap_fraction,
    read_rire_points,
    rotation_deg,
    save_transform,
    transform_points,
)

__all__ = [
    "METHODS",
    "INITS",
    "RegistrationResult",
    "register",
    "initial_transform",
    "mattes_mi",
    "registration_image",
    "pyramid_level",
    "overlap_fraction",
    "linear_parts",
    "transform_points",
    "resample_to",
    "save_transform",
    "load_transform",
    "read_rire_points",
]

METHODS = REGISTRATION_METHODS
INITS = ("auto", "geometry", "moments", "identity")
#: header: as the headers say, refusing a clearly better 180-degree fit; search: try the 24
#: axis-aligned turns; trust: as the headers say, without that check.
ORIENTATIONS = ("header", "search", "trust")
#: BT.601 luma weights: registration of RGB volumes runs on their luminance.
_LUMA = np.array(LUMA_WEIGHTS, dtype=np.float32)


@dataclass
class RegistrationResult:
    """A transform (fixed -> moving points) and how it was found; metrics are Mattes MI as
    ITK reports it (negative: lower is better), evaluated at full resolution."""

    transform: sitk.Transform
    final_metric: float
    metric_before: float
    iterations: int
    stop_reason: str
    method: str
    init: str = "geometry"
    overlap: float = 1.0
    elapsed_s: float = 0.0
    orientation: str = "as in the headers"


def registration_image(vol: Volume) -> sitk.Image:
    """The image registration sees: float32 luminance clipped to its 0.5-99.5 percentiles, so
    that a few outliers (metal, CT padding) do not squeeze the tissue into one or two bins."""
    if vol.is_rgb:
        img = sitk.GetImageFromArray(vol.array.astype(np.float32) @ _LUMA)
        img.CopyInformation(vol.image)
    else:
        img = sitk.Cast(vol.image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(img).ravel()
    lo, hi = np.percentile(arr[:: max(1, arr.size // 200_000)], [0.5, 99.5])
    return sitk.Clamp(img, sitk.sitkFloat32, float(lo), float(hi)) if hi > lo else img


def _centre(image: sitk.Image) -> tuple[float, ...]:
    return image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])


def initial_transform(
    fixed: sitk.Image, moving: sitk.Image, init: str = "geometry"
) -> sitk.Euler3DTransform:
    """Start transform: volume centres ('geometry'), foreground centres of mass ('moments': Otsu
    masks, so CT air or PET background do not pull the centre), or 'identity' (about the fixed centre)."""
    if init not in INITS[1:]:
        raise InputError(f"Unknown init '{init}'; choose one of {', '.join(INITS)}.")
    if init == "identity":
        t = sitk.Euler3DTransform()
        t.SetCenter(_centre(fixed))
        return t
    if init == "moments":
        fixed, moving = (sitk.OtsuThreshold(i, 0, 1) for i in (fixed, moving))
        mode = sitk.CenteredTransformInitializerFilter.MOMENTS
    else:
        mode = sitk.CenteredTransformInitializerFilter.GEOMETRY
    t = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode)
    return sitk.Euler3DTransform(t)


#: Fewest metric samples per evaluation: 2 % of a small or coarse image is too noisy.
MIN_SAMPLES = 20_000


def _method(
    bins: int, fraction: float, seed: int, threads: int | None, image: sitk.Image
) -> sitk.ImageRegistrationMethod:
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
    """Mattes MI (ITK sign: negative, lower is better) of two images under ``transform``."""
    r = _method(bins, fraction, seed, threads, fixed)
    r.SetInitialTransform(transform, inPlace=False)
    try:
        return float(r.MetricEvaluate(fixed, moving))
    except RuntimeError:
        raise RegistrationError(
            "The volumes do not overlap enough to compare them (too few metric samples "
            "inside the moving volume). Check that the right volumes are paired, or try "
            "init='geometry' or init='moments'."
        ) from None


def pyramid_level(image: sitk.Image, factor: int) -> sitk.Image:
    """``image`` block-averaged by about ``factor`` (less along thick-slice or short axes, so
    coarse voxels stay near-isotropic and >= 8 per axis), then smoothed by half a coarse voxel:
    together about the usual 2/1/0-voxel Gaussian of a 4/2/1 pyramid."""
    if factor == 1:
        return image
    spacing, size = np.array(image.GetSpacing()), np.array(image.GetSize())
    f = np.clip(np.rint(factor * spacing.min() / spacing), 1, factor)
    f = np.minimum(f, np.maximum(1, size // 8)).astype(int)
    out = sitk.BinShrink(image, f.tolist())
    return sitk.SmoothingRecursiveGaussian(out, (0.5 * np.array(out.GetSpacing())).tolist())


def _optimise(
    fixed: list[sitk.Image],
    moving: list[sitk.Image],
    transform: sitk.Transform,
    bins: int,
    fraction: float,
    seed: int,
    iterations: int,
    threads: int | None,
) -> tuple[int, str]:
    """Regular-step gradient descent over pyramid levels (coarse first); in place on ``transform``."""
    count, reason = [0], ""
    for f_img, m_img in zip(fixed, moving):
        r = _method(bins, fraction, seed, threads, f_img)
        r.SetOptimizerAsRegularStepGradientDescent(
            learningRate=2.0,
            minStep=1e-3,
            numberOfIterations=iterations,
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        r.SetOptimizerScalesFromPhysicalShift()  # steps of ~1 mm for rotations and shifts alike
        r.SetInitialTransform(transform, inPlace=True)
        r.AddCommand(sitk.sitkIterationEvent, lambda: count.__setitem__(0, count[0] + 1))
        try:
            r.Execute(f_img, m_img)
        except RuntimeError as exc:
            raise RegistrationError(
                "Registration stopped: the volumes lost their overlap while optimising "
                f"({str(exc).strip().splitlines()[-1][:160]}). Try init='moments', or check "
                "that the two volumes show the same body region."
            ) from None
        reason = r.GetOptimizerStopConditionDescription()
    return count[0], reason


def _check(
    fixed: sitk.Image,
    moving: sitk.Image,
    start: sitk.Transform,
    final: sitk.Transform,
    before: float,
    after: float,
    min_overlap: float,
    max_rotation_deg: float,
) -> float:
    """Raise RegistrationError for an implausible result; return the final overlap."""
    overlap = overlap_fraction(fixed, moving, final)
    if overlap < min_overlap:
        raise RegistrationError(
            f"After registration only {overlap:.0%} of the smaller volume overlaps the other; "
            "the result is not trustworthy. Check the pairing or align the volumes roughly first."
        )
    if after > before:
        raise RegistrationError(
            f"Registration made the match worse (Mattes MI {before:.4f} -> {after:.4f}). If the "
            "volumes are already aligned use method='none'; otherwise try init='moments'."
        )
    a0, _ = linear_parts(start)
    a1, _ = linear_parts(final)
    corners = corner_points(fixed)
    moved = float(
        np.linalg.norm(
            transform_points(final, corners) - transform_points(start, corners), axis=1
        ).max()
    )
    extent = min(float(np.ptp(corner_points(i), axis=0).max()) for i in (fixed, moving))
    rotation = rotation_deg(a1 @ a0.T)
    if moved > 0.5 * extent or rotation > max_rotation_deg:
        raise RegistrationError(
            f"Registration moved the volume implausibly far from its start ({moved:.0f} mm at a "
            f"corner for volumes {extent:.0f} mm across, {rotation:.0f} deg rotation). Check the "
            "pairing, or align the volumes roughly first."
        )
    sv = np.linalg.svd(a1, compute_uv=False)
    if sv.min() < 0.5 or sv.max() > 2.0:
        raise RegistrationError(
            f"The affine result scales by {sv.min():.2f}..{sv.max():.2f} (allowed 0.5..2). "
            "Use method='rigid' for the same subject scanned twice."
        )
    return overlap


def _orientations(search: bool) -> list[np.ndarray]:
    """Candidate start rotations: the 24 axis-aligned ones, or identity plus the three
    180-degree turns (a head-first/feet-first or prone/supine mix-up) used as a sentinel."""
    if not search:
        return [
            np.diag(d).astype(float) for d in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))
        ]
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            r = np.zeros((3, 3))
            r[range(3), perm] = signs
            if np.linalg.det(r) > 0:
                out.append(r)
    return sorted(out, key=lambda r: -np.trace(r))  # identity first


def _describe(r: np.ndarray) -> str:
    angle = rotation_deg(r)
    if angle < 1e-6:
        return "as in the headers"
    w, v = np.linalg.eig(r)
    axis = np.real(v[:, np.argmin(np.abs(w - 1))])
    axis = axis * np.sign(axis[np.argmax(np.abs(axis))])
    return f"turned {angle:.0f} deg about ({', '.join(f'{x:.2g}' for x in axis + 0.0)})"


def _pick_orientation(
    f_img: sitk.Image,
    m_img: sitk.Image,
    start: sitk.Euler3DTransform,
    search: bool,
    mi: dict,
) -> tuple[sitk.Euler3DTransform, sitk.Euler3DTransform, str]:
    """Short coarse-level runs from each candidate rotation; return the best one optimised,
    as it was before that run, and in words.

    Without ``search`` a 180-degree candidate that fits clearly better (by 5 % MI) raises
    RegistrationError rather than being used or ignored silently.
    """
    coarse = [pyramid_level(i, 4) for i in (f_img, m_img)]
    runs = []
    for r in _orientations(search):
        t = sitk.Euler3DTransform(start)
        t.SetMatrix((np.array(start.GetMatrix()).reshape(3, 3) @ r).ravel().tolist())
        try:
            runs.append((mattes_mi(*coarse, t, **mi), r, t))
        except RegistrationError:
            continue  # this turn leaves too little overlap; it cannot be the answer
    if not runs:
        raise RegistrationError("No start orientation overlaps enough; check the volumes' pairing.")
    # Refine the four best-scoring starts, and always the first (the headers' own orientation).
    ranked = sorted(range(len(runs)), key=lambda i: runs[i][0])
    scored = []
    for i in sorted({0, *ranked[:4]}):
        _, r, t = runs[i]
        raw = sitk.Euler3DTransform(t)
        try:
            _optimise([coarse[0]], [coarse[1]], t, iterations=60, **mi)
            scored.append((mattes_mi(*coarse, t, **mi), r, t, raw))
        except RegistrationError:
            continue
    if not scored:
        raise RegistrationError(
            "Registration lost the overlap from every start; check the pairing."
        )
    best = min(scored, key=lambda x: x[0])
    header = next((x for x in scored if np.allclose(x[1], np.eye(3))), None)
    if not search and header is not None and best is not header:
        if best[0] < header[0] - 0.05 * abs(header[0]):
            raise RegistrationError(
                f"The moving volume fits much better {_describe(best[1])} (Mattes MI "
                f"{best[0]:.3f} against {header[0]:.3f} as the headers say): the patient "
                "position (head/feet first, prone/supine) differs between the scans, or the "
                "start is wrong. Re-run with orientation='search' to let the registration turn "
                "it, or with init='identity' if both volumes share world coordinates."
            )
        best = header
    return best[2], best[3], _describe(best[1])


def register(
    fixed: Volume,
    moving: Volume,
    method: str = "rigid",
    init: str = "auto",
    *,
    orientation: str = "header",
    bins: int = 50,
    sampling: float = 0.02,
    seed: int = 1,
    iterations: int = 100,
    min_overlap: float = 0.2,
    max_rotation_deg: float = 45.0,
    threads: int | None = None,
) -> RegistrationResult:
    """Register ``moving`` (CT/PET/SPECT) onto ``fixed`` (MRI): rigid Euler3D, optionally
    followed by affine; Mattes MI, a 4/2/1 pyramid (see :func:`pyramid_level`).

    ``init``: 'auto' (identity when both share a DICOM FrameOfReferenceUID, else 'geometry'),
    'geometry', 'moments' or 'identity'. ``orientation='search'`` also tries the 24
    axis-aligned turns of the moving volume; 'trust' skips the check that no 180-degree turn
    fits clearly better (for different patients, where a turned fit can win by chance).
    Raises RegistrationError when the result fails the overlap, metric-gain or plausibility
    checks.
    """
    if method not in METHODS:
        raise InputError(
            f"Unknown registration method '{method}'; choose one of {', '.join(METHODS)}."
        )
    if orientation not in ORIENTATIONS:
        raise InputError(
            f"Unknown orientation '{orientation}'; choose one of {', '.join(ORIENTATIONS)}."
        )
    t0 = time.perf_counter()
    if init == "auto":
        frame = fixed.meta.get("FrameOfReferenceUID")
        init = (
            "identity" if frame and frame == moving.meta.get("FrameOfReferenceUID") else "geometry"
        )
    if method == "none":
        init = "identity"
    f_img, m_img = registration_image(fixed), registration_image(moving)
    start = sitk.Euler3DTransform() if method == "none" else initial_transform(f_img, m_img, init)
    overlap = overlap_fraction(f_img, m_img, start)
    if overlap < min_overlap:
        raise RegistrationError(
            f"After init='{init}' only {overlap:.0%} of the smaller volume overlaps the other "
            "(they start too far apart). Use init='geometry' or init='moments', or check that "
            "both volumes show the same body region."
        )
    mi = dict(bins=bins, fraction=sampling, seed=seed, threads=threads)
    before = mattes_mi(f_img, m_img, start, **mi)
    if method == "none":
        return RegistrationResult(
            start,
            before,
            before,
            0,
            "method='none': identity transform",
            method,
            init,
            overlap,
            time.perf_counter() - t0,
        )
    if orientation == "trust":
        rigid, chosen, turned = sitk.Euler3DTransform(start), start, _describe(np.eye(3))
    else:
        rigid, chosen, turned = _pick_orientation(f_img, m_img, start, orientation == "search", mi)
    f_levels = [pyramid_level(f_img, k) for k in (4, 2, 1)]
    m_levels = [pyramid_level(m_img, k) for k in (4, 2, 1)]
    n, reason = _optimise(f_levels, m_levels, rigid, iterations=iterations, **mi)
    final: sitk.Transform = rigid
    if method == "affine":
        affine = sitk.AffineTransform(3)
        affine.SetCenter(rigid.GetCenter())
        affine.SetMatrix(rigid.GetMatrix())
        affine.SetTranslation(rigid.GetTranslation())
        n2, reason = _optimise(f_levels[1:], m_levels[1:], affine, iterations=iterations, **mi)
        n, final = n + n2, affine
    after = mattes_mi(f_img, m_img, final, **mi)
    overlap = _check(f_img, m_img, chosen, final, before, after, min_overlap, max_rotation_deg)
    return RegistrationResult(
        final, after, before, n, reason, method, init, overlap, time.perf_counter() - t0, turned
    )


def resample_to(
    fixed: Volume,
    moving: Volume,
    transform: sitk.Transform | None = None,
    default_value: float | None = None,
    interpolator: str = "linear",
) -> Volume:
    """``moving`` on ``fixed``'s grid: linear (float32) or nearest, RGB channel by channel (uint8).

    Voxels that map outside ``moving`` get ``default_value`` (default: the moving minimum; 0 for RGB).
    """
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}.get(interpolator)
    if interp is None:
        raise InputError(f"Unknown interpolator '{interpolator}'; choose 'linear' or 'nearest'.")
    t = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    img = moving.image
    if moving.is_rgb:
        fill = 0.0 if default_value is None else float(default_value)
        channels = []
        for c in range(3):
            ch = sitk.VectorIndexSelectionCast(img, c, sitk.sitkFloat32)
            ch = sitk.Resample(ch, fixed.image, t, interp, fill, sitk.sitkFloat32)
            channels.append(
                sitk.Cast(sitk.Clamp(sitk.Round(ch), sitk.sitkFloat32, 0, 255), sitk.sitkUInt8)
            )
        out = sitk.Compose(channels)
    else:
        fill = (
            float(sitk.GetArrayViewFromImage(img).min())
            if default_value is None
            else float(default_value)
        )
        pixel = sitk.sitkFloat32 if interpolator == "linear" else img.GetPixelID()
        out = sitk.Resample(img, fixed.image, t, interp, fill, pixel)
    meta = {k: v for k, v in moving.meta.items() if k != "path"}
    meta["resampled_onto"] = fixed.path
    return Volume(out, moving.modality, meta)
