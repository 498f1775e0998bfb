"""Batches of slices through EDPSN (or a baseline) on a device, with OOM fallback to smaller
batches and then the CPU. Every fuser returns (fused, regions) for a batch of slices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from EDPSNLib.errors import InputError
from EDPSNLib.names import NETWORK_METHOD

Log = Callable[[str], None]


class SliceFuser(Protocol):
    """(B, H, W) MRI and (B, H, W[, 3]) functional slices on [0, 1] -> fused like ``func`` and
    entropy regions (B, H, W) uint8 (0 low, 1 mid, 2 high)."""

    def __call__(self, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; an unusable explicit choice is an error.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        The device to use.

    Raises:
        InputError: when an explicit device is not usable here.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            "--device cuda was asked for, but torch sees no CUDA GPU (CPU-only torch build or "
            "no driver); use --device cpu or auto."
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"Unknown device '{device}'; choose auto, cpu or cuda.")
    return device


def _to_tensors(mri: np.ndarray, func: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.from_numpy(np.ascontiguousarray(mri, np.float32))[:, None]
    f = np.ascontiguousarray(func, np.float32)
    f_t = torch.from_numpy(f)[:, None] if f.ndim == 3 else torch.from_numpy(np.moveaxis(f, -1, 1))
    return m, f_t


def _from_tensor(x: torch.Tensor) -> np.ndarray:
    arr = x.float().cpu().numpy()
    return arr[:, 0] if arr.shape[1] == 1 else np.moveaxis(arr, 1, -1)


#: Default slices per forward pass: small batches stay in cache on a CPU, a GPU wants more.
DEFAULT_BATCH = {"cpu": 4, "cuda": 16}


class NetworkSliceFuser:
    """EDPSN on a device; autocast (bfloat16) on CUDA; halves the batch on GPU OOM, then CPU."""

    def __init__(
        self, model: torch.nn.Module, device: str, batch_size: int | None, log: Log | None = None
    ):
        # channels_last: oneDNN's convolutions on these narrow (4-16 channel) layers run about
        # 2.5x faster than in NCHW on the CPU (measured with benchmarks/bench_volume.py).
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        self.device = device
        default = DEFAULT_BATCH["cuda" if device.startswith("cuda") else "cpu"]
        self.batch_size = max(1, int(batch_size or default))
        self.log = log or (lambda _msg: None)

    def _run(self, m: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, f = m.to(self.device), f.to(self.device)
        cuda = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            return self.model.fuse(m, f)

    def __call__(self, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, f = _to_tensors(mri, func)
        fused, regions, start = [], [], 0
        while start < len(m):
            stop = start + self.batch_size
            try:
                out, reg = self._run(m[start:stop], f[start:stop])
            except torch.cuda.OutOfMemoryError:  # also torch.OutOfMemoryError (torch >= 2.5)
                torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    self.log(
                        f"GPU out of memory: retrying with batches of {self.batch_size} slices."
                    )
                else:
                    self.device = "cpu"
                    self.model.to("cpu")
                    self.log("GPU out of memory even for one slice: continuing on the CPU.")
                continue
            fused.append(_from_tensor(out))
            regions.append(reg[:, 0].to(torch.uint8).cpu().numpy())
            start = stop
        return np.concatenate(fused).clip(0.0, 1.0), np.concatenate(regions)


class BaselineSliceFuser:
    """A classical baseline slice by slice; regions from EDPSN's own EEM + ED (no learned weights
    take part in them, so an untrained network computes exactly what the trained one does)."""

    def __init__(self, name: str):
        from EDPSNLib.fusion.baselines import BASELINES
        from EDPSNLib.network.model import EDPSN

        if name not in BASELINES:
            raise InputError(
                f"Unknown method '{name}'; choose edpsn or one of {', '.join(BASELINES)}."
            )
        self.rule = BASELINES[name]
        self.network = EDPSN().eval()

    def __call__(self, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fused = np.stack([self.rule(a, b) for a, b in zip(mri, func)])
        m, f = _to_tensors(mri, func)
        with torch.inference_mode():
            reg = self.network.regions(m, self.network.preprocess_functional(f)[0])
        return fused.astype(np.float32), reg[:, 0].to(torch.uint8).numpy()


def make_slice_fuser(
    method: str,
    pair: str,
    weights: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    log: Log | None = None,
) -> tuple[SliceFuser, dict]:
    """A fuser for ``method`` ('edpsn' or a baseline name) and a description of what it uses.

    Args:
        method: ``edpsn`` or a baseline name.
        pair: the modality pair, e.g. ``MRI-PET``.
        weights: weights file or name (``edpsn`` only; None: the shipped weights).
        device: torch device or ``auto``.
        batch_size: slices per forward pass (None: 4 on CPU, 16 on CUDA).
        log: receives what was chosen (device, weights, fallbacks).

    Returns:
        The fuser, a function of (B, H, W) MRI and functional batches on [0, 1] giving the fused
        batch and the region index per pixel, and a description (method, device, weights).
    """
    if method != NETWORK_METHOD:
        return BaselineSliceFuser(method), {"method": method}
    from EDPSNLib.models.lookup import resolve_weights
    from EDPSNLib.models.weights import load_weights

    dev = resolve_device(device)
    path = resolve_weights(weights, pair)
    model, meta = load_weights(path, expected_pair=pair, device="cpu")
    if dev.startswith("cuda"):
        props = torch.cuda.get_device_properties(dev)
        (log or print)(f"Using GPU {props.name} ({props.total_memory / 2**30:.1f} GiB).")
    return NetworkSliceFuser(model, dev, batch_size, log), {
        "method": NETWORK_METHOD,
        "weights": str(path),
        "device": dev,
        "weights_name": meta.get("name", path.stem),
    }
