"""ED, the entropy-aware division: local 3x3 entropy and 3-class multi-Otsu regions, in torch.

- Local entropy: the image (on [0, 1]) is quantised to ``levels`` grey levels,
  ``q = min(floor(x * levels), levels - 1)`` (for 8-bit images and 16 levels this is exactly
  ``u >> 4``), and each pixel gets the Shannon entropy (bits) of the levels in its 3x3
  neighbourhood. Like ``skimage.filters.rank.entropy``, only pixels inside the image count, so
  border windows hold 6 and corner windows 4 pixels. Counts come from one box sum per level:
  vectorised over pixels, exact in float32, and the same on CPU and GPU. Why 16 levels: a
  window has only 9 pixels, so with 256 levels almost every window of noisy tissue would
  reach the maximum log2(9); 16 levels (4 bits) keep flat tissue low and edges / texture high.
- Thresholds: per image, a histogram of the entropy map with ``bins`` bins over [min, max]
  (as ``skimage.filters.threshold_multiotsu`` builds it) and an exhaustive, vectorised search
  of the threshold pair that maximises the between-class variance. A pixel's label is the
  class of its histogram bin (0 = low, 1 = mid, 2 = high entropy); the thresholds returned
  are the bins' upper edges (skimage returns the bin centres: half a bin lower). The black
  background (entropy 0) fills bin 0, so the low threshold usually sits just above 0: "low"
  = background and flat areas, and the tissue splits into "mid" and "high".
- Source image (:func:`region_map`): the pixel-wise max of the MRI and the functional
  luminance by default. It is the image a max-rule fusion shows, so a region is "high
  information" when the structure that will be visible there is textured; one entropy map
  instead of two keeps it cheap. ``mean``, ``mri`` and ``func`` are there for experiments.

Masks are never differentiated: everything runs under ``torch.no_grad`` in float32, also
inside autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from EDPSNLib import names
from EDPSNLib.errors import InputError

#: Label values of :func:`entropy_regions`.
LOW, MID, HIGH = 0, 1, 2
REGION_NAMES = names.REGION_NAMES


def _check_grey(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[1] != 1:
        raise InputError(
            f"{name}: expected a grey image batch (B, 1, H, W), got {tuple(image.shape)}."
        )


def _box3(x: torch.Tensor) -> torch.Tensor:
    """3x3 box sum with zero padding (pixels outside the image do not count)."""
    kernel = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    return F.conv2d(x, kernel, padding=1)


def quantize(image: torch.Tensor, levels: int = 16) -> torch.Tensor:
    """Grey levels 0..levels-1 of an image on [0, 1]: min(floor(x * levels), levels - 1).

    Args:
        image: (B, 1, H, W) on [0, 1], any float dtype.
        levels: number of grey levels.

    Returns:
        int64 levels of the same shape.

    Example:
        >>> quantize(torch.tensor([[[[0.0, 0.5, 0.99, 1.0]]]])).tolist()
        [[[[0, 8, 15, 15]]]]
    """
    return torch.clamp(torch.floor(image.float() * levels), 0, levels - 1).long()


@torch.no_grad()
def local_entropy(image: torch.Tensor, levels: int = 16) -> torch.Tensor:
    """Entropy in bits of each pixel's 3x3 neighbourhood of quantised grey levels.

    Only pixels inside the image count (border windows hold 6, corner windows 4), as
    ``skimage.filters.rank.entropy``; computed in float32 outside autocast, without gradient.

    Args:
        image: grey batch (B, 1, H, W) on [0, 1].
        levels: grey levels of :func:`quantize` (16: flat tissue low, edges high).

    Returns:
        float32 (B, 1, H, W), 0 (flat) to log2(9) bits.

    Example:
        >>> local_entropy(torch.full((1, 1, 8, 8), 0.3)).abs().max().item()
        0.0
        >>> halves = torch.zeros(1, 1, 4, 4)
        >>> halves[..., 2:] = 1.0  # two levels, 6 + 3 pixels in the middle windows
        >>> [round(v, 4) for v in local_entropy(halves)[0, 0, 1].tolist()]
        [0.0, 0.9183, 0.9183, 0.0]
    """
    _check_grey(image, "local_entropy")
    with torch.autocast(image.device.type, enabled=False):
        q = quantize(image, levels)
        count = _box3(torch.ones_like(q, dtype=torch.float32))
        acc = torch.zeros_like(count)
        for level in range(levels):  # one box sum per level, vectorised over all pixels
            c = _box3((q == level).float())
            acc += torch.special.xlogy(c, c)
        # H = -sum p log p with p = c / n  ==  log n - (1/n) sum c log c
        return torch.clamp((torch.log(count) - acc / count) / math.log(2.0), min=0.0)


def _bin_index(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image histogram bin (B, N) of flattened values over [min, max], with lo and width."""
    lo = values.amin(dim=1, keepdim=True)
    hi = values.amax(dim=1, keepdim=True)
    width = (hi - lo) / bins
    safe = torch.where(width > 0, width, torch.ones_like(width))
    idx = torch.clamp(torch.floor((values - lo) / safe), 0, bins - 1).long()
    return idx, lo, width


