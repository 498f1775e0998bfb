"""``edpsn prepare chaos``: MRI-CT training pairs from CHAOS (see :mod:`EDPSNLib.training.chaos_pairing`)."""

from __future__ import annotations

import argparse
import json
import sys

from EDPSNLib.data.chaos import SEQUENCES
from EDPSNLib.names import CHAOS_REGISTRATION_METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn prepare chaos`` (the Slicer module uses these names)."""
    from EDPSNLib.fusion.normalize import CT_WINDOWS

    parser.add_argument(
        "--chaos",
        required=True,
        help="CHAOS folder (holding Train_Sets, or the NIfTI folders MR-T2SPIR/, CT/)",
    )
    parser.add_argument("--ct", help="another CHAOS folder holding the CT (default: --chaos)")
    parser.add_argument("--out", required=True, help="data set folder (Harvard layout) to write")
    parser.add_argument("--mr-sequence", default="T2SPIR", choices=SEQUENCES)
    parser.add_argument(
        "--ct-window", default="soft-tissue", help=f"{', '.join(CT_WINDOWS)} or LEVEL,WIDTH in HU"
    )
    parser.add_argument("--register", default="affine", choices=CHAOS_REGISTRATION_METHODS)
    parser.add_argument(
        "--orientation",
        default="trust",
        choices=("trust", "header", "search"),
        help="trust the scan orientation (default); header/search: the checks of edpsn fuse",
    )
    parser.add_argument(
        "--test-pairs",
        type=int,
        help="how many pairs (the last ones in CT order) form the test split (default: 1 in 5)",
    )
    parser.add_argument("--pairing", help="CSV with ct_id,mr_id rows instead of the default rule")
    parser.add_argument("--size", type=int, default=256, help="slice size in pixels (square)")
    parser.add_argument("--threads", type=int, help="registration threads (default: all)")
    parser.add_argument(
        "--json-progress", action="store_true", help="JSON lines on stdout (for Slicer)"
    )


class Reporter:
    """JSON lines on stdout for the Slicer module, or human lines on stderr."""

    def __init__(self, json_lines: bool):
        self.json_lines = json_lines
        self.warnings: list[str] = []

    def emit(self, **event: object) -> None:
        """Print ``event`` as one JSON line on stdout (JSON mode only)."""
        if self.json_lines:
            print(json.dumps(event), flush=True)

    def warn(self, message: str) -> None:
        """Keep ``message`` for the summary; a JSON "warning" event, or a line on stderr."""
        self.warnings.append(message)
        self.emit(event="warning", message=message)
        if not self.json_lines:
            print(f"warning: {message}", file=sys.stderr)

    def progress(self, done: int, total: int, message: str) -> None:
        """A "prepare" progress event; for a person, a ``[done+1/total] message`` line on stderr."""
        self.emit(event="progress", stage="prepare", done=done, total=total, message=message)
        if not self.json_lines and done < total:
            print(f"[{done + 1}/{total}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Pair, register, slice and write; print the summary."""
    from EDPSNLib.cli.fuse import parse_window
    from EDPSNLib.errors import InputError
    from EDPSNLib.fusion.normalize import window_ct
    from EDPSNLib.training.chaos_pairing import ChaosOptions, prepare_chaos

    if args.size < 16:
        raise InputError(f"--size {args.size} is too small; use 64 or more (256 as Harvard).")
    window = parse_window(args.ct_window)
    window_ct([0.0], window)  # refuses an unknown preset before any work
    opts = ChaosOptions(
        sequence=args.mr_sequence,
        window=window,
        method=args.register,
        orientation=args.orientation,
        size=args.size,
        test_pairs=args.test_pairs,
        threads=args.threads,
    )
    rep = Reporter(args.json_progress)
    summary = prepare_chaos(
        args.chaos,
        args.out,
        opts,
        ct_root=args.ct,
        pairing_file=args.pairing,
        warn=rep.warn,
        progress=rep.progress,
    )
    summary["warnings"] = rep.warnings
    rep.emit(event="done", **summary)
    if not args.json_progress:
        s = summary["slices"]
        print(
            f"CHAOS MRI-CT: {summary['pairs_used']} pairs used ({summary['pairs_kept']} kept from "
            f"an earlier run), {summary['pairs_skipped']} skipped; slices train {s['train']}, "
            f"test {s['test']}.\nData set: {summary['dataset']}\n"
            f"Pairing file: {summary['pairing_file']}"
        )
        if rep.warnings:
            print(f"{len(rep.warnings)} warning(s), see above and the pairing file.")
    return 0
