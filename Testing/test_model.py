"""EDPSN network (config.py, blocks.py, model.py) on real Harvard pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError
from EDPSNLib.models.lookup import default_weights_path
from EDPSNLib.models.weights import load_weights, read_metadata
from EDPSNLib.names import PAIR_NAMES
from EDPSNLib.network.color import rgb_to_ycbcr
from EDPSNLib.network.config import ARCHITECTURE, EDPSNConfig
from EDPSNLib.network.edge import edge_enhance
from EDPSNLib.network.entropy import region_map
from EDPSNLib.network.filters import gaussian_blur
from EDPSNLib.network.model import EDPSN


def _batch(pair: str, count: int = 2, crop: tuple[int, int] | None = None):
    """Real test pairs as (MRI (N, 1, H, W), functional (N, C, H, W)) float32 on [0, 1]."""
    mris, funcs = [], []
    for p in list_pairs(pair, "test")[:count]:
        m, f = load_pair(p)
        mris.append(m[None])
        funcs.append(f[None] if f.ndim == 2 else np.moveaxis(f, -1, 0))
    mri = torch.from_numpy(np.stack(mris).astype(np.float32) / 255)
    func = torch.from_numpy(np.stack(funcs).astype(np.float32) / 255)
    if crop is not None:
        (h, w), top, left = crop, 70, 60
        mri, func = (
            mri[..., top : top + h, left : left + w],
            func[..., top : top + h, left : left + w],
        )
    return mri.contiguous(), func.contiguous()


def _model(seed: int = 0, **changes) -> EDPSN:
    torch.manual_seed(seed)
    return EDPSN(EDPSNConfig(**changes)).eval()


@pytest.mark.parametrize(
    ("pair", "channels", "crop"),
    [("MRI-CT", 1, None), ("MRI-PET", 3, None), ("MRI-SPECT", 3, (97, 131))],
)
def test_forward_shapes_and_range(pair: str, channels: int, crop) -> None:
    mri, func = _batch(pair, 2, crop)
    with torch.no_grad():
        fused = _model()(mri, func)
    assert fused.shape == (2, channels, *mri.shape[-2:]) and fused.dtype == torch.float32
    assert fused.min() >= 0 and fused.max() <= 1 and torch.isfinite(fused).all()
    assert fused.std() > 0.05  # an image, not a constant


def test_fuse_luma_outputs() -> None:
    mri, func = _batch("MRI-PET", 2, (97, 131))
    model = _model()
    y, cbcr = model.preprocess_functional(func)
    with torch.no_grad():
        out = model.fuse_luma(mri, y)
    assert out["fused"].shape == (2, 1, 97, 131)
    assert out["features"].shape == (2, model.config.channels, 97, 131)
    assert out["regions"].dtype == torch.int64 and out["regions"].shape == (2, 1, 97, 131)
    assert set(torch.unique(out["regions"]).tolist()) <= {0, 1, 2}
    assert torch.equal(out["regions"], region_map(mri, y))
    w = out["blend_weight"]
    assert w.min() > 0 and w.max() < 1
    # The blend head: fused = w * mri + (1 - w) * y + bounded residual.
    blend = w * mri + (1 - w) * y
    assert (out["fused"] - blend).abs().max() <= model.config.residual_scale + 1e-6


def test_detail_head_lays_one_inputs_detail_over_the_others_base() -> None:
    mri, func = _batch("MRI-PET", 2, (64, 80))
    model = _model(head="detail")
    y, _ = model.preprocess_functional(func)
    with torch.no_grad():
        out = model.fuse_luma(mri, y)
        assert (out["fused"] == 0).sum() >= ((mri == 0) & (y == 0)).sum()  # black stays black
        # Fix the head's outputs through its biases: base of PET (w -> 0), no residual, MRI
        # detail gain 1 (logit 0), PET detail gain 2 sigmoid(b).
        head = model.head
        head.out.weight.zero_()
        for bias, expected_gain in ((-30.0, 0.0), (0.0, 1.0)):
            head.out.bias.copy_(torch.tensor([-30.0, 0.0, 0.0, bias]))
            fused = model.fuse_luma(mri, y)["fused"]
            base = gaussian_blur(y, model.config.head_sigma)
            expected = base + (mri - gaussian_blur(mri, model.config.head_sigma))
            expected = expected + expected_gain * (y - base)
            torch.testing.assert_close(fused, expected.clamp(0, 1), atol=1e-5, rtol=0)
    # With PET detail gain 1 that is the PET itself with the MRI's detail laid over it.
    torch.testing.assert_close(
        fused, (y + mri - gaussian_blur(mri, 2.0)).clamp(0, 1), atol=1e-5, rtol=0
    )
    with pytest.raises(InputError, match="head_sigma"):
        EDPSNConfig(head="detail", head_sigma=0)


def test_mix_head_mixes_the_blend_with_a_decoder_output() -> None:
    """fused = (1 - g) * blend + g * sigmoid(d) * support, checked exactly through the biases;
    black stays black; a fresh head gives the decoder 0.12; gradients reach the decoder."""
    mri, func = _batch("MRI-PET", 2, (64, 80))
    model = _model(head="mix").train()
    y, _ = model.preprocess_functional(func)
    out = model.fuse_luma(mri, y)
    share = model.head.decoder_share(out["features"])
    torch.testing.assert_close(share.mean(), torch.tensor(0.1192), atol=0.02, rtol=0)
    out["fused"].mean().backward()
    assert model.head.out.weight.grad[3].abs().sum() > 0  # the decoder channel learns
    with torch.no_grad():
        assert (out["fused"] == 0).sum() >= ((mri == 0) & (y == 0)).sum()
        head = model.head
        head.out.weight.zero_()
        # MRI share of the blend 1 (logit 30), no residual, decoder share g, decoder value
        # sigmoid(0) = 0.5: fused = (1 - g) * mri + g * 0.5 * support.
        for logit in (-30.0, 0.0, 30.0):
            head.out.bias.copy_(torch.tensor([30.0, 0.0, logit, 0.0]))
            fused = model.fuse_luma(mri, y)["fused"]
            g = torch.sigmoid(torch.tensor(logit))
            support = (torch.maximum(mri, y) / 0.05).clamp(max=1)
            torch.testing.assert_close(fused, (1 - g) * mri + g * 0.5 * support, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="mix"):
            _model().head.decoder_share(out["features"])


def test_preprocess_functional_enhanced_y_and_chroma() -> None:
    _, pet = _batch("MRI-PET", 1)
    _, ct = _batch("MRI-CT", 1)
    model = _model()
    y, cbcr = model.preprocess_functional(pet)
    expected = rgb_to_ycbcr(edge_enhance(pet, model.config.eem_weight))
    torch.testing.assert_close(y, expected[:, :1])
    torch.testing.assert_close(cbcr, expected[:, 1:])
    y_ct, none = model.preprocess_functional(ct)
    assert none is None
    torch.testing.assert_close(y_ct, edge_enhance(ct, model.config.eem_weight))
    y_plain, _ = _model(use_eem=False).preprocess_functional(pet)
    torch.testing.assert_close(y_plain, rgb_to_ycbcr(pet)[:, :1])


def test_rgb_output_carries_the_fused_luma_and_the_functional_chroma() -> None:
    mri, pet = _batch("MRI-PET", 1)
    model = _model()
    with torch.no_grad():
        rgb = model(mri, pet)
        y, cbcr = model.preprocess_functional(pet)
        fused = model.fuse_luma(mri, y)["fused"]
    inside = ((rgb > 0) & (rgb < 1)).all(1, keepdim=True)
    ycc = rgb_to_ycbcr(rgb)
    torch.testing.assert_close(ycc[:, :1][inside], fused[inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(ycc[:, 1:2][inside], cbcr[:, :1][inside], atol=1e-5, rtol=0)
    assert inside.float().mean() > 0.3


def test_gradients_reach_every_parameter_on_a_real_crop() -> None:
    mri, pet = _batch("MRI-PET", 2, (64, 64))
    model = _model().train()
    y, _ = model.preprocess_functional(pet)
    out = model.fuse_luma(mri, y)
    target = torch.maximum(mri, y)
    loss = torch.mean((out["fused"] - target) ** 2) + out["features"].square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "switches",
    [
        {"use_eem": False},
        {"use_ed": False},
        {"use_dps": False},
        {"use_ed": False, "use_dps": False},
        {"use_eem": False, "use_ed": False, "use_dps": False},
        {"head": "direct"},
        {"head": "mix"},
        {"dps_gate": True},
        {"dps_gate": True, "use_ed": False},
        {"dps_gate": True, "use_dps": False},
    ],
)
def test_switch_variants_run(switches: dict) -> None:
    mri, pet = _batch("MRI-PET", 2, (48, 56))
    model = _model(**switches)
    with torch.no_grad():
        fused = model(mri, pet)
    assert fused.shape == pet.shape and 0 <= fused.min() and fused.max() <= 1
    if not model.config.use_dps:
        assert len(model.paths) == 1 and model.paths[0].depth == max(model.config.path_depths)


def test_regions_drive_the_paths_only_when_ed_is_on() -> None:
    mri, pet = _batch("MRI-PET", 1, (64, 64))
    for use_ed, use_dps in ((True, True), (True, False), (False, True)):
        model = _model(use_ed=use_ed, use_dps=use_dps)
        y, _ = model.preprocess_functional(pet)
        with torch.no_grad():
            a = model.fuse_luma(mri, y)["fused"]
            b = model.fuse_luma(mri, y, torch.zeros_like(mri, dtype=torch.int64))["fused"]
        assert torch.equal(a, b) != use_ed


def test_config_round_trip_and_rejections() -> None:
    cfg = EDPSNConfig(channels=12, path_depths=(1, 1, 2), use_dps=False, eem_weight=0.3)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert EDPSNConfig.from_dict(data) == cfg
    assert data["path_depths"] == [1, 1, 2]
    assert EDPSNConfig.from_dict(EDPSNConfig().to_dict()) == EDPSNConfig()
    with pytest.raises(InputError, match="colour_mode"):
        EDPSNConfig.from_dict({**data, "colour_mode": "rgb"})
    with pytest.raises(InputError, match="path_depths"):
        EDPSNConfig(path_depths=(1, 2))
    with pytest.raises(InputError, match="head"):
        EDPSNConfig(head="softmax")


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_the_shipped_weights_are_for_the_network_this_code_builds(pair) -> None:
    # A change of architecture without new default weights (or the reverse) fails here.
    path = default_weights_path(pair)
    assert read_metadata(path)["architecture"] == EDPSN.architecture == ARCHITECTURE
    model, meta = load_weights(path, expected_pair=pair)
    assert isinstance(model, EDPSN) and EDPSNConfig.from_dict(meta["config"]) == model.config
    mri, func = _batch(pair, 1, (48, 48))
    with torch.no_grad():
        fused = model(mri, func)
    assert fused.shape == func.shape and torch.isfinite(fused).all()


def test_deterministic_on_cpu_with_a_fixed_seed() -> None:
    mri, pet = _batch("MRI-SPECT", 1, (80, 80))
    a, b = _model(seed=3), _model(seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with torch.no_grad():
        assert torch.equal(a(mri, pet), b(mri, pet))
        assert torch.equal(a(mri, pet), a(mri, pet))
    assert not torch.equal(_model(seed=4).shallow.body[0].weight, a.shallow.body[0].weight)


def test_autocast_bfloat16_on_cpu() -> None:
    mri, pet = _batch("MRI-PET", 1, (64, 72))
    model = _model()
    with torch.no_grad():
        ref = model(mri, pet)
        y, _ = model.preprocess_functional(pet)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(mri, pet)
            regions = model.fuse_luma(mri, y)["regions"]
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert (low - ref).abs().mean() < 0.02
    assert torch.equal(regions, region_map(mri, y))


def test_bad_inputs_are_refused_with_advice() -> None:
    mri, pet = _batch("MRI-PET", 1, (32, 32))
    model = _model()
    with pytest.raises(InputError, match="resample"):
        model(mri, pet[..., :31])
    with pytest.raises(InputError, match="divide by 255"):
        model((mri * 255).to(torch.uint8), pet)
    with pytest.raises(InputError, match=r"\(B, 1\|3, H, W\)"):
        model(mri, pet[:, :2])
    with pytest.raises(InputError, match=r"MRI must be"):
        model(pet, pet)


def test_dps_gate_starts_at_the_regions_and_learns() -> None:
    """A fresh gate weighs each pixel's own path 0.96 (softmax of 4 x its mask); the other
    layers are those of the seeded network without it; gradients reach the gate."""
    mri, pet = _batch("MRI-PET", 2, (64, 64))
    plain, gated = _model(), _model(dps_gate=True).train()
    assert all(
        torch.equal(plain.state_dict()[k], v)
        for k, v in gated.state_dict().items()
        if not k.startswith("gate.")
    )
    y, _ = gated.preprocess_functional(pet)
    out = gated.fuse_luma(mri, y)
    gates, regions = out["path_gates"], out["regions"]
    assert gates.shape == (2, 3, 64, 64) and "path_gates" not in plain.fuse_luma(mri, y)
    own = gates.gather(1, regions)
    torch.testing.assert_close(own, torch.full_like(own, 0.9647), atol=1e-4, rtol=0)
    out["fused"].mean().backward()
    assert gated.gate.weight.grad.abs().sum() > 0
    assert EDPSNConfig.from_dict(gated.config.to_dict()).dps_gate


def test_compute_and_size_budget() -> None:
    model = _model()
    mri, func = torch.rand(1, 1, 256, 256), torch.rand(1, 3, 256, 256)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(mri, func)
    flops = counter.get_total_flops()
    assert 0.3e9 < flops <= 3e9
    size_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert size_bytes < 4 * 2**20
    for variant in (_model(dps_gate=True), _model(head="mix")):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            variant(mri, func)
        assert counter.get_total_flops() <= 3e9


def test_float64_inputs_give_the_float32_result() -> None:
    mri, pet = _batch("MRI-CT", 1, (40, 52))
    model = _model()
    with torch.no_grad():
        out64 = model(mri.double(), pet.double())
        out32 = model(mri, pet)
    assert out64.dtype == torch.float32
    torch.testing.assert_close(out64, out32, atol=1e-5, rtol=0)


def test_blend_head_keeps_black_background_black() -> None:
    """Where both inputs are 0 the fused image is exactly 0 (no grey veil), for any weights."""
    torch.manual_seed(3)
    model = EDPSN().eval()
    for p in model.head.parameters():
        p.data.normal_(0, 1.0)
    mri = torch.rand(1, 1, 40, 40)
    func = torch.rand(1, 1, 40, 40)
    mri[..., :10, :] = 0
    func[..., :10, :] = 0
    with torch.no_grad():
        fused = model(mri, func)
    assert fused[..., :10, :].abs().max() == 0
    assert fused[..., 12:, :].abs().max() > 0


def test_blend_head_without_its_correction_stays_between_the_inputs() -> None:
    """residual_scale 0: at every pixel min(MRI, Y) <= fused <= max(MRI, Y), for any weights;
    the default correction leaves that range (what lets a network lose PSNR to the max)."""
    from EDPSNLib.network.blocks import FusionHead

    torch.manual_seed(5)
    features, mri, y = torch.randn(2, 6, 24, 24), torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24)
    low, high = torch.minimum(mri, y), torch.maximum(mri, y)
    outside = []
    for scale in (0.0, 0.2):
        head = FusionHead(6, 8, "blend", residual_scale=scale)
        for p in head.parameters():
            p.data.normal_(0, 1.0)
        with torch.no_grad():
            fused, _ = head(features, mri, y)
        outside.append(((fused < low - 1e-6) | (fused > high + 1e-6)).float().mean().item())
    assert outside[0] == 0 and outside[1] > 0.1
    with pytest.raises(InputError, match="residual_scale"):
        EDPSNConfig(residual_scale=-0.1)
