"""benchmarks/decoder_share.py on real MRI-PET validation images with a saved mix-head network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import decoder_share  # noqa: E402

from EDPSNLib.models.weights import save_weights  # noqa: E402
from EDPSNLib.network.config import EDPSNConfig  # noqa: E402
from EDPSNLib.network.model import EDPSN  # noqa: E402


def test_a_fresh_mix_head_gives_its_decoder_the_initial_share(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "EDPSN_MRI-PET.safetensors"
    save_weights(path, EDPSN(EDPSNConfig(head="mix")), {"pair": "MRI-PET"})
    g = decoder_share.decoder_shares(str(path), "MRI-PET", "case-fold-0/val", stride=16)
    assert g.size > 5_000 and ((0 < g) & (g < 1)).all()
    assert g.mean() == pytest.approx(0.1192, abs=0.02)  # sigmoid(-2), the initial share
    blend = tmp_path / "blend.safetensors"
    save_weights(blend, EDPSN(EDPSNConfig()), {"pair": "MRI-PET"})
    with pytest.raises(ValueError, match="mix"):
        decoder_share.decoder_shares(str(blend), "MRI-PET", "case-fold-0/val", stride=40)
