"""``edpsn fuse``: register and fuse an MRI volume with a CT, PET or SPECT volume."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from EDPSNLib.atomic import check_output_path, write_text_atomic
from EDPSNLib.errors import InputError
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.names import REGISTRATION_METHODS

VOLUME_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """--mri, --moving, --modality: the volume pair (shared with ``edpsn prepare volumes``)."""
    from EDPSNLib.fusion.pipeline import MODALITIES

    parser.add_argument("--mri", required=True, help="MRI volume: DICOM folder, NIfTI, NRRD or MHA")
    parser.add_argument("--moving", required=True, help="CT, PET or SPECT volume (same formats)")
    parser.add_argument("--modality", required=True, choices=MODALITIES)


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
        "--batch-size", type=int, help="slices per pass (default 4 on CPU, 16 on GPU)"
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


class Reporter:
    """Human progress (tqdm on stderr) or JSON lines on stdout for the Slicer module."""

    def __init__(self, json_lines: bool, stage: str = "fuse"):
        self.json_lines = json_lines
        self.label = stage  # the stage named in progress events and on the bar
        self.bar = None

    def emit(self, **event: object) -> None:
        if self.json_lines:
            print(json.dumps(event), flush=True)
        elif event["event"] in ("stage", "log"):
            print(event["message"], file=sys.stderr)

    def stage(self, stage: str, message: str) -> None:
        self.emit(event="stage", stage=stage, message=message)

    def log(self, message: str) -> None:
        self.emit(event="log", message=message)

    def progress(self, done: int, total: int) -> None:
        if self.json_lines:
            self.emit(event="progress", stage=self.label, done=done, total=total)
            return
        if self.bar is None:
            from tqdm import tqdm

            # Counting from the first report: the work before it took longer than tqdm's
            # clock saw, so a rate over it would be absurd (millions of slices per second).
            self.bar = tqdm(total=total, desc=self.label, unit="slice", initial=done)
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.bar.close()

    def registration(self, step) -> None:
        """A registration step (EDPSNLib.volume.registration.RegistrationStep): level changes
        and the result on stderr, every step as JSON progress; the result as its own event."""
        if step.result is not None:
            r = step.result
            self.emit(event="registration", message=r.summary(), **r.figures())
            for warning in r.warnings:
                self.emit(event="warning", message=warning)
                if not self.json_lines:
                    print(f"WARNING: {warning}", file=sys.stderr)
            if not self.json_lines:
                print(r.summary(), file=sys.stderr)
        elif self.json_lines:
            self.emit(
                event="progress",
                stage="register",
                done=step.done,
                total=step.total,
                message=step.message,
            )
        elif "iteration" not in step.message:
            print(step.message, file=sys.stderr)


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


def run(args: argparse.Namespace) -> int:
    """Read, register, fuse, score and write; outputs appear only when everything succeeded."""
    from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes, metrics_rows
    from EDPSNLib.metrics.table import metrics_csv_text
    from EDPSNLib.threads import set_threads
    from EDPSNLib.volume.io import Volume, read_volume, write_volume
    from EDPSNLib.volume.registration import save_transform

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
    )
    rep.stage("read", f"Reading {args.mri} and {args.moving}")
    mri = read_volume(args.mri, **_series(args.mri_series))
    moving = read_volume(args.moving, suv=args.suv, **_series(args.moving_series))
    rep.stage("fuse", f"Registering ({args.register}) and fusing along the {args.axis} axis")
    result = fuse_volumes(
        mri,
        moving,
        opts,
        progress=rep.progress,
        log=rep.log,
        registration_progress=rep.registration,
    )
    rep.stage("write", f"Writing {outs['fused']}")
    written = {"fused": str(write_volume(Volume.from_array(result.fused, mri), outs["fused"], mri))}
    if "regions" in outs:
        written["regions"] = str(
            write_volume(Volume.from_array(result.regions, mri), outs["regions"], mri)
        )
    rows = metrics_rows(result)
    if "metrics" in outs:
        write_text_atomic(outs["metrics"], metrics_csv_text(rows))
        written["metrics"] = str(outs["metrics"])
    if "transform" in outs and result.registration is not None:
        written["transform"] = str(save_transform(result.registration, outs["transform"]))
    summary = {
        "registration": result.registration.figures() if result.registration else None,
        "volume_metrics": result.volume_metrics,
        "region_metrics": result.region_metrics,
        "info": result.info,
    }
    rep.emit(event="done", outputs=written, **summary)
    if not args.json_progress:
        for row in rows[:4]:
            print(row["scope"].ljust(14), "  ".join(f"{k} {row[k]:.4f}" for k in METRIC_NAMES))
    return 0
