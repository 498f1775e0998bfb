"""The start of a registration: the initial transform, then its orientation (the headers'
own, a 180-degree turn, or a mirror).

Scanners record the patient position (head/feet first, prone/supine); when one of the two
headers is wrong, or the scans differ, the moving volume fits better turned. A mirror (a
flipped axis in one header) cannot be fixed by any rotation; it is diagnosed, never used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.volume.registration_metric import mattes_mi, optimise, pyramid_level
from EDPSNLib.volume.transforms import rotation_deg

__all__ = [
    "INITS",
    "initial_transform",
    "ORIENTATIONS",
    "OrientationChoice",
    "candidate_rotations",
    "describe_turn",
    "pick_orientation",
]

#: Start transforms (see :func:`initial_transform`).
INITS = ("auto", "geometry", "moments", "identity")
#: auto: as the headers say, and search the 24 turns when one fits clearly better; header: as
#: the headers say, refusing a clearly better turn; search: try the 24 axis-aligned turns;
#: trust: as the headers say, without any check.
ORIENTATIONS = ("auto", "header", "search", "trust")
#: A turn (or mirror) "fits clearly better" when its coarse MI is lower by this fraction.
CLEARLY_BETTER = 0.05
#: Candidates refined by a short coarse run (besides the headers' own orientation).
REFINED = 4
#: Iterations of each short coarse run.
SHORT_RUN = 60


@dataclass
class OrientationChoice:
    """The chosen start: optimised at the coarse level, as it was before that run, in words."""

    optimised: sitk.Euler3DTransform
    start: sitk.Euler3DTransform
    description: str
    warning: str = ""


def _centre(image: sitk.Image) -> tuple[float, ...]:
    return image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])


def initial_transform(
    fixed: sitk.Image, moving: sitk.Image, init: str = "geometry"
) -> sitk.Euler3DTransform:
    """The start transform of a registration.

    Args:
        fixed: the fixed registration image.
        moving: the moving registration image.
        init: 'geometry' (volume centres), 'moments' (centres of mass of the Otsu foreground
            masks, so CT air or PET background do not pull the centre) or 'identity' (the
            world coordinates, rotating about the fixed centre).

    Returns:
        A rigid transform, fixed -> moving points.

    Example:
        >>> import SimpleITK as sitk
        >>> img = sitk.Image([8, 8, 8], sitk.sitkFloat32)
        >>> initial_transform(img, img, "identity").GetTranslation()
        (0.0, 0.0, 0.0)
    """
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


def candidate_rotations(search: bool) -> list[np.ndarray]:
    """Start rotations (3x3) tried on top of the initial transform.

    Args:
        search: True for the 24 axis-aligned rotations; False for identity and the three
            180-degree turns about x, y and z (head/feet-first or prone/supine mix-ups).

    Returns:
        Rotation matrices, identity first.

    Example:
        >>> len(candidate_rotations(True)), len(candidate_rotations(False))
        (24, 4)
    """
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


def describe_turn(r: np.ndarray) -> str:
    """A rotation in words: 'as in the headers' or 'turned 180 deg about (0, 1, 0)'.

    Example:
        >>> describe_turn(np.diag([-1.0, 1.0, -1.0]))
        'turned 180 deg about (0, 1, 0)'
    """
    angle = rotation_deg(r)
    if angle < 1e-6:
        return "as in the headers"
    w, v = np.linalg.eig(r)
    axis = np.real(v[:, np.argmin(np.abs(w - 1))])
    axis = axis * np.sign(axis[np.argmax(np.abs(axis))])
    return f"turned {angle:.0f} deg about ({', '.join(f'{x:.2g}' for x in axis + 0.0)})"


def _turned(start: sitk.Euler3DTransform, r: np.ndarray) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform(start)
    t.SetMatrix((np.array(start.GetMatrix()).reshape(3, 3) @ r).ravel().tolist())
    return t


def _score(coarse_fixed, coarse_moving, start, candidates, mi, cache: dict) -> list[tuple]:
    """(coarse MI after a short run, rotation, mirrored, optimised, raw) of the candidates
    that keep enough overlap: the best few by MI at their start, and always the headers' own."""
    runs = []
    for r, mirrored in candidates:
        t = _turned(start, r)
        try:
            runs.append((mattes_mi(coarse_fixed, coarse_moving[mirrored], t, **mi), r, mirrored, t))
        except RegistrationError:
            continue  # this start leaves too little overlap; it cannot be the answer
    ranked = sorted(range(len(runs)), key=lambda i: runs[i][0])
    keep = {i for i, run in enumerate(runs) if rotation_deg(run[1]) < 1e-6 and not run[2]}
    scored = []
    for i in sorted(keep | set(ranked[:REFINED])):
        _, r, mirrored, t = runs[i]
        key = (r.astype(int).tobytes(), mirrored)
        if key not in cache:  # 'auto' searches after the sentinel: refine each start once
            raw = sitk.Euler3DTransform(t)
            try:
                optimise([coarse_fixed], [coarse_moving[mirrored]], t, iterations=SHORT_RUN, **mi)
                value = mattes_mi(coarse_fixed, coarse_moving[mirrored], t, **mi)
                cache[key] = (value, r, mirrored, t, raw)
            except RegistrationError:
                cache[key] = None
        if cache[key] is not None:
            scored.append(cache[key])
    return scored


