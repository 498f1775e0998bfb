"""The ``edpsn prepare`` command lines of a training run, and the state of its data set.

EDPSN Training prepares a Harvard-layout data set in the run folder from CHAOS data or from an
MRI + CT/PET/SPECT pair of the scene, then trains on it (:mod:`EDPSNLib.jobs.train`). A resumed
run skips a preparation that finished. No torch at import here either.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from EDPSNLib.atomic import write_text_atomic
from EDPSNLib.errors import InputError
from EDPSNLib.jobs.train import RUN_NAME, check_run_name, run_folder
from EDPSNLib.names import CHAOS_SEQUENCES, MODALITIES, REGISTRATION_METHODS
from EDPSNLib.paths import harvard_root

#: Written last by ``edpsn prepare`` (EDPSNLib.training.dataset_writer.MANIFEST_NAME).
DATASET_MANIFEST = "dataset.json"
#: Written by the module when a preparation has finished, so a resumed run skips it.
PREPARED_MARKER = "prepared.json"
#: The scene pair, exported for ``edpsn prepare volumes``.
PREPARE_FILES = {"mri": "mri.nrrd", "moving": "moving.nrrd"}


def prepare_files(folder: str | Path) -> dict[str, Path]:
    """The paths of the scene pair exported for ``edpsn prepare volumes``.

    Args:
        folder: the working folder the module exports the two volumes to.

    Returns:
        ``{"mri": path, "moving": path}``.

    Example:
        >>> prepare_files("work")["moving"].name
        'moving.nrrd'
    """
    return {key: Path(folder) / name for key, name in PREPARE_FILES.items()}


def dataset_folder(name: str) -> Path:
    """Where a run prepared from CHAOS or a volume pair keeps its Harvard-layout data set.

    Args:
        name: the run's name.

    Returns:
        ``dataset`` in the run folder (not created here).

    Example:
        >>> dataset_folder("r1").parts[-2:]
        ('r1', 'dataset')
    """
    return run_folder(name) / "dataset"


def prepare_chaos_arguments(
    *, chaos: str | Path, out: str | Path, mr_sequence: str = CHAOS_SEQUENCES[0]
) -> list[str]:
    """The ``edpsn prepare chaos`` command line: MRI-CT pairs from a CHAOS folder.

    Args:
        chaos: the CHAOS folder (``~`` is expanded).
        out: the data set folder to write.
        mr_sequence: the MR series paired with the CTs, one of ``names.CHAOS_SEQUENCES``.

    Returns:
        The arguments after the program name, with JSON progress, as strings.

    Raises:
        InputError: an unknown MR sequence.

    Example:
        >>> prepare_chaos_arguments(chaos="CHAOS", out="ds")[:4]
        ['prepare', 'chaos', '--chaos', 'CHAOS']
    """
    if mr_sequence not in CHAOS_SEQUENCES:
        raise InputError(f"Unknown MR sequence '{mr_sequence}'; choose one of {CHAOS_SEQUENCES}.")
    args = [
        "prepare",
        "chaos",
        "--chaos",
        Path(chaos).expanduser(),
        "--out",
        out,
        "--mr-sequence",
        mr_sequence,
        "--json-progress",
    ]
    return [str(a) for a in args]


def prepare_volumes_arguments(
    *,
    mri: str | Path,
    moving: str | Path,
    modality: str,
    out: str | Path,
    case: str,
    register: str = "rigid",
    test_fraction: float = 0.0,
) -> list[str]:
    """The ``edpsn prepare volumes`` command line: one MRI + CT/PET/SPECT pair as slices.

    Args:
        mri: the MRI volume file.
        moving: the CT, PET or SPECT volume file.
        modality: the moving volume's modality, one of ``names.MODALITIES``.
        out: the data set folder (created or added to).
        case: the case name in the data set (see :func:`case_name`).
        register: one of ``names.REGISTRATION_METHODS``.
        test_fraction: a middle block of slices held out to score the weights before and
            after training, in [0, 1).

    Returns:
        The arguments after the program name, with JSON progress, as strings.

    Raises:
        InputError: an unknown modality or registration, a bad case name or fraction.

    Example:
        >>> args = prepare_volumes_arguments(mri="t1.nrrd", moving="ct.nrrd", modality="CT",
        ...     out="ds", case="c1", test_fraction=0.2)
        >>> args[args.index("--register") + 1], args[-2:]
        ('rigid', ['--test-fraction', '0.2'])
    """
    if modality not in MODALITIES:
        raise InputError(f"Unknown modality '{modality}'; choose {', '.join(MODALITIES)}.")
    if register not in REGISTRATION_METHODS:
        raise InputError(
            f"Unknown registration '{register}'; choose one of {', '.join(REGISTRATION_METHODS)}."
        )
    if not RUN_NAME.fullmatch(case):
        raise InputError(f"Case name '{case}' must be letters, digits, '.', '_' or '-'.")
    args = [
        "prepare",
        "volumes",
        "--mri",
        mri,
        "--moving",
        moving,
        "--modality",
        modality,
        "--out",
        out,
        "--case",
        case,
        "--register",
        register,
        "--json-progress",
    ]
    if test_fraction:
        if not 0.0 < test_fraction < 1.0:
            raise InputError(f"Held-out fraction must be in [0, 1), got {test_fraction:g}.")
        args += ["--test-fraction", repr(float(test_fraction))]
    return [str(a) for a in args]


def case_name(text: str) -> str:
    """A case name ``edpsn prepare`` accepts, made from a node name.

    Args:
        text: any text, e.g. the MRI node's name.

    Returns:
        Runs of other characters replaced by "_", leading ".", "_", "-" dropped; "scene"
        when nothing is left.

    Example:
        >>> case_name("MR T2 (1)"), case_name("..")
        ('MR_T2_1', 'scene')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-").rstrip("_") or "scene"


