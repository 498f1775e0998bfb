"""ED (entropy.py): local entropy, multi-Otsu thresholds and region maps on real images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.filters import threshold_multiotsu
from skimage.filters.rank import entropy as rank_entropy

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError
from EDPSNLib.network.entropy import (
    entropy_regions,
    entropy_source_image,
    local_entropy,
    multiotsu_from_histogram,
    multiotsu_thresholds,
    quantize,
    region_map,
    region_masks,
)

FOOTPRINT = np.ones((3, 3), dtype=np.uint8)


def _pairs(pair: str, count: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """(MRI uint8, functional luma float64 0..255) of real test pairs."""
    out = []
    for p in list_pairs(pair, "test")[:count]:
        mri, func = load_pair(p)
        out.append((mri, rgb_to_luma(func)))
    return out


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


def test_entropy_is_zero_on_a_constant_image() -> None:
    out = local_entropy(torch.full((2, 1, 13, 17), 0.42))
    assert out.shape == (2, 1, 13, 17) and torch.count_nonzero(out) == 0


def test_entropy_of_nine_distinct_levels_is_log2_9() -> None:
    tile = torch.arange(9, dtype=torch.float32).view(3, 3) / 16 + 1 / 32
    image = tile.repeat(4, 4)[None, None]  # every 3x3 window holds the 9 levels once
    out = local_entropy(image)[0, 0, 1:-1, 1:-1]
    torch.testing.assert_close(out, torch.full_like(out, math.log2(9)))


@pytest.mark.parametrize("pair", ["MRI-CT", "MRI-PET", "MRI-SPECT"])
def test_entropy_matches_skimage_rank_entropy_on_real_images(pair: str) -> None:
    for mri, luma in _pairs(pair, 2):
        # 8-bit images on 16 levels: floor(u / 255 * 16) == u >> 4 (see entropy.py).
        ours = local_entropy(_tensor(mri), 16)[0, 0].numpy()
        np.testing.assert_allclose(ours, rank_entropy(mri >> 4, FOOTPRINT), atol=1e-5)
        # A float luminance (functional image) on 32 levels, quantised here independently.
        q = np.minimum(np.floor(luma.astype(np.float32) / np.float32(255) * 32), 31)
        ours = local_entropy(_tensor(luma), 32)[0, 0].numpy()
        np.testing.assert_allclose(ours, rank_entropy(q.astype(np.uint8), FOOTPRINT), atol=1e-5)


def test_quantize_covers_all_levels() -> None:
    x = torch.linspace(0, 1, 1001).view(1, 1, 7, 143)
    q = quantize(x, 16)
    assert q.dtype == torch.int64 and q.min() == 0 and q.max() == 15
    assert torch.equal(torch.unique(q), torch.arange(16))


def _histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and bin centres over [min, max], as skimage builds them."""
    hist, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    return hist / hist.sum(), (edges[:-1] + edges[1:]) / 2


def _otsu_score(prob: np.ndarray, values: np.ndarray, i: int, j: int) -> float:
    """sum_k m_k^2 / w_k of the split bins <= i, (i, j], > j (between-class variance + const)."""
    total = 0.0
    for a, b in ((0, i + 1), (i + 1, j + 1), (j + 1, len(prob))):
        w = prob[a:b].sum()
        total += (prob[a:b] @ values[a:b]) ** 2 / w if w > 0 else 0.0
    return total


def _real_maps() -> list[np.ndarray]:
    """Real float maps: MRI intensities and local-entropy maps of MRI-CT and MRI-PET pairs."""
    images = []
    for pair in ("MRI-CT", "MRI-PET"):
        for mri, luma in _pairs(pair, 3):
            images.append(mri.astype(np.float32) / 255)
            images.append(local_entropy(_tensor(np.maximum(mri, luma)))[0, 0].numpy())
    return images


