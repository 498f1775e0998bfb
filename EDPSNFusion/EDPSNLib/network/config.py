"""EDPSN architecture settings: every width, depth and switch, JSON round-trippable.

The paper (Qu et al., Information Fusion 123 (2025) 103312) leaves widths, depths, the
entropy quantisation and the output head open; the defaults below are our choices, sized so
that one modality pair trains on a 2-core CPU in minutes: 14.8 k parameters (58 KiB in
float32) and 1.87 GFLOPs per 256x256 pair (benchmarks/bench_model.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from EDPSNLib.errors import InputError

#: Name and version of the network layout; stored with weights so foreign files are refused.
ARCHITECTURE = "edpsn-v1"

_ENTROPY_SOURCES = ("max", "mean", "mri", "func")
HEADS = ("blend", "detail", "mix", "direct")  # the output heads (also edpsn train --head)


@dataclass
class EDPSNConfig:
    """All settings of :class:`EDPSNLib.network.model.EDPSN`; the defaults are the shipped network.

    Checked on creation: a bad value raises :class:`EDPSNLib.errors.InputError` naming every
    problem. Stored with the weights as :meth:`to_dict`.

    Example:
        >>> EDPSNConfig().path_depths
        (1, 2, 3)
        >>> EDPSNConfig(head="sum")
        Traceback (most recent call last):
        ...
        EDPSNLib.errors.InputError: Invalid EDPSN config: head must be one of ('blend', 'detail', 'mix', 'direct'), got 'sum'.
    """

    # Ablation switches (paper section "ablation"): EEM, ED and DPS can each be turned off.
    use_eem: bool = True  # off: the functional image enters unchanged
    use_ed: bool = True  # off: no entropy masks, every path sees all shallow features
    use_dps: bool = True  # off: one shared path of depth max(path_depths) for every region
    # EEM: I' = I + eem_weight * CCG(I) (see edge.py); 0 makes EEM the identity.
    eem_weight: float = 0.5
    # ED: grey levels of the local-entropy quantisation, Otsu histogram bins, source image.
    entropy_levels: int = 16
    otsu_bins: int = 64
    entropy_source: str = "max"  # max | mean | mri | func (of MRI and functional luminance)
    # DPS widths and depths.
    channels: int = 16  # shallow / path / fused feature width
    branch_channels: int = 4  # width of each parallel dilated branch inside an MFB
    path_depths: tuple[int, ...] = (1, 2, 3)  # MFBs per path: low, mid, high entropy
    dilations: tuple[int, ...] = (1, 2, 3)  # one 3x3 branch per dilation in every MFB
    # Learnt per-region gating: per-pixel softmax weights over the three path outputs from the
    # shallow features and the region masks, starting at the hard masks (model.path_gate).
    dps_gate: bool = False
    use_attention: bool = True  # squeeze-and-excitation channel attention closing each AFM
    attention_reduction: int = 4
    negative_slope: float = 0.1  # LeakyReLU slope
    # Output head: "blend" = w*mri + (1-w)*func_y + residual_scale*tanh(r); "detail" = the same
    # blend of Gaussian bases plus learned gains on each input's detail; "mix" = the blend and a
    # free decoder output mixed by a learned per-pixel share; "direct" = sigmoid.
    head: str = "blend"
    residual_scale: float = 0.2  # 0: the blend stays between the inputs (PSNR >= the max's)
    head_sigma: float = 2.0  # Gaussian sigma (pixels) splitting base and detail in "detail"
    decoder_channels: int = 8

    def __post_init__(self) -> None:
        self.path_depths = tuple(int(d) for d in self.path_depths)
        self.dilations = tuple(int(d) for d in self.dilations)
        problems = []
        if len(self.path_depths) != 3 or min(self.path_depths) < 1:
            problems.append(f"path_depths must be 3 integers >= 1, got {self.path_depths}")
        if not self.dilations or min(self.dilations) < 1:
            problems.append(f"dilations must be integers >= 1, got {self.dilations}")
        for name in ("channels", "branch_channels", "decoder_channels", "attention_reduction"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= int(self.entropy_levels) <= 256:
            problems.append(f"entropy_levels must be in 2..256, got {self.entropy_levels}")
        if int(self.otsu_bins) < 3:
            problems.append(f"otsu_bins must be >= 3, got {self.otsu_bins}")
        if self.entropy_source not in _ENTROPY_SOURCES:
            problems.append(f"entropy_source must be one of {_ENTROPY_SOURCES}")
        if self.head not in HEADS:
            problems.append(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head_sigma <= 0:
            problems.append(f"head_sigma must be > 0, got {self.head_sigma}")
        if self.eem_weight < 0:
            problems.append(f"eem_weight must be >= 0, got {self.eem_weight}")
        if not 0 <= self.residual_scale <= 1:
            problems.append(f"residual_scale must be in [0, 1], got {self.residual_scale}")
        if problems:
            raise InputError("Invalid EDPSN config: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-able dict (tuples become lists).

        Returns:
            ``{field: value}``.

        Example:
            >>> EDPSNConfig().to_dict()["dilations"]
            [1, 2, 3]
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EDPSNConfig:
        """Inverse of :meth:`to_dict`.

        Args:
            data: ``{field: value}``; missing fields take their defaults.

        Returns:
            The checked config.

        Raises:
            InputError: for unknown keys (settings of another network version) or bad values.

        Example:
            >>> EDPSNConfig.from_dict(EDPSNConfig(channels=8).to_dict()).channels
            8
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"Unknown EDPSN config key(s) {unknown}: the settings were written for another "
                f"network version than {ARCHITECTURE!r}. Use weights made for {ARCHITECTURE!r} "
                f"or remove those keys; known keys are {sorted(known)}."
            )
        return cls(**data)
