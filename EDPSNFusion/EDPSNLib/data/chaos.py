"""CHAOS challenge data: find patients and read their CT or MR volumes, in either layout.

Two layouts are read, chosen per modality (the DICOM one wins when both are present):

* the challenge download: ``<root>/Train_Sets/CT/<id>/DICOM_anon/*.dcm``,
  ``<root>/Train_Sets/MR/<id>/T2SPIR/DICOM_anon/*.dcm`` and
  ``<root>/Train_Sets/MR/<id>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm``;
  ``<root>`` may be the folder holding ``Train_Sets`` or ``Train_Sets`` itself;
* the preprocessed NIfTI layout (as in ``shared/data/chaos``): ``<root>/MR-T2SPIR/image_<id>.nii.gz``,
  ``<root>/MR-T1DUAL-InPhase/...``, ``<root>/MR-T1DUAL-OutPhase/...`` and ``<root>/CT/image_<id>.nii.gz``
  (``label_<id>.nii.gz`` files beside them are ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from EDPSNLib import names
from EDPSNLib.errors import InputError
from EDPSNLib.volume.dicom import list_series
from EDPSNLib.volume.io import Volume, read_volume

__all__ = [
    "MODALITIES",
    "SEQUENCES",
    "ChaosPatient",
    "chaos_layout",
    "list_chaos_patients",
    "read_chaos_volume",
    "check_chaos_patient",
    "usable_chaos_patients",
]

MODALITIES = names.CHAOS_MODALITIES
#: MR sequences of CHAOS; CT has none (``sequence=None``).
SEQUENCES = names.CHAOS_SEQUENCES
#: Series folder of each sequence below ``Train_Sets/<modality>/<id>/`` in the DICOM layout.
_DICOM_SUBDIR = {
    None: ("DICOM_anon",),
    "T2SPIR": ("T2SPIR", "DICOM_anon"),
    "T1DUAL-InPhase": ("T1DUAL", "DICOM_anon", "InPhase"),
    "T1DUAL-OutPhase": ("T1DUAL", "DICOM_anon", "OutPhase"),
}
_NIFTI_IMAGE = re.compile(r"^image_([A-Za-z0-9._-]+?)\.nii(\.gz)?$")


@dataclass(frozen=True)
class ChaosPatient:
    """One patient's expected series: DICOM folder or NIfTI file (it may be missing or broken).

    Attributes:
        id: the patient id of the download ("1", "10", ...).
        modality: "CT" or "MR".
        sequence: the MR sequence, None for CT.
        path: the series folder (DICOM layout) or image file (NIfTI layout).
        layout: "dicom" or "nifti".
    """

    id: str
    modality: str
    sequence: str | None
    path: Path
    layout: str  # "dicom" or "nifti"

    @property
    def label(self) -> str:
        """The patient's name in messages, e.g. ``MR 5 T2SPIR``."""
        return f"{self.modality} {self.id}" + (f" {self.sequence}" if self.sequence else "")


def _check_args(modality: str, sequence: str | None) -> str | None:
    if modality not in MODALITIES:
        raise InputError(f"Unknown CHAOS modality '{modality}'; choose {' or '.join(MODALITIES)}.")
    if modality == "CT":
        return None
    sequence = sequence or SEQUENCES[0]
    if sequence not in SEQUENCES:
        raise InputError(f"Unknown CHAOS MR sequence '{sequence}'; choose {', '.join(SEQUENCES)}.")
    return sequence


