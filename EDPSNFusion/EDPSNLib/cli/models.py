"""``edpsn models``: list, install, show and remove weights in the model registry.

``edpsn models`` alone lists (as ``edpsn models list``); names work with ``edpsn fuse --weights``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from EDPSNLib.models.install import install_model, remove_model
from EDPSNLib.models.registry import (
    ModelEntry,
    find_model,
    list_models,
    read_sidecar,
)
from EDPSNLib.paths import default_models_dir, user_models_dir

#: Validation metrics shown in the table (all seven are in ``--json`` and ``show``).
TABLE_METRICS = ("SCD", "Qabf", "VIF", "SSIM")
_DIR_HELP = "user models folder (default: $EDPSN_MODELS or ~/.edpsn/models)"


def _list_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # The sub-command repeats the options with SUPPRESS defaults, so "edpsn models --json" and
    # "edpsn models list --json" both work and a sub-parser never resets the parent's value.
    d = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--pair", help="only models of this pair (e.g. MRI-PET)", **d)
    parser.add_argument("--json", action="store_true", help="print a JSON list (for Slicer)", **d)
    parser.add_argument("--paths", action="store_true", help="also print each file's path", **d)
    parser.add_argument("--models-dir", help=_DIR_HELP, **d)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn models [list|install|show|remove]``."""
    _list_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    _list_options(sub.add_parser("list", help="list default and user models (the default)"), True)
    p = sub.add_parser("install", help="check a weights file and copy it into the user folder")
    p.add_argument("file", help="NAME.safetensors with its NAME.json sidecar beside it")
    p.add_argument("--name", help="model name (default: the file name without .safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace a user model of that name")
    p.add_argument("--models-dir", help=_DIR_HELP, default=argparse.SUPPRESS)
    for action, text in (
        ("show", "print a model's sidecar metadata"),
        ("remove", "delete a user model (defaults cannot be removed)"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("name", help="model name as 'edpsn models' lists it")
        p.add_argument("--models-dir", help=_DIR_HELP, default=argparse.SUPPRESS)


def _short(value: str | None, width: int) -> str:
    """A folder cut to its last component when it does not fit the column."""
    if not value:
        return "-"
    return value if len(value) <= width else ".../" + Path(value).name[: width - 4]


def format_row(e: ModelEntry, paths: bool = False) -> str:
    """One table line: name, source, pair, data, date, epochs, validation loss and metrics."""
    source = e.source + ("*" if e.shadows_default or e.shadowed else "")
    if not e.valid:
        line = f"{e.name:<28} {source:<8} {e.pair or '?':<10} problem: {e.problem}"
    else:
        m = e.metrics
        scores = " ".join(f"{k} {m[k]:.3f}" for k in TABLE_METRICS if m.get(k) is not None)
        loss = "-" if e.val_loss is None else f"{e.val_loss:.4f}"
        epochs = "-" if e.epochs is None else str(e.epochs)
        line = (
            f"{e.name:<28} {source:<8} {e.pair:<10} {_short(e.data, 16):<16} "
            f"{(e.date or '-')[:10]:<10} {epochs:>6}  loss {loss} {scores}"
        )
    return line + (f"\n    {e.path}" if paths else "")


def _list(args: argparse.Namespace) -> int:
    entries = list_models(args.pair, args.models_dir)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    print(f"default models: {default_models_dir()}")
    print(f"user models:    {user_models_dir(args.models_dir)}\n")
    header = f"{'NAME':<28} {'SOURCE':<8} {'PAIR':<10} {'DATA':<16} {'DATE':<10} {'EPOCHS':>6}"
    print(header + "  VALIDATION")
    for e in entries:
        print(format_row(e, args.paths))
    if not any(e.source == "user" for e in entries):
        print("\nNo user models yet: train with 'edpsn train', then 'edpsn models install FILE'.")
    if any(e.shadows_default for e in entries):
        print("\n* a user model with a default's name: --weights NAME picks the user model.")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; plain ``edpsn models`` lists."""
    action = getattr(args, "action", None) or "list"
    if action == "list":
        return _list(args)
    if action == "install":
        path = install_model(args.file, args.name, args.models_dir, args.overwrite)
        entry = find_model(path.stem, user_dir=args.models_dir)
        print(f"Installed '{entry.name}' ({entry.pair}) at {path}")
        if (default_models_dir() / path.name).is_file():
            print(f"It hides the default '{entry.name}' from name lookups; remove it to undo.")
        return 0
    if action == "remove":
        removed = remove_model(args.name, args.models_dir)
        print(f"Removed '{args.name}': " + ", ".join(str(p) for p in removed))
        return 0
    entry = find_model(args.name, user_dir=args.models_dir)  # show
    print(f"name:   {entry.name}\nsource: {entry.source}\npath:   {entry.path}")
    print(f"status: {'ok' if entry.valid else 'problem: ' + str(entry.problem)}")
    print(json.dumps(read_sidecar(entry), indent=2, sort_keys=True))
    return 0
