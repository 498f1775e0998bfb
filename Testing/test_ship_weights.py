"""tools/ship_weights.py: a case-all run becomes the default with its recipe; fold runs cannot."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from EDPSNLib.models.registry import find_model

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ship_weights", ROOT / "tools/ship_weights.py")
ship_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship_weights)


def _run_folder(source: Path, target: Path) -> Path:
    """A run folder holding a copy of real weights and their sidecar."""
    target.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(source.with_suffix(suffix), target / source.with_suffix(suffix).name)
    return target


def test_a_final_run_is_shipped_with_its_recipe_and_stays_valid(tmp_path: Path) -> None:
    run = _run_folder(ROOT / "Resources/Models/EDPSN_MRI-PET.safetensors", tmp_path / "all-seed0")
    models = tmp_path / "Models"
    models.mkdir()
    target = ship_weights.ship(run, "r: cmd", "docs/protocol.md, section 'x'", models)
    assert target == models / "EDPSN_MRI-PET.safetensors"
    meta = json.loads(target.with_suffix(".json").read_text())
    assert (meta["recipe"], meta["protocol"]) == ("r: cmd", "docs/protocol.md, section 'x'")
    entry = find_model("EDPSN_MRI-PET", user_dir=models)  # the user folder is searched first
    assert entry.source == "user" and entry.valid
    assert target.read_bytes() == (run / target.name).read_bytes()


def test_weights_of_a_fold_are_refused(tmp_path: Path) -> None:
    fold = (
        ROOT / "benchmarks/checkpoints/uptake-mean25/MRI-PET/fold0-seed0/EDPSN_MRI-PET.safetensors"
    )
    run = _run_folder(fold, tmp_path / "fold0-seed0")
    with pytest.raises(SystemExit, match="not case-all"):
        ship_weights.ship(run, "r", "p", tmp_path)
    assert not (tmp_path / "EDPSN_MRI-PET.safetensors").exists()
