"""Fusion loss terms and the perceptual feature extractors, on real Harvard MRI-PET crops."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy import ndimage

from EDPSNLib.data.harvard import list_pairs
from EDPSNLib.errors import InputError, WeightsError
from EDPSNLib.network.filters import gaussian_blur
from EDPSNLib.training.datasets import HarvardFusionDataset, epoch_batches
from EDPSNLib.training.losses import (
    LOSS_TERMS,
    FusionLoss,
    LossConfig,
    contrast_loss,
    detail_target,
    gradient_loss,
    luminance,
    max_intensity_loss,
    mean_intensity_loss,
    perceptual_loss,
    qabf_loss,
    sobel_gradients,
    sobel_magnitude,
    ssim_loss,
)
from EDPSNLib.training.perceptual import (
    build_extractor,
    random_conv_extractor,
    vgg16_extractor,
)

#: torchvision VGG-16 ``features`` conv indices and (in, out) channels.
VGG16_CONVS = {
    0: (3, 64),
    2: (64, 64),
    5: (64, 128),
    7: (128, 128),
    10: (128, 256),
    12: (256, 256),
    14: (256, 256),
    17: (256, 512),
    19: (512, 512),
    21: (512, 512),
    24: (512, 512),
    26: (512, 512),
    28: (512, 512),
}


@pytest.fixture(scope="module")
def crops() -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 4 real 64x64 crops: MRI (4, 1, 64, 64) and PET luminance (4, 1, 64, 64)."""
    ds = HarvardFusionDataset(list_pairs("MRI-PET", "train"), crop=64)
    items = [ds[k] for k in epoch_batches(len(ds), 4, seed=3, epoch=0)[0]]
    mri = torch.stack([m for m, _ in items])
    func = torch.stack([f for _, f in items])
    return mri, luminance(func)


def test_sobel_matches_scipy_on_real_image(crops):
    mri, _ = crops
    gx, gy = sobel_gradients(mri)
    img = mri[0, 0].double().numpy()
    # scipy's Sobel is unnormalised (sum of |weights| 8); axis 1 is x, axis 0 is y.
    np.testing.assert_allclose(
        gx[0, 0].numpy(), ndimage.sobel(img, axis=1, mode="nearest") / 8, atol=1e-6
    )
    np.testing.assert_allclose(
        gy[0, 0].numpy(), ndimage.sobel(img, axis=0, mode="nearest") / 8, atol=1e-6
    )


def test_sobel_magnitude_of_ramp_is_slope_and_flat_is_sqrt_eps():
    ramp = torch.arange(16.0).repeat(16, 1)[None, None] * 0.01  # x-slope 0.01 per pixel
    mag = sobel_magnitude(ramp, eps=0.0)
    assert torch.allclose(mag[..., 1:-1, 1:-1], torch.full((14, 14), 0.01), atol=1e-6)
    flat = sobel_magnitude(torch.full((1, 1, 8, 8), 0.3), eps=1e-6)
    assert torch.allclose(flat, torch.full_like(flat, 1e-3))


def test_intensity_losses_zero_at_their_targets_positive_elsewhere(crops):
    a, b = crops
    assert max_intensity_loss(torch.maximum(a, b), a, b) == 0
    assert mean_intensity_loss(0.5 * (a + b), a, b) == 0
    assert max_intensity_loss(0.5 * (a + b), a, b) > 1e-4
    assert mean_intensity_loss(torch.maximum(a, b), a, b) > 1e-4
    # MSE against the max: exactly the mean squared gap to the brighter source.
    f = 0.5 * (a + b)
    assert torch.isclose(max_intensity_loss(f, a, b), ((f - torch.maximum(a, b)) ** 2).mean())


