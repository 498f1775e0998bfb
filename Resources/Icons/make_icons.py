"""Draw the extension and module icons (128x128 PNG); rerun to regenerate them.

    python Resources/Icons/make_icons.py

A grey brain-like disk (MRI) with a warm PET-like hot spot fused onto it; the Fusion
icon splits the disk into its two modalities, the Training icon adds a falling loss curve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
SCALE = 4  # draw at 4x and downsample: cheap anti-aliasing
ROOT = Path(__file__).resolve().parents[2]
TARGETS = {
    "extension": ROOT / "Resources" / "Icons" / "EDPSN.png",
    "fusion": ROOT / "EDPSNFusion" / "Resources" / "Icons" / "EDPSNFusion.png",
    "training": ROOT / "EDPSNTraining" / "Resources" / "Icons" / "EDPSNTraining.png",
}


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates on [-1, 1] (y down)."""
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    return np.meshgrid(c, c)


def brain(n: int) -> Image.Image:
    """Grey elliptical 'brain' with darker sulci and a midline, RGBA."""
    x, y = _grid(n)
    r = (x / 0.86) ** 2 + (y / 0.74) ** 2
    inside = r <= 1.0
    # Shading brighter towards the top left, sulci as a few sinusoidal grooves.
    shade = 175 - 40 * r + 20 * (-x - y) / 2
    sulci = np.abs(np.sin(9.0 * np.hypot(x * 1.1, y + 0.15) + 2.5 * np.arctan2(y, x)))
    grey = np.clip(shade - 45 * (sulci < 0.18), 0, 255)
    rgba = np.zeros((n, n, 4), np.uint8)
    rgba[..., :3] = grey[..., None].astype(np.uint8)
    rgba[..., 3] = np.where(inside, 255, 0)
    img = Image.fromarray(rgba, "RGBA")
    draw = ImageDraw.Draw(img)
    w = max(1, n // 64)
    draw.ellipse([0.07 * n, 0.13 * n, 0.93 * n, 0.87 * n], outline=(70, 70, 75, 255), width=2 * w)
    draw.line([0.5 * n, 0.14 * n, 0.5 * n, 0.86 * n], fill=(90, 90, 95, 255), width=w)
    return img


def hot_spot(
    n: int, cx: float, cy: float, sigma: float, mask: np.ndarray | None = None
) -> Image.Image:
    """Warm (hot colour map) Gaussian blob, alpha following its intensity, RGBA."""
    x, y = _grid(n)
    v = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    h = 2.4 * v  # below 3: the centre stays yellow rather than white
    rgb = np.stack([np.clip(h, 0, 1), np.clip(h - 1, 0, 1), np.clip(h - 2, 0, 1)], -1)
    alpha = np.clip(1.6 * v, 0, 0.85)
    if mask is not None:
        alpha = alpha * mask
    rgba = np.concatenate([rgb, alpha[..., None]], -1)
    return Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA")


def icon(kind: str) -> Image.Image:
    """One icon at SIZE x SIZE."""
    n = SIZE * SCALE
    img = brain(n)
    inside = (np.asarray(img)[..., 3] > 0).astype(np.float64)
    if kind == "fusion":
        # Right half shows the functional image, fused into the left (anatomical) half.
        x, _ = _grid(n)
        img.alpha_composite(hot_spot(n, 0.25, -0.05, 0.38, inside * np.clip(0.5 + 2 * x, 0.25, 1)))
    else:
        img.alpha_composite(hot_spot(n, 0.22, -0.12, 0.30, inside))
    if kind == "training":
        draw = ImageDraw.Draw(img)
        pts = [(0.50 + 0.45 * t, 0.90 - 0.34 * np.exp(-4 * t)) for t in np.linspace(0, 1, 24)]
        pts = [(px * n, py * n) for px, py in pts]
        draw.line(pts, fill=(255, 255, 255, 255), width=6 * SCALE, joint="curve")
        draw.line(pts, fill=(40, 110, 230, 255), width=3 * SCALE, joint="curve")
    return img.resize((SIZE, SIZE), Image.LANCZOS)


def main() -> None:
    for kind, path in TARGETS.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        icon(kind).save(path, optimize=True)
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
