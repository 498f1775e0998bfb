"""benchmarks/train_folds.py: every recipe is a valid ``edpsn train`` command; runs resume or skip."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from EDPSNLib.cli import build_parser
from EDPSNLib.training.config import train_val_splits
from EDPSNLib.training.losses import LossConfig

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train_folds", ROOT / "benchmarks/train_folds.py")
train_folds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_folds)


def _write_events(run: Path, events: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "progress.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")


@pytest.mark.parametrize("recipe", sorted(train_folds.RECIPES))
def test_every_recipe_parses_as_edpsn_train(recipe: str, tmp_path: Path) -> None:
    cmd = train_folds.train_command(recipe, "MRI-CT", "case-fold-3", 2, 30, tmp_path, 1)
    assert cmd[1:4] == ["-m", "EDPSNLib.cli", "train"]
    args = build_parser().parse_args(cmd[3:])
    assert (args.split, args.seed, args.epochs, args.threads) == ("case-fold-3", 2, 30, 1)
    assert args.augment == "all" and args.resume is None
    assert train_val_splits(args.split) == ("case-fold-3/train", "case-fold-3/val")
    # every loss setting explicit: nothing inherited from whatever weights are shipped now
    loss = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(LossConfig)}
    assert [k for k, v in loss.items() if v is None] == ["uptake_margin", "eps"]


def test_an_interrupted_run_resumes_and_a_finished_one_is_skipped(tmp_path: Path) -> None:
    run = tmp_path / "fold0-seed0"
    run.mkdir()
    assert not train_folds.finished(run)
    (run / "checkpoint.pt").write_bytes(b"")
    cmd = train_folds.train_command("uptake-mean25", "MRI-PET", "case-all", 0, 30, run, 2)
    assert cmd[-2:] == ["--resume", str(run / "checkpoint.pt")]
    events = [{"event": "epoch", "epoch": 3}]
    _write_events(run, events)
    assert not train_folds.finished(run)
    with open(run / "progress.jsonl", "a") as log:  # a kill cut the last line: resume
        log.write('{"event": "step", "glo')
    assert not train_folds.finished(run)
    events.append({"event": "done", "epoch": 30})
    _write_events(run, events)
    assert train_folds.finished(run)


def test_keep_copies_weights_and_epoch_events_only(tmp_path: Path) -> None:
    run, kept = tmp_path / "run", tmp_path / "kept" / "r"
    run.mkdir()
    (run / "EDPSN_MRI-PET.safetensors").write_bytes(b"w")
    (run / "EDPSN_MRI-PET.json").write_text("{}")
    (run / "checkpoint.pt").write_bytes(b"c")
    events = [{"event": "step", "loss": 1.0}, {"event": "epoch", "epoch": 1}, {"event": "done"}]
    _write_events(run, events)
    assert train_folds.keep(run, kept) == kept
    assert sorted(p.name for p in kept.iterdir()) == [
        "EDPSN_MRI-PET.json",
        "EDPSN_MRI-PET.safetensors",
        "progress.jsonl",
    ]
    kept_events = [json.loads(line) for line in (kept / "progress.jsonl").read_text().splitlines()]
    assert kept_events == events[1:] and train_folds.finished(kept)


def test_a_run_done_at_fewer_epochs_than_asked_is_not_finished(tmp_path: Path) -> None:
    _write_events(tmp_path, [{"event": "epoch", "epoch": 30}, {"event": "done", "epoch": 30}])
    assert train_folds.finished(tmp_path) and train_folds.finished(tmp_path, 30)
    assert not train_folds.finished(tmp_path, 60)


def test_a_longer_recipe_continues_a_copy_of_the_shorter_finished_run(tmp_path: Path) -> None:
    for name, (epochs, shorter) in train_folds.LONGER.items():
        assert epochs > 30 and train_folds.RECIPES[name] == train_folds.RECIPES[shorter]
    short, long = tmp_path / "short" / "fold0-seed0", tmp_path / "long" / "fold0-seed0"
    _write_events(short, [{"event": "epoch", "epoch": 3}])
    assert not train_folds.start_from_shorter(long, short)  # not finished: nothing to continue
    assert not long.exists()
    (short / "checkpoint.pt").write_bytes(b"c")
    _write_events(short, [{"event": "epoch", "epoch": 30}, {"event": "done", "epoch": 30}])
    assert train_folds.start_from_shorter(long, short)
    assert (long / "checkpoint.pt").read_bytes() == b"c" and not train_folds.finished(long, 60)
    cmd = train_folds.train_command(
        "uptake-mean25-ema-e60", "MRI-PET", "case-fold-0", 0, 60, long, 1
    )
    assert cmd[-2:] == ["--resume", str(long / "checkpoint.pt")] and "60" in cmd
    (long / "checkpoint.pt").write_bytes(b"further")  # the longer run moved on: never recopied
    assert not train_folds.start_from_shorter(long, short)
    assert (long / "checkpoint.pt").read_bytes() == b"further"
    assert (short / "checkpoint.pt").read_bytes() == b"c"  # the shorter run is left as it was
