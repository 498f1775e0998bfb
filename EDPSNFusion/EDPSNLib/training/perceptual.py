"""Frozen feature extractors for the perceptual loss: VGG-16 from a local file, or a seeded fallback.

ImageNet weights cannot be downloaded here, so two extractors exist:

* ``vgg16:<sha256>``: the first three stages of VGG-16 (relu1_2, relu2_2, relu3_3), built in
  plain torch (torchvision is not needed) and filled from a torchvision-format state dict the
  user supplies (``.pth`` read with ``torch.load(weights_only=True)``, or ``.safetensors``).
* ``random-conv-seed0``: the fallback, needing no file. A fixed three-stage conv net whose
  weights are drawn from a seeded generator and made zero-mean per filter. Random conv
  features are a known usable perceptual prior (Ulyanov et al., "Deep Image Prior";
  He et al., "A powerful generative model using random weights for the deep image
  representation", NeurIPS 2016); zero-mean filters make every feature respond to structure
  (edges, texture) and not to flat intensity, which the MSE term already covers.

The extractor's ``identifier`` is what training writes into the weights' metadata.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from EDPSNLib.errors import WeightsError

#: Identifier of the fallback extractor (``random-conv-seed<seed>``).
FALLBACK_SEED = 0
#: (in, out) channels of each conv in each stage of the fallback net; 2x2 average pooling between
#: stages. Narrow on purpose: about 2.4k multiply-adds per pixel, a fifth of the network's cost.
_FALLBACK_STAGES = (((1, 8), (8, 8)), ((8, 16), (16, 16)), ((16, 32), (32, 32)))
#: VGG-16 ``features`` layout up to relu3_3: (index, in, out) of each conv; max-pool at 4 and 9.
_VGG_CONVS = (
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
)
_VGG_STAGE_ENDS = (4, 9, 16)  # slices features[0:4], [4:9], [9:16] end at relu1_2, relu2_2, relu3_3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureExtractor(nn.Module):
    """A frozen multi-stage extractor: ``forward(x (B,1,H,W) on [0,1]) -> list of feature maps``."""

    def __init__(self, stages: nn.ModuleList, identifier: str, rgb_normalise: bool) -> None:
        super().__init__()
        self.stages = stages
        self.identifier = identifier
        self.rgb_normalise = rgb_normalise
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Always stays in eval mode: the extractor is a fixed prior, never trained."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, H, W) on [0, 1] -> one feature map (B, C_s, H_s, W_s) per stage."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"Expected a grey image batch (B, 1, H, W), got {tuple(x.shape)}")
        if self.rgb_normalise:  # VGG was trained on ImageNet-normalised RGB
            x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _fallback_conv(cin: int, cout: int, gen: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="replicate", bias=False)
    w = torch.randn(cout, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5  # He scale
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)  # zero-mean: no response to flat intensity
    conv.weight.data.copy_(w)
    return conv


def random_conv_extractor(seed: int = FALLBACK_SEED) -> FeatureExtractor:
    """The download-free fallback: a seeded, zero-mean random 3-stage conv net (``random-conv-seed<seed>``)."""
    gen = torch.Generator().manual_seed(seed)
    stages = nn.ModuleList()
    for i, convs in enumerate(_FALLBACK_STAGES):
        layers: list[nn.Module] = [nn.AvgPool2d(2)] if i else []
        for cin, cout in convs:
            layers += [_fallback_conv(cin, cout, gen), nn.ReLU()]
        stages.append(nn.Sequential(*layers))
    return FeatureExtractor(stages, f"random-conv-seed{seed}", rgb_normalise=False)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or pickled objects refused by weights_only
        raise WeightsError(
            f"Cannot read VGG-16 weights {path}: {exc}. Give a torchvision-format VGG-16 state "
            "dict saved as .pth (tensors only) or .safetensors, or leave the option out to use "
            "the built-in fallback."
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict; save model.state_dict() instead.")
    return state


def vgg16_extractor(path: str | Path) -> FeatureExtractor:
    """VGG-16 up to relu3_3 from a torchvision-format state dict file (``vgg16:<sha256>``).

    Keys ``features.<i>.weight/bias`` (a whole ``vgg16().state_dict()``) or ``<i>.weight/bias``
    (a ``features`` state dict) are accepted; classifier keys are ignored.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"VGG-16 weights file {path} not found; check the path.")
    state = _read_state_dict(path)
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    layers: dict[int, nn.Module] = {}
    for idx, cin, cout in _VGG_CONVS:
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        for name in ("weight", "bias"):
            key = f"{prefix}{idx}.{name}"
            tensor = state.get(key)
            expected = getattr(conv, name).shape
            if tensor is None or tuple(tensor.shape) != tuple(expected):
                got = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
                raise WeightsError(
                    f"{path} is not a VGG-16 state dict: key '{key}' is {got}, expected shape "
                    f"{tuple(expected)}. Use torchvision's VGG-16 (not VGG-16-BN or VGG-19) weights."
                )
            getattr(conv, name).data.copy_(tensor.float())
        layers[idx] = conv
    seq = [layers.get(i, nn.MaxPool2d(2) if i in (4, 9) else nn.ReLU()) for i in range(16)]
    starts = (0, *_VGG_STAGE_ENDS[:-1])
    stages = nn.ModuleList(nn.Sequential(*seq[a:b]) for a, b in zip(starts, _VGG_STAGE_ENDS))
    return FeatureExtractor(stages, f"vgg16:{file_sha256(path)}", rgb_normalise=True)


def build_extractor(vgg_weights: str | Path | None = None) -> FeatureExtractor:
    """VGG-16 from ``vgg_weights`` when given, else the seeded random-conv fallback."""
    return vgg16_extractor(vgg_weights) if vgg_weights else random_conv_extractor()
