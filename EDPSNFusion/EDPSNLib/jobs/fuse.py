"""The ``edpsn`` command lines the Slicer modules run, and the results they read back.

The modules run the same commands as batch users (``edpsn fuse``, ``train``, ``evaluate``) in a
subprocess; this file is the contract between the two, tested against the real parser. It is
imported by the module files before torch is installed, so it never imports torch at load time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from EDPSNLib.errors import InputError
from EDPSNLib.names import BASELINE_NAMES
from EDPSNLib.paths import default_models_dir

#: Files of one fusion in its working folder (the inputs are exported there by the module).
FUSE_FILES = {
    "mri": "mri.nrrd",
    "moving": "moving.nrrd",
    "fused": "fused.nrrd",
    "regions": "regions.nrrd",
    "metrics": "metrics.csv",
    "transform": "moving_to_mri.tfm",
}
#: Model-list value prefix of a classical baseline ("method:max"); "" is the default weights.
METHOD_PREFIX = "method:"


@dataclass
class FuseJob:
    """What the user chose in EDPSN Fusion: the options of one ``edpsn fuse`` run.

    Example:
        >>> FuseJob("CT").register
        'rigid'
    """

    modality: str
    register: str = "rigid"
    ct_window: str = "brain"
    colormap: str | None = None  # None: the modality's default colour map
    axis: str = "axial"
    device: str = "auto"
    batch_size: int = 4  # slices per pass; small batches are fastest on a CPU
    model: str = ""  # "" default weights, "method:NAME" a baseline, else a weights file or name
    pet_range: tuple[float, float] | None = None  # PET/SPECT display range; None: the default


def parse_pet_range(text: str) -> tuple[float, float] | None:
    """The module's PET/SPECT range field: '' or 'auto' -> None (the default), 'LOW HIGH' (or
    'LOW, HIGH') -> two floats with LOW < HIGH.

    Example:
        >>> parse_pet_range("0 12"), parse_pet_range("")
        ((0.0, 12.0), None)
    """
    words = text.replace(",", " ").split()
    if not words or words == ["auto"]:
        return None
    try:
        low, high = (float(w) for w in words)
    except ValueError:
        low = high = float("nan")
    if not low < high:  # also false for NaN
        raise InputError(
            f"PET/SPECT range '{text}' is not LOW HIGH with LOW < HIGH (e.g. 0 12); leave it "
            "empty for the default range."
        )
    return low, high


def fuse_files(folder: str | Path) -> dict[str, Path]:
    """The paths of one fusion's inputs and outputs in a working folder.

    Args:
        folder: the job's working folder (the module exports the input volumes there).

    Returns:
        ``{key: path}`` for the keys of :data:`FUSE_FILES` (mri, moving, fused, regions,
        metrics, transform).

    Example:
        >>> fuse_files("job")["fused"].name
        'fused.nrrd'
    """
    return {key: Path(folder) / name for key, name in FUSE_FILES.items()}


def fuse_arguments(job: FuseJob, files: dict[str, Path]) -> list[str]:
    """The ``edpsn fuse`` command line of a job, with JSON progress events on stdout.

    Args:
        job: the user's choices; ``job.model`` is "" (default weights), ``method:NAME`` (a
            baseline) or a weights file or registry name.
        files: the job's paths, from :func:`fuse_files`.

    Returns:
        The arguments after the program name, as strings; a transform is asked for only when
        the job registers.

    Example:
        >>> job = FuseJob("PET", register="none", model="method:max")
        >>> args = fuse_arguments(job, fuse_files("j"))
        >>> args[0], args[args.index("--method") + 1], "--transform" in args
        ('fuse', 'max', False)
    """
    args = [
        "fuse",
        "--mri",
        files["mri"],
        "--moving",
        files["moving"],
        "--modality",
        job.modality,
        "--out",
        files["fused"],
        "--regions",
        files["regions"],
        "--metrics",
        files["metrics"],
        "--register",
        job.register,
        "--ct-window",
        job.ct_window,
        "--axis",
        job.axis,
        "--device",
        job.device,
        "--batch-size",
        job.batch_size,
        "--json-progress",
    ]
    if job.register != "none":
        args += ["--transform", files["transform"]]
    if job.colormap:
        args += ["--colormap", job.colormap]
    if job.pet_range is not None and job.modality != "CT":
        args += ["--pet-range", *(repr(float(v)) for v in job.pet_range)]
    if job.model.startswith(METHOD_PREFIX):
        args += ["--method", job.model[len(METHOD_PREFIX) :]]
    elif job.model:
        args += ["--weights", job.model]
    return [str(a) for a in args]


def metric_rows(done: dict[str, Any]) -> list[dict[str, Any]]:
    """The metric table rows of a fusion, from the "done" event of ``edpsn fuse``.

    Args:
        done: the decoded "done" event, holding ``volume_metrics`` and ``region_metrics``.

    Returns:
        One row for the volume, then one per region (``scope`` "region: low" ...), each with
        the metric values.

    Raises:
        InputError: the event holds no metrics (an older EDPSNLib wrote it).

    Example:
        >>> done = {"volume_metrics": {"EN": 5.0}, "region_metrics": {"low": {"EN": 1.0}}}
        >>> [row["scope"] for row in metric_rows(done)]
        ['volume', 'region: low']
    """
    try:
        rows = [{"scope": "volume", **done["volume_metrics"]}]
        rows += [{"scope": f"region: {r}", **m} for r, m in done["region_metrics"].items()]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"edpsn fuse reported no metrics ({exc}); update EDPSNLib.") from exc
    return rows


#: Files of one scoring of a fused volume (EDPSN Training's Evaluate section).
SCORE_FILES = {
    "mri": "mri.nrrd",
    "moving": "moving.nrrd",
    "fused": "fused.nrrd",
    "regions": "regions.nrrd",
    "metrics": "metrics.csv",
}


def score_files(folder: str | Path) -> dict[str, Path]:
    """The paths of one scoring's inputs and its metrics CSV in a working folder.

    Args:
        folder: the scoring's working folder.

    Returns:
        ``{key: path}`` for the keys of :data:`SCORE_FILES`.

    Example:
        >>> score_files("s")["metrics"].name
        'metrics.csv'
    """
    return {key: Path(folder) / name for key, name in SCORE_FILES.items()}


def score_arguments(
    files: dict[str, Path],
    modality: str,
    *,
    ct_window: str = "brain",
    colormap: str | None = None,
    axis: str = "axial",
    moving_to_mri: Any = None,
    regions: bool = True,
) -> list[str]:
    """The command line of ``python -m EDPSNLib.fusion.scoring`` for a fused volume.

    Args:
        files: the scoring's paths, from :func:`score_files`.
        modality: the moving volume's modality (CT, PET or SPECT).
        ct_window: CT window preset or "LEVEL,WIDTH" in HU.
        colormap: colour map of a scalar PET/SPECT volume; None for the modality's default.
        axis: slicing axis (axial, coronal or sagittal).
        moving_to_mri: a 4x4 RAS matrix (nested sequences) taking the moving volume onto the
            MRI, or None when it is aligned already.
        regions: whether to ask for the entropy region labelmap too.

    Returns:
        The arguments after the module name, as strings.

    Raises:
        InputError: ``moving_to_mri`` is not 4x4.

    Example:
        >>> args = score_arguments(score_files("s"), "CT", regions=False)
        >>> args[args.index("--modality") + 1], "--regions" in args
        ('CT', False)
    """
    args = [
        "--mri",
        files["mri"],
        "--moving",
        files["moving"],
        "--fused",
        files["fused"],
        "--modality",
        modality,
        "--ct-window",
        ct_window,
        "--axis",
        axis,
        "--out",
        files["metrics"],
        "--json-progress",
    ]
    if regions:
        args += ["--regions", files["regions"]]
    if colormap:
        args += ["--colormap", colormap]
    if moving_to_mri is not None:
        rows = [[float(v) for v in row] for row in moving_to_mri]
        if len(rows) != 4 or any(len(r) != 4 for r in rows):
            raise InputError("The moving-to-MRI transform must be a 4x4 matrix.")
        args += ["--moving-to-mri", ",".join(repr(v) for row in rows for v in row)]
    return [str(a) for a in args]


def weights_choices(pair: str) -> list[tuple[str, str]]:
    """Every model a user can pick for a modality pair, as the module's model list shows it.

    The default weights come first (value ""), then the valid registry models made for this
    pair (by file path, so the subprocess finds the same file whatever its environment), then
    the classical baselines (value ``method:NAME``).

    Args:
        pair: the modality pair, e.g. "MRI-PET".

    Returns:
        ``(label, value)`` pairs in display order; a value is what :class:`FuseJob` takes as
        ``model``.

    Example:
        >>> choices = weights_choices("MRI-PET")
        >>> choices[0][1], choices[-1][1]
        ('', 'method:laplacian')
    """
    from EDPSNLib.models.registry import list_models, weights_file

    default = weights_file(default_models_dir(), pair)
    state = "" if default.is_file() else " (not installed)"
    choices = [(f"Default EDPSN weights for {pair}{state}", "")]
    for e in list_models(pair):
        if e.valid and not e.shadowed and e.pair == pair and Path(e.path) != default:
            choices.append((f"{e.name} ({e.source})", str(e.path)))
    choices += [
        (f"Baseline without network: {name}", METHOD_PREFIX + name) for name in BASELINE_NAMES
    ]
    return choices
