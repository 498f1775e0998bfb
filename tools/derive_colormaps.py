"""Derive the Harvard atlas PET and SPECT colour maps from the training images.

The atlas renders PET/SPECT through a small palette (about 130 colours). Ordering the
palette by nearest-neighbour chaining from black recovers the colour map as a 1-D curve;
scalar PET/SPECT volumes are then rendered with it so the network sees what it learned.

Run: .venv/bin/python tools/derive_colormaps.py   (rewrites EDPSNLib/fusion/colormap_data.py)
"""

from __future__ import annotations

import numpy as np

from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.paths import repo_root

MIN_COUNT = 20  # palette colours seen fewer times are anti-aliasing/JPEG noise
MAX_STEP = 120.0  # a jump larger than this ends the curve (colours beyond are outliers)


def palette_curve(pair: str) -> np.ndarray:
    """The ordered palette (K, 3) uint8 of a pair's functional images (train split only)."""
    _, func = load_pairs(list_pairs(pair, "train"))
    colours, counts = np.unique(func.reshape(-1, 3), axis=0, return_counts=True)
    pal = colours[counts >= MIN_COUNT].astype(np.float64)
    order = [int(np.argmin(pal.sum(1)))]
    left = np.ones(len(pal), bool)
    left[order[0]] = False
    while left.any():
        idx = np.flatnonzero(left)
        dist = np.linalg.norm(pal[idx] - pal[order[-1]], axis=1)
        if dist.min() > MAX_STEP:
            break
        order.append(int(idx[np.argmin(dist)]))
        left[order[-1]] = False
    return pal[order].astype(np.uint8)


def main() -> None:
    lines = [
        '"""Harvard atlas colour maps, derived by tools/derive_colormaps.py; do not edit."""',
        "",
        "# fmt: off",
    ]
    for pair, const in (("MRI-PET", "HARVARD_PET"), ("MRI-SPECT", "HARVARD_SPECT")):
        curve = palette_curve(pair)
        print(f"{pair}: {len(curve)} colours")
        lines.append(f"{const} = {curve.tolist()}")
    lines.append("# fmt: on")
    out = repo_root() / "EDPSNFusion" / "EDPSNLib" / "colormap_data.py"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
