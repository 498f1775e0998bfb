"""Atomic output files: write beside the target, then rename, so no half-written file is left."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from EDPSNLib import interrupts
from EDPSNLib.errors import InputError


def check_output_path(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Resolve an output path; refuse one equal to an input or in a folder that cannot be written."""
    out = Path(path).expanduser().resolve()
    for inp in inputs:
        if Path(inp).expanduser().resolve() == out:
            raise InputError(f"Output path {out} is also an input; choose another output name.")
    parent = out.parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise InputError(f"Cannot write to folder {parent}; choose a writable output location.")
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary name keeps the extension (writers such as SimpleITK pick the format from it).
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else "".join(target.suffixes)
    with interrupts.deferred():  # a signal must not come between mkstemp and the try below
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{ext}", dir=target.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the usual permissions of a new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _temp_beside(target: Path) -> Path:
    """An empty private temporary file beside ``target``, keeping its extension."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{''.join(target.suffixes)}", dir=target.parent
    )
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_paths(targets: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Write a set of files all or nothing: yield a temporary path per target; when the block
    succeeds they replace their targets together, else no target changes.

    Targets that already exist are moved aside first and put back if any replacement fails
    (a full disk, a signal), so a failed run never leaves a mix of new and old outputs. Every
    temporary file is removed on the way out, whatever happened.

    Args:
        targets: name -> output path.

    Returns:
        A context manager yielding name -> temporary path beside each target.
    """
    tmps: dict[str, Path] = {}
    backups: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        # A signal between creating a temporary and recording it would leak the file.
        with interrupts.deferred():
            for key, path in targets.items():
                tmps[key] = _temp_beside(Path(path))
        yield tmps
        umask = os.umask(0)
        os.umask(umask)
        for key, tmp in tmps.items():
            target = Path(targets[key])
            os.chmod(tmp, 0o666 & ~umask)
            if target.exists():
                backups[target] = _temp_beside(target)
                os.replace(target, backups[target])
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            with contextlib.suppress(OSError):
                target.unlink()
        for target, backup in backups.items():
            with contextlib.suppress(OSError):
                os.replace(backup, target)
        raise
    finally:
        for path in (*tmps.values(), *backups.values()):
            with contextlib.suppress(OSError):
                path.unlink()
