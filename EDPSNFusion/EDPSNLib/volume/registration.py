"""Register a CT/PET/SPECT volume onto an MRI: rigid (optionally affine) Mattes MI with SimpleITK.

Transforms follow ITK: ``T`` maps a point of the fixed (MRI) space to the moving space, so
``resample_to(fixed, moving, T)`` brings the moving volume onto the fixed grid. A result is
checked before it is returned (sizes, overlap, metric gain, plausible motion, overlap of the
body outlines); when a check fails a :class:`RegistrationError` says why, with the figure,
instead of handing back a wrong transform. The parts: ``registration_metric`` (image, metric,
pyramid, optimiser), ``registration_orientation`` (start turns), ``registration_quality``
(the checks), ``transforms`` (points, overlap, files).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.names import REGISTRATION_METHODS
from EDPSNLib.volume.io import Volume
from EDPSNLib.volume.registration_metric import (
    mattes_mi,
    optimise,
    pyramid_level,
    registration_image,
)
from EDPSNLib.volume.registration_orientation import (
    INITS,
    ORIENTATIONS,
    describe_turn,
    initial_transform,
    pick_orientation,
)
from EDPSNLib.volume.registration_quality import (
    check_plausible,
    check_sizes,
    dice_bounds,
    outline_dice,
)
from EDPSNLib.volume.resample import resample_to
from EDPSNLib.volume.transforms import (
    linear_parts,
    load_transform,
    overlap_fraction,
    read_rire_points,
    save_transform,
    transform_points,
)

__all__ = [
    "METHODS",
    "INITS",
    "ORIENTATIONS",
    "KEEP_START_TOLERANCE",
    "RegistrationResult",
    "RegistrationStep",
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

#: An optimised MI worse than the start's by at most this fraction means the start was
#: already the optimum (kept). An exact grid match loses MI to interpolation blur at any
#: sub-voxel move: 0.2-0.3 % at 0.02 voxel, 1.1-1.4 % at 0.05, about 4 % at 0.1 (three real
#: MRIs, docs/registration.md); a volume registered to itself ended 0.1-0.5 % below its start.
KEEP_START_TOLERANCE = 0.01
#: Pyramid shrink factors, coarse to fine.
LEVELS = (4, 2, 1)


@dataclass
class RegistrationResult:
    """A transform (fixed -> moving points) and how it was found and checked.

    Metrics are Mattes MI as ITK reports it (negative: lower is better) at full resolution;
    ``outline_dice`` is the Dice overlap of the two body outlines on the fixed grid;
    ``warnings`` are what a user must read before trusting the result.
    """

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
    outline_dice: float = float("nan")
    warnings: list[str] = field(default_factory=list)

    def figures(self) -> dict:
        """The figures a user reads (JSON-ready): MI before/after, gain, overlap, Dice."""
        return {
            "method": self.method,
            "init": self.init,
            "orientation": self.orientation,
            "mi_before": round(self.metric_before, 4),
            "mi_after": round(self.final_metric, 4),
            "mi_gain": round(self.metric_before - self.final_metric, 4),
            "overlap": round(self.overlap, 3),
            "outline_dice": round(self.outline_dice, 3),
            "iterations": self.iterations,
            "elapsed_s": round(self.elapsed_s, 1),
            "stop_reason": self.stop_reason,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line for a log: what was done and the quality figures."""
        return (
            f"Registration ({self.method}, {self.orientation}): Mattes MI "
            f"{self.metric_before:.4f} -> {self.final_metric:.4f}, body outlines overlap "
            f"(Dice) {self.outline_dice:.2f}, volume overlap {self.overlap:.0%}, "
            f"{self.iterations} iterations, {self.elapsed_s:.1f} s"
        )


@dataclass
class RegistrationStep:
    """A progress report: ``done`` of ``total`` (percent) and what runs; the result at the end."""

    done: int
    total: int
    message: str
    result: RegistrationResult | None = None


RegistrationProgress = Callable[[RegistrationStep], None]


def _report(progress: RegistrationProgress | None, done: float, message: str, result=None) -> None:
    if progress is not None:
        progress(RegistrationStep(int(done), 100, message, result))


def _level_ticks(progress, levels: int, iterations: int, first: float, last: float):
    """on_level for :func:`optimise`: percent from ``first`` to ``last`` over the levels."""
    if progress is None:
        return None
    width = (last - first) / levels

    def on_level(level: int):
        """Report the start of ``level`` (from 0); return its per-iteration ``tick(i, value)``."""
        base = first + level * width
        _report(progress, base, f"Registering: level {level + 1} of {levels}")

        def tick(i: int, value: float) -> None:
            """Every 5th iteration, report the percent done in the level and the MI ``value``."""
            if i % 5 == 0:  # a line every 5 iterations is plenty for a GUI or a terminal
                done = base + width * min(i, iterations) / iterations
                msg = f"Registering: level {level + 1} of {levels}, iteration {i}, MI {value:.4f}"
                _report(progress, done, msg)

        return tick

    return on_level


