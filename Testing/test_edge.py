"""EEM (edge.py): HSI conversions, the central concentration gradient and edge enhancement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError
from EDPSNLib.network.edge import (
    EdgeEnhancement,
    central_concentration_gradient,
    edge_enhance,
    hsi_to_rgb,
    rgb_to_hsi,
)


def _functional_batch(pair: str, count: int = 3) -> torch.Tensor:
    """Real functional test images of one pair as (N, C, H, W) float32 on [0, 1]."""
    images = [load_pair(p)[1] for p in list_pairs(pair, "test")[:count]]
    arr = np.stack(images).astype(np.float32) / 255.0
    arr = arr[:, None] if arr.ndim == 3 else np.moveaxis(arr, -1, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


@pytest.fixture(scope="module")
def pet() -> torch.Tensor:
    return _functional_batch("MRI-PET")


@pytest.mark.parametrize("pair", ["MRI-PET", "MRI-SPECT"])
def test_hsi_round_trip_on_real_images(pair: str) -> None:
    rgb = _functional_batch(pair)
    back = hsi_to_rgb(rgb_to_hsi(rgb))
    assert torch.max(torch.abs(back - rgb)).item() < 1e-4


def test_hsi_of_primaries_black_and_grey() -> None:
    colours = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 0]],
        dtype=torch.float32,
    )
    hsi = rgb_to_hsi(colours.T[None, :, :, None])[0, :, :, 0].T
    expected = torch.tensor(
        [
            [0, 1, 1 / 3],
            [1 / 3, 1, 1 / 3],
            [2 / 3, 1, 1 / 3],
            [0, 0, 0.5],
            [0, 0, 0],
            [1 / 6, 1, 2 / 3],
        ]
    )
    torch.testing.assert_close(hsi, expected, atol=1e-6, rtol=0)


def test_hue_matches_the_arccos_textbook_formula(pet: torch.Tensor) -> None:
    rgb = pet.double().numpy()
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    den = np.sqrt((r - g) ** 2 + (r - b) * (g - b))
    chromatic = den > 1e-2
    cos = 0.5 * ((r - g) + (r - b))[chromatic] / den[chromatic]
    theta = np.arccos(np.clip(cos, -1, 1))
    ref = np.where(b[chromatic] <= g[chromatic], theta, 2 * math.pi - theta) / (2 * math.pi)
    hue = rgb_to_hsi(pet)[:, 0].double().numpy()[chromatic]
    diff = np.abs(hue - ref)
    diff = np.minimum(diff, 1 - diff)  # hue is circular
    assert chromatic.sum() > 1000
    assert diff.max() < 1e-4


def test_ccg_zero_on_constant_and_positive_on_the_bright_side_of_an_edge() -> None:
    flat = torch.full((2, 1, 9, 11), 0.7)
    assert torch.count_nonzero(central_concentration_gradient(flat)) == 0
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 0.8
    ccg = central_concentration_gradient(step)[0, 0]
    # Bright column next to the edge: 3 of 8 neighbours are 0.8 lower (2 at the borders).
    torch.testing.assert_close(ccg[1:-1, 4], torch.full((6,), 0.3))
    torch.testing.assert_close(ccg[0, 4], torch.tensor(0.3))  # replicate padding
    assert torch.count_nonzero(ccg[:, :4]) == 0  # dark side untouched: no halo
    assert torch.count_nonzero(ccg[:, 5:]) == 0


def test_ccg_matches_a_numpy_reference_on_real_ct() -> None:
    ct = _functional_batch("MRI-CT", 2)
    x = ct[:, 0].double().numpy()
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[1:]
    ref = np.zeros_like(x)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                ref += np.maximum(x - padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], 0)
    ref /= 8
    out = central_concentration_gradient(ct)[:, 0].double().numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert ref.max() > 0.05  # real edges exist


def test_weight_zero_is_the_identity(pet: torch.Tensor) -> None:
    assert torch.equal(edge_enhance(pet, 0.0), pet)
    grey = pet[:, :1]
    assert torch.equal(edge_enhance(grey, 0.0), grey)
    assert torch.equal(EdgeEnhancement(0.0)(pet), pet)


def test_enhancement_brightens_edges_only_and_keeps_hue(pet: torch.Tensor) -> None:
    out = edge_enhance(pet, 0.5)
    assert out.shape == pet.shape and out.min() >= 0 and out.max() <= 1
    ccg = central_concentration_gradient(rgb_to_hsi(pet)[:, 2:3])
    flat = (ccg == 0).expand_as(pet)
    assert torch.max(torch.abs(out - pet)[flat]).item() < 1e-5
    i_in, i_out = rgb_to_hsi(pet)[:, 2:3], rgb_to_hsi(out)[:, 2:3]
    unclipped = (out.amax(1, keepdim=True) < 1) & (ccg > 0.01)
    torch.testing.assert_close(i_out[unclipped], (i_in + 0.5 * ccg)[unclipped], atol=1e-5, rtol=0)
    hue_in, hue_out = rgb_to_hsi(pet)[:, :1], rgb_to_hsi(out)[:, :1]
    chroma = unclipped & (rgb_to_hsi(pet)[:, 1:2] > 0.1)
    d = torch.abs(hue_in - hue_out)[chroma]
    assert torch.minimum(d, 1 - d).max().item() < 1e-4
    ct = _functional_batch("MRI-CT", 1)
    enhanced_ct = edge_enhance(ct, 0.5)
    torch.testing.assert_close(
        enhanced_ct, torch.clamp(ct + 0.5 * central_concentration_gradient(ct), 0, 1)
    )


def test_gradients_are_finite_at_black_grey_and_real_pixels(pet: torch.Tensor) -> None:
    x = pet[:1, :, 100:132, 100:132].clone()
    x[..., :8, :] = 0.0  # black
    x[..., 8:16, :] = 0.4  # grey: hue undefined
    x.requires_grad_(True)
    (edge_enhance(x, 0.5).sum() + rgb_to_hsi(x).sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_gradcheck_in_double() -> None:
    gen = torch.Generator().manual_seed(0)
    x = (0.1 + 0.8 * torch.rand(1, 3, 5, 6, generator=gen)).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: hsi_to_rgb(rgb_to_hsi(t)), (x,))
    assert torch.autograd.gradcheck(lambda t: edge_enhance(t, 0.3), (x,))


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 2, 8, 8), (1, 4, 8, 8)])
def test_bad_shapes_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="expected"):
        edge_enhance(torch.rand(shape))