def test_multiotsu_is_the_exact_optimum_on_real_maps() -> None:
    bins = 32  # keeps the pure-Python brute force fast; the search does not depend on it
    for image in _real_maps():
        _, pair = multiotsu_thresholds(torch.from_numpy(image)[None, None], bins)
        prob, centres = _histogram(image.astype(np.float64), bins)
        scores = [_otsu_score(prob, centres, i, j) for i in range(bins) for j in range(i + 1, bins)]
        ours = _otsu_score(prob, centres, *pair[0].tolist())
        assert ours == pytest.approx(max(scores), rel=1e-12)


def test_multiotsu_search_reproduces_skimage_with_its_bin_values() -> None:
    bins = 64
    for image in _real_maps():
        prob, centres = _histogram(image, bins)
        # skimage's moments use the bin index as value, except bin 0 counted as 1 (see
        # entropy.py); fed those values, the vectorised search must give skimage's split.
        sk_values = np.arange(bins, dtype=np.float64)
        sk_values[0] = 1.0
        pair = multiotsu_from_histogram(torch.from_numpy(prob)[None], torch.from_numpy(sk_values))
        sk = threshold_multiotsu(image, classes=3, nbins=bins)
        width = centres[1] - centres[0]
        sk_idx = np.round((sk - centres[0]) / width).astype(int)
        assert pair[0].tolist() == sk_idx.tolist()
        # Our thresholds (upper bin edges) for the same split sit half a bin above skimage's.
        edges = image.min() + (pair[0].numpy() + 1) * width
        np.testing.assert_allclose(edges - sk, width / 2, rtol=1e-3)


def test_regions_cover_the_image_and_follow_the_thresholds() -> None:
    for mri, luma in _pairs("MRI-PET", 2) + _pairs("MRI-CT", 1):
        source = _tensor(np.maximum(mri, luma))
        labels = entropy_regions(source)
        assert labels.dtype == torch.int64 and labels.shape == source.shape
        counts = torch.bincount(labels.flatten(), minlength=3)
        assert counts.numel() == 3 and (counts > 0).all() and counts.sum() == source.numel()
        ent = local_entropy(source)
        (t0, t1), _ = multiotsu_thresholds(ent, 64)[0][0], None
        assert ent[labels == 0].max() < t0 + 1e-5 and ent[labels == 2].min() > t1 - 1e-5
        assert ent[labels == 1].min() > t0 - 1e-5 and ent[labels == 1].max() < t1 + 1e-5
        masks = region_masks(labels)
        assert masks.shape == (1, 3, *source.shape[-2:]) and masks.dtype == torch.float32
        assert torch.equal(masks.sum(1), torch.ones_like(masks[:, 0]))
        assert torch.equal(masks.argmax(1, keepdim=True), labels)


def test_region_map_is_per_image_in_a_batch_and_uses_the_max_source() -> None:
    pairs = _pairs("MRI-SPECT", 3)
    mri = torch.cat([_tensor(m) for m, _ in pairs])
    func_y = torch.cat([_tensor(f) for _, f in pairs])
    batch = region_map(mri, func_y)
    for k in range(3):
        alone = region_map(mri[k : k + 1], func_y[k : k + 1])
        assert torch.equal(batch[k : k + 1], alone)
    assert torch.equal(batch, entropy_regions(torch.maximum(mri, func_y)))
    assert torch.equal(region_map(mri, func_y, source="mri"), entropy_regions(mri))
    mean = entropy_source_image(mri, func_y, "mean")
    torch.testing.assert_close(mean, (mri + func_y) / 2)


def test_constant_image_is_all_low_and_autocast_is_ignored() -> None:
    assert torch.count_nonzero(entropy_regions(torch.full((1, 1, 20, 20), 0.3))) == 0
    mri, luma = _pairs("MRI-PET", 1)[0]
    m, f = _tensor(mri), _tensor(luma)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = region_map(m, f)
    assert torch.equal(inside, region_map(m, f))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match=r"\(B, 1, H, W\)"):
        local_entropy(torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match="entropy source"):
        region_map(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), source="median")
    with pytest.raises(InputError, match="0 \\(low\\), 1 \\(mid\\) or 2"):
        region_masks(torch.full((1, 1, 4, 4), 3, dtype=torch.int64))