def _quality(
    result: RegistrationResult,
    dice: float,
    bounds: tuple[float, float],
    refuse: bool,
    used: tuple[tuple[str, str], ...] = (),
) -> RegistrationResult:
    """Record the outline Dice; refuse (below bounds[0]) or warn (below bounds[1]).

    The refusal advises the starts not ``used`` yet (as (option, value) pairs).
    """
    result.outline_dice = dice
    refuse_below, warn_below = bounds
    if dice >= warn_below:
        return result
    text = (
        f"the body outlines of the two volumes overlap poorly after registration (Dice {dice:.2f}; "
        f"correct results measure above {warn_below}; Mattes MI {result.metric_before:.3f} -> "
        f"{result.final_metric:.3f}, {result.orientation})"
    )
    if refuse and dice < refuse_below:
        tries = [o for o in (("init", "moments"), ("orientation", "search")) if o not in used]
        advice = "".join(f"try {{{i}}}; " for i in range(len(tries)))
        error = RegistrationError(
            f"Registration refused: {text}. The moving volume is probably in the wrong place. "
            "Check that both volumes show the same body region (a thin slab or a small field "
            f"of view cannot be placed reliably); {advice}if the volumes are already aligned, "
            f"use {{{len(tries)}}}.",
            options=[*tries, ("method", "none")],
        )
        error.result = result  # the refused result, for a picture of what was refused
        raise error
    result.warnings.append(f"Check the registration: {text}.")
    return result


def _keep_start(f_img, m_img, chosen, final, at_start, after, mi, n):
    """The optimised result ended worse than its start: keep the start, or a polish of it.

    An exact match loses MI to any sub-voxel move, and the 4/2/1 pyramid restarts with 2 mm
    steps at each level, so it may end a tenth of a voxel away. Within the tolerance the
    start is kept; beyond it the start is polished at full resolution with 0.1 mm steps and
    the better of start and polish is kept.

    Returns:
        (transform, MI, stop reason, iterations, True when neither beat the tolerance).
    """
    bound = at_start + KEEP_START_TOLERANCE * abs(at_start)
    if after <= bound:
        return (
            chosen,
            at_start,
            f"kept the start: already the optimum (MI {at_start:.4f})",
            n,
            False,
        )
    polished = sitk.Euler3DTransform(chosen)
    if not isinstance(final, sitk.Euler3DTransform):  # affine: polish an affine copy
        polished = sitk.AffineTransform(3)
        polished.SetCenter(chosen.GetCenter())
        polished.SetMatrix(chosen.GetMatrix())
        polished.SetTranslation(chosen.GetTranslation())
    n2, _ = optimise([f_img], [m_img], polished, iterations=100, first_step=0.1, **mi)
    value = mattes_mi(f_img, m_img, polished, **mi)
    if value < at_start:
        return polished, value, f"polished the start (MI {value:.4f})", n + n2, False
    reason = f"kept the start: already the optimum (MI {at_start:.4f})"
    return chosen, at_start, reason, n + n2, value > bound


