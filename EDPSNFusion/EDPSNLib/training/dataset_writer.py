"""Prepared training sets in the Harvard layout, written from slices of any source.

CHAOS volumes and user volume pairs become the same on-disk form as the Harvard atlas:
``<root>/<pair>/MRI/<name>.png``, ``<root>/<pair>/<CT|PET|SPECT>/<name>.png`` and
``<root>/splits/<pair>/{train,test}.txt``, so ``edpsn train --data <root>`` trains on them
unchanged. ``<root>/dataset.json`` records every case (source files, how it was paired,
which slices) and is written last: a case is in the set only once all its images are on
disk, and re-adding a case (same name) replaces it, so an interrupted preparation is
resumed by running it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from EDPSNLib.atomic import atomic_path, write_text_atomic
from EDPSNLib.data.harvard import functional_modality
from EDPSNLib.errors import InputError
from EDPSNLib.models.weights import json_safe

MANIFEST_NAME = "dataset.json"
MANIFEST_FORMAT = "edpsn-dataset/1"
_CASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def slice_name(case: str, index: int) -> str:
    """File stem of one slice of a case: ``<case>_<index:04d>``."""
    return f"{case}_{index:04d}"


def check_case_name(case: str) -> str:
    """The case name if it is a safe file-name prefix (letters, digits, '.', '_', '-')."""
    if not _CASE_NAME.match(case):
        raise InputError(f"Case name '{case}' must be letters, digits, '.', '_' or '-'.")
    return case


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The data set's ``dataset.json`` (an empty one when the folder is new)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "cases": []}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"Cannot read {path} ({exc}); delete the data set folder and prepare it again."
        ) from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path} is not an EDPSN data set manifest ({MANIFEST_FORMAT}).")
    return manifest


def _check_slices(mri: np.ndarray, func: np.ndarray, pair: str, indices: Sequence[int]) -> None:
    channels = 1 if functional_modality(pair) == "CT" else 3
    want = mri.shape if channels == 1 else (*mri.shape, 3)
    problems = []
    if mri.ndim != 3 or mri.dtype != np.uint8:
        problems.append(f"MRI slices must be uint8 (N, H, W), got {mri.dtype} {mri.shape}")
    if func.dtype != np.uint8 or func.shape != want:
        problems.append(f"functional slices must be uint8 {want}, got {func.dtype} {func.shape}")
    if len(indices) != len(mri) or len(set(indices)) != len(indices):
        problems.append("one distinct slice index per slice is needed")
    if problems:
        raise InputError("Cannot write training slices: " + "; ".join(problems) + ".")


def check_slice_size(
    root: str | Path, pair: str, size: tuple[int, int], replacing: Sequence[str] = ()
) -> None:
    """Refuse (H, W) slices when the pair's other cases in the set (``replacing`` excepted)
    have another size: one size per pair, so validation images stack."""
    for e in read_manifest(root)["cases"]:
        if e["pair"] == pair and e["case"] not in replacing and tuple(e["size"]) != tuple(size):
            h, w = e["size"]
            raise InputError(
                f"These slices are {size[0]}x{size[1]} but case {e['case']} in {root} has "
                f"{h}x{w}; prepare into another folder, or give every case the same --size "
                f"(e.g. --size {h} here, if {e['case']} is square)."
            )


def add_case(
    root: str | Path,
    pair: str,
    case: str,
    mri: np.ndarray,
    func: np.ndarray,
    indices: Sequence[int],
    split: str = "train",
    source: dict[str, Any] | None = None,
) -> list[str]:
    """Write one case's slices (uint8 MRI (N, H, W), functional (N, H, W[, 3])) and record it.

    ``split`` is ``train`` or ``test``; ``source`` (files, pairing, registration) goes into the
    manifest. All cases of a pair must share one slice size. Returns the slice names written.
    """
    root = Path(root).expanduser()
    check_case_name(case)
    if split not in ("train", "test"):
        raise InputError(f"Split must be 'train' or 'test', got '{split}'.")
    if len(mri) == 0:
        raise InputError(f"Case {case} has no slices to write (no tissue slices were found).")
    _check_slices(mri, func, pair, indices)
    manifest = read_manifest(root)
    check_slice_size(root, pair, mri.shape[1:], replacing=(case,))
    old = next((e for e in manifest["cases"] if e["pair"] == pair and e["case"] == case), None)
    names = [slice_name(case, int(i)) for i in indices]
    folders = {"MRI": mri, functional_modality(pair): func}
    for folder, images in folders.items():
        for name, image in zip(names, images):
            with atomic_path(root / pair / folder / f"{name}.png") as tmp:
                Image.fromarray(image).save(tmp, format="PNG")
    if old is not None:  # slices of the replaced case that the new one no longer has
        for stale in set(old["slices"]) - set(names):
            for folder in folders:
                (root / pair / folder / f"{stale}.png").unlink(missing_ok=True)
    entry = {
        "case": case,
        "pair": pair,
        "split": split,
        "size": list(mri.shape[1:]),
        "slices": names,
        "source": source or {},
        "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["cases"] = [e for e in manifest["cases"] if e is not old] + [entry]
    _write_splits(root, manifest)
    write_text_atomic(root / MANIFEST_NAME, json.dumps(json_safe(manifest), indent=1) + "\n")
    return names


def remove_case(root: str | Path, pair: str, case: str) -> bool:
    """Take a case out of a data set (manifest and splits first, then its images); False if absent."""
    root = Path(root).expanduser()
    manifest = read_manifest(root)
    old = [e for e in manifest["cases"] if e["pair"] == pair and e["case"] == case]
    if not old:
        return False
    manifest["cases"] = [e for e in manifest["cases"] if e not in old]
    _write_splits(root, manifest, also=(pair,))
    write_text_atomic(root / MANIFEST_NAME, json.dumps(json_safe(manifest), indent=1) + "\n")
    for name in old[0]["slices"]:
        for folder in ("MRI", functional_modality(pair)):
            (root / pair / folder / f"{name}.png").unlink(missing_ok=True)
    return True


def _write_splits(root: Path, manifest: dict[str, Any], also: Sequence[str] = ()) -> None:
    """Rewrite the split files of every pair in the manifest (and of ``also``, emptied)."""
    for pair in {e["pair"] for e in manifest["cases"]} | set(also):
        for split in ("train", "test"):
            names = [
                n
                for e in manifest["cases"]
                if e["pair"] == pair and e["split"] == split
                for n in e["slices"]
            ]
            write_text_atomic(
                root / "splits" / pair / f"{split}.txt", "".join(f"{n}\n" for n in names)
            )


def dataset_summary(root: str | Path) -> dict[str, dict[str, int]]:
    """Slices per pair and split, e.g. ``{"MRI-CT": {"train": 120, "test": 30}}``."""
    out: dict[str, dict[str, int]] = {}
    for e in read_manifest(root)["cases"]:
        counts = out.setdefault(e["pair"], {"train": 0, "test": 0})
        counts[e["split"]] += len(e["slices"])
    return out


def tissue_slices(
    mri01: np.ndarray, func01: np.ndarray, level: float = 0.05, min_fraction: float = 0.05
) -> np.ndarray:
    """Indices of the slices where both images have signal above ``level`` in >= ``min_fraction`` of the pixels.

    ``mri01`` is (N, H, W) and ``func01`` (N, H, W[, 3]) on [0, 1]; a training slice needs
    tissue in both images, or the network learns to copy one of them.
    """
    f = func01.max(axis=-1) if func01.ndim == 4 else func01
    frac_m = (mri01 > level).mean(axis=(1, 2))
    frac_f = (f > level).mean(axis=(1, 2))
    return np.flatnonzero((frac_m >= min_fraction) & (frac_f >= min_fraction))
