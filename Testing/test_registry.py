"""The model registry: the real shipped weights, installed, listed, looked up and removed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from EDPSNLib.cli import main
from EDPSNLib.errors import InputError, WeightsError
from EDPSNLib.fusion.slices import make_slice_fuser
from EDPSNLib.models.install import install_model, remove_model
from EDPSNLib.models.lookup import resolve_weights
from EDPSNLib.models.registry import (
    DEFAULT_PAIRS,
    check_name,
    find_model,
    list_models,
)
from EDPSNLib.models.weights import load_weights, read_metadata
from EDPSNLib.paths import default_models_dir, repo_root

SAMPLE = repo_root() / "Resources" / "Sample"


def _shipped(pair: str) -> Path:
    return default_models_dir() / f"EDPSN_{pair}.safetensors"


def _copy(pair: str, folder: Path, stem: str | None = None) -> Path:
    """A copy of the shipped weights and sidecar (inputs must never be modified in place)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem or f'EDPSN_{pair}'}.safetensors"
    shutil.copy2(_shipped(pair), target)
    shutil.copy2(_shipped(pair).with_suffix(".json"), target.with_suffix(".json"))
    return target


def _flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("EDPSN_MODELS", str(folder))
    return folder


def test_defaults_are_listed_with_their_sidecar_fields(user_dir: Path) -> None:
    entries = list_models()
    assert [e.name for e in entries] == [f"EDPSN_{p}" for p in DEFAULT_PAIRS]
    for e in entries:
        meta = read_metadata(e.path)
        assert e.source == "default" and e.valid and e.pair == meta["pair"]
        assert (e.data, e.date, e.epochs) == (meta["data"], meta["date"], meta["epochs"])
        assert e.metrics == meta["metrics"] and e.val_loss == meta["val_loss"]
        assert e.init_pair == meta["training"].get("init_pair")
    assert [e.name for e in list_models("MRI-SPECT")] == ["EDPSN_MRI-SPECT"]


def test_install_copies_verified_weights_and_lists_them(tmp_path: Path, user_dir: Path) -> None:
    src = _copy("MRI-PET", tmp_path / "run")
    before = {p.name: p.read_bytes() for p in src.parent.iterdir()}
    target = install_model(src, "pet-v2")
    assert target == user_dir / "pet-v2.safetensors"
    assert {p.name: p.read_bytes() for p in src.parent.iterdir()} == before  # input untouched
    assert sorted(p.name for p in user_dir.iterdir()) == ["pet-v2.json", "pet-v2.safetensors"]
    meta, src_meta = read_metadata(target), read_metadata(src)
    assert meta["name"] == "pet-v2" and meta["file"] == target.name
    assert meta["sha256"] == src_meta["sha256"] and meta["installed_from"] == str(src.resolve())
    _model, loaded = load_weights(target, expected_pair="MRI-PET")
    assert loaded["metrics"] == src_meta["metrics"]
    entry = list_models(user_dir=user_dir)[-1]
    assert (entry.name, entry.source, entry.valid, entry.shadows_default) == (
        "pet-v2",
        "user",
        True,
        False,
    )
    assert (entry.pair, entry.data, entry.date) == (
        src_meta["pair"],
        src_meta["data"],
        src_meta["date"],
    )
    assert entry.metrics == src_meta["metrics"] and entry.epochs == src_meta["epochs"]
    assert [e.name for e in list_models("MRI-CT")] == ["EDPSN_MRI-CT"]  # pair filter
    assert resolve_weights("pet-v2", "MRI-PET") == target
    assert resolve_weights("pet-v2.safetensors", "MRI-PET") == target
    assert find_model("pet-v2").source == "user"


