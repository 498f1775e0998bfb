"""Which device a fusion will run on, and why not the GPU: for the Slicer modules' device line.

The Slicer modules run ``python -m EDPSNLib.device_info --device auto`` in a short subprocess
rather than importing torch into the application: querying CUDA there would create a CUDA
context that holds GPU memory in Slicer for the rest of the session.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from EDPSNLib import names

#: Below this much free GPU memory the module warns before a run (bytes).
LOW_GPU_MEMORY = 4 * 2**30
DEVICES = names.DEVICES


def device_report(choice: str = "auto") -> dict[str, Any]:
    """``{"device", "name", "total_bytes", "free_bytes", "low_memory", "reason"}`` for a choice.

    ``device`` is what a run with ``--device choice`` uses ("cuda" or "cpu"); ``reason`` says
    in words why the GPU is not used (empty when it is); ``usable`` is False when an explicit
    ``cuda`` cannot run.
    """
    if choice not in DEVICES:
        return _cpu(choice, f"unknown device '{choice}'; choose auto, cpu or cuda", usable=False)
    try:
        import torch
    except ImportError:
        return _cpu(choice, "torch is not installed: install it with the PyTorch Utils module")
    cuda_built = torch.backends.cuda.is_built() and torch.version.cuda is not None
    if choice == "cpu":
        return _cpu(choice, "the CPU was chosen")
    if not cuda_built:
        why = f"this torch ({torch.__version__}) is a CPU-only build; reinstall a CUDA build with PyTorch Utils"
        return _cpu(choice, why, usable=choice == "auto")
    if not torch.cuda.is_available():
        why = "torch has CUDA support but finds no usable NVIDIA GPU (no GPU, or no or too old a driver)"
        return _cpu(choice, why, usable=choice == "auto")
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    return {
        "choice": choice,
        "device": "cuda",
        "name": props.name,
        "total_bytes": int(total),
        "free_bytes": int(free),
        "low_memory": free < LOW_GPU_MEMORY,
        "reason": "",
        "usable": True,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def _cpu(choice: str, reason: str, usable: bool = True) -> dict[str, Any]:
    return {
        "choice": choice,
        "device": "cpu",
        "name": "CPU",
        "total_bytes": None,
        "free_bytes": None,
        "low_memory": False,
        "reason": reason,
        "usable": usable,
    }


def describe(report: dict[str, Any]) -> str:
    """One line for a user: the GPU and its memory, or the CPU and why."""
    if report["device"] == "cuda":
        gib = 2.0**30
        text = (
            f"GPU: {report['name']}, {report['free_bytes'] / gib:.1f} of "
            f"{report['total_bytes'] / gib:.1f} GiB free"
        )
        if report["low_memory"]:
            text += f" (less than {LOW_GPU_MEMORY / gib:.0f} GiB free: other programs use it)"
        return text
    prefix = "Cannot use the GPU" if not report["usable"] else "CPU"
    return f"{prefix}: {report['reason']}."


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report of ``--device`` as one JSON event line."""
    parser = argparse.ArgumentParser(prog="python -m EDPSNLib.device_info")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    report = device_report(args.device)
    print(json.dumps({"event": "device", **report, "text": describe(report)}), flush=True)
    return 0 if report["usable"] else 2


if __name__ == "__main__":
    sys.exit(main())
