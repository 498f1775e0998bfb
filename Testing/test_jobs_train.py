"""The training command lines of the Slicer modules: inputs, steps, curves, installing weights."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
from helpers import copy_default_weights, parse_cli

from EDPSNLib.data.synthetic import synthetic_harvard
from EDPSNLib.errors import InputError
from EDPSNLib.jobs.fuse import (
    weights_choices,
)
from EDPSNLib.jobs.prepare import (
    dataset_folder,
)
from EDPSNLib.jobs.process import BackgroundProcess, child_environment, module_command
from EDPSNLib.jobs.results import TrainingCurves, comparison_rows
from EDPSNLib.jobs.train import (
    WEIGHT_AVERAGE_DECAY,
    TrainJob,
    cancel_file,
    check_training_inputs,
    install_weights,
    run_folder,
    train_arguments,
    training_steps,
)
from EDPSNLib.names import METRIC_NAMES
from EDPSNLib.paths import repo_root
from EDPSNLib.training.checkpoint import load_checkpoint


def test_training_inputs_are_checked_before_anything_starts(tmp_path):
    root = synthetic_harvard(tmp_path, "MRI-CT", n_train=4, n_test=1, size=48)
    assert check_training_inputs(root, "MRI-CT", "my-run_2.v1") is None
    assert "pick a Harvard-layout folder" in check_training_inputs(root, "MRI-PET", "x")
    assert "pick a Harvard-layout folder" in check_training_inputs(tmp_path / "none", "MRI-CT", "x")
    for bad in ("", "../up", ".hidden", "a b", "a/b"):
        assert "Name the new weights" in check_training_inputs(root, "MRI-CT", bad)
    # names the registry would refuse at the end of the training are refused before it
    assert "not a usable model name" in check_training_inputs(root, "MRI-CT", "CON")
    assert "not a usable model name" in check_training_inputs(root, "MRI-CT", "x" * 101)
    assert "hide the shipped default" in check_training_inputs(root, "MRI-CT", "EDPSN_MRI-CT")


def test_training_steps_score_train_and_score_again(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    job = TrainJob("run1", "MRI-PET", device="cpu", epochs=2, batch_size=4, crop=64)
    based = replace(job, base="/w/base.safetensors")
    steps = training_steps(based)
    parsed = [parse_cli(args) for _, args in steps]
    assert [ns.command for ns in parsed] == ["evaluate", "train", "evaluate"]
    assert parsed[0].weights == "/w/base.safetensors" and parsed[1].init == "/w/base.safetensors"
    assert parsed[1].out == str(run_folder("run1")) == str(tmp_path / "runs" / "run1")
    assert parsed[2].weights == str(tmp_path / "runs" / "run1" / "EDPSN_MRI-PET.safetensors")
    # From scratch: no "before" score; a resumed run continues from its checkpoint.
    assert [parse_cli(a).command for _, a in training_steps(job)] == ["train", "evaluate"]
    (tmp_path / "runs" / "run1" / "before").mkdir(parents=True)
    (tmp_path / "runs" / "run1" / "before" / "summary.csv").write_text("scored already")
    resumed = training_steps(based, resume=True)
    assert [parse_cli(a).command for _, a in resumed] == ["train", "evaluate"]
    ns = parse_cli(resumed[0][1])
    assert ns.resume == str(tmp_path / "runs" / "run1" / "checkpoint.pt") and ns.init is None


def test_training_curves_from_events_and_from_a_cut_log(tmp_path):
    curves = TrainingCurves()
    assert not curves.record({"event": "start", "epochs": 2})
    assert curves.record({"event": "step", "global_step": 1, "loss": 0.5})
    metrics = dict(zip(METRIC_NAMES, range(7)), SSIM=None)
    assert curves.record({"event": "epoch", "epoch": 1, "val_loss": 0.4, "metrics": metrics})
    (name, x, series, label), (name2, x2, series2, label2) = curves.charts()
    assert (name, x, series, label) == ("loss", [1], {"training loss": [0.5]}, "step")
    assert (name2, x2, label2) == ("validation", [1], "epoch")
    assert (
        series2["validation loss"] == [0.4]
        and series2["SD"] == [1.0]
        and np.isnan(series2["SSIM"][0])
    )
    log = tmp_path / "progress.jsonl"
    log.write_text('{"event": "step", "global_step": 1, "loss": 0.9}\n{"event": "step", "glo')
    assert TrainingCurves.from_log(log).loss == [0.9]
    assert TrainingCurves.from_log(tmp_path / "none.jsonl").charts() == []


def test_install_weights_checks_and_copies_weights_and_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    with pytest.raises(InputError, match="wrote no weights"):
        install_weights("empty", "MRI-PET")
    run = run_folder("r")
    copy_default_weights("MRI-PET", run / "EDPSN_MRI-PET.safetensors")
    target = install_weights("r", "MRI-PET")
    assert target == tmp_path / "r.safetensors"
    assert target.read_bytes() == (run / "EDPSN_MRI-PET.safetensors").read_bytes()
    assert ("r (user)", str(target)) in weights_choices("MRI-PET")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.safetensors", "runs"]


@pytest.mark.slow
def test_the_training_chain_of_the_module_trains_installs_and_fine_tunes(tmp_path, monkeypatch):
    # EDPSN Training's chain without Slicer: the same steps, run one after the other by the
    # same BackgroundProcess; then the weights are installed and fine-tuned in a second run.
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path / "models"))
    root = synthetic_harvard(tmp_path / "data", "MRI-PET", n_train=10, n_test=2, size=48)
    env = child_environment(pythonpath=[repo_root() / "EDPSNFusion"])
    common = dict(pair="MRI-PET", data=root, device="cpu", epochs=1, batch_size=2, crop=32)

    def run_steps(name, **kw):
        for message, args in training_steps(TrainJob(name, **common, **kw)):
            proc = BackgroundProcess(module_command(sys.executable, "EDPSNLib.cli", *args), env=env)
            assert proc.start().wait(timeout=600) == 0, f"{message} {proc.stderr_tail}"
        return install_weights(name, "MRI-PET")

    first = run_steps("first", max_steps_per_epoch=2, ema_decay=WEIGHT_AVERAGE_DECAY)
    # "Average the weights": the run keeps and saves the average, and says so in the sidecar
    assert "ema" in load_checkpoint(run_folder("first") / "checkpoint.pt")
    assert json.loads(first.with_suffix(".json").read_text())["training"]["ema_decay"] == 0.99
    curves = TrainingCurves.from_log(run_folder("first") / "progress.jsonl")
    assert len(curves.steps) == 2 and curves.epochs == [1]
    rows = comparison_rows("first", None)
    assert [r["scope"] for r in rows] == ["after: first"]
    assert all(np.isfinite(rows[0][k]) for k in METRIC_NAMES)
    run_steps("second", base=str(first), max_steps_per_epoch=1)
    rows = comparison_rows("second", str(first))
    assert [r["scope"] for r in rows] == ["before: first", "after: second"]
    # Scoring the same weights twice gives the same numbers (the "before" of run 2 is run 1).
    assert rows[0] == {**comparison_rows("first", None)[0], "scope": "before: first"}
    assert ("second (user)", str(tmp_path / "models" / "second.safetensors")) in weights_choices(
        "MRI-PET"
    )


def test_train_arguments_carry_the_cancel_file_and_steps_can_skip_scoring(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    job = TrainJob("r", "MRI-CT", epochs=1, batch_size=1, crop=32, device="cpu")
    args = train_arguments(replace(job, cancel_file=cancel_file("r")), "o")
    assert args[-2:] == ["--cancel-file", str(tmp_path / "runs" / "r" / "cancel.request")]
    assert "--cancel-file" not in train_arguments(job, "o")
    assert parse_cli(args).cancel_file == str(cancel_file("r"))
    job = replace(
        job, data=dataset_folder("r"), base="/w/b.safetensors", cancel_file=cancel_file("r")
    )
    steps = training_steps(job, score=False)
    assert [a[0] for _, a in steps] == ["train"] and "--cancel-file" in steps[0][1]
    assert [a[0] for _, a in training_steps(job)] == ["evaluate", "train", "evaluate"]


def test_the_weight_average_choice_reaches_edpsn_train(tmp_path, monkeypatch):
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path))
    job = TrainJob("r", "MRI-PET", epochs=1, device="cpu")
    assert (
        "--ema-decay" not in train_arguments(job) and parse_cli(train_arguments(job)).ema_decay == 0
    )
    averaged = replace(job, ema_decay=WEIGHT_AVERAGE_DECAY)
    for resume in (False, True):  # a resumed run keeps averaging (no warning, same average)
        (train,) = [a for _, a in training_steps(averaged, resume=resume) if a[0] == "train"]
        assert parse_cli(train).ema_decay == WEIGHT_AVERAGE_DECAY == 0.99
