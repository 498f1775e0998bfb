"""``edpsn fuse``: register and fuse an MRI volume with a CT, PET or SPECT volume."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from EDPSNLib import interrupts
from EDPSNLib.atomic import atomic_paths, check_output_path
from EDPSNLib.cli.reporter import Reporter
from EDPSNLib.errors import InputError
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.names import REGISTRATION_METHODS

if TYPE_CHECKING:
    from EDPSNLib.fusion.pipeline import FusionOptions, VolumeFusion
    from EDPSNLib.volume.io import Volume

VOLUME_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """--mri, --moving, --modality: the volume pair (shared with ``edpsn prepare volumes``)."""
    from EDPSNLib.fusion.pipeline import MODALITIES

    parser.add_argument("--mri", required=True, help="MRI volume: DICOM folder, NIfTI, NRRD or MHA")
    parser.add_argument("--moving", required=True, help="CT, PET or SPECT volume (same formats)")
    parser.add_argument("--modality", required=True, choices=MODALITIES)
    parser.add_argument(
        "--ignore-modality-tag",
        action="store_true",
        help="use the volumes even when their DICOM Modality tag says another modality",
    )


def positive_int(value: str) -> int:
    """An argparse type: a whole number >= 1 (batch sizes, counts)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def add_slicing_arguments(parser: argparse.ArgumentParser) -> None:
    """Registration start, orientation, CT window, colour map and slicing axis (shared)."""
    from EDPSNLib.fusion.normalize import CT_WINDOWS
    from EDPSNLib.fusion.pipeline import AXES

    parser.add_argument(
        "--init",
        default="auto",
        choices=("auto", "geometry", "moments", "identity"),
        help="start: auto = scanner coordinates if both share a frame of reference, else centres",
    )
    parser.add_argument(
        "--orientation",
        default="auto",
        choices=("auto", "header", "search"),
        help="auto: as the headers say, and search the 24 turns when one fits clearly better "
        "(head-first vs feet-first scans); header: refuse such a turn; search: always search",
    )
    parser.add_argument(
        "--ct-window", default="brain", help=f"{', '.join(CT_WINDOWS)} or LEVEL,WIDTH in HU"
    )
    parser.add_argument("--colormap", help="colour map for scalar PET/SPECT (default: the atlas's)")
    parser.add_argument(
        "--pet-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="PET/SPECT values shown at the colour map's ends, in the volume's units (SUV with "
        "--suv); default 0 to the volume's maximum, at most 3x its 99.5th percentile",
    )
    parser.add_argument("--axis", default="axial", choices=AXES)


def add_series_arguments(parser: argparse.ArgumentParser) -> None:
    """--suv, the DICOM series pickers and --json-progress (shared)."""
    parser.add_argument("--suv", action="store_true", help="convert a PET DICOM series to SUV (bw)")
    parser.add_argument(
        "--mri-series", help="SeriesInstanceUID or description in a multi-series folder"
    )
    parser.add_argument(
        "--moving-series", help="SeriesInstanceUID or description in a multi-series folder"
    )
    parser.add_argument(
        "--json-progress", action="store_true", help="JSON lines on stdout (for Slicer)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn fuse``."""

    add_input_arguments(parser)
    parser.add_argument("--out", required=True, help="fused volume (.nrrd, .nii.gz, .mha)")
    parser.add_argument(
        "--regions", help="entropy region labelmap (0 background, 1 low, 2 mid, 3 high)"
    )
    parser.add_argument("--metrics", help="CSV of the seven metrics: volume, per region, per slice")
    parser.add_argument("--transform", help="registration transform moving->MRI (.tfm)")
    parser.add_argument("--register", default="rigid", choices=REGISTRATION_METHODS)
    add_slicing_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--batch-size", type=positive_int, help="slices per pass (default 4 on CPU, 16 on GPU)"
    )
    parser.add_argument(
        "--weights", help="weights file or name (default: shipped weights for the pair)"
    )
    parser.add_argument(
        "--models-dir",
        help="user models folder searched for --weights NAME before the shipped defaults "
        "(default: $EDPSN_MODELS or ~/.edpsn/models)",
    )
    parser.add_argument("--method", default="edpsn", help="edpsn, or a baseline for comparison")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for torch, ITK and BLAS together (default: the CPUs this process may use)",
    )
    add_series_arguments(parser)


