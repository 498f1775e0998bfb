"""Weights by what the user gives: nothing (the pair's default), a file, or a registry name."""

from __future__ import annotations

from pathlib import Path

from EDPSNLib.errors import WeightsError
from EDPSNLib.models.registry import find_model, weights_file
from EDPSNLib.paths import default_models_dir


def default_weights_path(pair: str) -> Path:
    """The shipped default weights of a modality pair, e.g. ``Resources/Models/EDPSN_MRI-PET``."""
    return weights_file(default_models_dir(), pair)


def resolve_weights(
    weights: str | Path | None, pair: str, user_dir: str | Path | None = None
) -> Path:
    """A weights argument to a file: None is the pair's default; an existing file is itself;
    a bare name is looked up in the registry (user folder ``user_dir`` first, then defaults)."""
    if weights is None:
        path = default_weights_path(pair)
        if not path.is_file():
            raise WeightsError(
                f"No default weights for {pair} at {path}; train some with 'edpsn train' "
                "and pass them with --weights."
            )
        return path
    candidate = Path(weights).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.parent != Path("."):  # a path, not a name: no registry lookup
        raise WeightsError(f"Weights file {candidate} not found; check the path or 'edpsn models'.")
    return find_model(str(weights), pair, user_dir).path
