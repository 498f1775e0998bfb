"""Robust training on real runs (CPU, 64x64 crops): the cancel file, a full disk while
checkpointing (a real file-size limit in a subprocess), and resume checkpoints that do not fit."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from helpers import torch_threads

from EDPSNLib.cli import main
from EDPSNLib.errors import InputError
from EDPSNLib.training.checkpoint import load_checkpoint
from EDPSNLib.training.report import read_jsonl
from EDPSNLib.training.trainer import TrainConfig, train

SMALL = dict(
    pair="MRI-PET",
    epochs=1,
    batch_size=2,
    crop=64,
    max_steps_per_epoch=2,
    max_val_images=1,
    device="cpu",
    seed=0,
)
FLAGS = [
    "--pair",
    "MRI-PET",
    "--batch-size",
    "2",
    "--crop",
    "64",
    "--max-steps-per-epoch",
    "2",
    "--max-val-images",
    "1",
    "--device",
    "cpu",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def epoch_one(tmp_path_factory):
    """A real run checkpointed after epoch 1 (2 steps)."""
    out = tmp_path_factory.mktemp("epoch1")
    return train(TrainConfig(out=out, **SMALL))


def _copy_run(result, dest):
    shutil.copytree(result.out, dest)
    return dest, dest / "checkpoint.pt"


def test_cancel_file_stops_between_steps_and_a_stale_one_is_removed(tmp_path):
    flag = tmp_path / "cancel"
    flag.write_text("left by an earlier cancel")  # stale: must not stop this run
    events: list[dict] = []

    def on_event(event: dict) -> None:
        events.append(event)
        if event["event"] == "step" and event["step"] == 2:
            flag.touch()

    cfg = TrainConfig(out=tmp_path / "run", cancel_file=flag, **{**SMALL, "max_steps_per_epoch": 4})
    result = train(cfg, progress=on_event)
    assert result.cancelled and result.global_step == 2 and result.epochs_done == 0
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "warning", "step", "step", "cancelled"]
    assert "Removed the cancel file" in events[1]["message"]
    assert not flag.exists()  # honoured, then consumed
    ckpt = load_checkpoint(result.checkpoint)
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (0, 2, 2)
    resumed = train(dataclasses.replace(cfg, resume=result.checkpoint))  # no file: runs to the end
    assert not resumed.cancelled and resumed.global_step == 4


def test_cancel_file_written_while_the_run_starts_is_honoured(tmp_path):
    # The GUI may press Cancel while `edpsn train` is still importing torch: the file is newer
    # than the process (cancel_since), so it is a request, not a stale leftover.
    since = time.time() - 5.0
    flag = tmp_path / "cancel"
    flag.touch()
    events: list[dict] = []
    cfg = TrainConfig(out=tmp_path / "run", cancel_file=flag, cancel_since=since, **SMALL)
    result = train(cfg, progress=events.append)
    assert result.cancelled and result.global_step == 0 and not flag.exists()
    assert [e["event"] for e in events] == ["start", "cancelled"]
    assert load_checkpoint(result.checkpoint)["global_step"] == 0


def test_cli_cancel_file_exits_130_with_resume_hint(tmp_path):
    out, flag = tmp_path / "cli", tmp_path / "stop.flag"
    cmd = [
        sys.executable,
        "-m",
        "EDPSNLib.cli",
        "train",
        *FLAGS,
        "--epochs",
        "3",
        "--out",
        str(out),
        "--cancel-file",
        str(flag),
        "--threads",
        "1",
        "--json-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed = []
    for line in proc.stdout:  # create the file once training has started: it stops soon after
        printed.append(json.loads(line))
        if printed[-1]["event"] == "start":
            flag.touch()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    assert f"--resume {out / 'checkpoint.pt'}" in err
    steps = [e for e in printed if e["event"] == "step"]
    assert printed[-1]["event"] == "cancelled" and len(steps) < 6
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["global_step"] == len(steps) and not flag.exists()


#: Runs ``edpsn`` under a real file-size limit; SIGXFSZ ignored, so a write past it fails
#: with EFBIG, as writes fail with ENOSPC on a full disk.
_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from EDPSNLib.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX only")
def test_full_disk_while_checkpointing_keeps_the_old_checkpoint(epoch_one, tmp_path):
    out, ckpt_path = _copy_run(epoch_one, tmp_path / "run")
    before = ckpt_path.read_bytes()
    # 150 kB: the log (few kB), weights (~65 kB) and curves (~110 kB) fit, the checkpoint
    # (~260 kB: weights and Adam moments) does not -- as on a disk that fills up.
    assert (out / "last.safetensors").stat().st_size < 150_000 < len(before)
    cmd = [
        sys.executable,
        "-c",
        _LIMITED,
        "150000",
        "train",
        *FLAGS,
        "--epochs",
        "2",
        "--out",
        str(out),
        "--resume",
        str(ckpt_path),
        "--threads",
        "1",
        "--json-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr
    assert f"could not write the checkpoint {ckpt_path}: File too large (EFBIG)" in err
    assert f"previous checkpoint {ckpt_path} (after epoch 1) is kept unchanged" in err
    assert f"--resume {ckpt_path}" in err and "Traceback" not in err
    assert ckpt_path.read_bytes() == before  # byte-identical
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # no half-written files
    log = read_jsonl(out / "progress.jsonl")
    assert log[-1]["event"] == "error" and "EFBIG" in log[-1]["message"]
    failed = [
        e["loss"]
        for e in log[log.index(next(e for e in log if e.get("resumed_from"))) :]
        if e["event"] == "step"
    ]
    # With space again, the kept checkpoint resumes and redoes epoch 2 exactly (same thread
    # count as the subprocess: exact floats hold only between runs with the same count).
    with torch_threads(1):
        resumed = train(TrainConfig(out=out, resume=ckpt_path, **{**SMALL, "epochs": 2}))
    assert resumed.epochs_done == 2 and load_checkpoint(ckpt_path)["epoch"] == 2
    assert [s["loss"] for s in resumed.history["steps"] if s["epoch"] == 2] == failed


def _edited(ckpt_path, dest, edit) -> str:
    ckpt = torch.load(ckpt_path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dest)
    return str(dest)


def test_incompatible_checkpoints_are_refused_clearly(epoch_one, tmp_path):
    src = epoch_one.checkpoint

    def resume(path, **kw):
        return train(TrainConfig(out=tmp_path / "out", resume=path, **{**SMALL, **kw}))

    other_arch = _edited(src, tmp_path / "arch.pt", lambda c: c.update(architecture="edpsn-v0"))
    with pytest.raises(InputError, match=r"network 'edpsn-v0'.*start a fresh run.*--init"):
        resume(other_arch)
    narrow = _edited(src, tmp_path / "narrow.pt", lambda c: c["model_config"].update(channels=8))
    with pytest.raises(InputError, match=r"do not fit .*wrong shape: shallow.*instead of"):
        resume(narrow)
    no_dps = _edited(src, tmp_path / "dps.pt", lambda c: c["model_config"].update(use_dps=False))
    with pytest.raises(InputError, match=r"missing: paths\.0\..* more; unexpected: paths\."):
        resume(no_dps)
    with pytest.raises(InputError, match=r"another network variant: use_eem=True \(asked: False\)"):
        resume(src, model={"use_eem": False})
    with pytest.raises(InputError, match=r"is for MRI-PET, not MRI-CT; use --pair MRI-PET"):
        resume(src, pair="MRI-CT")
    partial = _edited(src, tmp_path / "partial.pt", lambda c: c.pop("optimizer"))
    with pytest.raises(InputError, match="lacks optimizer"):
        resume(partial)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
    assert load_checkpoint(src)["epoch"] == 1  # the input is untouched
    # The same through the CLI: exit code 2 and the message on stderr.
    args = ["train", *FLAGS, "--out", str(tmp_path / "cli"), "--resume", other_arch]
    assert main(args) == 2


def test_cli_resume_with_other_ablation_switch(epoch_one, tmp_path, capsys):
    args = [
        "train",
        *FLAGS,
        "--out",
        str(tmp_path / "x"),
        "--resume",
        str(epoch_one.checkpoint),
        "--no-dps",
    ]
    assert main(args) == 2
    assert "use_dps=True (asked: False)" in capsys.readouterr().err
    assert os.listdir(tmp_path / "x") == []  # nothing written (the folder only)


def test_cli_trains_a_gated_network_with_its_eem_strength(tmp_path):
    """--dps-gate, --head mix, --eem-weight and --residual-scale reach the fresh network, its weights and their sidecar,
    and the weights load back into the network they describe."""
    from EDPSNLib.models.weights import load_weights

    out = tmp_path / "gate"
    args = ["train", *FLAGS, "--epochs", "1", "--out", str(out), "--dps-gate", "--head", "mix"]
    assert main([*args, "--eem-weight", "0.8", "--residual-scale", "0", "--threads", "1"]) == 0
    model, meta = load_weights(out / "EDPSN_MRI-PET.safetensors")
    assert model.config.dps_gate and model.config.eem_weight == 0.8 and model.gate is not None
    assert model.config.residual_scale == 0 and meta["config"]["residual_scale"] == 0
    assert model.config.head == "mix" and model.head.out.out_channels == 4
    assert meta["config"]["dps_gate"] and "--dps-gate" in meta["command"]
