"""How much of the fused image a ``mix``-head network draws with its decoder (FusionHead "mix").

For each fold's weights and that fold's images of one part (``val`` by default), prints the
decoder share g (the weight of the decoded luminance against the blend) over the pixels with
signal (max(MRI, functional luminance) above 0.05, where the decoder is not faded out): its
mean, 95th percentile and maximum.

Run (docs/protocol.md, section "A decoder beside the blend head"):
    .venv/bin/python benchmarks/decoder_share.py --pair MRI-PET --folds 0 \
        --weights "benchmarks/checkpoints/uptake-mean25-mix/{pair}/fold{fold}-seed0/EDPSN_{pair}.safetensors"
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.models.weights import load_weights
from EDPSNLib.network.blocks import MIX_SUPPORT
from EDPSNLib.training.datasets import to_tensor


def decoder_shares(
    weights: str, pair: str, split: str, stride: int = 1, batch: int = 8
) -> np.ndarray:
    """The decoder share g on every signal pixel of every stride-th image of the split."""
    model, _ = load_weights(weights)
    model.eval()
    mri_all, func_all = load_pairs(list_pairs(pair, split)[::stride])
    shares = []
    with torch.no_grad():
        for start in range(0, len(mri_all), batch):
            mri = torch.stack([to_tensor(x) for x in mri_all[start : start + batch]])
            func = torch.stack([to_tensor(x) for x in func_all[start : start + batch]])
            y, _ = model.preprocess_functional(func)
            out = model.fuse_luma(mri, y)
            g = model.head.decoder_share(out["features"])
            shares.append(g[torch.maximum(mri, y) > MIX_SUPPORT].numpy())
    return np.concatenate(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="MRI-PET")
    parser.add_argument("--folds", default="0", help="comma-separated fold numbers")
    parser.add_argument("--part", default="val", help="val, test or train")
    parser.add_argument("--stride", type=int, default=1, help="every stride-th image")
    parser.add_argument("--weights", required=True, help="pattern with {pair} and {fold}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| pair | fold | images | share mean | share p95 | share max |")
    print("|---|---:|---:|---:|---:|---:|")
    for fold in (int(f) for f in args.folds.split(",")):
        split = f"case-fold-{fold}/{args.part}"
        weights = args.weights.format(pair=args.pair, fold=fold)
        g = decoder_shares(weights, args.pair, split, args.stride)
        n = len(list_pairs(args.pair, split)[:: args.stride])
        print(
            f"| {args.pair} | {fold} | {n} | {g.mean():.4f} | {np.quantile(g, 0.95):.4f} | "
            f"{g.max():.4f} |"
        )


if __name__ == "__main__":
    main()