def test_install_refuses_tampered_and_foreign_files(tmp_path: Path, user_dir: Path) -> None:
    tampered = _copy("MRI-CT", tmp_path / "a")
    _flip_byte(tampered)
    with pytest.raises(WeightsError, match="does not match the sha256"):
        install_model(tampered, "x")
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights")
    with pytest.raises(InputError, match="is not EDPSN weights"):
        install_model(notes, "x")
    with pytest.raises(InputError, match="is not a file"):
        install_model(tmp_path / "missing.safetensors", "x")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="Metadata file .* is missing"):
        install_model(garbage, "x")
    # A sidecar that matches the bytes does not make garbage a network.
    meta = read_metadata(_shipped("MRI-CT"))
    meta["sha256"] = hashlib.sha256(garbage.read_bytes()).hexdigest()
    garbage.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        install_model(garbage, "x")
    foreign = _copy("MRI-CT", tmp_path / "b")
    meta = read_metadata(foreign)
    foreign.with_suffix(".json").write_text(json.dumps({**meta, "architecture": "other-net"}))
    with pytest.raises(WeightsError, match="architecture 'other-net'"):
        install_model(foreign, "x")
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_names_overwrite_and_shadowing(tmp_path: Path, user_dir: Path) -> None:
    for bad in ("", "../up", "a/b", ".hidden", "a b", "CON", "nul.x", "x."):
        with pytest.raises(InputError, match="not a usable model name"):
            check_name(bad)
    src = _copy("MRI-PET", tmp_path / "run")
    with pytest.raises(InputError, match="not a usable model name"):
        install_model(src, "../escape")
    with pytest.raises(InputError, match="name of a shipped default"):
        install_model(src)  # EDPSN_MRI-PET from a run folder must not hide the default silently
    install_model(src, "mine")
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        install_model(_copy("MRI-CT", tmp_path / "ct"), "mine")
    assert find_model("mine").pair == "MRI-PET"
    install_model(_copy("MRI-CT", tmp_path / "ct"), "mine", overwrite=True)
    assert find_model("mine").pair == "MRI-CT" and find_model("mine").valid
    with pytest.raises(InputError, match="already installed"):
        install_model(user_dir / "mine.safetensors", "mine", overwrite=True)
    # Explicitly named like a default: the user model wins name lookups and both are marked.
    shadow = install_model(src, "EDPSN_MRI-PET")
    entries = {(e.name, e.source): e for e in list_models()}
    assert entries["EDPSN_MRI-PET", "user"].shadows_default
    assert entries["EDPSN_MRI-PET", "default"].shadowed
    assert resolve_weights("EDPSN_MRI-PET", "MRI-PET") == shadow
    assert resolve_weights(None, "MRI-PET") == _shipped("MRI-PET")  # the default stays default
    assert remove_model("EDPSN_MRI-PET") == [shadow, shadow.with_suffix(".json")]
    assert resolve_weights("EDPSN_MRI-PET", "MRI-PET") == _shipped("MRI-PET")
    with pytest.raises(InputError, match="defaults cannot be removed"):
        remove_model("EDPSN_MRI-PET")
    with pytest.raises(InputError, match="No user model named 'gone'"):
        remove_model("gone")
    assert _shipped("MRI-PET").is_file()


def test_bad_user_files_are_listed_with_their_problem(tmp_path: Path, user_dir: Path) -> None:
    install_model(_copy("MRI-PET", tmp_path / "a"), "tampered")
    _flip_byte(user_dir / "tampered.safetensors")
    shutil.copy2(_shipped("MRI-CT"), user_dir / "half.safetensors")  # sidecar not yet copied
    shutil.copy2(_shipped("MRI-CT"), user_dir / "badjson.safetensors")
    (user_dir / "badjson.json").write_text("{not json")
    entries = {e.name: e for e in list_models() if e.source == "user"}
    assert set(entries) == {"tampered", "half", "badjson"}
    assert "sha256" in entries["tampered"].problem and entries["tampered"].pair == "MRI-PET"
    assert "no half.json sidecar" in entries["half"].problem
    assert "unreadable" in entries["badjson"].problem
    assert not any(e.valid for e in entries.values())
    # Unknown-pair entries stay visible under a pair filter; the tampered one only under its pair.
    assert {e.name for e in list_models("MRI-CT") if e.source == "user"} == {"half", "badjson"}
    with pytest.raises(WeightsError, match="does not match the sha256"):
        make_slice_fuser("edpsn", "MRI-PET", "tampered", device="cpu")
    assert remove_model("half") == [user_dir / "half.safetensors"]


def test_name_lookup_errors_and_wrong_pair(tmp_path: Path, user_dir: Path) -> None:
    install_model(_copy("MRI-PET", tmp_path / "a"), "pet-model")
    with pytest.raises(WeightsError, match="Models for MRI-CT: EDPSN_MRI-CT \\("):
        resolve_weights("nope", "MRI-CT")
    with pytest.raises(WeightsError, match="Models for MRI-PET: EDPSN_MRI-PET, pet-model"):
        resolve_weights("nope", "MRI-PET")
    with pytest.raises(WeightsError, match="Weights file .* not found"):
        resolve_weights(str(tmp_path / "no" / "where.safetensors"), "MRI-PET")
    # Found by name, refused for another pair by the weights' own check.
    assert resolve_weights("pet-model", "MRI-CT") == user_dir / "pet-model.safetensors"
    with pytest.raises(WeightsError, match="trained for 'MRI-PET', not 'MRI-CT'"):
        make_slice_fuser("edpsn", "MRI-CT", "pet-model", device="cpu")