def _sort_key(pid: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order (2 before 10), other names after them."""
    return (0, int(pid)) if pid.isdigit() else (1, pid)


def _nifti_folder(modality: str, sequence: str | None) -> str:
    return "CT" if modality == "CT" else f"MR-{sequence}"


def chaos_layout(
    root: str | os.PathLike, modality: str, sequence: str | None = None
) -> tuple[str, Path]:
    """Which of the two CHAOS layouts a folder holds for one modality, and where.

    Args:
        root: the folder holding ``Train_Sets`` (or ``Train_Sets`` itself), or the NIfTI
            folders (``MR-T2SPIR/``, ``CT/``; also below ``chaos/``).
        modality: "CT" or "MR".
        sequence: the MR sequence (default the first of ``names.CHAOS_SEQUENCES``).

    Returns:
        ``("dicom", Train_Sets/<modality>)`` or ``("nifti", <CT or MR-<sequence> folder>)``,
        as absolute paths.

    Raises:
        InputError: an unknown modality or sequence, or no data of either layout.

    Example:
        >>> from EDPSNLib.paths import data_root
        >>> layout, folder = chaos_layout(data_root() / "chaos", "MR")
        >>> layout, folder.name
        ('nifti', 'MR-T2SPIR')
    """
    sequence = _check_args(modality, sequence)
    base = Path(root).expanduser().resolve()  # absolute: the pairing file records these paths
    if not base.is_dir():
        raise InputError(
            f"CHAOS folder {base} does not exist; give the folder holding Train_Sets (the "
            "challenge download) or the preprocessed NIfTI folders (MR-T2SPIR/, CT/)."
        )
    for train in (base / "Train_Sets", base):
        if (train / modality).is_dir() and train.name.lower() == "train_sets":
            return "dicom", train / modality
    nifti = _nifti_folder(modality, sequence)
    for folder in (base / nifti, base / "chaos" / nifti):
        if folder.is_dir():
            return "nifti", folder
    raise InputError(
        f"No CHAOS {modality} data in {base}: expected Train_Sets/{modality}/<id>/"
        f"{'/'.join(_DICOM_SUBDIR[sequence])}/*.dcm (challenge layout) or "
        f"{nifti}/image_<id>.nii.gz (NIfTI layout). Point --chaos (or --ct) at that folder."
    )


def list_chaos_patients(
    root: str | os.PathLike, modality: str, sequence: str | None = None
) -> list[ChaosPatient]:
    """Every patient of one modality (and MR sequence), sorted by id.

    Args:
        root: the CHAOS folder (see :func:`chaos_layout`).
        modality: "CT" or "MR".
        sequence: the MR sequence (default the first of ``names.CHAOS_SEQUENCES``).

    Returns:
        The patients, numeric ids in numeric order; their series are not read yet.

    Raises:
        InputError: no data, or a folder without any patient.

    Example:
        >>> from EDPSNLib.paths import data_root
        >>> [p.label for p in list_chaos_patients(data_root() / "chaos", "MR")[:2]]
        ['MR 1 T2SPIR', 'MR 2 T2SPIR']
    """
    sequence = _check_args(modality, sequence)
    layout, folder = chaos_layout(root, modality, sequence)
    if layout == "dicom":
        ids = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        found = [
            ChaosPatient(
                i, modality, sequence, folder.joinpath(i, *_DICOM_SUBDIR[sequence]), layout
            )
            for i in ids
        ]
    else:
        matches = ((_NIFTI_IMAGE.match(p.name), p) for p in folder.iterdir())
        found = [ChaosPatient(m.group(1), modality, sequence, p, layout) for m, p in matches if m]
    if not found:
        what = "patient folders <id>/" if layout == "dicom" else "image_<id>.nii.gz files"
        raise InputError(f"{folder} holds no CHAOS {what}; check the folder or the download.")
    return sorted(found, key=lambda p: _sort_key(p.id))


def _series_folder_problem(patient: ChaosPatient) -> str | None:
    """Why the patient's DICOM folder cannot give one complete series, or None."""
    folder = patient.path
    if not folder.is_dir():
        near = next(p for p in folder.parents if p.is_dir())
        have = sorted(p.name for p in near.iterdir() if not p.name.startswith("."))
        return (
            f"{patient.label}: the series folder {folder} is missing"
            + (f" ({near} holds {', '.join(have[:6])})" if have else f" ({near} is empty)")
            + f"; this patient has no {patient.sequence or 'CT'} series. Add it from the CHAOS "
            "download or remove the patient folder."
        )
    files = {f.resolve() for f in folder.iterdir() if f.suffix.lower() == ".dcm" and f.is_file()}
    series = list_series(folder) if any(folder.iterdir()) else []
    if not series:
        return (
            f"{patient.label}: {folder} holds no readable DICOM files ({len(files)} .dcm files); "
            "download this patient again or remove the patient folder."
        )
    if len(series) > 1:
        listing = "; ".join(
            f"{s.modality or '?'} '{s.description}' ({len(s.files)} files)" for s in series
        )
        return (
            f"{patient.label}: {folder} mixes {len(series)} DICOM series ({listing}); a CHAOS "
            "DICOM_anon folder holds one series. Move the extra files out of that folder."
        )
    unread = sorted(files - {Path(f).resolve() for f in series[0].files})
    if unread:
        names = ", ".join(p.name for p in unread[:5]) + (" ..." if len(unread) > 5 else "")
        return (
            f"{patient.label}: {len(unread)} of {len(files)} files in {folder} are not readable "
            f"DICOM ({names}): damaged or truncated. Replace them from the CHAOS download."
        )
    return None


def read_chaos_volume(patient: ChaosPatient) -> Volume:
    """Read one patient's CT or MR volume.

    Args:
        patient: the patient, from :func:`list_chaos_patients`.

    Returns:
        The volume, with ``chaos_id`` and ``chaos_sequence`` in its ``meta``.

    Raises:
        InputError: a missing, broken or mixed series, naming the folder and the fix.

    Example:
        >>> from EDPSNLib.paths import data_root
        >>> volume = read_chaos_volume(list_chaos_patients(data_root() / "chaos", "MR")[0])
        >>> volume.array.ndim, volume.meta["chaos_sequence"]
        (3, 'T2SPIR')
    """
    if patient.layout == "dicom":
        problem = _series_folder_problem(patient)
        if problem:
            raise InputError(problem)
    elif not patient.path.is_file():
        raise InputError(f"{patient.label}: {patient.path} is missing; check the CHAOS folder.")
    try:
        vol = read_volume(patient.path, modality=patient.modality)
    except InputError as exc:
        raise InputError(f"{patient.label}: {exc}") from None
    vol.meta.update(chaos_id=patient.id, chaos_sequence=patient.sequence or "CT")
    return vol


def check_chaos_patient(patient: ChaosPatient, read: bool = True) -> str | None:
    """Why a patient cannot be used, or None when it can.

    Args:
        patient: the patient.
        read: read the whole volume; False only checks files and DICOM headers, which is
            fast for large CT series.

    Returns:
        The message :func:`read_chaos_volume` would raise, or None.

    Example:
        >>> from EDPSNLib.paths import data_root
        >>> check_chaos_patient(list_chaos_patients(data_root() / "chaos", "MR")[0], read=False)
    """
    try:
        if read:
            read_chaos_volume(patient)
        elif patient.layout == "dicom":
            return _series_folder_problem(patient)
        elif not patient.path.is_file():
            return f"{patient.label}: {patient.path} is missing; check the CHAOS folder."
    except InputError as exc:
        return str(exc)
    return None


def usable_chaos_patients(
    root: str | os.PathLike,
    modality: str,
    sequence: str | None = None,
    warn: Callable[[str], None] | None = None,
    read: bool = True,
) -> tuple[list[ChaosPatient], list[tuple[ChaosPatient, str]]]:
    """The usable patients of one modality, and the skipped ones with their reasons.

    A broken patient never stops a multi-patient run: it is skipped and reported.

    Args:
        root: the CHAOS folder.
        modality: "CT" or "MR".
        sequence: the MR sequence (default the first of ``names.CHAOS_SEQUENCES``).
        warn: called with "Skipping <reason>" for each skipped patient.
        read: read each volume (see :func:`check_chaos_patient`).

    Returns:
        ``(usable patients, [(skipped patient, reason), ...])``.

    Raises:
        InputError: no patient is usable, with every reason.

    Example:
        >>> from EDPSNLib.paths import data_root
        >>> good, skipped = usable_chaos_patients(data_root() / "chaos", "MR", read=False)
        >>> len(good) > 0, skipped
        (True, [])
    """
    sequence = _check_args(modality, sequence)
    good, skipped = [], []
    for patient in list_chaos_patients(root, modality, sequence):
        problem = check_chaos_patient(patient, read)
        if problem is None:
            good.append(patient)
            continue
        skipped.append((patient, problem))
        if warn is not None:
            warn(f"Skipping {problem}")
    if not good:
        reasons = "\n".join(f"  {r}" for _, r in skipped)
        raise InputError(
            f"No usable CHAOS {modality}{' ' + sequence if sequence else ''} patient in {root}; "
            f"fix or remove the broken ones:\n{reasons}"
        )
    return good, skipped
