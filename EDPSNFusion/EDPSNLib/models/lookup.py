"""Weights by what the user gives: nothing (the pair's default), a file, or a registry name."""

from __future__ import annotations

from pathlib import Path

from EDPSNLib.errors import WeightsError
from EDPSNLib.models.registry import find_model, weights_file
from EDPSNLib.paths import default_models_dir


def default_weights_path(pair: str) -> Path:
    """The shipped default weights file of a modality pair.

    Args:
        pair: ``MRI-CT``, ``MRI-PET`` or ``MRI-SPECT``.

    Returns:
        ``<defaults folder>/EDPSN_<pair>.safetensors`` (which may be missing in a bare install).

    Example:
        >>> default_weights_path("MRI-PET").name
        'EDPSN_MRI-PET.safetensors'
    """
    return weights_file(default_models_dir(), pair)


def resolve_weights(
    weights: str | Path | None, pair: str, user_dir: str | Path | None = None
) -> Path:
    """A weights argument (``--weights``, the GUI's model choice) to a file.

    Args:
        weights: None for the pair's default, a path to an existing file, or a bare registry
            name (looked up in the user folder first, then the defaults).
        pair: the modality pair (for the default, and to list names in errors).
        user_dir: the user models folder (default ``$EDPSN_MODELS`` or ``~/.edpsn/models``).

    Returns:
        The weights file.

    Raises:
        WeightsError: no default for the pair, a path that does not exist, or an unknown name
            (the message lists the usable ones).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     resolve_weights("EDPSN_MRI-CT", "MRI-CT", user_dir=empty).name
        'EDPSN_MRI-CT.safetensors'
    """
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