@torch.no_grad()
def multiotsu_from_histogram(prob: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Best 3-class split of histograms: the bin pair (i, j) of largest between-class variance.

    Class 0 = bins ``<= i``, class 1 = ``(i, j]``, class 2 = ``> j``; every pair i < j is scored
    at once (n = 64 gives a (B, 64, 64) table). Exact ties (empty bins between values) go to
    the first pair in (i, j) order, as in skimage.

    Args:
        prob: histograms (B, n), each summing to 1.
        values: the value of each bin (B, n) or (1, n).

    Returns:
        int64 (B, 2): the last bin of class 0 and of class 1.

    Example:
        >>> prob = torch.tensor([[0.3, 0.0, 0.3, 0.0, 0.4]])
        >>> multiotsu_from_histogram(prob, torch.arange(5.0)[None]).tolist()
        [[0, 2]]
    """
    prob = prob.double()
    values = values.double().expand_as(prob)
    bins = prob.shape[1]
    w_cum = torch.cumsum(prob, dim=1)  # mass of bins 0..i
    m_cum = torch.cumsum(prob * values, dim=1)
    w_tot, m_tot = w_cum[:, -1:], m_cum[:, -1:]
    w0, m0 = w_cum[:, :, None], m_cum[:, :, None]
    w1, m1 = w_cum[:, None, :] - w0, m_cum[:, None, :] - m0
    w2, m2 = (w_tot - w_cum)[:, None, :], (m_tot - m_cum)[:, None, :]

    def term(w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """m^2 / w where the class mass w > 1e-12, else 0 (an empty class adds nothing)."""
        ok = w > 1e-12
        return torch.where(ok, m * m / torch.where(ok, w, torch.ones_like(w)), 0.0)

    # sum_k m_k^2 / w_k = between-class variance + a constant of the image
    score = term(w0, m0) + term(w1, m1) + term(w2, m2)
    upper = torch.ones(bins, bins, dtype=torch.bool, device=prob.device).triu(diagonal=1)
    score = torch.where(upper, score, torch.full_like(score, -1.0))
    flat = torch.argmax(score.flatten(1), dim=1)  # first maximum
    return torch.stack((flat // bins, flat % bins), dim=1)


@torch.no_grad()
def multiotsu_thresholds(image: torch.Tensor, bins: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """3-class multi-Otsu thresholds of each image of a batch.

    The histogram has ``bins`` bins over the image's [min, max], bin centres as values (the
    textbook form; skimage <= 0.26 weights bin 0 as if its value were bin 1's, scikit-image PR
    6596/8252, which moves the low threshold when bin 0 is heavy, as with a black background).

    Args:
        image: grey batch (B, 1, H, W).
        bins: histogram bins.

    Returns:
        (thresholds, idx): float32 (B, 2) upper edges of the bins ``idx``, int64 (B, 2). A
        constant image gives idx = (bins-1, bins-1): everything is low.

    Example:
        >>> image = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]).view(1, 1, 2, 3)
        >>> thresholds, idx = multiotsu_thresholds(image, bins=4)
        >>> thresholds.tolist(), idx.tolist()
        ([[0.25, 0.75]], [[0, 2]])
    """
    _check_grey(image, "multiotsu_thresholds")
    values = image.flatten(1).double()
    idx, lo, width = _bin_index(values, bins)
    hist = torch.zeros(values.shape[0], bins, dtype=torch.float64, device=values.device)
    hist.scatter_add_(1, idx, torch.ones_like(values))
    centres = lo + (torch.arange(bins, device=values.device, dtype=torch.float64) + 0.5) * width
    pair = multiotsu_from_histogram(hist / values.shape[1], centres)
    constant = (width <= 0).flatten()
    pair = torch.where(constant[:, None], torch.full_like(pair, bins - 1), pair)
    thresholds = lo + (pair + 1).double() * width
    return thresholds.float(), pair


@torch.no_grad()
def entropy_regions(image: torch.Tensor, levels: int = 16, bins: int = 64) -> torch.Tensor:
    """Low / mid / high local-entropy labels of each image (3-class multi-Otsu per image).

    Args:
        image: grey batch (B, 1, H, W) on [0, 1].
        levels: grey levels of :func:`local_entropy`.
        bins: histogram bins of :func:`multiotsu_thresholds`.

    Returns:
        int64 (B, 1, H, W): 0 = low, 1 = mid, 2 = high.

    Example:
        >>> entropy_regions(torch.full((2, 1, 8, 8), 0.5)).unique().tolist()  # flat: all low
        [0]
    """
    _check_grey(image, "entropy_regions")
    ent = local_entropy(image, levels)
    values = ent.flatten(1).double()
    idx, _, _ = _bin_index(values, bins)
    _, pair = multiotsu_thresholds(ent, bins)
    labels = (idx > pair[:, :1]).long() + (idx > pair[:, 1:]).long()
    return labels.view_as(image).long()


def region_masks(labels: torch.Tensor) -> torch.Tensor:
    """Region labels to one-hot float masks (low, mid, high).

    Args:
        labels: (B, 1, H, W) with values 0, 1, 2 (as :func:`entropy_regions` gives them).

    Returns:
        float32 (B, 3, H, W), one channel per region.

    Example:
        >>> region_masks(torch.tensor([[[[0, 2]]]]))[0, :, 0].tolist()
        [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    """
    _check_grey(labels, "region_masks")
    if labels.numel() and (labels.min() < 0 or labels.max() > 2):
        raise InputError(
            "Region labels must be 0 (low), 1 (mid) or 2 (high); a volume region map with "
            "0 = background must have 1 subtracted and the background set to a region first."
        )
    return F.one_hot(labels[:, 0].long(), 3).permute(0, 3, 1, 2).float()


def entropy_source_image(
    mri: torch.Tensor, func_y: torch.Tensor, source: str = "max"
) -> torch.Tensor:
    """The grey image whose local entropy divides the pair.

    Args:
        mri: (B, 1, H, W) on [0, 1].
        func_y: the functional image's luminance, (B, 1, H, W) on [0, 1].
        source: ``max`` (default: what a max-rule fusion shows), ``mean``, ``mri`` or ``func``.

    Returns:
        (B, 1, H, W).

    Example:
        >>> mri, func = torch.zeros(1, 1, 1, 2), torch.tensor([[[[0.2, 0.0]]]])
        >>> entropy_source_image(mri, func).tolist()
        [[[[0.20000000298023224, 0.0]]]]
    """
    _check_grey(mri, "entropy_source_image (mri)")
    _check_grey(func_y, "entropy_source_image (func_y)")
    if source == "max":
        return torch.maximum(mri, func_y)
    if source == "mean":
        return 0.5 * (mri + func_y)
    if source == "mri":
        return mri
    if source == "func":
        return func_y
    raise InputError(f"Unknown entropy source {source!r}; choose max, mean, mri or func.")


@torch.no_grad()
def region_map(
    mri: torch.Tensor, func_y: torch.Tensor, levels: int = 16, bins: int = 64, source: str = "max"
) -> torch.Tensor:
    """Entropy region labels of an MRI / functional-luminance pair (ED of the network).

    Args:
        mri: (B, 1, H, W) on [0, 1].
        func_y: the functional luminance, (B, 1, H, W) on [0, 1].
        levels: grey levels of :func:`local_entropy`.
        bins: histogram bins of :func:`multiotsu_thresholds`.
        source: see :func:`entropy_source_image`.

    Returns:
        int64 (B, 1, H, W): 0 = low, 1 = mid, 2 = high.

    Example:
        >>> region_map(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 1, 8, 8])
    """
    image = entropy_source_image(mri.float(), func_y.float(), source)
    return entropy_regions(image, levels, bins)
