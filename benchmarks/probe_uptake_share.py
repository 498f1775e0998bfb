"""Where a network loses uptake: its uptake loss and the MRI's share of the blend on uptake pixels.

For weights with a ``blend`` or ``detail`` head, on one split (a fold's validation case by
default; never tune on test), no contrast shift: the uptake loss of the fused luminance and of
the coloured result (grey levels, ``metrics.uptake``), and the mean MRI weight w of the head on
the pixels where the functional luminance exceeds the MRI by more than 10 grey levels, and
elsewhere. A share near 1 on uptake pixels means the head mixes the MRI's darker base into the
uptake. Run:

    .venv/bin/python benchmarks/probe_uptake_share.py MRI-SPECT \\
        benchmarks/checkpoints/detail60/MRI-SPECT/fold0-seed0/EDPSN_MRI-SPECT.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pairs
from EDPSNLib.metrics.uptake import UPTAKE_MARGIN, uptake_loss
from EDPSNLib.models.weights import load_weights
from EDPSNLib.network.color import rgb_to_ycbcr


def main() -> None:
    """Print the four figures for one weights file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair", choices=[p for p in PAIR_NAMES if p != "MRI-CT"])
    ap.add_argument("weights")
    ap.add_argument("--split", default="case-fold-0/val", help="never a test split")
    ap.add_argument("--stride", type=int, default=3, help="every Nth slice")
    args = ap.parse_args()
    model = load_weights(args.weights, expected_pair=args.pair)[0]
    mri, func = load_pairs(list_pairs(args.pair, args.split)[:: args.stride])
    m = torch.from_numpy(mri / 255.0).float()[:, None]
    f = torch.from_numpy(func / 255.0).float().permute(0, 3, 1, 2)
    with torch.no_grad():
        out = model.fuse_luma(m, model.preprocess_functional(f)[0])
        rgb = model(m, f)
    a, b = mri.astype(np.float64), func.astype(np.float64)
    luma = out["fused"][:, 0].numpy() * 255
    colour = rgb.permute(0, 2, 3, 1).numpy() * 255
    share = out["blend_weight"][:, 0].numpy()
    uptake = rgb_to_ycbcr(f)[:, 0].numpy() * 255 - a > UPTAKE_MARGIN
    print(f"{args.pair} {args.split}, every {args.stride}. slice ({len(mri)} pairs)")
    print(f"uptake loss, fused luminance: {np.nanmean(uptake_loss(a, b, luma)):.1f}")
    print(f"uptake loss, coloured result: {np.nanmean(uptake_loss(a, b, colour)):.1f}")
    print(f"MRI share on uptake pixels ({uptake.mean():.0%} of all): {share[uptake].mean():.2f}")
    print(f"MRI share elsewhere: {share[~uptake].mean():.2f}")


if __name__ == "__main__":
    main()
