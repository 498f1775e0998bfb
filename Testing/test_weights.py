"""EDPSN weights files: round trip, metadata, and refusal of damaged or foreign files."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from EDPSNLib.data.harvard import list_pairs
from EDPSNLib.errors import WeightsError
from EDPSNLib.models.weights import load_weights, read_metadata, save_weights, sidecar_path
from EDPSNLib.network.config import ARCHITECTURE, EDPSNConfig
from EDPSNLib.network.model import EDPSN
from EDPSNLib.training.datasets import HarvardFusionDataset


@pytest.fixture(scope="module")
def pair_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two real MRI-PET test pairs cropped to 96x96: (2, 1, 96, 96), (2, 3, 96, 96)."""
    ds = HarvardFusionDataset(list_pairs("MRI-PET", "test")[:2], crop=96)
    items = [ds[(i, 7)] for i in range(2)]
    return torch.stack([m for m, _ in items]), torch.stack([f for _, f in items])


@pytest.fixture()
def saved(tmp_path):
    """A seeded, non-default model saved with training-like metadata."""
    torch.manual_seed(1)
    model = EDPSN(EDPSNConfig(channels=8, decoder_channels=4))
    meta = {
        "pair": "MRI-PET",
        "data": "harvard",
        "split": "train",
        "epochs": 3,
        "metrics": {"Qabf": 0.5},
        "perceptual": "random-conv-seed0",
        "command": "edpsn train",
    }
    path = save_weights(tmp_path / "w.safetensors", model, meta)
    return path, model


def test_round_trip_gives_identical_outputs(saved, pair_batch):
    path, model = saved
    loaded, meta = load_weights(path, expected_pair="MRI-PET")
    model.eval()
    mri, func = pair_batch
    with torch.no_grad():
        assert torch.equal(model(mri, func), loaded(mri, func))
    assert not loaded.training and loaded.config == model.config
    assert meta["architecture"] == ARCHITECTURE and meta["config"] == model.config.to_dict()
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (
        meta["pair"] == "MRI-PET"
        and meta["epochs"] == 3
        and meta["perceptual"] == "random-conv-seed0"
    )
    assert "date" in meta and meta["file"] == "w.safetensors"
    assert read_metadata(path) == meta
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "w.json",
        "w.safetensors",
    ]  # no temp files


def test_missing_file_or_sidecar(saved, tmp_path):
    path, _ = saved
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
    sidecar_path(path).unlink()
    with pytest.raises(WeightsError, match="Metadata file .* is missing"):
        load_weights(path)


def test_truncated_or_tampered_file_is_refused(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or was changed"):
        load_weights(path)
    tampered = bytearray(data)
    tampered[-10] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(WeightsError, match="sha256"):
        load_weights(path)


def _rewrite_sidecar(path, **changes) -> None:
    side = sidecar_path(path)
    meta = json.loads(side.read_text())
    meta.update(changes)
    side.write_text(json.dumps(meta))


def test_truncated_file_with_matching_sidecar_is_refused_by_the_parser(saved):
    path, _ = saved
    cut = path.read_bytes()[:200]
    path.write_bytes(cut)
    _rewrite_sidecar(path, sha256=hashlib.sha256(cut).hexdigest())
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(path)


def test_pickle_disguised_as_safetensors_is_never_unpickled(saved):
    path, model = saved
    torch.save(model.state_dict(), path)  # a pickle under the .safetensors name
    _rewrite_sidecar(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(path)


def test_foreign_architecture_wrong_pair_and_mismatched_config(saved):
    path, _ = saved
    with pytest.raises(WeightsError, match="trained for 'MRI-PET', not 'MRI-CT'"):
        load_weights(path, expected_pair="MRI-CT")
    _rewrite_sidecar(path, architecture="unet-v3")
    with pytest.raises(WeightsError, match="architecture 'unet-v3'"):
        load_weights(path)
    _rewrite_sidecar(
        path, architecture=ARCHITECTURE, config={**read_metadata(path)["config"], "channels": 16}
    )
    with pytest.raises(WeightsError, match="do not fit"):
        load_weights(path)
    _rewrite_sidecar(path, config={"no_such_setting": 1})
    with pytest.raises(WeightsError, match="settings are invalid"):
        load_weights(path)


def test_save_refuses_other_suffix_and_writes_strict_json(tmp_path):
    model = EDPSN(EDPSNConfig(channels=4, decoder_channels=4))
    with pytest.raises(WeightsError, match="must end with .safetensors"):
        save_weights(tmp_path / "w.pt", model, {"pair": "MRI-CT"})
    path = save_weights(
        tmp_path / "w.safetensors", model, {"pair": "MRI-CT", "metrics": {"VIF": float("nan")}}
    )
    assert read_metadata(path)["metrics"]["VIF"] is None  # NaN stored as null, not invalid JSON
