"""Size, compute and speed of the EDPSN network (default config and ablation variants).

Prints Markdown tables: parameters, fp32 weight size and FLOPs per 256x256 MRI + RGB pair
(torch.utils.flop_counter.FlopCounterMode: convolutions and matmuls, 2 FLOPs per MAC; the
entropy, Otsu and EEM element-wise work is not counted), CPU milliseconds per pair for
inference at batch 1 and 8 and for one training step (forward + backward, batch 8),
with torch.set_num_threads(2); and, when CUDA is available, GPU rows in float32 and under
bfloat16 / float16 autocast. Inputs are real Harvard MRI-PET test pairs.

    .venv/bin/python benchmarks/bench_model.py [--out docs/bench_model.md] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.network.config import ARCHITECTURE, EDPSNConfig
from EDPSNLib.network.model import EDPSN

VARIANTS = {
    "default": {},
    "no EEM": {"use_eem": False},
    "no ED": {"use_ed": False},
    "no DPS": {"use_dps": False},
    "no ED, no DPS": {"use_ed": False, "use_dps": False},
    "DPS gate": {"dps_gate": True},
    "mix head": {"head": "mix"},
}


def real_batch(batch: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` MRI-PET test pairs (repeated if needed) as float32 tensors on ``device``."""
    pairs = list_pairs("MRI-PET", "test")
    mri, pet = load_pairs([pairs[i % len(pairs)] for i in range(batch)])
    m = torch.from_numpy(mri.astype(np.float32) / 255)[:, None]
    f = torch.from_numpy(np.moveaxis(pet, -1, 1).astype(np.float32) / 255)
    return m.to(device), f.contiguous().to(device)


def count_flops(model: EDPSN, size: int = 256) -> int:
    """FLOPs of one forward pass on one size x size MRI + RGB pair."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 1, size, size), torch.rand(1, 3, size, size))
    return counter.get_total_flops()


def best_ms(
    fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
) -> float:
    """Best wall time in ms of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _infer(model: EDPSN, mri: torch.Tensor, func: torch.Tensor, dtype: torch.dtype | None):
    def run() -> torch.Tensor:
        with (
            torch.no_grad(),
            torch.autocast(
                mri.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ),
        ):
            return model(mri, func)

    return run


def _train_step(model: EDPSN, mri: torch.Tensor, func: torch.Tensor):
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run() -> None:
        y, _ = model.preprocess_functional(func)
        out = model.fuse_luma(mri, y)
        loss = torch.mean((out["fused"] - torch.maximum(mri, y)) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return run


def size_table() -> list[str]:
    lines = [
        "| variant | parameters | fp32 weights (KiB) | GFLOPs per 256x256 pair |",
        "|---|---:|---:|---:|",
    ]
    for name, changes in VARIANTS.items():
        model = EDPSN(EDPSNConfig(**changes)).eval()
        n = sum(p.numel() for p in model.parameters())
        lines.append(f"| {name} | {n:,} | {n * 4 / 1024:.1f} | {count_flops(model) / 1e9:.2f} |")
    return lines


def speed_table(repeats: int) -> list[str]:
    torch.manual_seed(0)
    model = EDPSN().eval()
    lines = ["| device | mode | batch | ms per pair |", "|---|---|---:|---:|"]
    for batch in (1, 8):
        mri, func = real_batch(batch)
        ms = best_ms(_infer(model, mri, func, None), repeats)
        lines.append(f"| CPU, 2 threads | inference fp32 | {batch} | {ms / batch:.1f} |")
    mri, func = real_batch(8)
    ms = best_ms(_train_step(model.train(), mri, func), max(2, repeats // 2))
    lines.append(f"| CPU, 2 threads | train step fp32 (fwd+bwd+Adam) | 8 | {ms / 8:.1f} |")
    if torch.cuda.is_available():
        gpu = EDPSN().eval().cuda()
        name = torch.cuda.get_device_name(0)
        for batch in (1, 8, 32):
            mri, func = real_batch(batch, "cuda")
            for label, dtype in (
                ("fp32", None),
                ("bf16 autocast", torch.bfloat16),
                ("fp16 autocast", torch.float16),
            ):
                ms = best_ms(_infer(gpu, mri, func, dtype), repeats, torch.cuda.synchronize)
                lines.append(f"| {name} | inference {label} | {batch} | {ms / batch:.2f} |")
        mri, func = real_batch(8, "cuda")
        ms = best_ms(_train_step(gpu.train(), mri, func), repeats, torch.cuda.synchronize)
        lines.append(f"| {name} | train step fp32 (fwd+bwd+Adam) | 8 | {ms / 8:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the Markdown tables to this file")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (best kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    header = [
        f"EDPSN `{ARCHITECTURE}`, torch {torch.__version__}, {platform.processor() or platform.machine()}; "
        "256x256 MRI-PET pairs; CPU rows with torch.set_num_threads(2), best of "
        f"{args.repeats} runs.",
        "",
    ]
    text = "\n".join(header + size_table() + [""] + speed_table(args.repeats)) + "\n"
    print(text)
    if args.out is not None:
        from EDPSNLib.atomic import write_text_atomic

        write_text_atomic(args.out, text)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
