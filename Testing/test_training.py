"""Real training runs on CPU (MRI-PET, 64x64 crops, a few steps): outputs, determinism, resume,
NaN guard, input errors, the data set's seeded crops, and ``edpsn train``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import TINY_TRAINING
from PIL import Image

from EDPSNLib.cli import main
from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError, TrainingError
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.models.weights import load_weights, read_metadata
from EDPSNLib.paths import data_root
from EDPSNLib.training.checkpoint import load_checkpoint
from EDPSNLib.training.datasets import (
    HarvardFusionDataset,
    augment_params,
    epoch_batches,
    to_tensor,
)
from EDPSNLib.training.report import read_jsonl
from EDPSNLib.training.trainer import TrainConfig, train

SMALL = TINY_TRAINING


def _losses(result) -> list[float]:
    return [s["loss"] for s in result.history["steps"]]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The uninterrupted reference run: 2 epochs x 3 steps."""
    out = tmp_path_factory.mktemp("full")
    events: list[dict] = []
    return train(TrainConfig(out=out, **SMALL), progress=events.append), events


def test_run_writes_checkpoint_curves_log_and_weights(full_run):
    result, events = full_run
    out = result.out
    assert not result.cancelled and result.epochs_done == 2 and result.global_step == 6
    losses = _losses(result)
    assert len(losses) == 6 and all(np.isfinite(losses)) and min(losses) > 0
    with Image.open(out / "curves.png") as png:
        assert png.format == "PNG" and png.width > 400
    log = read_jsonl(out / "progress.jsonl")
    assert log == events  # the callback gets exactly what the log holds
    kinds = [e["event"] for e in log]
    assert kinds == ["start"] + ["step"] * 3 + ["epoch"] + ["step"] * 3 + ["epoch", "done"]
    epoch_events = [e for e in log if e["event"] == "epoch"]
    assert all(set(e["metrics"]) == set(METRIC_NAMES) for e in epoch_events)
    assert all(e["eta_s"] >= 0 for e in log if e["event"] == "step")
    ckpt = load_checkpoint(result.checkpoint)
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (2, 0, 6)
    model, meta = load_weights(result.weights, expected_pair="MRI-PET")
    assert result.weights.name == "EDPSN_MRI-PET.safetensors"
    assert meta["perceptual"] == "random-conv-seed0" and meta["split"] == "train"
    assert meta["epochs"] == result.best["epoch"] and meta["metrics"] == result.best["metrics"]
    assert meta["training"]["crop"] == 64 and meta["time_s"] > 0 and meta["command"]
    last, _ = load_weights(result.last_weights)
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in last.state_dict().items())


def test_same_seed_is_deterministic_and_resume_continues_exactly(full_run, tmp_path):
    reference, _ = full_run
    counter = {"steps": 0}

    def count(event: dict) -> None:
        counter["steps"] += event["event"] == "step"

    # Cancel after epoch 1 and one step of epoch 2: the run before the cut must equal the
    # reference (determinism), and the resumed run must end exactly where the reference did.
    cut = train(
        TrainConfig(out=tmp_path, **SMALL), progress=count, cancel=lambda: counter["steps"] >= 4
    )
    assert cut.cancelled and cut.epochs_done == 1 and cut.global_step == 4
    assert _losses(cut) == _losses(reference)[:4]
    assert cut.history["epochs"][0]["metrics"] == reference.history["epochs"][0]["metrics"]
    ckpt = load_checkpoint(cut.checkpoint)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 1)
    resumed = train(TrainConfig(out=tmp_path, resume=cut.checkpoint, **SMALL))
    assert not resumed.cancelled and resumed.global_step == 6
    assert _losses(resumed) == _losses(reference)
    assert resumed.history["epochs"][-1]["val_loss"] == reference.history["epochs"][-1]["val_loss"]
    a, _ = load_weights(resumed.last_weights)
    b, _ = load_weights(reference.last_weights)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    kinds = [e["event"] for e in read_jsonl(tmp_path / "progress.jsonl")]
    assert kinds.count("cancelled") == 1 and "warning" not in kinds


def test_nan_loss_stops_and_keeps_last_good_checkpoint(full_run, tmp_path):
    reference, _ = full_run
    out = tmp_path / "run"
    shutil.copytree(reference.out, out)
    before = (out / "checkpoint.pt").read_bytes(), (out / "EDPSN_MRI-PET.safetensors").read_bytes()
    cfg = TrainConfig(out=out, resume=out / "checkpoint.pt", **{**SMALL, "epochs": 3})
    cfg.lr = 1e30  # Adam's first step moves every weight by ~1e30: the next loss is NaN
    cfg.crop = 48  # also differs from the checkpoint's run: a warning, not an error
    with pytest.raises(TrainingError, match="last good checkpoint .* is kept unchanged"):
        train(cfg)
    after = (out / "checkpoint.pt").read_bytes(), (out / "EDPSN_MRI-PET.safetensors").read_bytes()
    assert before == after
    log = read_jsonl(out / "progress.jsonl")
    assert log[-1]["event"] == "error"
    assert any(e["event"] == "warning" and "crop=64" in e["message"] for e in log)


