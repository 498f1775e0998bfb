"""``edpsn prepare volumes``: one MRI + CT/PET/SPECT volume pair becomes training slices."""

from __future__ import annotations

import argparse
import shlex

from EDPSNLib.cli.fuse import (
    add_input_arguments,
    add_series_arguments,
    add_slicing_arguments,
    parse_window,
    read_inputs,
)
from EDPSNLib.cli.reporter import Reporter
from EDPSNLib.names import REGISTRATION_METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn prepare volumes`` (the Slicer module passes the same names)."""
    from EDPSNLib.training.volume_dataset import DEFAULT_TEST_GAP

    add_input_arguments(parser)
    parser.add_argument(
        "--out", required=True, metavar="DATASET", help="data set folder (created or added to)"
    )
    parser.add_argument("--case", help="case name (default: from the MRI file or folder name)")
    parser.add_argument(
        "--register",
        default="rigid",
        choices=REGISTRATION_METHODS,
        help="none: the volumes are already aligned in world coordinates",
    )
    add_slicing_arguments(parser)
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="hold out a contiguous middle block of this fraction of the slices as <case>-test",
    )
    parser.add_argument(
        "--test-gap",
        type=int,
        default=DEFAULT_TEST_GAP,
        metavar="K",
        help="slices left out on each side of the test block (neighbours are near-duplicates)",
    )
    parser.add_argument(
        "--size", type=int, metavar="N", help="pad each slice to a square and resample to N x N"
    )
    add_series_arguments(parser)


def train_command(root: str, pair: str, size: tuple[int, int]) -> str:
    """The ``edpsn train`` line that fine-tunes the pair's default weights on the prepared set."""
    from EDPSNLib.models.lookup import default_weights_path
    from EDPSNLib.training.volume_dataset import suggested_crop

    words = ["edpsn", "train", "--data", root, "--pair", pair, "--out", f"{root}-run"]
    init = default_weights_path(pair)
    if init.is_file():
        words += ["--init", str(init)]
    crop = suggested_crop(size)
    if crop != 128:
        words += ["--crop", str(crop)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    """Read, register, write the slices and print what to run next."""
    from EDPSNLib.fusion.pipeline import FusionOptions
    from EDPSNLib.training.dataset_writer import dataset_summary
    from EDPSNLib.training.volume_dataset import prepare_volume_pair

    rep = Reporter(args.json_progress, stage="slices")
    window = parse_window(args.ct_window)
    rep.stage("read", f"Reading {args.mri} and {args.moving}")
    mri, moving = read_inputs(args)
    rep.stage("prepare", f"Registering ({args.register}) and slicing along the {args.axis} axis")
    result = prepare_volume_pair(
        mri,
        moving,
        FusionOptions(
            args.modality,
            register=args.register,
            init=args.init,
            orientation=args.orientation,
            ct_window=window,
            colormap=args.colormap,
            axis=args.axis,
        ),
        args.out,
        args.case,
        test_fraction=args.test_fraction,
        test_gap=args.test_gap,
        size=args.size,
        progress=rep.progress,
        log=rep.log,
    )
    root = str(result.root.resolve())
    totals = dataset_summary(root).get(result.pair, {"train": 0, "test": 0})
    command = train_command(root, result.pair, result.size)
    rep.emit(
        event="done",
        dataset=root,
        pair=result.pair,
        case=result.case,
        train=len(result.train),
        test=len(result.test),
        size=list(result.size),
        dataset_totals=totals,
        train_command=command,
    )
    if not args.json_progress:
        h, w = result.size
        print(
            f"Case {result.case}: {len(result.train)} train + {len(result.test)} test slices "
            f"({h}x{w}) written to {root}"
        )
        print(f"{result.pair} in this data set: {totals['train']} train, {totals['test']} test")
        if min(result.size) < 128:
            print(
                f"Slices are smaller than the default 128-pixel crop: train with --crop {min(h, w)}."
            )
        print(f"Next, fine-tune on it:\n  {command}")
    return 0