def _mirrored(image: sitk.Image) -> sitk.Image:
    """``image``'s voxels mirrored along its first axis on the same grid (sitk.Flip would move
    the grid with them and keep the world picture)."""
    out = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[..., ::-1].copy())
    out.CopyInformation(image)
    return out


def _clearly_better(a: float, b: float) -> bool:
    return a < b - CLEARLY_BETTER * abs(b)


def pick_orientation(
    fixed: sitk.Image,
    moving: sitk.Image,
    start: sitk.Euler3DTransform,
    orientation: str,
    mi: dict,
    _cache: dict | None = None,
) -> OrientationChoice:
    """Short coarse-level runs from each candidate start; the best one, checked.

    Args:
        fixed: the fixed registration image (full resolution).
        moving: the moving registration image.
        start: the initial transform (fixed -> moving).
        orientation: 'auto', 'header' or 'search' (see :data:`ORIENTATIONS`).
        mi: the metric's settings (bins, fraction, seed, threads).

    Returns:
        The chosen start (with a warning when 'auto' had to turn the volume).

    Raises:
        RegistrationError: a mirror image fits clearly better (a flipped axis in a header);
            with 'header', a turn fits clearly better; no start keeps enough overlap.
    """
    coarse_fixed = pyramid_level(fixed, 4)
    plain = pyramid_level(moving, 4)
    # Mirrored along the moving image's first axis; with the four sentinel turns this covers
    # a flip of any one axis and the inversion, which are all the mirrors up to rotation.
    coarse_moving = {False: plain, True: _mirrored(plain)}
    search = orientation == "search"
    candidates = [(r, False) for r in candidate_rotations(search)]
    candidates += [(r, True) for r in candidate_rotations(False)]
    cache = {} if _cache is None else _cache
    scored = _score(coarse_fixed, coarse_moving, start, candidates, mi, cache)
    if not scored:
        raise RegistrationError(
            "Registration lost the overlap from every start orientation; check that the two "
            "volumes show the same body region, or try {0}.",
            options=[("init", "moments")],
        )
    rotations = [s for s in scored if not s[2]]
    mirrors = [s for s in scored if s[2]]
    best_mirror = min(mirrors, key=lambda s: s[0], default=None)
    best = min(rotations, key=lambda s: s[0], default=None)
    if best_mirror is not None and (best is None or _clearly_better(best_mirror[0], best[0])):
        raise RegistrationError(
            f"The moving volume fits much better as a mirror image (Mattes MI {best_mirror[0]:.3f} "
            f"against {best[0] if best else float('nan'):.3f} for the best rotation): an axis "
            "direction in one of the headers is flipped, which no rotation can fix. Check how "
            "the volume was exported or converted (its direction matrix)."
        )
    if best is None:
        raise RegistrationError(
            "No start orientation keeps the volumes overlapping; check the pairing."
        )
    header = next((s for s in rotations if rotation_deg(s[1]) < 1e-6), None)
    warning = ""
    if not search and header is not None and best is not header:
        if not _clearly_better(best[0], header[0]):
            best = header
        elif orientation == "header":
            raise RegistrationError(
                f"The moving volume fits much better {describe_turn(best[1])} (Mattes MI "
                f"{best[0]:.3f} against {header[0]:.3f} as the headers say): the patient "
                "position (head/feet first, prone/supine) differs between the scans, or the "
                "start is wrong. Re-run with {0} to let the registration turn it, or with {1} "
                "if both volumes share world coordinates.",
                options=[("orientation", "search"), ("init", "identity")],
            )
        else:  # auto: the headers disagree with the images; search all turns
            choice = pick_orientation(fixed, moving, start, "search", mi, cache)
            choice.warning = (
                f"The moving volume was {choice.description} from its header orientation: it fits "
                f"much better so (coarse Mattes MI {best[0]:.3f} against {header[0]:.3f}). The "
                "patient position differs between the scans, or a header is wrong; check the result."
            )
            return choice
    return OrientationChoice(best[3], best[4], describe_turn(best[1]), warning)
