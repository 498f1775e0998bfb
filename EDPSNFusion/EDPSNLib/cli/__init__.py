"""The ``edpsn`` command: a thin dispatcher; each command lives in ``cli/<command>.py``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Sequence

from EDPSNLib.errors import EDPSNError, EDPSNWarning

#: command name -> (module, one-line help). Modules are imported only when their command runs,
#: so ``edpsn --help`` and light commands never pay for importing torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": (
        "evaluate",
        "fuse a Harvard split with one or more methods and tabulate metrics",
    ),
    "train": ("train", "train or fine-tune EDPSN on Harvard pairs"),
    "fuse": ("fuse", "register and fuse an MRI volume with a CT, PET or SPECT volume"),
    "prepare": (
        "prepare",
        "build a training set from CHAOS data or an MRI + CT/PET/SPECT volume pair",
    ),
    "models": ("models", "list the default and user-trained weights"),
    "demo": ("demo", "fuse the shipped sample and write a montage to look at"),
}


#: Core argument names (as errors advise them) -> the ``edpsn`` flag when it differs.
CLI_FLAGS = {"method": "--register"}


def cli_option(name: str, value: object) -> str:
    """An option an error advises, as the ``edpsn`` flag: ``--orientation search``, ``--suv``."""
    flag = CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
    return flag if value is True else f"{flag} {value}"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only`` set, just that command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="edpsn", description="EDPSN multi-modality medical image fusion (core tools)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            mod = importlib.import_module(f".{module}", __package__)
            mod.add_arguments(cmd)
            cmd.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``edpsn``; user errors print one clear message and return exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0 if command is None else 2
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        """Show an EDPSNWarning as one ``edpsn <command>: warning:`` line; others as before."""
        if not issubclass(category, EDPSNWarning):
            return show(message, category, filename, lineno, file, line)
        print(f"edpsn {args.command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line
    try:
        return int(args._run(args) or 0)
    except EDPSNError as exc:
        message = exc.render(cli_option)
        if getattr(args, "json_progress", False):  # the Slicer modules name options their way
            event = {"event": "error", "message": message, "template": exc.template}
            print(json.dumps({**event, "options": exc.options}, default=str), flush=True)
        print(f"edpsn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edpsn {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show
