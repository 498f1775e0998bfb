"""Where data, default weights and user weights live; every location can be overridden."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the real-data folder (default: ``<repo>/../shared/data``).
DATA_ENV = "EDPSN_DATA"
#: Environment variable that overrides the user models folder.
USER_MODELS_ENV = "EDPSN_MODELS"

_LIB_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The source checkout's root (``EDPSNFusion/EDPSNLib/../..``)."""
    return _LIB_DIR.parents[1]


def data_root() -> Path:
    """The real-data folder: ``$EDPSN_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else repo_root().parent / "shared" / "data"


def harvard_root(root: str | Path | None = None) -> Path:
    """The Harvard folder: ``root`` itself or its ``harvard/`` sub-folder; default ``data_root()/harvard``.

    Lives here, not in harvard.py, so the GUI's job builders use it without numpy or PIL.
    """
    if root is None:
        return data_root() / "harvard"
    path = Path(root).expanduser()
    return path / "harvard" if (path / "harvard").is_dir() else path


def default_models_dir() -> Path:
    """Folder of the shipped default weights (source tree or installed Slicer module)."""
    for candidate in (
        repo_root() / "Resources" / "Models",
        _LIB_DIR.parent / "Resources" / "Models",
    ):
        if candidate.is_dir():
            return candidate
    return repo_root() / "Resources" / "Models"


def user_models_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder of user fine-tuned weights: ``override`` (``--models-dir``), else ``$EDPSN_MODELS``,
    else ``~/.edpsn/models``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(USER_MODELS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".edpsn" / "models"