def parse_window(value: str) -> str | tuple[float, float]:
    """'brain' or 'LEVEL,WIDTH' -> a preset name or (level, width)."""
    if "," not in value:
        return value
    try:
        level, width = (float(v) for v in value.split(","))
    except ValueError:
        raise InputError(f"--ct-window '{value}' is not LEVEL,WIDTH (e.g. 40,80).") from None
    return level, width


def _series(value: str | None) -> dict:
    if not value:
        return {}
    return (
        {"series_uid": value} if value.replace(".", "").isdigit() else {"series_description": value}
    )


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Check every output path before any work: writable, not an input, a known ending."""
    inputs = (args.mri, args.moving)
    outs = {
        "fused": args.out,
        "regions": args.regions,
        "metrics": args.metrics,
        "transform": args.transform,
    }
    checked = {k: check_output_path(v, inputs) for k, v in outs.items() if v}
    for key in ("fused", "regions"):
        if key in checked and not checked[key].name.lower().endswith(VOLUME_SUFFIXES):
            raise InputError(
                f"--{'out' if key == 'fused' else key} must end in {', '.join(VOLUME_SUFFIXES)}."
            )
    if len(set(checked.values())) != len(checked):
        raise InputError("Two outputs have the same path; give each output its own file name.")
    return checked


def _weights(args: argparse.Namespace) -> str | Path | None:
    """``--weights`` as given, or looked up by name in ``--models-dir`` first when that is set."""
    if args.models_dir is None or args.weights is None or args.method != "edpsn":
        return args.weights
    from EDPSNLib.models.lookup import resolve_weights

    return resolve_weights(args.weights, f"MRI-{args.modality}", user_dir=args.models_dir)


#: DICOM Modality (0008,0060) values of each role; SPECT is NM (ST in old files).
DICOM_MODALITY = {"MRI": ("MR",), "CT": ("CT",), "PET": ("PT",), "SPECT": ("NM", "ST")}


def read_inputs(args: argparse.Namespace) -> tuple[Volume, Volume]:
    """Read ``--mri`` and ``--moving`` (series pickers, ``--suv``) and check their DICOM
    Modality tags against the roles unless ``--ignore-modality-tag``."""
    from EDPSNLib.volume.io import read_volume

    mri = read_volume(args.mri, **_series(args.mri_series))
    moving = read_volume(args.moving, suv=args.suv, **_series(args.moving_series))
    if not args.ignore_modality_tag:
        check_modality_tags(mri, moving, args.modality)
    return mri, moving


def check_modality_tags(mri: Volume, moving: Volume, modality: str) -> None:
    """Refuse volumes whose DICOM Modality tag says another modality than the one given.

    Volumes without a tag (NIfTI, NRRD, MHA) pass: only DICOM says what it is.

    Args:
        mri: the volume given as --mri.
        moving: the volume given as --moving.
        modality: the --modality given (CT, PET or SPECT).

    Raises:
        InputError: naming the tag found and what to do.
    """
    by_tag = {tag: role for role, tags in DICOM_MODALITY.items() for tag in tags}
    for flag, vol, role in (("--mri", mri, "MRI"), ("--moving", moving, modality)):
        tag = str(vol.meta.get("Modality", "")).strip().upper()
        if tag and tag not in DICOM_MODALITY[role]:
            seen = by_tag.get(tag, "another modality")
            fix = (
                "give the MR series as --mri"
                if role == "MRI"
                else f"give --modality {seen}"
                if seen in DICOM_MODALITY
                else "check the series"
            )
            raise InputError(
                f"{flag} {vol.path} is a DICOM series with Modality {tag} ({seen}), not "
                f"{'/'.join(DICOM_MODALITY[role])} ({role}): {fix}, or add "
                "--ignore-modality-tag if the tag is wrong."
            )


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[dict[str, bool]]:
    """SIGINT and SIGTERM (what the Slicer module's Cancel sends) raise KeyboardInterrupt, so
    temporary files are removed on the way out; the flag tells whether a signal came (an
    interrupt swallowed inside ITK can surface as another error)."""
    state = {"hit": False}

    def handler(signum: int, _frame: object) -> None:
        """Note the signal; raise KeyboardInterrupt, or inside ITK ask to stop after the step."""
        state["hit"] = True
        name = signal.Signals(signum).name
        if interrupts.deferring():  # inside ITK: raising here would be swallowed
            if not interrupts.requested():
                print("edpsn fuse: stopping after the current step...", file=sys.stderr, flush=True)
            interrupts.request(name)
            return
        raise KeyboardInterrupt(name)

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in before:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread (a test runner): leave the handlers alone
        before = {}
    try:
        yield state
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    """Read, register, fuse, score and write; interrupted or failed runs leave nothing."""
    with interrupts_as_keyboard() as state:
        try:
            return _run(args)
        except Exception:
            if state["hit"]:  # the interrupt broke something on its way: report the interrupt
                raise KeyboardInterrupt from None
            raise


def _run(args: argparse.Namespace) -> int:
    """Read, register, fuse, score and write; outputs appear only when everything succeeded."""
    from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes, metrics_rows
    from EDPSNLib.metrics.table import metrics_csv_text
    from EDPSNLib.threads import set_threads

    rep = Reporter(args.json_progress)
    outs = _outputs(args)
    set_threads(args.threads)
    opts = FusionOptions(
        modality=args.modality,
        register=args.register,
        init=args.init,
        orientation=args.orientation,
        ct_window=parse_window(args.ct_window),
        colormap=args.colormap,
        axis=args.axis,
        device=args.device,
        batch_size=args.batch_size,
        weights=_weights(args),
        method=args.method,
        pet_range=tuple(args.pet_range) if args.pet_range else None,
    )
    _check_appearance(opts)  # before the slow work, even when the modality does not use them
    rep.stage("read", f"Reading {args.mri} and {args.moving}")
    mri, moving = read_inputs(args)
    rep.stage("fuse", f"Registering ({args.register}) and fusing along the {args.axis} axis")
    result = fuse_volumes(
        mri,
        moving,
        opts,
        progress=rep.progress,
        log=rep.log,
        warn=rep.warn,
        registration_progress=rep.registration,
    )
    rep.stage("write", f"Writing {', '.join(str(p) for p in outs.values())}")
    rows = metrics_rows(result)
    if result.registration is None:
        outs.pop("transform", None)
    _write_outputs(outs, result, mri, metrics_csv_text(rows))
    summary = {
        "registration": result.registration.figures() if result.registration else None,
        "volume_metrics": result.volume_metrics,
        "region_metrics": result.region_metrics,
        "info": result.info,
    }
    rep.emit(event="done", outputs={k: str(v) for k, v in outs.items()}, **summary)
    if not args.json_progress:
        for row in rows[:4]:
            print(row["scope"].ljust(14), "  ".join(f"{k} {row[k]:.4f}" for k in METRIC_NAMES))
    return 0


def _check_appearance(opts: FusionOptions) -> None:
    """Refuse a bad CT window, colour map or PET/SPECT range before reading anything."""
    import numpy as np

    from EDPSNLib.fusion.normalize import check_display_range, colormap_lut, window_ct

    window_ct(np.zeros(1, np.float32), opts.ct_window)
    if opts.colormap:
        colormap_lut(opts.colormap)
    if opts.pet_range is not None:
        check_display_range(*opts.pet_range)


def _write_outputs(
    outs: dict[str, Path], result: VolumeFusion, mri: Volume, metrics_csv: str
) -> None:
    """Write the output set all or nothing: each to a temporary beside it, then all renamed."""
    from EDPSNLib.volume.io import Volume, write_volume
    from EDPSNLib.volume.transforms import save_transform

    def volume(key: str, array: object) -> None:
        """Write ``array`` on the MRI's grid to the temporary path of output ``key``."""
        try:
            write_volume(Volume.from_array(array, mri), tmp[key], mri)
        except InputError as exc:  # name the output the user asked for, not its temporary
            raise InputError(str(exc).replace(str(tmp[key].resolve()), str(outs[key]))) from None

    with atomic_paths(outs) as tmp:
        volume("fused", result.fused)
        if "regions" in tmp:
            volume("regions", result.regions)
        if "metrics" in tmp:
            try:
                tmp["metrics"].write_text(metrics_csv)
            except OSError as exc:
                raise InputError(
                    f"Could not write {outs['metrics']}: {exc.strerror}. "
                    "Check free disk space and permissions."
                ) from None
        if "transform" in tmp:
            save_transform(result.registration, tmp["transform"])
