"""Which loss weights a run trains with when the command line does not give them all.

A loss is part of what a set of weights is: the shipped MRI-SPECT weights keep uptake because
they were trained with a strong uptake term (docs/protocol.md). Fine-tuning them with other
weights undoes that, so a weight not given explicitly comes from, in order: the checkpoint of
a resumed run, the sidecar of the ``--init`` weights, the sidecar of the pair's shipped
default weights, and last :class:`LossConfig`'s defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from EDPSNLib.errors import WeightsError
from EDPSNLib.training.losses import LossConfig

#: Where the non-explicit loss weights came from (recorded in the run's metadata).
SOURCES = ("resumed run", "init weights", "shipped weights", "LossConfig defaults")


def _known(loss: dict[str, Any]) -> dict[str, Any]:
    """The keys of a stored loss dict that LossConfig knows (older sidecars may lack some)."""
    names = {f.name for f in dataclasses.fields(LossConfig)}
    return {k: v for k, v in loss.items() if k in names}


def stored_loss(
    pair: str, init: str | Path | None = None, resume: str | Path | None = None
) -> tuple[dict[str, Any], str]:
    """The loss dict a run inherits and where it comes from (one of ``SOURCES``)."""
    from EDPSNLib.models.lookup import default_weights_path
    from EDPSNLib.models.weights import read_metadata

    if resume is not None:
        from EDPSNLib.training.checkpoint import load_checkpoint

        loss = load_checkpoint(resume).get("train_config", {}).get("loss")
        if isinstance(loss, dict):
            return _known(loss), SOURCES[0]
    if init is not None:
        from EDPSNLib.models.lookup import resolve_weights

        loss = read_metadata(resolve_weights(init, pair)).get("loss")
        if isinstance(loss, dict):
            return _known(loss), SOURCES[1]
    try:
        loss = read_metadata(default_weights_path(pair)).get("loss")
    except WeightsError:  # no shipped weights (or sidecar) for this pair: plain defaults
        loss = None
    if isinstance(loss, dict):
        return _known(loss), SOURCES[2]
    return {}, SOURCES[3]


def choose_loss(
    given: dict[str, Any],
    pair: str,
    init: str | Path | None = None,
    resume: str | Path | None = None,
) -> tuple[LossConfig, str]:
    """The run's LossConfig: ``given`` (None values ignored) over the inherited weights.

    Returns the config and a one-line note of what was inherited from where.
    """
    explicit = {k: v for k, v in given.items() if v is not None}
    stored, source = stored_loss(pair, init, resume)
    loss = LossConfig.from_dict({**stored, **explicit})
    given_names = ", ".join(sorted(explicit)) or "none"
    return loss, f"loss weights given: {given_names}; the others from the {source}"
