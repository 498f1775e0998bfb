"""The learning-rate schedule (training/config.learning_rate) and real CPU runs that follow it,
resume it exactly and record it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY_CLI_TRAIN, TINY_TRAINING

from EDPSNLib.cli import main
from EDPSNLib.errors import InputError
from EDPSNLib.models.weights import load_weights, read_metadata
from EDPSNLib.training.checkpoint import load_checkpoint
from EDPSNLib.training.config import COSINE_FLOOR, learning_rate
from EDPSNLib.training.trainer import TrainConfig, train

SMALL = {**TINY_TRAINING, "lr": 1e-3, "lr_schedule": "cosine"}


def test_cosine_falls_from_the_base_to_the_floor_and_constant_stays() -> None:
    rates = [learning_rate(2e-3, "cosine", t, 40) for t in range(41)]
    assert rates[0] == 2e-3 and rates[-1] == pytest.approx(COSINE_FLOOR * 2e-3)
    assert all(np.diff(rates) < 0)
    assert rates[20] == pytest.approx(2e-3 * (COSINE_FLOOR + (1 - COSINE_FLOOR) / 2))
    assert learning_rate(2e-3, "cosine", 99, 40) == rates[-1]  # past the end: the floor
    assert {learning_rate(2e-3, "constant", t, 40) for t in range(41)} == {2e-3}


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory):
    return train(TrainConfig(out=tmp_path_factory.mktemp("cos"), **SMALL))


def test_run_steps_with_the_scheduled_rate(cosine_run) -> None:
    ckpt = load_checkpoint(cosine_run.checkpoint)
    last = ckpt["optimizer"]["param_groups"][0]["lr"]
    assert last == pytest.approx(learning_rate(1e-3, "cosine", 5, 6))  # the sixth step's
    assert read_metadata(cosine_run.weights)["training"]["lr_schedule"] == "cosine"


def test_cut_run_resumes_on_the_same_schedule(cosine_run, tmp_path) -> None:
    steps = {"n": 0}

    def count(event: dict) -> None:
        steps["n"] += event["event"] == "step"

    cut = train(TrainConfig(out=tmp_path, **SMALL), progress=count, cancel=lambda: steps["n"] >= 2)
    assert cut.cancelled and cut.global_step == 2
    resumed = train(TrainConfig(out=tmp_path, resume=cut.checkpoint, **SMALL))
    a, _ = load_weights(resumed.last_weights)
    b, _ = load_weights(cosine_run.last_weights)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # A constant rate gives other weights: the schedule is really applied.
    flat = train(TrainConfig(out=tmp_path / "flat", **{**SMALL, "lr_schedule": "constant"}))
    c, _ = load_weights(flat.last_weights)
    assert any(
        not torch.equal(x, y) for x, y in zip(b.state_dict().values(), c.state_dict().values())
    )


def test_bad_schedule_is_refused_and_the_cli_records_it(tmp_path, capsys) -> None:
    with pytest.raises(InputError, match="lr_schedule must be one of constant, cosine"):
        train(TrainConfig(out=tmp_path / "bad", **{**SMALL, "lr_schedule": "step"}))
    args = TINY_CLI_TRAIN
    out = tmp_path / "cli"
    assert main([*args, "--threads", "1", "--out", str(out), "--lr-schedule", "cosine"]) == 0
    meta = read_metadata(out / "EDPSN_MRI-CT.safetensors")
    assert meta["training"]["lr_schedule"] == "cosine" and "--lr-schedule cosine" in meta["command"]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--out", str(tmp_path / "x"), "--lr-schedule", "step"])
    assert stop.value.code == 2
    assert "invalid choice: 'step'" in capsys.readouterr().err


def test_resume_takes_the_new_base_rate(cosine_run, tmp_path) -> None:
    """--lr on resume replaces the checkpoint's rate: the schedule restarts from the new base."""
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(cosine_run.checkpoint.read_bytes())
    resumed = train(TrainConfig(out=tmp_path, resume=ckpt, **{**SMALL, "epochs": 3, "lr": 5e-4}))
    last = load_checkpoint(resumed.checkpoint)["optimizer"]["param_groups"][0]["lr"]
    assert resumed.global_step == 9
    assert last == pytest.approx(learning_rate(5e-4, "cosine", 8, 9))