def test_gaussian_blur_matches_scipy_on_real_image(crops):
    mri, _ = crops
    img = mri[:1].double()
    ours = gaussian_blur(img, 2.0)[0, 0].numpy()
    ref = ndimage.gaussian_filter(img[0, 0].numpy(), 2.0, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_detail_target_is_max_plus_darker_highpass(crops):
    a, b = crops
    a, b = a.double(), b.double()
    assert torch.equal(detail_target(a, b, 0.0), torch.maximum(a, b))
    darker = torch.minimum(a, b).numpy()
    highpass = darker - ndimage.gaussian_filter(
        darker, (0, 0, 2.0, 2.0), mode="nearest", truncate=3.0
    )
    expected = torch.maximum(a, b).numpy() + 0.6 * highpass
    np.testing.assert_allclose(detail_target(a, b, 0.6).numpy(), expected, atol=1e-9)
    # The max loss with a gain is zero at its detail target and positive at the plain max.
    target = detail_target(a, b, 0.6)
    assert max_intensity_loss(target, a, b, detail_gain=0.6) < 1e-20
    assert max_intensity_loss(torch.maximum(a, b), a, b, detail_gain=0.6) > 1e-5


def test_detail_target_same_sign_drops_opposing_detail():
    # A bright ring in B (CT skull) over a dark ring in A (MRI): opposite-signed detail.
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ring = (((yy - 16) ** 2 + (xx - 16) ** 2).sqrt() - 9).abs() < 1.5
    b = torch.where(ring, 0.9, 0.2)[None, None]
    a = torch.where(ring, 0.1, 0.5)[None, None]
    plain = detail_target(a, b, 1.0)
    same = detail_target(a, b, 1.0, same_sign=True)
    # The darker source is the ring-shaped dip of A inside B's bright ring: the plain target
    # lowers the ring's brightness (the skull greys), the same-sign target keeps it.
    assert plain[0, 0][ring].mean() < 0.9 - 0.03
    assert same[0, 0][ring].mean() >= 0.9 - 1e-6
    brighter = torch.maximum(a, b)
    assert (same - brighter).abs().max() <= (plain - brighter).abs().max()


def test_gradient_loss_uses_max_of_input_gradients(crops):
    a, b = crops
    f = 0.7 * a + 0.3 * b

    def mag(x: np.ndarray) -> np.ndarray:  # independent reference, image by image
        return np.stack(
            [
                np.hypot(ndimage.sobel(i, 1, mode="nearest"), ndimage.sobel(i, 0, mode="nearest"))
                / 8
                for i in x
            ]
        )

    an, bn, fn = (x[:, 0].double().numpy() for x in (a, b, f))
    eps = 1e-6
    ref = np.abs(
        np.sqrt(mag(fn) ** 2 + eps)
        - np.maximum(np.sqrt(mag(an) ** 2 + eps), np.sqrt(mag(bn) ** 2 + eps))
    ).mean()
    assert gradient_loss(f, a, b, eps).item() == pytest.approx(ref, rel=1e-5)
    assert gradient_loss(f, a, b) == gradient_loss(f, b, a)  # symmetric in the sources
    # F = A with a flat B: the max of the gradients is A's, so the loss vanishes ...
    assert gradient_loss(a, a, torch.zeros_like(a)).item() == pytest.approx(0.0, abs=1e-7)
    # ... but B's edges where A has none are demanded.
    assert gradient_loss(a, a, b) > 1e-3


def test_perceptual_loss_zero_for_identical_and_positive_for_blur(crops):
    a, b = crops
    ex = random_conv_extractor()
    assert perceptual_loss(a, a, a, ex).item() == pytest.approx(0.0, abs=1e-8)
    blurred = F.avg_pool2d(torch.maximum(a, b), 5, 1, 2)
    assert perceptual_loss(blurred, a, b, ex) > perceptual_loss(torch.maximum(a, b), a, b, ex)


def test_fusion_loss_is_the_weighted_sum_and_has_gradients(crops):
    a, b = crops
    cfg = LossConfig(
        w_max_intensity=1.5,
        w_mean_intensity=0.5,
        w_gradient=2.0,
        w_perceptual=0.1,
        w_uptake=3.0,
        w_ssim=0.5,
        w_contrast=4.0,
        w_qabf=0.3,
    )
    loss = FusionLoss(cfg)
    f = (0.5 * (a + b)).requires_grad_(True)
    total, terms = loss(f, a, b)
    assert set(terms) == set(LOSS_TERMS) and all(
        terms[k] > 0 for k in LOSS_TERMS if k != "mean_intensity"
    )
    weights = (1.5, 0.5, 2.0, 0.1, 3.0, 0.5, 4.0, 0.3)
    assert torch.isclose(total, sum(w * terms[k] for w, k in zip(weights, LOSS_TERMS)))
    total.backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    no_perc, terms0 = FusionLoss(LossConfig(w_perceptual=0.0))(f, a, b)
    assert terms0["perceptual"] == 0 and no_perc > 0


def test_loss_config_round_trip_and_rejects_negative_weights():
    cfg = LossConfig(w_gradient=3.0)
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="negative"):
        LossConfig(w_perceptual=-1.0)
    with pytest.raises(InputError, match="Unknown loss setting"):
        LossConfig.from_dict({"w_psnr": 1.0})
    with pytest.raises(InputError, match="detail_sigma"):
        LossConfig(detail_sigma=0.0)
    detail = LossConfig(detail_gain=0.6, detail_same_sign=True)
    assert LossConfig.from_dict(detail.to_dict()) == detail


