"""Putting models into the user folder and taking them out: checked, atomic installs and removals.

Kept apart from the lookups of :mod:`EDPSNLib.models.registry`, which never change a file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

from EDPSNLib.atomic import atomic_path
from EDPSNLib.errors import InputError, WeightsError
from EDPSNLib.models.registry import (
    DEFAULT_PAIRS,
    WEIGHTS_SUFFIX,
    check_name,
    default_name,
)
from EDPSNLib.paths import default_models_dir, user_models_dir


def install_model(
    weights_path: str | os.PathLike,
    name: str | None = None,
    user_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    extra: dict | None = None,
) -> Path:
    """Check a weights file fully, then copy it and its sidecar into the user folder as ``name``.

    Sidecar, sha256, architecture and tensor shapes are checked (the network is rebuilt). Both
    files are written to temporary files first; the weights are renamed into place before the
    sidecar, so an interrupted install is never listed as valid (its sha256 cannot match).

    Args:
        weights_path: a ``.safetensors`` file with its ``.json`` sidecar beside it.
        name: the registry name (default: the file's stem; a default's name must be given
            explicitly, and then hides that default from name lookups).
        user_dir: the user models folder.
        overwrite: replace a user model of that name.
        extra: more sidecar fields (``tools/ship_weights.py``: the recipe and protocol section).

    Returns:
        The installed weights path.

    Raises:
        InputError: not a weights file, a bad or taken name. WeightsError: a file that fails
            the checks.

    Example:
        >>> import tempfile
        >>> from EDPSNLib.models.lookup import default_weights_path
        >>> from EDPSNLib.models.registry import find_model
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = install_model(default_weights_path("MRI-CT"), "my_ct", user_dir=folder)
        ...     path.name, find_model("my_ct", user_dir=folder).valid
        ('my_ct.safetensors', True)
    """
    from EDPSNLib.models.weights import json_safe, load_weights

    source = Path(weights_path).expanduser()
    if not source.is_file():
        raise InputError(f"{source} is not a file; give the path of a .safetensors weights file.")
    if source.suffix != WEIGHTS_SUFFIX:
        raise InputError(
            f"{source.name} is not EDPSN weights: install a .safetensors file that has its .json "
            "sidecar beside it (as 'edpsn train' writes them)."
        )
    _model, meta = load_weights(source)  # sidecar, architecture, sha256 and tensor shapes
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise WeightsError(f"{source.name} changed while it was being installed; try again.")
    stem = check_name(name if name is not None else source.stem)
    if name is None and stem in {default_name(p) for p in DEFAULT_PAIRS}:
        raise InputError(
            f"{source.name} has the name of a shipped default; give it its own name with --name "
            f"(or --name {stem} to hide the default from name lookups)."
        )
    folder = user_models_dir(user_dir)
    target = folder / f"{stem}{WEIGHTS_SUFFIX}"
    side = target.with_suffix(".json")
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"{source} is already installed as '{stem}'.")
    if (target.exists() or side.exists()) and not overwrite:
        raise InputError(
            f"A user model named '{stem}' already exists in {folder}; pass --overwrite to replace "
            "it or choose another --name."
        )
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    meta = {
        **meta,
        "file": target.name,
        "name": stem,
        "installed_from": str(source.resolve()),
        "installed": now,
        **(extra or {}),
    }
    text = json.dumps(json_safe(meta), indent=2, sort_keys=True, allow_nan=False, default=str)
    # Exit order of the nested contexts: the weights are renamed first, the sidecar last.
    with atomic_path(side) as tmp_side, atomic_path(target) as tmp_weights:
        tmp_side.write_text(text + "\n")
        tmp_weights.write_bytes(data)
    return target


def remove_model(name: str, user_dir: str | os.PathLike | None = None) -> list[Path]:
    """Delete a user model's weights and sidecar (the weights first: no half model is listed).

    Args:
        name: the registry name.
        user_dir: the user models folder.

    Returns:
        The removed files.

    Raises:
        InputError: no user model of that name, or a shipped default (those cannot be removed).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     remove_model("EDPSN_MRI-CT", user_dir=empty)
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.InputError: 'EDPSN_MRI-CT' is a shipped default model (...); defaults cannot be removed. Only models in the user folder can.
    """
    stem = check_name(name)
    folder = user_models_dir(user_dir)
    files = [
        p for p in (folder / f"{stem}{WEIGHTS_SUFFIX}", folder / f"{stem}.json") if p.is_file()
    ]
    if not files:
        if (default_models_dir() / f"{stem}{WEIGHTS_SUFFIX}").is_file():
            raise InputError(
                f"'{stem}' is a shipped default model ({default_models_dir()}); defaults cannot be "
                "removed. Only models in the user folder can."
            )
        raise InputError(f"No user model named '{stem}' in {folder}; 'edpsn models' lists them.")
    for path in files:
        path.unlink()
    return files
