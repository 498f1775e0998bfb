"""Exponential moving average (EMA) of the network's weights, the weights validated and saved.

With a few hundred CPU steps the last weights of a run move by about as much between epochs
as between seeds; an average over the last ~1 / (1 - decay) steps is a steadier estimate of
the same minimum. The average starts at the first weights and warms up (decay ramped as
(1 + t) / (10 + t)), so early epochs are not dominated by the initial weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay used for update number ``updates`` (0-based): min(decay, (1 + t) / (10 + t)).

    Example:
        >>> round(ema_decay_at(0.99, 0), 3), ema_decay_at(0.99, 10_000)
        (0.1, 0.99)
    """
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """An EMA copy of ``model`` (same class and config, in eval mode, no gradients).

    Args:
        model: the trained network; its floating-point parameters and buffers are averaged,
            other buffers copied.
        decay: in (0, 1); the average spans about 1 / (1 - decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}.")
        self.decay, self.updates = float(decay), 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights by one step."""
        d = ema_decay_at(self.decay, self.updates)
        for avg, now in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(now.detach().to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(now)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume the average exactly."""
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"decay": self.decay, "updates": self.updates, "model": weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (same network; the decay given at creation is kept)."""
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def resume_average(
    average: WeightAverage | None, stored: dict[str, Any] | None, global_step: int
) -> str | None:
    """Restore a resumed run's average from its checkpoint's; a warning when they do not match.

    A run that asks for an average from a checkpoint without one starts it from the weights; a
    run without an average from a checkpoint with one drops it, which is said too.
    """
    if average is not None and stored:
        average.load_state_dict(stored)
        return None
    if average is not None:
        average.updates = global_step
        return (
            "The checkpoint has no weight average (its run had no --ema-decay): the average "
            "starts from its weights."
        )
    if stored:
        decay = stored["decay"]
        return (
            f"The checkpoint's run saved a moving average of its weights (--ema-decay "
            f"{decay:g}); this run saves the trained weights. Resume with --ema-decay "
            f"{decay:g} to keep the average."
        )
    return None
