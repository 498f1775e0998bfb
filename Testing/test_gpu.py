"""EDPSN on a CUDA GPU: the same fusion as on the CPU, bf16 autocast, and the OOM fallback.

Real Harvard slices through the shipped default weights. Every test here needs a CUDA GPU and
is skipped, saying so, where torch sees none (CI's CPU machines); ``pytest -m gpu`` runs them.

Tolerances (images on [0, 1]; one grey level of a written uint8 image is 1/255 = 0.0039):

* float32 on CUDA (TF32 off) against float32 on the CPU: the same arithmetic in another
  order, so mean |difference| < 2e-4 and 99.9 % of pixels within one grey level (a pixel whose
  entropy sits on a region threshold may take the other path, hence not all of them);
* bfloat16 autocast (what the product runs on CUDA) against float32: bf16 keeps 8 bits of
  mantissa; mean |difference| < 2e-3 and 99 % of pixels within 0.01. On the CPU, bf16 autocast
  of these slices gives mean 3e-5 to 7e-5 and a 99 % quantile of 3e-4 to 6e-4 (all three pairs),
  so the bounds leave a margin of about 20 for other kernels;
* the entropy regions are computed in float32 even under autocast: >= 99.9 % of labels agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.fusion.slices import NetworkSliceFuser, make_slice_fuser
from EDPSNLib.models.lookup import default_weights_path
from EDPSNLib.models.weights import load_weights

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

N_SLICES = 8


def _slices(pair: str) -> tuple[np.ndarray, np.ndarray]:
    """Real test slices on [0, 1]: MRI (N, H, W), functional (N, H, W) or (N, H, W, 3)."""
    loaded = [load_pair(p) for p in list_pairs(pair, "test")[:N_SLICES]]
    mri = np.stack([m for m, _ in loaded]).astype(np.float32) / 255.0
    func = np.stack([f for _, f in loaded]).astype(np.float32) / 255.0
    return mri, func


def _model(pair: str) -> torch.nn.Module:
    """A fresh copy of the default network (a fuser moves its model to its device)."""
    model, _meta = load_weights(default_weights_path(pair), expected_pair=pair, device="cpu")
    return model


def _luma(image: np.ndarray) -> np.ndarray:
    """Grey images as they are; RGB (..., 3) as BT.601 luma (what the metrics look at)."""
    if image.ndim == 3:
        return image
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _assert_close(a: np.ndarray, b: np.ndarray, mean: float, quantile: float, within: float):
    """Mean |a - b| below ``mean`` and the ``quantile`` of |a - b| below ``within``."""
    diff = np.abs(_luma(a).astype(np.float64) - _luma(b).astype(np.float64))
    assert diff.mean() < mean, f"mean |difference| {diff.mean():.2e} >= {mean:.0e}"
    assert np.quantile(diff, quantile) < within, (
        f"{quantile:.1%} of pixels within {np.quantile(diff, quantile):.2e}, not {within:.0e}"
    )


def _assert_regions_agree(a: np.ndarray, b: np.ndarray, share: float = 0.999) -> None:
    agree = float((a == b).mean())
    assert agree >= share, f"only {agree:.4%} of region labels agree"


def _fuse_tensors(
    model: torch.nn.Module, mri: np.ndarray, func: np.ndarray, device: str, bf16: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The network on ``device`` with or without bf16 autocast, outside any fuser."""
    m = torch.from_numpy(mri)[:, None].to(device)
    f = (
        torch.from_numpy(func)[:, None]
        if func.ndim == 3
        else torch.from_numpy(func).permute(0, 3, 1, 2)
    )
    model = model.to(device)
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        fused, regions = model.fuse(m, f.contiguous().to(device))
    assert fused.dtype == torch.float32  # autocast stays inside the network
    out = fused.cpu().numpy()
    out = out[:, 0] if out.shape[1] == 1 else np.moveaxis(out, 1, -1)
    return out, regions[:, 0].cpu().numpy()


@pytest.fixture
def memory_cap() -> Iterator[Callable[[int], None]]:
    """Cap what torch may allocate on the GPU to a number of bytes; lifted afterwards."""
    total = torch.cuda.get_device_properties(0).total_memory

    def cap(limit: int) -> None:
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), 0)

    torch.cuda.empty_cache()  # cached blocks would serve allocations past the cap
    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0, 0)
    torch.cuda.empty_cache()


