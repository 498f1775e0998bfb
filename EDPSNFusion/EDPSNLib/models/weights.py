"""EDPSN weights files: ``name.safetensors`` plus a ``name.json`` sidecar; loading never unpickles.

The sidecar holds the architecture name and config (to rebuild the network), the modality
pair, the data, split and settings of the training, validation metrics, the perceptual
extractor used, the command, date and time taken, and the sha256 of the safetensors file,
so a truncated or altered file is refused before any tensor is read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from EDPSNLib.atomic import atomic_path
from EDPSNLib.errors import EDPSNError, WeightsError
from EDPSNLib.network.config import ARCHITECTURE, EDPSNConfig

#: Format tag of the sidecar; bump when its meaning changes.
SIDECAR_FORMAT = "edpsn-weights/1"


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar beside a weights file.

    Args:
        path: ``x.safetensors``.

    Returns:
        ``x.json``.

    Example:
        >>> sidecar_path("runs/EDPSN_MRI-CT.safetensors").as_posix()
        'runs/EDPSN_MRI-CT.json'
    """
    return Path(path).with_suffix(".json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_safe(value: Any) -> Any:
    """A value made strict-JSON-able: tuples become lists, NaN and infinite floats None.

    Args:
        value: nested dicts, lists, tuples and scalars.

    Returns:
        The same structure (dict keys as strings).

    Example:
        >>> json_safe({"a": (1, float("nan")), 2: float("inf")})
        {'a': [1, None], '2': None}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model_config(model: nn.Module, metadata: dict[str, Any]) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if isinstance(config, EDPSNConfig):
        return config.to_dict()
    if isinstance(metadata.get("config"), dict):
        return dict(metadata["config"])
    raise WeightsError("The model has no EDPSNConfig and the metadata gives no 'config'.")


def save_weights(
    path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a model's weights as safetensors plus the JSON sidecar, both atomically.

    ``metadata`` (pair, data, split, epochs, metrics, perceptual, command, time_s, ...) is
    stored as given; ``format``, ``architecture``, ``config``, ``sha256``, ``file`` and ``date``
    (if absent) are filled in here.

    Args:
        path: the weights file, ending in ``.safetensors``.
        model: an :class:`EDPSNLib.network.model.EDPSN` (or a module with the metadata's
            ``config``).
        metadata: what to store in the sidecar.

    Returns:
        ``path``.

    Raises:
        WeightsError: a name without ``.safetensors``, or no config to store.

    Example:
        >>> import tempfile
        >>> from EDPSNLib.network.model import EDPSN
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_weights(Path(folder) / "w.safetensors", EDPSN(), {"pair": "MRI-CT"})
        ...     model, meta = load_weights(path, expected_pair="MRI-CT")
        ...     meta["architecture"], model.training
        ('edpsn-v1', False)
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"Weights file name {path.name} must end with .safetensors.")
    meta = dict(metadata or {})
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    header = {"architecture": ARCHITECTURE, "pair": str(meta.get("pair", ""))}
    data = st_save(state, metadata=header)
    meta.update(
        format=SIDECAR_FORMAT,
        architecture=ARCHITECTURE,
        config=_model_config(model, meta),
        file=path.name,
        sha256=_sha256(data),
    )
    meta.setdefault("date", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    text = (
        json.dumps(json_safe(meta), indent=2, sort_keys=True, allow_nan=False, default=str) + "\n"
    )
    with atomic_path(path) as tmp_weights, atomic_path(sidecar_path(path)) as tmp_json:
        tmp_weights.write_bytes(data)
        tmp_json.write_text(text)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The sidecar of a weights file as a dict (no tensor is read).

    Args:
        path: the weights file.

    Returns:
        The sidecar's JSON object.

    Raises:
        WeightsError: a missing or unreadable sidecar, or one that is not a JSON object.

    Example:
        >>> from EDPSNLib.models.lookup import default_weights_path
        >>> read_metadata(default_weights_path("MRI-SPECT"))["pair"]
        'MRI-SPECT'
    """
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise WeightsError(
            f"Metadata file {side} is missing: EDPSN weights come as {path.stem}.safetensors "
            f"plus {side.name}; copy both files together (or retrain with 'edpsn train')."
        )
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"Metadata file {side} is unreadable ({exc}); restore it from the source."
        ) from exc
    if not isinstance(meta, dict):
        raise WeightsError(f"Metadata file {side} does not hold a JSON object; restore it.")
    return meta


def check_metadata(meta: dict[str, Any], path: Path, expected_pair: str | None = None) -> None:
    """Refuse weights of another architecture or modality pair, saying what to use instead.

    Args:
        meta: a sidecar (:func:`read_metadata`).
        path: the weights file (for the message).
        expected_pair: the pair the caller fuses, or None for any.

    Returns:
        None; raises :class:`WeightsError` on a mismatch.

    Example:
        >>> check_metadata({"architecture": "edpsn-v1", "pair": "MRI-CT"}, Path("w.safetensors"), "MRI-PET")
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.WeightsError: w.safetensors was trained for 'MRI-CT', not 'MRI-PET'; ...
    """
    arch = meta.get("architecture")
    if arch != ARCHITECTURE:
        raise WeightsError(
            f"{path.name} holds weights for architecture {arch!r}, but this EDPSN version "
            f"runs {ARCHITECTURE!r}; use weights trained with this version or retrain."
        )
    if expected_pair is not None and meta.get("pair") != expected_pair:
        raise WeightsError(
            f"{path.name} was trained for {meta.get('pair')!r}, not {expected_pair!r}; pick "
            f"weights made for {expected_pair} (see 'edpsn models')."
        )


def load_weights(
    path: str | Path, expected_pair: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the EDPSN network from a weights file, after checking sidecar, sha256 and shapes.

    Loading never unpickles (safetensors).

    Args:
        path: the weights file.
        expected_pair: refuse weights of another modality pair; None accepts any.
        device: where to put the model.

    Returns:
        (model in eval mode on ``device``, sidecar metadata).

    Raises:
        WeightsError: any problem, with what to do.

    Example:
        >>> from EDPSNLib.models.lookup import default_weights_path
        >>> model, meta = load_weights(default_weights_path("MRI-PET"), expected_pair="MRI-PET")
        >>> type(model).__name__, meta["pair"]
        ('EDPSN', 'MRI-PET')
    """
    from safetensors.torch import load as st_load

    from EDPSNLib.network.model import EDPSN

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} not found; check the path or 'edpsn models'.")
    meta = read_metadata(path)
    check_metadata(meta, path, expected_pair)
    data = path.read_bytes()
    if _sha256(data) != meta.get("sha256"):
        raise WeightsError(
            f"{path.name} does not match the sha256 in {sidecar_path(path).name}: the file is "
            "truncated or was changed. Copy it again from its source or retrain."
        )
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"{path.name} is not a readable safetensors file ({exc}).") from exc
    try:
        model = EDPSN(EDPSNConfig.from_dict(meta.get("config") or {}))
    except EDPSNError as exc:
        raise WeightsError(f"{path.name}: the stored network settings are invalid: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{path.name}: the tensors do not fit the network its metadata describes ({exc}); "
            "the files do not belong together."
        ) from exc
    return model.to(device).eval(), meta
