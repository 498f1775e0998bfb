"""The model registry: shipped default weights plus the user's models folder, looked up by name.

A model is ``NAME.safetensors`` with its ``NAME.json`` sidecar (see :mod:`EDPSNLib.models.weights`).
The defaults in ``Resources/Models`` are always listed and cannot be removed; user models live
in ``--models-dir`` / ``$EDPSN_MODELS`` / ``~/.edpsn/models`` and win a name lookup. Listing
never imports torch (the Slicer modules call it before torch is installed) and never raises
for a bad file: the file is listed with its problem instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from EDPSNLib.errors import InputError, WeightsError
from EDPSNLib.names import PAIR_NAMES
from EDPSNLib.network.config import ARCHITECTURE
from EDPSNLib.paths import default_models_dir, user_models_dir

#: The modality pairs that ship default weights ``EDPSN_<pair>``.
DEFAULT_PAIRS = PAIR_NAMES
WEIGHTS_SUFFIX = ".safetensors"
# Portable file names: no separators, no leading dot, nothing Windows refuses.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{d}{i}" for d in ("COM", "LPT") for i in range(10)
}


@dataclass(frozen=True)
class ModelEntry:
    """One weights file of the registry, as its sidecar describes it.

    Built by :func:`list_models` and :func:`find_model`; ``problem`` says why an unusable file
    cannot be used (the listing never raises for a bad file).

    Example:
        >>> entry = ModelEntry("my_ct", "user", Path("my_ct.safetensors"), pair="MRI-CT")
        >>> entry.valid, entry.to_dict()["path"]
        (True, 'my_ct.safetensors')
    """

    name: str
    source: str  # "default" (shipped, Resources/Models) or "user"
    path: Path
    pair: str | None = None
    data: str | None = None  # training data folder or source, from the sidecar
    date: str | None = None
    epochs: int | None = None
    val_loss: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    init_pair: str | None = None  # pair of the weights it was fine-tuned from
    shadows_default: bool = False  # a user model with a default's name: the name finds this one
    shadowed: bool = False  # a default hidden (for name lookup) by a user model of that name
    problem: str | None = None

    @property
    def valid(self) -> bool:
        """True when the sidecar is readable and matches the weights file."""
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``edpsn models --json`` format)."""
        return {**asdict(self), "path": str(self.path), "valid": self.valid}


def default_name(pair: str) -> str:
    """The name of the shipped default weights of a pair (a training run names its best weights
    the same way, ``<out>/EDPSN_<pair>.safetensors``).

    Args:
        pair: the modality pair.

    Returns:
        ``EDPSN_<pair>``.

    Example:
        >>> default_name("MRI-SPECT")
        'EDPSN_MRI-SPECT'
    """
    return f"EDPSN_{pair}"


def weights_file(folder: str | os.PathLike, pair: str) -> Path:
    """The weights file of a pair in a folder: the defaults folder, or a training run's.

    Args:
        folder: the folder.
        pair: the modality pair.

    Returns:
        ``<folder>/EDPSN_<pair>.safetensors``.

    Example:
        >>> weights_file("runs/ct", "MRI-CT").as_posix()
        'runs/ct/EDPSN_MRI-CT.safetensors'
    """
    return Path(folder) / f"{default_name(pair)}{WEIGHTS_SUFFIX}"


def check_name(name: str) -> str:
    """A model name that is a safe, portable file name (``.safetensors`` stripped).

    Args:
        name: the name given by the user.

    Returns:
        The name without the suffix.

    Raises:
        InputError: path separators, a leading dot, over 100 characters or a name Windows
            refuses (``CON``, ``COM1``, ...).

    Example:
        >>> check_name("scanner_b.v2.safetensors")
        'scanner_b.v2'
        >>> check_name("../x")
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.InputError: '../x' is not a usable model name: ...
    """
    name = name[: -len(WEIGHTS_SUFFIX)] if name.endswith(WEIGHTS_SUFFIX) else name
    if (
        not _SAFE_NAME.fullmatch(name)
        or name.endswith(".")
        or name.split(".")[0].upper() in _WINDOWS_RESERVED
    ):
        raise InputError(
            f"'{name}' is not a usable model name: use up to 100 letters, digits, '-', '_' and "
            "'.', starting with a letter or digit (it becomes the file name)."
        )
    return name


def _problem(path: Path, meta: Any) -> str | None:
    """Why a weights file with this sidecar content cannot be used (None: fine); no torch."""
    if not isinstance(meta, dict):
        return f"{path.with_suffix('.json').name} does not hold a JSON object; restore it."
    if meta.get("architecture") != ARCHITECTURE:
        return f"made for architecture {meta.get('architecture')!r}, not {ARCHITECTURE!r}; retrain."
    if not meta.get("pair"):
        return "the sidecar names no modality pair; restore it from the source."
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable ({exc})."
    if digest != meta.get("sha256"):
        return "does not match the sha256 in its sidecar: truncated or changed; copy it again."
    return None


