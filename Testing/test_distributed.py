"""Multi-process training on CPU (gloo): two processes started by the real torchrun launcher
match one process with the same global batch, and a cancel on one rank stops both at the same
step with a checkpoint that a single process resumes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from EDPSNLib.errors import InputError
from EDPSNLib.training.checkpoint import load_checkpoint
from EDPSNLib.training.distributed import DistContext, check_global_batch, rank_share
from EDPSNLib.training.loss_choice import choose_loss
from EDPSNLib.training.report import read_jsonl
from EDPSNLib.training.trainer import TrainConfig, train

#: Stated tolerance (docs/training.md): logged losses within 1e-5 relative, weights within 1e-6
#: absolute. One Adam step moves a weight by ~lr = 1e-4, so a missed gradient average or a
#: per-rank loss normaliser shows up far above these; what remains is summation order.
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-6
SMALL = dict(
    pair="MRI-PET",
    epochs=1,
    batch_size=4,
    crop=64,
    max_steps_per_epoch=3,
    max_val_images=2,
    device="cpu",
    seed=0,
    ema_decay=0.9,  # the weight average under DDP too: last.safetensors is the average
)
#: What ``edpsn train`` uses when no loss flag is given (the shipped MRI-PET weights' loss).
LOSS = choose_loss({}, "MRI-PET")[0]
FLAGS = [
    "--pair",
    "MRI-PET",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--crop",
    "64",
    "--max-steps-per-epoch",
    "3",
    "--max-val-images",
    "2",
    "--device",
    "cpu",
    "--seed",
    "0",
    "--ema-decay",
    "0.9",
]
pytestmark = pytest.mark.slow


def _losses(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if e["event"] == "step"]


def _assert_close_losses(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert abs(a - b) <= LOSS_RTOL * abs(b), (a, b)


def _assert_close_weights(path_a, path_b) -> None:
    a, b = load_file(str(path_a)), load_file(str(path_b))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= WEIGHT_ATOL, worst


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process reference with the same global batch (4)."""
    out = tmp_path_factory.mktemp("single")
    events: list[dict] = []
    result = train(TrainConfig(out=out, loss=LOSS, **SMALL), progress=events.append)
    return result, events


def test_torchrun_two_gloo_processes_match_one_process(single, tmp_path):
    reference, ref_events = single
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "EDPSNLib.cli",
        "train",
        *FLAGS,
        "--out",
        str(out),
        "--threads",
        "1",
        "--json-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    log = read_jsonl(out / "progress.jsonl")
    # Rank 0 alone prints and logs: every event once, exactly what it printed.
    assert [e["event"] for e in log] == ["start", "step", "step", "step", "epoch", "done"]
    assert printed == log and log[0]["world_size"] == 2 and log[0]["batch_size"] == 4
    assert proc.stderr.count("Weights:") == 1
    _assert_close_losses(_losses(log), _losses(ref_events))
    epoch, ref_epoch = log[-2], next(e for e in ref_events if e["event"] == "epoch")
    assert abs(epoch["val_loss"] - ref_epoch["val_loss"]) <= LOSS_RTOL * ref_epoch["val_loss"]
    _assert_close_weights(out / "last.safetensors", reference.last_weights)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (1, 0, 3)
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the plain network's keys
    trained = load_checkpoint(reference.checkpoint)["model"]  # the weights trained on, too
    assert max(float((ckpt["model"][k] - v).abs().max()) for k, v in trained.items()) <= WEIGHT_ATOL
    assert ckpt["ema"]["updates"] == 3


_WORKER = """
import json, os, sys
import torch
torch.set_num_threads(1)
from EDPSNLib.training.losses import LossConfig
from EDPSNLib.training.trainer import TrainConfig, train
rank, polls = int(os.environ["RANK"]), [0]

def cancel():  # only rank 1 asks, before its second step
    polls[0] += 1
    return rank == 1 and polls[0] >= 2

cfg = json.loads(sys.argv[1])
cfg["loss"] = LossConfig.from_dict(cfg["loss"])
result = train(TrainConfig(**cfg), cancel=cancel)
print(json.dumps({"rank": rank, "cancelled": result.cancelled, "step": result.global_step}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cancel_on_one_rank_stops_both_and_one_process_resumes(single, tmp_path):
    reference, ref_events = single
    out = tmp_path / "cut"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    cfg = json.dumps({**SMALL, "out": str(out), "loss": LOSS.to_dict()})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, cfg],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outputs]
    assert results == [{"rank": r, "cancelled": True, "step": 1} for r in range(2)]
    log = read_jsonl(out / "progress.jsonl")
    assert [e["event"] for e in log] == ["start", "step", "cancelled"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (0, 1)
    # One process continues the two-process run: batch_size is global, so the data order is
    # the same, and the result matches the uninterrupted one-process run.
    resumed = train(TrainConfig(out=out, resume=out / "checkpoint.pt", loss=LOSS, **SMALL))
    assert not resumed.cancelled and resumed.global_step == 3 and resumed.world_size == 1
    _assert_close_losses([s["loss"] for s in resumed.history["steps"]], _losses(ref_events))
    _assert_close_weights(resumed.last_weights, reference.last_weights)


def test_global_batch_is_split_like_distributed_sampler():
    from torch.utils.data import DistributedSampler

    ctx = [DistContext(world_size=2, rank=r) for r in range(2)]
    batch = list(range(8))  # one global batch of a permutation (here the identity)
    shares = [rank_share([batch], c)[0] for c in ctx]
    sampler = [list(DistributedSampler(batch, 2, r, shuffle=False)) for r in range(2)]
    assert shares == sampler and sorted(shares[0] + shares[1]) == batch
    check_global_batch(4, 100, ctx[0])
    with pytest.raises(InputError, match="not divisible by the 2 processes"):
        check_global_batch(5, 100, ctx[0])
    with pytest.raises(InputError, match="only 3 pairs"):
        check_global_batch(8, 3, ctx[0])
    assert torch.distributed.is_available()


def test_torchrun_worker_exit_keeps_code_and_piped_output(tmp_path):
    """A worker leaves by os._exit (no gloo teardown abort): its exit code and its
    block-buffered output still come through a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"WORLD_SIZE": "2"}

    def edpsn(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "EDPSNLib.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    listed = edpsn("models", "list")
    assert listed.returncode == 0 and "EDPSN_MRI-PET" in listed.stdout
    missing = str(tmp_path / "absent.nii.gz")
    failed = edpsn(
        "fuse",
        "--mri",
        missing,
        "--moving",
        missing,
        "--modality",
        "PET",
        "--out",
        str(tmp_path / "f.nii.gz"),
    )
    assert failed.returncode == 2 and "absent.nii.gz does not exist" in failed.stderr


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_edpsn_console_script_skips_teardown_only_in_a_torchrun_worker(world_size):
    """The installed ``edpsn`` entry point (``torchrun --no-python edpsn``) leaves a worker by
    os._exit like ``python -m EDPSNLib.cli``: atexit handlers run only outside torchrun."""
    code = (
        "import atexit, sys\n"
        "from importlib.metadata import entry_points\n"
        "atexit.register(print, 'interpreter teardown')\n"
        "sys.argv = ['edpsn', 'models', 'list']\n"
        "entry_points(group='console_scripts')['edpsn'].load()()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env | {"WORLD_SIZE": world_size},
    )
    assert run.returncode == 0 and "EDPSN_MRI-PET" in run.stdout, run.stderr
    assert ("interpreter teardown" in run.stdout) == (world_size == "1")
