"""The weight average (training/weight_average.py): its arithmetic, and real CPU training runs
that validate and save it and resume it exactly."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_CLI_TRAIN, TINY_TRAINING
from torch import nn

from EDPSNLib.cli import main
from EDPSNLib.errors import InputError
from EDPSNLib.models.weights import load_weights, read_metadata
from EDPSNLib.training.checkpoint import load_checkpoint
from EDPSNLib.training.report import read_jsonl
from EDPSNLib.training.trainer import TrainConfig, train
from EDPSNLib.training.weight_average import WeightAverage, ema_decay_at

SMALL = {**TINY_TRAINING, "ema_decay": 0.9}


def test_average_is_the_warmed_up_recursive_mean_and_copies_integer_buffers() -> None:
    net = nn.Linear(2, 1)
    net.register_buffer("count", torch.tensor(0))
    with torch.no_grad():
        net.weight.fill_(1.0)
    avg = WeightAverage(net, 0.9)
    expected = torch.ones(1, 2)
    for t, value in enumerate((3.0, -1.0, 5.0)):
        with torch.no_grad():
            net.weight.fill_(value)
        net.count += 1
        avg.update(net)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
    torch.testing.assert_close(avg.model.weight, expected)
    assert avg.model.count == 3 and avg.updates == 3
    assert not avg.model.weight.requires_grad and net.weight.requires_grad
    assert ema_decay_at(0.9, 0) == pytest.approx(0.1) and ema_decay_at(0.9, 1000) == 0.9
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, 1.0)


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    return train(TrainConfig(out=tmp_path_factory.mktemp("ema"), **SMALL))


def test_run_validates_and_saves_the_average(averaged_run) -> None:
    ckpt = load_checkpoint(averaged_run.checkpoint)
    assert ckpt["ema"]["updates"] == 6 and ckpt["ema"]["decay"] == 0.9
    last, _ = load_weights(averaged_run.last_weights)
    saved = last.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in ckpt["ema"]["model"].items())
    # The average is not the trained weights (which the checkpoint keeps for training on).
    assert any(not torch.equal(saved[k], v) for k, v in ckpt["model"].items())
    assert read_metadata(averaged_run.weights)["training"]["ema_decay"] == 0.9


def test_cancelled_run_resumes_the_average_exactly(averaged_run, tmp_path) -> None:
    steps = {"n": 0}

    def count(event: dict) -> None:
        steps["n"] += event["event"] == "step"

    cut = train(TrainConfig(out=tmp_path, **SMALL), progress=count, cancel=lambda: steps["n"] >= 4)
    assert cut.cancelled and load_checkpoint(cut.checkpoint)["ema"]["updates"] == 4
    resumed = train(TrainConfig(out=tmp_path, resume=cut.checkpoint, **SMALL))
    a, _ = load_weights(resumed.last_weights)
    b, _ = load_weights(averaged_run.last_weights)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resuming_with_or_without_an_average_the_checkpoint_lacks_or_has_warns(tmp_path) -> None:
    plain = train(TrainConfig(out=tmp_path, **{**SMALL, "epochs": 1, "ema_decay": 0.0}))
    assert "ema" not in load_checkpoint(plain.checkpoint)
    train(TrainConfig(out=tmp_path, resume=plain.checkpoint, **SMALL))
    warnings = [e for e in read_jsonl(tmp_path / "progress.jsonl") if e["event"] == "warning"]
    assert any("no weight average" in w["message"] for w in warnings)
    assert load_checkpoint(plain.checkpoint)["ema"]["updates"] == 6
    # And the other way: resuming an averaged run without --ema-decay says what it drops.
    train(
        TrainConfig(out=tmp_path, resume=plain.checkpoint, **{**SMALL, "epochs": 3, "ema_decay": 0})
    )
    warnings = [e for e in read_jsonl(tmp_path / "progress.jsonl") if e["event"] == "warning"]
    assert any("Resume with --ema-decay 0.9" in w["message"] for w in warnings)


def test_bad_decay_is_refused_and_the_cli_records_it(tmp_path, capsys) -> None:
    with pytest.raises(InputError, match=r"ema_decay must be in \[0, 1\)"):
        train(TrainConfig(out=tmp_path / "bad", **{**SMALL, "ema_decay": 1.0}))
    args = TINY_CLI_TRAIN
    assert (
        main([*args, "--threads", "1", "--out", str(tmp_path / "cli"), "--ema-decay", "0.95"]) == 0
    )
    meta = read_metadata(tmp_path / "cli" / "EDPSN_MRI-CT.safetensors")
    assert meta["training"]["ema_decay"] == 0.95 and "--ema-decay 0.95" in meta["command"]
    assert main([*args, "--out", str(tmp_path / "x"), "--ema-decay", "1.5"]) == 2
    assert "ema_decay must be in [0, 1)" in capsys.readouterr().err
