"""``edpsn prepare``: turn CHAOS volumes or a registered volume pair into a training set.

Each source has its own module (``cli/prepare_<source>.py``); the result is a folder in
the Harvard layout (see :mod:`dataset_writer`) that ``edpsn train --data`` reads.
"""

from __future__ import annotations

import argparse
import importlib

#: source name -> (module, one-line help)
SOURCES: dict[str, tuple[str, str]] = {
    "chaos": (
        "prepare_chaos",
        "MRI-CT pairs from CHAOS: each CT registered (affine) to an MR volume",
    ),
    "volumes": (
        "prepare_volumes",
        "training slices from one MRI + CT/PET/SPECT volume pair (e.g. your scanner's)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per data source."""
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for name, (module, help_text) in SOURCES.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(f".{module}", __package__)
        mod.add_arguments(cmd)
        cmd.set_defaults(_prepare=mod.run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen source's preparation."""
    return int(args._prepare(args) or 0)