def check_chaos_inputs(folder: str | Path, pair: str, name: str) -> str | None:
    """Why ``edpsn prepare chaos`` cannot start with these choices.

    Args:
        folder: the CHAOS folder the user picked.
        pair: the modality pair chosen (CHAOS gives MRI-CT only).
        name: the run's name.

    Returns:
        A sentence for the user, or None when the preparation can start.

    Example:
        >>> check_chaos_inputs(".", "MRI-PET", "r")
        'CHAOS gives MRI-CT pairs only: choose the MRI-CT modality pair.'
    """
    if pair != "MRI-CT":
        return "CHAOS gives MRI-CT pairs only: choose the MRI-CT modality pair."
    if str(folder) in ("", ".") or not Path(folder).expanduser().is_dir():
        return "Pick the CHAOS folder (the one holding Train_Sets, or the NIfTI MR-T2SPIR layout)."
    return check_run_name(name)


def is_prepared(name: str) -> bool:
    """Whether the run's data set was prepared to the end (a resumed run skips preparing).

    Args:
        name: the run's name.

    Returns:
        True when both the module's marker and the data set's manifest exist.
    """
    return (run_folder(name) / PREPARED_MARKER).is_file() and (
        dataset_folder(name) / DATASET_MANIFEST
    ).is_file()


def mark_prepared(name: str, source: dict[str, Any]) -> Path:
    """Record, atomically, that the run's data set is complete and what it was made from.

    Args:
        name: the run's name.
        source: what the data set was made from (JSON-serialisable), kept in the marker.

    Returns:
        The marker file.
    """
    path = run_folder(name) / PREPARED_MARKER
    write_text_atomic(path, json.dumps({"dataset": str(dataset_folder(name)), **source}) + "\n")
    return path


def resumable(name: str) -> bool:
    """Whether a run left a checkpoint or a (partly) prepared data set to continue from.

    Args:
        name: the run's name.

    Returns:
        True when the run folder holds ``checkpoint.pt`` or the data set's manifest.
    """
    run = run_folder(name)
    return (run / "checkpoint.pt").is_file() or (dataset_folder(name) / DATASET_MANIFEST).is_file()


def split_size(data: str | Path, pair: str, split: str = "test") -> int:
    """The number of images in one split of a Harvard-layout data folder.

    Args:
        data: the data folder (or the folder holding ``harvard/``).
        pair: the modality pair.
        split: the split's name ("train", "val", "test").

    Returns:
        The names listed in ``splits/<pair>/<split>.txt``; 0 when the file is missing.

    Example:
        >>> split_size("no/such/folder", "MRI-CT")
        0
    """
    path = harvard_root(data) / "splits" / pair / f"{split}.txt"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0