@pytest.mark.parametrize("pair", ["MRI-PET", "MRI-CT"])
def test_cuda_fusion_equals_cpu_fusion(pair):
    # The product's path on each device: float32 on the CPU, bf16 autocast on CUDA.
    mri, func = _slices(pair)
    cpu_fuser, cpu_info = make_slice_fuser("edpsn", pair, device="cpu")
    gpu_fuser, gpu_info = make_slice_fuser("edpsn", pair, device="cuda", log=lambda _m: None)
    assert (cpu_info["device"], gpu_info["device"]) == ("cpu", "cuda")
    fused_cpu, regions_cpu = cpu_fuser(mri, func)
    fused_gpu, regions_gpu = gpu_fuser(mri, func)
    assert fused_gpu.shape == fused_cpu.shape == func.shape and fused_gpu.dtype == np.float32
    assert 0.0 <= fused_gpu.min() and fused_gpu.max() <= 1.0
    _assert_close(fused_gpu, fused_cpu, mean=2e-3, quantile=0.99, within=0.01)
    _assert_regions_agree(regions_gpu, regions_cpu)


def test_float32_on_cuda_matches_the_cpu_closely():
    mri, func = _slices("MRI-PET")
    model = _model("MRI-PET")
    on_cpu = _fuse_tensors(model, mri, func, "cpu", bf16=False)
    # TF32 (on by default for cuDNN convolutions) would round to 10 bits of mantissa.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        on_gpu = _fuse_tensors(model, mri, func, "cuda", bf16=False)
    _assert_close(on_gpu[0], on_cpu[0], mean=2e-4, quantile=0.999, within=1 / 255)
    _assert_regions_agree(on_gpu[1], on_cpu[1])


@pytest.mark.parametrize("pair", ["MRI-PET", "MRI-SPECT", "MRI-CT"])
def test_bf16_autocast_on_cuda_is_close_to_float32(pair):
    mri, func = _slices(pair)
    model = _model(pair)
    full = _fuse_tensors(model, mri, func, "cuda", bf16=False)
    half = _fuse_tensors(model, mri, func, "cuda", bf16=True)
    _assert_close(half[0], full[0], mean=2e-3, quantile=0.99, within=0.01)
    _assert_regions_agree(half[1], full[1])
    # Not the same numbers: autocast really ran in bf16 (else this test would prove nothing).
    assert not np.array_equal(half[0], full[0])


def _peak_reserved(model: torch.nn.Module, mri: np.ndarray, func: np.ndarray) -> int:
    """GPU memory the caching allocator reserves at its peak to fuse this batch in one pass."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    NetworkSliceFuser(model, "cuda", len(mri))(mri, func)
    return torch.cuda.max_memory_reserved()


def test_out_of_memory_halves_the_batch_and_stays_on_the_gpu(memory_cap):
    mri, func = _slices("MRI-PET")
    mri, func = np.concatenate([mri] * 4), np.concatenate([func] * 4)  # 32 slices
    reference, reference_regions = NetworkSliceFuser(_model("MRI-PET"), "cuda", 4)(mri, func)
    model = _model("MRI-PET")
    # What one more slice costs, measured (this also creates the cuDNN handles, which must not
    # be what runs out of memory); fixed costs such as workspaces are in both peaks.
    one, two = (_peak_reserved(model, mri[:n], func[:n]) for n in (1, 2))
    per_slice = two - one
    assert per_slice > 0, "a second slice took no memory: the cap below would prove nothing"
    messages: list[str] = []
    fuser = NetworkSliceFuser(model, "cuda", batch_size=len(mri), log=messages.append)
    torch.cuda.empty_cache()
    # Room for about three slices: 32 do not fit, one surely does.
    memory_cap(one + 2 * per_slice)
    fused, regions = fuser(mri, func)
    assert any("retrying with batches of" in m for m in messages), messages
    assert fuser.device == "cuda" and 1 <= fuser.batch_size < len(mri)
    assert not any("CPU" in m for m in messages), messages
    # bf16 on both sides, but other batch sizes may pick other cuDNN algorithms.
    _assert_close(fused, reference, mean=2e-3, quantile=0.99, within=0.02)
    _assert_regions_agree(regions, reference_regions)


def test_out_of_memory_for_one_slice_continues_on_the_cpu(memory_cap):
    mri, func = _slices("MRI-PET")
    # One slice at a time on the CPU, as the fuser goes on after falling back.
    reference, reference_regions = NetworkSliceFuser(_model("MRI-PET"), "cpu", 1)(mri, func)
    messages: list[str] = []
    fuser = NetworkSliceFuser(_model("MRI-PET"), "cuda", batch_size=2, log=messages.append)
    NetworkSliceFuser(fuser.model, "cuda", 1)(mri[:1], func[:1])  # cuDNN handles exist
    torch.cuda.empty_cache()
    # Nothing beyond what is reserved already (the weights): not even one slice fits.
    memory_cap(torch.cuda.memory_reserved())
    fused, regions = fuser(mri, func)
    assert messages[-1] == "GPU out of memory even for one slice: continuing on the CPU."
    assert "retrying with batches of 1 slices." in messages[0]
    assert fuser.device == "cpu" and next(fuser.model.parameters()).device.type == "cpu"
    # From the first slice on, the CPU did the work: float32, as the CPU fuser does.
    np.testing.assert_allclose(fused, reference, atol=1e-5)
    _assert_regions_agree(regions, reference_regions, share=1.0)