def _entry(path: Path, source: str) -> ModelEntry:
    """Read one weights file's sidecar into an entry; problems are recorded, never raised."""
    side = path.with_suffix(".json")
    if not path.is_file():
        return ModelEntry(path.stem, source, path, problem=f"{path} is missing; reinstall it.")
    if not side.is_file():
        return ModelEntry(
            path.stem, source, path, problem=f"no {side.name} sidecar; copy both files together."
        )
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ModelEntry(path.stem, source, path, problem=f"{side.name} is unreadable ({exc}).")
    problem = _problem(path, meta)
    if not isinstance(meta, dict):
        return ModelEntry(path.stem, source, path, problem=problem)
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    epochs, val_loss = meta.get("epochs"), meta.get("val_loss")
    return ModelEntry(
        name=path.stem,
        source=source,
        path=path,
        pair=meta.get("pair") or None,
        data=None if meta.get("data") is None else str(meta["data"]),
        date=None if meta.get("date") is None else str(meta["date"]),
        epochs=epochs if isinstance(epochs, int) else None,
        val_loss=float(val_loss) if isinstance(val_loss, (int, float)) else None,
        metrics={str(k): v for k, v in metrics.items() if v is None or isinstance(v, (int, float))},
        init_pair=training.get("init_pair"),
        problem=problem,
    )


def _scan(folder: Path, source: str) -> list[ModelEntry]:
    """Entries of every ``*.safetensors`` directly in ``folder`` (none if it does not exist)."""
    files = sorted(folder.glob(f"*{WEIGHTS_SUFFIX}")) if folder.is_dir() else []
    return [_entry(p, source) for p in files if p.is_file()]


def list_models(
    pair: str | None = None, user_dir: str | os.PathLike | None = None
) -> list[ModelEntry]:
    """Every model of the registry: the defaults first (a missing one with its problem), then the
    user's, by name. Never imports torch, never raises for a bad file.

    Args:
        pair: keep only models of this pair and those whose pair cannot be read; None: all.
        user_dir: the user models folder (default ``$EDPSN_MODELS`` or ``~/.edpsn/models``).

    Returns:
        The entries, with ``shadowed`` / ``shadows_default`` set where a user model has a
        default's name.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     [(e.name, e.source, e.valid) for e in list_models("MRI-PET", user_dir=empty)]
        [('EDPSN_MRI-PET', 'default', True)]
    """
    defaults = _scan(default_models_dir(), "default")
    present = {e.name for e in defaults}
    defaults += [
        ModelEntry(
            n,
            "default",
            default_models_dir() / f"{n}{WEIGHTS_SUFFIX}",
            pair=p,
            problem="not installed; reinstall the EDPSN extension.",
        )
        for p in DEFAULT_PAIRS
        if (n := default_name(p)) not in present
    ]
    users = _scan(user_models_dir(user_dir), "user")
    user_names = {e.name for e in users}
    default_names = {e.name for e in defaults}
    entries = sorted(
        (replace(e, shadowed=e.name in user_names) for e in defaults), key=lambda e: e.name
    ) + [replace(e, shadows_default=e.name in default_names) for e in users]
    return [e for e in entries if pair is None or e.pair in (pair, None)]


def find_model(
    name: str, pair: str | None = None, user_dir: str | os.PathLike | None = None
) -> ModelEntry:
    """The model called ``name``: the user folder first, then the defaults.

    Args:
        name: the registry name.
        pair: restricts the names listed in the error message.
        user_dir: the user models folder.

    Returns:
        Its entry (check ``valid`` before use).

    Raises:
        WeightsError: no model of that name; the message lists the usable names.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     find_model("EDPSN_MRI-CT", user_dir=empty).source
        'default'
    """
    try:
        stem = check_name(name)
    except InputError:
        stem = None  # not a name (a path, say): cannot be in the registry
    if stem is not None:
        for folder, source in (
            (user_models_dir(user_dir), "user"),
            (default_models_dir(), "default"),
        ):
            path = folder / f"{stem}{WEIGHTS_SUFFIX}"
            if path.is_file():
                return _entry(path, source)
    usable = sorted({e.name for e in list_models(pair, user_dir) if e.valid})
    which = f"Models for {pair}" if pair else "Available models"
    raise WeightsError(
        f"No model named '{name}' in the user folder {user_models_dir(user_dir)} nor the defaults "
        f"{default_models_dir()}. {which}: {', '.join(usable) or 'none'} "
        "('edpsn models' lists them; a file path works too)."
    )


def read_sidecar(entry: ModelEntry) -> dict[str, Any]:
    """The full sidecar metadata of an entry (``edpsn models show``).

    Args:
        entry: a registry entry.

    Returns:
        The sidecar as a dict.

    Raises:
        WeightsError: a missing or unreadable sidecar, or one that is not a JSON object.

    Example:
        >>> read_sidecar(find_model("EDPSN_MRI-PET", user_dir="/nonexistent"))["pair"]
        'MRI-PET'
    """
    side = entry.path.with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{entry.name}: {side} is missing or unreadable ({exc}).") from exc
    if not isinstance(meta, dict):
        raise WeightsError(f"{entry.name}: {side} does not hold a JSON object; restore it.")
    return meta