def test_init_from_weights_starts_from_them_for_any_pair(full_run, tmp_path):
    reference, _ = full_run
    cross = TrainConfig(out=tmp_path / "ct", init=reference.weights, **{**SMALL, "pair": "MRI-CT"})
    cross.epochs, cross.max_steps_per_epoch = 1, 1
    train(cross)
    meta = read_metadata(tmp_path / "ct" / "EDPSN_MRI-CT.safetensors")
    assert meta["pair"] == "MRI-CT" and meta["training"]["init_pair"] == "MRI-PET"
    events: list[dict] = []
    cfg = TrainConfig(out=tmp_path / "ft", init=reference.weights, **{**SMALL, "epochs": 1})
    cfg.max_steps_per_epoch = 1
    train(cfg, progress=events.append)
    first = next(e for e in events if e["event"] == "step")
    assert first["loss"] != reference.history["steps"][0]["loss"]  # not a fresh network
    assert read_metadata(tmp_path / "ft" / "EDPSN_MRI-PET.safetensors")["training"]["init"] == str(
        reference.weights
    )


def _tiny_harvard(root, names, drop_pet=None):
    """A Harvard-layout folder with a few real MRI-PET pairs, all listed in train.txt."""
    src = data_root() / "harvard" / "MRI-PET"
    for mod in ("MRI", "PET"):
        (root / "MRI-PET" / mod).mkdir(parents=True)
        for n in names:
            if not (mod == "PET" and n == drop_pet):
                shutil.copy(src / mod / f"{n}.png", root / "MRI-PET" / mod / f"{n}.png")
    (root / "splits" / "MRI-PET").mkdir(parents=True)
    (root / "splits" / "MRI-PET" / "train.txt").write_text("".join(f"{n}.png\n" for n in names))
    (root / "splits" / "MRI-PET" / "test.txt").write_text("")
    return root


def test_input_errors_are_clear(tmp_path):
    names = [p.name for p in list_pairs("MRI-PET", "train")[:2]]
    with pytest.raises(InputError, match="Crop size 300 is larger than the images"):
        train(TrainConfig(out=tmp_path / "a", **{**SMALL, "crop": 300}))
    with pytest.raises(InputError, match="Unpaired images"):
        train(
            TrainConfig(
                out=tmp_path / "b", data=_tiny_harvard(tmp_path / "d1", names, names[0]), **SMALL
            )
        )
    with pytest.raises(
        InputError, match="empty"
    ):  # 1 pair: its 20 % validation share rounds to none
        train(
            TrainConfig(out=tmp_path / "c", data=_tiny_harvard(tmp_path / "d2", names[:1]), **SMALL)
        )
    with pytest.raises(InputError, match="does not exist"):
        train(TrainConfig(out=tmp_path / "e", data=tmp_path / "missing", **SMALL))
    with pytest.raises(InputError, match="lr must be a positive number"):
        train(TrainConfig(out=tmp_path / "f", **{**SMALL, "lr": float("nan")}))
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


def test_dataset_crops_are_seeded_and_match_the_images():
    pairs = list_pairs("MRI-PET", "train")
    ds = HarvardFusionDataset(pairs, crop=64)
    b1, b2 = epoch_batches(len(ds), 4, 0, 0), epoch_batches(len(ds), 4, 0, 0)
    assert (
        b1 == b2 and b1 != epoch_batches(len(ds), 4, 0, 1) and b1 != epoch_batches(len(ds), 4, 1, 0)
    )
    assert len(b1) == len(ds) // 4 and len({k[0] for b in b1 for k in b}) == 4 * len(b1)
    index, seed = b1[0][0]
    mri, func = ds[(index, seed)]
    top, left, hflip, vflip = augment_params(seed, 256, 256, 64)
    full_mri, full_func = (to_tensor(x) for x in load_pair(pairs[index]))
    expect = full_func[:, top : top + 64, left : left + 64]
    expect = expect.flip(-1) if hflip else expect
    expect = expect.flip(-2) if vflip else expect
    assert func.shape == (3, 64, 64) and mri.shape == (1, 64, 64) and torch.equal(func, expect)
    assert torch.equal(ds[index][0], full_mri)  # a plain index gives the whole pair
    assert len(epoch_batches(3, 8, 0, 0)) == 1  # a set smaller than a batch: one small batch


def test_cli_train_runs_and_reports_json(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "train",
        "--pair",
        "MRI-PET",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "64",
        "--max-val-images",
        "1",
        "--device",
        "cpu",
        "--json-progress",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["start", "step", "step", "epoch", "done"]
    assert "the others from the shipped weights" in events[0]["loss_source"]  # no loss flag
    meta = read_metadata(out / "EDPSN_MRI-PET.safetensors")
    assert meta["command"].startswith("edpsn train") and "--crop 64" in meta["command"]
    assert (
        main(["train", "--pair", "MRI-PET", "--out", str(tmp_path / "bad"), "--crop", "999"]) == 2
    )
    assert "Crop size 999" in capsys.readouterr().err