def test_loss_rejects_mismatched_shapes(crops):
    a, b = crops
    with pytest.raises(ValueError, match="grey batches"):
        max_intensity_loss(a, a, b[:, :, :32])


def test_random_conv_fallback_is_deterministic_and_seeded(crops):
    a, _ = crops
    first, second = random_conv_extractor(), random_conv_extractor()
    assert first.identifier == "random-conv-seed0" == build_extractor(None).identifier
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q) and not p.requires_grad
    assert all(torch.equal(x, y) for x, y in zip(first(a), second(a)))
    other = random_conv_extractor(seed=1)
    assert not torch.equal(next(other.parameters()), next(first.parameters()))
    # zero-mean filters: a flat image gives no response at any stage
    assert all(f.abs().max() < 1e-5 for f in first(torch.full((1, 1, 32, 32), 0.6)))
    first.train()
    assert not first.training  # stays a fixed prior


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    """A randomly initialised VGG-16 ``features`` state dict with torchvision key names."""
    gen = torch.Generator().manual_seed(5)
    state = {}
    for idx, (cin, cout) in VGG16_CONVS.items():
        state[f"features.{idx}.weight"] = (
            torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        )
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=gen) * 0.01
    state["classifier.6.bias"] = torch.zeros(1000)  # classifier keys are ignored
    return state


def test_vgg16_loads_torchvision_state_dict_pth_and_safetensors(tmp_path, vgg_state, crops):
    a, _ = crops
    pth, st = tmp_path / "vgg16.pth", tmp_path / "vgg16.safetensors"
    torch.save(vgg_state, pth)
    save_file(vgg_state, str(st))
    ex_pth, ex_st = vgg16_extractor(pth), vgg16_extractor(st)
    assert ex_pth.identifier == "vgg16:" + hashlib.sha256(pth.read_bytes()).hexdigest()
    assert build_extractor(st).identifier == ex_st.identifier != ex_pth.identifier
    feats = ex_pth(a)
    assert [f.shape[1:] for f in feats] == [(64, 64, 64), (128, 32, 32), (256, 16, 16)]
    assert all(torch.equal(x, y) for x, y in zip(feats, ex_st(a)))
    # relu1_2 by hand from the state dict, on ImageNet-normalised grey-to-RGB input
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (a.repeat(1, 3, 1, 1) - mean) / std
    x = F.relu(F.conv2d(x, vgg_state["features.0.weight"], vgg_state["features.0.bias"], padding=1))
    x = F.relu(F.conv2d(x, vgg_state["features.2.weight"], vgg_state["features.2.bias"], padding=1))
    assert torch.allclose(feats[0], x, atol=1e-5)
    # a bare ``features`` state dict (keys without the prefix) works too
    bare = tmp_path / "features.pth"
    torch.save(
        {k.removeprefix("features."): v for k, v in vgg_state.items() if k.startswith("features.")},
        bare,
    )
    assert torch.equal(vgg16_extractor(bare)(a)[2], feats[2])


class _NotATensor:
    """A pickled object that ``weights_only`` loading must refuse."""