def test_cli_list_json_install_show_remove(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "cli-models"
    src = _copy("MRI-SPECT", tmp_path / "run")
    assert (
        main(["models", "install", str(src), "--name", "spect-a", "--models-dir", str(folder)]) == 0
    )
    assert "Installed 'spect-a' (MRI-SPECT)" in capsys.readouterr().out
    assert (
        main(["models", "install", str(src), "--name", "spect-a", "--models-dir", str(folder)]) == 2
    )
    assert "--overwrite" in capsys.readouterr().err
    assert main(["models", "--models-dir", str(folder), "--paths"]) == 0  # plain form lists
    out = capsys.readouterr().out
    meta = read_metadata(src)
    row = next(line for line in out.splitlines() if line.startswith("spect-a"))
    assert "user" in row and "MRI-SPECT" in row and meta["date"][:10] in row
    assert f"SCD {meta['metrics']['SCD']:.3f}" in row and str(folder / "spect-a.safetensors") in out
    assert all(f"EDPSN_{p}" in out for p in DEFAULT_PAIRS)
    assert (
        main(["models", "list", "--pair", "MRI-SPECT", "--json", "--models-dir", str(folder)]) == 0
    )
    listed = json.loads(capsys.readouterr().out)
    assert [(d["name"], d["source"]) for d in listed] == [
        ("EDPSN_MRI-SPECT", "default"),
        ("spect-a", "user"),
    ]
    assert listed[1]["metrics"] == meta["metrics"] and listed[1]["valid"] is True
    assert listed[1]["path"] == str(folder / "spect-a.safetensors")
    assert main(["models", "show", "spect-a", "--models-dir", str(folder)]) == 0
    shown = capsys.readouterr().out
    assert "status: ok" in shown and json.loads(shown[shown.index("{") :])["name"] == "spect-a"
    assert main(["models", "remove", "EDPSN_MRI-CT", "--models-dir", str(folder)]) == 2
    assert "defaults cannot be removed" in capsys.readouterr().err
    assert main(["models", "remove", "spect-a", "--models-dir", str(folder)]) == 0
    assert not any(folder.iterdir())
    assert main(["models", "show", "spect-a", "--models-dir", str(folder)]) == 2
    assert "No model named 'spect-a'" in capsys.readouterr().err


def test_cli_fuse_looks_names_up_in_models_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "m"
    install_model(_copy("MRI-PET", tmp_path / "run"), "pet-only", user_dir=folder)
    args = [
        "fuse",
        "--mri",
        str(SAMPLE / "harvard_case25_MRI.nrrd"),
        "--register",
        "none",
        "--moving",
        str(SAMPLE / "harvard_case25_PET.nrrd"),
        "--out",
        str(tmp_path / "f.nrrd"),
        "--weights",
        "pet-only",
        "--device",
        "cpu",
    ]
    assert main([*args, "--modality", "SPECT", "--models-dir", str(tmp_path / "empty")]) == 2
    assert "No model named 'pet-only'" in capsys.readouterr().err
    # Found in --models-dir, then refused for the other pair before any fusion is written.
    assert main([*args, "--modality", "SPECT", "--models-dir", str(folder)]) == 2
    assert "trained for 'MRI-PET', not 'MRI-SPECT'" in capsys.readouterr().err
    assert not (tmp_path / "f.nrrd").exists()


def test_training_starts_from_a_model_named_in_the_registry(tmp_path, monkeypatch):
    from EDPSNLib.models.weights import read_metadata
    from EDPSNLib.training.trainer import TrainConfig, train

    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path / "models"))
    cfg = dict(out=tmp_path / "run", pair="MRI-CT", epochs=1, batch_size=2, crop=64)
    small = dict(max_steps_per_epoch=1, max_val_images=2)
    result = train(TrainConfig(**cfg, **small, init="EDPSN_MRI-PET"))  # a name, not a path
    assert read_metadata(result.weights)["training"]["init_pair"] == "MRI-PET"
    with pytest.raises(WeightsError, match="No model named 'nope'"):
        train(TrainConfig(**{**cfg, "out": tmp_path / "run2"}, **small, init="nope"))
