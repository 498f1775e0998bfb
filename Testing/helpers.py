"""Small helpers shared by test files (not tests themselves)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

#: A real MRI-PET training run of a few seconds on CPU (2 epochs x 3 steps, 64x64 crops).
TINY_TRAINING = dict(
    pair="MRI-PET",
    epochs=2,
    batch_size=2,
    crop=64,
    max_steps_per_epoch=3,
    max_val_images=1,
    device="cpu",
    seed=0,
)
#: ``edpsn train`` flags of a one-epoch, two-step MRI-CT run (add --out and the flag tested).
TINY_CLI_TRAIN = ["train", "--pair", "MRI-CT", "--epochs", "1", "--batch-size", "2", "--crop", "64"]
TINY_CLI_TRAIN += ["--max-steps-per-epoch", "2", "--max-val-images", "1", "--device", "cpu"]


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
    """3x3 rotation Rz @ Ry @ Rx for angles in radians about x, y and z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous count.

    Float sums depend on how work is split over threads: a run compared exactly with a
    subprocess started with ``--threads n`` must use the same ``n``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_cli(args: list[str]):
    """``args`` (command first) parsed by the real ``edpsn`` parser of that one command."""
    from EDPSNLib.cli import build_parser

    return build_parser(only=args[0]).parse_args(args)


def copy_default_weights(pair: str, target) -> None:
    """A real shipped weights file and its sidecar, copied under another name."""
    from EDPSNLib.models.lookup import default_weights_path

    src = default_weights_path(pair)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(src.read_bytes())
    target.with_suffix(".json").write_bytes(src.with_suffix(".json").read_bytes())