def test_vgg16_rejects_bad_files(tmp_path, vgg_state):
    with pytest.raises(WeightsError, match="not found"):
        vgg16_extractor(tmp_path / "missing.pth")
    wrong = dict(vgg_state)
    wrong["features.2.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="not a VGG-16"):
        vgg16_extractor(tmp_path / "wrong.pth")
    torch.save({"features.0.weight": _NotATensor()}, tmp_path / "pickle.pth")
    with pytest.raises(WeightsError, match="Cannot read"):
        vgg16_extractor(tmp_path / "pickle.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(WeightsError, match="Cannot read"):
        vgg16_extractor(tmp_path / "cut.safetensors")


def test_ssim_loss_is_the_ssim_metric_on_real_crops(crops):
    """1 - metric/2 with the evaluator's SSIM (0..255, same window), and a gradient that
    raises the metric."""
    from EDPSNLib.metrics.single import ssim

    mri, pet = crops
    fused = (0.7 * torch.maximum(mri, pet) + 0.3 * mri).double().requires_grad_(True)
    loss = ssim_loss(fused, mri.double(), pet.double())
    to255 = [255.0 * t.detach()[:, 0].numpy() for t in (mri.double(), pet.double(), fused)]
    per_image = [float(ssim(a, b, f)) for a, b, f in zip(*to255)]
    assert loss.item() == pytest.approx(1.0 - np.mean(per_image) / 2.0, abs=1e-6)
    loss.backward()
    stepped = (fused - 0.5 * fused.grad / fused.grad.abs().max()).detach().clamp(0, 1)
    assert ssim_loss(stepped, mri.double(), pet.double()) < loss
    assert ssim_loss(mri, mri, mri).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_term_is_off_by_default_and_weighted_when_on(crops):
    mri, pet = crops
    fused = torch.maximum(mri, pet)
    off = FusionLoss(LossConfig(w_perceptual=0))(fused, mri, pet)
    on = FusionLoss(LossConfig(w_perceptual=0, w_ssim=2.0))(fused, mri, pet)
    assert off[1]["ssim"].item() == 0.0 and set(on[1]) == set(LOSS_TERMS)
    assert on[0].item() == pytest.approx(off[0].item() + 2.0 * ssim_loss(fused, mri, pet).item())


def test_contrast_term_counts_only_a_flatter_image_than_the_max(crops):
    mri, pet = crops
    top = torch.maximum(mri, pet)
    assert contrast_loss(top, mri, pet).item() == 0.0
    stretched = (top - top.mean()) * 1.5 + top.mean()  # more contrast than the max: no cost
    assert contrast_loss(stretched, mri, pet).item() == 0.0
    mean = 0.5 * (mri + pet)
    sd = lambda x: x.flatten(1).std(dim=1, correction=0)  # noqa: E731
    want = torch.relu(sd(top) - sd(mean)).mean()
    assert want > 0 and contrast_loss(mean, mri, pet).item() == pytest.approx(want.item(), rel=1e-5)
    # its gradient raises the flat image's contrast
    f = mean.clone().requires_grad_(True)
    contrast_loss(f, mri, pet).backward()
    stepped = (f - 0.1 * f.grad / f.grad.abs().max()).detach()
    assert contrast_loss(stepped, mri, pet) < contrast_loss(mean, mri, pet)
    # it is per image: a contrasted image does not pay for a flat one
    pair = torch.cat((top[:1], mean[1:2]))
    assert contrast_loss(pair, mri[:2], pet[:2]) == pytest.approx(
        contrast_loss(mean[1:2], mri[1:2], pet[1:2]).item() / 2, rel=1e-5
    )


def test_qabf_term_is_the_qabf_metric_and_its_gradient_raises_it(crops):
    from EDPSNLib.metrics.single import qabf

    mri, pet = crops
    to255 = lambda t: 255.0 * t.detach()[:, 0].double().numpy()  # noqa: E731
    for fused in (torch.maximum(mri, pet), 0.5 * (mri + pet), mri):
        metric = np.mean([qabf(a, b, f) for a, b, f in zip(to255(mri), to255(pet), to255(fused))])
        assert 1.0 - qabf_loss(fused, mri, pet).item() == pytest.approx(metric, abs=2e-3)
    f = (0.5 * (mri + pet)).requires_grad_(True)
    loss = qabf_loss(f, mri, pet)
    loss.backward()
    assert torch.isfinite(f.grad).all()
    stepped = (f - 0.02 * f.grad / f.grad.abs().max()).detach()
    assert qabf_loss(stepped, mri, pet) < loss
    off = FusionLoss(LossConfig(w_perceptual=0))(mri, mri, pet)[1]["qabf"]
    assert off.item() == 0.0  # off by default: not even computed