def register(
    fixed: Volume,
    moving: Volume,
    method: str = "rigid",
    init: str = "auto",
    *,
    orientation: str = "auto",
    bins: int = 50,
    sampling: float = 0.02,
    seed: int = 1,
    iterations: int = 100,
    min_overlap: float = 0.2,
    max_rotation_deg: float = 45.0,
    threads: int | None = None,
    progress: RegistrationProgress | None = None,
) -> RegistrationResult:
    """Register ``moving`` (CT/PET/SPECT) onto ``fixed`` (MRI) and check the result.

    Rigid Euler3D, optionally followed by affine; Mattes MI, a 4/2/1 pyramid (see
    :func:`pyramid_level`).

    Args:
        fixed: the MRI.
        moving: the CT, PET or SPECT volume (scalar or RGB).
        method: 'rigid', 'affine' or 'none' (already aligned: identity, checked).
        init: 'auto' (identity when both share a DICOM FrameOfReferenceUID, else 'geometry'),
            'geometry', 'moments' or 'identity' (see :func:`initial_transform`).
        orientation: 'auto' (the headers' orientation; when a 180-degree turn fits clearly
            better, the 24 axis-aligned turns are searched and the result carries a warning),
            'header' (refuse such a turn), 'search' (always search the 24 turns) or 'trust'
            (no check: for different patients, where a turned fit can win by chance).
        bins, sampling, seed: Mattes MI histogram bins, sampled fraction, sampling seed.
        iterations: the most optimiser iterations per pyramid level.
        min_overlap: the least fraction of the smaller volume inside the other.
        max_rotation_deg: the most rotation away from the chosen start.
        threads: ITK threads (None: ITK's global default).
        progress: called with a :class:`RegistrationStep` as the work goes on, and once at the
            end with the result.

    Returns:
        The checked result; ``warnings`` lists what a user must read.

    Raises:
        InputError: an unknown method, init or orientation.
        RegistrationError: the result fails the size, overlap, metric, plausibility or
            outline checks; the message gives the figure and what to try.
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
    _report(progress, 0, "Registering: preparing the images")
    if init == "auto":
        frame = fixed.meta.get("FrameOfReferenceUID")
        init = (
            "identity" if frame and frame == moving.meta.get("FrameOfReferenceUID") else "geometry"
        )
    if method == "none":
        init = "identity"
    f_img, m_img = registration_image(fixed), registration_image(moving)
    bounds = dice_bounds(moving.modality, moving.is_rgb)
    check_sizes(f_img, m_img)
    start = sitk.Euler3DTransform() if method == "none" else initial_transform(f_img, m_img, init)
    overlap = overlap_fraction(f_img, m_img, start)
    if overlap < min_overlap:
        raise RegistrationError(
            f"After {{0}} only {overlap:.0%} of the smaller volume overlaps the other "
            "(they start too far apart). Use {1} or {2}, or check that both volumes show the "
            "same body region.",
            options=[("init", init), ("init", "geometry"), ("init", "moments")],
        )
    mi = dict(bins=bins, fraction=sampling, seed=seed, threads=threads)
    before = mattes_mi(f_img, m_img, start, **mi)
    if method == "none":
        result = RegistrationResult(start, before, before, 0, "already aligned: identity", method)
        result.init, result.overlap = init, overlap
        dice = outline_dice(pyramid_level(f_img, 2), pyramid_level(m_img, 2), start)
        result = _quality(result, dice, bounds, refuse=False)
        result.elapsed_s = time.perf_counter() - t0
        _report(progress, 100, result.summary(), result)
        return result
    warnings = []
    if orientation == "trust":
        rigid, chosen, turned = sitk.Euler3DTransform(start), start, describe_turn(np.eye(3))
    else:
        _report(progress, 5, "Registering: choosing the start orientation")
        choice = pick_orientation(f_img, m_img, start, orientation, mi)
        rigid, chosen, turned = choice.optimised, choice.start, choice.description
        warnings += [choice.warning] if choice.warning else []
    f_levels = [pyramid_level(f_img, k) for k in LEVELS]
    m_levels = [pyramid_level(m_img, k) for k in LEVELS]
    stages = 5 if method == "affine" else 3
    on_level = _level_ticks(progress, stages, iterations, 30, 90)
    n, reason = optimise(f_levels, m_levels, rigid, iterations=iterations, on_level=on_level, **mi)
    final: sitk.Transform = rigid
    if method == "affine":
        affine = sitk.AffineTransform(3)
        affine.SetCenter(rigid.GetCenter())
        affine.SetMatrix(rigid.GetMatrix())
        affine.SetTranslation(rigid.GetTranslation())
        later = None if on_level is None else (lambda level: on_level(level + 3))
        n2, reason = optimise(
            f_levels[1:], m_levels[1:], affine, iterations=iterations, on_level=later, **mi
        )
        n, final = n + n2, affine
    _report(progress, 92, "Registering: checking the result")
    after = mattes_mi(f_img, m_img, final, **mi)
    at_start = before if chosen is start else mattes_mi(f_img, m_img, chosen, **mi)
    if after > at_start:  # the start was better: it is (near) the optimum
        final, after, reason, n, doubtful = _keep_start(
            f_img, m_img, chosen, final, at_start, after, mi, n
        )
        if doubtful:
            warnings.append(
                f"The optimiser could not improve on the start (Mattes MI {at_start:.4f}); "
                "the start was kept. Check the result."
            )
    overlap = check_plausible(f_img, m_img, chosen, final, min_overlap, max_rotation_deg)
    result = RegistrationResult(
        final, after, before, n, reason, method, init, overlap, 0.0, turned, warnings=warnings
    )
    dice = outline_dice(f_levels[1], m_levels[1], final)
    used = (("init", init), ("orientation", orientation))
    result = _quality(result, dice, bounds, True, used)
    result.elapsed_s = time.perf_counter() - t0
    _report(progress, 100, result.summary(), result)
    return result
